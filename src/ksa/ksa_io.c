/* ksa_io.c - ETSI GS QKD 014 over HTTPS (Ak) and the KSA link, wired to the
 * supply state machine.
 *
 * Two threads. The front end (its own event loop) runs the HTTPS server,
 * checks and parses every request, refuses what is malformed or not an
 * SAE's, and answers enc_keys from the stock (ksa/stock.h) when it can: no
 * disk, no peer, no wait behind the main loop's fsyncs. Every other request
 * goes, parsed, to the main thread, which owns the store, the KMA and
 * supply; its answer
 * comes back by request number, so an answer for a client that left finds
 * nothing and is dropped. The main thread handles a whole batch of requests
 * per wake-up, so concurrent enc_keys share one supply round.
 *
 * The front end also admits requests SAE by SAE (ksa/limit.h): a caller
 * not registered here is refused at once, and one over its request rate or
 * holding its cap of requests in flight (forwarded, not yet answered) gets
 * 503 at once, before its request is parsed or queued; nothing about its
 * keys changes.
 *
 * Every answer the front end writes is counted (ksa/meter.h, for /metrics)
 * as it is written, on the front end's thread: by caller, endpoint, status
 * and reason (the main thread's reason comes back with its answer), with
 * the time since the request arrived. An answer for a client that left is
 * not written, so not counted. */
#include "ksa/ksa.h"
#include "core/saes.h"
#include "core/log.h"
#include "core/secret.h"
#include "ksa/limit.h"
#include "ksa/meter.h"
#include "ksa/stock.h"
#include "ksa/supply.h"
#include "net/http.h"
#include "proto/etsi014.h"

#include <event2/thread.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define KSA_MAX_BODY (1u << 20)
#define KSA_TICK_MS 100
#define KSA_LIMIT_LOG_NS 60000000000ull /* limit refusals: one log line a minute */
#define KSA_BEAT_MS 1000                  /* the front end's heartbeat (qkm_ksa_alive) */

/* A request the front end checked and parsed, handed to the main thread
 * for supply; or (XREQ_FORGET) word that the client of request id left. */
enum xreq_op { XREQ_STATUS, XREQ_ENC, XREQ_DEC, XREQ_FORGET };
struct xreq {
	struct xreq *next;
	uint64_t id;
	enum xreq_op op;
	char name[QKM_NAME_MAX]; /* the caller (SAE ID) */
	char sae[QKM_NAME_MAX];  /* the SAE in the path */
	struct qkm_etsi_key_request enc;
	struct qkm_etsi_key_ids *dec;
};

/* An answer on its way back to the front end. */
struct xreply {
	struct xreply *next;
	uint64_t id;
	int status;
	const char *reason;      /* supply's label for an error (static); NULL for 200 */
	struct qkm_secret *body; /* NULL for an empty body */
};

/* Front end: a request waiting for the main thread's answer. */
struct fwd {
	struct fwd *next;
	uint64_t id;
	struct qkm_http_req *req;
	size_t slot; /* the caller's limiter slot: released with the answer */
	enum qkm_etsi_endpoint ep;
	uint32_t keys;  /* keys a 200 answer carries (0 for status) */
	uint64_t t0_ns; /* arrival (qkm_mono_ns) */
};

struct qkm_ksa {
	struct event_base *base;
	const struct qkm_node_cfg *cfg;
	struct qkm_store *st;
	struct qkm_kma *kma;
	struct qkm_supply *supply;
	struct qkm_stock *stock;
	struct qkm_supply_cfg sc; /* limits, read by both threads */
	struct event *flush_ev, *tick_ev, *in_ev;
	struct xreq *held; /* main: requests with supply */

	struct event_base *fbase; /* front end */
	pthread_t th;
	bool th_started;
	struct qkm_http_server *http;
	struct event *out_ev, *stop_ev;
	struct fwd *fwds;
	uint64_t next_id;
	struct qkm_limit *limit; /* slots: k->cfg->saes[] (only those of this node used) */
	uint64_t limit_log_ns;   /* last limit refusal logged (qkm_mono_ns) */
	/* Limit refusals since start: written by the front end, read by the
	 * main thread (metrics). */
	_Atomic uint64_t refused_rate, refused_in_flight;
	struct qkm_meter *meter;   /* every answer (locks itself) */
	struct event *beat_ev;
	_Atomic uint64_t beat_ns;  /* the front end's loop last ran its heartbeat */

