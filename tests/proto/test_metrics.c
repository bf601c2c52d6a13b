/* test_metrics.c - Prometheus text exposition (proto/metrics.c), issue #8
 * item 2: every line of a node's /metrics parses (a strict reader of the
 * 0.0.4 text format below: HELP then TYPE once per family before its
 * samples, names and labels well formed, values numbers), histograms are
 * cumulative and end in +Inf equal to _count, label values are escaped, and
 * the figures of the status and the ETSI 014 answers come out. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/metrics.h"

/* ---- a strict reader --------------------------------------------------------- */

#define MAX_FAMILIES 128

struct reader {
	char names[MAX_FAMILIES][96], types[MAX_FAMILIES][16];
	size_t n;
	char help_for[96]; /* the last HELP, waiting for its TYPE */
	int cur;           /* family the samples belong to; -1 before any */
	size_t samples;
	/* the histogram series being read */
	char series[512];
	double last_le, last_bucket;
	bool inf_seen;
};

static bool name_ok(const char *s, size_t n)
{
	if (n == 0 || !(isalpha((unsigned char)s[0]) || s[0] == '_' || s[0] == ':'))
		return false;
	for (size_t i = 1; i < n; i++)
		if (!(isalnum((unsigned char)s[i]) || s[i] == '_' || s[i] == ':'))
			return false;
	return true;
}

static double value_of(const char *v)
{
	if (strcmp(v, "NaN") == 0)
		return NAN;
	if (strcmp(v, "+Inf") == 0)
		return INFINITY;
	if (strcmp(v, "-Inf") == 0)
		return -INFINITY;
	char *end;
	double d = strtod(v, &end);
	assert_true(end != v && *end == 0);
	return d;
}

/* Parses {labels} at p into "k=v,..." without le (series key) and the le
 * value (or NULL); returns the character after '}'. */
static const char *labels(const char *p, char *key, size_t keysz, char *le, size_t lesz,
			  bool *has_le)
{
	char seen[QKM_PROM_MAX_LABELS + 2][32];
	size_t ns = 0;
	key[0] = 0;
	*has_le = false;
	assert_int_equal(*p, '{');
	p++;
	while (*p != '}') {
		const char *eq = strchr(p, '=');
		assert_non_null(eq);
		assert_true(name_ok(p, (size_t)(eq - p)));
		assert_true(ns < QKM_PROM_MAX_LABELS + 2 && (size_t)(eq - p) < 32);
		snprintf(seen[ns], sizeof(seen[ns]), "%.*s", (int)(eq - p), p);
		for (size_t i = 0; i < ns; i++)
			assert_string_not_equal(seen[i], seen[ns]); /* no label twice */
		bool is_le = strcmp(seen[ns], "le") == 0;
		ns++;
		assert_int_equal(eq[1], '"');
		char val[256];
		size_t vl = 0;
		const char *q = eq + 2;
		while (*q != '"') {
			assert_true(*q && *q != '\n');
			if (*q == '\\') {
				q++;
				assert_true(*q == '\\' || *q == '"' || *q == 'n'); /* only these */
			}
			assert_true(vl + 1 < sizeof(val));
			val[vl++] = *q++;
		}
		val[vl] = 0;
		if (is_le) {
			*has_le = true;
			snprintf(le, lesz, "%s", val);
		} else {
			size_t kl = strlen(key);
			snprintf(key + kl, keysz - kl, "%s=%s,", seen[ns - 1], val);
		}
		p = q + 1;
		if (*p == ',')
			p++;
		else
			assert_int_equal(*p, '}');
	}
	return p + 1;
}

