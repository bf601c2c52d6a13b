/* keyfile.h - the key file of Y.3803 clause 10: key data plus Table 1
 * metadata for the four kinds of key (QKD-key, KMA-key, relayed KMA-key,
 * KSA-key). One versioned binary encoding (here) and a JSON view
 * (proto/keyfile_json.h). Decoding is strict: every length is checked, an
 * unknown version, kind or field tag is refused, mandatory fields must be
 * present, and a failed decode leaves nothing allocated. docs/key-file.md
 * is the byte-level specification. R-FMT-1, R-FMT-2. */
#ifndef QKM_CORE_KEYFILE_H
#define QKM_CORE_KEYFILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/err.h"
#include "core/id.h"
#include "core/secret.h"

#define QKM_KEYFILE_VERSION 1
#define QKM_KEYFILE_MAX_HOPS 32
#define QKM_KEYFILE_MAX_DATA (16u << 20) /* 16 MiB of key data per file */

enum qkm_keyfile_kind {
	QKM_KF_QKD = 1,     /* Table 1 item (1) */
	QKM_KF_KMA = 2,     /* item (2) */
	QKM_KF_RELAYED = 3, /* item (3): KMA-key metadata + relay hops */
	QKM_KF_KSA = 4,     /* item (4) */
};

enum qkm_key_type { QKM_KT_NONE = 0, QKM_KT_ENC = 1, QKM_KT_DEC = 2 };
enum qkm_relay_method { QKM_RM_NONE = 0, QKM_RM_OTP = 1, QKM_RM_AES256GCM = 2 };

/* Optional fields are "absent" when zero / empty string / has_hash false. */
struct qkm_qkd_meta {
	char qkd_key_id[QKM_NAME_MAX];             /* M */
	uint32_t key_length;                       /* bits */
	char qkd_module_id[QKM_NAME_MAX];
	char matching_qkd_module_id[QKM_NAME_MAX];
	uint64_t generation_time_stamp;            /* ns since epoch */
	bool has_hash;
	uint8_t hash_value[32];                    /* SHA-256 of the key data */
};

struct qkm_kma_meta {
	struct qkm_id kma_key_id;                  /* M */
	uint32_t key_length;                       /* bits */
	enum qkm_key_type key_type;
	char kma_id[QKM_NAME_MAX];
	char matching_kma_id[QKM_NAME_MAX];        /* M */
	uint64_t generation_time_stamp;
	char qkd_module_id[QKM_NAME_MAX];
	char matching_qkd_module_id[QKM_NAME_MAX];
	bool has_hash;
	uint8_t hash_value[32];
};

struct qkm_relay_hop {
	char source_kma_id[QKM_NAME_MAX];
	char destination_kma_id[QKM_NAME_MAX];
	uint64_t key_relay_time_stamp;
	enum qkm_relay_method key_relay_encryption_method;
};

struct qkm_relayed_meta {
	struct qkm_kma_meta kma_key_metadata;      /* M: the source KMA's metadata */
	uint32_t n_hops;
	struct qkm_relay_hop hops[QKM_KEYFILE_MAX_HOPS];
};

struct qkm_ksa_meta {
	struct qkm_id ksa_key_id;                  /* M: a UUID */
	uint32_t key_length;                       /* bits */
	uint64_t supply_time_stamp;
	char application_name[QKM_NAME_MAX];
	char application_source_id[QKM_NAME_MAX];
	char application_destination_id[QKM_NAME_MAX];
};

struct qkm_keyfile {
	enum qkm_keyfile_kind kind;
	union {
		struct qkm_qkd_meta qkd;
		struct qkm_kma_meta kma;
		struct qkm_relayed_meta relayed;
		struct qkm_ksa_meta ksa;
	} m;
	struct qkm_secret *data; /* owned; NULL for a metadata-only file */
};

/* Zeroes kf and sets its kind. */
void qkm_keyfile_init(struct qkm_keyfile *kf, enum qkm_keyfile_kind kind);
/* Frees kf->data (wiped) and zeroes the metadata; kf itself is not freed. */
void qkm_keyfile_fini(struct qkm_keyfile *kf);

/* Appends the binary encoding of kf to out (which should be a secure buffer
 * when kf carries data). Returns 0, QKM_EINVAL if a mandatory field is
 * missing or a name is invalid, or the buffer's error. Validation is
 * qkm_keyfile_check()'s, so QKM_EMISMATCH (hash_value is not the SHA-256 of
 * the data) and QKM_ECRYPTO are possible too. On error out is as it was. */
int qkm_keyfile_encode(const struct qkm_keyfile *kf, struct qkm_buf *out) QKM_MUST_CHECK;

/* As qkm_keyfile_encode(), except that a hash_value present in the metadata
 * is trusted to be SHA-256 of the data rather than recomputed: for a caller
 * that has just computed it (the simulator hashes each QKD-key once). Every
 * other check runs. qkm_keyfile_decode() always verifies the hash. */
int qkm_keyfile_encode_hashed(const struct qkm_keyfile *kf, struct qkm_buf *out) QKM_MUST_CHECK;

/* Decodes exactly len bytes into kf (OUT, initialised here). Only the
 * canonical encoding (the one qkm_keyfile_encode writes) is accepted, so
 * decode-then-encode gives back the input byte for byte. Returns 0, or
 * QKM_ETRUNC, QKM_EFORMAT, QKM_EVERSION, QKM_ETOOBIG, QKM_ENOMEM,
 * QKM_EMISMATCH (hash_value is not the SHA-256 of the data); on error
 * kf holds nothing that needs freeing. If err_field is non-NULL it is set to a
 * static string naming the offending field or part on error. */
