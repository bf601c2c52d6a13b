/* relay.c - key relay between KMAs (relay.h). Invariants: link key is
 * consumed durably before a frame that uses it leaves this process and is
 * never used twice; a relayed key is in the clear at a relay node only in
 * memory (secure heap), for the time of one decrypt and re-encrypt; the
 * destination stores a key only once every hop's tag verified and the
 * end-to-end hash of the data matched; the origin's copy is usable only
 * once the destination confirmed it. */
#include "kma/relay.h"
#include "kma/range.h"
#include "core/keyfile.h"
#include "core/log.h"
#include "core/rng.h"
#include "core/secret.h"
#include "core/xor.h"

#include <errno.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RELAY_MAX_RANGES 512
#define RELAY_META_ROOM 4096u          /* a key file's bytes beyond its key data, at
					  least: metadata and hops (grown if more) */
#define RELAY_RNG_MIN (64u << 10)      /* bytes the RNG draws ahead, at least */
#define RELAY_RNG_MAX (8u << 20)       /* ...and at most (secure heap) */
#define RELAY_UNIT 32                    /* bytes per relayed KMA-key */
#define RELAY_WINDOW 8                   /* relays in flight per destination */
#define RELAY_MAC_KEY 32                 /* Poly1305 / AES-256 key bytes */
#define RELAY_TAG 16
#define RELAY_ASK_NS 5000000000ull       /* ask about an unanswered relay after */
#define RELAY_RETRY_NS 1000000000ull     /* after a failed relay, wait; doubling... */
#define RELAY_RETRY_MAX_NS 30000000000ull /* ...up to this */
#define RELAY_SCAN_NS 100000000ull       /* pools are checked this often */
#define RELAY_SAY_NS 60000000000ull      /* a failure to start is logged this often */

/* A relay this node started and the destination has not confirmed. */
struct flight {
	struct flight *next;
	struct qkm_id batch;
	uint32_t bytes;
	uint64_t sent_ns, asked_ns;
	bool held;                           /* a relay node holds it for link key */
	char why[200];                       /* what the node that refused it said */
};

/* An end-to-end pool: a node reached by a route. */
struct dest {
	const struct qkm_node_route *route;  /* &rt */
	struct qkm_node_route rt;            /* from node.json, then the controller's */
	struct flight *flights;
	uint32_t n_flights;
	uint64_t flight_bytes;
	uint64_t retry_ns;                   /* no relay ahead of demand before */
	uint64_t backoff_ns;                 /* after failures: doubles up to 30 s */
	bool ksa;                            /* SAEs are registered here and there */
	bool filling;                        /* below low_bytes lately: fill to high_bytes */
	uint64_t said_ns;                    /* a failure to start was last logged */
	char why[200];                       /* why the last relay failed (here or on the way) */
	char refused[200];                   /* the last refusal from a node on the route,
					      * kept until a relay is confirmed */
	char msg[420];                       /* qkm_relay_why(): why, and refused if other */
	uint64_t last_seq;                   /* sequence number of the last relay started */
	uint64_t fail_seq;                   /* relays up to this one are no news after the
					      * last failure: their success ends nothing */
	uint64_t plan_rate;                  /* the controller's plan (qkm_relay_set_rate) */
	double credit;                       /* fixed rate: bytes it may relay now */
	uint64_t credit_ns;
	uint64_t push_bytes;                 /* scheduled: bytes still to relay now */
};

struct qkm_relay {
	const struct qkm_node_cfg *cfg;
	struct qkm_store *st;
	struct qkm_relay_ops ops;
	EVP_MAC *poly;
	struct dest *dests;
	size_t n_dests;
	uint64_t scan_ns;
	struct qkm_relay_stats stats;
	struct xacc *xaccs;                  /* clause 9 combinations in progress */
	size_t n_xacc;
	size_t xacc_bytes;
	bool batching;                       /* group commit: see qkm_relay_begin_batch */
	struct out *outq, **outq_tail;       /* held back until the work is durable */
	unsigned draining;                   /* on_deferred_end sending frames (nested) */
	struct held *held;                   /* frames waiting for next-hop link key, in order */
	size_t held_bytes;
	struct held *retrying;               /* the held frame being handled again */
	bool release;                        /* ...and it may not wait any longer */
	struct qkm_rng *rng;                 /* from the first key this node makes */
};

/* A parsed RELAY frame (pointers into the frame). */
struct hop_in {
	struct qkm_id batch;
	uint64_t seq;
	char src[QKM_NAME_MAX], dst[QKM_NAME_MAX];
	uint32_t n;
	char path[QKM_MAX_PATH][QKM_NAME_MAX];
	uint32_t hop;
	uint8_t method;
	size_t n_pad, n_data;
	struct qkm_range pad[RELAY_MAX_RANGES], data[RELAY_MAX_RANGES];
	size_t pad_len, data_len;
	const uint8_t *ct;
	uint32_t ct_len;
	size_t ct_tlv;                       /* body offset of the CT TLV */
	size_t tag_tlv;                      /* body offset of the TAG TLV */
	const uint8_t *tag;
};

static bool is_neighbour(const struct qkm_relay *r, const char *node);

/* A plan's relays stop when the pool holds this many times high_bytes. */
#define RELAY_PLAN_CEILING 4

static struct dest *dest_find(const struct qkm_relay *r, const char *node)
{
	for (size_t i = 0; i < r->n_dests; i++)
		if (strcmp(r->dests[i].route->to, node) == 0)
			return &r->dests[i];
	return NULL;
}

const struct qkm_node_route *qkm_relay_route(const struct qkm_relay *r, const char *node)
{
	const struct dest *d = dest_find(r, node);
	return d ? d->route : NULL;
}

int qkm_relay_set_route(struct qkm_relay *r, const struct qkm_node_route *rt)
{
	struct dest *d = dest_find(r, rt->to);
	if (!d)
		return QKM_ENOTFOUND;
	if (rt->n < 2 || rt->n > QKM_MAX_PATH || strcmp(rt->path[0], r->cfg->id) != 0 ||
	    strcmp(rt->path[rt->n - 1], rt->to) != 0 || !is_neighbour(r, rt->path[1]))
		return QKM_EINVAL;
	if (d->rt.n == rt->n &&
	    memcmp(d->rt.path, rt->path, sizeof(rt->path[0]) * rt->n) == 0)
		return 0;
	d->rt = *rt;
	/* A new way: try it now, not after the old way's back-off. */
	d->backoff_ns = 0;
	d->retry_ns = 0;
	d->said_ns = 0;
	return 1;
}

bool qkm_relay_ready(const struct qkm_relay *r, const char *node)
{
	const struct dest *d = dest_find(r, node);
	return d && r->ops.link_ready(d->route->path[1], r->ops.arg);
}

const char *qkm_relay_why(const struct qkm_relay *r, const char *node)
{
	const struct dest *d = dest_find(r, node);
	return d ? d->msg : "";
}

/* Rebuilds d->msg. A refusal from down the route (a starved hop there) is
 * kept beside a later failure here: this node's first hop running short
 * while it refills, after relays refused further on consumed it, is only
 * part of the story, and would otherwise hide the hop that blocks. */
static void why_update(struct dest *d)
{
	if (d->why[0] && d->refused[0] && strcmp(d->why, d->refused) != 0)
		snprintf(d->msg, sizeof(d->msg), "%s; last refused %s", d->why, d->refused);
	else
		snprintf(d->msg, sizeof(d->msg), "%s", d->why[0] ? d->why : d->refused);
}

/* A relay toward d failed, or could not start, for `why`. */
static void set_why(struct dest *d, const char *why)
{
	if (why != d->why)
		snprintf(d->why, sizeof(d->why), "%s", why);
	why_update(d);
	d->fail_seq = d->last_seq;
}

void qkm_relay_stats(const struct qkm_relay *r, struct qkm_relay_stats *out)
{
	*out = r->stats;
	out->in_flight = 0;
	for (size_t i = 0; i < r->n_dests; i++)
		out->in_flight += r->dests[i].n_flights;
}

/* ---- group commit --------------------------------------------------------- */

/* Between qkm_relay_begin_batch and _end_batch (the frames of one read, a
 * timer round), the work of every frame goes into one deferred store
 * transaction, each frame's part kept or undone whole (a mark), and what
 * the frames would send waits until that transaction is committed: a
 * commit per read, not per frame, and nothing leaves before it is durable. */
enum out_kind { OUT_SEND, OUT_NEAR, OUT_TO, OUT_POOL };
struct out {
	struct out *next;
	enum out_kind kind;
	char node[QKM_NAME_MAX];
	size_t len;
	uint8_t p[];
};

static int out_now(struct qkm_relay *r, enum out_kind k, const char *node, const uint8_t *p,
		   size_t len)
{
	switch (k) {
	case OUT_SEND:
		return r->ops.send(node, p, len, r->ops.arg);
	case OUT_NEAR:
		/* Over Kx to a neighbour, else over a direct KMA link. */
		for (size_t i = 0; i < r->cfg->n_links; i++)
			if (strcmp(r->cfg->links[i].peer, node) == 0)
				return r->ops.send(node, p, len, r->ops.arg);
		return r->ops.send_direct ? r->ops.send_direct(node, p, len, r->ops.arg)
					  : QKM_ESTATE;
	case OUT_TO:
		return r->ops.send_to(node, p, len, r->ops.arg);
	case OUT_POOL:
		if (r->ops.on_pool)
			r->ops.on_pool(node, r->ops.arg);
		return 0;
	}
	return QKM_EINVAL;
}

/* Sends (or, inside a group commit, queues) a frame or a pool event. */
static int out(struct qkm_relay *r, enum out_kind k, const char *node, const uint8_t *p,
	       size_t len)
{
	if (!r->batching || (!qkm_store_in_deferred(r->st) && !r->outq && !r->draining))
		return out_now(r, k, node, p, len);
	struct out *o = malloc(sizeof(*o) + len);
	if (!o)
		return QKM_ENOMEM;
	o->next = NULL;
	o->kind = k;
	snprintf(o->node, sizeof(o->node), "%s", node);
	o->len = len;
	if (len)
		memcpy(o->p, p, len);
	*r->outq_tail = o;
	r->outq_tail = &o->next;
	return 0;
}

/* The deferred transaction ended (committed, rc 0, or failed). */
static void on_deferred_end(int rc, void *arg)
{
	struct qkm_relay *r = arg;
	size_t dropped = 0;
	/* Detached first: what sending calls queues (a pool event's owner may
	 * start a relay, in a deferred transaction of its own) goes on a fresh
	 * list, sent when that transaction ends (or the batch does), not
	 * before it is durable, and never ahead of the frames drained here. */
	struct out *q = r->outq;
	r->outq = NULL;
	r->outq_tail = &r->outq;
	r->draining++;
	while (q) {
		struct out *o = q;
		q = o->next;
		if (rc)
			dropped++;
		else if (out_now(r, o->kind, o->node, o->p, o->len) && o->kind != OUT_POOL)
			log_debug("relay: a frame for %s could not be sent", o->node);
		free(o);
	}
	r->draining--;
	if (dropped)
		log_warnx("relay: store commit failed (%s): %zu frame(s) not sent; their relays "
			  "are settled by query", qkm_strerror(rc), dropped);
}

static int txn_begin(struct qkm_relay *r)
{
	if (!r->batching)
		return qkm_store_begin(r->st);
	int rc = qkm_store_begin_deferred(r->st, on_deferred_end, r);
	return rc ? rc : qkm_store_mark(r->st);
}

/* Ends one frame's work: commit (or, in a group commit, keep) if rc is 0,
 * else undo it. Returns rc, or the commit's error. */
static int txn_end(struct qkm_relay *r, int rc)
{
	if (r->batching) {
		qkm_store_unmark(r->st, rc == 0);
		return rc;
	}
	if (rc) {
		qkm_store_rollback(r->st);
		return rc;
	}
	return qkm_store_commit(r->st);
}

void qkm_relay_begin_batch(struct qkm_relay *r) { r->batching = true; }

void qkm_relay_end_batch(struct qkm_relay *r)
{
	r->batching = false;
	if (qkm_store_in_deferred(r->st))
		(void)qkm_store_end_deferred(r->st);
	else
		on_deferred_end(0, r);
}

/* ---- crypto -------------------------------------------------------------- */


static int poly1305(struct qkm_relay *r, const uint8_t key[RELAY_MAC_KEY], const uint8_t *m,
		    size_t n, uint8_t tag[RELAY_TAG])
{
	EVP_MAC_CTX *c = EVP_MAC_CTX_new(r->poly);
	size_t len = 0;
	int ok = c && EVP_MAC_init(c, key, RELAY_MAC_KEY, NULL) && EVP_MAC_update(c, m, n) &&
		 EVP_MAC_final(c, tag, &len, RELAY_TAG) && len == RELAY_TAG;
	EVP_MAC_CTX_free(c);
	return ok ? 0 : QKM_ECRYPTO;
}

