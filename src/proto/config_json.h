/* config_json.h - JSON codec for node, simulator, controller and topology
 * configs. Strict: unknown fields and bad values are refused with an error
 * naming the line and the field (e.g. "node.json:14: links[1].rate_bps:
 * must be an integer from 1 to 100000000000"). */
#ifndef QKM_PROTO_CONFIG_JSON_H
#define QKM_PROTO_CONFIG_JSON_H

#include <stddef.h>

#include "core/config.h"
#include "core/err.h"

/* Each loads path into *out (OUT; zeroed first, defaults applied). On error
 * returns QKM_ECONFIG/QKM_EIO and writes the first error found into err as
 * one line, "FILE:LINE: FIELD: message" ("FILE:LINE:COLUMN: message" for a
 * syntax error, "FILE: message" when the file cannot be read). */
int qkm_node_cfg_load(const char *path, struct qkm_node_cfg *out, char *err, size_t errsz) QKM_MUST_CHECK;
int qkm_sim_cfg_load(const char *path, struct qkm_sim_cfg *out, char *err, size_t errsz) QKM_MUST_CHECK;
int qkm_topology_load(const char *path, struct qkm_topology *out, char *err, size_t errsz) QKM_MUST_CHECK;
int qkm_ctl_cfg_load(const char *path, struct qkm_ctl_cfg *out, char *err, size_t errsz) QKM_MUST_CHECK;

/* As the _load functions, but parse the len bytes at text (no NUL needed)
 * instead of reading a file; name stands for FILE in err. 0 or QKM_ECONFIG. */
int qkm_node_cfg_parse(const char *name, const char *text, size_t len, struct qkm_node_cfg *out,
		       char *err, size_t errsz) QKM_MUST_CHECK;
int qkm_sim_cfg_parse(const char *name, const char *text, size_t len, struct qkm_sim_cfg *out,
		      char *err, size_t errsz) QKM_MUST_CHECK;
int qkm_topology_parse(const char *name, const char *text, size_t len, struct qkm_topology *out,
		       char *err, size_t errsz) QKM_MUST_CHECK;
int qkm_ctl_cfg_parse(const char *name, const char *text, size_t len, struct qkm_ctl_cfg *out,
		      char *err, size_t errsz) QKM_MUST_CHECK;

/* Every error of one file (`--check`). A syntax error stops the check (it
 * is the only error); otherwise checking goes on past each error as far as
 * the rest of the file can still be judged: a field whose value is wrong
 * is reported once, and checks that depend on it (a route's first hop
 * against the node's id, say) are skipped rather than reported too. */
#define QKM_CFG_ERRORS_MAX 64
struct qkm_cfg_error {
	unsigned line;       /* 1-based; 0: the file could not be read */
	unsigned col;        /* syntax errors only (jansson's column); else 0 */
	char text[320];      /* "FIELD: message", or the message alone */
};
struct qkm_cfg_errors {
	size_t n;            /* entries in e[], in file order (by line) */
	size_t dropped;      /* errors found once e[] was full */
	struct qkm_cfg_error e[QKM_CFG_ERRORS_MAX];
};

/* As the _load functions, but collect every error into *errs (OUT) instead
 * of the first as a string. Return 0 when there is none, else the code the
 * _load function returns. */
int qkm_node_cfg_check(const char *path, struct qkm_node_cfg *out, struct qkm_cfg_errors *errs) QKM_MUST_CHECK;
int qkm_sim_cfg_check(const char *path, struct qkm_sim_cfg *out, struct qkm_cfg_errors *errs) QKM_MUST_CHECK;
int qkm_topology_check(const char *path, struct qkm_topology *out, struct qkm_cfg_errors *errs) QKM_MUST_CHECK;
int qkm_ctl_cfg_check(const char *path, struct qkm_ctl_cfg *out, struct qkm_cfg_errors *errs) QKM_MUST_CHECK;

/* Formats e of file as one line (no newline) into out, as err above. */
void qkm_cfg_error_str(const char *file, const struct qkm_cfg_error *e, char *out, size_t outsz);

/* Write a config as JSON (mode 0600, atomically). 0 or QKM_EIO. */
int qkm_node_cfg_save(const char *path, const struct qkm_node_cfg *c) QKM_MUST_CHECK;
int qkm_sim_cfg_save(const char *path, const struct qkm_sim_cfg *c) QKM_MUST_CHECK;
int qkm_ctl_cfg_save(const char *path, const struct qkm_ctl_cfg *c) QKM_MUST_CHECK;

/* Writes a JSON document from a string built by the caller: validates it
 * parses, then writes atomically with mode. Used for network.json. */
int qkm_json_save_text(const char *path, const char *text, int mode) QKM_MUST_CHECK;

#endif
