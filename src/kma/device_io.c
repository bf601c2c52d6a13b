/* device_io.c - a QKD device's ETSI 014 key API as a key source (device.h).
 * The worker owns the requests to the device; the loop thread owns what is
 * done with the keys (acquisition). Shared under mu: the job queue, the key
 * queue and stop; room and up are atomic. */
#include "kma/device.h"
#include "core/log.h"
#include "core/secret.h"
#include "net/http.h"
#include "proto/etsi014.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DEV_REQUESTS_PER_POLL 64  /* enc_keys requests in one poll, at most */
#define DEV_LOG_EVERY 100         /* repeated failures: one log line per this many */

/* A slave's fetch: key IDs, in the order of the leader's round. */
struct dev_job {
	struct dev_job *next;
	uint32_t n;
	struct qkm_id ids[];
};

/* One key on its way to the loop thread. */
struct dev_key {
	struct dev_key *next;
	char id[37];
	uint64_t ts;
	struct qkm_secret *data;
};

struct qkm_device {
	struct qkm_key_source src;
	char link[QKM_NAME_MAX];
	char module[QKM_NAME_MAX];
	struct qkm_device_ops ops;
	struct event *keys_ev;        /* loop: keys arrived */

	pthread_t th;
	bool started;
	pthread_mutex_t mu;
	pthread_cond_t cv;            /* jobs or stop, for the worker */
	bool stop;
	struct dev_job *jobs, **jobs_tail;
	struct dev_key *keys, **keys_tail;
	_Atomic size_t room;
	_Atomic bool up;

	/* worker only */
	char url[QKM_ADDR_MAX + 64];
	char peer_kme[QKM_NAME_MAX];
	uint32_t max_per_request;
	bool kme_ok;                  /* the device's KME ID is this link's module */
	uint64_t failures;
};

/* ---- worker ------------------------------------------------------------- */

static void dev_set_up(struct qkm_device *d, bool up, const char *why)
{
	bool was = atomic_exchange(&d->up, up);
	if (up && !was)
		log_info("link %s: QKD device %s answers (%s side)", d->link, d->src.url,
			 d->src.master ? "master" : "slave");
	else if (!up && (was || d->failures % DEV_LOG_EVERY == 0))
		log_warnx("link %s: QKD device %s: %s", d->link, d->src.url, why);
	if (!up)
		d->failures++;
	else
		d->failures = 0;
}

/* One request; 0 with the body in out (a secure buffer) for a 200. */
static int dev_request(struct qkm_device *d, const char *what, const char *method,
		       const char *body, struct qkm_buf *out)
{
	char url[QKM_ADDR_MAX + 128], why[256];
	int status = 0;
	snprintf(url, sizeof(url), "%s/api/v1/keys/%s/%s", d->src.url, d->src.peer_sae, what);
	qkm_buf_reset(out);
	int rc = qkm_https_request_secure(url, method, body, d->src.tls.ca, d->src.tls.cert,
					  d->src.tls.key, QKM_DEVICE_TIMEOUT_MS, &status, out);
	if (rc) {
		snprintf(why, sizeof(why), "%s: %s", what, qkm_strerror(rc));
		dev_set_up(d, false, why);
		return rc;
	}
	if (status != 200) {
		/* An Error document names no key material: quote its message. */
		char msg[160] = "";
		size_t n = out->len < sizeof(msg) - 1 ? out->len : sizeof(msg) - 1;
		for (size_t i = 0; i < n; i++)
			msg[i] = (char)(out->p[i] >= 0x20 && out->p[i] < 0x7f ? out->p[i] : '?');
		msg[n] = 0;
		qkm_buf_reset(out);
		/* 503 to the master: fewer keys than asked for, not a fault. */
		if (status == 503 && d->src.master)
			return QKM_EAGAIN;
		snprintf(why, sizeof(why), "%s: HTTP %d %s", what, status, msg);
		/* A 400 to dec_keys refuses those IDs (lost at this module, or
		 * fetched already): the device itself is fine. */
		if (status == 400 && strcmp(what, "dec_keys") == 0) {
			log_warnx("link %s: QKD device %s", d->link, why);
			return QKM_ENOTFOUND;
		}
		dev_set_up(d, false, why);
		return QKM_EPEER;
	}
	return 0;
}

