/* link.c - framed TLS links on a libevent loop (see link.h). Owns the socket,
 * the SSL object and the secure in/out buffers of one connection; leaves
 * what frames mean to its owner. */
#include "net/link.h"
#include "core/log.h"
#include "core/secret.h"

#include <event2/listener.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define LINK_IN_MAX (QKM_FRAME_MAX + (1u << 20))
#define LINK_OUT_MAX (64u << 20)
#define LINK_READ_CHUNK (256u << 10)
#define LINK_TLS_READ (256u << 10)  /* TLS records read ahead (ciphertext) */
#define LINK_TLS_WRITE (256u << 10) /* TLS records gathered for one write() */
#define LINK_DISPATCH (1u << 20) /* deliver whole frames once this much is read */
#define LINK_HANDSHAKE_SECS 10
#define LINK_PING_SECS 5    /* an open link sends PING this often */
#define LINK_SILENT_SECS 20 /* and drops a peer silent this long */

enum link_state { L_CONNECTING, L_HANDSHAKE, L_HELLO, L_OPEN, L_DEAD };

struct qkm_link {
	struct event_base *base;
	SSL *ssl;
	int fd;
	struct event *ev_r, *ev_w, *ev_t;
	struct qkm_link_cbs cbs;
	void *arg;
	size_t read_turn; /* qkm_link_set_read_turn; 0: read all there is */
	enum link_state state;
	bool server;
	char self[QKM_NAME_MAX];
	char want_role[QKM_ROLE_MAX], want_name[QKM_NAME_MAX];
	char peer_role[QKM_ROLE_MAX], peer_name[QKM_NAME_MAX];
	struct qkm_buf in, out;
	size_t out_off;
	uint64_t last_rx_ns; /* monotonic time of the last bytes read */
	int depth;       /* > 0 while inside an owner's callback */
	bool read_paused; /* ev_r removed on the owner's request (flow control) */
	bool closing;    /* close requested; finish when depth returns to 0 */
	int close_err;
	char close_why[160];
};




static void link_flush(struct qkm_link *l);

/* The reason of the newest OpenSSL error ("decryption failed or bad record
 * mac", "sslv3 alert bad record mac", "unexpected eof while reading"), or ""
 * when the queue holds none. Leaves the queue as it is. */
static void link_tls_reason(char *out, size_t n)
{
	unsigned long oe = ERR_peek_last_error();
	const char *r = oe ? ERR_reason_error_string(oe) : NULL;
	if (oe && !r) {
		ERR_error_string_n(oe, out, n);
		return;
	}
	snprintf(out, n, "%s", r ? r : "");
}
static void link_on_read(evutil_socket_t fd, short what, void *arg);
static void link_on_write(evutil_socket_t fd, short what, void *arg);
static void link_on_timeout(evutil_socket_t fd, short what, void *arg);

int qkm_addr_parse(const char *s, struct sockaddr_storage *ss, int *sslen)
{
	memset(ss, 0, sizeof(*ss));
	*sslen = sizeof(*ss);
	return evutil_parse_sockaddr_port(s, (struct sockaddr *)ss, sslen) == 0 ? 0 : QKM_EINVAL;
}

