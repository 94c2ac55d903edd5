/// Which keys a rule covers: one exact key, or every key with a prefix (`login:*`; `*` alone is every key).
public enum KeyPattern: Sendable, Hashable {
    case exact(String)
    case prefix(String)

    /// Parses a `match` value; a `*` anywhere but at the end is refused, as are bytes a key cannot contain.
    public init(parsing text: String) throws(LimitError.PatternError) {
        let bytes = Array(text.utf8)
        let body = bytes.last == UInt8(ascii: "*") ? bytes.dropLast() : bytes[...]
        if body.contains(UInt8(ascii: "*")) {
            throw .init("'*' may only end a pattern (\"login:*\"), got \"\(text)\"")
        }
        guard body.allSatisfy(KeyRules.isKeyByte) else {
            throw .init("patterns hold printable ASCII without spaces, got \"\(text)\"")
        }
        guard body.count <= KeyRules.maxKeyLength else {
            throw .init("patterns are at most \(KeyRules.maxKeyLength) bytes")
        }
        let bodyText = String(decoding: body, as: UTF8.self)
        if bytes.last == UInt8(ascii: "*") {
            self = .prefix(bodyText)
        } else {
            guard !body.isEmpty else { throw .init("a pattern cannot be empty; use \"*\" to match every key") }
            self = .exact(bodyText)
        }
    }

    /// The pattern as written in the configuration.
    public var text: String {
        switch self {
        case .exact(let key): key
        case .prefix(let prefix): prefix + "*"
        }
    }
}

extension LimitError {
    /// A `match` value that is not a valid pattern.
    public struct PatternError: Error, Sendable, Hashable {
        public let message: String
        init(_ message: String) { self.message = message }
    }
}

/// What a key may be: 1 to 256 bytes of printable ASCII, no spaces (DESIGN.md §2).
public enum KeyRules {
    public static let maxKeyLength = 256

    @inlinable
    public static func isKeyByte(_ byte: UInt8) -> Bool {
        byte > 0x20 && byte < 0x7F
    }
}
