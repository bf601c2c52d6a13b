/* test_relay.c - key relay across trusted nodes (kma/relay.c): three nodes
 * A - B - C in a line, each with a real store and a relay state machine,
 * joined by in-memory frame queues the test can tamper with, drop, replay
 * and reorder. A relays keys to C through B. Nothing sleeps; time is
 * passed explicitly. R-REL-1..5, R-REL-8, R-LC-1. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/secret.h"
#include "kma/relay.h"
#include "proto/frame.h"
#include "store/store.h"

#define SEC 1000000000ull
#define T0 (1700000000ull * SEC)
#define BATCH 4096u                /* relayed key bytes per message */
#define LINK_BYTES (1u << 20)      /* link key per direction */

struct wire {
	int from, to;
	bool e2e;                      /* end to end (routed in real life) */
	uint8_t *p;
	size_t len;
};

struct net;
struct node {
	struct net *net;
	int i;
	struct qkm_node_cfg *cfg;
	struct qkm_store *st;
	struct qkm_relay *r;
	char path[PATH_MAX];
};

/* A ciphertext a node received (a RELAY frame's CT or an XOR share). */
struct seen_ct {
	int at;
	uint16_t type;
	uint8_t *p;
	size_t len;
};

struct net {
	struct node n[3];
	struct qkm_secret *lk[3][3];   /* link key bytes of direction [from][to] */
	struct seen_ct seen[256];
	size_t n_seen;
	struct wire *q;
	size_t nq, cap;
	uint64_t now;
	size_t peer_errors;            /* frames refused as protocol violations */
	int down_at;                   /* this node's links are down (-1: none) */
	/* Called when a node's end-to-end pool gained keys (ops.on_pool). */
	void (*on_pool)(struct node *n, const char *node);
	char dir[PATH_MAX];
};

static const char *const NAMES[3] = {"A", "B", "C"};

static int idx(const char *name)
{
	for (int i = 0; i < 3; i++)
		if (strcmp(NAMES[i], name) == 0)
			return i;
	fail_msg("unknown node %s", name);
	return -1;
}

static void push(struct net *net, int from, int to, bool e2e, const uint8_t *p, size_t len)
{
	if (net->nq == net->cap) {
		net->cap = net->cap ? 2 * net->cap : 16;
		net->q = realloc(net->q, net->cap * sizeof(*net->q));
		assert_non_null(net->q);
	}
	struct wire *w = &net->q[net->nq++];
	w->from = from;
	w->to = to;
	w->e2e = e2e;
	w->p = malloc(len);
	assert_non_null(w->p);
	memcpy(w->p, p, len);
	w->len = len;
}

static struct wire pop(struct net *net, size_t i)
{
	struct wire w = net->q[i];
	memmove(net->q + i, net->q + i + 1, (net->nq - i - 1) * sizeof(*net->q));
	net->nq--;
	return w;
}

static int op_send(const char *nb, const uint8_t *frame, size_t len, void *arg)
{
	struct node *n = arg;
	push(n->net, n->i, idx(nb), false, frame, len);
	return 0;
}

static int op_send_to(const char *node, const uint8_t *frame, size_t len, void *arg)
{
	struct node *n = arg;
	push(n->net, n->i, idx(node), true, frame, len);
	return 0;
}

static int op_send_direct(const char *node, const uint8_t *frame, size_t len, void *arg)
{
	struct node *n = arg;
	push(n->net, n->i, idx(node), true, frame, len);
	return 0;
}

static bool op_link_ready(const char *nb, void *arg)
{
	struct node *n = arg;
	return n->i != n->net->down_at;
}

static void op_on_pool(const char *node, void *arg)
{
	struct node *n = arg;
	if (n->net->on_pool)
		n->net->on_pool(n, node);
}

static void deliver(struct net *net, struct wire *w)
{
	struct qkm_frame f;
	struct node *to = &net->n[w->to];
	int rc = qkm_frame_parse(w->p, w->len, &f);
	const uint8_t *ct;
	uint32_t ctl;
	if (!rc && (f.type == QKM_MSG_RELAY || f.type == QKM_MSG_XOR_SHARE) &&
	    !qkm_tlv_bytes(f.body, f.body_len, QKM_T_CT, &ct, &ctl) && net->n_seen < 256) {
		struct seen_ct *sc = &net->seen[net->n_seen++];
		sc->at = w->to;
		sc->type = f.type;
		sc->p = malloc(ctl);
		assert_non_null(sc->p);
		memcpy(sc->p, ct, ctl);
		sc->len = ctl;
	}
	/* As kma_io.c dispatches: RELAY is a hop, the rest end to end. */
	if (!rc)
		rc = f.type == QKM_MSG_RELAY ? qkm_relay_on_hop(to->r, NAMES[w->from], &f, net->now)
					     : qkm_relay_on_frame(to->r, NAMES[w->from], &f, net->now);
	if (rc == QKM_EPEER || rc == QKM_EFORMAT || rc == QKM_ETRUNC || rc == QKM_EVERSION)
		net->peer_errors++; /* in real life: the link drops */
	else
		assert_int_equal(rc, 0);
	free(w->p);
}

/* Delivers everything queued, in order, until the queues are empty. As a
 * node does with the frames of one read, consecutive frames to one node
 * are handled in one group commit (what they send is held back until it
 * ends); deliver() alone handles one frame with its own commit. */
static void pump(struct net *net)
{
	while (net->nq) {
		struct wire w = pop(net, 0);
		struct qkm_relay *to = net->n[w.to].r;
		qkm_relay_begin_batch(to);
		deliver(net, &w);
		if (!net->nq || net->q[0].to != w.to)
			qkm_relay_end_batch(to);
	}
}

static struct qkm_id batch_id(uint8_t tag)
{
	struct qkm_id id;
	assert_int_equal(qkm_id_random(&id), 0);
	id.b[0] = tag;
	memset(id.b + 12, 0, 4);
	return id;
}

/* One direction of a QKD link pool: the same random bytes at both ends,
 * ENC at the sender, DEC at the receiver, in blocks of up to 2 KiB as
 * acquisition stores them (so a relay spans several blocks). */
#define LINK_BLOCK 2048u
static void link_dir(struct net *net, int from, int to, uint32_t bytes)
{
	struct qkm_secret *data = qkm_secret_new(bytes);
	assert_non_null(data);
	assert_int_equal(qkm_id_random((struct qkm_id *)data->p), 0);
	for (uint32_t i = 16; i < bytes; i++)
		data->p[i] = (uint8_t)(data->p[i % 16] * 31 + i * 7 + (i >> 8));
	assert_int_equal(qkm_store_begin(net->n[from].st), 0);
	assert_int_equal(qkm_store_begin(net->n[to].st), 0);
	for (uint32_t off = 0; off < bytes; off += LINK_BLOCK) {
		uint32_t len = bytes - off < LINK_BLOCK ? bytes - off : LINK_BLOCK;
		struct qkm_id id = batch_id(0x10 + (uint8_t)from);
		for (int side = 0; side < 2; side++) {
			struct node *n = &net->n[side ? to : from];
			struct qkm_block b;
			memset(&b, 0, sizeof(b));
			snprintf(b.peer, sizeof(b.peer), "%s", NAMES[side ? from : to]);
			b.pool_kind = QKM_POOL_LINK;
			b.batch_id = id;
			b.count = len / 32;
			b.unit_bytes = 32;
			b.key_type = side ? QKM_KT_DEC : QKM_KT_ENC;
			b.state = QKM_BLOCK_READY;
			b.level = QKM_BLOCK_ITS;
			b.created_ns = net->now + off;
			b.data = qkm_secret_dup(data->p + off, len);
			assert_non_null(b.data);
			assert_int_equal(qkm_store_block_put(n->st, &b), 0);
			qkm_secret_free(b.data);
		}
	}
	assert_int_equal(qkm_store_commit(net->n[from].st), 0);
	assert_int_equal(qkm_store_commit(net->n[to].st), 0);
	qkm_secret_free(net->lk[from][to]); /* more of it: the test keeps the last */
	net->lk[from][to] = data;
}

