/* store.h - the SQLite key store of one node: KMA-key blocks grouped into
 * pools (one per peer), and the append-only life-cycle record (R-LC-1).
 * The only module that calls sqlite3_*. Invariants: WAL, synchronous=FULL,
 * secure_delete=ON; a state change is durable once qkm_store_commit()
 * returns; after qkm_store_checkpoint() deleted key bytes are in neither the
 * database file nor the WAL. The schema carries a version (user_version);
 * an unknown newer version is refused on open. */
#ifndef QKM_STORE_STORE_H
#define QKM_STORE_STORE_H

#include <stdbool.h>
#include <stdint.h>

#include "core/err.h"
#include "core/id.h"
#include "core/keyfile.h"
#include "core/secret.h"

struct qkm_store;

enum qkm_pool_kind { QKM_POOL_LINK = 1, QKM_POOL_RELAY = 2 };
enum qkm_block_state {
	QKM_BLOCK_PENDING = 1, /* stored, awaiting the pair's commit; not usable */
	QKM_BLOCK_READY = 2,   /* confirmed on both sides; usable */
};
/* Security level of a block's key material (R-REL-4, R-SUP-4): ITS for a
 * QKD link's keys and keys relayed by OTP on every hop; COMPUTATIONAL when
 * any hop used the AES fallback. */
enum qkm_block_level { QKM_BLOCK_ITS = 1, QKM_BLOCK_COMPUTATIONAL = 2 };

/* A block: count KMA-keys of unit_bytes each, contiguous in data. Key i of the
 * block has KMA-key ID = batch_id with its last 4 bytes (big-endian) replaced
 * by first_index + i; batch_id's last 4 bytes are zero. Bytes [0, used) are
 * consumed. A batch (one confirmation round) is stored as one or more blocks
 * sharing batch_id, told apart by first_index. */
struct qkm_block {
	int64_t rowid;                    /* set by the store */
	char peer[QKM_NAME_MAX];          /* pool: the node at the other end */
	enum qkm_pool_kind pool_kind;
	struct qkm_id batch_id;
	uint32_t first_index;
	uint32_t count;
	uint32_t unit_bytes;
	uint32_t used;                    /* bytes consumed from the front */
	enum qkm_key_type key_type;       /* from this node's point of view */
	enum qkm_block_state state;
	enum qkm_block_level level;       /* 0 on put means ITS */
	uint64_t created_ns;
	char qkd_module_id[QKM_NAME_MAX];
	char matching_qkd_module_id[QKM_NAME_MAX];
	struct qkm_secret *data;          /* count * unit_bytes; owned; may be NULL
					     when listed without data */
	bool write_around;                /* on put: write the bytes around the page
					     cache (O_DIRECT, when aligned). Less CPU
					     per byte, for bulk streams of blocks
					     (acquisition); but each write waits for
					     the device, and the commit's fdatasync
					     waits again: a one-block step (a relay
					     hop) takes the page cache (false) */
};

/* Stock of one pool: only READY blocks, only unused bytes; a partly used
 * KMA-key counts as one key. */
struct qkm_pool_stats {
	uint64_t keys, bytes, enc_bytes, dec_bytes;
	uint64_t enc_its_bytes;           /* enc_bytes of ITS blocks */
	uint64_t pending_keys;
};

/* A life-cycle event (R-LC-1). key_id names one key or a range
 * ("<hex batch>[first..last]"); detail is a short free text, never key bytes. */
struct qkm_lc_event {
	int64_t seq;                 /* set by the store, increasing */
	uint64_t ts_ns;
	char event[24];              /* received, formatted, confirmed, stored,
					aborted, deleted, supplied, relayed, ... */
	char key_kind[12];           /* qkd, kma, relayed, ksa */
	char key_id[96];
	char peer[QKM_NAME_MAX];
	char detail[1024];
};

/* Opens (creating if needed, mode 0600) the store at path. 0 or
 * QKM_ESTORE/QKM_EVERSION. A store is used by one thread at a time. The
 * first call in a process makes SQLite wipe every block it frees: call it
 * before any other use of SQLite. */
int qkm_store_open(const char *path, struct qkm_store **out /* OUT */) QKM_MUST_CHECK;
/* Closes; NULL is a no-op. Uncommitted work is rolled back. */
void qkm_store_close(struct qkm_store *st);
/* Removes a closed store's files: the database at path, SQLite's WAL,
 * shared memory and journal beside it, and the key-data file. Files
 * already absent are no error. 0, QKM_EINVAL (path too long) or QKM_EIO
 * (errno set) for the first file that could not be removed. */
