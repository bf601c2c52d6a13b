/* kma_io.c - the KMA's I/O shell (kma.h): links to the simulator and to
 * peer KMAs, timers, and hand-off of frames to acquisition (acq.c), which
 * owns every decision about keys. */
#include "kma/kma.h"
#include "core/keyfile.h"
#include "core/log.h"
#include "kma/device.h"
#include "kma/relay.h"
#include "kma/spool.h"
#include "net/link.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define KMA_TICK_MS 10
#define KMA_RETRY_MIN_MS 200
#define KMA_RETRY_MAX_MS 2000
#define KMA_PAIRCHECK_SECS 60
/* Kq-1 flow control: stop reading the quantum layer while a link holds more
 * unconfirmed QKD-key bytes than this, and read again below the low mark, so
 * the modules buffer (and, past their bound, drop) instead of this node
 * discarding files (the acq buffer's own cap is 64 MiB). */
#define KMA_ACQ_HIGH (48u << 20)
#define KMA_ACQ_LOW (32u << 20)
/* A follower waiting for files reads on up to here (acq's own bound, 64 MiB,
 * would discard its oldest files, which the leader is about to reference). */
#define KMA_ACQ_WAITING_HIGH (56u << 20)
/* The store has no automatic checkpoints: checkpoint (TRUNCATE, so deleted
 * keys leave the WAL) when the WAL passes this size, and at least this often
 * while it holds anything. */
#define KMA_CKPT_WAL_BYTES (64u << 20)
#define KMA_CKPT_NS 5000000000ull
/* Pool sync (acq.h) when a pool becomes usable and this often after. */
#define KMA_SYNC_NS 30000000000ull
/* Links to other nodes hand over at most this much a read (relay frames):
 * a relay node passes relays on while more arrive, rather than after all
 * (net/link.h). The link from the modules reads all it holds: one commit
 * per read suits acquisition best. */
#define KMA_NODE_READ_TURN (2u << 20)

/* A spool scan reads at most this much before the loop does other work. */
#define KMA_SPOOL_SCAN_BYTES (16u << 20)

struct kma_pc {
	struct kma_pc *next;
	uint32_t req;
	struct kma_link *kl;
	qkm_kma_paircheck_fn done;
	void *arg;
	struct event *timeout;
};

/* One QKD link: our module and the peer KMA. */
struct kma_link {
	struct qkm_kma *k;
	struct qkm_node_link cfg;
	struct qkm_acq *acq;
	struct qkm_link *kx;        /* open or opening Kx link, or NULL */
	struct event *redial;
	int retry_ms;
	bool module_up;
	bool pool_usable;           /* last state told to the hooks */
	uint64_t sync_ns;           /* last pool sync sent (monotonic) */
	uint32_t qber_ppm;
	uint64_t rate_bps;
	char alarm[64];
	struct qkm_spool *spool;    /* source spool: the directory, or NULL */
	struct qkm_device *device;  /* source etsi014: the QKD device's key API, or NULL */
	uint64_t poll_ns;           /* next look at a polled source (monotonic) */
	bool settled;               /* spool files settled, to remove */
	/* The peer's last POOL_SYNC, put off while relay frames from the peer
	 * wait here for link key (sync_put_off), or NULL. */
	uint8_t *sync_body;
	struct qkm_frame sync_f;
	uint64_t sync_at;           /* when it came (wall clock, as block times) */
	uint64_t sync_mono;
};

/* A direct KMA link with a node that is not a neighbour (clause 9 relay
 * modes): each side dials the other to send (outbound) and accepts the
 * other's link to receive (inbound); frames queued before it opens are
 * sent when it does, and lost if it fails (the relay's origin asks later). */
struct kma_direct {
	struct kma_direct *next;
	struct qkm_kma *k;
	char peer[QKM_NAME_MAX];
	bool outbound, open;
	struct qkm_link *l;
	struct qkm_buf pending;
};

/* An accepted Kx connection before we know which link it serves. */
struct kma_inbound {
	struct kma_inbound *next, **prevp;
	struct qkm_kma *k;
	struct qkm_link *l;
};

struct qkm_kma {
	struct event_base *base;
	const struct qkm_node_cfg *cfg;
	struct qkm_store *st;
	SSL_CTX *sctx, *cctx;
	struct qkm_listener *listener;
	struct kma_link *links;
	size_t n_links;
	struct qkm_link *sim;
	struct event *sim_redial, *tick;
	int sim_retry_ms;
	struct kma_inbound *inbound;
	struct kma_pc *pcs;
	uint32_t next_req;
	struct qkm_kma_hooks hooks;
	struct event *flush_ev;     /* runs once the frames of a read are handled */
	uint64_t ckpt_ns;           /* last checkpoint attempt (monotonic) */
	struct qkm_relay *relay;    /* end-to-end pools with distant nodes */
	struct kma_direct *directs;
};

static void kx_dial(struct kma_link *kl);
static void sim_dial(struct qkm_kma *k);

static void schedule(struct event *ev, int *retry_ms)
{
	struct timeval tv = {*retry_ms / 1000, (*retry_ms % 1000) * 1000L};
	event_add(ev, &tv);
	*retry_ms = *retry_ms * 2 > KMA_RETRY_MAX_MS ? KMA_RETRY_MAX_MS : *retry_ms * 2;
}

static struct kma_link *link_by_peer(const struct qkm_kma *k, const char *peer)
{
	for (size_t i = 0; i < k->n_links; i++)
		if (strcmp(k->links[i].cfg.peer, peer) == 0)
			return &k->links[i];
	return NULL;
}

/* ---- pair-check requests ----------------------------------------------- */

static void pc_finish(struct qkm_kma *k, struct kma_pc *pc, const struct qkm_paircheck_result *r,
		      int err)
{
	for (struct kma_pc **pp = &k->pcs; *pp; pp = &(*pp)->next)
		if (*pp == pc) {
			*pp = pc->next;
			break;
		}
	event_free(pc->timeout);
	pc->done(r, err, pc->arg);
	free(pc);
}

static struct kma_pc *pc_find(const struct kma_link *kl, uint32_t req)
{
	struct kma_pc *pc = kl->k->pcs;
	while (pc && (pc->req != req || pc->kl != kl))
		pc = pc->next;
	return pc;
}

static void pc_on_result(uint32_t req, const struct qkm_paircheck_result *r, int err, void *arg)
{
	struct kma_link *kl = arg;
	struct kma_pc *pc = pc_find(kl, req);
	if (pc)
		pc_finish(kl->k, pc, r, err);
}

/* The timeout counts from the peer's last answer: a large pool is checked
 * in many parts, each answered (acq.c). */
static void pc_arm(struct kma_pc *pc)
{
	struct timeval tv = {KMA_PAIRCHECK_SECS, 0};
	evtimer_add(pc->timeout, &tv);
}

static void pc_on_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct kma_pc *pc = arg;
	qkm_acq_paircheck_cancel(pc->kl->acq, pc->req);
	pc_finish(pc->kl->k, pc, NULL, QKM_EAGAIN);
}

