/* test_config.c - strict JSON configs (proto/config_json.c): node, simulator
 * and topology files load with defaults applied; every bad file is refused
 * with a message naming the offending field; saved configs load back equal;
 * a check (`--check`) reports every error of a file with its line. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "proto/config_json.h"
#include "proto/ctl_json.h"

struct fixture {
	char dir[PATH_MAX];
	unsigned n; /* files written so far, for unique names */
	struct qkm_node_cfg node;
	struct qkm_sim_cfg sim;
	struct qkm_topology topo;
	char err[512];
};

static int setup(void **state)
{
	struct fixture *fx = calloc(1, sizeof(*fx));
	if (!fx)
		return -1;
	const char *base = getenv("QKM_TEST_TMP");
	if (!base || !*base)
		base = "/tmp";
	if (mkdir(base, 0700) != 0 && errno != EEXIST)
		base = "/tmp";
	snprintf(fx->dir, sizeof(fx->dir), "%s/test_config.XXXXXX", base);
	if (!mkdtemp(fx->dir)) {
		free(fx);
		return -1;
	}
	*state = fx;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *fx = *state;
	char p[PATH_MAX + 32];
	for (unsigned i = 0; i < fx->n; i++) {
		snprintf(p, sizeof(p), "%s/%u.json", fx->dir, i);
		unlink(p);
	}
	snprintf(p, sizeof(p), "%s/saved.json", fx->dir);
	unlink(p);
	rmdir(fx->dir);
	free(fx);
	return 0;
}

/* Writes text to a fresh file in the fixture's directory; returns its path
 * (static storage, valid until the next call). */
static const char *put(struct fixture *fx, const char *text)
{
	static char path[PATH_MAX + 32];
	snprintf(path, sizeof(path), "%s/%u.json", fx->dir, fx->n++);
	FILE *fp = fopen(path, "w");
	assert_non_null(fp);
	assert_int_equal(fputs(text, fp) >= 0, 1);
	assert_int_equal(fclose(fp), 0);
	return path;
}

enum kind { NODE, SIM, TOPO };

static int load(struct fixture *fx, enum kind k, const char *path)
{
	fx->err[0] = 0;
	switch (k) {
	case NODE:
		return qkm_node_cfg_load(path, &fx->node, fx->err, sizeof(fx->err));
	case SIM:
		return qkm_sim_cfg_load(path, &fx->sim, fx->err, sizeof(fx->err));
	default:
		return qkm_topology_load(path, &fx->topo, fx->err, sizeof(fx->err));
	}
}

/* Loads text and expects QKM_ECONFIG with a message containing want. */
#define REFUSED(fx, k, text, want)                                                              \
	do {                                                                                    \
		const char *p_ = put(fx, text);                                                  \
		int rc_ = load(fx, k, p_);                                                       \
		if (rc_ != QKM_ECONFIG || !strstr((fx)->err, want))                              \
			fail_msg("line %d: rc %d, message '%s', want '%s'", __LINE__, rc_,       \
				 (fx)->err, want);                                               \
		if (strncmp((fx)->err, p_, strlen(p_)) != 0)                                     \
			fail_msg("line %d: message '%s' does not start with the file name",      \
				 __LINE__, (fx)->err);                                           \
	} while (0)

/* The example from INTERFACES.md, verbatim. */
static const char topo_example[] =
	"{\n"
	"  \"nodes\": [ {\"id\": \"A\"}, {\"id\": \"B\", \"ksa\": false}, {\"id\": \"C\"} ],\n"
	"  \"links\": [ {\"a\": \"A\", \"b\": \"B\", \"rate_bps\": 1000000, \"unit_bits\": 4096, \"qber\": 0.01},\n"
	"             {\"a\": \"B\", \"b\": \"C\", \"rate_bps\": 1000000, \"unit_bits\": 8192} ],\n"
	"  \"saes\":  [ {\"id\": \"sae-alice\", \"node\": \"A\"}, {\"id\": \"sae-bob\", \"node\": \"C\"} ],\n"
	"  \"policy\": { \"relay\": \"otp\", \"aes_fallback\": false, \"after_supply\": \"delete\" }\n"
	"}\n";

static void test_topology_example(void **state)
{
	struct fixture *fx = *state;
	assert_int_equal(load(fx, TOPO, put(fx, topo_example)), 0);
	struct qkm_topology *t = &fx->topo;
	assert_int_equal(t->n_nodes, 3);
	assert_string_equal(t->nodes[0].id, "A");
	assert_true(t->nodes[0].ksa);
	assert_string_equal(t->nodes[1].id, "B");
	assert_false(t->nodes[1].ksa); /* R-EL-2: relay-only node */
	assert_true(t->nodes[2].ksa);  /* default */
	assert_int_equal(t->n_links, 2);
	assert_string_equal(t->links[0].a, "A");
	assert_string_equal(t->links[0].b, "B");
	assert_true(t->links[0].rate_bps == 1000000);
	/* R-ACQ-1: unit length differs per module pair. */
	assert_int_equal(t->links[0].unit_bits, 4096);
	assert_int_equal(t->links[1].unit_bits, 8192);
	assert_true(t->links[0].qber == 0.01);
	assert_true(t->links[1].qber == 0.01); /* default */
	assert_int_equal(t->n_saes, 2);
	assert_string_equal(t->saes[1].id, "sae-bob");
	assert_string_equal(t->saes[1].node, "C");
	assert_string_equal(t->policy.relay, "otp");
	assert_false(t->policy.aes_fallback);
	assert_string_equal(t->policy.after_supply, "delete");
	assert_string_equal(t->policy.central, "");
	assert_string_equal(t->policy.key_source, "link");
}

static void test_topology_defaults(void **state)
{
	struct fixture *fx = *state;
	assert_int_equal(load(fx, TOPO, put(fx, "{\"nodes\": [{\"id\": \"solo\"}]}")), 0);
	assert_int_equal(fx->topo.n_nodes, 1);
	assert_string_equal(fx->topo.name, ""); /* no name: the dashboard says "QKD network" */
	assert_int_equal(load(fx, TOPO, put(fx, "{\"name\": \"lab-1\", \"nodes\": [{\"id\": \"a\"}]}")), 0);
	assert_string_equal(fx->topo.name, "lab-1"); /* the dashboard's header */
	assert_int_equal(load(fx, TOPO, put(fx, "{\"nodes\": [{\"id\": \"solo\"}]}")), 0);
	assert_true(fx->topo.nodes[0].ksa);
	assert_int_equal(fx->topo.n_links, 0);
	assert_int_equal(fx->topo.n_saes, 0);
	assert_string_equal(fx->topo.policy.relay, "otp");
	assert_string_equal(fx->topo.policy.after_supply, "delete");
	assert_false(fx->topo.policy.aes_fallback);

	assert_int_equal(load(fx, TOPO, put(fx, "{\"nodes\": [{\"id\": \"a\"}, {\"id\": \"b\"}],"
						 "\"policy\": {\"relay\": \"xor-at-destination\","
						 "\"aes_fallback\": true, \"after_supply\": \"preserve\"}}")),
			 0);
	assert_string_equal(fx->topo.policy.relay, "xor-at-destination");
	assert_true(fx->topo.policy.aes_fallback);
	assert_string_equal(fx->topo.policy.after_supply, "preserve");
	assert_string_equal(fx->topo.policy.key_source, "link");
	assert_int_equal(fx->topo.policy.retention_s, QKM_RETENTION_S);
	assert_int_equal(load(fx, TOPO, put(fx, "{\"nodes\": [{\"id\": \"a\"}],"
						 "\"policy\": {\"retention_s\": 86400}}")),
			 0);
	assert_int_equal(fx->topo.policy.retention_s, 86400);

	/* R-REL-3, R-REL-7: central-xor names its combining node; keys for
	 * relay from the OS RNG instead of the first hop's link key. */
	assert_int_equal(load(fx, TOPO, put(fx, "{\"nodes\": [{\"id\": \"a\"}, {\"id\": \"hub\", \"ksa\": false}],"
						 "\"policy\": {\"relay\": \"central-xor\", \"central\": \"hub\","
						 "\"key_source\": \"rng\"}}")),
			 0);
	assert_string_equal(fx->topo.policy.relay, "central-xor");
	assert_string_equal(fx->topo.policy.central, "hub");
	assert_string_equal(fx->topo.policy.key_source, "rng");
	assert_false(fx->topo.policy.aes_fallback);
	assert_string_equal(fx->topo.policy.after_supply, "delete");
	/* Defaults without a policy object at all. */
	assert_int_equal(load(fx, TOPO, put(fx, "{\"nodes\": [{\"id\": \"a\"}]}")), 0);
	assert_string_equal(fx->topo.policy.central, "");
	assert_string_equal(fx->topo.policy.key_source, "link");
	assert_int_equal(fx->topo.policy.limits.sae_rate, QKM_LIMIT_SAE_RATE);
	assert_int_equal(fx->topo.policy.limits.sae_burst, QKM_LIMIT_SAE_BURST);
	assert_int_equal(fx->topo.policy.limits.sae_in_flight, QKM_LIMIT_SAE_IN_FLIGHT);
}