int qkm_keyfile_decode(const uint8_t *p, size_t len, struct qkm_keyfile *kf /* OUT */,
		       const char **err_field /* OUT */) QKM_MUST_CHECK;

/* As qkm_keyfile_decode(), except that hash_value is not checked against the
 * data (every other check runs): for a caller whose bytes a one-time MAC
 * has just authenticated and that passes them on to one that does check it
 * (a relay node; the destination checks the origin's hash end to end), or
 * whose data a MAC is about to compare with the peer's copy (acquisition
 * of a QKD-key file that came over TLS, docs/protocol.md 4.2). */
int qkm_keyfile_decode_hashed(const uint8_t *p, size_t len, struct qkm_keyfile *kf /* OUT */,
			      const char **err_field /* OUT */) QKM_MUST_CHECK;

/* Checks kf as the encoder does before writing a byte: mandatory fields
 * present (IDs non-zero), names valid, enums in range, at most
 * QKM_KEYFILE_MAX_HOPS hops, data no larger than QKM_KEYFILE_MAX_DATA, and,
 * when kf carries data, key_length (if set) == 8 * data length and
 * hash_value (if set) == SHA-256(data). Returns 0, QKM_EINVAL, QKM_EMISMATCH
 * (hash_value only) or QKM_ECRYPTO; *err_field (if non-NULL) names the
 * offending Table 1 field. */
int qkm_keyfile_check(const struct qkm_keyfile *kf, const char **err_field /* OUT */) QKM_MUST_CHECK;

/* Sets hash_value (and has_hash) of kf's metadata to SHA-256 of kf->data; for
 * a relayed KMA-key that is the nested KMA-key metadata. Returns 0, QKM_EINVAL
 * (no data, or a KSA-key, whose Table 1 item has no hash) or QKM_ECRYPTO. */
int qkm_keyfile_set_hash(struct qkm_keyfile *kf) QKM_MUST_CHECK;

/* Binary field tags (docs/key-file.md). The high nibble is the Table 1 item
 * the field belongs to; fields are written in increasing tag order, so
 * key_data (0xff) is always last. */
enum qkm_keyfile_tag {
	QKM_KFT_QKD_KEY_ID = 0x11,
	QKM_KFT_QKD_KEY_LENGTH = 0x12,
	QKM_KFT_QKD_MODULE_ID = 0x13,
	QKM_KFT_QKD_MATCHING_QKD_MODULE_ID = 0x14,
	QKM_KFT_QKD_GENERATION_TIME_STAMP = 0x15,
	QKM_KFT_QKD_HASH_VALUE = 0x16,
	QKM_KFT_KMA_KEY_ID = 0x21,
	QKM_KFT_KMA_KEY_LENGTH = 0x22,
	QKM_KFT_KMA_KEY_TYPE = 0x23,
	QKM_KFT_KMA_ID = 0x24,
	QKM_KFT_KMA_MATCHING_KMA_ID = 0x25,
	QKM_KFT_KMA_GENERATION_TIME_STAMP = 0x26,
	QKM_KFT_KMA_QKD_MODULE_ID = 0x27,
	QKM_KFT_KMA_MATCHING_QKD_MODULE_ID = 0x28,
	QKM_KFT_KMA_HASH_VALUE = 0x29,
	QKM_KFT_RELAY_SOURCE_KMA_ID = 0x31,          /* inside a relay hop */
	QKM_KFT_RELAY_DESTINATION_KMA_ID = 0x32,     /* inside a relay hop */
	QKM_KFT_RELAY_TIME_STAMP = 0x33,             /* inside a relay hop */
	QKM_KFT_RELAY_ENCRYPTION_METHOD = 0x34,      /* inside a relay hop */
	QKM_KFT_RELAY_KMA_KEY_METADATA = 0x35,       /* nested 0x2N fields */
	QKM_KFT_RELAY_HOP = 0x36,                    /* nested 0x31..0x34; repeats */
	QKM_KFT_KSA_KEY_ID = 0x41,
	QKM_KFT_KSA_KEY_LENGTH = 0x42,
	QKM_KFT_KSA_SUPPLY_TIME_STAMP = 0x43,
	QKM_KFT_KSA_APPLICATION_NAME = 0x44,
	QKM_KFT_KSA_APPLICATION_SOURCE_ID = 0x45,
	QKM_KFT_KSA_APPLICATION_DESTINATION_ID = 0x46,
	QKM_KFT_KEY_DATA = 0xff, /* u32 length; always present (0 = no data) */
};

/* Table 1 names used by both encodings and every API. */
const char *qkm_key_type_name(enum qkm_key_type t);       /* "enc", "dec" or NULL */
const char *qkm_relay_method_name(enum qkm_relay_method m); /* "otp", "aes-256-gcm" or NULL */
/* "qkd-key", "kma-key", "relayed-kma-key", "ksa-key" or NULL. */
const char *qkm_keyfile_kind_name(enum qkm_keyfile_kind k);
/* Inverses of the three above (exact, case-sensitive; "none" is not a
 * name). Each returns 0 or QKM_EFORMAT. */
int qkm_key_type_parse(const char *s, enum qkm_key_type *out /* OUT */) QKM_MUST_CHECK;
int qkm_relay_method_parse(const char *s, enum qkm_relay_method *out /* OUT */) QKM_MUST_CHECK;
int qkm_keyfile_kind_parse(const char *s, enum qkm_keyfile_kind *out /* OUT */) QKM_MUST_CHECK;

#endif
