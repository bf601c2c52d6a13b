/* test_etsi014.c - the ETSI GS QKD 014 codec (proto/etsi014.c): key requests
 * (R-SUP-3: length, number, application IDs; qkm extensions for R-SUP-4
 * security level and R-SUP-9 key combination), key-ID requests (R-SUP-7),
 * strict refusal of every malformed input with a message naming the field,
 * and the Status, Error and Key container documents read back with jansson. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <jansson.h>
#include <openssl/evp.h>

#include "core/buf.h"
#include "core/id.h"
#include "core/secret.h"
#include "proto/etsi014.h"

static const char U1[] = "550e8400-e29b-41d4-a716-446655440000";
static const char U2[] = "bc490419-7d60-487f-adc1-4ddcc177c139";

static int setup(void **state)
{
	(void)state;
	return qkm_secret_heap_init(1 << 22) == 0 ? 0 : -1;
}

static int req(const char *body, struct qkm_etsi_key_request *r, char *err)
{
	return qkm_etsi_parse_key_request(body, strlen(body), r, err, 256);
}

static int ids(const char *body, struct qkm_etsi_key_ids *k, char *err)
{
	return qkm_etsi_parse_key_ids(body, strlen(body), k, err, 256);
}

/* Refused with QKM_EINVAL and a message containing want. */
#define REFUSED_REQ(body, want)                                                        \
	do {                                                                           \
		struct qkm_etsi_key_request r_;                                        \
		char e_[256] = "";                                                     \
		assert_int_equal(req(body, &r_, e_), QKM_EINVAL);                      \
		if (!strstr(e_, want))                                                 \
			fail_msg("body %s: message \"%s\" lacks \"%s\"", body, e_, want); \
		assert_int_equal(r_.number, 1); /* no half-parsed result */            \
		assert_int_equal(r_.n_additional, 0);                                  \
	} while (0)

#define REFUSED_IDS(body, want)                                                        \
	do {                                                                           \
		struct qkm_etsi_key_ids *k_ = malloc(sizeof(*k_));                     \
		char e_[256] = "";                                                     \
		assert_non_null(k_);                                                   \
		assert_int_equal(ids(body, k_, e_), QKM_EINVAL);                       \
		if (!strstr(e_, want))                                                 \
			fail_msg("body %s: message \"%s\" lacks \"%s\"", body, e_, want); \
		assert_int_equal(k_->n, 0);                                            \
		free(k_);                                                              \
	} while (0)

/* --- POST enc_keys body (R-SUP-3) ------------------------------------------ */

static void test_request_defaults(void **state)
{
	struct qkm_etsi_key_request r;
	char err[256];
	assert_int_equal(qkm_etsi_parse_key_request(NULL, 0, &r, err, sizeof(err)), 0);
	assert_int_equal(r.number, 1);
	assert_int_equal(r.size, 0);
	assert_int_equal(r.n_additional, 0);
	assert_int_equal(r.level, QKM_LEVEL_ANY);
	assert_int_equal(r.combination, QKM_COMB_NONE);
	assert_int_equal(req("", &r, err), 0);
	assert_int_equal(r.number, 1);
	assert_int_equal(req(" \r\n", &r, err), 0);
	assert_int_equal(req("{}", &r, err), 0);
	assert_int_equal(r.number, 1);
	assert_int_equal(r.size, 0);
}

static void test_request_all_fields(void **state)
{
	struct qkm_etsi_key_request r;
	char err[256] = "";
	const char *body = "{\"number\": 3, \"size\": 4294967295,"
			   " \"additional_slave_SAE_IDs\": [\"sae-C\", \"sae_D.1:x\"],"
			   " \"extension_mandatory\": [{\"qkm_security_level\": \"its\"}],"
			   " \"extension_optional\": [{\"qkm_key_combination\": \"x25519\"},"
			   " {\"abc_route_type\": \"direct\", \"vendor_x\": {\"a\": [1]}}]}";
	assert_int_equal(req(body, &r, err), 0);
	assert_int_equal(r.number, 3);
	assert_true(r.size == 4294967295u);
	assert_int_equal(r.n_additional, 2);
	assert_string_equal(r.additional[0], "sae-C");
	assert_string_equal(r.additional[1], "sae_D.1:x");
	assert_int_equal(r.level, QKM_LEVEL_ITS);
	assert_int_equal(r.combination, QKM_COMB_X25519);

	assert_int_equal(req("{\"extension_optional\": [{\"qkm_security_level\": \"computational\","
			     " \"qkm_key_combination\": \"none\"}], \"extension_mandatory\": []}",
			     &r, err),
			 0);
	assert_int_equal(r.level, QKM_LEVEL_COMPUTATIONAL);
	assert_int_equal(r.combination, QKM_COMB_NONE);
	assert_int_equal(req("{\"additional_slave_SAE_IDs\": [], \"size\": 256}", &r, err), 0);
	assert_int_equal(r.n_additional, 0);
	assert_int_equal(r.size, 256);

	/* exactly QKM_ETSI_MAX_SAES additional slaves is fine */
	char big[2048] = "{\"additional_slave_SAE_IDs\": [";
	for (int i = 0; i < QKM_ETSI_MAX_SAES; i++) {
		char one[32];
		snprintf(one, sizeof(one), "%s\"s%d\"", i ? "," : "", i);
		strcat(big, one);
	}
	strcat(big, "]}");
	assert_int_equal(req(big, &r, err), 0);
	assert_int_equal(r.n_additional, QKM_ETSI_MAX_SAES);
	assert_string_equal(r.additional[15], "s15");
}

