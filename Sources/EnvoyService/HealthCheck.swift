import EnvoyRateLimitAPI
import NIOCore

/// `grpc.health.v1.Health/Check` on the Envoy port, as envoyproxy/ratelimit answers it, so an Envoy cluster
/// with `grpc_health_check` (or a Kubernetes gRPC probe) finds the service healthy: `SERVING` for the
/// server as a whole (`service` empty) and for the rate limit service by name; gRPC `NOT_FOUND` for any
/// other name, as grpc-go's health server does. A daemon that is shutting down answers no new call at all
/// (GOAWAY), which tells a client more than `NOT_SERVING` would.
enum HealthCheck {
    static let services: Set<String> = ["", "envoy.service.ratelimit.v3.RateLimitService"]

    static func answer(_ message: ByteBuffer) throws(GRPCStatus) -> [UInt8] {
        let request: Grpc_Health_V1_HealthCheckRequest
        do {
            request = try Grpc_Health_V1_HealthCheckRequest(serializedBytes: Array(message.readableBytesView))
        } catch {
            throw GRPCStatus(.internalError, "the request message is not a valid HealthCheckRequest: \(error)")
        }
        guard services.contains(request.service) else {
            throw GRPCStatus(.notFound, "unknown service \(request.service)")
        }
        var response = Grpc_Health_V1_HealthCheckResponse()
        response.status = .serving
        do {
            return try response.serializedBytes()
        } catch {
            throw GRPCStatus(.internalError, "cannot encode the response: \(error)")
        }
    }
}
