/* fuzz_etsi014.c - libFuzzer target for the ETSI GS QKD 014 codec
 * (proto/etsi014.c): the input goes to both body parsers as bytes and to
 * both query parsers as a NUL-terminated string. Any refusal is fine if it
 * says why; a crash, leak or broken invariant is not. Accepted key IDs are
 * re-formatted (as a POST body and as a GET query) and must parse back to
 * the same IDs; they also go through the Key container writer. The client
 * side (a node reading a QKD device) reads the input as a Key container,
 * whose keys written back must read back the same, and as a Status. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "core/id.h"
#include "core/secret.h"
#include "proto/etsi014.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int cond)
{
	if (!cond)
		abort();
}

static struct qkm_etsi_key_ids ids, ids2;
static struct qkm_etsi_keyset ks, ks2;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	check(qkm_secret_heap_init(1 << 26) == 0);
	qkm_etsi_keyset_init(&ks);
	qkm_etsi_keyset_init(&ks2);
	return 0;
}

static void check_request(int rc, const struct qkm_etsi_key_request *r, const char *err)
{
	check(rc == 0 || rc == QKM_EINVAL);
	if (rc) {
		check(err[0] != 0); /* every refusal explains itself */
		check(r->number == 1 && r->size == 0 && r->n_additional == 0);
		return;
	}
	check(r->number >= 1);
	check(r->n_additional <= QKM_ETSI_MAX_SAES);
	for (size_t i = 0; i < r->n_additional; i++) {
		check(qkm_name_valid(r->additional[i]));
		for (size_t j = 0; j < i; j++)
			check(strcmp(r->additional[i], r->additional[j]) != 0);
	}
	check(r->level <= QKM_LEVEL_COMPUTATIONAL && r->combination <= QKM_COMB_X25519);
}

/* The parsed IDs, written back as the client would, parse to the same IDs;
 * and the Key container over them (keys cut from the input) is written. */
static void roundtrip_ids(const struct qkm_etsi_key_ids *k, const uint8_t *data, size_t size)
{
	char err[256], u[37];
	check(k->n >= 1 && k->n <= QKM_ETSI_MAX_IDS);
	size_t cap = 32 + k->n * 64;
	char *body = malloc(cap), *p = body;
	check(body != NULL);
	p += sprintf(p, "{\"key_IDs\":[");
	for (size_t i = 0; i < k->n; i++) {
		qkm_id_uuid_str(&k->ids[i], u);
		p += sprintf(p, "%s{\"key_ID\":\"%s\"}", i ? "," : "", u);
	}
	p += sprintf(p, "]}");
	check(qkm_etsi_parse_key_ids(body, (size_t)(p - body), &ids2, err, sizeof(err)) == 0);
	check(ids2.n == k->n && memcmp(ids2.ids, k->ids, k->n * sizeof(k->ids[0])) == 0);
	free(body);

	char q[64];
	qkm_id_uuid_str(&k->ids[0], u);
	snprintf(q, sizeof(q), "key_ID=%s", u);
	check(qkm_etsi_parse_dec_query(q, &ids2, err, sizeof(err)) == 0);
	check(ids2.n == 1 && qkm_id_eq(&ids2.ids[0], &k->ids[0]));

	size_t n = k->n < 8 ? k->n : 8, expect = 11;
	const uint8_t *keys[8];
	size_t lens[8];
	for (size_t i = 0; i < n; i++) {
		lens[i] = size / (i + 1);
		keys[i] = data;
		expect += (i ? 1 : 0) + 22 + 36 + 4 * ((lens[i] + 2) / 3);
	}
	struct qkm_buf b;
	qkm_buf_init(&b, 1 << 20, true);
	int rc = qkm_etsi_keys_json(&b, n, k->ids, keys, lens);
	check(rc == 0 || rc == QKM_ETOOBIG);
	check(rc ? b.len == 0 : b.len == expect);
	if (rc == 0)
		check(memcmp(b.p, "{\"keys\":[", 9) == 0 && memcmp(b.p + b.len - 2, "]}", 2) == 0);
	qkm_buf_fini(&b);
}

