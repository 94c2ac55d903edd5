import CHiredis
import DaemonConfig

#if canImport(Glibc)
import Glibc
#endif

/// A reply from Redis, copied out of hiredis's reply object (which is freed at once).
public enum RedisReply: Sendable, Hashable {
    case string([UInt8])
    case status(String)
    case error(String)
    case integer(Int64)
    case null
    case array([RedisReply])
}

/// The connection failed, timed out, or Redis refused to let us in; the connection cannot be used again.
public struct RedisError: Error, Sendable, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// One blocking connection to Redis through hiredis's synchronous API. Every call blocks the calling thread
/// for at most the timeout given at connect, so it belongs on a thread of its own, never on an event loop.
/// Not thread-safe: one thread at a time.
public final class RedisConnection {
    private let context: UnsafeMutablePointer<redisContext>

    private init(context: UnsafeMutablePointer<redisContext>) {
        self.context = context
    }

    deinit {
        redisFree(context)
    }

    /// Connects, logs in (AUTH) and selects the database. `timeoutMillis` bounds the connect and then
    /// every read and write.
    public static func connect(to endpoint: RedisEndpoint, timeoutMillis: Int) throws(RedisError) -> RedisConnection {
        let timeout = timeval(tv_sec: timeoutMillis / 1000, tv_usec: (timeoutMillis % 1000) * 1000)
        let opened: UnsafeMutablePointer<redisContext>? =
            switch endpoint.address {
            case .tcp(let host, let port): redisConnectWithTimeout(host, Int32(port), timeout)
            case .unix(let path): redisConnectUnixWithTimeout(path, timeout)
            }
        guard let opened else { throw RedisError("cannot allocate a hiredis context") }
        let connection = RedisConnection(context: opened)
        try connection.checkContext("connect to \(endpoint)")
        guard redisSetTimeout(opened, timeout) == REDIS_OK else {
            throw RedisError("cannot set timeouts on the connection to \(endpoint): \(connection.errorText)")
        }
        _ = redisEnableKeepAlive(opened)
        if let password = endpoint.password {
            let words = [Array("AUTH".utf8)] + (endpoint.user.map { [Array($0.utf8)] } ?? []) + [Array(password.utf8)]
            if case .error(let message) = try connection.command(words) {
                throw RedisError("Redis refused the password: \(message)")
            }
        }
        if endpoint.database != 0 {
            if case .error(let message) = try connection.command(["SELECT", "\(endpoint.database)"]) {
                throw RedisError("cannot select database \(endpoint.database): \(message)")
            }
        }
        return connection
    }

    /// Bounds every later read and write by `millis`.
    public func setTimeout(millis: Int) {
        let timeout = timeval(tv_sec: millis / 1000, tv_usec: (millis % 1000) * 1000)
        _ = redisSetTimeout(context, timeout)
    }

    /// Sends one command and waits for its reply. An error reply is returned, not thrown; only a broken
    /// connection throws.
    public func command(_ words: [[UInt8]]) throws(RedisError) -> RedisReply {
        try append(words)
        return try readReply()
    }

    public func command(_ words: [String]) throws(RedisError) -> RedisReply {
        try command(words.map { Array($0.utf8) })
    }

    /// Queues a command for the next flush without waiting; `readReply` later returns its reply, in order.
    public func append(_ words: [[UInt8]]) throws(RedisError) {
        let joined = words.flatMap { $0 }
        let status = joined.withUnsafeBytes { raw in
            var offset = 0
            let arguments = words.map { word in
                defer { offset += word.count }
                return UnsafeRawBufferPointer(rebasing: raw[offset..<(offset + word.count)])
            }
            return appendArguments(arguments)
        }
        guard status == REDIS_OK else { throw RedisError("cannot queue a command: \(errorText)") }
    }

    /// Queues commands already encoded as RESP; `readReply` later returns one reply per command, in order.
    public func append(formatted commands: UnsafeRawBufferPointer) throws(RedisError) {
        guard let base = commands.baseAddress, commands.count > 0 else { return }
        guard redisAppendFormattedCommand(context, base.assumingMemoryBound(to: CChar.self), commands.count) == REDIS_OK else {
            throw RedisError("cannot queue commands: \(errorText)")
        }
    }

    private func appendArguments(_ arguments: [UnsafeRawBufferPointer]) -> Int32 {
        // hiredis copies the arguments while appending, so the pointers need to live only for this call.
        var argv: [UnsafePointer<CChar>?] = arguments.map {
            ($0.baseAddress ?? UnsafeRawPointer(StaticString("").utf8Start)).assumingMemoryBound(to: CChar.self)
        }
        let lengths = arguments.map(\.count)
        return redisAppendCommandArgv(context, Int32(arguments.count), &argv, lengths)
    }

    /// Writes whatever is queued, without waiting for replies (so several servers can work at once).
    public func flush() throws(RedisError) {
        var done: Int32 = 0
        while done == 0 {
            guard redisBufferWrite(context, &done) == REDIS_OK else { throw RedisError("cannot send: \(errorText)") }
        }
    }

    /// Writes whatever is queued, then reads the next reply.
    public func readReply() throws(RedisError) -> RedisReply {
        var raw: UnsafeMutableRawPointer?
        guard redisGetReply(context, &raw) == REDIS_OK, let raw else {
            throw RedisError(errorText)
        }
        defer { freeReplyObject(raw) }
        return Self.convert(raw.assumingMemoryBound(to: redisReply.self))
    }

    static func convert(_ reply: UnsafePointer<redisReply>) -> RedisReply {
        let value = reply.pointee
        func bytes() -> [UInt8] {
            guard let text = value.str, value.len > 0 else { return [] }
            return Array(UnsafeRawBufferPointer(start: text, count: value.len))
        }
        switch value.type {
        case REDIS_REPLY_STRING: return .string(bytes())
        case REDIS_REPLY_STATUS: return .status(String(decoding: bytes(), as: UTF8.self))
        case REDIS_REPLY_ERROR: return .error(String(decoding: bytes(), as: UTF8.self))
        case REDIS_REPLY_INTEGER: return .integer(Int64(value.integer))
        case REDIS_REPLY_ARRAY:
            guard let elements = value.element else { return .array([]) }
            return .array((0..<value.elements).map { index in
                elements[index].map { convert($0) } ?? .null
            })
        default: return .null
        }
    }

    private var errorText: String {
        context.pointee.err == 0 ? "no reply" : String(cString: chiredis_error_text(context))
    }

    private func checkContext(_ doing: String) throws(RedisError) {
        guard context.pointee.err == 0 else { throw RedisError("cannot \(doing): \(errorText)") }
    }
}
