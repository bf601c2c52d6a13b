/* test_ca.c - the network CA (ctl/ca.c): certificate profile, entity
 * extraction, refusal of bad input and foreign CAs, and a real TLS 1.3
 * mutual-auth handshake with issued certificates (R-SUP-1, R-SUP-2). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/log.h"
#include "ctl/ca.h"

static const char *const roles[] = { "node", "sae", "sim", "admin", "controller" };

/* Per-test scratch directory; tests write paths into their own buffers. */
struct t {
	char dir[PATH_MAX];
};

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	return remove(path);
}

static int setup(void **state)
{
	const char *base = getenv("QKM_TEST_TMP");
	struct t *t = calloc(1, sizeof(*t));
	if (!t)
		return -1;
	if (!base || !*base)
		base = "/tmp";
	if (mkdir(base, 0700) != 0 && errno != EEXIST)
		return -1;
	snprintf(t->dir, sizeof(t->dir), "%s/test_ca.XXXXXX", base);
	if (!mkdtemp(t->dir))
		return -1;
	*state = t;
	return 0;
}

static int teardown(void **state)
{
	struct t *t = *state;
	int rc = nftw(t->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	free(t);
	return rc;
}

static const char *tpath(struct t *t, char out[static PATH_MAX], const char *file)
{
	assert_true(snprintf(out, PATH_MAX, "%s/%s", t->dir, file) < PATH_MAX);
	return out;
}

static int file_mode(const char *path)
{
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	return (int)(st.st_mode & 07777);
}

static X509 *load_cert(const char *path)
{
	FILE *f = fopen(path, "r");
	assert_non_null(f);
	X509 *x = PEM_read_X509(f, NULL, NULL, NULL);
	fclose(f);
	assert_non_null(x);
	return x;
}

/* Counts the entries of dir other than . and .., to catch stray temp files. */
static int dir_entries(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int n = 0;
	assert_non_null(d);
	while ((e = readdir(d)))
		n += strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
	closedir(d);
	return n;
}

/* Reads a whole small file into buf; returns its length. */
static size_t slurp(const char *path, char *buf, size_t cap)
{
	FILE *f = fopen(path, "rb");
	assert_non_null(f);
	size_t n = fread(buf, 1, cap, f);
	fclose(f);
	assert_true(n > 0 && n < cap);
	return n;
}

/* Every role can be issued; each certificate verifies against its CA and
 * names its entity; every private key is 0600 and certificates 0644. */
static void test_ca_issue_verify_roles(void **state)
{
	struct t *t = *state;
	char capem[PATH_MAX], cakey[PATH_MAX], cert[PATH_MAX], key[PATH_MAX], f[64];
	char role[QKM_CA_ROLE_MAX], name[QKM_NAME_MAX], want[QKM_NAME_MAX];

	assert_int_equal(qkm_ca_create(t->dir, "net-1"), 0);
	assert_int_equal(file_mode(tpath(t, cakey, "ca.key")), 0600);
	assert_int_equal(file_mode(tpath(t, capem, "ca.pem")), 0644);
	for (size_t i = 0; i < sizeof(roles) / sizeof(roles[0]); i++) {
		snprintf(want, sizeof(want), "%s_%zu.x:y-z", roles[i], i);
		snprintf(f, sizeof(f), "%s.pem", roles[i]);
		tpath(t, cert, f);
		snprintf(f, sizeof(f), "%s.key", roles[i]);
		tpath(t, key, f);
		assert_int_equal(qkm_ca_issue(t->dir, roles[i], want, cert, key), 0);
		assert_int_equal(file_mode(key), 0600);
		assert_int_equal(file_mode(cert), 0644);
		assert_int_equal(qkm_ca_verify_file(capem, cert, role, name), 0);
		assert_string_equal(role, roles[i]);
		assert_string_equal(name, want);
	}
	/* Re-issuing renews: files are replaced, still 0600, still valid,
	 * and no temporary files are left behind. */
	assert_int_equal(qkm_ca_issue(t->dir, "node", "A", cert, key), 0);
	assert_int_equal(dir_entries(t->dir), 2 + 2 * 5);
	assert_int_equal(file_mode(key), 0600);
	assert_int_equal(qkm_ca_verify_file(capem, cert, role, name), 0);
	assert_string_equal(name, "A");
}

/* The X.509 profile: CA constraints and usages, leaf SAN/usages/key ids. */
static void test_ca_cert_profile(void **state)
{
	struct t *t = *state;
	char capem[PATH_MAX], cert[PATH_MAX], key[PATH_MAX], cn[64];

	assert_int_equal(qkm_ca_create(t->dir, "net-1"), 0);
	assert_int_equal(qkm_ca_issue(t->dir, "node", "A", tpath(t, cert, "a.pem"),
				      tpath(t, key, "a.key")),
			 0);
	X509 *ca = load_cert(tpath(t, capem, "ca.pem"));
	X509 *x = load_cert(cert);

	assert_int_equal(X509_get_version(ca), X509_VERSION_3);
	assert_int_equal(X509_check_ca(ca), 1);
	assert_int_equal(X509_get_pathlen(ca), 0);
	assert_int_equal(X509_get_key_usage(ca), KU_KEY_CERT_SIGN | KU_CRL_SIGN);
	assert_non_null(X509_get0_subject_key_id(ca));
	assert_int_equal(X509_NAME_get_text_by_NID(X509_get_subject_name(ca), NID_commonName, cn,
						   sizeof(cn)),
			 5);
	assert_string_equal(cn, "net-1");
	assert_int_equal(X509_check_issued(ca, ca), X509_V_OK);
	/* Serial: 128 random bits, top bit forced, so exactly 128 bits long. */
	BIGNUM *sn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(ca), NULL);
	assert_int_equal(BN_num_bits(sn), 128);
	BN_free(sn);
	/* Validity starts in the past (clock skew) and lasts about 10 years. */
	int days, secs;
	assert_true(X509_cmp_current_time(X509_get0_notBefore(ca)) < 0);
	assert_int_equal(ASN1_TIME_diff(&days, &secs, X509_get0_notBefore(ca),
					X509_get0_notAfter(ca)),
			 1);
	assert_int_equal(days, QKM_CA_DAYS);

	assert_int_equal(X509_check_ca(x), 0);
	assert_int_equal(X509_get_key_usage(x), KU_DIGITAL_SIGNATURE);
	assert_int_equal(X509_get_extended_key_usage(x), XKU_SSL_SERVER | XKU_SSL_CLIENT);
	assert_int_equal(X509_check_host(x, "localhost", 0, 0, NULL), 1);
	assert_int_equal(X509_check_ip_asc(x, "127.0.0.1", 0), 1);
	assert_int_equal(X509_check_ip_asc(x, "::1", 0), 1);
	assert_int_equal(X509_check_host(x, "example.com", 0, 0, NULL), 0);
	assert_int_equal(X509_check_issued(ca, x), X509_V_OK);
	assert_int_equal(ASN1_OCTET_STRING_cmp(X509_get0_authority_key_id(x),
					       X509_get0_subject_key_id(ca)),
			 0);
	assert_int_equal(ASN1_TIME_diff(&days, &secs, X509_get0_notBefore(x),
					X509_get0_notAfter(x)),
			 1);
	assert_int_equal(days, QKM_CA_LEAF_DAYS);
	EVP_PKEY *pk = X509_get0_pubkey(x);
	char group[32];
	assert_int_equal(EVP_PKEY_get_group_name(pk, group, sizeof(group), NULL), 1);
	assert_string_equal(group, "prime256v1");
	X509_free(x);
	X509_free(ca);
}

