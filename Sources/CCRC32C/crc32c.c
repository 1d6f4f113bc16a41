// CRC-32C with the SSE4.2 crc32 instruction when the processor has it, else a table.
#include "crc32c.h"
#include <string.h>

static uint32_t table[256];

/* Built once when the program loads, before any thread can call in. */
__attribute__((constructor)) static void build_table(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
        table[i] = c;
    }
}

static uint32_t software(uint32_t crc, const unsigned char *p, size_t n) {
    while (n--) crc = table[(crc ^ *p++) & 0xFF] ^ (crc >> 8);
    return crc;
}

#define POLY 0x82F63B78u

/* a * b modulo the polynomial, bit-reflected (bit 31 is x^0). */
static uint32_t multiply(uint32_t a, uint32_t b) {
    uint32_t product = 0;
    for (int i = 0; i < 32; i++) {
        if (a & (1u << (31 - i))) product ^= b;
        b = (b & 1) ? (b >> 1) ^ POLY : b >> 1;
    }
    return product;
}

/* x^(8 * 2^k) modulo the polynomial, for k = 0..63: squared once at load, so that
   x_to_8n multiplies one power per bit set in n instead of squaring at every bit (a
   combine cost about 9,000 instructions, and a 1 MiB WRITE's WAL record combines the
   CRCs of its 32 chunks). Built before the lane tables, which use x_to_8n. */
static uint32_t powers[64];

__attribute__((constructor(101))) static void build_powers(void) {
    powers[0] = 1u << 23;  /* x^8 */
    for (int k = 1; k < 64; k++) powers[k] = multiply(powers[k - 1], powers[k - 1]);
}

/* x^(8n) modulo the polynomial. */
static uint32_t x_to_8n(size_t n) {
    uint32_t result = 1u << 31;  /* x^0 */
    for (int k = 0; n; k++, n >>= 1)
        if (n & 1) result = multiply(powers[k], result);
    return result;
}

#if defined(__x86_64__)
// The crc32 instruction takes 3 cycles and can start one every cycle, so one stream of
// it runs at a third of the processor's speed. Long inputs are cut into three lanes
// run side by side; the lanes' CRCs are then joined. Joining uses linearity: the CRC
// register after lanes A then B is shift(register after A, |B|) ^ (register of B
// started from 0), where shift(r, n) multiplies r by x^(8n) modulo the polynomial. For a
// fixed n that is linear in r, so four tables of 256 entries (one per byte of r) give
// it in four lookups. Two lane sizes: 8 KiB for long inputs, 256 bytes for the rest.

#define LONG_LANE 8192
#define SHORT_LANE 256

static uint32_t shift_long[4][256];
static uint32_t shift_short[4][256];

static void build_shift(uint32_t table[4][256], size_t n) {
    uint32_t factor = x_to_8n(n);
    for (int k = 0; k < 4; k++)
        for (uint32_t i = 0; i < 256; i++) table[k][i] = multiply(factor, i << (8 * k));
}

static inline uint32_t shift(uint32_t table[4][256], uint32_t r) {
    return table[0][r & 0xFF] ^ table[1][(r >> 8) & 0xFF] ^ table[2][(r >> 16) & 0xFF] ^ table[3][r >> 24];
}

__attribute__((target("sse4.2")))
static uint64_t one_lane(uint64_t c, const unsigned char *p, size_t n) {
    while (n >= 8) {
        uint64_t word;
        memcpy(&word, p, 8);
        c = __builtin_ia32_crc32di(c, word);
        p += 8;
        n -= 8;
    }
    uint32_t c32 = (uint32_t)c;
    while (n--) c32 = __builtin_ia32_crc32qi(c32, *p++);
    return c32;
}

__attribute__((target("sse4.2")))
static uint32_t three_lanes(uint32_t table[4][256], uint32_t crc, const unsigned char *p, size_t lane) {
    uint64_t a = crc, b = 0, c = 0;
    const unsigned char *q = p + lane, *r = p + 2 * lane;
    for (size_t i = 0; i < lane; i += 8) {
        uint64_t x, y, z;
        memcpy(&x, p + i, 8);
        memcpy(&y, q + i, 8);
        memcpy(&z, r + i, 8);
        a = __builtin_ia32_crc32di(a, x);
        b = __builtin_ia32_crc32di(b, y);
        c = __builtin_ia32_crc32di(c, z);
    }
    uint32_t joined = shift(table, (uint32_t)a) ^ (uint32_t)b;
    return shift(table, joined) ^ (uint32_t)c;
}

/* Built once when the program loads, before any thread can call in. */
__attribute__((constructor)) static void build_shifts(void) {
    build_shift(shift_long, LONG_LANE);
    build_shift(shift_short, SHORT_LANE);
}

static uint32_t hardware(uint32_t crc, const unsigned char *p, size_t n) {
    while (n >= 3 * LONG_LANE) {
        crc = three_lanes(shift_long, crc, p, LONG_LANE);
        p += 3 * LONG_LANE;
        n -= 3 * LONG_LANE;
    }
    while (n >= 3 * SHORT_LANE) {
        crc = three_lanes(shift_short, crc, p, SHORT_LANE);
        p += 3 * SHORT_LANE;
        n -= 3 * SHORT_LANE;
    }
    return (uint32_t)one_lane(crc, p, n);
}
#endif

#if defined(__x86_64__)
static int has_sse42;
__attribute__((constructor)) static void detect(void) {
    __builtin_cpu_init();
    has_sse42 = __builtin_cpu_supports("sse4.2") ? 1 : 0;
}
#endif

/* The table-driven CRC, for tests that check the fast one against it. */
uint32_t zerofs_crc32c_portable(uint32_t crc, const void *data, size_t length) {
    return ~software(~crc, (const unsigned char *)data, length);
}

uint32_t zerofs_crc32c(uint32_t crc, const void *data, size_t length) {
    const unsigned char *p = (const unsigned char *)data;
    uint32_t c = ~crc;
#if defined(__x86_64__)
    if (has_sse42) return ~hardware(c, p, length);
#endif
    return ~software(c, p, length);
}

/* The register after A then B is the register after A times x^(8|B|), plus the register
   of B alone; the pre- and post-inversion of the two finished CRCs cancel out in that
   sum, so it holds for finished CRCs as they are. */
uint32_t zerofs_crc32c_combine(uint32_t crc_a, uint32_t crc_b, size_t length_b) {
    return multiply(x_to_8n(length_b), crc_a) ^ crc_b;
}
