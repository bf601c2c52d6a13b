/* acq.h - acquisition of one QKD link by its KMA (Y.3803 8.1, 8.2.1):
 * QKD-key files from the module (Kq-1) are buffered, reformatted into
 * KMA-keys and confirmed with the KMA at the other end of the link over Kx
 * before either side stores them (R-ACQ-1..4); after a reconnect the pair
 * reconcile first. A pure state machine over frames and the store: it never
 * touches a socket; its owner feeds it frames and sends what it emits.
 * The protocol is specified in docs/protocol.md ("acquisition"). */
#ifndef QKM_KMA_ACQ_H
#define QKM_KMA_ACQ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/err.h"
#include "core/keyfile.h"
#include "proto/frame.h"
#include "store/store.h"

struct qkm_acq;

struct qkm_acq_cfg {
	char self[QKM_NAME_MAX];
	char peer[QKM_NAME_MAX];
	char link[QKM_NAME_MAX];
	char module[QKM_NAME_MAX];    /* our module on this link */
	uint32_t unit_bytes;          /* KMA-key length (R-ACQ-2) */
	uint32_t batch_max_bytes;     /* leader: most key bytes per round */
	uint64_t batch_ns;            /* leader: oldest buffered file waits this long */
	uint32_t window;              /* leader: rounds in flight */
	uint32_t ids_max;             /* leader: QKD-key IDs named by the rounds in
				       * flight, at most; a follower asked to hold
				       * more than 4 times as many (at least one
				       * round's worth) calls the peer broken */
	uint64_t wait_ns;             /* follower: PREPARE waits for late files */
	size_t buffer_max_bytes;      /* unconfirmed QKD-key bytes held */
	uint64_t pc_part_bytes;       /* pair-check: key bytes read per part */
	bool track_ids;               /* remember stored QKD-key IDs in the store
				       * (store.h qkm_store_qkd_put) and refuse them
				       * when handed over again: for sources that may
				       * deliver a file twice (a spool after a crash) */
};

/* Fills cfg with the defaults (everything but the names). */
void qkm_acq_cfg_defaults(struct qkm_acq_cfg *cfg);

/* Sends one whole frame to the peer KMA; nonzero if it could not be queued. */
typedef int (*qkm_acq_send_fn)(const uint8_t *frame, size_t len, void *arg);

/* Fills key with the one-time key of a round's MAC: the same at both ends
 * of the Kx session the round's PREPARE goes over, a new one for every
 * batch, known to nobody else (a TLS exporter, docs/protocol.md 4.2).
 * Called when the leader starts a round and when the follower reads its
 * PREPARE; nonzero if there is no session. */
typedef int (*qkm_acq_mac_key_fn)(const struct qkm_id *batch, uint8_t key[32], void *arg);

/* The leader is the end whose name sorts first (bytewise). The acq keeps st
 * (borrowed) and calls send and mac_key (with arg) only between
 * qkm_acq_on_peer_up and _down. NULL if out of memory or OpenSSL has no
 * Poly1305. */
struct qkm_acq *qkm_acq_new(const struct qkm_acq_cfg *cfg, struct qkm_store *st,
			    qkm_acq_send_fn send, qkm_acq_mac_key_fn mac_key, void *arg);
void qkm_acq_free(struct qkm_acq *a);
bool qkm_acq_is_leader(const struct qkm_acq *a);

/* Kq-1: a decoded QKD-key file from our module. Takes kf->data (sets it to
 * NULL). A hash_value it carries need not have been checked: the round MAC
 * covers the data themselves, and only after a MAC mismatch is the hash
 * checked, to name the file that was corrupted. QKM_EINVAL if it is not a
 * QKD-key of this link's module or has no data; QKM_EEXIST for a QKD-key ID
 * already buffered, or (track_ids) already stored; QKM_ENOMEM; QKM_ESTORE. */
int qkm_acq_on_keyfile(struct qkm_acq *a, struct qkm_keyfile *kf, uint64_t now_ns) QKM_MUST_CHECK;

/* What a key source may want to know (kma/spool.h, kma/device.h); each
 * member may be NULL.
 * settled: acquisition is done with a QKD-key file qkm_acq_on_keyfile took:
 *   stored (in a round the store committed: READY at the leader, PENDING
 *   or READY at the follower), or not (its round aborted, or it was lost
 *   on one side or dropped from a full buffer). Called once per file,
 *   after the commit that stored it; never for files still buffered or in
 *   a round when the acq is freed (the source hands those over again).
 * missing: follower: a PREPARE just named QKD-keys that have not arrived;
 *   a source that fetches keys by ID on demand fetches them now (the
 *   round waits up to wait_ns for them). ids are valid during the call. */
