/* test_kma_io.c - the KMA's I/O shell (kma/kma_io.c) around a real follower
 * node "B" on a libevent loop: B's store, B's Kx listener, B's dial to the
 * quantum layer; the test plays the simulator ("sim", sending QKD-key files
 * over Kq-1) and the leader "A" (over Kx, frame by frame), all over mutual
 * TLS on loopback with certificates from a throw-away CA.
 * What it pins: the shell hands frames to their users in link order. A
 * COMMIT followed on the link by a KSA frame naming the same batch (the
 * leader supplies from a batch as soon as it holds it READY) must find
 * the batch READY at the follower, even when both frames arrive in one
 * read, where acquisition batches its commits (R-ACQ-3, R-SUP-6). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <netinet/in.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/buf.h"
#include "core/config.h"
#include "core/keyfile.h"
#include "core/log.h"
#include "core/secret.h"
#include "ctl/ca.h"
#include "kma/kma.h"
#include "net/link.h"
#include "net/tls.h"
#include "proto/frame.h"
#include "store/store.h"

#define LINK "A-B"
#define NFILES 4
#define FILE_BYTES 512
#define UNIT 32

struct world {
	char dir[PATH_MAX - 128];
	char ca[PATH_MAX];
	struct event_base *base;
	SSL_CTX *b_srv, *b_cli, *a_cli, *sim_srv;
	struct qkm_node_cfg cfg;
	struct qkm_store *st;
	struct qkm_kma *kma;
	struct qkm_listener *sim_listener;
	struct qkm_link *sim, *a;
	struct event *deadline;
	uint8_t data[NFILES][FILE_BYTES];
	struct qkm_id batch;
	bool prepared, committed_sent, timed_out;
	int ksa_frames;             /* KSA frames B's hook saw */
	enum qkm_block_state seen;  /* batch state at B when the KSA frame came */
	int seen_rc;
	int prepare_aborted;
};

/* ---- helpers ----------------------------------------------------------- */

static int free_port(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sin = {.sin_family = AF_INET};
	socklen_t len = sizeof(sin);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
	close(fd);
	return ntohs(sin.sin_port);
}

static void issue(struct world *w, const char *role, const char *name, char *cert, char *key)
{
	char cadir[PATH_MAX];
	snprintf(cadir, sizeof(cadir), "%s/ca", w->dir);
	snprintf(cert, PATH_MAX, "%s/%s.pem", w->dir, name);
	snprintf(key, PATH_MAX, "%s/%s.key", w->dir, name);
	assert_int_equal(qkm_ca_issue(cadir, role, name, cert, key), 0);
}

/* Sends one frame built by fill() (the TLVs after the header). */
static void send_frame(struct qkm_link *l, uint16_t type, uint32_t req,
		       int (*fill)(struct qkm_buf *, void *), void *arg)
{
	struct qkm_buf b;
	size_t start;
	qkm_buf_init(&b, QKM_FRAME_MAX, true);
	assert_int_equal(qkm_frame_begin(&b, type, req, &start), 0);
	if (fill)
		assert_int_equal(fill(&b, arg), 0);
	assert_int_equal(qkm_frame_end(&b, start), 0);
	assert_int_equal(qkm_link_send(l, b.p, b.len), 0);
	qkm_buf_fini(&b);
}

static int fill_link(struct qkm_buf *b, void *arg)
{
	(void)arg;
	return qkm_put_str(b, QKM_T_LINK, LINK);
}

static int fill_link_batch(struct qkm_buf *b, void *arg)
{
	struct world *w = arg;
	int rc = qkm_put_str(b, QKM_T_LINK, LINK);
	return rc ? rc : qkm_put_id(b, QKM_T_BATCH, &w->batch);
}

static void qkd_id(char out[QKM_NAME_MAX], int i) { snprintf(out, QKM_NAME_MAX, LINK ".%d", i + 1); }

/* ---- the simulator, as the test plays it ------------------------------- */

static void sim_on_open(struct qkm_link *l, void *arg) { (void)l, (void)arg; }

