/* sim.h - the quantum-layer simulator: per link a pair of simulated QKD
 * modules that produce identical random QKD-key files at the link's secure
 * key rate and unit length, with Table 1 item (1) metadata, and report their
 * status (Kq-2). Nodes subscribe to their module over a TLS link (Kq-1);
 * faults arrive on a Unix control socket (sim/fault.h). */
#ifndef QKM_SIM_SIM_H
#define QKM_SIM_SIM_H

#include <event2/event.h>

#include "core/config.h"
#include "core/err.h"

struct qkm_sim;

/* Builds the simulator on base from cfg: opens the TLS listener and the
 * control socket. NULL on error (logged). */
struct qkm_sim *qkm_sim_new(struct event_base *base, const struct qkm_sim_cfg *cfg);
void qkm_sim_free(struct qkm_sim *s);

#endif
