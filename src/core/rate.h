/* rate.h - the recent rate of a counter that only grows (bytes consumed
 * from a pool, say): an exponentially weighted moving average of its
 * increase per second, fed the counter's value at whatever times the owner
 * samples it. Pure: the caller brings the clock. */
#ifndef QKM_CORE_RATE_H
#define QKM_CORE_RATE_H

#include <stdint.h>

struct qkm_rate {
	uint64_t tau_ns;  /* time constant: after a step in the true rate, the
			   * estimate has moved 1 - 1/e of the way in about tau */
	uint64_t last_ns; /* time of the last sample; 0 before the first */
	uint64_t last;    /* the counter's value then */
	double rate;      /* per second */
};

/* Starts r with no sample and a rate of 0. tau_ns 0 is taken as 1 s. */
void qkm_rate_init(struct qkm_rate *r, uint64_t tau_ns);

/* Feeds the counter's value v at now_ns (a monotonic clock) and returns the
 * rate per second. The first sample only sets the base. Each later one
 * moves the rate toward the increase since the last sample divided by the
 * time between them, with weight dt / (tau + dt), so samples at irregular
 * times count for the time they cover. A sample not later than the last is
 * ignored; a value below the last (the counter was reset) becomes the new
 * base and leaves the rate as it was. */
double qkm_rate_update(struct qkm_rate *r, uint64_t v, uint64_t now_ns);

#endif
