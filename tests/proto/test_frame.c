/* test_frame.c - the inter-daemon frame codec (proto/frame.c): building with
 * every put helper, strict parsing, typed lookups, and refusal of every
 * malformed or truncated input (docs/protocol.md, frame layout). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "core/buf.h"
#include "core/id.h"
#include "proto/frame.h"

/* A frame that uses every put helper, including an empty TLV and a nested
 * ENTRY holding a nested ENTRY, shaped like the R-ACQ-3 key-authentication
 * request (ACQ_PREPARE: batch, unit, QKD-key IDs in order, digest).
 * Returned bytes are in b (caller finis). */
static const uint8_t digest[32] = {
	0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a,
	0x0b, 0x0c, 0x0d, 0x0e, 0x0f, 0xf0, 0xf1, 0xf2, 0xf3, 0xf4, 0xf5,
	0xf6, 0xf7, 0xf8, 0xf9, 0xfa, 0xfb, 0xfc, 0xfd, 0xfe, 0xff,
};

static struct qkm_id sample_batch(void)
{
	struct qkm_id id;
	for (int i = 0; i < QKM_ID_LEN; i++)
		id.b[i] = (uint8_t)(0xa0 + i);
	return id;
}

static void build_sample(struct qkm_buf *b)
{
	struct qkm_id batch = sample_batch();
	size_t start, e1, e2;
	qkm_buf_init(b, QKM_FRAME_MAX, false);
	assert_int_equal(qkm_frame_begin(b, QKM_MSG_ACQ_PREPARE, 0x01020304u, &start), 0);
	assert_int_equal(qkm_put_str(b, QKM_T_LINK, "A-B"), 0);
	assert_int_equal(qkm_put_id(b, QKM_T_BATCH, &batch), 0);
	assert_int_equal(qkm_put_u32(b, QKM_T_UNIT, 0xfffffffeu), 0);
	assert_int_equal(qkm_put_u64(b, QKM_T_RATE, 0x8000000000000001ull), 0);
	assert_int_equal(qkm_put_u8(b, QKM_T_UP, 0xff), 0);
	assert_int_equal(qkm_put_str(b, QKM_T_QKD_ID, "mod1:0001"), 0);
	assert_int_equal(qkm_put_str(b, QKM_T_QKD_ID, "mod1:0002"), 0);
	assert_int_equal(qkm_put_tlv(b, QKM_T_DIGEST, digest, sizeof(digest)), 0);
	assert_int_equal(qkm_put_tlv(b, QKM_T_MESSAGE, NULL, 0), 0);
	assert_int_equal(qkm_put_open(b, QKM_T_ENTRY, &e1), 0);
	assert_int_equal(qkm_put_id(b, QKM_T_BATCH, &batch), 0);
	assert_int_equal(qkm_put_u8(b, QKM_T_STATE, 2), 0);
	assert_int_equal(qkm_put_open(b, QKM_T_ENTRY, &e2), 0);
	assert_int_equal(qkm_put_u32(b, QKM_T_COUNT, 7), 0);
	assert_int_equal(qkm_put_close(b, e2), 0);
	assert_int_equal(qkm_put_close(b, e1), 0);
	assert_int_equal(qkm_put_open(b, QKM_T_ENTRY, &e1), 0); /* empty nested list */
	assert_int_equal(qkm_put_close(b, e1), 0);
	assert_int_equal(qkm_frame_end(b, start), 0);
}

/* Offsets (from the body's start) at which a TLV begins in the sample; a body
 * cut exactly there is still a well-formed TLV list. */
static bool at_tlv_boundary(const uint8_t *body, size_t len, size_t cut)
{
	size_t off = 0;
	uint16_t t;
	const uint8_t *v;
	uint32_t n;
	if (cut == 0)
		return true;
	while (qkm_tlv_next(body, len, &off, &t, &v, &n) == 1)
		if (off == cut)
			return true;
	return false;
}

/* The exact bytes of a small HELLO: pins the wire layout the protocol
 * document describes (u32 length | u8 version | u16 type | u32 req | TLVs). */
