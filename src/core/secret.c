/* secret.c - secure-heap allocation and wiping of key material. Everything
 * else in qkm that touches key bytes goes through here. */
#include "core/secret.h"

#include <openssl/crypto.h>
#include <pthread.h>
#include <stdbool.h>
#include <string.h>

static int heap_init(size_t bytes, bool locked)
{
	if (CRYPTO_secure_malloc_initialized())
		return 0;
	/* minsize 32: key units are multiples of 8 bytes, most >= 32. */
	int r = CRYPTO_secure_malloc_init(bytes, 32);
	if (r == 0)
		return QKM_ENOMEM;
	/* 2: made, but mlock, a guard page or MADV_DONTDUMP failed. */
	if (r == 2 && locked) {
		(void)CRYPTO_secure_malloc_done(); /* nothing allocated yet */
		return QKM_EPERM;
	}
	return 0;
}

int qkm_secret_heap_init(size_t bytes) { return heap_init(bytes, false); }
int qkm_secret_heap_init_locked(size_t bytes) { return heap_init(bytes, true); }

/* ---- reuse of large secure-heap blocks ----------------------------------
 *
 * OpenSSL's secure heap hands out power-of-two blocks and wipes the whole
 * block when it is freed, with OPENSSL_cleanse's 8-byte stores. A 64 KiB
 * relay step or a 1 MiB acquisition round allocates and frees several such
 * blocks, each wiped at twice its used size when its length is just past a
 * power of two, and the next allocation lands on memory no cache holds.
 * Freed blocks of CACHE_MIN bytes and more are therefore wiped here (the
 * bytes their owner used, with explicit_bzero) and kept, up to
 * CACHE_PER_SIZE per size, for the next allocation of that size. Invariant:
 * every byte of a kept block is zero. An allocation that finds the heap
 * full gives the kept blocks back to OpenSSL first. Acquisition frees its
 * blocks in bursts (a round's QKD-key files, a flush's rounds): with 8 per
 * size, up to 4 % of a node's CPU went to OpenSSL wiping the overflow. */
#define CACHE_MIN_LOG 12 /* 4 KiB */
#define CACHE_MAX_LOG 23 /* 8 MiB */
#define CACHE_PER_SIZE 32
#define CACHE_MAX_BYTES (64u << 20)

static struct {
	pthread_mutex_t mu;
	void *blk[CACHE_MAX_LOG - CACHE_MIN_LOG + 1][CACHE_PER_SIZE];
	unsigned n[CACHE_MAX_LOG - CACHE_MIN_LOG + 1];
	unsigned wiping[CACHE_MAX_LOG - CACHE_MIN_LOG + 1]; /* slots held by blocks being wiped */
	size_t bytes, wiping_bytes;
} cache = {.mu = PTHREAD_MUTEX_INITIALIZER};

/* The cache's row for blocks of size (a power of two), or -1. */
static int cache_row(size_t size)
{
	if (size < ((size_t)1 << CACHE_MIN_LOG) || size > ((size_t)1 << CACHE_MAX_LOG) ||
	    (size & (size - 1)))
		return -1;
	return __builtin_ctzll((unsigned long long)size) - CACHE_MIN_LOG;
}

/* The size of the block OpenSSL gives for n bytes: n rounded up to a power
 * of two. */
static size_t block_size(size_t n)
{
	size_t b = 1;
	while (b < n && b <= SIZE_MAX / 2)
		b <<= 1;
	return b;
}

static void cache_drop_all(void)
{
	pthread_mutex_lock(&cache.mu);
	for (int r = 0; r <= CACHE_MAX_LOG - CACHE_MIN_LOG; r++)
		while (cache.n[r])
			OPENSSL_secure_free(cache.blk[r][--cache.n[r]]);
	cache.bytes = 0;
	pthread_mutex_unlock(&cache.mu);
}

