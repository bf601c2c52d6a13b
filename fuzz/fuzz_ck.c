/* fuzz_ck.c - libFuzzer target for the Ck/Mk frame codec (proto/ck.c):
 * what a node receives from the controller (CTL_RECORDS_FROM/ACK, ROUTES,
 * SAES, RELAY, DELETE) and the controller from a node (CTL_STATUS, RECORDS,
 * DELETED). The input is one whole frame; one whose length field does not
 * fit is given the right one, so that inserting or dropping bytes keeps it
 * a frame. Every qkm_ck_*_parse runs on it whatever its type: none may
 * crash, leak or trip UBSan, each answers only with its documented codes,
 * and what it accepts keeps the header's promises (names valid, sequence
 * numbers consecutive, routes loop-free and ending at their destination).
 * Each list that parses, encoded again with the matching qkm_ck_*_frame and
 * parsed again, gives the same list.
 * With QKM_FUZZ_CK_SEEDS=DIR set it writes the seed corpus instead (frames
 * made by the qkm_ck_*_frame encoders, as the controller and the agent send
 * them, plus a few each parser must refuse) and exits:
 *   QKM_FUZZ_CK_SEEDS=fuzz/corpus/ck build-fuzz/fuzz_ck */
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/buf.h"
#include "core/id.h"
#include "proto/ck.h"
#include "proto/ctl_json.h"
#include "proto/frame.h"
#include "proto/status_json.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The lists are large (a records list is ~300 KiB): one of each. */
static struct qkm_lc_event evs[QKM_CK_RECORDS_MAX], evs2[QKM_CK_RECORDS_MAX];
static struct qkm_node_route routes[QKM_MAX_NODES], routes2[QKM_MAX_NODES];
static struct qkm_sae_entry saes[QKM_MAX_SAES], saes2[QKM_MAX_SAES];

static void check(int cond)
{
	if (!cond)
		__builtin_trap();
}

/* s is a NUL-terminated string of fewer than n bytes. */
static bool str_in(const char *s, size_t n) { return memchr(s, 0, n) != NULL; }

/* Parses b (a frame an encoder just made) into *f. */
static void reparse(const struct qkm_buf *b, struct qkm_frame *f)
{
	check(qkm_frame_parse(b->p, b->len, f) == 0);
}

static bool same_event(const struct qkm_lc_event *a, const struct qkm_lc_event *b)
{
	return a->seq == b->seq && a->ts_ns == b->ts_ns && !strcmp(a->event, b->event) &&
	       !strcmp(a->key_kind, b->key_kind) && !strcmp(a->key_id, b->key_id) &&
	       !strcmp(a->peer, b->peer) && !strcmp(a->detail, b->detail);
}

static void seq(const struct qkm_frame *f, struct qkm_buf *b)
{
	int64_t s, s2;
	int rc = qkm_ck_seq_parse(f, &s);
	check(rc == 0 || rc == QKM_EFORMAT);
	if (rc)
		return;
	check(s >= 0);
	qkm_buf_reset(b);
	struct qkm_frame g;
	check(qkm_ck_seq_frame(b, f->type, s) == 0);
	reparse(b, &g);
	check(g.type == f->type && qkm_ck_seq_parse(&g, &s2) == 0 && s2 == s);
}

static void records(const struct qkm_frame *f, struct qkm_buf *b)
{
	size_t n, n2;
	int rc = qkm_ck_records_parse(f, evs, QKM_CK_RECORDS_MAX, &n);
	check(rc == 0 || rc == QKM_EFORMAT || rc == QKM_ETOOBIG);
	/* A smaller limit refuses exactly the longer lists. */
	int r2 = qkm_ck_records_parse(f, evs2, 2, &n2);
	if (rc == 0)
		check(n > 2 ? r2 == QKM_ETOOBIG : r2 == 0 && n2 == n);
	if (rc) {
		check(n == 0);
		return;
	}
	check(n <= QKM_CK_RECORDS_MAX);
	for (size_t i = 0; i < n; i++) {
		const struct qkm_lc_event *e = &evs[i];
		check(e->seq > 0 && (i == 0 || e->seq == evs[i - 1].seq + 1));
		check(e->event[0] && str_in(e->event, sizeof(e->event)) &&
		      str_in(e->key_kind, sizeof(e->key_kind)) &&
		      str_in(e->key_id, sizeof(e->key_id)) && str_in(e->peer, sizeof(e->peer)) &&
		      str_in(e->detail, sizeof(e->detail)));
	}
	qkm_buf_reset(b);
	struct qkm_frame g;
	check(qkm_ck_records_frame(b, evs, n) == 0);
	reparse(b, &g);
	check(qkm_ck_records_parse(&g, evs2, QKM_CK_RECORDS_MAX, &n2) == 0 && n2 == n);
	for (size_t i = 0; i < n; i++)
		check(same_event(&evs[i], &evs2[i]));
}