static void route(struct qkm_node_cfg *c, const char *to, const char *a, const char *b,
		  const char *d)
{
	struct qkm_node_route *r = &c->routes[c->n_routes++];
	snprintf(r->to, sizeof(r->to), "%s", to);
	r->n = 3;
	snprintf(r->path[0], QKM_NAME_MAX, "%s", a);
	snprintf(r->path[1], QKM_NAME_MAX, "%s", b);
	snprintf(r->path[2], QKM_NAME_MAX, "%s", d);
}

static void node_start(struct net *net, int i)
{
	struct node *n = &net->n[i];
	struct qkm_relay_ops ops = {op_send, op_send_direct, op_send_to, op_link_ready, op_on_pool,
				    n};
	assert_int_equal(qkm_store_open(n->path, &n->st), 0);
	n->r = qkm_relay_new(n->cfg, n->st, &ops);
	assert_non_null(n->r);
}

static void node_stop(struct net *net, int i)
{
	qkm_relay_free(net->n[i].r);
	qkm_store_close(net->n[i].st);
	net->n[i].r = NULL;
	net->n[i].st = NULL;
}

/* The line A - B - C; A and C each have an SAE; B relays only. Each
 * direction of each link holds link_bytes of link key (B -> C: bc_bytes). */
static struct net *net_new_sized(const char *name, bool rng, bool fallback, uint32_t bc_bytes,
				 uint32_t link_bytes)
{
	struct net *net = calloc(1, sizeof(*net));
	assert_non_null(net);
	net->now = T0;
	net->down_at = -1;
	const char *tmp = getenv("QKM_TEST_TMP");
	if (!tmp || !*tmp)
		tmp = "/tmp";
	assert_true(mkdir(tmp, 0700) == 0 || errno == EEXIST);
	snprintf(net->dir, sizeof(net->dir), "%s/relay-%s-XXXXXX", tmp, name);
	assert_non_null(mkdtemp(net->dir));
	for (int i = 0; i < 3; i++) {
		struct node *n = &net->n[i];
		n->net = net;
		n->i = i;
		n->cfg = calloc(1, sizeof(*n->cfg));
		assert_non_null(n->cfg);
		struct qkm_node_cfg *c = n->cfg;
		snprintf(c->id, sizeof(c->id), "%s", NAMES[i]);
		c->ksa = i != 1;
		snprintf(c->relay.mode, sizeof(c->relay.mode), "otp");
		qkm_relay_defaults(&c->relay);
		c->relay.rng = rng;
		c->relay.aes_fallback = fallback;
		c->relay.batch_bytes = BATCH;
		/* No relays ahead of demand unless a test asks (test_relay_ahead). */
		c->relay.low_bytes = 0;
		c->relay.high_bytes = 0;
		c->n_saes = 2;
		snprintf(c->saes[0].id, QKM_NAME_MAX, "sae-a");
		snprintf(c->saes[0].node, QKM_NAME_MAX, "A");
		snprintf(c->saes[1].id, QKM_NAME_MAX, "sae-c");
		snprintf(c->saes[1].node, QKM_NAME_MAX, "C");
		snprintf(n->path, sizeof(n->path), "%s/%s.db", net->dir, NAMES[i]);
	}
	/* Links: A-B and B-C. */
	snprintf(net->n[0].cfg->links[0].peer, QKM_NAME_MAX, "B");
	net->n[0].cfg->n_links = 1;
	snprintf(net->n[1].cfg->links[0].peer, QKM_NAME_MAX, "A");
	snprintf(net->n[1].cfg->links[1].peer, QKM_NAME_MAX, "C");
	net->n[1].cfg->n_links = 2;
	snprintf(net->n[2].cfg->links[0].peer, QKM_NAME_MAX, "B");
	net->n[2].cfg->n_links = 1;
	route(net->n[0].cfg, "C", "A", "B", "C");
	route(net->n[2].cfg, "A", "C", "B", "A");
	for (int i = 0; i < 3; i++)
		node_start(net, i);
	link_dir(net, 0, 1, link_bytes);
	link_dir(net, 1, 0, link_bytes);
	link_dir(net, 1, 2, bc_bytes);
	link_dir(net, 2, 1, link_bytes);
	return net;
}

static struct net *net_new(const char *name, bool rng, bool fallback, uint32_t bc_bytes)
{
	return net_new_sized(name, rng, fallback, bc_bytes, LINK_BYTES);
}

/* Switches every node to a clause 9 relay mode (central: the combiner). */
static void net_mode(struct net *net, const char *mode, const char *central)
{
	for (int i = 0; i < 3; i++) {
		struct qkm_node_cfg *c = net->n[i].cfg;
		snprintf(c->relay.mode, sizeof(c->relay.mode), "%s", mode);
		snprintf(c->relay.central, sizeof(c->relay.central), "%s", central ? central : "");
		c->relay.rng = true;
	}
}

static void net_free(struct net *net)
{
	for (int i = 0; i < 3; i++) {
		node_stop(net, i);
		(void)qkm_store_remove(net->n[i].path);
		free(net->n[i].cfg);
	}
	for (size_t i = 0; i < net->nq; i++)
		free(net->q[i].p);
	for (size_t i = 0; i < net->n_seen; i++)
		free(net->seen[i].p);
	for (int i = 0; i < 3; i++)
		for (int j = 0; j < 3; j++)
			qkm_secret_free(net->lk[i][j]);
	free(net->q);
	rmdir(net->dir);
	free(net);
}

/* ---- what the stores hold ------------------------------------------------ */

struct held {
	size_t n;
	struct qkm_id batch[64];
	enum qkm_block_state state[64];
	enum qkm_block_level level[64];
	uint8_t data[64][BATCH];
};

static int collect(struct qkm_block *b, void *arg)
{
	struct held *h = arg;
	if (b->pool_kind != QKM_POOL_RELAY)
		return 0;
	assert_true(h->n < 64);
	assert_int_equal(b->count * b->unit_bytes, BATCH);
	h->batch[h->n] = b->batch_id;
	h->state[h->n] = b->state;
	h->level[h->n] = b->level;
	memcpy(h->data[h->n], b->data->p, BATCH);
	h->n++;
	return 0;
}

static void relay_pool(struct net *net, int at, int peer, struct held *h)
{
	memset(h, 0, sizeof(*h));
	assert_int_equal(qkm_store_blocks(net->n[at].st, NAMES[peer], 0, true, collect, h), 0);
}

static const uint8_t *find(const struct held *h, const struct qkm_id *b)
{
	for (size_t i = 0; i < h->n; i++)
		if (qkm_id_eq(&h->batch[i], b))
			return h->data[i];
	return NULL;
}

/* The invariant after every scenario: every key C holds from A, A holds
 * READY with the same bytes, and the other way round (no key at one end
 * only, no wrong key). Returns how many keys they share. */
static size_t check_pair(struct net *net)
{
	struct held *a = malloc(sizeof(*a)), *c = malloc(sizeof(*c));
	assert_non_null(a);
	assert_non_null(c);
	relay_pool(net, 0, 2, a);
	relay_pool(net, 2, 0, c);
	for (size_t i = 0; i < c->n; i++) {
		const uint8_t *x = find(a, &c->batch[i]);
		assert_non_null(x);
		assert_memory_equal(x, c->data[i], BATCH);
		assert_int_equal(c->state[i], QKM_BLOCK_READY);
	}
	size_t ready = 0;
	for (size_t i = 0; i < a->n; i++) {
		if (a->state[i] != QKM_BLOCK_READY)
			continue;
		ready++;
		assert_non_null(find(c, &a->batch[i]));
	}
	size_t n = c->n;
	assert_int_equal(ready, n);
	free(a);
	free(c);
	return n;
}

