/* log.c - the log sink: stderr, one line per event, ISO-8601 UTC time; or,
 * when stderr is the systemd journal, the line's syslog priority as "<N>"
 * in place of the time (sd-daemon(3)), which journald stores and strips. */
#include "core/log.h"
#include "core/err.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static char log_name[32] = "qkm";
static enum qkm_log_level log_level = QKM_LOG_INFO;
static bool log_journal;

/* systemd sets JOURNAL_STREAM=DEV:INODE for a service whose stderr is a
 * journal stream. A child whose stderr was redirected (a node that
 * `qkm net up` started with its log in a file) inherits the variable, so
 * it counts only if stderr is still that very stream. */
static bool stderr_is_journal(void)
{
	const char *js = getenv("JOURNAL_STREAM");
	char *end;
	struct stat st;
	if (!js || *js < '0' || *js > '9')
		return false;
	errno = 0;
	unsigned long long dev = strtoull(js, &end, 10);
	if (*end != ':' || end[1] < '0' || end[1] > '9')
		return false;
	unsigned long long ino = strtoull(end + 1, &end, 10);
	if (*end || errno)
		return false;
	return fstat(STDERR_FILENO, &st) == 0 && (unsigned long long)st.st_dev == dev &&
	       (unsigned long long)st.st_ino == ino;
}

void qkm_log_init(const char *name, enum qkm_log_level level)
{
	snprintf(log_name, sizeof(log_name), "%s", name);
	log_level = level;
	log_journal = stderr_is_journal();
}

bool qkm_log_to_journal(void)
{
	return log_journal;
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

/* prio: the syslog priority (2 crit, 3 err, 4 warning, 6 info, 7 debug). */
static void vlog(enum qkm_log_level lvl, int prio, const char *tag, int errnum, const char *fmt,
		 va_list ap)
{
	if (lvl > log_level)
		return;
	char line[1024];
	int n;
	if (log_journal) {
		n = snprintf(line, sizeof(line), "<%d>%s %s: ", prio, log_name, tag);
	} else {
		struct timespec ts;
		struct tm tm;
		clock_gettime(CLOCK_REALTIME, &ts);
		gmtime_r(&ts.tv_sec, &tm);
		n = snprintf(line, sizeof(line), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s %s: ",
			     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
			     tm.tm_sec, ts.tv_nsec / 1000000, log_name, tag);
	}
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

#define LOGFN(fn, lvl, prio, tag, err)                                          \
	void fn(const char *fmt, ...)                                           \
	{                                                                       \
		int saved = errno;                                              \
		va_list ap;                                                     \
		va_start(ap, fmt);                                              \
		vlog(lvl, prio, tag, err, fmt, ap);                             \
		va_end(ap);                                                     \
		errno = saved;                                                  \
	}
LOGFN(log_debug, QKM_LOG_DEBUG, 7, "debug", 0)
LOGFN(log_info, QKM_LOG_INFO, 6, "info", 0)
LOGFN(log_warn, QKM_LOG_WARN, 4, "warn", saved)
LOGFN(log_warnx, QKM_LOG_WARN, 4, "warn", 0)
LOGFN(log_error, QKM_LOG_ERROR, 3, "error", 0)

void fatalx(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vlog(QKM_LOG_ERROR, 2, "fatal", 0, fmt, ap);
	va_end(ap);
	exit(1);
}
