/* controller.c - the QKDN controller and manager (controller.h). One event
 * loop: node links (Ck/Mk) in, the HTTPS API for operators, a one-second
 * tick that recomputes routes and runs the relay plans. The ledger holds
 * what must survive a restart (records, its own decisions); the access
 * list is a file beside it; the network view is rebuilt from the nodes'
 * reports, which arrive every second. */
#include "ctl/controller.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/id.h"
#include "core/log.h"
#include "core/graph.h"
#include "core/token.h"
#include "ctl/ca.h"
#include "ctl/dashboard.h"
#include "ctl/lineage.h"
#include "net/http.h"
#include "net/link.h"
#include "net/tls.h"
#include "proto/ck.h"
#include "proto/config_json.h"
#include "proto/ctl_json.h"
#include "proto/metrics.h"
#include "store/ledger.h"

#define CTL_TICK_MS 250
#define CTL_STALE_NS (5ull * 1000000000ull) /* a report older than this: link state unknown */
#define CTL_MAX_PLANS (sizeof(((struct qkm_ctl_state *)0)->plans) / sizeof(struct qkm_ctl_plan))
/* A node just connected reports links that are still coming up: down is
 * believed only after this long (an alarm at once). */
#define CTL_GRACE_NS (5ull * 1000000000ull)

struct ctl_conn;

/* A node of the topology, as the controller sees it. */
struct ctl_node {
	char id[QKM_NAME_MAX];
	bool ksa;
	struct ctl_conn *conn;            /* open Ck/Mk link, or NULL */
	char *status;                     /* its last report (JSON) */
	uint64_t status_ns;               /* when (monotonic) */
	uint64_t connected_ns;            /* when its link opened (monotonic) */
	size_t n_links;
	struct qkm_link_state links[QKM_MAX_LINKS];
	size_t n_routes;                  /* what it was last sent */
	struct qkm_node_route routes[QKM_MAX_NODES];
	bool routes_sent;
	bool saes_sent;
	int64_t records;                  /* last seq in the ledger */
};

struct ctl_conn {
	struct qkm_controller *c;
	struct qkm_link *l;
	struct ctl_node *node;            /* once open */
	struct ctl_conn *next;
};

/* A compromise order waiting for the nodes' reports (one at a time). */
struct ctl_order {
	char id[64];
	uint32_t req;                     /* frame request ID of its CTL_DELETE */
	struct qkm_http_req *http;        /* NULL once answered or gone */
	char *order;                      /* the CTL_DELETE JSON, for nodes that come back */
	bool sent[QKM_MAX_NODES];
	bool answered[QKM_MAX_NODES];
	struct qkm_jlist *reports;
	char *head;                       /* summary, supplied, lines (JSON members) */
	size_t n_tokens;
	struct event *timeout;
};

struct qkm_controller {
	struct event_base *base;
	struct qkm_ctl_cfg cfg;
	struct qkm_topology topo;
	SSL_CTX *sctx;
	struct qkm_ledger *lg;
	struct qkm_listener *ck;
	struct qkm_http_server *api;
	struct event *tick;
	struct ctl_conn *conns;
	struct ctl_node nodes[QKM_MAX_NODES];
	size_t n_nodes;
	/* access list */
	char saes_path[PATH_MAX + 16];
	struct qkm_sae_entry *saes;       /* QKM_MAX_SAES */
	size_t n_saes;
	/* routing: mode, per-pair modes, manual routes, plan (kept in a file) */
	struct qkm_ctl_state st;
	char state_path[PATH_MAX + 16];
	uint64_t fixed_sent_ns;
	struct ctl_order *order;          /* answer pending */
	char **pending_orders;            /* orders nodes away at the time still need */
	size_t n_pending_orders;
	uint32_t next_order;
	/* /metrics: the own chain's records by event, read up to metrics_seq */
	int64_t metrics_seq;
	size_t n_decisions;
	struct {
		char event[24];
		uint64_t n;
	} decisions[32];
};

static struct ctl_node *node_find(struct qkm_controller *c, const char *id)
{
	for (size_t i = 0; i < c->n_nodes; i++)
		if (strcmp(c->nodes[i].id, id) == 0)
			return &c->nodes[i];
	return NULL;
}

static bool known_node(const struct qkm_controller *c, const char *id)
{
	for (size_t i = 0; i < c->n_nodes; i++)
		if (strcmp(c->nodes[i].id, id) == 0)
			return true;
	return false;
}

/* Records a decision of the controller in its own chain of the ledger. */
static void own_record(struct qkm_controller *c, const char *event, const char *kind,
		       const char *key, const char *peer, const char *fmt, ...)
	__attribute__((format(printf, 6, 7)));
static void own_record(struct qkm_controller *c, const char *event, const char *kind,
		       const char *key, const char *peer, const char *fmt, ...)
{
	struct qkm_lc_event ev = {0};
	va_list ap;
	snprintf(ev.event, sizeof(ev.event), "%s", event);
	snprintf(ev.key_kind, sizeof(ev.key_kind), "%s", kind);
	snprintf(ev.key_id, sizeof(ev.key_id), "%s", key);
	snprintf(ev.peer, sizeof(ev.peer), "%s", peer);
	va_start(ap, fmt);
	vsnprintf(ev.detail, sizeof(ev.detail), fmt, ap);
	va_end(ap);
	ev.ts_ns = qkm_now_ns();
	int rc = qkm_ledger_append_own(c->lg, c->cfg.id, &ev);
	if (rc)
		log_warnx("ledger: cannot record %s %s: %s", event, key, qkm_strerror(rc));
}

/* Keeps the routing state (mode, per-pair modes, manual routes, plan) for
 * the next start. */
static void save_state(struct qkm_controller *c)
{
	int rc = qkm_ctl_state_save(c->state_path, &c->st);
	if (rc)
		log_warnx("cannot write the routing state %s: %s", c->state_path, qkm_strerror(rc));
}

static bool known_node(const struct qkm_controller *c, const char *id);

/* Restores the routing state of the last run, dropping entries that name
 * nodes no longer in the topology. */
static void load_state(struct qkm_controller *c)
{
	struct qkm_ctl_state *st = malloc(sizeof(*st));
	if (!st)
		return;
	int rc = qkm_ctl_state_load(c->state_path, st);
	if (rc == QKM_EIO) {
		free(st);
		return; /* first start */
	}
	if (rc) {
		log_warnx("routing state %s unreadable (%s): starting from ctl.json's mode",
			  c->state_path, qkm_strerror(rc));
		free(st);
		return;
	}
	size_t k = 0;
	for (size_t i = 0; i < st->n_pair_modes; i++)
		if (known_node(c, st->pair_modes[i].from) && known_node(c, st->pair_modes[i].to))
			st->pair_modes[k++] = st->pair_modes[i];
	st->n_pair_modes = k;
	k = 0;
	for (size_t i = 0; i < st->n_manual; i++) {
		bool ok = true;
		for (uint32_t h = 0; h < st->manual[i].n; h++)
			ok = ok && known_node(c, st->manual[i].path[h]);
		if (ok)
			st->manual[k++] = st->manual[i];
	}
	st->n_manual = k;
	k = 0;
	for (size_t i = 0; i < st->n_plans; i++)
		if (known_node(c, st->plans[i].from) && known_node(c, st->plans[i].to))
			st->plans[k++] = st->plans[i];
	st->n_plans = k;
	c->st = *st;
	free(st);
	log_info("routing state restored: mode %s, %zu pair mode(s), %zu manual route(s), %zu "
		 "planned relay(s)", c->st.mode, c->st.n_pair_modes, c->st.n_manual, c->st.n_plans);
}

static int send_frame(struct ctl_node *n, struct qkm_buf *b, int rc, const char *what)
{
	if (!rc && (!n->conn || !n->conn->l))
		rc = QKM_ESTATE;
	if (!rc)
		rc = qkm_link_send(n->conn->l, b->p, b->len);
	if (rc && rc != QKM_ESTATE)
		log_warnx("node %s: cannot send %s: %s", n->id, what, qkm_strerror(rc));
	qkm_buf_fini(b);
	return rc;
}

/* ---- access list (R-SUP-1) ------------------------------------------------ */

static void push_saes(struct qkm_controller *c, struct ctl_node *n)
{
	struct qkm_buf b;
	qkm_buf_init(&b, QKM_FRAME_MAX, false);
	n->saes_sent = send_frame(n, &b, qkm_ck_saes_frame(&b, c->saes, c->n_saes), "access list") == 0;
}

static void push_saes_all(struct qkm_controller *c)
{
	for (size_t i = 0; i < c->n_nodes; i++)
		if (c->nodes[i].conn)
			push_saes(c, &c->nodes[i]);
}

static struct qkm_sae_entry *sae_find(struct qkm_controller *c, const char *id)
{
	for (size_t i = 0; i < c->n_saes; i++)
		if (strcmp(c->saes[i].id, id) == 0)
			return &c->saes[i];
	return NULL;
}

static int saes_load(struct qkm_controller *c)
{
	snprintf(c->saes_path, sizeof(c->saes_path), "%s/access.json", c->cfg.sae_dir);
	if (access(c->saes_path, F_OK) == 0) {
		int rc = qkm_saes_json_load(c->saes_path, c->saes, QKM_MAX_SAES, &c->n_saes);
		if (rc)
			log_warnx("access list %s: %s", c->saes_path, qkm_strerror(rc));
		return rc;
	}
	/* First start: the topology's SAEs. */
	for (size_t i = 0; i < c->topo.n_saes; i++) {
		snprintf(c->saes[i].id, QKM_NAME_MAX, "%s", c->topo.saes[i].id);
		snprintf(c->saes[i].node, QKM_NAME_MAX, "%s", c->topo.saes[i].node);
		c->saes[i].revoked = false;
	}
	c->n_saes = c->topo.n_saes;
	return qkm_saes_json_save(c->saes_path, c->saes, c->n_saes);
}

/* ---- routing (R-REL-6, R-CTL-3, R-CTL-4) ---------------------------------- */

static const char *pair_mode(const struct qkm_controller *c, const char *from, const char *to)
{
	for (size_t i = 0; i < c->st.n_pair_modes; i++)
		if (strcmp(c->st.pair_modes[i].from, from) == 0 && strcmp(c->st.pair_modes[i].to, to) == 0)
			return c->st.pair_modes[i].mode;
	return c->st.mode;
}

/* What a node last reported of one of its links, or NULL (not reported,
 * or too long ago to trust). */
static const struct qkm_link_state *link_seen(const struct qkm_controller *c, const char *node,
					      const char *peer, uint64_t now)
{
	const struct ctl_node *n = NULL;
	for (size_t i = 0; i < c->n_nodes && !n; i++)
		if (strcmp(c->nodes[i].id, node) == 0)
			n = &c->nodes[i];
	if (!n || !n->status || now - n->status_ns > CTL_STALE_NS)
		return NULL;
	for (size_t i = 0; i < n->n_links; i++)
		if (strcmp(n->links[i].peer, peer) == 0)
			return &n->links[i];
	return NULL;
}