static struct qkm_link *link_new(struct event_base *base, SSL_CTX *ctx, const char *self,
				 int fd, bool server, const struct qkm_link_cbs *cbs, void *arg)
{
	struct qkm_link *l = calloc(1, sizeof(*l));
	if (!l)
		return NULL;
	l->base = base;
	l->fd = fd;
	l->server = server;
	l->cbs = *cbs;
	l->arg = arg;
	snprintf(l->self, sizeof(l->self), "%s", self);
	qkm_buf_init(&l->in, LINK_IN_MAX, true);
	qkm_buf_init(&l->out, LINK_OUT_MAX, true);
	l->ssl = SSL_new(ctx);
	l->ev_r = event_new(base, fd, EV_READ | EV_PERSIST, link_on_read, l);
	l->ev_w = event_new(base, fd, EV_WRITE, link_on_write, l);
	l->ev_t = evtimer_new(base, link_on_timeout, l);
	if (!l->ssl || !l->ev_r || !l->ev_w || !l->ev_t || SSL_set_fd(l->ssl, fd) != 1) {
		qkm_link_free(l);
		return NULL;
	}
	/* Read what the socket holds, up to LINK_TLS_READ bytes of records,
	 * in one read(): not a header and a body per 16 KiB record. Write
	 * records through a buffer flushed at the end of each link_flush: one
	 * write() per LINK_TLS_WRITE bytes, not per record. Both hold
	 * ciphertext only. */
	SSL_set_read_ahead(l->ssl, 1);
	SSL_set_default_read_buffer_len(l->ssl, LINK_TLS_READ);
	BIO *sock = SSL_get_wbio(l->ssl), *wbuf = BIO_new(BIO_f_buffer());
	if (!wbuf || BIO_set_write_buffer_size(wbuf, LINK_TLS_WRITE) != 1 || !BIO_up_ref(sock)) {
		BIO_free(wbuf);
		qkm_link_free(l);
		return NULL;
	}
	SSL_set0_wbio(l->ssl, BIO_push(wbuf, sock));
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	evutil_make_socket_nonblocking(fd);
	struct timeval tv = {LINK_HANDSHAKE_SECS, 0};
	evtimer_add(l->ev_t, &tv);
	return l;
}

void qkm_link_free(struct qkm_link *l)
{
	if (!l)
		return;
	if (l->ev_r)
		event_free(l->ev_r);
	if (l->ev_w)
		event_free(l->ev_w);
	if (l->ev_t)
		event_free(l->ev_t);
	if (l->ssl)
		SSL_free(l->ssl);
	if (l->fd >= 0)
		close(l->fd);
	qkm_buf_fini(&l->in);
	qkm_buf_fini(&l->out);
	free(l);
}

/* Runs the owner's on_close once and frees the link. */
static void link_finish(struct qkm_link *l)
{
	l->state = L_DEAD;
	if (l->cbs.on_close)
		l->cbs.on_close(l, l->close_err, l->close_why, l->arg);
	qkm_link_free(l);
}

void qkm_link_close(struct qkm_link *l, int err, const char *why)
{
	if (l->closing || l->state == L_DEAD)
		return;
	l->closing = true;
	l->close_err = err;
	snprintf(l->close_why, sizeof(l->close_why), "%s", why ? why : qkm_strerror(err));
	if (l->depth == 0)
		link_finish(l);
}

/* Closes from inside the link's own event handlers; the close completes when
 * the handler returns (depth drops to 0), so the caller may still touch l. */
