/* http.c - HTTPS glue (see http.h): an evhttp server whose connections are
 * OpenSSL bufferevents and whose every request carries the peer's verified
 * identity, and a blocking HTTP/1.1 client for tools. Routing and the meaning
 * of bodies belong to the handlers; SSL_CTXs and identities to net/tls.c. */
#include "net/http.h"
#include "core/id.h"
#include "core/buf.h"
#include "core/log.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <event2/util.h>

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <stddef.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define HTTP_HEADERS_MAX (16u << 10)
#define HTTP_TIMEOUT_SECS 30
#define HTTP_CONNS_MAX 4096
#define HTTP_CONN_SMALL (64u << 10)    /* input any connection may buffer */
#define HTTP_INPUT_BUDGET (64u << 20)  /* input all connections may buffer */
#define HTTP_MSG_MAX 1024 /* error message bytes echoed; longer ones are cut */
#define HTTP_HOST_MAX 64  /* host part of "host:port", brackets excluded */
#define HTTP_EXTRA_HEADERS_MAX 1024 /* qkm_http_set_headers */

#define HTTPS_RESP_MAX (64u << 20)      /* whole response, headers included */
#define HTTPS_RESP_HEAD_MAX (64u << 10) /* one header block */
#define HTTPS_CHUNK_LINE_MAX 1024       /* chunk-size line with extensions */
#define HTTPS_REQ_BODY_MAX (64u << 20)
#define HTTPS_PATH_MAX 8192
#define HTTPS_READ_CHUNK (16u << 10)

/* Splits n bytes of "host:port" or "[v6]:port" into host (brackets removed)
 * and *port, which is -1 if there is no ":port". Checks only the shape; the
 * callers decide which hosts they accept. 0 or QKM_EINVAL. */
static int hostport_split(const char *s, size_t n, char host[static HTTP_HOST_MAX],
			  int *port /* OUT */)
{
	const char *end = s + n, *h = s, *p;
	size_t hlen;

	if (n > 0 && s[0] == '[') {
		const char *rb = memchr(s, ']', n);
		if (!rb)
			return QKM_EINVAL;
		h = s + 1;
		hlen = (size_t)(rb - h);
		p = rb + 1;
		if (p < end && *p != ':')
			return QKM_EINVAL;
	} else {
		const char *c = memchr(s, ':', n);
		p = c ? c : end;
		hlen = (size_t)(p - s);
	}
	if (hlen == 0 || hlen >= HTTP_HOST_MAX)
		return QKM_EINVAL;
	memcpy(host, h, hlen);
	host[hlen] = 0;
	*port = -1;
	if (p == end)
		return 0;
	p++; /* the ':' */
	if (p == end || end - p > 5)
		return QKM_EINVAL;
	int v = 0;
	for (; p < end; p++) {
		if (*p < '0' || *p > '9')
			return QKM_EINVAL;
		v = v * 10 + (*p - '0');
	}
	if (v > 65535)
		return QKM_EINVAL;
	*port = v;
	return 0;
}

/* Writes {"message":"<msg>"} into out and returns its length. Quotes,
 * backslashes and control characters are escaped; bytes >= 0x80 become '?'
 * (our messages are ASCII, and this keeps any input valid UTF-8); only the
 * first HTTP_MSG_MAX bytes of msg are used, which the size of out allows for
 * even if every one is escaped to six. */
static size_t json_error(char out[static 6 * HTTP_MSG_MAX + 32], const char *msg)
{
	static const char hex[] = "0123456789abcdef";
	static const char head[] = "{\"message\":\"";
	size_t o = sizeof(head) - 1;

	memcpy(out, head, o);
	size_t n = strnlen(msg, HTTP_MSG_MAX);
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)msg[i];
		if (c == '"' || c == '\\') {
			out[o++] = '\\';
			out[o++] = (char)c;
		} else if (c == '\n') {
			out[o++] = '\\';
			out[o++] = 'n';
		} else if (c == '\r') {
			out[o++] = '\\';
			out[o++] = 'r';
		} else if (c == '\t') {
			out[o++] = '\\';
			out[o++] = 't';
		} else if (c < 0x20 || c == 0x7f) {
			/* NOLINTNEXTLINE(bugprone-not-null-terminated-result): no NUL wanted */
			memcpy(out + o, "\\u00", 4);
			out[o + 4] = hex[c >> 4];
			out[o + 5] = hex[c & 15];
			o += 6;
		} else {
			out[o++] = (char)(c < 0x80 ? c : '?');
		}
	}
	memcpy(out + o, "\"}", 3);
	return o + 2;
}

/* ---- server ---------------------------------------------------------- */

/* One connection: a non-blocking socket with its own SSL, read and write
 * events on the server's base, the bytes read and not yet parsed, at most
 * one request with the handler, and the reply being written. */
struct http_conn {
	struct http_conn *prev, *next;
	struct qkm_http_server *s;
	int fd;
	SSL *ssl;
	struct event *rev, *wev;
	char role[QKM_ROLE_MAX], name[QKM_NAME_MAX];
	bool handshaken, identified;
	bool reading;       /* rev is added */
	bool closing;       /* close once the current reply is written */
	bool draining;      /* reply written; drop input until EOF (lingering close) */
	bool gone;          /* socket closed; the struct waits for the handler's reply */
	bool continued;     /* "100 Continue" sent for the current request */
	int in_io;          /* depth of I/O callbacks on the stack */
	char *in;           /* bytes read, not yet parsed */
	size_t in_len, in_cap;
	int64_t head_start_ms; /* first byte of the request being read; draining: its start */
	bool busy;          /* req is with the handler */
	uint32_t retry_after; /* seconds, for the reply to req; 0: no Retry-After */
	const char *headers;  /* extra header lines for the reply to req, or NULL */
	struct qkm_http_req req;
	char *req_mem;      /* path, query and body of req */
	qkm_http_gone_fn gone_fn;
	void *gone_arg;
	struct qkm_buf out; /* reply being written (secure heap when it holds keys) */
	size_t out_off;
};

struct qkm_http_server {
	struct event_base *base;
	struct evconnlistener *lis;
	SSL_CTX *ctx; /* we hold one reference */
	qkm_http_handler fn;
	void *arg;
	size_t max_body;
	size_t n_conns;
	size_t in_bytes;  /* input buffers of all connections */
	size_t in_budget; /* their limit (HTTP_INPUT_BUDGET) */
	struct http_conn *conns;
	int64_t refused_log_ms; /* last "too many connections" warning */
};

static const char *http_reason(int code)
{
	switch (code) {
	case 100: return "Continue";
	case 200: return "OK";
	case 201: return "Created";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 408: return "Request Timeout";
	case 411: return "Length Required";
	case 413: return "Content Too Large";
	case 431: return "Request Header Fields Too Large";
	case 500: return "Internal Server Error";
	case 501: return "Not Implemented";
	case 503: return "Service Unavailable";
	case 505: return "HTTP Version Not Supported";
	default: return "Status";
	}
}

