/* config.h - the configuration of each daemon and of a whole network
 * (topology), as plain structs. Parsing and writing JSON is in
 * proto/config_json.c; semantic checks (names valid, peers known) are there
 * too, so a config that parses is a config that can run. */
#ifndef QKM_CORE_CONFIG_H
#define QKM_CORE_CONFIG_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "core/id.h"

#define QKM_ADDR_MAX 128
#define QKM_MAX_LINKS 32
#define QKM_MAX_NODES 64
#define QKM_MAX_SAES 256
#define QKM_MAX_TOPO_LINKS 256
#define QKM_MAX_PATH 16              /* nodes on a relay route, ends included */

struct qkm_tls_paths {
	char ca[PATH_MAX];
	char cert[PATH_MAX];
	char key[PATH_MAX];
};

/* Where a link's QKD-key files come from (Kq-1, R-ACQ-5): the simulator
 * (over the Kq-1 link of docs/protocol.md 4.1), a QKD device's own ETSI GS
 * QKD 014 key API, or a spool directory a module driver writes files into.
 * Each source hands acquisition the same stream of QKD-key files. */
enum qkm_source_kind { QKM_SRC_SIM = 0, QKM_SRC_ETSI014, QKM_SRC_SPOOL };

struct qkm_key_source {
	enum qkm_source_kind kind;
	uint32_t poll_ms;            /* etsi014, spool: how often to look for keys */
	/* spool */
	char dir[PATH_MAX];          /* complete files NAME.qkd, in name order */
	/* etsi014 */
	char url[QKM_ADDR_MAX + 16]; /* the device's KME, "https://host:port" */
	char sae[QKM_NAME_MAX];      /* this node's SAE ID at the device */
	char peer_sae[QKM_NAME_MAX]; /* the other node's SAE ID at its device */
	bool master;                 /* role "master": enc_keys; "slave": dec_keys */
	struct qkm_tls_paths tls;    /* ca, cert, key for mutual TLS with the device */
	uint32_t batch;              /* master: keys per enc_keys request */
	uint32_t size_bits;          /* master: bits per key */
};

/* One QKD link of a node: the module it reads and the KMA at the other end. */
struct qkm_node_link {
	char link[QKM_NAME_MAX];     /* link name, e.g. "A-B" */
	char peer[QKM_NAME_MAX];     /* node at the other end */
	char addr[QKM_ADDR_MAX];     /* peer's Kx address; dialled if we lead */
	char module[QKM_NAME_MAX];   /* our QKD module's ID on this link */
	uint32_t kma_unit_bits;      /* KMA-key length (R-ACQ-2); multiple of 8 */
	uint32_t batch_ms;           /* confirmation round period */
	uint32_t batch_max_bytes;    /* most key bytes per confirmation round */
	struct qkm_key_source src;   /* where the QKD-key files come from */
};

struct qkm_node_sae {
	char id[QKM_NAME_MAX];
	char node[QKM_NAME_MAX];
};

/* One SAE of the controller's access list: registered at node, or revoked. */
struct qkm_sae_entry {
	char id[QKM_NAME_MAX];
	char node[QKM_NAME_MAX];
	bool revoked;
};

struct qkm_saes; /* core/saes.h */

/* A relay route from this node to a node it has no QKD link with:
 * path[0] is this node, path[n - 1] is `to`, path[1] a link peer. Until the
 * controller provides routes (R-REL-6) they come from the topology's
 * shortest paths (core/route.h), written into node.json by `qkm net up`. */
struct qkm_node_route {
	char to[QKM_NAME_MAX];
	uint32_t n;
	char path[QKM_MAX_PATH][QKM_NAME_MAX];
};

/* Relay policy of a node (R-REL-3, R-REL-4, R-REL-7). */
struct qkm_relay_cfg {
	char mode[32];               /* "otp" (hop by hop), "xor-at-destination", "central-xor" */
	char central[QKM_NAME_MAX];  /* central-xor: the combining node */
	bool aes_fallback;           /* AES-256-GCM on a hop that lacks link key */
	bool rng;                    /* key_source "rng": end-to-end keys from the OS RNG;
				      * false ("link"): from the first hop's link key */
	char rng_device[PATH_MAX];   /* "" = getrandom(2); else read from this device */
	uint32_t batch_bytes;        /* key bytes per relay message */
	uint64_t low_bytes;          /* relay ahead of demand below this per pool... */
	uint64_t high_bytes;         /* ...until this */
	uint32_t hold_s;             /* a relay node holds a frame whose next hop is
				      * short of link key this long at most (0: never) */
	uint32_t hold_mib;           /* frames held at once, in all, MiB */
};
#define QKM_RELAY_HOLD_S 10
#define QKM_RELAY_HOLD_S_MAX 3600
#define QKM_RELAY_HOLD_MIB 64
#define QKM_RELAY_HOLD_MIB_MAX 4096

