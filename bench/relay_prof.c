/* relay_prof.c - the counters of relay_prof.h. Two mechanisms, both
 * confined to the bench-relay executable: `ld --wrap=SYM` turns calls to
 * SYM from libqkm's objects (and this program's) into calls to __wrap_SYM,
 * which times __real_SYM; and the file system calls SQLite imports from
 * libc are defined here, so the dynamic linker binds SQLite to these, which
 * time the raw system call. Nothing here changes what the calls do. */
#include "relay_prof.h"

#include <openssl/evp.h>
#include <stdbool.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include "core/buf.h"
#include "core/keyfile.h"
#include "core/secret.h"
#include "proto/frame.h"
#include "store/store.h"

static struct prof prof;
static bool prof_on;

static const char *const NAMES[PF_N] = {
	[PF_FDATASYNC] = "fdatasync",
	[PF_PWRITE] = "pwrite64",
	[PF_PREAD] = "pread64",
	[PF_FTRUNCATE] = "ftruncate64",
	[PF_COMMIT] = "qkm_store_commit",
	[PF_BEGIN] = "qkm_store_begin",
	[PF_BLOCK_PUT] = "qkm_store_block_put",
	[PF_SET_USED] = "qkm_store_block_set_used",
	[PF_BURN] = "qkm_store_block_burn",
	[PF_BLOCK_READ] = "qkm_store_block_read",
	[PF_POOL_READ] = "qkm_store_pool_read",
	[PF_RECORD] = "qkm_store_record",
	[PF_COUNTER] = "qkm_store_counter_*",
	[PF_BATCH] = "qkm_store_batch_*",
	[PF_CHECKPOINT] = "qkm_store_checkpoint",
	[PF_KF_ENCODE] = "qkm_keyfile_encode",
	[PF_KF_DECODE] = "qkm_keyfile_decode",
	[PF_KF_HASH] = "qkm_keyfile_set_hash",
	[PF_FRAME_PARSE] = "qkm_frame_parse",
	[PF_POLY1305] = "EVP_MAC_* (Poly1305)",
	[PF_SECRET] = "secure heap (alloc, wipe)",
};

const char *prof_name(enum prof_item i) { return NAMES[i]; }
int prof_is_syscall(enum prof_item i) { return i <= PF_FTRUNCATE; }

void prof_start(void)
{
	memset(&prof, 0, sizeof(prof));
	prof_on = true;
}

void prof_stop(struct prof *out)
{
	prof_on = false;
	*out = prof;
}

static inline uint64_t t_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static inline void add(enum prof_item i, uint64_t t0, uint64_t bytes)
{
	if (!prof_on)
		return;
	prof.ns[i] += t_now() - t0;
	prof.calls[i]++;
	prof.bytes[i] += bytes;
}

/* ---- file system calls made by SQLite ------------------------------------ */

ssize_t pwrite64(int fd, const void *buf, size_t n, off_t off)
{
	uint64_t t = t_now();
	ssize_t r = syscall(SYS_pwrite64, fd, buf, n, off);
	add(PF_PWRITE, t, r > 0 ? (uint64_t)r : 0);
	return r;
}

ssize_t pread64(int fd, void *buf, size_t n, off_t off)
{
	uint64_t t = t_now();
	ssize_t r = syscall(SYS_pread64, fd, buf, n, off);
	add(PF_PREAD, t, r > 0 ? (uint64_t)r : 0);
	return r;
}

int fdatasync(int fd)
{
	uint64_t t = t_now();
	int r = (int)syscall(SYS_fdatasync, fd);
	add(PF_FDATASYNC, t, 0);
	return r;
}

int ftruncate64(int fd, off_t len)
{
	uint64_t t = t_now();
	int r = (int)syscall(SYS_ftruncate, fd, len);
	add(PF_FTRUNCATE, t, 0);
	return r;
}

/* ---- libqkm and OpenSSL calls (ld --wrap) -------------------------------- */

#define WRAP(item, ret, fn, params, args)                                                  \
	ret __real_##fn params;                                                            \
	ret __wrap_##fn params;                                                            \
	ret __wrap_##fn params                                                             \
	{                                                                                  \
		uint64_t t = t_now();                                                      \
		ret r = __real_##fn args;                                                  \
		add(item, t, 0);                                                           \
		return r;                                                                  \
	}
