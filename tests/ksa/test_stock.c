/* test_stock.c - the stock of KSA keys made ahead of demand (ksa/stock.c),
 * on its own: refill sizing, the ring of keys (order, capacity, each key
 * out once), the record of taken keys the main thread settles, the entry
 * limit, and takers in several threads at once. The supply side (keys
 * recorded STOCKED, then SUPPLIED) is in test_supply.c. R-SUP-8: a key
 * leaves the stock at most once. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/id.h"
#include "core/secret.h"
#include "ksa/stock.h"

#define NS 1000000000ull
#define T0 (1700000000ull * NS)

/* ---- helpers ------------------------------------------------------------ */

/* Key k of a test: its ID and bytes follow from (tag, k) alone, so a key
 * read back can be checked against its ID, and no two keys share either. */
static void key_id(uint32_t tag, uint32_t k, struct qkm_id *id)
{
	memset(id, 0, sizeof(*id));
	for (int i = 0; i < 4; i++) {
		id->b[i] = (uint8_t)(tag >> (24 - 8 * i));
		id->b[4 + i] = (uint8_t)(k >> (24 - 8 * i));
	}
	id->b[15] = 0x5a;
}

static void key_bytes(uint32_t tag, uint32_t k, uint8_t *p, size_t len)
{
	uint32_t x = (tag * 2654435761u) ^ (k * 40503u) ^ 0x9e3779b9u;
	for (size_t i = 0; i < len; i++) {
		x ^= x << 13, x ^= x >> 17, x ^= x << 5;
		p[i] = (uint8_t)x;
	}
}

/* Adds keys first..first+n-1 of tag to entry i; the result of qkm_stock_add. */
static int add_keys(struct qkm_stock *st, int i, uint32_t tag, uint32_t first, uint32_t n,
		    uint32_t bits)
{
	size_t b = bits / 8;
	struct qkm_id *ids = calloc(n ? n : 1, sizeof(*ids));
	uint8_t *data = malloc(n ? n * b : 1);
	assert_non_null(ids);
	assert_non_null(data);
	for (uint32_t k = 0; k < n; k++) {
		key_id(tag, first + k, &ids[k]);
		key_bytes(tag, first + k, data + k * b, b);
	}
	int rc = qkm_stock_add(st, i, n, ids, data, T0);
	free(ids);
	free(data);
	return rc;
}

/* The key number of an ID made by key_id for tag. */
static uint32_t key_no(uint32_t tag, const struct qkm_id *id)
{
	struct qkm_id want;
	uint32_t k = (uint32_t)id->b[4] << 24 | (uint32_t)id->b[5] << 16 |
		     (uint32_t)id->b[6] << 8 | id->b[7];
	key_id(tag, k, &want);
	assert_true(qkm_id_eq(&want, id));
	return k;
}

/* Takes n keys and asserts they are keys first..first+n-1 of tag, in order,
 * with their bytes. */
static void expect_take(struct qkm_stock *st, const char *master, const char *slave, uint32_t bits,
			uint32_t n, uint32_t tag, uint32_t first, bool *low)
{
	size_t b = bits / 8;
	struct qkm_id *ids = calloc(n, sizeof(*ids));
	uint8_t *data = malloc(n * b), *want = malloc(b);
	assert_true(ids && data && want);
	assert_int_equal(qkm_stock_take(st, master, slave, bits, n, ids, data, T0, low), 0);
	for (uint32_t k = 0; k < n; k++) {
		assert_int_equal(key_no(tag, &ids[k]), first + k);
		key_bytes(tag, first + k, want, b);
		assert_memory_equal(data + k * b, want, b);
	}
	free(ids);
	free(data);
	free(want);
}

/* How many keys the next refill of entry i gives (it is then under way). */
static uint32_t refill(struct qkm_stock *st, int i, const char *peer, uint64_t now)
{
	char master[QKM_NAME_MAX], slave[QKM_NAME_MAX];
	uint32_t size = 0;
	return qkm_stock_refill(st, i, peer, master, slave, &size, now);
}

/* ---- tests -------------------------------------------------------------- */

/* An entry per (master, slave, size); sizes the stock cannot hold are
 * refused; the names of an entry come back for the records. */
