/* ctl.c - `qkm ctl`: operator commands against a running network.
 *   status --dir DIR [--json]      stock and counters of every node
 *   pair-check --dir DIR A B       compare the pool A and B share (by MAC)
 *   events --dir DIR NODE [--event E] [--key K]   a node's life-cycle records
 * Until the controller exists, ctl talks to each node's admin API with the
 * operator certificate from DIR. */
#include "cli/cli.h"
#include "core/log.h"
#include "net/http.h"
#include "proto/status_json.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int load(const char *dir, struct qkm_network *net)
{
	char path[PATH_MAX + 16], err[512];
	snprintf(path, sizeof(path), "%s/network.json", dir);
	if (qkm_network_load(path, net, err, sizeof(err))) {
		fprintf(stderr, "qkm ctl: %s\n", err);
		return -1;
	}
	return 0;
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
		fprintf(stderr, "qkm ctl pair-check: no node named '%s' in %s\n", a, dir);
		goto out;
	}
	snprintf(url, sizeof(url), "%s/pair-check?peer=%s", net->nodes[i].admin, b);
	int status;
	int r = qkm_https_request(url, "POST", "{}", net->ca, net->admin_cert, net->admin_key, 90000,
				  &status, &body);
	if (r) {
		fprintf(stderr, "qkm ctl pair-check: node %s not reachable: %s\n", a, qkm_strerror(r));
		goto out;
	}
	if (status != 200) {
		fprintf(stderr, "qkm ctl pair-check: %s\n", body ? body : "error");
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
 * and by a substring of the key ID, oldest first. */
static int ctl_events(const char *dir, const char *node, const char *event, const char *key,
		      bool json)
{
	struct qkm_network *net = malloc(sizeof(*net));
	char url[QKM_ADDR_MAX + 300], *body = NULL;
	int rc = 1, status, i;
	json_t *arr = NULL;
	if (!net || load(dir, net))
		goto out;
	if ((i = node_index(net, node)) < 0) {
		fprintf(stderr, "qkm ctl events: no node named '%s' in %s\n", node, dir);
		goto out;
	}
	int n = snprintf(url, sizeof(url), "%s/events?limit=100000", net->nodes[i].admin);
	if (event && qkm_name_valid(event))
		n += snprintf(url + n, sizeof(url) - (size_t)n, "&event=%s", event);
	if (key && qkm_name_valid(key))
		snprintf(url + n, sizeof(url) - (size_t)n, "&key=%s", key);
	int r = qkm_https_request(url, "GET", NULL, net->ca, net->admin_cert, net->admin_key, 30000,
				  &status, &body);
	if (r || status != 200) {
		fprintf(stderr, "qkm ctl events: node %s: %s\n", node,
			r ? qkm_strerror(r) : body ? body : "error");
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

static void usage(FILE *f)
{
	fprintf(f, "usage: qkm ctl status --dir DIR [--json]\n"
		   "       qkm ctl pair-check --dir DIR [--json] NODE_A NODE_B\n"
		   "       qkm ctl events --dir DIR [--json] [--event NAME] [--key TEXT] NODE\n");
}

int cli_ctl(int argc, char **argv)
{
	const char *dir = NULL, *pos[2] = {NULL, NULL}, *event = NULL, *key = NULL;
	bool json = false;
	int npos = 0;
	qkm_log_init("qkm ctl", QKM_LOG_ERROR);
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	for (int i = 2; i < argc; i++) {
		if (strcmp(argv[i], "--dir") == 0 && i + 1 < argc)
			dir = argv[++i];
		else if (strcmp(argv[i], "--json") == 0)
			json = true;
		else if (strcmp(argv[i], "--event") == 0 && i + 1 < argc)
			event = argv[++i];
		else if (strcmp(argv[i], "--key") == 0 && i + 1 < argc)
			key = argv[++i];
		else if (argv[i][0] != '-' && npos < 2)
			pos[npos++] = argv[i];
		else {
			usage(stderr);
			return 2;
		}
	}
	if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "help") == 0) {
		usage(stdout);
		return 0;
	}
	if (!dir) {
		usage(stderr);
		return 2;
	}
	if (strcmp(argv[1], "status") == 0 && npos == 0)
		return ctl_status(dir, json);
	if (strcmp(argv[1], "pair-check") == 0 && npos == 2)
		return ctl_pair_check(dir, pos[0], pos[1], json);
	if (strcmp(argv[1], "events") == 0 && npos == 1)
		return ctl_events(dir, pos[0], event, key, json);
	usage(stderr);
	return 2;
}
