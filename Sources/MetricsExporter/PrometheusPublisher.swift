import CoreMetrics
import Prometheus
import RateLimitServer
import Locking

/// Turns a `MetricsReading` into the Prometheus text format. The counters and gauges go through
/// swift-metrics into a swift-prometheus registry: the shards and event loops count on their own (no lock or
/// allocation per decision), and at each scrape their totals are published here, a counter advanced by
/// what it grew since the last scrape. The latency histogram, already bucketed by the event loops, is
/// written out beside the registry's text in the same format.
public final class PrometheusPublisher: Sendable {
    private let registry = PrometheusCollectorRegistry()
    private let state: Locked<State>

    private struct State: ~Copyable {
        let factory: PrometheusMetricsFactory
        /// What each counter (by name and labels) was last published at.
        var published: [String: Int64] = [:]
        var counters: [String: CoreMetrics.Counter] = [:]
        var gauges: [String: CoreMetrics.Gauge] = [:]

        mutating func advance(_ name: String, _ labels: [(String, String)] = [], to total: Int64) {
            let id = Self.id(name, labels)
            let counter = counters[id] ?? CoreMetrics.Counter(label: name, dimensions: labels, factory: factory)
            counters[id] = counter
            let grown = total - (published[id] ?? 0)
            if grown > 0 { counter.increment(by: grown) }
            published[id] = max(total, published[id] ?? 0)
        }

        mutating func set(_ name: String, _ labels: [(String, String)] = [], to value: Double) {
            let id = Self.id(name, labels)
            let gauge = gauges[id] ?? CoreMetrics.Gauge(label: name, dimensions: labels, factory: factory)
            gauges[id] = gauge
            gauge.record(value)
        }

        static func id(_ name: String, _ labels: [(String, String)]) -> String {
            name + labels.map { "|\($0.0)=\($0.1)" }.joined()
        }
    }

    public init() {
        state = Locked(State(factory: PrometheusMetricsFactory(registry: registry)))
    }

    /// The text a scrape of `/metrics` gets.
    public func render(_ reading: MetricsReading) -> [UInt8] {
        state.withLock { state in
            for rule in reading.decisions {
                state.advance("ratelimitd_decisions_total", [("rule", rule.rule), ("result", "allow")], to: rule.allowed)
                state.advance("ratelimitd_decisions_total", [("rule", rule.rule), ("result", "deny")], to: rule.denied)
            }
            for (labels, count) in reading.envoyDecisions {
                state.advance(
                    "ratelimitd_envoy_decisions_total",
                    [("domain", labels.domain), ("rule", labels.rule), ("result", labels.result)], to: count)
            }
            for (code, count) in reading.errors {
                state.advance("ratelimitd_errors_total", [("code", code)], to: count)
            }
            state.advance("ratelimitd_evictions_total", to: Int64(reading.evictions))
            state.advance("ratelimitd_store_full_total", to: Int64(reading.storeFull))
            state.advance("ratelimitd_connections_accepted_total", to: Int64(reading.totalConnections))
            for (listener, count) in reading.connectionSetupFailures {
                state.advance("ratelimitd_connection_setup_failures_total", [("listener", listener)], to: Int64(count))
            }
            for (listener, count) in reading.rejectedConnections {
                state.advance("ratelimitd_rejected_connections_total", [("listener", listener)], to: Int64(count))
            }
            for (listener, count) in reading.authFailures {
                state.advance("ratelimitd_auth_failures_total", [("listener", listener)], to: Int64(count))
            }
            state.advance("ratelimitd_tls_failures_total", to: Int64(reading.tlsFailures))
            state.advance("ratelimitd_accept_pauses_total", to: Int64(reading.acceptPauses))
            state.advance("ratelimitd_idle_closed_total", to: Int64(reading.idleClosed))
            state.advance("ratelimitd_input_closed_total", to: Int64(reading.inputClosed))
            state.set("ratelimitd_input_buffer_bytes", to: Double(reading.inputBufferBytes))
            state.advance("ratelimitd_request_timeouts_total", to: Int64(reading.requestTimeouts))
            state.advance("ratelimitd_reply_timeouts_total", to: Int64(reading.replyTimeouts))
            state.set("ratelimitd_keys", to: Double(reading.keys))
            state.set("ratelimitd_key_memory_bytes", to: Double(reading.keyMemoryBytes))
            state.set("ratelimitd_connections", to: Double(reading.connections))
            state.set("ratelimitd_uptime_seconds", to: reading.uptimeSeconds)
            state.set("ratelimitd_snapshot_keys", to: Double(reading.snapshotKeys))
            if let age = reading.snapshotAgeSeconds { state.set("ratelimitd_snapshot_age_seconds", to: age) }
            if let duration = reading.snapshotDurationSeconds {
                state.set("ratelimitd_snapshot_duration_seconds", to: duration)
            }
            for counter in reading.deciderCounters {
                if counter.isGauge {
                    state.set("ratelimitd_\(counter.name)", to: Double(counter.value))
                } else {
                    state.advance("ratelimitd_\(counter.name)_total", to: counter.value)
                }
            }
            if let replication = reading.replication {
                state.set("ratelimitd_replication_lag_seconds", to: replication.lagSeconds)
                state.set("ratelimitd_replication_pending", to: Double(replication.pending))
                state.advance("ratelimitd_replication_errors_total", to: Int64(replication.errors))
            }
        }
        var text = registry.emitToBuffer()
        text += Array(Self.histogram(reading).utf8)
        return text
    }

    static func histogram(_ reading: MetricsReading) -> String {
        let name = "ratelimitd_decision_duration_seconds"
        var lines = [
            "# HELP \(name) Server-side time from a read burst's first decision until its replies are ready, once per decision.",
            "# TYPE \(name) histogram",
        ]
        for bucket in reading.latencyBuckets {
            let bound = bucket.upperBound.isInfinite ? "+Inf" : "\(bucket.upperBound)"
            lines.append("\(name)_bucket{le=\"\(bound)\"} \(bucket.count)")
        }
        lines.append("\(name)_sum \(reading.latencySumSeconds)")
        lines.append("\(name)_count \(reading.latencyBuckets.last?.count ?? 0)")
        return lines.joined(separator: "\n") + "\n"
    }
}
