/* test_store.c - the SQLite key store (store/store.c): blocks, pools, batches,
 * consumption, life-cycle records (R-LC-1), counters, transactions, schema
 * versioning, and that deleted or consumed key bytes leave the database and
 * WAL files (R-LC-1 deletion; DESIGN "Store"). */
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

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "core/secret.h"
#include "store/store.h"

#include <sqlite3.h>

struct fx {
	char dir[PATH_MAX - 64];
	char path[PATH_MAX - 32];
	struct qkm_store *st;
};

static void fx_path(const struct fx *f, const char *suffix, char out[static PATH_MAX])
{
	snprintf(out, PATH_MAX, "%s%s", f->path, suffix);
}

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	const char *tmp = getenv("QKM_TEST_TMP");
	if (!f || qkm_secret_heap_init(1 << 22) != 0)
		return -1;
	if (!tmp || !*tmp)
		tmp = "/tmp";
	if (mkdir(tmp, 0700) != 0 && errno != EEXIST)
		return -1;
	snprintf(f->dir, sizeof(f->dir), "%s/store-XXXXXX", tmp);
	if (!mkdtemp(f->dir))
		return -1;
	snprintf(f->path, sizeof(f->path), "%s/keys.db", f->dir);
	if (qkm_store_open(f->path, &f->st) != 0)
		return -1;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	qkm_store_close(f->st);
	assert_int_equal(qkm_store_remove(f->path), 0);
	rmdir(f->dir);
	free(f);
	return 0;
}

static void reopen(struct fx *f)
{
	qkm_store_close(f->st);
	f->st = NULL;
	assert_int_equal(qkm_store_open(f->path, &f->st), 0);
}

/* Runs sql on a store file no store has open (a downgrade, a loss by hand). */
static void file_exec(const char *path, const char *sql)
{
	sqlite3 *db;
	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_close(db), SQLITE_OK);
}

static struct qkm_id batch(uint8_t tag)
{
	struct qkm_id id;
	memset(&id, 0, sizeof(id));
	id.b[0] = 0xb1;
	id.b[1] = tag;
	return id;
}

/* A block with data: random bytes, or the caller's pattern if given. */
static void mkblock(struct qkm_block *b, const char *peer, enum qkm_key_type kt,
		    enum qkm_block_state state, uint8_t tag, uint32_t first, uint32_t count,
		    uint32_t unit, uint64_t created, const uint8_t *pattern)
{
	memset(b, 0, sizeof(*b));
	snprintf(b->peer, sizeof(b->peer), "%s", peer);
	b->pool_kind = QKM_POOL_LINK;
	b->batch_id = batch(tag);
	b->first_index = first;
	b->count = count;
	b->unit_bytes = unit;
	b->key_type = kt;
	b->state = state;
	b->created_ns = created;
	snprintf(b->qkd_module_id, sizeof(b->qkd_module_id), "qkd-a1");
	snprintf(b->matching_qkd_module_id, sizeof(b->matching_qkd_module_id), "qkd-b1");
	b->data = qkm_secret_new((size_t)count * unit);
	assert_non_null(b->data);
	if (pattern)
		memcpy(b->data->p, pattern, b->data->len);
	else
		assert_int_equal(RAND_bytes(b->data->p, (int)b->data->len), 1);
}

static void put(struct qkm_store *st, struct qkm_block *b)
{
	assert_int_equal(qkm_store_block_put(st, b), 0);
	assert_true(b->rowid > 0);
}

/* Collects the blocks of a walk, with copies of their data. */
#define MAXB 16
struct seen {
	int n;
	struct qkm_block b[MAXB];
	int stop_after; /* return 7 after this many, 0 = never */
};

static int collect(struct qkm_block *b, void *arg)
{
	struct seen *s = arg;
	assert_true(s->n < MAXB);
	s->b[s->n] = *b;
	b->data = NULL; /* take ownership */
	s->n++;
	return s->stop_after && s->n == s->stop_after ? 7 : 0;
}

static void seen_free(struct seen *s)
{
	for (int i = 0; i < s->n; i++)
		qkm_secret_free(s->b[i].data);
	memset(s, 0, sizeof(*s));
}

static int walk(struct qkm_store *st, const char *peer, unsigned mask, bool data, struct seen *s)
{
	memset(s, 0, sizeof(*s));
	return qkm_store_blocks(st, peer, mask, data, collect, s);
}

/* Pair-check's walk: a pool's blocks by position (batch ID bytes, then
 * first index), whatever their creation order or state, between exclusive
 * and inclusive bounds; other pools' blocks are never listed. */
static void test_blocks_range(void **state)
{
	struct fx *f = *state;
	struct qkm_block b[5];
	struct seen s;
	/* Positions: (3, 0) (3, 4) (5, 0) (9, 0); created in another order. */
	mkblock(&b[0], "node-b", QKM_KT_ENC, QKM_BLOCK_READY, 9, 0, 4, 32, 100, NULL);
	mkblock(&b[1], "node-b", QKM_KT_DEC, QKM_BLOCK_PENDING, 3, 4, 4, 32, 200, NULL);
	mkblock(&b[2], "node-b", QKM_KT_ENC, QKM_BLOCK_READY, 5, 0, 4, 32, 300, NULL);
	mkblock(&b[3], "node-b", QKM_KT_ENC, QKM_BLOCK_READY, 3, 0, 4, 32, 400, NULL);
	mkblock(&b[4], "node-c", QKM_KT_ENC, QKM_BLOCK_READY, 4, 0, 4, 32, 500, NULL);
	for (int i = 0; i < 5; i++)
		put(f->st, &b[i]);
	const int order[] = {3, 1, 2, 0};

	memset(&s, 0, sizeof(s));
	assert_int_equal(qkm_store_blocks_range(f->st, "node-b", NULL, NULL, true, collect, &s), 0);
	assert_int_equal(s.n, 4);
	for (int i = 0; i < 4; i++) {
		assert_int_equal(s.b[i].rowid, b[order[i]].rowid);
		assert_memory_equal(s.b[i].data->p, b[order[i]].data->p, 128);
	}
	seen_free(&s);

	/* After (3, 0), up to (5, 0): (3, 4) and (5, 0). */
	struct qkm_block_pos after = {batch(3), 0}, upto = {batch(5), 0};
	assert_int_equal(
	    qkm_store_blocks_range(f->st, "node-b", &after, &upto, false, collect, &s), 0);
	assert_int_equal(s.n, 2);
	assert_int_equal(s.b[0].rowid, b[1].rowid);
	assert_int_equal(s.b[1].rowid, b[2].rowid);
	assert_null(s.b[0].data);
	seen_free(&s);

	/* After the last: nothing; a stop from the callback is returned. */
	after = (struct qkm_block_pos){batch(9), 0};
	assert_int_equal(qkm_store_blocks_range(f->st, "node-b", &after, NULL, true, collect, &s), 0);
	assert_int_equal(s.n, 0);
	s.stop_after = 1;
	assert_int_equal(qkm_store_blocks_range(f->st, "node-b", NULL, &upto, true, collect, &s), 7);
	assert_int_equal(s.n, 1);
	seen_free(&s);
	for (int i = 0; i < 5; i++)
		qkm_secret_free(b[i].data);
}

/* R-LC-1 storage: blocks round-trip with metadata and data, are listed per
 * pool in creation order, filtered by state, change state per batch, and go
 * on batch delete. */
static void test_put_list_state_delete(void **state)
{
	struct fx *f = *state;
	struct qkm_block a, b, c, other;
	struct seen s;
	enum qkm_block_state bs;

	mkblock(&a, "node-b", QKM_KT_ENC, QKM_BLOCK_PENDING, 1, 0, 4, 32, 300, NULL);
	mkblock(&b, "node-b", QKM_KT_DEC, QKM_BLOCK_PENDING, 1, 4, 4, 32, 100, NULL);
	mkblock(&c, "node-b", QKM_KT_ENC, QKM_BLOCK_READY, 2, 0, 2, 64, 200, NULL);
	mkblock(&other, "node-c", QKM_KT_ENC, QKM_BLOCK_READY, 3, 0, 2, 64, 50, NULL);
	put(f->st, &a);
	put(f->st, &b);
	put(f->st, &c);
	put(f->st, &other);

	assert_int_equal(walk(f->st, "node-b", 0, true, &s), 0);
	assert_int_equal(s.n, 3);
	/* created order: b (100), c (200), a (300) */
	assert_int_equal(s.b[0].rowid, b.rowid);
	assert_int_equal(s.b[1].rowid, c.rowid);
	assert_int_equal(s.b[2].rowid, a.rowid);
	assert_string_equal(s.b[2].peer, "node-b");
	assert_int_equal(s.b[2].pool_kind, QKM_POOL_LINK);
	assert_true(qkm_id_eq(&s.b[2].batch_id, &a.batch_id));
	assert_int_equal(s.b[0].first_index, 4);
	assert_int_equal(s.b[2].count, 4);
	assert_int_equal(s.b[2].unit_bytes, 32);
	assert_int_equal(s.b[2].used, 0);
	assert_int_equal(s.b[2].key_type, QKM_KT_ENC);
	assert_int_equal(s.b[0].key_type, QKM_KT_DEC);
	assert_int_equal(s.b[2].state, QKM_BLOCK_PENDING);
	assert_true(s.b[2].created_ns == 300);
	assert_string_equal(s.b[2].qkd_module_id, "qkd-a1");
	assert_string_equal(s.b[2].matching_qkd_module_id, "qkd-b1");
	assert_int_equal(s.b[2].data->len, 128);
	assert_memory_equal(s.b[2].data->p, a.data->p, 128);
	assert_memory_equal(s.b[1].data->p, c.data->p, 128);
	seen_free(&s);

	/* without data, filtered by state, and a callback that stops the walk */
	assert_int_equal(walk(f->st, "node-b", 1u << QKM_BLOCK_READY, false, &s), 0);
	assert_int_equal(s.n, 1);
	assert_null(s.b[0].data);
	assert_int_equal(s.b[0].rowid, c.rowid);
	seen_free(&s);
	memset(&s, 0, sizeof(s));
	s.stop_after = 1;
	assert_int_equal(qkm_store_blocks(f->st, "node-b", 0, true, collect, &s), 7);
	assert_int_equal(s.n, 1);
	seen_free(&s);

	/* duplicates and bad blocks are refused, and change nothing */
	struct qkm_block dup = a;
	assert_int_equal(qkm_store_block_put(f->st, &dup), QKM_EEXIST);
	dup.first_index = 100;
	dup.count = 3; /* 3 * 32 != 128 bytes of data */
	assert_int_equal(qkm_store_block_put(f->st, &dup), QKM_EINVAL);
	dup.count = 4;
	dup.batch_id.b[15] = 1; /* key index bytes of a batch ID must be 0 */
	assert_int_equal(qkm_store_block_put(f->st, &dup), QKM_EINVAL);
	dup.batch_id.b[15] = 0;
	snprintf(dup.peer, sizeof(dup.peer), "bad peer");
	assert_int_equal(qkm_store_block_put(f->st, &dup), QKM_EINVAL);
	assert_int_equal(walk(f->st, "node-b", 0, false, &s), 0);
	assert_int_equal(s.n, 3);

	/* a batch changes state as a whole */
	assert_int_equal(qkm_store_batch_state(f->st, &a.batch_id, &bs), 0);
	assert_int_equal(bs, QKM_BLOCK_PENDING);
	assert_int_equal(qkm_store_batch_set_state(f->st, &a.batch_id, QKM_BLOCK_READY), 0);
	assert_int_equal(walk(f->st, "node-b", 1u << QKM_BLOCK_READY, false, &s), 0);
	assert_int_equal(s.n, 3);
	struct qkm_id none = batch(99);
	assert_int_equal(qkm_store_batch_set_state(f->st, &none, QKM_BLOCK_READY),
			 QKM_ENOTFOUND);
	assert_int_equal(qkm_store_batch_state(f->st, &none, &bs), 0);
	assert_int_equal(bs, 0);

	/* delete takes every block of the batch, nothing else */
	assert_int_equal(qkm_store_batch_delete(f->st, &a.batch_id), 0);
	assert_int_equal(qkm_store_batch_state(f->st, &a.batch_id, &bs), 0);
	assert_int_equal(bs, 0);
	assert_int_equal(walk(f->st, "node-b", 0, false, &s), 0);
	assert_int_equal(s.n, 1);
	assert_int_equal(s.b[0].rowid, c.rowid);
	assert_int_equal(qkm_store_batch_delete(f->st, &a.batch_id), QKM_ENOTFOUND);
	assert_int_equal(walk(f->st, "node-c", 0, false, &s), 0);
	assert_int_equal(s.n, 1);

	qkm_secret_free(a.data);
	qkm_secret_free(b.data);
	qkm_secret_free(c.data);
	qkm_secret_free(other.data);
}

/* R-CTL-2 stock per peer: only READY, only unused keys, split by key type;
 * PENDING counted apart. */
static void test_pool_stats(void **state)
{
	struct fx *f = *state;
	struct qkm_block b[5];
	struct qkm_pool_stats ps;

	mkblock(&b[0], "node-b", QKM_KT_ENC, QKM_BLOCK_READY, 1, 0, 10, 32, 1, NULL);
	mkblock(&b[1], "node-b", QKM_KT_DEC, QKM_BLOCK_READY, 1, 10, 6, 32, 2, NULL);
	mkblock(&b[2], "node-b", QKM_KT_ENC, QKM_BLOCK_READY, 2, 0, 4, 64, 3, NULL);
	mkblock(&b[3], "node-b", QKM_KT_ENC, QKM_BLOCK_PENDING, 3, 0, 7, 32, 4, NULL);
	mkblock(&b[4], "node-c", QKM_KT_DEC, QKM_BLOCK_READY, 4, 0, 5, 32, 5, NULL);
	for (int i = 0; i < 5; i++)
		put(f->st, &b[i]);
	assert_int_equal(qkm_store_block_set_used(f->st, b[0].rowid, 3 * 32), 0);

	assert_int_equal(qkm_store_pool_stats(f->st, "node-b", &ps), 0);
	assert_int_equal(ps.keys, 7 + 6 + 4);
	assert_int_equal(ps.enc_bytes, 7 * 32 + 4 * 64);
	assert_int_equal(ps.dec_bytes, 6 * 32);
	assert_int_equal(ps.bytes, ps.enc_bytes + ps.dec_bytes);
	assert_int_equal(ps.pending_keys, 7);

	assert_int_equal(qkm_store_pool_stats(f->st, "node-c", &ps), 0);
	assert_int_equal(ps.keys, 5);
	assert_int_equal(ps.dec_bytes, 160);
	assert_int_equal(ps.enc_bytes, 0);
	assert_int_equal(ps.pending_keys, 0);

	/* pending becomes ready on the pair's commit */
	assert_int_equal(qkm_store_batch_set_state(f->st, &b[3].batch_id, QKM_BLOCK_READY), 0);
	assert_int_equal(qkm_store_pool_stats(f->st, "node-b", &ps), 0);
	assert_int_equal(ps.keys, 7 + 6 + 4 + 7);
	assert_int_equal(ps.enc_bytes, 7 * 32 + 4 * 64 + 7 * 32);
	assert_int_equal(ps.pending_keys, 0);

	assert_int_equal(qkm_store_pool_stats(f->st, "node-x", &ps), 0);
	assert_int_equal(ps.keys, 0);
	assert_int_equal(ps.bytes, 0);
	for (int i = 0; i < 5; i++)
		qkm_secret_free(b[i].data);
}

