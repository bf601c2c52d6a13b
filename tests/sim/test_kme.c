/* test_kme.c - the simulated QKD device's ETSI 014 key API (sim/kme.c):
 * the mapping of the pair's QKD-keys to key_IDs and key containers, the
 * master's enc_keys and the slave's dec_keys by those IDs, who may call
 * what, and the bounds. R-ACQ-5. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "core/secret.h"
#include "proto/etsi014.h"
#include "sim/kme.h"

#define KB 32u

struct fx {
	struct qkm_kme *k;
	struct qkm_buf out;
	struct qkm_etsi_keyset ks;
};

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	struct qkm_kme_cfg c = {.key_bytes = KB, .max_bytes = 8 * KB};
	if (!f)
		return -1;
	snprintf(c.master_sae, sizeof(c.master_sae), "A");
	snprintf(c.slave_sae, sizeof(c.slave_sae), "B");
	snprintf(c.master_kme, sizeof(c.master_kme), "A-B:A");
	snprintf(c.slave_kme, sizeof(c.slave_kme), "A-B:B");
	f->k = qkm_kme_new(&c);
	qkm_buf_init(&f->out, 1 << 20, true);
	qkm_etsi_keyset_init(&f->ks);
	*state = f;
	return f->k ? 0 : -1;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	qkm_kme_free(f->k);
	qkm_buf_fini(&f->out);
	qkm_etsi_keyset_fini(&f->ks);
	free(f);
	return 0;
}

/* Key i of the pair: KB bytes of i; the slave's copy too unless told. */
static int add(struct fx *f, int i, int slave)
{
	char id[32];
	struct qkm_secret *m = qkm_secret_new(KB), *s = qkm_secret_new(KB);
	assert_non_null(m);
	assert_non_null(s);
	memset(m->p, i, KB);
	memset(s->p, slave < 0 ? i : slave, KB);
	snprintf(id, sizeof(id), "A-B.%d", i);
	int rc = qkm_kme_add(f->k, id, m, slave == -2 ? NULL : s);
	qkm_secret_free(m);
	qkm_secret_free(s);
	return rc;
}

static int req(struct fx *f, const char *caller, const char *method, const char *path,
	       const char *query, const char *body)
{
	qkm_buf_reset(&f->out);
	return qkm_kme_request(f->k, caller, method, path, query, body, body ? strlen(body) : 0,
			       &f->out);
}

static const char *text(struct fx *f)
{
	static char t[4096];
	size_t n = f->out.len < sizeof(t) - 1 ? f->out.len : sizeof(t) - 1;
	memcpy(t, f->out.p, n);
	t[n] = 0;
	return t;
}

/* key_IDs are a fixed function of the QKD-key ID: UUID version 8, RFC
 * variant; different IDs give different UUIDs. */
static void test_uuid_mapping(void **state)
{
	(void)state;
	struct qkm_id a, b, c;
	char u[37];
	qkm_kme_uuid("A-B.1", &a);
	qkm_kme_uuid("A-B.1", &b);
	qkm_kme_uuid("A-B.2", &c);
	assert_true(qkm_id_eq(&a, &b));
	assert_false(qkm_id_eq(&a, &c));
	qkm_id_uuid_str(&a, u);
	assert_int_equal(u[14], '8');
	assert_true(strchr("89ab", u[19]) != NULL);
}

/* The master takes keys in production order under their key_IDs; the
 * slave fetches the same keys by those IDs, once; Status counts both
 * sides' waiting keys and names the KMEs from the caller's side. */
