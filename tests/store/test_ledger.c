/* test_ledger.c - the manager's life-cycle ledger (store/ledger.c, R-LC-2):
 * per-node chains continued exactly (resends, conflicts, gaps), the hash
 * chain as docs/store.md defines it, persistence across reopen, the
 * manager's own chain, the walks, and that the audit names the node and seq
 * of a record edited or deleted by hand with SQLite (R-LC-2 "audits"). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <sqlite3.h>

#include "store/ledger.h"
#include "store/store.h"

struct fx {
	char dir[PATH_MAX - 64];
	char path[PATH_MAX - 32];
	struct qkm_ledger *lg;
};

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	const char *tmp = getenv("QKM_TEST_TMP");
	if (!f)
		return -1;
	if (!tmp || !*tmp)
		tmp = "/tmp";
	if (mkdir(tmp, 0700) != 0 && errno != EEXIST)
		return -1;
	snprintf(f->dir, sizeof(f->dir), "%s/ledger-XXXXXX", tmp);
	if (!mkdtemp(f->dir))
		return -1;
	snprintf(f->path, sizeof(f->path), "%s/controller.db", f->dir);
	if (qkm_ledger_open(f->path, &f->lg) != 0)
		return -1;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	char p[PATH_MAX];
	qkm_ledger_close(f->lg);
	static const char *const suffixes[] = { "", "-wal", "-shm", "-journal", ".store" };
	for (size_t i = 0; i < 5; i++) {
		snprintf(p, sizeof(p), "%s%s", f->path, suffixes[i]);
		unlink(p);
	}
	rmdir(f->dir);
	free(f);
	return 0;
}

static void reopen(struct fx *f)
{
	qkm_ledger_close(f->lg);
	f->lg = NULL;
	assert_int_equal(qkm_ledger_open(f->path, &f->lg), 0);
}

/* What a node would send: record seq of node, deterministic. */
static struct qkm_lc_event mkev(const char *node, int64_t seq)
{
	struct qkm_lc_event ev;
	memset(&ev, 0, sizeof(ev));
	ev.seq = seq;
	ev.ts_ns = 1700000000000000000ull + (uint64_t)seq * 1000;
	snprintf(ev.event, sizeof(ev.event), "%s", seq % 3 ? "stored" : "supplied");
	snprintf(ev.key_kind, sizeof(ev.key_kind), "kma");
	snprintf(ev.key_id, sizeof(ev.key_id), "%08llx%024d[0..9]", (unsigned long long)seq, 0);
	snprintf(ev.peer, sizeof(ev.peer), "peer-of-%s", node);
	snprintf(ev.detail, sizeof(ev.detail), "batch %lld of %s", (long long)seq, node);
	return ev;
}

/* Appends node's records from..to as one batch; returns the error,
 * *stored the count. */
static int append_range(struct qkm_ledger *lg, const char *node, int64_t from, int64_t to,
			size_t *stored)
{
	size_t n = (size_t)(to - from + 1);
	struct qkm_lc_event *evs = calloc(n, sizeof(*evs));
	assert_non_null(evs);
	for (size_t i = 0; i < n; i++)
		evs[i] = mkev(node, from + (int64_t)i);
	int err = qkm_ledger_append(lg, node, evs, n, stored);
	free(evs);
	return err;
}

static void append_ok(struct qkm_ledger *lg, const char *node, int64_t from, int64_t to)
{
	size_t stored = 99;
	assert_int_equal(append_range(lg, node, from, to, &stored), 0);
	assert_int_equal(stored, (size_t)(to - from + 1));
}

static int64_t last_seq(struct qkm_ledger *lg, const char *node)
{
	int64_t seq = -1;
	assert_int_equal(qkm_ledger_last_seq(lg, node, &seq), 0);
	return seq;
}

/* Runs SQL on the file through a connection of its own, as an operator
 * with the sqlite3 CLI would. */
static void raw_sql(const struct fx *f, const char *sql)
{
	sqlite3 *db;
	assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
	char *msg = NULL;
	int rc = sqlite3_exec(db, sql, NULL, NULL, &msg);
	if (rc != SQLITE_OK)
		fail_msg("%s: %s", sql, msg ? msg : "?");
	sqlite3_free(msg);
	assert_int_equal(sqlite3_changes(db) > 0 || strncmp(sql, "PRAGMA", 6) == 0, 1);
	sqlite3_close(db);
}

/* A blob column of one row, read as the operator would. */
static void raw_blob(const struct fx *f, const char *sql, uint8_t out[32])
{
	sqlite3 *db;
	sqlite3_stmt *s;
	assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &s, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(s), SQLITE_ROW);
	assert_int_equal(sqlite3_column_bytes(s, 0), 32);
	memcpy(out, sqlite3_column_blob(s, 0), 32);
	sqlite3_finalize(s);
	sqlite3_close(db);
}

/* The chain hash written out from docs/store.md, independently of
 * ledger.c: SHA-256(prev || F(node) || F(be64 seq) || F(be64 ts_ns) ||
 * F(event) || F(key_kind) || F(key_id) || F(peer) || F(detail)), F(x) =
 * be32(len x) || x. */
static void put_field(uint8_t *buf, size_t *off, const void *p, size_t len)
{
	buf[(*off)++] = (uint8_t)(len >> 24);
	buf[(*off)++] = (uint8_t)(len >> 16);
	buf[(*off)++] = (uint8_t)(len >> 8);
	buf[(*off)++] = (uint8_t)len;
	memcpy(buf + *off, p, len);
	*off += len;
}