/* R-SUP-8 delete-after-supply: consumed keys read back as zeros, the rest
 * intact; consumption never goes back; the block goes once fully used. */
static void test_set_used(void **state)
{
	struct fx *f = *state;
	struct qkm_block b;
	struct qkm_pool_stats ps;
	struct seen s;
	uint8_t zero[96] = {0};

	mkblock(&b, "node-b", QKM_KT_ENC, QKM_BLOCK_READY, 1, 0, 8, 32, 1, NULL);
	put(f->st, &b);
	assert_int_equal(qkm_store_block_set_used(f->st, b.rowid, 96), 0);
	assert_int_equal(walk(f->st, "node-b", 0, true, &s), 0);
	assert_int_equal(s.n, 1);
	assert_int_equal(s.b[0].used, 96);
	assert_memory_equal(s.b[0].data->p, zero, 96);
	assert_memory_equal(s.b[0].data->p + 96, b.data->p + 96, 256 - 96);
	seen_free(&s);

	assert_int_equal(qkm_store_block_set_used(f->st, b.rowid, 95), QKM_EINVAL);
	assert_int_equal(qkm_store_block_set_used(f->st, b.rowid, 257), QKM_EINVAL);
	assert_int_equal(qkm_store_block_set_used(f->st, b.rowid, 96), 0);
	assert_int_equal(qkm_store_block_set_used(f->st, 424242, 1), QKM_ENOTFOUND);

	assert_int_equal(qkm_store_pool_stats(f->st, "node-b", &ps), 0);
	assert_int_equal(ps.keys, 5);
	assert_int_equal(ps.bytes, 160);
	/* R-SUP-5: a partly used KMA-key stays usable as its remainder. */
	assert_int_equal(qkm_store_block_set_used(f->st, b.rowid, 100), 0);
	assert_int_equal(qkm_store_pool_stats(f->st, "node-b", &ps), 0);
	assert_int_equal(ps.keys, 5);
	assert_int_equal(ps.bytes, 156);

	assert_int_equal(qkm_store_block_set_used(f->st, b.rowid, 256), 0);
	assert_int_equal(walk(f->st, "node-b", 0, false, &s), 0);
	assert_int_equal(s.n, 0);
	assert_int_equal(qkm_store_pool_stats(f->st, "node-b", &ps), 0);
	assert_int_equal(ps.keys, 0);
	assert_int_equal(qkm_store_block_set_used(f->st, b.rowid, 256), QKM_ENOTFOUND);
	/* Issue #8: every byte consumed counts once for the pool (refused and
	 * repeated calls add nothing), the last ones too as the block goes;
	 * other pools are untouched. */
	uint64_t consumed;
	assert_int_equal(qkm_store_pool_consumed(f->st, "node-b", &consumed), 0);
	assert_int_equal(consumed, 256);
	assert_int_equal(qkm_store_pool_consumed(f->st, "node-x", &consumed), 0);
	assert_int_equal(consumed, 0);
	qkm_secret_free(b.data);
}

struct recs {
	int n;
	struct qkm_lc_event ev[8];
};

static int rec_collect(const struct qkm_lc_event *ev, void *arg)
{
	struct recs *r = arg;
	assert_true(r->n < 8);
	r->ev[r->n++] = *ev;
	return 0;
}

/* R-LC-1: records are appended in order with increasing seq, read back
 * exactly, listed after a seq and up to a limit. */
static void test_records(void **state)
{
	struct fx *f = *state;
	static const char *const events[] = {"received", "formatted", "confirmed", "stored",
					     "supplied"};
	struct qkm_lc_event ev[5];
	struct recs r;

	for (int i = 0; i < 5; i++) {
		memset(&ev[i], 0, sizeof(ev[i]));
		ev[i].ts_ns = i == 0 ? 0 : 1000 + (uint64_t)i;
		snprintf(ev[i].event, sizeof(ev[i].event), "%s", events[i]);
		snprintf(ev[i].key_kind, sizeof(ev[i].key_kind), "kma");
		snprintf(ev[i].key_id, sizeof(ev[i].key_id), "b1%030d[0..%d]", i, i + 9);
		snprintf(ev[i].peer, sizeof(ev[i].peer), "node-b");
		snprintf(ev[i].detail, sizeof(ev[i].detail), "round %d", i);
		assert_int_equal(qkm_store_record(f->st, &ev[i]), 0);
		if (i > 0)
			assert_true(ev[i].seq > ev[i - 1].seq);
	}
	assert_true(ev[0].ts_ns > 0); /* 0 means now */

	memset(&r, 0, sizeof(r));
	assert_int_equal(qkm_store_records(f->st, 0, 0, rec_collect, &r), 0);
	assert_int_equal(r.n, 5);
	for (int i = 0; i < 5; i++) {
		assert_int_equal(r.ev[i].seq, ev[i].seq);
		assert_true(r.ev[i].ts_ns == ev[i].ts_ns);
		assert_string_equal(r.ev[i].event, events[i]);
		assert_string_equal(r.ev[i].key_kind, "kma");
		assert_string_equal(r.ev[i].key_id, ev[i].key_id);
		assert_string_equal(r.ev[i].peer, "node-b");
		assert_string_equal(r.ev[i].detail, ev[i].detail);
	}

	memset(&r, 0, sizeof(r));
	assert_int_equal(qkm_store_records(f->st, ev[2].seq, 0, rec_collect, &r), 0);
	assert_int_equal(r.n, 2);
	assert_int_equal(r.ev[0].seq, ev[3].seq);
	memset(&r, 0, sizeof(r));
	assert_int_equal(qkm_store_records(f->st, ev[0].seq, 1, rec_collect, &r), 0);
	assert_int_equal(r.n, 1);
	assert_int_equal(r.ev[0].seq, ev[1].seq);
}

/* retention_s and the manager (schema 11): records up to a seq the
 * manager holds and older than the cut-off go, oldest first, a batch at a
 * time; younger ones, and every record above the highest upto_seq given,
 * stay, and a DELETE above it by any other path still fails. A version 10
 * file (lc wholly append-only) gets the new trigger. */
static void test_lc_prune(void **state)
{
	struct fx *f = *state;
	struct qkm_lc_event ev[8];
	struct recs r;
	uint64_t n;
	for (int i = 0; i < 8; i++) {
		memset(&ev[i], 0, sizeof(ev[i]));
		/* ts 1000 + i, but record 2 made "late" (a clock step): 2000 */
		ev[i].ts_ns = i == 2 ? 2000 : 1000 + (uint64_t)i;
		snprintf(ev[i].event, sizeof(ev[i].event), "stored");
		snprintf(ev[i].key_kind, sizeof(ev[i].key_kind), "kma");
		snprintf(ev[i].key_id, sizeof(ev[i].key_id), "k%d", i);
		assert_int_equal(qkm_store_record(f->st, &ev[i]), 0);
	}
	/* Nothing yet below the watermark: lc is append-only. */
	sqlite3 *db;
	assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_busy_timeout(db, 5000), SQLITE_OK);
	assert_int_not_equal(sqlite3_exec(db, "DELETE FROM lc WHERE seq = 1", NULL, NULL, NULL),
			     SQLITE_OK);
	assert_int_equal(qkm_store_lc_prune(f->st, 0, 5000, 100, &n), 0);
	assert_int_equal(n, 0);
	/* Up to record 6 (index 5), made before 1004: 0, 1, 3 (2 is younger). */
	assert_int_equal(qkm_store_lc_prune(f->st, ev[5].seq, 1004, 2, &n), 0);
	assert_int_equal(n, 2);
	assert_int_equal(qkm_store_lc_prune(f->st, ev[5].seq, 1004, 100, &n), 0);
	assert_int_equal(n, 1);
	memset(&r, 0, sizeof(r));
	assert_int_equal(qkm_store_records(f->st, 0, 0, rec_collect, &r), 0);
	assert_int_equal(r.n, 5);
	assert_string_equal(r.ev[0].key_id, "k2");
	assert_string_equal(r.ev[1].key_id, "k4");
	/* Above the watermark, a DELETE still fails; at or below it, the
	 * prune's own rule (no other code deletes lc). */
	char sql[64];
	snprintf(sql, sizeof(sql), "DELETE FROM lc WHERE seq = %lld", (long long)ev[6].seq);
	assert_int_not_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_close(db), SQLITE_OK);
	/* A later cut-off takes the late one and those up to the new mark;
	 * seqs are never reused. */
	assert_int_equal(qkm_store_lc_prune(f->st, ev[6].seq, 5000, 100, &n), 0);
	assert_int_equal(n, 4);
	struct qkm_lc_event one = ev[7];
	one.ts_ns = 0;
	assert_int_equal(qkm_store_record(f->st, &one), 0);
	assert_true(one.seq > ev[7].seq);

	/* Version 10's trigger refused every DELETE; an upgraded file takes the
	 * watermark's. */
	qkm_store_close(f->st);
	f->st = NULL;
	file_exec(f->path, "BEGIN; DROP TRIGGER lc_no_delete; DROP INDEX ksa_gone; ALTER TABLE ksa_keys DROP COLUMN dmap; ALTER TABLE ksa_keys DROP COLUMN cmap;"
		  "CREATE TRIGGER lc_no_delete BEFORE DELETE ON lc"
		  " BEGIN SELECT RAISE(ABORT, 'lc is append-only'); END;"
		  "PRAGMA user_version = 10; COMMIT;");
	assert_int_equal(qkm_store_open(f->path, &f->st), 0);
	assert_int_equal(qkm_store_lc_prune(f->st, ev[7].seq, 5000, 100, &n), 0);
	assert_int_equal(n, 1);
	memset(&r, 0, sizeof(r));
	assert_int_equal(qkm_store_records(f->st, 0, 0, rec_collect, &r), 0);
	assert_int_equal(r.n, 1);
	assert_true(r.ev[0].seq == one.seq);
}

static void test_counters(void **state)
{
	struct fx *f = *state;
	int64_t v = -1;
	assert_int_equal(qkm_store_counter_get(f->st, "acquired_bytes", &v), 0);
	assert_int_equal(v, 0);
	assert_int_equal(qkm_store_counter_add(f->st, "acquired_bytes", 4096), 0);
	assert_int_equal(qkm_store_counter_add(f->st, "acquired_bytes", 1024), 0);
	assert_int_equal(qkm_store_counter_add(f->st, "aborted_batches", 1), 0);
	assert_int_equal(qkm_store_counter_add(f->st, "aborted_batches", -1), 0);
	assert_int_equal(qkm_store_counter_get(f->st, "acquired_bytes", &v), 0);
	assert_int_equal(v, 5120);
	assert_int_equal(qkm_store_counter_get(f->st, "aborted_batches", &v), 0);
	assert_int_equal(v, 0);
	assert_int_equal(qkm_store_counter_add(f->st, "", 1), QKM_EINVAL);
}

struct ctr_seen {
	char names[4][32];
	int64_t values[4];
	size_t n;
};

static int ctr_collect(const char *name, int64_t value, void *arg)
{
	struct ctr_seen *c = arg;
	if (c->n == 4)
		return 99;
	snprintf(c->names[c->n], sizeof(c->names[0]), "%s", name);
	c->values[c->n++] = value;
	return 0;
}

/* Counters listed by name prefix (the node status's per-SAE counts). */
static void test_counters_prefix(void **state)
{
	struct fx *f = *state;
	struct ctr_seen c = {0};
	assert_int_equal(qkm_store_counter_add(f->st, "sae/b/enc", 3), 0);
	assert_int_equal(qkm_store_counter_add(f->st, "sae/a/dec", 2), 0);
	assert_int_equal(qkm_store_counter_add(f->st, "sae/a/enc", 1), 0);
	assert_int_equal(qkm_store_counter_add(f->st, "supplied_keys", 6), 0);
	assert_int_equal(qkm_store_counter_add(f->st, "xsae/c/enc", 9), 0);
	assert_int_equal(qkm_store_counters(f->st, "sae/", ctr_collect, &c), 0);
	assert_int_equal(c.n, 3);
	assert_string_equal(c.names[0], "sae/a/dec");
	assert_int_equal(c.values[0], 2);
	assert_string_equal(c.names[1], "sae/a/enc");
	assert_string_equal(c.names[2], "sae/b/enc");
	assert_int_equal(c.values[2], 3);
	memset(&c, 0, sizeof(c));
	assert_int_equal(qkm_store_counters(f->st, "nothing/", ctr_collect, &c), 0);
	assert_int_equal(c.n, 0);
	/* fn's nonzero answer stops the walk and is returned. */
	c.n = 4;
	assert_int_equal(qkm_store_counters(f->st, "", ctr_collect, &c), 99);
	assert_int_equal(qkm_store_counters(f->st, NULL, ctr_collect, &c), QKM_EINVAL);
}

/* Durability: blocks, states, consumption, records and counters survive a
 * close and reopen. */
static void test_reopen_persists(void **state)
{
	struct fx *f = *state;
	struct qkm_block b;
	struct qkm_lc_event ev = {.ts_ns = 5};
	struct seen s;
	struct recs r;
	int64_t v;

	mkblock(&b, "node-b", QKM_KT_DEC, QKM_BLOCK_PENDING, 1, 0, 16, 32, 1, NULL);
	assert_int_equal(qkm_store_begin(f->st), 0);
	put(f->st, &b);
	snprintf(ev.event, sizeof(ev.event), "stored");
	snprintf(ev.key_kind, sizeof(ev.key_kind), "kma");
	assert_int_equal(qkm_store_record(f->st, &ev), 0);
	assert_int_equal(qkm_store_counter_add(f->st, "acquired_bytes", 512), 0);
	assert_int_equal(qkm_store_commit(f->st), 0);
	assert_int_equal(qkm_store_batch_set_state(f->st, &b.batch_id, QKM_BLOCK_READY), 0);
	assert_int_equal(qkm_store_block_set_used(f->st, b.rowid, 160), 0);

	reopen(f);
	assert_int_equal(walk(f->st, "node-b", 0, true, &s), 0);
	assert_int_equal(s.n, 1);
	assert_int_equal(s.b[0].rowid, b.rowid);
	assert_int_equal(s.b[0].state, QKM_BLOCK_READY);
	assert_int_equal(s.b[0].used, 160);
	assert_int_equal(s.b[0].key_type, QKM_KT_DEC);
	assert_memory_equal(s.b[0].data->p + 160, b.data->p + 160, 512 - 160);
	seen_free(&s);
	memset(&r, 0, sizeof(r));
	assert_int_equal(qkm_store_records(f->st, 0, 0, rec_collect, &r), 0);
	assert_int_equal(r.n, 1);
	assert_string_equal(r.ev[0].event, "stored");
	assert_int_equal(qkm_store_counter_get(f->st, "acquired_bytes", &v), 0);
	assert_int_equal(v, 512);
	qkm_secret_free(b.data);
}

/* Nothing of a rolled-back transaction remains, nor of one left open at
 * close; transactions do not nest. */
