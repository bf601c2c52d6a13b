/* supply.c - key supply to applications (supply.h). Invariants: a KSA key
 * reaches the master only after the slave's node stored it durably and the
 * master's node durably recorded it supplied; key material is consumed
 * durably before it leaves this process; a key is delivered to each of its
 * slaves at most once; the peer's ranges only ever move forward. */
#include "ksa/supply.h"
#include "core/log.h"
#include "core/secret.h"
#include "kma/range.h"
#include "ksa/combine.h"
#include "ksa/stock.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SUPPLY_MAX_RANGES 4096
#define SUPPLY_MAX_ROUND_KEYS 8192
#define SUPPLY_RUN_BYTES 4096u /* key bytes in a slave's node's run at most */
_Static_assert(QKM_STOCK_MAX_REFILL <= SUPPLY_MAX_ROUND_KEYS, "a stock refill fits in one round");
/* Rounds in flight to a peer at once over a direct link: the next is made
 * while the peer stores the last. An end-to-end pool's frames are routed
 * and could overtake each other on a new route: one at a time there. */
#define SUPPLY_MAX_IN_FLIGHT 2
#define STOCK_PAUSE_MIN_NS 1000000000ull  /* after a refill the peer refused */
#define STOCK_PAUSE_MAX_NS 64000000000ull /* the pause doubles up to this */

/* One enc_keys request waiting for, or riding in, a round. */
struct enc_req {
	struct enc_req *next;
	void *req;                       /* the owner's HTTP request; NULL: forgotten */
	char master[QKM_NAME_MAX];
	char slave[QKM_NAME_MAX];
	char additional[1040];
	uint32_t number, size;
	uint8_t comb;                    /* enum qkm_etsi_combination */
	size_t first_key;                /* index of its first key in the round */
	int stock;                       /* 1 + stock entry it refills; 0: an SAE's */
	bool its_only;                   /* asked for "its": never AES-relayed keys */
	int64_t seq_first, seq_last;     /* its rows in the store (master's node) */
	uint64_t queued_ns;              /* waits for relayed keys until + round timeout */
};

/* The req of a stock refill: never answered, never forgotten. */
static char stock_req;

/* A round in flight to one peer. */
struct round {
	struct round *next;              /* the peer's next younger round */
	uint32_t id;
	uint64_t deadline_ns;
	struct enc_req *reqs;
	size_t n_keys;
	struct qkm_id *ids;
	size_t *offs;                    /* byte offset of key i in data */
	uint32_t *sizes;                 /* bits */
	uint8_t *levels;                 /* enum qkm_etsi_level of each key */
	struct qkm_secret *data;
	struct qkm_x25519 *eph;          /* when a key asks for combination */
};

struct peer {
	char name[QKM_NAME_MAX];
	struct enc_req *queue, **queue_tail;
	struct round *rounds;            /* in flight, oldest first */
	size_t n_rounds;
	bool up;
	bool cancel_sent;
	bool cancel_wait;                /* a cancellation went out at cancel_ns, unanswered */
	uint64_t cancel_ns;
	bool relay;                      /* an end-to-end pool built by relay */
};

/* A dec_keys request waiting for the next flush: those that come together
 * are delivered in one transaction with one commit (group commit); each
 * is kept or undone whole, and answered only once the commit is durable. */
struct dec_req {
	struct dec_req *next;
	void *req;                       /* the owner's HTTP request; NULL: answered or forgotten */
	char caller[QKM_NAME_MAX], master[QKM_NAME_MAX];
	uint64_t now_ns;
	struct qkm_ksa_key *kk;          /* the keys, read at the flush */
	size_t n;
	struct qkm_id ids[];             /* n */
};

struct qkm_supply {
	struct qkm_supply_cfg cfg;
	struct qkm_store *st;
	struct qkm_supply_ops ops;
	struct peer *peers;
	size_t n_peers;
	struct dec_req *decs, **decs_tail;
	uint32_t next_round;
	/* Per stock entry: no refill before retry_ns; pause_ns, the pause
	 * after the last refusal (0: the last refill was stocked). */
	uint64_t stock_retry_ns[QKM_STOCK_MAX_ENTRIES];
	uint64_t stock_pause_ns[QKM_STOCK_MAX_ENTRIES];
	uint64_t horizon_ms;    /* qkm_store_ksa_horizon: no key made then or before is taken */
	uint64_t prune_next_ns; /* the next look for rows past retention */
};

static void dec_flush(struct qkm_supply *s);

void qkm_supply_cfg_defaults(struct qkm_supply_cfg *cfg)
{
	cfg->key_size = 256;
	cfg->min_key_size = 64;
	cfg->max_key_size = 8192;
	cfg->max_key_per_request = 128;
	cfg->max_sae_count = 8;
	cfg->max_key_count = 1000000;
	cfg->preserve = false;
	cfg->round_timeout_ns = 5000000000u;
	cfg->retention_ns = 0;
	cfg->stock = NULL;
}

/* ---- helpers ----------------------------------------------------------- */

/* An Error answer: status, reason (the label ops.reply passes on) and the
 * message for the application. */
