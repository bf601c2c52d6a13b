/* metrics.c - Prometheus text exposition of a node's status (metrics.h).
 * Label values are entity names (qkm_name_valid: no quote, backslash or
 * newline) or alarm texts, which are escaped anyway. */
#include "proto/metrics.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

static int put(struct qkm_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int put(struct qkm_buf *b, const char *fmt, ...)
{
	char line[512];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(line))
		return QKM_ETOOBIG;
	return qkm_buf_put(b, line, (size_t)n);
}

static int head(struct qkm_buf *b, const char *name, const char *type, const char *help)
{
	return put(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* Escapes a label value: \ " and newline. */
static void esc(const char *in, char *out, size_t outsz)
{
	size_t j = 0;
	for (size_t i = 0; in[i] && j + 2 < outsz; i++) {
		char c = in[i];
		if (c == '\\' || c == '"' || c == '\n') {
			out[j++] = '\\';
			c = (char)(c == '\n' ? 'n' : c);
		}
		out[j++] = c;
	}
	out[j] = 0;
}

int qkm_metrics_format(const struct qkm_node_status *s, struct qkm_buf *b)
{
	static const struct {
		const char *name, *help;
		size_t off;
	} pool_metrics[] = {
		{"qkm_pool_keys", "Usable KMA-keys in the pool shared with a peer.",
		 offsetof(struct qkm_status_pool, keys)},
		{"qkm_pool_bytes", "Usable key bytes in the pool shared with a peer.",
		 offsetof(struct qkm_status_pool, bytes)},
		{"qkm_pool_enc_bytes", "Usable key bytes this node encrypts with.",
		 offsetof(struct qkm_status_pool, enc_bytes)},
		{"qkm_pool_dec_bytes", "Usable key bytes this node decrypts with.",
		 offsetof(struct qkm_status_pool, dec_bytes)},
		{"qkm_pool_pending_keys", "KMA-keys stored but not yet confirmed by the peer.",
		 offsetof(struct qkm_status_pool, pending_keys)},
		{"qkm_pool_stock_keys", "KSA keys made ahead for applications, waiting here.",
		 offsetof(struct qkm_status_pool, stock_keys)},
	};
	int rc = 0;
	for (size_t m = 0; !rc && m < sizeof(pool_metrics) / sizeof(pool_metrics[0]); m++) {
		rc = head(b, pool_metrics[m].name, "gauge", pool_metrics[m].help);
		for (size_t i = 0; !rc && i < s->n_pools; i++) {
			const struct qkm_status_pool *p = &s->pools[i];
			uint64_t v;
			memcpy(&v, (const char *)p + pool_metrics[m].off, sizeof(v));
			rc = put(b, "%s{node=\"%s\",peer=\"%s\",kind=\"%s\"} %llu\n", pool_metrics[m].name,
				 s->id, p->peer, p->kind, (unsigned long long)v);
		}
	}
	const struct {
		const char *name, *help;
		int64_t v;
	} counters[] = {
		{"qkm_acquired_bytes_total", "Key bytes acquired and confirmed by both ends.",
		 s->acquired_bytes},
		{"qkm_aborted_batches_total", "Acquisition rounds discarded by both ends.",
		 s->aborted_batches},
		{"qkm_supplied_keys_total", "KSA keys supplied to applications.", s->supplied_keys},
		{"qkm_relayed_bytes_total", "Key bytes relayed for other nodes.", s->relayed_bytes},
	};
	for (size_t m = 0; !rc && m < sizeof(counters) / sizeof(counters[0]); m++) {
		rc = head(b, counters[m].name, "counter", counters[m].help);
		if (!rc)
			rc = put(b, "%s{node=\"%s\"} %lld\n", counters[m].name, s->id,
				 (long long)counters[m].v);
	}
	if (!rc)
		rc = head(b, "qkm_etsi014_refused_total", "counter",
			  "ETSI 014 requests refused (503) for being over their SAE's limits, by "
			  "limit, since the node started.");
	if (!rc)
		rc = put(b, "qkm_etsi014_refused_total{node=\"%s\",limit=\"rate\"} %llu\n", s->id,
			 (unsigned long long)s->refused_rate);
	if (!rc)
		rc = put(b, "qkm_etsi014_refused_total{node=\"%s\",limit=\"in_flight\"} %llu\n",
			 s->id, (unsigned long long)s->refused_in_flight);
	static const char *const link_names[] = {
		"qkm_link_kx_up",          "qkm_link_reconciled",   "qkm_link_module_up",
		"qkm_link_qber",           "qkm_link_key_rate_bps", "qkm_link_buffered_bytes",
		"qkm_link_rounds_in_flight",
	};
	static const char *const link_help[] = {
		"1 if the Kx link to the peer KMA is open.",
		"1 if the pair reconciled since the link came up (pool usable).",
		"1 if the QKD module reports the link up.",
		"Quantum bit error rate reported by the module.",
		"Secure key rate reported by the module, bit/s.",
		"QKD-key bytes received and not yet confirmed.",
		"Acquisition rounds in flight.",
	};
	for (size_t m = 0; !rc && m < sizeof(link_names) / sizeof(link_names[0]); m++) {
		rc = head(b, link_names[m], "gauge", link_help[m]);
		for (size_t i = 0; !rc && i < s->n_links; i++) {
			const struct qkm_status_link *l = &s->links[i];
			double v = m == 0 ? l->kx_up
				 : m == 1 ? l->reconciled
				 : m == 2 ? l->module_up
				 : m == 3 ? l->qber
				 : m == 4 ? (double)l->rate_bps
				 : m == 5 ? (double)l->buffered_bytes
					  : (double)l->in_flight;
			rc = put(b, "%s{node=\"%s\",peer=\"%s\",link=\"%s\"} %.10g\n", link_names[m], s->id,
				 l->peer, l->link, v);
		}
	}
	if (!rc)
		rc = head(b, "qkm_link_alarm", "gauge", "1 while the QKD module raises an alarm.");
	for (size_t i = 0; !rc && i < s->n_links; i++) {
		char a[160];
		if (!s->links[i].alarm[0])
			continue;
		esc(s->links[i].alarm, a, sizeof(a));
		rc = put(b, "qkm_link_alarm{node=\"%s\",peer=\"%s\",link=\"%s\",alarm=\"%s\"} 1\n",
			 s->id, s->links[i].peer, s->links[i].link, a);
	}
	return rc;
}
