import CMemory
import RateLimiting

/// A shard's keys and their states, built for the request path. Lookups take the key's raw bytes (no
/// `String` is made). Entries live directly in an open-addressing array (linear probing, at most 7/8 full,
/// removal by shifting back, so no tombstones): finding a key usually costs one cache miss, where an index
/// pointing into a separate entry array costs two. An entry is 48 bytes: keys up to 24 bytes are stored in
/// it; a longer key keeps its first 16 bytes there and its whole self in side storage.
struct KeyTable {
    struct Entry {
        /// Key bytes 0..<8 and 8..<16, zero-padded.
        var k0: UInt64 = 0
        var k1: UInt64 = 0
        /// Key bytes 16..<24 for keys of up to 24 bytes; for longer keys, the index of the key in `longKeys`.
        var k2: UInt64 = 0
        var first: Int64 = 0
        var second: Int64 = 0
        var hash: UInt32 = 0
        /// 0 marks an empty slot (keys are at least 1 byte).
        var length: UInt16 = 0
        /// The state's `PackedState.Kind` in the low bits; the top bit marks a change not yet replicated, the
        /// next one a state restored (from a snapshot or the replica) that no decision has changed since.
        var tag: UInt8 = PackedState.Kind.bucket.rawValue
        /// The window of the limit that last decided for the key, as a `WindowCode` (0: unknown), so the
        /// sweeper can tell when the state is fresh. Fits in the entry's last spare byte.
        var windowClass: UInt8 = 0

        var kind: PackedState.Kind {
            get { PackedState.Kind(rawValue: tag & Self.kindBits) ?? .bucket }
            set { tag = tag & ~Self.kindBits | newValue.rawValue }
        }

        /// Whether the key changed since the replicator last took it, and so is listed in the shard's
        /// change log (once, however often it changes).
        var isChanged: Bool {
            get { tag & Self.changedBit != 0 }
            set { tag = newValue ? tag | Self.changedBit : tag & ~Self.changedBit }
        }

        /// Whether the key's last decision left it without quota (a denial, or an admission down to 0): such a
        /// key is never evicted while its state still matters, or a flood of new keys would free it.
        var isLimited: Bool {
            get { tag & Self.limitedBit != 0 }
            set { tag = newValue ? tag | Self.limitedBit : tag & ~Self.limitedBit }
        }

        /// Whether the state is as restored, untouched by any decision since.
        var isRestored: Bool {
            get { tag & Self.restoredBit != 0 }
            set { tag = newValue ? tag | Self.restoredBit : tag & ~Self.restoredBit }
        }

        private static let changedBit: UInt8 = 0x80
        private static let restoredBit: UInt8 = 0x40
        private static let limitedBit: UInt8 = 0x20
        private static let kindBits: UInt8 = 0x1F
    }

    static let inlineKeyBytes = 24

    private var slots: PagedSlots
    private var mask: Int
    private(set) var count = 0
    var capacity: Int { slots.count }
    /// Whole keys longer than 24 bytes, with a free list of reusable places.
    private var longKeys: [[UInt8]] = []
    private var freeLongKeys: [Int] = []
    /// Sliding logs, which do not fit in an entry; `first` of a log entry is its index here.
    private var logs: [SlidingLogState] = []
    private var freeLogs: [Int] = []
    /// The last window encoded, since nearly every request of a shard uses one of very few windows.
    private var lastWindow: (nanos: Int64, windowClass: UInt8) = (0, 0)
    /// The most keys the table holds; inserting past it evicts one first.
    var maxKeys = Int.max
    /// The most memory the table may hold, as `memoryBytes` counts it; inserting past it evicts first.
    var maxMemory = Int.max
    /// Bytes held beside the slots: long keys and sliding logs.
    private var sideBytes = 0
    /// What `max_memory` counts: the slots (48 bytes each) and the side storage.
    var memoryBytes: Int { slots.count * MemoryLayout<Entry>.stride + sideBytes }
    /// What a long key costs beside its bytes: its array's header and its place in `longKeys`.
    static let longKeyOverhead = 48
    private(set) var evictions = 0
    /// New keys not stored because every key looked at for eviction was limited.
    private(set) var refusals = 0
    private var sweepCursor = 0
    /// Whether changes are marked for replication; off, the request path pays one untaken branch.
    var tracksChanges = false
    private var sampler: UInt64 = 0x2545_F491_4F6C_DD1D

    init(capacity: Int = 16) {
        var size = 16
        while size * 7 / 8 < capacity { size *= 2 }
        slots = PagedSlots(count: size)
        mask = size - 1
    }