/* AES-256-GCM with a key used once (so a fixed nonce), aad authenticated. */
static int gcm(bool enc, const uint8_t key[RELAY_MAC_KEY], const uint8_t *aad, size_t aad_len,
	       const uint8_t *in, size_t n, uint8_t *out, uint8_t tag[RELAY_TAG])
{
	static const uint8_t iv[12];
	EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
	int l = 0;
	int ok = c && EVP_CipherInit_ex(c, EVP_aes_256_gcm(), NULL, key, iv, enc ? 1 : 0) &&
		 EVP_CipherUpdate(c, NULL, &l, aad, (int)aad_len) &&
		 (n == 0 || EVP_CipherUpdate(c, out, &l, in, (int)n));
	if (ok && enc)
		ok = EVP_CipherFinal_ex(c, out + n, &l) &&
		     EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, RELAY_TAG, tag);
	else if (ok)
		ok = EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, RELAY_TAG, tag) &&
		     EVP_CipherFinal_ex(c, out + n, &l) > 0;
	EVP_CIPHER_CTX_free(c);
	return ok ? 0 : QKM_EMISMATCH;
}

/* Link key bytes a hop needs for a plaintext of n bytes. */
static size_t hop_key_len(uint8_t method, size_t n)
{
	return method == QKM_RM_OTP ? RELAY_MAC_KEY + n : RELAY_MAC_KEY;
}

/* Appends CT and TAG to the frame whose body starts at body_off in fb:
 * OTP: ct = pt ^ lk[32..], tag = Poly1305(lk[0..32), body so far + CT);
 * AES: GCM under lk[0..32) with the body before CT as associated data. */
static int seal(struct qkm_relay *r, struct qkm_buf *fb, size_t body_off, uint8_t method,
		const uint8_t *lk, const uint8_t *pt, size_t n)
{
	uint8_t tag[RELAY_TAG];
	size_t aad = fb->len - body_off;
	int rc = qkm_buf_reserve(fb, 6 + n + 16 + 6 + RELAY_TAG);
	if (rc)
		return rc;
	/* The plaintext never enters the (ordinary heap) frame buffer: the
	 * ciphertext is written there directly. */
	if ((rc = qkm_buf_put_u16(fb, QKM_T_CT)) || (rc = qkm_buf_put_u32(fb, (uint32_t)n)))
		return rc;
	uint8_t *ct = fb->p + fb->len;
	fb->len += n;
	if (method == QKM_RM_OTP) {
		qkm_xor(ct, pt, lk + RELAY_MAC_KEY, n);
		rc = poly1305(r, lk, fb->p + body_off, fb->len - body_off, tag);
	} else {
		rc = gcm(true, lk, fb->p + body_off, aad, pt, n, ct, tag);
	}
	if (!rc)
		rc = qkm_put_tlv(fb, QKM_T_TAG, tag, RELAY_TAG);
	return rc;
}

/* Checks the tag of h and decrypts its CT into pt (secure, ct_len bytes). */
static int unseal(struct qkm_relay *r, const struct qkm_frame *f, const struct hop_in *h,
		  const uint8_t *lk, uint8_t *pt)
{
	if (h->method == QKM_RM_OTP) {
		uint8_t tag[RELAY_TAG];
		int rc = poly1305(r, lk, f->body, h->tag_tlv, tag);
		if (rc)
			return rc;
		if (!qkm_ct_equal(tag, h->tag, RELAY_TAG))
			return QKM_EMISMATCH;
		qkm_xor(pt, h->ct, lk + RELAY_MAC_KEY, h->ct_len);
		return 0;
	}
	uint8_t tag[RELAY_TAG];
	memcpy(tag, h->tag, RELAY_TAG);
	return gcm(false, lk, f->body, h->ct_tlv, h->ct, h->ct_len, pt, tag);
}

/* ---- ranges ---------------------------------------------------------------- */


/* Splits ranges (covering a contiguous read) at byte `at`: [0, at) stays in
 * a[0..*na), the rest goes to b[0..*nb). */
static void split_ranges(const struct qkm_range *in, size_t n, size_t at, struct qkm_range *a,
			 size_t *na, struct qkm_range *b, size_t *nb)
{
	size_t pos = 0;
	*na = *nb = 0;
	for (size_t i = 0; i < n; i++) {
		size_t s = pos, e = pos + in[i].len;
		pos = e;
		if (e <= at) {
			a[(*na)++] = in[i];
		} else if (s >= at) {
			b[(*nb)++] = in[i];
		} else {
			a[*na] = in[i];
			a[*na].len = (uint32_t)(at - s);
			b[*nb] = in[i];
			b[*nb].off += (uint32_t)(at - s);
			b[*nb].len = (uint32_t)(e - at);
			(*na)++;
			(*nb)++;
		}
	}
}

/* "<block>+off:len,..." of link key ranges, for a life-cycle record (the
 * block as its first KMA-key's ID, 24 + 8 hex digits). When the list does
 * not fit, the first and last ranges and the totals: the ranges between
 * are the blocks between, in pool order. */
static void ranges_str(const struct qkm_range *g, size_t n, char *out, size_t outsz)
{
	size_t len = 0, total = 0;
	out[0] = 0;
	for (size_t i = 0; i < n; i++)
		total += g[i].len;
	for (size_t i = 0; i < n && len < outsz; i++) {
		char hex[33];
		qkm_id_hex(&g[i].batch, hex);
		len += (size_t)snprintf(out + len, outsz - len, "%s%.24s%08x+%u:%u", i ? "," : "",
					hex, g[i].first_index + g[i].off / g[i].unit_bytes,
					g[i].off % g[i].unit_bytes, g[i].len);
	}
	if (len < outsz || n < 2)
		return;
	char a[33], b[33];
	qkm_id_hex(&g[0].batch, a);
	qkm_id_hex(&g[n - 1].batch, b);
	snprintf(out, outsz, "%.24s%08x+%u:%u .. %.24s%08x+%u:%u (%zu ranges, %zu bytes)", a,
		 g[0].first_index + g[0].off / g[0].unit_bytes, g[0].off % g[0].unit_bytes,
		 g[0].len, b, g[n - 1].first_index + g[n - 1].off / g[n - 1].unit_bytes,
		 g[n - 1].off % g[n - 1].unit_bytes, g[n - 1].len, n, total);
}

/* Reads our copies of ranges of the pool shared with neighbour `from`
 * (their direction: our DEC) into out. */
static int read_ranges(struct qkm_relay *r, const char *from, struct qkm_range *g, size_t n,
		       uint8_t *out)
{
	size_t pos = 0;
	for (size_t i = 0; i < n; i++) {
		int rc = qkm_store_block_read(r->st, from, &g[i].batch, g[i].first_index, QKM_KT_DEC,
					      g[i].off, g[i].len, out + pos, &g[i].rowid);
		if (rc)
			return rc;
		pos += g[i].len;
	}
	return 0;
}

static int burn_ranges(struct qkm_relay *r, const char *from, const struct qkm_range *g, size_t n)
{
	int rc = 0;
	for (size_t i = 0; !rc && i < n; i++)
		rc = qkm_store_block_burn(r->st, from, &g[i].batch, g[i].first_index, QKM_KT_DEC,
					  (uint64_t)g[i].off + g[i].len);
	return rc;
}

/* The link key a frame of neighbour `from` named, as its sender consumed
 * it: the pad (RANGE) and the key data sent by reference (DATA). */
static int burn_in(struct qkm_relay *r, const char *from, const struct hop_in *h)
{
	int rc = burn_ranges(r, from, h->pad, h->n_pad);
	return rc ? rc : burn_ranges(r, from, h->data, h->n_data);
}

static int use_ranges(struct qkm_relay *r, const struct qkm_range *g, size_t n)
{
	int rc = 0;
	for (size_t i = 0; !rc && i < n; i++)
		rc = qkm_store_block_set_used(r->st, g[i].rowid, g[i].off + g[i].len);
	return rc;
}

/* ---- records ----------------------------------------------------------- */

static void record(struct qkm_relay *r, const char *event, const struct qkm_id *batch,
		   uint32_t count, const char *peer, const char *fmt, ...)
	__attribute__((format(printf, 6, 7)));
static void record(struct qkm_relay *r, const char *event, const struct qkm_id *batch,
		   uint32_t count, const char *peer, const char *fmt, ...)
{
	struct qkm_lc_event ev;
	char hex[33];
	memset(&ev, 0, sizeof(ev));
	snprintf(ev.event, sizeof(ev.event), "%s", event);
	snprintf(ev.key_kind, sizeof(ev.key_kind), "relayed");
	qkm_id_hex(batch, hex);
	if (count > 1)
		snprintf(ev.key_id, sizeof(ev.key_id), "%s[0..%u]", hex, count - 1);
	else
		snprintf(ev.key_id, sizeof(ev.key_id), "%s", hex);
	snprintf(ev.peer, sizeof(ev.peer), "%s", peer);
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(ev.detail, sizeof(ev.detail), fmt, ap);
	va_end(ap);
	if (qkm_store_record(r->st, &ev))
		log_warnx("relay: could not record %s", event);
}

/* "node1>node2 otp 12:00:00.000001Z; ..." */
static void hops_str(const struct qkm_relayed_meta *m, char *out, size_t outsz)
{
	size_t len = 0;
	out[0] = 0;
	for (uint32_t i = 0; i < m->n_hops && len < outsz; i++) {
		char ts[32];
		qkm_time_str(m->hops[i].key_relay_time_stamp, ts);
		len += (size_t)snprintf(out + len, outsz - len, "%s%s>%s %s %s", i ? "; " : "",
					m->hops[i].source_kma_id, m->hops[i].destination_kma_id,
					qkm_relay_method_name(m->hops[i].key_relay_encryption_method),
					ts);
	}
}

/* ---- frames ------------------------------------------------------------ */

/* Writes the RELAY header up to (not including) CT and TAG. */
/* Begins a RELAY, XOR_NEXT or XOR_SHARE frame: the relay's identity and
 * route, this hop, its method, and the link key it names (RANGE, DATA). */
static int put_header(struct qkm_buf *fb, size_t *start, uint16_t type, const struct qkm_id *batch,
		      uint64_t seq, const char (*path)[QKM_NAME_MAX], uint32_t n, uint32_t hop,
		      uint8_t method, const struct qkm_range *pad, size_t n_pad,
		      const struct qkm_range *data, size_t n_data)
{
	int rc = qkm_frame_begin(fb, type, 0, start);
	if (!rc)
		rc = qkm_put_id(fb, QKM_T_BATCH, batch);
	if (!rc)
		rc = qkm_put_u64(fb, QKM_T_SEQ, seq);
	if (!rc)
		rc = qkm_put_str(fb, QKM_T_SRC, path[0]);
	if (!rc)
		rc = qkm_put_str(fb, QKM_T_DST, path[n - 1]);
	for (uint32_t i = 0; !rc && i < n; i++)
		rc = qkm_put_str(fb, QKM_T_PATH, path[i]);
	if (!rc)
		rc = qkm_put_u32(fb, QKM_T_HOP, hop);
	if (!rc)
		rc = qkm_put_u8(fb, QKM_T_METHOD, method);
	for (size_t i = 0; !rc && i < n_pad; i++)
		rc = qkm_put_range(fb, QKM_T_RANGE, &pad[i]);
	for (size_t i = 0; !rc && i < n_data; i++)
		rc = qkm_put_range(fb, QKM_T_DATA, &data[i]);
	return rc;
}

/* What parse_hop accepts: RELAY (CT and TAG, TAG last), XOR_NEXT (link
 * key ranges only), XOR_SHARE (CT only; HOP is the share's index, from 0). */
enum hop_kind { HOP_RELAY, HOP_XOR_NEXT, HOP_XOR_SHARE };

static int parse_hop(const struct qkm_frame *f, struct hop_in *h, enum hop_kind kind)
{
	size_t off = 0, prev = 0;
	uint16_t tag;
	const uint8_t *v;
	uint32_t vl;
	int rc;
	memset(h, 0, sizeof(*h));
	if (qkm_tlv_id(f->body, f->body_len, QKM_T_BATCH, &h->batch) ||
	    qkm_tlv_u64(f->body, f->body_len, QKM_T_SEQ, &h->seq) ||
	    qkm_tlv_str(f->body, f->body_len, QKM_T_SRC, h->src, sizeof(h->src), true) ||
	    qkm_tlv_str(f->body, f->body_len, QKM_T_DST, h->dst, sizeof(h->dst), true) ||
	    qkm_tlv_u32(f->body, f->body_len, QKM_T_HOP, &h->hop) ||
	    qkm_tlv_u8(f->body, f->body_len, QKM_T_METHOD, &h->method) ||
	    (h->method != QKM_RM_OTP && h->method != QKM_RM_AES256GCM))
		return QKM_EPEER;
	while ((rc = qkm_tlv_next(f->body, f->body_len, &off, &tag, &v, &vl)) == 1) {
		if (h->tag)
			return QKM_EPEER; /* TAG must be last */
		if (tag == QKM_T_PATH) {
			if (h->n == QKM_MAX_PATH || vl == 0 || vl >= QKM_NAME_MAX)
				return QKM_EPEER;
			memcpy(h->path[h->n], v, vl);
			h->path[h->n][vl] = 0;
			if (!qkm_name_valid(h->path[h->n++]))
				return QKM_EPEER;
		} else if (tag == QKM_T_RANGE || tag == QKM_T_DATA) {
			bool pad = tag == QKM_T_RANGE;
			size_t *cnt = pad ? &h->n_pad : &h->n_data;
			struct qkm_range *g = pad ? &h->pad[*cnt] : &h->data[*cnt];
			if (*cnt == RELAY_MAX_RANGES || qkm_parse_range(v, vl, g))
				return QKM_EPEER;
			(*cnt)++;
			if (pad)
				h->pad_len += g->len;
			else
				h->data_len += g->len;
		} else if (tag == QKM_T_CT) {
			if (h->ct)
				return QKM_EPEER;
			h->ct = v;
			h->ct_len = vl;
			h->ct_tlv = prev;
		} else if (tag == QKM_T_TAG) {
			if (vl != RELAY_TAG || !h->ct)
				return QKM_EPEER;
			h->tag = v;
			h->tag_tlv = prev;
		}
		prev = off;
	}
	bool shape = kind == HOP_RELAY	   ? h->tag != NULL
		     : kind == HOP_XOR_NEXT ? !h->ct && !h->n_data && h->n_pad && h->hop >= 1
					    : h->ct && !h->tag && !h->n_pad && !h->n_data;
	if (rc < 0 || !shape || h->n < 3 || (kind == HOP_RELAY && h->hop < 1) || h->hop >= h->n ||
	    strcmp(h->path[0], h->src) != 0 || strcmp(h->path[h->n - 1], h->dst) != 0 ||
	    h->pad_len > QKM_FRAME_MAX || h->data_len > QKM_KEYFILE_MAX_DATA ||
	    (h->n_data && h->hop != 1))
		return QKM_EPEER;
	for (uint32_t i = 0; i < h->n; i++)
		for (uint32_t j = i + 1; j < h->n; j++)
			if (strcmp(h->path[i], h->path[j]) == 0)
				return QKM_EPEER;
	return 0;
}

