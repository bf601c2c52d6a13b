/* etsi014.c - the ETSI GS QKD 014 v1.1.1 codec (etsi014.h): strict parsers
 * for the enc_keys/dec_keys queries and bodies, and the Status, Error and
 * Key container documents. Owns spelling, types and ranges; limits that come
 * from configuration (size a multiple of 8, max_key_per_request, ...) are
 * the service's. Key bytes never enter jansson: the Key container is
 * written by hand into the caller's secure buffer. */
#include "proto/etsi014.h"
#include "core/secret.h"

#include <jansson.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BODY_MAX (1u << 20) /* a larger request body is refused unread */
#define QVAL_MAX 64         /* longest decoded query value (a UUID is 36) */
#define QUOTE_MAX 48        /* longest piece of input echoed in a message */

/* --- errors --------------------------------------------------------------- */

static int fail(char *err, size_t errsz, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static int fail(char *err, size_t errsz, const char *fmt, ...)
{
	if (err && errsz) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(err, errsz, fmt, ap);
		va_end(ap);
	}
	return QKM_EINVAL;
}

/* Copies at most QUOTE_MAX bytes of s[0..n) into out, printable ASCII only
 * (anything else becomes '?'), so input echoed into a message can never
 * break the Error document's UTF-8 or a log line. */
static const char *quote(char out[static QUOTE_MAX + 4], const char *s, size_t n)
{
	size_t i = 0;
	for (; i < n && i < QUOTE_MAX; i++)
		out[i] = (char)(s[i] >= 0x20 && s[i] < 0x7f ? s[i] : '?');
	if (i < n) {
		memcpy(out + i, "...", 3);
		i += 3;
	}
	out[i] = 0;
	return out;
}

/* --- integers ------------------------------------------------------------- */

/* A JSON integer 1..UINT32_MAX (never a real, string, boolean or null). */
static int json_u32(json_t *v, const char *name, uint32_t *out, char *err, size_t errsz)
{
	if (!json_is_integer(v) || json_integer_value(v) < 1)
		return fail(err, errsz, "%s must be a positive integer", name);
	if (json_integer_value(v) > (json_int_t)UINT32_MAX)
		return fail(err, errsz, "%s must be at most %lu", name, (unsigned long)UINT32_MAX);
	*out = (uint32_t)json_integer_value(v);
	return 0;
}

/* A decimal query value 1..UINT32_MAX: digits only (no sign, no space). */
static int query_u32(const char *s, const char *name, uint32_t *out, char *err, size_t errsz)
{
	uint64_t v = 0;
	for (const char *p = s; *p; p++) {
		if (*p < '0' || *p > '9')
			return fail(err, errsz, "%s must be a positive integer", name);
		v = v * 10 + (uint64_t)(*p - '0');
		if (v > UINT32_MAX)
			return fail(err, errsz, "%s must be at most %lu", name,
				    (unsigned long)UINT32_MAX);
	}
	if (v == 0)
		return fail(err, errsz, "%s must be a positive integer", name);
	*out = (uint32_t)v;
	return 0;
}

/* --- UUIDs ---------------------------------------------------------------- */

/* Only the canonical 8-4-4-4-12 form (either case); qkm_id_parse alone would
 * also take 32 bare hex digits, which ETSI 014 key_IDs never are. */
static int uuid_get(const char *s, size_t n, struct qkm_id *id)
{
	if (n != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-')
		return QKM_EFORMAT;
	return qkm_id_parse(s, id);
}

/* --- query strings -------------------------------------------------------- */

struct qparam {
	const char *name;
	char val[QVAL_MAX + 1]; /* decoded, NUL-terminated */
	bool seen;
};

/* Percent-decodes s[0..n) into out (QVAL_MAX + 1 bytes). '+' is kept as is
 * (the value checks refuse it). */
static int pct_decode(const char *name, const char *s, size_t n, char *out, char *err,
		      size_t errsz)
{
	size_t j = 0;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (c == '%') {
			/* both hex digits must exist: i + 1 and i + 2 < n */
			int hi = i + 2 < n ? qkm_hexval(s[i + 1]) : -1;
			int lo = i + 2 < n ? qkm_hexval(s[i + 2]) : -1;
			if (hi < 0 || lo < 0)
				return fail(err, errsz, "%s has an invalid percent escape", name);
			c = (char)(hi << 4 | lo);
			if (c == 0)
				return fail(err, errsz, "%s must not contain %%00", name);
			i += 2;
		}
		if (j == QVAL_MAX)
			return fail(err, errsz, "%s is too long", name);
		out[j++] = c;
	}
	out[j] = 0;
	if (j == 0)
		return fail(err, errsz, "%s must not be empty", name);
	return 0;
}

