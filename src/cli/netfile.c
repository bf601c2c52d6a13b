/* netfile.c - DIR/network.json for the commands that drive a local network
 * (ctl, key, sim fault, net down/restart): loading it with an error that
 * says what to do, the names it holds for "no such node" errors, and what
 * a failed request to one of its daemons means. */
#include "cli/cli.h"
#include "core/config.h"
#include "core/err.h"
#include "proto/status_json.h"

#include <limits.h>
#include <stdio.h>
#include <unistd.h>

int cli_network_load(const char *cmd, const char *dir, struct qkm_network *net)
{
	char path[PATH_MAX + 16], err[512];
	snprintf(path, sizeof(path), "%s/network.json", dir);
	if (access(path, F_OK) != 0) {
		fprintf(stderr, "%s: no network in %s (no network.json there): start one with "
				"`qkm net up TOPOLOGY.json --dir %s`, or give the --dir it was started with\n",
			cmd, dir, dir);
		return -1;
	}
	if (qkm_network_load(path, net, err, sizeof(err))) {
		fprintf(stderr, "%s: %s (`qkm net up` writes this file: `qkm net down --dir %s` "
				"then up again if it was changed by hand)\n",
			cmd, err, dir);
		return -1;
	}
	return 0;
}

void cli_print_nodes(FILE *f, const struct qkm_network *net)
{
	for (size_t i = 0; i < net->n_nodes; i++)
		fprintf(f, "%s%s", i ? ", " : "", net->nodes[i].id);
}

void cli_print_saes(FILE *f, const struct qkm_network *net)
{
	for (size_t i = 0; i < net->n_saes; i++)
		fprintf(f, "%s%s", i ? ", " : "", net->saes[i].id);
}

const char *cli_http_strerror(int rc)
{
	switch (rc) {
	case QKM_EIO:
		return "no connection (refused or closed: is it running?)";
	case QKM_ETLS:
		return "TLS refused (certificates: are the CA and ours this network's?)";
	case QKM_EAGAIN:
		return "no answer in time (overloaded or stopped?)";
	default:
		return qkm_strerror(rc);
	}
}
