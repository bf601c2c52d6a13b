/* kme.c - a simulated QKD device's ETSI 014 key API (kme.h). Invariants: a
 * key is given to the master once (it leaves the master's queue) and to the
 * slave once (it leaves the slave's table); a refused request gives out and
 * removes nothing. */
#include "sim/kme.h"
#include "core/log.h"
#include "proto/etsi014.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define KME_HASH 4096u

struct kme_key {
	struct kme_key *next;   /* FIFO: the master's queue, or the slave's */
	struct kme_key *hnext;  /* the slave's table */
	struct qkm_id id;
	char qkd_id[QKM_NAME_MAX];
	struct qkm_secret *m, *s;
};

struct kme_fifo {
	struct kme_key *head, *tail;
	size_t n;
};

struct qkm_kme {
	struct qkm_kme_cfg cfg;
	struct kme_fifo master;            /* produced, not yet taken by the master */
	struct kme_fifo slave;             /* taken by the master, oldest first */
	struct kme_key *table[KME_HASH];   /* the slave's, by key_ID */
	uint64_t dropped;                  /* keys the slave never fetched, dropped */
};

static void fifo_push(struct kme_fifo *f, struct kme_key *e)
{
	e->next = NULL;
	if (f->tail)
		f->tail->next = e;
	else
		f->head = e;
	f->tail = e;
	f->n++;
}

static struct kme_key *fifo_pop(struct kme_fifo *f)
{
	struct kme_key *e = f->head;
	if (!e)
		return NULL;
	f->head = e->next;
	if (!f->head)
		f->tail = NULL;
	f->n--;
	return e;
}

static void key_free(struct kme_key *e)
{
	if (!e)
		return;
	qkm_secret_free(e->m);
	qkm_secret_free(e->s);
	free(e);
}

static uint32_t id_slot(const struct qkm_id *id)
{
	return ((uint32_t)id->b[0] << 8 | id->b[1]) % KME_HASH;
}

struct qkm_kme *qkm_kme_new(const struct qkm_kme_cfg *cfg)
{
	struct qkm_kme *k = calloc(1, sizeof(*k));
	if (k)
		k->cfg = *cfg;
	return k;
}

void qkm_kme_free(struct qkm_kme *k)
{
	if (!k)
		return;
	struct kme_key *e;
	while ((e = fifo_pop(&k->master)) != NULL)
		key_free(e);
	while ((e = fifo_pop(&k->slave)) != NULL)
		key_free(e);
	free(k);
}

void qkm_kme_uuid(const char *qkd_id, struct qkm_id *out)
{
	static const char tag[] = "qkm-sim-kme:";
	uint8_t md[32];
	unsigned int n = sizeof(md);
	EVP_MD_CTX *c = EVP_MD_CTX_new();
	int ok = c && EVP_DigestInit_ex(c, EVP_sha256(), NULL) &&
		 EVP_DigestUpdate(c, tag, sizeof(tag) - 1) &&
		 EVP_DigestUpdate(c, qkd_id, strlen(qkd_id)) && EVP_DigestFinal_ex(c, md, &n);
	EVP_MD_CTX_free(c);
	if (!ok) /* no SHA-256: cannot happen with OpenSSL's default provider */
		memset(md, 0x5a, sizeof(md));
	memcpy(out->b, md, QKM_ID_LEN);
	out->b[6] = (uint8_t)((out->b[6] & 0x0f) | 0x80); /* version 8 */
	out->b[8] = (uint8_t)((out->b[8] & 0x3f) | 0x80); /* variant 10 */
}

bool qkm_kme_full(const struct qkm_kme *k)
{
	return (k->master.n + 1) * (size_t)k->cfg.key_bytes > k->cfg.max_bytes;
}

size_t qkm_kme_for_master(const struct qkm_kme *k) { return k->master.n; }
size_t qkm_kme_for_slave(const struct qkm_kme *k) { return k->slave.n; }

int qkm_kme_add(struct qkm_kme *k, const char *qkd_id, const struct qkm_secret *m,
		const struct qkm_secret *s)
{
	if (!m || m->len != k->cfg.key_bytes || (s && s->len != k->cfg.key_bytes))
		return QKM_EINVAL;
	if (qkm_kme_full(k))
		return QKM_ETOOBIG;
	struct kme_key *e = calloc(1, sizeof(*e));
	if (!e)
		return QKM_ENOMEM;
	e->m = qkm_secret_dup(m->p, m->len);
	e->s = s ? qkm_secret_dup(s->p, s->len) : NULL;
	if (!e->m || (s && !e->s)) {
		key_free(e);
		return QKM_ENOMEM;
	}
	snprintf(e->qkd_id, sizeof(e->qkd_id), "%s", qkd_id);
	qkm_kme_uuid(qkd_id, &e->id);
	fifo_push(&k->master, e);
	return 0;
}

