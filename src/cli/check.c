/* check.c - the output of `--check` (node, controller, sim): every error of
 * a config file on stderr, one per line, as FILE:LINE: FIELD: message (the
 * form compilers use, so editors can jump to it). */
#include "cli/cli.h"
#include "proto/config_json.h"

#include <limits.h>
#include <stdio.h>

size_t cli_print_cfg_errors(const char *file, const struct qkm_cfg_errors *errs)
{
	char line[PATH_MAX + 400];
	for (size_t i = 0; i < errs->n; i++) {
		qkm_cfg_error_str(file, &errs->e[i], line, sizeof(line));
		fprintf(stderr, "%s\n", line);
	}
	if (errs->dropped)
		fprintf(stderr, "%s: %zu more error(s) not shown\n", file, errs->dropped);
	return errs->n + errs->dropped;
}