static void read_line(struct reader *r, const char *line)
{
	char name[96], type[16];
	if (strncmp(line, "# HELP ", 7) == 0) {
		assert_int_equal(sscanf(line + 7, "%95s", name), 1);
		assert_true(name_ok(name, strlen(name)));
		assert_true(strlen(line) > 8 + strlen(name)); /* some text */
		snprintf(r->help_for, sizeof(r->help_for), "%s", name);
		return;
	}
	if (strncmp(line, "# TYPE ", 7) == 0) {
		assert_int_equal(sscanf(line + 7, "%95s %15s", name, type), 2);
		assert_string_equal(name, r->help_for); /* HELP right before */
		r->help_for[0] = 0;
		assert_true(strcmp(type, "counter") == 0 || strcmp(type, "gauge") == 0 ||
			    strcmp(type, "histogram") == 0);
		if (strcmp(type, "counter") == 0)
			assert_non_null(strstr(name, "_total")); /* naming convention */
		for (size_t i = 0; i < r->n; i++)
			assert_string_not_equal(r->names[i], name); /* declared once */
		assert_true(r->n < MAX_FAMILIES);
		snprintf(r->names[r->n], sizeof(r->names[0]), "%s", name);
		snprintf(r->types[r->n], sizeof(r->types[0]), "%s", type);
		r->cur = (int)r->n++;
		r->series[0] = 0;
		return;
	}
	assert_int_not_equal(line[0], '#');
	assert_true(r->cur >= 0);
	const char *fam = r->names[r->cur], *brace = strchr(line, '{'),
		   *sp = strchr(line, ' ');
	assert_non_null(sp);
	size_t nl = (size_t)((brace && brace < sp ? brace : sp) - line);
	assert_true(name_ok(line, nl));
	snprintf(name, sizeof(name), "%.*s", (int)nl, line);
	char key[512] = "", le[32] = "";
	bool has_le = false;
	const char *after = line + nl;
	if (brace && brace < sp)
		after = labels(brace, key, sizeof(key), le, sizeof(le), &has_le);
	assert_int_equal(*after, ' ');
	double v = value_of(after + 1);
	r->samples++;
	if (strcmp(r->types[r->cur], "histogram") != 0) {
		assert_string_equal(name, fam);
		assert_false(has_le);
		if (strstr(fam, "_total"))
			assert_true(v >= 0);
		return;
	}
	size_t fl = strlen(fam);
	assert_memory_equal(name, fam, fl);
	const char *suffix = name + fl;
	if (strcmp(suffix, "_bucket") == 0) {
		assert_true(has_le);
		double b = value_of(le);
		if (strcmp(r->series, key) != 0) { /* a new series starts */
			snprintf(r->series, sizeof(r->series), "%s", key);
			r->last_le = -INFINITY;
			r->last_bucket = 0;
			r->inf_seen = false;
		}
		assert_false(r->inf_seen);
		assert_true(b > r->last_le);    /* bounds increase */
		assert_true(v >= r->last_bucket); /* cumulative */
		r->last_le = b;
		r->last_bucket = v;
		r->inf_seen = isinf(b);
	} else if (strcmp(suffix, "_sum") == 0) {
		assert_string_equal(key, r->series);
		assert_true(r->inf_seen);
		assert_true(v >= 0);
	} else {
		assert_string_equal(suffix, "_count");
		assert_string_equal(key, r->series);
		assert_true(r->inf_seen);
		assert_true(v == r->last_bucket); /* +Inf bucket == count */
	}
}

/* Reads the whole exposition; returns the number of samples. */
static size_t read_all(const struct qkm_buf *b, struct reader *r)
{
	char *text = malloc(b->len + 1), *save = NULL;
	assert_non_null(text);
	memcpy(text, b->p, b->len);
	text[b->len] = 0;
	assert_true(b->len > 0 && text[b->len - 1] == '\n');
	assert_null(strstr(text, "\n\n")); /* no blank lines */
	memset(r, 0, sizeof(*r));
	r->cur = -1;
	for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
		read_line(r, line);
	assert_string_equal(r->help_for, ""); /* no HELP left without TYPE */
	free(text);
	return r->samples;
}

static bool declared(const struct reader *r, const char *name, const char *type)
{
	for (size_t i = 0; i < r->n; i++)
		if (strcmp(r->names[i], name) == 0)
			return strcmp(r->types[i], type) == 0;
	return false;
}

/* ---- fixtures ------------------------------------------------------------------ */

