/* ctl.c - `qkm ctl`: operator commands against a running network.
 *   status --dir DIR [--json]      stock and counters of every node
 *   pair-check --dir DIR A B       compare the pool A and B share (by MAC)
 *   events --dir DIR NODE [--event E] [--key K] [--after SEQ]   a node's
 *                                  life-cycle records
 * and, through the controller's API (docs/controller.md):
 *   audit, trace KEY, records, sae add|revoke|list, routes, route set|clear,
 *   mode, schedule add|list, compromise
 * all with the operator certificate from DIR. */
#include "cli/cli.h"
#include "core/log.h"
#include "net/http.h"
#include "proto/status_json.h"

#include <jansson.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int load(const char *dir, struct qkm_network *net)
{
	return cli_network_load("qkm ctl", dir, net);
}

static char *get_status(const struct qkm_network *net, size_t i)
{
	char url[QKM_ADDR_MAX + 64], *body = NULL;
	int status;
	snprintf(url, sizeof(url), "%s/status", net->nodes[i].admin);
	if (qkm_https_request(url, "GET", NULL, net->ca, net->admin_cert, net->admin_key, 3000,
			      &status, &body) == 0 && status == 200)
		return body;
	free(body);
	return NULL;
}

static int ctl_status(const char *dir, bool json)
{
	struct qkm_network *net = malloc(sizeof(*net));
	int rc = 1;
	if (!net || load(dir, net))
		goto out;
	char *texts[QKM_MAX_NODES] = {0}, *merged = NULL, *table = NULL;
	const char *ids[QKM_MAX_NODES];
	bool consistent = false;
	/* The two ends of a link commit a round a moment apart: retry until
	 * the snapshot shows both sides agreeing (bounded). */
	for (int attempt = 0; attempt < 50 && !consistent; attempt++) {
		free(merged);
		free(table);
		for (size_t i = 0; i < net->n_nodes; i++) {
			free(texts[i]);
			ids[i] = net->nodes[i].id;
			texts[i] = get_status(net, i);
		}
		merged = qkm_status_merge(net->n_nodes, ids, (const char *const *)texts, &consistent,
					  &table);
		if (!consistent) {
			struct timespec ts = {0, 20000000};
			nanosleep(&ts, NULL);
		}
	}
	if (merged) {
		printf("%s\n", json ? merged : table ? table : "");
		if (!json && table && !consistent)
			printf("(the two ends of a link were mid-commit; figures may differ by one round)\n");
		rc = 0;
	}
	free(merged);
	free(table);
	for (size_t i = 0; i < net->n_nodes; i++)
		free(texts[i]);
out:
	free(net);
	return rc;
}

static int ctl_pair_check(const char *dir, const char *a, const char *b, bool json)
{
	struct qkm_network *net = malloc(sizeof(*net));
	int rc = 1;
	char url[QKM_ADDR_MAX + 160], *body = NULL, detail[600];
	size_t i;
	if (!net || load(dir, net))
		goto out;
	for (i = 0; i < net->n_nodes; i++)
		if (strcmp(net->nodes[i].id, a) == 0)
			break;
	if (i == net->n_nodes) {
		fprintf(stderr, "qkm ctl pair-check: no node named '%s' in %s; it has ", a, dir);
		cli_print_nodes(stderr, net);
		fputc('\n', stderr);
		goto out;
	}
	snprintf(url, sizeof(url), "%s/pair-check?peer=%s", net->nodes[i].admin, b);
	int status;
	struct cli_progress prog;
	cli_progress_start(&prog, "qkm ctl pair-check: %s and %s compare their pool", a, b);
	/* The check reads each node's key data of the pool once, which can take
	 * minutes for a large pool; the node gives up by itself if its peer
	 * stops answering (60 s), so this waits up to an hour. */
	int r = qkm_https_request(url, "POST", "{}", net->ca, net->admin_cert, net->admin_key,
				  3600 * 1000, &status, &body);
	cli_progress_stop(&prog);
	if (r) {
		fprintf(stderr, "qkm ctl pair-check: node %s (%s) not reachable: %s (its log: %s; "
				"`qkm ctl status --dir %s` shows which nodes are up)\n",
			a, net->nodes[i].admin, cli_http_strerror(r), net->nodes[i].log, dir);
		goto out;
	}
	if (status != 200) {
		json_t *e = json_loads(body ? body : "", 0, NULL);
		const char *m = json_string_value(json_object_get(e, "message"));
		fprintf(stderr, "qkm ctl pair-check: node %s: %s%s\n", a,
			m ? m : body ? body : "error",
			status == 404 ? " (the two nodes must share a QKD link or a relay pool: "
					"`qkm ctl status` lists each node's peers)"
				      : "");
		json_decref(e);
		goto out;
	}
	uint32_t m, mm, inf;
	if (qkm_paircheck_parse(body, &m, &mm, &inf, detail, sizeof(detail))) {
		fprintf(stderr, "qkm ctl pair-check: unexpected answer from %s\n", a);
		goto out;
	}
	if (json)
		printf("%s\n", body);
	else
		printf("pair-check %s-%s: %u blocks match, %u mismatches, %u in flight%s%s\n", a, b, m,
		       mm, inf, detail[0] ? "\n  " : "", detail);
	rc = mm ? 3 : 0;
out:
	free(body);
	free(net);
	return rc;
}

