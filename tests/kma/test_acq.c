/* test_acq.c - acquisition and pair confirmation of one QKD link (kma/acq.c):
 * two real stores and two acq state machines ("A" leads, "B" follows) joined
 * by in-memory frame queues that can drop, duplicate, corrupt, reorder or stop
 * delivering frames. Time is driven explicitly; nothing sleeps.
 * R-ACQ-1..4, R-LC-1. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <limits.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/secret.h"
#include "kma/acq.h"
#include "proto/frame.h"
#include "store/store.h"

#define MS 1000000ull
#define T0 (1700000000ull * 1000000000ull) /* a plausible wall-clock start */
#define UNIT 32u
#define BATCH_MAX 4096u
#define BATCH_NS (1 * MS)
#define WAIT_NS (100 * MS)

/* ---- frame queues and faults ------------------------------------------- */

struct msg {
	uint8_t *p;
	size_t len;
};

struct queue {
	struct msg *m;
	size_t n, cap;
};

static void q_push(struct queue *q, const uint8_t *p, size_t len)
{
	if (q->n == q->cap) {
		q->cap = q->cap ? 2 * q->cap : 16;
		q->m = realloc(q->m, q->cap * sizeof(*q->m));
		assert_non_null(q->m);
	}
	q->m[q->n].p = malloc(len);
	assert_non_null(q->m[q->n].p);
	memcpy(q->m[q->n].p, p, len);
	q->m[q->n].len = len;
	q->n++;
}

static struct msg q_pop(struct queue *q)
{
	struct msg m = q->m[0];
	memmove(q->m, q->m + 1, (q->n - 1) * sizeof(*q->m));
	q->n--;
	return m;
}

static void q_clear(struct queue *q)
{
	for (size_t i = 0; i < q->n; i++)
		free(q->m[i].p);
	free(q->m);
	memset(q, 0, sizeof(*q));
}

static uint16_t msg_type(const struct msg *m)
{
	return m->len >= QKM_FRAME_HDR ? (uint16_t)(m->p[5] << 8 | m->p[6]) : 0;
}

/* One fault, applied to the (skip+1)-th frame of `type` that the pump sees. */
enum fault_kind {
	F_NONE,
	F_DROP,    /* lost */
	F_DUP,     /* delivered twice */
	F_CORRUPT, /* last byte flipped (in a PREPARE: the digest) */
	F_DELAY,   /* moved behind the frames queued after it (reorder) */
};

struct fault {
	enum fault_kind kind;
	uint16_t type;
	int skip;
	int fired;
};

/* ---- the two sides ----------------------------------------------------- */

struct side {
	const char *name, *peer, *module;
	char dir[PATH_MAX - 64];
	char path[PATH_MAX - 32];
	struct qkm_store *st;
	struct qkm_acq *acq;
	struct qkm_acq_cfg cfg;
	struct queue out; /* frames this side sent, for the other */
	const uint32_t *session; /* the world's Kx session number */
	bool key_fails;          /* its TLS exporter fails */
	int first_err;    /* first nonzero qkm_acq_on_frame result */
	int n_err;
};

struct pc_seen {
	int calls;
	uint32_t req;
	int err;
	struct qkm_paircheck_result r;
};

struct world {
	struct side a, b; /* a = "A" (leader), b = "B" (follower) */
	uint64_t now;
	struct fault fault;
	bool dead; /* the link delivers nothing */
	uint32_t session; /* counts link_up()s: a new "TLS session" each */
	int parse_errors;
	struct pc_seen pc;
};

static int send_cb(const uint8_t *frame, size_t len, void *arg)
{
	struct side *s = arg;
	q_push(&s->out, frame, len);
	return 0;
}

/* The TLS exporter's part: both ends of one session get the same key for a
 * batch, and another session gives another key. */
static int mac_key_cb(const struct qkm_id *batch, uint8_t key[32], void *arg)
{
	const struct side *s = arg;
	uint8_t x[4];
	unsigned int n = 32;
	if (s->key_fails)
		return QKM_ECRYPTO;
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	qkm_be32_put(x, *s->session);
	int ok = md && EVP_DigestInit_ex(md, EVP_sha256(), NULL) &&
		 EVP_DigestUpdate(md, "test session", 12) && EVP_DigestUpdate(md, x, 4) &&
		 EVP_DigestUpdate(md, batch->b, QKM_ID_LEN) && EVP_DigestFinal_ex(md, key, &n);
	EVP_MD_CTX_free(md);
	return ok ? 0 : QKM_ECRYPTO;
}

static void pc_cb(uint32_t req, const struct qkm_paircheck_result *r, int err, void *arg)
{
	struct pc_seen *pc = arg;
	pc->calls++;
	pc->req = req;
	pc->err = err;
	if (r)
		pc->r = *r;
	else
		memset(&pc->r, 0, sizeof(pc->r));
}

static void side_cfg(struct side *s, uint32_t unit)
{
	memset(&s->cfg, 0, sizeof(s->cfg));
	qkm_acq_cfg_defaults(&s->cfg);
	snprintf(s->cfg.self, sizeof(s->cfg.self), "%s", s->name);
	snprintf(s->cfg.peer, sizeof(s->cfg.peer), "%s", s->peer);
	snprintf(s->cfg.link, sizeof(s->cfg.link), "A-B");
	snprintf(s->cfg.module, sizeof(s->cfg.module), "%s", s->module);
	s->cfg.unit_bytes = unit;
	s->cfg.batch_max_bytes = BATCH_MAX;
	s->cfg.batch_ns = BATCH_NS;
	s->cfg.wait_ns = WAIT_NS;
}

static void side_acq_new(struct world *w, struct side *s)
{
	s->session = &w->session;
	s->acq = qkm_acq_new(&s->cfg, s->st, send_cb, mac_key_cb, s);
	assert_non_null(s->acq);
	qkm_acq_set_paircheck_cb(s->acq, pc_cb, &w->pc);
}

static void side_open(struct world *w, struct side *s, const char *name, const char *peer,
		      const char *module, uint32_t unit)
{
	const char *tmp = getenv("QKM_TEST_TMP");
	if (!tmp || !*tmp)
		tmp = "/tmp";
	assert_true(mkdir(tmp, 0700) == 0 || errno == EEXIST);
	s->name = name;
	s->peer = peer;
	s->module = module;
	snprintf(s->dir, sizeof(s->dir), "%s/acq-%s-XXXXXX", tmp, name);
	assert_non_null(mkdtemp(s->dir));
	snprintf(s->path, sizeof(s->path), "%s/keys.db", s->dir);
	assert_int_equal(qkm_store_open(s->path, &s->st), 0);
	side_cfg(s, unit);
	side_acq_new(w, s);
}

static void side_close(struct side *s)
{
	static const char *const suffixes[] = {"", "-wal", "-shm", "-journal", "-keys"};
	char p[PATH_MAX];
	qkm_acq_free(s->acq);
	qkm_store_close(s->st);
	for (size_t i = 0; i < sizeof(suffixes) / sizeof(suffixes[0]); i++) {
		snprintf(p, sizeof(p), "%s%s", s->path, suffixes[i]);
		unlink(p);
	}
	rmdir(s->dir);
	q_clear(&s->out);
}

static struct world *world_new(uint32_t unit)
{
	struct world *w = calloc(1, sizeof(*w));
	assert_non_null(w);
	w->now = T0;
	side_open(w, &w->a, "A", "B", "qkd-A", unit);
	side_open(w, &w->b, "B", "A", "qkd-B", unit);
	assert_true(qkm_acq_is_leader(w->a.acq));
	assert_false(qkm_acq_is_leader(w->b.acq));
	return w;
}

static int setup(void **state)
{
	*state = world_new(UNIT);
	return 0;
}

static int teardown(void **state)
{
	struct world *w = *state;
	side_close(&w->a);
	side_close(&w->b);
	free(w);
	return 0;
}

/* Applies the fault (if it matches m) and says what to do with m. */
static enum fault_kind fault_check(struct world *w, const struct msg *m)
{
	struct fault *f = &w->fault;
	if (f->kind == F_NONE || f->fired || msg_type(m) != f->type)
		return F_NONE;
	if (f->skip-- > 0)
		return F_NONE;
	f->fired = 1;
	return f->kind;
}

static void deliver(struct world *w, struct side *to, const uint8_t *p, size_t len)
{
	struct qkm_frame f;
	if (qkm_frame_parse(p, len, &f) != 0) {
		w->parse_errors++;
		return;
	}
	int rc = qkm_acq_on_frame(to->acq, &f, w->now);
	if (rc) {
		to->n_err++;
		if (!to->first_err)
			to->first_err = rc;
	}
}

/* Moves one frame from `from`'s queue to `to`; false if there was none. */
static bool pump_one(struct world *w, struct side *from, struct side *to)
{
	if (!from->out.n)
		return false;
	struct msg m = q_pop(&from->out);
	if (w->dead) {
		free(m.p);
		return true;
	}
	switch (fault_check(w, &m)) {
	case F_DROP:
		break;
	case F_DUP:
		deliver(w, to, m.p, m.len);
		deliver(w, to, m.p, m.len);
		break;
	case F_CORRUPT:
		m.p[m.len - 1] ^= 0x01;
		deliver(w, to, m.p, m.len);
		break;
	case F_DELAY:
		q_push(&from->out, m.p, m.len); /* behind everything queued now */
		break;
	case F_NONE:
		deliver(w, to, m.p, m.len);
		break;
	}
	free(m.p);
	return true;
}

/* One frame each way (both, not short-circuit); false if neither had one. */
static bool pump_both(struct world *w)
{
	bool ab = pump_one(w, &w->a, &w->b);
	bool ba = pump_one(w, &w->b, &w->a);
	return ab || ba;
}

/* Delivers frames both ways until both queues are empty. Returns the first
 * error either side's qkm_acq_on_frame reported during this pump. */
static int pump(struct world *w)
{
	w->a.first_err = w->b.first_err = 0;
	for (int guard = 0; guard < 100000; guard++) {
		bool moved = pump_one(w, &w->a, &w->b);
		moved |= pump_one(w, &w->b, &w->a);
		if (!moved) {
			/* The end of a "read": the leader stores the rounds PREPARED
			 * and the follower applies the COMMITs it queued, as their
			 * owner does (and which may send frames). */
			qkm_acq_flush(w->a.acq);
			qkm_acq_flush(w->b.acq);
			if (w->a.out.n || w->b.out.n)
				continue;
			return w->a.first_err ? w->a.first_err : w->b.first_err;
		}
	}
	fail_msg("pump did not settle");
	return -1;
}

/* Advances the clock, ticks both sides and pumps. */
static int step(struct world *w, uint64_t dt)
{
	w->now += dt;
	qkm_acq_tick(w->a.acq, w->now);
	qkm_acq_tick(w->b.acq, w->now);
	return pump(w);
}