/* On B's SUBSCRIBE: NFILES QKD-key files for B's module, in order. */
static void sim_on_frame(struct qkm_link *l, const struct qkm_frame *f, void *arg)
{
	struct world *w = arg;
	if (f->type != QKM_MSG_SUBSCRIBE)
		return;
	for (int i = 0; i < NFILES; i++) {
		struct qkm_keyfile kf;
		struct qkm_buf kb, fb;
		size_t start;
		qkm_keyfile_init(&kf, QKM_KF_QKD);
		qkd_id(kf.m.qkd.qkd_key_id, i);
		kf.m.qkd.key_length = FILE_BYTES * 8;
		snprintf(kf.m.qkd.qkd_module_id, QKM_NAME_MAX, LINK ":B");
		snprintf(kf.m.qkd.matching_qkd_module_id, QKM_NAME_MAX, LINK ":A");
		kf.m.qkd.generation_time_stamp = qkm_now_ns();
		kf.data = qkm_secret_new(FILE_BYTES);
		assert_non_null(kf.data);
		memcpy(kf.data->p, w->data[i], FILE_BYTES);
		qkm_buf_init(&kb, 1u << 20, true);
		qkm_buf_init(&fb, 1u << 20, true);
		assert_int_equal(qkm_keyfile_encode(&kf, &kb), 0);
		assert_int_equal(qkm_frame_begin(&fb, QKM_MSG_KEYFILE, 0, &start), 0);
		assert_int_equal(qkm_put_str(&fb, QKM_T_LINK, LINK), 0);
		assert_int_equal(qkm_put_tlv(&fb, QKM_T_KEYFILE, kb.p, kb.len), 0);
		assert_int_equal(qkm_frame_end(&fb, start), 0);
		assert_int_equal(qkm_link_send(l, fb.p, fb.len), 0);
		qkm_buf_fini(&kb);
		qkm_buf_fini(&fb);
		qkm_keyfile_fini(&kf);
	}
}

static void sim_on_close(struct qkm_link *l, int err, const char *why, void *arg)
{
	struct world *w = arg;
	if (w->sim == l)
		w->sim = NULL;
}

static const struct qkm_link_cbs sim_cbs = {sim_on_open, sim_on_frame, sim_on_close};

static void sim_accept(int fd, void *arg)
{
	struct world *w = arg;
	w->sim = qkm_link_accept(w->base, w->sim_srv, "sim", fd, &sim_cbs, w);
	assert_non_null(w->sim);
}

/* ---- the leader, as the test plays it ---------------------------------- */

/* ACQ_PREPARE for all NFILES files, its DIGEST as docs/protocol.md 4.2
 * says: SHA-256 of a Poly1305 tag under a key exported from the test's own
 * end of the Kx session, so B's end must export the same key to accept it. */
static int fill_prepare(struct qkm_buf *b, void *arg)
{
	struct world *w = arg;
	uint8_t key[32], tag[16], dg[32], x[4];
	size_t tl = 0;
	struct qkm_buf m;
	qkm_buf_init(&m, 1u << 20, true);
	assert_int_equal(qkm_link_export(w->a, "EXPORTER-qkm-acq-round", w->batch.b, QKM_ID_LEN,
					 key, sizeof(key)),
			 0);
	assert_int_equal(qkm_buf_put(&m, w->batch.b, QKM_ID_LEN), 0);
	qkm_be32_put(x, UNIT);
	assert_int_equal(qkm_buf_put(&m, x, 4), 0);
	qkm_be32_put(x, NFILES);
	assert_int_equal(qkm_buf_put(&m, x, 4), 0);
	for (int i = 0; i < NFILES; i++) {
		char id[QKM_NAME_MAX];
		qkd_id(id, i);
		uint8_t l2[2] = {0, (uint8_t)strlen(id)};
		assert_int_equal(qkm_buf_put(&m, l2, 2), 0);
		assert_int_equal(qkm_buf_put(&m, id, strlen(id)), 0);
		qkm_be32_put(x, FILE_BYTES);
		assert_int_equal(qkm_buf_put(&m, x, 4), 0);
		assert_int_equal(qkm_buf_put(&m, w->data[i], FILE_BYTES), 0);
	}
	assert_non_null(EVP_Q_mac(NULL, "POLY1305", NULL, NULL, NULL, key, sizeof(key), m.p, m.len,
				  tag, sizeof(tag), &tl));
	assert_int_equal(tl, 16);
	qkm_buf_reset(&m);
	assert_int_equal(qkm_buf_put(&m, "qkm-acq-round", 13), 0);
	assert_int_equal(qkm_buf_put(&m, tag, 16), 0);
	unsigned int dl = 32;
	assert_int_equal(EVP_Digest(m.p, m.len, dg, &dl, EVP_sha256(), NULL), 1);
	qkm_buf_fini(&m);
	OPENSSL_cleanse(key, sizeof(key));
	int rc = qkm_put_str(b, QKM_T_LINK, LINK);
	if (!rc)
		rc = qkm_put_id(b, QKM_T_BATCH, &w->batch);
	if (!rc)
		rc = qkm_put_u32(b, QKM_T_UNIT, UNIT);
	for (int i = 0; !rc && i < NFILES; i++) {
		char id[QKM_NAME_MAX];
		qkd_id(id, i);
		rc = qkm_put_str(b, QKM_T_QKD_ID, id);
	}
	return rc ? rc : qkm_put_tlv(b, QKM_T_DIGEST, dg, 32);
}