static void status_fill(struct qkm_node_status *s)
{
	memset(s, 0, sizeof(*s));
	snprintf(s->id, sizeof(s->id), "A");
	s->ready = true;
	s->store_db_bytes = 1u << 20;
	s->store_wal_bytes = 0;
	s->store_keys_bytes = 5000000000ull; /* exact, not 5e9 */
	s->n_pools = 2;
	snprintf(s->pools[0].peer, QKM_NAME_MAX, "B");
	s->pools[0].kind = "link";
	s->pools[0].keys = 7;
	s->pools[0].bytes = 224;
	s->pools[0].consumed_bytes = 123456789012345ull; /* exact, not 1.2e14 */
	s->pools[0].consume_rate = 2048.5;
	snprintf(s->pools[1].peer, QKM_NAME_MAX, "C");
	s->pools[1].kind = "relay";
	s->acquired_bytes = 4096;
	s->supplied_keys = 3;
	s->ksa_pruned_keys = 2;
	s->refused_rate = 11;
	s->refused_in_flight = 2;
	s->relay.started = 5;
	s->relay.confirmed = 4;
	s->relay.failed = 1;
	s->relay.in_flight = 0;
	s->n_links = 1;
	snprintf(s->links[0].link, QKM_NAME_MAX, "A-B");
	snprintf(s->links[0].peer, QKM_NAME_MAX, "B");
	s->links[0].kx_up = true;
	s->links[0].qber = 0.2;
	s->links[0].rate_bps = 1000000;
	s->links[0].aborted_batches = 6;
	snprintf(s->links[0].alarm, sizeof(s->links[0].alarm), "qber \"high\"\\");
}

static void etsi_fill(struct qkm_metrics_etsi *e)
{
	memset(e, 0, sizeof(*e));
	e->n = 3;
	e->a[0] = (struct qkm_metrics_answer){"sae-1", QKM_EP_ENC_KEYS, 200, "", 4, 9};
	e->a[1] = (struct qkm_metrics_answer){"sae-1", QKM_EP_STATUS, 200, "", 2, 0};
	e->a[2] = (struct qkm_metrics_answer){"sae-3", QKM_EP_DEC_KEYS, 400, "unknown_key", 1, 0};
	qkm_hist_add(&e->latency[QKM_EP_ENC_KEYS], 300000);     /* 0.3 ms */
	qkm_hist_add(&e->latency[QKM_EP_ENC_KEYS], 1000000);    /* 1 ms: le="0.001" holds it */
	qkm_hist_add(&e->latency[QKM_EP_ENC_KEYS], 30000000000); /* 30 s: +Inf only */
}

static char *format(const struct qkm_node_status *s, const struct qkm_metrics_etsi *e,
		    struct reader *r, size_t *samples)
{
	struct qkm_buf b;
	qkm_buf_init(&b, 1u << 22, false);
	assert_int_equal(qkm_metrics_format(s, e, &b), 0);
	*samples = read_all(&b, r);
	assert_int_equal(qkm_buf_put_u8(&b, 0), 0);
	char *text = strdup((char *)b.p);
	qkm_buf_fini(&b);
	return text;
}

/* ---- tests ------------------------------------------------------------------------ */

