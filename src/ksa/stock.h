/* stock.h - keys made ahead of demand for one (master SAE, slave SAE, size)
 * pair, already stored READY at the slave's node, so that enc_keys can be
 * answered from memory without a round to the peer or a disk write.
 *
 * The supply state machine (main thread) fills an entry with a normal
 * supply round whose keys it records STOCKED; the ETSI 014 front end (its
 * own thread) takes them. Each key is taken at most once: it leaves the
 * entry under the lock. The main thread then records the taken keys
 * SUPPLIED in batches; a key still STOCKED after a crash may or may not
 * have reached its master, so it is recorded SUPPLIED then and never
 * offered again (supply.c). Key bytes stay in the secure heap. All
 * functions are thread-safe. */
#ifndef QKM_KSA_STOCK_H
#define QKM_KSA_STOCK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/err.h"
#include "core/id.h"

#define QKM_STOCK_MAX_ENTRIES 64
#define QKM_STOCK_MIN_KEYS 128     /* refill batch when demand is low */
#define QKM_STOCK_MAX_KEYS 32768   /* largest entry */
#define QKM_STOCK_MAX_REFILL 8192  /* largest refill: one supply round */

struct qkm_stock;

/* A key taken by the front end, for the main thread to record. */
struct qkm_stock_taken {
	struct qkm_id id;
	uint64_t at_ns;
	int entry;
};

struct qkm_stock *qkm_stock_new(void);
void qkm_stock_free(struct qkm_stock *st);

/* Main thread: the pair (peer, master, slave, size) asked for keys; makes
 * an entry for it if there is none (and room). Its index, or -1. */
int qkm_stock_want(struct qkm_stock *st, const char *peer, const char *master, const char *slave,
		   uint32_t size_bits);
/* Main thread: how many keys entry i should be given now (0: none; what
 * it has and what refills under way bring is enough), and counts them as
 * under way. A new refill asks for at least a quarter of the target and at
 * most QKM_STOCK_MAX_REFILL keys, so under high demand several refills
 * can be under way at once. */
uint32_t qkm_stock_refill(struct qkm_stock *st, int i, const char *peer /* filter */,
			  char master[static QKM_NAME_MAX], char slave[static QKM_NAME_MAX],
			  uint32_t *size_bits /* OUT */, uint64_t now_ns);
/* Main thread: the refill of entry i ended with n keys (ids, n * size/8
 * bytes of data; copied). They are taken in the order added. QKM_ETOOBIG if
 * they do not fit (nothing added). */
int qkm_stock_add(struct qkm_stock *st, int i, size_t n, const struct qkm_id *ids,
		  const uint8_t *data, uint64_t now_ns) QKM_MUST_CHECK;
/* Main thread: n keys a refill of entry i asked for will not come (it
 * failed, or was cut short); they may be asked for again. */
void qkm_stock_refill_failed(struct qkm_stock *st, int i, uint32_t n);
/* Front end: takes n keys of size_bits for master -> slave. ids[n] and
 * data (n * size/8 bytes) are written. 0, or QKM_ENOKEY (nothing taken).
 * *low: the entry wants a refill now (wake the main thread). */
int qkm_stock_take(struct qkm_stock *st, const char *master, const char *slave,
		   uint32_t size_bits, uint32_t n, struct qkm_id *ids, uint8_t *data,
		   uint64_t now_ns, bool *low /* OUT */) QKM_MUST_CHECK;
/* Main thread: moves up to max taken keys into out; returns how many. */
size_t qkm_stock_drain_taken(struct qkm_stock *st, struct qkm_stock_taken *out, size_t max);
/* Keys waiting for master -> slave of size_bits. */
uint64_t qkm_stock_pair_count(struct qkm_stock *st, const char *master, const char *slave,
			      uint32_t size_bits);
/* Keys waiting in all entries with peer (NULL: all). */
uint64_t qkm_stock_count(struct qkm_stock *st, const char *peer);
/* Any thread: removes the keys of the supply rounds of ids[0..n) (IDs
 * equal but for the last 4 bytes, core/id.h) from every entry (their bytes
 * wiped), as a compromise order asks; returns how many were there. */
size_t qkm_stock_drop(struct qkm_stock *st, const struct qkm_id *ids, size_t n);
/* The names of entry i (main thread; for records). */
void qkm_stock_names(struct qkm_stock *st, int i, char peer[static QKM_NAME_MAX],
		     char master[static QKM_NAME_MAX], char slave[static QKM_NAME_MAX]);

#endif
