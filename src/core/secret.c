/* secret.c - secure-heap allocation and wiping of key material. Everything
 * else in qkm that touches key bytes goes through here. */
#include "core/secret.h"

#include <openssl/crypto.h>
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

static struct qkm_secret *secret_alloc(size_t len, bool zero)
{
	if (len == 0)
		return NULL;
	struct qkm_secret *s = OPENSSL_zalloc(sizeof(*s));
	if (!s)
		return NULL;
	/* Not zeroing is safe: OpenSSL's secure heap wipes every block when it
	 * is freed (secure_free and secure_clear_free alike), so no old key
	 * bytes show through. */
	s->p = zero ? OPENSSL_secure_zalloc(len) : OPENSSL_secure_malloc(len);
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
	/* CRYPTO_secure_free wipes the block's whole buddy-allocated size
	 * itself; OPENSSL_secure_clear_free would wipe it once more first. A
	 * buffer from the ordinary heap (no secure heap in this process) is
	 * wiped here. */
	if (CRYPTO_secure_allocated(s->p))
		OPENSSL_secure_free(s->p);
	else
		OPENSSL_clear_free(s->p, s->len);
	OPENSSL_free(s);
	qkm_cleanse_regs();
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
