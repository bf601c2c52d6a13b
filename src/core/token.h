/* token.h - key tokens in IDs and life-cycle text: a KMA batch (link or
 * relayed) is named by the first 24 hex digits of any of its key or batch
 * IDs (the rest is the key index), a KSA-key by its UUID. The manager's
 * ledger indexes the tokens each record names (store/ledger.h); lineage
 * follows them (ctl/lineage.h). Pure code. */
#ifndef QKM_CORE_TOKEN_H
#define QKM_CORE_TOKEN_H

#include <stdbool.h>
#include <stddef.h>

/* A token and its NUL: 36 characters for a UUID. */
#define QKM_TOKEN_MAX 40

/* The token of the ID at the start of id ("<32 hex>…" or a UUID, lower
 * case); false if it starts with neither. */
bool qkm_token_of(const char *id, char out[static QKM_TOKEN_MAX]);

/* Calls fn for each token text names (a 32-hex-digit ID or a UUID not
 * inside a longer run of hex digits), with its offset in text, in order.
 * fn returns nonzero to stop (returned). */
int qkm_tokens_scan(const char *text, int (*fn)(const char *tok, size_t pos, void *arg),
		    void *arg);

#endif