/* RELAY_ACK's OK: 1 stored at the destination, 0 refused (by it or a node
 * on the way), RELAY_ACK_HELD waiting at a node on the way (hold()). */
#define RELAY_ACK_HELD 2

static int send_ack(struct qkm_relay *r, const char *origin, const struct qkm_id *batch, uint8_t ok,
		    uint8_t level, const char *msg)
{
	struct qkm_buf b;
	size_t start;
	qkm_buf_init(&b, 4096, false);
	int rc = qkm_frame_begin(&b, QKM_MSG_RELAY_ACK, 0, &start);
	if (!rc)
		rc = qkm_put_id(&b, QKM_T_BATCH, batch);
	if (!rc)
		rc = qkm_put_u8(&b, QKM_T_OK, ok);
	if (!rc && ok == 1)
		rc = qkm_put_u8(&b, QKM_T_LEVEL, level);
	if (!rc && msg)
		rc = qkm_put_str(&b, QKM_T_MESSAGE, msg);
	if (!rc)
		rc = qkm_frame_end(&b, start);
	if (!rc)
		rc = out(r, OUT_TO, origin, b.p, b.len) ? QKM_EIO : 0;
	qkm_buf_fini(&b);
	return rc;
}

/* ---- taking link key ------------------------------------------------------ */

static bool is_neighbour(const struct qkm_relay *r, const char *node)
{
	for (size_t i = 0; i < r->cfg->n_links; i++)
		if (strcmp(r->cfg->links[i].peer, node) == 0)
			return true;
	return false;
}

/* Whether this node can pass a relay on to `next`: a neighbour whose link
 * pool is usable; else why not, in why. */
static bool next_hop_ok(struct qkm_relay *r, const char *next, char *why, size_t whysz)
{
	if (!is_neighbour(r, next))
		snprintf(why, whysz, "next hop %s is not a neighbour of %s", next, r->cfg->id);
	else if (!r->ops.link_ready(next, r->ops.arg))
		snprintf(why, whysz, "hop %s-%s is down", r->cfg->id, next);
	else
		return true;
	return false;
}

/* Reads the first n unused bytes of our direction of the link pool with
 * neighbour nb. */
static int draw(struct qkm_relay *r, const char *nb, size_t n, struct qkm_range *g, size_t *ng,
		uint8_t *out)
{
	/* Link key only: a pool named after a distant node is an end-to-end
	 * pool, whose keys must never pad a hop (a frame naming such a node
	 * as the next hop would otherwise get them sent out). */
	if (!is_neighbour(r, nb))
		return QKM_EPERM;
	return qkm_store_pool_read(r->st, nb, QKM_KT_ENC, n, g, RELAY_MAX_RANGES, ng, out);
}

/* Chooses the method for a hop to nb needing otp_len bytes under OTP and
 * draws its key into *lk. extra: bytes drawn first (key data by reference,
 * first hop of key_source "link"). QKM_ENOKEY with why set if the hop
 * cannot be served under policy. */
static int draw_hop(struct qkm_relay *r, const char *nb, size_t extra, size_t otp_len,
		    uint8_t *method, struct qkm_secret **lk, struct qkm_range *g, size_t *ng,
		    char *why, size_t whysz)
{
	struct qkm_pool_stats ps;
	*method = QKM_RM_OTP;
	for (int pass = 0; pass < 2; pass++) {
		size_t need = extra + hop_key_len(*method, otp_len);
		if (!(*lk = qkm_secret_new_raw(need)))
			return QKM_ENOMEM;
		int rc = draw(r, nb, need, g, ng, (*lk)->p);
		if (rc != QKM_ENOKEY)
			return rc;
		qkm_secret_free(*lk);
		*lk = NULL;
		if (pass == 0 && !r->cfg->relay.aes_fallback)
			break;
		*method = QKM_RM_AES256GCM;
	}
	if (qkm_store_pool_stats(r->st, nb, &ps))
		memset(&ps, 0, sizeof(ps));
	snprintf(why, whysz, "hop %s-%s is out of link key: %zu bytes needed, %llu available%s",
		 r->cfg->id, nb, extra + hop_key_len(QKM_RM_OTP, otp_len),
		 (unsigned long long)ps.enc_bytes,
		 r->cfg->relay.aes_fallback ? " (even for the AES fallback)" : " (relay policy otp)");
	return QKM_ENOKEY;
}

/* ---- origin ------------------------------------------------------------ */

/* Bytes of the RNG for a key this node makes (R-REL-3), drawn ahead by
 * core/rng.c's helper from the first key on: a few relays' worth, so that
 * an origin copies its key instead of waiting for the kernel to make it. */
static int rng_fill(struct qkm_relay *r, uint8_t *p, size_t n)
{
	if (!r->rng) {
		size_t cap = 4 * (size_t)r->cfg->relay.batch_bytes;
		cap = cap < RELAY_RNG_MIN ? RELAY_RNG_MIN : cap > RELAY_RNG_MAX ? RELAY_RNG_MAX : cap;
		if (!(r->rng = qkm_rng_new(r->cfg->relay.rng_device, cap)))
			return QKM_ENOMEM;
	}
	return qkm_rng_fill(r->rng, p, n);
}

static void flight_drop(struct dest *d, const struct qkm_id *batch)
{
	for (struct flight **pp = &d->flights; *pp; pp = &(*pp)->next)
		if (qkm_id_eq(&(*pp)->batch, batch)) {
			struct flight *f = *pp;
			*pp = f->next;
			d->n_flights--;
			d->flight_bytes -= f->bytes;
			free(f);
			return;
		}
}

static struct flight *flight_add(struct dest *d, const struct qkm_id *batch, uint32_t bytes,
				 uint64_t now_ns)
{
	struct flight *f = calloc(1, sizeof(*f));
	if (!f)
		return NULL;
	f->batch = *batch;
	f->bytes = bytes;
	f->sent_ns = now_ns;
	f->next = d->flights;
	d->flights = f;
	d->n_flights++;
	d->flight_bytes += bytes;
	return f;
}

/* A new relay batch ID toward d: 6 random bytes, the 48-bit sequence
 * number (one above the last used, *seq), 4 zero bytes for the key index.
 * The sequence lets the destination refuse a stale or replayed relay. */
static int new_batch(struct qkm_relay *r, const struct dest *d, struct qkm_id *batch,
		     int64_t *seq)
{
	char cname[QKM_NAME_MAX + 16];
	snprintf(cname, sizeof(cname), "relay_seq:%s", d->route->to);
	int rc = qkm_store_counter_get(r->st, cname, seq);
	if (!rc)
		rc = qkm_id_random(batch);
	if (rc)
		return rc;
	(*seq)++;
	for (int i = 0; i < 6; i++)
		batch->b[6 + i] = (uint8_t)((uint64_t)*seq >> (40 - 8 * i));
	memset(batch->b + 12, 0, 4);
	return 0;
}

/* Inside a transaction: the origin's copy of a relayed key, PENDING until
 * the destination confirms, and the sequence number it used. */
static int origin_put(struct qkm_relay *r, const struct dest *d, const struct qkm_id *batch,
		      struct qkm_secret *key, enum qkm_block_level level, uint64_t now_ns)
{
	struct qkm_block b;
	char cname[QKM_NAME_MAX + 16];
	memset(&b, 0, sizeof(b));
	snprintf(b.peer, sizeof(b.peer), "%s", d->route->to);
	b.pool_kind = QKM_POOL_RELAY;
	b.batch_id = *batch;
	b.count = (uint32_t)(key->len / RELAY_UNIT);
	b.unit_bytes = RELAY_UNIT;
	b.key_type = QKM_KT_ENC;
	b.state = QKM_BLOCK_PENDING;
	b.level = level;
	b.created_ns = now_ns;
	b.data = key; /* lent: block_put copies it to the store */
	int rc = qkm_store_block_put(r->st, &b);
	snprintf(cname, sizeof(cname), "relay_seq:%s", d->route->to);
	return rc ? rc : qkm_store_counter_add(r->st, cname, 1);
}

static int xor_start(struct qkm_relay *r, struct dest *d, uint64_t now_ns);

/* Starts one relay toward d: makes the key (RNG or first hop's link key),
 * stores it PENDING with the link key it consumes, sends the first hop. */
static int relay_start(struct qkm_relay *r, struct dest *d, uint64_t now_ns)
{
	const struct qkm_node_route *rt = d->route;
	const char *nb = rt->path[1];
	size_t size = r->cfg->relay.batch_bytes;
	bool by_ref = !r->cfg->relay.rng;
	struct qkm_range *g = calloc(3 * (size_t)RELAY_MAX_RANGES, sizeof(*g));
	struct qkm_range *pad = NULL, *dref = NULL; /* g's second and third thirds */
	struct qkm_secret *lk = NULL, *key = NULL;
	struct qkm_buf pt, fb;
	struct qkm_keyfile kf;
	size_t ng = 0, n_pad = 0, n_dref = 0, start;
	uint8_t method = QKM_RM_OTP;
	int64_t seq = 0;
	char why[200] = "";
	int rc = QKM_ENOMEM;
	qkm_buf_init(&pt, QKM_KEYFILE_MAX_DATA + 65536, true);
	qkm_buf_init(&fb, QKM_FRAME_MAX, false);
	qkm_keyfile_init(&kf, QKM_KF_RELAYED);
	/* The key file's room at once: grown by doubling from 256 bytes, the
	 * secure buffer would be allocated, copied and wiped ten times. */
	if (!g || qkm_buf_reserve(&pt, size + RELAY_META_ROOM))
		goto out;
	pad = g + RELAY_MAX_RANGES;
	dref = pad + RELAY_MAX_RANGES;
	if (!r->ops.link_ready(nb, r->ops.arg)) {
		snprintf(why, sizeof(why), "hop %s-%s is down", r->cfg->id, nb);
		rc = QKM_ESTATE;
		goto out;
	}
	if (strcmp(r->cfg->relay.mode, "otp") != 0) {
		rc = xor_start(r, d, now_ns);
		goto out;
	}
	struct qkm_id batch;
	if ((rc = new_batch(r, d, &batch, &seq)))
		goto out;

	/* The relayed key file: Table 1 item 3, no hops yet. */
	struct qkm_kma_meta *m = &kf.m.relayed.kma_key_metadata;
	m->kma_key_id = batch;
	m->key_length = (uint32_t)size * 8;
	m->key_type = QKM_KT_ENC;
	snprintf(m->kma_id, sizeof(m->kma_id), "%s", r->cfg->id);
	snprintf(m->matching_kma_id, sizeof(m->matching_kma_id), "%s", rt->to);
	m->generation_time_stamp = now_ns;
	if (!(key = qkm_secret_new_raw(size)))
		goto out;
	/* Encoded length does not depend on the key bytes: size it with zeros
	 * first, so one read draws the key data (by_ref) and the hop's key. */
	memset(key->p, 0, size);
	kf.data = key;
	kf.m.relayed.kma_key_metadata.has_hash = true; /* its length, not its value */
	if ((rc = qkm_keyfile_encode_hashed(&kf, &pt)))
		goto out_kf;
	size_t pt_len = pt.len, sent = by_ref ? pt_len - size : pt_len;
	qkm_buf_reset(&pt);
	rc = draw_hop(r, nb, by_ref ? size : 0, sent, &method, &lk, g, &ng, why, sizeof(why));
	if (rc)
		goto out_kf;
	split_ranges(g, ng, by_ref ? size : 0, dref, &n_dref, pad, &n_pad);
	if (by_ref)
		memcpy(key->p, lk->p, size);
	else if ((rc = rng_fill(r, key->p, size))) {
		snprintf(why, sizeof(why), "RNG %s failed", r->cfg->relay.rng_device[0] ?
			 r->cfg->relay.rng_device : "getrandom");
		goto out_kf;
	}
	if ((rc = qkm_keyfile_set_hash(&kf)) || (rc = qkm_keyfile_encode_hashed(&kf, &pt)))
		goto out_kf;
	if (pt.len != pt_len) {
		rc = QKM_ESTATE;
		goto out_kf;
	}
	/* Durable before anything leaves: link key consumed, our copy PENDING. */
	char used[400], data[400] = "RNG";
	ranges_str(pad, n_pad, used, sizeof(used));
	if (by_ref)
		ranges_str(dref, n_dref, data, sizeof(data));
	if ((rc = txn_begin(r)))
		goto out_kf;
	rc = use_ranges(r, g, ng);
	if (!rc)
		rc = origin_put(r, d, &batch, key,
				method == QKM_RM_OTP ? QKM_BLOCK_ITS : QKM_BLOCK_COMPUTATIONAL, now_ns);
	if (!rc)
		record(r, "relay-sent", &batch, (uint32_t)(size / RELAY_UNIT), rt->to,
		       "%zu bytes toward %s via %s, key data from %s; hop %s>%s %s, link key %s",
		       size, rt->to, nb, data, r->cfg->id, nb, qkm_relay_method_name(method), used);
	rc = txn_end(r, rc);
	if (rc)
		goto out_kf;
	r->stats.started++;
	r->stats.link_bytes += ng ? lk->len - (by_ref ? size : 0) : 0;
	if ((rc = put_header(&fb, &start, QKM_MSG_RELAY, &batch, (uint64_t)seq, rt->path, rt->n, 1,
			     method, pad,
			     n_pad, dref, n_dref)) ||
	    (rc = seal(r, &fb, start + QKM_FRAME_HDR, method, lk->p + (by_ref ? size : 0), pt.p,
		       sent)) ||
	    (rc = qkm_frame_end(&fb, start)))
		goto out_kf;
	flight_add(d, &batch, (uint32_t)size, now_ns);
	d->last_seq = (uint64_t)seq;
	if (out(r, OUT_SEND, nb, fb.p, fb.len))
		log_warnx("relay to %s: hop %s down after the key was drawn; asking later",
			  rt->to, nb);
	d->why[0] = 0;
	why_update(d);
out_kf:
	kf.data = NULL;
out:
	/* A shortage here repeats at every pool scan while demand outruns
	 * the first hop's key rate: said at most once a minute. */
	if (rc && why[0] && (!d->said_ns || now_ns - d->said_ns >= RELAY_SAY_NS)) {
		log_warnx("relay to %s: %s (said at most once a minute)", rt->to, why);
		d->said_ns = now_ns;
	}
	if (rc && why[0])
		set_why(d, why);
	qkm_keyfile_fini(&kf);
	qkm_secret_free(key);
	qkm_secret_free(lk);
	qkm_buf_fini(&pt);
	qkm_buf_fini(&fb);
	free(g);
	return rc;
}

