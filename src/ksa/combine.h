/* combine.h - key combination (R-SUP-9, after ITU-T X.1714): the KSA pair
 * run an ephemeral X25519 exchange over the KSA link (authenticated by the
 * link's mutual TLS) and each side replaces a QKD-derived key K by
 *     K' = K XOR HKDF-SHA256(ikm = X25519 secret, salt = KSA-key ID,
 *                            info = "qkm x25519 combination v1", L = |K|).
 * If the X25519 secret is ever recovered (a quantum computer), K' is K
 * XORed with a known string: exactly as secret as K, so never weaker than
 * the QKD-derived key alone. If K leaks instead, K' still rests on X25519.
 * docs/key-combination.md explains the construction. */
#ifndef QKM_KSA_COMBINE_H
#define QKM_KSA_COMBINE_H

#include <stddef.h>
#include <stdint.h>

#include "core/err.h"
#include "core/id.h"
#include "core/secret.h"

struct qkm_x25519;

/* A fresh ephemeral key pair; its public key in pub. NULL on failure. */
struct qkm_x25519 *qkm_x25519_new(uint8_t pub[static 32]);
void qkm_x25519_free(struct qkm_x25519 *x);
/* The shared secret with the peer's public key (32 bytes, secure heap).
 * QKM_ECRYPTO for a bad peer key (including the all-zero result). */
int qkm_x25519_shared(const struct qkm_x25519 *x, const uint8_t peer[static 32],
		      struct qkm_secret **ss /* OUT */) QKM_MUST_CHECK;
/* key[0..len) ^= HKDF-SHA256(ss, salt = id, info = "qkm x25519 combination v1", len). */
int qkm_combine_x25519(uint8_t *key, size_t len, const struct qkm_secret *ss,
		       const struct qkm_id *id) QKM_MUST_CHECK;

#endif
