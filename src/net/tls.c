/* tls.c - SSL_CTX construction (TLS 1.3, mutual) and certificate identity
 * extraction. Verification itself is OpenSSL's; we only read the subject of
 * a certificate that already verified. */
#include "net/tls.h"
#include "core/log.h"

#include <openssl/err.h>
#include <openssl/x509.h>
#include <string.h>

void qkm_tls_log_errors(const char *what)
{
	unsigned long e;
	char msg[256];
	int any = 0;
	while ((e = ERR_get_error()) != 0) {
		ERR_error_string_n(e, msg, sizeof(msg));
		log_warnx("%s: %s", what, msg);
		any = 1;
	}
	if (!any)
		log_warnx("%s", what);
}

SSL_CTX *qkm_tls_ctx_new(const char *ca, const char *cert, const char *key, bool server)
{
	SSL_CTX *ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
	if (!ctx)
		goto err;
	if (!SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION))
		goto err;
	if (SSL_CTX_load_verify_locations(ctx, ca, NULL) != 1) {
		qkm_tls_log_errors(ca);
		goto fail;
	}
	if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
		qkm_tls_log_errors(cert);
		goto fail;
	}
	if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1 ||
	    SSL_CTX_check_private_key(ctx) != 1) {
		qkm_tls_log_errors(key);
		goto fail;
	}
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
	SSL_CTX_set_verify_depth(ctx, 2);
	SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
				      SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
				      SSL_MODE_RELEASE_BUFFERS);
	/* Long-lived links; session tickets only add state to protect. */
	SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
	SSL_CTX_set_num_tickets(ctx, 0);
	if (server)
		SSL_CTX_set_client_CA_list(ctx, SSL_load_client_CA_file(ca));
	return ctx;
err:
	qkm_tls_log_errors("TLS context");
fail:
	SSL_CTX_free(ctx);
	return NULL;
}

static int subject_field(X509_NAME *n, int nid, char *out, size_t outsz)
{
	int idx = X509_NAME_get_index_by_NID(n, nid, -1);
	if (idx < 0 || X509_NAME_get_index_by_NID(n, nid, idx) >= 0)
		return QKM_EPERM; /* absent or ambiguous */
	ASN1_STRING *s = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(n, idx));
	int len = ASN1_STRING_length(s);
	if (len <= 0 || (size_t)len >= outsz)
		return QKM_EPERM;
	memcpy(out, ASN1_STRING_get0_data(s), (size_t)len);
	out[len] = 0;
	return qkm_name_valid(out) ? 0 : QKM_EPERM;
}

int qkm_tls_cert_identity(X509 *cert, char role[static QKM_ROLE_MAX],
			  char name[static QKM_NAME_MAX])
{
	if (!cert)
		return QKM_EPERM;
	X509_NAME *n = X509_get_subject_name(cert);
	if (!n || subject_field(n, NID_organizationalUnitName, role, QKM_ROLE_MAX) ||
	    subject_field(n, NID_commonName, name, QKM_NAME_MAX))
		return QKM_EPERM;
	return 0;
}

int qkm_tls_peer_identity(SSL *ssl, char role[static QKM_ROLE_MAX],
			  char name[static QKM_NAME_MAX])
{
	if (SSL_get_verify_result(ssl) != X509_V_OK)
		return QKM_EPERM;
	X509 *cert = SSL_get1_peer_certificate(ssl);
	int rc = qkm_tls_cert_identity(cert, role, name);
	X509_free(cert);
	return rc;
}
