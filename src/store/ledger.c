/* ledger.c - the manager's life-cycle ledger: its SQLite schema, the per-node
 * SHA-256 hash chains, the chain heads cached in memory, and the audit that
 * recomputes them. Calls sqlite3_* (store/ owns SQLite) and OpenSSL's
 * SHA-256; what a record means is the nodes' and the controller's business. */
#include "store/ledger.h"

#include <limits.h>
#include <openssl/evp.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/log.h"
#include "core/token.h"
#include "store/file.h"

#define LEDGER_SCHEMA_VERSION 1
#define LEDGER_APP_ID 1902865740 /* 0x716b6d4c, "qkmL": tells a ledger from a key store */
#define LEDGER_BUSY_MS 5000
#define LEDGER_CHECKPOINT_PAGES 10000

/* records: one row per record, clustered by (node, seq) so that a chain is
 * read, and appended to, in one place. prev_hash repeats the hash of the
 * record before (32 zero bytes for seq 1): each row can then be checked on
 * its own, even next to a gap, and a broken link told from an edited row.
 * chains: each chain's head as of its last append, the witness for deletions
 * at the end of a chain, and whether the chain is the manager's own.
 * No triggers forbid UPDATE or DELETE: the audit, not SQLite, is what finds
 * an edit (docs/store.md). */
static const char ledger_schema[] =
	"CREATE TABLE records ("
	" node TEXT NOT NULL,"
	" seq INTEGER NOT NULL,"
	" ts_ns INTEGER NOT NULL,"
	" event TEXT NOT NULL,"
	" key_kind TEXT NOT NULL,"
	" key_id TEXT NOT NULL,"
	" peer TEXT NOT NULL,"
	" detail TEXT NOT NULL,"
	" prev_hash BLOB NOT NULL,"
	" hash BLOB NOT NULL,"
	" PRIMARY KEY (node, seq)) WITHOUT ROWID;"
	"CREATE INDEX records_key_id ON records (key_id);"
	"CREATE TABLE refs ("
	" token TEXT NOT NULL,"
	" node TEXT NOT NULL,"
	" seq INTEGER NOT NULL,"
	" PRIMARY KEY (token, node, seq)) WITHOUT ROWID;"
	"CREATE TABLE chains ("
	" node TEXT PRIMARY KEY,"
	" own INTEGER NOT NULL,"
	" last_seq INTEGER NOT NULL,"
	" last_hash BLOB NOT NULL,"
	" last_ts_ns INTEGER NOT NULL) WITHOUT ROWID;"
	"PRAGMA application_id = 1902865740;"
	"PRAGMA user_version = 1;";

#define REC_COLS "node, seq, ts_ns, event, key_kind, key_id, peer, detail"
/* ?3 key_sub, ?4 event: NULL matches everything. instr, not LIKE: a key ID
 * or detail may hold '_' or '%', and key IDs are matched case-sensitively. */
#define REC_FILTER                                                              \
	"AND (?3 IS NULL OR instr(key_id, ?3) > 0 OR instr(detail, ?3) > 0) "  \
	"AND (?4 IS NULL OR event = ?4) "

#define LEDGER_STMTS(X)                                                         \
	X(BEGIN, "BEGIN IMMEDIATE")                                             \
	X(BEGIN_READ, "BEGIN")                                                  \
	X(COMMIT, "COMMIT")                                                     \
	X(ROLLBACK, "ROLLBACK")                                                 \
	X(INSERT,                                                               \
	  "INSERT INTO records (" REC_COLS ", prev_hash, hash) "                \
	  "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)")                   \
	X(REF, "INSERT OR IGNORE INTO refs (token, node, seq) VALUES (?1, ?2, ?3)") \
	X(LIST_REF,                                                             \
	  "SELECT r.node, r.seq, r.ts_ns, r.event, r.key_kind, r.key_id, r.peer, "\
	  "r.detail FROM refs f JOIN records r ON r.node = f.node AND "         \
	  "r.seq = f.seq WHERE f.token = ?1 ORDER BY r.node, r.seq LIMIT ?2")   \
	X(GET,                                                                  \
	  "SELECT ts_ns, event, key_kind, key_id, peer, detail FROM records "   \
	  "WHERE node = ?1 AND seq = ?2")                                       \
	X(LAST,                                                                 \
	  "SELECT seq, hash FROM records WHERE node = ?1 "                      \
	  "ORDER BY seq DESC LIMIT 1")                                          \
	X(CHAIN_GET, "SELECT own FROM chains WHERE node = ?1")                  \
	X(CHAIN_PUT,                                                            \
	  "INSERT INTO chains (node, own, last_seq, last_hash, last_ts_ns) "    \
	  "VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (node) DO UPDATE SET "       \
	  "own = excluded.own, last_seq = excluded.last_seq, "                  \
	  "last_hash = excluded.last_hash, last_ts_ns = excluded.last_ts_ns")   \
	X(CHAINS,                                                               \
	  "SELECT node, own, last_seq, last_hash, last_ts_ns FROM chains "      \
	  "ORDER BY node")                                                      \
	X(LIST_NODE,                                                            \
	  "SELECT " REC_COLS " FROM records WHERE node = ?1 AND seq > ?2 "      \
	  REC_FILTER "ORDER BY seq LIMIT ?5")                                   \
	X(LIST_ALL,                                                             \
	  "SELECT " REC_COLS " FROM records WHERE seq > ?2 "                    \
	  REC_FILTER "ORDER BY node, seq LIMIT ?5")                             \
	X(LIST_KEY,                                                             \
	  "SELECT " REC_COLS " FROM records WHERE key_id >= ?1 AND key_id < ?2 "\
	  "ORDER BY key_id, node, seq LIMIT ?3")                                \
	X(AUDIT,                                                                \
	  "SELECT " REC_COLS ", prev_hash, hash FROM records ORDER BY node, seq")

enum ledger_stmt {
#define LEDGER_STMT_ENUM(name, sql) LG_##name,
	LEDGER_STMTS(LEDGER_STMT_ENUM)
#undef LEDGER_STMT_ENUM
	LG_N_
};

static const char *const ledger_sql[LG_N_] = {
#define LEDGER_STMT_SQL(name, sql) sql,
	LEDGER_STMTS(LEDGER_STMT_SQL)
#undef LEDGER_STMT_SQL
};

