/* metrics.c - Prometheus text exposition (metrics.h): the writer, and a
 * node's families. Every family gets its HELP and TYPE lines even with no
 * sample, so a scrape always shows what there is to see; label values are
 * escaped whatever they are (entity names cannot hold a quote, backslash or
 * newline, but the writer does not rely on it). */
#include "proto/metrics.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* ---- writer ---------------------------------------------------------------- */

static void put(struct qkm_prom *w, const char *s, size_t n)
{
	if (!w->err)
		w->err = qkm_buf_put(w->b, s, n);
}

static void puts_(struct qkm_prom *w, const char *s)
{
	put(w, s, strlen(s));
}

/* A label value between quotes: \ " and newline escaped. */
static void put_value(struct qkm_prom *w, const char *v)
{
	put(w, "\"", 1);
	for (const char *p = v; *p; p++) {
		size_t run = strcspn(p, "\\\"\n");
		put(w, p, run);
		p += run;
		if (!*p)
			break;
		put(w, *p == '\n' ? "\\n" : *p == '"' ? "\\\"" : "\\\\", 2);
	}
	put(w, "\"", 1);
}

void qkm_prom_family(struct qkm_prom *w, const char *name, const char *type, const char *help)
{
	puts_(w, "# HELP ");
	puts_(w, name);
	put(w, " ", 1);
	puts_(w, help);
	puts_(w, "\n# TYPE ");
	puts_(w, name);
	put(w, " ", 1);
	puts_(w, type);
	put(w, "\n", 1);
}

/* name{labels from ap[, extra_k="extra_v"]} and the space before the value. */
static void head(struct qkm_prom *w, const char *name, const char *suffix, va_list ap,
		 const char *extra_k, const char *extra_v)
{
	const char *k[QKM_PROM_MAX_LABELS + 1], *v[QKM_PROM_MAX_LABELS + 1];
	size_t n = 0;
	const char *key;
	while ((key = va_arg(ap, const char *)) != NULL) {
		const char *val = va_arg(ap, const char *);
		if (!val || n == QKM_PROM_MAX_LABELS) {
			if (!w->err)
				w->err = QKM_EINVAL;
			return;
		}
		k[n] = key;
		v[n++] = val;
	}
	if (extra_k) {
		k[n] = extra_k;
		v[n++] = extra_v;
	}
	puts_(w, name);
	puts_(w, suffix);
	for (size_t i = 0; i < n; i++) {
		put(w, i ? "," : "{", 1);
		puts_(w, k[i]);
		put(w, "=", 1);
		put_value(w, v[i]);
	}
	if (n)
		put(w, "}", 1);
	put(w, " ", 1);
}

static void put_u64(struct qkm_prom *w, uint64_t v)
{
	char num[24];
	int len = snprintf(num, sizeof(num), "%llu\n", (unsigned long long)v);
	put(w, num, (size_t)len);
}

static void put_f64(struct qkm_prom *w, double v)
{
	char num[40];
	int len = isnan(v)   ? snprintf(num, sizeof(num), "NaN\n")
		  : isinf(v) ? snprintf(num, sizeof(num), "%s\n", v > 0 ? "+Inf" : "-Inf")
			     : snprintf(num, sizeof(num), "%.10g\n", v);
	put(w, num, (size_t)len);
}

void qkm_prom_u64(struct qkm_prom *w, const char *name, uint64_t v, ...)
{
	va_list ap;
	va_start(ap, v);
	head(w, name, "", ap, NULL, NULL);
	va_end(ap);
	put_u64(w, v);
}

void qkm_prom_f64(struct qkm_prom *w, const char *name, double v, ...)
{
	va_list ap;
	va_start(ap, v);
	head(w, name, "", ap, NULL, NULL);
	va_end(ap);
	put_f64(w, v);
}

void qkm_prom_hist(struct qkm_prom *w, const char *name, const struct qkm_hist *h, ...)
{
	va_list ap;
	uint64_t cum = 0;
	char le[24];
	for (int i = 0; i <= QKM_HIST_N; i++) {
		cum += h->bucket[i];
		if (i < QKM_HIST_N)
			snprintf(le, sizeof(le), "%g", (double)qkm_hist_le_ns[i] / 1e9);
		else
			snprintf(le, sizeof(le), "+Inf");
		va_start(ap, h);
		head(w, name, "_bucket", ap, "le", le);
		va_end(ap);
		put_u64(w, cum);
	}
	/* The sum in seconds, exact to the nanosecond. */
	char sum[48];
	int len = snprintf(sum, sizeof(sum), "%llu.%09llu\n",
			   (unsigned long long)(h->sum_ns / 1000000000u),
			   (unsigned long long)(h->sum_ns % 1000000000u));
	va_start(ap, h);
	head(w, name, "_sum", ap, NULL, NULL);
	va_end(ap);
	put(w, sum, (size_t)len);
	va_start(ap, h);
	head(w, name, "_count", ap, NULL, NULL);
	va_end(ap);
	put_u64(w, h->count);
}

