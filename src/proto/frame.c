/* frame.c - encoding and strict decoding of inter-daemon frames (frame.h).
 * Every length is checked against what remains before it is used. */
#include "proto/frame.h"

#include <string.h>

long qkm_frame_size(const uint8_t *p, size_t avail)
{
	if (avail < 4)
		return 0;
	uint32_t n = qkm_be32_get(p);
	if (n < QKM_FRAME_HDR - 4)
		return QKM_EFORMAT;
	if (n > QKM_FRAME_MAX - 4)
		return QKM_ETOOBIG;
	return (long)n + 4;
}

int qkm_tlv_next(const uint8_t *body, size_t len, size_t *off, uint16_t *tag,
		 const uint8_t **val, uint32_t *vlen)
{
	if (*off == len)
		return 0;
	if (len - *off < 6)
		return QKM_EFORMAT;
	const uint8_t *p = body + *off;
	uint32_t n = qkm_be32_get(p + 2);
	if (n > len - *off - 6)
		return QKM_EFORMAT;
	*tag = (uint16_t)(p[0] << 8 | p[1]);
	*val = p + 6;
	*vlen = n;
	*off += 6 + (size_t)n;
	return 1;
}

int qkm_tlv_check(const uint8_t *body, size_t len)
{
	size_t off = 0;
	uint16_t tag;
	const uint8_t *v;
	uint32_t n;
	int rc;
	while ((rc = qkm_tlv_next(body, len, &off, &tag, &v, &n)) == 1)
		;
	return rc;
}

int qkm_frame_parse(const uint8_t *p, size_t len, struct qkm_frame *f)
{
	if (len < QKM_FRAME_HDR)
		return QKM_ETRUNC;
	long size = qkm_frame_size(p, len);
	if (size < 0)
		return (int)size;
	if ((size_t)size != len)
		return len < (size_t)size ? QKM_ETRUNC : QKM_EFORMAT;
	f->version = p[4];
	if (f->version != QKM_FRAME_VERSION)
		return QKM_EVERSION;
	f->type = (uint16_t)(p[5] << 8 | p[6]);
	f->req = qkm_be32_get(p + 7);
	f->body = p + QKM_FRAME_HDR;
	f->body_len = len - QKM_FRAME_HDR;
	return qkm_tlv_check(f->body, f->body_len);
}

int qkm_tlv_bytes(const uint8_t *body, size_t len, uint16_t tag, const uint8_t **v,
		  uint32_t *vlen)
{
	size_t off = 0;
	uint16_t t;
	int rc;
	while ((rc = qkm_tlv_next(body, len, &off, &t, v, vlen)) == 1)
		if (t == tag)
			return 0;
	return rc < 0 ? rc : QKM_ENOTFOUND;
}

static int tlv_fixed(const uint8_t *body, size_t len, uint16_t tag, const uint8_t **v,
		     uint32_t want)
{
	uint32_t n;
	int rc = qkm_tlv_bytes(body, len, tag, v, &n);
	if (rc == 0 && n != want)
		return QKM_EFORMAT;
	return rc;
}

int qkm_tlv_u8(const uint8_t *body, size_t len, uint16_t tag, uint8_t *v)
{
	const uint8_t *p;
	int rc = tlv_fixed(body, len, tag, &p, 1);
	if (rc == 0)
		*v = p[0];
	return rc;
}

int qkm_tlv_u32(const uint8_t *body, size_t len, uint16_t tag, uint32_t *v)
{
	const uint8_t *p;
	int rc = tlv_fixed(body, len, tag, &p, 4);
	if (rc == 0)
		*v = qkm_be32_get(p);
	return rc;
}

int qkm_tlv_u64(const uint8_t *body, size_t len, uint16_t tag, uint64_t *v)
{
	const uint8_t *p;
	int rc = tlv_fixed(body, len, tag, &p, 8);
	if (rc == 0)
		*v = (uint64_t)qkm_be32_get(p) << 32 | qkm_be32_get(p + 4);
	return rc;
}

