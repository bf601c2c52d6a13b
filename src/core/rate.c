/* rate.c - exponentially weighted rate of a growing counter (rate.h).
 * Invariant: rate >= 0, and finite (every step is a convex combination of
 * the last rate and a finite increase over dt > 0). */
#include "core/rate.h"

void qkm_rate_init(struct qkm_rate *r, uint64_t tau_ns)
{
	r->tau_ns = tau_ns ? tau_ns : 1000000000u;
	r->last_ns = 0;
	r->last = 0;
	r->rate = 0;
}

double qkm_rate_update(struct qkm_rate *r, uint64_t v, uint64_t now_ns)
{
	if (r->last_ns == 0 || v < r->last) {
		/* first sample, or a reset: a base, no increase to measure */
		r->last_ns = now_ns ? now_ns : 1;
		r->last = v;
		return r->rate;
	}
	if (now_ns <= r->last_ns)
		return r->rate;
	double dt = (double)(now_ns - r->last_ns), inst = (double)(v - r->last) * 1e9 / dt;
	double w = dt / ((double)r->tau_ns + dt);
	r->rate += w * (inst - r->rate);
	r->last_ns = now_ns;
	r->last = v;
	return r->rate;
}
