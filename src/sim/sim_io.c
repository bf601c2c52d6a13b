/* sim_io.c - the simulator daemon on its event loop (sim.h). Generation is
 * paced by a 10 ms tick; each link's modules share one random draw per
 * QKD-key, so both sides hold identical bits unless a fault says otherwise. */
#include "sim/sim.h"
#include "core/keyfile.h"
#include "core/log.h"
#include "core/secret.h"
#include "kma/spool.h"
#include "net/http.h"
#include "net/link.h"
#include "sim/fault.h"
#include "sim/kme.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/listener.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define SIM_TICK_MS 10
#define SIM_STATUS_MS 1000
#define SIM_SEND_HIGH (8u << 20) /* keep at most this much queued in TLS */

/* One QKD-key's bits as a module holds them until its node reads them:
 * shared by the two modules of a link (refs), unless a fault gave one side
 * its own copy. */
struct sim_key {
	unsigned refs;
	struct qkm_secret *data;
	uint8_t hash[32]; /* SHA-256 of data, as the module computed it */
};

/* One KEYFILE frame waiting for its side's node. It is built straight into
 * the link's send queue when there is room (side_drain): the key bits are
 * copied once, not into a frame of their own first. */
struct sim_frame {
	struct sim_frame *next;
	struct sim_link *lk;
	int idx;              /* the side */
	struct sim_key *key;
	char id[QKM_NAME_MAX];
	uint64_t ts;
	bool corrupt;         /* a driver bug: deliver it cut short */
	size_t bytes;         /* what it counts in the side's backlog */
};

struct sim_side {
	struct sim_link *link;
	int idx;
	struct qkm_link *conn;    /* subscribed node link, or NULL */
	struct sim_frame *head, *tail;
	size_t backlog;           /* bytes queued in head..tail */
	uint32_t flip_next;       /* bits to flip in the next file */
	int drop_next;            /* files to lose */
	int corrupt_next;         /* files to deliver malformed */
	uint64_t dropped_backlog; /* files lost to the backlog bound */
	size_t frame_meta;        /* a KEYFILE frame's bytes beyond its key data; 0: not known */
};

struct sim_link {
	struct qkm_sim *sim;
	struct qkm_sim_link cfg;
	struct sim_side side[2];
	uint64_t seq;
	double acc_bits;
	uint64_t paused;          /* keys not produced: module store full */
	int up;
	double qber;
	struct qkm_kme *kme;      /* the pair's ETSI 014 key API (cfg.etsi014), or NULL */
	struct qkm_http_server *kme_http;
};

struct sim_conn {
	struct sim_conn *next, **prevp;
	struct qkm_sim *sim;
	struct qkm_link *l;
};

struct qkm_sim {
	struct event_base *base;
	struct qkm_sim_cfg cfg;
	SSL_CTX *ctx;
	struct qkm_listener *listener;
	struct evconnlistener *control;
	struct event *tick, *status;
	uint64_t last_ns;
	struct sim_link *links;
	size_t n_links;
	struct sim_conn *conns;
};

static int link_alarm(const struct sim_link *lk) { return lk->qber > lk->cfg.qber_threshold; }
static int link_producing(const struct sim_link *lk) { return lk->up && !link_alarm(lk); }

/* ---- delivery ---------------------------------------------------------- */

static void key_unref(struct sim_key *k)
{
	if (k && --k->refs == 0) {
		qkm_secret_free(k->data);
		free(k);
	}
}

static void frame_free(struct sim_frame *f)
{
	key_unref(f->key);
	free(f);
}

static int build_frame(struct qkm_buf *out, void *arg);

static void side_drain(struct sim_side *sd)
{
	while (sd->head && sd->conn && qkm_link_pending(sd->conn) < SIM_SEND_HIGH) {
		struct sim_frame *f = sd->head;
		int rc = qkm_link_send_built(sd->conn, build_frame, f);
		if (rc == QKM_ESTATE || rc == QKM_ETOOBIG || rc == QKM_ENOMEM)
			return; /* the link is going, full, or short of memory: it waits */
		if (rc)
			log_warnx("link %s module %s: QKD-key %s lost: %s", f->lk->cfg.id,
				  f->lk->cfg.module[f->idx], f->id, qkm_strerror(rc));
		sd->head = f->next;
		if (!sd->head)
			sd->tail = NULL;
		sd->backlog -= f->bytes;
		frame_free(f);
	}
}

