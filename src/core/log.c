/* log.c - the log sink: stderr, one line per event, ISO-8601 UTC time. */
#include "core/log.h"
#include "core/err.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static char log_name[32] = "qkm";
static enum qkm_log_level log_level = QKM_LOG_INFO;

void qkm_log_init(const char *name, enum qkm_log_level level)
{
	snprintf(log_name, sizeof(log_name), "%s", name);
	log_level = level;
}

int qkm_log_level_parse(const char *s, enum qkm_log_level *out)
{
	static const char *names[] = {"error", "warn", "info", "debug"};
	for (int i = 0; i < 4; i++)
		if (strcmp(s, names[i]) == 0) {
			*out = (enum qkm_log_level)i;
			return 0;
		}
	return QKM_EINVAL;
}

static void vlog(enum qkm_log_level lvl, const char *tag, int errnum, const char *fmt,
		 va_list ap)
{
	if (lvl > log_level)
		return;
	char line[1024];
	struct timespec ts;
	struct tm tm;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	int n = snprintf(line, sizeof(line), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s %s: ",
			 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
			 tm.tm_sec, ts.tv_nsec / 1000000, log_name, tag);
	if (n < 0 || (size_t)n >= sizeof(line))
		n = 0;
	int m = vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
	if (m > 0)
		n = (size_t)n + (size_t)m >= sizeof(line) ? (int)sizeof(line) - 1 : n + m;
	if (errnum)
		n += snprintf(line + n, sizeof(line) - (size_t)n, ": %s", strerror(errnum));
	if ((size_t)n >= sizeof(line) - 1)
		n = (int)sizeof(line) - 2;
	line[n++] = '\n';
	(void)fwrite(line, 1, (size_t)n, stderr); /* a failed log write has nowhere to go */
}

#define LOGFN(fn, lvl, tag, err)                                                \
	void fn(const char *fmt, ...)                                           \
	{                                                                       \
		int saved = errno;                                              \
		va_list ap;                                                     \
		va_start(ap, fmt);                                              \
		vlog(lvl, tag, err, fmt, ap);                                   \
		va_end(ap);                                                     \
		errno = saved;                                                  \
	}
LOGFN(log_debug, QKM_LOG_DEBUG, "debug", 0)
LOGFN(log_info, QKM_LOG_INFO, "info", 0)
LOGFN(log_warn, QKM_LOG_WARN, "warn", saved)
LOGFN(log_warnx, QKM_LOG_WARN, "warn", 0)
LOGFN(log_error, QKM_LOG_ERROR, "error", 0)

void fatalx(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vlog(QKM_LOG_ERROR, "fatal", 0, fmt, ap);
	va_end(ap);
	exit(1);
}