static void pc_fail_link(struct kma_link *kl, int err)
{
	struct kma_pc *pc = kl->k->pcs, *next;
	for (; pc; pc = next) {
		next = pc->next;
		if (pc->kl == kl)
			pc_finish(kl->k, pc, NULL, err);
	}
}

void qkm_kma_paircheck(struct qkm_kma *k, const char *peer, qkm_kma_paircheck_fn done, void *arg)
{
	struct kma_link *kl = link_by_peer(k, peer);
	if (!kl) {
		done(NULL, QKM_ENOTFOUND, arg);
		return;
	}
	struct kma_pc *pc = calloc(1, sizeof(*pc));
	if (!pc) {
		done(NULL, QKM_ENOMEM, arg);
		return;
	}
	pc->req = ++k->next_req;
	pc->kl = kl;
	pc->done = done;
	pc->arg = arg;
	int rc = kl->kx ? qkm_acq_paircheck(kl->acq, pc->req, qkm_now_ns()) : QKM_ESTATE;
	pc->timeout = evtimer_new(k->base, pc_on_timeout, pc);
	if (rc || !pc->timeout) {
		if (pc->timeout)
			event_free(pc->timeout);
		free(pc);
		done(NULL, rc ? rc : QKM_ENOMEM, arg);
		return;
	}
	pc_arm(pc);
	pc->next = k->pcs;
	k->pcs = pc;
}

/* ---- Kx ---------------------------------------------------------------- */

static int kx_send(const uint8_t *frame, size_t len, void *arg)
{
	struct kma_link *kl = arg;
	return kl->kx ? qkm_link_send(kl->kx, frame, len) : QKM_ESTATE;
}

/* The one-time key of a round's MAC, from the Kx session (acq.h). */
static int kx_mac_key(const struct qkm_id *batch, uint8_t key[32], void *arg)
{
	struct kma_link *kl = arg;
	return kl->kx ? qkm_link_export(kl->kx, "EXPORTER-qkm-acq-round", batch->b, QKM_ID_LEN, key,
					32)
		      : QKM_ESTATE;
}

static void kx_on_open(struct qkm_link *l, void *arg)
{
	struct kma_link *kl = arg;
	kl->retry_ms = KMA_RETRY_MIN_MS;
	log_info("Kx link to %s up (%s)", kl->cfg.peer, qkm_acq_is_leader(kl->acq) ? "leader" : "follower");
	qkm_acq_on_peer_up(kl->acq, qkm_now_ns());
}

/* ---- routed frames (end to end over several Kx links) ------------------ */

static int neighbour_send(struct qkm_kma *k, const char *peer, const uint8_t *frame, size_t len)
{
	struct kma_link *kl = link_by_peer(k, peer);
	if (!kl || !kl->kx || !qkm_link_is_open(kl->kx))
		return QKM_ESTATE;
	return qkm_link_send(kl->kx, frame, len);
}

/* Wraps inner in a ROUTED frame for path[hop] and sends it there. */
static int routed_send(struct qkm_kma *k, const char *src, const char (*path)[QKM_NAME_MAX],
		       uint32_t n, uint32_t hop, const uint8_t *inner, size_t len)
{
	struct qkm_buf b;
	size_t start;
	qkm_buf_init(&b, QKM_FRAME_MAX, false);
	int rc = qkm_frame_begin(&b, QKM_MSG_ROUTED, 0, &start);
	if (!rc)
		rc = qkm_put_str(&b, QKM_T_SRC, src);
	if (!rc)
		rc = qkm_put_str(&b, QKM_T_DST, path[n - 1]);
	for (uint32_t i = 0; !rc && i < n; i++)
		rc = qkm_put_str(&b, QKM_T_PATH, path[i]);
	if (!rc)
		rc = qkm_put_u32(&b, QKM_T_HOP, hop);
	if (!rc)
		rc = qkm_put_tlv(&b, QKM_T_FRAME, inner, len);
	if (!rc)
		rc = qkm_frame_end(&b, start);
	if (!rc)
		rc = neighbour_send(k, path[hop], b.p, b.len);
	qkm_buf_fini(&b);
	return rc;
}

/* To a neighbour over Kx, else routed along the relay route. */
static int send_any(struct qkm_kma *k, const char *peer, const uint8_t *frame, size_t len)
{
	if (link_by_peer(k, peer))
		return neighbour_send(k, peer, frame, len);
	const struct qkm_node_route *rt = qkm_relay_route(k->relay, peer);
	if (!rt)
		return QKM_ENOTFOUND;
	return routed_send(k, k->cfg->id, rt->path, rt->n, 1, frame, len);
}

/* A ROUTED frame from neighbour kl: ours (hand the inner frame over as if
 * its origin sent it directly), or pass it on along its path. A frame
 * that cannot go on is dropped: end-to-end users time out and ask again. */
static int routed_on_frame(struct kma_link *kl, const struct qkm_frame *f)
{
	struct qkm_kma *k = kl->k;
	char src[QKM_NAME_MAX], dst[QKM_NAME_MAX], path[QKM_MAX_PATH][QKM_NAME_MAX];
	uint32_t n = 0, hop = 0, vl;
	size_t off = 0;
	uint16_t tag;
	const uint8_t *v, *inner;
	uint32_t inner_len;
	if (qkm_tlv_str(f->body, f->body_len, QKM_T_SRC, src, sizeof(src), true) ||
	    qkm_tlv_str(f->body, f->body_len, QKM_T_DST, dst, sizeof(dst), true) ||
	    qkm_tlv_u32(f->body, f->body_len, QKM_T_HOP, &hop) ||
	    qkm_tlv_bytes(f->body, f->body_len, QKM_T_FRAME, &inner, &inner_len))
		return QKM_EPEER;
	while (qkm_tlv_next(f->body, f->body_len, &off, &tag, &v, &vl) == 1)
		if (tag == QKM_T_PATH) {
			if (n == QKM_MAX_PATH || !vl || vl >= QKM_NAME_MAX)
				return QKM_EPEER;
			memcpy(path[n], v, vl);
			path[n++][vl] = 0;
		}
	if (n < 2 || hop < 1 || hop >= n || strcmp(path[0], src) || strcmp(path[n - 1], dst) ||
	    strcmp(path[hop], k->cfg->id) || strcmp(path[hop - 1], kl->cfg.peer))
		return QKM_EPEER;
	if (hop + 1 < n) {
		if (routed_send(k, src, (const char (*)[QKM_NAME_MAX])path, n, hop + 1, inner,
				inner_len))
			log_debug("routed frame %s->%s dropped here: hop to %s down", src, dst,
				  path[hop + 1]);
		return 0;
	}
	struct qkm_frame in;
	int rc = qkm_frame_parse(inner, inner_len, &in);
	if (!rc && in.type >= 40 && in.type < 50)
		rc = k->hooks.on_frame ? k->hooks.on_frame(src, &in, k->hooks.arg) : QKM_EPEER;
	else if (!rc && in.type >= QKM_MSG_RELAY_ACK && in.type <= QKM_MSG_RELAY_STATE)
		/* Never XOR shares: those go straight to their combiner. */
		rc = qkm_relay_on_frame(k->relay, src, &in, qkm_now_ns());
	else if (!rc)
		rc = QKM_EPEER;
	/* The neighbour only carried it: its origin's fault is not the link's. */
	if (rc)
		log_warnx("frame from %s (routed via %s) refused: %s", src, kl->cfg.peer,
			  qkm_strerror(rc));
	return 0;
}