static void test_enc_then_dec(void **state)
{
	struct fx *f = *state;
	char err[256];
	for (int i = 1; i <= 5; i++)
		assert_int_equal(add(f, i, -1), 0);
	assert_int_equal(req(f, "A", "GET", "/api/v1/keys/B/status", NULL, NULL), 200);
	struct qkm_etsi_status st;
	assert_int_equal(qkm_etsi_parse_status((const char *)f->out.p, f->out.len, &st, err,
					       sizeof(err)), 0);
	assert_string_equal(st.source_KME_ID, "A-B:A");
	assert_string_equal(st.target_KME_ID, "A-B:B");
	assert_int_equal(st.stored_key_count, 5);
	assert_int_equal(st.key_size, 8 * KB);

	assert_int_equal(req(f, "A", "POST", "/api/v1/keys/B/enc_keys", NULL,
			     "{\"number\": 3, \"size\": 256}"), 200);
	assert_true(f->out.secure);
	assert_int_equal(qkm_etsi_parse_keys((const char *)f->out.p, f->out.len, &f->ks, err,
					     sizeof(err)), 0);
	assert_int_equal(f->ks.n, 3);
	struct qkm_id ids[3];
	for (int i = 0; i < 3; i++) {
		char id[32];
		struct qkm_id want;
		snprintf(id, sizeof(id), "A-B.%d", i + 1);
		qkm_kme_uuid(id, &want);
		assert_true(qkm_id_eq(&f->ks.ids[i], &want));
		assert_int_equal(f->ks.len[i], KB);
		assert_int_equal(f->ks.data.p[f->ks.off[i]], i + 1);
		ids[i] = want;
	}
	assert_int_equal(qkm_kme_for_master(f->k), 2);
	assert_int_equal(qkm_kme_for_slave(f->k), 3);

	assert_int_equal(req(f, "B", "GET", "/api/v1/keys/A/status", NULL, NULL), 200);
	assert_int_equal(qkm_etsi_parse_status((const char *)f->out.p, f->out.len, &st, err,
					       sizeof(err)), 0);
	assert_string_equal(st.source_KME_ID, "A-B:B");
	assert_int_equal(st.stored_key_count, 3);

	/* The slave, in another order, two of them, then the third by GET. */
	struct qkm_id two[2] = {ids[2], ids[0]};
	char *body = qkm_etsi_dec_body(two, 2);
	assert_int_equal(req(f, "B", "POST", "/api/v1/keys/A/dec_keys", NULL, body), 200);
	assert_int_equal(qkm_etsi_parse_keys((const char *)f->out.p, f->out.len, &f->ks, err,
					     sizeof(err)), 0);
	assert_int_equal(f->ks.n, 2);
	assert_int_equal(f->ks.data.p[f->ks.off[0]], 3);
	assert_int_equal(f->ks.data.p[f->ks.off[1]], 1);
	/* Fetched once: the same request again is refused, nothing given. */
	assert_int_equal(req(f, "B", "POST", "/api/v1/keys/A/dec_keys", NULL, body), 400);
	assert_non_null(strstr(text(f), "not found"));
	free(body);
	char q[64], u[37];
	qkm_id_uuid_str(&ids[1], u);
	snprintf(q, sizeof(q), "key_ID=%s", u);
	assert_int_equal(req(f, "B", "GET", "/api/v1/keys/A/dec_keys", q, NULL), 200);
	assert_int_equal(qkm_kme_for_slave(f->k), 0);
	/* GET enc_keys takes the rest. */
	assert_int_equal(req(f, "A", "GET", "/api/v1/keys/B/enc_keys", "number=2", NULL), 200);
	assert_int_equal(qkm_kme_for_master(f->k), 0);
}

/* A fault at one module: the slave gets its own (different) copy; a key
 * the slave's module lost cannot be fetched. An unknown ID in a request
 * gives out nothing, not even the known ones. */
static void test_fault_copies(void **state)
{
	struct fx *f = *state;
	char err[256];
	assert_int_equal(add(f, 1, 0x77), 0); /* flipped at the slave */
	assert_int_equal(add(f, 2, -2), 0);   /* lost at the slave */
	assert_int_equal(req(f, "A", "POST", "/api/v1/keys/B/enc_keys", NULL, "{\"number\": 2}"),
			 200);
	assert_int_equal(qkm_etsi_parse_keys((const char *)f->out.p, f->out.len, &f->ks, err,
					     sizeof(err)), 0);
	struct qkm_id ids[2] = {f->ks.ids[0], f->ks.ids[1]};
	assert_int_equal(f->ks.data.p[0], 1);
	char *body = qkm_etsi_dec_body(ids, 2);
	assert_int_equal(req(f, "B", "POST", "/api/v1/keys/A/dec_keys", NULL, body), 400);
	free(body);
	assert_int_equal(qkm_kme_for_slave(f->k), 1);
	body = qkm_etsi_dec_body(ids, 1);
	assert_int_equal(req(f, "B", "POST", "/api/v1/keys/A/dec_keys", NULL, body), 200);
	free(body);
	assert_int_equal(qkm_etsi_parse_keys((const char *)f->out.p, f->out.len, &f->ks, err,
					     sizeof(err)), 0);
	assert_int_equal(f->ks.data.p[0], 0x77);
}

