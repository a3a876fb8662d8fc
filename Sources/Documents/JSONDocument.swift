import Foundation

/// The one way every JSON the node's API answers and its tools print is written and read:
/// `Codable` documents whose wire names are spelled out in their `CodingKeys` (snake_case, a
/// contract that renaming a Swift property cannot change), encoded on one line with the keys
/// sorted (the same document always prints the same bytes) and slashes left unescaped (paths).
public enum JSONDocument {
    /// The document as one line of JSON. Encoding strings, numbers, booleans and arrays of them
    /// cannot fail; a document that does is a programmer error and traps.
    public static func encode<Document: Encodable>(_ document: Document) -> String {
        String(decoding: encodeBytes(document), as: UTF8.self)
    }

    /// `encode`, as UTF-8 bytes (an HTTP body).
    public static func encodeBytes<Document: Encodable>(_ document: Document) -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        do {
            return Array(try encoder.encode(document))
        } catch {
            preconditionFailure("a JSON document failed to encode: \(error)")
        }
    }

    /// Reads a document; throws `DecodingError` (which names the key or index) when the bytes are
    /// not one.
    public static func decode<Document: Decodable>(_ type: Document.Type, from bytes: [UInt8]) throws -> Document {
        try JSONDecoder().decode(type, from: Data(bytes))
    }
}

/// An optional field written as `null` when it is absent, instead of being left out (what the
/// synthesized `Encodable` does): readers of the API see every key of a document every time.
/// Reading accepts `null` or a value, and traps on nothing: a missing key is a `DecodingError`.
@propertyWrapper
public struct ExplicitNull<Value: Codable & Sendable & Equatable>: Codable, Sendable, Equatable {
    public var wrappedValue: Value?

    public init(wrappedValue: Value?) {
        self.wrappedValue = wrappedValue
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        wrappedValue = container.decodeNil() ? nil : try container.decode(Value.self)
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        if let wrappedValue { try container.encode(wrappedValue) } else { try container.encodeNil() }
    }
}

/// `text` as a JSON string literal, quotes and escapes included: how a message quotes a value it
/// was given (a key, a config value), so that control characters and quotes stay visible.
public func quoted(_ text: String) -> String {
    JSONDocument.encode(text)
}