enum head_kind { HEAD_NEW = 0, HEAD_NODE = 1, HEAD_OWN = 2 };

/* A chain's head as appends left it: what the next record links to. Read
 * from the file on a chain's first use, then kept here, so an append reads
 * nothing but what a resend asks it to compare. */
struct ledger_head {
	char node[QKM_NAME_MAX];
	int64_t last;                       /* 0: no record */
	uint8_t hash[QKM_LEDGER_HASH_LEN];  /* hash of record last; zeros if none */
	enum head_kind kind;
};

struct qkm_ledger {
	sqlite3 *db;
	sqlite3_stmt *st[LG_N_];
	EVP_MD *sha256;
	EVP_MD_CTX *md;
	struct ledger_head *heads;          /* sorted by node (strcmp) */
	size_t nheads, capheads;
	bool busy;                          /* a walk is calling back */
	struct qkm_ledger_audit_stats audits; /* since open */
};

/* One record's hashed fields as bytes. text: event, key_kind, key_id, peer,
 * detail, in that order. */
struct ledger_bytes {
	const void *p;
	size_t len;
};
struct ledger_rec {
	struct ledger_bytes node;
	int64_t seq;
	uint64_t ts_ns;
	struct ledger_bytes text[5];
};

static int ledger_fail(struct qkm_ledger *lg, const char *what)
{
	log_warnx("ledger: %s: %s (%d)", what, sqlite3_errmsg(lg->db),
		  sqlite3_extended_errcode(lg->db));
	return QKM_ESTORE;
}

/* Ends a statement's read and drops its bindings (which point into the
 * caller's strings). */
static void stmt_done(sqlite3_stmt *s)
{
	sqlite3_reset(s);
	sqlite3_clear_bindings(s);
}

static int stmt_exec(struct qkm_ledger *lg, enum ledger_stmt which)
{
	int rc = sqlite3_step(lg->st[which]);
	int err = rc == SQLITE_DONE ? 0 : ledger_fail(lg, ledger_sql[which]);
	stmt_done(lg->st[which]);
	return err;
}

static void ledger_rollback(struct qkm_ledger *lg)
{
	if (sqlite3_get_autocommit(lg->db))
		return;
	if (stmt_exec(lg, LG_ROLLBACK))
		log_warnx("ledger: rollback failed");
}

/* Runs a statement answering one value and copies it as text into out. */
static int pragma_text(struct qkm_ledger *lg, const char *sql, char *out, size_t outsz)
{
	sqlite3_stmt *s = NULL;
	int err = 0;
	out[0] = '\0';
	if (sqlite3_prepare_v2(lg->db, sql, -1, &s, NULL) != SQLITE_OK) {
		err = ledger_fail(lg, sql);
		goto out;
	}
	int rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		const unsigned char *t = sqlite3_column_text(s, 0);
		snprintf(out, outsz, "%s", t ? (const char *)t : "");
		rc = sqlite3_step(s);
	}
	if (rc != SQLITE_DONE)
		err = ledger_fail(lg, sql);
out:
	sqlite3_finalize(s);
	return err;
}

/* Copies a text column into a fixed array, truncated and NUL-terminated. */
static void col_text(sqlite3_stmt *s, int col, char *out, size_t outsz)
{
	const unsigned char *t = sqlite3_column_text(s, col);
	size_t n = t ? (size_t)sqlite3_column_bytes(s, col) : 0;
	if (n >= outsz)
		n = outsz - 1;
	if (n)
		memcpy(out, t, n);
	out[n] = '\0';
}

/* A text column as bytes (text first, then its length, as SQLite asks). */
static struct ledger_bytes col_bytes(sqlite3_stmt *s, int col)
{
	struct ledger_bytes b;
	b.p = sqlite3_column_text(s, col);
	b.len = b.p ? (size_t)sqlite3_column_bytes(s, col) : 0;
	return b;
}

static struct ledger_bytes col_blob(sqlite3_stmt *s, int col)
{
	struct ledger_bytes b;
	b.p = sqlite3_column_blob(s, col);
	b.len = b.p ? (size_t)sqlite3_column_bytes(s, col) : 0;
	return b;
}

static bool bytes_eq(struct ledger_bytes a, const void *p, size_t len)
{
	return a.len == len && (len == 0 || memcmp(a.p, p, len) == 0);
}

static void put_be(uint8_t *p, uint64_t v, int n)
{
	for (int i = n - 1; i >= 0; i--, v >>= 8)
		p[i] = (uint8_t)v;
}

/* The chain hash (docs/store.md "Manager ledger"):
 *   hash = SHA-256(prev || F(node) || F(seq) || F(ts_ns) || F(event) ||
 *                  F(key_kind) || F(key_id) || F(peer) || F(detail))
 *   F(x) = 4-byte big-endian length of x || x;
 *   seq, ts_ns: 8-byte big-endian two's complement / unsigned.
 * Every field carries its length, so no two records encode alike (bytes
 * cannot move from one field into the next). prev is what the row stores as
 * prev_hash: 32 bytes, unless edited. */
static int ledger_hash(struct qkm_ledger *lg, struct ledger_bytes prev,
		       const struct ledger_rec *r, uint8_t out[static QKM_LEDGER_HASH_LEN])
{
	uint8_t len[4], seq[8], ts[8];
	unsigned int outlen = 0;
	bool ok = EVP_DigestInit_ex2(lg->md, lg->sha256, NULL) == 1 &&
		  (prev.len == 0 || EVP_DigestUpdate(lg->md, prev.p, prev.len) == 1);
	put_be(seq, (uint64_t)r->seq, 8);
	put_be(ts, r->ts_ns, 8);
	const struct ledger_bytes fields[8] = {
		r->node, { seq, 8 }, { ts, 8 }, r->text[0], r->text[1], r->text[2], r->text[3],
		r->text[4],
	};
	for (int i = 0; ok && i < 8; i++) {
		if (fields[i].len > UINT32_MAX)
			return QKM_ETOOBIG;
		put_be(len, fields[i].len, 4);
		ok = EVP_DigestUpdate(lg->md, len, 4) == 1 &&
		     (fields[i].len == 0 ||
		      EVP_DigestUpdate(lg->md, fields[i].p, fields[i].len) == 1);
	}
	ok = ok && EVP_DigestFinal_ex(lg->md, out, &outlen) == 1 &&
	     outlen == QKM_LEDGER_HASH_LEN;
	if (!ok) {
		log_warnx("ledger: SHA-256 failed");
		return QKM_ECRYPTO;
	}
	return 0;
}

