/* dashboard.h - the controller's web dashboard: one page, its style and its
 * script (src/ctl/dashboard/), embedded in the binary at build time
 * (scripts/embed.cmake) and served over the controller's HTTPS API to
 * operators; the page reads everything else from that API. */
#ifndef QKM_CTL_DASHBOARD_H
#define QKM_CTL_DASHBOARD_H

#include <stdbool.h>
#include <stddef.h>

#include "net/http.h"

/* One embedded file: name as in src/ctl/dashboard/, len bytes of data
 * (followed by a NUL that len does not count). */
struct qkm_dash_asset {
	const char *name;
	const unsigned char *data;
	size_t len;
};
/* Generated at build time (build/generated/dashboard_assets.c). */
extern const struct qkm_dash_asset qkm_dash_assets[];
extern const size_t qkm_dash_n_assets;

/* The asset a request path names, or NULL: "/", "/dashboard" and
 * "/dashboard/" are the page (index.html), "/dashboard/NAME" the asset
 * NAME (whole names only). *type (OUT, may be NULL): its Content-Type.
 * *ours (OUT, may be NULL): the path is one of those, named asset or not. */
const struct qkm_dash_asset *qkm_dashboard_find(const char *path, const char **type /* OUT */,
						bool *ours /* OUT */);

/* Answers req if it is for the dashboard (a path qkm_dashboard_find knows,
 * or any under /dashboard/: 404) and returns true; false leaves req to the
 * caller. GET only (405 otherwise). Replies carry a strict
 * Content-Security-Policy (default-src 'self'), X-Content-Type-Options
 * nosniff, X-Frame-Options DENY and the server's Cache-Control no-store.
 * The caller has already checked who is asking (admin only). */
bool qkm_dashboard_serve(struct qkm_http_req *req);

#endif