static int relay_op_send(const char *nb, const uint8_t *frame, size_t len, void *arg)
{
	return neighbour_send(arg, nb, frame, len);
}

/* ---- direct KMA links -------------------------------------------------- */

static void direct_free(struct kma_direct *d)
{
	for (struct kma_direct **pp = &d->k->directs; *pp; pp = &(*pp)->next)
		if (*pp == d) {
			*pp = d->next;
			break;
		}
	qkm_link_free(d->l);
	qkm_buf_fini(&d->pending);
	free(d);
}

static void direct_on_open(struct qkm_link *l, void *arg)
{
	struct kma_direct *d = arg;
	d->open = true;
	log_info("direct KMA link to %s up", d->peer);
	if (d->pending.len && qkm_link_send(l, d->pending.p, d->pending.len))
		log_warnx("direct KMA link to %s: queued frames not sent", d->peer);
	qkm_buf_reset(&d->pending);
}

static void direct_on_frame(struct qkm_link *l, const struct qkm_frame *f, void *arg)
{
	struct kma_direct *d = arg;
	if (f->type == QKM_MSG_PING || f->type == QKM_MSG_PONG)
		return;
	/* Only what the clause 9 modes send over it. */
	qkm_relay_begin_batch(d->k->relay);
	event_active(d->k->flush_ev, EV_TIMEOUT, 0);
	int rc = f->type == QKM_MSG_XOR_SHARE
			 ? qkm_relay_on_frame(d->k->relay, d->peer, f, qkm_now_ns())
			 : QKM_EPEER;
	if (rc == QKM_EPEER) {
		log_warnx("direct KMA link from %s: protocol violation (message type %u); dropping",
			  d->peer, f->type);
		qkm_link_close(l, QKM_EPEER, "protocol violation");
	}
}

static void direct_on_close(struct qkm_link *l, int err, const char *why, void *arg)
{
	struct kma_direct *d = arg;
	if (d->open)
		log_info("direct KMA link %s %s down: %s", d->outbound ? "to" : "from", d->peer, why);
	else
		log_warnx("direct KMA link to %s failed: %s", d->peer, why);
	d->l = NULL; /* the link frees itself after this callback */
	direct_free(d);
}

static const struct qkm_link_cbs direct_cbs = {direct_on_open, direct_on_frame, direct_on_close};

static int relay_op_send_direct(const char *node, const uint8_t *frame, size_t len, void *arg)
{
	struct qkm_kma *k = arg;
	struct kma_direct *d = k->directs;
	while (d && !(d->outbound && strcmp(d->peer, node) == 0))
		d = d->next;
	if (!d) {
		const char *addr = NULL;
		for (size_t i = 0; i < k->cfg->n_dir; i++)
			if (strcmp(k->cfg->dir[i].id, node) == 0)
				addr = k->cfg->dir[i].kx;
		if (!addr)
			return QKM_ENOTFOUND;
		if (!(d = calloc(1, sizeof(*d))))
			return QKM_ENOMEM;
		d->k = k;
		d->outbound = true;
		snprintf(d->peer, sizeof(d->peer), "%s", node);
		qkm_buf_init(&d->pending, 64u << 20, false);
		d->next = k->directs;
		k->directs = d;
		d->l = qkm_link_connect(k->base, k->cctx, k->cfg->id, addr, "node", node,
					&direct_cbs, d);
		if (!d->l) {
			direct_free(d);
			return QKM_EIO;
		}
	}
	if (d->open)
		return qkm_link_send(d->l, frame, len);
	return qkm_buf_put(&d->pending, frame, len);
}

static int relay_op_send_to(const char *node, const uint8_t *frame, size_t len, void *arg)
{
	return send_any(arg, node, frame, len);
}

static bool relay_op_link_ready(const char *nb, void *arg)
{
	struct kma_link *kl = link_by_peer(arg, nb);
	return kl && kl->kx && qkm_link_is_open(kl->kx) && qkm_acq_reconciled(kl->acq);
}

static void relay_op_on_pool(const char *node, void *arg)
{
	struct qkm_kma *k = arg;
	if (k->hooks.on_keys)
		k->hooks.on_keys(node, k->hooks.arg);
}

/* A POOL_SYNC lists the link key the peer used, its relay frames waiting
 * here for next-hop link key included, and tells us to burn the bytes it
 * lists that we have not used: handled now, it would burn what those
 * frames name, and they would be refused when they could go on. So it
 * waits until they have gone on or been refused (at most KMA_SYNC_WAIT_NS;
 * then they are made to), and is then handled as of the time it came: the
 * blocks it judges are those it would have judged then. A later one
 * replaces it (it says the same, later). */
#define KMA_SYNC_WAIT_NS 10000000000ull

static void sync_put_off(struct kma_link *kl, const struct qkm_frame *f)
{
	uint8_t *body = malloc(f->body_len ? f->body_len : 1);
	if (!body) {
		log_warnx("link %s: pool sync dropped (out of memory)", kl->cfg.link);
		return;
	}
	memcpy(body, f->body, f->body_len);
	if (!kl->sync_body)
		kl->sync_mono = qkm_mono_ns();
	free(kl->sync_body);
	kl->sync_body = body;
	kl->sync_f = *f;
	kl->sync_f.body = body;
	kl->sync_at = qkm_now_ns();
}

/* The put-off POOL_SYNC, after the relay frames it waited for. */
static void sync_resume(struct kma_link *kl)
{
	if (!kl->sync_body)
		return;
	qkm_relay_release(kl->k->relay, kl->cfg.peer, qkm_now_ns());
	int rc = qkm_acq_on_frame(kl->acq, &kl->sync_f, kl->sync_at);
	if (rc)
		log_warnx("Kx %s: pool sync failed: %s", kl->cfg.peer, qkm_strerror(rc));
	free(kl->sync_body);
	kl->sync_body = NULL;
}