static void ref_hash(const uint8_t prev[32], const char *node, const struct qkm_lc_event *ev,
		     uint8_t out[32])
{
	static uint8_t buf[4096];
	uint8_t seq[8], ts[8];
	size_t off = 0;
	for (int i = 0; i < 8; i++) {
		seq[i] = (uint8_t)((uint64_t)ev->seq >> (56 - 8 * i));
		ts[i] = (uint8_t)(ev->ts_ns >> (56 - 8 * i));
	}
	memcpy(buf, prev, 32);
	off = 32;
	put_field(buf, &off, node, strlen(node));
	put_field(buf, &off, seq, 8);
	put_field(buf, &off, ts, 8);
	put_field(buf, &off, ev->event, strlen(ev->event));
	put_field(buf, &off, ev->key_kind, strlen(ev->key_kind));
	put_field(buf, &off, ev->key_id, strlen(ev->key_id));
	put_field(buf, &off, ev->peer, strlen(ev->peer));
	put_field(buf, &off, ev->detail, strlen(ev->detail));
	unsigned int len = 0;
	assert_int_equal(EVP_Digest(buf, off, out, &len, EVP_sha256(), NULL), 1);
	assert_int_equal(len, 32);
}

/* Collects a walk. */
#define MAXR 64
struct got {
	int n;
	char node[MAXR][QKM_NAME_MAX];
	struct qkm_lc_event ev[MAXR];
	int stop_after;
	struct qkm_ledger *lg; /* set: the callback tries to re-enter */
	int reenter_err;
};

static int collect(const char *node, const struct qkm_lc_event *ev, void *arg)
{
	struct got *g = arg;
	assert_true(g->n < MAXR);
	snprintf(g->node[g->n], QKM_NAME_MAX, "%s", node);
	g->ev[g->n++] = *ev;
	if (g->lg) {
		size_t stored;
		struct qkm_lc_event e = mkev(node, ev->seq + 100);
		g->reenter_err = qkm_ledger_append(g->lg, node, &e, 1, &stored);
		assert_int_equal(qkm_ledger_records(g->lg, NULL, 0, NULL, NULL, 0, collect, g),
				 QKM_ESTATE);
		int64_t seq;
		assert_int_equal(qkm_ledger_last_seq(g->lg, node, &seq), 0);
	}
	return g->stop_after && g->n == g->stop_after ? 7 : 0;
}

/* Collects an audit. */
#define MAXP 16
struct findings {
	int n;
	struct {
		char node[QKM_NAME_MAX];
		int64_t seq, seq_last;
		char what[16];
	} p[MAXP];
	int nchains;
	struct qkm_ledger_checked c[8];
	char cnode[8][QKM_NAME_MAX];
};

static void on_problem(const char *node, int64_t seq, int64_t seq_last, const char *what,
		       void *arg)
{
	struct findings *fd = arg;
	assert_true(fd->n < MAXP);
	snprintf(fd->p[fd->n].node, QKM_NAME_MAX, "%s", node);
	fd->p[fd->n].seq = seq;
	fd->p[fd->n].seq_last = seq_last;
	snprintf(fd->p[fd->n].what, sizeof(fd->p[fd->n].what), "%s", what);
	fd->n++;
}

static void on_checked(const struct qkm_ledger_checked *c, void *arg)
{
	struct findings *fd = arg;
	assert_true(fd->nchains < 8);
	fd->c[fd->nchains] = *c;
	snprintf(fd->cnode[fd->nchains], QKM_NAME_MAX, "%s", c->node);
	fd->c[fd->nchains].node = fd->cnode[fd->nchains];
	fd->nchains++;
}

static int audit(struct qkm_ledger *lg, struct findings *fd)
{
	memset(fd, 0, sizeof(*fd));
	int n = qkm_ledger_audit(lg, on_problem, on_checked, fd);
	assert_true(n >= 0);
	assert_int_equal(n, fd->n);
	return n;
}

static void assert_finding(const struct findings *fd, int i, const char *node, int64_t seq,
			   int64_t seq_last, const char *what)
{
	assert_true(i < fd->n);
	assert_string_equal(fd->p[i].node, node);
	assert_int_equal(fd->p[i].seq, seq);
	assert_int_equal(fd->p[i].seq_last, seq_last);
	assert_string_equal(fd->p[i].what, what);
}

/* R-LC-2 keeps: a node's records are stored as sent and read back in order,
 * with the node's own numbering. */
static void test_append_read_back(void **state)
{
	struct fx *f = *state;
	struct got g = { 0 };

	assert_int_equal(last_seq(f->lg, "node1"), 0);
	append_ok(f->lg, "node1", 1, 3);
	append_ok(f->lg, "node1", 4, 4);
	assert_int_equal(last_seq(f->lg, "node1"), 4);
	assert_int_equal(qkm_ledger_records(f->lg, "node1", 0, NULL, NULL, 0, collect, &g), 0);
	assert_int_equal(g.n, 4);
	for (int i = 0; i < 4; i++) {
		struct qkm_lc_event want = mkev("node1", i + 1);
		assert_string_equal(g.node[i], "node1");
		assert_memory_equal(&g.ev[i], &want, sizeof(want));
	}
	size_t stored = 99;
	assert_int_equal(qkm_ledger_append(f->lg, "node1", NULL, 0, &stored), 0);
	assert_int_equal(stored, 0);
}

/* A resend after a lost ack: records already stored are skipped when
 * identical, the new ones after them stored. */
