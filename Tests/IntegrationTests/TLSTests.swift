import Foundation
import TestSupport
import Testing

/// TLS on the client port, against the real binary: both protocols through Python's ssl module,
/// redis-cli --tls and redis-py ssl=True; client certificates; reloads; plaintext and stalled handshakes.
@Suite("TLS", .serialized, .timeLimit(.minutes(3)))
struct TLSTests {
    /// Python (standard library only) talks to the daemon over TLS: sends each argument as a line (a RESP
    /// frame when it starts with `*`) and prints every reply line, or the error that ended the connection.
    static let client = """
        import socket, ssl, sys
        port, ca, cert, key = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
        context = ssl.create_default_context(cafile=ca)
        if cert:
            context.load_cert_chain(cert, key)
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
                with context.wrap_socket(raw, server_hostname="localhost") as tls:
                    print("serial", format(tls.getpeercert()["serialNumber"]))
                    for request in sys.argv[5:]:
                        tls.sendall(request.encode() + (b"" if request.startswith("*") else b"\\n"))
                    data = b""
                    wanted = len(sys.argv[5:])
                    while data.count(b"\\n") < wanted:
                        chunk = tls.recv(65536)
                        if not chunk:
                            break
                        data += chunk
                    sys.stdout.write(data.decode())
        except (ssl.SSLError, ConnectionError, OSError) as error:
            print("error", type(error).__name__)
        """

    static func talk(
        _ port: Int, _ certificates: TestCertificates, clientCertificate: Bool = false, _ requests: [String]
    ) throws -> [String] {
        let arguments = ["-c", client, "\(port)", certificates.ca,
                         clientCertificate ? certificates.clientCertificate : "", clientCertificate ? certificates.clientKey : ""]
        let result = try ExternalTool.run("python3", arguments + requests)
        // By bytes: "\r\n" is one Character, which a split on "\n" would not cut.
        return result.output.utf8.split(separator: UInt8(ascii: "\n")).map { String(decoding: $0, as: UTF8.self) }
    }

    static func start(_ certificates: TestCertificates, _ extra: [String] = []) throws -> DaemonProcess {
        try DaemonProcess(arguments: ["--tls-cert", certificates.serverCertificate, "--tls-key", certificates.serverKey] + extra)
    }

    @Test func bothProtocolsSpeakTLSAndAPlaintextClientGetsNothingAndDisturbsNobody() throws {
        let certificates = try TestCertificates()
        defer { certificates.remove() }
        let daemon = try Self.start(certificates)
        let serial = try certificates.serial(of: certificates.serverCertificate).replacingOccurrences(of: "serial=", with: "")
        let replies = try Self.talk(daemon.port, certificates, ["PING", "CHECK tls:1 1", "*3\r\n$5\r\nCHECK\r\n$5\r\ntls:1\r\n$1\r\n1\r\n"])
        #expect(replies == ["serial \(serial)", "PONG", "ALLOW 99 600", "*3\r", "+ALLOW\r", ":98\r", ":1200\r"], "\(replies)")

        // A plaintext client: no reply at all, and the connection closed.
        let plain = try LineClient(port: daemon.port)
        try plain.send("PING\nCHECK tls:1 1\n")
        #expect(try plain.readUntilClosed() == [])
        #expect(Self.statistic("tls_failures", daemon, certificates) == 1)
    }

    /// STATS over TLS.
    static func statistic(_ name: String, _ daemon: DaemonProcess, _ certificates: TestCertificates, clientCertificate: Bool = false) -> Int64? {
        let lines = (try? talk(daemon.port, certificates, clientCertificate: clientCertificate, ["STATS"])) ?? []
        return lines.first { $0.hasPrefix("STAT \(name) ") }.flatMap { Int64($0.split(separator: " ")[2]) }
    }

    @Test(.enabled(if: ExternalTool.required || ExternalTool.available("redis-cli", "python3")))
    func redisCLIAndRedisPyConnectWithTLS() throws {
        let certificates = try TestCertificates()
        defer { certificates.remove() }
        let daemon = try Self.start(certificates)
        let cli = try ExternalTool.run(
            "redis-cli", ["--tls", "--cacert", certificates.ca, "-h", "127.0.0.1", "-p", "\(daemon.port)", "CHECK", "cli:1", "1"])
        #expect(cli.output == "ALLOW\n99\n600\n", "\(cli.output)")
        let script = """
            import sys, redis
            port, ca = int(sys.argv[1]), sys.argv[2]
            for protocol in (2, 3):
                client = redis.Redis(host="127.0.0.1", port=port, ssl=True, ssl_ca_certs=ca, protocol=protocol)
                assert client.execute_command("CHECK", "py:%d" % protocol, 1) == [b"ALLOW", 99, 600], protocol
                pipe = client.pipeline(transaction=False)
                for i in range(500):
                    pipe.execute_command("CHECK", "pipe:%d:%d" % (protocol, i), 1, "10/1h")
                assert all(reply[0] == b"ALLOW" and reply[1] == 9 for reply in pipe.execute())
            print("ok")
            """
        let result = try ExternalTool.run(
            "python3", ["-c", script, "\(daemon.port)", certificates.ca], environment: AuthTests.pythonEnvironment)
        #expect(result.status == 0 && result.output == "ok\n", "\(result.output)")
    }