    /// Runs `body` on the state of `key` (nil when the key is unknown) and stores what it leaves: a new state
    /// is inserted, a changed one updated, nil removes the key.
    ///
    /// `windowNanos` is the window of the limit deciding, remembered so the sweeper knows when the state is
    /// fresh (0 when unknown, as for a restored key). With `tracksChanges` on, a change is marked for
    /// replication as `origin` says, and `needsListing` is set when the caller must log the key: it changed
    /// and was not marked yet, or it was removed while unmarked (so the replica learns of the removal).
    /// (An out parameter rather than a property, so the shard reads nothing more of its table afterwards.)
    ///
    /// A new key when the table is full evicts another (see `evictOne`); when every key looked at is limited,
    /// the new state is not stored and `refusedUntil` says when one of them stops mattering. `isLimited`
    /// tells from the result whether the key is left without quota (see `Entry.isLimited`); `now` is when.
    mutating func update<Result>(
        key: UnsafeRawBufferPointer, hash: UInt64, windowNanos: Int64 = 0, origin: UpdateOrigin = .decision,
        now: Int64 = .min, needsListing: inout Bool, refusedUntil: inout Int64?,
        isLimited: (Result) -> Bool = { _ in false }, _ body: (inout KeyState?) -> Result
    ) -> Result {
        needsListing = false
        let marks = tracksChanges && origin.replicates
        let probe = find(key, hash: UInt32(truncatingIfNeeded: hash))
        guard probe.found else {
            var state: KeyState?
            let result = body(&state)
            if let state {
                let evictionsBefore = evictions
                if let until = makeRoom(forKeyOf: key.count, state, now: now) {
                    refusedUntil = until
                    refusals += 1
                    return result
                }
                // An eviction shifts entries back, so the probe's empty place may have moved.
                insert(key, probe: probe, state: state, windowClass: windowClass(windowNanos),
                       changed: marks, restored: tracksChanges && origin != .decision, limited: isLimited(result),
                       moved: evictions != evictionsBefore)
                needsListing = marks
            }
            return result
        }
        let before = slots[probe.position]
        var state = takeState(at: probe.position)
        let result = body(&state)
        if let state {
            putState(state, at: probe.position, limited: isLimited(result))
            if sideBytes > 0, memoryBytes > maxMemory { shedMemory(sparing: key, hash: probe.hash, now: now) }
            if windowNanos != 0 { slots[probe.position].windowClass = windowClass(windowNanos) }
            if tracksChanges { needsListing = noteChange(at: probe.position, before: before, origin: origin) }
        } else {
            remove(at: probe.position)
            needsListing = marks && !before.isChanged
        }
        return result
    }

    /// Where a change comes from, which decides how it is replicated.
    enum UpdateOrigin: Equatable {
        /// A request: replicated, and the state is no longer as restored.
        case decision
        /// A snapshot loaded at start: replicated (it may be newer than the replica), flagged as restored.
        case snapshot
        /// The replica's own copy: not sent back, flagged as restored.
        case replica

        var replicates: Bool { self != .replica }
    }

    /// Marks the entry at `position` changed unless it already is or its state is what it was (a denial),
    /// and keeps its restored flag; returns whether it was newly marked. A log is taken to have changed:
    /// comparing it would cost more than replicating it.
    private mutating func noteChange(at position: Int, before: Entry, origin: UpdateOrigin) -> Bool {
        let entry = slots[position]
        let same = entry.kind != .slidingLog && entry.kind == before.kind && entry.first == before.first
            && entry.second == before.second
        if origin != .decision {
            slots[position].isRestored = true
        } else if !same, entry.isRestored {
            slots[position].isRestored = false
        }
        guard origin.replicates, !same, !entry.isChanged else { return false }
        slots[position].isChanged = true
        return true
    }

    /// Whether `key` is unknown or holds a state as restored, untouched by decisions: what a restore from
    /// the replica may replace.
    func isAbsentOrRestored(key: UnsafeRawBufferPointer, hash: UInt64) -> Bool {
        let probe = find(key, hash: UInt32(truncatingIfNeeded: hash))
        return !probe.found || slots[probe.position].isRestored
    }

    private mutating func windowClass(_ windowNanos: Int64) -> UInt8 {
        guard windowNanos != 0 else { return 0 }
        if lastWindow.nanos == windowNanos { return lastWindow.windowClass }
        let code = WindowCode.encode(windowNanos)
        lastWindow = (windowNanos, code)
        return code
    }

    func state(key: UnsafeRawBufferPointer, hash: UInt64) -> KeyState? {
        let probe = find(key, hash: UInt32(truncatingIfNeeded: hash))
        return probe.found ? state(of: slots[probe.position]) : nil
    }