static void test_topology_refused(void **state)
{
	struct fixture *fx = *state;
	/* Unknown fields, named by their full path. */
	REFUSED(fx, TOPO,
		"{\"nodes\": [{\"id\": \"A\"}, {\"id\": \"B\"}],"
		" \"links\": [{\"a\": \"A\", \"b\": \"B\", \"rate_bps\": 1, \"unit_bits\": 64},"
		"             {\"a\": \"B\", \"b\": \"A\", \"rate\": 1, \"unit_bits\": 64}]}",
		"links[1].rate: unknown field");
	REFUSED(fx, TOPO, "{\"nodes\": [{\"id\": \"A\", \"ksa \": true}]}", "nodes[0].ksa : unknown field");
	REFUSED(fx, TOPO, "{\"nodes\": [{\"id\": \"A\"}], \"node\": []}", "node: unknown field");
	REFUSED(fx, TOPO, "{\"name\": \"my lab\", \"nodes\": [{\"id\": \"A\"}]}",
		"name: 'my lab' is not a valid name");
	REFUSED(fx, TOPO, "{\"nodes\": [{\"id\": \"A\"}], \"policy\": {\"relays\": \"otp\"}}",
		"policy.relays: unknown field");
	/* Wrong types. */
	REFUSED(fx, TOPO, "[]", "must be an object");
	REFUSED(fx, TOPO, "{\"nodes\": {}}", "nodes: must be an array");
	REFUSED(fx, TOPO, "{\"nodes\": [\"A\"]}", "nodes[0]: must be an object");
	REFUSED(fx, TOPO, "{\"nodes\": [{\"id\": 1}]}", "nodes[0].id: must be a string");
	REFUSED(fx, TOPO, "{\"nodes\": [{\"id\": \"A\", \"ksa\": \"no\"}]}", "nodes[0].ksa: must be true or false");
	REFUSED(fx, TOPO, "{\"nodes\": [{\"id\": \"A\", \"ksa\": 0}]}", "nodes[0].ksa: must be true or false");
	REFUSED(fx, TOPO,
		"{\"nodes\": [{\"id\": \"A\"}, {\"id\": \"B\"}],"
		" \"links\": [{\"a\": \"A\", \"b\": \"B\", \"rate_bps\": \"fast\", \"unit_bits\": 64}]}",
		"links[0].rate_bps: must be an integer");
	REFUSED(fx, TOPO,
		"{\"nodes\": [{\"id\": \"A\"}, {\"id\": \"B\"}],"
		" \"links\": [{\"a\": \"A\", \"b\": \"B\", \"rate_bps\": 1.5, \"unit_bits\": 64}]}",
		"links[0].rate_bps: must be an integer");
	REFUSED(fx, TOPO,
		"{\"nodes\": [{\"id\": \"A\"}, {\"id\": \"B\"}],"
		" \"links\": [{\"a\": \"A\", \"b\": \"B\", \"rate_bps\": 1, \"unit_bits\": 64, \"qber\": \"low\"}]}",
		"links[0].qber: must be a number");
	REFUSED(fx, TOPO, "{\"nodes\": [{\"id\": \"A\"}], \"policy\": {\"aes_fallback\": \"yes\"}}",
		"policy.aes_fallback: must be true or false");
	/* Missing required fields. */
	REFUSED(fx, TOPO, "{}", "nodes: missing");
	REFUSED(fx, TOPO, "{\"nodes\": [{\"ksa\": true}]}", "nodes[0].id: missing");
	REFUSED(fx, TOPO,
		"{\"nodes\": [{\"id\": \"A\"}, {\"id\": \"B\"}],"
		" \"links\": [{\"a\": \"A\", \"b\": \"B\", \"rate_bps\": 1}]}",
		"links[0].unit_bits: missing");
	/* Out of range. */
	REFUSED(fx, TOPO, "{\"nodes\": []}", "nodes: needs at least one node");
	static const struct {
		const char *link, *want;
	} range[] = {
		{"\"rate_bps\": 0, \"unit_bits\": 64", "links[0].rate_bps: must be an integer from 1"},
		{"\"rate_bps\": -5, \"unit_bits\": 64", "links[0].rate_bps: must be an integer from 1"},
		{"\"rate_bps\": 100000000001, \"unit_bits\": 64", "links[0].rate_bps"},
		{"\"rate_bps\": 1, \"unit_bits\": 56", "links[0].unit_bits: must be an integer from 64"},
		{"\"rate_bps\": 1, \"unit_bits\": 8388616", "links[0].unit_bits"},
		{"\"rate_bps\": 1, \"unit_bits\": 100", "links[0].unit_bits: must be a multiple of 8"},
		{"\"rate_bps\": 1, \"unit_bits\": 64, \"qber\": 0.6", "links[0].qber: must be a number from 0 to 0.5"},
		{"\"rate_bps\": 1, \"unit_bits\": 64, \"qber\": -0.01", "links[0].qber"},
	};
	for (size_t i = 0; i < sizeof(range) / sizeof(range[0]); i++) {
		char text[512];
		snprintf(text, sizeof(text),
			 "{\"nodes\": [{\"id\": \"A\"}, {\"id\": \"B\"}],"
			 " \"links\": [{\"a\": \"A\", \"b\": \"B\", %s}]}",
			 range[i].link);
		REFUSED(fx, TOPO, text, range[i].want);
	}
	char many[8192] = "{\"nodes\": [";
	for (int i = 0; i <= QKM_MAX_NODES; i++) {
		char one[32];
		snprintf(one, sizeof(one), "%s{\"id\": \"n%d\"}", i ? "," : "", i);
		strcat(many, one);
	}
	strcat(many, "]}");
	REFUSED(fx, TOPO, many, "nodes: at most 64 entries");
	/* Bad names. */
	REFUSED(fx, TOPO, "{\"nodes\": [{\"id\": \"a b\"}]}", "nodes[0].id: 'a b' is not a valid name");
	REFUSED(fx, TOPO, "{\"nodes\": [{\"id\": \"../x\"}]}", "nodes[0].id: '../x' is not a valid name");
	REFUSED(fx, TOPO, "{\"nodes\": [{\"id\": \"\"}]}", "nodes[0].id: must be 1 to 63 characters");
	REFUSED(fx, TOPO,
		"{\"nodes\": [{\"id\": \"nnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnn\"}]}",
		"nodes[0].id: must be 1 to 63 characters");
	REFUSED(fx, TOPO, "{\"nodes\": [{\"id\": \"A\"}], \"saes\": [{\"id\": \"s\\u00e9\", \"node\": \"A\"}]}",
		"saes[0].id");
	/* Semantics. */
	REFUSED(fx, TOPO, "{\"nodes\": [{\"id\": \"A\"}, {\"id\": \"B\"}, {\"id\": \"A\"}]}",
		"nodes[2].id: duplicate node id 'A'");
	REFUSED(fx, TOPO,
		"{\"nodes\": [{\"id\": \"A\"}, {\"id\": \"B\"}],"
		" \"links\": [{\"a\": \"A\", \"b\": \"C\", \"rate_bps\": 1, \"unit_bits\": 64}]}",
		"links[0].b: node 'C' is not in nodes");
	REFUSED(fx, TOPO,
		"{\"nodes\": [{\"id\": \"A\"}, {\"id\": \"B\"}],"
		" \"links\": [{\"a\": \"A\", \"b\": \"A\", \"rate_bps\": 1, \"unit_bits\": 64}]}",
		"links[0]: a and b must differ");
	REFUSED(fx, TOPO,
		"{\"nodes\": [{\"id\": \"A\"}, {\"id\": \"B\"}],"
		" \"links\": [{\"a\": \"A\", \"b\": \"B\", \"rate_bps\": 1, \"unit_bits\": 64},"
		"             {\"a\": \"B\", \"b\": \"A\", \"rate_bps\": 1, \"unit_bits\": 64}]}",
		"links[1]: duplicate link B-A");
	/* R-EL-2: a relay-only node has no KSA, so no application attaches. */
	REFUSED(fx, TOPO,
		"{\"nodes\": [{\"id\": \"A\"}, {\"id\": \"B\", \"ksa\": false}],"
		" \"saes\": [{\"id\": \"sae-1\", \"node\": \"B\"}]}",
		"saes[0].node: node 'B' is relay-only");
	REFUSED(fx, TOPO, "{\"nodes\": [{\"id\": \"A\"}], \"saes\": [{\"id\": \"s\", \"node\": \"Z\"}]}",
		"saes[0].node: node 'Z' is not in nodes");
	REFUSED(fx, TOPO,
		"{\"nodes\": [{\"id\": \"A\"}], \"saes\": [{\"id\": \"s\", \"node\": \"A\"},"
		" {\"id\": \"s\", \"node\": \"A\"}]}",
		"saes[1].id: duplicate SAE id 's'");
	REFUSED(fx, TOPO, "{\"nodes\": [{\"id\": \"A\"}], \"policy\": {\"relay\": \"aes\"}}",
		"policy.relay: must be otp");
	REFUSED(fx, TOPO, "{\"nodes\": [{\"id\": \"A\"}], \"policy\": {\"after_supply\": \"keep\"}}",
		"policy.after_supply: must be delete or preserve");
	REFUSED(fx, TOPO, "{\"nodes\": [{\"id\": \"A\"}], \"policy\": {\"retention_s\": 1}}",
		"policy.retention_s: must be 0 (keep) or from 60 to 315360000");
	/* R-REL-3: central-xor needs a central node of the topology, and only
	 * central-xor takes one. */
	REFUSED(fx, TOPO, "{\"nodes\": [{\"id\": \"A\"}], \"policy\": {\"relay\": \"central-xor\"}}",
		"policy.central: missing (required when relay is central-xor)");
	REFUSED(fx, TOPO,
		"{\"nodes\": [{\"id\": \"A\"}], \"policy\": {\"relay\": \"central-xor\", \"central\": \"Z\"}}",
		"policy.central: node 'Z' is not in nodes");
	REFUSED(fx, TOPO,
		"{\"nodes\": [{\"id\": \"A\"}], \"policy\": {\"relay\": \"central-xor\", \"central\": \"a b\"}}",
		"policy.central: 'a b' is not a valid name");
	REFUSED(fx, TOPO, "{\"nodes\": [{\"id\": \"A\"}], \"policy\": {\"central\": \"A\"}}",
		"policy.central: only allowed when relay is central-xor");
	REFUSED(fx, TOPO,
		"{\"nodes\": [{\"id\": \"A\"}], \"policy\": {\"relay\": \"xor-at-destination\", \"central\": \"A\"}}",
		"policy.central: only allowed when relay is central-xor");
	/* R-REL-7: where end-to-end keys come from. */
	REFUSED(fx, TOPO, "{\"nodes\": [{\"id\": \"A\"}], \"policy\": {\"key_source\": \"qrng\"}}",
		"policy.key_source: must be link or rng");
	REFUSED(fx, TOPO, "{\"nodes\": [{\"id\": \"A\"}], \"policy\": {\"key_source\": \"random-bytes\"}}",
		"policy.key_source: must be link or rng");
	REFUSED(fx, TOPO, "{\"nodes\": [{\"id\": \"A\"}], \"policy\": {\"key_source\": true}}",
		"policy.key_source: must be a string");
}

static const char node_min[] =
	"{\"id\": \"A\", \"db\": \"/var/lib/qkm/A.db\","
	" \"tls\": {\"ca\": \"ca.pem\", \"cert\": \"A.pem\", \"key\": \"A.key\"},"
	" \"listen\": {\"kx\": \"127.0.0.1:7001\", \"admin\": \"127.0.0.1:7002\"},"
	" \"links\": [{\"link\": \"A-B\", \"peer\": \"B\", \"addr\": \"127.0.0.1:7101\", \"module\": \"qm-A-B\"}]}";

static void test_node_good(void **state)
{
	struct fixture *fx = *state;
	assert_int_equal(load(fx, NODE, put(fx, node_min)), 0);
	struct qkm_node_cfg *c = &fx->node;
	assert_string_equal(c->id, "A");
	assert_string_equal(c->db, "/var/lib/qkm/A.db");
	assert_string_equal(c->log_level, "info");
	assert_true(c->ksa);
	assert_string_equal(c->tls.ca, "ca.pem");
	assert_string_equal(c->tls.key, "A.key");
	assert_string_equal(c->kx_listen, "127.0.0.1:7001");
	assert_string_equal(c->admin_listen, "127.0.0.1:7002");
	assert_string_equal(c->etsi014_listen, "");
	assert_string_equal(c->sim, "");
	assert_int_equal(c->n_links, 1);
	assert_string_equal(c->links[0].module, "qm-A-B");
	assert_int_equal(c->links[0].kma_unit_bits, 256); /* R-ACQ-2 default unit */
	assert_int_equal(c->links[0].batch_ms, 100);
	assert_int_equal(c->links[0].batch_max_bytes, 1u << 20);
	assert_int_equal(c->n_saes, 0);
	/* No routes, and the relay defaults (R-REL-3, R-REL-4, R-REL-7). */
	assert_int_equal(c->n_routes, 0);
	assert_string_equal(c->relay.mode, "otp");
	assert_string_equal(c->relay.central, "");
	assert_false(c->relay.aes_fallback);
	assert_false(c->relay.rng);
	assert_string_equal(c->relay.rng_device, "");
	assert_int_equal(c->relay.batch_bytes, 65536);
	assert_true(c->relay.low_bytes == 262144);
	assert_true(c->relay.high_bytes == 1048576);
	assert_int_equal(c->relay.hold_s, 10);
	assert_int_equal(c->relay.hold_mib, 64);
	/* Per-SAE limits at the ETSI 014 interface (issue #7). */
	assert_int_equal(c->limits.sae_rate, QKM_LIMIT_SAE_RATE);
	assert_int_equal(c->limits.sae_burst, QKM_LIMIT_SAE_BURST);
	assert_int_equal(c->limits.sae_in_flight, QKM_LIMIT_SAE_IN_FLIGHT);
	assert_int_equal(c->retention_s, QKM_RETENTION_S);

	assert_int_equal(load(fx, NODE, put(fx,
		"{\"id\": \"B\", \"db\": \"b.db\", \"log_level\": \"debug\", \"ksa\": false,"
		" \"retention_s\": 0,"
		" \"sim\": \"127.0.0.1:9000\","
		" \"tls\": {\"ca\": \"c\", \"cert\": \"d\", \"key\": \"e\"},"
		" \"listen\": {\"kx\": \"k\", \"admin\": \"a\", \"etsi014\": \"127.0.0.1:8443\"},"
		" \"links\": [{\"link\": \"A-B\", \"peer\": \"A\", \"addr\": \"x\", \"module\": \"m1\","
		"   \"kma_unit_bits\": 8192, \"batch_ms\": 60000, \"batch_max_bytes\": 4096},"
		"  {\"link\": \"B-C\", \"peer\": \"C\", \"addr\": \"y\", \"module\": \"m2\"}],"
		" \"saes\": [{\"id\": \"sae-b\", \"node\": \"B\"}]}")), 0);
	c = &fx->node;
	assert_false(c->ksa);
	assert_string_equal(c->log_level, "debug");
	assert_string_equal(c->sim, "127.0.0.1:9000");
	assert_string_equal(c->etsi014_listen, "127.0.0.1:8443");
	assert_int_equal(c->n_links, 2);
	assert_int_equal(c->links[0].kma_unit_bits, 8192);
	assert_int_equal(c->links[0].batch_ms, 60000);
	assert_int_equal(c->links[0].batch_max_bytes, 4096);
	assert_int_equal(c->links[1].kma_unit_bits, 256);
	assert_int_equal(c->n_saes, 1);
	assert_string_equal(c->saes[0].id, "sae-b");
	assert_int_equal(c->retention_s, 0); /* kept for ever */
}