/* Splits query on '&' into name=value pairs; each name must be one of ps[]
 * and appear at most once. Names are compared literally (not decoded). */
static int query_split(const char *q, struct qparam *ps, size_t np, char *err, size_t errsz)
{
	char qb[QUOTE_MAX + 4];
	if (!q || !*q)
		return 0;
	for (const char *p = q;;) {
		const char *end = strchr(p, '&');
		size_t seg = end ? (size_t)(end - p) : strlen(p);
		if (seg == 0)
			return fail(err, errsz, "empty query parameter");
		const char *eq = memchr(p, '=', seg);
		if (!eq)
			return fail(err, errsz, "query parameter \"%s\" has no value",
				    quote(qb, p, seg));
		size_t nlen = (size_t)(eq - p);
		struct qparam *hit = NULL;
		for (size_t i = 0; i < np; i++)
			if (strlen(ps[i].name) == nlen && memcmp(ps[i].name, p, nlen) == 0)
				hit = &ps[i];
		if (!hit)
			return fail(err, errsz, "unknown query parameter \"%s\"",
				    quote(qb, p, nlen));
		if (hit->seen)
			return fail(err, errsz, "query parameter %s given twice", hit->name);
		hit->seen = true;
		int rc = pct_decode(hit->name, eq + 1, seg - nlen - 1, hit->val, err, errsz);
		if (rc)
			return rc;
		if (!end)
			return 0;
		p = end + 1;
	}
}

int qkm_etsi_parse_enc_query(const char *query, struct qkm_etsi_key_request *out, char *err,
			     size_t errsz)
{
	struct qparam ps[2] = {{.name = "number"}, {.name = "size"}};
	memset(out, 0, sizeof(*out));
	out->number = 1;
	int rc = query_split(query, ps, 2, err, errsz);
	if (rc == 0 && ps[0].seen)
		rc = query_u32(ps[0].val, "number", &out->number, err, errsz);
	if (rc == 0 && ps[1].seen)
		rc = query_u32(ps[1].val, "size", &out->size, err, errsz);
	if (rc) {
		memset(out, 0, sizeof(*out));
		out->number = 1;
	}
	return rc;
}

int qkm_etsi_parse_dec_query(const char *query, struct qkm_etsi_key_ids *out, char *err,
			     size_t errsz)
{
	struct qparam ps[1] = {{.name = "key_ID"}};
	out->n = 0;
	int rc = query_split(query, ps, 1, err, errsz);
	if (rc)
		return rc;
	if (!ps[0].seen)
		return fail(err, errsz, "key_ID is required");
	if (uuid_get(ps[0].val, strlen(ps[0].val), &out->ids[0]))
		return fail(err, errsz, "key_ID must be a UUID (8-4-4-4-12 hex digits)");
	out->n = 1;
	return 0;
}

/* --- JSON bodies ---------------------------------------------------------- */

static bool all_space(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\n')
			return false;
	return true;
}

/* Loads a body that must be one JSON object; *root is NULL for an empty
 * (or all-whitespace) body. */
static int load_object(const char *body, size_t len, json_t **root, char *err, size_t errsz)
{
	char qb[QUOTE_MAX + 4];
	*root = NULL;
	if (len > BODY_MAX)
		return fail(err, errsz, "request body larger than 1 MiB");
	if (len && !body)
		return fail(err, errsz, "missing request body");
	if (len == 0 || all_space(body, len))
		return 0;
	json_error_t je;
	json_t *j = json_loadb(body, len, JSON_REJECT_DUPLICATES, &je);
	if (!j)
		return fail(err, errsz, "malformed JSON at line %d column %d: %s", je.line,
			    je.column, quote(qb, je.text, strlen(je.text)));
	if (!json_is_object(j)) {
		json_decref(j);
		return fail(err, errsz, "request body must be a JSON object");
	}
	*root = j;
	return 0;
}

/* Sets the bit of a qkm extension once across both extension arrays. */
enum { EXT_LEVEL = 1, EXT_COMB = 2 };