    private func state(of entry: Entry) -> KeyState {
        if entry.kind == .slidingLog { return .slidingLog(logs[Int(entry.first)]) }
        return PackedState(kind: entry.kind, first: entry.first, second: entry.second).unpacked!
    }

    // MARK: Changes for replication

    /// What a logged key holds now, for the replicator.
    enum PendingChange {
        /// Changed since last taken: its state and the window it was decided under (0 if unknown). The mark
        /// is cleared, so a later change lists the key again.
        case changed(KeyState, windowNanos: Int64)
        /// Already taken under an earlier listing of the same key.
        case unchanged
        /// No longer held (reset, swept or evicted): the replica should forget it too.
        case absent
    }

    mutating func takeChange(key: UnsafeRawBufferPointer, hash: UInt64) -> PendingChange {
        let probe = find(key, hash: UInt32(truncatingIfNeeded: hash))
        guard probe.found else { return .absent }
        let entry = slots[probe.position]
        guard entry.isChanged else { return .unchanged }
        slots[probe.position].isChanged = false
        return .changed(state(of: entry), windowNanos: WindowCode.decode(entry.windowClass))
    }

    /// Sets or clears `key`'s change mark; returns whether the key is held and was marked before.
    @discardableResult
    mutating func setChanged(key: UnsafeRawBufferPointer, hash: UInt64, _ changed: Bool) -> (found: Bool, wasChanged: Bool) {
        let probe = find(key, hash: UInt32(truncatingIfNeeded: hash))
        guard probe.found else { return (false, false) }
        let was = slots[probe.position].isChanged
        if was != changed { slots[probe.position].isChanged = changed }
        return (true, was)
    }

    /// Every key, for tests and diagnostics.
    var keys: [[UInt8]] {
        slots.indices.filter { slots[$0].length != 0 }.map { key(at: $0) }
    }

    /// Calls `body` with every key, its state, and the window it was last decided under (0 if unknown).
    func forEach(_ body: (UnsafeRawBufferPointer, KeyState, Int64) -> Void) {
        for position in slots.indices where slots[position].length != 0 {
            let entry = slots[position]
            key(at: position).withUnsafeBytes { body($0, state(of: entry), WindowCode.decode(entry.windowClass)) }
        }
    }

    // MARK: Probing and keys

    private struct Probe {
        /// Where the key is, or the empty slot where it would go.
        var position: Int
        var found: Bool
        var hash: UInt32
        var words: (UInt64, UInt64, UInt64)
    }

    private func find(_ key: UnsafeRawBufferPointer, hash: UInt32) -> Probe {
        let words = Self.words(key)
        let length = UInt16(truncatingIfNeeded: key.count)
        let isLong = key.count > Self.inlineKeyBytes
        var position = Int(hash) & mask
        while true {
            let entry = slots[position]
            if entry.length == 0 { return Probe(position: position, found: false, hash: hash, words: words) }
            if entry.hash == hash, entry.length == length, entry.k0 == words.0, entry.k1 == words.1,
                isLong ? longKeys[Int(entry.k2)].elementsEqual(key) : entry.k2 == words.2
            {
                return Probe(position: position, found: true, hash: hash, words: words)
            }
            position = (position + 1) & mask
        }
    }

    /// The first 24 bytes of a key as three zero-padded words.
    private static func words(_ key: UnsafeRawBufferPointer) -> (UInt64, UInt64, UInt64) {
        var words: (UInt64, UInt64, UInt64) = (0, 0, 0)
        withUnsafeMutableBytes(of: &words) { destination in
            destination.copyMemory(from: UnsafeRawBufferPointer(rebasing: key.prefix(inlineKeyBytes)))
        }
        return words
    }

    private func key(at position: Int) -> [UInt8] {
        let entry = slots[position]
        if Int(entry.length) > Self.inlineKeyBytes { return longKeys[Int(entry.k2)] }
        var words = (entry.k0, entry.k1, entry.k2)
        return withUnsafeBytes(of: &words) { Array($0.prefix(Int(entry.length))) }
    }

    // MARK: Insertion and removal

