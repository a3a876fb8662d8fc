import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// A running `rivellum-node run` on a free loopback port, for tests and the kill -9 test.
public struct NodeProcess {
    public let process: Process
    public let port: Int
    public let logPath: String

    /// The `rivellum-node` binary next to the running executable (or one level up, where
    /// swift test keeps its bundle).
    public static func siblingBinary(named name: String = "rivellum-node") -> String {
        let directory = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        let beside = directory.appendingPathComponent(name).path
        if FileManager.default.isExecutableFile(atPath: beside) { return beside }
        return directory.deletingLastPathComponent().appendingPathComponent(name).path
    }

    /// Starts `binary run --listen 127.0.0.1:<free port> <arguments>`, appending its standard
    /// error to `logPath`, and waits until `GET /health` answers (up to 60 s).
    /// - Parameter currentDirectory: the node's working directory (where the default
    ///   `./rivellum-data` goes); the caller's when nil.
    public static func start(
        binary: String, arguments: [String], logPath: String, currentDirectory: String? = nil, environment: [String: String] = [:]
    ) throws -> NodeProcess {
        if !FileManager.default.fileExists(atPath: logPath) { FileManager.default.createFile(atPath: logPath, contents: nil) }
        // Bounded: a few attempts in case another process takes the port first (exit 69).
        for _ in 0..<5 {
            let port = try freePort()
            let process = Process()
            process.executableURL = URL(fileURLWithPath: binary)
            process.arguments = ["run", "--listen", "127.0.0.1:\(port)"] + arguments
            process.standardOutput = FileHandle.nullDevice
            if !environment.isEmpty { process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 } }
            if let currentDirectory { process.currentDirectoryURL = URL(fileURLWithPath: currentDirectory) }
            guard let log = FileHandle(forWritingAtPath: logPath) else {
                throw LoopbackHTTP.Failure(message: "cannot open \(logPath)")
            }
            log.seekToEndOfFile()
            process.standardError = log
            try process.run()
            try? log.close()
            // Bounded: up to 60 s for recovery and the listener.
            for _ in 0..<600 {
                if let response = try? LoopbackHTTP.request("GET", "/health", port: port, timeoutSeconds: 2), response.status == 200 {
                    return NodeProcess(process: process, port: port, logPath: logPath)
                }
                if !process.isRunning { break }
                usleep(100_000)
            }
            if process.isRunning { kill(process.processIdentifier, SIGKILL) }
            process.waitUntilExit()
            let status = process.terminationStatus
            if status != 69 {
                throw LoopbackHTTP.Failure(message: "the node did not come up (exit status \(status)); see \(logPath)")
            }
        }
        throw LoopbackHTTP.Failure(message: "could not find a free port for the node")
    }

    /// `kill -9` and reap.
    public func kill9() {
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }

    /// Waits up to `timeoutSeconds` for the node to exit on its own; its exit status, or nil
    /// while it still runs.
    public func waitForExit(timeoutSeconds: Double) -> Int32? {
        // Bounded: polls every 50 ms up to the timeout.
        for _ in 0..<max(1, Int(timeoutSeconds * 20)) where process.isRunning { usleep(50_000) }
        return process.isRunning ? nil : process.terminationStatus
    }

    /// SIGTERM (graceful shutdown), wait, and return the exit status.
    @discardableResult
    public func terminate() -> Int32 {
        kill(process.processIdentifier, SIGTERM)
        process.waitUntilExit()
        return process.terminationStatus
    }

    /// A port the kernel just handed out on loopback (closed again; the node binds it next).
    public static func freePort() throws -> Int {
        let (descriptor, port) = try bindLoopbackSocket(listenBacklog: nil)
        close(descriptor)
        return port
    }
}

/// A TCP socket bound to a free port on 127.0.0.1 (and listening, with `listenBacklog`): the
/// descriptor and the port.
func bindLoopbackSocket(listenBacklog: Int32?) throws(LoopbackHTTP.Failure) -> (Int32, Int) {
    let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard descriptor >= 0 else { throw LoopbackHTTP.Failure(message: "socket: errno \(errno)") }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = 0
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { pointer in
            bind(descriptor, pointer, length) == 0 && listenBacklog.map { listen(descriptor, $0) == 0 } ?? true
                && getsockname(descriptor, pointer, &length) == 0
        }
    }
    guard bound else {
        let code = errno
        close(descriptor)
        throw LoopbackHTTP.Failure(message: "bind to loopback: errno \(code)")
    }
    return (descriptor, Int(UInt16(bigEndian: address.sin_port)))
}