static void link_fail(struct qkm_link *l, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void link_fail(struct qkm_link *l, int err, const char *fmt, ...)
{
	char why[160];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	ERR_clear_error();
	qkm_link_close(l, err, why);
}

struct qkm_link *qkm_link_connect(struct event_base *base, SSL_CTX *ctx, const char *self,
				  const char *addr, const char *want_role,
				  const char *want_name, const struct qkm_link_cbs *cbs,
				  void *arg)
{
	struct sockaddr_storage ss;
	int sslen;
	if (qkm_addr_parse(addr, &ss, &sslen))
		return NULL;
	int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return NULL;
	struct qkm_link *l = link_new(base, ctx, self, fd, false, cbs, arg);
	if (!l) {
		close(fd);
		return NULL;
	}
	snprintf(l->want_role, sizeof(l->want_role), "%s", want_role);
	snprintf(l->want_name, sizeof(l->want_name), "%s", want_name);
	SSL_set_connect_state(l->ssl);
	/* Name the expected server for SNI; identity is checked on the subject. */
	SSL_set_tlsext_host_name(l->ssl, "localhost");
	l->state = L_CONNECTING;
	if (connect(fd, (struct sockaddr *)&ss, (socklen_t)sslen) < 0 && errno != EINPROGRESS) {
		qkm_link_free(l);
		return NULL;
	}
	event_add(l->ev_w, NULL);
	return l;
}

struct qkm_link *qkm_link_accept(struct event_base *base, SSL_CTX *ctx, const char *self,
				 int fd, const struct qkm_link_cbs *cbs, void *arg)
{
	struct qkm_link *l = link_new(base, ctx, self, fd, true, cbs, arg);
	if (!l) {
		close(fd);
		return NULL;
	}
	SSL_set_accept_state(l->ssl);
	l->state = L_HANDSHAKE;
	event_add(l->ev_r, NULL);
	return l;
}

static int link_queue_hello(struct qkm_link *l)
{
	size_t start;
	int rc = qkm_frame_begin(&l->out, QKM_MSG_HELLO, 0, &start);
	if (!rc)
		rc = qkm_put_str(&l->out, QKM_T_NAME, l->self);
	if (!rc)
		rc = qkm_put_u32(&l->out, QKM_T_VERSION, QKM_PROTO_VERSION);
	if (!rc)
		rc = qkm_frame_end(&l->out, start);
	return rc;
}

/* Queues a body-less frame (PING, PONG) behind whatever is queued. */
static void link_queue_simple(struct qkm_link *l, uint16_t type, uint32_t req)
{
	size_t start;
	if (qkm_frame_begin(&l->out, type, req, &start) || qkm_frame_end(&l->out, start)) {
		link_fail(l, QKM_ENOMEM, "cannot queue keepalive");
		return;
	}
	event_add(l->ev_w, NULL);
}

static void link_handshake(struct qkm_link *l)
{
	/* SSL_get_error reads the thread's error queue: an error another
	 * connection left there (an HTTP client gone without close_notify)
	 * would fail this link. Each TLS call starts with it empty. */
	ERR_clear_error();
	int rc = SSL_do_handshake(l->ssl);
	if (rc != 1) {
		int e = SSL_get_error(l->ssl, rc);
		if (e == SSL_ERROR_WANT_READ)
			return;
		if (e == SSL_ERROR_WANT_WRITE) {
			event_add(l->ev_w, NULL);
			return;
		}
		unsigned long oe = ERR_peek_last_error();
		char msg[128] = "connection closed";
		if (oe)
			ERR_error_string_n(oe, msg, sizeof(msg));
		link_fail(l, QKM_ETLS, "TLS handshake failed: %s", msg);
		return;
	}
	if (qkm_tls_peer_identity(l->ssl, l->peer_role, l->peer_name)) {
		link_fail(l, QKM_EPERM, "peer certificate is not a qkm identity");
		return;
	}
	if (!l->server && (strcmp(l->peer_role, l->want_role) != 0 ||
			   strcmp(l->peer_name, l->want_name) != 0)) {
		link_fail(l, QKM_EPERM, "expected %s '%s', peer is %s '%s'", l->want_role,
			  l->want_name, l->peer_role, l->peer_name);
		return;
	}
	l->state = L_HELLO;
	l->last_rx_ns = qkm_mono_ns();
	if (link_queue_hello(l)) {
		link_fail(l, QKM_ENOMEM, "cannot queue HELLO");
		return;
	}
	link_flush(l);
}

/* HELLO must name the certificate's entity and speak our version. */
static int link_on_hello(struct qkm_link *l, const struct qkm_frame *f)
{
	char name[QKM_NAME_MAX];
	uint32_t ver;
	if (qkm_tlv_str(f->body, f->body_len, QKM_T_NAME, name, sizeof(name), true) ||
	    qkm_tlv_u32(f->body, f->body_len, QKM_T_VERSION, &ver)) {
		link_fail(l, QKM_EPEER, "malformed HELLO");
		return -1;
	}
	if (ver != QKM_PROTO_VERSION) {
		link_fail(l, QKM_EVERSION, "peer speaks protocol version %u, we speak %u", ver,
			  QKM_PROTO_VERSION);
		return -1;
	}
	if (strcmp(name, l->peer_name) != 0) {
		link_fail(l, QKM_EPERM, "HELLO names '%s' but certificate is '%s'", name,
			  l->peer_name);
		return -1;
	}
	l->state = L_OPEN;
	/* From now on the timer is the keepalive: a peer that vanished
	 * without a FIN (a cut cable, a frozen host) is noticed. */
	struct timeval ping = {LINK_PING_SECS, 0};
	evtimer_add(l->ev_t, &ping);
	if (l->cbs.on_open) {
		l->depth++;
		l->cbs.on_open(l, l->arg);
		l->depth--;
	}
	return l->closing ? -1 : 0;
}

/* Delivers every whole frame in the input buffer. Returns -1 once closing. */
static int link_dispatch(struct qkm_link *l)
{
	size_t off = 0;
	int ret = 0;
	while (!l->closing) {
		long size = qkm_frame_size(l->in.p + off, l->in.len - off);
		if (size < 0) {
			link_fail(l, QKM_EPEER, "bad frame length from peer");
			ret = -1;
			break;
		}
		if (size == 0 || (size_t)size > l->in.len - off)
			break;
		struct qkm_frame f;
		int rc = qkm_frame_parse(l->in.p + off, (size_t)size, &f);
		if (rc) {
			link_fail(l, QKM_EPEER, "malformed frame from peer: %s", qkm_strerror(rc));
			ret = -1;
			break;
		}
		off += (size_t)size;
		if (f.type == QKM_MSG_HELLO) {
			if (l->state != L_HELLO) {
				link_fail(l, QKM_EPEER, "unexpected HELLO");
				ret = -1;
				break;
			}
			if (link_on_hello(l, &f)) {
				ret = -1;
				break;
			}
			continue;
		}
		if (l->state != L_OPEN) {
			link_fail(l, QKM_EPEER, "frame before HELLO");
			ret = -1;
			break;
		}
		if (f.type == QKM_MSG_PING) {
			link_queue_simple(l, QKM_MSG_PONG, f.req);
			continue;
		}
		if (f.type == QKM_MSG_PONG)
			continue;
		l->depth++;
		l->cbs.on_frame(l, &f, l->arg);
		l->depth--;
	}
	if (l->closing)
		return -1;
	qkm_buf_consume(&l->in, off);
	return ret;
}

static void link_on_read_body(struct qkm_link *l, evutil_socket_t fd)
{
	if (l->state == L_HANDSHAKE) {
		link_handshake(l);
		if (l->state == L_HANDSHAKE || l->closing)
			return;
	}
	size_t got = 0;
	for (;;) {
		if (l->read_paused)
			break; /* an owner asked to stop while frames were delivered */
		if (l->read_turn && got >= l->read_turn) {
			/* The loop runs between turns (the owner's commit, writes).
			 * The socket wakes us for what it holds; TLS's own buffer
			 * does not, nor for the records it read ahead. */
			if (SSL_has_pending(l->ssl))
				event_active(l->ev_r, EV_READ, 0);
			break;
		}
		if (qkm_buf_reserve(&l->in, LINK_READ_CHUNK)) {
			link_fail(l, QKM_ETOOBIG, "input buffer full");
			return;
		}
		ERR_clear_error(); /* as in link_handshake */
		int n = SSL_read(l->ssl, l->in.p + l->in.len, LINK_READ_CHUNK);
		if (n > 0) {
			l->in.len += (size_t)n;
			got += (size_t)n;
			l->last_rx_ns = qkm_mono_ns();
			/* Deliver every few chunks rather than only near the bound:
			 * an owner that pauses reading then stops the loop within
			 * LINK_DISPATCH bytes, not LINK_IN_MAX. */
			if (l->in.len >= LINK_DISPATCH && link_dispatch(l))
				return;
			continue;
		}
		int e = SSL_get_error(l->ssl, n);
		if (e == SSL_ERROR_WANT_READ)
			break;
		if (e == SSL_ERROR_WANT_WRITE) {
			event_add(l->ev_w, NULL);
			break;
		}
		/* Why, taken before the frames already read are delivered (their
		 * handlers may touch errno and the OpenSSL error queue). */
		int err_no = errno;
		char why[128];
		link_tls_reason(why, sizeof(why));
		if (link_dispatch(l))
			return;
		if (e == SSL_ERROR_ZERO_RETURN)
			link_fail(l, QKM_EIO, "peer closed the connection");
		else if (e == SSL_ERROR_SYSCALL && !why[0] && (n == 0 || !err_no))
			link_fail(l, QKM_EIO, "peer closed the connection (no close_notify)");
		else if (e == SSL_ERROR_SYSCALL && !why[0])
			link_fail(l, QKM_EIO, "connection lost: %s", strerror(err_no));
		else
			link_fail(l, QKM_ETLS, "TLS read failed: %s", why[0] ? why : "unknown error");
		return;
	}
	link_dispatch(l);
}

static void link_write_failed(struct qkm_link *l, int e)
{
	int err_no = errno;
	char why[128];
	link_tls_reason(why, sizeof(why));
	link_fail(l, QKM_EIO, "write to peer failed: %s",
		  why[0] ? why : e == SSL_ERROR_SYSCALL && err_no ? strerror(err_no) : "connection closed");
}

static void link_flush(struct qkm_link *l)
{
	while (l->out_off < l->out.len) {
		size_t n = l->out.len - l->out_off;
		if (n > (1u << 20))
			n = 1u << 20;
		ERR_clear_error(); /* as in link_handshake */
		int w = SSL_write(l->ssl, l->out.p + l->out_off, (int)n);
		if (w > 0) {
			l->out_off += (size_t)w;
			continue;
		}
		int e = SSL_get_error(l->ssl, w);
		if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) {
			event_add(l->ev_w, NULL);
			return;
		}
		link_write_failed(l, e);
		return;
	}
	qkm_buf_reset(&l->out);
	l->out_off = 0;
	/* What the buffer holds goes now; the rest when the socket takes it. */
	ERR_clear_error();
	if (BIO_flush(SSL_get_wbio(l->ssl)) <= 0) {
		if (BIO_should_retry(SSL_get_wbio(l->ssl)))
			event_add(l->ev_w, NULL);
		else
			link_write_failed(l, SSL_ERROR_SYSCALL);
	}
}