	pthread_mutex_t mu; /* the two queues */
	struct xreq *in, **in_tail;
	struct xreply *out, **out_tail;
};

static void xreq_free(struct xreq *x)
{
	if (x) {
		free(x->dec);
		free(x);
	}
}

/* ---- main thread: supply ops ------------------------------------------- */

static int op_send(const char *peer, const uint8_t *frame, size_t len, void *arg)
{
	struct qkm_ksa *k = arg;
	return qkm_kma_send(k->kma, peer, frame, len);
}

static bool op_ready(const char *peer, void *arg)
{
	struct qkm_ksa *k = arg;
	return qkm_kma_pool_ready(k->kma, peer);
}

static int op_relay(const char *peer, size_t bytes, void *arg)
{
	struct qkm_ksa *k = arg;
	return qkm_kma_relay_want(k->kma, peer, bytes);
}

static const char *op_why(const char *peer, void *arg)
{
	struct qkm_ksa *k = arg;
	return qkm_kma_relay_why(k->kma, peer);
}

/* Sends the answer to the front end; the body (maybe keys) travels in the
 * secure heap. If that copy fails the client gets a 503 without a body. */
static void op_reply(void *req, int status, const char *reason, const uint8_t *body, size_t len,
		     void *arg)
{
	struct qkm_ksa *k = arg;
	struct xreq *x = req;
	for (struct xreq **pp = &k->held; *pp; pp = &(*pp)->next)
		if (*pp == x) {
			*pp = x->next;
			break;
		}
	struct xreply *r = calloc(1, sizeof(*r));
	if (r) {
		r->id = x->id;
		r->status = status;
		r->reason = reason;
		if (len && !(r->body = qkm_secret_dup(body, len))) {
			r->status = 503;
			r->reason = "out_of_memory";
		}
		pthread_mutex_lock(&k->mu);
		*k->out_tail = r;
		k->out_tail = &r->next;
		pthread_mutex_unlock(&k->mu);
		event_active(k->out_ev, EV_READ, 0);
	} else {
		log_warnx("ksa: out of memory; an answer is lost (its client times out)");
	}
	xreq_free(x);
}


/* ---- KMA hooks --------------------------------------------------------- */

static int hook_frame(const char *peer, const struct qkm_frame *f, void *arg)
{
	struct qkm_ksa *k = arg;
	return qkm_supply_on_frame(k->supply, peer, f, qkm_now_ns());
}

static void hook_pool(const char *peer, bool usable, void *arg)
{
	struct qkm_ksa *k = arg;
	log_info("key pool with %s %s for supply", peer, usable ? "usable" : "not usable");
	qkm_supply_on_peer(k->supply, peer, usable, qkm_now_ns());
}

/* A relay pool gained keys: requests waiting for them may go on. */
static void hook_keys(const char *peer, void *arg)
{
	struct qkm_ksa *k = arg;
	(void)peer;
	event_active(k->flush_ev, EV_TIMEOUT, 0);
}

static void on_flush(evutil_socket_t fd, short what, void *arg)
{
	struct qkm_ksa *k = arg;
	qkm_supply_flush(k->supply, qkm_now_ns());
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
	struct qkm_ksa *k = arg;
	qkm_supply_tick(k->supply, qkm_now_ns());
}

/* ---- routing (front end) ------------------------------------------------ */

/* ---- main thread: the requests ------------------------------------------ */

static void handle(struct qkm_ksa *k, struct xreq *x)
{
	/* The answer (op_reply) frees x, maybe before supply returns: what
	 * supply reads of the request is copied out first. */
	char name[QKM_NAME_MAX], sae[QKM_NAME_MAX];
	struct qkm_etsi_key_request enc = x->enc;
	struct qkm_etsi_key_ids *dec = x->dec;
	enum xreq_op op = x->op;
	memcpy(name, x->name, sizeof(name));
	memcpy(sae, x->sae, sizeof(sae));
	x->dec = NULL;
	x->next = k->held;
	k->held = x;
	if (op == XREQ_STATUS)
		qkm_supply_status(k->supply, x, name, sae);
	else if (op == XREQ_ENC)
		qkm_supply_enc(k->supply, x, name, sae, &enc, qkm_now_ns());
	else
		qkm_supply_dec(k->supply, x, name, sae, dec, qkm_now_ns());
	free(dec);
}

