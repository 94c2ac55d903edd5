/// Redis Cluster's slot of a key: CRC16 (XMODEM) of its hash tag, the bytes between the first `{` and the
/// next `}` when that is not empty, or of the whole key otherwise, modulo 16384.
enum ClusterSlot {
    static let count = 16_384

    static func of(_ key: [UInt8]) -> Int {
        key.withUnsafeBufferPointer { bytes in
            var tagged = bytes[...]
            if let open = bytes.firstIndex(of: UInt8(ascii: "{")),
                let close = bytes[(open + 1)...].firstIndex(of: UInt8(ascii: "}")), close > open + 1
            {
                tagged = bytes[(open + 1)..<close]
            }
            var crc: UInt16 = 0
            for byte in tagged {
                crc = (crc << 8) ^ table[Int(UInt8(truncatingIfNeeded: crc >> 8) ^ byte)]
            }
            return Int(crc) & (count - 1)
        }
    }

    private static let table: [UInt16] = (0..<256).map { index in
        var crc = UInt16(index) << 8
        for _ in 0..<8 {
            crc = crc & 0x8000 != 0 ? (crc << 1) ^ 0x1021 : crc << 1
        }
        return crc
    }
}