static int parse_ext(json_t *arr, const char *where, unsigned *seen,
		     struct qkm_etsi_key_request *out, char *err, size_t errsz)
{
	char qb[QUOTE_MAX + 4];
	bool mandatory = strcmp(where, "extension_mandatory") == 0;
	if (!json_is_array(arr))
		return fail(err, errsz, "%s must be an array of objects", where);
	size_t i;
	json_t *o;
	json_array_foreach(arr, i, o) {
		if (!json_is_object(o))
			return fail(err, errsz, "%s must be an array of objects", where);
		const char *k;
		json_t *v;
		json_object_foreach(o, k, v) {
			const char *s = json_is_string(v) ? json_string_value(v) : "";
			if (strcmp(k, "qkm_security_level") == 0) {
				if (*seen & EXT_LEVEL)
					return fail(err, errsz, "%s given twice", k);
				*seen |= EXT_LEVEL;
				if (strcmp(s, "its") == 0)
					out->level = QKM_LEVEL_ITS;
				else if (strcmp(s, "computational") == 0)
					out->level = QKM_LEVEL_COMPUTATIONAL;
				else
					return fail(err, errsz,
						    "%s: %s must be \"its\" or \"computational\"",
						    where, k);
			} else if (strcmp(k, "qkm_key_combination") == 0) {
				if (*seen & EXT_COMB)
					return fail(err, errsz, "%s given twice", k);
				*seen |= EXT_COMB;
				if (strcmp(s, "none") == 0)
					out->combination = QKM_COMB_NONE;
				else if (strcmp(s, "x25519") == 0)
					out->combination = QKM_COMB_X25519;
				else
					return fail(err, errsz,
						    "%s: %s must be \"none\" or \"x25519\"", where,
						    k);
			} else if (mandatory) {
				return fail(err, errsz, "unsupported mandatory extension \"%s\"",
					    quote(qb, k, strlen(k)));
			}
			/* an unknown optional extension is ignored (ETSI 014 5.4) */
		}
	}
	return 0;
}

static int parse_saes(json_t *arr, struct qkm_etsi_key_request *out, char *err,
		      size_t errsz)
{
	char qb[QUOTE_MAX + 4];
	if (!json_is_array(arr))
		return fail(err, errsz, "additional_slave_SAE_IDs must be an array of strings");
	if (json_array_size(arr) > QKM_ETSI_MAX_SAES)
		return fail(err, errsz, "additional_slave_SAE_IDs has more than %d entries",
			    QKM_ETSI_MAX_SAES);
	size_t i;
	json_t *v;
	json_array_foreach(arr, i, v) {
		if (!json_is_string(v))
			return fail(err, errsz,
				    "additional_slave_SAE_IDs must be an array of strings");
		const char *s = json_string_value(v);
		size_t n = json_string_length(v);
		if (n >= QKM_NAME_MAX || strlen(s) != n || !qkm_name_valid(s))
			return fail(err, errsz,
				    "additional_slave_SAE_IDs: \"%s\" is not a valid SAE ID",
				    quote(qb, s, n));
		for (size_t j = 0; j < out->n_additional; j++)
			if (strcmp(out->additional[j], s) == 0)
				return fail(err, errsz,
					    "additional_slave_SAE_IDs: \"%s\" given twice", s);
		memcpy(out->additional[out->n_additional++], s, n + 1);
	}
	return 0;
}

static int key_request(json_t *root, struct qkm_etsi_key_request *out, char *err,
		       size_t errsz)
{
	char qb[QUOTE_MAX + 4];
	unsigned seen = 0;
	const char *k;
	json_t *v;
	int rc = 0;
	json_object_foreach(root, k, v) {
		if (strcmp(k, "number") == 0)
			rc = json_u32(v, k, &out->number, err, errsz);
		else if (strcmp(k, "size") == 0)
			rc = json_u32(v, k, &out->size, err, errsz);
		else if (strcmp(k, "additional_slave_SAE_IDs") == 0)
			rc = parse_saes(v, out, err, errsz);
		else if (strcmp(k, "extension_mandatory") == 0 ||
			 strcmp(k, "extension_optional") == 0)
			rc = parse_ext(v, k, &seen, out, err, errsz);
		else
			rc = fail(err, errsz, "unknown field \"%s\"", quote(qb, k, strlen(k)));
		if (rc)
			return rc;
	}
	return 0;
}

int qkm_etsi_parse_key_request(const char *body, size_t len, struct qkm_etsi_key_request *out,
			       char *err, size_t errsz)
{
	json_t *root;
	memset(out, 0, sizeof(*out));
	out->number = 1;
	int rc = load_object(body, len, &root, err, errsz);
	if (rc == 0 && root)
		rc = key_request(root, out, err, errsz);
	json_decref(root);
	if (rc) {
		memset(out, 0, sizeof(*out));
		out->number = 1;
	}
	return rc;
}

static int id_cmp(const void *a, const void *b) { return memcmp(a, b, QKM_ID_LEN); }

/* Refuses a repeated key ID: sort a copy, compare neighbours (n log n, so a
 * 1024-entry request costs nothing; the copy is 16 KiB of stack). */