int qkm_store_remove(const char *path);

/* Batched transactions: begin, many writes, one durable commit. Nested begin
 * is an error (QKM_ESTATE). */
int qkm_store_begin(struct qkm_store *st) QKM_MUST_CHECK;
/* On failure the transaction is rolled back: nothing of it is stored. */
int qkm_store_commit(struct qkm_store *st) QKM_MUST_CHECK;
void qkm_store_rollback(struct qkm_store *st);

/* Group commit: a deferred transaction is opened by one user of the store
 * (the relay, for the frames of one read) and committed by
 * qkm_store_end_deferred, or as soon as anything else begins a transaction
 * or checkpoints; either way on_end(rc) runs right after, so its owner
 * sends what it holds back only once the work is durable (or drops it if
 * the commit failed). A deferred transaction on_end opens (its owner may
 * start more work) is committed in turn by the same begin or checkpoint.
 * 0 if one is open already; QKM_ESTATE inside an ordinary transaction. */
int qkm_store_begin_deferred(struct qkm_store *st, void (*on_end)(int rc, void *arg),
			     void *arg) QKM_MUST_CHECK;
int qkm_store_end_deferred(struct qkm_store *st);
bool qkm_store_in_deferred(const struct qkm_store *st);
/* Inside a transaction: a mark to undo back to (one at a time), so that
 * one piece of work in a shared transaction is kept or undone whole.
 * unmark(keep=false) undoes everything since the mark. */
int qkm_store_mark(struct qkm_store *st) QKM_MUST_CHECK;
void qkm_store_unmark(struct qkm_store *st, bool keep);

/* Inserts a block (data required). QKM_EEXIST if (batch_id, first_index)
 * exists; QKM_EINVAL if data->len != count * unit_bytes, used >= count, the
 * batch ID's last 4 bytes are not zero, or a name or enum is invalid. Sets
 * b->rowid. */
int qkm_store_block_put(struct qkm_store *st, struct qkm_block *b) QKM_MUST_CHECK;
/* Sets the state of every block of a batch; QKM_ENOTFOUND if none. */
int qkm_store_batch_set_state(struct qkm_store *st, const struct qkm_id *batch_id,
			      enum qkm_block_state state) QKM_MUST_CHECK;
/* Sets the security level of every block of a batch; QKM_ENOTFOUND if none. */
int qkm_store_batch_set_level(struct qkm_store *st, const struct qkm_id *batch_id,
			      enum qkm_block_level level) QKM_MUST_CHECK;
/* Looks a batch up: *state = its blocks' state, or 0 if absent. */
int qkm_store_batch_state(struct qkm_store *st, const struct qkm_id *batch_id,
			  enum qkm_block_state *state /* OUT */) QKM_MUST_CHECK;
/* Same, and *bytes = the key bytes of all its blocks (0 if absent). */
int qkm_store_batch_info(struct qkm_store *st, const struct qkm_id *batch_id,
			 enum qkm_block_state *state /* OUT */, uint64_t *bytes /* OUT */) QKM_MUST_CHECK;
/* Deletes every block of a batch (secure_delete overwrites the pages);
 * QKM_ENOTFOUND if none. */
int qkm_store_batch_delete(struct qkm_store *st, const struct qkm_id *batch_id) QKM_MUST_CHECK;
/* Marks bytes [0, used) of block rowid consumed; data for those bytes is
 * overwritten with zeros in the same write, and the block is deleted once
 * used == count * unit_bytes. A partly used KMA-key lives on as the remainder
 * of that key (R-SUP-5). QKM_ENOTFOUND if no such block, QKM_EINVAL if used is
 * below the block's current used (consumption never goes back) or above
 * count * unit_bytes. The bytes newly consumed are added to the pool's
 * consumed count (qkm_store_pool_consumed) in the same write. */
int qkm_store_block_set_used(struct qkm_store *st, int64_t rowid, uint32_t used) QKM_MUST_CHECK;

/* Calls fn for each block of peer's pool in (created, rowid) order, states
 * filtered by mask (1 << state; 0 = all). with_data: load data into b->data
 * (the callback may take ownership by setting b->data = NULL). fn returns 0 to
 * go on, anything else stops the walk and is returned. fn may call other
 * qkm_store_* functions but not qkm_store_blocks (QKM_ESTATE); blocks it
 * changes may be reported as they were when the walk began. */
