/// Where Redis is and how to log in, from a URL in the forms Redis clients share:
/// `redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]` (IPv6 hosts in brackets) or
/// `unix://[[USER]:PASSWORD@]/PATH[?db=DB]`. The password may be percent-encoded.
public struct RedisEndpoint: Sendable, Hashable, CustomStringConvertible {
    public enum Address: Sendable, Hashable {
        case tcp(host: String, port: Int)
        case unix(path: String)
    }

    public var address: Address
    /// Redis 6 ACL user; nil logs in as `default` with the password alone.
    public var user: String?
    public var password: String?
    public var database: Int

    public static let defaultPort = 6379

    public init(address: Address, user: String? = nil, password: String? = nil, database: Int = 0) {
        self.address = address
        self.user = user
        self.password = password
        self.database = database
    }

    /// Parses `url`; the error says what is wrong with it, in words for the operator.
    public init(parsing url: String) throws(RedisURLError) {
        if url.hasPrefix("rediss://") {
            throw RedisURLError(
                "rediss:// (TLS) is not supported: the system's hiredis is built without TLS; reach a remote "
                    + "Redis through a TLS tunnel (stunnel, spiped) listening on loopback, or use a unix socket")
        }
        let isUnix: Bool
        var rest: Substring
        if url.hasPrefix("redis://") {
            isUnix = false
            rest = url.dropFirst("redis://".count)
        } else if url.hasPrefix("unix://") {
            isUnix = true
            rest = url.dropFirst("unix://".count)
        } else {
            throw RedisURLError("must start with redis:// or unix://, got \"\(url)\"")
        }
        var user: String?
        var password: String?
        if let at = rest.lastIndex(of: "@") {
            let credentials = rest[..<at]
            rest = rest[rest.index(after: at)...]
            if let colon = credentials.firstIndex(of: ":") {
                let name = credentials[..<colon]
                user = name.isEmpty ? nil : try Self.percentDecoded(name)
                password = try Self.percentDecoded(credentials[credentials.index(after: colon)...])
            } else {
                // `redis://secret@host`, as some clients accept: a password with no user.
                password = try Self.percentDecoded(credentials)
            }
            if password?.isEmpty == true { password = nil }
        }
        if isUnix {
            var database = 0
            if let question = rest.firstIndex(of: "?") {
                let query = rest[rest.index(after: question)...]
                rest = rest[..<question]
                guard query.hasPrefix("db=") else { throw RedisURLError("the only query setting is db=N, got \"?\(query)\"") }
                database = try Self.database(query.dropFirst(3))
            }
            guard rest.hasPrefix("/"), rest.count > 1 else {
                throw RedisURLError("unix:// needs an absolute socket path, as in unix:///run/redis/redis.sock")
            }
            self.init(address: .unix(path: String(rest)), user: user, password: password, database: database)
            return
        }
        var database = 0
        if let slash = rest.firstIndex(of: "/") {
            let path = rest[rest.index(after: slash)...]
            rest = rest[..<slash]
            if !path.isEmpty { database = try Self.database(path) }
        }
        let host: Substring
        var port = Self.defaultPort
        var portText: Substring?
        if rest.hasPrefix("[") {
            guard let close = rest.firstIndex(of: "]") else { throw RedisURLError("unclosed [ in the host") }
            host = rest[rest.index(after: rest.startIndex)..<close]
            let after = rest[rest.index(after: close)...]
            if !after.isEmpty {
                guard after.hasPrefix(":") else { throw RedisURLError("expected :PORT after ]") }
                portText = after.dropFirst()
            }
        } else if let colon = rest.firstIndex(of: ":") {
            host = rest[..<colon]
            portText = rest[rest.index(after: colon)...]
        } else {
            host = rest
        }
        guard !host.isEmpty else { throw RedisURLError("no host in \"\(url)\"") }
        if let portText {
            guard portText.count <= 5, portText.allSatisfy({ $0.isASCII && $0.isNumber }), let value = Int(portText),
                (1...65_535).contains(value)
            else { throw RedisURLError("the port must be 1 to 65535, got \"\(portText)\"") }
            port = value
        }
        self.init(address: .tcp(host: String(host), port: port), user: user, password: password, database: database)
    }

    private static func database(_ text: Substring) throws(RedisURLError) -> Int {
        guard text.count <= 9, text.allSatisfy({ $0.isASCII && $0.isNumber }), let value = Int(text) else {
            throw RedisURLError("the database must be a number such as 0, got \"\(text)\"")
        }
        return value
    }

    private static func percentDecoded(_ text: Substring) throws(RedisURLError) -> String {
        var bytes: [UInt8] = []
        var utf8 = Array(text.utf8)[...]
        while let byte = utf8.popFirst() {
            guard byte == UInt8(ascii: "%") else {
                bytes.append(byte)
                continue
            }
            guard utf8.count >= 2, let value = UInt8(String(decoding: utf8.prefix(2), as: UTF8.self), radix: 16) else {
                throw RedisURLError("bad percent-encoding in the credentials")
            }
            bytes.append(value)
            utf8 = utf8.dropFirst(2)
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// The URL with the password masked, for logs and `--check-config`.
    public var description: String {
        var credentials = ""
        if user != nil || password != nil {
            credentials = (user ?? "") + (password != nil ? ":***" : "") + "@"
        }
        switch address {
        case .tcp(let host, let port):
            let shownHost = host.contains(":") ? "[\(host)]" : host
            return "redis://\(credentials)\(shownHost):\(port)/\(database)"
        case .unix(let path):
            return "unix://\(credentials)\(path)" + (database == 0 ? "" : "?db=\(database)")
        }
    }
}

public struct RedisURLError: Error, Sendable, Hashable, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}
