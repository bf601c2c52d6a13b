/* test_limit.c - per-SAE admission at the ETSI 014 front end (ksa/limit.c):
 * the token bucket (burst, refill at the rate, top at the burst, a refused
 * request takes nothing, retry time, clock going backwards, extreme values),
 * the in-flight cap, and that one slot's flood leaves the others' budgets
 * alone (issue #7: one SAE must not starve another; R-SUP-1's KSA). The
 * clock is a parameter: no sleeps. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "ksa/limit.h"

#define NS 1000000000ull
#define T0 (1000ull * NS)

static struct qkm_limit *mk(uint32_t rate, uint32_t burst, uint32_t in_flight, size_t n)
{
	struct qkm_limits_cfg c = {rate, burst, in_flight};
	struct qkm_limit *l = qkm_limit_new(&c, n);
	assert_non_null(l);
	return l;
}

/* Requests of slot at time t admitted out of n asked. */
static unsigned admitted(struct qkm_limit *l, size_t slot, uint64_t t, unsigned n)
{
	unsigned ok = 0;
	for (unsigned i = 0; i < n; i++)
		ok += qkm_limit_request(l, slot, t, NULL) == QKM_LIMIT_OK;
	return ok;
}

/* A fresh SAE may send its burst at once, then no more until time passes;
 * the refusal says when the next token comes. */
static void test_burst_then_refuse(void **state)
{
	struct qkm_limit *l = mk(10, 5, 0, 1);
	uint64_t retry = 12345;
	assert_int_equal(admitted(l, 0, T0, 5), 5);
	assert_int_equal(qkm_limit_request(l, 0, T0, &retry), QKM_LIMIT_RATE);
	assert_int_equal(retry, NS / 10);
	/* Half way to the next token: still refused, half the wait left. */
	assert_int_equal(qkm_limit_request(l, 0, T0 + NS / 20, &retry), QKM_LIMIT_RATE);
	assert_int_equal(retry, NS / 20);
	/* At the retry time: admitted (the refusals took nothing). */
	assert_int_equal(qkm_limit_request(l, 0, T0 + NS / 10, &retry), QKM_LIMIT_OK);
	assert_int_equal(retry, 0);
	assert_int_equal(qkm_limit_request(l, 0, T0 + NS / 10, NULL), QKM_LIMIT_RATE);
	qkm_limit_free(l);
}

/* Sustained: over a second at 4x the rate, about rate requests pass (plus
 * the burst), never more. */
static void test_sustained_rate(void **state)
{
	struct qkm_limit *l = mk(50, 100, 0, 1);
	unsigned ok = 0;
	for (unsigned i = 0; i <= 200 * 10; i++) /* 200 req/s for 10 s */
		ok += qkm_limit_request(l, 0, T0 + (uint64_t)i * (NS / 200), NULL) == QKM_LIMIT_OK;
	/* burst 100 + 50/s * 10 s = 600 at most; the bucket tops up exactly. */
	assert_int_equal(ok, 600);
	qkm_limit_free(l);
}

/* An idle SAE gets its burst back, and no more than its burst, however
 * long it was idle (no overflow with the largest settings either). */
static void test_refill_tops_at_burst(void **state)
{
	struct qkm_limit *l = mk(3, 7, 0, 1);
	assert_int_equal(admitted(l, 0, T0, 100), 7);
	assert_int_equal(admitted(l, 0, T0 + 3600 * NS, 100), 7);
	assert_int_equal(admitted(l, 0, UINT64_MAX - 1, 100), 7);
	qkm_limit_free(l);

	l = mk(QKM_LIMIT_MAX, QKM_LIMIT_MAX, 0, 1);
	assert_int_equal(admitted(l, 0, 1, QKM_LIMIT_MAX), QKM_LIMIT_MAX);
	assert_int_equal(qkm_limit_request(l, 0, 1, NULL), QKM_LIMIT_RATE);
	/* 1 ms at 10^6/s: 1000 tokens. */
	assert_int_equal(admitted(l, 0, 1 + NS / 1000, 2000), 1000);
	assert_int_equal(admitted(l, 0, UINT64_MAX, 2 * QKM_LIMIT_MAX), QKM_LIMIT_MAX);
	qkm_limit_free(l);
}

/* A clock stepping back gives no tokens, and costs none when it goes on. */
static void test_clock_backwards(void **state)
{
	struct qkm_limit *l = mk(10, 2, 0, 1);
	assert_int_equal(admitted(l, 0, T0, 2), 2);
	assert_int_equal(qkm_limit_request(l, 0, T0 - 5 * NS, NULL), QKM_LIMIT_RATE);
	/* From the stepped-back time on, refill at the rate as usual. */
	assert_int_equal(admitted(l, 0, T0 - 5 * NS + NS / 10, 5), 1);
	qkm_limit_free(l);
}