/* Both ends of each QKD link consumed the same link key: what the sender
 * has left of its direction, the receiver has left of its copy (no key
 * consumed at one end only; pair-check would flag it). */
static void assert_links_consistent(struct net *net)
{
	for (int a = 0; a < 3; a++)
		for (int b = 0; b < 3; b++) {
			if (!net->lk[a][b])
				continue;
			struct qkm_pool_stats sa, sb;
			assert_int_equal(qkm_store_pool_stats(net->n[a].st, NAMES[b], &sa), 0);
			assert_int_equal(qkm_store_pool_stats(net->n[b].st, NAMES[a], &sb), 0);
			assert_int_equal(sa.enc_bytes, sb.dec_bytes);
		}
}

static size_t pending_at_a(struct net *net)
{
	struct held *a = malloc(sizeof(*a));
	assert_non_null(a);
	relay_pool(net, 0, 2, a);
	size_t n = 0;
	for (size_t i = 0; i < a->n; i++)
		n += a->state[i] == QKM_BLOCK_PENDING;
	free(a);
	return n;
}

/* Settles what is in flight: time passes, A asks, C answers. */
static void settle(struct net *net)
{
	pump(net);
	net->now += 6 * SEC;
	qkm_relay_tick(net->n[0].r, net->now);
	pump(net);
}

struct rec_find {
	const char *event, *needle;
	int found;
};

static int rec_cb(const struct qkm_lc_event *ev, void *arg)
{
	struct rec_find *f = arg;
	if (strcmp(ev->event, f->event) == 0 && (!f->needle || strstr(ev->detail, f->needle)))
		f->found++;
	return 0;
}

static int records(struct net *net, int at, const char *event, const char *needle)
{
	struct rec_find f = {event, needle, 0};
	assert_int_equal(qkm_store_records(net->n[at].st, 0, 0, rec_cb, &f), 0);
	return f.found;
}

/* ---- tests ------------------------------------------------------------- */

/* R-REL-1, R-REL-2: A's key reaches C through B, identical, READY at both
 * ends, and the metadata lists both hops. */
static void test_relay_line(void **state)
{
	(void)state;
	struct net *net = net_new("line", false, false, LINK_BYTES);
	assert_int_equal(qkm_relay_want(net->n[0].r, "C", 3 * BATCH, net->now), 0);
	pump(net);
	assert_int_equal(check_pair(net), 3);
	assert_int_equal(pending_at_a(net), 0);
	assert_links_consistent(net);
	assert_int_equal(records(net, 2, "relay-received", "A>B otp"), 3);
	assert_int_equal(records(net, 2, "relay-received", "B>C otp"), 3);
	assert_int_equal(records(net, 1, "relay-forwarded", NULL), 3);
	assert_int_equal(records(net, 0, "relay-confirmed", NULL), 3);
	struct qkm_relay_stats st;
	qkm_relay_stats(net->n[0].r, &st);
	assert_int_equal(st.relayed_bytes, 3 * BATCH);
	assert_int_equal(st.in_flight, 0);
	/* Key efficiency (link key by reference on the first hop): link key
	 * consumed on A-B = key data + MAC key + encrypted metadata. */
	struct qkm_pool_stats ps;
	assert_int_equal(qkm_store_pool_stats(net->n[0].st, "B", &ps), 0);
	uint64_t spent = LINK_BYTES - ps.enc_bytes;
	assert_true(spent > 3 * BATCH && spent < 3 * BATCH * 105 / 100);
	/* B never stored the relayed key. */
	struct held *h = malloc(sizeof(*h));
	relay_pool(net, 1, 0, h);
	assert_int_equal(h->n, 0);
	relay_pool(net, 1, 2, h);
	assert_int_equal(h->n, 0);
	free(h);
	net_free(net);
}

/* Frames of A's still queued on the wire to B, of one type. */
static size_t queued_to(const struct net *net, int from, int to, uint16_t type)
{
	size_t n = 0;
	for (size_t i = 0; i < net->nq; i++) {
		struct qkm_frame f;
		if (net->q[i].from == from && net->q[i].to == to &&
		    qkm_frame_parse(net->q[i].p, net->q[i].len, &f) == 0 && f.type == type)
			n++;
	}
	return n;
}

static void want_one_more(struct node *n, const char *node)
{
	n->net->on_pool = NULL; /* once */
	assert_int_equal(qkm_relay_want(n->r, node, 2 * BATCH, n->net->now), 0);
}

/* Everything up to the RELAY_ACK that reaches A, which is returned. */
static struct wire until_ack_at_a(struct net *net)
{
	for (;;) {
		assert_true(net->nq > 0);
		struct qkm_frame f;
		assert_int_equal(qkm_frame_parse(net->q[0].p, net->q[0].len, &f), 0);
		if (net->q[0].to == 0 && f.type == QKM_MSG_RELAY_ACK)
			return pop(net, 0);
		struct wire w = pop(net, 0);
		qkm_relay_begin_batch(net->n[w.to].r);
		deliver(net, &w);
		qkm_relay_end_batch(net->n[w.to].r);
	}
}

/* A relay A -> C, its RELAY_ACK handled at A inside a group commit (READY,
 * not committed yet), with the pool event set to ask for one more. */
static struct net *confirmed_in_batch(const char *name)
{
	struct net *net = net_new(name, false, false, LINK_BYTES);
	assert_int_equal(qkm_relay_want(net->n[0].r, "C", BATCH, net->now), 0);
	struct wire ack = until_ack_at_a(net);
	assert_int_equal(net->nq, 0);
	net->on_pool = want_one_more;
	qkm_relay_begin_batch(net->n[0].r);
	deliver(net, &ack);
	return net;
}

/* The relays the pool event started are on the wire: they go through, and
 * the ends hold them all. */
static void finish_more(struct net *net)
{
	size_t more = queued_to(net, 0, 1, QKM_MSG_RELAY);
	assert_true(more >= 1);
	pump(net);
	assert_int_equal(check_pair(net), 1 + more);
	assert_links_consistent(net);
	net_free(net);
}

/* R-REL-1: a relay started while a group commit's frames are being sent
 * (supply, told the end-to-end pool grew, asks for more) leaves when its
 * own transaction is committed: not with the frames of the one that was
 * (before it is durable), and not never (the list being drained took it
 * behind its last frame, already freed: lost, until 2026-11-27). Here the
 * group commit ends in the middle of a batch, as when supply's or
 * acquisition's qkm_store_begin ends it; the relay started from the pool
 * event opens a group commit of its own. */
static void test_relay_sent_after_own_commit(void **state)
{
	(void)state;
	struct net *net = confirmed_in_batch("own-commit");
	assert_true(qkm_store_in_deferred(net->n[0].st));
	assert_int_equal(qkm_store_end_deferred(net->n[0].st), 0); /* mid-batch */
	assert_null(net->on_pool); /* the pool event came, and asked for one more */
	/* That relay's link key is used in a transaction not yet committed:
	 * its RELAY must not be on the wire. */
	assert_true(qkm_store_in_deferred(net->n[0].st));
	assert_int_equal(queued_to(net, 0, 1, QKM_MSG_RELAY), 0);
	qkm_relay_end_batch(net->n[0].r);
	assert_false(qkm_store_in_deferred(net->n[0].st));
	finish_more(net);
}

/* The same, with the group commit ended as supply and acquisition end it:
 * by their own qkm_store_begin. The relay the pool event started has a
 * group commit of its own open by then; begin commits that one too (its
 * RELAY leaves) and then opens the caller's transaction, where it returned
 * QKM_ESTATE until 2026-11-27. */
