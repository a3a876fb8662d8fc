import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// moto's standalone S3 server on a free loopback port, for one test (PyPI's `moto[server]`,
/// installed by scripts/install-dependencies.sh). Stopped with `stop`.
public final class MotoServer {
    public let process: Process
    public let endpoint: String

    public init() throws {
        let port = try NodeProcess.freePort()
        process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["moto_server", "-H", "127.0.0.1", "-p", "\(port)"]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        endpoint = "http://127.0.0.1:\(port)"
        // Bounded: 30 s of 100 ms polls.
        for _ in 0..<300 {
            if (try? LoopbackHTTP.request("GET", "/", port: port, timeoutSeconds: 2)) != nil { return }
            guard process.isRunning else { break }
            usleep(100_000)
        }
        stop()
        throw LoopbackHTTP.Failure(message: "moto_server did not start on \(endpoint); install it with bash scripts/install-dependencies.sh")
    }

    /// SIGKILL (werkzeug's server may ignore SIGTERM while it serves): it holds nothing to keep.
    public func stop() {
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
    }

    /// The environment a process needs to reach it as S3 (the standard AWS variables).
    public var environment: [String: String] {
        ["AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": "us-east-1", "AWS_ENDPOINT_URL": endpoint]
    }
}
