/// Why an Envoy rate limit configuration was refused: the file, where in it (line, and the descriptor path
/// from the domain down, `domain.key_value.key`), and what is wrong, as start-up and reloads report it.
public struct EnvoyConfigError: Error, Sendable, Hashable, CustomStringConvertible {
    public let file: String
    public let line: Int?
    public let path: String?
    public let message: String

    public init(file: String, line: Int? = nil, path: String? = nil, _ message: String) {
        self.file = file
        self.line = line
        self.path = path
        self.message = message
    }

    public var description: String {
        var text = file
        if let line { text += ":\(line)" }
        if let path, !path.isEmpty { text += ": descriptor \(path)" }
        return text + ": " + message
    }
}
