/* acq.c - acquisition and pair confirmation of one QKD link (acq.h).
 * Invariants: a KMA-key is READY on one side only if the other side holds it
 * durably (PENDING or READY); a PENDING batch becomes READY only on the
 * leader's word; nothing is stored that the pair did not confirm by MAC. */
#include "kma/acq.h"
#include "core/log.h"
#include "core/secret.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ACQ_HASH_SIZE 4096u
#define ACQ_MAX_IDS 65536u       /* QKD-keys per round */
#define ACQ_IDS_MAX (2u * ACQ_MAX_IDS) /* default ids_max: 8 MiB of names */
#define ACQ_YOUNG_NS 2000000000u /* pair-check: blocks younger are in flight */
#define ACQ_STALE_NS 10000000000ull /* follower asks about rounds pending this long */

/* One buffered QKD-key file, in arrival order and in the ID hash. */
struct qkd_entry {
	struct qkd_entry *prev, *next, *hnext;
	uint64_t seq;             /* arrival order */
	uint64_t arrived_ns;
	char id[QKM_NAME_MAX];
	struct qkm_secret *data;
	bool has_hash;            /* the module's hash_value, taken as given: */
	uint8_t hash[32];         /* checked only to name a culprit (file_corrupt) */
};

/* What a leader keeps of each file of a round it sent, to name a culprit
 * if the round is aborted for a MAC mismatch. */
struct round_file {
	uint32_t len;
	bool has_hash;
	uint8_t hash[32];
};

/* A confirmation round in flight at the leader, or waiting at the follower. */
struct round {
	struct round *next;
	struct qkm_id batch;
	uint32_t unit;
	uint32_t n_ids;
	char (*ids)[QKM_NAME_MAX];
	struct round_file *files; /* leader: each file's length and module hash */
	uint8_t digest[32];       /* SHA-256 of the leader's MAC (docs/protocol.md 4.2) */
	struct qkm_secret *key;   /* follower: its one-time MAC key, from PREPARE's session */
	uint64_t deadline_ns;     /* follower: give up waiting for files */
	struct qkm_buf data;      /* leader: the round's key data (secure) */
	uint32_t req;
};

struct qkm_acq {
	struct qkm_acq_cfg cfg;
	struct qkm_store *st;
	qkm_acq_send_fn send;
	qkm_acq_mac_key_fn mac_key;
	void *send_arg;           /* send's and mac_key's */
	EVP_MAC_CTX *mac;         /* Poly1305, keyed afresh for every round */
	bool leader, peer_up, reconciled;
	struct qkd_entry *head, *tail;
	struct qkd_entry *hash[ACQ_HASH_SIZE];
	uint64_t next_seq;
	size_t buffered;
	struct round *rounds, **rounds_tail; /* leader: in flight; follower: waiting */
	struct round *prepared;              /* decided, stored at the next flush: leader:
						PREPARED rounds; follower: matched ones */
	uint32_t n_prepared;
	uint32_t n_rounds, next_req;
	bool waiting;             /* follower: the oldest round waits for files */
	struct qkm_id *commits;   /* follower: COMMITs not applied yet (PENDING) */
	uint32_t n_commits;
	size_t cap_commits;
	struct qkm_acq_stats stats;
	uint64_t stale_check_ns;
	void (*pc_fn)(uint32_t, const struct qkm_paircheck_result *, int, void *);
	void *pc_arg;
	struct pc_job *pcs;       /* pair-checks this side asked for */
	struct qkm_acq_source_cbs src;
};

void qkm_acq_cfg_defaults(struct qkm_acq_cfg *cfg)
{
	cfg->unit_bytes = 32;
	cfg->batch_max_bytes = 1u << 20;
	cfg->batch_ns = 100000000u;
	cfg->window = 64;
	cfg->ids_max = ACQ_IDS_MAX;
	cfg->wait_ns = 2000000000u;
	cfg->buffer_max_bytes = 64u << 20;
	cfg->pc_part_bytes = 8u << 20;
}

/* ---- buffer ------------------------------------------------------------ */

static uint32_t id_hash(const char *s)
{
	uint32_t h = 2166136261u;
	for (; *s; s++)
		h = (h ^ (uint8_t)*s) * 16777619u;
	return h % ACQ_HASH_SIZE;
}

static struct qkd_entry *buf_find(struct qkm_acq *a, const char *id)
{
	for (struct qkd_entry *e = a->hash[id_hash(id)]; e; e = e->hnext)
		if (strcmp(e->id, id) == 0)
			return e;
	return NULL;
}

/* Unlinks e from the list and hash and frees it (wiping its data). */
static void buf_remove(struct qkm_acq *a, struct qkd_entry *e)
{
	struct qkd_entry **pp = &a->hash[id_hash(e->id)];
	while (*pp != e)
		pp = &(*pp)->hnext;
	*pp = e->hnext;
	if (e->prev)
		e->prev->next = e->next;
	else
		a->head = e->next;
	if (e->next)
		e->next->prev = e->prev;
	else
		a->tail = e->prev;
	a->buffered -= e->data->len;
	qkm_secret_free(e->data);
	free(e);
}

/* The source's word that acquisition is done with files (acq.h). */
static void settle_one(struct qkm_acq *a, const char *id, bool stored)
{
	if (a->src.settled)
		a->src.settled(id, stored, a->src.arg);
}

static void settle_round(struct qkm_acq *a, const char (*ids)[QKM_NAME_MAX], uint32_t n,
			 bool stored)
{
	for (uint32_t i = 0; a->src.settled && i < n; i++)
		a->src.settled(ids[i], stored, a->src.arg);
}

/* Inside the round's transaction: its QKD-key IDs, for a source that may
 * hand a file over again (acq.h track_ids). */
static int remember_ids(struct qkm_acq *a, const char (*ids)[QKM_NAME_MAX], uint32_t n,
			uint64_t now_ns)
{
	int rc = 0;
	for (uint32_t i = 0; a->cfg.track_ids && !rc && i < n; i++)
		rc = qkm_store_qkd_put(a->st, a->cfg.link, ids[i], now_ns);
	return rc;
}