static bool end_ok(const struct qkm_controller *c, const char *node, const char *peer, uint64_t now)
{
	const struct qkm_link_state *x = link_seen(c, node, peer, now);
	if (!x)
		return true;
	if (x->alarm)
		return false;
	const struct ctl_node *n = NULL;
	for (size_t i = 0; i < c->n_nodes && !n; i++)
		if (strcmp(c->nodes[i].id, node) == 0)
			n = &c->nodes[i];
	return x->up || (n && now - n->connected_ns < CTL_GRACE_NS);
}

/* A link can carry relays unless an end reports it down or alarmed. */
static bool link_usable(const struct qkm_controller *c, const char *a, const char *b, uint64_t now)
{
	return end_ok(c, a, b, now) && end_ok(c, b, a, now);
}

static const struct qkm_node_route *manual_route(const struct qkm_controller *c, const char *from,
						 const char *to)
{
	for (size_t i = 0; i < c->st.n_manual; i++)
		if (strcmp(c->st.manual[i].path[0], from) == 0 && strcmp(c->st.manual[i].to, to) == 0)
			return &c->st.manual[i];
	return NULL;
}

static void route_str(const struct qkm_node_route *r, char *out, size_t n)
{
	out[0] = '\0';
	for (uint32_t j = 0; j < r->n; j++)
		snprintf(out + strlen(out), n - strlen(out), "%s%s", j ? ">" : "", r->path[j]);
}

/* The key a relay of one batch needs on a hop: data plus its MAC key. */
#define CTL_RELAY_NEED (65536ull + 32)

/* A link's cost now (core/graph.h qkm_link_cost): from the stock each end
 * reports for its own direction (the lower of the two: relays run both
 * ways) and the link's key rate. Not reported yet: its rate alone, so a
 * link nobody has reported on never looks better than one reported low. */
static uint32_t live_cost(const struct qkm_controller *c, size_t i, uint64_t now)
{
	const char *a = c->topo.links[i].a, *b = c->topo.links[i].b;
	const struct qkm_link_state *x = link_seen(c, a, b, now), *y = link_seen(c, b, a, now);
	if (!x && !y)
		return qkm_link_cost(0, c->topo.links[i].rate_bps, CTL_RELAY_NEED);
	uint64_t stock = UINT64_MAX;
	if (x)
		stock = x->stock_bytes;
	if (y && y->stock_bytes < stock)
		stock = y->stock_bytes;
	return qkm_link_cost(stock, c->topo.links[i].rate_bps, CTL_RELAY_NEED);
}

/* The network as a graph: every node and link; live: weighted by stock and
 * rate with unusable links excluded, else every link alike (fewest hops). */
static struct qkm_graph *net_graph(const struct qkm_controller *c, bool live, uint64_t now)
{
	struct qkm_graph *g = qkm_graph_new();
	uint32_t ia, ib, l;
	for (size_t i = 0; g && i < c->n_nodes; i++)
		if (qkm_graph_add_node(g, c->nodes[i].id, &ia))
			goto fail;
	for (size_t i = 0; g && i < c->topo.n_links; i++) {
		const char *a = c->topo.links[i].a, *b = c->topo.links[i].b;
		if (qkm_graph_find(g, a, &ia) || qkm_graph_find(g, b, &ib) ||
		    qkm_graph_add_link(g, ia, ib, live ? live_cost(c, i, now) : QKM_LINK_COST_BASE, &l) ||
		    (live && !link_usable(c, a, b, now) && qkm_graph_link_exclude(g, l, true)))
			goto fail;
	}
	return g;
fail:
	qkm_graph_free(g);
	return NULL;
}

/* The route in t to `to`, as a node route; false if t does not reach it
 * or it is longer than a route may be. */
static bool tree_route(const struct qkm_graph *g, const struct qkm_graph_tree *t, const char *to,
		       struct qkm_node_route *out)
{
	uint32_t path[QKM_MAX_PATH], it;
	size_t n = 0;
	if (qkm_graph_find(g, to, &it) || qkm_graph_tree_path(t, it, path, QKM_MAX_PATH, &n) || n < 2)
		return false;
	memset(out, 0, sizeof(*out));
	snprintf(out->to, sizeof(out->to), "%s", to);
	out->n = (uint32_t)n;
	for (size_t k = 0; k < n; k++)
		snprintf(out->path[k], QKM_NAME_MAX, "%s", qkm_graph_name(g, path[k]));
	return true;
}

/* The cost of a route now (sum of its links' live costs), or UINT64_MAX if
 * a hop is not a link of the topology or is unusable now. */
static uint64_t route_cost(const struct qkm_controller *c, const struct qkm_node_route *r,
			   uint64_t now)
{
	uint64_t sum = 0;
	for (uint32_t h = 0; h + 1 < r->n; h++) {
		size_t i = 0;
		while (i < c->topo.n_links &&
		       !((strcmp(c->topo.links[i].a, r->path[h]) == 0 &&
			  strcmp(c->topo.links[i].b, r->path[h + 1]) == 0) ||
			 (strcmp(c->topo.links[i].b, r->path[h]) == 0 &&
			  strcmp(c->topo.links[i].a, r->path[h + 1]) == 0)))
			i++;
		if (i == c->topo.n_links ||
		    !link_usable(c, c->topo.links[i].a, c->topo.links[i].b, now))
			return UINT64_MAX;
		uint32_t cost = live_cost(c, i, now);
		if (cost == QKM_LINK_COST_INF)
			return UINT64_MAX;
		sum += cost;
	}
	return sum;
}

/* A route is starving when a hop's reported stock (the lower direction)
 * cannot carry two more relays: below the threshold traffic should move
 * (R-CTL-3). A hop nobody reported on is not starving. */
#define CTL_STARVE_BYTES (2ull * CTL_RELAY_NEED)
static bool route_starving(const struct qkm_controller *c, const struct qkm_node_route *r,
			   uint64_t now)
{
	for (uint32_t h = 0; h + 1 < r->n; h++) {
		const struct qkm_link_state *x = link_seen(c, r->path[h], r->path[h + 1], now),
					    *y = link_seen(c, r->path[h + 1], r->path[h], now);
		if ((x && x->stock_bytes < CTL_STARVE_BYTES) || (y && y->stock_bytes < CTL_STARVE_BYTES))
			return true;
	}
	return false;
}

static bool route_eq(const struct qkm_node_route *x, const struct qkm_node_route *y)
{
	return x->n == y->n && strcmp(x->to, y->to) == 0 &&
	       memcmp(x->path, y->path, sizeof(x->path[0]) * x->n) == 0;
}

/* Routes of every node, one per node it reaches only by relay: the
 * operator's where set; in manual mode otherwise the static shortest path;
 * else the least-cost route over the links usable now (alarmed or down
 * ones excluded, cost from stock and rate). A destination unreachable over
 * usable links keeps its route. Sent to a node when its table changes. */
static void compute_routes(struct qkm_controller *c, uint64_t now)
{
	struct qkm_graph *live = net_graph(c, true, now), *flat = net_graph(c, false, now);
	struct qkm_graph_tree tl, tf;
	qkm_graph_tree_init(&tl);
	qkm_graph_tree_init(&tf);
	struct qkm_node_route *next = calloc(QKM_MAX_NODES, sizeof(*next));
	if (!live || !flat || !next)
		goto out;
	for (size_t i = 0; i < c->n_nodes; i++) {
		struct ctl_node *n = &c->nodes[i];
		uint32_t self;
		size_t nn = 0;
		if (!n->conn || qkm_graph_find(flat, n->id, &self) ||
		    qkm_graph_routes_from(flat, self, &tf) || qkm_graph_routes_from(live, self, &tl))
			continue;
		for (size_t d = 0; d < c->n_nodes; d++) {
			struct qkm_node_route st;
			const char *to = c->nodes[d].id;
			/* Relay destinations: reached, and not over one link. */
			if (d == i || !tree_route(flat, &tf, to, &st) || st.n == 2)
				continue;
			const struct qkm_node_route *man = manual_route(c, n->id, to);
			struct qkm_node_route *pick = &next[nn++];
			*pick = st;
			if (man) {
				*pick = *man;
			} else if (strcmp(pair_mode(c, n->id, to), "manual") != 0) {
				/* What the node has: the last route sent, or (at
				 * first) the static shortest path its node.json holds. */
				const struct qkm_node_route *cur = &st;
				for (size_t k = 0; n->routes_sent && k < n->n_routes; k++)
					if (strcmp(n->routes[k].to, to) == 0)
						cur = &n->routes[k];
				if (!tree_route(live, &tl, to, pick)) {
					/* unreachable now: keep what it has */
					*pick = *cur;
				} else if (!route_eq(cur, pick)) {
					/* Hysteresis: a usable route is left only when a
					 * hop of it is starving and the best one is not,
					 * or the best one is shorter and not starving (the
					 * short way back after an alarm); so routes do not
					 * swing with every relay's draw on a stock. */
					bool usable = route_cost(c, cur, now) != UINT64_MAX;
					bool best_ok = !route_starving(c, pick, now);
					if (usable && !(best_ok && (route_starving(c, cur, now) ||
								    pick->n < cur->n)))
						*pick = *cur;
				}
			}
		}
		bool same = n->routes_sent && nn == n->n_routes;
		for (size_t k = 0; same && k < nn; k++)
			same = route_eq(&next[k], &n->routes[k]);
		if (same)
			continue;
		struct qkm_buf b;
		qkm_buf_init(&b, QKM_FRAME_MAX, false);
		if (send_frame(n, &b, qkm_ck_routes_frame(&b, next, nn), "routes"))
			continue;
		for (size_t k = 0; k < nn && n->routes_sent; k++) {
			bool changed = true;
			for (size_t j = 0; j < n->n_routes && changed; j++)
				changed = !route_eq(&n->routes[j], &next[k]);
			if (!changed)
				continue;
			char p[QKM_MAX_PATH * (QKM_NAME_MAX + 1)];
			route_str(&next[k], p, sizeof(p));
			log_info("route %s -> %s now %s", n->id, next[k].to, p);
			own_record(c, "route-set", "route", next[k].to, n->id, "%s -> %s: %s (mode %s)",
				   n->id, next[k].to, p, pair_mode(c, n->id, next[k].to));
		}
		memcpy(n->routes, next, nn * sizeof(next[0]));
		n->n_routes = nn;
		n->routes_sent = true;
	}
out:
	qkm_graph_tree_fini(&tl);
	qkm_graph_tree_fini(&tf);
	qkm_graph_free(live);
	qkm_graph_free(flat);
	free(next);
}

/* ---- relay plans (fixed-rate, scheduled) ---------------------------------- */

/* Sends one relay instruction: relay bytes to `to` now (bytes > 0), or at
 * rate bytes/s from now on (rate; 0 = back to the node's own thresholds). */
