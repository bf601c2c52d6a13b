/* test_graph.c - the run-time graph and its routes (core/graph.c; R-REL-6,
 * R-CTL-3): link cost from stock and rate, exclusion of alarmed links and
 * rerouting around them, deterministic ties checked against brute force,
 * unreachable nodes, invalid input refused with the graph unchanged, and a
 * 10,000-node graph (no timing here: bench/routing times it). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "core/graph.h"

#define B QKM_LINK_COST_BASE

/* A seeded generator (splitmix64): tests are reproducible. */
static uint64_t rnd(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static uint32_t node(struct qkm_graph *g, const char *name)
{
	uint32_t v;
	if (qkm_graph_find(g, name, &v) == 0)
		return v;
	assert_int_equal(qkm_graph_add_node(g, name, &v), 0);
	return v;
}

/* Adds link a-b (adding the nodes if new) of cost c; returns its number. */
static uint32_t link(struct qkm_graph *g, const char *a, const char *b, uint32_t c)
{
	uint32_t l;
	assert_int_equal(qkm_graph_add_link(g, node(g, a), node(g, b), c, &l), 0);
	return l;
}

/* The route from a to b as space-separated names ("" if none), via qkm_graph_route. */
static const char *route(struct qkm_graph *g, const char *a, const char *b)
{
	static char s[1024];
	uint32_t path[64], va, vb;
	size_t n;
	s[0] = 0;
	assert_int_equal(qkm_graph_find(g, a, &va), 0);
	assert_int_equal(qkm_graph_find(g, b, &vb), 0);
	if (qkm_graph_route(g, va, vb, path, 64, &n, NULL) != 0)
		return s;
	for (size_t i = 0; i < n; i++) {
		strcat(s, i ? " " : "");
		strcat(s, qkm_graph_name(g, path[i]));
	}
	return s;
}

static uint32_t find_link(struct qkm_graph *g, const char *a, const char *b)
{
	uint32_t l;
	assert_int_equal(qkm_graph_find_link(g, node(g, a), node(g, b), &l), 0);
	return l;
}

/* R-CTL-3: cheap when stocked and fast, dear when near empty, never free. */
static void test_link_cost(void **state)
{
	/* Nothing to give: unusable. */
	assert_int_equal(qkm_link_cost(0, 0, 32), QKM_LINK_COST_INF);
	assert_int_equal(qkm_link_cost(0, 7, 32), QKM_LINK_COST_INF); /* under a byte a second */
	/* No need: every hop costs the base. */
	assert_int_equal(qkm_link_cost(1, 0, 0), B);
	/* Plenty: the base plus the smallest step, so alike links cost alike. */
	assert_int_equal(qkm_link_cost(1 << 20, 1000000, 32), B + 1);
	assert_int_equal(qkm_link_cost(UINT64_MAX, UINT64_MAX, 32), B + 1); /* saturates */
	/* RESERVE needs held: twice the base; one need: (1 + RESERVE) x base. */
	assert_int_equal(qkm_link_cost(32 * QKM_LINK_COST_RESERVE, 0, 32), 2 * B);
	assert_int_equal(qkm_link_cost(32, 0, 32), (1 + QKM_LINK_COST_RESERVE) * B);
	assert_int_equal(qkm_link_cost(4096, 0, 32), B + 125);
	/* The key rate counts as stock over the horizon. */
	assert_int_equal(qkm_link_cost(0, 8 * 32 * QKM_LINK_COST_RESERVE / QKM_LINK_HORIZON_S, 32),
			 2 * B);
	assert_int_equal(qkm_link_cost(256, 8 * 256, 32), 2 * B);
	/* More stock or more rate never costs more. */
	uint32_t prev = QKM_LINK_COST_INF;
	for (uint64_t s = 1; s < (1ull << 40); s *= 3) {
		uint32_t c = qkm_link_cost(s, 0, 1000);
		assert_true(c <= prev && c >= B);
		assert_true(qkm_link_cost(s, 1 << 20, 1000) <= c);
		prev = c;
	}
	/* Huge needs are capped below INF: dear but still a link. */
	assert_int_equal(qkm_link_cost(1, 0, UINT64_MAX), QKM_LINK_COST_MAX);
	assert_int_equal(qkm_link_cost(1, 0, 1ull << 40), QKM_LINK_COST_MAX);
}

/* Priced links choose routes: a near-empty hop is avoided by a longer route
 * of plentiful ones, stock decides between routes of as many hops, and the
 * fewest hops win when links are alike. */
static void test_costs_choose_route(void **state)
{
	struct qkm_graph *g = qkm_graph_new();
	assert_non_null(g);
	uint32_t plenty = qkm_link_cost(1 << 24, 1 << 20, 32);
	link(g, "A", "B", plenty);
	link(g, "B", "D", qkm_link_cost(4096, 0, 32)); /* lower stock */
	link(g, "A", "C", plenty);
	link(g, "C", "D", plenty);
	assert_string_equal(route(g, "A", "D"), "A C D");
	/* Alike: fewest hops, then name order (B before C). */
	assert_int_equal(qkm_graph_link_set_cost(g, find_link(g, "B", "D"), plenty), 0);
	assert_string_equal(route(g, "A", "D"), "A B D");
	uint32_t direct = link(g, "A", "D", plenty);
	assert_string_equal(route(g, "A", "D"), "A D");
	/* A direct link holding one need (17 x B) loses to two plentiful hops... */
	assert_int_equal(qkm_graph_link_set_cost(g, direct, qkm_link_cost(32, 0, 32)), 0);
	assert_string_equal(route(g, "A", "D"), "A B D");
	/* ... and one holding RESERVE needs (2 x B) wins against 2 x (B + 1). */
	assert_int_equal(qkm_graph_link_set_cost(g, direct, qkm_link_cost(512, 0, 32)), 0);
	assert_string_equal(route(g, "A", "D"), "A D");
	uint32_t path[4], v[2] = {node(g, "A"), node(g, "D")};
	size_t n;
	uint64_t cost;
	assert_int_equal(qkm_graph_route(g, v[0], v[1], path, 4, &n, &cost), 0);
	assert_int_equal(cost, 2 * B);
	qkm_graph_free(g);
}

/* R-CTL-3: an alarmed or down link carries no route; routes go round it and
 * come back when it is let back, with its cost kept. */
static void test_exclusion_reroutes(void **state)
{
	struct qkm_graph *g = qkm_graph_new();
	assert_non_null(g);
	link(g, "A", "B", 1);
	uint32_t bc = link(g, "B", "C", 1);
	link(g, "A", "D", 5);
	link(g, "D", "E", 5);
	link(g, "E", "C", 5);
	assert_string_equal(route(g, "A", "C"), "A B C");
	assert_int_equal(qkm_graph_link_exclude(g, bc, true), 0);
	assert_string_equal(route(g, "A", "C"), "A D E C");
	assert_string_equal(route(g, "B", "C"), "B A D E C");
	assert_int_equal(qkm_graph_link_exclude(g, bc, false), 0);
	assert_string_equal(route(g, "A", "C"), "A B C");
	/* A cost of INF excludes too; the flag and the cost are independent. */
	assert_int_equal(qkm_graph_link_set_cost(g, bc, QKM_LINK_COST_INF), 0);
	assert_string_equal(route(g, "A", "C"), "A D E C");
	assert_int_equal(qkm_graph_link_set_cost(g, bc, 2), 0);
	assert_int_equal(qkm_graph_link_exclude(g, bc, true), 0);
	assert_int_equal(qkm_graph_link_set_cost(g, bc, 1), 0); /* still excluded */
	assert_string_equal(route(g, "A", "C"), "A D E C");
	assert_int_equal(qkm_graph_link_exclude(g, bc, false), 0);
	assert_string_equal(route(g, "A", "C"), "A B C");
	assert_int_equal(qkm_graph_link_exclude(g, 99, true), QKM_ENOTFOUND);
	assert_int_equal(qkm_graph_link_set_cost(g, 99, 1), QKM_ENOTFOUND);
	qkm_graph_free(g);
}

/* A ring of six: the route to a node two steps away goes the short way; with
 * one link of it down, the other way round; all-equal costs. */
static void test_ring_flips(void **state)
{
	struct qkm_graph *g = qkm_graph_new();
	assert_non_null(g);
	const char *r[] = {"n0", "n1", "n2", "n3", "n4", "n5"};
	uint32_t l[6];
	for (int i = 0; i < 6; i++)
		l[i] = link(g, r[i], r[(i + 1) % 6], B);
	assert_string_equal(route(g, "n0", "n2"), "n0 n1 n2");
	assert_string_equal(route(g, "n0", "n4"), "n0 n5 n4");
	/* Opposite node: two routes of 3 hops; n1 sorts before n5. */
	assert_string_equal(route(g, "n0", "n3"), "n0 n1 n2 n3");
	assert_int_equal(qkm_graph_link_exclude(g, l[0], true), 0); /* n0-n1 */
	assert_string_equal(route(g, "n0", "n2"), "n0 n5 n4 n3 n2");
	assert_string_equal(route(g, "n0", "n3"), "n0 n5 n4 n3");
	assert_string_equal(route(g, "n0", "n1"), "n0 n5 n4 n3 n2 n1");
	assert_int_equal(qkm_graph_link_exclude(g, l[0], false), 0);
	assert_int_equal(qkm_graph_link_exclude(g, l[5], true), 0); /* n5-n0 */
	assert_string_equal(route(g, "n0", "n4"), "n0 n1 n2 n3 n4");
	qkm_graph_free(g);
}

/* Equal cost: fewer hops win, then names from the source outwards, also when
 * the predecessor that sorts first is settled last. */
static void test_ties(void **state)
{
	struct qkm_graph *g = qkm_graph_new();
	assert_non_null(g);
	/* Cost 3 either way: the direct link (1 hop) wins over S-b-T. */
	link(g, "S", "T", 3);
	link(g, "S", "b", 1);
	link(g, "b", "T", 2);
	assert_string_equal(route(g, "S", "T"), "S T");
	/* Cost decides before hops. */
	assert_int_equal(qkm_graph_link_set_cost(g, find_link(g, "S", "T"), 4), 0);
	assert_string_equal(route(g, "S", "T"), "S b T");
	qkm_graph_free(g);

	/* S-a-y-T and S-a-x-T both cost 7 in 3 hops. y (cost 2) settles long before
	 * x (cost 6), but x sorts first, so the route goes through x. */
	g = qkm_graph_new();
	assert_non_null(g);
	link(g, "S", "a", 1);
	link(g, "a", "y", 1);
	link(g, "y", "T", 5);
	link(g, "a", "x", 5);
	link(g, "x", "T", 1);
	assert_string_equal(route(g, "S", "T"), "S a x T");
	/* From T the other way: x and y are first hops of equal routes, x first. */
	assert_string_equal(route(g, "T", "S"), "T x a S");
	/* The first differing node decides, even against a later one: S-c-z-U vs
	 * S-d-a-U (a < z, but c < d). */
	link(g, "S", "d", 1);
	link(g, "d", "a2", 1);
	link(g, "a2", "U", 1);
	link(g, "S", "c", 1);
	link(g, "c", "z", 1);
	link(g, "z", "U", 1);
	assert_string_equal(route(g, "S", "U"), "S c z U");
	qkm_graph_free(g);
}

/* Builds the graph of nodes[0..nn) and links (pairs of node positions, cost)
 * in the order given by the permutations pn and pl. */
struct spec {
	int nn, nl;
	char names[16][16];
	int la[64], lb[64];
	uint32_t lc[64];
};

static struct qkm_graph *build(const struct spec *sp, const int *pn, const int *pl)
{
	struct qkm_graph *g = qkm_graph_new();
	assert_non_null(g);
	for (int i = 0; i < sp->nn; i++)
		node(g, sp->names[pn[i]]);
	for (int i = 0; i < sp->nl; i++) {
		int k = pl[i];
		/* Either way round. */
		if (i & 1)
			link(g, sp->names[sp->lb[k]], sp->names[sp->la[k]], sp->lc[k]);
		else
			link(g, sp->names[sp->la[k]], sp->names[sp->lb[k]], sp->lc[k]);
	}
	return g;
}

/* Brute force: the best simple path from s to t by (cost, hops, names from s
 * outwards), by trying them all. best is positions in sp, *bn its length. */
struct brute {
	const struct spec *sp;
	int adj[16][16]; /* link index + 1, or 0 */
	int path[16], n;
	bool on[16];
	uint64_t cost;
	int best[16], bn;
	uint64_t bcost;
};

static bool better(struct brute *b)
{
	if (b->bn == 0 || b->cost != b->bcost)
		return b->bn == 0 || b->cost < b->bcost;
	if (b->n != b->bn)
		return b->n < b->bn;
	for (int i = 0; i < b->n; i++) {
		int c = strcmp(b->sp->names[b->path[i]], b->sp->names[b->best[i]]);
		if (c)
			return c < 0;
	}
	return false;
}

static void dfs(struct brute *b, int u, int t)
{
	if (u == t) {
		if (better(b)) {
			memcpy(b->best, b->path, sizeof(b->path));
			b->bn = b->n;
			b->bcost = b->cost;
		}
		return;
	}
	for (int v = 0; v < b->sp->nn; v++) {
		int l = b->adj[u][v];
		if (!l || b->on[v])
			continue;
		b->on[v] = true;
		b->path[b->n++] = v;
		b->cost += b->sp->lc[l - 1];
		dfs(b, v, t);
		b->cost -= b->sp->lc[l - 1];
		b->n--;
		b->on[v] = false;
	}
}

static void shuffle(int *a, int n, uint64_t *s)
{
	for (int i = 0; i < n; i++)
		a[i] = i;
	for (int i = n - 1; i > 0; i--) {
		int j = (int)(rnd(s) % (uint64_t)(i + 1)), x = a[i];
		a[i] = a[j];
		a[j] = x;
	}
}

/* Random small graphs with costs 1..3 (ties everywhere): every route of
 * qkm_graph_routes_from is the brute-force best, whatever order the nodes
 * and links were added in, and qkm_graph_route agrees. */
static void test_ties_brute_force(void **state)
{
	uint64_t seed = 20261127;
	struct qkm_graph_tree t;
	qkm_graph_tree_init(&t);
	for (int round = 0; round < 150; round++) {
		struct spec sp = {.nn = 4 + (int)(rnd(&seed) % 6)};
		static struct brute br;
		memset(&br, 0, sizeof(br));
		br.sp = &sp;
		for (int i = 0; i < sp.nn; i++) {
			/* Names in no relation to insertion order. */
			snprintf(sp.names[i], sizeof(sp.names[i]), "%c%d", 'a' + (int)(rnd(&seed) % 3), i);
		}
		int want = sp.nn + (int)(rnd(&seed) % (uint64_t)sp.nn);
		for (int tries = 0; sp.nl < want && tries < 200; tries++) {
			int a = (int)(rnd(&seed) % (uint64_t)sp.nn), b = (int)(rnd(&seed) % (uint64_t)sp.nn);
			if (a == b || br.adj[a][b])
				continue;
			sp.la[sp.nl] = a, sp.lb[sp.nl] = b;
			sp.lc[sp.nl] = 1 + (uint32_t)(rnd(&seed) % 3);
			sp.nl++;
			br.adj[a][b] = br.adj[b][a] = sp.nl;
		}
		int pn[16], pl[64];
		shuffle(pn, sp.nn, &seed);
		shuffle(pl, sp.nl, &seed);
		struct qkm_graph *g = build(&sp, pn, pl);
		for (int s = 0; s < sp.nn; s++) {
			uint32_t gs = node(g, sp.names[s]);
			assert_int_equal(qkm_graph_routes_from(g, gs, &t), 0);
			for (int d = 0; d < sp.nn; d++) {
				uint32_t gd = node(g, sp.names[d]), path[16], path2[16];
				size_t n, n2;
				br.bn = 0;
				br.n = 1;
				br.path[0] = s;
				memset(br.on, 0, sizeof(br.on));
				br.on[s] = true;
				br.cost = 0;
				dfs(&br, s, d);
				int e = qkm_graph_tree_path(&t, gd, path, 16, &n);
				if (br.bn == 0) {
					assert_int_equal(e, QKM_ENOTFOUND);
					assert_int_equal(t.at[gd].cost, QKM_GRAPH_UNREACHED);
					continue;
				}
				assert_int_equal(e, 0);
				assert_int_equal(t.at[gd].cost, br.bcost);
				assert_int_equal(n, (size_t)br.bn);
				for (size_t i = 0; i < n; i++)
					assert_string_equal(qkm_graph_name(g, path[i]),
							    sp.names[br.best[i]]);
				assert_int_equal(qkm_graph_route(g, gs, gd, path2, 16, &n2, NULL), 0);
				assert_int_equal(n2, n);
				assert_memory_equal(path2, path, n * sizeof(*path));
			}
		}
		qkm_graph_free(g);
	}
	qkm_graph_tree_fini(&t);
}

/* Other components, and nodes cut off by excluded links, get no route. */
static void test_unreachable(void **state)
{
	struct qkm_graph *g = qkm_graph_new();
	struct qkm_graph_tree t;
	uint32_t path[8];
	size_t n = 5;
	assert_non_null(g);
	qkm_graph_tree_init(&t);
	link(g, "A", "B", 1);
	uint32_t bc = link(g, "B", "C", 1);
	link(g, "Y", "Z", 1);
	node(g, "lonely");
	assert_string_equal(route(g, "A", "Z"), "");
	assert_int_equal(qkm_graph_route(g, node(g, "A"), node(g, "lonely"), path, 8, &n, NULL),
			 QKM_ENOTFOUND);
	assert_int_equal(n, 0);
	assert_int_equal(qkm_graph_routes_from(g, node(g, "A"), &t), 0);
	assert_int_equal(t.at[node(g, "C")].hops, 2);
	assert_int_equal(t.at[node(g, "Y")].cost, QKM_GRAPH_UNREACHED);
	assert_int_equal(t.at[node(g, "Y")].prev, QKM_GRAPH_NONE);
	assert_int_equal(t.at[node(g, "A")].cost, 0);
	assert_int_equal(t.at[node(g, "A")].prev, QKM_GRAPH_NONE);
	assert_int_equal(qkm_graph_tree_path(&t, node(g, "Z"), path, 8, &n), QKM_ENOTFOUND);
	assert_int_equal(qkm_graph_link_exclude(g, bc, true), 0);
	assert_int_equal(qkm_graph_routes_from(g, node(g, "A"), &t), 0);
	assert_int_equal(t.at[node(g, "C")].cost, QKM_GRAPH_UNREACHED);
	assert_string_equal(route(g, "A", "C"), "");
	/* A node's route to itself is itself. */
	assert_string_equal(route(g, "lonely", "lonely"), "lonely");
	/* Too small a path array is refused, not cut short. */
	assert_int_equal(qkm_graph_link_exclude(g, bc, false), 0);
	assert_int_equal(qkm_graph_route(g, node(g, "A"), node(g, "C"), path, 2, &n, NULL),
			 QKM_ETOOBIG);
	assert_int_equal(n, 0);
	assert_int_equal(qkm_graph_route(g, node(g, "A"), node(g, "C"), path, 3, &n, NULL), 0);
	assert_int_equal(n, 3);
	qkm_graph_tree_fini(&t);
	qkm_graph_free(g);
}

/* Unknown nodes, self-loops, repeated links or names, bad names: refused,
 * and the graph (counts, links, routes) is as before. */
static void test_invalid_input(void **state)
{
	struct qkm_graph *g = qkm_graph_new();
	uint32_t v = 77, l = 77, path[8];
	size_t n;
	char long_name[QKM_GRAPH_NAME_MAX + 1];
	assert_non_null(g);
	link(g, "A", "B", 1);
	link(g, "B", "C", 1);
	uint32_t a = node(g, "A"), b = node(g, "B"), c = node(g, "C");

	assert_int_equal(qkm_graph_add_link(g, a, 3, 1, &l), QKM_ENOTFOUND);
	assert_int_equal(qkm_graph_add_link(g, QKM_GRAPH_NONE, a, 1, &l), QKM_ENOTFOUND);
	assert_int_equal(qkm_graph_add_link(g, b, b, 1, &l), QKM_EINVAL);
	assert_int_equal(qkm_graph_add_link(g, a, b, 1, &l), QKM_EEXIST);
	assert_int_equal(qkm_graph_add_link(g, b, a, 1, &l), QKM_EEXIST);
	assert_int_equal(l, 77);
	assert_int_equal(qkm_graph_add_node(g, "B", &v), QKM_EEXIST);
	assert_int_equal(qkm_graph_add_node(g, "", &v), QKM_EINVAL);
	memset(long_name, 'x', QKM_GRAPH_NAME_MAX);
	long_name[QKM_GRAPH_NAME_MAX] = 0;
	assert_int_equal(qkm_graph_add_node(g, long_name, &v), QKM_EINVAL); /* 64 bytes */
	assert_int_equal(v, 77);
	assert_int_equal(qkm_graph_nodes(g), 3);
	assert_int_equal(qkm_graph_links(g), 2);
	assert_int_equal(qkm_graph_find(g, long_name, &v), QKM_ENOTFOUND);
	assert_int_equal(qkm_graph_find_link(g, a, c, &l), QKM_ENOTFOUND);
	assert_int_equal(qkm_graph_find_link(g, a, 9, &l), QKM_ENOTFOUND);
	assert_int_equal(qkm_graph_find_link(g, b, a, &l), 0);
	assert_int_equal(l, 0);
	assert_null(qkm_graph_name(g, 3));
	assert_string_equal(route(g, "A", "C"), "A B C");
	assert_int_equal(qkm_graph_route(g, a, 3, path, 8, &n, NULL), QKM_ENOTFOUND);
	assert_int_equal(qkm_graph_route(g, 3, a, path, 8, &n, NULL), QKM_ENOTFOUND);
	/* The longest name (63 bytes) fits. */
	long_name[QKM_GRAPH_NAME_MAX - 1] = 0;
	assert_int_equal(qkm_graph_add_node(g, long_name, &v), 0);
	assert_int_equal(v, 3);
	assert_string_equal(qkm_graph_name(g, v), long_name);
	qkm_graph_free(g);
	qkm_graph_free(NULL);

	/* An empty graph answers lookups. */
	g = qkm_graph_new();
	assert_non_null(g);
	assert_int_equal(qkm_graph_find(g, "A", &v), QKM_ENOTFOUND);
	struct qkm_graph_tree t;
	qkm_graph_tree_init(&t);
	assert_int_equal(qkm_graph_routes_from(g, 0, &t), QKM_ENOTFOUND);
	qkm_graph_tree_fini(&t);
	qkm_graph_free(g);
}

/* 10,000 nodes, about 3 links each (a random tree plus random links), costs
 * from random stock: every name is found; every node is reached; every route
 * is consistent (its cost is its predecessor's plus the link's) and no link
 * offers a shorter one (the optimality condition of shortest paths); the
 * single-pair search gives the tree's route; a tree reused after the graph
 * grew covers the new nodes. */
static void test_large_graph(void **state)
{
	enum { N = 10000, L = N * 3 / 2 };
	static uint32_t la[L], lb[L], lc[L];
	uint64_t seed = 42;
	struct qkm_graph *g = qkm_graph_new();
	struct qkm_graph_tree t;
	char name[16];
	uint32_t nl = 0, v;
	assert_non_null(g);
	qkm_graph_tree_init(&t);
	for (uint32_t i = 0; i < N; i++) {
		/* Names in another order than numbers. */
		snprintf(name, sizeof(name), "n%05u", (unsigned)((i * 7919u) % N));
		assert_int_equal(qkm_graph_add_node(g, name, &v), 0);
		assert_int_equal(v, i);
	}
	while (nl < L) {
		uint32_t a = nl + 1 < N ? nl + 1 : (uint32_t)(rnd(&seed) % N);
		uint32_t b = (uint32_t)(rnd(&seed) % (nl + 1 < N ? a : N));
		uint32_t c = qkm_link_cost(rnd(&seed) % (1 << 16), 0, 32);
		int e = qkm_graph_add_link(g, a, b, c, NULL);
		if (e == QKM_EEXIST || e == QKM_EINVAL)
			continue;
		assert_int_equal(e, 0);
		la[nl] = a, lb[nl] = b, lc[nl] = c;
		nl++;
	}
	assert_int_equal(qkm_graph_links(g), L);
	for (uint32_t i = 0; i < N; i++) {
		snprintf(name, sizeof(name), "n%05u", (unsigned)i);
		assert_int_equal(qkm_graph_find(g, name, &v), 0);
		assert_int_equal((v * 7919u) % N, i);
	}
	uint32_t from = 1234;
	assert_int_equal(qkm_graph_routes_from(g, from, &t), 0);
	assert_int_equal(t.n, N);
	assert_int_equal(t.from, from);
	for (v = 0; v < N; v++) {
		const struct qkm_graph_reach *r = &t.at[v];
		uint32_t l;
		assert_true(r->cost != QKM_GRAPH_UNREACHED);
		if (v == from)
			continue;
		assert_int_equal(qkm_graph_find_link(g, r->prev, v, &l), 0);
		assert_int_equal(r->cost, t.at[r->prev].cost + lc[l]);
		assert_int_equal(r->hops, t.at[r->prev].hops + 1);
	}
	for (uint32_t l = 0; l < L; l++) {
		assert_true(t.at[la[l]].cost <= t.at[lb[l]].cost + lc[l]);
		assert_true(t.at[lb[l]].cost <= t.at[la[l]].cost + lc[l]);
	}
	for (uint32_t k = 0; k < 50; k++) {
		uint32_t to = (uint32_t)(rnd(&seed) % N), path[256], path2[256];
		size_t n, n2;
		uint64_t cost;
		assert_int_equal(qkm_graph_tree_path(&t, to, path, 256, &n), 0);
		assert_int_equal(n, t.at[to].hops + 1);
		assert_int_equal(path[0], from);
		assert_int_equal(path[n - 1], to);
		assert_int_equal(qkm_graph_route(g, from, to, path2, 256, &n2, &cost), 0);
		assert_int_equal(cost, t.at[to].cost);
		assert_int_equal(n2, n);
		assert_memory_equal(path2, path, n * sizeof(*path));
	}
	/* Grow the graph: the same tree serves, and covers the new node. */
	assert_int_equal(qkm_graph_add_node(g, "late", &v), 0);
	assert_int_equal(qkm_graph_add_link(g, v, 0, B, NULL), 0);
	assert_int_equal(qkm_graph_routes_from(g, from, &t), 0);
	assert_int_equal(t.n, N + 1);
	assert_int_equal(t.at[v].cost, t.at[0].cost + B);
	assert_int_equal(t.at[v].prev, 0);
	qkm_graph_tree_fini(&t);
	qkm_graph_free(g);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_link_cost),
		cmocka_unit_test(test_costs_choose_route),
		cmocka_unit_test(test_exclusion_reroutes),
		cmocka_unit_test(test_ring_flips),
		cmocka_unit_test(test_ties),
		cmocka_unit_test(test_ties_brute_force),
		cmocka_unit_test(test_unreachable),
		cmocka_unit_test(test_invalid_input),
		cmocka_unit_test(test_large_graph),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
