/* fuzz_acq.c - libFuzzer target for the acquisition state machine
 * (kma/acq.c) as the KMA at the other end of a QKD link drives it: ACQ_*,
 * RECONCILE*, PAIRCHECK* and POOL_SYNC frames handed to qkm_acq_on_frame
 * of the leader A or the follower B, as kma_io.c dispatches them. It must
 * never crash, leak or trip UBSan, a frame must come back handled (0) or
 * refused (QKM_EPEER), no transaction may be left open, and every frame
 * the machines send must parse.
 * Each end has a real store holding a pool of READY blocks (mostly the
 * same bytes at both ends; some held by one end only, some young, some
 * partly used, one batch whose bytes differ; A also a relay-pool block),
 * and a machine set up as a link in use finds it: reconciled, QKD-key
 * files f-0..f-8 handed over (B lacks f-3 and holds f-7 with a bit
 * flipped), four rounds of two files in flight (R1 matched at B, stored at
 * its next flush; R2 waiting at B for f-3; R3 and R4 sent but not arrived,
 * R4 a MAC mismatch at B), f-8 buffered at A for a fifth round, and a
 * pair-check of A in parts (cfg.pc_part_bytes small: two blocks a part)
 * with its first two parts unanswered. Round batch IDs come from
 * RAND_bytes, which reads a fixed stream here, so they are the same for
 * every input and in the seeds.
 * After each input the machines it reached are made anew (each from the
 * other end's frames, kept from the first set-up: either is rebuilt
 * alone), and a store whose blocks it changed is put back from its
 * template (a copy made after set-up, kept open: qkm_store_copy): every
 * input meets the same state. Records and counters, which acq.c only
 * writes, may stay until the WAL grows large. The stores live in a
 * directory under $TMPDIR (or /tmp); run-fuzz puts it on /dev/shm.
 *
 * Input: up to 16 records, each a byte sel and then a frame body (TLVs, to
 * the end of the input), a whole frame (its length field says where the
 * next record starts) or nothing, handled in order; the state persists
 * between them, and the clock starts at T0. Frames the machines send are
 * checked and dropped; the owner's step comes after a refused frame too.
 *   sel bit 7     1: a whole frame, parsed as a link parses it
 *   sel bit 6     the receiver: 0 A (leader), 1 B (follower)
 *   sel bits 5-4  then its owner: 0 reads on, 1 ends the read
 *                 (qkm_acq_flush), 2 ticks 1 s later (qkm_acq_tick),
 *                 3 starts a pair-check (qkm_acq_paircheck, request id 7)
 *   sel bits 3-0  body: the message type, TYPES[n] (request id 7, that of
 *                 every pair-check); no frame, no bytes after sel: 13 the
 *                 link to the peer fills up, so that sends fail (again: it
 *                 takes frames again), 14 the clock moves 10 s on, 15 only
 *                 the owner's step
 * With QKM_FUZZ_ACQ_SEEDS=DIR set, it runs the machines instead (rounds
 * confirmed, aborted on a MAC mismatch, given up by the follower when
 * a file never comes or by the leader; stale rounds reconciled; pool syncs
 * both ways, young blocks spared and later burned; pair-checks in parts
 * from either end), writes every frame they pass as a body seed in DIR
 * (fuzz/corpus/acq: one seed per distinct frame, and one per run with its
 * records, "<run>-all") and exits. */
#define OPENSSL_SUPPRESS_DEPRECATED /* RAND_set_rand_method: a fixed stream */

#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/rand.h>

#include "core/buf.h"
#include "core/id.h"
#include "core/keyfile.h"
#include "core/log.h"
#include "core/secret.h"
#include "kma/acq.h"
#include "proto/frame.h"
#include "store/store.h"

#include "fuzz_store.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define SEC 1000000000ull
#define T0 (1700000000ull * SEC)
#define UNIT 32u
#define BLOCK_KEYS 16u              /* keys per block of the pool as set up */
#define FILE_BYTES 512u             /* bytes per QKD-key file: two a round */
#define N_FILES 9
#define PC_REQ 7u                   /* request id of every pair-check */
#define MAX_RECORDS 16              /* records per input */
#define WAL_MAX (8u << 20)          /* records kept until the WAL is this big */

enum { A, B, N_SIDES };
static const char *const NAMES[N_SIDES] = {"A", "B"};
enum { ACT_NONE, ACT_FLUSH, ACT_TICK, ACT_PAIRCHECK };
enum { K_FULL = 13, K_CLOCK = 14, K_NONE = 15 };

/* Bits 3-0 of a body record: the pair-check frames take five of the
 * thirteen. (Other types come in whole frames.) */
static const uint16_t TYPES[K_FULL] = {
	QKM_MSG_ACQ_PREPARE,   QKM_MSG_ACQ_PREPARED,  QKM_MSG_ACQ_ABORT,     QKM_MSG_ACQ_COMMIT,
	QKM_MSG_ACQ_COMMITTED, QKM_MSG_RECONCILE,     QKM_MSG_RECONCILE_ACK, QKM_MSG_POOL_SYNC,
	QKM_MSG_PAIRCHECK,     QKM_MSG_PAIRCHECK,     QKM_MSG_PAIRCHECK,     QKM_MSG_PAIRCHECK_ACK,
	QKM_MSG_PAIRCHECK_ACK,
};

/* The pool as set up: batches 'T' k, each two blocks of BLOCK_KEYS keys,
 * first index 0 (A's direction: ENC at A, DEC at B) and BLOCK_KEYS (B's). */