static void test_want(void **state)
{
	struct qkm_stock *st = qkm_stock_new();
	assert_non_null(st);
	int a = qkm_stock_want(st, "B", "sae-alice", "sae-bob", 256);
	assert_int_equal(a, 0);
	assert_int_equal(qkm_stock_want(st, "B", "sae-alice", "sae-bob", 256), a);
	int b = qkm_stock_want(st, "B", "sae-alice", "sae-bob", 128);
	int c = qkm_stock_want(st, "B", "sae-alice", "sae-carol", 256);
	int d = qkm_stock_want(st, "C", "sae-eve", "sae-dave", 256);
	assert_int_equal(b, 1);
	assert_int_equal(c, 2);
	assert_int_equal(d, 3);
	/* 0 bits, not whole bytes, or more than a sixteenth of an entry's
	 * ring (64 KiB) per key: no entry; such requests take the round trip. */
	assert_int_equal(qkm_stock_want(st, "B", "sae-alice", "sae-bob", 0), -1);
	assert_int_equal(qkm_stock_want(st, "B", "sae-alice", "sae-bob", 260), -1);
	assert_int_equal(qkm_stock_want(st, "B", "sae-alice", "sae-bob", 8 * 65536 + 8), -1);
	assert_int_equal(qkm_stock_want(st, "B", "sae-alice", "sae-bob", 8 * 65536), 4);

	char peer[QKM_NAME_MAX], master[QKM_NAME_MAX], slave[QKM_NAME_MAX];
	qkm_stock_names(st, d, peer, master, slave);
	assert_string_equal(peer, "C");
	assert_string_equal(master, "sae-eve");
	assert_string_equal(slave, "sae-dave");
	qkm_stock_names(st, 5, peer, master, slave); /* no such entry */
	assert_string_equal(peer, "");
	assert_string_equal(master, "");
	assert_string_equal(slave, "");
	assert_int_equal(qkm_stock_count(st, NULL), 0);
	qkm_stock_free(st);
}

/* How many keys a refill asks for: the smallest batch while no demand is
 * known, a second of the demand once it is (from the window still open,
 * once it is a tenth of a second old), never more than the ring holds,
 * less what refills under way bring (so rounds in a row do not fill it
 * past its target: the supply would record keys STOCKED that then do not
 * fit), at most one round's worth at a time, and only once a quarter of
 * the target is missing. */
