import NIOCore
import WireProtocol
import RateLimiting
import ShardStore

/// What a shared-mode request is while it waits for Redis: a CHECK or RESET of one key (the line protocol,
/// RESP), or an Envoy request's descriptors.
enum Work: Sendable {
    case request(Request)
    case batch(BatchJob)

    var isReset: Bool {
        if case .request(let request) = self, case .reset = request.operation { return true }
        return false
    }

    var queuedAt: Int64 {
        switch self {
        case .request(let request): request.queuedAt
        case .batch(let job): job.queuedAt
        }
    }
}

/// One CHECK or RESET of one key.
struct Request: Sendable {
    let operation: ShardOperation
    /// `<prefix>{<key>}`: the braces make the key its own hash tag, so in Redis Cluster a key's state stays
    /// in one slot whatever the prefix.
    let stateKey: [UInt8]
    let prefixLength: Int
    /// `KeyHash` of the key: what tells keys apart while they wait (hashing their bytes again would cost
    /// more than the decision).
    let hash: UInt64
    /// The rule's slot, for the decision counts.
    let ruleSlot: Int
    let ticket: UInt64
    let waiter: any DecisionWaiter
    let queuedAt: Int64

    /// The key itself, inside `stateKey`.
    var key: ArraySlice<UInt8> { stateKey[(prefixLength + 1)..<(stateKey.count - 1)] }

    static func stateKey(_ key: some Collection<UInt8>, prefix: [UInt8]) -> [UInt8] {
        var stateKey = prefix
        stateKey.reserveCapacity(prefix.count + key.count + 2)
        stateKey.append(UInt8(ascii: "{"))
        stateKey.append(contentsOf: key)
        stateKey.append(UInt8(ascii: "}"))
        return stateKey
    }
}

/// An Envoy request's descriptors, decided in one script call per slot they fall in (see `SharedLoop.start`).
/// A class: its parts answer one by one, and the last completes it.
///
/// `@unchecked Sendable`: made on a request's loop and used only on the loop that sends it.
final class BatchJob: @unchecked Sendable {
    enum Mode: String {
        /// All or nothing (`DecisionBatch.accepts`).
        case all
        /// Tried, never applied: allowed items answered as peeks.
        case none
        /// Each item on its own.
        case each
    }

    let items: [DecisionBatch.Item]
    let stateKeys: [[UInt8]]
    let hashes: [UInt64]
    let alwaysOver: Bool
    let later: @Sendable (BatchOutcome) -> Void
    let queuedAt: Int64
    /// The items' indices per slot: one group unless a cluster spreads them.
    var groups: [[Int]] = []
    var mode = Mode.all
    var decisions: [Decision?]
    var applied = true
    var outstanding = 0
    var failed = false

    init(items: [DecisionBatch.Item], prefix: [UInt8], alwaysOver: Bool, later: @escaping @Sendable (BatchOutcome) -> Void, queuedAt: Int64) {
        self.items = items
        self.stateKeys = items.map { Request.stateKey($0.key, prefix: prefix) }
        self.hashes = items.map { item in item.key.withUnsafeBytes { KeyHash.hash($0) } }
        self.alwaysOver = alwaysOver
        self.later = later
        self.queuedAt = queuedAt
        self.decisions = Array(repeating: nil, count: items.count)
    }
}

/// One script call (or `DEL`) and what it answers.
struct Call {
    enum Kind {
        case checks([Request])
        case reset(Request)
        /// A group of a batch's items.
        case part(BatchJob, Int)
    }

    let kind: Kind
    let slot: Int
    /// When its oldest request arrived: the deadline counts from it.
    let queuedAt: Int64
    var attempts = 0

    init(kind: Kind, slot: Int, queuedAt: Int64? = nil) {
        self.kind = kind
        self.slot = slot
        switch kind {
        case .checks(let requests): self.queuedAt = queuedAt ?? requests.map(\.queuedAt).min() ?? 0
        case .reset(let request): self.queuedAt = queuedAt ?? request.queuedAt
        case .part(let job, _): self.queuedAt = queuedAt ?? job.queuedAt
        }
    }

    var hashes: [UInt64] {
        switch kind {
        case .checks(let requests): requests.map(\.hash)
        case .reset(let request): [request.hash]
        case .part(let job, let group): job.groups[group].map { job.hashes[$0] }
        }
    }

    /// The call as RESP: `DEL`, or `EVALSHA` of the decision script (its arguments: `DecisionScript`'s
    /// header) on Redis's clock.
    func command(sha: String) -> ByteBuffer {
        switch kind {
        case .reset(let request):
            var command = ByteBufferAllocator().buffer(capacity: request.stateKey.count + 32)
            command.writeRedisArrayHeader(2)
            command.writeRESPBulk("DEL")
            command.writeRESPBulk(request.stateKey)
            return command
        case .checks(let requests):
            return Self.script(
                sha: sha, mode: .each, count: requests.count, keys: { requests[$0].stateKey },
                item: { index in
                    guard case .check(let cost, let limit) = requests[index].operation else {
                        preconditionFailure("a RESET is a call of its own")
                    }
                    return (cost, limit, .denies)
                })
        case .part(let job, let group):
            let indices = job.groups[group]
            return Self.script(
                sha: sha, mode: job.mode, count: indices.count, keys: { job.stateKeys[indices[$0]] },
                item: { let item = job.items[indices[$0]]; return (item.cost, item.limit, item.role) })
        }
    }

    private static func script(
        sha: String, mode: BatchJob.Mode, count: Int, keys: (Int) -> [UInt8],
        item: (Int) -> (cost: Int64, limit: Limit, role: DecisionBatch.Role)
    ) -> ByteBuffer {
        var limits: [Limit] = []
        var numberOf: [Limit: Int] = [:]
        var numbers: [Int] = []
        numbers.reserveCapacity(count)
        for index in 0..<count {
            let limit = item(index).limit
            if let known = numberOf[limit] {
                numbers.append(known)
            } else {
                limits.append(limit)
                numberOf[limit] = limits.count
                numbers.append(limits.count)
            }
        }
        var command = ByteBufferAllocator().buffer(capacity: 64 + count * 48 + limits.count * 64)
        command.writeRedisArrayHeader(3 + count + 3 + 5 * limits.count + 3 * count)
        command.writeRESPBulk("EVALSHA")
        command.writeRESPBulk(sha)
        command.writeRESPBulk(decimal: Int64(count))
        for index in 0..<count { command.writeRESPBulk(keys(index)) }
        command.writeRESPBulk("")
        command.writeRESPBulk(mode.rawValue)
        command.writeRESPBulk(decimal: Int64(limits.count))
        for limit in limits {
            command.writeRESPBulk(DecisionScript.code(limit.algorithm))
            command.writeRESPBulk(decimal: limit.limit)
            command.writeRESPBulk(decimal: limit.windowNanos)
            command.writeRESPBulk(decimal: limit.burst)
            command.writeRESPBulk(decimal: DecisionScript.reduction(limit))
        }
        for index in 0..<count {
            let (cost, _, role) = item(index)
            command.writeRESPBulk(decimal: Int64(numbers[index]))
            command.writeRESPBulk(decimal: cost)
            command.writeRESPBulk(decimal: Int64(role.rawValue))
        }
        return command
    }
}