/* Who may call what, the device's one key size, and how many keys wait. */
static void test_refusals(void **state)
{
	struct fx *f = *state;
	assert_int_equal(add(f, 1, -1), 0);
	assert_int_equal(req(f, "C", "GET", "/api/v1/keys/B/status", NULL, NULL), 401);
	assert_non_null(strstr(text(f), "neither the master"));
	assert_int_equal(req(f, "B", "POST", "/api/v1/keys/A/enc_keys", NULL, "{}"), 401);
	assert_int_equal(req(f, "A", "POST", "/api/v1/keys/A/dec_keys", NULL, "{}"), 400);
	assert_int_equal(req(f, "A", "POST", "/api/v1/keys/B/dec_keys", NULL, "{}"), 401);
	assert_int_equal(req(f, "A", "GET", "/api/v1/keys/C/status", NULL, NULL), 400);
	assert_int_equal(req(f, "A", "POST", "/api/v1/keys/B/status", NULL, NULL), 405);
	assert_int_equal(req(f, "A", "GET", "/api/v1/keys/B/other", NULL, NULL), 404);
	assert_int_equal(req(f, "A", "POST", "/api/v1/keys/B/enc_keys", NULL, "{\"size\": 128}"),
			 400);
	assert_non_null(strstr(text(f), "size must be 256"));
	assert_int_equal(req(f, "A", "POST", "/api/v1/keys/B/enc_keys", NULL, "{\"number\": 2}"),
			 503);
	assert_non_null(strstr(text(f), "not enough key material"));
	assert_int_equal(req(f, "A", "POST", "/api/v1/keys/B/enc_keys", NULL, "{\"number\": 1025}"),
			 400);
	assert_int_equal(req(f, "A", "POST", "/api/v1/keys/B/enc_keys", NULL, "{\"nmber\": 1}"),
			 400);
	assert_int_equal(qkm_kme_for_master(f->k), 1); /* nothing taken by any of those */
}

/* Bounds: production stops when keys for the master fill max_bytes; keys
 * the slave never fetches are dropped oldest first beyond it. */
static void test_bounds(void **state)
{
	struct fx *f = *state;
	char err[256];
	for (int i = 1; i <= 8; i++)
		assert_int_equal(add(f, i, -1), 0);
	assert_true(qkm_kme_full(f->k));
	assert_int_equal(add(f, 9, -1), QKM_ETOOBIG);
	assert_int_equal(req(f, "A", "POST", "/api/v1/keys/B/enc_keys", NULL, "{\"number\": 8}"),
			 200);
	assert_int_equal(qkm_etsi_parse_keys((const char *)f->out.p, f->out.len, &f->ks, err,
					     sizeof(err)), 0);
	struct qkm_id first = f->ks.ids[0];
	for (int i = 9; i <= 10; i++)
		assert_int_equal(add(f, i, -1), 0);
	assert_int_equal(req(f, "A", "POST", "/api/v1/keys/B/enc_keys", NULL, "{\"number\": 2}"),
			 200);
	assert_int_equal(qkm_kme_for_slave(f->k), 8);
	char *body = qkm_etsi_dec_body(&first, 1);
	assert_int_equal(req(f, "B", "POST", "/api/v1/keys/A/dec_keys", NULL, body), 400);
	free(body);
}

int main(void)
{
	if (qkm_secret_heap_init(1 << 24) != 0)
		return 1;
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_uuid_mapping),
		cmocka_unit_test_setup_teardown(test_enc_then_dec, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fault_copies, setup, teardown),
		cmocka_unit_test_setup_teardown(test_refusals, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bounds, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