static void test_refill_sizing(void **state)
{
	struct qkm_stock *st = qkm_stock_new();
	char master[QKM_NAME_MAX], slave[QKM_NAME_MAX];
	uint32_t size = 0;
	bool low;
	int i = qkm_stock_want(st, "B", "sae-alice", "sae-bob", 64);
	assert_int_equal(i, 0);

	/* No demand seen yet: the smallest batch, with the entry's names. */
	assert_int_equal(qkm_stock_refill(st, i, "B", master, slave, &size, T0),
			 QKM_STOCK_MIN_KEYS);
	assert_string_equal(master, "sae-alice");
	assert_string_equal(slave, "sae-bob");
	assert_int_equal(size, 64);
	/* Under way, and all the target: no second refill, however often
	 * asked. */
	assert_int_equal(refill(st, i, "B", T0), 0);
	assert_int_equal(refill(st, i, "B", T0 + NS / 50), 0);
	/* It failed: the next refill asks for the same again. */
	qkm_stock_refill_failed(st, i, QKM_STOCK_MIN_KEYS);
	assert_int_equal(refill(st, i, "B", T0), QKM_STOCK_MIN_KEYS);
	/* Cut short: the part that is not coming is asked for again. */
	qkm_stock_refill_failed(st, i, 40);
	assert_int_equal(refill(st, i, "B", T0), 40);
	/* Another peer's refills leave this entry alone (and do not count
	 * as under way); unknown entries give nothing. */
	qkm_stock_refill_failed(st, i, QKM_STOCK_MIN_KEYS);
	assert_int_equal(refill(st, i, "C", T0), 0);
	assert_int_equal(refill(st, i, "B", T0), QKM_STOCK_MIN_KEYS);
	assert_int_equal(refill(st, 1, "B", T0), 0);
	assert_int_equal(refill(st, -1, "B", T0), 0);
	assert_int_equal(refill(st, QKM_STOCK_MAX_ENTRIES, "B", T0), 0);

	/* The refill arrived: full, nothing more wanted. */
	assert_int_equal(add_keys(st, i, 1, 0, QKM_STOCK_MIN_KEYS, 64), 0);
	assert_int_equal(qkm_stock_count(st, "B"), QKM_STOCK_MIN_KEYS);
	assert_int_equal(refill(st, i, "B", T0), 0);
	/* 31 missing: not yet. 32, a quarter of the target: topped up. */
	uint32_t q = QKM_STOCK_MIN_KEYS / 4;
	for (uint32_t k = 0; k < q - 1; k++)
		expect_take(st, "sae-alice", "sae-bob", 64, 1, 1, k, &low);
	assert_int_equal(refill(st, i, "B", T0), 0);
	expect_take(st, "sae-alice", "sae-bob", 64, 1, 1, q - 1, &low);
	assert_int_equal(qkm_stock_count(st, NULL), QKM_STOCK_MIN_KEYS - q);
	assert_int_equal(refill(st, i, "B", T0), q);
	/* While it is on its way, another quarter taken: a second refill
	 * goes out beside the first. */
	for (uint32_t k = q; k < 2 * q; k++)
		expect_take(st, "sae-alice", "sae-bob", 64, 1, 1, k, &low);
	assert_int_equal(refill(st, i, "B", T0), q);
	assert_int_equal(refill(st, i, "B", T0), 0);
	/* Both arrive: the target, no more. */
	assert_int_equal(add_keys(st, i, 9, 0, q, 64), 0);
	assert_int_equal(add_keys(st, i, 9, q, q, 64), 0);
	assert_int_equal(qkm_stock_count(st, NULL), QKM_STOCK_MIN_KEYS);
	assert_int_equal(refill(st, i, "B", T0), 0);

	/* Demand: 3000 keys taken in the first 0.3 s of a window. */
	assert_int_equal(add_keys(st, i, 2, 0, 3100, 64), 0);
	size_t left = QKM_STOCK_MIN_KEYS + 3100;
	uint64_t t = T0 + 5 * NS; /* a new window opens at the first take */
	for (int k = 0; k < 3000; k += 50) {
		struct qkm_id ids[50];
		uint8_t data[50 * 8];
		assert_int_equal(qkm_stock_take(st, "sae-alice", "sae-bob", 64, 50, ids, data,
						t + (uint64_t)k * 100000, &low),
				 0);
		left -= 50;
	}
	assert_int_equal(qkm_stock_count(st, NULL), left);
	assert_int_equal(left, 228);
	/* In the window's first tenth of a second the demand is not known
	 * yet: 228 is plenty. Half a second in, 3000 keys are 6000 a second,
	 * the target; once the window closes, 3000 a second. */
	assert_int_equal(refill(st, i, "B", t + NS / 20), 0);
	assert_int_equal(refill(st, i, "B", t + NS / 2), 6000 - left);
	qkm_stock_refill_failed(st, i, 6000 - left);
	assert_int_equal(refill(st, i, "B", t + NS), 3000 - left);
	qkm_stock_refill_failed(st, i, 3000 - left);
	/* Two quiet seconds: the demand is forgotten, the target is the
	 * minimum again, and 228 keys are enough for it. */
	assert_int_equal(refill(st, i, "B", t + 4 * NS), 0);

	/* The target never exceeds what the ring holds: 1024 keys of 8192
	 * bits (1 MiB), however high the demand. */
	int j = qkm_stock_want(st, "B", "sae-alice", "sae-bob", 8192);
	assert_int_equal(j, 1);
	assert_int_equal(refill(st, j, "B", t), QKM_STOCK_MIN_KEYS);
	qkm_stock_refill_failed(st, j, QKM_STOCK_MIN_KEYS);
	for (int k = 0; k < 2000; k++) {
		struct qkm_id id;
		uint8_t data[1024];
		/* Demand counts even when the entry is empty: 2000 keys a
		 * second would want 2000 in stock. */
		assert_int_equal(qkm_stock_take(st, "sae-alice", "sae-bob", 8192, 1, &id, data,
						t + 2 * NS, &low),
				 QKM_ENOKEY);
	}
	assert_int_equal(refill(st, j, "B", t + 3 * NS), 1024);
	qkm_stock_refill_failed(st, j, 1024);

	/* A refill is at most one supply round: 20,000 keys a second of
	 * 64 bits want 20,000 in stock, asked for 8192 at a time. */
	_Static_assert(QKM_STOCK_MAX_REFILL == 8192, "the numbers below");
	int k2 = qkm_stock_want(st, "B", "sae-alice", "sae-carol", 64);
	assert_int_equal(refill(st, k2, "B", t), QKM_STOCK_MIN_KEYS);
	qkm_stock_refill_failed(st, k2, QKM_STOCK_MIN_KEYS);
	for (int k = 0; k < 20000; k += 100) {
		struct qkm_id ids[100];
		uint8_t data[100 * 8];
		assert_int_equal(qkm_stock_take(st, "sae-alice", "sae-carol", 64, 100, ids, data,
						t + 2 * NS, &low),
				 QKM_ENOKEY);
	}
	assert_int_equal(refill(st, k2, "B", t + 3 * NS), QKM_STOCK_MAX_REFILL);
	assert_int_equal(refill(st, k2, "B", t + 3 * NS), QKM_STOCK_MAX_REFILL);
	/* The other 3616 are less than a quarter of the target: later. */
	assert_int_equal(refill(st, k2, "B", t + 3 * NS), 0);
	qkm_stock_free(st);
}