typedef int (*qkm_store_block_fn)(struct qkm_block *b, void *arg);
int qkm_store_blocks(struct qkm_store *st, const char *peer, unsigned state_mask,
		     bool with_data, qkm_store_block_fn fn, void *arg) QKM_MUST_CHECK;

/* A block's place in the order of (batch, first index), the same at both
 * ends of a pool. */
struct qkm_block_pos {
	struct qkm_id batch;
	uint32_t first;
};

/* As qkm_store_blocks, for the blocks of peer's pool (every state) after
 * *after and up to *upto inclusive (NULL: unbounded), in (batch, first
 * index) order. */
int qkm_store_blocks_range(struct qkm_store *st, const char *peer, const struct qkm_block_pos *after,
			   const struct qkm_block_pos *upto, bool with_data, qkm_store_block_fn fn,
			   void *arg) QKM_MUST_CHECK;

/* The unused bytes of block pos of peer's pool, whatever its state, in a
 * new secret (*out; the caller frees it). QKM_ENOTFOUND if there is none. */
int qkm_store_block_unused(struct qkm_store *st, const char *peer, const struct qkm_block_pos *pos,
			   struct qkm_secret **out /* OUT */) QKM_MUST_CHECK;

/* Stock of peer's pool. */
int qkm_store_pool_stats(struct qkm_store *st, const char *peer,
			 struct qkm_pool_stats *out /* OUT */) QKM_MUST_CHECK;
/* *bytes = the key bytes ever consumed from peer's pool (qkm_store_block_set_used
 * and _burn; deletions do not count), durable with the consumption: a
 * Prometheus counter. */
int qkm_store_pool_consumed(struct qkm_store *st, const char *peer,
			    uint64_t *bytes /* OUT */) QKM_MUST_CHECK;

/* Appends a life-cycle record; sets ev->seq; ts_ns 0 means now. Part of the
 * current transaction if one is open. */
int qkm_store_record(struct qkm_store *st, struct qkm_lc_event *ev) QKM_MUST_CHECK;
/* Of the first max_rows records (by seq) up to upto_seq, deletes those
 * made before before_ns; *n: how many. A record made later than one after
 * it (a clock step) stays at the front until it is old too, and holds one
 * place of the batch meanwhile. upto_seq must be a record the
 * manager holds (R-LC-2): lc is append-only above the highest upto_seq
 * ever given (schema 11's trigger), which this raises first. */
int qkm_store_lc_prune(struct qkm_store *st, int64_t upto_seq, uint64_t before_ns,
		       uint32_t max_rows, uint64_t *n /* OUT */) QKM_MUST_CHECK;
/* Calls fn for records with seq > after_seq, in order, at most limit (0 = all).
 * fn must not call qkm_store_records (QKM_ESTATE). */
typedef int (*qkm_store_record_fn)(const struct qkm_lc_event *ev, void *arg);
int qkm_store_records(struct qkm_store *st, int64_t after_seq, unsigned limit,
		      qkm_store_record_fn fn, void *arg) QKM_MUST_CHECK;

/* QKD-key IDs stored by a link's acquisition, for sources that may hand a
 * file over twice (kma/spool.h: a file read again after a crash between
 * the round's commit and the file's removal). put: inside the round's
 * transaction; QKM_EEXIST if the ID is there. held: *held = whether it is.
 * forget: once the source can no longer hand it over (its file removed);
 * an ID not there is no error. QKM_EINVAL for an empty name. */
int qkm_store_qkd_put(struct qkm_store *st, const char *link, const char *qkd_id,
		      uint64_t now_ns) QKM_MUST_CHECK;
int qkm_store_qkd_held(struct qkm_store *st, const char *link, const char *qkd_id,
		       bool *held /* OUT */) QKM_MUST_CHECK;
int qkm_store_qkd_forget(struct qkm_store *st, const char *link, const char *qkd_id) QKM_MUST_CHECK;

/* Persistent per-node counters (acquired_bytes, aborted_batches, ...); a
 * counter never added to reads as 0. */
int qkm_store_counter_add(struct qkm_store *st, const char *name, int64_t delta) QKM_MUST_CHECK;
int qkm_store_counter_get(struct qkm_store *st, const char *name, int64_t *v /* OUT */) QKM_MUST_CHECK;
/* Raises counter name to v if it is below (never lowers it): a high-water
 * mark. */