static void side_clear(struct sim_side *sd)
{
	while (sd->head) {
		struct sim_frame *f = sd->head;
		sd->head = f->next;
		frame_free(f);
	}
	sd->tail = NULL;
	sd->backlog = 0;
}

/* Queues f (taken) for a side; the oldest files give way when the module's
 * buffer is full, as a real module's would. */
static void side_push(struct sim_side *sd, struct sim_frame *f)
{
	f->next = NULL;
	if (sd->tail)
		sd->tail->next = f;
	else
		sd->head = f;
	sd->tail = f;
	sd->backlog += f->bytes;
	while (sd->backlog > sd->link->sim->cfg.backlog_bytes && sd->head != sd->tail) {
		struct sim_frame *old = sd->head;
		sd->head = old->next;
		sd->backlog -= old->bytes;
		frame_free(old);
		if (sd->dropped_backlog++ % 1000 == 0)
			log_warnx("link %s module %s: buffer full, oldest QKD-keys lost",
				  sd->link->cfg.id, sd->link->cfg.module[sd->idx]);
	}
	side_drain(sd);
}

/* Room for everything in a KEYFILE frame but the key data: frame header,
 * LINK and KEYFILE TLV headers, the Table 1 item (1) fields (four names of
 * at most QKM_NAME_MAX, length, time stamp, hash) and the key_data header. */
#define SIM_FRAME_META 1024u

static int sha256(const struct qkm_secret *s, uint8_t md[static 32])
{
	unsigned int hl = 32;
	return EVP_Digest(s->p, s->len, md, &hl, EVP_sha256(), NULL) == 1 && hl == 32 ? 0 : -1;
}

/* The Table 1 metadata of a QKD-key file from side idx of link lk, as the
 * module sends it (over Kq-1 or into a spool): data is borrowed, and the
 * caller sets kf->data back to NULL before qkm_keyfile_fini. */
static void qkd_keyfile_fill(struct qkm_keyfile *kf, const struct sim_link *lk, int idx,
			     const char *qkd_id, struct qkm_secret *data,
			     const uint8_t hash[static 32], uint64_t ts)
{
	kf->data = data;
	snprintf(kf->m.qkd.qkd_key_id, QKM_NAME_MAX, "%s", qkd_id);
	kf->m.qkd.key_length = (uint32_t)(data->len * 8);
	snprintf(kf->m.qkd.qkd_module_id, QKM_NAME_MAX, "%s", lk->cfg.module[idx]);
	snprintf(kf->m.qkd.matching_qkd_module_id, QKM_NAME_MAX, "%s", lk->cfg.module[!idx]);
	kf->m.qkd.generation_time_stamp = ts;
	kf->m.qkd.has_hash = true;
	memcpy(kf->m.qkd.hash_value, hash, 32);
}

/* Appends the KEYFILE frame of one side's copy of a QKD-key (arg, a struct
 * sim_frame) to out, the link's send queue (qkm_link_send_built). */
static int build_frame(struct qkm_buf *b, void *arg)
{
	const struct sim_frame *f = arg;
	struct qkm_keyfile kf;
	size_t start, kstart;
	int rc;
	qkm_keyfile_init(&kf, QKM_KF_QKD);
	if ((rc = qkm_buf_reserve(b, f->key->data->len + SIM_FRAME_META)))
		goto out;
	qkd_keyfile_fill(&kf, f->lk, f->idx, f->id, f->key->data, f->key->hash, f->ts);
	/* The hash was computed over data at generation: the encoder need not
	 * redo it (a node checks it only to name a damaged copy, protocol.md 4.2). */
	if ((rc = qkm_frame_begin(b, QKM_MSG_KEYFILE, 0, &start)) ||
	    (rc = qkm_put_str(b, QKM_T_LINK, f->lk->cfg.id)) ||
	    (rc = qkm_put_open(b, QKM_T_KEYFILE, &kstart)) ||
	    (rc = qkm_keyfile_encode_hashed(&kf, b)))
		goto out;
	if (f->corrupt) {
		/* A module driver bug: the key file is cut short in transit. */
		qkm_cleanse(b->p + b->len - 7, 7);
		b->len -= 7;
	}
	rc = qkm_put_close(b, kstart);
	if (!rc)
		rc = qkm_frame_end(b, start);
out:
	kf.data = NULL;
	qkm_keyfile_fini(&kf);
	return rc;
}

