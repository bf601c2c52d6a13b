/* fuzz_ctl.c - libFuzzer target for the controller's JSON (proto/ctl_json.c)
 * and key tokens (core/token.c): what operators and nodes send it, and the
 * orders nodes get from it. The first byte picks the parser (its value mod
 * 8), the rest is its input:
 *   0-4  qkm_req_fields, an HTTPS API body with the fields the controller
 *        asks for (ctl/controller.c): 0 POST /compromise, 1 POST /saes and
 *        /saes/revoke, 2 POST /routes (with the "path" array), 3 POST /mode,
 *        4 POST /schedule
 *   5    qkm_order_parse, a compromise order (CTL_DELETE) as a node reads it
 *   6    qkm_links_from_status, a node's /status report (CTL_STATUS)
 *   7    qkm_tokens_scan, a life-cycle record's detail as the ledger and
 *        lineage index it (up to the first NUL)
 * None may crash, leak or trip UBSan; each answers only with its documented
 * codes and keeps its promises (a refused body says why; names fit their
 * buffers; tokens are where the scan says). An API body or order that
 * parses, written again with the encoders in ctl_json.c, parses to the same
 * fields. Seeds (fuzz/corpus/ctl, text, the selector as an ASCII digit):
 * API bodies as `qkm ctl` sends them, and the bodies each handler refuses;
 * status-node1/-node2 are the /status documents of two nodes of
 * examples/figure4.json (`qkm net up`, then curl with DIR/pki/admin.pem on
 * each node's admin address), and the details of the tokens seeds but
 * tokens-ksa and tokens-supplied are records the controller stored in that
 * network (`qkm ctl records --json`). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/id.h"
#include "core/token.h"
#include "proto/ctl_json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FIELD (QKM_NAME_MAX * 2)

static void check(int cond)
{
	if (!cond)
		__builtin_trap();
}

/* The fields of each API handler, as ctl/controller.c asks for them. */
static const struct {
	const char *const keys[5];
	const char *arr_key;
} APIS[5] = {
	{{"key", "link", "node", "since", NULL}, NULL},        /* api_compromise */
	{{"id", "node", NULL}, NULL},                          /* api_saes */
	{{"from", "to", NULL}, "path"},                        /* api_route_set */
	{{"mode", "from", "to", NULL}, NULL},                  /* api_mode */
	{{"from", "to", "in_seconds", "bytes", NULL}, NULL},   /* api_schedule */
};

static char (*toks)[QKM_TOKEN_MAX], (*toks2)[QKM_TOKEN_MAX];

/* The body b's fields would make: the string members that are not empty,
 * and the array when it has names (an absent member and an empty one read
 * the same). malloc'd. */
static char *body_of(const char *const *keys, char (*f)[FIELD], const char *arr_key,
		     char (*arr)[QKM_NAME_MAX], size_t n_arr)
{
	const char *k[6], *v[6];
	bool strs[6];
	char *list = NULL;
	size_t n = 0;
	for (size_t i = 0; keys[i]; i++)
		if (f[i][0]) {
			k[n] = keys[i];
			v[n] = f[i];
			strs[n++] = true;
		}
	if (n_arr) {
		struct qkm_jlist *l = qkm_jlist_new();
		check(l != NULL);
		for (size_t j = 0; j < n_arr; j++)
			check(qkm_jlist_add_str(l, arr[j]) == 0);
		check((list = qkm_jlist_dump(l, NULL, NULL)) != NULL);
		qkm_jlist_free(l);
		k[n] = arr_key;
		v[n] = list;
		strs[n++] = false;
	}
	char *s = qkm_json_object(k, v, strs, n);
	check(s != NULL);
	free(list);
	return s;
}

static void req(int api, const char *body, size_t len)
{
	const char *const *keys = APIS[api].keys;
	const char *arr_key = APIS[api].arr_key;
	char f[4][FIELD], f2[4][FIELD], arr[QKM_MAX_PATH][QKM_NAME_MAX],
		arr2[QKM_MAX_PATH][QKM_NAME_MAX], err[300];
	size_t n_arr = 99, n_arr2, nk = 0;
	while (keys[nk])
		nk++;
	err[0] = '\0';
	int rc = qkm_req_fields(body, len, keys, f, arr_key, arr, QKM_MAX_PATH, &n_arr, err,
				sizeof(err));
	check(rc == 0 || rc == QKM_EFORMAT);
	if (rc) {
		check(err[0] && memchr(err, 0, sizeof(err)));
		return;
	}
	check(n_arr <= QKM_MAX_PATH && (arr_key || n_arr == 0));
	for (size_t i = 0; i < nk; i++)
		check(memchr(f[i], 0, FIELD) != NULL);
	for (size_t j = 0; j < n_arr; j++)
		check(qkm_name_valid(arr[j]));
	char *s = body_of(keys, f, arr_key, arr, n_arr);
	check(qkm_req_fields(s, strlen(s), keys, f2, arr_key, arr2, QKM_MAX_PATH, &n_arr2, err,
			     sizeof(err)) == 0);
	check(n_arr2 == n_arr);
	for (size_t i = 0; i < nk; i++)
		check(strcmp(f[i], f2[i]) == 0);
	for (size_t j = 0; j < n_arr; j++)
		check(strcmp(arr[j], arr2[j]) == 0);
	free(s);
}