/* Main thread: the front end handed over requests (and departures). */
static void on_in(evutil_socket_t fd, short what, void *arg)
{
	struct qkm_ksa *k = arg;
	pthread_mutex_lock(&k->mu);
	struct xreq *x = k->in;
	k->in = NULL;
	k->in_tail = &k->in;
	pthread_mutex_unlock(&k->mu);
	while (x) {
		struct xreq *next = x->next;
		if (x->op != XREQ_FORGET) {
			handle(k, x);
		} else {
			for (struct xreq **pp = &k->held; *pp; pp = &(*pp)->next)
				if ((*pp)->id == x->id) {
					struct xreq *h = *pp;
					*pp = h->next;
					qkm_supply_forget(k->supply, h);
					xreq_free(h);
					break;
				}
			xreq_free(x);
		}
		x = next;
	}
	qkm_supply_flush(k->supply, qkm_now_ns());
}

/* ---- front end ----------------------------------------------------------- */

/* The request fe_handle is answering, and what its answer is counted as. */
struct fe_call {
	struct qkm_ksa *k;
	struct qkm_http_req *req;
	enum qkm_etsi_endpoint ep;
	uint64_t t0_ns; /* arrival (qkm_mono_ns) */
};

/* Counts the answer c is about to get (req->name is valid until then). */
static void fe_count(const struct fe_call *c, int status, const char *reason, uint32_t keys)
{
	qkm_meter_answer(c->k->meter, c->req->name, c->ep, status, reason, keys,
			 qkm_mono_ns() - c->t0_ns);
}

/* An Error answer; reason is its label in the metrics. */
static void fe_error(const struct fe_call *c, int status, const char *reason, const char *msg)
{
	char *body = qkm_etsi_error_json(msg, NULL);
	fe_count(c, status, reason, 0);
	qkm_http_reply(c->req, status, "application/json", body ? body : "{}",
		       body ? strlen(body) : 2, false);
	free(body);
}

/* 503 for a request over one of its SAE's limits: an Error whose details
 * name the limit, and Retry-After (seconds, at least 1). Logged at most
 * once a minute: a flood must not flood the log too. */
static void fe_refuse(const struct fe_call *c, const char *msg, const char *details,
		      const char *reason, uint64_t retry_ns)
{
	struct qkm_ksa *k = c->k;
	struct qkm_http_req *req = c->req;
	uint64_t now = qkm_mono_ns(), secs = (retry_ns + 999999999u) / 1000000000u;
	if (!k->limit_log_ns || now - k->limit_log_ns >= KSA_LIMIT_LOG_NS) {
		k->limit_log_ns = now;
		log_warnx("ksa: %s (logged at most once a minute)", msg);
	}
	char *body = qkm_etsi_error_json(msg, details);
	fe_count(c, 503, reason, 0);
	qkm_http_set_retry_after(req, secs ? (uint32_t)(secs < 3600 ? secs : 3600) : 1);
	qkm_http_reply(req, 503, "application/json", body ? body : "{}", body ? strlen(body) : 2,
		       false);
	free(body);
}

/* The caller's limiter slot if it is registered (not revoked) at this
 * node; false otherwise. */
static bool fe_slot(const struct qkm_ksa *k, const char *name, size_t *slot)
{
	const char *node = qkm_sae_node(k->cfg, name);
	if (!node || strcmp(node, k->cfg->id) != 0)
		return false;
	/* The live access list's registration index (stable), else node.json's. */
	if (k->cfg->registry)
		return qkm_saes_slot(k->cfg->registry, name, slot);
	for (size_t i = 0; i < k->cfg->n_saes; i++)
		if (strcmp(k->cfg->saes[i].id, name) == 0) {
			*slot = i;
			return true;
		}
	return false;
}

/* Takes one of slot's tokens; false (and the request answered) when the
 * SAE is over its request rate. */
