/* ledger.h - the QKDN manager's durable life-cycle ledger (R-LC-1, R-LC-2):
 * every node's life-cycle records, as the node numbered them, plus the
 * manager's own, in one SQLite file, each node's records in a SHA-256 hash
 * chain so that `qkm ctl audit` detects a changed or deleted record.
 * Invariants: a node's chain holds seq 1..last with no gaps and nothing is
 * ever rewritten by this module (the table is not made append-only by
 * triggers: an edit by hand must be possible, and is what audit finds);
 * an append is durable once it returns (WAL, synchronous=FULL).
 * docs/store.md "Manager ledger" gives the schema and the hash definition.
 *
 * What the chain cannot see: records deleted from the END of a chain leave
 * a shorter chain that is valid on its own. The ledger keeps each chain's
 * head (last seq and hash) in a second table, and in memory once used, and
 * audit reports a chain shorter than either as "missing"; but whoever can
 * edit the file can set that table back too, and memory is gone after a
 * restart. The check that holds is the node's: it keeps its own records and
 * knows the last seq the controller acknowledged, so the controller compares
 * qkm_ledger_last_seq() with the last seq the node reports on its link; a
 * ledger behind what the node saw acknowledged has lost records, which the
 * node then sends again and which are stored as they were, bit for bit
 * (the chain is deterministic). */
#ifndef QKM_STORE_LEDGER_H
#define QKM_STORE_LEDGER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/err.h"
#include "core/id.h"
#include "store/store.h"

#define QKM_LEDGER_HASH_LEN 32
/* Most chains (nodes plus the manager's own) one ledger keeps heads for. */
#define QKM_LEDGER_MAX_NODES 65536

struct qkm_ledger;

/* Opens (creating if needed, mode 0600) the manager's ledger at path: WAL,
 * synchronous=FULL, busy timeout 5 s, versioned schema (user_version). 0,
 * QKM_EINVAL, QKM_ENOMEM, QKM_ECRYPTO (no SHA-256), QKM_ESTORE, or
 * QKM_EVERSION for a newer schema or a file that is not a ledger (a node's
 * key store, say). One thread at a time uses a ledger. */
int qkm_ledger_open(const char *path, struct qkm_ledger **out /* OUT */) QKM_MUST_CHECK;
/* Closes; NULL is a no-op. */
void qkm_ledger_close(struct qkm_ledger *lg);

/* *seq = the highest seq stored for node, 0 if none: where the node's next
 * batch must continue. The first call for a node reads it from the file;
 * later ones come from memory. QKM_EINVAL if node fails qkm_name_valid(). */
int qkm_ledger_last_seq(struct qkm_ledger *lg, const char *node,
			int64_t *seq /* OUT */) QKM_MUST_CHECK;

/* Appends a batch of node's records, as the node numbered them, in one
 * transaction. The seqs must run on by 1 through the batch; records at or
 * below the last stored seq are skipped if identical to what is stored (a
 * resend after a lost ack), and the first new one must be last + 1; but a
 * node's first records may start past 1 (it pruned older ones a manager
 * held before this ledger: the chain starts there, audit finds the rest
 * missing).
 * *stored = the number newly stored. Returns 0 (durable); QKM_ESTATE for a
 * gap (the first new seq is not last + 1, or the batch does not run on by
 * 1); QKM_EMISMATCH if a record at or below the last seq differs from the
 * stored one or is absent (deleted); QKM_EPERM if node is the name of the
 * manager's own chain (qkm_ledger_append_own); QKM_EINVAL for a bad node
 * name, a seq below 1 or a field not NUL-terminated in its array. On any
 * error nothing of the batch is stored and *stored = 0. evs is not changed. */
int qkm_ledger_append(struct qkm_ledger *lg, const char *node, const struct qkm_lc_event *evs,
		      size_t n, size_t *stored /* OUT */) QKM_MUST_CHECK;

/* Appends one of the manager's own records (SAE registration or revocation,
 * compromise order, route change) to the chain named ctl_id (the
 * controller's own ID), numbering it: sets ev->seq to the chain's next seq,
 * and ev->ts_ns to now if it is 0. The first append_own under a name makes
 * the chain the manager's: qkm_ledger_append() under that name is then
 * QKM_EPERM, and append_own under a node's name is QKM_EPERM too. Errors as
 * qkm_ledger_append. */
int qkm_ledger_append_own(struct qkm_ledger *lg, const char *ctl_id,
			  struct qkm_lc_event *ev /* IN/OUT: seq, ts_ns */) QKM_MUST_CHECK;

/* Calls fn for node's records with seq > after in seq order (node NULL: every
 * node's, ordered by node, then seq, each with seq > after), at most limit (0
 * = all), keeping only those whose key_id or detail contains key_sub (NULL =
 * any; a plain case-sensitive substring, no wildcards) and whose event is
 * event (NULL = any). A key_sub search reads every record of the node(s).
 * fn returns 0 to go on; anything else stops the walk and is returned. fn
 * must not append or start another walk (QKM_ESTATE); it may call
 * qkm_ledger_last_seq. */