static void test_exposition(void **state)
{
	struct qkm_node_status s;
	struct qkm_metrics_etsi *e = malloc(sizeof(*e));
	struct reader *r = malloc(sizeof(*r));
	size_t n;
	assert_non_null(e);
	assert_non_null(r);
	status_fill(&s);
	etsi_fill(e);
	char *t = format(&s, e, r, &n);
	assert_true(n >= 60);
	/* pools, every pool */
	assert_non_null(strstr(t, "qkm_pool_bytes{node=\"A\",peer=\"B\",kind=\"link\"} 224\n"));
	assert_non_null(strstr(t, "qkm_pool_bytes{node=\"A\",peer=\"C\",kind=\"relay\"} 0\n"));
	assert_non_null(strstr(t, "qkm_pool_consumed_bytes_total{node=\"A\",peer=\"B\","
				  "kind=\"link\"} 123456789012345\n"));
	assert_non_null(strstr(t, "qkm_pool_consumption_bytes_per_second{node=\"A\",peer=\"B\","
				  "kind=\"link\"} 2048.5\n"));
	assert_true(declared(r, "qkm_pool_consumption_bytes_per_second", "gauge"));
	/* counters, relay */
	assert_non_null(strstr(t, "qkm_acquired_bytes_total{node=\"A\"} 4096\n"));
	assert_non_null(strstr(t, "qkm_supplied_keys_total{node=\"A\"} 3\n"));
	assert_non_null(strstr(t, "qkm_ksa_pruned_keys_total{node=\"A\"} 2\n"));
	assert_non_null(strstr(t, "qkm_relays_started_total{node=\"A\"} 5\n"));
	assert_non_null(strstr(t, "qkm_relays_confirmed_total{node=\"A\"} 4\n"));
	assert_non_null(strstr(t, "qkm_relays_failed_total{node=\"A\"} 1\n"));
	assert_non_null(strstr(t, "qkm_ready{node=\"A\"} 1\n"));
	/* the key store's files on disk */
	assert_true(declared(r, "qkm_store_bytes", "gauge"));
	assert_non_null(strstr(t, "qkm_store_bytes{node=\"A\",file=\"db\"} 1048576\n"));
	assert_non_null(strstr(t, "qkm_store_bytes{node=\"A\",file=\"wal\"} 0\n"));
	assert_non_null(strstr(t, "qkm_store_bytes{node=\"A\",file=\"keys\"} 5000000000\n"));
	/* ETSI 014 refusals over an SAE's limits, by limit (issue #7) */
	assert_non_null(strstr(t, "qkm_etsi014_refused_total{node=\"A\",limit=\"rate\"} 11\n"));
	assert_non_null(strstr(t, "qkm_etsi014_refused_total{node=\"A\",limit=\"in_flight\"} 2\n"));
	/* ETSI 014 answers: by caller, endpoint, code (and reason for errors) */
	assert_non_null(strstr(t, "qkm_etsi014_requests_total{node=\"A\",sae=\"sae-1\","
				  "endpoint=\"enc_keys\",code=\"200\"} 4\n"));
	assert_non_null(strstr(t, "qkm_etsi014_refusals_total{node=\"A\",sae=\"sae-3\","
				  "endpoint=\"dec_keys\",code=\"400\","
				  "reason=\"unknown_key\"} 1\n"));
	assert_null(strstr(t, "qkm_etsi014_refusals_total{node=\"A\",sae=\"sae-1\""));
	assert_non_null(strstr(t, "qkm_etsi014_keys_supplied_total{node=\"A\",sae=\"sae-1\","
				  "endpoint=\"enc_keys\"} 9\n"));
	/* status answers carry no keys: no keys line for them */
	assert_null(strstr(t, "qkm_etsi014_keys_supplied_total{node=\"A\",sae=\"sae-1\","
			      "endpoint=\"status\"}"));
	/* the histogram: cumulative, in seconds, le inclusive, sum exact */
	assert_true(declared(r, "qkm_etsi014_request_duration_seconds", "histogram"));
	assert_non_null(strstr(t, "qkm_etsi014_request_duration_seconds_bucket{node=\"A\","
				  "endpoint=\"enc_keys\",le=\"0.0005\"} 1\n"));
	assert_non_null(strstr(t, "qkm_etsi014_request_duration_seconds_bucket{node=\"A\","
				  "endpoint=\"enc_keys\",le=\"0.001\"} 2\n"));
	assert_non_null(strstr(t, "qkm_etsi014_request_duration_seconds_bucket{node=\"A\","
				  "endpoint=\"enc_keys\",le=\"10\"} 2\n"));
	assert_non_null(strstr(t, "qkm_etsi014_request_duration_seconds_bucket{node=\"A\","
				  "endpoint=\"enc_keys\",le=\"+Inf\"} 3\n"));
	assert_non_null(strstr(t, "qkm_etsi014_request_duration_seconds_sum{node=\"A\","
				  "endpoint=\"enc_keys\"} 30.001300000\n"));
	assert_non_null(strstr(t, "qkm_etsi014_request_duration_seconds_count{node=\"A\","
				  "endpoint=\"enc_keys\"} 3\n"));
	assert_non_null(strstr(t, "qkm_etsi014_request_duration_seconds_count{node=\"A\","
				  "endpoint=\"other\"} 0\n"));
	/* links: the alarm is a number; its text (free text from the module)
	 * never becomes a label */
	assert_non_null(strstr(t, "qkm_link_alarm{node=\"A\",peer=\"B\",link=\"A-B\"} 1\n"));
	assert_null(strstr(t, "high"));
	assert_non_null(strstr(t, "qkm_link_qber{node=\"A\",peer=\"B\",link=\"A-B\"} 0.2\n"));
	assert_non_null(strstr(t, "qkm_link_key_rate_bps{node=\"A\",peer=\"B\",link=\"A-B\"} "
				  "1000000\n"));
	assert_non_null(strstr(t, "qkm_link_aborted_batches_total{node=\"A\",peer=\"B\","
				  "link=\"A-B\"} 6\n"));
	free(t);
	free(e);
	free(r);
}

/* A node without applications: the ETSI 014 families are declared, empty,
 * and the text still parses. */
