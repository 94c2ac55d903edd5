import NIOCore

/// On a TLS port, before the TLS handler: a connection whose first byte is not a TLS handshake record (a
/// plaintext client, `nc`, a port scanner) is closed without a word. Without it, the TLS library answers
/// such bytes with an alert record, which a plaintext client would read as garbage; this way it gets no
/// reply at all, and the library never sees it. (The connection's handler counts it: it closed before a
/// handshake.)
final class PlaintextRefusal: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer

    /// A TLS record of type handshake, as every ClientHello starts.
    static let handshakeRecord: UInt8 = 0x16

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard unwrapInboundIn(data).readableBytesView.first == Self.handshakeRecord else {
            context.close(promise: nil)
            return
        }
        context.fireChannelRead(data)
        context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
    }
}
