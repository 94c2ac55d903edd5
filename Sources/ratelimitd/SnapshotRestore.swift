import ArgumentParser
import Logging
import RateLimitServer
import ShardStore

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Loads the snapshot file into the server before it listens. A file that cannot be used stops start-up:
/// starting empty would hand every client a fresh quota, so that takes an explicit flag.
enum SnapshotRestore {
    /// Returns when the restored snapshot was saved, or nil when none was loaded.
    static func restore(path: String, into server: RateLimitServer, discardBad: Bool, logger: Logger) throws -> Int64? {
        let started = server.configuration.clock.nanosecondsNow()
        let bytes: [UInt8]
        let contents: SnapshotCodec.Contents
        do {
            guard let read = try SnapshotFile.read(path) else {
                logger.info("no snapshot yet, starting empty", metadata: ["path": "\(path)"])
                return nil
            }
            bytes = read
            contents = try SnapshotCodec.decode(bytes)
        } catch {
            guard discardBad else {
                printError("""
                    ratelimitd: cannot use the snapshot \(path): \(error)
                    Nothing was loaded. Move the file aside, or start with --discard-bad-snapshot to rename it \
                    to \(path).bad-<time> and start with no state.
                    """)
                throw ExitCode(1)
            }
            let aside = try SnapshotFile.moveAside(path, suffix: ".bad-\(time(nil))")
            logger.warning("snapshot unusable, moved aside; starting empty",
                           metadata: ["path": "\(path)", "moved_to": "\(aside)", "error": "\(error)"])
            return nil
        }
        server.restore(contents)
        let finished = server.configuration.clock.nanosecondsNow()
        logger.info(
            "restored snapshot",
            metadata: [
                "path": "\(path)", "keys": "\(contents.entries.count)", "bytes": "\(bytes.count)",
                "age_ms": "\(max(0, started - contents.savedAt) / 1_000_000)",
                "ms": "\((finished - started) / 1_000_000)",
            ])
        return contents.savedAt
    }
}