/* ---- requests ------------------------------------------------------------ */

static int reply_error(struct qkm_buf *out, int code, const char *msg)
{
	char *j = qkm_etsi_error_json(msg, NULL);
	qkm_buf_reset(out);
	if (!j || qkm_buf_put(out, j, strlen(j)))
		code = 503;
	free(j);
	return code;
}

static int on_status(struct qkm_kme *k, bool master, struct qkm_buf *out)
{
	struct qkm_etsi_status st;
	memset(&st, 0, sizeof(st));
	snprintf(st.source_KME_ID, sizeof(st.source_KME_ID), "%s",
		 master ? k->cfg.master_kme : k->cfg.slave_kme);
	snprintf(st.target_KME_ID, sizeof(st.target_KME_ID), "%s",
		 master ? k->cfg.slave_kme : k->cfg.master_kme);
	snprintf(st.master_SAE_ID, sizeof(st.master_SAE_ID), "%s", k->cfg.master_sae);
	snprintf(st.slave_SAE_ID, sizeof(st.slave_SAE_ID), "%s", k->cfg.slave_sae);
	st.key_size = st.max_key_size = st.min_key_size = k->cfg.key_bytes * 8;
	st.stored_key_count = master ? k->master.n : k->slave.n;
	st.max_key_count = k->cfg.max_bytes / k->cfg.key_bytes;
	st.max_key_per_request = QKM_KME_MAX_PER_REQUEST;
	char *j = qkm_etsi_status_json(&st);
	int code = 200;
	if (!j || qkm_buf_put(out, j, strlen(j)))
		code = reply_error(out, 503, "out of memory");
	free(j);
	return code;
}

static int on_enc(struct qkm_kme *k, const struct qkm_etsi_key_request *r, struct qkm_buf *out)
{
	char msg[160];
	uint32_t bits = k->cfg.key_bytes * 8;
	if (r->n_additional)
		return reply_error(out, 400, "additional slave SAEs are not supported by this device");
	if (r->size && r->size != bits) {
		snprintf(msg, sizeof(msg), "size must be %u (this device's key size)", bits);
		return reply_error(out, 400, msg);
	}
	if (r->number > QKM_KME_MAX_PER_REQUEST) {
		snprintf(msg, sizeof(msg), "number must be at most %d (max_key_per_request)",
			 QKM_KME_MAX_PER_REQUEST);
		return reply_error(out, 400, msg);
	}
	if (r->number > k->master.n) {
		snprintf(msg, sizeof(msg), "not enough key material: %u key(s) asked for, %zu "
			 "waiting", r->number, k->master.n);
		return reply_error(out, 503, msg);
	}
	/* The document first (nothing leaves the queue if it cannot be made). */
	struct qkm_id ids[QKM_KME_MAX_PER_REQUEST];
	const uint8_t *keys[QKM_KME_MAX_PER_REQUEST];
	size_t lens[QKM_KME_MAX_PER_REQUEST];
	struct kme_key *e = k->master.head;
	for (uint32_t i = 0; i < r->number; i++, e = e->next) {
		ids[i] = e->id;
		keys[i] = e->m->p;
		lens[i] = e->m->len;
	}
	if (qkm_etsi_keys_json(out, r->number, ids, keys, lens))
		return reply_error(out, 503, "out of memory");
	for (uint32_t i = 0; i < r->number; i++) {
		e = fifo_pop(&k->master);
		qkm_secret_free(e->m);
		e->m = NULL;
		if (!e->s) { /* the slave's module lost it */
			key_free(e);
			continue;
		}
		uint32_t h = id_slot(&e->id);
		e->hnext = k->table[h];
		k->table[h] = e;
		fifo_push(&k->slave, e);
	}
	/* Keys the slave never fetches do not pile up for ever. */
	while (k->slave.n * (size_t)k->cfg.key_bytes > k->cfg.max_bytes) {
		e = fifo_pop(&k->slave);
		struct kme_key **pp = &k->table[id_slot(&e->id)];
		while (*pp != e)
			pp = &(*pp)->hnext;
		*pp = e->hnext;
		if (k->dropped++ % 1000 == 0)
			log_warnx("device %s: keys the slave %s has not fetched dropped (oldest first)",
				  k->cfg.slave_kme, k->cfg.slave_sae);
		key_free(e);
	}
	return 200;
}