    /// Inserts at `probe`'s place; call once the table has room (see `update`). `moved`: entries shifted since
    /// the probe (an eviction), so the place is looked for again.
    private mutating func insert(
        _ key: UnsafeRawBufferPointer, probe: Probe, state: KeyState, windowClass: UInt8, changed: Bool,
        restored: Bool, limited: Bool, moved: Bool
    ) {
        var position = probe.position
        var moved = moved
        if count + 1 > slots.count * 7 / 8 {
            grow()
            moved = true
        }
        if moved {
            // Eviction shifts entries and growth rehashes them: find the empty place again.
            position = Int(probe.hash) & mask
            while slots[position].length != 0 { position = (position + 1) & mask }
        }
        var entry = Entry(k0: probe.words.0, k1: probe.words.1, k2: probe.words.2, hash: probe.hash,
                          length: UInt16(key.count), windowClass: windowClass)
        if key.count > Self.inlineKeyBytes {
            let bytes = Array(key)
            sideBytes += key.count + Self.longKeyOverhead
            if let free = freeLongKeys.popLast() {
                longKeys[free] = bytes
                entry.k2 = UInt64(free)
            } else {
                entry.k2 = UInt64(longKeys.count)
                longKeys.append(bytes)
            }
        }
        store(state, in: &entry)
        entry.isChanged = changed
        entry.isRestored = restored
        entry.isLimited = limited
        slots[position] = entry
        count += 1
    }

    private mutating func grow() {
        var old = slots
        slots = PagedSlots(count: old.count * 2)
        mask = slots.count - 1
        for page in 0..<old.pageCount {
            for from in old.positions(ofPage: page) where old[from].length != 0 {
                let entry = old[from]
                var position = Int(entry.hash) & mask
                while slots[position].length != 0 { position = (position + 1) & mask }
                slots[position] = entry
            }
            old.releasePage(page)
        }
        // The old pages were allocated inside malloc's arenas, between blocks that stay; without this they
        // would stay resident (half as much memory again per key at a million keys) until something reused
        // them.
        if slots.count >= 1 << 16 { cmemory_release_free_memory() }
    }

    /// Empties slot `position` and shifts later entries of its cluster back, so probes stay short.
    private mutating func remove(at position: Int) {
        let entry = slots[position]
        if entry.kind == .slidingLog { releaseLog(Int(entry.first)) }
        if Int(entry.length) > Self.inlineKeyBytes {
            sideBytes -= Int(entry.length) + Self.longKeyOverhead
            longKeys[Int(entry.k2)] = []
            freeLongKeys.append(Int(entry.k2))
        }
        var hole = position
        var next = (hole + 1) & mask
        while slots[next].length != 0 {
            let home = Int(slots[next].hash) & mask
            // The entry at `next` may move into the hole unless its home lies after the hole.
            if (next - home) & mask >= (next - hole) & mask {
                slots[hole] = slots[next]
                hole = next
            }
            next = (next + 1) & mask
        }
        slots[hole] = Entry()
        count -= 1
    }

    // MARK: Sweeping and eviction

    /// Evicts until a new key of `length` bytes with `state` fits under `maxKeys` and `maxMemory`; returns
    /// nil when it fits, else (nothing more may be evicted) the soonest time a limited key stops mattering.
    ///
    /// Past `maxKeys`, or when one more key would double the slots past `maxMemory`, any key makes room;
    /// otherwise memory is short only of side storage, which only a key holding some frees.
    private mutating func makeRoom(forKeyOf length: Int, _ state: KeyState, now: Int64) -> Int64? {
        var extra = length > Self.inlineKeyBytes ? length + Self.longKeyOverhead : 0
        if case .slidingLog(let log) = state { extra += log.memoryBytes }
        while true {
            let overKeys = count >= maxKeys
            // One more key past 7/8 full doubles the slots.
            let grows = count + 1 > slots.count * 7 / 8
            let growth = grows ? slots.count * MemoryLayout<Entry>.stride : 0
            let overMemory = maxMemory < Int.max && memoryBytes + extra + growth > maxMemory
            guard overKeys || overMemory else { return nil }
            guard count > 0 else { return now &+ 1_000_000_000 }
            let anyKey = overKeys || (grows && memoryBytes + growth > maxMemory - extra)
            if let until = evictOne(now: now, sideStorageOnly: !anyKey) { return until }
        }
    }

    /// A sliding log grew past `maxMemory`: evicts other keys holding side storage (never `key`) until the
    /// table fits again or none may be evicted.
    private mutating func shedMemory(sparing key: UnsafeRawBufferPointer, hash: UInt32, now: Int64) {
        while memoryBytes > maxMemory, count > 1 {
            let spared = find(key, hash: hash).position
            guard evictOne(now: now, sparing: spared, sideStorageOnly: true) == nil else { return }
        }
    }

