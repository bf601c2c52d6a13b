/* http.h - HTTPS for humans and applications: a small HTTP/1.1 server over
 * OpenSSL on the libevent loop (client certificate required, the caller's
 * identity handed to every handler, one TLS write per reply) used for the
 * node admin API and ETSI GS QKD 014; and a blocking client used by
 * `qkm ctl`, `qkm net` and tests. */
#ifndef QKM_NET_HTTP_H
#define QKM_NET_HTTP_H

#include <event2/event.h>
#include <openssl/ssl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/err.h"
#include "net/tls.h"

struct qkm_http_server;

/* A request from an authenticated peer. All strings are NUL-terminated and
 * valid until the request is answered (or forgotten, below). path and query
 * are as sent (not percent-decoded); query is NULL without a '?'. role and
 * name come from the peer's verified certificate (net/tls.h). */
struct qkm_http_req {
	const char *method; /* "GET" or "POST": nothing else reaches a handler */
	const char *path;
	const char *query;
	const char *body;
	size_t body_len;
	const char *role, *name;
};

/* The handler must answer req exactly once with qkm_http_reply*, now or
 * later from the same event loop. One request per connection is with the
 * handler at a time; later ones wait in order. */
typedef void (*qkm_http_handler)(struct qkm_http_req *req, void *arg);
/* Called when the client went away before a later answer: req is invalid
 * once this returns and must not be answered. */
typedef void (*qkm_http_gone_fn)(struct qkm_http_req *req, void *arg);

/* Listens on addr ("ip:port", "[v6]:port", "localhost:port"; port 0 picks
 * one) with ctx (a server context from qkm_tls_ctx_new; the server takes its
 * own reference). Requests whose TLS peer has no valid qkm identity are
 * answered 401 without reaching fn. Bodies above max_body bytes: 413 and the
 * connection is closed after the rest of the input is read and dropped.
 * Only GET and POST are served (others: 501); heads are limited to 16 KiB
 * (431); bodies need a Content-Length (chunked: 501); "Expect:
 * 100-continue" is honoured. A handshake, an idle keep-alive connection or a
 * request that is not complete within 30 s is closed (408 for a request);
 * at most 4096 connections are open at once; request data buffered is
 * bounded (qkm_http_server_set_input_budget). NULL on error (logged). */
struct qkm_http_server *qkm_http_server_new(struct event_base *base, SSL_CTX *ctx,
					    const char *addr, size_t max_body,
					    qkm_http_handler fn, void *arg);
void qkm_http_server_free(struct qkm_http_server *s);
/* Request data all connections together may buffer (default 64 MiB; only
 * connections holding over 64 KiB count): past it, the connection that
 * would go over gets 503 and is closed. */
void qkm_http_server_set_input_budget(struct qkm_http_server *s, size_t bytes);
/* The TCP port s listens on (useful after binding port 0), or a negative
 * QKM_E* code. */
int qkm_http_server_port(struct qkm_http_server *s) QKM_MUST_CHECK;

/* For a request answered later: fn(req, arg) runs if its client leaves first. */
void qkm_http_on_gone(struct qkm_http_req *req, qkm_http_gone_fn fn, void *arg);
/* Answers req with code and a body of type (a Content-Type). secret: the
 * body holds key material; it is copied only into the secure heap and wiped
 * once written. Head and body go out in one TLS record where they fit. */
void qkm_http_reply(struct qkm_http_req *req, int code, const char *type, const void *body,
		    size_t len, bool secret);
/* The coming reply to req carries "Retry-After: seconds" (RFC 9110 10.2.3);
 * 0 takes it back. For 503s a client may retry later. */
void qkm_http_set_retry_after(struct qkm_http_req *req, uint32_t seconds);
/* The coming reply to req carries lines, extra header fields each ending in
 * "\r\n" (at most 1 KiB; longer: none), e.g. a Content-Security-Policy for
 * a page a browser shows. lines is not copied: static text, or text that
 * outlives the reply. NULL takes them back. */
void qkm_http_set_headers(struct qkm_http_req *req, const char *lines);
/* Sends a JSON body (text, NUL-terminated) with status code. */
void qkm_http_reply_json(struct qkm_http_req *req, int code, const char *json);
/* Sends {"message": msg} (ETSI 014 error shape) with status code. */
void qkm_http_reply_error(struct qkm_http_req *req, int code, const char *msg);

/* The head of one HTTP/1.x request (the server's parser, exposed for tests
 * and fuzzing). */
struct qkm_http_head {
	size_t len;               /* bytes, blank line included */
	const char *method, *target; /* into the input, not NUL-terminated */
	size_t method_len, target_len;
	uint64_t content_length;  /* 0 without the header */
	bool has_length, close, expect_continue, chunked;
	int error_code;           /* on failure: the HTTP status to answer */
	const char *error;        /* on failure: why (static text) */
};
/* Parses the request head at the start of the n bytes at p. 1: parsed
 * (h->len bytes); 0: incomplete (no blank line yet, under 16 KiB); a
 * negative QKM_E* code with h->error_code and h->error otherwise. Lines may
 * end in CRLF or LF. */
int qkm_http_parse_head(const char *p, size_t n, struct qkm_http_head *h /* OUT */);

/* Blocking HTTPS request for tools. url "https://host:port/path?query";
 * host is an IPv4 literal, a bracketed IPv6 literal or "localhost"
 * (127.0.0.1); the port defaults to 443. method "GET"/"POST"; body may be
 * NULL (sent as application/json otherwise). Verifies the server against ca,
 * and that its certificate names the URL's host (SAN IP or DNS), and
 * presents cert/key. Waits at most timeout_ms in total. SIGPIPE is blocked
 * in the calling thread meanwhile. On success returns 0, *status = HTTP
 * status, *resp = malloc'd NUL-terminated body (caller frees); any status is
 * success. Otherwise *resp is NULL and: QKM_EINVAL (bad argument or URL),
 * QKM_EIO (connect/read), QKM_ETLS (handshake, certificates, alerts),
 * QKM_EFORMAT (bad response), QKM_ETOOBIG (response over 64 MiB),
 * QKM_EAGAIN (timeout), QKM_ENOMEM. */
int qkm_https_request(const char *url, const char *method, const char *body, const char *ca,
		      const char *cert, const char *key, int timeout_ms, int *status /* OUT */,
		      char **resp /* OUT */) QKM_MUST_CHECK;

/* The same, for a response that carries key material (a QKD device's key
 * API, R-ACQ-5): the body is appended to resp, a secure buffer, and every
 * copy of the response on the way (TLS records read, chunks) is in the
 * secure heap and wiped. QKM_EINVAL if resp is not secure; resp's own
 * error (QKM_ETOOBIG, QKM_ENOMEM) if the body does not fit. */
int qkm_https_request_secure(const char *url, const char *method, const char *body,
			     const char *ca, const char *cert, const char *key, int timeout_ms,
			     int *status /* OUT */, struct qkm_buf *resp /* OUT */) QKM_MUST_CHECK;

#endif