static void test_relay_store_begin_after_pool_event(void **state)
{
	(void)state;
	struct net *net = confirmed_in_batch("begin");
	struct qkm_store *st = net->n[0].st;
	assert_int_equal(qkm_store_begin(st), 0);
	assert_null(net->on_pool);
	assert_false(qkm_store_in_deferred(st));
	assert_true(queued_to(net, 0, 1, QKM_MSG_RELAY) >= 1); /* committed, so sent */
	assert_int_equal(qkm_store_counter_add(st, "hook", 1), 0);
	assert_int_equal(qkm_store_commit(st), 0);
	qkm_relay_end_batch(net->n[0].r);
	finish_more(net);
}

/* R-REL-3: keys from the RNG; every hop OTP-encrypts the whole file. */
static void test_relay_rng(void **state)
{
	(void)state;
	struct net *net = net_new("rng", true, false, LINK_BYTES);
	assert_int_equal(qkm_relay_want(net->n[0].r, "C", BATCH, net->now), 0);
	pump(net);
	assert_int_equal(check_pair(net), 1);
	assert_links_consistent(net);
	assert_int_equal(records(net, 0, "relay-sent", "RNG"), 1);
	net_free(net);
}

/* Ahead of demand: the tick fills the pool to high_bytes. */
static void test_relay_ahead(void **state)
{
	(void)state;
	struct net *net = net_new("ahead", false, false, LINK_BYTES);
	for (int i = 0; i < 3; i++) {
		net->n[i].cfg->relay.low_bytes = 2 * BATCH;
		net->n[i].cfg->relay.high_bytes = 4 * BATCH;
	}
	qkm_relay_tick(net->n[0].r, net->now);
	pump(net);
	assert_int_equal(check_pair(net), 4);
	/* Above low_bytes: nothing more. */
	net->now += SEC;
	qkm_relay_tick(net->n[0].r, net->now);
	pump(net);
	assert_int_equal(check_pair(net), 4);
	/* C (a KSA node too) relays its own direction toward A. */
	qkm_relay_tick(net->n[2].r, net->now);
	pump(net);
	struct held *h = malloc(sizeof(*h));
	relay_pool(net, 0, 2, h);
	assert_int_equal(h->n, 8);
	free(h);
	assert_links_consistent(net);
	net_free(net);
}

/* Ahead of demand only toward a pool some application can draw from: an
 * SAE at each end. With A's only SAE moved to C, A relays nothing. */
static void test_relay_ahead_needs_saes(void **state)
{
	(void)state;
	struct net *net = net_new("nosae", false, false, LINK_BYTES);
	struct qkm_node_cfg *c = net->n[0].cfg;
	snprintf(c->saes[0].node, QKM_NAME_MAX, "C");
	c->relay.low_bytes = 2 * BATCH;
	c->relay.high_bytes = 4 * BATCH;
	node_stop(net, 0);
	node_start(net, 0);
	qkm_relay_tick(net->n[0].r, net->now);
	assert_int_equal(net->nq, 0);
	assert_int_equal(records(net, 0, "relay-sent", NULL), 0);
	net_free(net);
}

/* A relay refused further on (B cannot pass it on) is settled by query
 * and starts a back-off, which demand waits out, with the reason; a relay
 * started after it that goes through ends both. A relay that cannot even
 * start here (first hop down) spends nothing and backs nothing off. */
static void test_relay_backoff_after_failure(void **state)
{
	(void)state;
	struct net *net = net_new("backoff", false, false, LINK_BYTES);
	assert_int_equal(qkm_relay_want(net->n[0].r, "C", BATCH, net->now), 0);
	pump(net);
	assert_int_equal(check_pair(net), 1);
	/* First hop down: refused here, no back-off. */
	net->down_at = 0;
	assert_int_equal(qkm_relay_want(net->n[0].r, "C", BATCH, net->now), QKM_ESTATE);
	net->down_at = -1;
	assert_int_equal(qkm_relay_want(net->n[0].r, "C", BATCH, net->now), 0);
	pump(net);
	assert_int_equal(check_pair(net), 2);
	/* B's hop to C down: B refuses, A asks at once, C does not hold it. */
	net->down_at = 1;
	assert_int_equal(qkm_relay_want(net->n[0].r, "C", BATCH, net->now), 0);
	pump(net);
	qkm_relay_tick(net->n[0].r, net->now);
	pump(net);
	net->down_at = -1;
	assert_int_equal(pending_at_a(net), 0);
	assert_int_equal(check_pair(net), 2);
	/* Within the back-off, demand is refused, with the reason. */
	assert_int_equal(qkm_relay_want(net->n[0].r, "C", BATCH, net->now), QKM_ENOKEY);
	assert_non_null(strstr(qkm_relay_why(net->n[0].r, "C"), "hop B-C is down"));
	assert_int_equal(net->nq, 0);
	/* After it, a relay goes through: back-off and reason are over. */
	net->now += 2 * SEC;
	assert_int_equal(qkm_relay_want(net->n[0].r, "C", BATCH, net->now), 0);
	pump(net);
	assert_int_equal(check_pair(net), 3);
	assert_string_equal(qkm_relay_why(net->n[0].r, "C"), "");
	net_free(net);
}

/* R-REL-5: a bit flipped anywhere in the B->C hop frame: the relay is
 * discarded (or the frame breaks the protocol: the link drops), never a
 * wrong key stored; A's copy is deleted once it learns. */
static void test_relay_tamper(void **state)
{
	(void)state;
	struct net *net = net_new("tamper", false, false, LINK_BYTES);
	size_t refused = 0, positions = 0;
	for (size_t pos = 0;; pos += 31) {
		net->now += 31 * SEC; /* past the back-off the last failure started */
		assert_int_equal(qkm_relay_want(net->n[0].r, "C", BATCH, net->now), 0);
		/* A -> B */
		struct wire w = pop(net, 0);
		deliver(net, &w);
		/* B -> C: flip one bit */
		assert_int_equal(net->nq, 1);
		assert_false(net->q[0].e2e);
		if (pos >= net->q[0].len) {
			pump(net);
			break;
		}
		net->q[0].p[pos] ^= (uint8_t)(1u << (pos % 8));
		positions++;
		size_t before = records(net, 2, "relay-refused", NULL) + net->peer_errors;
		pump(net);
		refused += records(net, 2, "relay-refused", NULL) + net->peer_errors > before;
		settle(net);
		check_pair(net);
		assert_int_equal(pending_at_a(net), 0);
	}
	/* Every flip was caught: only the untampered last relay arrived. */
	assert_int_equal(refused, positions);
	assert_int_equal(check_pair(net), 1);
	assert_true(records(net, 0, "relay-aborted", NULL) > 0);
	net_free(net);
}

/* Replay and reorder on a hop: the second copy's link key is used up, the
 * out-of-order frame's too; never a key twice or a wrong key. */
static void test_relay_replay_reorder(void **state)
{
	(void)state;
	struct net *net = net_new("replay", false, false, LINK_BYTES);
	assert_int_equal(qkm_relay_want(net->n[0].r, "C", BATCH, net->now), 0);
	struct wire w = pop(net, 0);
	push(net, w.from, w.to, w.e2e, w.p, w.len); /* the copy, delivered later */
	deliver(net, &w);
	pump(net);
	assert_int_equal(check_pair(net), 1);
	assert_int_equal(records(net, 1, "relay-refused", "not available"), 1);
	/* Replay of the last B->C frame at C. */
	assert_int_equal(qkm_relay_want(net->n[0].r, "C", BATCH, net->now), 0);
	w = pop(net, 0);
	deliver(net, &w);
	push(net, net->q[0].from, net->q[0].to, false, net->q[0].p, net->q[0].len);
	pump(net);
	assert_int_equal(check_pair(net), 2);
	assert_int_equal(records(net, 2, "relay-refused", NULL), 1);
	/* Reorder: two relays, A->B frames swapped. */
	assert_int_equal(qkm_relay_want(net->n[0].r, "C", 2 * BATCH, net->now), 0);
	assert_int_equal(net->nq, 2);
	struct wire first = pop(net, 0);
	struct wire second = pop(net, 0);
	deliver(net, &second);
	deliver(net, &first);
	settle(net);
	assert_int_equal(check_pair(net), 3);
	assert_int_equal(pending_at_a(net), 0);
	net_free(net);
}

