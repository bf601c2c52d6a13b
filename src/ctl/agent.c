/* agent.c - the node side of Ck/Mk (agent.h). Records go one frame at a
 * time: the next CTL_RECORDS leaves only when the manager acknowledged the
 * last (so a slow manager slows the stream, never the node), starting after
 * the sequence number the manager says it holds durably. */
#include "ctl/agent.h"

#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/saes.h"
#include "net/link.h"
#include "proto/ck.h"

#define AGENT_RETRY_MIN_MS 250
#define AGENT_RETRY_MAX_MS 5000
#define AGENT_TICK_MS 200
#define AGENT_STATUS_MS 1000

struct qkm_agent {
	struct event_base *base;
	SSL_CTX *ctx;
	struct qkm_node_cfg *cfg;
	struct qkm_store *st;
	struct qkm_agent_ops ops;
	struct qkm_link *l;
	struct event *redial, *tick;
	int retry_ms;
	bool open;
	bool from_known;      /* the manager told us where its copy ends */
	int64_t acked;        /* manager holds records 1..acked */
	int64_t sent;         /* records 1..sent are on their way (sent > acked: awaiting ack) */
	uint64_t last_status_ns;
	uint64_t hold_ns;     /* after a refused batch: no records before this (monotonic) */
	uint64_t prune_ns;    /* the next look for records past retention_s (monotonic) */
	struct qkm_lc_event *evs; /* QKM_CK_RECORDS_MAX */
	size_t n_evs;
};

static void agent_dial(struct qkm_agent *a);

static void send_buf(struct qkm_agent *a, struct qkm_buf *b, int rc, const char *what)
{
	if (!rc)
		rc = qkm_link_send(a->l, b->p, b->len);
	if (rc)
		log_warnx("controller: cannot send %s: %s", what, qkm_strerror(rc));
	qkm_buf_fini(b);
}

static void send_status(struct qkm_agent *a)
{
	char *js = a->ops.status_json ? a->ops.status_json(a->ops.arg) : NULL;
	if (!js)
		return;
	struct qkm_buf b;
	qkm_buf_init(&b, QKM_FRAME_MAX, false);
	send_buf(a, &b, qkm_ck_json_frame(&b, QKM_MSG_CTL_STATUS, 0, js, strlen(js)), "status");
	free(js);
	a->last_status_ns = qkm_mono_ns();
}

static int collect(const struct qkm_lc_event *ev, void *arg)
{
	struct qkm_agent *a = arg;
	a->evs[a->n_evs++] = *ev;
	return a->n_evs == QKM_CK_RECORDS_MAX ? 1 : 0;
}

static int count_one(const struct qkm_lc_event *ev, void *arg)
{
	(void)ev;
	(*(int64_t *)arg)++;
	return 1;
}

/* Sends the next records if none are awaiting an acknowledgement. */
static void send_records(struct qkm_agent *a)
{
	if (!a->open || !a->from_known || a->sent > a->acked || qkm_mono_ns() < a->hold_ns)
		return;
	a->n_evs = 0;
	int rc = qkm_store_records(a->st, a->acked, QKM_CK_RECORDS_MAX, collect, a);
	if (rc < 0) {
		log_warnx("controller: cannot read life-cycle records: %s", qkm_strerror(rc));
		return;
	}
	if (a->n_evs == 0)
		return;
	struct qkm_buf b;
	qkm_buf_init(&b, QKM_FRAME_MAX, false);
	rc = qkm_ck_records_frame(&b, a->evs, a->n_evs);
	if (!rc)
		rc = qkm_link_send(a->l, b.p, b.len);
	qkm_buf_fini(&b);
	if (rc) {
		log_warnx("controller: cannot send life-cycle records: %s", qkm_strerror(rc));
		return;
	}
	a->sent = a->evs[a->n_evs - 1].seq;
}

static void on_routes(struct qkm_agent *a, const struct qkm_frame *f)
{
	struct qkm_node_route *r = calloc(QKM_MAX_NODES, sizeof(*r));
	size_t n = 0;
	if (!r)
		return;
	if (qkm_ck_routes_parse(f, r, QKM_MAX_NODES, &n)) {
		log_warnx("controller: malformed route table ignored");
	} else if (a->ops.set_routes) {
		int ch = a->ops.set_routes(r, n, a->ops.arg);
		if (ch < 0)
			log_warnx("controller: route table refused: %s", qkm_strerror(ch));
	}
	free(r);
}

