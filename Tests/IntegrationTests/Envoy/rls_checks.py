"""Drives ratelimitd's Envoy rate limit service with stubs generated from envoyproxy/data-plane-api
(PyPI xds-protos) and grpcio, as Envoy would call it, and checks every answer exactly.

Usage: rls_checks.py PORT PHASE   (PHASE: before-reload | after-reload | probe). Exits non-zero on the
first failed check, naming it; prints one line per passed check. The rules are EnvoyTests.swift's. The
probe phase asks once for a /api/ path and prints the overall code and the descriptor's remaining.
"""
import sys

import grpc
from envoy.extensions.common.ratelimit.v3 import ratelimit_pb2
from envoy.service.ratelimit.v3 import rls_pb2, rls_pb2_grpc
from envoy.type.v3 import ratelimit_unit_pb2

OK, OVER = rls_pb2.RateLimitResponse.OK, rls_pb2.RateLimitResponse.OVER_LIMIT
Unit = rls_pb2.RateLimitResponse.RateLimit
channel = grpc.insecure_channel("127.0.0.1:" + sys.argv[1])
stub = rls_pb2_grpc.RateLimitServiceStub(channel)


def descriptor(*entries, hits=None, limit=None):
    d = ratelimit_pb2.RateLimitDescriptor()
    for key, value in entries:
        d.entries.add(key=key, value=value)
    if hits is not None:
        d.hits_addend.value = hits
    if limit is not None:
        d.limit.requests_per_unit, d.limit.unit = limit
    return d


def ask(*descriptors, domain="shop", hits=0):
    return stub.ShouldRateLimit(rls_pb2.RateLimitRequest(domain=domain, descriptors=descriptors, hits_addend=hits))


def status(s):
    """(code, remaining, limit) of one DescriptorStatus; limit is (requests_per_unit, unit, name) or None."""
    limit = (s.current_limit.requests_per_unit, s.current_limit.unit, s.current_limit.name) if s.HasField("current_limit") else None
    return (s.code, s.limit_remaining, limit)


def check(name, got, want):
    if got != want:
        sys.exit(f"FAILED {name}: got {got!r}, want {want!r}")
    print("ok", name)


def answer(response):
    return (response.overall_code, [status(s) for s in response.statuses])


DAY, HOUR = Unit.DAY, Unit.HOUR
BUYS = (2, DAY, "user_buys")
API = (3, DAY, "")

