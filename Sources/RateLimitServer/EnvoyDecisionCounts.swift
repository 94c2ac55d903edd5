import Locking
import Synchronization

/// Envoy rate limit decisions by domain, rule and result, for STATS and /metrics alike. Labels are the
/// configuration's words (a domain it knows, a rule's name or path), never a request's values, so a client
/// cannot grow the table: requests for unknown domains count under `(unknown)`.
public final class EnvoyDecisionCounts: Sendable {
    public struct Labels: Hashable, Sendable {
        public var domain: String
        public var rule: String
        /// `ok`, `over_limit`, or `shadow_over_limit` (over, but the rule is in shadow mode).
        public var result: String

        public init(domain: String, rule: String, result: String) {
            self.domain = domain
            self.rule = rule
            self.result = result
        }
    }

    private let counts = Locked<[Labels: Int64]>([:])
    private let requests = Atomic<Int64>(0)
    private let overLimitRequests = Atomic<Int64>(0)

    public init() {}

    /// Counts one request (its overall code) and its descriptors' results, under one lock hold.
    public func record(overLimit: Bool, descriptors: [Labels]) {
        requests.add(1, ordering: .relaxed)
        if overLimit { overLimitRequests.add(1, ordering: .relaxed) }
        guard !descriptors.isEmpty else { return }
        counts.withLock { counts in
            for labels in descriptors { counts[labels, default: 0] &+= 1 }
        }
    }

    /// Every count so far, sorted by labels so that output is stable.
    public func all() -> [(labels: Labels, count: Int64)] {
        counts.withLock { $0.map { ($0.key, $0.value) } }
            .sorted { ($0.labels.domain, $0.labels.rule, $0.labels.result) < ($1.labels.domain, $1.labels.rule, $1.labels.result) }
    }

    /// Requests answered, and those answered `OVER_LIMIT`.
    public var totals: (requests: Int64, overLimit: Int64) {
        (requests.load(ordering: .relaxed), overLimitRequests.load(ordering: .relaxed))
    }
}