static int check_unique(const struct qkm_etsi_key_ids *out, char *err, size_t errsz)
{
	struct qkm_id s[QKM_ETSI_MAX_IDS];
	if (out->n < 2)
		return 0;
	memcpy(s, out->ids, out->n * sizeof(s[0]));
	qsort(s, out->n, sizeof(s[0]), id_cmp);
	for (size_t i = 1; i < out->n; i++) {
		if (qkm_id_eq(&s[i - 1], &s[i])) {
			char u[37];
			qkm_id_uuid_str(&s[i], u);
			return fail(err, errsz, "key_ID %s given twice", u);
		}
	}
	return 0;
}

static int key_ids(json_t *root, struct qkm_etsi_key_ids *out, char *err, size_t errsz)
{
	char qb[QUOTE_MAX + 4];
	json_t *arr = NULL;
	const char *k;
	json_t *v;
	json_object_foreach(root, k, v) {
		if (strcmp(k, "key_IDs") == 0)
			arr = v;
		else if (strcmp(k, "key_IDs_extension") == 0) {
			if (!json_is_object(v))
				return fail(err, errsz, "key_IDs_extension must be an object");
		} else
			return fail(err, errsz, "unknown field \"%s\"", quote(qb, k, strlen(k)));
	}
	if (!arr)
		return fail(err, errsz, "key_IDs is required");
	if (!json_is_array(arr))
		return fail(err, errsz, "key_IDs must be an array of objects");
	if (json_array_size(arr) == 0)
		return fail(err, errsz, "key_IDs must not be empty");
	if (json_array_size(arr) > QKM_ETSI_MAX_IDS)
		return fail(err, errsz, "key_IDs has more than %d entries", QKM_ETSI_MAX_IDS);
	size_t i;
	json_t *o;
	json_array_foreach(arr, i, o) {
		if (!json_is_object(o))
			return fail(err, errsz, "key_IDs must be an array of objects");
		json_t *id = NULL;
		json_object_foreach(o, k, v) {
			if (strcmp(k, "key_ID") == 0)
				id = v;
			else if (strcmp(k, "key_ID_extension") == 0) {
				if (!json_is_object(v))
					return fail(err, errsz,
						    "key_ID_extension must be an object");
			} else
				return fail(err, errsz, "key_IDs[%zu]: unknown field \"%s\"", i,
					    quote(qb, k, strlen(k)));
		}
		if (!id)
			return fail(err, errsz, "key_IDs[%zu]: key_ID is required", i);
		if (!json_is_string(id) ||
		    uuid_get(json_string_value(id), json_string_length(id), &out->ids[i]))
			return fail(err, errsz,
				    "key_IDs[%zu]: key_ID must be a UUID (8-4-4-4-12 hex digits)",
				    i);
		out->n = i + 1;
	}
	return check_unique(out, err, errsz);
}

int qkm_etsi_parse_key_ids(const char *body, size_t len, struct qkm_etsi_key_ids *out, char *err,
			   size_t errsz)
{
	json_t *root;
	out->n = 0;
	int rc = load_object(body, len, &root, err, errsz);
	if (rc == 0 && !root)
		rc = fail(err, errsz, "key_IDs is required");
	if (rc == 0)
		rc = key_ids(root, out, err, errsz);
	json_decref(root);
	if (rc)
		out->n = 0;
	return rc;
}

/* --- documents ------------------------------------------------------------ */

static char *dump(json_t *j)
{
	if (!j)
		return NULL;
	char *s = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_decref(j);
	return s;
}

static json_int_t clamp64(uint64_t v) { return v > INT64_MAX ? INT64_MAX : (json_int_t)v; }

char *qkm_etsi_status_json(const struct qkm_etsi_status *s)
{
	return dump(json_pack(
		"{s:s#, s:s#, s:s#, s:s#, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "source_KME_ID",
		s->source_KME_ID, (int)strnlen(s->source_KME_ID, QKM_NAME_MAX), "target_KME_ID",
		s->target_KME_ID, (int)strnlen(s->target_KME_ID, QKM_NAME_MAX), "master_SAE_ID",
		s->master_SAE_ID, (int)strnlen(s->master_SAE_ID, QKM_NAME_MAX), "slave_SAE_ID",
		s->slave_SAE_ID, (int)strnlen(s->slave_SAE_ID, QKM_NAME_MAX), "key_size",
		(json_int_t)s->key_size, "stored_key_count", clamp64(s->stored_key_count),
		"max_key_count", clamp64(s->max_key_count), "max_key_per_request",
		(json_int_t)s->max_key_per_request, "max_key_size", (json_int_t)s->max_key_size,
		"min_key_size", (json_int_t)s->min_key_size, "max_SAE_ID_count",
		(json_int_t)s->max_SAE_ID_count));
}

/* A JSON string of s; text that is not valid UTF-8 (a message cut by its
 * buffer inside a character) is sent with those bytes as '?'. */