static void route_ok(const struct qkm_node_route *r)
{
	check(qkm_name_valid(r->to) && r->n >= 2 && r->n <= QKM_MAX_PATH);
	for (uint32_t j = 0; j < r->n; j++) {
		check(qkm_name_valid(r->path[j]));
		for (uint32_t k = 0; k < j; k++)
			check(strcmp(r->path[j], r->path[k]) != 0);
	}
	check(strcmp(r->path[r->n - 1], r->to) == 0);
}

static void route_list(const struct qkm_frame *f, struct qkm_buf *b)
{
	size_t n, n2;
	int rc = qkm_ck_routes_parse(f, routes, QKM_MAX_NODES, &n);
	check(rc == 0 || rc == QKM_EFORMAT || rc == QKM_ETOOBIG);
	if (rc) {
		check(n == 0);
		return;
	}
	check(n <= QKM_MAX_NODES);
	for (size_t i = 0; i < n; i++) {
		route_ok(&routes[i]);
		for (size_t k = 0; k < i; k++)
			check(strcmp(routes[i].to, routes[k].to) != 0);
	}
	qkm_buf_reset(b);
	struct qkm_frame g;
	check(qkm_ck_routes_frame(b, routes, n) == 0);
	reparse(b, &g);
	check(qkm_ck_routes_parse(&g, routes2, QKM_MAX_NODES, &n2) == 0 && n2 == n);
	for (size_t i = 0; i < n; i++) {
		check(!strcmp(routes[i].to, routes2[i].to) && routes[i].n == routes2[i].n);
		for (uint32_t j = 0; j < routes[i].n; j++)
			check(!strcmp(routes[i].path[j], routes2[i].path[j]));
	}
}

static void sae_list(const struct qkm_frame *f, struct qkm_buf *b)
{
	size_t n, n2;
	int rc = qkm_ck_saes_parse(f, saes, QKM_MAX_SAES, &n);
	check(rc == 0 || rc == QKM_EFORMAT || rc == QKM_ETOOBIG);
	if (rc) {
		check(n == 0);
		return;
	}
	check(n <= QKM_MAX_SAES);
	for (size_t i = 0; i < n; i++)
		check(qkm_name_valid(saes[i].id) && qkm_name_valid(saes[i].node));
	qkm_buf_reset(b);
	struct qkm_frame g;
	check(qkm_ck_saes_frame(b, saes, n) == 0);
	reparse(b, &g);
	check(qkm_ck_saes_parse(&g, saes2, QKM_MAX_SAES, &n2) == 0 && n2 == n);
	for (size_t i = 0; i < n; i++)
		check(!strcmp(saes[i].id, saes2[i].id) && !strcmp(saes[i].node, saes2[i].node) &&
		      saes[i].revoked == saes2[i].revoked);
}

static void relay(const struct qkm_frame *f, struct qkm_buf *b)
{
	char to[QKM_NAME_MAX], to2[QKM_NAME_MAX];
	bool set_rate, set_rate2;
	uint64_t rate, rate2;
	uint32_t bytes, bytes2;
	int rc = qkm_ck_relay_parse(f, to, &set_rate, &rate, &bytes);
	check(rc == 0 || rc == QKM_EFORMAT);
	if (rc)
		return;
	check(qkm_name_valid(to));
	check(set_rate ? bytes == 0 : rate == 0 && bytes > 0);
	qkm_buf_reset(b);
	struct qkm_frame g;
	check(qkm_ck_relay_frame(b, to, set_rate, rate, bytes) == 0);
	reparse(b, &g);
	check(qkm_ck_relay_parse(&g, to2, &set_rate2, &rate2, &bytes2) == 0);
	check(!strcmp(to, to2) && set_rate == set_rate2 && rate == rate2 && bytes == bytes2);
}

