/// The command table: every command's name, its argument count and its usage, in one place, so lookup and
/// arity are checked before any command-specific parsing runs (as Redis does with its command table).
public enum Command: CaseIterable, Sendable {
    case check, reset, ping, quit

    public var name: String {
        switch self {
        case .check: "CHECK"
        case .reset: "RESET"
        case .ping: "PING"
        case .quit: "QUIT"
        }
    }

    /// How many words may follow the command word.
    public var arguments: ClosedRange<Int> {
        switch self {
        case .check: 1...4
        case .reset: 1...1
        case .ping, .quit: 0...0
        }
    }

    public var usage: String {
        switch self {
        case .check: "CHECK <key> [<cost>] or CHECK <key> <cost> <limit>/<window> [<algorithm>]"
        case .reset: "RESET <key>"
        case .ping: "PING"
        case .quit: "QUIT"
        }
    }

    /// The longest command word, which bounds the work of a lookup.
    static let longestName = allCases.map(\.name.utf8.count).max() ?? 0

    /// Case-insensitive lookup of a command word.
    static func lookup(_ word: UnsafeRawBufferPointer.SubSequence) -> Command? {
        guard word.count <= longestName else { return nil }
        return allCases.first { command in
            command.name.utf8.count == word.count
                && zip(command.name.utf8, word).allSatisfy { expected, byte in
                    // ASCII upper-casing: clearing bit 5 maps a-z onto A-Z.
                    expected == (byte >= 0x61 && byte <= 0x7A ? byte & 0xDF : byte)
                }
        }
    }
}
