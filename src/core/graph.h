/* graph.h - a network graph built at run time, of any size, and its least-
 * cost relay routes (R-REL-6; weighted by link key stock and rate, avoiding
 * alarmed or down links: R-CTL-3). Nodes are named and numbered in the order
 * they are added; links are undirected, each with one cost and a flag that
 * excludes it. Routes come from Dijkstra with a binary heap; ties break the
 * same way on every run and every node (qkm_graph_routes_from). Pure code:
 * no I/O, no global state; a graph is not safe to change while routed. */
#ifndef QKM_CORE_GRAPH_H
#define QKM_CORE_GRAPH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/err.h"

/* Hard limits: every array here grows up to these (QKM_ETOOBIG beyond). */
#define QKM_GRAPH_MAX_NODES (1u << 24)
#define QKM_GRAPH_MAX_LINKS (1u << 26)
/* A node name is 1..QKM_GRAPH_NAME_MAX - 1 bytes (QKM_NAME_MAX, core/id.h). */
#define QKM_GRAPH_NAME_MAX 64

/* "No node": a route's predecessor of its first node, or of a node not reached. */
#define QKM_GRAPH_NONE UINT32_MAX
/* The cost of a route to a node that was not reached. */
#define QKM_GRAPH_UNREACHED UINT64_MAX

/* Link cost (docs/routing.md). A link's cost is what one hop over it adds to a
 * route; a route's cost is the sum over its links (64 bits: cannot overflow).
 * QKM_LINK_COST_INF marks a link no route may use. */
#define QKM_LINK_COST_INF UINT32_MAX
#define QKM_LINK_COST_MAX (UINT32_MAX - 1)
#define QKM_LINK_COST_BASE 1000u   /* per hop, whatever the stock */
#define QKM_LINK_COST_RESERVE 16u  /* needs of key at which a hop costs 2 x BASE */
#define QKM_LINK_HORIZON_S 1u      /* seconds of key rate counted as stock */

/* The cost of a hop over an up, unalarmed link that holds stock_bytes of key
 * and makes rate_bps more, for routes that each need need_bytes of it:
 *
 *   E    = stock_bytes + rate_bps / 8 * QKM_LINK_HORIZON_S      (saturating)
 *   cost = BASE + ceil(BASE * RESERVE * need_bytes / E)          (at most MAX)
 *
 * So a link with E >= RESERVE * need costs at most 2 x BASE and one with
 * plenty of stock costs BASE + 1: alike links add the same per hop, and the
 * route with fewer hops wins; a link that can give 1/k of RESERVE needs costs
 * (1 + k) x BASE, so routes take up to k more plentiful hops to avoid it.
 * E == 0 (no stock, no rate): QKM_LINK_COST_INF. need_bytes == 0: BASE.
 * Alarmed or down links are not priced here: qkm_graph_link_exclude. */
uint32_t qkm_link_cost(uint64_t stock_bytes, uint64_t rate_bps, uint64_t need_bytes);

struct qkm_graph;

/* An empty graph, or NULL (out of memory). */
struct qkm_graph *qkm_graph_new(void);
/* Frees g and all it holds; NULL is a no-op. */
void qkm_graph_free(struct qkm_graph *g);

/* Adds a node named name (copied), numbered qkm_graph_nodes(g) before the call,
 * into *node (may be NULL). QKM_EINVAL (name empty or too long), QKM_EEXIST
 * (name taken), QKM_ETOOBIG, QKM_ENOMEM; on error g is unchanged. */
int qkm_graph_add_node(struct qkm_graph *g, const char *name,
		       uint32_t *node /* OUT */) QKM_MUST_CHECK;
/* Looks name up (hash table): 0 and *node, or QKM_ENOTFOUND. */
int qkm_graph_find(const struct qkm_graph *g, const char *name,
		   uint32_t *node /* OUT */) QKM_MUST_CHECK;
/* The name of node (owned by g, valid until g is freed), or NULL if no such node. */
const char *qkm_graph_name(const struct qkm_graph *g, uint32_t node);
/* How many nodes, links g has. Nodes are 0..nodes-1, links 0..links-1. */
uint32_t qkm_graph_nodes(const struct qkm_graph *g);
uint32_t qkm_graph_links(const struct qkm_graph *g);