/* A KEYFILE frame's bytes beyond its key data, for the side's backlog:
 * measured by building f once (a side's names do not change, the ID's
 * digits add a byte now and then). */
static size_t frame_meta(struct sim_frame *f)
{
	struct qkm_buf b;
	qkm_buf_init(&b, f->key->data->len + SIM_FRAME_META, true);
	size_t m = build_frame(&b, f) == 0 && b.len > f->key->data->len ? b.len - f->key->data->len
									   : SIM_FRAME_META;
	qkm_buf_fini(&b);
	return m;
}

/* Queues one side's copy of a QKD-key for its node; takes a reference. */
static void frame_push(struct sim_link *lk, int idx, const char *qkd_id, struct sim_key *key,
		       uint64_t ts)
{
	struct sim_side *sd = &lk->side[idx];
	struct sim_frame *f = calloc(1, sizeof(*f));
	if (!f)
		return;
	f->lk = lk;
	f->idx = idx;
	f->key = key;
	key->refs++;
	snprintf(f->id, sizeof(f->id), "%s", qkd_id);
	f->ts = ts;
	if (!sd->frame_meta)
		sd->frame_meta = frame_meta(f);
	f->bytes = key->data->len + sd->frame_meta;
	if (sd->corrupt_next) {
		sd->corrupt_next--;
		f->corrupt = true;
		log_info("link %s module %s: QKD-key %s sent malformed", lk->cfg.id,
			 lk->cfg.module[idx], qkd_id);
	}
	side_push(sd, f);
}

/* A side whose node reads a spool directory: the module's driver writes the
 * QKD-key file there (NAME.tmp renamed to NAME.qkd, kma/spool.h), named by
 * generation time and sequence so that names sort in generation order
 * across restarts of the simulator. No fsync: the simulator plays a module
 * on the same machine, whose crash the test does not simulate (a real
 * driver syncs before the rename). */
static void spool_push(struct sim_link *lk, int idx, const char *qkd_id, struct qkm_secret *data,
		       const uint8_t hash[static 32], uint64_t ts)
{
	struct sim_side *sd = &lk->side[idx];
	struct qkm_keyfile kf;
	struct qkm_buf b;
	char name[64];
	qkm_keyfile_init(&kf, QKM_KF_QKD);
	qkm_buf_init(&b, data->len + SIM_FRAME_META, true);
	qkd_keyfile_fill(&kf, lk, idx, qkd_id, data, hash, ts);
	snprintf(name, sizeof(name), "%020llu-%012llu", (unsigned long long)ts,
		 (unsigned long long)lk->seq);
	int rc = qkm_keyfile_encode_hashed(&kf, &b);
	if (!rc && sd->corrupt_next) {
		/* A driver bug: the file is cut short (and still renamed). */
		sd->corrupt_next--;
		qkm_cleanse(b.p + b.len - 7, 7);
		b.len -= 7;
		log_info("link %s module %s: QKD-key %s written malformed", lk->cfg.id,
			 lk->cfg.module[idx], qkd_id);
	}
	if (!rc)
		rc = qkm_spool_write(lk->cfg.spool[idx], name, b.p, b.len, false);
	if (rc) {
		if (sd->dropped_backlog++ % 1000 == 0)
			log_warnx("link %s module %s: QKD-key %s not written to %s: %s", lk->cfg.id,
				  lk->cfg.module[idx], qkd_id, lk->cfg.spool[idx], qkm_strerror(rc));
	} else {
		sd->backlog += b.len;
	}
	kf.data = NULL;
	qkm_keyfile_fini(&kf);
	qkm_buf_fini(&b);
}

/* A module whose error correction failed: its copy of the bits differs, and
 * its own hash describes its own (wrong) bits. Returns the flipped copy and
 * its hash (OUT), or NULL. */
static struct qkm_secret *flip_copy(struct sim_link *lk, int idx, const char *qkd_id,
				    const struct qkm_secret *data, uint8_t hash[static 32])
{
	struct qkm_secret *c = qkm_secret_dup(data->p, data->len);
	if (!c)
		return NULL;
	for (uint32_t i = 0; i < lk->side[idx].flip_next; i++) {
		uint32_t r;
		if (RAND_bytes((uint8_t *)&r, sizeof(r)) != 1)
			goto fail;
		r %= (uint32_t)(data->len * 8);
		c->p[r / 8] ^= (uint8_t)(1u << (r % 8));
	}
	if (sha256(c, hash))
		goto fail;
	log_info("link %s module %s: flipped %u bits of QKD-key %s", lk->cfg.id,
		 lk->cfg.module[idx], lk->side[idx].flip_next, qkd_id);
	lk->side[idx].flip_next = 0;
	return c;
fail:
	qkm_secret_free(c);
	return NULL;
}

