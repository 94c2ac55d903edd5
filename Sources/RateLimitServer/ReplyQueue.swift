import NIOCore
import WireProtocol

/// Replies of one connection in request order. A reply whose request went to another shard's worker is a
/// hole until the worker's batch comes back; only the answered prefix is ever written, so a burst spread
/// over every shard still reads back in the order it was sent. Each slot remembers the protocol its request
/// came in, so a mixed pipeline gets each reply in its request's form.
struct ReplyQueue {
    private struct Slot {
        var reply: Reply?
        var dialect: WireDialect
    }

    private var slots = CircularBuffer<Slot>(initialCapacity: 16)
    /// The absolute sequence number of `slots.first`.
    private var firstSlot = 0

    var count: Int { slots.count }
    var isEmpty: Bool { slots.isEmpty }

    mutating func appendReady(_ reply: Reply, _ dialect: WireDialect) {
        slots.append(Slot(reply: reply, dialect: dialect))
    }

    /// Reserves the next position for a reply that will arrive later; returns its sequence number.
    mutating func appendPending(_ dialect: WireDialect) -> Int {
        slots.append(Slot(reply: nil, dialect: dialect))
        return firstSlot + slots.count - 1
    }

    mutating func fill(slot: Int, with reply: Reply) {
        let offset = slot - firstSlot
        precondition(offset >= 0 && offset < slots.count, "reply for a slot that is not pending")
        slots[slots.index(slots.startIndex, offsetBy: offset)].reply = reply
    }

    /// Removes and returns the first reply if it is answered.
    mutating func popReady() -> (Reply, WireDialect)? {
        guard let first = slots.first, let reply = first.reply else { return nil }
        slots.removeFirst()
        firstSlot += 1
        return (reply, first.dialect)
    }
}