static void rec_from_event(struct ledger_rec *r, const char *node, const struct qkm_lc_event *ev)
{
	r->node = (struct ledger_bytes){ node, strlen(node) };
	r->seq = ev->seq;
	r->ts_ns = ev->ts_ns;
	const char *t[5] = { ev->event, ev->key_kind, ev->key_id, ev->peer, ev->detail };
	for (int i = 0; i < 5; i++)
		r->text[i] = (struct ledger_bytes){ t[i], strlen(t[i]) };
}

/* Creates the schema in a fresh file (the version read again under the
 * write lock, so two processes opening one new file do not both create it)
 * and checks that the file is a ledger of this version. */
static int ledger_schema_init(struct qkm_ledger *lg)
{
	char v[32], n[32], id[32];
	int err = pragma_text(lg, "PRAGMA user_version", v, sizeof(v));
	if (err)
		return err;
	if (strcmp(v, "0") == 0) {
		if ((err = stmt_exec(lg, LG_BEGIN)))
			return err;
		if ((err = pragma_text(lg, "PRAGMA user_version", v, sizeof(v))))
			goto out;
		if (strcmp(v, "0") == 0) {
			err = pragma_text(lg, "SELECT count(*) FROM sqlite_schema", n, sizeof(n));
			if (err)
				goto out;
			if (strcmp(n, "0") != 0) {
				log_warnx("ledger: file has tables but no qkm schema version");
				err = QKM_EVERSION;
				goto out;
			}
			if (sqlite3_exec(lg->db, ledger_schema, NULL, NULL, NULL) != SQLITE_OK) {
				err = ledger_fail(lg, "create schema");
				goto out;
			}
		}
		err = stmt_exec(lg, LG_COMMIT);
	out:
		if (err) {
			ledger_rollback(lg);
			return err;
		}
		if ((err = pragma_text(lg, "PRAGMA user_version", v, sizeof(v))))
			return err;
	}
	if ((err = pragma_text(lg, "PRAGMA application_id", id, sizeof(id))))
		return err;
	if (strtol(id, NULL, 10) != LEDGER_APP_ID) {
		log_warnx("ledger: not a qkm ledger (application_id %s)", id);
		return QKM_EVERSION;
	}
	if (strtol(v, NULL, 10) != LEDGER_SCHEMA_VERSION) {
		log_warnx("ledger: schema version %s, this qkm knows %d", v,
			  LEDGER_SCHEMA_VERSION);
		return QKM_EVERSION;
	}
	return 0;
}

int qkm_ledger_open(const char *path, struct qkm_ledger **out)
{
	struct qkm_ledger *lg = NULL;
	char v[32];
	int err = 0;

	*out = NULL;
	if (!path || !*path)
		return QKM_EINVAL;
	/* Records hold no key bytes, but who did what with which key is not
	 * for every local user. */
	if ((err = qkm_private_file_create(path, "ledger")))
		return err;
	lg = calloc(1, sizeof(*lg));
	if (!lg)
		return QKM_ENOMEM;
	/* Fetched once: an implicit fetch per digest would cost a lookup in
	 * OpenSSL's provider tables for every record. */
	lg->sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
	lg->md = EVP_MD_CTX_new();
	if (!lg->sha256 || !lg->md) {
		log_warnx("ledger: no SHA-256");
		err = QKM_ECRYPTO;
		goto out;
	}
	int rc = sqlite3_open_v2(path, &lg->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL);
	if (rc != SQLITE_OK) {
		err = lg->db ? ledger_fail(lg, path) : QKM_ENOMEM;
		goto out;
	}
	sqlite3_extended_result_codes(lg->db, 1);
	sqlite3_busy_timeout(lg->db, LEDGER_BUSY_MS);

	/* As the key store (docs/store.md), but for secure_delete: the ledger
	 * holds no key bytes and never deletes. SQLite's automatic (passive)
	 * checkpoints stay on, since nothing here needs the WAL emptied at
	 * once, but every 10000 pages (~40 MiB) rather than 1000: the key_id
	 * index takes each record to a random page, so a batch of 1000 records
	 * dirties ~1000 pages; checkpointing after every batch copied each into
	 * the file at once, where every tenth batch copies a page dirtied by
	 * several batches once, with fewer syncs (1.5-2x the append rate at 1M
	 * records, docs/store.md). */
	sqlite3_wal_autocheckpoint(lg->db, LEDGER_CHECKPOINT_PAGES);
	static const char *const setup[] = {
		"PRAGMA page_size = 4096",
		"PRAGMA synchronous = FULL",
		"PRAGMA temp_store = MEMORY",
		"PRAGMA trusted_schema = OFF",
		"PRAGMA cache_size = -32768",
	};
	for (size_t i = 0; i < sizeof(setup) / sizeof(setup[0]); i++)
		if ((err = pragma_text(lg, setup[i], v, sizeof(v))))
			goto out;
	if ((err = pragma_text(lg, "PRAGMA journal_mode = WAL", v, sizeof(v))))
		goto out;
	if (strcmp(v, "wal") != 0) {
		log_warnx("ledger: %s: cannot use WAL (journal_mode %s)", path, v);
		err = QKM_ESTORE;
		goto out;
	}
	/* Transaction control first: the rest needs the tables. */
	for (int i = 0; i < LG_N_; i++) {
		if (i == LG_ROLLBACK + 1 && (err = ledger_schema_init(lg)))
			goto out;
		if (sqlite3_prepare_v3(lg->db, ledger_sql[i], -1, SQLITE_PREPARE_PERSISTENT,
				       &lg->st[i], NULL) != SQLITE_OK) {
			err = ledger_fail(lg, ledger_sql[i]);
			goto out;
		}
	}
	*out = lg;
	lg = NULL;
out:
	qkm_ledger_close(lg);
	return err;
}