static void test_request_extensions_refused(void **state)
{
	/* unknown mandatory extension: refused naming it */
	REFUSED_REQ("{\"extension_mandatory\": [{\"abc_route_type\": \"direct\"}]}",
		    "abc_route_type");
	REFUSED_REQ("{\"extension_mandatory\": [{\"qkm_security_level\": \"its\","
		    " \"qkm_whatever\": 1}]}",
		    "qkm_whatever");
	/* known extension with a bad value: refused in either array */
	REFUSED_REQ("{\"extension_mandatory\": [{\"qkm_security_level\": \"ITS\"}]}",
		    "qkm_security_level");
	REFUSED_REQ("{\"extension_optional\": [{\"qkm_security_level\": 1}]}",
		    "qkm_security_level");
	REFUSED_REQ("{\"extension_optional\": [{\"qkm_key_combination\": \"x448\"}]}",
		    "qkm_key_combination");
	REFUSED_REQ("{\"extension_mandatory\": [{\"qkm_key_combination\": null}]}",
		    "qkm_key_combination");
	/* the same qkm extension twice, even across the two arrays */
	REFUSED_REQ("{\"extension_mandatory\": [{\"qkm_security_level\": \"its\"}],"
		    " \"extension_optional\": [{\"qkm_security_level\": \"its\"}]}",
		    "qkm_security_level given twice");
	REFUSED_REQ("{\"extension_optional\": [{\"qkm_key_combination\": \"none\"},"
		    " {\"qkm_key_combination\": \"x25519\"}]}",
		    "qkm_key_combination given twice");
	/* shapes */
	REFUSED_REQ("{\"extension_mandatory\": {\"qkm_security_level\": \"its\"}}",
		    "extension_mandatory must be an array of objects");
	REFUSED_REQ("{\"extension_optional\": [\"qkm_security_level\"]}",
		    "extension_optional must be an array of objects");
}

static void test_request_numbers_refused(void **state)
{
	REFUSED_REQ("{\"size\": 0}", "size must be a positive integer");
	REFUSED_REQ("{\"size\": -8}", "size must be a positive integer");
	REFUSED_REQ("{\"size\": 256.0}", "size must be a positive integer");
	REFUSED_REQ("{\"size\": 2.56e2}", "size must be a positive integer");
	REFUSED_REQ("{\"size\": \"256\"}", "size must be a positive integer");
	REFUSED_REQ("{\"size\": true}", "size must be a positive integer");
	REFUSED_REQ("{\"size\": null}", "size must be a positive integer");
	REFUSED_REQ("{\"size\": 4294967296}", "size must be at most 4294967295");
	REFUSED_REQ("{\"number\": 0}", "number must be a positive integer");
	REFUSED_REQ("{\"number\": [1]}", "number must be a positive integer");
	REFUSED_REQ("{\"number\": 1, \"size\": 9223372036854775807}", "size must be at most");
	/* beyond json_int_t: jansson refuses it while parsing */
	REFUSED_REQ("{\"number\": 99999999999999999999999}", "malformed JSON");
}

static void test_request_malformed(void **state)
{
	REFUSED_REQ("{", "malformed JSON");
	REFUSED_REQ("{\"number\": 1,}", "malformed JSON");
	REFUSED_REQ("{\"number\": 1} {}", "malformed JSON");
	REFUSED_REQ("[]", "must be a JSON object");
	REFUSED_REQ("[1, 2]", "must be a JSON object");
	REFUSED_REQ("\"number\"", "malformed JSON");
	REFUSED_REQ("{\"number\": 1, \"number\": 2}", "malformed JSON"); /* duplicate key */
	REFUSED_REQ("{\"numbr\": 1}", "unknown field \"numbr\"");
	REFUSED_REQ("{\"key_IDs\": []}", "unknown field \"key_IDs\"");
	REFUSED_REQ("{\"\\u00e9\\u0007\": 1}", "unknown field \"???\""); /* never echoed raw */

	/* invalid UTF-8 and an embedded NUL are refused by the parser */
	struct qkm_etsi_key_request r;
	char err[256];
	const char bad_utf8[] = "{\"size\xff\": 1}";
	assert_int_equal(qkm_etsi_parse_key_request(bad_utf8, sizeof(bad_utf8) - 1, &r, err,
						    sizeof(err)),
			 QKM_EINVAL);
	const char nul[] = "{\"size\": 8}\0";
	assert_int_equal(qkm_etsi_parse_key_request(nul, sizeof(nul), &r, err, sizeof(err)),
			 QKM_EINVAL);
	/* a body over 1 MiB is refused before parsing */
	size_t n = (1u << 20) + 1;
	char *huge = malloc(n);
	assert_non_null(huge);
	memset(huge, ' ', n);
	huge[0] = '{';
	huge[n - 1] = '}';
	assert_int_equal(qkm_etsi_parse_key_request(huge, n, &r, err, sizeof(err)), QKM_EINVAL);
	assert_non_null(strstr(err, "1 MiB"));
	assert_int_equal(qkm_etsi_parse_key_request(huge, n - 1, &r, err, sizeof(err)),
			 QKM_EINVAL); /* unterminated, but parsed */
	assert_non_null(strstr(err, "malformed JSON"));
	huge[n - 2] = '}';
	assert_int_equal(qkm_etsi_parse_key_request(huge, n - 1, &r, err, sizeof(err)), 0);
	free(huge);
	/* err may be absent */
	assert_int_equal(qkm_etsi_parse_key_request("{", 1, &r, NULL, 0), QKM_EINVAL);
}

