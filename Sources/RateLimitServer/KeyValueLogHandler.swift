import Logging

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// One event per line on standard error: `2026-11-29T03:07:06.123Z info listening on 127.0.0.1:7283 rules=1
/// shards=2`, the message first, then the metadata as sorted `key=value` pairs (quoted when a value has
/// spaces, quotes or control characters, so every line splits the same way). Under systemd, whose journal
/// stamps each line itself, the timestamp is left out and the line starts with the syslog priority
/// (`<6>`), which the journal turns into the entry's level.
///
/// swift-log's `StreamLogHandler` always writes a timestamp and puts metadata before the message, so this
/// small handler replaces it rather than wrapping it.
public struct KeyValueLogHandler: LogHandler {
    public var logLevel: Logger.Level = .info
    public var metadata: Logger.Metadata = [:]
    /// Whether lines are for the journal: no timestamp, a `<priority>` prefix.
    let journal: Bool
    let write: @Sendable (String) -> Void

    public init(journal: Bool, write: @escaping @Sendable (String) -> Void = KeyValueLogHandler.writeToStandardError) {
        self.journal = journal
        self.write = write
    }

    /// Whether standard error goes to the journal: systemd sets `JOURNAL_STREAM` to the device and inode of
    /// the stream it connected; a shell that merely inherited the variable has another standard error.
    public static var standardErrorIsJournal: Bool {
        guard let value = getenv("JOURNAL_STREAM") else { return false }
        let parts = String(cString: value).split(separator: ":")
        var status = stat()
        guard parts.count == 2, fstat(2, &status) == 0 else { return false }
        return UInt64(parts[0]) == UInt64(status.st_dev) && UInt64(parts[1]) == UInt64(status.st_ino)
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var line = journal ? "<\(Self.priority(event.level))>" : Self.timestamp() + " "
        line += "\(event.level) "
        line += Self.singleLine("\(event.message)")
        let merged = event.metadata.map { metadata.merging($0) { $1 } } ?? metadata
        for key in merged.keys.sorted() {
            // Keys are the program's own words; anything else in one becomes `_`, so the pairs always split.
            let safeKey = String(key.map { $0.isLetter || $0.isNumber || $0 == "_" || $0 == "." ? $0 : "_" })
            line += " \(safeKey)=\(Self.quoted("\(merged[key]!)"))"
        }
        write(line + "\n")
    }

    /// syslog(3) priorities, which the journal reads from the line's start.
    static func priority(_ level: Logger.Level) -> Int {
        switch level {
        case .trace, .debug: 7
        case .info: 6
        case .notice: 5
        case .warning: 4
        case .error: 3
        case .critical: 2
        }
    }

    static func quoted(_ value: String) -> String {
        let plain = !value.isEmpty && value.unicodeScalars.allSatisfy {
            $0.value > 0x20 && $0.value != 0x7F && $0 != "\"" && $0 != "=" && $0 != "\\"
        }
        if plain { return value }
        var out = "\""
        for scalar in value.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where scalar.value < 0x20 || scalar.value == 0x7F:
                out += "\\u{" + String(scalar.value, radix: 16) + "}"
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out + "\""
    }

    /// A message on one line: line breaks become `\n`, so one event is always one line.
    static func singleLine(_ text: String) -> String {
        guard text.contains(where: \.isNewline) else { return text }
        return text.replacingNewlines()
    }

    /// UTC, milliseconds, ISO 8601.
    static func timestamp() -> String {
        var spec = timespec()
        clock_gettime(CLOCK_REALTIME, &spec)
        var seconds = time_t(spec.tv_sec)
        var parts = tm()
        gmtime_r(&seconds, &parts)
        func two(_ value: Int32) -> String { value < 10 ? "0\(value)" : "\(value)" }
        let millis = Int(spec.tv_nsec / 1_000_000)
        let fraction = millis < 10 ? "00\(millis)" : millis < 100 ? "0\(millis)" : "\(millis)"
        return "\(parts.tm_year + 1900)-\(two(parts.tm_mon + 1))-\(two(parts.tm_mday))T\(two(parts.tm_hour)):"
            + "\(two(parts.tm_min)):\(two(parts.tm_sec)).\(fraction)Z"
    }

    public static let writeToStandardError: @Sendable (String) -> Void = { line in
        var text = line
        // One write(2) per line, so lines from several threads never interleave.
        #if canImport(Glibc)
        text.withUTF8 { bytes in _ = Glibc.write(2, bytes.baseAddress, bytes.count) }
        #elseif canImport(Musl)
        text.withUTF8 { bytes in _ = Musl.write(2, bytes.baseAddress, bytes.count) }
        #else
        text.withUTF8 { bytes in _ = Darwin.write(2, bytes.baseAddress, bytes.count) }
        #endif
    }
}

extension String {
    fileprivate func replacingNewlines() -> String {
        var out = ""
        for character in self {
            if character == "\r\n" || character == "\n" { out += "\\n" } else if character == "\r" { out += "\\r" } else { out.append(character) }
        }
        return out
    }
}
