import Dispatch
import Synchronization

/// Runs `body` on the Swift concurrency runtime and waits for it on the main thread.
///
/// Why not `async` main: an async main ends the main thread inside `dispatch_main`, which valgrind 3.19
/// (Debian 12's) cannot follow, and the benchmark counts allocations and instructions per request with
/// valgrind. The daemon's main thread has nothing else to do, so parking it costs nothing.
func runBlocking(_ body: @escaping @Sendable () async throws -> Void) throws {
    let outcome = Mutex<Result<Void, any Error>?>(nil)
    let finished = DispatchSemaphore(value: 0)
    Task {
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
