/* saes.h - the live access list of a node: which SAE is registered at which
 * node, and which are revoked (R-SUP-1). It starts from node.json and is
 * replaced by the controller's list whenever that changes; lookups run on
 * any thread (the ETSI 014 front end and the main loop) without a lock.
 * Entries are only ever appended, so a name returned stays valid for the
 * registry's lifetime; a changed registration is a new entry that
 * supersedes the old one. */
#ifndef QKM_CORE_SAES_H
#define QKM_CORE_SAES_H

#include <stdbool.h>
#include <stddef.h>

#include "core/config.h"
#include "core/err.h"

/* Room for registrations over a node's lifetime, changes included. */
#define QKM_SAES_MAX 4096

struct qkm_saes;

/* A registry holding cfg->saes. NULL if out of memory. */
struct qkm_saes *qkm_saes_new(const struct qkm_node_cfg *cfg);
void qkm_saes_free(struct qkm_saes *r);

/* The node sae is registered at, or NULL if unknown or revoked. */
const char *qkm_saes_node(const struct qkm_saes *r, const char *sae);
/* True if sae is registered (not revoked), with *slot the index of its
 * registration: stable for the registry's lifetime, below QKM_SAES_MAX
 * (per-SAE state such as rate limits hangs off it). */
bool qkm_saes_slot(const struct qkm_saes *r, const char *sae, size_t *slot /* OUT */);
/* True if sae was registered and is now revoked. */
bool qkm_saes_revoked(const struct qkm_saes *r, const char *sae);

/* Makes the list e[0..n) the access list: SAEs in it take its node and
 * state; SAEs absent from it are revoked. One writer at a time (the main
 * loop). *changed (may be NULL) counts entries that changed. QKM_ETOOBIG if
 * the registry is full (nothing after the first failing entry applies). */
int qkm_saes_set(struct qkm_saes *r, const struct qkm_sae_entry *e, size_t n,
		 size_t *changed /* OUT */) QKM_MUST_CHECK;

#endif