static json_t *safe_string(const char *s)
{
	json_t *j = json_string(s);
	if (j)
		return j;
	size_t n = strlen(s);
	char *c = malloc(n + 1);
	if (!c)
		return NULL;
	for (size_t i = 0; i < n; i++)
		c[i] = (char)(s[i] >= 0x20 && s[i] < 0x7f ? s[i] : '?');
	c[n] = 0;
	j = json_string(c);
	free(c);
	return j;
}

char *qkm_etsi_error_json(const char *message, const char *detail)
{
	json_t *m = safe_string(message ? message : "error");
	if (!detail)
		return dump(json_pack("{s:o}", "message", m));
	json_t *d = safe_string(detail);
	return dump(json_pack("{s:o, s:[{s:o}]}", "message", m, "details", "reason", d));
}

static int put_str(struct qkm_buf *b, const char *s) { return qkm_buf_put(b, s, strlen(s)); }

/* Base64 (RFC 4648, no line breaks) straight into b: the encoded key exists
 * only in the secure buffer. Chunks are multiples of 3 bytes so they join
 * without padding; EVP_EncodeBlock also writes a NUL, hence the +1 (always
 * overwritten by the closing quote that follows). */
#define B64_CHUNK ((size_t)3 * 16384)
static int put_b64(struct qkm_buf *b, const uint8_t *p, size_t n)
{
	while (n) {
		size_t chunk = n > B64_CHUNK ? B64_CHUNK : n, enc = 4 * ((chunk + 2) / 3);
		int rc = qkm_buf_reserve(b, enc + 1);
		if (rc)
			return rc;
		if (EVP_EncodeBlock(b->p + b->len, p, (int)chunk) != (int)enc)
			return QKM_ECRYPTO;
		b->len += enc;
		p += chunk;
		n -= chunk;
	}
	return 0;
}

/* Key i is keys[i] (lens[i] bytes), or with keys NULL the i-th key_len
 * bytes of run. */
static int keys_json(struct qkm_buf *out, size_t n, const struct qkm_id *ids,
		     const uint8_t *const *keys, const size_t *lens, const uint8_t *run,
		     size_t key_len)
{
	if (!out->secure || (n && (!ids || (keys ? !lens : !run))))
		return QKM_EINVAL;
	size_t start = out->len;
	int rc = put_str(out, "{\"keys\":[");
	for (size_t i = 0; i < n && !rc; i++) {
		char u[37];
		const uint8_t *key = keys ? keys[i] : run + i * key_len;
		size_t len = keys ? lens[i] : key_len;
		if (len && !key) {
			rc = QKM_EINVAL;
			break;
		}
		qkm_id_uuid_str(&ids[i], u);
		rc = put_str(out, i ? ",{\"key_ID\":\"" : "{\"key_ID\":\"");
		if (!rc)
			rc = put_str(out, u);
		if (!rc)
			rc = put_str(out, "\",\"key\":\"");
		if (!rc)
			rc = put_b64(out, key, len);
		if (!rc)
			rc = put_str(out, "\"}");
	}
	if (!rc)
		rc = put_str(out, "]}");
	if (rc) {
		/* leave no partial document, and no key bytes, behind */
		if (out->len > start)
			qkm_cleanse(out->p + start, out->len - start);
		out->len = start;
	}
	return rc;
}

int qkm_etsi_keys_json(struct qkm_buf *out, size_t n, const struct qkm_id *ids,
		       const uint8_t *const *keys, const size_t *lens)
{
	if (n && !keys)
		return QKM_EINVAL;
	return keys_json(out, n, ids, keys, lens, NULL, 0);
}

int qkm_etsi_keys_json_run(struct qkm_buf *out, size_t n, const struct qkm_id *ids,
			   const uint8_t *run, size_t key_len)
{
	return keys_json(out, n, ids, NULL, NULL, run, key_len);
}

size_t qkm_etsi_keys_json_size(size_t n, size_t key_len)
{
	/* {"keys":[ ... ]} and per key {"key_ID":"<36>","key":"<base64>"}, */
	return 12 + n * (36 + 4 * ((key_len + 2) / 3) + 24);
}

/* --- routing ---------------------------------------------------------------- */

