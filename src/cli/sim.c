/* sim.c - `qkm sim -c FILE` runs the quantum-layer simulator;
 * `qkm sim fault --dir DIR [--side NODE] LINK KIND [ARG]` injects a fault
 * into a running one through its control socket. */
#include "cli/cli.h"
#include "core/log.h"
#include "core/secret.h"
#include "proto/config_json.h"
#include "proto/status_json.h"
#include "sim/fault.h"
#include "sim/sim.h"

#include <signal.h>
#include <sys/resource.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
	log_info("signal %d: stopping", (int)sig);
	event_base_loopexit(arg, NULL);
}

static int sim_fault(int argc, char **argv)
{
	const char *dir = NULL, *side = "-";
	char *pos[3] = {NULL, NULL, NULL};
	int npos = 0;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--dir") == 0 && i + 1 < argc)
			dir = argv[++i];
		else if (strcmp(argv[i], "--side") == 0 && i + 1 < argc)
			side = argv[++i];
		else if (npos < 3)
			pos[npos++] = argv[i];
		else
			npos = 4;
	}
	if (!dir || npos < 2 || npos > 3) {
		fprintf(stderr, "usage: qkm sim fault --dir DIR [--side NODE] LINK "
				"flip N|drop|corrupt|qber X|down|up\n");
		return 2;
	}
	char err[512], line[300];
	struct qkm_network *net = malloc(sizeof(*net));
	if (!net)
		return 1;
	if (cli_network_load("qkm sim fault", dir, net)) {
		free(net);
		return 1;
	}
	snprintf(line, sizeof(line), "fault %s %s %s%s%s", pos[0], side, pos[1], pos[2] ? " " : "",
		 pos[2] ? pos[2] : "");
	struct qkm_fault f;
	if (qkm_fault_parse(line, &f, err, sizeof(err))) {
		fprintf(stderr, "qkm sim fault: %s\n", err);
		free(net);
		return 2;
	}
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0), rc = 1;
	if (strlen(net->sim_control) >= sizeof(sun.sun_path) || fd < 0) {
		fprintf(stderr, "qkm sim fault: bad control socket path\n");
		goto out;
	}
	memcpy(sun.sun_path, net->sim_control, strlen(net->sim_control) + 1);
	if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
		fprintf(stderr, "qkm sim fault: simulator not reachable at %s (is the network up? "
				"`qkm net restart --dir %s sim` starts it again; its log: %s)\n",
			net->sim_control, dir, net->sim_log);
		goto out;
	}
	size_t n = strlen(line);
	line[n++] = '\n';
	char reply[512];
	ssize_t got = 0, r;
	if (write(fd, line, n) != (ssize_t)n)
		goto out;
	while (got < (ssize_t)sizeof(reply) - 1 && (r = read(fd, reply + got, sizeof(reply) - 1 - (size_t)got)) > 0) {
		got += r;
		if (memchr(reply, '\n', (size_t)got))
			break;
	}
	reply[got > 0 ? got : 0] = 0;
	if (strncmp(reply, "ok", 2) == 0) {
		printf("%s", reply[2] == ' ' ? reply + 3 : reply);
		rc = 0;
	} else {
		fprintf(stderr, "qkm sim fault: %s", got > 0 ? reply : "no answer from the simulator\n");
	}
out:
	if (fd >= 0)
		close(fd);
	free(net);
	return rc;
}

int cli_sim(int argc, char **argv)
{
	if (argc >= 2 && strcmp(argv[1], "fault") == 0)
		return sim_fault(argc - 1, argv + 1);
	const char *path = NULL;
	bool check = false;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "-c") == 0 && i + 1 < argc)
			path = argv[++i];
		else if (strcmp(argv[i], "--check") == 0)
			check = true;
		else {
			bool help = strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0;
			fprintf(help ? stdout : stderr,
				"usage: qkm sim -c FILE [--check]\n"
				"       qkm sim fault --dir DIR [--side NODE] LINK flip N|drop|corrupt|qber X|down|up\n");
			return help ? 0 : 2;
		}
	}
	if (!path) {
		fprintf(stderr, "usage: qkm sim -c FILE [--check]\n");
		return 2;
	}
	struct qkm_sim_cfg *cfg = malloc(sizeof(*cfg));
	char err[512];
	int rc = 1;
	if (!cfg)
		return 1;
	if (check) {
		struct qkm_cfg_errors *errs = malloc(sizeof(*errs));
		if (!errs || qkm_sim_cfg_check(path, cfg, errs)) {
			if (errs)
				fprintf(stderr, "qkm sim: %s: %zu error(s)\n", path,
					cli_print_cfg_errors(path, errs));
			rc = errs ? 2 : 1;
		} else {
			printf("%s: ok (simulator %s, %zu link(s))\n", path, cfg->name, cfg->n_links);
			rc = 0;
		}
		free(errs);
		free(cfg);
		return rc;
	}
	if (qkm_sim_cfg_load(path, cfg, err, sizeof(err))) {
		fprintf(stderr, "qkm sim: %s\n", err);
		free(cfg);
		return 2;
	}
	enum qkm_log_level lvl = QKM_LOG_INFO;
	if (qkm_log_level_parse(cfg->log_level, &lvl))
		lvl = QKM_LOG_INFO;
	qkm_log_init("sim", lvl);
	(void)signal(SIGPIPE, SIG_IGN); /* fails only for an invalid signal */
	struct rlimit nocore = {0, 0}; /* key bytes in memory: no core files */
	if (setrlimit(RLIMIT_CORE, &nocore) < 0)
		log_warn("cannot disable core dumps");
	/* Backlogs of every module plus frames in flight, in a power of two. */
	size_t need = (size_t)cfg->n_links * 2 * cfg->backlog_bytes + (64u << 20), heap = 1;
	while (heap < need)
		heap <<= 1;
	if (qkm_secret_heap_init_locked(heap))
		fatalx("cannot lock %zu MiB of memory for key material; run as root or raise "
		       "the memlock limit (ulimit -l; LimitMEMLOCK= in a systemd unit)", heap >> 20);
	struct event_base *base = event_base_new();
	struct qkm_sim *s = base ? qkm_sim_new(base, cfg) : NULL;
	struct event *s1 = base ? evsignal_new(base, SIGTERM, on_signal, base) : NULL;
	struct event *s2 = base ? evsignal_new(base, SIGINT, on_signal, base) : NULL;
	if (s && s1 && s2) {
		event_add(s1, NULL);
		event_add(s2, NULL);
		(void)cli_notify("READY=1"); /* a failure is logged; it runs on */
		event_base_dispatch(base);
		(void)cli_notify("STOPPING=1");
		rc = 0;
	}
	if (s1)
		event_free(s1);
	if (s2)
		event_free(s2);
	qkm_sim_free(s);
	if (base)
		event_base_free(base);
	free(cfg);
	return rc;
}
