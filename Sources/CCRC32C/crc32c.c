// CRC-32C: long inputs folded with carry-less multiplication where the processor has it
// on 512-bit registers, else the SSE4.2 crc32 instruction in three lanes, else a table.
#include "crc32c.h"
#include <string.h>
#if defined(__x86_64__)
#include <cpuid.h>
#include <immintrin.h>
#endif

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

// Where the processor has carry-less multiplication on 512-bit registers (VPCLMULQDQ
// with AVX-512), long inputs are folded instead: in a profile of 600 MiB written over
// NFS the three lanes took about a tenth of the server's CPU, the WAL thread's checksum
// of each record, whose bytes are no longer in the cache by then; folding takes under
// half the time of the lanes on such bytes (Docs/benchmarks.md, thirteenth session).
//
// Folding: 16 bytes loaded into a 128-bit lane hold, bit k of the register, the
// coefficient of x^(127-k) of the polynomial those bytes contribute at their end of the
// message (bit 0 of the first byte is the highest power). The message's CRC register is
// (message * x^32) mod P, and a lane D bits before the end of another contributes its
// value times x^D, so it can be moved forward ("folded") onto the later lane and
// XORed in. Split the lane into its first 64 bits L (powers 127..64) and last 64 bits H
// (63..0): lane * x^D = L * x^(64+D) + H * x^D. A carry-less product of two reflected
// operands comes out times x (bit 127 of it is always 0), and a 32-bit constant K held
// reflected in the low half of a 64-bit operand stands for K * x^32; so with
// K_L = x^(D+31) mod P and K_H = x^(D-33) mod P, clmul(L, K_L) ^ clmul(H, K_H) is a
// 128-bit lane congruent to lane * x^D, to XOR onto the lane D bits on. Four 512-bit
// registers (16 lanes, 256 bytes) fold onto the next 256 bytes (D = 2048); at the end
// they fold onto each other (D = 512), the last one onto each further 64 bytes (D =
// 512), its lanes onto each other and onto each further 16 bytes (D = 128); the last
// lane's 16 bytes, run through the crc32 instruction from 0, give the register of
// everything so far (its value times x^32 mod P), and the last 0-15 bytes run on from
// it. The register the caller passes in is XORed into the first four bytes: the same
// as running those bytes from it. The constants come from x_to_8n (above).

/* x^k modulo the polynomial. */
static uint32_t x_to(unsigned k) {
    uint32_t result = x_to_8n(k / 8);
    for (unsigned i = 0; i < k % 8; i++) result = (result & 1) ? (result >> 1) ^ POLY : result >> 1;
    return result;
}

/* {K_L, K_H} for folds of 128, 512 and 2048 bits. */
static uint64_t fold_128[2], fold_512[2], fold_2048[2];

__attribute__((constructor)) static void build_folds(void) {
    fold_128[0] = x_to(128 + 31), fold_128[1] = x_to(128 - 33);
    fold_512[0] = x_to(512 + 31), fold_512[1] = x_to(512 - 33);
    fold_2048[0] = x_to(2048 + 31), fold_2048[1] = x_to(2048 - 33);
}

#define FOLD_TARGET "avx512f,avx512vl,vpclmulqdq,pclmul,sse4.2"

__attribute__((target(FOLD_TARGET)))
static inline __m512i fold_wide(__m512i lanes, __m512i k, __m512i onto) {
    __m512i low = _mm512_clmulepi64_epi128(lanes, k, 0x00), high = _mm512_clmulepi64_epi128(lanes, k, 0x11);
    return _mm512_ternarylogic_epi64(low, high, onto, 0x96);  /* low ^ high ^ onto */
}

__attribute__((target(FOLD_TARGET)))
static inline __m128i fold_one(__m128i lane, __m128i k, __m128i onto) {
    return _mm_xor_si128(_mm_xor_si128(_mm_clmulepi64_si128(lane, k, 0x00), _mm_clmulepi64_si128(lane, k, 0x11)), onto);
}

