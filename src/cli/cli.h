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

#include <stddef.h>

struct qkm_cfg_errors; /* proto/config_json.h */

/* Prints every error of errs (found in file) to stderr, one per line
 * (check.c); returns how many there were. */
size_t cli_print_cfg_errors(const char *file, const struct qkm_cfg_errors *errs);

/* Tells systemd the daemon's state ("READY=1", "STOPPING=1") when it runs
 * as a Type=notify service (notify.c); 0 when sent or not asked for, -1
 * (logged) if sending failed. */
int cli_notify(const char *state);

#endif
