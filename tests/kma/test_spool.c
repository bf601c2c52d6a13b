/* test_spool.c - a spool directory as a key source (kma/spool.c) on a real
 * temporary directory: files are handed over complete, once, in name order;
 * .tmp and other names are left alone; bad files go to rejected/ with a
 * reason; a settled file is removed and only then forgotten; what was in
 * flight at a crash is read again. R-ACQ-5. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/buf.h"
#include "core/secret.h"
#include "kma/spool.h"

struct fx {
	char dir[PATH_MAX - 64];
	struct qkm_spool *sp;
	/* what the ops saw */
	int n_taken, n_rejected, n_forgot;
	char taken[32][64], taken_id[32][64], rejected[32][64], why[32][256], forgot[32][64];
	enum qkm_spool_verdict verdict[32]; /* answer to the i-th take (0 = TAKEN) */
	int n_asked;
};

static enum qkm_spool_verdict op_take(const char *name, struct qkm_keyfile *kf, char *why,
				      size_t whysz, void *arg)
{
	struct fx *f = arg;
	assert_true(f->n_asked < 32);
	enum qkm_spool_verdict v = f->verdict[f->n_asked++];
	if (v == QKM_SPOOL_REJECT)
		snprintf(why, whysz, "not a QKD-key of this link's module");
	if (v != QKM_SPOOL_TAKEN)
		return v;
	assert_true(f->n_taken < 32);
	assert_non_null(kf->data);
	snprintf(f->taken[f->n_taken], 64, "%s", name);
	snprintf(f->taken_id[f->n_taken++], 64, "%s", kf->m.qkd.qkd_key_id);
	qkm_secret_free(kf->data); /* taken, as acquisition does */
	kf->data = NULL;
	return v;
}

static void op_rejected(const char *name, const char *why, void *arg)
{
	struct fx *f = arg;
	assert_true(f->n_rejected < 32);
	snprintf(f->rejected[f->n_rejected], 64, "%s", name);
	snprintf(f->why[f->n_rejected++], 256, "%s", why);
}

static void op_forget(const char *id, void *arg)
{
	struct fx *f = arg;
	assert_true(f->n_forgot < 32);
	snprintf(f->forgot[f->n_forgot++], 64, "%s", id);
}

static struct qkm_spool *spool_open(struct fx *f)
{
	struct qkm_spool_ops ops = {op_take, op_rejected, op_forget, f};
	struct qkm_spool *sp = qkm_spool_new(f->dir, "A-B", &ops);
	assert_non_null(sp);
	return sp;
}

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	const char *tmp = getenv("QKM_TEST_TMP");
	if (!f)
		return -1;
	if (!tmp || !*tmp)
		tmp = "/tmp";
	if (mkdir(tmp, 0700) != 0 && errno != EEXIST)
		tmp = "/tmp";
	snprintf(f->dir, sizeof(f->dir), "%s/spool-XXXXXX", tmp);
	if (!mkdtemp(f->dir))
		return -1;
	/* The spool creates what is missing of its path. */
	strncat(f->dir, "/link/A-B", sizeof(f->dir) - strlen(f->dir) - 1);
	f->sp = spool_open(f);
	*state = f;
	return 0;
}

static void rm_rf(const char *path)
{
	DIR *d = opendir(path);
	struct dirent *e;
	char p[PATH_MAX];
	if (!d) {
		unlink(path);
		return;
	}
	while ((e = readdir(d)) != NULL) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		snprintf(p, sizeof(p), "%s/%s", path, e->d_name);
		rm_rf(p);
	}
	closedir(d);
	rmdir(path);
}

static int teardown(void **state)
{
	struct fx *f = *state;
	qkm_spool_free(f->sp);
	char top[PATH_MAX];
	snprintf(top, sizeof(top), "%s", f->dir);
	*strstr(top, "/link/A-B") = 0;
	rm_rf(top);
	free(f);
	return 0;
}

/* An encoded QKD-key file of module "m-A" with ID id and len bytes of key. */
static void encode(const char *id, size_t len, enum qkm_keyfile_kind kind, struct qkm_buf *out)
{
	struct qkm_keyfile kf;
	qkm_keyfile_init(&kf, kind);
	if (kind == QKM_KF_QKD) {
		snprintf(kf.m.qkd.qkd_key_id, sizeof(kf.m.qkd.qkd_key_id), "%s", id);
		snprintf(kf.m.qkd.qkd_module_id, sizeof(kf.m.qkd.qkd_module_id), "m-A");
		kf.m.qkd.key_length = (uint32_t)(8 * len);
	} else {
		memset(kf.m.kma.kma_key_id.b, 0x11, QKM_ID_LEN);
		snprintf(kf.m.kma.matching_kma_id, sizeof(kf.m.kma.matching_kma_id), "kma-B");
	}
	kf.data = qkm_secret_new(len);
	assert_non_null(kf.data);
	memset(kf.data->p, (int)len, len);
	qkm_buf_init(out, 1u << 20, true);
	assert_int_equal(qkm_keyfile_encode(&kf, out), 0);
	qkm_keyfile_fini(&kf);
}