static int send_relay(struct qkm_controller *c, struct ctl_node *n, const char *to, uint64_t bytes,
		      uint64_t rate, bool set_rate)
{
	struct qkm_buf b;
	qkm_buf_init(&b, 4096, false);
	(void)c;
	return send_frame(n, &b,
			  qkm_ck_relay_frame(&b, to, set_rate, rate,
					     (uint32_t)(bytes > UINT32_MAX ? UINT32_MAX : bytes)),
			  "relay instruction");
}

/* The fixed rate of a pair: what the slowest hop of its route can carry,
 * shared by every route over that hop, in each direction half of it. */
static uint64_t fixed_rate(struct qkm_controller *c, const struct qkm_node_route *rt)
{
	uint64_t best = UINT64_MAX;
	for (uint32_t h = 0; h + 1 < rt->n; h++) {
		uint64_t rate = 0;
		unsigned users = 0;
		for (size_t i = 0; i < c->topo.n_links; i++) {
			const char *a = c->topo.links[i].a, *b = c->topo.links[i].b;
			if ((strcmp(a, rt->path[h]) == 0 && strcmp(b, rt->path[h + 1]) == 0) ||
			    (strcmp(b, rt->path[h]) == 0 && strcmp(a, rt->path[h + 1]) == 0))
				rate = c->topo.links[i].rate_bps / 8;
		}
		for (size_t i = 0; i < c->n_nodes; i++)
			for (size_t k = 0; k < c->nodes[i].n_routes; k++) {
				const struct qkm_node_route *o = &c->nodes[i].routes[k];
				for (uint32_t j = 0; j + 1 < o->n; j++)
					if ((strcmp(o->path[j], rt->path[h]) == 0 &&
					     strcmp(o->path[j + 1], rt->path[h + 1]) == 0) ||
					    (strcmp(o->path[j + 1], rt->path[h]) == 0 &&
					     strcmp(o->path[j], rt->path[h + 1]) == 0))
						users++;
			}
		/* Half of a link's key is each direction's; an OTP relay of B
		 * bytes costs B + 32 of it. */
		uint64_t share = rate / 2 / (users ? users : 1);
		if (share < best)
			best = share;
	}
	return best == UINT64_MAX ? 0 : best;
}

static bool has_sae(const struct qkm_controller *c, const char *node)
{
	for (size_t i = 0; i < c->n_saes; i++)
		if (!c->saes[i].revoked && strcmp(c->saes[i].node, node) == 0)
			return true;
	return false;
}

/* Rates to every node in fixed-rate mode (re-sent every 10 s and on
 * reconnect, so a restarted node learns them); 0 elsewhere. */
static void run_plans(struct qkm_controller *c, uint64_t now_mono, bool force)
{
	if (force || now_mono - c->fixed_sent_ns >= 10ull * 1000000000ull) {
		c->fixed_sent_ns = now_mono;
		for (size_t i = 0; i < c->n_nodes; i++) {
			struct ctl_node *n = &c->nodes[i];
			if (!n->conn || !has_sae(c, n->id))
				continue;
			for (size_t k = 0; k < n->n_routes; k++) {
				const char *to = n->routes[k].to;
				if (!has_sae(c, to))
					continue;
				const char *mode = pair_mode(c, n->id, to);
				uint64_t rate = strcmp(mode, "fixed-rate") == 0
							? fixed_rate(c, &n->routes[k])
						: strcmp(mode, "scheduled") == 0 ? UINT64_MAX
										 : 0;
				/* UINT64_MAX: no relay ahead of demand but on the plan. */
				(void)send_relay(c, n, to, 0, rate, true);
			}
		}
	}
	uint64_t wall = qkm_now_ns();
	for (size_t i = 0; i < c->st.n_plans; i++) {
		struct qkm_ctl_plan *p = &c->st.plans[i];
		if (!p->at_ns || p->at_ns > wall)
			continue;
		struct ctl_node *n = node_find(c, p->from);
		if (!n || !n->conn)
			continue; /* run it when the node is back */
		if (send_relay(c, n, p->to, p->bytes, 0, false) == 0) {
			log_info("schedule: %s relays %llu bytes to %s", p->from,
				 (unsigned long long)p->bytes, p->to);
			own_record(c, "relay-scheduled", "plan", p->to, p->from,
				   "%s relays %llu bytes to %s (scheduled)", p->from,
				   (unsigned long long)p->bytes, p->to);
			p->at_ns = 0;
		}
	}
	/* Drop plans that ran. */
	size_t k = 0;
	for (size_t i = 0; i < c->st.n_plans; i++)
		if (c->st.plans[i].at_ns)
			c->st.plans[k++] = c->st.plans[i];
	if (k != c->st.n_plans) {
		c->st.n_plans = k;
		save_state(c);
	}
}

/* ---- node links ------------------------------------------------------------ */

static void order_send(struct qkm_controller *c, struct ctl_node *n, const char *json, uint32_t req);
static void on_deleted(struct qkm_controller *c, struct ctl_node *n, const struct qkm_frame *f);

static void conn_free(struct qkm_controller *c, struct ctl_conn *x)
{
	for (struct ctl_conn **pp = &c->conns; *pp; pp = &(*pp)->next)
		if (*pp == x) {
			*pp = x->next;
			break;
		}
	if (x->node && x->node->conn == x)
		x->node->conn = NULL;
	free(x);
}

static void on_records(struct qkm_controller *c, struct ctl_node *n, const struct qkm_frame *f)
{
	struct qkm_lc_event *evs = calloc(QKM_CK_RECORDS_MAX, sizeof(*evs));
	size_t ne = 0, stored = 0;
	int rc = evs ? qkm_ck_records_parse(f, evs, QKM_CK_RECORDS_MAX, &ne) : QKM_ENOMEM;
	if (!rc && ne)
		rc = qkm_ledger_append(c->lg, n->id, evs, ne, &stored);
	if (rc) {
		log_warnx("node %s: life-cycle records refused: %s", n->id, qkm_strerror(rc));
		/* Say again where the ledger ends; the node resends from there. */
		int64_t last = 0;
		if (qkm_ledger_last_seq(c->lg, n->id, &last) == 0) {
			struct qkm_buf b;
			qkm_buf_init(&b, 64, false);
			(void)send_frame(n, &b, qkm_ck_seq_frame(&b, QKM_MSG_CTL_RECORDS_FROM, last),
					 "records position");
		}
		free(evs);
		return;
	}
	if (ne)
		n->records = evs[ne - 1].seq;
	free(evs);
	struct qkm_buf b;
	qkm_buf_init(&b, 64, false);
	(void)send_frame(n, &b, qkm_ck_seq_frame(&b, QKM_MSG_CTL_RECORDS_ACK, n->records),
			 "records acknowledgement");
}

static void on_status(struct qkm_controller *c, struct ctl_node *n, const struct qkm_frame *f)
{
	const char *js;
	size_t len;
	struct qkm_link_state *ls = calloc(QKM_MAX_LINKS, sizeof(*ls));
	size_t nl = 0;
	if (!ls || qkm_ck_json_parse(f, &js, &len) ||
	    qkm_links_from_status(js, len, ls, QKM_MAX_LINKS, &nl)) {
		log_warnx("node %s: malformed status report ignored", n->id);
		free(ls);
		return;
	}
	char *copy = malloc(len + 1);
	if (!copy) {
		free(ls);
		return;
	}
	memcpy(copy, js, len);
	copy[len] = '\0';
	for (size_t i = 0; i < nl; i++) {
		const struct qkm_link_state *old = NULL;
		for (size_t j = 0; j < n->n_links; j++)
			if (strcmp(n->links[j].link, ls[i].link) == 0)
				old = &n->links[j];
		if (n->status && old && (old->alarm != ls[i].alarm || old->up != ls[i].up))
			log_info("link %s (reported by %s): %s%s", ls[i].link, n->id,
				 ls[i].up ? "up" : "down", ls[i].alarm ? ", alarm" : "");
	}
	free(n->status);
	n->status = copy;
	n->status_ns = qkm_mono_ns();
	memcpy(n->links, ls, nl * sizeof(*ls));
	n->n_links = nl;
	free(ls);
	/* React at once: a new alarm moves relays off its link now. */
	compute_routes(c, n->status_ns);
}

static void ck_on_open(struct qkm_link *l, void *arg)
{
	struct ctl_conn *x = arg;
	struct qkm_controller *c = x->c;
	const char *role = qkm_link_peer_role(l), *name = qkm_link_peer_name(l);
	struct ctl_node *n = node_find(c, name);
	if (strcmp(role, "node") != 0 || !n) {
		log_warnx("Ck: %s '%s' is not a node of this network; closing", role, name);
		qkm_link_close(l, QKM_EPERM, "not a node of this network");
		return;
	}
	if (n->conn) {
		log_info("node %s: a new link replaces the old one", n->id);
		qkm_link_close(n->conn->l, QKM_ESTATE, "replaced by a new link");
		n->conn->node = NULL;
	}
	x->node = n;
	n->conn = x;
	n->routes_sent = false;
	n->connected_ns = qkm_mono_ns();
	log_info("node %s: link up", n->id);
	int64_t last = 0;
	if (qkm_ledger_last_seq(c->lg, n->id, &last))
		log_warnx("node %s: ledger position unknown", n->id);
	n->records = last;
	struct qkm_buf b;
	qkm_buf_init(&b, 64, false);
	(void)send_frame(n, &b, qkm_ck_seq_frame(&b, QKM_MSG_CTL_RECORDS_FROM, last),
			 "records position");
	push_saes(c, n);
	/* Compromise orders given while it was away (idempotent: a node
	 * deletes what it still holds). */
	for (size_t i = 0; i < c->n_pending_orders; i++)
		order_send(c, n, c->pending_orders[i], 0);
	compute_routes(c, qkm_mono_ns());
	run_plans(c, qkm_mono_ns(), true);
}

static void ck_on_frame(struct qkm_link *l, const struct qkm_frame *f, void *arg)
{
	struct ctl_conn *x = arg;
	if (!x->node)
		return;
	switch (f->type) {
	case QKM_MSG_CTL_STATUS:
		on_status(x->c, x->node, f);
		break;
	case QKM_MSG_CTL_RECORDS:
		on_records(x->c, x->node, f);
		break;
	case QKM_MSG_CTL_DELETED:
		on_deleted(x->c, x->node, f);
		break;
	default:
		break;
	}
}

static void ck_on_close(struct qkm_link *l, int err, const char *why, void *arg)
{
	struct ctl_conn *x = arg;
	if (x->node)
		log_info("node %s: link down (%s)", x->node->id, why ? why : qkm_strerror(err));
	conn_free(x->c, x);
}

static const struct qkm_link_cbs ck_cbs = {ck_on_open, ck_on_frame, ck_on_close};

