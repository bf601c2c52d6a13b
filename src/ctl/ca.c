/* ca.c - the network's CA: key generation, certificate issuing and checking
 * with OpenSSL's X509 API, and atomic PEM files. Every OpenSSL object is
 * freed on every path; private keys only pass through OpenSSL's PEM code,
 * which wipes its buffers, and unbuffered fd BIOs (no stdio copies). */
#include "ctl/ca.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/log.h"

static const char *const ca_roles[] = { "node", "sae", "sim", "admin", "controller" };

static bool ca_role_valid(const char *role)
{
	for (size_t i = 0; i < sizeof(ca_roles) / sizeof(ca_roles[0]); i++)
		if (strcmp(role, ca_roles[i]) == 0)
			return true;
	return false;
}

/* Logs and empties OpenSSL's error queue, so a later failure is not blamed
 * on this one. The queue holds reason strings, never key bytes. */
static int ca_crypto_fail(const char *what)
{
	unsigned long e;
	const char *data;
	int flags;
	char buf[256];
	bool any = false;

	while ((e = ERR_get_error_all(NULL, NULL, NULL, &data, &flags)) != 0) {
		ERR_error_string_n(e, buf, sizeof(buf));
		bool txt = (flags & ERR_TXT_STRING) && data && *data;
		log_warnx("ca: %s: %s%s%s", what, buf, txt ? ": " : "", txt ? data : "");
		any = true;
	}
	if (!any)
		log_warnx("ca: %s failed", what);
	return QKM_ECRYPTO;
}

static int ca_path(char out[static PATH_MAX], const char *dir, const char *file)
{
	int n = snprintf(out, PATH_MAX, "%s/%s", dir, file);
	return n > 0 && n < PATH_MAX ? 0 : QKM_EINVAL;
}

/* Writes cert (mode 0644) or key (mode 0600) as PEM to a new temporary file
 * next to path, fsynced, and puts its name in tmp; ca_install moves it into
 * place. mkstemp creates it 0600, so key bytes are never readable by others.
 * On failure nothing is left behind and tmp is "". */
static int ca_write_tmp(const char *path, X509 *cert, EVP_PKEY *key,
			char tmp[static PATH_MAX] /* OUT */)
{
	BIO *bio = NULL;
	int fd, rc = QKM_EIO;

	if (snprintf(tmp, PATH_MAX, "%s.XXXXXX", path) >= PATH_MAX) {
		tmp[0] = 0;
		return QKM_EINVAL;
	}
	if ((fd = mkstemp(tmp)) < 0) {
		log_warn("ca: create %s", tmp);
		tmp[0] = 0;
		return QKM_EIO;
	}
	if (fchmod(fd, cert ? 0644 : 0600) != 0) {
		log_warn("ca: chmod %s", tmp);
		goto out;
	}
	if (!(bio = BIO_new_fd(fd, BIO_NOCLOSE))) {
		rc = ca_crypto_fail("BIO_new_fd");
		goto out;
	}
	if (cert ? !PEM_write_bio_X509(bio, cert)
		 : !PEM_write_bio_PrivateKey(bio, key, NULL, NULL, 0, NULL, NULL)) {
		rc = ca_crypto_fail(cert ? "write certificate" : "write key");
		goto out;
	}
	if (fsync(fd) != 0) {
		log_warn("ca: fsync %s", tmp);
		goto out;
	}
	rc = 0;
out:
	BIO_free(bio);
	close(fd);
	if (rc) {
		unlink(tmp);
		tmp[0] = 0;
	}
	return rc;
}

/* Moves tmp to path atomically. rename() replaces path; with noclobber,
 * link() fails if path exists (QKM_EEXIST), so claiming a name is race-free.
 * tmp is unlinked and set to "" either way. */
static int ca_install(char tmp[static PATH_MAX], const char *path, bool noclobber)
{
	int rc = 0;

	if (noclobber ? link(tmp, path) != 0 : rename(tmp, path) != 0) {
		if (errno == EEXIST) {
			log_warnx("ca: %s exists", path);
			rc = QKM_EEXIST;
		} else {
			log_warn("ca: install %s", path);
			rc = QKM_EIO;
		}
	}
	if (rc || noclobber)
		unlink(tmp);
	tmp[0] = 0;
	return rc;
}

