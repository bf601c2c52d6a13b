/* id.h - 128-bit identifiers (KMA-key IDs, KSA-key UUIDs, batch IDs) and
 * bounded textual entity IDs (node, module, SAE names). */
#ifndef QKM_CORE_ID_H
#define QKM_CORE_ID_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/err.h"

#define QKM_ID_LEN 16
/* Entity names (node, link, module, SAE, QKD-key IDs as a module gives
 * them): 1..63 bytes of [A-Za-z0-9._:-], NUL-terminated in a 64-byte array. */
#define QKM_NAME_MAX 64

struct qkm_id {
	uint8_t b[QKM_ID_LEN];
};

/* Fills id from the OS's non-deterministic RNG; 0 or QKM_ECRYPTO. */
int qkm_id_random(struct qkm_id *id /* OUT */) QKM_MUST_CHECK;
/* Makes an RFC 9562 version-7 UUID: the Unix time in ms of now_ns (a
 * qkm_now_ns), then 74 bits from the OS's RNG; 0 or QKM_ECRYPTO. IDs made
 * one after another sort (nearly) in order, so a store's index of them
 * grows at its end instead of at random pages. */
int qkm_id_uuid7(struct qkm_id *id /* OUT */, uint64_t now_ns) QKM_MUST_CHECK;
/* The last 4 bytes of an ID as a big-endian index: the key's number in its
 * KMA batch or KSA supply round, whose other 12 bytes all its keys share. */
static inline uint32_t qkm_id_index(const struct qkm_id *id)
{
	return (uint32_t)id->b[12] << 24 | (uint32_t)id->b[13] << 16 | (uint32_t)id->b[14] << 8 |
	       id->b[15];
}
static inline void qkm_id_set_index(struct qkm_id *id, uint32_t i)
{
	id->b[12] = (uint8_t)(i >> 24);
	id->b[13] = (uint8_t)(i >> 16);
	id->b[14] = (uint8_t)(i >> 8);
	id->b[15] = (uint8_t)i;
}
/* True if a and b name keys of the same batch or round (first 12 bytes). */
static inline bool qkm_id_same_round(const struct qkm_id *a, const struct qkm_id *b)
{
	for (int i = 0; i < QKM_ID_LEN - 4; i++)
		if (a->b[i] != b->b[i])
			return false;
	return true;
}
/* Writes 32 lowercase hex digits + NUL into out[33]. */
void qkm_id_hex(const struct qkm_id *id, char out[static 33]);
/* Writes the 8-4-4-4-12 UUID form + NUL into out[37]. */
void qkm_id_uuid_str(const struct qkm_id *id, char out[static 37]);
/* Parses 32 hex digits or the 36-char UUID form; 0 or QKM_EFORMAT. */
int qkm_id_parse(const char *s, struct qkm_id *id /* OUT */) QKM_MUST_CHECK;
static inline bool qkm_id_eq(const struct qkm_id *a, const struct qkm_id *b)
{
	for (int i = 0; i < QKM_ID_LEN; i++)
		if (a->b[i] != b->b[i])
			return false;
	return true;
}

/* The value of one hex digit (either case), or -1. */
int qkm_hexval(char c);

/* True if s is a valid entity name (see QKM_NAME_MAX). */
bool qkm_name_valid(const char *s);

/* Current wall-clock time in nanoseconds since the Unix epoch. */
uint64_t qkm_now_ns(void);
/* Monotonic time in nanoseconds (for rates and deadlines). */
uint64_t qkm_mono_ns(void);
/* Formats a wall-clock ns time stamp as RFC 3339 UTC with microseconds, out[32]. */
void qkm_time_str(uint64_t ns, char out[static 32]);

#endif
