/* test_metrics.c - Prometheus text exposition of node status (proto/metrics.c):
 * every sample line parses as name{labels} value, belongs to a metric with
 * HELP and TYPE lines before it, and carries the status's figures. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/metrics.h"

static bool name_ok(const char *s, size_t n)
{
	if (n == 0 || !(isalpha((unsigned char)s[0]) || s[0] == '_'))
		return false;
	for (size_t i = 1; i < n; i++)
		if (!(isalnum((unsigned char)s[i]) || s[i] == '_'))
			return false;
	return true;
}

/* Checks one sample line; returns its metric name length. */
static size_t check_sample(const char *line, const char *typed)
{
	const char *brace = strchr(line, '{'), *close = strrchr(line, '}');
	assert_non_null(brace);
	assert_non_null(close);
	size_t n = (size_t)(brace - line);
	assert_true(name_ok(line, n));
	/* the metric was declared: TYPE names the same metric */
	char want[96];
	snprintf(want, sizeof(want), "%.*s", (int)n, line);
	assert_string_equal(want, typed);
	/* labels: name="value" pairs */
	for (const char *p = brace + 1; p < close;) {
		const char *eq = strchr(p, '=');
		assert_non_null(eq);
		assert_true(name_ok(p, (size_t)(eq - p)));
		assert_int_equal(eq[1], '"');
		const char *q = eq + 2;
		while (*q != '"') {
			if (*q == '\\')
				q++;
			assert_true(*q && *q != '\n');
			q++;
		}
		p = q + 1;
		if (*p == ',')
			p++;
	}
	char *end;
	assert_int_equal(close[1], ' ');
	strtod(close + 2, &end);
	assert_true(end != close + 2 && *end == 0);
	return n;
}

static void test_exposition(void **state)
{
	struct qkm_node_status s;
	struct qkm_buf b;
	memset(&s, 0, sizeof(s));
	snprintf(s.id, sizeof(s.id), "A");
	s.n_pools = 1;
	snprintf(s.pools[0].peer, QKM_NAME_MAX, "B");
	s.pools[0].kind = "link";
	s.pools[0].keys = 7;
	s.pools[0].bytes = 224;
	s.acquired_bytes = 4096;
	s.supplied_keys = 3;
	s.refused_rate = 11;
	s.refused_in_flight = 2;
	s.n_links = 1;
	snprintf(s.links[0].link, QKM_NAME_MAX, "A-B");
	snprintf(s.links[0].peer, QKM_NAME_MAX, "B");
	s.links[0].kx_up = true;
	s.links[0].qber = 0.2;
	snprintf(s.links[0].alarm, sizeof(s.links[0].alarm), "qber \"high\"\\");
	qkm_buf_init(&b, 1u << 20, false);
	assert_int_equal(qkm_metrics_format(&s, &b), 0);
	assert_int_equal(qkm_buf_put_u8(&b, 0), 0);
	char *text = (char *)b.p, *save = NULL, typed[96] = "";
	int samples = 0;
	bool help = false;
	for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		if (strncmp(line, "# HELP ", 7) == 0) {
			help = true;
			continue;
		}
		if (strncmp(line, "# TYPE ", 7) == 0) {
			assert_true(help); /* HELP comes first */
			help = false;
			assert_int_equal(sscanf(line + 7, "%95s", typed), 1);
			assert_true(strstr(line, " gauge") || strstr(line, " counter"));
			continue;
		}
		check_sample(line, typed);
		samples++;
	}
	assert_true(samples >= 10);
	qkm_buf_fini(&b);
	/* the figures are there */
	qkm_buf_init(&b, 1u << 20, false);
	assert_int_equal(qkm_metrics_format(&s, &b), 0);
	assert_int_equal(qkm_buf_put_u8(&b, 0), 0);
	assert_non_null(strstr((char *)b.p, "qkm_pool_bytes{node=\"A\",peer=\"B\",kind=\"link\"} 224\n"));
	assert_non_null(strstr((char *)b.p, "qkm_acquired_bytes_total{node=\"A\"} 4096\n"));
	assert_non_null(strstr((char *)b.p, "qkm_supplied_keys_total{node=\"A\"} 3\n"));
	/* ETSI 014 refusals over an SAE's limits, by limit (issue #7) */
	assert_non_null(strstr((char *)b.p, "qkm_etsi014_refused_total{node=\"A\",limit=\"rate\"} 11\n"));
	assert_non_null(strstr((char *)b.p, "qkm_etsi014_refused_total{node=\"A\",limit=\"in_flight\"} 2\n"));
	assert_non_null(strstr((char *)b.p, "alarm=\"qber \\\"high\\\"\\\\\"} 1\n"));
	qkm_buf_fini(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_exposition),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
