import Atomics

/// How long a connection may wait in each way it can hold the server up; 0 turns a timeout off.
public struct ConnectionTimeouts: Sendable, Equatable {
    /// Nothing received for this long: closed (`idle_timeout`).
    public var idleNanos: Int64
    /// A request still incomplete this long after its first byte, or replies left unread this long: closed
    /// (`request_timeout`).
    public var requestNanos: Int64

    public init(idleNanos: Int64, requestNanos: Int64) {
        self.idleNanos = idleNanos
        self.requestNanos = requestNanos
    }

    public static let never = ConnectionTimeouts(idleNanos: 0, requestNanos: 0)

    /// How often a connection looks at its timeouts: half the shortest, so each is enforced between one and
    /// one and a half times itself after what it times began. nil when every timeout is off.
    var lookIntervalNanos: Int64? {
        let set = [idleNanos, requestNanos].filter { $0 > 0 }
        return set.min().map { max(1, $0 / 2) }
    }
}

/// Which timeout closed a connection.
enum Timeout: Equatable {
    case idle
    case incompleteRequest
    case unreadReplies
}

/// What a connection did since its last look, as its handler saw it. Everything here is a flag or a counter
/// the handler keeps anyway, so a read costs no clock read.
struct ConnectionActivity {
    /// Bytes arrived since the last look.
    var heard = false
    /// Requests answered so far: when it moved, the partial request now held is not the one seen before.
    var requests: UInt64 = 0
    /// Part of a request is held, waiting for its rest.
    var partial = false
    /// Replies wait for the client to read them (the channel is not writable).
    var repliesWaiting = false
    /// The client read replies since the last look (the channel became writable again).
    var drained = false
}

/// Decides at each look whether a timeout has run out. Each waiting state is timed from the first look that
/// saw it, which is no earlier than its true start, so nothing is closed before its timeout; a state that
/// moved on (a request completed, replies read) starts again.
struct TimeoutWatch {
    let limits: ConnectionTimeouts
    private var quietSince: Int64?
    private var partialSince: Int64?
    private var waitingSince: Int64?
    private var lastRequests: UInt64 = 0

    init(_ limits: ConnectionTimeouts) {
        self.limits = limits
    }

    mutating func look(at now: Int64, _ activity: ConnectionActivity) -> Timeout? {
        if activity.heard || quietSince == nil { quietSince = now }
        if !activity.partial {
            partialSince = nil
        } else if partialSince == nil || activity.requests != lastRequests {
            partialSince = now
        }
        lastRequests = activity.requests
        if !activity.repliesWaiting {
            waitingSince = nil
        } else if waitingSince == nil || activity.drained {
            waitingSince = now
        }
        if limits.requestNanos > 0 {
            if let since = waitingSince, now - since >= limits.requestNanos { return .unreadReplies }
            if let since = partialSince, now - since >= limits.requestNanos { return .incompleteRequest }
        }
        if limits.idleNanos > 0, let since = quietSince, now - since >= limits.idleNanos { return .idle }
        return nil
    }
}

/// Connections closed by each timeout, since start, for STATS and /metrics.
public final class TimeoutCounts: Sendable {
    private let idle = ManagedAtomic(0)
    private let request = ManagedAtomic(0)
    private let reply = ManagedAtomic(0)

    init() {}

    func add(_ timeout: Timeout) {
        switch timeout {
        case .idle: idle.wrappingIncrement(ordering: .relaxed)
        case .incompleteRequest: request.wrappingIncrement(ordering: .relaxed)
        case .unreadReplies: reply.wrappingIncrement(ordering: .relaxed)
        }
    }

    /// Closed for sending nothing for `idle_timeout`.
    public var idleCloses: Int { idle.load(ordering: .relaxed) }
    /// Closed for a request still incomplete `request_timeout` after its first byte.
    public var requestTimeouts: Int { request.load(ordering: .relaxed) }
    /// Closed for leaving replies unread for `request_timeout`.
    public var replyTimeouts: Int { reply.load(ordering: .relaxed) }
}