static void test_wire_layout(void **state)
{
	static const uint8_t want[] = {
		0x00, 0x00, 0x00, 0x18,             /* length: 24 bytes follow */
		0x01,                               /* version */
		0x00, 0x01,                         /* type HELLO */
		0x00, 0x00, 0x00, 0x07,             /* request id */
		0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 'A', /* NAME "A" */
		0x00, 0x02, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x02, /* VERSION 2 */
	};
	struct qkm_buf b;
	size_t start;
	qkm_buf_init(&b, 1024, false);
	assert_int_equal(qkm_frame_begin(&b, QKM_MSG_HELLO, 7, &start), 0);
	assert_int_equal(qkm_put_str(&b, QKM_T_NAME, "A"), 0);
	assert_int_equal(qkm_put_u32(&b, QKM_T_VERSION, QKM_PROTO_VERSION), 0);
	assert_int_equal(qkm_frame_end(&b, start), 0);
	assert_int_equal(b.len, sizeof(want));
	assert_memory_equal(b.p, want, sizeof(want));
	assert_int_equal(qkm_frame_size(b.p, b.len), (long)sizeof(want));
	qkm_buf_fini(&b);
}

/* A frame appended after other bytes: begin/end work at any offset. */
static void test_frame_at_offset(void **state)
{
	struct qkm_buf b;
	size_t start;
	struct qkm_frame f;
	qkm_buf_init(&b, 1024, false);
	assert_int_equal(qkm_buf_put(&b, "xyz", 3), 0);
	assert_int_equal(qkm_frame_begin(&b, QKM_MSG_PING, 99, &start), 0);
	assert_int_equal(start, 3);
	assert_int_equal(qkm_frame_end(&b, start), 0);
	assert_int_equal(qkm_frame_size(b.p + 3, b.len - 3), QKM_FRAME_HDR);
	assert_int_equal(qkm_frame_parse(b.p + 3, b.len - 3, &f), 0);
	assert_int_equal(f.type, QKM_MSG_PING);
	assert_int_equal(f.req, 99);
	assert_int_equal(f.body_len, 0);
	qkm_buf_fini(&b);
}

static void test_build_parse_walk(void **state)
{
	struct qkm_buf b;
	struct qkm_frame f;
	build_sample(&b);
	assert_int_equal(qkm_frame_size(b.p, b.len), (long)b.len);
	assert_int_equal(qkm_frame_parse(b.p, b.len, &f), 0);
	assert_int_equal(f.version, QKM_FRAME_VERSION);
	assert_int_equal(f.type, QKM_MSG_ACQ_PREPARE);
	assert_int_equal(f.req, 0x01020304u);
	assert_ptr_equal(f.body, b.p + QKM_FRAME_HDR);
	assert_int_equal(f.body_len, b.len - QKM_FRAME_HDR);

	/* The walk returns the TLVs in the order they were put. */
	static const uint16_t order[] = {QKM_T_LINK,   QKM_T_BATCH,  QKM_T_UNIT,    QKM_T_RATE,
					 QKM_T_UP,     QKM_T_QKD_ID, QKM_T_QKD_ID,  QKM_T_DIGEST,
					 QKM_T_MESSAGE, QKM_T_ENTRY, QKM_T_ENTRY};
	static const uint32_t lens[] = {3, 16, 4, 8, 1, 9, 9, 32, 0, 6 + 16 + 6 + 1 + 6 + 10, 0};
	size_t off = 0, i = 0;
	uint16_t tag;
	const uint8_t *v, *entry = NULL;
	uint32_t n, entry_len = 0;
	int rc;
	while ((rc = qkm_tlv_next(f.body, f.body_len, &off, &tag, &v, &n)) == 1) {
		assert_true(i < sizeof(order) / sizeof(order[0]));
		assert_int_equal(tag, order[i]);
		assert_int_equal(n, lens[i]);
		if (tag == QKM_T_ENTRY && !entry) {
			entry = v;
			entry_len = n;
		}
		i++;
	}
	assert_int_equal(rc, 0);
	assert_int_equal(i, sizeof(order) / sizeof(order[0]));
	assert_int_equal(off, f.body_len);

	/* The nested list is itself a TLV list with its own nested list. */
	assert_non_null(entry);
	assert_int_equal(qkm_tlv_check(entry, entry_len), 0);
	struct qkm_id id, want = sample_batch();
	uint8_t st;
	assert_int_equal(qkm_tlv_id(entry, entry_len, QKM_T_BATCH, &id), 0);
	assert_true(qkm_id_eq(&id, &want));
	assert_int_equal(qkm_tlv_u8(entry, entry_len, QKM_T_STATE, &st), 0);
	assert_int_equal(st, 2);
	const uint8_t *inner;
	uint32_t inner_len, count;
	assert_int_equal(qkm_tlv_bytes(entry, entry_len, QKM_T_ENTRY, &inner, &inner_len), 0);
	assert_int_equal(inner_len, 10);
	assert_int_equal(qkm_tlv_u32(inner, inner_len, QKM_T_COUNT, &count), 0);
	assert_int_equal(count, 7);
	/* Lookups in the nested list do not see the outer TLVs. */
	uint32_t unit;
	assert_int_equal(qkm_tlv_u32(entry, entry_len, QKM_T_UNIT, &unit), QKM_ENOTFOUND);
	qkm_buf_fini(&b);
}