static const struct {
	uint8_t k;
	uint8_t at;              /* 1 << A, 1 << B: the ends that hold it */
	bool young;              /* stored 1 s before T0 (else 60 s) */
	bool differ;             /* B's bytes are not A's */
	uint32_t used_a, used_b; /* bytes used of A's ENC block, of B's */
} POOL[] = {
	{1, 3, false, false, 0, 0},   /* the same at both ends */
	{2, 3, false, false, 64, 96}, /* each end drew from its direction */
	{3, 1, false, false, 0, 0},   /* lost at B */
	{4, 2, false, false, 0, 0},   /* lost at A */
	{5, 3, true, false, 0, 0},    /* just stored */
	{6, 3, false, true, 0, 0},    /* different bytes */
	{7, 2, true, false, 0, 0},    /* just stored, at B only */
};

/* A frame sent, kept while machines are set up and seeds are made. */
struct msg {
	uint8_t *p;
	size_t len;
};

struct queue {
	struct msg *m;
	size_t n, cap;
};

struct side {
	int i;
	struct qkm_acq_cfg cfg;
	char path[PATH_MAX];
	char tpl_path[PATH_MAX + 8];
	struct qkm_store *tpl;          /* a copy of the store as set up */
	struct qkm_store *st;
	struct qkm_acq *acq;
	uint64_t wal;                   /* WAL bytes when last looked at */
	uint64_t print;                 /* state_print() as set up */
	struct queue out;               /* frames it sent, while captured */
	int pc_calls, pc_err;           /* pair-check results */
	struct qkm_paircheck_result pc;
};

static struct side sides[N_SIDES];
static char dir[PATH_MAX];
static uint64_t now;
static bool capture;
static bool link_full;              /* sends fail (K_FULL) */
static int last_rc;                 /* qkm_acq_on_frame's, of the last record */
/* B's RECONCILE (no PENDING rounds) that A's set-up takes, and A's frames
 * B's takes: RECONCILE_ACK, PREPARE R1, PREPARE R2. */
static struct msg recon, kept[3];

/* ---- a fixed random stream: the same round batch IDs every input ------ */

static uint64_t rng_state;

static int rng_bytes(unsigned char *buf, int num)
{
	for (int i = 0; i < num; i++) {
		/* splitmix64, a byte a step */
		uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
		z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
		z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
		buf[i] = (unsigned char)(z ^ (z >> 31));
	}
	return 1;
}

static int rng_status(void)
{
	return 1;
}

static const RAND_METHOD fixed_rand = {
	.bytes = rng_bytes,
	.pseudorand = rng_bytes,
	.status = rng_status,
};

/* ---- frames out ---------------------------------------------------------- */

static void q_push(struct queue *q, const uint8_t *p, size_t len)
{
	if (q->n == q->cap) {
		struct msg *m = realloc(q->m, (q->cap ? 2 * q->cap : 16) * sizeof(*m));
		check(m != NULL);
		q->m = m;
		q->cap = q->cap ? 2 * q->cap : 16;
	}
	q->m[q->n].p = malloc(len);
	check(q->m[q->n].p != NULL);
	memcpy(q->m[q->n].p, p, len);
	q->m[q->n].len = len;
	q->n++;
}

static struct msg q_pop(struct queue *q)
{
	check(q->n > 0);
	struct msg m = q->m[0];
	memmove(q->m, q->m + 1, --q->n * sizeof(*q->m));
	return m;
}

static void q_clear(struct queue *q)
{
	for (size_t i = 0; i < q->n; i++)
		free(q->m[i].p);
	q->n = 0;
}

static uint16_t msg_type(const struct msg *m)
{
	return m->len >= QKM_FRAME_HDR ? (uint16_t)(m->p[5] << 8 | m->p[6]) : 0;
}

/* Whatever came in, what goes out is a well-formed acquisition frame. */
static int op_send(const uint8_t *frame, size_t len, void *arg)
{
	struct side *s = arg;
	struct qkm_frame f;
	check(qkm_frame_parse(frame, len, &f) == 0);
	check(f.type >= QKM_MSG_ACQ_PREPARE && f.type <= QKM_MSG_POOL_SYNC);
	if (link_full)
		return 1; /* as kma_io.c's when the link cannot queue it */
	if (capture)
		q_push(&s->out, frame, len);
	return 0;
}

/* Both ends of the one "session" get the same key for a batch, as from the
 * TLS exporter; any function of the batch does for the machines. */
static int op_mac_key(const struct qkm_id *batch, uint8_t key[32], void *arg)
{
	(void)arg;
	for (int i = 0; i < 32; i++)
		key[i] = (uint8_t)(batch->b[i % QKM_ID_LEN] ^ 0x5c ^ i);
	return 0;
}

static void op_settled(const char *qkd_id, bool stored, void *arg)
{
	(void)stored;
	(void)arg;
	check(qkm_name_valid(qkd_id));
}

static void op_missing(const char (*ids)[QKM_NAME_MAX], uint32_t n, void *arg)
{
	(void)arg;
	check(n > 0);
	for (uint32_t i = 0; i < n; i++)
		check(qkm_name_valid(ids[i]));
}

static void op_paircheck(uint32_t req, const struct qkm_paircheck_result *r, int err, void *arg)
{
	struct side *s = arg;
	check(req == PC_REQ && (err ? r == NULL : r != NULL));
	check(!r || memchr(r->detail, 0, sizeof(r->detail)) != NULL);
	s->pc_calls++;
	s->pc_err = err;
	if (r)
		s->pc = *r;
}

