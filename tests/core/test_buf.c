/* test_buf.c - bounded buffers and checked readers (core/buf.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include <openssl/crypto.h>

#include "core/buf.h"
#include "core/id.h"
#include "core/secret.h"

/* Whether all n bytes at p are zero. */
static bool all_zero(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i])
			return false;
	return true;
}

static void test_buf_max_enforced(void **state)
{
	struct qkm_buf b;
	qkm_buf_init(&b, 10, false);
	assert_int_equal(qkm_buf_put(&b, "0123456789", 10), 0);
	assert_int_equal(qkm_buf_put_u8(&b, 1), QKM_ETOOBIG);
	assert_int_equal(b.len, 10);
	qkm_buf_consume(&b, 4);
	assert_memory_equal(b.p, "456789", 6);
	qkm_buf_fini(&b);
}

static void test_reader_truncation(void **state)
{
	struct qkm_buf b;
	qkm_buf_init(&b, 64, true);
	assert_int_equal(qkm_buf_put_u16(&b, 0xabcd), 0);
	assert_int_equal(qkm_buf_put_u32(&b, 0x01020304), 0);
	assert_int_equal(qkm_buf_put_u64(&b, 0x1122334455667788ull), 0);
	struct qkm_rd r;
	uint16_t a;
	uint32_t c;
	uint64_t d;
	qkm_rd_init(&r, b.p, b.len);
	assert_int_equal(qkm_rd_u16(&r, &a), 0);
	assert_int_equal(a, 0xabcd);
	assert_int_equal(qkm_rd_u32(&r, &c), 0);
	assert_int_equal(c, 0x01020304);
	assert_int_equal(qkm_rd_u64(&r, &d), 0);
	assert_true(d == 0x1122334455667788ull);
	assert_int_equal(qkm_rd_u8(&r, (uint8_t *)&a), QKM_ETRUNC);
	qkm_rd_init(&r, b.p, 5);
	assert_int_equal(qkm_rd_u16(&r, &a), 0);
	assert_int_equal(qkm_rd_u32(&r, &c), QKM_ETRUNC);
	assert_int_equal(r.off, 2); /* cursor unchanged on failure */
	qkm_buf_fini(&b);
}

static void test_id_roundtrip(void **state)
{
	struct qkm_id id, back;
	char hex[33], uuid[37];
	uint64_t now = qkm_now_ns();
	assert_int_equal(qkm_id_uuid7(&id, now), 0);
	assert_int_equal(id.b[6] >> 4, 7);             /* version 7 */
	assert_int_equal(id.b[8] >> 6, 2);             /* variant 10 */
	uint64_t ms = 0;
	for (int i = 0; i < 6; i++)
		ms = ms << 8 | id.b[i];
	assert_int_equal(ms, now / 1000000u);          /* Unix time in ms, big-endian */
	/* Later IDs sort after earlier ones; the rest is random. */
	struct qkm_id later, again;
	assert_int_equal(qkm_id_uuid7(&later, now + 1000000u), 0);
	assert_true(memcmp(later.b, id.b, QKM_ID_LEN) > 0);
	assert_int_equal(qkm_id_uuid7(&again, now), 0);
	assert_false(qkm_id_eq(&id, &again));
	qkm_id_hex(&id, hex);
	qkm_id_uuid_str(&id, uuid);
	assert_int_equal(qkm_id_parse(hex, &back), 0);
	assert_true(qkm_id_eq(&id, &back));
	assert_int_equal(qkm_id_parse(uuid, &back), 0);
	assert_true(qkm_id_eq(&id, &back));
	for (int i = 0; i < QKM_ID_LEN; i++)
		back.b[i] = (uint8_t)(i * 17);
	qkm_id_uuid_str(&back, uuid);
	assert_string_equal(uuid, "00112233-4455-6677-8899-aabbccddeeff");
	assert_int_equal(qkm_id_parse("zz", &back), QKM_EFORMAT);
	assert_true(qkm_name_valid("node-A_1.x"));
	assert_false(qkm_name_valid(""));
	assert_false(qkm_name_valid("a b"));
	assert_false(qkm_name_valid("../etc"  "/passwd"));
}