/* Steps until neither side has rounds in flight or buffered key, at most n. */
static void settle(struct world *w, int n)
{
	struct qkm_acq_stats sa, sb;
	for (int i = 0; i < n; i++) {
		assert_int_equal(step(w, BATCH_NS), 0);
		qkm_acq_stats(w->a.acq, &sa);
		qkm_acq_stats(w->b.acq, &sb);
		if (!sa.in_flight && !sb.in_flight && !sa.buffered_bytes && !sb.buffered_bytes)
			return;
	}
}

/* Both ends see the Kx link come up; the pair reconciles. */
static void link_up(struct world *w)
{
	w->session++;
	qkm_acq_on_peer_up(w->a.acq, w->now);
	qkm_acq_on_peer_up(w->b.acq, w->now);
	assert_int_equal(pump(w), 0);
	assert_true(qkm_acq_reconciled(w->a.acq));
	assert_true(qkm_acq_reconciled(w->b.acq));
}

static void link_down(struct world *w)
{
	qkm_acq_on_peer_down(w->a.acq);
	qkm_acq_on_peer_down(w->b.acq);
	/* Frames in flight on a dead TCP connection never arrive. */
	q_clear(&w->a.out);
	q_clear(&w->b.out);
}

/* ---- QKD-key files ----------------------------------------------------- */

/* Deterministic key bytes: the same (seed, len) gives the same data. */
static void fill(uint8_t *p, size_t len, uint32_t seed)
{
	uint32_t x = seed * 2654435761u + 1;
	for (size_t i = 0; i < len; i++) {
		x ^= x << 13, x ^= x >> 17, x ^= x << 5;
		p[i] = (uint8_t)x;
	}
}

static void mkfile(struct qkm_keyfile *kf, const struct side *s, const char *id,
		   const uint8_t *data, size_t len)
{
	qkm_keyfile_init(kf, QKM_KF_QKD);
	snprintf(kf->m.qkd.qkd_key_id, sizeof(kf->m.qkd.qkd_key_id), "%s", id);
	kf->m.qkd.key_length = (uint32_t)(8 * len);
	snprintf(kf->m.qkd.qkd_module_id, sizeof(kf->m.qkd.qkd_module_id), "%s", s->module);
	snprintf(kf->m.qkd.matching_qkd_module_id, sizeof(kf->m.qkd.matching_qkd_module_id), "%s",
		 strcmp(s->module, "qkd-A") == 0 ? "qkd-B" : "qkd-A");
	kf->data = qkm_secret_dup(data, len);
	assert_non_null(kf->data);
}

/* Hands one file to one side. flip: bit index to flip in this copy, or -1. */
static int feed_one(struct world *w, struct side *s, const char *id, uint32_t seed, size_t len,
		    long flip)
{
	uint8_t *d = malloc(len);
	struct qkm_keyfile kf;
	assert_non_null(d);
	fill(d, len, seed);
	if (flip >= 0)
		d[flip / 8] ^= (uint8_t)(1u << (flip % 8));
	mkfile(&kf, s, id, d, len);
	free(d);
	int rc = qkm_acq_on_keyfile(s->acq, &kf, w->now);
	if (rc == 0)
		assert_null(kf.data); /* taken */
	qkm_keyfile_fini(&kf);
	return rc;
}

/* Files "<prefix>-<i>" for i in [from, to), identical on both sides. */
static void feed_both(struct world *w, const char *prefix, int from, int to, size_t len)
{
	char id[QKM_NAME_MAX];
	for (int i = from; i < to; i++) {
		snprintf(id, sizeof(id), "%s-%d", prefix, i);
		assert_int_equal(feed_one(w, &w->a, id, (uint32_t)i, len, -1), 0);
		assert_int_equal(feed_one(w, &w->b, id, (uint32_t)i, len, -1), 0);
	}
}

/* ---- store inspection -------------------------------------------------- */

#define MAXBLK 64
struct blocks {
	int n;
	struct qkm_block b[MAXBLK];
};

static int collect(struct qkm_block *b, void *arg)
{
	struct blocks *l = arg;
	assert_true(l->n < MAXBLK);
	l->b[l->n++] = *b;
	b->data = NULL; /* ours now */
	return 0;
}

static int blk_cmp(const void *x, const void *y)
{
	const struct qkm_block *a = x, *b = y;
	int c = memcmp(a->batch_id.b, b->batch_id.b, QKM_ID_LEN);
	return c ? c : (a->first_index > b->first_index) - (a->first_index < b->first_index);
}

/* All blocks of s's pool (states by mask, 0 = all), with data, sorted by ID. */
static void load(struct side *s, unsigned mask, struct blocks *l)
{
	memset(l, 0, sizeof(*l));
	assert_int_equal(qkm_store_blocks(s->st, s->peer, mask, true, collect, l), 0);
	qsort(l->b, (size_t)l->n, sizeof(l->b[0]), blk_cmp);
}

static void blocks_free(struct blocks *l)
{
	for (int i = 0; i < l->n; i++)
		qkm_secret_free(l->b[i].data);
	l->n = 0;
}

static uint32_t total_keys(const struct blocks *l)
{
	uint32_t n = 0;
	for (int i = 0; i < l->n; i++)
		n += l->b[i].count;
	return n;
}

static enum qkm_key_type mirror(enum qkm_key_type t)
{
	return t == QKM_KT_ENC ? QKM_KT_DEC : t == QKM_KT_DEC ? QKM_KT_ENC : t;
}

/* KMA-key i of a block: batch ID with its last 4 bytes = first_index + i. */
static struct qkm_id key_id(const struct qkm_block *b, uint32_t i)
{
	struct qkm_id id = b->batch_id;
	qkm_be32_put(id.b + 12, b->first_index + i);
	return id;
}

/* R-ACQ-3, R-ACQ-4: the two pools hold the same blocks, all READY, with the
 * same IDs and bytes and mirrored key types; no batch is held by one side
 * only. Returns the number of blocks. */
static int assert_pools_equal(struct world *w)
{
	struct blocks la, lb;
	load(&w->a, 0, &la);
	load(&w->b, 0, &lb);
	assert_int_equal(la.n, lb.n);
	for (int i = 0; i < la.n; i++) {
		const struct qkm_block *x = &la.b[i], *y = &lb.b[i];
		assert_true(qkm_id_eq(&x->batch_id, &y->batch_id));
		assert_int_equal(x->first_index, y->first_index);
		assert_int_equal(x->count, y->count);
		assert_int_equal(x->unit_bytes, y->unit_bytes);
		assert_int_equal(x->state, QKM_BLOCK_READY);
		assert_int_equal(y->state, QKM_BLOCK_READY);
		assert_int_not_equal(x->key_type, QKM_KT_NONE);
		assert_int_equal(y->key_type, mirror(x->key_type));
		assert_string_equal(x->qkd_module_id, "qkd-A");
		assert_string_equal(y->qkd_module_id, "qkd-B");
		assert_int_equal(x->data->len, (size_t)x->count * x->unit_bytes);
		assert_int_equal(y->data->len, x->data->len);
		assert_memory_equal(x->data->p, y->data->p, x->data->len);
		assert_int_equal(x->batch_id.b[12] | x->batch_id.b[13] | x->batch_id.b[14] |
					 x->batch_id.b[15],
				 0);
	}
	int n = la.n;
	blocks_free(&la);
	blocks_free(&lb);

	struct qkm_pool_stats pa, pb;
	assert_int_equal(qkm_store_pool_stats(w->a.st, "B", &pa), 0);
	assert_int_equal(qkm_store_pool_stats(w->b.st, "A", &pb), 0);
	assert_true(pa.keys == pb.keys && pa.bytes == pb.bytes);
	assert_true(pa.enc_bytes == pb.dec_bytes && pa.dec_bytes == pb.enc_bytes);
	assert_true(pa.pending_keys == 0 && pb.pending_keys == 0);
	return n;
}

/* True if s's pool holds a block with this batch ID and first index. */
static bool holds(const struct blocks *l, const struct qkm_block *b)
{
	for (int i = 0; i < l->n; i++)
		if (qkm_id_eq(&l->b[i].batch_id, &b->batch_id) &&
		    l->b[i].first_index == b->first_index)
			return true;
	return false;
}

/* The acq.c invariant, valid at every moment (also inside a crash window):
 * a block READY on one side is held (PENDING or READY) by the other. */
static void assert_no_one_sided_ready(struct world *w)
{
	struct blocks la, lb;
	load(&w->a, 0, &la);
	load(&w->b, 0, &lb);
	for (int i = 0; i < la.n; i++)
		if (la.b[i].state == QKM_BLOCK_READY)
			assert_true(holds(&lb, &la.b[i]));
	for (int i = 0; i < lb.n; i++)
		if (lb.b[i].state == QKM_BLOCK_READY)
			assert_true(holds(&la, &lb.b[i]));
	blocks_free(&la);
	blocks_free(&lb);
}

/* Counts the blocks of s's pool in the given states. */
static int count_blocks(struct side *s, unsigned mask)
{
	struct blocks l;
	load(s, mask, &l);
	int n = l.n;
	blocks_free(&l);
	return n;
}

static int64_t counter(struct side *s, const char *name)
{
	int64_t v = -1;
	assert_int_equal(qkm_store_counter_get(s->st, name, &v), 0);
	return v;
}

/* Life-cycle records: how many match event, key_id and detail substrings. */
struct rec_q {
	const char *event, *key_id, *detail;
	int n;
};

static int rec_match(const struct qkm_lc_event *ev, void *arg)
{
	struct rec_q *q = arg;
	if (strcmp(ev->event, q->event) == 0 && (!q->key_id || strstr(ev->key_id, q->key_id)) &&
	    (!q->detail || strstr(ev->detail, q->detail)))
		q->n++;
	return 0;
}

static int records(struct side *s, const char *event, const char *key_id, const char *detail)
{
	struct rec_q q = {event, key_id, detail, 0};
	assert_int_equal(qkm_store_records(s->st, 0, 0, rec_match, &q), 0);
	return q.n;
}

/* The batch IDs (hex) of s's pool, deduplicated, in ID order. */
static int batches(struct side *s, char hex[][33], int max)
{
	struct blocks l;
	int n = 0;
	load(s, 0, &l);
	for (int i = 0; i < l.n; i++)
		if (i == 0 || !qkm_id_eq(&l.b[i].batch_id, &l.b[i - 1].batch_id)) {
			assert_true(n < max);
			qkm_id_hex(&l.b[i].batch_id, hex[n++]);
		}
	blocks_free(&l);
	return n;
}

/* ---- hand-made frames for protocol violations -------------------------- */

struct fb {
	struct qkm_buf b;
	size_t start;
};

