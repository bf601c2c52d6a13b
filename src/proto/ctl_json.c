/* ctl_json.c - the controller's JSON (ctl_json.h): strict where it reads
 * what others send, compact where it writes. */
#include "proto/ctl_json.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/id.h"
#include "proto/config_json.h"

static bool copy_name(json_t *o, const char *key, char *out, size_t outsz)
{
	const char *s = json_string_value(json_object_get(o, key));
	if (!s || strlen(s) >= outsz)
		return false;
	snprintf(out, outsz, "%s", s);
	return true;
}

int qkm_links_from_status(const char *json, size_t len, struct qkm_link_state *out, size_t max,
			  size_t *n)
{
	json_t *root = json_loadb(json, len, 0, NULL), *links, *pools, *l, *p;
	size_t i, j, k = 0;
	int rc = QKM_EFORMAT;
	*n = 0;
	if (!root || !json_is_array(links = json_object_get(root, "links")) ||
	    !json_is_array(pools = json_object_get(root, "pools")))
		goto out;
	json_array_foreach(links, i, l) {
		if (k == max)
			break;
		struct qkm_link_state *s = &out[k];
		memset(s, 0, sizeof(*s));
		if (!copy_name(l, "link", s->link, sizeof(s->link)) ||
		    !copy_name(l, "peer", s->peer, sizeof(s->peer)))
			goto out;
		s->up = json_is_true(json_object_get(l, "module_up")) &&
			json_is_true(json_object_get(l, "kx_up")) &&
			json_is_true(json_object_get(l, "reconciled"));
		const char *alarm = json_string_value(json_object_get(l, "alarm"));
		s->alarm = alarm && alarm[0];
		s->qber = json_number_value(json_object_get(l, "qber"));
		json_int_t rate = json_integer_value(json_object_get(l, "rate_bps"));
		s->rate_bps = rate > 0 ? (uint64_t)rate : 0;
		json_array_foreach(pools, j, p) {
			const char *peer = json_string_value(json_object_get(p, "peer"));
			const char *kind = json_string_value(json_object_get(p, "kind"));
			json_int_t enc = json_integer_value(json_object_get(p, "enc_bytes"));
			if (peer && kind && strcmp(peer, s->peer) == 0 && strcmp(kind, "link") == 0)
				s->stock_bytes = enc > 0 ? (uint64_t)enc : 0;
		}
		k++;
	}
	*n = k;
	rc = 0;
out:
	json_decref(root);
	return rc;
}

struct qkm_jlist {
	json_t *arr;
};

struct qkm_jlist *qkm_jlist_new(void)
{
	struct qkm_jlist *l = calloc(1, sizeof(*l));
	if (l && !(l->arr = json_array())) {
		free(l);
		return NULL;
	}
	return l;
}

void qkm_jlist_free(struct qkm_jlist *l)
{
	if (!l)
		return;
	json_decref(l->arr);
	free(l);
}

int qkm_jlist_add_record(struct qkm_jlist *l, const char *node, const struct qkm_lc_event *ev)
{
	char ts[32];
	qkm_time_str(ev->ts_ns, ts);
	json_t *o = json_pack("{s:s, s:I, s:s, s:s, s:s, s:s, s:s, s:s}", "node", node, "seq",
			      (json_int_t)ev->seq, "time", ts, "event", ev->event, "key_kind",
			      ev->key_kind, "key_id", ev->key_id, "peer", ev->peer, "detail",
			      ev->detail);
	return o && json_array_append_new(l->arr, o) == 0 ? 0 : QKM_ENOMEM;
}

int qkm_jlist_add_json(struct qkm_jlist *l, const char *json)
{
	json_t *o = json_loads(json, 0, NULL);
	if (!o)
		return QKM_EFORMAT;
	return json_array_append_new(l->arr, o) == 0 ? 0 : QKM_ENOMEM;
}

int qkm_jlist_add_str(struct qkm_jlist *l, const char *s)
{
	return json_array_append_new(l->arr, json_string(s)) == 0 ? 0 : QKM_ENOMEM;
}

size_t qkm_jlist_len(const struct qkm_jlist *l) { return json_array_size(l->arr); }