static int node_index(const struct qkm_network *net, const char *id)
{
	for (size_t i = 0; i < net->n_nodes; i++)
		if (strcmp(net->nodes[i].id, id) == 0)
			return (int)i;
	return -1;
}

/* Prints one node's life-cycle records (R-LC-1), filtered by event name
 * and by a substring of the key ID, oldest first: up to 100000 of them, from
 * seq after + 1 on (after < 0: from the first). */
static int ctl_events(const char *dir, const char *node, const char *event, const char *key,
		      long long after, bool json)
{
	struct qkm_network *net = malloc(sizeof(*net));
	char url[QKM_ADDR_MAX + 300], *body = NULL;
	int rc = 1, status, i;
	json_t *arr = NULL;
	if (!net || load(dir, net))
		goto out;
	if ((i = node_index(net, node)) < 0) {
		fprintf(stderr, "qkm ctl events: no node named '%s' in %s; it has ", node, dir);
		cli_print_nodes(stderr, net);
		fputc('\n', stderr);
		goto out;
	}
	int n = snprintf(url, sizeof(url), "%s/events?limit=100000", net->nodes[i].admin);
	if (after >= 0)
		n += snprintf(url + n, sizeof(url) - (size_t)n, "&after=%lld", after);
	if (event && qkm_name_valid(event))
		n += snprintf(url + n, sizeof(url) - (size_t)n, "&event=%s", event);
	if (key && qkm_name_valid(key))
		snprintf(url + n, sizeof(url) - (size_t)n, "&key=%s", key);
	int r = qkm_https_request(url, "GET", NULL, net->ca, net->admin_cert, net->admin_key, 30000,
				  &status, &body);
	if (r || status != 200) {
		fprintf(stderr, "qkm ctl events: node %s: %s%s%s\n", node,
			r ? cli_http_strerror(r) : body ? body : "error", r ? "; its log: " : "",
			r ? net->nodes[i].log : "");
		goto out;
	}
	if (json) {
		printf("%s\n", body);
		rc = 0;
		goto out;
	}
	if (!(arr = json_loads(body, 0, NULL)) || !json_is_array(arr)) {
		fprintf(stderr, "qkm ctl events: unexpected answer from %s\n", node);
		goto out;
	}
	size_t k;
	json_t *e;
	json_array_foreach(arr, k, e)
		printf("%-27s %-16s %-8s %-40s %-10s %s\n",
		       json_string_value(json_object_get(e, "time")),
		       json_string_value(json_object_get(e, "event")),
		       json_string_value(json_object_get(e, "key_kind")),
		       json_string_value(json_object_get(e, "key_id")),
		       json_string_value(json_object_get(e, "peer")),
		       json_string_value(json_object_get(e, "detail")));
	rc = 0;
out:
	json_decref(arr);
	free(body);
	free(net);
	return rc;
}

/* ---- through the controller ---------------------------------------------- */

/* Calls the controller's API; prints its error and returns nonzero unless
 * it answered 200 (body in *resp, malloc'd). A call that may take long
 * names what it waits for in wait (shown on a terminal), else NULL. */
