/* cli.h - entry points of the qkm subcommands; each returns the exit code. */
#ifndef QKM_CLI_CLI_H
#define QKM_CLI_CLI_H

int cli_version(int argc, char **argv);

#endif
