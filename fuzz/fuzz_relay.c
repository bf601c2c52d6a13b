/* fuzz_relay.c - libFuzzer target for the relay state machine (kma/relay.c)
 * as other nodes drive it: RELAY, RELAY_ACK, RELAY_QUERY, RELAY_STATE,
 * XOR_NEXT and XOR_SHARE frames handed to qkm_relay_on_hop/_on_frame of the
 * nodes of a line A - B - C, as kma_io.c dispatches them (R-REL-5, #7). It
 * must never crash, leak or trip UBSan, a frame must come back handled (0)
 * or refused (QKM_EPEER), and every frame the machines send must parse.
 * Each node has a real store with small link pools (the same bytes at both
 * ends, so a frame a machine made verifies), A and C one relay PENDING
 * toward each other, and B two more neighbours: D, without link key, and E,
 * whose link is down. After each input the relay machines it reached are
 * made anew, and a store whose blocks or counters it changed is put back
 * from its template (a copy made after set-up, kept open: qkm_store_copy):
 * every input meets the same state, and stores never grow (records, which
 * the relay only appends, are dropped with the WAL). The stores live in a
 * directory under $TMPDIR (or /tmp); every commit is synced, so
 * TMPDIR=/dev/shm (run-fuzz's default) about doubles the executions per
 * second.
 *
 * Relays a node holds for next-hop link key (kma/relay.c hold()) are,
 * after the input, released (odd length) or expired by a tick 11 s on.
 *
 * Input: up to 16 records, each a byte sel and then a frame body (TLVs, to
 * the end of the input) or a whole frame (its length field says where the
 * next record starts), delivered in order; the state persists between them.
 *   sel bit 7     1: a whole frame, parsed as a link parses it
 *   sel bit 6     body: request id 1 (relay frames carry 0)
 *   sel bits 5-3  which node receives from which (PAIRS)
 *   sel bits 2-0  body: message type 51 + n (57 and 58 are no relay frames)
 * With QKM_FUZZ_RELAY_SEEDS=DIR set, it runs the machines instead (relay
 * both ways, key data by reference and from the RNG, the AES fallback, a
 * replay, a late relay, queries, relays B cannot pass on, both clause 9
 * modes), writes every frame they send as a seed in DIR (fuzz/corpus/relay:
 * one seed per frame, and one per run with all its frames) and exits. */
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/buf.h"
#include "core/id.h"
#include "core/log.h"
#include "core/secret.h"
#include "kma/relay.h"
#include "proto/frame.h"
#include "store/store.h"

#include "fuzz_store.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define SEC 1000000000ull
#define T0 (1700000000ull * SEC)
#define LINK_BLOCKS 4u              /* blocks per direction of a link pool */
#define LINK_BLOCK 1024u            /* bytes per block */
#define BATCH 64u                   /* relayed key bytes per relay */
#define UNIT 32u
#define MAX_RECORDS 16              /* frames per input */
#define WAL_MAX (8u << 20)          /* records kept until the WAL is this big */

enum { A, B, C, N_NODES };
static const char *const NAMES[N_NODES] = {"A", "B", "C"};

/* Receiver and sender for bits 5-3 of byte 0: both directions of the
 * route, the end-to-end and direct pairs, a stranger and the node itself. */
static const struct {
	int to;
	const char *from;
} PAIRS[8] = {
	{B, "A"}, {C, "B"}, {A, "C"}, {C, "A"}, {B, "C"}, {A, "B"}, {B, "D"}, {B, "B"},
};

struct node {
	int i;
	struct qkm_node_cfg cfg;
	char path[PATH_MAX];
	char tpl_path[PATH_MAX + 8];
	struct qkm_store *tpl;          /* a copy of the store as set up */
	struct qkm_store *st;
	struct qkm_relay *r;
	uint64_t wal;                   /* WAL bytes when last looked at */
	uint64_t print;                 /* state_print() as set up */
};

/* A frame sent, kept only while seeds are made. */
struct sent {
	int from, to;
	uint8_t *p;
	size_t len;
};

static struct node nodes[N_NODES];
static char dir[PATH_MAX];
static bool capture;
static struct sent *queue;
static size_t n_queue, cap_queue;

static int node_index(const char *name)
{
	for (int i = 0; i < N_NODES; i++)
		if (strcmp(NAMES[i], name) == 0)
			return i;
	return -1;
}