static void test_request_saes_refused(void **state)
{
	char big[2048] = "{\"additional_slave_SAE_IDs\": [";
	for (int i = 0; i <= QKM_ETSI_MAX_SAES; i++) {
		char one[32];
		snprintf(one, sizeof(one), "%s\"s%d\"", i ? "," : "", i);
		strcat(big, one);
	}
	strcat(big, "]}");
	REFUSED_REQ(big, "more than 16");
	REFUSED_REQ("{\"additional_slave_SAE_IDs\": [\"a\", \"b\", \"a\"]}", "\"a\" given twice");
	REFUSED_REQ("{\"additional_slave_SAE_IDs\": [\"a b\"]}", "not a valid SAE ID");
	REFUSED_REQ("{\"additional_slave_SAE_IDs\": [\"\"]}", "not a valid SAE ID");
	REFUSED_REQ("{\"additional_slave_SAE_IDs\": [\"../x\"]}", "not a valid SAE ID");
	REFUSED_REQ("{\"additional_slave_SAE_IDs\": [\"a\\u0000b\"]}", "malformed JSON");
	REFUSED_REQ("{\"additional_slave_SAE_IDs\": "
		    "[\"0123456789012345678901234567890123456789012345678901234567890123\"]}",
		    "not a valid SAE ID"); /* 64 characters: one too many */
	REFUSED_REQ("{\"additional_slave_SAE_IDs\": [7]}", "array of strings");
	REFUSED_REQ("{\"additional_slave_SAE_IDs\": \"sae-C\"}", "array of strings");
}

/* --- GET enc_keys query ----------------------------------------------------- */

#define REFUSED_ENCQ(q, want)                                                          \
	do {                                                                           \
		struct qkm_etsi_key_request r_;                                        \
		char e_[256] = "";                                                     \
		assert_int_equal(qkm_etsi_parse_enc_query(q, &r_, e_, sizeof(e_)),    \
				 QKM_EINVAL);                                          \
		if (!strstr(e_, want))                                                 \
			fail_msg("query %s: message \"%s\" lacks \"%s\"", q, e_, want); \
	} while (0)

static void test_enc_query(void **state)
{
	struct qkm_etsi_key_request r;
	char err[256];
	assert_int_equal(qkm_etsi_parse_enc_query(NULL, &r, err, sizeof(err)), 0);
	assert_int_equal(r.number, 1);
	assert_int_equal(r.size, 0);
	assert_int_equal(qkm_etsi_parse_enc_query("", &r, err, sizeof(err)), 0);
	assert_int_equal(r.number, 1);
	assert_int_equal(qkm_etsi_parse_enc_query("number=2&size=256", &r, err, sizeof(err)), 0);
	assert_int_equal(r.number, 2);
	assert_int_equal(r.size, 256);
	assert_int_equal(qkm_etsi_parse_enc_query("size=4294967295", &r, err, sizeof(err)), 0);
	assert_true(r.size == 4294967295u);
	assert_int_equal(r.number, 1);
	assert_int_equal(qkm_etsi_parse_enc_query("size=%32%35%36&number=%31", &r, err,
						  sizeof(err)),
			 0); /* percent-encoded digits */
	assert_int_equal(r.size, 256);
	assert_int_equal(r.number, 1);

	REFUSED_ENCQ("number=2&number=3", "number given twice");
	REFUSED_ENCQ("size=8&size=8", "size given twice");
	REFUSED_ENCQ("count=2", "unknown query parameter \"count\"");
	REFUSED_ENCQ("number=2&key_ID=x", "unknown query parameter \"key_ID\"");
	REFUSED_ENCQ("Number=2", "unknown query parameter");
	REFUSED_ENCQ("number", "has no value");
	REFUSED_ENCQ("number=", "number must not be empty");
	REFUSED_ENCQ("number=2&", "empty query parameter");
	REFUSED_ENCQ("&number=2", "empty query parameter");
	REFUSED_ENCQ("number=2&&size=8", "empty query parameter");
	REFUSED_ENCQ("number=0", "number must be a positive integer");
	REFUSED_ENCQ("number=-1", "number must be a positive integer");
	REFUSED_ENCQ("number=+1", "number must be a positive integer");
	REFUSED_ENCQ("number=%2B1", "number must be a positive integer");
	REFUSED_ENCQ("number= 1", "number must be a positive integer");
	REFUSED_ENCQ("number=1%20", "number must be a positive integer");
	REFUSED_ENCQ("number=1.0", "number must be a positive integer");
	REFUSED_ENCQ("number=0x10", "number must be a positive integer");
	REFUSED_ENCQ("size=4294967296", "size must be at most 4294967295");
	REFUSED_ENCQ("size=99999999999999999999999999", "size must be at most");
	REFUSED_ENCQ("size=%", "invalid percent escape");
	REFUSED_ENCQ("size=%3", "invalid percent escape");
	REFUSED_ENCQ("size=%zz", "invalid percent escape");
	REFUSED_ENCQ("size=8%00", "must not contain %00");
	REFUSED_ENCQ("size=00000000000000000000000000000000000000000000000000000000000000008",
		     "size is too long");
}

/* --- dec_keys (R-SUP-7) --------------------------------------------------- */