int qkm_store_counter_raise(struct qkm_store *st, const char *name, int64_t v) QKM_MUST_CHECK;
/* Calls fn(name, value, arg) for every counter whose name starts with
 * prefix ("" = all), in name order. fn returns 0 to go on; anything else
 * stops the walk and is returned. fn must not use the store. */
typedef int (*qkm_store_counter_fn)(const char *name, int64_t value, void *arg);
int qkm_store_counters(struct qkm_store *st, const char *prefix, qkm_store_counter_fn fn,
		       void *arg) QKM_MUST_CHECK;

/* ---- key draws (KSA) ---------------------------------------------------- */

/* A byte range of one block: bytes [off, off + len) of its data. */
struct qkm_range {
	int64_t rowid;
	struct qkm_id batch;
	uint32_t first_index;
	uint32_t unit_bytes;
	uint32_t off;
	uint32_t len;
	enum qkm_block_level level;
	int64_t data_off;             /* the store's: where the block's bytes are */
};

/* Reads the first n unused bytes of the READY blocks of key type kt in
 * peer's pool, in pool order (oldest first, each from its used offset),
 * into out (n bytes; a secure buffer), describing them in ranges[0..*nranges).
 * Changes nothing: the caller consumes with qkm_store_block_set_used.
 * QKM_ENOKEY if the pool holds fewer than n bytes; QKM_ETOOBIG if more than
 * max ranges would be needed. */
int qkm_store_pool_read(struct qkm_store *st, const char *peer, enum qkm_key_type kt, size_t n,
			struct qkm_range *ranges, size_t max, size_t *nranges /* OUT */,
			uint8_t *out /* OUT */) QKM_MUST_CHECK;
/* The same, over ITS blocks only when its_only (blocks of other levels are
 * skipped, not consumed); QKM_ENOKEY counts only the blocks it may read. */
int qkm_store_pool_read_level(struct qkm_store *st, const char *peer, enum qkm_key_type kt,
			      bool its_only, size_t n, struct qkm_range *ranges, size_t max,
			      size_t *nranges /* OUT */, uint8_t *out /* OUT */) QKM_MUST_CHECK;

/* Reads bytes [off, off + len) of block (batch, first_index) into out and
 * sets *rowid. QKM_ENOTFOUND if there is no such block; QKM_EPERM if it is
 * not a READY block of peer's pool with key type kt, or the range is not
 * wholly unused (off below the block's used offset, or past its end). */
int qkm_store_block_read(struct qkm_store *st, const char *peer, const struct qkm_id *batch,
			 uint32_t first_index, enum qkm_key_type kt, uint32_t off, uint32_t len,
			 uint8_t *out /* OUT */, int64_t *rowid /* OUT */) QKM_MUST_CHECK;

/* Marks bytes [0, upto) of block (batch, first_index) of peer's pool with
 * key type kt consumed, if they are not already (used never goes down); a
 * block used up is deleted. No such block, or nothing to do: 0. */
int qkm_store_block_burn(struct qkm_store *st, const char *peer, const struct qkm_id *batch,
			 uint32_t first_index, enum qkm_key_type kt, uint64_t upto) QKM_MUST_CHECK;

/* ---- KSA keys (R-SUP-3, R-SUP-8, R-SUP-10) --------------------------------- */

enum qkm_ksa_state {
	QKM_KSA_OFFERED = 1,  /* master's node: key material consumed, peer not yet answered */
	QKM_KSA_READY = 2,    /* slave's node: stored, waiting for the slave SAE(s) */
	QKM_KSA_SUPPLIED = 3, /* given to the master (master's node) / to every slave */
	QKM_KSA_STOCKED = 4,  /* master's node: stored at the peer, waiting in the stock
			       * for its master (ksa/stock.h) */
};
enum qkm_ksa_role { QKM_KSA_MASTER_SIDE = 1, QKM_KSA_SLAVE_SIDE = 2 };

#define QKM_KSA_MAX_RANGES 64
/* Keys in one row of a slave's node at most (its dmap has a bit each). */
#define QKM_KSA_SLAVE_RUN 64

/* Where a KSA key's bytes came from: bytes [off, off + len) of KMA-key block
 * (batch, first). Stored with the key so a key that never reached its master
 * can be cancelled on both sides, consumption included. */
struct qkm_range_ref {
	struct qkm_id batch;
	uint32_t first, off, len;
};

/* Table 1 item (4) plus what supply needs. Lists of SAE IDs are
 * comma-separated. A row is a run of count keys alike in all but their
 * bytes: IDs id, id + 1, ... (the index in the last 4 bytes, core/id.h),
 * their bytes back to back in data and in the ranges. A master's node keeps
 * one per request (or a few, docs/store.md); a slave's node one per run of
 * a SUPPLY round's keys for one slave, at most QKM_KSA_SLAVE_RUN, and one
 * per key with additional slaves. */
