/// The one network seam: every exchange a node has with another node (a peer's blocks and
/// status, the local daemon's admin API) goes through a `PeerTransport`, so that the simulator
/// can drive the network the way `FileSystem` lets it drive storage: delays, drops, partitions
/// and lying peers, all from a seed.
///
/// Contract: `exchange` sends one request and returns one whole response, or throws. It never
/// returns more than `request.responseBytesMax` body bytes (a larger answer is
/// `responseTooLarge`), and never takes longer than `request.timeoutSeconds` (then `timedOut`).
/// Nothing a transport returns is trusted: the caller verifies what it reads before it writes
/// anything. A transport keeps no state a caller relies on between exchanges.
public protocol PeerTransport: Sendable {
    func exchange(_ request: PeerRequest) async throws(PeerTransportError) -> PeerResponse
}

extension PeerTransport {
    /// `exchange`, with its failure as a value (what the sync exchanges translate).
    public func outcome(of request: PeerRequest) async -> Result<PeerResponse, PeerTransportError> {
        do throws(PeerTransportError) {
            return .success(try await exchange(request))
        } catch {
            return .failure(error)
        }
    }
}

/// One HTTP request to a peer: `baseURL` (`http://host:port`) and a path beginning with `/`.
public struct PeerRequest: Sendable, Equatable {
    public enum Method: String, Sendable { case get = "GET", post = "POST" }

    public var method: Method
    public var baseURL: String
    public var path: String
    public var body: [UInt8]
    public var contentType: String?
    /// Extra request headers (lower-case names), such as `range`.
    public var headers: [String: String] = [:]
    public var timeoutSeconds: Double
    public var responseBytesMax: Int

    public init(
        _ method: Method, baseURL: String, path: String, body: [UInt8] = [], contentType: String? = nil,
        timeoutSeconds: Double = 30, responseBytesMax: Int = 16 << 20
    ) {
        precondition(path.hasPrefix("/"), "a peer request's path begins with /")
        precondition(
            timeoutSeconds > 0 && timeoutSeconds <= Self.timeoutSecondsMax && responseBytesMax >= 0,
            "a peer request has a time limit of at most a day and a size bound")
        self.method = method
        self.baseURL = baseURL
        self.path = path
        self.body = body
        self.contentType = contentType
        self.timeoutSeconds = timeoutSeconds
        self.responseBytesMax = responseBytesMax
    }

    /// The longest time limit a request may have (a day: a snapshot file over a slow link).
    public static let timeoutSecondsMax: Double = 86_400

    /// `METHOD URL` for messages.
    public var description: String { "\(method.rawValue) \(baseURL)\(path)" }
}

/// A peer's whole answer. Header names are lower-cased.
public struct PeerResponse: Sendable, Equatable {
    public var status: Int
    public var headers: [String: String]
    public var body: [UInt8]

    public init(status: Int, headers: [String: String] = [:], body: [UInt8]) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    public var text: String { String(decoding: body, as: UTF8.self) }
}

/// Why an exchange with a peer gave no response; keeps the peer and the request.
public struct PeerTransportError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Kind: String, Sendable {
        /// The URL is not `http://host:port` (a configuration error, not the peer's fault).
        case invalidURL = "invalid_url"
        /// No connection: refused, unreachable, reset before an answer, or partitioned away.
        case unreachable
        /// No whole answer within the request's time limit.
        case timedOut = "timed_out"
        /// The answer's body was larger than the request allows; nothing of it is returned.
        case responseTooLarge = "response_too_large"
    }

    public let kind: Kind
    public let request: String
    public let detail: String

    public init(_ kind: Kind, request: PeerRequest, _ detail: String) {
        self.kind = kind
        self.request = request.description
        self.detail = detail
    }

    public var description: String { "\(request): \(kind.rawValue): \(detail)" }
}