static void kx_on_frame(struct qkm_link *l, const struct qkm_frame *f, void *arg)
{
	struct kma_link *kl = arg;
	if (f->type == QKM_MSG_PING || f->type == QKM_MSG_PONG)
		return;
	if (f->type == QKM_MSG_ERROR) {
		char msg[200] = "";
		if (qkm_tlv_str(f->body, f->body_len, QKM_T_MESSAGE, msg, sizeof(msg), false))
			msg[0] = 0;
		log_warnx("Kx %s reports an error: %s", kl->cfg.peer, msg);
		return;
	}
	/* Decisions made for this read's frames are stored in one commit once
	 * the read is done (kma_on_flush), not one commit per frame. */
	event_active(kl->k->flush_ev, EV_TIMEOUT, 0);
	int rc;
	if (f->type >= 40 && f->type < 60)
		/* A KSA or relay frame may name key material the peer holds
		 * READY and whose COMMIT came before it on this link, in the
		 * same read: apply the COMMITs read so far first, so the pool
		 * is in the state the frame order promises (no-op when none). */
		qkm_acq_flush(kl->acq);
	/* Relay frames of this read share one commit (kma_on_flush ends it).
	 * A routed frame goes on at once, so what the relay holds back goes
	 * first: a query must not overtake the relays it asks about. */
	if (f->type == QKM_MSG_ROUTED)
		qkm_relay_end_batch(kl->k->relay);
	else if (f->type > QKM_MSG_ROUTED && f->type < 60)
		qkm_relay_begin_batch(kl->k->relay);
	/* Relay frames from this peer waiting here for next-hop link key: a
	 * POOL_SYNC waits for them (sync_put_off); a KSA frame, which may name
	 * link key beyond theirs and burn it, comes after them. */
	if (f->type == QKM_MSG_POOL_SYNC &&
	    (kl->sync_body || qkm_relay_holds(kl->k->relay, kl->cfg.peer))) {
		sync_put_off(kl, f);
		return;
	}
	if (f->type >= 40 && f->type < 50) {
		qkm_relay_release(kl->k->relay, kl->cfg.peer, qkm_now_ns());
		sync_resume(kl);
		rc = kl->k->hooks.on_frame ? kl->k->hooks.on_frame(kl->cfg.peer, f, kl->k->hooks.arg)
					   : QKM_EPEER;
	} else if (f->type == QKM_MSG_ROUTED)
		rc = routed_on_frame(kl, f);
	else if (f->type == QKM_MSG_RELAY)
		rc = qkm_relay_on_hop(kl->k->relay, kl->cfg.peer, f, qkm_now_ns());
	else if (f->type > QKM_MSG_RELAY && f->type < 60)
		rc = qkm_relay_on_frame(kl->k->relay, kl->cfg.peer, f, qkm_now_ns());
	else {
		struct kma_pc *pc;
		if (f->type == QKM_MSG_PAIRCHECK_ACK && (pc = pc_find(kl, f->req)))
			pc_arm(pc);
		rc = qkm_acq_on_frame(kl->acq, f, qkm_now_ns());
	}
	if (rc == QKM_EPEER) {
		log_warnx("Kx %s: protocol violation (message type %u); dropping the link",
			  kl->cfg.peer, f->type);
		qkm_link_close(l, QKM_EPEER, "protocol violation");
	} else if (rc) {
		log_warnx("Kx %s: message type %u failed: %s", kl->cfg.peer, f->type,
			  qkm_strerror(rc));
	}
}

/* Tells the hooks when a pool becomes usable or stops being usable. */
static void pool_update(struct kma_link *kl)
{
	bool usable = kl->kx && qkm_link_is_open(kl->kx) && qkm_acq_reconciled(kl->acq);
	if (usable == kl->pool_usable)
		return;
	kl->pool_usable = usable;
	/* The sync lists what the store says is used: frames the relay holds
	 * back (their use not committed yet) go first. */
	if (usable)
		qkm_relay_end_batch(kl->k->relay);
	if (usable && qkm_acq_sync(kl->acq))
		log_warnx("link %s: pool sync not sent", kl->cfg.link);
	kl->sync_ns = qkm_mono_ns();
	if (!kl->k->hooks.on_pool)
		return;
	kl->k->hooks.on_pool(kl->cfg.peer, usable, kl->k->hooks.arg);
	/* End-to-end pools whose route starts on this link. */
	for (size_t i = 0; i < kl->k->cfg->n_routes; i++) {
		const struct qkm_node_route *rt = qkm_relay_route(kl->k->relay, kl->k->cfg->routes[i].to);
		if (rt && strcmp(rt->path[1], kl->cfg.peer) == 0)
			kl->k->hooks.on_pool(rt->to, usable, kl->k->hooks.arg);
	}
}

static void kx_on_close(struct qkm_link *l, int err, const char *why, void *arg)
{
	struct kma_link *kl = arg;
	bool was_open = qkm_acq_reconciled(kl->acq) || kl->kx == l;
	if (kl->kx != l)
		return;
	kl->kx = NULL;
	pool_update(kl);
	qkm_acq_on_peer_down(kl->acq);
	pc_fail_link(kl, QKM_ESTATE);
	if (was_open)
		log_warnx("Kx link to %s down: %s", kl->cfg.peer, why);
	if (qkm_acq_is_leader(kl->acq))
		schedule(kl->redial, &kl->retry_ms);
}

static const struct qkm_link_cbs kx_cbs = {kx_on_open, kx_on_frame, kx_on_close};

static void kx_dial(struct kma_link *kl)
{
	struct qkm_kma *k = kl->k;
	kl->kx = qkm_link_connect(k->base, k->cctx, k->cfg->id, kl->cfg.addr, "node", kl->cfg.peer,
				  &kx_cbs, kl);
	if (kl->kx) {
		qkm_link_set_read_turn(kl->kx, KMA_NODE_READ_TURN);
	} else {
		log_warnx("cannot dial Kx %s at %s", kl->cfg.peer, kl->cfg.addr);
		schedule(kl->redial, &kl->retry_ms);
	}
}

static void kx_on_redial(evutil_socket_t fd, short what, void *arg) { kx_dial(arg); }

static void inbound_unlink(struct kma_inbound *in)
{
	*in->prevp = in->next;
	if (in->next)
		in->next->prevp = in->prevp;
	free(in);
}

/* An accepted Kx link identified itself: hand it to its QKD link. */
static void inbound_on_open(struct qkm_link *l, void *arg)
{
	struct kma_inbound *in = arg;
	struct qkm_kma *k = in->k;
	struct kma_link *kl = link_by_peer(k, qkm_link_peer_name(l));
	bool known = false;
	for (size_t i = 0; i < k->cfg->n_dir; i++)
		known = known || strcmp(k->cfg->dir[i].id, qkm_link_peer_name(l)) == 0;
	if (strcmp(qkm_link_peer_role(l), "node") == 0 && !kl && known) {
		/* A direct KMA link (clause 9 relay modes): it only sends to us. */
		struct kma_direct *d = calloc(1, sizeof(*d));
		if (!d) {
			qkm_link_close(l, QKM_ENOMEM, "out of memory");
			return;
		}
		d->k = k;
		d->l = l;
		d->open = true;
		snprintf(d->peer, sizeof(d->peer), "%s", qkm_link_peer_name(l));
		qkm_buf_init(&d->pending, 0, false);
		d->next = k->directs;
		k->directs = d;
		inbound_unlink(in);
		qkm_link_set_cbs(l, &direct_cbs, d);
		qkm_link_set_read_turn(l, KMA_NODE_READ_TURN);
		log_info("direct KMA link from %s up", d->peer);
		return;
	}
	if (strcmp(qkm_link_peer_role(l), "node") != 0 || !kl || qkm_acq_is_leader(kl->acq)) {
		log_warnx("Kx: refusing %s '%s': not a neighbour that dials us",
			  qkm_link_peer_role(l), qkm_link_peer_name(l));
		qkm_link_close(l, QKM_EPERM, "not a neighbour that dials us");
		return;
	}
	if (kl->kx) /* the peer restarted: its new link replaces the old one */
		qkm_link_close(kl->kx, QKM_EIO, "replaced by a new connection");
	inbound_unlink(in);
	kl->kx = l;
	qkm_link_set_cbs(l, &kx_cbs, kl);
	qkm_link_set_read_turn(l, KMA_NODE_READ_TURN);
	kx_on_open(l, kl);
}