static void fb_begin(struct fb *f, uint16_t type, uint32_t req)
{
	qkm_buf_init(&f->b, 1u << 20, false);
	assert_int_equal(qkm_frame_begin(&f->b, type, req, &f->start), 0);
	assert_int_equal(qkm_put_str(&f->b, QKM_T_LINK, "A-B"), 0);
}

/* Ends the frame and feeds it to s; returns qkm_acq_on_frame's result. */
static int fb_feed(struct world *w, struct side *s, struct fb *f)
{
	struct qkm_frame fr;
	assert_int_equal(qkm_frame_end(&f->b, f->start), 0);
	assert_int_equal(qkm_frame_parse(f->b.p, f->b.len, &fr), 0);
	int rc = qkm_acq_on_frame(s->acq, &fr, w->now);
	qkm_buf_fini(&f->b);
	return rc;
}

static struct qkm_id some_batch(uint8_t tag)
{
	struct qkm_id id;
	memset(&id, 0, sizeof(id));
	id.b[0] = 0xee;
	id.b[1] = tag;
	return id;
}

/* A PREPARE listing ids, with a digest unless digest is false. */
static int feed_prepare(struct world *w, struct side *s, uint8_t tag, const char *const *ids,
			int n, bool digest)
{
	struct fb f;
	struct qkm_id id = some_batch(tag);
	uint8_t dg[32];
	memset(dg, 0x5a, sizeof(dg));
	fb_begin(&f, QKM_MSG_ACQ_PREPARE, 99);
	assert_int_equal(qkm_put_id(&f.b, QKM_T_BATCH, &id), 0);
	assert_int_equal(qkm_put_u32(&f.b, QKM_T_UNIT, UNIT), 0);
	for (int i = 0; i < n; i++)
		assert_int_equal(qkm_put_str(&f.b, QKM_T_QKD_ID, ids[i]), 0);
	if (digest)
		assert_int_equal(qkm_put_tlv(&f.b, QKM_T_DIGEST, dg, 32), 0);
	return fb_feed(w, s, &f);
}

/* ---- tests ------------------------------------------------------------- */

/* R-ACQ-1, R-ACQ-3, R-ACQ-4, R-LC-1: files of several sizes arrive over time;
 * after reconciliation, ticks and pumping both stores hold the same READY
 * blocks with the same KMA-key IDs and bytes, mirrored key types, equal
 * stock, and both sides recorded every step of every round. */
static void test_happy_path(void **state)
{
	struct world *w = *state;
	struct qkm_acq_stats sa, sb;
	link_up(w);
	feed_both(w, "k", 0, 3, 512);
	assert_int_equal(step(w, 0), 0); /* younger than batch_ns: no round yet */
	qkm_acq_stats(w->a.acq, &sa);
	assert_int_equal(sa.in_flight, 0);
	assert_int_equal(sa.buffered_bytes, 3 * 512);
	settle(w, 10);
	feed_both(w, "k", 3, 5, 100); /* R-ACQ-1: another file length */
	feed_both(w, "k", 5, 6, 37);  /* not a multiple of the unit */
	settle(w, 10);

	qkm_acq_stats(w->a.acq, &sa);
	qkm_acq_stats(w->b.acq, &sb);
	assert_int_equal(sa.in_flight, 0);
	assert_int_equal(sb.in_flight, 0);
	assert_int_equal(sa.buffered_bytes, 0);
	assert_int_equal(sb.buffered_bytes, 0);
	assert_int_equal(sa.aborted_batches, 0);
	assert_int_equal(sb.aborted_batches, 0);
	/* 1536 bytes = 48 keys; then 237 bytes = 7 keys + 13 bytes remainder */
	assert_true(sa.acquired_bytes == (48 + 7) * UNIT);
	assert_true(sb.acquired_bytes == sa.acquired_bytes);
	assert_int_equal(counter(&w->a, "acquired_bytes"), (48 + 7) * UNIT);
	assert_int_equal(counter(&w->b, "acquired_bytes"), (48 + 7) * UNIT);

	assert_int_equal(assert_pools_equal(w), 4); /* two rounds, two blocks each */
	struct blocks la;
	load(&w->a, 0, &la);
	assert_int_equal(total_keys(&la), 48 + 7);
	/* R-ACQ-4: key IDs unique; the first half of a batch encrypts from the
	 * leader, the rest from the follower. */
	for (int i = 0; i < la.n; i++) {
		const struct qkm_block *b = &la.b[i];
		assert_int_equal(b->key_type, b->first_index == 0 ? QKM_KT_ENC : QKM_KT_DEC);
		for (int j = 0; j < la.n; j++)
			for (uint32_t k = 0; k < b->count; k++)
				for (uint32_t m = 0; m < la.b[j].count; m++) {
					if (i == j && k == m)
						continue;
					struct qkm_id x = key_id(b, k), y = key_id(&la.b[j], m);
					assert_false(qkm_id_eq(&x, &y));
				}
	}
	/* The data is the files' data concatenated, in delivery order. */
	uint8_t want[3 * 512];
	for (int i = 0; i < 3; i++)
		fill(want + 512 * i, 512, (uint32_t)i);
	for (int i = 0; i < la.n; i++)
		if (la.b[i].count == 24) /* the first round's two blocks */
			assert_memory_equal(la.b[i].data->p, want + la.b[i].first_index * UNIT,
					    la.b[i].data->len);
	blocks_free(&la);

	/* R-LC-1: each round recorded on both sides. */
	char hex[4][33];
	int nb = batches(&w->a, hex, 4);
	assert_int_equal(nb, 2);
	struct side *sides[2] = {&w->a, &w->b};
	for (int s = 0; s < 2; s++) {
		assert_int_equal(records(sides[s], "received", "k-0..k-2", "3 QKD-key(s)"), 1);
		assert_int_equal(records(sides[s], "received", "k-3..k-5", "3 QKD-key(s)"), 1);
		for (int i = 0; i < nb; i++) {
			assert_int_equal(records(sides[s], "formatted", hex[i], NULL), 1);
			assert_int_equal(records(sides[s], "authenticated", hex[i], NULL), 1);
			assert_int_equal(records(sides[s], "stored", hex[i], NULL), 1);
		}
		assert_int_equal(records(sides[s], "aborted", NULL, NULL), 0);
	}
	for (int i = 0; i < nb; i++) {
		assert_int_equal(records(&w->a, "stored", hex[i], "ready"), 1);
		assert_int_equal(records(&w->b, "stored", hex[i], "pending"), 1);
		assert_int_equal(records(&w->b, "confirmed", hex[i], NULL), 1);
	}
}

/* R-ACQ-2: 4096-bit QKD-keys with a 32-byte unit give 16 KMA-keys each. */
static void test_reformat_split(void **state)
{
	struct world *w = *state;
	link_up(w);
	feed_both(w, "q", 0, 4, 4096 / 8);
	settle(w, 10);
	assert_int_equal(assert_pools_equal(w), 2);
	struct blocks la;
	load(&w->a, 0, &la);
	assert_int_equal(total_keys(&la), 4 * 16);
	assert_int_equal(la.b[0].count, 32);
	assert_int_equal(la.b[1].count, 32);
	assert_int_equal(la.b[0].unit_bytes, UNIT);
	blocks_free(&la);
	assert_int_equal(records(&w->a, "formatted", NULL, "64 KMA-key(s) of 32 bytes; 0 byte"), 1);
}

/* R-ACQ-2: a unit that does not divide the batch leaves a remainder that is
 * discarded on both sides and recorded as such. */
static void test_reformat_remainder(void **state)
{
	struct world *w = world_new(48);
	link_up(w);
	feed_both(w, "q", 0, 4, 512); /* 2048 = 42 * 48 + 32 */
	settle(w, 10);
	assert_int_equal(assert_pools_equal(w), 2);
	struct blocks la;
	load(&w->a, 0, &la);
	assert_int_equal(total_keys(&la), 42);
	assert_int_equal(la.b[0].count, 21);
	assert_int_equal(la.b[0].unit_bytes, 48);
	blocks_free(&la);
	struct qkm_acq_stats sa;
	qkm_acq_stats(w->a.acq, &sa);
	assert_true(sa.acquired_bytes == 42 * 48);
	assert_int_equal(records(&w->a, "formatted", NULL, "42 KMA-key(s) of 48 bytes; 32 byte(s) "
							   "remainder discarded"),
			 1);
	assert_int_equal(records(&w->b, "formatted", NULL, "32 byte(s) remainder discarded"), 1);
	teardown((void **)&w);
}

/* Protocol: a round carries at most batch_max_bytes of key (when files are no
 * larger than that), so rounds stay small and the window is used. */
static void test_round_size_bounded(void **state)
{
	struct world *w = *state;
	struct qkm_acq_stats sa;
	link_up(w);
	feed_both(w, "r", 0, 16, 512); /* 8192 bytes = two full rounds */
	w->now += BATCH_NS;
	qkm_acq_tick(w->a.acq, w->now);
	qkm_acq_stats(w->a.acq, &sa);
	assert_int_equal(sa.in_flight, 2);
	assert_int_equal(sa.buffered_bytes, 0);
	assert_int_equal(pump(w), 0);
	assert_int_equal(assert_pools_equal(w), 4);
	struct blocks la;
	load(&w->a, 0, &la);
	for (int i = 0; i < la.n; i++)
		assert_int_equal(la.b[i].count, BATCH_MAX / UNIT / 2);
	blocks_free(&la);
}

/* R-ACQ-3, R-LC-1: one flipped bit in B's copy of one file: the MACs
 * differ, both sides abort the round, nothing of it is stored anywhere, both
 * count the abort; the next round succeeds. */
static void test_flipped_bit_aborts_both(void **state)
{
	struct world *w = *state;
	struct qkm_acq_stats sa, sb;
	link_up(w);
	for (int i = 0; i < 4; i++) {
		char id[16];
		snprintf(id, sizeof(id), "f-%d", i);
		assert_int_equal(feed_one(w, &w->a, id, (uint32_t)i, 512, -1), 0);
		assert_int_equal(feed_one(w, &w->b, id, (uint32_t)i, 512, i == 2 ? 1234 : -1), 0);
	}
	assert_int_equal(step(w, BATCH_NS), 0);
	qkm_acq_stats(w->a.acq, &sa);
	qkm_acq_stats(w->b.acq, &sb);
	assert_int_equal(sa.aborted_batches, 1);
	assert_int_equal(sb.aborted_batches, 1);
	assert_int_equal(counter(&w->a, "aborted_batches"), 1);
	assert_int_equal(counter(&w->b, "aborted_batches"), 1);
	assert_int_equal(sa.in_flight + sb.in_flight, 0);
	assert_int_equal(sa.buffered_bytes + sb.buffered_bytes, 0); /* both discarded */
	assert_int_equal(count_blocks(&w->a, 0), 0);
	assert_int_equal(count_blocks(&w->b, 0), 0);
	assert_int_equal(records(&w->a, "aborted", NULL, "MAC mismatch"), 1);
	assert_int_equal(records(&w->b, "aborted", NULL, "MAC mismatch"), 1);
	assert_int_equal(records(&w->a, "stored", NULL, NULL), 0);
	assert_int_equal(records(&w->b, "stored", NULL, NULL), 0);

	feed_both(w, "g", 0, 2, 512);
	settle(w, 10);
	assert_int_equal(assert_pools_equal(w), 2);
	assert_int_equal(counter(&w->b, "aborted_batches"), 1);
}