/* A hop frame lost: A asks after 5 s, C says it does not hold it (and will
 * refuse it from now on), A deletes its copy; the frame arriving late is
 * refused as stale. */
static void test_relay_lost_then_late(void **state)
{
	(void)state;
	struct net *net = net_new("lost", false, false, LINK_BYTES);
	assert_int_equal(qkm_relay_want(net->n[0].r, "C", BATCH, net->now), 0);
	struct wire w = pop(net, 0);
	deliver(net, &w);
	struct wire late = pop(net, 0); /* B -> C, held back */
	assert_int_equal(pending_at_a(net), 1);
	settle(net);
	assert_int_equal(pending_at_a(net), 0);
	assert_int_equal(check_pair(net), 0);
	push(net, late.from, late.to, late.e2e, late.p, late.len);
	free(late.p);
	pump(net);
	assert_int_equal(check_pair(net), 0);
	assert_int_equal(records(net, 2, "relay-refused", "stale or replayed"), 1);
	net_free(net);
}

/* The origin crashes after sending: at restart its PENDING copy is asked
 * about and made READY, as C stored it. */
static void test_relay_origin_restart(void **state)
{
	(void)state;
	struct net *net = net_new("restart", false, false, LINK_BYTES);
	assert_int_equal(qkm_relay_want(net->n[0].r, "C", BATCH, net->now), 0);
	struct wire w = pop(net, 0);
	deliver(net, &w);
	w = pop(net, 0);
	deliver(net, &w); /* C stores, acknowledges... */
	assert_int_equal(net->nq, 1);
	w = pop(net, 0); /* ...and the acknowledgement is lost with A */
	free(w.p);
	node_stop(net, 0);
	node_start(net, 0);
	assert_int_equal(pending_at_a(net), 1);
	qkm_relay_tick(net->n[0].r, net->now);
	pump(net);
	assert_int_equal(pending_at_a(net), 0);
	assert_int_equal(check_pair(net), 1);
	net_free(net);
}

/* R-REL-4: hop B-C out of link key. Policy otp: refused, naming the hop,
 * after waiting relay.hold_s (10 s) at B, or at once with hold_s 0. With
 * the fallback: AES-256-GCM on that hop, key computational. */
static void test_relay_starved(void **state)
{
	(void)state;
	struct net *net = net_new("starved", false, false, 1024);
	struct qkm_relay *a = net->n[0].r, *b = net->n[1].r;
	assert_int_equal(qkm_relay_want(a, "C", BATCH, net->now), 0);
	pump(net);
	/* B's hop to C lacks the key: the relay waits there, A hears so. */
	assert_int_equal(pending_at_a(net), 1);
	assert_non_null(strstr(qkm_relay_why(a, "C"), "held at B: hop B-C is out of link key"));
	/* It waits up to 10 s, A hearing every 2 s, so A does not ask C
	 * (which would make the relay stale there) and starts no more. */
	for (int i = 0; i < 4; i++) {
		net->now += 2 * SEC;
		qkm_relay_tick(b, net->now);
		pump(net);
		qkm_relay_tick(a, net->now);
		assert_int_equal(qkm_relay_want(a, "C", BATCH, net->now), 0);
		assert_int_equal(net->nq, 0);
		assert_int_equal(pending_at_a(net), 1);
	}
	/* Then B gives up: refused, and the link key A spent is burned at B. */
	net->now += 2 * SEC;
	qkm_relay_tick(b, net->now);
	settle(net);
	assert_int_equal(check_pair(net), 0);
	assert_int_equal(pending_at_a(net), 0);
	assert_non_null(strstr(qkm_relay_why(a, "C"), "hop B-C is out of link key"));
	assert_int_equal(records(net, 1, "relay-refused", "hop B-C is out of link key"), 1);
	assert_links_consistent(net); /* B burned what A spent on the refused relay */
	struct qkm_relay_stats st;
	qkm_relay_stats(b, &st);
	assert_int_equal(st.held, 1);
	net_free(net);

	net = net_new("fallback", false, true, 1024);
	assert_int_equal(qkm_relay_want(net->n[0].r, "C", BATCH, net->now), 0);
	pump(net);
	assert_int_equal(check_pair(net), 1);
	struct held *h = malloc(sizeof(*h));
	relay_pool(net, 2, 0, h);
	assert_int_equal(h->level[0], QKM_BLOCK_COMPUTATIONAL);
	relay_pool(net, 0, 2, h);
	assert_int_equal(h->level[0], QKM_BLOCK_COMPUTATIONAL);
	free(h);
	assert_int_equal(records(net, 2, "relay-received", "B>C aes-256-gcm"), 1);
	assert_int_equal(records(net, 2, "relay-received", "A>B otp"), 1);
	net_free(net);

	/* relay.hold_s 0 at B: nothing waits there; refused at once. */
	net = net_new("nohold", false, false, 1024);
	a = net->n[0].r;
	b = net->n[1].r;
	net->n[1].cfg->relay.hold_s = 0;
	assert_int_equal(qkm_relay_want(a, "C", BATCH, net->now), 0);
	settle(net);
	assert_int_equal(check_pair(net), 0);
	assert_int_equal(pending_at_a(net), 0);
	assert_int_equal(records(net, 1, "relay-refused", "hop B-C is out of link key"), 1);
	assert_links_consistent(net);
	qkm_relay_stats(b, &st);
	assert_int_equal(st.held, 0);
	net_free(net);
}

/* Relays that wait at B for link key toward C go on, in the order they
 * came, as soon as the hop has it: no link key spent for nothing, none
 * refused; A's second relay waits behind the first (it names later link
 * key from A: handled first, it would burn the first one's). */
static void test_relay_waits_for_key(void **state)
{
	(void)state;
	struct net *net = net_new("waits", false, false, 1024);
	struct qkm_relay *a = net->n[0].r, *b = net->n[1].r;
	assert_int_equal(qkm_relay_want(a, "C", 2 * BATCH, net->now), 0);
	pump(net);
	assert_int_equal(pending_at_a(net), 2);
	net->now += 1 * SEC;
	qkm_relay_tick(b, net->now); /* still short: nothing happens */
	pump(net);
	assert_int_equal(pending_at_a(net), 2);
	link_dir(net, 1, 2, LINK_BYTES);
	net->now += 1 * SEC;
	qkm_relay_tick(b, net->now);
	pump(net);
	assert_int_equal(pending_at_a(net), 0);
	assert_int_equal(check_pair(net), 2);
	assert_string_equal(qkm_relay_why(a, "C"), "");
	assert_int_equal(records(net, 1, "relay-refused", NULL), 0);
	assert_int_equal(records(net, 1, "relay-forwarded", NULL), 2);
	assert_links_consistent(net);
	struct qkm_relay_stats sa, sb;
	qkm_relay_stats(a, &sa);
	qkm_relay_stats(b, &sb);
	assert_int_equal(sa.confirmed, 2);
	assert_int_equal(sa.failed, 0);
	assert_int_equal(sb.held, 2);
	/* A relays again at once: nothing waits any more. */
	assert_int_equal(qkm_relay_want(a, "C", BATCH, net->now), 0);
	pump(net);
	assert_int_equal(check_pair(net), 3);
	net_free(net);
}

/* A frame from A that may name link key beyond the waiting relays' (a
 * POOL_SYNC, a KSA frame): they go on or are refused first, so nothing A
 * named is left unburned at B, or burned before it was used. */