static int api(const struct qkm_network *net, const char *method, const char *path,
	       const char *body, char **resp, int timeout_ms, const char *wait)
{
	char url[QKM_ADDR_MAX + 600];
	int status;
	*resp = NULL;
	if (!net->ctl_api[0]) {
		fprintf(stderr, "qkm ctl: this network has no controller (network.json)\n");
		return 1;
	}
	snprintf(url, sizeof(url), "%s%s", net->ctl_api, path);
	struct cli_progress prog = {0};
	if (wait)
		cli_progress_start(&prog, "%s", wait);
	int r = qkm_https_request(url, method, body, net->ca, net->admin_cert, net->admin_key,
				  timeout_ms, &status, resp);
	cli_progress_stop(&prog);
	if (r) {
		fprintf(stderr, "qkm ctl: controller %s not reachable: %s (its log: %s; start it "
				"again with `qkm net restart --dir %s controller`)\n",
			net->ctl_api, cli_http_strerror(r), net->ctl_log, net->dir);
		return 1;
	}
	if (status != 200) {
		json_t *e = json_loads(*resp ? *resp : "", 0, NULL);
		const char *m = json_string_value(json_object_get(e, "message"));
		fprintf(stderr, "qkm ctl: %s\n", m ? m : *resp ? *resp : "error");
		json_decref(e);
		free(*resp);
		*resp = NULL;
		return status == 404 ? 4 : 1;
	}
	return 0;
}

/* Percent-encodes s into out (for a query value). */
static void qenc(const char *s, char *out, size_t n)
{
	size_t k = 0;
	for (; *s && k + 4 < n; s++) {
		unsigned char c = (unsigned char)*s;
		if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		    c == '-' || c == '_' || c == '.' || c == ':')
			out[k++] = (char)c;
		else
			k += (size_t)snprintf(out + k, n - k, "%%%02X", c);
	}
	out[k] = '\0';
}

static void print_records(json_t *arr, bool with_node)
{
	size_t k;
	json_t *e;
	json_array_foreach(arr, k, e) {
		if (with_node)
			printf("%-10s %6lld ", json_string_value(json_object_get(e, "node")),
			       (long long)json_integer_value(json_object_get(e, "seq")));
		printf("%-27s %-16s %-8s %-40s %-10s %s\n",
		       json_string_value(json_object_get(e, "time")),
		       json_string_value(json_object_get(e, "event")),
		       json_string_value(json_object_get(e, "key_kind")),
		       json_string_value(json_object_get(e, "key_id")),
		       json_string_value(json_object_get(e, "peer")),
		       json_string_value(json_object_get(e, "detail")));
	}
}

struct opts {
	const char *dir, *event, *key, *node, *link, *since, *in, *bytes, *from, *to;
	long long after; /* --after SEQ: records from SEQ + 1 on; -1 when not given */
	bool json;
	int npos;
	const char *pos[QKM_MAX_PATH + 4];
};

static int ctl_records(struct qkm_network *net, const struct opts *o)
{
	char path[600] = "/records?limit=100000", v[300];
	char *resp = NULL;
	if (o->node) {
		qenc(o->node, v, sizeof(v));
		snprintf(path + strlen(path), sizeof(path) - strlen(path), "&node=%s", v);
	}
	if (o->key) {
		qenc(o->key, v, sizeof(v));
		snprintf(path + strlen(path), sizeof(path) - strlen(path), "&key=%s", v);
	}
	if (o->event) {
		qenc(o->event, v, sizeof(v));
		snprintf(path + strlen(path), sizeof(path) - strlen(path), "&event=%s", v);
	}
	if (o->after >= 0)
		snprintf(path + strlen(path), sizeof(path) - strlen(path), "&after=%lld", o->after);
	int rc = api(net, "GET", path, NULL, &resp, 30000, "qkm ctl records: the controller reads its ledger");
	if (rc)
		return rc;
	json_t *arr = json_loads(resp, 0, NULL);
	if (o->json)
		printf("%s\n", resp);
	else if (json_is_array(arr))
		print_records(arr, true);
	json_decref(arr);
	free(resp);
	return 0;
}