/* Hands one file to one side with the module's hash_value of its bits; then
 * flips bit `corrupt` (if >= 0) of this copy, as if it were damaged
 * between the module and the KMA. */
static void feed_hashed(struct world *w, struct side *s, const char *id, uint32_t seed,
			long corrupt)
{
	uint8_t d[512];
	struct qkm_keyfile kf;
	fill(d, sizeof(d), seed);
	mkfile(&kf, s, id, d, sizeof(d));
	assert_int_equal(qkm_keyfile_set_hash(&kf), 0);
	if (corrupt >= 0)
		kf.data->p[corrupt / 8] ^= (uint8_t)(1u << (corrupt % 8));
	assert_int_equal(qkm_acq_on_keyfile(s->acq, &kf, w->now), 0); /* not checked on arrival */
	qkm_keyfile_fini(&kf);
}

/* R-ACQ-3, R-LC-1: copies that no longer match their module's hash_value
 * are taken on arrival (the round MAC covers the data), fail the MAC, and
 * each side's abort record names its own damaged copy; a copy whose module
 * hashed its own wrong bits (test_flipped_bit_aborts_both) names nobody. */
static void test_damaged_copy_named(void **state)
{
	struct world *w = *state;
	link_up(w);
	for (int i = 0; i < 4; i++) {
		char id[16];
		snprintf(id, sizeof(id), "h-%d", i);
		feed_hashed(w, &w->a, id, (uint32_t)i, i == 1 ? 77 : -1);
		feed_hashed(w, &w->b, id, (uint32_t)i, i == 3 ? 4000 : -1);
	}
	assert_int_equal(step(w, BATCH_NS), 0);
	assert_int_equal(count_blocks(&w->a, 0) + count_blocks(&w->b, 0), 0);
	assert_int_equal(records(&w->b, "aborted", NULL, "MAC mismatch"), 1);
	assert_int_equal(records(&w->b, "aborted", NULL,
				 "at B, QKD-key h-3 does not match its module's hash_value"),
			 1);
	assert_int_equal(records(&w->b, "aborted", NULL, "at A"), 0);
	/* The leader records the follower's finding and its own. */
	assert_int_equal(records(&w->a, "aborted", NULL,
				 "at B, QKD-key h-3 does not match its module's hash_value; at A, "
				 "QKD-key h-1 does not match its module's hash_value"),
			 1);
	assert_int_equal(records(&w->a, "aborted", NULL, "h-0"), 0);

	/* Undamaged copies with hashes: confirmed as ever. */
	for (int i = 4; i < 6; i++) {
		char id[16];
		snprintf(id, sizeof(id), "h-%d", i);
		feed_hashed(w, &w->a, id, (uint32_t)i, -1);
		feed_hashed(w, &w->b, id, (uint32_t)i, -1);
	}
	settle(w, 10);
	assert_int_equal(assert_pools_equal(w), 2);
}

/* R-ACQ-3: a follower that cannot derive a round's MAC key aborts the round
 * at once (the leader does not wait for it), both discard its files, and
 * the next round is confirmed. */
static void test_mac_key_failure_aborts(void **state)
{
	struct world *w = *state;
	struct qkm_acq_stats sa, sb;
	link_up(w);
	w->b.key_fails = true;
	feed_both(w, "x", 0, 2, 512);
	assert_int_equal(step(w, BATCH_NS), 0);
	qkm_acq_stats(w->a.acq, &sa);
	qkm_acq_stats(w->b.acq, &sb);
	assert_int_equal(sa.aborted_batches, 1);
	assert_int_equal(sb.aborted_batches, 1);
	assert_int_equal(sa.in_flight + sb.in_flight, 0);
	assert_int_equal(sa.buffered_bytes + sb.buffered_bytes, 0);
	assert_int_equal(records(&w->b, "aborted", NULL, "MAC key not derived"), 1);
	assert_int_equal(records(&w->a, "aborted", NULL, "aborted by B: MAC key not derived"), 1);
	assert_int_equal(count_blocks(&w->a, 0) + count_blocks(&w->b, 0), 0);
	w->b.key_fails = false;
	feed_both(w, "x", 2, 4, 512);
	settle(w, 10);
	assert_int_equal(assert_pools_equal(w), 2);
}

/* R-ACQ-3: a PREPARE whose digest was corrupted on the way is a mismatch too. */
static void test_corrupted_digest_aborts_both(void **state)
{
	struct world *w = *state;
	struct qkm_acq_stats sa, sb;
	link_up(w);
	w->fault = (struct fault){F_CORRUPT, QKM_MSG_ACQ_PREPARE, 0, 0};
	feed_both(w, "c", 0, 2, 512);
	settle(w, 5);
	assert_true(w->fault.fired);
	qkm_acq_stats(w->a.acq, &sa);
	qkm_acq_stats(w->b.acq, &sb);
	assert_int_equal(sa.aborted_batches, 1);
	assert_int_equal(sb.aborted_batches, 1);
	assert_int_equal(count_blocks(&w->a, 0) + count_blocks(&w->b, 0), 0);
	feed_both(w, "c", 2, 4, 512);
	settle(w, 5);
	assert_int_equal(assert_pools_equal(w), 2);
}

/* R-ACQ-3: a file the follower lacks: the round waits up to wait_ns, then is
 * aborted on both sides; nothing is stored. */
static void test_file_missing_at_follower(void **state)
{
	struct world *w = *state;
	struct qkm_acq_stats sa, sb;
	link_up(w);
	assert_int_equal(feed_one(w, &w->a, "m-0", 0, 512, -1), 0);
	assert_int_equal(feed_one(w, &w->a, "m-1", 1, 512, -1), 0);
	assert_int_equal(feed_one(w, &w->b, "m-0", 0, 512, -1), 0);
	assert_int_equal(step(w, BATCH_NS), 0);
	qkm_acq_stats(w->b.acq, &sb);
	assert_int_equal(sb.in_flight, 1); /* waiting for m-1 */
	assert_int_equal(step(w, WAIT_NS / 2), 0);
	qkm_acq_stats(w->b.acq, &sb);
	assert_int_equal(sb.in_flight, 1);
	assert_int_equal(count_blocks(&w->b, 0), 0);
	assert_int_equal(step(w, WAIT_NS / 2), 0);
	qkm_acq_stats(w->a.acq, &sa);
	qkm_acq_stats(w->b.acq, &sb);
	assert_int_equal(sa.in_flight + sb.in_flight, 0);
	assert_int_equal(sa.aborted_batches, 1);
	assert_int_equal(sb.aborted_batches, 1);
	assert_int_equal(sb.buffered_bytes, 0); /* m-0 discarded too */
	assert_int_equal(count_blocks(&w->a, 0) + count_blocks(&w->b, 0), 0);
	assert_int_equal(records(&w->b, "aborted", NULL, "QKD-key m-1 missing at B"), 1);
	assert_int_equal(records(&w->a, "aborted", NULL, "missing"), 1);

	/* A late file that arrives in time is waited for and used. */
	feed_both(w, "n", 0, 1, 512);
	assert_int_equal(feed_one(w, &w->a, "n-1", 1, 512, -1), 0);
	assert_int_equal(step(w, BATCH_NS), 0);
	assert_int_equal(feed_one(w, &w->b, "n-1", 1, 512, -1), 0);
	settle(w, 5);
	assert_int_equal(assert_pools_equal(w), 2);
}

/* R-ACQ-3: a file the leader never received: the follower discards its copy
 * once a later round shows it was skipped, and stores nothing unmatched. */
static void test_file_missing_at_leader(void **state)
{
	struct world *w = *state;
	struct qkm_acq_stats sb;
	link_up(w);
	assert_int_equal(feed_one(w, &w->b, "l-0", 0, 512, -1), 0);
	feed_both(w, "l", 1, 3, 512);
	settle(w, 5);
	qkm_acq_stats(w->b.acq, &sb);
	assert_int_equal(sb.buffered_bytes, 0);
	assert_int_equal(sb.discarded_qkd_keys, 1);
	assert_int_equal(sb.aborted_batches, 0);
	assert_int_equal(records(&w->b, "aborted", "l-0..l-0", "the leader moved past them"), 1);
	assert_int_equal(assert_pools_equal(w), 2);
	struct blocks lb;
	load(&w->b, 0, &lb);
	assert_int_equal(total_keys(&lb), 2 * 16); /* l-1 and l-2 only */
	uint8_t want[512];
	fill(want, sizeof(want), 1);
	assert_memory_equal(lb.b[0].data->p, want, 16 * UNIT);
	blocks_free(&lb);
}

/* R-ACQ-3 crash window: PREPARED lost, so the leader never stored the round
 * and B holds it PENDING. After the reconnect B deletes it. */
static void test_lost_prepared_reconciled_away(void **state)
{
	struct world *w = *state;
	link_up(w);
	feed_both(w, "a", 0, 2, 512);
	settle(w, 5);
	assert_int_equal(assert_pools_equal(w), 2);

	w->fault = (struct fault){F_DROP, QKM_MSG_ACQ_PREPARED, 0, 0};
	feed_both(w, "b", 0, 2, 512);
	assert_int_equal(step(w, BATCH_NS), 0);
	assert_true(w->fault.fired);
	assert_int_equal(count_blocks(&w->b, 1u << QKM_BLOCK_PENDING), 2);
	assert_int_equal(count_blocks(&w->a, 0), 2); /* only the first round */
	struct qkm_pool_stats pb;
	assert_int_equal(qkm_store_pool_stats(w->b.st, "A", &pb), 0);
	assert_true(pb.pending_keys == 32);
	assert_no_one_sided_ready(w);

	link_down(w);
	link_up(w);
	assert_int_equal(count_blocks(&w->b, 1u << QKM_BLOCK_PENDING), 0);
	assert_int_equal(assert_pools_equal(w), 2);
	assert_int_equal(counter(&w->a, "aborted_batches"), 1); /* abandoned round */
	assert_int_equal(counter(&w->b, "aborted_batches"), 1); /* deleted PENDING */
	assert_int_equal(records(&w->b, "aborted", NULL, "does not hold it (reconciled)"), 1);
}