/* ---- the two ends -------------------------------------------------------- */

static void side_cfg(int i)
{
	struct qkm_acq_cfg *c = &sides[i].cfg;
	memset(c, 0, sizeof(*c));
	qkm_acq_cfg_defaults(c);
	snprintf(c->self, sizeof(c->self), "%s", NAMES[i]);
	snprintf(c->peer, sizeof(c->peer), "%s", NAMES[1 - i]);
	snprintf(c->link, sizeof(c->link), "A-B");
	snprintf(c->module, sizeof(c->module), "qkd-%s", NAMES[i]);
	c->unit_bytes = UNIT;
	c->batch_max_bytes = 2 * FILE_BYTES;
	c->batch_ns = 100000000u;
	c->window = 4;
	c->wait_ns = 2 * SEC;
	c->pc_part_bytes = 1000; /* two blocks a part */
	c->track_ids = i == B;
}

static void acq_renew(struct side *s)
{
	static const struct qkm_acq_source_cbs cbs = {op_settled, op_missing, NULL};
	qkm_acq_free(s->acq);
	s->acq = qkm_acq_new(&s->cfg, s->st, op_send, op_mac_key, s);
	check(s->acq != NULL);
	qkm_acq_set_source_cbs(s->acq, &cbs);
	qkm_acq_set_paircheck_cb(s->acq, op_paircheck, s);
	s->pc_calls = 0;
}

/* Deterministic bytes, so that every run (and the seeds) sees the same keys. */

/* QKD-key file f-<n> from s's module, as the module delivers it; B's copy
 * of f-7 has one bit flipped, and B never gets f-3. */
static void feed(struct side *s, int n)
{
	uint8_t d[FILE_BYTES];
	struct qkm_keyfile kf;
	if (s->i == B && n == 3)
		return;
	fill(d, sizeof(d), 500 + (uint32_t)n);
	if (s->i == B && n == 7)
		d[100] ^= 0x10;
	qkm_keyfile_init(&kf, QKM_KF_QKD);
	snprintf(kf.m.qkd.qkd_key_id, sizeof(kf.m.qkd.qkd_key_id), "f-%d", n);
	kf.m.qkd.key_length = 8 * FILE_BYTES;
	snprintf(kf.m.qkd.qkd_module_id, sizeof(kf.m.qkd.qkd_module_id), "qkd-%s", NAMES[s->i]);
	snprintf(kf.m.qkd.matching_qkd_module_id, sizeof(kf.m.qkd.matching_qkd_module_id),
		 "qkd-%s", NAMES[1 - s->i]);
	kf.data = qkm_secret_dup(d, sizeof(d));
	check(kf.data != NULL);
	check(qkm_acq_on_keyfile(s->acq, &kf, T0 - SEC) == 0);
	qkm_keyfile_fini(&kf);
}

static void hand(struct side *s, const struct msg *m)
{
	struct qkm_frame f;
	check(qkm_frame_parse(m->p, m->len, &f) == 0);
	check(qkm_acq_on_frame(s->acq, &f, now) == 0);
}

/* A as a link in use finds it (the header comment): B's RECONCILE handled,
 * its files handed over, four rounds sent, a pair-check begun. Its frames
 * that B's set-up takes are kept the first time, and dropped. */
static void prime_a(void)
{
	struct side *s = &sides[A];
	rng_state = 0x51ed270b27d3a5c1ull;
	acq_renew(s);
	qkm_acq_on_peer_up(s->acq, now);
	hand(s, &recon);
	check(qkm_acq_reconciled(s->acq));
	for (int n = 0; n < N_FILES; n++)
		feed(s, n);
	qkm_acq_tick(s->acq, now);
	check(qkm_acq_paircheck(s->acq, PC_REQ, now) == 0);
	/* RECONCILE_ACK, PREPARE R1..R4, two parts of the pair-check. */
	check(s->out.n == 7);
	for (int k = 0; k < 3; k++) {
		struct msg m = q_pop(&s->out);
		if (kept[k].p) {
			check(m.len == kept[k].len && memcmp(m.p, kept[k].p, m.len) == 0);
			free(m.p);
		} else {
			kept[k] = m;
		}
	}
	check(msg_type(&kept[0]) == QKM_MSG_RECONCILE_ACK);
	check(msg_type(&kept[1]) == QKM_MSG_ACQ_PREPARE &&
	      msg_type(&kept[2]) == QKM_MSG_ACQ_PREPARE);
}

/* B likewise: reconciled by A's answer, its files handed over, R1 matched
 * (stored at its next flush) and R2 waiting for f-3. */
static void prime_b(void)
{
	struct side *s = &sides[B];
	struct qkm_acq_stats st;
	acq_renew(s);
	qkm_acq_on_peer_up(s->acq, now);
	check(s->out.n == 1 && s->out.m[0].len == recon.len &&
	      memcmp(s->out.m[0].p, recon.p, recon.len) == 0);
	q_clear(&s->out);
	hand(s, &kept[0]);
	check(qkm_acq_reconciled(s->acq));
	for (int n = 0; n < N_FILES; n++)
		feed(s, n);
	hand(s, &kept[1]);
	hand(s, &kept[2]);
	qkm_acq_stats(s->acq, &st);
	check(st.in_flight == 2 && st.waiting_files && s->out.n == 0);
}