static int ctl_audit(struct qkm_network *net, const struct opts *o)
{
	char *resp = NULL;
	int rc = api(net, "GET", "/audit", NULL, &resp, 120000,
		     "qkm ctl audit: the controller checks every chain of its ledger");
	if (rc)
		return rc;
	json_t *a = json_loads(resp, 0, NULL), *v;
	size_t k;
	bool clean = json_is_true(json_object_get(a, "clean"));
	if (o->json) {
		printf("%s\n", resp);
	} else {
		printf("%-12s %10s %10s %s\n", "CHAIN", "RECORDS", "LAST SEQ", "STATE");
		json_array_foreach(json_object_get(a, "chains"), k, v)
			printf("%-12s %10lld %10lld %s\n",
			       json_string_value(json_object_get(v, "node")),
			       (long long)json_integer_value(json_object_get(v, "records")),
			       (long long)json_integer_value(json_object_get(v, "last_seq")),
			       json_string_value(json_object_get(v, "state")));
		json_array_foreach(json_object_get(a, "problems"), k, v)
			printf("PROBLEM: %s\n", json_string_value(json_object_get(v, "message")));
		printf("audit: %s\n", clean ? "clean" : "FAILED");
	}
	json_decref(a);
	free(resp);
	return clean ? 0 : 3;
}

static int ctl_trace(struct qkm_network *net, const struct opts *o)
{
	char path[400], v[300], *resp = NULL;
	if (o->npos != 1) {
		fprintf(stderr, "usage: qkm ctl trace --dir DIR [--json] KEY_ID\n");
		return 2;
	}
	qenc(o->pos[0], v, sizeof(v));
	snprintf(path, sizeof(path), "/trace?key=%s", v);
	int rc = api(net, "GET", path, NULL, &resp, 60000, "qkm ctl trace: the controller follows the key");
	if (rc)
		return rc;
	if (o->json) {
		printf("%s\n", resp);
	} else {
		json_t *t = json_loads(resp, 0, NULL), *x;
		size_t k;
		const char *sum = json_string_value(json_object_get(t, "summary"));
		printf("%s\n", sum ? sum : "");
		json_array_foreach(json_object_get(t, "lines"), k, x)
			printf("  %s\n", json_string_value(x));
		json_decref(t);
	}
	free(resp);
	return 0;
}

/* Adds or updates an SAE in DIR/network.json (so tools find its files). */
static int net_add_sae(const char *dir, struct qkm_network *net, const char *id, const char *node,
		       const char *cert, const char *key)
{
	size_t i = 0;
	while (i < net->n_saes && strcmp(net->saes[i].id, id))
		i++;
	if (i == QKM_MAX_SAES)
		return -1;
	if (i == net->n_saes)
		net->n_saes++;
	snprintf(net->saes[i].id, QKM_NAME_MAX, "%s", id);
	snprintf(net->saes[i].node, QKM_NAME_MAX, "%s", node);
	snprintf(net->saes[i].cert, sizeof(net->saes[i].cert), "%s", cert);
	snprintf(net->saes[i].key, sizeof(net->saes[i].key), "%s", key);
	char path[PATH_MAX + 16];
	snprintf(path, sizeof(path), "%s/network.json", dir);
	return qkm_network_save(path, net);
}

static int ctl_sae(struct qkm_network *net, const struct opts *o)
{
	char body[300], *resp = NULL;
	const char *sub = o->npos ? o->pos[0] : "";
	if (strcmp(sub, "list") == 0 && o->npos == 1) {
		int rc = api(net, "GET", "/saes", NULL, &resp, 10000, NULL);
		if (rc)
			return rc;
		json_t *a = json_loads(resp, 0, NULL), *v;
		size_t k;
		if (o->json)
			printf("%s\n", resp);
		else {
			printf("%-24s %-12s %s\n", "SAE", "NODE", "STATE");
			json_array_foreach(a, k, v)
				printf("%-24s %-12s %s\n", json_string_value(json_object_get(v, "id")),
				       json_string_value(json_object_get(v, "node")),
				       json_is_true(json_object_get(v, "revoked")) ? "revoked"
										  : "registered");
		}
		json_decref(a);
		free(resp);
		return 0;
	}
	bool add = strcmp(sub, "add") == 0, revoke = strcmp(sub, "revoke") == 0;
	if (o->npos != 2 || (!add && !revoke) || (add && !o->node) || !qkm_name_valid(o->pos[1]) ||
	    (o->node && !qkm_name_valid(o->node))) {
		fprintf(stderr, "usage: qkm ctl sae add NAME --node NODE --dir DIR\n"
				"       qkm ctl sae revoke NAME --dir DIR\n"
				"       qkm ctl sae list --dir DIR [--json]\n");
		return 2;
	}
	snprintf(body, sizeof(body), "{\"id\": \"%s\", \"node\": \"%s\"}", o->pos[1],
		 add ? o->node : "");
	int rc = api(net, "POST", add ? "/saes" : "/saes/revoke", body, &resp, 10000, NULL);
	if (rc)
		return rc;
	json_t *a = json_loads(resp, 0, NULL);
	const char *cert = json_string_value(json_object_get(a, "cert"));
	const char *key = json_string_value(json_object_get(a, "key"));
	if (add && cert && key && net_add_sae(o->dir, net, o->pos[1], o->node, cert, key))
		fprintf(stderr, "qkm ctl: warning: %s/network.json not updated\n", o->dir);
	if (o->json)
		printf("%s\n", resp);
	else if (add)
		printf("SAE %s registered at %s\n  certificate %s\n  key         %s\n", o->pos[1],
		       o->node, cert ? cert : "?", key ? key : "?");
	else
		printf("SAE %s revoked; nodes refuse it (401) once they have the new access list\n",
		       o->pos[1]);
	json_decref(a);
	free(resp);
	return 0;
}

