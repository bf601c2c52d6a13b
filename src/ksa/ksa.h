/* ksa.h - the KSA's I/O shell: the ETSI GS QKD 014 HTTPS server (Ak) and
 * the KSA link frames, handed to the supply state machine (ksa/supply.h). */
#ifndef QKM_KSA_KSA_H
#define QKM_KSA_KSA_H

#include <event2/event.h>
#include <openssl/ssl.h>

#include "core/config.h"
#include "core/id.h"
#include "kma/kma.h"
#include "proto/metrics.h"
#include "store/store.h"

struct qkm_ksa;

/* Listens for applications on cfg->etsi014_listen with the node's server
 * context; uses the KMA's Kx links to reach peer KSAs. NULL on error. */
struct qkm_ksa *qkm_ksa_new(struct event_base *base, const struct qkm_node_cfg *cfg,
			    struct qkm_store *st, struct qkm_kma *kma, SSL_CTX *server_ctx);
void qkm_ksa_free(struct qkm_ksa *k);
/* Drops the KSA keys of the supply rounds of ids[0..n) from the stock made
 * ahead for applications (a compromise order); returns how many were there. */
size_t qkm_ksa_drop(struct qkm_ksa *k, const struct qkm_id *ids, size_t n);
/* Requests refused since start for being over their SAE's request rate
 * (*rate) or in-flight cap (*in_flight), both OUT; 0 for a NULL k. Safe
 * from any thread. */
void qkm_ksa_refusals(struct qkm_ksa *k, uint64_t *rate /* OUT */, uint64_t *in_flight /* OUT */);
/* Counts of every ETSI 014 answer written since start (ksa/meter.h), OUT;
 * zeros for a NULL k. Safe from any thread. */
void qkm_ksa_metrics(struct qkm_ksa *k, struct qkm_metrics_etsi *out /* OUT */);
/* True if the ETSI 014 thread's event loop ran within max_ns before now_ns
 * (qkm_mono_ns): it beats once a second. True for a NULL k. */
bool qkm_ksa_alive(struct qkm_ksa *k, uint64_t now_ns, uint64_t max_ns);
/* KSA keys in stock for applications whose slaves are at peer. */
uint64_t qkm_ksa_stock_keys(struct qkm_ksa *k, const char *peer);

#endif
