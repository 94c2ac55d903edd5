import Crypto
import Foundation

/// The state key of an Envoy descriptor, in the same key space as the line protocol's keys (so `RESET`
/// and replication treat it like any other): `envoy/<domain>/<unit>/<key>=<value>/<key>=<value>…`, in
/// which `%`, `/`, `=` and every byte outside printable ASCII are percent-encoded. The encoding is
/// one-to-one, so two descriptors that differ in domain, unit, any key or any value never share a key,
/// however odd their bytes. Keys are at most 256 bytes: a longer one becomes `envoy#` and the base64url
/// SHA-256 of the long form (a different prefix, so the two forms never meet; a collision would need a
/// SHA-256 collision, which a client cannot craft).
public enum DescriptorKey {
    public static let maxLength = 256

    /// The key for `entries` of `domain` under a limit of `unit`; `sharedPatterns` replaces the values at
    /// those positions (share_threshold: every value matching the pattern shares the counter).
    public static func make(
        domain: String, unit: EnvoyUnit, entries: [(key: String, value: String)], sharedPatterns: [Int: String] = [:]
    ) -> [UInt8] {
        var key: [UInt8] = Array("envoy/".utf8)
        key.reserveCapacity(64)
        append(domain, to: &key)
        key.append(UInt8(ascii: "/"))
        key.append(contentsOf: unit.rawValue.utf8)
        for (index, entry) in entries.enumerated() {
            key.append(UInt8(ascii: "/"))
            append(entry.key, to: &key)
            key.append(UInt8(ascii: "="))
            append(sharedPatterns[index] ?? entry.value, to: &key)
        }
        guard key.count > maxLength else { return key }
        let digest = Data(SHA256.hash(data: key)).base64EncodedString()
            .replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
        return Array("envoy#".utf8) + Array(digest.utf8)
    }

    private static func append(_ text: String, to key: inout [UInt8]) {
        let hex = Array("0123456789ABCDEF".utf8)
        for byte in text.utf8 {
            if byte > 0x20, byte < 0x7F, byte != UInt8(ascii: "%"), byte != UInt8(ascii: "/"), byte != UInt8(ascii: "=") {
                key.append(byte)
            } else {
                key.append(UInt8(ascii: "%"))
                key.append(hex[Int(byte >> 4)])
                key.append(hex[Int(byte & 0xF)])
            }
        }
    }
}