/* Monotonic milliseconds, for the server's timeouts and the client's deadline. */
static int64_t now_ms(void)
{
	return (int64_t)(qkm_mono_ns() / 1000000);
}

static void conn_io(struct http_conn *c);

static void conn_free(struct http_conn *c)
{
	struct qkm_http_server *s = c->s;
	if (c->prev)
		c->prev->next = c->next;
	else
		s->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	s->n_conns--;
	s->in_bytes -= c->in_cap;
	if (c->rev)
		event_free(c->rev);
	if (c->wev)
		event_free(c->wev);
	SSL_free(c->ssl);
	if (c->fd >= 0)
		close(c->fd);
	qkm_buf_fini(&c->out);
	free(c->req_mem);
	free(c->in);
	free(c);
}

/* Ends the connection. A request still with the handler is either
 * forgotten (the handler's gone callback runs, then it is invalid) or, with
 * no callback, kept until the handler replies into the void. Inside an I/O
 * callback the struct is freed when the callback returns. */
static void conn_close(struct http_conn *c)
{
	if (c->gone)
		return;
	c->gone = true;
	if (c->reading)
		event_del(c->rev);
	c->reading = false;
	event_del(c->wev);
	if (c->busy && c->gone_fn) {
		qkm_http_gone_fn fn = c->gone_fn;
		c->gone_fn = NULL;
		c->busy = false;
		fn(&c->req, c->gone_arg);
	}
	if (!c->busy && !c->in_io)
		conn_free(c);
}

static void conn_read_on(struct http_conn *c, bool on)
{
	if (on == c->reading || c->gone)
		return;
	if (on) {
		struct timeval tv = {HTTP_TIMEOUT_SECS, 0};
		event_add(c->rev, &tv);
	} else {
		event_del(c->rev);
	}
	c->reading = on;
}

/* Writes what is left of c->out. 1: all written; 0: waiting for the socket;
 * negative: the connection failed (closed). */
static int conn_flush(struct http_conn *c)
{
	while (c->out_off < c->out.len) {
		ERR_clear_error();
		int n = SSL_write(c->ssl, c->out.p + c->out_off, (int)(c->out.len - c->out_off));
		if (n > 0) {
			c->out_off += (size_t)n;
			continue;
		}
		int e = SSL_get_error(c->ssl, n);
		if (e == SSL_ERROR_WANT_WRITE) {
			event_add(c->wev, NULL);
			return 0;
		}
		if (e == SSL_ERROR_WANT_READ)
			return 0;
		ERR_clear_error(); /* not left for the next TLS call on this thread */
		conn_close(c);
		return QKM_EIO;
	}
	qkm_buf_fini(&c->out); /* wipes a secure reply */
	c->out_off = 0;
	return 1;
}

/* Queues a whole reply (head and body) as one TLS write. */
static void conn_reply(struct http_conn *c, int code, const char *type, const void *body,
		       size_t len, bool secret)
{
	char head[320 + HTTP_EXTRA_HEADERS_MAX], retry[48] = "";
	const char *extra = c->headers ? c->headers : "";
	if (c->retry_after)
		snprintf(retry, sizeof(retry), "Retry-After: %u\r\n", (unsigned)c->retry_after);
	c->retry_after = 0;
	c->headers = NULL;
	int hn = snprintf(head, sizeof(head),
			  "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
			  "Cache-Control: no-store\r\n%s%s%s\r\n",
			  code, http_reason(code), type, len, retry, extra,
			  c->closing ? "Connection: close\r\n" : "");
	qkm_buf_fini(&c->out);
	qkm_buf_init(&c->out, (size_t)hn + len, secret);
	c->out_off = 0;
	if (hn < 0 || (size_t)hn >= sizeof(head) || qkm_buf_put(&c->out, head, (size_t)hn) ||
	    (len && qkm_buf_put(&c->out, body, len))) {
		log_warnx("http: no memory for a %zu-byte reply; closing the connection", len);
		conn_close(c);
		return;
	}
	if (conn_flush(c) == 1 && c->closing) {
		c->draining = true;
		c->head_start_ms = now_ms();
		shutdown(c->fd, SHUT_WR);
	}
}

static void conn_error(struct http_conn *c, int code, const char *msg)
{
	char body[6 * HTTP_MSG_MAX + 32];
	size_t n = json_error(body, msg);
	c->closing = true;
	conn_reply(c, code, "application/json", body, n, false);
}

static bool token_is(const char *p, size_t n, const char *tok)
{
	return n == strlen(tok) && strncasecmp(p, tok, n) == 0;
}

/* Does the comma-separated header value hold tok? */
static bool list_has_token(const char *v, size_t n, const char *tok)
{
	const char *e = v + n;
	while (v < e) {
		while (v < e && (*v == ' ' || *v == '\t' || *v == ','))
			v++;
		const char *t = v;
		while (v < e && *v != ',')
			v++;
		const char *te = v;
		while (te > t && (te[-1] == ' ' || te[-1] == '\t'))
			te--;
		if (token_is(t, (size_t)(te - t), tok))
			return true;
	}
	return false;
}

static int head_error(struct qkm_http_head *h, int code, const char *msg, int rc)
{
	h->error_code = code;
	h->error = msg;
	return rc;
}

