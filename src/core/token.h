/* token.h - key tokens in IDs and life-cycle text: a KMA batch (link or
 * relayed) is named by the first 24 hex digits of any of its key or batch
 * IDs (the rest is the key index), the KSA-keys of one supply round by the
 * first 28 characters of any of their UUIDs ("xxxxxxxx-xxxx-xxxx-xxxx-xxxx":
 * the last 8 hex digits are the key's index in the round). The manager's
 * ledger indexes the tokens each record names (store/ledger.h); lineage
 * follows them (ctl/lineage.h). Pure code. */
#ifndef QKM_CORE_TOKEN_H
#define QKM_CORE_TOKEN_H

#include <stdbool.h>
#include <stddef.h>

/* A token and its NUL: at most 28 characters (a KSA round). */
#define QKM_TOKEN_MAX 40

/* The token of the ID at the start of id ("<32 hex>…" or a UUID, lower
 * case); false if it starts with neither. */
bool qkm_token_of(const char *id, char out[static QKM_TOKEN_MAX]);

/* True if text is exactly a KSA-key's UUID (36 characters, lower case);
 * tok is then its supply round's token. */
bool qkm_token_of_ksa_key(const char *text, char tok[static QKM_TOKEN_MAX]);

/* Whether a record's key_id matches text, as a search by key (`--key`):
 * text is part of key_id; or text is a KSA-key's UUID and key_id names a
 * run of its round that holds it ("<round UUID>[a..b]", the key's index,
 * its last 8 hex digits, from a to b). */
bool qkm_key_id_names(const char *key_id, const char *text);

/* Calls fn for each token text names (a 32-hex-digit ID or a UUID not
 * inside a longer run of hex digits), with its offset in text, in order.
 * fn returns nonzero to stop (returned). */
int qkm_tokens_scan(const char *text, int (*fn)(const char *tok, size_t pos, void *arg),
		    void *arg);

#endif