static void a_on_open(struct qkm_link *l, void *arg) { (void)l, (void)arg; }

static void a_on_frame(struct qkm_link *l, const struct qkm_frame *f, void *arg)
{
	struct world *w = arg;
	struct qkm_id batch;
	switch (f->type) {
	case QKM_MSG_RECONCILE:
		/* B holds nothing pending: an empty answer reconciles it; then
		 * the round (B waits up to 2 s for files still on their way). */
		send_frame(l, QKM_MSG_RECONCILE_ACK, f->req, fill_link, w);
		send_frame(l, QKM_MSG_ACQ_PREPARE, 1, fill_prepare, w);
		break;
	case QKM_MSG_ACQ_PREPARED:
		assert_int_equal(qkm_tlv_id(f->body, f->body_len, QKM_T_BATCH, &batch), 0);
		assert_true(qkm_id_eq(&batch, &w->batch));
		w->prepared = true;
		/* The leader has stored the batch READY (its decision point) and
		 * now commits it and, right behind on the link, supplies from
		 * it: COMMIT and a KSA frame in one write, so that B reads both
		 * in one go. */
		{
			struct qkm_buf b;
			size_t start;
			qkm_buf_init(&b, 1u << 16, false);
			assert_int_equal(qkm_frame_begin(&b, QKM_MSG_ACQ_COMMIT, 0, &start), 0);
			assert_int_equal(fill_link_batch(&b, w), 0);
			assert_int_equal(qkm_frame_end(&b, start), 0);
			assert_int_equal(qkm_frame_begin(&b, QKM_MSG_SUPPLY_CANCEL, 0, &start), 0);
			assert_int_equal(fill_link_batch(&b, w), 0);
			assert_int_equal(qkm_frame_end(&b, start), 0);
			assert_int_equal(qkm_link_send(l, b.p, b.len), 0);
			qkm_buf_fini(&b);
		}
		w->committed_sent = true;
		break;
	case QKM_MSG_ACQ_ABORT:
		w->prepare_aborted++;
		event_base_loopbreak(w->base);
		break;
	default:
		break;
	}
}

static void a_on_close(struct qkm_link *l, int err, const char *why, void *arg)
{
	struct world *w = arg;
	if (w->a == l)
		w->a = NULL;
}

static const struct qkm_link_cbs a_cbs = {a_on_open, a_on_frame, a_on_close};

/* ---- B's KSA hook ------------------------------------------------------ */

static int b_on_ksa_frame(const char *peer, const struct qkm_frame *f, void *arg)
{
	struct world *w = arg;
	struct qkm_id batch;
	assert_string_equal(peer, "A");
	assert_int_equal(qkm_tlv_id(f->body, f->body_len, QKM_T_BATCH, &batch), 0);
	w->ksa_frames++;
	w->seen_rc = qkm_store_batch_state(w->st, &batch, &w->seen);
	event_base_loopbreak(w->base);
	return 0;
}

static void b_on_pool(const char *peer, bool usable, void *arg) { (void)peer, (void)usable, (void)arg; }

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
	struct world *w = arg;
	w->timed_out = true;
	event_base_loopbreak(w->base);
}

/* ---- setup ------------------------------------------------------------- */

