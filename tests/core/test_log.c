/* test_log.c - the log sink (core/log.c): under systemd with stderr on the
 * journal (JOURNAL_STREAM names stderr's device and inode) each line starts
 * with its syslog priority "<N>" in place of the time (issue #8 item 4);
 * otherwise, or when the variable names another file (a child whose stderr
 * was redirected), lines keep their timestamp. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "core/log.h"

static char path[PATH_MAX];
static int saved_stderr = -1;

/* Points stderr at a fresh file; returns its "DEV:INODE". */
static const char *stderr_to_file(void)
{
	static char js[64];
	const char *base = getenv("QKM_TEST_TMP");
	if (!base || !*base)
		base = "/tmp";
	if (mkdir(base, 0700) != 0 && errno != EEXIST)
		base = "/tmp";
	snprintf(path, sizeof(path), "%s/test_log.XXXXXX", base);
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	fflush(stderr);
	if (saved_stderr < 0)
		saved_stderr = dup(STDERR_FILENO);
	assert_true(dup2(fd, STDERR_FILENO) == STDERR_FILENO);
	close(fd);
	struct stat st;
	assert_int_equal(fstat(STDERR_FILENO, &st), 0);
	snprintf(js, sizeof(js), "%llu:%llu", (unsigned long long)st.st_dev,
		 (unsigned long long)st.st_ino);
	return js;
}

/* Restores stderr and returns what was written to the file (static). */
static const char *stderr_back(void)
{
	static char text[4096];
	fflush(stderr);
	assert_true(dup2(saved_stderr, STDERR_FILENO) == STDERR_FILENO);
	FILE *f = fopen(path, "r");
	assert_non_null(f);
	size_t n = fread(text, 1, sizeof(text) - 1, f);
	text[n] = 0;
	fclose(f);
	unlink(path);
	return text;
}

static void log_some(void)
{
	log_debug("d %d", 1);
	log_info("i");
	log_warnx("w");
	errno = ENOENT;
	log_warn("e");
	log_error("x");
}

static void test_journal(void **state)
{
	const char *js = stderr_to_file();
	assert_int_equal(setenv("JOURNAL_STREAM", js, 1), 0);
	qkm_log_init("node A", QKM_LOG_DEBUG);
	assert_true(qkm_log_to_journal());
	log_some();
	const char *text = stderr_back();
	assert_string_equal(text, "<7>node A debug: d 1\n"
				  "<6>node A info: i\n"
				  "<4>node A warn: w\n"
				  "<4>node A warn: e: No such file or directory\n"
				  "<3>node A error: x\n");
	unsetenv("JOURNAL_STREAM");
}

/* The level still filters; a quieter level shows fewer lines. */
static void test_journal_level(void **state)
{
	const char *js = stderr_to_file();
	assert_int_equal(setenv("JOURNAL_STREAM", js, 1), 0);
	qkm_log_init("sim", QKM_LOG_WARN);
	log_some();
	assert_string_equal(stderr_back(), "<4>sim warn: w\n"
					   "<4>sim warn: e: No such file or directory\n"
					   "<3>sim error: x\n");
	unsetenv("JOURNAL_STREAM");
}

/* Not the journal: absent, another inode, or not DEV:INODE at all. */
static void test_not_journal(void **state)
{
	char other[96];
	const char *js = stderr_to_file();
	snprintf(other, sizeof(other), "%s1", js); /* same device, another inode */
	const char *values[] = {NULL, other, "", "12", "1:", ":1", "a:b", "1:2x", "-1:-2"};
	for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
		if (values[i])
			assert_int_equal(setenv("JOURNAL_STREAM", values[i], 1), 0);
		else
			unsetenv("JOURNAL_STREAM");
		qkm_log_init("t", QKM_LOG_INFO);
		if (qkm_log_to_journal())
			fail_msg("JOURNAL_STREAM '%s' taken for the journal", values[i]);
	}
	log_info("plain");
	const char *text = stderr_back();
	/* 2026-11-27T10:00:00.000Z t info: plain */
	assert_true(strlen(text) > 25);
	assert_true(text[4] == '-' && text[10] == 'T' && text[23] == 'Z');
	assert_string_equal(text + 24, " t info: plain\n");
	unsetenv("JOURNAL_STREAM");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_journal),
		cmocka_unit_test(test_journal_level),
		cmocka_unit_test(test_not_journal),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
