import Dispatch
import Locking

/// Runs `body` on the Swift concurrency runtime and waits for it on the main thread.
///
/// Why not `async` main: an async main ends the main thread inside `dispatch_main`, which valgrind 3.19
/// (Debian 12's) cannot follow, and the benchmark counts allocations and instructions per request with
/// valgrind. The daemon's main thread has nothing else to do, so parking it costs nothing.
///
/// Why `.medium`: a task started from the main thread would inherit its high priority, and libdispatch
/// would start the threads that run the daemon's services (snapshots, sweeps, replication, reloads) at nice
/// -2, ahead of the event loops that answer clients (nice 0). Unprivileged the raise is refused anyway.
func runBlocking(_ body: @escaping @Sendable () async throws -> Void) throws {
    let outcome = Locked<Result<Void, any Error>?>(nil)
    let finished = DispatchSemaphore(value: 0)
    Task(priority: .medium) {
        let result: Result<Void, any Error>
        do {
            try await body()
            result = .success(())
        } catch {
            result = .failure(error)
        }
        outcome.withLock { $0 = result }
        finished.signal()
    }
    finished.wait()
    try outcome.withLock { $0 }?.get()
}
