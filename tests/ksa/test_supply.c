/* test_supply.c - the KSA supply state machine (ksa/supply.c): two real
 * stores ("A", "B") sharing an A-B pool filled directly, two qkm_supply
 * instances joined by in-memory frame queues that can drop, duplicate,
 * corrupt or stop frames, and replies recorded per request. Time is driven
 * explicitly; nothing sleeps. Every key byte string handed to an application
 * is traced back to its place in the pool, so a byte given out twice fails
 * whichever test does it (R-SUP-8); keys A's stock (ksa/stock.h) hands out
 * go through the same check. R-SUP-1, 3, 5, 6, 7, 8, 10, R-LC-1. */
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

#include "core/buf.h"
#include "core/config.h"
#include "core/secret.h"
#include "ksa/stock.h"
#include "ksa/supply.h"
#include "proto/frame.h"
#include "store/store.h"

#define MS 1000000ull
#define T0 (1700000000ull * 1000000000ull) /* a plausible wall-clock start */
#define UNIT 32u                              /* KMA-key unit, bytes */
#define BLK_KEYS 16u                          /* KMA-keys per block: 512 bytes */
#define BLK_BYTES (BLK_KEYS * UNIT)
#define NFWD 6                                /* A->B blocks (A ENC, B DEC) */
#define NBLK (NFWD + 1)                       /* plus one B->A block */
#define POOL_BYTES (NBLK * BLK_BYTES)
#define MAXKEYS 16                            /* keys parsed from one reply */
#define MAXSEEN 256
#define MAXREPLY 64

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

static size_t q_count(const struct queue *q, uint16_t type)
{
	size_t n = 0;
	for (size_t i = 0; i < q->n; i++)
		n += msg_type(&q->m[i]) == type;
	return n;
}

enum fault_kind { F_NONE, F_DROP, F_DUP, F_CORRUPT };

/* One fault, applied to the first frame of `type` the pump sees. */
struct fault {
	enum fault_kind kind;
	uint16_t type;
	int fired;
};

/* ---- the two sides ----------------------------------------------------- */

struct reply {
	void *req;
	int status;
	const char *reason; /* the label for metrics; NULL for 200 */
	char *body;         /* NUL-terminated copy */
};

struct side {
	const char *name, *peer;
	char dir[PATH_MAX - 64];
	char path[PATH_MAX - 32];
	struct qkm_store *st;
	struct qkm_node_cfg *node;
	struct qkm_supply_cfg cfg;
	struct qkm_supply *sup;
	struct qkm_stock *stock; /* keys made ahead (NULL: none, as before) */
	struct queue out; /* frames this side sent, for the other */
	bool ready;       /* what ops->ready answers */
	struct reply rep[MAXREPLY];
	size_t n_rep;
	int first_err; /* first nonzero qkm_supply_on_frame result in a pump */
};

/* A key handed to an application, and where in the pool its bytes were. */
struct seen {
	struct qkm_id id;
	uint8_t k[1024];
	size_t len;
	size_t pos;
};

struct world {
	struct side a, b;
	uint64_t now;
	struct fault fault;
	bool dead; /* the link delivers nothing */
	/* The pool as A sees it: forward blocks in pool order, then the
	 * reverse block; handed[i] once byte i went to an application. */
	uint8_t pool[POOL_BYTES];
	uint8_t handed[POOL_BYTES];
	struct qkm_id batch[NBLK];
	struct seen seen[MAXSEEN];
	size_t n_seen;
	char req[MAXREPLY]; /* &req[i] is request i's handle */
};

static int send_cb(const char *peer, const uint8_t *frame, size_t len, void *arg)
{
	struct side *s = arg;
	assert_string_equal(peer, s->peer);
	q_push(&s->out, frame, len);
	return 0;
}

static bool ready_cb(const char *peer, void *arg)
{
	struct side *s = arg;
	assert_string_equal(peer, s->peer);
	return s->ready;
}

static void reply_cb(void *req, int status, const char *reason, const uint8_t *body, size_t len,
		     void *arg)
{
	struct side *s = arg;
	assert_true(s->n_rep < MAXREPLY);
	/* Every error names its reason (a short label); a 200 none. */
	if (status == 200)
		assert_null(reason);
	else
		assert_true(reason && reason[0] && strlen(reason) < 24 && !strchr(reason, ' '));
	struct reply *r = &s->rep[s->n_rep++];
	r->req = req;
	r->status = status;
	r->reason = reason;
	r->body = malloc(len + 1);
	assert_non_null(r->body);
	memcpy(r->body, body, len);
	r->body[len] = 0;
}

static void node_cfg(struct side *s)
{
	static const char *const saes[][2] = {
		{"sae-alice", "A"}, {"sae-bob", "B"}, {"sae-carol", "B"},
		{"sae-eve", "A"},   {"sae-dave", "C"},
	};
	struct qkm_node_cfg *n = calloc(1, sizeof(*n));
	assert_non_null(n);
	snprintf(n->id, sizeof(n->id), "%s", s->name);
	n->ksa = true;
	n->n_links = 1;
	snprintf(n->links[0].link, sizeof(n->links[0].link), "A-B");
	snprintf(n->links[0].peer, sizeof(n->links[0].peer), "%s", s->peer);
	n->links[0].kma_unit_bits = 8 * UNIT;
	n->n_saes = sizeof(saes) / sizeof(saes[0]);
	for (size_t i = 0; i < n->n_saes; i++) {
		snprintf(n->saes[i].id, sizeof(n->saes[i].id), "%s", saes[i][0]);
		snprintf(n->saes[i].node, sizeof(n->saes[i].node), "%s", saes[i][1]);
	}
	s->node = n;
}

/* Gives s a fresh supply on its store, with its cfg as it now is (the old
 * one, if any, freed first: it hands failed refills back to its stock). */
static void side_supply(struct side *s)
{
	qkm_supply_free(s->sup);
	struct qkm_supply_ops ops = {send_cb, ready_cb, NULL, NULL, reply_cb, s};
	s->sup = qkm_supply_new(&s->cfg, s->st, &ops);
	assert_non_null(s->sup);
}

static void side_open(struct side *s, const char *name, const char *peer, bool preserve)
{
	const char *tmp = getenv("QKM_TEST_TMP");
	if (!tmp || !*tmp)
		tmp = "/tmp";
	assert_true(mkdir(tmp, 0700) == 0 || errno == EEXIST);
	s->name = name;
	s->peer = peer;
	s->ready = true;
	snprintf(s->dir, sizeof(s->dir), "%s/supply-%s-XXXXXX", tmp, name);
	assert_non_null(mkdtemp(s->dir));
	snprintf(s->path, sizeof(s->path), "%s/keys.db", s->dir);
	assert_int_equal(qkm_store_open(s->path, &s->st), 0);
	node_cfg(s);
	qkm_supply_cfg_defaults(&s->cfg);
	snprintf(s->cfg.self, sizeof(s->cfg.self), "%s", name);
	s->cfg.preserve = preserve;
	s->cfg.node = s->node;
	side_supply(s);
}

/* Gives s a fresh supply with a fresh, empty stock, as a (re)started node
 * has: the stock lives in memory only. The old supply goes first, since it
 * hands failed refills back to its stock. */
static void side_restart_stocked(struct side *s)
{
	qkm_supply_free(s->sup);
	s->sup = NULL;
	qkm_stock_free(s->stock);
	s->stock = qkm_stock_new();
	assert_non_null(s->stock);
	s->cfg.stock = s->stock;
	side_supply(s);
}

static void side_close(struct side *s)
{
	static const char *const suffixes[] = {"", "-wal", "-shm", "-journal", "-keys"};
	char p[PATH_MAX];
	qkm_supply_free(s->sup);
	qkm_stock_free(s->stock);
	qkm_store_close(s->st);
	for (size_t i = 0; i < sizeof(suffixes) / sizeof(suffixes[0]); i++) {
		snprintf(p, sizeof(p), "%s%s", s->path, suffixes[i]);
		unlink(p);
	}
	rmdir(s->dir);
	q_clear(&s->out);
	for (size_t i = 0; i < s->n_rep; i++)
		free(s->rep[i].body);
	free(s->node);
}

/* Deterministic random bytes. */
static void fill(uint8_t *p, size_t len, uint32_t seed)
{
	uint32_t x = seed * 2654435761u + 1;
	for (size_t i = 0; i < len; i++) {
		x ^= x << 13, x ^= x >> 17, x ^= x << 5;
		p[i] = (uint8_t)x;
	}
}

static void put_block(struct side *s, const struct qkm_id *batch, const uint8_t *data,
		      enum qkm_key_type kt, uint64_t created)
{
	struct qkm_block b;
	memset(&b, 0, sizeof(b));
	snprintf(b.peer, sizeof(b.peer), "%s", s->peer);
	b.pool_kind = QKM_POOL_LINK;
	b.batch_id = *batch;
	b.first_index = 0;
	b.count = BLK_KEYS;
	b.unit_bytes = UNIT;
	b.key_type = kt;
	b.state = QKM_BLOCK_READY;
	b.created_ns = created;
	b.data = qkm_secret_dup(data, BLK_BYTES);
	assert_non_null(b.data);
	assert_int_equal(qkm_store_block_put(s->st, &b), 0);
	qkm_secret_free(b.data);
}

/* The pool: NFWD blocks A ENC / B DEC, one block B ENC / A DEC; identical
 * bytes and batch IDs on both sides. */
static void fill_pool(struct world *w)
{
	fill(w->pool, sizeof(w->pool), 7);
	for (int i = 0; i < NBLK; i++) {
		fill(w->batch[i].b, 12, 1000u + (uint32_t)i);
		memset(w->batch[i].b + 12, 0, 4);
		bool fwd = i < NFWD;
		const uint8_t *d = w->pool + (size_t)i * BLK_BYTES;
		put_block(&w->a, &w->batch[i], d, fwd ? QKM_KT_ENC : QKM_KT_DEC, T0 + (uint64_t)i);
		put_block(&w->b, &w->batch[i], d, fwd ? QKM_KT_DEC : QKM_KT_ENC, T0 + (uint64_t)i);
	}
}

static void world_free(struct world *w)
{
	side_close(&w->a);
	side_close(&w->b);
	free(w);
}

/* ---- delivery ---------------------------------------------------------- */

static enum fault_kind fault_check(struct world *w, const struct msg *m)
{
	struct fault *f = &w->fault;
	if (f->kind == F_NONE || f->fired || msg_type(m) != f->type)
		return F_NONE;
	f->fired = 1;
	return f->kind;
}

static int deliver(struct world *w, struct side *from, struct side *to, const uint8_t *p,
		   size_t len)
{
	struct qkm_frame f;
	int rc = qkm_frame_parse(p, len, &f);
	assert_int_equal(rc, 0);
	rc = qkm_supply_on_frame(to->sup, from->name, &f, w->now);
	if (rc && !to->first_err)
		to->first_err = rc;
	return rc;
}

/* Moves one frame from `from` to `to`; false if there was none. */
static bool pump_one(struct world *w, struct side *from, struct side *to)
{
	if (!from->out.n)
		return false;
	struct msg m = q_pop(&from->out);
	if (!w->dead) {
		switch (fault_check(w, &m)) {
		case F_DROP:
			break;
		case F_DUP:
			deliver(w, from, to, m.p, m.len);
			deliver(w, from, to, m.p, m.len);
			break;
		case F_CORRUPT:
			m.p[m.len - 1] ^= 0x01;
			deliver(w, from, to, m.p, m.len);
			break;
		case F_NONE:
			deliver(w, from, to, m.p, m.len);
			break;
		}
	}
	free(m.p);
	return true;
}

/* Delivers frames both ways until both queues are empty; the first error
 * either side's qkm_supply_on_frame reported. */
static int pump(struct world *w)
{
	w->a.first_err = w->b.first_err = 0;
	for (int guard = 0; guard < 10000; guard++) {
		bool moved = pump_one(w, &w->a, &w->b);
		moved |= pump_one(w, &w->b, &w->a);
		if (!moved)
			return w->a.first_err ? w->a.first_err : w->b.first_err;
	}
	fail_msg("pump did not settle");
	return -1;
}

/* The Kx link goes down: both sides see it, frames on it are lost. */
static void link_down(struct world *w)
{
	qkm_supply_on_peer(w->a.sup, "B", false, w->now);
	qkm_supply_on_peer(w->b.sup, "A", false, w->now);
	q_clear(&w->a.out);
	q_clear(&w->b.out);
}

static void link_up(struct world *w)
{
	qkm_supply_on_peer(w->a.sup, "B", true, w->now);
	qkm_supply_on_peer(w->b.sup, "A", true, w->now);
}

static struct world *world_new(bool preserve, bool stock)
{
	struct world *w = calloc(1, sizeof(*w));
	assert_non_null(w);
	w->now = T0 + 1000 * MS;
	side_open(&w->a, "A", "B", preserve);
	side_open(&w->b, "B", "A", preserve);
	if (stock)
		side_restart_stocked(&w->a);
	fill_pool(w);
	link_up(w);
	assert_int_equal(pump(w), 0); /* nothing to cancel: no frames */
	assert_int_equal(w->a.out.n + w->b.out.n, 0);
	return w;
}

static int setup(void **state)
{
	*state = world_new(false, false);
	return 0;
}

static int setup_preserve(void **state)
{
	*state = world_new(true, false);
	return 0;
}

/* A keeps a stock of keys made ahead of demand (ksa/stock.h). */
static int setup_stock(void **state)
{
	*state = world_new(false, true);
	return 0;
}

static int teardown(void **state)
{
	world_free(*state);
	return 0;
}

/* ---- requests and replies ---------------------------------------------- */

static void *R(struct world *w, int i)
{
	return &w->req[i];
}

static struct qkm_etsi_key_request kreq(uint32_t number, uint32_t size)
{
	struct qkm_etsi_key_request r;
	memset(&r, 0, sizeof(r));
	r.number = number;
	r.size = size;
	return r;
}

/* The one reply s gave to req (asserts there is exactly one). */
static const struct reply *reply_of(const struct side *s, void *req)
{
	const struct reply *r = NULL;
	int n = 0;
	for (size_t i = 0; i < s->n_rep; i++)
		if (s->rep[i].req == req) {
			r = &s->rep[i];
			n++;
		}
	if (n != 1)
		fail_msg("%d replies to request %p, expected 1", n, req);
	return r;
}

static int n_replies(const struct side *s, void *req)
{
	int n = 0;
	for (size_t i = 0; i < s->n_rep; i++)
		n += s->rep[i].req == req;
	return n;
}

/* Asserts the status of req's reply; error bodies are {"message": ...} and
 * never carry keys. Returns the body. */
static const char *expect_status(const struct side *s, void *req, int status)
{
	const struct reply *r = reply_of(s, req);
	if (r->status != status)
		fail_msg("status %d, expected %d: %s", r->status, status, r->body);
	if (status != 200) {
		assert_non_null(strstr(r->body, "\"message\""));
		assert_null(strstr(r->body, "\"key\""));
	}
	return r->body;
}

