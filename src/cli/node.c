/* node.c - `qkm node -c FILE [--check]`: one node's key manager (KMA, and
 * later KSA) in one process (R-EL-1), with its admin API over HTTPS. */
#include "cli/cli.h"
#include "core/log.h"
#include "core/saes.h"
#include "core/secret.h"
#include "core/rate.h"
#include "core/token.h"
#include "ctl/agent.h"
#include "kma/kma.h"
#include "kma/relay.h"
#include "ksa/ksa.h"
#include "ksa/supply.h"
#include "net/http.h"
#include "net/tls.h"
#include "proto/config_json.h"
#include "proto/ctl_json.h"
#include "proto/metrics.h"
#include "proto/status_json.h"
#include "store/store.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/thread.h>
#include <event2/keyvalq_struct.h>
#include <signal.h>
#include <sys/resource.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NODE_TICK_MS 1000
#define NODE_RATE_TAU_NS 10000000000ull /* consumption rates: weighted over ~10 s */
#define NODE_ALIVE_NS 5000000000ull     /* the ETSI 014 thread beats within this */

/* The consumption rate of one pool (metrics), by peer. */
struct pool_rate {
	char peer[QKM_NAME_MAX];
	struct qkm_rate r;
};

struct node {
	struct event_base *base;
	struct qkm_node_cfg cfg;
	struct qkm_store *st;
	SSL_CTX *sctx, *cctx;
	struct qkm_kma *kma;
	struct qkm_ksa *ksa;
	struct qkm_http_server *admin;
	struct qkm_agent *agent;
	struct event *tick;
	struct pool_rate rates[QKM_MAX_LINKS + QKM_MAX_NODES];
	size_t n_rates;
};

/* peer's rate entry, made on first use; NULL if the table is full. */
static struct qkm_rate *pool_rate(struct node *n, const char *peer)
{
	for (size_t i = 0; i < n->n_rates; i++)
		if (strcmp(n->rates[i].peer, peer) == 0)
			return &n->rates[i].r;
	if (n->n_rates == sizeof(n->rates) / sizeof(n->rates[0]))
		return NULL;
	struct pool_rate *p = &n->rates[n->n_rates++];
	snprintf(p->peer, sizeof(p->peer), "%s", peer);
	qkm_rate_init(&p->r, NODE_RATE_TAU_NS);
	return &p->r;
}

static void rate_sample(struct node *n, const char *peer, uint64_t now)
{
	uint64_t v;
	struct qkm_rate *r = pool_rate(n, peer);
	if (r && qkm_store_pool_consumed(n->st, peer, &v) == 0)
		(void)qkm_rate_update(r, v, now);
}

/* Once a second: each pool's consumption rate takes a sample. */
static void on_tick(evutil_socket_t fd, short what, void *arg)
{
	struct node *n = arg;
	uint64_t now = qkm_mono_ns();
	size_t nl = qkm_kma_n_links(n->kma);
	for (size_t i = 0; i < nl && i < QKM_MAX_LINKS; i++) {
		struct qkm_kma_link_status ls;
		qkm_kma_link_status(n->kma, i, &ls);
		rate_sample(n, ls.peer, now);
	}
	for (size_t i = 0; i < n->cfg.n_routes; i++)
		rate_sample(n, n->cfg.routes[i].to, now);
}

static void pool_status(struct node *n, struct qkm_node_status *s, const char *peer,
			const char *kind)
{
	struct qkm_pool_stats ps;
	struct qkm_status_pool *p = &s->pools[s->n_pools++];
	snprintf(p->peer, sizeof(p->peer), "%s", peer);
	p->kind = kind;
	if (qkm_store_pool_stats(n->st, peer, &ps) == 0) {
		p->keys = ps.keys;
		p->bytes = ps.bytes;
		p->enc_bytes = ps.enc_bytes;
		p->dec_bytes = ps.dec_bytes;
		p->pending_keys = ps.pending_keys;
	}
	p->stock_keys = qkm_ksa_stock_keys(n->ksa, peer);
	if (qkm_store_pool_consumed(n->st, peer, &p->consumed_bytes))
		p->consumed_bytes = 0;
	const struct qkm_rate *r = pool_rate(n, peer);
	p->consume_rate = r ? r->rate : 0;
}