static void test_resend_identical_skipped(void **state)
{
	struct fx *f = *state;
	size_t stored = 99;

	append_ok(f->lg, "node1", 1, 5);
	assert_int_equal(append_range(f->lg, "node1", 3, 7, &stored), 0);
	assert_int_equal(stored, 2);
	assert_int_equal(last_seq(f->lg, "node1"), 7);
	assert_int_equal(append_range(f->lg, "node1", 1, 7, &stored), 0);
	assert_int_equal(stored, 0);
	struct findings fd;
	assert_int_equal(audit(f->lg, &fd), 0);
	assert_int_equal(fd.c[0].records, 7);
}

/* A resend that differs from what is stored is refused whole: nothing of
 * the batch is stored, not even the records after the conflict. */
static void test_resend_different_refused(void **state)
{
	struct fx *f = *state;
	struct qkm_lc_event evs[3] = { mkev("node1", 4), mkev("node1", 5), mkev("node1", 6) };
	size_t stored = 99;

	append_ok(f->lg, "node1", 1, 5);
	snprintf(evs[0].detail, sizeof(evs[0].detail), "something else");
	assert_int_equal(qkm_ledger_append(f->lg, "node1", evs, 3, &stored), QKM_EMISMATCH);
	assert_int_equal(stored, 0);
	assert_int_equal(last_seq(f->lg, "node1"), 5);
	evs[0] = mkev("node1", 4);
	evs[1].ts_ns++;
	assert_int_equal(qkm_ledger_append(f->lg, "node1", evs, 3, &stored), QKM_EMISMATCH);
	assert_int_equal(last_seq(f->lg, "node1"), 5);
	/* the right resend goes through */
	evs[1] = mkev("node1", 5);
	assert_int_equal(qkm_ledger_append(f->lg, "node1", evs, 3, &stored), 0);
	assert_int_equal(stored, 1);
	assert_int_equal(last_seq(f->lg, "node1"), 6);
}

/* A gap is refused and nothing is stored: before the first new record, or
 * inside the batch. A node's first records may start past 1 (it pruned
 * the older ones after a manager held them, docs/store.md Retention): the
 * chain starts there and the audit finds 1.. missing. */
static void test_gap_refused(void **state)
{
	struct fx *f = *state;
	size_t stored = 99;

	append_ok(f->lg, "node2", 4, 5);
	assert_int_equal(last_seq(f->lg, "node2"), 5);
	assert_int_equal(append_range(f->lg, "node2", 7, 7, &stored), QKM_ESTATE);
	struct findings fd;
	assert_int_equal(audit(f->lg, &fd), 1);
	assert_finding(&fd, 0, "node2", 1, 3, "missing");
	append_ok(f->lg, "node1", 1, 3);
	assert_int_equal(append_range(f->lg, "node1", 5, 6, &stored), QKM_ESTATE);
	struct qkm_lc_event evs[2] = { mkev("node1", 4), mkev("node1", 6) };
	assert_int_equal(qkm_ledger_append(f->lg, "node1", evs, 2, &stored), QKM_ESTATE);
	evs[1] = mkev("node1", 4);
	assert_int_equal(qkm_ledger_append(f->lg, "node1", evs, 2, &stored), QKM_ESTATE);
	assert_int_equal(stored, 0);
	assert_int_equal(last_seq(f->lg, "node1"), 3);
	struct got g = { 0 };
	assert_int_equal(qkm_ledger_records(f->lg, "node1", 3, NULL, NULL, 0, collect, &g), 0);
	assert_int_equal(g.n, 0);
}

/* Chains are per node: each starts at seq 1 from 32 zero bytes, and each
 * stored hash is the docs/store.md definition, recomputed here. */
static void test_two_chains_and_hash_definition(void **state)
{
	struct fx *f = *state;
	uint8_t prev[32] = { 0 }, want[32], got[32], stored_prev[32];
	char sql[256];

	append_ok(f->lg, "node1", 1, 3);
	append_ok(f->lg, "node2", 1, 2);
	append_ok(f->lg, "node1", 4, 4);
	assert_int_equal(last_seq(f->lg, "node1"), 4);
	assert_int_equal(last_seq(f->lg, "node2"), 2);
	static const char *const nodes[] = { "node1", "node2" };
	static const int64_t counts[] = { 4, 2 };
	for (int k = 0; k < 2; k++) {
		memset(prev, 0, sizeof(prev));
		for (int64_t seq = 1; seq <= counts[k]; seq++) {
			struct qkm_lc_event ev = mkev(nodes[k], seq);
			ref_hash(prev, nodes[k], &ev, want);
			snprintf(sql, sizeof(sql),
				 "SELECT hash FROM records WHERE node = '%s' AND seq = %lld",
				 nodes[k], (long long)seq);
			raw_blob(f, sql, got);
			assert_memory_equal(got, want, 32);
			snprintf(sql, sizeof(sql),
				 "SELECT prev_hash FROM records WHERE node = '%s' AND seq = %lld",
				 nodes[k], (long long)seq);
			raw_blob(f, sql, stored_prev);
			assert_memory_equal(stored_prev, prev, 32);
			memcpy(prev, want, 32);
		}
		snprintf(sql, sizeof(sql), "SELECT last_hash FROM chains WHERE node = '%s'",
			 nodes[k]);
		raw_blob(f, sql, got);
		assert_memory_equal(got, prev, 32);
	}
	/* All nodes: by node, then seq. */
	struct got g = { 0 };
	assert_int_equal(qkm_ledger_records(f->lg, NULL, 0, NULL, NULL, 0, collect, &g), 0);
	assert_int_equal(g.n, 6);
	assert_string_equal(g.node[3], "node1");
	assert_int_equal(g.ev[3].seq, 4);
	assert_string_equal(g.node[4], "node2");
	assert_int_equal(g.ev[4].seq, 1);
}