static void record(struct qkm_acq *a, const char *event, const char *kind, const char *key_id,
		   const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static void record(struct qkm_acq *a, const char *event, const char *kind, const char *key_id,
		   const char *fmt, ...)
{
	struct qkm_lc_event ev;
	memset(&ev, 0, sizeof(ev));
	snprintf(ev.event, sizeof(ev.event), "%s", event);
	snprintf(ev.key_kind, sizeof(ev.key_kind), "%s", kind);
	snprintf(ev.key_id, sizeof(ev.key_id), "%s", key_id);
	snprintf(ev.peer, sizeof(ev.peer), "%s", a->cfg.peer);
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(ev.detail, sizeof(ev.detail), fmt, ap);
	va_end(ap);
	if (qkm_store_record(a->st, &ev))
		log_warnx("link %s: could not record %s of %s", a->cfg.link, event, key_id);
}

/* Room for element n of a growable array p of *cap elements of elem bytes,
 * doubling from first. Returns the (possibly moved) array, or NULL when out
 * of memory (p is then untouched and still owned by the caller). */
static void *grow(void *p, size_t *cap, size_t n, size_t elem, size_t first)
{
	if (n < *cap)
		return p;
	size_t c = *cap ? *cap * 2 : first;
	void *q = realloc(p, c * elem);
	if (q)
		*cap = c;
	return q;
}

/* Counts an aborted round, in memory and in the store's counters. */
static void count_abort(struct qkm_acq *a)
{
	a->stats.aborted_batches++;
	if (qkm_store_counter_add(a->st, "aborted_batches", 1))
		log_warnx("link %s: could not count an aborted round", a->cfg.link);
}

/* Discards buffered files that arrived before `before` (arrival seq) and
 * that no round referenced: the other side never had them. */
/* Why the follower drops files older than the first of a PREPARE: the
 * leader never got them, or gave up the round they were in (a Kx drop). */
#define LEADER_MOVED_ON \
	"the leader moved past them (never received there, or given up with a round)"

static void buf_discard_older(struct qkm_acq *a, uint64_t before, const char *why)
{
	uint32_t n = 0;
	char first[QKM_NAME_MAX] = "", last[QKM_NAME_MAX] = "";
	while (a->head && a->head->seq < before) {
		if (!n)
			snprintf(first, sizeof(first), "%s", a->head->id);
		snprintf(last, sizeof(last), "%s", a->head->id);
		settle_one(a, a->head->id, false);
		buf_remove(a, a->head);
		n++;
	}
	if (!n)
		return;
	char ids[96];
	snprintf(ids, sizeof(ids), "%.40s..%.40s", first, last);
	a->stats.discarded_qkd_keys += n;
	record(a, "aborted", "qkd", ids, "%u QKD-key(s) discarded: %s", n, why);
	log_warnx("link %s: %u QKD-key(s) %s discarded: %s", a->cfg.link, n, ids, why);
}

int qkm_acq_on_keyfile(struct qkm_acq *a, struct qkm_keyfile *kf, uint64_t now_ns)
{
	if (kf->kind != QKM_KF_QKD || !kf->data || kf->data->len == 0 ||
	    strcmp(kf->m.qkd.qkd_module_id, a->cfg.module) != 0)
		return QKM_EINVAL;
	if (buf_find(a, kf->m.qkd.qkd_key_id))
		return QKM_EEXIST;
	if (a->cfg.track_ids) {
		bool held;
		int rc = qkm_store_qkd_held(a->st, a->cfg.link, kf->m.qkd.qkd_key_id, &held);
		if (rc || held)
			return rc ? rc : QKM_EEXIST;
	}
	struct qkd_entry *e = calloc(1, sizeof(*e));
	if (!e)
		return QKM_ENOMEM;
	/* Not checked here: the round MAC covers the data itself (acq.h). */
	if ((e->has_hash = kf->m.qkd.has_hash))
		memcpy(e->hash, kf->m.qkd.hash_value, 32);
	snprintf(e->id, sizeof(e->id), "%s", kf->m.qkd.qkd_key_id);
	e->data = kf->data;
	kf->data = NULL;
	e->seq = a->next_seq++;
	e->arrived_ns = now_ns;
	e->prev = a->tail;
	if (a->tail)
		a->tail->next = e;
	else
		a->head = e;
	a->tail = e;
	uint32_t h = id_hash(e->id);
	e->hnext = a->hash[h];
	a->hash[h] = e;
	a->buffered += e->data->len;
	/* A module's stream we cannot confirm (peer away) must not grow without
	 * bound: the oldest keys go first, as in the module's own buffer. */
	if (a->buffered > a->cfg.buffer_max_bytes) {
		/* Down to 3/4 of the bound in one cut, so one record and one
		 * log line for many files, not one per arrival (a record outside
		 * a transaction is a durable commit of its own). */
		size_t over = a->buffered - a->cfg.buffer_max_bytes / 4 * 3, n = 0;
		struct qkd_entry *c = a->head;
		while (c && n < over)
			n += c->data->len, c = c->next;
		buf_discard_older(a, c ? c->seq : a->next_seq, "buffer full");
	}
	return 0;
}

/* ---- rounds ------------------------------------------------------------ */

static void round_free(struct round *r)
{
	if (!r)
		return;
	free(r->ids);
	free(r->files);
	qkm_secret_free(r->key);
	qkm_buf_fini(&r->data);
	free(r);
}

/* Follower: discards the files an aborted round lists that are here. */
static void round_drop_files(struct qkm_acq *a, const struct round *r)
{
	for (uint32_t i = 0; i < r->n_ids; i++) {
		struct qkd_entry *e = buf_find(a, r->ids[i]);
		if (e) {
			settle_one(a, e->id, false);
			buf_remove(a, e);
		}
	}
}

/* QKD-key IDs named by the rounds this side holds: in flight or waiting,
 * and decided but not stored yet. */
static uint64_t ids_held(const struct qkm_acq *a)
{
	uint64_t n = 0;
	for (const struct round *r = a->rounds; r; r = r->next)
		n += r->n_ids;
	for (const struct round *r = a->prepared; r; r = r->next)
		n += r->n_ids;
	return n;
}

static void rounds_push(struct qkm_acq *a, struct round *r)
{
	r->next = NULL;
	*a->rounds_tail = r;
	a->rounds_tail = &r->next;
	a->n_rounds++;
}

static struct round *rounds_take(struct qkm_acq *a, const struct qkm_id *batch)
{
	for (struct round **pp = &a->rounds; *pp; pp = &(*pp)->next) {
		struct round *r = *pp;
		if (qkm_id_eq(&r->batch, batch)) {
			*pp = r->next;
			if (!*pp)
				a->rounds_tail = pp;
			a->n_rounds--;
			return r;
		}
	}
	return NULL;
}

static void rounds_clear(struct qkm_acq *a, const char *why)
{
	struct round *r;
	while ((r = a->rounds) != NULL) {
		a->rounds = r->next;
		char hex[33];
		qkm_id_hex(&r->batch, hex);
		if (a->leader) {
			count_abort(a);
			record(a, "aborted", "kma", hex, "round of %u QKD-key(s) abandoned: %s",
			       r->n_ids, why);
			settle_round(a, (const char (*)[QKM_NAME_MAX])r->ids, r->n_ids, false);
		}
		round_free(r);
	}
	a->rounds_tail = &a->rounds;
	a->n_rounds = 0;
}

/* The round MAC (docs/protocol.md 4.2): Poly1305 under a one-time key
 * both ends export from the Kx session for this batch, over the batch ID,
 * UNIT and the number of files, then for each file in ID order its QKD-key
 * ID (length as u16, bytes) and its data (length as u32, bytes). Unequal
 * data give equal tags with a chance below 2^-82 even for the largest
 * rounds. What travels is SHA-256 of the tag, never the tag: whoever
 * breaks the TLS session one day learns the key, and the tag would then
 * give away 128 bits of linear information on the key data.
 * mac_begin keys the context; mac_file adds one file; mac_end gives the
 * digest and leaves no key in the context. */
static int mac_begin(struct qkm_acq *a, const struct round *r, const uint8_t key[static 32],
		     uint32_t n_files)
{
	uint8_t x[8];
	qkm_be32_put(x, r->unit);
	qkm_be32_put(x + 4, n_files);
	return EVP_MAC_init(a->mac, key, 32, NULL) == 1 &&
			       EVP_MAC_update(a->mac, r->batch.b, QKM_ID_LEN) == 1 &&
			       EVP_MAC_update(a->mac, x, sizeof(x)) == 1
		       ? 0
		       : QKM_ECRYPTO;
}

static int mac_file(struct qkm_acq *a, const char *id, const struct qkm_secret *data)
{
	size_t n = strlen(id);
	uint8_t l2[2] = {(uint8_t)(n >> 8), (uint8_t)n}, l4[4];
	qkm_be32_put(l4, (uint32_t)data->len);
	return EVP_MAC_update(a->mac, l2, 2) == 1 &&
			       EVP_MAC_update(a->mac, (const uint8_t *)id, n) == 1 &&
			       EVP_MAC_update(a->mac, l4, 4) == 1 &&
			       EVP_MAC_update(a->mac, data->p, data->len) == 1
		       ? 0
		       : QKM_ECRYPTO;
}

static int mac_end(struct qkm_acq *a, uint8_t digest[static 32])
{
	static const char label[] = "qkm-acq-round";
	uint8_t tag[16];
	size_t n = 0;
	unsigned int dl = 32;
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	int ok = EVP_MAC_final(a->mac, tag, &n, sizeof(tag)) == 1 && n == 16 && md &&
		 EVP_DigestInit_ex(md, EVP_sha256(), NULL) == 1 &&
		 EVP_DigestUpdate(md, label, sizeof(label) - 1) == 1 &&
		 EVP_DigestUpdate(md, tag, sizeof(tag)) == 1 &&
		 EVP_DigestFinal_ex(md, digest, &dl) == 1;
	EVP_MD_CTX_free(md);
	OPENSSL_cleanse(tag, sizeof(tag));
	return ok ? 0 : QKM_ECRYPTO;
}

/* After a failure half-way: no trace of a round's key stays in the context. */
static void mac_forget(struct qkm_acq *a)
{
	static const uint8_t zero[32];
	(void)EVP_MAC_init(a->mac, zero, sizeof(zero), NULL);
}

/* After a MAC mismatch: whether this side's copy of a file is not what its
 * module hashed (corrupted between the module and here). Only this rare
 * path pays for SHA-256 of the data; a file without a hash is never blamed. */
static bool file_corrupt(const uint8_t *p, size_t n, bool has_hash, const uint8_t hash[32])
{
	uint8_t md[32];
	unsigned int ml = 32;
	bool bad = has_hash && EVP_Digest(p, n, md, &ml, EVP_sha256(), NULL) == 1 &&
		   !qkm_ct_equal(md, hash, 32);
	OPENSSL_cleanse(md, sizeof(md));
	return bad;
}

/* Appends to why the first file of n this side blames, and how many. */
static void blame_note(char *why, size_t cap, const char *self, const char *first, uint32_t n)
{
	size_t len = strlen(why);
	if (n && len < cap)
		snprintf(why + len, cap - len, "; at %s, QKD-key %s%s does not match its module's hash_value",
			 self, first, n > 1 ? " (and more)" : "");
}

/* Stores a confirmed round's KMA-keys as blocks (R-ACQ-2, R-ACQ-4): keys
 * [0, n/2) encrypt from the leader, [n/2, n) from the follower. Caller holds
 * the transaction. */
static int round_store(struct qkm_acq *a, const struct round *r, const uint8_t *data, size_t len,
		       enum qkm_block_state state, uint64_t now_ns)
{
	uint32_t n = (uint32_t)(len / r->unit);
	uint32_t half = n / 2;
	struct {
		uint32_t first, count;
		enum qkm_key_type leader_type;
	} parts[2] = {{0, half, QKM_KT_ENC}, {half, n - half, QKM_KT_DEC}};
	for (int i = 0; i < 2; i++) {
		if (!parts[i].count)
			continue;
		struct qkm_block b;
		memset(&b, 0, sizeof(b));
		snprintf(b.peer, sizeof(b.peer), "%s", a->cfg.peer);
		b.pool_kind = QKM_POOL_LINK;
		b.batch_id = r->batch;
		b.first_index = parts[i].first;
		b.count = parts[i].count;
		b.unit_bytes = r->unit;
		b.key_type = a->leader ? parts[i].leader_type
				       : (parts[i].leader_type == QKM_KT_ENC ? QKM_KT_DEC : QKM_KT_ENC);
		b.state = state;
		b.created_ns = now_ns;
		b.write_around = true; /* many blocks a round, CPU-bound: no page cache copy */
		snprintf(b.qkd_module_id, sizeof(b.qkd_module_id), "%s", a->cfg.module);
		/* Lent, not copied: the store writes the bytes during the call
		 * and keeps nothing. The round's buffer is a secure-heap block of
		 * at least 4 KiB, so 4 KiB-aligned: a half whose offset and
		 * length are multiples of 4 KiB (both halves of a 1 MiB round)
		 * is written around the cache, another through it. */
		struct qkm_secret lent = {.len = (size_t)parts[i].count * r->unit,
					  .p = (uint8_t *)data + (size_t)parts[i].first * r->unit};
		b.data = &lent;
		int rc = qkm_store_block_put(a->st, &b);
		if (rc)
			return rc;
	}
	return 0;
}

static void record_round(struct qkm_acq *a, const struct round *r, size_t len, const char *state)
{
	char hex[33], ids[96];
	uint32_t n = (uint32_t)(len / r->unit);
	qkm_id_hex(&r->batch, hex);
	snprintf(ids, sizeof(ids), "%.40s..%.40s", r->ids[0], r->ids[r->n_ids - 1]);
	record(a, "received", "qkd", ids, "%u QKD-key(s), %zu bytes, module %s", r->n_ids, len,
	       a->cfg.module);
	record(a, "formatted", "kma", hex,
	       "%u KMA-key(s) of %u bytes; %zu byte(s) remainder discarded; from QKD-key(s) %s "
	       "(module %s)",
	       n, r->unit, len % r->unit, ids, a->cfg.module);
	record(a, "authenticated", "kma", hex, "MAC of %u QKD-key(s) matched by %s", r->n_ids,
	       a->cfg.peer);
	record(a, "stored", "kma", hex, "%s, keys %s[0..%u]", state, hex, n ? n - 1 : 0);
}

static int send_frame(struct qkm_acq *a, struct qkm_buf *b)
{
	if (!a->peer_up)
		return QKM_ESTATE;
	return a->send(b->p, b->len, a->send_arg) ? QKM_EIO : 0;
}

static int send_batch_msg(struct qkm_acq *a, uint16_t type, uint32_t req, const struct qkm_id *batch,
			  const char *msg)
{
	struct qkm_buf b;
	size_t start;
	qkm_buf_init(&b, 4096, false);
	int rc = qkm_frame_begin(&b, type, req, &start);
	if (!rc)
		rc = qkm_put_str(&b, QKM_T_LINK, a->cfg.link);
	if (!rc)
		rc = qkm_put_id(&b, QKM_T_BATCH, batch);
	if (!rc && msg)
		rc = qkm_put_str(&b, QKM_T_MESSAGE, msg);
	if (!rc)
		rc = qkm_frame_end(&b, start);
	if (!rc)
		rc = send_frame(a, &b);
	qkm_buf_fini(&b);
	return rc;
}

/* Leader: takes buffered files into a new round and sends PREPARE. */
static int leader_start_round(struct qkm_acq *a, uint64_t now_ns)
{
	struct round *r = calloc(1, sizeof(*r));
	uint8_t key[32];
	bool keyed = false; /* a->mac holds this round's key */
	struct qkm_buf fb;
	size_t start;
	int rc = QKM_ENOMEM;
	qkm_buf_init(&fb, QKM_FRAME_MAX, false);
	if (!r)
		goto out;
	qkm_buf_init(&r->data, (size_t)a->cfg.batch_max_bytes + (16u << 20), true);
	r->unit = a->cfg.unit_bytes;
	if ((rc = qkm_id_random(&r->batch)))
		goto out;
	memset(r->batch.b + 12, 0, 4);
	/* At most batch_max_bytes of key per round, but always the oldest file
	 * (a single file may be larger than a round); no more IDs than
	 * ids_max leaves room for beside the rounds in flight. */
	uint64_t held = ids_held(a);
	uint64_t room = held < a->cfg.ids_max ? a->cfg.ids_max - held : 1;
	uint32_t cap = 0;
	size_t total = 0;
	for (struct qkd_entry *e = a->head; e && cap < ACQ_MAX_IDS && cap < room; e = e->next) {
		if (cap && total + e->data->len > a->cfg.batch_max_bytes)
			break;
		total += e->data->len;
		cap++;
	}
	r->ids = calloc(cap ? cap : 1, sizeof(*r->ids));
	r->files = calloc(cap ? cap : 1, sizeof(*r->files));
	if (!r->ids || !r->files)
		goto out;
	/* One allocation for the round's data: no regrowth and re-copying. */
	if ((rc = qkm_buf_reserve(&r->data, total)))
		goto out;
	if ((rc = a->mac_key(&r->batch, key, a->send_arg)) || (rc = mac_begin(a, r, key, cap)))
		goto out;
	keyed = true;
	while (a->head && r->n_ids < cap) {
		struct qkd_entry *e = a->head;
		struct round_file *rf = &r->files[r->n_ids];
		if ((rc = qkm_buf_put(&r->data, e->data->p, e->data->len)) ||
		    (rc = mac_file(a, e->id, e->data)))
			goto out;
		rf->len = (uint32_t)e->data->len;
		if ((rf->has_hash = e->has_hash))
			memcpy(rf->hash, e->hash, 32);
		snprintf(r->ids[r->n_ids++], QKM_NAME_MAX, "%s", e->id);
		buf_remove(a, e);
	}
	/* cap counted from the same list: the MAC announced every file. */
	if (r->n_ids != cap)
		rc = QKM_ESTATE;
	if (rc || (rc = mac_end(a, r->digest)))
		goto out;
	keyed = false;
	if ((rc = qkm_frame_begin(&fb, QKM_MSG_ACQ_PREPARE, ++a->next_req, &start)) ||
	    (rc = qkm_put_str(&fb, QKM_T_LINK, a->cfg.link)) ||
	    (rc = qkm_put_id(&fb, QKM_T_BATCH, &r->batch)) ||
	    (rc = qkm_put_u32(&fb, QKM_T_UNIT, r->unit)))
		goto out;
	for (uint32_t i = 0; i < r->n_ids; i++)
		if ((rc = qkm_put_str(&fb, QKM_T_QKD_ID, r->ids[i])))
			goto out;
	if ((rc = qkm_put_tlv(&fb, QKM_T_DIGEST, r->digest, 32)) || (rc = qkm_frame_end(&fb, start)))
		goto out;
	if ((rc = send_frame(a, &fb)))
		goto out;
	r->req = a->next_req;
	rounds_push(a, r);
	r = NULL;
out:
	if (r && r->n_ids) {
		char hex[33];
		qkm_id_hex(&r->batch, hex);
		count_abort(a);
		record(a, "aborted", "kma", hex, "round of %u QKD-key(s) not started: %s", r->n_ids,
		       qkm_strerror(rc));
		settle_round(a, (const char (*)[QKM_NAME_MAX])r->ids, r->n_ids, false);
	}
	round_free(r);
	if (keyed)
		mac_forget(a);
	OPENSSL_cleanse(key, sizeof(key));
	qkm_buf_fini(&fb);
	(void)now_ns;
	return rc;
}

/* Leader: the follower stored the round PENDING; store READY, then COMMIT. */
static int leader_on_prepared(struct qkm_acq *a, const struct qkm_id *batch, uint64_t now_ns)
{
	struct round *r = rounds_take(a, batch);
	if (!r)
		return QKM_EPEER;
	/* Stored with every other round PREPARED meanwhile, in one commit, at
	 * the next qkm_acq_flush(): one fsync for many rounds. */
	r->deadline_ns = now_ns; /* storage time stamp of its blocks */
	r->next = a->prepared;
	a->prepared = r;
	a->n_prepared++;
	return 0;
}

/* Leader: stores every PREPARED round READY in one transaction, then sends
 * their COMMITs; if the store fails, their ABORTs (the follower's PENDING
 * copies must go too). */
static void leader_flush(struct qkm_acq *a)
{
	struct round *r;
	uint64_t total = 0;
	int rc = qkm_store_begin(a->st);
	for (r = a->prepared; !rc && r; r = r->next) {
		rc = round_store(a, r, r->data.p, r->data.len, QKM_BLOCK_READY, r->deadline_ns);
		if (!rc)
			rc = remember_ids(a, (const char (*)[QKM_NAME_MAX])r->ids, r->n_ids,
					  r->deadline_ns);
		if (!rc)
			record_round(a, r, r->data.len, "ready");
		total += r->data.len / r->unit * r->unit;
	}
	if (!rc)
		rc = qkm_store_counter_add(a->st, "acquired_bytes", (int64_t)total);
	if (!rc)
		rc = qkm_store_commit(a->st);
	else
		qkm_store_rollback(a->st);
	if (!rc)
		a->stats.acquired_bytes += total;
	while ((r = a->prepared) != NULL) {
		char hex[33];
		a->prepared = r->next;
		qkm_id_hex(&r->batch, hex);
		settle_round(a, (const char (*)[QKM_NAME_MAX])r->ids, r->n_ids, rc == 0);
		if (rc) {
			log_warnx("link %s: round %s not stored: %s", a->cfg.link, hex,
				  qkm_strerror(rc));
			count_abort(a);
			if (send_batch_msg(a, QKM_MSG_ACQ_ABORT, 0, &r->batch, "leader could not store"))
				log_warnx("link %s: abort of %s not sent; the follower will ask",
					  a->cfg.link, hex);
		} else if (send_batch_msg(a, QKM_MSG_ACQ_COMMIT, 0, &r->batch, NULL) && a->peer_up) {
			log_warnx("link %s: commit of %s not sent; the follower will ask", a->cfg.link,
				  hex);
		}
		round_free(r);
	}
	a->n_prepared = 0;
}

/* ---- follower ---------------------------------------------------------- */

static int id_ptr_cmp(const void *x, const void *y)
{
	return strcmp(*(const char *const *)x, *(const char *const *)y);
}

/* 1 if a round lists one QKD-key ID more than once, 0 if not, or QKM_ENOMEM.
 * Sorting keeps this O(n log n) for the largest rounds (ACQ_MAX_IDS). */
static int ids_duplicate(const struct round *r)
{
	const char **p = malloc((size_t)r->n_ids * sizeof(*p));
	int dup = 0;
	if (!p)
		return QKM_ENOMEM;
	for (uint32_t i = 0; i < r->n_ids; i++)
		p[i] = r->ids[i];
	qsort(p, r->n_ids, sizeof(*p), id_ptr_cmp);
	for (uint32_t i = 1; i < r->n_ids && !dup; i++)
		dup = strcmp(p[i - 1], p[i]) == 0;
	free(p);
	return dup;
}

static int follower_parse_prepare(struct qkm_acq *a, const struct qkm_frame *f, struct round **out,
				  uint64_t now_ns)
{
	struct round *r = calloc(1, sizeof(*r));
	const uint8_t *dg;
	uint32_t dlen, n = 0;
	if (!r)
		return QKM_ENOMEM;
	qkm_buf_init(&r->data, 0, true);
	r->req = f->req;
	if (qkm_tlv_id(f->body, f->body_len, QKM_T_BATCH, &r->batch) ||
	    qkm_tlv_u32(f->body, f->body_len, QKM_T_UNIT, &r->unit) || r->unit == 0 ||
	    r->unit > (1u << 20) || qkm_tlv_bytes(f->body, f->body_len, QKM_T_DIGEST, &dg, &dlen) ||
	    dlen != 32)
		goto bad;
	memcpy(r->digest, dg, 32);
	size_t off = 0;
	uint16_t tag;
	const uint8_t *v;
	uint32_t vl;
	int rc;
	while ((rc = qkm_tlv_next(f->body, f->body_len, &off, &tag, &v, &vl)) == 1)
		if (tag == QKM_T_QKD_ID)
			n++;
	if (n == 0 || n > ACQ_MAX_IDS)
		goto bad;
	r->ids = calloc(n, sizeof(*r->ids));
	if (!r->ids) {
		round_free(r);
		return QKM_ENOMEM;
	}
	off = 0;
	while ((rc = qkm_tlv_next(f->body, f->body_len, &off, &tag, &v, &vl)) == 1) {
		if (tag != QKM_T_QKD_ID)
			continue;
		if (vl == 0 || vl >= QKM_NAME_MAX)
			goto bad;
		memcpy(r->ids[r->n_ids], v, vl);
		r->ids[r->n_ids][vl] = 0;
		if (!qkm_name_valid(r->ids[r->n_ids]))
			goto bad;
		r->n_ids++;
	}
	/* The same QKD-key twice is a protocol violation whether or not we hold
	 * the file yet: refuse the PREPARE before the round is queued. */
	if ((rc = ids_duplicate(r)) < 0) {
		round_free(r);
		return rc;
	}
	if (rc)
		goto bad;
	r->deadline_ns = now_ns + a->cfg.wait_ns;
	*out = r;
	return 0;
bad:
	round_free(r);
	return QKM_EPEER;
}

/* Follower: counts, records and logs the abort of round r (its files
 * already discarded) and tells the leader; nonzero if ABORT was not sent. */
static int follower_abort(struct qkm_acq *a, const struct round *r, const char *why)
{
	char hex[33];
	qkm_id_hex(&r->batch, hex);
	count_abort(a);
	record(a, "aborted", "kma", hex, "round of %u QKD-key(s): %s", r->n_ids, why);
	log_warnx("link %s: round %s aborted: %s", a->cfg.link, hex, why);
	return send_batch_msg(a, QKM_MSG_ACQ_ABORT, r->req, &r->batch, why);
}

/* Tries the round at the head of the follower's queue. Returns 2 when it
 * matched (to be stored at the next flush), 1 when it was aborted, 0 when it
 * still waits for files. */
static int follower_try_round(struct qkm_acq *a, struct round *r, uint64_t now_ns, bool expired)
{
	/* NOLINTNEXTLINE(bugprone-sizeof-expression): an array of pointers */
	struct qkd_entry **ents = calloc(r->n_ids, sizeof(*ents));
	char hex[33], why[256] = "";
	uint32_t missing = 0;
	bool gap = false; /* a listed file is present after a missing one */
	uint64_t min_seq = UINT64_MAX;
	int settled = 1;
	qkm_id_hex(&r->batch, hex);
	if (!ents) {
		snprintf(why, sizeof(why), "out of memory");
		goto abort;
	}
	for (uint32_t i = 0; i < r->n_ids; i++) {
		ents[i] = buf_find(a, r->ids[i]);
		if (!ents[i]) {
			if (!missing++)
				snprintf(why, sizeof(why), "QKD-key %s missing at %s", r->ids[i],
					 a->cfg.self);
			continue;
		}
		gap = gap || missing;
		if (ents[i]->seq < min_seq)
			min_seq = ents[i]->seq;
	}
	/* Rounds queue in the leader's order, so a file of a later round that
	 * is here came after every file of this one. */
	for (struct round *q = r->next; missing && !gap && q; q = q->next)
		for (uint32_t i = 0; i < q->n_ids && !gap; i++)
			gap = buf_find(a, q->ids[i]) != NULL;
	if (missing) {
		/* Files arrive in generation order, the order of the lists: one
		 * missing before a present one will never come, so waiting for it
		 * would only hold every later round up. */
		if (!expired && !gap) {
			settled = 0;
			a->waiting = true;
			goto out;
		}
		if (gap)
			snprintf(why + strlen(why), sizeof(why) - strlen(why), " (lost: a later one arrived)");
		goto abort;
	}
	/* None missing: the first loop set every ents[i]. */
	uint8_t dg[32];
	size_t len = 0;
	int rc = mac_begin(a, r, r->key->p, r->n_ids);
	for (uint32_t i = 0; i < r->n_ids && !rc; i++) {
		rc = mac_file(a, r->ids[i], ents[i]->data); /* NOLINT(clang-analyzer-core.NullDereference) */
		len += ents[i]->data->len;
	}
	if (rc || (rc = mac_end(a, dg))) {
		mac_forget(a);
		snprintf(why, sizeof(why), "MAC not computed: %s", qkm_strerror(rc));
		goto abort;
	}
	if (!qkm_ct_equal(dg, r->digest, 32)) {
		uint32_t bad = 0;
		const char *first = NULL;
		for (uint32_t i = 0; i < r->n_ids; i++)
			if (file_corrupt(ents[i]->data->p, ents[i]->data->len, ents[i]->has_hash,
					 ents[i]->hash) &&
			    !bad++)
				first = ents[i]->id;
		snprintf(why, sizeof(why), "MAC mismatch: key data differ");
		blame_note(why, sizeof(why), a->cfg.self, first, bad);
		goto abort;
	}
	/* Equal: concatenate, store PENDING durably, then answer. */
	r->data.max = len;
	if (qkm_buf_reserve(&r->data, len)) {
		snprintf(why, sizeof(why), "out of memory");
		goto abort;
	}
	for (uint32_t i = 0; i < r->n_ids; i++)
		/* None missing: the first loop set every ents[i].
		 * NOLINTNEXTLINE(clang-analyzer-core.NullDereference) */
		if (qkm_buf_put(&r->data, ents[i]->data->p, ents[i]->data->len))
			goto abort;
	/* Matched: stored PENDING, with every other round matched meanwhile,
	 * in one commit at the next qkm_acq_flush(), which then answers
	 * PREPARED. The files are used up now. */
	for (uint32_t i = 0; i < r->n_ids; i++)
		buf_remove(a, ents[i]);
	buf_discard_older(a, min_seq, LEADER_MOVED_ON);
	r->deadline_ns = now_ns; /* storage time stamp of its blocks */
	settled = 2;
	goto out;
abort:
	/* R-ACQ-3: different or missing on one side: both discard. */
	for (uint32_t i = 0; i < r->n_ids; i++)
		if (ents && ents[i]) {
			settle_one(a, ents[i]->id, false);
			buf_remove(a, ents[i]);
		}
	if (min_seq != UINT64_MAX)
		buf_discard_older(a, min_seq, LEADER_MOVED_ON);
	if (follower_abort(a, r, why))
		log_warnx("link %s: ABORT for %s not sent", a->cfg.link, hex);
out:
	free(ents);
	return settled;
}

/* Tells a source that fetches keys on demand which of r's are not here. */
static void ask_missing(struct qkm_acq *a, const struct round *r)
{
	char (*ids)[QKM_NAME_MAX] = calloc(r->n_ids, sizeof(*ids));
	uint32_t n = 0;
	if (!ids) {
		log_warnx("link %s: out of memory asking for missing QKD-keys", a->cfg.link);
		return;
	}
	for (uint32_t i = 0; i < r->n_ids; i++)
		if (!buf_find(a, r->ids[i]))
			memcpy(ids[n++], r->ids[i], QKM_NAME_MAX);
	if (n)
		a->src.missing((const char (*)[QKM_NAME_MAX])ids, n, a->src.arg);
	free(ids);
}

/* Settles waiting rounds in order; a round waiting for files holds the ones
 * behind it (they reference later files). */
static void follower_run(struct qkm_acq *a, uint64_t now_ns)
{
	a->waiting = false;
	while (a->rounds) {
		struct round *r = a->rounds;
		int s = follower_try_round(a, r, now_ns, now_ns >= r->deadline_ns);
		if (s == 0)
			break;
		rounds_take(a, &r->batch);
		if (s == 2) {
			r->next = a->prepared;
			a->prepared = r;
			a->n_prepared++;
		} else {
			round_free(r);
		}
	}
}

static bool commit_queued(const struct qkm_acq *a, const struct qkm_id *batch)
{
	for (uint32_t i = 0; i < a->n_commits; i++)
		if (qkm_id_eq(&a->commits[i], batch))
			return true;
	return false;
}

/* A COMMIT is queued, not applied: qkm_acq_flush() marks every queued batch
 * READY in one transaction (one WAL sync for a read's worth of COMMITs
 * instead of one each). Until then the batch stays PENDING here, which the
 * invariants allow: the leader holds it READY and we hold it durably. */
static int follower_on_commit(struct qkm_acq *a, const struct qkm_id *batch)
{
	enum qkm_block_state st;
	int rc = qkm_store_batch_state(a->st, batch, &st);
	if (rc)
		return rc;
	if (st != QKM_BLOCK_PENDING || commit_queued(a, batch))
		return QKM_EPEER; /* committing what we never prepared, or twice */
	struct qkm_id *c = grow(a->commits, &a->cap_commits, a->n_commits, sizeof(*c), 16);
	if (!c)
		return QKM_ENOMEM;
	a->commits = c;
	a->commits[a->n_commits++] = *batch;
	return 0;
}

void qkm_acq_flush(struct qkm_acq *a)
{
	uint64_t total = 0;
	char hex[33];
	int rc;
	if (a->leader) {
		if (a->prepared)
			leader_flush(a);
		return;
	}
	if (!a->n_commits && !a->prepared)
		return;
	if ((rc = qkm_store_begin(a->st)) == 0) {
		/* Matched rounds PENDING, and COMMITs applied, in one commit. */
		for (struct round *r = a->prepared; !rc && r; r = r->next) {
			rc = round_store(a, r, r->data.p, r->data.len, QKM_BLOCK_PENDING,
					 r->deadline_ns);
			if (!rc)
				rc = remember_ids(a, (const char (*)[QKM_NAME_MAX])r->ids, r->n_ids,
						  r->deadline_ns);
			if (!rc)
				record_round(a, r, r->data.len, "pending");
		}
		uint32_t held = 0; /* the commits answered COMMITTED */
		for (uint32_t i = 0; !rc && i < a->n_commits; i++) {
			enum qkm_block_state st;
			uint64_t bytes;
			qkm_id_hex(&a->commits[i], hex);
			rc = qkm_store_batch_info(a->st, &a->commits[i], &st, &bytes);
			if (rc)
				break;
			if (st != QKM_BLOCK_PENDING) {
				/* Settled meanwhile by a RECONCILE_ACK handled after
				 * this COMMIT was queued: made READY (answered
				 * COMMITTED, as it is), or deleted because the leader
				 * said it does not hold it. Then the leader contradicts
				 * itself, and COMMITTED would confirm a batch only it
				 * holds: no answer (a supply naming its ranges is
				 * refused here, pair-check shows it one-sided). */
				if (st == QKM_BLOCK_READY)
					a->commits[held++] = a->commits[i];
				else
					log_warnx("link %s: COMMIT of batch %s, which leader %s "
						  "said it does not hold: not confirmed",
						  a->cfg.link, hex, a->cfg.peer);
				continue;
			}
			rc = qkm_store_batch_set_state(a->st, &a->commits[i], QKM_BLOCK_READY);
			if (!rc)
				record(a, "confirmed", "kma", hex, "ready: committed by %s", a->cfg.peer);
			a->commits[held++] = a->commits[i];
			total += bytes;
		}
		if (!rc)
			a->n_commits = held;
		if (!rc)
			rc = qkm_store_counter_add(a->st, "acquired_bytes", (int64_t)total);
		if (!rc)
			rc = qkm_store_commit(a->st);
		else
			qkm_store_rollback(a->st);
	}
	if (rc) {
		/* Commits still PENDING: the next reconciliation makes them
		 * READY. Matched rounds not stored: both sides discard them. */
		log_warnx("link %s: %u commit(s) and %u round(s) not stored: %s", a->cfg.link,
			  a->n_commits, a->n_prepared, qkm_strerror(rc));
	} else {
		a->stats.acquired_bytes += total;
		for (uint32_t i = 0; a->peer_up && i < a->n_commits; i++)
			if (send_batch_msg(a, QKM_MSG_ACQ_COMMITTED, 0, &a->commits[i], NULL))
				log_debug("link %s: COMMITTED not sent", a->cfg.link);
	}
	a->n_commits = 0;
	struct round *r;
	while ((r = a->prepared) != NULL) {
		a->prepared = r->next;
		qkm_id_hex(&r->batch, hex);
		settle_round(a, (const char (*)[QKM_NAME_MAX])r->ids, r->n_ids, rc == 0);
		if (rc) {
			count_abort(a);
			record(a, "aborted", "kma", hex, "follower could not store: %s",
			       qkm_strerror(rc));
			if (send_batch_msg(a, QKM_MSG_ACQ_ABORT, r->req, &r->batch,
					   "follower could not store"))
				log_warnx("link %s: ABORT for %s not sent", a->cfg.link, hex);
		} else if (send_batch_msg(a, QKM_MSG_ACQ_PREPARED, r->req, &r->batch, NULL) &&
			   a->peer_up) {
			log_warnx("link %s: PREPARED for %s not sent; reconciliation settles it",
				  a->cfg.link, hex);
		}
		round_free(r);
	}
	a->n_prepared = 0;
}

static int follower_on_abort(struct qkm_acq *a, const struct qkm_id *batch, const char *why)
{
	char hex[33];
	enum qkm_block_state st;
	qkm_id_hex(batch, hex);
	if (commit_queued(a, batch))
		return QKM_EPEER; /* the leader cannot take back a commit */
	/* Matched but not yet stored: the leader gave it up first. */
	for (struct round **pp = &a->prepared; *pp; pp = &(*pp)->next)
		if (qkm_id_eq(&(*pp)->batch, batch)) {
			struct round *m = *pp;
			*pp = m->next;
			a->n_prepared--;
			settle_round(a, (const char (*)[QKM_NAME_MAX])m->ids, m->n_ids, false);
			round_free(m);
			count_abort(a);
			record(a, "aborted", "kma", hex, "aborted by %s: %s", a->cfg.peer, why);
			return 0;
		}
	struct round *r = rounds_take(a, batch);
	if (r) {
		/* Still waiting for files: drop the ones it would have used. */
		round_drop_files(a, r);
		round_free(r);
	} else {
		int rc = qkm_store_batch_state(a->st, batch, &st);
		if (rc)
			return rc;
		if (st == QKM_BLOCK_READY)
			return QKM_EPEER; /* the leader cannot take back a commit */
		if (st == QKM_BLOCK_PENDING && (rc = qkm_store_batch_delete(a->st, batch)))
			return rc;
	}
	count_abort(a);
	record(a, "aborted", "kma", hex, "aborted by %s: %s", a->cfg.peer, why);
	return 0;
}

/* ---- reconciliation ---------------------------------------------------- */

struct idlist {
	struct qkm_id *ids;
	size_t n, cap;
	uint64_t before_ns; /* only blocks stored before this (0: all) */
};

static int collect_pending(struct qkm_block *b, void *arg)
{
	struct idlist *l = arg;
	if (l->before_ns && b->created_ns >= l->before_ns)
		return 0;
	if (l->n && qkm_id_eq(&l->ids[l->n - 1], &b->batch_id))
		return 0;
	for (size_t i = 0; i < l->n; i++)
		if (qkm_id_eq(&l->ids[i], &b->batch_id))
			return 0;
	struct qkm_id *ids = grow(l->ids, &l->cap, l->n, sizeof(*ids), 64);
	if (!ids)
		return QKM_ENOMEM;
	l->ids = ids;
	l->ids[l->n++] = b->batch_id;
	return 0;
}

/* Lists our PENDING rounds to the leader: all of them after a (re)connect,
 * or (before_ns != 0) those stored before before_ns whose COMMIT or ABORT
 * never came (a leader that failed to answer must not leave them pending
 * forever). */
static int follower_send_reconcile(struct qkm_acq *a, uint64_t before_ns)
{
	struct idlist l = {.before_ns = before_ns};
	struct qkm_buf b;
	size_t start;
	qkm_buf_init(&b, QKM_FRAME_MAX, false);
	int rc = qkm_store_blocks(a->st, a->cfg.peer, 1u << QKM_BLOCK_PENDING, false,
				  collect_pending, &l);
	if (!rc && before_ns && l.n == 0)
		goto out; /* nothing stale: nothing to ask */
	if (!rc)
		rc = qkm_frame_begin(&b, QKM_MSG_RECONCILE, ++a->next_req, &start);
	if (!rc)
		rc = qkm_put_str(&b, QKM_T_LINK, a->cfg.link);
	for (size_t i = 0; !rc && i < l.n; i++)
		rc = qkm_put_id(&b, QKM_T_BATCH, &l.ids[i]);
	if (!rc)
		rc = qkm_frame_end(&b, start);
	if (!rc)
		rc = send_frame(a, &b);
	if (!rc)
		log_info("link %s: reconciling %zu pending round(s) with %s", a->cfg.link, l.n,
			 a->cfg.peer);
out:
	free(l.ids);
	qkm_buf_fini(&b);
	return rc;
}

static int leader_on_reconcile(struct qkm_acq *a, const struct qkm_frame *f)
{
	struct qkm_buf b;
	size_t start, off = 0, n = 0;
	uint16_t tag;
	const uint8_t *v;
	uint32_t vl;
	int rc, more;
	qkm_buf_init(&b, QKM_FRAME_MAX, false);
	rc = qkm_frame_begin(&b, QKM_MSG_RECONCILE_ACK, f->req, &start);
	if (!rc)
		rc = qkm_put_str(&b, QKM_T_LINK, a->cfg.link);
	while (!rc && (more = qkm_tlv_next(f->body, f->body_len, &off, &tag, &v, &vl)) == 1) {
		if (tag != QKM_T_BATCH)
			continue;
		if (vl != QKM_ID_LEN) {
			rc = QKM_EPEER;
			break;
		}
		struct qkm_id id;
		enum qkm_block_state st;
		size_t e;
		memcpy(id.b, v, QKM_ID_LEN);
		if ((rc = qkm_store_batch_state(a->st, &id, &st)))
			break;
		/* A round still in flight here is PENDING: the follower waits.
		 * "Not held" is final: without a round, PREPARED cannot store it. */
		uint8_t answer = st == QKM_BLOCK_READY ? QKM_BLOCK_READY : 0;
		for (struct round *r = a->rounds; r && !answer; r = r->next)
			if (qkm_id_eq(&r->batch, &id))
				answer = QKM_BLOCK_PENDING;
		for (struct round *r = a->prepared; r && !answer; r = r->next)
			if (qkm_id_eq(&r->batch, &id))
				answer = QKM_BLOCK_PENDING;
		if (!(rc = qkm_put_open(&b, QKM_T_ENTRY, &e)) && !(rc = qkm_put_id(&b, QKM_T_BATCH, &id)) &&
		    !(rc = qkm_put_u8(&b, QKM_T_STATE, answer)))
			rc = qkm_put_close(&b, e);
		n++;
	}
	/* More rounds than an answer can name: no follower holds that many
	 * PENDING rounds (a window's worth); the peer is broken. */
	if (rc == QKM_ETOOBIG)
		rc = QKM_EPEER;
	if (!rc)
		rc = qkm_frame_end(&b, start);
	if (!rc)
		rc = send_frame(a, &b);
	qkm_buf_fini(&b);
	if (!rc) {
		a->reconciled = true;
		log_info("link %s: reconciled %zu round(s) with %s", a->cfg.link, n, a->cfg.peer);
	}
	return rc;
}

static int follower_on_reconcile_ack(struct qkm_acq *a, const struct qkm_frame *f)
{
	size_t off = 0;
	uint16_t tag;
	const uint8_t *v;
	uint32_t vl;
	int rc = 0, more;
	if ((rc = qkm_store_begin(a->st)))
		return rc;
	while (!rc && (more = qkm_tlv_next(f->body, f->body_len, &off, &tag, &v, &vl)) == 1) {
		if (tag != QKM_T_ENTRY)
			continue;
		struct qkm_id id;
		uint8_t st;
		enum qkm_block_state mine;
		uint64_t bytes;
		char hex[33];
		if (qkm_tlv_check(v, vl) || qkm_tlv_id(v, vl, QKM_T_BATCH, &id) ||
		    qkm_tlv_u8(v, vl, QKM_T_STATE, &st)) {
			rc = QKM_EPEER;
			break;
		}
		qkm_id_hex(&id, hex);
		if ((rc = qkm_store_batch_info(a->st, &id, &mine, &bytes)) ||
		    mine != QKM_BLOCK_PENDING || st == QKM_BLOCK_PENDING)
			continue;
		if (st == QKM_BLOCK_READY) {
			rc = qkm_store_batch_set_state(a->st, &id, QKM_BLOCK_READY);
			if (!rc)
				rc = qkm_store_counter_add(a->st, "acquired_bytes", (int64_t)bytes);
			a->stats.acquired_bytes += bytes;
			record(a, "confirmed", "kma", hex, "ready: leader %s holds it (reconciled)",
			       a->cfg.peer);
		} else {
			rc = qkm_store_batch_delete(a->st, &id);
			count_abort(a);
			record(a, "aborted", "kma", hex, "deleted: leader %s does not hold it (reconciled)",
			       a->cfg.peer);
		}
	}
	if (!rc)
		rc = qkm_store_commit(a->st);
	else
		qkm_store_rollback(a->st);
	if (!rc) {
		a->reconciled = true;
		log_info("link %s: reconciled with %s", a->cfg.link, a->cfg.peer);
	}
	return rc;
}

/* ---- pair-check -------------------------------------------------------- */

/* The sender walks its blocks in (batch, first index) order, the same at
 * both ends, one part at a time: at most cfg.pc_part_bytes of key data read
 * and hashed, or PC_PART_BLOCKS blocks. Each part goes out as PAIRCHECK
 * with the range it covers, (AFTER, UPTO]; the receiver lists the same range
 * of its own blocks, reads those the sender lists too, compares, and answers
 * that part's counts (on_paircheck). Two parts are in flight, so both ends
 * read at once, and no step reads more than a part: a node checking a large
 * pool goes on with its other work between parts (a check that read a whole
 * pool in one step once stalled a node so long that its peer dropped the
 * link). */
#define PC_PART_BLOCKS 2048u
#define PC_WINDOW 2u

struct pc_entry {
	struct qkm_block_pos pos;
	uint32_t count, used;
	uint8_t state;
	bool young;
	uint8_t digest[32];
};

struct pc_list {
	struct pc_entry *e;
	size_t n, cap;
	uint64_t now_ns;
	uint64_t bytes, max_bytes; /* max_bytes 0: no limit */
	bool full;
};

/* A pair-check this side asked for. */
struct pc_job {
	struct pc_job *next;
	uint32_t req;
	bool started, all_sent;
	struct qkm_block_pos last; /* last block of the parts sent */
	uint32_t answered;         /* parts answered (the next answer's SEQ) */
	uint32_t unanswered;       /* parts sent, not answered yet */
	int failed;                /* a part could not be sent: the error */
	struct qkm_paircheck_result r;
};

static int digest(const uint8_t *p, size_t n, uint8_t out[static 32])
{
	unsigned int dl = 32;
	return EVP_Digest(p, n, out, &dl, EVP_sha256(), NULL) == 1 ? 0 : QKM_ECRYPTO;
}

static int pc_collect(struct qkm_block *b, void *arg)
{
	struct pc_list *l = arg;
	struct pc_entry *all = grow(l->e, &l->cap, l->n, sizeof(*all), 256);
	if (!all)
		return QKM_ENOMEM;
	l->e = all;
	struct pc_entry *e = &l->e[l->n++];
	memset(e, 0, sizeof(*e));
	e->pos.batch = b->batch_id;
	e->pos.first = b->first_index;
	e->count = b->count;
	e->used = b->used;
	e->state = (uint8_t)b->state;
	e->young = l->now_ns - b->created_ns < ACQ_YOUNG_NS || b->created_ns > l->now_ns;
	if (!b->data)
		return 0; /* listed without data: the receiver digests on demand */
	size_t off = b->used;
	if (off > b->data->len || digest(b->data->p + off, b->data->len - off, e->digest))
		return QKM_ECRYPTO;
	l->bytes += b->data->len - off;
	if (l->max_bytes && (l->bytes >= l->max_bytes || l->n >= PC_PART_BLOCKS)) {
		l->full = true;
		return QKM_EAGAIN; /* the part ends with this block */
	}
	return 0;
}

static int pos_cmp(const struct qkm_block_pos *a, const struct qkm_block_pos *b)
{
	int c = memcmp(a->batch.b, b->batch.b, QKM_ID_LEN);
	if (c)
		return c;
	return a->first < b->first ? -1 : a->first > b->first;
}

static int pc_cmp(const void *x, const void *y)
{
	return pos_cmp(&((const struct pc_entry *)x)->pos, &((const struct pc_entry *)y)->pos);
}

static int put_pos(struct qkm_buf *b, uint16_t tag, const struct qkm_block_pos *p)
{
	size_t at;
	int rc = qkm_put_open(b, tag, &at);
	if (!rc && !(rc = qkm_put_id(b, QKM_T_BATCH, &p->batch)) &&
	    !(rc = qkm_put_u32(b, QKM_T_FIRST, p->first)))
		rc = qkm_put_close(b, at);
	return rc;
}

/* Reads the optional position TLV tag of a frame body: *have false if absent. */
static int get_pos(const struct qkm_frame *f, uint16_t tag, struct qkm_block_pos *p, bool *have)
{
	const uint8_t *v;
	uint32_t vl;
	int rc = qkm_tlv_bytes(f->body, f->body_len, tag, &v, &vl);
	*have = rc == 0;
	if (rc == QKM_ENOTFOUND)
		return 0;
	if (rc || qkm_tlv_check(v, vl) || qkm_tlv_id(v, vl, QKM_T_BATCH, &p->batch) ||
	    qkm_tlv_u32(v, vl, QKM_T_FIRST, &p->first))
		return QKM_EPEER;
	return 0;
}

/* Walks and sends job j's next part. */
static int pc_send_part(struct qkm_acq *a, struct pc_job *j, uint64_t now_ns)
{
	struct pc_list l = {.now_ns = now_ns, .max_bytes = a->cfg.pc_part_bytes};
	struct qkm_buf b;
	size_t start;
	int rc = qkm_store_blocks_range(a->st, a->cfg.peer, j->started ? &j->last : NULL, NULL,
					true, pc_collect, &l);
	if (rc == QKM_EAGAIN && l.full)
		rc = 0;
	else if (!rc)
		l.full = false; /* the walk reached the end: the last part */
	qkm_buf_init(&b, QKM_FRAME_MAX, false);
	if (!rc && !(rc = qkm_frame_begin(&b, QKM_MSG_PAIRCHECK, j->req, &start)) &&
	    !(rc = qkm_put_str(&b, QKM_T_LINK, a->cfg.link)) &&
	    !(rc = qkm_put_u64(&b, QKM_T_SEQ, (uint64_t)j->answered + j->unanswered)) && j->started)
		rc = put_pos(&b, QKM_T_AFTER, &j->last);
	if (!rc && l.full)
		rc = put_pos(&b, QKM_T_UPTO, &l.e[l.n - 1].pos);
	for (size_t i = 0; !rc && i < l.n; i++) {
		size_t e;
		struct pc_entry *p = &l.e[i];
		if (!(rc = qkm_put_open(&b, QKM_T_ENTRY, &e)) &&
		    !(rc = qkm_put_id(&b, QKM_T_BATCH, &p->pos.batch)) &&
		    !(rc = qkm_put_u32(&b, QKM_T_FIRST, p->pos.first)) &&
		    !(rc = qkm_put_u32(&b, QKM_T_COUNT, p->count)) &&
		    !(rc = qkm_put_u32(&b, QKM_T_USED, p->used)) &&
		    !(rc = qkm_put_u8(&b, QKM_T_STATE, p->state)) &&
		    !(rc = qkm_put_u8(&b, QKM_T_AGE, p->young)) &&
		    !(rc = qkm_put_tlv(&b, QKM_T_DIGEST, p->digest, 32)))
			rc = qkm_put_close(&b, e);
	}
	if (!rc)
		rc = qkm_frame_end(&b, start);
	if (!rc)
		rc = send_frame(a, &b);
	if (!rc) {
		j->unanswered++;
		if (l.full) {
			j->started = true;
			j->last = l.e[l.n - 1].pos;
		} else {
			j->all_sent = true;
		}
	}
	free(l.e);
	qkm_buf_fini(&b);
	return rc;
}

/* Takes pair-check req out of the list: the job, or NULL. */
static struct pc_job *pc_take(struct qkm_acq *a, uint32_t req)
{
	for (struct pc_job **pp = &a->pcs; *pp; pp = &(*pp)->next)
		if ((*pp)->req == req) {
			struct pc_job *j = *pp;
			*pp = j->next;
			return j;
		}
	return NULL;
}

static void pc_job_end(struct qkm_acq *a, struct pc_job *j, int err)
{
	(void)pc_take(a, j->req);
	if (a->pc_fn)
		a->pc_fn(j->req, err ? NULL : &j->r, err, a->pc_arg);
	free(j);
}

int qkm_acq_paircheck(struct qkm_acq *a, uint32_t req, uint64_t now_ns)
{
	if (!a->peer_up)
		return QKM_ESTATE;
	struct pc_job *j = calloc(1, sizeof(*j));
	if (!j)
		return QKM_ENOMEM;
	j->req = req;
	int rc = pc_send_part(a, j, now_ns);
	while (!rc && !j->all_sent && j->unanswered < PC_WINDOW)
		rc = pc_send_part(a, j, now_ns);
	if (rc && !j->unanswered) {
		free(j);
		return rc;
	}
	/* A later part that failed ends the job, as a failure, once the parts
	 * sent are answered. */
	if (rc) {
		j->all_sent = true;
		j->failed = rc;
	}
	j->next = a->pcs;
	a->pcs = j;
	return 0;
}

void qkm_acq_paircheck_cancel(struct qkm_acq *a, uint32_t req) { free(pc_take(a, req)); }

static void pc_note(struct qkm_paircheck_result *r, const char *what, const struct pc_entry *e)
{
	char hex[33];
	size_t n = strlen(r->detail);
	if (n > sizeof(r->detail) - 80)
		return;
	qkm_id_hex(&e->pos.batch, hex);
	snprintf(r->detail + n, sizeof(r->detail) - n, "%s%s %s[%u+%u]", n ? "; " : "", what, hex,
		 e->pos.first, e->count);
}

/* Whether our block y holds the same unused bytes as the sender's x (same
 * position, count and use): reads and digests y's now. */
static int pc_same_bytes(struct qkm_acq *a, const struct pc_entry *x, struct pc_entry *y,
			 bool *same)
{
	struct qkm_secret *d;
	int rc = qkm_store_block_unused(a->st, a->cfg.peer, &y->pos, &d);
	if (!rc)
		rc = digest(d->p, d->len, y->digest);
	qkm_secret_free(d);
	*same = !rc && qkm_ct_equal(x->digest, y->digest, 32);
	return rc;
}

/* Compares one part of the sender's list (in f) with our blocks in the
 * range it covers; both sorted by position. Our blocks are listed without
 * their data and only those the sender also lists are read: this side reads
 * no more than the sender's part, whatever it holds in the range. */
static int on_paircheck(struct qkm_acq *a, const struct qkm_frame *f, uint64_t now_ns)
{
	struct pc_list mine = {.now_ns = now_ns}, theirs = {0};
	struct qkm_paircheck_result r;
	struct qkm_block_pos after, upto;
	bool have_after, have_upto;
	uint64_t seq;
	size_t off = 0;
	uint16_t tag;
	const uint8_t *v;
	uint32_t vl;
	int rc, more;
	memset(&r, 0, sizeof(r));
	if (qkm_tlv_u64(f->body, f->body_len, QKM_T_SEQ, &seq))
		return QKM_EPEER;
	if ((rc = get_pos(f, QKM_T_AFTER, &after, &have_after)) ||
	    (rc = get_pos(f, QKM_T_UPTO, &upto, &have_upto)))
		return rc;
	while ((more = qkm_tlv_next(f->body, f->body_len, &off, &tag, &v, &vl)) == 1) {
		if (tag != QKM_T_ENTRY)
			continue;
		struct pc_entry *all = grow(theirs.e, &theirs.cap, theirs.n, sizeof(*all), 256);
		if (!all) {
			rc = QKM_ENOMEM;
			goto out;
		}
		theirs.e = all;
		struct pc_entry *e = &theirs.e[theirs.n];
		const uint8_t *dg;
		uint32_t dl;
		uint8_t young;
		memset(e, 0, sizeof(*e));
		if (qkm_tlv_check(v, vl) || qkm_tlv_id(v, vl, QKM_T_BATCH, &e->pos.batch) ||
		    qkm_tlv_u32(v, vl, QKM_T_FIRST, &e->pos.first) ||
		    qkm_tlv_u32(v, vl, QKM_T_COUNT, &e->count) ||
		    qkm_tlv_u32(v, vl, QKM_T_USED, &e->used) ||
		    qkm_tlv_u8(v, vl, QKM_T_STATE, &e->state) || qkm_tlv_u8(v, vl, QKM_T_AGE, &young) ||
		    qkm_tlv_bytes(v, vl, QKM_T_DIGEST, &dg, &dl) || dl != 32) {
			rc = QKM_EPEER;
			goto out;
		}
		e->young = young;
		memcpy(e->digest, dg, 32);
		theirs.n++;
	}
	if (theirs.n)
		qsort(theirs.e, theirs.n, sizeof(*theirs.e), pc_cmp);
	if ((rc = qkm_store_blocks_range(a->st, a->cfg.peer, have_after ? &after : NULL,
					 have_upto ? &upto : NULL, false, pc_collect, &mine)))
		goto out;
	size_t i = 0, j = 0;
	while (i < theirs.n || j < mine.n) {
		int c = i == theirs.n ? 1 : j == mine.n ? -1 : pc_cmp(&theirs.e[i], &mine.e[j]);
		/* A block on one side only is in flight when it is young or
		 * PENDING (its round is not decided; stale-round reconciliation
		 * settles it); an old READY block on one side only is a mismatch. */
		if (c < 0) {
			if (theirs.e[i].young || theirs.e[i].state == QKM_BLOCK_PENDING)
				r.in_flight++;
			else
				r.only_sender++, pc_note(&r, "only at sender", &theirs.e[i]);
			i++;
		} else if (c > 0) {
			if (mine.e[j].young || mine.e[j].state == QKM_BLOCK_PENDING)
				r.in_flight++;
			else
				r.only_receiver++, pc_note(&r, "only at receiver", &mine.e[j]);
			j++;
		} else {
			struct pc_entry *x = &theirs.e[i], *y = &mine.e[j];
			bool same = true;
			if (x->count == y->count && x->used == y->used &&
			    (rc = pc_same_bytes(a, x, y, &same)))
				goto out;
			if (x->count != y->count || !same) {
				r.mismatches++;
				pc_note(&r, "different", x);
			} else if (x->state != y->state || x->used != y->used) {
				/* The same block, PENDING on one side and READY on the
				 * other, or drawn further on one side: a COMMIT or a
				 * supply round on its way. The protocol settles both
				 * (stale-round reconciliation, supply cancellation);
				 * only different bytes are a mismatch. */
				r.in_flight++;
			} else {
				r.matches++;
			}
			i++;
			j++;
		}
	}
	struct qkm_buf b;
	size_t start;
	qkm_buf_init(&b, 8192, false);
	if (!(rc = qkm_frame_begin(&b, QKM_MSG_PAIRCHECK_ACK, f->req, &start)) &&
	    !(rc = qkm_put_str(&b, QKM_T_LINK, a->cfg.link)) &&
	    !(rc = qkm_put_u64(&b, QKM_T_SEQ, seq)) &&
	    !(rc = qkm_put_u32(&b, QKM_T_MATCHES, r.matches)) &&
	    !(rc = qkm_put_u32(&b, QKM_T_MISMATCHES, r.mismatches)) &&
	    !(rc = qkm_put_u32(&b, QKM_T_INFLIGHT, r.in_flight)) &&
	    !(rc = qkm_put_u32(&b, QKM_T_ONLY_SENDER, r.only_sender)) &&
	    !(rc = qkm_put_u32(&b, QKM_T_ONLY_RECEIVER, r.only_receiver)) &&
	    !(rc = qkm_put_str(&b, QKM_T_MESSAGE, r.detail)) && !(rc = qkm_frame_end(&b, start)))
		rc = send_frame(a, &b);
	qkm_buf_fini(&b);
out:
	free(mine.e);
	free(theirs.e);
	return rc;
}

static void add_sat(uint32_t *sum, uint32_t n) { *sum = n > UINT32_MAX - *sum ? UINT32_MAX : *sum + n; }

/* Adds a part's counts to the job's; sends the next part, or reports. */
static int on_paircheck_ack(struct qkm_acq *a, const struct qkm_frame *f, uint64_t now_ns)
{
	struct qkm_paircheck_result p;
	struct pc_job *j = a->pcs;
	uint64_t seq;
	while (j && j->req != f->req)
		j = j->next;
	memset(&p, 0, sizeof(p));
	if (qkm_tlv_u64(f->body, f->body_len, QKM_T_SEQ, &seq) ||
	    qkm_tlv_u32(f->body, f->body_len, QKM_T_MATCHES, &p.matches) ||
	    qkm_tlv_u32(f->body, f->body_len, QKM_T_MISMATCHES, &p.mismatches) ||
	    qkm_tlv_u32(f->body, f->body_len, QKM_T_INFLIGHT, &p.in_flight) ||
	    qkm_tlv_u32(f->body, f->body_len, QKM_T_ONLY_SENDER, &p.only_sender) ||
	    qkm_tlv_u32(f->body, f->body_len, QKM_T_ONLY_RECEIVER, &p.only_receiver))
		return QKM_EPEER;
	if (qkm_tlv_str(f->body, f->body_len, QKM_T_MESSAGE, p.detail, sizeof(p.detail), false))
		p.detail[0] = 0;
	if (!j)
		return 0; /* not ours (any more) */
	/* Parts are answered in order, each once. */
	if (!j->unanswered || seq != j->answered)
		return QKM_EPEER;
	j->unanswered--;
	j->answered++;
	add_sat(&j->r.matches, p.matches);
	add_sat(&j->r.mismatches, p.mismatches);
	add_sat(&j->r.in_flight, p.in_flight);
	add_sat(&j->r.only_sender, p.only_sender);
	add_sat(&j->r.only_receiver, p.only_receiver);
	size_t n = strlen(j->r.detail);
	if (p.detail[0] && n + 2 + strlen(p.detail) < sizeof(j->r.detail))
		snprintf(j->r.detail + n, sizeof(j->r.detail) - n, "%s%s", n ? "; " : "", p.detail);
	int rc;
	if (!j->all_sent && (rc = pc_send_part(a, j, now_ns))) {
		j->all_sent = true;
		j->failed = rc;
	}
	if (j->all_sent && !j->unanswered)
		pc_job_end(a, j, j->failed);
	return 0;
}

void qkm_acq_set_source_cbs(struct qkm_acq *a, const struct qkm_acq_source_cbs *cbs)
{
	a->src = *cbs;
}

void qkm_acq_set_paircheck_cb(struct qkm_acq *a,
			      void (*fn)(uint32_t, const struct qkm_paircheck_result *, int, void *),
			      void *arg)
{
	a->pc_fn = fn;
	a->pc_arg = arg;
}

/* ---- pool sync: key material consumed at one end only ------------------- */

/* Each end consumes its own direction of the pool and tells the other end
 * which bytes by naming them in the frame that uses them (SUPPLY, RELAY).
 * A frame lost on the way (the link dropped, a node crashed after its
 * commit, a relay refused for failing a check) leaves those bytes unused
 * at the receiver only. POOL_SYNC lists our direction's blocks with how
 * much of each we used; the receiver burns what we no longer have. Frames
 * on the link are in order, so everything we named before the list has
 * been handled there before it. */
#define SYNC_MAX 200000
#define SYNC_YOUNG_NS 5000000000ull   /* a block this young may still be on its way */

struct sync_e {
	struct qkm_id batch;
	uint32_t first, used;
	uint8_t state;
};
struct sync_list {
	struct sync_e *e;
	size_t n, cap;
	enum qkm_key_type kt;
	uint64_t before_ns;               /* receiver: only blocks created before */
};

static int sync_cmp(const void *x, const void *y)
{
	const struct sync_e *a = x, *b = y;
	int c = memcmp(a->batch.b, b->batch.b, QKM_ID_LEN);
	return c ? c : a->first < b->first ? -1 : a->first > b->first;
}

static int sync_collect(struct qkm_block *b, void *arg)
{
	struct sync_list *l = arg;
	if (b->pool_kind != QKM_POOL_LINK || b->key_type != l->kt ||
	    (l->before_ns && b->created_ns >= l->before_ns))
		return 0;
	if (l->n == SYNC_MAX)
		return QKM_ETOOBIG;
	if (l->n == l->cap) {
		size_t c = l->cap ? 2 * l->cap : 256;
		struct sync_e *x = realloc(l->e, c * sizeof(*x));
		if (!x)
			return QKM_ENOMEM;
		l->e = x;
		l->cap = c;
	}
	struct sync_e *e = &l->e[l->n++];
	e->batch = b->batch_id;
	e->first = b->first_index;
	e->used = b->used;
	e->state = (uint8_t)b->state;
	return 0;
}

int qkm_acq_sync(struct qkm_acq *a)
{
	struct sync_list l = {.kt = QKM_KT_ENC};
	struct qkm_buf b;
	size_t start;
	if (!a->peer_up || !a->reconciled)
		return QKM_ESTATE;
	qkm_buf_init(&b, QKM_FRAME_MAX, false);
	int rc = qkm_store_blocks(a->st, a->cfg.peer, 0, false, sync_collect, &l);
	if (!rc)
		rc = qkm_frame_begin(&b, QKM_MSG_POOL_SYNC, 0, &start);
	if (!rc)
		rc = qkm_put_str(&b, QKM_T_LINK, a->cfg.link);
	for (size_t i = 0; !rc && i < l.n; i++) {
		size_t e;
		if (!(rc = qkm_put_open(&b, QKM_T_ENTRY, &e)) &&
		    !(rc = qkm_put_id(&b, QKM_T_BATCH, &l.e[i].batch)) &&
		    !(rc = qkm_put_u32(&b, QKM_T_FIRST, l.e[i].first)) &&
		    !(rc = qkm_put_u32(&b, QKM_T_OFF, l.e[i].used)) &&
		    !(rc = qkm_put_u8(&b, QKM_T_STATE, l.e[i].state)))
			rc = qkm_put_close(&b, e);
	}
	if (!rc)
		rc = qkm_frame_end(&b, start);
	if (!rc)
		rc = send_frame(a, &b);
	if (rc == QKM_ETOOBIG)
		log_warnx("link %s: pool too large to sync (over %d blocks)", a->cfg.link, SYNC_MAX);
	free(l.e);
	qkm_buf_fini(&b);
	return rc;
}

/* The peer's list of its direction (our DEC blocks): burn what it used. */
static int on_pool_sync(struct qkm_acq *a, const struct qkm_frame *f, uint64_t now_ns)
{
	struct sync_list theirs = {0}, mine = {.kt = QKM_KT_DEC};
	size_t off = 0;
	uint16_t tag;
	const uint8_t *v;
	uint32_t vl;
	int rc = 0;
	uint64_t whole = 0, part = 0, bytes = 0;
	/* COMMITs that came before the list first: our pool as the peer saw it. */
	qkm_acq_flush(a);
	while (qkm_tlv_next(f->body, f->body_len, &off, &tag, &v, &vl) == 1) {
		if (tag != QKM_T_ENTRY)
			continue;
		if (theirs.n == SYNC_MAX) {
			rc = QKM_EPEER;
			goto out;
		}
		if (theirs.n == theirs.cap) {
			size_t c = theirs.cap ? 2 * theirs.cap : 256;
			struct sync_e *x = realloc(theirs.e, c * sizeof(*x));
			if (!x) {
				rc = QKM_ENOMEM;
				goto out;
			}
			theirs.e = x;
			theirs.cap = c;
		}
		struct sync_e *e = &theirs.e[theirs.n++];
		if (qkm_tlv_check(v, vl) || qkm_tlv_id(v, vl, QKM_T_BATCH, &e->batch) ||
		    qkm_tlv_u32(v, vl, QKM_T_FIRST, &e->first) ||
		    qkm_tlv_u32(v, vl, QKM_T_OFF, &e->used) ||
		    qkm_tlv_u8(v, vl, QKM_T_STATE, &e->state)) {
			rc = QKM_EPEER;
			goto out;
		}
	}
	if (theirs.n)
		qsort(theirs.e, theirs.n, sizeof(*theirs.e), sync_cmp);
	mine.before_ns = now_ns > SYNC_YOUNG_NS ? now_ns - SYNC_YOUNG_NS : 1;
	if ((rc = qkm_store_blocks(a->st, a->cfg.peer, 1u << QKM_BLOCK_READY, false, sync_collect,
				   &mine)))
		goto out;
	if ((rc = qkm_store_begin(a->st)))
		goto out;
	for (size_t i = 0; !rc && i < mine.n; i++) {
		struct sync_e *m = &mine.e[i];
		/* None listed: theirs.e is NULL, which bsearch may not be given (C17 7.22.5). */
		const struct sync_e *t =
			theirs.n ? bsearch(m, theirs.e, theirs.n, sizeof(*m), sync_cmp) : NULL;
		uint64_t upto;
		if (!t)
			upto = UINT32_MAX; /* used up there (burn clamps to the block's end) */
		else if (t->state == QKM_BLOCK_READY && t->used > m->used)
			upto = t->used;
		else
			continue;
		rc = qkm_store_block_burn(a->st, a->cfg.peer, &m->batch, m->first, QKM_KT_DEC, upto);
		if (!t)
			whole++;
		else
			part++, bytes += upto - m->used;
	}
	if (!rc && (whole || part)) {
		struct qkm_lc_event ev;
		memset(&ev, 0, sizeof(ev));
		snprintf(ev.event, sizeof(ev.event), "burned");
		snprintf(ev.key_kind, sizeof(ev.key_kind), "kma");
		snprintf(ev.key_id, sizeof(ev.key_id), "pool %s", a->cfg.peer);
		snprintf(ev.peer, sizeof(ev.peer), "%s", a->cfg.peer);
		snprintf(ev.detail, sizeof(ev.detail), "pool sync: %llu block(s) %s used up, %llu "
			 "partly (%llu bytes): consumed there by frames that never arrived here",
			 (unsigned long long)whole, a->cfg.peer, (unsigned long long)part,
			 (unsigned long long)bytes);
		rc = qkm_store_record(a->st, &ev);
	}
	if (!rc)
		rc = qkm_store_commit(a->st);
	else
		qkm_store_rollback(a->st);
	if (!rc && (whole || part))
		log_info("link %s: pool sync: burned %llu block(s) and part of %llu that %s had used "
			 "(frames lost on the way)", a->cfg.link, (unsigned long long)whole,
			 (unsigned long long)part, a->cfg.peer);
out:
	free(theirs.e);
	free(mine.e);
	return rc;
}

/* ---- dispatch ---------------------------------------------------------- */

/* The follower found the round's MAC different: names the leader's own
 * files that do not match their module's hash, as the follower did its. */
static void leader_blame(struct qkm_acq *a, const struct round *r, char *msg, size_t cap)
{
	const uint8_t *p = r->data.p;
	const char *first = NULL;
	uint32_t bad = 0;
	for (uint32_t i = 0; i < r->n_ids; p += r->files[i++].len)
		if (file_corrupt(p, r->files[i].len, r->files[i].has_hash, r->files[i].hash) &&
		    !bad++)
			first = r->ids[i];
	blame_note(msg, cap, a->cfg.self, first, bad);
}

int qkm_acq_on_frame(struct qkm_acq *a, const struct qkm_frame *f, uint64_t now_ns)
{
	struct qkm_id batch;
	char msg[512] = "";
	int rc;
	switch (f->type) {
	case QKM_MSG_ACQ_PREPARE: {
		struct round *r;
		if (a->leader || !a->reconciled)
			return QKM_EPEER;
		if (a->n_rounds >= 4 * a->cfg.window + 64)
			return QKM_EPEER; /* a peer flooding us with rounds */
		if ((rc = follower_parse_prepare(a, f, &r, now_ns)))
			return rc;
		/* The round count alone let a peer pin 320 rounds of 65,536 IDs
		 * (1.3 GB of names); a leader keeps ids_max in flight. */
		uint64_t bound = 4ull * a->cfg.ids_max, held_ids = ids_held(a) + r->n_ids;
		if (held_ids > (bound > ACQ_MAX_IDS ? bound : ACQ_MAX_IDS)) {
			log_warnx("link %s: peer names %llu QKD-keys in rounds not yet settled, "
				  "more than a leader keeps in flight", a->cfg.link,
				  (unsigned long long)held_ids);
			round_free(r);
			return QKM_EPEER;
		}
		/* Batch IDs are never reused: a PREPARE for a batch we are waiting
		 * on or already hold would otherwise wait for files already used
		 * and then record an abort of a batch we stored. */
		enum qkm_block_state held = 0;
		bool queued = false;
		for (struct round *q = a->rounds; q && !queued; q = q->next)
			queued = qkm_id_eq(&q->batch, &r->batch);
		for (struct round *q = a->prepared; q && !queued; q = q->next)
			queued = qkm_id_eq(&q->batch, &r->batch);
		if (queued || (rc = qkm_store_batch_state(a->st, &r->batch, &held)) || held) {
			round_free(r);
			return rc ? rc : QKM_EPEER;
		}
		if (r->unit != a->cfg.unit_bytes) {
			char hex[33];
			qkm_id_hex(&r->batch, hex);
			log_warnx("link %s: peer uses KMA-key unit %u, we use %u", a->cfg.link,
				  r->unit, a->cfg.unit_bytes);
		}
		/* The MAC key of the session this PREPARE came on, now: the
		 * round's files may come later. Without one the round cannot be
		 * judged: abort it, so that the leader does not wait for it. */
		if (!(r->key = qkm_secret_new(32)) ||
		    (rc = a->mac_key(&r->batch, r->key->p, a->send_arg))) {
			char why[96];
			snprintf(why, sizeof(why), "MAC key not derived: %s",
				 qkm_strerror(r->key ? rc : QKM_ENOMEM));
			round_drop_files(a, r);
			rc = follower_abort(a, r, why);
			round_free(r);
			return rc;
		}
		rounds_push(a, r);
		if (a->src.missing)
			ask_missing(a, r);
		follower_run(a, now_ns);
		return 0;
	}
	case QKM_MSG_ACQ_PREPARED:
		if (!a->leader || qkm_tlv_id(f->body, f->body_len, QKM_T_BATCH, &batch))
			return QKM_EPEER;
		return leader_on_prepared(a, &batch, now_ns);
	case QKM_MSG_ACQ_ABORT:
		if (qkm_tlv_id(f->body, f->body_len, QKM_T_BATCH, &batch))
			return QKM_EPEER;
		if (qkm_tlv_str(f->body, f->body_len, QKM_T_MESSAGE, msg, sizeof(msg), false))
			snprintf(msg, sizeof(msg), "no reason given");
		if (a->leader) {
			struct round *r = rounds_take(a, &batch);
			char hex[33];
			if (!r)
				return 0; /* already settled (e.g. we sent ABORT too) */
			qkm_id_hex(&batch, hex);
			count_abort(a);
			if (strncmp(msg, "MAC mismatch", 12) == 0)
				leader_blame(a, r, msg, sizeof(msg));
			record(a, "aborted", "kma", hex, "round of %u QKD-key(s) aborted by %s: %s",
			       r->n_ids, a->cfg.peer, msg);
			log_warnx("link %s: round %s aborted by %s: %s", a->cfg.link, hex,
				  a->cfg.peer, msg);
			settle_round(a, (const char (*)[QKM_NAME_MAX])r->ids, r->n_ids, false);
			round_free(r);
			return 0;
		}
		return follower_on_abort(a, &batch, msg);
	case QKM_MSG_ACQ_COMMIT:
		if (a->leader || qkm_tlv_id(f->body, f->body_len, QKM_T_BATCH, &batch))
			return QKM_EPEER;
		return follower_on_commit(a, &batch);
	case QKM_MSG_ACQ_COMMITTED:
		return a->leader ? 0 : QKM_EPEER;
	case QKM_MSG_RECONCILE:
		if (!a->leader)
			return QKM_EPEER;
		return leader_on_reconcile(a, f);
	case QKM_MSG_RECONCILE_ACK:
		if (a->leader)
			return QKM_EPEER;
		return follower_on_reconcile_ack(a, f);
	case QKM_MSG_PAIRCHECK:
		return on_paircheck(a, f, now_ns);
	case QKM_MSG_PAIRCHECK_ACK:
		return on_paircheck_ack(a, f, now_ns);
	case QKM_MSG_POOL_SYNC:
		return on_pool_sync(a, f, now_ns);
	default:
		return QKM_EPEER;
	}
}

void qkm_acq_tick(struct qkm_acq *a, uint64_t now_ns)
{
	if (!a->leader) {
		qkm_acq_flush(a);
		follower_run(a, now_ns);
		if (a->peer_up && a->reconciled && now_ns >= a->stale_check_ns + ACQ_STALE_NS) {
			a->stale_check_ns = now_ns;
			if (follower_send_reconcile(a, now_ns - ACQ_STALE_NS))
				log_warnx("link %s: could not ask about stale rounds", a->cfg.link);
		}
		return;
	}
	qkm_acq_flush(a);
	if (!a->peer_up || !a->reconciled)
		return;
	while (a->head && a->n_rounds + a->n_prepared < a->cfg.window &&
	       ids_held(a) < a->cfg.ids_max &&
	       (a->buffered >= a->cfg.batch_max_bytes ||
		now_ns >= a->head->arrived_ns + a->cfg.batch_ns))
		if (leader_start_round(a, now_ns))
			break;
}

void qkm_acq_on_peer_up(struct qkm_acq *a, uint64_t now_ns)
{
	a->peer_up = true;
	a->reconciled = false;
	if (!a->leader && follower_send_reconcile(a, 0))
		log_warnx("link %s: could not start reconciliation", a->cfg.link);
}

void qkm_acq_on_peer_down(struct qkm_acq *a)
{
	qkm_acq_flush(a); /* the leader decided these; COMMITTED is not sent */
	a->peer_up = false;
	a->reconciled = false;
	rounds_clear(a, "link to peer lost");
	a->waiting = false;
	while (a->pcs)
		pc_job_end(a, a->pcs, QKM_ESTATE);
}

bool qkm_acq_reconciled(const struct qkm_acq *a) { return a->reconciled; }
bool qkm_acq_is_leader(const struct qkm_acq *a) { return a->leader; }

void qkm_acq_stats(const struct qkm_acq *a, struct qkm_acq_stats *out)
{
	*out = a->stats;
	out->buffered_bytes = a->buffered;
	out->in_flight = a->n_rounds + a->n_prepared;
	out->waiting_files = a->waiting;
}

struct qkm_acq *qkm_acq_new(const struct qkm_acq_cfg *cfg, struct qkm_store *st,
			    qkm_acq_send_fn send, qkm_acq_mac_key_fn mac_key, void *arg)
{
	struct qkm_acq *a = calloc(1, sizeof(*a));
	if (!a)
		return NULL;
	EVP_MAC *poly = EVP_MAC_fetch(NULL, "POLY1305", NULL);
	a->mac = poly ? EVP_MAC_CTX_new(poly) : NULL;
	EVP_MAC_free(poly); /* the context holds its own reference */
	if (!a->mac) {
		log_warnx("acquisition: no Poly1305 in this OpenSSL");
		free(a);
		return NULL;
	}
	a->cfg = *cfg;
	a->st = st;
	a->send = send;
	a->mac_key = mac_key;
	a->send_arg = arg;
	a->leader = strcmp(cfg->self, cfg->peer) < 0;
	a->rounds_tail = &a->rounds;
	return a;
}

void qkm_acq_free(struct qkm_acq *a)
{
	if (!a)
		return;
	struct round *r;
	while ((r = a->rounds) != NULL) {
		a->rounds = r->next;
		round_free(r);
	}
	while ((r = a->prepared) != NULL) {
		a->prepared = r->next;
		round_free(r);
	}
	/* The head has no prev, so buf_remove moves a->head on. */
	while (a->head)
		buf_remove(a, a->head); /* NOLINT(clang-analyzer-unix.Malloc) */
	free(a->commits); /* still PENDING: reconciliation settles them */
	while (a->pcs)
		qkm_acq_paircheck_cancel(a, a->pcs->req);
	EVP_MAC_CTX_free(a->mac);
	free(a);
}
