/* lineage.c - key lineage over the ledger (lineage.h): a breadth-first walk
 * over tokens, each step one ledger query, with the records met collected
 * once each (by node and seq) and the tokens met kept in a hash set. */
#include "ctl/lineage.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct rec {
	char node[QKM_NAME_MAX];
	char tok[QKM_TOKEN_MAX];
	struct qkm_lc_event ev;
};

struct hset {
	size_t *slot; /* index + 1; 0 = empty */
	size_t cap;
};

struct qkm_lineage {
	struct rec *recs;
	size_t n_recs, cap_recs;
	char (*toks)[QKM_TOKEN_MAX];
	size_t n_toks, cap_toks;
	struct hset rset, tset;
};

static uint64_t fnv(const char *a, const char *b, int64_t seq)
{
	uint64_t h = 1469598103934665603ull;
	for (const char *p = a; *p; p++)
		h = (h ^ (uint8_t)*p) * 1099511628211ull;
	h = (h ^ 0xff) * 1099511628211ull;
	for (const char *p = b; p && *p; p++)
		h = (h ^ (uint8_t)*p) * 1099511628211ull;
	return (h ^ (uint64_t)seq) * 1099511628211ull;
}

/* Rebuilds set h, doubled, over entries 0..n-1 (hashed by hash). */
static int hset_grow(struct hset *h, size_t n, uint64_t (*hash)(const struct qkm_lineage *, size_t),
		     const struct qkm_lineage *l)
{
	size_t cap = h->cap ? h->cap * 2 : 1024;
	size_t *s = calloc(cap, sizeof(*s));
	if (!s)
		return QKM_ENOMEM;
	for (size_t i = 0; i < n; i++) {
		size_t j = (size_t)hash(l, i) & (cap - 1);
		while (s[j])
			j = (j + 1) & (cap - 1);
		s[j] = i + 1;
	}
	free(h->slot);
	h->slot = s;
	h->cap = cap;
	return 0;
}

static uint64_t rec_hash(const struct qkm_lineage *l, size_t i)
{
	return fnv(l->recs[i].node, NULL, l->recs[i].ev.seq);
}

static uint64_t tok_hash(const struct qkm_lineage *l, size_t i) { return fnv(l->toks[i], NULL, 0); }

/* 1 if added, 0 if known, or an error. */
static int add_tok(struct qkm_lineage *l, const char *tok)
{
	if (l->tset.cap) {
		size_t j = (size_t)fnv(tok, NULL, 0) & (l->tset.cap - 1);
		for (; l->tset.slot[j]; j = (j + 1) & (l->tset.cap - 1))
			if (strcmp(l->toks[l->tset.slot[j] - 1], tok) == 0)
				return 0;
	}
	if (l->n_toks == l->cap_toks) {
		size_t cap = l->cap_toks ? l->cap_toks * 2 : 256;
		void *p = realloc(l->toks, cap * sizeof(*l->toks));
		if (!p)
			return QKM_ENOMEM;
		l->toks = p;
		l->cap_toks = cap;
	}
	snprintf(l->toks[l->n_toks], QKM_TOKEN_MAX, "%s", tok);
	l->n_toks++;
	if (l->n_toks * 2 > l->tset.cap)
		return hset_grow(&l->tset, l->n_toks, tok_hash, l) ? QKM_ENOMEM : 1;
	size_t j = (size_t)fnv(tok, NULL, 0) & (l->tset.cap - 1);
	while (l->tset.slot[j])
		j = (j + 1) & (l->tset.cap - 1);
	l->tset.slot[j] = l->n_toks;
	return 1;
}