/* Reads the first PEM certificate (if cert) or private key (if key) in path. */
static int ca_read_pem(const char *path, X509 **cert /* OUT */, EVP_PKEY **key /* OUT */)
{
	BIO *bio = NULL;
	int fd, rc = 0;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0) {
		log_warn("ca: open %s", path);
		return QKM_EIO;
	}
	if (!(bio = BIO_new_fd(fd, BIO_CLOSE))) {
		close(fd);
		return ca_crypto_fail("BIO_new_fd");
	}
	if (cert)
		*cert = PEM_read_bio_X509(bio, NULL, NULL, NULL);
	else
		*key = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
	if (cert ? !*cert : !*key) {
		log_warnx("ca: %s: no PEM %s", path, cert ? "certificate" : "private key");
		rc = ca_crypto_fail("read PEM");
	}
	BIO_free(bio);
	return rc;
}

static int ca_name_add(X509_NAME *n, const char *field, const char *value)
{
	return X509_NAME_add_entry_by_txt(n, field, MBSTRING_ASC, (const unsigned char *)value, -1,
					  -1, 0);
}

/* Makes an unsigned v3 certificate for key with subject O=qkm, OU=ou, CN=cn,
 * a random 128-bit serial (top bit set: never zero, always 16 bytes) and
 * validity [now - 1h, now - 1h + days). */
static int ca_cert_new(EVP_PKEY *key, const char *ou, const char *cn, int days,
		       X509 **out /* OUT */)
{
	X509 *x = X509_new();
	BIGNUM *bn = BN_new();
	int rc = 0;

	*out = NULL;
	if (!x || !bn || !X509_set_version(x, X509_VERSION_3) ||
	    !BN_rand(bn, 128, BN_RAND_TOP_ONE, BN_RAND_BOTTOM_ANY) ||
	    !BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) ||
	    !ca_name_add(X509_get_subject_name(x), "O", "qkm") ||
	    !ca_name_add(X509_get_subject_name(x), "OU", ou) ||
	    !ca_name_add(X509_get_subject_name(x), "CN", cn) || !X509_set_pubkey(x, key) ||
	    !X509_gmtime_adj(X509_getm_notBefore(x), -3600) ||
	    !X509_time_adj_ex(X509_getm_notAfter(x), days, -3600, NULL)) {
		rc = ca_crypto_fail("build certificate");
		goto out;
	}
	*out = x;
	x = NULL;
out:
	BN_free(bn);
	X509_free(x);
	return rc;
}

/* Adds extensions given as {nid, "openssl config value"} pairs, in order
 * (a subject key id must precede an authority key id that refers to it). */
struct ca_ext {
	int nid;
	const char *value;
};

static int ca_cert_exts(X509 *x, X509 *issuer, const struct ca_ext *exts, size_t n)
{
	X509V3_CTX ctx;

	X509V3_set_ctx(&ctx, issuer, x, NULL, NULL, 0);
	for (size_t i = 0; i < n; i++) {
		X509_EXTENSION *e = X509V3_EXT_nconf_nid(NULL, &ctx, exts[i].nid, exts[i].value);
		int ok = e && X509_add_ext(x, e, -1);
		X509_EXTENSION_free(e);
		if (!ok)
			return ca_crypto_fail(OBJ_nid2sn(exts[i].nid));
	}
	return 0;
}

