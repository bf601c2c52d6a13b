/* token.c - key tokens (token.h). */
#include "core/token.h"

#include <stdlib.h>
#include <string.h>

static bool is_hex(char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); }

bool qkm_token_of(const char *id, char out[static QKM_TOKEN_MAX])
{
	size_t n = 0;
	while (n < 33 && is_hex(id[n]))
		n++;
	if (n == 32) {
		memcpy(out, id, 24);
		out[24] = '\0';
		return true;
	}
	/* UUID: 8-4-4-4-12 */
	static const int groups[] = {8, 4, 4, 4, 12};
	const char *p = id;
	for (int g = 0; g < 5; g++) {
		for (int i = 0; i < groups[g]; i++, p++)
			if (!is_hex(*p))
				return false;
		if (g < 4 && *p++ != '-')
			return false;
	}
	if (is_hex(*p) || *p == '-')
		return false;
	/* A supply round's keys differ only in the last 8 digits. */
	memcpy(out, id, 28);
	out[28] = '\0';
	return true;
}

int qkm_tokens_scan(const char *text, int (*fn)(const char *tok, size_t pos, void *arg), void *arg)
{
	for (size_t i = 0; text[i]; i++) {
		if (i > 0 && (is_hex(text[i - 1]) || text[i - 1] == '-'))
			continue;
		char tok[QKM_TOKEN_MAX];
		if (!qkm_token_of(text + i, tok))
			continue;
		int rc = fn(tok, i, arg);
		if (rc)
			return rc;
	}
	return 0;
}

bool qkm_token_of_ksa_key(const char *text, char tok[static QKM_TOKEN_MAX])
{
	return strlen(text) == 36 && qkm_token_of(text, tok) && strlen(tok) == 28;
}

static bool is_digit(char c) { return c >= '0' && c <= '9'; }

bool qkm_key_id_names(const char *key_id, const char *text)
{
	char tok[QKM_TOKEN_MAX], *end;
	if (strstr(key_id, text))
		return true;
	if (!qkm_token_of_ksa_key(text, tok) || strncmp(key_id, tok, 28) != 0 ||
	    strncmp(key_id + 28, "00000000[", 9) != 0 || !is_digit(key_id[37]))
		return false;
	unsigned long a = strtoul(key_id + 37, &end, 10);
	if (strncmp(end, "..", 2) != 0 || !is_digit(end[2]))
		return false;
	unsigned long b = strtoul(end + 2, &end, 10);
	if (strcmp(end, "]") != 0)
		return false;
	unsigned long i = strtoul(text + 28, NULL, 16);
	return a <= i && i <= b;
}