static void put_file(struct fx *f, const char *name, const char *id, size_t len)
{
	struct qkm_buf b;
	encode(id, len, QKM_KF_QKD, &b);
	assert_int_equal(qkm_spool_write(f->dir, name, b.p, b.len, false), 0);
	qkm_buf_fini(&b);
}

/* Writes raw bytes under a full file name (no rename: as a careless writer). */
static void put_raw(struct fx *f, const char *file, const void *p, size_t len)
{
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/%s", f->dir, file);
	FILE *fp = fopen(path, "wb");
	assert_non_null(fp);
	assert_int_equal(fwrite(p, 1, len, fp), len);
	assert_int_equal(fclose(fp), 0);
}

static bool exists(struct fx *f, const char *file)
{
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/%s", f->dir, file);
	return access(path, F_OK) == 0;
}

static int scan(struct fx *f, bool *more)
{
	int n = qkm_spool_scan(f->sp, 64u << 20, more);
	assert_true(n >= 0);
	return n;
}

/* Complete files in name order (not the order written), once each; .tmp
 * files, dot files and other names are not read; a file renamed into place
 * later is read by the next scan. */
static void test_order_and_partial_files(void **state)
{
	struct fx *f = *state;
	bool more;
	put_file(f, "0003", "q.3", 64);
	put_file(f, "0001", "q.1", 64);
	put_file(f, "0002", "q.2", 64);
	struct qkm_buf b;
	encode("q.4", 64, QKM_KF_QKD, &b);
	put_raw(f, "0004.tmp", b.p, b.len / 2); /* still being written */
	put_raw(f, ".0000.qkd", b.p, b.len);
	put_raw(f, "README", "hello", 5);
	assert_int_equal(scan(f, &more), 3);
	assert_false(more);
	assert_int_equal(f->n_taken, 3);
	assert_string_equal(f->taken[0], "0001.qkd");
	assert_string_equal(f->taken[1], "0002.qkd");
	assert_string_equal(f->taken[2], "0003.qkd");
	assert_string_equal(f->taken_id[0], "q.1");
	assert_int_equal(f->n_rejected, 0);
	assert_int_equal(qkm_spool_in_flight(f->sp), 3);
	assert_int_equal(scan(f, &more), 0); /* in flight: not handed over again */

	/* The writer finishes 0004: write the rest, rename into place. */
	put_raw(f, "0004.tmp", b.p, b.len);
	char from[PATH_MAX], to[PATH_MAX];
	snprintf(from, sizeof(from), "%s/0004.tmp", f->dir);
	snprintf(to, sizeof(to), "%s/0004.qkd", f->dir);
	assert_int_equal(rename(from, to), 0);
	qkm_buf_fini(&b);
	assert_int_equal(scan(f, &more), 1);
	assert_string_equal(f->taken[3], "0004.qkd");
	assert_true(exists(f, "README"));
	assert_true(exists(f, ".0000.qkd"));
}

/* A settled file (stored or discarded) is removed, then forgotten; the
 * others stay; an unknown ID changes nothing. */
static void test_settled_removed_then_forgotten(void **state)
{
	struct fx *f = *state;
	put_file(f, "a", "q.a", 32);
	put_file(f, "b", "q.b", 32);
	put_file(f, "c", "q.c", 32);
	assert_int_equal(scan(f, NULL), 3);
	qkm_spool_settled(f->sp, "q.b", true);
	qkm_spool_settled(f->sp, "q.c", false);
	qkm_spool_settled(f->sp, "q.zz", true);
	assert_true(exists(f, "b.qkd")); /* removal waits for remove_done */
	assert_int_equal(f->n_forgot, 0);
	assert_int_equal(qkm_spool_remove_done(f->sp), 2);
	assert_false(exists(f, "b.qkd"));
	assert_false(exists(f, "c.qkd"));
	assert_true(exists(f, "a.qkd"));
	assert_int_equal(f->n_forgot, 2);
	assert_int_equal(qkm_spool_in_flight(f->sp), 1);
	assert_int_equal(qkm_spool_remove_done(f->sp), 0);
	assert_int_equal(scan(f, NULL), 0);
}

