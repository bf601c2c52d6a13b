/* secret.h - the one type for key material. Only secret.c allocates it, from
 * OpenSSL's secure heap (mlocked, excluded from core dumps), and wipes it. */
#ifndef QKM_CORE_SECRET_H
#define QKM_CORE_SECRET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/err.h"

struct qkm_secret {
	size_t len;
	uint8_t *p; /* secure heap; len bytes */
};

/* Sets up the secure heap of the given size (a power of two, e.g. 64 MiB) once
 * per process. Returns 0, or QKM_ENOMEM if OpenSSL could not make it. A heap
 * made but not locked in memory (RLIMIT_MEMLOCK too low, no CAP_IPC_LOCK)
 * still counts: for tests, which need no locking. */
int qkm_secret_heap_init(size_t bytes) QKM_MUST_CHECK;
/* The same for a daemon: also QKM_EPERM, with no heap set up, if the heap
 * could not be locked in memory and kept out of core dumps (OpenSSL's
 * CRYPTO_secure_malloc_init returns 2 then, and key material would be
 * swappable). */
int qkm_secret_heap_init_locked(size_t bytes) QKM_MUST_CHECK;

/* Allocates a zeroed secret of len bytes (len > 0). NULL when out of memory. */
struct qkm_secret *qkm_secret_new(size_t len);
/* Allocates a secret of len bytes (len > 0) whose contents are unspecified:
 * for a caller that overwrites every byte at once (a copy, an RNG draw), so
 * the bytes are not zeroed first. NULL when out of memory. */
struct qkm_secret *qkm_secret_new_raw(size_t len);
/* Allocates a secret holding a copy of p[0..len). NULL when out of memory. */
struct qkm_secret *qkm_secret_dup(const void *p, size_t len);
/* Wipes and frees; NULL is a no-op. */
void qkm_secret_free(struct qkm_secret *s);

/* The secure-heap blocks under qkm_secret and secure qkm_bufs: n bytes
 * (n > 0), zeroed if zero, else unspecified; NULL when out of memory. A
 * block of 4 KiB or more that was released comes back from a small cache
 * (secret.c), already zero. */
void *qkm_secure_alloc(size_t n, bool zero);
/* Wipes the first `used` bytes of p (all its owner ever wrote) and gives the
 * block back (to the cache, or to OpenSSL, which wipes it whole); NULL is a
 * no-op. */
void qkm_secure_release(void *p, size_t used);
/* Secure-heap bytes held by live blocks: CRYPTO_secure_used() without the
 * cache's (for leak checks). */
size_t qkm_secure_in_use(void);

/* Wipes len bytes at p (explicit_bzero), then the calling thread's vector
 * registers (qkm_cleanse_regs); the only way qkm clears key bytes. */
void qkm_cleanse(void *p, size_t len);
/* Zeroes the calling thread's vector registers: on x86-64 xmm/ymm/zmm 0-31,
 * as many as the CPU has; elsewhere nothing. glibc's memcpy and strlen move
 * data through them (AVX-512 variants through zmm16-31, which nothing else
 * touches) and leave the last bytes there, and a core dump records every
 * thread's registers: a copied ETSI 014 answer stayed readable in a dump of
 * an idle node (tests/system/test_secrets.sh). qkm_cleanse, qkm_secret_free
 * and the wipe of a secure qkm_buf call it. */
void qkm_cleanse_regs(void);
/* Zeroes QKM_CLEANSE_STACK bytes of the calling thread's stack below the
 * caller's frame, where the functions it called left their frames: spilled
 * registers and local buffers (ours, OpenSSL's, SQLite's, glibc's) may hold
 * key bytes, and a core dump records the stack. Seen: 8-byte pieces of
 * supplied keys 6.7 KB below a node's event loop in a dump of the idle
 * node (tests/system/test_secrets.sh). The node's main loop calls it after
 * each pass (cli/node.c). */
#define QKM_CLEANSE_STACK 32768
void qkm_cleanse_stack(void);
/* Constant-time equality of two equal-length buffers; 1 if equal. */
int qkm_ct_equal(const void *a, const void *b, size_t len);

#endif