/* The client's Key container reader: a refusal leaves no key; keys read
 * are written back by the server's writer and read back the same. */
static void client_side(const uint8_t *data, size_t size)
{
	char err[256] = "";
	int rc = qkm_etsi_parse_keys((const char *)data, size, &ks, err, sizeof(err));
	check(rc == 0 || rc == QKM_EINVAL);
	check(ks.data.secure);
	if (rc) {
		check(err[0] && ks.n == 0 && ks.data.len == 0);
	} else {
		check(ks.n <= QKM_ETSI_MAX_IDS);
		const uint8_t **keys = malloc((ks.n + 1) * sizeof(*keys));
		check(keys != NULL);
		size_t total = 0;
		for (size_t i = 0; i < ks.n; i++) {
			check(ks.len[i] > 0 && ks.off[i] + ks.len[i] <= ks.data.len);
			keys[i] = ks.data.p + ks.off[i];
			total += ks.len[i];
		}
		check(total == ks.data.len);
		struct qkm_buf b;
		qkm_buf_init(&b, 64u << 20, true);
		check(qkm_etsi_keys_json(&b, ks.n, ks.ids, keys, ks.len) == 0);
		check(qkm_etsi_parse_keys((const char *)b.p, b.len, &ks2, err, sizeof(err)) == 0);
		/* No keys, no key bytes: a buffer never grown may be NULL,
		 * which memcmp may not be given even for 0 bytes. */
		check(ks2.n == ks.n && ks2.data.len == ks.data.len &&
		      (ks.data.len == 0 || memcmp(ks2.data.p, ks.data.p, ks.data.len) == 0));
		for (size_t i = 0; i < ks.n; i++)
			check(qkm_id_eq(&ks2.ids[i], &ks.ids[i]) && ks2.len[i] == ks.len[i]);
		qkm_buf_fini(&b);
		free(keys);
	}
	struct qkm_etsi_status st;
	err[0] = 0;
	rc = qkm_etsi_parse_status((const char *)data, size, &st, err, sizeof(err));
	check(rc == 0 || (rc == QKM_EINVAL && err[0]));
	if (rc == 0)
		check(qkm_name_valid(st.source_KME_ID) && qkm_name_valid(st.slave_SAE_ID));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char err[256];
	struct qkm_etsi_key_request r;

	err[0] = 0;
	int rc = qkm_etsi_parse_key_request((const char *)data, size, &r, err, sizeof(err));
	check_request(rc, &r, err);

	err[0] = 0;
	rc = qkm_etsi_parse_key_ids((const char *)data, size, &ids, err, sizeof(err));
	check(rc == 0 || rc == QKM_EINVAL);
	check(rc ? ids.n == 0 && err[0] : ids.n >= 1);
	if (rc == 0)
		roundtrip_ids(&ids, data, size);

	char *q = malloc(size + 1);
	check(q != NULL);
	memcpy(q, data, size);
	q[size] = 0;

	client_side(data, size);

	err[0] = 0;
	rc = qkm_etsi_parse_enc_query(q, &r, err, sizeof(err));
	check_request(rc, &r, err);
	check(r.n_additional == 0 && r.level == QKM_LEVEL_ANY && r.combination == QKM_COMB_NONE);

	err[0] = 0;
	rc = qkm_etsi_parse_dec_query(q, &ids, err, sizeof(err));
	check(rc == 0 || rc == QKM_EINVAL);
	check(rc ? ids.n == 0 && err[0] : ids.n == 1);
	if (rc == 0)
		roundtrip_ids(&ids, data, size);

	/* any refusal message makes a valid Error document */
	char *e = qkm_etsi_error_json(err, q);
	check(e != NULL);
	free(e);
	free(q);
	return 0;
}
