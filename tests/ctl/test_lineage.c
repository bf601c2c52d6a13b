/* test_lineage.c - key lineage over the manager's ledger (ctl/lineage.c,
 * R-LC-2, R-LC-3), with records shaped as the nodes write them: two link
 * batches acquired on node1-node2 (L) and node2-node3 (M), a relayed batch
 * R whose key data came from L and whose hops were encrypted with link key
 * P (node1-node2) and M, a KSA-key K cut from R and supplied, and an
 * unrelated link batch U. Backward from K: R, L (data), not P or M
 * (protection only). Forward from P: R and K (a key carried under P is
 * exposed with it), not U. And the access list (core/saes.c) that the
 * controller's lists replace. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/saes.h"
#include "ctl/lineage.h"
#include "store/ledger.h"

#define L "1111111111111111aaaaaaaa"
#define M "2222222222222222bbbbbbbb"
#define P "3333333333333333cccccccc"
#define R "4444444444444444dddddddd"
#define U "5555555555555555eeeeeeee"
#define K "0c9a6be5-8cb1-48e2-b2e3-d3806645fba4"
#define KT "0c9a6be5-8cb1-48e2-b2e3-d380" /* its round's token */

struct fx {
	char path[64];
	struct qkm_ledger *lg;
};

static int64_t seqs[8];

static void rec(struct qkm_ledger *lg, const char *node, const char *event, const char *kind,
		const char *key, const char *detail)
{
	static int node_ix;
	struct qkm_lc_event ev;
	size_t stored;
	memset(&ev, 0, sizeof(ev));
	node_ix = node[4] - '0';
	ev.seq = ++seqs[node_ix];
	ev.ts_ns = 1700000000000000000ull + (uint64_t)ev.seq * 1000 + (uint64_t)node_ix;
	snprintf(ev.event, sizeof(ev.event), "%s", event);
	snprintf(ev.key_kind, sizeof(ev.key_kind), "%s", kind);
	snprintf(ev.key_id, sizeof(ev.key_id), "%s", key);
	snprintf(ev.peer, sizeof(ev.peer), "node9");
	snprintf(ev.detail, sizeof(ev.detail), "%s", detail);
	assert_int_equal(qkm_ledger_append(lg, node, &ev, 1, &stored), 0);
	assert_int_equal(stored, 1);
}

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	memset(seqs, 0, sizeof(seqs));
	snprintf(f->path, sizeof(f->path), "/tmp/qkm-test-lineage-%d.db", (int)getpid());
	unlink(f->path);
	assert_int_equal(qkm_ledger_open(f->path, &f->lg), 0);
	struct qkm_ledger *lg = f->lg;
	rec(lg, "node1", "formatted", "kma", L "00000000",
	    "64 KMA-key(s) of 32 bytes; from QKD-key(s) node1-node2.1..node1-node2.9 (module "
	    "node1-node2:node1)");
	rec(lg, "node1", "formatted", "kma", P "00000000",
	    "64 KMA-key(s) of 32 bytes; from QKD-key(s) node1-node2.10..node1-node2.19 (module "
	    "node1-node2:node1)");
	rec(lg, "node2", "formatted", "kma", M "00000000",
	    "64 KMA-key(s) of 32 bytes; from QKD-key(s) node2-node3.1..node2-node3.9 (module "
	    "node2-node3:node2)");
	rec(lg, "node1", "formatted", "kma", U "00000000",
	    "64 KMA-key(s) of 32 bytes; from QKD-key(s) node1-node2.20..node1-node2.29 (module "
	    "node1-node2:node1)");
	rec(lg, "node1", "relay-sent", "relayed", R "00000000[0..2047]",
	    "65536 bytes toward node3 via node2, key data from " L "00000003+0:2048," L
	    "00000004+0:64; hop node1>node2 otp, link key " P "00000005+0:138");
	rec(lg, "node2", "relay-forwarded", "relayed", R "00000000[0..2047]",
	    "node1->node3: node1>node2 otp link key " P "00000005+0:138, node2>node3 otp link key " M
	    "00000001+0:2100");
	rec(lg, "node3", "relay-received", "relayed", R "00000000[0..2047]",
	    "65536 bytes from node1, level its; hops: node1>node2 otp T; node2>node3 otp T");
	rec(lg, "node1", "formatted", "ksa", K, "256 bits for sae-1 -> sae-3 from " R "00000001+0");
	rec(lg, "node1", "supplied", "ksa", K, "to master sae-1 (app sae-1), slave sae-3, level its");
	rec(lg, "node3", "supplied", "ksa", K, "to slave sae-3 (app sae-3); deleted");
	/* A run of its round's keys (K is index 0x6645fba4) in one record. */
	rec(lg, "node3", "stored", "ksa", KT "00000000[1715862435..1715862437]",
	    "3 keys of 256 bits for slave sae-3, digest matched node1");
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	qkm_ledger_close(f->lg);
	unlink(f->path);
	free(f);
	return 0;
}