/* Fields are length-prefixed: the same bytes split differently between
 * two fields give another hash (the same node and seq, in two ledgers). */
static void test_hash_fields_cannot_shift(void **state)
{
	struct fx *f = *state;
	struct qkm_lc_event a = mkev("node1", 1), b = mkev("node1", 1);
	struct qkm_ledger *lg2 = NULL;
	char path2[PATH_MAX], p[PATH_MAX + 8];
	uint8_t ha[32];
	size_t stored;

	snprintf(a.event, sizeof(a.event), "stored");
	snprintf(a.key_kind, sizeof(a.key_kind), "kma");
	snprintf(b.event, sizeof(b.event), "store");
	snprintf(b.key_kind, sizeof(b.key_kind), "dkma");
	assert_int_equal(qkm_ledger_append(f->lg, "node1", &a, 1, &stored), 0);
	raw_blob(f, "SELECT hash FROM records WHERE node = 'node1'", ha);

	snprintf(path2, sizeof(path2), "%s.store", f->path);
	assert_int_equal(qkm_ledger_open(path2, &lg2), 0);
	assert_int_equal(qkm_ledger_append(lg2, "node1", &b, 1, &stored), 0);
	qkm_ledger_close(lg2);
	struct fx f2;
	snprintf(f2.path, sizeof(f2.path), "%s", path2);
	uint8_t hb[32];
	raw_blob(&f2, "SELECT hash FROM records WHERE node = 'node1'", hb);
	assert_memory_not_equal(ha, hb, 32);
	uint8_t zero[32] = { 0 }, want[32];
	ref_hash(zero, "node1", &b, want);
	assert_memory_equal(hb, want, 32);
	snprintf(p, sizeof(p), "%s-wal", path2);
	unlink(p);
	snprintf(p, sizeof(p), "%s-shm", path2);
	unlink(p);
}

/* The chain survives close and open: appends go on from the stored end,
 * and a gap is still refused. */
static void test_reopen_keeps_chain(void **state)
{
	struct fx *f = *state;
	size_t stored;

	append_ok(f->lg, "node1", 1, 3);
	append_ok(f->lg, "node2", 1, 1);
	reopen(f);
	assert_int_equal(last_seq(f->lg, "node1"), 3);
	assert_int_equal(append_range(f->lg, "node1", 5, 5, &stored), QKM_ESTATE);
	assert_int_equal(append_range(f->lg, "node1", 2, 5, &stored), 0);
	assert_int_equal(stored, 2);
	reopen(f);
	append_ok(f->lg, "node2", 2, 3);
	struct findings fd;
	assert_int_equal(audit(f->lg, &fd), 0);
	assert_int_equal(fd.nchains, 2);
	assert_int_equal(fd.c[0].records, 5);
	assert_int_equal(fd.c[1].records, 3);
}

/* R-LC-2 audits: an intact ledger audits clean, and each chain's count is
 * reported. */
static void test_audit_clean(void **state)
{
	struct fx *f = *state;
	struct qkm_lc_event own;
	struct findings fd;

	append_ok(f->lg, "node1", 1, 20);
	append_ok(f->lg, "node3", 1, 7);
	append_ok(f->lg, "node2", 1, 1);
	memset(&own, 0, sizeof(own));
	snprintf(own.event, sizeof(own.event), "sae-registered");
	assert_int_equal(qkm_ledger_append_own(f->lg, "ctl", &own), 0);
	assert_int_equal(audit(f->lg, &fd), 0);
	assert_int_equal(fd.nchains, 4);
	static const char *const names[] = { "ctl", "node1", "node2", "node3" };
	static const int64_t counts[] = { 1, 20, 1, 7 };
	for (int i = 0; i < 4; i++) {
		assert_string_equal(fd.c[i].node, names[i]);
		assert_int_equal(fd.c[i].records, counts[i]);
		assert_int_equal(fd.c[i].last_seq, counts[i]);
		assert_int_equal(fd.c[i].head_seq, counts[i]);
		assert_int_equal(fd.c[i].problems, 0);
		assert_int_equal(fd.c[i].own, i == 0);
	}
	/* NULL callbacks are fine */
	assert_int_equal(qkm_ledger_audit(f->lg, NULL, NULL, NULL), 0);
	/* an empty ledger too */
	reopen(f);
	raw_sql(f, "DELETE FROM records");
	raw_sql(f, "DELETE FROM chains");
	assert_int_equal(audit(f->lg, &fd), 0);
	assert_int_equal(fd.nchains, 0);
}

/* The acceptance case: one record edited by hand is named by node and seq,
 * and only it (the next record still links to its stored hash). */
static void test_audit_changed(void **state)
{
	struct fx *f = *state;
	struct findings fd;

	append_ok(f->lg, "node1", 1, 10);
	append_ok(f->lg, "node2", 1, 10);
	struct qkm_ledger_audit_stats as;
	qkm_ledger_audit_stats(f->lg, &as);
	assert_int_equal(as.runs, 0);
	assert_int_equal(audit(f->lg, &fd), 0);
	raw_sql(f, "UPDATE records SET detail='x' WHERE node='node1' AND seq=5");
	assert_int_equal(audit(f->lg, &fd), 1);
	assert_finding(&fd, 0, "node1", 5, 5, "changed");
	assert_int_equal(fd.c[0].problems, 1);
	assert_int_equal(fd.c[1].problems, 0);
	/* Issue #8: what /metrics reports of the audits (qkm_ctl_audit_*). */
	qkm_ledger_audit_stats(f->lg, &as);
	assert_int_equal(as.runs, 2);
	assert_int_equal(as.failed, 0);
	assert_int_equal(as.problems, 1);
	assert_int_equal(as.last_problems, 1);

	/* any hashed column; also on a closed-and-opened ledger */
	reopen(f);
	raw_sql(f, "UPDATE records SET ts_ns = ts_ns + 1 WHERE node='node2' AND seq=1");
	raw_sql(f, "UPDATE records SET peer = 'nodeX' WHERE node='node2' AND seq=10");
	raw_sql(f, "UPDATE records SET prev_hash = zeroblob(32) WHERE node='node1' AND seq=8");
	assert_int_equal(audit(f->lg, &fd), 4);
	assert_finding(&fd, 0, "node1", 5, 5, "changed");
	assert_finding(&fd, 1, "node1", 8, 8, "changed");
	assert_finding(&fd, 2, "node2", 1, 1, "changed");
	assert_finding(&fd, 3, "node2", 10, 10, "changed");
}

