/* tls_loopback.c - loopback TLS 1.3 throughput (tls_loopback.h): an
 * ephemeral self-signed P-256 certificate made in memory, a server thread
 * and a client in the calling thread, one connection per run. Owns nothing
 * beyond one run; the certificate is made again each time (not timed). */
#include "tls_loopback.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define TLS_READ_BUF (256u << 10)

struct server {
	SSL_CTX *ctx;
	int lfd;
	uint64_t got;
	int rc;
	char err[160];
};

static double mono_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void ssl_err(char *out, size_t outsz, const char *what)
{
	char e[120] = "";
	unsigned long code = ERR_get_error();
	if (code)
		ERR_error_string_n(code, e, sizeof(e));
	snprintf(out, outsz, "%s%s%s", what, e[0] ? ": " : "", e);
	ERR_clear_error();
}

/* A self-signed certificate for the server, valid for an hour. */
static int make_cert(EVP_PKEY **pk, X509 **crt)
{
	*crt = NULL;
	if (!(*pk = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256")))
		return -1;
	X509 *x = X509_new();
	X509_NAME *nm;
	if (!x || !X509_set_version(x, 2) || !ASN1_INTEGER_set(X509_get_serialNumber(x), 1) ||
	    !X509_gmtime_adj(X509_getm_notBefore(x), -60) ||
	    !X509_gmtime_adj(X509_getm_notAfter(x), 3600) || !X509_set_pubkey(x, *pk) ||
	    !(nm = X509_get_subject_name(x)) ||
	    !X509_NAME_add_entry_by_txt(nm, "CN", MBSTRING_ASC, (const unsigned char *)"bench-relay",
					-1, -1, 0) ||
	    !X509_set_issuer_name(x, nm) || !X509_sign(x, *pk, EVP_sha256())) {
		X509_free(x);
		return -1;
	}
	*crt = x;
	return 0;
}

static int read_full(SSL *s, uint8_t *p, size_t n)
{
	while (n) {
		int k = SSL_read(s, p, n > TLS_READ_BUF ? (int)TLS_READ_BUF : (int)n);
		if (k <= 0)
			return -1;
		p += k;
		n -= (size_t)k;
	}
	return 0;
}

static void *server_main(void *arg)
{
	struct server *sv = arg;
	uint8_t *buf = malloc(TLS_READ_BUF);
	SSL *s = NULL;
	int fd = accept(sv->lfd, NULL, NULL);
	sv->rc = -1;
	if (fd < 0 || !buf) {
		snprintf(sv->err, sizeof(sv->err), "accept: %s", strerror(errno));
		goto out;
	}
	if (!(s = SSL_new(sv->ctx)) || !SSL_set_fd(s, fd) || SSL_accept(s) != 1) {
		ssl_err(sv->err, sizeof(sv->err), "server handshake");
		goto out;
	}
	uint8_t hdr[8];
	if (read_full(s, hdr, sizeof(hdr))) {
		ssl_err(sv->err, sizeof(sv->err), "server read");
		goto out;
	}
	uint64_t total = 0;
	for (int i = 0; i < 8; i++)
		total = total << 8 | hdr[i];
	while (sv->got < total) {
		uint64_t left = total - sv->got;
		int k = SSL_read(s, buf, left > TLS_READ_BUF ? (int)TLS_READ_BUF : (int)left);
		if (k <= 0) {
			ssl_err(sv->err, sizeof(sv->err), "server read");
			goto out;
		}
		sv->got += (uint64_t)k;
	}
	if (SSL_write(s, "k", 1) != 1) {
		ssl_err(sv->err, sizeof(sv->err), "server answer");
		goto out;
	}
	sv->rc = 0;
	SSL_shutdown(s);
out:
	SSL_free(s);
	if (fd >= 0)
		close(fd);
	free(buf);
	return NULL;
}

int tls_loopback_run(uint64_t bytes, size_t chunk, struct tls_loopback_result *out)
{
	EVP_PKEY *pk = NULL;
	X509 *crt = NULL;
	SSL_CTX *sctx = NULL, *cctx = NULL;
	SSL *c = NULL;
	uint8_t *buf = NULL;
	int lfd = -1, fd = -1, rc = -1;
	bool started = false;
	pthread_t th;
	struct server sv;
	struct sockaddr_in sa;
	socklen_t salen = sizeof(sa);

	memset(out, 0, sizeof(*out));
	memset(&sv, 0, sizeof(sv));
	signal(SIGPIPE, SIG_IGN);
	if (!chunk || !(buf = malloc(chunk))) {
		snprintf(out->err, sizeof(out->err), "out of memory");
		goto out;
	}
	/* Not zeros: nothing on the way may compress or skip them. */
	for (size_t i = 0; i < chunk; i++)
		buf[i] = (uint8_t)(i * 131 + (i >> 9));
	if (make_cert(&pk, &crt)) {
		ssl_err(out->err, sizeof(out->err), "certificate");
		goto out;
	}
	if (!(sctx = SSL_CTX_new(TLS_server_method())) || !(cctx = SSL_CTX_new(TLS_client_method())) ||
	    !SSL_CTX_set_min_proto_version(sctx, TLS1_3_VERSION) ||
	    !SSL_CTX_set_min_proto_version(cctx, TLS1_3_VERSION) ||
	    SSL_CTX_use_certificate(sctx, crt) != 1 || SSL_CTX_use_PrivateKey(sctx, pk) != 1 ||
	    !X509_STORE_add_cert(SSL_CTX_get_cert_store(cctx), crt)) {
		ssl_err(out->err, sizeof(out->err), "TLS context");
		goto out;
	}
	SSL_CTX_set_verify(cctx, SSL_VERIFY_PEER, NULL);
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if ((lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0 ||
	    bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) || listen(lfd, 1) ||
	    getsockname(lfd, (struct sockaddr *)&sa, &salen)) {
		snprintf(out->err, sizeof(out->err), "listen: %s", strerror(errno));
		goto out;
	}
	sv.ctx = sctx;
	sv.lfd = lfd;
	if (pthread_create(&th, NULL, server_main, &sv)) {
		snprintf(out->err, sizeof(out->err), "thread: %s", strerror(errno));
		goto out;
	}
	started = true;
	int one = 1;
	if ((fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0 ||
	    connect(fd, (struct sockaddr *)&sa, sizeof(sa)) ||
	    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one))) {
		snprintf(out->err, sizeof(out->err), "connect: %s", strerror(errno));
		goto out;
	}
	if (!(c = SSL_new(cctx)) || !SSL_set_fd(c, fd) || SSL_connect(c) != 1) {
		ssl_err(out->err, sizeof(out->err), "client handshake");
		goto out;
	}
	snprintf(out->version, sizeof(out->version), "%s", SSL_get_version(c));
	snprintf(out->cipher, sizeof(out->cipher), "%s", SSL_get_cipher_name(c));
	uint8_t hdr[8];
	for (int i = 0; i < 8; i++)
		hdr[i] = (uint8_t)(bytes >> (56 - 8 * i));
	double t0 = mono_s();
	if (SSL_write(c, hdr, sizeof(hdr)) != (int)sizeof(hdr)) {
		ssl_err(out->err, sizeof(out->err), "client write");
		goto out;
	}
	for (uint64_t sent = 0; sent < bytes;) {
		size_t n = bytes - sent < chunk ? (size_t)(bytes - sent) : chunk;
		if (SSL_write(c, buf, (int)n) != (int)n) {
			ssl_err(out->err, sizeof(out->err), "client write");
			goto out;
		}
		sent += n;
	}
	uint8_t ans;
	if (SSL_read(c, &ans, 1) != 1) {
		ssl_err(out->err, sizeof(out->err), "client read");
		goto out;
	}
	out->seconds = mono_s() - t0;
	rc = 0;
out:
	if (c)
		SSL_shutdown(c);
	SSL_free(c);
	if (fd >= 0)
		close(fd);
	if (started) {
		if (rc)
			shutdown(lfd, SHUT_RDWR); /* an accept still waiting returns */
		pthread_join(th, NULL);
		if (!rc && sv.rc) {
			snprintf(out->err, sizeof(out->err), "%s", sv.err);
			rc = -1;
		}
	}
	if (lfd >= 0)
		close(lfd);
	if (!rc) {
		out->bytes = sv.got;
		out->mbps = (double)sv.got * 8 / out->seconds / 1e6;
	}
	SSL_CTX_free(sctx);
	SSL_CTX_free(cctx);
	X509_free(crt);
	EVP_PKEY_free(pk);
	free(buf);
	return rc;
}