int qkm_etsi_route(const char *path, char sae[static QKM_NAME_MAX], char what[static 16],
		   const char **msg)
{
	static const char pre[] = "/api/v1/keys/";
	if (strncmp(path, pre, sizeof(pre) - 1) != 0) {
		*msg = "no such resource; the API is under /api/v1/keys/";
		return 404;
	}
	const char *id = path + sizeof(pre) - 1, *slash = strchr(id, '/');
	if (!slash || (size_t)(slash - id) >= QKM_NAME_MAX || strlen(slash + 1) >= 16) {
		*msg = "no such resource";
		return 404;
	}
	memcpy(sae, id, (size_t)(slash - id));
	sae[slash - id] = 0;
	snprintf(what, 16, "%s", slash + 1);
	if (!qkm_name_valid(sae)) {
		*msg = "SAE ID in the path is not a valid SAE ID";
		return 400;
	}
	if (strcmp(what, "status") && strcmp(what, "enc_keys") && strcmp(what, "dec_keys")) {
		*msg = "no such resource (status, enc_keys or dec_keys)";
		return 404;
	}
	return 0;
}

/* --- the client side: Status ------------------------------------------------ */

static int status_name(json_t *root, const char *k, char out[static QKM_NAME_MAX], char *err,
		       size_t errsz)
{
	json_t *v = json_object_get(root, k);
	if (!json_is_string(v) || !qkm_name_valid(json_string_value(v)))
		return fail(err, errsz, "Status: %s must be a valid ID", k);
	snprintf(out, QKM_NAME_MAX, "%s", json_string_value(v));
	return 0;
}

static int status_num(json_t *root, const char *k, uint64_t max, uint64_t *out, char *err,
		      size_t errsz)
{
	json_t *v = json_object_get(root, k);
	if (!json_is_integer(v) || json_integer_value(v) < 0 ||
	    (uint64_t)json_integer_value(v) > max)
		return fail(err, errsz, "Status: %s must be an integer from 0 to %llu", k,
			    (unsigned long long)max);
	*out = (uint64_t)json_integer_value(v);
	return 0;
}

int qkm_etsi_parse_status(const char *body, size_t len, struct qkm_etsi_status *out, char *err,
			  size_t errsz)
{
	json_t *root = NULL;
	uint64_t v[7];
	memset(out, 0, sizeof(*out));
	int rc = load_object(body, len, &root, err, errsz);
	if (!rc && !root)
		rc = fail(err, errsz, "Status: empty body");
	if (!rc)
		rc = status_name(root, "source_KME_ID", out->source_KME_ID, err, errsz);
	if (!rc)
		rc = status_name(root, "target_KME_ID", out->target_KME_ID, err, errsz);
	if (!rc)
		rc = status_name(root, "master_SAE_ID", out->master_SAE_ID, err, errsz);
	if (!rc)
		rc = status_name(root, "slave_SAE_ID", out->slave_SAE_ID, err, errsz);
	static const char *const nums[7] = {"key_size",     "stored_key_count",
					    "max_key_count", "max_key_per_request",
					    "max_key_size", "min_key_size", "max_SAE_ID_count"};
	for (int i = 0; !rc && i < 7; i++)
		rc = status_num(root, nums[i], i == 1 || i == 2 ? INT64_MAX : UINT32_MAX, &v[i],
				err, errsz);
	if (!rc) {
		out->key_size = (uint32_t)v[0];
		out->stored_key_count = v[1];
		out->max_key_count = v[2];
		out->max_key_per_request = (uint32_t)v[3];
		out->max_key_size = (uint32_t)v[4];
		out->min_key_size = (uint32_t)v[5];
		out->max_SAE_ID_count = (uint32_t)v[6];
	}
	json_decref(root);
	return rc;
}

/* --- the client side: the Key container, read by hand ---------------------- */

#define KC_DEPTH_MAX 32
#define KC_NAME_MAX 64
#define KC_KEY_B64_MAX (2u << 20) /* base64 of a key: a device's keys are far smaller */

struct jp {
	const char *p, *end;
	int depth;
};

static void jp_ws(struct jp *j)
{
	while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r'))
		j->p++;
}

static bool jp_lit(struct jp *j, char c)
{
	jp_ws(j);
	if (j->p < j->end && *j->p == c) {
		j->p++;
		return true;
	}
	return false;
}

/* A JSON string, its escapes decoded into out (NULL: skipped). A \u
 * escape above U+007F is refused when kept: what is kept (member names,
 * UUIDs, base64) is ASCII. */
static int jp_string(struct jp *j, struct qkm_buf *out)
{
	jp_ws(j);
	if (j->p >= j->end || *j->p != '"')
		return QKM_EINVAL;
	j->p++;
	while (j->p < j->end) {
		unsigned char c = (unsigned char)*j->p++;
		if (c == '"')
			return 0;
		if (c < 0x20)
			return QKM_EINVAL;
		if (c == '\\') {
			if (j->p >= j->end)
				return QKM_EINVAL;
			char e = *j->p++;
			static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
			const char *hit = e ? strchr(from, e) : NULL;
			if (hit) {
				c = (unsigned char)to[hit - from];
			} else if (e == 'u') {
				unsigned cp = 0;
				for (int i = 0; i < 4; i++) {
					int h = j->p < j->end ? qkm_hexval(*j->p++) : -1;
					if (h < 0)
						return QKM_EINVAL;
					cp = cp << 4 | (unsigned)h;
				}
				if (out && (cp == 0 || cp > 0x7f))
					return QKM_EINVAL;
				c = (unsigned char)cp;
			} else {
				return QKM_EINVAL;
			}
		}
		if (out) {
			int rc = qkm_buf_put_u8(out, c);
			if (rc)
				return rc;
		}
	}
	return QKM_EINVAL;
}