/* ---- the relay's ops: frames are checked and dropped ---------------------- */

static int op_send(const char *to, const uint8_t *p, size_t len, void *arg)
{
	struct node *n = arg;
	struct qkm_frame f;
	/* Whatever came in, what goes out is a well-formed relay frame. */
	check(qkm_name_valid(to));
	check(qkm_frame_parse(p, len, &f) == 0);
	check(f.type >= QKM_MSG_RELAY && f.type <= QKM_MSG_XOR_SHARE);
	if (!capture || node_index(to) < 0)
		return 0; /* seeds: D, E and F are not simulated */
	if (n_queue == cap_queue) {
		cap_queue = cap_queue ? 2 * cap_queue : 16;
		queue = realloc(queue, cap_queue * sizeof(*queue));
		check(queue != NULL);
	}
	struct sent *s = &queue[n_queue++];
	s->from = n->i;
	s->to = node_index(to);
	s->p = malloc(len);
	check(s->p != NULL);
	memcpy(s->p, p, len);
	s->len = len;
	return 0;
}

/* As kma_io.c answers: only a neighbour's link can be ready (B's to E is
 * down). relay.c leans on that: XOR_NEXT's next hop is checked only here. */
static bool op_link_ready(const char *nb, void *arg)
{
	const struct node *n = arg;
	for (size_t i = 0; i < n->cfg.n_links; i++)
		if (strcmp(n->cfg.links[i].peer, nb) == 0)
			return strcmp(nb, "E") != 0;
	return false;
}

/* ---- the line A - B - C -------------------------------------------------- */

/* A route from c's node via B to `to`. */
static void add_route(struct qkm_node_cfg *c, const char *to)
{
	struct qkm_node_route *rt = &c->routes[c->n_routes++];
	snprintf(rt->to, sizeof(rt->to), "%s", to);
	rt->n = 3;
	snprintf(rt->path[0], QKM_NAME_MAX, "%s", c->id);
	snprintf(rt->path[1], QKM_NAME_MAX, "B");
	snprintf(rt->path[2], QKM_NAME_MAX, "%s", to);
}

static void node_cfg(int i)
{
	struct qkm_node_cfg *c = &nodes[i].cfg;
	memset(c, 0, sizeof(*c));
	snprintf(c->id, sizeof(c->id), "%s", NAMES[i]);
	c->ksa = i != B;
	snprintf(c->relay.mode, sizeof(c->relay.mode), "otp");
	qkm_relay_defaults(&c->relay);
	c->relay.aes_fallback = i == B; /* B may fall back when B-C runs short */
	c->relay.batch_bytes = BATCH;
	c->n_saes = 2;
	snprintf(c->saes[0].id, QKM_NAME_MAX, "sae-a");
	snprintf(c->saes[0].node, QKM_NAME_MAX, "A");
	snprintf(c->saes[1].id, QKM_NAME_MAX, "sae-c");
	snprintf(c->saes[1].node, QKM_NAME_MAX, "C");
	if (i == B) {
		/* Besides A and C: D, a neighbour without link key, and E, one
		 * whose link is down; so a relay can be unable to go on. */
		static const char *const nb[] = {"A", "C", "D", "E"};
		for (size_t j = 0; j < 4; j++)
			snprintf(c->links[j].peer, QKM_NAME_MAX, "%s", nb[j]);
		c->n_links = 4;
		return;
	}
	snprintf(c->links[0].peer, QKM_NAME_MAX, "B");
	c->n_links = 1;
	add_route(c, NAMES[i == A ? C : A]);
}

static void op_on_pool(const char *node, void *arg)
{
	(void)arg;
	check(qkm_name_valid(node));
}

static void relay_renew(struct node *n)
{
	struct qkm_relay_ops ops = {op_send, op_send, op_send, op_link_ready, op_on_pool, n};
	qkm_relay_free(n->r);
	n->r = qkm_relay_new(&n->cfg, n->st, &ops);
	check(n->r != NULL);
}

static void node_stop(struct node *n)
{
	qkm_relay_free(n->r);
	qkm_store_close(n->st);
	n->r = NULL;
	n->st = NULL;
}

