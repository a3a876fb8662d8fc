// CRC32C (Castagnoli polynomial 0x1EDC6F41, reflected 0x82F63B78).
//
// Internally every path works on the raw CRC register ("state"); the public functions
// pre- and post-invert it so that callers see the standard RFC 3720 value and can extend a
// finished CRC with more data.
//
// The three-stream hardware path splits a chunk into three equal blocks of L bytes, runs the
// `crc32` instruction over them independently (its 3-cycle latency and 1-per-cycle throughput
// let three chains overlap), and combines them with the linear "feed L zero bytes" operator:
//   state(A || B || C) = shift_L(shift_L(state(A)) ^ state0(B)) ^ state0(C)
// where state0 starts from zero. shift_L is four table lookups (crc32c_tables.h).
#include "ccrc32c.h"
#include "crc32c_tables.h"

#include <string.h>

#if defined(__x86_64__)
#include <nmmintrin.h>
#define CCRC32C_X86 1
#endif

static inline uint64_t load_le64(const uint8_t *p) {
    uint64_t value;
    memcpy(&value, p, sizeof value);  // unaligned-safe; x86-64 and aarch64 are little-endian
    return value;
}

static uint32_t state_portable(uint32_t state, const uint8_t *p, size_t length) {
    while (length > 0 && ((uintptr_t)p & 7) != 0) {
        state = (state >> 8) ^ ccrc32c_slicing_table[0][(state ^ *p) & 0xFF];
        p++;
        length--;
    }
    while (length >= 8) {
        uint64_t word = load_le64(p) ^ state;
        state = ccrc32c_slicing_table[7][word & 0xFF] ^
                ccrc32c_slicing_table[6][(word >> 8) & 0xFF] ^
                ccrc32c_slicing_table[5][(word >> 16) & 0xFF] ^
                ccrc32c_slicing_table[4][(word >> 24) & 0xFF] ^
                ccrc32c_slicing_table[3][(word >> 32) & 0xFF] ^
                ccrc32c_slicing_table[2][(word >> 40) & 0xFF] ^
                ccrc32c_slicing_table[1][(word >> 48) & 0xFF] ^
                ccrc32c_slicing_table[0][(word >> 56) & 0xFF];
        p += 8;
        length -= 8;
    }
    while (length > 0) {
        state = (state >> 8) ^ ccrc32c_slicing_table[0][(state ^ *p) & 0xFF];
        p++;
        length--;
    }
    return state;
}

uint32_t ccrc32c_extend_portable(uint32_t crc, const void *bytes, size_t length) {
    return ~state_portable(~crc, (const uint8_t *)bytes, length);
}

#if CCRC32C_X86

__attribute__((target("sse4.2")))
static uint32_t state_sse42(uint32_t state, const uint8_t *p, size_t length) {
    uint64_t wide = state;
    while (length >= 8) {
        wide = _mm_crc32_u64(wide, load_le64(p));
        p += 8;
        length -= 8;
    }
    uint32_t narrow = (uint32_t)wide;
    while (length > 0) {
        narrow = _mm_crc32_u8(narrow, *p);
        p++;
        length--;
    }
    return narrow;
}

static inline uint32_t shift_state(const uint32_t table[4][256], uint32_t state) {
    return table[0][state & 0xFF] ^ table[1][(state >> 8) & 0xFF] ^
           table[2][(state >> 16) & 0xFF] ^ table[3][state >> 24];
}

// Runs whole chunks of 3 * block bytes through three interleaved streams.
// block must be a multiple of 8. Returns the state; advances *p and *length.
__attribute__((target("sse4.2")))
static uint32_t state_sse42_three_streams(uint32_t state, const uint8_t **cursor, size_t *length,
                                          size_t block, const uint32_t shift[4][256]) {
    const uint8_t *p = *cursor;
    size_t remaining = *length;
    while (remaining >= 3 * block) {
        uint64_t a = state, b = 0, c = 0;
        const uint8_t *pa = p, *pb = p + block, *pc = p + 2 * block;
        for (size_t i = 0; i < block; i += 8) {
            a = _mm_crc32_u64(a, load_le64(pa + i));
            b = _mm_crc32_u64(b, load_le64(pb + i));
            c = _mm_crc32_u64(c, load_le64(pc + i));
        }
        state = shift_state(shift, (uint32_t)a) ^ (uint32_t)b;
        state = shift_state(shift, state) ^ (uint32_t)c;
        p += 3 * block;
        remaining -= 3 * block;
    }
    *cursor = p;
    *length = remaining;
    return state;
}

static uint32_t state_hardware_interleaved(uint32_t state, const uint8_t *p, size_t length) {
    state = state_sse42_three_streams(state, &p, &length, 4096, ccrc32c_shift_4096_table);
    state = state_sse42_three_streams(state, &p, &length, 256, ccrc32c_shift_256_table);
    return state_sse42(state, p, length);
}

static int has_sse42(void) {
    return __builtin_cpu_supports("sse4.2");
}

#else

static int has_sse42(void) {
    return 0;
}

#endif

int ccrc32c_is_hardware_accelerated(void) {
    return has_sse42();
}

uint32_t ccrc32c_extend_hardware_single(uint32_t crc, const void *bytes, size_t length) {
#if CCRC32C_X86
    if (has_sse42()) {
        return ~state_sse42(~crc, (const uint8_t *)bytes, length);
    }
#endif
    return ccrc32c_extend_portable(crc, bytes, length);
}

uint32_t ccrc32c_extend_hardware_interleaved(uint32_t crc, const void *bytes, size_t length) {
#if CCRC32C_X86
    if (has_sse42()) {
        return ~state_hardware_interleaved(~crc, (const uint8_t *)bytes, length);
    }
#endif
    return ccrc32c_extend_portable(crc, bytes, length);
}

uint32_t ccrc32c_extend(uint32_t crc, const void *bytes, size_t length) {
    // Below three small blocks the interleaved path is the single stream anyway.
    return ccrc32c_extend_hardware_interleaved(crc, bytes, length);
}
