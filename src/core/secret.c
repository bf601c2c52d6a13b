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
	OPENSSL_secure_clear_free(s->p, s->len);
	OPENSSL_free(s);
}

void qkm_cleanse(void *p, size_t len)
{
	if (p && len)
		OPENSSL_cleanse(p, len);
}

int qkm_ct_equal(const void *a, const void *b, size_t len)
{
	return CRYPTO_memcmp(a, b, len) == 0;
}