static void inbound_on_frame(struct qkm_link *l, const struct qkm_frame *f, void *arg)
{
	/* Frames only flow after on_open; inbound_on_open re-targets the link. */
	qkm_link_close(l, QKM_EPEER, "frame before identification");
}

static void inbound_on_close(struct qkm_link *l, int err, const char *why, void *arg)
{
	struct kma_inbound *in = arg;
	log_info("Kx connection refused or failed before it opened: %s", why);
	inbound_unlink(in);
}

static const struct qkm_link_cbs inbound_cbs = {inbound_on_open, inbound_on_frame,
						inbound_on_close};

static void kx_accept(int fd, void *arg)
{
	struct qkm_kma *k = arg;
	struct kma_inbound *in = calloc(1, sizeof(*in));
	if (!in) {
		close(fd);
		return;
	}
	in->k = k;
	in->next = k->inbound;
	if (in->next)
		in->next->prevp = &in->next;
	in->prevp = &k->inbound;
	k->inbound = in;
	in->l = qkm_link_accept(k->base, k->sctx, k->cfg->id, fd, &inbound_cbs, in);
	if (!in->l)
		inbound_unlink(in);
}

/* ---- simulator (Kq-1 / Kq-2) ------------------------------------------- */

static struct kma_link *link_by_name(struct qkm_kma *k, const char *name)
{
	for (size_t i = 0; i < k->n_links; i++)
		if (strcmp(k->links[i].cfg.link, name) == 0)
			return &k->links[i];
	return NULL;
}

static void sim_on_open(struct qkm_link *l, void *arg)
{
	struct qkm_kma *k = arg;
	size_t n = 0;
	k->sim_retry_ms = KMA_RETRY_MIN_MS;
	for (size_t i = 0; i < k->n_links; i++) {
		struct qkm_buf b;
		if (k->links[i].cfg.src.kind != QKM_SRC_SIM)
			continue;
		n++;
		size_t start;
		qkm_buf_init(&b, 1024, false);
		if (qkm_frame_begin(&b, QKM_MSG_SUBSCRIBE, 0, &start) ||
		    qkm_put_str(&b, QKM_T_LINK, k->links[i].cfg.link) ||
		    qkm_put_str(&b, QKM_T_MODULE, k->links[i].cfg.module) ||
		    qkm_frame_end(&b, start) || qkm_link_send(l, b.p, b.len))
			log_warnx("cannot subscribe to module %s", k->links[i].cfg.module);
		qkm_buf_fini(&b);
	}
	log_info("connected to the quantum layer; subscribed to %zu module(s)", n);
}

static void sim_on_keyfile(struct qkm_kma *k, const struct qkm_frame *f)
{
	char name[QKM_NAME_MAX];
	const uint8_t *p;
	uint32_t n;
	const char *field = NULL;
	struct qkm_keyfile kf;
	if (qkm_tlv_str(f->body, f->body_len, QKM_T_LINK, name, sizeof(name), true) ||
	    qkm_tlv_bytes(f->body, f->body_len, QKM_T_KEYFILE, &p, &n)) {
		log_warnx("Kq-1: malformed KEYFILE message ignored");
		return;
	}
	struct kma_link *kl = link_by_name(k, name);
	if (!kl) {
		log_warnx("Kq-1: key file for unknown link %s ignored", name);
		return;
	}
	/* hash_value unchecked: TLS kept the file whole on the way, and the
	 * round MAC compares the data themselves (acq.h). */
	int rc = qkm_keyfile_decode_hashed(p, n, &kf, &field);
	if (rc) {
		log_warnx("Kq-1 link %s: key file refused: %s (%s)", name, qkm_strerror(rc),
			  field ? field : "?");
		return;
	}
	rc = qkm_acq_on_keyfile(kl->acq, &kf, qkm_now_ns());
	if (rc)
		log_warnx("Kq-1 link %s: QKD-key %s refused: %s", name, kf.m.qkd.qkd_key_id,
			  qkm_strerror(rc));
	qkm_keyfile_fini(&kf);
	struct qkm_acq_stats as;
	qkm_acq_stats(kl->acq, &as);
	size_t high = as.waiting_files ? KMA_ACQ_WAITING_HIGH : KMA_ACQ_HIGH;
	if (as.buffered_bytes > high && k->sim && !qkm_link_read_paused(k->sim)) {
		log_debug("Kq-1: link %s holds %llu unconfirmed bytes; pausing the quantum layer",
			  name, (unsigned long long)as.buffered_bytes);
		qkm_link_pause_read(k->sim);
	}
}

/* Timer: resume Kq-1 once every link is below the low mark, or a round
 * waits for files that can only come from there. */
static void sim_flow(struct qkm_kma *k)
{
	if (!k->sim || !qkm_link_read_paused(k->sim))
		return;
	bool low = true, waiting = false, full = false;
	for (size_t i = 0; i < k->n_links; i++) {
		struct qkm_acq_stats as;
		qkm_acq_stats(k->links[i].acq, &as);
		low = low && as.buffered_bytes <= KMA_ACQ_LOW;
		waiting = waiting || as.waiting_files;
		full = full || as.buffered_bytes > KMA_ACQ_WAITING_HIGH;
	}
	if (low || (waiting && !full))
		qkm_link_resume_read(k->sim);
}

static void sim_on_status(struct qkm_kma *k, const struct qkm_frame *f)
{
	char name[QKM_NAME_MAX];
	uint8_t up = 0;
	if (qkm_tlv_str(f->body, f->body_len, QKM_T_LINK, name, sizeof(name), true))
		return;
	struct kma_link *kl = link_by_name(k, name);
	if (!kl)
		return;
	if (qkm_tlv_u32(f->body, f->body_len, QKM_T_QBER, &kl->qber_ppm) ||
	    qkm_tlv_u64(f->body, f->body_len, QKM_T_RATE, &kl->rate_bps) ||
	    qkm_tlv_u8(f->body, f->body_len, QKM_T_UP, &up))
		return;
	char alarm[64] = "";
	if (qkm_tlv_str(f->body, f->body_len, QKM_T_ALARM, alarm, sizeof(alarm), false))
		alarm[0] = 0;
	if (strcmp(alarm, kl->alarm) != 0) {
		if (alarm[0])
			log_warnx("link %s: module alarm: %s (QBER %.4f)", name, alarm,
				  kl->qber_ppm / 1e6);
		else
			log_info("link %s: module alarm cleared", name);
	}
	if (kl->module_up != (up != 0))
		log_info("link %s: module reports link %s", name, up ? "up" : "down");
	snprintf(kl->alarm, sizeof(kl->alarm), "%s", alarm);
	kl->module_up = up;
}

