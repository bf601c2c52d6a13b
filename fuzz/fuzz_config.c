/* fuzz_config.c - libFuzzer target for the strict JSON configs
 * (proto/config_json.c) and the controller's access list file
 * (proto/ctl_json.c): the input is handed as text to all five parsers the
 * file loaders use (node.json, sim.json, topology, ctl.json, access.json).
 * Any error is fine; a crash or leak is not. A node, simulator or
 * controller config or an access list that parses must also survive save
 * -> load (through a file in $TMPDIR, or /tmp) unchanged. The input also
 * goes to the line finder of config errors (json_path.c). */
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/id.h"
#include "proto/config_json.h"
#include "proto/ctl_json.h"
#include "proto/json_path.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int cond)
{
	if (!cond)
		abort();
}

/* One save target per fuzzing process. */
static char out_path[PATH_MAX];

/* The configs are large (hundreds of KiB); keep one of each. */
static struct qkm_node_cfg node, node2;
static struct qkm_sim_cfg sim, sim2;
static struct qkm_topology topo;
static struct qkm_ctl_cfg ctl, ctl2;
static struct qkm_sae_entry saes[QKM_MAX_SAES], saes2[QKM_MAX_SAES];

static void remove_out(void)
{
	unlink(out_path);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char err[512];
	/* The line finder config errors use, on any bytes: a line within them. */
	static const char *const paths[] = {"", "links[1].sides[0].node", "tls.key", "a[0][2].b"};
	for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
		unsigned line = qkm_json_path_line((const char *)data, size, paths[i]);
		check(line >= 1 && line <= 1 + (unsigned)size);
	}
	if (!out_path[0]) {
		const char *tmp = getenv("TMPDIR");
		snprintf(out_path, sizeof(out_path), "%s/qkm-fuzz-config-%ld.out",
			 tmp && *tmp ? tmp : "/tmp", (long)getpid());
		atexit(remove_out);
	}
	const char *text = (const char *)data;

	int rc = qkm_node_cfg_parse("in.json", text, size, &node, err, sizeof(err));
	check(rc == 0 || rc == QKM_ECONFIG);
	check(rc == 0 || memchr(err, 0, sizeof(err)));
	if (rc == 0 && qkm_node_cfg_save(out_path, &node) == 0) {
		check(qkm_node_cfg_load(out_path, &node2, err, sizeof(err)) == 0);
		check(memcmp(&node, &node2, sizeof(node)) == 0);
	}

	rc = qkm_sim_cfg_parse("in.json", text, size, &sim, err, sizeof(err));
	check(rc == 0 || rc == QKM_ECONFIG);
	if (rc == 0 && qkm_sim_cfg_save(out_path, &sim) == 0) {
		check(qkm_sim_cfg_load(out_path, &sim2, err, sizeof(err)) == 0);
		check(memcmp(&sim, &sim2, sizeof(sim)) == 0);
	}

	rc = qkm_topology_parse("in.json", text, size, &topo, err, sizeof(err));
	check(rc == 0 || rc == QKM_ECONFIG);
	if (rc == 0) {
		check(topo.n_nodes >= 1 && topo.n_nodes <= QKM_MAX_NODES);
		for (size_t i = 0; i < topo.n_saes; i++) {
			int found = 0;
			for (size_t j = 0; j < topo.n_nodes; j++)
				if (!strcmp(topo.nodes[j].id, topo.saes[i].node) && topo.nodes[j].ksa)
					found = 1;
			check(found);
		}
	}

	rc = qkm_ctl_cfg_parse("in.json", text, size, &ctl, err, sizeof(err));
	check(rc == 0 || rc == QKM_ECONFIG);
	check(rc == 0 || memchr(err, 0, sizeof(err)));
	if (rc == 0 && qkm_ctl_cfg_save(out_path, &ctl) == 0) {
		check(qkm_ctl_cfg_load(out_path, &ctl2, err, sizeof(err)) == 0);
		check(memcmp(&ctl, &ctl2, sizeof(ctl)) == 0);
	}

	size_t n, n2;
	rc = qkm_saes_json_parse(text, size, saes, QKM_MAX_SAES, &n);
	check(rc == 0 || rc == QKM_EFORMAT);
	if (rc == 0) {
		check(n <= QKM_MAX_SAES);
		for (size_t i = 0; i < n; i++)
			check(qkm_name_valid(saes[i].id) && qkm_name_valid(saes[i].node));
		if (qkm_saes_json_save(out_path, saes, n) == 0) {
			check(qkm_saes_json_load(out_path, saes2, QKM_MAX_SAES, &n2) == 0 && n2 == n);
			for (size_t i = 0; i < n; i++)
				check(!strcmp(saes[i].id, saes2[i].id) &&
				      !strcmp(saes[i].node, saes2[i].node) &&
				      saes[i].revoked == saes2[i].revoked);
		}
	}
	return 0;
}