/* Asserts the status of req's reply and the reason it gives metrics. */
static void expect_reason(const struct side *s, void *req, int status, const char *reason)
{
	expect_status(s, req, status);
	assert_string_equal(reply_of(s, req)->reason, reason);
}

static int b64val(char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

/* Decodes n chars of padded base64; returns the byte count. */
static size_t b64dec(const char *p, size_t n, uint8_t *out, size_t max)
{
	size_t len = 0;
	assert_int_equal(n % 4, 0);
	for (size_t i = 0; i < n; i += 4) {
		int v[4], pad = 0;
		for (int j = 0; j < 4; j++) {
			if (p[i + j] == '=') {
				assert_true(i + 4 == n && j >= 2);
				v[j] = 0;
				pad++;
			} else {
				v[j] = b64val(p[i + j]);
				assert_true(v[j] >= 0 && !pad);
			}
		}
		uint32_t x = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 |
			     (uint32_t)v[3];
		uint8_t b[3] = {(uint8_t)(x >> 16), (uint8_t)(x >> 8), (uint8_t)x};
		for (int j = 0; j < 3 - pad; j++) {
			assert_true(len < max);
			out[len++] = b[j];
		}
	}
	return len;
}

struct keys {
	size_t n;
	struct qkm_id id[MAXKEYS];
	uint8_t k[MAXKEYS][1024];
	size_t len[MAXKEYS];
};

/* Parses a Key container {"keys":[{"key_ID":"<uuid>","key":"<b64>"},...]}. */
static void parse_keys(const char *body, struct keys *ks)
{
	static const char kid[] = "{\"key_ID\":\"", kk[] = "\",\"key\":\"";
	memset(ks, 0, sizeof(*ks));
	assert_memory_equal(body, "{\"keys\":[", 9);
	const char *p = body + 9;
	while (*p != ']') {
		assert_true(ks->n < MAXKEYS);
		if (ks->n) {
			assert_int_equal(*p, ',');
			p++;
		}
		assert_memory_equal(p, kid, sizeof(kid) - 1);
		p += sizeof(kid) - 1;
		char u[37], canon[37];
		memcpy(u, p, 36);
		u[36] = 0;
		assert_int_equal(qkm_id_parse(u, &ks->id[ks->n]), 0);
		qkm_id_uuid_str(&ks->id[ks->n], canon);
		assert_string_equal(u, canon); /* 8-4-4-4-12, lowercase */
		p += 36;
		assert_memory_equal(p, kk, sizeof(kk) - 1);
		p += sizeof(kk) - 1;
		const char *e = strchr(p, '"');
		assert_non_null(e);
		ks->len[ks->n] = b64dec(p, (size_t)(e - p), ks->k[ks->n], sizeof(ks->k[0]));
		p = e + 1;
		assert_int_equal(*p, '}');
		p++;
		ks->n++;
	}
	assert_string_equal(p, "]}");
}

static bool uuid_v7(const struct qkm_id *id)
{
	return id->b[6] >> 4 == 7 && (id->b[8] & 0xc0) == 0x80;
}

/* The master got the keys ks: n keys of size bits each, fresh UUID v7 IDs,
 * and bytes that come from the pool and were never handed out before
 * (R-SUP-3, R-SUP-8), whether by a round or from the stock. */
static void expect_fresh(struct world *w, const struct keys *ks, size_t n, uint32_t bits)
{
	assert_int_equal(ks->n, n);
	for (size_t i = 0; i < n; i++) {
		assert_true(uuid_v7(&ks->id[i]));
		assert_int_equal(ks->len[i], bits / 8);
		for (size_t j = 0; j < w->n_seen; j++) {
			assert_false(qkm_id_eq(&w->seen[j].id, &ks->id[i]));
			assert_false(w->seen[j].len == ks->len[i] &&
				     memcmp(w->seen[j].k, ks->k[i], ks->len[i]) == 0);
		}
		const uint8_t *at = memmem(w->pool, sizeof(w->pool), ks->k[i], ks->len[i]);
		if (!at)
			fail_msg("key %zu of %zu: bytes not from the pool", i, n);
		size_t pos = (size_t)(at - w->pool);
		for (size_t b = pos; b < pos + ks->len[i]; b++) {
			if (w->handed[b])
				fail_msg("pool byte %zu handed out twice", b);
			w->handed[b] = 1;
		}
		assert_true(w->n_seen < MAXSEEN);
		struct seen *s = &w->seen[w->n_seen++];
		s->id = ks->id[i];
		memcpy(s->k, ks->k[i], ks->len[i]);
		s->len = ks->len[i];
		s->pos = pos;
	}
}

/* The master got req's keys: 200 and expect_fresh. */
static void expect_enc(struct world *w, void *req, size_t n, uint32_t bits, struct keys *ks)
{
	parse_keys(expect_status(&w->a, req, 200), ks);
	expect_fresh(w, ks, n, bits);
}

/* A slave got keys: 200, exactly the IDs asked for, the master's bytes. */
static void expect_dec(struct world *w, struct side *s, void *req, const struct qkm_id *ids,
		       size_t n)
{
	struct keys ks;
	parse_keys(expect_status(s, req, 200), &ks);
	assert_int_equal(ks.n, n);
	for (size_t i = 0; i < n; i++) {
		assert_true(qkm_id_eq(&ks.id[i], &ids[i]));
		const struct seen *m = NULL;
		for (size_t j = 0; j < w->n_seen; j++)
			if (qkm_id_eq(&w->seen[j].id, &ids[i]))
				m = &w->seen[j];
		assert_non_null(m); /* the master got it first */
		assert_int_equal(ks.len[i], m->len);
		assert_memory_equal(ks.k[i], m->k, m->len);
	}
}

static void enc(struct world *w, int req, const char *caller, const char *slave, uint32_t number,
		uint32_t size)
{
	struct qkm_etsi_key_request r = kreq(number, size);
	qkm_supply_enc(w->a.sup, R(w, req), caller, slave, &r, w->now);
}

static void dec(struct world *w, struct side *s, int req, const char *caller, const char *master,
		const struct qkm_id *ids, size_t n)
{
	struct qkm_etsi_key_ids *k = calloc(1, sizeof(*k));
	assert_non_null(k);
	k->n = n;
	memcpy(k->ids, ids, n * sizeof(*ids));
	qkm_supply_dec(s->sup, R(w, req), caller, master, k, w->now);
	free(k);
	qkm_supply_flush(s->sup, w->now); /* dec_keys are delivered at the flush */
}

/* ---- store inspection -------------------------------------------------- */

struct use {
	struct qkm_id batch;
	uint32_t first, used;
	enum qkm_key_type kt;
};

struct uses {
	size_t n;
	struct use u[NBLK];
};

static int use_collect(struct qkm_block *b, void *arg)
{
	struct uses *l = arg;
	assert_true(l->n < NBLK);
	l->u[l->n++] = (struct use){b->batch_id, b->first_index, b->used, b->key_type};
	return 0;
}

static const struct use *use_find(const struct uses *l, const struct qkm_id *batch)
{
	for (size_t i = 0; i < l->n; i++)
		if (qkm_id_eq(&l->u[i].batch, batch))
			return &l->u[i];
	return NULL;
}

/* Both sides consumed exactly the same bytes of every block (R-SUP-8: the
 * KMAs stay in step, and nothing consumed on one side stays usable on the
 * other). */
static void expect_pools_equal(struct world *w)
{
	struct uses ua, ub;
	memset(&ua, 0, sizeof(ua));
	memset(&ub, 0, sizeof(ub));
	assert_int_equal(qkm_store_blocks(w->a.st, "B", 0, false, use_collect, &ua), 0);
	assert_int_equal(qkm_store_blocks(w->b.st, "A", 0, false, use_collect, &ub), 0);
	assert_int_equal(ua.n, ub.n);
	for (size_t i = 0; i < ua.n; i++) {
		const struct use *x = &ua.u[i], *y = use_find(&ub, &x->batch);
		assert_non_null(y);
		assert_int_equal(x->used, y->used);
		assert_int_equal(x->kt == QKM_KT_ENC ? QKM_KT_DEC : QKM_KT_ENC, y->kt);
	}
	struct qkm_pool_stats sa, sb;
	assert_int_equal(qkm_store_pool_stats(w->a.st, "B", &sa), 0);
	assert_int_equal(qkm_store_pool_stats(w->b.st, "A", &sb), 0);
	assert_int_equal(sa.enc_bytes, sb.dec_bytes);
	assert_int_equal(sa.dec_bytes, sb.enc_bytes);
}

static uint64_t enc_bytes(struct side *s)
{
	struct qkm_pool_stats ps;
	assert_int_equal(qkm_store_pool_stats(s->st, s->peer, &ps), 0);
	return strcmp(s->name, "A") == 0 ? ps.enc_bytes : ps.dec_bytes;
}

static uint64_t ksa_count(struct side *s, enum qkm_ksa_state st)
{
	uint64_t n;
	assert_int_equal(qkm_store_ksa_count(s->st, st, &n), 0);
	return n;
}

struct rec_count {
	const char *event;
	int n;
};

/* How many keys a record names: one UUID, or "<round UUID>[a..b]" (a run
 * of one round's keys, numbered in the UUID's last 8 hex digits). */
static int rec_keys(const struct qkm_lc_event *ev)
{
	unsigned a, b;
	char tail;
	if (strlen(ev->key_id) == 36)
		return 1;
	assert_int_equal(sscanf(ev->key_id + 36, "[%u..%u%c", &a, &b, &tail), 3);
	assert_int_equal(tail, ']');
	assert_true(b > a);
	/* Index 0's UUID, then the run's first and last index. */
	assert_int_equal(strncmp(ev->key_id + 28, "00000000[", 9), 0);
	return (int)(b - a + 1);
}

/* Counts the keys (not the records) that records of c->event name. */
static int rec_cb(const struct qkm_lc_event *ev, void *arg)
{
	struct rec_count *c = arg;
	if (strcmp(ev->event, c->event) == 0 && strcmp(ev->key_kind, "ksa") == 0)
		c->n += rec_keys(ev);
	return 0;
}

static int records(struct side *s, const char *event)
{
	struct rec_count c = {event, 0};
	assert_int_equal(qkm_store_records(s->st, 0, 0, rec_cb, &c), 0);
	return c.n;
}

struct rec_match {
	const char *event, *detail;
	int n, rows;
};

static int rec_match_cb(const struct qkm_lc_event *ev, void *arg)
{
	struct rec_match *c = arg;
	if (strcmp(ev->event, c->event) == 0 && strcmp(ev->key_kind, "ksa") == 0 &&
	    strstr(ev->detail, c->detail)) {
		c->n += rec_keys(ev);
		c->rows++;
	}
	return 0;
}

/* Keys named by records of event whose detail says `detail`. */
static int records_with(struct side *s, const char *event, const char *detail)
{
	struct rec_match c = {event, detail, 0, 0};
	assert_int_equal(qkm_store_records(s->st, 0, 0, rec_match_cb, &c), 0);
	return c.n;
}

/* The records themselves (a record may name a run of keys). */
static int rows_with(struct side *s, const char *event, const char *detail)
{
	struct rec_match c = {event, detail, 0, 0};
	assert_int_equal(qkm_store_records(s->st, 0, 0, rec_match_cb, &c), 0);
	return c.rows;
}

/* No KSA key in flight or waiting on either side. */
static void expect_no_offered(struct world *w)
{
	assert_int_equal(ksa_count(&w->a, QKM_KSA_OFFERED), 0);
	assert_int_equal(ksa_count(&w->b, QKM_KSA_OFFERED), 0);
}

/* A successful round after a failure: fresh bytes, pools in step. */
static void expect_recovered(struct world *w, int req)
{
	struct keys ks;
	enc(w, req, "sae-alice", "sae-bob", 2, 256);
	qkm_supply_flush(w->a.sup, w->now);
	assert_int_equal(pump(w), 0);
	expect_enc(w, R(w, req), 2, 256, &ks);
	dec(w, &w->b, req + 1, "sae-bob", "sae-alice", ks.id, 2);
	expect_dec(w, &w->b, R(w, req + 1), ks.id, 2);
	expect_pools_equal(w);
	expect_no_offered(w);
}

/* ---- tests -------------------------------------------------------------- */

/* R-SUP-7, R-SUP-8, R-SUP-10: alice gets 3 keys for bob; bob gets the
 * identical keys by their IDs, once; both sides consumed the same bytes. */
static void test_enc_dec(void **state)
{
	struct world *w = *state;
	struct keys ks;
	uint64_t a0 = enc_bytes(&w->a), b0 = enc_bytes(&w->b);

	enc(w, 0, "sae-alice", "sae-bob", 3, 256);
	assert_int_equal(n_replies(&w->a, R(w, 0)), 0); /* waits for the round */
	qkm_supply_flush(w->a.sup, w->now);
	assert_int_equal(q_count(&w->a.out, QKM_MSG_SUPPLY), 1);
	assert_int_equal(n_replies(&w->a, R(w, 0)), 0); /* not before B stored */
	assert_int_equal(pump(w), 0);
	expect_enc(w, R(w, 0), 3, 256, &ks);
	/* Distinct keys, the first 96 bytes of the pool, in order. */
	for (size_t i = 0; i < 3; i++) {
		assert_memory_equal(ks.k[i], w->pool + 32 * i, 32);
		for (size_t j = 0; j < i; j++)
			assert_false(qkm_id_eq(&ks.id[i], &ks.id[j]));
		/* One v7 UUID for the round, the key's index in its last 4
		 * bytes: the round's first key is 0. */
		assert_int_equal(ks.id[i].b[6] >> 4, 7);
		assert_true(qkm_id_same_round(&ks.id[i], &ks.id[0]));
		assert_int_equal(qkm_id_index(&ks.id[i]), i);
	}
	/* One record per event for the three keys. */
	assert_int_equal(rows_with(&w->a, "formatted", "3 keys of 256 bits for sae-alice -> sae-bob"), 1);
	assert_int_equal(rows_with(&w->b, "stored", "3 keys of 256 bits for slave sae-bob"), 1);
	assert_int_equal(enc_bytes(&w->a), a0 - 96);
	assert_int_equal(enc_bytes(&w->b), b0 - 96);
	assert_int_equal(ksa_count(&w->a, QKM_KSA_SUPPLIED), 3);
	assert_int_equal(ksa_count(&w->b, QKM_KSA_READY), 3);

	dec(w, &w->b, 1, "sae-bob", "sae-alice", ks.id, 3);
	expect_dec(w, &w->b, R(w, 1), ks.id, 3);

	/* R-SUP-8: delete after supply, metadata kept (R-SUP-10). */
	struct qkm_ksa_key k;
	assert_int_equal(qkm_store_ksa_get(w->b.st, &ks.id[0], &k, true), 0);
	assert_null(k.data);
	assert_int_equal(k.state, QKM_KSA_SUPPLIED);
	assert_int_equal(k.role, QKM_KSA_SLAVE_SIDE);
	assert_string_equal(k.master, "sae-alice");
	assert_string_equal(k.slave, "sae-bob");
	assert_string_equal(k.delivered, "sae-bob");
	assert_int_equal(k.size_bits, 256);
	assert_int_equal(k.supplied_ns, w->now);
	assert_int_equal(qkm_store_ksa_get(w->a.st, &ks.id[0], &k, true), 0);
	assert_null(k.data);
	assert_int_equal(k.role, QKM_KSA_MASTER_SIDE);
	assert_int_equal(k.state, QKM_KSA_SUPPLIED);

	/* Never twice: the second request gives nothing. */
	dec(w, &w->b, 2, "sae-bob", "sae-alice", ks.id, 3);
	expect_reason(&w->b, R(w, 2), 400, "unknown_key");
	dec(w, &w->b, 3, "sae-bob", "sae-alice", &ks.id[2], 1);
	expect_status(&w->b, R(w, 3), 400);
	/* Nor is a master-side key given by A's dec_keys: the master is not
	 * a slave of its own key (401, as ETSI 014 has it). */
	dec(w, &w->a, 4, "sae-alice", "sae-alice", ks.id, 1);
	expect_status(&w->a, R(w, 4), 401);

	/* R-LC-1. */
	assert_int_equal(records(&w->a, "formatted"), 3);
	assert_int_equal(records(&w->a, "supplied"), 3);
	assert_int_equal(records(&w->b, "stored"), 3);
	assert_int_equal(records(&w->b, "supplied"), 3);
	expect_pools_equal(w);
}

/* R-SUP-8 under group commit: dec_keys requests queued before one flush
 * are delivered in one transaction, each whole or not at all. A key two
 * requests of the same flush ask for goes to the first only; a request
 * with one bad ID gives nothing and leaves the others alone; a request
 * whose client left before the flush takes nothing. Nothing is answered
 * before the flush, i.e. before the commit. */
static void test_dec_group_commit(void **state)
{
	struct world *w = *state;
	struct keys ks;
	struct qkm_etsi_key_ids *k = calloc(1, sizeof(*k));
	assert_non_null(k);
	enc(w, 0, "sae-alice", "sae-bob", 4, 256);
	qkm_supply_flush(w->a.sup, w->now);
	assert_int_equal(pump(w), 0);
	expect_enc(w, R(w, 0), 4, 256, &ks);

	struct qkm_id bad[2] = {ks.id[1], ks.id[3]};
	bad[1].b[0] ^= 1; /* no such key */
	const struct {
		const struct qkm_id *ids;
		size_t n;
	} q[4] = {{&ks.id[0], 1}, {&ks.id[0], 2}, {bad, 2}, {&ks.id[2], 1}};
	for (int i = 0; i < 4; i++) {
		k->n = q[i].n;
		memcpy(k->ids, q[i].ids, q[i].n * sizeof(k->ids[0]));
		qkm_supply_dec(w->b.sup, R(w, 1 + i), "sae-bob", "sae-alice", k, w->now);
	}
	qkm_supply_forget(w->b.sup, R(w, 4));
	for (int i = 0; i < 4; i++)
		assert_int_equal(n_replies(&w->b, R(w, 1 + i)), 0);
	qkm_supply_flush(w->b.sup, w->now);
	expect_dec(w, &w->b, R(w, 1), &ks.id[0], 1);
	expect_reason(&w->b, R(w, 2), 400, "unknown_key"); /* key 0 went to request 1 */
	expect_reason(&w->b, R(w, 3), 400, "unknown_key");
	assert_int_equal(n_replies(&w->b, R(w, 4)), 0);
	assert_int_equal(records(&w->b, "supplied"), 1);

	/* Keys 1, 2 and 3 are still there, each once. */
	k->n = 3;
	memcpy(k->ids, &ks.id[1], 3 * sizeof(k->ids[0]));
	qkm_supply_dec(w->b.sup, R(w, 5), "sae-bob", "sae-alice", k, w->now);
	qkm_supply_flush(w->b.sup, w->now);
	expect_dec(w, &w->b, R(w, 5), &ks.id[1], 3);
	assert_int_equal(records(&w->b, "supplied"), 4);
	free(k);
	expect_pools_equal(w);
}

/* The pool works the other way too: bob (at B) is master for alice; B draws
 * only from its ENC block, A decrypts from its DEC copy. */
static void test_reverse(void **state)
{
	struct world *w = *state;
	struct keys ks;
	struct qkm_etsi_key_request r = kreq(2, 128);
	qkm_supply_enc(w->b.sup, R(w, 0), "sae-bob", "sae-alice", &r, w->now);
	qkm_supply_flush(w->b.sup, w->now);
	assert_int_equal(pump(w), 0);
	parse_keys(expect_status(&w->b, R(w, 0), 200), &ks);
	assert_int_equal(ks.n, 2);
	assert_memory_equal(ks.k[0], w->pool + NFWD * BLK_BYTES, 16);
	assert_memory_equal(ks.k[1], w->pool + NFWD * BLK_BYTES + 16, 16);
	struct qkm_etsi_key_ids *ids = calloc(1, sizeof(*ids));
	assert_non_null(ids);
	ids->n = 2;
	ids->ids[0] = ks.id[0];
	ids->ids[1] = ks.id[1];
	qkm_supply_dec(w->a.sup, R(w, 1), "sae-alice", "sae-bob", ids, w->now);
	free(ids);
	qkm_supply_flush(w->a.sup, w->now);
	struct keys kd;
	parse_keys(expect_status(&w->a, R(w, 1), 200), &kd);
	assert_int_equal(kd.n, 2);
	assert_memory_equal(kd.k[0], ks.k[0], 16);
	assert_memory_equal(kd.k[1], ks.k[1], 16);
	expect_pools_equal(w);
}

/* R-SUP-5: the default size, a key shorter than a KMA-key (the remainder stays
 * usable), and the limits. */
static void test_sizes(void **state)
{
	struct world *w = *state;
	struct keys ks;
	uint64_t a0 = enc_bytes(&w->a), b0 = enc_bytes(&w->b);

	enc(w, 0, "sae-alice", "sae-bob", 0, 0); /* all defaults: 1 key of 256 bits */
	qkm_supply_flush(w->a.sup, w->now);
	assert_int_equal(pump(w), 0);
	expect_enc(w, R(w, 0), 1, 256, &ks);
	assert_memory_equal(ks.k[0], w->pool, 32);
	assert_int_equal(enc_bytes(&w->a), a0 - 32);
	assert_int_equal(enc_bytes(&w->b), b0 - 32);

	enc(w, 1, "sae-alice", "sae-bob", 1, 64);
	qkm_supply_flush(w->a.sup, w->now);
	assert_int_equal(pump(w), 0);
	expect_enc(w, R(w, 1), 1, 64, &ks);
	assert_memory_equal(ks.k[0], w->pool + 32, 8);
	assert_int_equal(enc_bytes(&w->a), a0 - 40);
	assert_int_equal(enc_bytes(&w->b), b0 - 40);
	dec(w, &w->b, 2, "sae-bob", "sae-alice", ks.id, 1);
	expect_dec(w, &w->b, R(w, 2), ks.id, 1);

	/* The rest of that KMA-key comes next, still one key in the stock. */
	struct qkm_pool_stats ps;
	assert_int_equal(qkm_store_pool_stats(w->a.st, "B", &ps), 0);
	assert_int_equal(ps.keys, NBLK * BLK_KEYS - 1);
	enc(w, 3, "sae-alice", "sae-bob", 2, 64);
	qkm_supply_flush(w->a.sup, w->now);
	assert_int_equal(pump(w), 0);
	expect_enc(w, R(w, 3), 2, 64, &ks);
	assert_memory_equal(ks.k[0], w->pool + 40, 8);
	assert_memory_equal(ks.k[1], w->pool + 48, 8);
	dec(w, &w->b, 4, "sae-bob", "sae-alice", ks.id, 2);
	expect_dec(w, &w->b, R(w, 4), ks.id, 2);
	expect_pools_equal(w);

	/* Out of limits: 400 at once, nothing consumed, nothing sent. */
	a0 = enc_bytes(&w->a);
	static const struct {
		uint32_t number, size;
	} bad[] = {{1, 100}, {1, 63}, {1, 56}, {1, 8}, {1, 8200}, {1, 8192 + 8}, {129, 256},
		   {1000000, 64}};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		enc(w, 10 + (int)i, "sae-alice", "sae-bob", bad[i].number, bad[i].size);
		expect_status(&w->a, R(w, 10 + (int)i), 400);
	}
	/* The limits themselves are fine. */
	enc(w, 30, "sae-alice", "sae-bob", 1, 8192);
	enc(w, 31, "sae-alice", "sae-bob", 128, 64);
	assert_int_equal(w->a.out.n, 0);
	assert_int_equal(enc_bytes(&w->a), a0);
	qkm_supply_flush(w->a.sup, w->now);
	assert_int_equal(pump(w), 0);
	assert_int_equal(expect_status(&w->a, R(w, 30), 200)[0], '{');
	expect_status(&w->a, R(w, 31), 200);
	expect_pools_equal(w);
}

