/* test_http.c - HTTPS server glue and the tools' client (net/http.c): the
 * handler sees the caller's certificate identity, bodies travel both ways,
 * limits answer 413, and foreign or identity-less certificates never reach
 * a handler (R-SUP-1: mutual TLS for applications and operators). The server
 * runs its event loop in a second thread; the test thread is the client. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <ftw.h>
#include <limits.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ctl/ca.h"
#include "net/http.h"
#include "net/tls.h"

#define TIMEOUT_MS 5000
#define MAX_BODY (2u << 20)

/* The PKI, made once for the whole group. */
static struct pki {
	char dir[PATH_MAX];
	char ca[PATH_MAX], ca2[PATH_MAX];
	char node_c[PATH_MAX], node_k[PATH_MAX];   /* role node, name A */
	char admin_c[PATH_MAX], admin_k[PATH_MAX]; /* role admin, name ops */
	char sae_c[PATH_MAX], sae_k[PATH_MAX];     /* role sae, name sae-x */
	char anon_c[PATH_MAX], anon_k[PATH_MAX];   /* CA-signed, no OU */
	char node2_c[PATH_MAX], node2_k[PATH_MAX]; /* from a second CA */
	char admin2_c[PATH_MAX], admin2_k[PATH_MAX];
} pki;

/* One running server. */
struct srv {
	SSL_CTX *ctx;
	struct event_base *base;
	struct qkm_http_server *http;
	struct event *stop;
	struct event *watch; /* next_watch: the error queue watcher */
	int pipe[2];
	pthread_t th;
	char url[64]; /* https://127.0.0.1:PORT */
};

static void path(char out[static PATH_MAX], const char *file)
{
	assert_true(snprintf(out, PATH_MAX, "%s/%s", pki.dir, file) < PATH_MAX);
}

/* A certificate the CA signed whose subject is no qkm identity (CN only, and
 * not a valid name): TLS accepts it, qkm_tls_peer_identity must not. */
static void issue_anonymous(const char *cadir, const char *cert_out, const char *key_out)
{
	char p[PATH_MAX];
	snprintf(p, sizeof(p), "%s/" QKM_CA_CERT_FILE, cadir);
	FILE *f = fopen(p, "r");
	assert_non_null(f);
	X509 *cacert = PEM_read_X509(f, NULL, NULL, NULL);
	fclose(f);
	snprintf(p, sizeof(p), "%s/" QKM_CA_KEY_FILE, cadir);
	f = fopen(p, "r");
	assert_non_null(f);
	EVP_PKEY *cakey = PEM_read_PrivateKey(f, NULL, NULL, NULL);
	fclose(f);
	assert_non_null(cacert);
	assert_non_null(cakey);

	EVP_PKEY *k = EVP_EC_gen("P-256");
	X509 *x = X509_new();
	assert_non_null(k);
	assert_non_null(x);
	assert_int_equal(X509_set_version(x, 2), 1);
	assert_int_equal(ASN1_INTEGER_set(X509_get_serialNumber(x), 4242), 1);
	assert_non_null(X509_gmtime_adj(X509_getm_notBefore(x), -3600));
	assert_non_null(X509_gmtime_adj(X509_getm_notAfter(x), 86400));
	assert_int_equal(X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN",
						    MBSTRING_ASC,
						    (const unsigned char *)"no identity", -1,
						    -1, 0),
			 1);
	assert_int_equal(X509_set_issuer_name(x, X509_get_subject_name(cacert)), 1);
	assert_int_equal(X509_set_pubkey(x, k), 1);
	assert_true(X509_sign(x, cakey, EVP_sha256()) > 0);

	f = fopen(cert_out, "w");
	assert_non_null(f);
	assert_int_equal(PEM_write_X509(f, x), 1);
	fclose(f);
	f = fopen(key_out, "w");
	assert_non_null(f);
	assert_int_equal(PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL), 1);
	fclose(f);
	X509_free(x);
	EVP_PKEY_free(k);
	X509_free(cacert);
	EVP_PKEY_free(cakey);
}

