import DaemonConfig
import EnvoyRules
import NIOCore
import RateLimiting
import RedisReplication
import ShardStore
import WireProtocol

/// What each fuzz target does with one input: the parsers a client, a file or Redis feeds, run as the
/// daemon runs them, with checks that trap when an invariant breaks. The libFuzzer executables (`Fuzz/`)
/// call these; `FuzzCorpusTests` replays the committed corpus through them on every `scripts/test`.
public enum FuzzEntries {
    public static let targets: [(name: String, run: @Sendable ([UInt8]) -> Void)] = [
        ("line", lineProtocol), ("resp", resp), ("snapshot", snapshot), ("redis-value", redisValue), ("config", config),
        ("http-check", httpCheck),
    ]

    /// Line protocol: the input framed into lines and each parsed and answered, fed whole and fed in two
    /// pieces (split where the first byte says): both must give the same replies, as a client's bytes may
    /// arrive in any pieces.
    public static func lineProtocol(_ data: [UInt8]) {
        sameRepliesHoweverSplit(data, lineReplies, "line")
    }

    /// `replies` of the input fed whole, and fed in two pieces split where its first byte says, must agree.
    static func sameRepliesHoweverSplit(_ data: [UInt8], _ replies: ([[UInt8]]) -> [String], _ protocolName: String) {
        let split = Int(data.first ?? 0) % (data.count + 1)
        precondition(
            replies([data]) == replies([Array(data[..<split]), Array(data[split...])]),
            "\(protocolName) replies depend on how bytes arrive")
    }

    static func lineReplies(_ pieces: [[UInt8]]) -> [String] {
        let framer = LineFramer()
        var input = ByteBuffer()
        var replies: [String] = []
        for piece in pieces {
            input.writeBytes(piece)
            while true {
                switch framer.next(in: &input) {
                case .needMoreData:
                    break
                case .tooLong:
                    replies.append("too long")
                    return replies
                case .line(let line):
                    replies.append(line.withUnsafeReadableBytes { bytes in
                        describe(Result { () throws(ProtocolError) -> Request? in try RequestParser.parse(bytes) }, .line)
                    })
                    continue
                }
                break
            }
        }
        return replies
    }

    /// RESP: frames decoded, and each parsed and answered, fed whole and in two pieces: the same replies.
    public static func resp(_ data: [UInt8]) {
        sameRepliesHoweverSplit(data, respReplies, "RESP")
    }

    static func respReplies(_ pieces: [[UInt8]]) -> [String] {
        var decoder = RESPDecoder()
        var input = ByteBuffer()
        var replies: [String] = []
        for piece in pieces {
            input.writeBytes(piece)
            while input.readableBytes > 0 {
                guard input.readableBytesView.first == UInt8(ascii: "*") else { return replies + ["not RESP"] }
                switch decoder.next(in: &input) {
                case .needMoreData:
                    break
                case .empty:
                    replies.append("empty")
                    continue
                case .malformed(let message):
                    return replies + ["malformed: \(message)"]
                case .request(let frame):
                    let ranges = decoder.argumentRanges
                    for range in ranges { precondition(range.lowerBound >= 0 && range.upperBound <= frame.readableBytes) }
                    replies.append(frame.withUnsafeReadableBytes { bytes in
                        var words = RangeWords(bytes, ranges: ranges)
                        return describe(Result { () throws(ProtocolError) -> Request? in try RequestParser.parse(&words, dialect: .resp) }, .resp)
                    })
                    continue
                }
                break
            }
        }
        return replies
    }

    /// A request's reply as the daemon encodes it (an error's text is client bytes, quoted): must not trap.
    static func describe(_ parsed: Result<Request?, ProtocolError>, _ dialect: WireDialect) -> String {
        var out = ByteBuffer()
        switch parsed {
        case .failure(let error):
            if dialect == .line { out.writeLineReply(.error(error)) } else { out.writeRESPReply(.error(error)) }
            precondition(out.readableBytesView.allSatisfy { $0 >= 0x20 && $0 < 0x7F || $0 == 0x0D || $0 == 0x0A }, "an error reply that is not printable")
            return "error " + (out.readString(length: out.readableBytes) ?? "")
        case .success(let request):
            return "\(String(describing: request))"
        }
    }

    /// A snapshot file: decoded, or refused with a reason; every state decoded encodes back to itself.
    public static func snapshot(_ data: [UInt8]) {
        guard let contents = try? SnapshotCodec.decode(data) else { return }
        for entry in contents.entries {
            var encoded: [UInt8] = []
            SnapshotCodec.encodeState(entry.state, into: &encoded)
            var reader = ByteReader(encoded, end: encoded.count)
            precondition((try? SnapshotCodec.decodeState(&reader)) == entry.state, "a snapshot state does not round-trip")
        }
    }

    /// A value read back from Redis (replicate mode): decoded or refused; what decodes encodes back to itself.
    public static func redisValue(_ data: [UInt8]) {
        let now: Int64 = 1_700_000_000_000_000_000
        guard let contents = try? ReplicaRecord.decode(data, now: now) else { return }
        precondition((try? ReplicaRecord.decode(ReplicaRecord.encode(contents), now: now)) == contents, "a Redis value does not round-trip")
    }

    /// The configuration loaders: the input as a TOML file and as an envoyproxy/ratelimit YAML file.
    public static func config(_ data: [UInt8]) {
        let text = String(decoding: data, as: UTF8.self)
        _ = try? ConfigFile.parse(text, file: "fuzz.toml")
        _ = try? EnvoyRulesLoader.parse(yaml: text, file: "fuzz.yaml")
    }
}
