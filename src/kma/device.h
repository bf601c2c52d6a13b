/* device.h - a QKD device's own ETSI GS QKD 014 key API as a link's key
 * source (R-ACQ-5). The two nodes of a link are the two SAEs of the device
 * pair. The master side (which must be the link's acquisition leader)
 * draws keys with enc_keys {number: batch, size: size_bits} whenever
 * acquisition has room, and hands each on as a QKD-key file: qkd_key_id =
 * the device's key_ID (a UUID), qkd_module_id = the device's KME ID (its
 * Status source_KME_ID, which must be the link's module), data = the key.
 * The slave side fetches keys by ID when acquisition asks (acq.h missing:
 * the IDs of the leader's PREPARE) with dec_keys, and hands them on the same
 * way, so acquisition confirms them by digest as it does any QKD-key file.
 *
 * Threads: the key API is a blocking HTTPS client (net/http.h
 * qkm_https_request_secure) run on a worker thread of its own, so a slow
 * device never stalls the event loop; the worker hands keys to the loop's
 * thread through a locked queue and event_active (libevent threading is on
 * in the node). Key bytes are in the secure heap from the TLS record to
 * the key file; only key IDs are logged. */
#ifndef QKM_KMA_DEVICE_H
#define QKM_KMA_DEVICE_H

#include <event2/event.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/config.h"
#include "core/keyfile.h"

struct qkm_device;

struct qkm_device_ops {
	/* Loop thread: one key from the device as a QKD-key file (no
	 * hash_value: the device gives none); take kf->data to keep it. */
	void (*keyfile)(struct qkm_keyfile *kf, void *arg);
	void *arg;
};

/* Starts the worker for src (kind etsi014) of link, whose module on this
 * node is module. NULL on error (logged). */
struct qkm_device *qkm_device_new(struct event_base *base, const struct qkm_key_source *src,
				  const char *link, const char *module,
				  const struct qkm_device_ops *ops);
/* Stops the worker (waits for a request in progress: at most its time-out)
 * and drops keys not yet handed on. NULL is a no-op. */
void qkm_device_free(struct qkm_device *d);

/* Slave: fetch these QKD-key IDs (device key_IDs) now. IDs that are not
 * UUIDs cannot be the device's: logged and skipped. */
void qkm_device_fetch(struct qkm_device *d, const char (*ids)[QKM_NAME_MAX], uint32_t n);
/* Master: how many more key bytes acquisition takes now (flow control). */
void qkm_device_set_room(struct qkm_device *d, size_t bytes);
/* The device answered its last request. */
bool qkm_device_up(const struct qkm_device *d);

/* The request timeout: a slave's fetch must beat the follower's 2 s wait. */
#define QKM_DEVICE_TIMEOUT_MS 1800

#endif
