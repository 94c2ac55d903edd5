import EnvoyRateLimitAPI
import EnvoyRules
import NIOCore
import RateLimitServer
import RateLimiting
import ShardStore
import SwiftProtobuf
import Locking

typealias RateLimitRequest = Envoy_Service_Ratelimit_V3_RateLimitRequest
typealias RateLimitResponse = Envoy_Service_Ratelimit_V3_RateLimitResponse

/// The rules in force; a reload swaps them while requests keep coming.
public final class EnvoyRulesBox: Sendable {
    private let rules: Locked<EnvoyRuleSet>

    public init(_ rules: EnvoyRuleSet) {
        self.rules = Locked(rules)
    }

    public var current: EnvoyRuleSet { rules.withLock { $0 } }

    public func replace(with rules: EnvoyRuleSet) {
        self.rules.withLock { $0 = rules }
    }
}

/// Answers `ShouldRateLimit` through the server's decider. Each descriptor is matched against the domain's rules as
/// envoyproxy/ratelimit matches it; the descriptors with a limit are decided together, all or nothing (if
/// any that may deny is over, nothing is consumed from any of them).
public struct EnvoyDecider: Sendable {
    let rules: EnvoyRulesBox
    let decider: any Decider
    let clock: any DecisionClock
    let counts: EnvoyDecisionCounts

    public init(rules: EnvoyRulesBox, server: RateLimitServer) {
        self.rules = rules
        self.decider = server.decider
        self.clock = server.configuration.clock
        self.counts = server.envoyDecisions
    }

    /// What one descriptor came to before deciding.
    enum Plan {
        /// No rule (or replaced, or an unknown domain): OK, nothing counted.
        case none
        case unlimited
        /// A limit to decide; `item` nil when `requests_per_unit` is 0 (always over, nothing to count).
        case limited(EnvoyLimit, item: Int?, shadow: Bool, quota: Bool, rule: String)
    }

    public static let maxDescriptors = 64
    public static let maxEntries = 64

    /// One call: the request message's bytes in, the response message's bytes out; or nil when the decider
    /// answers later (shared mode asks Redis), through `later`, from any thread.
    func answer(
        _ message: ByteBuffer, later: @escaping @Sendable (Result<[UInt8], GRPCStatus>) -> Void
    ) throws(GRPCStatus) -> [UInt8]? {
        let prepared = try prepare(try UnaryMessages.decode(message))
        let outcome = decider.decideAll(prepared.items, alwaysOver: prepared.alwaysOver, now: prepared.now) { outcome in
            later(Result { () throws(GRPCStatus) in try UnaryMessages.encode(respond(prepared, outcome)) })
        }
        return try outcome.map { outcome throws(GRPCStatus) in try UnaryMessages.encode(respond(prepared, outcome)) }
    }

    /// A request matched against the rules, ready to decide.
    struct Prepared: Sendable {
        var domain: String
        var known: Bool
        var plans: [Plan]
        var items: [DecisionBatch.Item]
        /// A descriptor that may deny is always over (a limit of 0): nothing is applied.
        var alwaysOver: Bool
        var now: Int64
    }

