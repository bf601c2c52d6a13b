/* graph.c - the run-time graph and its least-cost routes (graph.h): a name
 * table (open addressing, FNV-1a), one adjacency array per node, one cost and
 * one exclusion flag per link, Dijkstra over an indexed binary heap.
 * Invariants: every node's name is in the table once; each link is in the
 * adjacency of both its ends; w[l] is what routes see (INF while excluded). */
#include "core/graph.h"

#include <stdlib.h>
#include <string.h>

struct adj {
	uint32_t to, link;
};

struct node {
	uint32_t name; /* offset of its NUL-terminated name in g->names */
	uint32_t hash;
	uint32_t deg;
	size_t cap;
	struct adj *adj;
};

struct link {
	uint32_t a, b;
	uint32_t cost;
	bool excluded;
};

struct qkm_graph {
	struct node *nodes;
	uint32_t n_nodes;
	size_t cap_nodes;
	struct link *links;
	uint32_t *w; /* [n_links] cost a route pays, QKM_LINK_COST_INF if it may not */
	uint32_t n_links;
	size_t cap_links, cap_w;
	char *names;
	size_t names_len, names_cap;
	uint32_t *table; /* node numbers, QKM_GRAPH_NONE = empty; size a power of two */
	uint32_t table_cap;
};

/* A heap entry carries its key so that sifting reads one array. */
struct qkm_graph_heap_ent {
	uint64_t cost;
	uint32_t hops;
	uint32_t node;
};

/* pos[] of a node never queued, and of one settled (popped). */
#define POS_UNSEEN UINT32_MAX
#define POS_DONE (UINT32_MAX - 1)

uint32_t qkm_link_cost(uint64_t stock_bytes, uint64_t rate_bps, uint64_t need_bytes)
{
	const uint64_t k = (uint64_t)QKM_LINK_COST_BASE * QKM_LINK_COST_RESERVE;
	uint64_t made = rate_bps / 8 > UINT64_MAX / QKM_LINK_HORIZON_S
				? UINT64_MAX
				: rate_bps / 8 * QKM_LINK_HORIZON_S;
	uint64_t e = stock_bytes > UINT64_MAX - made ? UINT64_MAX : stock_bytes + made;
	if (e == 0)
		return QKM_LINK_COST_INF;
	if (need_bytes > UINT64_MAX / k)
		return QKM_LINK_COST_MAX;
	uint64_t x = need_bytes * k;
	uint64_t extra = x / e + (x % e != 0);
	if (extra > QKM_LINK_COST_MAX - QKM_LINK_COST_BASE)
		return QKM_LINK_COST_MAX;
	return (uint32_t)(QKM_LINK_COST_BASE + extra);
}

/* Returns p, or p moved to a larger block with room for `need` elements of
 * `size` bytes (doubling; *cap updated), or NULL if that cannot be allocated
 * (p and *cap untouched, still valid). */
static void *grow(void *p, size_t *cap, size_t need, size_t size)
{
	if (need <= *cap)
		return p;
	size_t c = *cap ? *cap : 4;
	while (c < need)
		c *= 2;
	if (c > SIZE_MAX / size)
		return NULL;
	void *q = realloc(p, c * size);
	if (q)
		*cap = c;
	return q;
}

static uint32_t fnv1a(const char *s, size_t n)
{
	uint32_t h = 2166136261u;
	for (size_t i = 0; i < n; i++)
		h = (h ^ (uint8_t)s[i]) * 16777619u;
	return h;
}

static const char *name_of(const struct qkm_graph *g, uint32_t v)
{
	return g->names + g->nodes[v].name;
}

/* The table slot that holds name, or the empty slot where it would go. */
static uint32_t slot_of(const struct qkm_graph *g, const char *name, uint32_t h)
{
	uint32_t mask = g->table_cap - 1, i = h & mask;
	while (g->table[i] != QKM_GRAPH_NONE) {
		uint32_t v = g->table[i];
		if (g->nodes[v].hash == h && strcmp(name_of(g, v), name) == 0)
			break;
		i = (i + 1) & mask;
	}
	return i;
}

/* Keeps the table at most half full for n nodes: a new, larger table holding
 * the same nodes, or the old one untouched if allocation fails. */