/* R-REL-6: routes over this node's links; R-REL-3/4/7: the relay policy. */
static void test_node_relay_good(void **state)
{
	struct fixture *fx = *state;
	assert_int_equal(load(fx, NODE, put(fx,
		"{\"id\": \"B\", \"db\": \"b.db\", \"ksa\": false,"
		" \"tls\": {\"ca\": \"c\", \"cert\": \"d\", \"key\": \"e\"},"
		" \"listen\": {\"kx\": \"k\", \"admin\": \"a\"},"
		" \"links\": [{\"link\": \"A-B\", \"peer\": \"A\", \"addr\": \"x\", \"module\": \"m1\"},"
		"  {\"link\": \"B-C\", \"peer\": \"C\", \"addr\": \"y\", \"module\": \"m2\"}],"
		" \"routes\": [{\"to\": \"E\", \"path\": [\"B\", \"C\", \"D\", \"E\"]},"
		"  {\"path\": [\"B\", \"A\", \"Z\"], \"to\": \"Z\"},"
		"  {\"to\": \"C\", \"path\": [\"B\", \"C\"]}],"
		" \"relay\": {\"mode\": \"central-xor\", \"central\": \"hub\", \"aes_fallback\": true,"
		"  \"key_source\": \"rng\", \"rng_device\": \"/dev/hwrng\", \"batch_bytes\": 4194304,"
		"  \"low_bytes\": 0, \"high_bytes\": 0, \"hold_s\": 0, \"hold_mib\": 4096}}")), 0);
	struct qkm_node_cfg *c = &fx->node;
	assert_int_equal(c->n_routes, 3);
	assert_string_equal(c->routes[0].to, "E");
	assert_int_equal(c->routes[0].n, 4);
	assert_string_equal(c->routes[0].path[0], "B");
	assert_string_equal(c->routes[0].path[1], "C");
	assert_string_equal(c->routes[0].path[2], "D");
	assert_string_equal(c->routes[0].path[3], "E");
	assert_string_equal(c->routes[0].path[4], "");
	assert_string_equal(c->routes[1].to, "Z");
	assert_int_equal(c->routes[1].n, 3);
	assert_string_equal(c->routes[1].path[1], "A");
	assert_int_equal(c->routes[2].n, 2); /* two nodes is the shortest path allowed */
	assert_string_equal(c->relay.mode, "central-xor");
	assert_string_equal(c->relay.central, "hub");
	assert_true(c->relay.aes_fallback);
	assert_true(c->relay.rng);
	assert_string_equal(c->relay.rng_device, "/dev/hwrng");
	assert_int_equal(c->relay.batch_bytes, 4194304);
	assert_true(c->relay.low_bytes == 0);
	assert_true(c->relay.high_bytes == 0); /* high == low is allowed */
	assert_int_equal(c->relay.hold_s, 0);
	assert_int_equal(c->relay.hold_mib, 4096);

	/* A path of QKM_MAX_PATH nodes; a partial relay object keeps the
	 * other defaults. */
	char text[2048], path[1024] = "\"A\", \"B\"";
	for (int i = 2; i < QKM_MAX_PATH; i++) {
		char one[16];
		snprintf(one, sizeof(one), ", \"h%d\"", i);
		strcat(path, one);
	}
	snprintf(text, sizeof(text),
		 "{\"id\": \"A\", \"db\": \"a.db\","
		 " \"tls\": {\"ca\": \"c\", \"cert\": \"d\", \"key\": \"e\"},"
		 " \"listen\": {\"kx\": \"k\", \"admin\": \"a\"},"
		 " \"links\": [{\"link\": \"A-B\", \"peer\": \"B\", \"addr\": \"x\", \"module\": \"m\"}],"
		 " \"routes\": [{\"to\": \"h%d\", \"path\": [%s]}],"
		 " \"relay\": {\"mode\": \"xor-at-destination\", \"high_bytes\": 9007199254740993}}",
		 QKM_MAX_PATH - 1, path);
	if (load(fx, NODE, put(fx, text)) != 0)
		fail_msg("%s", fx->err);
	assert_int_equal(c->n_routes, 1);
	assert_int_equal(c->routes[0].n, QKM_MAX_PATH);
	assert_string_equal(c->relay.mode, "xor-at-destination");
	assert_string_equal(c->relay.central, "");
	assert_false(c->relay.rng);
	assert_int_equal(c->relay.batch_bytes, 65536);
	assert_true(c->relay.low_bytes == 262144);
	assert_true(c->relay.high_bytes == 9007199254740993ull); /* 2^53 + 1: exact, not a double */
	assert_int_equal(c->relay.hold_s, QKM_RELAY_HOLD_S);
	assert_int_equal(c->relay.hold_mib, QKM_RELAY_HOLD_MIB);
}

/* node_min with one substitution: the link object replaced by link. */
static void node_with_link(char *out, size_t n, const char *link)
{
	snprintf(out, n,
		 "{\"id\": \"A\", \"db\": \"a.db\","
		 " \"tls\": {\"ca\": \"c\", \"cert\": \"d\", \"key\": \"e\"},"
		 " \"listen\": {\"kx\": \"k\", \"admin\": \"a\"},"
		 " \"links\": [{\"link\": \"A-B\", \"peer\": \"B\", \"addr\": \"x\", \"module\": \"m\"}, {%s}]}",
		 link);
}

static void test_node_refused(void **state)
{
	struct fixture *fx = *state;
	char text[1024];
	REFUSED(fx, NODE, "{\"id\": \"A\", \"db\": \"a.db\", \"tsl\": {}}", "tsl: unknown field");
	REFUSED(fx, NODE,
		"{\"id\": \"A\", \"db\": \"a.db\", \"tls\": {\"ca\": \"c\", \"cert\": \"d\", \"key\": \"e\"},"
		" \"listen\": {\"kx\": \"k\", \"admin\": \"a\", \"etsi\": \"e\"}}",
		"listen.etsi: unknown field");
	REFUSED(fx, NODE, "{\"id\": \"A\", \"db\": \"a.db\", \"tls\": {\"ca\": \"c\", \"cert\": \"d\"}}",
		"tls.key: missing");
	REFUSED(fx, NODE, "{\"id\": \"A\", \"db\": \"a.db\", \"tls\": {\"ca\": \"c\", \"cert\": \"d\", \"key\": \"e\"}}",
		"listen: missing");
	REFUSED(fx, NODE, "{\"id\": \"A\", \"db\": \"a.db\", \"tls\": 5}", "tls: must be an object");
	REFUSED(fx, NODE, "{\"id\": \"A\", \"db\": \"a.db\", \"log_level\": \"loud\"}",
		"log_level: must be error, warn, info or debug");
	REFUSED(fx, NODE, "{\"id\": \"A B\", \"db\": \"a.db\"}", "id: 'A B' is not a valid name");
	REFUSED(fx, NODE, "{\"db\": \"a.db\"}", "id: missing");
	REFUSED(fx, NODE, "{\"id\": \"A\", \"db\": \"a.db\", \"ksa\": null}", "ksa: must be true or false");
	REFUSED(fx, NODE, "{\"id\": \"A\", \"db\": \"a.db\", \"retention_s\": 59,"
		" \"tls\": {\"ca\": \"c\", \"cert\": \"d\", \"key\": \"e\"},"
		" \"listen\": {\"kx\": \"k\", \"admin\": \"a\"}}",
		"retention_s: must be 0 (keep) or from 60 to 315360000");
	REFUSED(fx, NODE, "{\"id\": \"A\", \"db\": \"a.db\", \"retention_s\": 315360001,"
		" \"tls\": {\"ca\": \"c\", \"cert\": \"d\", \"key\": \"e\"},"
		" \"listen\": {\"kx\": \"k\", \"admin\": \"a\"}}",
		"retention_s: must be an integer from 0 to 315360000");

	static const struct {
		const char *link, *want;
	} bad[] = {
		{"\"link\": \"A-C\", \"peer\": \"C\", \"addr\": \"y\", \"module\": \"m\", \"kma_unit\": 64",
		 "links[1].kma_unit: unknown field"},
		{"\"link\": \"A-C\", \"peer\": \"C\", \"addr\": \"y\"", "links[1].module: missing"},
		{"\"link\": \"A-C\", \"peer\": \"C\", \"addr\": 7, \"module\": \"m\"",
		 "links[1].addr: must be a string"},
		{"\"link\": \"A C\", \"peer\": \"C\", \"addr\": \"y\", \"module\": \"m\"",
		 "links[1].link: 'A C' is not a valid name"},
		{"\"link\": \"A-C\", \"peer\": \"C/\", \"addr\": \"y\", \"module\": \"m\"",
		 "links[1].peer"},
		{"\"link\": \"A-C\", \"peer\": \"A\", \"addr\": \"y\", \"module\": \"m\"",
		 "links[1].peer: 'A' is this node itself"},
		{"\"link\": \"A-C\", \"peer\": \"C\", \"addr\": \"y\", \"module\": \"m\", \"kma_unit_bits\": 32",
		 "links[1].kma_unit_bits: must be an integer from 64 to 1048576"},
		{"\"link\": \"A-C\", \"peer\": \"C\", \"addr\": \"y\", \"module\": \"m\", \"kma_unit_bits\": 2097152",
		 "links[1].kma_unit_bits"},
		{"\"link\": \"A-C\", \"peer\": \"C\", \"addr\": \"y\", \"module\": \"m\", \"kma_unit_bits\": 100",
		 "links[1].kma_unit_bits: must be a multiple of 8"},
		{"\"link\": \"A-C\", \"peer\": \"C\", \"addr\": \"y\", \"module\": \"m\", \"batch_ms\": 0",
		 "links[1].batch_ms"},
		{"\"link\": \"A-C\", \"peer\": \"C\", \"addr\": \"y\", \"module\": \"m\", \"batch_ms\": 60001",
		 "links[1].batch_ms"},
		{"\"link\": \"A-C\", \"peer\": \"C\", \"addr\": \"y\", \"module\": \"m\", \"batch_max_bytes\": 4095",
		 "links[1].batch_max_bytes"},
		{"\"link\": \"A-C\", \"peer\": \"C\", \"addr\": \"y\", \"module\": \"m\", \"batch_ms\": true",
		 "links[1].batch_ms: must be an integer"},
		{"\"link\": \"A-C\", \"peer\": \"C\", \"addr\": \"y\", \"module\": \"m\", \"batch_ms\": 4294967397",
		 "links[1].batch_ms"}, /* 2^32 + 101: must not wrap to 101 */
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		node_with_link(text, sizeof(text), bad[i].link);
		REFUSED(fx, NODE, text, bad[i].want);
	}
}

