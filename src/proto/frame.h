/* frame.h - the frame codec for links between qkm daemons (Kq-1/Kq-2 from
 * the simulator, Kx between nodes). A frame is
 *   u32 length | u8 version | u16 type | u32 request id | TLV...
 * where length counts the bytes after itself and each TLV is
 *   u16 tag | u32 length | value.
 * Pure code over buffers: no sockets. docs/protocol.md is the specification. */
#ifndef QKM_PROTO_FRAME_H
#define QKM_PROTO_FRAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/err.h"
#include "core/id.h"

#define QKM_FRAME_VERSION 1 /* of the frame layout, in every frame header */
/* Of the messages, in HELLO: 2 since ACQ_PREPARE carries a Poly1305 TAG in
 * place of version 1's SHA-256 DIGEST (docs/protocol.md 4.2). */
#define QKM_PROTO_VERSION 2
#define QKM_FRAME_HDR 11                /* length + version + type + request id */
#define QKM_FRAME_MAX (20u << 20)       /* largest frame, header included */

enum qkm_msg {
	QKM_MSG_HELLO = 1,           /* both ways, first frame on every link */
	QKM_MSG_ERROR = 2,           /* reply to a request that failed */
	QKM_MSG_PING = 3,
	QKM_MSG_PONG = 4,
	/* Kq-1 / Kq-2: simulator (module) <-> node (KMA / KM control) */
	QKM_MSG_SUBSCRIBE = 10,      /* node -> sim: deliver this module's keys */
	QKM_MSG_KEYFILE = 11,        /* sim -> node: one QKD-key file */
	QKM_MSG_MODSTATUS = 12,      /* sim -> node: module/link status (Kq-2) */
	/* Kx KMA link: acquisition confirmation (R-ACQ-3) */
	QKM_MSG_ACQ_PREPARE = 20,    /* leader -> follower: IDs + digest */
	QKM_MSG_ACQ_PREPARED = 21,   /* follower -> leader: stored pending */
	QKM_MSG_ACQ_ABORT = 22,      /* either way: discard this batch */
	QKM_MSG_ACQ_COMMIT = 23,     /* leader -> follower: make it usable */
	QKM_MSG_ACQ_COMMITTED = 24,  /* follower -> leader */
	QKM_MSG_RECONCILE = 25,      /* follower -> leader: my pending batches */
	QKM_MSG_RECONCILE_ACK = 26,  /* leader -> follower: state of each */
	QKM_MSG_PAIRCHECK = 30,      /* digests of a pool's blocks */
	QKM_MSG_PAIRCHECK_ACK = 31,
	QKM_MSG_POOL_SYNC = 32,      /* either way: my direction's blocks, how much used */
	/* Kx KSA link: key supply (R-SUP-6) */
	QKM_MSG_SUPPLY = 40,         /* master's node -> slave's node: KSA keys */
	QKM_MSG_SUPPLY_ACK = 41,     /* stored (OK=1) or refused (OK=0, MESSAGE) */
	QKM_MSG_SUPPLY_CANCEL = 42,  /* master's node: these keys never reached the master */
	QKM_MSG_SUPPLY_CANCEL_ACK = 43,
	/* Kx: routing and key relay (R-REL-1..5) */
	QKM_MSG_ROUTED = 50,         /* a frame for a distant node, forwarded along PATH */
	QKM_MSG_RELAY = 51,          /* one hop of a relayed key file */
	QKM_MSG_RELAY_ACK = 52,      /* destination (or a failing hop) -> origin */
	QKM_MSG_RELAY_QUERY = 53,    /* origin -> destination: what of these batches? */
	QKM_MSG_RELAY_STATE = 54,    /* destination -> origin: the answer */
	QKM_MSG_XOR_NEXT = 55,       /* clause 9 modes: this hop's link key ranges, to the next node */
	QKM_MSG_XOR_SHARE = 56,      /* clause 9 modes: one XOR ciphertext, straight to the combiner */
	/* Ck/Mk: node <-> controller/manager (R-CTL-1..4, R-LC-1..3) */
	QKM_MSG_CTL_STATUS = 60,     /* node -> ctl: JSON status (links, pools, alarms, rates) */
	QKM_MSG_CTL_RECORDS_FROM = 61, /* ctl -> node: send life-cycle records after SEQ */
	QKM_MSG_CTL_RECORDS = 62,    /* node -> ctl: ENTRY... life-cycle records, in order */
	QKM_MSG_CTL_RECORDS_ACK = 63, /* ctl -> node: stored durably up to SEQ */
	QKM_MSG_CTL_ROUTES = 64,     /* ctl -> node: the node's relay routes (ENTRY: DST, PATH...) */
	QKM_MSG_CTL_SAES = 65,       /* ctl -> node: the access list (ENTRY: NAME, PEER, STATE) */
	QKM_MSG_CTL_DELETE = 66,     /* ctl -> node: delete these keys (compromise, R-LC-3) */
	QKM_MSG_CTL_DELETED = 67,    /* node -> ctl: what was deleted, what was already supplied */
	QKM_MSG_CTL_RELAY = 68,      /* ctl -> node: relay instructions (rerouting modes) */
};