/* ---- ETSI 014 endpoints ------------------------------------------------------ */

static const char *const ep_names[QKM_EP_N] = {"status", "enc_keys", "dec_keys", "other"};

const char *qkm_etsi_endpoint_name(enum qkm_etsi_endpoint ep)
{
	return (unsigned)ep < QKM_EP_N ? ep_names[ep] : "other";
}

enum qkm_etsi_endpoint qkm_etsi_endpoint_of(const char *path)
{
	static const char pre[] = "/api/v1/keys/";
	const char *last = path ? strrchr(path, '/') : NULL;
	if (!last || strncmp(path, pre, sizeof(pre) - 1) != 0 || last < path + sizeof(pre) - 1)
		return QKM_EP_OTHER;
	for (int i = 0; i < QKM_EP_OTHER; i++)
		if (strcmp(last + 1, ep_names[i]) == 0)
			return (enum qkm_etsi_endpoint)i;
	return QKM_EP_OTHER;
}

/* ---- a node ------------------------------------------------------------------ */

static void pools(struct qkm_prom *w, const struct qkm_node_status *s)
{
	static const struct {
		const char *name, *type, *help;
		size_t off;
	} m[] = {
		{"qkm_pool_keys", "gauge", "Usable KMA-keys in the pool shared with a peer.",
		 offsetof(struct qkm_status_pool, keys)},
		{"qkm_pool_bytes", "gauge", "Usable key bytes in the pool shared with a peer.",
		 offsetof(struct qkm_status_pool, bytes)},
		{"qkm_pool_enc_bytes", "gauge", "Usable key bytes this node encrypts with.",
		 offsetof(struct qkm_status_pool, enc_bytes)},
		{"qkm_pool_dec_bytes", "gauge", "Usable key bytes this node decrypts with.",
		 offsetof(struct qkm_status_pool, dec_bytes)},
		{"qkm_pool_pending_keys", "gauge",
		 "KMA-keys stored but not yet confirmed by the peer.",
		 offsetof(struct qkm_status_pool, pending_keys)},
		{"qkm_pool_stock_keys", "gauge",
		 "KSA keys made ahead for applications, waiting here.",
		 offsetof(struct qkm_status_pool, stock_keys)},
		{"qkm_pool_consumed_bytes_total", "counter",
		 "Key bytes consumed from the pool (supply, relay, cancellations), ever.",
		 offsetof(struct qkm_status_pool, consumed_bytes)},
	};
	for (size_t f = 0; f < sizeof(m) / sizeof(m[0]); f++) {
		qkm_prom_family(w, m[f].name, m[f].type, m[f].help);
		for (size_t i = 0; i < s->n_pools; i++) {
			const struct qkm_status_pool *p = &s->pools[i];
			uint64_t v;
			memcpy(&v, (const char *)p + m[f].off, sizeof(v));
			qkm_prom_u64(w, m[f].name, v, "node", s->id, "peer", p->peer, "kind",
				     p->kind, QKM_PROM_END);
		}
	}
	qkm_prom_family(w, "qkm_pool_consumption_bytes_per_second", "gauge",
			"Key bytes consumed from the pool per second, exponentially weighted "
			"over about 10 s.");
	for (size_t i = 0; i < s->n_pools; i++)
		qkm_prom_f64(w, "qkm_pool_consumption_bytes_per_second", s->pools[i].consume_rate,
			     "node", s->id, "peer", s->pools[i].peer, "kind", s->pools[i].kind,
			     QKM_PROM_END);
}