/* Status: the device must be this link's module; returns its key count. */
static int dev_status(struct qkm_device *d, struct qkm_buf *out, uint64_t *stored)
{
	struct qkm_etsi_status st;
	char err[200];
	int rc = dev_request(d, "status", "GET", NULL, out);
	if (rc)
		return rc;
	if (qkm_etsi_parse_status((const char *)out->p, out->len, &st, err, sizeof(err))) {
		dev_set_up(d, false, err);
		return QKM_EPEER;
	}
	const char *m = d->src.master ? d->src.sae : d->src.peer_sae;
	const char *sl = d->src.master ? d->src.peer_sae : d->src.sae;
	if (strcmp(st.master_SAE_ID, m) != 0 || strcmp(st.slave_SAE_ID, sl) != 0) {
		char why[300];
		snprintf(why, sizeof(why), "it pairs master SAE %s with slave SAE %s, not %s with %s "
			 "(links[].source sae, peer_sae, role)", st.master_SAE_ID, st.slave_SAE_ID,
			 m, sl);
		dev_set_up(d, false, why);
		return QKM_EPEER;
	}
	if (strcmp(st.source_KME_ID, d->module) != 0) {
		char why[300];
		snprintf(why, sizeof(why), "its KME ID is %s, but this link's module is %s "
			 "(links[].module): keys refused", st.source_KME_ID, d->module);
		dev_set_up(d, false, why);
		return QKM_EPEER;
	}
	if (!d->kme_ok)
		log_info("link %s: QKD device %s is KME %s, paired with %s (%u-bit keys)", d->link,
			 d->src.url, st.source_KME_ID, st.target_KME_ID, st.key_size);
	d->kme_ok = true;
	snprintf(d->peer_kme, sizeof(d->peer_kme), "%s", st.target_KME_ID);
	d->max_per_request = st.max_key_per_request ? st.max_key_per_request : 1;
	if (d->max_per_request > QKM_ETSI_MAX_IDS)
		d->max_per_request = QKM_ETSI_MAX_IDS;
	*stored = st.stored_key_count;
	dev_set_up(d, true, NULL);
	return 0;
}

/* Queues the keys of a Key container for the loop thread. want_len: the
 * size every key must have (0: any). Returns how many were queued. */
static size_t dev_queue_keys(struct qkm_device *d, const struct qkm_etsi_keyset *ks,
			     size_t want_len)
{
	struct dev_key *head = NULL, **tail = &head;
	size_t n = 0;
	uint64_t ts = qkm_now_ns();
	for (size_t i = 0; i < ks->n; i++) {
		char u[37];
		qkm_id_uuid_str(&ks->ids[i], u);
		if (ks->len[i] == 0 || (want_len && ks->len[i] != want_len) ||
		    ks->len[i] > QKM_KEYFILE_MAX_DATA) {
			log_warnx("link %s: QKD device gave key %s of %zu bytes; refused", d->link,
				  u, ks->len[i]);
			continue;
		}
		struct dev_key *k = calloc(1, sizeof(*k));
		if (!k || !(k->data = qkm_secret_dup(ks->data.p + ks->off[i], ks->len[i]))) {
			free(k);
			log_warnx("link %s: key %s from the QKD device dropped: out of memory",
				  d->link, u);
			continue;
		}
		memcpy(k->id, u, sizeof(k->id));
		k->ts = ts;
		*tail = k;
		tail = &k->next;
		n++;
	}
	if (!head)
		return 0;
	pthread_mutex_lock(&d->mu);
	*d->keys_tail = head;
	d->keys_tail = tail;
	pthread_mutex_unlock(&d->mu);
	event_active(d->keys_ev, EV_READ, 0);
	return n;
}

/* Master: as many keys as the device holds and acquisition takes. */
static void dev_poll_master(struct qkm_device *d, struct qkm_buf *out,
			    struct qkm_etsi_keyset *ks)
{
	uint64_t avail;
	size_t key_bytes = d->src.size_bits / 8;
	if (dev_status(d, out, &avail))
		return;
	for (int r = 0; r < DEV_REQUESTS_PER_POLL && avail; r++) {
		size_t room = atomic_load(&d->room) / key_bytes;
		uint64_t n = avail < d->src.batch ? avail : d->src.batch;
		if (n > d->max_per_request)
			n = d->max_per_request;
		if (n > room)
			n = room;
		if (n == 0)
			return;
		char *body = qkm_etsi_enc_body((uint32_t)n, d->src.size_bits), err[200];
		int rc = body ? dev_request(d, "enc_keys", "POST", body, out) : QKM_ENOMEM;
		free(body);
		if (rc)
			return;
		if (qkm_etsi_parse_keys((const char *)out->p, out->len, ks, err, sizeof(err))) {
			dev_set_up(d, false, err);
			return;
		}
		size_t got = dev_queue_keys(d, ks, key_bytes);
		size_t taken = got * key_bytes;
		size_t left = atomic_load(&d->room);
		atomic_store(&d->room, left > taken ? left - taken : 0);
		avail -= ks->n < avail ? ks->n : avail;
		pthread_mutex_lock(&d->mu);
		bool stop = d->stop;
		pthread_mutex_unlock(&d->mu);
		if (stop || ks->n < n)
			return;
	}
}