static void prime(struct side *s)
{
	bool was = capture;
	uint64_t wal = qkm_store_wal_bytes(s->st);
	check(!link_full);
	capture = true;
	now = T0;
	if (s->i == A)
		prime_a();
	else
		prime_b();
	capture = was;
	if (!capture)
		q_clear(&s->out);
	/* Setting up reads the store and writes nothing. */
	check(qkm_store_wal_bytes(s->st) == wal);
}

/* ---- stores -------------------------------------------------------------- */

/* A digest of what acq.c reads from s's store: the blocks of the pool
 * (every state; a burn moves used on) and the QKD-key IDs it remembers.
 * Its life-cycle records and counters are left out: it only adds to them. */
static uint64_t state_print(struct side *s)
{
	uint64_t h = 14695981039346656037ull;
	check(qkm_store_blocks(s->st, NAMES[1 - s->i], 0, false, print_block, &h) == 0);
	for (int n = 0; n < N_FILES; n++) {
		char id[16];
		bool held;
		snprintf(id, sizeof(id), "f-%d", n);
		check(qkm_store_qkd_held(s->st, "A-B", id, &held) == 0);
		fold(&h, &held, sizeof(held));
	}
	return h;
}

/* Puts s's store back as set up (a copy of its template, which costs far
 * less than opening a store afresh). Its machine must be gone. */
static void store_restore(struct side *s)
{
	check(qkm_store_copy(s->st, s->tpl) == 0);
	check(qkm_store_wal_bytes(s->st) == 0);
	s->wal = 0;
}

static void put_block(struct side *s, enum qkm_pool_kind kind, const struct qkm_id *id,
		      uint32_t first, enum qkm_key_type kt, uint32_t seed, uint64_t created_ns,
		      uint32_t used)
{
	uint8_t data[BLOCK_KEYS * UNIT];
	struct qkm_block b;
	fill(data, sizeof(data), seed);
	memset(&b, 0, sizeof(b));
	snprintf(b.peer, sizeof(b.peer), "%s", NAMES[1 - s->i]);
	b.pool_kind = kind;
	b.batch_id = *id;
	b.first_index = first;
	b.count = BLOCK_KEYS;
	b.unit_bytes = UNIT;
	b.key_type = kt;
	b.state = QKM_BLOCK_READY;
	b.level = QKM_BLOCK_ITS;
	b.created_ns = created_ns;
	snprintf(b.qkd_module_id, sizeof(b.qkd_module_id), "qkd-%s", NAMES[s->i]);
	b.data = qkm_secret_dup(data, sizeof(data));
	check(b.data != NULL);
	check(qkm_store_block_put(s->st, &b) == 0);
	qkm_secret_free(b.data);
	if (used)
		check(qkm_store_block_set_used(s->st, b.rowid, used) == 0);
}

static void pool(void)
{
	for (size_t j = 0; j < sizeof(POOL) / sizeof(POOL[0]); j++) {
		struct qkm_id id = {{'T', POOL[j].k}};
		uint64_t created = T0 - (POOL[j].young ? 1 : 60) * SEC;
		for (int i = 0; i < N_SIDES; i++) {
			uint32_t seed = 1000 + 2u * POOL[j].k;
			if (!(POOL[j].at & 1 << i))
				continue;
			if (i == B && POOL[j].differ)
				seed += 500;
			/* First index 0: ENC at A; BLOCK_KEYS: ENC at B. */
			put_block(&sides[i], QKM_POOL_LINK, &id, 0,
				  i == A ? QKM_KT_ENC : QKM_KT_DEC, seed, created,
				  i == A ? POOL[j].used_a : 0);
			put_block(&sides[i], QKM_POOL_LINK, &id, BLOCK_KEYS,
				  i == A ? QKM_KT_DEC : QKM_KT_ENC, seed + 1, created,
				  i == B ? POOL[j].used_b : 0);
		}
	}
	/* A relay-pool block A shares with B end to end: in the pair-check,
	 * not in the pool sync. */
	struct qkm_id rid = {{'R', 1}};
	put_block(&sides[A], QKM_POOL_RELAY, &rid, 0, QKM_KT_ENC, 77, T0 - 60 * SEC, 0);
}

static void cleanup(void)
{
	for (int i = 0; i < N_SIDES; i++) {
		struct side *s = &sides[i];
		qkm_acq_free(s->acq);
		s->acq = NULL;
		qkm_store_close(s->st);
		qkm_store_close(s->tpl);
		s->st = s->tpl = NULL;
		q_clear(&s->out);
		free(s->out.m);
		s->out.m = NULL;
		(void)qkm_store_remove(s->path);
		(void)qkm_store_remove(s->tpl_path);
	}
	for (int k = 0; k < 3; k++) {
		free(kept[k].p);
		kept[k].p = NULL;
	}
	free(recon.p);
	recon.p = NULL;
	if (dir[0])
		rmdir(dir);
	dir[0] = 0;
}

