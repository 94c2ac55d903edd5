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
        try UnaryMessages.answer(message, check)
    }

    static func check(_ request: Grpc_Health_V1_HealthCheckRequest) throws(GRPCStatus) -> Grpc_Health_V1_HealthCheckResponse {
        guard services.contains(request.service) else {
            throw GRPCStatus(.notFound, "unknown service \(request.service)")
        }
        var response = Grpc_Health_V1_HealthCheckResponse()
        response.status = .serving
        return response
    }
}