char *qkm_jlist_dump(const struct qkm_jlist *l, const char *key, const char *extra)
{
	if (!key)
		return json_dumps(l->arr, JSON_COMPACT);
	json_t *o = extra ? json_loads(extra, 0, NULL) : json_object();
	if (!json_is_object(o) || json_object_set(o, key, l->arr)) {
		json_decref(o);
		return NULL;
	}
	char *s = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	return s;
}

char *qkm_json_object(const char *const *keys, const char *const *values, const bool *strs,
		      size_t n)
{
	json_t *o = json_object();
	for (size_t i = 0; o && i < n; i++) {
		json_t *v = strs[i] ? json_string(values[i]) : json_loads(values[i], JSON_DECODE_ANY, NULL);
		if (!v || json_object_set_new(o, keys[i], v)) {
			json_decref(o);
			o = NULL;
		}
	}
	char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
	json_decref(o);
	return s;
}

char *qkm_saes_json(const struct qkm_sae_entry *e, size_t n)
{
	json_t *arr = json_array();
	for (size_t i = 0; arr && i < n; i++)
		if (json_array_append_new(arr, json_pack("{s:s, s:s, s:b}", "id", e[i].id, "node",
							 e[i].node, "revoked", e[i].revoked))) {
			json_decref(arr);
			return NULL;
		}
	char *s = arr ? json_dumps(arr, JSON_COMPACT) : NULL;
	json_decref(arr);
	return s;
}

int qkm_saes_json_save(const char *path, const struct qkm_sae_entry *e, size_t n)
{
	char *s = qkm_saes_json(e, n);
	if (!s)
		return QKM_ENOMEM;
	int rc = qkm_json_save_text(path, s, 0600);
	free(s);
	return rc;
}

/* The access list in root (NULL: none could be read, QKM_EIO); takes root. */
static int saes_take(json_t *root, struct qkm_sae_entry *e, size_t max, size_t *n)
{
	json_t *v;
	size_t i;
	int rc = QKM_EFORMAT;
	*n = 0;
	if (!root)
		return QKM_EIO;
	if (!json_is_array(root) || json_array_size(root) > max)
		goto out;
	json_array_foreach(root, i, v) {
		if (!copy_name(v, "id", e[i].id, sizeof(e[i].id)) || !qkm_name_valid(e[i].id) ||
		    !copy_name(v, "node", e[i].node, sizeof(e[i].node)) ||
		    !qkm_name_valid(e[i].node) || !json_is_boolean(json_object_get(v, "revoked")))
			goto out;
		e[i].revoked = json_is_true(json_object_get(v, "revoked"));
	}
	*n = json_array_size(root);
	rc = 0;
out:
	json_decref(root);
	return rc;
}

int qkm_saes_json_load(const char *path, struct qkm_sae_entry *e, size_t max, size_t *n)
{
	return saes_take(json_load_file(path, 0, NULL), e, max, n);
}

int qkm_saes_json_parse(const char *text, size_t len, struct qkm_sae_entry *e, size_t max,
			size_t *n)
{
	json_t *root = json_loadb(text ? text : "", len, 0, NULL);
	if (!root) {
		*n = 0;
		return QKM_EFORMAT;
	}
	return saes_take(root, e, max, n);
}