static void sim_on_frame(struct qkm_link *l, const struct qkm_frame *f, void *arg)
{
	struct qkm_kma *k = arg;
	switch (f->type) {
	case QKM_MSG_KEYFILE:
		sim_on_keyfile(k, f);
		break;
	case QKM_MSG_MODSTATUS:
		sim_on_status(k, f);
		break;
	case QKM_MSG_ERROR: {
		char msg[200] = "";
		if (qkm_tlv_str(f->body, f->body_len, QKM_T_MESSAGE, msg, sizeof(msg), false))
			msg[0] = 0;
		log_warnx("quantum layer refused a request: %s", msg);
		break;
	}
	default:
		break;
	}
}

static void sim_on_close(struct qkm_link *l, int err, const char *why, void *arg)
{
	struct qkm_kma *k = arg;
	k->sim = NULL;
	for (size_t i = 0; i < k->n_links; i++)
		if (k->links[i].cfg.src.kind == QKM_SRC_SIM)
			k->links[i].module_up = false;
	log_warnx("quantum layer link down: %s", why);
	schedule(k->sim_redial, &k->sim_retry_ms);
}

static const struct qkm_link_cbs sim_cbs = {sim_on_open, sim_on_frame, sim_on_close};

static void sim_dial(struct qkm_kma *k)
{
	k->sim = qkm_link_connect(k->base, k->cctx, k->cfg->id, k->cfg->sim, "sim", "sim", &sim_cbs, k);
	if (!k->sim)
		schedule(k->sim_redial, &k->sim_retry_ms);
}

static void sim_on_redial(evutil_socket_t fd, short what, void *arg) { sim_dial(arg); }

/* ---- spool directories (kma/spool.h) ------------------------------------ */

static enum qkm_spool_verdict spool_take(const char *name, struct qkm_keyfile *kf, char *why,
					 size_t whysz, void *arg)
{
	struct kma_link *kl = arg;
	struct qkm_acq_stats as;
	qkm_acq_stats(kl->acq, &as);
	/* As Kq-1's flow control: the files wait in the directory instead. */
	if (as.buffered_bytes > (as.waiting_files ? KMA_ACQ_WAITING_HIGH : KMA_ACQ_HIGH))
		return QKM_SPOOL_LATER;
	char id[QKM_NAME_MAX];
	snprintf(id, sizeof(id), "%s", kf->m.qkd.qkd_key_id);
	int rc = qkm_acq_on_keyfile(kl->acq, kf, qkm_now_ns());
	bool held = false;
	switch (rc) {
	case 0:
		return QKM_SPOOL_TAKEN;
	case QKM_EEXIST:
		if (qkm_store_qkd_held(kl->k->st, kl->cfg.link, id, &held) == 0 && held)
			return QKM_SPOOL_DONE; /* stored before a crash */
		snprintf(why, whysz, "QKD-key ID %s is already in another file", id);
		return QKM_SPOOL_REJECT;
	case QKM_EINVAL:
		snprintf(why, whysz, "not a QKD-key of module %s with key data (module %s)",
			 kl->cfg.module, kf->m.qkd.qkd_module_id[0] ? kf->m.qkd.qkd_module_id : "none");
		return QKM_SPOOL_REJECT;
	default:
		log_warnx("link %s: spool file %s not taken now: %s", kl->cfg.link, name,
			  qkm_strerror(rc));
		return QKM_SPOOL_LATER;
	}
}

static void spool_rejected(const char *name, const char *why, void *arg)
{
	struct kma_link *kl = arg;
	struct qkm_lc_event ev = {0};
	snprintf(ev.event, sizeof(ev.event), "rejected");
	snprintf(ev.key_kind, sizeof(ev.key_kind), "qkd");
	snprintf(ev.key_id, sizeof(ev.key_id), "%s", name);
	snprintf(ev.peer, sizeof(ev.peer), "%s", kl->cfg.peer);
	snprintf(ev.detail, sizeof(ev.detail), "spool file of link %s moved to rejected/: %s",
		 kl->cfg.link, why);
	if (qkm_store_record(kl->k->st, &ev))
		log_warnx("link %s: rejection of %s not recorded", kl->cfg.link, name);
}

static void spool_forget(const char *qkd_id, void *arg)
{
	struct kma_link *kl = arg;
	if (qkm_store_qkd_forget(kl->k->st, kl->cfg.link, qkd_id))
		log_warnx("link %s: QKD-key %s not forgotten (harmless: its file is gone)",
			  kl->cfg.link, qkd_id);
}

static void spool_on_settled(const char *qkd_id, bool stored, void *arg)
{
	struct kma_link *kl = arg;
	qkm_spool_settled(kl->spool, qkd_id, stored);
	kl->settled = true;
}

/* Removes the files acquisition settled (their IDs forgotten in one
 * commit), then, when due, reads the directory again. */
static void spool_poll(struct kma_link *kl, uint64_t mono)
{
	if (kl->settled) {
		kl->settled = false;
		bool txn = qkm_store_begin(kl->k->st) == 0;
		/* What could not be removed is tried again with the next
		 * settlement (kma/spool.h), not every tick. */
		if (qkm_spool_remove_done(kl->spool) < 0)
			log_debug("link %s: spool files not removed now", kl->cfg.link);
		if (txn && qkm_store_commit(kl->k->st))
			log_warnx("link %s: spool IDs not forgotten (harmless)", kl->cfg.link);
	}
	if (mono < kl->poll_ns)
		return;
	bool more = false;
	int n = qkm_spool_scan(kl->spool, KMA_SPOOL_SCAN_BYTES, &more);
	bool up = n >= 0;
	if (up != kl->module_up)
		log_info("link %s: spool %s %s", kl->cfg.link, kl->cfg.src.dir,
			 up ? "readable: taking key files" : "unreadable");
	kl->module_up = up;
	/* More waiting and room for it: look again at the next tick. */
	struct qkm_acq_stats as;
	qkm_acq_stats(kl->acq, &as);
	kl->poll_ns = mono + (more && n > 0 && as.buffered_bytes <= KMA_ACQ_LOW
				      ? (uint64_t)KMA_TICK_MS * 1000000u
				      : (uint64_t)kl->cfg.src.poll_ms * 1000000u);
}

/* ---- QKD devices' key APIs (kma/device.h) -------------------------------- */