static void test_rollback(void **state)
{
	struct fx *f = *state;
	struct qkm_block b, c;
	struct qkm_lc_event ev = {.ts_ns = 5};
	struct seen s;
	struct recs r;
	int64_t v;

	assert_int_equal(qkm_store_commit(f->st), QKM_ESTATE);
	mkblock(&b, "node-b", QKM_KT_ENC, QKM_BLOCK_READY, 1, 0, 4, 32, 1, NULL);
	mkblock(&c, "node-b", QKM_KT_ENC, QKM_BLOCK_READY, 2, 0, 4, 32, 1, NULL);
	snprintf(ev.event, sizeof(ev.event), "stored");

	assert_int_equal(qkm_store_begin(f->st), 0);
	assert_int_equal(qkm_store_begin(f->st), QKM_ESTATE);
	put(f->st, &b);
	assert_int_equal(qkm_store_block_set_used(f->st, b.rowid, 64), 0);
	assert_int_equal(qkm_store_record(f->st, &ev), 0);
	assert_int_equal(qkm_store_counter_add(f->st, "acquired_bytes", 128), 0);
	assert_int_equal(qkm_store_checkpoint(f->st), QKM_ESTATE);
	qkm_store_rollback(f->st);

	assert_int_equal(walk(f->st, "node-b", 0, false, &s), 0);
	assert_int_equal(s.n, 0);
	memset(&r, 0, sizeof(r));
	assert_int_equal(qkm_store_records(f->st, 0, 0, rec_collect, &r), 0);
	assert_int_equal(r.n, 0);
	assert_int_equal(qkm_store_counter_get(f->st, "acquired_bytes", &v), 0);
	assert_int_equal(v, 0);
	/* the consumption undone is not counted either */
	uint64_t consumed;
	assert_int_equal(qkm_store_pool_consumed(f->st, "node-b", &consumed), 0);
	assert_int_equal(consumed, 0);

	/* the same block can be stored again afterwards */
	put(f->st, &b);
	assert_int_equal(qkm_store_begin(f->st), 0);
	put(f->st, &c);
	reopen(f); /* close with the transaction open */
	assert_int_equal(walk(f->st, "node-b", 0, false, &s), 0);
	assert_int_equal(s.n, 1);
	assert_int_equal(s.b[0].rowid, b.rowid);
	qkm_secret_free(b.data);
	qkm_secret_free(c.data);
}

/* Rebuilds a closed file of the current version as version 5 had it: each
 * block's bytes back in block_data (read from the key-data file at the
 * block's data_off, or from small_data), no data_off column, no small_data,
 * no key-data file, no KSA run counts (version 9). */
static void to_v5(const char *path)
{
	char kp[PATH_MAX];
	sqlite3 *db;
	sqlite3_stmt *s, *ins;
	snprintf(kp, sizeof(kp), "%s-keys", path);
	FILE *kf = fopen(kp, "rb");
	assert_non_null(kf);
	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db,
				      "BEGIN; CREATE TABLE block_data ("
				      " id INTEGER PRIMARY KEY REFERENCES blocks (id) ON DELETE CASCADE,"
				      " data BLOB NOT NULL);",
				      NULL, NULL, NULL),
			 SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(db,
					    "SELECT b.id, b.data_off, b.count * b.unit_bytes, d.data "
					    "FROM blocks b LEFT JOIN small_data d ON d.id = b.id",
					    -1, &s, NULL),
			 SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(db, "INSERT INTO block_data VALUES (?1, ?2)", -1, &ins,
					    NULL),
			 SQLITE_OK);
	while (sqlite3_step(s) == SQLITE_ROW) {
		size_t len = (size_t)sqlite3_column_int64(s, 2);
		uint8_t *buf = malloc(len);
		assert_non_null(buf);
		if (sqlite3_column_int64(s, 1) < 0) {
			assert_int_equal(sqlite3_column_bytes(s, 3), len);
			memcpy(buf, sqlite3_column_blob(s, 3), len);
		} else {
			assert_int_equal(fseek(kf, (long)sqlite3_column_int64(s, 1), SEEK_SET), 0);
			assert_int_equal(fread(buf, 1, len, kf), len);
		}
		sqlite3_bind_int64(ins, 1, sqlite3_column_int64(s, 0));
		sqlite3_bind_blob(ins, 2, buf, (int)len, SQLITE_TRANSIENT);
		assert_int_equal(sqlite3_step(ins), SQLITE_DONE);
		sqlite3_reset(ins);
		free(buf);
	}
	sqlite3_finalize(s);
	sqlite3_finalize(ins);
	assert_int_equal(sqlite3_exec(db,
				      "DROP TABLE small_data;"
				      "ALTER TABLE blocks DROP COLUMN data_off;"
				      "ALTER TABLE ksa_keys DROP COLUMN count;"
				      "DROP INDEX ksa_gone; ALTER TABLE ksa_keys DROP COLUMN dmap; ALTER TABLE ksa_keys DROP COLUMN cmap;"
				      "DROP INDEX ksa_supplied;"
				      "PRAGMA user_version = 5; COMMIT;",
				      NULL, NULL, NULL),
			 SQLITE_OK);
	assert_int_equal(sqlite3_close(db), SQLITE_OK);
	fclose(kf);
	assert_int_equal(unlink(kp), 0);
}

static void set_user_version(const char *path, uint8_t v)
{
	FILE *fp = fopen(path, "r+b");
	assert_non_null(fp);
	const uint8_t be[4] = {0, 0, 0, v}; /* header offset 60, big-endian */
	assert_int_equal(fseek(fp, 60, SEEK_SET), 0);
	assert_int_equal(fwrite(be, 1, 4, fp), 4);
	assert_int_equal(fclose(fp), 0);
}

/* QKD-key IDs of a link (schema version 5, R-ACQ-5): one row per (link,
 * ID), kept across a reopen inside a committed transaction, gone with a
 * rolled-back one, forgotten on request; a version 4 file gets the table. */
static void test_qkd_ids(void **state)
{
	struct fx *f = *state;
	bool held;
	assert_int_equal(qkm_store_begin(f->st), 0);
	assert_int_equal(qkm_store_qkd_put(f->st, "A-B", "q.1", 1), 0);
	assert_int_equal(qkm_store_qkd_put(f->st, "A-B", "q.1", 2), QKM_EEXIST);
	assert_int_equal(qkm_store_qkd_put(f->st, "A-C", "q.1", 3), 0); /* per link */
	assert_int_equal(qkm_store_commit(f->st), 0);
	assert_int_equal(qkm_store_begin(f->st), 0);
	assert_int_equal(qkm_store_qkd_put(f->st, "A-B", "q.2", 4), 0);
	qkm_store_rollback(f->st);
	reopen(f);
	assert_int_equal(qkm_store_qkd_held(f->st, "A-B", "q.1", &held), 0);
	assert_true(held);
	assert_int_equal(qkm_store_qkd_held(f->st, "A-B", "q.2", &held), 0);
	assert_false(held);
	assert_int_equal(qkm_store_qkd_forget(f->st, "A-B", "q.1"), 0);
	assert_int_equal(qkm_store_qkd_forget(f->st, "A-B", "q.1"), 0);
	assert_int_equal(qkm_store_qkd_held(f->st, "A-B", "q.1", &held), 0);
	assert_false(held);
	assert_int_equal(qkm_store_qkd_held(f->st, "A-C", "q.1", &held), 0);
	assert_true(held);
	assert_int_equal(qkm_store_qkd_put(f->st, "A-B", "", 1), QKM_EINVAL);

	qkm_store_close(f->st);
	f->st = NULL;
	to_v5(f->path);
	file_exec(f->path, "BEGIN; DROP TABLE qkd_ids; PRAGMA user_version = 4; COMMIT;");
	assert_int_equal(qkm_store_open(f->path, &f->st), 0);
	assert_int_equal(qkm_store_qkd_held(f->st, "A-C", "q.1", &held), 0);
	assert_false(held);
	assert_int_equal(qkm_store_qkd_put(f->st, "A-C", "q.1", 5), 0);
}

/* A KSA key of sae-a -> sae-b with node B, 256 bits, no ID or data yet. */
static void ksa_key_init(struct qkm_ksa_key *k, enum qkm_ksa_role role, enum qkm_ksa_state state)
{
	memset(k, 0, sizeof(*k));
	snprintf(k->peer, sizeof(k->peer), "B");
	snprintf(k->master, sizeof(k->master), "sae-a");
	snprintf(k->slave, sizeof(k->slave), "sae-b");
	k->size_bits = 256;
	k->role = (uint8_t)role;
	k->state = (uint8_t)state;
}

/* A supply round's keys, put one after another, get consecutive seqs; a
 * run of them changes state in one call, all or none: a seq outside the
 * store or a key in another state changes nothing (QKM_ENOTFOUND). */
static void test_ksa_set_state_run(void **state)
{
	struct fx *f = *state;
	struct qkm_ksa_key k, got;
	int64_t seq[5];
	struct qkm_id id[5];
	ksa_key_init(&k, QKM_KSA_MASTER_SIDE, QKM_KSA_OFFERED);
	assert_int_equal(qkm_store_begin(f->st), 0);
	for (int i = 0; i < 5; i++) {
		assert_int_equal(qkm_id_uuid7(&k.id, qkm_now_ns()), 0);
		assert_int_equal(qkm_store_ksa_put(f->st, &k), 0);
		id[i] = k.id;
		seq[i] = k.seq;
		if (i)
			assert_int_equal(seq[i], seq[i - 1] + 1);
	}
	assert_int_equal(qkm_store_commit(f->st), 0);

	/* Keys 1..3 move; 0 and 4 do not. */
	assert_int_equal(qkm_store_ksa_set_state(f->st, seq[1], seq[3], QKM_KSA_OFFERED,
						 QKM_KSA_STOCKED, 0),
			 0);
	for (int i = 0; i < 5; i++) {
		assert_int_equal(qkm_store_ksa_get(f->st, &id[i], &got, false), 0);
		assert_int_equal(got.state, i >= 1 && i <= 3 ? QKM_KSA_STOCKED : QKM_KSA_OFFERED);
		assert_int_equal(got.seq, seq[i]);
	}
	/* 0..1: key 1 is no longer OFFERED, so key 0 stays as it is too. */
	assert_int_equal(qkm_store_ksa_set_state(f->st, seq[0], seq[1], QKM_KSA_OFFERED,
						 QKM_KSA_STOCKED, 0),
			 QKM_ENOTFOUND);
	assert_int_equal(qkm_store_ksa_get(f->st, &id[0], &got, false), 0);
	assert_int_equal(got.state, QKM_KSA_OFFERED);
	/* Past the last row: nothing. */
	assert_int_equal(qkm_store_ksa_set_state(f->st, seq[4], seq[4] + 1, QKM_KSA_OFFERED,
						 QKM_KSA_STOCKED, 0),
			 QKM_ENOTFOUND);
	assert_int_equal(qkm_store_ksa_get(f->st, &id[4], &got, false), 0);
	assert_int_equal(got.state, QKM_KSA_OFFERED);
	assert_int_equal(qkm_store_ksa_set_state(f->st, seq[2], seq[1], QKM_KSA_STOCKED,
						 QKM_KSA_SUPPLIED, 1),
			 QKM_EINVAL);
	/* One key, with its supply time; inside a transaction it rolls back. */
	assert_int_equal(qkm_store_ksa_set_state(f->st, seq[2], seq[2], QKM_KSA_STOCKED,
						 QKM_KSA_SUPPLIED, 77),
			 0);
	assert_int_equal(qkm_store_ksa_get(f->st, &id[2], &got, false), 0);
	assert_int_equal(got.state, QKM_KSA_SUPPLIED);
	assert_int_equal(got.supplied_ns, 77);
	assert_int_equal(qkm_store_begin(f->st), 0);
	assert_int_equal(qkm_store_ksa_set_state(f->st, seq[3], seq[3], QKM_KSA_STOCKED,
						 QKM_KSA_SUPPLIED, 78),
			 0);
	qkm_store_rollback(f->st);
	reopen(f);
	assert_int_equal(qkm_store_ksa_get(f->st, &id[3], &got, false), 0);
	assert_int_equal(got.state, QKM_KSA_STOCKED);
	assert_int_equal(got.supplied_ns, 0);
}

/* Inside a caller's transaction a put takes no savepoint of its own: a
 * known ID is refused (QKM_EEXIST) and changes nothing, and the keys put
 * before and after it in the same transaction stay, with their bytes,
 * once it commits. Outside a transaction a put is its own commit. */
static void test_ksa_put_in_txn(void **state)
{
	struct fx *f = *state;
	struct qkm_ksa_key k, got;
	struct qkm_id id[3];
	ksa_key_init(&k, QKM_KSA_SLAVE_SIDE, QKM_KSA_READY);
	assert_int_equal(qkm_store_begin(f->st), 0);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(qkm_id_uuid7(&k.id, qkm_now_ns()), 0);
		id[i] = k.id;
		k.data = qkm_secret_new(32);
		assert_non_null(k.data);
		memset(k.data->p, 0x40 + i, 32);
		assert_int_equal(qkm_store_ksa_put(f->st, &k), 0);
		if (i == 1) {
			int64_t seq = k.seq;
			memset(k.data->p, 0x7f, 32);
			assert_int_equal(qkm_store_ksa_put(f->st, &k), QKM_EEXIST);
			k.seq = seq;
		}
		qkm_secret_free(k.data);
		k.data = NULL;
	}
	assert_int_equal(qkm_store_commit(f->st), 0);
	reopen(f);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(qkm_store_ksa_get(f->st, &id[i], &got, true), 0);
		assert_non_null(got.data);
		assert_int_equal(got.data->len, 32);
		for (size_t b = 0; b < 32; b++)
			assert_int_equal(got.data->p[b], 0x40 + i);
		qkm_secret_free(got.data);
	}
	/* Alone: committed at once (a rollback has nothing to undo). */
	assert_int_equal(qkm_id_uuid7(&k.id, qkm_now_ns()), 0);
	assert_int_equal(qkm_store_ksa_put(f->st, &k), 0);
	qkm_store_rollback(f->st);
	assert_int_equal(qkm_store_ksa_get(f->st, &k.id, &got, false), 0);
}

/* The CREATE statement of schema object name in the file at path holds text
 * (read with SQLite itself, beside any open store). */
static void schema_has(const char *path, const char *name, const char *text)
{
	sqlite3 *db;
	sqlite3_stmt *q;
	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(db, "SELECT sql FROM sqlite_schema WHERE name = ?1", -1,
					    &q, NULL),
			 SQLITE_OK);
	assert_int_equal(sqlite3_bind_text(q, 1, name, -1, SQLITE_STATIC), SQLITE_OK);
	assert_int_equal(sqlite3_step(q), SQLITE_ROW);
	assert_non_null(strstr((const char *)sqlite3_column_text(q, 0), text));
	sqlite3_finalize(q);
	assert_int_equal(sqlite3_close(db), SQLITE_OK);
}

static int count_listed(const struct qkm_ksa_key *k, void *arg)
{
	(void)k;
	(*(int *)arg)++;
	return 0;
}

/* How many keys shared with B qkm_store_ksa_list finds in state and role. */
static int listed(struct qkm_store *st, enum qkm_ksa_state state, enum qkm_ksa_role role)
{
	int n = 0;
	assert_int_equal(qkm_store_ksa_list(st, "B", state, role, count_listed, &n), 0);
	return n;
}

/* Listing a master's open keys with a peer (OFFERED, STOCKED), as
 * reconnection and restart do, finds them and only them, however many keys
 * were supplied or are held for slaves; keys in other states are never
 * listed but stay, and every key comes back from a version 7 file (whose
 * index held every key) upgraded to version 8 (whose index holds only
 * OFFERED and STOCKED keys). */