/* ---- hop (relay node and destination) ------------------------------------ */

/* Discards a relay that failed its checks (alarm: a check that only an
 * attack or a fault fails) or cannot go on: log, record, tell the origin.
 * verified: the frame's tag verified (or, for XOR_NEXT, its link key was
 * read), so the link key it names is the key its sender consumed for it:
 * it is consumed here too, in the record's commit, or the two ends of the
 * link differ. A frame that failed its tag names ranges nobody vouches
 * for: those are left alone. */
static void refuse(struct qkm_relay *r, const char *from, const struct hop_in *h, const char *why,
		   bool alarm, bool verified)
{
	r->stats.failed++;
	char hex[33];
	qkm_id_hex(&h->batch, hex);
	log_warnx("%srelay %s from %s to %s (hop from %s) discarded: %s", alarm ? "ALARM " : "",
		  hex, h->src, h->dst, from, why);
	if (!txn_begin(r)) {
		int rc = verified ? burn_in(r, from, h) : 0;
		record(r, "relay-refused", &h->batch, 0, from, "%s->%s: %s%s", h->src, h->dst,
		       alarm ? "ALARM " : "", why);
		if (txn_end(r, rc))
			log_warnx("relay: refusal not recorded");
	}
	char msg[300];
	snprintf(msg, sizeof(msg), "at %s: %s", r->cfg->id, why);
	if (strcmp(h->src, r->cfg->id) != 0 && send_ack(r, h->src, &h->batch, false, 0, msg))
		log_debug("relay: could not tell %s", h->src);
}

/* ---- holding a relay for next-hop link key ------------------------------- */

/* A relay node whose next hop is short of link key holds the frame, as it
 * came (ciphertext: nothing decrypted is kept), instead of discarding it.
 * Discarding would throw away the link key every earlier hop spent on it,
 * and the origin, which cannot know how fast the short hop refills, would
 * spend as much again on its next try. The origin hears that the relay
 * waits (RELAY_ACK OK=2, again every HOLD_TELL_NS, so it does not ask the
 * destination about it meanwhile) and starts no more relays that way until
 * it is settled. The node tries again as the hop refills, in arrival order
 * per neighbour: a later frame from the same neighbour names later link
 * key, and handling it first would burn the key the held one names. */
#define HOLD_TELL_NS 2000000000ull       /* the origin hears it waits this often */
_Static_assert(HOLD_TELL_NS < RELAY_ASK_NS, "the origin must hear before it asks");

/* How long a frame waits at most (relay.hold_s; 0: it never waits). */
static uint64_t hold_max_ns(const struct qkm_relay *r)
{
	return (uint64_t)r->cfg->relay.hold_s * 1000000000ull;
}

struct held {
	struct held *next;
	char from[QKM_NAME_MAX];             /* the neighbour it came from */
	char src[QKM_NAME_MAX];              /* its origin */
	struct qkm_id batch;
	char next_hop[QKM_NAME_MAX];         /* the short hop ("": not tried yet) */
	size_t need;                         /* link key it needs there */
	uint64_t since_ns, told_ns;
	bool kept;                           /* handled again, and waits on */
	char why[200];
	struct qkm_frame f;                  /* f.body is body[] */
	uint8_t body[];
};

static bool held_from(const struct qkm_relay *r, const char *from)
{
	for (const struct held *x = r->held; x; x = x->next)
		if (strcmp(x->from, from) == 0)
			return true;
	return false;
}

static void held_tell(struct qkm_relay *r, struct held *x, uint64_t now_ns)
{
	char msg[300];
	snprintf(msg, sizeof(msg), "held at %s: %s", r->cfg->id, x->why);
	x->told_ns = now_ns;
	if (strcmp(x->src, r->cfg->id) != 0 && send_ack(r, x->src, &x->batch, RELAY_ACK_HELD, 0, msg))
		log_debug("relay: could not tell %s its relay waits", x->src);
}

/* Keeps a copy of frame f from `from`, after those held already. */
static struct held *held_add(struct qkm_relay *r, const char *from, const struct qkm_frame *f,
			     const struct hop_in *h, uint64_t now_ns)
{
	size_t max = (size_t)r->cfg->relay.hold_mib << 20;
	if (r->held_bytes > max || f->body_len > max - r->held_bytes)
		return NULL;
	struct held *x = calloc(1, sizeof(*x) + f->body_len);
	if (!x)
		return NULL;
	snprintf(x->from, sizeof(x->from), "%s", from);
	snprintf(x->src, sizeof(x->src), "%s", h->src);
	x->batch = h->batch;
	x->since_ns = now_ns;
	x->f = *f;
	memcpy(x->body, f->body, f->body_len);
	x->f.body = x->body;
	struct held **pp = &r->held;
	while (*pp)
		pp = &(*pp)->next;
	*pp = x;
	r->held_bytes += f->body_len;
	r->stats.held++;
	return x;
}

/* A frame from `from` while others from it wait: it waits behind them. */
static int hold_behind(struct qkm_relay *r, const char *from, const struct qkm_frame *f,
		       const struct hop_in *h, uint64_t now_ns)
{
	struct held *x = held_add(r, from, f, h, now_ns);
	if (!x) {
		/* Not handled (its link key stays unused here until POOL_SYNC). */
		refuse(r, from, h, "too many relays waiting here for link key", false, false);
		return 0;
	}
	snprintf(x->why, sizeof(x->why), "behind a relay that waits for link key");
	held_tell(r, x, now_ns);
	return 0;
}

/* The next hop `next` is short of the `need` bytes of link key a verified
 * frame f needs (why says so): true if it waits, false to refuse it. */
static bool hold(struct qkm_relay *r, const char *from, const struct qkm_frame *f,
		 const struct hop_in *h, const char *next, size_t need, const char *why,
		 uint64_t now_ns)
{
	struct held *x = r->retrying;
	if (!hold_max_ns(r) || (x && (r->release || now_ns - x->since_ns >= hold_max_ns(r))))
		return false;
	if (!x) {
		if (!(x = held_add(r, from, f, h, now_ns)))
			return false;
		char hex[33];
		qkm_id_hex(&h->batch, hex);
		log_info("relay %s from %s to %s waits: %s; it goes on when the hop has the key "
			 "(at most %llu s)", hex, h->src, h->dst, why,
			 (unsigned long long)r->cfg->relay.hold_s);
	}
	x->kept = true;
	snprintf(x->next_hop, sizeof(x->next_hop), "%s", next);
	x->need = need;
	snprintf(x->why, sizeof(x->why), "%s", why);
	if (!x->told_ns || now_ns - x->told_ns >= HOLD_TELL_NS)
		held_tell(r, x, now_ns);
	return true;
}

static int on_xor_next(struct qkm_relay *r, const char *from, const struct qkm_frame *f,
		       uint64_t now_ns);

/* Handles held frames again, in order per neighbour (only those from
 * `only` if not NULL). release: none may wait longer (a frame that may
 * name later link key from that neighbour comes next). */
static void held_run(struct qkm_relay *r, const char *only, bool release, uint64_t now_ns)
{
	struct held **pp = &r->held;
	while (*pp) {
		struct held *x = *pp;
		bool behind = false;
		for (const struct held *y = r->held; y != x && !behind; y = y->next)
			behind = strcmp(y->from, x->from) == 0;
		struct qkm_pool_stats ps;
		bool wait = behind || (only && strcmp(x->from, only) != 0) ||
			    (!release && x->next_hop[0] && now_ns - x->since_ns < hold_max_ns(r) &&
			     !qkm_store_pool_stats(r->st, x->next_hop, &ps) && ps.enc_bytes < x->need);
		if (wait) {
			if (!release && now_ns - x->told_ns >= HOLD_TELL_NS)
				held_tell(r, x, now_ns);
			pp = &x->next;
			continue;
		}
		r->retrying = x;
		r->release = release;
		x->kept = false;
		int rc = x->f.type == QKM_MSG_RELAY ? qkm_relay_on_hop(r, x->from, &x->f, now_ns)
						    : on_xor_next(r, x->from, &x->f, now_ns);
		r->retrying = NULL;
		r->release = false;
		if (rc)
			log_warnx("relay: held frame from %s not handled: %s", x->from,
				  qkm_strerror(rc));
		if (x->kept && !rc) {
			pp = &x->next;
			continue;
		}
		*pp = x->next;
		r->held_bytes -= x->f.body_len;
		free(x);
	}
}

bool qkm_relay_holds(const struct qkm_relay *r, const char *from)
{
	return held_from(r, from);
}

void qkm_relay_release(struct qkm_relay *r, const char *from, uint64_t now_ns)
{
	if (held_from(r, from))
		held_run(r, from, true, now_ns);
}

static int seen_get(struct qkm_relay *r, const char *origin, int64_t *v)
{
	char cname[QKM_NAME_MAX + 16];
	snprintf(cname, sizeof(cname), "relay_seen:%s", origin);
	return qkm_store_counter_get(r->st, cname, v);
}

/* Raises the highest sequence seen from origin to seq (inside a transaction). */
static int seen_raise(struct qkm_relay *r, const char *origin, uint64_t seq)
{
	char cname[QKM_NAME_MAX + 16];
	snprintf(cname, sizeof(cname), "relay_seen:%s", origin);
	return qkm_store_counter_raise(r->st, cname, (int64_t)seq);
}

static uint64_t batch_seq(const struct qkm_id *b)
{
	uint64_t s = 0;
	for (int i = 0; i < 6; i++)
		s = s << 8 | b->b[6 + i];
	return s;
}

