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

/* Listens on addr ("host:port") with ctx (a server context from
 * qkm_tls_ctx_new). Requests whose TLS peer has no valid qkm identity are
 * answered 401 without reaching fn. Bodies above max_body bytes: 413.
 * NULL on error (logged). */
struct qkm_http_server *qkm_http_server_new(struct event_base *base, SSL_CTX *ctx,
					    const char *addr, size_t max_body,
					    qkm_http_handler fn, void *arg);
void qkm_http_server_free(struct qkm_http_server *s);

/* Sends a JSON body (text, NUL-terminated) with status code. */
void qkm_http_reply_json(struct evhttp_request *req, int code, const char *json);
/* Sends {"message": msg} (ETSI 014 error shape) with status code. */
void qkm_http_reply_error(struct evhttp_request *req, int code, const char *msg);

/* Blocking HTTPS request for tools. url "https://host:port/path?query";
 * method "GET"/"POST"; body may be NULL. Verifies the server against ca and
 * presents cert/key. Waits at most timeout_ms in total. On success returns 0,
 * *status = HTTP status, *resp = malloc'd NUL-terminated body (caller frees).
 * QKM_EIO (connect/read), QKM_ETLS, QKM_EFORMAT (bad response), QKM_EAGAIN
 * (timeout). */
int qkm_https_request(const char *url, const char *method, const char *body, const char *ca,
		      const char *cert, const char *key, int timeout_ms, int *status /* OUT */,
		      char **resp /* OUT */) QKM_MUST_CHECK;

#endif