/* A record deleted from the middle is "missing", once, as a range. */
static void test_audit_missing(void **state)
{
	struct fx *f = *state;
	struct findings fd;

	append_ok(f->lg, "node1", 1, 10);
	raw_sql(f, "DELETE FROM records WHERE node='node1' AND seq=5");
	assert_int_equal(audit(f->lg, &fd), 1);
	assert_finding(&fd, 0, "node1", 5, 5, "missing");
	assert_int_equal(fd.c[0].records, 9);
	raw_sql(f, "DELETE FROM records WHERE node='node1' AND seq IN (1, 7, 8)");
	assert_int_equal(audit(f->lg, &fd), 3);
	assert_finding(&fd, 0, "node1", 1, 1, "missing");
	assert_finding(&fd, 1, "node1", 5, 5, "missing");
	assert_finding(&fd, 2, "node1", 7, 8, "missing");
	/* A resend over a hole is refused, not filled in. */
	size_t stored;
	assert_int_equal(append_range(f->lg, "node1", 5, 11, &stored), QKM_EMISMATCH);
	assert_int_equal(last_seq(f->lg, "node1"), 10);
}

/* The end of a chain: deleting the last record leaves a chain that is valid
 * on its own. The chain head in the file and the one in memory still see it;
 * a deletion that also edits the head, on a ledger reopened since, is not
 * seen (ledger.h: the controller compares with the node's last seq); the
 * node's resend then restores the record bit for bit. */
static void test_audit_tail_deleted(void **state)
{
	struct fx *f = *state;
	struct findings fd;
	uint8_t before[32], after[32];
	size_t stored;

	append_ok(f->lg, "node1", 1, 10);
	raw_blob(f, "SELECT hash FROM records WHERE node='node1' AND seq=10", before);
	reopen(f);
	raw_sql(f, "DELETE FROM records WHERE node='node1' AND seq=10");
	assert_int_equal(audit(f->lg, &fd), 1);
	assert_finding(&fd, 0, "node1", 10, 10, "missing");
	assert_int_equal(fd.c[0].head_seq, 10);
	assert_int_equal(fd.c[0].last_seq, 9);

	/* The head edited to match: undetectable by the file alone. */
	raw_sql(f, "UPDATE chains SET last_seq = 9, last_hash = (SELECT hash FROM records "
		   "WHERE node='node1' AND seq=9) WHERE node='node1'");
	assert_int_equal(audit(f->lg, &fd), 0);
	assert_int_equal(last_seq(f->lg, "node1"), 9);
	/* The node, asked for what follows 9, sends 10 again. */
	assert_int_equal(append_range(f->lg, "node1", 10, 10, &stored), 0);
	assert_int_equal(stored, 1);
	raw_blob(f, "SELECT hash FROM records WHERE node='node1' AND seq=10", after);
	assert_memory_equal(before, after, 32);
	assert_int_equal(audit(f->lg, &fd), 0);
}

/* While the controller runs, its head in memory witnesses the chain's end
 * even when the file's head is edited along with the records. */
static void test_audit_tail_deleted_live(void **state)
{
	struct fx *f = *state;
	struct findings fd;

	append_ok(f->lg, "node1", 1, 10);
	append_ok(f->lg, "node2", 1, 2);
	raw_sql(f, "DELETE FROM records WHERE node='node1' AND seq >= 9");
	raw_sql(f, "UPDATE chains SET last_seq = 8, last_hash = (SELECT hash FROM records "
		   "WHERE node='node1' AND seq=8) WHERE node='node1'");
	raw_sql(f, "DELETE FROM records WHERE node='node2'");
	raw_sql(f, "DELETE FROM chains WHERE node='node2'");
	assert_int_equal(audit(f->lg, &fd), 2);
	assert_finding(&fd, 0, "node1", 9, 10, "missing");
	assert_finding(&fd, 1, "node2", 1, 2, "missing");
	assert_int_equal(fd.nchains, 2);
	assert_int_equal(fd.c[1].records, 0);
}

/* A record rewritten together with its hash (whoever read docs/store.md)
 * breaks the next record's link: "bad-link" at that seq; at the end of the
 * chain, the head's hash no longer matches. */