int qkm_relay_on_hop(struct qkm_relay *r, const char *from, const struct qkm_frame *f,
		     uint64_t now_ns)
{
	struct hop_in *h = calloc(1, sizeof(*h));
	struct qkm_range *og = NULL;
	struct qkm_secret *lk = NULL, *pt = NULL, *olk = NULL;
	struct qkm_buf pt2, fb;
	struct qkm_keyfile kf;
	const char *field = NULL;
	char why[240] = "";
	bool verified = false;
	int rc = QKM_ENOMEM;
	qkm_buf_init(&pt2, QKM_KEYFILE_MAX_DATA + 65536, true);
	qkm_buf_init(&fb, QKM_FRAME_MAX, false);
	qkm_keyfile_init(&kf, QKM_KF_RELAYED);
	if (!h)
		goto out;
	rc = QKM_EPEER;
	if (f->type != QKM_MSG_RELAY || f->req != 0 || (rc = parse_hop(f, h, HOP_RELAY)))
		goto out;
	if (strcmp(h->path[h->hop], r->cfg->id) != 0 || strcmp(h->path[h->hop - 1], from) != 0 ||
	    batch_seq(&h->batch) != h->seq || h->ct_len > QKM_KEYFILE_MAX_DATA + 65536) {
		rc = QKM_EPEER;
		goto out;
	}
	if (!r->retrying && held_from(r, from)) {
		rc = hold_behind(r, from, f, h, now_ns);
		goto out;
	}
	rc = 0;
	/* Our copy of the link key the sender used, and the key data it sent
	 * by reference; both from our pool with the sender, its direction. */
	if (h->pad_len != hop_key_len(h->method, h->ct_len)) {
		snprintf(why, sizeof(why), "link key length %zu does not fit the ciphertext",
			 h->pad_len);
		goto refuse;
	}
	if (!(lk = qkm_secret_new_raw(h->pad_len)) ||
	    !(pt = qkm_secret_new_raw(h->ct_len + h->data_len + 1)) ||
	    qkm_buf_reserve(&pt2, h->ct_len + h->data_len + RELAY_META_ROOM)) {
		rc = QKM_ENOMEM;
		goto out;
	}
	int x = read_ranges(r, from, h->pad, h->n_pad, lk->p);
	if (!x && h->n_data)
		x = read_ranges(r, from, h->data, h->n_data, pt->p + h->ct_len);
	if (x) {
		snprintf(why, sizeof(why), "link key named by the frame is not available here (%s): "
			 "replayed, reordered or tampered", x == QKM_EPERM ? "used or not ready"
									  : qkm_strerror(x));
		goto refuse;
	}
	if (unseal(r, f, h, lk->p, pt->p)) {
		snprintf(why, sizeof(why), "%s tag does not verify: tampered",
			 h->method == QKM_RM_OTP ? "Poly1305" : "AES-GCM");
		goto refuse;
	}
	verified = true;
	/* Authenticated by this hop's MAC: a relay node leaves the origin's
	 * hash (SHA-256 of the key data: 37 us for 64 KiB on the development
	 * VM) to the destination, which checks it end to end. */
	x = h->hop == h->n - 1 ? qkm_keyfile_decode(pt->p, h->ct_len + h->data_len, &kf, &field)
			       : qkm_keyfile_decode_hashed(pt->p, h->ct_len + h->data_len, &kf,
							   &field);
	struct qkm_relayed_meta *m = &kf.m.relayed;
	if (x || kf.kind != QKM_KF_RELAYED || !kf.data ||
	    !qkm_id_eq(&m->kma_key_metadata.kma_key_id, &h->batch) ||
	    strcmp(m->kma_key_metadata.kma_id, h->src) != 0 ||
	    strcmp(m->kma_key_metadata.matching_kma_id, h->dst) != 0 ||
	    m->n_hops != h->hop - 1 || kf.data->len % RELAY_UNIT ||
	    !m->kma_key_metadata.has_hash) {
		snprintf(why, sizeof(why), "relayed key file does not match its frame (%s%s%s)",
			 x ? qkm_strerror(x) : "metadata", field ? ": " : "", field ? field : "");
		goto refuse;
	}
	if (m->n_hops == QKM_KEYFILE_MAX_HOPS) {
		snprintf(why, sizeof(why), "too many hops");
		goto refuse;
	}
	/* R-REL-2: this hop's relay information. */
	struct qkm_relay_hop *hp = &m->hops[m->n_hops++];
	snprintf(hp->source_kma_id, sizeof(hp->source_kma_id), "%s", from);
	snprintf(hp->destination_kma_id, sizeof(hp->destination_kma_id), "%s", r->cfg->id);
	hp->key_relay_time_stamp = qkm_now_ns();
	hp->key_relay_encryption_method = h->method;
	char hops[900];
	hops_str(m, hops, sizeof(hops));
	uint32_t count = (uint32_t)(kf.data->len / RELAY_UNIT);

	if (h->hop == h->n - 1) {
		/* Destination: store it READY, acknowledge. */
		int64_t seen = 0;
		if ((rc = seen_get(r, h->src, &seen)))
			goto out;
		if ((int64_t)h->seq <= seen) {
			snprintf(why, sizeof(why), "sequence %llu not above %lld: stale or replayed",
				 (unsigned long long)h->seq, (long long)seen);
			goto refuse;
		}
		uint8_t level = QKM_BLOCK_ITS;
		for (uint32_t i = 0; i < m->n_hops; i++)
			if (m->hops[i].key_relay_encryption_method != QKM_RM_OTP)
				level = QKM_BLOCK_COMPUTATIONAL;
		struct qkm_block b;
		memset(&b, 0, sizeof(b));
		snprintf(b.peer, sizeof(b.peer), "%s", h->src);
		b.pool_kind = QKM_POOL_RELAY;
		b.batch_id = h->batch;
		b.count = count;
		b.unit_bytes = RELAY_UNIT;
		b.key_type = QKM_KT_DEC;
		b.state = QKM_BLOCK_READY;
		b.level = level;
		b.created_ns = now_ns;
		b.data = kf.data;
		if ((rc = txn_begin(r)))
			goto out;
		rc = burn_in(r, from, h);
		if (!rc)
			rc = seen_raise(r, h->src, h->seq);
		if (!rc)
			rc = qkm_store_block_put(r->st, &b);
		if (!rc)
			rc = qkm_store_counter_add(r->st, "relay_received_bytes",
						   (int64_t)kf.data->len);
		if (!rc)
			record(r, "relay-received", &h->batch, count, h->src,
			       "%zu bytes from %s, level %s; hops: %s", kf.data->len, h->src,
			       level == QKM_BLOCK_ITS ? "its" : "computational", hops);
		rc = txn_end(r, rc);
		if (rc == QKM_EEXIST) {
			snprintf(why, sizeof(why), "batch already stored: replayed");
			goto refuse;
		}
		if (rc)
			goto out;
		r->stats.received++;
		r->stats.received_bytes += kf.data->len;
		if (send_ack(r, h->src, &h->batch, true, level, NULL))
			log_debug("relay: acknowledgement to %s not sent; it will ask", h->src);
		(void)out(r, OUT_POOL, h->src, NULL, 0);
		goto out;
	}

	/* Relay node: re-encrypt for the next hop. */
	const char *next = h->path[h->hop + 1];
	if (!next_hop_ok(r, next, why, sizeof(why)))
		goto cannot;
	/* decode verified the hash: no need to compute it again */
	if ((rc = qkm_keyfile_encode_hashed(&kf, &pt2)))
		goto out;
	if (!(og = calloc(RELAY_MAX_RANGES, sizeof(*og)))) {
		rc = QKM_ENOMEM;
		goto out;
	}
	uint8_t method;
	size_t ng = 0, start;
	if ((rc = draw_hop(r, next, 0, pt2.len, &method, &olk, og, &ng, why, sizeof(why)))) {
		if (rc != QKM_ENOKEY)
			goto out;
		size_t need = hop_key_len(r->cfg->relay.aes_fallback ? QKM_RM_AES256GCM : QKM_RM_OTP,
					  pt2.len);
		if (!hold(r, from, f, h, next, need, why, now_ns))
			goto cannot;
		rc = 0;
		goto out;
	}
	char in[400], outr[400];
	ranges_str(h->pad, h->n_pad, in, sizeof(in));
	ranges_str(og, ng, outr, sizeof(outr));
	if ((rc = txn_begin(r)))
		goto out;
	rc = burn_in(r, from, h);
	if (!rc)
		rc = use_ranges(r, og, ng);
	if (!rc)
		record(r, "relay-forwarded", &h->batch, count, next,
		       "%s->%s: %s>%s %s link key %s, %s>%s %s link key %s", h->src, h->dst, from,
		       r->cfg->id, qkm_relay_method_name(h->method), in, r->cfg->id, next,
		       qkm_relay_method_name(method), outr);
	rc = txn_end(r, rc);
	if (rc)
		goto out;
	r->stats.forwarded++;
	r->stats.forwarded_bytes += kf.data->len;
	r->stats.link_bytes += olk->len;
	if ((rc = put_header(&fb, &start, QKM_MSG_RELAY, &h->batch, h->seq,
			     (const char (*)[QKM_NAME_MAX])h->path, h->n, h->hop + 1, method, og, ng,
			     NULL, 0)) ||
	    (rc = seal(r, &fb, start + QKM_FRAME_HDR, method, olk->p, pt2.p, pt2.len)) ||
	    (rc = qkm_frame_end(&fb, start)))
		goto out;
	if (out(r, OUT_SEND, next, fb.p, fb.len))
		log_warnx("relay %s->%s: hop to %s down after its key was drawn", h->src, h->dst,
			  next);
	goto out;
refuse:
	refuse(r, from, h, why, true, verified);
	rc = 0;
	goto out;
cannot:
	refuse(r, from, h, why, false, verified);
	rc = 0;
out:
	if (rc == QKM_EPEER)
		log_warnx("relay: malformed RELAY frame from %s", from);
	qkm_keyfile_fini(&kf);
	qkm_secret_free(lk);
	qkm_secret_free(pt);
	qkm_secret_free(olk);
	qkm_buf_fini(&pt2);
	qkm_buf_fini(&fb);
	free(og);
	free(h);
	return rc;
}

/* ---- clause 9 modes: XOR at the destination, central XOR (R-REL-7, R-REL-8) */

/* Route n0 = origin, n1, ..., nk = destination. The origin makes the key K
 * from the RNG and sends share 0, K ^ k(0,1), to the combiner; each relay
 * node ni sends share i, k(i-1,i) ^ k(i,i+1), to the combiner; the
 * XOR_NEXT frames only tell the next node which link key ranges were used.
 * The combiner is the destination (xor-at-destination), which XORs every
 * share with its own k(k-1,k), or the central node (central-xor), which
 * XORs the shares into K ^ k(k-1,k) and sends that to the destination.
 * Shares go straight to the combiner over a direct KMA link, never through
 * the relay nodes, so no node but the two ends ever holds K (and the
 * central node holds K ^ k(k-1,k), not K). */

#define XOR_MAX 64                       /* combinations in progress at a node... */
#define XOR_MAX_BYTES (64u << 20)        /* ...holding at most this much secure heap */
#define XOR_TIMEOUT_NS 30000000000ull
#define XOR_LAST (1u << 31)              /* the destination's own last link key */

struct xacc {
	struct xacc *next;
	struct hop_in h;                     /* header of the first piece */
	char combiner[QKM_NAME_MAX];
	uint32_t got, need;
	struct qkm_secret *acc;              /* XOR of what arrived */
	uint8_t digest[32];
	bool have_digest;
	uint64_t ts[QKM_MAX_PATH];           /* share i: when path[i] sent it */
	char last_from[QKM_NAME_MAX];
	uint64_t created_ns;
};

static void xacc_free(struct qkm_relay *r, struct xacc *x)
{
	for (struct xacc **pp = &r->xaccs; *pp; pp = &(*pp)->next)
		if (*pp == x) {
			*pp = x->next;
			r->n_xacc--;
			r->xacc_bytes -= x->acc ? x->acc->len : 0;
			break;
		}
	qkm_secret_free(x->acc);
	free(x);
}

/* The node that combines the shares of a relay along path to dst. */
static const char *combiner_of(const struct qkm_relay *r, const char *dst)
{
	return strcmp(r->cfg->relay.mode, "central-xor") == 0 ? r->cfg->relay.central : dst;
}

static int put_xor_header(struct qkm_buf *fb, size_t *start, uint16_t type, const struct hop_in *h,
			  uint32_t hop, const char *combiner, const struct qkm_range *g, size_t ng)
{
	int rc = put_header(fb, start, type, &h->batch, h->seq,
			    (const char (*)[QKM_NAME_MAX])h->path, h->n, hop, QKM_RM_OTP, g, ng,
			    NULL, 0);
	return rc ? rc : qkm_put_str(fb, QKM_T_PEER, combiner);
}

/* Sends a frame to node: over Kx to a neighbour, else over a direct KMA
 * link (never through other nodes). */
static int send_near(struct qkm_relay *r, const char *node, const uint8_t *p, size_t len)
{
	return out(r, OUT_NEAR, node, p, len);
}

static int xor_piece(struct qkm_relay *r, const char *from, const struct hop_in *h,
		     const char *combiner, uint32_t bit, const uint8_t *bytes, size_t len,
		     const uint8_t *digest, const uint64_t *times, uint32_t n_times,
		     uint64_t now_ns);

/* Sends share `index` (bytes) of h's relay to node `to` (the combiner, or
 * for the combined share the destination), or takes it here if that is
 * this node. */
