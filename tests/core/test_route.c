/* test_route.c - static relay routes (core/route.c, R-REL-6): fewest hops,
 * ties broken by neighbour name, one route per node that is reachable and
 * not a link peer, in topology order; limits refused with QKM_ETOOBIG. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "core/route.h"

struct fixture {
	struct qkm_topology t;
	struct qkm_node_route out[QKM_MAX_NODES];
	size_t n;
};

static int setup(void **state)
{
	struct fixture *fx = calloc(1, sizeof(*fx));
	if (!fx)
		return -1;
	*state = fx;
	return 0;
}

static int teardown(void **state)
{
	free(*state);
	return 0;
}

static void add_node(struct qkm_topology *t, const char *id, bool ksa)
{
	assert_true(t->n_nodes < QKM_MAX_NODES);
	snprintf(t->nodes[t->n_nodes].id, QKM_NAME_MAX, "%s", id);
	t->nodes[t->n_nodes++].ksa = ksa;
}

static void add_link(struct qkm_topology *t, const char *a, const char *b)
{
	assert_true(t->n_links < QKM_MAX_TOPO_LINKS);
	snprintf(t->links[t->n_links].a, QKM_NAME_MAX, "%s", a);
	snprintf(t->links[t->n_links].b, QKM_NAME_MAX, "%s", b);
	t->links[t->n_links].rate_bps = 1000;
	t->links[t->n_links++].unit_bits = 256;
}

/* Asserts route r goes to `to` along the space-separated node names in want. */
static void assert_route(const struct qkm_node_route *r, const char *to, const char *want)
{
	char got[QKM_MAX_PATH * QKM_NAME_MAX] = "";
	for (uint32_t i = 0; i < r->n && i < QKM_MAX_PATH; i++) {
		strcat(got, i ? " " : "");
		strcat(got, r->path[i]);
	}
	if (strcmp(r->to, to) != 0 || strcmp(got, want) != 0)
		fail_msg("route to '%s' via '%s'; want to '%s' via '%s'", r->to, got, to, want);
	/* The ends match the contract in config.h. */
	assert_string_equal(r->path[r->n - 1], r->to);
}

/* A - B - C - D - E: the nodes two or more hops away, along the line. */
static void test_line_of_five(void **state)
{
	struct fixture *fx = *state;
	struct qkm_topology *t = &fx->t;
	const char *ids[] = {"A", "B", "C", "D", "E"};
	for (int i = 0; i < 5; i++)
		add_node(t, ids[i], true);
	for (int i = 0; i < 4; i++)
		add_link(t, ids[i], ids[i + 1]);

	assert_int_equal(qkm_routes_compute(t, "A", fx->out, QKM_MAX_NODES, &fx->n), 0);
	assert_int_equal(fx->n, 3);
	assert_route(&fx->out[0], "C", "A B C");
	assert_route(&fx->out[1], "D", "A B C D");
	assert_route(&fx->out[2], "E", "A B C D E");

	/* From the middle: both directions, in t->nodes order. */
	assert_int_equal(qkm_routes_compute(t, "C", fx->out, QKM_MAX_NODES, &fx->n), 0);
	assert_int_equal(fx->n, 2);
	assert_route(&fx->out[0], "A", "C B A");
	assert_route(&fx->out[1], "E", "C D E");

	assert_int_equal(qkm_routes_compute(t, "E", fx->out, QKM_MAX_NODES, &fx->n), 0);
	assert_int_equal(fx->n, 3);
	assert_route(&fx->out[0], "A", "E D C B A");
}

/* A ring of four has two shortest paths to the opposite node: the one via
 * the neighbour whose name sorts first wins, whatever the order of nodes
 * and links in the file. */
static void test_ring_tie_break(void **state)
{
	struct fixture *fx = *state;
	struct qkm_topology *t = &fx->t;
	add_node(t, "A", true);
	add_node(t, "D", true);
	add_node(t, "C", true);
	add_node(t, "B", true);
	/* Listed so that link order would reach D (and from C, D) first. */
	add_link(t, "D", "A");
	add_link(t, "C", "D");
	add_link(t, "A", "B");
	add_link(t, "B", "C");

	assert_int_equal(qkm_routes_compute(t, "A", fx->out, QKM_MAX_NODES, &fx->n), 0);
	assert_int_equal(fx->n, 1);
	assert_route(&fx->out[0], "C", "A B C");
	assert_int_equal(qkm_routes_compute(t, "C", fx->out, QKM_MAX_NODES, &fx->n), 0);
	assert_int_equal(fx->n, 1);
	assert_route(&fx->out[0], "A", "C B A");
	assert_int_equal(qkm_routes_compute(t, "B", fx->out, QKM_MAX_NODES, &fx->n), 0);
	assert_int_equal(fx->n, 1);
	assert_route(&fx->out[0], "D", "B A D");
	assert_int_equal(qkm_routes_compute(t, "D", fx->out, QKM_MAX_NODES, &fx->n), 0);
	assert_int_equal(fx->n, 1);
	assert_route(&fx->out[0], "B", "D A B");

	/* Same answer twice: nothing depends on state left from a run. */
	struct qkm_node_route first = fx->out[0];
	assert_int_equal(qkm_routes_compute(t, "D", fx->out, QKM_MAX_NODES, &fx->n), 0);
	assert_memory_equal(&first, &fx->out[0], sizeof(first));
}