/* Readiness (/readyz, and "ready" in /status): the store answers, every
 * QKD link's pool is usable (Kx link up and reconciled since it came up),
 * and the ETSI 014 thread's loop runs. A node without links is ready once
 * its store answers. Adds one reason per failure to reasons (if not NULL). */
static bool node_ready(struct node *n, const struct qkm_node_status *s, json_t *reasons)
{
	char why[200];
	int64_t v;
	bool ready = true;
	if (qkm_store_counter_get(n->st, "acquired_bytes", &v)) {
		ready = false;
		if (reasons)
			json_array_append_new(reasons, json_string("key store not answering"));
	}
	for (size_t i = 0; i < s->n_links; i++) {
		const struct qkm_status_link *l = &s->links[i];
		if (l->kx_up && l->reconciled)
			continue;
		ready = false;
		snprintf(why, sizeof(why), "link %s: %s", l->link,
			 !l->kx_up ? "Kx link to the peer down" : "pool not reconciled yet");
		if (reasons)
			json_array_append_new(reasons, json_string(why));
	}
	if (!qkm_ksa_alive(n->ksa, qkm_mono_ns(), NODE_ALIVE_NS)) {
		ready = false;
		if (reasons)
			json_array_append_new(reasons,
					      json_string("ETSI 014 thread not answering"));
	}
	return ready;
}

/* One per-SAE supply counter (ksa/supply.h): "sae/<id>/enc" or ".../dec". */
static int sae_counter(const char *name, int64_t value, void *arg)
{
	struct qkm_node_status *s = arg;
	const char *id = name + strlen(QKM_SAE_COUNTER_PREFIX), *slash = strrchr(id, '/');
	size_t len = slash ? (size_t)(slash - id) : 0;
	if (!len || len >= QKM_NAME_MAX || value < 0)
		return 0;
	size_t i = 0;
	while (i < s->n_saes && (strlen(s->saes[i].id) != len || strncmp(s->saes[i].id, id, len)))
		i++;
	if (i == s->n_saes) {
		if (s->n_saes == QKM_MAX_SAES)
			return 0;
		memcpy(s->saes[i].id, id, len);
		s->saes[s->n_saes++].id[len] = '\0';
	}
	if (strcmp(slash, "/enc") == 0)
		s->saes[i].enc_keys = (uint64_t)value;
	else if (strcmp(slash, "/dec") == 0)
		s->saes[i].dec_keys = (uint64_t)value;
	return 0;
}

static void node_status(struct node *n, struct qkm_node_status *s)
{
	memset(s, 0, sizeof(*s));
	snprintf(s->id, sizeof(s->id), "%s", n->cfg.id);
	size_t nl = qkm_kma_n_links(n->kma);
	for (size_t i = 0; i < nl && i < QKM_MAX_LINKS; i++) {
		struct qkm_kma_link_status ls;
		qkm_kma_link_status(n->kma, i, &ls);
		struct qkm_status_link *l = &s->links[s->n_links++];
		snprintf(l->link, sizeof(l->link), "%s", ls.link);
		snprintf(l->peer, sizeof(l->peer), "%s", ls.peer);
		snprintf(l->module, sizeof(l->module), "%s", ls.module);
		l->leader = ls.leader;
		l->kx_up = ls.kx_up;
		l->reconciled = ls.reconciled;
		l->module_up = ls.module_up;
		l->qber = ls.qber_ppm / 1e6;
		l->rate_bps = ls.rate_bps;
		snprintf(l->alarm, sizeof(l->alarm), "%s", ls.alarm);
		l->buffered_bytes = ls.acq.buffered_bytes;
		l->in_flight = ls.acq.in_flight;
		l->acquired_bytes = ls.acq.acquired_bytes;
		l->aborted_batches = ls.acq.aborted_batches;
		l->discarded_qkd_keys = ls.acq.discarded_qkd_keys;
		pool_status(n, s, ls.peer, "link");
	}
	for (size_t i = 0; i < n->cfg.n_routes; i++)
		pool_status(n, s, n->cfg.routes[i].to, "relay");
	qkm_ksa_refusals(n->ksa, &s->refused_rate, &s->refused_in_flight);
	struct qkm_relay_stats rs;
	qkm_kma_relay_stats(n->kma, &rs);
	s->relay = (struct qkm_status_relay){
		.started = rs.started,
		.confirmed = rs.confirmed,
		.failed = rs.failed,
		.forwarded = rs.forwarded,
		.received = rs.received,
		.relayed_bytes = rs.relayed_bytes,
		.forwarded_bytes = rs.forwarded_bytes,
		.received_bytes = rs.received_bytes,
		.link_bytes = rs.link_bytes,
		.in_flight = rs.in_flight,
		.held = rs.held,
	};
	if (qkm_store_counter_get(n->st, "acquired_bytes", &s->acquired_bytes) ||
	    qkm_store_counter_get(n->st, "aborted_batches", &s->aborted_batches) ||
	    qkm_store_counter_get(n->st, "supplied_keys", &s->supplied_keys) ||
	    qkm_store_counter_get(n->st, "relayed_bytes", &s->relayed_bytes) ||
	    qkm_store_counter_get(n->st, "ksa_pruned_keys", &s->ksa_pruned_keys) ||
	    qkm_store_counters(n->st, QKM_SAE_COUNTER_PREFIX, sae_counter, s))
		log_warnx("status: counters unavailable");
	if (qkm_store_disk_bytes(n->st, &s->store_db_bytes, &s->store_wal_bytes,
				 &s->store_keys_bytes))
		log_warnx("status: key store file sizes unavailable");
	s->ready = node_ready(n, s, NULL);
}

