/* log.h - one line per event to stderr, with a level and the daemon's name:
 * "TIME NAME LEVEL: message", or "<PRIO>NAME LEVEL: message" when stderr
 * is the systemd journal (JOURNAL_STREAM names it), PRIO the syslog
 * priority of the level. Key IDs may be logged; key bytes never are.
 * log_warn appends errno's text, log_warnx does not. The sink's settings
 * are the one process-wide state outside cli/: set once at start-up by
 * main. */
#ifndef QKM_CORE_LOG_H
#define QKM_CORE_LOG_H

#include <stdarg.h>
#include <stdbool.h>

enum qkm_log_level { QKM_LOG_ERROR, QKM_LOG_WARN, QKM_LOG_INFO, QKM_LOG_DEBUG };

/* Sets the name printed on each line and the most verbose level shown, and
 * looks whether stderr is the journal. */
void qkm_log_init(const char *name, enum qkm_log_level level);
/* Whether lines carry "<PRIO>" for the journal (as qkm_log_init found). */
bool qkm_log_to_journal(void);
/* Parses "error"|"warn"|"info"|"debug"; returns 0 or QKM_EINVAL. */
int qkm_log_level_parse(const char *s, enum qkm_log_level *out /* OUT */);

#define QKM_PRINTF(a, b) __attribute__((format(printf, a, b)))
void log_debug(const char *fmt, ...) QKM_PRINTF(1, 2);
void log_info(const char *fmt, ...) QKM_PRINTF(1, 2);
void log_warn(const char *fmt, ...) QKM_PRINTF(1, 2);
void log_warnx(const char *fmt, ...) QKM_PRINTF(1, 2);
void log_error(const char *fmt, ...) QKM_PRINTF(1, 2);
/* Logs at error level and exits 1; only for cli/ and unrecoverable states. */
void fatalx(const char *fmt, ...) QKM_PRINTF(1, 2) __attribute__((noreturn));

#endif