/* Nodes in another component, or with no link at all, get no route. */
static void test_unreachable(void **state)
{
	struct fixture *fx = *state;
	struct qkm_topology *t = &fx->t;
	add_node(t, "A", true);
	add_node(t, "lonely", true);
	add_node(t, "B", true);
	add_node(t, "Y", true);
	add_node(t, "C", true);
	add_node(t, "Z", true);
	add_link(t, "A", "B");
	add_link(t, "B", "C");
	add_link(t, "Y", "Z");

	assert_int_equal(qkm_routes_compute(t, "A", fx->out, QKM_MAX_NODES, &fx->n), 0);
	assert_int_equal(fx->n, 1);
	assert_route(&fx->out[0], "C", "A B C");
	assert_int_equal(qkm_routes_compute(t, "lonely", fx->out, QKM_MAX_NODES, &fx->n), 0);
	assert_int_equal(fx->n, 0);
	assert_int_equal(qkm_routes_compute(t, "Y", fx->out, QKM_MAX_NODES, &fx->n), 0);
	assert_int_equal(fx->n, 0);
	assert_int_equal(qkm_routes_compute(t, "nobody", fx->out, QKM_MAX_NODES, &fx->n),
			 QKM_ENOTFOUND);
}

/* Link peers need no route (they share key directly); relay-only nodes
 * (R-EL-2) carry routes and are destinations like any other node. */
static void test_neighbours_excluded(void **state)
{
	struct fixture *fx = *state;
	struct qkm_topology *t = &fx->t;
	add_node(t, "hub", false);
	add_node(t, "a", true);
	add_node(t, "b", true);
	add_node(t, "c", true);
	add_node(t, "relay", false);
	add_link(t, "hub", "a");
	add_link(t, "hub", "b");
	add_link(t, "hub", "c");
	add_link(t, "a", "b");
	add_link(t, "c", "relay");

	assert_int_equal(qkm_routes_compute(t, "hub", fx->out, QKM_MAX_NODES, &fx->n), 0);
	assert_int_equal(fx->n, 1);
	assert_route(&fx->out[0], "relay", "hub c relay");

	assert_int_equal(qkm_routes_compute(t, "a", fx->out, QKM_MAX_NODES, &fx->n), 0);
	assert_int_equal(fx->n, 2); /* not hub, not b: both are peers */
	assert_route(&fx->out[0], "c", "a hub c");
	assert_route(&fx->out[1], "relay", "a hub c relay");

	assert_int_equal(qkm_routes_compute(t, "relay", fx->out, QKM_MAX_NODES, &fx->n), 0);
	assert_int_equal(fx->n, 3);
	assert_route(&fx->out[0], "hub", "relay c hub");
	assert_route(&fx->out[1], "a", "relay c hub a");
	assert_route(&fx->out[2], "b", "relay c hub b");
}

/* A line of QKM_MAX_PATH nodes fits end to end; one more does not. Too
 * small an output array is refused, not cut short. */
static void test_too_big(void **state)
{
	struct fixture *fx = *state;
	struct qkm_topology *t = &fx->t;
	char id[16], prev[16];
	for (int i = 0; i < QKM_MAX_PATH; i++) {
		snprintf(id, sizeof(id), "n%02d", i);
		add_node(t, id, true);
		if (i)
			add_link(t, prev, id);
		snprintf(prev, sizeof(prev), "%s", id);
	}
	assert_int_equal(qkm_routes_compute(t, "n00", fx->out, QKM_MAX_NODES, &fx->n), 0);
	assert_int_equal(fx->n, QKM_MAX_PATH - 2);
	assert_int_equal(fx->out[fx->n - 1].n, QKM_MAX_PATH);
	assert_string_equal(fx->out[fx->n - 1].to, "n15");

	/* Exactly enough room, then one short. */
	assert_int_equal(qkm_routes_compute(t, "n00", fx->out, QKM_MAX_PATH - 2, &fx->n), 0);
	fx->n = 99;
	assert_int_equal(qkm_routes_compute(t, "n00", fx->out, QKM_MAX_PATH - 3, &fx->n),
			 QKM_ETOOBIG);
	assert_int_equal(fx->n, 0);

	add_node(t, "n16", true);
	add_link(t, "n15", "n16");
	assert_int_equal(qkm_routes_compute(t, "n00", fx->out, QKM_MAX_NODES, &fx->n),
			 QKM_ETOOBIG);
	/* From the middle every path is short enough. */
	assert_int_equal(qkm_routes_compute(t, "n08", fx->out, QKM_MAX_NODES, &fx->n), 0);
	assert_int_equal(fx->n, QKM_MAX_PATH + 1 - 3);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_line_of_five, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ring_tie_break, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unreachable, setup, teardown),
		cmocka_unit_test_setup_teardown(test_neighbours_excluded, setup, teardown),
		cmocka_unit_test_setup_teardown(test_too_big, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
