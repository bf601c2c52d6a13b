/* config_json.c - strict JSON <-> config structs (config_json.h). Every
 * field is checked for type and range; unknown fields are errors, so a typo
 * in a config is never silently ignored. */
#include "proto/config_json.h"

#include <fcntl.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

struct jctx {
	char *err;
	size_t errsz;
	const char *file;
};

static int jerr(struct jctx *c, const char *path, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static int jerr(struct jctx *c, const char *path, const char *fmt, ...)
{
	char msg[200];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	snprintf(c->err, c->errsz, "%s: %s%s%s", c->file, path, *path ? ": " : "", msg);
	return QKM_ECONFIG;
}

static int check_keys(struct jctx *c, json_t *o, const char *path, const char *const *allowed)
{
	if (!json_is_object(o))
		return jerr(c, path, "must be an object");
	const char *k;
	json_t *v;
	json_object_foreach(o, k, v) {
		int ok = 0;
		for (const char *const *a = allowed; *a; a++)
			if (strcmp(k, *a) == 0)
				ok = 1;
		if (!ok) {
			char p[160];
			snprintf(p, sizeof(p), "%s%s%s", path, *path ? "." : "", k);
			return jerr(c, p, "unknown field");
		}
	}
	return 0;
}

static void subpath(char *out, size_t n, const char *path, const char *key)
{
	snprintf(out, n, "%s%s%s", path, *path ? "." : "", key);
}

/* Looks key up in o and writes its path ("links[1].rate_bps") into p[160].
 * 1 if present (*v set), 0 if absent and optional, or the error if missing. */
static int field(struct jctx *c, json_t *o, const char *path, const char *key, bool required,
		 char *p, json_t **v)
{
	subpath(p, 160, path, key);
	*v = json_object_get(o, key);
	if (*v)
		return 1;
	return required ? jerr(c, p, "missing") : 0;
}

/* The string v at path p into out; kind: 0 any string, 1 entity name. */
static int str_value(struct jctx *c, json_t *v, const char *p, char *out, size_t outsz, int kind)
{
	if (!json_is_string(v))
		return jerr(c, p, "must be a string");
	const char *s = json_string_value(v);
	if (strlen(s) >= outsz || strlen(s) == 0)
		return jerr(c, p, "must be 1 to %zu characters", outsz - 1);
	if (kind == 1 && !qkm_name_valid(s))
		return jerr(c, p, "'%s' is not a valid name (letters, digits, . _ : -)", s);
	snprintf(out, outsz, "%s", s);
	return 0;
}

static int get_str(struct jctx *c, json_t *o, const char *path, const char *key, char *out,
		   size_t outsz, bool required, int kind)
{
	char p[160];
	json_t *v;
	int rc = field(c, o, path, key, required, p, &v);
	if (rc <= 0)
		return rc;
	return str_value(c, v, p, out, outsz, kind);
}

static int get_u64(struct jctx *c, json_t *o, const char *path, const char *key, uint64_t *out,
		   uint64_t min, uint64_t max, bool required)
{
	char p[160];
	json_t *v;
	int rc = field(c, o, path, key, required, p, &v);
	if (rc <= 0)
		return rc;
	if (!json_is_integer(v) || json_integer_value(v) < 0 ||
	    (uint64_t)json_integer_value(v) < min || (uint64_t)json_integer_value(v) > max)
		return jerr(c, p, "must be an integer from %llu to %llu", (unsigned long long)min,
			    (unsigned long long)max);
	*out = (uint64_t)json_integer_value(v);
	return 0;
}

static int get_u32(struct jctx *c, json_t *o, const char *path, const char *key, uint32_t *out,
		   uint32_t min, uint32_t max, bool required)
{
	uint64_t v = *out;
	int rc = get_u64(c, o, path, key, &v, min, max, required);
	*out = (uint32_t)v;
	return rc;
}

static int get_bool(struct jctx *c, json_t *o, const char *path, const char *key, bool *out)
{
	char p[160];
	json_t *v;
	int rc = field(c, o, path, key, false, p, &v);
	if (rc <= 0)
		return rc;
	if (!json_is_boolean(v))
		return jerr(c, p, "must be true or false");
	*out = json_is_true(v);
	return 0;
}

static int get_ratio(struct jctx *c, json_t *o, const char *path, const char *key, double *out)
{
	char p[160];
	json_t *v;
	int rc = field(c, o, path, key, false, p, &v);
	if (rc <= 0)
		return rc;
	if (!json_is_number(v) || json_number_value(v) < 0 || json_number_value(v) > 0.5)
		return jerr(c, p, "must be a number from 0 to 0.5");
	*out = json_number_value(v);
	return 0;
}

static int get_array(struct jctx *c, json_t *o, const char *path, const char *key, json_t **out,
		     size_t max, bool required)
{
	char p[160];
	json_t *v;
	*out = NULL;
	int rc = field(c, o, path, key, required, p, &v);
	if (rc <= 0)
		return rc;
	if (!json_is_array(v))
		return jerr(c, p, "must be an array");
	if (json_array_size(v) > max)
		return jerr(c, p, "at most %zu entries", max);
	*out = v;
	return 0;
}

static int get_level(struct jctx *c, json_t *o, char *out)
{
	snprintf(out, 16, "info");
	int rc = get_str(c, o, "", "log_level", out, 16, false, 0);
	if (!rc && strcmp(out, "error") && strcmp(out, "warn") && strcmp(out, "info") &&
	    strcmp(out, "debug"))
		return jerr(c, "log_level", "must be error, warn, info or debug");
	return rc;
}

static int get_tls(struct jctx *c, json_t *o, struct qkm_tls_paths *t)
{
	static const char *const keys[] = {"ca", "cert", "key", NULL};
	json_t *v = json_object_get(o, "tls");
	if (!v)
		return jerr(c, "tls", "missing");
	int rc = check_keys(c, v, "tls", keys);
	if (!rc)
		rc = get_str(c, v, "tls", "ca", t->ca, sizeof(t->ca), true, 0);
	if (!rc)
		rc = get_str(c, v, "tls", "cert", t->cert, sizeof(t->cert), true, 0);
	if (!rc)
		rc = get_str(c, v, "tls", "key", t->key, sizeof(t->key), true, 0);
	return rc;
}

static json_t *load_file(struct jctx *c, const char *path, int *rc)
{
	json_error_t je;
	json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
	if (!root) {
		/* Ask jansson why, not errno: errno is only set when the open
		 * failed and may be stale from an earlier call otherwise. */
		*rc = json_error_code(&je) == json_error_cannot_open_file ? QKM_EIO : QKM_ECONFIG;
		snprintf(c->err, c->errsz, "%s:%d:%d: %s", path, je.line, je.column, je.text);
		return NULL;
	}
	*rc = 0;
	return root;
}

/* "saes": [{"id": NAME, "node": NAME}, ...], in node configs and topologies. */
static int get_saes(struct jctx *c, json_t *root, struct qkm_node_sae *saes, size_t *n)
{
	static const char *const saekeys[] = {"id", "node", NULL};
	json_t *arr;
	int rc = get_array(c, root, "", "saes", &arr, QKM_MAX_SAES, false);
	for (size_t i = 0; !rc && arr && i < json_array_size(arr); i++) {
		json_t *o = json_array_get(arr, i);
		char p[48];
		snprintf(p, sizeof(p), "saes[%zu]", i);
		if ((rc = check_keys(c, o, p, saekeys)) ||
		    (rc = get_str(c, o, p, "id", saes[i].id, QKM_NAME_MAX, true, 1)) ||
		    (rc = get_str(c, o, p, "node", saes[i].node, QKM_NAME_MAX, true, 1)))
			break;
		*n = i + 1;
	}
	return rc;
}

static bool is_relay_mode(const char *m)
{
	return !strcmp(m, "otp") || !strcmp(m, "xor-at-destination") || !strcmp(m, "central-xor");
}

/* "routes": [{"to": NAME, "path": [NAME, ...]}] of a node config (R-REL-6).
 * Needs out->id and out->links loaded: a path starts here and leaves over
 * one of this node's links, visits no node twice and ends at `to`. */
static int get_routes(struct jctx *c, json_t *root, struct qkm_node_cfg *out)
{
	static const char *const routekeys[] = {"to", "path", NULL};
	json_t *arr, *path;
	int rc = get_array(c, root, "", "routes", &arr, QKM_MAX_NODES, false);
	for (size_t i = 0; !rc && arr && i < json_array_size(arr); i++) {
		json_t *o = json_array_get(arr, i);
		struct qkm_node_route *r = &out->routes[i];
		char p[48], pp[96];
		snprintf(p, sizeof(p), "routes[%zu]", i);
		if ((rc = check_keys(c, o, p, routekeys)) ||
		    (rc = get_str(c, o, p, "to", r->to, sizeof(r->to), true, 1)))
			break;
		snprintf(pp, sizeof(pp), "%s.to", p);
		if (strcmp(r->to, out->id) == 0) {
			rc = jerr(c, pp, "'%s' is this node itself", r->to);
			break;
		}
		for (size_t j = 0; j < i; j++)
			if (strcmp(out->routes[j].to, r->to) == 0) {
				rc = jerr(c, pp, "duplicate route to '%s' (also routes[%zu])", r->to, j);
				break;
			}
		if (rc || (rc = get_array(c, o, p, "path", &path, QKM_MAX_PATH, true)))
			break;
		snprintf(pp, sizeof(pp), "%s.path", p);
		if (json_array_size(path) < 2) {
			rc = jerr(c, pp, "must have 2 to %d nodes", QKM_MAX_PATH);
			break;
		}
		r->n = (uint32_t)json_array_size(path);
		for (uint32_t k = 0; !rc && k < r->n; k++) {
			snprintf(pp, sizeof(pp), "%s.path[%u]", p, k);
			if ((rc = str_value(c, json_array_get(path, k), pp, r->path[k],
					    sizeof(r->path[k]), 1)))
				break;
			for (uint32_t j = 0; j < k; j++)
				if (strcmp(r->path[j], r->path[k]) == 0) {
					rc = jerr(c, pp, "'%s' is already path[%u]", r->path[k], j);
					break;
				}
		}
		if (rc)
			break;
		if (strcmp(r->path[0], out->id) != 0) {
			snprintf(pp, sizeof(pp), "%s.path[0]", p);
			rc = jerr(c, pp, "must be this node ('%s'), not '%s'", out->id, r->path[0]);
			break;
		}
		bool peer = false;
		for (size_t l = 0; l < out->n_links; l++)
			peer = peer || strcmp(out->links[l].peer, r->path[1]) == 0;
		if (!peer) {
			snprintf(pp, sizeof(pp), "%s.path[1]", p);
			rc = jerr(c, pp, "'%s' is not the peer of any of this node's links", r->path[1]);
			break;
		}
		if (strcmp(r->path[r->n - 1], r->to) != 0) {
			snprintf(pp, sizeof(pp), "%s.path[%u]", p, r->n - 1);
			rc = jerr(c, pp, "must be the route's destination ('%s'), not '%s'", r->to,
				  r->path[r->n - 1]);
			break;
		}
		out->n_routes = i + 1;
	}
	return rc;
}

/* "relay": {...} of a node config (R-REL-3, R-REL-4, R-REL-7); defaults
 * apply with or without the object. */
static int get_relay(struct jctx *c, json_t *root, struct qkm_relay_cfg *r)
{
	static const char *const relaykeys[] = {"mode", "central", "aes_fallback", "key_source",
						"rng_device", "batch_bytes", "low_bytes", "high_bytes",
						NULL};
	char source[32] = "link";
	snprintf(r->mode, sizeof(r->mode), "otp");
	r->batch_bytes = 65536;
	r->low_bytes = 262144;
	r->high_bytes = 1048576;
	json_t *o = json_object_get(root, "relay");
	if (!o)
		return 0;
	int rc;
	if ((rc = check_keys(c, o, "relay", relaykeys)) ||
	    (rc = get_str(c, o, "relay", "mode", r->mode, sizeof(r->mode), false, 0)))
		return rc;
	if (!is_relay_mode(r->mode))
		return jerr(c, "relay.mode", "must be otp, xor-at-destination or central-xor");
	if ((rc = get_str(c, o, "relay", "central", r->central, sizeof(r->central), false, 1)) ||
	    (rc = get_bool(c, o, "relay", "aes_fallback", &r->aes_fallback)) ||
	    (rc = get_str(c, o, "relay", "key_source", source, sizeof(source), false, 0)))
		return rc;
	if (strcmp(source, "link") && strcmp(source, "rng"))
		return jerr(c, "relay.key_source", "must be link or rng");
	r->rng = strcmp(source, "rng") == 0;
	if ((rc = get_str(c, o, "relay", "rng_device", r->rng_device, sizeof(r->rng_device), false,
			  0)) ||
	    (rc = get_u32(c, o, "relay", "batch_bytes", &r->batch_bytes, 256, 4u << 20, false)) ||
	    (rc = get_u64(c, o, "relay", "low_bytes", &r->low_bytes, 0, INT64_MAX, false)) ||
	    (rc = get_u64(c, o, "relay", "high_bytes", &r->high_bytes, 0, INT64_MAX, false)))
		return rc;
	/* Relay messages carry whole 256-bit keys. */
	if (r->batch_bytes % 32)
		return jerr(c, "relay.batch_bytes", "must be a multiple of 32");
	if (r->high_bytes < r->low_bytes)
		return jerr(c, "relay.high_bytes", "must be at least low_bytes (%llu)",
			    (unsigned long long)r->low_bytes);
	bool central = strcmp(r->mode, "central-xor") == 0;
	if (central && !r->central[0])
		return jerr(c, "relay.central", "missing (required when mode is central-xor)");
	if (!central && r->central[0])
		return jerr(c, "relay.central", "only allowed when mode is central-xor");
	return 0;
}

/* "limits": {"sae_rate", "sae_burst", "sae_in_flight"} in parent (a node
 * config's top level, a topology's policy); defaults apply with or without
 * the object. A rate given without a burst gets a burst of twice the rate. */
static int get_limits(struct jctx *c, json_t *parent, const char *path,
		      struct qkm_limits_cfg *l)
{
	static const char *const keys[] = {"sae_rate", "sae_burst", "sae_in_flight", NULL};
	char p[160];
	json_t *o;
	qkm_limits_defaults(l);
	int rc = field(c, parent, path, "limits", false, p, &o);
	if (rc <= 0)
		return rc;
	if ((rc = check_keys(c, o, p, keys)) ||
	    (rc = get_u32(c, o, p, "sae_rate", &l->sae_rate, 0, QKM_LIMIT_MAX, false)) ||
	    (rc = get_u32(c, o, p, "sae_burst", &l->sae_burst, 0, QKM_LIMIT_MAX, false)) ||
	    (rc = get_u32(c, o, p, "sae_in_flight", &l->sae_in_flight, 0, QKM_LIMIT_MAX, false)))
		return rc;
	if (json_object_get(o, "sae_rate") && !json_object_get(o, "sae_burst") && l->sae_rate)
		l->sae_burst = l->sae_rate > QKM_LIMIT_MAX / 2 ? QKM_LIMIT_MAX : 2 * l->sae_rate;
	if (l->sae_rate && !l->sae_burst) {
		char pb[176];
		snprintf(pb, sizeof(pb), "%s.sae_burst", p);
		return jerr(c, pb, "must be at least 1 when sae_rate is set (0 turns the rate "
				   "limit off)");
	}
	return 0;
}

/* "directory": [{"id": NAME, "kx": ADDR}]: the Kx address of other nodes,
 * for direct KMA links (clause 9 relay modes, R-REL-7). */
static int get_directory(struct jctx *c, json_t *root, struct qkm_node_cfg *out)
{
	static const char *const dirkeys[] = {"id", "kx", NULL};
	json_t *arr;
	int rc = get_array(c, root, "", "directory", &arr, QKM_MAX_NODES, false);
	for (size_t i = 0; !rc && arr && i < json_array_size(arr); i++) {
		json_t *o = json_array_get(arr, i);
		struct qkm_node_dir *d = &out->dir[i];
		char p[48];
		snprintf(p, sizeof(p), "directory[%zu]", i);
		if ((rc = check_keys(c, o, p, dirkeys)) ||
		    (rc = get_str(c, o, p, "id", d->id, sizeof(d->id), true, 1)) ||
		    (rc = get_str(c, o, p, "kx", d->kx, sizeof(d->kx), true, 0)))
			break;
		if (strcmp(d->id, out->id) == 0) {
			rc = jerr(c, p, "'%s' is this node itself", d->id);
			break;
		}
		for (size_t j = 0; j < i; j++)
			if (strcmp(out->dir[j].id, d->id) == 0) {
				rc = jerr(c, p, "duplicate entry for '%s' (also directory[%zu])", d->id,
					  j);
				break;
			}
		out->n_dir = i + 1;
	}
	return rc;
}

int qkm_node_cfg_load(const char *path, struct qkm_node_cfg *out, char *err, size_t errsz)
{
	static const char *const keys[] = {"id", "db", "log_level", "ksa", "after_supply", "tls",
					   "listen", "sim", "links", "saes", "routes",
					   "relay", "directory", "controller", "limits", NULL};
	static const char *const lkeys[] = {"kx", "admin", "etsi014", NULL};
	static const char *const ckeys[] = {"addr", "id", NULL};
	static const char *const linkkeys[] = {"link", "peer", "addr", "module", "kma_unit_bits",
					       "batch_ms", "batch_max_bytes", NULL};
	struct jctx c = {err, errsz, path};
	int rc;
	memset(out, 0, sizeof(*out));
	out->ksa = true;
	json_t *root = load_file(&c, path, &rc), *arr, *listen;
	if (!root)
		return rc;
	if ((rc = check_keys(&c, root, "", keys)) ||
	    (rc = get_str(&c, root, "", "id", out->id, sizeof(out->id), true, 1)) ||
	    (rc = get_str(&c, root, "", "db", out->db, sizeof(out->db), true, 0)) ||
	    (rc = get_level(&c, root, out->log_level)) ||
	    (rc = get_bool(&c, root, "", "ksa", &out->ksa)) || (rc = get_tls(&c, root, &out->tls)) ||
	    (rc = get_str(&c, root, "", "sim", out->sim, sizeof(out->sim), false, 0)))
		goto out;
	char policy[16] = "delete";
	if ((rc = get_str(&c, root, "", "after_supply", policy, sizeof(policy), false, 0)))
		goto out;
	if (strcmp(policy, "delete") && strcmp(policy, "preserve")) {
		rc = jerr(&c, "after_supply", "must be delete or preserve");
		goto out;
	}
	out->preserve = strcmp(policy, "preserve") == 0;
	listen = json_object_get(root, "listen");
	if (!listen) {
		rc = jerr(&c, "listen", "missing");
		goto out;
	}
	if ((rc = check_keys(&c, listen, "listen", lkeys)) ||
	    (rc = get_str(&c, listen, "listen", "kx", out->kx_listen, sizeof(out->kx_listen), true,
			  0)) ||
	    (rc = get_str(&c, listen, "listen", "admin", out->admin_listen,
			  sizeof(out->admin_listen), true, 0)) ||
	    (rc = get_str(&c, listen, "listen", "etsi014", out->etsi014_listen,
			  sizeof(out->etsi014_listen), false, 0)))
		goto out;
	if ((rc = get_array(&c, root, "", "links", &arr, QKM_MAX_LINKS, false)))
		goto out;
	for (size_t i = 0; arr && i < json_array_size(arr); i++) {
		json_t *o = json_array_get(arr, i);
		struct qkm_node_link *l = &out->links[i];
		char p[48];
		snprintf(p, sizeof(p), "links[%zu]", i);
		l->kma_unit_bits = 256;
		l->batch_ms = 100;
		l->batch_max_bytes = 1u << 20;
		if ((rc = check_keys(&c, o, p, linkkeys)) ||
		    (rc = get_str(&c, o, p, "link", l->link, sizeof(l->link), true, 1)) ||
		    (rc = get_str(&c, o, p, "peer", l->peer, sizeof(l->peer), true, 1)) ||
		    (rc = get_str(&c, o, p, "addr", l->addr, sizeof(l->addr), true, 0)) ||
		    (rc = get_str(&c, o, p, "module", l->module, sizeof(l->module), true, 1)) ||
		    (rc = get_u32(&c, o, p, "kma_unit_bits", &l->kma_unit_bits, 64, 1u << 20,
				  false)) ||
		    (rc = get_u32(&c, o, p, "batch_ms", &l->batch_ms, 1, 60000, false)) ||
		    (rc = get_u32(&c, o, p, "batch_max_bytes", &l->batch_max_bytes, 4096,
				  16u << 20, false)))
			goto out;
		if (l->kma_unit_bits % 8) {
			rc = jerr(&c, p, "kma_unit_bits must be a multiple of 8");
			goto out;
		}
		if (strcmp(l->peer, out->id) == 0) {
			rc = jerr(&c, p, "peer is this node itself");
			goto out;
		}
		out->n_links = i + 1;
	}
	if ((rc = get_saes(&c, root, out->saes, &out->n_saes)) ||
	    (rc = get_routes(&c, root, out)))
		goto out;
	if ((rc = get_relay(&c, root, &out->relay)) || (rc = get_limits(&c, root, "", &out->limits)))
		goto out;
	if ((rc = get_directory(&c, root, out)))
		goto out;
	json_t *ctl = json_object_get(root, "controller");
	if (ctl && ((rc = check_keys(&c, ctl, "controller", ckeys)) ||
		    (rc = get_str(&c, ctl, "controller", "addr", out->controller.addr,
				  sizeof(out->controller.addr), true, 0)) ||
		    (rc = get_str(&c, ctl, "controller", "id", out->controller.id,
				  sizeof(out->controller.id), true, 1))))
		goto out;
out:
	json_decref(root);
	return rc;
}

int qkm_ctl_cfg_load(const char *path, struct qkm_ctl_cfg *out, char *err, size_t errsz)
{
	static const char *const keys[] = {"id", "db", "log_level", "tls", "ca_dir", "sae_dir",
					   "listen", "topology", "mode", NULL};
	static const char *const lkeys[] = {"ck", "api", NULL};
	struct jctx c = {err, errsz, path};
	int rc;
	memset(out, 0, sizeof(*out));
	snprintf(out->mode, sizeof(out->mode), "adaptive");
	json_t *root = load_file(&c, path, &rc), *listen;
	if (!root)
		return rc;
	if ((rc = check_keys(&c, root, "", keys)) ||
	    (rc = get_str(&c, root, "", "id", out->id, sizeof(out->id), true, 1)) ||
	    (rc = get_str(&c, root, "", "db", out->db, sizeof(out->db), true, 0)) ||
	    (rc = get_level(&c, root, out->log_level)) || (rc = get_tls(&c, root, &out->tls)) ||
	    (rc = get_str(&c, root, "", "ca_dir", out->ca_dir, sizeof(out->ca_dir), true, 0)) ||
	    (rc = get_str(&c, root, "", "sae_dir", out->sae_dir, sizeof(out->sae_dir), true, 0)) ||
	    (rc = get_str(&c, root, "", "topology", out->topology, sizeof(out->topology), true,
			  0)) ||
	    (rc = get_str(&c, root, "", "mode", out->mode, sizeof(out->mode), false, 0)))
		goto out;
	if (!qkm_route_mode_valid(out->mode)) {
		rc = jerr(&c, "mode", "must be manual, fixed-rate, adaptive or scheduled");
		goto out;
	}
	listen = json_object_get(root, "listen");
	if (!listen) {
		rc = jerr(&c, "listen", "missing");
		goto out;
	}
	if ((rc = check_keys(&c, listen, "listen", lkeys)) ||
	    (rc = get_str(&c, listen, "listen", "ck", out->ck_listen, sizeof(out->ck_listen), true,
			  0)) ||
	    (rc = get_str(&c, listen, "listen", "api", out->api_listen, sizeof(out->api_listen),
			  true, 0)))
		goto out;
out:
	json_decref(root);
	return rc;
}

int qkm_sim_cfg_load(const char *path, struct qkm_sim_cfg *out, char *err, size_t errsz)
{
	static const char *const keys[] = {"name", "log_level", "tls", "listen", "control",
					   "backlog_bytes", "links", NULL};
	static const char *const linkkeys[] = {"id", "rate_bps", "unit_bits", "qber",
					       "qber_threshold", "sides", NULL};
	static const char *const sidekeys[] = {"node", "module", NULL};
	struct jctx c = {err, errsz, path};
	int rc;
	memset(out, 0, sizeof(*out));
	snprintf(out->name, sizeof(out->name), "sim");
	out->backlog_bytes = 64u << 20;
	json_t *root = load_file(&c, path, &rc), *arr;
	if (!root)
		return rc;
	if ((rc = check_keys(&c, root, "", keys)) ||
	    (rc = get_str(&c, root, "", "name", out->name, sizeof(out->name), false, 1)) ||
	    (rc = get_level(&c, root, out->log_level)) || (rc = get_tls(&c, root, &out->tls)) ||
	    (rc = get_str(&c, root, "", "listen", out->listen, sizeof(out->listen), true, 0)) ||
	    (rc = get_str(&c, root, "", "control", out->control, sizeof(out->control), true, 0)) ||
	    (rc = get_u32(&c, root, "", "backlog_bytes", &out->backlog_bytes, 1u << 16, 1u << 30,
			  false)) ||
	    (rc = get_array(&c, root, "", "links", &arr, QKM_MAX_TOPO_LINKS, true)))
		goto out;
	for (size_t i = 0; i < json_array_size(arr); i++) {
		json_t *o = json_array_get(arr, i), *sides;
		struct qkm_sim_link *l = &out->links[i];
		char p[48];
		snprintf(p, sizeof(p), "links[%zu]", i);
		l->qber = 0.01;
		l->qber_threshold = 0.11;
		if ((rc = check_keys(&c, o, p, linkkeys)) ||
		    (rc = get_str(&c, o, p, "id", l->id, sizeof(l->id), true, 1)) ||
		    (rc = get_u64(&c, o, p, "rate_bps", &l->rate_bps, 1, 100000000000ull, true)) ||
		    (rc = get_u32(&c, o, p, "unit_bits", &l->unit_bits, 64, 8u << 20, true)) ||
		    (rc = get_ratio(&c, o, p, "qber", &l->qber)) ||
		    (rc = get_ratio(&c, o, p, "qber_threshold", &l->qber_threshold)) ||
		    (rc = get_array(&c, o, p, "sides", &sides, 2, true)))
			goto out;
		if (l->unit_bits % 8) {
			rc = jerr(&c, p, "unit_bits must be a multiple of 8");
			goto out;
		}
		if (json_array_size(sides) != 2) {
			rc = jerr(&c, p, "sides must have exactly two entries");
			goto out;
		}
		for (int s = 0; s < 2; s++) {
			char sp[64];
			snprintf(sp, sizeof(sp), "%s.sides[%d]", p, s);
			json_t *so = json_array_get(sides, (size_t)s);
			if ((rc = check_keys(&c, so, sp, sidekeys)) ||
			    (rc = get_str(&c, so, sp, "node", l->node[s], QKM_NAME_MAX, true, 1)) ||
			    (rc = get_str(&c, so, sp, "module", l->module[s], QKM_NAME_MAX, true, 1)))
				goto out;
		}
		out->n_links = i + 1;
	}
out:
	json_decref(root);
	return rc;
}

static int topo_node_index(const struct qkm_topology *t, const char *id)
{
	for (size_t i = 0; i < t->n_nodes; i++)
		if (strcmp(t->nodes[i].id, id) == 0)
			return (int)i;
	return -1;
}

int qkm_topology_load(const char *path, struct qkm_topology *out, char *err, size_t errsz)
{
	static const char *const keys[] = {"name", "nodes", "links", "saes", "policy", NULL};
	static const char *const nodekeys[] = {"id", "ksa", NULL};
	static const char *const linkkeys[] = {"a", "b", "rate_bps", "unit_bits", "qber", NULL};
	static const char *const polkeys[] = {"relay", "central", "key_source", "aes_fallback",
					      "after_supply", "limits", NULL};
	struct jctx c = {err, errsz, path};
	int rc;
	memset(out, 0, sizeof(*out));
	snprintf(out->policy.relay, sizeof(out->policy.relay), "otp");
	snprintf(out->policy.after_supply, sizeof(out->policy.after_supply), "delete");
	snprintf(out->policy.key_source, sizeof(out->policy.key_source), "link");
	qkm_limits_defaults(&out->policy.limits);
	json_t *root = load_file(&c, path, &rc), *arr, *pol;
	if (!root)
		return rc;
	if ((rc = check_keys(&c, root, "", keys)) ||
	    (rc = get_str(&c, root, "", "name", out->name, sizeof(out->name), false, 1)) ||
	    (rc = get_array(&c, root, "", "nodes", &arr, QKM_MAX_NODES, true)))
		goto out;
	if (json_array_size(arr) == 0) {
		rc = jerr(&c, "nodes", "needs at least one node");
		goto out;
	}
	for (size_t i = 0; i < json_array_size(arr); i++) {
		json_t *o = json_array_get(arr, i);
		char p[48];
		snprintf(p, sizeof(p), "nodes[%zu]", i);
		out->nodes[i].ksa = true;
		if ((rc = check_keys(&c, o, p, nodekeys)) ||
		    (rc = get_str(&c, o, p, "id", out->nodes[i].id, QKM_NAME_MAX, true, 1)) ||
		    (rc = get_bool(&c, o, p, "ksa", &out->nodes[i].ksa)))
			goto out;
		if (topo_node_index(out, out->nodes[i].id) >= 0) {
			rc = jerr(&c, p, "duplicate node id '%s'", out->nodes[i].id);
			goto out;
		}
		out->n_nodes = i + 1;
	}
	if ((rc = get_array(&c, root, "", "links", &arr, QKM_MAX_TOPO_LINKS, false)))
		goto out;
	for (size_t i = 0; arr && i < json_array_size(arr); i++) {
		json_t *o = json_array_get(arr, i);
		char p[48];
		snprintf(p, sizeof(p), "links[%zu]", i);
		out->links[i].qber = 0.01;
		if ((rc = check_keys(&c, o, p, linkkeys)) ||
		    (rc = get_str(&c, o, p, "a", out->links[i].a, QKM_NAME_MAX, true, 1)) ||
		    (rc = get_str(&c, o, p, "b", out->links[i].b, QKM_NAME_MAX, true, 1)) ||
		    (rc = get_u64(&c, o, p, "rate_bps", &out->links[i].rate_bps, 1,
				  100000000000ull, true)) ||
		    (rc = get_u32(&c, o, p, "unit_bits", &out->links[i].unit_bits, 64, 8u << 20,
				  true)) ||
		    (rc = get_ratio(&c, o, p, "qber", &out->links[i].qber)))
			goto out;
		if (out->links[i].unit_bits % 8) {
			rc = jerr(&c, p, "unit_bits must be a multiple of 8");
			goto out;
		}
		if (topo_node_index(out, out->links[i].a) < 0 ||
		    topo_node_index(out, out->links[i].b) < 0) {
			rc = jerr(&c, p, "links an unknown node");
			goto out;
		}
		if (strcmp(out->links[i].a, out->links[i].b) == 0) {
			rc = jerr(&c, p, "a and b must differ");
			goto out;
		}
		for (size_t j = 0; j < i; j++)
			if ((!strcmp(out->links[j].a, out->links[i].a) &&
			     !strcmp(out->links[j].b, out->links[i].b)) ||
			    (!strcmp(out->links[j].a, out->links[i].b) &&
			     !strcmp(out->links[j].b, out->links[i].a))) {
				rc = jerr(&c, p, "duplicate link %s-%s", out->links[i].a,
					  out->links[i].b);
				goto out;
			}
		out->n_links = i + 1;
	}
	if ((rc = get_saes(&c, root, out->saes, &out->n_saes)))
		goto out;
	for (size_t i = 0; i < out->n_saes; i++) {
		char p[48];
		snprintf(p, sizeof(p), "saes[%zu]", i);
		int ni = topo_node_index(out, out->saes[i].node);
		if (ni < 0) {
			rc = jerr(&c, p, "node '%s' is not in nodes", out->saes[i].node);
			goto out;
		}
		if (!out->nodes[ni].ksa) {
			rc = jerr(&c, p, "node '%s' is relay-only (ksa: false)", out->saes[i].node);
			goto out;
		}
		for (size_t j = 0; j < i; j++)
			if (!strcmp(out->saes[j].id, out->saes[i].id)) {
				rc = jerr(&c, p, "duplicate SAE id '%s'", out->saes[i].id);
				goto out;
			}
	}
	pol = json_object_get(root, "policy");
	if (pol) {
		if ((rc = check_keys(&c, pol, "policy", polkeys)) ||
		    (rc = get_str(&c, pol, "policy", "relay", out->policy.relay,
				  sizeof(out->policy.relay), false, 0)) ||
		    (rc = get_bool(&c, pol, "policy", "aes_fallback", &out->policy.aes_fallback)) ||
		    (rc = get_str(&c, pol, "policy", "after_supply", out->policy.after_supply,
				  sizeof(out->policy.after_supply), false, 0)))
			goto out;
		if (!is_relay_mode(out->policy.relay)) {
			rc = jerr(&c, "policy.relay", "must be otp, xor-at-destination or central-xor");
			goto out;
		}
		/* central-xor needs its combining node, and only it names one. */
		if ((rc = get_str(&c, pol, "policy", "central", out->policy.central,
				  sizeof(out->policy.central), false, 1)))
			goto out;
		bool central = strcmp(out->policy.relay, "central-xor") == 0;
		if (central && !out->policy.central[0]) {
			rc = jerr(&c, "policy.central", "missing (required when relay is central-xor)");
			goto out;
		}
		if (!central && out->policy.central[0]) {
			rc = jerr(&c, "policy.central", "only allowed when relay is central-xor");
			goto out;
		}
		if (central && topo_node_index(out, out->policy.central) < 0) {
			rc = jerr(&c, "policy.central", "node '%s' is not in nodes",
				  out->policy.central);
			goto out;
		}
		char source[32] = "link";
		if ((rc = get_str(&c, pol, "policy", "key_source", source, sizeof(source), false, 0)))
			goto out;
		if (strcmp(source, "link") && strcmp(source, "rng")) {
			rc = jerr(&c, "policy.key_source", "must be link or rng");
			goto out;
		}
		snprintf(out->policy.key_source, sizeof(out->policy.key_source), "%s", source);
		if (strcmp(out->policy.after_supply, "delete") &&
		    strcmp(out->policy.after_supply, "preserve")) {
			rc = jerr(&c, "policy.after_supply", "must be delete or preserve");
			goto out;
		}
		if ((rc = get_limits(&c, pol, "policy", &out->policy.limits)))
			goto out;
	}
out:
	json_decref(root);
	return rc;
}

static int save_json(const char *path, json_t *root, int mode)
{
	char tmp[PATH_MAX + 8];
	int rc = QKM_EIO;
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	char *text = json_dumps(root, JSON_INDENT(2) | JSON_SORT_KEYS);
	json_decref(root);
	if (!text)
		return QKM_ENOMEM;
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
	if (fd < 0)
		goto out;
	size_t n = strlen(text);
	if (write(fd, text, n) != (ssize_t)n || write(fd, "\n", 1) != 1 || fsync(fd) != 0) {
		close(fd);
		unlink(tmp);
		goto out;
	}
	close(fd);
	rc = rename(tmp, path) == 0 ? 0 : QKM_EIO;
out:
	free(text);
	return rc;
}

int qkm_json_save_text(const char *path, const char *text, int mode)
{
	json_t *root = json_loads(text, 0, NULL);
	if (!root)
		return QKM_EINVAL;
	return save_json(path, root, mode);
}

static json_t *tls_json(const struct qkm_tls_paths *t)
{
	return json_pack("{s:s, s:s, s:s}", "ca", t->ca, "cert", t->cert, "key", t->key);
}

int qkm_node_cfg_save(const char *path, const struct qkm_node_cfg *c)
{
	json_t *links = json_array(), *saes = json_array();
	for (size_t i = 0; i < c->n_links; i++) {
		const struct qkm_node_link *l = &c->links[i];
		json_array_append_new(
			links, json_pack("{s:s, s:s, s:s, s:s, s:I, s:I, s:I}", "link", l->link,
					 "peer", l->peer, "addr", l->addr, "module", l->module,
					 "kma_unit_bits", (json_int_t)l->kma_unit_bits, "batch_ms",
					 (json_int_t)l->batch_ms, "batch_max_bytes",
					 (json_int_t)l->batch_max_bytes));
	}
	for (size_t i = 0; i < c->n_saes; i++)
		json_array_append_new(saes, json_pack("{s:s, s:s}", "id", c->saes[i].id, "node",
						      c->saes[i].node));
	json_t *listen = json_pack("{s:s, s:s}", "kx", c->kx_listen, "admin", c->admin_listen);
	if (c->etsi014_listen[0])
		json_object_set_new(listen, "etsi014", json_string(c->etsi014_listen));
	json_t *root = json_pack("{s:s, s:s, s:s, s:b, s:s, s:o, s:o, s:o, s:o}", "id", c->id, "db",
				 c->db, "log_level", c->log_level[0] ? c->log_level : "info",
				 "ksa", c->ksa, "after_supply", c->preserve ? "preserve" : "delete",
				 "tls", tls_json(&c->tls), "listen", listen, "links", links, "saes",
				 saes);
	if (c->sim[0])
		json_object_set_new(root, "sim", json_string(c->sim));
	json_t *routes = json_array();
	for (size_t i = 0; i < c->n_routes; i++) {
		const struct qkm_node_route *r = &c->routes[i];
		json_t *hops = json_array();
		for (uint32_t k = 0; k < r->n && k < QKM_MAX_PATH; k++)
			json_array_append_new(hops, json_string(r->path[k]));
		json_array_append_new(routes, json_pack("{s:s, s:o}", "to", r->to, "path", hops));
	}
	json_object_set_new(root, "routes", routes);
	json_t *dir = json_array();
	for (size_t i = 0; i < c->n_dir; i++)
		json_array_append_new(dir, json_pack("{s:s, s:s}", "id", c->dir[i].id, "kx",
						     c->dir[i].kx));
	json_object_set_new(root, "directory", dir);
	const struct qkm_relay_cfg *rl = &c->relay;
	json_t *relay = json_pack("{s:s, s:b, s:s, s:I, s:I, s:I}", "mode",
				  rl->mode[0] ? rl->mode : "otp", "aes_fallback", rl->aes_fallback,
				  "key_source", rl->rng ? "rng" : "link", "batch_bytes",
				  (json_int_t)rl->batch_bytes, "low_bytes", (json_int_t)rl->low_bytes,
				  "high_bytes", (json_int_t)rl->high_bytes);
	/* Empty means absent: no central node, getrandom(2). */
	if (rl->central[0])
		json_object_set_new(relay, "central", json_string(rl->central));
	if (rl->rng_device[0])
		json_object_set_new(relay, "rng_device", json_string(rl->rng_device));
	json_object_set_new(root, "relay", relay);
	if (c->controller.addr[0])
		json_object_set_new(root, "controller",
				    json_pack("{s:s, s:s}", "addr", c->controller.addr, "id",
					      c->controller.id));
	json_object_set_new(root, "limits",
			    json_pack("{s:I, s:I, s:I}", "sae_rate", (json_int_t)c->limits.sae_rate,
				      "sae_burst", (json_int_t)c->limits.sae_burst, "sae_in_flight",
				      (json_int_t)c->limits.sae_in_flight));
	return save_json(path, root, 0600);
}

int qkm_sim_cfg_save(const char *path, const struct qkm_sim_cfg *c)
{
	json_t *links = json_array();
	for (size_t i = 0; i < c->n_links; i++) {
		const struct qkm_sim_link *l = &c->links[i];
		json_t *sides = json_pack("[{s:s, s:s}, {s:s, s:s}]", "node", l->node[0], "module",
					  l->module[0], "node", l->node[1], "module", l->module[1]);
		json_array_append_new(links,
				      json_pack("{s:s, s:I, s:I, s:f, s:f, s:o}", "id", l->id,
						"rate_bps", (json_int_t)l->rate_bps, "unit_bits",
						(json_int_t)l->unit_bits, "qber", l->qber,
						"qber_threshold", l->qber_threshold, "sides", sides));
	}
	json_t *root = json_pack("{s:s, s:s, s:o, s:s, s:s, s:I, s:o}", "name", c->name,
				 "log_level", c->log_level[0] ? c->log_level : "info", "tls",
				 tls_json(&c->tls), "listen", c->listen, "control", c->control,
				 "backlog_bytes", (json_int_t)c->backlog_bytes, "links", links);
	return save_json(path, root, 0600);
}

int qkm_ctl_cfg_save(const char *path, const struct qkm_ctl_cfg *c)
{
	json_t *root = json_pack("{s:s, s:s, s:s, s:o, s:s, s:s, s:{s:s, s:s}, s:s, s:s}", "id",
				 c->id, "db", c->db, "log_level",
				 c->log_level[0] ? c->log_level : "info", "tls", tls_json(&c->tls),
				 "ca_dir", c->ca_dir, "sae_dir", c->sae_dir, "listen", "ck",
				 c->ck_listen, "api", c->api_listen, "topology", c->topology,
				 "mode", c->mode[0] ? c->mode : "adaptive");
	return save_json(path, root, 0600);
}
