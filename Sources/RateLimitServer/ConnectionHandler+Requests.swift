import NIOCore
import RateLimiting
import ShardStore
import WireProtocol

extension ConnectionHandler {
    /// Parses every complete line in the input and routes each request.
    func processInput() {
        while state == .open {
            switch services.framer.next(in: &input) {
            case .needMoreData:
                return
            case .tooLong:
                replies.appendReady(.error(ProtocolError(
                    .lineTooLong, "line exceeds \(services.framer.maxLineLength) bytes; closing the connection")))
                state = .closingAfterReplies
                input.clear()
            case .line(let line):
                handle(line: line)
            }
        }
    }

    private func handle(line: ByteBuffer) {
        let parsed = line.withUnsafeReadableBytes { bytes in
            Result { () throws(ProtocolError) -> Request? in try RequestParser.parse(bytes) }
        }
        switch parsed {
        case .failure(let error):
            replies.appendReady(.error(error))
        case .success(nil):
            break
        case .success(.ping):
            replies.appendReady(.pong)
        case .success(.quit):
            replies.appendReady(.bye)
            state = .closingAfterReplies
        case .success(.reset(let key)):
            route(key: key, operation: .reset)
        case .success(.check(let key, let cost, let given)):
            guard let limit = given ?? services.rules.match(key)?.limit else {
                replies.appendReady(.error(ProtocolError(.noRule, "no rule matches key '\(key)'")))
                return
            }
            route(key: key, operation: .check(cost: cost, limit: limit))
        }
    }

    private func route(key: String, operation: ShardOperation) {
        let shard = services.router.shard(for: key)
        if shard == localShard {
            // This loop owns the shard: decide now, no hand-off.
            let now = burstNow ?? services.workers[shard].now()
            burstNow = now
            let result = services.workers[shard].localShard.run(operation, key: key, now: now)
            replies.appendReady(Reply(result))
        } else {
            let slot = replies.appendPending()
            outgoing[shard].append(ShardRequest(slot: slot, key: key, operation: operation))
        }
    }

    /// Hands each non-empty per-shard batch of this burst to its worker.
    func dispatchBatches() {
        guard let selfOnLoop, let context else { return }
        let origin = context.eventLoop
        for shard in outgoing.indices where !outgoing[shard].isEmpty {
            let batch = outgoing[shard]
            outgoing[shard] = ShardBatch()
            batchesInFlight += 1
            services.workers[shard].submit(batch, replyOn: origin) { answered in
                selfOnLoop.value.receive(answered)
            }
        }
    }

    private func receive(_ batch: ShardBatch) {
        batchesInFlight -= 1
        guard state != .closed else { return }
        for (request, result) in zip(batch.requests, batch.results) {
            replies.fill(slot: request.slot, with: Reply(result))
        }
        writeReadyReplies()
    }

    /// Writes the answered prefix of the reply queue with one flush, then closes if the connection is done.
    func writeReadyReplies() {
        guard state != .closed, let context else { return }
        var out: ByteBuffer?
        while let reply = replies.popReady() {
            if out == nil { out = context.channel.allocator.buffer(capacity: 64) }
            out!.writeReply(reply)
        }
        let finished = replies.isEmpty && batchesInFlight == 0 && (state == .closingAfterReplies || inputClosed)
        if let out {
            if finished {
                state = .closed
                let written = context.eventLoop.makePromise(of: Void.self)
                context.writeAndFlush(wrapOutboundOut(out), promise: written)
                written.futureResult.assumeIsolated().whenComplete { _ in context.close(promise: nil) }
                return
            }
            context.writeAndFlush(wrapOutboundOut(out), promise: nil)
        } else if finished {
            state = .closed
            context.close(promise: nil)
            return
        }
        resumeReadingIfPossible()
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
