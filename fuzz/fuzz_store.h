/* fuzz_store.h - helpers the fuzz targets that drive state machines over
 * real stores share (fuzz_acq.c, fuzz_relay.c): a check that aborts, a
 * digest of a pool's blocks, by which a target
 * tells whether an input changed a store (and puts it back from its
 * template), key bytes from a seed, and a seed file written. Static: each
 * target includes it once. */
#ifndef QKM_FUZZ_STORE_H
#define QKM_FUZZ_STORE_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "store/store.h"

/* A broken invariant: libFuzzer reports the input. */
static void check(int cond)
{
	if (!cond)
		abort();
}

/* FNV-1a over the bytes of v. */
static void fold(uint64_t *h, const void *v, size_t n)
{
	const uint8_t *p = v;
	for (size_t i = 0; i < n; i++)
		*h = (*h ^ p[i]) * 1099511628211ull;
}

/* A qkm_store_blocks callback: folds a block's metadata into *(uint64_t *)arg. */
static int print_block(struct qkm_block *b, void *arg)
{
	uint64_t *h = arg;
	fold(h, &b->rowid, sizeof(b->rowid));
	fold(h, b->batch_id.b, sizeof(b->batch_id.b));
	fold(h, &b->first_index, sizeof(b->first_index));
	fold(h, &b->count, sizeof(b->count));
	fold(h, &b->used, sizeof(b->used));
	fold(h, &b->created_ns, sizeof(b->created_ns));
	uint32_t e[4] = {b->pool_kind, b->key_type, b->state, b->level};
	fold(h, e, sizeof(e));
	return 0;
}

/* n bytes of a xorshift stream from seed: key data both ends of a pool
 * agree on. */
static void fill(uint8_t *p, size_t n, uint32_t seed)
{
	uint32_t x = seed * 2654435761u + 1;
	for (size_t i = 0; i < n; i++) {
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		p[i] = (uint8_t)x;
	}
}

/* Writes a seed input to path, and names it on stdout. */
static void seed_write(const char *path, const uint8_t *p, size_t len)
{
	FILE *fp = fopen(path, "wb");
	check(fp != NULL);
	check(len == 0 || fwrite(p, 1, len, fp) == len);
	check(fclose(fp) == 0);
	printf("%s (%zu bytes)\n", path, len);
}

#endif