static void setup(void)
{
	const char *tmp = getenv("TMPDIR");
	check(qkm_secret_heap_init(1u << 26) == 0);
	qkm_log_init("fuzz_acq", QKM_LOG_ERROR);
	check(RAND_set_rand_method(&fixed_rand) == 1);
	snprintf(dir, sizeof(dir), "%s/qkm-fuzz-acq-XXXXXX", tmp && *tmp ? tmp : "/tmp");
	check(mkdtemp(dir) != NULL);
	check(atexit(cleanup) == 0);
	for (int i = 0; i < N_SIDES; i++) {
		struct side *s = &sides[i];
		s->i = i;
		side_cfg(i);
		snprintf(s->path, sizeof(s->path), "%s/%s.db", dir, NAMES[i]);
		snprintf(s->tpl_path, sizeof(s->tpl_path), "%s/%s-tpl.db", dir, NAMES[i]);
		check(qkm_store_open(s->path, &s->st) == 0);
		check(qkm_store_begin(s->st) == 0);
	}
	pool();
	for (int i = 0; i < N_SIDES; i++) {
		struct side *s = &sides[i];
		check(qkm_store_commit(s->st) == 0);
		check(qkm_store_open(s->tpl_path, &s->tpl) == 0);
		check(qkm_store_copy(s->tpl, s->st) == 0);
		store_restore(s);
		s->print = state_print(s);
	}
	/* B's RECONCILE, as B sends it (prime_b checks); then A first, as B's
	 * set-up takes A's frames. */
	struct qkm_buf b;
	size_t start;
	qkm_buf_init(&b, 4096, false);
	check(qkm_frame_begin(&b, QKM_MSG_RECONCILE, 1, &start) == 0 &&
	      qkm_put_str(&b, QKM_T_LINK, "A-B") == 0 && qkm_frame_end(&b, start) == 0);
	recon.len = b.len;
	check((recon.p = malloc(b.len)) != NULL);
	memcpy(recon.p, b.p, b.len);
	qkm_buf_fini(&b);
	prime(&sides[A]);
	prime(&sides[B]);
}

/* ---- one record ---------------------------------------------------------- */

/* Runs the record sel (then p, avail bytes left): builds and hands over its
 * frame, then does what its owner does. Returns the bytes it took after sel. */
static size_t record(uint8_t sel, const uint8_t *p, size_t avail, bool *touched)
{
	struct side *s = &sides[sel >> 6 & 1];
	unsigned kind = sel & 15, act = sel >> 4 & 3;
	struct qkm_frame f;
	uint8_t *buf = NULL;
	size_t len = 0;
	int rc = -1;
	if (sel & 0x80) {
		/* A whole frame; another record may follow it. */
		long fs = qkm_frame_size(p, avail);
		len = fs > 0 && (size_t)fs < avail ? (size_t)fs : avail;
		rc = qkm_frame_parse(p, len, &f);
	} else if (kind < K_FULL) {
		/* The header a link would have read before this body. */
		len = avail;
		if (avail <= QKM_FRAME_MAX - QKM_FRAME_HDR &&
		    (buf = malloc(QKM_FRAME_HDR + avail)) != NULL) {
			qkm_be32_put(buf, (uint32_t)(QKM_FRAME_HDR + avail - 4));
			buf[4] = QKM_FRAME_VERSION;
			buf[5] = (uint8_t)(TYPES[kind] >> 8);
			buf[6] = (uint8_t)TYPES[kind];
			qkm_be32_put(buf + 7, PC_REQ);
			if (avail)
				memcpy(buf + QKM_FRAME_HDR, p, avail);
			rc = qkm_frame_parse(buf, QKM_FRAME_HDR + avail, &f);
		}
	} else if (kind == K_FULL) {
		link_full = !link_full;
	} else if (kind == K_CLOCK) {
		now += 10 * SEC;
	}
	last_rc = -1;
	if (rc == 0) {
		last_rc = rc = qkm_acq_on_frame(s->acq, &f, now);
		/* A frame is handled (0) or breaks the protocol (QKM_EPEER),
		 * or its answer could not be sent (QKM_EIO); with a sound
		 * store and memory nothing else may come back. */
		check(rc == 0 || rc == QKM_EPEER || (link_full && rc == QKM_EIO));
		touched[s->i] = true;
	}
	free(buf);
	switch (act) {
	case ACT_FLUSH:
		qkm_acq_flush(s->acq);
		break;
	case ACT_TICK:
		now += SEC;
		qkm_acq_tick(s->acq, now);
		break;
	case ACT_PAIRCHECK:
		rc = qkm_acq_paircheck(s->acq, PC_REQ, now);
		check(rc == 0 || (link_full && rc == QKM_EIO));
		break;
	}
	if (act != ACT_NONE)
		touched[s->i] = true;
	if (touched[s->i]) {
		/* Every transaction was closed. */
		check(qkm_store_begin(s->st) == 0);
		qkm_store_rollback(s->st);
	}
	return len;
}

/* After an input: s's machine made anew, its store put back if the input
 * changed what the machine reads (or grew the WAL too much). */
static void side_reset(struct side *s)
{
	qkm_acq_free(s->acq);
	s->acq = NULL;
	q_clear(&s->out);
	uint64_t wal = qkm_store_wal_bytes(s->st);
	if (wal != s->wal && (wal > WAL_MAX || state_print(s) != s->print))
		store_restore(s);
	s->wal = qkm_store_wal_bytes(s->st);
	prime(s);
}

/* ---- seeds --------------------------------------------------------------- */

static const char *type_name(uint16_t t)
{
	static const char *const names[] = {"prepare", "prepared", "abort", "commit",
					    "committed", "reconcile", "reconack"};
	if (t >= QKM_MSG_ACQ_PREPARE && t <= QKM_MSG_RECONCILE_ACK)
		return names[t - QKM_MSG_ACQ_PREPARE];
	return t == QKM_MSG_PAIRCHECK ? "pc" : t == QKM_MSG_PAIRCHECK_ACK ? "pcack"
	       : t == QKM_MSG_POOL_SYNC ? "sync" : "other";
}

