/* route.h - static relay routes from a topology (until the controller
 * provides them, R-REL-6): for each node, the shortest path (fewest hops)
 * to every other node it reaches but shares no QKD link with. Ties break
 * deterministically (the route whose node names, read from the source
 * outwards, sort first: core/graph.h), so every run and every node computes
 * the same routes. Pure code, on the route engine of core/graph.h. */
#ifndef QKM_CORE_ROUTE_H
#define QKM_CORE_ROUTE_H

#include <stddef.h>

#include "core/config.h"
#include "core/err.h"

/* Fills out[0..*n) with the routes from node `from` of t, in the order of
 * t->nodes; max is out's capacity. QKM_ENOTFOUND if from is not a node of
 * t; QKM_ETOOBIG if a path would exceed QKM_MAX_PATH nodes or more than max
 * routes are needed (*n = 0 on any error); QKM_ENOMEM. Unreachable nodes get
 * no route. */
int qkm_routes_compute(const struct qkm_topology *t, const char *from,
		       struct qkm_node_route *out, size_t max, size_t *n /* OUT */) QKM_MUST_CHECK;

#endif