    /// Looks at up to `budget` slots from where the last sweep stopped and removes every key whose state is
    /// fresh at `now` (bucket full, windows over): forgetting it changes no decision. Returns how many went.
    mutating func sweep(now: Int64, budget: Int) -> Int {
        var removed = 0
        var examined = 0
        var position = sweepCursor & mask
        while examined < min(budget, slots.count) {
            let entry = slots[position]
            if entry.length != 0, isFresh(entry, now: now) {
                remove(at: position)
                removed += 1
                // An entry may have shifted back into this slot; look at it again.
                continue
            }
            position = (position + 1) & mask
            examined += 1
        }
        sweepCursor = position
        return removed
    }

    private func isFresh(_ entry: Entry, now: Int64) -> Bool {
        if entry.kind == .bucket { return entry.first <= now }
        guard entry.windowClass != 0 else { return false }
        return state(of: entry).isFresh(now: now, windowNanos: WindowCode.decode(entry.windowClass))
    }

    /// Evicts one key: of eight sampled keys, the one whose state turns fresh soonest, i.e. the one with the
    /// least quota left to lose (a bucket nearly full, a window nearly over). Sampling is how Redis
    /// approximates LRU; for a rate limiter, "soonest fresh" is the least-harm order, and among keys under
    /// one limit it is the least recently used. A limited key whose state still matters at `now` is never
    /// the victim: evicting it would hand it a fresh quota. When the eight are all such keys, up to 24 more
    /// are sampled; when those are too, nothing is evicted and the result is the soonest time one of them
    /// stops mattering (nil once a key was evicted).
    private mutating func evictOne(now: Int64, sparing spared: Int = -1, sideStorageOnly: Bool = false) -> Int64? {
        var victim = -1
        var soonest = Int64.max
        var protectedUntil = Int64.max
        func consider(_ position: Int) {
            guard position != spared else { return }
            let entry = slots[position]
            if sideStorageOnly, entry.kind != .slidingLog, Int(entry.length) <= Self.inlineKeyBytes { return }
            let freshAt = freshAt(entry)
            if entry.isLimited, freshAt > now {
                protectedUntil = min(protectedUntil, freshAt)
                return
            }
            if victim < 0 || freshAt < soonest {
                soonest = freshAt
                victim = position
            }
        }
        if slots.count <= 64 {
            // A small table: look at every key rather than sample a few of them.
            for position in slots.indices where slots[position].length != 0 { consider(position) }
        } else {
            for round in 0..<32 {
                if round == 8, victim >= 0 { break }
                sampler ^= sampler << 13
                sampler ^= sampler >> 7
                sampler ^= sampler << 17
                var position = Int(truncatingIfNeeded: sampler) & mask
                while slots[position].length == 0 { position = (position + 1) & mask }
                consider(position)
            }
        }
        // Nothing to evict and nothing limited in the way (side storage sought and none found): try again in
        // a second.
        guard victim >= 0 else { return protectedUntil == .max ? now &+ 1_000_000_000 : protectedUntil }
        remove(at: victim)
        evictions += 1
        return nil
    }

    /// When the entry's state turns fresh; without a known window, when it last moved.
    private func freshAt(_ entry: Entry) -> Int64 {
        state(of: entry).freshAt(windowNanos: WindowCode.decode(entry.windowClass))
    }

    // MARK: States

    /// The state at `position`; a log is moved out of side storage so it can change without a copy.
    private mutating func takeState(at position: Int) -> KeyState? {
        let entry = slots[position]
        guard entry.kind == .slidingLog else {
            return PackedState(kind: entry.kind, first: entry.first, second: entry.second).unpacked
        }
        let log = logs[Int(entry.first)]
        logs[Int(entry.first)] = SlidingLogState()
        sideBytes -= log.memoryBytes
        return .slidingLog(log)
    }

    /// Stores `state` at `position`, with the limited flag, in one write of the entry.
    private mutating func putState(_ state: KeyState, at position: Int, limited: Bool) {
        var entry = slots[position]
        if entry.kind == .slidingLog { releaseLog(Int(entry.first)) }
        store(state, in: &entry)
        entry.isLimited = limited
        slots[position] = entry
    }

    private mutating func store(_ state: KeyState, in entry: inout Entry) {
        if case .slidingLog(let log) = state {
            sideBytes += log.memoryBytes
            let index: Int
            if let free = freeLogs.popLast() {
                index = free
                logs[index] = log
            } else {
                index = logs.count
                logs.append(log)
            }
            entry.kind = .slidingLog
            entry.first = Int64(index)
            entry.second = 0
            return
        }
        // Every state but a log's packs.
        let packed = PackedState(state)!
        entry.kind = packed.kind
        entry.first = packed.first
        entry.second = packed.second
    }

    private mutating func releaseLog(_ index: Int) {
        sideBytes -= logs[index].memoryBytes
        logs[index] = SlidingLogState()
        freeLogs.append(index)
    }
}