static int group_setup(void **state)
{
	const char *base = getenv("QKM_TEST_TMP");
	char ca1[PATH_MAX], ca2[PATH_MAX];

	if (!base || !*base)
		base = "/tmp";
	if (mkdir(base, 0700) != 0 && errno != EEXIST)
		return -1;
	snprintf(pki.dir, sizeof(pki.dir), "%s/test_http.XXXXXX", base);
	if (!mkdtemp(pki.dir))
		return -1;
	/* Writes to a closed server socket must fail, not kill the test. */
	signal(SIGPIPE, SIG_IGN);

	path(ca1, "ca1");
	path(ca2, "ca2");
	path(pki.ca, "ca1/" QKM_CA_CERT_FILE);
	path(pki.ca2, "ca2/" QKM_CA_CERT_FILE);
	path(pki.node_c, "node.pem");
	path(pki.node_k, "node.key");
	path(pki.admin_c, "admin.pem");
	path(pki.admin_k, "admin.key");
	path(pki.sae_c, "sae.pem");
	path(pki.sae_k, "sae.key");
	path(pki.anon_c, "anon.pem");
	path(pki.anon_k, "anon.key");
	path(pki.node2_c, "node2.pem");
	path(pki.node2_k, "node2.key");
	path(pki.admin2_c, "admin2.pem");
	path(pki.admin2_k, "admin2.key");
	if (qkm_ca_create(ca1, "net-ca") || qkm_ca_create(ca2, "other-ca") ||
	    qkm_ca_issue(ca1, "node", "A", pki.node_c, pki.node_k) ||
	    qkm_ca_issue(ca1, "admin", "ops", pki.admin_c, pki.admin_k) ||
	    qkm_ca_issue(ca1, "sae", "sae-x", pki.sae_c, pki.sae_k) ||
	    qkm_ca_issue(ca2, "node", "A", pki.node2_c, pki.node2_k) ||
	    qkm_ca_issue(ca2, "admin", "ops", pki.admin2_c, pki.admin2_k))
		return -1;
	issue_anonymous(ca1, pki.anon_c, pki.anon_k);
	return 0;
}

static int rm_entry(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
	return remove(p);
}