/* The main thread may pass a time a moment before the front end opened
 * the current demand window (each reads the clock on its own): that is no
 * time at all, and the demand of the window just closed stays known. It
 * used to wrap around, close the window unseen and drop the target to the
 * minimum for a second. */
static void test_clock_skew(void **state)
{
	struct qkm_stock *st = qkm_stock_new();
	bool low;
	int i = qkm_stock_want(st, "B", "sae-alice", "sae-bob", 64);
	uint64_t t = T0 + 5 * NS;
	for (int k = 0; k < 3000; k += 50) {
		struct qkm_id ids[50];
		uint8_t data[50 * 8];
		assert_int_equal(qkm_stock_take(st, "sae-alice", "sae-bob", 64, 50, ids, data,
						t + (uint64_t)k * 100000, &low),
				 QKM_ENOKEY);
	}
	/* The front end's take at t + 1 s closes the window: 3000 a second. */
	struct qkm_id id;
	uint8_t d[8];
	assert_int_equal(qkm_stock_take(st, "sae-alice", "sae-bob", 64, 1, &id, d, t + NS, &low),
			 QKM_ENOKEY);
	/* The main thread read its clock a microsecond before that take. */
	assert_int_equal(refill(st, i, "B", t + NS - 1000), 3000);
	qkm_stock_free(st);
}

/* Keys come out in the order they went in, with their bytes, each once;
 * a take that cannot be met in full takes nothing. */
static void test_add_take(void **state)
{
	struct qkm_stock *st = qkm_stock_new();
	bool low = true;
	struct qkm_id ids[64];
	uint8_t data[64 * 32];
	int i = qkm_stock_want(st, "B", "sae-alice", "sae-bob", 256);
	/* Unknown pair, another size, an empty entry, zero keys: QKM_ENOKEY. */
	assert_int_equal(qkm_stock_take(st, "sae-eve", "sae-bob", 256, 1, ids, data, T0, &low),
			 QKM_ENOKEY);
	assert_false(low); /* no entry, nothing to wake */
	assert_int_equal(qkm_stock_take(st, "sae-alice", "sae-bob", 128, 1, ids, data, T0, &low),
			 QKM_ENOKEY);
	assert_int_equal(qkm_stock_take(st, "sae-alice", "sae-bob", 256, 1, ids, data, T0, &low),
			 QKM_ENOKEY);
	assert_true(low); /* empty and no refill under way: wake the main thread */
	assert_int_equal(refill(st, i, "B", T0), QKM_STOCK_MIN_KEYS);
	assert_int_equal(add_keys(st, i, 7, 0, 40, 256), 0);
	assert_int_equal(add_keys(st, i, 7, 40, 0, 256), 0); /* an empty refill is fine */
	assert_int_equal(add_keys(st, i, 7, 40, 20, 256), 0);
	assert_int_equal(add_keys(st, i + 1, 7, 60, 1, 256), QKM_EINVAL); /* no such entry */
	assert_int_equal(add_keys(st, -1, 7, 60, 1, 256), QKM_EINVAL);
	assert_int_equal(qkm_stock_count(st, "B"), 60);
	assert_int_equal(qkm_stock_count(st, "C"), 0);

	assert_int_equal(qkm_stock_take(st, "sae-alice", "sae-bob", 256, 0, ids, data, T0, &low),
			 QKM_ENOKEY);
	expect_take(st, "sae-alice", "sae-bob", 256, 1, 7, 0, &low);
	expect_take(st, "sae-alice", "sae-bob", 256, 3, 7, 1, &low);
	/* Across the two refills. */
	expect_take(st, "sae-alice", "sae-bob", 256, 40, 7, 4, &low);
	assert_int_equal(qkm_stock_count(st, NULL), 16);
	/* 17 asked, 16 there: nothing taken, nothing written. */
	memset(ids, 0xee, sizeof(ids));
	memset(data, 0xee, sizeof(data));
	assert_int_equal(qkm_stock_take(st, "sae-alice", "sae-bob", 256, 17, ids, data, T0, &low),
			 QKM_ENOKEY);
	assert_int_equal(qkm_stock_count(st, NULL), 16);
	for (size_t k = 0; k < sizeof(data); k++)
		assert_int_equal(data[k], 0xee);
	expect_take(st, "sae-alice", "sae-bob", 256, 16, 7, 44, &low);
	/* Empty: the keys given out never come back. */
	assert_int_equal(qkm_stock_take(st, "sae-alice", "sae-bob", 256, 1, ids, data, T0, &low),
			 QKM_ENOKEY);
	assert_int_equal(qkm_stock_count(st, NULL), 0);
	/* A later refill brings only its own keys. */
	assert_int_equal(add_keys(st, i, 8, 0, 2, 256), 0);
	expect_take(st, "sae-alice", "sae-bob", 256, 2, 8, 0, &low);
	assert_int_equal(qkm_stock_take(st, "sae-alice", "sae-bob", 256, 1, ids, data, T0, &low),
			 QKM_ENOKEY);
	qkm_stock_free(st);
}