static void test_audit_rehashed(void **state)
{
	struct fx *f = *state;
	struct findings fd;
	uint8_t prev[32], h[32];
	char sql[512], hex[65];

	append_ok(f->lg, "node1", 1, 10);
	reopen(f); /* no head in memory */
	for (int64_t seq = 5; seq <= 10; seq += 5) {
		struct qkm_lc_event ev = mkev("node1", seq);
		snprintf(ev.detail, sizeof(ev.detail), "forged");
		snprintf(sql, sizeof(sql),
			 "SELECT prev_hash FROM records WHERE node='node1' AND seq=%lld",
			 (long long)seq);
		raw_blob(f, sql, prev);
		ref_hash(prev, "node1", &ev, h);
		for (int i = 0; i < 32; i++)
			snprintf(hex + 2 * i, 3, "%02x", h[i]);
		snprintf(sql, sizeof(sql),
			 "UPDATE records SET detail='forged', hash=x'%s' "
			 "WHERE node='node1' AND seq=%lld",
			 hex, (long long)seq);
		raw_sql(f, sql);
	}
	assert_int_equal(audit(f->lg, &fd), 2);
	assert_finding(&fd, 0, "node1", 6, 6, "bad-link");
	assert_finding(&fd, 1, "node1", 10, 10, "bad-link");
}

/* Rows added by hand past the chain's head are "extra". */
static void test_audit_extra(void **state)
{
	struct fx *f = *state;
	struct findings fd;

	append_ok(f->lg, "node1", 1, 3);
	reopen(f);
	raw_sql(f, "INSERT INTO records SELECT node, seq + 3, ts_ns, event, key_kind, key_id, "
		   "peer, detail, prev_hash, hash FROM records WHERE node='node1'");
	raw_sql(f, "INSERT INTO records SELECT 'ghost', seq, ts_ns, event, key_kind, key_id, "
		   "peer, detail, prev_hash, hash FROM records WHERE node='node1' AND seq = 1");
	/* 4..6 are copies under another seq: changed, and beyond the head;
	 * ghost's record was node1's: changed, and it has no head */
	assert_int_equal(audit(f->lg, &fd), 6);
	assert_finding(&fd, 0, "ghost", 1, 1, "changed");
	assert_finding(&fd, 1, "ghost", 1, 1, "extra");
	assert_finding(&fd, 2, "node1", 4, 4, "changed");
	assert_finding(&fd, 3, "node1", 5, 5, "changed");
	assert_finding(&fd, 4, "node1", 6, 6, "changed");
	assert_finding(&fd, 5, "node1", 4, 6, "extra");
	assert_int_equal(fd.c[0].head_seq, 0);
	assert_int_equal(fd.c[1].head_seq, 3);
}

/* The manager's own records: numbered by the ledger from 1, time-stamped if
 * the caller left ts_ns 0, kept apart from the nodes' chains. */
static void test_own_records(void **state)
{
	struct fx *f = *state;
	struct qkm_lc_event ev;
	size_t stored;

	memset(&ev, 0, sizeof(ev));
	snprintf(ev.event, sizeof(ev.event), "sae-registered");
	snprintf(ev.key_kind, sizeof(ev.key_kind), "ksa");
	snprintf(ev.detail, sizeof(ev.detail), "sae app1 at node1");
	for (int64_t i = 1; i <= 3; i++) {
		ev.ts_ns = i == 2 ? 42 : 0;
		ev.seq = 77;
		assert_int_equal(qkm_ledger_append_own(f->lg, "ctl1", &ev), 0);
		assert_int_equal(ev.seq, i);
		if (i == 2)
			assert_int_equal(ev.ts_ns, 42);
		else
			assert_true(ev.ts_ns > 1600000000000000000ull);
	}
	assert_int_equal(last_seq(f->lg, "ctl1"), 3);
	/* A node cannot write into the manager's chain, nor the manager into a
	 * node's. */
	append_ok(f->lg, "node1", 1, 1);
	assert_int_equal(append_range(f->lg, "ctl1", 4, 4, &stored), QKM_EPERM);
	assert_int_equal(qkm_ledger_append_own(f->lg, "node1", &ev), QKM_EPERM);
	reopen(f);
	assert_int_equal(append_range(f->lg, "ctl1", 4, 4, &stored), QKM_EPERM);
	assert_int_equal(qkm_ledger_append_own(f->lg, "node1", &ev), QKM_EPERM);
	assert_int_equal(qkm_ledger_append_own(f->lg, "ctl1", &ev), 0);
	assert_int_equal(ev.seq, 4);

	struct got g = { 0 };
	assert_int_equal(qkm_ledger_records(f->lg, "ctl1", 0, NULL, NULL, 0, collect, &g), 0);
	assert_int_equal(g.n, 4);
	for (int i = 0; i < 4; i++) {
		assert_int_equal(g.ev[i].seq, i + 1);
		assert_string_equal(g.ev[i].detail, "sae app1 at node1");
	}
	struct findings fd;
	assert_int_equal(audit(f->lg, &fd), 0);
	assert_true(fd.c[0].own);
	assert_false(fd.c[1].own);
}

static int collect_node(const struct qkm_ledger_node *n, void *arg)
{
	struct qkm_ledger_node *out = arg;
	for (int i = 0; i < 4; i++)
		if (!out[i].node[0]) {
			out[i] = *n;
			return 0;
		}
	return 9;
}

/* The status list: every chain with its last seq, cheaply. */
static void test_nodes(void **state)
{
	struct fx *f = *state;
	struct qkm_ledger_node n[4];
	struct qkm_lc_event ev;

	append_ok(f->lg, "node2", 1, 4);
	append_ok(f->lg, "node1", 1, 2);
	memset(&ev, 0, sizeof(ev));
	snprintf(ev.event, sizeof(ev.event), "route-changed");
	assert_int_equal(qkm_ledger_append_own(f->lg, "ctl", &ev), 0);
	memset(n, 0, sizeof(n));
	assert_int_equal(qkm_ledger_nodes(f->lg, collect_node, n), 0);
	assert_string_equal(n[0].node, "ctl");
	assert_true(n[0].own);
	assert_int_equal(n[0].last_seq, 1);
	assert_int_equal(n[0].last_ts_ns, ev.ts_ns);
	assert_string_equal(n[1].node, "node1");
	assert_int_equal(n[1].last_seq, 2);
	assert_int_equal(n[1].last_ts_ns, mkev("node1", 2).ts_ns);
	assert_string_equal(n[2].node, "node2");
	assert_int_equal(n[2].last_seq, 4);
	assert_false(n[2].own);
	assert_int_equal(n[3].node[0], '\0');
}

