/* cli.h - entry points of the qkm subcommands; each returns the exit code. */
#ifndef QKM_CLI_CLI_H
#define QKM_CLI_CLI_H

int cli_version(int argc, char **argv);
int cli_node(int argc, char **argv);
int cli_controller(int argc, char **argv);
int cli_sim(int argc, char **argv);
int cli_net(int argc, char **argv);
int cli_ctl(int argc, char **argv);
int cli_key(int argc, char **argv);

#define QKM_ETSI_MAX_POS 130

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

struct qkm_cfg_errors; /* proto/config_json.h */

/* Prints every error of errs (found in file) to stderr, one per line
 * (check.c); returns how many there were. */
size_t cli_print_cfg_errors(const char *file, const struct qkm_cfg_errors *errs);

/* Tells systemd the daemon's state ("READY=1", "STOPPING=1") when it runs
 * as a Type=notify service (notify.c); 0 when sent or not asked for, -1
 * (logged) if sending failed. */
int cli_notify(const char *state);

struct qkm_network; /* core/config.h */

/* Loads DIR/network.json into net (netfile.c); on failure prints, prefixed
 * with cmd, why and what to do (no network there: `qkm net up`), and
 * returns -1. */
int cli_network_load(const char *cmd, const char *dir, struct qkm_network *net /* OUT */);

/* Prints the network's node IDs (SAE IDs), comma-separated, to f: for
 * errors that name an unknown one. */
void cli_print_nodes(FILE *f, const struct qkm_network *net);
void cli_print_saes(FILE *f, const struct qkm_network *net);

/* What a failed qkm_https_request (net/http.h) means to an operator: a
 * static string for its error code (netfile.c). */
const char *cli_http_strerror(int rc);

/* A "still working" indicator on stderr for a command that waits
 * (progress.c): "WHAT ..." at the cursor from start, the seconds waited
 * appended every second, erased by stop. Shown only when stderr is a
 * terminal (QKM_PROGRESS=1 forces it, =0 turns it off); never on stdout.
 * The struct is the caller's; start may fail silently (then stop does
 * nothing). The caller prints nothing between start and stop. */
#define CLI_PROGRESS_MAX 96
struct cli_progress {
	pthread_t th;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool on, done;
	size_t shown;
	char what[CLI_PROGRESS_MAX - 16];
};
void cli_progress_start(struct cli_progress *p, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
void cli_progress_stop(struct cli_progress *p);

#endif
