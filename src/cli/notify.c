/* notify.c - the daemons' side of sd_notify(3) without libsystemd: one
 * datagram ("READY=1", "STOPPING=1") to the unix socket systemd names in
 * NOTIFY_SOCKET for a Type=notify service. Outside such a service the
 * variable is unset and nothing is sent. */
#include "cli/cli.h"
#include "core/log.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

int cli_notify(const char *state)
{
	const char *path = getenv("NOTIFY_SOCKET");
	if (!path || !*path)
		return 0;
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	size_t n = strlen(path);
	/* A path, or "@name" for Linux's abstract namespace (a leading NUL). */
	if ((path[0] != '/' && path[0] != '@') || n >= sizeof(sa.sun_path)) {
		log_warnx("NOTIFY_SOCKET '%s' is not a unix socket address: systemd not told %s",
			  path, state);
		return -1;
	}
	memcpy(sa.sun_path, path, n);
	if (path[0] == '@')
		sa.sun_path[0] = '\0';
	socklen_t len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		log_warn("notify socket: systemd not told %s", state);
		return -1;
	}
	ssize_t w = sendto(fd, state, strlen(state), MSG_NOSIGNAL, (struct sockaddr *)&sa, len);
	int saved = errno;
	(void)close(fd); /* a datagram socket: nothing left to flush */
	if (w < 0) {
		errno = saved;
		log_warn("notify %s: systemd not told %s", path, state);
		return -1;
	}
	return 0;
}