/* A second create must not replace the CA (its key signs the network). */
static void test_ca_create_twice(void **state)
{
	struct t *t = *state;
	char capem[PATH_MAX], cakey[PATH_MAX], a[4096], b[4096], ka[4096], kb[4096];

	assert_int_equal(qkm_ca_create(t->dir, "net-1"), 0);
	size_t na = slurp(tpath(t, capem, "ca.pem"), a, sizeof(a));
	size_t nk = slurp(tpath(t, cakey, "ca.key"), ka, sizeof(ka));
	assert_int_equal(qkm_ca_create(t->dir, "net-2"), QKM_EEXIST);
	assert_int_equal(slurp(capem, b, sizeof(b)), na);
	assert_memory_equal(a, b, na);
	assert_int_equal(slurp(cakey, kb, sizeof(kb)), nk);
	assert_memory_equal(ka, kb, nk);
}

/* A certificate from another CA, and the CA certificate itself, are not
 * accepted as entities of this network. */
static void test_ca_foreign_rejected(void **state)
{
	struct t *t = *state;
	char ca1[PATH_MAX], ca2[PATH_MAX], d2[PATH_MAX], cert[PATH_MAX], key[PATH_MAX];
	char role[QKM_CA_ROLE_MAX] = "x", name[QKM_NAME_MAX] = "x";

	assert_int_equal(qkm_ca_create(t->dir, "net-1"), 0);
	assert_int_equal(qkm_ca_create(tpath(t, d2, "other"), "net-1"), 0);
	assert_int_equal(qkm_ca_issue(d2, "node", "A", tpath(t, cert, "a.pem"),
				      tpath(t, key, "a.key")),
			 0);
	tpath(t, ca1, "ca.pem");
	tpath(t, ca2, "other/ca.pem");
	assert_int_equal(qkm_ca_verify_file(ca2, cert, role, name), 0);
	assert_int_equal(qkm_ca_verify_file(ca1, cert, role, name), QKM_EPERM);
	assert_string_equal(role, "");
	assert_string_equal(name, "");
	assert_int_equal(qkm_ca_verify_file(ca1, ca1, role, name), QKM_EFORMAT);
	assert_int_equal(qkm_ca_verify_file(ca1, ca2, role, name), QKM_EPERM);
	/* Not PEM, and missing files. */
	assert_int_equal(qkm_ca_verify_file(ca1, tpath(t, key, "a.key"), role, name),
			 QKM_ECRYPTO);
	assert_int_equal(qkm_ca_verify_file(ca1, tpath(t, key, "none.pem"), role, name),
			 QKM_EIO);
	/* A CA key that does not match ca.pem is not used to sign. */
	char k2[PATH_MAX];
	assert_int_equal(rename(tpath(t, k2, "other/ca.key"), tpath(t, key, "ca.key")), 0);
	assert_int_equal(qkm_ca_issue(t->dir, "node", "B", cert, tpath(t, key, "b.key")),
			 QKM_ECRYPTO);
	assert_int_equal(access(key, F_OK), -1);
}

