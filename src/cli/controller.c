/* controller.c - `qkm controller -c FILE [--check]`: the QKDN controller
 * and manager (ctl/controller.h) in one process. */
#include "cli/cli.h"
#include "core/log.h"
#include "ctl/controller.h"
#include "proto/config_json.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
	log_info("signal %d: stopping", (int)sig);
	event_base_loopexit(arg, NULL);
}

/* --check: the controller's file, then the topology it names (which the
 * controller loads at every start). 0 or 2 (any error); 1 out of memory. */
static int check_config(const char *path)
{
	struct qkm_ctl_cfg cfg;
	struct qkm_cfg_errors *errs = malloc(sizeof(*errs));
	struct qkm_topology *topo = calloc(1, sizeof(*topo)); /* n_nodes 0 if not loaded */
	size_t n = 0;
	int rc = 1;
	if (!errs || !topo)
		goto out;
	if (qkm_ctl_cfg_check(path, &cfg, errs))
		n += cli_print_cfg_errors(path, errs);
	/* The topology's name loaded if it is not empty. */
	if (cfg.topology[0] && qkm_topology_check(cfg.topology, topo, errs))
		n += cli_print_cfg_errors(cfg.topology, errs);
	if (n) {
		fprintf(stderr, "qkm controller: %s: %zu error(s)\n", path, n);
		rc = 2;
	} else {
		printf("%s: ok (controller %s, topology %s with %zu node(s), mode %s)\n", path,
		       cfg.id, cfg.topology, topo->n_nodes, cfg.mode);
		rc = 0;
	}
out:
	free(errs);
	free(topo);
	return rc;
}

static void usage(FILE *f)
{
	fprintf(f, "usage: qkm controller -c FILE [--check]\n"
		   "  Runs the QKDN controller and manager (see qkm-controller(1)).\n"
		   "  -c FILE   controller configuration (JSON; see docs/config.md)\n"
		   "  --check   validate the configuration and exit\n");
}

int cli_controller(int argc, char **argv)
{
	const char *path = NULL;
	bool check = false;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "-c") == 0 && i + 1 < argc)
			path = argv[++i];
		else if (strcmp(argv[i], "--check") == 0)
			check = true;
		else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			usage(stdout);
			return 0;
		} else {
			usage(stderr);
			return 2;
		}
	}
	if (!path) {
		usage(stderr);
		return 2;
	}
	struct qkm_ctl_cfg cfg;
	char err[512];
	if (check)
		return check_config(path);
	if (qkm_ctl_cfg_load(path, &cfg, err, sizeof(err))) {
		fprintf(stderr, "qkm controller: %s\n", err);
		return 2;
	}
	enum qkm_log_level lvl = QKM_LOG_INFO;
	if (qkm_log_level_parse(cfg.log_level, &lvl))
		lvl = QKM_LOG_INFO;
	qkm_log_init("controller", lvl);
	(void)signal(SIGPIPE, SIG_IGN); /* only fails for a bad signal number */
	struct rlimit nocore = {0, 0};
	if (setrlimit(RLIMIT_CORE, &nocore) < 0)
		log_warn("cannot disable core dumps");
	struct event_base *base = event_base_new();
	if (!base)
		fatalx("cannot create event loop");
	struct qkm_controller *c = qkm_controller_new(base, &cfg);
	struct event *sigs[2] = {evsignal_new(base, SIGTERM, on_signal, base),
				 evsignal_new(base, SIGINT, on_signal, base)};
	int rc = 1;
	if (c && sigs[0] && sigs[1]) {
		event_add(sigs[0], NULL);
		event_add(sigs[1], NULL);
		log_info("controller %s up: Ck/Mk %s, API https://%s", cfg.id, cfg.ck_listen,
			 cfg.api_listen);
		(void)cli_notify("READY=1"); /* a failure is logged; it runs on */
		event_base_dispatch(base);
		(void)cli_notify("STOPPING=1");
		rc = 0;
	}
	for (int i = 0; i < 2; i++)
		if (sigs[i])
			event_free(sigs[i]);
	qkm_controller_free(c);
	event_base_free(base);
	if (rc == 0)
		log_info("stopped");
	return rc;
}
