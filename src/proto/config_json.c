/* config_json.c - strict JSON <-> config structs (config_json.h). Every
 * field is checked for type and range; unknown fields are errors, so a typo
 * in a config is never silently ignored. A check goes on after an error, so
 * one run names every error of a file, each with its line (the line comes
 * from the file's text: proto/json_path.h). */
#include "proto/config_json.h"
#include "proto/json_path.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Largest config file read: a topology with every table full is well under
 * 1 MiB. */
#define CFG_FILE_MAX (16u << 20)

/* One check of one file. Every get_* below records its error here and also
 * returns it (QKM_ECONFIG, or 0); a caller with nothing depending on the
 * field ignores the return, so the check goes on to the next field. */
struct jctx {
	const char *file;           /* the file's name, for errors */
	const char *text;           /* its text, for lines */
	size_t len;
	char *buf;                  /* the text when read here (owned), or NULL */
	int rc;                     /* the first error's code; 0 while none */
	char *err;                  /* the first error as a line, or NULL */
	size_t errsz;
	struct qkm_cfg_errors *all; /* every error, or NULL */
};

static int first_err(int rc, int next)
{
	return rc ? rc : next;
}

void qkm_cfg_error_str(const char *file, const struct qkm_cfg_error *e, char *out, size_t outsz)
{
	if (!outsz)
		return;
	if (e->line && e->col)
		snprintf(out, outsz, "%s:%u:%u: %s", file, e->line, e->col, e->text);
	else if (e->line)
		snprintf(out, outsz, "%s:%u: %s", file, e->line, e->text);
	else
		snprintf(out, outsz, "%s: %s", file, e->text);
}

static void record(struct jctx *c, int rc, const struct qkm_cfg_error *e)
{
	if (!c->rc) {
		c->rc = rc;
		if (c->err)
			qkm_cfg_error_str(c->file, e, c->err, c->errsz);
	}
	if (!c->all)
		return;
	if (c->all->n < QKM_CFG_ERRORS_MAX)
		c->all->e[c->all->n++] = *e;
	else
		c->all->dropped++;
}

static int jerr(struct jctx *c, const char *path, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static int jerr(struct jctx *c, const char *path, const char *fmt, ...)
{
	struct qkm_cfg_error e = {0};
	char msg[200];
	va_list ap;
	/* A load keeps only the first error: finding the line of a later one
	 * (a scan of the text) would be wasted. */
	if (c->rc && !c->all)
		return QKM_ECONFIG;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	e.line = qkm_json_path_line(c->text, c->len, path);
	snprintf(e.text, sizeof(e.text), "%s%s%s", path, *path ? ": " : "", msg);
	record(c, QKM_ECONFIG, &e);
	return QKM_ECONFIG;
}

/* o must be an object whose keys are all in allowed. Every unknown key is
 * reported; returns QKM_ECONFIG only when o is not an object (its fields
 * cannot be checked), else 0. */
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
			(void)jerr(c, p, "unknown field");
		}
	}
	return 0;
}

static void subpath(char *out, size_t n, const char *path, const char *key)
{
	snprintf(out, n, "%s%s%s", path, *path ? "." : "", key);
}

