/// The command table: every command's name, its argument count, its usage and which protocols offer it, in
/// one place, so lookup and arity are checked before any command-specific parsing runs (as Redis does with
/// its command table).
public enum Command: CaseIterable, Sendable {
    case check, reset, ping, quit, stats, auth
    /// Commands Redis clients send on connecting or by habit; offered over RESP only.
    case hello, echo, client, select, command, config

    public var name: String {
        switch self {
        case .check: "CHECK"
        case .reset: "RESET"
        case .ping: "PING"
        case .quit: "QUIT"
        case .stats: "STATS"
        case .auth: "AUTH"
        case .hello: "HELLO"
        case .echo: "ECHO"
        case .client: "CLIENT"
        case .select: "SELECT"
        case .command: "COMMAND"
        case .config: "CONFIG"
        }
    }

    /// How many words may follow the command word.
    public var arguments: ClosedRange<Int> {
        switch self {
        case .check: 1...4
        case .reset, .echo, .select: 1...1
        case .ping: 0...1
        case .auth: 1...2
        case .quit, .stats: 0...0
        case .hello: 0...6
        case .client, .config: 1...15
        case .command: 0...15
        }
    }

    public var usage: String {
        switch self {
        case .check: "CHECK <key> [<cost>] or CHECK <key> <cost> <limit>/<window> [<algorithm>]"
        case .reset: "RESET <key>"
        case .ping: "PING [<message>]"
        case .quit: "QUIT"
        case .stats: "STATS"
        case .auth: "AUTH <token> or AUTH default <token>"
        case .hello: "HELLO [<protover> [AUTH <username> <password>] [SETNAME <clientname>]]"
        case .echo: "ECHO <message>"
        case .client: "CLIENT SETNAME <name> or CLIENT SETINFO <attribute> <value>"
        case .select: "SELECT 0"
        case .command: "COMMAND [<subcommand> ...]"
        case .config: "CONFIG GET <parameter> ..."
        }
    }

    /// Whether the line protocol offers the command too; the Redis-compatibility commands need RESP's
    /// reply types.
    public var inLineProtocol: Bool {
        switch self {
        case .check, .reset, .ping, .quit, .stats, .auth: true
        case .hello, .echo, .client, .select, .command, .config: false
        }
    }

    /// The longest command word, which bounds the work of a lookup.
    static let longestName = allCases.map(\.name.utf8.count).max() ?? 0

    /// Case-insensitive lookup of a command word. `CHECK` is tried first: it is nearly every request.
    static func lookup(_ word: UnsafeRawBufferPointer.SubSequence) -> Command? {
        guard word.count <= longestName, word.count >= 4 else { return nil }
        if word.count == 5, ASCII.equalsUppercased("CHECK", word) { return .check }
        return allCases.first { command in
            command.name.utf8.count == word.count && ASCII.equalsUppercased(command.name.utf8, word)
        }
    }
}

enum ASCII {
    /// Whether `word` equals `upper` (an upper-case ASCII word) ignoring letter case.
    @inline(__always)
    static func equalsUppercased(_ upper: StaticString, _ word: UnsafeRawBufferPointer.SubSequence) -> Bool {
        guard upper.utf8CodeUnitCount == word.count else { return false }
        var index = word.startIndex
        for offset in 0..<upper.utf8CodeUnitCount {
            let byte = word[index]
            // ASCII upper-casing: clearing bit 5 maps a-z onto A-Z.
            guard upper.utf8Start[offset] == (byte >= 0x61 && byte <= 0x7A ? byte & 0xDF : byte) else { return false }
            index += 1
        }
        return true
    }

    /// Whether `word` equals `upper` (an upper-case ASCII word) ignoring letter case.
    static func equalsUppercased(_ upper: some Sequence<UInt8>, _ word: UnsafeRawBufferPointer.SubSequence) -> Bool {
        var iterator = word.makeIterator()
        for expected in upper {
            guard let byte = iterator.next() else { return false }
            // ASCII upper-casing: clearing bit 5 maps a-z onto A-Z.
            guard expected == (byte >= 0x61 && byte <= 0x7A ? byte & 0xDF : byte) else { return false }
        }
        return iterator.next() == nil
    }
}
