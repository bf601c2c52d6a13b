/* relay.h - key relay between KMAs (Y.3803 8.2.3): end-to-end key pools
 * between nodes with no QKD link, filled hop by hop along a route. On each
 * hop the whole relayed key file (Table 1 item 3: data + metadata, relay
 * hops included) is encrypted by XOR with the hop's link key (OTP) and
 * authenticated with Poly1305 under a one-time key from the same link key
 * (Wegman-Carter), or, where policy allows and a hop lacks link key, with
 * AES-256-GCM keyed from 32 bytes of it (R-REL-1, R-REL-2, R-REL-4,
 * R-REL-5). Every node on the route appends its hop to the metadata; the
 * destination stores the key READY and acknowledges; the origin holds its
 * copy PENDING until then and asks the destination when an answer is late,
 * so a key ends up stored at both ends or at neither. Link key is consumed
 * durably before a frame leaves and is never used twice.
 * A state machine over frames and the store, like acq.h: its owner feeds
 * it frames and a timer and carries out the sends. docs/protocol.md
 * ("relay") is the specification. */
#ifndef QKM_KMA_RELAY_H
#define QKM_KMA_RELAY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/config.h"
#include "core/err.h"
#include "proto/frame.h"
#include "store/store.h"

struct qkm_relay;

struct qkm_relay_ops {
	/* Sends a frame to a neighbour over its Kx link; nonzero if it cannot. */
	int (*send)(const char *neighbour, const uint8_t *frame, size_t len, void *arg);
	/* Sends a frame to a node that is not a neighbour over a direct KMA
	 * link, never through other nodes (clause 9 modes); nonzero if it
	 * cannot. */
	int (*send_direct)(const char *node, const uint8_t *frame, size_t len, void *arg);
	/* Sends a frame to any node, end to end (routed); nonzero if it cannot. */
	int (*send_to)(const char *node, const uint8_t *frame, size_t len, void *arg);
	/* True if the link pool shared with a neighbour is usable now. */
	bool (*link_ready)(const char *neighbour, void *arg);
	/* The end-to-end pool with node gained keys (supply may go on). */
	void (*on_pool)(const char *node, void *arg);
	void *arg;
};

struct qkm_relay *qkm_relay_new(const struct qkm_node_cfg *cfg, struct qkm_store *st,
				const struct qkm_relay_ops *ops);
void qkm_relay_free(struct qkm_relay *r);

/* The route to node, or NULL when node is a neighbour or unknown. */
const struct qkm_node_route *qkm_relay_route(const struct qkm_relay *r, const char *node);
/* Replaces the route to rt->to (a node routed to since start) with rt,
 * which must start here, go first to a neighbour and end at rt->to. Relays
 * in flight keep the path they left with; new ones take rt at once (the
 * back-off of the old way is dropped). 1 if the route changed, 0 if it is
 * the same, QKM_ENOTFOUND for an unknown destination, QKM_EINVAL for a bad
 * path. */
int qkm_relay_set_route(struct qkm_relay *r, const struct qkm_node_route *rt) QKM_MUST_CHECK;
/* The controller's relay plan for node (R-CTL-4): QKM_RELAY_RATE_AUTO
 * relays ahead of demand by the node's thresholds (low_bytes/high_bytes);
 * QKM_RELAY_RATE_NONE only on demand and as pushed; any other rate relays
 * rate bytes/s, whatever the thresholds, until the pool holds four times
 * high_bytes. QKM_ENOTFOUND for an unknown destination. */
#define QKM_RELAY_RATE_AUTO 0
#define QKM_RELAY_RATE_NONE UINT64_MAX
int qkm_relay_set_rate(struct qkm_relay *r, const char *node, uint64_t rate,
		       uint64_t now_ns) QKM_MUST_CHECK;
/* Relays bytes to node now (in batch_bytes relays, a window at a time),
 * whatever the plan or the thresholds (the scheduled mode's entries). */
