/* kdata.c - the key-data file of a store (kdata.h). Extents are allocated
 * first-fit from a sorted, coalesced free list, else at the end of the file;
 * every change is journalled until SQLite's transaction ends, so that the
 * file follows the metadata through savepoints, commits and rollbacks. */
#include "store/kdata.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/err.h"
#include "core/log.h"
#include "core/secret.h"
#include "store/file.h"

#define KD_ALIGN 16u        /* extents start and end on this */
#define KD_DIO 4096u        /* direct I/O: offset, length and buffer aligned so */
#define KD_CHUNK 65536u     /* zeros and copies go this much at a time */

enum jkind { J_ALLOC, J_WIPE, J_FREE };

struct ext {
	uint64_t off, len;
};

struct jent {
	enum jkind kind;
	uint64_t off, len;
};

struct kdata {
	int fd;
	int dfd;             /* the same file opened O_DIRECT, or -1 */
	char *path;
	struct ext *free;    /* sorted by off, no two adjacent */
	size_t nfree, capfree;
	uint64_t end;        /* bytes spanned by extents ever allocated */
	struct jent *j;
	size_t nj, capj;
	bool dirty;          /* block bytes written since the last fdatasync: a
				commit must wait for them */
	bool wiped;          /* wipes since then: on disk by the next checkpoint
				(a crash before it leaves them to open's wipe) */
};

static const uint8_t kd_zeros[KD_CHUNK];

static uint64_t kd_round(uint64_t len)
{
	return (len + KD_ALIGN - 1) & ~(uint64_t)(KD_ALIGN - 1);
}

static int kd_fail(struct kdata *kd, const char *what)
{
	log_warn("store: key data file %s: %s", kd->path, what);
	return QKM_ESTORE;
}

