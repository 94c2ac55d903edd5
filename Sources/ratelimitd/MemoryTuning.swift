import CMemory

/// glibc raises its mmap threshold each time a large block is freed, so after the key table grows once, its
/// old 192 KiB pages end up on the heap's free lists instead of going back to the system: the daemon kept
/// half as much memory again as its keys need (151 bytes per key at a million keys instead of 101). Fixing
/// the threshold at 128 KiB keeps every page a mapping of its own, returned the moment it is freed.
enum MemoryTuning {
    static func apply() {
        _ = cmemory_set_mmap_threshold(128 * 1024)
    }
}