enum qkm_tag {
	QKM_T_NAME = 1,        /* str: sender's entity name (HELLO) */
	QKM_T_VERSION = 2,     /* u32 */
	QKM_T_CODE = 3,        /* u32: negated QKM_E* */
	QKM_T_MESSAGE = 4,     /* str */
	QKM_T_LINK = 5,        /* str: link name */
	QKM_T_MODULE = 6,      /* str: QKD module ID */
	QKM_T_KEYFILE = 7,     /* bytes: binary key file (core/keyfile.h) */
	QKM_T_QBER = 8,        /* u32: parts per million */
	QKM_T_RATE = 9,        /* u64: secure key rate, bit/s */
	QKM_T_UP = 10,         /* u8: link up */
	QKM_T_ALARM = 11,      /* str */
	QKM_T_BATCH = 12,      /* 16 bytes: batch ID */
	QKM_T_QKD_ID = 13,     /* str: one QKD-key ID (repeated, in order) */
	QKM_T_DIGEST = 14,     /* 32 bytes */
	QKM_T_UNIT = 15,       /* u32: KMA-key unit length in bytes */
	QKM_T_STATE = 16,      /* u8 */
	QKM_T_COUNT = 17,      /* u32 */
	QKM_T_TIME = 18,       /* u64: ns since epoch */
	QKM_T_ROLE = 19,       /* str */
	QKM_T_PEER = 20,       /* str: a node name */
	QKM_T_ENTRY = 21,      /* bytes: a nested TLV list */
	QKM_T_FIRST = 22,      /* u32: first index */
	QKM_T_USED = 23,       /* u32: keys used from a block's front */
	QKM_T_MATCHES = 24,    /* u32: pair-check results */
	QKM_T_MISMATCHES = 25,
	QKM_T_INFLIGHT = 26,
	QKM_T_ONLY_SENDER = 27,
	QKM_T_ONLY_RECEIVER = 28,
	QKM_T_AGE = 29,        /* u8: 1 if a block was stored less than 2 s ago */
	QKM_T_KSA_ID = 30,     /* 16 bytes: a KSA-key ID (UUID) */
	QKM_T_MASTER = 31,     /* str: master SAE ID */
	QKM_T_SLAVE = 32,      /* str: slave SAE ID */
	QKM_T_ADDITIONAL = 33, /* str: one additional slave SAE ID (repeated) */
	QKM_T_SIZE = 34,       /* u32: key size in bits */
	QKM_T_LEVEL = 35,      /* u8: security level */
	QKM_T_RANGE = 36,      /* nested: BATCH, FIRST, OFF, LEN */
	QKM_T_OFF = 37,        /* u32: byte offset */
	QKM_T_LEN = 38,        /* u32: byte length */
	QKM_T_OK = 39,         /* u8: 1 = accepted */
	QKM_T_PUBKEY = 40,     /* 32 bytes: an X25519 public key */
	QKM_T_KEY = 41,        /* nested: one KSA key (KSA_ID, MASTER, SLAVE, ADDITIONAL..., SIZE, LEVEL, COMB?) */
	QKM_T_COMB = 42,       /* u8: key combination (1 = X25519) */
	QKM_T_SRC = 43,        /* str: origin node of a routed frame or a relay */
	QKM_T_DST = 44,        /* str: destination node */
	QKM_T_HOP = 45,        /* u32: index in PATH of the node receiving this frame */
	QKM_T_FRAME = 46,      /* bytes: a whole inner frame */
	QKM_T_METHOD = 47,     /* u8: relay encryption method (enum qkm_relay_method) */
	QKM_T_CT = 48,         /* bytes: ciphertext */
	QKM_T_TAG = 49,        /* 16 bytes: authentication tag (last TLV) */
	QKM_T_SEQ = 50,        /* u64: relay sequence number, per origin and destination; pair-check part */
	QKM_T_DATA = 51,       /* nested like RANGE: key data sent by reference (first hop) */
	QKM_T_PATH = 52,       /* str: one node of the route (repeated, in order) */
	QKM_T_JSON = 53,       /* bytes: a JSON document (control plane only) */
	QKM_T_EVENT = 54,      /* str: life-cycle event name */
	QKM_T_KIND = 55,       /* str: key kind of a life-cycle record */
	QKM_T_KEYID = 56,      /* str: key ID of a life-cycle record */
	QKM_T_DETAIL = 57,     /* str: detail of a life-cycle record */
	QKM_T_AFTER = 58,      /* nested: BATCH, FIRST: a pair-check part covers blocks after it */
	QKM_T_UPTO = 59,       /* nested: BATCH, FIRST: ... and up to it (absent: to the end) */
};

