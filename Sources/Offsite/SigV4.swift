import Crypto
import Foundation

/// AWS credentials: an access key, its secret, and a session token for temporary ones.
public struct AWSCredentials: Sendable, Equatable {
    public var accessKeyID: String
    public var secretAccessKey: String
    public var sessionToken: String?

    public init(accessKeyID: String, secretAccessKey: String, sessionToken: String? = nil) {
        self.accessKeyID = accessKeyID
        self.secretAccessKey = secretAccessKey
        self.sessionToken = sessionToken
    }
}

/// AWS Signature Version 4 for S3 requests (header signing, the payload's SHA-256 in
/// `x-amz-content-sha256`): the canonical request, the string to sign, the derived key and
/// the `Authorization` header. Pure: the time is passed in.
public enum SigV4 {
    public struct Request: Sendable, Equatable {
        public var method: String
        /// The path, not yet encoded (`/bucket/objects/ab12`).
        public var path: String
        /// Query parameters, not yet encoded.
        public var query: [(String, String)]
        /// Headers to sign besides the ones `sign` adds (`range`, `content-type`); lower-case names.
        public var headers: [String: String]
        public var payloadSHA256: String

        public init(method: String, path: String, query: [(String, String)] = [], headers: [String: String] = [:], payloadSHA256: String) {
            self.method = method
            self.path = path
            self.query = query
            self.headers = headers
            self.payloadSHA256 = payloadSHA256
        }

        public static func == (lhs: Request, rhs: Request) -> Bool {
            lhs.method == rhs.method && lhs.path == rhs.path && lhs.query.elementsEqual(rhs.query) { $0 == $1 } && lhs.headers == rhs.headers
                && lhs.payloadSHA256 == rhs.payloadSHA256
        }
    }

    public static let emptyPayloadSHA256 = hex(SHA256.hash(data: [UInt8]()))

    /// The headers to send (`host`, `x-amz-date`, `x-amz-content-sha256`, the session token, and
    /// `authorization`), signed for `host` in `region` at `secondsSince1970`.
    public static func sign(
        _ request: Request, host: String, region: String, credentials: AWSCredentials, secondsSince1970: UInt64, service: String = "s3"
    ) -> [String: String] {
        let (date, stamp) = timestamps(secondsSince1970)
        var headers = request.headers
        headers["host"] = host
        headers["x-amz-date"] = stamp
        headers["x-amz-content-sha256"] = request.payloadSHA256
        if let token = credentials.sessionToken { headers["x-amz-security-token"] = token }
        let signedNames = headers.keys.map { $0.lowercased() }.sorted()
        let canonical = canonicalRequest(request, headers: headers, signedNames: signedNames)
        let scope = "\(date)/\(region)/\(service)/aws4_request"
        let stringToSign = "AWS4-HMAC-SHA256\n\(stamp)\n\(scope)\n\(hex(SHA256.hash(data: Array(canonical.utf8))))"
        let signature = hex(HMAC<SHA256>.authenticationCode(for: Array(stringToSign.utf8), using: signingKey(credentials.secretAccessKey, date, region, service)))
        headers["authorization"] =
            "AWS4-HMAC-SHA256 Credential=\(credentials.accessKeyID)/\(scope), SignedHeaders=\(signedNames.joined(separator: ";")), Signature=\(signature)"
        return headers
    }

    static func canonicalRequest(_ request: Request, headers: [String: String], signedNames: [String]) -> String {
        let query = request.query.map { (encode($0.0, keepSlash: false), encode($0.1, keepSlash: false)) }.sorted { ($0.0, $0.1) < ($1.0, $1.1) }
            .map { "\($0.0)=\($0.1)" }.joined(separator: "&")
        var lowered: [String: String] = [:]
        for (name, value) in headers { lowered[name.lowercased()] = value.trimmingCharacters(in: .whitespaces) }
        let headerLines = signedNames.map { "\($0):\(lowered[$0] ?? "")\n" }.joined()
        return [request.method, encode(request.path, keepSlash: true), query, headerLines, signedNames.joined(separator: ";"), request.payloadSHA256]
            .joined(separator: "\n")
    }

    static func signingKey(_ secret: String, _ date: String, _ region: String, _ service: String) -> SymmetricKey {
        var key = SymmetricKey(data: Array("AWS4\(secret)".utf8))
        for part in [date, region, service, "aws4_request"] {
            key = SymmetricKey(data: Array(HMAC<SHA256>.authenticationCode(for: Array(part.utf8), using: key)))
        }
        return key
    }

    /// (`yyyyMMdd`, `yyyyMMdd'T'HHmmss'Z'`) in UTC.
    static func timestamps(_ secondsSince1970: UInt64) -> (date: String, stamp: String) {
        var time = time_t(secondsSince1970)
        var parts = tm()
        gmtime_r(&time, &parts)
        let date = String(format: "%04d%02d%02d", parts.tm_year + 1900, parts.tm_mon + 1, parts.tm_mday)
        return (date, date + String(format: "T%02d%02d%02dZ", parts.tm_hour, parts.tm_min, parts.tm_sec))
    }

    /// RFC 3986 encoding as SigV4 wants it: unreserved characters kept, `/` kept in paths.
    public static func encode(_ text: String, keepSlash: Bool) -> String {
        var encoded = ""
        for byte in text.utf8 {
            let unreserved = (0x41...0x5A).contains(byte) || (0x61...0x7A).contains(byte) || (0x30...0x39).contains(byte) || [0x2D, 0x2E, 0x5F, 0x7E].contains(byte)
            if unreserved || (keepSlash && byte == 0x2F) {
                encoded.unicodeScalars.append(Unicode.Scalar(byte))
            } else {
                encoded += String(format: "%%%02X", byte)
            }
        }
        return encoded
    }

    public static func hex(_ digest: some Sequence<UInt8>) -> String { digest.map { String(format: "%02x", $0) }.joined() }
}
