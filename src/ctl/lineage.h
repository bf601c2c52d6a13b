/* lineage.h - where a key came from and what it fed, read from the
 * manager's ledger (R-LC-2, R-LC-3). Keys are named by tokens: a KMA batch
 * (link or relayed) by the first 24 hex digits of its ID, which every
 * block and range of it shares; a KSA key by its UUID. Records link them:
 * "key data from R…" and a KSA key's "from R…" name sources; "link key R…"
 * names the link keys that protected a relay hop. */
#ifndef QKM_CTL_LINEAGE_H
#define QKM_CTL_LINEAGE_H

#include <stdbool.h>
#include <stddef.h>

#include "core/err.h"
#include "core/token.h"
#include "proto/ctl_json.h"
#include "store/ledger.h"

struct qkm_lineage;

struct qkm_lineage *qkm_lineage_new(void);
void qkm_lineage_free(struct qkm_lineage *l);

/* Adds tok and, transitively, every key it was made from (sources; with
 * protect, the link keys that carried it too), with all their records. */
int qkm_lineage_back(struct qkm_lineage *l, struct qkm_ledger *lg, const char *tok,
		     bool protect) QKM_MUST_CHECK;
/* Adds tok and, transitively, every key made from it or protected by it,
 * with all their records. */
int qkm_lineage_forward(struct qkm_lineage *l, struct qkm_ledger *lg, const char *tok) QKM_MUST_CHECK;
/* Adds every record of the ledger for which keep(node, ev, arg) is true,
 * with its key's token (the seeds of a compromise by link or node). */
int qkm_lineage_select(struct qkm_lineage *l, struct qkm_ledger *lg,
		       bool (*keep)(const char *node, const struct qkm_lc_event *ev, void *arg),
		       void *arg) QKM_MUST_CHECK;

/* The records found, oldest first. fn returns nonzero to stop. */
int qkm_lineage_records(const struct qkm_lineage *l,
			int (*fn)(const char *node, const struct qkm_lc_event *ev, void *arg),
			void *arg);
/* The tokens found, in the order found; n = how many. */
size_t qkm_lineage_n_tokens(const struct qkm_lineage *l);
const char *qkm_lineage_token(const struct qkm_lineage *l, size_t i);

#endif