static void reply_owned(struct qkm_http_req *req, int code, char *json)
{
	if (json)
		qkm_http_reply_json(req, code, json);
	else
		qkm_http_reply_error(req, 500, "out of memory");
	free(json);
}

struct pc_req {
	struct node *n;
	struct qkm_http_req *req;
	char peer[QKM_NAME_MAX];
};

static void on_paircheck_done(const struct qkm_paircheck_result *r, int err, void *arg)
{
	struct pc_req *p = arg;
	if (err) {
		char msg[200];
		snprintf(msg, sizeof(msg), "pair-check with %s failed: %s", p->peer,
			 err == QKM_ENOTFOUND ? "no QKD link to that node"
			 : err == QKM_ESTATE  ? "Kx link to that node is down"
					      : qkm_strerror(err));
		qkm_http_reply_error(p->req, err == QKM_ENOTFOUND ? 404 : 503, msg);
	} else {
		log_info("pair-check with %s: %u match, %u differ, %u only here, %u only there, %u in flight",
			 p->peer, r->matches, r->mismatches, r->only_sender, r->only_receiver,
			 r->in_flight);
		reply_owned(p->req, 200,
			    qkm_paircheck_to_json(p->n->cfg.id, p->peer, r->matches, r->mismatches,
						  r->in_flight, r->only_sender, r->only_receiver,
						  r->detail));
	}
	free(p);
}

/* GET /events[?after=SEQ][&limit=N][&event=NAME][&key=TEXT]: the node's
 * life-cycle records (R-LC-1) as a JSON array, oldest first; event filters
 * by name, key by a substring of the key ID or, for a KSA-key's UUID, a run
 * of its round that holds it (qkm_key_id_names). */
struct ev_walk {
	json_t *arr;
	const char *event, *key;
	unsigned limit;
};

static int ev_one(const struct qkm_lc_event *ev, void *arg)
{
	struct ev_walk *w = arg;
	if ((w->event && strcmp(ev->event, w->event) != 0) ||
	    (w->key && !qkm_key_id_names(ev->key_id, w->key)))
		return 0;
	char ts[32];
	qkm_time_str(ev->ts_ns, ts);
	json_t *o = json_pack("{s:I, s:s, s:s, s:s, s:s, s:s, s:s}", "seq", (json_int_t)ev->seq,
			      "time", ts, "event", ev->event, "key_kind", ev->key_kind, "key_id",
			      ev->key_id, "peer", ev->peer, "detail", ev->detail);
	if (!o || json_array_append_new(w->arr, o))
		return QKM_ENOMEM;
	return json_array_size(w->arr) >= w->limit ? 1 : 0;
}

