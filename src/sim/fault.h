/* fault.h - faults the quantum-layer simulator can be told to inject, and
 * the one-line text command that carries them over its control socket:
 *   fault LINK SIDE flip N | drop | corrupt | qber X | down | up
 * SIDE is the node whose module is affected ("-" = the link's second node;
 * qber, down and up affect the whole link). Pure parsing, no I/O. */
#ifndef QKM_SIM_FAULT_H
#define QKM_SIM_FAULT_H

#include <stddef.h>
#include <stdint.h>

#include "core/err.h"
#include "core/id.h"

enum qkm_fault_kind {
	QKM_FAULT_FLIP = 1, /* N bits of one side's next QKD-key differ */
	QKM_FAULT_DROP,     /* one side loses its next QKD-key */
	QKM_FAULT_QBER,     /* the link's QBER; above threshold: alarm */
	QKM_FAULT_DOWN,
	QKM_FAULT_UP,
	QKM_FAULT_CORRUPT,  /* one side's next key file arrives malformed */
};

struct qkm_fault {
	char link[QKM_NAME_MAX];
	char side[QKM_NAME_MAX];   /* node name, or "-" */
	enum qkm_fault_kind kind;
	uint32_t flips;            /* FLIP: 1..65536 bits */
	double qber;               /* QBER: 0..0.5 */
};

/* Parses one command line (without the newline). On error returns
 * QKM_EINVAL and writes why into err. */
int qkm_fault_parse(const char *line, struct qkm_fault *f /* OUT */, char *err, size_t errsz) QKM_MUST_CHECK;

/* Formats f as a command line (no newline) into out. */
void qkm_fault_format(const struct qkm_fault *f, char *out, size_t outsz);

#endif
