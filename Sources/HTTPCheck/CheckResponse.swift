import NIOHTTP1
import RateLimiting
import WireProtocol

/// A response of the HTTP listener before it is written: a decision as forward-auth gateways read it
/// (200, or the deny status, with the `RateLimit-*` headers and `Retry-After`), or an error. The body is
/// what the line protocol answers the same request, so `curl` shows the same words as `nc`.
struct CheckResponse {
    var status: HTTPResponseStatus
    var headers: [(name: String, value: String)]
    var body: String

    /// `denyStatus` is the status of a denial (429 unless configured otherwise).
    static func decision(_ decision: Decision, denyStatus: Int) -> CheckResponse {
        var headers = [(name: "RateLimit-Remaining", value: "\(decision.remaining)")]
        // reset_ms is -1 when the cost can never be allowed: there is no time to tell.
        if decision.resetMillis >= 0 {
            let seconds = "\(secondsRoundingUp(decision.resetMillis))"
            headers.append(("RateLimit-Reset", seconds))
            if !decision.allowed { headers.append(("Retry-After", seconds)) }
        }
        return CheckResponse(
            status: decision.allowed ? .ok : HTTPResponseStatus(statusCode: denyStatus),
            headers: headers,
            body: "\(decision.allowed ? "ALLOW" : "DENY") \(decision.remaining) \(decision.resetMillis)\n")
    }

    /// A request the listener cannot decide: its `ERR` line as the body.
    static func error(_ error: ProtocolError, status: HTTPResponseStatus = .badRequest) -> CheckResponse {
        CheckResponse(status: status, headers: [], body: "ERR \(error.code.rawValue) \(error.message)\n")
    }

    /// Waiting this many whole seconds is always enough (HTTP's headers count in seconds).
    static func secondsRoundingUp(_ millis: Int64) -> Int64 {
        millis / 1_000 + (millis % 1_000 == 0 ? 0 : 1)
    }
}
