/* etsi_load.c - closed-loop load client for bench/etsi014: N keep-alive
 * HTTP/1.1 connections over TLS 1.3 with a client certificate, one thread per
 * connection, one request in flight per connection. Measures each request's
 * latency with CLOCK_MONOTONIC and checks every response (status 200 and a
 * valid ETSI 014 key container); errors are counted and printed, never
 * dropped. Not part of qkm: compiled by bench/etsi014 with
 *   cc -O2 -pthread -o etsi_load etsi_load.c -lssl -lcrypto
 *
 * Modes:
 *   enc   GET {a}{path}                          as --cert/--key
 *   pair  GET {a}{path}, then POST {b}{dec-path} as --cert-b/--key-b with the
 *         returned key_ID; the dec reply must carry the same key_ID and key.
 *         One pair is one operation; its latency is enc + dec. Each
 *         "connection" is then one thread with one connection to a and one to b.
 *
 * Output: one line of JSON on stdout (or a human line without --json); error
 * samples on stderr. Exit 0 when the run could be made (errors or not), 1 when
 * it could not (no connection, bad arguments). */
#define _GNU_SOURCE
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define RESP_MAX (64u << 10) /* headers + body; a key container here is ~113 bytes */
#define ERR_SAMPLES 8        /* distinct error messages kept and printed */
#define ERR_KINDS 16

struct endpoint {
	char host[64];
	int port;
	const char *cert, *key;
	SSL_CTX *ctx;
};

struct conn {
	struct endpoint *ep;
	int fd;
	SSL *ssl;
	char buf[RESP_MAX];
	size_t have;    /* bytes in buf not yet consumed */
	unsigned reconnects;
};

struct resp {
	int status;
	const char *body;
	size_t body_len;
	bool close;
};

/* Error kinds, counted per kind across threads. */
enum { E_CONNECT, E_IO, E_HTTP, E_STATUS_4XX, E_STATUS_503, E_STATUS_OTHER, E_CONTAINER,
       E_MISMATCH, E_NKINDS };
static const char *err_names[E_NKINDS] = {"connect", "io", "http", "status_4xx", "status_503",
					   "status_other", "bad_container", "dec_mismatch"};

static struct {
	const char *mode, *path, *dec_path, *ca;
	struct endpoint a, b;
	int conns;
	double seconds, warmup;
	unsigned key_bytes; /* expected decoded key length; 0: any */
	bool json, check, quickack;
} opt = {.mode = "enc", .conns = 1, .seconds = 10, .warmup = 1, .key_bytes = 32, .check = true};

static _Atomic unsigned long err_count[E_NKINDS];
static pthread_mutex_t err_mu = PTHREAD_MUTEX_INITIALIZER;
static char err_sample[ERR_SAMPLES][256];
static unsigned long err_sample_n[ERR_SAMPLES];
static int n_samples;
static pthread_barrier_t start_barrier;
static uint64_t t_start, t_measure, t_end; /* ns, CLOCK_MONOTONIC; set between the barriers */

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Counts an error of kind k and keeps up to ERR_SAMPLES distinct messages
 * (with their counts) for the report. */
