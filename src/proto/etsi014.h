/* etsi014.h - the JSON and query-string codec of ETSI GS QKD 014 v1.1.1
 * (the Ak interface between applications and the KSA): key requests
 * (enc_keys GET query / POST body), key-ID requests (dec_keys GET query /
 * POST body), and the Status, Key container and Error documents. Pure code
 * over buffers: every parser is strict (types, ranges, unknown fields) and
 * explains a refusal in err, which becomes the 400 Error message. Key bytes
 * are only ever written into secure buffers. docs/etsi014.md lists every
 * rule with its HTTP code. */
#ifndef QKM_PROTO_ETSI014_H
#define QKM_PROTO_ETSI014_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/err.h"
#include "core/id.h"

#define QKM_ETSI_MAX_SAES 16     /* additional_slave_SAE_IDs accepted at most */
#define QKM_ETSI_MAX_IDS 1024    /* key_IDs in one dec_keys request at most */

/* qkm's extensions, carried in extension_mandatory / extension_optional. */
enum qkm_etsi_level { QKM_LEVEL_ANY = 0, QKM_LEVEL_ITS, QKM_LEVEL_COMPUTATIONAL };
enum qkm_etsi_combination { QKM_COMB_NONE = 0, QKM_COMB_X25519 };

struct qkm_etsi_key_request {
	uint32_t number;                 /* 1 when absent */
	uint32_t size;                   /* bits; 0 when absent (= the status key_size) */
	size_t n_additional;
	char additional[QKM_ETSI_MAX_SAES][QKM_NAME_MAX];
	enum qkm_etsi_level level;       /* "qkm_security_level" */
	enum qkm_etsi_combination combination; /* "qkm_key_combination" */
};

/* Parses the query string of GET enc_keys ("number=2&size=256", may be NULL
 * or empty). Only number and size are allowed; each at most once; decimal
 * integers >= 1 that fit in 32 bits. Values are percent-decoded (%00 and
 * bad escapes refused); names are literal. 0 or QKM_EINVAL (err says why;
 * err may be NULL). On failure *out holds the defaults. */
int qkm_etsi_parse_enc_query(const char *query, struct qkm_etsi_key_request *out /* OUT */,
			     char *err, size_t errsz) QKM_MUST_CHECK;

/* Parses the JSON body of POST enc_keys: an object with optional "number"
 * (integer >= 1), "size" (integer >= 1), "additional_slave_SAE_IDs" (array
 * of SAE ID strings, at most QKM_ETSI_MAX_SAES, valid names, no duplicates),
 * "extension_mandatory" and "extension_optional" (arrays of objects). An
 * empty (or all-whitespace) body means all defaults. An unknown top-level field is refused. In
 * extension_mandatory every member must be one qkm understands
 * ("qkm_security_level": "its"|"computational", "qkm_key_combination":
 * "none"|"x25519") with a valid value, else refused naming it; in
 * extension_optional unknown members are ignored and known ones with bad
 * values refused. A body over 1 MiB is refused. 0 or QKM_EINVAL. */
int qkm_etsi_parse_key_request(const char *body, size_t len,
			       struct qkm_etsi_key_request *out /* OUT */, char *err,
			       size_t errsz) QKM_MUST_CHECK;

struct qkm_etsi_key_ids {
	size_t n;
	struct qkm_id ids[QKM_ETSI_MAX_IDS];
};

/* GET dec_keys query: "key_ID=<uuid>" (exactly one key_ID; nothing else).
 * 0 or QKM_EINVAL. */
int qkm_etsi_parse_dec_query(const char *query, struct qkm_etsi_key_ids *out /* OUT */,
			     char *err, size_t errsz) QKM_MUST_CHECK;
/* POST dec_keys body: {"key_IDs": [{"key_ID": "<uuid>"}, ...]} with 1 to
 * QKM_ETSI_MAX_IDS entries, no duplicates; "key_ID_extension" and
 * "key_IDs_extension" are accepted and ignored. 0 or QKM_EINVAL. */
int qkm_etsi_parse_key_ids(const char *body, size_t len, struct qkm_etsi_key_ids *out /* OUT */,
			   char *err, size_t errsz) QKM_MUST_CHECK;

