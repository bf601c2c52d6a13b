/* progress.c - what a command that waits shows while it waits: "WHAT ..."
 * at the cursor, the seconds waited appended every second, all of it erased
 * (backspaces, so text before it on the line stays) when the wait ends.
 * Only on a terminal (or with QKM_PROGRESS=1): scripts, pipes and logs never
 * see it, and stdout is never touched. */
#include "cli/cli.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static bool progress_wanted(void)
{
	const char *e = getenv("QKM_PROGRESS");
	if (e && (strcmp(e, "0") == 0 || strcmp(e, "1") == 0))
		return e[0] == '1';
	return isatty(STDERR_FILENO) == 1;
}

/* Writes all of s to stderr, unbuffered (the caller's stdio buffers stay
 * as they are); a failed write only loses the indicator. */
static void put(const char *s, size_t n)
{
	while (n > 0) {
		ssize_t w = write(STDERR_FILENO, s, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return;
		s += w;
		n -= (size_t)w;
	}
}

/* Erases the last p->shown characters written at the cursor. */
static void erase(struct cli_progress *p)
{
	char b[3 * CLI_PROGRESS_MAX];
	size_t n = p->shown;
	memset(b, '\b', n);
	memset(b + n, ' ', n);
	memset(b + 2 * n, '\b', n);
	put(b, 3 * n);
	p->shown = 0;
}

/* Replaces what is shown with "WHAT ... N s" (or "WHAT ..." at 0 s); with
 * no WHAT (the line already says what is awaited), "N s" alone. */
static void show(struct cli_progress *p, int secs)
{
	char line[CLI_PROGRESS_MAX];
	int n;
	if (!p->what[0])
		n = secs > 0 ? snprintf(line, sizeof(line), "%d s", secs) : 0;
	else if (secs > 0)
		n = snprintf(line, sizeof(line), "%s ... %d s", p->what, secs);
	else
		n = snprintf(line, sizeof(line), "%s ...", p->what);
	if (n < 0)
		return;
	if ((size_t)n >= sizeof(line))
		n = (int)sizeof(line) - 1;
	erase(p);
	put(line, (size_t)n);
	p->shown = (size_t)n;
}

static void *progress_main(void *arg)
{
	struct cli_progress *p = arg;
	struct timespec until;
	int secs = 0;
	(void)pthread_mutex_lock(&p->mu);
	(void)clock_gettime(CLOCK_MONOTONIC, &until);
	while (!p->done) {
		int r = 0;
		until.tv_sec += 1;
		while (!p->done && r == 0) /* 0: signalled (stop) or spurious */
			r = pthread_cond_timedwait(&p->cv, &p->mu, &until);
		if (p->done || r != ETIMEDOUT)
			break; /* stopped, or the wait failed: the indicator stays as it is */
		show(p, ++secs);
	}
	(void)pthread_mutex_unlock(&p->mu);
	return NULL;
}

void cli_progress_start(struct cli_progress *p, const char *fmt, ...)
{
	va_list ap;
	memset(p, 0, sizeof(*p));
	if (!progress_wanted())
		return;
	va_start(ap, fmt);
	if (vsnprintf(p->what, sizeof(p->what), fmt, ap) < 0) /* cut to fit: display only */
		p->what[0] = 0;
	va_end(ap);
	pthread_condattr_t ca;
	if (pthread_condattr_init(&ca))
		return;
	if (pthread_condattr_setclock(&ca, CLOCK_MONOTONIC) || pthread_cond_init(&p->cv, &ca)) {
		(void)pthread_condattr_destroy(&ca);
		return;
	}
	(void)pthread_condattr_destroy(&ca);
	if (pthread_mutex_init(&p->mu, NULL)) {
		(void)pthread_cond_destroy(&p->cv);
		return;
	}
	show(p, 0);
	if (pthread_create(&p->th, NULL, progress_main, p)) {
		erase(p);
		(void)pthread_mutex_destroy(&p->mu);
		(void)pthread_cond_destroy(&p->cv);
		return;
	}
	p->on = true;
}

void cli_progress_stop(struct cli_progress *p)
{
	if (!p->on)
		return;
	(void)pthread_mutex_lock(&p->mu);
	p->done = true;
	(void)pthread_cond_signal(&p->cv);
	(void)pthread_mutex_unlock(&p->mu);
	(void)pthread_join(p->th, NULL);
	erase(p);
	(void)pthread_mutex_destroy(&p->mu);
	(void)pthread_cond_destroy(&p->cv);
	p->on = false;
}
