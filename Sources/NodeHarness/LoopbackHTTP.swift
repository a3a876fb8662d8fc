#if canImport(Glibc)
import Glibc
#endif

/// A minimal blocking HTTP/1.1 client for loopback tools and tests (the kill -9 test, the
/// end-to-end tests): one request per connection (`Connection: close`), IPv4 only, with a
/// receive timeout. Not for production traffic. `HTTPConnection` keeps a connection open.
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
        let connection = try HTTPConnection(port: port, host: host, timeoutSeconds: Double(timeoutSeconds))
        defer { connection.close() }
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
        // The server may answer early (e.g. 413) and close; read what it said.
        connection.send(request)
        return try parse(connection.readUntilEnd().bytes)
    }

    /// The response at the start of `bytes` if it is complete (its head and, by Content-Length
    /// or chunked framing, its body), with the number of bytes it used; nil if more is needed.
    /// A response with neither framing is complete only at EOF (nil here).
    public static func parseComplete(_ bytes: [UInt8]) throws(Failure) -> (Response, Int)? {
        guard let headEnd = findHeadEnd(bytes) else { return nil }
        let response = try parse(Array(bytes[0..<(headEnd + 4)]))
        if let length = response.headers["content-length"].flatMap({ Int($0) }) {
            guard bytes.count >= headEnd + 4 + length else { return nil }
            return (try parse(Array(bytes[0..<(headEnd + 4 + length)])), headEnd + 4 + length)
        }
        if response.headers["transfer-encoding"]?.lowercased() == "chunked" {
            // The last chunk: CRLF "0" CRLF CRLF, searched from the CRLF that ends the head.
            let terminator: [UInt8] = Array("\r\n0\r\n\r\n".utf8)
            guard let end = (headEnd + 2..<max(headEnd + 2, bytes.count - 6)).first(where: { Array(bytes[$0..<($0 + 7)]) == terminator })
            else { return nil }
            return (try parse(Array(bytes[0..<(end + 7)])), end + 7)
        }
        if response.status == 204 || response.status == 304 || (100..<200).contains(response.status) {
            return (response, headEnd + 4)
        }
        return nil
    }

    /// Where the head ends (the index of its blank line's CR), if it has.
    static func findHeadEnd(_ bytes: [UInt8]) -> Int? {
        let separator: [UInt8] = [13, 10, 13, 10]
        return (0..<max(0, bytes.count - 3)).first(where: { Array(bytes[$0..<($0 + 4)]) == separator })
    }

    /// Parses a whole response (head and body) from `bytes`.
    public static func parse(_ bytes: [UInt8]) throws(Failure) -> Response {
        guard let headEnd = findHeadEnd(bytes) else {
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