/* A digest of what the relay reads from n's store: the blocks of the pools
 * with the nodes frames come from, and its counters for them. Whatever else
 * a frame makes the relay write goes with a change here: a relay stored at
 * its destination or passed on burns link key from the neighbour it came
 * from; a settled relay is a PENDING block of A's or C's; a query raises a
 * counter of the node that sent it. The life-cycle records are left out:
 * the relay only appends to them. */
static uint64_t state_print(struct node *n)
{
	static const char *const peers[] = {"A", "B", "C", "D"};
	uint64_t h = 14695981039346656037ull;
	for (size_t i = 0; i < sizeof(peers) / sizeof(peers[0]); i++) {
		static const char *const kinds[] = {"relay_seq:", "relay_seen:"};
		check(qkm_store_blocks(n->st, peers[i], 0, false, print_block, &h) == 0);
		for (size_t j = 0; j < 2; j++) {
			char name[32];
			int64_t v;
			snprintf(name, sizeof(name), "%s%s", kinds[j], peers[i]);
			check(qkm_store_counter_get(n->st, name, &v) == 0);
			fold(&h, &v, sizeof(v));
		}
	}
	return h;
}

/* Puts n's store back as it was set up (a copy of its template, which
 * costs far less than opening a store afresh) and makes its relay machine
 * anew. Freeing the machine first ends its batch, as closing would. */
static void node_restore(struct node *n)
{
	qkm_relay_free(n->r);
	n->r = NULL;
	check(qkm_store_copy(n->st, n->tpl) == 0);
	check(qkm_store_wal_bytes(n->st) == 0);
	n->wal = 0;
	n->print = state_print(n);
	relay_renew(n);
}

/* Deterministic bytes, so that every run (and the seeds) sees the same keys. */

static void put_block(struct node *n, const char *peer, enum qkm_pool_kind kind,
		      const struct qkm_id *id, enum qkm_key_type kt, enum qkm_block_state state,
		      uint32_t bytes, uint32_t seed, uint64_t created_ns)
{
	struct qkm_block b;
	uint8_t *data = malloc(bytes);
	check(data != NULL);
	fill(data, bytes, seed);
	memset(&b, 0, sizeof(b));
	snprintf(b.peer, sizeof(b.peer), "%s", peer);
	b.pool_kind = kind;
	b.batch_id = *id;
	b.count = bytes / UNIT;
	b.unit_bytes = UNIT;
	b.key_type = kt;
	b.state = state;
	b.level = QKM_BLOCK_ITS;
	b.created_ns = created_ns;
	b.data = qkm_secret_dup(data, bytes);
	check(b.data != NULL);
	check(qkm_store_block_put(n->st, &b) == 0);
	qkm_secret_free(b.data);
	free(data);
}

/* One direction of a link pool: ENC at `from`, the same bytes DEC at `to`. */
static void link_dir(int from, int to)
{
	for (uint32_t k = 0; k < LINK_BLOCKS; k++) {
		struct qkm_id id = {{'L', (uint8_t)from, (uint8_t)to, (uint8_t)k}};
		uint32_t seed = 100 + 16 * (uint32_t)from + 4 * (uint32_t)to + k;
		put_block(&nodes[from], NAMES[to], QKM_POOL_LINK, &id, QKM_KT_ENC, QKM_BLOCK_READY,
			  LINK_BLOCK, seed, T0 + k);
		put_block(&nodes[to], NAMES[from], QKM_POOL_LINK, &id, QKM_KT_DEC, QKM_BLOCK_READY,
			  LINK_BLOCK, seed, T0 + k);
	}
}

/* A relay from origin to dest left unconfirmed (sequence number 1), as
 * relay_start stores it: the destination's answer settles it. */
static struct qkm_id pending_id(int origin, int dest)
{
	return (struct qkm_id){{'P', (uint8_t)origin, (uint8_t)dest, 0, 0, 0, 0, 0, 0, 0, 0, 1}};
}

static void pending(int origin, int dest)
{
	struct qkm_id id = pending_id(origin, dest);
	char cname[QKM_NAME_MAX + 16];
	put_block(&nodes[origin], NAMES[dest], QKM_POOL_RELAY, &id, QKM_KT_ENC, QKM_BLOCK_PENDING,
		  BATCH, 7 + (uint32_t)origin, T0);
	snprintf(cname, sizeof(cname), "relay_seq:%s", NAMES[dest]);
	check(qkm_store_counter_add(nodes[origin].st, cname, 1) == 0);
}