/* R-ACQ-3 crash window: COMMIT lost; the leader holds the round READY, B
 * PENDING. Reconciliation makes B's copy READY. */
static void test_lost_commit_reconciled_ready(void **state)
{
	struct world *w = *state;
	link_up(w);
	w->fault = (struct fault){F_DROP, QKM_MSG_ACQ_COMMIT, 0, 0};
	feed_both(w, "a", 0, 2, 512);
	settle(w, 5);
	assert_true(w->fault.fired);
	assert_int_equal(count_blocks(&w->a, 1u << QKM_BLOCK_READY), 2);
	assert_int_equal(count_blocks(&w->b, 1u << QKM_BLOCK_PENDING), 2);
	assert_no_one_sided_ready(w);

	link_down(w);
	link_up(w);
	assert_int_equal(assert_pools_equal(w), 2);
	assert_int_equal(records(&w->b, "confirmed", NULL, "(reconciled)"), 1);
	assert_int_equal(counter(&w->b, "acquired_bytes"), 32 * UNIT);
	assert_int_equal(counter(&w->a, "aborted_batches"), 0);
	assert_int_equal(counter(&w->b, "aborted_batches"), 0);
}

/* R-ACQ-3 crash window: the leader "restarts" (acq freed, store closed and
 * reopened, new acq) with one round READY but not committed and one round
 * prepared but not stored. Reconciliation settles both, and acquisition goes
 * on afterwards. */
static void test_leader_restart(void **state)
{
	struct world *w = *state;
	link_up(w);
	w->fault = (struct fault){F_DROP, QKM_MSG_ACQ_COMMIT, 0, 0};
	feed_both(w, "a", 0, 2, 512);
	assert_int_equal(step(w, BATCH_NS), 0);
	w->fault = (struct fault){F_NONE, 0, 0, 0};
	feed_both(w, "b", 0, 2, 512);
	w->now += BATCH_NS;
	qkm_acq_tick(w->a.acq, w->now);
	assert_int_equal(w->a.out.n, 1);
	{ /* deliver the PREPARE only; B's PREPARED is lost with the leader */
		struct msg m = q_pop(&w->a.out);
		deliver(w, &w->b, m.p, m.len);
		free(m.p);
		qkm_acq_flush(w->b.acq); /* the end of B's read: stored PENDING */
	}
	assert_int_equal(count_blocks(&w->a, 1u << QKM_BLOCK_READY), 2);
	assert_int_equal(count_blocks(&w->b, 1u << QKM_BLOCK_PENDING), 4);
	assert_no_one_sided_ready(w);

	qkm_acq_free(w->a.acq);
	qkm_store_close(w->a.st);
	q_clear(&w->a.out);
	q_clear(&w->b.out);
	assert_int_equal(qkm_store_open(w->a.path, &w->a.st), 0);
	side_acq_new(w, &w->a);
	qkm_acq_on_peer_down(w->b.acq);
	link_up(w);
	assert_int_equal(assert_pools_equal(w), 2);
	assert_int_equal(count_blocks(&w->b, 1u << QKM_BLOCK_PENDING), 0);

	/* B still buffers nothing of the rounds; new files flow normally. */
	feed_both(w, "c", 0, 2, 512);
	settle(w, 5);
	assert_int_equal(assert_pools_equal(w), 4);
}

/* R-ACQ-3: a dead link stops rounds; nothing is stored on one side only,
 * and after the link returns the buffered files are confirmed. */
static void test_dead_link(void **state)
{
	struct world *w = *state;
	struct qkm_acq_stats sa;
	link_up(w);
	w->dead = true;
	feed_both(w, "d", 0, 2, 512);
	settle(w, 3);
	assert_int_equal(count_blocks(&w->a, 0) + count_blocks(&w->b, 0), 0);
	qkm_acq_stats(w->a.acq, &sa);
	assert_int_equal(sa.in_flight, 1);
	w->dead = false;
	link_down(w);
	qkm_acq_stats(w->a.acq, &sa);
	assert_int_equal(sa.in_flight, 0);
	assert_int_equal(sa.aborted_batches, 1);
	link_up(w);
	feed_both(w, "e", 0, 2, 512);
	settle(w, 5);
	/* B's copies of d-* were discarded as never offered again. */
	struct qkm_acq_stats sb;
	qkm_acq_stats(w->b.acq, &sb);
	assert_int_equal(sb.buffered_bytes, 0);
	assert_int_equal(sb.discarded_qkd_keys, 2);
	assert_int_equal(assert_pools_equal(w), 2);
}

/* Protocol violations are QKM_EPEER. */
static void test_protocol_violations(void **state)
{
	struct world *w = *state;
	static const char *const one[] = {"p-0"};
	static const char *const twice[] = {"p-0", "p-0"};
	static const char *const twice_absent[] = {"z-0", "z-0"};

	/* PREPARE before reconciliation */
	assert_int_equal(feed_prepare(w, &w->b, 1, one, 1, true), QKM_EPEER);
	link_up(w);
	/* PREPARE at the leader */
	assert_int_equal(feed_prepare(w, &w->a, 2, one, 1, true), QKM_EPEER);
	/* malformed PREPARE: no digest; no QKD-key IDs */
	assert_int_equal(feed_prepare(w, &w->b, 3, one, 1, false), QKM_EPEER);
	assert_int_equal(feed_prepare(w, &w->b, 4, one, 0, true), QKM_EPEER);
	/* the same QKD-key ID twice, whether or not the file is here yet */
	assert_int_equal(feed_prepare(w, &w->b, 5, twice_absent, 2, true), QKM_EPEER);
	assert_int_equal(feed_one(w, &w->b, "p-0", 0, 512, -1), 0);
	assert_int_equal(feed_prepare(w, &w->b, 6, twice, 2, true), QKM_EPEER);
	struct qkm_acq_stats sb;
	qkm_acq_stats(w->b.acq, &sb);
	assert_int_equal(sb.in_flight, 0); /* nothing queued by a bad PREPARE */

	/* COMMIT for a batch the follower never prepared; COMMIT at the leader */
	struct fb f;
	struct qkm_id id = some_batch(7);
	fb_begin(&f, QKM_MSG_ACQ_COMMIT, 0);
	assert_int_equal(qkm_put_id(&f.b, QKM_T_BATCH, &id), 0);
	assert_int_equal(fb_feed(w, &w->b, &f), QKM_EPEER);
	fb_begin(&f, QKM_MSG_ACQ_COMMIT, 0);
	assert_int_equal(qkm_put_id(&f.b, QKM_T_BATCH, &id), 0);
	assert_int_equal(fb_feed(w, &w->a, &f), QKM_EPEER);
	/* PREPARED for an unknown round at the leader, and at the follower */
	fb_begin(&f, QKM_MSG_ACQ_PREPARED, 1);
	assert_int_equal(qkm_put_id(&f.b, QKM_T_BATCH, &id), 0);
	assert_int_equal(fb_feed(w, &w->a, &f), QKM_EPEER);
	fb_begin(&f, QKM_MSG_ACQ_PREPARED, 1);
	assert_int_equal(qkm_put_id(&f.b, QKM_T_BATCH, &id), 0);
	assert_int_equal(fb_feed(w, &w->b, &f), QKM_EPEER);
	/* RECONCILE at the follower; an unknown message type */
	fb_begin(&f, QKM_MSG_RECONCILE, 1);
	assert_int_equal(fb_feed(w, &w->b, &f), QKM_EPEER);
	fb_begin(&f, QKM_MSG_KEYFILE, 0);
	assert_int_equal(fb_feed(w, &w->a, &f), QKM_EPEER);

	assert_int_equal(count_blocks(&w->a, 0) + count_blocks(&w->b, 0), 0);
}

/* A follower holds at most 4 x ids_max QKD-key IDs in rounds not yet
 * settled (ids_max 131,072 by default): 8 PREPAREs naming 65,536 absent
 * files each wait, the 9th is refused (QKM_EPEER: the link is dropped).
 * The round count alone (4 x window + 64) let a peer pin 1.3 GB of names. */
static void test_prepared_ids_bounded(void **state)
{
	struct world *w = *state;
	enum { N = 65536 };
	char (*names)[16] = calloc(N, sizeof(*names));
	const char **ids = calloc(N, sizeof(*ids));
	assert_non_null(names);
	assert_non_null(ids);
	link_up(w);
	for (int k = 0; k < 9; k++) {
		for (int i = 0; i < N; i++) {
			snprintf(names[i], sizeof(names[i]), "x%d.%x", k, i);
			ids[i] = names[i];
		}
		assert_int_equal(feed_prepare(w, &w->b, (uint8_t)(20 + k), ids, N, true),
				 k < 8 ? 0 : QKM_EPEER);
	}
	struct qkm_acq_stats sb;
	qkm_acq_stats(w->b.acq, &sb);
	assert_int_equal(sb.in_flight, 8);
	free(ids);
	free(names);
}

/* A leader keeps at most ids_max QKD-key IDs in the rounds in flight (here
 * 8): a round takes fewer files than batch_max_bytes would, the next waits
 * until the first is settled, and every file is confirmed in the end. */
static void test_leader_ids_in_flight_bounded(void **state)
{
	struct world *w = *state;
	struct qkm_acq_stats sa;
	w->a.cfg.ids_max = 8;
	qkm_acq_free(w->a.acq);
	side_acq_new(w, &w->a);
	link_up(w);
	feed_both(w, "t", 0, 40, UNIT); /* 40 one-key files; BATCH_MAX fits 128 */
	w->now += BATCH_NS;
	qkm_acq_tick(w->a.acq, w->now);
	qkm_acq_stats(w->a.acq, &sa);
	assert_int_equal(sa.in_flight, 1);
	assert_int_equal(sa.buffered_bytes, 32 * UNIT);
	settle(w, 20);
	qkm_acq_stats(w->a.acq, &sa);
	assert_int_equal(sa.buffered_bytes, 0);
	assert_int_equal(sa.in_flight, 0);
	assert_int_equal(counter(&w->a, "acquired_bytes"), 40 * UNIT);
	assert_int_equal(counter(&w->b, "acquired_bytes"), 40 * UNIT);
	assert_int_equal(assert_pools_equal(w), 10); /* 5 rounds, 2 blocks each */
}

/* Reorder: a PREPARE overtaking the RECONCILE_ACK reaches a follower that has
 * not reconciled yet: QKM_EPEER (the owner drops the link), nothing stored. */