if sys.argv[2] == "before-reload":
    # Nesting: the limit is on the second level.
    check("nested 1", answer(ask(descriptor(("user", "u1"), ("action", "buy")))), (OK, [(OK, 1, BUYS)]))
    check("nested 2", answer(ask(descriptor(("user", "u1"), ("action", "buy")))), (OK, [(OK, 0, BUYS)]))
    check("nested over", answer(ask(descriptor(("user", "u1"), ("action", "buy")))), (OVER, [(OVER, 0, BUYS)]))
    check("a node without a limit", answer(ask(descriptor(("user", "u1")))), (OK, [(OK, 0, None)]))
    # Wildcards: each value its own counter.
    for remaining in (2, 1, 0):
        check(f"wildcard {remaining}", answer(ask(descriptor(("path", "/api/x")))), (OK, [(OK, remaining, API)]))
    check("wildcard over", answer(ask(descriptor(("path", "/api/x")))), (OVER, [(OVER, 0, API)]))
    check("wildcard, another value", answer(ask(descriptor(("path", "/api/y")))), (OK, [(OK, 2, API)]))
    check("no match", answer(ask(descriptor(("path", "/health")))), (OK, [(OK, 0, None)]))
    # Unlimited: never counted.
    for _ in range(3):
        check("unlimited", answer(ask(descriptor(("internal", "x")))), (OK, [(OK, 4294967295, None)]))
    # Shadow mode: counted, never denies.
    check("shadow 1", answer(ask(descriptor(("canary", "c")))), (OK, [(OK, 0, (1, DAY, ""))]))
    check("shadow over", answer(ask(descriptor(("canary", "c")))), (OK, [(OK, 0, (1, DAY, ""))]))
    # replaces: gold replaces user_buys for the request that matches both; the replaced one is not counted.
    check("replaces", answer(ask(descriptor(("user", "u2"), ("action", "buy")), descriptor(("tier", "gold")))),
          (OK, [(OK, 0, None), (OK, 9, (10, DAY, "gold"))]))
    check("replaced one not counted", answer(ask(descriptor(("user", "u2"), ("action", "buy")))), (OK, [(OK, 1, BUYS)]))
    # hits_addend: the request's, and a descriptor's own, which wins (0 peeks).
    check("request hits_addend", answer(ask(descriptor(("path", "/api/h")), hits=2)), (OK, [(OK, 1, API)]))
    check("descriptor hits_addend 0 peeks", answer(ask(descriptor(("path", "/api/h"), hits=0), hits=5)), (OK, [(OK, 1, API)]))
    check("descriptor hits_addend wins", answer(ask(descriptor(("path", "/api/h"), hits=1), hits=5)), (OK, [(OK, 0, API)]))
    check("hits over", answer(ask(descriptor(("path", "/api/h")), hits=1)), (OVER, [(OVER, 0, API)]))
    # The override applies where no rule matched, and replaces the configured limit where one did.
    override = (1, ratelimit_unit_pb2.HOUR)
    check("override", answer(ask(descriptor(("nothing", "x"), limit=override))), (OK, [(OK, 0, (1, HOUR, ""))]))
    check("override over", answer(ask(descriptor(("nothing", "x"), limit=override))), (OVER, [(OVER, 0, (1, HOUR, ""))]))
    check("override of a rule", answer(ask(descriptor(("path", "/api/o"), limit=(7, ratelimit_unit_pb2.HOUR)))),
          (OK, [(OK, 6, (7, HOUR, ""))]))
    # All or nothing: one descriptor over, nothing consumed from the others.
    check("all or nothing", answer(ask(descriptor(("bucket", "b1")), descriptor(("blocked", "z")))),
          (OVER, [(OK, 5, (5, DAY, "")), (OVER, 0, (0, Unit.SECOND, ""))]))
    check("nothing was consumed", answer(ask(descriptor(("bucket", "b1")))), (OK, [(OK, 4, (5, DAY, ""))]))
    check("all or nothing, two limits", answer(ask(descriptor(("path", "/api/n")), descriptor(("user", "u1"), ("action", "buy")))),
          (OVER, [(OK, 3, API), (OVER, 0, BUYS)]))
    check("the other kept its quota", answer(ask(descriptor(("path", "/api/n")))), (OK, [(OK, 2, API)]))
    check("two limits, both consumed", answer(ask(descriptor(("path", "/api/t")), descriptor(("bucket", "b2")))),
          (OK, [(OK, 2, API), (OK, 4, (5, DAY, ""))]))
    check("both were consumed", answer(ask(descriptor(("bucket", "b2")), descriptor(("path", "/api/t")))),
          (OK, [(OK, 3, (5, DAY, "")), (OK, 1, API)]))
    # share_threshold: every value the wildcard matches shares one counter.
    check("shared 1", answer(ask(descriptor(("group", "g1")))), (OK, [(OK, 1, (2, DAY, ""))]))
    check("shared 2", answer(ask(descriptor(("group", "g2")))), (OK, [(OK, 0, (2, DAY, ""))]))
    check("shared over", answer(ask(descriptor(("group", "g3")))), (OVER, [(OVER, 0, (2, DAY, ""))]))
    # An unknown domain: OK, nothing counted.
    check("unknown domain", answer(ask(descriptor(("path", "/api/x")), domain="elsewhere")), (OK, [(OK, 0, None)]))
    # Malformed requests.
    too_many = [descriptor(("path", f"/api/{i}")) for i in range(65)]
    for name, request in (("empty domain", rls_pb2.RateLimitRequest(domain="", descriptors=[descriptor(("a", "b"))])),
                          ("no descriptors", rls_pb2.RateLimitRequest(domain="shop")),
                          ("65 descriptors", rls_pb2.RateLimitRequest(domain="shop", descriptors=too_many)),
                          ("65 entries", rls_pb2.RateLimitRequest(domain="shop", descriptors=[
                              descriptor(*[("k", str(i)) for i in range(65)])]))):
        try:
            stub.ShouldRateLimit(request)
            sys.exit(f"FAILED {name}: answered")
        except grpc.RpcError as error:
            check(name, error.code(), grpc.StatusCode.INVALID_ARGUMENT)

    def failure(name, call, code, details):
        try:
            call()
            sys.exit(f"FAILED {name}: answered")
        except grpc.RpcError as error:
            check(name, (error.code(), error.details()), (code, details))

    # gRPC itself, as any gRPC client meets it.
    failure("status message", lambda: stub.ShouldRateLimit(rls_pb2.RateLimitRequest(domain="shop")),
            grpc.StatusCode.INVALID_ARGUMENT, "rate limit descriptor list must not be empty")
    other = channel.unary_unary("/envoy.service.ratelimit.v3.RateLimitService/Other")
    failure("unknown method", lambda: other(b""), grpc.StatusCode.UNIMPLEMENTED,
            "unknown method /envoy.service.ratelimit.v3.RateLimitService/Other")
    failure("oversized request", lambda: ask(descriptor(("path", "x" * 70000))),
            grpc.StatusCode.RESOURCE_EXHAUSTED, "request message of 70024 bytes; at most 65536")
    failure("undecodable request", lambda: channel.unary_unary(
                "/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit")(b"\xff\xff"),
            grpc.StatusCode.INTERNAL, "the request message is not a valid RateLimitRequest: malformedProtobuf")
    # gRPC health checking, as Envoy's grpc_health_check and Kubernetes' gRPC probes call it (raw bytes:
    # HealthCheckRequest{service} is field 1; HealthCheckResponse{status: SERVING} is 08 01).
    health = channel.unary_unary("/grpc.health.v1.Health/Check")
    check("health of the server", health(b""), b"\x08\x01")
    service = b"envoy.service.ratelimit.v3.RateLimitService"
    check("health of the service", health(b"\x0a" + bytes([len(service)]) + service), b"\x08\x01")
    failure("health of another service", lambda: health(b"\x0a\x05other"), grpc.StatusCode.NOT_FOUND,
            "unknown service other")
    # The connection still serves.
    check("served after errors", answer(ask(descriptor(("group", "g9")))), (OVER, [(OVER, 0, (2, DAY, ""))]))
elif sys.argv[2] == "after-reload":
    # The counts survived the reload; the new rule is in force.
    check("count kept", answer(ask(descriptor(("path", "/api/x")))), (OVER, [(OVER, 0, API)]))
    check("count kept (nested)", answer(ask(descriptor(("user", "u1"), ("action", "buy")))), (OVER, [(OVER, 0, BUYS)]))
    check("new rule", answer(ask(descriptor(("added", "a")))), (OK, [(OK, 4, (5, HOUR, "added"))]))
elif sys.argv[2] == "probe":
    response = ask(descriptor(("path", "/api/probe")))
    print(rls_pb2.RateLimitResponse.Code.Name(response.overall_code), response.statuses[0].limit_remaining)
else:
    sys.exit("phase must be before-reload, after-reload or probe")
