/* test_json_path.c - the line of a JSON path in a document's text
 * (proto/json_path.c), which config errors name (issue #8 item 4): keys,
 * array elements, nesting, absent fields (nearest enclosing part), strings
 * holding JSON punctuation, and text that is not JSON at all. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "proto/json_path.h"

static unsigned line(const char *text, const char *path)
{
	return qkm_json_path_line(text, strlen(text), path);
}

static const char doc[] =
	"\n"                                                        /* 1 */
	"{\n"                                                       /* 2 */
	"  \"id\": \"A\",\n"                                        /* 3 */
	"  \"note\": \"a \\\"links\\\": [ { , ] } string\",\n"      /* 4 */
	"  \"links\": [\n"                                          /* 5 */
	"    {\"link\": \"A-B\",\n"                                 /* 6 */
	"     \"rate\": 1e3},\n"                                    /* 7 */
	"    [1, 2,\n"                                              /* 8 */
	"     {\"deep\": true}],\n"                                 /* 9 */
	"    {\"link\": \"A-C\", \"tls\": {\"ca\": null,\n"         /* 10 */
	"\r\n"                                                      /* 11 */
	"       \"key\": \"k\"}}\n"                                 /* 12 */
	"  ],\n"                                                    /* 13 */
	"  \"linksx\": 1\n"                                         /* 14 */
	"}\n";

static void test_found(void **state)
{
	assert_int_equal(line(doc, ""), 2);
	assert_int_equal(line(doc, "id"), 3);
	assert_int_equal(line(doc, "note"), 4);
	/* "links" inside the note's string is not the key. */
	assert_int_equal(line(doc, "links"), 5);
	assert_int_equal(line(doc, "links[0]"), 6);
	assert_int_equal(line(doc, "links[0].link"), 6);
	assert_int_equal(line(doc, "links[0].rate"), 7);
	assert_int_equal(line(doc, "links[1]"), 8);
	assert_int_equal(line(doc, "links[1][2].deep"), 9);
	assert_int_equal(line(doc, "links[2].tls.ca"), 10);
	/* CRLF counts as one line. */
	assert_int_equal(line(doc, "links[2].tls.key"), 12);
	/* A key that another key begins with is a different key. */
	assert_int_equal(line(doc, "linksx"), 14);
}

static void test_absent(void **state)
{
	/* The nearest enclosing part that exists. */
	assert_int_equal(line(doc, "links[2].tls.cert"), 10);
	assert_int_equal(line(doc, "links[3]"), 5);
	assert_int_equal(line(doc, "links[0].peer"), 6);
	assert_int_equal(line(doc, "nope"), 2);
	assert_int_equal(line(doc, "nope.deeper[3]"), 2);
	/* Looking into a scalar, or indexing an object. */
	assert_int_equal(line(doc, "id.x"), 3);
	assert_int_equal(line(doc, "links[0][1]"), 6);
	assert_int_equal(line(doc, "links.link"), 5);
	/* Malformed paths stop where they stop making sense. */
	assert_int_equal(line(doc, "links[x]"), 5);
	assert_int_equal(line(doc, "links[1"), 5);
	assert_int_equal(line(doc, "links..link"), 5);
}

/* Not JSON, cut short or empty: a line within the text, never a read past
 * its end (ASan would see one). */
static void test_not_json(void **state)
{
	const char *bad[] = {"", "{", "{\"a\"", "{\"a\":", "{\"a\": [1, 2", "{\"a\": \"x\\",
			     "{\"a\" 1}", "[[[[", "}}}", "{\"a\": tru", "\n\n{\"b\": 1, \"a\"\n"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		size_t n = strlen(bad[i]);
		unsigned nl = 1;
		for (size_t k = 0; k < n; k++)
			nl += bad[i][k] == '\n';
		unsigned l = qkm_json_path_line(bad[i], n, "a[1].b");
		if (l < 1 || l > nl)
			fail_msg("'%s': line %u of %u", bad[i], l, nl);
	}
	/* A NUL byte inside a value does not stop the scan from ending. */
	const char nul[] = "{\"x\": 1\0 2, \"a\": 3}";
	assert_true(qkm_json_path_line(nul, sizeof(nul) - 1, "a") >= 1);
	/* The length bounds the scan, not a terminator. */
	assert_int_equal(qkm_json_path_line("{\"a\": 1,\n \"b\": 2}", 9, "b"), 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_found),
		cmocka_unit_test(test_absent),
		cmocka_unit_test(test_not_json),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
