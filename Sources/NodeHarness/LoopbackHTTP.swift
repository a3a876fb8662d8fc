#if canImport(Glibc)
import Glibc
#endif

/// A minimal blocking HTTP/1.1 client for loopback tools and tests (the kill -9 test, the
/// end-to-end tests): one request per connection (`Connection: close`), IPv4 only, with a
/// receive timeout. Not for production traffic.
public enum LoopbackHTTP {
    public struct Response: Sendable {
        public var status: Int
        public var headers: [String: String]
        public var body: [UInt8]
        public var text: String { String(decoding: body, as: UTF8.self) }
    }

    public struct Failure: Error, CustomStringConvertible {
        public var message: String
        public var description: String { message }

        public init(message: String) {
            self.message = message
        }
    }

    /// Sends `method path` with `body` to `127.0.0.1:port` (or `host`) and reads the whole
    /// response. `rawRequest` replaces the request entirely (for malformed-request tests).
    public static func request(
        _ method: String, _ path: String, port: Int, host: String = "127.0.0.1", body: [UInt8] = [],
        extraHeaders: [String] = [], rawRequest: [UInt8]? = nil, timeoutSeconds: Int = 30
    ) throws(Failure) -> Response {
        let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard descriptor >= 0 else { throw Failure(message: "socket: errno \(errno)") }
        defer { close(descriptor) }
        var timeout = timeval(tv_sec: timeoutSeconds, tv_usec: 0)
        setsockopt(descriptor, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(descriptor, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        guard inet_pton(AF_INET, host, &address.sin_addr) == 1 else { throw Failure(message: "not an IPv4 address: \(host)") }
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else { throw Failure(message: "connect to \(host):\(port): errno \(errno)") }
        var request: [UInt8]
        if let rawRequest {
            request = rawRequest
        } else {
            var head = "\(method) \(path) HTTP/1.1\r\nHost: \(host):\(port)\r\nConnection: close\r\n"
            if method == "POST" || method == "PUT" || !body.isEmpty {
                head += "Content-Type: application/json\r\nContent-Length: \(body.count)\r\n"
            }
            for header in extraHeaders { head += header + "\r\n" }
            request = Array((head + "\r\n").utf8) + body
        }
        var sent = 0
        // Bounded by the request's length: each round sends at least one byte or fails.
        while sent < request.count {
            let result = request[sent...].withUnsafeBytes { send(descriptor, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if result <= 0 {
                // The server may answer early (e.g. 413) and close; read what it said.
                break
            }
            sent += result
        }
        var received: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 64 << 10)
        // Bounded: at most 256 MiB, and every round reads at least one byte or ends.
        while received.count < 256 << 20 {
            let count = buffer.withUnsafeMutableBytes { recv(descriptor, $0.baseAddress, $0.count, 0) }
            if count <= 0 { break }
            received += buffer[0..<count]
        }
        return try parse(received)
    }

    static func parse(_ bytes: [UInt8]) throws(Failure) -> Response {
        let separator: [UInt8] = [13, 10, 13, 10]
        guard let headEnd = (0..<max(0, bytes.count - 3)).first(where: { Array(bytes[$0..<($0 + 4)]) == separator }) else {
            throw Failure(message: "no complete HTTP response (\(bytes.count) bytes received)")
        }
        let lines = String(decoding: bytes[0..<headEnd], as: UTF8.self).components(separatedBy: "\r\n")
        let statusParts = lines.first?.split(separator: " ") ?? []
        guard statusParts.count >= 2, let status = Int(statusParts[1]) else {
            throw Failure(message: "bad status line: \(lines.first ?? "")")
        }
        var headers: [String: String] = [:]
        for line in lines.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        var body = Array(bytes[(headEnd + 4)...])
        if headers["transfer-encoding"]?.lowercased() == "chunked" {
            body = try dechunk(body)
        } else if let length = headers["content-length"].flatMap({ Int($0) }), length <= body.count {
            body = Array(body[0..<length])
        }
        return Response(status: status, headers: headers, body: body)
    }

    static func dechunk(_ bytes: [UInt8]) throws(Failure) -> [UInt8] {
        var output: [UInt8] = []
        var offset = 0
        // Bounded: every round consumes a chunk header and its data, or ends.
        while offset < bytes.count {
            guard let lineEnd = (offset..<max(offset, bytes.count - 1)).first(where: { bytes[$0] == 13 && bytes[$0 + 1] == 10 }),
                let size = Int(String(decoding: bytes[offset..<lineEnd], as: UTF8.self).split(separator: ";")[0], radix: 16)
            else { throw Failure(message: "bad chunked encoding") }
            if size == 0 { break }
            let start = lineEnd + 2
            guard start + size <= bytes.count else { throw Failure(message: "truncated chunk") }
            output += bytes[start..<(start + size)]
            offset = start + size + 2
        }
        return output
    }
}

#if canImport(Foundation)
import Foundation
#endif