void qkm_ledger_close(struct qkm_ledger *lg)
{
	if (!lg)
		return;
	if (lg->db)
		ledger_rollback(lg);
	for (int i = 0; i < LG_N_; i++)
		sqlite3_finalize(lg->st[i]);
	if (lg->db && sqlite3_close(lg->db) != SQLITE_OK)
		log_warnx("ledger: close: %s", sqlite3_errmsg(lg->db));
	EVP_MD_CTX_free(lg->md);
	EVP_MD_free(lg->sha256);
	free(lg->heads);
	free(lg);
}

/* ---- chain heads ---------------------------------------------------------- */

/* The cached head of node, or NULL with *pos = where it would go. */
static struct ledger_head *head_find(struct qkm_ledger *lg, const char *node, size_t *pos)
{
	size_t lo = 0, hi = lg->nheads;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(node, lg->heads[mid].node);
		if (c == 0)
			return &lg->heads[mid];
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	if (pos)
		*pos = lo;
	return NULL;
}

/* Forgets node's head, so that the next use reads it again: after a
 * failure that may mean the file is not what the cache says. */
static void head_drop(struct qkm_ledger *lg, const char *node)
{
	struct ledger_head *h = head_find(lg, node, NULL);
	if (!h)
		return;
	size_t i = (size_t)(h - lg->heads);
	memmove(h, h + 1, (lg->nheads - i - 1) * sizeof(*h));
	lg->nheads--;
}

/* node's head (node valid): from the cache, or read from the file (the last
 * record stored, and the chain's kind) and cached. The last record, not the
 * chains row, is where appends go on: if a chain's end was deleted while
 * the manager was down, the node's resend restores it. The pointer is valid
 * until the next head_get or head_drop. */
static int head_get(struct qkm_ledger *lg, const char *node, struct ledger_head **out)
{
	struct ledger_head nh, *h;
	size_t pos = 0;
	int err = 0, rc;

	if ((h = head_find(lg, node, &pos))) {
		*out = h;
		return 0;
	}
	if (lg->nheads >= QKM_LEDGER_MAX_NODES) {
		log_warnx("ledger: more than %d chains", QKM_LEDGER_MAX_NODES);
		return QKM_ETOOBIG;
	}
	memset(&nh, 0, sizeof(nh));
	snprintf(nh.node, sizeof(nh.node), "%s", node);

	sqlite3_stmt *s = lg->st[LG_LAST];
	sqlite3_bind_text(s, 1, node, -1, SQLITE_STATIC);
	if ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		struct ledger_bytes hb = col_blob(s, 1);
		nh.last = sqlite3_column_int64(s, 0);
		/* A hash of another length was edited in; the audit says so,
		 * and the next record links to what is there. */
		if (hb.len)
			memcpy(nh.hash, hb.p, hb.len < sizeof(nh.hash) ? hb.len : sizeof(nh.hash));
	} else if (rc != SQLITE_DONE) {
		err = ledger_fail(lg, "read chain end");
	}
	stmt_done(s);
	if (err)
		return err;

	s = lg->st[LG_CHAIN_GET];
	sqlite3_bind_text(s, 1, node, -1, SQLITE_STATIC);
	if ((rc = sqlite3_step(s)) == SQLITE_ROW)
		nh.kind = sqlite3_column_int(s, 0) ? HEAD_OWN : HEAD_NODE;
	else if (rc != SQLITE_DONE)
		err = ledger_fail(lg, "read chain head");
	stmt_done(s);
	if (err)
		return err;

	if (lg->nheads == lg->capheads) {
		size_t cap = lg->capheads ? lg->capheads * 2 : 16;
		struct ledger_head *p = realloc(lg->heads, cap * sizeof(*p));
		if (!p)
			return QKM_ENOMEM;
		lg->heads = p;
		lg->capheads = cap;
	}
	memmove(&lg->heads[pos + 1], &lg->heads[pos], (lg->nheads - pos) * sizeof(nh));
	lg->heads[pos] = nh;
	lg->nheads++;
	*out = &lg->heads[pos];
	return 0;
}

int qkm_ledger_last_seq(struct qkm_ledger *lg, const char *node, int64_t *seq)
{
	struct ledger_head *h;
	*seq = 0;
	if (!node || !qkm_name_valid(node))
		return QKM_EINVAL;
	int err = head_get(lg, node, &h);
	if (err == 0)
		*seq = h->last;
	return err;
}

/* ---- append --------------------------------------------------------------- */

static bool field_ok(const char *f, size_t size)
{
	return memchr(f, '\0', size) != NULL;
}

static bool event_valid(const struct qkm_lc_event *ev)
{
	return ev->seq >= 1 && field_ok(ev->event, sizeof(ev->event)) &&
	       field_ok(ev->key_kind, sizeof(ev->key_kind)) &&
	       field_ok(ev->key_id, sizeof(ev->key_id)) && field_ok(ev->peer, sizeof(ev->peer)) &&
	       field_ok(ev->detail, sizeof(ev->detail));
}

/* A resent record (seq at or below the chain's last): 0 if it is exactly
 * the stored one, QKM_EMISMATCH if it differs or is not there. */
static int same_as_stored(struct qkm_ledger *lg, const char *node, const struct qkm_lc_event *ev)
{
	sqlite3_stmt *s = lg->st[LG_GET];
	struct ledger_rec r;
	int err = 0;

	rec_from_event(&r, node, ev);
	sqlite3_bind_text(s, 1, node, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 2, ev->seq);
	int rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		bool same = (uint64_t)sqlite3_column_int64(s, 0) == ev->ts_ns;
		for (int i = 0; same && i < 5; i++)
			same = bytes_eq(col_bytes(s, 1 + i), r.text[i].p, r.text[i].len);
		if (!same) {
			log_warnx("ledger: %s seq %lld sent again, not as stored", node,
				  (long long)ev->seq);
			err = QKM_EMISMATCH;
		}
	} else if (rc == SQLITE_DONE) {
		log_warnx("ledger: %s seq %lld sent again, but it is not in the ledger "
			  "(deleted?)", node, (long long)ev->seq);
		err = QKM_EMISMATCH;
	} else {
		err = ledger_fail(lg, "read record");
	}
	stmt_done(s);
	return err;
}

struct ref_ctx {
	struct qkm_ledger *lg;
	const struct ledger_rec *r;
	char seen[16][QKM_TOKEN_MAX];
	size_t n_seen;
};