static void test_no_ksa(void **state)
{
	struct qkm_node_status s;
	struct reader *r = malloc(sizeof(*r));
	size_t n;
	assert_non_null(r);
	status_fill(&s);
	s.links[0].alarm[0] = 0;
	s.ready = false;
	char *t = format(&s, NULL, r, &n);
	assert_true(declared(r, "qkm_etsi014_requests_total", "counter"));
	assert_true(declared(r, "qkm_etsi014_request_duration_seconds", "histogram"));
	assert_null(strstr(t, "qkm_etsi014_requests_total{"));
	assert_null(strstr(t, "_bucket{"));
	assert_non_null(strstr(t, "qkm_link_alarm{node=\"A\",peer=\"B\",link=\"A-B\"} 0\n"));
	assert_non_null(strstr(t, "qkm_ready{node=\"A\"} 0\n"));
	free(t);
	free(r);
}

/* The writer escapes label values, prints integers exactly and floats the
 * Prometheus way, and refuses a label list it cannot write. */
static void test_writer(void **state)
{
	struct qkm_buf b;
	struct qkm_prom w;
	qkm_buf_init(&b, 4096, false);
	qkm_prom_init(&w, &b);
	qkm_prom_family(&w, "x_total", "counter", "A test.");
	qkm_prom_u64(&w, "x_total", UINT64_MAX, "a", "q\"b\\s\nn", QKM_PROM_END);
	qkm_prom_family(&w, "y", "gauge", "Another.");
	qkm_prom_f64(&w, "y", NAN, QKM_PROM_END);
	qkm_prom_f64(&w, "y", -INFINITY, "k", "v", QKM_PROM_END);
	assert_int_equal(qkm_prom_end(&w), 0);
	assert_int_equal(qkm_buf_put_u8(&b, 0), 0);
	assert_string_equal((char *)b.p, "# HELP x_total A test.\n# TYPE x_total counter\n"
					 "x_total{a=\"q\\\"b\\\\s\\nn\"} 18446744073709551615\n"
					 "# HELP y Another.\n# TYPE y gauge\n"
					 "y NaN\ny{k=\"v\"} -Inf\n");
	qkm_buf_fini(&b);
	/* too many labels: the error sticks */
	qkm_buf_init(&b, 4096, false);
	qkm_prom_init(&w, &b);
	qkm_prom_u64(&w, "z", 1, "a", "1", "b", "2", "c", "3", "d", "4", "e", "5", "f", "6", "g",
		     "7", QKM_PROM_END);
	qkm_prom_u64(&w, "z", 1, QKM_PROM_END);
	assert_int_equal(qkm_prom_end(&w), QKM_EINVAL);
	qkm_buf_fini(&b);
	/* a buffer too small: QKM_ETOOBIG, not a cut line */
	qkm_buf_init(&b, 8, false);
	qkm_prom_init(&w, &b);
	qkm_prom_family(&w, "x_total", "counter", "A test.");
	assert_int_equal(qkm_prom_end(&w), QKM_ETOOBIG);
	qkm_buf_fini(&b);
}

static void test_endpoint_of(void **state)
{
	assert_int_equal(qkm_etsi_endpoint_of("/api/v1/keys/sae-1/enc_keys"), QKM_EP_ENC_KEYS);
	assert_int_equal(qkm_etsi_endpoint_of("/api/v1/keys/sae-1/dec_keys"), QKM_EP_DEC_KEYS);
	assert_int_equal(qkm_etsi_endpoint_of("/api/v1/keys/sae-1/status"), QKM_EP_STATUS);
	assert_int_equal(qkm_etsi_endpoint_of("/api/v1/keys/status"), QKM_EP_OTHER);
	assert_int_equal(qkm_etsi_endpoint_of("/api/v1/keys/"), QKM_EP_OTHER);
	assert_int_equal(qkm_etsi_endpoint_of("/api/v1/keys/sae-1/enc_keys/x"), QKM_EP_OTHER);
	assert_int_equal(qkm_etsi_endpoint_of("/enc_keys"), QKM_EP_OTHER);
	assert_int_equal(qkm_etsi_endpoint_of("/api/v2/keys/a/enc_keys"), QKM_EP_OTHER);
	assert_int_equal(qkm_etsi_endpoint_of(NULL), QKM_EP_OTHER);
	assert_string_equal(qkm_etsi_endpoint_name(QKM_EP_DEC_KEYS), "dec_keys");
	assert_string_equal(qkm_etsi_endpoint_name(QKM_EP_N), "other");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_exposition),
		cmocka_unit_test(test_no_ksa),
		cmocka_unit_test(test_writer),
		cmocka_unit_test(test_endpoint_of),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