/* A pair with a key API: the key waits in the device for the master SAE;
 * faults make the two modules' copies differ, or lose one. */
static void kme_push(struct sim_link *lk, const char *id, struct qkm_secret *data)
{
	struct qkm_secret *copy[2] = {data, data}, *flipped[2] = {NULL, NULL};
	uint8_t h[32];
	bool lost[2] = {false, false};
	for (int i = 0; i < 2; i++) {
		struct sim_side *sd = &lk->side[i];
		if (sd->drop_next) {
			sd->drop_next--;
			lost[i] = true;
			log_info("link %s module %s: QKD-key %s lost", lk->cfg.id,
				 lk->cfg.module[i], id);
		} else if (sd->flip_next) {
			if (!(flipped[i] = flip_copy(lk, i, id, data, h)))
				lost[i] = true;
			else
				copy[i] = flipped[i];
		}
		if (sd->corrupt_next) {
			sd->corrupt_next--;
			log_info("link %s module %s: a malformed key file means nothing to a key API; "
				 "fault ignored", lk->cfg.id, lk->cfg.module[i]);
		}
	}
	/* Lost at the master's module: nobody will ever ask the slave for it. */
	if (!lost[0]) {
		int rc = qkm_kme_add(lk->kme, id, copy[0], lost[1] ? NULL : copy[1]);
		if (rc)
			log_warnx("link %s: QKD-key %s not kept in the key API: %s", lk->cfg.id, id,
				  qkm_strerror(rc));
	}
	qkm_secret_free(flipped[0]);
	qkm_secret_free(flipped[1]);
}

/* One QKD-key: one random draw and one hash, shared by both modules unless a
 * fault makes one side's bits differ (then only that side is re-hashed). */
static void link_generate_one(struct sim_link *lk, uint64_t ts)
{
	size_t n = lk->cfg.unit_bits / 8;
	struct sim_key *key = calloc(1, sizeof(*key));
	char id[QKM_NAME_MAX + 24];
	if (!key)
		return;
	key->refs = 1; /* this function's, until its end */
	struct qkm_secret *data = key->data = qkm_secret_new_raw(n); /* every byte drawn below */
	uint8_t *hash = key->hash;
	if (!data || RAND_priv_bytes(data->p, (int)n) != 1 || sha256(data, hash))
		goto out;
	/* QKD-key IDs: "<link>.<sequence>"; a link name leaves room (the
	 * config caps link names so the whole ID stays a valid name). */
	int idn = snprintf(id, sizeof(id), "%s.%llu", lk->cfg.id, (unsigned long long)++lk->seq);
	if (idn < 0 || idn >= QKM_NAME_MAX)
		goto out;
	if (lk->kme) {
		kme_push(lk, id, data);
		goto out;
	}
	for (int i = 0; i < 2; i++) {
		struct sim_side *sd = &lk->side[i];
		struct sim_key *own = NULL;
		if (sd->drop_next) {
			sd->drop_next--;
			log_info("link %s module %s: QKD-key %s lost", lk->cfg.id,
				 lk->cfg.module[i], id);
			continue;
		}
		if (sd->flip_next) {
			if (!(own = calloc(1, sizeof(*own))))
				continue;
			own->refs = 1;
			if (!(own->data = flip_copy(lk, i, id, data, own->hash))) {
				key_unref(own);
				continue;
			}
		}
		struct sim_key *k = own ? own : key;
		if (lk->cfg.spool[i][0])
			spool_push(lk, i, id, k->data, k->hash, ts);
		else
			frame_push(lk, i, id, k, ts);
		key_unref(own);
	}
out:
	key_unref(key);
}