void *qkm_secure_alloc(size_t n, bool zero)
{
	if (n == 0)
		return NULL;
	int row = CRYPTO_secure_malloc_initialized() ? cache_row(block_size(n)) : -1;
	if (row >= 0) {
		void *p = NULL;
		pthread_mutex_lock(&cache.mu);
		if (cache.n[row]) {
			p = cache.blk[row][--cache.n[row]];
			cache.bytes -= (size_t)1 << (row + CACHE_MIN_LOG);
		}
		pthread_mutex_unlock(&cache.mu);
		if (p)
			return p; /* zero already */
	}
	/* Not zeroing is safe: OpenSSL's secure heap wipes every block when it
	 * is freed, so no old key bytes show through. */
	void *p = zero ? OPENSSL_secure_zalloc(n) : OPENSSL_secure_malloc(n);
	if (!p && row >= 0) { /* row >= 0: the secure heap is initialised */
		cache_drop_all();
		p = zero ? OPENSSL_secure_zalloc(n) : OPENSSL_secure_malloc(n);
	}
	return p;
}

void qkm_secure_release(void *p, size_t used)
{
	if (!p)
		return;
	if (!CRYPTO_secure_allocated(p)) {
		/* No secure heap in this process: OpenSSL took the ordinary one. */
		OPENSSL_clear_free(p, used);
		qkm_cleanse_regs();
		return;
	}
	size_t size = CRYPTO_secure_actual_size(p);
	int row = cache_row(size);
	if (row >= 0) {
		/* The place is taken before the wipe, so that a block the cache
		 * has no room for is wiped once (below), not twice. Another
		 * thread cannot take it before it is zero: the slot is counted
		 * only once the block is in it, under the lock. */
		pthread_mutex_lock(&cache.mu);
		bool room = cache.n[row] + cache.wiping[row] < CACHE_PER_SIZE &&
			    cache.bytes + cache.wiping_bytes + size <= CACHE_MAX_BYTES;
		if (room) {
			cache.wiping[row]++;
			cache.wiping_bytes += size;
		}
		pthread_mutex_unlock(&cache.mu);
		if (room) {
			explicit_bzero(p, used < size ? used : size);
			qkm_cleanse_regs();
			pthread_mutex_lock(&cache.mu);
			cache.wiping[row]--;
			cache.wiping_bytes -= size;
			cache.blk[row][cache.n[row]++] = p;
			cache.bytes += size;
			pthread_mutex_unlock(&cache.mu);
			return;
		}
	}
	/* CRYPTO_secure_free wipes the block's whole size itself. */
	OPENSSL_secure_free(p);
	qkm_cleanse_regs();
}

size_t qkm_secure_in_use(void)
{
	pthread_mutex_lock(&cache.mu);
	size_t kept = cache.bytes;
	pthread_mutex_unlock(&cache.mu);
	size_t used = CRYPTO_secure_used();
	return used > kept ? used - kept : 0;
}

static struct qkm_secret *secret_alloc(size_t len, bool zero)
{
	if (len == 0)
		return NULL;
	struct qkm_secret *s = OPENSSL_zalloc(sizeof(*s));
	if (!s)
		return NULL;
	s->p = qkm_secure_alloc(len, zero);
	if (!s->p) {
		OPENSSL_free(s);
		return NULL;
	}
	s->len = len;
	return s;
}

struct qkm_secret *qkm_secret_new(size_t len) { return secret_alloc(len, true); }
struct qkm_secret *qkm_secret_new_raw(size_t len) { return secret_alloc(len, false); }

struct qkm_secret *qkm_secret_dup(const void *p, size_t len)
{
	struct qkm_secret *s = secret_alloc(len, false);
	if (s)
		memcpy(s->p, p, len);
	return s;
}

void qkm_secret_free(struct qkm_secret *s)
{
	if (!s)
		return;
	qkm_secure_release(s->p, s->len);
	OPENSSL_free(s);
}