static void on_saes(struct qkm_agent *a, const struct qkm_frame *f)
{
	struct qkm_sae_entry *e = calloc(QKM_MAX_SAES, sizeof(*e));
	size_t n = 0, changed = 0;
	if (!e)
		return;
	if (qkm_ck_saes_parse(f, e, QKM_MAX_SAES, &n))
		log_warnx("controller: malformed access list ignored");
	else if (!a->cfg->registry || qkm_saes_set(a->cfg->registry, e, n, &changed))
		log_warnx("controller: access list not applied (registry full)");
	else if (changed)
		log_info("controller: access list updated: %zu SAE(s), %zu change(s)", n, changed);
	free(e);
}

static void on_delete(struct qkm_agent *a, const struct qkm_frame *f)
{
	const char *js;
	size_t len;
	if (qkm_ck_json_parse(f, &js, &len) || !a->ops.delete_keys) {
		log_warnx("controller: malformed deletion order ignored");
		return;
	}
	char *rep = a->ops.delete_keys(js, len, a->ops.arg);
	const char *out = rep ? rep : "{\"error\": \"deletion failed\"}";
	struct qkm_buf b;
	qkm_buf_init(&b, QKM_FRAME_MAX, false);
	send_buf(a, &b, qkm_ck_json_frame(&b, QKM_MSG_CTL_DELETED, f->req, out, strlen(out)),
		 "deletion report");
	free(rep);
}

static void agent_on_open(struct qkm_link *l, void *arg)
{
	struct qkm_agent *a = arg;
	a->open = true;
	a->from_known = false;
	a->retry_ms = AGENT_RETRY_MIN_MS;
	log_info("controller %s: link up", a->cfg->controller.id);
	send_status(a);
}

static void agent_on_frame(struct qkm_link *l, const struct qkm_frame *f, void *arg)
{
	struct qkm_agent *a = arg;
	int64_t seq;
	switch (f->type) {
	case QKM_MSG_CTL_RECORDS_FROM:
	case QKM_MSG_CTL_RECORDS_ACK:
		if (qkm_ck_seq_parse(f, &seq)) {
			qkm_link_close(l, QKM_EPEER, "malformed record acknowledgement");
			return;
		}
		if (f->type == QKM_MSG_CTL_RECORDS_FROM) {
			/* Said again while a batch was out: the manager refused it
			 * (records it holds differ from ours, e.g. this node's store
			 * was replaced). Wait before sending again, not in a loop. */
			if (a->from_known && a->sent > a->acked) {
				log_warnx("controller: the manager refused life-cycle records %lld..%lld "
					  "(it holds others under those numbers?); retrying in 5 s",
					  (long long)a->acked + 1, (long long)a->sent);
				a->hold_ns = qkm_mono_ns() + 5000000000ull;
			}
			int64_t mine = 0;
			if (qkm_store_records(a->st, seq > 0 ? seq - 1 : 0, 1, count_one, &mine) == 0 &&
			    seq > 0 && mine == 0)
				log_warnx("controller: the manager holds %lld record(s) of this node, more "
					  "than its store has: was the store replaced? Records up to %lld "
					  "are not sent again", (long long)seq, (long long)seq);
			a->from_known = true;
			a->acked = a->sent = seq;
		} else if (seq > a->acked) {
			a->acked = seq;
		}
		send_records(a);
		break;
	case QKM_MSG_CTL_ROUTES:
		on_routes(a, f);
		break;
	case QKM_MSG_CTL_SAES:
		on_saes(a, f);
		break;
	case QKM_MSG_CTL_DELETE:
		on_delete(a, f);
		break;
	case QKM_MSG_CTL_RELAY: {
		char to[QKM_NAME_MAX];
		bool set_rate;
		uint64_t rate;
		uint32_t bytes;
		if (qkm_ck_relay_parse(f, to, &set_rate, &rate, &bytes))
			log_warnx("controller: malformed relay instruction ignored");
		else if (a->ops.relay)
			a->ops.relay(to, set_rate, rate, bytes, a->ops.arg);
		break;
	}
	case QKM_MSG_PING:
		break;
	default:
		log_debug("controller: frame type %u ignored", f->type);
	}
}

