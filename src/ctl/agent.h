/* agent.h - a node's Ck/Mk agent: keeps one TLS link to the QKDN
 * controller and manager (dialled, retried with back-off), reports the
 * node's status every second (R-CTL-1, R-CTL-2), streams the node's
 * life-cycle records to the manager from where its durable copy ends
 * (R-LC-1), and applies what the controller sends: relay routes (R-REL-6),
 * the SAE access list (R-SUP-1) and deletion orders (R-LC-3). Without the
 * controller the node keeps serving with what it last had. */
#ifndef QKM_CTL_AGENT_H
#define QKM_CTL_AGENT_H

#include <event2/event.h>
#include <openssl/ssl.h>
#include <stdbool.h>

#include "core/config.h"
#include "store/store.h"

struct qkm_agent;

struct qkm_agent_ops {
	/* The node's status as JSON (malloc'd, NUL-terminated), or NULL. */
	char *(*status_json)(void *arg);
	/* The controller's routes for this node (replacing the current
	 * ones); returns how many changed, or a negative QKM_E* code. */
	int (*set_routes)(const struct qkm_node_route *r, size_t n, void *arg);
	/* A relay instruction (rerouting modes): set_rate with a rate in
	 * bytes/s (kma/relay.h QKM_RELAY_RATE_*), or bytes to relay now. */
	void (*relay)(const char *to, bool set_rate, uint64_t rate, uint32_t bytes, void *arg);
	/* Deletes the keys a compromise order names (JSON text, len bytes);
	 * returns the report as JSON (malloc'd), or NULL. */
	char *(*delete_keys)(const char *order, size_t len, void *arg);
	void *arg;
};

/* Starts the agent for cfg->controller (which must be set); cfg->registry
 * is updated when the access list arrives. Borrowed: base, ctx, cfg, st.
 * NULL if out of memory. */
struct qkm_agent *qkm_agent_new(struct event_base *base, SSL_CTX *client_ctx,
				struct qkm_node_cfg *cfg, struct qkm_store *st,
				const struct qkm_agent_ops *ops);
void qkm_agent_free(struct qkm_agent *a);
/* True while the link to the controller is open. */
bool qkm_agent_connected(const struct qkm_agent *a);

#endif