static int add_rec(struct qkm_lineage *l, const char *node, const struct qkm_lc_event *ev)
{
	if (l->rset.cap) {
		size_t j = (size_t)fnv(node, NULL, ev->seq) & (l->rset.cap - 1);
		for (; l->rset.slot[j]; j = (j + 1) & (l->rset.cap - 1)) {
			const struct rec *r = &l->recs[l->rset.slot[j] - 1];
			if (r->ev.seq == ev->seq && strcmp(r->node, node) == 0)
				return 0;
		}
	}
	if (l->n_recs == l->cap_recs) {
		size_t cap = l->cap_recs ? l->cap_recs * 2 : 256;
		void *p = realloc(l->recs, cap * sizeof(*l->recs));
		if (!p)
			return QKM_ENOMEM;
		l->recs = p;
		l->cap_recs = cap;
	}
	struct rec *r = &l->recs[l->n_recs++];
	snprintf(r->node, sizeof(r->node), "%s", node);
	r->ev = *ev;
	if (!qkm_token_of(ev->key_id, r->tok))
		r->tok[0] = '\0';
	if (l->n_recs * 2 > l->rset.cap)
		return hset_grow(&l->rset, l->n_recs, rec_hash, l) ? QKM_ENOMEM : 1;
	size_t j = (size_t)fnv(node, NULL, ev->seq) & (l->rset.cap - 1);
	while (l->rset.slot[j])
		j = (j + 1) & (l->rset.cap - 1);
	l->rset.slot[j] = l->n_recs;
	return 1;
}

struct qkm_lineage *qkm_lineage_new(void) { return calloc(1, sizeof(struct qkm_lineage)); }

void qkm_lineage_free(struct qkm_lineage *l)
{
	if (!l)
		return;
	free(l->recs);
	free(l->toks);
	free(l->rset.slot);
	free(l->tset.slot);
	free(l);
}

/* The tokens a record's detail names, each as a source or as a
 * protecting link key (named after "link key "). */
typedef int (*ref_fn)(const char *tok, bool protect, void *arg);
struct refs_ctx {
	const char *d;
	ref_fn fn;
	void *arg;
};

static int refs_one(const char *tok, size_t pos, void *arg)
{
	struct refs_ctx *r = arg;
	/* Which phrase came last before it: "link key " or "from ". */
	const char *lk = NULL, *fr = NULL;
	for (const char *p = r->d; p < r->d + pos; p++) {
		if (strncmp(p, "link key ", 9) == 0)
			lk = p;
		if (strncmp(p, "from ", 5) == 0)
			fr = p;
	}
	return r->fn(tok, lk && (!fr || lk > fr), r->arg);
}

static int refs(const struct qkm_lc_event *ev, ref_fn fn, void *arg)
{
	struct refs_ctx r = {ev->detail, fn, arg};
	return qkm_tokens_scan(ev->detail, refs_one, &r);
}

/* ---- walks ---- */

/* A walk's own queue: the tokens it found new, to visit in turn. */
struct walk {
	struct qkm_lineage *l;
	const char *tok;      /* forward: the token being visited */
	bool protect;
	size_t *q;            /* indexes into l->toks */
	size_t n_q, cap_q;
};

static int enqueue(struct walk *w, const char *tok)
{
	int r = add_tok(w->l, tok);
	if (r <= 0)
		return r;
	if (w->n_q == w->cap_q) {
		size_t cap = w->cap_q ? w->cap_q * 2 : 64;
		size_t *q = realloc(w->q, cap * sizeof(*q));
		if (!q)
			return QKM_ENOMEM;
		w->q = q;
		w->cap_q = cap;
	}
	w->q[w->n_q++] = w->l->n_toks - 1;
	return 0;
}

static int push_ref(const char *tok, bool protect, void *arg)
{
	struct walk *w = arg;
	if (protect && !w->protect)
		return 0;
	return enqueue(w, tok);
}

static int back_rec(const char *node, const struct qkm_lc_event *ev, void *arg)
{
	struct walk *w = arg;
	int r = add_rec(w->l, node, ev);
	if (r < 0)
		return r;
	return refs(ev, push_ref, w);
}

/* Visits tok, then every token the visits enqueue, with visit(). */
static int run_walk(struct walk *w, const char *tok,
		    int (*visit)(struct walk *w, const char *t, struct qkm_ledger *lg),
		    struct qkm_ledger *lg)
{
	int rc = add_tok(w->l, tok);
	if (rc < 0)
		return rc;
	rc = visit(w, tok, lg);
	for (size_t i = 0; !rc && i < w->n_q; i++) {
		char t[QKM_TOKEN_MAX];
		snprintf(t, sizeof(t), "%s", w->l->toks[w->q[i]]);
		rc = visit(w, t, lg);
	}
	free(w->q);
	return rc < 0 ? rc : 0;
}