int qkm_req_fields(const char *body, size_t len, const char *const *keys,
		   char (*out)[QKM_NAME_MAX * 2], const char *arr_key, char (*arr)[QKM_NAME_MAX],
		   size_t max_arr, size_t *n_arr, char *err, size_t errsz)
{
	json_error_t je;
	json_t *root = json_loadb(body, len, 0, &je), *v;
	const char *k;
	int rc = QKM_EFORMAT;
	size_t nk = 0;
	while (keys[nk])
		out[nk++][0] = '\0';
	if (n_arr)
		*n_arr = 0;
	if (!root) {
		snprintf(err, errsz, "body is not JSON: %s", je.text);
		return QKM_EFORMAT;
	}
	if (!json_is_object(root)) {
		snprintf(err, errsz, "body must be a JSON object");
		goto out;
	}
	json_object_foreach(root, k, v) {
		size_t i = 0;
		while (i < nk && strcmp(keys[i], k))
			i++;
		if (i < nk) {
			if (!json_is_string(v) || strlen(json_string_value(v)) >= (size_t)QKM_NAME_MAX * 2) {
				snprintf(err, errsz, "%s: must be a string of at most %d characters",
					 k, QKM_NAME_MAX * 2 - 1);
				goto out;
			}
			snprintf(out[i], (size_t)QKM_NAME_MAX * 2, "%s", json_string_value(v));
			continue;
		}
		if (arr_key && arr && n_arr && strcmp(k, arr_key) == 0) {
			size_t j;
			json_t *x;
			if (!json_is_array(v) || json_array_size(v) > max_arr) {
				snprintf(err, errsz, "%s: must be an array of at most %zu names", k,
					 max_arr);
				goto out;
			}
			json_array_foreach(v, j, x) {
				if (!json_is_string(x) || !qkm_name_valid(json_string_value(x))) {
					snprintf(err, errsz, "%s[%zu]: must be a node name", k, j);
					goto out;
				}
				snprintf(arr[j], QKM_NAME_MAX, "%s", json_string_value(x));
			}
			*n_arr = json_array_size(v);
			continue;
		}
		snprintf(err, errsz, "%.60s: unknown field", k);
		goto out;
	}
	rc = 0;
out:
	json_decref(root);
	return rc;
}

char *qkm_order_json(const char *order, const char *reason, const char (*toks)[QKM_TOKEN_MAX],
		     size_t n)
{
	json_t *arr = json_array();
	for (size_t i = 0; arr && i < n; i++)
		if (json_array_append_new(arr, json_string(toks[i]))) {
			json_decref(arr);
			arr = NULL;
		}
	json_t *o = arr ? json_pack("{s:s, s:s, s:o}", "order", order, "reason", reason, "tokens",
				    arr)
			: NULL;
	char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
	json_decref(o);
	return s;
}

int qkm_order_parse(const char *json, size_t len, char order[static 64],
		    char (*toks)[QKM_TOKEN_MAX], size_t max, size_t *n)
{
	json_t *root = json_loadb(json, len, 0, NULL), *arr, *v;
	size_t i;
	int rc = QKM_EFORMAT;
	*n = 0;
	const char *id = json_string_value(json_object_get(root, "order"));
	/* The ID goes into reports and records: a name (letters, digits, . _ : -). */
	if (!root || !id || strlen(id) >= 64 || !qkm_name_valid(id) ||
	    !json_is_array(arr = json_object_get(root, "tokens")))
		goto out;
	if (json_array_size(arr) > max) {
		rc = QKM_ETOOBIG;
		goto out;
	}
	json_array_foreach(arr, i, v) {
		const char *t = json_string_value(v);
		if (!t || strlen(t) >= QKM_TOKEN_MAX)
			goto out;
		snprintf(toks[i], QKM_TOKEN_MAX, "%s", t);
	}
	snprintf(order, 64, "%s", id);
	*n = json_array_size(arr);
	rc = 0;
out:
	json_decref(root);
	return rc;
}

int qkm_ctl_state_save(const char *path, const struct qkm_ctl_state *st)
{
	json_t *pm = json_array(), *man = json_array(), *plans = json_array();
	for (size_t i = 0; pm && i < st->n_pair_modes; i++)
		json_array_append_new(pm, json_pack("{s:s, s:s, s:s}", "from", st->pair_modes[i].from,
						    "to", st->pair_modes[i].to, "mode",
						    st->pair_modes[i].mode));
	for (size_t i = 0; man && i < st->n_manual; i++) {
		json_t *p = json_array();
		for (uint32_t k = 0; p && k < st->manual[i].n && k < QKM_MAX_PATH; k++)
			json_array_append_new(p, json_string(st->manual[i].path[k]));
		json_array_append_new(man, json_pack("{s:s, s:o}", "to", st->manual[i].to, "path", p));
	}
	for (size_t i = 0; plans && i < st->n_plans; i++)
		json_array_append_new(plans, json_pack("{s:s, s:s, s:I, s:I}", "from",
						       st->plans[i].from, "to", st->plans[i].to,
						       "at_ns", (json_int_t)st->plans[i].at_ns,
						       "bytes", (json_int_t)st->plans[i].bytes));
	json_t *root = pm && man && plans ? json_pack("{s:s, s:o, s:o, s:o}", "mode", st->mode,
						       "pair_modes", pm, "manual_routes", man,
						       "plan", plans)
					  : NULL;
	char *text = root ? json_dumps(root, JSON_COMPACT) : NULL;
	json_decref(root);
	if (!root) {
		json_decref(pm);
		json_decref(man);
		json_decref(plans);
	}
	int rc = text ? qkm_json_save_text(path, text, 0600) : QKM_ENOMEM;
	free(text);
	return rc;
}

