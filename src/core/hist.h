/* hist.h - a latency histogram with fixed buckets, for the Prometheus
 * histogram type (proto/metrics.h writes it out, cumulative, in seconds).
 * Pure: no locking, no clock; its owner adds durations in nanoseconds. */
#ifndef QKM_CORE_HIST_H
#define QKM_CORE_HIST_H

#include <stdint.h>

/* Finite upper bounds, in ns: 0.5, 1, 2, 5, 10, 25, 50, 100, 250, 500 ms,
 * 1, 2.5, 5, 10 s; a last bucket (+Inf) holds the rest. */
#define QKM_HIST_N 14
extern const uint64_t qkm_hist_le_ns[QKM_HIST_N];

struct qkm_hist {
	uint64_t bucket[QKM_HIST_N + 1]; /* per bucket, NOT cumulative; [QKM_HIST_N]: +Inf */
	uint64_t count;
	uint64_t sum_ns;
};

/* Counts one duration: into the first bucket whose bound is >= ns. */
void qkm_hist_add(struct qkm_hist *h, uint64_t ns);

#endif