static const char *out_dir;
static char flow[32];
static int n_rec, n_seed;
static uint8_t *all;                /* the records of the run so far */
static size_t all_len;

/* Writes a seed unless one with the same bytes was written (the same
 * frame passes in several runs). */
static void seed_file(const char *path, const uint8_t *p, size_t len)
{
	static uint64_t seen[256];
	static size_t n_seen;
	uint64_t h = 14695981039346656037ull;
	fold(&h, p, len);
	for (size_t i = 0; i < n_seen; i++)
		if (seen[i] == h)
			return;
	check(n_seen < sizeof(seen) / sizeof(seen[0]));
	seen[n_seen++] = h;
	seed_write(path, p, len);
}

/* Frame m, from one end to the other, as a body record (action act). */
static void seed_body(int from, int act, const struct msg *m)
{
	struct qkm_frame f;
	char path[PATH_MAX + 128];
	unsigned kind = 0;
	check(qkm_frame_parse(m->p, m->len, &f) == 0);
	while (kind < sizeof(TYPES) / sizeof(TYPES[0]) && TYPES[kind] != f.type)
		kind++;
	check(kind < sizeof(TYPES) / sizeof(TYPES[0]));
	uint8_t *rec = malloc(1 + f.body_len);
	check(rec != NULL);
	rec[0] = (uint8_t)((1 - from) << 6 | act << 4 | (int)kind);
	memcpy(rec + 1, f.body, f.body_len);
	snprintf(path, sizeof(path), "%s/%s-%02d-%s-%c%c", out_dir, flow, ++n_seed,
		 type_name(f.type), NAMES[from][0] + 32, NAMES[1 - from][0] + 32);
	seed_file(path, rec, 1 + f.body_len);
	free(rec);
}

/* Runs one record as the fuzzer does and adds it to the run's. */
static void flow_record(uint8_t sel, const uint8_t *p, size_t len)
{
	bool touched[N_SIDES] = {false};
	check(n_rec++ < MAX_RECORDS);
	uint8_t *grown = realloc(all, all_len + 1 + len);
	check(grown != NULL);
	all = grown;
	all[all_len] = sel;
	if (len)
		memcpy(all + all_len + 1, p, len);
	all_len += 1 + len;
	check(record(sel, p, len, touched) == len);
}

/* Hands the first frame from's machine sent to the other end (which must
 * take it) and has its owner do act. */
static void pass(int from, int act)
{
	struct msg m = q_pop(&sides[from].out);
	seed_body(from, act, &m);
	flow_record((uint8_t)(0x80 | (1 - from) << 6 | act << 4), m.p, m.len);
	check(last_rc == 0);
	free(m.p);
}

/* A record without a frame (K_FULL, K_CLOCK or K_NONE) for `to`, with act. */
static void idle(int to, unsigned kind, int act)
{
	flow_record((uint8_t)(to << 6 | act << 4 | (int)kind), NULL, 0);
}

/* Frames both ways, one each in turn, each with act after it (a flush
 * ends each read), until none is left; then `ticks` times both ends tick
 * and it goes on. */
static void pump(int act, int ticks)
{
	for (;;) {
		bool moved = false;
		for (int i = 0; i < N_SIDES; i++)
			if (sides[i].out.n) {
				pass(i, act);
				moved = true;
			}
		if (moved)
			continue;
		if (ticks-- <= 0)
			return;
		idle(A, K_NONE, ACT_TICK);
		idle(B, K_NONE, ACT_TICK);
	}
}

static void drop(int i, uint16_t type)
{
	struct queue *q = &sides[i].out;
	size_t k = 0;
	for (size_t j = 0; j < q->n; j++)
		if (type && msg_type(&q->m[j]) != type)
			q->m[k++] = q->m[j];
		else
			free(q->m[j].p);
	q->n = k;
}

/* Hands `to` a frame its peer's machine would make (but the runs do not
 * make it send): type, LINK and, with state < 0, BATCH; else one ENTRY
 * {BATCH, STATE}. It must come back want. */
static void give(int to, int act, uint16_t type, const struct qkm_id *batch, int state, int want)
{
	struct qkm_buf b;
	size_t start, e;
	qkm_buf_init(&b, 4096, false);
	check(qkm_frame_begin(&b, type, 0, &start) == 0 && qkm_put_str(&b, QKM_T_LINK, "A-B") == 0);
	if (state < 0)
		check(qkm_put_id(&b, QKM_T_BATCH, batch) == 0);
	else
		check(qkm_put_open(&b, QKM_T_ENTRY, &e) == 0 &&
		      qkm_put_id(&b, QKM_T_BATCH, batch) == 0 &&
		      qkm_put_u8(&b, QKM_T_STATE, (uint8_t)state) == 0 &&
		      qkm_put_close(&b, e) == 0);
	check(qkm_frame_end(&b, start) == 0);
	struct msg m = {b.p, b.len};
	seed_body(1 - to, act, &m);
	flow_record((uint8_t)(0x80 | to << 6 | act << 4), b.p, b.len);
	check(last_rc == want);
	qkm_buf_fini(&b);
}

/* The batch of round R1 (k 1) or R2 (k 2), from A's PREPARE. */
static struct qkm_id round_batch(int k)
{
	struct qkm_frame f;
	struct qkm_id id;
	check(qkm_frame_parse(kept[k].p, kept[k].len, &f) == 0);
	check(qkm_tlv_id(f.body, f.body_len, QKM_T_BATCH, &id) == 0);
	return id;
}