static bool mode_ok(const char *m)
{
	return m && qkm_route_mode_valid(m) && strlen(m) < 16;
}

int qkm_ctl_state_load(const char *path, struct qkm_ctl_state *st)
{
	json_t *root = json_load_file(path, 0, NULL), *v, *x;
	size_t i, k;
	int rc = QKM_EFORMAT;
	memset(st, 0, sizeof(*st));
	if (!root)
		return QKM_EIO;
	const char *mode = json_string_value(json_object_get(root, "mode"));
	json_t *pm = json_object_get(root, "pair_modes"), *man = json_object_get(root, "manual_routes"),
	       *plans = json_object_get(root, "plan");
	if (!mode_ok(mode) || !json_is_array(pm) || !json_is_array(man) || !json_is_array(plans) ||
	    json_array_size(pm) > sizeof(st->pair_modes) / sizeof(st->pair_modes[0]) ||
	    json_array_size(man) > sizeof(st->manual) / sizeof(st->manual[0]) ||
	    json_array_size(plans) > sizeof(st->plans) / sizeof(st->plans[0]))
		goto out;
	snprintf(st->mode, sizeof(st->mode), "%s", mode);
	json_array_foreach(pm, i, v) {
		struct qkm_ctl_pair_mode *p = &st->pair_modes[i];
		const char *m = json_string_value(json_object_get(v, "mode"));
		if (!copy_name(v, "from", p->from, sizeof(p->from)) || !qkm_name_valid(p->from) ||
		    !copy_name(v, "to", p->to, sizeof(p->to)) || !qkm_name_valid(p->to) || !mode_ok(m))
			goto out;
		snprintf(p->mode, sizeof(p->mode), "%s", m);
	}
	st->n_pair_modes = json_array_size(pm);
	json_array_foreach(man, i, v) {
		struct qkm_node_route *r = &st->manual[i];
		json_t *p = json_object_get(v, "path");
		if (!copy_name(v, "to", r->to, sizeof(r->to)) || !qkm_name_valid(r->to) ||
		    !json_is_array(p) || json_array_size(p) < 2 || json_array_size(p) > QKM_MAX_PATH)
			goto out;
		json_array_foreach(p, k, x) {
			const char *nm = json_string_value(x);
			if (!nm || strlen(nm) >= QKM_NAME_MAX || !qkm_name_valid(nm))
				goto out;
			snprintf(r->path[k], QKM_NAME_MAX, "%s", nm);
		}
		r->n = (uint32_t)json_array_size(p);
		if (strcmp(r->path[r->n - 1], r->to) != 0)
			goto out;
	}
	st->n_manual = json_array_size(man);
	json_array_foreach(plans, i, v) {
		struct qkm_ctl_plan *p = &st->plans[i];
		json_int_t at = json_integer_value(json_object_get(v, "at_ns")),
			   by = json_integer_value(json_object_get(v, "bytes"));
		if (!copy_name(v, "from", p->from, sizeof(p->from)) || !qkm_name_valid(p->from) ||
		    !copy_name(v, "to", p->to, sizeof(p->to)) || !qkm_name_valid(p->to) || at <= 0 ||
		    by <= 0)
			goto out;
		p->at_ns = (uint64_t)at;
		p->bytes = (uint64_t)by;
	}
	st->n_plans = json_array_size(plans);
	rc = 0;
out:
	if (rc)
		memset(st, 0, sizeof(*st));
	json_decref(root);
	return rc;
}
