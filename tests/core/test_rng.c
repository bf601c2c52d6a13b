/* test_rng.c - the RNG source drawn ahead by a helper thread (core/rng.c)
 * that makes RNG keys for relays (R-REL-3): no byte is ever handed out
 * twice, also with callers on two threads; a device that ends, fails or
 * cannot be opened fails the draw and leaves nothing in the caller's
 * buffer; the ring fills by itself. A device here is a regular file of
 * consecutive 32-bit counters, so every word handed out names the place it
 * came from. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/rng.h"
#include "core/secret.h"

#define WORDS (1u << 18) /* the device file: 1 MiB of counters */
#define PART (WORDS * 4u * 3 / 16 / 2048 * 2048) /* test_two_callers: bytes per caller */

static char dev_path[256];

static void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
	nanosleep(&ts, NULL);
}

/* Waits up to 10 s for the ring to hold n bytes. */
static void wait_ready(struct qkm_rng *g, size_t n)
{
	for (int i = 0; i < 1000 && qkm_rng_ready(g) < n; i++)
		sleep_ms(10);
	assert_true(qkm_rng_ready(g) >= n);
}

static int make_device(void **state)
{
	(void)state;
	const char *tmp = getenv("QKM_TEST_TMP");
	snprintf(dev_path, sizeof(dev_path), "%s/rng-dev-XXXXXX", tmp && tmp[0] ? tmp : "/tmp");
	int fd = mkstemp(dev_path);
	if (fd < 0) {
		/* QKM_TEST_TMP may not exist yet */
		snprintf(dev_path, sizeof(dev_path), "/tmp/rng-dev-XXXXXX");
		fd = mkstemp(dev_path);
	}
	if (fd < 0)
		return -1;
	uint32_t *w = malloc(WORDS * sizeof(*w));
	if (!w)
		return -1;
	for (uint32_t i = 0; i < WORDS; i++)
		w[i] = i;
	ssize_t n = write(fd, w, WORDS * sizeof(*w));
	free(w);
	close(fd);
	return n == (ssize_t)(WORDS * sizeof(uint32_t)) ? 0 : -1;
}

static int remove_device(void **state)
{
	(void)state;
	unlink(dev_path);
	return 0;
}

/* A draw from g fails with QKM_EIO and leaves nothing in the buffer. */
static void expect_failed_draw(struct qkm_rng *g)
{
	uint8_t buf[64];
	memset(buf, 0xa5, sizeof(buf));
	assert_int_equal(qkm_rng_fill(g, buf, sizeof(buf)), QKM_EIO);
	for (size_t i = 0; i < sizeof(buf); i++)
		assert_int_equal(buf[i], 0);
}

/* Marks every word of buf (n bytes, n % 4 == 0) seen; fails on a word seen
 * before or one that is not a counter of the file. */
static void mark(uint8_t *seen, const uint8_t *buf, size_t n)
{
	for (size_t i = 0; i < n; i += 4) {
		uint32_t w;
		memcpy(&w, buf + i, 4);
		assert_true(w < WORDS);
		assert_int_equal(seen[w], 0);
		seen[w] = 1;
	}
}

/* Most of the device through the ring and past it, in draws of sizes that
 * straddle the ring's end and its cap: no word twice, each from the file. */
static void test_device_no_byte_twice(void **state)
{
	(void)state;
	struct qkm_rng *g = qkm_rng_new(dev_path, 12288);
	assert_non_null(g);
	uint8_t *seen = calloc(WORDS, 1), buf[40000];
	assert_non_null(seen);
	static const size_t sizes[] = { 4, 4096, 12288, 40000, 20, 8188 };
	size_t total = 0, words = 0;
	/* 3/4 of the file: the helper, at most a ring ahead, never meets its
	 * end, so no draw races the helper for the last bytes */
	for (int i = 0; total + 40000 < WORDS * 3u; i++) {
		size_t n = sizes[i % 6];
		if (i % 3 == 0)
			sleep_ms(1); /* let the ring fill, sometimes */
		assert_int_equal(qkm_rng_fill(g, buf, n), 0);
		mark(seen, buf, n);
		total += n;
	}
	for (uint32_t w = 0; w < WORDS; w++)
		words += seen[w];
	assert_int_equal(words * 4, total);
	qkm_rng_free(g);
	free(seen);
}

/* A device that ends: the helper keeps what it gave; past it a draw fails
 * and leaves no byte behind. */