static void test_typed_lookups(void **state)
{
	struct qkm_buf b;
	struct qkm_frame f;
	build_sample(&b);
	assert_int_equal(qkm_frame_parse(b.p, b.len, &f), 0);
	const uint8_t *body = f.body;
	size_t len = f.body_len;
	uint8_t u8;
	uint32_t u32;
	uint64_t u64;
	struct qkm_id id, want = sample_batch();
	char s[QKM_NAME_MAX];
	const uint8_t *p;
	uint32_t n;

	assert_int_equal(qkm_tlv_u8(body, len, QKM_T_UP, &u8), 0);
	assert_int_equal(u8, 0xff);
	assert_int_equal(qkm_tlv_u32(body, len, QKM_T_UNIT, &u32), 0);
	assert_int_equal(u32, 0xfffffffeu);
	assert_int_equal(qkm_tlv_u64(body, len, QKM_T_RATE, &u64), 0);
	assert_true(u64 == 0x8000000000000001ull);
	assert_int_equal(qkm_tlv_id(body, len, QKM_T_BATCH, &id), 0);
	assert_true(qkm_id_eq(&id, &want));
	assert_int_equal(qkm_tlv_bytes(body, len, QKM_T_DIGEST, &p, &n), 0);
	assert_int_equal(n, 32);
	assert_memory_equal(p, digest, 32);
	assert_int_equal(qkm_tlv_bytes(body, len, QKM_T_MESSAGE, &p, &n), 0);
	assert_int_equal(n, 0);

	/* Strings: the first TLV with the tag wins (QKD_ID is repeated). */
	assert_int_equal(qkm_tlv_str(body, len, QKM_T_LINK, s, sizeof(s), true), 0);
	assert_string_equal(s, "A-B");
	assert_int_equal(qkm_tlv_str(body, len, QKM_T_QKD_ID, s, sizeof(s), true), 0);
	assert_string_equal(s, "mod1:0001");
	/* An empty string is a valid string but not a valid entity name. */
	assert_int_equal(qkm_tlv_str(body, len, QKM_T_MESSAGE, s, sizeof(s), false), 0);
	assert_string_equal(s, "");
	assert_int_equal(qkm_tlv_str(body, len, QKM_T_MESSAGE, s, sizeof(s), true), QKM_EFORMAT);
	/* Exact fit: 3 bytes + NUL in 4; one byte less is refused, not cut. */
	assert_int_equal(qkm_tlv_str(body, len, QKM_T_LINK, s, 4, true), 0);
	assert_string_equal(s, "A-B");
	assert_int_equal(qkm_tlv_str(body, len, QKM_T_LINK, s, 3, true), QKM_EFORMAT);
	assert_int_equal(qkm_tlv_str(body, len, QKM_T_LINK, s, 0, false), QKM_EFORMAT);

	/* Wrong length for the requested type. */
	assert_int_equal(qkm_tlv_u8(body, len, QKM_T_UNIT, &u8), QKM_EFORMAT);
	assert_int_equal(qkm_tlv_u32(body, len, QKM_T_RATE, &u32), QKM_EFORMAT);
	assert_int_equal(qkm_tlv_u64(body, len, QKM_T_UNIT, &u64), QKM_EFORMAT);
	assert_int_equal(qkm_tlv_id(body, len, QKM_T_DIGEST, &id), QKM_EFORMAT);
	assert_int_equal(qkm_tlv_u32(body, len, QKM_T_MESSAGE, &u32), QKM_EFORMAT);
	/* Absent tags. */
	assert_int_equal(qkm_tlv_u8(body, len, QKM_T_STATE, &u8), QKM_ENOTFOUND);
	assert_int_equal(qkm_tlv_u32(body, len, QKM_T_COUNT, &u32), QKM_ENOTFOUND);
	assert_int_equal(qkm_tlv_u64(body, len, QKM_T_TIME, &u64), QKM_ENOTFOUND);
	assert_int_equal(qkm_tlv_id(body, len, 999, &id), QKM_ENOTFOUND);
	assert_int_equal(qkm_tlv_str(body, len, QKM_T_NAME, s, sizeof(s), true), QKM_ENOTFOUND);
	assert_int_equal(qkm_tlv_bytes(body, len, QKM_T_KEYFILE, &p, &n), QKM_ENOTFOUND);
	/* An empty list has nothing. */
	assert_int_equal(qkm_tlv_check(body, 0), 0);
	assert_int_equal(qkm_tlv_u8(body, 0, QKM_T_UP, &u8), QKM_ENOTFOUND);
	qkm_buf_fini(&b);
}

