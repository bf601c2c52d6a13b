/* limit.c - per-SAE token buckets and in-flight counts (limit.h). Integer
 * arithmetic only: a bucket holds tokens in billionths of a request, so a
 * rate of r requests/s refills r units per nanosecond, exactly. */
#include "ksa/limit.h"

#include <stdbool.h>
#include <stdlib.h>

#define UNIT 1000000000ull /* one request, in bucket units */

struct slot {
	uint64_t tokens;  /* bucket units, at most burst * UNIT */
	uint64_t last_ns; /* when tokens was last brought up to date */
	uint32_t held;    /* requests in flight */
	bool started;     /* false: never asked yet (bucket full) */
};

struct qkm_limit {
	struct qkm_limits_cfg cfg;
	size_t n;
	struct slot slots[];
};

struct qkm_limit *qkm_limit_new(const struct qkm_limits_cfg *cfg, size_t n)
{
	struct qkm_limit *l = calloc(1, sizeof(*l) + n * sizeof(l->slots[0]));
	if (!l)
		return NULL;
	l->cfg = *cfg;
	if (l->cfg.sae_rate && !l->cfg.sae_burst)
		l->cfg.sae_burst = 1;
	l->n = n;
	return l;
}

void qkm_limit_free(struct qkm_limit *l)
{
	free(l);
}

/* Brings s's bucket up to now_ns. Overflow-free: a refill that would pass
 * the top stops at it before multiplying (rate * elapsed stays below
 * full + rate, far from 2^64 with burst and rate under 2^32). */
static void refill(const struct qkm_limit *l, struct slot *s, uint64_t now_ns)
{
	uint64_t full = (uint64_t)l->cfg.sae_burst * UNIT, rate = l->cfg.sae_rate;
	if (!s->started) {
		s->started = true;
		s->tokens = full;
		s->last_ns = now_ns;
		return;
	}
	if (now_ns <= s->last_ns) {
		s->last_ns = now_ns; /* backwards: no refill, no debt either */
		return;
	}
	uint64_t elapsed = now_ns - s->last_ns, need = full - s->tokens;
	s->last_ns = now_ns;
	if (elapsed >= (need + rate - 1) / rate)
		s->tokens = full;
	else
		s->tokens += elapsed * rate;
	if (s->tokens > full)
		s->tokens = full;
}

enum qkm_limit_verdict qkm_limit_request(struct qkm_limit *l, size_t slot, uint64_t now_ns,
					 uint64_t *retry_ns)
{
	if (retry_ns)
		*retry_ns = 0;
	if (!l || slot >= l->n || !l->cfg.sae_rate)
		return QKM_LIMIT_OK;
	struct slot *s = &l->slots[slot];
	refill(l, s, now_ns);
	if (s->tokens >= UNIT) {
		s->tokens -= UNIT;
		return QKM_LIMIT_OK;
	}
	if (retry_ns)
		*retry_ns = (UNIT - s->tokens + l->cfg.sae_rate - 1) / l->cfg.sae_rate;
	return QKM_LIMIT_RATE;
}

enum qkm_limit_verdict qkm_limit_hold(struct qkm_limit *l, size_t slot)
{
	if (!l || slot >= l->n)
		return QKM_LIMIT_OK;
	struct slot *s = &l->slots[slot];
	if (l->cfg.sae_in_flight && s->held >= l->cfg.sae_in_flight)
		return QKM_LIMIT_IN_FLIGHT;
	s->held++;
	return QKM_LIMIT_OK;
}

void qkm_limit_release(struct qkm_limit *l, size_t slot)
{
	if (l && slot < l->n && l->slots[slot].held)
		l->slots[slot].held--;
}

uint32_t qkm_limit_in_flight(const struct qkm_limit *l, size_t slot)
{
	return l && slot < l->n ? l->slots[slot].held : 0;
}