static int ctl_routes(struct qkm_network *net, const struct opts *o)
{
	char *resp = NULL;
	int rc = api(net, "GET", "/status", NULL, &resp, 10000, NULL);
	if (rc)
		return rc;
	json_t *s = json_loads(resp, 0, NULL), *n, *r;
	size_t i, k;
	if (o->json) {
		json_t *out = json_array();
		json_array_foreach(json_object_get(s, "nodes"), i, n)
			json_array_foreach(json_object_get(n, "routes"), k, r) {
				json_t *x = json_deep_copy(r);
				json_object_set(x, "from", json_object_get(n, "id"));
				json_array_append_new(out, x);
			}
		char *t = json_dumps(out, JSON_COMPACT);
		printf("%s\n", t ? t : "[]");
		free(t);
		json_decref(out);
	} else {
		printf("mode %s\n%-10s %-10s %-12s %s\n",
		       json_string_value(json_object_get(s, "mode")), "FROM", "TO", "MODE", "PATH");
		json_array_foreach(json_object_get(s, "nodes"), i, n)
			json_array_foreach(json_object_get(n, "routes"), k, r)
				printf("%-10s %-10s %-12s %s\n",
				       json_string_value(json_object_get(n, "id")),
				       json_string_value(json_object_get(r, "to")),
				       json_string_value(json_object_get(r, "mode")),
				       json_string_value(json_object_get(r, "path")));
	}
	json_decref(s);
	free(resp);
	return 0;
}

/* route set FROM TO NODE... | route clear FROM TO */
static int ctl_route(struct qkm_network *net, const struct opts *o)
{
	bool set = o->npos >= 5 && strcmp(o->pos[0], "set") == 0;
	bool clear = o->npos == 3 && strcmp(o->pos[0], "clear") == 0;
	if (!set && !clear) {
		fprintf(stderr, "usage: qkm ctl route set --dir DIR FROM TO FROM HOP... TO\n"
				"       qkm ctl route clear --dir DIR FROM TO\n");
		return 2;
	}
	json_t *path = json_array();
	for (int i = 3; set && i < o->npos; i++)
		json_array_append_new(path, json_string(o->pos[i]));
	json_t *b = json_pack("{s:s, s:s, s:o}", "from", o->pos[1], "to", o->pos[2], "path", path);
	char *body = json_dumps(b, JSON_COMPACT), *resp = NULL;
	json_decref(b);
	int rc = body ? api(net, "POST", "/routes", body, &resp, 10000, NULL) : 1;
	free(body);
	if (rc)
		return rc;
	printf(set ? "route %s -> %s set\n" : "manual route %s -> %s dropped\n", o->pos[1],
	       o->pos[2]);
	free(resp);
	return 0;
}

