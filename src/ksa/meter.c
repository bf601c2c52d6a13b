/* meter.c - ETSI 014 answer counts behind one mutex (meter.h). The table
 * only grows, to QKM_METRICS_MAX_ANSWERS kinds; a lookup is a linear scan
 * from the most recently added kind (a node has few SAEs; an answer costs a
 * few string compares, nothing next to its TLS write). */
#include "ksa/meter.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct qkm_meter {
	pthread_mutex_t mu;
	struct qkm_metrics_etsi d;
};

struct qkm_meter *qkm_meter_new(void)
{
	struct qkm_meter *m = calloc(1, sizeof(*m));
	if (m && pthread_mutex_init(&m->mu, NULL) != 0) {
		free(m);
		return NULL;
	}
	return m;
}

void qkm_meter_free(struct qkm_meter *m)
{
	if (!m)
		return;
	pthread_mutex_destroy(&m->mu);
	free(m);
}

void qkm_meter_answer(struct qkm_meter *m, const char *sae, enum qkm_etsi_endpoint ep, int code,
		      const char *reason, uint32_t keys, uint64_t latency_ns)
{
	if (!m)
		return;
	if ((unsigned)ep >= QKM_EP_N)
		ep = QKM_EP_OTHER;
	char who[QKM_NAME_MAX], why[QKM_METRICS_REASON_MAX];
	snprintf(who, sizeof(who), "%s", sae ? sae : "");
	snprintf(why, sizeof(why), "%s", reason && code != 200 ? reason : "");
	pthread_mutex_lock(&m->mu);
	struct qkm_metrics_etsi *d = &m->d;
	qkm_hist_add(&d->latency[ep], latency_ns);
	struct qkm_metrics_answer *a = NULL;
	for (size_t i = d->n; i-- > 0;) {
		struct qkm_metrics_answer *x = &d->a[i];
		if (x->code == code && x->endpoint == ep && strcmp(x->sae, who) == 0 &&
		    strcmp(x->reason, why) == 0) {
			a = x;
			break;
		}
	}
	if (!a && d->n < QKM_METRICS_MAX_ANSWERS) {
		a = &d->a[d->n++];
		memcpy(a->sae, who, sizeof(a->sae));
		memcpy(a->reason, why, sizeof(a->reason));
		a->endpoint = (uint8_t)ep;
		a->code = (uint16_t)code;
	}
	if (a) {
		a->count++;
		if (code == 200)
			a->keys += keys;
	} else {
		d->unlabelled++;
	}
	pthread_mutex_unlock(&m->mu);
}

void qkm_meter_snapshot(struct qkm_meter *m, struct qkm_metrics_etsi *out)
{
	if (!m) {
		memset(out, 0, sizeof(*out));
		return;
	}
	pthread_mutex_lock(&m->mu);
	out->n = m->d.n;
	memcpy(out->a, m->d.a, m->d.n * sizeof(m->d.a[0]));
	out->unlabelled = m->d.unlabelled;
	memcpy(out->latency, m->d.latency, sizeof(out->latency));
	pthread_mutex_unlock(&m->mu);
}
