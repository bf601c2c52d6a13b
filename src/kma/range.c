/* range.c - block ranges in frames (range.h). */
#include "kma/range.h"
#include "proto/frame.h"

#include <string.h>

int qkm_put_range(struct qkm_buf *b, uint16_t tag, const struct qkm_range *g)
{
	size_t e;
	int rc = qkm_put_open(b, tag, &e);
	if (!rc)
		rc = qkm_put_id(b, QKM_T_BATCH, &g->batch);
	if (!rc)
		rc = qkm_put_u32(b, QKM_T_FIRST, g->first_index);
	if (!rc)
		rc = qkm_put_u32(b, QKM_T_UNIT, g->unit_bytes);
	if (!rc)
		rc = qkm_put_u32(b, QKM_T_OFF, g->off);
	if (!rc)
		rc = qkm_put_u32(b, QKM_T_LEN, g->len);
	if (!rc)
		rc = qkm_put_close(b, e);
	return rc;
}

int qkm_parse_range(const uint8_t *v, uint32_t vl, struct qkm_range *g)
{
	memset(g, 0, sizeof(*g));
	if (qkm_tlv_check(v, vl) || qkm_tlv_id(v, vl, QKM_T_BATCH, &g->batch) ||
	    qkm_tlv_u32(v, vl, QKM_T_FIRST, &g->first_index) ||
	    qkm_tlv_u32(v, vl, QKM_T_UNIT, &g->unit_bytes) || !g->unit_bytes ||
	    qkm_tlv_u32(v, vl, QKM_T_OFF, &g->off) || qkm_tlv_u32(v, vl, QKM_T_LEN, &g->len) ||
	    !g->len || g->len > QKM_RANGE_MAX_LEN)
		return QKM_EPEER;
	return 0;
}