static void link_on_write_body(struct qkm_link *l, evutil_socket_t fd)
{
	if (l->state == L_CONNECTING) {
		int err = 0;
		socklen_t len = sizeof(err);
		if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0 || err) {
			link_fail(l, QKM_EIO, "connect to %s '%s' failed: %s", l->want_role,
				  l->want_name, strerror(err ? err : errno));
			return;
		}
		l->state = L_HANDSHAKE;
		event_add(l->ev_r, NULL);
	}
	if (l->state == L_HANDSHAKE) {
		link_handshake(l);
		return;
	}
	link_flush(l);
}

static void link_on_timeout_body(struct qkm_link *l, evutil_socket_t fd)
{
	if (l->state != L_OPEN) {
		link_fail(l, QKM_ETLS, "no authenticated HELLO within %d s", LINK_HANDSHAKE_SECS);
		return;
	}
	if (qkm_mono_ns() - l->last_rx_ns > (uint64_t)LINK_SILENT_SECS * 1000000000u) {
		link_fail(l, QKM_EIO, "peer silent for %d s", LINK_SILENT_SECS);
		return;
	}
	link_queue_simple(l, QKM_MSG_PING, 0);
	struct timeval ping = {LINK_PING_SECS, 0};
	evtimer_add(l->ev_t, &ping);
}