/* mode [MODE] [--from A --to B] */
static int ctl_mode(struct qkm_network *net, const struct opts *o)
{
	char *resp = NULL;
	if (o->npos == 0) {
		int rc = api(net, "GET", "/mode", NULL, &resp, 10000, NULL);
		if (rc)
			return rc;
		json_t *m = json_loads(resp, 0, NULL);
		printf("%s\n", o->json ? resp : json_string_value(json_object_get(m, "mode")));
		json_decref(m);
		free(resp);
		return 0;
	}
	json_t *b = json_pack("{s:s}", "mode", o->pos[0]);
	if (o->from)
		json_object_set_new(b, "from", json_string(o->from));
	if (o->to)
		json_object_set_new(b, "to", json_string(o->to));
	char *body = json_dumps(b, JSON_COMPACT);
	json_decref(b);
	int rc = body ? api(net, "POST", "/mode", body, &resp, 10000, NULL) : 1;
	free(body);
	if (rc)
		return rc;
	if (o->from)
		printf("rerouting mode %s for %s -> %s\n", o->pos[0], o->from, o->to ? o->to : "?");
	else
		printf("rerouting mode %s for the network\n", o->pos[0]);
	free(resp);
	return 0;
}

/* schedule add FROM TO --in SECONDS --bytes N | schedule list */
static int ctl_schedule(struct qkm_network *net, const struct opts *o)
{
	char *resp = NULL;
	if (o->npos == 1 && strcmp(o->pos[0], "list") == 0) {
		int rc = api(net, "GET", "/schedule", NULL, &resp, 10000, NULL);
		if (!rc)
			printf("%s\n", resp);
		free(resp);
		return rc;
	}
	if (o->npos != 3 || strcmp(o->pos[0], "add") || !o->in || !o->bytes) {
		fprintf(stderr, "usage: qkm ctl schedule add --dir DIR FROM TO --in SECONDS --bytes N\n"
				"       qkm ctl schedule list --dir DIR\n");
		return 2;
	}
	json_t *b = json_pack("{s:s, s:s, s:s, s:s}", "from", o->pos[1], "to", o->pos[2],
			      "in_seconds", o->in, "bytes", o->bytes);
	char *body = json_dumps(b, JSON_COMPACT);
	json_decref(b);
	int rc = body ? api(net, "POST", "/schedule", body, &resp, 10000, NULL) : 1;
	free(body);
	if (!rc)
		printf("scheduled: %s relays %s bytes to %s in %s s\n", o->pos[1], o->bytes,
		       o->pos[2], o->in);
	free(resp);
	return rc;
}

static int ctl_compromise(struct qkm_network *net, const struct opts *o)
{
	int given = !!o->key + !!o->link + !!o->node;
	if (given != 1 || o->npos) {
		fprintf(stderr, "usage: qkm ctl compromise --dir DIR [--json] "
				"(--key ID | --link A-B [--since TIME] | --node N)\n");
		return 2;
	}
	json_t *b = json_object();
	if (o->key)
		json_object_set_new(b, "key", json_string(o->key));
	if (o->link)
		json_object_set_new(b, "link", json_string(o->link));
	if (o->node)
		json_object_set_new(b, "node", json_string(o->node));
	if (o->since)
		json_object_set_new(b, "since", json_string(o->since));
	char *body = json_dumps(b, JSON_COMPACT), *resp = NULL;
	json_decref(b);
	int rc = body ? api(net, "POST", "/compromise", body, &resp, 120000,
				  "qkm ctl compromise: the nodes delete the correlated keys") : 1;
	free(body);
	if (rc)
		return rc;
	if (o->json) {
		printf("%s\n", resp);
	} else {
		json_t *t = json_loads(resp, 0, NULL), *x;
		size_t k;
		const char *sum = json_string_value(json_object_get(t, "summary"));
		printf("%s\n", sum ? sum : "");
		json_array_foreach(json_object_get(t, "lines"), k, x)
			printf("  %s\n", json_string_value(x));
		json_decref(t);
	}
	free(resp);
	return 0;
}