/* low asks the front end to wake the main thread: set when a quarter of
 * the entry's target is missing, counting refills under way. */
static void test_low(void **state)
{
	struct qkm_stock *st = qkm_stock_new();
	bool low = true;
	uint32_t q = QKM_STOCK_MIN_KEYS / 4;
	int i = qkm_stock_want(st, "B", "sae-alice", "sae-bob", 64);
	assert_int_equal(refill(st, i, "B", T0), QKM_STOCK_MIN_KEYS);
	assert_int_equal(add_keys(st, i, 3, 0, QKM_STOCK_MIN_KEYS, 64), 0);
	uint32_t k = 0;
	/* 127 .. 97 left after each take: not low. */
	for (; k < q - 1; k++) {
		expect_take(st, "sae-alice", "sae-bob", 64, 1, 3, k, &low);
		assert_false(low);
	}
	assert_int_equal(qkm_stock_count(st, NULL), QKM_STOCK_MIN_KEYS - q + 1);
	/* 96 left, a quarter missing: low. */
	expect_take(st, "sae-alice", "sae-bob", 64, 1, 3, k++, &low);
	assert_true(low);
	/* The main thread started a refill: no more wake-ups meanwhile. */
	assert_int_equal(refill(st, i, "B", T0), q);
	expect_take(st, "sae-alice", "sae-bob", 64, 1, 3, k++, &low);
	assert_false(low);
	/* It failed: low again at the next take. */
	qkm_stock_refill_failed(st, i, q);
	expect_take(st, "sae-alice", "sae-bob", 64, 1, 3, k++, &low);
	assert_true(low);
	/* A take that finds too few keys is low too: the front end must wake
	 * the main thread, or an emptied stock would never be refilled. */
	struct qkm_id ids[QKM_STOCK_MIN_KEYS];
	uint8_t data[QKM_STOCK_MIN_KEYS * 8];
	low = false;
	assert_int_equal(qkm_stock_take(st, "sae-alice", "sae-bob", 64, QKM_STOCK_MIN_KEYS, ids,
					data, T0, &low),
			 QKM_ENOKEY);
	assert_true(low);
	qkm_stock_free(st);
}

/* Every taken key reaches the main thread once, with its entry, time and
 * store row, in the order taken, in as many drains as it takes. */