int qkm_http_parse_head(const char *p, size_t n, struct qkm_http_head *h)
{
	const char *end = p + n, *line = p;
	memset(h, 0, sizeof(*h));
	/* Find the blank line that ends the head. */
	const char *stop = NULL;
	for (const char *q = p; q < end; q++) {
		if (*q != '\n')
			continue;
		const char *next = q + 1;
		if (next < end && *next == '\n') {
			stop = next + 1;
			break;
		}
		if (next + 1 < end && next[0] == '\r' && next[1] == '\n') {
			stop = next + 2;
			break;
		}
	}
	if (!stop) {
		if (n > HTTP_HEADERS_MAX)
			return head_error(h, 431, "request head over 16 KiB", QKM_ETOOBIG);
		return 0;
	}
	if ((size_t)(stop - p) > HTTP_HEADERS_MAX)
		return head_error(h, 431, "request head over 16 KiB", QKM_ETOOBIG);
	h->len = (size_t)(stop - p);
	/* Request line: METHOD SP target SP HTTP/1.x */
	const char *eol = memchr(line, '\n', (size_t)(stop - line));
	const char *le = eol > line && eol[-1] == '\r' ? eol - 1 : eol;
	const char *sp1 = memchr(line, ' ', (size_t)(le - line));
	const char *sp2 = sp1 ? memchr(sp1 + 1, ' ', (size_t)(le - sp1 - 1)) : NULL;
	if (!sp1 || !sp2 || sp1 == line || sp2 == sp1 + 1)
		return head_error(h, 400, "malformed request line", QKM_EFORMAT);
	h->method = line;
	h->method_len = (size_t)(sp1 - line);
	h->target = sp1 + 1;
	h->target_len = (size_t)(sp2 - sp1 - 1);
	const char *ver = sp2 + 1;
	size_t vlen = (size_t)(le - ver);
	if (vlen == 8 && memcmp(ver, "HTTP/1.1", 8) == 0) {
		h->close = false;
	} else if (vlen == 8 && memcmp(ver, "HTTP/1.0", 8) == 0) {
		h->close = true;
	} else {
		return head_error(h, 505, "only HTTP/1.1 and HTTP/1.0 are served", QKM_EFORMAT);
	}
	bool keep_alive = false;
	for (line = eol + 1; line < stop; line = eol + 1) {
		eol = memchr(line, '\n', (size_t)(stop - line));
		le = eol > line && eol[-1] == '\r' ? eol - 1 : eol;
		if (le == line)
			break; /* the blank line */
		const char *colon = memchr(line, ':', (size_t)(le - line));
		if (!colon || colon == line || line[0] == ' ' || line[0] == '\t')
			return head_error(h, 400, "malformed header line", QKM_EFORMAT);
		size_t nlen = (size_t)(colon - line);
		const char *v = colon + 1, *ve = le;
		while (v < ve && (*v == ' ' || *v == '\t'))
			v++;
		while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
			ve--;
		size_t vl = (size_t)(ve - v);
		if (token_is(line, nlen, "Content-Length")) {
			uint64_t cl = 0;
			bool ok = vl > 0 && vl <= 18;
			for (size_t i = 0; ok && i < vl; i++) {
				ok = v[i] >= '0' && v[i] <= '9';
				cl = cl * 10 + (uint64_t)(v[i] - '0');
			}
			if (!ok)
				return head_error(h, 400, "bad Content-Length", QKM_EFORMAT);
			if (h->has_length && cl != h->content_length)
				return head_error(h, 400, "conflicting Content-Length headers",
						  QKM_EFORMAT);
			h->has_length = true;
			h->content_length = cl;
		} else if (token_is(line, nlen, "Transfer-Encoding")) {
			h->chunked = true;
		} else if (token_is(line, nlen, "Connection")) {
			if (list_has_token(v, vl, "close"))
				h->close = true;
			if (list_has_token(v, vl, "keep-alive"))
				keep_alive = true;
		} else if (token_is(line, nlen, "Expect")) {
			if (!token_is(v, vl, "100-continue"))
				return head_error(h, 400, "unsupported Expect header", QKM_EFORMAT);
			h->expect_continue = true;
		}
	}
	if (keep_alive && h->close && vlen == 8 && ver[7] == '0')
		h->close = false; /* HTTP/1.0 with Connection: keep-alive */
	if (h->chunked)
		return head_error(h, 501, "Transfer-Encoding is not supported: send a Content-Length",
				  QKM_EFORMAT);
	return 1;
}

/* Hands the next complete request to the handler, or answers it here. 1: a
 * request was taken (go on); 0: more input needed or busy; negative: stop. */
static int conn_next(struct http_conn *c)
{
	struct qkm_http_server *s = c->s;
	struct qkm_http_head h;
	if (c->busy || c->out.len || c->closing || c->gone || c->in_len == 0)
		return 0;
	int rc = qkm_http_parse_head(c->in, c->in_len, &h);
	if (rc < 0)
		conn_error(c, h.error_code, h.error);
	if (rc <= 0) {
		if (rc == 0 && now_ms() - c->head_start_ms > HTTP_TIMEOUT_SECS * 1000L) {
			conn_error(c, 408, "request not complete within 30 s");
			return QKM_EAGAIN;
		}
		return rc;
	}
	bool get = token_is(h.method, h.method_len, "GET");
	bool post = token_is(h.method, h.method_len, "POST");
	if (!get && !post) {
		conn_error(c, 501, "only GET and POST are served");
		return QKM_EINVAL;
	}
	if (h.content_length > s->max_body) {
		conn_error(c, 413, "request body too large");
		return QKM_ETOOBIG;
	}
	if (h.target_len == 0 || h.target[0] != '/') {
		conn_error(c, 400, "request target must be an absolute path");
		return QKM_EFORMAT;
	}
	size_t want = h.len + (size_t)h.content_length;
	if (c->in_len < want) {
		if (h.expect_continue && !c->continued && c->in_len == h.len) {
			static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
			c->continued = true;
			qkm_buf_init(&c->out, sizeof(cont), false);
			if (qkm_buf_put(&c->out, cont, sizeof(cont) - 1) == 0 && conn_flush(c) < 0)
				return QKM_EIO;
		}
		if (now_ms() - c->head_start_ms > HTTP_TIMEOUT_SECS * 1000L) {
			conn_error(c, 408, "request body not complete within 30 s");
			return QKM_EAGAIN;
		}
		return 0;
	}
	c->closing = h.close;
	/* Copy the request out of the input buffer, which keeps filling. */
	const char *target = h.target, *qm = memchr(target, '?', h.target_len);
	const char *hash = memchr(target, '#', h.target_len);
	size_t tlen = hash ? (size_t)(hash - target) : h.target_len;
	size_t plen = qm && qm < target + tlen ? (size_t)(qm - target) : tlen;
	size_t qlen = plen < tlen ? tlen - plen - 1 : 0;
	size_t blen = (size_t)h.content_length;
	char *m = malloc(plen + 1 + qlen + 1 + blen + 1);
	if (!m) {
		conn_error(c, 503, "out of memory");
		return QKM_ENOMEM;
	}
	memcpy(m, target, plen);
	m[plen] = 0;
	char *q = m + plen + 1, *b = q + qlen + 1;
	memcpy(q, target + plen + 1, qlen);
	q[qlen] = 0;
	memcpy(b, c->in + h.len, blen);
	b[blen] = 0;
	memset(&c->req, 0, sizeof(c->req));
	c->req.method = get ? "GET" : "POST";
	c->req.path = m;
	c->req.query = plen < tlen ? q : NULL;
	c->req.body = b;
	c->req.body_len = blen;
	c->req.role = c->role;
	c->req.name = c->name;
	c->req_mem = m;
	memmove(c->in, c->in + want, c->in_len - want);
	c->in_len -= want;
	c->head_start_ms = now_ms();
	c->continued = false;
	c->busy = true;
	c->gone_fn = NULL;
	if (!c->identified)
		qkm_http_reply_error(&c->req, 401, "client certificate required");
	else
		s->fn(&c->req, s->arg);
	return c->gone ? QKM_EIO : 1;
}