static void test_device_ends(void **state)
{
	(void)state;
	char small[300];
	snprintf(small, sizeof(small), "%s.small", dev_path);
	int fd = open(small, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	uint32_t w[1024];
	for (uint32_t i = 0; i < 1024; i++)
		w[i] = i;
	assert_int_equal(write(fd, w, sizeof(w)), (ssize_t)sizeof(w));
	close(fd);
	struct qkm_rng *g = qkm_rng_new(small, 8192);
	assert_non_null(g);
	wait_ready(g, sizeof(w));
	uint8_t buf[sizeof(w)];
	assert_int_equal(qkm_rng_fill(g, buf, sizeof(buf)), 0);
	assert_memory_equal(buf, w, sizeof(w));
	for (int k = 0; k < 2; k++) { /* and it stays ended: never read again */
		expect_failed_draw(g);
	}
	qkm_rng_free(g);
	unlink(small);
}

/* A device whose reads fail (here a directory: open succeeds, read says
 * EISDIR): the helper stops, and every draw opens the device anew, so that
 * relays resume when it works again; meanwhile each fails, buffer wiped. */
static void test_device_fails(void **state)
{
	(void)state;
	char dir[300];
	snprintf(dir, sizeof(dir), "%s.d", dev_path);
	assert_int_equal(mkdir(dir, 0700), 0);
	struct qkm_rng *g = qkm_rng_new(dir, 4096);
	assert_non_null(g);
	for (int k = 0; k < 3; k++) {
		expect_failed_draw(g);
		sleep_ms(5);
	}
	assert_int_equal(qkm_rng_ready(g), 0);
	qkm_rng_free(g);
	assert_int_equal(rmdir(dir), 0);
}

struct taker {
	struct qkm_rng *g;
	uint8_t *out; /* PART bytes: 3/16 of the device */
	int rc;
};

static void *take_half(void *arg)
{
	struct taker *t = arg;
	for (size_t off = 0; off < PART && !t->rc; off += 2048)
		t->rc = qkm_rng_fill(t->g, t->out + off, 2048);
	return NULL;
}

/* Two threads draw 3/16 of the device each, at the same time as the helper
 * fills (short of the file's end, which the last draws would race the
 * helper for): together they got no word twice. */
static void test_two_callers(void **state)
{
	(void)state;
	struct qkm_rng *g = qkm_rng_new(dev_path, 65536);
	assert_non_null(g);
	struct taker t[2] = { { g, malloc(PART), 0 }, { g, malloc(PART), 0 } };
	assert_non_null(t[0].out);
	assert_non_null(t[1].out);
	pthread_t th;
	assert_int_equal(pthread_create(&th, NULL, take_half, &t[1]), 0);
	take_half(&t[0]);
	pthread_join(th, NULL);
	assert_int_equal(t[0].rc, 0);
	assert_int_equal(t[1].rc, 0);
	uint8_t *seen = calloc(WORDS, 1);
	assert_non_null(seen);
	mark(seen, t[0].out, PART);
	mark(seen, t[1].out, PART);
	free(seen);
	free(t[0].out);
	free(t[1].out);
	qkm_rng_free(g);
}

/* getrandom: the ring fills by itself up to its cap and no further; draws
 * larger than the ring get fresh bytes past it; draws differ; the ring fills
 * again. (How much it holds right after a draw is not asserted: the helper
 * refills it while the draw takes the rest from getrandom, and once did so
 * completely before the check, under ASan in make check.) */
static void test_getrandom(void **state)
{
	(void)state;
	struct qkm_rng *g = qkm_rng_new(NULL, 8192);
	assert_non_null(g);
	wait_ready(g, 8192);
	sleep_ms(20);
	assert_int_equal(qkm_rng_ready(g), 8192);
	uint8_t a[20000], b[20000];
	assert_int_equal(qkm_rng_fill(g, a, sizeof(a)), 0);
	assert_int_equal(qkm_rng_fill(g, b, sizeof(b)), 0);
	/* 20,000 random bytes: equal 32-byte pieces would be a bug, not luck */
	for (size_t i = 0; i + 32 <= sizeof(a); i += 32) {
		assert_true(memcmp(a + i, b + i, 32) != 0);
		if (i)
			assert_true(memcmp(a + i, a, 32) != 0);
	}
	wait_ready(g, 8192);
	qkm_rng_free(g);
}

/* A device that cannot be opened: made anyway (it may appear later),
 * every draw fails with nothing left in the buffer. Freeing right after
 * making, helper running or not, is clean. */
static void test_missing_device_and_free(void **state)
{
	(void)state;
	struct qkm_rng *g = qkm_rng_new("/nonexistent/hwrng", 4096);
	assert_non_null(g);
	expect_failed_draw(g);
	qkm_rng_free(g);
	for (int i = 0; i < 20; i++) {
		g = qkm_rng_new(i % 2 ? dev_path : NULL, 1u << 20);
		assert_non_null(g);
		qkm_rng_free(g);
	}
	qkm_rng_free(NULL);
	assert_null(qkm_rng_new(NULL, 0));
}

static int group_setup(void **state)
{
	if (qkm_secret_heap_init(1u << 23))
		return -1;
	return make_device(state);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_device_no_byte_twice),
		cmocka_unit_test(test_device_ends),
		cmocka_unit_test(test_device_fails),
		cmocka_unit_test(test_two_callers),
		cmocka_unit_test(test_getrandom),
		cmocka_unit_test(test_missing_device_and_free),
	};
	return cmocka_run_group_tests(tests, group_setup, remove_device);
}