static void test_dec_query(void **state)
{
	struct qkm_etsi_key_ids *k = malloc(sizeof(*k));
	struct qkm_id want;
	char err[256], q[128];
	assert_non_null(k);
	assert_int_equal(qkm_id_parse(U1, &want), 0);
	snprintf(q, sizeof(q), "key_ID=%s", U1);
	assert_int_equal(qkm_etsi_parse_dec_query(q, k, err, sizeof(err)), 0);
	assert_int_equal(k->n, 1);
	assert_true(qkm_id_eq(&k->ids[0], &want));
	assert_int_equal(qkm_etsi_parse_dec_query("key_ID=550E8400-E29B-41D4-A716-446655440000",
						  k, err, sizeof(err)),
			 0); /* either case */
	assert_true(qkm_id_eq(&k->ids[0], &want));
	assert_int_equal(qkm_etsi_parse_dec_query("key_ID=550e8400%2De29b-41d4-a716-446655440000",
						  k, err, sizeof(err)),
			 0);
	assert_true(qkm_id_eq(&k->ids[0], &want));

	const char *bad[][2] = {
		{NULL, "key_ID is required"},
		{"", "key_ID is required"},
		{"key_ID=", "key_ID must not be empty"},
		{"key_ID=550e8400e29b41d4a716446655440000", "must be a UUID"},
		{"key_ID=550e8400-e29b-41d4-a716-44665544000", "must be a UUID"},
		{"key_ID=550e8400-e29b-41d4-a716-4466554400000", "must be a UUID"},
		{"key_ID=550e8400-e29b-41d4-a716-44665544000g", "must be a UUID"},
		{"key_ID=550e8400-e29b-41d4a-716-446655440000", "must be a UUID"},
		{"key_ID=+50e8400-e29b-41d4-a716-446655440000", "must be a UUID"},
		{"key_ID=%20550e8400-e29b-41d4-a716-44665544000", "must be a UUID"},
		{"key_ID=550e8400-e29b-41d4-a716-446655440000&key_ID="
		 "550e8400-e29b-41d4-a716-446655440000",
		 "key_ID given twice"},
		{"key_ID=550e8400-e29b-41d4-a716-446655440000&number=1", "unknown query parameter"},
		{"key_id=550e8400-e29b-41d4-a716-446655440000", "unknown query parameter"},
		{"key_ID=550e8400-e29b-41d4-a716-4466554400%0", "invalid percent escape"},
		{"key_ID=%00", "must not contain %00"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = 0;
		k->n = 99;
		assert_int_equal(qkm_etsi_parse_dec_query(bad[i][0], k, err, sizeof(err)),
				 QKM_EINVAL);
		if (!strstr(err, bad[i][1]))
			fail_msg("query %s: message \"%s\" lacks \"%s\"", bad[i][0], err,
				 bad[i][1]);
		assert_int_equal(k->n, 0);
	}
	free(k);
}

static void test_key_ids_good(void **state)
{
	struct qkm_etsi_key_ids *k = malloc(sizeof(*k));
	struct qkm_id a, b;
	char err[256] = "", body[512];
	assert_non_null(k);
	assert_int_equal(qkm_id_parse(U1, &a), 0);
	assert_int_equal(qkm_id_parse(U2, &b), 0);
	snprintf(body, sizeof(body),
		 "{\"key_IDs\": [{\"key_ID\": \"%s\"}, {\"key_ID\": \"BC490419-7D60-487F-ADC1-"
		 "4DDCC177C139\", \"key_ID_extension\": {\"x\": 1}}],"
		 " \"key_IDs_extension\": {\"y\": [2]}}",
		 U1);
	assert_int_equal(ids(body, k, err), 0);
	assert_int_equal(k->n, 2);
	assert_true(qkm_id_eq(&k->ids[0], &a));
	assert_true(qkm_id_eq(&k->ids[1], &b));

	/* QKM_ETSI_MAX_IDS distinct IDs: accepted, order kept */
	size_t cap = 64 + (size_t)QKM_ETSI_MAX_IDS * 60;
	char *big = malloc(cap), *p = big;
	assert_non_null(big);
	p += sprintf(p, "{\"key_IDs\":[");
	for (int i = 0; i < QKM_ETSI_MAX_IDS; i++)
		p += sprintf(p, "%s{\"key_ID\":\"00000000-0000-4000-8000-%012x\"}", i ? "," : "",
			     i);
	strcpy(p, "]}");
	assert_int_equal(ids(big, k, err), 0);
	assert_int_equal(k->n, QKM_ETSI_MAX_IDS);
	assert_int_equal(k->ids[1023].b[15], 0xff);
	assert_int_equal(k->ids[1023].b[14], 0x03);
	/* one more: refused */
	p = big + strlen(big) - 2;
	sprintf(p, ",{\"key_ID\":\"%s\"}]}", U1);
	REFUSED_IDS(big, "more than 1024");
	free(big);
	free(k);
}

static void test_key_ids_refused(void **state)
{
	char body[512];
	REFUSED_IDS("", "key_IDs is required");
	REFUSED_IDS("{}", "key_IDs is required");
	REFUSED_IDS("{\"key_IDs\": []}", "key_IDs must not be empty");
	REFUSED_IDS("{\"key_IDs\": {}}", "array of objects");
	REFUSED_IDS("{\"key_IDs\": [\"550e8400-e29b-41d4-a716-446655440000\"]}",
		    "array of objects");
	REFUSED_IDS("{\"key_IDs\": [{}]}", "key_IDs[0]: key_ID is required");
	REFUSED_IDS("{\"key_IDs\": [{\"key_ID\": 5}]}", "key_IDs[0]: key_ID must be a UUID");
	REFUSED_IDS("{\"key_IDs\": [{\"key_ID\": \"550e8400e29b41d4a716446655440000\"}]}",
		    "must be a UUID");
	REFUSED_IDS("{\"key_IDs\": [{\"key_ID\": \"{550e8400-e29b-41d4-a716-446655440000}\"}]}",
		    "must be a UUID");
	REFUSED_IDS("{\"key_IDs\": [{\"key_ID\": \" 550e8400-e29b-41d4-a716-44665544000\"}]}",
		    "must be a UUID");
	REFUSED_IDS("{\"key_IDs\": [{\"key_ID\": \"550e8400-e29b-41d4-a716-44665544000\\u0000\"}]}",
		    "malformed JSON");
	REFUSED_IDS("{\"key_IDs\": [{\"key_ID\": \"550e8400-e29b-41d4-a716-446655440000\","
		    " \"key\": \"AAAA\"}]}",
		    "key_IDs[0]: unknown field \"key\"");
	REFUSED_IDS("{\"key_IDs\": [{\"key_ID\": \"550e8400-e29b-41d4-a716-446655440000\","
		    " \"key_ID_extension\": 1}]}",
		    "key_ID_extension must be an object");
	REFUSED_IDS("{\"key_IDs\": [{\"key_ID\": \"550e8400-e29b-41d4-a716-446655440000\"}],"
		    " \"key_IDs_extension\": []}",
		    "key_IDs_extension must be an object");
	REFUSED_IDS("{\"key_IDs\": [{\"key_ID\": \"550e8400-e29b-41d4-a716-446655440000\"}],"
		    " \"number\": 1}",
		    "unknown field \"number\"");
	REFUSED_IDS("{\"key_IDs\": [{\"key_ID\": \"550e8400-e29b-41d4-a716-446655440000\","
		    " \"key_ID\": \"bc490419-7d60-487f-adc1-4ddcc177c139\"}]}",
		    "malformed JSON"); /* duplicate member */
	REFUSED_IDS("{\"key_IDs\": [{\"key_ID\": \"550e8400-e29b-41d4-a716-446655440000\"}",
		    "malformed JSON");
	REFUSED_IDS("[{\"key_ID\": \"550e8400-e29b-41d4-a716-446655440000\"}]",
		    "must be a JSON object");
	/* duplicates, in any case and position */
	snprintf(body, sizeof(body),
		 "{\"key_IDs\": [{\"key_ID\": \"%s\"}, {\"key_ID\": \"%s\"},"
		 " {\"key_ID\": \"550E8400-E29B-41D4-A716-446655440000\"}]}",
		 U1, U2);
	REFUSED_IDS(body, "key_ID 550e8400-e29b-41d4-a716-446655440000 given twice");
}

/* --- documents ------------------------------------------------------------ */

static json_t *must_load(const char *s, size_t n)
{
	json_error_t je;
	json_t *j = json_loadb(s, n, JSON_REJECT_DUPLICATES, &je);
	if (!j)
		fail_msg("generated JSON does not parse: %s: %.*s", je.text, (int)n, s);
	return j;
}

static void test_status_json(void **state)
{
	struct qkm_etsi_status s = {
		.source_KME_ID = "node-A",
		.target_KME_ID = "node-B",
		.master_SAE_ID = "sae-1",
		.slave_SAE_ID = "sae-2",
		.key_size = 256,
		.stored_key_count = 25000,
		.max_key_count = 100000,
		.max_key_per_request = 128,
		.max_key_size = 1024,
		.min_key_size = 64,
		.max_SAE_ID_count = 16,
	};
	char *t = qkm_etsi_status_json(&s);
	assert_non_null(t);
	json_t *j = must_load(t, strlen(t));
	const char *strs[][2] = {{"source_KME_ID", "node-A"},
				 {"target_KME_ID", "node-B"},
				 {"master_SAE_ID", "sae-1"},
				 {"slave_SAE_ID", "sae-2"}};
	for (int i = 0; i < 4; i++) {
		json_t *v = json_object_get(j, strs[i][0]);
		assert_true(json_is_string(v));
		assert_string_equal(json_string_value(v), strs[i][1]);
	}
	const struct {
		const char *k;
		json_int_t v;
	} ints[] = {{"key_size", 256},		   {"stored_key_count", 25000},
		    {"max_key_count", 100000},	   {"max_key_per_request", 128},
		    {"max_key_size", 1024},	   {"min_key_size", 64},
		    {"max_SAE_ID_count", 16}};
	for (size_t i = 0; i < sizeof(ints) / sizeof(ints[0]); i++) {
		json_t *v = json_object_get(j, ints[i].k);
		if (!json_is_integer(v))
			fail_msg("%s is not an integer", ints[i].k);
		assert_true(json_integer_value(v) == ints[i].v);
	}
	assert_int_equal(json_object_size(j), 11);
	json_decref(j);
	free(t);

	s.stored_key_count = UINT64_MAX; /* clamped, never negative */
	t = qkm_etsi_status_json(&s);
	assert_non_null(t);
	j = must_load(t, strlen(t));
	assert_true(json_integer_value(json_object_get(j, "stored_key_count")) == INT64_MAX);
	json_decref(j);
	free(t);
}

static void test_error_json(void **state)
{
	char *t = qkm_etsi_error_json("size must be a positive integer", NULL);
	assert_non_null(t);
	json_t *j = must_load(t, strlen(t));
	assert_int_equal(json_object_size(j), 1);
	assert_string_equal(json_string_value(json_object_get(j, "message")),
			    "size must be a positive integer");
	json_decref(j);
	free(t);

	t = qkm_etsi_error_json("not enough key material", "pool A-B holds 3 keys");
	assert_non_null(t);
	j = must_load(t, strlen(t));
	assert_int_equal(json_object_size(j), 2);
	assert_string_equal(json_string_value(json_object_get(j, "message")),
			    "not enough key material");
	json_t *d = json_object_get(j, "details");
	assert_true(json_is_array(d));
	assert_int_equal(json_array_size(d), 1);
	assert_true(json_is_object(json_array_get(d, 0)));
	assert_string_equal(json_string_value(json_object_get(json_array_get(d, 0), "reason")),
			    "pool A-B holds 3 keys");
	json_decref(j);
	free(t);

	/* a message cut inside a UTF-8 character still yields a valid document */
	t = qkm_etsi_error_json("bad \xc3", "quote\" \\ \n");
	assert_non_null(t);
	j = must_load(t, strlen(t));
	assert_string_equal(json_string_value(json_object_get(j, "message")), "bad ?");
	assert_string_equal(
		json_string_value(json_object_get(json_array_get(json_object_get(j, "details"), 0),
						  "reason")),
		"quote\" \\ \n");
	json_decref(j);
	free(t);
}

static void check_b64(const char *s, const uint8_t *want, size_t n)
{
	size_t sl = strlen(s);
	assert_int_equal(sl, 4 * ((n + 2) / 3));
	assert_null(strchr(s, '\n'));
	uint8_t *dec = malloc(sl + 1);
	assert_non_null(dec);
	int d = EVP_DecodeBlock(dec, (const uint8_t *)s, (int)sl);
	assert_true(d >= 0);
	size_t pad = (sl && s[sl - 1] == '=') + (sl > 1 && s[sl - 2] == '=');
	assert_int_equal((size_t)d - pad, n);
	assert_memory_equal(dec, want, n);
	free(dec);
}

static void test_keys_json(void **state)
{
	enum { N = 4 };
	static const size_t lens[N] = {32, 1, 2, 100000}; /* padding 1, 2, 2 and multi-chunk */
	uint8_t *k[N];
	struct qkm_id id[N];
	for (int i = 0; i < N; i++) {
		k[i] = malloc(lens[i]);
		assert_non_null(k[i]);
		for (size_t j = 0; j < lens[i]; j++)
			k[i][j] = (uint8_t)(j * 7 + i + (j >> 8));
		assert_int_equal(qkm_id_uuid7(&id[i], qkm_now_ns()), 0);
	}
	struct qkm_buf b;
	qkm_buf_init(&b, 1 << 20, true);
	assert_int_equal(qkm_buf_put(&b, "HTTP", 4), 0); /* appends after what is there */
	assert_int_equal(qkm_etsi_keys_json(&b, N, id, (const uint8_t *const *)k, lens), 0);
	assert_memory_equal(b.p, "HTTP", 4);
	json_t *j = must_load((const char *)b.p + 4, b.len - 4);
	assert_int_equal(json_object_size(j), 1);
	json_t *keys = json_object_get(j, "keys");
	assert_true(json_is_array(keys));
	assert_int_equal(json_array_size(keys), N);
	for (size_t i = 0; i < N; i++) {
		json_t *o = json_array_get(keys, i);
		char u[37];
		assert_int_equal(json_object_size(o), 2);
		assert_true(json_is_string(json_object_get(o, "key_ID")));
		assert_true(json_is_string(json_object_get(o, "key")));
		qkm_id_uuid_str(&id[i], u);
		assert_string_equal(json_string_value(json_object_get(o, "key_ID")), u);
		check_b64(json_string_value(json_object_get(o, "key")), k[i], lens[i]);
	}
	json_decref(j);

	/* an empty container */
	qkm_buf_reset(&b);
	assert_int_equal(qkm_etsi_keys_json(&b, 0, NULL, NULL, NULL), 0);
	assert_int_equal(b.len, 11);
	assert_memory_equal(b.p, "{\"keys\":[]}", 11);

	/* too small a buffer: error, and nothing partial is left behind */
	struct qkm_buf small;
	qkm_buf_init(&small, 200, true);
	assert_int_equal(qkm_buf_put(&small, "x", 1), 0);
	assert_int_equal(qkm_etsi_keys_json(&small, N, id, (const uint8_t *const *)k, lens),
			 QKM_ETOOBIG);
	assert_int_equal(small.len, 1);
	qkm_buf_fini(&small);

	/* key material never goes into an ordinary heap buffer */
	struct qkm_buf plain;
	qkm_buf_init(&plain, 1 << 20, false);
	assert_int_equal(qkm_etsi_keys_json(&plain, 1, id, (const uint8_t *const *)k, lens),
			 QKM_EINVAL);
	assert_int_equal(plain.len, 0);
	qkm_buf_fini(&plain);

	qkm_buf_fini(&b);
	for (int i = 0; i < N; i++)
		free(k[i]);
}

/* An exactly sized buffer is enough (the encoder's scratch NUL never needs
 * room past the end of the document). */
static void test_keys_json_exact_fit(void **state)
{
	uint8_t key[32] = {1, 2, 3};
	const uint8_t *kp[1] = {key};
	size_t len[1] = {sizeof(key)};
	struct qkm_id id = {{0}};
	struct qkm_buf b;
	size_t want = strlen("{\"keys\":[{\"key_ID\":\"\",\"key\":\"\"}]}") + 36 + 44;
	qkm_buf_init(&b, want, true);
	assert_int_equal(qkm_etsi_keys_json(&b, 1, &id, kp, len), 0);
	assert_int_equal(b.len, want);
	qkm_buf_fini(&b);
}

/* Keys back to back in one run give the same document as the same keys
 * listed one by one, and qkm_etsi_keys_json_size always leaves room. */
static void test_keys_json_run(void **state)
{
	enum { N = 5 };
	static const size_t sizes[] = {1, 8, 32, 33, 1024};
	for (size_t z = 0; z < sizeof(sizes) / sizeof(sizes[0]); z++) {
		size_t len = sizes[z];
		uint8_t run[N * 1024];
		const uint8_t *kp[N];
		size_t lens[N];
		struct qkm_id id[N];
		for (size_t i = 0; i < N * len; i++)
			run[i] = (uint8_t)(i * 7 + z);
		for (int i = 0; i < N; i++) {
			memset(id[i].b, i + 1, QKM_ID_LEN);
			kp[i] = run + i * len;
			lens[i] = len;
		}
		struct qkm_buf a, b;
		qkm_buf_init(&a, qkm_etsi_keys_json_size(N, len), true);
		qkm_buf_init(&b, qkm_etsi_keys_json_size(N, len), true);
		assert_int_equal(qkm_etsi_keys_json_run(&a, N, id, run, len), 0);
		assert_int_equal(qkm_etsi_keys_json(&b, N, id, kp, lens), 0);
		assert_int_equal(a.len, b.len);
		assert_memory_equal(a.p, b.p, a.len);
		assert_true(a.len <= qkm_etsi_keys_json_size(N, len));
		qkm_buf_fini(&a);
		qkm_buf_fini(&b);
	}
	struct qkm_buf c;
	qkm_buf_init(&c, 64, true);
	assert_int_equal(qkm_etsi_keys_json_run(&c, 1, NULL, NULL, 8), QKM_EINVAL);
	qkm_buf_fini(&c);
}

/* R-ACQ-5, the node as a client of a QKD device's key API: a Key container
 * written by qkm_etsi_keys_json reads back byte for byte into the secure
 * buffer; a device's extensions and escapes are accepted; anything else
 * is refused with no key left behind. */
static void test_parse_keys(void **state)
{
	(void)state;
	struct qkm_etsi_keyset *ks = calloc(1, sizeof(*ks));
	struct qkm_buf b;
	struct qkm_id ids[3];
	uint8_t k0[32], k1[1], k2[5];
	const uint8_t *keys[3] = {k0, k1, k2};
	size_t lens[3] = {sizeof(k0), sizeof(k1), sizeof(k2)};
	char err[256];
	assert_non_null(ks);
	for (int i = 0; i < 3; i++)
		assert_int_equal(qkm_id_uuid7(&ids[i], qkm_now_ns()), 0);
	for (size_t i = 0; i < sizeof(k0); i++)
		k0[i] = (uint8_t)(i * 7 + 1);
	k1[0] = 0xff;
	memcpy(k2, "\x00\x01\x02\x03\x04", 5);
	qkm_buf_init(&b, 1 << 16, true);
	assert_int_equal(qkm_etsi_keys_json(&b, 3, ids, keys, lens), 0);
	qkm_etsi_keyset_init(ks);
	if (qkm_etsi_parse_keys((const char *)b.p, b.len, ks, err, sizeof(err)))
		fail_msg("%s", err);
	assert_true(ks->data.secure);
	assert_int_equal(ks->n, 3);
	for (size_t i = 0; i < 3; i++) {
		assert_true(qkm_id_eq(&ks->ids[i], &ids[i]));
		assert_int_equal(ks->len[i], lens[i]);
		assert_memory_equal(ks->data.p + ks->off[i], keys[i], lens[i]);
	}
	qkm_buf_fini(&b);

	/* Extensions of any shape, escapes a device's encoder may write. */
	static const char ext[] =
		" {\"key_container_extension\": {\"a\": [1, -2.5e3, true, null, {\"b\": \"\\u00e9\"}]},\n"
		"  \"keys\": [{\"key_ID_extension\": false, \"key\": \"AAEC\\/w==\","
		" \"key_ID\": \"550e8400-e29b-41d4-a716-446655440000\","
		" \"key_extension\": [[[]]]}]} \n";
	if (qkm_etsi_parse_keys(ext, strlen(ext), ks, err, sizeof(err)))
		fail_msg("%s", err);
	assert_int_equal(ks->n, 1);
	assert_int_equal(ks->len[0], 4);
	assert_memory_equal(ks->data.p, "\x00\x01\x02\xff", 4);
	static const char empty[] = "{\"keys\": []}";
	assert_int_equal(qkm_etsi_parse_keys(empty, strlen(empty), ks, err, sizeof(err)), 0);
	assert_int_equal(ks->n, 0);

	static const struct {
		const char *body, *why;
	} bad[] = {
		{"", "not a JSON object"},
		{"[]", "not a JSON object"},
		{"{}", "no keys member"},
		{"{\"keys\": {}}", "keys must be one array"},
		{"{\"keys\": [], \"keys\": []}", "keys must be one array"},
		{"{\"keys\": [{\"key\": \"AAAA\"}]}", "keys[0] lacks key_ID"},
		{"{\"keys\": [{\"key_ID\": \"550e8400-e29b-41d4-a716-446655440000\"}]}",
		 "keys[0] lacks key"},
		{"{\"keys\": [{\"key_ID\": \"550e8400e29b41d4a716446655440000\", \"key\": \"AAAA\"}]}",
		 "key_ID must be one UUID"},
		{"{\"keys\": [{\"key_ID\": \"550e8400-e29b-41d4-a716-446655440000\", \"key\": \"AAA\"}]}",
		 "key must be one non-empty base64 key"},
		{"{\"keys\": [{\"key_ID\": \"550e8400-e29b-41d4-a716-446655440000\", \"key\": \"A*AA\"}]}",
		 "key must be one non-empty base64 key"},
		{"{\"keys\": [{\"key_ID\": \"550e8400-e29b-41d4-a716-446655440000\", \"key\": \"\"}]}",
		 "key must be one non-empty base64 key"},
		{"{\"keys\": [{\"key_ID\": \"550e8400-e29b-41d4-a716-446655440000\", \"key\": 5}]}",
		 "key must be one non-empty base64 key"},
		{"{\"keys\": [{\"key_ID\": \"550e8400-e29b-41d4-a716-446655440000\", \"key\": \"AAAA\","
		 " \"key\": \"AAAA\"}]}",
		 "key must be one"},
		{"{\"keys\": []} {}", "data after the object"},
		{"{\"keys\": [], \"x\": tru}", "malformed JSON"},
		{"{\"keys\": [], \"x\": [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}",
		 "malformed JSON"},
		{"{\"keys\": [{\"key_ID\": \"550e8400-e29b-41d4-a716-446655440000\", \"key\": \"AAAA\"}",
		 "malformed keys"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = 0;
		int rc = qkm_etsi_parse_keys(bad[i].body, strlen(bad[i].body), ks, err, sizeof(err));
		if (rc != QKM_EINVAL || !strstr(err, bad[i].why))
			fail_msg("%s: rc %d, '%s', want '%s'", bad[i].body, rc, err, bad[i].why);
		assert_int_equal(ks->n, 0);
		assert_int_equal(ks->data.len, 0);
	}
	qkm_etsi_keyset_fini(ks);
	free(ks);
}

/* The client's requests and the Status it reads. */
static void test_client_bodies_and_status(void **state)
{
	(void)state;
	struct qkm_id ids[2];
	char err[256];
	assert_int_equal(qkm_id_parse(U1, &ids[0]), 0);
	assert_int_equal(qkm_id_parse(U2, &ids[1]), 0);
	char *enc = qkm_etsi_enc_body(16, 4096);
	assert_string_equal(enc, "{\"number\":16,\"size\":4096}");
	struct qkm_etsi_key_request kr;
	assert_int_equal(qkm_etsi_parse_key_request(enc, strlen(enc), &kr, err, sizeof(err)), 0);
	assert_int_equal(kr.number, 16);
	assert_int_equal(kr.size, 4096);
	free(enc);
	char *dec = qkm_etsi_dec_body(ids, 2);
	struct qkm_etsi_key_ids *got = malloc(sizeof(*got));
	assert_non_null(got);
	assert_int_equal(qkm_etsi_parse_key_ids(dec, strlen(dec), got, err, sizeof(err)), 0);
	assert_int_equal(got->n, 2);
	assert_true(qkm_id_eq(&got->ids[1], &ids[1]));
	free(got);
	free(dec);

	struct qkm_etsi_status st = {.key_size = 256, .stored_key_count = 7, .max_key_count = 100,
				     .max_key_per_request = 1024, .max_key_size = 256,
				     .min_key_size = 256};
	snprintf(st.source_KME_ID, sizeof(st.source_KME_ID), "A-B:A");
	snprintf(st.target_KME_ID, sizeof(st.target_KME_ID), "A-B:B");
	snprintf(st.master_SAE_ID, sizeof(st.master_SAE_ID), "A");
	snprintf(st.slave_SAE_ID, sizeof(st.slave_SAE_ID), "B");
	char *js = qkm_etsi_status_json(&st);
	struct qkm_etsi_status back;
	assert_int_equal(qkm_etsi_parse_status(js, strlen(js), &back, err, sizeof(err)), 0);
	assert_memory_equal(&back, &st, sizeof(st));
	free(js);
	static const char bad[] = "{\"source_KME_ID\": \"a b\"}";
	assert_int_equal(qkm_etsi_parse_status(bad, strlen(bad), &back, err, sizeof(err)),
			 QKM_EINVAL);
	assert_non_null(strstr(err, "source_KME_ID"));

	char sae[QKM_NAME_MAX], what[16];
	const char *msg;
	assert_int_equal(qkm_etsi_route("/api/v1/keys/B/enc_keys", sae, what, &msg), 0);
	assert_string_equal(sae, "B");
	assert_string_equal(what, "enc_keys");
	assert_int_equal(qkm_etsi_route("/api/v2/keys/B/enc_keys", sae, what, &msg), 404);
	assert_int_equal(qkm_etsi_route("/api/v1/keys/a b/status", sae, what, &msg), 400);
	assert_int_equal(qkm_etsi_route("/api/v1/keys/B/keys", sae, what, &msg), 404);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_request_defaults),
		cmocka_unit_test(test_request_all_fields),
		cmocka_unit_test(test_request_extensions_refused),
		cmocka_unit_test(test_request_numbers_refused),
		cmocka_unit_test(test_request_malformed),
		cmocka_unit_test(test_request_saes_refused),
		cmocka_unit_test(test_enc_query),
		cmocka_unit_test(test_dec_query),
		cmocka_unit_test(test_key_ids_good),
		cmocka_unit_test(test_key_ids_refused),
		cmocka_unit_test(test_status_json),
		cmocka_unit_test(test_error_json),
		cmocka_unit_test(test_keys_json),
		cmocka_unit_test(test_keys_json_exact_fit),
		cmocka_unit_test(test_keys_json_run),
		cmocka_unit_test(test_parse_keys),
		cmocka_unit_test(test_client_bodies_and_status),
	};
	return cmocka_run_group_tests(tests, setup, NULL);
}
