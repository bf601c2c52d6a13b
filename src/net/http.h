/* http.h - HTTPS for humans and applications: a server (libevent evhttp over
 * OpenSSL, client certificate required, the caller's identity handed to every
 * handler) used for the node admin API and ETSI GS QKD 014; and a small
 * blocking client used by `qkm ctl`, `qkm net` and tests. */
#ifndef QKM_NET_HTTP_H
#define QKM_NET_HTTP_H

#include <event2/event.h>
#include <event2/http.h>
#include <openssl/ssl.h>
#include <stddef.h>

#include "core/err.h"
#include "net/tls.h"

struct qkm_http_server;

/* A request from an authenticated peer: role and name come from its verified
 * certificate (net/tls.h). The handler must answer req (evhttp_send_reply*). */
typedef void (*qkm_http_handler)(struct evhttp_request *req, const char *role,
				 const char *name, void *arg);

/* Listens on addr ("host:port", "[v6]:port"; port 0 picks one) with ctx (a
 * server context from qkm_tls_ctx_new; the server takes its own reference).
 * Requests whose TLS peer has no valid qkm identity are answered 401 without
 * reaching fn. Bodies above max_body bytes: 413 (the body is read and
 * dropped first, so the client sees the answer). Only GET and POST are
 * served (others: 501); headers are limited to 16 KiB, idle connections and
 * handshakes to 30 s. NULL on error (logged). */
struct qkm_http_server *qkm_http_server_new(struct event_base *base, SSL_CTX *ctx,
					    const char *addr, size_t max_body,
					    qkm_http_handler fn, void *arg);
void qkm_http_server_free(struct qkm_http_server *s);
/* The TCP port s listens on (useful after binding port 0), or a negative
 * QKM_E* code. */
int qkm_http_server_port(struct qkm_http_server *s) QKM_MUST_CHECK;

/* Sends a JSON body (text, NUL-terminated) with status code. */
void qkm_http_reply_json(struct evhttp_request *req, int code, const char *json);
/* Sends {"message": msg} (ETSI 014 error shape) with status code. */
void qkm_http_reply_error(struct evhttp_request *req, int code, const char *msg);

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

#endif
