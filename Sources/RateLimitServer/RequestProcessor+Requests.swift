import NIOCore
import RateLimiting
import ShardStore
import WireProtocol

extension RequestProcessor {
    /// Parses every complete request in the input and routes each. Each request picks its own protocol: one
    /// starting with `*` is a RESP array, anything else a line, as Redis tells RESP from inline commands.
    mutating func processInput(_ input: inout ByteBuffer) {
        defer {
            stalled = state == .open && input.readableBytes > 0
                && (output.readableBytes >= Self.maxOutputPerBurst || waitsForDecider)
        }
        while state == .open, output.readableBytes < Self.maxOutputPerBurst, !waitsForDecider,
            let first = input.getInteger(at: input.readerIndex, as: UInt8.self)
        {
            if first == UInt8(ascii: "*") {
                switch resp.next(in: &input) {
                case .needMoreData:
                    return
                case .empty:
                    continue
                case .malformed(let message):
                    fail(ProtocolError(.protocolError, message), .resp)
                    input.clear()
                case .request(let frame):
                    let ranges = resp.argumentRanges
                    frame.withUnsafeReadableBytes { bytes in
                        var words = RangeWords(bytes, ranges: ranges)
                        let parsed = Result { () throws(ProtocolError) -> Request? in
                            try RequestParser.parse(&words, dialect: .resp)
                        }
                        handle(parsed, .resp, bytes)
                    }
                }
            } else {
                switch services.framer.next(in: &input) {
                case .needMoreData:
                    return
                case .tooLong:
                    fail(ProtocolError(
                        .lineTooLong, "line exceeds \(services.framer.maxLineLength) bytes; closing the connection"), .line)
                    input.clear()
                case .line(let line):
                    line.withUnsafeReadableBytes { bytes in
                        let parsed = Result { () throws(ProtocolError) -> Request? in try RequestParser.parse(bytes) }
                        handle(parsed, .line, bytes)
                    }
                }
            }
        }
    }

    /// A fatal protocol error: answer it after everything before it, then close.
    mutating func fail(_ error: ProtocolError, _ dialect: WireDialect) {
        reply(.error(error), dialect)
        state = .closingAfterReplies
    }

    /// Acts on one parsed request; `bytes` are the bytes it was parsed from, which hold its key.
    private mutating func handle(
        _ parsed: Result<Request?, ProtocolError>, _ dialect: WireDialect, _ bytes: UnsafeRawBufferPointer
    ) {
        requestsAnswered &+= 1
        let request: Request
        switch parsed {
        case .failure(let error):
            reply(.error(error), dialect)
            return
        case .success(nil):
            return
        case .success(.some(let parsed)):
            request = parsed
        }
        guard authenticated || request.allowedBeforeAuthentication else {
            reply(.error(.authenticationRequired), dialect)
            return
        }
        switch request {
        case .check(let span, let cost, let given):
            let key = UnsafeRawBufferPointer(rebasing: bytes[span])
            if let (limit, slot) = rules.limit(for: key, given: given) {
                route(key: key, operation: .check(cost: cost, limit: limit), slot: slot, dialect)
            } else {
                reply(.error(.noRule(key: key)), dialect)
            }
        case .reset(let span):
            route(key: UnsafeRawBufferPointer(rebasing: bytes[span]), operation: .reset, slot: 0, dialect)
        case .ping(let message):
            reply(message.map { .message($0) } ?? .pong, dialect)
        case .quit:
            reply(.bye, dialect)
            state = .closingAfterReplies
        case .stats:
            statistics(dialect)
        case .auth(let credentials):
            if authenticate(credentials, bytes, dialect) { reply(.ok, dialect) }
        case .hello(let version, let credentials):
            if let credentials, !authenticate(credentials, bytes, dialect) { return }
            if let version { respVersion = version }
            reply(.hello(HelloReply(connectionID: connectionID, version: respVersion)), dialect)
        case .echo(let message):
            reply(.message(message), dialect)
        case .clientAcknowledged, .select:
            reply(.ok, dialect)
        case .emptyListing:
            reply(.emptyArray, dialect)
        case .configGet(let parameters):
            reply(.configValues(parameters, version: respVersion), dialect)
        }
    }

    /// `STATS`: collected once per read burst and protocol, so a client pipelining it costs each request a
    /// copy of the reply, not another pass over every shard's counters under their locks (which slowed every
    /// CHECK beside it). Requests of one burst are answered at one time, as their CHECKs are.
    private mutating func statistics(_ dialect: WireDialect) {
        if let cached = dialect == .line ? burstStatistics.line : burstStatistics.resp {
            replyEncoded(cached)
            return
        }
        var encoded = allocator.buffer(capacity: 1_024)
        Self.encode(.stats(services.collectStatistics()), dialect, into: &encoded)
        if dialect == .line { burstStatistics.line = encoded } else { burstStatistics.resp = encoded }
        replyEncoded(encoded)
    }

    /// Checks `AUTH` credentials (Redis's `default` user is the only one) and answers a failure; returns
    /// whether they passed. Without a token, `AUTH <token>` is an error and `AUTH default <anything>` passes,
    /// as Redis answers for a default user without a password.
    private mutating func authenticate(
        _ credentials: Credentials, _ bytes: UnsafeRawBufferPointer, _ dialect: WireDialect
    ) -> Bool {
        let user = credentials.user.map { bytes[$0] }
        guard let auth = services.auth else {
            guard credentials.user != nil else {
                reply(.error(.noToken), dialect)
                return false
            }
            return true
        }
        let isDefault = user.map { $0.elementsEqual("default".utf8) } ?? true
        // The token is compared even for another user, so the reply takes as long either way.
        let matches = auth.matches(bytes[credentials.token])
        guard isDefault, matches else {
            auth.recordFailure(on: .client, peer: peer, reason: isDefault ? "wrong token" : "unknown user")
            reply(.error(.wrongToken), dialect)
            return false
        }
        authenticated = true
        return true
    }

    private mutating func route(
        key: UnsafeRawBufferPointer, operation: ShardOperation, slot: Int, _ dialect: WireDialect
    ) {
        let hash = KeyHash.hash(key)
        let now = burstNow ?? services.clock.nanosecondsNow()
        burstNow = now
        if case .check = operation { decisionsInBurst &+= 1 }
        let ticket = nextTicket
        if let result = services.decider.run(
            operation, key: key, hash: hash, now: now, slot: slot, ticket: ticket, waiter: waiter)
        {
            reply(Reply(result), dialect)
        } else {
            nextTicket &+= 1
            deferred.append(DeferredReply(ticket: ticket, dialect: dialect, result: nil, following: nil))
            owed += 1
        }
    }
}

extension Reply {
    init(_ result: ShardResult) {
        switch result {
        case .decision(let decision): self = .decision(decision)
        case .reset: self = .ok
        }
    }
}

extension Request {
    /// What a connection may ask before `AUTH`: to authenticate, to agree a protocol, to test the line, to
    /// leave.
    var allowedBeforeAuthentication: Bool {
        switch self {
        case .auth, .hello, .ping, .quit: true
        case .check, .reset, .stats, .echo, .clientAcknowledged, .select, .emptyListing, .configGet: false
        }
    }
}