/* Frame a body of raw TLV bytes. */
static void frame_raw(struct qkm_buf *b, const void *body, size_t n)
{
	size_t start;
	qkm_buf_init(b, QKM_FRAME_MAX, false);
	assert_int_equal(qkm_frame_begin(b, QKM_MSG_HELLO, 1, &start), 0);
	assert_int_equal(qkm_buf_put(b, body, n), 0);
	assert_int_equal(qkm_frame_end(b, start), 0);
}

/* Names on the wire are checked as names: an embedded NUL, a character
 * outside the name alphabet or a 64-byte name is refused. */
static void test_bad_strings(void **state)
{
	char s[QKM_NAME_MAX];
	struct qkm_frame f;
	struct qkm_buf b;

	static const uint8_t nul[] = {0x00, 0x01, 0x00, 0x00, 0x00, 0x03, 'A', 0x00, 'B'};
	frame_raw(&b, nul, sizeof(nul));
	assert_int_equal(qkm_frame_parse(b.p, b.len, &f), 0);
	assert_int_equal(qkm_tlv_str(f.body, f.body_len, QKM_T_NAME, s, sizeof(s), false), QKM_EFORMAT);
	assert_int_equal(qkm_tlv_str(f.body, f.body_len, QKM_T_NAME, s, sizeof(s), true), QKM_EFORMAT);
	qkm_buf_fini(&b);

	static const uint8_t trailing_nul[] = {0x00, 0x01, 0x00, 0x00, 0x00, 0x02, 'A', 0x00};
	frame_raw(&b, trailing_nul, sizeof(trailing_nul));
	assert_int_equal(qkm_frame_parse(b.p, b.len, &f), 0);
	assert_int_equal(qkm_tlv_str(f.body, f.body_len, QKM_T_NAME, s, sizeof(s), false), QKM_EFORMAT);
	qkm_buf_fini(&b);

	size_t start;
	qkm_buf_init(&b, 4096, false);
	assert_int_equal(qkm_frame_begin(&b, QKM_MSG_HELLO, 1, &start), 0);
	assert_int_equal(qkm_put_str(&b, QKM_T_NAME, "../etc"), 0);
	assert_int_equal(qkm_put_str(&b, QKM_T_LINK, "a b"), 0);
	char long63[64], long64[65], long200[201];
	memset(long63, 'x', 63);
	long63[63] = 0;
	memset(long64, 'y', 64);
	long64[64] = 0;
	memset(long200, 'z', 200);
	long200[200] = 0;
	assert_int_equal(qkm_put_str(&b, QKM_T_MODULE, long63), 0);
	assert_int_equal(qkm_put_str(&b, QKM_T_PEER, long64), 0);
	assert_int_equal(qkm_put_str(&b, QKM_T_MESSAGE, long200), 0);
	assert_int_equal(qkm_frame_end(&b, start), 0);
	assert_int_equal(qkm_frame_parse(b.p, b.len, &f), 0);
	/* "/" is not in the name alphabet; as a plain string it is fine. */
	assert_int_equal(qkm_tlv_str(f.body, f.body_len, QKM_T_NAME, s, sizeof(s), true), QKM_EFORMAT);
	assert_int_equal(qkm_tlv_str(f.body, f.body_len, QKM_T_NAME, s, sizeof(s), false), 0);
	assert_string_equal(s, "../etc");
	assert_int_equal(qkm_tlv_str(f.body, f.body_len, QKM_T_LINK, s, sizeof(s), true), QKM_EFORMAT);
	/* 63 bytes is the longest name; 64 does not fit QKM_NAME_MAX. */
	assert_int_equal(qkm_tlv_str(f.body, f.body_len, QKM_T_MODULE, s, sizeof(s), true), 0);
	assert_string_equal(s, long63);
	assert_int_equal(qkm_tlv_str(f.body, f.body_len, QKM_T_PEER, s, sizeof(s), true), QKM_EFORMAT);
	char big[256];
	assert_int_equal(qkm_tlv_str(f.body, f.body_len, QKM_T_PEER, big, sizeof(big), true), QKM_EFORMAT);
	assert_int_equal(qkm_tlv_str(f.body, f.body_len, QKM_T_PEER, big, sizeof(big), false), 0);
	assert_int_equal(qkm_tlv_str(f.body, f.body_len, QKM_T_MESSAGE, s, sizeof(s), false), QKM_EFORMAT);
	assert_int_equal(qkm_tlv_str(f.body, f.body_len, QKM_T_MESSAGE, big, sizeof(big), false), 0);
	assert_int_equal(strlen(big), 200);
	qkm_buf_fini(&b);
}

