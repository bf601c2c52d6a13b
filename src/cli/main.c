/* main.c - the qkm binary: dispatches to one file per subcommand. */
#include "cli/cli.h"

#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>

static const struct {
	const char *name;
	int (*fn)(int argc, char **argv);
	const char *help;
} cmds[] = {
	{"node", cli_node, "run the key manager of one QKD node"},
	{"controller", cli_controller, "run the QKDN controller and manager"},
	{"sim", cli_sim, "run the quantum-layer simulator, or inject a fault"},
	{"net", cli_net, "start or stop a whole local QKD network"},
	{"ctl", cli_ctl, "operator commands: status, pair-check, audit, trace, sae, routes, mode, ..."},
	{"key", cli_key, "an application's ETSI GS QKD 014 client: status, enc, dec"},
	{"version", cli_version, "print the version"},
};

static void usage(FILE *f)
{
	fprintf(f, "usage: qkm COMMAND [ARGS]\n\ncommands:\n");
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
		fprintf(f, "  %-12s %s\n", cmds[i].name, cmds[i].help);
	fprintf(f, "\n'qkm COMMAND --help' describes each command; see also qkm(1).\n");
}

int main(int argc, char **argv)
{
	/* Named "qkm" whatever file it was started from: qkm net starts its
	 * daemons through /proc/self/exe (which would name them "exe") and
	 * finds them again by this name (net.c, pid_is_qkm). */
	(void)prctl(PR_SET_NAME, "qkm", 0, 0, 0);
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
	    strcmp(argv[1], "help") == 0) {
		usage(stdout);
		return 0;
	}
	if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "-V") == 0)
		return cli_version(argc - 1, argv + 1);
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
		if (strcmp(argv[1], cmds[i].name) == 0)
			return cmds[i].fn(argc - 1, argv + 1);
	fprintf(stderr, "qkm: unknown command '%s'\n", argv[1]);
	usage(stderr);
	return 2;
}

int cli_version(int argc, char **argv)
{
	printf("qkm %s\n", QKM_VERSION);
	return 0;
}
