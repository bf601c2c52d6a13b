/* keyfile.c - the binary key-file encoding (docs/key-file.md) and the checks
 * it shares with the JSON view (proto/keyfile_json.c). One field table per
 * Table 1 item drives encoder, decoder and checker alike, so the three cannot
 * disagree. Invariant: the decoder accepts only what the encoder would write
 * (increasing tags, no absent values spelled out), so decode+encode is exact. */
#include "core/keyfile.h"

#include <openssl/evp.h>
#include <stddef.h>
#include <string.h>

enum ftype {
	FT_STR,     /* char[QKM_NAME_MAX], a qkm_name_valid() name; "" = absent */
	FT_U32,     /* uint32_t, 0 = absent */
	FT_U64,     /* uint64_t time stamp in ns, 0 = absent */
	FT_ID,      /* struct qkm_id, always mandatory */
	FT_HASH,    /* uint8_t[32] with a bool flag at has_off */
	FT_KEYTYPE, /* enum qkm_key_type as u8, 0 = absent */
	FT_METHOD,  /* enum qkm_relay_method as u8, 0 = absent */
	FT_KMA,     /* nested struct qkm_kma_meta */
	FT_HOPS,    /* the hops[] / n_hops of struct qkm_relayed_meta, one field each */
};

struct fdef {
	uint8_t tag;
	uint8_t type;
	bool mandatory;
	const char *name; /* Table 1 in snake_case, as in the JSON view */
	size_t off;       /* of the value within the block's struct */
	size_t has_off;   /* FT_HASH only: of the has_hash flag */
};

struct fset {
	const struct fdef *f;
	size_t n;
};

