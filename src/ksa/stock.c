/* stock.c - keys made ahead of demand (stock.h). One mutex guards
 * everything; the front end holds it for a copy of a few keys. */
#include "ksa/stock.h"
#include "core/secret.h"

#include <openssl/crypto.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define STOCK_RING_BYTES (1u << 20) /* key bytes one entry may hold */
#define STOCK_WINDOW_NS 1000000000ull  /* demand is measured per second */

struct entry {
	char peer[QKM_NAME_MAX], master[QKM_NAME_MAX], slave[QKM_NAME_MAX];
	uint32_t size_bits;
	size_t cap, head, count;          /* ring of cap keys */
	struct qkm_id *ids;
	struct qkm_secret *data;          /* cap * size/8 bytes */
	size_t pending;                   /* keys refills under way will bring */
	uint64_t win_start_ns, rate;      /* keys taken per second, last window */
	uint32_t win_taken;
};

struct qkm_stock {
	pthread_mutex_t mu;
	struct entry e[QKM_STOCK_MAX_ENTRIES];
	int n;
	struct qkm_stock_taken *taken;
	size_t n_taken, cap_taken;
};

struct qkm_stock *qkm_stock_new(void)
{
	struct qkm_stock *st = calloc(1, sizeof(*st));
	if (!st)
		return NULL;
	pthread_mutex_init(&st->mu, NULL);
	return st;
}

void qkm_stock_free(struct qkm_stock *st)
{
	if (!st)
		return;
	for (int i = 0; i < st->n; i++) {
		free(st->e[i].ids);
		qkm_secret_free(st->e[i].data);
	}
	free(st->taken);
	pthread_mutex_destroy(&st->mu);
	free(st);
}

static int find(const struct qkm_stock *st, const char *master, const char *slave,
		uint32_t size_bits)
{
	for (int i = 0; i < st->n; i++)
		if (st->e[i].size_bits == size_bits && strcmp(st->e[i].master, master) == 0 &&
		    strcmp(st->e[i].slave, slave) == 0)
			return i;
	return -1;
}

int qkm_stock_want(struct qkm_stock *st, const char *peer, const char *master, const char *slave,
		   uint32_t size_bits)
{
	if (size_bits == 0 || size_bits % 8 || size_bits / 8 > STOCK_RING_BYTES / 16)
		return -1;
	pthread_mutex_lock(&st->mu);
	int i = find(st, master, slave, size_bits);
	if (i < 0 && st->n < QKM_STOCK_MAX_ENTRIES) {
		struct entry *e = &st->e[st->n];
		size_t cap = STOCK_RING_BYTES / (size_bits / 8);
		if (cap > QKM_STOCK_MAX_KEYS)
			cap = QKM_STOCK_MAX_KEYS;
		memset(e, 0, sizeof(*e));
		e->ids = calloc(cap, sizeof(*e->ids));
		e->data = qkm_secret_new(cap * (size_bits / 8));
		if (e->ids && e->data) {
			snprintf(e->peer, sizeof(e->peer), "%s", peer);
			snprintf(e->master, sizeof(e->master), "%s", master);
			snprintf(e->slave, sizeof(e->slave), "%s", slave);
			e->size_bits = size_bits;
			e->cap = cap;
			i = st->n++;
		} else {
			free(e->ids);
			qkm_secret_free(e->data);
			memset(e, 0, sizeof(*e));
		}
	}
	pthread_mutex_unlock(&st->mu);
	return i;
}

/* Time since entry e's window opened. The two threads read the clock
 * apart: the main thread may come with a time a moment before the front
 * end opened the window. That is no time at all, not 584 years (which
 * closed the window with its demand unseen and dropped the target to the
 * minimum for a second). */
static uint64_t window_age(const struct entry *e, uint64_t now_ns)
{
	return now_ns > e->win_start_ns ? now_ns - e->win_start_ns : 0;
}

/* Keys entry e should hold or have coming: a second of its demand, within
 * bounds. Half a second ran dry under 30,000 keys/s: a refill of a few
 * thousand keys takes up to 300 ms from the pool to the stock when both
 * nodes' stores are busy, and a request that finds the stock empty waits
 * for a round of its own (the p99 of bench/etsi014). */
