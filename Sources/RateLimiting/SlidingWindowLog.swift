/// State of `sliding_window_log`: when each admitted unit was admitted, oldest first. Admissions at the same
/// instant share one entry, so a cost of 50 takes one entry, not fifty.
public struct SlidingLogState: Sendable {
    public struct Entry: Sendable, Hashable {
        public var time: Int64
        public var count: Int64

        public init(time: Int64, count: Int64) {
            self.time = time
            self.count = count
        }
    }

    /// Entries from `head` on are live; the prefix is reclaimed lazily so expiry is O(1) amortised.
    private var entries: ContiguousArray<Entry> = []
    private var head = 0
    /// Sum of the live entries' counts.
    public private(set) var used: Int64 = 0

    public init() {}

    public init(entries: [Entry]) {
        self.entries = ContiguousArray(entries)
        self.used = entries.reduce(0) { $0 + $1.count }
    }

    public var liveEntries: ArraySlice<Entry> { entries[head...] }

    public var isEmpty: Bool { head == entries.count }

    /// Drops entries admitted at or before `now - window`: a unit admitted at `t` counts in `(t - window, t]`.
    mutating func expire(now: Int64, windowNanos: Int64) {
        while head < entries.count, entries[head].time + windowNanos <= now {
            used -= entries[head].count
            head += 1
        }
        if head == entries.count {
            entries.removeAll(keepingCapacity: entries.capacity <= 16)
            head = 0
        } else if head >= 32, head * 2 >= entries.count {
            entries.removeFirst(head)
            head = 0
        }
    }

    mutating func append(time: Int64, count: Int64) {
        // Entries stay in time order even if the clock appeared to go back (a snapshot from a clock ahead).
        let time = max(time, newestTime ?? time)
        if head < entries.count, entries[entries.count - 1].time == time {
            entries[entries.count - 1].count += count
        } else {
            entries.append(Entry(time: time, count: count))
        }
        used += count
    }

    public var newestTime: Int64? { isEmpty ? nil : entries[entries.count - 1].time }

    /// The heap memory the log holds: its entries' storage, with the array's header (0 for a log that has
    /// none), as `[store] max_memory` counts it.
    public var memoryBytes: Int {
        entries.capacity == 0 ? 0 : 32 + entries.capacity * MemoryLayout<Entry>.stride
    }

    /// The time at which, after expiry, at most `allowedUsed` units remain in the log.
    func timeWhenUsed(atMost allowedUsed: Int64, windowNanos: Int64) -> Int64? {
        var stillUsed = used
        for index in head..<entries.count {
            stillUsed -= entries[index].count
            if stillUsed <= allowedUsed { return entries[index].time + windowNanos }
        }
        return nil
    }

    public func isFresh(now: Int64, windowNanos: Int64) -> Bool {
        guard let newest = newestTime else { return true }
        return newest + windowNanos <= now
    }
}

extension SlidingLogState: Hashable {
    public static func == (lhs: SlidingLogState, rhs: SlidingLogState) -> Bool {
        lhs.liveEntries.elementsEqual(rhs.liveEntries)
    }

    public func hash(into hasher: inout Hasher) {
        for entry in liveEntries { hasher.combine(entry) }
    }
}

/// Exact sliding window: at most `limit` units in any interval of length `window`.
enum SlidingWindowLog {
    static func check(_ log: inout SlidingLogState, cost: Int64, limit: Limit, now: Int64) -> Decision {
        log.expire(now: now, windowNanos: limit.windowNanos)
        // Entries left by a larger limit (a per-request limit, an edited rule) leave no room until enough of
        // them age out, within this limit's window; the remaining count never goes below 0.
        let remaining = max(0, limit.limit - log.used)
        if cost == 0 {
            let fullAt = log.newestTime.map { $0 + limit.windowNanos } ?? now
            return .allow(remaining: remaining, resetNanos: fullAt - now)
        }
        guard cost <= limit.limit else {
            return .denyForever(remaining: remaining)
        }
        guard log.used + cost <= limit.limit else {
            let allowedAt = log.timeWhenUsed(atMost: limit.limit - cost, windowNanos: limit.windowNanos) ?? now
            return .deny(remaining: remaining, retryNanos: allowedAt - now)
        }
        log.append(time: now, count: cost)
        let fullAt = log.newestTime.map { $0 + limit.windowNanos } ?? now
        return .allow(remaining: limit.limit - log.used, resetNanos: fullAt - now)
    }
}