static void test_drain_taken(void **state)
{
	struct qkm_stock *st = qkm_stock_new();
	struct qkm_stock_taken *t = calloc(2000, sizeof(*t));
	struct qkm_id ids[500];
	uint8_t data[500 * 16];
	bool low;
	assert_int_equal(qkm_stock_drain_taken(st, t, 600), 0); /* nothing taken yet */
	int a = qkm_stock_want(st, "B", "sae-alice", "sae-bob", 128);
	int b = qkm_stock_want(st, "B", "sae-eve", "sae-carol", 128);
	assert_int_equal(add_keys(st, a, 10, 0, 500, 128), 0);
	assert_int_equal(add_keys(st, b, 11, 0, 500, 128), 0);
	/* A failed take is not recorded. */
	assert_int_equal(qkm_stock_take(st, "sae-alice", "sae-bob", 128, 501, ids, data, T0, &low),
			 QKM_ENOKEY);
	assert_int_equal(qkm_stock_drain_taken(st, t, 600), 0);

	/* 300 from a, 200 from b, 100 from a; drained in two calls. */
	assert_int_equal(qkm_stock_take(st, "sae-alice", "sae-bob", 128, 300, ids, data, T0 + 1,
					&low),
			 0);
	assert_int_equal(qkm_stock_take(st, "sae-eve", "sae-carol", 128, 200, ids, data, T0 + 2,
					&low),
			 0);
	assert_int_equal(qkm_stock_take(st, "sae-alice", "sae-bob", 128, 100, ids, data, T0 + 3,
					&low),
			 0);
	size_t n = qkm_stock_drain_taken(st, t, 256);
	assert_int_equal(n, 256);
	n += qkm_stock_drain_taken(st, t + 256, 600 - 256);
	assert_int_equal(n, 600);
	assert_int_equal(qkm_stock_drain_taken(st, t, 600), 0); /* each once */
	assert_int_equal(qkm_stock_count(st, NULL), 400);
	for (uint32_t k = 0; k < 600; k++) {
		bool from_a = k < 300 || k >= 500;
		assert_int_equal(t[k].entry, from_a ? a : b);
		assert_int_equal(t[k].at_ns, from_a ? (k < 300 ? T0 + 1 : T0 + 3) : T0 + 2);
		uint32_t no = key_no(from_a ? 10 : 11, &t[k].id);
		assert_int_equal(no, k < 300 ? k : k < 500 ? k - 300 : k - 200);
	}

	/* Many takes before a drain (the main thread is busy): the record
	 * grows past its first 1024 slots, nothing is lost. */
	int c = qkm_stock_want(st, "B", "sae-alice", "sae-carol", 64);
	assert_int_equal(add_keys(st, c, 12, 0, 1500, 64), 0);
	for (uint32_t k = 0; k < 1600; k++)
		assert_int_equal(qkm_stock_take(st, "sae-alice", "sae-carol", 64, 1, ids, data,
						T0 + k, &low),
				 k < 1500 ? 0 : QKM_ENOKEY);
	assert_int_equal(qkm_stock_take(st, "sae-eve", "sae-carol", 128, 300, ids, data, T0, &low),
			 0);
	n = qkm_stock_drain_taken(st, t, 2000);
	assert_int_equal(n, 1800);
	for (uint32_t k = 0; k < 1500; k++) {
		assert_int_equal(t[k].entry, c);
		assert_int_equal(t[k].at_ns, T0 + k);
		assert_int_equal(key_no(12, &t[k].id), k);
	}
	for (uint32_t k = 1500; k < 1800; k++) {
		assert_int_equal(t[k].entry, b);
		assert_int_equal(key_no(11, &t[k].id), 200 + k - 1500);
	}
	assert_int_equal(qkm_stock_drain_taken(st, t, 2000), 0);
	free(t);
	qkm_stock_free(st);
}

/* An entry holds at most its ring: 1 MiB of key bytes, at most
 * QKM_STOCK_MAX_KEYS keys. A refill that would not fit adds nothing. */
static void test_capacity(void **state)
{
	struct qkm_stock *st = qkm_stock_new();
	bool low;
	/* 8192-bit keys: 1024 of them fill the ring. */
	int i = qkm_stock_want(st, "B", "sae-alice", "sae-bob", 8192);
	assert_int_equal(add_keys(st, i, 20, 0, 1000, 8192), 0);
	assert_int_equal(add_keys(st, i, 20, 1000, 25, 8192), QKM_ETOOBIG);
	assert_int_equal(qkm_stock_count(st, NULL), 1000);
	assert_int_equal(add_keys(st, i, 20, 1000, 24, 8192), 0);
	assert_int_equal(qkm_stock_count(st, NULL), 1024);
	assert_int_equal(add_keys(st, i, 20, 1024, 1, 8192), QKM_ETOOBIG);
	/* Taking frees room, and the ring wraps: order and bytes hold. */
	for (uint32_t k = 0; k < 100; k++)
		expect_take(st, "sae-alice", "sae-bob", 8192, 1, 20, k, &low);
	assert_int_equal(add_keys(st, i, 20, 1024, 101, 8192), QKM_ETOOBIG);
	assert_int_equal(add_keys(st, i, 20, 1024, 100, 8192), 0);
	for (uint32_t k = 100; k < 1124; k++)
		expect_take(st, "sae-alice", "sae-bob", 8192, 1, 20, k, &low);
	assert_int_equal(qkm_stock_count(st, NULL), 0);

	/* Small keys: the ring is capped at QKM_STOCK_MAX_KEYS keys. A
	 * refused add ends the refill all the same, so the entry is not
	 * stuck "under way" for good. */
	int j = qkm_stock_want(st, "B", "sae-alice", "sae-bob", 64);
	assert_int_equal(refill(st, j, "B", T0), QKM_STOCK_MIN_KEYS);
	assert_int_equal(add_keys(st, j, 21, 0, QKM_STOCK_MAX_KEYS + 1, 64), QKM_ETOOBIG);
	assert_int_equal(qkm_stock_count(st, NULL), 0);
	assert_int_equal(refill(st, j, "B", T0), QKM_STOCK_MIN_KEYS);
	assert_int_equal(add_keys(st, j, 21, 0, QKM_STOCK_MAX_KEYS, 64), 0);
	assert_int_equal(add_keys(st, j, 21, QKM_STOCK_MAX_KEYS, 1, 64), QKM_ETOOBIG);
	assert_int_equal(qkm_stock_count(st, NULL), QKM_STOCK_MAX_KEYS);
	assert_int_equal(refill(st, j, "B", T0), 0); /* full */
	expect_take(st, "sae-alice", "sae-bob", 64, 2, 21, 0, &low);
	qkm_stock_free(st);
}