/* REQUIRES: n >= 256. */
__attribute__((target(FOLD_TARGET)))
static uint32_t folded(uint32_t crc, const unsigned char *p, size_t n) {
    __m128i k128 = _mm_loadu_si128((const __m128i *)fold_128);
    __m512i k512 = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)fold_512));
    __m512i k2048 = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)fold_2048));
    __m512i a = _mm512_loadu_si512(p), b = _mm512_loadu_si512(p + 64);
    __m512i c = _mm512_loadu_si512(p + 128), d = _mm512_loadu_si512(p + 192);
    a = _mm512_xor_si512(a, _mm512_zextsi128_si512(_mm_cvtsi32_si128((int)crc)));
    p += 256, n -= 256;
    for (; n >= 256; p += 256, n -= 256) {
        a = fold_wide(a, k2048, _mm512_loadu_si512(p));
        b = fold_wide(b, k2048, _mm512_loadu_si512(p + 64));
        c = fold_wide(c, k2048, _mm512_loadu_si512(p + 128));
        d = fold_wide(d, k2048, _mm512_loadu_si512(p + 192));
    }
    d = fold_wide(fold_wide(fold_wide(a, k512, b), k512, c), k512, d);
    for (; n >= 64; p += 64, n -= 64) d = fold_wide(d, k512, _mm512_loadu_si512(p));
    __m128i lane = _mm512_extracti32x4_epi32(d, 0);
    lane = fold_one(lane, k128, _mm512_extracti32x4_epi32(d, 1));
    lane = fold_one(lane, k128, _mm512_extracti32x4_epi32(d, 2));
    lane = fold_one(lane, k128, _mm512_extracti32x4_epi32(d, 3));
    for (; n >= 16; p += 16, n -= 16) lane = fold_one(lane, k128, _mm_loadu_si128((const __m128i *)p));
    uint64_t reg = __builtin_ia32_crc32di(0, (uint64_t)_mm_cvtsi128_si64(lane));
    reg = __builtin_ia32_crc32di(reg, (uint64_t)_mm_extract_epi64(lane, 1));
    return (uint32_t)one_lane(reg, p, n);
}

static uint32_t lanes(uint32_t crc, const unsigned char *p, size_t n) {
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
static int has_sse42, has_fold;

/* The fold's instructions, asked of the processor itself: __builtin_cpu_supports knows
   "vpclmulqdq" only with a runtime library of GCC 8 or later (or compiler-rt). Besides
   the instructions, the system must save the AVX-512 registers (XCR0: SSE, AVX, opmask
   and both halves of the upper registers). */
static int can_fold(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
    int pclmul = (c >> 1) & 1, osxsave = (c >> 27) & 1;
    if (!pclmul || !osxsave) return 0;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return 0;
    int avx512f = (b >> 16) & 1, avx512vl = (b >> 31) & 1, vpclmulqdq = (c >> 10) & 1;
    if (!avx512f || !avx512vl || !vpclmulqdq) return 0;
    unsigned low, high;
    __asm__ volatile("xgetbv" : "=a"(low), "=d"(high) : "c"(0));
    (void)high;
    return (low & 0xE6) == 0xE6;
}

__attribute__((constructor)) static void detect(void) {
    __builtin_cpu_init();
    has_sse42 = __builtin_cpu_supports("sse4.2") ? 1 : 0;
    has_fold = has_sse42 && can_fold();
}

static uint32_t hardware(uint32_t crc, const unsigned char *p, size_t n) {
    return has_fold && n >= 256 ? folded(crc, p, n) : lanes(crc, p, n);
}

int zerofs_crc32c_folds(void) { return has_fold; }
#else
int zerofs_crc32c_folds(void) { return 0; }
#endif

/* The table-driven CRC, for tests that check the fast one against it. */
uint32_t zerofs_crc32c_portable(uint32_t crc, const void *data, size_t length) {
    return ~software(~crc, (const unsigned char *)data, length);
}

/* Never folded, for tests where the processor folds. */
uint32_t zerofs_crc32c_lanes(uint32_t crc, const void *data, size_t length) {
#if defined(__x86_64__)
    if (has_sse42) return ~lanes(~crc, (const unsigned char *)data, length);
#endif
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