int qkm_ca_create(const char *dir, const char *name)
{
	static const struct ca_ext exts[] = {
		{ NID_basic_constraints, "critical,CA:TRUE,pathlen:0" },
		{ NID_key_usage, "critical,keyCertSign,cRLSign" },
		{ NID_subject_key_identifier, "hash" },
	};
	char cert_path[PATH_MAX], key_path[PATH_MAX];
	char cert_tmp[PATH_MAX] = "", key_tmp[PATH_MAX] = "";
	EVP_PKEY *key = NULL;
	X509 *x = NULL;
	int rc;

	if (!qkm_name_valid(name)) {
		log_warnx("ca: invalid CA name");
		return QKM_EINVAL;
	}
	if ((rc = ca_path(cert_path, dir, QKM_CA_CERT_FILE)) ||
	    (rc = ca_path(key_path, dir, QKM_CA_KEY_FILE)))
		return rc;
	if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
		log_warn("ca: mkdir %s", dir);
		return QKM_EIO;
	}
	/* Early check to spare a key generation; the link() below is the
	 * race-free one. */
	if (access(cert_path, F_OK) == 0) {
		log_warnx("ca: %s exists", cert_path);
		return QKM_EEXIST;
	}
	if (!(key = EVP_EC_gen("P-256"))) {
		rc = ca_crypto_fail("EC key generation");
		goto out;
	}
	if ((rc = ca_cert_new(key, "ca", name, QKM_CA_DAYS, &x)))
		goto out;
	if (!X509_set_issuer_name(x, X509_get_subject_name(x))) {
		rc = ca_crypto_fail("set issuer");
		goto out;
	}
	if ((rc = ca_cert_exts(x, x, exts, sizeof(exts) / sizeof(exts[0]))))
		goto out;
	if (!X509_sign(x, key, EVP_sha256())) {
		rc = ca_crypto_fail("sign CA certificate");
		goto out;
	}
	/* Claiming ca.pem first means a concurrent create never replaces the
	 * key of a CA that won; the key follows a moment later. */
	if ((rc = ca_write_tmp(key_path, NULL, key, key_tmp)) ||
	    (rc = ca_write_tmp(cert_path, x, NULL, cert_tmp)) ||
	    (rc = ca_install(cert_tmp, cert_path, true)))
		goto out;
	if ((rc = ca_install(key_tmp, key_path, false))) {
		unlink(cert_path);
		goto out;
	}
	log_info("ca: created CA %s in %s", name, dir);
out:
	if (cert_tmp[0])
		unlink(cert_tmp);
	if (key_tmp[0])
		unlink(key_tmp);
	X509_free(x);
	EVP_PKEY_free(key);
	return rc;
}

int qkm_ca_issue(const char *dir, const char *role, const char *name, const char *cert_out,
		 const char *key_out)
{
	static const struct ca_ext exts[] = {
		{ NID_basic_constraints, "critical,CA:FALSE" },
		{ NID_key_usage, "critical,digitalSignature" },
		{ NID_ext_key_usage, "serverAuth,clientAuth" },
		{ NID_subject_alt_name, "DNS:localhost,IP:127.0.0.1,IP:::1" },
		{ NID_subject_key_identifier, "hash" },
		{ NID_authority_key_identifier, "keyid:always" },
	};
	char cert_path[PATH_MAX], key_path[PATH_MAX];
	char cert_tmp[PATH_MAX] = "", key_tmp[PATH_MAX] = "";
	EVP_PKEY *ca_key = NULL, *key = NULL;
	X509 *ca = NULL, *x = NULL;
	int rc;

	if (!ca_role_valid(role) || !qkm_name_valid(name)) {
		log_warnx("ca: refusing to issue: invalid role or name");
		return QKM_EINVAL;
	}
	if ((rc = ca_path(cert_path, dir, QKM_CA_CERT_FILE)) ||
	    (rc = ca_path(key_path, dir, QKM_CA_KEY_FILE)) ||
	    (rc = ca_read_pem(cert_path, &ca, NULL)) || (rc = ca_read_pem(key_path, NULL, &ca_key)))
		goto out;
	if (!X509_check_private_key(ca, ca_key)) {
		log_warnx("ca: %s does not match %s", key_path, cert_path);
		rc = ca_crypto_fail("CA key check");
		goto out;
	}
	if (!(key = EVP_EC_gen("P-256"))) {
		rc = ca_crypto_fail("EC key generation");
		goto out;
	}
	if ((rc = ca_cert_new(key, role, name, QKM_CA_LEAF_DAYS, &x)))
		goto out;
	/* A leaf that outlived its CA would fail verification early anyway;
	 * cutting it short makes its stated lifetime the real one. */
	if (ASN1_TIME_compare(X509_get0_notAfter(x), X509_get0_notAfter(ca)) > 0 &&
	    !X509_set1_notAfter(x, X509_get0_notAfter(ca))) {
		rc = ca_crypto_fail("set notAfter");
		goto out;
	}
	if (!X509_set_issuer_name(x, X509_get_subject_name(ca))) {
		rc = ca_crypto_fail("set issuer");
		goto out;
	}
	if ((rc = ca_cert_exts(x, ca, exts, sizeof(exts) / sizeof(exts[0]))))
		goto out;
	if (!X509_sign(x, ca_key, EVP_sha256())) {
		rc = ca_crypto_fail("sign certificate");
		goto out;
	}
	/* Both written before either is installed, so a failed write leaves
	 * the old pair intact; key first, so a new certificate never meets
	 * an old key. */
	if ((rc = ca_write_tmp(key_out, NULL, key, key_tmp)) ||
	    (rc = ca_write_tmp(cert_out, x, NULL, cert_tmp)) ||
	    (rc = ca_install(key_tmp, key_out, false)) ||
	    (rc = ca_install(cert_tmp, cert_out, false)))
		goto out;
	log_info("ca: issued %s certificate for %s", role, name);
out:
	if (cert_tmp[0])
		unlink(cert_tmp);
	if (key_tmp[0])
		unlink(key_tmp);
	X509_free(x);
	X509_free(ca);
	EVP_PKEY_free(key);
	EVP_PKEY_free(ca_key);
	return rc;
}