    func prepare(_ request: RateLimitRequest) throws(GRPCStatus) -> Prepared {
        guard !request.domain.isEmpty else {
            throw GRPCStatus(.invalidArgument, "rate limit domain must not be empty")
        }
        guard !request.descriptors.isEmpty else {
            throw GRPCStatus(.invalidArgument, "rate limit descriptor list must not be empty")
        }
        // A request's descriptors are decided under the locks of every shard they touch; bounding them bounds
        // how long one request can hold those locks (Envoy sends one per configured rate_limits action).
        guard request.descriptors.count <= Self.maxDescriptors else {
            throw GRPCStatus(.invalidArgument, "at most \(Self.maxDescriptors) descriptors per request")
        }
        guard request.descriptors.allSatisfy({ $0.entries.count <= Self.maxEntries }) else {
            throw GRPCStatus(.invalidArgument, "at most \(Self.maxEntries) entries per descriptor")
        }
        let domain = rules.current.domains[request.domain]
        let now = clock.nanosecondsNow()

        // Match every descriptor; the override, when given, takes the place of the configured limit.
        let entries = request.descriptors.map { $0.entries.map { (key: $0.key, value: $0.value) } }
        var matches: [(limit: EnvoyLimit, match: EnvoyMatch?)?] = []
        for (index, descriptor) in request.descriptors.enumerated() {
            guard let domain else {
                matches.append(nil)
                continue
            }
            if descriptor.hasLimit {
                guard let unit = EnvoyUnit(overrideValue: descriptor.limit.unit.rawValue),
                    let limit = EnvoyLimit.override(requestsPerUnit: descriptor.limit.requestsPerUnit, unit: unit)
                else {
                    throw GRPCStatus(
                        .invalidArgument,
                        "descriptor \(index): the limit override needs a unit and at most 1000000000 requests_per_unit")
                }
                matches.append((limit, nil))
            } else {
                matches.append(domain.match(entries[index]).map { ($0.limit, $0) })
            }
        }
        // A limit that another matched limit replaces does not apply (overrides neither replace nor are replaced).
        let replaced = Set(matches.compactMap { $0?.match == nil ? nil : $0?.limit.replaces }.joined())

        var plans: [Plan] = []
        var items: [DecisionBatch.Item] = []
        for (index, descriptor) in request.descriptors.enumerated() {
            guard let (limit, match) = matches[index] else {
                plans.append(.none)
                continue
            }
            if match != nil, let name = limit.name, replaced.contains(name) {
                plans.append(.none)
                continue
            }
            if limit.unlimited {
                plans.append(.unlimited)
                continue
            }
            let rule = match?.ruleName ?? "(override)"
            let shadow = match?.shadowMode ?? false
            let quota = match?.quotaMode ?? false
            var item: Int?
            if let decisionLimit = limit.limit {
                let hits: UInt64 = descriptor.hasHitsAddend ? descriptor.hitsAddend.value : UInt64(max(1, request.hitsAddend))
                let key = DescriptorKey.make(
                    domain: request.domain, unit: limit.unit, entries: entries[index],
                    sharedPatterns: match?.sharedPatterns ?? [:])
                item = items.count
                items.append(.init(
                    key: key, cost: Int64(clamping: hits), limit: decisionLimit,
                    role: shadow ? .shadow : quota ? .quota : .denies))
            }
            plans.append(.limited(limit, item: item, shadow: shadow, quota: quota, rule: rule))
        }

        // A limit of 0 has no item and is always over: over the request, if it may deny; and over it when
        // it is quota-mode and no other quota-mode descriptor has an item (all of them are then over).
        var alwaysOver = false
        var quotaItems = (total: 0, withItem: 0)
        for plan in plans {
            guard case .limited(_, let item, let shadow, let quota, _) = plan, !shadow else { continue }
            if quota {
                quotaItems.total += 1
                if item != nil { quotaItems.withItem += 1 }
            } else if item == nil {
                alwaysOver = true
            }
        }
        if quotaItems.total > 0, quotaItems.withItem == 0 { alwaysOver = true }
        return Prepared(
            domain: request.domain, known: domain != nil, plans: plans, items: items, alwaysOver: alwaysOver, now: now)
    }

    /// The response to a prepared request, given its decisions; records the decision counts.
    func respond(_ prepared: Prepared, _ decided: BatchOutcome) -> RateLimitResponse {
        let overLimit = !decided.applied
        let now = prepared.now
        var response = RateLimitResponse()
        response.overallCode = overLimit ? .overLimit : .ok
        var labels: [EnvoyDecisionCounts.Labels] = []
        let domainLabel = prepared.known ? prepared.domain : "(unknown)"
        for plan in prepared.plans {
            var status = RateLimitResponse.DescriptorStatus()
            status.code = .ok
            switch plan {
            case .none:
                labels.append(.init(domain: domainLabel, rule: "(none)", result: "ok"))
            case .unlimited:
                status.limitRemaining = UInt32.max
                labels.append(.init(domain: domainLabel, rule: "(unlimited)", result: "ok"))
            case .limited(let limit, let item, let shadow, _, let rule):
                var current = RateLimitResponse.RateLimit()
                current.requestsPerUnit = limit.requestsPerUnit
                current.unit = RateLimitResponse.RateLimit.Unit(rawValue: limit.unit.wireValue) ?? .unknown
                current.name = limit.name ?? ""
                status.currentLimit = current
                let decision = item.map { decided.decisions[$0] }
                let over = decision.map { !$0.allowed } ?? true
                status.code = over && !shadow ? .overLimit : .ok
                status.limitRemaining = UInt32(clamping: decision?.remaining ?? 0)
                let resetMillis = decision?.resetMillis ?? Self.windowRemainderMillis(limit.unit, now: now)
                if resetMillis >= 0 {
                    var duration = Google_Protobuf_Duration()
                    duration.seconds = resetMillis / 1000
                    duration.nanos = Int32(resetMillis % 1000) * 1_000_000
                    status.durationUntilReset = duration
                }
                labels.append(.init(domain: domainLabel, rule: rule, result: over ? (shadow ? "shadow_over_limit" : "over_limit") : "ok"))
            }
            response.statuses.append(status)
        }
        counts.record(overLimit: overLimit, descriptors: labels)
        return response
    }

    /// Milliseconds to the end of the current epoch-aligned window of `unit`: when a limit of 0 resets.
    static func windowRemainderMillis(_ unit: EnvoyUnit, now: Int64) -> Int64 {
        let window = unit.windowNanos
        let remainder = window - ((now % window) + window) % window
        return (remainder + 999_999) / 1_000_000
    }
}