static int group_teardown(void **state)
{
	return nftw(pki.dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* ---- the server under test --------------------------------------------- */

static size_t next_budget; /* input budget for the next server (0: default) */
static bool next_watch;    /* the next server's thread watches its error queue */
static _Atomic int errq_seen; /* an OpenSSL error was left queued between callbacks */

/* Runs between the server's I/O callbacks, as another connection's would
 * (a node's Kx link on the same loop): the queue must be empty there. */
static void watch_errq(evutil_socket_t fd, short what, void *arg)
{
	if (ERR_peek_error())
		atomic_store(&errq_seen, 1);
}

/* /page: a reply with extra header fields (qkm_http_set_headers);
 * /whoami: the identity the server handed over; /echo: the body back;
 * /error: an error message that needs escaping; /big: a reply of many TLS
 * records; /later: answered from the loop's next turn. */
static void answer_later(evutil_socket_t fd, short what, void *arg)
{
	qkm_http_reply_json(arg, 200, "{\"later\":true}");
}

static void handler(struct qkm_http_req *req, void *arg)
{
	char out[256];
	const char *q = req->query;

	if (strcmp(req->path, "/whoami") == 0 && (!q || strcmp(q, "x=1") == 0)) {
		snprintf(out, sizeof(out), "{\"role\":\"%s\",\"name\":\"%s\",\"method\":\"%s\"}",
			 req->role, req->name, req->method);
		qkm_http_reply_json(req, 200, out);
	} else if (strcmp(req->path, "/echo") == 0) {
		assert_int_equal(strlen(req->body), req->body_len);
		qkm_http_reply_json(req, 201, req->body);
	} else if (strcmp(req->path, "/error") == 0) {
		qkm_http_reply_error(req, 404, "no \"such\" key\\\n\x01\xc3\xa9");
	} else if (strcmp(req->path, "/big") == 0) {
		static char big[120000];
		for (size_t i = 0; i < sizeof(big); i++)
			big[i] = (char)('a' + i / 40000);
		qkm_http_reply(req, 200, "text/plain", big, sizeof(big), true);
	} else if (strcmp(req->path, "/page") == 0) {
		qkm_http_set_headers(req, "X-Frame-Options: DENY\r\nX-Test: page\r\n");
		qkm_http_reply(req, 200, "text/html; charset=utf-8", "<p>hi</p>", 9, false);
	} else if (strcmp(req->path, "/later") == 0) {
		assert_int_equal(event_base_once(arg, -1, EV_TIMEOUT, answer_later, req, NULL), 0);
	} else {
		qkm_http_reply_error(req, 404, "not found");
	}
}

static void on_stop(evutil_socket_t fd, short what, void *arg)
{
	event_base_loopbreak(arg);
}

static void *serve(void *arg)
{
	struct srv *s = arg;
	event_base_dispatch(s->base);
	return NULL;
}

/* Starts a server on host (an address literal) presenting cert/key and
 * trusting ca. Only the server thread touches the base until srv_stop. */
static struct srv *srv_start_at(const char *host, const char *ca, const char *cert,
				const char *key)
{
	struct srv *s = calloc(1, sizeof(*s));
	char addr[64];
	bool v6 = strchr(host, ':') != NULL;

	assert_non_null(s);
	s->ctx = qkm_tls_ctx_new(ca, cert, key, true);
	assert_non_null(s->ctx);
	s->base = event_base_new();
	assert_non_null(s->base);
	snprintf(addr, sizeof(addr), v6 ? "[%s]:0" : "%s:0", host);
	s->http = qkm_http_server_new(s->base, s->ctx, addr, MAX_BODY, handler, s->base);
	if (s->http && next_budget) {
		qkm_http_server_set_input_budget(s->http, next_budget);
		next_budget = 0;
	}
	if (!s->http) {
		event_base_free(s->base);
		SSL_CTX_free(s->ctx);
		free(s);
		return NULL;
	}
	int port = qkm_http_server_port(s->http);
	assert_true(port > 0 && port < 65536);
	snprintf(s->url, sizeof(s->url), v6 ? "https://[%s]:%d" : "https://%s:%d", host, port);
	assert_int_equal(pipe(s->pipe), 0);
	s->stop = event_new(s->base, s->pipe[0], EV_READ, on_stop, s->base);
	assert_non_null(s->stop);
	assert_int_equal(event_add(s->stop, NULL), 0);
	if (next_watch) {
		struct timeval tv = {0, 2000};
		next_watch = false;
		s->watch = event_new(s->base, -1, EV_PERSIST, watch_errq, NULL);
		assert_non_null(s->watch);
		assert_int_equal(event_add(s->watch, &tv), 0);
	}
	assert_int_equal(pthread_create(&s->th, NULL, serve, s), 0);
	return s;
}

static struct srv *srv_start(const char *ca, const char *cert, const char *key)
{
	struct srv *s = srv_start_at("127.0.0.1", ca, cert, key);
	assert_non_null(s);
	return s;
}

static void srv_stop(struct srv *s)
{
	assert_int_equal(write(s->pipe[1], "x", 1), 1);
	assert_int_equal(pthread_join(s->th, NULL), 0);
	qkm_http_server_free(s->http);
	event_free(s->stop);
	if (s->watch)
		event_free(s->watch);
	event_base_free(s->base);
	SSL_CTX_free(s->ctx);
	close(s->pipe[0]);
	close(s->pipe[1]);
	free(s);
}

/* Request as the admin "ops" unless other credentials are given. */
static int req(struct srv *s, const char *pathq, const char *method, const char *body,
	       const char *cert, const char *key, int *status, char **resp)
{
	char url[128];
	snprintf(url, sizeof(url), "%s%s", s->url, pathq);
	return qkm_https_request(url, method, body, pki.ca, cert ? cert : pki.admin_c,
				 key ? key : pki.admin_k, TIMEOUT_MS, status, resp);
}

/* ---- tests ---------------------------------------------------------------- */

static void test_identity_reaches_handler(void **state)
{
	struct srv *s = srv_start(pki.ca, pki.node_c, pki.node_k);
	int status;
	char *resp;

	assert_int_equal(req(s, "/whoami?x=1", "GET", NULL, NULL, NULL, &status, &resp), 0);
	assert_int_equal(status, 200);
	assert_string_equal(resp, "{\"role\":\"admin\",\"name\":\"ops\",\"method\":\"GET\"}");
	free(resp);

	assert_int_equal(req(s, "/whoami", "POST", NULL, pki.sae_c, pki.sae_k, &status, &resp),
			 0);
	assert_int_equal(status, 200);
	assert_string_equal(resp, "{\"role\":\"sae\",\"name\":\"sae-x\",\"method\":\"POST\"}");
	free(resp);
	srv_stop(s);
}

static void test_bodies_both_ways(void **state)
{
	struct srv *s = srv_start(pki.ca, pki.node_c, pki.node_k);
	int status;
	char *resp;

	assert_int_equal(req(s, "/echo", "POST", "{\"number\":2,\"size\":256}", NULL, NULL,
			     &status, &resp),
			 0);
	assert_int_equal(status, 201);
	assert_string_equal(resp, "{\"number\":2,\"size\":256}");
	free(resp);

	/* 1 MiB each way: many TLS records and reads. */
	size_t n = 1u << 20;
	char *big = malloc(n + 1);
	assert_non_null(big);
	for (size_t i = 0; i < n; i++)
		big[i] = (char)('0' + i % 61);
	big[n] = 0;
	assert_int_equal(req(s, "/echo", "POST", big, NULL, NULL, &status, &resp), 0);
	assert_int_equal(status, 201);
	assert_int_equal(strlen(resp), n);
	assert_memory_equal(resp, big, n);
	free(resp);

	/* A reply of many TLS records (secure-heap body) arrives whole. */
	assert_int_equal(req(s, "/big", "GET", NULL, NULL, NULL, &status, &resp), 0);
	assert_int_equal(status, 200);
	assert_int_equal(strlen(resp), 120000);
	assert_int_equal(resp[0], 'a');
	assert_int_equal(resp[40000], 'b');
	assert_int_equal(resp[119999], 'c');
	free(resp);

	/* A reply given later from the loop. */
	assert_int_equal(req(s, "/later", "GET", NULL, NULL, NULL, &status, &resp), 0);
	assert_int_equal(status, 200);
	assert_string_equal(resp, "{\"later\":true}");
	free(resp);

	/* Error bodies are ETSI 014 {"message": ...} with JSON escaping. */
	assert_int_equal(req(s, "/error", "GET", NULL, NULL, NULL, &status, &resp), 0);
	assert_int_equal(status, 404);
	assert_string_equal(resp, "{\"message\":\"no \\\"such\\\" key\\\\\\n\\u0001??\"}");
	free(resp);
	free(big);
	srv_stop(s);
}

/* Request data buffered across connections is bounded: past the budget the
 * client gets 503 (and the connection closes); the server goes on. */
static void test_input_budget(void **state)
{
	next_budget = 100u << 10;
	struct srv *s = srv_start(pki.ca, pki.node_c, pki.node_k);
	int status;
	char *resp;
	size_t n = 300u << 10;
	char *big = malloc(n + 1);
	assert_non_null(big);
	memset(big, 'x', n);
	big[n] = 0;
	assert_int_equal(req(s, "/echo", "POST", big, NULL, NULL, &status, &resp), 0);
	assert_int_equal(status, 503);
	assert_non_null(strstr(resp, "server busy"));
	free(resp);
	/* Under 64 KiB a request never counts against the budget. */
	big[60u << 10] = 0;
	assert_int_equal(req(s, "/echo", "POST", big, NULL, NULL, &status, &resp), 0);
	assert_int_equal(status, 201);
	assert_int_equal(strlen(resp), 60u << 10);
	free(resp);
	free(big);
	srv_stop(s);
}

static void test_body_over_max_is_413(void **state)
{
	struct srv *s = srv_start(pki.ca, pki.node_c, pki.node_k);
	int status;
	char *resp;
	size_t n = MAX_BODY + 1;
	char *big = malloc(n + 1);

	assert_non_null(big);
	memset(big, 'x', n);
	big[n] = 0;
	assert_int_equal(req(s, "/echo", "POST", big, NULL, NULL, &status, &resp), 0);
	assert_int_equal(status, 413);
	free(resp);
	/* Exactly at the limit is fine. */
	big[MAX_BODY] = 0;
	assert_int_equal(req(s, "/echo", "POST", big, NULL, NULL, &status, &resp), 0);
	assert_int_equal(status, 201);
	assert_int_equal(strlen(resp), MAX_BODY);
	free(resp);
	free(big);
	srv_stop(s);
}

static void test_foreign_server_refused(void **state)
{
	/* A server whose certificate another CA issued (but which would
	 * accept our client certificate) is not to be talked to. */
	struct srv *s = srv_start(pki.ca, pki.node2_c, pki.node2_k);
	int status = -1;
	char *resp = (char *)"";
	assert_int_equal(req(s, "/whoami", "GET", NULL, NULL, NULL, &status, &resp), QKM_ETLS);
	assert_null(resp);
	assert_int_equal(status, 0);
	srv_stop(s);
}

static void test_foreign_client_refused(void **state)
{
	struct srv *s = srv_start(pki.ca, pki.node_c, pki.node_k);
	int status;
	char *resp;
	assert_int_equal(req(s, "/whoami", "GET", NULL, pki.admin2_c, pki.admin2_k, &status,
			     &resp),
			 QKM_ETLS);
	assert_null(resp);
	/* The server is still serving others. */
	assert_int_equal(req(s, "/whoami", "GET", NULL, NULL, NULL, &status, &resp), 0);
	assert_int_equal(status, 200);
	free(resp);
	srv_stop(s);
}

static void test_no_identity_is_401(void **state)
{
	struct srv *s = srv_start(pki.ca, pki.node_c, pki.node_k);
	int status;
	char *resp;
	assert_int_equal(req(s, "/whoami", "GET", NULL, pki.anon_c, pki.anon_k, &status, &resp),
			 0);
	assert_int_equal(status, 401);
	assert_string_equal(resp, "{\"message\":\"client certificate required\"}");
	free(resp);
	srv_stop(s);
}

static void test_ipv6_and_localhost(void **state)
{
	struct srv *s = srv_start(pki.ca, pki.node_c, pki.node_k);
	int status, port = qkm_http_server_port(s->http);
	char url[96], *resp;

	/* "localhost" is checked against the certificate's DNS name. */
	snprintf(url, sizeof(url), "https://localhost:%d/whoami", port);
	assert_int_equal(qkm_https_request(url, "GET", NULL, pki.ca, pki.sae_c, pki.sae_k,
					   TIMEOUT_MS, &status, &resp),
			 0);
	assert_int_equal(status, 200);
	free(resp);
	srv_stop(s);

	s = srv_start_at("::1", pki.ca, pki.node_c, pki.node_k);
	if (!s)
		skip(); /* no IPv6 loopback here */
	assert_int_equal(req(s, "/whoami", "GET", NULL, NULL, NULL, &status, &resp), 0);
	assert_int_equal(status, 200);
	assert_string_equal(resp, "{\"role\":\"admin\",\"name\":\"ops\",\"method\":\"GET\"}");
	free(resp);
	srv_stop(s);
}

static void test_bad_input(void **state)
{
	struct event_base *base = event_base_new();
	SSL_CTX *ctx = qkm_tls_ctx_new(pki.ca, pki.node_c, pki.node_k, true);
	const char *addrs[] = { "nonsense", "127.0.0.1", "[::1", "127.0.0.1:99999", ":80",
				"127.0.0.1:8x" };
	int status;
	char *resp;

	assert_non_null(base);
	assert_non_null(ctx);
	for (size_t i = 0; i < sizeof(addrs) / sizeof(addrs[0]); i++)
		assert_null(qkm_http_server_new(base, ctx, addrs[i], 10, handler, NULL));
	SSL_CTX_free(ctx);
	event_base_free(base);

	const char *urls[] = { "http://127.0.0.1:1/", "https://example.com:1/",
			       "https://u@127.0.0.1:1/", "https://127.0.0.1:1/a b",
			       "https://127.0.0.1:1/a\r\nX: y", "https://127.0.0.1:0/",
			       "https://[127.0.0.1]:1/", "https://127.0.0.1:65536/" };
	for (size_t i = 0; i < sizeof(urls) / sizeof(urls[0]); i++)
		assert_int_equal(qkm_https_request(urls[i], "GET", NULL, pki.ca, pki.admin_c,
						   pki.admin_k, TIMEOUT_MS, &status, &resp),
				 QKM_EINVAL);
	assert_int_equal(qkm_https_request("https://127.0.0.1:1/", "PUT", NULL, pki.ca,
					   pki.admin_c, pki.admin_k, TIMEOUT_MS, &status, &resp),
			 QKM_EINVAL);
}

/* A listener that accepts (in the kernel) but never speaks TLS. */
static int silent_listener(int *port)
{
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(sin);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	assert_int_equal(listen(fd, 4), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
	*port = ntohs(sin.sin_port);
	return fd;
}

/* A client that reads its answer and closes without close_notify (as
 * python's http.client does) leaves OpenSSL's "unexpected eof" on the
 * server thread's error queue unless the server clears it; SSL_get_error
 * on the next TLS call of that thread (a node's Kx or quantum layer link)
 * then reads it as its own failure, and the link drops. Found by the
 * metrics system test (issue #8): every scrape dropped a link. */
static void test_eof_without_close_notify(void **state)
{
	errq_seen = 0;
	next_watch = true;
	struct srv *s = srv_start(pki.ca, pki.node_c, pki.node_k);
	int port = atoi(strrchr(s->url, ':') + 1);
	for (int round = 0; round < 3; round++) {
		SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
		assert_non_null(ctx);
		assert_int_equal(SSL_CTX_use_certificate_chain_file(ctx, pki.admin_c), 1);
		assert_int_equal(SSL_CTX_use_PrivateKey_file(ctx, pki.admin_k, SSL_FILETYPE_PEM),
				 1);
		struct sockaddr_in sin = {.sin_family = AF_INET,
					  .sin_port = htons((uint16_t)port),
					  .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
		int fd = socket(AF_INET, SOCK_STREAM, 0);
		assert_int_equal(connect(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
		SSL *ssl = SSL_new(ctx);
		assert_int_equal(SSL_set_fd(ssl, fd), 1);
		assert_int_equal(SSL_connect(ssl), 1);
		static const char rq[] = "GET /whoami HTTP/1.1\r\nHost: x\r\n\r\n";
		assert_int_equal(SSL_write(ssl, rq, (int)sizeof(rq) - 1), (int)sizeof(rq) - 1);
		char in[1024];
		size_t got = 0;
		while (!memchr(in, '}', got)) { /* the JSON answer ends in } */
			int n = SSL_read(ssl, in + got, (int)(sizeof(in) - got));
			assert_true(n > 0);
			got += (size_t)n;
		}
		close(fd); /* no SSL_shutdown: no close_notify */
		SSL_free(ssl);
		SSL_CTX_free(ctx);
		ERR_clear_error();
		usleep(100000); /* the server reads the EOF; the watcher runs */
	}
	/* the server still serves */
	int status;
	char *resp;
	assert_int_equal(req(s, "/whoami", "GET", NULL, NULL, NULL, &status, &resp), 0);
	assert_int_equal(status, 200);
	free(resp);
	srv_stop(s);
	assert_int_equal(atomic_load(&errq_seen), 0);
}

/* The server's request-head parser on its own. */
static void test_parse_head(void **state)
{
	struct qkm_http_head h;
	static const char ok[] = "POST /a?b=1 HTTP/1.1\r\nContent-Length: 12\r\n"
				 "Expect: 100-continue\r\nConnection: keep-alive, Close\r\n\r\nbody";
	assert_int_equal(qkm_http_parse_head(ok, sizeof(ok) - 1, &h), 1);
	assert_int_equal(h.len, sizeof(ok) - 1 - 4);
	assert_int_equal(h.method_len, 4);
	assert_memory_equal(h.target, "/a?b=1", 6);
	assert_int_equal(h.target_len, 6);
	assert_true(h.has_length && h.content_length == 12 && h.expect_continue && h.close);
	/* Every prefix is incomplete. */
	for (size_t n = 0; n < h.len; n++)
		assert_int_equal(qkm_http_parse_head(ok, n, &h), 0);
	/* LF line ends; HTTP/1.0 closes unless keep-alive. */
	assert_int_equal(qkm_http_parse_head("GET / HTTP/1.0\n\n", 16, &h), 1);
	assert_true(h.close);
	assert_int_equal(qkm_http_parse_head("GET / HTTP/1.0\nConnection: keep-alive\n\n", 40,
					     &h), 1);
	assert_false(h.close);
	static const struct {
		const char *head;
		int code;
	} bad[] = {
		{"GET /\r\n\r\n", 400},
		{"GET  / HTTP/1.1\r\n\r\n", 400},
		{"GET / HTTP/2.0\r\n\r\n", 505},
		{"GET / HTTP/1.1\r\n: x\r\n\r\n", 400},
		{"GET / HTTP/1.1\r\n folded\r\n\r\n", 400},
		{"GET / HTTP/1.1\r\nContent-Length: 1x\r\n\r\n", 400},
		{"GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400},
		{"GET / HTTP/1.1\r\nContent-Length: 1234567890123456789\r\n\r\n", 400},
		{"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 501},
		{"GET / HTTP/1.1\r\nExpect: magic\r\n\r\n", 400},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_true(qkm_http_parse_head(bad[i].head, strlen(bad[i].head), &h) < 0);
		assert_int_equal(h.error_code, bad[i].code);
		assert_non_null(h.error);
	}
	/* A head over 16 KiB, complete or not. */
	size_t n = (16u << 10) + 2;
	char *big = malloc(n + 4);
	assert_non_null(big);
	memset(big, 'a', n);
	memcpy(big, "GET / HTTP/1.1\r\nX: ", 20);
	assert_true(qkm_http_parse_head(big, n, &h) < 0);
	assert_int_equal(h.error_code, 431);
	memcpy(big + n, "\r\n\r\n", 4);
	assert_true(qkm_http_parse_head(big, n + 4, &h) < 0);
	assert_int_equal(h.error_code, 431);
	free(big);
}

/* Sends raw (pipelined requests) over TLS as the admin and returns all
 * the server answers until it closes (malloc'd, NUL-terminated). */
static char *raw_exchange(struct srv *s, const char *raw)
{
	SSL_CTX *ctx = qkm_tls_ctx_new(pki.ca, pki.admin_c, pki.admin_k, false);
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	size_t cap = 1 << 16, n = 0;
	char *out = malloc(cap);
	assert_non_null(ctx);
	assert_non_null(out);
	assert_true(fd >= 0);
	sin.sin_port = htons((uint16_t)atoi(strrchr(s->url, ':') + 1));
	assert_int_equal(connect(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	SSL *ssl = SSL_new(ctx);
	assert_non_null(ssl);
	assert_int_equal(SSL_set_fd(ssl, fd), 1);
	assert_int_equal(SSL_connect(ssl), 1);
	assert_int_equal(SSL_write(ssl, raw, (int)strlen(raw)), (int)strlen(raw));
	int r;
	while (n < cap - 1 && (r = SSL_read(ssl, out + n, (int)(cap - 1 - n))) > 0)
		n += (size_t)r;
	out[n] = 0;
	SSL_free(ssl);
	close(fd);
	SSL_CTX_free(ctx);
	return out;
}

/* qkm_http_set_headers: the extra fields go with that reply only (the next
 * on the same connection has none), after the usual ones. */
static void test_extra_headers(void **state)
{
	struct srv *s = srv_start(pki.ca, pki.node_c, pki.node_k);
	char *out = raw_exchange(s, "GET /page HTTP/1.1\r\nHost: x\r\n\r\n"
				    "GET /whoami HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
	const char *second = strstr(out, "\r\n\r\n<p>hi</p>");
	assert_non_null(second);
	assert_true(strncmp(out, "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\n", 57) == 0);
	const char *x = strstr(out, "Cache-Control: no-store\r\nX-Frame-Options: DENY\r\nX-Test: page\r\n");
	assert_non_null(x);
	assert_true(x < second);
	assert_null(strstr(second, "X-Test"));
	assert_null(strstr(second, "X-Frame-Options"));
	assert_non_null(strstr(second, "{\"role\":\"admin\""));
	free(out);
	srv_stop(s);
}

static void test_timeout_and_refused(void **state)
{
	int port, status;
	char url[64], *resp;
	int fd = silent_listener(&port);

	snprintf(url, sizeof(url), "https://127.0.0.1:%d/", port);
	assert_int_equal(qkm_https_request(url, "GET", NULL, pki.ca, pki.admin_c, pki.admin_k,
					   300, &status, &resp),
			 QKM_EAGAIN);
	close(fd); /* now nobody listens there */
	assert_int_equal(qkm_https_request(url, "GET", NULL, pki.ca, pki.admin_c, pki.admin_k,
					   TIMEOUT_MS, &status, &resp),
			 QKM_EIO);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_identity_reaches_handler),
		cmocka_unit_test(test_bodies_both_ways),
		cmocka_unit_test(test_body_over_max_is_413),
		cmocka_unit_test(test_input_budget),
		cmocka_unit_test(test_foreign_server_refused),
		cmocka_unit_test(test_foreign_client_refused),
		cmocka_unit_test(test_no_identity_is_401),
		cmocka_unit_test(test_ipv6_and_localhost),
		cmocka_unit_test(test_bad_input),
		cmocka_unit_test(test_parse_head),
		cmocka_unit_test(test_timeout_and_refused),
		cmocka_unit_test(test_extra_headers),
		cmocka_unit_test(test_eof_without_close_notify),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