/* Copies the one entry of type nid in n into out[cap]; QKM_EFORMAT if there
 * is none, more than one, or it does not fit as a C string. */
static int ca_name_entry(const X509_NAME *n, int nid, char *out, size_t cap)
{
	int i = X509_NAME_get_index_by_NID(n, nid, -1);
	if (i < 0 || X509_NAME_get_index_by_NID(n, nid, i) >= 0)
		return QKM_EFORMAT;
	const ASN1_STRING *s = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(n, i));
	int len = ASN1_STRING_length(s);
	const unsigned char *d = ASN1_STRING_get0_data(s);
	if (len <= 0 || (size_t)len >= cap || memchr(d, 0, (size_t)len))
		return QKM_EFORMAT;
	memcpy(out, d, (size_t)len);
	out[len] = 0;
	return 0;
}

int qkm_ca_verify_file(const char *ca_pem, const char *cert_pem, char role[static QKM_CA_ROLE_MAX],
		       char name[static QKM_NAME_MAX])
{
	X509 *ca = NULL, *x = NULL;
	X509_STORE *store = NULL;
	X509_STORE_CTX *ctx = NULL;
	int rc, ok;

	role[0] = name[0] = 0;
	if ((rc = ca_read_pem(ca_pem, &ca, NULL)) || (rc = ca_read_pem(cert_pem, &x, NULL)))
		goto out;
	if (!(store = X509_STORE_new()) || !X509_STORE_add_cert(store, ca) ||
	    !X509_STORE_set_flags(store, X509_V_FLAG_X509_STRICT) ||
	    !(ctx = X509_STORE_CTX_new()) || !X509_STORE_CTX_init(ctx, store, x, NULL)) {
		rc = ca_crypto_fail("set up verification");
		goto out;
	}
	if ((ok = X509_verify_cert(ctx)) != 1) {
		int err = X509_STORE_CTX_get_error(ctx);
		if (ok < 0 || err == X509_V_ERR_OUT_OF_MEM) {
			rc = ca_crypto_fail("verify");
			goto out;
		}
		log_warnx("ca: %s: %s", cert_pem, X509_verify_cert_error_string(err));
		ERR_clear_error();
		rc = QKM_EPERM;
		goto out;
	}
	const X509_NAME *subj = X509_get_subject_name(x);
	if ((rc = ca_name_entry(subj, NID_organizationalUnitName, role, QKM_CA_ROLE_MAX)) ||
	    (rc = ca_name_entry(subj, NID_commonName, name, QKM_NAME_MAX)) ||
	    !ca_role_valid(role) || !qkm_name_valid(name)) {
		log_warnx("ca: %s: subject is not a qkm entity", cert_pem);
		rc = QKM_EFORMAT;
		goto out;
	}
out:
	if (rc)
		role[0] = name[0] = 0;
	X509_STORE_CTX_free(ctx);
	X509_STORE_free(store);
	X509_free(x);
	X509_free(ca);
	return rc;
}