static void cleanup(void)
{
	for (int i = 0; i < N_NODES; i++) {
		node_stop(&nodes[i]);
		qkm_store_close(nodes[i].tpl);
		nodes[i].tpl = NULL;
		(void)qkm_store_remove(nodes[i].path);
		(void)qkm_store_remove(nodes[i].tpl_path);
	}
	if (dir[0])
		rmdir(dir);
	dir[0] = 0;
}

static void setup(void)
{
	const char *tmp = getenv("TMPDIR");
	check(qkm_secret_heap_init(1u << 26) == 0);
	qkm_log_init("fuzz_relay", QKM_LOG_ERROR);
	snprintf(dir, sizeof(dir), "%s/qkm-fuzz-relay-XXXXXX", tmp && *tmp ? tmp : "/tmp");
	check(mkdtemp(dir) != NULL);
	atexit(cleanup);
	for (int i = 0; i < N_NODES; i++) {
		nodes[i].i = i;
		node_cfg(i);
		snprintf(nodes[i].path, sizeof(nodes[i].path), "%s/%s.db", dir, NAMES[i]);
		snprintf(nodes[i].tpl_path, sizeof(nodes[i].tpl_path), "%s/%s-tpl.db", dir, NAMES[i]);
		check(qkm_store_open(nodes[i].path, &nodes[i].st) == 0);
		check(qkm_store_begin(nodes[i].st) == 0);
	}
	link_dir(A, B);
	link_dir(B, A);
	link_dir(B, C);
	link_dir(C, B);
	pending(A, C);
	pending(C, A);
	for (int i = 0; i < N_NODES; i++) {
		struct node *n = &nodes[i];
		check(qkm_store_commit(n->st) == 0);
		check(qkm_store_open(n->tpl_path, &n->tpl) == 0);
		check(qkm_store_copy(n->tpl, n->st) == 0);
		node_restore(n);
	}
}

/* Hands frame f to node n from `from`, as kma_io.c does; -1 if it is not
 * the relay's (then nothing ran). */
static int dispatch(struct node *n, const char *from, const struct qkm_frame *f)
{
	/* As kma_io.c: the relay frames of one read share a group commit,
	 * ended after the input (LLVMFuzzerTestOneInput). */
	qkm_relay_begin_batch(n->r);
	if (f->type == QKM_MSG_RELAY)
		return qkm_relay_on_hop(n->r, from, f, T0);
	if (f->type > QKM_MSG_RELAY && f->type < 60)
		return qkm_relay_on_frame(n->r, from, f, T0);
	return -1;
}

/* ---- seeds ----------------------------------------------------------------- */

static const char *type_name(uint16_t t)
{
	static const char *const names[] = {"relay", "ack", "query", "state", "xornext",
					    "xorshare"};
	return t >= QKM_MSG_RELAY && t <= QKM_MSG_XOR_SHARE ? names[t - QKM_MSG_RELAY] : "other";
}

/* The frames of a flow so far, each as a whole-frame record. */
static uint8_t *all;
static size_t all_len;

/* sel for frame s: its receiver and sender, and its type. */
static uint8_t seed_sel(const struct sent *s, const struct qkm_frame *f)
{
	for (int j = 0; j < 8; j++)
		if (PAIRS[j].to == s->to && strcmp(PAIRS[j].from, NAMES[s->from]) == 0)
			return (uint8_t)(j << 3 | (f->type - QKM_MSG_RELAY));
	check(0);
	return 0;
}

/* Writes frame number k of a flow as a body seed. */
static void seed_body(const char *out, const char *flow, int k, const struct sent *s)
{
	struct qkm_frame f;
	char path[PATH_MAX + 128];
	check(qkm_frame_parse(s->p, s->len, &f) == 0);
	uint8_t *rec = malloc(1 + f.body_len);
	check(rec != NULL);
	rec[0] = seed_sel(s, &f);
	memcpy(rec + 1, f.body, f.body_len);
	snprintf(path, sizeof(path), "%s/%s-%d-%s-%c%c", out, flow, k, type_name(f.type),
		 NAMES[s->from][0] + 32, NAMES[s->to][0] + 32);
	seed_write(path, rec, 1 + f.body_len);
	free(rec);
}