static int ref_one(const char *tok, size_t pos, void *arg)
{
	struct ref_ctx *x = arg;
	(void)pos;
	for (size_t i = 0; i < x->n_seen; i++)
		if (strcmp(x->seen[i], tok) == 0)
			return 0;
	if (x->n_seen < 16)
		memcpy(x->seen[x->n_seen++], tok, QKM_TOKEN_MAX);
	sqlite3_stmt *s = x->lg->st[LG_REF];
	sqlite3_bind_text(s, 1, tok, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(s, 2, x->r->node.p, (int)x->r->node.len, SQLITE_STATIC);
	sqlite3_bind_int64(s, 3, x->r->seq);
	int rc = sqlite3_step(s) == SQLITE_DONE ? 0 : ledger_fail(x->lg, "insert reference");
	stmt_done(s);
	return rc;
}

/* The tokens a record's detail names (core/token.h), for
 * qkm_ledger_ref_records. detail is NUL-terminated in the caller's event. */
static int insert_refs(struct qkm_ledger *lg, const struct ledger_rec *r)
{
	struct ref_ctx x = {lg, r, {{0}}, 0};
	char detail[sizeof(((struct qkm_lc_event *)0)->detail)];
	size_t n = r->text[4].len < sizeof(detail) - 1 ? r->text[4].len : sizeof(detail) - 1;
	memcpy(detail, r->text[4].p, n);
	detail[n] = '\0';
	return qkm_tokens_scan(detail, ref_one, &x);
}

static int insert_record(struct qkm_ledger *lg, const struct ledger_rec *r, const uint8_t *prev,
			 const uint8_t *hash)
{
	sqlite3_stmt *s = lg->st[LG_INSERT];
	sqlite3_bind_text(s, 1, r->node.p, (int)r->node.len, SQLITE_STATIC);
	sqlite3_bind_int64(s, 2, r->seq);
	sqlite3_bind_int64(s, 3, (int64_t)r->ts_ns);
	for (int i = 0; i < 5; i++)
		sqlite3_bind_text(s, 4 + i, r->text[i].p, (int)r->text[i].len, SQLITE_STATIC);
	sqlite3_bind_blob(s, 9, prev, QKM_LEDGER_HASH_LEN, SQLITE_STATIC);
	sqlite3_bind_blob(s, 10, hash, QKM_LEDGER_HASH_LEN, SQLITE_STATIC);
	int rc = sqlite3_step(s);
	int err = 0;
	if (rc != SQLITE_DONE) {
		err = ledger_fail(lg, "insert record");
		/* Someone else wrote this chain: the cached head is stale. */
		if (sqlite3_extended_errcode(lg->db) == SQLITE_CONSTRAINT_PRIMARYKEY)
			err = QKM_ESTATE;
	}
	stmt_done(s);
	return err ? err : insert_refs(lg, r);
}

static int put_chain(struct qkm_ledger *lg, const char *node, bool own, int64_t last,
		     const uint8_t *hash, uint64_t ts_ns)
{
	sqlite3_stmt *s = lg->st[LG_CHAIN_PUT];
	sqlite3_bind_text(s, 1, node, -1, SQLITE_STATIC);
	sqlite3_bind_int(s, 2, own ? 1 : 0);
	sqlite3_bind_int64(s, 3, last);
	sqlite3_bind_blob(s, 4, hash, QKM_LEDGER_HASH_LEN, SQLITE_STATIC);
	sqlite3_bind_int64(s, 5, (int64_t)ts_ns);
	return stmt_exec(lg, LG_CHAIN_PUT);
}

static int ledger_append(struct qkm_ledger *lg, const char *node, const struct qkm_lc_event *evs,
			 size_t n, bool own, size_t *stored)
{
	struct ledger_head *h;
	uint8_t prev[QKM_LEDGER_HASH_LEN], hash[QKM_LEDGER_HASH_LEN];
	size_t count = 0;
	int64_t last;
	uint64_t last_ts = 0;
	int err;

	*stored = 0;
	if (lg->busy)
		return QKM_ESTATE;
	if (!node || !qkm_name_valid(node) || (n && !evs))
		return QKM_EINVAL;
	for (size_t i = 0; i < n; i++)
		if (!event_valid(&evs[i]))
			return QKM_EINVAL;
	for (size_t i = 1; i < n; i++)
		if (evs[i - 1].seq == INT64_MAX || evs[i].seq != evs[i - 1].seq + 1) {
			log_warnx("ledger: %s: batch jumps from seq %lld to %lld", node,
				  (long long)evs[i - 1].seq, (long long)evs[i].seq);
			return QKM_ESTATE;
		}
	if (n == 0)
		return 0;
	if ((err = head_get(lg, node, &h)))
		return err;
	if (h->kind == (own ? HEAD_NODE : HEAD_OWN)) {
		log_warnx("ledger: %s is %s chain", node, own ? "a node's" : "the manager's own");
		return QKM_EPERM;
	}
	if (evs[0].seq > h->last + 1 && (own || h->last)) {
		log_warnx("ledger: %s: records %lld..%lld not received (sent from seq %lld)", node,
			  (long long)h->last + 1, (long long)evs[0].seq - 1, (long long)evs[0].seq);
		return QKM_ESTATE;
	}
	/* A node's first records here, from past seq 1: it deleted the older
	 * ones after retention_s, once a manager held them (docs/store.md,
	 * Retention), and this ledger is not that manager's (replaced, or a
	 * new one). Refused, the node could never send again; taken, the
	 * chain starts there and the audit reports the ones before missing. */
	if (evs[0].seq > 1 && !h->last && !own)
		log_warnx("ledger: %s: its records start at seq %lld here; 1..%lld are in no ledger "
			  "this manager has (pruned by the node after a manager held them?): "
			  "qkm ctl audit reports them missing",
			  node, (long long)evs[0].seq, (long long)evs[0].seq - 1);

	if ((err = stmt_exec(lg, LG_BEGIN)))
		goto out;
	last = h->last;
	memcpy(prev, h->hash, sizeof(prev));
	for (size_t i = 0; i < n; i++) {
		const struct qkm_lc_event *ev = &evs[i];
		if (ev->seq <= last) {
			if ((err = same_as_stored(lg, node, ev)))
				goto out;
			continue;
		}
		/* ev->seq == last + 1: the batch runs on by 1 and began at or
		 * below last + 1. */
		struct ledger_rec r;
		rec_from_event(&r, node, ev);
		if ((err = ledger_hash(lg, (struct ledger_bytes){ prev, sizeof(prev) }, &r, hash)))
			goto out;
		if ((err = insert_record(lg, &r, prev, hash)))
			goto out;
		memcpy(prev, hash, sizeof(prev));
		last = ev->seq;
		last_ts = ev->ts_ns;
		count++;
	}
	if (count && (err = put_chain(lg, node, own, last, prev, last_ts)))
		goto out;
	err = stmt_exec(lg, LG_COMMIT);
out:
	if (err) {
		ledger_rollback(lg);
		if (err == QKM_ESTORE || err == QKM_ESTATE)
			head_drop(lg, node);
		return err;
	}
	if (count) {
		h->last = last;
		memcpy(h->hash, prev, sizeof(prev));
	}
	h->kind = own ? HEAD_OWN : HEAD_NODE;
	*stored = count;
	return 0;
}

int qkm_ledger_append(struct qkm_ledger *lg, const char *node, const struct qkm_lc_event *evs,
		      size_t n, size_t *stored)
{
	return ledger_append(lg, node, evs, n, false, stored);
}

int qkm_ledger_append_own(struct qkm_ledger *lg, const char *ctl_id, struct qkm_lc_event *ev)
{
	struct ledger_head *h;
	struct qkm_lc_event e;
	size_t stored;
	int err;

	if (lg->busy)
		return QKM_ESTATE;
	if (!ctl_id || !qkm_name_valid(ctl_id) || !ev)
		return QKM_EINVAL;
	if ((err = head_get(lg, ctl_id, &h)))
		return err;
	if (h->last == INT64_MAX)
		return QKM_ESTATE;
	e = *ev;
	e.seq = h->last + 1;
	if (e.ts_ns == 0)
		e.ts_ns = qkm_now_ns();
	if ((err = ledger_append(lg, ctl_id, &e, 1, true, &stored)))
		return err;
	ev->seq = e.seq;
	ev->ts_ns = e.ts_ns;
	return 0;
}

/* ---- walks ---------------------------------------------------------------- */

/* Steps s (bound), handing each row (REC_COLS) to fn. */
static int walk(struct qkm_ledger *lg, sqlite3_stmt *s, qkm_ledger_fn fn, void *arg)
{
	struct qkm_lc_event ev;
	char node[QKM_NAME_MAX];
	int err = 0, rc;

	lg->busy = true;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		memset(&ev, 0, sizeof(ev));
		col_text(s, 0, node, sizeof(node));
		ev.seq = sqlite3_column_int64(s, 1);
		ev.ts_ns = (uint64_t)sqlite3_column_int64(s, 2);
		col_text(s, 3, ev.event, sizeof(ev.event));
		col_text(s, 4, ev.key_kind, sizeof(ev.key_kind));
		col_text(s, 5, ev.key_id, sizeof(ev.key_id));
		col_text(s, 6, ev.peer, sizeof(ev.peer));
		col_text(s, 7, ev.detail, sizeof(ev.detail));
		if ((err = fn(node, &ev, arg)))
			goto out;
	}
	if (rc != SQLITE_DONE)
		err = ledger_fail(lg, "list records");
out:
	lg->busy = false;
	stmt_done(s);
	return err;
}