static void admin_events(struct node *n, struct qkm_http_req *req)
{
	struct evkeyvalq q;
	struct ev_walk w = {json_array(), NULL, NULL, 1000};
	long long after = 0;
	const char *v;
	evhttp_parse_query_str(req->query ? req->query : "", &q);
	if ((v = evhttp_find_header(&q, "after")))
		after = strtoll(v, NULL, 10); /* atoll's overflow is undefined */
	/* strtol, not atoi: atoi("4294967297") may come back as 1. */
	long limit = (v = evhttp_find_header(&q, "limit")) ? strtol(v, NULL, 10) : 0;
	if (limit > 0 && limit <= 100000)
		w.limit = (unsigned)limit;
	w.event = evhttp_find_header(&q, "event");
	w.key = evhttp_find_header(&q, "key");
	int rc = w.arr ? qkm_store_records(n->st, after, 0, ev_one, &w) : QKM_ENOMEM;
	char *body = rc < 0 ? NULL : json_dumps(w.arr, JSON_COMPACT);
	evhttp_clear_headers(&q);
	json_decref(w.arr);
	if (!body) {
		qkm_http_reply_error(req, 500, "life-cycle records unavailable");
		return;
	}
	qkm_http_reply_json(req, 200, body);
	free(body);
}

/* GET /metrics: the Prometheus text format (proto/metrics.h). */
static void admin_metrics(struct node *n, struct qkm_http_req *req)
{
	struct qkm_node_status *s = malloc(sizeof(*s));
	struct qkm_metrics_etsi *e = n->ksa ? malloc(sizeof(*e)) : NULL;
	struct qkm_buf b;
	qkm_buf_init(&b, 4u << 20, false);
	if (s)
		node_status(n, s);
	if (e)
		qkm_ksa_metrics(n->ksa, e);
	if (!s || (n->ksa && !e) || qkm_metrics_format(s, e, &b))
		qkm_http_reply_error(req, 500, "metrics unavailable (out of memory)");
	else
		qkm_http_reply(req, 200, "text/plain; version=0.0.4; charset=utf-8", b.p, b.len,
			       false);
	qkm_buf_fini(&b);
	free(s);
	free(e);
}

/* GET /readyz: 200 {"ready": true}, or 503 {"ready": false, "reasons":
 * [...]} (node_ready says when). */
static void admin_readyz(struct node *n, struct qkm_http_req *req)
{
	struct qkm_node_status *s = malloc(sizeof(*s));
	json_t *reasons = json_array();
	char *body = NULL;
	bool ready = false;
	if (s && reasons) {
		node_status(n, s);
		ready = node_ready(n, s, reasons);
		json_t *o = json_pack("{s:b, s:O}", "ready", ready, "reasons", reasons);
		body = o ? json_dumps(o, JSON_COMPACT) : NULL;
		json_decref(o);
	}
	if (body)
		qkm_http_reply_json(req, ready ? 200 : 503, body);
	else
		qkm_http_reply_error(req, 500, "out of memory");
	free(body);
	json_decref(reasons);
	free(s);
}

static void admin_handle(struct qkm_http_req *req, void *arg)
{
	struct node *n = arg;
	if (strcmp(req->role, "admin") != 0) {
		qkm_http_reply_error(req, 403, "the admin API is for operators (admin certificate)");
		return;
	}
	const char *path = req->path;
	if (path && strcmp(path, "/status") == 0) {
		struct qkm_node_status *s = malloc(sizeof(*s));
		if (!s) {
			qkm_http_reply_error(req, 500, "out of memory");
			return;
		}
		node_status(n, s);
		reply_owned(req, 200, qkm_status_to_json(s));
		free(s);
		return;
	}
	if (path && strcmp(path, "/metrics") == 0) {
		admin_metrics(n, req);
		return;
	}
	if (path && strcmp(path, "/healthz") == 0) {
		/* This loop answered; the ETSI 014 thread's beats. */
		if (qkm_ksa_alive(n->ksa, qkm_mono_ns(), NODE_ALIVE_NS))
			qkm_http_reply(req, 200, "text/plain; charset=utf-8", "ok\n", 3, false);
		else
			qkm_http_reply_error(req, 503, "the ETSI 014 thread is not answering");
		return;
	}
	if (path && strcmp(path, "/readyz") == 0) {
		admin_readyz(n, req);
		return;
	}
	if (path && strcmp(path, "/pair-check") == 0) {
		struct evkeyvalq q;
		const char *peer = NULL;
		const char *query = req->query;
		/* evhttp_parse_query_str initialises q even when it fails. */
		if (evhttp_parse_query_str(query ? query : "", &q) == 0)
			peer = evhttp_find_header(&q, "peer");
		if (!peer || !qkm_name_valid(peer)) {
			qkm_http_reply_error(req, 400, "pair-check needs ?peer=NODE");
			evhttp_clear_headers(&q);
			return;
		}
		struct pc_req *p = calloc(1, sizeof(*p));
		if (!p) {
			evhttp_clear_headers(&q);
			qkm_http_reply_error(req, 500, "out of memory");
			return;
		}
		p->n = n;
		p->req = req;
		snprintf(p->peer, sizeof(p->peer), "%s", peer);
		evhttp_clear_headers(&q);
		qkm_kma_paircheck(n->kma, p->peer, on_paircheck_done, p);
		return;
	}
	if (path && strcmp(path, "/events") == 0) {
		admin_events(n, req);
		return;
	}
	qkm_http_reply_error(req, 404, "no such admin resource (try /status, /metrics, /healthz, "
				       "/readyz, /events or /pair-check?peer=NODE)");
}

