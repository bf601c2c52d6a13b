/* route.c - static relay routes (route.h): one breadth-first search over the
 * topology's links, taken as undirected, from one node. Knows nothing of
 * relay itself; `qkm net up` writes what it finds into node.json (R-REL-6).
 * Invariant: a node's BFS parent is the first node, in queue order, that
 * reached it, and queue order follows sorted names, so routes are stable. */
#include "core/route.h"

#include <stdio.h>
#include <string.h>

static int node_index(const struct qkm_topology *t, const char *id)
{
	for (size_t i = 0; i < t->n_nodes; i++)
		if (strcmp(t->nodes[i].id, id) == 0)
			return (int)i;
	return -1;
}

/* The neighbours of node u (indices into t->nodes) into nb, sorted by name;
 * returns how many. A node has at most n_nodes - 1 distinct neighbours
 * (the loader refuses duplicate links; a repeat here is skipped anyway). */
static size_t neighbours(const struct qkm_topology *t, int u, int nb[static QKM_MAX_NODES])
{
	size_t n = 0;
	for (size_t j = 0; j < t->n_links && j < QKM_MAX_TOPO_LINKS; j++) {
		const char *a = t->links[j].a, *b = t->links[j].b, *other;
		if (strcmp(a, t->nodes[u].id) == 0)
			other = b;
		else if (strcmp(b, t->nodes[u].id) == 0)
			other = a;
		else
			continue;
		int v = node_index(t, other);
		bool seen = v < 0 || v == u;
		for (size_t k = 0; k < n && !seen; k++)
			seen = nb[k] == v;
		if (seen || n == QKM_MAX_NODES)
			continue;
		/* Insertion sort by name: at most 63 entries. */
		size_t k = n++;
		while (k > 0 && strcmp(t->nodes[nb[k - 1]].id, t->nodes[v].id) > 0) {
			nb[k] = nb[k - 1];
			k--;
		}
		nb[k] = v;
	}
	return n;
}

int qkm_routes_compute(const struct qkm_topology *t, const char *from,
		       struct qkm_node_route *out, size_t max, size_t *n)
{
	int parent[QKM_MAX_NODES], dist[QKM_MAX_NODES], queue[QKM_MAX_NODES], nb[QKM_MAX_NODES];
	size_t head = 0, tail = 0, count = 0, nn = t->n_nodes;
	*n = 0;
	if (nn > QKM_MAX_NODES)
		nn = QKM_MAX_NODES;
	int s = node_index(t, from);
	if (s < 0 || (size_t)s >= nn)
		return QKM_ENOTFOUND;
	for (size_t i = 0; i < nn; i++)
		dist[i] = -1, parent[i] = -1;
	dist[s] = 0;
	queue[tail++] = s;
	while (head < tail) {
		int u = queue[head++];
		size_t k = neighbours(t, u, nb);
		for (size_t i = 0; i < k; i++) {
			int v = nb[i];
			if ((size_t)v >= nn || dist[v] >= 0)
				continue;
			dist[v] = dist[u] + 1;
			parent[v] = u;
			queue[tail++] = v; /* each node enters once: tail <= nn */
		}
	}
	for (size_t i = 0; i < nn; i++) {
		/* Unreachable (-1), from itself (0), a link peer (1): no route. */
		if (dist[i] < 2)
			continue;
		if ((size_t)dist[i] + 1 > QKM_MAX_PATH || count == max)
			return QKM_ETOOBIG;
		struct qkm_node_route *r = &out[count];
		memset(r, 0, sizeof(*r));
		r->n = (uint32_t)dist[i] + 1;
		snprintf(r->to, sizeof(r->to), "%s", t->nodes[i].id);
		/* Walk the parents back from the destination to `from`. */
		for (int v = (int)i, at = dist[i]; v >= 0; v = parent[v], at--)
			snprintf(r->path[at], sizeof(r->path[at]), "%s", t->nodes[v].id);
		count++;
	}
	*n = count;
	return 0;
}