/* A run from the state every input meets. */
static void flow_begin(const char *name)
{
	link_full = false;
	for (int i = 0; i < N_SIDES; i++) {
		struct side *s = &sides[i];
		qkm_acq_free(s->acq);
		s->acq = NULL;
		q_clear(&s->out);
		store_restore(s);
	}
	prime(&sides[A]);
	prime(&sides[B]);
	snprintf(flow, sizeof(flow), "%s", name);
	n_rec = n_seed = 0;
	all_len = 0;
}

static void flow_end(void)
{
	char path[PATH_MAX + 128];
	snprintf(path, sizeof(path), "%s/%s-all", out_dir, flow);
	seed_file(path, all, all_len);
}

static int count_block(struct qkm_block *b, void *arg)
{
	(void)b;
	(*(uint32_t *)arg)++;
	return 0;
}

/* Blocks of s's pool in the states of mask (0: all). */
static uint32_t n_blocks(struct side *s, unsigned mask)
{
	uint32_t n = 0;
	check(qkm_store_blocks(s->st, NAMES[1 - s->i], mask, false, count_block, &n) == 0);
	return n;
}

static void seeds(void)
{
	struct qkm_acq_stats sa, sb;
	const unsigned ready = 1u << QKM_BLOCK_READY, pending = 1u << QKM_BLOCK_PENDING;
	capture = true;
	/* Set-up: the frames the machines pass while being set up. */
	snprintf(flow, sizeof(flow), "setup");
	n_seed = 0;
	seed_body(B, ACT_NONE, &recon);
	for (int k = 0; k < 3; k++)
		seed_body(A, ACT_FLUSH, &kept[k]);

	/* Rounds: R3 arrives (R2 is given up, a later file being here), R1
	 * and R3 are confirmed, R4 aborted (MAC mismatch). */
	flow_begin("confirm");
	drop(A, QKM_MSG_PAIRCHECK);
	pump(ACT_FLUSH, 0);
	check(n_blocks(&sides[A], ready) == 11 + 4 && n_blocks(&sides[B], ready) == 12 + 4);
	qkm_acq_stats(sides[A].acq, &sa);
	qkm_acq_stats(sides[B].acq, &sb);
	check(sa.aborted_batches == 2 && sb.aborted_batches == 2);
	check(sa.in_flight == 0 && sb.in_flight == 0);
	flow_end();

	/* R2 given up at B when its wait is over (f-3 never came); R3 and R4
	 * never arrive; the window free, A's tick starts R5 with the file it
	 * kept, and B, discarding the files R5 passes by, stores it. */
	flow_begin("expire");
	drop(A, 0);
	idle(B, K_NONE, ACT_TICK);     /* 1 s on: R1 stored PENDING, R2 waits */
	qkm_acq_stats(sides[B].acq, &sb);
	check(sb.waiting_files);
	idle(B, K_NONE, ACT_TICK);     /* 2 s: R2 given up */
	pump(ACT_FLUSH, 1);
	check(n_blocks(&sides[B], ready) == 12 + 4);
	flow_end();

	/* A's pair-check, in parts: two blocks a part, two parts in flight. */
	flow_begin("pc-a");
	drop(A, QKM_MSG_ACQ_PREPARE);
	pump(ACT_NONE, 0);
	check(sides[A].pc_calls == 1 && sides[A].pc_err == 0);
	check(sides[A].pc.matches == 4 && sides[A].pc.mismatches == 2 &&
	      sides[A].pc.in_flight == 4 && sides[A].pc.only_sender == 3 &&
	      sides[A].pc.only_receiver == 2);
	flow_end();

	/* A's again, but the link fills up after two parts: the third
	 * cannot be sent, and once both are answered the check fails. */
	flow_begin("pc-full");
	drop(A, QKM_MSG_ACQ_PREPARE);
	pass(A, ACT_NONE);
	pass(A, ACT_NONE);
	idle(A, K_FULL, ACT_NONE);
	pass(B, ACT_NONE);
	check(sides[A].pc_calls == 0);
	pass(B, ACT_NONE);
	check(sides[A].pc_calls == 1 && sides[A].pc_err == QKM_EIO);
	flow_end();

	/* B's, 10 s on: its young blocks are old then. */
	flow_begin("pc-b");
	drop(A, 0);
	idle(B, K_CLOCK, ACT_PAIRCHECK);
	pump(ACT_NONE, 0);
	check(sides[B].pc_calls == 1 && sides[B].pc_err == 0);
	check(sides[B].pc.matches == 4 && sides[B].pc.mismatches == 2 &&
	      sides[B].pc.in_flight == 2 && sides[B].pc.only_sender == 4 &&
	      sides[B].pc.only_receiver == 3);
	flow_end();

	/* Pool sync both ways, at once (young blocks are left alone) and
	 * 10 s on (B burns what only it holds, A what only it holds). */
	for (int late = 0; late < 2; late++) {
		flow_begin(late ? "sync-late" : "sync");
		drop(A, 0);
		if (late)
			idle(A, K_CLOCK, ACT_NONE);
		check(qkm_acq_sync(sides[A].acq) == 0);
		check(qkm_acq_sync(sides[B].acq) == 0);
		pump(ACT_FLUSH, 0);
		/* R1 confirmed on the way (B flushes first); burned: at B
		 * T4's block A used (and late T7's), at A T3's block B used. */
		check(n_blocks(&sides[A], ready) == 11 - 1 + 2);
		check(n_blocks(&sides[B], ready) == 12u - 1 - (uint32_t)late + 2);
		flow_end();
	}

	/* Stale rounds: R1 and R3 stored PENDING at B; A stores R1 but its
	 * COMMIT is lost, and B's PREPARED R3 is lost. 11 s on B asks about
	 * both: R1 is READY at A, R3 still in flight there. */
	flow_begin("reconcile");
	drop(A, QKM_MSG_PAIRCHECK);
	pass(A, ACT_FLUSH);              /* PREPARE R3 */
	drop(A, 0);                      /* PREPARE R4 never arrives */
	check(sides[B].out.n == 3);      /* ABORT R2, PREPARED R3, PREPARED R1 */
	pass(B, ACT_NONE);
	{
		struct msg m = q_pop(&sides[B].out);
		free(m.p);
	}
	pass(B, ACT_FLUSH);              /* PREPARED R1: A stores it */
	drop(A, 0);                      /* COMMIT R1 lost */
	check(n_blocks(&sides[B], pending) == 4);
	idle(B, K_CLOCK, ACT_TICK);
	check(sides[B].out.n == 1 && msg_type(&sides[B].out.m[0]) == QKM_MSG_RECONCILE);
	pump(ACT_FLUSH, 0);
	check(n_blocks(&sides[B], pending) == 2 && n_blocks(&sides[B], ready) == 12 + 2);
	flow_end();

	/* The leader gives rounds up: R1 matched at B, R2 waiting there;
	 * then R1 once B stored it, and a READY batch, which it cannot. */
	struct qkm_id r1 = round_batch(1), r2 = round_batch(2), t1 = {{'T', 1}};
	flow_begin("abort");
	drop(A, 0);
	give(B, ACT_NONE, QKM_MSG_ACQ_ABORT, &r1, -1, 0);
	give(B, ACT_FLUSH, QKM_MSG_ACQ_ABORT, &r2, -1, 0);
	check(n_blocks(&sides[B], 0) == 12 && sides[B].out.n == 0);
	flow_end();
	flow_begin("abort-stored");
	drop(A, 0);
	idle(B, K_NONE, ACT_FLUSH);
	drop(B, 0);                      /* PREPARED R1 */
	give(B, ACT_FLUSH, QKM_MSG_ACQ_ABORT, &r1, -1, 0);
	give(B, ACT_FLUSH, QKM_MSG_ACQ_ABORT, &t1, -1, QKM_EPEER);
	check(n_blocks(&sides[B], 0) == 12);
	flow_end();

	/* Reconciliation answers R1, stored PENDING at B: the leader does
	 * not hold it (it gave it up), holds it READY (its COMMIT lost), or
	 * has it in flight still. */
	for (int st = 0; st < 3; st++) {
		static const char *const name[] = {"reconcile-away", "reconcile-ready",
						   "reconcile-pending"};
		static const uint8_t state[] = {0, QKM_BLOCK_READY, QKM_BLOCK_PENDING};
		flow_begin(name[st]);
		drop(A, 0);
		idle(B, K_NONE, ACT_FLUSH);
		drop(B, 0);
		give(B, ACT_FLUSH, QKM_MSG_RECONCILE_ACK, &r1, state[st], 0);
		check(n_blocks(&sides[B], 1u << (state[st] ? state[st] : QKM_BLOCK_PENDING)) ==
		      (state[st] == QKM_BLOCK_READY ? 12u + 2 : state[st] ? 2u : 0u));
		flow_end();
	}

	/* A COMMIT queued at B, which the leader cannot take back, crossed
	 * by the answer to a stale-round RECONCILE: the answer settles R1
	 * before the flush applies the COMMIT. */
	flow_begin("commit-crossed");
	drop(A, 0);
	idle(B, K_NONE, ACT_FLUSH);
	drop(B, 0);
	give(B, ACT_NONE, QKM_MSG_ACQ_COMMIT, &r1, -1, 0);
	give(B, ACT_NONE, QKM_MSG_ACQ_ABORT, &r1, -1, QKM_EPEER);
	give(B, ACT_FLUSH, QKM_MSG_RECONCILE_ACK, &r1, QKM_BLOCK_READY, 0);
	check(n_blocks(&sides[B], ready) == 12 + 2);
	flow_end();

	/* The leader asked about R1 between B's PREPARED and its own flush. */
	flow_begin("reconcile-prepared");
	drop(A, 0);
	give(A, ACT_NONE, QKM_MSG_ACQ_PREPARED, &r1, -1, 0);
	give(A, ACT_FLUSH, QKM_MSG_RECONCILE, &r1, -1, 0);
	check(n_blocks(&sides[A], ready) == 11 + 2);
	flow_end();
	capture = false;
	free(all);
}

/* ---- libFuzzer ----------------------------------------------------------- */

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	setup();
	const char *out = getenv("QKM_FUZZ_ACQ_SEEDS");
	if (out && *out) {
		check(mkdir(out, 0755) == 0 || errno == EEXIST);
		out_dir = out;
		seeds();
		exit(0);
	}
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	bool touched[N_SIDES] = {false};
	size_t off = 0;
	now = T0;
	/* Several records in one input reach what one cannot: a round
	 * prepared, stored and committed; a pair-check's later parts. */
	for (int k = 0; k < MAX_RECORDS && off < size; k++) {
		uint8_t sel = data[off++];
		off += record(sel, data + off, size - off, touched);
	}
	link_full = false;
	for (int i = 0; i < N_SIDES; i++)
		if (touched[i])
			side_reset(&sides[i]);
	return 0;
}