/* R-SUP-1, R-SUP-7: who may ask for keys, and who gets them. */
static void test_access(void **state)
{
	struct world *w = *state;
	struct keys ks;

	/* Metrics count refusals by these reasons (docs/operations.md). */
	enc(w, 0, "sae-mallory", "sae-bob", 1, 256); /* not registered anywhere */
	expect_reason(&w->a, R(w, 0), 401, "not_registered");
	enc(w, 1, "sae-bob", "sae-alice", 1, 256); /* registered, but at B */
	expect_reason(&w->a, R(w, 1), 401, "not_registered");
	enc(w, 2, "sae-alice", "sae-nobody", 1, 256); /* unknown slave */
	expect_reason(&w->a, R(w, 2), 400, "unknown_slave");
	enc(w, 3, "sae-alice", "sae-dave", 1, 256); /* at C: no pool shared with C */
	expect_reason(&w->a, R(w, 3), 400, "no_pool");
	enc(w, 4, "sae-alice", "sae-eve", 1, 256); /* at A itself */
	expect_reason(&w->a, R(w, 4), 400, "same_node");
	enc(w, 5, "sae-alice", "bad name!", 1, 256);
	expect_status(&w->a, R(w, 5), 400);
	assert_int_equal(w->a.out.n, 0);

	enc(w, 6, "sae-alice", "sae-bob", 2, 256);
	qkm_supply_flush(w->a.sup, w->now);
	assert_int_equal(pump(w), 0);
	expect_enc(w, R(w, 6), 2, 256, &ks);

	/* Only bob, at B, with the right master, gets them. */
	dec(w, &w->b, 7, "sae-eve", "sae-alice", ks.id, 2); /* eve is at A */
	expect_status(&w->b, R(w, 7), 401);
	dec(w, &w->b, 8, "sae-carol", "sae-alice", ks.id, 2); /* at B, not the slave */
	expect_reason(&w->b, R(w, 8), 401, "not_for_sae");
	dec(w, &w->a, 9, "sae-alice", "sae-alice", ks.id, 2); /* wrong node */
	expect_status(&w->a, R(w, 9), 401);
	dec(w, &w->b, 10, "sae-mallory", "sae-alice", ks.id, 2);
	expect_status(&w->b, R(w, 10), 401);
	dec(w, &w->b, 11, "sae-bob", "sae-eve", ks.id, 2); /* not their master */
	expect_reason(&w->b, R(w, 11), 400, "wrong_master");
	dec(w, &w->b, 12, "sae-bob", "sae-nobody", ks.id, 2);
	expect_status(&w->b, R(w, 12), 400);
	/* One bad ID in the list: nothing given, the good one stays. */
	struct qkm_id mix[2] = {ks.id[0], ks.id[1]};
	mix[1].b[0] ^= 1; /* not b[15]: the index there names another key of the round */
	dec(w, &w->b, 13, "sae-bob", "sae-alice", mix, 2);
	expect_status(&w->b, R(w, 13), 400);
	assert_int_equal(ksa_count(&w->b, QKM_KSA_READY), 2);

	dec(w, &w->b, 14, "sae-bob", "sae-alice", ks.id, 2);
	expect_dec(w, &w->b, R(w, 14), ks.id, 2);
	expect_pools_equal(w);
}

/* R-SUP-7, R-SUP-8 with additional slaves: bob and carol each get the key
 * once; with the "delete" policy its bytes go after the last delivery. */
static void additional_slaves(struct world *w, bool preserve)
{
	struct keys ks;
	struct qkm_etsi_key_request r = kreq(1, 256);
	r.n_additional = 1;
	snprintf(r.additional[0], sizeof(r.additional[0]), "sae-carol");
	qkm_supply_enc(w->a.sup, R(w, 0), "sae-alice", "sae-bob", &r, w->now);
	qkm_supply_flush(w->a.sup, w->now);
	assert_int_equal(pump(w), 0);
	expect_enc(w, R(w, 0), 1, 256, &ks);

	/* eve (at A) is no additional slave for a pool with B. */
	snprintf(r.additional[0], sizeof(r.additional[0]), "sae-eve");
	qkm_supply_enc(w->a.sup, R(w, 1), "sae-alice", "sae-bob", &r, w->now);
	expect_status(&w->a, R(w, 1), 400);

	struct qkm_ksa_key k;
	dec(w, &w->b, 2, "sae-bob", "sae-alice", ks.id, 1);
	expect_dec(w, &w->b, R(w, 2), ks.id, 1);
	assert_int_equal(qkm_store_ksa_get(w->b.st, &ks.id[0], &k, true), 0);
	assert_non_null(k.data); /* carol has not had it yet */
	assert_int_equal(k.state, QKM_KSA_READY);
	qkm_secret_free(k.data);
	dec(w, &w->b, 3, "sae-bob", "sae-alice", ks.id, 1);
	expect_status(&w->b, R(w, 3), 400);

	dec(w, &w->b, 4, "sae-carol", "sae-alice", ks.id, 1);
	expect_dec(w, &w->b, R(w, 4), ks.id, 1);
	assert_int_equal(qkm_store_ksa_get(w->b.st, &ks.id[0], &k, true), 0);
	assert_int_equal(k.state, QKM_KSA_SUPPLIED);
	assert_string_equal(k.delivered, "sae-bob,sae-carol");
	if (preserve) {
		assert_non_null(k.data);
		assert_int_equal(k.data->len, 32);
		assert_memory_equal(k.data->p, ks.k[0], 32);
		qkm_secret_free(k.data);
	} else {
		assert_null(k.data);
	}
	dec(w, &w->b, 5, "sae-carol", "sae-alice", ks.id, 1);
	expect_status(&w->b, R(w, 5), 400);
	dec(w, &w->b, 6, "sae-bob", "sae-alice", ks.id, 1);
	expect_status(&w->b, R(w, 6), 400);
	expect_pools_equal(w);
}

