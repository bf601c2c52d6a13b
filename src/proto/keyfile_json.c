/* keyfile_json.c - the JSON view of a key file (see keyfile_json.h). Owns the
 * JSON spelling of each Table 1 field (a table per item, mirroring the binary
 * one in core/keyfile.c); the rules on values are core's qkm_keyfile_check().
 * Key data is base64-decoded straight into secure memory. */
#include "proto/keyfile_json.h"

#include <openssl/evp.h>
#include <stddef.h>
#include <string.h>

enum jtype {
	JT_STR,     /* entity name */
	JT_U32,     /* JSON integer 1..2^32-1 */
	JT_TIME,    /* RFC 3339 UTC string with microseconds */
	JT_IDHEX,   /* 32 lowercase hex digits */
	JT_UUID,    /* 8-4-4-4-12 lowercase UUID */
	JT_HASH,    /* 64 lowercase hex digits; flag at has_off */
	JT_KEYTYPE, /* "enc" | "dec" */
	JT_METHOD,  /* "otp" | "aes-256-gcm" */
	JT_KMA,     /* nested object of KMA-key metadata */
	JT_HOPS,    /* non-empty array of hop objects */
};

struct jdef {
	const char *name;
	uint8_t type;
	bool mandatory;
	size_t off;
	size_t has_off;
};

struct jset {
	const struct jdef *f;
	size_t n;
};

#define J(name, type, m, st, member) {name, type, m, offsetof(st, member), 0}
#define JH(st) {"hash_value", JT_HASH, false, offsetof(st, hash_value), offsetof(st, has_hash)}

/* Same order as the binary tables: that is the order members are written. */
static const struct jdef qkd_defs[] = {
	J("qkd_key_id", JT_STR, true, struct qkm_qkd_meta, qkd_key_id),
	J("key_length", JT_U32, false, struct qkm_qkd_meta, key_length),
	J("qkd_module_id", JT_STR, false, struct qkm_qkd_meta, qkd_module_id),
	J("matching_qkd_module_id", JT_STR, false, struct qkm_qkd_meta, matching_qkd_module_id),
	J("generation_time_stamp", JT_TIME, false, struct qkm_qkd_meta, generation_time_stamp),
	JH(struct qkm_qkd_meta),
};

static const struct jdef kma_defs[] = {
	J("kma_key_id", JT_IDHEX, true, struct qkm_kma_meta, kma_key_id),
	J("key_length", JT_U32, false, struct qkm_kma_meta, key_length),
	J("key_type", JT_KEYTYPE, false, struct qkm_kma_meta, key_type),
	J("kma_id", JT_STR, false, struct qkm_kma_meta, kma_id),
	J("matching_kma_id", JT_STR, true, struct qkm_kma_meta, matching_kma_id),
	J("generation_time_stamp", JT_TIME, false, struct qkm_kma_meta, generation_time_stamp),
	J("qkd_module_id", JT_STR, false, struct qkm_kma_meta, qkd_module_id),
	J("matching_qkd_module_id", JT_STR, false, struct qkm_kma_meta, matching_qkd_module_id),
	JH(struct qkm_kma_meta),
};

static const struct jdef hop_defs[] = {
	J("source_kma_id", JT_STR, false, struct qkm_relay_hop, source_kma_id),
	J("destination_kma_id", JT_STR, false, struct qkm_relay_hop, destination_kma_id),
	J("key_relay_time_stamp", JT_TIME, false, struct qkm_relay_hop, key_relay_time_stamp),
	J("key_relay_encryption_method", JT_METHOD, false, struct qkm_relay_hop,
	  key_relay_encryption_method),
};

static const struct jdef relayed_defs[] = {
	J("kma_key_metadata", JT_KMA, true, struct qkm_relayed_meta, kma_key_metadata),
	J("relay", JT_HOPS, false, struct qkm_relayed_meta, hops),
};