static size_t target(const struct entry *e, uint64_t now_ns)
{
	uint64_t rate = e->rate;
	/* A demand that starts or grows is seen before its window closes:
	 * what the open window saw so far, per second, once it is a tenth of
	 * a second old. Otherwise the first second of a new pair's demand all
	 * missed the stock (7,000 requests at 30,000/s took a round each). */
	uint64_t open = window_age(e, now_ns);
	if (open >= STOCK_WINDOW_NS / 10 && open < STOCK_WINDOW_NS) {
		uint64_t seen = (uint64_t)e->win_taken * STOCK_WINDOW_NS / open;
		rate = seen > rate ? seen : rate;
	}
	size_t t = (size_t)rate;
	if (t < QKM_STOCK_MIN_KEYS)
		t = QKM_STOCK_MIN_KEYS;
	return t < e->cap ? t : e->cap;
}

/* Keys e lacks for t, counting those on the way. */
static size_t short_by(const struct entry *e, size_t t)
{
	return e->count + e->pending < t ? t - e->count - e->pending : 0;
}

/* The smallest refill: a quarter of the target, so that a second refill
 * goes out while the first is still on its way once demand outruns one. */
static size_t refill_min(size_t t)
{
	return t / 4 > 0 ? t / 4 : 1;
}

/* A refill under way brought or will not bring n of its keys. */
static void settle_pending(struct entry *e, size_t n)
{
	e->pending = n < e->pending ? e->pending - n : 0;
}

static void window(struct entry *e, uint64_t now_ns)
{
	uint64_t age = window_age(e, now_ns);
	if (age >= STOCK_WINDOW_NS) {
		/* A long quiet spell lowers the rate to what the last window saw. */
		e->rate = age < 2 * STOCK_WINDOW_NS ? e->win_taken : 0;
		e->win_taken = 0;
		e->win_start_ns = now_ns;
	}
}

uint32_t qkm_stock_refill(struct qkm_stock *st, int i, const char *peer,
			  char master[static QKM_NAME_MAX], char slave[static QKM_NAME_MAX],
			  uint32_t *size_bits, uint64_t now_ns)
{
	uint32_t n = 0;
	pthread_mutex_lock(&st->mu);
	if (i >= 0 && i < st->n) {
		struct entry *e = &st->e[i];
		window(e, now_ns);
		size_t t = target(e, now_ns);
		if (strcmp(e->peer, peer) == 0 && short_by(e, t) >= refill_min(t)) {
			size_t m = short_by(e, t);
			n = (uint32_t)(m < QKM_STOCK_MAX_REFILL ? m : QKM_STOCK_MAX_REFILL);
			e->pending += n;
			memcpy(master, e->master, QKM_NAME_MAX);
			memcpy(slave, e->slave, QKM_NAME_MAX);
			*size_bits = e->size_bits;
		}
	}
	pthread_mutex_unlock(&st->mu);
	return n;
}

int qkm_stock_add(struct qkm_stock *st, int i, size_t n, const struct qkm_id *ids,
		  const uint8_t *data, uint64_t now_ns)
{
	int rc = 0;
	pthread_mutex_lock(&st->mu);
	if (i < 0 || i >= st->n) {
		rc = QKM_EINVAL;
	} else {
		struct entry *e = &st->e[i];
		size_t b = e->size_bits / 8;
		settle_pending(e, n);
		if (e->count + n > e->cap) {
			rc = QKM_ETOOBIG;
		} else {
			for (size_t k = 0; k < n; k++) {
				size_t at = (e->head + e->count + k) % e->cap;
				e->ids[at] = ids[k];
				memcpy(e->data->p + at * b, data + k * b, b);
			}
			e->count += n;
		}
		(void)now_ns;
	}
	pthread_mutex_unlock(&st->mu);
	return rc;
}

void qkm_stock_refill_failed(struct qkm_stock *st, int i, uint32_t n)
{
	pthread_mutex_lock(&st->mu);
	if (i >= 0 && i < st->n)
		settle_pending(&st->e[i], n);
	pthread_mutex_unlock(&st->mu);
}

