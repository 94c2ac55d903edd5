import RateLimiting

/// A shard's keys and their states, built for the request path: lookups take the key's raw bytes (no
/// `String` is made), keys of up to 24 bytes live inside their entry, and an entry is 48 bytes plus 8 for a
/// longer key's tail. Entries are dense (a removed entry's place is taken by the last one), and an
/// open-addressing index of 8-byte slots points into them, each slot holding 32 bits of the key's hash so
/// that probing rarely touches an entry that cannot match.
struct KeyTable {
    struct Entry {
        /// The first 24 bytes of the key, zero-padded.
        var k0: UInt64 = 0
        var k1: UInt64 = 0
        var k2: UInt64 = 0
        var first: Int64 = 0
        var second: Int64 = 0
        var hash: UInt32 = 0
        var length: UInt16 = 0
        var kind: PackedState.Kind = .bucket
    }

    static let inlineKeyBytes = 24

    private(set) var entries: [Entry] = []
    /// Bytes after the first 24 of each entry's key; empty (and allocation-free) for short keys.
    private var tails: [[UInt8]] = []
    /// 0 is empty; otherwise the key's 32-bit hash in the high half and entry index + 1 in the low half.
    private var slots: [UInt64]
    private var mask: Int
    /// Sliding logs, which do not fit in an entry; `first` of a log entry is its index here.
    private var logs: [SlidingLogState] = []
    private var freeLogs: [Int] = []

    init(capacity: Int = 16) {
        var size = 16
        while size * 7 / 8 < capacity { size *= 2 }
        slots = Array(repeating: 0, count: size)
        mask = size - 1
    }

    var count: Int { entries.count }

    /// Runs `body` on the state of `key` (nil when the key is unknown) and stores what it leaves: a new state
    /// is inserted, a changed one updated, nil removes the key.
    mutating func update<Result>(
        key: UnsafeRawBufferPointer, hash: UInt64, _ body: (inout KeyState?) -> Result
    ) -> Result {
        let hash32 = UInt32(truncatingIfNeeded: hash)
        let words = Self.words(key)
        let (slot, found) = probe(key: key, hash: hash32, words: words)
        guard let index = found else {
            var state: KeyState?
            let result = body(&state)
            if let state { insert(key: key, hash: hash32, words: words, state: state, at: slot) }
            return result
        }
        var state = takeState(at: index)
        let result = body(&state)
        if let state {
            putState(state, at: index)
        } else {
            remove(at: index, slot: slot)
        }
        return result
    }

    func state(key: UnsafeRawBufferPointer, hash: UInt64) -> KeyState? {
        let (_, found) = probe(key: key, hash: UInt32(truncatingIfNeeded: hash), words: Self.words(key))
        guard let index = found else { return nil }
        let entry = entries[index]
        if entry.kind == .slidingLog { return .slidingLog(logs[Int(entry.first)]) }
        return PackedState(kind: entry.kind, first: entry.first, second: entry.second).unpacked
    }

    mutating func remove(key: UnsafeRawBufferPointer, hash: UInt64) {
        let (slot, found) = probe(key: key, hash: UInt32(truncatingIfNeeded: hash), words: Self.words(key))
        if let index = found { remove(at: index, slot: slot) }
    }

    // MARK: Probing and keys

    /// The slot holding `key`, or the empty slot where it would go.
    private func probe(key: UnsafeRawBufferPointer, hash: UInt32, words: (UInt64, UInt64, UInt64)) -> (Int, Int?) {
        var position = Int(hash) & mask
        while true {
            let slot = slots[position]
            if slot == 0 { return (position, nil) }
            if UInt32(truncatingIfNeeded: slot >> 32) == hash {
                let index = Int(truncatingIfNeeded: slot & 0xFFFF_FFFF) - 1
                if matches(index, key: key, words: words) { return (position, index) }
            }
            position = (position + 1) & mask
        }
    }

    private func matches(_ index: Int, key: UnsafeRawBufferPointer, words: (UInt64, UInt64, UInt64)) -> Bool {
        let entry = entries[index]
        guard Int(entry.length) == key.count, entry.k0 == words.0, entry.k1 == words.1, entry.k2 == words.2 else {
            return false
        }
        return key.count <= Self.inlineKeyBytes || tails[index].elementsEqual(key[Self.inlineKeyBytes...])
    }