void qkm_cleanse(void *p, size_t len)
{
	/* glibc's explicit_bzero is memset (vector stores) that the compiler
	 * may not drop; OPENSSL_cleanse stores 8 bytes at a time: it was 30 %
	 * of the simulator's CPU and 7 % of a node's during acquisition
	 * (perf, bench/acquire). */
	if (p && len)
		explicit_bzero(p, len);
	qkm_cleanse_regs();
}

/* The clobber lists tell the compiler the registers are gone, so it keeps
 * nothing of its own in them across the asm (also across a call, which
 * gcc's -fipa-ra would otherwise assume left them alone). A VEX or EVEX
 * write zeroes the whole register, upper bits included. */
#if defined(__x86_64__)
#define QKM_XMM0_15 "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", \
	"xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15"
#define QKM_ZERO(r) "vpxord %%" r ", %%" r ", %%" r "\n\t"
__attribute__((target("avx512f,avx512vl"))) static void regs_zero_avx512(void)
{
	__asm__ volatile("vzeroall\n\t" /* zmm0-15 */
			 QKM_ZERO("xmm16") QKM_ZERO("xmm17") QKM_ZERO("xmm18") QKM_ZERO("xmm19")
			 QKM_ZERO("xmm20") QKM_ZERO("xmm21") QKM_ZERO("xmm22") QKM_ZERO("xmm23")
			 QKM_ZERO("xmm24") QKM_ZERO("xmm25") QKM_ZERO("xmm26") QKM_ZERO("xmm27")
			 QKM_ZERO("xmm28") QKM_ZERO("xmm29") QKM_ZERO("xmm30") QKM_ZERO("xmm31")
			 ::: QKM_XMM0_15, "xmm16", "xmm17", "xmm18", "xmm19", "xmm20", "xmm21",
			 "xmm22", "xmm23", "xmm24", "xmm25", "xmm26", "xmm27", "xmm28", "xmm29",
			 "xmm30", "xmm31");
}

__attribute__((target("avx"))) static void regs_zero_avx(void)
{
	__asm__ volatile("vzeroall" ::: QKM_XMM0_15);
}

static void regs_zero_sse(void)
{
	__asm__ volatile("pxor %%xmm0, %%xmm0\n\tpxor %%xmm1, %%xmm1\n\t"
			 "pxor %%xmm2, %%xmm2\n\tpxor %%xmm3, %%xmm3\n\t"
			 "pxor %%xmm4, %%xmm4\n\tpxor %%xmm5, %%xmm5\n\t"
			 "pxor %%xmm6, %%xmm6\n\tpxor %%xmm7, %%xmm7\n\t"
			 "pxor %%xmm8, %%xmm8\n\tpxor %%xmm9, %%xmm9\n\t"
			 "pxor %%xmm10, %%xmm10\n\tpxor %%xmm11, %%xmm11\n\t"
			 "pxor %%xmm12, %%xmm12\n\tpxor %%xmm13, %%xmm13\n\t"
			 "pxor %%xmm14, %%xmm14\n\tpxor %%xmm15, %%xmm15" ::: QKM_XMM0_15);
}

void qkm_cleanse_regs(void)
{
	/* __builtin_cpu_supports also asks whether the OS saves the state
	 * (XCR0), so these never fault. */
	if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl"))
		regs_zero_avx512();
	else if (__builtin_cpu_supports("avx"))
		regs_zero_avx();
	else
		regs_zero_sse();
}
#else
/* Other architectures: registers are not wiped (docs/operations.md). */
void qkm_cleanse_regs(void) {}
#endif

int qkm_ct_equal(const void *a, const void *b, size_t len)
{
	return CRYPTO_memcmp(a, b, len) == 0;
}

__attribute__((noinline)) void qkm_cleanse_stack(void)
{
	unsigned char below[QKM_CLEANSE_STACK];
	explicit_bzero(below, sizeof(below));
	/* The array is dead after this; keep the stores all the same. */
	__asm__ volatile("" : : "r"(below) : "memory");
}
