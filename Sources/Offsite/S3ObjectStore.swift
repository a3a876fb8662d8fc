import AsyncHTTPClient
import Crypto
import FaultFS
import Foundation
import NIOCore
import NIOHTTP1

/// Where and as whom an S3 store is reached: the standard AWS settings — `AWS_ACCESS_KEY_ID`,
/// `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION` (or `AWS_DEFAULT_REGION`),
/// `AWS_PROFILE`, the shared files `~/.aws/credentials` and `~/.aws/config` (or
/// `AWS_SHARED_CREDENTIALS_FILE`, `AWS_CONFIG_FILE`) — plus an endpoint override for
/// S3-compatible stores (`AWS_ENDPOINT_URL_S3` or `AWS_ENDPOINT_URL`, `http://host:port`,
/// addressed path-style). The environment wins over the files.
public struct S3Settings: Sendable, Equatable {
    public var credentials: AWSCredentials
    public var region: String
    /// `http(s)://host[:port]` with no path; nil: AWS itself (`https://BUCKET.s3.REGION.amazonaws.com`).
    public var endpoint: String?

    public init(credentials: AWSCredentials, region: String, endpoint: String?) {
        self.credentials = credentials
        self.region = region
        self.endpoint = endpoint
    }

    /// Reads the settings from `environment` and the shared files (through `fileSystem`).
    public static func load(environment: [String: String], fileSystem: any FileSystem) -> Result<S3Settings, ObjectStoreError> {
        let home = environment["HOME"] ?? "/root"
        let profile = environment["AWS_PROFILE"] ?? "default"
        let credentialsFile = iniSection(fileSystem, environment["AWS_SHARED_CREDENTIALS_FILE"] ?? home + "/.aws/credentials", section: profile)
        let configFile = iniSection(fileSystem, environment["AWS_CONFIG_FILE"] ?? home + "/.aws/config", section: profile == "default" ? "default" : "profile " + profile)
        guard let key = environment["AWS_ACCESS_KEY_ID"] ?? credentialsFile["aws_access_key_id"],
            let secret = environment["AWS_SECRET_ACCESS_KEY"] ?? credentialsFile["aws_secret_access_key"], !key.isEmpty, !secret.isEmpty
        else {
            return .failure(
                ObjectStoreError(
                    .invalid, store: "s3", key: "", operation: "credentials",
                    "no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or profile \(profile) in ~/.aws/credentials"))
        }
        let token = environment["AWS_SESSION_TOKEN"] ?? credentialsFile["aws_session_token"]
        let region = environment["AWS_REGION"] ?? environment["AWS_DEFAULT_REGION"] ?? configFile["region"] ?? "us-east-1"
        var endpoint = environment["AWS_ENDPOINT_URL_S3"] ?? environment["AWS_ENDPOINT_URL"] ?? configFile["endpoint_url"]
        if let given = endpoint {
            let trimmed = given.hasSuffix("/") ? String(given.dropLast()) : given
            guard (trimmed.hasPrefix("http://") || trimmed.hasPrefix("https://")), !trimmed.dropFirst(8).contains("/") else {
                return .failure(ObjectStoreError(.invalid, store: "s3", key: "", operation: "endpoint", "\(given) is not http(s)://host[:port]"))
            }
            endpoint = trimmed
        }
        return .success(S3Settings(credentials: AWSCredentials(accessKeyID: key, secretAccessKey: secret, sessionToken: token), region: region, endpoint: endpoint))
    }

    /// `key = value` lines of one `[section]` of an INI file; empty when it cannot be read.
    static func iniSection(_ fileSystem: any FileSystem, _ path: String, section: String) -> [String: String] {
        guard let bytes = try? fileSystem.readFile(path), bytes.count <= 1 << 20 else { return [:] }
        var values: [String: String] = [:]
        var inSection = false
        for raw in String(decoding: bytes, as: UTF8.self).split(separator: "\n") {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.hasPrefix("[") && line.hasSuffix("]") {
                inSection = line.dropFirst().dropLast().trimmingCharacters(in: .whitespaces) == section
            } else if inSection, let equals = line.firstIndex(of: "="), !line.hasPrefix("#") {
                values[line[..<equals].trimmingCharacters(in: .whitespaces)] = line[line.index(after: equals)...].trimmingCharacters(in: .whitespaces)
            }
        }
        return values
    }
}