/* ---- Ck/Mk agent hooks ---- */

static char *agent_status(void *arg)
{
	struct node *n = arg;
	struct qkm_node_status *s = malloc(sizeof(*s));
	if (!s)
		return NULL;
	node_status(n, s);
	char *js = qkm_status_to_json(s);
	free(s);
	return js;
}

static int agent_routes(const struct qkm_node_route *r, size_t nr, void *arg)
{
	struct node *n = arg;
	return qkm_kma_set_routes(n->kma, r, nr);
}

static void agent_relay(const char *to, bool set_rate, uint64_t rate, uint32_t bytes, void *arg)
{
	struct node *n = arg;
	(void)qkm_kma_relay_plan(n->kma, to, set_rate, rate, bytes);
}

static void deleted_record(struct node *n, const char *kind, const char *key, const char *order,
			   const char *what)
{
	struct qkm_lc_event ev = {0};
	snprintf(ev.event, sizeof(ev.event), "deleted");
	snprintf(ev.key_kind, sizeof(ev.key_kind), "%s", kind);
	snprintf(ev.key_id, sizeof(ev.key_id), "%s", key);
	snprintf(ev.peer, sizeof(ev.peer), "%s", n->cfg.controller.id);
	snprintf(ev.detail, sizeof(ev.detail), "compromise order %s: %s", order, what);
	if (qkm_store_record(n->st, &ev))
		log_warnx("compromise order %s: record for %s not stored", order, key);
}

/* A compromise order (R-LC-3): deletes every KMA batch (link or relayed)
 * and KSA key it names that this node holds, from the store (then
 * checkpointed: gone from the WAL too) and from the stock in memory. */
static char *agent_delete(const char *order, size_t len, void *arg)
{
	struct node *n = arg;
	char id[64], (*toks)[QKM_TOKEN_MAX] = calloc(QKM_ORDER_MAX, sizeof(*toks));
	struct qkm_id *ksa = calloc(QKM_ORDER_MAX, sizeof(*ksa));
	size_t nt = 0, nb = 0, nk = 0, nkd = 0, dropped = 0;
	char *rep = NULL;
	int rc = toks && ksa ? qkm_order_parse(order, len, id, toks, QKM_ORDER_MAX, &nt) : QKM_ENOMEM;
	if (rc || (rc = qkm_store_begin(n->st)))
		goto out;
	for (size_t i = 0; i < nt && !rc; i++) {
		struct qkm_id kid;
		char hex[41];
		if (strlen(toks[i]) == 24) {
			snprintf(hex, sizeof(hex), "%s00000000", toks[i]);
			if (qkm_id_parse(hex, &kid))
				continue;
			int r = qkm_store_batch_delete(n->st, &kid);
			if (r == 0) {
				nb++;
				deleted_record(n, "kma", hex, id, "batch deleted (every block, any pool)");
			} else if (r != QKM_ENOTFOUND) {
				rc = r;
			}
		} else if (strlen(toks[i]) == 28) {
			/* The keys of one supply round (core/token.h). */
			size_t nd = 0;
			snprintf(hex, sizeof(hex), "%s00000000", toks[i]);
			if (qkm_id_parse(hex, &kid))
				continue;
			ksa[nk++] = kid; /* also looked for in the stock */
			rc = qkm_store_ksa_delete_round(n->st, &kid, &nd);
			if (!rc && nd) {
				char what[64];
				snprintf(what, sizeof(what), "%zu KSA key(s) of the supply round deleted", nd);
				deleted_record(n, "ksa", toks[i], id, what);
			}
			nkd += nd;
		}
	}
	if (rc) {
		qkm_store_rollback(n->st);
		goto out;
	}
	if ((rc = qkm_store_commit(n->st)))
		goto out;
	dropped = qkm_ksa_drop(n->ksa, ksa, nk);
	if (qkm_store_checkpoint(n->st))
		log_warnx("compromise order %s: checkpoint did not complete; deleted keys may stay "
			  "in the WAL until the next one", id);
	log_warnx("compromise order %s: %zu KMA batch(es) and %zu KSA key(s) deleted, %zu dropped "
		  "from the stock", id, nb, nkd, dropped);
	rep = malloc(256);
	if (rep)
		snprintf(rep, 256,
			 "{\"node\":\"%s\",\"order\":\"%s\",\"batches_deleted\":%zu,"
			 "\"ksa_deleted\":%zu,\"stock_dropped\":%zu}",
			 n->cfg.id, id, nb, nkd, dropped);
out:
	if (rc)
		log_warnx("compromise order not carried out: %s", qkm_strerror(rc));
	free(toks);
	free(ksa);
	return rep;
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
	struct node *n = arg;
	log_info("signal %d: stopping", (int)sig);
	event_base_loopexit(n->base, NULL);
}