int qkm_stock_take(struct qkm_stock *st, const char *master, const char *slave,
		   uint32_t size_bits, uint32_t n, struct qkm_id *ids, uint8_t *data,
		   uint64_t now_ns, bool *low)
{
	int rc = QKM_ENOKEY;
	*low = false;
	pthread_mutex_lock(&st->mu);
	int i = find(st, master, slave, size_bits);
	struct entry *e = i >= 0 ? &st->e[i] : NULL;
	if (e) {
		window(e, now_ns);
		e->win_taken += n;
	}
	if (e && e->count >= n && n > 0) {
		/* Room to note the keys for the main thread first: a key that
		 * leaves the ring is always recorded. */
		if (st->n_taken + n > st->cap_taken) {
			size_t c = st->cap_taken ? st->cap_taken * 2 : 1024;
			while (c < st->n_taken + n)
				c *= 2;
			struct qkm_stock_taken *t = realloc(st->taken, c * sizeof(*t));
			if (!t)
				goto out;
			st->taken = t;
			st->cap_taken = c;
		}
		size_t b = size_bits / 8;
		for (uint32_t k = 0; k < n; k++) {
			size_t at = e->head;
			ids[k] = e->ids[at];
			memcpy(data + k * b, e->data->p + at * b, b);
			qkm_cleanse(e->data->p + at * b, b);
			e->head = (e->head + 1) % e->cap;
			e->count--;
			struct qkm_stock_taken *t = &st->taken[st->n_taken++];
			t->id = ids[k];
			t->at_ns = now_ns;
			t->entry = i;
		}
		rc = 0;
	}
	if (e) {
		size_t t = target(e, now_ns);
		*low = short_by(e, t) >= refill_min(t);
	}
out:
	pthread_mutex_unlock(&st->mu);
	return rc;
}

size_t qkm_stock_drain_taken(struct qkm_stock *st, struct qkm_stock_taken *out, size_t max)
{
	pthread_mutex_lock(&st->mu);
	size_t n = st->n_taken < max ? st->n_taken : max;
	/* Until the first take, taken is NULL; memcpy from NULL is undefined
	 * even for 0 bytes, and every flush drains. */
	if (n) {
		memcpy(out, st->taken, n * sizeof(*out));
		memmove(st->taken, st->taken + n, (st->n_taken - n) * sizeof(*out));
		st->n_taken -= n;
	}
	pthread_mutex_unlock(&st->mu);
	return n;
}

uint64_t qkm_stock_pair_count(struct qkm_stock *st, const char *master, const char *slave,
			      uint32_t size_bits)
{
	pthread_mutex_lock(&st->mu);
	int i = find(st, master, slave, size_bits);
	uint64_t n = i >= 0 ? st->e[i].count : 0;
	pthread_mutex_unlock(&st->mu);
	return n;
}

uint64_t qkm_stock_count(struct qkm_stock *st, const char *peer)
{
	uint64_t n = 0;
	pthread_mutex_lock(&st->mu);
	for (int i = 0; i < st->n; i++)
		if (!peer || strcmp(st->e[i].peer, peer) == 0)
			n += st->e[i].count;
	pthread_mutex_unlock(&st->mu);
	return n;
}

void qkm_stock_names(struct qkm_stock *st, int i, char peer[static QKM_NAME_MAX],
		     char master[static QKM_NAME_MAX], char slave[static QKM_NAME_MAX])
{
	pthread_mutex_lock(&st->mu);
	if (i >= 0 && i < st->n) {
		memcpy(peer, st->e[i].peer, QKM_NAME_MAX);
		memcpy(master, st->e[i].master, QKM_NAME_MAX);
		memcpy(slave, st->e[i].slave, QKM_NAME_MAX);
	} else {
		peer[0] = master[0] = slave[0] = 0;
	}
	pthread_mutex_unlock(&st->mu);
}

size_t qkm_stock_drop(struct qkm_stock *st, const struct qkm_id *ids, size_t n)
{
	size_t dropped = 0;
	pthread_mutex_lock(&st->mu);
	for (int i = 0; i < st->n; i++) {
		struct entry *e = &st->e[i];
		size_t b = e->size_bits / 8, w = 0;
		for (size_t k = 0; k < e->count; k++) {
			size_t at = (e->head + k) % e->cap;
			bool drop = false;
			for (size_t j = 0; j < n && !drop; j++)
				drop = qkm_id_same_round(&e->ids[at], &ids[j]);
			if (drop) {
				OPENSSL_cleanse(e->data->p + at * b, b);
				dropped++;
				continue;
			}
			size_t to = (e->head + w) % e->cap;
			if (to != at) {
				e->ids[to] = e->ids[at];
				memcpy(e->data->p + to * b, e->data->p + at * b, b);
				OPENSSL_cleanse(e->data->p + at * b, b);
			}
			w++;
		}
		e->count = w;
	}
	pthread_mutex_unlock(&st->mu);
	return dropped;
}
