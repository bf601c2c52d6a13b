/* test_dashboard.c - the controller's dashboard files (ctl/dashboard.c,
 * issue #8 item 3): which paths name them, with which Content-Type; that
 * nothing outside the embedded set is reachable; and that the page works
 * under its own Content-Security-Policy (default-src 'self'): no inline
 * script or style, nothing loaded from another origin. The headers and the
 * page in a browser: tests/system/test_dashboard.sh. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <string.h>

#include "ctl/dashboard.h"

static const struct qkm_dash_asset *find(const char *path, const char **type, bool *ours)
{
	*type = NULL;
	*ours = false;
	return qkm_dashboard_find(path, type, ours);
}

static void test_paths(void **state)
{
	const char *type;
	bool ours;
	static const char *const page[] = { "/", "/dashboard", "/dashboard/",
					    "/dashboard/index.html" };
	for (size_t i = 0; i < sizeof(page) / sizeof(page[0]); i++) {
		const struct qkm_dash_asset *a = find(page[i], &type, &ours);
		assert_non_null(a);
		assert_string_equal(a->name, "index.html");
		assert_string_equal(type, "text/html; charset=utf-8");
		assert_true(ours);
	}
	const struct qkm_dash_asset *a = find("/dashboard/dashboard.js", &type, &ours);
	assert_non_null(a);
	assert_string_equal(type, "text/javascript; charset=utf-8");
	a = find("/dashboard/dashboard.css", &type, &ours);
	assert_non_null(a);
	assert_string_equal(type, "text/css; charset=utf-8");

	/* Under /dashboard/ but not embedded: the dashboard's 404. */
	static const char *const missing[] = { "/dashboard/../ctl.json", "/dashboard/nope.js",
					       "/dashboard/dashboard.js/", "/dashboard//index.html",
					       "/dashboard/DASHBOARD.JS", "/dashboard/%2e%2e/x" };
	for (size_t i = 0; i < sizeof(missing) / sizeof(missing[0]); i++) {
		assert_null(find(missing[i], &type, &ours));
		assert_true(ours);
		assert_null(type);
	}
	/* The API's paths are left to the controller. */
	static const char *const api[] = { "/status", "/records", "/trace", "/dashboardx",
					   "/index.html", "//", "" };
	for (size_t i = 0; i < sizeof(api) / sizeof(api[0]); i++) {
		assert_null(find(api[i], &type, &ours));
		assert_false(ours);
	}
	assert_null(qkm_dashboard_find(NULL, NULL, NULL));
	assert_non_null(qkm_dashboard_find("/", NULL, NULL));
}

static const struct qkm_dash_asset *asset(const char *name)
{
	for (size_t i = 0; i < qkm_dash_n_assets; i++)
		if (strcmp(qkm_dash_assets[i].name, name) == 0)
			return &qkm_dash_assets[i];
	return NULL;
}

static size_t count(const char *text, const char *what)
{
	size_t n = 0;
	for (const char *p = text; (p = strstr(p, what)) != NULL; p += strlen(what))
		n++;
	return n;
}

/* The page, its style and its script, whole, and nothing that the page's
 * Content-Security-Policy would block or that would reach another origin. */
static void test_assets(void **state)
{
	assert_int_equal(qkm_dash_n_assets, 3);
	for (size_t i = 0; i < qkm_dash_n_assets; i++) {
		const struct qkm_dash_asset *a = &qkm_dash_assets[i];
		const char *text = (const char *)a->data;
		assert_true(a->len > 1000);
		assert_int_equal(strlen(text), a->len); /* NUL after, none inside */
		/* No other origin: the only URL is the SVG namespace name,
		 * which names, and loads nothing. */
		assert_int_equal(count(text, "://"), count(text, "http://www.w3.org/2000/svg"));
		assert_int_equal(count(text, "@import"), 0);
	}
	const char *html = (const char *)asset("index.html")->data;
	assert_non_null(strstr(html, "<script src=\"/dashboard/dashboard.js\" defer></script>"));
	assert_non_null(strstr(html, "<link rel=\"stylesheet\" href=\"/dashboard/dashboard.css\">"));
	assert_int_equal(count(html, "<script"), 1); /* no inline script */
	assert_int_equal(count(html, "<style"), 0);
	assert_int_equal(count(html, " style="), 0);
	assert_int_equal(count(html, " onclick="), 0);
	assert_int_equal(count(html, " onload="), 0);
	assert_int_equal(count(html, " onsubmit="), 0);
	/* Data from the network goes in as text, never as markup. */
	const char *js = (const char *)asset("dashboard.js")->data;
	assert_int_equal(count(js, "innerHTML"), 0);
	assert_int_equal(count(js, "outerHTML"), 0);
	assert_int_equal(count(js, "eval("), 0);
	assert_int_equal(count(js, "document.write"), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_paths),
		cmocka_unit_test(test_assets),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