static void reply_error(struct qkm_supply *s, void *req, int status, const char *reason,
			const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static void reply_error(struct qkm_supply *s, void *req, int status, const char *reason,
			const char *fmt, ...)
{
	char msg[300];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	char *body = qkm_etsi_error_json(msg, NULL);
	if (body) {
		s->ops.reply(req, status, reason, (const uint8_t *)body, strlen(body), s->ops.arg);
		free(body);
	} else {
		s->ops.reply(req, 503, "out_of_memory",
			     (const uint8_t *)"{\"message\":\"out of memory\"}", 27, s->ops.arg);
	}
}

/* The node an SAE is registered at, or NULL. */
static const char *sae_node(const struct qkm_supply *s, const char *sae)
{
	return qkm_sae_node(s->cfg.node, sae);
}

static struct peer *peer_find(struct qkm_supply *s, const char *name)
{
	for (size_t i = 0; i < s->n_peers; i++)
		if (strcmp(s->peers[i].name, name) == 0)
			return &s->peers[i];
	return NULL;
}

/* Records event for n keys of one round with consecutive indexes from
 * first: key_id is the key's UUID for one, "<round UUID>[a..b]" (index 0's
 * UUID, then the first and last index) for more, as KMA batches are named;
 * the manager's ledger finds either by the round's token (core/token.h). */
static void record(struct qkm_supply *s, const char *event, const struct qkm_id *first,
		   uint32_t n, const char *peer, const char *fmt, ...)
	__attribute__((format(printf, 6, 7)));
static void record(struct qkm_supply *s, const char *event, const struct qkm_id *first,
		   uint32_t n, const char *peer, const char *fmt, ...)
{
	struct qkm_lc_event ev;
	memset(&ev, 0, sizeof(ev));
	snprintf(ev.event, sizeof(ev.event), "%s", event);
	snprintf(ev.key_kind, sizeof(ev.key_kind), "ksa");
	if (first && n > 1) {
		struct qkm_id base = *first;
		char u[37];
		qkm_id_set_index(&base, 0);
		qkm_id_uuid_str(&base, u);
		snprintf(ev.key_id, sizeof(ev.key_id), "%s[%u..%u]", u, qkm_id_index(first),
			 qkm_id_index(first) + n - 1);
	} else if (first) {
		qkm_id_uuid_str(first, ev.key_id);
	}
	snprintf(ev.peer, sizeof(ev.peer), "%s", peer);
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(ev.detail, sizeof(ev.detail), fmt, ap);
	va_end(ap);
	if (qkm_store_record(s->st, &ev))
		log_warnx("supply: could not record %s", event);
}

/* Whether key b comes k keys after key a in one round: same first 12
 * bytes, index k more. */
static bool run_next(const struct qkm_id *a, const struct qkm_id *b, size_t k)
{
	return qkm_id_same_round(a, b) && qkm_id_index(b) == qkm_id_index(a) + k;
}

/* Master's side: the rows seq_first..seq_last, n keys of one round from
 * first on, move from state from to SUPPLIED at at_ns, recorded with detail
 * in one record. Nothing is delivered there to list, so state and time are
 * all the rows change. */
static int set_supplied(struct qkm_supply *s, const struct qkm_id *first, int64_t seq_first,
			int64_t seq_last, uint32_t n, enum qkm_ksa_state from, uint64_t at_ns,
			const char *peer, const char *detail)
{
	int rc = qkm_store_ksa_set_state(s->st, seq_first, seq_last, from, QKM_KSA_SUPPLIED, at_ns);
	if (!rc)
		record(s, "supplied", first, n, peer, "%s", detail);
	return rc;
}

/* Counts n keys supplied to sae as master (enc_keys) or slave (dec_keys), in
 * the store's counter QKM_SAE_COUNTER_PREFIX "<sae>/enc" or ".../dec", inside
 * the caller's transaction (beside "supplied_keys"). */
static int count_sae(struct qkm_supply *s, const char *sae, bool master, int64_t n)
{
	char name[QKM_NAME_MAX + 16];
	snprintf(name, sizeof(name), QKM_SAE_COUNTER_PREFIX "%s/%s", sae, master ? "enc" : "dec");
	return n ? qkm_store_counter_add(s->st, name, n) : 0;
}

static bool list_has(const char *list, const char *name)
{
	size_t n = strlen(name);
	for (const char *p = list; *p;) {
		const char *c = strchr(p, ',');
		size_t l = c ? (size_t)(c - p) : strlen(p);
		if (l == n && strncmp(p, name, n) == 0)
			return true;
		if (!c)
			break;
		p = c + 1;
	}
	return false;
}

static void list_add(char *list, size_t sz, const char *name)
{
	size_t n = strlen(list);
	snprintf(list + n, sz - n, "%s%s", n ? "," : "", name);
}

/* SHA-256 over each key's ID, size and bytes, in round order (R-SUP-6). */
static int keys_digest(size_t n, const struct qkm_id *ids, const uint32_t *sizes,
		       const uint8_t *data, uint8_t out[static 32])
{
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	int ok = md && EVP_DigestInit_ex(md, EVP_sha256(), NULL);
	size_t off = 0;
	for (size_t i = 0; ok && i < n; i++) {
		uint8_t x[4];
		qkm_be32_put(x, sizes[i]);
		ok = EVP_DigestUpdate(md, ids[i].b, QKM_ID_LEN) && EVP_DigestUpdate(md, x, 4) &&
		     EVP_DigestUpdate(md, data + off, sizes[i] / 8);
		off += sizes[i] / 8;
	}
	unsigned int len = 32;
	ok = ok && EVP_DigestFinal_ex(md, out, &len);
	EVP_MD_CTX_free(md);
	return ok ? 0 : QKM_ECRYPTO;
}

/* ---- status ------------------------------------------------------------ */

/* Checks caller and slave; on failure replies and returns NULL, else the
 * peer holding the pool shared with the slave's node. */
static struct peer *check_pair(struct qkm_supply *s, void *req, const char *caller,
			       const char *slave)
{
	const char *cn = sae_node(s, caller), *sn;
	struct peer *p;
	if (!cn || strcmp(cn, s->cfg.self) != 0) {
		reply_error(s, req, 401, "not_registered", "SAE '%s' is not registered at node %s",
			    caller, s->cfg.self);
		return NULL;
	}
	if (!qkm_name_valid(slave) || !(sn = sae_node(s, slave))) {
		reply_error(s, req, 400, "unknown_slave", "slave SAE '%s' is not registered",
			    slave);
		return NULL;
	}
	if (strcmp(sn, s->cfg.self) == 0) {
		reply_error(s, req, 400, "same_node",
			    "slave SAE '%s' is attached to this node: no QKD key pool "
			    "between an SAE and itself",
			    slave);
		return NULL;
	}
	if (!(p = peer_find(s, sn))) {
		reply_error(s, req, 400, "no_pool",
			    "no key pool shared with node %s (slave SAE '%s')", sn, slave);
		return NULL;
	}
	return p;
}

void qkm_supply_status(struct qkm_supply *s, void *req, const char *caller, const char *slave)
{
	struct peer *p = check_pair(s, req, caller, slave);
	if (!p)
		return;
	struct qkm_pool_stats ps;
	struct qkm_etsi_status st;
	memset(&st, 0, sizeof(st));
	if (qkm_store_pool_stats(s->st, p->name, &ps)) {
		reply_error(s, req, 503, "store", "key store unavailable");
		return;
	}
	snprintf(st.source_KME_ID, sizeof(st.source_KME_ID), "%s", s->cfg.self);
	snprintf(st.target_KME_ID, sizeof(st.target_KME_ID), "%s", p->name);
	snprintf(st.master_SAE_ID, sizeof(st.master_SAE_ID), "%s", caller);
	snprintf(st.slave_SAE_ID, sizeof(st.slave_SAE_ID), "%s", slave);
	st.key_size = s->cfg.key_size;
	/* Keys in the pool, plus those already made for this pair (stock). */
	st.stored_key_count = ps.enc_bytes / (s->cfg.key_size / 8);
	if (s->cfg.stock)
		st.stored_key_count +=
			qkm_stock_pair_count(s->cfg.stock, caller, slave, s->cfg.key_size);
	st.max_key_count = s->cfg.max_key_count;
	st.max_key_per_request = s->cfg.max_key_per_request;
	st.max_key_size = s->cfg.max_key_size;
	st.min_key_size = s->cfg.min_key_size;
	st.max_SAE_ID_count = s->cfg.max_sae_count;
	char *body = qkm_etsi_status_json(&st);
	if (!body) {
		reply_error(s, req, 503, "out_of_memory", "out of memory");
		return;
	}
	s->ops.reply(req, 200, NULL, (const uint8_t *)body, strlen(body), s->ops.arg);
	free(body);
}

/* ---- master side: enc_keys --------------------------------------------- */

void qkm_supply_enc(struct qkm_supply *s, void *req, const char *caller, const char *slave,
		    const struct qkm_etsi_key_request *r, uint64_t now_ns)
{
	struct peer *p = check_pair(s, req, caller, slave);
	if (!p)
		return;
	uint32_t size = r->size ? r->size : s->cfg.key_size;
	uint32_t number = r->number ? r->number : 1;
	if (size % 8 || size < s->cfg.min_key_size || size > s->cfg.max_key_size) {
		reply_error(s, req, 400, "bad_size",
			    "size %u: must be a multiple of 8 from %u to %u", size,
			    s->cfg.min_key_size, s->cfg.max_key_size);
		return;
	}
	if (number > s->cfg.max_key_per_request) {
		reply_error(s, req, 400, "too_many_keys", "number %u: at most %u keys per request",
			    number, s->cfg.max_key_per_request);
		return;
	}
	if (r->n_additional > s->cfg.max_sae_count) {
		reply_error(s, req, 400, "too_many_slaves", "%zu additional slave SAEs: at most %u",
			    r->n_additional, s->cfg.max_sae_count);
		return;
	}
	struct enc_req *e = calloc(1, sizeof(*e));
	if (!e) {
		reply_error(s, req, 503, "out_of_memory", "out of memory");
		return;
	}
	for (size_t i = 0; i < r->n_additional; i++) {
		const char *an = sae_node(s, r->additional[i]);
		if (!an || strcmp(an, p->name) != 0 || strcmp(r->additional[i], slave) == 0) {
			reply_error(s, req, 400, "bad_additional_slave",
				    "additional slave SAE '%s' is not registered at node %s, the "
				    "slave's node", r->additional[i], p->name);
			free(e);
			return;
		}
		list_add(e->additional, sizeof(e->additional), r->additional[i]);
	}
	if (!p->up || !s->ops.ready(p->name, s->ops.arg)) {
		reply_error(s, req, 503, "pool_unavailable",
			    "key pool with node %s is not available (KSA link down "
			    "or reconciling)",
			    p->name);
		free(e);
		return;
	}
	e->req = req;
	snprintf(e->master, sizeof(e->master), "%s", caller);
	snprintf(e->slave, sizeof(e->slave), "%s", slave);
	e->number = number;
	e->size = size;
	/* A direct QKD link gives ITS keys, which serve both levels; keys
	 * relayed with the AES fallback on some hop are computational, and
	 * "its" requests never get them. Each key records the level it has
	 * (R-SUP-4, R-REL-4); X25519 combination keeps it. */
	e->its_only = p->relay && r->level == QKM_LEVEL_ITS; /* link pools: all ITS */
	e->queued_ns = now_ns;
	e->comb = (uint8_t)r->combination;
	/* Plain requests of this pair and size are served from stock from now
	 * on (ksa/stock.h); this one and any that find the stock empty take
	 * the round trip. */
	if (s->cfg.stock && !r->n_additional && !e->comb)
		(void)qkm_stock_want(s->cfg.stock, p->name, caller, slave, size);
	*p->queue_tail = e;
	p->queue_tail = &e->next;
}

static void round_free(struct round *r)
{
	if (!r)
		return;
	while (r->reqs) {
		struct enc_req *e = r->reqs;
		r->reqs = e->next;
		free(e);
	}
	free(r->ids);
	free(r->offs);
	free(r->sizes);
	free(r->levels);
	qkm_secret_free(r->data);
	qkm_x25519_free(r->eph);
	free(r);
}

/* Fails every request of a round (or a queue) with status/message. */
static void fail_reqs(struct qkm_supply *s, struct enc_req *e, int status, const char *reason,
		      const char *msg)
{
	for (; e; e = e->next)
		if (e->stock && e->req) {
			qkm_stock_refill_failed(s->cfg.stock, e->stock - 1, e->number);
			e->req = NULL;
		} else if (e->req) {
			reply_error(s, e->req, status, reason, "%s", msg);
			e->req = NULL;
		}
}

static int put_key_meta(struct qkm_buf *b, const struct qkm_id *id, const struct enc_req *e,
			uint32_t size, uint8_t level)
{
	size_t k;
	int rc = qkm_put_open(b, QKM_T_KEY, &k);
	if (!rc)
		rc = qkm_put_id(b, QKM_T_KSA_ID, id);
	if (!rc)
		rc = qkm_put_str(b, QKM_T_MASTER, e->master);
	if (!rc)
		rc = qkm_put_str(b, QKM_T_SLAVE, e->slave);
	for (const char *p = e->additional; !rc && *p;) {
		char one[QKM_NAME_MAX];
		const char *c = strchr(p, ',');
		size_t l = c ? (size_t)(c - p) : strlen(p);
		snprintf(one, sizeof(one), "%.*s", (int)l, p);
		rc = qkm_put_str(b, QKM_T_ADDITIONAL, one);
		p = c ? c + 1 : p + l;
	}
	if (!rc)
		rc = qkm_put_u32(b, QKM_T_SIZE, size);
	if (!rc)
		rc = qkm_put_u8(b, QKM_T_LEVEL, level);
	if (!rc && e->comb)
		rc = qkm_put_u8(b, QKM_T_COMB, e->comb);
	if (!rc)
		rc = qkm_put_close(b, k);
	return rc;
}

/* The block ranges holding bytes [off, off + len) of a round's data, given
 * the round's ranges in order (lineage, R-LC-2; cancellation). */
static uint32_t key_ranges(const struct qkm_range *rg, size_t nr, size_t off, size_t len,
			   struct qkm_range_ref *out)
{
	size_t pos = 0;
	uint32_t n = 0;
	for (size_t i = 0; i < nr && n < QKM_KSA_MAX_RANGES; i++) {
		size_t a = pos, b = pos + rg[i].len;
		pos = b;
		if (b <= off || a >= off + len)
			continue;
		size_t from = off > a ? off - a : 0, to = off + len < b ? off + len - a : rg[i].len;
		out[n].batch = rg[i].batch;
		out[n].first = rg[i].first_index;
		out[n].off = rg[i].off + (uint32_t)from;
		out[n].len = (uint32_t)(to - from);
		n++;
	}
	return n;
}

/* The level of the key at bytes [off, off + len) of a round's data: ITS
 * unless one of its ranges comes from a block relayed with AES somewhere. */
static uint8_t key_level(const struct qkm_range *rg, size_t nr, size_t off, size_t len)
{
	size_t pos = 0;
	for (size_t i = 0; i < nr; i++) {
		size_t a = pos, b = pos + rg[i].len;
		pos = b;
		if (b > off && a < off + len && rg[i].level == QKM_BLOCK_COMPUTATIONAL)
			return QKM_LEVEL_COMPUTATIONAL;
	}
	return QKM_LEVEL_ITS;
}

/* "<batch hex>[key]+offset,..." for the life-cycle record. */
static void source_of(const struct qkm_range_ref *r, uint32_t n, uint32_t unit, char *out,
		      size_t outsz)
{
	size_t len = 0;
	out[0] = 0;
	for (uint32_t i = 0; i < n && len < outsz; i++) {
		char hex[33];
		qkm_id_hex(&r[i].batch, hex);
		len += (size_t)snprintf(out + len, outsz - len, "%s%.24s%08x+%u", i ? "," : "", hex,
					r[i].first + r[i].off / unit, r[i].off % unit);
	}
}

/* Master's node: records the n keys of request e from the round's key k0
 * on OFFERED, as one row (a run of keys, store.h) and one "formatted"
 * record naming the KMA-key ranges they came from (lineage, R-LC-2); as
 * more, halved, when so many ranges would not fit in a record's detail. */
static int put_run(struct qkm_supply *s, const char *peer, struct enc_req *e,
		   const struct round *r, const struct qkm_range *rg, size_t nr, size_t k0,
		   uint32_t n, uint64_t now_ns)
{
	struct qkm_ksa_key kk;
	char src[900];
	size_t off = r->offs[k0], len = (size_t)n * (e->size / 8);
	memset(&kk, 0, sizeof(kk));
	kk.n_ranges = key_ranges(rg, nr, off, len, kk.ranges);
	if (n > 1 && kk.n_ranges > 16) {
		int rc = put_run(s, peer, e, r, rg, nr, k0, n / 2, now_ns);
		return rc ? rc : put_run(s, peer, e, r, rg, nr, k0 + n / 2, n - n / 2, now_ns);
	}
	snprintf(kk.peer, sizeof(kk.peer), "%s", peer);
	snprintf(kk.master, sizeof(kk.master), "%s", e->master);
	snprintf(kk.slave, sizeof(kk.slave), "%s", e->slave);
	snprintf(kk.additional, sizeof(kk.additional), "%s", e->additional);
	kk.id = r->ids[k0];
	kk.count = n;
	kk.size_bits = e->size;
	kk.level = key_level(rg, nr, off, len); /* the weakest of its keys */
	kk.role = QKM_KSA_MASTER_SIDE;
	kk.state = QKM_KSA_OFFERED;
	kk.created_ns = now_ns;
	/* preserve: the master's node keeps the bytes too (R-SUP-8), lent to
	 * the store, which copies them. With X25519 combination the kept bytes
	 * are the QKD-derived input; the combined key exists only at the
	 * slave's node. */
	struct qkm_secret kept = {.len = len, .p = r->data->p + off};
	kk.data = s->cfg.preserve && !e->comb ? &kept : NULL;
	int rc = qkm_store_ksa_put(s->st, &kk);
	if (rc)
		return rc;
	if (!e->seq_first)
		e->seq_first = kk.seq;
	e->seq_last = kk.seq;
	source_of(kk.ranges, kk.n_ranges, rg[0].unit_bytes, src, sizeof(src));
	if (n == 1)
		record(s, "formatted", &r->ids[k0], 1, peer, "%u bits for %s -> %s from %s", e->size,
		       e->master, e->slave, src);
	else
		record(s, "formatted", &r->ids[k0], n, peer, "%u keys of %u bits for %s -> %s from %s",
		       n, e->size, e->master, e->slave, src);
	return 0;
}

/* Starts a round for everything queued to p: draws the key material,
 * consumes it and records the keys OFFERED in one commit, then sends SUPPLY. */
static void round_start(struct qkm_supply *s, struct peer *p, uint64_t now_ns)
{
	struct round *r = calloc(1, sizeof(*r));
	struct qkm_range *rg = calloc(SUPPLY_MAX_RANGES, sizeof(*rg));
	struct qkm_buf fb;
	size_t nr = 0, total = 0, start;
	int rc = QKM_ENOMEM;
	const char *why = "out of memory";
	qkm_buf_init(&fb, QKM_FRAME_MAX, false);
	if (!r || !rg)
		goto fail;
	/* Take the whole queue; stop adding requests past the round's cap, or
	 * at one of the other level class (a round reads one class of blocks). */
	struct enc_req **tail = &r->reqs;
	bool its_only = p->queue && p->queue->its_only;
	while (p->queue && r->n_keys + p->queue->number <= SUPPLY_MAX_ROUND_KEYS &&
	       p->queue->its_only == its_only) {
		struct enc_req *e = p->queue;
		p->queue = e->next;
		e->next = NULL;
		if (!e->req) { /* forgotten while queued */
			free(e);
			continue;
		}
		e->first_key = r->n_keys;
		r->n_keys += e->number;
		total += (size_t)e->number * e->size / 8;
		*tail = e;
		tail = &e->next;
	}
	if (!p->queue)
		p->queue_tail = &p->queue;
	if (!r->n_keys)
		goto done;
	r->ids = calloc(r->n_keys, sizeof(*r->ids));
	r->offs = calloc(r->n_keys, sizeof(*r->offs));
	r->sizes = calloc(r->n_keys, sizeof(*r->sizes));
	r->levels = calloc(r->n_keys, sizeof(*r->levels));
	r->data = qkm_secret_new(total);
	if (!r->ids || !r->offs || !r->sizes || !r->levels || !r->data)
		goto fail;
	rc = qkm_store_pool_read_level(s->st, p->name, QKM_KT_ENC, its_only, total, rg,
				       SUPPLY_MAX_RANGES, &nr, r->data->p);
	if (rc == QKM_ENOKEY) {
		struct qkm_pool_stats ps;
		char msg[480];
		/* An end-to-end pool: relay on demand; the requests wait for
		 * it up to the round timeout. */
		int wr = QKM_ESTATE;
		if (p->relay && now_ns - r->reqs->queued_ns < s->cfg.round_timeout_ns &&
		    (wr = s->ops.relay(p->name, total, s->ops.arg)) == 0) {
			*tail = p->queue;
			p->queue = r->reqs;
			if (!*tail)
				p->queue_tail = tail;
			r->reqs = NULL;
			goto done;
		}
		if (qkm_store_pool_stats(s->st, p->name, &ps))
			memset(&ps, 0, sizeof(ps));
		const char *rwhy = p->relay ? s->ops.why(p->name, s->ops.arg) : "";
		snprintf(msg, sizeof(msg), "not enough %skey material shared with node %s: %llu "
					   "bytes asked, %llu available%s%s",
			 its_only ? "ITS (OTP-only) " : "", p->name, (unsigned long long)total,
			 (unsigned long long)(its_only ? ps.enc_its_bytes : ps.enc_bytes),
			 rwhy[0] ? "; relay: " : "", rwhy);
		fail_reqs(s, r->reqs, 503, "no_key", msg);
		goto done;
	}
	if (rc) {
		why = "key store unavailable";
		goto fail;
	}
	/* One v7 UUID for the round; its keys are numbered in its last 4
	 * bytes, as a KMA batch's are (records name runs of them). */
	size_t off = 0, k = 0;
	struct qkm_id base;
	if ((rc = qkm_id_uuid7(&base, now_ns)))
		goto fail;
	for (struct enc_req *e = r->reqs; e; e = e->next)
		for (uint32_t i = 0; i < e->number; i++, k++) {
			r->ids[k] = base;
			qkm_id_set_index(&r->ids[k], (uint32_t)k);
			r->offs[k] = off;
			r->sizes[k] = e->size;
			r->levels[k] = key_level(rg, nr, off, e->size / 8);
			off += e->size / 8;
		}
	/* Durable before anything leaves: consumption and the OFFERED keys. */
	if ((rc = qkm_store_begin(s->st))) {
		why = "key store unavailable";
		goto fail;
	}
	for (size_t i = 0; !rc && i < nr; i++)
		rc = qkm_store_block_set_used(s->st, rg[i].rowid, rg[i].off + rg[i].len);
	for (struct enc_req *e = r->reqs; !rc && e; e = e->next) {
		e->seq_first = e->seq_last = 0;
		rc = put_run(s, p->name, e, r, rg, nr, e->first_key, e->number, now_ns);
	}
	if (!rc)
		rc = qkm_store_commit(s->st);
	else
		qkm_store_rollback(s->st);
	if (rc) {
		why = "key store unavailable";
		goto fail;
	}
	/* SUPPLY: the keys' metadata, the ranges, the digest; never key bytes. */
	uint8_t dg[32], pub[32];
	bool comb = false;
	for (struct enc_req *e = r->reqs; e; e = e->next)
		comb = comb || e->comb;
	r->id = ++s->next_round;
	if (comb && !(r->eph = qkm_x25519_new(pub))) {
		rc = QKM_ECRYPTO;
		goto cancel;
	}
	/* The frame's size, closely: grown by doubling instead, a refill of
	 * 8,192 keys (about 1 MiB) took a dozen fresh allocations and copies. */
	size_t est = 256 + nr * 64;
	for (struct enc_req *e = r->reqs; e; e = e->next)
		est += (size_t)e->number * (6 * 7 + 16 + 4 + 1 + 1 + strlen(e->master) +
					    strlen(e->slave) + 2 * strlen(e->additional));
	if (qkm_buf_reserve(&fb, est))
		log_debug("supply: a %zu-byte SUPPLY frame not reserved at once", est);
	if ((rc = keys_digest(r->n_keys, r->ids, r->sizes, r->data->p, dg)) ||
	    (rc = qkm_frame_begin(&fb, QKM_MSG_SUPPLY, r->id, &start)) ||
	    (comb && (rc = qkm_put_tlv(&fb, QKM_T_PUBKEY, pub, 32))))
		goto cancel;
	k = 0;
	for (struct enc_req *e = r->reqs; !rc && e; e = e->next)
		for (uint32_t i = 0; !rc && i < e->number; i++, k++)
			rc = put_key_meta(&fb, &r->ids[k], e, e->size, r->levels[k]);
	for (size_t i = 0; !rc && i < nr; i++)
		rc = qkm_put_range(&fb, QKM_T_RANGE, &rg[i]);
	if (!rc && !(rc = qkm_put_tlv(&fb, QKM_T_DIGEST, dg, 32)) && !(rc = qkm_frame_end(&fb, start)))
		rc = s->ops.send(p->name, fb.p, fb.len, s->ops.arg) ? QKM_EIO : 0;
	if (rc)
		goto cancel;
	r->deadline_ns = now_ns + s->cfg.round_timeout_ns;
	struct round **last = &p->rounds;
	while (*last)
		last = &(*last)->next;
	*last = r;
	p->n_rounds++;
	r = NULL;
	goto done;
cancel:
	/* Consumed but never offered: the keys stay OFFERED here and are
	 * cancelled with the peer at the next reconciliation. */
	p->cancel_sent = false;
	fail_reqs(s, r->reqs, 503, "peer_link", "KSA link to the slave's node failed");
	goto done;
fail:
	if (r)
		fail_reqs(s, r->reqs, 503, "round_failed", why);
	log_warnx("supply to %s: round failed: %s (%s)", p->name, why, qkm_strerror(rc));
done:
	round_free(r);
	free(rg);
	qkm_buf_fini(&fb);
}

/* Queues a refill for every stock entry with p that runs low, each at
 * most half of what is left in the pool, so applications asking for other
 * sizes or pairs still find key material. */
static void stock_refill(struct qkm_supply *s, struct peer *p, uint64_t now_ns)
{
	struct qkm_pool_stats ps;
	bool have = false;
	for (int i = 0; i < QKM_STOCK_MAX_ENTRIES; i++) {
		char master[QKM_NAME_MAX], slave[QKM_NAME_MAX];
		uint32_t size = 0;
		if (now_ns < s->stock_retry_ns[i])
			continue; /* refused lately: see stock_pause */
		uint32_t n = qkm_stock_refill(s->cfg.stock, i, p->name, master, slave, &size, now_ns);
		if (!n)
			continue;
		if (!have) {
			/* What is left is what the requests already queued (they
			 * go in the same round, first) do not take: a round is
			 * drawn whole or not at all, so a refill sized on the
			 * whole pool would fail requests the pool can serve. */
			uint64_t queued = 0;
			for (const struct enc_req *q = p->queue; q; q = q->next)
				if (q->req)
					queued += (uint64_t)q->number * (q->size / 8);
			if (qkm_store_pool_stats(s->st, p->name, &ps))
				ps.enc_bytes = 0;
			ps.enc_bytes = ps.enc_bytes > queued ? ps.enc_bytes - queued : 0;
		}
		have = true;
		uint64_t room = ps.enc_bytes / 2 / (size / 8);
		uint32_t asked = n;
		n = room < n ? (uint32_t)room : n;
		struct enc_req *e = n >= 16 ? calloc(1, sizeof(*e)) : NULL;
		if (!e) {
			qkm_stock_refill_failed(s->cfg.stock, i, asked);
			continue;
		}
		if (n < asked) /* the pool's half: the rest is not coming */
			qkm_stock_refill_failed(s->cfg.stock, i, asked - n);
		ps.enc_bytes -= (uint64_t)n * (size / 8);
		e->req = &stock_req;
		e->stock = i + 1;
		memcpy(e->master, master, sizeof(e->master));
		memcpy(e->slave, slave, sizeof(e->slave));
		e->number = n;
		e->size = size;
		/* Plain requests take stock: ITS keys only, whatever an
		 * end-to-end pool also holds (computational keys go by round,
		 * recorded so). */
		e->its_only = p->relay;
		e->queued_ns = now_ns;
		*p->queue_tail = e;
		p->queue_tail = &e->next;
	}
}

/* The peer refused the round (or did not answer it) that carried the
 * refills among reqs. Each such round burns its key material on both
 * nodes (SUPPLY_CANCEL), so the refills are tried again only after a pause
 * that doubles while that goes on: retried at once, from the flush that
 * follows the refusal, a peer that keeps refusing (a configuration or a
 * pool that differs, a store that fails) would have the stock drain the
 * shared pool, half of what is left per round, within one pass. */
static void stock_pause(struct qkm_supply *s, const struct enc_req *reqs, uint64_t now_ns)
{
	for (const struct enc_req *e = reqs; e; e = e->next) {
		if (!e->stock)
			continue;
		uint64_t *pause = &s->stock_pause_ns[e->stock - 1];
		*pause = *pause ? 2 * *pause : STOCK_PAUSE_MIN_NS;
		if (*pause > STOCK_PAUSE_MAX_NS)
			*pause = STOCK_PAUSE_MAX_NS;
		s->stock_retry_ns[e->stock - 1] = now_ns + *pause;
	}
}

/* Records SUPPLIED the keys the front end took from stock, in one
 * transaction. A failure leaves them STOCKED: the next start records them
 * supplied. */
static void stock_settle(struct qkm_supply *s)
{
	struct qkm_stock_taken t[512];
	size_t n, total = 0, gone = 0;
	int rc = 0;
	bool open = false;
	while (!rc && s->cfg.stock && (n = qkm_stock_drain_taken(s->cfg.stock, t, 512)) > 0) {
		if (!open && !(rc = qkm_store_begin(s->st)))
			open = true;
		total += n;
		int last = -1;
		int64_t run = 0; /* keys of the current entry, for its master's count */
		char peer[QKM_NAME_MAX] = "", master[QKM_NAME_MAX] = "", slave[QKM_NAME_MAX] = "";
		char detail[3 * QKM_NAME_MAX + 64] = "";
		for (size_t i = 0, k; !rc && i < n; i += k) {
			if (t[i].entry != last) {
				if (last >= 0)
					rc = count_sae(s, master, true, run);
				run = 0;
				qkm_stock_names(s->cfg.stock, last = t[i].entry, peer, master, slave);
				snprintf(detail, sizeof(detail),
					 "to master %s (app %s), slave %s, level its, from stock",
					 master, master, slave);
			}
			/* One record and one row split for a run of keys taken
			 * one after another within the same millisecond: the
			 * supply time is kept to the millisecond. A stock takes
			 * the keys of a row in order, from its front. */
			for (k = 1; i + k < n && t[i + k].entry == t[i].entry &&
				    t[i + k].at_ns / 1000000u == t[i].at_ns / 1000000u &&
				    run_next(&t[i].id, &t[i + k].id, k);
			     k++)
				;
			int r = rc ? rc
				   : qkm_store_ksa_take(s->st, &t[i].id, (uint32_t)k, QKM_KSA_STOCKED,
							QKM_KSA_SUPPLIED, t[i].at_ns);
			if (r == QKM_ENOTFOUND) {
				/* Deleted meanwhile (a compromise order): nothing
				 * left to record; the other keys are. */
				gone += k;
				r = 0;
			} else if (!r) {
				record(s, "supplied", &t[i].id, (uint32_t)k, peer, "%s", detail);
			}
			rc = r;
			run += (int64_t)k;
		}
		if (!rc && last >= 0)
			rc = count_sae(s, master, true, run);
		if (!rc)
			rc = qkm_store_counter_add(s->st, "supplied_keys", (int64_t)n);
	}
	if (open && !rc)
		rc = qkm_store_commit(s->st);
	else if (open)
		qkm_store_rollback(s->st);
	if (rc)
		log_warnx("supply: %zu key(s) taken from stock not recorded (%s); the next "
			  "start records them supplied", total, qkm_strerror(rc));
	else if (gone)
		log_warnx("supply: %zu key(s) taken from stock were deleted before they were "
			  "recorded supplied (a compromise order)", gone);
}

/* Whether p takes another round now. */
static bool round_room(const struct peer *p)
{
	return p->n_rounds < (p->relay ? 1 : SUPPLY_MAX_IN_FLIGHT);
}

/* Fails every round in flight to p, oldest first (the link went down, the
 * oldest timed out, the node stops); pause: as a refusal (stock_pause). */
static void rounds_fail(struct qkm_supply *s, struct peer *p, const char *reason,
			const char *msg, bool pause, uint64_t now_ns)
{
	while (p->rounds) {
		struct round *r = p->rounds;
		p->rounds = r->next;
		if (pause)
			stock_pause(s, r->reqs, now_ns);
		fail_reqs(s, r->reqs, 503, reason, msg);
		round_free(r);
	}
	p->n_rounds = 0;
}

/* Answers e with its keys (ids, and e->number keys of e->size bits back to
 * back in data) as a key container; e->req is NULL after. */
static void reply_keys(struct qkm_supply *s, struct enc_req *e, const struct qkm_id *ids,
		       const uint8_t *data)
{
	struct qkm_buf b;
	qkm_buf_init(&b, qkm_etsi_keys_json_size(e->number, e->size / 8), true);
	if (qkm_etsi_keys_json_run(&b, e->number, ids, data, e->size / 8))
		reply_error(s, e->req, 503, "out_of_memory", "out of memory");
	else
		s->ops.reply(e->req, 200, NULL, b.p, b.len, s->ops.arg);
	qkm_buf_fini(&b);
	e->req = NULL;
}

/* Answers e (a plain request of a pair with a stock) from the stock, as the
 * front end would have if the stock had had the keys when e came. false:
 * the stock has too few; nothing taken. */
static bool answer_from_stock(struct qkm_supply *s, struct enc_req *e, uint64_t now_ns)
{
	size_t b = e->size / 8;
	struct qkm_id *ids = calloc(e->number, sizeof(*ids));
	struct qkm_secret *data = qkm_secret_new_raw((size_t)e->number * b);
	bool low, ok = false;
	if (ids && data &&
	    qkm_stock_take(s->cfg.stock, e->master, e->slave, e->size, e->number, ids, data->p,
			   now_ns, &low) == 0) {
		/* Taken, so recorded supplied at the next settle; an answer
		 * lost here loses the keys to this master, never gives them
		 * twice. (The stock counts these keys as demand a second time,
		 * after the front end's take that found it empty: the target
		 * errs high, within its bounds.) */
		reply_keys(s, e, ids, data->p);
		ok = true;
	}
	free(ids);
	qkm_secret_free(data);
	return ok;
}

/* Plain requests that found the stock empty wait in p's queue for a round
 * of their own; those the stock can answer now (a refill came) are answered
 * from it instead, in the order they came. */
static void queue_from_stock(struct qkm_supply *s, struct peer *p, uint64_t now_ns)
{
	struct enc_req **pp = &p->queue;
	while (*pp) {
		struct enc_req *e = *pp;
		if (!e->req || e->stock || e->additional[0] || e->comb ||
		    !answer_from_stock(s, e, now_ns)) {
			pp = &e->next;
			continue;
		}
		*pp = e->next;
		free(e);
	}
	p->queue_tail = pp;
}

void qkm_supply_flush(struct qkm_supply *s, uint64_t now_ns)
{
	dec_flush(s);
	stock_settle(s);
	for (size_t i = 0; i < s->n_peers; i++) {
		struct peer *p = &s->peers[i];
		if (s->cfg.stock && p->queue)
			queue_from_stock(s, p, now_ns);
		if (s->cfg.stock && round_room(p) && p->up && s->ops.ready(p->name, s->ops.arg))
			stock_refill(s, p, now_ns);
		if (p->queue && round_room(p)) {
			if (!p->up || !s->ops.ready(p->name, s->ops.arg)) {
				struct enc_req *q = p->queue;
				p->queue = NULL;
				p->queue_tail = &p->queue;
				fail_reqs(s, q, 503, "pool_unavailable",
					  "key pool not available: KSA link down");
				while (q) {
					struct enc_req *n = q->next;
					free(q);
					q = n;
				}
				continue;
			}
			round_start(s, p, now_ns);
		}
	}
}

/* Master side: the peer stored the round. Record SUPPLIED, then answer. */
static void round_done(struct qkm_supply *s, struct peer *p, struct round *r,
		       const uint8_t *peer_pub, uint64_t now_ns)
{
	/* R-SUP-9: combine before anything is recorded as supplied. */
	if (r->eph) {
		struct qkm_secret *ss = NULL;
		int crc = peer_pub ? qkm_x25519_shared(r->eph, peer_pub, &ss) : QKM_EPEER;
		for (struct enc_req *e = r->reqs; !crc && e; e = e->next)
			for (uint32_t i = 0; !crc && e->comb && i < e->number; i++) {
				size_t k = e->first_key + i;
				crc = qkm_combine_x25519(r->data->p + r->offs[k], r->sizes[k] / 8, ss,
							 &r->ids[k]);
			}
		qkm_secret_free(ss);
		if (crc) {
			fail_reqs(s, r->reqs, 503, "combination",
				  "key combination with the slave's node failed");
			p->cancel_sent = false;
			return;
		}
	}
	int rc = qkm_store_begin(s->st);
	size_t supplied = 0;
	for (struct enc_req *e = r->reqs; !rc && e; e = e->next) {
		if (!e->req)
			continue; /* its client left: stays OFFERED, cancelled later */
		char detail[3 * QKM_NAME_MAX + 64];
		bool its = true;
		for (uint32_t i = 0; i < e->number; i++)
			its = its && r->levels[e->first_key + i] == QKM_LEVEL_ITS;
		snprintf(detail, sizeof(detail), "to master %s (app %s), slave %s, level %s%s",
			 e->master, e->master, e->slave, its ? "its" : "computational",
			 e->comb ? ", combined with X25519" : "");
		if (e->stock)
			rc = qkm_store_ksa_set_state(s->st, e->seq_first, e->seq_last,
						     QKM_KSA_OFFERED, QKM_KSA_STOCKED, 0);
		else
			rc = set_supplied(s, &r->ids[e->first_key], e->seq_first, e->seq_last,
					  e->number, QKM_KSA_OFFERED, now_ns, p->name, detail);
		if (!e->stock) {
			supplied += e->number;
			if (!rc)
				rc = count_sae(s, e->master, true, e->number);
		}
	}
	if (!rc && supplied)
		rc = qkm_store_counter_add(s->st, "supplied_keys", (int64_t)supplied);
	if (!rc)
		rc = qkm_store_commit(s->st);
	else
		qkm_store_rollback(s->st);
	if (rc) {
		fail_reqs(s, r->reqs, 503, "store", "key store unavailable");
		p->cancel_sent = false;
		return;
	}
	for (struct enc_req *e = r->reqs; e; e = e->next) {
		if (!e->req) {
			p->cancel_sent = false;
			continue;
		}
		if (e->stock) {
			if (qkm_stock_add(s->cfg.stock, e->stock - 1, e->number, &r->ids[e->first_key],
					  r->data->p + r->offs[e->first_key], now_ns))
				log_warnx("supply to %s: stock refill did not fit", p->name);
			s->stock_pause_ns[e->stock - 1] = 0;
			e->req = NULL;
			continue;
		}
		/* A request's keys lie back to back in the round's data. */
		reply_keys(s, e, &r->ids[e->first_key], r->data->p + r->offs[e->first_key]);
	}
}

/* ---- slave side -------------------------------------------------------- */

struct in_key {
	struct qkm_id id;
	char master[QKM_NAME_MAX], slave[QKM_NAME_MAX];
	char additional[1040];
	uint32_t size;
	uint8_t level;
	uint8_t comb;
};
_Static_assert(sizeof(((struct in_key *)0)->additional) ==
		       sizeof(((struct qkm_ksa_key *)0)->additional) &&
		       sizeof(((struct in_key *)0)->master) == sizeof(((struct qkm_ksa_key *)0)->master),
	       "on_supply copies the names whole");

/* How many of the n keys from in on (bytes from off of a round's data) a
 * slave's node keeps in one row: a run of consecutive IDs alike but for
 * their bytes, one slave each, at most max (QKM_KSA_SLAVE_RUN; 1 where keys
 * are kept after supply: a run's delivered keys lose their bytes) and
 * SUPPLY_RUN_BYTES (each delivery rewrites the run's bytes), whose ranges
 * fit a row; their ranges in out. 1 at least. */
static size_t slave_run(const struct in_key *in, size_t n, size_t max, const struct qkm_range *rg,
			size_t nr, size_t off, struct qkm_range_ref *out, uint32_t *n_out)
{
	size_t k = 1;
	while (k < n && k < max && (k + 1) * (in->size / 8) <= SUPPLY_RUN_BYTES &&
	       !in->additional[0] && !in[k].additional[0] &&
	       run_next(&in->id, &in[k].id, k) && in[k].size == in->size &&
	       in[k].level == in->level && strcmp(in[k].master, in->master) == 0 &&
	       strcmp(in[k].slave, in->slave) == 0)
		k++;
	for (;; k = (k + 1) / 2) {
		size_t len = k * (in->size / 8), got = 0;
		*n_out = key_ranges(rg, nr, off, len, out);
		for (uint32_t i = 0; i < *n_out; i++)
			got += out[i].len;
		if (got == len || k == 1)
			return k;
	}
}

static int parse_key(struct qkm_supply *s, const char *peer, const uint8_t *v, uint32_t vl,
		     struct in_key *k, char *why, size_t whysz)
{
	size_t off = 0;
	uint16_t tag;
	const uint8_t *x;
	uint32_t xl;
	memset(k, 0, sizeof(*k));
	if (qkm_tlv_check(v, vl) || qkm_tlv_id(v, vl, QKM_T_KSA_ID, &k->id) ||
	    qkm_tlv_str(v, vl, QKM_T_MASTER, k->master, sizeof(k->master), true) ||
	    qkm_tlv_str(v, vl, QKM_T_SLAVE, k->slave, sizeof(k->slave), true) ||
	    qkm_tlv_u32(v, vl, QKM_T_SIZE, &k->size) || qkm_tlv_u8(v, vl, QKM_T_LEVEL, &k->level) ||
	    k->size == 0 || k->size % 8 || k->size > (1u << 20))
		return QKM_EPEER;
	int crc = qkm_tlv_u8(v, vl, QKM_T_COMB, &k->comb);
	if ((crc && crc != QKM_ENOTFOUND) || k->comb > QKM_COMB_X25519)
		return QKM_EPEER;
	while (qkm_tlv_next(v, vl, &off, &tag, &x, &xl) == 1) {
		if (tag != QKM_T_ADDITIONAL)
			continue;
		char one[QKM_NAME_MAX];
		if (xl == 0 || xl >= sizeof(one))
			return QKM_EPEER;
		memcpy(one, x, xl);
		one[xl] = 0;
		if (!qkm_name_valid(one) || strlen(k->additional) + xl + 2 > sizeof(k->additional))
			return QKM_EPEER;
		list_add(k->additional, sizeof(k->additional), one);
	}
	/* The master must be at the peer, the slaves here. */
	const char *mn = sae_node(s, k->master), *sn = sae_node(s, k->slave);
	if (!mn || strcmp(mn, peer) != 0 || !sn || strcmp(sn, s->cfg.self) != 0) {
		snprintf(why, whysz, "SAEs %s -> %s are not registered at %s -> %s", k->master,
			 k->slave, peer, s->cfg.self);
		return QKM_EPERM;
	}
	for (const char *p = k->additional; *p;) {
		const char *c = strchr(p, ',');
		char one[QKM_NAME_MAX];
		size_t l = c ? (size_t)(c - p) : strlen(p);
		snprintf(one, sizeof(one), "%.*s", (int)l, p);
		const char *an = sae_node(s, one);
		if (!an || strcmp(an, s->cfg.self) != 0) {
			snprintf(why, whysz, "additional slave %s is not registered here", one);
			return QKM_EPERM;
		}
		p = c ? c + 1 : p + l;
	}
	return 0;
}

static int send_ack(struct qkm_supply *s, const char *peer, uint32_t req, bool ok, const char *msg,
		    const uint8_t *pub)
{
	struct qkm_buf b;
	size_t start;
	qkm_buf_init(&b, 4096, false);
	int rc = qkm_frame_begin(&b, QKM_MSG_SUPPLY_ACK, req, &start);
	if (!rc)
		rc = qkm_put_u8(&b, QKM_T_OK, ok);
	if (!rc && msg)
		rc = qkm_put_str(&b, QKM_T_MESSAGE, msg);
	if (!rc && pub)
		rc = qkm_put_tlv(&b, QKM_T_PUBKEY, pub, 32);
	if (!rc)
		rc = qkm_frame_end(&b, start);
	if (!rc)
		rc = s->ops.send(peer, b.p, b.len, s->ops.arg) ? QKM_EIO : 0;
	qkm_buf_fini(&b);
	return rc;
}

/* Slave's node: a round of keys from the master's node. Reads the named
 * ranges of its own pool, compares digests, stores the keys (R-SUP-6). The
 * ranges are consumed whatever the outcome: the master's node consumed them. */
static int on_supply(struct qkm_supply *s, const char *peer, const struct qkm_frame *f,
		     uint64_t now_ns)
{
	struct in_key *keys = NULL;
	struct qkm_range *rg = NULL;
	struct qkm_ksa_key *kk = NULL;
	struct qkm_secret bytes;
	size_t nk = 0, nr = 0, off = 0, total = 0, kbytes = 0, stored = 0;
	uint16_t tag;
	const uint8_t *v, *dg = NULL;
	uint32_t vl, dgl = 0;
	struct qkm_secret *data = NULL;
	struct qkm_x25519 *eph = NULL;
	uint8_t my_pub[32];
	char why[200] = "";
	int rc = 0;
	while (qkm_tlv_next(f->body, f->body_len, &off, &tag, &v, &vl) == 1) {
		if (tag == QKM_T_KEY)
			nk++;
		else if (tag == QKM_T_RANGE)
			nr++;
	}
	if (!nk || !nr || nk > SUPPLY_MAX_ROUND_KEYS || nr > SUPPLY_MAX_RANGES ||
	    qkm_tlv_bytes(f->body, f->body_len, QKM_T_DIGEST, &dg, &dgl) || dgl != 32)
		return QKM_EPEER;
	keys = calloc(nk, sizeof(*keys));
	rg = calloc(nr, sizeof(*rg));
	if (!keys || !rg) {
		rc = QKM_ENOMEM;
		goto out;
	}
	nk = nr = off = 0;
	while (qkm_tlv_next(f->body, f->body_len, &off, &tag, &v, &vl) == 1) {
		if (tag == QKM_T_KEY) {
			int r = parse_key(s, peer, v, vl, &keys[nk], why, sizeof(why));
			if (r == QKM_EPEER) {
				rc = r;
				goto out;
			}
			if (r && !why[0])
				snprintf(why, sizeof(why), "bad key metadata");
			kbytes += keys[nk].size / 8;
			nk++;
		} else if (tag == QKM_T_RANGE) {
			struct qkm_range *x = &rg[nr++];
			if ((rc = qkm_parse_range(v, vl, x)))
				goto out;
			total += x->len;
		}
	}
	if (total != kbytes || total > (256u << 20)) {
		rc = QKM_EPEER;
		goto out;
	}
	/* A key this node may have held and pruned must not come back. */
	for (size_t i = 0; i < nk && !why[0]; i++)
		if (qkm_store_ksa_older(&keys[i].id, s->horizon_ms))
			snprintf(why, sizeof(why),
				 "KSA key IDs made before this node's pruned records (retention_s)");
	if (!(data = qkm_secret_new(total))) {
		rc = QKM_ENOMEM;
		goto out;
	}
	/* Our copies of the same KMA-key bytes: our decryption keys. */
	size_t pos = 0;
	for (size_t i = 0; i < nr; i++) {
		int r = qkm_store_block_read(s->st, peer, &rg[i].batch, rg[i].first_index, QKM_KT_DEC,
					     rg[i].off, rg[i].len, data->p + pos, &rg[i].rowid);
		if (r) {
			char hex[33];
			qkm_id_hex(&rg[i].batch, hex);
			if (!why[0])
				snprintf(why, sizeof(why), "key range %s[%u]+%u not available here: %s",
					 hex, rg[i].first_index, rg[i].off,
					 r == QKM_EPERM ? "used or not ready" : qkm_strerror(r));
			rg[i].rowid = 0;
		}
		pos += rg[i].len;
	}
	if (!why[0]) {
		uint8_t mine[32];
		struct qkm_id *ids = calloc(nk, sizeof(*ids));
		uint32_t *sizes = calloc(nk, sizeof(*sizes));
		if (!ids || !sizes) {
			free(ids);
			free(sizes);
			rc = QKM_ENOMEM;
			goto out;
		}
		for (size_t i = 0; i < nk; i++) {
			ids[i] = keys[i].id;
			sizes[i] = keys[i].size;
		}
		int r = keys_digest(nk, ids, sizes, data->p, mine);
		free(ids);
		free(sizes);
		if (r || !qkm_ct_equal(mine, dg, 32))
			snprintf(why, sizeof(why), "digest mismatch: the KSA keys differ between "
						   "%s and %s", peer, s->cfg.self);
	}
	/* R-SUP-9: keys that ask for it are combined with an X25519 secret. */
	bool comb = false;
	for (size_t i = 0; i < nk; i++)
		comb = comb || keys[i].comb;
	if (comb && !why[0]) {
		const uint8_t *mpub;
		uint32_t ml;
		struct qkm_secret *ss = NULL;
		if (qkm_tlv_bytes(f->body, f->body_len, QKM_T_PUBKEY, &mpub, &ml) || ml != 32) {
			rc = QKM_EPEER;
			goto out;
		}
		if (!(eph = qkm_x25519_new(my_pub)) || qkm_x25519_shared(eph, mpub, &ss)) {
			snprintf(why, sizeof(why), "key combination failed");
		} else {
			size_t at = 0;
			for (size_t i = 0; i < nk && !why[0]; i++) {
				if (keys[i].comb &&
				    qkm_combine_x25519(data->p + at, keys[i].size / 8, ss, &keys[i].id))
					snprintf(why, sizeof(why), "key combination failed");
				at += keys[i].size / 8;
			}
		}
		qkm_secret_free(ss);
	}
	if ((rc = qkm_store_begin(s->st)))
		goto out;
	for (size_t i = 0; !rc && i < nr; i++)
		if (rg[i].rowid)
			rc = qkm_store_block_set_used(s->st, rg[i].rowid, rg[i].off + rg[i].len);
	/* What the keys share is set once, names when they change; each key's
	 * bytes are lent from data, which the store copies. */
	if (!(kk = calloc(1, sizeof(*kk))) && !rc)
		rc = QKM_ENOMEM;
	if (kk) {
		snprintf(kk->peer, sizeof(kk->peer), "%s", peer);
		kk->role = QKM_KSA_SLAVE_SIDE;
		kk->state = QKM_KSA_READY;
		kk->created_ns = now_ns;
		kk->data = &bytes;
	}
	pos = 0;
	for (size_t i = 0, k = 1; !rc && !why[0] && i < nk; i += k) {
		const struct in_key *in = &keys[i];
		if (!i || strcmp(in->master, in[-1].master) != 0 || strcmp(in->slave, in[-1].slave) != 0 ||
		    strcmp(in->additional, in[-1].additional) != 0) {
			memcpy(kk->master, in->master, sizeof(kk->master));
			memcpy(kk->slave, in->slave, sizeof(kk->slave));
			memcpy(kk->additional, in->additional, sizeof(kk->additional));
		}
		k = slave_run(in, nk - i, s->cfg.preserve ? 1 : QKM_KSA_SLAVE_RUN, rg, nr, pos,
			      kk->ranges, &kk->n_ranges);
		kk->id = in->id;
		kk->count = (uint32_t)k;
		kk->size_bits = in->size;
		kk->level = in->level;
		bytes.p = data->p + pos;
		bytes.len = k * (in->size / 8);
		pos += bytes.len;
		rc = qkm_store_ksa_put(s->st, kk);
		if (rc == QKM_EEXIST) {
			snprintf(why, sizeof(why), "KSA key ID already known");
			rc = 0;
			break;
		}
		if (!rc)
			stored += k;
	}
	if (!rc && why[0]) {
		/* Undo the keys this frame stored before the problem was found;
		 * keep the consumption. Only those: a key with the same ID
		 * stored earlier (a repeated SUPPLY) is another round's, already
		 * answered to its master. */
		for (size_t i = 0; !rc && i < stored; i++) {
			int r = qkm_store_ksa_delete(s->st, &keys[i].id);
			if (r && r != QKM_ENOTFOUND)
				rc = r;
		}
	}
	/* One record per run of keys alike but for their index. */
	for (size_t i = 0, k; !rc && i < nk; i += k) {
		const struct in_key *a = &keys[i];
		for (k = 1; i + k < nk && run_next(&a->id, &keys[i + k].id, k) &&
			    keys[i + k].size == a->size && keys[i + k].comb == a->comb &&
			    strcmp(keys[i + k].slave, a->slave) == 0;
		     k++)
			;
		if (why[0])
			record(s, "aborted", &a->id, (uint32_t)k, peer, "not stored: %s", why);
		else if (k == 1)
			record(s, "stored", &a->id, 1, peer, "%u bits for slave %s, digest matched %s%s",
			       a->size, a->slave, peer, a->comb ? ", combined with X25519" : "");
		else
			record(s, "stored", &a->id, (uint32_t)k, peer,
			       "%zu keys of %u bits for slave %s, digest matched %s%s", k, a->size,
			       a->slave, peer, a->comb ? ", combined with X25519" : "");
	}
	if (!rc)
		rc = qkm_store_commit(s->st);
	else
		qkm_store_rollback(s->st);
	if (rc) {
		snprintf(why, sizeof(why), "could not store: %s", qkm_strerror(rc));
		rc = 0;
	}
	if (why[0])
		log_warnx("supply from %s: round refused: %s", peer, why);
	if (send_ack(s, peer, f->req, !why[0], why[0] ? why : NULL, eph && !why[0] ? my_pub : NULL))
		log_warnx("supply from %s: answer not sent; the master's node will cancel", peer);
out:
	free(keys);
	free(rg);
	free(kk);
	qkm_secret_free(data);
	qkm_x25519_free(eph);
	return rc;
}

void qkm_supply_dec(struct qkm_supply *s, void *req, const char *caller, const char *master,
		    const struct qkm_etsi_key_ids *ids, uint64_t now_ns)
{
	const char *cn = sae_node(s, caller);
	if (!cn || strcmp(cn, s->cfg.self) != 0) {
		reply_error(s, req, 401, "not_registered", "SAE '%s' is not registered at node %s",
			    caller, s->cfg.self);
		return;
	}
	if (!qkm_name_valid(master) || !sae_node(s, master)) {
		reply_error(s, req, 400, "unknown_master", "master SAE '%s' is not registered",
			    master);
		return;
	}
	struct dec_req *d = calloc(1, sizeof(*d) + ids->n * sizeof(d->ids[0]));
	if (!d) {
		reply_error(s, req, 503, "out_of_memory", "out of memory");
		return;
	}
	d->req = req;
	snprintf(d->caller, sizeof(d->caller), "%s", caller);
	snprintf(d->master, sizeof(d->master), "%s", master);
	d->now_ns = now_ns;
	d->n = ids->n;
	memcpy(d->ids, ids->ids, ids->n * sizeof(d->ids[0]));
	*s->decs_tail = d;
	s->decs_tail = &d->next;
}

/* Reads d's keys and checks every one before anything changes: one bad
 * ID, nothing given. Inside the flush's transaction, so a key an earlier
 * request of the same flush took counts as delivered. false: answered. */
static bool dec_check(struct qkm_supply *s, struct dec_req *d)
{
	if (!(d->kk = calloc(d->n ? d->n : 1, sizeof(*d->kk)))) {
		reply_error(s, d->req, 503, "out_of_memory", "out of memory");
		return false;
	}
	for (size_t i = 0; i < d->n; i++) {
		struct qkm_ksa_key *k = &d->kk[i];
		char u[37];
		qkm_id_uuid_str(&d->ids[i], u);
		int rc = qkm_store_ksa_get(s->st, &d->ids[i], k, true);
		if (rc == QKM_ENOTFOUND) {
			reply_error(s, d->req, 400, "unknown_key",
				    "key_ID %s: unknown or already delivered", u);
			return false;
		}
		if (rc) {
			reply_error(s, d->req, 503, "store", "key store unavailable");
			return false;
		}
		/* Only a slave (or additional slave) of the key, at the slave's
		 * node: the master asking here for its own key is refused too. */
		if (k->role != QKM_KSA_SLAVE_SIDE ||
		    (strcmp(k->slave, d->caller) != 0 && !list_has(k->additional, d->caller))) {
			reply_error(s, d->req, 401, "not_for_sae",
				    "key_ID %s was not made for SAE '%s'", u, d->caller);
			return false;
		}
		if (strcmp(k->master, d->master) != 0) {
			reply_error(s, d->req, 400, "wrong_master",
				    "key_ID %s was not made by master SAE '%s'", u, d->master);
			return false;
		}
		if (k->state != QKM_KSA_READY || list_has(k->delivered, d->caller) || !k->data) {
			reply_error(s, d->req, 400, "unknown_key",
				    "key_ID %s: unknown or already delivered", u);
			return false;
		}
	}
	return true;
}

/* Records d's keys delivered to its caller (R-SUP-8: at most once per
 * slave), inside the flush's transaction. */
static int dec_apply(struct qkm_supply *s, struct dec_req *d)
{
	int rc = 0;
	for (size_t i = 0; !rc && i < d->n; i++) {
		struct qkm_ksa_key *k = &d->kk[i];
		list_add(k->delivered, sizeof(k->delivered), d->caller);
		bool all = list_has(k->delivered, k->slave);
		for (const char *p = k->additional; all && *p;) {
			const char *c = strchr(p, ',');
			char one[QKM_NAME_MAX];
			size_t l = c ? (size_t)(c - p) : strlen(p);
			snprintf(one, sizeof(one), "%.*s", (int)l, p);
			all = list_has(k->delivered, one);
			p = c ? c + 1 : p + l;
		}
		if (all) {
			k->state = QKM_KSA_SUPPLIED;
			k->supplied_ns = d->now_ns;
		}
		rc = qkm_store_ksa_update(s->st, k, all && !s->cfg.preserve);
		if (!rc)
			record(s, "supplied", &k->id, 1, k->peer, "to slave %s (app %s)%s", d->caller,
			       d->caller, all ? (s->cfg.preserve ? "; preserved" : "; deleted") : "");
	}
	if (!rc)
		rc = count_sae(s, d->caller, false, (int64_t)d->n);
	if (!rc)
		rc = qkm_store_counter_add(s->st, "supplied_keys", (int64_t)d->n);
	return rc;
}

static void dec_reply(struct qkm_supply *s, struct dec_req *d)
{
	struct qkm_buf b;
	const uint8_t **keys = calloc(d->n ? d->n : 1, sizeof(*keys));
	size_t *lens = calloc(d->n ? d->n : 1, sizeof(*lens));
	size_t est = 64;
	for (size_t i = 0; i < d->n; i++)
		est += d->kk[i].data->len * 4 / 3 + 80;
	qkm_buf_init(&b, est, true);
	if (keys && lens) {
		for (size_t i = 0; i < d->n; i++) {
			keys[i] = d->kk[i].data->p;
			lens[i] = d->kk[i].data->len;
		}
	}
	if (!keys || !lens || qkm_etsi_keys_json(&b, d->n, d->ids, keys, lens))
		reply_error(s, d->req, 503, "out_of_memory", "out of memory");
	else
		s->ops.reply(d->req, 200, NULL, b.p, b.len, s->ops.arg);
	d->req = NULL;
	qkm_buf_fini(&b);
	free(keys);
	free(lens);
}

static void dec_free(struct dec_req *d)
{
	for (size_t i = 0; d->kk && i < d->n; i++)
		qkm_secret_free(d->kk[i].data);
	free(d->kk);
	free(d);
}

/* The dec_keys requests queued since the last flush, in the order they
 * came: one transaction, each request's changes kept or undone whole (a
 * store mark), one commit; then the answers. A failed commit gives every
 * request of it 503 and nothing was delivered. */
static void dec_flush(struct qkm_supply *s)
{
	struct dec_req *q = s->decs;
	s->decs = NULL;
	s->decs_tail = &s->decs;
	if (!q)
		return;
	int rc = qkm_store_begin(s->st);
	for (struct dec_req *d = q; d; d = d->next) {
		if (!d->req)
			continue; /* its client left */
		int ar = rc;
		if (!ar && !dec_check(s, d)) {
			d->req = NULL; /* answered */
			continue;
		}
		if (!ar && !(ar = qkm_store_mark(s->st))) {
			ar = dec_apply(s, d);
			qkm_store_unmark(s->st, ar == 0);
		}
		if (ar) {
			reply_error(s, d->req, 503, "store", "key store unavailable");
			d->req = NULL;
		}
	}
	if (!rc)
		rc = qkm_store_commit(s->st);
	while (q) {
		struct dec_req *d = q;
		q = d->next;
		if (d->req && rc)
			reply_error(s, d->req, 503, "store", "key store unavailable");
		else if (d->req)
			dec_reply(s, d);
		dec_free(d);
	}
}

/* ---- cancellation (reconciliation of the KSA link) --------------------- */

struct cancel_ctx {
	struct qkm_buf *b;
	size_t n;
	int rc;
};

/* Puts the keys of row k in the cancellation, each by ID, the run's first
 * key last with the run's ranges (the peer burns them once). A row goes
 * whole, so that the peer's answer names the row's first key only once it
 * has handled them all (on_cancel_ack); the rest of the rows go with the
 * next cancellation once this one holds a round's worth of keys. */
static int cancel_collect(const struct qkm_ksa_key *k, void *arg)
{
	struct cancel_ctx *c = arg;
	size_t e;
	if (c->n && c->n + k->count > SUPPLY_MAX_ROUND_KEYS)
		return 1;
	int rc = 0;
	for (uint32_t j = 1; !rc && j < k->count; j++) {
		struct qkm_id id = k->id;
		qkm_id_set_index(&id, qkm_id_index(&k->id) + j);
		if (!(rc = qkm_put_open(c->b, QKM_T_KEY, &e)) &&
		    !(rc = qkm_put_id(c->b, QKM_T_KSA_ID, &id)))
			rc = qkm_put_close(c->b, e);
	}
	if (!rc)
		rc = qkm_put_open(c->b, QKM_T_KEY, &e);
	if (!rc)
		rc = qkm_put_id(c->b, QKM_T_KSA_ID, &k->id);
	for (uint32_t i = 0; !rc && i < k->n_ranges; i++) {
		size_t r;
		if (!(rc = qkm_put_open(c->b, QKM_T_RANGE, &r)) &&
		    !(rc = qkm_put_id(c->b, QKM_T_BATCH, &k->ranges[i].batch)) &&
		    !(rc = qkm_put_u32(c->b, QKM_T_FIRST, k->ranges[i].first)) &&
		    !(rc = qkm_put_u32(c->b, QKM_T_OFF, k->ranges[i].off)) &&
		    !(rc = qkm_put_u32(c->b, QKM_T_LEN, k->ranges[i].len)))
			rc = qkm_put_close(c->b, r);
	}
	if (!rc)
		rc = qkm_put_close(c->b, e);
	c->rc = rc;
	c->n += k->count;
	return rc;
}

/* Master's node: keys OFFERED to peer never reached their master. The peer
 * deletes its copies and marks their key material consumed, as it is here,
 * so both pools stay alike; then we delete ours. Only with no round in
 * flight to peer: the keys of one are OFFERED too. */
static void send_cancel(struct qkm_supply *s, struct peer *p, uint64_t now_ns)
{
	struct qkm_buf b;
	size_t start;
	struct cancel_ctx c = {&b, 0, 0};
	qkm_buf_init(&b, QKM_FRAME_MAX, false);
	if (qkm_frame_begin(&b, QKM_MSG_SUPPLY_CANCEL, 0, &start))
		goto out;
	int rc = qkm_store_ksa_list(s->st, p->name, QKM_KSA_OFFERED, QKM_KSA_MASTER_SIDE,
				    cancel_collect, &c);
	if ((rc < 0 && rc != 1) || c.rc)
		goto out;
	if (c.n == 0) {
		p->cancel_sent = true;
		p->cancel_wait = false;
		goto out;
	}
	if (qkm_frame_end(&b, start) || s->ops.send(p->name, b.p, b.len, s->ops.arg))
		goto out;
	p->cancel_sent = true;
	p->cancel_wait = true;
	p->cancel_ns = now_ns;
	log_info("supply to %s: cancelling %zu key(s) that never reached their master", p->name, c.n);
out:
	qkm_buf_fini(&b);
}

/* Slave's node: delete the named keys (unless a slave already has one) and
 * burn their ranges; answer with the IDs handled. */
static int cancel_key(struct qkm_supply *s, const char *peer, const uint8_t *v, uint32_t vl,
		      struct qkm_buf *ack)
{
	struct qkm_id id;
	struct qkm_ksa_key kk;
	size_t off = 0;
	uint16_t tag;
	const uint8_t *x;
	uint32_t xl;
	int rc;
	if (qkm_tlv_check(v, vl) || qkm_tlv_id(v, vl, QKM_T_KSA_ID, &id))
		return QKM_EPEER;
	while (qkm_tlv_next(v, vl, &off, &tag, &x, &xl) == 1) {
		struct qkm_id batch;
		uint32_t first, roff, rlen;
		if (tag != QKM_T_RANGE)
			continue;
		if (qkm_tlv_check(x, xl) || qkm_tlv_id(x, xl, QKM_T_BATCH, &batch) ||
		    qkm_tlv_u32(x, xl, QKM_T_FIRST, &first) || qkm_tlv_u32(x, xl, QKM_T_OFF, &roff) ||
		    qkm_tlv_u32(x, xl, QKM_T_LEN, &rlen))
			return QKM_EPEER;
		if ((rc = qkm_store_block_burn(s->st, peer, &batch, first, QKM_KT_DEC,
					       (uint64_t)roff + rlen)))
			return rc;
	}
	rc = qkm_store_ksa_get(s->st, &id, &kk, false);
	if (rc == 0 && strcmp(kk.peer, peer) == 0 && kk.role == QKM_KSA_SLAVE_SIDE &&
	    !kk.delivered[0]) {
		if ((rc = qkm_store_ksa_delete(s->st, &id)))
			return rc;
		record(s, "deleted", &id, 1, peer, "cancelled by the master's node: never reached its master");
	} else if (rc && rc != QKM_ENOTFOUND) {
		return rc;
	}
	return qkm_put_id(ack, QKM_T_KSA_ID, &id);
}

static int on_cancel(struct qkm_supply *s, const char *peer, const struct qkm_frame *f)
{
	size_t off = 0, start;
	uint16_t tag;
	const uint8_t *v;
	uint32_t vl;
	struct qkm_buf b;
	qkm_buf_init(&b, QKM_FRAME_MAX, false);
	int rc = qkm_store_begin(s->st);
	if (!rc)
		rc = qkm_frame_begin(&b, QKM_MSG_SUPPLY_CANCEL_ACK, f->req, &start);
	while (!rc && qkm_tlv_next(f->body, f->body_len, &off, &tag, &v, &vl) == 1)
		if (tag == QKM_T_KEY)
			rc = cancel_key(s, peer, v, vl, &b);
	if (!rc)
		rc = qkm_store_commit(s->st);
	else
		qkm_store_rollback(s->st);
	/* cppcheck-suppress uninitvar ; rc == 0: qkm_frame_begin set start */
	if (!rc && !(rc = qkm_frame_end(&b, start)))
		rc = s->ops.send(peer, b.p, b.len, s->ops.arg) ? QKM_EIO : 0;
	qkm_buf_fini(&b);
	return rc == QKM_EPEER ? rc : 0;
}

/* Master's node: the peer dropped what we cancelled; drop our OFFERED rows. */
static int on_cancel_ack(struct qkm_supply *s, const char *peer, const struct qkm_frame *f)
{
	size_t off = 0;
	uint16_t tag;
	const uint8_t *v;
	uint32_t vl;
	struct peer *p = peer_find(s, peer);
	if (p)
		p->cancel_wait = false;
	int rc = qkm_store_begin(s->st);
	while (!rc && qkm_tlv_next(f->body, f->body_len, &off, &tag, &v, &vl) == 1) {
		struct qkm_id id;
		struct qkm_ksa_key kk;
		if (tag != QKM_T_KSA_ID)
			continue;
		if (vl != QKM_ID_LEN) {
			rc = QKM_EPEER;
			break;
		}
		memcpy(id.b, v, QKM_ID_LEN);
		int r = qkm_store_ksa_get(s->st, &id, &kk, false);
		if (r == QKM_ENOTFOUND)
			continue;
		if (r) {
			rc = r;
			break;
		}
		/* A row's keys went whole, its first key last: that one's
		 * answer is the row's. */
		if (strcmp(kk.peer, peer) != 0 || kk.state != QKM_KSA_OFFERED ||
		    memcmp(kk.id.b, id.b, QKM_ID_LEN) != 0)
			continue;
		rc = qkm_store_ksa_delete(s->st, &id);
		if (!rc)
			record(s, "deleted", &id, kk.count, peer,
			       "never reached its master; cancelled on both nodes");
	}
	if (!rc)
		rc = qkm_store_commit(s->st);
	else
		qkm_store_rollback(s->st);
	return rc == QKM_EPEER ? rc : 0;
}

/* ---- dispatch and life --------------------------------------------------- */

int qkm_supply_on_frame(struct qkm_supply *s, const char *peer, const struct qkm_frame *f,
			uint64_t now_ns)
{
	struct peer *p = peer_find(s, peer);
	if (!p)
		return QKM_EPEER;
	switch (f->type) {
	case QKM_MSG_SUPPLY:
		return on_supply(s, peer, f, now_ns);
	case QKM_MSG_SUPPLY_ACK: {
		uint8_t ok;
		char msg[300] = "";
		struct round **at = &p->rounds;
		const uint8_t *pub = NULL;
		uint32_t pl = 0;
		if (qkm_tlv_u8(f->body, f->body_len, QKM_T_OK, &ok))
			return QKM_EPEER;
		while (*at && (*at)->id != f->req)
			at = &(*at)->next;
		struct round *r = *at;
		if (!r) {
			/* A round we gave up on (timeout): its cancellation follows
			 * on this link, so the late answer changes nothing. */
			log_info("supply to %s: late answer to an abandoned round ignored", peer);
			return 0;
		}
		if (qkm_tlv_bytes(f->body, f->body_len, QKM_T_PUBKEY, &pub, &pl) || pl != 32)
			pub = NULL;
		*at = r->next;
		p->n_rounds--;
		if (ok) {
			round_done(s, p, r, pub, now_ns);
		} else {
			if (qkm_tlv_str(f->body, f->body_len, QKM_T_MESSAGE, msg, sizeof(msg), false))
				snprintf(msg, sizeof(msg), "refused");
			char m2[400];
			snprintf(m2, sizeof(m2), "the slave's node %s refused the keys: %s", peer, msg);
			log_warnx("supply to %s: %s", peer, m2);
			stock_pause(s, r->reqs, now_ns);
			fail_reqs(s, r->reqs, 503, "peer_refused", m2);
			p->cancel_sent = false;
		}
		round_free(r);
		/* Cancel once no round is in flight: the list of OFFERED keys
		 * is then short, and all of it stale. */
		if (!p->cancel_sent && !p->rounds)
			send_cancel(s, p, now_ns);
		qkm_supply_flush(s, now_ns);
		return 0;
	}
	case QKM_MSG_SUPPLY_CANCEL:
		return on_cancel(s, peer, f);
	case QKM_MSG_SUPPLY_CANCEL_ACK:
		return on_cancel_ack(s, peer, f);
	default:
		return QKM_EPEER;
	}
}

void qkm_supply_on_peer(struct qkm_supply *s, const char *peer, bool up, uint64_t now_ns)
{
	struct peer *p = peer_find(s, peer);
	if (!p || p->up == up)
		return;
	p->up = up;
	if (up) {
		p->cancel_sent = false;
		send_cancel(s, p, now_ns);
		return;
	}
	rounds_fail(s, p, "peer_link", "KSA link to the slave's node lost", false, now_ns);
	qkm_supply_flush(s, now_ns);
}

/* Rows per pass, and passes: a pass that finds a full batch goes on at the
 * next tick, one that does not waits this long. */
#define PRUNE_ROWS 4096 /* about 20 ms of the loop on the development VM */
#define PRUNE_EVERY_NS 10000000000u

/* Drops the rows of keys supplied more than retention_ns ago (their
 * bytes are gone; their records are the manager's), a batch at a time so
 * the loop stays responsive: ksa_keys would otherwise grow by a row per
 * key supplied, for ever. */
static void prune(struct qkm_supply *s, uint64_t now_ns)
{
	/* Under preserve every supplied row keeps its bytes: none to drop. */
	if (!s->cfg.retention_ns || s->cfg.preserve || now_ns < s->prune_next_ns ||
	    now_ns < s->cfg.retention_ns)
		return;
	uint64_t rows = 0, keys = 0, horizon = 0;
	int rc = qkm_store_begin(s->st);
	if (!rc)
		rc = qkm_store_ksa_prune(s->st, now_ns - s->cfg.retention_ns, PRUNE_ROWS, &rows,
					 &keys);
	if (!rc && rows) {
		record(s, "pruned", NULL, 0, "",
		       "metadata of %llu KSA key(s) deleted (%llu row(s)): supplied more than "
		       "%llu s ago (retention_s)",
		       (unsigned long long)keys, (unsigned long long)rows,
		       (unsigned long long)(s->cfg.retention_ns / 1000000000u));
		rc = qkm_store_counter_add(s->st, "ksa_pruned_keys", (int64_t)keys);
	}
	if (!rc)
		rc = qkm_store_ksa_horizon(s->st, &horizon);
	if (!rc)
		rc = qkm_store_commit(s->st);
	else
		qkm_store_rollback(s->st);
	if (rc) {
		log_warnx("supply: cannot prune supplied keys' rows: %s", qkm_strerror(rc));
		s->prune_next_ns = now_ns + PRUNE_EVERY_NS;
		return;
	}
	s->horizon_ms = horizon;
	s->prune_next_ns = rows == PRUNE_ROWS ? now_ns : now_ns + PRUNE_EVERY_NS;
}

void qkm_supply_tick(struct qkm_supply *s, uint64_t now_ns)
{
	prune(s, now_ns);
	bool waiting = false; /* requests waiting for relayed keys */
	for (size_t i = 0; i < s->n_peers; i++)
		waiting = waiting || (s->peers[i].relay && s->peers[i].queue && round_room(&s->peers[i]));
	if (s->cfg.stock || waiting)
		qkm_supply_flush(s, now_ns); /* settle and refill the stock; retry */
	for (size_t i = 0; i < s->n_peers; i++) {
		struct peer *p = &s->peers[i];
		/* A cancellation can be lost on the way with no link going down
		 * (an end-to-end pool's frames are routed: a node on the route
		 * drops what it cannot pass on): unanswered, it goes again, once
		 * no round is in flight (OFFERED keys are then all stale). */
		if (p->cancel_wait && p->up && !p->rounds &&
		    now_ns - p->cancel_ns >= s->cfg.round_timeout_ns) {
			log_info("supply to %s: cancellation unanswered; sending it again", p->name);
			send_cancel(s, p, now_ns);
		}
		/* The oldest unanswered in time: the younger ones wait behind
		 * it on the same link, so they are given up with it. */
		if (p->rounds && now_ns >= p->rounds->deadline_ns) {
			log_warnx("supply to %s: no answer in time; round abandoned%s", p->name,
				  p->n_rounds > 1 ? ", with the younger one behind it" : "");
			rounds_fail(s, p, "peer_timeout", "the slave's node did not answer in time",
				    true, now_ns);
			p->cancel_sent = false;
			send_cancel(s, p, now_ns);
		}
	}
}

void qkm_supply_forget(struct qkm_supply *s, void *req)
{
	for (struct dec_req *d = s->decs; d; d = d->next)
		if (d->req == req)
			d->req = NULL;
	for (size_t i = 0; i < s->n_peers; i++) {
		struct peer *p = &s->peers[i];
		for (struct enc_req *e = p->queue; e; e = e->next)
			if (e->req == req)
				e->req = NULL;
		for (struct round *r = p->rounds; r; r = r->next)
			for (struct enc_req *e = r->reqs; e; e = e->next)
				if (e->req == req)
					e->req = NULL;
	}
}

struct row_list {
	struct row {
		struct qkm_id id;        /* its run's first key */
		int64_t seq;
		uint32_t count;
	} *rows;
	size_t n, cap;
};

static int collect_row(const struct qkm_ksa_key *k, void *arg)
{
	struct row_list *l = arg;
	if (l->n == l->cap) {
		size_t c = l->cap ? l->cap * 2 : 256;
		struct row *x = realloc(l->rows, c * sizeof(*x));
		if (!x)
			return QKM_ENOMEM;
		l->rows = x;
		l->cap = c;
	}
	l->rows[l->n++] = (struct row){k->id, k->seq, k->count};
	return 0;
}

/* At start: keys left STOCKED by the last run may have reached their
 * master just before it ended. Their bytes are gone with that process, and
 * the peer still holds them for the slave: record them supplied, so they
 * are never offered again and never cancelled. */
static void stock_forget(struct qkm_supply *s, const char *peer)
{
	struct row_list l = {0};
	uint64_t keys = 0;
	int rc = qkm_store_ksa_list(s->st, peer, QKM_KSA_STOCKED, QKM_KSA_MASTER_SIDE, collect_row,
				    &l);
	if (rc < 0 || !l.n)
		goto out;
	rc = qkm_store_begin(s->st);
	uint64_t now_ns = qkm_now_ns();
	/* One update and one record for rows that follow one another (a
	 * request's, and what settling split off them). */
	for (size_t i = 0, j; !rc && i < l.n; i = j) {
		uint64_t n = l.rows[i].count;
		for (j = i + 1; j < l.n && n + l.rows[j].count <= UINT32_MAX &&
				l.rows[j].seq == l.rows[j - 1].seq + 1 &&
				run_next(&l.rows[i].id, &l.rows[j].id, n);
		     j++)
			n += l.rows[j].count;
		rc = set_supplied(s, &l.rows[i].id, l.rows[i].seq, l.rows[j - 1].seq, (uint32_t)n,
				  QKM_KSA_STOCKED, now_ns, peer,
				  "from stock, possibly: the node stopped with the key in stock");
		keys += n;
	}
	if (!rc)
		rc = qkm_store_counter_add(s->st, "supplied_keys", (int64_t)keys);
	if (!rc)
		rc = qkm_store_commit(s->st);
	else
		qkm_store_rollback(s->st);
	if (rc)
		log_warnx("supply: stocked keys with %s not settled: %s", peer, qkm_strerror(rc));
	else
		log_info("supply: %llu key(s) left in stock with %s recorded as possibly supplied",
			 (unsigned long long)keys, peer);
out:
	free(l.rows);
}

struct qkm_supply *qkm_supply_new(const struct qkm_supply_cfg *cfg, struct qkm_store *st,
				  const struct qkm_supply_ops *ops)
{
	struct qkm_supply *s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->cfg = *cfg;
	s->st = st;
	s->ops = *ops;
	/* One peer per pool: each QKD link's, and each distant node's
	 * end-to-end pool built by relay (R-REL-1). */
	s->decs_tail = &s->decs;
	s->n_peers = cfg->node->n_links + cfg->node->n_routes;
	s->peers = calloc(s->n_peers ? s->n_peers : 1, sizeof(*s->peers));
	if (!s->peers) {
		free(s);
		return NULL;
	}
	for (size_t i = 0; i < s->n_peers; i++) {
		bool relay = i >= cfg->node->n_links;
		snprintf(s->peers[i].name, QKM_NAME_MAX, "%s",
			 relay ? cfg->node->routes[i - cfg->node->n_links].to
			       : cfg->node->links[i].peer);
		s->peers[i].relay = relay;
		s->peers[i].queue_tail = &s->peers[i].queue;
		stock_forget(s, s->peers[i].name);
	}
	if (qkm_store_ksa_horizon(st, &s->horizon_ms))
		log_warnx("supply: cannot read the horizon of pruned keys; rounds are not checked "
			  "against it");
	return s;
}

void qkm_supply_free(struct qkm_supply *s)
{
	if (!s)
		return;
	/* A clean stop records what the front end took: only a crash leaves
	 * keys to be recorded "possibly supplied" at the next start. */
	stock_settle(s);
	while (s->decs) {
		struct dec_req *d = s->decs;
		s->decs = d->next;
		if (d->req)
			reply_error(s, d->req, 503, "shutdown", "node shutting down");
		dec_free(d);
	}
	for (size_t i = 0; i < s->n_peers; i++) {
		struct peer *p = &s->peers[i];
		fail_reqs(s, p->queue, 503, "shutdown", "node shutting down");
		while (p->queue) {
			struct enc_req *e = p->queue;
			p->queue = e->next;
			free(e);
		}
		rounds_fail(s, p, "shutdown", "node shutting down", false, 0);
	}
	free(s->peers);
	free(s);
}