static int back_visit(struct walk *w, const char *t, struct qkm_ledger *lg)
{
	return qkm_ledger_key_records(lg, t, 0, back_rec, w);
}

int qkm_lineage_back(struct qkm_lineage *l, struct qkm_ledger *lg, const char *tok, bool protect)
{
	struct walk w = {l, NULL, protect, NULL, 0, 0};
	return run_walk(&w, tok, back_visit, lg);
}

static int fwd_rec(const char *node, const struct qkm_lc_event *ev, void *arg)
{
	struct walk *w = arg;
	char own[QKM_TOKEN_MAX];
	int r = add_rec(w->l, node, ev);
	if (r < 0)
		return r;
	/* A record of another key naming this one: that key came from it or
	 * was carried under it. */
	if (qkm_token_of(ev->key_id, own) && strcmp(own, w->tok) != 0)
		return enqueue(w, own);
	return 0;
}

static int fwd_visit(struct walk *w, const char *t, struct qkm_ledger *lg)
{
	w->tok = t;
	int rc = qkm_ledger_key_records(lg, t, 0, fwd_rec, w);
	return rc ? rc : qkm_ledger_ref_records(lg, t, 0, fwd_rec, w);
}

int qkm_lineage_forward(struct qkm_lineage *l, struct qkm_ledger *lg, const char *tok)
{
	struct walk w = {l, NULL, false, NULL, 0, 0};
	return run_walk(&w, tok, fwd_visit, lg);
}

struct sel {
	struct qkm_lineage *l;
	bool (*keep)(const char *node, const struct qkm_lc_event *ev, void *arg);
	void *arg;
};

static int sel_rec(const char *node, const struct qkm_lc_event *ev, void *arg)
{
	struct sel *s = arg;
	char tok[QKM_TOKEN_MAX];
	if (!s->keep(node, ev, s->arg))
		return 0;
	int r = add_rec(s->l, node, ev);
	if (r >= 0 && qkm_token_of(ev->key_id, tok))
		r = add_tok(s->l, tok);
	return r < 0 ? r : 0;
}

int qkm_lineage_select(struct qkm_lineage *l, struct qkm_ledger *lg,
		       bool (*keep)(const char *node, const struct qkm_lc_event *ev, void *arg),
		       void *arg)
{
	struct sel s = {l, keep, arg};
	int rc = qkm_ledger_records(lg, NULL, 0, NULL, NULL, 0, sel_rec, &s);
	return rc < 0 ? rc : 0;
}

static int by_time(const void *a, const void *b)
{
	const struct rec *x = a, *y = b;
	if (x->ev.ts_ns != y->ev.ts_ns)
		return x->ev.ts_ns < y->ev.ts_ns ? -1 : 1;
	int c = strcmp(x->node, y->node);
	return c ? c : (x->ev.seq < y->ev.seq ? -1 : x->ev.seq > y->ev.seq);
}

int qkm_lineage_records(const struct qkm_lineage *l,
			int (*fn)(const char *node, const struct qkm_lc_event *ev, void *arg),
			void *arg)
{
	struct rec *sorted = l->n_recs ? malloc(l->n_recs * sizeof(*sorted)) : NULL;
	if (l->n_recs && !sorted)
		return QKM_ENOMEM;
	if (l->n_recs)
		memcpy(sorted, l->recs, l->n_recs * sizeof(*sorted));
	if (l->n_recs > 1)
		qsort(sorted, l->n_recs, sizeof(*sorted), by_time);
	int rc = 0;
	for (size_t i = 0; i < l->n_recs && !rc; i++)
		rc = fn(sorted[i].node, &sorted[i].ev, arg);
	free(sorted);
	return rc;
}

size_t qkm_lineage_n_tokens(const struct qkm_lineage *l) { return l->n_toks; }

const char *qkm_lineage_token(const struct qkm_lineage *l, size_t i)
{
	return i < l->n_toks ? l->toks[i] : NULL;
}
