/* test_keyfile.c - the key file's binary encoding (core/keyfile.c) and JSON
 * view (proto/keyfile_json.c): Table 1 fields by name in both (R-FMT-1), one
 * versioned encoding that round-trips exactly and refuses everything else
 * (R-FMT-2). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <openssl/crypto.h>
#include <stdio.h>
#include <string.h>

#include "core/keyfile.h"
#include "proto/keyfile_json.h"

/* Multiples of 1 us, so the JSON view carries them exactly. */
#define TS 1700000000123456000ull

struct kcase {
	enum qkm_keyfile_kind kind;
	size_t dlen;   /* 0: metadata only */
	bool hash;     /* set hash_value (kinds that have one) */
	uint32_t hops; /* relayed only */
	bool minimal;  /* mandatory fields only */
};

static const struct kcase cases[] = {
	{QKM_KF_QKD, 0, false, 0, false},     {QKM_KF_QKD, 48, true, 0, false},
	{QKM_KF_QKD, 48, false, 0, false},    {QKM_KF_QKD, 0, false, 0, true},
	{QKM_KF_KMA, 0, false, 0, false},     {QKM_KF_KMA, 32, true, 0, false},
	{QKM_KF_KMA, 32, false, 0, true},     {QKM_KF_RELAYED, 0, false, 3, false},
	{QKM_KF_RELAYED, 32, true, 3, false}, {QKM_KF_RELAYED, 32, true, 0, false},
	{QKM_KF_RELAYED, 0, false, 0, true},  {QKM_KF_RELAYED, 16, false, QKM_KEYFILE_MAX_HOPS, false},
	{QKM_KF_KSA, 0, false, 0, false},     {QKM_KF_KSA, 32, false, 0, false},
	{QKM_KF_KSA, 0, false, 0, true},
};
#define NCASES (sizeof(cases) / sizeof(cases[0]))

static void set_name(char dst[QKM_NAME_MAX], const char *s)
{
	snprintf(dst, QKM_NAME_MAX, "%s", s);
}

static void fill_kma(struct qkm_kma_meta *k, const struct kcase *c, enum qkm_key_type kt)
{
	for (int i = 0; i < QKM_ID_LEN; i++)
		k->kma_key_id.b[i] = (uint8_t)(0xa0 + i);
	set_name(k->matching_kma_id, "kma-B");
	if (c->minimal)
		return;
	k->key_length = c->dlen ? (uint32_t)c->dlen * 8 : 256;
	k->key_type = kt;
	set_name(k->kma_id, "kma-A");
	k->generation_time_stamp = TS + 1000;
	set_name(k->qkd_module_id, "alice.link-1");
	set_name(k->matching_qkd_module_id, "bob.link-1");
}

static void make(struct qkm_keyfile *kf, const struct kcase *c)
{
	qkm_keyfile_init(kf, c->kind);
	switch (c->kind) {
	case QKM_KF_QKD:
		set_name(kf->m.qkd.qkd_key_id, "qkd:0001");
		if (c->minimal)
			break;
		kf->m.qkd.key_length = c->dlen ? (uint32_t)c->dlen * 8 : 1024;
		set_name(kf->m.qkd.qkd_module_id, "alice.link-1");
		set_name(kf->m.qkd.matching_qkd_module_id, "bob.link-1");
		kf->m.qkd.generation_time_stamp = TS;
		break;
	case QKM_KF_KMA:
		fill_kma(&kf->m.kma, c, QKM_KT_ENC);
		break;
	case QKM_KF_RELAYED:
		fill_kma(&kf->m.relayed.kma_key_metadata, c, QKM_KT_DEC);
		kf->m.relayed.n_hops = c->hops;
		for (uint32_t h = 0; h < c->hops; h++) {
			struct qkm_relay_hop *hp = &kf->m.relayed.hops[h];
			char n[32];
			snprintf(n, sizeof(n), "kma-%u", h);
			set_name(hp->source_kma_id, n);
			snprintf(n, sizeof(n), "kma-%u", h + 1);
			set_name(hp->destination_kma_id, n);
			if (h % 4 == 3)
				continue; /* an empty-ish hop: optional fields absent */
			hp->key_relay_time_stamp = TS + 2000 * (h + 1);
			hp->key_relay_encryption_method = h % 2 ? QKM_RM_AES256GCM : QKM_RM_OTP;
		}
		break;
	case QKM_KF_KSA:
		assert_int_equal(qkm_id_parse("5f0c6a9e-2b1d-4c3e-9a8b-0123456789ab",
					      &kf->m.ksa.ksa_key_id),
				 0);
		if (c->minimal)
			break;
		kf->m.ksa.key_length = c->dlen ? (uint32_t)c->dlen * 8 : 256;
		kf->m.ksa.supply_time_stamp = TS + 5000;
		set_name(kf->m.ksa.application_name, "video-conf");
		set_name(kf->m.ksa.application_source_id, "sae-1");
		set_name(kf->m.ksa.application_destination_id, "sae-2");
		break;
	}
	if (c->dlen) {
		kf->data = qkm_secret_new(c->dlen);
		assert_non_null(kf->data);
		for (size_t i = 0; i < c->dlen; i++)
			kf->data->p[i] = (uint8_t)(i * 37 + 5);
		if (c->hash && c->kind != QKM_KF_KSA)
			assert_int_equal(qkm_keyfile_set_hash(kf), 0);
	}
}

static void encode_case(const struct kcase *c, struct qkm_buf *b)
{
	struct qkm_keyfile kf;
	make(&kf, c);
	qkm_buf_init(b, 1u << 20, true);
	assert_int_equal(qkm_keyfile_encode(&kf, b), 0);
	qkm_keyfile_fini(&kf);
}