/* path.key into out[80], returned: the field an error is about. */
static const char *pf(char *out, const char *path, const char *key)
{
	subpath(out, 80, path, key);
	return out;
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

/* The string v at path p into out; kind: 0 any string, 1 entity name. out
 * is left as it was on error. */
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

/* retention_s, of a node or of a topology's policy: 0, or seconds in
 * [QKM_RETENTION_MIN_S, QKM_RETENTION_MAX_S]; absent, the default. */
static void get_retention(struct jctx *c, json_t *o, const char *path, uint32_t *out)
{
	*out = QKM_RETENTION_S;
	if (!get_u32(c, o, path, "retention_s", out, 0, QKM_RETENTION_MAX_S, false) &&
	    *out && *out < QKM_RETENTION_MIN_S) {
		char p[160];
		snprintf(p, sizeof(p), "%s%sretention_s", path, path[0] ? "." : "");
		(void)jerr(c, p, "must be 0 (keep) or from %d to %d", QKM_RETENTION_MIN_S,
			   QKM_RETENTION_MAX_S);
	}
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

/* *out is the array, or NULL when it is absent or refused. */
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

/* The object at path.key, checked against keys: 1 and *out set if it is
 * there and an object (unknown keys reported), 0 if absent and optional,
 * else the error. */
static int get_object(struct jctx *c, json_t *o, const char *path, const char *key,
		      const char *const *keys, bool required, json_t **out)
{
	char p[160];
	int rc = field(c, o, path, key, required, p, out);
	if (rc <= 0)
		return rc;
	return check_keys(c, *out, p, keys) ? QKM_ECONFIG : 1;
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
	json_t *v;
	int rc = get_object(c, o, "", "tls", keys, true, &v);
	if (rc <= 0)
		return rc;
	rc = get_str(c, v, "tls", "ca", t->ca, sizeof(t->ca), true, 0);
	rc = first_err(rc, get_str(c, v, "tls", "cert", t->cert, sizeof(t->cert), true, 0));
	return first_err(rc, get_str(c, v, "tls", "key", t->key, sizeof(t->key), true, 0));
}

/* Parses c->text. NULL after recording the error (QKM_ECONFIG): not JSON. */
static json_t *parse_text(struct jctx *c)
{
	struct qkm_cfg_error e = {0};
	json_error_t je;
	json_t *root = json_loadb(c->text ? c->text : "", c->len, JSON_REJECT_DUPLICATES, &je);
	if (!root) {
		e.line = je.line > 0 ? (unsigned)je.line : 1;
		e.col = je.column > 0 ? (unsigned)je.column : 0;
		snprintf(e.text, sizeof(e.text), "%s", je.text);
		record(c, QKM_ECONFIG, &e);
	}
	return root;
}

/* Reads c->file into c->buf (its text) and parses it. NULL after recording
 * the error: QKM_EIO if the file cannot be read, QKM_ECONFIG if it is too
 * large or not JSON. */
static json_t *load_file(struct jctx *c)
{
	struct qkm_cfg_error e = {0};
	size_t cap = 0;
	int fd = open(c->file, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		snprintf(e.text, sizeof(e.text), "cannot open: %s", strerror(errno));
		record(c, QKM_EIO, &e);
		return NULL;
	}
	/* Read to the end rather than trust a size: the file may be a pipe. */
	for (;;) {
		if (c->len == cap) {
			if (cap >= CFG_FILE_MAX) {
				snprintf(e.text, sizeof(e.text), "larger than %u MiB",
					 CFG_FILE_MAX >> 20);
				record(c, QKM_ECONFIG, &e);
				goto fail;
			}
			cap = cap ? 2 * cap : 4096;
			char *t = realloc(c->buf, cap);
			if (!t) {
				snprintf(e.text, sizeof(e.text), "out of memory reading it");
				record(c, QKM_EIO, &e);
				goto fail;
			}
			c->text = c->buf = t;
		}
		ssize_t r = read(fd, c->buf + c->len, cap - c->len);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			snprintf(e.text, sizeof(e.text), "cannot read: %s", strerror(errno));
			record(c, QKM_EIO, &e);
			goto fail;
		}
		if (r == 0)
			break;
		c->len += (size_t)r;
	}
	(void)close(fd); /* read-only: nothing to lose */
	return parse_text(c);
fail:
	(void)close(fd);
	return NULL;
}

/* A loader: applies out's defaults, then (root not NULL) reads root into
 * out, recording every error in c. */
typedef void (*loader_fn)(struct jctx *c, json_t *root, void *out);

/* Runs fn over the len bytes at text, or (text NULL) over the file path. */
static int run(const char *path, const char *text, size_t len, loader_fn fn, void *out,
	       char *err, size_t errsz, struct qkm_cfg_errors *all)
{
	struct jctx c = {.file = path, .text = text, .len = len, .err = errsz ? err : NULL,
			 .errsz = errsz, .all = all};
	if (c.err)
		c.err[0] = 0;
	if (all) {
		all->n = 0;
		all->dropped = 0;
	}
	json_t *root = text ? parse_text(&c) : load_file(&c);
	fn(&c, root, out);
	json_decref(root);
	free(c.buf);
	/* File order: a stable insertion sort by line (at most 64 entries). */
	for (size_t i = 1; all && i < all->n; i++)
		for (size_t j = i; j > 0 && all->e[j - 1].line > all->e[j].line; j--) {
			struct qkm_cfg_error t = all->e[j];
			all->e[j] = all->e[j - 1];
			all->e[j - 1] = t;
		}
	return c.rc;
}

/* "saes": [{"id": NAME, "node": NAME}, ...], in node configs and topologies.
 * An entry whose field is refused keeps that field empty. */
static int get_saes(struct jctx *c, json_t *root, struct qkm_node_sae *saes, size_t *n)
{
	static const char *const saekeys[] = {"id", "node", NULL};
	json_t *arr;
	int rc = get_array(c, root, "", "saes", &arr, QKM_MAX_SAES, false);
	for (size_t i = 0; arr && i < json_array_size(arr); i++) {
		json_t *o = json_array_get(arr, i);
		char p[48];
		snprintf(p, sizeof(p), "saes[%zu]", i);
		*n = i + 1;
		if (check_keys(c, o, p, saekeys)) {
			rc = QKM_ECONFIG;
			continue;
		}
		rc = first_err(rc, get_str(c, o, p, "id", saes[i].id, QKM_NAME_MAX, true, 1));
		rc = first_err(rc, get_str(c, o, p, "node", saes[i].node, QKM_NAME_MAX, true, 1));
	}
	return rc;
}

static bool is_relay_mode(const char *m)
{
	return !strcmp(m, "otp") || !strcmp(m, "xor-at-destination") || !strcmp(m, "central-xor");
}

/* "routes": [{"to": NAME, "path": [NAME, ...]}] of a node config (R-REL-6).
 * A path starts here and leaves over one of this node's links, visits no
 * node twice and ends at `to`: checked against out->id and the links'
 * peers only when those loaded without error (id_ok, peers_ok), and only
 * for the names that loaded, so one wrong field is not reported again. */
static int get_routes(struct jctx *c, json_t *root, struct qkm_node_cfg *out, bool id_ok,
		      bool peers_ok)
{
	static const char *const routekeys[] = {"to", "path", NULL};
	json_t *arr, *path;
	int rc = get_array(c, root, "", "routes", &arr, QKM_MAX_NODES, false);
	for (size_t i = 0; arr && i < json_array_size(arr); i++) {
		json_t *o = json_array_get(arr, i);
		struct qkm_node_route *r = &out->routes[i];
		char p[48], pp[96];
		snprintf(p, sizeof(p), "routes[%zu]", i);
		out->n_routes = i + 1;
		if (check_keys(c, o, p, routekeys)) {
			rc = QKM_ECONFIG;
			continue;
		}
		snprintf(pp, sizeof(pp), "%s.to", p);
		if (get_str(c, o, p, "to", r->to, sizeof(r->to), true, 1)) {
			rc = QKM_ECONFIG;
		} else if (id_ok && strcmp(r->to, out->id) == 0) {
			rc = jerr(c, pp, "'%s' is this node itself", r->to);
		} else {
			for (size_t j = 0; j < i; j++)
				if (strcmp(out->routes[j].to, r->to) == 0) {
					rc = jerr(c, pp, "duplicate route to '%s' (also routes[%zu])",
						  r->to, j);
					break;
				}
		}
		if (get_array(c, o, p, "path", &path, QKM_MAX_PATH, true)) {
			rc = QKM_ECONFIG;
			continue;
		}
		snprintf(pp, sizeof(pp), "%s.path", p);
		if (json_array_size(path) < 2) {
			rc = jerr(c, pp, "must have 2 to %d nodes", QKM_MAX_PATH);
			continue;
		}
		r->n = (uint32_t)json_array_size(path);
		for (uint32_t k = 0; k < r->n; k++) {
			snprintf(pp, sizeof(pp), "%s.path[%u]", p, k);
			if (str_value(c, json_array_get(path, k), pp, r->path[k], sizeof(r->path[k]),
				      1)) {
				rc = QKM_ECONFIG;
				continue;
			}
			for (uint32_t j = 0; j < k; j++)
				if (strcmp(r->path[j], r->path[k]) == 0) {
					rc = jerr(c, pp, "'%s' is already path[%u]", r->path[k], j);
					break;
				}
		}
		if (id_ok && r->path[0][0] && strcmp(r->path[0], out->id) != 0) {
			snprintf(pp, sizeof(pp), "%s.path[0]", p);
			rc = jerr(c, pp, "must be this node ('%s'), not '%s'", out->id, r->path[0]);
		}
		bool peer = false;
		for (size_t l = 0; l < out->n_links; l++)
			peer = peer || strcmp(out->links[l].peer, r->path[1]) == 0;
		if (peers_ok && r->path[1][0] && !peer) {
			snprintf(pp, sizeof(pp), "%s.path[1]", p);
			rc = jerr(c, pp, "'%s' is not the peer of any of this node's links",
				  r->path[1]);
		}
		if (r->to[0] && r->path[r->n - 1][0] && strcmp(r->path[r->n - 1], r->to) != 0) {
			snprintf(pp, sizeof(pp), "%s.path[%u]", p, r->n - 1);
			rc = jerr(c, pp, "must be the route's destination ('%s'), not '%s'", r->to,
				  r->path[r->n - 1]);
		}
	}
	return rc;
}

/* "relay": {...} of a node config (R-REL-3, R-REL-4, R-REL-7); defaults
 * apply with or without the object. */
static int get_relay(struct jctx *c, json_t *root, struct qkm_relay_cfg *r)
{
	static const char *const relaykeys[] = {"mode", "central", "aes_fallback", "key_source",
						"rng_device", "batch_bytes", "low_bytes", "high_bytes",
						"hold_s", "hold_mib", NULL};
	char source[32] = "link";
	json_t *o;
	snprintf(r->mode, sizeof(r->mode), "otp");
	qkm_relay_defaults(r);
	int rc = get_object(c, root, "", "relay", relaykeys, false, &o);
	if (rc <= 0)
		return rc;
	rc = 0;
	bool mode_ok = get_str(c, o, "relay", "mode", r->mode, sizeof(r->mode), false, 0) == 0;
	if (mode_ok && !is_relay_mode(r->mode)) {
		(void)jerr(c, "relay.mode", "must be otp, xor-at-destination or central-xor");
		mode_ok = false;
	}
	bool central_ok =
		get_str(c, o, "relay", "central", r->central, sizeof(r->central), false, 1) == 0;
	rc = first_err(mode_ok && central_ok ? 0 : QKM_ECONFIG,
		       get_bool(c, o, "relay", "aes_fallback", &r->aes_fallback));
	if (get_str(c, o, "relay", "key_source", source, sizeof(source), false, 0))
		rc = QKM_ECONFIG;
	else if (strcmp(source, "link") && strcmp(source, "rng"))
		rc = jerr(c, "relay.key_source", "must be link or rng");
	r->rng = strcmp(source, "rng") == 0;
	rc = first_err(rc, get_str(c, o, "relay", "rng_device", r->rng_device,
				   sizeof(r->rng_device), false, 0));
	bool batch_ok = get_u32(c, o, "relay", "batch_bytes", &r->batch_bytes, 256, 4u << 20,
				false) == 0;
	bool low_ok = get_u64(c, o, "relay", "low_bytes", &r->low_bytes, 0, INT64_MAX, false) == 0;
	bool high_ok =
		get_u64(c, o, "relay", "high_bytes", &r->high_bytes, 0, INT64_MAX, false) == 0;
	if (!batch_ok || !low_ok || !high_ok)
		rc = QKM_ECONFIG;
	rc = first_err(rc, get_u32(c, o, "relay", "hold_s", &r->hold_s, 0, QKM_RELAY_HOLD_S_MAX,
				   false));
	rc = first_err(rc, get_u32(c, o, "relay", "hold_mib", &r->hold_mib, 1,
				   QKM_RELAY_HOLD_MIB_MAX, false));
	/* Relay messages carry whole 256-bit keys. */
	if (batch_ok && r->batch_bytes % 32)
		rc = jerr(c, "relay.batch_bytes", "must be a multiple of 32");
	if (low_ok && high_ok && r->high_bytes < r->low_bytes)
		rc = jerr(c, "relay.high_bytes", "must be at least low_bytes (%llu)",
			  (unsigned long long)r->low_bytes);
	if (!mode_ok || !central_ok)
		return rc;
	bool central = strcmp(r->mode, "central-xor") == 0;
	if (central && !r->central[0])
		rc = jerr(c, "relay.central", "missing (required when mode is central-xor)");
	if (!central && r->central[0])
		rc = jerr(c, "relay.central", "only allowed when mode is central-xor");
	return rc;
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
	int rc = get_object(c, parent, path, "limits", keys, false, &o);
	if (rc <= 0)
		return rc;
	subpath(p, sizeof(p), path, "limits");
	bool rate_ok = get_u32(c, o, p, "sae_rate", &l->sae_rate, 0, QKM_LIMIT_MAX, false) == 0;
	bool burst_ok = get_u32(c, o, p, "sae_burst", &l->sae_burst, 0, QKM_LIMIT_MAX, false) == 0;
	rc = get_u32(c, o, p, "sae_in_flight", &l->sae_in_flight, 0, QKM_LIMIT_MAX, false);
	if (!rate_ok || !burst_ok)
		return QKM_ECONFIG;
	if (json_object_get(o, "sae_rate") && !json_object_get(o, "sae_burst") && l->sae_rate)
		l->sae_burst = l->sae_rate > QKM_LIMIT_MAX / 2 ? QKM_LIMIT_MAX : 2 * l->sae_rate;
	if (l->sae_rate && !l->sae_burst) {
		char pb[176];
		snprintf(pb, sizeof(pb), "%s.sae_burst", p);
		return jerr(c, pb, "must be at least 1 when sae_rate is set (0 turns the rate "
				   "limit off)");
	}
	return rc;
}

/* "directory": [{"id": NAME, "kx": ADDR}]: the Kx address of other nodes,
 * for direct KMA links (clause 9 relay modes, R-REL-7). */
static int get_directory(struct jctx *c, json_t *root, struct qkm_node_cfg *out, bool id_ok)
{
	static const char *const dirkeys[] = {"id", "kx", NULL};
	json_t *arr;
	int rc = get_array(c, root, "", "directory", &arr, QKM_MAX_NODES, false);
	for (size_t i = 0; arr && i < json_array_size(arr); i++) {
		json_t *o = json_array_get(arr, i);
		struct qkm_node_dir *d = &out->dir[i];
		char p[48], fp[80];
		snprintf(p, sizeof(p), "directory[%zu]", i);
		out->n_dir = i + 1;
		if (check_keys(c, o, p, dirkeys)) {
			rc = QKM_ECONFIG;
			continue;
		}
		bool did_ok = get_str(c, o, p, "id", d->id, sizeof(d->id), true, 1) == 0;
		if (get_str(c, o, p, "kx", d->kx, sizeof(d->kx), true, 0) || !did_ok)
			rc = QKM_ECONFIG;
		if (!did_ok)
			continue;
		if (id_ok && strcmp(d->id, out->id) == 0) {
			rc = jerr(c, pf(fp, p, "id"), "'%s' is this node itself", d->id);
			continue;
		}
		for (size_t j = 0; j < i; j++)
			if (strcmp(out->dir[j].id, d->id) == 0) {
				rc = jerr(c, pf(fp, p, "id"),
					  "duplicate entry for '%s' (also directory[%zu])", d->id, j);
				break;
			}
	}
	return rc;
}

/* A device's key API as net/http.h's client reaches it: https://, then an
 * IPv4 address, a bracketed IPv6 address or localhost, an optional port,
 * and no path beyond "/". */
static bool device_url_ok(const char *url)
{
	char host[64];
	const char *a = url + 8, *end;
	if (strncmp(url, "https://", 8) != 0)
		return false;
	if (*a == '[') {
		end = strchr(a, ']');
		if (!end || (size_t)(end - a - 1) >= sizeof(host))
			return false;
		memcpy(host, a + 1, (size_t)(end - a - 1));
		host[end - a - 1] = 0;
		struct in6_addr v6;
		if (inet_pton(AF_INET6, host, &v6) != 1)
			return false;
		end++;
	} else {
		end = a + strcspn(a, ":/");
		if ((size_t)(end - a) >= sizeof(host))
			return false;
		memcpy(host, a, (size_t)(end - a));
		host[end - a] = 0;
		struct in_addr v4;
		if (strcmp(host, "localhost") != 0 && inet_pton(AF_INET, host, &v4) != 1)
			return false;
	}
	if (*end == ':') {
		char *num;
		long port = strtol(end + 1, &num, 10);
		if (num == end + 1 || port < 1 || port > 65535)
			return false;
		end = num;
	}
	return *end == 0 || strcmp(end, "/") == 0;
}

/* "source" of a node link (R-ACQ-5): where its QKD-key files come from.
 * Absent: the simulator. The fields allowed depend on "kind", so an
 * unknown kind is reported alone (its other fields cannot be judged).
 * *role_ok (OUT): an etsi014 source's role loaded (the caller checks it
 * against the link's leader). */
static int get_source(struct jctx *c, json_t *link, const char *path, struct qkm_key_source *s,
		      bool *role_ok)
{
	static const char *const simkeys[] = {"kind", NULL};
	static const char *const spoolkeys[] = {"kind", "dir", "poll_ms", NULL};
	static const char *const etsikeys[] = {"kind", "url", "sae", "peer_sae", "role", "cert",
					       "key", "ca", "poll_ms", "batch", "size_bits",
					       NULL};
	char p[160], fp[176], kind[16] = "", role[16] = "";
	json_t *o;
	memset(s, 0, sizeof(*s));
	*role_ok = false;
	int rc = field(c, link, path, "source", false, p, &o);
	if (rc <= 0)
		return rc;
	if (!json_is_object(o))
		return jerr(c, p, "must be an object");
	if (get_str(c, o, p, "kind", kind, sizeof(kind), true, 0))
		return QKM_ECONFIG;
	if (strcmp(kind, "sim") == 0)
		return check_keys(c, o, p, simkeys);
	s->poll_ms = 200;
	if (strcmp(kind, "spool") == 0) {
		s->kind = QKM_SRC_SPOOL;
		(void)check_keys(c, o, p, spoolkeys);
		rc = get_str(c, o, p, "dir", s->dir, sizeof(s->dir), true, 0);
		rc = first_err(rc, get_u32(c, o, p, "poll_ms", &s->poll_ms, 10, 60000, false));
		return rc;
	}
	if (strcmp(kind, "etsi014") != 0) {
		snprintf(fp, sizeof(fp), "%s.kind", p);
		return jerr(c, fp, "must be sim, etsi014 or spool");
	}
	s->kind = QKM_SRC_ETSI014;
	s->batch = 16;
	s->size_bits = 4096;
	(void)check_keys(c, o, p, etsikeys);
	rc = get_str(c, o, p, "url", s->url, sizeof(s->url), true, 0);
	if (!rc && !device_url_ok(s->url)) {
		snprintf(fp, sizeof(fp), "%s.url", p);
		rc = jerr(c, fp, "must be https://ADDRESS:PORT, ADDRESS an IPv4 address, an IPv6 "
			  "address in brackets or localhost (the device's key API; no DNS names)");
	}
	rc = first_err(rc, get_str(c, o, p, "sae", s->sae, sizeof(s->sae), true, 1));
	rc = first_err(rc, get_str(c, o, p, "peer_sae", s->peer_sae, sizeof(s->peer_sae), true, 1));
	if (!get_str(c, o, p, "role", role, sizeof(role), true, 0)) {
		if (strcmp(role, "master") && strcmp(role, "slave")) {
			snprintf(fp, sizeof(fp), "%s.role", p);
			rc = jerr(c, fp, "must be master or slave");
		} else {
			*role_ok = true;
		}
		s->master = strcmp(role, "master") == 0;
	} else {
		rc = QKM_ECONFIG;
	}
	rc = first_err(rc, get_str(c, o, p, "ca", s->tls.ca, sizeof(s->tls.ca), true, 0));
	rc = first_err(rc, get_str(c, o, p, "cert", s->tls.cert, sizeof(s->tls.cert), true, 0));
	rc = first_err(rc, get_str(c, o, p, "key", s->tls.key, sizeof(s->tls.key), true, 0));
	rc = first_err(rc, get_u32(c, o, p, "poll_ms", &s->poll_ms, 10, 60000, false));
	rc = first_err(rc, get_u32(c, o, p, "batch", &s->batch, 1, 1024, false));
	if (get_u32(c, o, p, "size_bits", &s->size_bits, 64, 1u << 20, false)) {
		rc = QKM_ECONFIG;
	} else if (s->size_bits % 8) {
		snprintf(fp, sizeof(fp), "%s.size_bits", p);
		rc = jerr(c, fp, "must be a multiple of 8");
	}
	return rc;
}

/* "links" of a node config; 0 when every entry loaded. *peers_ok (OUT):
 * every entry's peer loaded, so routes can be checked against them. */
static int get_node_links(struct jctx *c, json_t *root, struct qkm_node_cfg *out, bool id_ok,
			  bool *peers_ok)
{
	static const char *const linkkeys[] = {"link", "peer", "addr", "module", "kma_unit_bits",
					       "batch_ms", "batch_max_bytes", "source", NULL};
	json_t *arr;
	int rc = get_array(c, root, "", "links", &arr, QKM_MAX_LINKS, false);
	*peers_ok = rc == 0;
	for (size_t i = 0; arr && i < json_array_size(arr); i++) {
		json_t *o = json_array_get(arr, i);
		struct qkm_node_link *l = &out->links[i];
		char p[48], fp[80];
		snprintf(p, sizeof(p), "links[%zu]", i);
		l->kma_unit_bits = 256;
		l->batch_ms = 100;
		l->batch_max_bytes = 1u << 20;
		out->n_links = i + 1;
		if (check_keys(c, o, p, linkkeys)) {
			rc = QKM_ECONFIG;
			*peers_ok = false;
			continue;
		}
		rc = first_err(rc, get_str(c, o, p, "link", l->link, sizeof(l->link), true, 1));
		bool peer_ok = get_str(c, o, p, "peer", l->peer, sizeof(l->peer), true, 1) == 0;
		*peers_ok = *peers_ok && peer_ok;
		rc = first_err(rc, get_str(c, o, p, "addr", l->addr, sizeof(l->addr), true, 0));
		rc = first_err(rc, get_str(c, o, p, "module", l->module, sizeof(l->module), true, 1));
		bool unit_ok = get_u32(c, o, p, "kma_unit_bits", &l->kma_unit_bits, 64, 1u << 20,
				       false) == 0;
		rc = first_err(rc, get_u32(c, o, p, "batch_ms", &l->batch_ms, 1, 60000, false));
		rc = first_err(rc, get_u32(c, o, p, "batch_max_bytes", &l->batch_max_bytes, 4096,
					   16u << 20, false));
		if (!peer_ok || !unit_ok)
			rc = QKM_ECONFIG;
		if (unit_ok && l->kma_unit_bits % 8)
			rc = jerr(c, pf(fp, p, "kma_unit_bits"), "must be a multiple of 8");
		if (peer_ok && id_ok && strcmp(l->peer, out->id) == 0)
			rc = jerr(c, pf(fp, p, "peer"), "'%s' is this node itself", l->peer);
		bool role_ok;
		if (get_source(c, o, p, &l->src, &role_ok))
			rc = QKM_ECONFIG;
		/* The device pair's master SAE is the acquisition leader: it
		 * draws keys with enc_keys and names them in its PREPAREs; the
		 * follower fetches those IDs with dec_keys (docs/operations.md,
		 * Key sources). */
		bool leader = strcmp(out->id, l->peer) < 0;
		if (role_ok && id_ok && peer_ok && l->src.master != leader) {
			snprintf(fp, sizeof(fp), "%s.source.role", p);
			rc = jerr(c, fp, "must be %s: the device's master side is the link's leader, "
				  "the node whose name sorts first ('%s')",
				  leader ? "master" : "slave", leader ? out->id : l->peer);
		}
	}
	return rc;
}

static void node_load(struct jctx *c, json_t *root, void *arg)
{
	static const char *const keys[] = {"id", "db", "log_level", "ksa", "after_supply",
					   "retention_s", "tls", "listen", "sim", "links",
					   "saes", "routes", "relay", "directory", "controller",
					   "limits", NULL};
	static const char *const lkeys[] = {"kx", "admin", "etsi014", NULL};
	static const char *const ckeys[] = {"addr", "id", NULL};
	struct qkm_node_cfg *out = arg;
	json_t *o;
	memset(out, 0, sizeof(*out));
	out->ksa = true;
	if (!root || check_keys(c, root, "", keys))
		return;
	bool id_ok = get_str(c, root, "", "id", out->id, sizeof(out->id), true, 1) == 0;
	(void)get_str(c, root, "", "db", out->db, sizeof(out->db), true, 0);
	(void)get_level(c, root, out->log_level);
	(void)get_bool(c, root, "", "ksa", &out->ksa);
	(void)get_tls(c, root, &out->tls);
	(void)get_str(c, root, "", "sim", out->sim, sizeof(out->sim), false, 0);
	char policy[16] = "delete";
	if (!get_str(c, root, "", "after_supply", policy, sizeof(policy), false, 0) &&
	    strcmp(policy, "delete") && strcmp(policy, "preserve"))
		(void)jerr(c, "after_supply", "must be delete or preserve");
	out->preserve = strcmp(policy, "preserve") == 0;
	get_retention(c, root, "", &out->retention_s);
	if (get_object(c, root, "", "listen", lkeys, true, &o) > 0) {
		(void)get_str(c, o, "listen", "kx", out->kx_listen, sizeof(out->kx_listen), true, 0);
		(void)get_str(c, o, "listen", "admin", out->admin_listen, sizeof(out->admin_listen),
			      true, 0);
		(void)get_str(c, o, "listen", "etsi014", out->etsi014_listen,
			      sizeof(out->etsi014_listen), false, 0);
	}
	bool peers_ok;
	(void)get_node_links(c, root, out, id_ok, &peers_ok);
	(void)get_saes(c, root, out->saes, &out->n_saes);
	(void)get_routes(c, root, out, id_ok, peers_ok);
	(void)get_relay(c, root, &out->relay);
	(void)get_limits(c, root, "", &out->limits);
	(void)get_directory(c, root, out, id_ok);
	if (get_object(c, root, "", "controller", ckeys, false, &o) > 0) {
		(void)get_str(c, o, "controller", "addr", out->controller.addr,
			      sizeof(out->controller.addr), true, 0);
		(void)get_str(c, o, "controller", "id", out->controller.id,
			      sizeof(out->controller.id), true, 1);
	}
}

int qkm_node_cfg_load(const char *path, struct qkm_node_cfg *out, char *err, size_t errsz)
{
	return run(path, NULL, 0, node_load, out, err, errsz, NULL);
}

int qkm_node_cfg_parse(const char *name, const char *text, size_t len, struct qkm_node_cfg *out, char *err,
		     size_t errsz)
{
	return run(name, text ? text : "", len, node_load, out, err, errsz, NULL);
}

int qkm_node_cfg_check(const char *path, struct qkm_node_cfg *out, struct qkm_cfg_errors *errs)
{
	return run(path, NULL, 0, node_load, out, NULL, 0, errs);
}

static void ctl_load(struct jctx *c, json_t *root, void *arg)
{
	static const char *const keys[] = {"id", "db", "log_level", "tls", "ca_dir", "sae_dir",
					   "listen", "topology", "mode", NULL};
	static const char *const lkeys[] = {"ck", "api", NULL};
	struct qkm_ctl_cfg *out = arg;
	json_t *o;
	memset(out, 0, sizeof(*out));
	snprintf(out->mode, sizeof(out->mode), "adaptive");
	if (!root || check_keys(c, root, "", keys))
		return;
	(void)get_str(c, root, "", "id", out->id, sizeof(out->id), true, 1);
	(void)get_str(c, root, "", "db", out->db, sizeof(out->db), true, 0);
	(void)get_level(c, root, out->log_level);
	(void)get_tls(c, root, &out->tls);
	(void)get_str(c, root, "", "ca_dir", out->ca_dir, sizeof(out->ca_dir), true, 0);
	(void)get_str(c, root, "", "sae_dir", out->sae_dir, sizeof(out->sae_dir), true, 0);
	(void)get_str(c, root, "", "topology", out->topology, sizeof(out->topology), true, 0);
	if (!get_str(c, root, "", "mode", out->mode, sizeof(out->mode), false, 0) &&
	    !qkm_route_mode_valid(out->mode))
		(void)jerr(c, "mode", "must be manual, fixed-rate, adaptive or scheduled");
	if (get_object(c, root, "", "listen", lkeys, true, &o) > 0) {
		(void)get_str(c, o, "listen", "ck", out->ck_listen, sizeof(out->ck_listen), true, 0);
		(void)get_str(c, o, "listen", "api", out->api_listen, sizeof(out->api_listen), true,
			      0);
	}
}

int qkm_ctl_cfg_load(const char *path, struct qkm_ctl_cfg *out, char *err, size_t errsz)
{
	return run(path, NULL, 0, ctl_load, out, err, errsz, NULL);
}

int qkm_ctl_cfg_parse(const char *name, const char *text, size_t len, struct qkm_ctl_cfg *out, char *err,
		     size_t errsz)
{
	return run(name, text ? text : "", len, ctl_load, out, err, errsz, NULL);
}

int qkm_ctl_cfg_check(const char *path, struct qkm_ctl_cfg *out, struct qkm_cfg_errors *errs)
{
	return run(path, NULL, 0, ctl_load, out, NULL, 0, errs);
}

static void sim_link(struct jctx *c, json_t *o, const char *p, struct qkm_sim_link *l)
{
	static const char *const linkkeys[] = {"id", "rate_bps", "unit_bits", "qber",
					       "qber_threshold", "sides", "etsi014", NULL};
	static const char *const sidekeys[] = {"node", "module", "spool", NULL};
	json_t *sides;
	char fp[80];
	l->qber = 0.01;
	l->qber_threshold = 0.11;
	if (check_keys(c, o, p, linkkeys))
		return;
	(void)get_str(c, o, p, "id", l->id, sizeof(l->id), true, 1);
	(void)get_u64(c, o, p, "rate_bps", &l->rate_bps, 1, 100000000000ull, true);
	bool unit_ok = get_u32(c, o, p, "unit_bits", &l->unit_bits, 64, 8u << 20, true) == 0;
	(void)get_ratio(c, o, p, "qber", &l->qber);
	(void)get_ratio(c, o, p, "qber_threshold", &l->qber_threshold);
	(void)get_str(c, o, p, "etsi014", l->etsi014, sizeof(l->etsi014), false, 0);
	bool sides_ok = get_array(c, o, p, "sides", &sides, 2, true) == 0;
	if (unit_ok && l->unit_bits % 8)
		(void)jerr(c, pf(fp, p, "unit_bits"), "must be a multiple of 8");
	if (!sides_ok)
		return;
	if (json_array_size(sides) != 2) {
		(void)jerr(c, pf(fp, p, "sides"), "must have exactly two entries");
		return;
	}
	for (int s = 0; s < 2; s++) {
		char sp[64];
		snprintf(sp, sizeof(sp), "%s.sides[%d]", p, s);
		json_t *so = json_array_get(sides, (size_t)s);
		if (check_keys(c, so, sp, sidekeys))
			continue;
		(void)get_str(c, so, sp, "node", l->node[s], QKM_NAME_MAX, true, 1);
		(void)get_str(c, so, sp, "module", l->module[s], QKM_NAME_MAX, true, 1);
		(void)get_str(c, so, sp, "spool", l->spool[s], sizeof(l->spool[s]), false, 0);
		if (l->spool[s][0] && l->etsi014[0]) {
			char fsp[96];
			snprintf(fsp, sizeof(fsp), "%s.spool", sp);
			(void)jerr(c, fsp, "not with etsi014: the link's keys go out through its "
				   "ETSI 014 API");
		}
	}
}

static void sim_load(struct jctx *c, json_t *root, void *arg)
{
	static const char *const keys[] = {"name", "log_level", "tls", "listen", "control",
					   "backlog_bytes", "links", NULL};
	struct qkm_sim_cfg *out = arg;
	json_t *arr;
	memset(out, 0, sizeof(*out));
	snprintf(out->name, sizeof(out->name), "sim");
	out->backlog_bytes = 64u << 20;
	if (!root || check_keys(c, root, "", keys))
		return;
	(void)get_str(c, root, "", "name", out->name, sizeof(out->name), false, 1);
	(void)get_level(c, root, out->log_level);
	(void)get_tls(c, root, &out->tls);
	(void)get_str(c, root, "", "listen", out->listen, sizeof(out->listen), true, 0);
	(void)get_str(c, root, "", "control", out->control, sizeof(out->control), true, 0);
	(void)get_u32(c, root, "", "backlog_bytes", &out->backlog_bytes, 1u << 16, 1u << 30, false);
	if (get_array(c, root, "", "links", &arr, QKM_MAX_TOPO_LINKS, true))
		return;
	for (size_t i = 0; i < json_array_size(arr); i++) {
		char p[48];
		snprintf(p, sizeof(p), "links[%zu]", i);
		sim_link(c, json_array_get(arr, i), p, &out->links[i]);
		out->n_links = i + 1;
	}
}

int qkm_sim_cfg_load(const char *path, struct qkm_sim_cfg *out, char *err, size_t errsz)
{
	return run(path, NULL, 0, sim_load, out, err, errsz, NULL);
}

int qkm_sim_cfg_parse(const char *name, const char *text, size_t len, struct qkm_sim_cfg *out, char *err,
		     size_t errsz)
{
	return run(name, text ? text : "", len, sim_load, out, err, errsz, NULL);
}

int qkm_sim_cfg_check(const char *path, struct qkm_sim_cfg *out, struct qkm_cfg_errors *errs)
{
	return run(path, NULL, 0, sim_load, out, NULL, 0, errs);
}

static int topo_node_index(const struct qkm_topology *t, const char *id)
{
	for (size_t i = 0; i < t->n_nodes; i++)
		if (strcmp(t->nodes[i].id, id) == 0)
			return (int)i;
	return -1;
}

/* "links" of a topology; names checked against nodes when nodes_ok. */
static void topo_links(struct jctx *c, json_t *root, struct qkm_topology *out, bool nodes_ok)
{
	static const char *const linkkeys[] = {"a", "b", "rate_bps", "unit_bits", "qber",
					       "source", NULL};
	json_t *arr;
	if (get_array(c, root, "", "links", &arr, QKM_MAX_TOPO_LINKS, false))
		return;
	for (size_t i = 0; arr && i < json_array_size(arr); i++) {
		json_t *o = json_array_get(arr, i);
		struct qkm_topo_link *l = &out->links[i];
		char p[48], fp[80];
		snprintf(p, sizeof(p), "links[%zu]", i);
		l->qber = 0.01;
		out->n_links = i + 1;
		if (check_keys(c, o, p, linkkeys))
			continue;
		bool a_ok = get_str(c, o, p, "a", l->a, QKM_NAME_MAX, true, 1) == 0;
		bool b_ok = get_str(c, o, p, "b", l->b, QKM_NAME_MAX, true, 1) == 0;
		(void)get_u64(c, o, p, "rate_bps", &l->rate_bps, 1, 100000000000ull, true);
		bool unit_ok = get_u32(c, o, p, "unit_bits", &l->unit_bits, 64, 8u << 20, true) == 0;
		(void)get_ratio(c, o, p, "qber", &l->qber);
		if (unit_ok && l->unit_bits % 8)
			(void)jerr(c, pf(fp, p, "unit_bits"), "must be a multiple of 8");
		char src[16] = "sim";
		if (!get_str(c, o, p, "source", src, sizeof(src), false, 0)) {
			if (strcmp(src, "sim") == 0)
				l->source = QKM_SRC_SIM;
			else if (strcmp(src, "etsi014") == 0)
				l->source = QKM_SRC_ETSI014;
			else if (strcmp(src, "spool") == 0)
				l->source = QKM_SRC_SPOOL;
			else
				(void)jerr(c, pf(fp, p, "source"), "must be sim, etsi014 or spool");
		}
		if (!a_ok || !b_ok)
			continue;
		if (nodes_ok && topo_node_index(out, l->a) < 0)
			(void)jerr(c, pf(fp, p, "a"), "node '%s' is not in nodes", l->a);
		if (nodes_ok && topo_node_index(out, l->b) < 0)
			(void)jerr(c, pf(fp, p, "b"), "node '%s' is not in nodes", l->b);
		if (strcmp(l->a, l->b) == 0)
			(void)jerr(c, p, "a and b must differ");
		for (size_t j = 0; j < i; j++)
			if ((!strcmp(out->links[j].a, l->a) && !strcmp(out->links[j].b, l->b)) ||
			    (!strcmp(out->links[j].a, l->b) && !strcmp(out->links[j].b, l->a))) {
				(void)jerr(c, p, "duplicate link %s-%s", l->a, l->b);
				break;
			}
	}
}

/* "policy" of a topology; central checked against nodes when nodes_ok. */
static void topo_policy(struct jctx *c, json_t *root, struct qkm_topology *out, bool nodes_ok)
{
	static const char *const polkeys[] = {"relay", "central", "key_source", "aes_fallback",
					      "after_supply", "retention_s", "limits",
					      "routing", NULL};
	struct qkm_topo_policy *pol = &out->policy;
	json_t *o;
	if (get_object(c, root, "", "policy", polkeys, false, &o) <= 0)
		return;
	bool relay_ok =
		get_str(c, o, "policy", "relay", pol->relay, sizeof(pol->relay), false, 0) == 0;
	(void)get_bool(c, o, "policy", "aes_fallback", &pol->aes_fallback);
	bool after_ok = get_str(c, o, "policy", "after_supply", pol->after_supply,
				sizeof(pol->after_supply), false, 0) == 0;
	if (relay_ok && !is_relay_mode(pol->relay)) {
		(void)jerr(c, "policy.relay", "must be otp, xor-at-destination or central-xor");
		relay_ok = false;
	}
	/* central-xor needs its combining node, and only it names one. */
	bool central_ok =
		get_str(c, o, "policy", "central", pol->central, sizeof(pol->central), false, 1) == 0;
	if (relay_ok && central_ok) {
		bool central = strcmp(pol->relay, "central-xor") == 0;
		if (central && !pol->central[0])
			(void)jerr(c, "policy.central", "missing (required when relay is central-xor)");
		else if (!central && pol->central[0])
			(void)jerr(c, "policy.central", "only allowed when relay is central-xor");
		else if (central && nodes_ok && topo_node_index(out, pol->central) < 0)
			(void)jerr(c, "policy.central", "node '%s' is not in nodes", pol->central);
	}
	char source[32] = "link";
	if (!get_str(c, o, "policy", "key_source", source, sizeof(source), false, 0)) {
		if (strcmp(source, "link") && strcmp(source, "rng"))
			(void)jerr(c, "policy.key_source", "must be link or rng");
		else
			snprintf(pol->key_source, sizeof(pol->key_source), "%s", source);
	}
	if (after_ok && strcmp(pol->after_supply, "delete") && strcmp(pol->after_supply, "preserve"))
		(void)jerr(c, "policy.after_supply", "must be delete or preserve");
	get_retention(c, o, "policy", &pol->retention_s);
	(void)get_limits(c, o, "policy", &pol->limits);
	if (get_str(c, o, "policy", "routing", pol->routing, sizeof(pol->routing), false, 0) == 0 &&
	    !qkm_route_mode_valid(pol->routing)) {
		(void)jerr(c, "policy.routing", "must be adaptive, manual, fixed-rate or scheduled");
		snprintf(pol->routing, sizeof(pol->routing), "adaptive");
	}
}

static void topo_load(struct jctx *c, json_t *root, void *arg)
{
	static const char *const keys[] = {"name", "nodes", "links", "saes", "policy", NULL};
	static const char *const nodekeys[] = {"id", "ksa", NULL};
	struct qkm_topology *out = arg;
	json_t *arr;
	memset(out, 0, sizeof(*out));
	snprintf(out->policy.relay, sizeof(out->policy.relay), "otp");
	snprintf(out->policy.after_supply, sizeof(out->policy.after_supply), "delete");
	snprintf(out->policy.key_source, sizeof(out->policy.key_source), "link");
	snprintf(out->policy.routing, sizeof(out->policy.routing), "adaptive");
	qkm_limits_defaults(&out->policy.limits);
	out->policy.retention_s = QKM_RETENTION_S;
	if (!root || check_keys(c, root, "", keys))
		return;
	(void)get_str(c, root, "", "name", out->name, sizeof(out->name), false, 1);
	/* Names elsewhere are checked against nodes only if every node loaded:
	 * else a wrong node id would be reported again at each link using it. */
	bool nodes_ok = get_array(c, root, "", "nodes", &arr, QKM_MAX_NODES, true) == 0;
	if (nodes_ok && json_array_size(arr) == 0) {
		(void)jerr(c, "nodes", "needs at least one node");
		nodes_ok = false;
	}
	for (size_t i = 0; arr && i < json_array_size(arr); i++) {
		json_t *o = json_array_get(arr, i);
		char p[48];
		snprintf(p, sizeof(p), "nodes[%zu]", i);
		struct qkm_topo_node *n = &out->nodes[i];
		char fp[80];
		n->ksa = true;
		if (check_keys(c, o, p, nodekeys)) {
			nodes_ok = false;
			out->n_nodes = i + 1;
			continue;
		}
		bool id_ok = get_str(c, o, p, "id", n->id, QKM_NAME_MAX, true, 1) == 0;
		if (get_bool(c, o, p, "ksa", &n->ksa) || !id_ok)
			nodes_ok = false;
		if (id_ok && topo_node_index(out, n->id) >= 0) {
			(void)jerr(c, pf(fp, p, "id"), "duplicate node id '%s'", n->id);
			nodes_ok = false;
		}
		out->n_nodes = i + 1;
	}
	topo_links(c, root, out, nodes_ok);
	(void)get_saes(c, root, out->saes, &out->n_saes);
	for (size_t i = 0; i < out->n_saes; i++) {
		const struct qkm_node_sae *s = &out->saes[i];
		char p[48], fp[80];
		snprintf(p, sizeof(p), "saes[%zu]", i);
		int ni = s->node[0] && nodes_ok ? topo_node_index(out, s->node) : -2;
		if (ni == -1)
			(void)jerr(c, pf(fp, p, "node"), "node '%s' is not in nodes", s->node);
		else if (ni >= 0 && !out->nodes[ni].ksa)
			(void)jerr(c, pf(fp, p, "node"), "node '%s' is relay-only (ksa: false)",
				   s->node);
		for (size_t j = 0; s->id[0] && j < i; j++)
			if (!strcmp(out->saes[j].id, s->id)) {
				(void)jerr(c, pf(fp, p, "id"), "duplicate SAE id '%s'", s->id);
				break;
			}
	}
	topo_policy(c, root, out, nodes_ok);
}

int qkm_topology_load(const char *path, struct qkm_topology *out, char *err, size_t errsz)
{
	return run(path, NULL, 0, topo_load, out, err, errsz, NULL);
}

int qkm_topology_parse(const char *name, const char *text, size_t len, struct qkm_topology *out, char *err,
		     size_t errsz)
{
	return run(name, text ? text : "", len, topo_load, out, err, errsz, NULL);
}

int qkm_topology_check(const char *path, struct qkm_topology *out, struct qkm_cfg_errors *errs)
{
	return run(path, NULL, 0, topo_load, out, NULL, 0, errs);
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

static json_t *source_json(const struct qkm_key_source *s)
{
	if (s->kind == QKM_SRC_SPOOL)
		return json_pack("{s:s, s:s, s:I}", "kind", "spool", "dir", s->dir, "poll_ms",
				 (json_int_t)s->poll_ms);
	if (s->kind == QKM_SRC_ETSI014)
		return json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:I, s:I, s:I}", "kind",
				 "etsi014", "url", s->url, "sae", s->sae, "peer_sae", s->peer_sae,
				 "role", s->master ? "master" : "slave", "ca", s->tls.ca, "cert",
				 s->tls.cert, "key", s->tls.key, "poll_ms", (json_int_t)s->poll_ms,
				 "batch", (json_int_t)s->batch, "size_bits",
				 (json_int_t)s->size_bits);
	return json_pack("{s:s}", "kind", "sim");
}