static void ck_on_accept(int fd, void *arg)
{
	struct qkm_controller *c = arg;
	struct ctl_conn *x = calloc(1, sizeof(*x));
	if (!x) {
		close(fd);
		return;
	}
	x->c = c;
	x->l = qkm_link_accept(c->base, c->sctx, c->cfg.id, fd, &ck_cbs, x);
	if (!x->l) {
		free(x);
		return;
	}
	x->next = c->conns;
	c->conns = x;
}

/* ---- API ---------------------------------------------------------------- */

static void reply_owned(struct qkm_http_req *req, char *json)
{
	if (json)
		qkm_http_reply_json(req, 200, json);
	else
		qkm_http_reply_error(req, 500, "out of memory");
	free(json);
}

static const char *query_get(const char *query, const char *key, char *out, size_t outsz)
{
	if (!query)
		return NULL;
	size_t kl = strlen(key);
	for (const char *p = query; p && *p;) {
		if (strncmp(p, key, kl) == 0 && p[kl] == '=') {
			const char *v = p + kl + 1, *e = strchr(v, '&');
			size_t n = e ? (size_t)(e - v) : strlen(v), k = 0;
			/* Percent-decoded ('+' is a space); a bad escape or a NUL
			 * makes no value. */
			for (size_t i = 0; i < n; i++) {
				if (k + 1 >= outsz)
					return NULL;
				char ch = v[i];
				if (ch == '%') {
					int hi = i + 2 < n ? qkm_hexval(v[i + 1]) : -1;
					int lo = hi >= 0 ? qkm_hexval(v[i + 2]) : -1;
					if (hi < 0 || lo < 0 || (hi | lo) == 0)
						return NULL;
					ch = (char)(hi << 4 | lo);
					i += 2;
				} else if (ch == '+') {
					ch = ' ';
				}
				out[k++] = ch;
			}
			out[k] = '\0';
			return out;
		}
		p = strchr(p, '&');
		if (p)
			p++;
	}
	return NULL;
}

static void api_status(struct qkm_controller *c, struct qkm_http_req *req)
{
	struct qkm_jlist *l = qkm_jlist_new();
	uint64_t now = qkm_mono_ns();
	int rc = l ? 0 : QKM_ENOMEM;
	for (size_t i = 0; !rc && i < c->n_nodes; i++) {
		struct ctl_node *n = &c->nodes[i];
		char routes[(size_t)QKM_MAX_NODES * 64] = "";
		for (size_t k = 0; k < n->n_routes; k++) {
			char p[QKM_MAX_PATH * (QKM_NAME_MAX + 1)];
			route_str(&n->routes[k], p, sizeof(p));
			snprintf(routes + strlen(routes), sizeof(routes) - strlen(routes),
				 "%s{\"to\":\"%s\",\"path\":\"%s\",\"mode\":\"%s\"}", k ? "," : "",
				 n->routes[k].to, p, pair_mode(c, n->id, n->routes[k].to));
		}
		size_t sz = 512 + strlen(routes) + (n->status ? strlen(n->status) : 0);
		char *o = malloc(sz);
		if (!o) {
			rc = QKM_ENOMEM;
			break;
		}
		snprintf(o, sz,
			 "{\"id\":\"%s\",\"connected\":%s,\"report_age_ms\":%lld,\"records\":%lld,"
			 "\"routes\":[%s],\"status\":%s}",
			 n->id, n->conn ? "true" : "false",
			 n->status ? (long long)((now - n->status_ns) / 1000000) : -1LL,
			 (long long)n->records, routes, n->status ? n->status : "null");
		rc = qkm_jlist_add_json(l, o);
		free(o);
	}
	char extra[256];
	snprintf(extra, sizeof(extra), "{\"network\":\"%s\",\"controller\":\"%s\",\"mode\":\"%s\"}",
		 c->topo.name, c->cfg.id, c->st.mode);
	if (rc) {
		qkm_http_reply_error(req, 500, "status unavailable");
		qkm_jlist_free(l);
		return;
	}
	reply_owned(req, qkm_jlist_dump(l, "nodes", extra));
	qkm_jlist_free(l);
}

/* ---- metrics and health (issue #8) --------------------------------------- */

/* Counts one of the controller's own records by event (decisions below). */
static int decision_add(const char *node, const struct qkm_lc_event *ev, void *arg)
{
	struct qkm_controller *c = arg;
	size_t i = 0, max = sizeof(c->decisions) / sizeof(c->decisions[0]);
	c->metrics_seq = ev->seq;
	while (i < c->n_decisions && strcmp(c->decisions[i].event, ev->event) != 0)
		i++;
	if (i == c->n_decisions) {
		if (i == max)
			return 0; /* an event past the table: not counted */
		snprintf(c->decisions[c->n_decisions++].event, sizeof(c->decisions[0].event), "%s",
			 ev->event);
	}
	c->decisions[i].n++;
	return 0;
}

/* qkm_ledger_nodes walk: each chain's last seq, when w is set. */
struct chain_walk {
	struct qkm_prom *w;
	const char *id;
};

static int chain_seq(const struct qkm_ledger_node *ln, void *arg)
{
	struct chain_walk *cw = arg;
	if (cw->w)
		qkm_prom_u64(cw->w, "qkm_ctl_ledger_last_seq", (uint64_t)ln->last_seq, "controller",
			     cw->id, "node", ln->node, QKM_PROM_END);
	return 0;
}

/* GET /metrics (Prometheus text; docs/operations.md "Metrics and health"),
 * /healthz (the loop answers: 200 "ok") and /readyz (200 once the ledger
 * answers a read; 503 with the reason otherwise). Decision counts come from
 * the controller's own chain in the ledger, so they survive a restart. */
static void api_metrics_health(struct qkm_controller *c, struct qkm_http_req *req)
{
	static const char *const known[] = {
		"route-set",	  "route-manual",    "route-cleared",  "mode-set",
		"schedule-added", "relay-scheduled", "sae-registered", "sae-revoked",
		"compromise",	  "compromise-done", "controller-started",
	};
	const char *p = req->path, *id = c->cfg.id;
	struct chain_walk cw = {NULL, id};
	if (strcmp(p, "/healthz") == 0) {
		qkm_http_reply(req, 200, "text/plain; charset=utf-8", "ok\n", 3, false);
		return;
	}
	if (strcmp(p, "/readyz") == 0) {
		bool ok = qkm_ledger_nodes(c->lg, chain_seq, &cw) == 0;
		qkm_http_reply_json(req, ok ? 200 : 503,
				    ok ? "{\"ready\":true,\"reasons\":[]}"
				       : "{\"ready\":false,\"reasons\":"
					 "[\"the ledger is not answering\"]}");
		return;
	}
	uint64_t now = qkm_mono_ns();
	struct qkm_buf b;
	struct qkm_prom w;
	qkm_buf_init(&b, 4u << 20, false);
	qkm_prom_init(&w, &b);
	cw.w = &w;
	qkm_prom_family(&w, "qkm_ctl_ledger_last_seq", "gauge",
			"Last seq of each chain in the ledger (its record count); the "
			"controller's own chain has its name.");
	bool ready = qkm_ledger_nodes(c->lg, chain_seq, &cw) == 0;
	qkm_prom_family(&w, "qkm_ctl_ready", "gauge", "1 while /readyz answers 200.");
	qkm_prom_u64(&w, "qkm_ctl_ready", ready ? 1 : 0, "controller", id, QKM_PROM_END);
	if (c->n_decisions == 0) /* the events every controller may record: 0 shows */
		for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
			snprintf(c->decisions[c->n_decisions++].event,
				 sizeof(c->decisions[0].event), "%s", known[i]);
	if (qkm_ledger_records(c->lg, id, c->metrics_seq, NULL, NULL, 0, decision_add, c))
		log_warnx("metrics: the controller's own records could not be read");
	qkm_prom_family(&w, "qkm_ctl_node_connected", "gauge",
			"1 while the node's Ck/Mk link to the controller is open.");
	for (size_t i = 0; i < c->n_nodes; i++)
		qkm_prom_u64(&w, "qkm_ctl_node_connected", c->nodes[i].conn ? 1 : 0, "controller",
			     id, "node", c->nodes[i].id, QKM_PROM_END);
	qkm_prom_family(&w, "qkm_ctl_node_report_age_seconds", "gauge",
			"Seconds since the node's last status report (nodes that reported since "
			"the controller started).");
	for (size_t i = 0; i < c->n_nodes; i++)
		if (c->nodes[i].status)
			qkm_prom_f64(&w, "qkm_ctl_node_report_age_seconds",
				     (double)(now - c->nodes[i].status_ns) / 1e9, "controller", id,
				     "node", c->nodes[i].id, QKM_PROM_END);
	qkm_prom_family(&w, "qkm_ctl_route_info", "gauge",
			"1 for each relay route the controller gave a node: from, to, the path "
			"(nodes joined by '>') and its rerouting mode.");
	for (size_t i = 0; i < c->n_nodes; i++) {
		const struct ctl_node *n = &c->nodes[i];
		for (size_t k = 0; k < n->n_routes; k++) {
			char path[QKM_MAX_PATH * (QKM_NAME_MAX + 1)];
			route_str(&n->routes[k], path, sizeof(path));
			qkm_prom_u64(&w, "qkm_ctl_route_info", 1, "controller", id, "from", n->id,
				     "to", n->routes[k].to, "path", path, "mode",
				     pair_mode(c, n->id, n->routes[k].to), QKM_PROM_END);
		}
	}
	qkm_prom_family(&w, "qkm_ctl_link_usable", "gauge",
			"1 if routing may use the link now (neither end reports it down or "
			"alarmed).");
	for (size_t i = 0; i < c->topo.n_links; i++) {
		char link[2 * QKM_NAME_MAX + 1];
		snprintf(link, sizeof(link), "%s-%s", c->topo.links[i].a, c->topo.links[i].b);
		qkm_prom_u64(&w, "qkm_ctl_link_usable",
			     link_usable(c, c->topo.links[i].a, c->topo.links[i].b, now) ? 1 : 0,
			     "controller", id, "link", link, QKM_PROM_END);
	}
	size_t revoked = 0;
	for (size_t i = 0; i < c->n_saes; i++)
		revoked += c->saes[i].revoked;
	qkm_prom_family(&w, "qkm_ctl_saes", "gauge", "SAEs in the access list, by state.");
	qkm_prom_u64(&w, "qkm_ctl_saes", c->n_saes - revoked, "controller", id, "state", "active",
		     QKM_PROM_END);
	qkm_prom_u64(&w, "qkm_ctl_saes", revoked, "controller", id, "state", "revoked",
		     QKM_PROM_END);
	qkm_prom_family(&w, "qkm_ctl_decisions_total", "counter",
			"The controller's own records, by event: route-set (a route changed), "
			"sae-registered, sae-revoked, compromise (an order), mode-set, ...; ever.");
	for (size_t i = 0; i < c->n_decisions; i++)
		qkm_prom_u64(&w, "qkm_ctl_decisions_total", c->decisions[i].n, "controller", id,
			     "event", c->decisions[i].event, QKM_PROM_END);
	qkm_prom_family(&w, "qkm_ctl_compromise_orders_pending", "gauge",
			"Compromise orders still owed to nodes that were away when given.");
	qkm_prom_u64(&w, "qkm_ctl_compromise_orders_pending", c->n_pending_orders, "controller",
		     id, QKM_PROM_END);
	struct qkm_ledger_audit_stats as;
	qkm_ledger_audit_stats(c->lg, &as);
	qkm_prom_family(&w, "qkm_ctl_audits_total", "counter",
			"Ledger audits run since the controller started.");
	qkm_prom_u64(&w, "qkm_ctl_audits_total", as.runs, "controller", id, QKM_PROM_END);
	qkm_prom_family(&w, "qkm_ctl_audits_failed_total", "counter",
			"Ledger audits that ended in an error (no result) since the controller "
			"started.");
	qkm_prom_u64(&w, "qkm_ctl_audits_failed_total", as.failed, "controller", id, QKM_PROM_END);
	qkm_prom_family(&w, "qkm_ctl_audit_problems_total", "counter",
			"Audit findings, summed over the audits run since the controller started.");
	qkm_prom_u64(&w, "qkm_ctl_audit_problems_total", as.problems, "controller", id,
		     QKM_PROM_END);
	qkm_prom_family(&w, "qkm_ctl_audit_last_problems", "gauge",
			"Findings of the last audit (0 before any).");
	qkm_prom_u64(&w, "qkm_ctl_audit_last_problems", (uint64_t)as.last_problems, "controller",
		     id, QKM_PROM_END);
	if (qkm_prom_end(&w))
		qkm_http_reply_error(req, 500, "metrics unavailable (out of memory)");
	else
		qkm_http_reply(req, 200, "text/plain; version=0.0.4; charset=utf-8", b.p, b.len,
			       false);
	qkm_buf_fini(&b);
}

