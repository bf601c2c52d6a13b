/* ck.c - Ck/Mk frame codec (ck.h). Strict: every field present, every
 * length and name checked, so the controller and the agent act only on
 * well-formed input. */
#include "proto/ck.h"

#include <stdio.h>
#include <string.h>

int qkm_ck_seq_frame(struct qkm_buf *b, uint16_t type, int64_t seq)
{
	size_t start;
	int rc = qkm_frame_begin(b, type, 0, &start);
	if (!rc)
		rc = qkm_put_u64(b, QKM_T_SEQ, (uint64_t)seq);
	if (!rc)
		rc = qkm_frame_end(b, start);
	return rc;
}

int qkm_ck_seq_parse(const struct qkm_frame *f, int64_t *seq)
{
	uint64_t v;
	if (qkm_tlv_u64(f->body, f->body_len, QKM_T_SEQ, &v) || v > INT64_MAX)
		return QKM_EFORMAT;
	*seq = (int64_t)v;
	return 0;
}

int qkm_ck_records_frame(struct qkm_buf *b, const struct qkm_lc_event *evs, size_t n)
{
	size_t start, e;
	int rc = qkm_frame_begin(b, QKM_MSG_CTL_RECORDS, 0, &start);
	for (size_t i = 0; !rc && i < n; i++) {
		const struct qkm_lc_event *ev = &evs[i];
		if ((rc = qkm_put_open(b, QKM_T_ENTRY, &e)) ||
		    (rc = qkm_put_u64(b, QKM_T_SEQ, (uint64_t)ev->seq)) ||
		    (rc = qkm_put_u64(b, QKM_T_TIME, ev->ts_ns)) ||
		    (rc = qkm_put_str(b, QKM_T_EVENT, ev->event)) ||
		    (rc = qkm_put_str(b, QKM_T_KIND, ev->key_kind)) ||
		    (rc = qkm_put_str(b, QKM_T_KEYID, ev->key_id)) ||
		    (rc = qkm_put_str(b, QKM_T_PEER, ev->peer)) ||
		    (rc = qkm_put_str(b, QKM_T_DETAIL, ev->detail)))
			break;
		rc = qkm_put_close(b, e);
	}
	if (!rc)
		rc = qkm_frame_end(b, start);
	return rc;
}

/* A string TLV that may be empty (qkm_tlv_str refuses nothing but NUL and
 * overlong values). */
static int str_field(const uint8_t *p, size_t len, uint16_t tag, char *out, size_t outsz)
{
	const uint8_t *v;
	uint32_t vl;
	if (qkm_tlv_bytes(p, len, tag, &v, &vl) || vl >= outsz || memchr(v, 0, vl))
		return QKM_EFORMAT;
	memcpy(out, v, vl);
	out[vl] = '\0';
	return 0;
}

/* Calls one(v, vl, k, arg) for each ENTRY of f's body in order, k from 0;
 * *n = how many once all were accepted. QKM_ETOOBIG past max entries,
 * QKM_EFORMAT for a malformed list or an entry one refused. */
static int each_entry(const struct qkm_frame *f, size_t max,
		      int (*one)(const uint8_t *v, uint32_t vl, size_t k, void *arg), void *arg,
		      size_t *n)
{
	size_t off = 0, k = 0;
	uint16_t tag;
	const uint8_t *v;
	uint32_t vl;
	int r;
	*n = 0;
	while ((r = qkm_tlv_next(f->body, f->body_len, &off, &tag, &v, &vl)) == 1) {
		if (tag != QKM_T_ENTRY)
			continue;
		if (k == max)
			return QKM_ETOOBIG;
		if (one(v, vl, k, arg))
			return QKM_EFORMAT;
		k++;
	}
	if (r < 0)
		return QKM_EFORMAT;
	*n = k;
	return 0;
}