/* Every strict prefix of a valid frame is refused as truncated, and one byte
 * more than the length field announces is refused as malformed. */
static void test_every_truncation_refused(void **state)
{
	struct qkm_buf b;
	struct qkm_frame f;
	build_sample(&b);
	for (size_t n = 0; n < b.len; n++) {
		/* A copy of exactly n bytes, so ASan catches any read past it. */
		uint8_t *cut = malloc(n ? n : 1);
		assert_non_null(cut);
		memcpy(cut, b.p, n);
		assert_int_equal(qkm_frame_parse(cut, n, &f), QKM_ETRUNC);
		long sz = qkm_frame_size(cut, n);
		if (n < 4)
			assert_int_equal(sz, 0);
		else
			assert_int_equal(sz, (long)b.len);
		free(cut);
	}
	assert_int_equal(qkm_buf_put_u8(&b, 0), 0);
	assert_int_equal(qkm_frame_parse(b.p, b.len, &f), QKM_EFORMAT);
	qkm_buf_fini(&b);
}

/* Cutting the body anywhere and fixing up the length field: the result
 * parses only when the cut falls between TLVs (the TLVs must tile the body
 * exactly); a cut inside a TLV header or value is QKM_EFORMAT. */
static void test_body_cuts(void **state)
{
	struct qkm_buf b;
	struct qkm_frame f;
	build_sample(&b);
	const uint8_t *body = b.p + QKM_FRAME_HDR;
	size_t body_len = b.len - QKM_FRAME_HDR;
	size_t ok = 0;
	for (size_t cut = 0; cut < body_len; cut++) {
		size_t n = QKM_FRAME_HDR + cut;
		uint8_t *p = malloc(n);
		assert_non_null(p);
		memcpy(p, b.p, n);
		qkm_be32_put(p, (uint32_t)(n - 4));
		int rc = qkm_frame_parse(p, n, &f);
		if (at_tlv_boundary(body, body_len, cut)) {
			assert_int_equal(rc, 0);
			ok++;
		} else {
			assert_int_equal(rc, QKM_EFORMAT);
			assert_int_equal(qkm_tlv_check(p + QKM_FRAME_HDR, cut), QKM_EFORMAT);
		}
		free(p);
	}
	assert_int_equal(ok, 11); /* 0 and after each of the first 10 of 11 TLVs */
	qkm_buf_fini(&b);
}

