/* fuzz_http.c - libFuzzer target for the HTTP/1.x request-head parser of
 * the node's HTTPS server (net/http.c: qkm_http_parse_head), which reads
 * bytes from any client that completed a TLS handshake. Invariants: a
 * refusal carries a 4xx/5xx status and a reason; a parsed head lies inside
 * the input, ends in a blank line, and its method and target lie inside its
 * first line; a prefix of a parsed head is never "parsed" with another
 * length (the server parses again as bytes arrive, so the verdict must not
 * depend on where the input was cut). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "net/http.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int cond)
{
	if (!cond)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *p = (const char *)data;
	struct qkm_http_head h, h2;
	int rc = qkm_http_parse_head(p, size, &h);
	if (rc < 0) {
		check(h.error_code >= 400 && h.error_code < 600 && h.error && h.error[0]);
		return 0;
	}
	if (rc == 0) {
		check(size <= (16u << 10));
		return 0;
	}
	check(rc == 1);
	check(h.len >= 4 && h.len <= size && h.len <= (16u << 10));
	check(p[h.len - 1] == '\n');
	const char *first_eol = memchr(p, '\n', h.len);
	check(first_eol != NULL);
	check(h.method == p && h.method_len > 0);
	check(h.target > h.method && h.target + h.target_len <= first_eol);
	check(memchr(h.method, ' ', h.method_len) == NULL);
	check(!h.chunked);
	/* The same head, alone or followed by anything, parses the same. */
	check(qkm_http_parse_head(p, h.len, &h2) == 1 && h2.len == h.len &&
	      h2.content_length == h.content_length && h2.close == h.close);
	/* Any shorter prefix is incomplete, never a different head. */
	for (size_t cut = 0; cut < h.len; cut += 1 + cut / 8) {
		int r = qkm_http_parse_head(p, cut, &h2);
		check(r <= 0);
	}
	return 0;
}
