/* buf.c - bounded growable buffers and checked readers (see buf.h). */
#include "core/buf.h"
#include "core/secret.h"

#include <malloc.h>
#include <openssl/crypto.h>
#include <stdlib.h>
#include <string.h>

int qkm_heap_tune(void)
{
	/* The trim threshold first: alone it changes nothing that matters. */
	return mallopt(M_TRIM_THRESHOLD, 128 << 20) && mallopt(M_MMAP_THRESHOLD, 32 << 20) ? 0 : -1;
}

void qkm_buf_init(struct qkm_buf *b, size_t max, bool secure)
{
	memset(b, 0, sizeof(*b));
	b->max = max;
	b->secure = secure;
}

static void buf_release(uint8_t *p, size_t cap, bool secure)
{
	if (!p)
		return;
	if (secure)
		qkm_secure_release(p, cap);
	else
		free(p);
}

void qkm_buf_fini(struct qkm_buf *b)
{
	buf_release(b->p, b->cap, b->secure);
	b->p = NULL;
	b->len = b->cap = 0;
}

void qkm_buf_reset(struct qkm_buf *b)
{
	if (b->secure)
		qkm_cleanse(b->p, b->len);
	b->len = 0;
}

int qkm_buf_reserve(struct qkm_buf *b, size_t n)
{
	if (n > b->max || b->len > b->max - n)
		return QKM_ETOOBIG;
	if (b->len + n <= b->cap)
		return 0;
	size_t cap = b->cap ? b->cap : 256;
	while (cap < b->len + n)
		cap = cap > b->max / 2 ? b->max : cap * 2;
	uint8_t *p = b->secure ? qkm_secure_alloc(cap, false) : malloc(cap);
	if (!p)
		return QKM_ENOMEM;
	if (b->len)
		memcpy(p, b->p, b->len);
	buf_release(b->p, b->cap, b->secure);
	b->p = p;
	b->cap = cap;
	return 0;
}

int qkm_buf_put(struct qkm_buf *b, const void *p, size_t n)
{
	int rc = qkm_buf_reserve(b, n);
	if (rc)
		return rc;
	if (n)
		memcpy(b->p + b->len, p, n);
	b->len += n;
	return 0;
}

int qkm_buf_put_u8(struct qkm_buf *b, uint8_t v) { return qkm_buf_put(b, &v, 1); }

int qkm_buf_put_u16(struct qkm_buf *b, uint16_t v)
{
	uint8_t x[2] = {(uint8_t)(v >> 8), (uint8_t)v};
	return qkm_buf_put(b, x, 2);
}

int qkm_buf_put_u32(struct qkm_buf *b, uint32_t v)
{
	uint8_t x[4];
	qkm_be32_put(x, v);
	return qkm_buf_put(b, x, 4);
}

int qkm_buf_put_u64(struct qkm_buf *b, uint64_t v)
{
	uint8_t x[8];
	qkm_be32_put(x, (uint32_t)(v >> 32));
	qkm_be32_put(x + 4, (uint32_t)v);
	return qkm_buf_put(b, x, 8);
}

void qkm_buf_consume(struct qkm_buf *b, size_t n)
{
	if (n >= b->len) {
		qkm_buf_reset(b);
		return;
	}
	memmove(b->p, b->p + n, b->len - n);
	if (b->secure)
		qkm_cleanse(b->p + b->len - n, n);
	b->len -= n;
}

int qkm_rd_ptr(struct qkm_rd *r, const uint8_t **out, size_t n)
{
	if (qkm_rd_left(r) < n)
		return QKM_ETRUNC;
	*out = r->p + r->off;
	r->off += n;
	return 0;
}

int qkm_rd_copy(struct qkm_rd *r, void *out, size_t n)
{
	const uint8_t *p;
	int rc = qkm_rd_ptr(r, &p, n);
	if (rc == 0 && n)
		memcpy(out, p, n);
	return rc;
}

int qkm_rd_u8(struct qkm_rd *r, uint8_t *v) { return qkm_rd_copy(r, v, 1); }

int qkm_rd_u16(struct qkm_rd *r, uint16_t *v)
{
	const uint8_t *p;
	int rc = qkm_rd_ptr(r, &p, 2);
	if (rc == 0)
		*v = (uint16_t)(p[0] << 8 | p[1]);
	return rc;
}

int qkm_rd_u32(struct qkm_rd *r, uint32_t *v)
{
	const uint8_t *p;
	int rc = qkm_rd_ptr(r, &p, 4);
	if (rc == 0)
		*v = qkm_be32_get(p);
	return rc;
}

int qkm_rd_u64(struct qkm_rd *r, uint64_t *v)
{
	const uint8_t *p;
	int rc = qkm_rd_ptr(r, &p, 8);
	if (rc == 0)
		*v = (uint64_t)qkm_be32_get(p) << 32 | qkm_be32_get(p + 4);
	return rc;
}