static void sim_on_tick(evutil_socket_t fd, short what, void *arg)
{
	struct qkm_sim *s = arg;
	uint64_t now = qkm_mono_ns(), ts = qkm_now_ns();
	uint64_t dt = now - s->last_ns;
	s->last_ns = now;
	if (dt > 200000000u)
		dt = 200000000u; /* after a stall, do not burst more than 200 ms */
	for (size_t i = 0; i < s->n_links; i++) {
		struct sim_link *lk = &s->links[i];
		for (int k = 0; k < 2; k++)
			side_drain(&lk->side[k]);
		if (!link_producing(lk))
			continue;
		lk->acc_bits += (double)lk->cfg.rate_bps * (double)dt / 1e9;
		while (lk->acc_bits >= lk->cfg.unit_bits) {
			lk->acc_bits -= lk->cfg.unit_bits;
			/* A module pair whose key store is full stops distilling
			 * key, on both sides at once: the two ends never drift
			 * apart because one node reads slower than the other. */
			uint64_t need = lk->side[0].backlog > lk->side[1].backlog
						? lk->side[0].backlog
						: lk->side[1].backlog;
			need += lk->cfg.unit_bits / 8 + 4096;
			if (lk->kme ? qkm_kme_full(lk->kme) : need > lk->sim->cfg.backlog_bytes) {
				if (lk->paused++ % 1000 == 0)
					log_warnx("link %s: module key store full; generation paused "
						  "(a node is not reading)", lk->cfg.id);
				continue;
			}
			link_generate_one(lk, ts);
		}
	}
}

/* ---- status (Kq-2) ----------------------------------------------------- */

static void side_send_status(struct sim_side *sd)
{
	struct sim_link *lk = sd->link;
	struct qkm_buf b;
	size_t start;
	if (!sd->conn)
		return;
	qkm_buf_init(&b, 4096, false);
	uint64_t rate = link_producing(lk) ? lk->cfg.rate_bps : 0;
	if (!qkm_frame_begin(&b, QKM_MSG_MODSTATUS, 0, &start) &&
	    !qkm_put_str(&b, QKM_T_LINK, lk->cfg.id) &&
	    !qkm_put_str(&b, QKM_T_MODULE, lk->cfg.module[sd->idx]) &&
	    !qkm_put_u32(&b, QKM_T_QBER, (uint32_t)(lk->qber * 1e6 + 0.5)) &&
	    !qkm_put_u64(&b, QKM_T_RATE, rate) && !qkm_put_u8(&b, QKM_T_UP, (uint8_t)lk->up) &&
	    (!link_alarm(lk) || !qkm_put_str(&b, QKM_T_ALARM, "qber-above-threshold")) &&
	    !qkm_frame_end(&b, start) && qkm_link_send(sd->conn, b.p, b.len))
		log_warnx("link %s: status to %s not queued", lk->cfg.id, lk->cfg.node[sd->idx]);
	qkm_buf_fini(&b);
}

static void link_send_status(struct sim_link *lk)
{
	side_send_status(&lk->side[0]);
	side_send_status(&lk->side[1]);
}

static void sim_on_status(evutil_socket_t fd, short what, void *arg)
{
	struct qkm_sim *s = arg;
	for (size_t i = 0; i < s->n_links; i++) {
		link_send_status(&s->links[i]);
		/* A spool side's buffer is what its node has not taken yet. */
		for (int k = 0; k < 2; k++) {
			const char *dir = s->links[i].cfg.spool[k];
			int64_t n = dir[0] ? qkm_spool_bytes(dir) : -1;
			if (n >= 0)
				s->links[i].side[k].backlog = (size_t)n;
		}
	}
}

/* ---- node links (Kq-1) ------------------------------------------------- */

static void conn_on_open(struct qkm_link *l, void *arg)
{
	struct sim_conn *c = arg;
	if (strcmp(qkm_link_peer_role(l), "node") != 0) {
		qkm_link_close(l, QKM_EPERM, "only nodes may subscribe");
		return;
	}
	log_info("node %s connected", qkm_link_peer_name(l));
	(void)c;
}

static struct sim_link *sim_find_link(struct qkm_sim *s, const char *id)
{
	for (size_t i = 0; i < s->n_links; i++)
		if (strcmp(s->links[i].cfg.id, id) == 0)
			return &s->links[i];
	return NULL;
}