/* Bad roles and names are refused before anything is written. */
static void test_ca_bad_input(void **state)
{
	struct t *t = *state;
	char cert[PATH_MAX], key[PATH_MAX], d[PATH_MAX], longname[80];
	static const char *const bad_roles[] = { "", "ca", "NODE", "node ", "root", "controllers" };
	static const char *const bad_names[] = { "", "a b", "../x", "a/b", "é" };

	memset(longname, 'a', 64);
	longname[64] = 0;
	assert_int_equal(qkm_ca_create(tpath(t, d, "c1"), "bad name"), QKM_EINVAL);
	assert_int_equal(qkm_ca_create(d, longname), QKM_EINVAL);
	assert_int_equal(access(d, F_OK), -1);
	/* No CA yet: a file error, not a crash. */
	tpath(t, cert, "x.pem");
	tpath(t, key, "x.key");
	assert_int_equal(qkm_ca_issue(t->dir, "node", "A", cert, key), QKM_EIO);
	assert_int_equal(qkm_ca_create(t->dir, "net-1"), 0);
	for (size_t i = 0; i < sizeof(bad_roles) / sizeof(bad_roles[0]); i++)
		assert_int_equal(qkm_ca_issue(t->dir, bad_roles[i], "A", cert, key), QKM_EINVAL);
	for (size_t i = 0; i < sizeof(bad_names) / sizeof(bad_names[0]); i++)
		assert_int_equal(qkm_ca_issue(t->dir, "sae", bad_names[i], cert, key), QKM_EINVAL);
	assert_int_equal(qkm_ca_issue(t->dir, "sae", longname, cert, key), QKM_EINVAL);
	longname[63] = 0;
	assert_int_equal(qkm_ca_issue(t->dir, "sae", longname, cert, key), 0);
	unlink(cert);
	unlink(key);
	assert_int_equal(qkm_ca_issue(t->dir, "sae", "A", cert, tpath(t, d, "no/such/x.key")),
			 QKM_EIO);
	assert_int_equal(access(cert, F_OK), -1);
	assert_int_equal(dir_entries(t->dir), 2);
}