static int record_one(const uint8_t *v, uint32_t vl, size_t k, void *arg)
{
	struct qkm_lc_event *evs = arg, *ev = &evs[k];
	uint64_t seq;
	memset(ev, 0, sizeof(*ev));
	if (qkm_tlv_check(v, vl) || qkm_tlv_u64(v, vl, QKM_T_SEQ, &seq) || seq == 0 ||
	    seq > INT64_MAX || qkm_tlv_u64(v, vl, QKM_T_TIME, &ev->ts_ns) ||
	    str_field(v, vl, QKM_T_EVENT, ev->event, sizeof(ev->event)) || !ev->event[0] ||
	    str_field(v, vl, QKM_T_KIND, ev->key_kind, sizeof(ev->key_kind)) ||
	    str_field(v, vl, QKM_T_KEYID, ev->key_id, sizeof(ev->key_id)) ||
	    str_field(v, vl, QKM_T_PEER, ev->peer, sizeof(ev->peer)) ||
	    str_field(v, vl, QKM_T_DETAIL, ev->detail, sizeof(ev->detail)))
		return QKM_EFORMAT;
	ev->seq = (int64_t)seq;
	/* Unsigned: after INT64_MAX the next number is out of range, not an
	 * overflow. */
	if (k > 0 && seq != (uint64_t)evs[k - 1].seq + 1)
		return QKM_EFORMAT;
	return 0;
}

int qkm_ck_records_parse(const struct qkm_frame *f, struct qkm_lc_event *evs, size_t max,
			 size_t *n)
{
	return each_entry(f, max, record_one, evs, n);
}

int qkm_ck_routes_frame(struct qkm_buf *b, const struct qkm_node_route *r, size_t n)
{
	size_t start, e;
	int rc = qkm_frame_begin(b, QKM_MSG_CTL_ROUTES, 0, &start);
	for (size_t i = 0; !rc && i < n; i++) {
		if ((rc = qkm_put_open(b, QKM_T_ENTRY, &e)) ||
		    (rc = qkm_put_str(b, QKM_T_DST, r[i].to)))
			break;
		for (uint32_t j = 0; !rc && j < r[i].n && j < QKM_MAX_PATH; j++)
			rc = qkm_put_str(b, QKM_T_PATH, r[i].path[j]);
		if (!rc)
			rc = qkm_put_close(b, e);
	}
	if (!rc)
		rc = qkm_frame_end(b, start);
	return rc;
}

static int route_parse(const uint8_t *v, size_t vl, struct qkm_node_route *r)
{
	size_t off = 0;
	uint16_t tag;
	const uint8_t *p;
	uint32_t pl;
	int x;
	memset(r, 0, sizeof(*r));
	if (qkm_tlv_check(v, vl) || qkm_tlv_str(v, vl, QKM_T_DST, r->to, sizeof(r->to), true))
		return QKM_EFORMAT;
	while ((x = qkm_tlv_next(v, vl, &off, &tag, &p, &pl)) == 1) {
		if (tag != QKM_T_PATH)
			continue;
		if (r->n == QKM_MAX_PATH || pl == 0 || pl >= QKM_NAME_MAX)
			return QKM_EFORMAT;
		memcpy(r->path[r->n], p, pl);
		r->path[r->n][pl] = '\0';
		if (!qkm_name_valid(r->path[r->n]))
			return QKM_EFORMAT;
		for (uint32_t j = 0; j < r->n; j++)
			if (strcmp(r->path[j], r->path[r->n]) == 0)
				return QKM_EFORMAT; /* a loop */
		r->n++;
	}
	if (x < 0 || r->n < 2 || strcmp(r->path[r->n - 1], r->to) != 0)
		return QKM_EFORMAT;
	return 0;
}

static int route_one(const uint8_t *v, uint32_t vl, size_t k, void *arg)
{
	struct qkm_node_route *r = arg;
	if (route_parse(v, vl, &r[k]))
		return QKM_EFORMAT;
	for (size_t j = 0; j < k; j++)
		if (strcmp(r[j].to, r[k].to) == 0)
			return QKM_EFORMAT; /* two routes to one node */
	return 0;
}

int qkm_ck_routes_parse(const struct qkm_frame *f, struct qkm_node_route *r, size_t max,
			size_t *n)
{
	return each_entry(f, max, route_one, r, n);
}