static void test_reordered_prepare_before_reconcile_ack(void **state)
{
	struct world *w = *state;
	feed_both(w, "o", 0, 2, 512);
	w->now += BATCH_NS;
	w->fault = (struct fault){F_DELAY, QKM_MSG_RECONCILE_ACK, 0, 0};
	qkm_acq_on_peer_up(w->a.acq, w->now);
	qkm_acq_on_peer_up(w->b.acq, w->now);
	assert_true(pump_one(w, &w->b, &w->a)); /* RECONCILE; A answers */
	qkm_acq_tick(w->a.acq, w->now);         /* A reconciled: PREPARE queued */
	assert_int_equal(pump(w), QKM_EPEER);
	assert_true(w->fault.fired);
	assert_int_equal(count_blocks(&w->a, 0) + count_blocks(&w->b, 0), 0);
	/* The owner drops the link. The leader abandoned the round with it, so B
	 * discards its copies of o-0 and o-1 when the next round skips them. */
	link_down(w);
	link_up(w);
	feed_both(w, "o", 2, 4, 512);
	settle(w, 5);
	assert_int_equal(assert_pools_equal(w), 2);
	struct blocks la;
	load(&w->a, 0, &la);
	assert_int_equal(total_keys(&la), 32);
	blocks_free(&la);
}

/* R-ACQ-3: the leader stores all rounds PREPARED in one read in one
 * transaction before it sends their COMMITs, and the follower applies the
 * COMMITs of one read in one transaction (qkm_acq_flush): until then the
 * batches stay PENDING at B (durable, so the invariants hold), after it all
 * are READY. */
static void test_commits_grouped(void **state)
{
	struct world *w = *state;
	struct qkm_pool_stats pb;
	struct qkm_acq_stats sb;
	link_up(w);
	feed_both(w, "g", 0, 24, 512); /* 3 rounds of BATCH_MAX */
	w->now += BATCH_NS;
	qkm_acq_tick(w->a.acq, w->now);
	while (pump_both(w))
		;
	/* Three PREPAREs matched at B: nothing stored, nothing answered yet. */
	assert_int_equal(qkm_store_pool_stats(w->b.st, "A", &pb), 0);
	assert_int_equal(pb.pending_keys, 0);
	assert_int_equal(w->b.out.n, 0);
	qkm_acq_flush(w->b.acq); /* one commit: all three PENDING, then PREPAREDs */
	assert_int_equal(qkm_store_pool_stats(w->b.st, "A", &pb), 0);
	assert_int_equal(pb.pending_keys, 3 * BATCH_MAX / UNIT);
	assert_int_equal(w->b.out.n, 3);
	while (pump_both(w))
		;
	/* Three PREPAREDs arrived: A has stored nothing yet. */
	assert_int_equal(counter(&w->a, "acquired_bytes"), 0);
	qkm_acq_flush(w->a.acq);
	assert_int_equal(counter(&w->a, "acquired_bytes"), 3 * BATCH_MAX);
	while (pump_both(w))
		;
	assert_int_equal(qkm_store_pool_stats(w->b.st, "A", &pb), 0);
	assert_int_equal(pb.pending_keys, 3 * BATCH_MAX / UNIT);
	qkm_acq_stats(w->b.acq, &sb);
	assert_int_equal(sb.acquired_bytes, 0);
	qkm_acq_flush(w->b.acq);
	assert_int_equal(pump(w), 0);
	assert_int_equal(qkm_store_pool_stats(w->b.st, "A", &pb), 0);
	assert_int_equal(pb.pending_keys, 0);
	assert_int_equal(counter(&w->b, "acquired_bytes"), 3 * BATCH_MAX);
	assert_int_equal(records(&w->b, "confirmed", NULL, NULL), 3);
	assert_int_equal(assert_pools_equal(w), 3 * 2);
}

/* Duplicated frames (which TCP never produces) must not make the sides
 * disagree: a second COMMIT is refused, the stores stay equal. */
static void test_duplicated_commit(void **state)
{
	struct world *w = *state;
	link_up(w);
	w->fault = (struct fault){F_DUP, QKM_MSG_ACQ_COMMIT, 0, 0};
	feed_both(w, "u", 0, 2, 512);
	w->now += BATCH_NS;
	qkm_acq_tick(w->a.acq, w->now);
	assert_int_equal(pump(w), QKM_EPEER);
	assert_true(w->fault.fired);
	assert_int_equal(assert_pools_equal(w), 2);
}

/* A leader contradicting itself: a COMMIT queued at B (applied at the end
 * of the read), then, in the same read, a RECONCILE_ACK saying the leader
 * does not hold that batch. B deletes it, so the COMMIT finds nothing to
 * commit, and B must not answer COMMITTED: that would confirm a batch only
 * the leader holds. The other batch, committed too, is answered. */
static void test_commit_of_batch_leader_disowned(void **state)
{
	struct world *w = *state;
	struct blocks lb;
	struct fb f;
	link_up(w);
	struct qkm_id ids[2];
	for (int i = 0; i < 2; i++) { /* two rounds, both COMMITs lost */
		w->fault = (struct fault){F_DROP, QKM_MSG_ACQ_COMMIT, 0, 0};
		feed_both(w, i ? "y" : "x", 0, 2, 512);
		settle(w, 5);
		assert_true(w->fault.fired);
		load(&w->b, 1u << QKM_BLOCK_PENDING, &lb);
		assert_int_equal(lb.n, 2 * (i + 1));
		for (int j = 0; j < lb.n; j++)
			if (i == 0 || !qkm_id_eq(&lb.b[j].batch_id, &ids[0]))
				ids[i] = lb.b[j].batch_id;
		blocks_free(&lb);
	}
	struct qkm_id x = ids[0], y = ids[1];
	assert_false(qkm_id_eq(&x, &y));
	q_clear(&w->b.out);
	for (int i = 0; i < 2; i++) {
		fb_begin(&f, QKM_MSG_ACQ_COMMIT, 0);
		assert_int_equal(qkm_put_id(&f.b, QKM_T_BATCH, i ? &y : &x), 0);
		assert_int_equal(fb_feed(w, &w->b, &f), 0);
	}
	size_t e;
	fb_begin(&f, QKM_MSG_RECONCILE_ACK, 9);
	assert_int_equal(qkm_put_open(&f.b, QKM_T_ENTRY, &e), 0);
	assert_int_equal(qkm_put_id(&f.b, QKM_T_BATCH, &x), 0);
	assert_int_equal(qkm_put_u8(&f.b, QKM_T_STATE, 0), 0); /* not held */
	assert_int_equal(qkm_put_close(&f.b, e), 0);
	assert_int_equal(fb_feed(w, &w->b, &f), 0);
	qkm_acq_flush(w->b.acq);
	/* x deleted, y READY, and one COMMITTED: y's. */
	load(&w->b, 0, &lb);
	assert_int_equal(lb.n, 2);
	for (int j = 0; j < lb.n; j++) {
		assert_true(qkm_id_eq(&lb.b[j].batch_id, &y));
		assert_int_equal(lb.b[j].state, QKM_BLOCK_READY);
	}
	blocks_free(&lb);
	assert_int_equal(w->b.out.n, 1);
	assert_int_equal(msg_type(&w->b.out.m[0]), QKM_MSG_ACQ_COMMITTED);
	struct qkm_frame fr;
	struct qkm_id got;
	assert_int_equal(qkm_frame_parse(w->b.out.m[0].p, w->b.out.m[0].len, &fr), 0);
	assert_int_equal(qkm_tlv_id(fr.body, fr.body_len, QKM_T_BATCH, &got), 0);
	assert_true(qkm_id_eq(&got, &y));
	assert_int_equal(records(&w->b, "aborted", NULL, "does not hold it (reconciled)"), 1);
}

/* A duplicated PREPARE names a batch B already holds: refused, and B does not
 * record an abort of a batch it stored. */
static void test_duplicated_prepare(void **state)
{
	struct world *w = *state;
	link_up(w);
	w->fault = (struct fault){F_DUP, QKM_MSG_ACQ_PREPARE, 0, 0};
	feed_both(w, "v", 0, 2, 512);
	w->now += BATCH_NS;
	qkm_acq_tick(w->a.acq, w->now);
	assert_int_equal(pump(w), QKM_EPEER);
	assert_true(w->fault.fired);
	for (int i = 0; i < 3; i++)
		assert_int_equal(step(w, WAIT_NS), 0);
	assert_int_equal(assert_pools_equal(w), 2);
	assert_int_equal(counter(&w->b, "aborted_batches"), 0);
	assert_int_equal(records(&w->b, "aborted", NULL, NULL), 0);
}

/* Pair-check: equal pools match block for block; a batch deleted on one side
 * or keys consumed on one side only show up once the blocks are old. */
static void test_paircheck(void **state)
{
	struct world *w = *state;
	assert_int_equal(qkm_acq_paircheck(w->a.acq, 1, w->now), QKM_ESTATE); /* link down */
	link_up(w);
	feed_both(w, "s", 0, 2, 512);
	settle(w, 5);
	feed_both(w, "s", 2, 4, 512);
	settle(w, 5);
	int nblk = assert_pools_equal(w);
	assert_int_equal(nblk, 4);

	assert_int_equal(qkm_acq_paircheck(w->a.acq, 7, w->now), 0);
	assert_int_equal(pump(w), 0);
	assert_int_equal(w->pc.calls, 1);
	assert_int_equal(w->pc.req, 7);
	assert_int_equal(w->pc.r.matches, nblk);
	assert_int_equal(w->pc.r.mismatches, 0);
	assert_int_equal(w->pc.r.only_sender, 0);
	assert_int_equal(w->pc.r.only_receiver, 0);
	assert_int_equal(w->pc.r.in_flight, 0);

	/* B loses one batch; young blocks would count as in flight, so look
	 * 3 s later. */
	struct blocks lb;
	load(&w->b, 0, &lb);
	assert_int_equal(qkm_store_batch_delete(w->b.st, &lb.b[0].batch_id), 0);
	blocks_free(&lb);
	w->now += 3000 * MS;
	assert_int_equal(qkm_acq_paircheck(w->a.acq, 8, w->now), 0);
	assert_int_equal(pump(w), 0);
	assert_int_equal(w->pc.calls, 2);
	assert_int_equal(w->pc.req, 8);
	assert_int_equal(w->pc.r.matches, 2);
	assert_int_equal(w->pc.r.only_sender, 2);
	assert_int_equal(w->pc.r.mismatches, 0);
	assert_true(strstr(w->pc.r.detail, "only at sender") != NULL);

	/* And from B's side (the follower can ask too), after B used a byte
	 * that A did not: the same bytes drawn further on one side is a draw
	 * on its way (supply settles it), counted in flight, not a mismatch. */
	load(&w->b, 0, &lb);
	assert_int_equal(lb.n, 2);
	assert_int_equal(qkm_store_block_set_used(w->b.st, lb.b[0].rowid, 1), 0);
	blocks_free(&lb);
	assert_int_equal(qkm_acq_paircheck(w->b.acq, 9, w->now), 0);
	assert_int_equal(pump(w), 0);
	assert_int_equal(w->pc.calls, 3);
	assert_int_equal(w->pc.req, 9);
	assert_int_equal(w->pc.r.matches, 1);
	assert_int_equal(w->pc.r.in_flight, 1);
	assert_int_equal(w->pc.r.mismatches, 0);
	assert_int_equal(w->pc.r.only_receiver, 2);
	assert_int_equal(w->pc.r.only_sender, 0);
}