int qkm_ledger_records(struct qkm_ledger *lg, const char *node, int64_t after, const char *key_sub,
		       const char *event, unsigned limit, qkm_ledger_fn fn, void *arg)
{
	if (lg->busy)
		return QKM_ESTATE;
	if (!fn || (node && !qkm_name_valid(node)))
		return QKM_EINVAL;
	sqlite3_stmt *s = lg->st[node ? LG_LIST_NODE : LG_LIST_ALL];
	if (node)
		sqlite3_bind_text(s, 1, node, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 2, after);
	if (key_sub)
		sqlite3_bind_text(s, 3, key_sub, -1, SQLITE_STATIC);
	if (event)
		sqlite3_bind_text(s, 4, event, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 5, limit ? (int64_t)limit : -1);
	return walk(lg, s, fn, arg);
}

int qkm_ledger_key_records(struct qkm_ledger *lg, const char *key_prefix, unsigned limit,
			   qkm_ledger_fn fn, void *arg)
{
	char upper[sizeof(((struct qkm_lc_event *)0)->key_id)];
	if (lg->busy)
		return QKM_ESTATE;
	if (!fn || !key_prefix || !*key_prefix)
		return QKM_EINVAL;
	/* key_id >= prefix AND key_id < upper, with upper the prefix whose
	 * last byte is one more (text compares bytewise): a range the index
	 * on key_id answers. A prefix that cannot be a key ID's matches none. */
	size_t n = strlen(key_prefix);
	if (n >= sizeof(upper) || (unsigned char)key_prefix[n - 1] == 0xff)
		return 0;
	memcpy(upper, key_prefix, n + 1);
	upper[n - 1] = (char)((unsigned char)upper[n - 1] + 1);
	sqlite3_stmt *s = lg->st[LG_LIST_KEY];
	sqlite3_bind_text(s, 1, key_prefix, (int)n, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, upper, (int)n, SQLITE_STATIC);
	sqlite3_bind_int64(s, 3, limit ? (int64_t)limit : -1);
	return walk(lg, s, fn, arg);
}

int qkm_ledger_ref_records(struct qkm_ledger *lg, const char *token, unsigned limit,
			   qkm_ledger_fn fn, void *arg)
{
	if (lg->busy)
		return QKM_ESTATE;
	if (!fn || !token || !*token)
		return QKM_EINVAL;
	sqlite3_stmt *s = lg->st[LG_LIST_REF];
	sqlite3_bind_text(s, 1, token, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 2, limit ? (int64_t)limit : -1);
	return walk(lg, s, fn, arg);
}

int qkm_ledger_nodes(struct qkm_ledger *lg, qkm_ledger_node_fn fn, void *arg)
{
	struct qkm_ledger_node n;
	int err = 0, rc;

	if (lg->busy)
		return QKM_ESTATE;
	if (!fn)
		return QKM_EINVAL;
	sqlite3_stmt *s = lg->st[LG_CHAINS];
	lg->busy = true;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		memset(&n, 0, sizeof(n));
		col_text(s, 0, n.node, sizeof(n.node));
		n.own = sqlite3_column_int(s, 1) != 0;
		n.last_seq = sqlite3_column_int64(s, 2);
		n.last_ts_ns = (uint64_t)sqlite3_column_int64(s, 4);
		if ((err = fn(&n, arg)))
			goto out;
	}
	if (rc != SQLITE_DONE)
		err = ledger_fail(lg, "list chains");