struct qkm_ksa_key {
	struct qkm_id id;                 /* KSA-key ID (UUID) */
	char peer[QKM_NAME_MAX];          /* the node at the other end */
	char master[QKM_NAME_MAX];        /* application source ID */
	char slave[QKM_NAME_MAX];         /* application destination ID */
	char additional[1040];            /* additional slaves */
	char delivered[1104];             /* slave side: SAEs that have it */
	uint32_t size_bits;
	uint8_t level;                    /* enum qkm_etsi_level */
	uint8_t role;                     /* enum qkm_ksa_role */
	uint8_t state;                    /* enum qkm_ksa_state */
	uint64_t created_ns;
	uint64_t supplied_ns;             /* supply time stamp; 0 until supplied */
	uint32_t n_ranges;                /* lineage: KMA-key ranges it came from */
	struct qkm_range_ref ranges[QKM_KSA_MAX_RANGES];
	struct qkm_secret *data;          /* key bytes, owned; NULL when not kept */
	int64_t seq;                      /* the store's row number (put sets it) */
	uint32_t count;                   /* keys in the run; 0 is taken as 1 */
	uint32_t run_index, run_count;    /* get of a key in a slave's run: its index
					     and the row's count (0: the key's own row) */
	uint64_t gone, cancelled;         /* a slave's run: bit i, key id + i gone
					     (delivered or cancelled), cancelled */
};

/* Inserts k (with its data if k->data) and sets k->seq. Keys put one after
 * another in a transaction get consecutive seqs. QKM_EEXIST for a known ID
 * (at a slave's node: any of the run's, in any row). QKM_EINVAL for a slave's
 * run of more than QKM_KSA_SLAVE_RUN keys or with additional slaves. */
int qkm_store_ksa_put(struct qkm_store *st, struct qkm_ksa_key *k) QKM_MUST_CHECK;
/* Loads the row that holds the key id: out->id is its run's first key,
 * out->count its keys, out->data (if with_data and kept) all their bytes.
 * A slave's node's run gives the key alone (out->id is id, count 1, its
 * ranges and bytes; run_index/run_count place it): one delivered reads as
 * SUPPLIED, delivered to its slave, without bytes; one cancelled as no key.
 * QKM_ENOTFOUND. */
int qkm_store_ksa_get(struct qkm_store *st, const struct qkm_id *id,
		      struct qkm_ksa_key *out /* OUT */, bool with_data) QKM_MUST_CHECK;
/* Moves the rows first_seq..last_seq (their runs whole), all in state
 * from, to state to, with supply time supplied_ns: all of them, or none
 * and QKM_ENOTFOUND. One statement for the rows of a request. */
int qkm_store_ksa_set_state(struct qkm_store *st, int64_t first_seq, int64_t last_seq,
			    enum qkm_ksa_state from, enum qkm_ksa_state to,
			    uint64_t supplied_ns) QKM_MUST_CHECK;
/* Moves the n keys from first on (consecutive IDs, in one row or in rows
 * that follow one another) from state from to state to, with supply time
 * supplied_ns. A row they take whole changes state; one they take part of
 * is split: a row per part, each with its part of the ranges (and of the
 * kept bytes), the keys before them and after them staying in state from.
 * A stock takes a row's keys in order, so the usual take is the front of a
 * row: one update and one insert. All n or none: QKM_ENOTFOUND if a key is
 * missing or in another state. */
int qkm_store_ksa_take(struct qkm_store *st, const struct qkm_id *first, uint32_t n,
		       enum qkm_ksa_state from, enum qkm_ksa_state to,
		       uint64_t supplied_ns) QKM_MUST_CHECK;
/* Writes k's state, delivered list and supply time; drop_data deletes the
 * key bytes (secure delete) while the metadata stays (R-SUP-10). For a key
 * in a slave's run (from get) and drop_data: marks it gone from the run,
 * its bytes zeroed, the row's supply time the latest delivery's; the row
 * becomes SUPPLIED then when its last key goes, its bytes deleted. Without
 * drop_data the run first becomes a row per key. QKM_ENOTFOUND if it was
 * gone already. */
int qkm_store_ksa_update(struct qkm_store *st, const struct qkm_ksa_key *k,
			 bool drop_data) QKM_MUST_CHECK;