static void device_keyfile(struct qkm_keyfile *kf, void *arg)
{
	struct kma_link *kl = arg;
	int rc = qkm_acq_on_keyfile(kl->acq, kf, qkm_now_ns());
	if (rc)
		log_warnx("link %s: QKD-key %s from the device refused: %s", kl->cfg.link,
			  kf->m.qkd.qkd_key_id, qkm_strerror(rc));
}

/* Follower: the leader's round names keys we have not fetched yet. */
static void device_missing(const char (*ids)[QKM_NAME_MAX], uint32_t n, void *arg)
{
	struct kma_link *kl = arg;
	qkm_device_fetch(kl->device, ids, n);
}

/* Each tick: the master's room in acquisition, the device's state. */
static void device_tick(struct kma_link *kl)
{
	struct qkm_acq_stats as;
	qkm_acq_stats(kl->acq, &as);
	qkm_device_set_room(kl->device,
			    as.buffered_bytes < KMA_ACQ_HIGH ? KMA_ACQ_HIGH - as.buffered_bytes : 0);
	kl->module_up = qkm_device_up(kl->device);
}

/* ---- life -------------------------------------------------------------- */

static void kma_on_flush(evutil_socket_t fd, short what, void *arg)
{
	struct qkm_kma *k = arg;
	qkm_relay_end_batch(k->relay);
	for (size_t i = 0; i < k->n_links; i++)
		qkm_acq_flush(k->links[i].acq);
}

static void kma_on_tick(evutil_socket_t fd, short what, void *arg)
{
	struct qkm_kma *k = arg;
	uint64_t now = qkm_now_ns();
	uint64_t mono = qkm_mono_ns();
	for (size_t i = 0; i < k->n_links; i++) {
		struct kma_link *kl = &k->links[i];
		qkm_acq_tick(kl->acq, now);
		if (kl->spool)
			spool_poll(kl, mono);
		if (kl->device)
			device_tick(kl);
		pool_update(kl);
		if (kl->sync_body && (!qkm_relay_holds(k->relay, kl->cfg.peer) ||
				      mono - kl->sync_mono >= KMA_SYNC_WAIT_NS))
			sync_resume(kl);
		if (kl->pool_usable && mono - kl->sync_ns >= KMA_SYNC_NS) {
			kl->sync_ns = mono;
			qkm_relay_end_batch(k->relay);
			if (qkm_acq_sync(kl->acq))
				log_warnx("link %s: pool sync not sent", kl->cfg.link);
		}
	}
	sim_flow(k);
	qkm_relay_begin_batch(k->relay);
	qkm_relay_tick(k->relay, now);
	qkm_relay_end_batch(k->relay);
	uint64_t wal = qkm_store_wal_bytes(k->st);
	if (wal >= KMA_CKPT_WAL_BYTES || (wal && mono - k->ckpt_ns >= KMA_CKPT_NS)) {
		k->ckpt_ns = mono;
		int rc = qkm_store_checkpoint(k->st);
		if (rc && rc != QKM_EAGAIN)
			log_warnx("store checkpoint failed: %s", qkm_strerror(rc));
	}
}

void qkm_kma_set_hooks(struct qkm_kma *k, const struct qkm_kma_hooks *h) { k->hooks = *h; }

int qkm_kma_send(struct qkm_kma *k, const char *peer, const uint8_t *frame, size_t len)
{
	/* Frames the relay holds back (group commit) were sent first. */
	qkm_relay_end_batch(k->relay);
	return send_any(k, peer, frame, len);
}

bool qkm_kma_pool_ready(const struct qkm_kma *k, const char *peer)
{
	const struct kma_link *kl = link_by_peer(k, peer);
	if (!kl)
		return qkm_relay_ready(k->relay, peer);
	return kl->kx && qkm_link_is_open(kl->kx) && qkm_acq_reconciled(kl->acq);
}

int qkm_kma_relay_want(struct qkm_kma *k, const char *peer, size_t bytes)
{
	qkm_relay_begin_batch(k->relay);
	int rc = qkm_relay_want(k->relay, peer, bytes, qkm_now_ns());
	qkm_relay_end_batch(k->relay);
	return rc;
}

const char *qkm_kma_relay_why(const struct qkm_kma *k, const char *peer)
{
	return qkm_relay_why(k->relay, peer);
}

void qkm_kma_relay_stats(const struct qkm_kma *k, struct qkm_relay_stats *out)
{
	qkm_relay_stats(k->relay, out);
}

struct qkm_kma *qkm_kma_new(struct event_base *base, const struct qkm_node_cfg *cfg,
			    struct qkm_store *st, SSL_CTX *server_ctx, SSL_CTX *client_ctx)
{
	struct qkm_kma *k = calloc(1, sizeof(*k));
	if (!k)
		return NULL;
	k->base = base;
	k->cfg = cfg;
	k->st = st;
	k->sctx = server_ctx;
	k->cctx = client_ctx;
	k->n_links = cfg->n_links;
	k->links = calloc(cfg->n_links ? cfg->n_links : 1, sizeof(*k->links));
	k->sim_retry_ms = KMA_RETRY_MIN_MS;
	k->ckpt_ns = qkm_mono_ns();
	k->sim_redial = evtimer_new(base, sim_on_redial, k);
	k->tick = event_new(base, -1, EV_PERSIST, kma_on_tick, k);
	k->flush_ev = event_new(base, -1, 0, kma_on_flush, k);
	if (!k->links || !k->sim_redial || !k->tick || !k->flush_ev)
		goto fail;
	for (size_t i = 0; i < cfg->n_links; i++) {
		struct kma_link *kl = &k->links[i];
		struct qkm_acq_cfg ac;
		qkm_acq_cfg_defaults(&ac);
		kl->k = k;
		kl->cfg = cfg->links[i];
		kl->retry_ms = KMA_RETRY_MIN_MS;
		snprintf(ac.self, sizeof(ac.self), "%s", cfg->id);
		snprintf(ac.peer, sizeof(ac.peer), "%s", kl->cfg.peer);
		snprintf(ac.link, sizeof(ac.link), "%s", kl->cfg.link);
		snprintf(ac.module, sizeof(ac.module), "%s", kl->cfg.module);
		ac.unit_bytes = kl->cfg.kma_unit_bits / 8;
		ac.batch_max_bytes = kl->cfg.batch_max_bytes;
		ac.batch_ns = (uint64_t)kl->cfg.batch_ms * 1000000u;
		/* A spool may hand a file over again after a crash. */
		ac.track_ids = kl->cfg.src.kind == QKM_SRC_SPOOL;
		kl->acq = qkm_acq_new(&ac, st, kx_send, kx_mac_key, kl);
		kl->redial = evtimer_new(base, kx_on_redial, kl);
		if (!kl->acq || !kl->redial)
			goto fail;
		qkm_acq_set_paircheck_cb(kl->acq, pc_on_result, kl);
		if (kl->cfg.src.kind == QKM_SRC_ETSI014) {
			struct qkm_device_ops dops = {device_keyfile, kl};
			struct qkm_acq_source_cbs cbs = {NULL, device_missing, kl};
			kl->device = qkm_device_new(base, &kl->cfg.src, kl->cfg.link,
						    kl->cfg.module, &dops);
			if (!kl->device)
				goto fail;
			qkm_acq_set_source_cbs(kl->acq, &cbs);
		}
		if (kl->cfg.src.kind == QKM_SRC_SPOOL) {
			struct qkm_spool_ops so = {spool_take, spool_rejected, spool_forget, kl};
			struct qkm_acq_source_cbs cbs = {spool_on_settled, NULL, kl};
			if (!(kl->spool = qkm_spool_new(kl->cfg.src.dir, kl->cfg.link, &so)))
				goto fail;
			qkm_acq_set_source_cbs(kl->acq, &cbs);
			log_info("link %s: key files from spool %s", kl->cfg.link, kl->cfg.src.dir);
		}
	}
	struct qkm_relay_ops ro = {relay_op_send, relay_op_send_direct, relay_op_send_to,
				   relay_op_link_ready, relay_op_on_pool, k};
	if (!(k->relay = qkm_relay_new(cfg, st, &ro)))
		goto fail;
	k->listener = qkm_listener_new(base, cfg->kx_listen, kx_accept, k);
	if (!k->listener)
		goto fail;
	for (size_t i = 0; i < k->n_links; i++)
		if (qkm_acq_is_leader(k->links[i].acq))
			kx_dial(&k->links[i]);
	bool any_sim = false;
	for (size_t i = 0; i < k->n_links; i++)
		any_sim = any_sim || k->links[i].cfg.src.kind == QKM_SRC_SIM;
	if (cfg->sim[0] && any_sim)
		sim_dial(k);
	struct timeval tv = {0, KMA_TICK_MS * 1000L};
	event_add(k->tick, &tv);
	return k;
fail:
	qkm_kma_free(k);
	return NULL;
}

