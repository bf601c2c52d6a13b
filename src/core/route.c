/* route.c - static relay routes (route.h): the topology as a graph
 * (core/graph.h) whose links all cost the same, so least cost is fewest hops
 * and graph.c's tie-break (names from the source outwards) is the one these
 * routes have always had. Knows nothing of relay itself; `qkm net up` writes
 * what it finds into node.json (R-REL-6). */
#include "core/route.h"

#include <stdio.h>
#include <string.h>

#include "core/graph.h"

/* Builds g from the first nn nodes of t and its links; gv[i] is the graph
 * node of t->nodes[i], or QKM_GRAPH_NONE. What the loader refuses anyway is
 * left out, as the breadth-first search this replaced ignored it: a repeated
 * node name (the first node keeps it), a link naming an unknown node, a
 * self-loop, a repeated link. */
static int topo_graph(const struct qkm_topology *t, size_t nn, struct qkm_graph *g,
		      uint32_t gv[static QKM_MAX_NODES])
{
	uint32_t a, b;
	for (size_t i = 0; i < nn; i++) {
		int e = qkm_graph_add_node(g, t->nodes[i].id, &gv[i]);
		if (e == QKM_EEXIST || e == QKM_EINVAL)
			gv[i] = QKM_GRAPH_NONE;
		else if (e)
			return e;
	}
	for (size_t j = 0; j < t->n_links && j < QKM_MAX_TOPO_LINKS; j++) {
		if (qkm_graph_find(g, t->links[j].a, &a) || qkm_graph_find(g, t->links[j].b, &b))
			continue;
		int e = qkm_graph_add_link(g, a, b, QKM_LINK_COST_BASE, NULL);
		if (e && e != QKM_EINVAL && e != QKM_EEXIST)
			return e;
	}
	return 0;
}

int qkm_routes_compute(const struct qkm_topology *t, const char *from,
		       struct qkm_node_route *out, size_t max, size_t *n)
{
	uint32_t gv[QKM_MAX_NODES], path[QKM_MAX_PATH], s;
	size_t count = 0, len, nn = t->n_nodes < QKM_MAX_NODES ? t->n_nodes : QKM_MAX_NODES;
	struct qkm_graph_tree tree;
	struct qkm_graph *g = qkm_graph_new();
	int e = QKM_ENOMEM;
	*n = 0;
	qkm_graph_tree_init(&tree);
	if (!g)
		goto out;
	if ((e = topo_graph(t, nn, g, gv)))
		goto out;
	if (qkm_graph_find(g, from, &s)) {
		e = QKM_ENOTFOUND;
		goto out;
	}
	if ((e = qkm_graph_routes_from(g, s, &tree)))
		goto out;
	for (size_t i = 0; i < nn; i++) {
		/* Unreachable, from itself, a link peer (one hop): no route. */
		if (gv[i] == QKM_GRAPH_NONE || tree.at[gv[i]].cost == QKM_GRAPH_UNREACHED ||
		    tree.at[gv[i]].hops < 2)
			continue;
		if (count == max) {
			e = QKM_ETOOBIG;
			goto out;
		}
		if ((e = qkm_graph_tree_path(&tree, gv[i], path, QKM_MAX_PATH, &len)))
			goto out;
		struct qkm_node_route *r = &out[count++];
		memset(r, 0, sizeof(*r));
		r->n = (uint32_t)len;
		snprintf(r->to, sizeof(r->to), "%s", t->nodes[i].id);
		for (size_t k = 0; k < len; k++)
			snprintf(r->path[k], sizeof(r->path[k]), "%s", qkm_graph_name(g, path[k]));
	}
	*n = count;
out:
	qkm_graph_tree_fini(&tree);
	qkm_graph_free(g);
	return e;
}
