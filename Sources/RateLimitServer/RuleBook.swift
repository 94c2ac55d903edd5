import RateLimiting
import Synchronization

/// The rules in force, replaceable while the server runs (SIGHUP). Connections keep their own copy and
/// look at the generation number once per read burst, so the request path takes no lock for rules and a
/// reload reaches every connection by its next read.
public final class RuleBook: Sendable {
    private let rules: Mutex<RuleSet>
    private let generationCounter = Atomic<Int>(0)

    public init(_ rules: RuleSet) {
        self.rules = Mutex(rules)
    }

    public var generation: Int { generationCounter.load(ordering: .acquiring) }

    public var current: (rules: RuleSet, generation: Int) {
        rules.withLock { ($0, generationCounter.load(ordering: .acquiring)) }
    }

    public func replace(with newRules: RuleSet) {
        rules.withLock { rules in
            rules = newRules
            generationCounter.add(1, ordering: .releasing)
        }
    }
}