static void test_ksa_open_keys_index(void **state)
{
	struct fx *f = *state;
	struct qkm_ksa_key k, got;
	struct qkm_id id[12];
	ksa_key_init(&k, QKM_KSA_MASTER_SIDE, QKM_KSA_OFFERED);
	assert_int_equal(qkm_store_begin(f->st), 0);
	for (int i = 0; i < 12; i++) {
		/* 0..3 OFFERED, 4..5 STOCKED, 6..11 SUPPLIED */
		k.state = i < 4 ? QKM_KSA_OFFERED : i < 6 ? QKM_KSA_STOCKED : QKM_KSA_SUPPLIED;
		assert_int_equal(qkm_id_uuid7(&k.id, qkm_now_ns()), 0);
		assert_int_equal(qkm_store_ksa_put(f->st, &k), 0);
		id[i] = k.id;
	}
	/* and 3 held for a slave here */
	ksa_key_init(&k, QKM_KSA_SLAVE_SIDE, QKM_KSA_READY);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(qkm_id_uuid7(&k.id, qkm_now_ns()), 0);
		assert_int_equal(qkm_store_ksa_put(f->st, &k), 0);
	}
	assert_int_equal(qkm_store_commit(f->st), 0);
	assert_int_equal(listed(f->st, QKM_KSA_OFFERED, QKM_KSA_MASTER_SIDE), 4);
	assert_int_equal(listed(f->st, QKM_KSA_READY, QKM_KSA_SLAVE_SIDE), 0);
	assert_int_equal(listed(f->st, QKM_KSA_STOCKED, QKM_KSA_MASTER_SIDE), 2);
	assert_int_equal(listed(f->st, QKM_KSA_SUPPLIED, QKM_KSA_MASTER_SIDE), 0);
	uint64_t c;
	assert_int_equal(qkm_store_ksa_count(f->st, QKM_KSA_SUPPLIED, &c), 0);
	assert_int_equal(c, 6);
	assert_int_equal(qkm_store_ksa_count(f->st, QKM_KSA_READY, &c), 0);
	assert_int_equal(c, 3);

	/* Back to version 7's index, then opened: upgraded, the same keys. */
	qkm_store_close(f->st);
	f->st = NULL;
	file_exec(f->path, "BEGIN; DROP INDEX ksa_peer;"
		  "CREATE INDEX ksa_peer ON ksa_keys (peer, state);"
		  "ALTER TABLE ksa_keys DROP COLUMN count;"
		  "DROP INDEX ksa_gone; ALTER TABLE ksa_keys DROP COLUMN dmap; ALTER TABLE ksa_keys DROP COLUMN cmap;"
		  "DROP INDEX ksa_supplied;"
		  "PRAGMA user_version = 7; COMMIT;");
	assert_int_equal(qkm_store_open(f->path, &f->st), 0);
	assert_int_equal(listed(f->st, QKM_KSA_OFFERED, QKM_KSA_MASTER_SIDE), 4);
	for (int i = 0; i < 12; i++) {
		assert_int_equal(qkm_store_ksa_get(f->st, &id[i], &got, false), 0);
		assert_int_equal(got.state, i < 4 ? QKM_KSA_OFFERED
					   : i < 6 ? QKM_KSA_STOCKED : QKM_KSA_SUPPLIED);
	}
	qkm_store_close(f->st);
	f->st = NULL;
	schema_has(f->path, "ksa_peer", "WHERE state IN (1, 4)");
	assert_int_equal(qkm_store_open(f->path, &f->st), 0);
}

/* retention_s (schema 10): the rows of keys supplied before the
 * cut-off go, the oldest supply first, a batch at a time; rows still
 * waiting (READY, STOCKED), supplied later, or keeping their bytes
 * (after_supply "preserve") stay. The horizon is the newest pruned ID's
 * time, never past the cut-off, and survives a reopen; a version 9 file
 * gets the index. */
static void test_ksa_prune(void **state)
{
	struct fx *f = *state;
	struct qkm_ksa_key k, got;
	struct qkm_id id[6];
	const uint64_t t0 = 1700000000000000000ull; /* ns, 2023 */
	uint64_t rows, keys, ms;
	assert_int_equal(qkm_store_ksa_horizon(f->st, &ms), 0);
	assert_int_equal(ms, 0);
	assert_int_equal(qkm_store_begin(f->st), 0);
	for (int i = 0; i < 6; i++) {
		/* 0, 1: a slave's, supplied at t0 + 1 s and + 2 s; 2: a run of 3
		 * supplied at + 3 s; 3: supplied at + 3 s with its bytes kept;
		 * 4: READY; 5: supplied at + 100 s. */
		ksa_key_init(&k, i == 2 ? QKM_KSA_MASTER_SIDE : QKM_KSA_SLAVE_SIDE,
			     i == 4 ? QKM_KSA_READY : QKM_KSA_SUPPLIED);
		assert_int_equal(qkm_id_uuid7(&k.id, t0 + (uint64_t)i * 1000000u), 0);
		qkm_id_set_index(&k.id, 0);
		k.count = i == 2 ? 3 : 1;
		k.supplied_ns = k.state == QKM_KSA_SUPPLIED
					? t0 + (i == 5 ? 100 : i < 2 ? (uint64_t)i + 1 : 3) * 1000000000u
					: 0;
		k.data = i == 3 || i == 4 ? qkm_secret_new(32) : NULL;
		assert_int_equal(qkm_store_ksa_put(f->st, &k), 0);
		qkm_secret_free(k.data);
		id[i] = k.id;
	}
	assert_int_equal(qkm_store_commit(f->st), 0);

	/* Nothing supplied before t0. */
	assert_int_equal(qkm_store_ksa_prune(f->st, t0, 100, &rows, &keys), 0);
	assert_int_equal(rows, 0);
	/* One row a batch: the oldest supply first. */
	assert_int_equal(qkm_store_ksa_prune(f->st, t0 + 50000000000ull, 1, &rows, &keys), 0);
	assert_int_equal(rows, 1);
	assert_int_equal(keys, 1);
	assert_int_equal(qkm_store_ksa_get(f->st, &id[0], &got, false), QKM_ENOTFOUND);
	assert_int_equal(qkm_store_ksa_get(f->st, &id[1], &got, false), 0);
	assert_int_equal(qkm_store_ksa_horizon(f->st, &ms), 0);
	assert_int_equal(ms, t0 / 1000000u);
	assert_true(qkm_store_ksa_older(&id[0], ms));
	assert_false(qkm_store_ksa_older(&id[1], ms));
	/* The rest before + 50 s: key 1 and the run of 3, not the one whose
	 * bytes are kept. */
	assert_int_equal(qkm_store_ksa_prune(f->st, t0 + 50000000000ull, 100, &rows, &keys), 0);
	assert_int_equal(rows, 2);
	assert_int_equal(keys, 4);
	for (int i = 0; i < 6; i++)
		assert_int_equal(qkm_store_ksa_get(f->st, &id[i], &got, false),
				 i < 3 ? QKM_ENOTFOUND : 0);
	struct qkm_id in_run = id[2];
	qkm_id_set_index(&in_run, 2);
	assert_int_equal(qkm_store_ksa_get(f->st, &in_run, &got, false), QKM_ENOTFOUND);
	assert_int_equal(qkm_store_ksa_horizon(f->st, &ms), 0);
	assert_int_equal(ms, t0 / 1000000u + 2);
	/* A cut-off before a pruned key's own time (a master's clock ahead):
	 * the horizon stops at the cut-off. Key 5 was made at t0 + 5 ms. */
	assert_int_equal(qkm_store_ksa_prune(f->st, t0 + 200000000000ull, 100, &rows, &keys), 0);
	assert_int_equal(rows, 1);
	assert_int_equal(qkm_store_ksa_horizon(f->st, &ms), 0);
	assert_int_equal(ms, t0 / 1000000u + 5);
	struct qkm_id v4 = id[5];
	v4.b[6] = (uint8_t)((v4.b[6] & 0x0f) | 0x40); /* not a version-7 UUID: no time */
	assert_false(qkm_store_ksa_older(&v4, ms));
	assert_false(qkm_store_ksa_older(&id[5], 0));

	/* Version 9 had no index of supplied keys; the horizon stays. */
	qkm_store_close(f->st);
	f->st = NULL;
	file_exec(f->path, "BEGIN; DROP INDEX ksa_supplied; DROP INDEX ksa_gone; ALTER TABLE ksa_keys DROP COLUMN dmap; ALTER TABLE ksa_keys DROP COLUMN cmap;"
		  "PRAGMA user_version = 9; COMMIT;");
	assert_int_equal(qkm_store_open(f->path, &f->st), 0);
	assert_int_equal(qkm_store_ksa_horizon(f->st, &ms), 0);
	assert_int_equal(ms, t0 / 1000000u + 5);
	assert_int_equal(qkm_store_ksa_get(f->st, &id[3], &got, false), 0);
	assert_int_equal(qkm_store_ksa_get(f->st, &id[4], &got, false), 0);
	schema_has(f->path, "ksa_supplied", "WHERE state = 3");
}

/* A file written by a newer qkm (user_version 12) is refused, not misread;
 * a file of version 1 (before KSA keys) is migrated to the current one. */
static void test_newer_version_refused(void **state)
{
	struct fx *f = *state;
	qkm_store_close(f->st); /* the last close folds the WAL into the file */
	f->st = NULL;
	/* Version 1 had no KSA tables and no block level (version 4). */
	to_v5(f->path);
	file_exec(f->path, "DROP TABLE ksa_data; DROP TABLE ksa_keys;"
		  "ALTER TABLE blocks DROP COLUMN level;");
	set_user_version(f->path, 1);
	assert_int_equal(qkm_store_open(f->path, &f->st), 0);
	uint64_t n;
	assert_int_equal(qkm_store_ksa_count(f->st, QKM_KSA_READY, &n), 0);
	qkm_store_close(f->st);
	f->st = NULL;
	set_user_version(f->path, 13);
	assert_int_equal(qkm_store_open(f->path, &f->st), QKM_EVERSION);
	assert_null(f->st);
}

/* Version 2 kept KSA keys and their bytes in tables keyed by their (random)
 * ID; version 3 appends them by rowid, bytes under their key's rowid. A
 * version 2 file keeps every key, its metadata and its bytes across the
 * upgrade, and the cascade from keys to bytes. */
static void test_v2_ksa_keys_migrated(void **state)
{
	struct fx *f = *state;
	struct qkm_ksa_key k, got;
	ksa_key_init(&k, QKM_KSA_SLAVE_SIDE, QKM_KSA_READY);
	assert_int_equal(RAND_bytes(k.id.b, QKM_ID_LEN), 1);
	k.created_ns = 42;
	k.n_ranges = 1;
	k.ranges[0].len = 32;
	k.data = qkm_secret_new(32);
	assert_non_null(k.data);
	memset(k.data->p, 0x5a, 32);
	assert_int_equal(qkm_store_ksa_put(f->st, &k), 0);
	assert_int_equal(qkm_store_ksa_put(f->st, &k), QKM_EEXIST); /* an ID is stored once */
	qkm_store_close(f->st);
	f->st = NULL;
	/* Rebuild the two tables as version 2 had them, and blocks as it had
	 * them (no level: version 4). */
	to_v5(f->path);
	file_exec(f->path, "BEGIN;"
		  "CREATE TABLE k2 (id BLOB PRIMARY KEY CHECK (length(id) = 16),"
		  " peer TEXT NOT NULL, master TEXT NOT NULL, slave TEXT NOT NULL,"
		  " additional TEXT NOT NULL, delivered TEXT NOT NULL,"
		  " size_bits INTEGER NOT NULL, level INTEGER NOT NULL,"
		  " role INTEGER NOT NULL, state INTEGER NOT NULL,"
		  " created_ns INTEGER NOT NULL, supplied_ns INTEGER NOT NULL,"
		  " source TEXT NOT NULL, ranges BLOB NOT NULL) WITHOUT ROWID;"
		  "INSERT INTO k2 SELECT id, peer, master, slave, additional, delivered,"
		  " size_bits, level, role, state, created_ns, supplied_ns, source,"
		  " ranges FROM ksa_keys;"
		  "CREATE TABLE d2 (id BLOB PRIMARY KEY, data BLOB NOT NULL) WITHOUT ROWID;"
		  "INSERT INTO d2 SELECT k.id, d.data FROM ksa_data d"
		  " JOIN ksa_keys k ON k.seq = d.seq;"
		  "DROP TABLE ksa_data; DROP TABLE ksa_keys;"
		  "ALTER TABLE k2 RENAME TO ksa_keys; ALTER TABLE d2 RENAME TO ksa_data;"
		  "CREATE INDEX ksa_peer ON ksa_keys (peer, state);"
		  "ALTER TABLE blocks DROP COLUMN level;"
		  "PRAGMA user_version = 2; COMMIT;");
	assert_int_equal(qkm_store_open(f->path, &f->st), 0);
	assert_int_equal(qkm_store_ksa_get(f->st, &k.id, &got, true), 0);
	assert_string_equal(got.master, "sae-a");
	assert_int_equal(got.created_ns, 42);
	assert_int_equal(got.n_ranges, 1);
	assert_non_null(got.data);
	assert_memory_equal(got.data->p, k.data->p, 32);
	qkm_secret_free(got.data);
	assert_int_equal(qkm_store_ksa_put(f->st, &k), QKM_EEXIST); /* also after the upgrade */
	assert_int_equal(qkm_store_ksa_delete(f->st, &k.id), 0);
	assert_int_equal(qkm_store_ksa_get(f->st, &k.id, &got, true), QKM_ENOTFOUND);
	qkm_secret_free(k.data);
}

/* --- block security level (R-REL-4, R-SUP-4) ------------------------------- */

/* mkblock with a level. */
static void mkblock_level(struct qkm_block *b, enum qkm_block_level level, uint8_t tag,
			  uint32_t count, uint64_t created)
{
	mkblock(b, "node-b", QKM_KT_ENC, QKM_BLOCK_READY, tag, 0, count, 32, created, NULL);
	b->level = level;
}

/* R-REL-4: a block's level is stored and listed as put, across a reopen;
 * level 0 on put is stored as ITS. */
static void test_level_round_trip(void **state)
{
	struct fx *f = *state;
	struct qkm_block a, b, c;
	struct seen s;

	mkblock_level(&a, QKM_BLOCK_ITS, 1, 4, 1);
	mkblock_level(&b, QKM_BLOCK_COMPUTATIONAL, 2, 4, 2);
	mkblock_level(&c, 0, 3, 4, 3);
	put(f->st, &a);
	put(f->st, &b);
	put(f->st, &c);
	for (int round = 0; round < 2; round++) {
		assert_int_equal(walk(f->st, "node-b", 0, false, &s), 0);
		assert_int_equal(s.n, 3);
		assert_int_equal(s.b[0].level, QKM_BLOCK_ITS);
		assert_int_equal(s.b[1].level, QKM_BLOCK_COMPUTATIONAL);
		assert_int_equal(s.b[2].level, QKM_BLOCK_ITS);
		seen_free(&s);
		reopen(f);
	}
	qkm_secret_free(a.data);
	qkm_secret_free(b.data);
	qkm_secret_free(c.data);
}

/* R-REL-4: a level that is neither ITS nor COMPUTATIONAL is refused, and
 * nothing is stored. */
