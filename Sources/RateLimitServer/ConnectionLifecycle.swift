/// The life of one client connection, from its first read to its close, as one state machine: the handler
/// reports what happened and does what it is told; no NIO in here, so every path is tested without a
/// socket. What the connection's requests ask for (QUIT, a fatal error) is the `RequestProcessor`'s; the
/// handler passes it in as `Progress`.
struct ConnectionLifecycle {
    enum State: Equatable {
        /// Requests are read and answered.
        case reading
        /// The client closed its side (`nc -N`): every request it sent is answered, then the connection closes.
        case inputClosed
        /// The server is shutting down: nothing more is read; what was read is answered, then it closes.
        case quiescing
        /// Everything owed is written or given up: the connection closes once its writes are out.
        case closing
        case closed
    }

    /// Where the requests read so far stand, from the processor.
    struct Progress {
        /// QUIT or a fatal error was answered: nothing after it will be.
        var ended: Bool
        /// Complete requests wait unparsed, for the client to read replies or for the decider.
        var stalled: Bool
        /// Answers the decider still owes.
        var owed: Int
    }

    /// What the handler does after writing a burst's replies.
    enum AfterDrain: Equatable {
        case closeAfterWrites
        /// Resume the read held back while the client was not reading its replies.
        case read
        case wait
    }

    /// What the handler does when a look finds a timeout run out.
    enum TimeoutAction: Equatable {
        /// Close at once: nothing useful can be written (idle, or the client does not read).
        case close(Timeout)
        /// Answer the incomplete request with `ERR timeout`, after every reply before it, then close.
        case failRequest
    }

    private(set) var state = State.reading
    /// NIO asked for a read while the client was not reading its replies (or requests were stalled).
    private var readPending = false
    private var timeouts: TimeoutWatch

    init(timeouts: ConnectionTimeouts) {
        self.timeouts = TimeoutWatch(timeouts)
    }

    var isClosed: Bool { state == .closed }

    /// NIO asks for a read: `canRead` when the channel is writable and no request is stalled. Returns
    /// whether to read now; otherwise the read is held until a drain lets it through.
    mutating func readRequested(canRead: Bool) -> Bool {
        guard state == .reading else { return false }
        guard canRead else {
            readPending = true
            return false
        }
        return true
    }

    mutating func inputClosed() {
        if state == .reading { state = .inputClosed }
    }

    mutating func quiesce() {
        if state == .reading || state == .inputClosed { state = .quiescing }
    }

    /// The channel closed, or failed: nothing more is done.
    mutating func closed() {
        state = .closed
    }

    /// A burst's replies are written: close when nothing more will be answered, resume a held read when the
    /// client caught up.
    mutating func drained(_ progress: Progress, canRead: Bool) -> AfterDrain {
        switch state {
        case .closed, .closing:
            return .wait
        case .reading, .inputClosed, .quiescing:
            let inputDone = state != .reading
            if progress.owed == 0, progress.ended || (inputDone && !progress.stalled) {
                state = .closing
                return .closeAfterWrites
            }
            if state == .reading, readPending, canRead {
                readPending = false
                return .read
            }
            return .wait
        }
    }

    /// A periodic look at the timeouts; nil while none has run out.
    mutating func look(at now: Int64, _ activity: ConnectionActivity) -> TimeoutAction? {
        guard state != .closed, state != .closing, let timeout = timeouts.look(at: now, activity) else { return nil }
        switch timeout {
        case .incompleteRequest where !activity.repliesWaiting:
            // Its answer is written after every reply before it; the drain that follows closes.
            return .failRequest
        case .idle, .incompleteRequest, .unreadReplies:
            state = .closed
            return .close(timeout)
        }
    }
}
