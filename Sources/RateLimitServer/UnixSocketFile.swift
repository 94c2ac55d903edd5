#if canImport(Glibc)
import Glibc
#endif
import NIOCore
import NIOPosix

/// The client protocols' unix socket file: never taken from a process still listening on it, given its
/// mode as soon as it is bound, and removed at close only while it is still this listener's file.
enum UnixSocketFile {
    /// Binds `bootstrap` at `path` (replacing a stale socket file, refusing a live one) and sets `mode`.
    /// Until then the file has the umask's bits (the unit's `UMask=0077`: its own user only).
    static func bind(path: String, mode: UInt32, _ bootstrap: ServerBootstrap) async throws -> any Channel {
        if answers(path) {
            throw UnixSocketError(description: "cannot listen on the unix socket \(path): another process is listening on it")
        }
        let listener: any Channel
        do {
            listener = try await bootstrap.bind(unixDomainSocketPath: path, cleanupExistingSocketFile: true).get()
        } catch {
            throw UnixSocketError(description: "cannot listen on the unix socket \(path): \(error)")
        }
        var bound = stat()
        guard stat(path, &bound) == 0, chmod(path, mode_t(mode)) == 0 else {
            let reason = String(cString: strerror(errno))
            try? await listener.close()
            unlink(path)
            throw UnixSocketError(description: "cannot set the mode of the unix socket \(path): \(reason)")
        }
        let identity = (device: bound.st_dev, inode: bound.st_ino)
        listener.closeFuture.whenComplete { _ in
            // Another daemon may have taken the path since (after this one was stopped, say): its file stays.
            var now = stat()
            if stat(path, &now) == 0, now.st_dev == identity.device, now.st_ino == identity.inode { unlink(path) }
        }
        return listener
    }

    /// Whether a process accepts connections on the socket file at `path`.
    private static func answers(_ path: String) -> Bool {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else { return false }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        return withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) == 0
            }
        }
    }
}

public struct UnixSocketError: Error, CustomStringConvertible {
    public let description: String
}
