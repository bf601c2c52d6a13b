/* ksa_io.c - ETSI GS QKD 014 over HTTPS (Ak) and the KSA link, wired to the
 * supply state machine. Parses paths and bodies with proto/etsi014, checks
 * the caller is an SAE (certificate OU=sae), and defers each enc_keys
 * request to the end of the loop iteration so concurrent requests share one
 * round. */
#include "ksa/ksa.h"
#include "core/log.h"
#include "core/secret.h"
#include "ksa/supply.h"
#include "net/http.h"
#include "proto/etsi014.h"

#include <stdlib.h>
#include <string.h>

#define KSA_MAX_BODY (1u << 20)
#define KSA_TICK_MS 100

struct qkm_ksa {
	struct event_base *base;
	const struct qkm_node_cfg *cfg;
	struct qkm_store *st;
	struct qkm_kma *kma;
	struct qkm_supply *supply;
	struct qkm_http_server *http;
	struct event *flush_ev, *tick_ev;
};

/* An enc_keys request whose client left before its answer: supply forgets
 * it (and the keys it would have got are cancelled). */
static void on_gone(struct qkm_http_req *req, void *arg)
{
	struct qkm_ksa *k = arg;
	qkm_supply_forget(k->supply, req);
}

/* ---- supply ops -------------------------------------------------------- */

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

static void op_reply(void *req, int status, const uint8_t *body, size_t len, void *arg)
{
	/* The body may hold key bytes: the server keeps them in the secure
	 * heap and wipes them once written. */
	qkm_http_reply(req, status, "application/json", body, len, true);
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

/* ---- HTTP -------------------------------------------------------------- */

static void reply_err(struct qkm_http_req *req, int status, const char *msg)
{
	char *body = qkm_etsi_error_json(msg, NULL);
	qkm_http_reply(req, status, "application/json", body ? body : "{}",
		       body ? strlen(body) : 2, false);
	free(body);
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

static void handle(struct qkm_http_req *req, void *arg)
{
	struct qkm_ksa *k = arg;
	char err[300], sae[QKM_NAME_MAX], what[16];
	const char *path = req->path, *query = req->query, *name = req->name;
	if (strcmp(req->role, "sae") != 0) {
		reply_err(req, 401, "only applications (SAE certificates) may use this API");
		return;
	}
	/* /api/v1/keys/{SAE_ID}/{status|enc_keys|dec_keys} */
	const char *pre = "/api/v1/keys/";
	if (!path || strncmp(path, pre, strlen(pre)) != 0) {
		reply_err(req, 404, "no such resource; the API is under /api/v1/keys/");
		return;
	}
	const char *id = path + strlen(pre), *slash = strchr(id, '/');
	if (!slash || (size_t)(slash - id) >= sizeof(sae) || strlen(slash + 1) >= sizeof(what)) {
		reply_err(req, 404, "no such resource");
		return;
	}
	memcpy(sae, id, (size_t)(slash - id));
	sae[slash - id] = 0;
	snprintf(what, sizeof(what), "%s", slash + 1);
	if (!qkm_name_valid(sae)) {
		reply_err(req, 400, "SAE ID in the path is not a valid SAE ID");
		return;
	}
	bool get = strcmp(req->method, "GET") == 0, post = !get;
	if (strcmp(what, "status") == 0 && get) {
		qkm_supply_status(k->supply, req, name, sae);
		return;
	}
	if (strcmp(what, "enc_keys") == 0 && (get || post)) {
		struct qkm_etsi_key_request r;
		int rc;
		if (get)
			rc = qkm_etsi_parse_enc_query(query, &r, err, sizeof(err));
		else
			rc = qkm_etsi_parse_key_request(req->body, req->body_len, &r, err,
							sizeof(err));
		if (rc) {
			reply_err(req, 400, err);
			return;
		}
		qkm_http_on_gone(req, on_gone, k);
		qkm_supply_enc(k->supply, req, name, sae, &r, qkm_now_ns());
		event_active(k->flush_ev, EV_TIMEOUT, 0);
		return;
	}
	if (strcmp(what, "dec_keys") == 0 && (get || post)) {
		struct qkm_etsi_key_ids *ids = malloc(sizeof(*ids));
		int rc;
		if (!ids) {
			reply_err(req, 503, "out of memory");
			return;
		}
		if (get)
			rc = qkm_etsi_parse_dec_query(query, ids, err, sizeof(err));
		else
			rc = qkm_etsi_parse_key_ids(req->body, req->body_len, ids, err, sizeof(err));
		if (rc)
			reply_err(req, 400, err);
		else
			qkm_supply_dec(k->supply, req, name, sae, ids, qkm_now_ns());
		free(ids);
		return;
	}
	if (strcmp(what, "status") == 0 || strcmp(what, "enc_keys") == 0 ||
	    strcmp(what, "dec_keys") == 0) {
		reply_err(req, 405, "method not allowed here");
		return;
	}
	reply_err(req, 404, "no such resource (status, enc_keys or dec_keys)");
}

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
	struct qkm_supply_cfg sc;
	qkm_supply_cfg_defaults(&sc);
	snprintf(sc.self, sizeof(sc.self), "%s", cfg->id);
	sc.node = cfg;
	sc.preserve = cfg->preserve;
	struct qkm_supply_ops ops = {op_send, op_ready, op_reply, k};
	k->supply = qkm_supply_new(&sc, st, &ops);
	k->flush_ev = event_new(base, -1, 0, on_flush, k);
	k->tick_ev = event_new(base, -1, EV_PERSIST, on_tick, k);
	if (!k->supply || !k->flush_ev || !k->tick_ev)
		goto fail;
	k->http = qkm_http_server_new(base, server_ctx, cfg->etsi014_listen, KSA_MAX_BODY, handle, k);
	if (!k->http)
		goto fail;
	struct timeval tv = {0, KSA_TICK_MS * 1000};
	event_add(k->tick_ev, &tv);
	struct qkm_kma_hooks h = {hook_frame, hook_pool, k};
	qkm_kma_set_hooks(kma, &h);
	log_info("ETSI GS QKD 014 on https://%s", cfg->etsi014_listen);
	return k;
fail:
	qkm_ksa_free(k);
	return NULL;
}

void qkm_ksa_free(struct qkm_ksa *k)
{
	if (!k)
		return;
	if (k->kma) {
		struct qkm_kma_hooks none = {NULL, NULL, NULL};
		qkm_kma_set_hooks(k->kma, &none);
	}
	qkm_supply_free(k->supply);
	qkm_http_server_free(k->http);
	if (k->flush_ev)
		event_free(k->flush_ev);
	if (k->tick_ev)
		event_free(k->tick_ev);
	free(k);
}
