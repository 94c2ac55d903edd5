#if RATELIMITD_TSAN
#if canImport(Glibc)
import Glibc
#endif

/// In a thread-sanitizer build (`RATELIMITD_TSAN=1 swift test --sanitize=thread`), values are locked with a
/// pthread mutex: the sanitizer intercepts pthread's locks but not the futex under the standard library's
/// `Mutex`, so it took every access a `Mutex` protects for a race (138 reports in the shards alone). The same
/// interface and semantics; every other build uses `Mutex` itself.
public final class Locked<Value: ~Copyable>: @unchecked Sendable {
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    /// Out of line, so the only accesses the sanitizer sees are the ones `body` makes under the lock.
    private let value = UnsafeMutablePointer<Value>.allocate(capacity: 1)

    public init(_ value: consuming Value) {
        self.value.initialize(to: value)
        pthread_mutex_init(mutex, nil)
    }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
        value.deinitialize(count: 1)
        value.deallocate()
    }

    public func withLock<Result: ~Copyable, E: Error>(_ body: (inout Value) throws(E) -> Result) throws(E) -> Result {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body(&value.pointee)
    }
}
#else
import Synchronization

/// A value behind a lock: the standard library's `Mutex` (see the thread-sanitizer build above).
public typealias Locked<Value: ~Copyable> = Mutex<Value>
#endif
