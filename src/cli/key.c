/* key.c - `qkm key`: an application-side ETSI GS QKD 014 client for shell
 * scripts and interop tests. It speaks to an SAE's node with that SAE's
 * certificate and prints the node's JSON answer on stdout, or each key as
 * hex, base64 or raw bytes (--format), on stdout or in a file made 0600
 * (--out; the key_IDs then go to stdout).
 *   qkm key status --dir D --sae SAE SLAVE
 *   qkm key enc    --dir D --sae SAE SLAVE [--number N] [--size BITS] [OUTPUT]
 *   qkm key dec    --dir D --sae SAE MASTER KEY_ID... [OUTPUT]
 * --url/--cert/--key/--ca replace what --dir provides (a real deployment).
 * Key bytes go only to stdout or the --out file, from buffers wiped after
 * use (jansson's too: its allocator wipes what it frees); no message on
 * stderr quotes a 200 answer. */
#include "cli/cli.h"
#include "core/id.h"
#include "core/log.h"
#include "core/buf.h"
#include "core/secret.h"
#include "net/http.h"
#include "proto/status_json.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <openssl/evp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

static void usage(FILE *f)
{
	fprintf(f, "usage: qkm key status --dir DIR --sae SAE SLAVE\n"
		   "       qkm key enc    --dir DIR --sae SAE SLAVE [--number N] [--size BITS] [OUTPUT]\n"
		   "       qkm key dec    --dir DIR --sae SAE MASTER KEY_ID... [OUTPUT]\n"
		   "  --url URL --cert PEM --key PEM --ca PEM   instead of (or over) --dir\n"
		   "  OUTPUT: --format json|hex|base64|raw   the node's JSON (default), or each key\n"
		   "            as a line \"KEY_ID KEY\" in hex or base64 (raw: with --out only)\n"
		   "          --out FILE   the keys alone to FILE (replaced, mode 0600), one a line\n"
		   "            (raw: their bytes end to end; json: the JSON); key_IDs to stdout\n");
}

enum key_format { FMT_JSON, FMT_HEX, FMT_BASE64, FMT_RAW };

/* One key of a Key container: its ID as the node wrote it (checked to be a
 * UUID) and its bytes, decoded from base64. */
struct got_key {
	char id[37];
	struct qkm_secret *k; /* k->len may exceed len (base64 padding) */
	size_t len;
};

/* jansson's allocator for this process: every block wiped when freed, so
 * the copies of key strings its parser makes leave nothing behind. */
static void *wipe_malloc(size_t n)
{
	if (n > SIZE_MAX - sizeof(max_align_t))
		return NULL;
	unsigned char *p = malloc(sizeof(max_align_t) + n);
	if (!p)
		return NULL;
	memcpy(p, &n, sizeof(n));
	return p + sizeof(max_align_t);
}

static void wipe_free(void *q)
{
	if (!q)
		return;
	unsigned char *p = (unsigned char *)q - sizeof(max_align_t);
	size_t n;
	memcpy(&n, p, sizeof(n));
	qkm_cleanse(p, sizeof(max_align_t) + n);
	free(p);
}

/* Strict base64 (RFC 4648, padded, no line breaks) into a new secret. */
static int b64_decode(const char *s, struct got_key *g)
{
	size_t n = strlen(s), pad = 0;
	if (n == 0 || n % 4 || n > INT_MAX)
		return -1;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		bool alpha = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
			     (c >= '0' && c <= '9') || c == '+' || c == '/';
		if (c == '=' && i >= n - 2 && (i == n - 1 || s[n - 1] == '='))
			pad++;
		else if (!alpha || pad)
			return -1;
	}
	g->k = qkm_secret_new_raw(n / 4 * 3);
	if (!g->k || EVP_DecodeBlock(g->k->p, (const unsigned char *)s, (int)n) != (int)(n / 4 * 3))
		return -1;
	g->len = n / 4 * 3 - pad;
	return g->len ? 0 : -1;
}

/* Reads the Key container of a 200 answer into keys[0..*n). On error,
 * err names the field at fault; it never quotes the answer. */
