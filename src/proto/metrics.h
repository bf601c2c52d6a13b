/* metrics.h - a node's status in the Prometheus text exposition format
 * (version 0.0.4), served at /metrics on the admin API. Pure formatting. */
#ifndef QKM_PROTO_METRICS_H
#define QKM_PROTO_METRICS_H

#include "core/buf.h"
#include "proto/status_json.h"

/* Appends the metrics of s to out. 0 or the buffer's error. */
int qkm_metrics_format(const struct qkm_node_status *s, struct qkm_buf *out) QKM_MUST_CHECK;

#endif
