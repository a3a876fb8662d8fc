#if canImport(Glibc)
import Glibc
#endif

/// One blocking TCP connection to a loopback HTTP server, for tools and tests that need more
/// than one request per connection (keep-alive load, held slow connections, hostile byte
/// streams). Every receive and send is bounded by the connection's timeout. Not for
/// production traffic.
public final class HTTPConnection {
    public let descriptor: Int32
    public let port: Int

    /// What a read that ended without a whole response saw.
    public enum Ending: Equatable, Sendable {
        /// The peer closed (EOF).
        case closed
        /// The peer reset the connection.
        case reset
        /// The timeout passed with no more bytes.
        case timedOut
    }

    /// Connects to `host:port` (IPv4) with `timeoutSeconds` on every send and receive;
    /// `receiveBufferBytes` shrinks the socket's receive buffer (a client that reads slowly).
    public init(port: Int, host: String = "127.0.0.1", timeoutSeconds: Double = 30, receiveBufferBytes: Int32? = nil) throws(LoopbackHTTP.Failure) {
        let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard descriptor >= 0 else { throw LoopbackHTTP.Failure(message: "socket: errno \(errno)") }
        self.descriptor = descriptor
        self.port = port
        setTimeout(seconds: timeoutSeconds)
        if var size = receiveBufferBytes {
            setsockopt(descriptor, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size))
        }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        guard inet_pton(AF_INET, host, &address.sin_addr) == 1 else {
            close()
            throw LoopbackHTTP.Failure(message: "not an IPv4 address: \(host)")
        }
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else {
            let code = errno
            close()
            throw LoopbackHTTP.Failure(message: "connect to \(host):\(port): errno \(code)")
        }
    }

    deinit { close() }

    private var isOpen = true

    public func close() {
        if isOpen { Glibc.close(descriptor) }
        isOpen = false
    }

    /// Sets the send and receive timeout.
    public func setTimeout(seconds: Double) {
        var timeout = timeval(tv_sec: Int(seconds), tv_usec: Int((seconds - seconds.rounded(.down)) * 1_000_000))
        setsockopt(descriptor, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(descriptor, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }

    /// Sends `bytes`; returns how many went before the peer closed, reset or the timeout
    /// passed (a server may answer early and close).
    @discardableResult
    public func send(_ bytes: [UInt8]) -> Int {
        var sent = 0
        // Bounded by the length: each round sends at least one byte or stops.
        while sent < bytes.count {
            let result = bytes[sent...].withUnsafeBytes { Glibc.send(descriptor, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if result <= 0 { break }
            sent += result
        }
        return sent
    }

    public func send(_ text: String) { send(Array(text.utf8)) }

    /// Half-closes: the peer reads EOF after what was sent.
    public func shutdownWrite() { shutdown(descriptor, Int32(SHUT_WR)) }

    /// One `recv`: the bytes, or how the stream ended.
    public func receiveSome(maxBytes: Int = 64 << 10) -> Result<[UInt8], EndingError> {
        var buffer = [UInt8](repeating: 0, count: maxBytes)
        let count = buffer.withUnsafeMutableBytes { recv(descriptor, $0.baseAddress, $0.count, 0) }
        if count > 0 { return .success(Array(buffer[0..<count])) }
        if count == 0 { return .failure(EndingError(ending: .closed)) }
        let code = errno
        if code == EAGAIN || code == EWOULDBLOCK { return .failure(EndingError(ending: .timedOut)) }
        return .failure(EndingError(ending: .reset))
    }

    public struct EndingError: Error, Equatable {
        public var ending: Ending
    }

    private var pending: [UInt8] = []

    /// Reads one response (the head, then a Content-Length or chunked body, or to EOF when
    /// neither is given). Leaves bytes past it for the next call. Bounded: 256 MiB.
    public func readResponse() throws(LoopbackHTTP.Failure) -> LoopbackHTTP.Response {
        // Bounded: each round receives at least one byte or ends; at most 256 MiB.
        while pending.count < 256 << 20 {
            if let (response, used) = try LoopbackHTTP.parseComplete(pending) {
                pending.removeFirst(used)
                return response
            }
            switch receiveSome() {
            case .success(let bytes): pending += bytes
            case .failure(let error):
                if error.ending == .closed, !pending.isEmpty, let response = try? LoopbackHTTP.parse(pending) {
                    pending = []
                    return response
                }
                throw LoopbackHTTP.Failure(message: "no complete response: \(error.ending) after \(pending.count) bytes")
            }
        }
        throw LoopbackHTTP.Failure(message: "response larger than 256 MiB")
    }

    /// Reads until the peer closes, resets or the timeout passes; returns what came and how it
    /// ended. Bounded: `limitBytes`.
    public func readUntilEnd(limitBytes: Int = 256 << 20) -> (bytes: [UInt8], ending: Ending) {
        var received = pending
        pending = []
        // Bounded: each round receives at least one byte or ends; at most limitBytes.
        while received.count < limitBytes {
            switch receiveSome() {
            case .success(let bytes): received += bytes
            case .failure(let error): return (received, error.ending)
            }
        }
        return (received, .timedOut)
    }
}