static bool fe_admit(const struct fe_call *c, size_t slot)
{
	struct qkm_ksa *k = c->k;
	struct qkm_http_req *req = c->req;
	uint64_t wait_ns;
	if (qkm_limit_request(k->limit, slot, qkm_mono_ns(), &wait_ns) == QKM_LIMIT_OK)
		return true;
	char msg[200];
	snprintf(msg, sizeof(msg),
		 "SAE %s is over its request rate (%u requests/s, burst %u); retry later", req->name,
		 (unsigned)k->cfg->limits.sae_rate, (unsigned)k->cfg->limits.sae_burst);
	atomic_fetch_add(&k->refused_rate, 1);
	fe_refuse(c, msg, "request rate limit (limits.sae_rate)", "rate_limit", wait_ns);
	return false;
}

static void to_main(struct qkm_ksa *k, struct xreq *x)
{
	pthread_mutex_lock(&k->mu);
	*k->in_tail = x;
	k->in_tail = &x->next;
	pthread_mutex_unlock(&k->mu);
	event_active(k->in_ev, EV_READ, 0);
}

static void fe_gone(struct qkm_http_req *req, void *arg)
{
	struct qkm_ksa *k = arg;
	for (struct fwd **pp = &k->fwds; *pp; pp = &(*pp)->next)
		if ((*pp)->req == req) {
			struct fwd *f = *pp;
			struct xreq *x = calloc(1, sizeof(*x));
			*pp = f->next;
			qkm_limit_release(k->limit, f->slot);
			if (x) {
				x->id = f->id;
				x->op = XREQ_FORGET;
				to_main(k, x);
			}
			free(f);
			return;
		}
}

/* Hands x (filled in but for its number) to the main thread; req gets the
 * answer when it comes (a 200 carrying keys keys). Unless the caller
 * (limiter slot) already holds its cap of requests in flight: then 503 now,
 * nothing queued. */
static void fe_forward(const struct fe_call *c, struct xreq *x, size_t slot, uint32_t keys)
{
	struct qkm_ksa *k = c->k;
	struct qkm_http_req *req = c->req;
	if (qkm_limit_hold(k->limit, slot) != QKM_LIMIT_OK) {
		char msg[200];
		xreq_free(x);
		snprintf(msg, sizeof(msg),
			 "SAE %s already has %u requests in flight, its limit; retry when one is "
			 "answered", req->name, (unsigned)k->cfg->limits.sae_in_flight);
		atomic_fetch_add(&k->refused_in_flight, 1);
		fe_refuse(c, msg, "in-flight limit (limits.sae_in_flight)", "in_flight_limit", 0);
		return;
	}
	struct fwd *f = calloc(1, sizeof(*f));
	if (!f) {
		qkm_limit_release(k->limit, slot);
		xreq_free(x);
		fe_error(c, 503, "out_of_memory", "out of memory");
		return;
	}
	f->slot = slot;
	f->ep = c->ep;
	f->keys = keys;
	f->t0_ns = c->t0_ns;
	snprintf(x->name, sizeof(x->name), "%s", req->name);
	x->id = f->id = ++k->next_id;
	f->req = req;
	f->next = k->fwds;
	k->fwds = f;
	qkm_http_on_gone(req, fe_gone, k);
	to_main(k, x);
}

/* enc_keys from stock: only a plain request (no additional slaves, no
 * combination) of an SAE registered here for a slave registered at
 * another node, of a size and number the main thread let into the stock.
 * true if answered. */
