/* status_json.c - JSON of node status, pair-check results, the network file
 * and the merged ctl status (status_json.h). */
#include "proto/status_json.h"
#include "proto/config_json.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *dump(json_t *j)
{
	if (!j)
		return NULL;
	char *s = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_decref(j);
	return s;
}

char *qkm_status_to_json(const struct qkm_node_status *s)
{
	json_t *pools = json_array(), *links = json_array();
	for (size_t i = 0; i < s->n_pools; i++) {
		const struct qkm_status_pool *p = &s->pools[i];
		json_array_append_new(
			pools, json_pack("{s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:I}", "peer", p->peer,
					 "kind", p->kind, "keys", (json_int_t)p->keys, "bytes",
					 (json_int_t)p->bytes, "enc_bytes", (json_int_t)p->enc_bytes,
					 "dec_bytes", (json_int_t)p->dec_bytes, "pending_keys",
					 (json_int_t)p->pending_keys, "stock_keys",
					 (json_int_t)p->stock_keys));
	}
	for (size_t i = 0; i < s->n_links; i++) {
		const struct qkm_status_link *l = &s->links[i];
		json_array_append_new(
			links, json_pack("{s:s, s:s, s:s, s:s, s:b, s:b, s:b, s:f, s:I, s:s?, s:I, s:i}",
					 "link", l->link, "peer", l->peer, "module", l->module,
					 "role", l->leader ? "leader" : "follower", "kx_up",
					 l->kx_up, "reconciled", l->reconciled, "module_up",
					 l->module_up, "qber", l->qber, "rate_bps",
					 (json_int_t)l->rate_bps, "alarm",
					 l->alarm[0] ? l->alarm : NULL, "buffered_bytes",
					 (json_int_t)l->buffered_bytes, "in_flight",
					 (int)l->in_flight));
	}
	json_t *saes = json_array();
	for (size_t i = 0; i < s->n_saes; i++)
		json_array_append_new(saes, json_pack("{s:s, s:I, s:I}", "id", s->saes[i].id,
						      "enc_keys", (json_int_t)s->saes[i].enc_keys,
						      "dec_keys", (json_int_t)s->saes[i].dec_keys));
	json_t *counters = json_pack("{s:I, s:I, s:I, s:I}", "acquired_bytes",
				     (json_int_t)s->acquired_bytes, "aborted_batches",
				     (json_int_t)s->aborted_batches, "supplied_keys",
				     (json_int_t)s->supplied_keys, "relayed_bytes",
				     (json_int_t)s->relayed_bytes);
	return dump(json_pack("{s:s, s:b, s:b, s:o, s:o, s:o, s:o}", "id", s->id, "up", 1, "ready",
			      s->ready, "pools", pools, "counters", counters, "links", links,
			      "saes", saes));
}

char *qkm_paircheck_to_json(const char *node, const char *peer, uint32_t matches,
			    uint32_t mismatches, uint32_t in_flight, uint32_t only_node,
			    uint32_t only_peer, const char *detail)
{
	return dump(json_pack("{s:s, s:s, s:i, s:i, s:i, s:i, s:i, s:s}", "node", node, "peer", peer,
			      "matches", (int)matches, "mismatches",
			      (int)(mismatches + only_node + only_peer), "in_flight",
			      (int)in_flight, "only_node", (int)only_node, "only_peer",
			      (int)only_peer, "detail", detail));
}

char *qkm_error_json(const char *message)
{
	return dump(json_pack("{s:s}", "message", message));
}

int qkm_paircheck_parse(const char *json, uint32_t *matches, uint32_t *mismatches,
			uint32_t *in_flight, char *detail, size_t detailsz)
{
	json_t *j = json_loads(json, 0, NULL);
	int m = 0, mm = 0, inf = 0;
	const char *d = "";
	int rc = QKM_EFORMAT;
	if (j && json_unpack(j, "{s:i, s:i, s:i, s?s}", "matches", &m, "mismatches", &mm,
			     "in_flight", &inf, "detail", &d) == 0) {
		*matches = (uint32_t)m;
		*mismatches = (uint32_t)mm;
		*in_flight = (uint32_t)inf;
		snprintf(detail, detailsz, "%s", d);
		rc = 0;
	}
	json_decref(j);
	return rc;
}

/* ---- network file ------------------------------------------------------ */

