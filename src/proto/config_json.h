/* config_json.h - JSON codec for node, simulator and topology configs.
 * Strict: unknown fields and bad values are refused with an error naming the
 * field (e.g. "links[1].rate_bps: must be an integer >= 1"). */
#ifndef QKM_PROTO_CONFIG_JSON_H
#define QKM_PROTO_CONFIG_JSON_H

#include <stddef.h>

#include "core/config.h"
#include "core/err.h"

/* Each loads path into *out (OUT; zeroed first, defaults applied). On error
 * returns QKM_ECONFIG/QKM_EIO and writes a one-line message into err. */
int qkm_node_cfg_load(const char *path, struct qkm_node_cfg *out, char *err, size_t errsz) QKM_MUST_CHECK;
int qkm_sim_cfg_load(const char *path, struct qkm_sim_cfg *out, char *err, size_t errsz) QKM_MUST_CHECK;
int qkm_topology_load(const char *path, struct qkm_topology *out, char *err, size_t errsz) QKM_MUST_CHECK;
int qkm_ctl_cfg_load(const char *path, struct qkm_ctl_cfg *out, char *err, size_t errsz) QKM_MUST_CHECK;

/* Write a config as JSON (mode 0600, atomically). 0 or QKM_EIO. */
int qkm_node_cfg_save(const char *path, const struct qkm_node_cfg *c) QKM_MUST_CHECK;
int qkm_sim_cfg_save(const char *path, const struct qkm_sim_cfg *c) QKM_MUST_CHECK;
int qkm_ctl_cfg_save(const char *path, const struct qkm_ctl_cfg *c) QKM_MUST_CHECK;

/* Writes a JSON document from a string built by the caller: validates it
 * parses, then writes atomically with mode. Used for network.json. */
int qkm_json_save_text(const char *path, const char *text, int mode) QKM_MUST_CHECK;

#endif