/* Appends frame s to `all` as a whole-frame record. */
static void seed_append(const struct sent *s)
{
	struct qkm_frame f;
	check(qkm_frame_parse(s->p, s->len, &f) == 0);
	check((all = realloc(all, all_len + 1 + s->len)) != NULL);
	all[all_len] = 0x80 | seed_sel(s, &f);
	memcpy(all + all_len + 1, s->p, s->len);
	all_len += 1 + s->len;
}

enum { PUMP_REPLAY = 1, PUMP_LATE = 2 };

/* Delivers every frame sent, in order, until none is left; each becomes a
 * body seed, and all of them in order, as delivered, one whole-frame seed
 * ("<flow>-all"). PUMP_REPLAY: the first frame is delivered twice (the
 * second time it names used link key). PUMP_LATE: after the first frame,
 * A asks about its relays (10 s on) and the query overtakes the relay, so
 * the destination has given it up when it arrives. */
static void pump(const char *out, const char *flow, int flags)
{
	char path[PATH_MAX + 128];
	all_len = 0;
	for (int k = 1; n_queue; k++) {
		struct sent s = queue[0];
		struct qkm_frame f;
		memmove(queue, queue + 1, --n_queue * sizeof(*queue));
		seed_body(out, flow, k, &s);
		check(qkm_frame_parse(s.p, s.len, &f) == 0);
		for (int t = 0; t < (flags & PUMP_REPLAY && k == 1 ? 2 : 1); t++) {
			seed_append(&s);
			check(dispatch(&nodes[s.to], NAMES[s.from], &f) == 0);
			/* One frame, one read: what it sends leaves now. */
			qkm_relay_end_batch(nodes[s.to].r);
		}
		free(s.p);
		if (flags & PUMP_LATE && k == 1) {
			size_t before = n_queue;
			qkm_relay_tick(nodes[A].r, T0 + 10 * SEC);
			check(n_queue == before + 1);
			struct sent q = queue[before];
			memmove(queue + 1, queue, before * sizeof(*queue));
			queue[0] = q;
		}
	}
	snprintf(path, sizeof(path), "%s/%s-all", out, flow);
	seed_write(path, all, all_len);
}

static void restore_all(void)
{
	for (int i = 0; i < N_NODES; i++) {
		node_cfg(i);
		node_restore(&nodes[i]);
	}
}

/* restore_all for a seed: a flow is the one relay start() asks for, not
 * relays ahead of demand, which would go on until the link pools ran dry
 * (21 relays in a flow, and the flow's checks would not hold). */
static void restore_seed(void)
{
	restore_all();
	for (int i = 0; i < N_NODES; i++)
		nodes[i].cfg.relay.low_bytes = nodes[i].cfg.relay.high_bytes = 0;
}

/* Starts one relay from node i (the one the set-up left PENDING toward the
 * other end of the line counts as in flight already). */
static void start(int i, const char *to)
{
	size_t have = node_index(to) >= 0 ? BATCH : 0;
	check(qkm_relay_want(nodes[i].r, to, have + 1, T0) == 0);
	check(n_queue > 0);
}

