/* buf.h - bounded byte buffers: a growable writer with a hard maximum
 * (curl's dynbuf "toobig") and a reader that checks every length before it
 * copies (relayd's IMSG_SIZE_CHECK). Integers are big-endian on the wire. */
#ifndef QKM_CORE_BUF_H
#define QKM_CORE_BUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/err.h"

struct qkm_buf {
	uint8_t *p;
	size_t len, cap, max;
	bool secure; /* storage from the secure heap; wiped on growth and free */
};

/* Keeps ordinary buffers of up to 32 MiB in the process's heap, freed ones
 * included (glibc: mmap threshold 32 MiB, trim threshold 128 MiB): frames of
 * a few MiB built and freed many times a second were each mapped afresh, or
 * the heap trimmed under them, and every page faulted in and zeroed again
 * (on a VM a fifth of a relay node's CPU). A daemon calls it once at start.
 * 0, or -1 if the allocator refused (large buffers are then mapped per use,
 * as by default; 32 MiB is glibc's most on 64-bit systems). */
int qkm_heap_tune(void);

/* Initialises an empty buffer that may grow to max bytes. secure: keep the
 * bytes in the secure heap (for buffers that hold key material). */
void qkm_buf_init(struct qkm_buf *b, size_t max, bool secure);
/* Wipes (if secure) and frees the storage; the struct may be reused after init. */
void qkm_buf_fini(struct qkm_buf *b);
/* Empties the buffer, keeping its storage (wiped if secure). */
void qkm_buf_reset(struct qkm_buf *b);
/* Makes room for n more bytes. QKM_ETOOBIG past max, QKM_ENOMEM. */
int qkm_buf_reserve(struct qkm_buf *b, size_t n) QKM_MUST_CHECK;
/* Appends; each returns 0, QKM_ETOOBIG or QKM_ENOMEM. */
int qkm_buf_put(struct qkm_buf *b, const void *p, size_t n) QKM_MUST_CHECK;
int qkm_buf_put_u8(struct qkm_buf *b, uint8_t v) QKM_MUST_CHECK;
int qkm_buf_put_u16(struct qkm_buf *b, uint16_t v) QKM_MUST_CHECK;
int qkm_buf_put_u32(struct qkm_buf *b, uint32_t v) QKM_MUST_CHECK;
int qkm_buf_put_u64(struct qkm_buf *b, uint64_t v) QKM_MUST_CHECK;
/* Drops the first n bytes (n <= len). */
void qkm_buf_consume(struct qkm_buf *b, size_t n);

/* A read cursor over borrowed bytes. */
struct qkm_rd {
	const uint8_t *p;
	size_t len, off;
};

static inline void qkm_rd_init(struct qkm_rd *r, const void *p, size_t len)
{
	r->p = p;
	r->len = len;
	r->off = 0;
}
static inline size_t qkm_rd_left(const struct qkm_rd *r) { return r->len - r->off; }
/* Each returns 0 or QKM_ETRUNC (cursor unchanged) when fewer bytes remain. */
int qkm_rd_u8(struct qkm_rd *r, uint8_t *v /* OUT */) QKM_MUST_CHECK;
int qkm_rd_u16(struct qkm_rd *r, uint16_t *v /* OUT */) QKM_MUST_CHECK;
int qkm_rd_u32(struct qkm_rd *r, uint32_t *v /* OUT */) QKM_MUST_CHECK;
int qkm_rd_u64(struct qkm_rd *r, uint64_t *v /* OUT */) QKM_MUST_CHECK;
int qkm_rd_copy(struct qkm_rd *r, void *out /* OUT */, size_t n) QKM_MUST_CHECK;
/* Points *out at the next n bytes inside the reader's input, advancing. */
int qkm_rd_ptr(struct qkm_rd *r, const uint8_t **out /* OUT */, size_t n) QKM_MUST_CHECK;

/* Big-endian helpers for fixed layouts. */
static inline void qkm_be32_put(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}
static inline uint32_t qkm_be32_get(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

#endif