/* At most QKM_STOCK_MAX_ENTRIES pairs; past that, plain requests of new
 * pairs take the round trip, and the existing entries work on. */
static void test_entry_limit(void **state)
{
	struct qkm_stock *st = qkm_stock_new();
	char slave[QKM_NAME_MAX];
	bool low;
	for (int k = 0; k < QKM_STOCK_MAX_ENTRIES; k++) {
		snprintf(slave, sizeof(slave), "sae-%02d", k);
		assert_int_equal(qkm_stock_want(st, "B", "sae-alice", slave, 64), k);
	}
	assert_int_equal(qkm_stock_want(st, "B", "sae-alice", "sae-extra", 64), -1);
	assert_int_equal(qkm_stock_want(st, "B", "sae-alice", "sae-00", 128), -1);
	assert_int_equal(qkm_stock_want(st, "B", "sae-alice", "sae-63", 64), 63);
	assert_int_equal(refill(st, 63, "B", T0), QKM_STOCK_MIN_KEYS);
	assert_int_equal(add_keys(st, 63, 30, 0, 2, 64), 0);
	expect_take(st, "sae-alice", "sae-63", 64, 2, 30, 0, &low);
	struct qkm_id id;
	uint8_t data[8];
	assert_int_equal(qkm_stock_take(st, "sae-alice", "sae-extra", 64, 1, &id, data, T0, &low),
			 QKM_ENOKEY);
	qkm_stock_free(st);
}

/* ---- several takers ------------------------------------------------------ */

#define CONC_KEYS 8000u
#define CONC_THREADS 4
#define CONC_ROUNDS 20 /* a race that is rare per round shows in some round */

struct taker {
	struct qkm_stock *st;
	uint32_t tag, bits;
	atomic_int *done;         /* the producer has added everything (NULL: no producer) */
	pthread_barrier_t *go;    /* all start together, or the first empties the entry alone */
	uint32_t *got;            /* key numbers taken, in order */
	size_t n;
	int bad;                  /* a key whose bytes were not its own */
};

static void *taker_main(void *arg)
{
	struct taker *t = arg;
	size_t b = t->bits / 8;
	uint8_t data[1024], want[1024];
	pthread_barrier_wait(t->go);
	for (;;) {
		struct qkm_id id;
		bool low;
		/* Read before the take: an empty entry after the producer
		 * finished means every key is out. */
		bool last = !t->done || atomic_load(t->done);
		int rc = qkm_stock_take(t->st, "sae-alice", "sae-bob", t->bits, 1, &id, data, T0,
					&low);
		if (rc) {
			if (last)
				break;
			sched_yield();
			continue;
		}
		uint32_t k = (uint32_t)id.b[4] << 24 | (uint32_t)id.b[5] << 16 |
			     (uint32_t)id.b[6] << 8 | id.b[7];
		key_bytes(t->tag, k, want, b);
		if (memcmp(data, want, b) != 0)
			t->bad++;
		t->got[t->n++] = k;
	}
	return NULL;
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return x < y ? -1 : x > y;
}

/* Keys 0..total-1 were each taken exactly once across the takers, each
 * with its own bytes, and the record for the main thread holds each once. */
static void expect_each_once(struct qkm_stock *st, struct taker *t, uint32_t total)
{
	uint32_t *all = calloc(total, sizeof(*all));
	size_t n = 0;
	assert_non_null(all);
	for (int k = 0; k < CONC_THREADS; k++) {
		assert_int_equal(t[k].bad, 0);
		assert_true(n + t[k].n <= total);
		memcpy(all + n, t[k].got, t[k].n * sizeof(*all));
		n += t[k].n;
		/* Each taker's keys come in ring order. */
		for (size_t j = 1; j < t[k].n; j++)
			assert_true(t[k].got[j - 1] < t[k].got[j]);
	}
	assert_int_equal(n, total);
	qsort(all, n, sizeof(*all), cmp_u32);
	for (uint32_t k = 0; k < total; k++)
		assert_int_equal(all[k], k);

	struct qkm_stock_taken *rec = calloc(total + 1, sizeof(*rec));
	assert_non_null(rec);
	assert_int_equal(qkm_stock_drain_taken(st, rec, total + 1), total);
	for (uint32_t k = 0; k < total; k++)
		all[k] = key_no(t[0].tag, &rec[k].id);
	qsort(all, total, sizeof(*all), cmp_u32);
	for (uint32_t k = 0; k < total; k++)
		assert_int_equal(all[k], k);
	free(rec);
	free(all);
	assert_int_equal(qkm_stock_count(st, NULL), 0);
}