static int parse_keys(const char *resp, struct got_key **keys, size_t *n, char *err, size_t errlen)
{
	json_error_t jerr;
	json_t *doc = json_loads(resp, JSON_REJECT_DUPLICATES, &jerr);
	json_t *arr = json_object_get(doc, "keys");
	int rc = -1;
	*keys = NULL;
	*n = 0;
	if (!doc || !json_is_object(doc)) {
		snprintf(err, errlen, "the answer is not a JSON object");
		goto out;
	}
	if (!json_is_array(arr) || json_array_size(arr) == 0) {
		snprintf(err, errlen, "the answer has no \"keys\" array of keys");
		goto out;
	}
	*keys = calloc(json_array_size(arr), sizeof(**keys));
	if (!*keys) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < json_array_size(arr); i++) {
		json_t *e = json_array_get(arr, i);
		const char *id = json_string_value(json_object_get(e, "key_ID"));
		const char *kb = json_string_value(json_object_get(e, "key"));
		struct qkm_id parsed;
		struct got_key *g = &(*keys)[i];
		*n = i + 1;
		if (!id || strlen(id) != 36 || qkm_id_parse(id, &parsed)) {
			snprintf(err, errlen, "keys[%zu].key_ID is not a UUID", i);
			goto out;
		}
		memcpy(g->id, id, 37);
		if (!kb || b64_decode(kb, g)) {
			snprintf(err, errlen, "keys[%zu].key is not base64", i);
			goto out;
		}
	}
	rc = 0;
out:
	json_decref(doc);
	return rc;
}

static void free_keys(struct got_key *keys, size_t n)
{
	for (size_t i = 0; keys && i < n; i++)
		qkm_secret_free(keys[i].k);
	free(keys);
}

static int write_all(int fd, const void *p, size_t n)
{
	const char *c = p;
	while (n) {
		ssize_t w = write(fd, c, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		c += w;
		n -= (size_t)w;
	}
	return 0;
}

/* Puts the key bytes in fmt into b: for FMT_HEX and FMT_BASE64 one key a
 * line, after "KEY_ID " when with_ids; for FMT_RAW the bytes end to end. */
static int format_keys(struct qkm_buf *b, const struct got_key *keys, size_t n, enum key_format fmt,
		       bool with_ids)
{
	static const char hex[] = "0123456789abcdef";
	for (size_t i = 0; i < n; i++) {
		const struct got_key *g = &keys[i];
		size_t need = 38 + (fmt == FMT_HEX ? 2 * g->len : (g->len + 2) / 3 * 4 + 1) + 1;
		if (qkm_buf_reserve(b, need))
			return -1;
		uint8_t *o = b->p + b->len;
		size_t m = 0;
		if (fmt == FMT_RAW) {
			memcpy(o, g->k->p, g->len);
			b->len += g->len;
			continue;
		}
		if (with_ids) {
			memcpy(o, g->id, 36);
			o[36] = ' ';
			m = 37;
		}
		if (fmt == FMT_HEX) {
			for (size_t j = 0; j < g->len; j++) {
				o[m++] = (uint8_t)hex[g->k->p[j] >> 4];
				o[m++] = (uint8_t)hex[g->k->p[j] & 15];
			}
		} else {
			/* EVP_EncodeBlock ends with a NUL, overwritten by the newline. */
			m += (size_t)EVP_EncodeBlock(o + m, g->k->p, (int)g->len);
		}
		o[m++] = '\n';
		b->len += m;
	}
	return 0;
}

/* The --out file: made before the request, so that a path that cannot be
 * written costs no key; filled and renamed over the path once the keys are
 * in hand. */
struct key_file {
	const char *path;
	char tmp[PATH_MAX];
	int fd;
};

/* Creates the new file of mode 0600 beside kf->path. A path that exists but
 * is not a regular file (a device, a link, a directory) is refused. */
static int key_file_open(struct key_file *kf, const char *path)
{
	struct stat st;
	kf->path = path;
	kf->fd = -1;
	if (lstat(path, &st) == 0 && !S_ISREG(st.st_mode)) {
		fprintf(stderr, "qkm key: %s exists and is not a regular file\n", path);
		return -1;
	}
	if ((size_t)snprintf(kf->tmp, sizeof(kf->tmp), "%s.XXXXXX", path) >= sizeof(kf->tmp)) {
		fprintf(stderr, "qkm key: %s: path too long\n", path);
		return -1;
	}
	kf->fd = mkostemp(kf->tmp, O_CLOEXEC);
	if (kf->fd < 0 || fchmod(kf->fd, 0600)) {
		fprintf(stderr, "qkm key: cannot create a file beside %s: %s\n", path, strerror(errno));
		if (kf->fd >= 0) {
			close(kf->fd);
			unlink(kf->tmp);
			kf->fd = -1;
		}
		return -1;
	}
	return 0;
}

/* Removes the new file unless it was committed; a no-op when none is open. */
static void key_file_abort(struct key_file *kf)
{
	if (kf->fd < 0)
		return;
	close(kf->fd);
	unlink(kf->tmp);
	kf->fd = -1;
}

/* Writes p[0..n) to the new file, flushes it to disk and renames it over
 * the path, so a reader never sees part of a key. */
static int key_file_commit(struct key_file *kf, const void *p, size_t n)
{
	char dir[PATH_MAX];
	if (write_all(kf->fd, p, n) || fsync(kf->fd)) {
		fprintf(stderr, "qkm key: %s: %s\n", kf->tmp, strerror(errno));
		key_file_abort(kf);
		return -1;
	}
	int fd = kf->fd;
	kf->fd = -1;
	if (close(fd) || rename(kf->tmp, kf->path)) {
		fprintf(stderr, "qkm key: %s: %s\n", kf->path, strerror(errno));
		unlink(kf->tmp);
		return -1;
	}
	snprintf(dir, sizeof(dir), "%s", kf->path);
	char *slash = strrchr(dir, '/');
	if (slash == dir)
		slash[1] = 0;
	else if (slash)
		*slash = 0;
	else
		snprintf(dir, sizeof(dir), ".");
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd >= 0) {
		(void)fsync(fd); /* best effort: the file itself is on disk */
		close(fd);
	}
	return 0;
}

