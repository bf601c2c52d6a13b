/* spool.c - a spool directory as a key source (spool.h). Invariants: a file
 * is handed over at most once per process (in flight until settled); it
 * leaves the directory only by rename to rejected/ or by unlink after its
 * settlement; its ID is forgotten only once the unlink is durable. */
#include "kma/spool.h"
#include "core/buf.h"
#include "core/log.h"
#include "core/secret.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SPOOL_HASH 4096u
#define SPOOL_SUFFIX ".qkd"
#define SPOOL_REJECTED "rejected"
#define SPOOL_SCAN_MAX_FILES 65536u /* names listed per scan at most */

/* A file handed to acquisition, by name and by QKD-key ID. */
struct sp_file {
	struct sp_file *next_name, *next_id; /* hash chains */
	struct sp_file *next_done;           /* settled, to remove */
	bool done, stored;
	bool warned;                         /* its removal failed, and was logged */
	char id[QKM_NAME_MAX];
	char name[]; /* NUL-terminated */
};

struct qkm_spool {
	char dir[PATH_MAX];
	char link[QKM_NAME_MAX];
	struct qkm_spool_ops ops;
	struct sp_file *by_name[SPOOL_HASH], *by_id[SPOOL_HASH];
	struct sp_file *done;
	size_t n_flight;
	bool dir_failed;          /* the last scan could not read the directory */
};

static uint32_t str_hash(const char *s)
{
	uint32_t h = 2166136261u;
	for (; *s; s++)
		h = (h ^ (uint8_t)*s) * 16777619u;
	return h % SPOOL_HASH;
}

static struct sp_file *find_name(const struct qkm_spool *sp, const char *name)
{
	for (struct sp_file *f = sp->by_name[str_hash(name)]; f; f = f->next_name)
		if (strcmp(f->name, name) == 0)
			return f;
	return NULL;
}

static void unhash(struct qkm_spool *sp, struct sp_file *f)
{
	struct sp_file **pp = &sp->by_name[str_hash(f->name)];
	while (*pp != f)
		pp = &(*pp)->next_name;
	*pp = f->next_name;
	pp = &sp->by_id[str_hash(f->id)];
	while (*pp != f)
		pp = &(*pp)->next_id;
	*pp = f->next_id;
	sp->n_flight--;
}

/* mkdir -p with mode for the missing parts. */
static int mkdirs(const char *path, mode_t mode)
{
	char tmp[PATH_MAX];
	if (snprintf(tmp, sizeof(tmp), "%s", path) >= (int)sizeof(tmp))
		return -1;
	for (char *p = tmp + 1; *p; p++)
		if (*p == '/') {
			*p = 0;
			if (mkdir(tmp, mode) < 0 && errno != EEXIST)
				return -1;
			*p = '/';
		}
	return mkdir(tmp, mode) < 0 && errno != EEXIST ? -1 : 0;
}

struct qkm_spool *qkm_spool_new(const char *dir, const char *link, const struct qkm_spool_ops *ops)
{
	struct qkm_spool *sp = calloc(1, sizeof(*sp));
	if (!sp)
		return NULL;
	snprintf(sp->dir, sizeof(sp->dir), "%s", dir);
	snprintf(sp->link, sizeof(sp->link), "%s", link);
	sp->ops = *ops;
	if (mkdirs(dir, 0700) < 0)
		log_warn("link %s: spool %s cannot be created", link, dir);
	return sp;
}

void qkm_spool_free(struct qkm_spool *sp)
{
	if (!sp)
		return;
	for (size_t i = 0; i < SPOOL_HASH; i++)
		while (sp->by_name[i]) {
			struct sp_file *f = sp->by_name[i];
			unhash(sp, f);
			free(f);
		}
	free(sp);
}

size_t qkm_spool_in_flight(const struct qkm_spool *sp) { return sp->n_flight; }

static bool is_spool_name(const char *n)
{
	size_t len = strlen(n), sl = strlen(SPOOL_SUFFIX);
	return n[0] != '.' && len > sl && strcmp(n + len - sl, SPOOL_SUFFIX) == 0;
}

static int name_cmp(const void *x, const void *y)
{
	return strcmp(*(const char *const *)x, *(const char *const *)y);
}

static int dir_sync(int dfd)
{
	return fsync(dfd) == 0 || errno == EINVAL ? 0 : QKM_EIO;
}

