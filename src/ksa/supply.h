/* supply.h - the KSA of one node (Y.3803 8.2.2, 8.2.4): key requests from
 * applications over ETSI GS QKD 014 (Ak), checked against the registered
 * SAEs (R-SUP-1), served from the pool shared with the slave's node; the
 * KSA pair compare a digest of the KSA-key IDs and data over the KSA link and
 * the slave's node stores the keys durably before the master gets its answer
 * (R-SUP-6); the slave gets each key once (R-SUP-7, R-SUP-8).
 * A state machine over requests, frames and the store: no sockets. Its
 * owner hands it HTTP requests and Kx frames and carries out what it emits
 * (replies, frames). Concurrent requests to one peer are served in one
 * round: one digest exchange and one commit on each side. */
#ifndef QKM_KSA_SUPPLY_H
#define QKM_KSA_SUPPLY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/config.h"
#include "core/err.h"
#include "proto/etsi014.h"
#include "proto/frame.h"
#include "store/store.h"

struct qkm_supply;

/* Keys supplied to each SAE at this node are counted in the store (beside
 * "supplied_keys") under QKM_SAE_COUNTER_PREFIX "<sae>/enc" (as master,
 * enc_keys) and "<sae>/dec" (as slave, dec_keys); the node's status reports
 * them. Keys found left in stock at start (recorded supplied, to whom not
 * known) count only in "supplied_keys". */
#define QKM_SAE_COUNTER_PREFIX "sae/"

struct qkm_supply_cfg {
	char self[QKM_NAME_MAX];
	uint32_t key_size;              /* default size, bits */
	uint32_t min_key_size;
	uint32_t max_key_size;
	uint32_t max_key_per_request;
	uint32_t max_sae_count;         /* additional slaves per request */
	uint64_t max_key_count;         /* reported in status */
	bool preserve;                  /* after_supply: keep key bytes after supply */
	uint64_t round_timeout_ns;      /* peer must answer a round within this */
	uint64_t retention_ns;          /* retention_s: a supplied key's row goes this
					 * long after its supply (0: kept) */
	const struct qkm_node_cfg *node; /* registered SAEs, peers (borrowed) */
	struct qkm_stock *stock;         /* keys made ahead of demand (borrowed; NULL: none) */
};

/* Fills the limits with qkm's defaults. */
void qkm_supply_cfg_defaults(struct qkm_supply_cfg *cfg);

struct qkm_supply_ops {
	/* Sends a frame to the KSA of node peer; nonzero if it cannot. */
	int (*send)(const char *peer, const uint8_t *frame, size_t len, void *arg);
	/* True if the pool shared with peer is usable (Kx up, reconciled). */
	bool (*ready)(const char *peer, void *arg);
	/* End-to-end pools: relay at least bytes more toward peer now; 0 if
	 * relays are on their way. */
	int (*relay)(const char *peer, size_t bytes, void *arg);
	/* Why relays toward peer last failed ("" if they did not). */
	const char *(*why)(const char *peer, void *arg);
	/* Answers the application request req: HTTP status and JSON body.
	 * body may hold key bytes: it is wiped after the call. reason: for an
	 * error, a short label from a fixed set saying why (for metrics:
	 * docs/operations.md, "Metrics and health"), a static string; NULL
	 * for 200. */
	void (*reply)(void *req, int status, const char *reason, const uint8_t *body, size_t len,
		      void *arg);
	void *arg;
};

struct qkm_supply *qkm_supply_new(const struct qkm_supply_cfg *cfg, struct qkm_store *st,
				  const struct qkm_supply_ops *ops);
void qkm_supply_free(struct qkm_supply *s);

/* Ak. caller is the SAE ID from the client certificate. Each call ends in
 * exactly one ops->reply for req, now or later. */
void qkm_supply_status(struct qkm_supply *s, void *req, const char *caller, const char *slave);
void qkm_supply_enc(struct qkm_supply *s, void *req, const char *caller, const char *slave,
		    const struct qkm_etsi_key_request *r, uint64_t now_ns);
void qkm_supply_dec(struct qkm_supply *s, void *req, const char *caller, const char *master,
		    const struct qkm_etsi_key_ids *ids, uint64_t now_ns);

/* Call after a batch of events: delivers the dec_keys requests queued
 * since the last flush (one transaction, one commit, then their answers),
 * records the keys taken from stock, refills the stock and starts rounds
 * for queued enc requests. */
void qkm_supply_flush(struct qkm_supply *s, uint64_t now_ns);
/* Fails rounds whose peer did not answer in time. */
void qkm_supply_tick(struct qkm_supply *s, uint64_t now_ns);

/* KSA link: a SUPPLY* frame from peer. QKM_EPEER when the peer broke the
 * protocol (the owner drops the link). */
int qkm_supply_on_frame(struct qkm_supply *s, const char *peer, const struct qkm_frame *f,
			uint64_t now_ns) QKM_MUST_CHECK;
/* The pool shared with peer became usable (up) or not. */
void qkm_supply_on_peer(struct qkm_supply *s, const char *peer, bool up, uint64_t now_ns);

/* A request that is still waiting was abandoned by its client: forget it
 * (its keys, if a round already took them, are cancelled like any unanswered
 * round's). */
void qkm_supply_forget(struct qkm_supply *s, void *req);

#endif
