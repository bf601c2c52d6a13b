/* xor.h - out = a ^ b over n bytes, 8 at a time (the one-time pad of key
 * relay, kma/relay.c; the baseline of bench/relay). out may be a or b. */
#ifndef QKM_CORE_XOR_H
#define QKM_CORE_XOR_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

static inline void qkm_xor(uint8_t *out, const uint8_t *a, const uint8_t *b, size_t n)
{
	size_t i = 0;
	for (; i + 8 <= n; i += 8) {
		uint64_t x, y;
		memcpy(&x, a + i, 8);
		memcpy(&y, b + i, 8);
		x ^= y;
		memcpy(out + i, &x, 8);
	}
	for (; i < n; i++)
		out[i] = a[i] ^ b[i];
}

#endif
