/* test_fault.c - the simulator's fault command language (sim/fault.c): what
 * `qkm sim fault` sends over the control socket (INTERFACES.md). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "sim/fault.h"

static void test_every_kind_parses(void **state)
{
	struct qkm_fault f;
	char err[128];

	assert_int_equal(qkm_fault_parse("fault A-B A flip 1", &f, err, sizeof(err)), 0);
	assert_int_equal(f.kind, QKM_FAULT_FLIP);
	assert_string_equal(f.link, "A-B");
	assert_string_equal(f.side, "A");
	assert_int_equal(f.flips, 1);
	assert_int_equal(qkm_fault_parse("fault A-B B flip 65536", &f, err, sizeof(err)), 0);
	assert_int_equal(f.flips, 65536);

	assert_int_equal(qkm_fault_parse("fault A-B - drop", &f, err, sizeof(err)), 0);
	assert_int_equal(f.kind, QKM_FAULT_DROP);
	assert_string_equal(f.side, "-");
	assert_int_equal(qkm_fault_parse("fault A-B B corrupt", &f, err, sizeof(err)), 0);
	assert_int_equal(f.kind, QKM_FAULT_CORRUPT);
	assert_int_not_equal(qkm_fault_parse("fault A-B B corrupt 3", &f, err, sizeof(err)), 0);

	assert_int_equal(qkm_fault_parse("fault A-B - qber 0.08", &f, err, sizeof(err)), 0);
	assert_int_equal(f.kind, QKM_FAULT_QBER);
	assert_true(f.qber == 0.08);
	assert_int_equal(qkm_fault_parse("fault A-B - qber 0", &f, err, sizeof(err)), 0);
	assert_true(f.qber == 0.0);
	assert_int_equal(qkm_fault_parse("fault A-B - qber 0.5", &f, err, sizeof(err)), 0);
	assert_true(f.qber == 0.5);

	assert_int_equal(qkm_fault_parse("fault A-B - down", &f, err, sizeof(err)), 0);
	assert_int_equal(f.kind, QKM_FAULT_DOWN);
	assert_int_equal(qkm_fault_parse("fault A-B - up", &f, err, sizeof(err)), 0);
	assert_int_equal(f.kind, QKM_FAULT_UP);

	/* Words may be separated by runs of spaces and tabs. */
	assert_int_equal(qkm_fault_parse("  fault\tl.1:x   n_2 \t flip  12 ", &f, err, sizeof(err)), 0);
	assert_string_equal(f.link, "l.1:x");
	assert_string_equal(f.side, "n_2");
	assert_int_equal(f.flips, 12);
}

/* Each bad command is refused with QKM_EINVAL and a message containing
 * the given fragment. */
static void test_bad_commands(void **state)
{
	static const struct {
		const char *line, *why;
	} bad[] = {
		{"", "usage"},
		{"fault", "usage"},
		{"fault A-B A", "usage"},
		{"fluat A-B A drop", "usage"},
		{"fault A-B A melt", "unknown fault 'melt'"},
		{"fault A-B A FLIP 3", "unknown fault"},
		{"fault A-B A flip", "takes one argument"},
		{"fault A-B A drop now", "takes no argument"},
		{"fault A-B A down 1", "takes no argument"},
		{"fault A-B A up x", "takes no argument"},
		{"fault A-B A qber", "takes one argument"},
		{"fault A-B A flip 1 2", "takes one argument"},
		{"fault A-B A flip 1 2 3", "too many words"},
		{"fault A-B A flip 0", "1..65536"},
		{"fault A-B A flip 65537", "1..65536"},
		{"fault A-B A flip 70000", "1..65536"},
		{"fault A-B A flip -1", "1..65536"},
		{"fault A-B A flip 3x", "1..65536"},
		{"fault A-B A flip 0x10", "1..65536"},
		{"fault A-B A flip 99999999999999999999999", "1..65536"},
		{"fault A-B - qber 0.6", "0 to 0.5"},
		{"fault A-B - qber 0.5000001", "0 to 0.5"},
		{"fault A-B - qber -0.1", "0 to 0.5"},
		{"fault A-B - qber abc", "0 to 0.5"},
		{"fault A-B - qber 0.1x", "0 to 0.5"},
		{"fault A-B - qber nan", "0 to 0.5"},
		{"fault A-B - qber inf", "0 to 0.5"},
		{"fault A/B - drop", "bad link or side name"},
		{"fault A-B ../x drop", "bad link or side name"},
		{"fault A-B n\xc3\xa9 drop", "bad link or side name"},
		{"fault A,B - drop", "bad link or side name"},
	};
	struct qkm_fault f;
	char err[128];
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = 0;
		int rc = qkm_fault_parse(bad[i].line, &f, err, sizeof(err));
		if (rc != QKM_EINVAL || !strstr(err, bad[i].why))
			fail_msg("'%s': rc %d, message '%s', want '%s'", bad[i].line, rc, err,
				 bad[i].why);
	}
}