/// An `ObjectStore` in an S3 bucket (or an S3-compatible store), each request signed with
/// AWS Signature V4 over async-http-client. Objects are `PUT` whole (at most `objectBytesMax`),
/// with their SHA-256 signed as the payload hash, so the store refuses a body damaged on the
/// way. A 5xx or no answer is retried (`attemptsMax`, backing off); a 4xx is refused at once.
/// Create it with `withStore`, which shuts its client down.
public final class S3ObjectStore: ObjectStore {
    public let bucket: String
    public let prefix: String
    public let settings: S3Settings
    private let client: HTTPClient
    private let nowSeconds: @Sendable () -> UInt64

    /// The largest object put or got in one request (S3's single-PUT limit is 5 GiB).
    public static let objectBytesMax = OffsiteSnapshots.objectBytesMax
    static let attemptsMax = 3
    /// A request's time limit: 60 s, plus its body at 1 MB/s.
    static func timeoutSeconds(bodyBytes: Int) -> Int64 { 60 + Int64(bodyBytes / 1_000_000) }
    static let readIdleSeconds: Int64 = 60

    private init(bucket: String, prefix: String, settings: S3Settings, nowSeconds: @escaping @Sendable () -> UInt64) {
        self.bucket = bucket
        self.prefix = prefix
        self.settings = settings
        self.nowSeconds = nowSeconds
        // A read timeout bounds a stall mid-body (the request deadline covers the head only).
        let configuration = HTTPClient.Configuration(
            redirectConfiguration: .disallow, timeout: .init(connect: .seconds(10), read: .seconds(Self.readIdleSeconds)), decompression: .disabled)
        client = HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: configuration)
    }

    public static func withStore<Result: Sendable>(
        bucket: String, prefix: String, settings: S3Settings, nowSeconds: @escaping @Sendable () -> UInt64 = { UInt64(Date().timeIntervalSince1970) },
        _ body: (S3ObjectStore) async throws -> Result
    ) async rethrows -> Result {
        let store = S3ObjectStore(bucket: bucket, prefix: prefix, settings: settings, nowSeconds: nowSeconds)
        do {
            let result = try await body(store)
            try? await store.client.shutdown()
            return result
        } catch {
            try? await store.client.shutdown()
            throw error
        }
    }

    public var description: String { "s3://\(bucket)" + (prefix.isEmpty ? "" : "/\(prefix)") }

    private func objectKey(_ key: String) -> String { prefix.isEmpty ? key : prefix + "/" + key }

    /// (URL base, host, path prefix): path-style for an endpoint override, virtual-hosted for AWS.
    private var addressing: (base: String, host: String, pathPrefix: String) {
        if let endpoint = settings.endpoint {
            let host = String(endpoint.drop { $0 != "/" }.drop { $0 == "/" })
            return (endpoint, host, "/\(bucket)")
        }
        let host = "\(bucket).s3.\(settings.region).amazonaws.com"
        return ("https://\(host)", host, "")
    }

    struct Answer {
        var status: Int
        var headers: [String: String]
        var body: [UInt8]
    }

    /// One signed request, retried while the store is unavailable.
    private func send(
        _ method: HTTPMethod, key: String?, query: [(String, String)] = [], body: [UInt8] = [], bytesMax: UInt64, operation: String
    ) async throws(ObjectStoreError) -> Answer {
        let (base, host, pathPrefix) = addressing
        let path = pathPrefix + (key.map { "/" + objectKey($0) } ?? (pathPrefix.isEmpty ? "/" : ""))
        let payload = SigV4.hex(SHA256.hash(data: body))
        var lastError: ObjectStoreError?
        // Bounded: attemptsMax tries.
        for attempt in 1...Self.attemptsMax {
            if attempt > 1 { try? await Task.sleep(for: .milliseconds(200 << attempt)) }
            let signed = SigV4.sign(
                SigV4.Request(method: method.rawValue, path: path, query: query, payloadSHA256: payload), host: host, region: settings.region,
                credentials: settings.credentials, secondsSince1970: nowSeconds())
            let queryText = query.map { "\(SigV4.encode($0.0, keepSlash: false))=\(SigV4.encode($0.1, keepSlash: false))" }.joined(separator: "&")
            var request = HTTPClientRequest(url: base + SigV4.encode(path, keepSlash: true) + (queryText.isEmpty ? "" : "?" + queryText))
            request.method = method
            // Host as signed (with its port): async-http-client keeps a Host header given to it.
            for (name, value) in signed.sorted(by: { $0.key < $1.key }) { request.headers.add(name: name, value: value) }
            if !body.isEmpty || method == .PUT {
                request.headers.add(name: "content-length", value: "\(body.count)")
                request.body = .bytes(ByteBuffer(bytes: body))
            }
            do {
                let response = try await client.execute(request, timeout: .seconds(Self.timeoutSeconds(bodyBytes: body.count)))
                let collected = try await response.body.collect(upTo: Int(min(bytesMax, UInt64(Int.max))))
                var headers: [String: String] = [:]
                for (name, value) in response.headers { headers[name.lowercased()] = value }
                let answer = Answer(status: Int(response.status.code), headers: headers, body: Array(buffer: collected))
                guard answer.status >= 500 else { return answer }
                lastError = ObjectStoreError(.unavailable, store: description, key: key ?? "", operation: operation, "answered \(answer.status)")
            } catch let error as NIOTooManyBytesError {
                throw ObjectStoreError(.damaged, store: description, key: key ?? "", operation: operation, "more than \(bytesMax) bytes (\(error))")
            } catch {
                lastError = ObjectStoreError(.unavailable, store: description, key: key ?? "", operation: operation, "\(error)")
            }
        }
        throw lastError!
    }

    private func refused(_ answer: Answer, key: String, operation: String) -> ObjectStoreError {
        let code = Self.xmlValues(answer.body, tag: "Code").first ?? ""
        return ObjectStoreError(.refused, store: description, key: key, operation: operation, "answered \(answer.status) \(code)")
    }

    public func put(_ key: String, bytes: [UInt8]) async throws(ObjectStoreError) {
        precondition(UInt64(bytes.count) <= Self.objectBytesMax, "an object fits one PUT")
        let answer = try await send(.PUT, key: key, body: bytes, bytesMax: 1 << 20, operation: "put")
        guard answer.status == 200 else { throw refused(answer, key: key, operation: "put") }
    }

    public func get(_ key: String, bytesMax: UInt64) async throws(ObjectStoreError) -> [UInt8]? {
        let answer = try await send(.GET, key: key, bytesMax: max(bytesMax, 1 << 16), operation: "get")
        if answer.status == 404 { return nil }
        guard answer.status == 200 else { throw refused(answer, key: key, operation: "get") }
        guard UInt64(answer.body.count) <= bytesMax else {
            throw ObjectStoreError(.damaged, store: description, key: key, operation: "get", "\(answer.body.count) bytes, more than the \(bytesMax) expected")
        }
        return answer.body
    }

    public func size(_ key: String) async throws(ObjectStoreError) -> UInt64? {
        let answer = try await send(.HEAD, key: key, bytesMax: 1 << 16, operation: "size")
        if answer.status == 404 { return nil }
        guard answer.status == 200, let length = answer.headers["content-length"].flatMap({ UInt64($0) }) else {
            throw refused(answer, key: key, operation: "size")
        }
        return length
    }

    public func delete(_ key: String) async throws(ObjectStoreError) {
        let answer = try await send(.DELETE, key: key, bytesMax: 1 << 16, operation: "delete")
        guard answer.status == 204 || answer.status == 200 || answer.status == 404 else { throw refused(answer, key: key, operation: "delete") }
    }

    /// ListObjectsV2, page by page (bounded by `listKeysMax`).
    public func list(prefix keyPrefix: String) async throws(ObjectStoreError) -> [StoredObject] {
        var objects: [StoredObject] = []
        var token: String?
        var pages = 0
        let stripped = prefix.isEmpty ? 0 : prefix.count + 1
        // Bounded: a thousand keys a page, listKeysMax keys in all.
        repeat {
            var query = [("list-type", "2"), ("prefix", objectKey(keyPrefix))]
            if let token { query.append(("continuation-token", token)) }
            let answer = try await send(.GET, key: nil, query: query, bytesMax: 16 << 20, operation: "list")
            guard answer.status == 200 else { throw refused(answer, key: keyPrefix, operation: "list") }
            let page = Self.xmlElements(answer.body, tag: "Contents")
            for contents in page {
                let bytes = Array(contents.utf8)
                guard let key = Self.xmlValues(bytes, tag: "Key").first, key.count > stripped,
                    let size = Self.xmlValues(bytes, tag: "Size").first.flatMap({ UInt64($0) })
                else { throw ObjectStoreError(.damaged, store: description, key: keyPrefix, operation: "list", "a listing entry without a key or size") }
                objects.append(StoredObject(key: String(key.dropFirst(stripped)), sizeBytes: size))
            }
            pages += 1
            guard objects.count <= listKeysMax else {
                throw ObjectStoreError(.refused, store: description, key: keyPrefix, operation: "list", "more than \(listKeysMax) keys")
            }
            guard Self.xmlValues(answer.body, tag: "IsTruncated").first == "true" else { break }
            guard let next = Self.xmlValues(answer.body, tag: "NextContinuationToken").first, next != token, !page.isEmpty, pages < Self.listPagesMax else {
                throw ObjectStoreError(.damaged, store: description, key: keyPrefix, operation: "list", "a truncated listing without a new continuation token")
            }
            token = next
        } while true
        return objects.sorted { $0.key < $1.key }
    }

    /// Creates the bucket (for tests and first use); an existing one of this owner is fine.
    public func createBucket() async throws(ObjectStoreError) {
        let body = settings.region == "us-east-1" ? [UInt8]()
            : Array("<CreateBucketConfiguration><LocationConstraint>\(settings.region)</LocationConstraint></CreateBucketConfiguration>".utf8)
        let answer = try await send(.PUT, key: nil, body: body, bytesMax: 1 << 16, operation: "create bucket")
        guard answer.status == 200 || Self.xmlValues(answer.body, tag: "Code").first == "BucketAlreadyOwnedByYou" else {
            throw refused(answer, key: "", operation: "create bucket")
        }
    }

    /// The most pages one listing reads (a thousand keys each).
    static let listPagesMax = listKeysMax / 1_000 + 1

    /// The raw text of every `<tag>…</tag>` in `xml` (a container: entities left as they are).
    static func xmlElements(_ xml: [UInt8], tag: String) -> [String] {
        let text = String(decoding: xml, as: UTF8.self)
        var elements: [String] = []
        var rest = text[...]
        // Bounded by the document: each round consumes one element.
        while let open = rest.range(of: "<\(tag)>"), let close = rest.range(of: "</\(tag)>", range: open.upperBound..<rest.endIndex) {
            elements.append(String(rest[open.upperBound..<close.lowerBound]))
            rest = rest[close.upperBound...]
        }
        return elements
    }

    /// The text of every leaf `<tag>…</tag>` in `xml`, its entities decoded once (`&amp;` last).
    static func xmlValues(_ xml: [UInt8], tag: String) -> [String] {
        xmlElements(xml, tag: tag).map {
            $0.replacingOccurrences(of: "&lt;", with: "<").replacingOccurrences(of: "&gt;", with: ">").replacingOccurrences(of: "&quot;", with: "\"")
                .replacingOccurrences(of: "&apos;", with: "'").replacingOccurrences(of: "&amp;", with: "&")
        }
    }
}