static int rec_add(const char *node, const struct qkm_lc_event *ev, void *arg)
{
	return qkm_jlist_add_record(arg, node, ev);
}

/* The records of a KSA-key's round, those that name the key kept, up to
 * the limit: the ledger is walked without one, as its limit would count
 * the round's other records too. 1 stops the walk. */
struct rec_key {
	struct qkm_jlist *l;
	const char *key;
	unsigned n, limit;
};

static int rec_add_key(const char *node, const struct qkm_lc_event *ev, void *arg)
{
	struct rec_key *w = arg;
	if (!qkm_key_id_names(ev->key_id, w->key) && !strstr(ev->detail, w->key))
		return 0;
	int rc = qkm_jlist_add_record(w->l, node, ev);
	return rc ? rc : ++w->n >= w->limit ? 1 : 0;
}

/* GET /records?node=N&key=K&event=E&after=SEQ&limit=L; K: text in key_id
 * or detail, or a KSA-key's UUID (qkm_key_id_names). */
static void api_records(struct qkm_controller *c, struct qkm_http_req *req)
{
	char node[QKM_NAME_MAX], key[128], event[32], after[24], limit[24];
	const char *q = req->query;
	const char *nd = query_get(q, "node", node, sizeof(node));
	const char *k = query_get(q, "key", key, sizeof(key));
	const char *ev = query_get(q, "event", event, sizeof(event));
	long long a = query_get(q, "after", after, sizeof(after)) ? strtoll(after, NULL, 10) : 0;
	long lim = query_get(q, "limit", limit, sizeof(limit)) ? strtol(limit, NULL, 10) : 1000;
	if (lim <= 0 || lim > 100000)
		lim = 1000;
	struct qkm_jlist *l = qkm_jlist_new();
	/* A KSA-key's UUID: its round's records, then those naming it (the
	 * key itself, or a run that holds it). */
	char tok[QKM_TOKEN_MAX];
	struct rec_key rk = {l, k, 0, (unsigned)lim};
	bool ksa = k && qkm_token_of_ksa_key(k, tok);
	int rc = QKM_ENOMEM;
	if (l && ksa)
		rc = qkm_ledger_records(c->lg, nd, a, tok, ev, 0, rec_add_key, &rk);
	else if (l)
		rc = qkm_ledger_records(c->lg, nd, a, k, ev, (unsigned)lim, rec_add, l);
	if (rc < 0) {
		qkm_http_reply_error(req, 500, "records unavailable");
		qkm_jlist_free(l);
		return;
	}
	reply_owned(req, qkm_jlist_dump(l, NULL, NULL));
	qkm_jlist_free(l);
}

struct audit_walk {
	struct qkm_jlist *chains, *problems;
	int rc;
};

static const char *problem_text(const char *what)
{
	return strcmp(what, "changed") == 0    ? "the record was edited after it was stored"
	       : strcmp(what, "bad-link") == 0 ? "the chain is broken here: the record before it "
						 "was rewritten, or this one forged"
	       : strcmp(what, "missing") == 0  ? "records were deleted"
	       : strcmp(what, "extra") == 0    ? "records were inserted by hand"
					       : "inconsistent";
}

static void audit_problem(const char *node, int64_t seq, int64_t seq_last, const char *what,
			  void *arg)
{
	struct audit_walk *w = arg;
	char o[600], range[64];
	if (seq_last != seq)
		snprintf(range, sizeof(range), "records %lld..%lld", (long long)seq, (long long)seq_last);
	else
		snprintf(range, sizeof(range), "record %lld", (long long)seq);
	snprintf(o, sizeof(o),
		 "{\"node\":\"%s\",\"seq\":%lld,\"seq_last\":%lld,\"what\":\"%s\","
		 "\"message\":\"%s %s: %s (%s)\"}",
		 node, (long long)seq, (long long)seq_last, what, node, range, what,
		 problem_text(what));
	if (!w->rc)
		w->rc = qkm_jlist_add_json(w->problems, o);
}

static void audit_checked(const struct qkm_ledger_checked *ck, void *arg)
{
	struct audit_walk *w = arg;
	char o[400];
	snprintf(o, sizeof(o),
		 "{\"node\":\"%s\",\"own\":%s,\"records\":%lld,\"last_seq\":%lld,"
		 "\"state\":\"%s\"}",
		 ck->node, ck->own ? "true" : "false", (long long)ck->records,
		 (long long)ck->head_seq, ck->problems ? "FAILED" : "intact");
	if (!w->rc)
		w->rc = qkm_jlist_add_json(w->chains, o);
}

/* GET /audit: every chain of the ledger recomputed (R-LC-2). */
static void api_audit(struct qkm_controller *c, struct qkm_http_req *req)
{
	struct audit_walk w = {qkm_jlist_new(), qkm_jlist_new(), 0};
	int n = w.chains && w.problems ? qkm_ledger_audit(c->lg, audit_problem, audit_checked, &w)
				       : QKM_ENOMEM;
	char *probs = n >= 0 && !w.rc ? qkm_jlist_dump(w.problems, "problems", NULL) : NULL;
	if (!probs) {
		qkm_http_reply_error(req, 500, "audit failed");
	} else {
		/* {"problems": [...]} + clean + chains */
		size_t sz = strlen(probs) + 64;
		char *extra = malloc(sz);
		if (extra) {
			snprintf(extra, sz, "%.*s,\"clean\":%s}", (int)strlen(probs) - 1, probs,
				 n == 0 ? "true" : "false");
			reply_owned(req, qkm_jlist_dump(w.chains, "chains", extra));
		} else {
			qkm_http_reply_error(req, 500, "out of memory");
		}
		free(extra);
		if (n)
			log_warnx("audit: %d problem(s) in the ledger", n);
	}
	free(probs);
	qkm_jlist_free(w.chains);
	qkm_jlist_free(w.problems);
}

/* A request body's fields (proto/ctl_json.h qkm_req_fields); false once
 * it has answered 400 naming what is wrong. */
static bool body_fields(struct qkm_http_req *req, const char *const *keys,
			char (*f)[QKM_NAME_MAX * 2], const char *arr_key, char (*arr)[QKM_NAME_MAX],
			size_t max_arr, size_t *n_arr)
{
	char err[300];
	if (qkm_req_fields(req->body, req->body_len, keys, f, arr_key, arr, max_arr, n_arr, err,
			   sizeof(err)) == 0)
		return true;
	qkm_http_reply_error(req, 400, err);
	return false;
}

/* ---- trace and compromise (R-LC-2, R-LC-3) ------------------------------- */

static const char *stage_of(const struct qkm_lc_event *ev)
{
	if (strcmp(ev->key_kind, "qkd") == 0 || strcmp(ev->key_kind, "kma") == 0)
		return "KMA-key";
	if (strcmp(ev->key_kind, "relayed") == 0)
		return "relay";
	if (strcmp(ev->key_kind, "ksa") == 0)
		return "KSA-key";
	return ev->key_kind;
}

struct lines {
	struct qkm_jlist *recs, *lines, *supplied;
	size_t n, hops, nodes_seen;
	char nodes[QKM_MAX_NODES][QKM_NAME_MAX];
	int rc;
	const char *key;      /* a trace of this KSA-key: its round's other runs left out */
	char key_tok[QKM_TOKEN_MAX];
};

static int line_rec(const char *node, const struct qkm_lc_event *ev, void *arg)
{
	struct lines *w = arg;
	char ts[32], line[1400], tok[QKM_TOKEN_MAX];
	/* The records of its round name other keys too (other requests', or
	 * the rest of a run of stock): only those that name this one. */
	if (w->key && strcmp(ev->key_kind, "ksa") == 0 && qkm_token_of(ev->key_id, tok) &&
	    strcmp(tok, w->key_tok) == 0 && !qkm_key_id_names(ev->key_id, w->key))
		return 0;
	qkm_time_str(ev->ts_ns, ts);
	snprintf(line, sizeof(line), "%s %-8s %-8s %-16s %s %s", ts, stage_of(ev), node, ev->event,
		 ev->key_id, ev->detail);
	if (!w->rc)
		w->rc = qkm_jlist_add_record(w->recs, node, ev);
	if (!w->rc)
		w->rc = qkm_jlist_add_str(w->lines, line);
	if (!w->rc && strcmp(ev->event, "supplied") == 0 && w->supplied) {
		snprintf(line, sizeof(line), "%s at %s: %s", ev->key_id, node, ev->detail);
		w->rc = qkm_jlist_add_str(w->supplied, line);
	}
	w->n++;
	w->hops += strcmp(ev->event, "relay-forwarded") == 0 || strcmp(ev->event, "relay-received") == 0;
	bool seen = false;
	for (size_t i = 0; i < w->nodes_seen && !seen; i++)
		seen = strcmp(w->nodes[i], node) == 0;
	if (!seen && w->nodes_seen < QKM_MAX_NODES)
		snprintf(w->nodes[w->nodes_seen++], QKM_NAME_MAX, "%s", node);
	return w->rc;
}

