import CCRC32C

/// CRC32C (Castagnoli, RFC 3720), the checksum of every WAL record and segment header.
///
/// `checksum`/`extend` use the SSE4.2 instruction with three interleaved streams when the CPU
/// has it (detected at run time) and slicing-by-8 otherwise; all paths give the same value.
/// Stored next to data that may itself contain CRCs, a CRC is kept `masked` (LevelDB's rotation
/// plus constant), so that a CRC over bytes that include a CRC is not degenerate.
public enum CRC32C {
    /// The CRC32C of `bytes`.
    @inlinable
    public static func checksum(_ bytes: UnsafeRawBufferPointer) -> UInt32 {
        extend(0, bytes)
    }

    /// The CRC32C of `bytes`.
    public static func checksum(_ bytes: some Collection<UInt8>) -> UInt32 {
        if let crc = bytes.withContiguousStorageIfAvailable({ extend(0, UnsafeRawBufferPointer($0)) }) {
            return crc
        }
        return Array(bytes).withUnsafeBytes { extend(0, $0) }
    }

    /// Extends a finished CRC32C `crc` (of some prefix) over `bytes`:
    /// `extend(checksum(a), b) == checksum(a + b)`.
    @inlinable
    public static func extend(_ crc: UInt32, _ bytes: UnsafeRawBufferPointer) -> UInt32 {
        ccrc32c_extend(crc, bytes.baseAddress, bytes.count)
    }

    /// The software (slicing-by-8) path, for tests and benchmarks.
    public static func extendPortable(_ crc: UInt32, _ bytes: UnsafeRawBufferPointer) -> UInt32 {
        ccrc32c_extend_portable(crc, bytes.baseAddress, bytes.count)
    }

    /// The single-stream hardware path (portable where the CPU lacks SSE4.2).
    public static func extendHardwareSingleStream(_ crc: UInt32, _ bytes: UnsafeRawBufferPointer) -> UInt32 {
        ccrc32c_extend_hardware_single(crc, bytes.baseAddress, bytes.count)
    }

    /// `true` when this CPU runs the SSE4.2 paths.
    public static var isHardwareAccelerated: Bool { ccrc32c_is_hardware_accelerated() != 0 }

    static let maskDelta: UInt32 = 0xA282_EAD8

    /// The form a CRC is stored in: rotated right by 15 bits plus a constant.
    @inlinable
    public static func mask(_ crc: UInt32) -> UInt32 {
        ((crc >> 15) | (crc << 17)) &+ 0xA282_EAD8
    }

    /// Inverse of `mask`.
    @inlinable
    public static func unmask(_ masked: UInt32) -> UInt32 {
        let rotated = masked &- 0xA282_EAD8
        return (rotated >> 17) | (rotated << 15)
    }
}