int qkm_node_cfg_save(const char *path, const struct qkm_node_cfg *c)
{
	json_t *links = json_array(), *saes = json_array();
	for (size_t i = 0; i < c->n_links; i++) {
		const struct qkm_node_link *l = &c->links[i];
		json_array_append_new(
			links, json_pack("{s:s, s:s, s:s, s:s, s:I, s:I, s:I, s:o}", "link", l->link,
					 "peer", l->peer, "addr", l->addr, "module", l->module,
					 "kma_unit_bits", (json_int_t)l->kma_unit_bits, "batch_ms",
					 (json_int_t)l->batch_ms, "batch_max_bytes",
					 (json_int_t)l->batch_max_bytes, "source", source_json(&l->src)));
	}
	for (size_t i = 0; i < c->n_saes; i++)
		json_array_append_new(saes, json_pack("{s:s, s:s}", "id", c->saes[i].id, "node",
						      c->saes[i].node));
	json_t *listen = json_pack("{s:s, s:s}", "kx", c->kx_listen, "admin", c->admin_listen);
	if (c->etsi014_listen[0])
		json_object_set_new(listen, "etsi014", json_string(c->etsi014_listen));
	json_t *root = json_pack("{s:s, s:s, s:s, s:b, s:s, s:I, s:o, s:o, s:o, s:o}", "id", c->id,
				 "db", c->db, "log_level", c->log_level[0] ? c->log_level : "info",
				 "ksa", c->ksa, "after_supply", c->preserve ? "preserve" : "delete",
				 "retention_s", (json_int_t)c->retention_s, "tls",
				 tls_json(&c->tls), "listen", listen, "links", links, "saes", saes);
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
	json_t *relay = json_pack("{s:s, s:b, s:s, s:I, s:I, s:I, s:I, s:I}", "mode",
				  rl->mode[0] ? rl->mode : "otp", "aes_fallback", rl->aes_fallback,
				  "key_source", rl->rng ? "rng" : "link", "batch_bytes",
				  (json_int_t)rl->batch_bytes, "low_bytes", (json_int_t)rl->low_bytes,
				  "high_bytes", (json_int_t)rl->high_bytes, "hold_s",
				  (json_int_t)rl->hold_s, "hold_mib", (json_int_t)rl->hold_mib);
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
		for (int k = 0; k < 2; k++)
			if (l->spool[k][0])
				json_object_set_new(json_array_get(sides, (size_t)k), "spool",
						    json_string(l->spool[k]));
		json_t *lo = json_pack("{s:s, s:I, s:I, s:f, s:f, s:o}", "id", l->id, "rate_bps",
				       (json_int_t)l->rate_bps, "unit_bits",
				       (json_int_t)l->unit_bits, "qber", l->qber, "qber_threshold",
				       l->qber_threshold, "sides", sides);
		if (l->etsi014[0])
			json_object_set_new(lo, "etsi014", json_string(l->etsi014));
		json_array_append_new(links, lo);
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
