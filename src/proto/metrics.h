/* metrics.h - the Prometheus text exposition format (version 0.0.4) served
 * at /metrics on the node admin API and the controller API: a small writer
 * (families, samples with escaped labels, histograms) and a node's metrics
 * from its status and its ETSI 014 answers. Pure formatting; the families
 * are listed in docs/operations.md, "Metrics and health". */
#ifndef QKM_PROTO_METRICS_H
#define QKM_PROTO_METRICS_H

#include <stdint.h>

#include "core/buf.h"
#include "core/hist.h"
#include "core/id.h"
#include "proto/status_json.h"

/* ---- writer ---------------------------------------------------------------- */

/* Writes into b; the first error sticks (later calls do nothing) and is
 * what qkm_prom_end returns, like a stdio stream's error flag. */
struct qkm_prom {
	struct qkm_buf *b;
	int err;
};

static inline void qkm_prom_init(struct qkm_prom *w, struct qkm_buf *b)
{
	w->b = b;
	w->err = 0;
}
/* 0, or the first error (QKM_ETOOBIG, QKM_ENOMEM, QKM_EINVAL: a sample
 * with more than QKM_PROM_MAX_LABELS labels or an odd list). */
static inline int qkm_prom_end(const struct qkm_prom *w) { return w->err; }

#define QKM_PROM_MAX_LABELS 6
/* Ends a label list: a null pointer of the type va_arg reads (a bare NULL
 * may be a plain 0 in C, and reading that as a pointer is undefined). */
#define QKM_PROM_END ((const char *)0)

/* "# HELP name help" and "# TYPE name type" (counter, gauge, histogram):
 * once per family, before its samples, which must follow together. */
void qkm_prom_family(struct qkm_prom *w, const char *name, const char *type, const char *help);
/* One sample, "name{l1="v1",...} value": after the value come label name
 * and value pairs, ended by QKM_PROM_END. Values are escaped (\\, \", \n); names are
 * the caller's constants. u64 prints integers exactly; f64 prints NaN and
 * +Inf/-Inf as Prometheus spells them. */
void qkm_prom_u64(struct qkm_prom *w, const char *name, uint64_t v, ...)
	__attribute__((sentinel));
void qkm_prom_f64(struct qkm_prom *w, const char *name, double v, ...)
	__attribute__((sentinel));
/* A histogram's samples under name: name_bucket{labels,le="B"} for each
 * bound (in seconds) and +Inf, cumulative; name_sum (seconds); name_count.
 * Labels as above. */
void qkm_prom_hist(struct qkm_prom *w, const char *name, const struct qkm_hist *h, ...)
	__attribute__((sentinel));

/* ---- a node's ETSI 014 answers ------------------------------------------------ */

/* The kind of resource a request named (the last part of its path). */
enum qkm_etsi_endpoint {
	QKM_EP_STATUS,
	QKM_EP_ENC_KEYS,
	QKM_EP_DEC_KEYS,
	QKM_EP_OTHER, /* any other path (answered 404 or 400) */
	QKM_EP_N
};
/* "status", "enc_keys", "dec_keys", "other". */
const char *qkm_etsi_endpoint_name(enum qkm_etsi_endpoint ep);
/* The endpoint a request path names: its last segment, under /api/v1/keys/. */
enum qkm_etsi_endpoint qkm_etsi_endpoint_of(const char *path);

#define QKM_METRICS_REASON_MAX 24
#define QKM_METRICS_MAX_ANSWERS 1024

/* Answers of one kind: one caller (the CN of its certificate), endpoint,
 * HTTP status and reason (a short fixed label, "" for 200). */
struct qkm_metrics_answer {
	char sae[QKM_NAME_MAX];
	uint8_t endpoint;          /* enum qkm_etsi_endpoint */
	uint16_t code;
	char reason[QKM_METRICS_REASON_MAX];
	uint64_t count;            /* answers */
	uint64_t keys;             /* keys they carried (200 only) */
};

/* Every answer written since the node started. */
struct qkm_metrics_etsi {
	size_t n;
	struct qkm_metrics_answer a[QKM_METRICS_MAX_ANSWERS];
	uint64_t unlabelled;       /* answers of a kind first seen with a full table:
				    * counted here and in the histograms only */
	struct qkm_hist latency[QKM_EP_N]; /* arrival to answer, per endpoint */
};

/* ---- a node ----------------------------------------------------------------- */

/* Appends the node's metrics to out: s (pools, links, counters, relay) and
 * e (ETSI 014 answers; NULL for a node without applications). 0 or the
 * buffer's error. */
int qkm_metrics_format(const struct qkm_node_status *s, const struct qkm_metrics_etsi *e,
		       struct qkm_buf *out) QKM_MUST_CHECK;

#endif
