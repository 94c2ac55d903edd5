#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A plain blocking TCP client for tests: what `nc` does, with a receive timeout so a broken server fails
/// the test instead of hanging it.
///
/// `@unchecked Sendable` so one thread may send while another reads: `send` touches only the immutable
/// descriptor (the kernel orders concurrent calls), and the read buffer is used by the reading thread alone.
public final class LineClient: @unchecked Sendable {
    public struct Failure: Error, CustomStringConvertible {
        public let description: String

        public init(description: String) {
            self.description = description
        }
    }

    private let fd: Int32
    private var pending: [UInt8] = []
    private var pendingStart = 0
    public private(set) var sawEOF = false

    public init(port: Int, host: String = "127.0.0.1", timeoutSeconds: Int = 15) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw Failure(description: "socket() failed: errno \(errno)") }
        var timeout = timeval(tv_sec: timeoutSeconds, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        inet_pton(AF_INET, host, &address.sin_addr)
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard result == 0 else {
            Glibc.close(fd)
            throw Failure(description: "connect to \(host):\(port) failed: errno \(errno)")
        }
    }

    deinit { Glibc.close(fd) }

    public func send(_ text: String) throws {
        try send(bytes: Array(text.utf8))
    }

    public func send(bytes: [UInt8]) throws {
        var offset = 0
        while offset < bytes.count {
            let written = bytes[offset...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            guard written > 0 else { throw Failure(description: "send failed: errno \(errno)") }
            offset += written
        }
    }

    /// How long a read waits before it fails.
    public func setReceiveTimeout(milliseconds: Int) {
        var timeout = timeval(tv_sec: milliseconds / 1000, tv_usec: Int((milliseconds % 1000) * 1000))
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }

    /// Closes the sending side, as `nc -N` does at the end of its input.
    public func shutdownWrite() {
        shutdown(fd, Int32(SHUT_WR))
    }

    /// The next line without its newline, or nil at end of stream.
    public func readLine() throws -> String? {
        while true {
            if let newline = pending[pendingStart...].firstIndex(of: UInt8(ascii: "\n")) {
                let line = String(decoding: pending[pendingStart..<newline], as: UTF8.self)
                pendingStart = newline + 1
                if pendingStart > 1 << 16 {
                    pending.removeFirst(pendingStart)
                    pendingStart = 0
                }
                return line
            }
            if sawEOF { return nil }
            try fill()
        }
    }

    public func readLines(_ count: Int) throws -> [String] {
        var lines: [String] = []
        lines.reserveCapacity(count)
        for _ in 0..<count {
            guard let line = try readLine() else { throw Failure(description: "EOF after \(lines.count) of \(count) lines") }
            lines.append(line)
        }
        return lines
    }

    /// Sends one request and returns its one-line reply.
    public func request(_ line: String) throws -> String {
        try send(line + "\n")
        guard let reply = try readLine() else { throw Failure(description: "connection closed before a reply to \(line)") }
        return reply
    }

    /// Sends `STATS` and returns its counters by name (the `STAT name value` lines up to `END`).
    public func statistics() throws -> [String: Int64] {
        try send("STATS\n")
        var values: [String: Int64] = [:]
        while let line = try readLine(), line != "END" {
            let parts = line.split(separator: " ")
            guard parts.count == 3, parts[0] == "STAT" else { throw Failure(description: "not a STAT line: \(line)") }
            values[String(parts[1])] = Int64(parts[2])
        }
        return values
    }

    /// Reads until the server closes; returns whatever complete lines came.
    public func readUntilClosed() throws -> [String] {
        var lines: [String] = []
        while let line = try readLine() { lines.append(line) }
        return lines
    }

    private func fill() throws {
        var chunk = [UInt8](repeating: 0, count: 65_536)
        let count = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        if count == 0 { sawEOF = true; return }
        guard count > 0 else {
            if errno == ECONNRESET { sawEOF = true; return }
            throw Failure(description: "recv failed or timed out: errno \(errno)")
        }
        pending.append(contentsOf: chunk[0..<count])
    }
}