/* Moves name to rejected/ (durably) and says why, once, in the log. */
static void reject(struct qkm_spool *sp, int dfd, const char *name, const char *why)
{
	char to[PATH_MAX];
	snprintf(to, sizeof(to), "%s/%s", SPOOL_REJECTED, name);
	if (mkdirat(dfd, SPOOL_REJECTED, 0700) < 0 && errno != EEXIST) {
		log_warn("link %s: spool file %s refused (%s) but %s/%s cannot be created; left "
			 "in place", sp->link, name, why, sp->dir, SPOOL_REJECTED);
		return;
	}
	if (renameat(dfd, name, dfd, to) < 0) {
		log_warn("link %s: spool file %s refused (%s) but not moved to %s/", sp->link,
			 name, why, SPOOL_REJECTED);
		return;
	}
	if (dir_sync(dfd))
		log_warn("link %s: spool %s: fsync", sp->link, sp->dir);
	log_warnx("link %s: spool file %s rejected: %s (moved to %s/%s/)", sp->link, name, why,
		  sp->dir, SPOOL_REJECTED);
	if (sp->ops.rejected)
		sp->ops.rejected(name, why, sp->ops.arg);
}

/* Reads the regular file name whole into b (a secure buffer). 0, or an
 * error with why filled in. */
static int read_whole(int dfd, const char *name, struct qkm_buf *b, char *why, size_t whysz)
{
	int fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
	struct stat st;
	int rc = 0;
	if (fd < 0) {
		snprintf(why, whysz, "cannot open: %s", strerror(errno));
		return errno == ENOENT ? QKM_ENOTFOUND : QKM_EIO;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		snprintf(why, whysz, "not a regular file");
		rc = QKM_EFORMAT;
		goto out;
	}
	if ((uint64_t)st.st_size > QKM_SPOOL_FILE_MAX) {
		snprintf(why, whysz, "%lld bytes: larger than a key file can be (%u)",
			 (long long)st.st_size, QKM_SPOOL_FILE_MAX);
		rc = QKM_ETOOBIG;
		goto out;
	}
	/* Read to the end, not to st_size: one more byte than stat said means
	 * the writer broke the rename convention; the decoder judges it. */
	if ((rc = qkm_buf_reserve(b, (size_t)st.st_size + 1))) {
		snprintf(why, whysz, "out of memory");
		goto out;
	}
	for (;;) {
		if (b->len == b->cap && (rc = qkm_buf_reserve(b, 4096))) {
			snprintf(why, whysz, "larger than a key file can be");
			goto out;
		}
		ssize_t n = read(fd, b->p + b->len, b->cap - b->len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			snprintf(why, whysz, "cannot read: %s", strerror(errno));
			rc = QKM_EIO;
			goto out;
		}
		if (n == 0)
			break;
		b->len += (size_t)n;
	}
out:
	close(fd); /* read only */
	return rc;
}

/* Hands one file to the owner; returns the verdict (REJECT/DONE handled
 * here). *bytes (OUT): its size. */