static void schedule(struct qkm_agent *a)
{
	struct timeval tv = {a->retry_ms / 1000, (suseconds_t)(a->retry_ms % 1000) * 1000};
	event_add(a->redial, &tv);
	a->retry_ms = a->retry_ms * 2 > AGENT_RETRY_MAX_MS ? AGENT_RETRY_MAX_MS : a->retry_ms * 2;
}

static void agent_on_close(struct qkm_link *l, int err, const char *why, void *arg)
{
	struct qkm_agent *a = arg;
	if (a->open)
		log_warnx("controller %s: link down (%s); serving with the last routes and access "
			  "list", a->cfg->controller.id, why ? why : qkm_strerror(err));
	a->open = false;
	a->l = NULL;
	schedule(a);
}

static const struct qkm_link_cbs agent_cbs = {agent_on_open, agent_on_frame, agent_on_close};

static void agent_dial(struct qkm_agent *a)
{
	a->l = qkm_link_connect(a->base, a->ctx, a->cfg->id, a->cfg->controller.addr, "controller",
				a->cfg->controller.id, &agent_cbs, a);
	if (!a->l)
		schedule(a);
}

static void agent_on_redial(evutil_socket_t fd, short what, void *arg) { agent_dial(arg); }

/* Records per pass, and passes: a full pass goes on at the next tick. */
#define PRUNE_ROWS 4096
#define PRUNE_EVERY_NS 10000000000u

/* Deletes this node's records older than retention_s that the manager
 * holds (R-LC-2: it keeps, audits and traces them), a batch at a time: the
 * node's lc would otherwise grow by a record for every key event, for
 * ever. The last record the manager acknowledged stays: a reconnection
 * checks the manager's copy against it. */
static void prune_records(struct qkm_agent *a)
{
	uint64_t mono = qkm_mono_ns(), now = qkm_now_ns(), n = 0,
		 keep = (uint64_t)a->cfg->retention_s * 1000000000u;
	if (!keep || !a->from_known || a->acked < 2 || mono < a->prune_ns || now < keep)
		return;
	int rc = qkm_store_begin(a->st);
	if (!rc)
		rc = qkm_store_lc_prune(a->st, a->acked - 1, now - keep, PRUNE_ROWS, &n);
	if (!rc)
		rc = qkm_store_commit(a->st);
	else
		qkm_store_rollback(a->st);
	if (rc)
		log_warnx("controller: cannot prune life-cycle records: %s", qkm_strerror(rc));
	a->prune_ns = !rc && n == PRUNE_ROWS ? mono : mono + PRUNE_EVERY_NS;
}

static void agent_on_tick(evutil_socket_t fd, short what, void *arg)
{
	struct qkm_agent *a = arg;
	prune_records(a);
	if (!a->open)
		return;
	if (qkm_mono_ns() - a->last_status_ns >= AGENT_STATUS_MS * 1000000ull)
		send_status(a);
	send_records(a);
}

struct qkm_agent *qkm_agent_new(struct event_base *base, SSL_CTX *client_ctx,
				struct qkm_node_cfg *cfg, struct qkm_store *st,
				const struct qkm_agent_ops *ops)
{
	struct qkm_agent *a = calloc(1, sizeof(*a));
	if (!a)
		return NULL;
	a->base = base;
	a->ctx = client_ctx;
	a->cfg = cfg;
	a->st = st;
	a->ops = *ops;
	a->retry_ms = AGENT_RETRY_MIN_MS;
	a->evs = calloc(QKM_CK_RECORDS_MAX, sizeof(*a->evs));
	a->redial = evtimer_new(base, agent_on_redial, a);
	a->tick = event_new(base, -1, EV_PERSIST, agent_on_tick, a);
	if (!a->evs || !a->redial || !a->tick) {
		qkm_agent_free(a);
		return NULL;
	}
	struct timeval tv = {0, (suseconds_t)AGENT_TICK_MS * 1000};
	event_add(a->tick, &tv);
	agent_dial(a);
	return a;
}

void qkm_agent_free(struct qkm_agent *a)
{
	if (!a)
		return;
	qkm_link_free(a->l);
	if (a->redial)
		event_free(a->redial);
	if (a->tick)
		event_free(a->tick);
	free(a->evs);
	free(a);
}

bool qkm_agent_connected(const struct qkm_agent *a) { return a && a->open; }