static void test_additional_slaves_delete(void **state)
{
	additional_slaves(*state, false);
}

static void test_additional_slaves_preserve(void **state)
{
	additional_slaves(*state, true);
}

/* Replaces B's copy of block i with data differing in byte `at`. */
static void corrupt_b_block(struct world *w, int i, size_t at)
{
	uint8_t d[BLK_BYTES];
	memcpy(d, w->pool + (size_t)i * BLK_BYTES, BLK_BYTES);
	d[at] ^= 0x40;
	/* Consume it wholly (the store deletes it), then put the bad copy. */
	int64_t rowid = 0;
	uint8_t tmp[1];
	assert_int_equal(qkm_store_block_read(w->b.st, "A", &w->batch[i], 0, QKM_KT_DEC, 0, 1, tmp,
					      &rowid),
			 0);
	assert_int_equal(qkm_store_block_set_used(w->b.st, rowid, BLK_BYTES), 0);
	put_block(&w->b, &w->batch[i], d, QKM_KT_DEC, T0 + (uint64_t)i);
}

/* R-SUP-6, R-LC-1: B's copy of a KMA-key differs from A's: the digests
 * differ, no key is supplied to anyone, the ranges are gone on both sides,
 * and the abort is recorded. */
static void test_digest_mismatch(void **state)
{
	struct world *w = *state;
	corrupt_b_block(w, 0, 40); /* inside the second key */
	uint64_t a0 = enc_bytes(&w->a);

	enc(w, 0, "sae-alice", "sae-bob", 3, 256);
	qkm_supply_flush(w->a.sup, w->now);
	assert_int_equal(pump(w), 0);
	const char *body = expect_status(&w->a, R(w, 0), 503);
	assert_non_null(strstr(body, "digest mismatch"));
	assert_int_equal(ksa_count(&w->b, QKM_KSA_READY), 0);
	assert_int_equal(ksa_count(&w->a, QKM_KSA_SUPPLIED), 0);
	expect_no_offered(w); /* A cancelled its OFFERED keys */
	assert_int_equal(enc_bytes(&w->a), a0 - 96);
	expect_pools_equal(w);
	assert_int_equal(records(&w->b, "aborted"), 3);
	assert_int_equal(records(&w->b, "stored"), 0);
	assert_int_equal(records(&w->a, "deleted"), 3);
	/* The bytes the pair disagreed on are never used; what follows is fine. */
	expect_recovered(w, 1);
	assert_int_equal(w->seen[0].pos, 96);
}

/* R-SUP-6: the digest corrupted on the KSA link: same outcome. */
static void test_digest_corrupted_in_transit(void **state)
{
	struct world *w = *state;
	w->fault = (struct fault){F_CORRUPT, QKM_MSG_SUPPLY, 0};
	enc(w, 0, "sae-alice", "sae-bob", 2, 256);
	qkm_supply_flush(w->a.sup, w->now);
	assert_int_equal(pump(w), 0);
	assert_true(w->fault.fired);
	assert_non_null(strstr(expect_status(&w->a, R(w, 0), 503), "digest mismatch"));
	assert_int_equal(ksa_count(&w->b, QKM_KSA_READY), 0);
	assert_int_equal(records(&w->b, "aborted"), 2);
	expect_no_offered(w);
	expect_pools_equal(w);
	expect_recovered(w, 1);
}

/* Five requests queued before one flush share one round: one SUPPLY. */
static void test_batching(void **state)
{
	struct world *w = *state;
	struct keys ks[5];
	for (int i = 0; i < 5; i++)
		enc(w, i, i % 2 ? "sae-eve" : "sae-alice", i == 4 ? "sae-carol" : "sae-bob",
		    (uint32_t)i + 1, 64 * ((uint32_t)i + 1));
	assert_int_equal(w->a.out.n, 0);
	qkm_supply_flush(w->a.sup, w->now);
	assert_int_equal(w->a.out.n, 1);
	assert_int_equal(q_count(&w->a.out, QKM_MSG_SUPPLY), 1);
	qkm_supply_flush(w->a.sup, w->now); /* nothing more to send */
	assert_int_equal(w->a.out.n, 1);
	assert_int_equal(pump(w), 0);
	for (int i = 0; i < 5; i++)
		expect_enc(w, R(w, i), (size_t)i + 1, 64 * ((uint32_t)i + 1), &ks[i]);
	for (int i = 0; i < 5; i++) {
		dec(w, &w->b, 10 + i, i == 4 ? "sae-carol" : "sae-bob",
		    i % 2 ? "sae-eve" : "sae-alice", ks[i].id, ks[i].n);
		expect_dec(w, &w->b, R(w, 10 + i), ks[i].id, ks[i].n);
	}
	expect_pools_equal(w);
}

/* More asked than the pool holds: 503 naming what there is; nothing used. */
static void test_exhaustion(void **state)
{
	struct world *w = *state;
	uint64_t a0 = enc_bytes(&w->a), b0 = enc_bytes(&w->b);
	assert_int_equal(a0, NFWD * BLK_BYTES);
	/* 100 keys of 256 bits = 3200 bytes > 3072. */
	enc(w, 0, "sae-alice", "sae-bob", 100, 256);
	qkm_supply_flush(w->a.sup, w->now);
	const char *body = expect_status(&w->a, R(w, 0), 503);
	assert_non_null(strstr(body, "3072 available"));
	assert_int_equal(w->a.out.n, 0);
	assert_int_equal(enc_bytes(&w->a), a0);
	assert_int_equal(enc_bytes(&w->b), b0);
	expect_no_offered(w);
	/* Exactly what there is still works. */
	enc(w, 1, "sae-alice", "sae-bob", 96, 256);
	qkm_supply_flush(w->a.sup, w->now);
	assert_int_equal(pump(w), 0);
	expect_status(&w->a, R(w, 1), 200);
	assert_int_equal(enc_bytes(&w->a), 0);
	expect_pools_equal(w);
}

/* The pool is not usable: 503 at once, or at the flush. */
static void test_not_ready(void **state)
{
	struct world *w = *state;
	w->a.ready = false;
	enc(w, 0, "sae-alice", "sae-bob", 1, 256);
	expect_status(&w->a, R(w, 0), 503);
	w->a.ready = true;
	enc(w, 1, "sae-alice", "sae-bob", 1, 256);
	w->a.ready = false;
	qkm_supply_flush(w->a.sup, w->now);
	expect_status(&w->a, R(w, 1), 503);
	assert_int_equal(w->a.out.n, 0);
	w->a.ready = true;
	link_down(w);
	enc(w, 2, "sae-alice", "sae-bob", 1, 256);
	expect_status(&w->a, R(w, 2), 503);
	link_up(w);
	assert_int_equal(pump(w), 0);
	expect_pools_equal(w);
	expect_recovered(w, 3);
}

struct id_list {
	size_t n;
	struct qkm_id id[8];
};

/* A row's keys, each by ID (a master's node keeps a run in a row). */
static int id_collect(const struct qkm_ksa_key *k, void *arg)
{
	struct id_list *l = arg;
	for (uint32_t i = 0; i < k->count; i++) {
		assert_true(l->n < 8);
		l->id[l->n] = k->id;
		qkm_id_set_index(&l->id[l->n], qkm_id_index(&k->id) + i);
		l->n++;
	}
	return 0;
}

/* The link goes down with a round in flight, after B stored the keys: the
 * request fails; at the next link up A cancels, B deletes its copies. */
static void test_peer_down_after_store(void **state)
{
	struct world *w = *state;
	enc(w, 0, "sae-alice", "sae-bob", 2, 256);
	qkm_supply_flush(w->a.sup, w->now);
	assert_true(pump_one(w, &w->a, &w->b)); /* SUPPLY reaches B, not the ACK */
	assert_int_equal(w->b.first_err, 0);
	assert_int_equal(ksa_count(&w->b, QKM_KSA_READY), 2);
	assert_int_equal(ksa_count(&w->a, QKM_KSA_OFFERED), 2);
	link_down(w);
	expect_status(&w->a, R(w, 0), 503);
	/* The keys' IDs: A's OFFERED ones, held READY at B. */
	struct id_list l = {0};
	assert_int_equal(qkm_store_ksa_list(w->a.st, "B", QKM_KSA_OFFERED, QKM_KSA_MASTER_SIDE,
					    id_collect, &l),
			 0);
	assert_int_equal(l.n, 2);
	for (size_t i = 0; i < l.n; i++) {
		struct qkm_ksa_key k;
		assert_int_equal(qkm_store_ksa_get(w->b.st, &l.id[i], &k, false), 0);
		assert_int_equal(k.state, QKM_KSA_READY);
	}

	link_up(w);
	assert_int_equal(q_count(&w->a.out, QKM_MSG_SUPPLY_CANCEL), 1);
	assert_int_equal(pump(w), 0);
	assert_int_equal(ksa_count(&w->b, QKM_KSA_READY), 0);
	expect_no_offered(w);
	assert_int_equal(records(&w->b, "deleted"), 2);
	assert_int_equal(records(&w->a, "deleted"), 2);
	/* Had alice's IDs leaked, bob still gets nothing: the master never got
	 * these keys (R-SUP-7). */
	dec(w, &w->b, 1, "sae-bob", "sae-alice", l.id, 2);
	expect_status(&w->b, R(w, 1), 400);
	expect_pools_equal(w);
	expect_recovered(w, 2);
}

/* The link goes down before the SUPPLY reached B: at the next link up A
 * cancels keys B never saw; A's request failed, nothing reaches anyone. */
static void test_peer_down_supply_lost(void **state)
{
	struct world *w = *state;
	enc(w, 0, "sae-alice", "sae-bob", 2, 256);
	qkm_supply_flush(w->a.sup, w->now);
	assert_int_equal(q_count(&w->a.out, QKM_MSG_SUPPLY), 1);
	link_down(w); /* the SUPPLY is lost with the connection */
	expect_status(&w->a, R(w, 0), 503);
	assert_int_equal(ksa_count(&w->a, QKM_KSA_OFFERED), 2);
	link_up(w);
	assert_int_equal(q_count(&w->a.out, QKM_MSG_SUPPLY_CANCEL), 1);
	assert_int_equal(pump(w), 0);
	expect_no_offered(w);
	assert_int_equal(ksa_count(&w->b, QKM_KSA_READY), 0);
	assert_int_equal(records(&w->a, "deleted"), 2);
	/* A consumed 64 bytes B never heard of; SUPPLY_CANCEL names them with
	 * their ranges, so B consumed them too: the pools are in step at once. */
	expect_pools_equal(w);
	expect_recovered(w, 1);
}

/* A lost round that used up a whole block: A deleted its copy of the block;
 * the cancellation makes B consume (and so delete) its copy too, instead of
 * keeping a block A no longer has (R-SUP-8: both pools stay alike). */
static void test_lost_round_ends_block(void **state)
{
	struct world *w = *state;
	uint64_t a0 = enc_bytes(&w->a);
	enc(w, 0, "sae-alice", "sae-bob", 1, BLK_BYTES * 8);
	qkm_supply_flush(w->a.sup, w->now);
	assert_int_equal(q_count(&w->a.out, QKM_MSG_SUPPLY), 1);
	link_down(w); /* the SUPPLY is lost with the connection */
	expect_status(&w->a, R(w, 0), 503);
	assert_int_equal(enc_bytes(&w->a), a0 - BLK_BYTES);
	assert_int_equal(enc_bytes(&w->b), a0);
	link_up(w);
	assert_int_equal(pump(w), 0);
	assert_int_equal(enc_bytes(&w->b), a0 - BLK_BYTES);
	expect_pools_equal(w);
	expect_no_offered(w);
	expect_recovered(w, 1);
}

/* The SUPPLY_ACK is lost: past the deadline the request fails and A cancels;
 * B deletes the keys it stored. A second round, in flight behind the first
 * on the same link, is given up with it and cancelled too. */
static void test_ack_lost_timeout(void **state)
{
	struct world *w = *state;
	w->fault = (struct fault){F_DROP, QKM_MSG_SUPPLY_ACK, 0};
	enc(w, 0, "sae-alice", "sae-bob", 3, 128);
	qkm_supply_flush(w->a.sup, w->now);
	assert_int_equal(pump(w), 0);
	assert_true(w->fault.fired);
	assert_int_equal(ksa_count(&w->b, QKM_KSA_READY), 3);
	assert_int_equal(n_replies(&w->a, R(w, 0)), 0);
	/* A request queued meanwhile goes out at once, in a second round. */
	enc(w, 1, "sae-alice", "sae-bob", 1, 256);
	qkm_supply_flush(w->a.sup, w->now);
	assert_int_equal(q_count(&w->a.out, QKM_MSG_SUPPLY), 1);
	/* Two in flight: a third waits. */
	enc(w, 2, "sae-alice", "sae-bob", 1, 256);
	qkm_supply_flush(w->a.sup, w->now);
	assert_int_equal(w->a.out.n, 1);

	w->now += w->a.cfg.round_timeout_ns - 1;
	qkm_supply_tick(w->a.sup, w->now);
	assert_int_equal(n_replies(&w->a, R(w, 0)), 0);
	assert_int_equal(n_replies(&w->a, R(w, 1)), 0);
	assert_int_equal(w->a.out.n, 1);
	w->now += 1;
	qkm_supply_tick(w->a.sup, w->now);
	assert_non_null(strstr(expect_status(&w->a, R(w, 0), 503), "in time"));
	assert_non_null(strstr(expect_status(&w->a, R(w, 1), 503), "in time"));
	assert_int_equal(q_count(&w->a.out, QKM_MSG_SUPPLY_CANCEL), 1);
	qkm_supply_tick(w->a.sup, w->now + w->a.cfg.round_timeout_ns); /* no second reply */
	assert_int_equal(n_replies(&w->a, R(w, 0)), 1);
	assert_int_equal(n_replies(&w->a, R(w, 1)), 1);
	/* The queued request's round goes after the cancellation, so it is
	 * not cancelled: B stores the second round, the cancellation deletes
	 * both rounds' keys (the late answer changes nothing), then B stores
	 * the third. */
	qkm_supply_flush(w->a.sup, w->now);
	assert_int_equal(q_count(&w->a.out, QKM_MSG_SUPPLY), 2);
	assert_int_equal(pump(w), 0);
	assert_int_equal(records(&w->b, "deleted"), 4);
	struct keys ks;
	expect_enc(w, R(w, 2), 1, 256, &ks);
	assert_int_equal(w->seen[0].pos, 48 + 32);
	assert_int_equal(ksa_count(&w->b, QKM_KSA_READY), 1);
	expect_no_offered(w);
	expect_pools_equal(w);
	expect_recovered(w, 3);
}