static void err_note(int k, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void err_note(int k, const char *fmt, ...)
{
	char msg[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	atomic_fetch_add(&err_count[k], 1);
	pthread_mutex_lock(&err_mu);
	int i;
	for (i = 0; i < n_samples; i++)
		if (strcmp(err_sample[i], msg) == 0)
			break;
	if (i < n_samples)
		err_sample_n[i]++;
	else if (n_samples < ERR_SAMPLES) {
		snprintf(err_sample[n_samples], sizeof(err_sample[0]), "%s", msg);
		err_sample_n[n_samples++] = 1;
	}
	pthread_mutex_unlock(&err_mu);
}

/* Copies printable ASCII of s (at most n bytes) into out, others as '?'. */
static void printable(char *out, size_t cap, const char *s, size_t n)
{
	size_t j = 0;
	for (size_t i = 0; i < n && j + 1 < cap; i++)
		out[j++] = (s[i] >= 0x20 && s[i] < 0x7f) ? s[i] : '?';
	out[j] = 0;
}

/* ---- TLS connections --------------------------------------------------- */

static SSL_CTX *ctx_new(const char *cert, const char *key)
{
	SSL_CTX *c = SSL_CTX_new(TLS_client_method());
	if (!c || !SSL_CTX_set_min_proto_version(c, TLS1_3_VERSION) ||
	    !SSL_CTX_set_max_proto_version(c, TLS1_3_VERSION) ||
	    SSL_CTX_load_verify_locations(c, opt.ca, NULL) != 1 ||
	    SSL_CTX_use_certificate_chain_file(c, cert) != 1 ||
	    SSL_CTX_use_PrivateKey_file(c, key, SSL_FILETYPE_PEM) != 1 ||
	    SSL_CTX_check_private_key(c) != 1) {
		ERR_print_errors_fp(stderr);
		fprintf(stderr, "etsi_load: cannot set up TLS with %s / %s\n", cert, key);
		exit(1);
	}
	SSL_CTX_set_verify(c, SSL_VERIFY_PEER, NULL);
	/* Keep-alive connections: no tickets needed, and none to process. */
	SSL_CTX_set_num_tickets(c, 0);
	return c;
}

static void conn_close(struct conn *c)
{
	if (c->ssl) {
		SSL_free(c->ssl);
		c->ssl = NULL;
	}
	if (c->fd >= 0) {
		close(c->fd);
		c->fd = -1;
	}
	c->have = 0;
}

static int conn_open(struct conn *c)
{
	struct sockaddr_in sa;
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_port = htons((uint16_t)c->ep->port);
	if (inet_pton(AF_INET, c->ep->host, &sa.sin_addr) != 1) {
		err_note(E_CONNECT, "host %s is not an IPv4 address", c->ep->host);
		return -1;
	}
	c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (c->fd < 0 || connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		err_note(E_CONNECT, "connect %s:%d: %s", c->ep->host, c->ep->port, strerror(errno));
		conn_close(c);
		return -1;
	}
	int one = 1;
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	c->ssl = SSL_new(c->ep->ctx);
	if (!c->ssl || !SSL_set_fd(c->ssl, c->fd) ||
	    !X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl), c->ep->host) ||
	    SSL_connect(c->ssl) != 1) {
		unsigned long e = ERR_get_error();
		char eb[160];
		ERR_error_string_n(e, eb, sizeof(eb));
		err_note(E_CONNECT, "TLS handshake with %s:%d: %s", c->ep->host, c->ep->port, eb);
		ERR_clear_error();
		conn_close(c);
		return -1;
	}
	return 0;
}