out:
	lg->busy = false;
	stmt_done(s);
	return err;
}

/* ---- audit ---------------------------------------------------------------- */

/* What the audit knows of one chain's end besides its records: the chains
 * row in the file, and the head this process keeps in memory if it used the
 * chain (an edit of the file cannot reach that one). */
struct audit_head {
	char *node;
	size_t node_len;
	bool in_file, in_mem, own;
	int64_t file_seq, mem_seq;
	uint8_t file_hash[QKM_LEDGER_HASH_LEN], mem_hash[QKM_LEDGER_HASH_LEN];
	bool file_hash_ok;            /* the file's last_hash is 32 bytes */
};

struct audit {
	struct qkm_ledger *lg;
	qkm_ledger_problem_fn problem;
	qkm_ledger_checked_fn checked;
	void *arg;
	int total;
	struct audit_head *heads;     /* ordered by node, as SQLite orders text */
	size_t nheads, cap, next;     /* next: the first not yet matched */
	/* the chain being read */
	char *node;                   /* NUL-terminated copy */
	size_t node_len, node_cap;
	const struct audit_head *head;
	int64_t expect, first, last;  /* next seq expected; first and last read */
	uint8_t prev[QKM_LEDGER_HASH_LEN]; /* stored hash of the record last read */
	bool prev_ok;                 /* ... and it was 32 bytes */
	int64_t records;
	int problems;
};

/* SQLite's BINARY collation: bytewise, then shorter first. */
static int text_cmp(const void *a, size_t alen, const void *b, size_t blen)
{
	size_t n = alen < blen ? alen : blen;
	int c = n ? memcmp(a, b, n) : 0;
	if (c)
		return c;
	return alen < blen ? -1 : alen > blen;
}

static int head_cmp(const void *x, const void *y)
{
	const struct audit_head *a = x, *b = y;
	return text_cmp(a->node, a->node_len, b->node, b->node_len);
}

static void audit_report(struct audit *a, const char *node, int64_t seq, int64_t seq_last,
			 const char *what)
{
	a->problems++;
	if (a->total < INT_MAX)
		a->total++;
	if (a->problem)
		a->problem(node, seq, seq_last, what, a->arg);
}

static void audit_checked(struct audit *a, const char *node, const struct audit_head *hd)
{
	if (!a->checked)
		return;
	struct qkm_ledger_checked c = {
		.node = node, .own = hd && hd->own, .records = a->records, .last_seq = a->last,
		.head_seq = hd && hd->in_file ? hd->file_seq : 0, .problems = a->problems,
	};
	a->checked(&c, a->arg);
}

/* The end of a chain (a->last = its last record read, 0 if none): checks
 * it against the heads. A head further on means records deleted from the
 * end; a file head behind, records added by hand; a head at the last
 * record with another hash, a last record rewritten with its hash. */
static void audit_end_chain(struct audit *a, const char *node, const struct audit_head *hd)
{
	int64_t file_seq = hd && hd->in_file ? hd->file_seq : 0;
	int64_t want = file_seq;
	bool bad = false;

	if (hd && hd->in_mem && hd->mem_seq > want)
		want = hd->mem_seq;
	if (a->last < want)
		audit_report(a, node, a->last + 1, want, "missing");
	if (a->last > file_seq)
		audit_report(a, node, file_seq + 1 > a->first ? file_seq + 1 : a->first, a->last,
			     "extra");
	if (a->last > 0 && hd && hd->in_file && a->last == hd->file_seq &&
	    (!hd->file_hash_ok || !a->prev_ok || memcmp(hd->file_hash, a->prev, sizeof(a->prev))))
		bad = true;
	if (a->last > 0 && hd && hd->in_mem && a->last == hd->mem_seq &&
	    (!a->prev_ok || memcmp(hd->mem_hash, a->prev, sizeof(a->prev))))
		bad = true;
	if (bad)
		audit_report(a, node, a->last, a->last, "bad-link");
	audit_checked(a, node, hd);
}

static void audit_reset(struct audit *a)
{
	a->expect = 1;
	a->first = 0;
	a->last = 0;
	memset(a->prev, 0, sizeof(a->prev));
	a->prev_ok = true;
	a->records = 0;
	a->problems = 0;
}

/* Starts reading the chain of node (len bytes), after ending the chains
 * ordered before it that have no record left. */
static int audit_begin_chain(struct audit *a, const void *node, size_t len)
{
	while (a->next < a->nheads && text_cmp(a->heads[a->next].node,
					       a->heads[a->next].node_len, node, len) < 0) {
		const struct audit_head *hd = &a->heads[a->next++];
		audit_reset(a);
		audit_end_chain(a, hd->node, hd);
	}
	a->head = NULL;
	if (a->next < a->nheads &&
	    text_cmp(a->heads[a->next].node, a->heads[a->next].node_len, node, len) == 0)
		a->head = &a->heads[a->next++];
	if (len + 1 > a->node_cap || !a->node) {
		char *p = realloc(a->node, len + 1);
		if (!p)
			return QKM_ENOMEM;
		a->node = p;
		a->node_cap = len + 1;
	}
	if (len && node)
		memcpy(a->node, node, len);
	a->node[len] = '\0';
	a->node_len = len;
	audit_reset(a);
	return 0;
}