static int id_cmp(const void *x, const void *y)
{
	return memcmp(x, y, QKM_ID_LEN);
}

static size_t queued(const struct side *s, uint16_t type)
{
	size_t n = 0;
	for (size_t i = 0; i < s->out.n; i++)
		n += msg_type(&s->out.m[i]) == type;
	return n;
}

/* A pair-check in parts (one block each here): each part covers its range
 * of positions at the receiver, so blocks on one side only are counted once,
 * whether they fall in the first part, a middle one or after the last; two
 * parts are in flight at a time; a link lost midway reports an error. */
static void test_paircheck_parts(void **state)
{
	struct world *w = *state;
	w->a.cfg.pc_part_bytes = 1;
	qkm_acq_free(w->a.acq);
	side_acq_new(w, &w->a);
	link_up(w);
	for (int r = 0; r < 5; r++) {
		feed_both(w, "p", (uint32_t)(2 * r), (uint32_t)(2 * r + 2), 512);
		settle(w, 5);
	}
	int nblk = assert_pools_equal(w);
	assert_int_equal(nblk, 10);

	assert_int_equal(qkm_acq_paircheck(w->a.acq, 11, w->now), 0);
	assert_int_equal(queued(&w->a, QKM_MSG_PAIRCHECK), 2);
	assert_int_equal(pump(w), 0);
	assert_int_equal(w->pc.calls, 1);
	assert_int_equal(w->pc.err, 0);
	assert_int_equal(w->pc.r.matches, nblk);
	assert_int_equal(w->pc.r.mismatches + w->pc.r.only_sender + w->pc.r.only_receiver, 0);

	/* Positions sort by batch ID: delete, at one side or the other, the
	 * batches that sort first, third and last. */
	struct blocks lb;
	load(&w->a, 0, &lb);
	struct qkm_id ids[5];
	size_t n = 0;
	for (int i = 0; i < lb.n; i++) {
		size_t k = 0;
		while (k < n && memcmp(ids[k].b, lb.b[i].batch_id.b, QKM_ID_LEN) != 0)
			k++;
		if (k == n)
			ids[n++] = lb.b[i].batch_id;
	}
	blocks_free(&lb);
	assert_int_equal(n, 5);
	qsort(ids, n, sizeof(ids[0]), id_cmp);
	assert_int_equal(qkm_store_batch_delete(w->b.st, &ids[0]), 0);
	assert_int_equal(qkm_store_batch_delete(w->a.st, &ids[2]), 0);
	assert_int_equal(qkm_store_batch_delete(w->a.st, &ids[4]), 0);
	w->now += 3000 * MS;
	assert_int_equal(qkm_acq_paircheck(w->a.acq, 12, w->now), 0);
	assert_int_equal(pump(w), 0);
	assert_int_equal(w->pc.calls, 2);
	assert_int_equal(w->pc.req, 12);
	assert_int_equal(w->pc.err, 0);
	assert_int_equal(w->pc.r.matches, 4);
	assert_int_equal(w->pc.r.only_sender, 2);
	assert_int_equal(w->pc.r.only_receiver, 4);
	assert_int_equal(w->pc.r.mismatches, 0);

	/* Bytes that differ behind the store's back (a small block's row in
	 * B's SQLite file, zeroed): that block is different, nothing else. */
	sqlite3 *db;
	sqlite3_stmt *st;
	assert_int_equal(sqlite3_open(w->b.path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(db,
					    "UPDATE small_data SET data = zeroblob(length(data)) "
					    "WHERE id = (SELECT min(id) FROM blocks WHERE batch_id = ?1)",
					    -1, &st, NULL),
			 SQLITE_OK);
	sqlite3_bind_blob(st, 1, ids[1].b, QKM_ID_LEN, SQLITE_STATIC);
	assert_int_equal(sqlite3_step(st), SQLITE_DONE);
	assert_int_equal(sqlite3_changes(db), 1);
	sqlite3_finalize(st);
	sqlite3_close(db);
	assert_int_equal(qkm_acq_paircheck(w->a.acq, 14, w->now), 0);
	assert_int_equal(pump(w), 0);
	assert_int_equal(w->pc.req, 14);
	assert_int_equal(w->pc.r.matches, 3);
	assert_int_equal(w->pc.r.mismatches, 1);
	assert_true(strstr(w->pc.r.detail, "different") != NULL);

	/* An answer twice (a peer gone wrong) breaks the protocol (a node
	 * drops the link), and is not counted: here the link stays, and the
	 * sum comes out as before. */
	w->fault = (struct fault){F_DUP, QKM_MSG_PAIRCHECK_ACK, 1, 0};
	assert_int_equal(qkm_acq_paircheck(w->a.acq, 15, w->now), 0);
	assert_int_equal(pump(w), QKM_EPEER);
	assert_int_equal(w->pc.calls, 4);
	assert_int_equal(w->pc.req, 15);
	assert_int_equal(w->pc.r.matches, 3);
	assert_int_equal(w->pc.r.mismatches, 1);
	w->fault = (struct fault){0};

	/* The link goes down with parts unanswered: an error, once. */
	assert_int_equal(qkm_acq_paircheck(w->a.acq, 13, w->now), 0);
	assert_true(pump_one(w, &w->a, &w->b));
	qkm_acq_on_peer_down(w->a.acq);
	assert_int_equal(w->pc.calls, 5);
	assert_int_equal(w->pc.req, 13);
	assert_int_equal(w->pc.err, QKM_ESTATE);
}

/* Pool sync: key material one end consumed in frames that never reached
 * the other (a relay hop lost with a link, a node that crashed after its
 * commit) is burned at the other end too; a block too young to be settled
 * is left alone; a malformed list breaks the protocol. */
static void test_pool_sync(void **state)
{
	struct world *w = *state;
	link_up(w);
	for (int r = 0; r < 3; r++) {
		feed_both(w, "y", (uint32_t)(2 * r), (uint32_t)(2 * r + 2), 512);
		settle(w, 5);
	}
	assert_int_equal(assert_pools_equal(w), 6);
	/* A used one of its blocks up and 64 bytes of another; B used 96 bytes
	 * of one of its own: none of it named in a frame that arrived. */
	struct blocks la, lb;
	int enc_a = 0, enc_b = 0;
	load(&w->a, 0, &la);
	for (int i = 0; i < la.n; i++)
		if (la.b[i].key_type == QKM_KT_ENC)
			assert_int_equal(qkm_store_block_set_used(w->a.st, la.b[i].rowid,
								  enc_a++ ? 64 : la.b[i].count * UNIT),
					 0);
	load(&w->b, 0, &lb);
	for (int i = 0; i < lb.n && !enc_b; i++)
		if (lb.b[i].key_type == QKM_KT_ENC)
			assert_int_equal(qkm_store_block_set_used(w->b.st, lb.b[i].rowid, 96), 0), enc_b++;
	blocks_free(&la);
	blocks_free(&lb);
	/* Listed right away, B's blocks are young: nothing burned yet. */
	assert_int_equal(qkm_acq_sync(w->a.acq), 0);
	assert_int_equal(pump(w), 0);
	struct qkm_pool_stats pa, pb;
	assert_int_equal(qkm_store_pool_stats(w->a.st, "B", &pa), 0);
	assert_int_equal(qkm_store_pool_stats(w->b.st, "A", &pb), 0);
	assert_true(pa.enc_bytes < pb.dec_bytes);
	/* 6 s later, both ways. */
	w->now += 6000 * MS;
	assert_int_equal(qkm_acq_sync(w->a.acq), 0);
	assert_int_equal(qkm_acq_sync(w->b.acq), 0);
	assert_int_equal(pump(w), 0);
	assert_int_equal(assert_pools_equal(w), 5);
	assert_int_equal(records(&w->b, "burned", NULL, NULL), 1);
	assert_int_equal(records(&w->a, "burned", NULL, NULL), 1);
	/* In sync: a second round burns nothing. */
	assert_int_equal(qkm_acq_sync(w->a.acq), 0);
	assert_int_equal(pump(w), 0);
	assert_int_equal(records(&w->b, "burned", NULL, NULL), 1);
	/* A list entry without its fields: protocol violation. */
	struct qkm_buf b;
	size_t start, e;
	struct qkm_frame f;
	qkm_buf_init(&b, 4096, false);
	assert_int_equal(qkm_frame_begin(&b, QKM_MSG_POOL_SYNC, 0, &start), 0);
	assert_int_equal(qkm_put_str(&b, QKM_T_LINK, "A-B"), 0);
	assert_int_equal(qkm_put_open(&b, QKM_T_ENTRY, &e), 0);
	assert_int_equal(qkm_put_u32(&b, QKM_T_FIRST, 0), 0);
	assert_int_equal(qkm_put_close(&b, e), 0);
	assert_int_equal(qkm_frame_end(&b, start), 0);
	assert_int_equal(qkm_frame_parse(b.p, b.len, &f), 0);
	assert_int_equal(qkm_acq_on_frame(w->b.acq, &f, w->now), QKM_EPEER);
	qkm_buf_fini(&b);
	assert_int_equal(assert_pools_equal(w), 5);
	/* An empty list: the peer holds none of our DEC blocks any more, so
	 * every settled one is burned (bsearch never sees the NULL list). */
	assert_int_equal(qkm_store_pool_stats(w->b.st, "A", &pb), 0);
	assert_true(pb.dec_bytes > 0);
	qkm_buf_init(&b, 4096, false);
	assert_int_equal(qkm_frame_begin(&b, QKM_MSG_POOL_SYNC, 0, &start), 0);
	assert_int_equal(qkm_put_str(&b, QKM_T_LINK, "A-B"), 0);
	assert_int_equal(qkm_frame_end(&b, start), 0);
	assert_int_equal(qkm_frame_parse(b.p, b.len, &f), 0);
	assert_int_equal(qkm_acq_on_frame(w->b.acq, &f, w->now), 0);
	qkm_buf_fini(&b);
	assert_int_equal(qkm_store_pool_stats(w->b.st, "A", &pb), 0);
	assert_int_equal(pb.dec_bytes, 0);
}

/* Kq-1 input checks (R-ACQ-1): a QKD-key ID already buffered is QKM_EEXIST,
 * a file of another module or kind, or without data, is QKM_EINVAL; the file
 * is left with the caller on error. */
static void test_keyfile_checks(void **state)
{
	struct world *w = *state;
	struct qkm_keyfile kf;
	uint8_t d[64];
	fill(d, sizeof(d), 1);
	assert_int_equal(feed_one(w, &w->a, "x-0", 0, 64, -1), 0);
	assert_int_equal(feed_one(w, &w->a, "x-0", 0, 64, -1), QKM_EEXIST);

	mkfile(&kf, &w->b, "x-1", d, sizeof(d)); /* module qkd-B, given to A */
	assert_int_equal(qkm_acq_on_keyfile(w->a.acq, &kf, w->now), QKM_EINVAL);
	assert_non_null(kf.data);
	qkm_keyfile_fini(&kf);

	mkfile(&kf, &w->a, "x-2", d, sizeof(d));
	kf.kind = QKM_KF_KMA;
	assert_int_equal(qkm_acq_on_keyfile(w->a.acq, &kf, w->now), QKM_EINVAL);
	kf.kind = QKM_KF_QKD;
	qkm_secret_free(kf.data);
	kf.data = NULL;
	assert_int_equal(qkm_acq_on_keyfile(w->a.acq, &kf, w->now), QKM_EINVAL);
	qkm_keyfile_fini(&kf);

	struct qkm_acq_stats sa;
	qkm_acq_stats(w->a.acq, &sa);
	assert_int_equal(sa.buffered_bytes, 64);
}

/* ---- key sources (R-ACQ-5) --------------------------------------------- */

/* What a source heard: files settled (stored or not) and IDs asked for. */
struct heard {
	int n_stored, n_dropped, n_missing_calls;
	char stored[16][QKM_NAME_MAX], dropped[16][QKM_NAME_MAX], missing[16][QKM_NAME_MAX];
	uint32_t n_missing;
};

static void heard_settled(const char *id, bool stored, void *arg)
{
	struct heard *h = arg;
	if (stored) {
		assert_true(h->n_stored < 16);
		snprintf(h->stored[h->n_stored++], QKM_NAME_MAX, "%s", id);
	} else {
		assert_true(h->n_dropped < 16);
		snprintf(h->dropped[h->n_dropped++], QKM_NAME_MAX, "%s", id);
	}
}

static void heard_missing(const char (*ids)[QKM_NAME_MAX], uint32_t n, void *arg)
{
	struct heard *h = arg;
	h->n_missing_calls++;
	for (uint32_t i = 0; i < n; i++) {
		assert_true(h->n_missing < 16);
		snprintf(h->missing[h->n_missing++], QKM_NAME_MAX, "%s", ids[i]);
	}
}

static void listen_source(struct side *s, struct heard *h)
{
	struct qkm_acq_source_cbs cbs = {heard_settled, heard_missing, h};
	memset(h, 0, sizeof(*h));
	qkm_acq_set_source_cbs(s->acq, &cbs);
}

/* Both sides remember stored QKD-key IDs (a spool source). */
static int setup_tracked(void **state)
{
	struct world *w = world_new(UNIT);
	struct side *sides[2] = {&w->a, &w->b};
	for (int i = 0; i < 2; i++) {
		qkm_acq_free(sides[i]->acq);
		sides[i]->cfg.track_ids = true;
		side_acq_new(w, sides[i]);
	}
	*state = w;
	return 0;
}

/* R-ACQ-5, crash safety of a spool: a source is told once per file, after
 * the commit, whether its file was stored; a file handed over again after
 * a crash (both nodes restarted between the commit and the file's removal)
 * is refused as already stored on both sides, so no key is stored twice;
 * once the source has forgotten an ID it is ordinary again. */
static void test_tracked_ids_not_stored_twice(void **state)
{
	struct world *w = *state;
	struct heard ha, hb;
	listen_source(&w->a, &ha);
	listen_source(&w->b, &hb);
	link_up(w);
	feed_both(w, "s", 0, 3, 512);
	assert_int_equal(step(w, 0), 0);
	assert_int_equal(ha.n_stored + hb.n_stored, 0); /* buffered, not stored */
	settle(w, 10);
	assert_int_equal(ha.n_stored, 3);
	assert_int_equal(hb.n_stored, 3);
	assert_int_equal(ha.n_dropped + hb.n_dropped, 0);
	assert_string_equal(ha.stored[0], "s-0");
	assert_string_equal(hb.stored[2], "s-2");
	assert_int_equal(assert_pools_equal(w), 2);

	/* Both nodes crash and come back: the acqs are new, the stores keep
	 * what they committed, and the spool hands the same files over. */
	struct side *sides[2] = {&w->a, &w->b};
	for (int i = 0; i < 2; i++) {
		qkm_acq_free(sides[i]->acq);
		qkm_store_close(sides[i]->st);
		q_clear(&sides[i]->out);
		assert_int_equal(qkm_store_open(sides[i]->path, &sides[i]->st), 0);
		side_acq_new(w, sides[i]);
	}
	link_up(w);
	for (int i = 0; i < 3; i++) {
		char id[16];
		snprintf(id, sizeof(id), "s-%d", i);
		assert_int_equal(feed_one(w, &w->a, id, (uint32_t)i, 512, -1), QKM_EEXIST);
		assert_int_equal(feed_one(w, &w->b, id, (uint32_t)i, 512, -1), QKM_EEXIST);
	}
	settle(w, 10);
	assert_int_equal(assert_pools_equal(w), 2); /* nothing new */
	struct qkm_acq_stats sa;
	qkm_acq_stats(w->a.acq, &sa);
	assert_int_equal(sa.buffered_bytes, 0);

	/* The source removed the files and forgot the IDs. */
	assert_int_equal(qkm_store_qkd_forget(w->a.st, "A-B", "s-1"), 0);
	assert_int_equal(feed_one(w, &w->a, "s-1", 1, 512, -1), 0);
}

/* R-ACQ-5: files of an aborted round, and files one side lost, are settled
 * as not stored, on each side that held them. */
static void test_settled_not_stored(void **state)
{
	struct world *w = *state;
	struct heard ha, hb;
	listen_source(&w->a, &ha);
	listen_source(&w->b, &hb);
	link_up(w);
	assert_int_equal(feed_one(w, &w->a, "f-0", 0, 512, -1), 0);
	assert_int_equal(feed_one(w, &w->b, "f-0", 0, 512, 7), 0); /* flipped */
	assert_int_equal(step(w, BATCH_NS), 0);
	assert_int_equal(ha.n_dropped, 1);
	assert_int_equal(hb.n_dropped, 1);
	assert_string_equal(ha.dropped[0], "f-0");
	assert_string_equal(hb.dropped[0], "f-0");
	/* g-0 lost at A: B's copy is discarded when A's next round passes it. */
	assert_int_equal(feed_one(w, &w->b, "g-0", 10, 512, -1), 0);
	feed_both(w, "h", 0, 1, 512);
	settle(w, 10);
	assert_int_equal(hb.n_dropped, 2);
	assert_string_equal(hb.dropped[1], "g-0");
	assert_int_equal(ha.n_stored, 1);
	assert_int_equal(hb.n_stored, 1);
	bool held;
	assert_int_equal(qkm_store_qkd_held(w->b.st, "A-B", "f-0", &held), 0);
	assert_false(held);
	assert_int_equal(qkm_store_qkd_held(w->b.st, "A-B", "h-0", &held), 0);
	assert_true(held);
}

/* R-ACQ-5: a follower whose source fetches keys by ID is told, as the
 * PREPARE arrives, which of its IDs have not arrived; keys delivered within
 * the wait complete the round. */
static void test_missing_asked(void **state)
{
	struct world *w = *state;
	struct heard hb;
	listen_source(&w->b, &hb);
	link_up(w);
	assert_int_equal(feed_one(w, &w->a, "d-0", 0, 512, -1), 0);
	assert_int_equal(feed_one(w, &w->a, "d-1", 1, 512, -1), 0);
	assert_int_equal(feed_one(w, &w->b, "d-0", 0, 512, -1), 0);
	assert_int_equal(step(w, BATCH_NS), 0);
	assert_int_equal(hb.n_missing_calls, 1);
	assert_int_equal(hb.n_missing, 1);
	assert_string_equal(hb.missing[0], "d-1");
	assert_int_equal(feed_one(w, &w->b, "d-1", 1, 512, -1), 0);
	settle(w, 10);
	assert_int_equal(assert_pools_equal(w), 2);
	assert_int_equal(hb.n_stored, 2);
	assert_int_equal(hb.n_missing_calls, 1);
}

int main(void)
{
	if (qkm_secret_heap_init(1 << 26) != 0)
		return 1;
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_happy_path, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reformat_split, setup, teardown),
		cmocka_unit_test(test_reformat_remainder),
		cmocka_unit_test_setup_teardown(test_round_size_bounded, setup, teardown),
		cmocka_unit_test_setup_teardown(test_flipped_bit_aborts_both, setup, teardown),
		cmocka_unit_test_setup_teardown(test_corrupted_digest_aborts_both, setup, teardown),
		cmocka_unit_test_setup_teardown(test_damaged_copy_named, setup, teardown),
		cmocka_unit_test_setup_teardown(test_mac_key_failure_aborts, setup, teardown),
		cmocka_unit_test_setup_teardown(test_commits_grouped, setup, teardown),
		cmocka_unit_test_setup_teardown(test_file_missing_at_follower, setup, teardown),
		cmocka_unit_test_setup_teardown(test_file_missing_at_leader, setup, teardown),
		cmocka_unit_test_setup_teardown(test_lost_prepared_reconciled_away, setup, teardown),
		cmocka_unit_test_setup_teardown(test_lost_commit_reconciled_ready, setup, teardown),
		cmocka_unit_test_setup_teardown(test_leader_restart, setup, teardown),
		cmocka_unit_test_setup_teardown(test_dead_link, setup, teardown),
		cmocka_unit_test_setup_teardown(test_protocol_violations, setup, teardown),
		cmocka_unit_test_setup_teardown(test_prepared_ids_bounded, setup, teardown),
		cmocka_unit_test_setup_teardown(test_leader_ids_in_flight_bounded, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reordered_prepare_before_reconcile_ack, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_duplicated_commit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_commit_of_batch_leader_disowned, setup, teardown),
		cmocka_unit_test_setup_teardown(test_duplicated_prepare, setup, teardown),
		cmocka_unit_test_setup_teardown(test_paircheck, setup, teardown),
		cmocka_unit_test_setup_teardown(test_paircheck_parts, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pool_sync, setup, teardown),
		cmocka_unit_test_setup_teardown(test_keyfile_checks, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tracked_ids_not_stored_twice, setup_tracked,
						teardown),
		cmocka_unit_test_setup_teardown(test_settled_not_stored, setup_tracked, teardown),
		cmocka_unit_test_setup_teardown(test_missing_asked, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