static bool fe_from_stock(const struct fe_call *c, const char *slave,
			  const struct qkm_etsi_key_request *r)
{
	struct qkm_ksa *k = c->k;
	struct qkm_http_req *req = c->req;
	const char *cn = qkm_sae_node(k->cfg, req->name), *sn = qkm_sae_node(k->cfg, slave);
	if (!cn || strcmp(cn, k->cfg->id) != 0 || !sn || strcmp(sn, k->cfg->id) == 0)
		return false;
	uint32_t size = r->size ? r->size : k->sc.key_size;
	uint32_t number = r->number ? r->number : 1;
	if (r->n_additional || r->combination || number > k->sc.max_key_per_request ||
	    number > QKM_ETSI_MAX_IDS || size % 8 || size < k->sc.min_key_size ||
	    size > k->sc.max_key_size)
		return false; /* the main thread answers, with the reason if any */
	struct qkm_id ids[QKM_ETSI_MAX_IDS];
	struct qkm_secret *data = qkm_secret_new_raw((size_t)number * (size / 8));
	bool low = false;
	if (!data || qkm_stock_take(k->stock, req->name, slave, size, number, ids, data->p,
				    qkm_now_ns(), &low)) {
		qkm_secret_free(data);
		if (low)
			event_active(k->flush_ev, EV_READ, 0);
		return false;
	}
	if (low)
		event_active(k->flush_ev, EV_READ, 0);
	struct qkm_buf b;
	qkm_buf_init(&b, qkm_etsi_keys_json_size(number, size / 8), true);
	if (qkm_etsi_keys_json_run(&b, number, ids, data->p, size / 8)) {
		/* Taken and recorded supplied, but not delivered: the keys
		 * are lost to this master, never handed out twice. */
		fe_error(c, 503, "out_of_memory", "out of memory");
	} else {
		fe_count(c, 200, NULL, number);
		qkm_http_reply(req, 200, "application/json", b.p, b.len, true);
	}
	qkm_buf_fini(&b);
	qkm_secret_free(data);
	return true;
}

/* Checks and parses a request; answers what needs neither the store nor
 * the peer (refusals, enc_keys from stock) and hands the rest, parsed, to
 * the main thread. */
static void fe_handle(struct qkm_http_req *req, void *arg)
{
	struct qkm_ksa *k = arg;
	char err[300], sae[QKM_NAME_MAX], what[16];
	const char *msg;
	size_t slot;
	const struct fe_call c = {k, req, qkm_etsi_endpoint_of(req->path), qkm_mono_ns()};
	if (strcmp(req->role, "sae") != 0) {
		fe_error(&c, 401, "not_sae",
			 "only applications (SAE certificates) may use this API");
		return;
	}
	if (k->cfg->registry && qkm_saes_revoked(k->cfg->registry, req->name)) {
		snprintf(err, sizeof(err), "SAE '%s' is revoked", req->name);
		fe_error(&c, 401, "revoked", err);
		return;
	}
	/* Who asks, then whether they may now, then what they ask (R-SUP-1;
	 * the same check as supply's, made here so that a caller that is not
	 * ours costs neither a parse nor the main thread). */
	if (!fe_slot(k, req->name, &slot)) {
		snprintf(err, sizeof(err), "SAE '%s' is not registered at node %s", req->name,
			 k->cfg->id);
		fe_error(&c, 401, "not_registered", err);
		return;
	}
	if (!fe_admit(&c, slot))
		return;
	int code = qkm_etsi_route(req->path, sae, what, &msg);
	if (code) {
		fe_error(&c, code, code == 404 ? "no_resource" : "bad_sae_id", msg);
		return;
	}
	bool get = strcmp(req->method, "GET") == 0;
	struct qkm_etsi_key_request enc;
	struct qkm_etsi_key_ids *dec = NULL;
	enum xreq_op op;
	if (strcmp(what, "status") == 0) {
		if (!get) {
			fe_error(&c, 405, "method", "method not allowed here");
			return;
		}
		op = XREQ_STATUS;
	} else if (strcmp(what, "enc_keys") == 0) {
		if (get ? qkm_etsi_parse_enc_query(req->query, &enc, err, sizeof(err))
			: qkm_etsi_parse_key_request(req->body, req->body_len, &enc, err,
						     sizeof(err))) {
			fe_error(&c, 400, "bad_request", err);
			return;
		}
		if (fe_from_stock(&c, sae, &enc))
			return;
		op = XREQ_ENC;
	} else {
		if (!(dec = malloc(sizeof(*dec)))) {
			fe_error(&c, 503, "out_of_memory", "out of memory");
			return;
		}
		if (get ? qkm_etsi_parse_dec_query(req->query, dec, err, sizeof(err))
			: qkm_etsi_parse_key_ids(req->body, req->body_len, dec, err, sizeof(err))) {
			free(dec);
			fe_error(&c, 400, "bad_request", err);
			return;
		}
		op = XREQ_DEC;
	}
	struct xreq *x = calloc(1, sizeof(*x));
	if (!x) {
		free(dec);
		fe_error(&c, 503, "out_of_memory", "out of memory");
		return;
	}
	x->op = op;
	snprintf(x->sae, sizeof(x->sae), "%s", sae);
	if (op == XREQ_ENC)
		x->enc = enc;
	x->dec = dec;
	/* What a 200 carries: enc_keys "number" keys (1 by default), dec_keys
	 * every key asked for (one bad ID refuses them all). */
	fe_forward(&c, x, slot,
		   op == XREQ_ENC   ? (enc.number ? enc.number : 1)
		   : op == XREQ_DEC ? (uint32_t)dec->n
				    : 0);
}

