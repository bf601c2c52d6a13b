/* status_json.h - JSON of what operators see: a node's status (admin API),
 * a pair-check result, the network file DIR/network.json, and the merged
 * `qkm ctl status` document and table (INTERFACES.md). */
#ifndef QKM_PROTO_STATUS_JSON_H
#define QKM_PROTO_STATUS_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/config.h"
#include "core/err.h"

struct qkm_status_pool {
	char peer[QKM_NAME_MAX];
	const char *kind;              /* "link" | "relay" */
	uint64_t keys, bytes, enc_bytes, dec_bytes, pending_keys;
	uint64_t stock_keys; /* KSA keys made ahead for applications (ksa/stock.h) */
	/* Metrics only: key bytes ever consumed from the pool (store counter),
	 * and the recent rate of that, bytes/s (core/rate.h). */
	uint64_t consumed_bytes;
	double consume_rate;
};

struct qkm_status_link {
	char link[QKM_NAME_MAX], peer[QKM_NAME_MAX], module[QKM_NAME_MAX];
	bool leader, kx_up, reconciled, module_up;
	double qber;
	uint64_t rate_bps;
	char alarm[64];
	uint64_t buffered_bytes;
	uint32_t in_flight;
	/* Metrics only, since the node started (kma/acq.h qkm_acq_stats). */
	uint64_t acquired_bytes, aborted_batches, discarded_qkd_keys;
};

/* Relay since the node started (kma/relay.h qkm_relay_stats); metrics only. */
struct qkm_status_relay {
	uint64_t started, confirmed, failed, forwarded, received;
	uint64_t relayed_bytes, forwarded_bytes, received_bytes, link_bytes;
	uint64_t held;
	uint64_t in_flight;
};

/* Keys supplied to one SAE at the node since its store was made
 * (ksa/supply.h QKM_SAE_COUNTER_PREFIX). */
struct qkm_status_sae {
	char id[QKM_NAME_MAX];
	uint64_t enc_keys; /* as master (enc_keys) */
	uint64_t dec_keys; /* as slave (dec_keys) */
};

struct qkm_node_status {
	char id[QKM_NAME_MAX];
	bool ready; /* as /readyz answers (cli/node.c) */
	size_t n_pools;
	struct qkm_status_pool pools[QKM_MAX_LINKS + QKM_MAX_NODES]; /* link, then relay */
	int64_t acquired_bytes, aborted_batches, supplied_keys, relayed_bytes;
	int64_t ksa_pruned_keys; /* rows dropped after retention_s; metrics only */
	/* ETSI 014 requests refused since the node started for being over
	 * their SAE's limits (ksa/limit.h); in memory only, metrics only. */
	uint64_t refused_rate, refused_in_flight;
	/* Bytes on disk of the key store's database, WAL and key-data file
	 * (store.h qkm_store_disk_bytes); metrics only. */
	uint64_t store_db_bytes, store_wal_bytes, store_keys_bytes;
	struct qkm_status_relay relay;
	size_t n_links;
	struct qkm_status_link links[QKM_MAX_LINKS];
	size_t n_saes;
	struct qkm_status_sae saes[QKM_MAX_SAES];
};

/* Each returns a malloc'd NUL-terminated JSON text, or NULL (out of memory). */
char *qkm_status_to_json(const struct qkm_node_status *s);
char *qkm_paircheck_to_json(const char *node, const char *peer, uint32_t matches,
			    uint32_t mismatches, uint32_t in_flight, uint32_t only_node,
			    uint32_t only_peer, const char *detail);
char *qkm_error_json(const char *message);

/* Network file. load: 0, QKM_EIO or QKM_ECONFIG with a message in err. */
int qkm_network_save(const char *path, const struct qkm_network *n) QKM_MUST_CHECK;
int qkm_network_load(const char *path, struct qkm_network *n /* OUT */, char *err,
		     size_t errsz) QKM_MUST_CHECK;

/* `qkm ctl status`: merges per-node status texts (NULL = unreachable) into
 * the INTERFACES.md document. *consistent is false when the two ends of a
 * link report different stock (a snapshot taken mid-commit; the caller may
 * retry). Returns malloc'd JSON, and a malloc'd aligned table in *table. */
char *qkm_status_merge(size_t n, const char *const *ids, const char *const *texts,
		       bool *consistent /* OUT */, char **table /* OUT */);

/* Reads the pair-check document back: 0, or QKM_EFORMAT. */
int qkm_paircheck_parse(const char *json, uint32_t *matches, uint32_t *mismatches,
			uint32_t *in_flight, char *detail, size_t detailsz) QKM_MUST_CHECK;

#endif