static enum qkm_spool_verdict hand_over(struct qkm_spool *sp, int dfd, const char *name,
					size_t *bytes)
{
	struct qkm_buf b;
	struct qkm_keyfile kf;
	const char *field = NULL;
	char why[256] = "";
	enum qkm_spool_verdict v = QKM_SPOOL_REJECT;
	qkm_buf_init(&b, QKM_SPOOL_FILE_MAX + 4096, true);
	qkm_keyfile_init(&kf, QKM_KF_QKD);
	*bytes = 0;
	int rc = read_whole(dfd, name, &b, why, sizeof(why));
	*bytes = b.len;
	if (rc == QKM_ENOTFOUND) {
		v = QKM_SPOOL_DONE; /* gone meanwhile: nothing to do */
		goto out;
	}
	if (rc == QKM_EIO || rc == QKM_ENOMEM) {
		log_warnx("link %s: spool file %s: %s; trying again later", sp->link, name, why);
		v = QKM_SPOOL_LATER;
		goto out;
	}
	if (!rc && (rc = qkm_keyfile_decode(b.p, b.len, &kf, &field)))
		snprintf(why, sizeof(why), "not a valid key file: %s at %s%s", qkm_strerror(rc),
			 field ? field : "?",
			 rc == QKM_ETRUNC ? " (cut short: writers rename NAME.tmp to NAME.qkd "
					    "only when it is complete)"
					  : "");
	else if (!rc && kf.kind != QKM_KF_QKD)
		snprintf(why, sizeof(why), "not a QKD-key file (kind %d)", (int)kf.kind);
	else if (!rc) {
		char id[QKM_NAME_MAX];
		snprintf(id, sizeof(id), "%s", kf.m.qkd.qkd_key_id);
		v = sp->ops.take(name, &kf, why, sizeof(why), sp->ops.arg);
		if (v == QKM_SPOOL_TAKEN) {
			size_t nl = strlen(name);
			struct sp_file *f = calloc(1, sizeof(*f) + nl + 1);
			if (!f) {
				/* Taken but untracked: it stays in the directory
				 * and is read again at the next start, where the
				 * store knows it if it was stored. */
				log_warnx("link %s: spool file %s: out of memory tracking it",
					  sp->link, name);
				goto out;
			}
			memcpy(f->name, name, nl + 1);
			memcpy(f->id, id, sizeof(f->id));
			uint32_t hn = str_hash(f->name), hi = str_hash(f->id);
			f->next_name = sp->by_name[hn];
			sp->by_name[hn] = f;
			f->next_id = sp->by_id[hi];
			sp->by_id[hi] = f;
			sp->n_flight++;
		}
		goto out;
	}
out:
	if (v == QKM_SPOOL_REJECT)
		reject(sp, dfd, name, why[0] ? why : "refused");
	else if (v == QKM_SPOOL_DONE && rc != QKM_ENOTFOUND) {
		if (unlinkat(dfd, name, 0) < 0 && errno != ENOENT)
			log_warn("link %s: spool file %s (already stored) not removed", sp->link,
				 name);
		else if (dir_sync(dfd))
			log_warn("link %s: spool %s: fsync", sp->link, sp->dir);
		else
			log_info("link %s: spool file %s removed: QKD-key %s was stored before",
				 sp->link, name, kf.m.qkd.qkd_key_id);
	}
	qkm_keyfile_fini(&kf);
	qkm_buf_fini(&b);
	return v;
}

