import DaemonConfig
import NIOCore
import NIOPosix

/// One connection to one Redis node, on one event loop, for shared mode: commands are written as they come
/// (pipelined; while connecting they wait in order) and each reply goes to the callback its command was sent
/// with, in order. Nothing blocks: the socket is NIO's and hiredis only parses (`RedisReplyReader`).
///
/// A reply that has not come by its command's deadline is given up: its callback gets a timeout at once
/// (the reply, when it comes, is read and dropped). A link that fails (refused, closed, a protocol error, or
/// silent for the whole timeout while replies are owed: Redis frozen or gone) is closed, and every callback
/// still waiting gets the failure, once; a closed link is never used again.
///
/// `@unchecked Sendable`: NIO's callbacks must be; every use is on `loop`.
final class RedisLink: @unchecked Sendable {
    typealias Callback = (Result<RedisReply, RedisError>) -> Void

    private struct Waiting {
        let sent: NIODeadline
        let deadline: NIODeadline
        /// nil once given up.
        var callback: Callback?
    }

    let endpoint: RedisEndpoint
    let loop: any EventLoop
    private let timeout: TimeAmount
    private var channel: (any Channel)?
    private var outbox: ByteBuffer
    private var waiting = CircularBuffer<Waiting>()
    /// When bytes last came, or the connection was opened.
    private var lastHeard = NIODeadline.now()
    private let reader = RedisReplyReader()
    /// The deadline the timer is set for, if one is; a timer whose generation is not the latest is stale.
    private var timerDeadline: NIODeadline?
    private var timerGeneration = 0
    /// Entries still waiting for an answer (not given up).
    private(set) var owed = 0
    /// The timer found the link silent once; it looks again after the loop has read what waits, before it
    /// calls the link failed (a busy loop can run a timer before reading replies that have arrived).
    private var seemsSilent = false
    private(set) var isClosed = false
    /// Called once, when the link fails (not when it is closed on purpose), after the callbacks.
    var onFailure: ((RedisError) -> Void)?
    /// Called when a reply given up at its deadline arrives (and is dropped).
    var onLateReply: (() -> Void)?

    /// The first commands written are the credentials and database, so the caller's commands can follow
    /// straight away; `connect` starts connecting (after `onFailure` is set: a connect can fail at once).
    init(endpoint: RedisEndpoint, loop: any EventLoop, timeoutMillis: Int) {
        self.endpoint = endpoint
        self.loop = loop
        self.timeout = .milliseconds(Int64(timeoutMillis))
        self.outbox = ByteBufferAllocator().buffer(capacity: 4096)
        if let password = endpoint.password {
            send(["AUTH"] + (endpoint.user.map { [$0] } ?? []) + [password], expectingOK: "Redis refused the password")
        }
        if endpoint.database != 0 {
            send(["SELECT", "\(endpoint.database)"], expectingOK: "cannot select database \(endpoint.database)")
        }
    }

    /// Writes a command; `callback` gets its reply, or the link's failure. `deadline` bounds the wait.
    func send(_ command: ByteBuffer, deadline: NIODeadline, callback: @escaping Callback) {
        guard !isClosed else {
            callback(.failure(RedisError("connection to \(endpoint) closed")))
            return
        }
        waiting.append(Waiting(sent: .now(), deadline: deadline, callback: callback))
        owed += 1
        if let channel {
            channel.writeAndFlush(command, promise: nil)
        } else {
            var command = command
            outbox.writeBuffer(&command)
        }
        armTimer()
    }

    /// Writes a command that must answer +OK (AUTH, SELECT); anything else fails the link.
    private func send(_ words: [String], expectingOK problem: String) {
        var command = ByteBufferAllocator().buffer(capacity: 64)
        command.writeRedisCommand(words)
        send(command, deadline: .now() + timeout) { [weak self] result in
            if case .success(.error(let message)) = result { self?.fail(RedisError("\(problem): \(message)")) }
        }
    }

    /// Closes the link; callbacks still waiting get a failure (not reported through `onFailure`).
    func close() {
        guard !isClosed else { return }
        onFailure = nil
        onLateReply = nil
        fail(RedisError("connection to \(endpoint) closed"))
    }