/* GET /trace?key=ID: the key's lineage both ways. */
static void api_trace(struct qkm_controller *c, struct qkm_http_req *req)
{
	char key[128], tok[QKM_TOKEN_MAX], msg[300];
	if (!query_get(req->query, "key", key, sizeof(key)) || !qkm_token_of(key, tok)) {
		qkm_http_reply_error(req, 400, "trace needs ?key= a KSA-key ID (UUID) or a KMA-key "
					       "or batch ID (32 hex digits)");
		return;
	}
	struct qkm_lineage *l = qkm_lineage_new();
	struct lines w = {qkm_jlist_new(), qkm_jlist_new(), qkm_jlist_new(), 0, 0, 0, {{0}}, 0,
			  NULL, ""};
	int rc = l && w.recs && w.lines && w.supplied ? 0 : QKM_ENOMEM;
	if (qkm_token_of_ksa_key(key, w.key_tok)) /* a KSA-key, not a KMA batch */
		w.key = key;
	if (!rc)
		rc = qkm_lineage_back(l, c->lg, tok, false);
	if (!rc)
		rc = qkm_lineage_forward(l, c->lg, tok);
	if (!rc)
		rc = qkm_lineage_records(l, line_rec, &w);
	if (!rc && w.n == 0) {
		snprintf(msg, sizeof(msg), "no life-cycle record of key %s in the ledger", key);
		qkm_http_reply_error(req, 404, msg);
	} else if (rc) {
		qkm_http_reply_error(req, 500, "trace failed");
	} else {
		char summary[600], nt[24];
		snprintf(summary, sizeof(summary),
			 "key %s: %zu record(s) on %zu node(s), %zu key(s) in its lineage, %zu relay "
			 "hop record(s), %zu supply record(s)",
			 key, w.n, w.nodes_seen, qkm_lineage_n_tokens(l), w.hops, qkm_jlist_len(w.supplied));
		snprintf(nt, sizeof(nt), "%zu", qkm_lineage_n_tokens(l));
		char *recs = qkm_jlist_dump(w.recs, NULL, NULL), *lines = qkm_jlist_dump(w.lines, NULL, NULL),
		     *sup = qkm_jlist_dump(w.supplied, NULL, NULL);
		const char *keys[] = {"key", "summary", "keys", "supplied", "lines", "records"};
		const char *vals[] = {key, summary, nt, sup, lines, recs};
		const bool strs[] = {true, true, false, false, false, false};
		reply_owned(req, recs && lines && sup ? qkm_json_object(keys, vals, strs, 6) : NULL);
		free(recs);
		free(lines);
		free(sup);
	}
	qkm_lineage_free(l);
	qkm_jlist_free(w.recs);
	qkm_jlist_free(w.lines);
	qkm_jlist_free(w.supplied);
}

static void order_send(struct qkm_controller *c, struct ctl_node *n, const char *json, uint32_t req)
{
	struct qkm_buf b;
	qkm_buf_init(&b, QKM_FRAME_MAX, false);
	(void)send_frame(n, &b, qkm_ck_json_frame(&b, QKM_MSG_CTL_DELETE, req, json, strlen(json)),
			 "compromise order");
	(void)c;
}

static void order_finish(struct qkm_controller *c)
{
	struct ctl_order *o = c->order;
	if (!o)
		return;
	if (o->http) {
		struct qkm_jlist *missing = qkm_jlist_new();
		for (size_t i = 0; missing && i < c->n_nodes; i++)
			if (!o->answered[i] && qkm_jlist_add_str(missing, c->nodes[i].id)) {
				qkm_jlist_free(missing);
				missing = NULL;
			}
		char *rep = qkm_jlist_dump(o->reports, NULL, NULL);
		char *mis = missing ? qkm_jlist_dump(missing, NULL, NULL) : NULL;
		size_t sz = (o->head ? strlen(o->head) : 0) + (rep ? strlen(rep) : 0) +
			    (mis ? strlen(mis) : 0) + 200;
		char *out = rep && mis && o->head ? malloc(sz) : NULL;
		if (out)
			snprintf(out, sz, "{\"order\":\"%s\",%s,\"nodes\":%s,\"not_answered\":%s}",
				 o->id, o->head, rep, mis);
		qkm_http_on_gone(o->http, NULL, NULL);
		reply_owned(o->http, out);
		free(rep);
		free(mis);
		qkm_jlist_free(missing);
	}
	event_free(o->timeout);
	qkm_jlist_free(o->reports);
	free(o->head);
	free(o->order);
	free(o);
	c->order = NULL;
}

static void order_on_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct qkm_controller *c = arg;
	log_warnx("compromise order %s: not every node answered in 15 s; the order stays pending "
		  "for them", c->order ? c->order->id : "?");
	order_finish(c);
}

static void order_gone(struct qkm_http_req *req, void *arg)
{
	struct qkm_controller *c = arg;
	if (c->order && c->order->http == req)
		c->order->http = NULL;
}

static void on_deleted(struct qkm_controller *c, struct ctl_node *n, const struct qkm_frame *f)
{
	const char *js;
	size_t len;
	struct ctl_order *o = c->order;
	if (qkm_ck_json_parse(f, &js, &len) || len > 4096)
		return;
	char text[4097];
	memcpy(text, js, len);
	text[len] = '\0';
	log_info("node %s: compromise report %s", n->id, text);
	own_record(c, "compromise-done", "order", o && f->req == o->req ? o->id : "earlier", n->id,
		   "%s", text);
	if (!o || f->req != o->req)
		return;
	size_t i = (size_t)(n - c->nodes);
	o->answered[i] = true;
	if (qkm_jlist_add_json(o->reports, text))
		log_warnx("compromise order %s: report of %s not kept", o->id, n->id);
	bool all = true;
	for (size_t k = 0; k < c->n_nodes; k++)
		all = all && (o->answered[k] || !o->sent[k]);
	if (all)
		order_finish(c);
}

struct seed_by {
	const char *link, *node;
	uint64_t since;
	char module[QKM_NAME_MAX + 16];
};

static bool seed_keep(const char *node, const struct qkm_lc_event *ev, void *arg)
{
	struct seed_by *s = arg;
	if (ev->ts_ns < s->since)
		return false;
	if (s->node)
		return strcmp(node, s->node) == 0 && ev->key_id[0];
	/* The link's KMA-keys: formatted from its modules' QKD-keys. */
	return strcmp(ev->event, "formatted") == 0 && strcmp(ev->key_kind, "kma") == 0 &&
	       strstr(ev->detail, s->module) != NULL;
}

static bool parse_time(const char *s, uint64_t *ns)
{
	struct tm tm = {0};
	const char *p = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
	if (!p)
		return false;
	double frac = 0;
	if (*p == '.') {
		char *e;
		frac = strtod(p, &e);
		p = e;
	}
	if (*p == 'Z')
		p++;
	if (*p)
		return false;
	time_t t = timegm(&tm);
	if (t < 0)
		return false;
	*ns = (uint64_t)t * 1000000000ull + (uint64_t)(frac * 1e9);
	return true;
}