static void seeds(const char *out)
{
	struct qkm_relay_stats st;
	capture = true;
	/* Hop by hop, key data by reference: A -> B -> C, C acknowledges. */
	restore_seed();
	start(A, "C");
	pump(out, "otp-link", 0);
	qkm_relay_stats(nodes[C].r, &st);
	check(st.received_bytes == BATCH);
	/* The same, key from the RNG (all of the key file in CT). */
	restore_seed();
	nodes[A].cfg.relay.rng = true;
	start(A, "C");
	pump(out, "otp-rng", 0);
	/* The other way: C -> B -> A. */
	restore_seed();
	start(C, "A");
	pump(out, "otp-c-a", 0);
	/* A's first hop lacks key for OTP: AES-GCM with all of A-B, and so
	 * does B's hop to C (B has the fallback). */
	restore_seed();
	nodes[A].cfg.relay.aes_fallback = true;
	nodes[A].cfg.relay.batch_bytes = LINK_BLOCKS * LINK_BLOCK - 32;
	start(A, "C");
	pump(out, "aes", 0);
	qkm_relay_stats(nodes[C].r, &st);
	check(st.received_bytes == LINK_BLOCKS * LINK_BLOCK - 32);
	/* A replayed hop: B refuses it and tells A. */
	restore_seed();
	start(A, "C");
	pump(out, "replay", PUMP_REPLAY);
	qkm_relay_stats(nodes[B].r, &st);
	check(st.failed == 1);
	/* The relays PENDING since setup: asked about, answered, settled. */
	restore_seed();
	qkm_relay_tick(nodes[A].r, T0 + 10 * SEC);
	qkm_relay_tick(nodes[C].r, T0 + 10 * SEC);
	pump(out, "query", 0);
	qkm_relay_stats(nodes[A].r, &st);
	check(st.in_flight == 0 && st.failed == 1);
	/* Clause 9: XOR at the destination, then central XOR at B. */
	restore_seed();
	snprintf(nodes[A].cfg.relay.mode, sizeof(nodes[A].cfg.relay.mode), "xor-at-destination");
	nodes[A].cfg.relay.rng = true;
	start(A, "C");
	pump(out, "xor-dst", 0);
	qkm_relay_stats(nodes[C].r, &st);
	check(st.received_bytes == BATCH);
	restore_seed();
	snprintf(nodes[A].cfg.relay.mode, sizeof(nodes[A].cfg.relay.mode), "central-xor");
	snprintf(nodes[A].cfg.relay.central, sizeof(nodes[A].cfg.relay.central), "B");
	nodes[A].cfg.relay.rng = true;
	start(A, "C");
	pump(out, "xor-central", 0);
	qkm_relay_stats(nodes[C].r, &st);
	check(st.received_bytes == BATCH);
	/* Late: the destination was asked first and refuses the sequence. */
	restore_seed();
	start(A, "C");
	pump(out, "late", PUMP_LATE);
	qkm_relay_stats(nodes[C].r, &st);
	check(st.received_bytes == 0 && st.failed == 1);
	restore_seed();
	snprintf(nodes[A].cfg.relay.mode, sizeof(nodes[A].cfg.relay.mode), "xor-at-destination");
	start(A, "C");
	pump(out, "xor-late", PUMP_LATE);
	qkm_relay_stats(nodes[C].r, &st);
	check(st.received_bytes == 0 && st.failed == 1);
	/* B cannot pass a relay on: its hop to D has no link key, the one to
	 * E is down, F is no neighbour of B. Hop by hop and XOR. */
	static const char *const stuck[] = {"D", "E", "F"};
	for (int x = 0; x < 2; x++)
		for (size_t j = 0; j < 3; j++) {
			char flow[32];
			restore_seed();
			add_route(&nodes[A].cfg, stuck[j]);
			relay_renew(&nodes[A]);
			if (x)
				snprintf(nodes[A].cfg.relay.mode, sizeof(nodes[A].cfg.relay.mode),
					 "xor-at-destination");
			start(A, stuck[j]);
			snprintf(flow, sizeof(flow), "%sstuck-%c", x ? "xor-" : "", stuck[j][0] + 32);
			pump(out, flow, 0);
			qkm_relay_stats(nodes[B].r, &st);
			/* A hop out of link key holds the relay until key comes
			 * (or its time runs out); the others fail at once. */
			check(j == 0 ? st.held == 1 && st.failed == 0 : st.failed == 1);
		}
	/* No machine acknowledges the relay the set-up left PENDING at A:
	 * acknowledgements as C's would be (send_ack), stored and refused,
	 * so settling it has seeds. */
	for (int ok = 1; ok >= 0; ok--) {
		struct qkm_buf b;
		struct qkm_id id = pending_id(A, C);
		size_t fs;
		qkm_buf_init(&b, 4096, false);
		check(qkm_frame_begin(&b, QKM_MSG_RELAY_ACK, 0, &fs) == 0 &&
		      qkm_put_id(&b, QKM_T_BATCH, &id) == 0 &&
		      qkm_put_u8(&b, QKM_T_OK, (uint8_t)ok) == 0);
		if (ok)
			check(qkm_put_u8(&b, QKM_T_LEVEL, QKM_BLOCK_COMPUTATIONAL) == 0);
		else
			check(qkm_put_str(&b, QKM_T_MESSAGE, "at C: sequence 1 not above 1: stale "
					  "or replayed") == 0);
		check(qkm_frame_end(&b, fs) == 0);
		struct sent ack = {C, A, b.p, b.len};
		seed_body(out, "settle", 2 - ok, &ack);
		qkm_buf_fini(&b);
	}
	capture = false;
	free(queue);
	free(all);
}