int qkm_ck_saes_frame(struct qkm_buf *b, const struct qkm_sae_entry *e, size_t n)
{
	size_t start, o;
	int rc = qkm_frame_begin(b, QKM_MSG_CTL_SAES, 0, &start);
	for (size_t i = 0; !rc && i < n; i++)
		if (!(rc = qkm_put_open(b, QKM_T_ENTRY, &o)) &&
		    !(rc = qkm_put_str(b, QKM_T_NAME, e[i].id)) &&
		    !(rc = qkm_put_str(b, QKM_T_PEER, e[i].node)) &&
		    !(rc = qkm_put_u8(b, QKM_T_STATE, e[i].revoked ? 1 : 0)))
			rc = qkm_put_close(b, o);
	if (!rc)
		rc = qkm_frame_end(b, start);
	return rc;
}

static int sae_one(const uint8_t *v, uint32_t vl, size_t k, void *arg)
{
	struct qkm_sae_entry *e = arg;
	uint8_t st;
	if (qkm_tlv_check(v, vl) || qkm_tlv_str(v, vl, QKM_T_NAME, e[k].id, sizeof(e[k].id), true) ||
	    qkm_tlv_str(v, vl, QKM_T_PEER, e[k].node, sizeof(e[k].node), true) ||
	    qkm_tlv_u8(v, vl, QKM_T_STATE, &st) || st > 1)
		return QKM_EFORMAT;
	e[k].revoked = st == 1;
	return 0;
}

int qkm_ck_saes_parse(const struct qkm_frame *f, struct qkm_sae_entry *e, size_t max, size_t *n)
{
	return each_entry(f, max, sae_one, e, n);
}

int qkm_ck_json_frame(struct qkm_buf *b, uint16_t type, uint32_t req, const char *json, size_t len)
{
	size_t start;
	int rc = qkm_frame_begin(b, type, req, &start);
	if (!rc)
		rc = qkm_put_tlv(b, QKM_T_JSON, json, len);
	if (!rc)
		rc = qkm_frame_end(b, start);
	return rc;
}

int qkm_ck_json_parse(const struct qkm_frame *f, const char **json, size_t *len)
{
	const uint8_t *v;
	uint32_t vl;
	if (qkm_tlv_bytes(f->body, f->body_len, QKM_T_JSON, &v, &vl))
		return QKM_EFORMAT;
	*json = (const char *)v;
	*len = vl;
	return 0;
}

int qkm_ck_relay_frame(struct qkm_buf *b, const char *to, bool set_rate, uint64_t rate,
		       uint32_t bytes)
{
	size_t start, e;
	int rc = qkm_frame_begin(b, QKM_MSG_CTL_RELAY, 0, &start);
	if (!rc && !(rc = qkm_put_open(b, QKM_T_ENTRY, &e)) && !(rc = qkm_put_str(b, QKM_T_DST, to)))
		rc = set_rate ? qkm_put_u64(b, QKM_T_RATE, rate) : qkm_put_u32(b, QKM_T_LEN, bytes);
	if (!rc)
		rc = qkm_put_close(b, e);
	if (!rc)
		rc = qkm_frame_end(b, start);
	return rc;
}

int qkm_ck_relay_parse(const struct qkm_frame *f, char to[static QKM_NAME_MAX], bool *set_rate,
		       uint64_t *rate, uint32_t *bytes)
{
	const uint8_t *v;
	uint32_t vl;
	*set_rate = false;
	*rate = 0;
	*bytes = 0;
	if (qkm_tlv_bytes(f->body, f->body_len, QKM_T_ENTRY, &v, &vl) || qkm_tlv_check(v, vl) ||
	    qkm_tlv_str(v, vl, QKM_T_DST, to, QKM_NAME_MAX, true))
		return QKM_EFORMAT;
	int r = qkm_tlv_u64(v, vl, QKM_T_RATE, rate);
	if (r == 0) {
		*set_rate = true;
		return 0;
	}
	if (r != QKM_ENOTFOUND || qkm_tlv_u32(v, vl, QKM_T_LEN, bytes) || *bytes == 0)
		return QKM_EFORMAT;
	return 0;
}