/* A parsed frame: points into the caller's bytes, valid while they are. */
struct qkm_frame {
	uint8_t version;
	uint16_t type;
	uint32_t req;
	const uint8_t *body;
	size_t body_len;
};

/* Length of the frame starting at p if at least 4 bytes are there: 0 when more
 * bytes are needed to know, QKM_ETOOBIG/QKM_EFORMAT when the length field is
 * out of range, else the whole frame's size (> 0). */
long qkm_frame_size(const uint8_t *p, size_t avail);

/* Parses one whole frame of exactly len bytes. Checks the version and that the
 * TLVs tile the body exactly. 0, QKM_ETRUNC, QKM_EFORMAT or QKM_EVERSION. */
int qkm_frame_parse(const uint8_t *p, size_t len, struct qkm_frame *f /* OUT */) QKM_MUST_CHECK;

/* Walks TLVs: *off starts at 0; returns 1 with tag/value set, 0 at the end,
 * QKM_EFORMAT if the list is malformed. */
int qkm_tlv_next(const uint8_t *body, size_t len, size_t *off, uint16_t *tag /* OUT */,
		 const uint8_t **val /* OUT */, uint32_t *vlen /* OUT */);
/* Checks that a TLV list (e.g. a nested QKM_T_ENTRY) is well formed. */
int qkm_tlv_check(const uint8_t *body, size_t len) QKM_MUST_CHECK;

/* Typed lookups of the first TLV with this tag in a TLV list. Each returns 0,
 * QKM_ENOTFOUND when absent, QKM_EFORMAT on a wrong length or bad value. */
int qkm_tlv_u8(const uint8_t *body, size_t len, uint16_t tag, uint8_t *v) QKM_MUST_CHECK;
int qkm_tlv_u32(const uint8_t *body, size_t len, uint16_t tag, uint32_t *v) QKM_MUST_CHECK;
int qkm_tlv_u64(const uint8_t *body, size_t len, uint16_t tag, uint64_t *v) QKM_MUST_CHECK;
int qkm_tlv_id(const uint8_t *body, size_t len, uint16_t tag, struct qkm_id *v) QKM_MUST_CHECK;
/* Copies a string value into out[outsz] NUL-terminated; QKM_EFORMAT if it does
 * not fit, contains NUL, or (name=true) is not a valid entity name. */
int qkm_tlv_str(const uint8_t *body, size_t len, uint16_t tag, char *out, size_t outsz,
		bool name) QKM_MUST_CHECK;
/* Points at the raw bytes of the first TLV with this tag. */
int qkm_tlv_bytes(const uint8_t *body, size_t len, uint16_t tag, const uint8_t **v,
		  uint32_t *vlen) QKM_MUST_CHECK;

/* Frame building. begin writes the header with a placeholder length, end
 * fills it in; puts append TLVs. Each returns 0 or the buffer's error. */
int qkm_frame_begin(struct qkm_buf *b, uint16_t type, uint32_t req, size_t *start /* OUT */) QKM_MUST_CHECK;
int qkm_frame_end(struct qkm_buf *b, size_t start) QKM_MUST_CHECK;
int qkm_put_tlv(struct qkm_buf *b, uint16_t tag, const void *p, size_t n) QKM_MUST_CHECK;
int qkm_put_u8(struct qkm_buf *b, uint16_t tag, uint8_t v) QKM_MUST_CHECK;
int qkm_put_u32(struct qkm_buf *b, uint16_t tag, uint32_t v) QKM_MUST_CHECK;
int qkm_put_u64(struct qkm_buf *b, uint16_t tag, uint64_t v) QKM_MUST_CHECK;
int qkm_put_str(struct qkm_buf *b, uint16_t tag, const char *s) QKM_MUST_CHECK;
int qkm_put_id(struct qkm_buf *b, uint16_t tag, const struct qkm_id *id) QKM_MUST_CHECK;
/* Opens a nested TLV (value filled by later puts), closed by qkm_put_close. */
int qkm_put_open(struct qkm_buf *b, uint16_t tag, size_t *start /* OUT */) QKM_MUST_CHECK;
int qkm_put_close(struct qkm_buf *b, size_t start) QKM_MUST_CHECK;

#endif