static int send_share(struct qkm_relay *r, const struct hop_in *h, const char *to,
		      const char *combiner, uint32_t index, const uint8_t *bytes, size_t len,
		      const uint8_t *digest, const uint64_t *times, uint32_t n_times,
		      uint64_t now_ns)
{
	if (strcmp(to, r->cfg->id) == 0)
		return xor_piece(r, r->cfg->id, h, combiner, 1u << index, bytes, len, digest, times,
				 n_times, now_ns);
	struct qkm_buf fb;
	size_t start;
	qkm_buf_init(&fb, QKM_FRAME_MAX, false);
	int rc = put_xor_header(&fb, &start, QKM_MSG_XOR_SHARE, h, index, combiner, NULL, 0);
	for (uint32_t i = 0; !rc && i < n_times; i++)
		rc = qkm_put_u64(&fb, QKM_T_TIME, times[i]);
	if (!rc && digest)
		rc = qkm_put_tlv(&fb, QKM_T_DIGEST, digest, 32);
	if (!rc)
		rc = qkm_put_tlv(&fb, QKM_T_CT, bytes, len);
	if (!rc)
		rc = qkm_frame_end(&fb, start);
	if (!rc && send_near(r, to, fb.p, fb.len))
		rc = QKM_ESTATE;
	qkm_buf_fini(&fb);
	return rc;
}

/* The combination is complete: at the central node, pass K ^ k(k-1,k) on;
 * at the destination, check K against the origin's digest and store it. */
static void xor_done(struct qkm_relay *r, struct xacc *x, uint64_t now_ns)
{
	struct hop_in *h = &x->h;
	uint32_t k = h->n - 1;
	if (strcmp(h->dst, r->cfg->id) != 0) {
		if (send_share(r, h, h->dst, x->combiner, k, x->acc->p, x->acc->len,
			       x->have_digest ? x->digest : NULL, x->ts, k, now_ns))
			log_warnx("relay %s->%s: combined share not sent", h->src, h->dst);
		else if (!txn_begin(r)) {
			record(r, "relay-combined", &h->batch, 0, h->dst, "%s->%s: %u shares combined, "
			       "sent to %s", h->src, h->dst, k, h->dst);
			if (txn_end(r, 0))
				log_warnx("relay: record not stored");
		}
		xacc_free(r, x);
		return;
	}
	uint8_t dg[32];
	unsigned int dl = 32;
	char why[200] = "", hops[900] = "";
	size_t len = 0;
	int64_t seen = 0;
	int rc = 0;
	if (!x->have_digest || !EVP_Digest(x->acc->p, x->acc->len, dg, &dl, EVP_sha256(), NULL) ||
	    !qkm_ct_equal(dg, x->digest, 32)) {
		snprintf(why, sizeof(why), "the XOR of the shares does not match the origin's "
			 "digest: a share was tampered with or lost");
		goto refuse;
	}
	if ((rc = seen_get(r, h->src, &seen)))
		goto fail;
	if ((int64_t)h->seq <= seen) {
		snprintf(why, sizeof(why), "sequence %llu not above %lld: stale or replayed",
			 (unsigned long long)h->seq, (long long)seen);
		goto refuse;
	}
	for (uint32_t i = 1; i <= k && len < sizeof(hops); i++) {
		char ts[32];
		qkm_time_str(x->ts[i - 1], ts);
		len += (size_t)snprintf(hops + len, sizeof(hops) - len, "%s%s>%s otp %s",
					i > 1 ? "; " : "", h->path[i - 1], h->path[i], ts);
	}
	struct qkm_block b;
	memset(&b, 0, sizeof(b));
	snprintf(b.peer, sizeof(b.peer), "%s", h->src);
	b.pool_kind = QKM_POOL_RELAY;
	b.batch_id = h->batch;
	b.count = (uint32_t)(x->acc->len / RELAY_UNIT);
	b.unit_bytes = RELAY_UNIT;
	b.key_type = QKM_KT_DEC;
	b.state = QKM_BLOCK_READY;
	b.level = QKM_BLOCK_ITS;
	b.created_ns = now_ns;
	b.data = x->acc;
	if ((rc = txn_begin(r)))
		goto fail;
	rc = burn_in(r, x->last_from, h);
	if (!rc)
		rc = seen_raise(r, h->src, h->seq);
	if (!rc)
		rc = qkm_store_block_put(r->st, &b);
	if (!rc)
		rc = qkm_store_counter_add(r->st, "relay_received_bytes", (int64_t)x->acc->len);
	if (!rc)
		record(r, "relay-received", &h->batch, b.count, h->src,
		       "%zu bytes from %s, level its, %s via %s; hops: %s", x->acc->len, h->src,
		       r->cfg->relay.mode, x->combiner, hops);
	rc = txn_end(r, rc);
	if (rc == QKM_EEXIST) {
		snprintf(why, sizeof(why), "batch already stored: replayed");
		goto refuse;
	}
	if (rc)
		goto fail;
	r->stats.received++;
	r->stats.received_bytes += x->acc->len;
	if (send_ack(r, h->src, &h->batch, true, QKM_BLOCK_ITS, NULL))
		log_debug("relay: acknowledgement to %s not sent; it will ask", h->src);
	(void)out(r, OUT_POOL, h->src, NULL, 0);
	xacc_free(r, x);
	return;
refuse:
	refuse(r, x->last_from, h, why, true, true);
	xacc_free(r, x);
	return;
fail:
	log_warnx("relay %s->%s: not stored: %s", h->src, h->dst, qkm_strerror(rc));
	xacc_free(r, x);
}

/* One piece of a combination: share i (bit 1 << i) or the destination's
 * own last link key (XOR_LAST, from neighbour `from`, ranges in h). */
static int xor_piece(struct qkm_relay *r, const char *from, const struct hop_in *h,
		     const char *combiner, uint32_t bit, const uint8_t *bytes, size_t len,
		     const uint8_t *digest, const uint64_t *times, uint32_t n_times,
		     uint64_t now_ns)
{
	struct xacc *x = r->xaccs;
	uint32_t k = h->n - 1;
	while (x && !qkm_id_eq(&x->h.batch, &h->batch))
		x = x->next;
	if (!x) {
		if (r->n_xacc >= XOR_MAX || r->xacc_bytes + len > XOR_MAX_BYTES) {
			log_warnx("relay %s->%s: too many combinations in progress; share dropped",
				  h->src, h->dst);
			return 0;
		}
		if (!(x = calloc(1, sizeof(*x))) || !(x->acc = qkm_secret_new(len))) {
			free(x);
			return QKM_ENOMEM;
		}
		x->h = *h;
		x->h.n_pad = 0;
		snprintf(x->combiner, sizeof(x->combiner), "%s", combiner);
		bool here = strcmp(h->dst, r->cfg->id) == 0;
		uint32_t shares = strcmp(combiner, h->dst) == 0 ? (1u << k) - 1 : 1u << k;
		x->need = here ? shares | XOR_LAST : (1u << k) - 1;
		x->created_ns = now_ns;
		x->next = r->xaccs;
		r->xaccs = x;
		r->n_xacc++;
		r->xacc_bytes += len;
	}
	if (x->h.seq != h->seq || strcmp(x->h.src, h->src) || strcmp(x->h.dst, h->dst) ||
	    x->h.n != h->n || strcmp(x->combiner, combiner) || x->acc->len != len ||
	    !(x->need & bit) || (x->got & bit)) {
		r->stats.failed++;
		log_warnx("ALARM relay %s->%s: share from %s does not fit (duplicate, wrong size or "
			  "route); dropped", h->src, h->dst, from);
		return 0;
	}
	qkm_xor(x->acc->p, x->acc->p, bytes, len);
	x->got |= bit;
	if (digest) {
		memcpy(x->digest, digest, 32);
		x->have_digest = true;
	}
	for (uint32_t i = 0; i < n_times && i < QKM_MAX_PATH; i++)
		if (times[i])
			x->ts[bit == (1u << k) ? i : (uint32_t)__builtin_ctz(bit)] = times[i];
	if (bit == XOR_LAST) {
		memcpy(x->h.pad, h->pad, h->n_pad * sizeof(h->pad[0]));
		x->h.n_pad = h->n_pad;
		snprintf(x->last_from, sizeof(x->last_from), "%s", from);
	}
	if (x->got == x->need)
		xor_done(r, x, now_ns);
	return 0;
}

/* Origin of a relay in a clause 9 mode. */
static int xor_start(struct qkm_relay *r, struct dest *d, uint64_t now_ns)
{
	const struct qkm_node_route *rt = d->route;
	const char *nb = rt->path[1], *comb = combiner_of(r, rt->to);
	size_t size = r->cfg->relay.batch_bytes, ng = 0, start;
	struct hop_in *h = calloc(1, sizeof(*h));
	struct qkm_secret *key = qkm_secret_new_raw(size), *lk = qkm_secret_new_raw(size);
	struct qkm_buf fb;
	uint8_t dg[32];
	unsigned int dl = 32;
	int64_t seq = 0;
	int rc = QKM_ENOMEM;
	qkm_buf_init(&fb, QKM_FRAME_MAX, false);
	if (!h || !key || !lk)
		goto out;
	if ((rc = new_batch(r, d, &h->batch, &seq)))
		goto out;
	h->seq = (uint64_t)seq;
	snprintf(h->src, sizeof(h->src), "%s", r->cfg->id);
	snprintf(h->dst, sizeof(h->dst), "%s", rt->to);
	h->n = rt->n;
	memcpy(h->path, rt->path, sizeof(h->path));
	rc = draw(r, nb, size, h->pad, &ng, lk->p);
	if (rc == QKM_ENOKEY) {
		struct qkm_pool_stats ps;
		if (qkm_store_pool_stats(r->st, nb, &ps))
			memset(&ps, 0, sizeof(ps));
		char why[200];
		snprintf(why, sizeof(why), "hop %s-%s is out of link key: %zu bytes needed, "
			 "%llu available (relay mode %s)", r->cfg->id, nb, size,
			 (unsigned long long)ps.enc_bytes, r->cfg->relay.mode);
		set_why(d, why);
	}
	if (rc)
		goto out;
	h->n_pad = ng;
	if ((rc = rng_fill(r, key->p, size)))
		goto out;
	if (!EVP_Digest(key->p, size, dg, &dl, EVP_sha256(), NULL)) {
		rc = QKM_ECRYPTO;
		goto out;
	}
	char used[400];
	ranges_str(h->pad, ng, used, sizeof(used));
	if ((rc = txn_begin(r)))
		goto out;
	rc = use_ranges(r, h->pad, ng);
	if (!rc)
		rc = origin_put(r, d, &h->batch, key, QKM_BLOCK_ITS, now_ns);
	if (!rc)
		record(r, "relay-sent", &h->batch, (uint32_t)(size / RELAY_UNIT), rt->to,
		       "%zu bytes (RNG) toward %s, %s via %s; share 0 with link key %s>%s %s",
		       size, rt->to, r->cfg->relay.mode, comb, r->cfg->id, nb, used);
	rc = txn_end(r, rc);
	if (rc)
		goto out;
	r->stats.started++;
	r->stats.link_bytes += size;
	flight_add(d, &h->batch, (uint32_t)size, now_ns);
	d->last_seq = h->seq;
	/* Share 0 = K ^ k(0,1), with the digest of K; then XOR_NEXT. */
	qkm_xor(key->p, key->p, lk->p, size);
	uint64_t t = qkm_now_ns();
	if (send_share(r, h, comb, comb, 0, key->p, size, dg, &t, 1, now_ns))
		log_warnx("relay to %s: share 0 not sent to %s; asking later", rt->to, comb);
	if (!(rc = put_xor_header(&fb, &start, QKM_MSG_XOR_NEXT, h, 1, comb, h->pad, ng))) {
		rc = qkm_frame_end(&fb, start);
		if (!rc && out(r, OUT_SEND, nb, fb.p, fb.len))
			log_warnx("relay to %s: hop %s down after the key was drawn", rt->to, nb);
	}
	rc = 0;
	d->why[0] = 0;
	why_update(d);
out:
	qkm_secret_free(key);
	qkm_secret_free(lk);
	qkm_buf_fini(&fb);
	free(h);
	return rc;
}

/* XOR_NEXT from neighbour `from`: our copy of the link key it used; a
 * relay node adds its share, the destination its last piece. */