static void conn_on_frame(struct qkm_link *l, const struct qkm_frame *f, void *arg)
{
	struct sim_conn *c = arg;
	char link[QKM_NAME_MAX], module[QKM_NAME_MAX];
	if (f->type == QKM_MSG_PING || f->type == QKM_MSG_PONG)
		return;
	if (f->type != QKM_MSG_SUBSCRIBE) {
		qkm_link_send_error(l, f->req, QKM_EPEER, "unexpected message");
		return;
	}
	if (qkm_tlv_str(f->body, f->body_len, QKM_T_LINK, link, sizeof(link), true) ||
	    qkm_tlv_str(f->body, f->body_len, QKM_T_MODULE, module, sizeof(module), true)) {
		qkm_link_close(l, QKM_EPEER, "malformed SUBSCRIBE");
		return;
	}
	struct sim_link *lk = sim_find_link(c->sim, link);
	int idx = -1;
	for (int i = 0; lk && i < 2; i++)
		if (strcmp(lk->cfg.module[i], module) == 0 &&
		    strcmp(lk->cfg.node[i], qkm_link_peer_name(l)) == 0)
			idx = i;
	if (idx < 0) {
		log_warnx("node %s asked for module %s of link %s: not its module",
			  qkm_link_peer_name(l), module, link);
		qkm_link_send_error(l, f->req, QKM_EPERM, "no such module for this node");
		return;
	}
	struct sim_side *sd = &lk->side[idx];
	if (sd->conn && sd->conn != l)
		qkm_link_close(sd->conn, QKM_EIO, "replaced by a new subscription");
	sd->conn = l;
	log_info("node %s subscribed to module %s (%zu bytes buffered)", qkm_link_peer_name(l),
		 module, sd->backlog);
	side_send_status(sd);
	side_drain(sd);
}

static void conn_on_close(struct qkm_link *l, int err, const char *why, void *arg)
{
	struct sim_conn *c = arg;
	struct qkm_sim *s = c->sim;
	for (size_t i = 0; i < s->n_links; i++)
		for (int k = 0; k < 2; k++)
			if (s->links[i].side[k].conn == l)
				s->links[i].side[k].conn = NULL;
	log_info("link from %s closed: %s", qkm_link_peer_name(l)[0] ? qkm_link_peer_name(l) : "?",
		 why);
	*c->prevp = c->next;
	if (c->next)
		c->next->prevp = c->prevp;
	free(c);
}

static const struct qkm_link_cbs conn_cbs = {conn_on_open, conn_on_frame, conn_on_close};

static void sim_on_accept(int fd, void *arg)
{
	struct qkm_sim *s = arg;
	struct sim_conn *c = calloc(1, sizeof(*c));
	if (!c) {
		close(fd);
		return;
	}
	c->sim = s;
	c->l = qkm_link_accept(s->base, s->ctx, s->cfg.name, fd, &conn_cbs, c);
	if (!c->l) {
		free(c);
		return;
	}
	c->next = s->conns;
	if (c->next)
		c->next->prevp = &c->next;
	c->prevp = &s->conns;
	s->conns = c;
}

/* ---- the pairs' key APIs (ETSI 014, sim/kme.h) -------------------------- */

static void kme_on_request(struct qkm_http_req *req, void *arg)
{
	struct sim_link *lk = arg;
	struct qkm_buf out;
	qkm_buf_init(&out, (size_t)64 << 20, true);
	int code = qkm_kme_request(lk->kme, req->name, req->method, req->path, req->query,
				   req->body, req->body_len, &out);
	if (code != 200)
		log_info("link %s key API: %s %s from %s: %d", lk->cfg.id, req->method, req->path,
			 req->name, code);
	qkm_http_reply(req, code, "application/json", out.p, out.len, true);
	qkm_buf_fini(&out);
}

static int kme_start(struct qkm_sim *s, struct sim_link *lk)
{
	struct qkm_kme_cfg c;
	memset(&c, 0, sizeof(c));
	snprintf(c.master_sae, sizeof(c.master_sae), "%s", lk->cfg.node[0]);
	snprintf(c.slave_sae, sizeof(c.slave_sae), "%s", lk->cfg.node[1]);
	snprintf(c.master_kme, sizeof(c.master_kme), "%s", lk->cfg.module[0]);
	snprintf(c.slave_kme, sizeof(c.slave_kme), "%s", lk->cfg.module[1]);
	c.key_bytes = lk->cfg.unit_bits / 8;
	c.max_bytes = s->cfg.backlog_bytes;
	if (!(lk->kme = qkm_kme_new(&c)))
		return QKM_ENOMEM;
	lk->kme_http = qkm_http_server_new(s->base, s->ctx, lk->cfg.etsi014, 1u << 20,
					   kme_on_request, lk);
	if (!lk->kme_http)
		return QKM_EIO;
	log_info("link %s: ETSI 014 key API on https://%s (master SAE %s, slave SAE %s)",
		 lk->cfg.id, lk->cfg.etsi014, c.master_sae, c.slave_sae);
	return 0;
}