/* Skips one JSON value of any type. */
static int jp_skip(struct jp *j)
{
	jp_ws(j);
	if (j->p >= j->end)
		return QKM_EINVAL;
	char c = *j->p;
	if (c == '"')
		return jp_string(j, NULL);
	if (c == '{' || c == '[') {
		char close = c == '{' ? '}' : ']';
		if (++j->depth > KC_DEPTH_MAX)
			return QKM_EINVAL;
		j->p++;
		if (!jp_lit(j, close))
			for (;;) {
				if (c == '{' && (jp_string(j, NULL) || !jp_lit(j, ':')))
					return QKM_EINVAL;
				if (jp_skip(j))
					return QKM_EINVAL;
				if (jp_lit(j, ','))
					continue;
				if (jp_lit(j, close))
					break;
				return QKM_EINVAL;
			}
		j->depth--;
		return 0;
	}
	const char *s = j->p;
	while (j->p < j->end && *j->p && strchr("0123456789+-.eE", *j->p))
		j->p++;
	if (j->p > s)
		return (*s == '-' || (*s >= '0' && *s <= '9')) ? 0 : QKM_EINVAL;
	static const char *const words[] = {"true", "false", "null"};
	for (int i = 0; i < 3; i++) {
		size_t n = strlen(words[i]);
		if ((size_t)(j->end - j->p) >= n && memcmp(j->p, words[i], n) == 0) {
			j->p += n;
			return 0;
		}
	}
	return QKM_EINVAL;
}

/* A member name into name (KC_NAME_MAX bytes, NUL-terminated), then ':'. */
static int jp_name(struct jp *j, char name[static KC_NAME_MAX])
{
	struct qkm_buf b;
	qkm_buf_init(&b, KC_NAME_MAX - 1, false);
	int rc = jp_string(j, &b);
	if (!rc) {
		memcpy(name, b.p ? (const char *)b.p : "", b.len);
		name[b.len] = 0;
		if (memchr(name, 0, b.len) || !jp_lit(j, ':'))
			rc = QKM_EINVAL;
	}
	qkm_buf_fini(&b);
	return rc;
}

/* Standard base64 with padding from b64 into ks->data; *n (OUT) bytes. */
static int b64_into(struct qkm_etsi_keyset *ks, const struct qkm_buf *b64, size_t *n)
{
	size_t len = b64->len;
	if (len == 0 || len % 4)
		return QKM_EINVAL;
	size_t pad = (b64->p[len - 1] == '=') + (len > 1 && b64->p[len - 2] == '=');
	int rc = qkm_buf_reserve(&ks->data, len / 4 * 3);
	if (rc)
		return rc;
	int got = EVP_DecodeBlock(ks->data.p + ks->data.len, b64->p, (int)len);
	if (got < 0 || (size_t)got != len / 4 * 3 || (size_t)got <= pad) {
		qkm_cleanse(ks->data.p + ks->data.len, len / 4 * 3);
		return QKM_EINVAL;
	}
	*n = (size_t)got - pad;
	/* The padding's zero bytes past the key are wiped, not kept. */
	qkm_cleanse(ks->data.p + ks->data.len + *n, pad);
	ks->data.len += *n;
	return 0;
}