/* Decodes p[0..n) expecting failure rc naming field; nothing may stay
 * allocated, not even in the secure heap. */
static void expect_refused(const uint8_t *p, size_t n, int rc, const char *field)
{
	struct qkm_keyfile kf;
	const char *ef = NULL;
	size_t used = qkm_secure_in_use();
	assert_int_equal(qkm_keyfile_decode(p, n, &kf, &ef), rc);
	assert_null(kf.data);
	assert_int_equal(qkm_secure_in_use(), used);
	if (field) {
		assert_non_null(ef);
		assert_string_equal(ef, field);
	}
}

/* R-FMT-2: binary decode+encode is the identity on every kind. */
static void test_binary_roundtrip(void **state)
{
	for (size_t i = 0; i < NCASES; i++) {
		struct qkm_buf b1, b2;
		struct qkm_keyfile kf, want;
		const char *ef = "x";
		encode_case(&cases[i], &b1);
		assert_memory_equal(b1.p, "QKMK\x01", 5);
		assert_int_equal(b1.p[5], cases[i].kind);
		assert_int_equal(qkm_keyfile_decode(b1.p, b1.len, &kf, &ef), 0);
		assert_null(ef);
		make(&want, &cases[i]);
		/* Metadata equal field by field (both zero-initialised by init). */
		assert_memory_equal(&kf.m, &want.m, sizeof(kf.m));
		if (cases[i].dlen) {
			assert_int_equal(kf.data->len, cases[i].dlen);
			assert_memory_equal(kf.data->p, want.data->p, cases[i].dlen);
		} else {
			assert_null(kf.data);
		}
		qkm_buf_init(&b2, 1u << 20, true);
		assert_int_equal(qkm_keyfile_encode(&kf, &b2), 0);
		assert_int_equal(b2.len, b1.len);
		assert_memory_equal(b2.p, b1.p, b1.len);
		qkm_keyfile_fini(&kf);
		qkm_keyfile_fini(&want);
		qkm_buf_fini(&b1);
		qkm_buf_fini(&b2);
	}
}

/* R-FMT-1/R-FMT-2: the JSON view round-trips through text, with and
 * without key data, and uses Table 1's names. */
static void test_json_roundtrip(void **state)
{
	for (size_t i = 0; i < NCASES; i++) {
		for (int with_data = 0; with_data < 2; with_data++) {
			struct qkm_keyfile kf, back;
			struct qkm_buf b1, b2;
			json_t *j, *j2, *parsed;
			const char *ef = "x";
			char *text;

			make(&kf, &cases[i]);
			assert_int_equal(qkm_keyfile_to_json(&kf, with_data, &j), 0);
			text = json_dumps(j, JSON_COMPACT);
			assert_non_null(text);
			parsed = json_loads(text, JSON_REJECT_DUPLICATES, NULL);
			assert_non_null(parsed);
			assert_int_equal(qkm_keyfile_from_json(parsed, &back, &ef), 0);
			assert_null(ef);
			/* JSON -> struct -> JSON is exact. */
			assert_int_equal(qkm_keyfile_to_json(&back, with_data, &j2), 0);
			assert_true(json_equal(j, j2));
			/* struct -> JSON -> struct: compare through the canonical encoding. */
			if (!with_data) {
				qkm_secret_free(kf.data);
				kf.data = NULL;
			}
			qkm_buf_init(&b1, 1u << 20, true);
			qkm_buf_init(&b2, 1u << 20, true);
			assert_int_equal(qkm_keyfile_encode(&kf, &b1), 0);
			assert_int_equal(qkm_keyfile_encode(&back, &b2), 0);
			assert_int_equal(b1.len, b2.len);
			assert_memory_equal(b1.p, b2.p, b1.len);
			assert_int_equal(json_object_get(j, "key_data") != NULL,
					 with_data && cases[i].dlen);
			assert_string_equal(json_string_value(json_object_get(j, "kind")),
					    qkm_keyfile_kind_name(cases[i].kind));
			qkm_cleanse(text, strlen(text));
			free(text);
			json_decref(j);
			json_decref(j2);
			json_decref(parsed);
			qkm_buf_fini(&b1);
			qkm_buf_fini(&b2);
			qkm_keyfile_fini(&kf);
			qkm_keyfile_fini(&back);
		}
	}
}

/* R-FMT-1: the JSON member names are Table 1's, spelled as documented. */
static void test_json_names(void **state)
{
	struct qkm_keyfile kf;
	struct kcase c = {QKM_KF_RELAYED, 4, true, 1, false};
	json_t *j;
	char *text;
	make(&kf, &c);
	assert_int_equal(qkm_keyfile_to_json(&kf, true, &j), 0);
	text = json_dumps(j, JSON_COMPACT);
	assert_string_equal(
		text,
		"{\"kind\":\"relayed-kma-key\",\"version\":1,\"kma_key_metadata\":{"
		"\"kma_key_id\":\"a0a1a2a3a4a5a6a7a8a9aaabacadaeaf\",\"key_length\":32,"
		"\"key_type\":\"dec\",\"kma_id\":\"kma-A\",\"matching_kma_id\":\"kma-B\","
		"\"generation_time_stamp\":\"2023-11-14T22:13:20.123457Z\","
		"\"qkd_module_id\":\"alice.link-1\",\"matching_qkd_module_id\":\"bob.link-1\","
		"\"hash_value\":"
		"\"28e6f1c769c04ac1cf93a1c606cbe87bfd43b1752c2dc3daf7c534e24aca1e58\"},"
		"\"relay\":[{\"source_kma_id\":\"kma-0\",\"destination_kma_id\":\"kma-1\","
		"\"key_relay_time_stamp\":\"2023-11-14T22:13:20.123458Z\","
		"\"key_relay_encryption_method\":\"otp\"}],\"key_data\":\"BSpPdA==\"}");
	free(text);
	json_decref(j);
	qkm_keyfile_fini(&kf);
}