/* Adds the undirected link a-b of the given cost (QKM_LINK_COST_INF: present
 * but unusable), not excluded, numbered qkm_graph_links(g) before the call,
 * into *link (may be NULL). QKM_ENOTFOUND (a or b not a node), QKM_EINVAL
 * (a == b), QKM_EEXIST (a-b or b-a already a link), QKM_ETOOBIG, QKM_ENOMEM;
 * on error g is unchanged. */
int qkm_graph_add_link(struct qkm_graph *g, uint32_t a, uint32_t b, uint32_t cost,
		       uint32_t *link /* OUT */) QKM_MUST_CHECK;
/* The link between a and b, either way round: 0 and *link, or QKM_ENOTFOUND. */
int qkm_graph_find_link(const struct qkm_graph *g, uint32_t a, uint32_t b,
			uint32_t *link /* OUT */) QKM_MUST_CHECK;
/* Sets a link's cost (e.g. from qkm_link_cost when its stock changes); 0 or QKM_ENOTFOUND. */
int qkm_graph_link_set_cost(struct qkm_graph *g, uint32_t link, uint32_t cost) QKM_MUST_CHECK;
/* Excludes a link from routes (alarmed or down) or lets it back, keeping its
 * cost; 0 or QKM_ENOTFOUND. */
int qkm_graph_link_exclude(struct qkm_graph *g, uint32_t link, bool excluded) QKM_MUST_CHECK;

/* What one node learns of its route from a source (qkm_graph_routes_from). */
struct qkm_graph_reach {
	uint64_t cost; /* sum of the route's link costs; QKM_GRAPH_UNREACHED if none */
	uint32_t hops; /* links on the route (0 for the source) */
	uint32_t prev; /* the node before it on the route; QKM_GRAPH_NONE for the
			* source and for nodes not reached */
};

/* The routes from one node to every other: a shortest-path tree. Init before
 * the first use, fini after the last; one tree can be reused for many
 * sources (its arrays grow only when the graph has). */
struct qkm_graph_tree {
	uint32_t from;                /* source of the last run */
	uint32_t n;                   /* nodes in at[] (the graph's count then) */
	struct qkm_graph_reach *at;   /* [n]: the result */
	/* Scratch of a run (the heap and each node's place in it), not a result. */
	struct qkm_graph_heap_ent *heap;
	uint32_t *pos;
	uint32_t cap;
};
void qkm_graph_tree_init(struct qkm_graph_tree *t);
void qkm_graph_tree_fini(struct qkm_graph_tree *t);

/* Computes into t the least-cost route from `from` to every node it reaches
 * over links neither excluded nor of cost QKM_LINK_COST_INF. Among routes of
 * equal cost the one with fewer hops wins; among those, the one whose node
 * names, read from `from` outwards, sort first (strcmp): the name of the next
 * node decides, then the one after, and so on. That order does not depend on
 * the order nodes or links were added, so every node that knows the same
 * graph computes the same routes. O((V + E) log V).
 * QKM_ENOTFOUND (from not a node), QKM_ENOMEM. */
int qkm_graph_routes_from(const struct qkm_graph *g, uint32_t from,
			  struct qkm_graph_tree *t /* OUT */) QKM_MUST_CHECK;

/* Writes the route in t to node `to`, from t->from to `to` both included, into
 * path[0..*n); max is path's capacity. QKM_ENOTFOUND (to not in t, or not
 * reached), QKM_ETOOBIG (more than max nodes; *n = 0). */
int qkm_graph_tree_path(const struct qkm_graph_tree *t, uint32_t to, uint32_t *path /* OUT */,
			size_t max, size_t *n /* OUT */) QKM_MUST_CHECK;

/* The route from `from` to `to` alone (the same route qkm_graph_routes_from
 * finds; the search stops once `to` is settled), into path as
 * qkm_graph_tree_path does; *cost (may be NULL) is its cost.
 * QKM_ENOTFOUND (either not a node, or to not reached), QKM_ETOOBIG, QKM_ENOMEM. */
int qkm_graph_route(const struct qkm_graph *g, uint32_t from, uint32_t to, uint32_t *path /* OUT */,
		    size_t max, size_t *n /* OUT */, uint64_t *cost /* OUT */) QKM_MUST_CHECK;

#endif