/* Deletes the row whose first key is id (all its run) and its data. A key
 * in a slave's run goes alone (cancelled): marked gone, its bytes zeroed;
 * when its last key goes the row is deleted if all were cancelled, else
 * SUPPLIED. QKM_ENOTFOUND. */
int qkm_store_ksa_delete(struct qkm_store *st, const struct qkm_id *id) QKM_MUST_CHECK;
/* Deletes every KSA key of id's supply round (IDs equal to id but for the
 * last 4 bytes, core/id.h) and their data; *n: how many keys (0 is no
 * error). */
int qkm_store_ksa_delete_round(struct qkm_store *st, const struct qkm_id *id,
			       size_t *n /* OUT */) QKM_MUST_CHECK;
/* Calls fn (without data) for each row (run of KSA keys) shared with peer
 * in state and role, oldest first. state is OFFERED or STOCKED: the index that finds
 * them fast holds only those, and keys in other states are never listed.
 * fn may not start another walk. */
typedef int (*qkm_store_ksa_fn)(const struct qkm_ksa_key *k, void *arg);
int qkm_store_ksa_list(struct qkm_store *st, const char *peer, enum qkm_ksa_state state,
		       enum qkm_ksa_role role, qkm_store_ksa_fn fn, void *arg) QKM_MUST_CHECK;
/* Deletes the rows of KSA keys supplied before before_ns (state SUPPLIED,
 * supply time earlier) whose bytes are gone (rows that keep them, under
 * after_supply "preserve", stay): at most max_rows rows, the oldest supply
 * first; then trims slave's runs whose gone keys all went before before_ns
 * (their keys still there move to rows of their own); *rows and *keys say
 * how many rows and keys went. Their metadata is the
 * manager's from then on (R-LC-2: each one's life-cycle records). Raises
 * the store's horizon (qkm_store_ksa_horizon) to the newest time of a
 * pruned key's ID, never past before_ns, in the same transaction. */
int qkm_store_ksa_prune(struct qkm_store *st, uint64_t before_ns, uint32_t max_rows,
			uint64_t *rows /* OUT */, uint64_t *keys /* OUT */) QKM_MUST_CHECK;
/* The newest time, in ms since the epoch, in the ID (a version-7 UUID) of a
 * KSA key this store has pruned; 0 if none. */
int qkm_store_ksa_horizon(struct qkm_store *st, uint64_t *ms /* OUT */) QKM_MUST_CHECK;
/* True if id is a version-7 UUID made at or before horizon_ms (not 0): a
 * key the store may have held and pruned, so one it must not take again. */
bool qkm_store_ksa_older(const struct qkm_id *id, uint64_t horizon_ms);
/* Number of KSA keys (not rows) in a state. */
int qkm_store_ksa_count(struct qkm_store *st, enum qkm_ksa_state state,
			uint64_t *n /* OUT */) QKM_MUST_CHECK;

/* Checkpoints the WAL into the database and truncates the WAL, so deleted key
 * bytes leave it (PRAGMA wal_checkpoint(TRUNCATE)). QKM_EAGAIN if a reader
 * (another connection) kept it from completing, QKM_ESTATE inside a
 * transaction. */
int qkm_store_checkpoint(struct qkm_store *st) QKM_MUST_CHECK;

/* Makes dst's content a copy of src's, another store of the same schema
 * (a saved state put back: fuzz_relay resets its stores so after each
 * input), then checkpoints dst, so its WAL is empty. Neither may be in a
 * transaction (QKM_ESTATE). 0, or QKM_ESTORE/QKM_EAGAIN. For fixtures, not
 * for deleting keys: pages of dst past src's size are cut off the file,
 * not overwritten (docs/store.md). */
int qkm_store_copy(struct qkm_store *dst, struct qkm_store *src) QKM_MUST_CHECK;

/* Bytes in the WAL as of the last commit or checkpoint of this connection.
 * SQLite's automatic checkpoints are off: the owner checkpoints when this
 * grows too large and periodically (docs/store.md). */
uint64_t qkm_store_wal_bytes(const struct qkm_store *st);
/* Bytes on disk of the store's files, for an operator watching it grow:
 * the SQLite database, its WAL and the key-data file (docs/store.md); 0 for
 * one that does not exist. QKM_EIO if one cannot be examined. */
int qkm_store_disk_bytes(struct qkm_store *st, uint64_t *db, uint64_t *wal,
			 uint64_t *keys) QKM_MUST_CHECK;

#endif