static int table_reserve(struct qkm_graph *g, uint32_t n)
{
	if ((uint64_t)n * 2 <= g->table_cap)
		return 0;
	uint32_t cap = g->table_cap ? g->table_cap * 2 : 16;
	while ((uint64_t)n * 2 > cap)
		cap *= 2;
	uint32_t *t = malloc((size_t)cap * sizeof(*t));
	if (!t)
		return QKM_ENOMEM;
	memset(t, 0xff, (size_t)cap * sizeof(*t)); /* QKM_GRAPH_NONE */
	for (uint32_t v = 0; v < g->n_nodes; v++) {
		uint32_t i = g->nodes[v].hash & (cap - 1);
		while (t[i] != QKM_GRAPH_NONE)
			i = (i + 1) & (cap - 1);
		t[i] = v;
	}
	free(g->table);
	g->table = t;
	g->table_cap = cap;
	return 0;
}

struct qkm_graph *qkm_graph_new(void)
{
	return calloc(1, sizeof(struct qkm_graph));
}

void qkm_graph_free(struct qkm_graph *g)
{
	if (!g)
		return;
	for (uint32_t v = 0; v < g->n_nodes; v++)
		free(g->nodes[v].adj);
	free(g->nodes);
	free(g->links);
	free(g->w);
	free(g->names);
	free(g->table);
	free(g);
}

uint32_t qkm_graph_nodes(const struct qkm_graph *g) { return g->n_nodes; }
uint32_t qkm_graph_links(const struct qkm_graph *g) { return g->n_links; }

const char *qkm_graph_name(const struct qkm_graph *g, uint32_t node)
{
	return node < g->n_nodes ? name_of(g, node) : NULL;
}

int qkm_graph_find(const struct qkm_graph *g, const char *name, uint32_t *node)
{
	if (g->table_cap == 0)
		return QKM_ENOTFOUND;
	size_t len = strnlen(name, QKM_GRAPH_NAME_MAX);
	uint32_t v = g->table[slot_of(g, name, fnv1a(name, len))];
	if (v == QKM_GRAPH_NONE)
		return QKM_ENOTFOUND;
	*node = v;
	return 0;
}

int qkm_graph_add_node(struct qkm_graph *g, const char *name, uint32_t *node)
{
	size_t len = strnlen(name, QKM_GRAPH_NAME_MAX);
	uint32_t v = g->n_nodes, dummy;
	void *p;
	if (len == 0 || len >= QKM_GRAPH_NAME_MAX)
		return QKM_EINVAL;
	if (qkm_graph_find(g, name, &dummy) == 0)
		return QKM_EEXIST;
	if (v >= QKM_GRAPH_MAX_NODES)
		return QKM_ETOOBIG;
	/* Every allocation first: only capacities change if one fails. */
	if (!(p = grow(g->nodes, &g->cap_nodes, (size_t)v + 1, sizeof(*g->nodes))))
		return QKM_ENOMEM;
	g->nodes = p;
	if (!(p = grow(g->names, &g->names_cap, g->names_len + len + 1, 1)))
		return QKM_ENOMEM;
	g->names = p;
	if (table_reserve(g, v + 1))
		return QKM_ENOMEM;
	uint32_t h = fnv1a(name, len);
	memcpy(g->names + g->names_len, name, len + 1);
	g->nodes[v] = (struct node){.name = (uint32_t)g->names_len, .hash = h};
	g->names_len += len + 1;
	g->n_nodes = v + 1;
	g->table[slot_of(g, name, h)] = v;
	if (node)
		*node = v;
	return 0;
}

int qkm_graph_find_link(const struct qkm_graph *g, uint32_t a, uint32_t b, uint32_t *link)
{
	if (a >= g->n_nodes || b >= g->n_nodes)
		return QKM_ENOTFOUND;
	if (g->nodes[b].deg < g->nodes[a].deg) {
		uint32_t t = a;
		a = b;
		b = t;
	}
	const struct node *na = &g->nodes[a];
	for (uint32_t i = 0; i < na->deg; i++) {
		if (na->adj[i].to == b) {
			*link = na->adj[i].link;
			return 0;
		}
	}
	return QKM_ENOTFOUND;
}

