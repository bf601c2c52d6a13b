/* meter.h - counts of the ETSI 014 answers a node writes (by caller,
 * endpoint, HTTP status and reason; keys given; latency per endpoint) for
 * /metrics. The ETSI 014 front end counts as it answers, on its thread; the
 * main thread takes snapshots: every call locks, so any thread may call. */
#ifndef QKM_KSA_METER_H
#define QKM_KSA_METER_H

#include <stdint.h>

#include "proto/metrics.h"

struct qkm_meter;

/* An empty meter, or NULL when out of memory. */
struct qkm_meter *qkm_meter_new(void);
void qkm_meter_free(struct qkm_meter *m);

/* One answer written: to caller sae (the CN of its certificate), for a
 * request to ep, with HTTP status code and reason (a short label from a
 * fixed set, NULL or "" for 200; longer ones are cut), carrying keys keys,
 * latency_ns after the request arrived. A kind of answer first seen when
 * the table is full is counted in unlabelled (and the histogram) only. */
void qkm_meter_answer(struct qkm_meter *m, const char *sae, enum qkm_etsi_endpoint ep, int code,
		      const char *reason, uint32_t keys, uint64_t latency_ns);

/* Copies every count into out (a consistent snapshot). */
void qkm_meter_snapshot(struct qkm_meter *m, struct qkm_metrics_etsi *out /* OUT */);

#endif
