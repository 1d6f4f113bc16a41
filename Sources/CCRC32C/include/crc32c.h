#ifndef ZEROFS_CRC32C_H
#define ZEROFS_CRC32C_H
#include <stddef.h>
#include <stdint.h>
/// CRC-32C (Castagnoli) of `length` bytes, continuing from `crc` (0 to start).
uint32_t zerofs_crc32c(uint32_t crc, const void *data, size_t length);
/// The same with a byte table only (the reference the fast path is tested against).
uint32_t zerofs_crc32c_portable(uint32_t crc, const void *data, size_t length);
/// The same never folded: the crc32 instruction in three lanes where the processor has
/// it, else the table (tests).
uint32_t zerofs_crc32c_lanes(uint32_t crc, const void *data, size_t length);
/// 1 when `zerofs_crc32c` folds long inputs on this processor (tests report it).
int zerofs_crc32c_folds(void);
/// The CRC-32C of A followed by B, from the CRC of A, the CRC of B and B's length: one
/// pass over the bytes can give a record's CRC and the CRCs of parts of it.
uint32_t zerofs_crc32c_combine(uint32_t crc_a, uint32_t crc_b, size_t length_b);
#endif