static const struct jdef ksa_defs[] = {
	J("ksa_key_id", JT_UUID, true, struct qkm_ksa_meta, ksa_key_id),
	J("key_length", JT_U32, false, struct qkm_ksa_meta, key_length),
	J("supply_time_stamp", JT_TIME, false, struct qkm_ksa_meta, supply_time_stamp),
	J("application_name", JT_STR, false, struct qkm_ksa_meta, application_name),
	J("application_source_id", JT_STR, false, struct qkm_ksa_meta, application_source_id),
	J("application_destination_id", JT_STR, false, struct qkm_ksa_meta,
	  application_destination_id),
};

#define SET(a) {a, sizeof(a) / sizeof((a)[0])}
static const struct jset qkd_set = SET(qkd_defs), kma_set = SET(kma_defs),
			 hop_set = SET(hop_defs), relayed_set = SET(relayed_defs),
			 ksa_set = SET(ksa_defs);

static const struct jset *kind_set(enum qkm_keyfile_kind kind)
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
	}
	return NULL;
}

/* --- scalar spellings ----------------------------------------------------- */

static const char hexdig[] = "0123456789abcdef";

static void hex_put(const uint8_t *p, size_t n, char *out /* 2n+1 */)
{
	for (size_t i = 0; i < n; i++) {
		out[2 * i] = hexdig[p[i] >> 4];
		out[2 * i + 1] = hexdig[p[i] & 15];
	}
	out[2 * n] = 0;
}

/* Lowercase only: the spelling hex_put writes is the only one accepted. */
static int hex_get(const char *s, size_t slen, uint8_t *out, size_t n)
{
	if (slen != 2 * n)
		return QKM_EFORMAT;
	for (size_t i = 0; i < 2 * n; i++) {
		/* NOLINTNEXTLINE(bugprone-not-null-terminated-result): strchr would find the NUL */
		const char *c = memchr(hexdig, s[i], 16);
		if (!s[i] || !c)
			return QKM_EFORMAT;
		if (i % 2 == 0)
			out[i / 2] = (uint8_t)((c - hexdig) << 4);
		else
			out[i / 2] |= (uint8_t)(c - hexdig);
	}
	return 0;
}

/* A JSON string without an embedded NUL (which C code would silently cut). */
static bool jstr(const json_t *v, const char **s /* OUT */, size_t *n /* OUT */)
{
	if (!json_is_string(v))
		return false;
	*s = json_string_value(v);
	*n = json_string_length(v);
	return strlen(*s) == *n;
}

/* Days from 1970-01-01 to y-m-d (proleptic Gregorian, y >= 1970). */
static uint64_t days_since_epoch(unsigned y, unsigned m, unsigned d)
{
	static const unsigned before[12] = {0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334};
	unsigned py = y - 1;
	bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
	uint64_t leaps = (uint64_t)(py / 4 - py / 100 + py / 400) - (1969 / 4 - 1969 / 100 + 1969 / 400);
	return 365ull * (y - 1970) + leaps + before[m - 1] + (leap && m > 2) + d - 1;
}

static unsigned digits(const char *s, int n)
{
	unsigned v = 0;
	for (int i = 0; i < n; i++)
		v = v * 10 + (unsigned)(s[i] - '0');
	return v;
}

/* Parses exactly what qkm_time_str() writes; refuses the epoch itself, which
 * is the "absent" value and so never written. */
static int time_parse(const char *s, size_t n, uint64_t *ns /* OUT */)
{
	static const char pat[] = "dddd-dd-ddTdd:dd:dd.ddddddZ";
	char back[32];
	if (n != sizeof(pat) - 1)
		return QKM_EFORMAT;
	for (size_t i = 0; i < n; i++) {
		bool digit = s[i] >= '0' && s[i] <= '9';
		if (pat[i] == 'd' ? !digit : s[i] != pat[i])
			return QKM_EFORMAT;
	}
	unsigned y = digits(s, 4), mo = digits(s + 5, 2), d = digits(s + 8, 2);
	unsigned h = digits(s + 11, 2), mi = digits(s + 14, 2), se = digits(s + 17, 2);
	uint64_t us = digits(s + 20, 6);
	if (y < 1970 || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || se > 59)
		return QKM_EFORMAT;
	uint64_t secs = days_since_epoch(y, mo, d) * 86400 + h * 3600ul + mi * 60ul + se;
	if (secs > UINT64_MAX / 1000000000u || us * 1000 > UINT64_MAX - secs * 1000000000u)
		return QKM_EFORMAT; /* past 2554: not a uint64_t of ns */
	*ns = secs * 1000000000u + us * 1000;
	/* Round trip through the formatter catches 31 February and friends. */
	qkm_time_str(*ns, back);
	if (*ns == 0 || strcmp(back, s) != 0)
		return QKM_EFORMAT;
	return 0;
}

