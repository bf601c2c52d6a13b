/* kme.h - the key API of one simulated QKD module pair, as a QKD device
 * exposes it to its SAEs: ETSI GS QKD 014 Status, enc_keys and dec_keys
 * (R-ACQ-5, the device a node's etsi014 key source reads). The master SAE
 * takes keys with enc_keys; the keys it took wait for the slave SAE, which
 * fetches each once with dec_keys by key_ID. Both directions are bounded:
 * keys wait for the master up to max_bytes (the caller stops producing
 * beyond), and for the slave up to max_bytes (the oldest are dropped).
 *
 * key_IDs: each QKD-key the pair produces keeps its simulator ID
 * ("<link>.<sequence>") inside the simulator; on the API it is the UUID
 * qkm_kme_uuid() derives from it (version 8, RFC 9562: the first 16 bytes
 * of SHA-256("qkm-sim-kme:" ID), version and variant bits set), so the
 * mapping is deterministic and the same at both ends.
 *
 * Pure: a request in, a status code and a document out (the HTTP server
 * is sim_io.c's); key bytes only in secure memory. */
#ifndef QKM_SIM_KME_H
#define QKM_SIM_KME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/err.h"
#include "core/id.h"
#include "core/secret.h"

#define QKM_KME_MAX_PER_REQUEST 1024

struct qkm_kme;

struct qkm_kme_cfg {
	char master_sae[QKM_NAME_MAX], slave_sae[QKM_NAME_MAX]; /* the SAEs' certificate CNs */
	char master_kme[QKM_NAME_MAX], slave_kme[QKM_NAME_MAX]; /* the modules' IDs */
	uint32_t key_bytes;  /* the device's only key size */
	size_t max_bytes;    /* per direction (above) */
};

/* NULL when out of memory. */
struct qkm_kme *qkm_kme_new(const struct qkm_kme_cfg *cfg);
void qkm_kme_free(struct qkm_kme *k);

/* The key_ID of QKD-key qkd_id (above). */
void qkm_kme_uuid(const char *qkd_id, struct qkm_id *out /* OUT */);

/* One QKD-key of the pair: m is the master's module's copy, s the slave's
 * (equal unless a fault made them differ; NULL when the slave's module lost
 * it), both key_bytes long and copied. 0; QKM_ETOOBIG when keys waiting for
 * the master fill max_bytes (nothing added: the pair stops producing);
 * QKM_EINVAL for a wrong length; QKM_ENOMEM. */
int qkm_kme_add(struct qkm_kme *k, const char *qkd_id, const struct qkm_secret *m,
		const struct qkm_secret *s) QKM_MUST_CHECK;

/* True while keys waiting for the master leave no room for another. */
bool qkm_kme_full(const struct qkm_kme *k);
/* Keys waiting for the master, and for the slave. */
size_t qkm_kme_for_master(const struct qkm_kme *k);
size_t qkm_kme_for_slave(const struct qkm_kme *k);

/* Answers one request: caller is the CN of the client's verified
 * certificate; method "GET" or "POST"; path, query (may be NULL) and body
 * as received. Writes the document (Status, Key container or Error) into
 * out, a secure buffer, and returns the HTTP status: 200; 400 (malformed,
 * a size other than the device's, unknown key_IDs: nothing given out);
 * 401 (not this pair's master or slave, or the wrong one for the call);
 * 404; 405; 503 (fewer keys waiting than asked for, or out of memory). */
int qkm_kme_request(struct qkm_kme *k, const char *caller, const char *method, const char *path,
		    const char *query, const char *body, size_t len, struct qkm_buf *out);

#endif