int qkm_network_save(const char *path, const struct qkm_network *n)
{
	json_t *nodes = json_object(), *saes = json_object();
	for (size_t i = 0; i < n->n_nodes; i++) {
		json_t *o = json_pack("{s:s, s:i, s:s, s:s}", "admin", n->nodes[i].admin, "pid",
				      n->nodes[i].pid, "config", n->nodes[i].config, "log",
				      n->nodes[i].log);
		if (n->nodes[i].etsi014[0])
			json_object_set_new(o, "etsi014", json_string(n->nodes[i].etsi014));
		json_object_set_new(nodes, n->nodes[i].id, o);
	}
	for (size_t i = 0; i < n->n_saes; i++)
		json_object_set_new(saes, n->saes[i].id,
				    json_pack("{s:s, s:s, s:s}", "node", n->saes[i].node, "cert",
					      n->saes[i].cert, "key", n->saes[i].key));
	json_t *root = json_pack(
		"{s:s, s:s, s:{s:s, s:s}, s:o, s:o, s:{s:s, s:i, s:s, s:s}}", "dir", n->dir, "ca",
		n->ca, "admin", "cert", n->admin_cert, "key", n->admin_key, "nodes", nodes, "saes",
		saes, "sim", "control", n->sim_control, "pid", n->sim_pid, "config", n->sim_config,
		"log", n->sim_log);
	if (root && n->ctl_api[0])
		json_object_set_new(root, "controller",
				    json_pack("{s:s, s:i, s:s, s:s}", "api", n->ctl_api, "pid",
					      n->ctl_pid, "config", n->ctl_config, "log",
					      n->ctl_log));
	char *text = dump(root);
	if (!text)
		return QKM_ENOMEM;
	int rc = qkm_json_save_text(path, text, 0644);
	free(text);
	return rc;
}

static int copy_str(json_t *o, const char *key, char *out, size_t outsz, bool required)
{
	json_t *v = json_object_get(o, key);
	if (!v)
		return required ? QKM_ECONFIG : 0;
	if (!json_is_string(v) || strlen(json_string_value(v)) >= outsz)
		return QKM_ECONFIG;
	snprintf(out, outsz, "%s", json_string_value(v));
	return 0;
}

int qkm_network_load(const char *path, struct qkm_network *n, char *err, size_t errsz)
{
	json_error_t je;
	memset(n, 0, sizeof(*n));
	json_t *root = json_load_file(path, 0, &je), *nodes, *saes, *sim, *admin, *v;
	const char *k;
	int rc = QKM_ECONFIG;
	if (!root) {
		snprintf(err, errsz, "%s: %s", path, je.text);
		return QKM_EIO;
	}
	nodes = json_object_get(root, "nodes");
	saes = json_object_get(root, "saes");
	sim = json_object_get(root, "sim");
	admin = json_object_get(root, "admin");
	if (!json_is_object(nodes) || !json_is_object(saes) || !json_is_object(sim) ||
	    !json_is_object(admin) || copy_str(root, "ca", n->ca, sizeof(n->ca), true) ||
	    copy_str(root, "dir", n->dir, sizeof(n->dir), true) ||
	    copy_str(admin, "cert", n->admin_cert, sizeof(n->admin_cert), true) ||
	    copy_str(admin, "key", n->admin_key, sizeof(n->admin_key), true) ||
	    copy_str(sim, "control", n->sim_control, sizeof(n->sim_control), true) ||
	    copy_str(sim, "config", n->sim_config, sizeof(n->sim_config), false) ||
	    copy_str(sim, "log", n->sim_log, sizeof(n->sim_log), false))
		goto bad;
	n->sim_pid = (int)json_integer_value(json_object_get(sim, "pid"));
	json_t *ctl = json_object_get(root, "controller");
	if (ctl && (!json_is_object(ctl) ||
		    copy_str(ctl, "api", n->ctl_api, sizeof(n->ctl_api), true) ||
		    copy_str(ctl, "config", n->ctl_config, sizeof(n->ctl_config), false) ||
		    copy_str(ctl, "log", n->ctl_log, sizeof(n->ctl_log), false)))
		goto bad;
	if (ctl)
		n->ctl_pid = (int)json_integer_value(json_object_get(ctl, "pid"));
	json_object_foreach(nodes, k, v) {
		if (n->n_nodes == QKM_MAX_NODES || strlen(k) >= QKM_NAME_MAX || !json_is_object(v))
			goto bad;
		size_t i = n->n_nodes++;
		snprintf(n->nodes[i].id, QKM_NAME_MAX, "%s", k);
		if (copy_str(v, "admin", n->nodes[i].admin, sizeof(n->nodes[i].admin), true) ||
		    copy_str(v, "etsi014", n->nodes[i].etsi014, sizeof(n->nodes[i].etsi014), false) ||
		    copy_str(v, "config", n->nodes[i].config, sizeof(n->nodes[i].config), false) ||
		    copy_str(v, "log", n->nodes[i].log, sizeof(n->nodes[i].log), false))
			goto bad;
		n->nodes[i].pid = (int)json_integer_value(json_object_get(v, "pid"));
	}
	json_object_foreach(saes, k, v) {
		if (n->n_saes == QKM_MAX_SAES || strlen(k) >= QKM_NAME_MAX || !json_is_object(v))
			goto bad;
		size_t i = n->n_saes++;
		snprintf(n->saes[i].id, QKM_NAME_MAX, "%s", k);
		if (copy_str(v, "node", n->saes[i].node, QKM_NAME_MAX, true) ||
		    copy_str(v, "cert", n->saes[i].cert, sizeof(n->saes[i].cert), true) ||
		    copy_str(v, "key", n->saes[i].key, sizeof(n->saes[i].key), true))
			goto bad;
	}
	rc = 0;
	goto out;
bad:
	snprintf(err, errsz, "%s: not a qkm network file", path);
out:
	json_decref(root);
	return rc;
}