static int b64val(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

/* Strict RFC 4648 base64 (padding required, no whitespace, zero pad bits),
 * so that each byte string has exactly one accepted spelling. */
static int b64_decode(const char *s, size_t n, struct qkm_secret **out /* OUT */)
{
	struct qkm_secret *sec = NULL;
	uint32_t acc = 0;
	size_t pad, len, o = 0;
	int rc = QKM_EFORMAT;

	*out = NULL;
	if (n == 0 || n % 4)
		return QKM_EFORMAT;
	pad = s[n - 1] == '=' ? (s[n - 2] == '=' ? 2 : 1) : 0;
	len = n / 4 * 3 - pad;
	if (len > QKM_KEYFILE_MAX_DATA)
		return QKM_ETOOBIG;
	if (!(sec = qkm_secret_new(len)))
		return QKM_ENOMEM;
	for (size_t i = 0; i < n; i += 4) {
		bool last = i + 4 == n;
		acc = 0;
		for (size_t k = 0; k < 4; k++) {
			int v = last && k >= 4 - pad ? 0 : b64val((unsigned char)s[i + k]);
			if (v < 0)
				goto out;
			acc = acc << 6 | (uint32_t)v;
		}
		if (last && ((pad == 1 && (acc & 0xff)) || (pad == 2 && (acc & 0xffff))))
			goto out; /* non-zero pad bits: a second spelling of the same bytes */
		uint8_t b[3] = {(uint8_t)(acc >> 16), (uint8_t)(acc >> 8), (uint8_t)acc};
		size_t take = len - o < 3 ? len - o : 3;
		memcpy(sec->p + o, b, take);
		qkm_cleanse(b, sizeof(b));
		o += take;
	}
	*out = sec;
	sec = NULL;
	rc = 0;
out:
	qkm_cleanse(&acc, sizeof(acc));
	qkm_secret_free(sec);
	return rc;
}

/* The base64 text passes through secure memory; jansson's copy cannot. */
static json_t *b64_json(const struct qkm_secret *data)
{
	size_t n = 4 * ((data->len + 2) / 3);
	struct qkm_secret *tmp = qkm_secret_new(n + 1);
	json_t *v = NULL;
	if (!tmp)
		return NULL;
	if ((size_t)EVP_EncodeBlock(tmp->p, data->p, (int)data->len) == n)
		v = json_stringn((const char *)tmp->p, n);
	qkm_secret_free(tmp);
	return v;
}

/* --- struct -> JSON --------------------------------------------------------- */

static int block_to_json(const struct jset *js, const void *blk, json_t *o);

static json_t *nested_to_json(const struct jset *js, const void *blk)
{
	json_t *o = json_object();
	if (o && block_to_json(js, blk, o)) {
		json_decref(o);
		o = NULL;
	}
	return o;
}

/* Adds the present fields of blk (already checked) to o. */
static int block_to_json(const struct jset *js, const void *blk, json_t *o)
{
	const uint8_t *b = blk;
	for (size_t i = 0; i < js->n; i++) {
		const struct jdef *d = &js->f[i];
		const void *p = b + d->off;
		char s[65];
		json_t *v = NULL;
		switch (d->type) {
		case JT_STR:
			if (!*(const char *)p)
				continue;
			v = json_string(p);
			break;
		case JT_U32:
			if (!*(const uint32_t *)p)
				continue;
			v = json_integer(*(const uint32_t *)p);
			break;
		case JT_TIME:
			if (*(const uint64_t *)p < 1000)
				continue; /* would print as the epoch, i.e. 0 = absent */
			qkm_time_str(*(const uint64_t *)p, s);
			v = json_string(s);
			break;
		case JT_IDHEX:
			qkm_id_hex(p, s);
			v = json_string(s);
			break;
		case JT_UUID:
			qkm_id_uuid_str(p, s);
			v = json_string(s);
			break;
		case JT_HASH:
			if (!*(const bool *)(b + d->has_off))
				continue;
			hex_put(p, 32, s);
			v = json_string(s);
			break;
		case JT_KEYTYPE:
			if (!*(const enum qkm_key_type *)p)
				continue;
			v = json_string(qkm_key_type_name(*(const enum qkm_key_type *)p));
			break;
		case JT_METHOD:
			if (!*(const enum qkm_relay_method *)p)
				continue;
			v = json_string(qkm_relay_method_name(*(const enum qkm_relay_method *)p));
			break;
		case JT_KMA:
			v = nested_to_json(&kma_set, p);
			break;
		case JT_HOPS: {
			const struct qkm_relayed_meta *rm = blk;
			if (!rm->n_hops)
				continue;
			if (!(v = json_array()))
				break;
			for (uint32_t h = 0; h < rm->n_hops; h++) {
				if (json_array_append_new(v, nested_to_json(&hop_set, &rm->hops[h]))) {
					json_decref(v);
					v = NULL;
					break;
				}
			}
			break;
		}
		}
		/* json_object_set_new takes v even when it fails, and refuses NULL. */
		if (!v || json_object_set_new(o, d->name, v))
			return QKM_ENOMEM;
	}
	return 0;
}

int qkm_keyfile_to_json(const struct qkm_keyfile *kf, bool with_data, json_t **out)
{
	const char *ef;
	json_t *o = NULL;
	int rc;

	*out = NULL;
	if ((rc = qkm_keyfile_check(kf, &ef)))
		return rc;
	rc = QKM_ENOMEM;
	if (!(o = json_object()))
		goto out;
	if (json_object_set_new(o, "kind", json_string(qkm_keyfile_kind_name(kf->kind))) ||
	    json_object_set_new(o, "version", json_integer(QKM_KEYFILE_VERSION)))
		goto out;
	if ((rc = block_to_json(kind_set(kf->kind), &kf->m, o)))
		goto out;
	if (with_data && kf->data && json_object_set_new(o, "key_data", b64_json(kf->data))) {
		rc = QKM_ENOMEM;
		goto out;
	}
	*out = o;
	o = NULL;
	rc = 0;
out:
	json_decref(o);
	return rc;
}

/* --- JSON -> struct --------------------------------------------------------- */

static int block_from_json(const struct jset *js, const json_t *o, void *blk, bool top,
			   const char **ef);

/* One member's value; on error *ef names the member (or a nested one). */
static int value_from_json(const struct jdef *d, const json_t *v, void *blk, const char **ef)
{
	uint8_t *b = blk;
	void *dst = b + d->off;
	const char *s = NULL;
	size_t n = 0;
	struct qkm_id id;
	char back[37];
	int rc;

	*ef = d->name;
	switch (d->type) {
	case JT_STR:
		if (!jstr(v, &s, &n) || n == 0 || n >= QKM_NAME_MAX || !qkm_name_valid(s))
			return QKM_EFORMAT;
		memcpy(dst, s, n + 1);
		return 0;
	case JT_U32: {
		if (!json_is_integer(v))
			return QKM_EFORMAT;
		json_int_t x = json_integer_value(v);
		if (x < 1 || x > UINT32_MAX)
			return QKM_EFORMAT;
		uint32_t u = (uint32_t)x;
		memcpy(dst, &u, sizeof(u));
		return 0;
	}
	case JT_TIME: {
		uint64_t ns;
		if (!jstr(v, &s, &n) || time_parse(s, n, &ns))
			return QKM_EFORMAT;
		memcpy(dst, &ns, sizeof(ns));
		return 0;
	}
	case JT_IDHEX:
	case JT_UUID:
		/* Parse, then demand the exact spelling we would write back. */
		if (!jstr(v, &s, &n) || n != (d->type == JT_IDHEX ? 32u : 36u) ||
		    qkm_id_parse(s, &id))
			return QKM_EFORMAT;
		if (d->type == JT_IDHEX)
			qkm_id_hex(&id, back);
		else
			qkm_id_uuid_str(&id, back);
		if (strcmp(back, s) != 0)
			return QKM_EFORMAT;
		memcpy(dst, &id, sizeof(id));
		return 0;
	case JT_HASH:
		if (!jstr(v, &s, &n) || hex_get(s, n, dst, 32))
			return QKM_EFORMAT;
		*(bool *)(b + d->has_off) = true;
		return 0;
	case JT_KEYTYPE:
		if (!jstr(v, &s, &n) || qkm_key_type_parse(s, dst))
			return QKM_EFORMAT;
		return 0;
	case JT_METHOD:
		if (!jstr(v, &s, &n) || qkm_relay_method_parse(s, dst))
			return QKM_EFORMAT;
		return 0;
	case JT_KMA:
		if (!json_is_object(v))
			return QKM_EFORMAT;
		return block_from_json(&kma_set, v, dst, false, ef);
	case JT_HOPS: {
		struct qkm_relayed_meta *rm = blk;
		size_t nh = json_array_size(v);
		/* An empty array is never written (no hops = no member). */
		if (!json_is_array(v) || nh == 0 || nh > QKM_KEYFILE_MAX_HOPS)
			return QKM_EFORMAT;
		for (size_t h = 0; h < nh; h++) {
			const json_t *hop = json_array_get(v, h);
			*ef = d->name;
			if (!json_is_object(hop))
				return QKM_EFORMAT;
			if ((rc = block_from_json(&hop_set, hop, &rm->hops[h], false, ef)))
				return rc;
			rm->n_hops = (uint32_t)(h + 1);
		}
		return 0;
	}
	}
	return QKM_EFORMAT;
}

static int block_from_json(const struct jset *js, const json_t *o, void *blk, bool top,
			   const char **ef)
{
	const char *key;
	json_t *v;
	int rc;

	/* jansson's iteration API takes a non-const object; nothing is changed. */
	json_object_foreach((json_t *)o, key, v) {
		const struct jdef *d = NULL;
		if (top && (!strcmp(key, "kind") || !strcmp(key, "version") ||
			    !strcmp(key, "key_data")))
			continue; /* read by qkm_keyfile_from_json */
		for (size_t i = 0; i < js->n && !d; i++)
			if (!strcmp(js->f[i].name, key))
				d = &js->f[i];
		if (!d) {
			*ef = key;
			return QKM_EFORMAT;
		}
		if ((rc = value_from_json(d, v, blk, ef)))
			return rc;
	}
	for (size_t i = 0; i < js->n; i++) {
		if (js->f[i].mandatory && !json_object_get(o, js->f[i].name)) {
			*ef = js->f[i].name;
			return QKM_EFORMAT;
		}
	}
	return 0;
}

int qkm_keyfile_from_json(const json_t *j, struct qkm_keyfile *kf, const char **err_field)
{
	const char *dummy = NULL;
	const char **ef = err_field ? err_field : &dummy;
	enum qkm_keyfile_kind kind;
	const json_t *v;
	const char *s;
	size_t n;
	int rc = QKM_EFORMAT;

	qkm_keyfile_init(kf, 0);
	*ef = "kind";
	if (!json_is_object(j))
		goto out;
	v = json_object_get(j, "kind");
	if (!jstr(v, &s, &n) || qkm_keyfile_kind_parse(s, &kind))
		goto out;
	*ef = "version";
	v = json_object_get(j, "version");
	if (!json_is_integer(v))
		goto out;
	if (json_integer_value(v) != QKM_KEYFILE_VERSION) {
		rc = QKM_EVERSION;
		goto out;
	}
	kf->kind = kind;
	if ((rc = block_from_json(kind_set(kind), j, &kf->m, true, ef)))
		goto out;
	*ef = "key_data";
	if ((v = json_object_get(j, "key_data"))) {
		if (!jstr(v, &s, &n)) {
			rc = QKM_EFORMAT;
			goto out;
		}
		if ((rc = b64_decode(s, n, &kf->data)))
			goto out;
	}
	if ((rc = qkm_keyfile_check(kf, ef)) == QKM_EINVAL)
		rc = QKM_EFORMAT;
out:
	if (rc)
		qkm_keyfile_fini(kf);
	else
		*ef = NULL;
	return rc;
}