/* Reads what the socket has. 0 or negative (closed). */
static int conn_read(struct http_conn *c)
{
	size_t cap_max = HTTP_HEADERS_MAX + c->s->max_body + 1;
	for (;;) {
		if (c->in_len == c->in_cap) {
			if (c->in_cap >= cap_max) {
				conn_read_on(c, false); /* until the handler is done */
				return 0;
			} else {
				size_t n = c->in_cap ? c->in_cap * 2 : HTTPS_READ_CHUNK;
				n = n < cap_max ? n : cap_max;
				struct qkm_http_server *s = c->s;
				if (n > HTTP_CONN_SMALL && s->in_bytes + (n - c->in_cap) > s->in_budget) {
					/* Many clients sending large bodies at once: this
					 * one is turned away (or, with a request still at
					 * the handler, waits), not the node's memory. */
					if (c->busy) {
						conn_read_on(c, false);
						return 0;
					}
					conn_error(c, 503, "server busy: too much request data "
							   "buffered; retry later");
					return QKM_EAGAIN;
				}
				char *p = realloc(c->in, n);
				if (!p) {
					conn_close(c);
					return QKM_ENOMEM;
				}
				s->in_bytes += n - c->in_cap;
				c->in = p;
				c->in_cap = n;
			}
		}
		ERR_clear_error();
		int n = SSL_read(c->ssl, c->in + c->in_len, (int)(c->in_cap - c->in_len));
		if (n > 0) {
			if (c->in_len == 0)
				c->head_start_ms = now_ms();
			c->in_len += (size_t)n;
			/* All TLS held, with room left: whatever the socket
			 * has next comes with the next read event (c->rev is
			 * level-triggered), not with a read() that would only
			 * say EAGAIN, one per request at keep-alive. */
			if (c->in_len < c->in_cap && !SSL_has_pending(c->ssl))
				return 0;
			continue;
		}
		int e = SSL_get_error(c->ssl, n);
		if (e == SSL_ERROR_WANT_READ)
			return 0;
		if (e == SSL_ERROR_WANT_WRITE) {
			event_add(c->wev, NULL);
			return 0;
		}
		/* EOF, close_notify or a broken record: the peer is gone. Its
		 * error ("unexpected eof" for a client that closed without
		 * close_notify) must not stay queued: SSL_get_error on the next
		 * TLS call of this thread (a node's Kx or quantum layer link)
		 * would read it as that call's failure. */
		ERR_clear_error();
		conn_close(c);
		return QKM_EIO;
	}
}

/* Lingering close, after the last reply and our FIN: the client's bytes
 * are dropped unread (no TLS: nothing may be written now) until it closes,
 * so that its unread data never turns our close into a reset that would
 * destroy the reply in flight. */
static void conn_drain(struct http_conn *c)
{
	char sink[16384];
	if (now_ms() - c->head_start_ms > HTTP_TIMEOUT_SECS * 1000L) {
		conn_close(c); /* a client that never stops sending */
		return;
	}
	for (;;) {
		ssize_t n = read(c->fd, sink, sizeof(sink));
		if (n > 0)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		if (n < 0 && errno == EINTR)
			continue;
		conn_close(c);
		return;
	}
}

static void conn_io(struct http_conn *c)
{
	if (c->gone)
		return;
	if (!c->handshaken) {
		ERR_clear_error();
		int r = SSL_do_handshake(c->ssl);
		if (r != 1) {
			int e = SSL_get_error(c->ssl, r);
			if (e == SSL_ERROR_WANT_WRITE)
				event_add(c->wev, NULL);
			else if (e != SSL_ERROR_WANT_READ) {
				log_debug("http: TLS handshake failed");
				ERR_clear_error();
				conn_close(c);
			}
			return;
		}
		c->handshaken = true;
		c->identified = qkm_tls_peer_identity(c->ssl, c->role, c->name) == 0;
	}
	if (c->out.len && conn_flush(c) <= 0)
		return;
	if (c->draining && !c->out.len) {
		conn_drain(c);
		return;
	}
	if (c->closing && !c->busy && !c->out.len) {
		c->draining = true;
		c->head_start_ms = now_ms();
		shutdown(c->fd, SHUT_WR);
		conn_drain(c);
		return;
	}
	if (conn_read(c) < 0)
		return;
	while (conn_next(c) == 1)
		;
	if (!c->gone && !c->busy && !c->out.len)
		conn_read_on(c, true);
}

static void conn_on_event(evutil_socket_t fd, short what, void *arg)
{
	struct http_conn *c = arg;
	c->in_io++;
	if ((what & EV_TIMEOUT) && !(what & (EV_READ | EV_WRITE))) {
		/* 30 s without input: idle, stuck in the handshake, or lingering. */
		if (!c->busy)
			conn_close(c);
	} else {
		conn_io(c);
	}
	c->in_io--;
	if (c->gone && !c->busy && !c->in_io)
		conn_free(c);
}

static void http_on_accept(struct evconnlistener *lis, evutil_socket_t fd, struct sockaddr *sa,
			   int salen, void *arg)
{
	struct qkm_http_server *s = arg;
	if (s->n_conns >= HTTP_CONNS_MAX) {
		int64_t now = now_ms();
		if (now - s->refused_log_ms > 10000) {
			log_warnx("http: %d connections open; refusing more", HTTP_CONNS_MAX);
			s->refused_log_ms = now;
		}
		close(fd);
		return;
	}
	struct http_conn *c = calloc(1, sizeof(*c));
	if (!c) {
		close(fd);
		return;
	}
	int one = 1;
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	c->s = s;
	c->fd = fd;
	qkm_buf_init(&c->out, 0, false);
	c->next = s->conns;
	if (s->conns)
		s->conns->prev = c;
	s->conns = c;
	s->n_conns++;
	c->ssl = SSL_new(s->ctx);
	c->rev = event_new(s->base, fd, EV_READ | EV_PERSIST, conn_on_event, c);
	c->wev = event_new(s->base, fd, EV_WRITE, conn_on_event, c);
	if (!c->ssl || !c->rev || !c->wev || SSL_set_fd(c->ssl, fd) != 1) {
		qkm_tls_log_errors("http: new connection");
		c->gone = true;
		conn_free(c);
		return;
	}
	SSL_set_accept_state(c->ssl);
	/* A record's header and body in one read(), not two. */
	SSL_set_read_ahead(c->ssl, 1);
	conn_read_on(c, true);
}

static void http_on_listen_error(struct evconnlistener *lis, void *arg)
{
	log_warn("http: accept");
}

