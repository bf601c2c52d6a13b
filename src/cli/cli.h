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

#endif