int qkm_graph_add_link(struct qkm_graph *g, uint32_t a, uint32_t b, uint32_t cost,
		       uint32_t *link)
{
	uint32_t l = g->n_links, dummy;
	void *p;
	if (a >= g->n_nodes || b >= g->n_nodes)
		return QKM_ENOTFOUND;
	if (a == b)
		return QKM_EINVAL;
	if (qkm_graph_find_link(g, a, b, &dummy) == 0)
		return QKM_EEXIST;
	if (l >= QKM_GRAPH_MAX_LINKS)
		return QKM_ETOOBIG;
	struct node *na = &g->nodes[a], *nb = &g->nodes[b];
	/* Every allocation first: only capacities change if one fails. */
	if (!(p = grow(g->w, &g->cap_w, (size_t)l + 1, sizeof(*g->w))))
		return QKM_ENOMEM;
	g->w = p;
	if (!(p = grow(g->links, &g->cap_links, (size_t)l + 1, sizeof(*g->links))))
		return QKM_ENOMEM;
	g->links = p;
	if (!(p = grow(na->adj, &na->cap, (size_t)na->deg + 1, sizeof(*na->adj))))
		return QKM_ENOMEM;
	na->adj = p;
	if (!(p = grow(nb->adj, &nb->cap, (size_t)nb->deg + 1, sizeof(*nb->adj))))
		return QKM_ENOMEM;
	nb->adj = p;
	g->links[l] = (struct link){.a = a, .b = b, .cost = cost};
	g->w[l] = cost;
	na->adj[na->deg++] = (struct adj){.to = b, .link = l};
	nb->adj[nb->deg++] = (struct adj){.to = a, .link = l};
	g->n_links = l + 1;
	if (link)
		*link = l;
	return 0;
}

int qkm_graph_link_set_cost(struct qkm_graph *g, uint32_t link, uint32_t cost)
{
	if (link >= g->n_links)
		return QKM_ENOTFOUND;
	g->links[link].cost = cost;
	g->w[link] = g->links[link].excluded ? QKM_LINK_COST_INF : cost;
	return 0;
}

int qkm_graph_link_exclude(struct qkm_graph *g, uint32_t link, bool excluded)
{
	if (link >= g->n_links)
		return QKM_ENOTFOUND;
	g->links[link].excluded = excluded;
	g->w[link] = excluded ? QKM_LINK_COST_INF : g->links[link].cost;
	return 0;
}

void qkm_graph_tree_init(struct qkm_graph_tree *t)
{
	memset(t, 0, sizeof(*t));
	t->from = QKM_GRAPH_NONE;
}

void qkm_graph_tree_fini(struct qkm_graph_tree *t)
{
	free(t->at);
	free(t->heap);
	free(t->pos);
	qkm_graph_tree_init(t);
}

/* Room for n nodes in each of t's arrays; t stays usable if it fails. */
static int tree_reserve(struct qkm_graph_tree *t, uint32_t n)
{
	if (n <= t->cap)
		return 0;
	void *p;
	if (!(p = realloc(t->at, (size_t)n * sizeof(*t->at))))
		return QKM_ENOMEM;
	t->at = p;
	if (!(p = realloc(t->heap, (size_t)n * sizeof(*t->heap))))
		return QKM_ENOMEM;
	t->heap = p;
	if (!(p = realloc(t->pos, (size_t)n * sizeof(*t->pos))))
		return QKM_ENOMEM;
	t->pos = p;
	t->cap = n;
	return 0;
}

/* Heap order: cost, then hops, then node number (the last only makes the pop
 * order total; which of two equal keys settles first changes no route). */
static inline bool ent_less(const struct qkm_graph_heap_ent *x, const struct qkm_graph_heap_ent *y)
{
	if (x->cost != y->cost)
		return x->cost < y->cost;
	if (x->hops != y->hops)
		return x->hops < y->hops;
	return x->node < y->node;
}

static void sift_up(struct qkm_graph_tree *t, uint32_t i)
{
	struct qkm_graph_heap_ent e = t->heap[i];
	while (i > 0) {
		uint32_t p = (i - 1) / 2;
		if (!ent_less(&e, &t->heap[p]))
			break;
		t->heap[i] = t->heap[p];
		t->pos[t->heap[i].node] = i;
		i = p;
	}
	t->heap[i] = e;
	t->pos[e.node] = i;
}

static void sift_down(struct qkm_graph_tree *t, uint32_t i, uint32_t len)
{
	struct qkm_graph_heap_ent e = t->heap[i];
	for (;;) {
		uint32_t c = 2 * i + 1;
		if (c >= len)
			break;
		if (c + 1 < len && ent_less(&t->heap[c + 1], &t->heap[c]))
			c++;
		if (!ent_less(&t->heap[c], &e))
			break;
		t->heap[i] = t->heap[c];
		t->pos[t->heap[i].node] = i;
		i = c;
	}
	t->heap[i] = e;
	t->pos[e.node] = i;
}

/* True if the route to u sorts before the route to p by node names read from
 * the source outwards. Both are settled (their routes final) and have as many
 * hops, so walking back in step they meet at their last common node; the two
 * nodes just after it are where the routes first differ. */
