/// The commands Redis clients send on connecting or by habit (`HELLO`, `CLIENT SETNAME`, `SELECT 0`,
/// `COMMAND DOCS`, `CONFIG GET`), answered so that clients work unmodified with their defaults.
enum RedisCompatibility {
    static func parse<W: Words>(_ command: Command, _ words: inout W) throws(ProtocolError) -> Request {
        switch command {
        case .hello: return try hello(&words)
        case .client:
            let sub = words.next()!
            let count = words.remainingCount()
            if ASCII.equalsUppercased("SETNAME".utf8, sub), count == 1 { return .clientAcknowledged }
            if ASCII.equalsUppercased("SETINFO".utf8, sub), count == 2 { return .clientAcknowledged }
            throw ProtocolError(.unknownCommand, "unsupported CLIENT subcommand \(Printable.quote(sub)); usage: \(command.usage)")
        case .select:
            guard RequestParser.decimal(words.next()!, max: 1_000_000) == 0 else {
                throw ProtocolError(.wrongArguments, "ratelimitd has one database, 0")
            }
            return .select
        case .command:
            return .emptyListing
        case .config:
            let sub = words.next()!
            guard ASCII.equalsUppercased("GET".utf8, sub), words.remainingCount() >= 1 else {
                throw ProtocolError(.unknownCommand, "only CONFIG GET is supported")
            }
            var found: [ConfigParameter] = []
            while let pattern = words.next() {
                // Exact names only (case-insensitive); glob patterns match nothing.
                for parameter in ConfigParameter.allCases
                where ASCII.equalsUppercased(parameter.rawValue.uppercased().utf8, pattern) && !found.contains(parameter) {
                    found.append(parameter)
                }
            }
            return .configGet(found)
        case .check, .reset, .ping, .quit, .echo, .stats, .auth:
            preconditionFailure("\(command.name) is parsed by RequestParser")
        }
    }

    /// `HELLO [protover [AUTH username password] [SETNAME clientname]]`.
    private static func hello<W: Words>(_ words: inout W) throws(ProtocolError) -> Request {
        guard let versionWord = words.next() else { return .hello(version: nil, credentials: nil) }
        guard let version = RequestParser.decimal(versionWord, max: 99), version == 2 || version == 3 else {
            throw ProtocolError(.noproto, "unsupported protocol version \(Printable.quote(versionWord)); use 2 or 3")
        }
        var credentials: Credentials?
        while let option = words.next() {
            if ASCII.equalsUppercased("AUTH".utf8, option), words.remainingCount() >= 2 {
                let user = words.next()!
                credentials = Credentials(user: user.indices, token: words.next()!.indices)
            } else if ASCII.equalsUppercased("SETNAME".utf8, option), words.remainingCount() >= 1 {
                _ = words.next()
            } else {
                throw ProtocolError(.wrongArguments, "unexpected HELLO option \(Printable.quote(option))")
            }
        }
        return .hello(version: Int(version), credentials: credentials)
    }
}