struct qkm_http_server *qkm_http_server_new(struct event_base *base, SSL_CTX *ctx,
					    const char *addr, size_t max_body,
					    qkm_http_handler fn, void *arg)
{
	char host[HTTP_HOST_MAX];
	int port;
	struct sockaddr_storage ss;
	socklen_t sslen;

	if (!base || !ctx || !addr || !fn) {
		log_warnx("http: server needs a base, a context, an address and a handler");
		return NULL;
	}
	if (hostport_split(addr, strlen(addr), host, &port) != 0 || port < 0) {
		log_warnx("http: bad listen address \"%s\" (want host:port)", addr);
		return NULL;
	}
	memset(&ss, 0, sizeof(ss));
	struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
	if (strcmp(host, "localhost") == 0)
		snprintf(host, sizeof(host), "127.0.0.1");
	if (inet_pton(AF_INET, host, &s4->sin_addr) == 1) {
		s4->sin_family = AF_INET;
		s4->sin_port = htons((uint16_t)port);
		sslen = sizeof(*s4);
	} else if (inet_pton(AF_INET6, host, &s6->sin6_addr) == 1) {
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons((uint16_t)port);
		sslen = sizeof(*s6);
	} else {
		log_warnx("http: listen address \"%s\" is not an IP address literal", addr);
		return NULL;
	}
	struct qkm_http_server *s = calloc(1, sizeof(*s));
	if (!s) {
		log_warnx("http: out of memory");
		return NULL;
	}
	s->base = base;
	s->fn = fn;
	s->arg = arg;
	s->max_body = max_body;
	s->in_budget = HTTP_INPUT_BUDGET;
	SSL_CTX_up_ref(ctx);
	s->ctx = ctx;
	s->lis = evconnlistener_new_bind(base, http_on_accept, s,
					 LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE |
						 LEV_OPT_CLOSE_ON_EXEC,
					 1024, (struct sockaddr *)&ss, (int)sslen);
	if (!s->lis) {
		log_warn("http: cannot listen on %s", addr);
		qkm_http_server_free(s);
		return NULL;
	}
	evconnlistener_set_error_cb(s->lis, http_on_listen_error);
	return s;
}

void qkm_http_server_free(struct qkm_http_server *s)
{
	if (!s)
		return;
	if (s->lis)
		evconnlistener_free(s->lis);
	while (s->conns) {
		struct http_conn *c = s->conns;
		c->gone = true;
		c->busy = false;
		conn_free(c);
	}
	SSL_CTX_free(s->ctx);
	free(s);
}

void qkm_http_server_set_input_budget(struct qkm_http_server *s, size_t bytes)
{
	s->in_budget = bytes;
}

int qkm_http_server_port(struct qkm_http_server *s)
{
	struct sockaddr_storage ss = {0};
	socklen_t len = sizeof(ss);

	if (!s || !s->lis)
		return QKM_EINVAL;
	if (getsockname(evconnlistener_get_fd(s->lis), (struct sockaddr *)&ss, &len) != 0)
		return QKM_EIO;
	if (ss.ss_family == AF_INET)
		return ntohs(((struct sockaddr_in *)&ss)->sin_port);
	if (ss.ss_family == AF_INET6)
		return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
	return QKM_EIO;
}

static struct http_conn *req_conn(struct qkm_http_req *req)
{
	return (struct http_conn *)((char *)req - offsetof(struct http_conn, req));
}

void qkm_http_on_gone(struct qkm_http_req *req, qkm_http_gone_fn fn, void *arg)
{
	struct http_conn *c = req_conn(req);
	c->gone_fn = fn;
	c->gone_arg = arg;
}

void qkm_http_set_retry_after(struct qkm_http_req *req, uint32_t seconds)
{
	struct http_conn *c = req_conn(req);
	if (c->busy)
		c->retry_after = seconds;
}

void qkm_http_set_headers(struct qkm_http_req *req, const char *lines)
{
	struct http_conn *c = req_conn(req);
	if (c->busy)
		c->headers = lines && strlen(lines) <= HTTP_EXTRA_HEADERS_MAX ? lines : NULL;
}

void qkm_http_reply(struct qkm_http_req *req, int code, const char *type, const void *body,
		    size_t len, bool secret)
{
	struct http_conn *c = req_conn(req);
	if (!c->busy)
		return; /* answered already, or forgotten after its gone callback */
	c->busy = false;
	c->gone_fn = NULL;
	c->in_io++;
	if (!c->gone)
		conn_reply(c, code, type, body, len, secret); /* body may be in req_mem */
	/* in_io >= 1 here, so conn_close in conn_reply did not free c. */
	c->in_io--; /* NOLINT(clang-analyzer-unix.Malloc) */
	free(c->req_mem);
	c->req_mem = NULL;
	memset(&c->req, 0, sizeof(c->req));
	if (c->in_io)
		return; /* the connection's own callback goes on from here */
	if (c->gone) {
		conn_free(c);
		return;
	}
	/* A later reply: go on with any request already buffered (or read
	 * again if a full buffer had stopped reading) once the loop comes round. */
	if (c->in_len || !c->reading) {
		conn_read_on(c, true);
		event_active(c->rev, EV_READ, 1);
	}
}

void qkm_http_reply_json(struct qkm_http_req *req, int code, const char *json)
{
	qkm_http_reply(req, code, "application/json", json, strlen(json), false);
}

void qkm_http_reply_error(struct qkm_http_req *req, int code, const char *msg)
{
	char body[6 * HTTP_MSG_MAX + 32];
	size_t n = json_error(body, msg ? msg : "");
	qkm_http_reply(req, code, "application/json", body, n, false);
}

/* ---- client ---------------------------------------------------------- */

struct https_url {
	char host[HTTP_HOST_MAX]; /* as written, without brackets */
	bool ip;                  /* host is an address literal */
	int port;
	struct sockaddr_storage ss;
	socklen_t sslen;
	const char *path; /* into the URL: path and query, fragment cut */
	size_t pathlen;
};

/* Accepts https://HOST[:PORT][/path][?query][#fragment] where HOST is an
 * IPv4 literal, a bracketed IPv6 literal or "localhost" (127.0.0.1): tools
 * reach qkm services at the literal addresses of the network file, so
 * there is no resolver here. Path bytes must be printable ASCII without
 * spaces, so nothing can be smuggled into the request head. */
static int url_parse(const char *url, struct https_url *u /* OUT */)
{
	static const char scheme[] = "https://";
	struct sockaddr_in *sin = (struct sockaddr_in *)&u->ss;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&u->ss;

	memset(u, 0, sizeof(*u));
	if (strncasecmp(url, scheme, sizeof(scheme) - 1) != 0)
		return QKM_EINVAL;
	const char *a = url + sizeof(scheme) - 1;
	size_t alen = strcspn(a, "/?#");
	if (memchr(a, '@', alen) || hostport_split(a, alen, u->host, &u->port) != 0)
		return QKM_EINVAL;
	if (u->port < 0)
		u->port = 443;
	if (u->port == 0)
		return QKM_EINVAL;
	if (a[0] == '[') {
		if (inet_pton(AF_INET6, u->host, &sin6->sin6_addr) != 1)
			return QKM_EINVAL;
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons((uint16_t)u->port);
		u->sslen = sizeof(*sin6);
		u->ip = true;
	} else {
		if (inet_pton(AF_INET, u->host, &sin->sin_addr) == 1)
			u->ip = true;
		else if (strcasecmp(u->host, "localhost") == 0)
			sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		else
			return QKM_EINVAL;
		sin->sin_family = AF_INET;
		sin->sin_port = htons((uint16_t)u->port);
		u->sslen = sizeof(*sin);
	}
	u->path = a + alen;
	u->pathlen = strcspn(u->path, "#");
	if (u->pathlen > HTTPS_PATH_MAX)
		return QKM_EINVAL;
	for (size_t i = 0; i < u->pathlen; i++)
		if (u->path[i] <= 0x20 || u->path[i] >= 0x7f)
			return QKM_EINVAL;
	return 0;
}