/* One record (AUDIT's columns) of the chain being read. */
static int audit_record(struct audit *a, sqlite3_stmt *s)
{
	struct ledger_rec r;
	uint8_t h[QKM_LEDGER_HASH_LEN];
	int err;

	r.node = (struct ledger_bytes){ a->node, a->node_len };
	r.seq = sqlite3_column_int64(s, 1);
	r.ts_ns = (uint64_t)sqlite3_column_int64(s, 2);
	for (int i = 0; i < 5; i++)
		r.text[i] = col_bytes(s, 3 + i);
	struct ledger_bytes prev = col_blob(s, 8), hash = col_blob(s, 9);
	a->records++;

	/* Only a seq edited into something other than an integer sorts out
	 * of place; it is reported, and the chain goes on without it. */
	if (sqlite3_column_type(s, 1) != SQLITE_INTEGER || r.seq < a->expect) {
		audit_report(a, a->node, r.seq, r.seq, "changed");
		return 0;
	}
	if (r.seq > a->expect)
		audit_report(a, a->node, a->expect, r.seq - 1, "missing");
	if ((err = ledger_hash(a->lg, prev, &r, h)))
		return err;
	if (!bytes_eq(hash, h, sizeof(h)))
		audit_report(a, a->node, r.seq, r.seq, "changed");
	else if (r.seq == a->expect && (!a->prev_ok || !bytes_eq(prev, a->prev, sizeof(a->prev))))
		audit_report(a, a->node, r.seq, r.seq, "bad-link");
	/* The next record links to this one's stored hash, right or not: one
	 * edit is one finding, not one per record after it. */
	a->prev_ok = hash.len == sizeof(a->prev);
	if (a->prev_ok)
		memcpy(a->prev, hash.p, sizeof(a->prev));
	if (!a->first)
		a->first = r.seq;
	a->last = r.seq;
	a->expect = r.seq < INT64_MAX ? r.seq + 1 : r.seq;
	return 0;
}

static int audit_add_head(struct audit *a, const void *node, size_t len,
			  struct audit_head **out)
{
	if (a->nheads >= 2 * (size_t)QKM_LEDGER_MAX_NODES) {
		log_warnx("ledger: audit: more than %d chains", QKM_LEDGER_MAX_NODES);
		return QKM_ETOOBIG;
	}
	if (a->nheads == a->cap) {
		size_t cap = a->cap ? a->cap * 2 : 16;
		struct audit_head *p = realloc(a->heads, cap * sizeof(*p));
		if (!p)
			return QKM_ENOMEM;
		a->heads = p;
		a->cap = cap;
	}
	struct audit_head *hd = &a->heads[a->nheads];
	memset(hd, 0, sizeof(*hd));
	if (!(hd->node = malloc(len + 1)))
		return QKM_ENOMEM;
	if (len)
		memcpy(hd->node, node, len);
	hd->node[len] = '\0';
	hd->node_len = len;
	a->nheads++;
	*out = hd;
	return 0;
}

/* The heads: the chains table (already in order), then the heads in memory
 * merged in. */
static int audit_load_heads(struct audit *a)
{
	struct qkm_ledger *lg = a->lg;
	sqlite3_stmt *s = lg->st[LG_CHAINS];
	size_t nfile;
	bool added = false;
	int err = 0, rc;

	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		struct ledger_bytes name = col_bytes(s, 0), hash = col_blob(s, 3);
		struct audit_head *hd;
		if ((err = audit_add_head(a, name.p, name.len, &hd)))
			goto out;
		hd->in_file = true;
		hd->own = sqlite3_column_int(s, 1) != 0;
		hd->file_seq = sqlite3_column_int64(s, 2);
		hd->file_hash_ok = hash.len == sizeof(hd->file_hash);
		if (hd->file_hash_ok)
			memcpy(hd->file_hash, hash.p, sizeof(hd->file_hash));
	}
	if (rc != SQLITE_DONE) {
		err = ledger_fail(lg, "read chain heads");
		goto out;
	}
	nfile = a->nheads;
	for (size_t i = 0; i < lg->nheads; i++) {
		const struct ledger_head *m = &lg->heads[i];
		if (m->last == 0)
			continue;
		struct audit_head key = { .node = (char *)m->node, .node_len = strlen(m->node) };
		struct audit_head *hd =
			nfile ? bsearch(&key, a->heads, nfile, sizeof(*hd), head_cmp) : NULL;
		if (!hd) {
			if ((err = audit_add_head(a, key.node, key.node_len, &hd)))
				goto out;
			hd->own = m->kind == HEAD_OWN;
			added = true;
		}
		hd->in_mem = true;
		hd->mem_seq = m->last;
		memcpy(hd->mem_hash, m->hash, sizeof(hd->mem_hash));
	}
	if (added)
		qsort(a->heads, a->nheads, sizeof(*a->heads), head_cmp);
out:
	stmt_done(s);
	return err;
}

int qkm_ledger_audit(struct qkm_ledger *lg, qkm_ledger_problem_fn problem,
		     qkm_ledger_checked_fn checked, void *arg)
{
	struct audit a = { .lg = lg, .problem = problem, .checked = checked, .arg = arg };
	sqlite3_stmt *s = lg->st[LG_AUDIT];
	bool reading = false;
	int err, rc;

	if (lg->busy)
		return QKM_ESTATE;
	/* One read transaction: the heads and the records are one snapshot,
	 * whatever else writes the file meanwhile. */
	if ((err = stmt_exec(lg, LG_BEGIN_READ)))
		return err;
	lg->busy = true;
	if ((err = audit_load_heads(&a)))
		goto out;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		struct ledger_bytes node = col_bytes(s, 0);
		if (!reading || text_cmp(node.p, node.len, a.node, a.node_len) != 0) {
			if (reading)
				audit_end_chain(&a, a.node, a.head);
			/* node points into the row, valid until the next step */
			if ((err = audit_begin_chain(&a, node.p, node.len)))
				goto out;
			reading = true;
		}
		if ((err = audit_record(&a, s)))
			goto out;
	}
	if (rc != SQLITE_DONE) {
		err = ledger_fail(lg, "audit");
		goto out;
	}
	if (reading)
		audit_end_chain(&a, a.node, a.head);
	while (a.next < a.nheads) {
		const struct audit_head *hd = &a.heads[a.next++];
		audit_reset(&a);
		audit_end_chain(&a, hd->node, hd);
	}
out:
	stmt_done(s);
	lg->busy = false;
	ledger_rollback(lg); /* ends the read */
	for (size_t i = 0; i < a.nheads; i++)
		free(a.heads[i].node);
	free(a.heads);
	free(a.node);
	lg->audits.runs++;
	if (err) {
		lg->audits.failed++;
	} else {
		lg->audits.problems += (uint64_t)a.total;
		lg->audits.last_problems = a.total;
	}
	return err ? err : a.total;
}

void qkm_ledger_audit_stats(const struct qkm_ledger *lg, struct qkm_ledger_audit_stats *out)
{
	*out = lg->audits;
}