static void usage(FILE *f)
{
	fprintf(f, "usage: qkm ctl status --dir DIR [--json]\n"
		   "       qkm ctl pair-check --dir DIR [--json] NODE_A NODE_B\n"
		   "       qkm ctl events --dir DIR [--json] [--event NAME] [--key TEXT] [--after SEQ]\n"
		   "                 NODE\n"
		   "  through the controller:\n"
		   "       qkm ctl records --dir DIR [--json] [--node N] [--event NAME] [--key TEXT]\n"
		   "                 [--after SEQ]\n"
		   "       qkm ctl audit --dir DIR [--json]\n"
		   "       qkm ctl trace --dir DIR [--json] KEY_ID\n"
		   "       qkm ctl sae add NAME --node NODE --dir DIR | sae revoke NAME --dir DIR |\n"
		   "                 sae list --dir DIR [--json]\n"
		   "       qkm ctl routes --dir DIR [--json]\n"
		   "       qkm ctl route set --dir DIR FROM TO FROM HOP... TO | route clear --dir DIR FROM TO\n"
		   "       qkm ctl mode --dir DIR [MODE [--from A --to B]]   (manual, fixed-rate,\n"
		   "                 adaptive, scheduled)\n"
		   "       qkm ctl schedule add --dir DIR FROM TO --in SECONDS --bytes N | schedule list\n"
		   "       qkm ctl compromise --dir DIR [--json] (--key ID | --link A-B [--since TIME] |\n"
		   "                 --node N)\n"
		   "  (events and records list at most 100000 records, oldest first; --after SEQ\n"
		   "   starts after seq SEQ, to page on)\n"
		   "See qkm-ctl(1).\n");
}

int cli_ctl(int argc, char **argv)
{
	struct opts o = {.after = -1};
	qkm_log_init("qkm ctl", QKM_LOG_ERROR);
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "help") == 0 ||
	    strcmp(argv[1], "-h") == 0) {
		usage(stdout);
		return 0;
	}
	static const struct {
		const char *name;
		size_t off;
	} vals[] = {
		{"--dir", offsetof(struct opts, dir)},     {"--event", offsetof(struct opts, event)},
		{"--key", offsetof(struct opts, key)},     {"--node", offsetof(struct opts, node)},
		{"--link", offsetof(struct opts, link)},   {"--since", offsetof(struct opts, since)},
		{"--in", offsetof(struct opts, in)},       {"--bytes", offsetof(struct opts, bytes)},
		{"--from", offsetof(struct opts, from)},   {"--to", offsetof(struct opts, to)},
	};
	for (int i = 2; i < argc; i++) {
		size_t v = 0;
		while (v < sizeof(vals) / sizeof(vals[0]) && strcmp(argv[i], vals[v].name))
			v++;
		if (v < sizeof(vals) / sizeof(vals[0]) && i + 1 < argc) {
			*(const char **)((char *)&o + vals[v].off) = argv[++i];
		} else if (strcmp(argv[i], "--after") == 0 && i + 1 < argc) {
			char *end;
			o.after = strtoll(argv[++i], &end, 10);
			if (end == argv[i] || *end || o.after < 0 || o.after == LLONG_MAX) {
				fprintf(stderr, "qkm ctl: --after wants a record seq (0 or more), not '%s'\n",
					argv[i]);
				return 2;
			}
		} else if (strcmp(argv[i], "--json") == 0) {
			o.json = true;
		} else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			usage(stdout);
			return 0;
		} else if (argv[i][0] != '-' && o.npos < (int)(sizeof(o.pos) / sizeof(o.pos[0]))) {
			o.pos[o.npos++] = argv[i];
		} else {
			usage(stderr);
			return 2;
		}
	}
	if (!o.dir) {
		usage(stderr);
		return 2;
	}
	const char *cmd = argv[1];
	if (strcmp(cmd, "status") == 0 && o.npos == 0)
		return ctl_status(o.dir, o.json);
	if (strcmp(cmd, "pair-check") == 0 && o.npos == 2)
		return ctl_pair_check(o.dir, o.pos[0], o.pos[1], o.json);
	if (strcmp(cmd, "events") == 0 && o.npos == 1)
		return ctl_events(o.dir, o.pos[0], o.event, o.key, o.after, o.json);
	static const struct {
		const char *name;
		int (*fn)(struct qkm_network *net, const struct opts *o);
	} mgr[] = {
		{"records", ctl_records},
		{"audit", ctl_audit},
		{"trace", ctl_trace},
		{"sae", ctl_sae},
		{"routes", ctl_routes},
		{"route", ctl_route},
		{"mode", ctl_mode},
		{"schedule", ctl_schedule},
		{"compromise", ctl_compromise},
	};
	for (size_t i = 0; i < sizeof(mgr) / sizeof(mgr[0]); i++)
		if (strcmp(cmd, mgr[i].name) == 0) {
			struct qkm_network *net = malloc(sizeof(*net));
			int rc = net && load(o.dir, net) == 0 ? mgr[i].fn(net, &o) : 1;
			free(net);
			return rc;
		}
	usage(stderr);
	return 2;
}