static bool route_before(const struct qkm_graph *g, const struct qkm_graph_reach *at, uint32_t u,
			 uint32_t p)
{
	while (at[u].prev != at[p].prev) {
		u = at[u].prev;
		p = at[p].prev;
	}
	return strcmp(name_of(g, u), name_of(g, p)) < 0;
}

/* Dijkstra from `from` into t, stopping once `stop` is settled (QKM_GRAPH_NONE:
 * never). Invariant: a node's (cost, hops) only decreases until it is popped;
 * a popped node's route is final, and every node that could precede a node on
 * a best route has a smaller (cost, hops), so it is popped first and offers
 * itself (ties: route_before) before that node is popped. */
static int run(const struct qkm_graph *g, uint32_t from, uint32_t stop, struct qkm_graph_tree *t)
{
	uint32_t n = g->n_nodes, len = 0;
	if (from >= n)
		return QKM_ENOTFOUND;
	int e = tree_reserve(t, n);
	if (e)
		return e;
	struct qkm_graph_reach *at = t->at;
	uint32_t *pos = t->pos;
	t->from = from;
	t->n = n;
	for (uint32_t i = 0; i < n; i++) {
		at[i] = (struct qkm_graph_reach){QKM_GRAPH_UNREACHED, 0, QKM_GRAPH_NONE};
		pos[i] = POS_UNSEEN;
	}
	at[from].cost = 0;
	t->heap[len++] = (struct qkm_graph_heap_ent){0, 0, from};
	pos[from] = 0;
	while (len > 0) {
		struct qkm_graph_heap_ent top = t->heap[0];
		uint32_t u = top.node;
		if (--len > 0) {
			t->heap[0] = t->heap[len];
			sift_down(t, 0, len);
		}
		pos[u] = POS_DONE;
		if (u == stop)
			break;
		const struct node *nu = &g->nodes[u];
		for (uint32_t i = 0; i < nu->deg; i++) {
			uint32_t v = nu->adj[i].to, w = g->w[nu->adj[i].link];
			if (w == QKM_LINK_COST_INF || pos[v] == POS_DONE)
				continue;
			uint64_t c = top.cost + w;
			uint32_t h = top.hops + 1;
			struct qkm_graph_reach *r = &at[v];
			if (pos[v] == POS_UNSEEN) {
				*r = (struct qkm_graph_reach){c, h, u};
				t->heap[len] = (struct qkm_graph_heap_ent){c, h, v};
				sift_up(t, len++);
			} else if (c < r->cost || (c == r->cost && h < r->hops)) {
				*r = (struct qkm_graph_reach){c, h, u};
				t->heap[pos[v]].cost = c;
				t->heap[pos[v]].hops = h;
				sift_up(t, pos[v]);
			} else if (c == r->cost && h == r->hops && route_before(g, at, u, r->prev)) {
				r->prev = u;
			}
		}
	}
	return 0;
}

int qkm_graph_routes_from(const struct qkm_graph *g, uint32_t from, struct qkm_graph_tree *t)
{
	return run(g, from, QKM_GRAPH_NONE, t);
}

int qkm_graph_tree_path(const struct qkm_graph_tree *t, uint32_t to, uint32_t *path, size_t max,
			size_t *n)
{
	*n = 0;
	if (to >= t->n || t->at[to].cost == QKM_GRAPH_UNREACHED)
		return QKM_ENOTFOUND;
	size_t len = (size_t)t->at[to].hops + 1;
	if (len > max)
		return QKM_ETOOBIG;
	size_t i = len;
	for (uint32_t v = to; v != QKM_GRAPH_NONE; v = t->at[v].prev)
		path[--i] = v; /* the prev chain has exactly hops + 1 nodes */
	*n = len;
	return 0;
}

int qkm_graph_route(const struct qkm_graph *g, uint32_t from, uint32_t to, uint32_t *path,
		    size_t max, size_t *n, uint64_t *cost)
{
	struct qkm_graph_tree t;
	int e;
	*n = 0;
	if (to >= g->n_nodes)
		return QKM_ENOTFOUND;
	qkm_graph_tree_init(&t);
	if ((e = run(g, from, to, &t)))
		goto out;
	if ((e = qkm_graph_tree_path(&t, to, path, max, n)))
		goto out;
	if (cost)
		*cost = t.at[to].cost;
out:
	qkm_graph_tree_fini(&t);
	return e;
}