/* The answer of a 200 in the form asked for; 0, or 1 with a message. */
static int output_keys(const char *resp, enum key_format fmt, struct key_file *kf,
		       unsigned long number, const char *const *want_ids, int n_want)
{
	const char *out_path = kf->fd >= 0 ? kf->path : NULL;
	struct got_key *keys = NULL;
	size_t n = 0;
	struct qkm_buf b, ids;
	char err[128];
	int rc = 1;
	qkm_buf_init(&b, SIZE_MAX / 2, true);
	qkm_buf_init(&ids, SIZE_MAX / 2, false);
	if (fmt == FMT_JSON && !out_path) {
		if (write_all(STDOUT_FILENO, resp, strlen(resp)) || write_all(STDOUT_FILENO, "\n", 1)) {
			fprintf(stderr, "qkm key: standard output: %s\n", strerror(errno));
			goto out;
		}
		rc = 0;
		goto out;
	}
	if (parse_keys(resp, &keys, &n, err, sizeof(err))) {
		fprintf(stderr, "qkm key: %s\n", err);
		goto out;
	}
	/* A script trusts what it gets: as many keys as asked, by the IDs asked. */
	if (want_ids ? n != (size_t)n_want : n != number) {
		fprintf(stderr, "qkm key: the node sent %zu keys for %lu asked\n", n,
			want_ids ? (unsigned long)n_want : number);
		goto out;
	}
	for (size_t i = 0; want_ids && i < n; i++) {
		int j = 0;
		while (j < n_want && strcasecmp(want_ids[j], keys[i].id))
			j++;
		if (j == n_want) {
			fprintf(stderr, "qkm key: the node sent key %s, which was not asked for\n",
				keys[i].id);
			goto out;
		}
	}
	if (fmt == FMT_JSON) {
		if (qkm_buf_put(&b, resp, strlen(resp)) || qkm_buf_put(&b, "\n", 1))
			goto oom;
	} else if (format_keys(&b, keys, n, fmt, !out_path)) {
		goto oom;
	}
	if (out_path) {
		for (size_t i = 0; i < n; i++)
			if (qkm_buf_put(&ids, keys[i].id, 36) || qkm_buf_put(&ids, "\n", 1))
				goto oom;
		if (key_file_commit(kf, b.p, b.len))
			goto out;
	}
	const struct qkm_buf *o = out_path ? &ids : &b;
	if (write_all(STDOUT_FILENO, o->p, o->len)) {
		fprintf(stderr, "qkm key: standard output: %s\n", strerror(errno));
		goto out;
	}
	rc = 0;
	goto out;
oom:
	fprintf(stderr, "qkm key: out of memory\n");
out:
	free_keys(keys, n);
	qkm_buf_fini(&b);
	qkm_buf_fini(&ids);
	return rc;
}

/* An answer other than 200: "HTTP CODE: the node's message" (ETSI 014 Error
 * body, its details appended), and what to do where the code says it. */