void qkm_kma_free(struct qkm_kma *k)
{
	if (!k)
		return;
	while (k->pcs)
		pc_finish(k, k->pcs, NULL, QKM_ESTATE);
	/* The first one's prevp is &k->inbound: unlinking it moves k->inbound on. */
	while (k->inbound) {
		struct kma_inbound *in = k->inbound;
		qkm_link_free(in->l); /* NOLINT(clang-analyzer-unix.Malloc) */
		inbound_unlink(in);
	}
	/* Decided rounds are stored (and their COMMITs sent) before the links go. */
	for (size_t i = 0; k->links && i < k->n_links; i++)
		if (k->links[i].acq)
			qkm_acq_flush(k->links[i].acq);
	/* Files those rounds settled leave the spools now (any left in
	 * flight are read again at the next start). */
	for (size_t i = 0; k->links && i < k->n_links; i++)
		if (k->links[i].spool && k->links[i].settled)
			spool_poll(&k->links[i], 0);
	for (size_t i = 0; k->links && i < k->n_links; i++) {
		struct kma_link *kl = &k->links[i];
		qkm_link_free(kl->kx);
		if (kl->redial)
			event_free(kl->redial);
		free(kl->sync_body); /* as if it never came: the peer sends another */
		qkm_device_free(kl->device); /* its worker stops before acq goes */
		qkm_acq_free(kl->acq);
		qkm_spool_free(kl->spool);
	}
	qkm_link_free(k->sim);
	if (k->sim_redial)
		event_free(k->sim_redial);
	if (k->tick)
		event_free(k->tick);
	if (k->flush_ev)
		event_free(k->flush_ev);
	qkm_listener_free(k->listener);
	while (k->directs) /* each d->k is k: direct_free unlinks it from k->directs */
		direct_free(k->directs); /* NOLINT(clang-analyzer-unix.Malloc) */
	qkm_relay_free(k->relay);
	free(k->links);
	free(k);
}

size_t qkm_kma_n_links(const struct qkm_kma *k) { return k->n_links; }

void qkm_kma_link_status(const struct qkm_kma *k, size_t i, struct qkm_kma_link_status *out)
{
	const struct kma_link *kl = &k->links[i];
	memset(out, 0, sizeof(*out));
	snprintf(out->link, sizeof(out->link), "%s", kl->cfg.link);
	snprintf(out->peer, sizeof(out->peer), "%s", kl->cfg.peer);
	snprintf(out->module, sizeof(out->module), "%s", kl->cfg.module);
	out->leader = qkm_acq_is_leader(kl->acq);
	out->kx_up = kl->kx && qkm_link_is_open(kl->kx);
	out->reconciled = qkm_acq_reconciled(kl->acq);
	out->module_up = kl->cfg.src.kind == QKM_SRC_SIM ? k->sim && kl->module_up : kl->module_up;
	out->qber_ppm = kl->qber_ppm;
	out->rate_bps = kl->rate_bps;
	snprintf(out->alarm, sizeof(out->alarm), "%s", kl->alarm);
	qkm_acq_stats(kl->acq, &out->acq);
}

int qkm_kma_set_routes(struct qkm_kma *k, const struct qkm_node_route *r, size_t n)
{
	int changed = 0;
	for (size_t i = 0; i < n; i++) {
		int rc = qkm_relay_set_route(k->relay, &r[i]);
		if (rc < 0) {
			log_warnx("route to %s from the controller not applied: %s", r[i].to,
				  qkm_strerror(rc));
			continue;
		}
		if (rc == 0)
			continue;
		changed++;
		char path[QKM_MAX_PATH * (QKM_NAME_MAX + 1)] = "";
		for (uint32_t j = 0; j < r[i].n; j++)
			snprintf(path + strlen(path), sizeof(path) - strlen(path), "%s%s",
				 j ? ">" : "", r[i].path[j]);
		log_info("route to %s is now %s", r[i].to, path);
		struct qkm_lc_event ev = {0};
		snprintf(ev.event, sizeof(ev.event), "route-set");
		snprintf(ev.key_kind, sizeof(ev.key_kind), "route");
		snprintf(ev.key_id, sizeof(ev.key_id), "%s", r[i].to);
		snprintf(ev.peer, sizeof(ev.peer), "%s", r[i].to);
		snprintf(ev.detail, sizeof(ev.detail), "relays to %s take %s (from the controller)",
			 r[i].to, path);
		if (qkm_store_record(k->st, &ev))
			log_warnx("route to %s: life-cycle record not stored", r[i].to);
		/* The end-to-end pool is usable as far as its new first hop is. */
		if (k->hooks.on_pool)
			k->hooks.on_pool(r[i].to, qkm_relay_ready(k->relay, r[i].to), k->hooks.arg);
	}
	return changed;
}

int qkm_kma_relay_plan(struct qkm_kma *k, const char *to, bool set_rate, uint64_t rate,
		       uint64_t bytes)
{
	int rc = set_rate ? qkm_relay_set_rate(k->relay, to, rate, qkm_now_ns())
			  : qkm_relay_push(k->relay, to, bytes);
	if (rc)
		log_warnx("relay instruction for %s from the controller not applied: %s", to,
			  qkm_strerror(rc));
	return rc;
}
