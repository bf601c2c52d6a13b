/* range.h - a KMA-key block range (store/store.h: struct qkm_range) as a
 * nested TLV in frames that name key material by where it lies (SUPPLY,
 * RELAY, XOR_NEXT): BATCH, FIRST, UNIT, OFF, LEN (docs/protocol.md). */
#ifndef QKM_KMA_RANGE_H
#define QKM_KMA_RANGE_H

#include <stdint.h>

#include "core/buf.h"
#include "store/store.h"

#define QKM_RANGE_MAX_LEN (64u << 20) /* larger than any block */

/* Appends g as a nested TLV with this tag (QKM_T_RANGE, QKM_T_DATA). */
int qkm_put_range(struct qkm_buf *b, uint16_t tag, const struct qkm_range *g) QKM_MUST_CHECK;
/* Parses one (zeroing g first); QKM_EPEER if a field is missing or bad,
 * the unit or the length is 0, or the length is over QKM_RANGE_MAX_LEN. */
int qkm_parse_range(const uint8_t *v, uint32_t vl, struct qkm_range *g) QKM_MUST_CHECK;

#endif