    func connect() {
        let bootstrap = ClientBootstrap(group: loop)
            .connectTimeout(timeout)
            .channelOption(.tcpOption(.tcp_nodelay), value: 1)
            .channelOption(.socketOption(.so_keepalive), value: 1)
            .channelInitializer { [self] channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(RedisLinkHandler(link: self))
                }
            }
        let connected: EventLoopFuture<any Channel> =
            switch endpoint.address {
            case .tcp(let host, let port): bootstrap.connect(host: host, port: port)
            case .unix(let path): bootstrap.connect(unixDomainSocketPath: path)
            }
        connected.whenComplete { [self] result in
            switch result {
            case .success(let channel):
                guard !isClosed else {
                    channel.close(promise: nil)
                    return
                }
                self.channel = channel
                if outbox.readableBytes > 0 {
                    channel.writeAndFlush(outbox, promise: nil)
                    outbox = ByteBuffer()
                }
            case .failure(let error):
                fail(RedisError("cannot connect to \(endpoint): \(error)"))
            }
        }
    }

    fileprivate func received(_ bytes: ByteBuffer) {
        do throws(RedisError) {
            try reader.feed(bytes)
            lastHeard = .now()
            seemsSilent = false
            while !isClosed, let reply = try reader.next() {
                guard let entry = waiting.popFirst() else {
                    throw RedisError("a reply from \(endpoint) that no command asked for")
                }
                if let callback = entry.callback {
                    owed -= 1
                    callback(.success(reply))
                } else {
                    // Given up at its deadline; the owner may be waiting for fewer replies owed.
                    onLateReply?()
                }
            }
        } catch {
            fail(error)
        }
    }

    fileprivate func closedByPeer(_ error: (any Error)?) {
        fail(RedisError("connection to \(endpoint) lost" + (error.map { ": \($0)" } ?? "")))
    }

    /// The timer is set for the earliest deadline of the replies still awaited (or, when all are given
    /// up, a timeout ahead); when it fires it gives up the replies past their deadline, and fails the link
    /// when it has been silent for the whole timeout with a reply owed that long.
    private func armTimer() {
        guard !waiting.isEmpty else { return }
        let now = NIODeadline.now()
        var next = now + timeout
        for entry in waiting where entry.callback != nil && entry.deadline < next { next = entry.deadline }
        next = max(next, now + .milliseconds(1))
        if let armed = timerDeadline, armed <= next { return }
        schedule(at: next)
    }

    private func schedule(at deadline: NIODeadline) {
        timerGeneration += 1
        let generation = timerGeneration
        timerDeadline = deadline
        loop.scheduleTask(deadline: deadline) { [self] in
            guard generation == timerGeneration else { return }
            timerDeadline = nil
            checkDeadlines()
        }
    }

    private func checkDeadlines() {
        guard !isClosed else { return }
        let now = NIODeadline.now()
        if let oldest = waiting.first, oldest.sent + timeout <= now, lastHeard + timeout <= now {
            if seemsSilent {
                fail(RedisError("no reply from \(endpoint) within \(timeout.nanoseconds / 1_000_000)ms"))
                return
            }
            seemsSilent = true
            schedule(at: now + .milliseconds(1))
            return
        }
        var late: [Callback] = []
        for index in waiting.indices where waiting[index].deadline <= now {
            guard let callback = waiting[index].callback else { continue }
            waiting[index].callback = nil
            owed -= 1
            late.append(callback)
        }
        let error = RedisError("no reply from \(endpoint) within \(timeout.nanoseconds / 1_000_000)ms")
        for callback in late { callback(.failure(error)) }
        armTimer()
    }

    private func fail(_ error: RedisError) {
        guard !isClosed else { return }
        isClosed = true
        channel?.close(promise: nil)
        channel = nil
        let callbacks = waiting.compactMap(\.callback)
        waiting.removeAll()
        owed = 0
        onLateReply = nil
        for callback in callbacks { callback(.failure(error)) }
        let report = onFailure
        onFailure = nil
        report?(error)
    }
}

/// Hands a link's bytes and its end to the link.
private final class RedisLinkHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer

    private var link: RedisLink?

    init(link: RedisLink) {
        self.link = link
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        link?.received(unwrapInboundIn(data))
    }

    func channelInactive(context: ChannelHandlerContext) {
        link?.closedByPeer(nil)
        link = nil
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        link?.closedByPeer(error)
        link = nil
        context.close(promise: nil)
    }
}