static void usage(FILE *f)
{
	fprintf(f, "usage: qkm node -c FILE [--check]\n"
		   "  Runs the key manager of one QKD node (see qkm-node(1)).\n"
		   "  -c FILE   node configuration (JSON; see docs/config.md)\n"
		   "  --check   validate the configuration and exit\n");
}

int cli_node(int argc, char **argv)
{
	const char *path = NULL;
	int check = 0, rc = 1;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "-c") == 0 && i + 1 < argc)
			path = argv[++i];
		else if (strcmp(argv[i], "--check") == 0)
			check = 1;
		else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			usage(stdout);
			return 0;
		} else {
			usage(stderr);
			return 2;
		}
	}
	if (!path) {
		usage(stderr);
		return 2;
	}
	struct node *n = calloc(1, sizeof(*n));
	char err[512];
	if (!n)
		return 1;
	if (check) {
		struct qkm_cfg_errors *errs = malloc(sizeof(*errs));
		if (!errs || qkm_node_cfg_check(path, &n->cfg, errs)) {
			if (errs)
				fprintf(stderr, "qkm node: %s: %zu error(s)\n", path,
					cli_print_cfg_errors(path, errs));
			rc = errs ? 2 : 1;
		} else {
			printf("%s: ok (node %s, %zu link(s), %zu relay route(s), relay mode %s)\n",
			       path, n->cfg.id, n->cfg.n_links, n->cfg.n_routes, n->cfg.relay.mode);
			rc = 0;
		}
		free(errs);
		free(n);
		return rc;
	}
	if (qkm_node_cfg_load(path, &n->cfg, err, sizeof(err))) {
		fprintf(stderr, "qkm node: %s\n", err);
		free(n);
		return 2;
	}
	enum qkm_log_level lvl = QKM_LOG_INFO;
	if (qkm_log_level_parse(n->cfg.log_level, &lvl))
		lvl = QKM_LOG_INFO;
	char logname[QKM_NAME_MAX + 8];
	snprintf(logname, sizeof(logname), "node %s", n->cfg.id);
	qkm_log_init(logname, lvl);
	(void)signal(SIGPIPE, SIG_IGN); /* fails only for an invalid signal */
	/* Key bytes also pass through ordinary heap memory (TLS records, the
	 * SQLite page cache): no core file may carry them. */
	struct rlimit nocore = {0, 0};
	if (setrlimit(RLIMIT_CORE, &nocore) < 0)
		log_warn("cannot disable core dumps");
	/* Applications hold keep-alive connections (up to 4096 per server):
	 * the usual soft limit of 1024 descriptors would stop accepting first. */
	struct rlimit nofile;
	if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < nofile.rlim_max) {
		nofile.rlim_cur = nofile.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &nofile) < 0)
			log_warn("cannot raise the open-file limit");
	}
	/* Relayed key files and rounds: frames of MiBs, built and freed often. */
	if (qkm_heap_tune())
		log_warnx("cannot tune the allocator; large buffers are mapped afresh each time");
	if (qkm_secret_heap_init_locked(256u << 20))
		fatalx("cannot lock 256 MiB of memory for key material; run as root or raise "
		       "the memlock limit (ulimit -l; LimitMEMLOCK= in a systemd unit)");
	struct event *sigs[2] = {NULL, NULL};
	/* The ETSI 014 front end runs its own loop in a second thread and
	 * wakes this one (ksa_io.c): libevent must lock. */
	if (evthread_use_pthreads() != 0)
		fatalx("cannot enable libevent threading");
	n->base = event_base_new();
	if (!n->base)
		fatalx("cannot create event loop");
	int src = qkm_store_open(n->cfg.db, &n->st);
	if (src) {
		log_error("cannot open key store %s: %s", n->cfg.db, qkm_strerror(src));
		goto out;
	}
	n->sctx = qkm_tls_ctx_new(n->cfg.tls.ca, n->cfg.tls.cert, n->cfg.tls.key, true);
	n->cctx = qkm_tls_ctx_new(n->cfg.tls.ca, n->cfg.tls.cert, n->cfg.tls.key, false);
	if (!n->sctx || !n->cctx)
		goto out;
	/* The live access list: node.json's, then the controller's. */
	if (!(n->cfg.registry = qkm_saes_new(&n->cfg)))
		goto out;
	n->kma = qkm_kma_new(n->base, &n->cfg, n->st, n->sctx, n->cctx);
	if (!n->kma)
		goto out;
	/* R-EL-2: a relay-only node has no application interface. */
	if (n->cfg.ksa && n->cfg.etsi014_listen[0] &&
	    !(n->ksa = qkm_ksa_new(n->base, &n->cfg, n->st, n->kma, n->sctx)))
		goto out;
	n->admin = qkm_http_server_new(n->base, n->sctx, n->cfg.admin_listen, 4096, admin_handle, n);
	if (!n->admin)
		goto out;
	if (n->cfg.controller.addr[0]) {
		struct qkm_agent_ops ops = {agent_status, agent_routes, agent_relay, agent_delete, n};
		if (!(n->agent = qkm_agent_new(n->base, n->cctx, &n->cfg, n->st, &ops)))
			goto out;
	}
	if (!(n->tick = event_new(n->base, -1, EV_PERSIST, on_tick, n)))
		goto out;
	struct timeval tick = {NODE_TICK_MS / 1000, (NODE_TICK_MS % 1000) * 1000L};
	event_add(n->tick, &tick);
	sigs[0] = evsignal_new(n->base, SIGTERM, on_signal, n);
	sigs[1] = evsignal_new(n->base, SIGINT, on_signal, n);
	if (!sigs[0] || !sigs[1])
		goto out;
	event_add(sigs[0], NULL);
	event_add(sigs[1], NULL);
	log_info("node %s up: Kx %s, admin %s, %zu QKD link(s)", n->cfg.id, n->cfg.kx_listen,
		 n->cfg.admin_listen, n->cfg.n_links);
	/* Every listener is bound by now (Kx, admin, ETSI 014). */
	(void)cli_notify("READY=1"); /* a failure is logged; the node runs on */
	/* One pass at a time: after each, the stack its callbacks used is
	 * wiped (qkm_cleanse_stack). */
	while (event_base_loop(n->base, EVLOOP_ONCE) == 0 && !event_base_got_exit(n->base) &&
	       !event_base_got_break(n->base))
		qkm_cleanse_stack();
	qkm_cleanse_stack();
	(void)cli_notify("STOPPING=1");
	rc = 0;
out:
	for (int i = 0; i < 2; i++)
		if (sigs[i])
			event_free(sigs[i]);
	if (n->tick)
		event_free(n->tick);
	qkm_agent_free(n->agent);
	/* The KMA answers admin requests still waiting on it (a pair-check)
	 * as it goes: their connections must still be there. The admin server
	 * went first once, and a pair-check in flight at SIGTERM replied into
	 * a freed connection (ThreadSanitizer, make check-tsan-system). */
	qkm_ksa_free(n->ksa);
	qkm_kma_free(n->kma);
	qkm_http_server_free(n->admin);
	if (n->st && qkm_store_checkpoint(n->st))
		log_warnx("final checkpoint did not complete");
	qkm_store_close(n->st);
	qkm_saes_free(n->cfg.registry);
	SSL_CTX_free(n->sctx);
	SSL_CTX_free(n->cctx);
	if (n->base)
		event_base_free(n->base);
	free(n);
	if (rc == 0)
		log_info("stopped");
	return rc;
}
