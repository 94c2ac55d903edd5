import NIOConcurrencyHelpers
import NIOSSL

/// Where the client port's certificate, key and (optionally) the CA that client certificates must chain to
/// are: PEM files, read at start and again on SIGHUP.
public struct TLSFiles: Sendable, Equatable, CustomStringConvertible {
    public var certificate: String
    public var key: String
    /// When set, a client must present a certificate this CA (bundle) issued.
    public var clientCA: String?

    public init(certificate: String, key: String, clientCA: String? = nil) {
        self.certificate = certificate
        self.key = key
        self.clientCA = clientCA
    }

    public var description: String {
        "tls_cert \(certificate), tls_key \(key)" + (clientCA.map { ", tls_client_ca \($0) (client certificates required)" } ?? "")
    }
}

/// Why the TLS files cannot be used, naming the file.
public struct TLSFilesError: Error, CustomStringConvertible {
    public let description: String
}

/// The TLS context new client connections use. New connections take the one in force when they are
/// accepted, so a reload changes the certificate of the next connection and never of one already open.
public final class TLSCertificates: Sendable {
    public let files: TLSFiles
    private let current: NIOLockedValueBox<NIOSSLContext>

    /// The key file's permission bits as they were read at start, for the warning about others reading it.
    public let keyMode: UInt32

    public init(_ files: TLSFiles) throws(TLSFilesError) {
        self.files = files
        let (context, keyMode) = try Self.context(files)
        self.current = NIOLockedValueBox(context)
        self.keyMode = keyMode
    }

    var context: NIOSSLContext { current.withLockedValue { $0 } }

    /// Reads the files again; on failure the context in force stays.
    public func reload() throws(TLSFilesError) {
        let next = try Self.context(files).context
        current.withLockedValue { $0 = next }
    }

    /// A server context from the files: TLS 1.2 or later, NIO's default ciphers, and, with a client CA,
    /// client certificates required and checked against it (not against a host name: clients are not named);
    /// with the key file's permission bits.
    public static func context(_ files: TLSFiles) throws(TLSFilesError) -> (context: NIOSSLContext, keyMode: UInt32) {
        let chain = try parse(files.certificate, "tls_cert") { try NIOSSLCertificate.fromPEMBytes($0) }.value
        guard !chain.isEmpty else { throw TLSFilesError(description: "tls_cert: \(files.certificate) holds no PEM certificate") }
        let (key, keyMode) = try parse(files.key, "tls_key") { try NIOSSLPrivateKey(bytes: $0, format: .pem) }
        var configuration = TLSConfiguration.makeServerConfiguration(
            certificateChain: chain.map { .certificate($0) }, privateKey: .privateKey(key))
        configuration.minimumTLSVersion = .tlsv12
        if let path = files.clientCA {
            let authorities = try parse(path, "tls_client_ca") { try NIOSSLCertificate.fromPEMBytes($0) }.value
            guard !authorities.isEmpty else { throw TLSFilesError(description: "tls_client_ca: \(path) holds no PEM certificate") }
            configuration.certificateVerification = .noHostnameVerification
            configuration.trustRoots = .certificates(authorities)
            configuration.sendCANameList = true
        }
        do {
            return (try NIOSSLContext(configuration: configuration), keyMode)
        } catch {
            // The usual cause: a key that is not the certificate's.
            throw TLSFilesError(description: "tls_cert \(files.certificate) and tls_key \(files.key) cannot be used together: \(error)")
        }
    }

    /// The file's contents made into a `T`, with its permission bits.
    private static func parse<T>(
        _ path: String, _ setting: String, _ make: ([UInt8]) throws -> T
    ) throws(TLSFilesError) -> (value: T, mode: UInt32) {
        let read: (bytes: [UInt8], mode: UInt32)?
        do {
            read = try SnapshotFile.readRegularFile(path)
        } catch {
            throw TLSFilesError(description: "\(setting): \(error)")
        }
        guard let read else { throw TLSFilesError(description: "\(setting): \(path) does not exist") }
        do {
            return (try make(read.bytes), read.mode)
        } catch {
            throw TLSFilesError(description: "\(setting): \(path) is not PEM that can be used: \(error)")
        }
    }
}
