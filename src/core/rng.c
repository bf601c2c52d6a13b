/* rng.c - the RNG source of rng.h: a ring in the secure heap, filled by one
 * helper thread, emptied by the callers under one mutex. The helper draws
 * into the ring's free part outside the lock (callers take only the ready
 * part, so the two never touch the same bytes); callers copy out and wipe
 * what they take. */
#include "core/rng.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "core/log.h"
#include "core/secret.h"

/* The helper draws at most this much at a time, so that a caller finds the
 * ring filling in steps rather than all at once. A multiple of 4: a device
 * read as a stream is then cut only at multiples of 4 (tests count words). */
#define RNG_CHUNK (64u << 10)

struct qkm_rng {
	pthread_mutex_t mu;
	pthread_cond_t room;     /* the helper waits here while the ring is full */
	struct qkm_secret *ring; /* ring->len bytes */
	size_t head;             /* the first ready byte */
	size_t ready;            /* ready bytes from head on, wrapping */
	char *device;            /* NULL: getrandom */
	int fd;                  /* the device, opened once; -1 if not (yet) */
	bool ended;              /* a read of it returned nothing: it has no more */
	bool failed;             /* a read of fd failed: each draw opens it anew */
	bool stop;
	bool started;
	pthread_t th;
};

/* Reads up to n bytes of the source (the device fd, or getrandom if
 * fd < 0) into p; *got says how many. 0 when all came; else QKM_ECRYPTO
 * (getrandom) or QKM_EIO, with *ended when the device had no more. */
static int draw(int fd, uint8_t *p, size_t n, size_t *got, bool *ended)
{
	*got = 0;
	*ended = false;
	while (*got < n) {
		ssize_t k = fd < 0 ? getrandom(p + *got, n - *got, 0) : read(fd, p + *got, n - *got);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0) {
			*ended = k == 0;
			return fd < 0 ? QKM_ECRYPTO : QKM_EIO;
		}
		*got += (size_t)k;
	}
	return 0;
}

/* After a draw from the shared fd that did not give everything: an end is
 * for good, an error makes every later draw open the device anew (it may
 * come back). Under g->mu. */
static void shared_fd_trouble(struct qkm_rng *g, bool ended)
{
	if (ended)
		g->ended = true;
	else
		g->failed = true;
}

static void *helper(void *arg)
{
	struct qkm_rng *g = arg;
	size_t cap = g->ring->len;
	pthread_mutex_lock(&g->mu);
	while (!g->stop) {
		if (g->ready == cap) {
			pthread_cond_wait(&g->room, &g->mu);
			continue;
		}
		size_t tail = (g->head + g->ready) % cap;
		size_t n = cap - g->ready;
		if (n > cap - tail)
			n = cap - tail;
		if (n > RNG_CHUNK)
			n = RNG_CHUNK;
		pthread_mutex_unlock(&g->mu);
		size_t got;
		bool ended;
		int rc = draw(g->fd, g->ring->p + tail, n, &got, &ended);
		pthread_mutex_lock(&g->mu);
		g->ready += got; /* a device that ends: what it gave is good */
		if (rc) {
			shared_fd_trouble(g, ended);
			log_warnx("rng: %s %s; relays draw them as they need them",
				  g->device ? g->device : "getrandom",
				  ended ? "has no more bytes" : "stopped giving bytes");
			break;
		}
	}
	pthread_mutex_unlock(&g->mu);
	return NULL;
}

struct qkm_rng *qkm_rng_new(const char *device, size_t cap)
{
	struct qkm_rng *g = calloc(1, sizeof(*g));
	if (!g)
		return NULL;
	g->fd = -1;
	if (!cap || !(g->ring = qkm_secret_new_raw(cap)) ||
	    (device && device[0] && !(g->device = strdup(device)))) {
		qkm_secret_free(g->ring);
		free(g);
		return NULL;
	}
	pthread_mutex_init(&g->mu, NULL);
	pthread_cond_init(&g->room, NULL);
	if (g->device && (g->fd = open(g->device, O_RDONLY | O_CLOEXEC)) < 0) {
		log_warn("rng: %s", g->device);
		return g; /* drawn on the spot, each time opened again */
	}
	g->started = pthread_create(&g->th, NULL, helper, g) == 0;
	if (!g->started)
		log_warnx("rng: cannot start the helper thread; relays draw random bytes as they "
			  "need them");
	return g;
}

int qkm_rng_fill(struct qkm_rng *g, uint8_t *p, size_t n)
{
	size_t cap = g->ring->len, got = 0;
	pthread_mutex_lock(&g->mu);
	while (got < n && g->ready) {
		size_t k = n - got;
		if (k > g->ready)
			k = g->ready;
		if (k > cap - g->head)
			k = cap - g->head;
		memcpy(p + got, g->ring->p + g->head, k);
		qkm_cleanse(g->ring->p + g->head, k);
		g->head = (g->head + k) % cap;
		g->ready -= k;
		got += k;
	}
	if (got)
		pthread_cond_signal(&g->room);
	int fd = g->fd;
	bool ended = g->ended, shared = fd >= 0 && !g->failed;
	pthread_mutex_unlock(&g->mu);
	if (got == n)
		return 0;
	/* The rest now: getrandom; or the shared fd (reads on it never hand
	 * out the same bytes twice); or, the device not opened yet or failing,
	 * the device opened for this draw; nothing from a device that ended. */
	int rc = QKM_EIO;
	size_t more;
	if (!g->device) {
		rc = draw(-1, p + got, n - got, &more, &ended);
	} else if (shared && !ended) {
		if ((rc = draw(fd, p + got, n - got, &more, &ended))) {
			pthread_mutex_lock(&g->mu);
			shared_fd_trouble(g, ended);
			pthread_mutex_unlock(&g->mu);
		}
	} else if (!ended && (fd = open(g->device, O_RDONLY | O_CLOEXEC)) >= 0) {
		rc = draw(fd, p + got, n - got, &more, &ended);
		close(fd);
	}
	if (rc)
		qkm_cleanse(p, n);
	return rc;
}

size_t qkm_rng_ready(struct qkm_rng *g)
{
	pthread_mutex_lock(&g->mu);
	size_t n = g->ready;
	pthread_mutex_unlock(&g->mu);
	return n;
}

void qkm_rng_free(struct qkm_rng *g)
{
	if (!g)
		return;
	if (g->started) {
		pthread_mutex_lock(&g->mu);
		g->stop = true;
		pthread_cond_signal(&g->room);
		pthread_mutex_unlock(&g->mu);
		pthread_join(g->th, NULL);
	}
	if (g->fd >= 0)
		close(g->fd);
	qkm_secret_free(g->ring);
	pthread_cond_destroy(&g->room);
	pthread_mutex_destroy(&g->mu);
	free(g->device);
	free(g);
}