/* Front end: answers from the main thread. */
static void fe_on_out(evutil_socket_t fd, short what, void *arg)
{
	struct qkm_ksa *k = arg;
	pthread_mutex_lock(&k->mu);
	struct xreply *r = k->out;
	k->out = NULL;
	k->out_tail = &k->out;
	pthread_mutex_unlock(&k->mu);
	while (r) {
		struct xreply *next = r->next;
		for (struct fwd **pp = &k->fwds; *pp; pp = &(*pp)->next)
			if ((*pp)->id == r->id) {
				struct fwd *f = *pp;
				*pp = f->next;
				qkm_limit_release(k->limit, f->slot);
				qkm_meter_answer(k->meter, f->req->name, f->ep, r->status,
						 r->reason, f->keys, qkm_mono_ns() - f->t0_ns);
				qkm_http_reply(f->req, r->status, "application/json",
					       r->body ? r->body->p : NULL, r->body ? r->body->len : 0,
					       true);
				free(f);
				break;
			}
		qkm_secret_free(r->body);
		free(r);
		r = next;
	}
}

/* The front end's loop is running: qkm_ksa_alive reads this. */
static void fe_on_beat(evutil_socket_t fd, short what, void *arg)
{
	struct qkm_ksa *k = arg;
	atomic_store(&k->beat_ns, qkm_mono_ns());
}

static void fe_on_stop(evutil_socket_t fd, short what, void *arg)
{
	struct qkm_ksa *k = arg;
	event_base_loopbreak(k->fbase);
}

static void *fe_main(void *arg)
{
	struct qkm_ksa *k = arg;
	event_base_dispatch(k->fbase);
	return NULL;
}

/* ---- life ------------------------------------------------------------------ */

struct qkm_ksa *qkm_ksa_new(struct event_base *base, const struct qkm_node_cfg *cfg,
			    struct qkm_store *st, struct qkm_kma *kma, SSL_CTX *server_ctx)
{
	struct qkm_ksa *k = calloc(1, sizeof(*k));
	if (!k)
		return NULL;
	k->base = base;
	k->cfg = cfg;
	k->st = st;
	k->kma = kma;
	pthread_mutex_init(&k->mu, NULL);
	k->in_tail = &k->in;
	k->out_tail = &k->out;
	struct qkm_supply_cfg *sc = &k->sc;
	qkm_supply_cfg_defaults(sc);
	snprintf(sc->self, sizeof(sc->self), "%s", cfg->id);
	sc->node = cfg;
	sc->preserve = cfg->preserve;
	sc->retention_ns = (uint64_t)cfg->retention_s * 1000000000u;
	k->stock = qkm_stock_new();
	k->meter = qkm_meter_new();
	atomic_store(&k->beat_ns, qkm_mono_ns());
	k->limit = qkm_limit_new(&cfg->limits, cfg->registry ? QKM_SAES_MAX : cfg->n_saes);
	sc->stock = k->stock;
	struct qkm_supply_ops ops = {op_send, op_ready, op_relay, op_why, op_reply, k};
	k->supply = k->stock ? qkm_supply_new(sc, st, &ops) : NULL;
	k->flush_ev = event_new(base, -1, 0, on_flush, k);
	k->tick_ev = event_new(base, -1, EV_PERSIST, on_tick, k);
	k->in_ev = event_new(base, -1, 0, on_in, k);
	k->fbase = event_base_new();
	if (!k->supply || !k->limit || !k->meter || !k->flush_ev || !k->tick_ev || !k->in_ev ||
	    !k->fbase)
		goto fail;
	k->out_ev = event_new(k->fbase, -1, 0, fe_on_out, k);
	k->stop_ev = event_new(k->fbase, -1, 0, fe_on_stop, k);
	k->beat_ev = event_new(k->fbase, -1, EV_PERSIST, fe_on_beat, k);
	k->http = qkm_http_server_new(k->fbase, server_ctx, cfg->etsi014_listen, KSA_MAX_BODY,
				      fe_handle, k);
	if (!k->out_ev || !k->stop_ev || !k->beat_ev || !k->http)
		goto fail;
	struct timeval tv = {0, KSA_TICK_MS * 1000L};
	event_add(k->tick_ev, &tv);
	struct timeval beat = {KSA_BEAT_MS / 1000, (KSA_BEAT_MS % 1000) * 1000L};
	event_add(k->beat_ev, &beat);
	struct qkm_kma_hooks h = {hook_frame, hook_pool, hook_keys, k};
	qkm_kma_set_hooks(kma, &h);
	if (pthread_create(&k->th, NULL, fe_main, k) != 0) {
		log_warnx("ksa: cannot start the ETSI 014 thread");
		goto fail;
	}
	k->th_started = true;
	log_info("ETSI GS QKD 014 on https://%s", cfg->etsi014_listen);
	return k;
fail:
	qkm_ksa_free(k);
	return NULL;
}