/* Files that are no key file, cut short, of another kind, or refused by
 * acquisition go to rejected/ with the reason; never deleted, never handed
 * over, not read again; a good file among them is taken. */
static void test_rejected(void **state)
{
	struct fx *f = *state;
	struct qkm_buf b, k;
	bool more;
	encode("q.1", 64, QKM_KF_QKD, &b);
	encode("x", 64, QKM_KF_KMA, &k);
	put_raw(f, "01.qkd", "not a key file", 14);
	put_raw(f, "02.qkd", b.p, b.len - 3); /* a writer that did not rename */
	put_raw(f, "03.qkd", k.p, k.len);
	put_file(f, "04", "q.4", 64);
	put_file(f, "05", "q.5", 64);
	char d[PATH_MAX];
	snprintf(d, sizeof(d), "%s/06.qkd", f->dir);
	assert_int_equal(mkdir(d, 0700), 0);
	f->verdict[1] = QKM_SPOOL_REJECT; /* the second take: 05 */
	assert_int_equal(scan(f, &more), 6);
	assert_int_equal(f->n_taken, 1);
	assert_string_equal(f->taken[0], "04.qkd");
	assert_int_equal(f->n_rejected, 5);
	assert_string_equal(f->rejected[0], "01.qkd");
	assert_non_null(strstr(f->why[0], "not a valid key file"));
	assert_non_null(strstr(f->why[1], "cut short"));
	assert_non_null(strstr(f->why[2], "not a QKD-key file"));
	assert_string_equal(f->rejected[3], "05.qkd");
	assert_non_null(strstr(f->why[3], "module"));
	assert_non_null(strstr(f->why[4], "not a regular file"));
	static const char *const gone[] = {"01.qkd", "02.qkd", "03.qkd", "05.qkd", "06.qkd"};
	for (int i = 0; i < 5; i++) {
		char r[64];
		snprintf(r, sizeof(r), "rejected/%s", gone[i]);
		assert_false(exists(f, gone[i]));
		assert_true(exists(f, r));
	}
	assert_int_equal(scan(f, &more), 0);
	assert_int_equal(f->n_rejected, 5);
	qkm_buf_fini(&b);
	qkm_buf_fini(&k);
}

/* LATER (acquisition's buffer full) stops the scan and leaves the file
 * for the next one; DONE (stored before a crash) removes it; a byte budget
 * splits a scan. */
static void test_later_done_budget(void **state)
{
	struct fx *f = *state;
	bool more;
	put_file(f, "1", "q.1", 64);
	put_file(f, "2", "q.2", 64);
	put_file(f, "3", "q.3", 64);
	f->verdict[1] = QKM_SPOOL_LATER;
	assert_int_equal(scan(f, &more), 1);
	assert_true(more);
	assert_int_equal(qkm_spool_in_flight(f->sp), 1);
	f->verdict[2] = QKM_SPOOL_DONE; /* 2 again: stored before */
	assert_int_equal(qkm_spool_scan(f->sp, 1, &more), 1);
	assert_true(more); /* 3 waits: the budget was spent on 2 */
	assert_false(exists(f, "2.qkd"));
	assert_int_equal(qkm_spool_scan(f->sp, 1, &more), 1);
	assert_false(more);
	assert_int_equal(f->n_taken, 2);
	assert_string_equal(f->taken[1], "3.qkd");
}

/* A crash: files in flight stay in the directory and a new spool (the
 * restarted node) hands them over again, in order. */
static void test_restart_reads_again(void **state)
{
	struct fx *f = *state;
	put_file(f, "1", "q.1", 64);
	put_file(f, "2", "q.2", 64);
	assert_int_equal(scan(f, NULL), 2);
	qkm_spool_settled(f->sp, "q.1", true);
	qkm_spool_free(f->sp); /* killed before removing anything */
	f->sp = spool_open(f);
	assert_int_equal(scan(f, NULL), 2);
	assert_int_equal(f->n_taken, 4);
	assert_string_equal(f->taken[2], "1.qkd");
	assert_string_equal(f->taken[3], "2.qkd");
}

int main(void)
{
	if (qkm_secret_heap_init(1 << 24) != 0)
		return 1;
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_order_and_partial_files, setup, teardown),
		cmocka_unit_test_setup_teardown(test_settled_removed_then_forgotten, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_rejected, setup, teardown),
		cmocka_unit_test_setup_teardown(test_later_done_budget, setup, teardown),
		cmocka_unit_test_setup_teardown(test_restart_reads_again, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