/* The JSON view truncates time stamps to microseconds; below 1 us = absent. */
static void test_json_time_truncated(void **state)
{
	struct kcase c = {QKM_KF_QKD, 0, false, 0, true};
	struct qkm_keyfile kf, back;
	json_t *j;
	make(&kf, &c);
	kf.m.qkd.generation_time_stamp = TS + 999;
	assert_int_equal(qkm_keyfile_to_json(&kf, false, &j), 0);
	assert_string_equal(json_string_value(json_object_get(j, "generation_time_stamp")),
			    "2023-11-14T22:13:20.123456Z");
	assert_int_equal(qkm_keyfile_from_json(j, &back, NULL), 0);
	assert_true(back.m.qkd.generation_time_stamp == TS);
	json_decref(j);
	kf.m.qkd.generation_time_stamp = 999;
	assert_int_equal(qkm_keyfile_to_json(&kf, false, &j), 0);
	assert_null(json_object_get(j, "generation_time_stamp"));
	json_decref(j);
	qkm_keyfile_fini(&kf);
	qkm_keyfile_fini(&back);
}

/* R-FMT-2: every proper prefix of every valid encoding is refused, and a
 * refused decode leaves nothing allocated. */
static void test_every_truncation_refused(void **state)
{
	for (size_t i = 0; i < NCASES; i++) {
		struct qkm_buf b;
		encode_case(&cases[i], &b);
		for (size_t n = 0; n < b.len; n++) {
			struct qkm_keyfile kf;
			size_t used = qkm_secure_in_use();
			int rc = qkm_keyfile_decode(b.p, n, &kf, NULL);
			assert_true(rc < 0);
			assert_null(kf.data);
			assert_int_equal(qkm_secure_in_use(), used);
		}
		qkm_buf_fini(&b);
	}
}

/* R-FMT-2: a single flipped bit is refused or yields a file whose encoding is
 * exactly the flipped bytes: never silently read as something else. */
static void test_every_bitflip(void **state)
{
	size_t refused = 0, accepted = 0;
	for (size_t i = 0; i < NCASES; i++) {
		struct qkm_buf b, re;
		encode_case(&cases[i], &b);
		qkm_buf_init(&re, 1u << 20, true);
		for (size_t bit = 0; bit < b.len * 8; bit++) {
			struct qkm_keyfile kf;
			b.p[bit / 8] ^= (uint8_t)(1u << (bit % 8));
			if (qkm_keyfile_decode(b.p, b.len, &kf, NULL) == 0) {
				qkm_buf_reset(&re);
				assert_int_equal(qkm_keyfile_encode(&kf, &re), 0);
				assert_int_equal(re.len, b.len);
				assert_memory_equal(re.p, b.p, b.len);
				qkm_keyfile_fini(&kf);
				accepted++;
			} else {
				assert_null(kf.data);
				refused++;
			}
			b.p[bit / 8] ^= (uint8_t)(1u << (bit % 8));
		}
		qkm_buf_fini(&b);
		qkm_buf_fini(&re);
	}
	/* Both paths were exercised (names and unhashed data accept flips). */
	assert_true(refused > 0 && accepted > 0);
}

static void test_version_refused(void **state)
{
	struct qkm_buf b;
	encode_case(&cases[1], &b);
	b.p[4] = 2;
	expect_refused(b.p, b.len, QKM_EVERSION, "version");
	b.p[4] = 0;
	expect_refused(b.p, b.len, QKM_EVERSION, "version");
	b.p[4] = 1;
	b.p[5] = 5;
	expect_refused(b.p, b.len, QKM_EFORMAT, "kind");
	b.p[5] = 1;
	b.p[0] = 'X';
	expect_refused(b.p, b.len, QKM_EFORMAT, "magic");
	qkm_buf_fini(&b);
}

/* --- hand-built encodings ------------------------------------------------- */

static void hdr(struct qkm_buf *b, uint8_t kind)
{
	qkm_buf_init(b, 4096, false);
	assert_int_equal(qkm_buf_put(b, "QKMK\x01", 5), 0);
	assert_int_equal(qkm_buf_put_u8(b, kind), 0);
}

static void fld(struct qkm_buf *b, uint8_t tag, const void *v, size_t n)
{
	assert_int_equal(qkm_buf_put_u8(b, tag), 0);
	assert_int_equal(qkm_buf_put_u16(b, (uint16_t)n), 0);
	assert_int_equal(qkm_buf_put(b, v, n), 0);
}

static void fstr(struct qkm_buf *b, uint8_t tag, const char *s) { fld(b, tag, s, strlen(s)); }

static void end(struct qkm_buf *b)
{
	assert_int_equal(qkm_buf_put_u8(b, QKM_KFT_KEY_DATA), 0);
	assert_int_equal(qkm_buf_put_u32(b, 0), 0);
}

static const uint8_t some_id[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};

/* The smallest valid files, checked so the negative tests below fail for
 * the reason they name and not another. */