/* POST /compromise {"key" | "link" ("A-B") | "node", "since"?} */
static void api_compromise(struct qkm_controller *c, struct qkm_http_req *req)
{
	static const char *const keys[] = {"key", "link", "node", "since", NULL};
	char f[4][QKM_NAME_MAX * 2], err[300], tok[QKM_TOKEN_MAX];
	if (!body_fields(req, keys, f, NULL, NULL, 0, NULL))
		return;
	if (!!f[0][0] + !!f[1][0] + !!f[2][0] != 1) {
		qkm_http_reply_error(req, 400, "give exactly one of key, link, node");
		return;
	}
	if (c->order) {
		qkm_http_reply_error(req, 503, "a compromise order is still waiting for nodes; retry "
					       "in a few seconds");
		return;
	}
	struct seed_by sb = {NULL, NULL, 0, ""};
	if (f[3][0] && f[0][0]) {
		qkm_http_reply_error(req, 400, "since: only with link or node (a key names its keys)");
		return;
	}
	if (f[3][0] && !parse_time(f[3], &sb.since)) {
		qkm_http_reply_error(req, 400, "since: a UTC time like 2026-11-26T06:30:00Z");
		return;
	}
	char what[200];
	struct qkm_lineage *l = qkm_lineage_new();
	int rc = l ? 0 : QKM_ENOMEM;
	if (!rc && f[0][0]) {
		if (!qkm_token_of(f[0], tok)) {
			qkm_http_reply_error(req, 400, "key: a KSA-key ID (UUID) or a KMA-key ID");
			qkm_lineage_free(l);
			return;
		}
		/* The key and what it was split from (one step back), then
		 * everything made from those or carried under them. */
		snprintf(what, sizeof(what), "key %s", f[0]);
		rc = qkm_lineage_back(l, c->lg, tok, false);
	} else if (!rc && f[1][0]) {
		const char *dash = strchr(f[1], '-');
		bool found = false;
		for (size_t i = 0; dash && i < c->topo.n_links && !found; i++) {
			char name[2 * QKM_NAME_MAX + 2];
			snprintf(name, sizeof(name), "%s-%s", c->topo.links[i].a, c->topo.links[i].b);
			found = strcmp(name, f[1]) == 0;
		}
		if (!found) {
			snprintf(err, sizeof(err), "link: '%.60s' is not a QKD link of this network (A-B as "
						   "in the topology)", f[1]);
			qkm_http_reply_error(req, 400, err);
			qkm_lineage_free(l);
			return;
		}
		snprintf(what, sizeof(what), "link %s%s%s", f[1], f[3][0] ? " since " : "", f[3]);
		snprintf(sb.module, sizeof(sb.module), "(module %s:", f[1]);
		sb.link = f[1];
		rc = qkm_lineage_select(l, c->lg, seed_keep, &sb);
	} else if (!rc) {
		if (!node_find(c, f[2])) {
			qkm_http_reply_error(req, 400, "node: not a node of this network");
			qkm_lineage_free(l);
			return;
		}
		snprintf(what, sizeof(what), "node %s%s%s", f[2], f[3][0] ? " since " : "", f[3]);
		sb.node = f[2];
		rc = qkm_lineage_select(l, c->lg, seed_keep, &sb);
	}
	/* Forward from every seed (the list grows as it goes). */
	size_t seeds = l ? qkm_lineage_n_tokens(l) : 0;
	for (size_t i = 0; !rc && i < seeds; i++) {
		char t[QKM_TOKEN_MAX];
		snprintf(t, sizeof(t), "%s", qkm_lineage_token(l, i));
		rc = qkm_lineage_forward(l, c->lg, t);
	}
	size_t nt = l ? qkm_lineage_n_tokens(l) : 0;
	char (*toks)[QKM_TOKEN_MAX] = nt ? calloc(nt, sizeof(*toks)) : NULL;
	if (!rc && nt && !toks)
		rc = QKM_ENOMEM;
	if (!rc && nt > QKM_ORDER_MAX)
		rc = QKM_ETOOBIG;
	for (size_t i = 0; !rc && i < nt; i++)
		snprintf(toks[i], QKM_TOKEN_MAX, "%s", qkm_lineage_token(l, i));
	struct lines w = {qkm_jlist_new(), qkm_jlist_new(), qkm_jlist_new(), 0, 0, 0, {{0}}, 0,
			  NULL, ""};
	if (!rc)
		rc = w.recs && w.lines && w.supplied ? qkm_lineage_records(l, line_rec, &w) : QKM_ENOMEM;
	struct ctl_order *o = rc ? NULL : calloc(1, sizeof(*o));
	if (!rc && !o)
		rc = QKM_ENOMEM;
	if (rc) {
		snprintf(err, sizeof(err), "compromise of %s failed: %s", what, qkm_strerror(rc));
		qkm_http_reply_error(req, 500, err);
		goto out;
	}
	snprintf(o->id, sizeof(o->id), "%s-%u-%llu", c->cfg.id, ++c->next_order,
		 (unsigned long long)(qkm_now_ns() / 1000000000ull));
	o->req = c->next_order;
	o->http = req;
	o->n_tokens = nt;
	o->reports = qkm_jlist_new();
	o->order = qkm_order_json(o->id, what, (const char(*)[QKM_TOKEN_MAX])toks, nt);
	o->timeout = evtimer_new(c->base, order_on_timeout, c);
	char summary[600], ntok[24];
	snprintf(summary, sizeof(summary),
		 "compromise of %s: %zu correlated key(s) (KMA batches and KSA supply rounds) from "
		 "%zu record(s); %zu supply record(s) say which were already supplied, and to which "
		 "SAEs; every node ordered to delete them",
		 what, nt, w.n, qkm_jlist_len(w.supplied));
	snprintf(ntok, sizeof(ntok), "%zu", nt);
	char *sup = qkm_jlist_dump(w.supplied, NULL, NULL), *lines = qkm_jlist_dump(w.lines, NULL, NULL);
	const char *hk[] = {"summary", "keys", "supplied", "lines"};
	const char *hv[] = {summary, ntok, sup, lines};
	const bool hs[] = {true, false, false, false};
	char *head = sup && lines ? qkm_json_object(hk, hv, hs, 4) : NULL;
	free(sup);
	free(lines);
	if (head) { /* strip the braces: members for order_finish */
		size_t hl = strlen(head);
		memmove(head, head + 1, hl - 2);
		head[hl - 2] = '\0';
	}
	o->head = head;
	if (!o->reports || !o->order || !o->timeout || !o->head) {
		qkm_http_reply_error(req, 500, "out of memory");
		event_free(o->timeout);
		qkm_jlist_free(o->reports);
		free(o->order);
		free(o->head);
		free(o);
		goto out;
	}
	c->order = o;
	qkm_http_on_gone(req, order_gone, c);
	log_warnx("compromise of %s: %zu correlated key(s); ordering every node to delete them",
		  what, nt);
	own_record(c, "compromise", "order", o->id, c->cfg.id, "%s: %zu correlated key(s), %zu supplied "
		   "record(s); every node ordered to delete", what, nt, qkm_jlist_len(w.supplied));
	bool any = false;
	for (size_t i = 0; i < c->n_nodes; i++) {
		struct ctl_node *n = &c->nodes[i];
		if (!n->conn)
			continue;
		order_send(c, n, o->order, o->req);
		o->sent[i] = true;
		any = true;
	}
	/* Nodes away now get the order when they come back. */
	bool all_sent = true;
	for (size_t i = 0; i < c->n_nodes; i++)
		all_sent = all_sent && o->sent[i];
	if (!all_sent) {
		char **p = realloc(c->pending_orders, (c->n_pending_orders + 1) * sizeof(*p));
		if (p) {
			c->pending_orders = p;
			p[c->n_pending_orders++] = strdup(o->order);
		}
	}
	/* 15 s from now, not from the start of this loop iteration, whose
	 * time libevent has cached: the walk over the records above took
	 * 13 s of a 15 s timeout once (ASan build under load), and the order
	 * was given up 2 s after it went out. */
	(void)event_base_update_cache_time(c->base);
	struct timeval tv = {15, 0};
	evtimer_add(o->timeout, &tv);
	if (!any)
		order_finish(c);
out:
	free(toks);
	qkm_lineage_free(l);
	qkm_jlist_free(w.recs);
	qkm_jlist_free(w.lines);
	qkm_jlist_free(w.supplied);
}

static void api_saes(struct qkm_controller *c, struct qkm_http_req *req, bool revoke)
{
	static const char *const keys[] = {"id", "node", NULL};
	char f[2][QKM_NAME_MAX * 2];
	if (strcmp(req->method, "GET") == 0) {
		reply_owned(req, qkm_saes_json(c->saes, c->n_saes));
		return;
	}
	if (!body_fields(req, keys, f, NULL, NULL, 0, NULL))
		return;
	if (!qkm_name_valid(f[0])) {
		qkm_http_reply_error(req, 400, "id: must be a valid SAE name");
		return;
	}
	struct qkm_sae_entry *e = sae_find(c, f[0]);
	char msg[600];
	if (revoke) {
		if (!e || e->revoked) {
			snprintf(msg, sizeof(msg), "SAE '%s' is %s", f[0], e ? "revoked already" : "not registered");
			qkm_http_reply_error(req, 404, msg);
			return;
		}
		e->revoked = true;
	} else {
		if (!node_find(c, f[1]) || !node_find(c, f[1])->ksa) {
			snprintf(msg, sizeof(msg), "node: '%s' is not a node of this network with "
					     "an application interface", f[1]);
			qkm_http_reply_error(req, 400, msg);
			return;
		}
		if (e && !e->revoked) {
			snprintf(msg, sizeof(msg), "SAE '%s' is registered already (at %s)", f[0], e->node);
			qkm_http_reply_error(req, 409, msg);
			return;
		}
		if (!e && c->n_saes == QKM_MAX_SAES) {
			qkm_http_reply_error(req, 503, "the access list is full");
			return;
		}
		char cert[PATH_MAX + 80], key[PATH_MAX + 80];
		snprintf(cert, sizeof(cert), "%s/%s.pem", c->cfg.sae_dir, f[0]);
		snprintf(key, sizeof(key), "%s/%s.key", c->cfg.sae_dir, f[0]);
		int rc = qkm_ca_issue(c->cfg.ca_dir, "sae", f[0], cert, key);
		if (rc) {
			snprintf(msg, sizeof(msg), "cannot issue a certificate for '%s': %s", f[0],
				 qkm_strerror(rc));
			qkm_http_reply_error(req, 500, msg);
			return;
		}
		if (!e)
			e = &c->saes[c->n_saes++];
		snprintf(e->id, sizeof(e->id), "%s", f[0]);
		snprintf(e->node, sizeof(e->node), "%s", f[1]);
		e->revoked = false;
	}
	if (qkm_saes_json_save(c->saes_path, c->saes, c->n_saes))
		log_warnx("access list: cannot write %s", c->saes_path);
	if (revoke) {
		log_info("SAE %s revoked", e->id);
		own_record(c, "sae-revoked", "sae", e->id, e->node, "SAE %s (at %s) revoked", e->id,
			   e->node);
	} else {
		log_info("SAE %s registered at %s", e->id, e->node);
		own_record(c, "sae-registered", "sae", e->id, e->node,
			   "SAE %s registered at %s; certificate issued", e->id, e->node);
	}
	push_saes_all(c);
	snprintf(msg, sizeof(msg),
		 "{\"id\":\"%s\",\"node\":\"%s\",\"revoked\":%s,\"cert\":\"%s/%s.pem\",\"key\":\"%s/%s.key\"}",
		 e->id, e->node, e->revoked ? "true" : "false", c->cfg.sae_dir, e->id,
		 c->cfg.sae_dir, e->id);
	qkm_http_reply_json(req, 200, msg);
}

/* POST /routes {"from", "to", "path": [...]} sets a manual route (path
 * empty: drops it). */
static void api_route_set(struct qkm_controller *c, struct qkm_http_req *req)
{
	static const char *const keys[] = {"from", "to", NULL};
	char f[2][QKM_NAME_MAX * 2], err[200], path[QKM_MAX_PATH][QKM_NAME_MAX];
	size_t np = 0;
	if (!body_fields(req, keys, f, "path", path, QKM_MAX_PATH, &np))
		return;
	struct ctl_node *from = node_find(c, f[0]);
	if (!from || !node_find(c, f[1]) || strcmp(f[0], f[1]) == 0) {
		qkm_http_reply_error(req, 400, "from and to must be two nodes of this network");
		return;
	}
	size_t i = 0;
	while (i < c->st.n_manual && !(strcmp(c->st.manual[i].path[0], f[0]) == 0 &&
				    strcmp(c->st.manual[i].to, f[1]) == 0))
		i++;
	if (np == 0) {
		if (i < c->st.n_manual)
			c->st.manual[i] = c->st.manual[--c->st.n_manual];
		own_record(c, "route-cleared", "route", f[1], f[0], "%s -> %s: manual route dropped",
			   f[0], f[1]);
		save_state(c);
		compute_routes(c, qkm_mono_ns());
		qkm_http_reply_json(req, 200, "{\"ok\":true}");
		return;
	}
	/* Every hop must be a link of the topology, no node twice. */
	if (np < 2 || strcmp(path[0], f[0]) || strcmp(path[np - 1], f[1])) {
		qkm_http_reply_error(req, 400, "path must start at from and end at to");
		return;
	}
	for (size_t h = 0; h + 1 < np; h++) {
		bool link = false;
		for (size_t k = 0; k < c->topo.n_links && !link; k++)
			link = (strcmp(c->topo.links[k].a, path[h]) == 0 &&
				strcmp(c->topo.links[k].b, path[h + 1]) == 0) ||
			       (strcmp(c->topo.links[k].b, path[h]) == 0 &&
				strcmp(c->topo.links[k].a, path[h + 1]) == 0);
		for (size_t k = 0; k < h; k++)
			link = link && strcmp(path[k], path[h]) != 0;
		if (!link) {
			snprintf(err, sizeof(err), "path: %s-%s is not a QKD link of this network (or "
						   "the path loops)", path[h], path[h + 1]);
			qkm_http_reply_error(req, 400, err);
			return;
		}
	}
	bool neighbours = np == 2;
	if (neighbours) {
		qkm_http_reply_error(req, 400, "from and to share a QKD link: no relay route needed");
		return;
	}
	if (i == c->st.n_manual) {
		if (c->st.n_manual == sizeof(c->st.manual) / sizeof(c->st.manual[0])) {
			qkm_http_reply_error(req, 503, "too many manual routes");
			return;
		}
		c->st.n_manual++;
	}
	struct qkm_node_route *r = &c->st.manual[i];
	memset(r, 0, sizeof(*r));
	snprintf(r->to, sizeof(r->to), "%s", f[1]);
	r->n = (uint32_t)np;
	for (size_t h = 0; h < np; h++)
		snprintf(r->path[h], QKM_NAME_MAX, "%s", path[h]);
	char p[QKM_MAX_PATH * (QKM_NAME_MAX + 1)];
	route_str(r, p, sizeof(p));
	own_record(c, "route-manual", "route", f[1], f[0], "%s -> %s: operator set %s", f[0], f[1], p);
	save_state(c);
	compute_routes(c, qkm_mono_ns());
	qkm_http_reply_json(req, 200, "{\"ok\":true}");
}