/* ---- control socket ---------------------------------------------------- */

static int sim_apply_fault(struct qkm_sim *s, const struct qkm_fault *f, char *msg, size_t n)
{
	struct sim_link *lk = sim_find_link(s, f->link);
	if (!lk) {
		/* Accept the reversed name too: "B-A" for "A-B". */
		for (size_t i = 0; i < s->n_links && !lk; i++) {
			char rev[2 * QKM_NAME_MAX + 2];
			snprintf(rev, sizeof(rev), "%s-%s", s->links[i].cfg.node[1],
				 s->links[i].cfg.node[0]);
			if (strcmp(rev, f->link) == 0)
				lk = &s->links[i];
		}
	}
	if (!lk) {
		/* Name the links it has (as many as fit). */
		size_t used = (size_t)snprintf(msg, n, "no link named '%s'; the simulator has", f->link);
		for (size_t i = 0; i < s->n_links && used < n; i++)
			used += (size_t)snprintf(msg + used, n - used, "%s %s", i ? "," : "",
						 s->links[i].cfg.id);
		return QKM_ENOTFOUND;
	}
	int idx = 1;
	if (strcmp(f->side, "-") != 0) {
		if (strcmp(f->side, lk->cfg.node[0]) == 0)
			idx = 0;
		else if (strcmp(f->side, lk->cfg.node[1]) != 0) {
			snprintf(msg, n, "node '%s' is not on link %s", f->side, lk->cfg.id);
			return QKM_ENOTFOUND;
		}
	}
	switch (f->kind) {
	case QKM_FAULT_FLIP:
		lk->side[idx].flip_next += f->flips;
		snprintf(msg, n, "next QKD-key of %s (node %s) gets %u flipped bits",
			 lk->cfg.module[idx], lk->cfg.node[idx], f->flips);
		break;
	case QKM_FAULT_DROP:
		lk->side[idx].drop_next++;
		snprintf(msg, n, "next QKD-key of %s (node %s) will be lost", lk->cfg.module[idx],
			 lk->cfg.node[idx]);
		break;
	case QKM_FAULT_CORRUPT:
		lk->side[idx].corrupt_next++;
		snprintf(msg, n, "next key file of %s (node %s) will be malformed",
			 lk->cfg.module[idx], lk->cfg.node[idx]);
		break;
	case QKM_FAULT_QBER:
		lk->qber = f->qber;
		snprintf(msg, n, "link %s QBER %.4f (threshold %.4f)%s", lk->cfg.id, lk->qber,
			 lk->cfg.qber_threshold, link_alarm(lk) ? ": ALARM, no key produced" : "");
		break;
	case QKM_FAULT_DOWN:
		lk->up = 0;
		snprintf(msg, n, "link %s down", lk->cfg.id);
		break;
	case QKM_FAULT_UP:
		lk->up = 1;
		snprintf(msg, n, "link %s up", lk->cfg.id);
		break;
	}
	log_info("fault: %s", msg);
	link_send_status(lk);
	return 0;
}

static void control_on_read(struct bufferevent *bev, void *arg)
{
	struct qkm_sim *s = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	char *line;
	size_t n;
	while ((line = evbuffer_readln(in, &n, EVBUFFER_EOL_LF)) != NULL) {
		struct qkm_fault f;
		char err[200], msg[256];
		if (qkm_fault_parse(line, &f, err, sizeof(err)) == 0 &&
		    sim_apply_fault(s, &f, err, sizeof(err)) == 0)
			snprintf(msg, sizeof(msg), "ok %s\n", err);
		else
			snprintf(msg, sizeof(msg), "error: %s\n", err);
		free(line);
		bufferevent_write(bev, msg, strlen(msg));
	}
	if (evbuffer_get_length(in) > 1024)
		bufferevent_free(bev);
}

static void control_on_event(struct bufferevent *bev, short what, void *arg)
{
	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
		bufferevent_free(bev);
}

