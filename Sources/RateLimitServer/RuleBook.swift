import RateLimiting
import Locking
import Synchronization

/// The rules in force, replaceable while the server runs (SIGHUP). Connections keep their own copy and
/// look at the generation number once per read burst, so the request path takes no lock for rules and a
/// reload reaches every connection by its next read.
///
/// It also gives every rule name a counter slot that stays the same across reloads (slot 0 is for limits
/// given in requests), so decisions counted per slot keep adding up under the rule's name in metrics.
public final class RuleBook: Sendable {
    public struct Edition: Sendable {
        public let rules: RuleSet
        public let generation: Int
        /// The counter slot of each rule, by its index in `rules.rules`.
        public let slots: [Int]

        /// What a CHECK of `key` is decided under, and the counter slot it is counted in: the request's own
        /// limit (`given`, slot 0), else the limit of the rule that matches; nil when neither (`no_rule`).
        @inline(__always)
        public func limit(for key: UnsafeRawBufferPointer, given: Limit?) -> (limit: Limit, slot: Int)? {
            if let given { return (given, 0) }
            guard let (index, limit) = rules.indexedLimit(for: key) else { return nil }
            return (limit, slots[index])
        }
    }

    private struct State {
        var edition: Edition
        /// Every rule name ever in force, by slot − 1.
        var names: [String]
    }

    private let state: Locked<State>
    private let generationCounter = Atomic<Int>(0)

    public init(_ rules: RuleSet) {
        let names = rules.rules.map(\.name)
        let slots = names.indices.map { $0 + 1 }
        state = Locked(State(edition: Edition(rules: rules, generation: 0, slots: slots), names: names))
    }

    public var generation: Int { generationCounter.load(ordering: .acquiring) }

    /// Brings a connection's copy up to date when a reload has moved the rules on.
    @inline(__always)
    public func refresh(_ edition: inout Edition) {
        if generation != edition.generation { edition = current }
    }

    public var current: Edition {
        state.withLock { $0.edition }
    }

    public func replace(with newRules: RuleSet) {
        state.withLock { state in
            var slots: [Int] = []
            for rule in newRules.rules {
                if let known = state.names.firstIndex(of: rule.name) {
                    slots.append(known + 1)
                } else {
                    state.names.append(rule.name)
                    slots.append(state.names.count)
                }
            }
            let generation = generationCounter.add(1, ordering: .releasing).newValue
            state.edition = Edition(rules: newRules, generation: generation, slots: slots)
        }
    }

    /// The rule name of each slot from 1 on (slot 0 is requests' own limits).
    public var slotNames: [String] {
        state.withLock { $0.names }
    }
}
