/* ctl_json.h - JSON for the controller and manager: what it reads out of
 * the nodes' status reports, its HTTPS API documents (docs/controller.md),
 * its access list file and request bodies. */
#ifndef QKM_PROTO_CTL_JSON_H
#define QKM_PROTO_CTL_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/config.h"
#include "core/err.h"
#include "core/token.h"
#include "store/store.h"

/* Most tokens in one compromise order. */
#define QKM_ORDER_MAX 65536

/* A compromise order (CTL_DELETE): {"order": ID, "reason": TEXT,
 * "tokens": [...]}. */
char *qkm_order_json(const char *order, const char *reason, const char (*toks)[QKM_TOKEN_MAX],
		     size_t n);
/* Parses one (the order ID must be a valid name); toks gets at most max
 * tokens. 0 or QKM_EFORMAT/QKM_ETOOBIG. */
int qkm_order_parse(const char *json, size_t len, char order[static 64],
		    char (*toks)[QKM_TOKEN_MAX], size_t max, size_t *n /* OUT */) QKM_MUST_CHECK;

/* One QKD link as a node reports it (CTL_STATUS). */
struct qkm_link_state {
	char link[QKM_NAME_MAX], peer[QKM_NAME_MAX];
	bool up;               /* module up, Kx up, pool reconciled */
	bool alarm;            /* the module raised an alarm (e.g. QBER) */
	double qber;
	uint64_t rate_bps;
	uint64_t stock_bytes;  /* this node's own direction of the link pool */
};

/* The links in a node's status JSON. 0 or QKM_EFORMAT. */
int qkm_links_from_status(const char *json, size_t len, struct qkm_link_state *out, size_t max,
			  size_t *n /* OUT */) QKM_MUST_CHECK;

/* A JSON list under construction (for API answers). */
struct qkm_jlist;
struct qkm_jlist *qkm_jlist_new(void);
void qkm_jlist_free(struct qkm_jlist *l);
/* Appends a life-cycle record of node. 0 or QKM_ENOMEM. */
int qkm_jlist_add_record(struct qkm_jlist *l, const char *node, const struct qkm_lc_event *ev) QKM_MUST_CHECK;
/* Appends a JSON text as one element (parsed; QKM_EFORMAT if it is not JSON). */
int qkm_jlist_add_json(struct qkm_jlist *l, const char *json) QKM_MUST_CHECK;
/* Appends a string. 0 or QKM_ENOMEM. */
int qkm_jlist_add_str(struct qkm_jlist *l, const char *s) QKM_MUST_CHECK;
size_t qkm_jlist_len(const struct qkm_jlist *l);
/* The list as compact JSON (malloc'd), or, with key, the object
 * {key: list, extra members...} where extra is a JSON object text or NULL. */
char *qkm_jlist_dump(const struct qkm_jlist *l, const char *key, const char *extra);

/* {keys[i]: values[i]...} where each value is a JSON text (a number, a
 * list dumped by qkm_jlist_dump, ...) or, with strs[i] true, a plain
 * string. malloc'd, or NULL. */
char *qkm_json_object(const char *const *keys, const char *const *values, const bool *strs,
		      size_t n);

/* The controller's routing state, kept across restarts (a file beside its
 * ledger): the network's mode, per-pair modes, manual routes, the plan. */
struct qkm_ctl_pair_mode {
	char from[QKM_NAME_MAX], to[QKM_NAME_MAX];
	char mode[16];
};
struct qkm_ctl_plan {
	char from[QKM_NAME_MAX], to[QKM_NAME_MAX];
	uint64_t at_ns;                   /* when (wall clock); 0 = ran */
	uint64_t bytes;
};
struct qkm_ctl_state {
	char mode[16];
	size_t n_pair_modes, n_manual, n_plans;
	struct qkm_ctl_pair_mode pair_modes[QKM_MAX_NODES * 4];
	struct qkm_node_route manual[QKM_MAX_NODES * 4];   /* path[0] = from */
	struct qkm_ctl_plan plans[256];
};
/* Writes st to path (0600, atomically). 0 or QKM_EIO/QKM_ENOMEM. */
int qkm_ctl_state_save(const char *path, const struct qkm_ctl_state *st) QKM_MUST_CHECK;
/* Reads path into st (zeroed first); names checked, modes valid, routes of
 * 2..QKM_MAX_PATH nodes. 0, QKM_EIO (no file), or QKM_EFORMAT. */
int qkm_ctl_state_load(const char *path, struct qkm_ctl_state *st /* OUT */) QKM_MUST_CHECK;

/* Access list file (the controller's, 0600): [{"id", "node", "revoked"}].
 * Up to max entries into e, their number into *n. 0, QKM_EIO (no file or
 * not JSON) or QKM_EFORMAT. */
int qkm_saes_json_load(const char *path, struct qkm_sae_entry *e, size_t max,
		       size_t *n /* OUT */) QKM_MUST_CHECK;
/* The same from the len bytes at text; not JSON is QKM_EFORMAT. */
int qkm_saes_json_parse(const char *text, size_t len, struct qkm_sae_entry *e, size_t max,
			size_t *n /* OUT */) QKM_MUST_CHECK;
int qkm_saes_json_save(const char *path, const struct qkm_sae_entry *e, size_t n) QKM_MUST_CHECK;
char *qkm_saes_json(const struct qkm_sae_entry *e, size_t n);

/* A request body: a JSON object whose members are strings, except one
 * optional array of strings (arr_key, up to max_arr). Members not in keys
 * (or arr_key) are refused. out[i] gets keys[i] ("" when absent). 0, or
 * QKM_EFORMAT with the reason in err. */
int qkm_req_fields(const char *body, size_t len, const char *const *keys,
		   char (*out)[QKM_NAME_MAX * 2], const char *arr_key, char (*arr)[QKM_NAME_MAX],
		   size_t max_arr, size_t *n_arr, char *err, size_t errsz) QKM_MUST_CHECK;

#endif
