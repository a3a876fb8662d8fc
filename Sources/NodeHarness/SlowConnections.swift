#if canImport(Glibc)
import Glibc
#endif

/// How a socket looks to a peek that does not wait: still open with nothing to read, closed by
/// the peer (EOF or reset), or with bytes waiting (for a held slow connection: an answer, such
/// as a 408 or 503, which the node sends before it closes).
public enum PeerState {
    case open, closed, answered
}

/// Peeks at `descriptor` without blocking and without consuming anything.
public func peerState(of descriptor: Int32) -> PeerState {
    var byte: UInt8 = 0
    let count = recv(descriptor, &byte, 1, Int32(MSG_PEEK) | Int32(MSG_DONTWAIT))
    if count > 0 { return .answered }
    if count == 0 { return .closed }
    return errno == EAGAIN || errno == EWOULDBLOCK ? .open : .closed
}

/// Held slow connections: half stop inside the request head (`Content-Le`), half send a whole
/// head announcing a 1000-byte body and then only 6 bytes of it. Held on one thread (the
/// caller's), never shared. For the load harness and the tests of the node's timeouts.
public struct SlowConnections {
    public private(set) var connections: [HTTPConnection] = []
    public private(set) var failures: [String] = []

    public static let partialHead = "POST /v1/blocks HTTP/1.1\r\nHost: x\r\nContent-Le"
    public static let partialBody = "POST /v1/blocks HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"ops\""

    /// Opens `count` of them against `port`.
    public init(count: Int, port: Int) {
        connections.reserveCapacity(count)
        // Bounded: count connections, each connect and send bounded by the 10 s socket timeout.
        for index in 0..<count {
            do {
                let connection = try HTTPConnection(port: port, timeoutSeconds: 10)
                let bytes = Array((index % 2 == 0 ? Self.partialHead : Self.partialBody).utf8)
                let sent = connection.send(bytes)
                if sent != bytes.count {
                    failures.append("slow connection \(index): sent \(sent) of \(bytes.count) bytes")
                    connection.close()
                    continue
                }
                connections.append(connection)
            } catch {
                failures.append("slow connection \(index): \(error)")
            }
        }
    }

    /// How many are still open with no answer from the node.
    public var held: Int { connections.filter { peerState(of: $0.descriptor) == .open }.count }

    public mutating func closeAll() {
        for connection in connections { connection.close() }
        connections = []
    }
}