static struct kme_key **table_find(struct qkm_kme *k, const struct qkm_id *id)
{
	struct kme_key **pp = &k->table[id_slot(id)];
	while (*pp && !qkm_id_eq(&(*pp)->id, id))
		pp = &(*pp)->hnext;
	return *pp ? pp : NULL;
}

static int on_dec(struct qkm_kme *k, const struct qkm_etsi_key_ids *r, struct qkm_buf *out)
{
	const uint8_t *keys[QKM_ETSI_MAX_IDS];
	size_t lens[QKM_ETSI_MAX_IDS];
	for (size_t i = 0; i < r->n; i++) {
		struct kme_key **pp = table_find(k, &r->ids[i]);
		if (!pp) {
			char u[37], msg[160];
			qkm_id_uuid_str(&r->ids[i], u);
			snprintf(msg, sizeof(msg), "key_ID %s not found (not given to the master, or "
				 "fetched already)", u);
			return reply_error(out, 400, msg);
		}
		keys[i] = (*pp)->s->p;
		lens[i] = (*pp)->s->len;
	}
	if (qkm_etsi_keys_json(out, r->n, r->ids, keys, lens))
		return reply_error(out, 503, "out of memory");
	for (size_t i = 0; i < r->n; i++) {
		struct kme_key **pp = table_find(k, &r->ids[i]), *e = *pp;
		*pp = e->hnext;
		/* Unlink from the slave's FIFO (it is usually near the head). */
		struct kme_key *prev = NULL, *c = k->slave.head;
		while (c != e)
			prev = c, c = c->next;
		if (prev)
			prev->next = e->next;
		else
			k->slave.head = e->next;
		if (k->slave.tail == e)
			k->slave.tail = prev;
		k->slave.n--;
		key_free(e);
	}
	return 200;
}

int qkm_kme_request(struct qkm_kme *k, const char *caller, const char *method, const char *path,
		    const char *query, const char *body, size_t len, struct qkm_buf *out)
{
	char sae[QKM_NAME_MAX], what[16], err[300];
	const char *msg;
	int code = qkm_etsi_route(path, sae, what, &msg);
	if (code)
		return reply_error(out, code, msg);
	bool master = strcmp(caller, k->cfg.master_sae) == 0;
	bool slave = strcmp(caller, k->cfg.slave_sae) == 0;
	bool get = strcmp(method, "GET") == 0;
	const char *other = master ? k->cfg.slave_sae : k->cfg.master_sae;
	if (!master && !slave) {
		snprintf(err, sizeof(err), "SAE '%s' is neither the master (%s) nor the slave (%s) of "
			 "this device", caller, k->cfg.master_sae, k->cfg.slave_sae);
		return reply_error(out, 401, err);
	}
	if (strcmp(sae, other) != 0) {
		snprintf(err, sizeof(err), "this device pairs %s with %s only, not with '%s'", caller,
			 other, sae);
		return reply_error(out, 400, err);
	}
	if (strcmp(what, "status") == 0)
		return get ? on_status(k, master, out) : reply_error(out, 405, "method not allowed");
	if (strcmp(what, "enc_keys") == 0) {
		struct qkm_etsi_key_request r;
		if (!master)
			return reply_error(out, 401, "only the master SAE calls enc_keys");
		if (get ? qkm_etsi_parse_enc_query(query, &r, err, sizeof(err))
			: qkm_etsi_parse_key_request(body, len, &r, err, sizeof(err)))
			return reply_error(out, 400, err);
		return on_enc(k, &r, out);
	}
	if (!slave)
		return reply_error(out, 401, "only the slave SAE calls dec_keys");
	struct qkm_etsi_key_ids *r = malloc(sizeof(*r));
	if (!r)
		return reply_error(out, 503, "out of memory");
	if (get ? qkm_etsi_parse_dec_query(query, r, err, sizeof(err))
		: qkm_etsi_parse_key_ids(body, len, r, err, sizeof(err)))
		code = reply_error(out, 400, err);
	else
		code = on_dec(k, r, out);
	free(r);
	return code;
}