/* POST /mode {"mode", "from"?, "to"?}: the network's mode, or one pair's. */
static void api_mode(struct qkm_controller *c, struct qkm_http_req *req)
{
	static const char *const keys[] = {"mode", "from", "to", NULL};
	char f[3][QKM_NAME_MAX * 2];
	if (strcmp(req->method, "GET") == 0) {
		char out[256];
		snprintf(out, sizeof(out), "{\"mode\":\"%s\"}", c->st.mode);
		qkm_http_reply_json(req, 200, out);
		return;
	}
	if (!body_fields(req, keys, f, NULL, NULL, 0, NULL))
		return;
	if (!qkm_route_mode_valid(f[0])) {
		qkm_http_reply_error(req, 400, "mode: must be manual, fixed-rate, adaptive or scheduled");
		return;
	}
	if (!f[1][0] != !f[2][0] ||
	    (f[1][0] && (!node_find(c, f[1]) || !node_find(c, f[2]) || !strcmp(f[1], f[2])))) {
		qkm_http_reply_error(req, 400, "from and to: both or neither, two nodes of this network");
		return;
	}
	if (!f[1][0]) {
		snprintf(c->st.mode, sizeof(c->st.mode), "%s", f[0]);
		c->st.n_pair_modes = 0;
		own_record(c, "mode-set", "mode", "network", c->cfg.id, "network mode %s", f[0]);
	} else {
		size_t i = 0;
		while (i < c->st.n_pair_modes && !(strcmp(c->st.pair_modes[i].from, f[1]) == 0 &&
						strcmp(c->st.pair_modes[i].to, f[2]) == 0))
			i++;
		if (i == sizeof(c->st.pair_modes) / sizeof(c->st.pair_modes[0])) {
			qkm_http_reply_error(req, 503, "too many pair modes");
			return;
		}
		if (i == c->st.n_pair_modes)
			c->st.n_pair_modes++;
		snprintf(c->st.pair_modes[i].from, QKM_NAME_MAX, "%s", f[1]);
		snprintf(c->st.pair_modes[i].to, QKM_NAME_MAX, "%s", f[2]);
		snprintf(c->st.pair_modes[i].mode, sizeof(c->st.pair_modes[i].mode), "%s", f[0]);
		own_record(c, "mode-set", "mode", f[2], f[1], "%s -> %s: mode %s", f[1], f[2], f[0]);
	}
	log_info("rerouting mode %s%s%s%s%s", f[0], f[1][0] ? " for " : "", f[1],
		 f[1][0] ? " -> " : "", f[2]);
	save_state(c);
	compute_routes(c, qkm_mono_ns());
	run_plans(c, qkm_mono_ns(), true);
	qkm_http_reply_json(req, 200, "{\"ok\":true}");
}

/* POST /schedule {"from", "to", "in_seconds", "bytes"} (strings); GET: the plan. */
static void api_schedule(struct qkm_controller *c, struct qkm_http_req *req)
{
	static const char *const keys[] = {"from", "to", "in_seconds", "bytes", NULL};
	char f[4][QKM_NAME_MAX * 2];
	if (strcmp(req->method, "GET") == 0) {
		char out[(size_t)CTL_MAX_PLANS * 160] = "[";
		for (size_t i = 0; i < c->st.n_plans; i++) {
			char ts[32];
			qkm_time_str(c->st.plans[i].at_ns, ts);
			snprintf(out + strlen(out), sizeof(out) - strlen(out),
				 "%s{\"from\":\"%s\",\"to\":\"%s\",\"at\":\"%s\",\"bytes\":%llu}",
				 i ? "," : "", c->st.plans[i].from, c->st.plans[i].to, ts,
				 (unsigned long long)c->st.plans[i].bytes);
		}
		snprintf(out + strlen(out), sizeof(out) - strlen(out), "]");
		qkm_http_reply_json(req, 200, out);
		return;
	}
	if (!body_fields(req, keys, f, NULL, NULL, 0, NULL))
		return;
	char *end;
	double in = strtod(f[2], &end);
	unsigned long long bytes = strtoull(f[3], NULL, 10);
	if (!node_find(c, f[0]) || !node_find(c, f[1]) || !strcmp(f[0], f[1]) || *end || in < 0 ||
	    in > 86400 * 365 || bytes == 0 || bytes > (1ull << 30)) {
		qkm_http_reply_error(req, 400, "schedule needs from and to (two nodes), in_seconds "
					       "(0 to a year) and bytes (1 to 1 GiB), as strings");
		return;
	}
	if (c->st.n_plans == CTL_MAX_PLANS) {
		qkm_http_reply_error(req, 503, "the schedule is full");
		return;
	}
	struct qkm_ctl_plan *p = &c->st.plans[c->st.n_plans++];
	snprintf(p->from, sizeof(p->from), "%s", f[0]);
	snprintf(p->to, sizeof(p->to), "%s", f[1]);
	p->at_ns = qkm_now_ns() + (uint64_t)(in * 1e9);
	p->bytes = bytes;
	own_record(c, "schedule-added", "plan", f[1], f[0], "%s relays %llu bytes to %s in %.1f s",
		   f[0], bytes, f[1], in);
	save_state(c);
	qkm_http_reply_json(req, 200, "{\"ok\":true}");
}

static void api_handle(struct qkm_http_req *req, void *arg)
{
	struct qkm_controller *c = arg;
	if (strcmp(req->role, "admin") != 0) {
		qkm_http_reply_error(req, 403, "the controller API is for operators (admin certificate)");
		return;
	}
	if (qkm_dashboard_serve(req)) /* GET /, /dashboard/... */
		return;
	const char *p = req->path;
	bool post = strcmp(req->method, "POST") == 0;
	if (strcmp(p, "/status") == 0 || (strcmp(p, "/routes") == 0 && !post))
		api_status(c, req);
	else if (strcmp(p, "/metrics") == 0 || strcmp(p, "/healthz") == 0 ||
		 strcmp(p, "/readyz") == 0)
		api_metrics_health(c, req);
	else if (strcmp(p, "/records") == 0)
		api_records(c, req);
	else if (strcmp(p, "/audit") == 0)
		api_audit(c, req);
	else if (strcmp(p, "/trace") == 0)
		api_trace(c, req);
	else if (strcmp(p, "/compromise") == 0 && post)
		api_compromise(c, req);
	else if (strcmp(p, "/saes") == 0)
		api_saes(c, req, false);
	else if (strcmp(p, "/saes/revoke") == 0 && post)
		api_saes(c, req, true);
	else if (strcmp(p, "/routes") == 0 && post)
		api_route_set(c, req);
	else if (strcmp(p, "/mode") == 0)
		api_mode(c, req);
	else if (strcmp(p, "/schedule") == 0)
		api_schedule(c, req);
	else
		qkm_http_reply_error(req, 404, "no such resource (see docs/controller.md)");
}

/* ---- life ------------------------------------------------------------------- */

static void ctl_on_tick(evutil_socket_t fd, short what, void *arg)
{
	struct qkm_controller *c = arg;
	uint64_t now = qkm_mono_ns();
	compute_routes(c, now);
	run_plans(c, now, false);
}

struct qkm_controller *qkm_controller_new(struct event_base *base, const struct qkm_ctl_cfg *cfg)
{
	struct qkm_controller *c = calloc(1, sizeof(*c));
	char err[512];
	if (!c)
		return NULL;
	c->base = base;
	c->cfg = *cfg;
	snprintf(c->st.mode, sizeof(c->st.mode), "%s", cfg->mode);
	{
		/* The routing state lives beside the ledger. */
		const char *slash = strrchr(cfg->db, '/');
		int dl = slash ? (int)(slash - cfg->db) : 1;
		snprintf(c->state_path, sizeof(c->state_path), "%.*s/routing.json", dl,
			 slash ? cfg->db : ".");
	}
	if (qkm_topology_load(cfg->topology, &c->topo, err, sizeof(err))) {
		log_warnx("%s", err);
		goto fail;
	}
	for (size_t i = 0; i < c->topo.n_nodes; i++) {
		snprintf(c->nodes[i].id, QKM_NAME_MAX, "%s", c->topo.nodes[i].id);
		c->nodes[i].ksa = c->topo.nodes[i].ksa;
	}
	c->n_nodes = c->topo.n_nodes;
	load_state(c);
	mkdir(cfg->sae_dir, 0700);
	c->saes = calloc(QKM_MAX_SAES, sizeof(*c->saes));
	if (!c->saes || saes_load(c))
		goto fail;
	int rc = qkm_ledger_open(cfg->db, &c->lg);
	if (rc) {
		log_warnx("cannot open the ledger %s: %s", cfg->db, qkm_strerror(rc));
		goto fail;
	}
	c->sctx = qkm_tls_ctx_new(cfg->tls.ca, cfg->tls.cert, cfg->tls.key, true);
	if (!c->sctx)
		goto fail;
	c->ck = qkm_listener_new(base, cfg->ck_listen, ck_on_accept, c);
	c->api = qkm_http_server_new(base, c->sctx, cfg->api_listen, (size_t)64 * 1024, api_handle, c);
	c->tick = event_new(base, -1, EV_PERSIST, ctl_on_tick, c);
	if (!c->ck || !c->api || !c->tick)
		goto fail;
	struct timeval tv = {0, (suseconds_t)CTL_TICK_MS * 1000};
	event_add(c->tick, &tv);
	own_record(c, "controller-started", "controller", c->cfg.id, c->cfg.id,
		   "controller %s started: %zu node(s), %zu SAE(s), mode %s", c->cfg.id, c->n_nodes,
		   c->n_saes, c->st.mode);
	return c;
fail:
	qkm_controller_free(c);
	return NULL;
}

void qkm_controller_free(struct qkm_controller *c)
{
	if (!c)
		return;
	if (c->order) {
		c->order->http = NULL;
		order_finish(c);
	}
	for (size_t i = 0; i < c->n_pending_orders; i++)
		free(c->pending_orders[i]);
	free(c->pending_orders);
	while (c->conns) {
		struct ctl_conn *x = c->conns;
		c->conns = x->next;
		qkm_link_free(x->l);
		free(x);
	}
	if (c->tick)
		event_free(c->tick);
	qkm_http_server_free(c->api);
	qkm_listener_free(c->ck);
	SSL_CTX_free(c->sctx);
	qkm_ledger_close(c->lg);
	for (size_t i = 0; i < c->n_nodes; i++)
		free(c->nodes[i].status);
	free(c->saes);
	free(c);
}
