#ifndef CCRC32C_H
#define CCRC32C_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// Extends a finished CRC32C (Castagnoli, as in RFC 3720) `crc` over `length` bytes.
/// Start from 0. Uses the SSE4.2 instruction with three interleaved streams when the CPU has
/// it (chosen at run time), the slicing-by-8 software path otherwise. Thread-safe: no state.
uint32_t ccrc32c_extend(uint32_t crc, const void *bytes, size_t length);

/// The slicing-by-8 software path, on every CPU. Same result as `ccrc32c_extend`.
uint32_t ccrc32c_extend_portable(uint32_t crc, const void *bytes, size_t length);

/// The SSE4.2 path with a single stream; falls back to the portable path on CPUs without it.
uint32_t ccrc32c_extend_hardware_single(uint32_t crc, const void *bytes, size_t length);

/// The SSE4.2 path with three interleaved streams combined by shift tables; falls back to the
/// portable path on CPUs without SSE4.2.
uint32_t ccrc32c_extend_hardware_interleaved(uint32_t crc, const void *bytes, size_t length);

/// 1 when the running CPU has the SSE4.2 `crc32` instruction and the hardware paths use it.
int ccrc32c_is_hardware_accelerated(void);

#ifdef __cplusplus
}
#endif

#endif