struct put_arg {
	const uint8_t *frame;
	size_t len;
};

static int put_frame(struct qkm_buf *out, void *arg)
{
	const struct put_arg *a = arg;
	return qkm_buf_put(out, a->frame, a->len);
}

int qkm_link_send(struct qkm_link *l, const uint8_t *frame, size_t len)
{
	struct put_arg a = {frame, len};
	return qkm_link_send_built(l, put_frame, &a);
}

int qkm_link_send_built(struct qkm_link *l, qkm_link_build_fn build, void *arg)
{
	if (l->state != L_OPEN || l->closing)
		return QKM_ESTATE;
	/* Compact before growing so a busy link does not creep towards its max. */
	if (l->out_off && l->out_off >= l->out.len / 2) {
		qkm_buf_consume(&l->out, l->out_off);
		l->out_off = 0;
	}
	size_t len0 = l->out.len;
	int rc = build(&l->out, arg);
	if (rc) {
		/* Nothing of a frame half built is sent, or kept. */
		if (l->out.len > len0)
			qkm_cleanse(l->out.p + len0, l->out.len - len0);
		l->out.len = len0;
		return rc;
	}
	/* Written from the write event, never inline: a failing write must not
	 * free the link under the caller's feet. */
	event_add(l->ev_w, NULL);
	return 0;
}

size_t qkm_link_pending(const struct qkm_link *l) { return l->out.len - l->out_off; }

void qkm_link_pause_read(struct qkm_link *l)
{
	if (l->read_paused || l->state != L_OPEN)
		return;
	l->read_paused = true;
	event_del(l->ev_r);
}