    /// The first 24 bytes of a key as three zero-padded words.
    private static func words(_ key: UnsafeRawBufferPointer) -> (UInt64, UInt64, UInt64) {
        var words: (UInt64, UInt64, UInt64) = (0, 0, 0)
        withUnsafeMutableBytes(of: &words) { destination in
            destination.copyMemory(from: UnsafeRawBufferPointer(rebasing: key.prefix(inlineKeyBytes)))
        }
        return words
    }

    /// The key of entry `index`, for iteration and tests.
    func key(at index: Int) -> [UInt8] {
        let entry = entries[index]
        var words = (entry.k0, entry.k1, entry.k2)
        var bytes = withUnsafeBytes(of: &words) { Array($0.prefix(min(Int(entry.length), Self.inlineKeyBytes))) }
        bytes += tails[index]
        return bytes
    }

    // MARK: Insertion and removal

    private mutating func insert(
        key: UnsafeRawBufferPointer, hash: UInt32, words: (UInt64, UInt64, UInt64), state: KeyState, at slot: Int
    ) {
        var position = slot
        if (entries.count + 1) > slots.count * 7 / 8 {
            grow()
            position = Int(hash) & mask
            while slots[position] != 0 { position = (position + 1) & mask }
        }
        var entry = Entry(k0: words.0, k1: words.1, k2: words.2, hash: hash, length: UInt16(key.count))
        Self.store(state, in: &entry, logs: &logs, freeLogs: &freeLogs)
        entries.append(entry)
        tails.append(key.count > Self.inlineKeyBytes ? Array(key[Self.inlineKeyBytes...]) : [])
        slots[position] = UInt64(hash) << 32 | UInt64(entries.count)
    }

    private mutating func grow() {
        let size = slots.count * 2
        slots = Array(repeating: 0, count: size)
        mask = size - 1
        for (index, entry) in entries.enumerated() {
            var position = Int(entry.hash) & mask
            while slots[position] != 0 { position = (position + 1) & mask }
            slots[position] = UInt64(entry.hash) << 32 | UInt64(index + 1)
        }
    }

    /// Removes entry `index`, whose slot is `slot`: the slot is closed by shifting later ones back (no
    /// tombstones, so probes stay short), and the last entry moves into the freed place.
    private mutating func remove(at index: Int, slot: Int) {
        if entries[index].kind == .slidingLog { releaseLog(Int(entries[index].first)) }
        var hole = slot
        var next = (hole + 1) & mask
        while slots[next] != 0 {
            let home = Int(UInt32(truncatingIfNeeded: slots[next] >> 32)) & mask
            // The slot at `next` may move into the hole if its home is not between the hole and `next`.
            if (next - home) & mask >= (next - hole) & mask {
                slots[hole] = slots[next]
                hole = next
            }
            next = (next + 1) & mask
        }
        slots[hole] = 0
        let last = entries.count - 1
        if index != last {
            let moved = entries[last]
            var position = Int(moved.hash) & mask
            while Int(truncatingIfNeeded: slots[position] & 0xFFFF_FFFF) != last + 1 { position = (position + 1) & mask }
            slots[position] = UInt64(moved.hash) << 32 | UInt64(index + 1)
            entries[index] = moved
            tails.swapAt(index, last)
        }
        entries.removeLast()
        tails.removeLast()
    }

    // MARK: States

    /// The state of entry `index`; a log is moved out of side storage so it can change without a copy.
    private mutating func takeState(at index: Int) -> KeyState? {
        let entry = entries[index]
        guard entry.kind == .slidingLog else {
            return PackedState(kind: entry.kind, first: entry.first, second: entry.second).unpacked
        }
        let log = logs[Int(entry.first)]
        logs[Int(entry.first)] = SlidingLogState()
        return .slidingLog(log)
    }

    private mutating func putState(_ state: KeyState, at index: Int) {
        if entries[index].kind == .slidingLog {
            releaseLog(Int(entries[index].first))
        }
        Self.store(state, in: &entries[index], logs: &logs, freeLogs: &freeLogs)
    }

    private static func store(_ state: KeyState, in entry: inout Entry, logs: inout [SlidingLogState], freeLogs: inout [Int]) {
        if case .slidingLog(let log) = state {
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
        let packed = PackedState(state)!
        entry.kind = packed.kind
        entry.first = packed.first
        entry.second = packed.second
    }

    private mutating func releaseLog(_ index: Int) {
        logs[index] = SlidingLogState()
        freeLogs.append(index)
    }
}