static void order(const char *json, size_t len)
{
	char id[64], id2[64];
	size_t n, n2;
	if (!toks) {
		toks = calloc(QKM_ORDER_MAX, sizeof(*toks));
		toks2 = calloc(QKM_ORDER_MAX, sizeof(*toks2));
		check(toks && toks2);
	}
	int rc = qkm_order_parse(json, len, id, toks, QKM_ORDER_MAX, &n);
	check(rc == 0 || rc == QKM_EFORMAT || rc == QKM_ETOOBIG);
	if (rc) {
		check(n == 0);
		return;
	}
	/* A smaller limit refuses exactly the longer lists. */
	rc = qkm_order_parse(json, len, id2, toks2, 2, &n2);
	check(n > 2 ? rc == QKM_ETOOBIG : rc == 0 && n2 == n);
	check(n <= QKM_ORDER_MAX && memchr(id, 0, sizeof(id)));
	for (size_t i = 0; i < n; i++)
		check(memchr(toks[i], 0, QKM_TOKEN_MAX) != NULL);
	char *s = qkm_order_json(id, "fuzz", (const char(*)[QKM_TOKEN_MAX])toks, n);
	check(s != NULL);
	check(qkm_order_parse(s, strlen(s), id2, toks2, QKM_ORDER_MAX, &n2) == 0);
	check(n2 == n && strcmp(id, id2) == 0);
	for (size_t i = 0; i < n; i++)
		check(strcmp(toks[i], toks2[i]) == 0);
	free(s);
}

static void status(const char *json, size_t len)
{
	struct qkm_link_state ls[QKM_MAX_LINKS], one;
	size_t n, n1;
	int rc = qkm_links_from_status(json, len, ls, QKM_MAX_LINKS, &n);
	check(rc == 0 || rc == QKM_EFORMAT);
	if (rc) {
		check(n == 0);
		return;
	}
	check(n <= QKM_MAX_LINKS);
	for (size_t i = 0; i < n; i++)
		check(memchr(ls[i].link, 0, QKM_NAME_MAX) && memchr(ls[i].peer, 0, QKM_NAME_MAX));
	/* With room for one link: the first one, the same. */
	check(qkm_links_from_status(json, len, &one, 1, &n1) == 0 && n1 == (n ? 1 : 0));
	if (n)
		check(!strcmp(one.link, ls[0].link) && !strcmp(one.peer, ls[0].peer) &&
		      one.up == ls[0].up && one.alarm == ls[0].alarm &&
		      one.rate_bps == ls[0].rate_bps && one.stock_bytes == ls[0].stock_bytes &&
		      !memcmp(&one.qber, &ls[0].qber, sizeof(one.qber)));
}

struct scan {
	const char *text;
	size_t len, next, found;
	int stop; /* nonzero: return it from the first token */
};

static bool tok_char(char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || c == '-';
}

static int on_token(const char *tok, size_t pos, void *arg)
{
	struct scan *s = arg;
	char again[QKM_TOKEN_MAX];
	size_t n = strlen(tok);
	/* In order, inside the text, not inside a longer run of hex digits,
	 * and the token qkm_token_of finds there: a batch (24 of the 32
	 * digits) or a KSA supply round (28 of a UUID's 36 characters). */
	check(pos >= s->next && pos < s->len);
	check(n == 24 || n == 28);
	check(pos == 0 || !tok_char(s->text[pos - 1]));
	check(n <= s->len - pos && strncmp(s->text + pos, tok, n) == 0);
	check(qkm_token_of(s->text + pos, again) && strcmp(again, tok) == 0);
	s->next = pos + 1;
	s->found++;
	return s->stop;
}

static void tokens(const uint8_t *data, size_t size)
{
	char *text = malloc(size + 1);
	check(text != NULL);
	memcpy(text, data, size);
	text[size] = '\0';
	struct scan s = {text, strlen(text), 0, 0, 0};
	check(qkm_tokens_scan(text, on_token, &s) == 0);
	/* A key ID names itself; any text against any key ID: no crash. */
	check(qkm_key_id_names(text, text));
	(void)qkm_key_id_names(text, text + s.len / 2);
	(void)qkm_key_id_names(text + s.len / 2, text);
	struct scan first = {text, s.len, 0, 0, 7};
	check(qkm_tokens_scan(text, on_token, &first) == (s.found ? 7 : 0));
	check(first.found == (s.found ? 1 : 0));
	free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size == 0)
		return 0;
	int sel = data[0] % 8;
	const char *body = (const char *)data + 1;
	size_t len = size - 1;
	if (sel < 5)
		req(sel, body, len);
	else if (sel == 5)
		order(body, len);
	else if (sel == 6)
		status(body, len);
	else
		tokens(data + 1, len);
	return 0;
}