/* Slave: the keys a round of the leader names. */
static void dev_fetch(struct qkm_device *d, const struct dev_job *j, struct qkm_buf *out,
		      struct qkm_etsi_keyset *ks)
{
	uint64_t stored;
	if (!d->kme_ok && dev_status(d, out, &stored))
		return;
	for (uint32_t at = 0; at < j->n;) {
		uint32_t n = j->n - at;
		if (n > d->max_per_request)
			n = d->max_per_request;
		char *body = qkm_etsi_dec_body(j->ids + at, n), err[200];
		int rc = body ? dev_request(d, "dec_keys", "POST", body, out) : QKM_ENOMEM;
		free(body);
		if (rc) {
			char u[37];
			qkm_id_uuid_str(&j->ids[at], u);
			/* The round waits for these keys, then aborts on both sides. */
			log_warnx("link %s: keys %s and %u more not fetched from the QKD device (%s): "
				  "their round aborts", d->link, u, n - 1,
				  rc == QKM_ENOTFOUND ? "refused" : qkm_strerror(rc));
			return;
		}
		if (qkm_etsi_parse_keys((const char *)out->p, out->len, ks, err, sizeof(err))) {
			dev_set_up(d, false, err);
			return;
		}
		dev_set_up(d, true, NULL);
		(void)dev_queue_keys(d, ks, 0);
		at += n;
	}
}

static void deadline_in(struct timespec *ts, uint32_t ms)
{
	clock_gettime(CLOCK_MONOTONIC, ts);
	ts->tv_sec += ms / 1000;
	ts->tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts->tv_nsec >= 1000000000L) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000L;
	}
}

static void *dev_main(void *arg)
{
	struct qkm_device *d = arg;
	struct qkm_buf out;
	struct qkm_etsi_keyset *ks = malloc(sizeof(*ks));
	struct timespec next;
	if (!ks) {
		log_warnx("link %s: QKD device worker: out of memory", d->link);
		return NULL;
	}
	qkm_buf_init(&out, (size_t)64 << 20, true);
	qkm_etsi_keyset_init(ks);
	deadline_in(&next, 0);
	pthread_mutex_lock(&d->mu);
	while (!d->stop) {
		struct dev_job *j = d->jobs;
		if (j) {
			d->jobs = j->next;
			if (!d->jobs)
				d->jobs_tail = &d->jobs;
		} else if (pthread_cond_timedwait(&d->cv, &d->mu, &next) == 0) {
			continue; /* a job or stop: look again */
		}
		pthread_mutex_unlock(&d->mu);
		if (j) {
			dev_fetch(d, j, &out, ks);
			free(j);
		} else {
			/* The poll is due: the master draws keys; the slave checks
			 * the device is there (module_up). */
			uint64_t stored;
			if (d->src.master)
				dev_poll_master(d, &out, ks);
			else
				(void)dev_status(d, &out, &stored);
			deadline_in(&next, d->src.poll_ms);
		}
		qkm_etsi_keyset_fini(ks);
		qkm_etsi_keyset_init(ks);
		pthread_mutex_lock(&d->mu);
	}
	pthread_mutex_unlock(&d->mu);
	qkm_etsi_keyset_fini(ks);
	free(ks);
	qkm_buf_fini(&out);
	return NULL;
}

/* ---- loop thread ---------------------------------------------------------- */