/* R-LC-2 traces: filters by key (key_id or detail substring), event, after,
 * limit; a key ID prefix through the index; the callback's stop value. */
static void test_filters(void **state)
{
	struct fx *f = *state;
	struct got g;

	append_ok(f->lg, "node1", 1, 9);
	append_ok(f->lg, "node2", 1, 9);
	/* key_id of seq 3 is "00000003000...[0..9]"; detail names it too */
	memset(&g, 0, sizeof(g));
	assert_int_equal(qkm_ledger_records(f->lg, NULL, 0, "00000003", NULL, 0, collect, &g), 0);
	assert_int_equal(g.n, 2);
	assert_string_equal(g.node[0], "node1");
	assert_string_equal(g.node[1], "node2");
	memset(&g, 0, sizeof(g));
	assert_int_equal(qkm_ledger_records(f->lg, "node2", 0, "batch 7 of", NULL, 0, collect, &g),
			 0);
	assert_int_equal(g.n, 1);
	assert_int_equal(g.ev[0].seq, 7);
	/* no wildcards: '%' and '_' are plain characters */
	memset(&g, 0, sizeof(g));
	assert_int_equal(qkm_ledger_records(f->lg, NULL, 0, "batch_7", NULL, 0, collect, &g), 0);
	assert_int_equal(g.n, 0);
	assert_int_equal(qkm_ledger_records(f->lg, NULL, 0, "%", NULL, 0, collect, &g), 0);
	assert_int_equal(g.n, 0);
	/* event: seq 3, 6, 9 are "supplied" */
	memset(&g, 0, sizeof(g));
	assert_int_equal(qkm_ledger_records(f->lg, "node1", 0, NULL, "supplied", 0, collect, &g), 0);
	assert_int_equal(g.n, 3);
	assert_int_equal(g.ev[2].seq, 9);
	/* after and limit */
	memset(&g, 0, sizeof(g));
	assert_int_equal(qkm_ledger_records(f->lg, "node1", 4, NULL, NULL, 2, collect, &g), 0);
	assert_int_equal(g.n, 2);
	assert_int_equal(g.ev[0].seq, 5);
	assert_int_equal(g.ev[1].seq, 6);
	memset(&g, 0, sizeof(g));
	assert_int_equal(qkm_ledger_records(f->lg, NULL, 8, NULL, NULL, 0, collect, &g), 0);
	assert_int_equal(g.n, 2);
	assert_string_equal(g.node[1], "node2");
	assert_int_equal(g.ev[1].seq, 9);
	/* stop */
	memset(&g, 0, sizeof(g));
	g.stop_after = 3;
	assert_int_equal(qkm_ledger_records(f->lg, NULL, 0, NULL, NULL, 0, collect, &g), 7);
	assert_int_equal(g.n, 3);
	/* key ID prefix: a batch's records in every node */
	memset(&g, 0, sizeof(g));
	assert_int_equal(qkm_ledger_key_records(f->lg, "00000005", 0, collect, &g), 0);
	assert_int_equal(g.n, 2);
	assert_string_equal(g.ev[0].key_id, mkev("x", 5).key_id);
	assert_string_equal(g.node[0], "node1");
	assert_string_equal(g.node[1], "node2");
	memset(&g, 0, sizeof(g));
	assert_int_equal(qkm_ledger_key_records(f->lg, "0000000", 3, collect, &g), 0);
	assert_int_equal(g.n, 3);
	memset(&g, 0, sizeof(g));
	assert_int_equal(qkm_ledger_key_records(f->lg, "00000005000000000000000000000000[0..9]", 0,
						collect, &g),
			 0);
	assert_int_equal(g.n, 2);
	memset(&g, 0, sizeof(g));
	assert_int_equal(qkm_ledger_key_records(f->lg, "1", 0, collect, &g), 0);
	assert_int_equal(g.n, 0);
	assert_int_equal(qkm_ledger_key_records(f->lg, "", 0, collect, &g), QKM_EINVAL);
	/* the callback cannot append or walk */
	memset(&g, 0, sizeof(g));
	g.lg = f->lg;
	g.stop_after = 1;
	assert_int_equal(qkm_ledger_records(f->lg, "node1", 0, NULL, NULL, 0, collect, &g), 7);
	assert_int_equal(g.reenter_err, QKM_ESTATE);
}

/* Lineage lookups (R-LC-2, R-LC-3): the records whose detail names a key
 * (a batch by its 24 hex digits, a KSA-key by its UUID) come through the
 * refs index, each once however often its detail names the key. */
