/* tls.h - TLS contexts and peer identities. The only place qkm builds an
 * SSL_CTX. Every context is TLS 1.3 only, mutual: a peer without a
 * certificate chaining to the network's CA never gets past the handshake.
 * An entity's identity is its certificate's subject: OU = role ("node",
 * "sae", "sim", "admin", "controller"), CN = name. */
#ifndef QKM_NET_TLS_H
#define QKM_NET_TLS_H

#include <openssl/ssl.h>
#include <stdbool.h>

#include "core/err.h"
#include "core/id.h"

#define QKM_ROLE_MAX 16

/* Builds a context that presents cert/key and requires a peer certificate
 * signed by ca. server selects the method. NULL on error (logged, naming the
 * file that failed). */
SSL_CTX *qkm_tls_ctx_new(const char *ca, const char *cert, const char *key, bool server);

/* Reads the verified peer certificate's role and name. 0, or QKM_EPERM if
 * there is none, it did not verify, or its subject is not a qkm identity. */
int qkm_tls_peer_identity(SSL *ssl, char role[static QKM_ROLE_MAX],
			  char name[static QKM_NAME_MAX]) QKM_MUST_CHECK;

/* Same for a certificate (used by the HTTP servers). */
int qkm_tls_cert_identity(X509 *cert, char role[static QKM_ROLE_MAX],
			  char name[static QKM_NAME_MAX]) QKM_MUST_CHECK;

/* Logs and clears the OpenSSL error queue, prefixed with what failed. */
void qkm_tls_log_errors(const char *what);

#endif