static void json(const struct qkm_frame *f, struct qkm_buf *b)
{
	const char *js, *js2;
	size_t len, len2;
	int rc = qkm_ck_json_parse(f, &js, &len);
	check(rc == 0 || rc == QKM_EFORMAT);
	if (rc)
		return;
	const uint8_t *p = (const uint8_t *)js;
	check(p >= f->body && len <= f->body_len && (size_t)(p - f->body) <= f->body_len - len);
	qkm_buf_reset(b);
	struct qkm_frame g;
	check(qkm_ck_json_frame(b, f->type, f->req, js, len) == 0);
	reparse(b, &g);
	check(g.type == f->type && g.req == f->req);
	check(qkm_ck_json_parse(&g, &js2, &len2) == 0 && len2 == len && !memcmp(js, js2, len));
}

/* ---- seeds -------------------------------------------------------------- */

static void seed_file(const char *dir, const char *name, const struct qkm_buf *b)
{
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	FILE *fp = fopen(path, "wb");
	check(fp != NULL);
	check(fwrite(b->p, 1, b->len, fp) == b->len);
	check(fclose(fp) == 0);
}

static void hex_id(uint8_t tag, uint32_t k, char out[33])
{
	struct qkm_id id = {{tag, 0x5a, 0x17, 0x03, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, (uint8_t)k}};
	qkm_id_hex(&id, out);
}

/* Records as a node's acquisition, relay and supply make them. */
static size_t make_records(int64_t first, size_t n)
{
	static const char *const kinds[] = {"qkd", "kma", "kma", "relayed", "relayed", "ksa"};
	static const char *const events[] = {"received", "formatted", "authenticated",
					     "relay-sent", "relay-confirmed", "supplied"};
	for (size_t i = 0; i < n; i++) {
		struct qkm_lc_event *e = &evs[i];
		char h[33], h2[33];
		size_t x = i % 6;
		memset(e, 0, sizeof(*e));
		e->seq = first + (int64_t)i;
		e->ts_ns = 1780000000000000000ull + i * 1000003ull;
		snprintf(e->event, sizeof(e->event), "%s", events[x]);
		snprintf(e->key_kind, sizeof(e->key_kind), "%s", kinds[x]);
		hex_id('K', (uint32_t)i, h);
		hex_id('L', (uint32_t)i, h2);
		snprintf(e->peer, sizeof(e->peer), "%s", x == 5 ? "sae-b" : "B");
		switch (x) {
		case 0:
			snprintf(e->key_id, sizeof(e->key_id), "qkd-%zu,qkd-%zu", 2 * i, 2 * i + 1);
			snprintf(e->detail, sizeof(e->detail), "2 QKD-key(s), 4096 bytes, module m-A-B");
			break;
		case 1:
		case 2:
			snprintf(e->key_id, sizeof(e->key_id), "%s[0..127]", h);
			snprintf(e->detail, sizeof(e->detail),
				 "digest of 2 QKD-key(s) matched by B");
			break;
		case 3:
		case 4:
			snprintf(e->key_id, sizeof(e->key_id), "%s[0..1]", h2);
			snprintf(e->detail, sizeof(e->detail),
				 "64 bytes toward C via B, key data from %s[0..1]; hop A>B otp, "
				 "link key %s[2..3]",
				 h, h);
			break;
		default:
			snprintf(e->key_id, sizeof(e->key_id),
				 "3f2b8c1e-9a4d-4e7f-b2c6-0d1e5a6f7b%02zx", i & 0xff);
			snprintf(e->detail, sizeof(e->detail),
				 "to master sae-a (app sae-a), slave sae-b, level its");
		}
	}
	return n;
}

static void add_route(struct qkm_node_route *r, const char *const *path, uint32_t n)
{
	memset(r, 0, sizeof(*r));
	for (uint32_t j = 0; j < n; j++)
		snprintf(r->path[j], QKM_NAME_MAX, "%s", path[j]);
	snprintf(r->to, sizeof(r->to), "%s", path[n - 1]);
	r->n = n;
}