static void test_handbuilt_valid(void **state)
{
	struct qkm_buf b;
	struct qkm_keyfile kf;
	hdr(&b, QKM_KF_QKD);
	fstr(&b, QKM_KFT_QKD_KEY_ID, "k1");
	end(&b);
	assert_int_equal(qkm_keyfile_decode(b.p, b.len, &kf, NULL), 0);
	assert_string_equal(kf.m.qkd.qkd_key_id, "k1");
	qkm_keyfile_fini(&kf);
	qkm_buf_fini(&b);
}

static void test_duplicate_field_refused(void **state)
{
	struct qkm_buf b;
	hdr(&b, QKM_KF_QKD);
	fstr(&b, QKM_KFT_QKD_KEY_ID, "k1");
	fstr(&b, QKM_KFT_QKD_KEY_ID, "k2");
	end(&b);
	expect_refused(b.p, b.len, QKM_EFORMAT, "qkd_key_id");
	qkm_buf_fini(&b);

	hdr(&b, QKM_KF_KSA);
	fld(&b, QKM_KFT_KSA_KEY_ID, some_id, 16);
	fstr(&b, QKM_KFT_KSA_APPLICATION_NAME, "app");
	fstr(&b, QKM_KFT_KSA_APPLICATION_NAME, "app");
	end(&b);
	expect_refused(b.p, b.len, QKM_EFORMAT, "application_name");
	qkm_buf_fini(&b);
}

static void test_out_of_order_refused(void **state)
{
	struct qkm_buf b;
	hdr(&b, QKM_KF_KMA);
	fstr(&b, QKM_KFT_KMA_MATCHING_KMA_ID, "kma-B");
	fld(&b, QKM_KFT_KMA_KEY_ID, some_id, 16);
	end(&b);
	expect_refused(b.p, b.len, QKM_EFORMAT, "kma_key_id");
	qkm_buf_fini(&b);
}

static void test_unknown_tag_refused(void **state)
{
	struct qkm_buf b;
	hdr(&b, QKM_KF_QKD);
	fstr(&b, QKM_KFT_QKD_KEY_ID, "k1");
	fld(&b, 0x7e, "x", 1);
	end(&b);
	expect_refused(b.p, b.len, QKM_EFORMAT, "tag");
	qkm_buf_fini(&b);

	/* A known tag in the wrong kind is named. */
	hdr(&b, QKM_KF_QKD);
	fstr(&b, QKM_KFT_QKD_KEY_ID, "k1");
	fld(&b, QKM_KFT_KMA_KEY_ID, some_id, 16);
	end(&b);
	expect_refused(b.p, b.len, QKM_EFORMAT, "kma_key_id");
	qkm_buf_fini(&b);
}

static void test_trailing_byte_refused(void **state)
{
	for (size_t i = 0; i < NCASES; i++) {
		struct qkm_buf b;
		encode_case(&cases[i], &b);
		assert_int_equal(qkm_buf_put_u8(&b, 0), 0);
		expect_refused(b.p, b.len, QKM_EFORMAT, "key_data");
		qkm_buf_fini(&b);
	}
}

static void test_missing_mandatory_refused(void **state)
{
	struct qkm_buf b, nest;

	hdr(&b, QKM_KF_QKD);
	fstr(&b, QKM_KFT_QKD_MODULE_ID, "alice");
	end(&b);
	expect_refused(b.p, b.len, QKM_EFORMAT, "qkd_key_id");
	qkm_buf_fini(&b);

	hdr(&b, QKM_KF_KMA);
	fstr(&b, QKM_KFT_KMA_MATCHING_KMA_ID, "kma-B");
	end(&b);
	expect_refused(b.p, b.len, QKM_EFORMAT, "kma_key_id");
	qkm_buf_fini(&b);

	hdr(&b, QKM_KF_KMA);
	fld(&b, QKM_KFT_KMA_KEY_ID, some_id, 16);
	fstr(&b, QKM_KFT_KMA_ID, "kma-A");
	end(&b);
	expect_refused(b.p, b.len, QKM_EFORMAT, "matching_kma_id");
	qkm_buf_fini(&b);

	hdr(&b, QKM_KF_RELAYED);
	fld(&b, QKM_KFT_RELAY_HOP, "", 0);
	end(&b);
	expect_refused(b.p, b.len, QKM_EFORMAT, "kma_key_metadata");
	qkm_buf_fini(&b);

	/* Inside the nested KMA-key metadata too. */
	qkm_buf_init(&nest, 256, false);
	fld(&nest, QKM_KFT_KMA_KEY_ID, some_id, 16);
	hdr(&b, QKM_KF_RELAYED);
	fld(&b, QKM_KFT_RELAY_KMA_KEY_METADATA, nest.p, nest.len);
	end(&b);
	expect_refused(b.p, b.len, QKM_EFORMAT, "matching_kma_id");
	qkm_buf_fini(&b);
	/* ...which with the mandatory field added is valid. */
	fstr(&nest, QKM_KFT_KMA_MATCHING_KMA_ID, "kma-B");
	hdr(&b, QKM_KF_RELAYED);
	fld(&b, QKM_KFT_RELAY_KMA_KEY_METADATA, nest.p, nest.len);
	end(&b);
	{
		struct qkm_keyfile kf;
		assert_int_equal(qkm_keyfile_decode(b.p, b.len, &kf, NULL), 0);
		assert_string_equal(kf.m.relayed.kma_key_metadata.matching_kma_id, "kma-B");
		qkm_keyfile_fini(&kf);
	}
	qkm_buf_fini(&b);
	qkm_buf_fini(&nest);

	hdr(&b, QKM_KF_KSA);
	fstr(&b, QKM_KFT_KSA_APPLICATION_NAME, "app");
	end(&b);
	expect_refused(b.p, b.len, QKM_EFORMAT, "ksa_key_id");
	qkm_buf_fini(&b);

	/* No key_data terminator at all. */
	hdr(&b, QKM_KF_QKD);
	fstr(&b, QKM_KFT_QKD_KEY_ID, "k1");
	expect_refused(b.p, b.len, QKM_ETRUNC, "key_data");
	qkm_buf_fini(&b);
}

