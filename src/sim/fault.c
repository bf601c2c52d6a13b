/* fault.c - the simulator's fault command language (fault.h). */
#include "sim/fault.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const kinds[] = {NULL, "flip", "drop", "qber", "down", "up", "corrupt"};

int qkm_fault_parse(const char *line, struct qkm_fault *f, char *err, size_t errsz)
{
	char buf[256], *save = NULL, *tok[6];
	int n = 0;
	memset(f, 0, sizeof(*f));
	if (strlen(line) >= sizeof(buf)) {
		snprintf(err, errsz, "command too long");
		return QKM_EINVAL;
	}
	snprintf(buf, sizeof(buf), "%s", line);
	for (char *t = strtok_r(buf, " \t", &save); t; t = strtok_r(NULL, " \t", &save)) {
		if (n == 6) {
			snprintf(err, errsz, "too many words");
			return QKM_EINVAL;
		}
		tok[n++] = t;
	}
	if (n < 4 || strcmp(tok[0], "fault") != 0) {
		snprintf(err, errsz, "usage: fault LINK SIDE flip N|drop|corrupt|qber X|down|up");
		return QKM_EINVAL;
	}
	if (!qkm_name_valid(tok[1]) || (strcmp(tok[2], "-") && !qkm_name_valid(tok[2]))) {
		snprintf(err, errsz, "bad link or side name");
		return QKM_EINVAL;
	}
	snprintf(f->link, sizeof(f->link), "%s", tok[1]);
	snprintf(f->side, sizeof(f->side), "%s", tok[2]);
	for (int k = QKM_FAULT_FLIP; k <= QKM_FAULT_CORRUPT; k++)
		if (strcmp(tok[3], kinds[k]) == 0)
			f->kind = (enum qkm_fault_kind)k;
	if (!f->kind) {
		snprintf(err, errsz, "unknown fault '%s' (flip N, drop, corrupt, qber X, down, up)", tok[3]);
		return QKM_EINVAL;
	}
	int want_arg = f->kind == QKM_FAULT_FLIP || f->kind == QKM_FAULT_QBER;
	if (n != 4 + want_arg) {
		snprintf(err, errsz, "'%s' takes %s", tok[3], want_arg ? "one argument" : "no argument");
		return QKM_EINVAL;
	}
	char *end;
	if (f->kind == QKM_FAULT_FLIP) {
		unsigned long v = strtoul(tok[4], &end, 10);
		if (*end || tok[4][0] == '-' || v < 1 || v > 65536) {
			snprintf(err, errsz, "flip N: N must be 1..65536");
			return QKM_EINVAL;
		}
		f->flips = (uint32_t)v;
	} else if (f->kind == QKM_FAULT_QBER) {
		double v = strtod(tok[4], &end);
		if (*end || !(v >= 0 && v <= 0.5)) {
			snprintf(err, errsz, "qber X: X must be a number from 0 to 0.5");
			return QKM_EINVAL;
		}
		f->qber = v;
	}
	return 0;
}

void qkm_fault_format(const struct qkm_fault *f, char *out, size_t outsz)
{
	if (f->kind == QKM_FAULT_FLIP)
		snprintf(out, outsz, "fault %s %s flip %u", f->link, f->side, f->flips);
	else if (f->kind == QKM_FAULT_QBER)
		snprintf(out, outsz, "fault %s %s qber %.6f", f->link, f->side, f->qber);
	else
		snprintf(out, outsz, "fault %s %s %s", f->link, f->side, kinds[f->kind]);
}
