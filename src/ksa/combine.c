/* combine.c - X25519 key combination (combine.h). */
#include "ksa/combine.h"

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <string.h>

struct qkm_x25519 {
	EVP_PKEY *pkey;
};

struct qkm_x25519 *qkm_x25519_new(uint8_t pub[static 32])
{
	struct qkm_x25519 *x = OPENSSL_zalloc(sizeof(*x));
	size_t len = 32;
	if (!x)
		return NULL;
	x->pkey = EVP_PKEY_Q_keygen(NULL, NULL, "X25519");
	if (!x->pkey || !EVP_PKEY_get_raw_public_key(x->pkey, pub, &len) || len != 32) {
		qkm_x25519_free(x);
		return NULL;
	}
	return x;
}

void qkm_x25519_free(struct qkm_x25519 *x)
{
	if (!x)
		return;
	EVP_PKEY_free(x->pkey);
	OPENSSL_free(x);
}

int qkm_x25519_shared(const struct qkm_x25519 *x, const uint8_t peer[static 32],
		      struct qkm_secret **ss)
{
	EVP_PKEY *pp = EVP_PKEY_new_raw_public_key(EVP_PKEY_X25519, NULL, peer, 32);
	EVP_PKEY_CTX *ctx = pp ? EVP_PKEY_CTX_new(x->pkey, NULL) : NULL;
	struct qkm_secret *s = qkm_secret_new(32);
	size_t len = 32;
	int rc = QKM_ECRYPTO;
	*ss = NULL;
	/* OpenSSL refuses an all-zero shared secret (a small-order peer key). */
	if (ctx && s && EVP_PKEY_derive_init(ctx) == 1 && EVP_PKEY_derive_set_peer(ctx, pp) == 1 &&
	    EVP_PKEY_derive(ctx, s->p, &len) == 1 && len == 32) {
		*ss = s;
		s = NULL;
		rc = 0;
	}
	qkm_secret_free(s);
	EVP_PKEY_CTX_free(ctx);
	EVP_PKEY_free(pp);
	return rc;
}

int qkm_combine_x25519(uint8_t *key, size_t len, const struct qkm_secret *ss,
		       const struct qkm_id *id)
{
	static const char info[] = "qkm x25519 combination v1";
	EVP_KDF *kdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
	EVP_KDF_CTX *kctx = kdf ? EVP_KDF_CTX_new(kdf) : NULL;
	struct qkm_secret *mask = qkm_secret_new(len);
	int rc = QKM_ECRYPTO;
	OSSL_PARAM params[] = {
		OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)"SHA256", 0),
		OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, ss->p, ss->len),
		OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, (void *)id->b, QKM_ID_LEN),
		OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, (void *)info, sizeof(info) - 1),
		OSSL_PARAM_construct_end(),
	};
	/* HKDF-Expand yields at most 255 hash lengths (8160 bytes). */
	if (kctx && mask && len <= 255 * 32ul && EVP_KDF_derive(kctx, mask->p, len, params) == 1) {
		for (size_t i = 0; i < len; i++)
			key[i] ^= mask->p[i];
		rc = 0;
	}
	qkm_secret_free(mask);
	EVP_KDF_CTX_free(kctx);
	EVP_KDF_free(kdf);
	return rc;
}
