/* test_buf.c - bounded buffers and checked readers (core/buf.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "core/buf.h"
#include "core/id.h"

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
	assert_int_equal(qkm_id_parse("zz", &back), QKM_EFORMAT);
	assert_true(qkm_name_valid("node-A_1.x"));
	assert_false(qkm_name_valid(""));
	assert_false(qkm_name_valid("a b"));
	assert_false(qkm_name_valid("../etc"  "/passwd"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_buf_max_enforced),
		cmocka_unit_test(test_reader_truncation),
		cmocka_unit_test(test_id_roundtrip),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
