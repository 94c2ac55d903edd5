import Logging
import RateLimiting
import ShardStore

/// Loads the replica's keys into the shards at start-up, streamed: `SCAN` a thousand keys at a time, `MGET`
/// their values, decode, restore. A value that fails to decode is another program's, or corrupt: it is
/// counted and logged, never trusted.
public enum RedisRestore {
    public struct Outcome: Sendable, Hashable {
        public var restored = 0
        /// Keys whose copy in Redis is not newer than the snapshot already loaded.
        public var olderThanSnapshot = 0
        /// Keys a decision here changed before the restore ran (a restore delayed by an outage at start).
        public var newerHere = 0
        public var invalid = 0
        /// Keys that expired between SCAN and MGET.
        public var vanished = 0
    }

    /// Restores every key under `keyPrefix`. With `snapshotSavedAt`, a key's Redis copy replaces the
    /// snapshot's state only if it was written later (the snapshot's absence of a key also counts: it was
    /// fresh when the snapshot was saved).
    public static func restore(
        from connection: RedisConnection, keyPrefix: String, into feed: ReplicationFeed, snapshotSavedAt: Int64?,
        logger: Logger, scanCount: Int = 1_000
    ) throws(RedisError) -> Outcome {
        let prefix = Array(keyPrefix.utf8)
        let pattern = Array(globEscaped(keyPrefix).utf8) + [UInt8(ascii: "*")]
        let now = feed.clock.nanosecondsNow()
        var outcome = Outcome()
        var cursor: [UInt8] = [UInt8(ascii: "0")]
        repeat {
            let reply = try connection.command(
                [Array("SCAN".utf8), cursor, Array("MATCH".utf8), pattern, Array("COUNT".utf8), Array(String(scanCount).utf8)])
            guard case .array(let parts) = reply, parts.count == 2, case .string(let next) = parts[0],
                case .array(let keyReplies) = parts[1]
            else { throw RedisError("unexpected reply to SCAN: \(reply)") }
            cursor = next
            let names = keyReplies.compactMap { reply -> [UInt8]? in
                if case .string(let name) = reply { name } else { nil }
            }
            guard !names.isEmpty else { continue }
            let values = try connection.command([Array("MGET".utf8)] + names)
            guard case .array(let items) = values, items.count == names.count else {
                throw RedisError("unexpected reply to MGET: \(values)")
            }
            for (name, reply) in zip(names, items) {
                var value = reply
                // MGET answers nil both for a key that expired since SCAN and for one that is not a string.
                if case .null = reply, case .status(let type) = try connection.command([Array("TYPE".utf8), name]),
                    type != "none"
                {
                    value = .error("a \(type), not a string")
                }
                restoreOne(name: name, value: value, prefix: prefix, now: now, snapshotSavedAt: snapshotSavedAt,
                           feed: feed, outcome: &outcome, logger: logger)
            }
        } while cursor != [UInt8(ascii: "0")]
        return outcome
    }

    private static func restoreOne(
        name: [UInt8], value: RedisReply, prefix: [UInt8], now: Int64, snapshotSavedAt: Int64?,
        feed: ReplicationFeed, outcome: inout Outcome, logger: Logger
    ) {
        // The replication marker (see `Replicator`), not a key.
        if name == prefix { return }
        let key = name.dropFirst(prefix.count)
        let contents: ReplicaRecord.Contents
        do {
            guard name.starts(with: prefix), !key.isEmpty, key.count <= KeyRules.maxKeyLength,
                key.allSatisfy(KeyRules.isKeyByte)
            else { throw RedisError("not a valid ratelimitd key") }
            switch value {
            case .null:
                outcome.vanished += 1
                return
            case .string(let bytes):
                contents = try ReplicaRecord.decode(bytes, now: now)
            case .error(let problem):
                throw RedisError(problem)
            default:
                throw RedisError("not a string value")
            }
        } catch {
            outcome.invalid += 1
            // A handful by name is enough to find the cause; the total goes in the summary line.
            if outcome.invalid <= 5 {
                logger.warning("ignoring an invalid value in Redis",
                               metadata: ["key": "\(String(decoding: name, as: UTF8.self))", "error": "\(error)"])
            }
            return
        }
        if let snapshotSavedAt, contents.updatedAt <= snapshotSavedAt {
            outcome.olderThanSnapshot += 1
            return
        }
        if Array(key).withUnsafeBytes({ feed.restore(key: $0, state: contents.state, windowNanos: contents.windowNanos) }) {
            outcome.restored += 1
        } else {
            outcome.newerHere += 1
        }
    }

    /// `text` with Redis glob characters escaped, so MATCH takes it literally.
    static func globEscaped(_ text: String) -> String {
        var escaped = ""
        for character in text {
            if "*?[]\\".contains(character) { escaped.append("\\") }
            escaped.append(character)
        }
        return escaped
    }
}
