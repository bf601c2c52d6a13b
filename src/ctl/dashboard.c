/* dashboard.c - serves the dashboard's embedded files (dashboard.h) with
 * headers that keep a browser strict. What the page shows comes from the
 * controller's JSON API, which the page's script reads; nothing here knows
 * the controller. */
#include "ctl/dashboard.h"

#include <string.h>

#define DASH_PREFIX "/dashboard/"

/* Only this origin's script, style and API; no inline code, no frames, no
 * plug-ins, no form posts, no base rewriting; no referrer to elsewhere. */
static const char dash_headers[] =
	"Content-Security-Policy: default-src 'self'; script-src 'self'; style-src 'self'; "
	"img-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; "
	"form-action 'none'; frame-ancestors 'none'\r\n"
	"X-Content-Type-Options: nosniff\r\n"
	"X-Frame-Options: DENY\r\n"
	"Referrer-Policy: no-referrer\r\n";

static const char *dash_type(const char *name)
{
	const char *dot = strrchr(name, '.');
	if (dot && strcmp(dot, ".html") == 0)
		return "text/html; charset=utf-8";
	if (dot && strcmp(dot, ".css") == 0)
		return "text/css; charset=utf-8";
	if (dot && strcmp(dot, ".js") == 0)
		return "text/javascript; charset=utf-8";
	if (dot && strcmp(dot, ".svg") == 0)
		return "image/svg+xml";
	return "application/octet-stream";
}

const struct qkm_dash_asset *qkm_dashboard_find(const char *path, const char **type, bool *ours)
{
	const char *name = NULL;
	if (ours)
		*ours = false;
	if (!path)
		return NULL;
	if (strcmp(path, "/") == 0 || strcmp(path, DASH_PREFIX) == 0 ||
	    strcmp(path, "/dashboard") == 0)
		name = "index.html";
	else if (strncmp(path, DASH_PREFIX, strlen(DASH_PREFIX)) == 0)
		name = path + strlen(DASH_PREFIX);
	else
		return NULL;
	if (ours)
		*ours = true;
	/* Names are compared whole: no path walks to anything not embedded. */
	for (size_t i = 0; i < qkm_dash_n_assets; i++)
		if (strcmp(qkm_dash_assets[i].name, name) == 0) {
			if (type)
				*type = dash_type(name);
			return &qkm_dash_assets[i];
		}
	return NULL;
}

bool qkm_dashboard_serve(struct qkm_http_req *req)
{
	const char *type = NULL;
	bool ours = false;
	const struct qkm_dash_asset *a = qkm_dashboard_find(req->path, &type, &ours);
	if (!ours)
		return false;
	qkm_http_set_headers(req, dash_headers);
	if (strcmp(req->method, "GET") != 0)
		qkm_http_reply_error(req, 405, "the dashboard is read with GET");
	else if (!a)
		qkm_http_reply_error(req, 404, "no such dashboard file");
	else
		qkm_http_reply(req, 200, type, a->data, a->len, false);
	return true;
}