/* The node.json defaults (docs/config.md) of everything but mode, central,
 * aes_fallback, key_source and rng_device. */
static inline void qkm_relay_defaults(struct qkm_relay_cfg *r)
{
	r->batch_bytes = 65536;
	r->low_bytes = 262144;
	r->high_bytes = 1048576;
	r->hold_s = QKM_RELAY_HOLD_S;
	r->hold_mib = QKM_RELAY_HOLD_MIB;
}

/* Where another node's KMA listens (Kx): for direct KMA links to a node
 * that is not a neighbour (clause 9 relay modes, R-REL-7). */
struct qkm_node_dir {
	char id[QKM_NAME_MAX];
	char kx[QKM_ADDR_MAX];
};

/* The QKDN controller a node reports to (Ck/Mk). addr "" = none: routes
 * and SAE registrations come from node.json alone. */
struct qkm_node_ctl {
	char addr[QKM_ADDR_MAX];
	char id[QKM_NAME_MAX];       /* its certificate's CN */
};

/* Per-SAE limits at the ETSI 014 interface (ksa/limit.h, docs/config.md):
 * one application flooding its node must not starve the others. 0 turns a
 * limit off. The defaults are above what one node serves today (README,
 * Performance), so they stop only a runaway client. */
struct qkm_limits_cfg {
	uint32_t sae_rate;           /* requests per second per SAE */
	uint32_t sae_burst;          /* requests an SAE that was quiet may send at once */
	uint32_t sae_in_flight;      /* requests per SAE held waiting for an answer */
};
#define QKM_LIMIT_SAE_RATE 20000
#define QKM_LIMIT_SAE_BURST 40000
#define QKM_LIMIT_SAE_IN_FLIGHT 256
#define QKM_LIMIT_MAX 1000000        /* highest value of each field */

#define QKM_RETENTION_S 604800   /* retention_s: 7 days */
#define QKM_RETENTION_MIN_S 60
#define QKM_RETENTION_MAX_S 315360000 /* 10 years */

static inline void qkm_limits_defaults(struct qkm_limits_cfg *l)
{
	l->sae_rate = QKM_LIMIT_SAE_RATE;
	l->sae_burst = QKM_LIMIT_SAE_BURST;
	l->sae_in_flight = QKM_LIMIT_SAE_IN_FLIGHT;
}

struct qkm_node_cfg {
	char id[QKM_NAME_MAX];
	char db[PATH_MAX];
	char log_level[16];
	bool ksa;                    /* false: relay-only node (R-EL-2) */
	bool preserve;               /* after_supply: "preserve" keeps key bytes (R-SUP-8) */
	uint32_t retention_s;        /* history kept: supplied KSA keys' rows, records the
				      * manager holds (0: all of it, for ever) */
	struct qkm_tls_paths tls;
	char kx_listen[QKM_ADDR_MAX];
	char admin_listen[QKM_ADDR_MAX];
	char etsi014_listen[QKM_ADDR_MAX];
	char sim[QKM_ADDR_MAX];      /* Kq-1/Kq-2 source: the simulator's address */
	size_t n_links;
	struct qkm_node_link links[QKM_MAX_LINKS];
	size_t n_saes;
	struct qkm_node_sae saes[QKM_MAX_SAES];
	size_t n_routes;
	struct qkm_node_route routes[QKM_MAX_NODES];
	struct qkm_relay_cfg relay;
	struct qkm_limits_cfg limits;
	size_t n_dir;
	struct qkm_node_dir dir[QKM_MAX_NODES];
	struct qkm_node_ctl controller;
	/* Run time, not configuration: the live access list (core/saes.h)
	 * once the node runs, consulted by qkm_sae_node(); NULL = saes[]. */
	struct qkm_saes *registry;
};

/* The QKDN controller and manager (`qkm controller`, ctl.json). */
struct qkm_ctl_cfg {
	char id[QKM_NAME_MAX];
	char db[PATH_MAX];           /* the manager's ledger (store/ledger.h) */
	char log_level[16];
	struct qkm_tls_paths tls;
	char ca_dir[PATH_MAX];       /* the network CA (ca.pem, ca.key): issues SAE certificates */
	char sae_dir[PATH_MAX];      /* where issued SAE certificates and keys are written */
	char ck_listen[QKM_ADDR_MAX];  /* Ck/Mk: nodes connect here */
	char api_listen[QKM_ADDR_MAX]; /* HTTPS JSON API for `qkm ctl` and the dashboard */
	char topology[PATH_MAX];     /* the network's topology file */
	char mode[16];               /* routing mode: manual, fixed-rate, adaptive, scheduled */
};