/* Test-only TLS context (production contexts come from net/tls.c). */
static SSL_CTX *tls_ctx(bool server, const char *ca, const char *cert, const char *key)
{
	SSL_CTX *c = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
	assert_non_null(c);
	assert_int_equal(SSL_CTX_set_min_proto_version(c, TLS1_3_VERSION), 1);
	assert_int_equal(SSL_CTX_use_certificate_chain_file(c, cert), 1);
	assert_int_equal(SSL_CTX_use_PrivateKey_file(c, key, SSL_FILETYPE_PEM), 1);
	assert_int_equal(SSL_CTX_load_verify_locations(c, ca, NULL), 1);
	SSL_CTX_set_verify(c, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
	return c;
}

/* One handshake step; false on a hard failure. */
static bool tls_step(SSL *s, bool *done)
{
	int r = SSL_do_handshake(s);
	if (r == 1) {
		*done = true;
		return true;
	}
	int e = SSL_get_error(s, r);
	return e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE;
}

/* Runs a server and a client over a socketpair, both non-blocking and
 * driven alternately in this thread. Returns true if both finished; then
 * ou/cn hold the client certificate's subject as the server saw it. */
static bool tls_handshake(const char *ca, const char *scert, const char *skey,
			  const char *ccert, const char *ckey, char ou[QKM_CA_ROLE_MAX],
			  char cn[QKM_NAME_MAX])
{
	int sv[2];
	bool sdone = false, cdone = false, ok = true;

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	for (int i = 0; i < 2; i++)
		assert_int_equal(fcntl(sv[i], F_SETFL, O_NONBLOCK), 0);
	SSL_CTX *sctx = tls_ctx(true, ca, scert, skey), *cctx = tls_ctx(false, ca, ccert, ckey);
	SSL *s = SSL_new(sctx), *c = SSL_new(cctx);
	assert_true(s && c);
	assert_int_equal(SSL_set_fd(s, sv[0]), 1);
	assert_int_equal(SSL_set_fd(c, sv[1]), 1);
	SSL_set_accept_state(s);
	SSL_set_connect_state(c);
	assert_int_equal(SSL_set1_host(c, "localhost"), 1);

	/* A TLS 1.3 handshake is 1.5 round trips; 32 rounds is ample. */
	for (int i = 0; i < 32 && ok && !(sdone && cdone); i++) {
		if (!cdone)
			ok = tls_step(c, &cdone);
		if (ok && !sdone)
			ok = tls_step(s, &sdone);
	}
	ok = ok && sdone && cdone;
	if (ok) {
		assert_int_equal(SSL_version(s), TLS1_3_VERSION);
		assert_int_equal(SSL_get_verify_result(s), X509_V_OK);
		assert_int_equal(SSL_get_verify_result(c), X509_V_OK);
		/* Application data flows both ways over the session. */
		char b = 0;
		assert_int_equal(SSL_write(c, "k", 1), 1);
		assert_int_equal(SSL_read(s, &b, 1), 1);
		assert_int_equal(b, 'k');
		assert_int_equal(SSL_write(s, "m", 1), 1);
		assert_int_equal(SSL_read(c, &b, 1), 1);
		assert_int_equal(b, 'm');
		X509 *peer = SSL_get0_peer_certificate(s);
		assert_non_null(peer);
		X509_NAME *n = X509_get_subject_name(peer);
		assert_true(X509_NAME_get_text_by_NID(n, NID_organizationalUnitName, ou,
						      QKM_CA_ROLE_MAX) > 0);
		assert_true(X509_NAME_get_text_by_NID(n, NID_commonName, cn, QKM_NAME_MAX) > 0);
	} else {
		/* The only failure these tests provoke: the server refuses the client. */
		assert_int_not_equal(SSL_get_verify_result(s), X509_V_OK);
		ERR_clear_error();
	}
	SSL_free(s);
	SSL_free(c);
	SSL_CTX_free(sctx);
	SSL_CTX_free(cctx);
	close(sv[0]);
	close(sv[1]);
	return ok;
}

/* Mutual TLS 1.3 with issued certificates: the server learns the client's
 * entity (OU = role, CN = name) from the handshake; a client certificate
 * from another CA is refused. */
static void test_ca_tls13_mutual_auth(void **state)
{
	struct t *t = *state;
	char ca[PATH_MAX], sc[PATH_MAX], sk[PATH_MAX], cc[PATH_MAX], ck[PATH_MAX];
	char fc[PATH_MAX], fk[PATH_MAX], d2[PATH_MAX];
	char ou[QKM_CA_ROLE_MAX] = "", cn[QKM_NAME_MAX] = "";

	assert_int_equal(qkm_ca_create(t->dir, "net-1"), 0);
	tpath(t, ca, "ca.pem");
	assert_int_equal(qkm_ca_issue(t->dir, "node", "A", tpath(t, sc, "a.pem"),
				      tpath(t, sk, "a.key")),
			 0);
	assert_int_equal(qkm_ca_issue(t->dir, "sae", "sae-alice", tpath(t, cc, "alice.pem"),
				      tpath(t, ck, "alice.key")),
			 0);
	assert_true(tls_handshake(ca, sc, sk, cc, ck, ou, cn));
	assert_string_equal(ou, "sae");
	assert_string_equal(cn, "sae-alice");

	assert_int_equal(qkm_ca_create(tpath(t, d2, "other"), "net-1"), 0);
	assert_int_equal(qkm_ca_issue(d2, "sae", "sae-alice", tpath(t, fc, "mallory.pem"),
				      tpath(t, fk, "mallory.key")),
			 0);
	assert_false(tls_handshake(ca, sc, sk, fc, fk, ou, cn));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_ca_issue_verify_roles, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ca_cert_profile, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ca_create_twice, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ca_foreign_rejected, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ca_bad_input, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ca_tls13_mutual_auth, setup, teardown),
	};
	/* A peer that gives up mid-handshake must not kill the test with SIGPIPE. */
	signal(SIGPIPE, SIG_IGN);
	qkm_log_init("test_ca", QKM_LOG_WARN);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