static char *status_doc(void)
{
	static struct qkm_node_status s;
	memset(&s, 0, sizeof(s));
	snprintf(s.id, sizeof(s.id), "A");
	s.ready = true;
	s.n_pools = 3;
	snprintf(s.pools[0].peer, QKM_NAME_MAX, "B");
	s.pools[0].kind = "link";
	s.pools[0].keys = 96;
	s.pools[0].bytes = 98304;
	s.pools[0].enc_bytes = 49152;
	s.pools[0].dec_bytes = 49152;
	snprintf(s.pools[1].peer, QKM_NAME_MAX, "D");
	s.pools[1].kind = "link";
	s.pools[1].enc_bytes = 1024;
	snprintf(s.pools[2].peer, QKM_NAME_MAX, "C");
	s.pools[2].kind = "relay";
	s.pools[2].enc_bytes = 4096;
	s.pools[2].stock_keys = 8;
	s.n_links = 2;
	snprintf(s.links[0].link, QKM_NAME_MAX, "A-B");
	snprintf(s.links[0].peer, QKM_NAME_MAX, "B");
	snprintf(s.links[0].module, QKM_NAME_MAX, "m-A-B");
	s.links[0].leader = s.links[0].kx_up = s.links[0].reconciled = s.links[0].module_up = true;
	s.links[0].qber = 0.021;
	s.links[0].rate_bps = 80000;
	snprintf(s.links[1].link, QKM_NAME_MAX, "A-D");
	snprintf(s.links[1].peer, QKM_NAME_MAX, "D");
	snprintf(s.links[1].module, QKM_NAME_MAX, "m-A-D");
	s.links[1].kx_up = s.links[1].module_up = true;
	s.links[1].qber = 0.13;
	s.links[1].rate_bps = 1000;
	snprintf(s.links[1].alarm, sizeof(s.links[1].alarm), "QBER 0.130 above 0.110");
	s.acquired_bytes = 1 << 20;
	s.supplied_keys = 12;
	return qkm_status_to_json(&s);
}