size_t qkm_ksa_drop(struct qkm_ksa *k, const struct qkm_id *ids, size_t n)
{
	return k && k->stock ? qkm_stock_drop(k->stock, ids, n) : 0;
}

void qkm_ksa_refusals(struct qkm_ksa *k, uint64_t *rate, uint64_t *in_flight)
{
	*rate = k ? atomic_load(&k->refused_rate) : 0;
	*in_flight = k ? atomic_load(&k->refused_in_flight) : 0;
}

void qkm_ksa_metrics(struct qkm_ksa *k, struct qkm_metrics_etsi *out)
{
	qkm_meter_snapshot(k ? k->meter : NULL, out);
}

bool qkm_ksa_alive(struct qkm_ksa *k, uint64_t now_ns, uint64_t max_ns)
{
	if (!k)
		return true;
	uint64_t beat = atomic_load(&k->beat_ns); /* may be a moment after now_ns */
	return beat >= now_ns || now_ns - beat <= max_ns;
}

uint64_t qkm_ksa_stock_keys(struct qkm_ksa *k, const char *peer)
{
	return k && k->stock ? qkm_stock_count(k->stock, peer) : 0;
}

void qkm_ksa_free(struct qkm_ksa *k)
{
	if (!k)
		return;
	if (k->th_started) {
		event_active(k->stop_ev, EV_READ, 0);
		pthread_join(k->th, NULL);
	}
	if (k->kma) {
		struct qkm_kma_hooks none = {NULL, NULL, NULL, NULL};
		qkm_kma_set_hooks(k->kma, &none);
	}
	/* The front end is stopped: its server and queues are ours now. */
	qkm_http_server_free(k->http);
	while (k->fwds) {
		struct fwd *f = k->fwds;
		k->fwds = f->next;
		free(f);
	}
	qkm_supply_free(k->supply); /* answers what it holds, into the queue */
	while (k->held) {
		struct xreq *x = k->held;
		k->held = x->next;
		xreq_free(x);
	}
	while (k->in) {
		struct xreq *x = k->in;
		k->in = x->next;
		xreq_free(x);
	}
	while (k->out) {
		struct xreply *r = k->out;
		k->out = r->next;
		qkm_secret_free(r->body);
		free(r);
	}
	qkm_stock_free(k->stock);
	qkm_limit_free(k->limit);
	qkm_meter_free(k->meter);
	if (k->out_ev)
		event_free(k->out_ev);
	if (k->beat_ev)
		event_free(k->beat_ev);
	if (k->stop_ev)
		event_free(k->stop_ev);
	if (k->fbase)
		event_base_free(k->fbase);
	if (k->flush_ev)
		event_free(k->flush_ev);
	if (k->tick_ev)
		event_free(k->tick_ev);
	if (k->in_ev)
		event_free(k->in_ev);
	pthread_mutex_destroy(&k->mu);
	free(k);
}