/* node_min's A with links to B and C, plus the top-level fields in extra. */
static void node_with(char *out, size_t n, const char *extra)
{
	snprintf(out, n,
		 "{\"id\": \"A\", \"db\": \"a.db\","
		 " \"tls\": {\"ca\": \"c\", \"cert\": \"d\", \"key\": \"e\"},"
		 " \"listen\": {\"kx\": \"k\", \"admin\": \"a\"},"
		 " \"links\": [{\"link\": \"A-B\", \"peer\": \"B\", \"addr\": \"x\", \"module\": \"m\"},"
		 "  {\"link\": \"A-C\", \"peer\": \"C\", \"addr\": \"y\", \"module\": \"n\"}], %s}",
		 extra);
}

/* R-REL-6: a route is refused unless it starts here, leaves over one of
 * this node's links, visits no node twice and ends at its destination. */
static void test_node_routes_refused(void **state)
{
	struct fixture *fx = *state;
	char text[4096];
	static const struct {
		const char *routes, *want;
	} bad[] = {
		{"{}", "routes: must be an array"},
		{"[\"A\"]", "routes[0]: must be an object"},
		{"[{\"to\": \"D\", \"path\": [\"A\", \"B\", \"D\"], \"via\": \"B\"}]",
		 "routes[0].via: unknown field"},
		{"[{\"path\": [\"A\", \"B\", \"D\"]}]", "routes[0].to: missing"},
		{"[{\"to\": \"D\"}]", "routes[0].path: missing"},
		{"[{\"to\": 4, \"path\": [\"A\", \"B\", \"D\"]}]", "routes[0].to: must be a string"},
		{"[{\"to\": \"D D\", \"path\": [\"A\", \"B\", \"D D\"]}]",
		 "routes[0].to: 'D D' is not a valid name"},
		{"[{\"to\": \"A\", \"path\": [\"A\", \"B\", \"A\"]}]", "routes[0].to: 'A' is this node itself"},
		{"[{\"to\": \"D\", \"path\": [\"A\", \"B\", \"D\"]},"
		 " {\"to\": \"D\", \"path\": [\"A\", \"C\", \"D\"]}]",
		 "routes[1].to: duplicate route to 'D'"},
		{"[{\"to\": \"D\", \"path\": \"A B D\"}]", "routes[0].path: must be an array"},
		{"[{\"to\": \"D\", \"path\": []}]", "routes[0].path: must have 2 to 16 nodes"},
		{"[{\"to\": \"D\", \"path\": [\"D\"]}]", "routes[0].path: must have 2 to 16 nodes"},
		{"[{\"to\": \"D\", \"path\": [\"A\", \"B\", 3]}]", "routes[0].path[2]: must be a string"},
		{"[{\"to\": \"D\", \"path\": [\"A\", \"B\", \"x/y\", \"D\"]}]",
		 "routes[0].path[2]: 'x/y' is not a valid name"},
		{"[{\"to\": \"D\", \"path\": [\"A\", \"\", \"D\"]}]", "routes[0].path[1]: must be 1 to 63"},
		{"[{\"to\": \"D\", \"path\": [\"B\", \"C\", \"D\"]}]",
		 "routes[0].path[0]: must be this node ('A')"},
		{"[{\"to\": \"D\", \"path\": [\"A\", \"B\", \"A\", \"D\"]}]",
		 "routes[0].path[2]: 'A' is already path[0]"},
		{"[{\"to\": \"D\", \"path\": [\"A\", \"B\", \"E\", \"B\", \"D\"]}]",
		 "routes[0].path[3]: 'B' is already path[1]"},
		{"[{\"to\": \"D\", \"path\": [\"A\", \"B\", \"D\", \"D\"]}]",
		 "routes[0].path[3]: 'D' is already path[2]"},
		{"[{\"to\": \"D\", \"path\": [\"A\", \"X\", \"D\"]}]",
		 "routes[0].path[1]: 'X' is not the peer of any of this node's links"},
		{"[{\"to\": \"D\", \"path\": [\"A\", \"D\"]}]",
		 "routes[0].path[1]: 'D' is not the peer of any of this node's links"},
		{"[{\"to\": \"D\", \"path\": [\"A\", \"B\", \"E\"]}]",
		 "routes[0].path[2]: must be the route's destination ('D')"},
		{"[{\"to\": \"D\", \"path\": [\"A\", \"B\", \"D\"]},"
		 " {\"to\": \"E\", \"path\": [\"A\", \"C\", \"D\", \"F\"]}]",
		 "routes[1].path[3]: must be the route's destination ('E')"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char extra[1024];
		snprintf(extra, sizeof(extra), "\"routes\": %s", bad[i].routes);
		node_with(text, sizeof(text), extra);
		REFUSED(fx, NODE, text, bad[i].want);
	}
	/* More than QKM_MAX_PATH nodes on a path; more routes than nodes. */
	char many[3072] = "\"routes\": [{\"to\": \"h16\", \"path\": [\"A\", \"B\"";
	for (int i = 2; i <= QKM_MAX_PATH; i++) {
		char one[16];
		snprintf(one, sizeof(one), ", \"h%d\"", i);
		strcat(many, one);
	}
	strcat(many, "]}]");
	node_with(text, sizeof(text), many);
	REFUSED(fx, NODE, text, "routes[0].path: at most 16 entries");
	snprintf(many, sizeof(many), "\"routes\": [");
	for (int i = 0; i <= QKM_MAX_NODES; i++)
		strcat(many, i ? ", {}" : "{}");
	strcat(many, "]");
	node_with(text, sizeof(text), many);
	REFUSED(fx, NODE, text, "routes: at most 64 entries");
}

/* R-REL-3, R-REL-4, R-REL-7: every relay field checked, named in full. */
static void test_node_relay_refused(void **state)
{
	struct fixture *fx = *state;
	char text[2048];
	static const struct {
		const char *relay, *want;
	} bad[] = {
		{"[]", "relay: must be an object"},
		{"{\"modes\": \"otp\"}", "relay.modes: unknown field"},
		{"{\"mode\": \"aes\"}", "relay.mode: must be otp, xor-at-destination or central-xor"},
		{"{\"mode\": \"OTP\"}", "relay.mode: must be otp"},
		{"{\"mode\": 1}", "relay.mode: must be a string"},
		{"{\"mode\": \"central-xor\"}", "relay.central: missing (required when mode is central-xor)"},
		{"{\"mode\": \"central-xor\", \"central\": \"a/b\"}", "relay.central: 'a/b' is not a valid name"},
		{"{\"central\": \"hub\"}", "relay.central: only allowed when mode is central-xor"},
		{"{\"mode\": \"xor-at-destination\", \"central\": \"hub\"}",
		 "relay.central: only allowed when mode is central-xor"},
		{"{\"aes_fallback\": \"yes\"}", "relay.aes_fallback: must be true or false"},
		{"{\"key_source\": \"qrng\"}", "relay.key_source: must be link or rng"},
		{"{\"key_source\": \"\"}", "relay.key_source: must be 1 to"},
		{"{\"rng_device\": \"\"}", "relay.rng_device: must be 1 to"},
		{"{\"rng_device\": 7}", "relay.rng_device: must be a string"},
		{"{\"batch_bytes\": 255}", "relay.batch_bytes: must be an integer from 256 to 4194304"},
		{"{\"batch_bytes\": 4194336}", "relay.batch_bytes: must be an integer from 256 to 4194304"},
		{"{\"batch_bytes\": 4294967552}", "relay.batch_bytes: must be an integer"}, /* 2^32 + 256 */
		{"{\"batch_bytes\": 1000}", "relay.batch_bytes: must be a multiple of 32"},
		{"{\"batch_bytes\": \"64k\"}", "relay.batch_bytes: must be an integer"},
		{"{\"low_bytes\": -1}", "relay.low_bytes: must be an integer"},
		{"{\"low_bytes\": 1.5}", "relay.low_bytes: must be an integer"},
		{"{\"high_bytes\": 100}", "relay.high_bytes: must be at least low_bytes (262144)"},
		{"{\"low_bytes\": 2000000}", "relay.high_bytes: must be at least low_bytes (2000000)"},
		{"{\"low_bytes\": 10, \"high_bytes\": 9}", "relay.high_bytes: must be at least low_bytes (10)"},
		{"{\"hold_s\": -1}", "relay.hold_s: must be an integer"},
		{"{\"hold_s\": 3601}", "relay.hold_s: must be an integer from 0 to 3600"},
		{"{\"hold_s\": 2.5}", "relay.hold_s: must be an integer"},
		{"{\"hold_mib\": 0}", "relay.hold_mib: must be an integer from 1 to 4096"},
		{"{\"hold_mib\": 4097}", "relay.hold_mib: must be an integer from 1 to 4096"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char extra[512];
		snprintf(extra, sizeof(extra), "\"relay\": %s", bad[i].relay);
		node_with(text, sizeof(text), extra);
		REFUSED(fx, NODE, text, bad[i].want);
	}
}

/* Per-SAE request rate and in-flight limits (issue #7; docs/config.md). */
static void test_node_limits(void **state)
{
	struct fixture *fx = *state;
	char text[2048];
	node_with(text, sizeof(text),
		  "\"limits\": {\"sae_rate\": 50, \"sae_burst\": 7, \"sae_in_flight\": 3}");
	assert_int_equal(load(fx, NODE, put(fx, text)), 0);
	assert_int_equal(fx->node.limits.sae_rate, 50);
	assert_int_equal(fx->node.limits.sae_burst, 7);
	assert_int_equal(fx->node.limits.sae_in_flight, 3);
	/* A rate alone: the burst is twice the rate; the rest default. */
	node_with(text, sizeof(text), "\"limits\": {\"sae_rate\": 50}");
	assert_int_equal(load(fx, NODE, put(fx, text)), 0);
	assert_int_equal(fx->node.limits.sae_rate, 50);
	assert_int_equal(fx->node.limits.sae_burst, 100);
	assert_int_equal(fx->node.limits.sae_in_flight, QKM_LIMIT_SAE_IN_FLIGHT);
	node_with(text, sizeof(text), "\"limits\": {\"sae_rate\": 1000000}");
	assert_int_equal(load(fx, NODE, put(fx, text)), 0);
	assert_int_equal(fx->node.limits.sae_burst, QKM_LIMIT_MAX);
	/* 0 turns a limit off; an empty object keeps the defaults. */
	node_with(text, sizeof(text),
		  "\"limits\": {\"sae_rate\": 0, \"sae_burst\": 0, \"sae_in_flight\": 0}");
	assert_int_equal(load(fx, NODE, put(fx, text)), 0);
	assert_int_equal(fx->node.limits.sae_rate, 0);
	assert_int_equal(fx->node.limits.sae_in_flight, 0);
	node_with(text, sizeof(text), "\"limits\": {}");
	assert_int_equal(load(fx, NODE, put(fx, text)), 0);
	assert_int_equal(fx->node.limits.sae_rate, QKM_LIMIT_SAE_RATE);
	assert_int_equal(fx->node.limits.sae_burst, QKM_LIMIT_SAE_BURST);

	static const struct {
		const char *limits, *want;
	} bad[] = {
		{"[]", "limits: must be an object"},
		{"{\"rate\": 5}", "limits.rate: unknown field"},
		{"{\"sae_rate\": -1}", "limits.sae_rate: must be an integer from 0 to 1000000"},
		{"{\"sae_rate\": 1000001}", "limits.sae_rate: must be an integer from 0 to 1000000"},
		{"{\"sae_rate\": 2.5}", "limits.sae_rate: must be an integer"},
		{"{\"sae_rate\": \"50/s\"}", "limits.sae_rate: must be an integer"},
		{"{\"sae_burst\": true}", "limits.sae_burst: must be an integer"},
		{"{\"sae_in_flight\": 4294967297}", "limits.sae_in_flight: must be an integer"},
		{"{\"sae_rate\": 5, \"sae_burst\": 0}",
		 "limits.sae_burst: must be at least 1 when sae_rate is set"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char extra[512];
		snprintf(extra, sizeof(extra), "\"limits\": %s", bad[i].limits);
		node_with(text, sizeof(text), extra);
		REFUSED(fx, NODE, text, bad[i].want);
	}

	/* The topology's policy.limits, copied into every node.json by `net up`. */
	assert_int_equal(load(fx, TOPO, put(fx, "{\"nodes\": [{\"id\": \"a\"}],"
						 " \"policy\": {\"limits\": {\"sae_rate\": 20,"
						 " \"sae_in_flight\": 4}}}")),
			 0);
	assert_int_equal(fx->topo.policy.limits.sae_rate, 20);
	assert_int_equal(fx->topo.policy.limits.sae_burst, 40);
	assert_int_equal(fx->topo.policy.limits.sae_in_flight, 4);
	assert_int_equal(load(fx, TOPO, put(fx, "{\"nodes\": [{\"id\": \"a\"}], \"policy\": {}}")), 0);
	assert_int_equal(fx->topo.policy.limits.sae_rate, QKM_LIMIT_SAE_RATE);
	assert_int_equal(fx->topo.policy.limits.sae_in_flight, QKM_LIMIT_SAE_IN_FLIGHT);
	REFUSED(fx, TOPO, "{\"nodes\": [{\"id\": \"a\"}], \"policy\": {\"limits\": {\"sae_in_flight\": -2}}}",
		"policy.limits.sae_in_flight: must be an integer from 0 to 1000000");
	REFUSED(fx, TOPO, "{\"nodes\": [{\"id\": \"a\"}], \"policy\": {\"limits\": {\"burst\": 2}}}",
		"policy.limits.burst: unknown field");
}

static const char sim_min[] =
	"{\"tls\": {\"ca\": \"c\", \"cert\": \"s.pem\", \"key\": \"s.key\"},"
	" \"listen\": \"127.0.0.1:9000\", \"control\": \"/run/qkm/sim.sock\","
	" \"links\": [{\"id\": \"A-B\", \"rate_bps\": 1000000, \"unit_bits\": 4096,"
	"   \"sides\": [{\"node\": \"A\", \"module\": \"qm-A\"}, {\"node\": \"B\", \"module\": \"qm-B\"}]}]}";

static void test_sim_good(void **state)
{
	struct fixture *fx = *state;
	assert_int_equal(load(fx, SIM, put(fx, sim_min)), 0);
	struct qkm_sim_cfg *c = &fx->sim;
	assert_string_equal(c->name, "sim");
	assert_string_equal(c->log_level, "info");
	assert_string_equal(c->listen, "127.0.0.1:9000");
	assert_string_equal(c->control, "/run/qkm/sim.sock");
	assert_int_equal(c->backlog_bytes, 64u << 20);
	assert_int_equal(c->n_links, 1);
	assert_string_equal(c->links[0].id, "A-B");
	assert_true(c->links[0].rate_bps == 1000000);
	assert_int_equal(c->links[0].unit_bits, 4096);
	assert_true(c->links[0].qber == 0.01);
	assert_true(c->links[0].qber_threshold == 0.11);
	assert_string_equal(c->links[0].node[0], "A");
	assert_string_equal(c->links[0].module[1], "qm-B");

	/* No links is a valid (idle) simulator. */
	assert_int_equal(load(fx, SIM, put(fx,
		"{\"name\": \"sim-2\", \"log_level\": \"warn\", \"backlog_bytes\": 65536,"
		" \"tls\": {\"ca\": \"c\", \"cert\": \"d\", \"key\": \"e\"},"
		" \"listen\": \"l\", \"control\": \"c\", \"links\": []}")), 0);
	assert_string_equal(fx->sim.name, "sim-2");
	assert_string_equal(fx->sim.log_level, "warn");
	assert_int_equal(fx->sim.backlog_bytes, 65536);
	assert_int_equal(fx->sim.n_links, 0);
}

static void sim_with_link(char *out, size_t n, const char *link)
{
	snprintf(out, n,
		 "{\"tls\": {\"ca\": \"c\", \"cert\": \"d\", \"key\": \"e\"},"
		 " \"listen\": \"l\", \"control\": \"c\","
		 " \"links\": [{\"id\": \"A-B\", \"rate_bps\": 1, \"unit_bits\": 64,"
		 "   \"sides\": [{\"node\": \"A\", \"module\": \"m\"}, {\"node\": \"B\", \"module\": \"n\"}]},"
		 "  {%s}]}",
		 link);
}

static void test_sim_refused(void **state)
{
	struct fixture *fx = *state;
	char text[1024];
	static const char sides[] =
		"\"sides\": [{\"node\": \"A\", \"module\": \"m\"}, {\"node\": \"B\", \"module\": \"n\"}]";
	static const struct {
		const char *pre, *want;
	} bad[] = {
		{"\"id\": \"x\", \"rate\": 1, \"unit_bits\": 64, ", "links[1].rate: unknown field"},
		{"\"id\": \"x\", \"rate_bps\": 0, \"unit_bits\": 64, ", "links[1].rate_bps"},
		{"\"id\": \"x\", \"rate_bps\": 1, \"unit_bits\": 60, ", "links[1].unit_bits"},
		{"\"id\": \"x\", \"rate_bps\": 1, \"unit_bits\": 68, ", "links[1].unit_bits: must be a multiple of 8"},
		{"\"id\": \"x\", \"rate_bps\": 1, \"unit_bits\": 64, \"qber\": 0.6, ",
		 "links[1].qber: must be a number from 0 to 0.5"},
		{"\"id\": \"x\", \"rate_bps\": 1, \"unit_bits\": 64, \"qber_threshold\": 0.51, ",
		 "links[1].qber_threshold"},
		{"\"id\": \"x y\", \"rate_bps\": 1, \"unit_bits\": 64, ", "links[1].id"},
		{"\"rate_bps\": 1, \"unit_bits\": 64, ", "links[1].id: missing"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char link[512];
		snprintf(link, sizeof(link), "%s%s", bad[i].pre, sides);
		sim_with_link(text, sizeof(text), link);
		REFUSED(fx, SIM, text, bad[i].want);
	}
	sim_with_link(text, sizeof(text),
		      "\"id\": \"x\", \"rate_bps\": 1, \"unit_bits\": 64, \"sides\": [{\"node\": \"A\", \"module\": \"m\"}]");
	REFUSED(fx, SIM, text, "links[1].sides: must have exactly two entries");
	sim_with_link(text, sizeof(text),
		      "\"id\": \"x\", \"rate_bps\": 1, \"unit_bits\": 64, \"sides\": [{}, {}, {}]");
	REFUSED(fx, SIM, text, "links[1].sides: at most 2 entries");
	sim_with_link(text, sizeof(text),
		      "\"id\": \"x\", \"rate_bps\": 1, \"unit_bits\": 64,"
		      " \"sides\": [{\"node\": \"A\", \"module\": \"m\"}, {\"node\": \"B\", \"modul\": \"n\"}]");
	REFUSED(fx, SIM, text, "links[1].sides[1].modul: unknown field");
	sim_with_link(text, sizeof(text),
		      "\"id\": \"x\", \"rate_bps\": 1, \"unit_bits\": 64,"
		      " \"sides\": [{\"node\": \"A\", \"module\": \"m\"}, {\"node\": \"B!\", \"module\": \"n\"}]");
	REFUSED(fx, SIM, text, "links[1].sides[1].node: 'B!' is not a valid name");
	REFUSED(fx, SIM,
		"{\"tls\": {\"ca\": \"c\", \"cert\": \"d\", \"key\": \"e\"}, \"listen\": \"l\", \"control\": \"c\"}",
		"links: missing");
	REFUSED(fx, SIM,
		"{\"tls\": {\"ca\": \"c\", \"cert\": \"d\", \"key\": \"e\"}, \"listen\": \"l\", \"control\": \"c\","
		" \"backlog_bytes\": 1024, \"links\": []}",
		"backlog_bytes: must be an integer from 65536 to 1073741824");
	REFUSED(fx, SIM,
		"{\"tls\": {\"ca\": \"c\", \"cert\": \"d\", \"key\": \"e\"}, \"listen\": \"\", \"control\": \"c\","
		" \"links\": []}",
		"listen: must be 1 to");
}

/* Syntax errors: ECONFIG with file:line:column; a missing file is EIO. */
static void test_malformed_and_missing(void **state)
{
	struct fixture *fx = *state;
	char want[PATH_MAX + 64];
	const enum kind kinds[] = {NODE, SIM, TOPO};
	for (size_t i = 0; i < 3; i++) {
		const char *p = put(fx, "{\n  \"nodes\": [\n    {\"id\": \"A\",}\n  ]\n}\n");
		snprintf(want, sizeof(want), "%s:3:", p);
		/* A stale errno from an earlier failure must not turn a syntax
		 * error into an I/O error. */
		errno = ENOENT;
		assert_int_equal(load(fx, kinds[i], p), QKM_ECONFIG);
		if (strncmp(fx->err, want, strlen(want)) != 0)
			fail_msg("message '%s' does not start with '%s'", fx->err, want);

		p = put(fx, "{\"nodes\": [{\"id\": \"A\", \"id\": \"B\"}]}");
		assert_int_equal(load(fx, kinds[i], p), QKM_ECONFIG);
		assert_non_null(strstr(fx->err, "duplicate"));
		snprintf(want, sizeof(want), "%s:1:", p);
		assert_non_null(strstr(fx->err, want));

		p = put(fx, "");
		assert_int_equal(load(fx, kinds[i], p), QKM_ECONFIG);

		snprintf(want, sizeof(want), "%s/no-such-file.json", fx->dir);
		assert_int_equal(load(fx, kinds[i], want), QKM_EIO);
		assert_non_null(strstr(fx->err, want));
	}
}

/* A short error buffer gets a cut but terminated message. */
static void test_short_error_buffer(void **state)
{
	struct fixture *fx = *state;
	char err[16];
	memset(err, 'x', sizeof(err));
	assert_int_equal(qkm_topology_load(put(fx, "{\"nodes\": [{\"id\": \"A\", \"zz\": 1}]}"), &fx->topo,
					   err, sizeof(err)),
			 QKM_ECONFIG);
	assert_int_equal(strlen(err), sizeof(err) - 1);
}

static void test_node_save_load(void **state)
{
	struct fixture *fx = *state;
	struct qkm_node_cfg *in = calloc(1, sizeof(*in));
	assert_non_null(in);
	snprintf(in->id, sizeof(in->id), "node-1");
	snprintf(in->db, sizeof(in->db), "/var/lib/qkm/node-1.db");
	snprintf(in->log_level, sizeof(in->log_level), "warn");
	in->ksa = false;
	snprintf(in->tls.ca, sizeof(in->tls.ca), "/etc/qkm/ca.pem");
	snprintf(in->tls.cert, sizeof(in->tls.cert), "/etc/qkm/node-1.pem");
	snprintf(in->tls.key, sizeof(in->tls.key), "/etc/qkm/node-1.key");
	snprintf(in->kx_listen, sizeof(in->kx_listen), "127.0.0.1:7001");
	snprintf(in->admin_listen, sizeof(in->admin_listen), "127.0.0.1:7002");
	snprintf(in->etsi014_listen, sizeof(in->etsi014_listen), "[::1]:8443");
	snprintf(in->sim, sizeof(in->sim), "127.0.0.1:9000");
	in->n_links = 2;
	for (size_t i = 0; i < 2; i++) {
		struct qkm_node_link *l = &in->links[i];
		snprintf(l->link, sizeof(l->link), "link-%zu", i);
		snprintf(l->peer, sizeof(l->peer), "peer-%zu", i);
		snprintf(l->addr, sizeof(l->addr), "10.0.0.%zu:7001", i + 1);
		snprintf(l->module, sizeof(l->module), "mod:%zu", i);
		l->kma_unit_bits = i ? 1u << 20 : 64;
		l->batch_ms = i ? 60000 : 1;
		l->batch_max_bytes = i ? 16u << 20 : 4096;
	}
	/* R-ACQ-5: link 0 from a spool, link 1 from a device (this node,
	 * "node-1", sorts before "peer-1": it leads, so it is the master). */
	in->links[0].src.kind = QKM_SRC_SPOOL;
	snprintf(in->links[0].src.dir, sizeof(in->links[0].src.dir), "/var/lib/qkm/spool/link-0");
	in->links[0].src.poll_ms = 10;
	struct qkm_key_source *ds = &in->links[1].src;
	ds->kind = QKM_SRC_ETSI014;
	snprintf(ds->url, sizeof(ds->url), "https://[::1]:9443");
	snprintf(ds->sae, sizeof(ds->sae), "node-1");
	snprintf(ds->peer_sae, sizeof(ds->peer_sae), "peer-1");
	ds->master = true;
	snprintf(ds->tls.ca, sizeof(ds->tls.ca), "/etc/qkm/device-ca.pem");
	snprintf(ds->tls.cert, sizeof(ds->tls.cert), "/etc/qkm/sae.pem");
	snprintf(ds->tls.key, sizeof(ds->tls.key), "/etc/qkm/sae.key");
	ds->poll_ms = 60000;
	ds->batch = 1024;
	ds->size_bits = 1u << 20;
	in->n_saes = 1;
	snprintf(in->saes[0].id, sizeof(in->saes[0].id), "sae-1");
	snprintf(in->saes[0].node, sizeof(in->saes[0].node), "node-1");
	/* R-REL-6: routes as `qkm net up` writes them. */
	in->n_routes = 2;
	static const char *const hops[2][4] = {{"node-1", "peer-1", "mid", "far"},
					       {"node-1", "peer-0", "near"}};
	for (size_t i = 0; i < 2; i++) {
		struct qkm_node_route *r = &in->routes[i];
		r->n = i ? 3 : 4;
		for (uint32_t k = 0; k < r->n; k++)
			snprintf(r->path[k], sizeof(r->path[k]), "%s", hops[i][k]);
		snprintf(r->to, sizeof(r->to), "%s", hops[i][r->n - 1]);
	}

	char path[PATH_MAX + 32];
	snprintf(path, sizeof(path), "%s/saved.json", fx->dir);
	/* Every relay field set, then the defaults with nothing optional;
	 * the limits set, then all off. */
	for (int variant = 0; variant < 2; variant++) {
		in->limits.sae_rate = variant ? 0 : 7;
		in->limits.sae_burst = variant ? 0 : 1;
		in->limits.sae_in_flight = variant ? 0 : QKM_LIMIT_MAX;
		struct qkm_relay_cfg *rl = &in->relay;
		memset(rl, 0, sizeof(*rl));
		snprintf(rl->mode, sizeof(rl->mode), variant ? "otp" : "central-xor");
		if (!variant) {
			snprintf(rl->central, sizeof(rl->central), "hub");
			snprintf(rl->rng_device, sizeof(rl->rng_device), "/dev/hwrng");
		}
		rl->aes_fallback = !variant;
		rl->rng = !variant;
		rl->batch_bytes = variant ? 65536 : 4u << 20;
		rl->low_bytes = variant ? 262144 : 1ull << 40;
		rl->high_bytes = variant ? 1048576 : (1ull << 53) + 1;
		rl->hold_s = variant ? QKM_RELAY_HOLD_S : 0; /* 0: never waits */
		rl->hold_mib = variant ? QKM_RELAY_HOLD_MIB : QKM_RELAY_HOLD_MIB_MAX;
		assert_int_equal(qkm_node_cfg_save(path, in), 0);
		struct stat st;
		assert_int_equal(stat(path, &st), 0);
		assert_int_equal(st.st_mode & 0777, 0600);
		if (load(fx, NODE, path) != 0)
			fail_msg("saved node config does not load: %s", fx->err);
		assert_memory_equal(&fx->node, in, sizeof(*in));
	}
	free(in);
}

static void test_sim_save_load(void **state)
{
	struct fixture *fx = *state;
	struct qkm_sim_cfg *in = calloc(1, sizeof(*in));
	assert_non_null(in);
	snprintf(in->name, sizeof(in->name), "sim-x");
	snprintf(in->log_level, sizeof(in->log_level), "debug");
	snprintf(in->tls.ca, sizeof(in->tls.ca), "ca.pem");
	snprintf(in->tls.cert, sizeof(in->tls.cert), "sim.pem");
	snprintf(in->tls.key, sizeof(in->tls.key), "sim.key");
	snprintf(in->listen, sizeof(in->listen), "127.0.0.1:9000");
	snprintf(in->control, sizeof(in->control), "/run/qkm/sim.sock");
	in->backlog_bytes = 1u << 30;
	in->n_links = 3;
	static const double qbers[] = {0.0, 0.0123456789012345, 0.5};
	for (size_t i = 0; i < 3; i++) {
		struct qkm_sim_link *l = &in->links[i];
		snprintf(l->id, sizeof(l->id), "L%zu", i);
		l->rate_bps = i == 2 ? 100000000000ull : 1 + i;
		l->unit_bits = i == 2 ? 8u << 20 : 64;
		l->qber = qbers[i];
		l->qber_threshold = 0.11 + (double)i / 100;
		for (int s = 0; s < 2; s++) {
			snprintf(l->node[s], sizeof(l->node[s]), "n%zu-%d", i, s);
			snprintf(l->module[s], sizeof(l->module[s]), "m%zu-%d", i, s);
		}
	}
	snprintf(in->links[0].spool[1], sizeof(in->links[0].spool[1]), "/var/lib/qkm/spool/L0");
	snprintf(in->links[1].etsi014, sizeof(in->links[1].etsi014), "127.0.0.1:9443");
	char path[PATH_MAX + 32];
	snprintf(path, sizeof(path), "%s/saved.json", fx->dir);
	assert_int_equal(qkm_sim_cfg_save(path, in), 0);
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	if (load(fx, SIM, path) != 0)
		fail_msg("saved sim config does not load: %s", fx->err);
	/* Doubles round-trip exactly, not approximately. */
	for (size_t i = 0; i < 3; i++) {
		assert_true(fx->sim.links[i].qber == in->links[i].qber);
		assert_true(fx->sim.links[i].qber_threshold == in->links[i].qber_threshold);
	}
	assert_memory_equal(&fx->sim, in, sizeof(*in));
	free(in);
}

/* --check (issue #8): a node config with three errors on known lines gets
 * all three, each with its line and field, in file order; the startup
 * loader reports the first it found, with its line too. */
static const char node_three_errors[] =
	"{\n"                                                              /* 1 */
	"  \"id\": \"A\",\n"                                               /* 2 */
	"  \"db\": \"/var/lib/qkm/A.db\",\n"                               /* 3 */
	"  \"limits\": {\"sae_rate\": 10, \"sae_bursts\": 5},\n"           /* 4: unknown field */
	"  \"tls\": {\"ca\": \"ca.pem\", \"cert\": \"a.pem\", \"key\": \"a.key\"},\n"
	"  \"listen\": {\"kx\": \"127.0.0.1:7001\", \"admin\": \"127.0.0.1:7443\"},\n"
	"  \"links\": [\n"                                                 /* 7 */
	"    {\"link\": \"A-B\", \"peer\": \"B\", \"addr\": \"127.0.0.1:7002\", \"module\": \"m1\",\n"
	"     \"batch_ms\": 0},\n"                                         /* 9: out of range */
	"    {\"link\": \"A-C\", \"peer\": \"C\", \"addr\": \"127.0.0.1:7003\", \"module\": \"m2\"}\n"
	"  ],\n"
	"  \"relay\": {\"mode\": \"otp\",\n"                               /* 12 */
	"            \"central\": \"B\"}\n"                                /* 13: not with otp */
	"}\n";

static void test_check_every_error(void **state)
{
	struct fixture *fx = *state;
	struct qkm_cfg_errors *errs = calloc(1, sizeof(*errs));
	assert_non_null(errs);
	const char *p = put(fx, node_three_errors);
	assert_int_equal(qkm_node_cfg_check(p, &fx->node, errs), QKM_ECONFIG);
	if (errs->n != 3) {
		for (size_t i = 0; i < errs->n; i++)
			print_message("%u: %s\n", errs->e[i].line, errs->e[i].text);
		fail_msg("%zu errors, want 3", errs->n);
	}
	assert_int_equal(errs->dropped, 0);
	/* In file order, though the loader checks links and relay before limits. */
	assert_int_equal(errs->e[0].line, 4);
	assert_string_equal(errs->e[0].text, "limits.sae_bursts: unknown field");
	assert_int_equal(errs->e[1].line, 9);
	assert_string_equal(errs->e[1].text, "links[0].batch_ms: must be an integer from 1 to 60000");
	assert_int_equal(errs->e[2].line, 13);
	assert_string_equal(errs->e[2].text, "relay.central: only allowed when mode is central-xor");
	for (size_t i = 0; i < 3; i++)
		assert_int_equal(errs->e[i].col, 0);
	char line[PATH_MAX + 400], want[PATH_MAX + 400];
	qkm_cfg_error_str(p, &errs->e[1], line, sizeof(line));
	snprintf(want, sizeof(want), "%s:9: links[0].batch_ms: must be an integer from 1 to 60000", p);
	assert_string_equal(line, want);

	/* The startup loader: the first error it met (links come before limits
	 * in its order), as one line with the line number. */
	assert_int_equal(load(fx, NODE, p), QKM_ECONFIG);
	assert_string_equal(fx->err, want);
	free(errs);
}

/* A wrong field is reported once: checks that depend on it are skipped, not
 * reported again (a bad id would otherwise make every route's path[0] and
 * every directory entry wrong too). Independent errors after it are still
 * found. */
static void test_check_no_cascade(void **state)
{
	struct fixture *fx = *state;
	struct qkm_cfg_errors *errs = calloc(1, sizeof(*errs));
	assert_non_null(errs);
	const char *p = put(fx,
		"{\"id\": \"A B\", \"db\": \"d\",\n"
		" \"tls\": {\"ca\": \"c\", \"cert\": \"d\", \"key\": \"e\"},\n"
		" \"listen\": {\"kx\": \"k\", \"admin\": \"a\"},\n"
		" \"links\": [{\"link\": \"A-B\", \"peer\": \"B\", \"addr\": \"x\", \"module\": \"m\"},\n"
		"            {\"link\": \"A-C\", \"peer\": 7, \"addr\": \"y\", \"module\": \"m\"}],\n"
		" \"routes\": [{\"to\": \"D\", \"path\": [\"A\", \"X\", \"D\"]}],\n"
		" \"directory\": [{\"id\": \"A\", \"kx\": \"z\"}],\n"
		" \"after_supply\": \"keep\"}\n");
	assert_int_equal(qkm_node_cfg_check(p, &fx->node, errs), QKM_ECONFIG);
	if (errs->n != 3) {
		for (size_t i = 0; i < errs->n; i++)
			print_message("%u: %s\n", errs->e[i].line, errs->e[i].text);
		fail_msg("%zu errors, want 3", errs->n);
	}
	assert_int_equal(errs->e[0].line, 1);
	assert_non_null(strstr(errs->e[0].text, "id: 'A B' is not a valid name"));
	assert_int_equal(errs->e[1].line, 5);
	assert_string_equal(errs->e[1].text, "links[1].peer: must be a string");
	assert_int_equal(errs->e[2].line, 8);
	assert_string_equal(errs->e[2].text, "after_supply: must be delete or preserve");
	free(errs);
}

/* The other three kinds, a syntax error (the only error, with line and
 * column), a missing file (no line), and more errors than the list holds. */
static void test_check_kinds(void **state)
{
	struct fixture *fx = *state;
	struct qkm_cfg_errors *errs = calloc(1, sizeof(*errs));
	assert_non_null(errs);

	const char *p = put(fx,
		"{\"tls\": {\"ca\": \"c\", \"cert\": \"d\", \"key\": \"e\"}, \"listen\": \"l\",\n"
		" \"control\": \"c\", \"backlog_bytes\": 1024,\n"
		" \"links\": [{\"id\": \"x\", \"rate_bps\": 1, \"unit_bits\": 68,\n"
		"            \"sides\": [{\"node\": \"A\", \"module\": \"a\"}]}]}\n");
	assert_int_equal(qkm_sim_cfg_check(p, &fx->sim, errs), QKM_ECONFIG);
	assert_int_equal(errs->n, 3);
	assert_int_equal(errs->e[0].line, 2);
	assert_string_equal(errs->e[0].text,
			    "backlog_bytes: must be an integer from 65536 to 1073741824");
	assert_int_equal(errs->e[1].line, 3);
	assert_string_equal(errs->e[1].text, "links[0].unit_bits: must be a multiple of 8");
	assert_int_equal(errs->e[2].line, 4);
	assert_string_equal(errs->e[2].text, "links[0].sides: must have exactly two entries");

	p = put(fx, "{\"nodes\": [{\"id\": \"A\"},\n"
		    "           {\"id\": \"A\"}],\n"
		    " \"links\": [{\"a\": \"A\", \"b\": \"Z\", \"rate_bps\": 1, \"unit_bits\": 64}],\n"
		    " \"policy\": {\"relay\": \"otp\",\n"
		    "            \"central\": \"A\"}}\n");
	assert_int_equal(qkm_topology_check(p, &fx->topo, errs), QKM_ECONFIG);
	/* nodes[1] is refused, so "Z" is not judged against a list known wrong. */
	assert_int_equal(errs->n, 2);
	assert_int_equal(errs->e[0].line, 2);
	assert_string_equal(errs->e[0].text, "nodes[1].id: duplicate node id 'A'");
	assert_int_equal(errs->e[1].line, 5);
	assert_string_equal(errs->e[1].text, "policy.central: only allowed when relay is central-xor");

	struct qkm_ctl_cfg ctl;
	p = put(fx, "{\"id\": \"controller\", \"db\": \"l.db\",\n"
		    " \"tls\": {\"ca\": \"c\", \"cert\": \"d\", \"key\": \"e\"},\n"
		    " \"ca_dir\": \"pki\", \"sae_dir\": \"saes\", \"topology\": \"t.json\",\n"
		    " \"mode\": \"fast\",\n"
		    " \"listen\": {\"ck\": \"127.0.0.1:1\"}}\n");
	assert_int_equal(qkm_ctl_cfg_check(p, &ctl, errs), QKM_ECONFIG);
	assert_int_equal(errs->n, 2);
	assert_int_equal(errs->e[0].line, 4);
	assert_non_null(strstr(errs->e[0].text, "mode: must be manual"));
	assert_int_equal(errs->e[1].line, 5);
	assert_string_equal(errs->e[1].text, "listen.api: missing");
	assert_string_equal(ctl.topology, "t.json");

	p = put(fx, "{\n  \"id\": \"A\",\n  \"db\": 1,\n}\n");
	assert_int_equal(qkm_node_cfg_check(p, &fx->node, errs), QKM_ECONFIG);
	assert_int_equal(errs->n, 1);
	assert_int_equal(errs->e[0].line, 4);
	assert_true(errs->e[0].col > 0);

	char missing[PATH_MAX + 32];
	snprintf(missing, sizeof(missing), "%s/no-such-file.json", fx->dir);
	assert_int_equal(qkm_node_cfg_check(missing, &fx->node, errs), QKM_EIO);
	assert_int_equal(errs->n, 1);
	assert_int_equal(errs->e[0].line, 0);
	assert_non_null(strstr(errs->e[0].text, "No such file"));

	/* 70 unknown fields: the first 64 are listed, the rest counted. */
	char big[4096];
	size_t n = (size_t)snprintf(big, sizeof(big), "{\"nodes\": [{\"id\": \"A\"}]");
	for (int i = 0; i < 70; i++)
		n += (size_t)snprintf(big + n, sizeof(big) - n, ",\n \"x%d\": 1", i);
	snprintf(big + n, sizeof(big) - n, "}\n");
	assert_int_equal(qkm_topology_check(put(fx, big), &fx->topo, errs), QKM_ECONFIG);
	assert_int_equal(errs->n, QKM_CFG_ERRORS_MAX);
	assert_int_equal(errs->dropped, 70 - QKM_CFG_ERRORS_MAX);
	for (size_t i = 0; i < errs->n; i++)
		assert_int_equal(errs->e[i].line, i + 2);

	/* A good file: no error, and the config loaded. */
	assert_int_equal(qkm_topology_check(put(fx, topo_example), &fx->topo, errs), 0);
	assert_int_equal(errs->n, 0);
	assert_int_equal(fx->topo.n_nodes, 3);
	free(errs);
}

/* Key sources of a node's links (R-ACQ-5): the simulator by default; a
 * spool directory; a QKD device's ETSI 014 API, whose master side must be
 * the link's leader. The fields allowed depend on the kind. */
#define NODE_SRC_HEAD                                                                   \
	"{\"id\": \"A\", \"db\": \"a.db\","                                                  \
	" \"tls\": {\"ca\": \"ca.pem\", \"cert\": \"A.pem\", \"key\": \"A.key\"},"             \
	" \"listen\": {\"kx\": \"127.0.0.1:7001\", \"admin\": \"127.0.0.1:7002\"},"           \
	" \"links\": [{\"link\": \"A-B\", \"peer\": \"B\", \"addr\": \"127.0.0.1:7101\","     \
	" \"module\": \"m-A\", \"source\": "
#define NODE_SRC_TAIL "}]}"
#define ETSI_OK                                                                         \
	"{\"kind\": \"etsi014\", \"url\": \"https://10.0.0.1:8443\", \"sae\": \"A\","          \
	" \"peer_sae\": \"B\", \"role\": \"master\", \"ca\": \"dca.pem\", \"cert\": \"A.pem\","  \
	" \"key\": \"A.key\""

static void test_node_sources(void **state)
{
	struct fixture *fx = *state;
	const struct qkm_key_source *s = &fx->node.links[0].src;
	char text[1024];
	assert_int_equal(load(fx, NODE, put(fx, node_min)), 0);
	assert_int_equal(s->kind, QKM_SRC_SIM);
	assert_int_equal(load(fx, NODE, put(fx, NODE_SRC_HEAD "{\"kind\": \"sim\"}" NODE_SRC_TAIL)), 0);
	assert_int_equal(s->kind, QKM_SRC_SIM);
	assert_int_equal(load(fx, NODE, put(fx, NODE_SRC_HEAD
				 "{\"kind\": \"spool\", \"dir\": \"/var/lib/qkm/spool/A-B\"}"
				 NODE_SRC_TAIL)), 0);
	assert_int_equal(s->kind, QKM_SRC_SPOOL);
	assert_string_equal(s->dir, "/var/lib/qkm/spool/A-B");
	assert_int_equal(s->poll_ms, 200);
	assert_int_equal(load(fx, NODE, put(fx, NODE_SRC_HEAD ETSI_OK ", \"poll_ms\": 50, \"batch\": 1024,"
				 " \"size_bits\": 256}" NODE_SRC_TAIL)), 0);
	assert_int_equal(s->kind, QKM_SRC_ETSI014);
	assert_string_equal(s->url, "https://10.0.0.1:8443");
	assert_string_equal(s->sae, "A");
	assert_string_equal(s->peer_sae, "B");
	assert_true(s->master);
	assert_string_equal(s->tls.ca, "dca.pem");
	assert_int_equal(s->poll_ms, 50);
	assert_int_equal(s->batch, 1024);
	assert_int_equal(s->size_bits, 256);
	assert_int_equal(load(fx, NODE, put(fx, NODE_SRC_HEAD ETSI_OK "}" NODE_SRC_TAIL)), 0);
	assert_int_equal(s->batch, 16);
	assert_int_equal(s->size_bits, 4096);

	REFUSED(fx, NODE, NODE_SRC_HEAD "\"spool\"" NODE_SRC_TAIL, "links[0].source: must be an object");
	REFUSED(fx, NODE, NODE_SRC_HEAD "{}" NODE_SRC_TAIL, "links[0].source.kind: missing");
	REFUSED(fx, NODE, NODE_SRC_HEAD "{\"kind\": \"qrng\"}" NODE_SRC_TAIL,
		"links[0].source.kind: must be sim, etsi014 or spool");
	REFUSED(fx, NODE, NODE_SRC_HEAD "{\"kind\": \"sim\", \"dir\": \"x\"}" NODE_SRC_TAIL,
		"links[0].source.dir: unknown field");
	REFUSED(fx, NODE, NODE_SRC_HEAD "{\"kind\": \"spool\"}" NODE_SRC_TAIL,
		"links[0].source.dir: missing");
	REFUSED(fx, NODE, NODE_SRC_HEAD "{\"kind\": \"spool\", \"dir\": \"d\", \"url\": \"x\"}"
		NODE_SRC_TAIL, "links[0].source.url: unknown field");
	REFUSED(fx, NODE, NODE_SRC_HEAD "{\"kind\": \"spool\", \"dir\": \"d\", \"poll_ms\": 5}"
		NODE_SRC_TAIL, "links[0].source.poll_ms: must be an integer from 10 to 60000");
	REFUSED(fx, NODE, NODE_SRC_HEAD "{\"kind\": \"etsi014\"}" NODE_SRC_TAIL,
		"links[0].source.url: missing");
	REFUSED(fx, NODE, NODE_SRC_HEAD ETSI_OK ", \"dir\": \"d\"}" NODE_SRC_TAIL,
		"links[0].source.dir: unknown field");
	REFUSED(fx, NODE, NODE_SRC_HEAD ETSI_OK ", \"batch\": 0}" NODE_SRC_TAIL,
		"links[0].source.batch: must be an integer from 1 to 1024");
	REFUSED(fx, NODE, NODE_SRC_HEAD ETSI_OK ", \"size_bits\": 100}" NODE_SRC_TAIL,
		"links[0].source.size_bits: must be a multiple of 8");
	REFUSED(fx, NODE, NODE_SRC_HEAD
		"{\"kind\": \"etsi014\", \"url\": \"http://10.0.0.1:80\", \"sae\": \"A\","
		" \"peer_sae\": \"B\", \"role\": \"master\", \"ca\": \"c\", \"cert\": \"c\", \"key\": \"k\"}"
		NODE_SRC_TAIL, "links[0].source.url: must be https://ADDRESS:PORT");
	static const char *const urls[] = {"https://qkd.example:443", "https://10.0.0.1:0",
					   "https://10.0.0.1:8443/api", "https://[::1:8443",
					   "https://10.0.0.1:x"};
	for (size_t i = 0; i < sizeof(urls) / sizeof(urls[0]); i++) {
		snprintf(text, sizeof(text), NODE_SRC_HEAD
			 "{\"kind\": \"etsi014\", \"url\": \"%s\", \"sae\": \"A\", \"peer_sae\": \"B\","
			 " \"role\": \"master\", \"ca\": \"c\", \"cert\": \"c\", \"key\": \"k\"}"
			 NODE_SRC_TAIL, urls[i]);
		REFUSED(fx, NODE, text, "links[0].source.url: must be https://ADDRESS:PORT");
	}
	static const char *const good[] = {"https://localhost:1", "https://[fe80::1]:443/",
					   "https://192.0.2.7"};
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		snprintf(text, sizeof(text), NODE_SRC_HEAD
			 "{\"kind\": \"etsi014\", \"url\": \"%s\", \"sae\": \"A\", \"peer_sae\": \"B\","
			 " \"role\": \"master\", \"ca\": \"c\", \"cert\": \"c\", \"key\": \"k\"}"
			 NODE_SRC_TAIL, good[i]);
		if (load(fx, NODE, put(fx, text)))
			fail_msg("%s refused: %s", good[i], fx->err);
	}
	REFUSED(fx, NODE, NODE_SRC_HEAD
		"{\"kind\": \"etsi014\", \"url\": \"https://10.0.0.1:1\", \"sae\": \"A\","
		" \"peer_sae\": \"B\", \"role\": \"boss\", \"ca\": \"c\", \"cert\": \"c\", \"key\": \"k\"}"
		NODE_SRC_TAIL, "links[0].source.role: must be master or slave");
	/* A sorts before B: A leads the link, so A's side is the master. */
	REFUSED(fx, NODE, NODE_SRC_HEAD
		"{\"kind\": \"etsi014\", \"url\": \"https://10.0.0.1:1\", \"sae\": \"A\","
		" \"peer_sae\": \"B\", \"role\": \"slave\", \"ca\": \"c\", \"cert\": \"c\", \"key\": \"k\"}"
		NODE_SRC_TAIL, "links[0].source.role: must be master: the device's master side is the link's leader");

	/* --check: every source error, each on its line; the role is judged
	 * against the leader though another field of its source is wrong. */
	static const char many[] =
		"{\"id\": \"A\", \"db\": \"a.db\",\n"
		" \"tls\": {\"ca\": \"ca.pem\", \"cert\": \"A.pem\", \"key\": \"A.key\"},\n"
		" \"listen\": {\"kx\": \"127.0.0.1:7001\", \"admin\": \"127.0.0.1:7002\"},\n"
		" \"links\": [{\"link\": \"A-B\", \"peer\": \"B\", \"addr\": \"h:1\", \"module\": \"m\",\n"
		"   \"source\": {\"kind\": \"etsi014\", \"url\": \"http://x:1\", \"sae\": \"A\",\n" /* 5 */
		"     \"peer_sae\": \"B\", \"role\": \"slave\", \"ca\": \"c\", \"cert\": \"c\", \"key\": \"k\"}},\n"
		"  {\"link\": \"A-C\", \"peer\": \"C\", \"addr\": \"h:2\", \"module\": \"m2\",\n"
		"   \"source\": {\"kind\": \"spool\", \"poll_ms\": 1,\n"     /* 8 */
		"     \"diir\": \"/x\"}}]}\n";                                   /* 9 */
	struct qkm_cfg_errors *errs = calloc(1, sizeof(*errs));
	assert_non_null(errs);
	assert_int_equal(qkm_node_cfg_check(put(fx, many), &fx->node, errs), QKM_ECONFIG);
	static const struct {
		unsigned line;
		const char *text;
	} want[] = {{5, "links[0].source.url: must be https://"},
		    {6, "links[0].source.role: must be master"},
		    {8, "links[1].source.dir: missing"},
		    {8, "links[1].source.poll_ms: must be an integer from 10"},
		    {9, "links[1].source.diir: unknown field"}};
	assert_int_equal(errs->n, 5);
	for (size_t i = 0; i < 5; i++) {
		assert_int_equal(errs->e[i].line, want[i].line);
		if (strncmp(errs->e[i].text, want[i].text, strlen(want[i].text)) != 0)
			fail_msg("error %zu: '%s', want '%s'", i, errs->e[i].text, want[i].text);
	}
	free(errs);

	/* Topology: a link's source. */
	assert_int_equal(load(fx, TOPO, put(fx, "{\"nodes\": [{\"id\": \"A\"}, {\"id\": \"B\"}],"
				 " \"links\": [{\"a\": \"A\", \"b\": \"B\", \"rate_bps\": 1,"
				 " \"unit_bits\": 64, \"source\": \"etsi014\"}]}")), 0);
	assert_int_equal(fx->topo.links[0].source, QKM_SRC_ETSI014);
	REFUSED(fx, TOPO, "{\"nodes\": [{\"id\": \"A\"}, {\"id\": \"B\"}],"
		" \"links\": [{\"a\": \"A\", \"b\": \"B\", \"rate_bps\": 1, \"unit_bits\": 64,"
		" \"source\": \"file\"}]}", "links[0].source: must be sim, etsi014 or spool");

	/* Simulator: a side's spool, a link's ETSI 014 listener, not both. */
	static const char sim_src[] =
		"{\"listen\": \"127.0.0.1:9000\", \"control\": \"/tmp/c.sock\","
		" \"tls\": {\"ca\": \"c\", \"cert\": \"d\", \"key\": \"e\"},"
		" \"links\": [{\"id\": \"A-B\", \"rate_bps\": 1, \"unit_bits\": 64, %s"
		" \"sides\": [{\"node\": \"A\", \"module\": \"m-A\"%s},"
		" {\"node\": \"B\", \"module\": \"m-B\"}]}]}";
	snprintf(text, sizeof(text), sim_src, "", ", \"spool\": \"/s/A\"");
	assert_int_equal(load(fx, SIM, put(fx, text)), 0);
	assert_string_equal(fx->sim.links[0].spool[0], "/s/A");
	assert_string_equal(fx->sim.links[0].spool[1], "");
	snprintf(text, sizeof(text), sim_src, "\"etsi014\": \"127.0.0.1:9443\",", "");
	assert_int_equal(load(fx, SIM, put(fx, text)), 0);
	assert_string_equal(fx->sim.links[0].etsi014, "127.0.0.1:9443");
	snprintf(text, sizeof(text), sim_src, "\"etsi014\": \"127.0.0.1:9443\",",
		 ", \"spool\": \"/s/A\"");
	REFUSED(fx, SIM, text, "links[0].sides[0].spool: not with etsi014");
}

/* The _parse functions (the fuzz target's way in) are what the _load
 * functions run over a file's text: the same config or the same first
 * error, named by the name given, from text that need not end in NUL. */
static void test_parse_text(void **state)
{
	struct fixture *fx = *state;
	struct qkm_topology *t = calloc(1, sizeof(*t));
	struct qkm_sim_cfg *sim = calloc(1, sizeof(*sim));
	struct qkm_ctl_cfg ctl;
	char buf[sizeof(topo_example) + 8], err[512];
	assert_non_null(t);
	assert_non_null(sim);
	size_t n = strlen(topo_example);
	memcpy(buf, topo_example, n);
	memcpy(buf + n, "}}x", 3); /* past len: must not be read */
	assert_int_equal(load(fx, TOPO, put(fx, topo_example)), 0);
	assert_int_equal(qkm_topology_parse("t.json", buf, n, t, err, sizeof(err)), 0);
	assert_memory_equal(t, &fx->topo, sizeof(*t));

	/* Errors: both report the first found only (the unknown field), on
	 * its line. */
	static const char bad[] = "{\n  \"name\": 5,\n  \"zz\": 1\n}\n";
	const char *path = put(fx, bad);
	assert_int_equal(load(fx, SIM, path), QKM_ECONFIG);
	assert_int_equal(qkm_sim_cfg_parse("s.json", bad, strlen(bad), sim, err, sizeof(err)),
			 QKM_ECONFIG);
	assert_string_equal(fx->err + strlen(path), err + strlen("s.json"));
	assert_string_equal(err, "s.json:3: zz: unknown field");

	/* Not JSON: a syntax error; no text at all is one too. */
	assert_int_equal(qkm_node_cfg_parse("n.json", "{", 1, &fx->node, err, sizeof(err)),
			 QKM_ECONFIG);
	assert_memory_equal(err, "n.json:1:", 9);
	assert_int_equal(qkm_ctl_cfg_parse("c.json", NULL, 0, &ctl, err, sizeof(err)),
			 QKM_ECONFIG);
	assert_memory_equal(err, "c.json:1:", 9);
	free(t);
	free(sim);
}

/* The controller's access list (proto/ctl_json.c) from text: entries in
 * order; a bad entry, or text that is not JSON, is QKM_EFORMAT (from a file
 * that is not JSON, QKM_EIO, as a file that cannot be read). */
static void test_saes_parse(void **state)
{
	struct fixture *fx = *state;
	struct qkm_sae_entry e[2];
	size_t n = 9;
	static const char ok[] = "[{\"id\": \"sae-1\", \"node\": \"A\", \"revoked\": false},"
				 " {\"id\": \"sae-2\", \"node\": \"B\", \"revoked\": true}]";
	assert_int_equal(qkm_saes_json_parse(ok, strlen(ok), e, 2, &n), 0);
	assert_int_equal(n, 2);
	assert_string_equal(e[1].id, "sae-2");
	assert_string_equal(e[1].node, "B");
	assert_true(e[1].revoked && !e[0].revoked);
	assert_int_equal(qkm_saes_json_parse(ok, strlen(ok), e, 1, &n), QKM_EFORMAT);
	assert_int_equal(n, 0);
	assert_int_equal(qkm_saes_json_parse(ok, strlen(ok) - 1, e, 2, &n), QKM_EFORMAT);
	assert_int_equal(qkm_saes_json_parse("[{\"id\": \"sae-1\"}]", 16, e, 2, &n),
			 QKM_EFORMAT);
	assert_int_equal(qkm_saes_json_load(put(fx, "[{"), e, 2, &n), QKM_EIO);
	assert_int_equal(qkm_saes_json_load(put(fx, ok), e, 2, &n), 0);
	assert_int_equal(n, 2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_node_sources, setup, teardown),
		cmocka_unit_test_setup_teardown(test_topology_example, setup, teardown),
		cmocka_unit_test_setup_teardown(test_topology_defaults, setup, teardown),
		cmocka_unit_test_setup_teardown(test_topology_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_node_good, setup, teardown),
		cmocka_unit_test_setup_teardown(test_node_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_node_relay_good, setup, teardown),
		cmocka_unit_test_setup_teardown(test_node_routes_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_node_relay_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_node_limits, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sim_good, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sim_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_malformed_and_missing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_short_error_buffer, setup, teardown),
		cmocka_unit_test_setup_teardown(test_node_save_load, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sim_save_load, setup, teardown),
		cmocka_unit_test_setup_teardown(test_check_every_error, setup, teardown),
		cmocka_unit_test_setup_teardown(test_check_no_cascade, setup, teardown),
		cmocka_unit_test_setup_teardown(test_check_kinds, setup, teardown),
		cmocka_unit_test_setup_teardown(test_parse_text, setup, teardown),
		cmocka_unit_test_setup_teardown(test_saes_parse, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