/* A client leaves while its round is in flight: it gets no reply, its keys
 * are cancelled after the round, the other request of the round is served. */
static void test_forget_in_flight(void **state)
{
	struct world *w = *state;
	struct keys ks;
	enc(w, 0, "sae-alice", "sae-bob", 2, 256);
	enc(w, 1, "sae-alice", "sae-bob", 3, 256);
	enc(w, 2, "sae-alice", "sae-bob", 1, 256);
	qkm_supply_forget(w->a.sup, R(w, 2)); /* still queued: never drawn */
	qkm_supply_flush(w->a.sup, w->now);
	assert_int_equal(ksa_count(&w->a, QKM_KSA_OFFERED), 5);
	qkm_supply_forget(w->a.sup, R(w, 0));
	qkm_supply_forget(w->a.sup, R(w, 7)); /* unknown: no effect */
	assert_int_equal(pump(w), 0);
	assert_int_equal(n_replies(&w->a, R(w, 0)), 0);
	assert_int_equal(n_replies(&w->a, R(w, 2)), 0);
	expect_enc(w, R(w, 1), 3, 256, &ks);
	assert_int_equal(w->seen[0].pos, 64);
	expect_no_offered(w);
	assert_int_equal(ksa_count(&w->a, QKM_KSA_SUPPLIED), 3);
	assert_int_equal(ksa_count(&w->b, QKM_KSA_READY), 3);
	assert_int_equal(records(&w->b, "deleted"), 2);
	assert_int_equal(records(&w->a, "deleted"), 2);
	dec(w, &w->b, 3, "sae-bob", "sae-alice", ks.id, 3);
	expect_dec(w, &w->b, R(w, 3), ks.id, 3);
	expect_pools_equal(w);
	expect_recovered(w, 4);
	assert_int_equal(w->seen[3].pos, 160); /* after the forgotten bytes */
}

/* Two rounds in flight, the first one's client gone: its keys are not
 * cancelled while the second is in flight (its keys are OFFERED too), but
 * once it is answered; the second request is served. */
static void test_forget_two_in_flight(void **state)
{
	struct world *w = *state;
	struct keys ks;
	enc(w, 0, "sae-alice", "sae-bob", 2, 256);
	qkm_supply_flush(w->a.sup, w->now);
	enc(w, 1, "sae-alice", "sae-bob", 3, 256);
	qkm_supply_flush(w->a.sup, w->now);
	assert_int_equal(q_count(&w->a.out, QKM_MSG_SUPPLY), 2);
	assert_int_equal(ksa_count(&w->a, QKM_KSA_OFFERED), 5);
	qkm_supply_forget(w->a.sup, R(w, 0));
	/* B answers both; A reads the first answer alone. */
	assert_true(pump_one(w, &w->a, &w->b));
	assert_true(pump_one(w, &w->a, &w->b));
	assert_int_equal(q_count(&w->b.out, QKM_MSG_SUPPLY_ACK), 2);
	assert_true(pump_one(w, &w->b, &w->a));
	assert_int_equal(n_replies(&w->a, R(w, 0)), 0);
	assert_int_equal(w->a.out.n, 0); /* no cancellation yet */
	assert_int_equal(ksa_count(&w->a, QKM_KSA_OFFERED), 5);
	assert_int_equal(pump(w), 0);
	expect_enc(w, R(w, 1), 3, 256, &ks);
	assert_int_equal(w->seen[0].pos, 64);
	expect_no_offered(w);
	assert_int_equal(records(&w->b, "deleted"), 2);
	assert_int_equal(records(&w->a, "deleted"), 2);
	assert_int_equal(ksa_count(&w->b, QKM_KSA_READY), 3);
	dec(w, &w->b, 2, "sae-bob", "sae-alice", ks.id, 3);
	expect_dec(w, &w->b, R(w, 2), ks.id, 3);
	expect_pools_equal(w);
	expect_recovered(w, 3);
}

/* A cancellation lost on the way (over an end-to-end pool frames are
 * routed, and a node on the route drops what it cannot pass on, with no
 * link of ours going down) goes again once a round timeout passes
 * unanswered, and stops once answered: the pools end up alike. */
static void test_cancel_lost_resent(void **state)
{
	struct world *w = *state;
	w->fault = (struct fault){F_DROP, QKM_MSG_SUPPLY_CANCEL, 0};
	enc(w, 0, "sae-alice", "sae-bob", 2, 256);
	enc(w, 1, "sae-alice", "sae-bob", 1, 256);
	qkm_supply_flush(w->a.sup, w->now);
	qkm_supply_forget(w->a.sup, R(w, 0)); /* its keys are cancelled after the round */
	assert_int_equal(pump(w), 0);
	assert_true(w->fault.fired);
	assert_int_equal(ksa_count(&w->a, QKM_KSA_OFFERED), 2);
	assert_int_equal(ksa_count(&w->b, QKM_KSA_READY), 3);
	qkm_supply_tick(w->a.sup, w->now + w->a.cfg.round_timeout_ns - 1);
	assert_int_equal(q_count(&w->a.out, QKM_MSG_SUPPLY_CANCEL), 0);
	w->now += w->a.cfg.round_timeout_ns;
	qkm_supply_tick(w->a.sup, w->now);
	assert_int_equal(q_count(&w->a.out, QKM_MSG_SUPPLY_CANCEL), 1);
	assert_int_equal(pump(w), 0);
	expect_no_offered(w);
	assert_int_equal(ksa_count(&w->b, QKM_KSA_READY), 1);
	expect_pools_equal(w);
	w->now += 2 * w->a.cfg.round_timeout_ns;
	qkm_supply_tick(w->a.sup, w->now);
	assert_int_equal(q_count(&w->a.out, QKM_MSG_SUPPLY_CANCEL), 0);
}

/* A SUPPLY delivered twice: B refuses the copy (its ranges are used) and must
 * keep the keys the first copy stored, which the master already has
 * (R-SUP-7). A sees an ACK for no round and ignores it (as it does a late
 * answer to a round it gave up on). */
static void test_duplicated_supply(void **state)
{
	struct world *w = *state;
	struct keys ks;
	w->fault = (struct fault){F_DUP, QKM_MSG_SUPPLY, 0};
	enc(w, 0, "sae-alice", "sae-bob", 2, 256);
	qkm_supply_flush(w->a.sup, w->now);
	assert_int_equal(pump(w), 0);
	assert_true(w->fault.fired);
	expect_enc(w, R(w, 0), 2, 256, &ks);
	assert_int_equal(ksa_count(&w->b, QKM_KSA_READY), 2);
	dec(w, &w->b, 1, "sae-bob", "sae-alice", ks.id, 2);
	expect_dec(w, &w->b, R(w, 1), ks.id, 2);
	expect_pools_equal(w);
	/* The owner drops the link on QKM_EPEER; after it nothing is undone. */
	link_down(w);
	link_up(w);
	assert_int_equal(pump(w), 0);
	expect_recovered(w, 2);
}

/* The "pruned" records of a side: one per batch of rows pruned; *keys
 * adds up the keys each one names in its detail. */
struct pruned {
	int rows;
	unsigned long long keys;
};

static int pruned_cb(const struct qkm_lc_event *ev, void *arg)
{
	struct pruned *p = arg;
	unsigned long long n;
	if (strcmp(ev->event, "pruned") != 0)
		return 0;
	assert_string_equal(ev->key_kind, "ksa");
	assert_int_equal(sscanf(ev->detail, "metadata of %llu KSA key(s)", &n), 1);
	p->rows++;
	p->keys += n;
	return 0;
}

static struct pruned pruned(struct side *s)
{
	struct pruned p = {0, 0};
	assert_int_equal(qkm_store_records(s->st, 0, 0, pruned_cb, &p), 0);
	return p;
}

/* retention_s: a key's row goes retention after its supply, at both
 * nodes, recorded; a key a slave has not fetched stays, and is still
 * given once. The IDs of a pruned key's round are refused if its SUPPLY
 * ever comes again, so a key whose row is gone is never stored (and
 * supplied) a second time; later rounds are taken. */
static void test_retention(void **state)
{
	struct world *w = *state;
	struct keys k1, k2, k3;
	const uint64_t keep = 60000 * MS;
	struct side *sides[] = {&w->a, &w->b};
	for (int i = 0; i < 2; i++) {
		sides[i]->cfg.retention_ns = keep;
		side_supply(sides[i]);
	}
	link_up(w);
	assert_int_equal(pump(w), 0);

	/* Round 1: three keys, fetched by the slave; its SUPPLY kept aside. */
	enc(w, 0, "sae-alice", "sae-bob", 3, 256);
	qkm_supply_flush(w->a.sup, w->now);
	assert_int_equal(q_count(&w->a.out, QKM_MSG_SUPPLY), 1);
	struct msg supply1 = q_pop(&w->a.out);
	deliver(w, &w->a, &w->b, supply1.p, supply1.len);
	assert_int_equal(pump(w), 0);
	expect_enc(w, R(w, 0), 3, 256, &k1);
	dec(w, &w->b, 1, "sae-bob", "sae-alice", k1.id, 3);
	expect_dec(w, &w->b, R(w, 1), k1.id, 3);
	/* Round 2, 30 s later: two keys the slave does not fetch. */
	w->now += 30000 * MS;
	enc(w, 2, "sae-alice", "sae-bob", 2, 256);
	qkm_supply_flush(w->a.sup, w->now);
	assert_int_equal(pump(w), 0);
	expect_enc(w, R(w, 2), 2, 256, &k2);

	/* Before the retention has passed: nothing goes. */
	w->now += keep - 32000 * MS;
	qkm_supply_tick(w->a.sup, w->now);
	qkm_supply_tick(w->b.sup, w->now);
	assert_int_equal(ksa_count(&w->a, QKM_KSA_SUPPLIED), 5);
	assert_int_equal(ksa_count(&w->b, QKM_KSA_SUPPLIED), 3);
	assert_int_equal(pruned(&w->a).rows + pruned(&w->b).rows, 0);

	/* Past it for round 1 only (a node looks again 10 s after a pass). */
	w->now += 12000 * MS;
	qkm_supply_tick(w->a.sup, w->now);
	qkm_supply_tick(w->b.sup, w->now);
	assert_int_equal(ksa_count(&w->a, QKM_KSA_SUPPLIED), 2);
	assert_int_equal(ksa_count(&w->b, QKM_KSA_SUPPLIED), 0);
	assert_int_equal(ksa_count(&w->b, QKM_KSA_READY), 2);
	assert_int_equal(pruned(&w->a).keys, 3);
	assert_int_equal(pruned(&w->b).keys, 3);
	int64_t n;
	assert_int_equal(qkm_store_counter_get(w->b.st, "ksa_pruned_keys", &n), 0);
	assert_int_equal(n, 3);
	/* A pruned key: unknown, as a delivered one is. */
	dec(w, &w->b, 3, "sae-bob", "sae-alice", k1.id, 1);
	expect_reason(&w->b, R(w, 3), 400, "unknown_key");

	/* Round 1's SUPPLY again: refused, nothing stored, A told so. */
	deliver(w, &w->a, &w->b, supply1.p, supply1.len);
	free(supply1.p);
	assert_int_equal(ksa_count(&w->b, QKM_KSA_READY), 2);
	struct qkm_ksa_key got;
	assert_int_equal(qkm_store_ksa_get(w->b.st, &k1.id[0], &got, false), QKM_ENOTFOUND);
	assert_int_equal(records_with(&w->b, "aborted", "pruned records"), 3);
	assert_int_equal(q_count(&w->b.out, QKM_MSG_SUPPLY_ACK), 1);
	q_clear(&w->b.out);

	/* Round 2's keys are still given, once; a new round is taken. */
	dec(w, &w->b, 4, "sae-bob", "sae-alice", k2.id, 2);
	expect_dec(w, &w->b, R(w, 4), k2.id, 2);
	enc(w, 5, "sae-alice", "sae-bob", 1, 256);
	qkm_supply_flush(w->a.sup, w->now);
	assert_int_equal(pump(w), 0);
	expect_enc(w, R(w, 5), 1, 256, &k3);
	dec(w, &w->b, 6, "sae-bob", "sae-alice", k3.id, 1);
	expect_dec(w, &w->b, R(w, 6), k3.id, 1);

	/* The horizon outlives a restart. */
	side_supply(&w->b);
	uint64_t ms;
	assert_int_equal(qkm_store_ksa_horizon(w->b.st, &ms), 0);
	assert_true(qkm_store_ksa_older(&k1.id[0], ms));
	assert_false(qkm_store_ksa_older(&k2.id[0], ms));
}

/* Rebuilds frame m: without TLV `drop`, every RANGE's LEN set to `len` when
 * set_len, the request ID replaced by req when req_set. */
static void rebuild(const struct msg *m, uint16_t drop, bool set_len, uint32_t len, bool req_set,
		    uint32_t req, struct qkm_buf *out)
{
	struct qkm_frame f;
	size_t start, off = 0;
	uint16_t tag;
	const uint8_t *v;
	uint32_t vl;
	assert_int_equal(qkm_frame_parse(m->p, m->len, &f), 0);
	qkm_buf_init(out, QKM_FRAME_MAX, false);
	assert_int_equal(qkm_frame_begin(out, f.type, req_set ? req : f.req, &start), 0);
	while (qkm_tlv_next(f.body, f.body_len, &off, &tag, &v, &vl) == 1) {
		if (tag == drop)
			continue;
		if (tag != QKM_T_RANGE || !set_len) {
			assert_int_equal(qkm_put_tlv(out, tag, v, vl), 0);
			continue;
		}
		size_t r, in = 0;
		const uint8_t *x;
		uint32_t xl;
		uint16_t t;
		assert_int_equal(qkm_put_open(out, QKM_T_RANGE, &r), 0);
		while (qkm_tlv_next(v, vl, &in, &t, &x, &xl) == 1) {
			if (t == QKM_T_LEN)
				assert_int_equal(qkm_put_u32(out, t, len), 0);
			else
				assert_int_equal(qkm_put_tlv(out, t, x, xl), 0);
		}
		assert_int_equal(qkm_put_close(out, r), 0);
	}
	assert_int_equal(qkm_frame_end(out, start), 0);
}

/* Frames that break the protocol are QKM_EPEER and change nothing: the real
 * frames after them still work. */