int qkm_relay_push(struct qkm_relay *r, const char *node, uint64_t bytes) QKM_MUST_CHECK;
/* True if an end-to-end pool with node can be used: a route exists and
 * its first hop's link pool is usable. */
bool qkm_relay_ready(const struct qkm_relay *r, const char *node);

/* QKM_MSG_RELAY from neighbour `from`. 0 when handled (a relay that fails
 * its checks is discarded, alarmed and recorded, and still returns 0; one
 * whose next hop is short of link key waits for it, up to 10 s, and so do
 * later relay frames from `from`); QKM_EPEER when the frame breaks the
 * protocol. */
int qkm_relay_on_hop(struct qkm_relay *r, const char *from, const struct qkm_frame *f,
		     uint64_t now_ns) QKM_MUST_CHECK;
/* End-to-end control frames (RELAY_ACK, RELAY_QUERY, RELAY_STATE) from
 * node `origin`, and the clause 9 frames (XOR_NEXT from a neighbour,
 * XOR_SHARE over a direct KMA link). QKM_EPEER when malformed. */
int qkm_relay_on_frame(struct qkm_relay *r, const char *origin, const struct qkm_frame *f,
		       uint64_t now_ns) QKM_MUST_CHECK;

/* Whether relay frames from neighbour `from` wait here for link key on
 * their next hop. */
bool qkm_relay_holds(const struct qkm_relay *r, const char *from);
/* Before a frame from neighbour `from` that may name link key beyond what
 * those waiting frames name (a KSA frame; a POOL_SYNC put off too long):
 * each of them goes on now, or is refused. */
void qkm_relay_release(struct qkm_relay *r, const char *from, uint64_t now_ns);

/* Group commit. Between begin and end (the frames of one read, one timer
 * round), every frame's work goes into one store transaction, and what it
 * sends is held back until that transaction is committed (by end, or as
 * soon as anything else uses a transaction of the store). */
void qkm_relay_begin_batch(struct qkm_relay *r);
void qkm_relay_end_batch(struct qkm_relay *r);

/* Timer: relays ahead of demand (pools below low_bytes are filled to
 * high_bytes) and asks about late acknowledgements. */
void qkm_relay_tick(struct qkm_relay *r, uint64_t now_ns);

/* On demand: relay at least bytes more toward node now. 0 if relays are
 * on their way (in flight already or started); QKM_ESTATE if node has no
 * route or its first hop is down; QKM_ENOKEY if the first hop lacks key,
 * or relays toward node failed lately and wait out their back-off (1 s,
 * doubling to 30 s; qkm_relay_why says why they failed). */
int qkm_relay_want(struct qkm_relay *r, const char *node, size_t bytes, uint64_t now_ns) QKM_MUST_CHECK;

/* Why relays toward node last failed, naming the hop ("" if they did not). */
const char *qkm_relay_why(const struct qkm_relay *r, const char *node);

struct qkm_relay_stats {
	uint64_t started;           /* relays sent, as origin */
	uint64_t confirmed;         /* relays the destination confirmed, as origin */
	uint64_t forwarded;         /* relays passed on (or shares XORed), as a relay node */
	uint64_t received;          /* relays stored, as destination */
	uint64_t relayed_bytes;     /* end-to-end key bytes confirmed, as origin */
	uint64_t received_bytes;    /* end-to-end key bytes stored, as destination */
	uint64_t forwarded_bytes;   /* key bytes passed on, as a relay node */
	uint64_t link_bytes;        /* link key bytes spent on relay (pads, MAC keys) */
	uint64_t failed;            /* relays discarded (MAC, sequence, starved hop) */
	uint64_t in_flight;         /* relays sent, not yet acknowledged */
	uint64_t held;              /* relays that waited here for next-hop link key */
};
void qkm_relay_stats(const struct qkm_relay *r, struct qkm_relay_stats *out /* OUT */);

#endif
