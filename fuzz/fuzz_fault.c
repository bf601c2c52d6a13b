/* fuzz_fault.c - libFuzzer target for the simulator's fault command language
 * (sim/fault.c): parse any line; a command that parses must format to a line
 * that parses to the same fault (QBER to the nearest ppm). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sim/fault.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int cond)
{
	if (!cond)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *line = malloc(size + 1);
	if (!line)
		return 0;
	memcpy(line, data, size);
	line[size] = 0;
	struct qkm_fault f, g;
	char err[128], out[256];
	int rc = qkm_fault_parse(line, &f, err, sizeof(err));
	free(line);
	if (rc != 0) {
		check(rc == QKM_EINVAL && memchr(err, 0, sizeof(err)) && err[0]);
		return 0;
	}
	check(f.kind >= QKM_FAULT_FLIP && f.kind <= QKM_FAULT_CORRUPT);
	check(qkm_name_valid(f.link));
	check(!strcmp(f.side, "-") || qkm_name_valid(f.side));
	check(f.kind != QKM_FAULT_FLIP || (f.flips >= 1 && f.flips <= 65536));
	check(f.kind != QKM_FAULT_QBER || (f.qber >= 0 && f.qber <= 0.5));

	qkm_fault_format(&f, out, sizeof(out));
	check(strlen(out) < sizeof(out) - 1); /* never cut */
	check(qkm_fault_parse(out, &g, err, sizeof(err)) == 0);
	check(g.kind == f.kind && g.flips == f.flips && !strcmp(g.link, f.link) &&
	      !strcmp(g.side, f.side));
	double d = g.qber - f.qber;
	check(d <= 0.5e-6 + 1e-12 && d >= -(0.5e-6 + 1e-12));
	return 0;
}