static void control_on_accept(struct evconnlistener *ev, evutil_socket_t fd, struct sockaddr *sa,
			      int salen, void *arg)
{
	struct qkm_sim *s = arg;
	struct bufferevent *bev = bufferevent_socket_new(s->base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (!bev) {
		close(fd);
		return;
	}
	bufferevent_setcb(bev, control_on_read, NULL, control_on_event, s);
	bufferevent_enable(bev, EV_READ | EV_WRITE);
}

static struct evconnlistener *control_listen(struct qkm_sim *s)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	if (strlen(s->cfg.control) >= sizeof(sun.sun_path)) {
		log_warnx("control socket path too long: %s", s->cfg.control);
		return NULL;
	}
	memcpy(sun.sun_path, s->cfg.control, strlen(s->cfg.control) + 1);
	unlink(s->cfg.control);
	mode_t old = umask(077); /* operator only: faults are privileged */
	struct evconnlistener *ev = evconnlistener_new_bind(
		s->base, control_on_accept, s, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, 16,
		(struct sockaddr *)&sun, sizeof(sun));
	umask(old);
	if (!ev)
		log_warn("cannot listen on control socket %s", s->cfg.control);
	return ev;
}

/* ---- life ------------------------------------------------------------- */

struct qkm_sim *qkm_sim_new(struct event_base *base, const struct qkm_sim_cfg *cfg)
{
	struct qkm_sim *s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->base = base;
	s->cfg = *cfg;
	s->n_links = cfg->n_links;
	s->links = calloc(cfg->n_links ? cfg->n_links : 1, sizeof(*s->links));
	if (!s->links)
		goto fail;
	for (size_t i = 0; i < cfg->n_links; i++) {
		struct sim_link *lk = &s->links[i];
		lk->sim = s;
		lk->cfg = cfg->links[i];
		lk->up = 1;
		lk->qber = lk->cfg.qber;
		for (int k = 0; k < 2; k++) {
			lk->side[k].link = lk;
			lk->side[k].idx = k;
			if (lk->cfg.spool[k][0] && qkm_spool_mkdir(lk->cfg.spool[k])) {
				log_warn("link %s: spool %s cannot be created", lk->cfg.id,
					 lk->cfg.spool[k]);
				goto fail;
			}
			if (lk->cfg.spool[k][0])
				log_info("link %s module %s: key files into spool %s", lk->cfg.id,
					 lk->cfg.module[k], lk->cfg.spool[k]);
		}
	}
	s->ctx = qkm_tls_ctx_new(cfg->tls.ca, cfg->tls.cert, cfg->tls.key, true);
	if (!s->ctx)
		goto fail;
	for (size_t i = 0; i < s->n_links; i++)
		if (s->links[i].cfg.etsi014[0] && kme_start(s, &s->links[i]))
			goto fail;
	s->listener = qkm_listener_new(base, cfg->listen, sim_on_accept, s);
	s->control = control_listen(s);
	if (!s->listener || !s->control)
		goto fail;
	s->tick = event_new(base, -1, EV_PERSIST, sim_on_tick, s);
	s->status = event_new(base, -1, EV_PERSIST, sim_on_status, s);
	struct timeval tick = {0, SIM_TICK_MS * 1000L}, st = {SIM_STATUS_MS / 1000, 0};
	if (!s->tick || !s->status)
		goto fail;
	s->last_ns = qkm_mono_ns();
	event_add(s->tick, &tick);
	event_add(s->status, &st);
	log_info("simulating %zu link(s); Kq-1 on %s, control %s", s->n_links, cfg->listen,
		 cfg->control);
	return s;
fail:
	qkm_sim_free(s);
	return NULL;
}

void qkm_sim_free(struct qkm_sim *s)
{
	if (!s)
		return;
	while (s->conns) {
		struct sim_conn *c = s->conns;
		s->conns = c->next;
		qkm_link_free(c->l);
		free(c);
	}
	for (size_t i = 0; s->links && i < s->n_links; i++) {
		for (int k = 0; k < 2; k++)
			side_clear(&s->links[i].side[k]);
		qkm_http_server_free(s->links[i].kme_http);
		qkm_kme_free(s->links[i].kme);
	}
	if (s->tick)
		event_free(s->tick);
	if (s->status)
		event_free(s->status);
	if (s->control) {
		evconnlistener_free(s->control);
		unlink(s->cfg.control);
	}
	qkm_listener_free(s->listener);
	SSL_CTX_free(s->ctx);
	free(s->links);
	free(s);
}
