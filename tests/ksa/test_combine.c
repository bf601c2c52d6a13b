/* test_combine.c - X25519 key combination (ksa/combine.c), R-SUP-9. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include <openssl/rand.h>

#include "ksa/combine.h"

static int setup(void **state)
{
	return qkm_secret_heap_init(1u << 20);
}

/* Both ends derive the same secret and so the same combined key; the
 * combined key differs from the QKD key; a different KSA-key ID gives a
 * different mask (keys of one round are independent). */
static void test_both_ends_agree(void **state)
{
	uint8_t pa[32], pb[32], k1[64], k2[64], raw[64], k3[64];
	struct qkm_x25519 *a = qkm_x25519_new(pa), *b = qkm_x25519_new(pb);
	struct qkm_secret *sa, *sb;
	struct qkm_id id, id2;
	assert_non_null(a);
	assert_non_null(b);
	assert_int_equal(qkm_x25519_shared(a, pb, &sa), 0);
	assert_int_equal(qkm_x25519_shared(b, pa, &sb), 0);
	assert_memory_equal(sa->p, sb->p, 32);
	assert_int_equal(qkm_id_uuid7(&id, qkm_now_ns()), 0);
	assert_int_equal(qkm_id_uuid7(&id2, qkm_now_ns()), 0);
	assert_int_equal(RAND_bytes(raw, sizeof(raw)), 1);
	memcpy(k1, raw, 64);
	memcpy(k2, raw, 64);
	memcpy(k3, raw, 64);
	assert_int_equal(qkm_combine_x25519(k1, 64, sa, &id), 0);
	assert_int_equal(qkm_combine_x25519(k2, 64, sb, &id), 0);
	assert_int_equal(qkm_combine_x25519(k3, 64, sa, &id2), 0);
	assert_memory_equal(k1, k2, 64);
	assert_memory_not_equal(k1, raw, 64);
	assert_memory_not_equal(k1, k3, 64);
	/* XOR combiner: the same mask again gives the QKD key back, i.e. K' is
	 * K XOR a string independent of K (never weaker than K alone). */
	assert_int_equal(qkm_combine_x25519(k1, 64, sa, &id), 0);
	assert_memory_equal(k1, raw, 64);
	qkm_secret_free(sa);
	qkm_secret_free(sb);
	qkm_x25519_free(a);
	qkm_x25519_free(b);
}

/* A small-order peer key (all zeros) is refused, not combined. */
static void test_bad_peer_key(void **state)
{
	uint8_t pa[32], zero[32] = {0};
	struct qkm_x25519 *a = qkm_x25519_new(pa);
	struct qkm_secret *ss = NULL;
	assert_int_equal(qkm_x25519_shared(a, zero, &ss), QKM_ECRYPTO);
	assert_null(ss);
	qkm_x25519_free(a);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_both_ends_agree),
		cmocka_unit_test(test_bad_peer_key),
	};
	return cmocka_run_group_tests(tests, setup, NULL);
}