void qkm_link_resume_read(struct qkm_link *l)
{
	if (!l->read_paused)
		return;
	l->read_paused = false;
	if (l->state != L_OPEN || l->closing)
		return;
	event_add(l->ev_r, NULL);
	/* TLS may hold decrypted bytes the socket will not signal again. */
	event_active(l->ev_r, EV_READ, 0);
}

bool qkm_link_read_paused(const struct qkm_link *l) { return l->read_paused; }

void qkm_link_send_error(struct qkm_link *l, uint32_t req, int err, const char *msg)
{
	struct qkm_buf b;
	size_t start;
	qkm_buf_init(&b, 4096, false);
	if (!qkm_frame_begin(&b, QKM_MSG_ERROR, req, &start) &&
	    !qkm_put_u32(&b, QKM_T_CODE, (uint32_t)-err) && !qkm_put_str(&b, QKM_T_MESSAGE, msg) &&
	    !qkm_frame_end(&b, start) && qkm_link_send(l, b.p, b.len))
		log_debug("link %s: could not queue error reply", l->peer_name);
	qkm_buf_fini(&b);
}

bool qkm_link_is_open(const struct qkm_link *l) { return l->state == L_OPEN && !l->closing; }

int qkm_link_export(struct qkm_link *l, const char *label, const uint8_t *ctx, size_t ctx_len,
		    uint8_t *out, size_t n)
{
	if (!qkm_link_is_open(l))
		return QKM_ESTATE;
	return SSL_export_keying_material(l->ssl, out, n, label, strlen(label), ctx, ctx_len, 1) == 1
		       ? 0
		       : QKM_ECRYPTO;
}
const char *qkm_link_peer_name(const struct qkm_link *l) { return l->peer_name; }
const char *qkm_link_peer_role(const struct qkm_link *l) { return l->peer_role; }
void qkm_link_set_cbs(struct qkm_link *l, const struct qkm_link_cbs *cbs, void *arg)
{
	l->cbs = *cbs;
	l->arg = arg;
}

void qkm_link_set_read_turn(struct qkm_link *l, size_t bytes) { l->read_turn = bytes; }

static void link_on_read(evutil_socket_t fd, short what, void *arg)
{
	struct qkm_link *l = arg;
	l->depth++;
	link_on_read_body(l, fd);
	if (--l->depth == 0 && l->closing && l->state != L_DEAD)
		link_finish(l);
}

static void link_on_write(evutil_socket_t fd, short what, void *arg)
{
	struct qkm_link *l = arg;
	l->depth++;
	link_on_write_body(l, fd);
	if (--l->depth == 0 && l->closing && l->state != L_DEAD)
		link_finish(l);
}

static void link_on_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct qkm_link *l = arg;
	l->depth++;
	link_on_timeout_body(l, fd);
	if (--l->depth == 0 && l->closing && l->state != L_DEAD)
		link_finish(l);
}

struct qkm_listener {
	struct evconnlistener *ev;
	qkm_listener_fn fn;
	void *arg;
};

static void listener_on_accept(struct evconnlistener *ev, evutil_socket_t fd,
			       struct sockaddr *sa, int salen, void *arg)
{
	struct qkm_listener *li = arg;
	li->fn(fd, li->arg);
}

struct qkm_listener *qkm_listener_new(struct event_base *base, const char *addr,
				      qkm_listener_fn fn, void *arg)
{
	struct sockaddr_storage ss;
	int sslen;
	if (qkm_addr_parse(addr, &ss, &sslen)) {
		log_warnx("bad listen address '%s' (want host:port)", addr);
		return NULL;
	}
	struct qkm_listener *li = calloc(1, sizeof(*li));
	if (!li)
		return NULL;
	li->fn = fn;
	li->arg = arg;
	li->ev = evconnlistener_new_bind(base, listener_on_accept, li,
					 LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE |
						 LEV_OPT_CLOSE_ON_EXEC,
					 512, (struct sockaddr *)&ss, sslen);
	if (!li->ev) {
		log_warn("cannot listen on %s", addr);
		free(li);
		return NULL;
	}
	return li;
}

void qkm_listener_free(struct qkm_listener *li)
{
	if (!li)
		return;
	evconnlistener_free(li->ev);
	free(li);
}
