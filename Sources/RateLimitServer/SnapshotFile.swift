#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Reads and writes snapshot files. A write goes to `PATH.tmp`, is fsynced, renamed over `PATH` and the
/// directory fsynced, so a crash at any moment leaves either the old snapshot or the new one, never half of
/// one.
public enum SnapshotFile {
    public struct Failure: Error, CustomStringConvertible {
        public let description: String
    }

    public static func write(_ bytes: [UInt8], to path: String) throws(Failure) {
        let temporary = path + ".tmp"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw failure("cannot create \(temporary)") }
        var written = 0
        while written < bytes.count {
            let result = bytes.withUnsafeBytes { raw in
                Glibc.write(fd, raw.baseAddress! + written, raw.count - written)
            }
            if result < 0, errno == EINTR { continue }
            guard result > 0 else {
                let error = result == 0 ? Failure(description: "cannot write \(temporary): no progress") : failure("cannot write \(temporary)")
                close(fd)
                unlink(temporary)
                throw error
            }
            written += result
        }
        guard fsync(fd) == 0 else {
            let error = failure("cannot fsync \(temporary)")
            close(fd)
            unlink(temporary)
            throw error
        }
        close(fd)
        guard rename(temporary, path) == 0 else {
            let error = failure("cannot rename \(temporary) to \(path)")
            unlink(temporary)
            throw error
        }
        // Make the rename itself durable.
        let directory = path.contains("/") ? String(path[..<path.lastIndex(of: "/")!]) : "."
        let directoryFD = open(directory.isEmpty ? "/" : directory, O_RDONLY | O_CLOEXEC)
        if directoryFD >= 0 {
            fsync(directoryFD)
            close(directoryFD)
        }
    }

    /// The file's bytes, or nil when there is no file.
    public static func read(_ path: String) throws(Failure) -> [UInt8]? {
        try readRegularFile(path)?.bytes
    }

    /// A regular file's bytes and permission bits, or nil when there is none; anything else at `path` (a
    /// directory, a device, a FIFO, a dangling symbolic link) is an error. The auth token file is read so too.
    public static func readRegularFile(_ path: String) throws(Failure) -> (bytes: [UInt8], mode: UInt32)? {
        // Non-blocking, so that a FIFO without a writer cannot hold start-up; only a regular file is read (a
        // device such as /dev/zero would never end).
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
        if fd < 0 {
            guard errno == ENOENT else { throw failure("cannot open \(path)") }
            // Absent, or a symbolic link to nothing: the latter is a mistake to report, not a fresh start.
            var link = stat()
            if lstat(path, &link) == 0 {
                throw Failure(description: "\(path) is a symbolic link to a file that does not exist")
            }
            return nil
        }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw failure("cannot examine \(path)") }
        guard info.st_mode & S_IFMT == S_IFREG else {
            throw Failure(description: "\(path) is not a regular file (\(Self.kind(info.st_mode)))")
        }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 1 << 20)
        while true {
            let count = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if count < 0, errno == EINTR { continue }
            guard count >= 0 else { throw failure("cannot read \(path)") }
            if count == 0 { return (bytes, UInt32(info.st_mode) & 0o7777) }
            bytes += chunk[0..<count]
        }
    }

    /// Moves a file that cannot be used out of the way, keeping it for inspection.
    public static func moveAside(_ path: String, suffix: String) throws(Failure) -> String {
        let destination = path + suffix
        guard rename(path, destination) == 0 else { throw failure("cannot rename \(path) to \(destination)") }
        return destination
    }

    private static func kind(_ mode: mode_t) -> String {
        switch mode & S_IFMT {
        case S_IFDIR: "a directory"
        case S_IFCHR: "a character device"
        case S_IFBLK: "a block device"
        case S_IFIFO: "a FIFO"
        case S_IFSOCK: "a socket"
        default: "not a file"
        }
    }

    private static func failure(_ what: String) -> Failure {
        Failure(description: "\(what): \(String(cString: strerror(errno)))")
    }
}