static void counters(struct qkm_prom *w, const struct qkm_node_status *s)
{
	const struct qkm_status_relay *r = &s->relay;
	const struct {
		const char *name, *help;
		uint64_t v;
	} m[] = {
		{"qkm_acquired_bytes_total", "Key bytes acquired and confirmed by both ends, ever.",
		 (uint64_t)s->acquired_bytes},
		{"qkm_aborted_batches_total", "Acquisition rounds discarded by both ends, ever.",
		 (uint64_t)s->aborted_batches},
		{"qkm_supplied_keys_total",
		 "KSA keys recorded supplied (to masters and to slaves), ever.",
		 (uint64_t)s->supplied_keys},
		{"qkm_ksa_pruned_keys_total",
		 "KSA keys whose rows (metadata) this node deleted retention_s after their supply, ever.",
		 (uint64_t)s->ksa_pruned_keys},
		{"qkm_relayed_bytes_total",
		 "End-to-end key bytes this node relayed as origin and the destination confirmed, "
		 "ever.",
		 (uint64_t)s->relayed_bytes},
		{"qkm_relays_started_total", "Relays started as origin since the node started.",
		 r->started},
		{"qkm_relays_confirmed_total",
		 "Relays the destination confirmed, as origin, since the node started.",
		 r->confirmed},
		{"qkm_relays_failed_total",
		 "Relays that failed here (as origin) or were discarded here (tag, sequence, "
		 "starved hop), since the node started.",
		 r->failed},
		{"qkm_relays_forwarded_total",
		 "Relays passed on as a relay node since the node started.", r->forwarded},
		{"qkm_relays_held_total",
		 "Relays that waited here, as a relay node, for link key on their next hop, since "
		 "the node started.",
		 r->held},
		{"qkm_relays_received_total",
		 "Relays stored as destination since the node started.", r->received},
		{"qkm_relay_forwarded_bytes_total",
		 "Key bytes passed on as a relay node since the node started.", r->forwarded_bytes},
		{"qkm_relay_received_bytes_total",
		 "Key bytes stored as relay destination since the node started.",
		 r->received_bytes},
		{"qkm_relay_link_bytes_total",
		 "Link key bytes spent on relay (pads, MAC keys) since the node started.",
		 r->link_bytes},
	};
	for (size_t f = 0; f < sizeof(m) / sizeof(m[0]); f++) {
		qkm_prom_family(w, m[f].name, "counter", m[f].help);
		qkm_prom_u64(w, m[f].name, m[f].v, "node", s->id, QKM_PROM_END);
	}
	qkm_prom_family(w, "qkm_relays_in_flight", "gauge",
			"Relays sent as origin and not yet confirmed or failed.");
	qkm_prom_u64(w, "qkm_relays_in_flight", r->in_flight, "node", s->id, QKM_PROM_END);
	qkm_prom_family(w, "qkm_store_bytes", "gauge",
			"Bytes on disk of the node's key store: the SQLite database (db), its WAL "
			"(wal) and the key-data file (keys).");
	qkm_prom_u64(w, "qkm_store_bytes", s->store_db_bytes, "node", s->id, "file", "db",
		     QKM_PROM_END);
	qkm_prom_u64(w, "qkm_store_bytes", s->store_wal_bytes, "node", s->id, "file", "wal",
		     QKM_PROM_END);
	qkm_prom_u64(w, "qkm_store_bytes", s->store_keys_bytes, "node", s->id, "file", "keys",
		     QKM_PROM_END);
	qkm_prom_family(w, "qkm_ready", "gauge",
			"1 while the node is ready (/readyz answers 200).");
	qkm_prom_u64(w, "qkm_ready", s->ready ? 1 : 0, "node", s->id, QKM_PROM_END);
}

/* Link family f's value for l (f indexes links()'s table; 4 is the QBER,
 * a fraction, written apart). */
static uint64_t link_u64(const struct qkm_status_link *l, size_t f)
{
	switch (f) {
	case 0: return l->kx_up;
	case 1: return l->reconciled;
	case 2: return l->module_up;
	case 3: return l->alarm[0] != 0;
	case 5: return l->rate_bps;
	case 6: return l->buffered_bytes;
	case 7: return l->in_flight;
	case 8: return l->acquired_bytes;
	case 9: return l->aborted_batches;
	default: return l->discarded_qkd_keys;
	}
}

static void links(struct qkm_prom *w, const struct qkm_node_status *s)
{
	static const struct {
		const char *name, *type, *help;
	} m[] = {
		{"qkm_link_kx_up", "gauge", "1 if the Kx link to the peer KMA is open."},
		{"qkm_link_reconciled", "gauge",
		 "1 if the pair reconciled since the link came up (pool usable)."},
		{"qkm_link_module_up", "gauge", "1 if the QKD module reports the link up."},
		{"qkm_link_alarm", "gauge",
		 "1 while the QKD module raises an alarm (its text: /status and the log)."},
		{"qkm_link_qber", "gauge", "Quantum bit error rate reported by the module."},
		{"qkm_link_key_rate_bps", "gauge",
		 "Secure key rate reported by the module, bit/s."},
		{"qkm_link_buffered_bytes", "gauge",
		 "QKD-key bytes received and not yet confirmed."},
		{"qkm_link_rounds_in_flight", "gauge", "Acquisition rounds in flight."},
		{"qkm_link_acquired_bytes_total", "counter",
		 "Key bytes acquired on the link since the node started."},
		{"qkm_link_aborted_batches_total", "counter",
		 "Acquisition rounds discarded on the link since the node started."},
		{"qkm_link_discarded_qkd_keys_total", "counter",
		 "QKD-keys lost on one side (or overflowing the buffer) since the node started."},
	};
	for (size_t f = 0; f < sizeof(m) / sizeof(m[0]); f++) {
		qkm_prom_family(w, m[f].name, m[f].type, m[f].help);
		for (size_t i = 0; i < s->n_links; i++) {
			const struct qkm_status_link *l = &s->links[i];
			if (f == 4)
				qkm_prom_f64(w, m[f].name, l->qber, "node", s->id, "peer", l->peer,
					     "link", l->link, QKM_PROM_END);
			else
				qkm_prom_u64(w, m[f].name, link_u64(l, f), "node", s->id, "peer",
					     l->peer, "link", l->link, QKM_PROM_END);
		}
	}
}

