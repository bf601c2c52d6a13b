/* test_meter.c - ETSI 014 answer counts (ksa/meter.c) behind /metrics
 * (issue #8 item 2): answers are counted by caller, endpoint, status and
 * reason with the keys of 200s, latency per endpoint; a full table loses
 * labels, never counts; and two threads counting while a third takes
 * snapshots lose nothing (the front end counts, the main thread reads). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ksa/meter.h"

static const struct qkm_metrics_answer *find(const struct qkm_metrics_etsi *e, const char *sae,
					     enum qkm_etsi_endpoint ep, int code,
					     const char *reason)
{
	for (size_t i = 0; i < e->n; i++)
		if (strcmp(e->a[i].sae, sae) == 0 && e->a[i].endpoint == ep &&
		    e->a[i].code == code && strcmp(e->a[i].reason, reason) == 0)
			return &e->a[i];
	return NULL;
}

static void test_counts(void **state)
{
	struct qkm_meter *m = qkm_meter_new();
	struct qkm_metrics_etsi *e = malloc(sizeof(*e));
	assert_non_null(m);
	assert_non_null(e);
	qkm_meter_answer(m, "sae-1", QKM_EP_ENC_KEYS, 200, NULL, 3, 400000);
	qkm_meter_answer(m, "sae-1", QKM_EP_ENC_KEYS, 200, "ignored for 200", 2, 2000000);
	qkm_meter_answer(m, "sae-3", QKM_EP_DEC_KEYS, 200, NULL, 5, 3000000);
	qkm_meter_answer(m, "sae-3", QKM_EP_DEC_KEYS, 400, "unknown_key", 9, 100000);
	qkm_meter_answer(m, "sae-3", QKM_EP_DEC_KEYS, 400, "unknown_key", 0, 100000);
	qkm_meter_answer(m, "sae-3", QKM_EP_DEC_KEYS, 400, "bad_request", 0, 100000);
	qkm_meter_answer(m, "sae-9", QKM_EP_N, 404, "a reason longer than the label can hold", 0,
			 1);
	qkm_meter_snapshot(m, e);
	assert_int_equal(e->n, 5);
	const struct qkm_metrics_answer *a = find(e, "sae-1", QKM_EP_ENC_KEYS, 200, "");
	assert_non_null(a);
	assert_int_equal(a->count, 2);
	assert_int_equal(a->keys, 5);
	a = find(e, "sae-3", QKM_EP_DEC_KEYS, 400, "unknown_key");
	assert_non_null(a);
	assert_int_equal(a->count, 2);
	assert_int_equal(a->keys, 0); /* refusals carry no keys */
	/* an endpoint out of range is "other"; a long reason is cut, not lost */
	a = find(e, "sae-9", QKM_EP_OTHER, 404, "a reason longer than th");
	assert_non_null(a);
	assert_int_equal(e->latency[QKM_EP_ENC_KEYS].count, 2);
	assert_int_equal(e->latency[QKM_EP_ENC_KEYS].bucket[0], 1); /* 0.4 ms */
	assert_int_equal(e->latency[QKM_EP_ENC_KEYS].bucket[2], 1); /* 2 ms */
	assert_int_equal(e->latency[QKM_EP_DEC_KEYS].count, 4);
	assert_int_equal(e->latency[QKM_EP_OTHER].count, 1);
	assert_int_equal(e->unlabelled, 0);
	qkm_meter_free(m);
	qkm_meter_free(NULL);
	/* a NULL meter counts nothing and snapshots zeros */
	qkm_meter_answer(NULL, "x", QKM_EP_STATUS, 200, NULL, 0, 0);
	qkm_meter_snapshot(NULL, e);
	assert_int_equal(e->n, 0);
	free(e);
}

static void test_full(void **state)
{
	struct qkm_meter *m = qkm_meter_new();
	struct qkm_metrics_etsi *e = malloc(sizeof(*e));
	char name[32];
	assert_non_null(e);
	for (int i = 0; i < QKM_METRICS_MAX_ANSWERS + 10; i++) {
		snprintf(name, sizeof(name), "sae-%d", i);
		qkm_meter_answer(m, name, QKM_EP_STATUS, 401, "not_registered", 0, 0);
	}
	/* known kinds still count once the table is full */
	qkm_meter_answer(m, "sae-0", QKM_EP_STATUS, 401, "not_registered", 0, 0);
	qkm_meter_snapshot(m, e);
	assert_int_equal(e->n, QKM_METRICS_MAX_ANSWERS);
	assert_int_equal(e->unlabelled, 10);
	assert_int_equal(find(e, "sae-0", QKM_EP_STATUS, 401, "not_registered")->count, 2);
	assert_int_equal(e->latency[QKM_EP_STATUS].count, QKM_METRICS_MAX_ANSWERS + 11);
	qkm_meter_free(m);
	free(e);
}

#define PER_THREAD 100000

struct counter_arg {
	struct qkm_meter *m;
	const char *sae;
};

static void *count_thread(void *arg)
{
	struct counter_arg *c = arg;
	for (int i = 0; i < PER_THREAD; i++)
		qkm_meter_answer(c->m, c->sae, QKM_EP_ENC_KEYS, i % 10 ? 200 : 503,
				 i % 10 ? NULL : "no_key", 1, (uint64_t)i);
	return NULL;
}

static void test_threads(void **state)
{
	struct qkm_meter *m = qkm_meter_new();
	struct qkm_metrics_etsi *e = malloc(sizeof(*e));
	assert_non_null(e);
	struct counter_arg a = {m, "sae-a"}, b = {m, "sae-b"};
	pthread_t ta, tb;
	assert_int_equal(pthread_create(&ta, NULL, count_thread, &a), 0);
	assert_int_equal(pthread_create(&tb, NULL, count_thread, &b), 0);
	/* snapshots meanwhile are each consistent: the histogram's count is
	 * the sum of the rows */
	for (int i = 0; i < 200; i++) {
		qkm_meter_snapshot(m, e);
		uint64_t rows = 0;
		for (size_t j = 0; j < e->n; j++)
			rows += e->a[j].count;
		assert_int_equal(rows, e->latency[QKM_EP_ENC_KEYS].count);
	}
	pthread_join(ta, NULL);
	pthread_join(tb, NULL);
	qkm_meter_snapshot(m, e);
	assert_int_equal(e->n, 4);
	assert_int_equal(e->latency[QKM_EP_ENC_KEYS].count, 2 * PER_THREAD);
	assert_int_equal(find(e, "sae-a", QKM_EP_ENC_KEYS, 200, "")->keys, PER_THREAD / 10 * 9);
	assert_int_equal(find(e, "sae-b", QKM_EP_ENC_KEYS, 503, "no_key")->count, PER_THREAD / 10);
	qkm_meter_free(m);
	free(e);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_counts),
		cmocka_unit_test(test_full),
		cmocka_unit_test(test_threads),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
