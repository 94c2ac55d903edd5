/// A configuration that cannot be used, with enough context to find the mistake: the file, the rule
/// (number and name) or section, and the field.
public struct ConfigError: Error, Sendable, Hashable, CustomStringConvertible {
    public var file: String
    /// `[server]`, or `rules[2] "login"` for the second `[[rules]]` table; nil for the file as a whole.
    public var location: String?
    public var field: String?
    public var message: String

    public init(file: String, location: String? = nil, field: String? = nil, message: String) {
        self.file = file
        self.location = location
        self.field = field
        self.message = message
    }

    public var description: String {
        var text = file
        if let location { text += ": \(location)" }
        if let field { text += ": \(field)" }
        return text + ": " + message
    }
}