struct qkm_acq_source_cbs {
	void (*settled)(const char *qkd_id, bool stored, void *arg);
	void (*missing)(const char (*ids)[QKM_NAME_MAX], uint32_t n, void *arg);
	void *arg;
};
void qkm_acq_set_source_cbs(struct qkm_acq *a, const struct qkm_acq_source_cbs *cbs);

/* The Kx link to the peer opened (the follower starts reconciliation) or
 * closed (rounds in flight are aborted on this side; the follower's pending
 * copies are settled by the next reconciliation). */
void qkm_acq_on_peer_up(struct qkm_acq *a, uint64_t now_ns);
void qkm_acq_on_peer_down(struct qkm_acq *a);

/* An acquisition frame from the peer (ACQ_*, RECONCILE*, PAIRCHECK*).
 * 0 when handled; QKM_EPEER when the peer broke the protocol (the owner
 * drops the link); QKM_ESTORE when the store failed (round aborted). */
int qkm_acq_on_frame(struct qkm_acq *a, const struct qkm_frame *f, uint64_t now_ns) QKM_MUST_CHECK;

/* Timer: the leader starts rounds; the follower applies queued COMMITs
 * (qkm_acq_flush) and gives up on PREPAREs whose files did not arrive in
 * time. */
void qkm_acq_tick(struct qkm_acq *a, uint64_t now_ns);

/* Follower: marks READY, in one transaction, every batch whose ACQ_COMMIT
 * arrived since the last flush, then answers each with ACQ_COMMITTED. The
 * tick calls it; an owner may call it after each read too, and must call
 * it before handing a later frame of the peer to another user of the pool
 * (the KSA), which would otherwise see a committed batch still PENDING.
 * No-op at the leader or with nothing queued. */
void qkm_acq_flush(struct qkm_acq *a);

/* Pool sync: sends the peer POOL_SYNC, the blocks of our direction of the
 * pool and how much of each we used, so that it burns key material we
 * consumed in frames that never reached it (a link that dropped, a node
 * that crashed after its commit, a relay it refused). QKM_ESTATE before
 * reconciliation. The peer does the same for its direction. */
int qkm_acq_sync(struct qkm_acq *a) QKM_MUST_CHECK;

/* True once the pair reconciled since the Kx link last came up: only then
 * may this pool's keys be used. */
bool qkm_acq_reconciled(const struct qkm_acq *a);

struct qkm_acq_stats {
	uint64_t acquired_bytes;      /* KMA-key bytes stored READY */
	uint64_t aborted_batches;
	uint64_t discarded_qkd_keys;  /* lost on one side, or overflow */
	uint64_t buffered_bytes;
	uint32_t in_flight;
	bool waiting_files;           /* follower: the oldest round waits for QKD-key
				       * files not received yet (do not stop reading Kq-1) */
};
void qkm_acq_stats(const struct qkm_acq *a, struct qkm_acq_stats *out /* OUT */);

/* Pair-check (operator's consistency check, no key bytes cross): walks this
 * pool's blocks a part at a time (cfg.pc_part_bytes) and sends each part's
 * digests of their unused data as PAIRCHECK; the peer compares each part
 * with its own blocks and answers PAIRCHECK_ACK; the sum goes to the
 * callback (req identifies it) once every part is answered, or the error
 * (r NULL) if a part could not be sent or the link went down. */
struct qkm_paircheck_result {
	uint32_t matches, mismatches, in_flight, only_sender, only_receiver;
	char detail[512];             /* first differences, by block ID */
};
typedef void (*qkm_paircheck_fn)(const struct qkm_paircheck_result *r, int err, void *arg);
int qkm_acq_paircheck(struct qkm_acq *a, uint32_t req, uint64_t now_ns) QKM_MUST_CHECK;
/* Forgets pair-check req (its owner gave up on it): no callback. */
void qkm_acq_paircheck_cancel(struct qkm_acq *a, uint32_t req);
/* Set by the owner: where pair-check results go. */
void qkm_acq_set_paircheck_cb(struct qkm_acq *a,
			      void (*fn)(uint32_t req, const struct qkm_paircheck_result *r,
					 int err, void *arg),
			      void *arg);

#endif