/* Slots are separate: one SAE emptying its bucket and filling its
 * in-flight cap leaves another's untouched. */
static void test_slots_independent(void **state)
{
	struct qkm_limit *l = mk(10, 20, 3, 2);
	assert_int_equal(admitted(l, 0, T0, 1000), 20);
	for (int i = 0; i < 3; i++)
		assert_int_equal(qkm_limit_hold(l, 0), QKM_LIMIT_OK);
	assert_int_equal(qkm_limit_hold(l, 0), QKM_LIMIT_IN_FLIGHT);
	assert_int_equal(admitted(l, 1, T0, 20), 20);
	for (int i = 0; i < 3; i++)
		assert_int_equal(qkm_limit_hold(l, 1), QKM_LIMIT_OK);
	assert_int_equal(qkm_limit_in_flight(l, 0), 3);
	assert_int_equal(qkm_limit_in_flight(l, 1), 3);
	qkm_limit_free(l);
}

/* The in-flight cap: a refused hold is not counted; each release frees
 * one place; releasing more than held never wraps. */
static void test_in_flight(void **state)
{
	struct qkm_limit *l = mk(0, 0, 2, 1);
	assert_int_equal(qkm_limit_hold(l, 0), QKM_LIMIT_OK);
	assert_int_equal(qkm_limit_hold(l, 0), QKM_LIMIT_OK);
	assert_int_equal(qkm_limit_hold(l, 0), QKM_LIMIT_IN_FLIGHT);
	assert_int_equal(qkm_limit_hold(l, 0), QKM_LIMIT_IN_FLIGHT);
	assert_int_equal(qkm_limit_in_flight(l, 0), 2);
	qkm_limit_release(l, 0);
	assert_int_equal(qkm_limit_in_flight(l, 0), 1);
	assert_int_equal(qkm_limit_hold(l, 0), QKM_LIMIT_OK);
	assert_int_equal(qkm_limit_hold(l, 0), QKM_LIMIT_IN_FLIGHT);
	qkm_limit_release(l, 0);
	qkm_limit_release(l, 0);
	qkm_limit_release(l, 0);
	assert_int_equal(qkm_limit_in_flight(l, 0), 0);
	assert_int_equal(qkm_limit_hold(l, 0), QKM_LIMIT_OK);
	qkm_limit_free(l);
}

/* 0 turns a limit off; a burst of 0 with a rate is a burst of 1; slots out
 * of range (and a NULL limiter) are always admitted. */
static void test_off_and_edges(void **state)
{
	struct qkm_limit *l = mk(0, 0, 0, 1);
	assert_int_equal(admitted(l, 0, T0, 100000), 100000);
	for (int i = 0; i < 10000; i++)
		assert_int_equal(qkm_limit_hold(l, 0), QKM_LIMIT_OK);
	assert_int_equal(qkm_limit_in_flight(l, 0), 10000);
	qkm_limit_free(l);

	l = mk(1, 0, 1, 1);
	assert_int_equal(admitted(l, 0, T0, 10), 1);
	assert_int_equal(admitted(l, 0, T0 + NS, 10), 1);
	assert_int_equal(admitted(l, 5, T0, 10), 10);
	assert_int_equal(qkm_limit_hold(l, 5), QKM_LIMIT_OK);
	assert_int_equal(qkm_limit_hold(l, 5), QKM_LIMIT_OK);
	assert_int_equal(qkm_limit_in_flight(l, 5), 0);
	qkm_limit_release(l, 5);
	qkm_limit_free(l);

	assert_int_equal(qkm_limit_request(NULL, 0, T0, NULL), QKM_LIMIT_OK);
	assert_int_equal(qkm_limit_hold(NULL, 0), QKM_LIMIT_OK);
	qkm_limit_release(NULL, 0);
	qkm_limit_free(NULL);

	l = mk(10, 10, 10, 0); /* a node with no SAEs */
	assert_int_equal(qkm_limit_request(l, 0, T0, NULL), QKM_LIMIT_OK);
	qkm_limit_free(l);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_burst_then_refuse),
		cmocka_unit_test(test_sustained_rate),
		cmocka_unit_test(test_refill_tops_at_burst),
		cmocka_unit_test(test_clock_backwards),
		cmocka_unit_test(test_slots_independent),
		cmocka_unit_test(test_in_flight),
		cmocka_unit_test(test_off_and_edges),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
