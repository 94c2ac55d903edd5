import Foundation
import RateLimiting
import Yams

/// Reads envoyproxy/ratelimit's YAML: one file, or every `.yaml`/`.yml` file of a directory (one domain
/// each). Stricter than envoyproxy/ratelimit in one way: a field is checked against the fields of the
/// level it is at (envoyproxy/ratelimit accepts any known name anywhere and ignores it where it does not
/// belong, so a `unit:` one level too high silently means no limit).
public enum EnvoyRulesLoader {
    static let rootFields: Set<String> = ["domain", "descriptors"]
    static let descriptorFields: Set<String> = [
        "key", "value", "rate_limit", "descriptors", "shadow_mode", "quota_mode", "detailed_metric",
        "value_to_metric", "share_threshold", "metadata",
    ]
    static let rateLimitFields: Set<String> = [
        "unit", "requests_per_unit", "unlimited", "name", "replaces", "algorithm", "burst",
    ]
    static let replacesFields: Set<String> = ["name"]

    /// Loads `path`: a YAML file, or a directory whose `.yaml` and `.yml` files (not those starting with
    /// `.`) are each one domain.
    public static func load(path: String) throws(EnvoyConfigError) -> EnvoyRuleSet {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw EnvoyConfigError(file: path, "no such file or directory")
        }
        var files: [String] = []
        if isDirectory.boolValue {
            let names: [String]
            do { names = try FileManager.default.contentsOfDirectory(atPath: path) } catch {
                throw EnvoyConfigError(file: path, "cannot list the directory: \(error.localizedDescription)")
            }
            files = names.filter { !$0.hasPrefix(".") && ($0.hasSuffix(".yaml") || $0.hasSuffix(".yml")) }.sorted()
                .map { (path as NSString).appendingPathComponent($0) }
        } else {
            files = [path]
        }
        var domains: [String: EnvoyDomain] = [:]
        for file in files {
            let text: String
            do { text = try String(contentsOfFile: file, encoding: .utf8) } catch {
                throw EnvoyConfigError(file: file, "cannot read: \(error.localizedDescription)")
            }
            let domain = try parse(yaml: text, file: file)
            if let earlier = domains[domain.name] {
                throw EnvoyConfigError(file: file, "duplicate domain '\(domain.name)' (also in \(earlier.file))")
            }
            domains[domain.name] = domain
        }
        return EnvoyRuleSet(domains: domains)
    }

    /// Parses one file's text: one domain.
    public static func parse(yaml: String, file: String) throws(EnvoyConfigError) -> EnvoyDomain {
        let root: Node?
        do { root = try Yams.compose(yaml: yaml) } catch {
            throw EnvoyConfigError(file: file, "not valid YAML: \(error)")
        }
        guard let root, let mapping = root.mapping else {
            throw EnvoyConfigError(file: file, line: root?.mark?.line, "the file must be a mapping with 'domain' and 'descriptors'")
        }
        let context = Context(file: file)
        try context.checkFields(mapping, allowed: rootFields, path: nil, what: "the top level")
        guard let domain = try context.string(mapping, "domain", path: nil), !domain.isEmpty else {
            throw EnvoyConfigError(file: file, line: root.mark?.line, "'domain' must be a non-empty string")
        }
        let level = try context.level(mapping["descriptors"], path: domain)
        return EnvoyDomain(name: domain, descriptors: level, file: file)
    }

    /// Descriptors one file may hold. YAML aliases can repeat a subtree, so a short file could otherwise
    /// describe billions of nodes and hang a start-up or a reload.
    public static let maxDescriptorsPerFile = 100_000

    final class Budget {
        var descriptors = 0
    }

    struct Context {
        let file: String
        let budget = Budget()

        func error(_ node: Node?, path: String?, _ message: String) -> EnvoyConfigError {
            EnvoyConfigError(file: file, line: node?.mark?.line, path: path, message)
        }

        func checkFields(_ mapping: Node.Mapping, allowed: Set<String>, path: String?, what: String) throws(EnvoyConfigError) {
            var seen: Set<String> = []
            for (key, _) in mapping {
                guard let name = key.scalar?.string else {
                    throw error(key, path: path, "a field name must be a string")
                }
                guard allowed.contains(name) else {
                    throw error(key, path: path, "unknown field '\(name)' in \(what) (allowed: \(allowed.sorted().joined(separator: ", ")))")
                }
                guard seen.insert(name).inserted else {
                    throw error(key, path: path, "field '\(name)' given twice")
                }
            }
        }

        func string(_ mapping: Node.Mapping, _ field: String, path: String?) throws(EnvoyConfigError) -> String? {
            guard let node = mapping[field] else { return nil }
            guard let scalar = node.scalar, node.null == nil else {
                throw error(node, path: path, "'\(field)' must be a string")
            }
            return scalar.string
        }

        func bool(_ mapping: Node.Mapping, _ field: String, path: String?) throws(EnvoyConfigError) -> Bool {
            guard let node = mapping[field] else { return false }
            guard node.scalar != nil, let value = node.bool else {
                throw error(node, path: path, "'\(field)' must be true or false")
            }
            return value
        }

        func integer(_ mapping: Node.Mapping, _ field: String, path: String?, range: ClosedRange<Int64>) throws(EnvoyConfigError) -> Int64? {
            guard let node = mapping[field] else { return nil }
            guard let text = node.scalar?.string, let value = Int64(text), range.contains(value) else {
                throw error(node, path: path, "'\(field)' must be an integer from \(range.lowerBound) to \(range.upperBound)")
            }
            return value
        }

        func level(_ node: Node?, path: String) throws(EnvoyConfigError) -> EnvoyDescriptorLevel {
            var level = EnvoyDescriptorLevel()
            guard let node, node.null == nil else { return level }
            guard let sequence = node.sequence else {
                throw error(node, path: path, "'descriptors' must be a list")
            }
            for item in sequence {
                budget.descriptors += 1
                guard budget.descriptors <= EnvoyRulesLoader.maxDescriptorsPerFile else {
                    throw error(item, path: path, "more than \(EnvoyRulesLoader.maxDescriptorsPerFile) descriptors in one file (aliases count each time they are used)")
                }
                guard let mapping = item.mapping else {
                    throw error(item, path: path, "each descriptor must be a mapping with at least 'key'")
                }
                try checkFields(mapping, allowed: EnvoyRulesLoader.descriptorFields, path: path, what: "a descriptor")
                guard let key = try string(mapping, "key", path: path), !key.isEmpty else {
                    throw error(item, path: path, "a descriptor needs a non-empty 'key'")
                }
                let value = try string(mapping, "value", path: path) ?? ""
                let nodePath = path + "." + (value.isEmpty ? key : key + "_" + value)
                let shareThreshold = try bool(mapping, "share_threshold", path: nodePath)
                if shareThreshold, !WildcardPattern.isWildcard(value) {
                    throw error(item, path: nodePath, "'share_threshold' applies only to a value with a '*' wildcard")
                }
                let descriptor = EnvoyDescriptorNode(
                    key: key, value: value,
                    rateLimit: try rateLimit(mapping["rate_limit"], path: nodePath),
                    shadowMode: try bool(mapping, "shadow_mode", path: nodePath),
                    quotaMode: try bool(mapping, "quota_mode", path: nodePath),
                    detailedMetric: try bool(mapping, "detailed_metric", path: nodePath),
                    valueToMetric: try bool(mapping, "value_to_metric", path: nodePath),
                    shareThreshold: shareThreshold,
                    children: try self.level(mapping["descriptors"], path: nodePath),
                    path: nodePath)
                let duplicate: Bool
                let keyBytes = Array(key.utf8)
                if value.isEmpty {
                    duplicate = level.keyOnly.updateValue(descriptor, forKey: keyBytes) != nil
                } else if WildcardPattern.isWildcard(value) {
                    duplicate = level.wildcards.contains { $0.key == keyBytes && Array($0.node.value.utf8) == Array(value.utf8) }
                    level.wildcards.append((keyBytes, WildcardPattern(value), descriptor))
                } else {
                    duplicate = level.exact.updateValue(descriptor, forKey: .init(key: keyBytes, value: Array(value.utf8))) != nil
                }
                if duplicate {
                    throw error(item, path: nodePath, "duplicate descriptor: this key and value are already configured at this level")
                }
            }
            return level
        }

        func rateLimit(_ node: Node?, path: String) throws(EnvoyConfigError) -> EnvoyLimit? {
            guard let node, node.null == nil else { return nil }
            guard let mapping = node.mapping else {
                throw error(node, path: path, "'rate_limit' must be a mapping")
            }
            try checkFields(mapping, allowed: EnvoyRulesLoader.rateLimitFields, path: path, what: "rate_limit")
            let unlimited = try bool(mapping, "unlimited", path: path)
            let unitName = try string(mapping, "unit", path: path)
            let unit = try unitName.map { name throws(EnvoyConfigError) -> EnvoyUnit in
                guard let unit = EnvoyUnit(name: name) else {
                    throw error(mapping["unit"], path: path,
                        "invalid rate limit unit '\(name)' (one of \(EnvoyUnit.allCases.map(\.rawValue).joined(separator: ", ")))")
                }
                return unit
            }
            let name = try string(mapping, "name", path: path)
            var replaces: [String] = []
            if let list = mapping["replaces"], list.null == nil {
                guard let sequence = list.sequence else { throw error(list, path: path, "'replaces' must be a list of {name: …}") }
                for item in sequence {
                    guard let entry = item.mapping else { throw error(item, path: path, "'replaces' must be a list of {name: …}") }
                    try checkFields(entry, allowed: EnvoyRulesLoader.replacesFields, path: path, what: "a replaces entry")
                    guard let replaced = try string(entry, "name", path: path), !replaced.isEmpty else {
                        throw error(item, path: path, "a replaces entry needs a non-empty 'name'")
                    }
                    guard replaced != name else {
                        throw error(item, path: path, "a limit cannot replace itself ('\(replaced)')")
                    }
                    replaces.append(replaced)
                }
            }
            let requests = try integer(mapping, "requests_per_unit", path: path, range: 0...Int64(UInt32.max))
            let algorithmName = try string(mapping, "algorithm", path: path)
            let algorithm = try algorithmName.map { text throws(EnvoyConfigError) -> Algorithm in
                guard let algorithm = Algorithm(rawValue: text) else {
                    throw error(mapping["algorithm"], path: path, "unknown algorithm '\(text)' (one of \(Algorithm.namesList))")
                }
                return algorithm
            } ?? .fixedWindow
            let burst = try integer(mapping, "burst", path: path, range: 1...Limit.maxLimit)
            if unlimited {
                guard unit == nil, requests == nil, algorithmName == nil, burst == nil else {
                    throw error(node, path: path, "an unlimited rate_limit takes no unit, requests_per_unit, algorithm or burst")
                }
                return EnvoyLimit(name: name, requestsPerUnit: 0, unit: .second, unlimited: true, replaces: replaces, limit: nil)
            }
            guard let unit else {
                throw error(node, path: path, "'rate_limit' needs a 'unit' (or 'unlimited: true')")
            }
            // A missing requests_per_unit is 0, as in envoyproxy/ratelimit: every request is over the limit.
            let count = requests ?? 0
            var limit: Limit?
            if count > 0 {
                do {
                    limit = try Limit(algorithm: algorithm, limit: count, windowNanos: unit.windowNanos, burst: burst)
                } catch {
                    let field = error.field == .limit ? "requests_per_unit" : error.field.rawValue
                    throw self.error(node, path: path, "'\(field)' \(error.message)")
                }
            } else if burst != nil {
                throw error(node, path: path, "'burst' needs a requests_per_unit above 0")
            }
            return EnvoyLimit(
                name: name, requestsPerUnit: UInt32(count), unit: unit, replaces: replaces, limit: limit)
        }
    }
}