static int kd_pwrite(struct kdata *kd, const void *p, uint64_t len, uint64_t off)
{
	const uint8_t *b = p;
	while (len) {
		ssize_t w = pwrite(kd->fd, b, len, (off_t)off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return kd_fail(kd, "write");
		b += w;
		len -= (uint64_t)w;
		off += (uint64_t)w;
	}
	return 0;
}

/* Overwrites [off, off + len) with zeros in place. */
static int kd_zero(struct kdata *kd, uint64_t off, uint64_t len)
{
	while (len) {
		uint64_t n = len < KD_CHUNK ? len : KD_CHUNK;
		int err = kd_pwrite(kd, kd_zeros, n, off);
		if (err)
			return err;
		kd->wiped = true;
		off += n;
		len -= n;
	}
	return 0;
}

/* Makes [off, off + len) a hole where the file system can (no block left
 * holding the old bytes), zeros where it cannot. */
static int kd_punch(struct kdata *kd, uint64_t off, uint64_t len)
{
	if (!len)
		return 0;
	if (fallocate(kd->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off,
		      (off_t)len) == 0) {
		kd->wiped = true;
		return 0;
	}
	if (errno != EOPNOTSUPP && errno != ENOSYS)
		return kd_fail(kd, "punch hole");
	return kd_zero(kd, off, len);
}

/* A wipe that fails leaves key bytes in a range nothing owns: say so; the
 * next open wipes it again. */
static void kd_wipe(struct kdata *kd, uint64_t off, uint64_t len)
{
	if (kd_zero(kd, off, len))
		log_warnx("store: key data file %s: %llu bytes at %llu not wiped until the next open",
			  kd->path, (unsigned long long)len, (unsigned long long)off);
}

/* Room for need elements in p (capacity *cap): the array, moved if it
 * grew, or NULL (p untouched) when memory is short. */
static void *kd_grow(void *p, size_t *cap, size_t need, size_t elem)
{
	if (need <= *cap)
		return p;
	size_t n = *cap ? *cap * 2 : 64;
	while (n < need)
		n *= 2;
	void *q = realloc(p, n * elem);
	if (q)
		*cap = n;
	return q;
}

/* Index of the first free extent at or after off. */
static size_t free_find(const struct kdata *kd, uint64_t off)
{
	size_t lo = 0, hi = kd->nfree;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (kd->free[mid].off < off)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* Returns [off, off + len) (rounded) to the free list, merged with its
 * neighbours. On out of memory the extent is lost to reuse until the next
 * open (which finds it free): a leak of file space, never of key bytes. */
static void free_insert(struct kdata *kd, uint64_t off, uint64_t len)
{
	len = kd_round(len);
	if (!len)
		return;
	size_t i = free_find(kd, off);
	bool prev = i > 0 && kd->free[i - 1].off + kd->free[i - 1].len == off;
	bool next = i < kd->nfree && off + len == kd->free[i].off;
	if (prev && next) {
		kd->free[i - 1].len += len + kd->free[i].len;
		memmove(&kd->free[i], &kd->free[i + 1], (kd->nfree - i - 1) * sizeof(kd->free[0]));
		kd->nfree--;
	} else if (prev) {
		kd->free[i - 1].len += len;
	} else if (next) {
		kd->free[i].off = off;
		kd->free[i].len += len;
	} else {
		struct ext *f = kd_grow(kd->free, &kd->capfree, kd->nfree + 1, sizeof(kd->free[0]));
		if (!f) {
			log_warnx("store: key data file %s: out of memory: %llu bytes not reused "
				  "until the next open", kd->path, (unsigned long long)len);
			return;
		}
		kd->free = f;
		memmove(&kd->free[i + 1], &kd->free[i], (kd->nfree - i) * sizeof(kd->free[0]));
		kd->free[i] = (struct ext){off, len};
		kd->nfree++;
	}
}

/* First fit of len bytes starting on a multiple of align; what is left of
 * the extent it comes from (before and after it) stays free. */
static uint64_t alloc_ext(struct kdata *kd, uint64_t len, uint64_t align)
{
	for (size_t i = 0; i < kd->nfree; i++) {
		struct ext e = kd->free[i];
		uint64_t off = (e.off + align - 1) / align * align;
		if (off + len > e.off + e.len)
			continue;
		memmove(&kd->free[i], &kd->free[i + 1], (kd->nfree - i - 1) * sizeof(kd->free[0]));
		kd->nfree--;
		if (off > e.off)
			free_insert(kd, e.off, off - e.off);
		if (e.off + e.len > off + len)
			free_insert(kd, off + len, e.off + e.len - off - len);
		return off;
	}
	uint64_t off = (kd->end + align - 1) / align * align;
	if (off > kd->end)
		free_insert(kd, kd->end, off - kd->end);
	kd->end = off + len;
	return off;
}

static int journal(struct kdata *kd, enum jkind kind, uint64_t off, uint64_t len)
{
	struct jent *j = kd_grow(kd->j, &kd->capj, kd->nj + 1, sizeof(kd->j[0]));
	if (!j)
		return QKM_ENOMEM;
	kd->j = j;
	kd->j[kd->nj++] = (struct jent){kind, off, len};
	return 0;
}

int kdata_open(const char *path, struct kdata **out)
{
	struct kdata *kd = calloc(1, sizeof(*kd));
	*out = NULL;
	if (!kd || !(kd->path = strdup(path))) {
		free(kd);
		return QKM_ENOMEM;
	}
	kd->dfd = -1;
	kd->fd = qkm_private_file_open(path, "store: key data file");
	if (kd->fd < 0) {
		kdata_close(kd);
		return QKM_ESTORE;
	}
	if (flock(kd->fd, LOCK_EX | LOCK_NB) != 0) {
		log_warnx("store: key data file %s is in use by another process "
			  "(another qkm node on the same store?)", path);
		kdata_close(kd);
		return QKM_ESTATE;
	}
	/* Blocks put with write_around (acquisition's) go around the page
	 * cache: no copy into it (on a VM the largest cost of acquisition);
	 * reads still go through it. Not every file system has O_DIRECT
	 * (tmpfs); then none. */
	kd->dfd = open(path, O_RDWR | O_DIRECT | O_CLOEXEC);
	*out = kd;
	return 0;
}

void kdata_close(struct kdata *kd)
{
	if (!kd)
		return;
	if (kd->fd >= 0) {
		/* Wipes carried out since the last checkpoint go to disk now. */
		if ((kd->dirty || kd->wiped) && fdatasync(kd->fd) != 0)
			log_warn("store: key data file %s: sync", kd->path);
		close(kd->fd);
	}
	if (kd->dfd >= 0)
		close(kd->dfd);
	free(kd->free);
	free(kd->j);
	free(kd->path);
	free(kd);
}

static int live_cmp(const void *a, const void *b)
{
	const struct kdata_live *x = a, *y = b;
	return x->off < y->off ? -1 : x->off > y->off;
}

int kdata_recover(struct kdata *kd, struct kdata_live *live, size_t n)
{
	struct stat sb;
	int err = 0;
	if (fstat(kd->fd, &sb) != 0)
		return kd_fail(kd, "stat");
	if (n) /* an empty store hands no array (NULL), which qsort may not get */
		qsort(live, n, sizeof(live[0]), live_cmp);
	/* Refuse damage before touching the file: it stays as it is. */
	uint64_t pos = 0;
	for (size_t i = 0; i < n; i++) {
		const struct kdata_live *l = &live[i];
		if (l->off < pos || l->off % KD_ALIGN || !l->len || l->used > l->len ||
		    l->off + l->len < l->off) {
			log_warnx("store: key data file %s: block extent %llu+%llu overlaps another "
				  "or is malformed: the store's metadata is damaged",
				  kd->path, (unsigned long long)l->off, (unsigned long long)l->len);
			return QKM_ESTORE;
		}
		pos = l->off + kd_round(l->len);
	}
	uint64_t need = n ? live[n - 1].off + live[n - 1].len : 0;
	if ((uint64_t)sb.st_size < need) {
		log_warnx("store: key data file %s: %lld bytes, but its blocks need %llu: "
			  "truncated; refusing to use it", kd->path, (long long)sb.st_size,
			  (unsigned long long)need);
		return QKM_ESTORE;
	}
	kd->nfree = 0;
	kd->nj = 0;
	pos = 0;
	for (size_t i = 0; i < n; i++) {
		const struct kdata_live *l = &live[i];
		if (l->off > pos) {
			free_insert(kd, pos, l->off - pos);
			if ((err = kd_punch(kd, pos, l->off - pos)))
				return err;
		}
		if ((err = kd_punch(kd, l->off, l->used)))
			return err;
		pos = l->off + kd_round(l->len);
	}
	kd->end = pos;
	if ((uint64_t)sb.st_size > pos && ftruncate(kd->fd, (off_t)pos) != 0)
		return kd_fail(kd, "truncate");
	kd->wiped = true;
	return kdata_flush(kd);
}

/* One direct write of a whole aligned block; false if it cannot be had
 * (then the caller writes through the page cache). */
static bool kd_pwrite_direct(struct kdata *kd, const void *p, uint64_t len, uint64_t off)
{
	ssize_t w;
	do
		w = pwrite(kd->dfd, p, len, (off_t)off);
	while (w < 0 && errno == EINTR);
	if (w == (ssize_t)len) {
		kd->dirty = true; /* the device's cache and the file's size */
		return true;
	}
	if (w < 0 && errno == EINVAL) {
		/* The file system refuses this alignment: no more tries. */
		log_debug("store: key data file %s: no direct writes (%s)", kd->path,
			  strerror(errno));
		close(kd->dfd);
		kd->dfd = -1;
	}
	return false;
}

int kdata_put(struct kdata *kd, const void *data, uint64_t len, bool around, uint64_t *off)
{
	uint64_t rlen = kd_round(len);
	if (!len || rlen < len)
		return QKM_EINVAL;
	bool direct = around && kd->dfd >= 0 && len % KD_DIO == 0 && (uintptr_t)data % KD_DIO == 0;
	int err = journal(kd, J_ALLOC, 0, rlen);
	if (err)
		return err;
	*off = alloc_ext(kd, rlen, direct ? KD_DIO : KD_ALIGN);
	kd->j[kd->nj - 1].off = *off;
	if (direct && kd_pwrite_direct(kd, data, len, *off))
		return 0;
	kd->dirty = true;
	if ((err = kd_pwrite(kd, data, len, *off))) {
		kd->nj--;
		kd_wipe(kd, *off, len);
		free_insert(kd, *off, rlen);
	}
	return err;
}

int kdata_read(struct kdata *kd, uint64_t off, void *out, uint64_t len)
{
	uint8_t *b = out;
	while (len) {
		ssize_t r = pread(kd->fd, b, len, (off_t)off);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return kd_fail(kd, "read");
		if (r == 0) {
			log_warnx("store: key data file %s: ends before offset %llu: truncated",
				  kd->path, (unsigned long long)off);
			return QKM_ESTORE;
		}
		b += r;
		len -= (uint64_t)r;
		off += (uint64_t)r;
	}
	return 0;
}

void kdata_read_ahead(struct kdata *kd, uint64_t off, uint64_t len)
{
	if (len)
		(void)posix_fadvise(kd->fd, (off_t)off, (off_t)len, POSIX_FADV_WILLNEED);
}

int kdata_wipe_later(struct kdata *kd, uint64_t off, uint64_t len)
{
	return len ? journal(kd, J_WIPE, off, len) : 0;
}

int kdata_free_later(struct kdata *kd, uint64_t off, uint64_t len)
{
	return journal(kd, J_FREE, off, kd_round(len));
}

size_t kdata_pos(const struct kdata *kd)
{
	return kd->nj;
}

void kdata_undo(struct kdata *kd, size_t pos)
{
	while (kd->nj > pos) {
		const struct jent *e = &kd->j[--kd->nj];
		/* An extent of the undone part holds bytes no block owns. */
		if (e->kind == J_ALLOC) {
			kd_wipe(kd, e->off, e->len);
			free_insert(kd, e->off, e->len);
		}
	}
}

static int kd_sync(struct kdata *kd)
{
	if (fdatasync(kd->fd) != 0)
		return kd_fail(kd, "sync");
	kd->dirty = kd->wiped = false;
	return 0;
}

int kdata_sync(struct kdata *kd)
{
	return kd->dirty ? kd_sync(kd) : 0;
}

int kdata_flush(struct kdata *kd)
{
	return kd->dirty || kd->wiped ? kd_sync(kd) : 0;
}

void kdata_committed(struct kdata *kd)
{
	for (size_t i = 0; i < kd->nj; i++) {
		const struct jent *e = &kd->j[i];
		if (e->kind == J_WIPE)
			kd_wipe(kd, e->off, e->len);
		else if (e->kind == J_FREE)
			free_insert(kd, e->off, e->len);
	}
	kd->nj = 0;
}

int kdata_copy(struct kdata *dst, struct kdata *src)
{
	static uint8_t buf[KD_CHUNK];
	struct stat sb;
	int err = 0;
	if (fstat(src->fd, &sb) != 0)
		return kd_fail(src, "stat");
	if (ftruncate(dst->fd, 0) != 0)
		return kd_fail(dst, "truncate");
	for (uint64_t off = 0; off < (uint64_t)sb.st_size && !err;) {
		uint64_t n = (uint64_t)sb.st_size - off < KD_CHUNK ? (uint64_t)sb.st_size - off
								   : KD_CHUNK;
		if (!(err = kdata_read(src, off, buf, n)))
			err = kd_pwrite(dst, buf, n, off);
		off += n;
	}
	qkm_cleanse(buf, sizeof(buf)); /* it held key bytes */
	dst->dirty = true;
	return err ? err : kdata_flush(dst);
}

void kdata_usage(const struct kdata *kd, uint64_t *size, uint64_t *free_bytes)
{
	uint64_t f = 0;
	for (size_t i = 0; i < kd->nfree; i++)
		f += kd->free[i].len;
	*size = kd->end;
	*free_bytes = f;
}
