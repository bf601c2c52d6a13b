/* kdata.h - the key-data file of a store (internal to src/store/): the bytes
 * of every KMA-key block, outside SQLite, at the offset its blocks row names
 * (data_off). SQLite holds what the bytes mean; this file holds them once,
 * written with one pwrite per block and made durable with one fdatasync per
 * commit (through SQLite every byte was written twice, to the WAL and again
 * at the checkpoint, a page and a frame header at a time).
 *
 * Invariant, after open and after every commit or rollback has been applied:
 * every byte of the file outside the unused part of a committed block is
 * zero (or a hole). Changes follow SQLite's transaction: an extent
 * allocated in a transaction that rolls back is wiped and free again; a
 * range consumed or freed is wiped, and reused, only once the transaction
 * that consumed or freed it has committed (until then a rollback makes it
 * live again). A crash between a commit and its wipe leaves key bytes in a
 * range no block owns; open wipes every such range before anything else
 * runs. One process owns the file at a time (an exclusive lock). */
#ifndef QKM_STORE_KDATA_H
#define QKM_STORE_KDATA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct kdata;

/* A live block's extent, as SQLite has it: bytes [off, off + len), of which
 * [off, off + used) are consumed. */
struct kdata_live {
	uint64_t off, len, used;
};

/* Opens (creating, mode 0600) the key-data file path, locked exclusively. */
int kdata_open(const char *path, struct kdata **out);
void kdata_close(struct kdata *kd);

/* Takes the committed live extents (any order; they must not overlap), makes
 * the free list their complement, wipes every byte outside the unused part
 * of a live extent (holes where the file system can, zeros elsewhere),
 * truncates the file after the last extent and makes that durable. */
int kdata_recover(struct kdata *kd, struct kdata_live *live, size_t n);

/* Allocates len bytes (journalled: undone by a rollback) and writes data
 * there; *off is the extent's offset. around: write around the page cache
 * (O_DIRECT) when data and len allow it; see qkm_block.write_around. */
int kdata_put(struct kdata *kd, const void *data, uint64_t len, bool around, uint64_t *off);
int kdata_read(struct kdata *kd, uint64_t off, void *out, uint64_t len);
/* Asks the kernel to start reading [off, off + len) into the page cache
 * now, without waiting: bytes a reader will want soon. A hint: no error. */
void kdata_read_ahead(struct kdata *kd, uint64_t off, uint64_t len);
/* Journals a wipe of [off, off + len) for when the transaction commits. */
int kdata_wipe_later(struct kdata *kd, uint64_t off, uint64_t len);
/* Journals the return of a whole extent to the free list at commit (its
 * bytes are wiped by kdata_wipe_later calls, not here). */
int kdata_free_later(struct kdata *kd, uint64_t off, uint64_t len);

/* Journal positions: savepoints. kdata_undo(kd, pos) undoes every entry
 * after pos (pos 0: the whole transaction). */
size_t kdata_pos(const struct kdata *kd);
void kdata_undo(struct kdata *kd, size_t pos);
/* Before SQLite's commit: makes the block bytes written in this
 * transaction durable (and wipes since the last sync with them). Wipes
 * alone wait for kdata_flush(): until then a crash leaves their bytes in
 * ranges no block owns, which open wipes. */
int kdata_sync(struct kdata *kd);
/* At a checkpoint: everything written, wipes included, durable. */
int kdata_flush(struct kdata *kd);
/* After SQLite's commit: carries out the journal's wipes and frees. */
void kdata_committed(struct kdata *kd);

/* Replaces dst's whole content by src's (a store copy) and makes it durable;
 * the caller then recovers dst from the copied metadata. */
int kdata_copy(struct kdata *dst, struct kdata *src);

/* Bytes the file spans (its size) and bytes on the free list within it. */
void kdata_usage(const struct kdata *kd, uint64_t *size, uint64_t *free_bytes);

#endif