static int request_build(struct qkm_buf *b, const char *method, const struct https_url *u,
			 const char *body)
{
	char head[HTTPS_PATH_MAX + 512];
	size_t blen = body ? strlen(body) : 0;
	bool v6 = u->ss.ss_family == AF_INET6;
	/* "?q" alone means "/?q"; an empty path means "/". */
	const char *slash = u->pathlen == 0 || u->path[0] == '?' ? "/" : "";
	char clen[96] = "";

	if (blen > HTTPS_REQ_BODY_MAX)
		return QKM_ETOOBIG;
	if (body)
		snprintf(clen, sizeof(clen),
			 "Content-Type: application/json\r\nContent-Length: %zu\r\n", blen);
	else if (strcmp(method, "POST") == 0)
		snprintf(clen, sizeof(clen), "Content-Length: 0\r\n");
	int n = snprintf(head, sizeof(head),
			 "%s %s%.*s HTTP/1.1\r\n"
			 "Host: %s%s%s:%d\r\n"
			 "User-Agent: qkm/" QKM_VERSION "\r\n"
			 "Accept: application/json\r\n"
			 "%s"
			 "Connection: close\r\n\r\n",
			 method, slash, (int)u->pathlen, u->path, v6 ? "[" : "", u->host,
			 v6 ? "]" : "", u->port, clen);
	if (n < 0 || (size_t)n >= sizeof(head))
		return QKM_EINVAL;
	int rc = qkm_buf_put(b, head, (size_t)n);
	if (!rc && blen)
		rc = qkm_buf_put(b, body, blen);
	return rc;
}

/* ---- response parsing: pure, fed the bytes received so far ----------- */

enum body_kind { BODY_NONE, BODY_LENGTH, BODY_CHUNKED, BODY_CLOSE };

struct http_resp {
	int status;
	size_t head; /* end of the final header block; 0 until it is complete */
	enum body_kind kind;
	size_t clen;          /* BODY_LENGTH */
	size_t scan;          /* BODY_CHUNKED: offset of the next chunk-size line */
	bool trailers;        /* BODY_CHUNKED: the last chunk has been seen */
	struct qkm_buf chunks; /* BODY_CHUNKED: the decoded body so far */
};

static bool is_tchar(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       (c && strchr("!#$%&'*+-.^_`|~", c));
}

/* One header field "name: value" in [p, e): records the framing. */
static int resp_field(struct http_resp *r, const char *p, const char *e, bool *have_len)
{
	const char *colon = memchr(p, ':', (size_t)(e - p));
	if (!colon || colon == p)
		return QKM_EFORMAT;
	for (const char *q = p; q < colon; q++)
		if (!is_tchar(*q))
			return QKM_EFORMAT; /* also refuses obsolete line folding */
	const char *v = colon + 1;
	while (v < e && (*v == ' ' || *v == '\t'))
		v++;
	while (e > v && (e[-1] == ' ' || e[-1] == '\t'))
		e--;
	size_t nlen = (size_t)(colon - p), vlen = (size_t)(e - v);

	if (nlen == 14 && strncasecmp(p, "Content-Length", 14) == 0) {
		size_t len = 0;
		if (vlen == 0)
			return QKM_EFORMAT;
		for (const char *q = v; q < e; q++) {
			if (*q < '0' || *q > '9')
				return QKM_EFORMAT;
			len = len * 10 + (size_t)(*q - '0');
			if (len > HTTPS_RESP_MAX)
				return QKM_ETOOBIG;
		}
		if (*have_len && len != r->clen)
			return QKM_EFORMAT; /* conflicting lengths: no safe reading */
		*have_len = true;
		r->clen = len;
	} else if (nlen == 17 && strncasecmp(p, "Transfer-Encoding", 17) == 0) {
		/* We ask for no codings, so chunked is the only one to expect. */
		if (vlen != 7 || strncasecmp(v, "chunked", 7) != 0)
			return QKM_EFORMAT;
		r->kind = BODY_CHUNKED;
	}
	return 0;
}

/* Parses header blocks from p[0..len): skips interim 1xx responses and
 * sets status, head and the body framing of the final one. */
static int resp_head(struct http_resp *r, const char *p, size_t len)
{
	size_t start = 0;
	for (;;) {
		const char *end = memmem(p + start, len - start, "\r\n\r\n", 4);
		if (!end)
			return len - start > HTTPS_RESP_HEAD_MAX ? QKM_EFORMAT : QKM_EAGAIN;
		if ((size_t)(end - (p + start)) > HTTPS_RESP_HEAD_MAX)
			return QKM_EFORMAT;
		const char *line = p + start, *eol = memmem(line, (size_t)(end + 2 - line), "\r\n", 2);
		/* "HTTP/1.x NNN[ reason]" */
		if (eol - line < 12 || memcmp(line, "HTTP/1.", 7) != 0 || line[7] < '0' ||
		    line[7] > '9' || line[8] != ' ' || (eol - line > 12 && line[12] != ' '))
			return QKM_EFORMAT;
		int status = 0;
		for (int i = 9; i < 12; i++) {
			if (line[i] < '0' || line[i] > '9')
				return QKM_EFORMAT;
			status = status * 10 + (line[i] - '0');
		}
		if (status < 100)
			return QKM_EFORMAT;
		r->kind = BODY_CLOSE;
		bool have_len = false;
		for (line = eol + 2; line < end + 2; line = eol + 2) {
			eol = memmem(line, (size_t)(end + 2 - line), "\r\n", 2);
			int rc = resp_field(r, line, eol, &have_len);
			if (rc)
				return rc;
		}
		start = (size_t)(end - p) + 4;
		if (status < 200)
			continue; /* 100 Continue and friends precede the answer */
		r->status = status;
		r->head = start;
		if (status == 204 || status == 304)
			r->kind = BODY_NONE;
		else if (r->kind != BODY_CHUNKED && have_len)
			r->kind = BODY_LENGTH; /* chunked wins over a length */
		return 0;
	}
}

/* Decodes the chunks in p[r->scan..len) into r->chunks; trailer fields are
 * read past and ignored. */
static int resp_chunks(struct http_resp *r, const char *p, size_t len)
{
	for (;;) {
		const char *line = p + r->scan;
		size_t left = len - r->scan;
		const char *eol = memmem(line, left, "\r\n", 2);
		if (!eol)
			return left > HTTPS_CHUNK_LINE_MAX ? QKM_EFORMAT : QKM_EAGAIN;
		size_t lhdr = (size_t)(eol - line) + 2;
		if (lhdr > HTTPS_CHUNK_LINE_MAX)
			return QKM_EFORMAT;
		if (r->trailers) {
			r->scan += lhdr;
			if (lhdr == 2)
				return 0; /* the empty line after the trailers */
			continue;
		}
		size_t size = 0;
		const char *q = line;
		for (; q < eol && qkm_hexval(*q) >= 0; q++) {
			size = size * 16 + (size_t)qkm_hexval(*q);
			if (size > HTTPS_RESP_MAX)
				return QKM_ETOOBIG;
		}
		if (q == line || (q < eol && *q != ';' && *q != ' ' && *q != '\t'))
			return QKM_EFORMAT; /* anything after the size is an extension */
		if (size == 0) {
			r->trailers = true;
			r->scan += lhdr;
			continue;
		}
		if (left < lhdr + size + 2)
			return QKM_EAGAIN;
		if (memcmp(line + lhdr + size, "\r\n", 2) != 0)
			return QKM_EFORMAT;
		int rc = qkm_buf_put(&r->chunks, line + lhdr, size);
		if (rc)
			return rc;
		r->scan += lhdr + size + 2;
	}
}