/* R-SUP-8 under contention: 4 front-end threads take single keys from one
 * entry of 8000 until it is empty; every key is taken exactly once. */
static void test_concurrent_takes(void **state)
{
	struct qkm_stock *st = qkm_stock_new();
	int i = qkm_stock_want(st, "B", "sae-alice", "sae-bob", 64);
	uint32_t *got[CONC_THREADS];
	for (int k = 0; k < CONC_THREADS; k++) {
		got[k] = calloc(CONC_KEYS, sizeof(*got[k]));
		assert_non_null(got[k]);
	}
	for (uint32_t round = 0; round < CONC_ROUNDS; round++) {
		struct taker t[CONC_THREADS];
		pthread_t th[CONC_THREADS];
		pthread_barrier_t go;
		assert_int_equal(add_keys(st, i, 40 + round, 0, CONC_KEYS, 64), 0);
		assert_int_equal(pthread_barrier_init(&go, NULL, CONC_THREADS), 0);
		for (int k = 0; k < CONC_THREADS; k++)
			t[k] = (struct taker){.st = st, .tag = 40 + round, .bits = 64, .go = &go,
					      .got = got[k]};
		for (int k = 0; k < CONC_THREADS; k++)
			assert_int_equal(pthread_create(&th[k], NULL, taker_main, &t[k]), 0);
		for (int k = 0; k < CONC_THREADS; k++)
			assert_int_equal(pthread_join(th[k], NULL), 0);
		pthread_barrier_destroy(&go);
		expect_each_once(st, t, CONC_KEYS);
	}
	for (int k = 0; k < CONC_THREADS; k++)
		free(got[k]);
	qkm_stock_free(st);
}

/* The same with the main thread refilling a small ring (1024 keys of 8192
 * bits) while the takers empty it: the ring wraps many times under the
 * lock, and still every key comes out once, with its own bytes. */
static void test_concurrent_refill(void **state)
{
	enum { TOTAL = 5000, BATCH = 100 };
	struct qkm_stock *st = qkm_stock_new();
	int i = qkm_stock_want(st, "B", "sae-alice", "sae-bob", 8192);
	atomic_int done = 0;
	struct taker t[CONC_THREADS];
	pthread_t th[CONC_THREADS];
	pthread_barrier_t go;
	assert_int_equal(pthread_barrier_init(&go, NULL, CONC_THREADS), 0);
	for (int k = 0; k < CONC_THREADS; k++) {
		t[k] = (struct taker){.st = st, .tag = 41, .bits = 8192, .done = &done, .go = &go};
		t[k].got = calloc(TOTAL, sizeof(*t[k].got));
		assert_non_null(t[k].got);
	}
	for (int k = 0; k < CONC_THREADS; k++)
		assert_int_equal(pthread_create(&th[k], NULL, taker_main, &t[k]), 0);
	for (uint32_t k = 0; k < TOTAL;) {
		int rc = add_keys(st, i, 41, k, BATCH, 8192);
		if (rc == QKM_ETOOBIG) { /* full: the takers have to catch up */
			sched_yield();
			continue;
		}
		assert_int_equal(rc, 0);
		k += BATCH;
	}
	atomic_store(&done, 1);
	for (int k = 0; k < CONC_THREADS; k++)
		assert_int_equal(pthread_join(th[k], NULL), 0);
	pthread_barrier_destroy(&go);
	expect_each_once(st, t, TOTAL);
	for (int k = 0; k < CONC_THREADS; k++)
		free(t[k].got);
	qkm_stock_free(st);
}

static int group_setup(void **state)
{
	return qkm_secret_heap_init(1u << 25);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_want),
		cmocka_unit_test(test_refill_sizing),
		cmocka_unit_test(test_add_take),
		cmocka_unit_test(test_low),
		cmocka_unit_test(test_drain_taken),
		cmocka_unit_test(test_clock_skew),
		cmocka_unit_test(test_capacity),
		cmocka_unit_test(test_entry_limit),
		cmocka_unit_test(test_concurrent_takes),
		cmocka_unit_test(test_concurrent_refill),
	};
	return cmocka_run_group_tests(tests, group_setup, NULL);
}
