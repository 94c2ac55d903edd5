/// The key table's slot array, cut into pages of 4096 entries (192 KiB) that are shared copy-on-write each
/// on its own. A snapshot copies only the list of pages; afterwards the first write to a page copies that
/// page alone. With one flat array, the first write after a snapshot copied the whole table at once: an
/// 85 ms stall for the request that did it, at a million keys.
struct PagedSlots {
    static let pageShift = 12
    static let pageSize = 1 << pageShift

    private var pages: [[KeyTable.Entry]]
    let count: Int

    /// `count` must be a power of two.
    init(count: Int) {
        self.count = count
        let size = Swift.min(count, Self.pageSize)
        pages = (0..<Swift.max(1, count / size)).map { _ in Array(repeating: KeyTable.Entry(), count: size) }
    }

    subscript(position: Int) -> KeyTable.Entry {
        get { pages[position >> Self.pageShift][position & (Self.pageSize - 1)] }
        set { pages[position >> Self.pageShift][position & (Self.pageSize - 1)] = newValue }
    }

    var indices: Range<Int> { 0..<count }

    var pageCount: Int { pages.count }

    /// The slots held by page `index`.
    func positions(ofPage index: Int) -> Range<Int> {
        let size = pages[index].count
        return (index * size)..<(index * size + size)
    }

    /// Frees page `index` (if no snapshot shares it); for emptying an old table while rehashing it.
    mutating func releasePage(_ index: Int) {
        pages[index] = []
    }
}