static void test_protocol_violations(void **state)
{
	struct world *w = *state;
	struct qkm_buf b;
	struct qkm_frame f;
	enc(w, 0, "sae-alice", "sae-bob", 2, 256);
	qkm_supply_flush(w->a.sup, w->now);
	assert_int_equal(w->a.out.n, 1);
	struct msg sup = q_pop(&w->a.out);
	uint32_t round = qkm_be32_get(sup.p + 7);
	uint64_t b0 = enc_bytes(&w->b);

	/* SUPPLY without its digest. */
	rebuild(&sup, QKM_T_DIGEST, false, 0, false, 0, &b);
	assert_int_equal(deliver(w, &w->a, &w->b, b.p, b.len), QKM_EPEER);
	qkm_buf_fini(&b);
	/* A RANGE of length 0. */
	rebuild(&sup, 0, true, 0, false, 0, &b);
	assert_int_equal(deliver(w, &w->a, &w->b, b.p, b.len), QKM_EPEER);
	qkm_buf_fini(&b);
	/* Without keys, or without ranges. */
	rebuild(&sup, QKM_T_KEY, false, 0, false, 0, &b);
	assert_int_equal(deliver(w, &w->a, &w->b, b.p, b.len), QKM_EPEER);
	qkm_buf_fini(&b);
	rebuild(&sup, QKM_T_RANGE, false, 0, false, 0, &b);
	assert_int_equal(deliver(w, &w->a, &w->b, b.p, b.len), QKM_EPEER);
	qkm_buf_fini(&b);
	/* Ranges that do not add up to the keys' size. */
	rebuild(&sup, 0, true, 63, false, 0, &b);
	assert_int_equal(deliver(w, &w->a, &w->b, b.p, b.len), QKM_EPEER);
	qkm_buf_fini(&b);
	/* From a node that is no peer; of an unknown type. */
	assert_int_equal(qkm_frame_parse(sup.p, sup.len, &f), 0);
	assert_int_equal(qkm_supply_on_frame(w->b.sup, "C", &f, w->now), QKM_EPEER);
	f.type = QKM_MSG_PING;
	assert_int_equal(qkm_supply_on_frame(w->b.sup, "A", &f, w->now), QKM_EPEER);
	assert_int_equal(w->b.out.n, 0);
	assert_int_equal(ksa_count(&w->b, QKM_KSA_READY), 0);
	assert_int_equal(enc_bytes(&w->b), b0);

	/* The real SUPPLY. */
	assert_int_equal(deliver(w, &w->a, &w->b, sup.p, sup.len), 0);
	free(sup.p);
	assert_int_equal(w->b.out.n, 1);
	struct msg ack = q_pop(&w->b.out);
	/* SUPPLY_ACK with a wrong request ID: ignored, changes nothing;
	 * without OK: a protocol error. */
	rebuild(&ack, 0, false, 0, true, round + 1, &b);
	assert_int_equal(deliver(w, &w->b, &w->a, b.p, b.len), 0);
	qkm_buf_fini(&b);
	rebuild(&ack, QKM_T_OK, false, 0, false, 0, &b);
	assert_int_equal(deliver(w, &w->b, &w->a, b.p, b.len), QKM_EPEER);
	qkm_buf_fini(&b);
	assert_int_equal(n_replies(&w->a, R(w, 0)), 0);
	/* The real ACK completes the round; a second one is for no round and
	 * is ignored: the master is answered once. */
	assert_int_equal(deliver(w, &w->b, &w->a, ack.p, ack.len), 0);
	struct keys ks;
	expect_enc(w, R(w, 0), 2, 256, &ks);
	assert_int_equal(deliver(w, &w->b, &w->a, ack.p, ack.len), 0);
	free(ack.p);
	assert_int_equal(n_replies(&w->a, R(w, 0)), 1);
	/* A cancel naming a key with a bad ID length. */
	assert_int_equal(pump(w), 0);
	qkm_buf_init(&b, 1024, false);
	size_t start;
	uint8_t shortid[8] = {0};
	size_t key;
	assert_int_equal(qkm_frame_begin(&b, QKM_MSG_SUPPLY_CANCEL, 0, &start), 0);
	assert_int_equal(qkm_put_open(&b, QKM_T_KEY, &key), 0);
	assert_int_equal(qkm_put_tlv(&b, QKM_T_KSA_ID, shortid, sizeof(shortid)), 0);
	assert_int_equal(qkm_put_close(&b, key), 0);
	assert_int_equal(qkm_frame_end(&b, start), 0);
	assert_int_equal(deliver(w, &w->a, &w->b, b.p, b.len), QKM_EPEER);
	qkm_buf_fini(&b);
	dec(w, &w->b, 1, "sae-bob", "sae-alice", ks.id, 2);
	expect_dec(w, &w->b, R(w, 1), ks.id, 2);
	expect_pools_equal(w);
}

/* ---- the stock of keys made ahead (ksa/stock.h) --------------------------- */

#define STOCK_KEYS QKM_STOCK_MIN_KEYS /* the first refill of an entry */

static uint64_t stock_count(struct world *w)
{
	return qkm_stock_count(w->a.stock, "B");
}

static int64_t counter(struct side *s, const char *name)
{
	int64_t v;
	assert_int_equal(qkm_store_counter_get(s->st, name, &v), 0);
	return v;
}

/* What the ETSI 014 front end does: n keys of bits for alice -> bob from
 * A's stock. On success the keys are checked like a round's (expect_fresh),
 * so a byte given out twice, by a round or the stock, fails the test. */
static int take(struct world *w, uint32_t n, uint32_t bits, struct keys *ks, bool *low)
{
	static uint8_t data[MAXKEYS * 1024];
	assert_true(n <= MAXKEYS && bits / 8 <= sizeof(ks->k[0]));
	memset(ks, 0, sizeof(*ks));
	int rc = qkm_stock_take(w->a.stock, "sae-alice", "sae-bob", bits, n, ks->id, data, w->now,
				low);
	if (rc)
		return rc;
	ks->n = n;
	for (uint32_t i = 0; i < n; i++) {
		memcpy(ks->k[i], data + (size_t)i * (bits / 8), bits / 8);
		ks->len[i] = bits / 8;
	}
	expect_fresh(w, ks, n, bits);
	return 0;
}

struct ids {
	size_t n;
	struct qkm_id id[2 * STOCK_KEYS];
};

static int ids_collect(const struct qkm_ksa_key *k, void *arg)
{
	struct ids *l = arg;
	for (uint32_t i = 0; i < k->count; i++) {
		assert_true(l->n < sizeof(l->id) / sizeof(l->id[0]));
		l->id[l->n] = k->id;
		qkm_id_set_index(&l->id[l->n], qkm_id_index(&k->id) + i);
		l->n++;
	}
	return 0;
}

/* The IDs of s's KSA keys in state st, on the master's side at A and the
 * slave's at B. */
static void ksa_ids(struct side *s, enum qkm_ksa_state st, struct ids *l)
{
	enum qkm_ksa_role role = strcmp(s->name, "A") == 0 ? QKM_KSA_MASTER_SIDE
							    : QKM_KSA_SLAVE_SIDE;
	memset(l, 0, sizeof(*l));
	assert_int_equal(qkm_store_ksa_list(s->st, s->peer, st, role, ids_collect, l), 0);
}

static bool ids_has(const struct ids *l, const struct qkm_id *id)
{
	for (size_t i = 0; i < l->n; i++)
		if (qkm_id_eq(&l->id[i], id))
			return true;
	return false;
}

/* The state of KSA key id at s. */
static int ksa_state(struct side *s, const struct qkm_id *id, uint64_t *supplied_ns)
{
	struct qkm_ksa_key k;
	assert_int_equal(qkm_store_ksa_get(s->st, id, &k, false), 0);
	if (supplied_ns)
		*supplied_ns = k.supplied_ns;
	return k.state;
}

/* The first plain request of alice for bob (2 keys of 64 bits), which fills
 * the stock with STOCK_KEYS keys in the same round. */
static void fill_stock(struct world *w, int req)
{
	struct keys ks;
	enc(w, req, "sae-alice", "sae-bob", 2, 64);
	qkm_supply_flush(w->a.sup, w->now);
	assert_int_equal(pump(w), 0);
	expect_enc(w, R(w, req), 2, 64, &ks);
	assert_int_equal(stock_count(w), STOCK_KEYS);
}

/* Keys taken from stock whose round a compromise order deleted before the
 * next flush settled them: nothing is left to record for those; keys of
 * another round taken with them are recorded supplied all the same (a
 * master's node keeps a round's keys in a row, store.h). */
static void test_stock_settle_after_delete(void **state)
{
	struct world *w = *state;
	struct keys t, u;
	bool low;
	fill_stock(w, 0);
	for (int i = 0; i < 4; i++)
		assert_int_equal(take(w, 16, 64, &t, &low), 0);
	qkm_supply_flush(w->a.sup, w->now); /* settles, and refills 64 */
	assert_int_equal(pump(w), 0);
	assert_int_equal(stock_count(w), STOCK_KEYS);
	for (int i = 0; i < 4; i++) /* the first round's last 64 */
		assert_int_equal(take(w, 16, 64, &t, &low), 0);
	assert_int_equal(take(w, 16, 64, &u, &low), 0); /* the refill's first 16 */
	assert_false(qkm_id_same_round(&t.id[0], &u.id[0]));
	size_t nd;
	assert_int_equal(qkm_store_ksa_delete_round(w->a.st, &t.id[0], &nd), 0);
	assert_int_equal(nd, 2 + STOCK_KEYS); /* the request's 2 and the stock's */
	int64_t before = counter(&w->a, "supplied_keys");
	qkm_supply_flush(w->a.sup, w->now);
	for (size_t j = 0; j < 16; j++)
		assert_int_equal(ksa_state(&w->a, &u.id[j], NULL), QKM_KSA_SUPPLIED);
	assert_int_equal(ksa_count(&w->a, QKM_KSA_STOCKED), 64 - 16);
	assert_int_equal(counter(&w->a, "supplied_keys"), before + 64 + 16);
	/* and the next take of the refill's keys settles as usual */
	assert_int_equal(take(w, 8, 64, &u, &low), 0);
	qkm_supply_flush(w->a.sup, w->now);
	assert_int_equal(ksa_state(&w->a, &u.id[7], NULL), QKM_KSA_SUPPLIED);
	assert_int_equal(counter(&w->a, "supplied_keys"), before + 64 + 16 + 8);
}

/* A stops and starts again (a crash: nothing is settled on the way down):
 * B sees the link drop, frames in flight are lost, A's supply and stock are
 * made anew on the same store, then the link comes up. */
static void restart_a(struct world *w)
{
	qkm_supply_on_peer(w->b.sup, "A", false, w->now);
	q_clear(&w->a.out);
	q_clear(&w->b.out);
	side_restart_stocked(&w->a);
	link_up(w);
}

/* A store from before schema 9 holds a master's stocked keys a row each
 * (count 1). At start they are recorded possibly supplied like runs: the
 * rows that follow one another by row and by ID as one run, one record;
 * a row apart (another round) on its own. */
static void test_stock_forget_key_rows(void **state)
{
	struct world *w = *state;
	struct qkm_ksa_key k;
	struct qkm_id first, other;
	memset(&k, 0, sizeof(k));
	snprintf(k.peer, sizeof(k.peer), "B");
	snprintf(k.master, sizeof(k.master), "sae-alice");
	snprintf(k.slave, sizeof(k.slave), "sae-bob");
	k.size_bits = 64;
	k.level = QKM_LEVEL_ITS;
	k.role = QKM_KSA_MASTER_SIDE;
	k.state = QKM_KSA_STOCKED;
	k.created_ns = w->now;
	assert_int_equal(qkm_id_uuid7(&first, w->now), 0);
	assert_int_equal(qkm_id_uuid7(&other, w->now + 1000000), 0);
	assert_false(qkm_id_same_round(&first, &other));
	assert_int_equal(qkm_store_begin(w->a.st), 0);
	for (uint32_t i = 0; i < 5; i++) { /* keys 0..4 of one round, a row each */
		k.id = first;
		qkm_id_set_index(&k.id, i);
		assert_int_equal(qkm_store_ksa_put(w->a.st, &k), 0);
	}
	k.id = other;
	assert_int_equal(qkm_store_ksa_put(w->a.st, &k), 0);
	assert_int_equal(qkm_store_commit(w->a.st), 0);
	assert_int_equal(ksa_count(&w->a, QKM_KSA_STOCKED), 6);

	restart_a(w);
	assert_int_equal(ksa_count(&w->a, QKM_KSA_STOCKED), 0);
	assert_int_equal(ksa_count(&w->a, QKM_KSA_SUPPLIED), 6);
	assert_int_equal(records_with(&w->a, "supplied", "possibly"), 6);
	assert_int_equal(rows_with(&w->a, "supplied", "possibly"), 2);
	assert_int_equal(counter(&w->a, "supplied_keys"), 6);
	qkm_id_set_index(&first, 4);
	assert_int_equal(ksa_state(&w->a, &first, NULL), QKM_KSA_SUPPLIED);
}

/* R-SUP-6: a plain request is answered by a round as before, and registers
 * the pair's demand: the same round carries the stock's first refill,
 * whose keys B stores READY before A records them STOCKED and stocks
 * them. Requests the front end cannot serve from stock (additional
 * slaves) make no entry. */