/* ---- ctl status -------------------------------------------------------- */

static json_t *pool_find(json_t *node, const char *peer)
{
	json_t *pools = json_object_get(node, "pools"), *p;
	size_t i;
	json_array_foreach(pools, i, p) {
		const char *pp = json_string_value(json_object_get(p, "peer"));
		const char *kind = json_string_value(json_object_get(p, "kind"));
		if (pp && kind && strcmp(pp, peer) == 0 && strcmp(kind, "link") == 0)
			return p;
	}
	return NULL;
}

static json_int_t geti(json_t *o, const char *k) { return json_integer_value(json_object_get(o, k)); }

char *qkm_status_merge(size_t n, const char *const *ids, const char *const *texts,
		       bool *consistent, char **table)
{
	json_t *arr = json_array();
	*consistent = true;
	*table = NULL;
	for (size_t i = 0; i < n; i++) {
		json_t *node = texts[i] ? json_loads(texts[i], 0, NULL) : NULL;
		if (!json_is_object(node)) {
			json_decref(node);
			node = json_pack("{s:s, s:b, s:[], s:{s:i, s:i, s:i, s:i}}", "id", ids[i],
					 "up", 0, "pools", "counters", "acquired_bytes", 0,
					 "aborted_batches", 0, "supplied_keys", 0, "relayed_bytes",
					 0);
		}
		json_array_append_new(arr, node);
	}
	/* The two ends of a link pool must agree on stock. */
	size_t i;
	json_t *node;
	json_array_foreach(arr, i, node) {
		const char *id = json_string_value(json_object_get(node, "id"));
		json_t *pools = json_object_get(node, "pools"), *p;
		size_t j;
		json_array_foreach(pools, j, p) {
			const char *peer = json_string_value(json_object_get(p, "peer"));
			json_t *other = NULL, *q;
			size_t k;
			json_array_foreach(arr, k, q) if (peer &&
							  strcmp(json_string_value(json_object_get(q, "id")),
								 peer) == 0) other = q;
			json_t *op = other && id ? pool_find(other, id) : NULL;
			/* End-to-end pools differ while relays are in flight (the
			 * origin's copy counts once confirmed): links only. */
			const char *kind = json_string_value(json_object_get(p, "kind"));
			if (kind && strcmp(kind, "relay") == 0)
				op = NULL;
			if (op && (geti(p, "keys") != geti(op, "keys") ||
				   geti(p, "bytes") != geti(op, "bytes") ||
				   geti(p, "enc_bytes") != geti(op, "dec_bytes")))
				*consistent = false;
		}
	}
	/* Table. */
	size_t cap = 4096 + n * 1024, len = 0;
	char *t = malloc(cap);
	if (t) {
		len += (size_t)snprintf(t + len, cap - len, "%-12s %-4s %-12s %-5s %10s %12s %12s %12s\n",
					"NODE", "UP", "PEER", "KIND", "KEYS", "BYTES", "ENC_BYTES",
					"DEC_BYTES");
		json_array_foreach(arr, i, node) {
			const char *id = json_string_value(json_object_get(node, "id"));
			int up = json_is_true(json_object_get(node, "up"));
			json_t *pools = json_object_get(node, "pools"), *p;
			size_t j;
			if (json_array_size(pools) == 0 && len < cap - 200)
				len += (size_t)snprintf(t + len, cap - len, "%-12s %-4s %-12s\n", id,
							up ? "yes" : "NO", "-");
			json_array_foreach(pools, j, p) {
				if (len >= cap - 200)
					break;
				len += (size_t)snprintf(
					t + len, cap - len, "%-12s %-4s %-12s %-5s %10lld %12lld %12lld %12lld\n",
					j ? "" : id, j ? "" : (up ? "yes" : "NO"),
					json_string_value(json_object_get(p, "peer")),
					json_string_value(json_object_get(p, "kind")),
					(long long)geti(p, "keys"), (long long)geti(p, "bytes"),
					(long long)geti(p, "enc_bytes"), (long long)geti(p, "dec_bytes"));
			}
		}
		*table = t;
	}
	return dump(json_pack("{s:o}", "nodes", arr));
}