/* ---- libFuzzer ---------------------------------------------------------- */

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	setup();
	const char *out = getenv("QKM_FUZZ_RELAY_SEEDS");
	if (out && *out) {
		check(mkdir(out, 0755) == 0 || errno == EEXIST);
		seeds(out);
		exit(0);
	}
	return 0;
}

/* One record of the input: sel, then a body (to the end of the input) or a
 * whole frame. Returns the bytes it took after sel. */
static size_t deliver(uint8_t sel, const uint8_t *p, size_t avail, bool *touched)
{
	static const uint16_t types[8] = {51, 52, 53, 54, 55, 56, 57, 58};
	struct node *n = &nodes[PAIRS[(sel >> 3) & 7].to];
	const char *from = PAIRS[(sel >> 3) & 7].from;
	struct qkm_frame f;
	uint8_t *buf = NULL;
	size_t len = avail;
	int rc;
	if (sel & 0x80) {
		/* A whole frame; another record may follow it. */
		long fs = qkm_frame_size(p, avail);
		if (fs > 0 && (size_t)fs < avail)
			len = (size_t)fs;
		rc = qkm_frame_parse(p, len, &f);
	} else {
		/* The header a link would have read before this body. */
		if (avail > QKM_FRAME_MAX - QKM_FRAME_HDR || !(buf = malloc(QKM_FRAME_HDR + avail)))
			return avail;
		qkm_be32_put(buf, (uint32_t)(QKM_FRAME_HDR + avail - 4));
		buf[4] = QKM_FRAME_VERSION;
		buf[5] = (uint8_t)(types[sel & 7] >> 8);
		buf[6] = (uint8_t)types[sel & 7];
		qkm_be32_put(buf + 7, sel & 0x40 ? 1 : 0);
		memcpy(buf + QKM_FRAME_HDR, p, avail);
		rc = qkm_frame_parse(buf, QKM_FRAME_HDR + avail, &f);
	}
	if (rc == 0 && (rc = dispatch(n, from, &f)) != -1) {
		/* A frame is handled (0) or breaks the protocol (QKM_EPEER);
		 * with a sound store and memory nothing else may come back. */
		check(rc == 0 || rc == QKM_EPEER);
		/* Every transaction was closed. */
		check(qkm_store_begin(n->st) == 0);
		qkm_store_rollback(n->st);
		touched[n->i] = true;
	}
	free(buf);
	return len;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	bool touched[N_NODES] = {false};
	size_t off = 0;
	/* Several frames in one input reach what one cannot: a combination
	 * of XOR shares, a hop and its replay, a query and its answer. */
	for (int k = 0; k < MAX_RECORDS && off < size; k++) {
		uint8_t sel = data[off++];
		off += deliver(sel, data + off, size - off, touched);
	}
	/* Relays left waiting for link key (B's hop to D has none): handled
	 * again once their 10 s are up, as the pool scan does, or released as
	 * a KSA frame from their neighbour makes them (the input's length
	 * picks which); either refuses them, which may store. */
	for (int i = 0; i < N_NODES; i++) {
		static const char *const from[] = {"A", "B", "C", "D"};
		for (size_t j = 0; touched[i] && j < sizeof(from) / sizeof(from[0]); j++) {
			if (!qkm_relay_holds(nodes[i].r, from[j]))
				continue;
			if (size & 1)
				qkm_relay_release(nodes[i].r, from[j], T0);
			else
				qkm_relay_tick(nodes[i].r, T0 + 11 * SEC);
			check(!qkm_relay_holds(nodes[i].r, from[j]));
		}
	}
	for (int i = 0; i < N_NODES; i++)
		qkm_relay_end_batch(nodes[i].r);
	for (int i = 0; i < N_NODES; i++) {
		struct node *n = &nodes[i];
		uint64_t wal = qkm_store_wal_bytes(n->st);
		if (!touched[i])
			continue;
		/* A store written to is put back unless only records were
		 * added (most refusals) and their WAL is still small. */
		if (wal != n->wal && (wal > WAL_MAX || state_print(n) != n->print))
			node_restore(n);
		else
			relay_renew(n);
		n->wal = qkm_store_wal_bytes(n->st);
	}
	return 0;
}