static void dev_on_keys(evutil_socket_t fd, short what, void *arg)
{
	struct qkm_device *d = arg;
	pthread_mutex_lock(&d->mu);
	struct dev_key *k = d->keys;
	d->keys = NULL;
	d->keys_tail = &d->keys;
	pthread_mutex_unlock(&d->mu);
	while (k) {
		struct dev_key *next = k->next;
		struct qkm_keyfile kf;
		qkm_keyfile_init(&kf, QKM_KF_QKD);
		snprintf(kf.m.qkd.qkd_key_id, sizeof(kf.m.qkd.qkd_key_id), "%s", k->id);
		kf.m.qkd.key_length = (uint32_t)(k->data->len * 8);
		snprintf(kf.m.qkd.qkd_module_id, sizeof(kf.m.qkd.qkd_module_id), "%s", d->module);
		kf.m.qkd.generation_time_stamp = k->ts;
		kf.data = k->data;
		d->ops.keyfile(&kf, d->ops.arg);
		qkm_keyfile_fini(&kf); /* the data, if not taken */
		free(k);
		k = next;
	}
}

void qkm_device_fetch(struct qkm_device *d, const char (*ids)[QKM_NAME_MAX], uint32_t n)
{
	struct dev_job *j = malloc(sizeof(*j) + (size_t)n * sizeof(j->ids[0]));
	if (!j) {
		log_warnx("link %s: out of memory asking the QKD device for %u key(s)", d->link, n);
		return;
	}
	j->next = NULL;
	j->n = 0;
	for (uint32_t i = 0; i < n; i++) {
		if (strlen(ids[i]) != 36 || qkm_id_parse(ids[i], &j->ids[j->n])) {
			log_warnx("link %s: the leader names QKD-key %s, which is no key_ID of a QKD "
				  "device (is its source etsi014 too?)", d->link, ids[i]);
			continue;
		}
		j->n++;
	}
	if (!j->n) {
		free(j);
		return;
	}
	pthread_mutex_lock(&d->mu);
	*d->jobs_tail = j;
	d->jobs_tail = &j->next;
	pthread_cond_signal(&d->cv);
	pthread_mutex_unlock(&d->mu);
}

void qkm_device_set_room(struct qkm_device *d, size_t bytes) { atomic_store(&d->room, bytes); }

bool qkm_device_up(const struct qkm_device *d) { return atomic_load(&d->up); }

struct qkm_device *qkm_device_new(struct event_base *base, const struct qkm_key_source *src,
				  const char *link, const char *module,
				  const struct qkm_device_ops *ops)
{
	struct qkm_device *d = calloc(1, sizeof(*d));
	pthread_condattr_t ca;
	if (!d)
		return NULL;
	d->src = *src;
	snprintf(d->link, sizeof(d->link), "%s", link);
	snprintf(d->module, sizeof(d->module), "%s", module);
	d->ops = *ops;
	d->jobs_tail = &d->jobs;
	d->keys_tail = &d->keys;
	d->max_per_request = 1;
	atomic_init(&d->room, 0);
	atomic_init(&d->up, false);
	/* Trailing slashes would double in the request path. */
	size_t ul = strlen(d->src.url);
	while (ul > 8 && d->src.url[ul - 1] == '/')
		d->src.url[--ul] = 0;
	pthread_mutex_init(&d->mu, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&d->cv, &ca);
	pthread_condattr_destroy(&ca);
	d->keys_ev = event_new(base, -1, 0, dev_on_keys, d);
	if (!d->keys_ev || pthread_create(&d->th, NULL, dev_main, d) != 0) {
		log_warnx("link %s: cannot start the QKD device worker", link);
		qkm_device_free(d);
		return NULL;
	}
	d->started = true;
	log_info("link %s: keys from QKD device %s as %s SAE %s (peer SAE %s)", link, src->url,
		 src->master ? "master" : "slave", src->sae, src->peer_sae);
	return d;
}

void qkm_device_free(struct qkm_device *d)
{
	if (!d)
		return;
	if (d->started) {
		pthread_mutex_lock(&d->mu);
		d->stop = true;
		pthread_cond_signal(&d->cv);
		pthread_mutex_unlock(&d->mu);
		pthread_join(d->th, NULL);
	}
	while (d->jobs) {
		struct dev_job *j = d->jobs;
		d->jobs = j->next;
		free(j);
	}
	while (d->keys) {
		struct dev_key *k = d->keys;
		d->keys = k->next;
		qkm_secret_free(k->data);
		free(k);
	}
	if (d->keys_ev)
		event_free(d->keys_ev);
	pthread_cond_destroy(&d->cv);
	pthread_mutex_destroy(&d->mu);
	free(d);
}
