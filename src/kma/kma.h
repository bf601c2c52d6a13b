/* kma.h - the KMA of one node on its event loop: it subscribes to its QKD
 * modules (Kq-1/Kq-2, from the simulator), keeps one Kx link per
 * neighbouring node (dialled by the link's leader, accepted by the
 * follower) and runs acquisition (kma/acq.h) for each QKD link. */
#ifndef QKM_KMA_KMA_H
#define QKM_KMA_KMA_H

#include <event2/event.h>
#include <openssl/ssl.h>
#include <stdbool.h>

#include "core/config.h"
#include "kma/acq.h"
#include "store/store.h"

struct qkm_kma;

/* Module (Kq-2) and Kx state of one QKD link, for status and metrics. */
struct qkm_kma_link_status {
	char link[QKM_NAME_MAX];
	char peer[QKM_NAME_MAX];
	char module[QKM_NAME_MAX];
	bool leader;
	bool kx_up;          /* Kx link to the peer KMA open */
	bool reconciled;     /* pool usable */
	bool module_up;      /* subscribed and the module reports the link up */
	uint32_t qber_ppm;
	uint64_t rate_bps;
	char alarm[64];
	struct qkm_acq_stats acq;
};

/* Starts the KMA: Kx listener on cfg->kx_listen, dials the simulator and the
 * peers it leads. st and the contexts are borrowed. NULL on error (logged). */
struct qkm_kma *qkm_kma_new(struct event_base *base, const struct qkm_node_cfg *cfg,
			    struct qkm_store *st, SSL_CTX *server_ctx, SSL_CTX *client_ctx);
void qkm_kma_free(struct qkm_kma *k);

/* Number of QKD links and the status of link i (0 <= i < n). */
size_t qkm_kma_n_links(const struct qkm_kma *k);
void qkm_kma_link_status(const struct qkm_kma *k, size_t i, struct qkm_kma_link_status *out /* OUT */);

/* Asks the KMA at the other end of the link to peer to compare their shared
 * pool (no key bytes cross). done is called exactly once, later, with the
 * result or an error (QKM_ENOTFOUND: no such peer; QKM_ESTATE: Kx down;
 * QKM_EAGAIN: no answer in 60 s). */
typedef void (*qkm_kma_paircheck_fn)(const struct qkm_paircheck_result *r, int err, void *arg);
void qkm_kma_paircheck(struct qkm_kma *k, const char *peer, qkm_kma_paircheck_fn done, void *arg);

/* Other users of the Kx links (the KSA): frames of types 40..49 go to
 * on_frame (a nonzero QKM_EPEER drops the link), and on_pool tells when the
 * pool shared with a peer becomes usable (Kx up and reconciled) or stops
 * being usable. */
struct qkm_kma_hooks {
	int (*on_frame)(const char *peer, const struct qkm_frame *f, void *arg);
	void (*on_pool)(const char *peer, bool usable, void *arg);
	void (*on_keys)(const char *peer, void *arg); /* a relay pool gained keys */
	void *arg;
};
void qkm_kma_set_hooks(struct qkm_kma *k, const struct qkm_kma_hooks *h);
/* Sends a frame to the node peer: over its Kx link if it is a neighbour,
 * else routed along the relay route (kma/relay.h). QKM_ESTATE if the
 * (first) link is down, QKM_ENOTFOUND if peer is neither. */
int qkm_kma_send(struct qkm_kma *k, const char *peer, const uint8_t *frame, size_t len) QKM_MUST_CHECK;
/* True if the pool shared with peer (a link pool, or an end-to-end pool
 * built by relay) is usable now. */
bool qkm_kma_pool_ready(const struct qkm_kma *k, const char *peer);

/* Relay on demand toward peer, and why relays there failed last
 * (kma/relay.h: qkm_relay_want, qkm_relay_why). */
int qkm_kma_relay_want(struct qkm_kma *k, const char *peer, size_t bytes) QKM_MUST_CHECK;
const char *qkm_kma_relay_why(const struct qkm_kma *k, const char *peer);
/* Applies the controller's routes (kma/relay.h qkm_relay_set_route), each
 * change logged and recorded; returns how many changed. */
int qkm_kma_set_routes(struct qkm_kma *k, const struct qkm_node_route *r, size_t n);
/* The controller's relay plan for to (kma/relay.h qkm_relay_set_rate,
 * qkm_relay_push). */
int qkm_kma_relay_plan(struct qkm_kma *k, const char *to, bool set_rate, uint64_t rate,
		       uint64_t bytes);
struct qkm_relay_stats;
void qkm_kma_relay_stats(const struct qkm_kma *k, struct qkm_relay_stats *out /* OUT */);

#endif