static void seeds(const char *dir)
{
	struct qkm_buf b;
	char *js;
	size_t n;
	qkm_buf_init(&b, QKM_FRAME_MAX, false);
#define SEED(name, expr)                        \
	do {                                    \
		qkm_buf_reset(&b);              \
		check((expr) == 0);             \
		seed_file(dir, name, &b);       \
	} while (0)
	SEED("records-from-0", qkm_ck_seq_frame(&b, QKM_MSG_CTL_RECORDS_FROM, 0));
	SEED("records-from", qkm_ck_seq_frame(&b, QKM_MSG_CTL_RECORDS_FROM, 1234));
	SEED("records-ack", qkm_ck_seq_frame(&b, QKM_MSG_CTL_RECORDS_ACK, 256));
	n = make_records(1, 1);
	SEED("records-1", qkm_ck_records_frame(&b, evs, n));
	n = make_records(41, 6);
	SEED("records-6", qkm_ck_records_frame(&b, evs, n));
	n = make_records(1, QKM_CK_RECORDS_MAX);
	SEED("records-256", qkm_ck_records_frame(&b, evs, n));
	SEED("records-0", qkm_ck_records_frame(&b, evs, 0));
	/* Refused: a gap in the sequence, and a record without event. */
	n = make_records(7, 3);
	evs[2].seq = 10;
	SEED("records-gap", qkm_ck_records_frame(&b, evs, n));
	n = make_records(7, 2);
	evs[1].event[0] = '\0';
	SEED("records-no-event", qkm_ck_records_frame(&b, evs, n));
	/* Refused: the last sequence number there is, and then 1 (once an
	 * overflow in the check for the gap). */
	n = make_records(INT64_MAX - 1, 2);
	evs[2] = evs[1];
	evs[2].seq = 1;
	SEED("records-seq-max", qkm_ck_records_frame(&b, evs, 3));
	/* Routes of A in Figure 4, one of C in a 5-node line. */
	static const char *const ab[] = {"A", "B"}, *const abc[] = {"A", "B", "C"},
				 *const abcd[] = {"A", "B", "C", "D"},
				 *const line[] = {"C", "D", "E"}, *const loop[] = {"A", "B", "A", "C"};
	add_route(&routes[0], abc, 3);
	add_route(&routes[1], abcd, 4);
	SEED("routes-fig4", qkm_ck_routes_frame(&b, routes, 2));
	add_route(&routes[0], line, 3);
	SEED("routes-line5", qkm_ck_routes_frame(&b, routes, 1));
	SEED("routes-none", qkm_ck_routes_frame(&b, routes, 0));
	add_route(&routes[0], ab, 2);
	add_route(&routes[1], loop, 4);
	SEED("routes-loop", qkm_ck_routes_frame(&b, routes, 2));
	/* The access list: two SAEs, one revoked. */
	memset(saes, 0, sizeof(saes));
	snprintf(saes[0].id, QKM_NAME_MAX, "sae-a");
	snprintf(saes[0].node, QKM_NAME_MAX, "A");
	snprintf(saes[1].id, QKM_NAME_MAX, "sae-c");
	snprintf(saes[1].node, QKM_NAME_MAX, "C");
	snprintf(saes[2].id, QKM_NAME_MAX, "sae-old");
	snprintf(saes[2].node, QKM_NAME_MAX, "B");
	saes[2].revoked = true;
	SEED("saes", qkm_ck_saes_frame(&b, saes, 3));
	/* Relay plans: by thresholds, fixed rate, none, and bytes now. */
	SEED("relay-rate-0", qkm_ck_relay_frame(&b, "C", true, 0, 0));
	SEED("relay-rate", qkm_ck_relay_frame(&b, "C", true, 65536, 0));
	SEED("relay-rate-off", qkm_ck_relay_frame(&b, "D", true, UINT64_MAX, 0));
	SEED("relay-bytes", qkm_ck_relay_frame(&b, "C", false, 0, 4096));
	/* JSON: a node's status, a compromise order and a node's report. */
	check((js = status_doc()) != NULL);
	SEED("status", qkm_ck_json_frame(&b, QKM_MSG_CTL_STATUS, 0, js, strlen(js)));
	free(js);
	char toks[2][QKM_TOKEN_MAX];
	hex_id('K', 3, toks[0]);
	toks[0][24] = '\0';
	snprintf(toks[1], QKM_TOKEN_MAX, "3f2b8c1e-9a4d-4e7f-b2c6-0d1e5a6f7b05");
	check((js = qkm_order_json("order-1", "link A-B", (const char(*)[QKM_TOKEN_MAX])toks, 2)) != NULL);
	SEED("delete", qkm_ck_json_frame(&b, QKM_MSG_CTL_DELETE, 7, js, strlen(js)));
	free(js);
	static const char rep[] = "{\"node\":\"B\",\"order\":\"order-1\",\"batches_deleted\":2,"
				  "\"ksa_deleted\":1,\"stock_dropped\":0}";
	SEED("deleted", qkm_ck_json_frame(&b, QKM_MSG_CTL_DELETED, 7, rep, strlen(rep)));
#undef SEED
	qkm_buf_fini(&b);
}

/* ---- libFuzzer ---------------------------------------------------------- */

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	const char *out = getenv("QKM_FUZZ_CK_SEEDS");
	if (out && *out) {
		check(mkdir(out, 0755) == 0 || errno == EEXIST);
		seeds(out);
		exit(0);
	}
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct qkm_buf b;
	uint8_t *fixed = NULL;
	struct qkm_frame f;
	if (!b.max)
		qkm_buf_init(&b, QKM_FRAME_MAX, false);
	if (size < QKM_FRAME_HDR || size > QKM_FRAME_MAX)
		return 0;
	if (qkm_frame_parse(data, size, &f) != 0) {
		/* The same bytes with the length field that fits them. */
		if (!(fixed = malloc(size)))
			return 0;
		memcpy(fixed, data, size);
		qkm_be32_put(fixed, (uint32_t)(size - 4));
		if (qkm_frame_parse(fixed, size, &f) != 0)
			goto out;
	}
	seq(&f, &b);
	records(&f, &b);
	route_list(&f, &b);
	sae_list(&f, &b);
	relay(&f, &b);
	json(&f, &b);
out:
	free(fixed);
	return 0;
}
