/* rng.h - key material from the operating system's non-deterministic RNG
 * (getrandom(2)) or a hardware RNG device (R-REL-3), drawn ahead of need by
 * a helper thread into a ring in the secure heap. A relay's origin takes
 * its 64 KiB from the ring in a copy instead of waiting the 170 us the
 * kernel takes to make them; what the ring lacks is drawn on the spot. Every
 * byte is handed out once: the ring wipes what it hands out. */
#ifndef QKM_CORE_RNG_H
#define QKM_CORE_RNG_H

#include <stddef.h>
#include <stdint.h>

#include "core/err.h"

struct qkm_rng;

/* A source reading device (a path, e.g. /dev/hwrng, opened once and read as
 * a stream by the helper and the callers alike), or getrandom(2) if device
 * is NULL or "", whose helper keeps up to cap bytes (cap > 0) drawn ahead.
 * NULL when out of memory (secure heap included). A helper thread that
 * cannot start leaves a source that draws on the spot. A device that cannot
 * be opened yet, or whose reads fail, is opened anew for each draw, which
 * fails while it does (relays resume when it works again); a device that
 * ends (a read returns nothing) gives nothing more. */
struct qkm_rng *qkm_rng_new(const char *device, size_t cap);

/* Fills p[0..n) with bytes no caller got before: first from the ring, the
 * rest drawn now. 0, QKM_ECRYPTO when getrandom fails, QKM_EIO when the
 * device cannot be opened or ends; p is wiped then. Thread-safe. */
int qkm_rng_fill(struct qkm_rng *g, uint8_t *p, size_t n) QKM_MUST_CHECK;

/* Bytes the ring holds now (tests, stats). */
size_t qkm_rng_ready(struct qkm_rng *g);

/* Stops the helper, wipes the ring and frees; NULL is a no-op. */
void qkm_rng_free(struct qkm_rng *g);

#endif
