/* limit.h - per-SAE admission at the ETSI 014 front end: a token bucket
 * (requests per second, with a burst) and a cap on requests in flight, for
 * each of a fixed number of slots (one per SAE registered at the node), so
 * one application flooding its node cannot starve the others (issue #7).
 * Pure: time is a parameter, nothing is locked; one thread owns a limiter. */
#ifndef QKM_KSA_LIMIT_H
#define QKM_KSA_LIMIT_H

#include <stddef.h>
#include <stdint.h>

#include "core/config.h"

enum qkm_limit_verdict {
	QKM_LIMIT_OK = 0,
	QKM_LIMIT_RATE,      /* over the request rate: no token left */
	QKM_LIMIT_IN_FLIGHT, /* already holding cfg.sae_in_flight requests */
};

struct qkm_limit;

/* A limiter of n slots with cfg's limits (copied): rate 0 means no rate
 * limit, in_flight 0 no cap; with a rate, burst must be >= 1 (a burst of 0
 * is taken as 1). Every slot starts with a full bucket. NULL when out of
 * memory. */
struct qkm_limit *qkm_limit_new(const struct qkm_limits_cfg *cfg, size_t n);
void qkm_limit_free(struct qkm_limit *l);

/* One request of slot arrives at now_ns (a monotonic clock): takes one
 * token. QKM_LIMIT_OK, or QKM_LIMIT_RATE with *retry_ns (OUT, may be NULL)
 * set to how long until the next token. A refused request takes nothing.
 * A clock that goes backwards refills nothing (and is not remembered as a
 * debt). Slots out of range are always admitted. */
enum qkm_limit_verdict qkm_limit_request(struct qkm_limit *l, size_t slot, uint64_t now_ns,
					 uint64_t *retry_ns /* OUT */);

/* An admitted request of slot is to be answered later: counts it in
 * flight. QKM_LIMIT_OK, or QKM_LIMIT_IN_FLIGHT (not counted) when the slot
 * already holds cfg.sae_in_flight requests. Every QKM_LIMIT_OK must be
 * matched by one qkm_limit_release. */
enum qkm_limit_verdict qkm_limit_hold(struct qkm_limit *l, size_t slot);
/* A held request of slot was answered, or its client left. */
void qkm_limit_release(struct qkm_limit *l, size_t slot);
/* Requests slot holds now. */
uint32_t qkm_limit_in_flight(const struct qkm_limit *l, size_t slot);

#endif
