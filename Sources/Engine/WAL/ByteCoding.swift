/// Little-endian integer encoding into and out of byte arrays: the only integer layout the
/// on-disk formats use.
extension Array where Element == UInt8 {
    mutating func appendLittleEndian<Value: FixedWidthInteger>(_ value: Value) {
        var little = value.littleEndian
        Swift.withUnsafeBytes(of: &little) { append(contentsOf: $0) }
    }
}

extension UnsafeRawBufferPointer {
    /// Reads a little-endian integer at `offset`; the caller has checked the bounds.
    func loadLittleEndian<Value: FixedWidthInteger>(at offset: Int, as type: Value.Type) -> Value {
        precondition(offset >= 0 && offset + MemoryLayout<Value>.size <= count, "read past buffer")
        return Value(littleEndian: loadUnaligned(fromByteOffset: offset, as: Value.self))
    }
}

extension Collection where Element == UInt8 {
    /// Reads a little-endian integer at `offset` (relative to `startIndex`).
    func littleEndian<Value: FixedWidthInteger>(at offset: Int, as type: Value.Type) -> Value {
        var value: Value = 0
        var index = self.index(startIndex, offsetBy: offset)
        for shift in stride(from: 0, to: Value.bitWidth, by: 8) {
            value |= Value(self[index]) << shift
            index = self.index(after: index)
        }
        return value
    }
}