static void print_refusal(int status, const char *resp, const char *target)
{
	json_t *e = json_loads(resp ? resp : "", 0, NULL), *d;
	const char *m = json_string_value(json_object_get(e, "message"));
	size_t k;
	fprintf(stderr, "qkm key: HTTP %d: %s", status, m ? m : resp && resp[0] ? resp : "(no body)");
	json_array_foreach(json_object_get(e, "details"), k, d) {
		json_t *v;
		const char *f;
		json_object_foreach(d, f, v)
			if (json_is_string(v))
				fprintf(stderr, "; %s: %s", f, json_string_value(v));
	}
	json_decref(e);
	if (status == 401 || status == 403)
		fprintf(stderr, " (the node refused this SAE's certificate: is it this network's and "
				"not revoked? `qkm ctl sae list`)");
	else if (status == 503)
		fprintf(stderr, " (no key to give now, or over this SAE's limits: try again later; "
				"`qkm key status` shows the stock)");
	else if (status == 404)
		fprintf(stderr, " (no such resource at %s)", target);
	fputc('\n', stderr);
}

int cli_key(int argc, char **argv)
{
	const char *dir = NULL, *sae = NULL, *url = NULL, *cert = NULL, *key = NULL, *ca = NULL;
	const char *format = NULL, *out_path = NULL;
	enum key_format fmt = FMT_JSON;
	const char *pos[QKM_ETSI_MAX_POS];
	unsigned long number = 0, size = 0;
	int npos = 0, rc = 1;
	qkm_log_init("qkm key", QKM_LOG_ERROR);
	/* Before jansson allocates anything (network.json too): its blocks
	 * hold key strings when it reads a Key container. */
	json_set_alloc_funcs(wipe_malloc, wipe_free);
	for (int i = 1; i < argc; i++)
		if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			usage(stdout);
			return 0;
		}
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	for (int i = 2; i < argc; i++) {
		const char *a = argv[i];
		const char **opt = !strcmp(a, "--dir")    ? &dir
				   : !strcmp(a, "--sae")  ? &sae
				   : !strcmp(a, "--url")  ? &url
				   : !strcmp(a, "--cert") ? &cert
				   : !strcmp(a, "--key")  ? &key
				   : !strcmp(a, "--ca")   ? &ca
				   : !strcmp(a, "--format") ? &format
				   : !strcmp(a, "--out")    ? &out_path
							    : NULL;
		if (opt && i + 1 < argc) {
			*opt = argv[++i];
		} else if ((!strcmp(a, "--number") || !strcmp(a, "--size")) && i + 1 < argc) {
			char *end;
			unsigned long v = strtoul(argv[++i], &end, 10);
			if (*end || v == 0 || v > 1000000) {
				fprintf(stderr, "qkm key: %s needs a positive number\n", a);
				return 2;
			}
			*(a[2] == 'n' ? &number : &size) = v;
		} else if (a[0] != '-' && npos < QKM_ETSI_MAX_POS) {
			pos[npos++] = a;
		} else {
			usage(stderr);
			return 2;
		}
	}
	const char *cmd = argv[1];
	bool is_dec = !strcmp(cmd, "dec");
	if ((strcmp(cmd, "status") && strcmp(cmd, "enc") && !is_dec) || npos < 1 ||
	    (!is_dec && npos != 1) || (is_dec && npos < 2) || (!sae && (!cert || !key))) {
		usage(stderr);
		return 2;
	}
	if (format) {
		static const char *const names[] = {"json", "hex", "base64", "raw"};
		int f = 0;
		while (f < 4 && strcmp(format, names[f]))
			f++;
		if (f == 4) {
			fprintf(stderr, "qkm key: --format must be json, hex, base64 or raw\n");
			return 2;
		}
		fmt = (enum key_format)f;
	}
	if ((format || out_path) && !strcmp(cmd, "status")) {
		fprintf(stderr, "qkm key: --format and --out are for enc and dec\n");
		return 2;
	}
	if (fmt == FMT_RAW && !out_path) {
		fprintf(stderr, "qkm key: --format raw needs --out FILE\n");
		return 2;
	}
	if (out_path && !*out_path) {
		usage(stderr);
		return 2;
	}
	for (int i = 0; i < npos; i++)
		if (!qkm_name_valid(pos[i]) && !(is_dec && i > 0)) {
			fprintf(stderr, "qkm key: '%s' is not a valid SAE ID\n", pos[i]);
			return 2;
		}
	struct qkm_network *net = NULL;
	char base[QKM_ADDR_MAX + 16], c_cert[PATH_MAX], c_key[PATH_MAX], c_ca[PATH_MAX];
	char *body = NULL, *resp = NULL;
	struct key_file kf = {.fd = -1};
	if (dir) {
		net = malloc(sizeof(*net));
		if (!net) {
			fprintf(stderr, "qkm key: out of memory\n");
			goto out;
		}
		if (cli_network_load("qkm key", dir, net))
			goto out;
		size_t i = 0;
		while (i < net->n_saes && (!sae || strcmp(net->saes[i].id, sae)))
			i++;
		if (i == net->n_saes) {
			fprintf(stderr, "qkm key: no SAE '%s' in %s; it has ", sae ? sae : "?", dir);
			cli_print_saes(stderr, net);
			fprintf(stderr, " (`qkm ctl sae add NAME --node NODE --dir %s` adds one)\n", dir);
			goto out;
		}
		size_t j = 0;
		while (j < net->n_nodes && strcmp(net->nodes[j].id, net->saes[i].node))
			j++;
		if (j == net->n_nodes || !net->nodes[j].etsi014[0]) {
			fprintf(stderr, "qkm key: SAE '%s' is at node %s, which has no ETSI 014 API\n",
				sae, net->saes[i].node);
			goto out;
		}
		snprintf(base, sizeof(base), "%s", net->nodes[j].etsi014);
		snprintf(c_cert, sizeof(c_cert), "%s", net->saes[i].cert);
		snprintf(c_key, sizeof(c_key), "%s", net->saes[i].key);
		snprintf(c_ca, sizeof(c_ca), "%s", net->ca);
	}
	if (url)
		snprintf(base, sizeof(base), "%s", url);
	if (cert)
		snprintf(c_cert, sizeof(c_cert), "%s", cert);
	if (key)
		snprintf(c_key, sizeof(c_key), "%s", key);
	if (ca)
		snprintf(c_ca, sizeof(c_ca), "%s", ca);
	if (!dir && (!url || !ca)) {
		fprintf(stderr, "qkm key: without --dir, give --url, --cert, --key and --ca\n");
		goto out;
	}
	char target[QKM_ADDR_MAX + 200];
	const char *method = "GET";
	if (!strcmp(cmd, "status")) {
		snprintf(target, sizeof(target), "%s/api/v1/keys/%s/status", base, pos[0]);
	} else if (!strcmp(cmd, "enc")) {
		snprintf(target, sizeof(target), "%s/api/v1/keys/%s/enc_keys", base, pos[0]);
		method = "POST";
		body = malloc(96);
		if (!body)
			goto out;
		if (size)
			snprintf(body, 96, "{\"number\": %lu, \"size\": %lu}", number ? number : 1, size);
		else
			snprintf(body, 96, "{\"number\": %lu}", number ? number : 1);
	} else {
		snprintf(target, sizeof(target), "%s/api/v1/keys/%s/dec_keys", base, pos[0]);
		method = "POST";
		size_t cap = 32 + (size_t)npos * 64;
		body = malloc(cap);
		if (!body)
			goto out;
		size_t n = (size_t)snprintf(body, cap, "{\"key_IDs\": [");
		for (int i = 1; i < npos; i++) {
			struct qkm_id id;
			if (qkm_id_parse(pos[i], &id) || strlen(pos[i]) != 36) {
				fprintf(stderr, "qkm key: '%s' is not a key_ID (a UUID)\n", pos[i]);
				goto out;
			}
			n += (size_t)snprintf(body + n, cap - n, "%s{\"key_ID\": \"%s\"}", i > 1 ? ", " : "",
					      pos[i]);
		}
		snprintf(body + n, cap - n, "]}");
	}
	if (out_path && key_file_open(&kf, out_path))
		goto out;
	int status;
	int r = qkm_https_request(target, method, body, c_ca, c_cert, c_key, 15000, &status, &resp);
	if (r) {
		fprintf(stderr, "qkm key: %s: %s", target, cli_http_strerror(r));
		if (r == QKM_EIO && dir)
			fprintf(stderr, "; `qkm ctl status --dir %s` shows which nodes are up", dir);
		else if (r == QKM_EIO)
			fprintf(stderr, "; is --url right?");
		fputc('\n', stderr);
		goto out;
	}
	if (status == 200 && !strcmp(cmd, "status")) {
		printf("%s\n", resp);
		rc = 0;
	} else if (status == 200) {
		rc = output_keys(resp ? resp : "", fmt, &kf, number ? number : 1,
				 is_dec ? pos + 1 : NULL, npos - 1);
	} else {
		print_refusal(status, resp, target);
	}
out:
	key_file_abort(&kf);
	if (resp) {
		qkm_cleanse(resp, strlen(resp)); /* it held key bytes (base64) */
		free(resp);
	}
	free(body);
	free(net);
	return rc;
}
