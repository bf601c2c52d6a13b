/* relay_bench.c - the in-process part of bench/relay (issue #5 item 8,
 * R-REL-1): hops + 1 relay state machines (kma/relay.c) on a line, each with
 * its own SQLite store file and pre-filled link pools, frames passed through
 * an in-memory queue on one thread, as tests/kma/test_relay.c drives them.
 * Measures relay throughput, the time of each hop's step, and link key spent
 * per relayed key byte on each hop; beside them, in the same run, a raw
 * memory XOR and a loopback TLS 1.3 stream (tls_loopback.c). Prints a table
 * and ratios, and the targets as met or not; never fails on a
 * number (exit 1 only when the run itself could not be made). */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <openssl/rand.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/buf.h"
#include "core/log.h"
#include "core/secret.h"
#include "core/xor.h"
#include "kma/relay.h"
#include "proto/frame.h"
#include "store/store.h"
#include "relay_prof.h"
#include "tls_loopback.h"

#define MAX_NODES 16                 /* QKM_MAX_PATH: nodes on a route */
#define WINDOW 8                     /* relay.c's RELAY_WINDOW: relays in flight */
#define BLOCK_BYTES (1u << 20)       /* a link pool block: one acquisition round
					(net up's batch_max_bytes) */
#define UNIT 32                      /* KMA-key bytes (kma_unit_bits 256) */
#define CKPT_WAL_BYTES (64u << 20)   /* the node's checkpoint policy (kma_io.c) */
#define CKPT_NS 5000000000ull
#define HOP_SLACK 2048u              /* link key per relay beyond the key:
					metadata, hops, MAC key; generous */
#define TARGET_GBPS 1.0
#define TARGET_EFF 1.05
#define TARGET_P99_MS 1.0

enum role { R_ORIGIN, R_RELAY, R_DEST, R_N };
static const char *const ROLE[R_N] = {"origin", "relay", "dest"};

static uint64_t mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("bench/relay: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	exit(1);
}

/* ---- samples ------------------------------------------------------------- */

struct samples {
	uint64_t *v;
	size_t n, cap;
};

static void sample_add(struct samples *s, uint64_t x)
{
	if (s->n == s->cap) {
		s->cap = s->cap ? 2 * s->cap : 1024;
		if (!(s->v = realloc(s->v, s->cap * sizeof(*s->v))))
			die("out of memory");
	}
	s->v[s->n++] = x;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* Nearest-rank percentile in ms (sorts s); NAN when empty. */
static double pct_ms(struct samples *s, double p)
{
	if (!s->n)
		return NAN;
	qsort(s->v, s->n, sizeof(*s->v), cmp_u64);
	size_t k = (size_t)ceil(p / 100.0 * (double)s->n);
	return (double)s->v[k ? k - 1 : 0] / 1e6;
}

/* ---- the line ------------------------------------------------------------ */

struct frame {
	struct frame *next;
	int from, to;
	bool e2e;                    /* end to end (routed in real life) */
	size_t len;
	uint8_t p[];
};

struct bnet;
struct bnode {
	struct bnet *net;
	int i;
	struct qkm_node_cfg *cfg;
	struct qkm_store *st;
	struct qkm_relay *r;
	char path[PATH_MAX];
	/* Time this node's handlers ran (its own thread in real life), the
	 * part of it spent handing frames to the queue (the transport's, not
	 * the relay's), and its store checkpoints (included in busy). */
	uint64_t busy_ns, xport_ns, ckpt_ns, n_ckpt, last_ckpt;
};

struct bnet {
	int n;                       /* nodes = hops + 1 */
	struct bnode nd[MAX_NODES];
	struct frame *head, *tail;
	int cur;                     /* node whose handler runs, or -1 */
	enum role cur_role;
	uint64_t mark;               /* start of the current step */
	bool sampling;
	struct samples step[R_N];    /* step times, by role */
	uint64_t peer_errors;        /* frames refused as protocol violations */
	uint64_t created;            /* created_ns of pre-filled blocks */
	char dir[PATH_MAX];
};

static const char *name(int i)
{
	static char names[MAX_NODES][16];
	snprintf(names[i], sizeof(names[i]), "node%d", i + 1);
	return names[i];
}

static int idx(const char *nm)
{
	for (int i = 0; i < MAX_NODES; i++)
		if (strcmp(name(i), nm) == 0)
			return i;
	die("unknown node %s", nm);
}

/* The relay's send callbacks: a step ends when its node emits a frame (the
 * next hop, or the destination's acknowledgement after its commit). The
 * copy into the queue stands in for the socket write and is counted as
 * transport, not as the relay's time. */
static int emit(struct bnode *nd, int to, bool e2e, const uint8_t *p, size_t len)
{
	struct bnet *net = nd->net;
	uint64_t t = mono_ns();
	if (net->sampling && net->cur == nd->i)
		sample_add(&net->step[net->cur_role], t - net->mark);
	struct frame *f = malloc(sizeof(*f) + len);
	if (!f)
		die("out of memory");
	f->next = NULL;
	f->from = nd->i;
	f->to = to;
	f->e2e = e2e;
	f->len = len;
	memcpy(f->p, p, len);
	if (net->tail)
		net->tail->next = f;
	else
		net->head = f;
	net->tail = f;
	uint64_t t2 = mono_ns();
	nd->xport_ns += t2 - t;
	net->mark = t2;
	return 0;
}

static int op_send(const char *nb, const uint8_t *p, size_t len, void *arg)
{
	return emit(arg, idx(nb), false, p, len);
}

static int op_send_to(const char *node, const uint8_t *p, size_t len, void *arg)
{
	return emit(arg, idx(node), true, p, len);
}

static bool op_link_ready(const char *nb, void *arg) { return true; }

/* The node's timer duty that lands on the relay's path: checkpoints, as
 * kma_io.c does them (WAL past 64 MiB, or holding anything for 5 s). */
static void maybe_checkpoint(struct bnode *nd)
{
	uint64_t wal = qkm_store_wal_bytes(nd->st), t = mono_ns();
	if (wal >= CKPT_WAL_BYTES || (wal && t - nd->last_ckpt >= CKPT_NS)) {
		int rc = qkm_store_checkpoint(nd->st);
		if (rc && rc != QKM_EAGAIN)
			die("%s: checkpoint: %s", name(nd->i), qkm_strerror(rc));
		uint64_t t2 = mono_ns();
		nd->last_ckpt = t2;
		nd->ckpt_ns += t2 - t;
		nd->busy_ns += t2 - t;
		nd->n_ckpt++;
	}
}

static void deliver(struct bnet *net, struct frame *w)
{
	struct bnode *to = &net->nd[w->to];
	struct qkm_frame f;
	uint64_t t = mono_ns();
	/* A hop's step is timed; end-to-end frames (acknowledgements back at
	 * the origin) only count toward the node's busy time. */
	net->cur = w->e2e ? -1 : w->to;
	net->cur_role = w->to == net->n - 1 ? R_DEST : R_RELAY;
	net->mark = t;
	int rc = qkm_frame_parse(w->p, w->len, &f);
	if (!rc)
		rc = w->e2e ? qkm_relay_on_frame(to->r, name(w->from), &f, qkm_now_ns())
			    : qkm_relay_on_hop(to->r, name(w->from), &f, qkm_now_ns());
	to->busy_ns += mono_ns() - t;
	if (rc == QKM_EPEER || rc == QKM_EFORMAT || rc == QKM_ETRUNC || rc == QKM_EVERSION)
		net->peer_errors++;
	else if (rc)
		die("%s: handler: %s", name(w->to), qkm_strerror(rc));
	free(w);
}

/* Delivers everything queued, in order, until nothing is left. */
static void pump(struct bnet *net)
{
	/* As a node does with the frames of one read: consecutive frames to
	 * one node share a group commit, and what they send leaves when it
	 * ends (the step of the last frame includes the commit). */
	while (net->head) {
		struct frame *w = net->head;
		struct bnode *to = &net->nd[w->to];
		net->head = w->next;
		if (!net->head)
			net->tail = NULL;
		qkm_relay_begin_batch(to->r);
		deliver(net, w);
		if (!net->head || net->head->to != to->i) {
			uint64_t t = mono_ns();
			qkm_relay_end_batch(to->r);
			to->busy_ns += mono_ns() - t;
			net->cur = -1;
			maybe_checkpoint(to);
		}
	}
}

/* On demand at the origin: starts up to `relays` relays toward the far end. */
static int want(struct bnet *net, int relays, uint32_t batch)
{
	struct bnode *o = &net->nd[0];
	uint64_t t = mono_ns();
	net->cur = 0;
	net->cur_role = R_ORIGIN;
	net->mark = t;
	qkm_relay_begin_batch(o->r);
	int rc = qkm_relay_want(o->r, name(net->n - 1), (size_t)relays * batch, qkm_now_ns());
	qkm_relay_end_batch(o->r);
	o->busy_ns += mono_ns() - t;
	net->cur = -1;
	maybe_checkpoint(o);
	return rc;
}

static void route(struct qkm_node_cfg *c, int from, int to)
{
	struct qkm_node_route *r = &c->routes[c->n_routes++];
	int step = to > from ? 1 : -1;
	snprintf(r->to, sizeof(r->to), "%s", name(to));
	r->n = 0;
	for (int i = from;; i += step) {
		snprintf(r->path[r->n++], QKM_NAME_MAX, "%s", name(i));
		if (i == to)
			break;
	}
}

static struct bnet *net_new(const char *dir, int hops)
{
	struct bnet *net = calloc(1, sizeof(*net));
	if (!net)
		die("out of memory");
	net->n = hops + 1;
	net->cur = -1;
	net->created = 1700000000ull * 1000000000ull;
	snprintf(net->dir, sizeof(net->dir), "%s/hops%d", dir, hops);
	if (mkdir(net->dir, 0700) && errno != EEXIST)
		die("mkdir %s: %s", net->dir, strerror(errno));
	for (int i = 0; i < net->n; i++) {
		struct bnode *nd = &net->nd[i];
		nd->net = net;
		nd->i = i;
		if (!(nd->cfg = calloc(1, sizeof(*nd->cfg))))
			die("out of memory");
		struct qkm_node_cfg *c = nd->cfg;
		snprintf(c->id, sizeof(c->id), "%s", name(i));
		c->ksa = i == 0 || i == net->n - 1;
		snprintf(c->relay.mode, sizeof(c->relay.mode), "otp");
		qkm_relay_defaults(&c->relay);
		/* Relays on demand only (qkm_relay_want), never from the timer. */
		c->relay.low_bytes = c->relay.high_bytes = 0;
		if (i > 0)
			snprintf(c->links[c->n_links++].peer, QKM_NAME_MAX, "%s", name(i - 1));
		if (i < net->n - 1)
			snprintf(c->links[c->n_links++].peer, QKM_NAME_MAX, "%s", name(i + 1));
		snprintf(nd->path, sizeof(nd->path), "%s/%s.db", net->dir, name(i));
	}
	route(net->nd[0].cfg, 0, net->n - 1);
	route(net->nd[net->n - 1].cfg, net->n - 1, 0);
	for (int i = 0; i < net->n; i++) {
		struct bnode *nd = &net->nd[i];
		/* Clause 9 modes are not measured here: no direct links. */
		struct qkm_relay_ops ops = {op_send, NULL, op_send_to, op_link_ready, NULL, nd};
		int rc = qkm_store_open(nd->path, &nd->st);
		if (rc)
			die("%s: %s", nd->path, qkm_strerror(rc));
		if (!(nd->r = qkm_relay_new(nd->cfg, nd->st, &ops)))
			die("%s: relay state machine", name(i));
		nd->last_ckpt = mono_ns();
	}
	return net;
}

static void net_free(struct bnet *net, bool keep)
{
	for (int i = 0; i < net->n; i++) {
		struct bnode *nd = &net->nd[i];
		qkm_relay_free(nd->r);
		qkm_store_close(nd->st);
		if (!keep)
			(void)qkm_store_remove(nd->path);
		free(nd->cfg);
	}
	if (!keep)
		rmdir(net->dir);
	while (net->head) {
		struct frame *w = net->head;
		net->head = w->next;
		free(w);
	}
	for (int i = 0; i < R_N; i++)
		free(net->step[i].v);
	free(net);
}

/* Link key of hop h (node h -> node h+1) still unused at the sender. */
static uint64_t hop_stock(struct bnet *net, int h, bool at_receiver)
{
	struct qkm_pool_stats ps;
	struct bnode *a = &net->nd[at_receiver ? h + 1 : h];
	int rc = qkm_store_pool_stats(a->st, name(at_receiver ? h : h + 1), &ps);
	if (rc)
		die("%s: pool stats: %s", name(a->i), qkm_strerror(rc));
	return at_receiver ? ps.dec_bytes : ps.enc_bytes;
}

/* Fills hop h's pool (the sender's direction: ENC at node h, DEC at node
 * h+1, the same bytes) up to at least `want` bytes with 1 MiB blocks of
 * 32-byte KMA-keys, as acquisition rounds would have left them. Not timed;
 * both stores are checkpointed afterwards, so a run starts with an empty
 * WAL. */
static void topup(struct bnet *net, int h, uint64_t want)
{
	uint64_t have = hop_stock(net, h, false);
	if (have >= want)
		return;
	struct qkm_secret *data = qkm_secret_new_raw(BLOCK_BYTES);
	struct bnode *s = &net->nd[h], *r = &net->nd[h + 1];
	if (!data || qkm_store_begin(s->st) || qkm_store_begin(r->st))
		die("pre-fill: cannot begin");
	for (; have < want; have += BLOCK_BYTES) {
		struct qkm_id id;
		if (RAND_bytes(data->p, BLOCK_BYTES) != 1 || qkm_id_random(&id))
			die("pre-fill: RNG");
		memset(id.b + 12, 0, 4);
		for (int side = 0; side < 2; side++) {
			struct qkm_block b;
			memset(&b, 0, sizeof(b));
			snprintf(b.peer, sizeof(b.peer), "%s", name(side ? h : h + 1));
			b.pool_kind = QKM_POOL_LINK;
			b.batch_id = id;
			b.count = BLOCK_BYTES / UNIT;
			b.unit_bytes = UNIT;
			b.key_type = side ? QKM_KT_DEC : QKM_KT_ENC;
			b.state = QKM_BLOCK_READY;
			b.level = QKM_BLOCK_ITS;
			b.created_ns = net->created;
			b.data = data;
			b.write_around = true; /* as acquisition writes them */
			int rc = qkm_store_block_put(side ? r->st : s->st, &b);
			if (rc)
				die("pre-fill: %s", qkm_strerror(rc));
		}
		net->created++;
	}
	qkm_secret_free(data);
	if (qkm_store_commit(s->st) || qkm_store_commit(r->st) || qkm_store_checkpoint(s->st) ||
	    qkm_store_checkpoint(r->st))
		die("pre-fill: cannot commit");
}

static void set_policy(struct bnet *net, uint32_t batch, bool rng)
{
	for (int i = 0; i < net->n; i++) {
		net->nd[i].cfg->relay.batch_bytes = batch;
		net->nd[i].cfg->relay.rng = rng;
	}
}

/* ---- one run ------------------------------------------------------------- */

struct run {
	const char *kind;            /* "throughput" | "latency" */
	int hops;
	uint32_t batch;
	bool rng;
	uint64_t relays, bytes, received;
	uint64_t failed, errors;
	double wall_s;
	const char *stopped;         /* "time", "volume", "count", or an error */
	double busy_s[MAX_NODES], xport_s[MAX_NODES], ckpt_s[MAX_NODES];
	uint64_t n_ckpt[MAX_NODES];
	uint64_t used_tx[MAX_NODES], used_rx[MAX_NODES]; /* link key spent, per hop */
	double p50[R_N], p99[R_N], pmax[R_N];
	size_t nsamples[R_N];
	double cpu_user_s, cpu_sys_s;  /* this process over the window */
	struct prof prof;            /* where the handlers' time went */
	/* derived */
	double e2e_mbps;             /* relayed / wall: all nodes on one thread */
	double hop_mbps;             /* relayed / the busiest node's relay time */
	int slowest;
	double eff[MAX_NODES];       /* link key spent per relayed byte, per hop */
	double eff_max;
};

struct snap {
	double utime, stime;
	uint64_t busy[MAX_NODES], xport[MAX_NODES], ckpt[MAX_NODES], nckpt[MAX_NODES];
	uint64_t tx[MAX_NODES], rx[MAX_NODES];
	struct qkm_relay_stats o, d;
};

static void snap_take(struct bnet *net, struct snap *s)
{
	for (int i = 0; i < net->n; i++) {
		s->busy[i] = net->nd[i].busy_ns;
		s->xport[i] = net->nd[i].xport_ns;
		s->ckpt[i] = net->nd[i].ckpt_ns;
		s->nckpt[i] = net->nd[i].n_ckpt;
		if (i < net->n - 1) {
			s->tx[i] = hop_stock(net, i, false);
			s->rx[i] = hop_stock(net, i, true);
		}
	}
	qkm_relay_stats(net->nd[0].r, &s->o);
	qkm_relay_stats(net->nd[net->n - 1].r, &s->d);
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	s->utime = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6;
	s->stime = (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static void run_finish(struct bnet *net, struct run *r, const struct snap *a,
		       const struct snap *b)
{
	int hops = net->n - 1;
	r->hops = hops;
	r->bytes = b->o.relayed_bytes - a->o.relayed_bytes;
	r->received = b->d.received_bytes - a->d.received_bytes;
	r->failed = (b->o.failed - a->o.failed) + (b->d.failed - a->d.failed);
	r->errors = net->peer_errors;
	r->cpu_user_s = b->utime - a->utime;
	r->cpu_sys_s = b->stime - a->stime;
	double worst = 0;
	for (int i = 0; i < net->n; i++) {
		r->busy_s[i] = (double)(b->busy[i] - a->busy[i]) / 1e9;
		r->xport_s[i] = (double)(b->xport[i] - a->xport[i]) / 1e9;
		r->ckpt_s[i] = (double)(b->ckpt[i] - a->ckpt[i]) / 1e9;
		r->n_ckpt[i] = b->nckpt[i] - a->nckpt[i];
		double own = r->busy_s[i] - r->xport_s[i];
		if (own > worst) {
			worst = own;
			r->slowest = i;
		}
	}
	r->eff_max = 0;
	for (int h = 0; h < hops; h++) {
		r->used_tx[h] = a->tx[h] - b->tx[h];
		r->used_rx[h] = a->rx[h] - b->rx[h];
		r->eff[h] = r->bytes ? (double)r->used_tx[h] / (double)r->bytes : NAN;
		if (r->eff[h] > r->eff_max)
			r->eff_max = r->eff[h];
	}
	r->e2e_mbps = (double)r->bytes * 8 / r->wall_s / 1e6;
	r->hop_mbps = worst > 0 ? (double)r->bytes * 8 / worst / 1e6 : NAN;
	for (int k = 0; k < R_N; k++) {
		r->nsamples[k] = net->step[k].n;
		r->p50[k] = pct_ms(&net->step[k], 50);
		r->p99[k] = pct_ms(&net->step[k], 99);
		r->pmax[k] = pct_ms(&net->step[k], 100);
		net->step[k].n = 0;
	}
}

/* Relays `relays` more (WINDOW at a time), not measured: warms the stores
 * and caches and gives the rate to size the measured run. */
static double warm(struct bnet *net, uint32_t batch, int relays)
{
	uint64_t t = mono_ns();
	struct qkm_relay_stats a, b;
	qkm_relay_stats(net->nd[0].r, &a);
	for (int done = 0; done < relays; done += WINDOW) {
		int rc = want(net, WINDOW, batch);
		if (rc)
			die("warm-up relay: %s (%s)", qkm_strerror(rc),
			    qkm_relay_why(net->nd[0].r, name(net->n - 1)));
		pump(net);
	}
	qkm_relay_stats(net->nd[0].r, &b);
	double s = (double)(mono_ns() - t) / 1e9;
	return (double)(b.relayed_bytes - a.relayed_bytes) / s;
}

static uint64_t stock_for(uint64_t bytes, uint32_t batch)
{
	uint64_t relays = (bytes + batch - 1) / batch + 2 * WINDOW;
	return relays * ((uint64_t)batch + HOP_SLACK);
}

/* Throughput: relays WINDOW at a time for `seconds` (or until `cap` bytes),
 * every node's handlers timed. */
static void run_throughput(struct bnet *net, uint32_t batch, bool rng, double seconds,
			   uint64_t cap, struct run *r)
{
	int hops = net->n - 1;
	memset(r, 0, sizeof(*r));
	r->kind = "throughput";
	r->batch = batch;
	r->rng = rng;
	set_policy(net, batch, rng);
	/* Warm-up: at least 8 relays and 8 MiB. */
	int wn = (int)((8u << 20) / batch);
	wn = wn < 2 * WINDOW ? 2 * WINDOW : wn;
	for (int h = 0; h < hops; h++)
		topup(net, h, stock_for((uint64_t)wn * batch, batch));
	double rate = warm(net, batch, wn);
	uint64_t vol = (uint64_t)(rate * seconds * 1.25);
	if (vol > cap)
		vol = cap;
	if (vol < (uint64_t)WINDOW * batch)
		vol = (uint64_t)WINDOW * batch;
	for (int h = 0; h < hops; h++)
		topup(net, h, stock_for(vol, batch));
	for (int i = 0; i < net->n; i++) /* the measured window starts with empty WALs */
		if (qkm_store_checkpoint(net->nd[i].st))
			die("checkpoint");
	struct snap a, b;
	net->peer_errors = 0;
	snap_take(net, &a);
	net->sampling = true;
	prof_start();
	uint64_t t0 = mono_ns(), lim = (uint64_t)(seconds * 1e9);
	r->stopped = "time";
	for (;;) {
		struct qkm_relay_stats st;
		qkm_relay_stats(net->nd[0].r, &st);
		if (st.relayed_bytes - a.o.relayed_bytes + (uint64_t)WINDOW * batch > vol) {
			r->stopped = "volume";
			break;
		}
		if (mono_ns() - t0 >= lim)
			break;
		int rc = want(net, WINDOW, batch);
		if (rc) {
			r->stopped = qkm_strerror(rc);
			break;
		}
		pump(net);
		r->relays += WINDOW;
	}
	r->wall_s = (double)(mono_ns() - t0) / 1e9;
	prof_stop(&r->prof);
	net->sampling = false;
	snap_take(net, &b);
	run_finish(net, r, &a, &b);
}

/* Latency: one relay of one key file at a time, `count` of them. */
static void run_latency(struct bnet *net, uint32_t batch, int count, struct run *r)
{
	int hops = net->n - 1;
	memset(r, 0, sizeof(*r));
	r->kind = "latency";
	r->batch = batch;
	set_policy(net, batch, false);
	for (int h = 0; h < hops; h++)
		topup(net, h, stock_for((uint64_t)(count + 50) * batch, batch));
	for (int i = 0; i < 50; i++) {
		if (want(net, 1, batch))
			die("latency warm-up failed");
		pump(net);
	}
	for (int i = 0; i < net->n; i++)
		if (qkm_store_checkpoint(net->nd[i].st))
			die("checkpoint");
	struct snap a, b;
	net->peer_errors = 0;
	for (int k = 0; k < R_N; k++)
		net->step[k].n = 0;
	snap_take(net, &a);
	net->sampling = true;
	prof_start();
	uint64_t t0 = mono_ns();
	r->stopped = "count";
	for (int i = 0; i < count; i++) {
		int rc = want(net, 1, batch);
		if (rc) {
			r->stopped = qkm_strerror(rc);
			break;
		}
		pump(net);
		r->relays++;
	}
	r->wall_s = (double)(mono_ns() - t0) / 1e9;
	prof_stop(&r->prof);
	net->sampling = false;
	snap_take(net, &b);
	run_finish(net, r, &a, &b);
}

/* ---- baselines ----------------------------------------------------------- */


struct xor_result {
	uint64_t bytes;
	double seconds, gbps;
};

/* XORs `bytes` bytes in `chunk`-byte pieces, each a fresh stretch of three
 * 64 MiB buffers (plaintext, pad, ciphertext), so the memory is streamed
 * rather than hot in cache. */
static void run_xor(uint64_t bytes, size_t chunk, struct xor_result *x)
{
	const size_t span = 64u << 20;
	uint8_t *a = malloc(span), *b = malloc(span), *o = malloc(span);
	if (!a || !b || !o)
		die("out of memory");
	for (size_t i = 0; i < span; i++) {
		a[i] = (uint8_t)(i * 7 + 1);
		b[i] = (uint8_t)(i * 13 + (i >> 11));
	}
	memset(o, 0, span);
	if (chunk > span)
		chunk = span;
	uint64_t t = mono_ns();
	size_t off = 0;
	uint8_t sink = 0;
	for (uint64_t done = 0; done < bytes; done += chunk) {
		if (off + chunk > span)
			off = 0;
		qkm_xor(o + off, a + off, b + off, chunk);
		sink ^= o[off + chunk - 1];
		off += chunk;
	}
	x->seconds = (double)(mono_ns() - t) / 1e9;
	x->bytes = bytes;
	x->gbps = (double)bytes * 8 / x->seconds / 1e9;
	/* Keep the work observable. */
	if (sink == 0x5a && bytes == 1)
		fputc(' ', stderr);
	free(a);
	free(b);
	free(o);
}

/* A 4 KiB write and fdatasync(2), `n` times, in a file of dir: the least a
 * durable step (one store commit) can cost on this disk. */
static void run_fsync_probe(const char *dir, int n, struct samples *s)
{
	char path[PATH_MAX + 16];
	uint8_t page[4096];
	snprintf(path, sizeof(path), "%s/fsync-probe", dir);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		die("%s: %s", path, strerror(errno));
	memset(page, 0x5a, sizeof(page));
	for (int i = 0; i < n; i++) {
		page[0] = (uint8_t)i;
		if (pwrite(fd, page, sizeof(page), (off_t)(i % 16) * 4096) != (ssize_t)sizeof(page))
			die("%s: write: %s", path, strerror(errno));
		uint64_t t = mono_ns();
		if (fdatasync(fd))
			die("%s: fdatasync: %s", path, strerror(errno));
		sample_add(s, mono_ns() - t);
	}
	close(fd);
	unlink(path);
}

/* ---- output -------------------------------------------------------------- */

static json_t *run_json(const struct run *r)
{
	json_t *j = json_object(), *nodes = json_array(), *hops = json_array(), *steps = json_object();
	json_object_set_new(j, "kind", json_string(r->kind));
	json_object_set_new(j, "hops", json_integer(r->hops));
	json_object_set_new(j, "batch_bytes", json_integer(r->batch));
	json_object_set_new(j, "key_source", json_string(r->rng ? "rng" : "link"));
	json_object_set_new(j, "relays", json_integer((json_int_t)r->relays));
	json_object_set_new(j, "relayed_bytes", json_integer((json_int_t)r->bytes));
	json_object_set_new(j, "received_bytes", json_integer((json_int_t)r->received));
	json_object_set_new(j, "failed", json_integer((json_int_t)r->failed));
	json_object_set_new(j, "protocol_errors", json_integer((json_int_t)r->errors));
	json_object_set_new(j, "wall_s", json_real(r->wall_s));
	json_object_set_new(j, "stopped", json_string(r->stopped));
	json_object_set_new(j, "e2e_mbps", json_real(r->e2e_mbps));
	json_object_set_new(j, "per_hop_mbps", json_real(r->hop_mbps));
	json_object_set_new(j, "slowest_node", json_string(name(r->slowest)));
	json_object_set_new(j, "efficiency_max", json_real(r->eff_max));
	for (int i = 0; i <= r->hops; i++) {
		json_t *n = json_object();
		json_object_set_new(n, "node", json_string(name(i)));
		json_object_set_new(n, "busy_s", json_real(r->busy_s[i]));
		json_object_set_new(n, "transport_s", json_real(r->xport_s[i]));
		json_object_set_new(n, "checkpoint_s", json_real(r->ckpt_s[i]));
		json_object_set_new(n, "checkpoints", json_integer((json_int_t)r->n_ckpt[i]));
		json_array_append_new(nodes, n);
	}
	for (int h = 0; h < r->hops; h++) {
		json_t *o = json_object();
		json_object_set_new(o, "hop", json_sprintf("%s-%s", name(h), name(h + 1)));
		json_object_set_new(o, "link_bytes_sender", json_integer((json_int_t)r->used_tx[h]));
		json_object_set_new(o, "link_bytes_receiver", json_integer((json_int_t)r->used_rx[h]));
		json_object_set_new(o, "efficiency", json_real(r->eff[h]));
		json_array_append_new(hops, o);
	}
	for (int k = 0; k < R_N; k++) {
		json_t *o = json_object();
		json_object_set_new(o, "n", json_integer((json_int_t)r->nsamples[k]));
		if (r->nsamples[k]) {
			json_object_set_new(o, "p50_ms", json_real(r->p50[k]));
			json_object_set_new(o, "p99_ms", json_real(r->p99[k]));
			json_object_set_new(o, "max_ms", json_real(r->pmax[k]));
		}
		json_object_set_new(steps, ROLE[k], o);
	}
	json_object_set_new(j, "cpu_user_s", json_real(r->cpu_user_s));
	json_object_set_new(j, "cpu_sys_s", json_real(r->cpu_sys_s));
	json_t *pf = json_object();
	for (int i = 0; i < PF_N; i++) {
		json_t *o = json_object();
		json_object_set_new(o, "ms", json_real((double)r->prof.ns[i] / 1e6));
		json_object_set_new(o, "calls", json_integer((json_int_t)r->prof.calls[i]));
		if (r->prof.bytes[i])
			json_object_set_new(o, "bytes", json_integer((json_int_t)r->prof.bytes[i]));
		json_object_set_new(pf, prof_name(i), o);
	}
	json_object_set_new(j, "profile", pf);
	json_object_set_new(j, "nodes", nodes);
	json_object_set_new(j, "hops_detail", hops);
	json_object_set_new(j, "steps", steps);
	return j;
}

/* True if, on some hop, the receiver consumed a different amount of its
 * copy of the link key than the sender (a key left behind at one end). */
static bool ends_differ(const struct run *r)
{
	for (int h = 0; h < r->hops; h++)
		if (r->used_tx[h] != r->used_rx[h])
			return true;
	return false;
}

static const char *ok(bool c) { return c ? "MET" : "NOT MET"; }

static double step_p99_max(const struct run *r)
{
	double m = 0;
	for (int k = 0; k < R_N; k++)
		if (r->nsamples[k] && r->p99[k] > m)
			m = r->p99[k];
	return m;
}

static int parse_list(const char *s, long *out, int max, long lo, long hi, const char *what)
{
	int n = 0;
	char *dup = strdup(s), *save = NULL;
	if (!dup)
		die("out of memory");
	for (char *t = strtok_r(dup, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		char *end;
		errno = 0;
		long v = strtol(t, &end, 10);
		if (errno || *end || v < lo || v > hi || n == max)
			die("%s: %s: want up to %d integers from %ld to %ld", what, t, max, lo, hi);
		out[n++] = v;
	}
	free(dup);
	if (!n)
		die("%s: empty list", what);
	return n;
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: bench-relay [--seconds S] [--hops 2,4] [--batch 65536,1048576]\n"
		"                   [--rng-batch 65536,1048576|0] [--lat-count N] [--lat-batch B]\n"
		"                   [--cap-mib M] [--dir DIR] [--keep] [--no-tls] [--json FILE]\n");
}

int main(int argc, char **argv)
{
	double seconds = 1.5;
	long hops[8], batches[8], lat_batch = 32, lat_count = 1000, cap_mib = 1024;
	int n_hops = parse_list("2,4", hops, 8, 2, MAX_NODES - 1, "--hops");
	int n_batches = parse_list("65536,1048576", batches, 8, UNIT, 4194304, "--batch");
	long rng_batches[8];
	int n_rng = parse_list("65536,1048576", rng_batches, 8, UNIT, 4194304, "--rng-batch");
	bool keep = false, tls = true;
	const char *dir = NULL, *json_path = NULL;
	static const struct option opts[] = {
		{"seconds", required_argument, NULL, 's'}, {"hops", required_argument, NULL, 'H'},
		{"batch", required_argument, NULL, 'b'},   {"rng-batch", required_argument, NULL, 'R'},
		{"lat-count", required_argument, NULL, 'n'}, {"lat-batch", required_argument, NULL, 'l'},
		{"cap-mib", required_argument, NULL, 'c'}, {"dir", required_argument, NULL, 'd'},
		{"keep", no_argument, NULL, 'k'},          {"no-tls", no_argument, NULL, 'T'},
		{"json", required_argument, NULL, 'j'},    {"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0}};
	int c;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		long one[1];
		switch (c) {
		case 's':
			seconds = atof(optarg);
			if (!(seconds > 0 && seconds <= 3600))
				die("--seconds: want 0 < S <= 3600");
			break;
		case 'H':
			n_hops = parse_list(optarg, hops, 8, 1, MAX_NODES - 1, "--hops");
			for (int i = 0; i < n_hops; i++)
				if (hops[i] == 1)
					die("--hops 1 is not a relay: neighbours use their link pool "
					    "directly, and a RELAY path names at least 3 nodes");
			break;
		case 'b':
			n_batches = parse_list(optarg, batches, 8, UNIT, 4194304, "--batch");
			break;
		case 'R':
			n_rng = strcmp(optarg, "0") == 0 ? 0
				: parse_list(optarg, rng_batches, 8, UNIT, 4194304, "--rng-batch");
			break;
		case 'n':
			parse_list(optarg, one, 1, 0, 1000000, "--lat-count");
			lat_count = one[0];
			break;
		case 'l':
			parse_list(optarg, one, 1, UNIT, 4194304, "--lat-batch");
			lat_batch = one[0];
			break;
		case 'c':
			parse_list(optarg, one, 1, 1, 1 << 20, "--cap-mib");
			cap_mib = one[0];
			break;
		case 'd':
			dir = optarg;
			break;
		case 'k':
			keep = true;
			break;
		case 'T':
			tls = false;
			break;
		case 'j':
			json_path = optarg;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	/* Link runs use --batch; the baselines every size that was run. */
	int n_link = n_batches;
	for (int i = 0; i < n_rng; i++) {
		bool have = false;
		for (int j = 0; j < n_batches; j++)
			have = have || batches[j] == rng_batches[i];
		if (!have && n_batches < 8)
			batches[n_batches++] = rng_batches[i];
	}
	for (int i = 0; i < n_batches; i++)
		if (batches[i] % UNIT)
			die("--batch: %ld is not a multiple of %d", batches[i], UNIT);
	if (lat_batch % UNIT)
		die("--lat-batch: not a multiple of %d", UNIT);

	qkm_log_init("bench-relay", QKM_LOG_WARN);
	/* As a node does (cli/node.c): key material lives in the secure heap,
	 * large frames stay in the ordinary heap. */
	if (qkm_secret_heap_init(256u << 20))
		die("secure heap");
	if (qkm_heap_tune())
		fprintf(stderr, "bench-relay: cannot tune the allocator (as a node would warn)\n");
	char tmpl[PATH_MAX];
	bool own_dir = !dir;
	if (own_dir) {
		const char *t = getenv("TMPDIR");
		snprintf(tmpl, sizeof(tmpl), "%s/bench-relay.XXXXXX", t && *t ? t : "/tmp");
		if (!(dir = mkdtemp(tmpl)))
			die("mkdtemp %s: %s", tmpl, strerror(errno));
	} else if (mkdir(dir, 0700) && errno != EEXIST) {
		die("mkdir %s: %s", dir, strerror(errno));
	}

	json_t *jruns = json_array();
	struct run *runs = calloc((size_t)n_hops * (size_t)(n_link + n_rng + 1), sizeof(*runs));
	size_t nr = 0;
	if (!runs)
		die("out of memory");
	printf("bench/relay: in process, %d hop count(s), window %.1f s per run, stores in %s\n",
	       n_hops, seconds, dir);
	fflush(stdout);
	for (int hi = 0; hi < n_hops; hi++) {
		struct bnet *net = net_new(dir, (int)hops[hi]);
		for (int s = 0; s < 2; s++) {
			for (int bi = 0; bi < (s ? n_rng : n_link); bi++) {
				long bb = s ? rng_batches[bi] : batches[bi];
				struct run *r = &runs[nr++];
				run_throughput(net, (uint32_t)bb, s == 1, seconds,
					       (uint64_t)cap_mib << 20, r);
				fprintf(stderr, "  %d hops %-4s %8ld B: %8.1f Mb/s per hop, %8.1f "
					"Mb/s end to end (%s)\n", r->hops, s ? "rng" : "link", bb,
					r->hop_mbps, r->e2e_mbps, r->stopped);
			}
		}
		if (lat_count > 0) {
			struct run *r = &runs[nr++];
			/* The throughput runs' writeback is flushed first, so that
			 * the step times are this run's and not the kernel
			 * flushing hundreds of MiB behind it. */
			sync();
			run_latency(net, (uint32_t)lat_batch, (int)lat_count, r);
			fprintf(stderr, "  %d hops latency, %ld B: origin/relay/dest p99 %.3f/%.3f/%.3f ms\n",
				r->hops, lat_batch, r->p99[R_ORIGIN], r->p99[R_RELAY], r->p99[R_DEST]);
		}
		net_free(net, keep);
	}
	struct samples fsp = {0};
	run_fsync_probe(dir, 200, &fsp);
	double fs50 = pct_ms(&fsp, 50), fs99 = pct_ms(&fsp, 99);
	free(fsp.v);
	if (own_dir && !keep)
		rmdir(dir);

	/* Baselines, after the relay runs, with the machine to themselves. */
	struct xor_result xr[8];
	struct tls_loopback_result tr[8];
	bool tls_ok[8] = {false};
	for (int bi = 0; bi < n_batches; bi++) {
		uint64_t vol = 256u << 20;
		for (size_t i = 0; i < nr; i++)
			if (runs[i].batch == (uint32_t)batches[bi] && runs[i].bytes > vol)
				vol = runs[i].bytes;
		run_xor(vol, (size_t)batches[bi], &xr[bi]);
		if (!tls)
			continue;
		/* Sized from a first 64 MiB run to last about a second. */
		struct tls_loopback_result probe;
		if (tls_loopback_run(64u << 20, (size_t)batches[bi], &probe)) {
			fprintf(stderr, "bench/relay: TLS baseline failed: %s\n", probe.err);
			continue;
		}
		uint64_t tv = (uint64_t)(probe.mbps * 1e6 / 8 * (seconds < 1 ? seconds : 1));
		if (tv < (64u << 20))
			tv = 64u << 20;
		if (tls_loopback_run(tv, (size_t)batches[bi], &tr[bi]))
			fprintf(stderr, "bench/relay: TLS baseline failed: %s\n", tr[bi].err);
		else
			tls_ok[bi] = true;
	}

	/* ---- the table ---- */
	printf("\nthroughput (Mb/s = 10^6 bit/s of relayed key, READY at both ends)\n");
	printf("%4s %-4s %8s %9s %9s %10s %10s %9s %9s %8s %8s %7s %7s\n", "hops", "src", "batch",
	       "relayed", "e2e", "per-hop", "slowest", "XOR", "TLS", "hop/TLS", "hop/XOR", "eff1",
	       "effmax");
	printf("%4s %-4s %8s %9s %9s %10s %10s %9s %9s %8s %8s %7s %7s\n", "", "", "bytes", "MiB",
	       "Mb/s", "Mb/s", "node", "Gb/s", "Mb/s", "", "", "", "");
	bool tput_met = true, eff_met = true, any_tput = false;
	for (size_t i = 0; i < nr; i++) {
		struct run *r = &runs[i];
		if (strcmp(r->kind, "throughput") != 0)
			continue;
		int bi = 0;
		while (bi < n_batches && batches[bi] != (long)r->batch)
			bi++;
		double tmb = tls_ok[bi] ? tr[bi].mbps : NAN;
		printf("%4d %-4s %8u %9.1f %9.1f %10.1f %10s %9.2f %9.1f %8.3f %8.4f %7.4f %7.4f%s\n",
		       r->hops, r->rng ? "rng" : "link", r->batch, (double)r->bytes / (1 << 20),
		       r->e2e_mbps, r->hop_mbps, name(r->slowest), xr[bi].gbps, tmb,
		       r->hop_mbps / tmb, r->hop_mbps / (xr[bi].gbps * 1000), r->eff[0], r->eff_max,
		       r->failed || r->errors || r->bytes != r->received ? "  ERRORS"
		       : ends_differ(r)                                  ? "  LINK ENDS DIFFER"
									 : "");
		any_tput = true;
		tput_met = tput_met && r->hop_mbps >= TARGET_GBPS * 1000;
		eff_met = eff_met && r->eff_max <= TARGET_EFF;
	}
	printf("\nstep time per hop, ms (origin: want -> RELAY sent; relay: RELAY in -> RELAY out;\n"
	       "dest: RELAY in -> stored and RELAY_ACK sent)\n");
	printf("%4s %-4s %8s %6s %8s %8s %8s %8s %8s %8s %8s %8s %8s %7s\n", "hops", "src", "batch",
	       "n", "orig p50", "p99", "max", "rel p50", "p99", "max", "dst p50", "p99", "max",
	       "effmax");
	bool p99_met = true, any_lat = false;
	for (size_t i = 0; i < nr; i++) {
		struct run *r = &runs[i];
		printf("%4d %-4s %8u %6zu %8.3f %8.3f %8.3f %8.3f %8.3f %8.3f %8.3f %8.3f %8.3f %7.3f%s\n",
		       r->hops, r->rng ? "rng" : "link", r->batch, r->nsamples[R_ORIGIN],
		       r->p50[R_ORIGIN], r->p99[R_ORIGIN], r->pmax[R_ORIGIN], r->p50[R_RELAY],
		       r->p99[R_RELAY], r->pmax[R_RELAY], r->p50[R_DEST], r->p99[R_DEST],
		       r->pmax[R_DEST], r->eff_max,
		       strcmp(r->kind, "latency") == 0 ? "  <- one key file" : "");
		if (strcmp(r->kind, "latency") == 0) {
			any_lat = true;
			p99_met = p99_met && step_p99_max(r) <= TARGET_P99_MS;
		}
	}
	/* Where the time went, for the runs over the most hops. */
	int hmax = 0;
	for (size_t i = 0; i < nr; i++)
		hmax = runs[i].hops > hmax ? runs[i].hops : hmax;
	printf("\nwhere the handlers' time goes, %d hops (%% of all nodes' handler time, inclusive:\n"
	       "the file system calls nest inside the store calls, the secure heap inside others)\n",
	       hmax);
	printf("%-28s", "");
	for (size_t i = 0; i < nr; i++)
		if (runs[i].hops == hmax) {
			char lab[32];
			size_t bt = runs[i].batch;
			snprintf(lab, sizeof(lab), "%s %zu%s", runs[i].rng ? "rng" : "link",
				 bt >= 1048576 ? bt >> 20 : bt >= 1024 ? bt >> 10 : bt,
				 bt >= 1048576 ? "M" : bt >= 1024 ? "K" : "");
			printf(" %10s", lab);
		}
	printf("\n%-28s", "handler ms per relay");
	for (size_t i = 0; i < nr; i++)
		if (runs[i].hops == hmax) {
			double tot = 0;
			for (int k = 0; k <= hmax; k++)
				tot += runs[i].busy_s[k];
			printf(" %10.3f", runs[i].relays ? tot * 1e3 / (double)runs[i].relays : NAN);
		}
	printf("\n%-28s", "cpu (user+sys) / wall");
	for (size_t i = 0; i < nr; i++)
		if (runs[i].hops == hmax)
			printf(" %9.0f%%", (runs[i].cpu_user_s + runs[i].cpu_sys_s) / runs[i].wall_s * 100);
	printf("\n%-28s", "  of which sys");
	for (size_t i = 0; i < nr; i++)
		if (runs[i].hops == hmax)
			printf(" %9.0f%%", runs[i].cpu_sys_s / runs[i].wall_s * 100);
	printf("\n");
	for (int it = 0; it < PF_N; it++) {
		printf("%-28s", prof_name(it));
		for (size_t i = 0; i < nr; i++)
			if (runs[i].hops == hmax) {
				double tot = 0;
				for (int k = 0; k <= hmax; k++)
					tot += runs[i].busy_s[k];
				printf(" %9.1f%%", (double)runs[i].prof.ns[it] / 1e9 / tot * 100);
			}
		printf("\n");
	}
	printf("%-28s", "fdatasync calls per relay");
	for (size_t i = 0; i < nr; i++)
		if (runs[i].hops == hmax)
			printf(" %10.2f", runs[i].relays ? (double)runs[i].prof.calls[PF_FDATASYNC] /
							   (double)runs[i].relays : NAN);
	printf("\n%-28s", "WAL+db bytes written/relayed");
	for (size_t i = 0; i < nr; i++)
		if (runs[i].hops == hmax)
			printf(" %10.2f", runs[i].bytes ? (double)runs[i].prof.bytes[PF_PWRITE] /
							  (double)runs[i].bytes : NAN);
	printf("\n");

	printf("\nbaselines (same invocation, after the relay runs)\n");
	for (int bi = 0; bi < n_batches; bi++) {
		printf("  XOR  %8ld B pieces: %9.2f Gb/s (%.0f MiB in %.3f s)\n", batches[bi],
		       xr[bi].gbps, (double)xr[bi].bytes / (1 << 20), xr[bi].seconds);
		if (tls_ok[bi])
			printf("  TLS  %8ld B writes: %9.1f Mb/s (%.0f MiB in %.3f s, %s %s, loopback, "
			       "2 threads)\n", batches[bi], tr[bi].mbps,
			       (double)tr[bi].bytes / (1 << 20), tr[bi].seconds, tr[bi].version,
			       tr[bi].cipher);
	}
	printf("  disk: 4 KiB write + fdatasync in the stores' directory: p50 %.3f ms, p99 %.3f ms "
	       "(200; a durable step holds at least one)\n", fs50, fs99);
	printf("\nper-hop = relayed bytes / time in the busiest node's relay handlers (wall clock,\n"
	       "fdatasync waits included; each node its own thread, as in a network).\n"
	       "e2e = relayed bytes / wall time, every node on this one thread.\n"
	       "eff = link key spent per relayed key byte on a hop (1 = the OTP limit); eff1 = first\n"
	       "hop, effmax = worst hop. LINK ENDS DIFFER: a hop's receiver consumed a different\n"
	       "amount of its copy of the link key than the sender.\n");
	printf("\ntargets (issue #5): per-hop >= %.0f Gb/s: %s; key efficiency <= %.2f: %s; "
	       "step p99 <= %.0f ms (one key file): %s\n", TARGET_GBPS,
	       any_tput ? ok(tput_met) : "not run", TARGET_EFF, any_tput ? ok(eff_met) : "not run",
	       TARGET_P99_MS, any_lat ? ok(p99_met) : "not run");

	if (json_path) {
		json_t *root = json_object(), *base = json_array();
		for (size_t i = 0; i < nr; i++)
			json_array_append_new(jruns, run_json(&runs[i]));
		for (int bi = 0; bi < n_batches; bi++) {
			json_t *o = json_object();
			json_object_set_new(o, "batch_bytes", json_integer(batches[bi]));
			json_object_set_new(o, "xor_gbps", json_real(xr[bi].gbps));
			json_object_set_new(o, "xor_bytes", json_integer((json_int_t)xr[bi].bytes));
			if (tls_ok[bi]) {
				json_object_set_new(o, "tls_mbps", json_real(tr[bi].mbps));
				json_object_set_new(o, "tls_bytes", json_integer((json_int_t)tr[bi].bytes));
				json_object_set_new(o, "tls_cipher", json_string(tr[bi].cipher));
			}
			json_array_append_new(base, o);
		}
		json_object_set_new(root, "seconds", json_real(seconds));
		json_object_set_new(root, "fdatasync_4k_p50_ms", json_real(fs50));
		json_object_set_new(root, "fdatasync_4k_p99_ms", json_real(fs99));
		json_object_set_new(root, "runs", jruns);
		json_object_set_new(root, "baselines", base);
		json_t *t = json_object();
		json_object_set_new(t, "per_hop_1gbps", any_tput ? json_boolean(tput_met) : json_null());
		json_object_set_new(t, "efficiency_1_05", any_tput ? json_boolean(eff_met) : json_null());
		json_object_set_new(t, "p99_1ms", any_lat ? json_boolean(p99_met) : json_null());
		json_object_set_new(root, "targets", t);
		if (json_dump_file(root, json_path, JSON_INDENT(1)))
			fprintf(stderr, "bench/relay: cannot write %s\n", json_path);
		json_decref(root);
	} else {
		json_decref(jruns);
	}
	free(runs);
	return 0;
}
