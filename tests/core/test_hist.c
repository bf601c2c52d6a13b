/* test_hist.c - the fixed-bucket latency histogram (core/hist.c) behind
 * qkm_etsi014_request_duration_seconds: each duration lands in the first
 * bucket whose bound holds it (bounds inclusive, as Prometheus' le), longer
 * ones in +Inf, and count and sum follow. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "core/hist.h"

static void test_buckets(void **state)
{
	struct qkm_hist h;
	memset(&h, 0, sizeof(h));
	for (int i = 1; i < QKM_HIST_N; i++)
		assert_true(qkm_hist_le_ns[i] > qkm_hist_le_ns[i - 1]);
	qkm_hist_add(&h, 0);
	qkm_hist_add(&h, 500000);  /* exactly 0.5 ms: le="0.0005" */
	qkm_hist_add(&h, 500001);  /* just over: the 1 ms bucket */
	qkm_hist_add(&h, 10000000000ull); /* 10 s: the last finite bucket */
	qkm_hist_add(&h, 10000000001ull); /* over: +Inf */
	assert_int_equal(h.bucket[0], 2);
	assert_int_equal(h.bucket[1], 1);
	assert_int_equal(h.bucket[QKM_HIST_N - 1], 1);
	assert_int_equal(h.bucket[QKM_HIST_N], 1);
	assert_int_equal(h.count, 5);
	assert_int_equal(h.sum_ns, 500000 + 500001 + 10000000000ull + 10000000001ull);
	uint64_t total = 0;
	for (int i = 0; i <= QKM_HIST_N; i++)
		total += h.bucket[i];
	assert_int_equal(total, h.count);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_buckets),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