/* One {"key_ID": ..., "key": ...} into ks. */
static int kc_key(struct jp *j, struct qkm_etsi_keyset *ks, char *err, size_t errsz)
{
	char name[KC_NAME_MAX];
	bool have_id = false, have_key = false;
	size_t i = ks->n;
	int rc = 0;
	if (!jp_lit(j, '{'))
		return fail(err, errsz, "Key container: keys[%zu] is not an object", i);
	if (jp_lit(j, '}'))
		return fail(err, errsz, "Key container: keys[%zu] has no key_ID and key", i);
	for (;;) {
		if (jp_name(j, name))
			return fail(err, errsz, "Key container: malformed keys[%zu]", i);
		if (strcmp(name, "key_ID") == 0) {
			struct qkm_buf b;
			char u[37] = "";
			qkm_buf_init(&b, 36, false);
			rc = have_id || jp_string(j, &b);
			if (!rc && b.len == 36)
				memcpy(u, b.p, 36);
			rc = rc || uuid_get(u, b.len, &ks->ids[i]);
			qkm_buf_fini(&b);
			if (rc)
				return fail(err, errsz, "Key container: keys[%zu].key_ID must be one "
					    "UUID", i);
			have_id = true;
		} else if (strcmp(name, "key") == 0) {
			struct qkm_buf b;
			size_t n = 0;
			qkm_buf_init(&b, KC_KEY_B64_MAX, true);
			ks->off[i] = ks->data.len;
			rc = have_key || jp_string(j, &b) || b64_into(ks, &b, &n);
			qkm_buf_fini(&b);
			if (rc)
				return fail(err, errsz, "Key container: keys[%zu].key must be one "
					    "non-empty base64 key", i);
			ks->len[i] = n;
			have_key = true;
		} else if (jp_skip(j)) {
			return fail(err, errsz, "Key container: malformed keys[%zu]", i);
		}
		if (jp_lit(j, ','))
			continue;
		if (jp_lit(j, '}'))
			break;
		return fail(err, errsz, "Key container: malformed keys[%zu]", i);
	}
	if (!have_id || !have_key)
		return fail(err, errsz, "Key container: keys[%zu] lacks %s", i,
			    have_id ? "key" : "key_ID");
	ks->n++;
	return 0;
}

void qkm_etsi_keyset_init(struct qkm_etsi_keyset *ks)
{
	ks->n = 0;
	qkm_buf_init(&ks->data, (size_t)QKM_ETSI_MAX_IDS * ((size_t)KC_KEY_B64_MAX / 4 * 3), true);
}

void qkm_etsi_keyset_fini(struct qkm_etsi_keyset *ks)
{
	qkm_buf_fini(&ks->data);
	ks->n = 0;
}

int qkm_etsi_parse_keys(const char *body, size_t len, struct qkm_etsi_keyset *ks, char *err,
			size_t errsz)
{
	struct jp j = {body, body ? body + len : body, 0};
	char name[KC_NAME_MAX];
	bool have_keys = false;
	int rc = 0;
	ks->n = 0;
	qkm_buf_reset(&ks->data);
	if (!body || !jp_lit(&j, '{')) {
		rc = fail(err, errsz, "Key container: not a JSON object");
		goto out;
	}
	if (!jp_lit(&j, '}'))
		for (;;) {
			if (jp_name(&j, name)) {
				rc = fail(err, errsz, "Key container: malformed JSON");
				goto out;
			}
			if (strcmp(name, "keys") == 0) {
				if (have_keys || !jp_lit(&j, '[')) {
					rc = fail(err, errsz, "Key container: keys must be one array");
					goto out;
				}
				if (!jp_lit(&j, ']'))
					for (;;) {
						if (ks->n == QKM_ETSI_MAX_IDS) {
							rc = fail(err, errsz, "Key container: more than "
								  "%d keys", QKM_ETSI_MAX_IDS);
							goto out;
						}
						if ((rc = kc_key(&j, ks, err, errsz)))
							goto out;
						if (jp_lit(&j, ','))
							continue;
						if (jp_lit(&j, ']'))
							break;
						rc = fail(err, errsz, "Key container: malformed keys");
						goto out;
					}
				have_keys = true;
			} else if (jp_skip(&j)) {
				rc = fail(err, errsz, "Key container: malformed JSON");
				goto out;
			}
			if (jp_lit(&j, ','))
				continue;
			if (jp_lit(&j, '}'))
				break;
			rc = fail(err, errsz, "Key container: malformed JSON");
			goto out;
		}
	jp_ws(&j);
	if (j.p != j.end)
		rc = fail(err, errsz, "Key container: data after the object");
	else if (!have_keys)
		rc = fail(err, errsz, "Key container: no keys member");
out:
	if (rc) {
		qkm_buf_reset(&ks->data);
		ks->n = 0;
	}
	return rc;
}

char *qkm_etsi_enc_body(uint32_t number, uint32_t size)
{
	return dump(json_pack("{s:I, s:I}", "number", (json_int_t)number, "size",
			      (json_int_t)size));
}

char *qkm_etsi_dec_body(const struct qkm_id *ids, size_t n)
{
	json_t *arr = json_array();
	for (size_t i = 0; arr && i < n; i++) {
		char u[37];
		qkm_id_uuid_str(&ids[i], u);
		if (json_array_append_new(arr, json_pack("{s:s}", "key_ID", u))) {
			json_decref(arr);
			return NULL;
		}
	}
	return arr ? dump(json_pack("{s:o}", "key_IDs", arr)) : NULL;
}