static int on_xor_next(struct qkm_relay *r, const char *from, const struct qkm_frame *f,
		       uint64_t now_ns)
{
	struct hop_in *h = calloc(1, sizeof(*h));
	struct qkm_secret *kin = NULL, *kout = NULL;
	struct qkm_range *og = NULL;
	struct qkm_buf fb;
	char comb[QKM_NAME_MAX], why[240] = "";
	size_t ng = 0, start;
	int rc = QKM_ENOMEM;
	qkm_buf_init(&fb, QKM_FRAME_MAX, false);
	if (!h)
		goto out;
	rc = QKM_EPEER;
	if (f->req || parse_hop(f, h, HOP_XOR_NEXT) ||
	    qkm_tlv_str(f->body, f->body_len, QKM_T_PEER, comb, sizeof(comb), true) ||
	    strcmp(h->path[h->hop], r->cfg->id) || strcmp(h->path[h->hop - 1], from) ||
	    batch_seq(&h->batch) != h->seq || !h->pad_len || h->pad_len % RELAY_UNIT ||
	    h->pad_len > QKM_KEYFILE_MAX_DATA)
		goto out;
	if (!r->retrying && held_from(r, from)) {
		rc = hold_behind(r, from, f, h, now_ns);
		goto out;
	}
	rc = QKM_ENOMEM;
	if (!(kin = qkm_secret_new_raw(h->pad_len)))
		goto out;
	int x = read_ranges(r, from, h->pad, h->n_pad, kin->p);
	if (x) {
		snprintf(why, sizeof(why), "link key named by the frame is not available here (%s): "
			 "replayed, reordered or tampered", x == QKM_EPERM ? "used or not ready"
									  : qkm_strerror(x));
		refuse(r, from, h, why, true, false);
		rc = 0;
		goto out;
	}
	if (h->hop == h->n - 1) {
		rc = xor_piece(r, from, h, comb, XOR_LAST, kin->p, kin->len, NULL, NULL, 0, now_ns);
		goto out;
	}
	/* Relay node: share = k(in) ^ k(out); k(out)'s ranges go on. */
	const char *next = h->path[h->hop + 1];
	if (!next_hop_ok(r, next, why, sizeof(why))) {
		refuse(r, from, h, why, false, true);
		rc = 0;
		goto out;
	}
	rc = QKM_ENOMEM;
	if (!(kout = qkm_secret_new_raw(h->pad_len)) ||
	    !(og = calloc(RELAY_MAX_RANGES, sizeof(*og))))
		goto out;
	rc = draw(r, next, h->pad_len, og, &ng, kout->p);
	if (rc == QKM_ENOKEY) {
		struct qkm_pool_stats ps;
		if (qkm_store_pool_stats(r->st, next, &ps))
			memset(&ps, 0, sizeof(ps));
		snprintf(why, sizeof(why), "hop %s-%s is out of link key: %zu bytes needed, %llu "
			 "available (relay mode %s)", r->cfg->id, next, h->pad_len,
			 (unsigned long long)ps.enc_bytes, r->cfg->relay.mode);
		if (!hold(r, from, f, h, next, h->pad_len, why, now_ns))
			refuse(r, from, h, why, false, true);
		rc = 0;
		goto out;
	}
	if (rc)
		goto out;
	char in[400], outr[400];
	ranges_str(h->pad, h->n_pad, in, sizeof(in));
	ranges_str(og, ng, outr, sizeof(outr));
	if ((rc = txn_begin(r)))
		goto out;
	rc = burn_in(r, from, h);
	if (!rc)
		rc = use_ranges(r, og, ng);
	if (!rc)
		record(r, "relay-xor", &h->batch, 0, comb, "%s->%s: share %u = link key %s>%s %s "
		       "XOR %s>%s %s, sent to %s", h->src, h->dst, h->hop, from, r->cfg->id, in,
		       r->cfg->id, next, outr, comb);
	rc = txn_end(r, rc);
	if (rc)
		goto out;
	r->stats.forwarded++;
	r->stats.forwarded_bytes += h->pad_len;
	r->stats.link_bytes += h->pad_len;
	qkm_xor(kin->p, kin->p, kout->p, h->pad_len);
	uint64_t t = qkm_now_ns();
	if (send_share(r, h, comb, comb, h->hop, kin->p, h->pad_len, NULL, &t, 1, now_ns))
		log_warnx("relay %s->%s: share %u not sent to %s", h->src, h->dst, h->hop, comb);
	struct hop_in *nh = h; /* the same relay, next hop, our ranges */
	if (!(rc = put_xor_header(&fb, &start, QKM_MSG_XOR_NEXT, nh, h->hop + 1, comb, og, ng))) {
		rc = qkm_frame_end(&fb, start);
		if (!rc && out(r, OUT_SEND, next, fb.p, fb.len))
			log_warnx("relay %s->%s: hop to %s down", h->src, h->dst, next);
	}
	rc = 0;
out:
	if (rc == QKM_EPEER)
		log_warnx("relay: malformed XOR_NEXT frame from %s", from);
	qkm_secret_free(kin);
	qkm_secret_free(kout);
	qkm_buf_fini(&fb);
	free(og);
	free(h);
	return rc;
}

/* XOR_SHARE from `from` (a direct KMA link or a neighbour). */
static int on_xor_share(struct qkm_relay *r, const char *from, const struct qkm_frame *f,
			uint64_t now_ns)
{
	struct hop_in *h = calloc(1, sizeof(*h));
	char comb[QKM_NAME_MAX];
	const uint8_t *dg = NULL;
	uint32_t dgl = 0, vl, n_times = 0;
	uint64_t times[QKM_MAX_PATH] = {0};
	size_t off = 0;
	uint16_t tag;
	const uint8_t *v;
	int rc = QKM_EPEER;
	if (!h)
		return QKM_ENOMEM;
	if (f->req || parse_hop(f, h, HOP_XOR_SHARE) ||
	    qkm_tlv_str(f->body, f->body_len, QKM_T_PEER, comb, sizeof(comb), true) ||
	    batch_seq(&h->batch) != h->seq || !h->ct_len || h->ct_len % RELAY_UNIT ||
	    h->ct_len > QKM_KEYFILE_MAX_DATA)
		goto out;
	/* Share i < k comes from path[i] to the combiner (us); the combined
	 * share (i = k) from the combiner (the central node) to the destination (us). */
	uint32_t k = h->n - 1;
	if (h->hop < k ? strcmp(from, h->path[h->hop]) || strcmp(comb, r->cfg->id)
		       : strcmp(from, comb) || strcmp(h->dst, r->cfg->id) || !strcmp(comb, h->dst))
		goto out;
	int drc = qkm_tlv_bytes(f->body, f->body_len, QKM_T_DIGEST, &dg, &dgl);
	if (drc == QKM_ENOTFOUND)
		dg = NULL;
	else if (drc || dgl != 32)
		goto out;
	while (qkm_tlv_next(f->body, f->body_len, &off, &tag, &v, &vl) == 1)
		if (tag == QKM_T_TIME) {
			if (vl != 8 || n_times == QKM_MAX_PATH)
				goto out;
			for (int i = 0; i < 8; i++)
				times[n_times] = times[n_times] << 8 | v[i];
			n_times++;
		}
	rc = xor_piece(r, from, h, comb, 1u << h->hop, h->ct, h->ct_len, dg, times, n_times,
		       now_ns);
out:
	if (rc == QKM_EPEER)
		log_warnx("relay: malformed or misdirected XOR_SHARE from %s", from);
	free(h);
	return rc;
}

/* ---- origin: answers ------------------------------------------------------- */

/* The destination has (ok) or has not the relay batch: make our copy
 * usable, or delete it. */
static void fill(struct qkm_relay *r, struct dest *d, uint64_t now_ns);

/* A relay toward d waits on the way for link key (hold()): the route is
 * as fast as that hop refills, and more relays would only wait too. */
static bool held_on_way(const struct dest *d)
{
	for (const struct flight *fl = d->flights; fl; fl = fl->next)
		if (fl->held)
			return true;
	return false;
}

static void backoff(struct dest *d, uint64_t now_ns)
{
	/* Relays in flight fail together (a hop down, a node restarted):
	 * one failure episode doubles the pause once, not once per relay. */
	if (now_ns < d->retry_ns)
		return;
	d->backoff_ns = d->backoff_ns ? 2 * d->backoff_ns : RELAY_RETRY_NS;
	if (d->backoff_ns > RELAY_RETRY_MAX_NS)
		d->backoff_ns = RELAY_RETRY_MAX_NS;
	d->retry_ns = now_ns + d->backoff_ns;
}

static void settle(struct qkm_relay *r, struct dest *d, const struct qkm_id *batch, bool ok,
		   uint8_t level, const char *msg, uint64_t now_ns)
{
	enum qkm_block_state state = 0;
	uint64_t bytes = 0;
	int rc = qkm_store_batch_info(r->st, batch, &state, &bytes);
	flight_drop(d, batch);
	if (rc || state != QKM_BLOCK_PENDING)
		return; /* settled already (an answer and a query crossed) */
	if ((rc = txn_begin(r)))
		goto fail;
	if (ok) {
		rc = qkm_store_batch_set_state(r->st, batch, QKM_BLOCK_READY);
		if (!rc && level == QKM_BLOCK_COMPUTATIONAL)
			rc = qkm_store_batch_set_level(r->st, batch, QKM_BLOCK_COMPUTATIONAL);
		if (!rc)
			rc = qkm_store_counter_add(r->st, "relayed_bytes", (int64_t)bytes);
		if (!rc)
			record(r, "relay-confirmed", batch, (uint32_t)(bytes / RELAY_UNIT),
			       d->route->to, "%llu bytes stored at %s, level %s",
			       (unsigned long long)bytes, d->route->to,
			       level == QKM_BLOCK_COMPUTATIONAL ? "computational" : "its");
	} else {
		rc = qkm_store_batch_delete(r->st, batch);
		if (!rc)
			record(r, "relay-aborted", batch, (uint32_t)(bytes / RELAY_UNIT),
			       d->route->to, "%s", msg);
	}
	rc = txn_end(r, rc);
	if (rc)
		goto fail;
	if (ok) {
		r->stats.confirmed++;
		r->stats.relayed_bytes += bytes;
		/* A relay started after the last failure went through: the
		 * back-off is over (demand waits it out, qkm_relay_want) and so
		 * are the reasons. One started before it (relays in flight
		 * finish in any order) says nothing about it. */
		if (batch_seq(batch) > d->fail_seq) {
			d->backoff_ns = d->retry_ns = 0;
			d->why[0] = d->refused[0] = 0;
			why_update(d);
		}
		/* A confirmed relay makes room in the window: the next one now,
		 * not at the next pool scan. */
		fill(r, d, now_ns);
		(void)out(r, OUT_POOL, d->route->to, NULL, 0);
	} else {
		r->stats.failed++;
		backoff(d, now_ns);
		log_warnx("relay to %s failed: %s", d->route->to, msg);
		set_why(d, msg);
		if (batch_seq(batch) > d->fail_seq)
			d->fail_seq = batch_seq(batch);
	}
	return;
fail:
	log_warnx("relay to %s: outcome not stored (%s); asking again later", d->route->to,
		  qkm_strerror(rc));
}

static int on_ack(struct qkm_relay *r, const char *origin, const struct qkm_frame *f,
		  uint64_t now_ns)
{
	struct qkm_id batch;
	uint8_t ok = 0, level = QKM_BLOCK_ITS;
	char msg[300] = "";
	if (qkm_tlv_id(f->body, f->body_len, QKM_T_BATCH, &batch) ||
	    qkm_tlv_u8(f->body, f->body_len, QKM_T_OK, &ok) || ok > RELAY_ACK_HELD)
		return QKM_EPEER;
	if (ok == 1 && (qkm_tlv_u8(f->body, f->body_len, QKM_T_LEVEL, &level) ||
			(level != QKM_BLOCK_ITS && level != QKM_BLOCK_COMPUTATIONAL)))
		return QKM_EPEER;
	if (qkm_tlv_str(f->body, f->body_len, QKM_T_MESSAGE, msg, sizeof(msg), false) || !msg[0])
		snprintf(msg, sizeof(msg), "%s by %s", ok == RELAY_ACK_HELD ? "held" : "refused",
			 origin);
	if (ok == RELAY_ACK_HELD) {
		/* It waits on the way for link key: not lost, so no question
		 * to the destination yet, and no more relays that way (fill,
		 * qkm_relay_want) until it is settled. The reason is shown, and
		 * goes with the next confirmation. */
		for (size_t i = 0; i < r->n_dests; i++)
			for (struct flight *fl = r->dests[i].flights; fl; fl = fl->next)
				if (qkm_id_eq(&fl->batch, &batch)) {
					struct dest *d = &r->dests[i];
					fl->held = true;
					fl->sent_ns = now_ns;
					snprintf(d->why, sizeof(d->why), "%s", msg);
					why_update(d);
					return 0;
				}
		return 0;
	}
	if (ok) {
		/* The destination stored it: ours becomes usable. */
		struct dest *d = dest_find(r, origin);
		if (d)
			settle(r, d, &batch, true, level, NULL, now_ns);
		return 0;
	}
	/* A refusal, from the destination or a node on the way, does not
	 * prove the key will never be stored there (a replayed or tampered
	 * copy may be refused while the genuine frame goes through): only
	 * the destination's answer to a query, which also stops it from
	 * storing the batch later, settles it. Ask at once. */
	for (size_t i = 0; i < r->n_dests; i++)
		for (struct flight *fl = r->dests[i].flights; fl; fl = fl->next)
			if (qkm_id_eq(&fl->batch, &batch)) {
				struct dest *d = &r->dests[i];
				if (strcmp(msg, d->refused) != 0)
					log_warnx("relay to %s refused: %s", d->route->to, msg);
				snprintf(d->refused, sizeof(d->refused), "%s", msg);
				snprintf(fl->why, sizeof(fl->why), "%s", msg);
				fl->held = false;
				set_why(d, msg);
				if (batch_seq(&batch) > d->fail_seq)
					d->fail_seq = batch_seq(&batch);
				fl->sent_ns = fl->asked_ns = 0;
				return 0;
			}
	return 0;
}