static void test_level_invalid(void **state)
{
	struct fx *f = *state;
	struct qkm_block b;
	struct seen s;

	mkblock_level(&b, (enum qkm_block_level)3, 1, 4, 1);
	assert_int_equal(qkm_store_block_put(f->st, &b), QKM_EINVAL);
	b.level = (enum qkm_block_level)-1;
	assert_int_equal(qkm_store_block_put(f->st, &b), QKM_EINVAL);
	assert_int_equal(walk(f->st, "node-b", 0, false, &s), 0);
	assert_int_equal(s.n, 0);
	b.level = QKM_BLOCK_COMPUTATIONAL;
	put(f->st, &b);
	qkm_secret_free(b.data);
}

/* R-REL-4: a relay's origin copy is marked COMPUTATIONAL when a later hop
 * used the AES fallback: ITS-only reads skip it from then on. */
static void test_batch_set_level(void **state)
{
	struct fx *f = *state;
	struct qkm_block a;
	struct qkm_range rg[2];
	size_t nr = 0;
	uint8_t out[64];
	struct qkm_id none;

	mkblock_level(&a, QKM_BLOCK_ITS, 1, 2, 1);
	put(f->st, &a);
	assert_int_equal(qkm_store_batch_set_level(f->st, &a.batch_id, QKM_BLOCK_COMPUTATIONAL), 0);
	assert_int_equal(qkm_store_pool_read_level(f->st, "node-b", QKM_KT_ENC, true, 32, rg, 2,
						   &nr, out),
			 QKM_ENOKEY);
	assert_int_equal(qkm_store_pool_read_level(f->st, "node-b", QKM_KT_ENC, false, 32, rg, 2,
						   &nr, out),
			 0);
	assert_int_equal(rg[0].level, QKM_BLOCK_COMPUTATIONAL);
	assert_int_equal(qkm_store_batch_set_level(f->st, &a.batch_id, 7), QKM_EINVAL);
	memset(&none, 0x5a, sizeof(none));
	memset(none.b + 12, 0, 4);
	assert_int_equal(qkm_store_batch_set_level(f->st, &none, QKM_BLOCK_ITS), QKM_ENOTFOUND);
	qkm_secret_free(a.data);
}

/* R-REL-4, R-SUP-4: an ITS-only read skips a COMPUTATIONAL block lying
 * between ITS blocks in pool order (it stays unconsumed), while the plain
 * read takes it in order; the ranges carry their blocks' levels. When only
 * computational bytes would make up n, the ITS-only read is QKM_ENOKEY and
 * hands out nothing. */
static void test_pool_read_its_only(void **state)
{
	struct fx *f = *state;
	struct qkm_block a, c, b;
	struct qkm_range rg[4];
	size_t nr = 99;
	uint8_t out[128];
	struct seen s;

	mkblock_level(&a, QKM_BLOCK_ITS, 1, 2, 1);           /* 64 bytes, oldest */
	mkblock_level(&c, QKM_BLOCK_COMPUTATIONAL, 2, 2, 2); /* 64 bytes */
	mkblock_level(&b, QKM_BLOCK_ITS, 3, 2, 3);           /* 64 bytes */
	put(f->st, &a);
	put(f->st, &c);
	put(f->st, &b);

	/* the plain read is pool order, levels mixed */
	assert_int_equal(qkm_store_pool_read(f->st, "node-b", QKM_KT_ENC, 96, rg, 4, &nr, out), 0);
	assert_int_equal(nr, 2);
	assert_int_equal(rg[0].rowid, a.rowid);
	assert_int_equal(rg[0].level, QKM_BLOCK_ITS);
	assert_int_equal(rg[1].rowid, c.rowid);
	assert_int_equal(rg[1].level, QKM_BLOCK_COMPUTATIONAL);
	assert_memory_equal(out + 64, c.data->p, 32);

	/* ITS only: a whole, then the front of b; c is skipped */
	assert_int_equal(qkm_store_pool_read_level(f->st, "node-b", QKM_KT_ENC, true, 96, rg, 4,
						   &nr, out),
			 0);
	assert_int_equal(nr, 2);
	assert_int_equal(rg[0].rowid, a.rowid);
	assert_int_equal(rg[0].off, 0);
	assert_int_equal(rg[0].len, 64);
	assert_int_equal(rg[0].level, QKM_BLOCK_ITS);
	assert_int_equal(rg[1].rowid, b.rowid);
	assert_int_equal(rg[1].off, 0);
	assert_int_equal(rg[1].len, 32);
	assert_int_equal(rg[1].level, QKM_BLOCK_ITS);
	assert_memory_equal(out, a.data->p, 64);
	assert_memory_equal(out + 64, b.data->p, 32);

	/* the caller consumes what it read: c is untouched */
	assert_int_equal(qkm_store_block_set_used(f->st, a.rowid, 64), 0);
	assert_int_equal(qkm_store_block_set_used(f->st, b.rowid, 32), 0);
	assert_int_equal(walk(f->st, "node-b", 0, false, &s), 0);
	assert_int_equal(s.n, 2);
	assert_int_equal(s.b[0].rowid, c.rowid);
	assert_int_equal(s.b[0].used, 0);
	assert_int_equal(s.b[1].rowid, b.rowid);
	assert_int_equal(s.b[1].used, 32);
	seen_free(&s);

	/* 32 ITS bytes left, 96 in all: 64 is there only with c's bytes */
	memset(out, 0xee, sizeof(out));
	nr = 99;
	assert_int_equal(qkm_store_pool_read_level(f->st, "node-b", QKM_KT_ENC, true, 64, rg, 4,
						   &nr, out),
			 QKM_ENOKEY);
	assert_int_equal(nr, 0);
	for (size_t i = 0; i < 64; i++)
		assert_int_equal(out[i], 0); /* nothing of b leaks out */
	assert_int_equal(qkm_store_pool_read_level(f->st, "node-b", QKM_KT_ENC, true, 32, rg, 4,
						   &nr, out),
			 0);
	assert_int_equal(nr, 1);
	assert_int_equal(rg[0].rowid, b.rowid);
	assert_int_equal(rg[0].off, 32);
	assert_memory_equal(out, b.data->p + 32, 32);
	/* every level: c, then b's remainder */
	assert_int_equal(qkm_store_pool_read_level(f->st, "node-b", QKM_KT_ENC, false, 96, rg, 4,
						   &nr, out),
			 0);
	assert_int_equal(nr, 2);
	assert_int_equal(rg[0].rowid, c.rowid);
	assert_int_equal(rg[1].rowid, b.rowid);
	assert_int_equal(rg[1].off, 32);

	qkm_secret_free(a.data);
	qkm_secret_free(b.data);
	qkm_secret_free(c.data);
}

/* R-REL-4, R-SUP-4 stock: enc_its_bytes counts the unused enc bytes of
 * READY ITS blocks only; enc_bytes still counts every level. */
static void test_pool_stats_its(void **state)
{
	struct fx *f = *state;
	struct qkm_block b[5];
	struct qkm_pool_stats ps;

	mkblock(&b[0], "node-b", QKM_KT_ENC, QKM_BLOCK_READY, 1, 0, 10, 32, 1, NULL);
	mkblock(&b[1], "node-b", QKM_KT_ENC, QKM_BLOCK_READY, 2, 0, 4, 64, 2, NULL);
	b[1].level = QKM_BLOCK_COMPUTATIONAL;
	mkblock(&b[2], "node-b", QKM_KT_DEC, QKM_BLOCK_READY, 3, 0, 6, 32, 3, NULL);
	mkblock(&b[3], "node-b", QKM_KT_ENC, QKM_BLOCK_PENDING, 4, 0, 5, 32, 4, NULL);
	b[3].level = QKM_BLOCK_ITS;
	mkblock(&b[4], "node-c", QKM_KT_ENC, QKM_BLOCK_READY, 5, 0, 8, 32, 5, NULL);
	for (int i = 0; i < 5; i++)
		put(f->st, &b[i]);
	assert_int_equal(qkm_store_block_set_used(f->st, b[0].rowid, 3 * 32), 0);

	assert_int_equal(qkm_store_pool_stats(f->st, "node-b", &ps), 0);
	assert_int_equal(ps.enc_bytes, 7 * 32 + 4 * 64);
	assert_int_equal(ps.enc_its_bytes, 7 * 32);
	assert_int_equal(ps.dec_bytes, 6 * 32);
	assert_int_equal(qkm_store_batch_set_state(f->st, &b[3].batch_id, QKM_BLOCK_READY), 0);
	assert_int_equal(qkm_store_pool_stats(f->st, "node-b", &ps), 0);
	assert_int_equal(ps.enc_its_bytes, 7 * 32 + 5 * 32);
	assert_int_equal(qkm_store_pool_stats(f->st, "node-c", &ps), 0);
	assert_int_equal(ps.enc_its_bytes, 8 * 32);
	for (int i = 0; i < 5; i++)
		qkm_secret_free(b[i].data);
}

/* Schema version 4 added blocks.level. A version 3 file (blocks without
 * the column) is upgraded in place on open: its blocks read as ITS with
 * metadata, consumption and bytes intact, and new blocks carry a level. */
static void test_v3_blocks_get_level(void **state)
{
	struct fx *f = *state;
	struct qkm_block a, c;
	struct qkm_range rg[2];
	uint8_t out[128];
	size_t nr;
	struct seen s;
	sqlite3 *db;
	sqlite3_stmt *q = NULL;

	mkblock(&a, "node-b", QKM_KT_ENC, QKM_BLOCK_READY, 1, 0, 4, 32, 7, NULL);
	put(f->st, &a);
	assert_int_equal(qkm_store_block_set_used(f->st, a.rowid, 40), 0);
	qkm_store_close(f->st);
	f->st = NULL;
	/* Rebuild blocks as version 3 had it (key bytes in block_data). */
	to_v5(f->path);
	assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db,
				      "BEGIN; ALTER TABLE blocks DROP COLUMN level;"
				      "PRAGMA user_version = 3; COMMIT;",
				      NULL, NULL, NULL),
			 SQLITE_OK);
	assert_int_not_equal(sqlite3_prepare_v2(db, "SELECT level FROM blocks", -1, &q, NULL),
			     SQLITE_OK);
	sqlite3_finalize(q);
	assert_int_equal(sqlite3_close(db), SQLITE_OK);

	assert_int_equal(qkm_store_open(f->path, &f->st), 0);
	assert_int_equal(walk(f->st, "node-b", 0, true, &s), 0);
	assert_int_equal(s.n, 1);
	assert_int_equal(s.b[0].rowid, a.rowid);
	assert_int_equal(s.b[0].level, QKM_BLOCK_ITS);
	assert_int_equal(s.b[0].used, 40);
	assert_true(s.b[0].created_ns == 7);
	assert_string_equal(s.b[0].qkd_module_id, "qkd-a1");
	assert_memory_equal(s.b[0].data->p + 40, a.data->p + 40, 128 - 40);
	seen_free(&s);
	assert_int_equal(qkm_store_pool_read_level(f->st, "node-b", QKM_KT_ENC, true, 88, rg, 2,
						   &nr, out),
			 0);
	assert_int_equal(nr, 1);
	assert_memory_equal(out, a.data->p + 40, 88);

	mkblock_level(&c, QKM_BLOCK_COMPUTATIONAL, 2, 4, 8);
	put(f->st, &c);
	reopen(f); /* and the upgraded file opens as the current version */
	assert_int_equal(walk(f->st, "node-b", 0, false, &s), 0);
	assert_int_equal(s.n, 2);
	assert_int_equal(s.b[1].level, QKM_BLOCK_COMPUTATIONAL);
	qkm_store_close(f->st);
	f->st = NULL;
	assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &q, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(q), SQLITE_ROW);
	assert_int_equal(sqlite3_column_int(q, 0), 12);
	sqlite3_finalize(q);
	assert_int_equal(sqlite3_close(db), SQLITE_OK);
	assert_int_equal(qkm_store_open(f->path, &f->st), 0);
	qkm_secret_free(a.data);
	qkm_secret_free(c.data);
}

/* --- secure deletion ------------------------------------------------------ */

#define WIN 32

struct win_index {
	size_t n;
	struct win {
		uint32_t key;
		uint32_t pos;
	} *w;
	const uint8_t *pat;
};

static uint32_t load32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static int win_cmp(const void *a, const void *b)
{
	const struct win *x = a, *y = b;
	return x->key < y->key ? -1 : x->key > y->key;
}

/* Indexes every WIN-byte window of pat by its first 4 bytes. */
static void win_index_init(struct win_index *ix, const uint8_t *pat, size_t len)
{
	ix->n = len - WIN + 1;
	ix->w = calloc(ix->n, sizeof(*ix->w));
	ix->pat = pat;
	assert_non_null(ix->w);
	for (size_t i = 0; i < ix->n; i++) {
		ix->w[i].key = load32(pat + i);
		ix->w[i].pos = (uint32_t)i;
	}
	qsort(ix->w, ix->n, sizeof(*ix->w), win_cmp);
}

/* Counts offsets in hay where some WIN-byte window of the pattern starts. */
static size_t win_count(const struct win_index *ix, const uint8_t *hay, size_t len)
{
	size_t hits = 0;
	for (size_t i = 0; i + WIN <= len; i++) {
		struct win k = {.key = load32(hay + i)};
		const struct win *m = bsearch(&k, ix->w, ix->n, sizeof(*ix->w), win_cmp);
		if (!m)
			continue;
		while (m > ix->w && m[-1].key == k.key)
			m--;
		for (; m < ix->w + ix->n && m->key == k.key; m++)
			if (memcmp(hay + i, ix->pat + m->pos, WIN) == 0) {
				hits++;
				break;
			}
	}
	return hits;
}

static uint8_t *slurp(const char *path, size_t *len)
{
	FILE *fp = fopen(path, "rb");
	uint8_t *p = NULL;
	*len = 0;
	if (!fp)
		return NULL;
	assert_int_equal(fseek(fp, 0, SEEK_END), 0);
	long n = ftell(fp);
	assert_true(n >= 0);
	rewind(fp);
	p = malloc((size_t)n + 1);
	assert_non_null(p);
	assert_int_equal(fread(p, 1, (size_t)n, fp), (size_t)n);
	fclose(fp);
	*len = (size_t)n;
	return p;
}

/* Windows of pat found in the database file, its WAL and its key-data
 * file, as bytes on disk. */
static size_t on_disk(const struct fx *f, const uint8_t *pat, size_t len)
{
	struct win_index ix;
	char p[PATH_MAX];
	size_t hits = 0, n;
	win_index_init(&ix, pat, len);
	static const char *const suffixes[] = {"", "-wal", "-keys"};
	for (int i = 0; i < 3; i++) {
		fx_path(f, suffixes[i], p);
		uint8_t *buf = slurp(p, &n);
		if (buf)
			hits += win_count(&ix, buf, n);
		free(buf);
	}
	free(ix.w);
	return hits;
}

/* A slave's node keeps a SUPPLY round's run of keys in one row (schema
 * v12): each key reads alone; it goes alone, delivered (marked, its bytes
 * zeroed, gone from the files after a checkpoint) or cancelled (the same);
 * the row ends SUPPLIED, its bytes deleted, with its last key, or is
 * deleted when every key was cancelled; none of its IDs is taken again. */