static void test_names_and_length(void **state)
{
	struct qkm_fault f;
	char err[128], line[400], name63[64], name64[65];
	memset(name63, 'n', 63);
	name63[63] = 0;
	memset(name64, 'n', 64);
	name64[64] = 0;

	/* 63 bytes is the longest entity name; 64 is refused. */
	snprintf(line, sizeof(line), "fault %s %s drop", name63, name63);
	assert_int_equal(qkm_fault_parse(line, &f, err, sizeof(err)), 0);
	assert_string_equal(f.link, name63);
	assert_string_equal(f.side, name63);
	snprintf(line, sizeof(line), "fault %s A drop", name64);
	assert_int_equal(qkm_fault_parse(line, &f, err, sizeof(err)), QKM_EINVAL);
	assert_non_null(strstr(err, "bad link or side name"));
	snprintf(line, sizeof(line), "fault A %s drop", name64);
	assert_int_equal(qkm_fault_parse(line, &f, err, sizeof(err)), QKM_EINVAL);

	/* Lines of 256 bytes or more are refused before they are split. */
	memset(line, ' ', sizeof(line));
	memcpy(line, "fault A-B - drop", 16);
	line[255] = 0;
	assert_int_equal(qkm_fault_parse(line, &f, err, sizeof(err)), 0);
	line[255] = ' ';
	line[256] = 0;
	assert_int_equal(qkm_fault_parse(line, &f, err, sizeof(err)), QKM_EINVAL);
	assert_non_null(strstr(err, "too long"));

	/* A short error buffer gets a cut, terminated message. */
	char tiny[8];
	memset(tiny, 'x', sizeof(tiny));
	assert_int_equal(qkm_fault_parse("fault A-B A melt", &f, tiny, sizeof(tiny)), QKM_EINVAL);
	assert_int_equal(strlen(tiny), sizeof(tiny) - 1);
}

/* format -> parse gives back the same fault. QBER is formatted with six
 * decimals (ppm, the unit of QKM_T_QBER), so values with at most six
 * decimals round-trip exactly; finer ones to the nearest ppm. */
static void test_format_parse_roundtrip(void **state)
{
	static const struct qkm_fault in[] = {
		{"A-B", "A", QKM_FAULT_FLIP, 1, 0},
		{"A-B", "B", QKM_FAULT_FLIP, 65536, 0},
		{"l.1", "-", QKM_FAULT_DROP, 0, 0},
		{"l.1", "n:2", QKM_FAULT_DROP, 0, 0},
		{"x_y", "-", QKM_FAULT_QBER, 0, 0.0},
		{"x_y", "-", QKM_FAULT_QBER, 0, 0.5},
		{"x_y", "-", QKM_FAULT_QBER, 0, 0.123456},
		{"x_y", "-", QKM_FAULT_QBER, 0, 0.000001},
		{"A-B", "-", QKM_FAULT_DOWN, 0, 0},
		{"A-B", "-", QKM_FAULT_UP, 0, 0},
	};
	char line[256], err[128];
	struct qkm_fault out;
	for (size_t i = 0; i < sizeof(in) / sizeof(in[0]); i++) {
		qkm_fault_format(&in[i], line, sizeof(line));
		if (qkm_fault_parse(line, &out, err, sizeof(err)) != 0)
			fail_msg("'%s' does not parse: %s", line, err);
		assert_string_equal(out.link, in[i].link);
		assert_string_equal(out.side, in[i].side);
		assert_int_equal(out.kind, in[i].kind);
		assert_int_equal(out.flips, in[i].flips);
		assert_true(out.qber == in[i].qber);
	}

	/* parse -> format -> parse is stable too, for every kind. */
	static const char *const lines[] = {"fault A-B A flip 7", "fault A-B B drop",
					    "fault A-B - qber 0.11", "fault A-B - down",
					    "fault A-B - up"};
	for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) {
		struct qkm_fault a, b;
		char l2[256];
		assert_int_equal(qkm_fault_parse(lines[i], &a, err, sizeof(err)), 0);
		qkm_fault_format(&a, l2, sizeof(l2));
		assert_int_equal(qkm_fault_parse(l2, &b, err, sizeof(err)), 0);
		assert_memory_equal(&a, &b, sizeof(a));
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_every_kind_parses),
		cmocka_unit_test(test_bad_commands),
		cmocka_unit_test(test_names_and_length),
		cmocka_unit_test(test_format_parse_roundtrip),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