    @Test func aClientCAAsksForClientCertificates() throws {
        let certificates = try TestCertificates()
        defer { certificates.remove() }
        let daemon = try Self.start(certificates, ["--tls-client-ca", certificates.ca])
        let refused = try Self.talk(daemon.port, certificates, ["PING"])
        // Under TLS 1.3 the client finishes its side first; the server's refusal comes as the first read fails.
        #expect(refused.last?.hasPrefix("error ") == true && !refused.contains("PONG"), "no client certificate: \(refused)")
        let admitted = try Self.talk(daemon.port, certificates, clientCertificate: true, ["PING"])
        #expect(admitted.last == "PONG", "\(admitted)")
        let cli = try ExternalTool.run("redis-cli", [
            "--tls", "--cacert", certificates.ca, "--cert", certificates.clientCertificate, "--key", certificates.clientKey,
            "-h", "127.0.0.1", "-p", "\(daemon.port)", "PING",
        ])
        #expect(cli.output == "PONG\n", "\(cli.output)")
        #expect(Self.statistic("tls_failures", daemon, certificates, clientCertificate: true) == 1)
    }

    @Test func aReloadServesTheNewCertificateToNewConnections() throws {
        let certificates = try TestCertificates()
        defer { certificates.remove() }
        let daemon = try Self.start(certificates)
        let before = try certificates.serial(of: certificates.serverCertificate).replacingOccurrences(of: "serial=", with: "")
        #expect(try Self.talk(daemon.port, certificates, ["PING"]) == ["serial \(before)", "PONG"])
        let after = try certificates.reissueServer().replacingOccurrences(of: "serial=", with: "")
        #expect(after != before)
        kill(daemon.process.processIdentifier, SIGHUP)
        #expect(daemon.waitForLog("reloaded the TLS certificate"), "\(daemon.log)")
        #expect(try Self.talk(daemon.port, certificates, ["PING"]) == ["serial \(after)", "PONG"])
    }

    @Test func aHandshakeThatNeverEndsIsClosedAfterTheRequestTimeout() throws {
        let certificates = try TestCertificates()
        defer { certificates.remove() }
        let daemon = try Self.start(certificates, ["--request-timeout", "500ms"])
        let stalled = try LineClient(port: daemon.port)
        // The first bytes of a ClientHello record, and nothing more.
        try stalled.send(bytes: [0x16, 0x03, 0x01, 0x00, 0xF0, 0x01])
        let started = Date()
        #expect(try stalled.readUntilClosed() == [])
        #expect(Date().timeIntervalSince(started) < 5)
        #expect(Self.statistic("request_timeouts", daemon, certificates) == 1)
        #expect(Self.statistic("tls_failures", daemon, certificates) == 1)
    }

    @Test func filesThatCannotBeUsedStopStartUpWithTheReason() throws {
        let certificates = try TestCertificates()
        defer { certificates.remove() }
        let cases: [([String], String)] = [
            (["--tls-cert", certificates.serverCertificate], "tls_cert needs tls_key (--tls-key)"),
            (["--tls-key", certificates.serverKey], "tls_key needs tls_cert (--tls-cert)"),
            (["--tls-client-ca", certificates.ca], "tls_client_ca needs tls_cert and tls_key"),
            (["--tls-cert", certificates.serverCertificate, "--tls-key", certificates.clientKey], "cannot be used together"),
            (["--tls-cert", certificates.serverKey, "--tls-key", certificates.serverKey], "tls_cert: \(certificates.serverKey)"),
            (["--tls-cert", "/nonexistent.pem", "--tls-key", certificates.serverKey], "tls_cert: /nonexistent.pem does not exist"),
            (["--tls-cert", certificates.serverCertificate, "--tls-key", "/tmp"], "tls_key: /tmp is not a regular file (a directory)"),
        ]
        for (arguments, message) in cases {
            let result = try DaemonProcess.runToExit(arguments + ["--check-config"])
            #expect(result.status == 1 && result.output.contains(message), "\(arguments): \(result.output)")
        }
        let good = try DaemonProcess.runToExit([
            "--config", try temporaryFile("[server]\ntls_cert = \"\(certificates.serverCertificate)\"\ntls_key = \"\(certificates.serverKey)\"\n"),
            "--check-config",
        ])
        #expect(good.status == 0 && good.output.contains("TLS on the client port: tls_cert \(certificates.serverCertificate)"), "\(good.output)")
    }
}
