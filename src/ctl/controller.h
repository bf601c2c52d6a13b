/* controller.h - the QKDN controller and manager (`qkm controller`,
 * R-CTL-1..4, R-LC-1..3, R-SUP-1): keeps a Ck/Mk link with every node and
 * the live network view from their reports; computes relay routes and
 * pushes them (rerouting around alarmed or down links); holds the access
 * list and issues SAE certificates from the network CA; stores every
 * node's life-cycle records in the ledger (store/ledger.h) and answers
 * audit, trace and compromise requests on its HTTPS API
 * (docs/controller.md). */
#ifndef QKM_CTL_CONTROLLER_H
#define QKM_CTL_CONTROLLER_H

#include <event2/event.h>
#include <openssl/ssl.h>

#include "core/config.h"

struct qkm_controller;

/* Starts listening (Ck/Mk and the API) with cfg (copied). NULL on error,
 * logged. */
struct qkm_controller *qkm_controller_new(struct event_base *base,
					  const struct qkm_ctl_cfg *cfg);
void qkm_controller_free(struct qkm_controller *c);

#endif
