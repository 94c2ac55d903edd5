import Foundation

/// A throwaway CA, a server certificate for 127.0.0.1 and localhost, and a client certificate, made with the
/// openssl command in a fresh directory, readable by the daemon's user (keys mode 600).
public struct TestCertificates {
    public let directory: String
    public var ca: String { directory + "/ca.pem" }
    public var serverCertificate: String { directory + "/server.pem" }
    public var serverKey: String { directory + "/server.key" }
    public var clientCertificate: String { directory + "/client.pem" }
    public var clientKey: String { directory + "/client.key" }

    public init() throws {
        directory = NSTemporaryDirectory() + "rl-tls-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        try Unprivileged.handOver(directory)
        try openssl(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", file("ca.key"),
                     "-out", ca, "-days", "2", "-subj", "/CN=ratelimitd test CA"])
        try issue("server", subject: "/CN=localhost", extensions: "subjectAltName=IP:127.0.0.1,DNS:localhost\n")
        try issue("client", subject: "/CN=test client", extensions: "extendedKeyUsage=clientAuth\n")
        for file in try FileManager.default.contentsOfDirectory(atPath: directory) {
            try Unprivileged.handOver(directory + "/" + file)
            if file.hasSuffix(".key") { chmod(directory + "/" + file, 0o600) }
        }
    }

    /// Issues a new server certificate (another serial) in place, for reload tests; returns its serial.
    @discardableResult
    public func reissueServer() throws -> String {
        try issue("server", subject: "/CN=localhost", extensions: "subjectAltName=IP:127.0.0.1,DNS:localhost\n")
        try Unprivileged.handOver(serverCertificate)
        try Unprivileged.handOver(serverKey)
        chmod(serverKey, 0o600)
        return try serial(of: serverCertificate)
    }

    public func serial(of certificate: String) throws -> String {
        try openssl(["x509", "-in", certificate, "-noout", "-serial"]).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    private func issue(_ name: String, subject: String, extensions: String) throws {
        try extensions.write(toFile: file("\(name).ext"), atomically: true, encoding: .utf8)
        try openssl(["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", file("\(name).key"),
                     "-out", file("\(name).csr"), "-subj", subject])
        try openssl(["x509", "-req", "-in", file("\(name).csr"), "-CA", ca, "-CAkey", file("ca.key"), "-CAcreateserial",
                     "-out", file("\(name).pem"), "-days", "2", "-extfile", file("\(name).ext")])
    }

    private func file(_ name: String) -> String {
        directory + "/" + name
    }

    @discardableResult
    private func openssl(_ arguments: [String]) throws -> String {
        let result = try ExternalTool.run("openssl", arguments)
        guard result.status == 0 else { throw LineClient.Failure(description: "openssl \(arguments): \(result.output)") }
        return result.output
    }

    public func remove() {
        try? FileManager.default.removeItem(atPath: directory)
    }
}
