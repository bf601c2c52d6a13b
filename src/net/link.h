/* link.h - one long-lived, mutually authenticated TLS 1.3 connection that
 * carries frames (proto/frame.h) between two qkm daemons, on a libevent
 * loop. After the handshake both ends send HELLO (name, protocol version);
 * the link opens only when the peer's HELLO names the same entity as its
 * verified certificate and, for dialled links, the entity we meant to reach.
 * No frame other than HELLO is delivered or may be sent before that.
 * Frames are read into and written from secure-heap buffers. */
#ifndef QKM_NET_LINK_H
#define QKM_NET_LINK_H

#include <event2/event.h>
#include <openssl/ssl.h>
#include <stdbool.h>

#include "core/buf.h"
#include "core/err.h"
#include "net/tls.h"
#include "proto/frame.h"

struct qkm_link;

struct qkm_link_cbs {
	/* The peer proved its identity; frames may flow. */
	void (*on_open)(struct qkm_link *l, void *arg);
	/* One whole, well-formed frame (not HELLO). May call qkm_link_close(). */
	void (*on_frame)(struct qkm_link *l, const struct qkm_frame *f, void *arg);
	/* The link is gone (err: why). Called once, after on_open or instead of
	 * it; the link is freed when this returns. Not called for
	 * qkm_link_free(). */
	void (*on_close)(struct qkm_link *l, int err, const char *why, void *arg);
};

/* Dials addr ("host:port", "[v6]:port") and expects a peer with this role
 * and name. NULL if the connection could not even be started. */
struct qkm_link *qkm_link_connect(struct event_base *base, SSL_CTX *ctx, const char *self,
				  const char *addr, const char *want_role,
				  const char *want_name, const struct qkm_link_cbs *cbs,
				  void *arg);
/* Takes an accepted socket (owned from now on) and runs the server side.
 * The peer's identity is known at on_open (qkm_link_peer_*). */
struct qkm_link *qkm_link_accept(struct event_base *base, SSL_CTX *ctx, const char *self,
				 int fd, const struct qkm_link_cbs *cbs, void *arg);

/* Queues one whole frame (as built by qkm_frame_begin/end) for sending.
 * QKM_ESTATE before open or after close; QKM_ETOOBIG if the output queue is
 * over its bound (the peer is not reading). */
int qkm_link_send(struct qkm_link *l, const uint8_t *frame, size_t len) QKM_MUST_CHECK;
/* Same, for a frame built straight into the send queue, without the copy
 * qkm_link_send makes: build appends one whole frame to out and returns 0;
 * or it returns an error, and then whatever it appended is wiped and
 * dropped. The queue is a secure buffer: key bytes may go in. */
typedef int (*qkm_link_build_fn)(struct qkm_buf *out, void *arg);
int qkm_link_send_built(struct qkm_link *l, qkm_link_build_fn build, void *arg) QKM_MUST_CHECK;
/* Bytes queued and not yet written. */
size_t qkm_link_pending(const struct qkm_link *l);
/* Flow control: pause_read stops reading the socket (frames already read
 * are still delivered), so the peer's TCP send window fills and its writes
 * back up; resume_read reads again, delivering what TLS had buffered. Both
 * are no-ops when already in that state; only an open link is read. */
void qkm_link_pause_read(struct qkm_link *l);
void qkm_link_resume_read(struct qkm_link *l);
bool qkm_link_read_paused(const struct qkm_link *l);
/* Builds and sends an ERROR frame answering request req. */
void qkm_link_send_error(struct qkm_link *l, uint32_t req, int err, const char *msg);

/* Closes with on_close(err, why) after the current callback returns. */
void qkm_link_close(struct qkm_link *l, int err, const char *why);
/* Frees without calling on_close; NULL is a no-op. */
void qkm_link_free(struct qkm_link *l);

bool qkm_link_is_open(const struct qkm_link *l);
/* Keying material exported from the link's TLS 1.3 session (RFC 8446 7.5)
 * under label and context: the same n bytes at both ends of this
 * connection, different for every label and context, and unknown to
 * anyone who does not hold the session's secrets. QKM_ESTATE unless the
 * link is open; QKM_ECRYPTO. */
int qkm_link_export(struct qkm_link *l, const char *label, const uint8_t *ctx, size_t ctx_len,
		    uint8_t *out, size_t n) QKM_MUST_CHECK;
const char *qkm_link_peer_name(const struct qkm_link *l);
const char *qkm_link_peer_role(const struct qkm_link *l);
/* Re-targets the link's callbacks (e.g. once an accepted link identified
 * itself and belongs to a different owner). */
void qkm_link_set_cbs(struct qkm_link *l, const struct qkm_link_cbs *cbs, void *arg);

/* A read callback hands over at most about bytes (0, the default: all the
 * socket holds) before the loop runs other events: the owner's end of a
 * read (a group commit) and the writes it makes. A node relaying keys
 * passes on what it handled while more arrives, instead of all at once
 * after it read everything there was. */
void qkm_link_set_read_turn(struct qkm_link *l, size_t bytes);

/* Parses "host:port" or "[v6]:port" into a sockaddr. 0 or QKM_EINVAL. */
struct sockaddr_storage;
int qkm_addr_parse(const char *s, struct sockaddr_storage *ss, int *sslen) QKM_MUST_CHECK;

/* A TCP listener on addr; fn gets each accepted socket (owned by fn). NULL
 * on error (logged with the address). */
struct qkm_listener;
typedef void (*qkm_listener_fn)(int fd, void *arg);
struct qkm_listener *qkm_listener_new(struct event_base *base, const char *addr,
				      qkm_listener_fn fn, void *arg);
void qkm_listener_free(struct qkm_listener *li);

#endif