static void test_ksa_slave_runs(void **state)
{
	struct fx *f = *state;
	struct qkm_ksa_key k, got, dup;
	struct qkm_id id[4];
	uint8_t bytes[4 * 32];
	uint64_t n;
	for (size_t i = 0; i < sizeof(bytes); i++)
		bytes[i] = (uint8_t)(i * 7 + 3);
	struct qkm_secret data = {.len = sizeof(bytes), .p = bytes};
	ksa_key_init(&k, QKM_KSA_SLAVE_SIDE, QKM_KSA_READY);
	assert_int_equal(qkm_id_uuid7(&k.id, qkm_now_ns()), 0);
	k.count = 4;
	k.data = &data;
	assert_int_equal(qkm_store_ksa_put(f->st, &k), 0);
	for (uint32_t i = 0; i < 4; i++) {
		id[i] = k.id;
		qkm_id_set_index(&id[i], qkm_id_index(&k.id) + i);
		assert_int_equal(qkm_store_ksa_get(f->st, &id[i], &got, true), 0);
		assert_memory_equal(got.id.b, id[i].b, QKM_ID_LEN);
		assert_int_equal(got.count, 1);
		assert_int_equal(got.run_index, i);
		assert_int_equal(got.run_count, 4);
		assert_int_equal(got.state, QKM_KSA_READY);
		assert_string_equal(got.delivered, "");
		assert_non_null(got.data);
		assert_int_equal(got.data->len, 32);
		assert_memory_equal(got.data->p, bytes + 32 * i, 32);
		qkm_secret_free(got.data);
	}
	assert_int_equal(qkm_store_ksa_count(f->st, QKM_KSA_READY, &n), 0);
	assert_int_equal(n, 4);

	/* Its IDs again: a key inside it, a run that reaches into it. */
	ksa_key_init(&dup, QKM_KSA_SLAVE_SIDE, QKM_KSA_READY);
	dup.id = id[2];
	assert_int_equal(qkm_store_ksa_put(f->st, &dup), QKM_EEXIST);
	dup.id = id[0];
	qkm_id_set_index(&dup.id, qkm_id_index(&id[0]) - 2);
	dup.count = 3;
	assert_int_equal(qkm_store_ksa_put(f->st, &dup), QKM_EEXIST);
	/* Longer than a row's map, or with additional slaves: refused. */
	assert_int_equal(qkm_id_uuid7(&dup.id, qkm_now_ns()), 0);
	dup.count = QKM_KSA_SLAVE_RUN + 1;
	assert_int_equal(qkm_store_ksa_put(f->st, &dup), QKM_EINVAL);
	dup.count = 2;
	snprintf(dup.additional, sizeof(dup.additional), "sae-c");
	assert_int_equal(qkm_store_ksa_put(f->st, &dup), QKM_EINVAL);

	/* Key 1 delivered: once; its bytes leave the files, key 0's stay. */
	assert_int_equal(qkm_store_ksa_get(f->st, &id[1], &got, true), 0);
	qkm_secret_free(got.data);
	got.data = NULL;
	got.state = QKM_KSA_SUPPLIED;
	got.supplied_ns = 5;
	assert_int_equal(qkm_store_ksa_update(f->st, &got, true), 0);
	assert_int_equal(qkm_store_ksa_update(f->st, &got, true), QKM_ENOTFOUND);
	assert_int_equal(qkm_store_ksa_get(f->st, &id[1], &got, true), 0);
	assert_int_equal(got.state, QKM_KSA_SUPPLIED);
	assert_string_equal(got.delivered, "sae-b");
	assert_null(got.data);
	assert_int_equal(qkm_store_ksa_count(f->st, QKM_KSA_READY, &n), 0);
	assert_int_equal(n, 3);
	assert_int_equal(qkm_store_ksa_count(f->st, QKM_KSA_SUPPLIED, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(qkm_store_checkpoint(f->st), 0);
	assert_int_equal(on_disk(f, bytes + 32, 32), 0);
	assert_true(on_disk(f, bytes, 32) > 0);

	/* Key 2 cancelled: it alone; it reads as no key, as a cancelled
	 * key's own row, deleted, but its ID stays known. */
	assert_int_equal(qkm_store_ksa_delete(f->st, &id[2]), 0);
	assert_int_equal(qkm_store_ksa_delete(f->st, &id[2]), QKM_ENOTFOUND);
	assert_int_equal(qkm_store_ksa_get(f->st, &id[2], &got, true), QKM_ENOTFOUND);
	dup.id = id[2];
	dup.count = 1;
	dup.additional[0] = 0;
	assert_int_equal(qkm_store_ksa_put(f->st, &dup), QKM_EEXIST);
	assert_int_equal(qkm_store_ksa_get(f->st, &id[3], &got, true), 0);
	assert_int_equal(got.state, QKM_KSA_READY);
	assert_memory_equal(got.data->p, bytes + 96, 32);
	qkm_secret_free(got.data);

	/* Keys 0 and 3 delivered: the row is SUPPLIED at the last one's time,
	 * its bytes gone; it stays so after a reopen. */
	for (int i = 0; i < 4; i += 3) {
		assert_int_equal(qkm_store_ksa_get(f->st, &id[i], &got, true), 0);
		qkm_secret_free(got.data);
		got.data = NULL;
		got.state = QKM_KSA_SUPPLIED;
		got.supplied_ns = 10 + (uint64_t)i;
		assert_int_equal(qkm_store_ksa_update(f->st, &got, true), 0);
	}
	reopen(f);
	assert_int_equal(qkm_store_ksa_get(f->st, &id[0], &got, true), 0);
	assert_int_equal(got.state, QKM_KSA_SUPPLIED);
	assert_null(got.data);
	assert_int_equal(qkm_store_ksa_count(f->st, QKM_KSA_READY, &n), 0);
	assert_int_equal(n, 0);
	assert_int_equal(qkm_store_checkpoint(f->st), 0);
	for (int i = 0; i < 4; i++)
		assert_int_equal(on_disk(f, bytes + 32 * i, 32), 0);

	/* Retention of a run with keys still in it: once its gone keys are
	 * older than the cut-off, their metadata goes and the others stay,
	 * readable, a row per stretch. Key 0 delivered at 20, key 2 at 30. */
	assert_int_equal(qkm_id_uuid7(&k.id, qkm_now_ns()), 0);
	k.count = 4;
	data.len = sizeof(bytes);
	assert_int_equal(qkm_store_ksa_put(f->st, &k), 0);
	for (uint32_t i = 0; i < 4; i++) {
		id[i] = k.id;
		qkm_id_set_index(&id[i], qkm_id_index(&k.id) + i);
	}
	for (int i = 0; i < 4; i += 2) {
		assert_int_equal(qkm_store_ksa_get(f->st, &id[i], &got, false), 0);
		got.state = QKM_KSA_SUPPLIED;
		got.supplied_ns = 20 + 5 * (uint64_t)i;
		assert_int_equal(qkm_store_ksa_update(f->st, &got, true), 0);
	}
	uint64_t rows, keys;
	/* At 30: the whole run above (SUPPLIED at 13), not this one (key 2
	 * went at 30, not before it); at 31 this one's two gone keys. */
	assert_int_equal(qkm_store_ksa_prune(f->st, 30, 100, &rows, &keys), 0);
	assert_int_equal(rows, 1);
	assert_int_equal(keys, 3); /* delivered; the cancelled one is not counted */
	assert_int_equal(qkm_store_ksa_get(f->st, &id[0], &got, false), 0);
	assert_int_equal(qkm_store_ksa_prune(f->st, 31, 100, &rows, &keys), 0);
	assert_int_equal(rows, 1);
	assert_int_equal(keys, 2);
	for (int i = 0; i < 4; i++) {
		int rc = qkm_store_ksa_get(f->st, &id[i], &got, true);
		if (i % 2 == 0) {
			assert_int_equal(rc, QKM_ENOTFOUND);
			continue;
		}
		assert_int_equal(rc, 0);
		assert_int_equal(got.state, QKM_KSA_READY);
		assert_int_equal(got.count, 1);
		assert_int_equal(got.run_count, 0);
		assert_memory_equal(got.data->p, bytes + 32 * i, 32);
		qkm_secret_free(got.data);
	}

	/* A run whose keys are all cancelled goes whole; one with only
	 * cancelled keys gone is no retention's business. */
	assert_int_equal(qkm_id_uuid7(&k.id, qkm_now_ns()), 0);
	k.count = 2;
	data.len = 64;
	assert_int_equal(qkm_store_ksa_put(f->st, &k), 0);
	id[1] = k.id;
	qkm_id_set_index(&id[1], qkm_id_index(&k.id) + 1);
	assert_int_equal(qkm_store_ksa_delete(f->st, &id[1]), 0);
	assert_int_equal(qkm_store_ksa_prune(f->st, UINT64_C(1) << 62, 100, &rows, &keys), 0);
	assert_int_equal(rows, 0);
	assert_int_equal(qkm_store_ksa_get(f->st, &k.id, &got, false), 0);
	assert_int_equal(qkm_store_ksa_delete(f->st, &k.id), 0);
	assert_int_equal(qkm_store_ksa_get(f->st, &k.id, &got, false), QKM_ENOTFOUND);
	assert_int_equal(qkm_store_ksa_get(f->st, &id[1], &got, false), QKM_ENOTFOUND);

	/* Delivered, then its run-mate cancelled: the row ends SUPPLIED at the
	 * delivery's time, the delivered key still known (never taken again). */
	assert_int_equal(qkm_id_uuid7(&k.id, qkm_now_ns()), 0);
	assert_int_equal(qkm_store_ksa_put(f->st, &k), 0);
	id[1] = k.id;
	qkm_id_set_index(&id[1], qkm_id_index(&k.id) + 1);
	assert_int_equal(qkm_store_ksa_get(f->st, &k.id, &got, false), 0);
	got.state = QKM_KSA_SUPPLIED;
	got.supplied_ns = 40;
	assert_int_equal(qkm_store_ksa_update(f->st, &got, true), 0);
	assert_int_equal(qkm_store_ksa_delete(f->st, &id[1]), 0);
	assert_int_equal(qkm_store_ksa_get(f->st, &k.id, &got, false), 0);
	assert_int_equal(got.state, QKM_KSA_SUPPLIED);
	assert_string_equal(got.delivered, "sae-b");
	dup.id = k.id;
	assert_int_equal(qkm_store_ksa_put(f->st, &dup), QKM_EEXIST);
	assert_int_equal(qkm_store_ksa_count(f->st, QKM_KSA_SUPPLIED, &n), 0);
	uint64_t supplied = n;
	assert_int_equal(qkm_store_ksa_prune(f->st, 41, 100, &rows, &keys), 0);
	assert_int_equal(rows, 1);
	assert_int_equal(keys, 1);
	assert_int_equal(qkm_store_ksa_count(f->st, QKM_KSA_SUPPLIED, &n), 0);
	assert_int_equal(n, supplied - 1);

	/* Kept after supply (after_supply "preserve" since the run was put):
	 * the delivered key keeps its bytes in a row of its own, the others
	 * stay readable. */
	assert_int_equal(qkm_id_uuid7(&k.id, qkm_now_ns()), 0);
	k.count = 3;
	data.len = 96;
	assert_int_equal(qkm_store_ksa_put(f->st, &k), 0);
	for (uint32_t i = 0; i < 3; i++) {
		id[i] = k.id;
		qkm_id_set_index(&id[i], qkm_id_index(&k.id) + i);
	}
	assert_int_equal(qkm_store_ksa_get(f->st, &id[1], &got, false), 0);
	got.state = QKM_KSA_SUPPLIED;
	got.supplied_ns = 50;
	snprintf(got.delivered, sizeof(got.delivered), "sae-b");
	assert_int_equal(qkm_store_ksa_update(f->st, &got, false), 0);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(qkm_store_ksa_get(f->st, &id[i], &got, true), 0);
		assert_int_equal(got.run_count, 0);
		assert_int_equal(got.state, i == 1 ? QKM_KSA_SUPPLIED : QKM_KSA_READY);
		assert_non_null(got.data);
		assert_memory_equal(got.data->p, bytes + 32 * i, 32);
		qkm_secret_free(got.data);
	}
}

static void wal_is_empty(const struct fx *f)
{
	char p[PATH_MAX];
	struct stat sb;
	fx_path(f, "-wal", p);
	if (stat(p, &sb) == 0)
		assert_int_equal(sb.st_size, 0);
}

/* The WAL size the owner's checkpoint policy watches (automatic checkpoints
 * are off): it grows with each commit and is 0 after a checkpoint. */
static void test_wal_bytes(void **state)
{
	struct fx *f = *state;
	struct qkm_block a, b;
	assert_int_equal(qkm_store_checkpoint(f->st), 0);
	assert_int_equal(qkm_store_wal_bytes(f->st), 0);
	mkblock(&a, "node-b", QKM_KT_ENC, QKM_BLOCK_READY, 1, 0, 8, 32, 1, NULL);
	put(f->st, &a);
	uint64_t one = qkm_store_wal_bytes(f->st);
	assert_true(one > 0);
	mkblock(&b, "node-b", QKM_KT_ENC, QKM_BLOCK_READY, 2, 0, 8, 32, 1, NULL);
	put(f->st, &b);
	assert_true(qkm_store_wal_bytes(f->st) > one);
	assert_int_equal(qkm_store_checkpoint(f->st), 0);
	assert_int_equal(qkm_store_wal_bytes(f->st), 0);
	wal_is_empty(f);
	qkm_secret_free(a.data);
	qkm_secret_free(b.data);
}

/* The files' sizes an operator watches (the metric qkm_store_bytes): the
 * database and the key-data file as stat sees them; the WAL grows with a
 * commit and is empty after a checkpoint. */
static void test_disk_bytes(void **state)
{
	struct fx *f = *state;
	struct qkm_block a;
	uint64_t db, wal, keys;
	char p[PATH_MAX];
	struct stat sb;
	assert_int_equal(qkm_store_checkpoint(f->st), 0);
	mkblock(&a, "node-b", QKM_KT_ENC, QKM_BLOCK_READY, 1, 0, 256, 32, 1, NULL); /* 8 KiB */
	put(f->st, &a);
	assert_int_equal(qkm_store_disk_bytes(f->st, &db, &wal, &keys), 0);
	fx_path(f, "", p);
	assert_int_equal(stat(p, &sb), 0);
	assert_int_equal(db, (uint64_t)sb.st_size);
	assert_true(db > 0);
	assert_true(wal > 0);
	fx_path(f, "-keys", p);
	assert_int_equal(stat(p, &sb), 0);
	assert_int_equal(keys, (uint64_t)sb.st_size);
	assert_true(keys >= 8192);
	assert_int_equal(qkm_store_checkpoint(f->st), 0);
	assert_int_equal(qkm_store_disk_bytes(f->st, &db, &wal, &keys), 0);
	assert_int_equal(wal, 0);
	qkm_secret_free(a.data);
}

/* qkm_store_copy (fuzz_relay puts its stores back with it): the copy holds
 * the source's blocks, data and counters and nothing the copy held before,
 * its WAL is empty, and its cached statements work on the new content. Not
 * inside a transaction. */
static void test_copy(void **state)
{
	struct fx *f = *state;
	struct qkm_store *src;
	struct qkm_block a, b;
	struct seen s = {0};
	char p[PATH_MAX];
	int64_t v;
	uint8_t pat[8 * 32];
	fx_path(f, "-src.db", p);
	assert_int_equal(qkm_store_open(p, &src), 0);
	memset(pat, 0x5a, sizeof(pat));
	mkblock(&a, "node-b", QKM_KT_ENC, QKM_BLOCK_READY, 1, 0, 8, 32, 1, pat);
	put(src, &a);
	assert_int_equal(qkm_store_counter_add(src, "relay_seq:C", 3), 0);
	mkblock(&b, "node-b", QKM_KT_DEC, QKM_BLOCK_READY, 2, 0, 8, 32, 2, NULL);
	put(f->st, &b);
	assert_int_equal(qkm_store_counter_add(f->st, "other", 1), 0);

	assert_int_equal(qkm_store_begin(f->st), 0);
	assert_int_equal(qkm_store_copy(f->st, src), QKM_ESTATE);
	qkm_store_rollback(f->st);
	assert_int_equal(qkm_store_copy(f->st, f->st), QKM_ESTATE);
	assert_int_equal(qkm_store_copy(f->st, src), 0);
	assert_int_equal(qkm_store_wal_bytes(f->st), 0);

	assert_int_equal(qkm_store_blocks(f->st, "node-b", 0, true, collect, &s), 0);
	assert_int_equal(s.n, 1);
	assert_memory_equal(s.b[0].batch_id.b, a.batch_id.b, sizeof(a.batch_id.b));
	assert_memory_equal(s.b[0].data->p, pat, sizeof(pat));
	assert_int_equal(qkm_store_counter_get(f->st, "relay_seq:C", &v), 0);
	assert_int_equal(v, 3);
	assert_int_equal(qkm_store_counter_get(f->st, "other", &v), 0);
	assert_int_equal(v, 0);
	/* Writes go on as before, to the copy only. */
	assert_int_equal(qkm_store_counter_add(f->st, "relay_seq:C", 1), 0);
	assert_int_equal(qkm_store_counter_get(src, "relay_seq:C", &v), 0);
	assert_int_equal(v, 3);
	reopen(f);
	assert_int_equal(qkm_store_counter_get(f->st, "relay_seq:C", &v), 0);
	assert_int_equal(v, 4);
	seen_free(&s);
	qkm_secret_free(a.data);
	qkm_secret_free(b.data);
	qkm_store_close(src);
	fx_path(f, "-src.db", p);
	assert_int_equal(qkm_store_remove(p), 0);
}

static void random_pattern(uint8_t *p, size_t len)
{
	assert_int_equal(RAND_bytes(p, (int)len), 1);
}

/* Issue 7 item 5: SQLite's own copies of key bytes (page cache, records)
 * go through qkm's allocator since the first store opened: sizes are kept
 * (xSize) and realloc keeps the content; every block is wiped when freed
 * (a freed block cannot be read back here; test_secrets.sh searches a core
 * dump of every node). Not the secure heap: see store.c. */
static void test_sqlite_memory_secure(void **state)
{
	struct fx *f = *state;
	uint8_t *p = sqlite3_malloc(100);
	assert_non_null(p);
	assert_false(CRYPTO_secure_allocated(p));
	assert_true(sqlite3_msize(p) >= 100);
	memset(p, 0xa5, 100);
	p = sqlite3_realloc(p, 5000);
	assert_non_null(p);
	assert_true(sqlite3_msize(p) >= 5000);
	assert_int_equal(p[99], 0xa5);
	sqlite3_free(p);
	assert_true(qkm_store_begin(f->st) == 0);
	assert_true(qkm_store_commit(f->st) == 0);
	assert_true(sqlite3_memory_used() > 0);
}

/* Schema v9: a row is a run of keys. A get of any of its keys finds it. A
 * take of keys from a row's front splits it: the keys taken keep the row,
 * the rest (with the rest of the bytes and of the ranges) become a new one;
 * from its middle, three rows. A take may run on into the row that follows;
 * a key missing or in another state moves nothing. A round's deletion
 * counts keys, not rows, and leaves none of their bytes on disk. */
static void test_ksa_runs(void **state)
{
	struct fx *f = *state;
	struct qkm_ksa_key k, got;
	struct qkm_id id, key;
	uint64_t n;
	ksa_key_init(&k, QKM_KSA_MASTER_SIDE, QKM_KSA_STOCKED);
	k.size_bits = 64;
	assert_int_equal(qkm_id_uuid7(&id, qkm_now_ns()), 0);
	qkm_id_set_index(&id, 0);
	k.id = id;
	k.count = 10; /* 80 bytes: 30 from one range, 50 from another */
	k.n_ranges = 2;
	memset(&k.ranges[0].batch, 0x11, sizeof(k.ranges[0].batch));
	k.ranges[0].off = 100;
	k.ranges[0].len = 30;
	memset(&k.ranges[1].batch, 0x22, sizeof(k.ranges[1].batch));
	k.ranges[1].first = 4;
	k.ranges[1].off = 0;
	k.ranges[1].len = 50;
	uint8_t bytes[80];
	random_pattern(bytes, sizeof(bytes));
	k.data = qkm_secret_dup(bytes, sizeof(bytes));
	assert_non_null(k.data);
	assert_int_equal(qkm_store_ksa_put(f->st, &k), 0);
	qkm_secret_free(k.data);
	k.data = NULL;
	int64_t seq = k.seq;
	assert_true(on_disk(f, bytes, sizeof(bytes)) > 0); /* the search finds them */
	/* The next request's row: keys 10 and 11. */
	qkm_id_set_index(&k.id, 10);
	k.count = 2;
	k.n_ranges = 0;
	assert_int_equal(qkm_store_ksa_put(f->st, &k), 0);

	key = id;
	qkm_id_set_index(&key, 7);
	assert_int_equal(qkm_store_ksa_get(f->st, &key, &got, true), 0);
	assert_true(qkm_id_eq(&got.id, &id));
	assert_int_equal(got.count, 10);
	assert_int_equal(got.seq, seq);
	assert_int_equal(got.data->len, 80);
	qkm_secret_free(got.data);
	qkm_id_set_index(&key, 12); /* past the second row */
	assert_int_equal(qkm_store_ksa_get(f->st, &key, &got, false), QKM_ENOTFOUND);
	assert_int_equal(qkm_store_ksa_take(f->st, &id, 2, QKM_KSA_OFFERED, QKM_KSA_SUPPLIED, 5),
			 QKM_ENOTFOUND);

	/* Keys 0..4 (40 bytes: the first range and 10 of the second). */
	assert_int_equal(qkm_store_ksa_take(f->st, &id, 5, QKM_KSA_STOCKED, QKM_KSA_SUPPLIED, 5), 0);
	assert_int_equal(qkm_store_ksa_get(f->st, &id, &got, true), 0);
	assert_int_equal(got.seq, seq);
	assert_int_equal(got.count, 5);
	assert_int_equal(got.state, QKM_KSA_SUPPLIED);
	assert_int_equal(got.supplied_ns, 5);
	assert_int_equal(got.n_ranges, 2);
	assert_int_equal(got.ranges[0].off, 100);
	assert_int_equal(got.ranges[0].len, 30);
	assert_int_equal(got.ranges[1].off, 0);
	assert_int_equal(got.ranges[1].len, 10);
	assert_int_equal(got.data->len, 40);
	assert_memory_equal(got.data->p, bytes, 40);
	qkm_secret_free(got.data);
	qkm_id_set_index(&key, 6);
	assert_int_equal(qkm_store_ksa_get(f->st, &key, &got, true), 0);
	qkm_id_set_index(&key, 5);
	assert_true(qkm_id_eq(&got.id, &key));
	assert_int_not_equal(got.seq, seq);
	assert_int_equal(got.count, 5);
	assert_int_equal(got.state, QKM_KSA_STOCKED);
	assert_int_equal(got.supplied_ns, 0);
	assert_int_equal(got.n_ranges, 1);
	assert_int_equal(got.ranges[0].batch.b[0], 0x22);
	assert_int_equal(got.ranges[0].first, 4);
	assert_int_equal(got.ranges[0].off, 10);
	assert_int_equal(got.ranges[0].len, 40);
	assert_int_equal(got.data->len, 40);
	assert_memory_equal(got.data->p, bytes + 40, 40);
	qkm_secret_free(got.data);
	assert_int_equal(qkm_store_ksa_count(f->st, QKM_KSA_STOCKED, &n), 0);
	assert_int_equal(n, 7);

	/* Keys 7 and 8, from the middle of 5..9: 5..6 and 9 stay. */
	qkm_id_set_index(&key, 7);
	assert_int_equal(qkm_store_ksa_take(f->st, &key, 2, QKM_KSA_STOCKED, QKM_KSA_SUPPLIED, 6), 0);
	assert_int_equal(qkm_store_ksa_get(f->st, &key, &got, true), 0);
	assert_true(qkm_id_eq(&got.id, &key));
	assert_int_equal(got.count, 2);
	assert_int_equal(got.state, QKM_KSA_SUPPLIED);
	assert_int_equal(got.n_ranges, 1);
	assert_int_equal(got.ranges[0].off, 26);
	assert_int_equal(got.ranges[0].len, 16);
	assert_memory_equal(got.data->p, bytes + 56, 16);
	qkm_secret_free(got.data);
	qkm_id_set_index(&key, 6);
	assert_int_equal(qkm_store_ksa_get(f->st, &key, &got, false), 0);
	assert_int_equal(got.count, 2);
	assert_int_equal(got.state, QKM_KSA_STOCKED);
	assert_int_equal(got.ranges[0].off, 10);
	assert_int_equal(got.ranges[0].len, 16);
	qkm_id_set_index(&key, 9);
	assert_int_equal(qkm_store_ksa_get(f->st, &key, &got, false), 0);
	assert_true(qkm_id_eq(&got.id, &key));
	assert_int_equal(got.count, 1);
	assert_int_equal(got.state, QKM_KSA_STOCKED);
	assert_int_equal(got.ranges[0].off, 42);
	assert_int_equal(got.ranges[0].len, 8);

	/* Key 9 and the next row's 10..11 in one take. */
	assert_int_equal(qkm_store_ksa_take(f->st, &key, 3, QKM_KSA_STOCKED, QKM_KSA_SUPPLIED, 7), 0);
	assert_int_equal(qkm_store_ksa_count(f->st, QKM_KSA_STOCKED, &n), 0);
	assert_int_equal(n, 2);
	/* 5..7: key 7 is supplied already, so 5 and 6 stay as they are. */
	qkm_id_set_index(&key, 5);
	assert_int_equal(qkm_store_ksa_take(f->st, &key, 3, QKM_KSA_STOCKED, QKM_KSA_SUPPLIED, 8),
			 QKM_ENOTFOUND);
	assert_int_equal(qkm_store_ksa_count(f->st, QKM_KSA_STOCKED, &n), 0);
	assert_int_equal(n, 2);
	assert_int_equal(qkm_store_ksa_take(f->st, &key, 2, QKM_KSA_STOCKED, QKM_KSA_SUPPLIED, 8), 0);
	assert_int_equal(qkm_store_ksa_count(f->st, QKM_KSA_STOCKED, &n), 0);
	assert_int_equal(n, 0);
	assert_int_equal(qkm_store_ksa_count(f->st, QKM_KSA_SUPPLIED, &n), 0);
	assert_int_equal(n, 12);

	size_t nd;
	assert_int_equal(qkm_store_ksa_delete_round(f->st, &id, &nd), 0);
	assert_int_equal(nd, 12);
	assert_int_equal(qkm_store_checkpoint(f->st), 0);
	assert_int_equal(on_disk(f, bytes, sizeof(bytes)), 0);
}

/* R-LC-1 deletion / DESIGN "deleted keys are gone from the SQLite file and
 * WAL": after batch delete + commit + checkpoint, no 32-byte window of the
 * deleted keys is in either file, while a kept neighbour's keys are. Covers a
 * block small enough to sit in a shared leaf page and one spilling into
 * overflow pages. */
static void test_secure_delete_batch(void **state)
{
	struct fx *f = *state;
	enum { SMALL = 4096, LARGE = 200 * 1024, TINY = 512 };
	uint8_t *small = malloc(SMALL), *large = malloc(LARGE), *kept = malloc(SMALL);
	uint8_t tiny[TINY];
	struct qkm_block a, b, k, t;

	assert_non_null(small);
	assert_non_null(large);
	assert_non_null(kept);
	random_pattern(small, SMALL);
	random_pattern(large, LARGE);
	random_pattern(kept, SMALL);
	random_pattern(tiny, TINY);
	mkblock(&k, "node-b", QKM_KT_ENC, QKM_BLOCK_READY, 1, 0, SMALL / 32, 32, 1, kept);
	mkblock(&a, "node-b", QKM_KT_ENC, QKM_BLOCK_READY, 2, 0, SMALL / 32, 32, 2, small);
	mkblock(&b, "node-b", QKM_KT_ENC, QKM_BLOCK_READY, 2, SMALL / 32, LARGE / 32, 32, 3,
		large);
	/* a small block: its bytes in SQLite (small_data), not the key-data file */
	mkblock(&t, "node-b", QKM_KT_ENC, QKM_BLOCK_READY, 2, (SMALL + LARGE) / 32, TINY / 32,
		32, 5, tiny);
	assert_int_equal(qkm_store_begin(f->st), 0);
	put(f->st, &k);
	put(f->st, &a);
	put(f->st, &b);
	put(f->st, &t);
	assert_int_equal(qkm_store_commit(f->st), 0);

	/* sanity: the search finds key bytes that are there */
	assert_true(on_disk(f, tiny, TINY) > 0);
	assert_true(on_disk(f, small, SMALL) > 0);
	assert_true(on_disk(f, large, LARGE) > 0);
	assert_true(on_disk(f, kept, SMALL) > 0);

	assert_int_equal(qkm_store_begin(f->st), 0);
	assert_int_equal(qkm_store_batch_delete(f->st, &a.batch_id), 0);
	assert_int_equal(qkm_store_commit(f->st), 0);
	assert_int_equal(qkm_store_checkpoint(f->st), 0);
	wal_is_empty(f);

	assert_int_equal(on_disk(f, small, SMALL), 0);
	assert_int_equal(on_disk(f, large, LARGE), 0);
	assert_int_equal(on_disk(f, tiny, 32), 0);
	assert_true(on_disk(f, kept, SMALL) > 0);

	/* and it stays so once the pages are reused by later writes */
	struct qkm_block n;
	mkblock(&n, "node-b", QKM_KT_ENC, QKM_BLOCK_READY, 3, 0, 64, 32, 4, NULL);
	put(f->st, &n);
	assert_int_equal(qkm_store_checkpoint(f->st), 0);
	assert_int_equal(on_disk(f, small, SMALL), 0);
	assert_int_equal(on_disk(f, large, LARGE), 0);

	qkm_secret_free(a.data);
	qkm_secret_free(b.data);
	qkm_secret_free(k.data);
	qkm_secret_free(n.data);
	qkm_secret_free(t.data);
	free(small);
	free(large);
	free(kept);
}

/* R-SUP-8 delete-after-supply on disk: keys consumed through set_used leave
 * the files after a checkpoint while the unused tail stays; full use removes
 * the rest. */
static void test_secure_delete_used(void **state)
{
	struct fx *f = *state;
	enum { SMALL = 4096, LARGE = 200 * 1024, UNIT = 32, TINY = 1024 };
	uint8_t *small = malloc(SMALL), *large = malloc(LARGE), tiny[TINY];
	struct qkm_block a, b, t;

	assert_non_null(small);
	assert_non_null(large);
	random_pattern(small, SMALL);
	random_pattern(large, LARGE);
	random_pattern(tiny, TINY);
	mkblock(&a, "node-b", QKM_KT_ENC, QKM_BLOCK_READY, 1, 0, SMALL / UNIT, UNIT, 1, small);
	mkblock(&b, "node-b", QKM_KT_ENC, QKM_BLOCK_READY, 2, 0, LARGE / UNIT, UNIT, 2, large);
	mkblock(&t, "node-b", QKM_KT_ENC, QKM_BLOCK_READY, 3, 0, TINY / UNIT, UNIT, 3, tiny);
	assert_int_equal(qkm_store_begin(f->st), 0);
	put(f->st, &a);
	put(f->st, &b);
	put(f->st, &t);
	assert_int_equal(qkm_store_commit(f->st), 0);
	assert_true(on_disk(f, small, SMALL / 2) > 0);
	assert_true(on_disk(f, large, LARGE / 2) > 0);
	assert_true(on_disk(f, tiny, TINY) > 0);

	/* half of a, a bit more than half of b (a range not on a page edge),
	 * 13 keys of the small block t */
	const size_t bused = 3333, tused = 13 * UNIT;
	assert_int_equal(qkm_store_begin(f->st), 0);
	assert_int_equal(qkm_store_block_set_used(f->st, a.rowid, SMALL / 2), 0);
	assert_int_equal(qkm_store_block_set_used(f->st, b.rowid, (uint32_t)(bused * UNIT)), 0);
	assert_int_equal(qkm_store_block_set_used(f->st, t.rowid, (uint32_t)tused), 0);
	assert_int_equal(qkm_store_commit(f->st), 0);
	assert_int_equal(qkm_store_checkpoint(f->st), 0);
	wal_is_empty(f);
	assert_int_equal(on_disk(f, small, SMALL / 2), 0);
	assert_true(on_disk(f, small + SMALL / 2, SMALL / 2) > 0);
	assert_int_equal(on_disk(f, large, bused * UNIT), 0);
	assert_true(on_disk(f, large + bused * UNIT, LARGE - bused * UNIT) > 0);
	assert_int_equal(on_disk(f, tiny, tused), 0);
	assert_true(on_disk(f, tiny + tused, TINY - tused) > 0);
	/* the unused rest still reads back as it was */
	uint8_t out[TINY];
	int64_t rowid;
	assert_int_equal(qkm_store_block_read(f->st, "node-b", &t.batch_id, 0, QKM_KT_ENC,
					      (uint32_t)tused, (uint32_t)(TINY - tused), out,
					      &rowid),
			 0);
	assert_memory_equal(out, tiny + tused, TINY - tused);

	assert_int_equal(qkm_store_block_set_used(f->st, a.rowid, SMALL), 0);
	assert_int_equal(qkm_store_block_set_used(f->st, b.rowid, LARGE), 0);
	assert_int_equal(qkm_store_block_set_used(f->st, t.rowid, TINY), 0);
	assert_int_equal(qkm_store_checkpoint(f->st), 0);
	assert_int_equal(on_disk(f, small, SMALL), 0);
	assert_int_equal(on_disk(f, large, LARGE), 0);
	assert_int_equal(on_disk(f, tiny, UNIT), 0);
	qkm_secret_free(t.data);

	qkm_secret_free(a.data);
	qkm_secret_free(b.data);
	free(small);
	free(large);
}

/* --- the key-data file (docs/store.md) ------------------------------------ */

static void keys_write_at(const struct fx *f, long off, const uint8_t *p, size_t len)
{
	char kp[PATH_MAX];
	fx_path(f, "-keys", kp);
	FILE *fp = fopen(kp, "r+b");
	assert_non_null(fp);
	assert_int_equal(fseek(fp, off, SEEK_SET), 0);
	assert_int_equal(fwrite(p, 1, len, fp), len);
	assert_int_equal(fclose(fp), 0);
}

/* Bytes no committed block owns are wiped at open: what a crash leaves
 * between a put's write and its commit, or between a commit and the wipe
 * of what it consumed or deleted (planted here by hand, in a free gap, in
 * a consumed prefix and past the last extent). Live bytes stay. */
static void test_keys_open_wipes(void **state)
{
	struct fx *f = *state;
	enum { N = 2048 };
	struct qkm_block a, b, c;
	uint8_t *pa = malloc(N), *pb = malloc(N), *junk = malloc(N);
	assert_non_null(pa);
	assert_non_null(pb);
	assert_non_null(junk);
	random_pattern(pa, N);
	random_pattern(pb, N);
	random_pattern(junk, N);
	mkblock(&a, "node-b", QKM_KT_ENC, QKM_BLOCK_READY, 1, 0, N / 32, 32, 1, pa);
	mkblock(&b, "node-b", QKM_KT_ENC, QKM_BLOCK_READY, 2, 0, N / 32, 32, 2, NULL);
	mkblock(&c, "node-b", QKM_KT_ENC, QKM_BLOCK_READY, 3, 0, N / 32, 32, 3, pb);
	put(f->st, &a);
	put(f->st, &b);
	put(f->st, &c);
	assert_int_equal(qkm_store_batch_delete(f->st, &b.batch_id), 0); /* a gap at N */
	assert_int_equal(qkm_store_block_set_used(f->st, c.rowid, N / 2), 0);
	qkm_store_close(f->st);
	f->st = NULL;
	keys_write_at(f, N, junk, N);              /* the freed extent */
	keys_write_at(f, 2 * N, junk, N / 2);      /* c's consumed half */
	keys_write_at(f, 3 * N, junk, N);          /* past the last extent */
	assert_true(on_disk(f, junk, N) > 0);
	assert_int_equal(qkm_store_open(f->path, &f->st), 0);
	assert_int_equal(on_disk(f, junk, N / 2), 0);
	assert_true(on_disk(f, pa, N) > 0);
	assert_true(on_disk(f, pb + N / 2, N / 2) > 0);
	/* and the gap is reused: a new block of the same size lands in it */
	struct qkm_block d;
	uint8_t out[2 * N];
	struct qkm_range rg[4];
	size_t nr;
	mkblock(&d, "node-c", QKM_KT_ENC, QKM_BLOCK_READY, 4, 0, N / 32, 32, 4, junk);
	put(f->st, &d);
	assert_int_equal(qkm_store_pool_read(f->st, "node-c", QKM_KT_ENC, N, rg, 4, &nr, out), 0);
	assert_int_equal(nr, 1);
	assert_int_equal(rg[0].data_off, N);
	assert_memory_equal(out, junk, N);
	assert_int_equal(qkm_store_pool_read(f->st, "node-b", QKM_KT_ENC, N + N / 2, rg, 4, &nr,
					     out),
			 0);
	assert_memory_equal(out, pa, N);
	assert_memory_equal(out + N, pb + N / 2, N / 2);
	qkm_secret_free(a.data);
	qkm_secret_free(b.data);
	qkm_secret_free(c.data);
	qkm_secret_free(d.data);
	free(pa);
	free(pb);
	free(junk);
}

/* A put that rolls back leaves no byte behind and its extent free; a
 * deletion that rolls back leaves the block whole; the wipe of a deletion
 * waits for its commit. */
static void test_keys_follow_transactions(void **state)
{
	struct fx *f = *state;
	enum { N = 4096 };
	struct qkm_block a, b;
	uint8_t *pa = malloc(N), *pb = malloc(N), out[N];
	struct qkm_range rg[4];
	size_t nr;
	assert_non_null(pa);
	assert_non_null(pb);
	random_pattern(pa, N);
	random_pattern(pb, N);
	mkblock(&a, "node-b", QKM_KT_ENC, QKM_BLOCK_READY, 1, 0, N / 32, 32, 1, pa);
	put(f->st, &a);
	assert_int_equal(qkm_store_begin(f->st), 0);
	mkblock(&b, "node-b", QKM_KT_ENC, QKM_BLOCK_READY, 2, 0, N / 32, 32, 2, pb);
	put(f->st, &b);
	assert_true(on_disk(f, pb, N) > 0);
	qkm_store_rollback(f->st);
	assert_int_equal(on_disk(f, pb, 32), 0);

	assert_int_equal(qkm_store_begin(f->st), 0);
	assert_int_equal(qkm_store_batch_delete(f->st, &a.batch_id), 0);
	assert_true(on_disk(f, pa, N) > 0); /* until the commit */
	qkm_store_rollback(f->st);
	assert_int_equal(qkm_store_pool_read(f->st, "node-b", QKM_KT_ENC, N, rg, 4, &nr, out), 0);
	assert_memory_equal(out, pa, N);

	assert_int_equal(qkm_store_begin(f->st), 0);
	assert_int_equal(qkm_store_mark(f->st), 0);
	assert_int_equal(qkm_store_block_set_used(f->st, a.rowid, N / 2), 0);
	qkm_store_unmark(f->st, false); /* undone: a stays whole */
	assert_int_equal(qkm_store_batch_delete(f->st, &a.batch_id), 0);
	assert_int_equal(qkm_store_commit(f->st), 0);
	assert_int_equal(qkm_store_checkpoint(f->st), 0);
	assert_int_equal(on_disk(f, pa, 32), 0);
	assert_int_equal(qkm_store_pool_read(f->st, "node-b", QKM_KT_ENC, 32, rg, 4, &nr, out),
			 QKM_ENOKEY);
	qkm_secret_free(a.data);
	qkm_secret_free(b.data);
	free(pa);
	free(pb);
}

/* Blocks of at most 1 KiB keep their bytes in SQLite (small_data): a commit
 * of only such blocks writes nothing to the key-data file (one fdatasync,
 * the WAL's: a one-key relay step, R-REL-1; their deletion, R-SUP-8, is in
 * test_secure_delete_*). They read, walk, roll back and reopen as the others do; a
 * small block whose bytes are missing is refused at open. */
static void test_small_blocks(void **state)
{
	struct fx *f = *state;
	enum { TINY = 1024, BIG = 1056 };
	uint8_t tiny[TINY], big[BIG], gone[TINY], out[TINY + BIG];
	struct qkm_block t, b, g;
	struct qkm_range rg[4];
	struct seen s;
	struct stat sb;
	char kp[PATH_MAX];
	size_t nr;
	random_pattern(tiny, TINY);
	random_pattern(big, BIG);
	random_pattern(gone, TINY);
	fx_path(f, "-keys", kp);
	mkblock(&t, "node-b", QKM_KT_ENC, QKM_BLOCK_READY, 1, 0, TINY / 32, 32, 1, tiny);
	mkblock(&b, "node-b", QKM_KT_ENC, QKM_BLOCK_READY, 2, 0, BIG / 32, 32, 2, big);
	mkblock(&g, "node-b", QKM_KT_ENC, QKM_BLOCK_READY, 3, 0, TINY / 32, 32, 3, gone);
	put(f->st, &t);
	assert_int_equal(stat(kp, &sb), 0);
	assert_int_equal(sb.st_size, 0);
	put(f->st, &b); /* 33 keys, past the limit: the key-data file */
	assert_int_equal(stat(kp, &sb), 0);
	assert_true(sb.st_size >= BIG);

	/* a rolled-back small put leaves nothing once checkpointed */
	assert_int_equal(qkm_store_begin(f->st), 0);
	put(f->st, &g);
	qkm_store_rollback(f->st);
	assert_int_equal(qkm_store_checkpoint(f->st), 0);
	assert_int_equal(on_disk(f, gone, 32), 0);

	reopen(f);
	assert_int_equal(qkm_store_pool_read(f->st, "node-b", QKM_KT_ENC, TINY + BIG, rg, 4, &nr,
					     out),
			 0);
	assert_int_equal(nr, 2);
	assert_true(rg[0].data_off < 0);
	assert_true(rg[1].data_off >= 0);
	assert_memory_equal(out, tiny, TINY);
	assert_memory_equal(out + TINY, big, BIG);
	assert_int_equal(walk(f->st, "node-b", 0, true, &s), 0);
	assert_int_equal(s.n, 2);
	assert_memory_equal(s.b[0].data->p, tiny, TINY);
	seen_free(&s);

	/* the small block's bytes lost (by hand): the store is refused */
	qkm_store_close(f->st);
	f->st = NULL;
	file_exec(f->path, "DELETE FROM small_data");
	assert_int_equal(qkm_store_open(f->path, &f->st), QKM_ESTORE);
	assert_null(f->st);
	qkm_secret_free(t.data);
	qkm_secret_free(b.data);
	qkm_secret_free(g.data);
}

/* A key-data file shorter than its blocks need (truncated, or lost) is
 * refused with the store, and left as it is (the bytes of a deleted block
 * before the live one not wiped either); a second opener of a store in use
 * is refused. */
static void test_keys_truncated_refused(void **state)
{
	struct fx *f = *state;
	struct qkm_block a, g;
	struct qkm_store *other = NULL;
	char kp[PATH_MAX];
	struct stat sb;
	uint8_t junk[64 * 32];
	random_pattern(junk, sizeof(junk));
	mkblock(&g, "node-b", QKM_KT_ENC, QKM_BLOCK_READY, 2, 0, 64, 32, 1, NULL);
	put(f->st, &g);
	mkblock(&a, "node-b", QKM_KT_ENC, QKM_BLOCK_READY, 1, 0, 64, 32, 1, NULL);
	put(f->st, &a);
	assert_int_equal(qkm_store_batch_delete(f->st, &g.batch_id), 0);
	assert_int_equal(qkm_store_open(f->path, &other), QKM_ESTATE);
	assert_null(other);
	qkm_store_close(f->st);
	f->st = NULL;
	keys_write_at(f, 0, junk, sizeof(junk)); /* g's freed extent */
	fx_path(f, "-keys", kp);
	assert_int_equal(truncate(kp, 2 * 64 * 32 - 1), 0);
	assert_int_equal(qkm_store_open(f->path, &f->st), QKM_ESTORE);
	assert_null(f->st);
	assert_int_equal(stat(kp, &sb), 0);
	assert_int_equal(sb.st_size, 2 * 64 * 32 - 1);
	assert_true(on_disk(f, junk, sizeof(junk)) > 0);
	qkm_secret_free(a.data);
	qkm_secret_free(g.data);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_put_list_state_delete, setup, teardown),
		cmocka_unit_test_setup_teardown(test_blocks_range, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pool_stats, setup, teardown),
		cmocka_unit_test_setup_teardown(test_set_used, setup, teardown),
		cmocka_unit_test_setup_teardown(test_records, setup, teardown),
		cmocka_unit_test_setup_teardown(test_lc_prune, setup, teardown),
		cmocka_unit_test_setup_teardown(test_counters_prefix, setup, teardown),
		cmocka_unit_test_setup_teardown(test_counters, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reopen_persists, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rollback, setup, teardown),
		cmocka_unit_test_setup_teardown(test_newer_version_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_v2_ksa_keys_migrated, setup, teardown),
		cmocka_unit_test_setup_teardown(test_level_round_trip, setup, teardown),
		cmocka_unit_test_setup_teardown(test_level_invalid, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pool_read_its_only, setup, teardown),
		cmocka_unit_test_setup_teardown(test_batch_set_level, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pool_stats_its, setup, teardown),
		cmocka_unit_test_setup_teardown(test_v3_blocks_get_level, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sqlite_memory_secure, setup, teardown),
		cmocka_unit_test_setup_teardown(test_secure_delete_batch, setup, teardown),
		cmocka_unit_test_setup_teardown(test_secure_delete_used, setup, teardown),
		cmocka_unit_test_setup_teardown(test_wal_bytes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_disk_bytes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_copy, setup, teardown),
		cmocka_unit_test_setup_teardown(test_qkd_ids, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ksa_set_state_run, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ksa_open_keys_index, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ksa_put_in_txn, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ksa_runs, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ksa_prune, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ksa_slave_runs, setup, teardown),
		cmocka_unit_test_setup_teardown(test_keys_open_wipes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_keys_follow_transactions, setup, teardown),
		cmocka_unit_test_setup_teardown(test_keys_truncated_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_small_blocks, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