static void test_relay_release(void **state)
{
	(void)state;
	struct net *net = net_new("release", false, false, 1024);
	struct qkm_relay *a = net->n[0].r, *b = net->n[1].r;
	assert_int_equal(qkm_relay_want(a, "C", 2 * BATCH, net->now), 0);
	pump(net);
	assert_int_equal(pending_at_a(net), 2);
	qkm_relay_release(b, "C", net->now); /* not from A: nothing to do */
	pump(net);
	assert_int_equal(pending_at_a(net), 2);
	qkm_relay_release(b, "A", net->now);
	settle(net);
	assert_int_equal(pending_at_a(net), 0);
	assert_int_equal(check_pair(net), 0);
	assert_int_equal(records(net, 1, "relay-refused", "hop B-C is out of link key"), 2);
	assert_links_consistent(net);
	net_free(net);
}

/* ---- kill -9 at any point (R-REL-1) ---------------------------------------- */

/* Copies file `from` to `to` (absent: no copy, and `to` removed). */
static void copy_file(const char *from, const char *to)
{
	FILE *in = fopen(from, "rb");
	unlink(to);
	if (!in)
		return;
	int fd = open(to, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	FILE *out = fdopen(fd, "wb");
	assert_non_null(out);
	char buf[65536];
	size_t n;
	while ((n = fread(buf, 1, sizeof(buf), in)) > 0)
		assert_int_equal(fwrite(buf, 1, n, out), n);
	fclose(in);
	assert_int_equal(fclose(out), 0);
}

/* kill -9 of node i: what it leaves is its database, WAL and key-data file
 * as they are on disk now (SQLite recovers the committed transactions only: a deferred one
 * still open is lost) and the frames it already handed to a link; what it
 * held back and every frame on its way to it (and, for the relay node B,
 * the end-to-end frames routed through it) are lost. It restarts from that. */
static void crash(struct net *net, int i)
{
	struct node *n = &net->n[i];
	char img[PATH_MAX + 16], wal[PATH_MAX + 16], img_wal[PATH_MAX + 32];
	char keys[PATH_MAX + 16], img_keys[PATH_MAX + 32];
	snprintf(img, sizeof(img), "%s.crash", n->path);
	snprintf(wal, sizeof(wal), "%s-wal", n->path);
	snprintf(img_wal, sizeof(img_wal), "%s.crash-wal", n->path);
	snprintf(keys, sizeof(keys), "%s-keys", n->path);
	snprintf(img_keys, sizeof(img_keys), "%s.crash-keys", n->path);
	copy_file(n->path, img);
	copy_file(wal, img_wal);
	copy_file(keys, img_keys);
	/* A clean stop would commit and send what is held back: not sent. */
	size_t out = net->nq;
	node_stop(net, i);
	while (net->nq > out)
		free(pop(net, net->nq - 1).p);
	for (size_t j = 0; j < net->nq;)
		if (net->q[j].to == i || (i == 1 && net->q[j].e2e))
			free(pop(net, j).p);
		else
			j++;
	assert_int_equal(rename(img, n->path), 0);
	if (rename(img_wal, wal) != 0)
		unlink(wal);
	assert_int_equal(rename(img_keys, keys), 0);
	char shm[PATH_MAX + 16];
	snprintf(shm, sizeof(shm), "%s-shm", n->path);
	unlink(shm);
	node_start(net, i);
}

/* Where a run of test_relay_kill_anywhere stands: crash node `victim` at
 * the point numbered `at` (counting every point the run passes), first
 * interrupting its group commit with an ordinary transaction if `hook`
 * (as supply and acquisition do: their qkm_store_begin commits the relay's
 * deferred transaction, which sends what it held back). */
struct killer {
	int victim, at, passed;
	bool hook, done;
};

static void point(struct net *net, struct killer *k)
{
	/* With nothing held back by the victim, the hook changes nothing:
	 * the run without it has that point. */
	if (k->done || (k->hook && !qkm_store_in_deferred(net->n[k->victim].st)) ||
	    k->passed++ != k->at)
		return;
	k->done = true;
	if (k->hook) {
		struct qkm_store *st = net->n[k->victim].st;
		assert_int_equal(qkm_store_begin(st), 0);
		assert_int_equal(qkm_store_counter_add(st, "hook", 1), 0);
		assert_int_equal(qkm_store_commit(st), 0);
	}
	crash(net, k->victim);
}

/* pump(), with a point after each frame (its work done, not committed:
 * what it sends held back) and after each group commit. */
static void pump_points(struct net *net, struct killer *k)
{
	while (net->nq) {
		struct wire w = pop(net, 0);
		int to = w.to;
		qkm_relay_begin_batch(net->n[to].r);
		deliver(net, &w);
		point(net, k);
		if (!net->nq || net->q[0].to != to) {
			qkm_relay_end_batch(net->n[to].r);
			point(net, k);
		}
	}
}

/* Time passes; each end asks about what it has not heard of, in a group
 * commit as a node's timer does. */
static void ask_points(struct net *net, struct killer *k)
{
	net->now += 6 * SEC;
	for (int i = 0; i < 3; i += 2) {
		qkm_relay_begin_batch(net->n[i].r);
		qkm_relay_tick(net->n[i].r, net->now);
		point(net, k);
		qkm_relay_end_batch(net->n[i].r);
		point(net, k);
	}
	pump_points(net, k);
}

/* R-REL-1 across a crash: relays both ways through B (two A -> C, one
 * C -> A, each started in a group commit as qkm_kma_relay_want does), and
 * A, B or C killed at every point of the run in turn, with and without an
 * ordinary transaction committing its group commit first; after the
 * restart the ends settle. Whatever the point, no key is at one end only
 * (check_pair) and nothing stays PENDING. test_relay.sh's kill -9 section
 * does this with real processes at random points. */
/* check_pair() and nothing PENDING at either end, naming the crash point
 * when it fails. Returns how many keys A and C share. */
static size_t kill_check(struct net *net, const struct killer *k)
{
	struct held *a = malloc(sizeof(*a)), *c = malloc(sizeof(*c));
	assert_non_null(a);
	assert_non_null(c);
	relay_pool(net, 0, 2, a);
	relay_pool(net, 2, 0, c);
	const char *bad = NULL;
	struct qkm_id which;
	for (size_t i = 0; !bad && i < c->n; i++) {
		const uint8_t *x = find(a, &c->batch[i]);
		which = c->batch[i];
		bad = !x ? "held at C, not at A"
		      : memcmp(x, c->data[i], BATCH) ? "different bytes at A and C"
		      : c->state[i] != QKM_BLOCK_READY ? "not READY at C" : NULL;
	}
	for (size_t i = 0; !bad && i < a->n; i++) {
		which = a->batch[i];
		bad = a->state[i] != QKM_BLOCK_READY ? "PENDING at A"
		      : !find(c, &a->batch[i]) ? "READY at A, not held at C" : NULL;
	}
	size_t n = c->n;
	free(a);
	free(c);
	if (bad) {
		char hex[33];
		qkm_id_hex(&which, hex);
		fail_msg("kill -9 of %s at point %d%s: batch %s %s", NAMES[k->victim], k->at,
			 k->hook ? " (its group commit committed by another transaction first)" : "",
			 hex, bad);
	}
	return n;
}

/* A net like `base` (stopped), its stores copied, started. */
static struct net *net_copy(const struct net *base)
{
	struct net *net = calloc(1, sizeof(*net));
	assert_non_null(net);
	net->now = base->now;
	net->down_at = -1;
	snprintf(net->dir, sizeof(net->dir), "%.*s-XXXXXX", PATH_MAX - 8, base->dir);
	assert_non_null(mkdtemp(net->dir));
	for (int i = 0; i < 3; i++) {
		struct node *n = &net->n[i];
		n->net = net;
		n->i = i;
		n->cfg = malloc(sizeof(*n->cfg));
		assert_non_null(n->cfg);
		memcpy(n->cfg, base->n[i].cfg, sizeof(*n->cfg));
		snprintf(n->path, sizeof(n->path), "%s/%s.db", net->dir, NAMES[i]);
		copy_file(base->n[i].path, n->path);
		char from[PATH_MAX + 16], to[PATH_MAX + 16];
		snprintf(from, sizeof(from), "%s-keys", base->n[i].path);
		snprintf(to, sizeof(to), "%s-keys", n->path);
		copy_file(from, to);
		node_start(net, i);
	}
	return net;
}

#define KILL_LINK (8 * BATCH) /* link key per direction: enough for the run's relays */
static void test_relay_kill_anywhere(void **state)
{
	(void)state;
	size_t runs = 0, shared = 0;
	/* Each run starts from a copy of these stores (closed: no WAL). */
	struct net *base = net_new_sized("kill", false, false, KILL_LINK, KILL_LINK);
	for (int i = 0; i < 3; i++)
		node_stop(base, i);
	for (int victim = 0; victim < 3; victim++)
		for (int hook = 0; hook < 2; hook++)
			for (int at = 0;; at++) {
				struct killer k = {victim, at, 0, hook, false};
				struct net *net = net_copy(base);
				qkm_relay_begin_batch(net->n[0].r);
				assert_int_equal(qkm_relay_want(net->n[0].r, "C", 2 * BATCH, net->now), 0);
				point(net, &k);
				qkm_relay_end_batch(net->n[0].r);
				point(net, &k);
				qkm_relay_begin_batch(net->n[2].r);
				assert_int_equal(qkm_relay_want(net->n[2].r, "A", BATCH, net->now), 0);
				point(net, &k);
				qkm_relay_end_batch(net->n[2].r);
				point(net, &k);
				pump_points(net, &k);
				ask_points(net, &k);
				bool crashed = k.done;
				/* After the restart: every relay left is asked about. */
				ask_points(net, &k);
				ask_points(net, &k);
				shared += kill_check(net, &k);
				net_free(net);
				runs++;
				if (!crashed)
					break; /* past the last point */
			}
	net_free(base);
	/* Most crash points lose a relay or none; the keys that made it are
	 * shared. */
	print_message("%zu runs, %zu keys shared\n", runs, shared);
	assert_true(runs > 30);
	assert_true(shared > runs);
}

/* ---- who could reconstruct the key (R-REL-7, R-REL-8) -------------------- */

/* True if node `at` holds, or could compute from what it holds and what it
 * received, the relayed key K (BATCH bytes): K in its store; K as the XOR
 * of some of the XOR shares it received and the front of the link key it
 * shares with its neighbours (each relay used the first bytes of each
 * direction: the nets are fresh); K inside a RELAY ciphertext XORed with
 * the link key of the hop it came over. */
static bool could_reconstruct(struct net *net, int at, const uint8_t *key)
{
	struct held *h = malloc(sizeof(*h));
	assert_non_null(h);
	for (int p = 0; p < 3; p++) {
		if (p == at)
			continue;
		relay_pool(net, at, p, h);
		for (size_t i = 0; i < h->n; i++)
			if (memcmp(h->data[i], key, BATCH) == 0) {
				free(h);
				return true;
			}
	}
	free(h);
	const uint8_t *items[16];
	size_t n = 0;
	for (int p = 0; p < 3; p++) {
		if (net->lk[at][p] && n < 16)
			items[n++] = net->lk[at][p]->p;
		if (net->lk[p][at] && n < 16)
			items[n++] = net->lk[p][at]->p;
	}
	for (size_t i = 0; i < net->n_seen; i++) {
		struct seen_ct *sc = &net->seen[i];
		if (sc->at != at)
			continue;
		if (sc->type == QKM_MSG_XOR_SHARE && sc->len == BATCH && n < 16)
			items[n++] = sc->p;
		for (int p = 0; sc->type == QKM_MSG_RELAY && p < 3; p++) {
			const struct qkm_secret *d = net->lk[p][at];
			if (!d || sc->len + 32 > d->len)
				continue;
			uint8_t *pt = malloc(sc->len);
			assert_non_null(pt);
			for (size_t j = 0; j < sc->len; j++)
				pt[j] = sc->p[j] ^ d->p[32 + j];
			bool found = memmem(pt, sc->len, key, BATCH) != NULL;
			free(pt);
			if (found)
				return true;
		}
	}
	uint8_t x[BATCH];
	for (uint32_t set = 1; set < (1u << n); set++) {
		memset(x, 0, sizeof(x));
		for (size_t i = 0; i < n; i++)
			if (set & (1u << i))
				for (size_t j = 0; j < BATCH; j++)
					x[j] ^= items[i][j];
		if (memcmp(x, key, BATCH) == 0)
			return true;
	}
	return false;
}

/* The key A and C now share (the only relay of the net). */
static void shared_key(struct net *net, uint8_t *key)
{
	struct held *h = malloc(sizeof(*h));
	assert_non_null(h);
	relay_pool(net, 2, 0, h);
	assert_int_equal(h->n, 1);
	memcpy(key, h->data[0], BATCH);
	free(h);
}

/* Hop-by-hop OTP: B decrypts to re-encrypt, so B could read the key (a
 * trusted node, Y.3803 8.2.3). */
static void test_reconstruct_otp(void **state)
{
	(void)state;
	struct net *net = net_new("rc-otp", true, false, LINK_BYTES);
	uint8_t key[BATCH];
	assert_int_equal(qkm_relay_want(net->n[0].r, "C", BATCH, net->now), 0);
	pump(net);
	assert_int_equal(check_pair(net), 1);
	shared_key(net, key);
	assert_true(could_reconstruct(net, 0, key));
	assert_true(could_reconstruct(net, 1, key));
	assert_true(could_reconstruct(net, 2, key));
	net_free(net);
}

/* R-REL-7, R-REL-8: XOR at the destination. A sends K ^ k(A,B) straight to
 * C, B sends k(A,B) ^ k(B,C) straight to C; only A and C can have K. */
static void test_xor_at_destination(void **state)
{
	(void)state;
	struct net *net = net_new("xor-dst", true, false, LINK_BYTES);
	net_mode(net, "xor-at-destination", NULL);
	uint8_t key[BATCH];
	assert_int_equal(qkm_relay_want(net->n[0].r, "C", BATCH, net->now), 0);
	pump(net);
	assert_int_equal(check_pair(net), 1);
	assert_int_equal(pending_at_a(net), 0);
	shared_key(net, key);
	assert_links_consistent(net);
	assert_true(could_reconstruct(net, 0, key));
	assert_false(could_reconstruct(net, 1, key));
	assert_true(could_reconstruct(net, 2, key));
	assert_int_equal(records(net, 2, "relay-received", "A>B otp"), 1);
	assert_int_equal(records(net, 2, "relay-received", "B>C otp"), 1);
	assert_int_equal(records(net, 1, "relay-xor", NULL), 1);
	/* Link key per hop: exactly the key's length (no MAC, no metadata). */
	struct qkm_pool_stats ps;
	assert_int_equal(qkm_store_pool_stats(net->n[1].st, "C", &ps), 0);
	assert_int_equal(LINK_BYTES - ps.enc_bytes, BATCH);
	net_free(net);
}

/* XOR at the destination, B's hop to C short: B's XOR_NEXT waits for the
 * key as a RELAY does, and the combination completes once B has it. */
static void test_xor_waits_for_key(void **state)
{
	(void)state;
	struct net *net = net_new("xor-wait", true, false, 1024);
	net_mode(net, "xor-at-destination", NULL);
	assert_int_equal(qkm_relay_want(net->n[0].r, "C", BATCH, net->now), 0);
	pump(net);
	assert_int_equal(pending_at_a(net), 1);
	assert_non_null(strstr(qkm_relay_why(net->n[0].r, "C"), "held at B"));
	link_dir(net, 1, 2, LINK_BYTES);
	net->now += 1 * SEC;
	qkm_relay_tick(net->n[1].r, net->now);
	pump(net);
	assert_int_equal(pending_at_a(net), 0);
	assert_int_equal(check_pair(net), 1);
	assert_int_equal(records(net, 1, "relay-refused", NULL), 0);
	assert_links_consistent(net);
	net_free(net);
}

/* R-REL-7: central XOR at B. B gets every share; as a node of the route it
 * also holds k(A,B), so B could have K too; C gets K ^ k(B,C) from B. */
static void test_xor_central(void **state)
{
	(void)state;
	struct net *net = net_new("xor-central", true, false, LINK_BYTES);
	net_mode(net, "central-xor", "B");
	uint8_t key[BATCH];
	assert_int_equal(qkm_relay_want(net->n[0].r, "C", BATCH, net->now), 0);
	pump(net);
	assert_int_equal(check_pair(net), 1);
	assert_int_equal(pending_at_a(net), 0);
	shared_key(net, key);
	assert_true(could_reconstruct(net, 0, key));
	assert_true(could_reconstruct(net, 1, key));
	assert_true(could_reconstruct(net, 2, key));
	assert_links_consistent(net);
	assert_int_equal(records(net, 1, "relay-combined", NULL), 1);
	assert_int_equal(records(net, 2, "relay-received", "central-xor via B"), 1);
	net_free(net);
}

/* R-REL-5 in the clause 9 modes: a tampered share makes the XOR miss the
 * origin's digest; the destination stores nothing and alarms, A deletes. */
static void test_xor_tamper(void **state)
{
	(void)state;
	struct net *net = net_new("xor-tamper", true, false, LINK_BYTES);
	net_mode(net, "xor-at-destination", NULL);
	assert_int_equal(qkm_relay_want(net->n[0].r, "C", BATCH, net->now), 0);
	bool flipped = false;
	while (net->nq) {
		struct wire w = pop(net, 0);
		struct qkm_frame f;
		const uint8_t *ct;
		uint32_t ctl;
		if (!flipped && !qkm_frame_parse(w.p, w.len, &f) && f.type == QKM_MSG_XOR_SHARE &&
		    !qkm_tlv_bytes(f.body, f.body_len, QKM_T_CT, &ct, &ctl)) {
			w.p[(size_t)(ct - w.p) + 100] ^= 0x20;
			flipped = true;
		}
		deliver(net, &w);
	}
	assert_true(flipped);
	settle(net);
	assert_int_equal(check_pair(net), 0);
	assert_int_equal(pending_at_a(net), 0);
	assert_int_equal(records(net, 2, "relay-refused", "digest"), 1);
	net_free(net);
}

/* An XOR_NEXT that names a node this one has no link with as the next hop
 * (here B tells A to pass a share on toward C) is refused: A never pads
 * with its end-to-end pool with C, nothing is sent. (Found by fuzz_relay
 * with a link_ready that said yes to anyone.) */
static void test_xor_next_not_neighbour(void **state)
{
	(void)state;
	struct net *net = net_new("xor-nb", true, false, LINK_BYTES);
	assert_int_equal(qkm_relay_want(net->n[0].r, "C", BATCH, net->now), 0);
	pump(net);
	assert_int_equal(check_pair(net), 1);
	struct qkm_pool_stats before, after;
	assert_int_equal(qkm_store_pool_stats(net->n[0].st, "C", &before), 0);
	/* B -> A: XOR_NEXT along B, A, C naming 64 bytes of B's link key. */
	struct qkm_buf b;
	size_t start, e;
	struct qkm_id batch;
	memset(&batch, 0, sizeof(batch));
	batch.b[11] = 1; /* sequence 1 */
	qkm_buf_init(&b, 4096, false);
	assert_int_equal(qkm_frame_begin(&b, QKM_MSG_XOR_NEXT, 0, &start), 0);
	assert_int_equal(qkm_put_id(&b, QKM_T_BATCH, &batch), 0);
	assert_int_equal(qkm_put_u64(&b, QKM_T_SEQ, 1), 0);
	assert_int_equal(qkm_put_str(&b, QKM_T_SRC, "B"), 0);
	assert_int_equal(qkm_put_str(&b, QKM_T_DST, "C"), 0);
	assert_int_equal(qkm_put_str(&b, QKM_T_PATH, "B"), 0);
	assert_int_equal(qkm_put_str(&b, QKM_T_PATH, "A"), 0);
	assert_int_equal(qkm_put_str(&b, QKM_T_PATH, "C"), 0);
	assert_int_equal(qkm_put_u32(&b, QKM_T_HOP, 1), 0);
	assert_int_equal(qkm_put_u8(&b, QKM_T_METHOD, 1), 0);
	assert_int_equal(qkm_put_str(&b, QKM_T_PEER, "B"), 0);
	struct qkm_range g;
	size_t ng = 0;
	uint8_t tmp[64];
	assert_int_equal(qkm_store_pool_read(net->n[1].st, "A", QKM_KT_ENC, 64, &g, 1, &ng, tmp), 0);
	assert_int_equal(qkm_put_open(&b, QKM_T_RANGE, &e), 0);
	assert_int_equal(qkm_put_id(&b, QKM_T_BATCH, &g.batch), 0);
	assert_int_equal(qkm_put_u32(&b, QKM_T_FIRST, g.first_index), 0);
	assert_int_equal(qkm_put_u32(&b, QKM_T_UNIT, g.unit_bytes), 0);
	assert_int_equal(qkm_put_u32(&b, QKM_T_OFF, g.off), 0);
	assert_int_equal(qkm_put_u32(&b, QKM_T_LEN, 64), 0);
	assert_int_equal(qkm_put_close(&b, e), 0);
	assert_int_equal(qkm_frame_end(&b, start), 0);
	push(net, 1, 0, false, b.p, b.len);
	qkm_buf_fini(&b);
	size_t seen = net->n_seen;
	pump(net);
	assert_int_equal(qkm_store_pool_stats(net->n[0].st, "C", &after), 0);
	assert_int_equal(after.enc_bytes, before.enc_bytes);
	assert_int_equal(net->n_seen, seen); /* no share went anywhere */
	assert_int_equal(records(net, 0, "relay-refused", "not a neighbour"), 1);
	net_free(net);
}

int main(void)
{
	if (qkm_secret_heap_init(1 << 26) != 0)
		return 1;
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_relay_line),
		cmocka_unit_test(test_relay_sent_after_own_commit),
		cmocka_unit_test(test_relay_store_begin_after_pool_event),
		cmocka_unit_test(test_relay_rng),
		cmocka_unit_test(test_relay_ahead),
		cmocka_unit_test(test_relay_ahead_needs_saes),
		cmocka_unit_test(test_relay_backoff_after_failure),
		cmocka_unit_test(test_relay_tamper),
		cmocka_unit_test(test_relay_replay_reorder),
		cmocka_unit_test(test_relay_lost_then_late),
		cmocka_unit_test(test_relay_origin_restart),
		cmocka_unit_test(test_relay_starved),
		cmocka_unit_test(test_relay_waits_for_key),
		cmocka_unit_test(test_relay_release),
		cmocka_unit_test(test_relay_kill_anywhere),
		cmocka_unit_test(test_reconstruct_otp),
		cmocka_unit_test(test_xor_at_destination),
		cmocka_unit_test(test_xor_waits_for_key),
		cmocka_unit_test(test_xor_central),
		cmocka_unit_test(test_xor_tamper),
		cmocka_unit_test(test_xor_next_not_neighbour),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