/* Fixed widths, zero values (spelled by omission) and bad names. */
static void test_bad_values_refused(void **state)
{
	static const struct {
		uint8_t tag;
		const char *v;
		size_t n;
		const char *field;
	} bad[] = {
		{QKM_KFT_QKD_KEY_LENGTH, "\x00\x00\x01", 3, "key_length"},
		{QKM_KFT_QKD_KEY_LENGTH, "\x00\x00\x00\x00", 4, "key_length"},
		{QKM_KFT_QKD_GENERATION_TIME_STAMP, "\x00\x00\x00\x00\x00\x00\x00\x00", 8,
		 "generation_time_stamp"},
		{QKM_KFT_QKD_GENERATION_TIME_STAMP, "\x00\x00\x00\x01", 4, "generation_time_stamp"},
		{QKM_KFT_QKD_HASH_VALUE, "\x01", 1, "hash_value"},
		{QKM_KFT_QKD_MODULE_ID, "a b", 3, "qkd_module_id"},
		{QKM_KFT_QKD_MODULE_ID, "ab\0c", 4, "qkd_module_id"},
		{QKM_KFT_QKD_MODULE_ID, "", 0, "qkd_module_id"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct qkm_buf b;
		hdr(&b, QKM_KF_QKD);
		fstr(&b, QKM_KFT_QKD_KEY_ID, "k1");
		fld(&b, bad[i].tag, bad[i].v, bad[i].n);
		end(&b);
		expect_refused(b.p, b.len, QKM_EFORMAT, bad[i].field);
		qkm_buf_fini(&b);
	}
	struct qkm_buf b;
	char longname[QKM_NAME_MAX + 1];
	memset(longname, 'a', QKM_NAME_MAX);
	longname[QKM_NAME_MAX] = 0;
	hdr(&b, QKM_KF_QKD);
	fstr(&b, QKM_KFT_QKD_KEY_ID, longname);
	end(&b);
	expect_refused(b.p, b.len, QKM_EFORMAT, "qkd_key_id");
	qkm_buf_fini(&b);

	hdr(&b, QKM_KF_KMA);
	fld(&b, QKM_KFT_KMA_KEY_ID, (uint8_t[16]){0}, 16);
	fstr(&b, QKM_KFT_KMA_MATCHING_KMA_ID, "kma-B");
	end(&b);
	expect_refused(b.p, b.len, QKM_EFORMAT, "kma_key_id");
	qkm_buf_fini(&b);

	hdr(&b, QKM_KF_KMA);
	fld(&b, QKM_KFT_KMA_KEY_ID, some_id, 16);
	fld(&b, QKM_KFT_KMA_KEY_TYPE, "\x03", 1);
	fstr(&b, QKM_KFT_KMA_MATCHING_KMA_ID, "kma-B");
	end(&b);
	expect_refused(b.p, b.len, QKM_EFORMAT, "key_type");
	qkm_buf_fini(&b);

	/* A zero-length key_data is fine; a huge one is refused before any copy. */
	hdr(&b, QKM_KF_QKD);
	fstr(&b, QKM_KFT_QKD_KEY_ID, "k1");
	assert_int_equal(qkm_buf_put_u8(&b, QKM_KFT_KEY_DATA), 0);
	assert_int_equal(qkm_buf_put_u32(&b, QKM_KEYFILE_MAX_DATA + 1), 0);
	expect_refused(b.p, b.len, QKM_ETOOBIG, "key_data");
	qkm_buf_fini(&b);
}

static void test_too_many_hops_refused(void **state)
{
	struct qkm_buf b, nest;
	qkm_buf_init(&nest, 256, false);
	fld(&nest, QKM_KFT_KMA_KEY_ID, some_id, 16);
	fstr(&nest, QKM_KFT_KMA_MATCHING_KMA_ID, "kma-B");
	hdr(&b, QKM_KF_RELAYED);
	fld(&b, QKM_KFT_RELAY_KMA_KEY_METADATA, nest.p, nest.len);
	for (int h = 0; h < QKM_KEYFILE_MAX_HOPS + 1; h++)
		fld(&b, QKM_KFT_RELAY_HOP, "\x34\x00\x01\x01", 4);
	end(&b);
	expect_refused(b.p, b.len, QKM_EFORMAT, "relay");
	/* A hop field that holds a hop field of its own is refused too. */
	qkm_buf_fini(&b);
	hdr(&b, QKM_KF_RELAYED);
	fld(&b, QKM_KFT_RELAY_KMA_KEY_METADATA, nest.p, nest.len);
	fld(&b, QKM_KFT_RELAY_HOP, "\x36\x00\x00", 3);
	end(&b);
	expect_refused(b.p, b.len, QKM_EFORMAT, "relay");
	qkm_buf_fini(&b);
	qkm_buf_fini(&nest);
}

/* hash_value and key_length must agree with the data they describe. */
static void test_hash_mismatch_refused(void **state)
{
	for (size_t i = 0; i < NCASES; i++) {
		struct qkm_buf b;
		if (!cases[i].hash)
			continue;
		encode_case(&cases[i], &b);
		b.p[b.len - 1] ^= 1; /* last byte of key data */
		expect_refused(b.p, b.len, QKM_EMISMATCH, "hash_value");
		qkm_buf_fini(&b);
	}
	struct kcase c = {QKM_KF_KSA, 8, false, 0, false};
	struct qkm_keyfile kf;
	struct qkm_buf b;
	const char *ef;
	make(&kf, &c);
	kf.m.ksa.key_length = 65; /* not 8 * 8 */
	qkm_buf_init(&b, 4096, true);
	assert_int_equal(qkm_keyfile_encode(&kf, &b), QKM_EINVAL);
	kf.m.ksa.key_length = 64;
	assert_int_equal(qkm_keyfile_encode(&kf, &b), 0);
	/* Patch key_length in the bytes: the decoder refuses it by name. */
	for (size_t i = 6; i + 7 < b.len; i++)
		if (b.p[i] == QKM_KFT_KSA_KEY_LENGTH && b.p[i + 2] == 4 && b.p[i + 6] == 64) {
			b.p[i + 6] = 72;
			break;
		}
	expect_refused(b.p, b.len, QKM_EFORMAT, "key_length");
	qkm_buf_fini(&b);
	qkm_keyfile_fini(&kf);

	c = (struct kcase){QKM_KF_QKD, 8, true, 0, false};
	make(&kf, &c);
	kf.m.qkd.hash_value[0] ^= 1;
	assert_int_equal(qkm_keyfile_check(&kf, &ef), QKM_EMISMATCH);
	assert_string_equal(ef, "hash_value");
	qkm_keyfile_fini(&kf);
}

/* qkm_keyfile_encode_hashed trusts hash_value (the caller just computed it)
 * and writes the same bytes as qkm_keyfile_encode; the decoder still checks
 * the hash against the data, so a wrong trusted hash cannot get through. */
static void test_encode_hashed_trusts_hash(void **state)
{
	struct kcase c = {QKM_KF_QKD, 64, true, 0, false};
	struct qkm_keyfile kf, out;
	struct qkm_buf a, b;
	const char *ef;
	make(&kf, &c);
	qkm_buf_init(&a, 4096, true);
	qkm_buf_init(&b, 4096, true);
	assert_int_equal(qkm_keyfile_encode(&kf, &a), 0);
	assert_int_equal(qkm_keyfile_encode_hashed(&kf, &b), 0);
	assert_int_equal(a.len, b.len);
	assert_memory_equal(a.p, b.p, a.len);
	qkm_buf_reset(&b);
	kf.m.qkd.hash_value[0] ^= 1;
	assert_int_equal(qkm_keyfile_encode(&kf, &a), QKM_EMISMATCH);
	assert_int_equal(qkm_keyfile_encode_hashed(&kf, &b), 0);
	assert_int_equal(qkm_keyfile_decode(b.p, b.len, &out, &ef), QKM_EMISMATCH);
	assert_string_equal(ef, "hash_value");
	/* qkm_keyfile_decode_hashed (a relay node's) takes it as it is, the
	 * wrong hash included, for the destination to refuse; every other
	 * check runs: a truncated file is refused. */
	assert_int_equal(qkm_keyfile_decode_hashed(b.p, b.len, &out, &ef), 0);
	assert_memory_equal(out.m.qkd.hash_value, kf.m.qkd.hash_value, 32);
	assert_memory_equal(out.data->p, kf.data->p, kf.data->len);
	qkm_keyfile_fini(&out);
	assert_int_equal(qkm_keyfile_decode_hashed(b.p, b.len - 1, &out, &ef), QKM_ETRUNC);
	/* The other checks still run. */
	kf.m.qkd.qkd_key_id[0] = 0;
	qkm_buf_reset(&b);
	assert_int_equal(qkm_keyfile_encode_hashed(&kf, &b), QKM_EINVAL);
	assert_int_equal(b.len, 0);
	qkm_buf_fini(&a);
	qkm_buf_fini(&b);
	qkm_keyfile_fini(&kf);
}

/* The encoder checks mandatory fields and names and leaves out unchanged. */
static void test_encode_validates(void **state)
{
	struct qkm_buf b;
	struct qkm_keyfile kf;
	const char *ef;
	qkm_buf_init(&b, 4096, false);
	assert_int_equal(qkm_buf_put(&b, "pre", 3), 0);

	make(&kf, &cases[0]);
	kf.m.qkd.qkd_key_id[0] = 0;
	assert_int_equal(qkm_keyfile_encode(&kf, &b), QKM_EINVAL);
	assert_int_equal(qkm_keyfile_check(&kf, &ef), QKM_EINVAL);
	assert_string_equal(ef, "qkd_key_id");
	set_name(kf.m.qkd.qkd_key_id, "a b");
	assert_int_equal(qkm_keyfile_encode(&kf, &b), QKM_EINVAL);
	memset(kf.m.qkd.qkd_key_id, 'a', QKM_NAME_MAX); /* no NUL at all */
	assert_int_equal(qkm_keyfile_encode(&kf, &b), QKM_EINVAL);
	qkm_keyfile_fini(&kf);

	make(&kf, &cases[4]);
	memset(&kf.m.kma.kma_key_id, 0, sizeof(kf.m.kma.kma_key_id));
	assert_int_equal(qkm_keyfile_check(&kf, &ef), QKM_EINVAL);
	assert_string_equal(ef, "kma_key_id");
	qkm_keyfile_fini(&kf);

	make(&kf, &cases[7]);
	kf.m.relayed.hops[1].key_relay_encryption_method = 9;
	assert_int_equal(qkm_keyfile_check(&kf, &ef), QKM_EINVAL);
	assert_string_equal(ef, "key_relay_encryption_method");
	kf.m.relayed.hops[1].key_relay_encryption_method = QKM_RM_OTP;
	kf.m.relayed.n_hops = QKM_KEYFILE_MAX_HOPS + 1;
	assert_int_equal(qkm_keyfile_encode(&kf, &b), QKM_EINVAL);
	qkm_keyfile_fini(&kf);

	qkm_keyfile_init(&kf, 9);
	assert_int_equal(qkm_keyfile_encode(&kf, &b), QKM_EINVAL);

	/* Too small a buffer: its error, and nothing half-written. */
	struct qkm_buf small;
	qkm_buf_init(&small, 20, false);
	make(&kf, &cases[1]);
	assert_int_equal(qkm_keyfile_encode(&kf, &small), QKM_ETOOBIG);
	assert_int_equal(small.len, 0);
	qkm_keyfile_fini(&kf);
	qkm_buf_fini(&small);

	assert_int_equal(b.len, 3);
	qkm_buf_fini(&b);
}

static void json_expect(const char *text, int rc, const char *field)
{
	json_error_t jerr;
	json_t *j = json_loads(text, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &jerr);
	struct qkm_keyfile kf;
	const char *ef = NULL;
	size_t used = qkm_secure_in_use();
	assert_non_null(j);
	assert_int_equal(qkm_keyfile_from_json(j, &kf, &ef), rc);
	if (rc) {
		assert_null(kf.data);
		assert_int_equal(qkm_secure_in_use(), used);
		assert_non_null(ef);
		assert_string_equal(ef, field);
	} else {
		qkm_keyfile_fini(&kf);
	}
	json_decref(j);
}

/* The JSON view refuses what it would never write. */
static void test_json_strict(void **state)
{
#define QKD "{\"kind\":\"qkd-key\",\"version\":1,\"qkd_key_id\":\"k1\""
#define KMA "{\"kind\":\"kma-key\",\"version\":1,\"kma_key_id\":\"0102030405060708090a0b0c0d0e0f10\""
	json_expect(QKD "}", 0, NULL);
	json_expect(QKD ",\"colour\":\"red\"}", QKM_EFORMAT, "colour");
	json_expect(QKD ",\"kma_id\":\"x\"}", QKM_EFORMAT, "kma_id");
	json_expect("{\"kind\":\"qkd-key\",\"version\":2,\"qkd_key_id\":\"k1\"}", QKM_EVERSION,
		    "version");
	json_expect("{\"kind\":\"qkd-key\",\"qkd_key_id\":\"k1\"}", QKM_EFORMAT, "version");
	json_expect("{\"kind\":\"QKD-key\",\"version\":1,\"qkd_key_id\":\"k1\"}", QKM_EFORMAT,
		    "kind");
	json_expect("{\"kind\":\"qkd-key\",\"version\":1}", QKM_EFORMAT, "qkd_key_id");
	json_expect(QKD ",\"key_length\":0}", QKM_EFORMAT, "key_length");
	json_expect(QKD ",\"key_length\":4294967296}", QKM_EFORMAT, "key_length");
	json_expect(QKD ",\"key_length\":\"8\"}", QKM_EFORMAT, "key_length");
	json_expect(QKD ",\"generation_time_stamp\":\"2023-11-14T22:13:20.123456Z\"}", 0, NULL);
	json_expect(QKD ",\"generation_time_stamp\":\"2023-02-29T22:13:20.123456Z\"}", QKM_EFORMAT,
		    "generation_time_stamp");
	json_expect(QKD ",\"generation_time_stamp\":\"2023-11-14T22:13:20Z\"}", QKM_EFORMAT,
		    "generation_time_stamp");
	json_expect(QKD ",\"generation_time_stamp\":\"1970-01-01T00:00:00.000000Z\"}", QKM_EFORMAT,
		    "generation_time_stamp");
	json_expect(QKD ",\"generation_time_stamp\":\"2024-02-29T23:59:59.999999Z\"}", 0, NULL);
	json_expect(QKD ",\"hash_value\":\"00\"}", QKM_EFORMAT, "hash_value");
	json_expect(QKD ",\"key_data\":\"AAE=\",\"key_length\":16}", 0, NULL);
	json_expect(QKD ",\"key_data\":\"AAE=\",\"key_length\":8}", QKM_EFORMAT, "key_length");
	json_expect(QKD ",\"key_data\":\"AAF=\"}", QKM_EFORMAT, "key_data"); /* pad bits */
	json_expect(QKD ",\"key_data\":\"AAE\"}", QKM_EFORMAT, "key_data");
	json_expect(QKD ",\"key_data\":\"\"}", QKM_EFORMAT, "key_data");
	json_expect(QKD ",\"key_data\":\"A=E=\"}", QKM_EFORMAT, "key_data");
	/* SHA-256("\x00\x01") */
	json_expect(QKD ",\"key_data\":\"AAE=\",\"hash_value\":"
		    "\"b413f47d13ee2fe6c845b2ee141af81de858df4ec549a58b7970bb96645bc8d2\"}",
		    0, NULL);
	json_expect(QKD ",\"key_data\":\"AAI=\",\"hash_value\":"
		    "\"b413f47d13ee2fe6c845b2ee141af81de858df4ec549a58b7970bb96645bc8d2\"}",
		    QKM_EMISMATCH, "hash_value");
	json_expect(QKD ",\"key_data\":\"AAE=\",\"hash_value\":"
		    "\"B413F47D13EE2FE6C845B2EE141AF81DE858DF4EC549A58B7970BB96645BC8D2\"}",
		    QKM_EFORMAT, "hash_value");
	json_expect(KMA ",\"matching_kma_id\":\"kma-B\"}", 0, NULL);
	json_expect(KMA "}", QKM_EFORMAT, "matching_kma_id");
	json_expect(KMA ",\"matching_kma_id\":\"kma-B\",\"key_type\":\"ENC\"}", QKM_EFORMAT,
		    "key_type");
	json_expect("{\"kind\":\"kma-key\",\"version\":1,\"kma_key_id\":"
		    "\"0102030405060708090A0B0C0D0E0F10\",\"matching_kma_id\":\"b\"}",
		    QKM_EFORMAT, "kma_key_id");
	json_expect("{\"kind\":\"relayed-kma-key\",\"version\":1}", QKM_EFORMAT,
		    "kma_key_metadata");
#define REL "{\"kind\":\"relayed-kma-key\",\"version\":1,\"kma_key_metadata\":" \
	    "{\"kma_key_id\":\"0102030405060708090a0b0c0d0e0f10\",\"matching_kma_id\":\"b\"}"
	json_expect(REL "}", 0, NULL);
	json_expect(REL ",\"relay\":[{}]}", 0, NULL);
	json_expect(REL ",\"relay\":[]}", QKM_EFORMAT, "relay");
	json_expect(REL ",\"relay\":[1]}", QKM_EFORMAT, "relay");
	json_expect(REL ",\"relay\":[{\"key_relay_encryption_method\":\"xor\"}]}", QKM_EFORMAT,
		    "key_relay_encryption_method");
	json_expect(REL ",\"relay\":[{\"hop\":1}]}", QKM_EFORMAT, "hop");
	json_expect("{\"kind\":\"relayed-kma-key\",\"version\":1,\"kma_key_metadata\":"
		    "{\"matching_kma_id\":\"b\"}}",
		    QKM_EFORMAT, "kma_key_id");
	json_expect("{\"kind\":\"ksa-key\",\"version\":1,\"ksa_key_id\":"
		    "\"5f0c6a9e-2b1d-4c3e-9a8b-0123456789ab\"}",
		    0, NULL);
	json_expect("{\"kind\":\"ksa-key\",\"version\":1,\"ksa_key_id\":"
		    "\"5f0c6a9e2b1d4c3e9a8b0123456789ab\"}",
		    QKM_EFORMAT, "ksa_key_id");
	json_expect("{\"kind\":\"ksa-key\",\"version\":1,\"ksa_key_id\":"
		    "\"00000000-0000-0000-0000-000000000000\"}",
		    QKM_EFORMAT, "ksa_key_id");
	json_expect("{\"kind\":\"ksa-key\",\"version\":1,\"ksa_key_id\":"
		    "\"5f0c6a9e-2b1d-4c3e-9a8b-0123456789ab\",\"application_name\":\"a\\u0000b\"}",
		    QKM_EFORMAT, "application_name");
	json_expect("[]", QKM_EFORMAT, "kind");
#undef QKD
#undef KMA
#undef REL
}

static void test_names(void **state)
{
	enum qkm_key_type t;
	enum qkm_relay_method m;
	enum qkm_keyfile_kind k;
	assert_string_equal(qkm_key_type_name(QKM_KT_ENC), "enc");
	assert_string_equal(qkm_key_type_name(QKM_KT_DEC), "dec");
	assert_null(qkm_key_type_name(QKM_KT_NONE));
	assert_null(qkm_key_type_name((enum qkm_key_type)7));
	assert_string_equal(qkm_relay_method_name(QKM_RM_OTP), "otp");
	assert_string_equal(qkm_relay_method_name(QKM_RM_AES256GCM), "aes-256-gcm");
	assert_null(qkm_relay_method_name(QKM_RM_NONE));
	assert_int_equal(qkm_key_type_parse("dec", &t), 0);
	assert_int_equal(t, QKM_KT_DEC);
	assert_int_equal(qkm_key_type_parse("none", &t), QKM_EFORMAT);
	assert_int_equal(qkm_relay_method_parse("aes-256-gcm", &m), 0);
	assert_int_equal(m, QKM_RM_AES256GCM);
	assert_int_equal(qkm_relay_method_parse("OTP", &m), QKM_EFORMAT);
	assert_int_equal(qkm_keyfile_kind_parse("relayed-kma-key", &k), 0);
	assert_int_equal(k, QKM_KF_RELAYED);
	assert_string_equal(qkm_keyfile_kind_name(QKM_KF_KSA), "ksa-key");
}

static int group_setup(void **state) { return qkm_secret_heap_init(1u << 22); }

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_binary_roundtrip),
		cmocka_unit_test(test_json_roundtrip),
		cmocka_unit_test(test_json_names),
		cmocka_unit_test(test_json_time_truncated),
		cmocka_unit_test(test_every_truncation_refused),
		cmocka_unit_test(test_every_bitflip),
		cmocka_unit_test(test_version_refused),
		cmocka_unit_test(test_handbuilt_valid),
		cmocka_unit_test(test_duplicate_field_refused),
		cmocka_unit_test(test_out_of_order_refused),
		cmocka_unit_test(test_unknown_tag_refused),
		cmocka_unit_test(test_trailing_byte_refused),
		cmocka_unit_test(test_missing_mandatory_refused),
		cmocka_unit_test(test_bad_values_refused),
		cmocka_unit_test(test_too_many_hops_refused),
		cmocka_unit_test(test_hash_mismatch_refused),
		cmocka_unit_test(test_encode_hashed_trusts_hash),
		cmocka_unit_test(test_encode_validates),
		cmocka_unit_test(test_json_strict),
		cmocka_unit_test(test_names),
	};
	return cmocka_run_group_tests(tests, group_setup, NULL);
}
