import CMemory
import Synchronization

/// Gives memory back to the system after many connections have gone: their buffers go back to glibc's
/// arenas when they close, but glibc keeps the pages (a flood of 12,000 connections once left 788 MB
/// resident after they left) until `malloc_trim` hands them back. Run once per sweep pass, trimming when
/// 100 connections or more have closed since the last trim; a trim costs milliseconds, on the sweeper's
/// task, under no lock of the request path.
final class MemoryReturn: Sendable {
    private let statistics: ServerStatistics
    private let closedAtLastTrim = Atomic<Int>(0)
    static let connectionsBetweenTrims = 100

    init(statistics: ServerStatistics) {
        self.statistics = statistics
    }

    var afterPass: @Sendable () -> Void {
        { [self] in trimIfConnectionsLeft() }
    }

    func trimIfConnectionsLeft() {
        let closed = statistics.lastConnectionID.load(ordering: .relaxed) - statistics.openConnections.load(ordering: .relaxed)
        guard closed - closedAtLastTrim.load(ordering: .relaxed) >= Self.connectionsBetweenTrims else { return }
        closedAtLastTrim.store(closed, ordering: .relaxed)
        cmemory_release_free_memory()
    }
}