int qkm_tlv_id(const uint8_t *body, size_t len, uint16_t tag, struct qkm_id *v)
{
	const uint8_t *p;
	int rc = tlv_fixed(body, len, tag, &p, QKM_ID_LEN);
	if (rc == 0)
		memcpy(v->b, p, QKM_ID_LEN);
	return rc;
}

int qkm_tlv_str(const uint8_t *body, size_t len, uint16_t tag, char *out, size_t outsz,
		bool name)
{
	const uint8_t *p;
	uint32_t n;
	int rc = qkm_tlv_bytes(body, len, tag, &p, &n);
	if (rc)
		return rc;
	if (n >= outsz || memchr(p, 0, n))
		return QKM_EFORMAT;
	memcpy(out, p, n);
	out[n] = 0;
	if (name && !qkm_name_valid(out))
		return QKM_EFORMAT;
	return 0;
}

int qkm_frame_begin(struct qkm_buf *b, uint16_t type, uint32_t req, size_t *start)
{
	*start = b->len;
	int rc = qkm_buf_put_u32(b, 0);
	if (!rc)
		rc = qkm_buf_put_u8(b, QKM_FRAME_VERSION);
	if (!rc)
		rc = qkm_buf_put_u16(b, type);
	if (!rc)
		rc = qkm_buf_put_u32(b, req);
	return rc;
}

int qkm_frame_end(struct qkm_buf *b, size_t start)
{
	size_t n = b->len - start;
	if (n > QKM_FRAME_MAX)
		return QKM_ETOOBIG;
	qkm_be32_put(b->p + start, (uint32_t)(n - 4));
	return 0;
}

int qkm_put_tlv(struct qkm_buf *b, uint16_t tag, const void *p, size_t n)
{
	if (n > UINT32_MAX)
		return QKM_ETOOBIG;
	int rc = qkm_buf_reserve(b, 6 + n);
	if (rc)
		return rc;
	rc = qkm_buf_put_u16(b, tag);
	if (!rc)
		rc = qkm_buf_put_u32(b, (uint32_t)n);
	if (!rc)
		rc = qkm_buf_put(b, p, n);
	return rc;
}

int qkm_put_u8(struct qkm_buf *b, uint16_t tag, uint8_t v) { return qkm_put_tlv(b, tag, &v, 1); }

int qkm_put_u32(struct qkm_buf *b, uint16_t tag, uint32_t v)
{
	uint8_t x[4];
	qkm_be32_put(x, v);
	return qkm_put_tlv(b, tag, x, 4);
}

int qkm_put_u64(struct qkm_buf *b, uint16_t tag, uint64_t v)
{
	uint8_t x[8];
	qkm_be32_put(x, (uint32_t)(v >> 32));
	qkm_be32_put(x + 4, (uint32_t)v);
	return qkm_put_tlv(b, tag, x, 8);
}

int qkm_put_str(struct qkm_buf *b, uint16_t tag, const char *s)
{
	return qkm_put_tlv(b, tag, s, strlen(s));
}

int qkm_put_id(struct qkm_buf *b, uint16_t tag, const struct qkm_id *id)
{
	return qkm_put_tlv(b, tag, id->b, QKM_ID_LEN);
}

int qkm_put_open(struct qkm_buf *b, uint16_t tag, size_t *start)
{
	*start = b->len;
	int rc = qkm_buf_put_u16(b, tag);
	if (!rc)
		rc = qkm_buf_put_u32(b, 0);
	return rc;
}

int qkm_put_close(struct qkm_buf *b, size_t start)
{
	size_t n = b->len - start - 6;
	if (n > UINT32_MAX)
		return QKM_ETOOBIG;
	qkm_be32_put(b->p + start + 2, (uint32_t)n);
	return 0;
}
