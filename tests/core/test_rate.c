/* test_rate.c - the exponentially weighted rate of a growing counter
 * (core/rate.c) behind qkm_pool_consumption_bytes_per_second (issue #8
 * item 2): a steady increase converges to its rate, a stop decays toward 0
 * with the time constant, irregular samples weigh by the time they cover,
 * and first samples, resets and stale times do not invent consumption. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "core/rate.h"

#define S 1000000000ull /* one second in ns */
#define INV_E 0.36787944117144233 /* 1/e, without libm */

static double dabs(double x) { return x < 0 ? -x : x; }

static void test_steady(void **state)
{
	struct qkm_rate r;
	qkm_rate_init(&r, 10 * S);
	/* the first sample is a base: no rate from a counter that was
	 * already large when the node started */
	assert_true(qkm_rate_update(&r, 5000000, 1 * S) == 0);
	uint64_t v = 5000000;
	for (uint64_t t = 2; t <= 200; t++) {
		v += 1000; /* 1000 bytes a second */
		qkm_rate_update(&r, v, t * S);
	}
	assert_true(dabs(r.rate - 1000) < 1);
	/* a stop: after one time constant about 1/e is left (the discrete
	 * weight dt/(tau+dt) decays a little slower than exp) */
	for (uint64_t t = 201; t <= 210; t++)
		qkm_rate_update(&r, v, t * S);
	assert_true(r.rate > 1000 * INV_E * 0.9 && r.rate < 1000 * INV_E * 1.2);
	for (uint64_t t = 211; t <= 400; t++)
		qkm_rate_update(&r, v, t * S);
	assert_true(r.rate < 1 && r.rate >= 0);
}

/* A step from 0 to a rate: the estimate moves about 1 - 1/e of the way in
 * tau, whether sampled every 100 ms or every 2 s. */
static void test_step_irregular(void **state)
{
	struct qkm_rate fine, coarse;
	qkm_rate_init(&fine, 10 * S);
	qkm_rate_init(&coarse, 10 * S);
	qkm_rate_update(&fine, 0, S);
	qkm_rate_update(&coarse, 0, S);
	for (uint64_t ms = 1100; ms <= 11000; ms += 100)
		qkm_rate_update(&fine, (ms - 1000) * 100, ms * 1000000ull); /* 100 kB/s */
	for (uint64_t s = 3; s <= 11; s += 2)
		qkm_rate_update(&coarse, (s - 1) * 100000, s * S);
	double want = 100000 * (1 - INV_E);
	assert_true(dabs(fine.rate - want) / want < 0.1);
	assert_true(dabs(coarse.rate - want) / want < 0.15);
}

static void test_edges(void **state)
{
	struct qkm_rate r;
	qkm_rate_init(&r, 0); /* taken as 1 s */
	assert_true(r.tau_ns == S);
	qkm_rate_update(&r, 100, 5 * S);
	qkm_rate_update(&r, 1100, 6 * S);
	double before = r.rate;
	assert_true(before > 0);
	/* same time, or earlier: ignored */
	assert_true(qkm_rate_update(&r, 999999, 6 * S) == before);
	assert_true(qkm_rate_update(&r, 999999, 5 * S) == before);
	/* a counter that went down (a new store): a new base, the rate kept */
	assert_true(qkm_rate_update(&r, 10, 7 * S) == before);
	assert_true(r.last == 10);
	qkm_rate_update(&r, 10, 8 * S);
	assert_true(r.rate < before); /* nothing consumed since: decays */
	/* a first sample at time 0 still counts as a sample */
	qkm_rate_init(&r, S);
	qkm_rate_update(&r, 0, 0);
	qkm_rate_update(&r, 1000, S);
	assert_true(r.rate > 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_steady),
		cmocka_unit_test(test_step_irregular),
		cmocka_unit_test(test_edges),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