struct qkm_etsi_status {
	char source_KME_ID[QKM_NAME_MAX];
	char target_KME_ID[QKM_NAME_MAX];
	char master_SAE_ID[QKM_NAME_MAX];
	char slave_SAE_ID[QKM_NAME_MAX];
	uint32_t key_size;
	uint64_t stored_key_count;
	uint64_t max_key_count;
	uint32_t max_key_per_request;
	uint32_t max_key_size;
	uint32_t min_key_size;
	uint32_t max_SAE_ID_count;
};

/* Each returns a malloc'd NUL-terminated JSON text, or NULL. */
char *qkm_etsi_status_json(const struct qkm_etsi_status *s);
/* {"message": message} plus "details": [{"reason": detail}] when detail. */
char *qkm_etsi_error_json(const char *message, const char *detail);

/* Appends the Key container {"keys": [{"key_ID": "<uuid>", "key": "<base64>"}, ...]}
 * to out, which must be a secure buffer (it holds key material). ids[i] and
 * keys[i] (lens[i] bytes) for i < n. 0, QKM_EINVAL if out is not secure, or
 * the buffer's error; on error out is as it was (nothing partial is left). */
int qkm_etsi_keys_json(struct qkm_buf *out, size_t n, const struct qkm_id *ids,
		       const uint8_t *const *keys, const size_t *lens) QKM_MUST_CHECK;
/* The same for n keys of key_len bytes each, back to back at run. */
int qkm_etsi_keys_json_run(struct qkm_buf *out, size_t n, const struct qkm_id *ids,
			   const uint8_t *run, size_t key_len) QKM_MUST_CHECK;
/* The size of that Key container: a buffer maximum that always fits it. */
size_t qkm_etsi_keys_json_size(size_t n, size_t key_len);

/* ---- routing and the client side (a node reading a QKD device's key API) --- */

/* /api/v1/keys/{SAE_ID}/{status|enc_keys|dec_keys}: 0 with sae and what
 * set, or the HTTP status to answer (404, 400) with *msg saying why. */
int qkm_etsi_route(const char *path, char sae[static QKM_NAME_MAX], char what[static 16],
		   const char **msg);

/* Parses a Status document (as qkm_etsi_status_json writes it; unknown
 * members, such as a device's extensions, are ignored). 0 or QKM_EINVAL. */
int qkm_etsi_parse_status(const char *body, size_t len, struct qkm_etsi_status *out /* OUT */,
			  char *err, size_t errsz) QKM_MUST_CHECK;

/* A Key container as a client reads it: key i has ID ids[i] and is
 * len[i] bytes at data.p + off[i]. data is a secure buffer: the key bytes
 * (and their base64) never leave the secure heap. */
struct qkm_etsi_keyset {
	size_t n;
	struct qkm_id ids[QKM_ETSI_MAX_IDS];
	size_t off[QKM_ETSI_MAX_IDS], len[QKM_ETSI_MAX_IDS];
	struct qkm_buf data;
};
void qkm_etsi_keyset_init(struct qkm_etsi_keyset *ks);
/* Wipes and frees the key bytes. */
void qkm_etsi_keyset_fini(struct qkm_etsi_keyset *ks);
/* Parses a Key container {"keys": [{"key_ID": UUID, "key": BASE64}, ...]}
 * into ks (OUT; reset first). Read by hand, not with jansson, so the key
 * bytes go only into ks->data. At most QKM_ETSI_MAX_IDS keys, each with
 * exactly one canonical UUID key_ID and one non-empty base64 key; other
 * members (key_ID_extension, key_extension, key_container_extension, any
 * other a device adds) are skipped whatever their JSON value (nesting at
 * most 32 deep). A body that is not one JSON object, or has data after it,
 * is refused. 0 or QKM_EINVAL (err says why; ks then holds no key). */
int qkm_etsi_parse_keys(const char *body, size_t len, struct qkm_etsi_keyset *ks, char *err,
			size_t errsz) QKM_MUST_CHECK;

/* Request bodies a client sends: POST enc_keys {"number": N, "size": S}
 * and POST dec_keys {"key_IDs": [{"key_ID": UUID}, ...]}. malloc'd
 * NUL-terminated text (no key material), or NULL. */
char *qkm_etsi_enc_body(uint32_t number, uint32_t size);
char *qkm_etsi_dec_body(const struct qkm_id *ids, size_t n);

#endif
