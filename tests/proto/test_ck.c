/* test_ck.c - the Ck/Mk frame codec (proto/ck.c): a node's life-cycle
 * records reach the manager only as a run of consecutive sequence numbers
 * (R-LC-1, docs/protocol.md section 4.5), up to the last one there is. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "core/buf.h"
#include "proto/ck.h"
#include "proto/frame.h"

static struct qkm_lc_event evs[3], got[QKM_CK_RECORDS_MAX];

/* Records with the sequence numbers seqs[0..n), encoded and parsed back:
 * the parser's answer, *out the records it accepted. */
static int round_trip(const int64_t *seqs, size_t n, size_t *out)
{
	struct qkm_buf b;
	struct qkm_frame f;
	for (size_t i = 0; i < n; i++) {
		memset(&evs[i], 0, sizeof(evs[i]));
		evs[i].seq = seqs[i];
		evs[i].ts_ns = 1780000000000000000ull + i;
		snprintf(evs[i].event, sizeof(evs[i].event), "stored");
		snprintf(evs[i].key_kind, sizeof(evs[i].key_kind), "kma");
		snprintf(evs[i].key_id, sizeof(evs[i].key_id), "d7e08b44580e113d89c0dba900000000");
		snprintf(evs[i].peer, sizeof(evs[i].peer), "B");
	}
	qkm_buf_init(&b, QKM_FRAME_MAX, false);
	assert_int_equal(qkm_ck_records_frame(&b, evs, n), 0);
	assert_int_equal(qkm_frame_parse(b.p, b.len, &f), 0);
	int rc = qkm_ck_records_parse(&f, got, QKM_CK_RECORDS_MAX, out);
	qkm_buf_fini(&b);
	return rc;
}

static void test_records_sequence(void **state)
{
	(void)state;
	size_t n = 99;
	assert_int_equal(round_trip((const int64_t[]){41, 42, 43}, 3, &n), 0);
	assert_int_equal(n, 3);
	assert_int_equal(got[2].seq, 43);
	assert_string_equal(got[2].key_id, evs[2].key_id);
	assert_int_equal(round_trip((const int64_t[]){41, 43}, 2, &n), QKM_EFORMAT);
	assert_int_equal(n, 0);
	assert_int_equal(round_trip((const int64_t[]){0}, 1, &n), QKM_EFORMAT);
	assert_int_equal(round_trip((const int64_t[]){-1}, 1, &n), QKM_EFORMAT);
}

/* The last sequence number is accepted; nothing follows it. The check for
 * a gap once computed INT64_MAX + 1 (signed overflow, under UBSan an abort;
 * fuzz/corpus/ck/records-seq-max is this frame). */
static void test_records_sequence_end(void **state)
{
	(void)state;
	size_t n = 99;
	assert_int_equal(round_trip((const int64_t[]){INT64_MAX - 1, INT64_MAX}, 2, &n), 0);
	assert_int_equal(n, 2);
	assert_int_equal(got[1].seq, INT64_MAX);
	assert_int_equal(round_trip((const int64_t[]){INT64_MAX, 1}, 2, &n), QKM_EFORMAT);
	assert_int_equal(n, 0);
	assert_int_equal(round_trip((const int64_t[]){INT64_MAX, INT64_MIN}, 2, &n), QKM_EFORMAT);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_records_sequence),
		cmocka_unit_test(test_records_sequence_end),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
