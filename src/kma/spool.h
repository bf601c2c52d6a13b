/* spool.h - a spool directory as a link's key source (R-ACQ-5): a QKD
 * module's driver drops one binary QKD-key file (docs/key-file.md) per key
 * into the directory; the node reads them in name order, hands each to
 * acquisition once, and removes it only once acquisition is done with it.
 *
 * The writer's side of the contract (docs/operations.md, Key sources):
 * write NAME.tmp, then rename(2) it to NAME.qkd once complete (rename is
 * atomic, so a .qkd file is always whole); NAMEs sort (bytewise) in
 * generation order, e.g. a zero-padded sequence number. Only NAME.qkd
 * files are read; anything else (NAME.tmp, dot files, the rejected/
 * directory) is left alone.
 *
 * A file's life: read whole and decoded strictly (core/keyfile.h); a file
 * that does not decode, or that acquisition refuses, is moved to
 * DIR/rejected/ with a log line naming the reason, never deleted and never
 * half-ingested. A file acquisition took stays "in flight" (not read
 * again) until acquisition says it is settled (acq.h: stored by a
 * committed round, or discarded); then it is unlinked, the directory is
 * fsynced, and only then is its ID forgotten by the store (the forget op).
 * A crash at any point leaves the file in the directory: it is read again
 * at the next start, where acquisition refuses an ID it already stored
 * (acq.h track_ids) and the file is removed as done.
 *
 * File-system I/O only: no event loop, no store (the owner's ops reach
 * acquisition and the store), so it is unit-testable on a temp directory. */
#ifndef QKM_KMA_SPOOL_H
#define QKM_KMA_SPOOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/err.h"
#include "core/keyfile.h"

struct qkm_spool;

/* What the owner does with a decoded file. */
enum qkm_spool_verdict {
	QKM_SPOOL_TAKEN,   /* handed to acquisition (kf->data taken): in flight */
	QKM_SPOOL_LATER,   /* not now (acquisition's buffer is full): stop this scan */
	QKM_SPOOL_DONE,    /* already stored before (a file read again after a
			    * crash): remove it */
	QKM_SPOOL_REJECT,  /* refused: move it to rejected/ (why says why) */
};

struct qkm_spool_ops {
	/* A complete file, decoded, in name order. why (whysz bytes) is for
	 * QKM_SPOOL_REJECT's reason. */
	enum qkm_spool_verdict (*take)(const char *name, struct qkm_keyfile *kf, char *why,
				       size_t whysz, void *arg);
	/* A file moved to rejected/ (for the life-cycle record); may be NULL. */
	void (*rejected)(const char *name, const char *why, void *arg);
	/* A removed file's QKD-key ID: the store may forget it now; may be NULL. */
	void (*forget)(const char *qkd_id, void *arg);
	void *arg;
};

/* dir is the spool directory (created, mode 0700, with its parents, if
 * missing); link names it in log lines. NULL when out of memory. */
struct qkm_spool *qkm_spool_new(const char *dir, const char *link, const struct qkm_spool_ops *ops);
/* Files in flight stay in the directory (read again at the next start). */
void qkm_spool_free(struct qkm_spool *sp);

/* Reads the directory once: every NAME.qkd not in flight, in name order,
 * is read, decoded and handed to ops->take (or rejected), until take says
 * LATER or about max_bytes of files were read in this scan (at least one
 * file). Returns the number of files handed over or removed, or QKM_EIO
 * when the directory cannot be read (logged once until it can again).
 * *more (OUT, may be NULL): files were left for another scan. */
int qkm_spool_scan(struct qkm_spool *sp, size_t max_bytes, bool *more) QKM_MUST_CHECK;

/* Acquisition settled the file with this QKD-key ID (acq.h settled):
 * it is removed at the next qkm_spool_remove_done. Unknown IDs are
 * ignored. stored only counts it in the log line. */
void qkm_spool_settled(struct qkm_spool *sp, const char *qkd_id, bool stored);

/* Unlinks every settled file, fsyncs the directory, then calls ops->forget
 * for each. A file that cannot be unlinked stays in flight, its ID kept,
 * and is tried again at the next call (logged once). Returns how many were
 * removed, or QKM_EIO when the directory cannot be opened (all tried again
 * next time) or fsynced (the unlinked files' IDs are kept: harmless). */
int qkm_spool_remove_done(struct qkm_spool *sp) QKM_MUST_CHECK;

/* Files in flight (handed over, not yet settled or removed). */
size_t qkm_spool_in_flight(const struct qkm_spool *sp);

/* The writer's side, for the simulator and tests (a module driver does the
 * same in its own code): writes p (len bytes) to DIR/NAME.tmp and renames
 * it to DIR/NAME.qkd; with sync, fsyncs the file before the rename and the
 * directory after (power-loss safe). 0 or QKM_EIO (no NAME.qkd then). */
int qkm_spool_write(const char *dir, const char *name, const uint8_t *p, size_t len,
		    bool sync) QKM_MUST_CHECK;

/* Creates dir and its missing parents (mode 0700). 0 or QKM_EIO. */
int qkm_spool_mkdir(const char *dir) QKM_MUST_CHECK;

/* The bytes of NAME.qkd files waiting in dir (for a writer's bound), or
 * QKM_EIO. */
int64_t qkm_spool_bytes(const char *dir);

/* The largest file read: a key file with the most key data and metadata. */
#define QKM_SPOOL_FILE_MAX (QKM_KEYFILE_MAX_DATA + 65536u)

#endif