static void test_stock_fill(void **state)
{
	struct world *w = *state;
	struct keys ks;
	uint64_t a0 = enc_bytes(&w->a);

	struct qkm_etsi_key_request r = kreq(1, 64);
	r.n_additional = 1;
	snprintf(r.additional[0], sizeof(r.additional[0]), "sae-carol");
	qkm_supply_enc(w->a.sup, R(w, 0), "sae-alice", "sae-bob", &r, w->now);
	qkm_supply_flush(w->a.sup, w->now);
	assert_int_equal(ksa_count(&w->a, QKM_KSA_OFFERED), 1);
	assert_int_equal(pump(w), 0);
	expect_enc(w, R(w, 0), 1, 64, &ks);
	assert_int_equal(stock_count(w), 0);
	qkm_supply_flush(w->a.sup, w->now);
	assert_int_equal(w->a.out.n, 0);

	enc(w, 1, "sae-alice", "sae-bob", 2, 64);
	assert_int_equal(n_replies(&w->a, R(w, 1)), 0);
	qkm_supply_flush(w->a.sup, w->now);
	/* One round: the request and the refill. */
	assert_int_equal(w->a.out.n, 1);
	assert_int_equal(q_count(&w->a.out, QKM_MSG_SUPPLY), 1);
	assert_int_equal(ksa_count(&w->a, QKM_KSA_OFFERED), 2 + STOCK_KEYS);
	/* Nothing is stocked before B has stored it. */
	assert_int_equal(stock_count(w), 0);
	assert_int_equal(ksa_count(&w->a, QKM_KSA_STOCKED), 0);
	assert_int_equal(pump(w), 0);
	expect_enc(w, R(w, 1), 2, 64, &ks);
	assert_int_equal(w->seen[1].pos, 8); /* the request's keys come first */
	assert_int_equal(stock_count(w), STOCK_KEYS);
	assert_int_equal(ksa_count(&w->a, QKM_KSA_STOCKED), STOCK_KEYS);
	assert_int_equal(ksa_count(&w->a, QKM_KSA_SUPPLIED), 3);
	assert_int_equal(ksa_count(&w->b, QKM_KSA_READY), 3 + STOCK_KEYS);
	expect_no_offered(w);
	assert_int_equal(enc_bytes(&w->a), a0 - (3 + STOCK_KEYS) * 8);
	expect_pools_equal(w);
	/* Stocked is not supplied: no record, not counted. */
	assert_int_equal(records(&w->a, "formatted"), 3 + STOCK_KEYS);
	assert_int_equal(records(&w->a, "supplied"), 3);
	assert_int_equal(records(&w->b, "stored"), 3 + STOCK_KEYS);
	assert_int_equal(counter(&w->a, "supplied_keys"), 3);
	assert_int_equal(counter(&w->a, "sae/sae-alice/enc"), 3); /* per SAE, for the status */

	/* Every key STOCKED at A is READY at B for alice -> bob, 64 bits,
	 * with its own 8 bytes of the pool after the request's. */
	struct ids l;
	uint8_t used[STOCK_KEYS] = {0};
	ksa_ids(&w->a, QKM_KSA_STOCKED, &l);
	assert_int_equal(l.n, STOCK_KEYS);
	for (size_t i = 0; i < l.n; i++) {
		struct qkm_ksa_key k;
		assert_int_equal(qkm_store_ksa_get(w->b.st, &l.id[i], &k, true), 0);
		assert_int_equal(k.state, QKM_KSA_READY);
		assert_int_equal(k.role, QKM_KSA_SLAVE_SIDE);
		assert_string_equal(k.master, "sae-alice");
		assert_string_equal(k.slave, "sae-bob");
		assert_string_equal(k.additional, "");
		assert_int_equal(k.size_bits, 64);
		assert_non_null(k.data);
		assert_int_equal(k.data->len, 8);
		const uint8_t *at = memmem(w->pool + 24, STOCK_KEYS * 8, k.data->p, 8);
		qkm_secret_free(k.data);
		assert_non_null(at);
		size_t pos = (size_t)(at - w->pool - 24);
		assert_int_equal(pos % 8, 0);
		assert_false(used[pos / 8]);
		used[pos / 8] = 1;
	}
	/* Full: neither a flush nor a tick starts another round. */
	qkm_supply_flush(w->a.sup, w->now);
	qkm_supply_tick(w->a.sup, w->now + 1000 * MS);
	assert_int_equal(w->a.out.n, 0);
}

/* R-SUP-8: keys from the stock are the ones B stored for those IDs; bob
 * gets each once. The next flush records them SUPPLIED at A, counted, each
 * with a life-cycle record saying so, and tops the stock up once it is
 * low. */
static void test_stock_take(void **state)
{
	struct world *w = *state;
	struct keys t[4];
	bool low = true;
	fill_stock(w, 0);

	for (int i = 0; i < 4; i++) {
		assert_int_equal(take(w, 16, 64, &t[i], &low), 0);
		assert_int_equal(low, i >= 1); /* 96 left or fewer: a quarter missing */
	}
	assert_int_equal(stock_count(w), STOCK_KEYS - 64);
	assert_int_equal(w->a.out.n, 0); /* the front end does not send */
	for (int i = 0; i < 4; i++)
		for (size_t j = 0; j < 16; j++) {
			struct qkm_ksa_key k;
			assert_int_equal(qkm_store_ksa_get(w->b.st, &t[i].id[j], &k, true), 0);
			assert_int_equal(k.state, QKM_KSA_READY);
			assert_non_null(k.data);
			assert_int_equal(k.data->len, 8);
			assert_memory_equal(k.data->p, t[i].k[j], 8);
			qkm_secret_free(k.data);
			assert_int_equal(ksa_state(&w->a, &t[i].id[j], NULL), QKM_KSA_STOCKED);
		}
	dec(w, &w->b, 1, "sae-bob", "sae-alice", t[0].id, 16);
	expect_dec(w, &w->b, R(w, 1), t[0].id, 16);
	dec(w, &w->b, 2, "sae-bob", "sae-alice", t[0].id, 16);
	expect_status(&w->b, R(w, 2), 400);
	dec(w, &w->b, 3, "sae-bob", "sae-alice", &t[0].id[5], 1);
	expect_status(&w->b, R(w, 3), 400);

	/* The main thread settles what was taken, stamped when it was taken. */
	uint64_t taken_at = w->now;
	w->now += 5 * MS;
	qkm_supply_flush(w->a.sup, w->now);
	assert_int_equal(ksa_count(&w->a, QKM_KSA_SUPPLIED), 2 + 64);
	assert_int_equal(records(&w->a, "supplied"), 2 + 64);
	assert_int_equal(records_with(&w->a, "supplied", "from stock"), 64);
	/* Taken in one millisecond, one after another from one round: one
	 * record and one row update ("<round UUID>[0..63]"). */
	assert_int_equal(rows_with(&w->a, "supplied", "from stock"), 1);
	assert_int_equal(counter(&w->a, "supplied_keys"), 2 + 64);
	assert_int_equal(counter(&w->a, "sae/sae-alice/enc"), 2 + 64);
	assert_int_equal(counter(&w->b, "sae/sae-bob/dec"), 16); /* refused ones do not count */
	for (int i = 0; i < 4; i++)
		for (size_t j = 0; j < 16; j++) {
			uint64_t at;
			assert_int_equal(ksa_state(&w->a, &t[i].id[j], &at), QKM_KSA_SUPPLIED);
			assert_int_equal(at, taken_at);
		}
	/* The same flush found the stock low: one refill round of 64 keys,
	 * stocked only once B has them. */
	assert_int_equal(q_count(&w->a.out, QKM_MSG_SUPPLY), 1);
	assert_int_equal(ksa_count(&w->a, QKM_KSA_OFFERED), 64);
	assert_int_equal(ksa_count(&w->a, QKM_KSA_STOCKED), STOCK_KEYS - 64);
	assert_int_equal(pump(w), 0);
	assert_int_equal(stock_count(w), STOCK_KEYS);
	assert_int_equal(ksa_count(&w->a, QKM_KSA_STOCKED), STOCK_KEYS);
	assert_int_equal(ksa_count(&w->b, QKM_KSA_READY), 2 + STOCK_KEYS + 64 - 16);
	expect_no_offered(w);
	expect_pools_equal(w);
	/* Settled once: later flushes record nothing more. */
	qkm_supply_flush(w->a.sup, w->now);
	assert_int_equal(records(&w->a, "supplied"), 2 + 64);
	assert_int_equal(counter(&w->a, "supplied_keys"), 2 + 64);
	assert_int_equal(counter(&w->a, "sae/sae-alice/enc"), 2 + 64);
	assert_int_equal(w->a.out.n, 0);
	/* The refill's keys follow on from the first ones, fresh. */
	struct keys more;
	assert_int_equal(take(w, 16, 64, &more, &low), 0);
	assert_int_equal(w->seen[2 + 64].pos, (2 + 64) * 8);
	for (int i = 1; i < 4; i++) {
		dec(w, &w->b, 4 + i, "sae-bob", "sae-alice", t[i].id, 16);
		expect_dec(w, &w->b, R(w, 4 + i), t[i].id, 16);
	}
	dec(w, &w->b, 8, "sae-bob", "sae-alice", more.id, 16);
	expect_dec(w, &w->b, R(w, 8), more.id, 16);
	/* The stock's keys are alice's for bob, no one else's. */
	assert_int_equal(take(w, 1, 64, &more, &low), 0);
	dec(w, &w->b, 9, "sae-carol", "sae-alice", more.id, 1);
	expect_status(&w->b, R(w, 9), 401);
}

/* A plain request that found the stock empty while both round slots were
 * busy waits in the queue; the refill that lands first answers it from the
 * stock, without a round of its own. */
static void test_stock_answers_queue(void **state)
{
	struct world *w = *state;
	struct keys t, ks;
	bool low;
	fill_stock(w, 0);
	for (int i = 0; i < 6; i++)
		assert_int_equal(take(w, 16, 64, &t, &low), 0);
	assert_true(low);
	/* Slot 1: the refill (96 keys). Slot 2: a request the stock cannot
	 * serve (an additional slave). */
	qkm_supply_flush(w->a.sup, w->now);
	struct qkm_etsi_key_request r = kreq(1, 64);
	r.n_additional = 1;
	snprintf(r.additional[0], sizeof(r.additional[0]), "sae-carol");
	qkm_supply_enc(w->a.sup, R(w, 1), "sae-alice", "sae-bob", &r, w->now);
	qkm_supply_flush(w->a.sup, w->now);
	assert_int_equal(q_count(&w->a.out, QKM_MSG_SUPPLY), 2);
	/* The front end empties the stock; the next plain request waits. */
	for (int i = 0; i < 2; i++)
		assert_int_equal(take(w, 16, 64, &t, &low), 0);
	assert_int_equal(stock_count(w), 0);
	enc(w, 2, "sae-alice", "sae-bob", 2, 64);
	qkm_supply_flush(w->a.sup, w->now);
	assert_int_equal(q_count(&w->a.out, QKM_MSG_SUPPLY), 2);
	assert_int_equal(n_replies(&w->a, R(w, 2)), 0);
	uint64_t offered = ksa_count(&w->a, QKM_KSA_OFFERED);
	/* B answers the refill: A stocks it and answers request 2 from it. */
	assert_true(pump_one(w, &w->a, &w->b));
	assert_true(pump_one(w, &w->b, &w->a));
	expect_enc(w, R(w, 2), 2, 64, &ks);
	/* That left 94 of 128, a quarter short: a refill of 34 goes out in
	 * the slot the first one freed. */
	assert_int_equal(ksa_count(&w->a, QKM_KSA_OFFERED), offered - 96 + 34);
	assert_int_equal(q_count(&w->a.out, QKM_MSG_SUPPLY), 2);
	for (int i = 0; i < 2; i++)
		assert_int_equal(ksa_state(&w->a, &ks.id[i], NULL), QKM_KSA_STOCKED);
	assert_int_equal(pump(w), 0);
	expect_enc(w, R(w, 1), 1, 64, &t);
	/* Request 2's keys are settled as the front end's are. */
	qkm_supply_flush(w->a.sup, w->now);
	for (int i = 0; i < 2; i++)
		assert_int_equal(ksa_state(&w->a, &ks.id[i], NULL), QKM_KSA_SUPPLIED);
	assert_int_equal(records_with(&w->a, "supplied", "from stock"), 128 + 2);
	assert_int_equal(pump(w), 0);
	dec(w, &w->b, 3, "sae-bob", "sae-alice", ks.id, 2);
	expect_dec(w, &w->b, R(w, 3), ks.id, 2);
	expect_no_offered(w);
	expect_pools_equal(w);
}

/* A node stops with keys in stock, some of them just taken: the stop
 * records the taken ones supplied; at the next start every key left
 * STOCKED is recorded SUPPLIED ("possibly"), since after a crash any may
 * have reached its master. None is offered again or cancelled, and B still
 * gives them to bob. */
static void test_stock_restart(void **state)
{
	struct world *w = *state;
	struct keys taken, ks;
	bool low;
	fill_stock(w, 0);
	assert_int_equal(take(w, 3, 64, &taken, &low), 0); /* reached alice; not settled */
	struct ids before;
	ksa_ids(&w->a, QKM_KSA_STOCKED, &before);
	assert_int_equal(before.n, STOCK_KEYS);
	/* B's copy of a key alice never took, to compare with later. */
	size_t other = 0;
	while (other < before.n && (qkm_id_eq(&before.id[other], &taken.id[0]) ||
				     qkm_id_eq(&before.id[other], &taken.id[1]) ||
				     qkm_id_eq(&before.id[other], &taken.id[2])))
		other++;
	struct qkm_ksa_key kb;
	assert_int_equal(qkm_store_ksa_get(w->b.st, &before.id[other], &kb, true), 0);
	assert_non_null(kb.data);
	uint8_t other_key[8];
	memcpy(other_key, kb.data->p, 8);
	qkm_secret_free(kb.data);

	restart_a(w);
	assert_int_equal(stock_count(w), 0);
	assert_int_equal(ksa_count(&w->a, QKM_KSA_STOCKED), 0);
	assert_int_equal(ksa_count(&w->a, QKM_KSA_SUPPLIED), 2 + STOCK_KEYS);
	assert_int_equal(records(&w->a, "supplied"), 2 + STOCK_KEYS);
	assert_int_equal(records_with(&w->a, "supplied", "possibly"), STOCK_KEYS - 3);
	for (size_t i = 0; i < before.n; i++) {
		uint64_t at = 0;
		assert_int_equal(ksa_state(&w->a, &before.id[i], &at), QKM_KSA_SUPPLIED);
		assert_true(at != 0);
	}
	/* The link up cancels nothing: B keeps them all. */
	assert_int_equal(pump(w), 0);
	assert_int_equal(ksa_count(&w->b, QKM_KSA_READY), 2 + STOCK_KEYS);
	assert_int_equal(records(&w->b, "deleted"), 0);
	expect_no_offered(w);
	expect_pools_equal(w);
	/* A second start changes nothing more. */
	restart_a(w);
	assert_int_equal(pump(w), 0);
	assert_int_equal(records(&w->a, "supplied"), 2 + STOCK_KEYS);

	dec(w, &w->b, 1, "sae-bob", "sae-alice", taken.id, 3);
	expect_dec(w, &w->b, R(w, 1), taken.id, 3);
	dec(w, &w->b, 2, "sae-bob", "sae-alice", &before.id[other], 1);
	parse_keys(expect_status(&w->b, R(w, 2), 200), &ks);
	assert_int_equal(ks.n, 1);
	assert_memory_equal(ks.k[0], other_key, 8);

	/* Never offered again: a new request and the new stock get fresh IDs
	 * and bytes past everything the old stock held. */
	enc(w, 3, "sae-alice", "sae-bob", 1, 64);
	qkm_supply_flush(w->a.sup, w->now);
	assert_int_equal(pump(w), 0);
	expect_enc(w, R(w, 3), 1, 64, &ks);
	assert_int_equal(w->seen[w->n_seen - 1].pos, (2 + STOCK_KEYS) * 8);
	assert_false(ids_has(&before, &ks.id[0]));
	/* Half of the 2024 bytes the request left: 126 keys. */
	assert_int_equal(stock_count(w), 126);
	struct keys fresh;
	assert_int_equal(take(w, 16, 64, &fresh, &low), 0);
	for (size_t i = 0; i < 16; i++) {
		assert_false(ids_has(&before, &fresh.id[i]));
		assert_true(w->seen[w->n_seen - 16 + i].pos >= (3 + STOCK_KEYS) * 8);
	}
	expect_pools_equal(w);
}

/* R-SUP-6: B refuses the round that carries the first refill (the SUPPLY
 * was corrupted on the way): the request fails, nothing is STOCKED, the
 * stock stays empty and A cancels the keys. A later flush refills. */
