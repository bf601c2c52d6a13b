/* keyfile_json.h - the JSON view of a key file (core/keyfile.h) for APIs and
 * tools: one object whose member names are Table 1's items in snake_case
 * (docs/key-file.md). Strict like the binary decoder: unknown members, wrong
 * types and non-canonical spellings are refused, so JSON -> struct -> JSON is
 * exact. Time stamps travel as RFC 3339 UTC strings with microseconds: the
 * view truncates the struct's nanoseconds to microseconds (the binary
 * encoding is exact), and a time stamp below 1 us, which would read as 0 =
 * absent, is omitted. R-FMT-1, R-FMT-2. */
#ifndef QKM_PROTO_KEYFILE_JSON_H
#define QKM_PROTO_KEYFILE_JSON_H

#include <jansson.h>
#include <stdbool.h>

#include "core/keyfile.h"

/* Builds the JSON view of kf into *out (a new reference the caller owns).
 * with_data: include "key_data" (base64) when kf carries data; note that the
 * key bytes then live in jansson's ordinary heap until the object is freed.
 * Returns 0, QKM_EINVAL / QKM_EMISMATCH if kf fails qkm_keyfile_check(), or
 * QKM_ENOMEM; on error *out is NULL. */
int qkm_keyfile_to_json(const struct qkm_keyfile *kf, bool with_data,
			json_t **out /* OUT */) QKM_MUST_CHECK;

/* Reads the JSON view j into kf (OUT, initialised here); key data goes
 * straight into a struct qkm_secret. Returns 0, QKM_EFORMAT (unknown member,
 * wrong type or spelling, missing mandatory field, key_length != 8 * data
 * length), QKM_EVERSION ("version" is not 1), QKM_EMISMATCH (hash_value is
 * not the SHA-256 of key_data), QKM_ETOOBIG or QKM_ENOMEM; on error kf holds
 * nothing that needs freeing. If err_field is non-NULL it is set on error to
 * the offending member's name: a static string, or for an unknown member the
 * key inside j (valid while j lives). Load the text with
 * JSON_REJECT_DUPLICATES so a repeated member is refused too. */
int qkm_keyfile_from_json(const json_t *j, struct qkm_keyfile *kf /* OUT */,
			  const char **err_field /* OUT */) QKM_MUST_CHECK;

#endif
