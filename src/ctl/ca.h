/* ca.h - the certificate authority of a qkm network: the controller's
 * access-control repository. It makes the CA, issues one certificate per
 * entity (the entity's role in OU, its name in CN) and checks certificates
 * against it. Building TLS contexts from these files is net/tls.c's job. */
#ifndef QKM_CTL_CA_H
#define QKM_CTL_CA_H

#include "core/err.h"
#include "core/id.h"

/* File names of the CA inside its directory. */
#define QKM_CA_CERT_FILE "ca.pem"
#define QKM_CA_KEY_FILE "ca.key"
/* Lifetimes: the CA outlives every leaf it issues (a leaf is cut short if it
 * would not). Both start an hour in the past to tolerate clock skew. */
#define QKM_CA_DAYS 3652
#define QKM_CA_LEAF_DAYS 365
/* Longest role string plus NUL ("controller"); the size of role[] below. */
#define QKM_CA_ROLE_MAX 16

/* Creates a new CA in dir (made 0700 if missing): dir/ca.key, an EC P-256
 * key written 0600, and dir/ca.pem, a self-signed X.509 v3 certificate with
 * subject O=qkm, OU=ca, CN=name, critical CA:TRUE pathlen 0, keyCertSign +
 * cRLSign, a subject key id and a random 128-bit serial, valid from an hour
 * ago for QKM_CA_DAYS. Each file is written under a temporary name and
 * renamed, so a reader never sees half a file; ca.pem is claimed with link()
 * and never replaced, so of two concurrent creates exactly one succeeds.
 * Returns 0; QKM_EEXIST if dir/ca.pem exists; QKM_EINVAL if name fails
 * qkm_name_valid() or a path is too long; QKM_EIO on a file error;
 * QKM_ECRYPTO if OpenSSL fails (its error queue is logged). */
int qkm_ca_create(const char *dir, const char *name) QKM_MUST_CHECK;

/* Issues a leaf certificate signed by the CA in dir (dir/ca.pem, dir/ca.key,
 * which must match). The leaf gets a fresh EC P-256 key; subject O=qkm,
 * OU=role, CN=name; SAN DNS:localhost, IP:127.0.0.1, IP:::1; critical
 * CA:FALSE; digitalSignature; serverAuth + clientAuth; subject and authority
 * key ids; a random serial; valid from an hour ago for QKM_CA_LEAF_DAYS.
 * role is "node", "sae", "sim", "admin" or "controller"; name must pass
 * qkm_name_valid(). Writes the PEM certificate to cert_out (0644) and the
 * PKCS#8 PEM key to key_out (0600), each atomically; existing files are
 * replaced (re-issuing is how a certificate is renewed).
 * Returns 0; QKM_EINVAL for a bad role, name or path; QKM_EIO on a file
 * error; QKM_ECRYPTO if OpenSSL fails or the CA key does not match ca.pem. */
int qkm_ca_issue(const char *dir, const char *role, const char *name, const char *cert_out,
		 const char *key_out) QKM_MUST_CHECK;

/* Verifies the certificate in cert_pem against the single trusted CA in
 * ca_pem (chain, signature, validity period now) and extracts the entity:
 * role gets the OU and name the CN, both NUL-terminated. They are set to ""
 * unless 0 is returned. The CA certificate itself is not an entity.
 * Returns 0; QKM_EPERM if the certificate does not verify (the reason is
 * logged); QKM_EFORMAT if it verifies but has no single OU that is a known
 * role or no single CN that is a valid name; QKM_EIO on a file error;
 * QKM_ECRYPTO if a file is not PEM or OpenSSL fails. */
int qkm_ca_verify_file(const char *ca_pem, const char *cert_pem,
		       char role[static QKM_CA_ROLE_MAX] /* OUT */,
		       char name[static QKM_NAME_MAX] /* OUT */) QKM_MUST_CHECK;

#endif
