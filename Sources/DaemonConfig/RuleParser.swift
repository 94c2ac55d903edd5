import RateLimiting
import TOMLKit

/// The `[[rules]]` tables of a configuration file.
enum RuleParser {
    static func parse(_ array: TOMLArray, file: String) throws(ConfigError) -> [Rule] {
        var rules: [Rule] = []
        for (offset, element) in array.enumerated() {
            let number = offset + 1
            guard let table = element.table else {
                throw ConfigError(file: file, location: "rules[\(number)]", message: "must be a table ([[rules]])")
            }
            rules.append(try parseRule(table, number: number, file: file))
        }
        do {
            _ = try RuleSet(rules)
        } catch {
            throw ConfigError(file: file, location: "rules[\(error.ruleIndex + 1)] \"\(error.ruleName)\"",
                              field: error.field, message: error.message)
        }
        return rules
    }

    private static func parseRule(_ table: TOMLTable, number: Int, file: String) throws(ConfigError) -> Rule {
        var location = "rules[\(number)]"
        func fail(_ field: String, _ message: String) -> ConfigError {
            ConfigError(file: file, location: location, field: field, message: message)
        }
        guard let name = table["name"]?.string, !name.isEmpty else {
            throw fail("name", "every rule needs a non-empty name = \"...\"")
        }
        location += " \"\(name)\""
        // Metrics count requests' own limits under this name.
        guard name != "(request)" else { throw fail("name", "\"(request)\" is reserved for limits given in requests") }
        try ConfigFile.rejectUnknown(table, allowed: ConfigFile.ruleKeys, file: file, location: location)

        guard let matchText = table["match"]?.string else {
            throw fail("match", "required: an exact key, or a prefix ending in '*' (\"login:*\", or \"*\" for all)")
        }
        let pattern: KeyPattern
        do { pattern = try KeyPattern(parsing: matchText) } catch { throw fail("match", error.message) }

        guard let algorithmText = table["algorithm"]?.string else {
            throw fail("algorithm", "required: one of \(Algorithm.namesList)")
        }
        guard let algorithm = Algorithm(rawValue: algorithmText) else {
            throw fail("algorithm", "unknown algorithm \"\(algorithmText)\"; expected one of \(Algorithm.namesList)")
        }
        guard let limitValue = table["limit"] else { throw fail("limit", "required: units per window, e.g. limit = 100") }
        guard let count = limitValue.int else {
            throw fail("limit", "must be an integer, got \(limitValue.debugDescription)")
        }
        guard let windowValue = table["window"] else { throw fail("window", "required: e.g. window = \"1m\"") }
        guard let windowText = windowValue.string, let window = WindowDuration.parseNanos(windowText) else {
            throw fail("window", "must be a duration string such as \"250ms\", \"10s\", \"15m\", \"1h\", \"1d\", got \(windowValue.debugDescription)")
        }
        var burst: Int64?
        if let burstValue = table["burst"] {
            guard let value = burstValue.int else {
                throw fail("burst", "must be an integer, got \(burstValue.debugDescription)")
            }
            burst = Int64(value)
        }
        do {
            let limit = try Limit(algorithm: algorithm, limit: Int64(count), windowNanos: window, burst: burst)
            return Rule(name: name, pattern: pattern, limit: limit)
        } catch {
            throw fail(error.field.rawValue, error.message)
        }
    }
}