/* Looks at the len bytes received so far (eof: the peer has closed).
 * 0: the response is complete; QKM_EAGAIN: more is needed; QKM_EFORMAT,
 * QKM_ETOOBIG, QKM_ENOMEM. */
static int resp_feed(struct http_resp *r, const char *p, size_t len, bool eof)
{
	int rc;
	if (!r->head) {
		rc = resp_head(r, p, len);
		if (rc)
			return rc == QKM_EAGAIN && eof ? QKM_EFORMAT : rc;
		r->scan = r->head;
	}
	switch (r->kind) {
	case BODY_NONE:
		return 0;
	case BODY_LENGTH:
		if (len - r->head >= r->clen)
			return 0;
		return eof ? QKM_EFORMAT : QKM_EAGAIN;
	case BODY_CHUNKED:
		rc = resp_chunks(r, p, len);
		return rc == QKM_EAGAIN && eof ? QKM_EFORMAT : rc;
	case BODY_CLOSE:
		return eof ? 0 : QKM_EAGAIN;
	}
	return QKM_EFORMAT;
}

/* Copies the body of a complete response into a new NUL-terminated string. */
/* The body into a malloc'd string (*out), or appended to sout (a secure
 * buffer) when it is not NULL. */
static int resp_body(const struct http_resp *r, const char *p, size_t len, char **out,
		     struct qkm_buf *sout)
{
	const char *src = p + r->head;
	size_t n = 0;
	switch (r->kind) {
	case BODY_NONE:
		break;
	case BODY_LENGTH:
		n = r->clen;
		break;
	case BODY_CHUNKED:
		src = (const char *)r->chunks.p;
		n = r->chunks.len;
		break;
	case BODY_CLOSE:
		n = len - r->head;
		break;
	}
	if (sout)
		return qkm_buf_put(sout, src, n);
	char *s = malloc(n + 1);
	if (!s)
		return QKM_ENOMEM;
	if (n)
		memcpy(s, src, n);
	s[n] = 0;
	*out = s;
	return 0;
}

/* ---- client I/O --------------------------------------------------------- */

/* Waits until fd is ready for events or the deadline passes. 0 when ready
 * (errors and hang-ups included: the next call on fd reports them),
 * QKM_EAGAIN on time-out, QKM_EIO. */
static int wait_fd(int fd, short events, int64_t deadline)
{
	for (;;) {
		int64_t left = deadline - now_ms();
		if (left <= 0)
			return QKM_EAGAIN;
		struct pollfd pfd = { .fd = fd, .events = events };
		int n = poll(&pfd, 1, left > INT_MAX ? INT_MAX : (int)left);
		if (n > 0)
			return 0;
		if (n == 0)
			return QKM_EAGAIN;
		if (errno != EINTR)
			return QKM_EIO;
	}
}

/* After an SSL call returned n <= 0: waits for what it wants (then 0: call
 * it again) or maps the failure: QKM_ETLS for protocol and certificate
 * errors, QKM_EIO for socket errors, QKM_EAGAIN at the deadline. */
static int tls_wait(SSL *ssl, int n, int fd, int64_t deadline, const char *what)
{
	int e = SSL_get_error(ssl, n);
	int rc;
	switch (e) {
	case SSL_ERROR_WANT_READ:
	case SSL_ERROR_WANT_WRITE:
		rc = wait_fd(fd, e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT, deadline);
		if (rc == QKM_EAGAIN)
			log_warnx("%s: timed out", what);
		else if (rc)
			log_warn("%s: poll", what);
		return rc;
	case SSL_ERROR_SYSCALL:
		if (ERR_peek_error() != 0) {
			qkm_tls_log_errors(what);
			return QKM_ETLS;
		}
		if (errno)
			log_warn("%s", what);
		else
			log_warnx("%s: connection closed", what);
		return QKM_EIO;
	case SSL_ERROR_ZERO_RETURN:
		log_warnx("%s: connection closed", what);
		return QKM_EIO;
	default: {
		long v = SSL_get_verify_result(ssl);
		if (v != X509_V_OK)
			log_warnx("%s: server certificate: %s", what,
				  X509_verify_cert_error_string(v));
		qkm_tls_log_errors(what);
		return QKM_ETLS;
	}
	}
}

static int tcp_connect(const struct https_url *u, int64_t deadline, int *fd_out /* OUT */)
{
	int fd = socket(u->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return QKM_EIO;
	*fd_out = fd; /* the caller closes it, whatever happens next */
	if (connect(fd, (const struct sockaddr *)&u->ss, u->sslen) != 0) {
		if (errno != EINPROGRESS && errno != EINTR)
			return QKM_EIO;
		int rc = wait_fd(fd, POLLOUT, deadline);
		if (rc)
			return rc;
		int err = 0;
		socklen_t elen = sizeof(err);
		if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) != 0)
			return QKM_EIO;
		if (err) {
			errno = err;
			return QKM_EIO;
		}
	}
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	return 0;
}

/* Writing to a peer that has gone raises SIGPIPE, which would kill the
 * calling tool; a library must not change the process's signal handling,
 * so the request runs with SIGPIPE blocked in this thread and any SIGPIPE
 * it caused is taken off the pending set before the mask is restored. */
struct sigpipe_guard {
	sigset_t old;
	bool was_pending;
};

static void sigpipe_block(struct sigpipe_guard *g)
{
	sigset_t set, pending;
	sigemptyset(&set);
	sigaddset(&set, SIGPIPE);
	sigemptyset(&pending);
	sigpending(&pending);
	g->was_pending = sigismember(&pending, SIGPIPE) == 1;
	pthread_sigmask(SIG_BLOCK, &set, &g->old);
}

static void sigpipe_restore(struct sigpipe_guard *g)
{
	sigset_t set, pending;
	sigemptyset(&set);
	sigaddset(&set, SIGPIPE);
	sigemptyset(&pending);
	sigpending(&pending);
	if (!g->was_pending && sigismember(&pending, SIGPIPE) == 1) {
		const struct timespec zero = { 0, 0 };
		while (sigtimedwait(&set, NULL, &zero) < 0 && errno == EINTR)
			;
	}
	pthread_sigmask(SIG_SETMASK, &g->old, NULL);
}

