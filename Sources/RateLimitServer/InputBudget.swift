import Atomics
import NIOConcurrencyHelpers
import NIOCore

/// Bounds the input all client connections hold unparsed (partial requests, and complete ones held while
/// their client does not read its replies), over every connection together: the per-frame limits bound one
/// connection, but 12,000 connections each holding an almost complete frame once held 1.5 GB. Past
/// `limit`, the connections holding the most are told so and closed, largest first, until the total is
/// back under three quarters of it. A connection reports only when what it holds changes size (its buffer
/// grows, or is given back), which ordinary traffic, whose buffer keeps its size, never does.
public final class InputBudget: Sendable {
    /// What the connection that must give its input up is sent.
    public struct Exceeded: Sendable {}

    public let limit: Int
    private let closes = ManagedAtomic(0)
    private let state = NIOLockedValueBox(State())

    private struct State {
        var total = 0
        var holders: [ObjectIdentifier: (bytes: Int, channel: any Channel)] = [:]
    }

    public init(limit: Int) {
        self.limit = limit
    }

    /// Connections closed to bring the total back under the limit, since start.
    public var closed: Int { closes.load(ordering: .relaxed) }

    /// Counts a connection closed for one request too large to hold (`TimeoutClose`'s cap), with the others.
    func countOversized() {
        closes.wrappingIncrement(ordering: .relaxed)
    }

    /// A connection reports what it holds only when that changed by this much since its last report, so a
    /// pipelining client's small partial requests at read boundaries come and go without taking the lock.
    static let reportingStep = 4_096

    /// Whether a connection that holds `held` now, and last told the budget `reported`, should tell it again.
    /// Holding nothing is always told, so a connection that let go never stays counted. (The connection
    /// records what it told before calling `hold`, which may shed that very connection at once.)
    public static func worthReporting(_ held: Int, after reported: Int) -> Bool {
        abs(held - reported) >= reportingStep || (held == 0 && reported != 0)
    }

    /// The bytes all connections hold now.
    public var total: Int { state.withLockedValue { $0.total } }

    /// `channel` now holds `bytes` (0 when it is gone or holds nothing); past the limit, the largest
    /// holders are sent `Exceeded` (on their own event loops).
    public func hold(_ bytes: Int, by channel: any Channel) {
        let id = ObjectIdentifier(channel)
        let victims: [any Channel] = state.withLockedValue { state in
            state.total += bytes - (state.holders[id]?.bytes ?? 0)
            state.holders[id] = bytes == 0 ? nil : (bytes, channel)
            guard state.total > limit else { return [] }
            var victims: [any Channel] = []
            for (key, holder) in state.holders.sorted(by: { $0.value.bytes > $1.value.bytes }) {
                guard state.total > limit / 4 * 3 else { break }
                victims.append(holder.channel)
                state.total -= holder.bytes
                state.holders[key] = nil
            }
            return victims
        }
        for victim in victims {
            closes.wrappingIncrement(ordering: .relaxed)
            victim.pipeline.fireUserInboundEventTriggered(Exceeded())
        }
    }
}
