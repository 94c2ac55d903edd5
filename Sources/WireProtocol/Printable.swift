/// Echoes client bytes back inside error messages safely: a reply must never carry a newline, a control
/// byte or a megabyte of junk, whatever the client sent.
public enum Printable {
    static let maxEcho = 64

    public static func quote(_ word: UnsafeRawBufferPointer.SubSequence) -> String {
        let shown = word.prefix(maxEcho).map { byte -> String in
            (byte >= 0x20 && byte < 0x7F && byte != UInt8(ascii: "'") && byte != UInt8(ascii: "\\"))
                ? String(UnicodeScalar(byte)) : "\\x" + hex(byte)
        }.joined()
        return "'" + shown + (word.count > maxEcho ? "...'" : "'")
    }

    public static func quote(_ bytes: [UInt8]) -> String {
        bytes.withUnsafeBytes { quote($0[...]) }
    }

    private static func hex(_ byte: UInt8) -> String {
        let digits = Array("0123456789abcdef")
        return String(digits[Int(byte >> 4)]) + String(digits[Int(byte & 0xF)])
    }
}
