import NIOConcurrencyHelpers
import NIOCore

/// The connections one listener has open, so shutdown can ask each to finish; once shutdown has begun,
/// connections that were accepted just before the listener closed are asked as they register. Every
/// listener that holds client state (the client port, Envoy's gRPC port) quiesces through one of these.
public final class OpenConnections: Sendable {
    private struct Registry {
        var open: [ObjectIdentifier: any Channel] = [:]
        var quiescing = false
    }

    private let registry = NIOLockedValueBox(Registry())

    public init() {}

    /// Call from the child channel initializer; fires `ChannelShouldQuiesceEvent` into the pipeline once it
    /// is set up if shutdown has already begun (so add the handlers first, then call this).
    public func register(_ channel: any Channel) {
        let id = ObjectIdentifier(channel)
        let quiescing = registry.withLockedValue { registry in
            registry.open[id] = channel
            return registry.quiescing
        }
        channel.closeFuture.whenComplete { [registry] _ in _ = registry.withLockedValue { $0.open.removeValue(forKey: id) } }
        if quiescing { channel.pipeline.fireUserInboundEventTriggered(ChannelShouldQuiesceEvent()) }
    }

    /// Asks every open connection to finish (`ChannelShouldQuiesceEvent`) and waits until all have closed.
    /// Call after closing the listener; cancellation (the shutdown timeout) closes the ones still open.
    public func quiesce() async {
        let open = registry.withLockedValue { registry in
            registry.quiescing = true
            return Array(registry.open.values)
        }
        for channel in open {
            channel.pipeline.fireUserInboundEventTriggered(ChannelShouldQuiesceEvent())
        }
        await withTaskCancellationHandler {
            while let channel = registry.withLockedValue({ $0.open.values.first }) {
                try? await channel.closeFuture.get()
            }
        } onCancel: {
            // The shutdown timeout ran out: stop waiting for clients that do not finish.
            for channel in registry.withLockedValue({ Array($0.open.values) }) { channel.close(promise: nil) }
        }
    }
}