#define F(tag, type, m, name, st, member)                                       \
	{QKM_KFT_##tag, type, m, name, offsetof(st, member), 0}
#define FH(tag, st)                                                             \
	{QKM_KFT_##tag, FT_HASH, false, "hash_value", offsetof(st, hash_value),  \
	 offsetof(st, has_hash)}

/* Each table is in increasing tag order: that is the order on the wire. */
static const struct fdef qkd_defs[] = {
	F(QKD_KEY_ID, FT_STR, true, "qkd_key_id", struct qkm_qkd_meta, qkd_key_id),
	F(QKD_KEY_LENGTH, FT_U32, false, "key_length", struct qkm_qkd_meta, key_length),
	F(QKD_MODULE_ID, FT_STR, false, "qkd_module_id", struct qkm_qkd_meta, qkd_module_id),
	F(QKD_MATCHING_QKD_MODULE_ID, FT_STR, false, "matching_qkd_module_id",
	  struct qkm_qkd_meta, matching_qkd_module_id),
	F(QKD_GENERATION_TIME_STAMP, FT_U64, false, "generation_time_stamp",
	  struct qkm_qkd_meta, generation_time_stamp),
	FH(QKD_HASH_VALUE, struct qkm_qkd_meta),
};

static const struct fdef kma_defs[] = {
	F(KMA_KEY_ID, FT_ID, true, "kma_key_id", struct qkm_kma_meta, kma_key_id),
	F(KMA_KEY_LENGTH, FT_U32, false, "key_length", struct qkm_kma_meta, key_length),
	F(KMA_KEY_TYPE, FT_KEYTYPE, false, "key_type", struct qkm_kma_meta, key_type),
	F(KMA_ID, FT_STR, false, "kma_id", struct qkm_kma_meta, kma_id),
	F(KMA_MATCHING_KMA_ID, FT_STR, true, "matching_kma_id", struct qkm_kma_meta,
	  matching_kma_id),
	F(KMA_GENERATION_TIME_STAMP, FT_U64, false, "generation_time_stamp",
	  struct qkm_kma_meta, generation_time_stamp),
	F(KMA_QKD_MODULE_ID, FT_STR, false, "qkd_module_id", struct qkm_kma_meta, qkd_module_id),
	F(KMA_MATCHING_QKD_MODULE_ID, FT_STR, false, "matching_qkd_module_id",
	  struct qkm_kma_meta, matching_qkd_module_id),
	FH(KMA_HASH_VALUE, struct qkm_kma_meta),
};

static const struct fdef hop_defs[] = {
	F(RELAY_SOURCE_KMA_ID, FT_STR, false, "source_kma_id", struct qkm_relay_hop, source_kma_id),
	F(RELAY_DESTINATION_KMA_ID, FT_STR, false, "destination_kma_id", struct qkm_relay_hop,
	  destination_kma_id),
	F(RELAY_TIME_STAMP, FT_U64, false, "key_relay_time_stamp", struct qkm_relay_hop,
	  key_relay_time_stamp),
	F(RELAY_ENCRYPTION_METHOD, FT_METHOD, false, "key_relay_encryption_method",
	  struct qkm_relay_hop, key_relay_encryption_method),
};

static const struct fdef relayed_defs[] = {
	F(RELAY_KMA_KEY_METADATA, FT_KMA, true, "kma_key_metadata", struct qkm_relayed_meta,
	  kma_key_metadata),
	F(RELAY_HOP, FT_HOPS, false, "relay", struct qkm_relayed_meta, hops),
};

static const struct fdef ksa_defs[] = {
	F(KSA_KEY_ID, FT_ID, true, "ksa_key_id", struct qkm_ksa_meta, ksa_key_id),
	F(KSA_KEY_LENGTH, FT_U32, false, "key_length", struct qkm_ksa_meta, key_length),
	F(KSA_SUPPLY_TIME_STAMP, FT_U64, false, "supply_time_stamp", struct qkm_ksa_meta,
	  supply_time_stamp),
	F(KSA_APPLICATION_NAME, FT_STR, false, "application_name", struct qkm_ksa_meta,
	  application_name),
	F(KSA_APPLICATION_SOURCE_ID, FT_STR, false, "application_source_id", struct qkm_ksa_meta,
	  application_source_id),
	F(KSA_APPLICATION_DESTINATION_ID, FT_STR, false, "application_destination_id",
	  struct qkm_ksa_meta, application_destination_id),
};

#define SET(a) {a, sizeof(a) / sizeof((a)[0])}
static const struct fset qkd_set = SET(qkd_defs), kma_set = SET(kma_defs),
			 hop_set = SET(hop_defs), relayed_set = SET(relayed_defs),
			 ksa_set = SET(ksa_defs);

/* The field set of a file's top level; NULL for an unknown kind. */
static const struct fset *kind_set(int kind)
{
	switch (kind) {
	case QKM_KF_QKD:
		return &qkd_set;
	case QKM_KF_KMA:
		return &kma_set;
	case QKM_KF_RELAYED:
		return &relayed_set;
	case QKM_KF_KSA:
		return &ksa_set;
	default:
		return NULL;
	}
}

/* A known tag's name wherever it is allowed, so that a field in the wrong
 * place is reported by name; NULL for a tag no kind uses. */
static const char *tag_name(uint8_t tag)
{
	static const struct fset *all[] = {&qkd_set, &kma_set, &hop_set, &relayed_set, &ksa_set};
	if (tag == QKM_KFT_KEY_DATA)
		return "key_data";
	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
		for (size_t j = 0; j < all[i]->n; j++)
			if (all[i]->f[j].tag == tag)
				return all[i]->f[j].name;
	return NULL;
}

static bool id_zero(const struct qkm_id *id)
{
	static const struct qkm_id zero;
	return qkm_id_eq(id, &zero);
}

/* --- checks shared by encoder, decoder and JSON view ---------------------- */

static bool str_ok(const char *s, bool mandatory)
{
	/* Bounded: the array may not hold a NUL if the caller filled it all. */
	if (!memchr(s, 0, QKM_NAME_MAX))
		return false;
	if (!s[0])
		return !mandatory;
	return qkm_name_valid(s);
}

static int block_check(const struct fset *fs, const void *blk, const char **ef)
{
	const uint8_t *b = blk;
	for (size_t i = 0; i < fs->n; i++) {
		const struct fdef *d = &fs->f[i];
		const void *v = b + d->off;
		bool ok = true;
		switch (d->type) {
		case FT_STR:
			ok = str_ok(v, d->mandatory);
			break;
		case FT_ID:
			ok = !id_zero(v);
			break;
		case FT_KEYTYPE: {
			enum qkm_key_type t = *(const enum qkm_key_type *)v;
			ok = t == QKM_KT_NONE || t == QKM_KT_ENC || t == QKM_KT_DEC;
			break;
		}
		case FT_METHOD: {
			enum qkm_relay_method m = *(const enum qkm_relay_method *)v;
			ok = m == QKM_RM_NONE || m == QKM_RM_OTP || m == QKM_RM_AES256GCM;
			break;
		}
		case FT_KMA: {
			int rc = block_check(&kma_set, v, ef);
			if (rc)
				return rc;
			break;
		}
		case FT_HOPS: {
			const struct qkm_relayed_meta *rm = blk;
			if (rm->n_hops > QKM_KEYFILE_MAX_HOPS) {
				ok = false;
				break;
			}
			for (uint32_t h = 0; h < rm->n_hops; h++) {
				int rc = block_check(&hop_set, &rm->hops[h], ef);
				if (rc)
					return rc;
			}
			break;
		}
		default: /* integers and hashes: every value is allowed */
			break;
		}
		if (!ok) {
			*ef = d->name;
			return QKM_EINVAL;
		}
	}
	return 0;
}

/* key_length and hash_value of kf's kind, where Table 1 has them. */
static void data_meta(const struct qkm_keyfile *kf, uint32_t *key_length, const bool **has_hash,
		      const uint8_t **hash)
{
	*has_hash = NULL;
	*hash = NULL;
	switch (kf->kind) {
	case QKM_KF_QKD:
		*key_length = kf->m.qkd.key_length;
		*has_hash = &kf->m.qkd.has_hash;
		*hash = kf->m.qkd.hash_value;
		break;
	case QKM_KF_KMA:
	case QKM_KF_RELAYED: {
		const struct qkm_kma_meta *k =
			kf->kind == QKM_KF_KMA ? &kf->m.kma : &kf->m.relayed.kma_key_metadata;
		*key_length = k->key_length;
		*has_hash = &k->has_hash;
		*hash = k->hash_value;
		break;
	}
	default:
		*key_length = kf->m.ksa.key_length;
		break;
	}
}

static int sha256(const struct qkm_secret *s, uint8_t md[static 32])
{
	unsigned int n = 0;
	if (EVP_Digest(s->p, s->len, md, &n, EVP_sha256(), NULL) != 1 || n != 32)
		return QKM_ECRYPTO;
	return 0;
}

/* The data against its metadata: QKM_EINVAL (key_length), QKM_EMISMATCH.
 * verify_hash false: a hash_value present is taken as given. */
static int data_check(const struct qkm_keyfile *kf, bool verify_hash, const char **ef)
{
	uint32_t key_length;
	const bool *has_hash;
	const uint8_t *hash;
	uint8_t md[32];
	int rc;

	if (!kf->data)
		return 0;
	if (!kf->data->p || kf->data->len == 0 || kf->data->len > QKM_KEYFILE_MAX_DATA) {
		*ef = "key_data";
		return QKM_EINVAL;
	}
	data_meta(kf, &key_length, &has_hash, &hash);
	/* MAX_DATA * 8 fits in a uint32_t, so the product cannot wrap. */
	if (key_length && (uint64_t)key_length != (uint64_t)kf->data->len * 8) {
		*ef = "key_length";
		return QKM_EINVAL;
	}
	if (!has_hash || !*has_hash || !verify_hash)
		return 0;
	if ((rc = sha256(kf->data, md)))
		return rc;
	if (!qkm_ct_equal(md, hash, sizeof(md))) {
		*ef = "hash_value";
		return QKM_EMISMATCH;
	}
	return 0;
}

static int keyfile_check(const struct qkm_keyfile *kf, bool verify_hash, const char **err_field)
{
	const char *dummy = NULL;
	const char **ef = err_field ? err_field : &dummy;
	const struct fset *fs = kind_set(kf->kind);
	int rc;

	*ef = NULL;
	if (!fs) {
		*ef = "kind";
		return QKM_EINVAL;
	}
	if ((rc = block_check(fs, &kf->m, ef)))
		return rc;
	return data_check(kf, verify_hash, ef);
}

int qkm_keyfile_check(const struct qkm_keyfile *kf, const char **err_field)
{
	return keyfile_check(kf, true, err_field);
}

int qkm_keyfile_set_hash(struct qkm_keyfile *kf)
{
	struct qkm_qkd_meta *q = NULL;
	struct qkm_kma_meta *k = NULL;
	uint8_t md[32];
	int rc;

	if (kf->kind == QKM_KF_QKD)
		q = &kf->m.qkd;
	else if (kf->kind == QKM_KF_KMA)
		k = &kf->m.kma;
	else if (kf->kind == QKM_KF_RELAYED)
		k = &kf->m.relayed.kma_key_metadata;
	if (!kf->data || (!q && !k))
		return QKM_EINVAL;
	if ((rc = sha256(kf->data, md)))
		return rc;
	memcpy(q ? q->hash_value : k->hash_value, md, sizeof(md));
	if (q)
		q->has_hash = true;
	else
		k->has_hash = true;
	return 0;
}

void qkm_keyfile_init(struct qkm_keyfile *kf, enum qkm_keyfile_kind kind)
{
	memset(kf, 0, sizeof(*kf));
	kf->kind = kind;
}

void qkm_keyfile_fini(struct qkm_keyfile *kf)
{
	qkm_secret_free(kf->data);
	memset(kf, 0, sizeof(*kf));
}

/* --- encoder -------------------------------------------------------------- */

static int put_hdr(struct qkm_buf *out, uint8_t tag, uint16_t len)
{
	int rc = qkm_buf_put_u8(out, tag);
	return rc ? rc : qkm_buf_put_u16(out, len);
}

static int put_field(struct qkm_buf *out, uint8_t tag, const void *v, size_t len)
{
	int rc;
	if (len > UINT16_MAX)
		return QKM_ETOOBIG;
	if ((rc = put_hdr(out, tag, (uint16_t)len)))
		return rc;
	return qkm_buf_put(out, v, len);
}

static int block_encode(const struct fset *fs, const void *blk, struct qkm_buf *out);

/* A field whose value is a nested block; its length is patched in after. */
static int put_nested(struct qkm_buf *out, uint8_t tag, const struct fset *fs, const void *blk)
{
	int rc;
	size_t at;
	if ((rc = put_hdr(out, tag, 0)))
		return rc;
	at = out->len;
	if ((rc = block_encode(fs, blk, out)))
		return rc;
	if (out->len - at > UINT16_MAX)
		return QKM_ETOOBIG;
	out->p[at - 2] = (uint8_t)((out->len - at) >> 8);
	out->p[at - 1] = (uint8_t)(out->len - at);
	return 0;
}

/* Writes the present fields of blk (already checked) in table order. */
static int block_encode(const struct fset *fs, const void *blk, struct qkm_buf *out)
{
	const uint8_t *b = blk;
	int rc = 0;
	for (size_t i = 0; i < fs->n && rc == 0; i++) {
		const struct fdef *d = &fs->f[i];
		const void *v = b + d->off;
		uint8_t x[8];
		switch (d->type) {
		case FT_STR:
			if (*(const char *)v)
				rc = put_field(out, d->tag, v, strlen(v));
			break;
		case FT_U32: {
			uint32_t u = *(const uint32_t *)v;
			qkm_be32_put(x, u);
			if (u)
				rc = put_field(out, d->tag, x, 4);
			break;
		}
		case FT_U64: {
			uint64_t u = *(const uint64_t *)v;
			qkm_be32_put(x, (uint32_t)(u >> 32));
			qkm_be32_put(x + 4, (uint32_t)u);
			if (u)
				rc = put_field(out, d->tag, x, 8);
			break;
		}
		case FT_ID:
			rc = put_field(out, d->tag, ((const struct qkm_id *)v)->b, QKM_ID_LEN);
			break;
		case FT_HASH:
			if (*(const bool *)(b + d->has_off))
				rc = put_field(out, d->tag, v, 32);
			break;
		case FT_KEYTYPE:
			x[0] = (uint8_t)(*(const enum qkm_key_type *)v);
			if (x[0])
				rc = put_field(out, d->tag, x, 1);
			break;
		case FT_METHOD:
			x[0] = (uint8_t)(*(const enum qkm_relay_method *)v);
			if (x[0])
				rc = put_field(out, d->tag, x, 1);
			break;
		case FT_KMA:
			rc = put_nested(out, d->tag, &kma_set, v);
			break;
		case FT_HOPS: {
			const struct qkm_relayed_meta *rm = blk;
			for (uint32_t h = 0; h < rm->n_hops && rc == 0; h++)
				rc = put_nested(out, d->tag, &hop_set, &rm->hops[h]);
			break;
		}
		}
	}
	return rc;
}

static int keyfile_encode(const struct qkm_keyfile *kf, bool verify_hash, struct qkm_buf *out)
{
	const size_t start = out->len;
	const char *ef;
	uint32_t dlen = 0;
	int rc;

	if ((rc = keyfile_check(kf, verify_hash, &ef)))
		goto out;
	if (kf->data)
		dlen = (uint32_t)kf->data->len; /* <= QKM_KEYFILE_MAX_DATA: checked */
	if ((rc = qkm_buf_put(out, "QKMK", 4)) || (rc = qkm_buf_put_u8(out, QKM_KEYFILE_VERSION)) ||
	    (rc = qkm_buf_put_u8(out, (uint8_t)kf->kind)))
		goto out;
	if ((rc = block_encode(kind_set(kf->kind), &kf->m, out)))
		goto out;
	/* key_data is written even when empty: it terminates the file, so that a
	 * truncated file can never pass for a shorter valid one. */
	if ((rc = qkm_buf_put_u8(out, QKM_KFT_KEY_DATA)) || (rc = qkm_buf_put_u32(out, dlen)))
		goto out;
	if (dlen)
		rc = qkm_buf_put(out, kf->data->p, dlen);
out:
	if (rc && out->len > start) {
		if (out->secure)
			qkm_cleanse(out->p + start, out->len - start);
		out->len = start;
	}
	return rc;
}

int qkm_keyfile_encode(const struct qkm_keyfile *kf, struct qkm_buf *out)
{
	return keyfile_encode(kf, true, out);
}

int qkm_keyfile_encode_hashed(const struct qkm_keyfile *kf, struct qkm_buf *out)
{
	return keyfile_encode(kf, false, out);
}

/* --- decoder -------------------------------------------------------------- */

static uint64_t be64(const uint8_t *p)
{
	return (uint64_t)qkm_be32_get(p) << 32 | qkm_be32_get(p + 4);
}

static int block_decode(const struct fset *fs, struct qkm_rd *r, void *blk, bool top,
			const char **ef);

/* One value of a known field; QKM_EFORMAT unless it is exactly what the
 * encoder would have written for some struct. */
static int value_decode(const struct fdef *d, const uint8_t *v, size_t n, void *blk,
			const char **ef)
{
	uint8_t *b = blk;
	void *dst = b + d->off;
	struct qkm_rd sub;
	int rc;

	*ef = d->name;
	switch (d->type) {
	case FT_STR:
		/* No NUL inside: it would shorten the string and change the re-encoding. */
		if (n == 0 || n >= QKM_NAME_MAX || memchr(v, 0, n))
			return QKM_EFORMAT;
		memcpy(dst, v, n);
		((char *)dst)[n] = 0;
		return qkm_name_valid(dst) ? 0 : QKM_EFORMAT;
	case FT_U32: {
		if (n != 4 || qkm_be32_get(v) == 0) /* 0 is spelled by omission */
			return QKM_EFORMAT;
		uint32_t u = qkm_be32_get(v);
		memcpy(dst, &u, sizeof(u));
		return 0;
	}
	case FT_U64: {
		if (n != 8 || be64(v) == 0)
			return QKM_EFORMAT;
		uint64_t u = be64(v);
		memcpy(dst, &u, sizeof(u));
		return 0;
	}
	case FT_ID:
		if (n != QKM_ID_LEN)
			return QKM_EFORMAT;
		memcpy(((struct qkm_id *)dst)->b, v, QKM_ID_LEN);
		return id_zero(dst) ? QKM_EFORMAT : 0;
	case FT_HASH:
		if (n != 32)
			return QKM_EFORMAT;
		memcpy(dst, v, 32);
		*(bool *)(b + d->has_off) = true;
		return 0;
	case FT_KEYTYPE:
		if (n != 1 || (v[0] != QKM_KT_ENC && v[0] != QKM_KT_DEC))
			return QKM_EFORMAT;
		*(enum qkm_key_type *)dst = (enum qkm_key_type)v[0];
		return 0;
	case FT_METHOD:
		if (n != 1 || (v[0] != QKM_RM_OTP && v[0] != QKM_RM_AES256GCM))
			return QKM_EFORMAT;
		*(enum qkm_relay_method *)dst = (enum qkm_relay_method)v[0];
		return 0;
	case FT_KMA:
		qkm_rd_init(&sub, v, n);
		return block_decode(&kma_set, &sub, dst, false, ef);
	case FT_HOPS: {
		struct qkm_relayed_meta *rm = blk;
		if (rm->n_hops >= QKM_KEYFILE_MAX_HOPS)
			return QKM_EFORMAT;
		qkm_rd_init(&sub, v, n);
		if ((rc = block_decode(&hop_set, &sub, &rm->hops[rm->n_hops], false, ef)))
			return rc;
		rm->n_hops++;
		return 0;
	}
	}
	return QKM_EFORMAT;
}

/* Reads fields into blk until r is empty or, at the top level, until the
 * key_data tag (left unread). Tags must increase; only a relay hop repeats. */
static int block_decode(const struct fset *fs, struct qkm_rd *r, void *blk, bool top,
			const char **ef)
{
	uint32_t seen = 0; /* bit i: fs->f[i] was read */
	int prev = -1, rc;

	while (qkm_rd_left(r) > 0) {
		uint8_t tag = r->p[r->off];
		uint16_t len;
		const uint8_t *v;
		const struct fdef *d = NULL;
		size_t i;

		if (top && tag == QKM_KFT_KEY_DATA)
			break;
		for (i = 0; i < fs->n && !d; i++)
			if (fs->f[i].tag == tag)
				d = &fs->f[i];
		if (!d) {
			*ef = tag_name(tag) ? tag_name(tag) : "tag";
			return QKM_EFORMAT;
		}
		i = (size_t)(d - fs->f);
		*ef = d->name;
		if ((seen >> i & 1) && d->type != FT_HOPS)
			return QKM_EFORMAT; /* duplicate */
		if (tag < prev)
			return QKM_EFORMAT; /* out of order: not the canonical encoding */
		r->off++;
		if ((rc = qkm_rd_u16(r, &len)) || (rc = qkm_rd_ptr(r, &v, len)))
			return rc;
		if ((rc = value_decode(d, v, len, blk, ef)))
			return rc;
		seen |= 1u << i;
		prev = tag;
	}
	if (top && qkm_rd_left(r) == 0) {
		*ef = "key_data"; /* the terminating field is missing: truncated */
		return QKM_ETRUNC;
	}
	for (size_t j = 0; j < fs->n; j++) {
		if (fs->f[j].mandatory && !(seen >> j & 1)) {
			*ef = fs->f[j].name;
			return QKM_EFORMAT;
		}
	}
	return 0;
}

static int keyfile_decode(const uint8_t *p, size_t len, struct qkm_keyfile *kf,
			  const char **err_field, bool verify_hash)
{
	const char *dummy = NULL;
	const char **ef = err_field ? err_field : &dummy;
	const struct fset *fs;
	const uint8_t *v;
	struct qkm_rd r;
	uint8_t ver, kind, tag;
	uint32_t dlen;
	int rc;

	qkm_keyfile_init(kf, 0);
	qkm_rd_init(&r, p, len);

	*ef = "magic";
	if ((rc = qkm_rd_ptr(&r, &v, 4)))
		goto out;
	if (memcmp(v, "QKMK", 4) != 0) {
		rc = QKM_EFORMAT;
		goto out;
	}
	*ef = "version";
	if ((rc = qkm_rd_u8(&r, &ver)))
		goto out;
	if (ver != QKM_KEYFILE_VERSION) {
		rc = QKM_EVERSION;
		goto out;
	}
	*ef = "kind";
	if ((rc = qkm_rd_u8(&r, &kind)))
		goto out;
	if (!(fs = kind_set(kind))) {
		rc = QKM_EFORMAT;
		goto out;
	}
	kf->kind = (enum qkm_keyfile_kind)kind;
	if ((rc = block_decode(fs, &r, &kf->m, true, ef)))
		goto out;

	/* block_decode stopped at the key_data tag: the last field. */
	*ef = "key_data";
	if ((rc = qkm_rd_u8(&r, &tag)) || (rc = qkm_rd_u32(&r, &dlen)))
		goto out;
	if (dlen > QKM_KEYFILE_MAX_DATA) {
		rc = QKM_ETOOBIG;
		goto out;
	}
	if ((rc = qkm_rd_ptr(&r, &v, dlen)))
		goto out;
	if (qkm_rd_left(&r) != 0) { /* trailing bytes after the last field */
		rc = QKM_EFORMAT;
		goto out;
	}
	if (dlen && !(kf->data = qkm_secret_dup(v, dlen))) {
		rc = QKM_ENOMEM;
		goto out;
	}
	/* The field checks above already imply block_check; data_check adds the
	 * cross-field rules. Both run so a decoded file is always encodable. */
	if ((rc = keyfile_check(kf, verify_hash, ef)) == QKM_EINVAL)
		rc = QKM_EFORMAT;
out:
	if (rc)
		qkm_keyfile_fini(kf);
	else
		*ef = NULL;
	return rc;
}

int qkm_keyfile_decode(const uint8_t *p, size_t len, struct qkm_keyfile *kf,
		       const char **err_field)
{
	return keyfile_decode(p, len, kf, err_field, true);
}

int qkm_keyfile_decode_hashed(const uint8_t *p, size_t len, struct qkm_keyfile *kf,
			      const char **err_field)
{
	return keyfile_decode(p, len, kf, err_field, false);
}

/* --- names ---------------------------------------------------------------- */

static const char *const kt_names[] = {[QKM_KT_ENC] = "enc", [QKM_KT_DEC] = "dec"};
static const char *const rm_names[] = {[QKM_RM_OTP] = "otp", [QKM_RM_AES256GCM] = "aes-256-gcm"};
static const char *const kind_names[] = {[QKM_KF_QKD] = "qkd-key",
					 [QKM_KF_KMA] = "kma-key",
					 [QKM_KF_RELAYED] = "relayed-kma-key",
					 [QKM_KF_KSA] = "ksa-key"};

#define NAMES_N(a) (sizeof(a) / sizeof((a)[0]))

static const char *name_of(const char *const *names, size_t n, int v)
{
	return v >= 0 && (size_t)v < n ? names[v] : NULL;
}

/* Index of s in names (entries may be NULL), or -1. */
static int name_find(const char *const *names, size_t n, const char *s)
{
	for (size_t i = 0; i < n; i++)
		if (names[i] && s && strcmp(names[i], s) == 0)
			return (int)i;
	return -1;
}

const char *qkm_key_type_name(enum qkm_key_type t)
{
	return name_of(kt_names, NAMES_N(kt_names), (int)t);
}

const char *qkm_relay_method_name(enum qkm_relay_method m)
{
	return name_of(rm_names, NAMES_N(rm_names), (int)m);
}

const char *qkm_keyfile_kind_name(enum qkm_keyfile_kind k)
{
	return name_of(kind_names, NAMES_N(kind_names), (int)k);
}

int qkm_key_type_parse(const char *s, enum qkm_key_type *out)
{
	int i = name_find(kt_names, NAMES_N(kt_names), s);
	if (i < 0)
		return QKM_EFORMAT;
	*out = (enum qkm_key_type)i;
	return 0;
}

int qkm_relay_method_parse(const char *s, enum qkm_relay_method *out)
{
	int i = name_find(rm_names, NAMES_N(rm_names), s);
	if (i < 0)
		return QKM_EFORMAT;
	*out = (enum qkm_relay_method)i;
	return 0;
}

int qkm_keyfile_kind_parse(const char *s, enum qkm_keyfile_kind *out)
{
	int i = name_find(kind_names, NAMES_N(kind_names), s);
	if (i < 0)
		return QKM_EFORMAT;
	*out = (enum qkm_keyfile_kind)i;
	return 0;
}