static void etsi(struct qkm_prom *w, const char *node, const struct qkm_metrics_etsi *e)
{
	char code[8];
	qkm_prom_family(w, "qkm_etsi014_requests_total", "counter",
			"ETSI 014 requests answered, by caller (SAE ID), endpoint and HTTP status, "
			"since the node started.");
	for (size_t i = 0; e && i < e->n; i++) {
		const struct qkm_metrics_answer *a = &e->a[i];
		snprintf(code, sizeof(code), "%u", (unsigned)a->code);
		qkm_prom_u64(w, "qkm_etsi014_requests_total", a->count, "node", node, "sae", a->sae,
			     "endpoint", qkm_etsi_endpoint_name(a->endpoint), "code", code,
			     QKM_PROM_END);
	}
	qkm_prom_family(
		w, "qkm_etsi014_refusals_total", "counter",
		"ETSI 014 requests answered with an error, by caller, endpoint, HTTP status "
		"and reason, since the node started.");
	for (size_t i = 0; e && i < e->n; i++) {
		const struct qkm_metrics_answer *a = &e->a[i];
		if (a->code == 200)
			continue;
		snprintf(code, sizeof(code), "%u", (unsigned)a->code);
		qkm_prom_u64(w, "qkm_etsi014_refusals_total", a->count, "node", node, "sae", a->sae,
			     "endpoint", qkm_etsi_endpoint_name(a->endpoint), "code", code,
			     "reason", a->reason, QKM_PROM_END);
	}
	qkm_prom_family(w, "qkm_etsi014_keys_supplied_total", "counter",
			"Keys given in ETSI 014 answers (enc_keys to masters, dec_keys to slaves), "
			"by caller and endpoint, since the node started.");
	for (size_t i = 0; e && i < e->n; i++) {
		const struct qkm_metrics_answer *a = &e->a[i];
		if (a->code == 200 && a->endpoint != QKM_EP_STATUS)
			qkm_prom_u64(w, "qkm_etsi014_keys_supplied_total", a->keys, "node", node,
				     "sae", a->sae, "endpoint", qkm_etsi_endpoint_name(a->endpoint),
				     QKM_PROM_END);
	}
	qkm_prom_family(w, "qkm_etsi014_requests_unlabelled_total", "counter",
			"ETSI 014 answers not counted by caller (the table of callers was full); "
			"they are in the latency histograms.");
	qkm_prom_u64(w, "qkm_etsi014_requests_unlabelled_total", e ? e->unlabelled : 0, "node",
		     node, QKM_PROM_END);
	qkm_prom_family(
		w, "qkm_etsi014_request_duration_seconds", "histogram",
		"ETSI 014 requests from arrival at the front end to the answer, by endpoint.");
	for (int ep = 0; e && ep < QKM_EP_N; ep++)
		qkm_prom_hist(w, "qkm_etsi014_request_duration_seconds", &e->latency[ep], "node",
			      node, "endpoint", qkm_etsi_endpoint_name((enum qkm_etsi_endpoint)ep),
			      QKM_PROM_END);
}

int qkm_metrics_format(const struct qkm_node_status *s, const struct qkm_metrics_etsi *e,
		       struct qkm_buf *b)
{
	struct qkm_prom w;
	qkm_prom_init(&w, b);
	pools(&w, s);
	counters(&w, s);
	qkm_prom_family(&w, "qkm_etsi014_refused_total", "counter",
			"ETSI 014 requests refused (503) for being over their SAE's limits, by "
			"limit, since the node started.");
	qkm_prom_u64(&w, "qkm_etsi014_refused_total", s->refused_rate, "node", s->id, "limit",
		     "rate", QKM_PROM_END);
	qkm_prom_u64(&w, "qkm_etsi014_refused_total", s->refused_in_flight, "node", s->id, "limit",
		     "in_flight", QKM_PROM_END);
	etsi(&w, s->id, e);
	links(&w, s);
	return qkm_prom_end(&w);
}
