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