static void test_length_field(void **state)
{
	uint8_t h[QKM_FRAME_HDR] = {0, 0, 0, 7, QKM_FRAME_VERSION, 0, 3, 0, 0, 0, 1};
	struct qkm_frame f;

	/* Fewer than 4 bytes: the size is not known yet. */
	for (size_t n = 0; n < 4; n++)
		assert_int_equal(qkm_frame_size(h, n), 0);
	assert_int_equal(qkm_frame_size(h, 4), QKM_FRAME_HDR);

	/* The largest frame is QKM_FRAME_MAX bytes, header included. */
	qkm_be32_put(h, QKM_FRAME_MAX - 4);
	assert_int_equal(qkm_frame_size(h, 4), (long)QKM_FRAME_MAX);
	qkm_be32_put(h, QKM_FRAME_MAX - 3);
	assert_int_equal(qkm_frame_size(h, 4), QKM_ETOOBIG);
	assert_int_equal(qkm_frame_parse(h, sizeof(h), &f), QKM_ETOOBIG);
	qkm_be32_put(h, 0xffffffffu);
	assert_int_equal(qkm_frame_size(h, 4), QKM_ETOOBIG);
	assert_int_equal(qkm_frame_parse(h, sizeof(h), &f), QKM_ETOOBIG);

	/* A length too small to hold the rest of the header. */
	for (uint32_t n = 0; n < QKM_FRAME_HDR - 4; n++) {
		qkm_be32_put(h, n);
		assert_int_equal(qkm_frame_size(h, 4), QKM_EFORMAT);
		assert_int_equal(qkm_frame_parse(h, sizeof(h), &f), QKM_EFORMAT);
	}
}

static void test_wrong_version(void **state)
{
	struct qkm_buf b;
	struct qkm_frame f;
	build_sample(&b);
	b.p[4] = 0;
	assert_int_equal(qkm_frame_parse(b.p, b.len, &f), QKM_EVERSION);
	b.p[4] = QKM_FRAME_VERSION + 1;
	assert_int_equal(qkm_frame_parse(b.p, b.len, &f), QKM_EVERSION);
	b.p[4] = 0xff;
	assert_int_equal(qkm_frame_parse(b.p, b.len, &f), QKM_EVERSION);
	b.p[4] = QKM_FRAME_VERSION;
	assert_int_equal(qkm_frame_parse(b.p, b.len, &f), 0);
	qkm_buf_fini(&b);
}

/* A TLV whose length runs past the end of the body (or of its enclosing
 * ENTRY) is malformed, never read. */
static void test_tlv_overrun(void **state)
{
	struct qkm_buf b;
	struct qkm_frame f;
	build_sample(&b);
	size_t first_len = QKM_FRAME_HDR + 2; /* LINK's length field */
	size_t body_len = b.len - QKM_FRAME_HDR;
	uint32_t bad[] = {(uint32_t)body_len - 6 + 1, (uint32_t)body_len, 0x7fffffffu, 0xffffffffu,
			  0xfffffffau};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		qkm_be32_put(b.p + first_len, bad[i]);
		assert_int_equal(qkm_frame_parse(b.p, b.len, &f), QKM_EFORMAT);
		assert_int_equal(qkm_tlv_check(b.p + QKM_FRAME_HDR, body_len), QKM_EFORMAT);
	}
	/* Exactly the whole body: one TLV, parses. */
	qkm_be32_put(b.p + first_len, (uint32_t)body_len - 6);
	assert_int_equal(qkm_frame_parse(b.p, b.len, &f), 0);
	qkm_buf_fini(&b);

	/* A body shorter than one TLV header. */
	static const uint8_t stub[] = {0x00, 0x01, 0x00, 0x00, 0x00};
	frame_raw(&b, stub, sizeof(stub));
	assert_int_equal(qkm_frame_parse(b.p, b.len, &f), QKM_EFORMAT);
	qkm_buf_fini(&b);

	/* A nested list that overruns its ENTRY: the frame is well formed (the
	 * ENTRY is just bytes to it) but the nested check and lookups refuse. */
	static const uint8_t nested[] = {
		0x00, 0x15, 0x00, 0x00, 0x00, 0x07,             /* ENTRY, 7 bytes */
		0x00, 0x10, 0x00, 0x00, 0x00, 0x02, 0x01,       /* STATE claims 2, has 1 */
	};
	frame_raw(&b, nested, sizeof(nested));
	assert_int_equal(qkm_frame_parse(b.p, b.len, &f), 0);
	const uint8_t *e;
	uint32_t en;
	uint8_t st;
	assert_int_equal(qkm_tlv_bytes(f.body, f.body_len, QKM_T_ENTRY, &e, &en), 0);
	assert_int_equal(en, 7);
	assert_int_equal(qkm_tlv_check(e, en), QKM_EFORMAT);
	assert_int_equal(qkm_tlv_u8(e, en, QKM_T_STATE, &st), QKM_EFORMAT);
	qkm_buf_fini(&b);
}