/* A released secure block of 4 KiB or more comes back for the next
 * allocation of its size with no byte of its last owner left, whatever was
 * asked (raw or zeroed, secret or buffer); the cache's blocks do not count
 * as in use. */
static void test_secure_block_reused_wiped(void **state)
{
	size_t in_use = qkm_secure_in_use();
	struct qkm_secret *s = qkm_secret_new_raw(5000); /* an 8 KiB block */
	assert_non_null(s);
	assert_true(CRYPTO_secure_allocated(s->p));
	memset(s->p, 0xa5, s->len);
	uint8_t *was = s->p;
	qkm_secret_free(s);
	assert_int_equal(qkm_secure_in_use(), in_use);

	s = qkm_secret_new_raw(4097);
	assert_ptr_equal(s->p, was);
	assert_true(all_zero(s->p, CRYPTO_secure_actual_size(s->p)));
	memset(s->p, 0x5a, s->len);
	qkm_secret_free(s);

	struct qkm_buf b;
	qkm_buf_init(&b, 8192, true);
	assert_int_equal(qkm_buf_reserve(&b, 8192), 0);
	assert_ptr_equal(b.p, was);
	assert_true(all_zero(b.p, 8192));
	memset(b.p, 0x3c, 8192); /* written past len, as a socket read does */
	qkm_buf_fini(&b);
	s = qkm_secret_new(6000);
	assert_ptr_equal(s->p, was);
	assert_true(all_zero(s->p, 8192));
	qkm_secret_free(s);
	assert_int_equal(qkm_secure_in_use(), in_use);
}

/* Blocks kept for reuse never make an allocation fail: as many 32 KiB
 * secrets fit in the heap with 64 KiB blocks kept as with none. */
static size_t fill_32k(struct qkm_secret **s, size_t max)
{
	size_t n = 0;
	while (n < max && (s[n] = qkm_secret_new_raw(32u << 10)))
		n++;
	return n;
}

static void test_secure_cache_yields_to_allocation(void **state)
{
	struct qkm_secret *s[64], *big[8];
	size_t n0 = fill_32k(s, 64);
	assert_true(n0 > 8 && n0 < 64); /* the 1 MiB heap ran out */
	for (size_t i = 0; i < n0; i++)
		qkm_secret_free(s[i]);
	for (int i = 0; i < 8; i++)
		assert_non_null(big[i] = qkm_secret_new_raw(64u << 10));
	for (int i = 0; i < 8; i++)
		qkm_secret_free(big[i]);
	assert_int_equal(fill_32k(s, 64), n0);
	for (size_t i = 0; i < n0; i++)
		qkm_secret_free(s[i]);
}

/* The cache keeps at most 32 blocks of a size (core/secret.c); more go back
 * to OpenSSL's heap, which wipes them itself. Every kept one comes back
 * zero, and the heap is as full as before with all of them given back. */
static void test_secure_cache_bounded(void **state)
{
	struct qkm_secret *s[40];
	for (int i = 0; i < 40; i++) {
		assert_non_null(s[i] = qkm_secret_new_raw(4096));
		memset(s[i]->p, 0x77, 4096);
	}
	size_t used = CRYPTO_secure_used(); /* the 40, and no kept 4 KiB block */
	for (int i = 0; i < 40; i++)
		qkm_secret_free(s[i]);
	assert_int_equal(CRYPTO_secure_used(), used - 8 * 4096);
	for (int i = 0; i < 40; i++) {
		assert_non_null(s[i] = qkm_secret_new_raw(4096));
		assert_true(all_zero(s[i]->p, 4096));
	}
	for (int i = 0; i < 40; i++)
		qkm_secret_free(s[i]);
}

int main(void)
{
	/* 1 MiB: the last test takes all of it. */
	if (qkm_secret_heap_init(1u << 20))
		return 1;
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_buf_max_enforced),
		cmocka_unit_test(test_reader_truncation),
		cmocka_unit_test(test_id_roundtrip),
		cmocka_unit_test(test_secure_block_reused_wiped),
		cmocka_unit_test(test_secure_cache_bounded),
		cmocka_unit_test(test_secure_cache_yields_to_allocation),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