static int setup(void **state)
{
	struct world *w = calloc(1, sizeof(*w));
	char cadir[PATH_MAX], c[PATH_MAX], k[PATH_MAX];
	assert_non_null(w);
	const char *tmp = getenv("QKM_TEST_TMP");
	if (!tmp || !*tmp)
		tmp = "/tmp";
	assert_true(mkdir(tmp, 0700) == 0 || errno == EEXIST);
	snprintf(w->dir, sizeof(w->dir), "%s/kma-io-XXXXXX", tmp);
	assert_non_null(mkdtemp(w->dir));
	snprintf(cadir, sizeof(cadir), "%s/ca", w->dir);
	assert_int_equal(qkm_ca_create(cadir, "test-ca"), 0);
	snprintf(w->ca, sizeof(w->ca), "%s/" QKM_CA_CERT_FILE, cadir);

	struct qkm_node_cfg *cfg = &w->cfg;
	snprintf(cfg->id, sizeof(cfg->id), "B");
	snprintf(cfg->db, sizeof(cfg->db), "%s/keys.db", w->dir);
	snprintf(cfg->tls.ca, sizeof(cfg->tls.ca), "%s", w->ca);
	issue(w, "node", "B", cfg->tls.cert, cfg->tls.key);
	snprintf(cfg->kx_listen, sizeof(cfg->kx_listen), "127.0.0.1:%d", free_port());
	snprintf(cfg->sim, sizeof(cfg->sim), "127.0.0.1:%d", free_port());
	cfg->n_links = 1;
	struct qkm_node_link *l = &cfg->links[0];
	snprintf(l->link, sizeof(l->link), LINK);
	snprintf(l->peer, sizeof(l->peer), "A");
	snprintf(l->addr, sizeof(l->addr), "127.0.0.1:1"); /* B follows: never dialled */
	snprintf(l->module, sizeof(l->module), LINK ":B");
	l->kma_unit_bits = UNIT * 8;
	l->batch_ms = 100;
	l->batch_max_bytes = 1u << 20;

	w->b_srv = qkm_tls_ctx_new(w->ca, cfg->tls.cert, cfg->tls.key, true);
	w->b_cli = qkm_tls_ctx_new(w->ca, cfg->tls.cert, cfg->tls.key, false);
	issue(w, "node", "A", c, k);
	w->a_cli = qkm_tls_ctx_new(w->ca, c, k, false);
	issue(w, "sim", "sim", c, k);
	w->sim_srv = qkm_tls_ctx_new(w->ca, c, k, true);
	assert_non_null(w->b_srv);
	assert_non_null(w->b_cli);
	assert_non_null(w->a_cli);
	assert_non_null(w->sim_srv);

	for (int i = 0; i < NFILES; i++)
		for (int j = 0; j < FILE_BYTES; j++)
			w->data[i][j] = (uint8_t)(i * 131 + j * 7 + 1);
	assert_int_equal(qkm_id_random(&w->batch), 0);
	memset(w->batch.b + 12, 0, 4);

	w->base = event_base_new();
	assert_non_null(w->base);
	assert_int_equal(qkm_store_open(cfg->db, &w->st), 0);
	w->sim_listener = qkm_listener_new(w->base, cfg->sim, sim_accept, w);
	assert_non_null(w->sim_listener);
	w->kma = qkm_kma_new(w->base, cfg, w->st, w->b_srv, w->b_cli);
	assert_non_null(w->kma);
	struct qkm_kma_hooks h = {b_on_ksa_frame, b_on_pool, NULL, w};
	qkm_kma_set_hooks(w->kma, &h);
	w->deadline = evtimer_new(w->base, on_deadline, w);
	struct timeval tv = {20, 0};
	evtimer_add(w->deadline, &tv);
	*state = w;
	return 0;
}

static int rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb, (void)flag, (void)ftw;
	return remove(p);
}

static int teardown(void **state)
{
	struct world *w = *state;
	qkm_link_free(w->a);
	qkm_link_free(w->sim);
	qkm_kma_free(w->kma);
	qkm_listener_free(w->sim_listener);
	event_free(w->deadline);
	qkm_store_close(w->st);
	event_base_free(w->base);
	SSL_CTX_free(w->b_srv);
	SSL_CTX_free(w->b_cli);
	SSL_CTX_free(w->a_cli);
	SSL_CTX_free(w->sim_srv);
	nftw(w->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	free(w);
	return 0;
}

/* ---- tests ------------------------------------------------------------- */

/* R-ACQ-3, R-SUP-6: a KSA frame read together with the COMMIT before it
 * sees the committed batch READY, not PENDING; the KSA would otherwise
 * refuse a valid supply round ("used or not ready"), fail the application's
 * request and burn the keys on both nodes. */
static void test_commit_applied_before_ksa_frame(void **state)
{
	struct world *w = *state;
	w->a = qkm_link_connect(w->base, w->a_cli, "A", w->cfg.kx_listen, "node", "B", &a_cbs, w);
	assert_non_null(w->a);
	event_base_dispatch(w->base);
	assert_false(w->timed_out);
	assert_int_equal(w->prepare_aborted, 0);
	assert_true(w->prepared);
	assert_true(w->committed_sent);
	assert_int_equal(w->ksa_frames, 1);
	assert_int_equal(w->seen_rc, 0);
	assert_int_equal(w->seen, QKM_BLOCK_READY);
}

int main(void)
{
	if (qkm_secret_heap_init(1 << 24) != 0)
		return 1;
	qkm_log_init("test", QKM_LOG_WARN);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_commit_applied_before_ksa_frame, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
