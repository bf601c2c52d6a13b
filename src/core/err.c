/* err.c - messages for the QKM_E* codes declared in err.h. */
#include "core/err.h"

const char *qkm_strerror(int err)
{
	switch (err) {
	case QKM_OK:
		return "success";
#define QKM_ERR_CASE(name, msg)                                                 \
	case QKM_##name:                                                        \
		return msg;
		QKM_ERRNO_MAP(QKM_ERR_CASE)
#undef QKM_ERR_CASE
	default:
		return "unknown error";
	}
}