struct qkm_sim_link {
	char id[QKM_NAME_MAX];
	uint64_t rate_bps;
	uint32_t unit_bits;
	double qber;
	double qber_threshold;       /* above: alarm, no key produced */
	char node[2][QKM_NAME_MAX];  /* side 0 ("a") and side 1 ("b") */
	char module[2][QKM_NAME_MAX];
	char spool[2][PATH_MAX];     /* "" = Kq-1; else write that side's key files
				      * into this spool directory (NAME.tmp, renamed
				      * to NAME.qkd when complete) */
	char etsi014[QKM_ADDR_MAX];  /* "" = none; else the module pair's ETSI GS QKD
				      * 014 key API listens here: side 0's node is the
				      * master SAE, side 1's the slave (sim/kme.h) */
};

struct qkm_sim_cfg {
	char name[QKM_NAME_MAX];
	char log_level[16];
	struct qkm_tls_paths tls;
	char listen[QKM_ADDR_MAX];
	char control[PATH_MAX];      /* Unix socket for `qkm sim fault` */
	uint32_t backlog_bytes;      /* per module: keys kept while its node is away */
	size_t n_links;
	struct qkm_sim_link links[QKM_MAX_TOPO_LINKS];
};

struct qkm_topology {
	char name[QKM_NAME_MAX];         /* the network's name; "" if the file gives none */
	size_t n_nodes;
	struct qkm_topo_node {
		char id[QKM_NAME_MAX];
		bool ksa;
	} nodes[QKM_MAX_NODES];
	size_t n_links;
	struct qkm_topo_link {
		char a[QKM_NAME_MAX], b[QKM_NAME_MAX];
		uint64_t rate_bps;
		uint32_t unit_bits;
		double qber;
		enum qkm_source_kind source; /* how the nodes take the link's keys */
	} links[QKM_MAX_TOPO_LINKS];
	size_t n_saes;
	struct qkm_node_sae saes[QKM_MAX_SAES];
	struct qkm_topo_policy {
		char relay[32];          /* "otp" | "xor-at-destination" | "central-xor" */
		char central[QKM_NAME_MAX]; /* central-xor: the combining node */
		char key_source[8];      /* "link" | "rng" */
		bool aes_fallback;
		char after_supply[16];   /* "delete" | "preserve" */
		uint32_t retention_s; /* copied into every node's retention_s */
		char routing[16];        /* the controller's first rerouting mode (R-CTL-4) */
		struct qkm_limits_cfg limits; /* copied into every node's limits */
	} policy;
};

/* DIR/network.json, written by `qkm net up` (INTERFACES.md). */
struct qkm_network {
	char dir[PATH_MAX];
	char ca[PATH_MAX];
	char admin_cert[PATH_MAX], admin_key[PATH_MAX];
	size_t n_nodes;
	struct {
		char id[QKM_NAME_MAX];
		char etsi014[QKM_ADDR_MAX + 16]; /* https URL, "" for relay-only */
		char admin[QKM_ADDR_MAX + 16];
		char config[PATH_MAX];
		char log[PATH_MAX];
		int pid;
	} nodes[QKM_MAX_NODES];
	size_t n_saes;
	struct {
		char id[QKM_NAME_MAX], node[QKM_NAME_MAX];
		char cert[PATH_MAX], key[PATH_MAX];
	} saes[QKM_MAX_SAES];
	char sim_control[PATH_MAX];
	char sim_config[PATH_MAX];
	char sim_log[PATH_MAX];
	int sim_pid;
	char ctl_api[QKM_ADDR_MAX + 16]; /* https URL; "" without a controller */
	char ctl_config[PATH_MAX];
	char ctl_log[PATH_MAX];
	int ctl_pid;
};

/* Routing modes of the controller (R-CTL-4). */
static inline bool qkm_route_mode_valid(const char *m)
{
	return strcmp(m, "manual") == 0 || strcmp(m, "fixed-rate") == 0 ||
	       strcmp(m, "adaptive") == 0 || strcmp(m, "scheduled") == 0;
}

const char *qkm_saes_node(const struct qkm_saes *r, const char *sae);

/* The node an SAE is registered at (the live registry if the node has one,
 * else n->saes), or NULL if unknown or revoked. */
static inline const char *qkm_sae_node(const struct qkm_node_cfg *n, const char *sae)
{
	if (n->registry)
		return qkm_saes_node(n->registry, sae);
	for (size_t i = 0; i < n->n_saes; i++)
		if (strcmp(n->saes[i].id, sae) == 0)
			return n->saes[i].node;
	return NULL;
}

#endif