static void test_ref_records(void **state)
{
	struct fx *f = *state;
	struct qkm_lc_event ev[3];
	struct got g;
	size_t stored;
	const char *a = "aaaaaaaaaaaaaaaaaaaaaaaa", *b = "bbbbbbbbbbbbbbbbbbbbbbbb";
	const char *u = "0c9a6be5-8cb1-48e2-b2e3-d3806645fba4";
	for (int i = 0; i < 3; i++) {
		ev[i] = mkev("node1", i + 1);
		snprintf(ev[i].key_id, sizeof(ev[i].key_id), "%s%08x[0..9]", i == 2 ? b : a, 0);
	}
	snprintf(ev[0].detail, sizeof(ev[0].detail),
		 "key data from %s00000001+0:10,%s00000002+0:5; link key %s00000003+0:1", b, b, b);
	snprintf(ev[1].detail, sizeof(ev[1].detail), "256 bits from %s; %s", u, "no key here");
	snprintf(ev[2].detail, sizeof(ev[2].detail), "not a token: %s0000000 or f%s00000000", b, b);
	assert_int_equal(qkm_ledger_append(f->lg, "node1", ev, 3, &stored), 0);
	memset(&g, 0, sizeof(g));
	assert_int_equal(qkm_ledger_ref_records(f->lg, b, 0, collect, &g), 0);
	assert_int_equal(g.n, 1);
	assert_int_equal(g.ev[0].seq, 1);
	memset(&g, 0, sizeof(g));
	assert_int_equal(qkm_ledger_ref_records(f->lg, "0c9a6be5-8cb1-48e2-b2e3-d380", 0, collect, &g),
			 0); /* a KSA round's token: the UUID but its last 8 digits */
	assert_int_equal(g.n, 1);
	assert_int_equal(g.ev[0].seq, 2);
	memset(&g, 0, sizeof(g));
	assert_int_equal(qkm_ledger_ref_records(f->lg, a, 0, collect, &g), 0);
	assert_int_equal(g.n, 0);
	assert_int_equal(qkm_ledger_ref_records(f->lg, "", 0, collect, &g), QKM_EINVAL);
}

static void test_invalid_input(void **state)
{
	struct fx *f = *state;
	struct qkm_lc_event ev = mkev("node1", 1);
	size_t stored = 9;
	int64_t seq;

	assert_int_equal(qkm_ledger_append(f->lg, "bad name", &ev, 1, &stored), QKM_EINVAL);
	assert_int_equal(stored, 0);
	assert_int_equal(qkm_ledger_append(f->lg, "", &ev, 1, &stored), QKM_EINVAL);
	assert_int_equal(qkm_ledger_append(f->lg, NULL, &ev, 1, &stored), QKM_EINVAL);
	assert_int_equal(qkm_ledger_last_seq(f->lg, "a/b", &seq), QKM_EINVAL);
	ev.seq = 0;
	assert_int_equal(qkm_ledger_append(f->lg, "node1", &ev, 1, &stored), QKM_EINVAL);
	ev = mkev("node1", 1);
	memset(ev.detail, 'a', sizeof(ev.detail)); /* not NUL-terminated */
	assert_int_equal(qkm_ledger_append(f->lg, "node1", &ev, 1, &stored), QKM_EINVAL);
	ev = mkev("node1", 1);
	memset(ev.key_id, 'k', sizeof(ev.key_id));
	assert_int_equal(qkm_ledger_append(f->lg, "node1", &ev, 1, &stored), QKM_EINVAL);
	assert_int_equal(qkm_ledger_append_own(f->lg, "bad name", &ev), QKM_EINVAL);
	assert_int_equal(last_seq(f->lg, "node1"), 0);
	/* empty text fields are fine */
	ev = mkev("node1", 1);
	ev.peer[0] = ev.detail[0] = ev.key_id[0] = '\0';
	assert_int_equal(qkm_ledger_append(f->lg, "node1", &ev, 1, &stored), 0);
	struct findings fd;
	assert_int_equal(audit(f->lg, &fd), 0);
}

/* The file: 0600; another schema version, or a node's key store, refused. */
static void test_file(void **state)
{
	struct fx *f = *state;
	struct stat sb;
	struct qkm_ledger *lg = NULL;
	char other[PATH_MAX];

	assert_int_equal(stat(f->path, &sb), 0);
	assert_int_equal(sb.st_mode & 0777, 0600);

	snprintf(other, sizeof(other), "%s.store", f->path);
	struct qkm_store *st = NULL;
	assert_int_equal(qkm_store_open(other, &st), 0);
	qkm_store_close(st);
	assert_int_equal(qkm_ledger_open(other, &lg), QKM_EVERSION);
	assert_null(lg);
	(void)qkm_store_remove(other);

	append_ok(f->lg, "node1", 1, 1);
	qkm_ledger_close(f->lg);
	f->lg = NULL;
	raw_sql(f, "PRAGMA user_version = 2");
	assert_int_equal(qkm_ledger_open(f->path, &lg), QKM_EVERSION);
	assert_null(lg);
	raw_sql(f, "PRAGMA user_version = 1");
	assert_int_equal(qkm_ledger_open(f->path, &f->lg), 0);
	assert_int_equal(last_seq(f->lg, "node1"), 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_append_read_back, setup, teardown),
		cmocka_unit_test_setup_teardown(test_resend_identical_skipped, setup, teardown),
		cmocka_unit_test_setup_teardown(test_resend_different_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_gap_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_two_chains_and_hash_definition, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_hash_fields_cannot_shift, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reopen_keeps_chain, setup, teardown),
		cmocka_unit_test_setup_teardown(test_audit_clean, setup, teardown),
		cmocka_unit_test_setup_teardown(test_audit_changed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_audit_missing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_audit_tail_deleted, setup, teardown),
		cmocka_unit_test_setup_teardown(test_audit_tail_deleted_live, setup, teardown),
		cmocka_unit_test_setup_teardown(test_audit_rehashed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_audit_extra, setup, teardown),
		cmocka_unit_test_setup_teardown(test_own_records, setup, teardown),
		cmocka_unit_test_setup_teardown(test_nodes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_filters, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ref_records, setup, teardown),
		cmocka_unit_test_setup_teardown(test_invalid_input, setup, teardown),
		cmocka_unit_test_setup_teardown(test_file, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