/* Destination: the origin asks about batches it holds PENDING. */
static int on_query(struct qkm_relay *r, const char *origin, const struct qkm_frame *f)
{
	size_t off = 0, start;
	uint16_t tag;
	const uint8_t *v;
	uint32_t vl;
	uint64_t top = 0;
	struct qkm_buf b;
	int rc;
	qkm_buf_init(&b, 1u << 20, false);
	/* First make sure none of them can still be stored here. */
	while (qkm_tlv_next(f->body, f->body_len, &off, &tag, &v, &vl) == 1)
		if (tag == QKM_T_BATCH) {
			struct qkm_id id;
			if (vl != QKM_ID_LEN) {
				qkm_buf_fini(&b);
				return QKM_EPEER;
			}
			memcpy(id.b, v, QKM_ID_LEN);
			if (batch_seq(&id) > top)
				top = batch_seq(&id);
		}
	if (!(rc = txn_begin(r))) {
		rc = seen_raise(r, origin, top);
		rc = txn_end(r, rc);
	}
	if (rc) {
		qkm_buf_fini(&b);
		return rc;
	}
	rc = qkm_frame_begin(&b, QKM_MSG_RELAY_STATE, f->req, &start);
	off = 0;
	while (!rc && qkm_tlv_next(f->body, f->body_len, &off, &tag, &v, &vl) == 1) {
		if (tag != QKM_T_BATCH)
			continue;
		struct qkm_id id;
		enum qkm_block_state st = 0;
		size_t e;
		memcpy(id.b, v, QKM_ID_LEN);
		/* A batch this store cannot read now gets no answer, never "not
		 * held": on that answer the origin deletes its copy, and the key
		 * may be here (R-REL-1). The origin asks again later. */
		if (qkm_store_batch_state(r->st, &id, &st))
			continue;
		if (!(rc = qkm_put_open(&b, QKM_T_ENTRY, &e)) && !(rc = qkm_put_id(&b, QKM_T_BATCH, &id)) &&
		    !(rc = qkm_put_u8(&b, QKM_T_STATE, (uint8_t)st)))
			rc = qkm_put_close(&b, e);
	}
	if (!rc)
		rc = qkm_frame_end(&b, start);
	if (!rc)
		rc = out(r, OUT_TO, origin, b.p, b.len) ? QKM_EIO : 0;
	qkm_buf_fini(&b);
	return rc == QKM_EIO ? 0 : rc;
}

/* Origin: the destination's answer to a query. */
static int on_state(struct qkm_relay *r, const char *origin, const struct qkm_frame *f,
		    uint64_t now_ns)
{
	struct dest *d = dest_find(r, origin);
	size_t off = 0;
	uint16_t tag;
	const uint8_t *v;
	uint32_t vl;
	if (!d)
		return QKM_EPEER;
	while (qkm_tlv_next(f->body, f->body_len, &off, &tag, &v, &vl) == 1) {
		struct qkm_id id;
		uint8_t st;
		if (tag != QKM_T_ENTRY)
			continue;
		if (qkm_tlv_check(v, vl) || qkm_tlv_id(v, vl, QKM_T_BATCH, &id) ||
		    qkm_tlv_u8(v, vl, QKM_T_STATE, &st))
			return QKM_EPEER;
		/* A READY copy there: its level is in our records only if the
		 * acknowledgement came; without it, count the batch as the
		 * weaker level when the fallback is allowed. */
		uint8_t level = r->cfg->relay.aes_fallback ? QKM_BLOCK_COMPUTATIONAL : QKM_BLOCK_ITS;
		/* Not held there: refused on the way (that node said why), or
		 * lost. d->why is about relays in general, maybe a later one. */
		char why[200] = "lost on the way (the destination never stored it)";
		for (const struct flight *fl = d->flights; fl; fl = fl->next)
			if (qkm_id_eq(&fl->batch, &id) && fl->why[0])
				snprintf(why, sizeof(why), "%s", fl->why);
		settle(r, d, &id, st != 0, level, why, now_ns);
	}
	return 0;
}

int qkm_relay_on_frame(struct qkm_relay *r, const char *origin, const struct qkm_frame *f,
		       uint64_t now_ns)
{
	switch (f->type) {
	case QKM_MSG_RELAY_ACK:
		return on_ack(r, origin, f, now_ns);
	case QKM_MSG_RELAY_QUERY:
		return on_query(r, origin, f);
	case QKM_MSG_RELAY_STATE:
		return on_state(r, origin, f, now_ns);
	case QKM_MSG_XOR_NEXT:
		return on_xor_next(r, origin, f, now_ns);
	case QKM_MSG_XOR_SHARE:
		return on_xor_share(r, origin, f, now_ns);
	default:
		return QKM_EPEER;
	}
}

/* ---- timer ------------------------------------------------------------- */

static void ask(struct qkm_relay *r, struct dest *d, uint64_t now_ns)
{
	struct qkm_buf b;
	size_t start, n = 0;
	qkm_buf_init(&b, 1u << 20, false);
	int rc = qkm_frame_begin(&b, QKM_MSG_RELAY_QUERY, 0, &start);
	for (struct flight *f = d->flights; !rc && f; f = f->next)
		if (now_ns - f->sent_ns >= RELAY_ASK_NS && now_ns - f->asked_ns >= RELAY_ASK_NS) {
			f->asked_ns = now_ns;
			rc = qkm_put_id(&b, QKM_T_BATCH, &f->batch);
			n++;
		}
	if (!rc && n && !(rc = qkm_frame_end(&b, start)))
		(void)out(r, OUT_TO, d->route->to, b.p, b.len);
	qkm_buf_fini(&b);
}

/* The controller's plan (rerouting modes fixed-rate and scheduled): relay
 * at its rate, and what it pushed, whatever the thresholds say, up to
 * RELAY_PLAN_CEILING times high_bytes. */
static void fill_plan(struct qkm_relay *r, struct dest *d, uint64_t now_ns, uint64_t have)
{
	uint64_t batch = r->cfg->relay.batch_bytes;
	if (d->plan_rate != QKM_RELAY_RATE_NONE) {
		d->credit += (double)d->plan_rate * (double)(now_ns - d->credit_ns) / 1e9;
		if (d->credit > (double)(RELAY_WINDOW * batch))
			d->credit = (double)(RELAY_WINDOW * batch);
	}
	d->credit_ns = now_ns;
	while (d->n_flights < RELAY_WINDOW && !held_on_way(d) &&
	       (d->push_bytes > 0 ||
		(d->credit >= (double)batch &&
		 have + d->flight_bytes < RELAY_PLAN_CEILING * r->cfg->relay.high_bytes))) {
		if (relay_start(r, d, now_ns))
			break;
		if (d->push_bytes)
			d->push_bytes -= d->push_bytes < batch ? d->push_bytes : batch;
		else
			d->credit -= (double)batch;
	}
}

/* Ahead of demand: below low_bytes (with what is in flight), relay until
 * the pool holds high_bytes, a window of relays at a time; or as the
 * controller's plan says. */
static void fill(struct qkm_relay *r, struct dest *d, uint64_t now_ns)
{
	struct qkm_pool_stats ps;
	if (!r->cfg->ksa || !d->ksa || now_ns < d->retry_ns ||
	    qkm_store_pool_stats(r->st, d->route->to, &ps))
		return;
	if (d->plan_rate != QKM_RELAY_RATE_AUTO || d->push_bytes) {
		fill_plan(r, d, now_ns, ps.enc_bytes);
		return;
	}
	uint64_t have = ps.enc_bytes + d->flight_bytes;
	if (have < r->cfg->relay.low_bytes)
		d->filling = true;
	if (have >= r->cfg->relay.high_bytes)
		d->filling = false;
	/* A relay that cannot start here (first hop short or down) spent
	 * nothing: the next scan tries again. Only failures further on, which
	 * do spend link key, back off (settle). */
	while (d->filling && d->n_flights < RELAY_WINDOW && !held_on_way(d) &&
	       ps.enc_bytes + d->flight_bytes < r->cfg->relay.high_bytes)
		if (relay_start(r, d, now_ns))
			break;
}

void qkm_relay_tick(struct qkm_relay *r, uint64_t now_ns)
{
	for (struct xacc *x = r->xaccs, *nx; x; x = nx) {
		nx = x->next;
		if (now_ns - x->created_ns >= XOR_TIMEOUT_NS) {
			log_warnx("relay %s->%s: combination incomplete after 30 s; dropped",
				  x->h.src, x->h.dst);
			xacc_free(r, x);
		}
	}
	for (size_t i = 0; i < r->n_dests; i++)
		if (r->dests[i].flights)
			ask(r, &r->dests[i], now_ns);
	if (now_ns - r->scan_ns < RELAY_SCAN_NS)
		return;
	r->scan_ns = now_ns;
	if (r->held)
		held_run(r, NULL, false, now_ns);
	for (size_t i = 0; i < r->n_dests; i++)
		fill(r, &r->dests[i], now_ns);
}

int qkm_relay_set_rate(struct qkm_relay *r, const char *node, uint64_t rate, uint64_t now_ns)
{
	struct dest *d = dest_find(r, node);
	if (!d)
		return QKM_ENOTFOUND;
	if (d->plan_rate != rate) {
		d->plan_rate = rate;
		d->credit = 0;
		d->credit_ns = now_ns;
	}
	return 0;
}

int qkm_relay_push(struct qkm_relay *r, const char *node, uint64_t bytes)
{
	struct dest *d = dest_find(r, node);
	if (!d)
		return QKM_ENOTFOUND;
	d->push_bytes += bytes;
	r->scan_ns = 0; /* at the next tick */
	return 0;
}

int qkm_relay_want(struct qkm_relay *r, const char *node, size_t bytes, uint64_t now_ns)
{
	struct dest *d = dest_find(r, node);
	if (!d)
		return QKM_ESTATE;
	/* After a failure, demand waits out the back-off as relays ahead of
	 * demand do: every attempt consumes first-hop link key however far
	 * down the route it is refused, and the supply asks again each tick,
	 * so a starved hop further on would drain the first one, and the
	 * reason would end up naming it. */
	if (now_ns < d->retry_ns)
		return d->n_flights ? 0 : QKM_ENOKEY;
	int rc = 0;
	while (!rc && d->flight_bytes < bytes && d->n_flights < RELAY_WINDOW && !held_on_way(d))
		rc = relay_start(r, d, now_ns);
	if (rc && d->n_flights)
		rc = 0;
	return rc == QKM_ENOKEY || rc == QKM_ESTATE ? rc : rc ? QKM_ESTATE : 0;
}

/* ---- life -------------------------------------------------------------- */

static int load_pending(struct qkm_block *b, void *arg)
{
	struct dest *d = arg;
	if (b->pool_kind == QKM_POOL_RELAY && b->key_type == QKM_KT_ENC &&
	    !flight_add(d, &b->batch_id, b->count * b->unit_bytes, 0))
		return QKM_ENOMEM;
	return 0;
}

struct qkm_relay *qkm_relay_new(const struct qkm_node_cfg *cfg, struct qkm_store *st,
				const struct qkm_relay_ops *ops)
{
	struct qkm_relay *r = calloc(1, sizeof(*r));
	if (!r)
		return NULL;
	r->cfg = cfg;
	r->st = st;
	r->ops = *ops;
	r->outq_tail = &r->outq;
	r->poly = EVP_MAC_fetch(NULL, "POLY1305", NULL);
	r->dests = calloc(cfg->n_routes ? cfg->n_routes : 1, sizeof(*r->dests));
	if (!r->poly || !r->dests) {
		qkm_relay_free(r);
		return NULL;
	}
	r->n_dests = cfg->n_routes;
	/* Relays ahead of demand only between nodes where applications are
	 * registered (an SAE at this node to be master, one there as slave). */
	bool sae_here = false;
	for (size_t j = 0; j < cfg->n_saes; j++)
		sae_here = sae_here || strcmp(cfg->saes[j].node, cfg->id) == 0;
	for (size_t i = 0; i < cfg->n_routes; i++) {
		struct dest *d = &r->dests[i];
		d->rt = cfg->routes[i];
		d->route = &d->rt;
		for (size_t j = 0; sae_here && j < cfg->n_saes; j++)
			d->ksa = d->ksa || strcmp(cfg->saes[j].node, d->route->to) == 0;
		char cname[QKM_NAME_MAX + 16];
		int64_t seq = 0;
		snprintf(cname, sizeof(cname), "relay_seq:%s", d->route->to);
		if (qkm_store_counter_get(st, cname, &seq)) {
			qkm_relay_free(r);
			return NULL;
		}
		d->last_seq = (uint64_t)seq;
		/* Relays left unconfirmed by the last run: ask at once. */
		if (qkm_store_blocks(st, d->route->to, 1u << QKM_BLOCK_PENDING, false, load_pending,
				     d)) {
			qkm_relay_free(r);
			return NULL;
		}
		if (d->n_flights)
			log_info("relay to %s: %u relay(s) of the last run unconfirmed; asking",
				 d->route->to, d->n_flights);
	}
	return r;
}

void qkm_relay_free(struct qkm_relay *r)
{
	if (!r)
		return;
	for (size_t i = 0; r->dests && i < r->n_dests; i++)
		while (r->dests[i].flights)
			flight_drop(&r->dests[i], &r->dests[i].flights->batch);
	qkm_relay_end_batch(r);
	while (r->xaccs)
		xacc_free(r, r->xaccs);
	while (r->held) {
		struct held *x = r->held;
		r->held = x->next;
		free(x);
	}
	free(r->dests);
	EVP_MAC_free(r->poly);
	qkm_rng_free(r->rng);
	free(r);
}