static int ssl_write_all(struct conn *c, const char *p, size_t n)
{
	while (n > 0) {
		int w = SSL_write(c->ssl, p, (int)n);
		if (w <= 0)
			return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* Finds header name (case-insensitive) in the header block [h, end); returns
 * its value (leading blanks skipped) and its length in *vlen, or NULL. */
static const char *header(const char *h, const char *end, const char *name, size_t *vlen)
{
	size_t nl = strlen(name);
	const char *p = memchr(h, '\n', (size_t)(end - h)); /* skip the status line */
	while (p && p + 1 < end) {
		const char *line = p + 1;
		const char *eol = memchr(line, '\n', (size_t)(end - line));
		if (!eol)
			break;
		if ((size_t)(eol - line) > nl && strncasecmp(line, name, nl) == 0 && line[nl] == ':') {
			const char *v = line + nl + 1;
			while (v < eol && (*v == ' ' || *v == '\t'))
				v++;
			const char *ve = eol;
			while (ve > v && (ve[-1] == '\r' || ve[-1] == ' '))
				ve--;
			*vlen = (size_t)(ve - v);
			return v;
		}
		p = eol;
	}
	return NULL;
}

/* Reads one response (Content-Length framing only: both servers under test
 * send it). 0 with *r filled (pointing into c->buf, valid until the next
 * call), or -1 on an I/O or framing error (already counted). */
static int read_resp(struct conn *c, struct resp *r)
{
	size_t hdr_end = 0;
	for (;;) {
		if (!hdr_end && c->have >= 4) {
			char *e = memmem(c->buf, c->have, "\r\n\r\n", 4);
			if (e)
				hdr_end = (size_t)(e - c->buf) + 4;
		}
		if (hdr_end) {
			size_t vl;
			const char *cl = header(c->buf, c->buf + hdr_end, "Content-Length", &vl);
			if (!cl) {
				err_note(E_HTTP, "response without Content-Length");
				return -1;
			}
			size_t len = 0;
			for (size_t i = 0; i < vl; i++) {
				if (!isdigit((unsigned char)cl[i]) || len > RESP_MAX) {
					err_note(E_HTTP, "bad Content-Length");
					return -1;
				}
				len = len * 10 + (size_t)(cl[i] - '0');
			}
			if (hdr_end + len > RESP_MAX) {
				err_note(E_HTTP, "response larger than %u bytes", RESP_MAX);
				return -1;
			}
			if (c->have >= hdr_end + len) {
				if (c->have < 12 || memcmp(c->buf, "HTTP/1.1 ", 9) != 0) {
					err_note(E_HTTP, "not an HTTP/1.1 status line");
					return -1;
				}
				r->status = atoi(c->buf + 9);
				r->body = c->buf + hdr_end;
				r->body_len = len;
				const char *cv = header(c->buf, c->buf + hdr_end, "Connection", &vl);
				r->close = cv && vl == 5 && strncasecmp(cv, "close", 5) == 0;
				return 0;
			}
		}
		if (c->have == RESP_MAX) {
			err_note(E_HTTP, "response headers larger than %u bytes", RESP_MAX);
			return -1;
		}
		int n = SSL_read(c->ssl, c->buf + c->have, (int)(RESP_MAX - c->have));
		if (n <= 0) {
			int e = SSL_get_error(c->ssl, n);
			err_note(E_IO, "connection to port %d lost while reading (SSL error %d%s)",
				 c->ep->port, e, c->have ? ", mid-response" : "");
			ERR_clear_error();
			return -1;
		}
		c->have += (size_t)n;
		if (opt.quickack) { /* diagnostic: ACK at once, defeating the server's Nagle */
			int one = 1;
			setsockopt(c->fd, IPPROTO_TCP, TCP_QUICKACK, &one, sizeof(one));
		}
	}
}

/* Drops the response just read from c->buf (there is no pipelining, so
 * nothing should follow it; anything that does is a protocol error). */
static void consume(struct conn *c, const struct resp *r)
{
	size_t used = (size_t)(r->body + r->body_len - c->buf);
	if (used < c->have)
		err_note(E_HTTP, "%zu unexpected bytes after a response", c->have - used);
	c->have = 0;
}

/* One request/response on c, reconnecting first if needed. 0 and *r, or -1. */
static int exchange(struct conn *c, const char *req, size_t n, struct resp *r)
{
	if (c->fd < 0) {
		if (conn_open(c) != 0) {
			nanosleep(&(struct timespec){0, 10000000}, NULL); /* no hot loop */
			return -1;
		}
		c->reconnects++;
	}
	if (ssl_write_all(c, req, n) != 0) {
		err_note(E_IO, "write to port %d failed", c->ep->port);
		ERR_clear_error();
		conn_close(c);
		return -1;
	}
	if (read_resp(c, r) != 0) {
		conn_close(c);
		return -1;
	}
	return 0;
}

/* ---- key container check ----------------------------------------------- */

/* A small strict scanner for exactly what the bench expects back:
 * {"keys":[{"key_ID":"<uuid>","key":"<base64>"}]} with members in any order
 * and optional whitespace, one key, a lowercase 8-4-4-4-12 UUID and a base64
 * key of opt.key_bytes bytes. It is not a JSON parser; anything else fails. */
struct scan {
	const char *p, *e;
};

static void ws(struct scan *s)
{
	while (s->p < s->e && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r'))
		s->p++;
}

static bool lit(struct scan *s, char ch)
{
	ws(s);
	if (s->p < s->e && *s->p == ch) {
		s->p++;
		return true;
	}
	return false;
}

/* A JSON string without escapes; *v, *n point into the input. */
static bool str(struct scan *s, const char **v, size_t *n)
{
	if (!lit(s, '"'))
		return false;
	const char *b = s->p;
	while (s->p < s->e && *s->p != '"') {
		if (*s->p == '\\' || (unsigned char)*s->p < 0x20)
			return false;
		s->p++;
	}
	if (s->p == s->e)
		return false;
	*v = b;
	*n = (size_t)(s->p - b);
	s->p++;
	return true;
}

static bool is_uuid(const char *v, size_t n)
{
	if (n != 36)
		return false;
	for (size_t i = 0; i < 36; i++) {
		if (i == 8 || i == 13 || i == 18 || i == 23) {
			if (v[i] != '-')
				return false;
		} else if (!((v[i] >= '0' && v[i] <= '9') || (v[i] >= 'a' && v[i] <= 'f'))) {
			return false;
		}
	}
	return true;
}

/* Decoded length of padded base64 v[0..n), or -1 if it is not base64. */
static long b64_len(const char *v, size_t n)
{
	if (n == 0 || n % 4)
		return -1;
	size_t pad = 0;
	for (size_t i = 0; i < n; i++) {
		char ch = v[i];
		bool ok = (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
			  (ch >= '0' && ch <= '9') || ch == '+' || ch == '/';
		if (ch == '=' && i >= n - 2) {
			pad++;
			continue;
		}
		if (!ok || pad)
			return -1;
	}
	return (long)(n / 4 * 3 - pad);
}

/* Checks body; on success copies the key_ID (37 bytes with NUL) and the key
 * string (at most 128 chars) out. Returns NULL or what is wrong. */
static const char *container_check(const char *body, size_t len, char id[static 37],
				   char key[static 129])
{
	struct scan s = {body, body + len};
	const char *v, *kid = NULL, *k = NULL;
	size_t n, kidn = 0, kn = 0;

	if (!lit(&s, '{') || !str(&s, &v, &n) || n != 4 || memcmp(v, "keys", 4) != 0 ||
	    !lit(&s, ':') || !lit(&s, '['))
		return "not {\"keys\":[...";
	if (!lit(&s, '{'))
		return "keys is empty or not an array of objects";
	for (;;) {
		if (!str(&s, &v, &n) || !lit(&s, ':'))
			return "bad member in keys[0]";
		const char *val;
		size_t vn;
		if (!str(&s, &val, &vn))
			return "keys[0] member is not a plain string";
		if (n == 6 && memcmp(v, "key_ID", 6) == 0 && !kid) {
			kid = val;
			kidn = vn;
		} else if (n == 3 && memcmp(v, "key", 3) == 0 && !k) {
			k = val;
			kn = vn;
		} else {
			return "unexpected or repeated member in keys[0]";
		}
		if (lit(&s, '}'))
			break;
		if (!lit(&s, ','))
			return "bad object keys[0]";
	}
	if (!lit(&s, ']'))
		return "more than one key";
	if (!lit(&s, '}'))
		return "unexpected member after keys";
	ws(&s);
	if (s.p != s.e)
		return "bytes after the document";
	if (!kid || !is_uuid(kid, kidn))
		return "key_ID missing or not a lowercase UUID";
	long kl = k ? b64_len(k, kn) : -1;
	if (kl < 0 || kn > 128)
		return "key missing or not base64";
	if (opt.key_bytes && (unsigned long)kl != opt.key_bytes)
		return "key has the wrong length";
	memcpy(id, kid, 36);
	id[36] = 0;
	memcpy(key, k, kn);
	key[kn] = 0;
	return NULL;
}

/* Counts a non-200 or bad-200 response as the right kind of error. */
static void note_status(const struct resp *r, const char *what)
{
	char b[120];
	printable(b, sizeof(b), r->body, r->body_len);
	int k = r->status == 503 ? E_STATUS_503
		: (r->status >= 400 && r->status < 500) ? E_STATUS_4XX : E_STATUS_OTHER;
	err_note(k, "%s: HTTP %d %s", what, r->status, b);
}

/* ---- worker ------------------------------------------------------------ */

struct worker {
	pthread_t th;
	struct conn a, b;
	uint64_t *lat; /* ns, completed in the window */
	size_t n, cap;
	unsigned long ok_all; /* including warm-up */
	bool connected;
};

static void lat_push(struct worker *w, uint64_t ns)
{
	if (w->n == w->cap) {
		w->cap = w->cap ? w->cap * 2 : 4096;
		w->lat = realloc(w->lat, w->cap * sizeof(*w->lat));
		if (!w->lat) {
			fprintf(stderr, "etsi_load: out of memory\n");
			exit(1);
		}
	}
	w->lat[w->n++] = ns;
}

static void *worker_run(void *arg)
{
	struct worker *w = arg;
	char enc_req[1024], dec_req[1024], dec_body[128];
	int enc_n = snprintf(enc_req, sizeof(enc_req),
			     "GET %s HTTP/1.1\r\nHost: %s:%d\r\nAccept: application/json\r\n\r\n",
			     opt.path, w->a.ep->host, w->a.ep->port);
	bool pair = strcmp(opt.mode, "pair") == 0;

	w->connected = conn_open(&w->a) == 0 && (!pair || conn_open(&w->b) == 0);
	pthread_barrier_wait(&start_barrier); /* all connected */
	pthread_barrier_wait(&start_barrier); /* t_* set: go */
	if (!w->connected)
		return NULL;

	for (;;) {
		uint64_t t0 = now_ns();
		if (t0 >= t_end)
			break;
		struct resp r;
		char id[37], key[129];
		const char *bad;
		if (exchange(&w->a, enc_req, (size_t)enc_n, &r) != 0)
			continue;
		if (r.status != 200) {
			note_status(&r, "enc_keys");
		} else if (opt.check && (bad = container_check(r.body, r.body_len, id, key))) {
			char b[120];
			printable(b, sizeof(b), r.body, r.body_len);
			err_note(E_CONTAINER, "enc_keys: %s: %s", bad, b);
			r.status = 0;
		}
		bool closing = r.close;
		int st = r.status;
		consume(&w->a, &r);
		if (closing)
			conn_close(&w->a);
		if (st != 200)
			continue;
		if (pair) {
			int bn = snprintf(dec_body, sizeof(dec_body), "{\"key_IDs\":[{\"key_ID\":\"%s\"}]}",
					  id);
			int dn = snprintf(dec_req, sizeof(dec_req),
					  "POST %s HTTP/1.1\r\nHost: %s:%d\r\nAccept: application/json\r\n"
					  "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
					  opt.dec_path, w->b.ep->host, w->b.ep->port, bn, dec_body);
			if (exchange(&w->b, dec_req, (size_t)dn, &r) != 0)
				continue;
			char id2[37], key2[129];
			st = r.status;
			if (st != 200) {
				note_status(&r, "dec_keys");
			} else if ((bad = container_check(r.body, r.body_len, id2, key2))) {
				err_note(E_CONTAINER, "dec_keys: %s", bad);
				st = 0;
			} else if (strcmp(id, id2) != 0 || strcmp(key, key2) != 0) {
				err_note(E_MISMATCH, "dec_keys: key %s differs from the enc_keys one", id);
				st = 0;
			}
			closing = r.close;
			consume(&w->b, &r);
			if (closing)
				conn_close(&w->b);
			if (st != 200)
				continue;
		}
		uint64_t t1 = now_ns();
		w->ok_all++;
		if (t0 >= t_measure && t1 <= t_end)
			lat_push(w, t1 - t0);
	}
	return NULL;
}

/* ---- main -------------------------------------------------------------- */

static int cmp_u64(const void *x, const void *y)
{
	uint64_t a = *(const uint64_t *)x, b = *(const uint64_t *)y;
	return a < b ? -1 : a > b;
}

static double pct(const uint64_t *v, size_t n, double p)
{
	if (n == 0)
		return 0;
	size_t i = (size_t)(p * (double)(n - 1) + 0.5); /* nearest rank */
	return (double)v[i] / 1e6;
}

static void parse_url(const char *url, struct endpoint *ep)
{
	const char *p = url;
	if (strncmp(p, "https://", 8) == 0)
		p += 8;
	const char *c = strrchr(p, ':');
	if (!c || (size_t)(c - p) >= sizeof(ep->host)) {
		fprintf(stderr, "etsi_load: bad URL %s (want https://IPV4:PORT)\n", url);
		exit(1);
	}
	memcpy(ep->host, p, (size_t)(c - p));
	ep->host[c - p] = 0;
	ep->port = atoi(c + 1);
}

static void usage(void)
{
	fprintf(stderr,
		"usage: etsi_load --ca CA --a https://IP:PORT --cert C --key K --path PATH\n"
		"                 [--mode enc|pair] [--b URL --cert-b C --key-b K --dec-path PATH]\n"
		"                 [--conns N] [--seconds S] [--warmup S] [--key-bytes N] [--json]\n");
	exit(1);
}

int main(int argc, char **argv)
{
	const char *url_a = NULL, *url_b = NULL;
	for (int i = 1; i < argc; i++) {
		const char *o = argv[i];
		if (strcmp(o, "--json") == 0) {
			opt.json = true;
			continue;
		}
		if (strcmp(o, "--quickack") == 0) {
			opt.quickack = true;
			continue;
		}
		if (strcmp(o, "--no-check") == 0) {
			opt.check = false;
			continue;
		}
		if (i + 1 >= argc)
			usage();
		const char *v = argv[++i];
		if (strcmp(o, "--mode") == 0)
			opt.mode = v;
		else if (strcmp(o, "--ca") == 0)
			opt.ca = v;
		else if (strcmp(o, "--a") == 0)
			url_a = v;
		else if (strcmp(o, "--b") == 0)
			url_b = v;
		else if (strcmp(o, "--cert") == 0)
			opt.a.cert = v;
		else if (strcmp(o, "--key") == 0)
			opt.a.key = v;
		else if (strcmp(o, "--cert-b") == 0)
			opt.b.cert = v;
		else if (strcmp(o, "--key-b") == 0)
			opt.b.key = v;
		else if (strcmp(o, "--path") == 0)
			opt.path = v;
		else if (strcmp(o, "--dec-path") == 0)
			opt.dec_path = v;
		else if (strcmp(o, "--conns") == 0)
			opt.conns = atoi(v);
		else if (strcmp(o, "--seconds") == 0)
			opt.seconds = atof(v);
		else if (strcmp(o, "--warmup") == 0)
			opt.warmup = atof(v);
		else if (strcmp(o, "--key-bytes") == 0)
			opt.key_bytes = (unsigned)atoi(v);
		else
			usage();
	}
	bool pair = strcmp(opt.mode, "pair") == 0;
	if (!opt.ca || !url_a || !opt.a.cert || !opt.a.key || !opt.path || opt.conns < 1 ||
	    opt.conns > 4096 || opt.seconds <= 0 || opt.warmup < 0 ||
	    (strcmp(opt.mode, "enc") != 0 && !pair) ||
	    (pair && (!url_b || !opt.b.cert || !opt.b.key || !opt.dec_path)))
		usage();
	if (pair && !opt.check) {
		fprintf(stderr, "etsi_load: pair mode needs the check (it reads the key_ID)\n");
		return 1;
	}
	parse_url(url_a, &opt.a);
	opt.a.ctx = ctx_new(opt.a.cert, opt.a.key);
	if (pair) {
		parse_url(url_b, &opt.b);
		opt.b.ctx = ctx_new(opt.b.cert, opt.b.key);
	}

	struct worker *w = calloc((size_t)opt.conns, sizeof(*w));
	if (!w)
		return 1;
	pthread_barrier_init(&start_barrier, NULL, (unsigned)opt.conns + 1);
	for (int i = 0; i < opt.conns; i++) {
		w[i].a = (struct conn){.ep = &opt.a, .fd = -1};
		w[i].b = (struct conn){.ep = &opt.b, .fd = -1};
		pthread_attr_t at;
		pthread_attr_init(&at);
		pthread_attr_setstacksize(&at, 256u << 10);
		if (pthread_create(&w[i].th, &at, worker_run, &w[i]) != 0) {
			fprintf(stderr, "etsi_load: pthread_create failed\n");
			return 1;
		}
		pthread_attr_destroy(&at);
	}
	/* All threads connect (handshakes are not measured) and meet at the
	 * barrier; then the window is set and a second barrier starts them. */
	pthread_barrier_wait(&start_barrier);
	struct rusage ru0, ru1;
	getrusage(RUSAGE_SELF, &ru0);
	t_start = now_ns();
	t_measure = t_start + (uint64_t)(opt.warmup * 1e9);
	t_end = t_measure + (uint64_t)(opt.seconds * 1e9);
	pthread_barrier_wait(&start_barrier);
	for (int i = 0; i < opt.conns; i++)
		pthread_join(w[i].th, NULL);
	getrusage(RUSAGE_SELF, &ru1);

	size_t total = 0, connected = 0;
	unsigned long reconnects = 0, ok_all = 0;
	for (int i = 0; i < opt.conns; i++) {
		total += w[i].n;
		connected += w[i].connected;
		reconnects += w[i].a.reconnects + w[i].b.reconnects;
		ok_all += w[i].ok_all;
	}
	uint64_t *all = malloc((total ? total : 1) * sizeof(*all));
	if (!all)
		return 1;
	size_t k = 0;
	for (int i = 0; i < opt.conns; i++) {
		memcpy(all + k, w[i].lat, w[i].n * sizeof(*all));
		k += w[i].n;
		free(w[i].lat);
	}
	qsort(all, total, sizeof(*all), cmp_u64);
	double mean = 0;
	for (size_t i = 0; i < total; i++)
		mean += (double)all[i];
	mean = total ? mean / (double)total / 1e6 : 0;
	unsigned long errors = 0;
	for (int e = 0; e < E_NKINDS; e++)
		errors += err_count[e];
	double rps = (double)total / opt.seconds;
	double cpu = (double)(ru1.ru_utime.tv_sec - ru0.ru_utime.tv_sec + ru1.ru_stime.tv_sec -
			      ru0.ru_stime.tv_sec) +
		     (double)(ru1.ru_utime.tv_usec - ru0.ru_utime.tv_usec + ru1.ru_stime.tv_usec -
			      ru0.ru_stime.tv_usec) / 1e6;
	double elapsed = (double)(now_ns() - t_start) / 1e9;

	for (int i = 0; i < n_samples; i++)
		fprintf(stderr, "etsi_load: error x%lu: %s\n", err_sample_n[i], err_sample[i]);
	if (opt.json) {
		printf("{\"mode\":\"%s\",\"conns\":%d,\"connected\":%zu,\"seconds\":%.3f,"
		       "\"warmup\":%.3f,\"ok\":%zu,\"ok_incl_warmup\":%lu,\"rps\":%.1f,"
		       "\"p50_ms\":%.4f,\"p90_ms\":%.4f,\"p99_ms\":%.4f,\"p999_ms\":%.4f,"
		       "\"max_ms\":%.4f,\"mean_ms\":%.4f,\"errors\":%lu,\"reconnects\":%lu,"
		       "\"client_cpu_pct\":%.1f,\"errors_by_kind\":{",
		       opt.mode, opt.conns, connected, opt.seconds, opt.warmup, total, ok_all, rps,
		       pct(all, total, .50), pct(all, total, .90), pct(all, total, .99),
		       pct(all, total, .999), total ? (double)all[total - 1] / 1e6 : 0, mean,
		       errors, reconnects, elapsed > 0 ? cpu / elapsed * 100 : 0);
		for (int e = 0; e < E_NKINDS; e++)
			printf("%s\"%s\":%lu", e ? "," : "", err_names[e], (unsigned long)err_count[e]);
		printf("},\"error_samples\":[");
		for (int i = 0; i < n_samples; i++) {
			printf("%s{\"count\":%lu,\"message\":\"", i ? "," : "", err_sample_n[i]);
			for (const char *p = err_sample[i]; *p; p++)
				printf(*p == '"' || *p == '\\' ? "\\%c" : "%c", *p);
			printf("\"}");
		}
		printf("]}\n");
	} else {
		printf("%s conns=%d ok=%zu %.1f req/s p50=%.3f ms p99=%.3f ms max=%.3f ms "
		       "errors=%lu reconnects=%lu\n",
		       opt.mode, opt.conns, total, rps, pct(all, total, .50), pct(all, total, .99),
		       total ? (double)all[total - 1] / 1e6 : 0, errors, reconnects);
	}
	free(all);
	free(w);
	return connected == (size_t)opt.conns ? 0 : 1;
}