/* Wipes a plain (not secure-heap) buffer before freeing it. */
static void buf_wipe_fini(struct qkm_buf *b)
{
	if (b->p)
		OPENSSL_cleanse(b->p, b->cap);
	qkm_buf_fini(b);
}

static int https_request(const char *url, const char *method, const char *body, const char *ca,
			 const char *cert, const char *key, int timeout_ms, int *status,
			 char **resp, struct qkm_buf *sresp)
{
	struct sigpipe_guard guard;
	struct https_url u;
	struct qkm_buf req, in;
	struct http_resp r;
	SSL_CTX *ctx = NULL;
	SSL *ssl = NULL;
	int fd = -1, rc, n;
	int64_t deadline = now_ms() + (timeout_ms > 0 ? timeout_ms : 0);
	char what[HTTP_HOST_MAX + 32] = "https";

	sigpipe_block(&guard);
	ERR_clear_error();
	qkm_buf_init(&req, HTTPS_REQ_BODY_MAX + HTTPS_PATH_MAX + 1024, false);
	/* A caller that wants the body in secure memory gets every copy of
	 * the response there. */
	qkm_buf_init(&in, HTTPS_RESP_MAX, sresp != NULL);
	memset(&r, 0, sizeof(r));
	qkm_buf_init(&r.chunks, HTTPS_RESP_MAX, sresp != NULL);
	if (status)
		*status = 0;
	if (resp)
		*resp = NULL;
	if (!url || !method || !ca || !cert || !key || !status || (!resp && !sresp) ||
	    (sresp && !sresp->secure) || timeout_ms <= 0 ||
	    (strcmp(method, "GET") != 0 && strcmp(method, "POST") != 0)) {
		rc = QKM_EINVAL;
		goto out;
	}
	rc = url_parse(url, &u);
	if (rc) {
		/* Shown with control bytes masked: one log line per event. */
		char shown[128];
		size_t i = 0;
		for (; i < sizeof(shown) - 1 && url[i]; i++)
			shown[i] = (char)(url[i] > 0x20 && url[i] < 0x7f ? url[i] : '?');
		shown[i] = 0;
		log_warnx("https: bad URL \"%s\" (want https://ADDRESS:PORT/path)", shown);
		goto out;
	}
	snprintf(what, sizeof(what), "https %s%s%s:%d", u.ss.ss_family == AF_INET6 ? "[" : "",
		 u.host, u.ss.ss_family == AF_INET6 ? "]" : "", u.port);
	rc = request_build(&req, method, &u, body);
	if (rc) {
		log_warnx("%s: request too large", what);
		goto out;
	}
	ctx = qkm_tls_ctx_new(ca, cert, key, false);
	if (!ctx) {
		rc = QKM_ETLS;
		goto out;
	}
	rc = tcp_connect(&u, deadline, &fd);
	if (rc) {
		if (rc == QKM_EAGAIN)
			log_warnx("%s: connect timed out", what);
		else
			log_warn("%s: connect", what);
		goto out;
	}
	ssl = SSL_new(ctx);
	if (!ssl || SSL_set_fd(ssl, fd) != 1) {
		qkm_tls_log_errors(what);
		rc = QKM_ETLS;
		goto out;
	}
	/* evhttp closes without close_notify. Ending early is still caught:
	 * a response is complete only by its own framing (resp_feed). */
	SSL_set_options(ssl, SSL_OP_IGNORE_UNEXPECTED_EOF);
	/* The server must be the host the URL names (SAN IP or DNS). */
	if (u.ip)
		n = X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), u.host);
	else
		n = SSL_set1_host(ssl, u.host) == 1 && SSL_set_tlsext_host_name(ssl, u.host) == 1;
	if (n != 1) {
		qkm_tls_log_errors(what);
		rc = QKM_ETLS;
		goto out;
	}
	while ((n = SSL_connect(ssl)) != 1) {
		rc = tls_wait(ssl, n, fd, deadline, what);
		if (rc)
			goto out;
	}

	for (size_t off = 0; off < req.len;) {
		size_t left = req.len - off;
		n = SSL_write(ssl, req.p + off, left > INT_MAX ? INT_MAX : (int)left);
		if (n > 0) {
			off += (size_t)n;
			continue;
		}
		rc = tls_wait(ssl, n, fd, deadline, what);
		if (rc == QKM_EIO) {
			/* The server may have answered early and closed (a 413, or
			 * an alert refusing our certificate): read what it said. */
			ERR_clear_error();
			break;
		}
		if (rc)
			goto out;
	}

	/* SSL_read is called again until it wants more from the socket, so
	 * records already decrypted (SSL_pending) are never left waiting on a
	 * poll that would not wake. */
	for (;;) {
		size_t room = in.max - in.len;
		if (room == 0) {
			log_warnx("%s: response larger than %u bytes", what, HTTPS_RESP_MAX);
			rc = QKM_ETOOBIG;
			goto out;
		}
		if (room > HTTPS_READ_CHUNK)
			room = HTTPS_READ_CHUNK;
		rc = qkm_buf_reserve(&in, room);
		if (rc)
			goto out;
		n = SSL_read(ssl, in.p + in.len, (int)room);
		if (n > 0) {
			in.len += (size_t)n;
			rc = resp_feed(&r, (const char *)in.p, in.len, false);
		} else if (SSL_get_error(ssl, n) == SSL_ERROR_ZERO_RETURN) {
			if (in.len == 0) {
				log_warnx("%s: closed without a response", what);
				rc = QKM_EIO;
				goto out;
			}
			rc = resp_feed(&r, (const char *)in.p, in.len, true);
		} else {
			rc = tls_wait(ssl, n, fd, deadline, what);
			if (rc)
				goto out;
			rc = QKM_EAGAIN;
		}
		if (rc != QKM_EAGAIN)
			break;
	}
	if (rc) {
		log_warnx("%s: bad response: %s", what, qkm_strerror(rc));
		goto out;
	}
	rc = resp_body(&r, (const char *)in.p, in.len, resp, sresp);
	if (rc)
		goto out;
	*status = r.status;
out:
	SSL_free(ssl);
	if (fd >= 0)
		close(fd);
	SSL_CTX_free(ctx);
	/* Responses may carry key material (ETSI 014); the copy handed to the
	 * caller is theirs to wipe, ours are wiped here. */
	buf_wipe_fini(&req);
	buf_wipe_fini(&in);
	buf_wipe_fini(&r.chunks);
	ERR_clear_error();
	sigpipe_restore(&guard);
	return rc;
}

int qkm_https_request(const char *url, const char *method, const char *body, const char *ca,
		      const char *cert, const char *key, int timeout_ms, int *status,
		      char **resp)
{
	return https_request(url, method, body, ca, cert, key, timeout_ms, status, resp, NULL);
}

int qkm_https_request_secure(const char *url, const char *method, const char *body,
			     const char *ca, const char *cert, const char *key, int timeout_ms,
			     int *status, struct qkm_buf *resp)
{
	return https_request(url, method, body, ca, cert, key, timeout_ms, status, NULL, resp);
}