static bool has_tok(const struct qkm_lineage *l, const char *tok)
{
	for (size_t i = 0; i < qkm_lineage_n_tokens(l); i++)
		if (strcmp(qkm_lineage_token(l, i), tok) == 0)
			return true;
	return false;
}

static int count(const char *node, const struct qkm_lc_event *ev, void *arg)
{
	(void)node;
	(void)ev;
	(*(size_t *)arg)++;
	return 0;
}

static void test_tokens(void **state)
{
	char t[QKM_TOKEN_MAX];
	(void)state;
	assert_true(qkm_token_of(L "00000003+0:2048", t));
	assert_string_equal(t, L);
	assert_true(qkm_token_of(R "00000000[0..2047]", t));
	assert_string_equal(t, R);
	assert_true(qkm_token_of(K, t));
	assert_string_equal(t, KT);
	assert_true(qkm_token_of(KT "00000000[0..63]", t));
	assert_string_equal(t, KT);
	/* Exactly a KSA-key's UUID: its round's token. */
	assert_true(qkm_token_of_ksa_key(K, t));
	assert_string_equal(t, KT);
	assert_false(qkm_token_of_ksa_key(KT "00000000[0..63]", t)); /* a run, not a key */
	assert_false(qkm_token_of_ksa_key(L "00000003", t));       /* a KMA-key */
	assert_false(qkm_token_of_ksa_key(KT, t));
	assert_false(qkm_token_of("node1-node2.1", t));
	assert_false(qkm_token_of(L "0000000", t)); /* 31 hex digits */
	assert_false(qkm_token_of(L "000000000", t)); /* 33 */
}

/* `--key`: a KSA-key's UUID finds its own records and the runs of its
 * round that hold it (K is index 1715862436 = 0x6645fba4), not others. */
static void test_key_id_names(void **state)
{
	(void)state;
	assert_true(qkm_key_id_names(K, K));
	assert_true(qkm_key_id_names(K, "6645fba4"));      /* text in it */
	assert_true(qkm_key_id_names(KT "00000000[1715862436..1715862436]", K));
	assert_true(qkm_key_id_names(KT "00000000[0..1715862440]", K));
	assert_false(qkm_key_id_names(KT "00000000[0..1715862435]", K));
	assert_false(qkm_key_id_names(KT "00000000[1715862437..1715862440]", K));
	assert_false(qkm_key_id_names("0c9a6be5-8cb1-48e2-b2e3-d38100000000[0..4294967295]", K));
	assert_false(qkm_key_id_names(KT "00000001[0..4294967295]", K)); /* not a round's ID */
	assert_false(qkm_key_id_names(KT "00000000[x..4294967295]", K));
	assert_false(qkm_key_id_names(KT "00000000[0..4294967295", K));
	/* The round's token is text in every record of the round. */
	assert_true(qkm_key_id_names(KT "00000000[0..4294967295]", KT));
	assert_true(qkm_key_id_names(KT "00000000[0..4294967295]", KT "00000001")); /* index 1 */
}

/* Where K came from: cut from R, whose data came from L; the link keys
 * that carried R (P, M) protected it but are not its bytes. */
static void test_back(void **state)
{
	struct fx *f = *state;
	struct qkm_lineage *l = qkm_lineage_new();
	size_t n = 0;
	assert_int_equal(qkm_lineage_back(l, f->lg, KT, false), 0);
	assert_true(has_tok(l, KT));
	assert_true(has_tok(l, R));
	assert_true(has_tok(l, L));
	assert_false(has_tok(l, P));
	assert_false(has_tok(l, M));
	assert_false(has_tok(l, U));
	assert_int_equal(qkm_lineage_records(l, count, &n), 0);
	/* K: 3 and its round's run, R: 3, L: 1 */
	assert_int_equal(n, 8);
	qkm_lineage_free(l);
	/* With protection: the hop keys too. */
	l = qkm_lineage_new();
	assert_int_equal(qkm_lineage_back(l, f->lg, KT, true), 0);
	assert_true(has_tok(l, P));
	assert_true(has_tok(l, M));
	assert_false(has_tok(l, U));
	qkm_lineage_free(l);
}

/* What a compromised link key exposes: the relay it encrypted and the
 * KSA-key cut from that relay; never the batch acquired beside it. */
