/* fuzz_frame.c - libFuzzer target for the frame codec (proto/frame.c): size
 * and parse any input, walk every TLV and nested ENTRY, run every typed
 * lookup, and check that a parsed frame rebuilt with the put helpers gives
 * back the identical bytes (the encoding is canonical). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "core/id.h"
#include "proto/frame.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define NEST_MAX 32

static void check(int cond)
{
	if (!cond)
		abort();
}

/* Every typed lookup for tags 1..22 on one TLV list; results must be
 * consistent with the contract in frame.h. */
static void lookups(const uint8_t *body, size_t len)
{
	for (uint16_t tag = 1; tag <= 22; tag++) {
		uint8_t u8;
		uint32_t u32, n;
		uint64_t u64;
		struct qkm_id id;
		char s[QKM_NAME_MAX], big[512];
		const uint8_t *p;
		int rb = qkm_tlv_bytes(body, len, tag, &p, &n);
		check(rb == 0 || rb == QKM_ENOTFOUND || rb == QKM_EFORMAT);
		if (rb == 0)
			check(p >= body && n <= len && (size_t)(p - body) <= len - n);
		int r = qkm_tlv_u8(body, len, tag, &u8);
		check(r == (rb == 0 && n != 1 ? QKM_EFORMAT : rb));
		r = qkm_tlv_u32(body, len, tag, &u32);
		check(r == (rb == 0 && n != 4 ? QKM_EFORMAT : rb));
		r = qkm_tlv_u64(body, len, tag, &u64);
		check(r == (rb == 0 && n != 8 ? QKM_EFORMAT : rb));
		r = qkm_tlv_id(body, len, tag, &id);
		check(r == (rb == 0 && n != QKM_ID_LEN ? QKM_EFORMAT : rb));
		if (qkm_tlv_str(body, len, tag, s, sizeof(s), true) == 0)
			check(qkm_name_valid(s) && strlen(s) == n);
		if (qkm_tlv_str(body, len, tag, big, sizeof(big), false) == 0)
			check(strlen(big) == n && n < sizeof(big));
	}
}

/* Rebuilds a well-formed TLV list into b with the typed put helpers where
 * the value has that type's shape, recursing into ENTRY lists. */
static void rebuild(struct qkm_buf *b, const uint8_t *body, size_t len, int depth)
{
	size_t off = 0;
	uint16_t tag;
	const uint8_t *v;
	uint32_t n;
	int rc;
	lookups(body, len);
	while ((rc = qkm_tlv_next(body, len, &off, &tag, &v, &n)) == 1) {
		int w;
		if (tag == QKM_T_ENTRY && qkm_tlv_check(v, n) != 0)
			lookups(v, n); /* lookups stop at the damage, never past it */
		if (tag == QKM_T_ENTRY && depth < NEST_MAX && qkm_tlv_check(v, n) == 0) {
			size_t start;
			check(qkm_put_open(b, tag, &start) == 0);
			rebuild(b, v, n, depth + 1);
			w = qkm_put_close(b, start);
		} else if (n == 1) {
			w = qkm_put_u8(b, tag, v[0]);
		} else if (n == 4) {
			w = qkm_put_u32(b, tag, qkm_be32_get(v));
		} else if (n == 8) {
			w = qkm_put_u64(b, tag, (uint64_t)qkm_be32_get(v) << 32 | qkm_be32_get(v + 4));
		} else if (n == QKM_ID_LEN) {
			struct qkm_id id;
			memcpy(id.b, v, QKM_ID_LEN);
			w = qkm_put_id(b, tag, &id);
		} else if (n < 256 && n > 0 && !memchr(v, 0, n)) {
			char s[256];
			memcpy(s, v, n);
			s[n] = 0;
			w = qkm_put_str(b, tag, s);
		} else {
			w = qkm_put_tlv(b, tag, v, n);
		}
		check(w == 0);
	}
	check(rc == 0); /* the caller checked the list */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	long fs = qkm_frame_size(data, size);
	check(size < 4 ? fs == 0 : fs != 0);
	check(fs <= 0 || (fs >= QKM_FRAME_HDR && fs <= (long)QKM_FRAME_MAX));

	/* The lookups and the walk must be safe on any bytes, framed or not. */
	lookups(data, size);

	struct qkm_frame f;
	int rc = qkm_frame_parse(data, size, &f);
	if (rc != 0) {
		check(rc == QKM_ETRUNC || rc == QKM_EFORMAT || rc == QKM_EVERSION ||
		      rc == QKM_ETOOBIG);
		/* A nested walk on the body of a frame with a bad TLV list. */
		if (fs == (long)size && size >= QKM_FRAME_HDR && data[4] == QKM_FRAME_VERSION)
			check(qkm_tlv_check(data + QKM_FRAME_HDR, size - QKM_FRAME_HDR) == QKM_EFORMAT);
		return 0;
	}
	check(fs == (long)size);
	check(f.version == QKM_FRAME_VERSION && f.body == data + QKM_FRAME_HDR &&
	      f.body_len == size - QKM_FRAME_HDR);
	check(qkm_tlv_check(f.body, f.body_len) == 0);

	struct qkm_buf b;
	size_t start;
	qkm_buf_init(&b, QKM_FRAME_MAX, false);
	check(qkm_frame_begin(&b, f.type, f.req, &start) == 0);
	rebuild(&b, f.body, f.body_len, 0);
	check(qkm_frame_end(&b, start) == 0);
	check(b.len == size && memcmp(b.p, data, size) == 0);
	qkm_buf_fini(&b);
	return 0;
}