typedef int (*qkm_ledger_fn)(const char *node, const struct qkm_lc_event *ev, void *arg);
int qkm_ledger_records(struct qkm_ledger *lg, const char *node, int64_t after, const char *key_sub,
		       const char *event, unsigned limit, qkm_ledger_fn fn, void *arg) QKM_MUST_CHECK;

/* Calls fn for every record whose key_id starts with key_prefix (a KMA batch
 * ID's 32 hex digits find the batch's records, whose key_id is "<hex>" or
 * "<hex>[first..last]"), ordered by key_id, node, seq, at most limit (0 =
 * all); through an index, so fast on a large ledger. QKM_EINVAL for an
 * empty prefix. fn as above. */
int qkm_ledger_key_records(struct qkm_ledger *lg, const char *key_prefix, unsigned limit,
			   qkm_ledger_fn fn, void *arg) QKM_MUST_CHECK;

/* Calls fn for every record whose detail names token (core/token.h: a KMA
 * batch's 24 hex digits, or a UUID), ordered by node, seq, at most limit
 * (0 = all): through the refs index each append fills, so fast on a large
 * ledger. The index is derived from the records (not hashed): it serves
 * lineage, never the audit. fn as above. */
int qkm_ledger_ref_records(struct qkm_ledger *lg, const char *token, unsigned limit,
			   qkm_ledger_fn fn, void *arg) QKM_MUST_CHECK;

/* One chain, as its head records it (cheap: no record is read). */
struct qkm_ledger_node {
	char node[QKM_NAME_MAX];
	bool own;               /* the manager's own chain */
	int64_t last_seq;       /* also the record count: a chain is seq 1..last_seq */
	uint64_t last_ts_ns;    /* ts_ns of the last record */
};
/* Calls fn for each chain, ordered by name. fn returns nonzero to stop
 * (returned); it must not append or start a walk (QKM_ESTATE). */
typedef int (*qkm_ledger_node_fn)(const struct qkm_ledger_node *n, void *arg);
int qkm_ledger_nodes(struct qkm_ledger *lg, qkm_ledger_node_fn fn, void *arg) QKM_MUST_CHECK;

/* Audit findings. what is one of:
 *   "changed"  record seq's hash is not SHA-256(its prev_hash || its
 *              encoding): the record (any column but hash) was edited.
 *   "bad-link" record seq is intact but its prev_hash is not the stored hash
 *              of seq - 1 (or zeros for seq 1), or a chain head (in the file
 *              or in this process's memory) at seq has another hash: the
 *              record before it was rewritten with a recomputed hash, or
 *              this one was forged whole.
 *   "missing"  records seq..seq_last are absent: deleted (a gap, absent
 *              first records, or a chain ending before its head in the
 *              file or in this process's memory).
 *   "extra"    records seq..seq_last lie beyond the chain head (or the
 *              head is gone): inserted by hand, or the head edited.
 * seq_last == seq except for "missing" and "extra". node is valid during
 * the call only. */
typedef void (*qkm_ledger_problem_fn)(const char *node, int64_t seq, int64_t seq_last,
				      const char *what, void *arg);
/* One chain's result, after its problems; node valid during the call. */
struct qkm_ledger_checked {
	const char *node;
	bool own;               /* the manager's own chain, by its head */
	int64_t records;        /* records read and checked */
	int64_t last_seq;       /* highest seq read (0 if none) */
	int64_t head_seq;       /* the chain head's last seq (0 if no head) */
	int problems;
};
typedef void (*qkm_ledger_checked_fn)(const struct qkm_ledger_checked *c, void *arg);

/* Recomputes every chain in one read of the file (one SELECT ordered by
 * node, seq, in one read transaction) and checks each against its head.
 * Calls problem (if not NULL) for each finding and checked (if not NULL) once
 * per chain, in node order (chains with no record left included). Returns
 * the number of findings (0 = intact; a range of missing records counts
 * once), or a negative QKM_E* (QKM_ESTATE if called from a walk's fn). The
 * callbacks must not call qkm_ledger_* but qkm_ledger_last_seq. */
int qkm_ledger_audit(struct qkm_ledger *lg, qkm_ledger_problem_fn problem,
		     qkm_ledger_checked_fn checked, void *arg) QKM_MUST_CHECK;

/* Audits run on this ledger since it was opened (for metrics). */
struct qkm_ledger_audit_stats {
	uint64_t runs;          /* qkm_ledger_audit calls that began reading */
	uint64_t failed;        /* of them, ended by an error (no result) */
	uint64_t problems;      /* findings, summed over the runs that completed */
	int last_problems;      /* findings of the last run that completed (0 before any) */
};
void qkm_ledger_audit_stats(const struct qkm_ledger *lg,
			    struct qkm_ledger_audit_stats *out /* OUT */);

#endif
