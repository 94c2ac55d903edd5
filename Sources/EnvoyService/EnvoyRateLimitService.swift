import EnvoyRateLimitAPI
import GRPCCore

/// `envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit`, answered by the decider.
struct EnvoyRateLimitService: Envoy_Service_Ratelimit_V3_RateLimitService.SimpleServiceProtocol {
    let decider: EnvoyDecider

    func shouldRateLimit(
        request: Envoy_Service_Ratelimit_V3_RateLimitRequest, context: ServerContext
    ) async throws -> Envoy_Service_Ratelimit_V3_RateLimitResponse {
        try decider.decide(request)
    }
}