static void test_stock_refill_refused(void **state)
{
	struct world *w = *state;
	uint64_t a0 = enc_bytes(&w->a);
	w->fault = (struct fault){F_CORRUPT, QKM_MSG_SUPPLY, 0};
	enc(w, 0, "sae-alice", "sae-bob", 2, 64);
	qkm_supply_flush(w->a.sup, w->now);
	assert_true(pump_one(w, &w->a, &w->b));
	assert_true(w->fault.fired);
	assert_int_equal(ksa_count(&w->b, QKM_KSA_READY), 0);
	assert_int_equal(records(&w->b, "aborted"), 2 + STOCK_KEYS);
	assert_true(pump_one(w, &w->b, &w->a)); /* the refusal */
	assert_non_null(strstr(expect_status(&w->a, R(w, 0), 503), "digest mismatch"));
	assert_int_equal(stock_count(w), 0);
	assert_int_equal(ksa_count(&w->a, QKM_KSA_STOCKED), 0);
	assert_int_equal(ksa_count(&w->a, QKM_KSA_SUPPLIED), 0);
	assert_int_equal(q_count(&w->a.out, QKM_MSG_SUPPLY_CANCEL), 1);
	assert_int_equal(pump(w), 0);
	expect_no_offered(w);
	assert_int_equal(records(&w->a, "deleted"), 2 + STOCK_KEYS);
	assert_int_equal(enc_bytes(&w->a), a0 - (2 + STOCK_KEYS) * 8);
	expect_pools_equal(w);
	assert_int_equal(stock_count(w), 0);

	/* The refill is not stuck "under way": a flush after the pause
	 * (stock_pause in supply.c) refills; one within it does not. */
	qkm_supply_flush(w->a.sup, w->now + 999 * MS);
	assert_int_equal(w->a.out.n, 0);
	w->now += 1000 * MS;
	qkm_supply_flush(w->a.sup, w->now);
	assert_int_equal(q_count(&w->a.out, QKM_MSG_SUPPLY), 1);
	assert_int_equal(pump(w), 0);
	/* Half of the 2032 bytes left: 127 keys. */
	assert_int_equal(stock_count(w), 127);
	assert_int_equal(ksa_count(&w->a, QKM_KSA_STOCKED), 127);
	assert_int_equal(ksa_count(&w->b, QKM_KSA_READY), 127);
	expect_pools_equal(w);
	struct keys ks;
	bool low;
	assert_int_equal(take(w, 16, 64, &ks, &low), 0);
	dec(w, &w->b, 1, "sae-bob", "sae-alice", ks.id, 16);
	expect_dec(w, &w->b, R(w, 1), ks.id, 16);
}

/* The link drops with a refill in flight: the refill fails (the entry is
 * not left "under way"), its keys are cancelled at the next link up, and
 * the next flush refills. */
static void test_stock_refill_link_lost(void **state)
{
	struct world *w = *state;
	fill_stock(w, 0);
	struct keys ks[4];
	bool low;
	for (int i = 0; i < 4; i++)
		assert_int_equal(take(w, 16, 64, &ks[i], &low), 0);
	assert_true(low);
	qkm_supply_flush(w->a.sup, w->now);
	assert_int_equal(q_count(&w->a.out, QKM_MSG_SUPPLY), 1);
	link_down(w); /* the SUPPLY is lost with the connection */
	assert_int_equal(ksa_count(&w->a, QKM_KSA_OFFERED), 64);
	assert_int_equal(stock_count(w), STOCK_KEYS - 64);
	link_up(w);
	assert_int_equal(pump(w), 0);
	expect_no_offered(w);
	expect_pools_equal(w);
	assert_int_equal(ksa_count(&w->a, QKM_KSA_STOCKED), STOCK_KEYS - 64);
	qkm_supply_flush(w->a.sup, w->now);
	assert_int_equal(q_count(&w->a.out, QKM_MSG_SUPPLY), 1);
	assert_int_equal(pump(w), 0);
	assert_int_equal(stock_count(w), STOCK_KEYS);
	assert_int_equal(ksa_count(&w->a, QKM_KSA_STOCKED), STOCK_KEYS);
	expect_pools_equal(w);
	/* Keys taken before the link dropped are alice's and bob's still. */
	dec(w, &w->b, 1, "sae-bob", "sae-alice", ks[3].id, 16);
	expect_dec(w, &w->b, R(w, 1), ks[3].id, 16);
}

/* B refuses every round for alice -> bob (in its configuration alice is
 * no longer at A). Each refused round burns its key material on both
 * nodes, so a refused refill is tried again only after a pause that
 * doubles while B keeps refusing; retried at once, refills would drain the
 * shared pool half of it at a time. */
static void test_stock_refused_pause(void **state)
{
	struct world *w = *state;
	uint64_t a0 = enc_bytes(&w->a);
	assert_string_equal(w->b.node->saes[0].id, "sae-alice");
	snprintf(w->b.node->saes[0].node, sizeof(w->b.node->saes[0].node), "C");
	enc(w, 0, "sae-alice", "sae-bob", 2, 64);
	qkm_supply_flush(w->a.sup, w->now);
	assert_int_equal(pump(w), 0);
	assert_non_null(strstr(expect_status(&w->a, R(w, 0), 503), "not registered"));
	/* One round burnt (on both nodes), and no more. */
	assert_int_equal(enc_bytes(&w->a), a0 - (2 + STOCK_KEYS) * 8);
	expect_pools_equal(w);
	expect_no_offered(w);
	assert_int_equal(stock_count(w), 0);
	uint64_t t0 = w->now;
	qkm_supply_flush(w->a.sup, t0);
	qkm_supply_tick(w->a.sup, t0 + 999 * MS);
	assert_int_equal(w->a.out.n, 0);

	/* After a second: one refill, refused; then two seconds' pause. */
	uint64_t left = enc_bytes(&w->a);
	w->now = t0 + 1000 * MS;
	qkm_supply_tick(w->a.sup, w->now);
	assert_int_equal(q_count(&w->a.out, QKM_MSG_SUPPLY), 1);
	assert_int_equal(pump(w), 0);
	assert_int_equal(enc_bytes(&w->a), left - 127 * 8); /* half of what was left */
	left = enc_bytes(&w->a);
	qkm_supply_tick(w->a.sup, t0 + 2999 * MS);
	assert_int_equal(w->a.out.n, 0);
	w->now = t0 + 3000 * MS;
	qkm_supply_tick(w->a.sup, w->now);
	assert_int_equal(q_count(&w->a.out, QKM_MSG_SUPPLY), 1);
	assert_int_equal(pump(w), 0);
	assert_int_equal(enc_bytes(&w->a), left - 63 * 8);
	left = enc_bytes(&w->a);
	qkm_supply_tick(w->a.sup, t0 + 6999 * MS);
	assert_int_equal(w->a.out.n, 0);
	assert_int_equal(stock_count(w), 0);
	assert_int_equal(ksa_count(&w->a, QKM_KSA_STOCKED), 0);
	expect_pools_equal(w);

	/* B's configuration is put right: the next refill is stocked, and
	 * with the pause over, the refill that follows at once while the
	 * stock is under half its target is too: 32 keys (half of 512
	 * bytes), then 16 (half of the 256 left). */
	snprintf(w->b.node->saes[0].node, sizeof(w->b.node->saes[0].node), "A");
	w->now = t0 + 7000 * MS;
	qkm_supply_tick(w->a.sup, w->now);
	assert_int_equal(q_count(&w->a.out, QKM_MSG_SUPPLY), 1);
	assert_int_equal(pump(w), 0);
	assert_int_equal(stock_count(w), 48);
	assert_int_equal(ksa_count(&w->a, QKM_KSA_STOCKED), 48);
	assert_int_equal(enc_bytes(&w->a), 128);
	expect_pools_equal(w);
	struct keys ks;
	bool low;
	assert_int_equal(take(w, 16, 64, &ks, &low), 0);
	dec(w, &w->b, 1, "sae-bob", "sae-alice", ks.id, 16);
	expect_dec(w, &w->b, R(w, 1), ks.id, 16);
}

/* B does not answer a refill in time: the round is abandoned and
 * cancelled, the refill pauses like a refused one, then refills. */
static void test_stock_refill_timeout(void **state)
{
	struct world *w = *state;
	struct keys ks[4];
	bool low;
	fill_stock(w, 0);
	for (int i = 0; i < 4; i++)
		assert_int_equal(take(w, 16, 64, &ks[i], &low), 0);
	w->fault = (struct fault){F_DROP, QKM_MSG_SUPPLY_ACK, 0};
	qkm_supply_flush(w->a.sup, w->now);
	assert_int_equal(q_count(&w->a.out, QKM_MSG_SUPPLY), 1);
	assert_int_equal(pump(w), 0);
	assert_true(w->fault.fired);
	assert_int_equal(ksa_count(&w->b, QKM_KSA_READY), 2 + STOCK_KEYS + 64);
	w->now += w->a.cfg.round_timeout_ns;
	qkm_supply_tick(w->a.sup, w->now);
	assert_int_equal(q_count(&w->a.out, QKM_MSG_SUPPLY_CANCEL), 1);
	assert_int_equal(q_count(&w->a.out, QKM_MSG_SUPPLY), 0);
	assert_int_equal(pump(w), 0);
	expect_no_offered(w);
	expect_pools_equal(w);
	/* The cancelled keys never reached the stock; B dropped them. */
	assert_int_equal(ksa_count(&w->b, QKM_KSA_READY), 2 + STOCK_KEYS);
	assert_int_equal(stock_count(w), STOCK_KEYS - 64);
	assert_int_equal(ksa_count(&w->a, QKM_KSA_STOCKED), STOCK_KEYS - 64);
	qkm_supply_tick(w->a.sup, w->now + 999 * MS);
	assert_int_equal(w->a.out.n, 0);
	w->now += 1000 * MS;
	qkm_supply_tick(w->a.sup, w->now);
	assert_int_equal(q_count(&w->a.out, QKM_MSG_SUPPLY), 1);
	assert_int_equal(pump(w), 0);
	assert_int_equal(stock_count(w), STOCK_KEYS);
	assert_int_equal(ksa_count(&w->a, QKM_KSA_STOCKED), STOCK_KEYS);
	expect_pools_equal(w);
	for (int i = 0; i < 4; i++) {
		dec(w, &w->b, 1 + i, "sae-bob", "sae-alice", ks[i].id, 16);
		expect_dec(w, &w->b, R(w, 1 + i), ks[i].id, 16);
	}
}

/* Requests the pool can serve are served when the stock wants keys at the
 * same flush: a refill takes at most half of what is left once the
 * requests already waiting have theirs, never part of theirs. */
static void test_stock_leaves_room(void **state)
{
	struct world *w = *state;
	struct keys ks;
	uint64_t a0 = enc_bytes(&w->a);
	/* 2 x 16 keys of 512 bits: 2048 of the pool's 3072 bytes. */
	enc(w, 0, "sae-alice", "sae-bob", 16, 512);
	enc(w, 1, "sae-alice", "sae-bob", 16, 512);
	qkm_supply_flush(w->a.sup, w->now);
	assert_int_equal(pump(w), 0);
	expect_enc(w, R(w, 0), 16, 512, &ks);
	expect_enc(w, R(w, 1), 16, 512, &ks);
	/* 1024 bytes were left: room for 8 such keys, too few to stock. */
	assert_int_equal(enc_bytes(&w->a), a0 - 2048);
	assert_int_equal(stock_count(w), 0);
	expect_no_offered(w);
	expect_pools_equal(w);
	/* A small request of another size: its entry gets half of the rest
	 * after it (1016 / 2 bytes, 63 keys of 64 bits) in the request's
	 * round, then, still a quarter or more short of its target, half of
	 * what each round left (32, then 16 keys); each refill leaves half the
	 * pool to others. */
	enc(w, 2, "sae-alice", "sae-bob", 1, 64);
	qkm_supply_flush(w->a.sup, w->now);
	assert_int_equal(q_count(&w->a.out, QKM_MSG_SUPPLY), 1);
	assert_int_equal(ksa_count(&w->a, QKM_KSA_OFFERED), 1 + 63);
	assert_int_equal(pump(w), 0);
	expect_enc(w, R(w, 2), 1, 64, &ks);
	assert_int_equal(stock_count(w), 63 + 32 + 16);
	assert_int_equal(enc_bytes(&w->a), 1024 - 8 - 111 * 8);
	expect_pools_equal(w);
}

int main(void)
{
	if (qkm_secret_heap_init(1 << 26) != 0)
		return 1;
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_enc_dec, setup, teardown),
		cmocka_unit_test_setup_teardown(test_dec_group_commit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reverse, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sizes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_access, setup, teardown),
		cmocka_unit_test_setup_teardown(test_additional_slaves_delete, setup, teardown),
		cmocka_unit_test_setup_teardown(test_additional_slaves_preserve, setup_preserve,
						teardown),
		cmocka_unit_test_setup_teardown(test_digest_mismatch, setup, teardown),
		cmocka_unit_test_setup_teardown(test_digest_corrupted_in_transit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_batching, setup, teardown),
		cmocka_unit_test_setup_teardown(test_exhaustion, setup, teardown),
		cmocka_unit_test_setup_teardown(test_not_ready, setup, teardown),
		cmocka_unit_test_setup_teardown(test_peer_down_after_store, setup, teardown),
		cmocka_unit_test_setup_teardown(test_peer_down_supply_lost, setup, teardown),
		cmocka_unit_test_setup_teardown(test_lost_round_ends_block, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ack_lost_timeout, setup, teardown),
		cmocka_unit_test_setup_teardown(test_forget_in_flight, setup, teardown),
		cmocka_unit_test_setup_teardown(test_forget_two_in_flight, setup, teardown),

		cmocka_unit_test_setup_teardown(test_cancel_lost_resent, setup, teardown),
		cmocka_unit_test_setup_teardown(test_duplicated_supply, setup, teardown),
		cmocka_unit_test_setup_teardown(test_retention, setup, teardown),
		cmocka_unit_test_setup_teardown(test_protocol_violations, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stock_fill, setup_stock, teardown),
		cmocka_unit_test_setup_teardown(test_stock_settle_after_delete, setup_stock, teardown),
		cmocka_unit_test_setup_teardown(test_stock_forget_key_rows, setup_stock, teardown),
		cmocka_unit_test_setup_teardown(test_stock_take, setup_stock, teardown),
		cmocka_unit_test_setup_teardown(test_stock_answers_queue, setup_stock, teardown),
		cmocka_unit_test_setup_teardown(test_stock_restart, setup_stock, teardown),
		cmocka_unit_test_setup_teardown(test_stock_refill_refused, setup_stock, teardown),
		cmocka_unit_test_setup_teardown(test_stock_refill_link_lost, setup_stock, teardown),
		cmocka_unit_test_setup_teardown(test_stock_refused_pause, setup_stock, teardown),
		cmocka_unit_test_setup_teardown(test_stock_refill_timeout, setup_stock, teardown),
		cmocka_unit_test_setup_teardown(test_stock_leaves_room, setup_stock, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