/* A lookup that meets a malformed TLV before its tag reports the damage, not
 * "not found". */
static void test_lookup_stops_at_damage(void **state)
{
	static const uint8_t body[] = {
		0x00, 0x0a, 0x00, 0x00, 0x00, 0x01, 0x01,       /* UP 1 */
		0x00, 0x04, 0x00, 0x00, 0x00, 0x09, 'x',        /* MESSAGE overruns */
	};
	uint8_t up;
	uint32_t c;
	assert_int_equal(qkm_tlv_u8(body, sizeof(body), QKM_T_UP, &up), 0);
	assert_int_equal(up, 1);
	assert_int_equal(qkm_tlv_u32(body, sizeof(body), QKM_T_COUNT, &c), QKM_EFORMAT);
}

/* Builders respect the buffer's maximum and the frame maximum. */
static void test_build_limits(void **state)
{
	struct qkm_buf b;
	size_t start;
	qkm_buf_init(&b, QKM_FRAME_HDR + 6 + 3, false);
	assert_int_equal(qkm_frame_begin(&b, QKM_MSG_PING, 1, &start), 0);
	assert_int_equal(qkm_put_str(&b, QKM_T_NAME, "abcd"), QKM_ETOOBIG);
	assert_int_equal(b.len, QKM_FRAME_HDR); /* nothing half-written */
	assert_int_equal(qkm_put_str(&b, QKM_T_NAME, "abc"), 0);
	assert_int_equal(qkm_put_u8(&b, QKM_T_UP, 1), QKM_ETOOBIG);
	assert_int_equal(qkm_frame_end(&b, start), 0);
	qkm_buf_fini(&b);

	/* A frame of exactly QKM_FRAME_MAX bytes is built and parsed; one byte
	 * more is refused by qkm_frame_end. */
	size_t data = QKM_FRAME_MAX - QKM_FRAME_HDR - 6;
	uint8_t *big = calloc(1, data + 1);
	assert_non_null(big);
	struct qkm_frame f;
	qkm_buf_init(&b, QKM_FRAME_MAX + 64, false);
	assert_int_equal(qkm_frame_begin(&b, QKM_MSG_KEYFILE, 2, &start), 0);
	assert_int_equal(qkm_put_tlv(&b, QKM_T_KEYFILE, big, data), 0);
	assert_int_equal(qkm_frame_end(&b, start), 0);
	assert_int_equal(b.len, QKM_FRAME_MAX);
	assert_int_equal(qkm_frame_parse(b.p, b.len, &f), 0);
	qkm_buf_reset(&b);
	assert_int_equal(qkm_frame_begin(&b, QKM_MSG_KEYFILE, 2, &start), 0);
	assert_int_equal(qkm_put_tlv(&b, QKM_T_KEYFILE, big, data + 1), 0);
	assert_int_equal(qkm_frame_end(&b, start), QKM_ETOOBIG);
	free(big);
	qkm_buf_fini(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_wire_layout),
		cmocka_unit_test(test_frame_at_offset),
		cmocka_unit_test(test_build_parse_walk),
		cmocka_unit_test(test_typed_lookups),
		cmocka_unit_test(test_bad_strings),
		cmocka_unit_test(test_every_truncation_refused),
		cmocka_unit_test(test_body_cuts),
		cmocka_unit_test(test_length_field),
		cmocka_unit_test(test_wrong_version),
		cmocka_unit_test(test_tlv_overrun),
		cmocka_unit_test(test_lookup_stops_at_damage),
		cmocka_unit_test(test_build_limits),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