static void test_forward(void **state)
{
	struct fx *f = *state;
	struct qkm_lineage *l = qkm_lineage_new();
	assert_int_equal(qkm_lineage_forward(l, f->lg, P), 0);
	assert_true(has_tok(l, P));
	assert_true(has_tok(l, R));
	assert_true(has_tok(l, KT));
	assert_false(has_tok(l, L));
	assert_false(has_tok(l, U));
	qkm_lineage_free(l);
	/* From the data's batch the same, from M too (it carried R). */
	l = qkm_lineage_new();
	assert_int_equal(qkm_lineage_forward(l, f->lg, M), 0);
	assert_true(has_tok(l, KT));
	assert_false(has_tok(l, U));
	qkm_lineage_free(l);
	/* An unrelated batch feeds nothing. */
	l = qkm_lineage_new();
	assert_int_equal(qkm_lineage_forward(l, f->lg, U), 0);
	assert_int_equal(qkm_lineage_n_tokens(l), 1);
	qkm_lineage_free(l);
}

static bool acquired_on_12(const char *node, const struct qkm_lc_event *ev, void *arg)
{
	(void)node;
	(void)arg;
	return strcmp(ev->event, "formatted") == 0 && strcmp(ev->key_kind, "kma") == 0 &&
	       strstr(ev->detail, "(module node1-node2:") != NULL;
}

/* Compromise of link node1-node2: its batches (L, P, U) and everything
 * they fed; node2-node3's own batch M is not among them. */
static void test_select_link(void **state)
{
	struct fx *f = *state;
	struct qkm_lineage *l = qkm_lineage_new();
	assert_int_equal(qkm_lineage_select(l, f->lg, acquired_on_12, NULL), 0);
	size_t seeds = qkm_lineage_n_tokens(l);
	assert_int_equal(seeds, 3);
	for (size_t i = 0; i < seeds; i++) {
		char t[QKM_TOKEN_MAX];
		snprintf(t, sizeof(t), "%s", qkm_lineage_token(l, i));
		assert_int_equal(qkm_lineage_forward(l, f->lg, t), 0);
	}
	assert_true(has_tok(l, L) && has_tok(l, P) && has_tok(l, U));
	assert_true(has_tok(l, R) && has_tok(l, KT));
	assert_false(has_tok(l, M));
	qkm_lineage_free(l);
}

/* The controller's list replaces node.json's: registrations move,
 * revocations stick, SAEs it leaves out are revoked, slots stay stable. */
static void test_saes(void **state)
{
	struct qkm_node_cfg *cfg = calloc(1, sizeof(*cfg));
	(void)state;
	snprintf(cfg->saes[0].id, QKM_NAME_MAX, "sae-1");
	snprintf(cfg->saes[0].node, QKM_NAME_MAX, "node1");
	snprintf(cfg->saes[1].id, QKM_NAME_MAX, "sae-3");
	snprintf(cfg->saes[1].node, QKM_NAME_MAX, "node3");
	cfg->n_saes = 2;
	struct qkm_saes *r = qkm_saes_new(cfg);
	size_t slot1, slot, changed;
	assert_string_equal(qkm_saes_node(r, "sae-1"), "node1");
	assert_null(qkm_saes_node(r, "sae-9"));
	assert_true(qkm_saes_slot(r, "sae-1", &slot1));
	struct qkm_sae_entry e[3] = {
		{"sae-1", "node1", true}, {"sae-3", "node2", false}, {"sae-9", "node1", false}};
	assert_int_equal(qkm_saes_set(r, e, 3, &changed), 0);
	assert_int_equal(changed, 3);
	assert_null(qkm_saes_node(r, "sae-1"));
	assert_true(qkm_saes_revoked(r, "sae-1"));
	assert_false(qkm_saes_slot(r, "sae-1", &slot));
	assert_string_equal(qkm_saes_node(r, "sae-3"), "node2");
	assert_string_equal(qkm_saes_node(r, "sae-9"), "node1");
	/* The same list again changes nothing; a shorter one revokes. */
	assert_int_equal(qkm_saes_set(r, e, 3, &changed), 0);
	assert_int_equal(changed, 0);
	assert_int_equal(qkm_saes_set(r, e, 2, &changed), 0);
	assert_int_equal(changed, 1);
	assert_null(qkm_saes_node(r, "sae-9"));
	/* Registered again: a new slot, the old name resolves again. */
	e[0].revoked = false;
	assert_int_equal(qkm_saes_set(r, e, 1, &changed), 0);
	assert_string_equal(qkm_saes_node(r, "sae-1"), "node1");
	assert_true(qkm_saes_slot(r, "sae-1", &slot));
	assert_int_equal(slot, slot1); /* same node: the same registration, un-revoked */
	/* The registry is what qkm_sae_node() consults once set. */
	cfg->registry = r;
	assert_null(qkm_sae_node(cfg, "sae-3"));
	assert_string_equal(qkm_sae_node(cfg, "sae-1"), "node1");
	qkm_saes_free(r);
	free(cfg);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_tokens),
		cmocka_unit_test(test_key_id_names),
		cmocka_unit_test_setup_teardown(test_back, setup, teardown),
		cmocka_unit_test_setup_teardown(test_forward, setup, teardown),
		cmocka_unit_test_setup_teardown(test_select_link, setup, teardown),
		cmocka_unit_test(test_saes),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