#define WRAP_VOID(item, fn, params, args)                                                  \
	void __real_##fn params;                                                           \
	void __wrap_##fn params;                                                           \
	void __wrap_##fn params                                                            \
	{                                                                                  \
		uint64_t t = t_now();                                                      \
		__real_##fn args;                                                          \
		add(item, t, 0);                                                           \
	}

WRAP(PF_COMMIT, int, qkm_store_commit, (struct qkm_store * st), (st))
WRAP(PF_BEGIN, int, qkm_store_begin, (struct qkm_store * st), (st))
WRAP(PF_BLOCK_PUT, int, qkm_store_block_put, (struct qkm_store * st, struct qkm_block *b), (st, b))
WRAP(PF_SET_USED, int, qkm_store_block_set_used, (struct qkm_store * st, int64_t rowid, uint32_t u),
     (st, rowid, u))
WRAP(PF_BURN, int, qkm_store_block_burn,
     (struct qkm_store * st, const char *peer, const struct qkm_id *batch, uint32_t first,
      enum qkm_key_type kt, uint64_t upto),
     (st, peer, batch, first, kt, upto))
WRAP(PF_BLOCK_READ, int, qkm_store_block_read,
     (struct qkm_store * st, const char *peer, const struct qkm_id *batch, uint32_t first,
      enum qkm_key_type kt, uint32_t off, uint32_t len, uint8_t *out, int64_t *rowid),
     (st, peer, batch, first, kt, off, len, out, rowid))
WRAP(PF_POOL_READ, int, qkm_store_pool_read,
     (struct qkm_store * st, const char *peer, enum qkm_key_type kt, size_t n,
      struct qkm_range *ranges, size_t max, size_t *nranges, uint8_t *out),
     (st, peer, kt, n, ranges, max, nranges, out))
WRAP(PF_RECORD, int, qkm_store_record, (struct qkm_store * st, struct qkm_lc_event *ev), (st, ev))
WRAP(PF_COUNTER, int, qkm_store_counter_add, (struct qkm_store * st, const char *n, int64_t d),
     (st, n, d))
WRAP(PF_COUNTER, int, qkm_store_counter_get, (struct qkm_store * st, const char *n, int64_t *v),
     (st, n, v))
WRAP(PF_COUNTER, int, qkm_store_counter_raise, (struct qkm_store * st, const char *n, int64_t v),
     (st, n, v))
WRAP(PF_BATCH, int, qkm_store_batch_info,
     (struct qkm_store * st, const struct qkm_id *b, enum qkm_block_state *s, uint64_t *n),
     (st, b, s, n))
WRAP(PF_BATCH, int, qkm_store_batch_set_state,
     (struct qkm_store * st, const struct qkm_id *b, enum qkm_block_state s), (st, b, s))
WRAP(PF_CHECKPOINT, int, qkm_store_checkpoint, (struct qkm_store * st), (st))
WRAP(PF_KF_ENCODE, int, qkm_keyfile_encode, (const struct qkm_keyfile *kf, struct qkm_buf *out),
     (kf, out))
WRAP(PF_KF_DECODE, int, qkm_keyfile_decode,
     (const uint8_t *p, size_t len, struct qkm_keyfile *kf, const char **field),
     (p, len, kf, field))
WRAP(PF_KF_HASH, int, qkm_keyfile_set_hash, (struct qkm_keyfile * kf), (kf))
WRAP(PF_FRAME_PARSE, int, qkm_frame_parse, (const uint8_t *p, size_t len, struct qkm_frame *f),
     (p, len, f))
WRAP(PF_POLY1305, int, EVP_MAC_init,
     (EVP_MAC_CTX * c, const unsigned char *k, size_t kl, const OSSL_PARAM p[]), (c, k, kl, p))
WRAP(PF_POLY1305, int, EVP_MAC_update, (EVP_MAC_CTX * c, const unsigned char *d, size_t n),
     (c, d, n))
WRAP(PF_POLY1305, int, EVP_MAC_final,
     (EVP_MAC_CTX * c, unsigned char *out, size_t *ol, size_t os), (c, out, ol, os))
WRAP(PF_SECRET, struct qkm_secret *, qkm_secret_new_raw, (size_t len), (len))
WRAP(PF_SECRET, struct qkm_secret *, qkm_secret_dup, (const void *p, size_t len), (p, len))
WRAP_VOID(PF_SECRET, qkm_secret_free, (struct qkm_secret * s), (s))
WRAP_VOID(PF_SECRET, qkm_buf_fini, (struct qkm_buf * b), (b))