int qkm_spool_scan(struct qkm_spool *sp, size_t max_bytes, bool *more)
{
	int dfd = open(sp->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *d = dfd >= 0 ? fdopendir(dup(dfd)) : NULL;
	char **names = NULL;
	size_t n = 0, cap = 0, bytes = 0;
	int handed = 0, rc = 0;
	if (more)
		*more = false;
	if (!d) {
		if (!sp->dir_failed)
			log_warn("link %s: spool %s cannot be read", sp->link, sp->dir);
		sp->dir_failed = true;
		if (dfd >= 0)
			close(dfd);
		return QKM_EIO;
	}
	if (sp->dir_failed)
		log_info("link %s: spool %s readable again", sp->link, sp->dir);
	sp->dir_failed = false;
	struct dirent *e;
	errno = 0;
	/* cppcheck-suppress readdirCalled ; readdir_r is deprecated: readdir is safe on a
	 * stream no other thread reads */
	while ((e = readdir(d)) != NULL) {
		if (!is_spool_name(e->d_name) || find_name(sp, e->d_name))
			continue;
		if (n == SPOOL_SCAN_MAX_FILES) {
			if (more)
				*more = true;
			break;
		}
		if (n == cap) {
			size_t c = cap ? 2 * cap : 256;
			char **x = realloc(names, c * sizeof(*x));
			if (!x) {
				rc = QKM_ENOMEM;
				goto out;
			}
			names = x;
			cap = c;
		}
		if (!(names[n] = strdup(e->d_name))) {
			rc = QKM_ENOMEM;
			goto out;
		}
		n++;
	}
	/* Name order is generation order (the writer's contract); a listing
	 * cut at SPOOL_SCAN_MAX_FILES may miss earlier names, so only its
	 * sorted prefix up to the cut is certain: a full listing is rare
	 * enough (65536 files waiting) to take the risk of a reorder there. */
	if (n)
		qsort(names, n, sizeof(*names), name_cmp);
	for (size_t i = 0; i < n; i++) {
		size_t fb;
		if (bytes >= max_bytes && handed) {
			if (more)
				*more = true;
			break;
		}
		enum qkm_spool_verdict v = hand_over(sp, dfd, names[i], &fb);
		bytes += fb;
		if (v == QKM_SPOOL_LATER) {
			if (more)
				*more = true;
			break;
		}
		handed++;
	}
out:
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
	closedir(d);
	close(dfd);
	if (rc)
		log_warnx("link %s: spool %s: %s", sp->link, sp->dir, qkm_strerror(rc));
	return rc ? rc : handed;
}

void qkm_spool_settled(struct qkm_spool *sp, const char *qkd_id, bool stored)
{
	for (struct sp_file *f = sp->by_id[str_hash(qkd_id)]; f; f = f->next_id)
		if (!f->done && strcmp(f->id, qkd_id) == 0) {
			f->done = true;
			f->stored = stored;
			f->next_done = sp->done;
			sp->done = f;
			return;
		}
}

int qkm_spool_remove_done(struct qkm_spool *sp)
{
	if (!sp->done)
		return 0;
	int dfd = open(sp->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0) {
		log_warn("link %s: spool %s cannot be opened to remove files", sp->link, sp->dir);
		return QKM_EIO;
	}
	struct sp_file *f, *keep = NULL, *gone = NULL;
	while ((f = sp->done) != NULL) {
		sp->done = f->next_done;
		if (unlinkat(dfd, f->name, 0) < 0 && errno != ENOENT) {
			/* Tried again with the next removals; said once. */
			if (!f->warned)
				log_warn("link %s: spool file %s not removed (tried again later)",
					 sp->link, f->name);
			f->warned = true;
			f->next_done = keep;
			keep = f;
		} else {
			f->next_done = gone;
			gone = f;
		}
	}
	sp->done = keep;
	int rc = dir_sync(dfd);
	close(dfd); /* read only: the fsync above made the unlinks durable */
	if (rc) {
		/* Not known durable: keep the IDs in the store (a file that comes
		 * back after a crash must still be refused). */
		log_warn("link %s: spool %s: fsync after removal", sp->link, sp->dir);
	}
	int removed = 0;
	unsigned stored = 0, dropped = 0;
	while ((f = gone) != NULL) {
		gone = f->next_done;
		if (!rc && sp->ops.forget)
			sp->ops.forget(f->id, sp->ops.arg);
		f->stored ? stored++ : dropped++;
		unhash(sp, f);
		free(f);
		removed++;
	}
	if (dropped)
		log_info("link %s: spool: removed %u file(s) acquisition stored and %u it discarded "
			 "(aborted or lost at one end)", sp->link, stored, dropped);
	else
		log_debug("link %s: spool: removed %u stored file(s)", sp->link, stored);
	return rc ? rc : removed;
}

int qkm_spool_write(const char *dir, const char *name, const uint8_t *p, size_t len, bool sync)
{
	char tmp[PATH_MAX], fin[PATH_MAX];
	if (snprintf(tmp, sizeof(tmp), "%s/%s.tmp", dir, name) >= (int)sizeof(tmp) ||
	    snprintf(fin, sizeof(fin), "%s/%s" SPOOL_SUFFIX, dir, name) >= (int)sizeof(fin))
		return QKM_EINVAL;
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return QKM_EIO;
	size_t off = 0;
	while (off < len) {
		ssize_t n = write(fd, p + off, len - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		off += (size_t)n;
	}
	bool ok = off == len && (!sync || fsync(fd) == 0);
	ok = close(fd) == 0 && ok;
	if (!ok || rename(tmp, fin) < 0) {
		unlink(tmp);
		return QKM_EIO;
	}
	if (sync) {
		int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		ok = dfd >= 0 && dir_sync(dfd) == 0;
		if (dfd >= 0)
			close(dfd);
		if (!ok)
			return QKM_EIO;
	}
	return 0;
}

int qkm_spool_mkdir(const char *dir)
{
	return mkdirs(dir, 0700) < 0 ? QKM_EIO : 0;
}

int64_t qkm_spool_bytes(const char *dir)
{
	int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *d = dfd >= 0 ? fdopendir(dfd) : NULL;
	int64_t total = 0;
	struct dirent *e;
	struct stat st;
	if (!d) {
		if (dfd >= 0)
			close(dfd);
		return QKM_EIO;
	}
	/* cppcheck-suppress readdirCalled ; as in qkm_spool_scan */
	while ((e = readdir(d)) != NULL)
		if (is_spool_name(e->d_name) && fstatat(dfd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0)
			total += st.st_size;
	closedir(d); /* closes dfd */
	return total;
}
