/* ck.h - the frames of Ck/Mk, between a node and the QKDN controller and
 * manager (docs/protocol.md section 5): life-cycle records and their
 * acknowledgements, relay routes, the SAE access list and deletion orders.
 * Pure code over buffers, like frame.h. */
#ifndef QKM_PROTO_CK_H
#define QKM_PROTO_CK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/config.h"
#include "core/err.h"
#include "proto/frame.h"
#include "store/store.h"

/* Most records in one CTL_RECORDS frame (each at most ~1.3 KiB). */
#define QKM_CK_RECORDS_MAX 256

/* A frame of type (CTL_RECORDS_FROM or CTL_RECORDS_ACK) carrying SEQ. */
int qkm_ck_seq_frame(struct qkm_buf *b, uint16_t type, int64_t seq) QKM_MUST_CHECK;
/* SEQ of such a frame: 0, or QKM_EFORMAT (missing, negative). */
int qkm_ck_seq_parse(const struct qkm_frame *f, int64_t *seq /* OUT */) QKM_MUST_CHECK;

/* CTL_RECORDS with evs[0..n). */
int qkm_ck_records_frame(struct qkm_buf *b, const struct qkm_lc_event *evs, size_t n) QKM_MUST_CHECK;
/* Parses CTL_RECORDS into evs[0..*n), at most max; every record must have
 * every field, fitting its buffer, and seq must increase by one from record
 * to record. QKM_EFORMAT or QKM_ETOOBIG (more than max). */
int qkm_ck_records_parse(const struct qkm_frame *f, struct qkm_lc_event *evs, size_t max,
			 size_t *n /* OUT */) QKM_MUST_CHECK;

/* CTL_ROUTES: the whole route table of one node (replaces the old one). */
int qkm_ck_routes_frame(struct qkm_buf *b, const struct qkm_node_route *r, size_t n) QKM_MUST_CHECK;
/* Each route must have 2..QKM_MAX_PATH valid, distinct names ending at its
 * destination. QKM_EFORMAT or QKM_ETOOBIG. */
int qkm_ck_routes_parse(const struct qkm_frame *f, struct qkm_node_route *r, size_t max,
			size_t *n /* OUT */) QKM_MUST_CHECK;

/* CTL_SAES: the whole access list. */
int qkm_ck_saes_frame(struct qkm_buf *b, const struct qkm_sae_entry *e, size_t n) QKM_MUST_CHECK;
int qkm_ck_saes_parse(const struct qkm_frame *f, struct qkm_sae_entry *e, size_t max,
		      size_t *n /* OUT */) QKM_MUST_CHECK;

/* CTL_RELAY: one instruction for the relays to node `to`: a rate in
 * bytes/s (set_rate; kma/relay.h QKM_RELAY_RATE_*), or bytes to relay now. */
int qkm_ck_relay_frame(struct qkm_buf *b, const char *to, bool set_rate, uint64_t rate,
		       uint32_t bytes) QKM_MUST_CHECK;
int qkm_ck_relay_parse(const struct qkm_frame *f, char to[static QKM_NAME_MAX] /* OUT */,
		       bool *set_rate /* OUT */, uint64_t *rate /* OUT */,
		       uint32_t *bytes /* OUT */) QKM_MUST_CHECK;

/* CTL_STATUS: a JSON document (text, len bytes). */
int qkm_ck_json_frame(struct qkm_buf *b, uint16_t type, uint32_t req, const char *json,
		      size_t len) QKM_MUST_CHECK;
/* Points at the JSON of such a frame (not NUL-terminated). */
int qkm_ck_json_parse(const struct qkm_frame *f, const char **json /* OUT */,
		      size_t *len /* OUT */) QKM_MUST_CHECK;

#endif
