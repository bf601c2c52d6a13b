/* saes.c - the append-only, lock-free access list (saes.h). Writers fill an
 * entry completely, then publish it by a release store of the count;
 * readers load the count with acquire and scan from the newest entry, so
 * the latest registration of a name wins. The revoked flag is atomic. */
#include "core/saes.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

struct sae_ent {
	char id[QKM_NAME_MAX];
	char node[QKM_NAME_MAX];
	atomic_bool revoked;    /* also set when a newer entry supersedes it */
};

struct qkm_saes {
	atomic_size_t n;
	struct sae_ent e[QKM_SAES_MAX];
};

static const struct sae_ent *find(const struct qkm_saes *r, const char *sae)
{
	size_t n = atomic_load_explicit(&r->n, memory_order_acquire);
	for (size_t i = n; i-- > 0;)
		if (strcmp(r->e[i].id, sae) == 0)
			return &r->e[i];
	return NULL;
}

static int append(struct qkm_saes *r, const char *id, const char *node, bool revoked)
{
	size_t n = atomic_load_explicit(&r->n, memory_order_relaxed);
	if (n == QKM_SAES_MAX)
		return QKM_ETOOBIG;
	struct sae_ent *x = &r->e[n];
	memcpy(x->id, id, strnlen(id, QKM_NAME_MAX - 1));
	x->id[strnlen(id, QKM_NAME_MAX - 1)] = '\0';
	memcpy(x->node, node, strnlen(node, QKM_NAME_MAX - 1));
	x->node[strnlen(node, QKM_NAME_MAX - 1)] = '\0';
	atomic_init(&x->revoked, revoked);
	atomic_store_explicit(&r->n, n + 1, memory_order_release);
	return 0;
}

struct qkm_saes *qkm_saes_new(const struct qkm_node_cfg *cfg)
{
	struct qkm_saes *r = calloc(1, sizeof(*r));
	if (!r)
		return NULL;
	atomic_init(&r->n, 0);
	for (size_t i = 0; i < cfg->n_saes; i++)
		if (append(r, cfg->saes[i].id, cfg->saes[i].node, false)) {
			free(r);
			return NULL;
		}
	return r;
}

void qkm_saes_free(struct qkm_saes *r) { free(r); }

const char *qkm_saes_node(const struct qkm_saes *r, const char *sae)
{
	const struct sae_ent *x = find(r, sae);
	return x && !atomic_load(&x->revoked) ? x->node : NULL;
}

bool qkm_saes_slot(const struct qkm_saes *r, const char *sae, size_t *slot)
{
	const struct sae_ent *x = find(r, sae);
	if (!x || atomic_load(&x->revoked))
		return false;
	*slot = (size_t)(x - r->e);
	return true;
}

bool qkm_saes_revoked(const struct qkm_saes *r, const char *sae)
{
	const struct sae_ent *x = find(r, sae);
	return x && atomic_load(&x->revoked);
}

int qkm_saes_set(struct qkm_saes *r, const struct qkm_sae_entry *e, size_t n, size_t *changed)
{
	size_t ch = 0;
	int rc = 0;
	for (size_t i = 0; i < n && !rc; i++) {
		struct sae_ent *x = (struct sae_ent *)find(r, e[i].id);
		if (x && strcmp(x->node, e[i].node) == 0) {
			if (atomic_load(&x->revoked) != e[i].revoked) {
				atomic_store(&x->revoked, e[i].revoked);
				ch++;
			}
			continue;
		}
		if (!x && e[i].revoked)
			continue; /* never known here: nothing to revoke */
		if ((rc = append(r, e[i].id, e[i].node, e[i].revoked)) == 0) {
			if (x)
				atomic_store(&x->revoked, true); /* superseded */
			ch++;
		}
	}
	/* Absent from the controller's list: revoked. */
	size_t cnt = atomic_load_explicit(&r->n, memory_order_acquire);
	for (size_t i = 0; i < cnt && !rc; i++) {
		bool listed = false;
		for (size_t j = 0; j < n && !listed; j++)
			listed = strcmp(r->e[i].id, e[j].id) == 0;
		if (!listed && !atomic_load(&r->e[i].revoked)) {
			atomic_store(&r->e[i].revoked, true);
			ch++;
		}
	}
	if (changed)
		*changed = ch;
	return rc;
}
