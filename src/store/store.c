/* store.c - the SQLite key store: schema, durability settings, prepared
 * statements, block and life-cycle persistence. The only file that calls
 * sqlite3_*. What a block means (IDs, pools, key types) is the caller's; this
 * file keeps the bytes durable, and gone once deleted or consumed. */
#include "store/store.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <pthread.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/log.h"
#include "store/file.h"
#include "store/kdata.h"

#define STORE_SCHEMA_VERSION 12
#define STORE_BUSY_MS 5000

/* Key data lives in block_data, apart from the metadata in blocks, so that
 * qkm_store_block_set_used() rewrites a small row and zeroes only the pages
 * of the consumed range; were data a column of blocks, every UPDATE of used
 * would copy and rewrite the whole blob. block_data rows follow their block
 * through ON DELETE CASCADE (hence foreign_keys=ON). lc is append-only: the
 * triggers make any UPDATE or DELETE of it fail. */
static const char store_schema[] =
	"CREATE TABLE blocks ("
	" id INTEGER PRIMARY KEY,"
	" peer TEXT NOT NULL,"
	" pool_kind INTEGER NOT NULL,"
	" batch_id BLOB NOT NULL CHECK (length(batch_id) = 16),"
	" first_index INTEGER NOT NULL,"
	" count INTEGER NOT NULL CHECK (count > 0),"
	" unit_bytes INTEGER NOT NULL CHECK (unit_bytes > 0),"
	" used INTEGER NOT NULL CHECK (used >= 0 AND used < count * unit_bytes),"
	" key_type INTEGER NOT NULL,"
	" state INTEGER NOT NULL,"
	" created_ns INTEGER NOT NULL,"
	" qkd_module_id TEXT NOT NULL,"
	" matching_qkd_module_id TEXT NOT NULL,"
	" UNIQUE (batch_id, first_index));"
	"CREATE INDEX blocks_pool ON blocks (peer, state, created_ns);"
	"CREATE TABLE block_data ("
	" id INTEGER PRIMARY KEY REFERENCES blocks (id) ON DELETE CASCADE,"
	" data BLOB NOT NULL);"
	"CREATE TABLE lc ("
	" seq INTEGER PRIMARY KEY AUTOINCREMENT,"
	" ts_ns INTEGER NOT NULL,"
	" event TEXT NOT NULL,"
	" key_kind TEXT NOT NULL,"
	" key_id TEXT NOT NULL,"
	" peer TEXT NOT NULL,"
	" detail TEXT NOT NULL);"
	"CREATE TRIGGER lc_no_update BEFORE UPDATE ON lc"
	" BEGIN SELECT RAISE(ABORT, 'lc is append-only'); END;"
	"CREATE TRIGGER lc_no_delete BEFORE DELETE ON lc"
	" BEGIN SELECT RAISE(ABORT, 'lc is append-only'); END;"
	"CREATE TABLE counters ("
	" name TEXT PRIMARY KEY,"
	" value INTEGER NOT NULL);"
	"PRAGMA user_version = 1;";

/* Version 2: KSA keys (key supply). Applied to fresh files and to files of
 * version 1 alike, inside one transaction. */
static const char store_migrate_v2[] =
	"CREATE TABLE IF NOT EXISTS ksa_keys ("
	" id BLOB PRIMARY KEY CHECK (length(id) = 16),"
	" peer TEXT NOT NULL,"
	" master TEXT NOT NULL,"
	" slave TEXT NOT NULL,"
	" additional TEXT NOT NULL,"
	" delivered TEXT NOT NULL,"
	" size_bits INTEGER NOT NULL,"
	" level INTEGER NOT NULL,"
	" role INTEGER NOT NULL,"
	" state INTEGER NOT NULL,"
	" created_ns INTEGER NOT NULL,"
	" supplied_ns INTEGER NOT NULL,"
	" source TEXT NOT NULL,"
	" ranges BLOB NOT NULL) WITHOUT ROWID;"
	"CREATE INDEX IF NOT EXISTS ksa_peer ON ksa_keys (peer, state);"
	"CREATE TABLE IF NOT EXISTS ksa_data ("
	" id BLOB PRIMARY KEY REFERENCES ksa_keys (id) ON DELETE CASCADE,"
	" data BLOB NOT NULL) WITHOUT ROWID;"
	"PRAGMA user_version = 2;";

/* Version 3: KSA keys in insertion order. A KSA-key ID is a random UUID:
 * as the primary key it put every new row (metadata and key bytes) on a
 * random page of an ever-growing tree, so a commit of a few thousand keys
 * wrote thousands of pages. Rows now append by rowid; the IDs live in a
 * narrow unique index, and a key's bytes sit under its row's rowid. */
static const char store_migrate_v3[] =
	"CREATE TABLE ksa_keys3 ("
	" seq INTEGER PRIMARY KEY,"
	" id BLOB NOT NULL UNIQUE CHECK (length(id) = 16),"
	" peer TEXT NOT NULL,"
	" master TEXT NOT NULL,"
	" slave TEXT NOT NULL,"
	" additional TEXT NOT NULL,"
	" delivered TEXT NOT NULL,"
	" size_bits INTEGER NOT NULL,"
	" level INTEGER NOT NULL,"
	" role INTEGER NOT NULL,"
	" state INTEGER NOT NULL,"
	" created_ns INTEGER NOT NULL,"
	" supplied_ns INTEGER NOT NULL,"
	" source TEXT NOT NULL,"
	" ranges BLOB NOT NULL);"
	"INSERT INTO ksa_keys3 (id, peer, master, slave, additional, delivered, size_bits,"
	" level, role, state, created_ns, supplied_ns, source, ranges)"
	" SELECT id, peer, master, slave, additional, delivered, size_bits, level, role,"
	" state, created_ns, supplied_ns, source, ranges FROM ksa_keys ORDER BY created_ns;"
	"CREATE TABLE ksa_data3 ("
	" seq INTEGER PRIMARY KEY REFERENCES ksa_keys3 (seq) ON DELETE CASCADE,"
	" data BLOB NOT NULL);"
	"INSERT INTO ksa_data3 (seq, data)"
	" SELECT k.seq, d.data FROM ksa_data d JOIN ksa_keys3 k ON k.id = d.id;"
	"DROP TABLE ksa_data;"
	"DROP TABLE ksa_keys;"
	"ALTER TABLE ksa_keys3 RENAME TO ksa_keys;"
	"ALTER TABLE ksa_data3 RENAME TO ksa_data;"
	"CREATE INDEX ksa_peer ON ksa_keys (peer, state);"
	"PRAGMA user_version = 3;";

/* Version 4: the security level of a block's key material (R-REL-4):
 * 1 = ITS, 2 = COMPUTATIONAL (a relay hop used the AES fallback). Every
 * block stored before relay existed came from a QKD link, hence the
 * default: an upgraded file reads as all ITS. */
static const char store_migrate_v4[] =
	"ALTER TABLE blocks ADD COLUMN level INTEGER NOT NULL DEFAULT 1;"
	"PRAGMA user_version = 4;";

/* Version 5: QKD-key IDs a link's acquisition stored, for sources that may
 * hand the same file over twice (a spool directory read again after a
 * crash between the store's commit and the file's removal). A row lives
 * from the commit of its round until the source has removed the file. */
static const char store_migrate_v5[] =
	"CREATE TABLE IF NOT EXISTS qkd_ids ("
	" link TEXT NOT NULL,"
	" qkd_id TEXT NOT NULL,"
	" created_ns INTEGER NOT NULL,"
	" PRIMARY KEY (link, qkd_id)) WITHOUT ROWID;"
	"PRAGMA user_version = 5;";

/* Version 6: key data leaves SQLite for the key-data file (kdata.h): each
 * block names its extent there (data_off). store_migrate_data() moves the
 * bytes of an older file's block_data rows there, in the same transaction,
 * and the table goes (secure_delete zeroes its pages). */
static const char store_migrate_v6[] =
	"ALTER TABLE blocks ADD COLUMN data_off INTEGER NOT NULL DEFAULT -1;";
static const char store_migrate_v6_end[] =
	"DROP TABLE block_data;"
	"PRAGMA user_version = 6;";

/* Version 7: a small block's bytes stay in SQLite (small_data), data_off -1.
 * A commit that stores only small blocks then syncs the WAL alone: one
 * fdatasync instead of two (the key-data file's, then the WAL's), which is
 * most of a one-key relay step. secure_delete and the TRUNCATE checkpoint
 * take them out of the file and the WAL as they do ksa_data's. */
static const char store_migrate_v7[] =
	"CREATE TABLE small_data ("
	" id INTEGER PRIMARY KEY REFERENCES blocks (id) ON DELETE CASCADE,"
	" data BLOB NOT NULL);"
	"PRAGMA user_version = 7;";

/* Version 8: the (peer, state) index of KSA keys holds only the states
 * keys are listed by (a master's OFFERED keys at reconnection, its STOCKED
 * ones at start). Every key ever supplied stayed in it, a master's stock
 * key moved in it twice (OFFERED, STOCKED, SUPPLIED) and a slave's key went
 * in and out though nothing looks a slave's keys up by peer; now a key is
 * in it only while it is OFFERED or STOCKED (docs/store.md has the
 * measurement). */
static const char store_migrate_v8[] =
	"DROP INDEX ksa_peer;"
	"CREATE INDEX ksa_peer ON ksa_keys (peer, state) WHERE state IN (1, 4);"
	"PRAGMA user_version = 8;";

/* Version 9: a row of ksa_keys is a run of count keys (IDs id, id + 1, ...
 * in the last 4 bytes, core/id.h) alike in all but their bytes. A master's
 * node puts one row per request instead of one per key, and moves it
 * through its states in one update: a stock of 35,000 keys a second cost
 * three statements a key (insert OFFERED, to STOCKED, to SUPPLIED), most
 * of its main thread's time in bench/etsi014. A slave's node keeps a row
 * per key (each is delivered on its own), count 1, as every row before. */
static const char store_migrate_v9[] =
	"ALTER TABLE ksa_keys ADD COLUMN count INTEGER NOT NULL DEFAULT 1 CHECK (count >= 1);"
	"PRAGMA user_version = 9;";

/* Version 10: an index of the keys supplied (state 3, SUPPLIED), by supply
 * time, so that a node can drop their rows once retention_s has passed
 * (qkm_store_ksa_prune) without reading the whole table. A key joins it
 * when its last slave (or, at the master's node, its master) gets it. */
static const char store_migrate_v10[] =
	"CREATE INDEX ksa_supplied ON ksa_keys (supplied_ns) WHERE state = 3;"
	"PRAGMA user_version = 10;";

/* Version 11: lc stays append-only above a watermark, counters'
 * lc_pruned_seq, which only qkm_store_lc_prune raises: records up to it
 * are ones the manager holds (R-LC-2), and may go once retention_s has
 * passed. Every other DELETE of lc still fails. */
static const char store_migrate_v11[] =
	"DROP TRIGGER lc_no_delete;"
	"CREATE TRIGGER lc_no_delete BEFORE DELETE ON lc"
	" WHEN old.seq > coalesce((SELECT value FROM counters WHERE name = 'lc_pruned_seq'), 0)"
	" BEGIN SELECT RAISE(ABORT, 'lc is append-only'); END;"
	"PRAGMA user_version = 11;";

/* Version 12: a slave's node keeps a run of keys in one row too (up to
 * QKM_KSA_SLAVE_RUN keys, one slave each); dmap says which of them are gone
 * (bit i: key id + i delivered or cancelled, its bytes wiped), cmap which
 * of those were cancelled: an insert or two per SUPPLY round's run instead
 * of two per key, most of a slave's node's work under load
 * (docs/store.md). 0 in every existing row: nothing of a run is gone.
 * Index ksa_gone: the runs some of whose keys are gone, by their last
 * delivery's time, for retention. */
static const char store_migrate_v12[] =
	"ALTER TABLE ksa_keys ADD COLUMN dmap INTEGER NOT NULL DEFAULT 0;"
	"ALTER TABLE ksa_keys ADD COLUMN cmap INTEGER NOT NULL DEFAULT 0;"
	"CREATE INDEX ksa_gone ON ksa_keys (supplied_ns) WHERE state = 2 AND dmap != 0;"
	"PRAGMA user_version = 12;";

/* Blocks of at most this many bytes keep them in small_data: a page or two
 * of WAL costs far less than a second fdatasync. */
#define STORE_SMALL_MAX 1024u

/* Link key read ahead of its use: a pool's next blocks (at most 16, the
 * LIMIT of ST_POOL_AHEAD), up to this many bytes past the block being read,
 * for at most this many pools at once. */
#define STORE_AHEAD_BYTES (8u << 20)
#define STORE_AHEAD_POOLS 8

/* The key-data file is the database's path with this suffix (docs/store.md). */
#define STORE_KEYS_SUFFIX "-keys"

#define BLOCK_COLS                                                              \
	"id, peer, pool_kind, batch_id, first_index, count, unit_bytes, used, " \
	"key_type, state, created_ns, qkd_module_id, matching_qkd_module_id, level, data_off"

/* Every statement qkm runs, prepared once at open. */
#define STORE_STMTS(X)                                                          \
	X(BEGIN, "BEGIN IMMEDIATE")                                             \
	X(COMMIT, "COMMIT")                                                     \
	X(ROLLBACK, "ROLLBACK")                                                 \
	X(SAVEPOINT, "SAVEPOINT qkm_op")                                        \
	X(RELEASE, "RELEASE qkm_op")                                            \
	X(ROLLBACK_TO, "ROLLBACK TO qkm_op")                                    \
	X(MARK, "SAVEPOINT qkm_mark")                                           \
	X(UNMARK, "RELEASE qkm_mark")                                           \
	X(UNDO_MARK, "ROLLBACK TO qkm_mark")                                    \
	X(BLOCK_INSERT,                                                         \
	  "INSERT INTO blocks (peer, pool_kind, batch_id, first_index, count, " \
	  "unit_bytes, used, key_type, state, created_ns, qkd_module_id, "      \
	  "matching_qkd_module_id, level, data_off) "                           \
	  "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)") \
	X(EXTENTS, "SELECT data_off, count * unit_bytes, used, (data_off >= 0 OR " \
	  "(SELECT length(data) FROM small_data d WHERE d.id = blocks.id) = " \
	  "count * unit_bytes) FROM blocks")                                    \
	X(SMALL_INSERT, "INSERT INTO small_data (id, data) VALUES (?1, ?2)")    \
	X(SMALL_GET, "SELECT data FROM small_data WHERE id = ?1")               \
	X(BATCH_EXTENTS, "SELECT data_off, count * unit_bytes, used FROM blocks " \
	  "WHERE batch_id = ?1")                                                \
	X(BATCH_SET_STATE, "UPDATE blocks SET state = ?2 WHERE batch_id = ?1")  \
	X(BATCH_SET_LEVEL, "UPDATE blocks SET level = ?2 WHERE batch_id = ?1")  \
	X(BATCH_STATE, "SELECT min(state), sum(count * unit_bytes) FROM blocks "  \
	  "WHERE batch_id = ?1 HAVING count(*) > 0")                            \
	X(BATCH_DELETE, "DELETE FROM blocks WHERE batch_id = ?1")               \
	X(BLOCK_USE_GET,                                                        \
	  "SELECT count, unit_bytes, used, peer, data_off FROM blocks WHERE id = ?1") \
	X(BLOCK_USE_SET, "UPDATE blocks SET used = ?2 WHERE id = ?1")           \
	X(BLOCK_DELETE, "DELETE FROM blocks WHERE id = ?1")                     \
	X(BLOCKS,                                                               \
	  "SELECT " BLOCK_COLS " FROM blocks WHERE peer = ?1 "                  \
	  "AND (?2 = 0 OR ((1 << state) & ?2) != 0) ORDER BY created_ns, id")   \
	/* +peer: the walk follows the (batch_id, first_index) index, whose     \
	 * order it returns, rather than sorting the pool's blocks. */          \
	X(BLOCKS_RANGE,                                                         \
	  "SELECT " BLOCK_COLS " FROM blocks WHERE +peer = ?1 "                 \
	  "AND (batch_id, first_index) > (?2, ?3) "                             \
	  "AND (batch_id, first_index) <= (?4, ?5) "                            \
	  "ORDER BY batch_id, first_index")                                     \
	X(POOL_STATS,                                                           \
	  "SELECT "                                                             \
	  "coalesce(sum(CASE WHEN state = 2 THEN "                              \
	  "(count * unit_bytes - used + unit_bytes - 1) / unit_bytes END), 0), "\
	  "coalesce(sum(CASE WHEN state = 2 "                                   \
	  "THEN count * unit_bytes - used END), 0), "                           \
	  "coalesce(sum(CASE WHEN state = 2 AND key_type = 1 "                  \
	  "THEN count * unit_bytes - used END), 0), "                           \
	  "coalesce(sum(CASE WHEN state = 2 AND key_type = 2 "                  \
	  "THEN count * unit_bytes - used END), 0), "                           \
	  "coalesce(sum(CASE WHEN state = 1 THEN count END), 0), "              \
	  "coalesce(sum(CASE WHEN state = 2 AND key_type = 1 AND level = 1 "    \
	  "THEN count * unit_bytes - used END), 0) "                            \
	  "FROM blocks WHERE peer = ?1")                                        \
	X(LC_INSERT,                                                            \
	  "INSERT INTO lc (ts_ns, event, key_kind, key_id, peer, detail) "      \
	  "VALUES (?1, ?2, ?3, ?4, ?5, ?6)")                                    \
	X(LC_LIST,                                                              \
	  "SELECT seq, ts_ns, event, key_kind, key_id, peer, detail FROM lc "   \
	  "WHERE seq > ?1 ORDER BY seq LIMIT ?2")                               \
	X(COUNTER_ADD,                                                          \
	  "INSERT INTO counters (name, value) VALUES (?1, ?2) "                 \
	  "ON CONFLICT (name) DO UPDATE SET value = value + excluded.value")    \
	X(COUNTER_GET, "SELECT value FROM counters WHERE name = ?1")            \
	X(COUNTER_LIST,                                                         \
	  "SELECT name, value FROM counters "                                   \
	  "WHERE substr(name, 1, length(?1)) = ?1 ORDER BY name")               \
	X(QKD_PUT, "INSERT INTO qkd_ids (link, qkd_id, created_ns) "            \
	  "VALUES (?1, ?2, ?3)")                                                \
	X(QKD_HELD, "SELECT 1 FROM qkd_ids WHERE link = ?1 AND qkd_id = ?2")    \
	X(QKD_FORGET, "DELETE FROM qkd_ids WHERE link = ?1 AND qkd_id = ?2")    \
	X(POOL_READ,                                                            \
	  "SELECT id, batch_id, first_index, count, unit_bytes, used, level, data_off, " \
	  "created_ns FROM blocks WHERE peer = ?1 AND state = 2 AND key_type = ?2 " \
	  "AND (?3 = 0 OR level = 1) ORDER BY created_ns, id")                  \
	X(POOL_AHEAD,                                                           \
	  "SELECT id, created_ns, count * unit_bytes, used, data_off FROM blocks " \
	  "WHERE peer = ?1 AND state = 2 AND key_type = ?2 AND (?5 = 0 OR level = 1) " \
	  "AND (created_ns, id) > (?3, ?4) ORDER BY created_ns, id LIMIT 16")   \
	X(BLOCK_FIND,                                                           \
	  "SELECT id, count, unit_bytes, used, key_type, state, peer, data_off, " \
	  "created_ns FROM blocks WHERE batch_id = ?1 AND first_index = ?2")    \
	X(KSA_INSERT,                                                           \
	  "INSERT INTO ksa_keys (id, peer, master, slave, additional, "         \
	  "delivered, size_bits, level, role, state, created_ns, supplied_ns, " \
	  "source, ranges, count) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, " \
	  "?10, ?11, ?12, ?13, ?14, ?15)")                                      \
	X(KSA_DATA_INSERT, "INSERT INTO ksa_data (seq, data) VALUES (?1, ?2)")  \
	X(KSA_GET, /* the row whose run holds ?1: the last to start at or before it */ \
	  "SELECT id, peer, master, slave, additional, delivered, size_bits, "  \
	  "level, role, state, created_ns, supplied_ns, source, ranges, seq, "  \
	  "count, dmap, cmap FROM ksa_keys WHERE id <= ?1 ORDER BY id DESC LIMIT 1") \
	X(KSA_FIRST_IN, "SELECT 1 FROM ksa_keys WHERE id BETWEEN ?1 AND ?2 LIMIT 1") \
	X(KSA_DATA_GET, "SELECT data FROM ksa_data WHERE seq = ?1")             \
	X(KSA_DATA_SLICE, "SELECT substr(data, ?2, ?3) FROM ksa_data WHERE seq = ?1") \
	X(KSA_DATA_SET, "UPDATE ksa_data SET data = ?2 WHERE seq = ?1")         \
	X(KSA_DATA_DROP, "DELETE FROM ksa_data WHERE seq = ?1")                 \
	X(KSA_RUN_MARK, "UPDATE ksa_keys SET dmap = dmap | ?2, cmap = cmap | ?4, " \
	  "supplied_ns = max(supplied_ns, ?3) WHERE seq = ?1 AND dmap & ?2 = 0 " \
	  "RETURNING dmap, cmap, count, supplied_ns")                           \
	X(KSA_GONE, "SELECT id FROM ksa_keys WHERE state = 2 AND dmap != 0 "    \
	  "AND dmap != cmap AND supplied_ns < ?1 ORDER BY supplied_ns LIMIT ?2") \
	X(KSA_RUN_END, "UPDATE ksa_keys SET state = ?2, supplied_ns = ?3 WHERE seq = ?1") \
	X(KSA_ROW_DELETE, "DELETE FROM ksa_keys WHERE seq = ?1")                \
	X(KSA_UPDATE,                                                           \
	  "UPDATE ksa_keys SET delivered = ?2, state = ?3, supplied_ns = ?4 "   \
	  "WHERE id = ?1")                                                      \
	X(KSA_SET_STATE,                                                        \
	  "UPDATE ksa_keys SET state = ?4, supplied_ns = ?5 "                   \
	  "WHERE seq BETWEEN ?1 AND ?2 AND state = ?3")                         \
	X(KSA_SET_HEAD,                                                         \
	  "UPDATE ksa_keys SET count = ?2, state = ?3, supplied_ns = ?4, "      \
	  "ranges = ?5 WHERE seq = ?1")                                         \
	X(KSA_DATA_TAIL, "INSERT INTO ksa_data (seq, data) "                    \
	  "SELECT ?1, substr(data, ?3) FROM ksa_data WHERE seq = ?2")           \
	X(KSA_DATA_HEAD, "UPDATE ksa_data SET data = substr(data, 1, ?2) "      \
	  "WHERE seq = ?1")                                                     \
	X(KSA_DATA_DELETE, "DELETE FROM ksa_data WHERE seq = "                 \
	  "(SELECT seq FROM ksa_keys WHERE id = ?1)")                           \
	X(KSA_DELETE, "DELETE FROM ksa_keys WHERE id = ?1")                     \
	X(KSA_COUNT_ROUND, "SELECT coalesce(sum(count), 0) FROM ksa_keys "      \
	  "WHERE id BETWEEN ?1 AND ?2")                                         \
	X(KSA_DELETE_ROUND, "DELETE FROM ksa_keys WHERE id BETWEEN ?1 AND ?2")  \
	X(KSA_LIST,                                                             \
	  "SELECT id, peer, master, slave, additional, delivered, size_bits, "  \
	  "level, role, state, created_ns, supplied_ns, source, ranges, seq, "  \
	  "count FROM ksa_keys WHERE peer = ?1 AND state = ?2 AND role = ?3 "   \
	  "AND state IN (1, 4) ORDER BY created_ns, seq") /* the index's condition */ \
	X(KSA_COUNT,                                                            \
	  "SELECT coalesce(sum(count), 0) FROM ksa_keys WHERE state = ?1")      \
	X(KSA_COUNT_GONE, "SELECT state, dmap, cmap FROM ksa_keys WHERE dmap != 0") \
	/* The first ?3 records (by seq, the primary key: no scan of the rest) \
	 * up to ?1, of them the ones made before ?2. */                       \
	X(LC_PRUNE, "DELETE FROM lc WHERE seq IN (SELECT seq FROM lc "          \
	  "WHERE seq <= ?1 ORDER BY seq LIMIT ?3) AND ts_ns < ?2")              \
	/* The oldest supplied first, through ksa_supplied; rows whose bytes   \
	 * are kept (after_supply "preserve") stay. */                         \
	X(KSA_PRUNE,                                                            \
	  "DELETE FROM ksa_keys WHERE seq IN (SELECT seq FROM ksa_keys "        \
	  "WHERE state = 3 AND supplied_ns < ?1 AND NOT EXISTS "                \
	  "(SELECT 1 FROM ksa_data d WHERE d.seq = ksa_keys.seq) "              \
	  "ORDER BY supplied_ns LIMIT ?2) RETURNING id, count, cmap")

enum store_stmt {
#define STORE_STMT_ENUM(name, sql) ST_##name,
	STORE_STMTS(STORE_STMT_ENUM)
#undef STORE_STMT_ENUM
	ST_N_
};

static const char *const store_sql[ST_N_] = {
#define STORE_STMT_SQL(name, sql) sql,
	STORE_STMTS(STORE_STMT_SQL)
#undef STORE_STMT_SQL
};

#define STORE_SP_MAX 8 /* savepoints open at once (qkm_op nests, plus the mark) */

/* A savepoint open on the key-data journal: where the journal stood, and
 * whether the savepoint is its own transaction (none was open). */
struct store_sp {
	size_t pos;
	bool outer;
};

struct qkm_store {
	sqlite3 *db;
	struct kdata *kd;    /* the key data (kdata.h) */
	struct store_sp sp[STORE_SP_MAX];
	int sp_depth;
	size_t mark_pos;
	sqlite3_stmt *st[ST_N_];
	int wal_frames;   /* frames in the WAL after the last commit (wal_hook) */
	int page_size;
	bool deferred;    /* the open transaction is a deferred one (group commit) */
	void (*defer_cb)(int rc, void *arg);
	void *defer_arg;
	/* Per pool (peer, key type) being read: the run of blocks the kernel
	 * was asked to read ahead (pool_ahead). A hint: a stale one costs at
	 * most a read-ahead asked for twice or not at all. */
	struct {
		char peer[QKM_NAME_MAX];
		int key_type;
		int64_t created_ns, id;   /* the last block asked for */
		int64_t from_ns, from_id; /* the block whose read began that run */
	} ahead[STORE_AHEAD_POOLS];
	unsigned ahead_next;
};

/* sqlite3_wal_hook: notes the WAL's size after each commit. Installing it
 * also replaces SQLite's automatic checkpoint, which would otherwise run
 * inside a commit (a 64 MiB copy and fsync on the caller's latency path). */
static int store_on_wal(void *arg, sqlite3 *db, const char *name, int frames)
{
	struct qkm_store *st = arg;
	(void)db;
	if (strcmp(name, "main") == 0)
		st->wal_frames = frames;
	return SQLITE_OK;
}

/* Logs SQLite's message (never blob contents) and maps it to QKM_ESTORE. */
static int store_fail(struct qkm_store *st, const char *what)
{
	log_warnx("store: %s: %s (%d)", what, sqlite3_errmsg(st->db),
		  sqlite3_extended_errcode(st->db));
	return QKM_ESTORE;
}

/* Resets a cached statement and drops its bindings: reset ends its read of
 * the database (a pending statement would hold the WAL against a checkpoint)
 * and clearing drops SQLITE_STATIC pointers into secrets about to be freed. */
static void stmt_done(sqlite3_stmt *s)
{
	sqlite3_reset(s);
	sqlite3_clear_bindings(s);
}

/* Runs a cached statement that returns no rows. */
static int stmt_exec(struct qkm_store *st, enum store_stmt which)
{
	int rc = sqlite3_step(st->st[which]);
	int err = rc == SQLITE_DONE ? 0 : store_fail(st, store_sql[which]);
	stmt_done(st->st[which]);
	return err;
}

static bool in_txn(struct qkm_store *st)
{
	return !sqlite3_get_autocommit(st->db);
}

/* Every multi-statement write runs inside a savepoint: inside the caller's
 * transaction it nests, outside it is its own durable transaction. */
static int sp_begin(struct qkm_store *st)
{
	if (st->sp_depth == STORE_SP_MAX)
		return QKM_ESTATE;
	bool outer = !in_txn(st);
	int err = stmt_exec(st, ST_SAVEPOINT);
	if (!err)
		st->sp[st->sp_depth++] = (struct store_sp){kdata_pos(st->kd), outer};
	return err;
}

/* The key data journal follows SQLite: undone as far as SQLite undid. */
static void kd_undo(struct qkm_store *st, size_t pos)
{
	kdata_undo(st->kd, in_txn(st) ? pos : 0);
}

static int sp_end(struct qkm_store *st, int err)
{
	struct store_sp sp = st->sp[--st->sp_depth];
	/* A savepoint that is its own transaction commits on RELEASE: the key
	 * bytes it wrote must be on disk first. */
	if (err == 0 && sp.outer)
		err = kdata_sync(st->kd);
	if (err == 0) {
		err = stmt_exec(st, ST_RELEASE);
		if (err == 0) {
			if (sp.outer)
				kdata_committed(st->kd);
			return 0;
		}
	}
	/* Either may fail if SQLite already rolled everything back (I/O
	 * error, disk full); then there is nothing left to undo. */
	(void)sqlite3_step(st->st[ST_ROLLBACK_TO]);
	stmt_done(st->st[ST_ROLLBACK_TO]);
	(void)sqlite3_step(st->st[ST_RELEASE]);
	stmt_done(st->st[ST_RELEASE]);
	kd_undo(st, sp.pos);
	return err;
}

/* Runs a PRAGMA that answers one value and copies it as text into out. */
static int pragma_text(struct qkm_store *st, const char *sql, char *out, size_t outsz)
{
	sqlite3_stmt *s = NULL;
	int err = 0;
	out[0] = '\0';
	if (sqlite3_prepare_v2(st->db, sql, -1, &s, NULL) != SQLITE_OK) {
		err = store_fail(st, sql);
		goto out;
	}
	int rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		const unsigned char *t = sqlite3_column_text(s, 0);
		snprintf(out, outsz, "%s", t ? (const char *)t : "");
		rc = sqlite3_step(s);
	}
	if (rc != SQLITE_DONE)
		err = store_fail(st, sql);
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

/* Binds a NUL-terminated string held in a fixed array of size max. */
static int bind_str(sqlite3_stmt *s, int i, const char *str, size_t max)
{
	return sqlite3_bind_text(s, i, str, (int)strnlen(str, max), SQLITE_STATIC);
}

/* Version 6: moves every block's bytes from block_data into the key-data
 * file, inside the upgrade's transaction (the bytes are synced before it
 * commits; a crash before leaves the old file as it was and the new bytes
 * in free space, which the next open wipes). */
static int store_migrate_data(struct qkm_store *st)
{
	sqlite3_stmt *s = NULL, *u = NULL;
	int err = 0, rc;
	if (sqlite3_prepare_v2(st->db, "SELECT b.id, d.data FROM blocks b "
			       "JOIN block_data d ON d.id = b.id", -1, &s, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(st->db, "UPDATE blocks SET data_off = ?2 WHERE id = ?1", -1, &u,
			       NULL) != SQLITE_OK) {
		err = store_fail(st, "migrate key data");
		goto out;
	}
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		uint64_t off;
		const void *p = sqlite3_column_blob(s, 1);
		int len = sqlite3_column_bytes(s, 1);
		if (!p || len <= 0) {
			log_warnx("store: block %lld has no key data", (long long)sqlite3_column_int64(s, 0));
			err = QKM_ESTORE;
			goto out;
		}
		if ((err = kdata_put(st->kd, p, (uint64_t)len, true, &off)))
			goto out;
		sqlite3_bind_int64(u, 1, sqlite3_column_int64(s, 0));
		sqlite3_bind_int64(u, 2, (int64_t)off);
		rc = sqlite3_step(u);
		sqlite3_reset(u);
		if (rc != SQLITE_DONE) {
			err = store_fail(st, "migrate key data");
			goto out;
		}
	}
	if (rc != SQLITE_DONE)
		err = store_fail(st, "migrate key data");
out:
	sqlite3_finalize(s);
	sqlite3_finalize(u);
	if (!err) {
		char n[32];
		if ((err = pragma_text(st, "SELECT count(*) FROM blocks WHERE data_off < 0", n,
				       sizeof(n))))
			return err;
		if (strcmp(n, "0") != 0) {
			log_warnx("store: %s blocks have no key data", n);
			return QKM_ESTORE;
		}
	}
	return err;
}

/* Hands the key-data file every committed block's extent (kdata_recover). */
static int store_recover_data(struct qkm_store *st)
{
	sqlite3_stmt *s = st->st[ST_EXTENTS];
	struct kdata_live *live = NULL;
	size_t n = 0, cap = 0;
	int err = 0, rc;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		if (n == cap) {
			size_t c = cap ? cap * 2 : 256;
			struct kdata_live *l = realloc(live, c * sizeof(*l));
			if (!l) {
				err = QKM_ENOMEM;
				goto out;
			}
			live = l;
			cap = c;
		}
		int64_t off = sqlite3_column_int64(s, 0), len = sqlite3_column_int64(s, 1),
			used = sqlite3_column_int64(s, 2);
		if (len <= 0 || used < 0 || !sqlite3_column_int(s, 3)) {
			log_warnx("store: a block has no key data (%lld+%lld)", (long long)off,
				  (long long)len);
			err = QKM_ESTORE;
			goto out;
		}
		if (off < 0)
			continue; /* its bytes are in small_data */
		live[n++] = (struct kdata_live){(uint64_t)off, (uint64_t)len, (uint64_t)used};
	}
	if (rc != SQLITE_DONE)
		err = store_fail(st, "list extents");
out:
	stmt_done(s);
	if (!err)
		err = kdata_recover(st->kd, live, n);
	free(live);
	return err;
}

/* How a file of version i becomes one of version i + 1 (from 0: the schema
 * created): SQL, and for version 6 the move of key bytes out of SQLite
 * (data), then the SQL that ends it. */
static const struct {
	const char *sql;
	int (*data)(struct qkm_store *st);
	const char *end;
} store_steps[STORE_SCHEMA_VERSION] = {
	{store_schema, NULL, NULL},
	{store_migrate_v2, NULL, NULL},
	{store_migrate_v3, NULL, NULL},
	{store_migrate_v4, NULL, NULL},
	{store_migrate_v5, NULL, NULL},
	{store_migrate_v6, store_migrate_data, store_migrate_v6_end},
	{store_migrate_v7, NULL, NULL},
	{store_migrate_v8, NULL, NULL},
	{store_migrate_v9, NULL, NULL},
	{store_migrate_v10, NULL, NULL},
	{store_migrate_v11, NULL, NULL},
	{store_migrate_v12, NULL, NULL},
};

/* The file's user_version, or -1 if it is not one qkm could have written. */
static int schema_version(struct qkm_store *st, int *ver)
{
	char v[32];
	int err = pragma_text(st, "PRAGMA user_version", v, sizeof(v));
	*ver = -1;
	if (!err && v[0] && strlen(v) < 4 && strspn(v, "0123456789") == strlen(v))
		*ver = atoi(v); /* NOLINT(cert-err34-c): at most 3 digits, checked */
	return err;
}

/* Checks the schema version, creating the schema or bringing an older one
 * up to date in one transaction. The version is read again under the write
 * lock so that two processes opening one new file do not both create it. */
static int store_schema_init(struct qkm_store *st)
{
	char n[32], what[64];
	int ver, err = schema_version(st, &ver);
	if (err)
		return err;
	if (ver < 0 || ver >= STORE_SCHEMA_VERSION)
		goto check;
	if ((err = stmt_exec(st, ST_BEGIN)))
		return err;
	if ((err = schema_version(st, &ver)))
		goto out;
	if (ver == 0) {
		err = pragma_text(st, "SELECT count(*) FROM sqlite_schema", n, sizeof(n));
		if (err)
			goto out;
		if (strcmp(n, "0") != 0) {
			log_warnx("store: file has tables but no qkm schema version");
			err = QKM_EVERSION;
			goto out;
		}
	}
	for (; ver >= 0 && ver < STORE_SCHEMA_VERSION; ver++) {
		if (ver)
			snprintf(what, sizeof(what), "migrate schema to version %d", ver + 1);
		else
			snprintf(what, sizeof(what), "create schema");
		if (sqlite3_exec(st->db, store_steps[ver].sql, NULL, NULL, NULL) != SQLITE_OK) {
			err = store_fail(st, what);
			goto out;
		}
		if (store_steps[ver].data && (err = store_steps[ver].data(st)))
			goto out;
		if (store_steps[ver].end &&
		    sqlite3_exec(st->db, store_steps[ver].end, NULL, NULL, NULL) != SQLITE_OK) {
			err = store_fail(st, what);
			goto out;
		}
	}
	err = qkm_store_commit(st);
out:
	if (err) {
		qkm_store_rollback(st);
		return err;
	}
check:
	if (ver != STORE_SCHEMA_VERSION) {
		char v[32];
		if (pragma_text(st, "PRAGMA user_version", v, sizeof(v)))
			snprintf(v, sizeof(v), "?");
		log_warnx("store: schema version %s, this qkm knows %d", v, STORE_SCHEMA_VERSION);
		return QKM_EVERSION;
	}
	return 0;
}

static int stmts_prepare(struct qkm_store *st, int from, int to)
{
	for (int i = from; i < to; i++)
		if (sqlite3_prepare_v3(st->db, store_sql[i], -1, SQLITE_PREPARE_PERSISTENT,
				       &st->st[i], NULL) != SQLITE_OK)
			return store_fail(st, store_sql[i]);
	return 0;
}

/* --- SQLite's memory --------------------------------------------------------
 * SQLite copies key bytes into memory of its own: the page cache (the pages
 * of block_data and ksa_data), record and cell buffers, the scratch page of
 * a defragmentation, the copies a rebalance makes, lookaside slots. A key
 * deleted from the file was still readable in a core dump of the node from
 * such a copy, freed but not wiped (tests/system/test_secrets.sh). So every
 * block SQLite frees is wiped first. The blocks come from malloc, not from
 * the secure heap: SQLite's page cache and 1 MiB blobs ran the 256 MiB heap
 * out under bench/relay, and the keys themselves then found no room there
 * (every insert failed with "out of memory", relays with "operation not
 * valid in this state"). A 16-byte header holds the size (xSize) and keeps
 * the 8-byte alignment SQLite needs. Process-wide (sqlite3_config): set
 * once, before SQLite's first use, by the first qkm_store_open. */
#define SQLMEM_HDR 16

static void *sqlmem_malloc(int n)
{
	if (n <= 0 || (size_t)n > SIZE_MAX - SQLMEM_HDR)
		return NULL;
	uint8_t *p = malloc((size_t)n + SQLMEM_HDR);
	if (!p)
		return NULL;
	memcpy(p, &(size_t){(size_t)n}, sizeof(size_t));
	return p + SQLMEM_HDR;
}

static int sqlmem_size(void *p)
{
	size_t n = 0;
	if (p)
		memcpy(&n, (uint8_t *)p - SQLMEM_HDR, sizeof(n));
	return (int)n;
}

static void sqlmem_free(void *p)
{
	if (!p)
		return;
	uint8_t *b = (uint8_t *)p - SQLMEM_HDR;
	explicit_bzero(b, (size_t)sqlmem_size(p) + SQLMEM_HDR); /* as qkm_cleanse: vector stores */
	free(b);
}

static void *sqlmem_realloc(void *p, int n)
{
	void *q = sqlmem_malloc(n);
	if (q && p) {
		int old = sqlmem_size(p);
		memcpy(q, p, (size_t)(old < n ? old : n));
		sqlmem_free(p);
	}
	return q;
}

static int sqlmem_roundup(int n) { return n > INT32_MAX - 7 ? n : (n + 7) & ~7; }
static int sqlmem_init(void *arg) { return SQLITE_OK; }
static void sqlmem_shutdown(void *arg) {}

static const sqlite3_mem_methods sqlmem_methods = {
	sqlmem_malloc, sqlmem_free, sqlmem_realloc, sqlmem_size, sqlmem_roundup,
	sqlmem_init, sqlmem_shutdown, NULL,
};

static void sqlmem_setup(void)
{
	/* SQLITE_MISUSE: SQLite was used before (a ledger opened first in the
	 * same process); it keeps its own allocator then. */
	int rc = sqlite3_config(SQLITE_CONFIG_MALLOC, &sqlmem_methods);
	if (rc != SQLITE_OK)
		log_warnx("store: SQLite's memory stays outside the secure heap (%s)",
			  sqlite3_errstr(rc));
}

int qkm_store_open(const char *path, struct qkm_store **out)
{
	static pthread_once_t sqlmem_once = PTHREAD_ONCE_INIT;
	(void)pthread_once(&sqlmem_once, sqlmem_setup);
	struct qkm_store *st = NULL;
	char v[32];
	int err = 0;

	*out = NULL;
	if (!path || !*path)
		return QKM_EINVAL;
	if ((err = qkm_private_file_create(path, "store")))
		return err;
	st = calloc(1, sizeof(*st));
	if (!st)
		return QKM_ENOMEM;
	/* NOMUTEX: a store is used by one thread at a time (its cached
	 * statements are not shareable anyway). */
	int rc = sqlite3_open_v2(path, &st->db,
				 SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL);
	if (rc != SQLITE_OK) {
		err = st->db ? store_fail(st, path) : QKM_ENOMEM;
		goto out;
	}
	sqlite3_extended_result_codes(st->db, 1);
	sqlite3_busy_timeout(st->db, STORE_BUSY_MS);

	/* page_size first: it only takes effect on a fresh file and is fixed
	 * once the file is in WAL mode. 4 KiB pages: key supply commits many
	 * small changes (a KSA key, a used offset, a zeroed range) and each
	 * changed page is written whole to the WAL; with 64 KiB pages a 32-byte
	 * key cost ~140 KiB of writes. Large blocks pay some per-page work. */
	static const char *const setup[] = {
		"PRAGMA page_size = 4096",
		"PRAGMA synchronous = FULL",
		"PRAGMA foreign_keys = ON",
		"PRAGMA temp_store = MEMORY", /* sorts never spill to temp files */
		"PRAGMA trusted_schema = OFF",
		"PRAGMA cache_size = -32768", /* 32 MiB: a batch fits unspilled */
	};
	for (size_t i = 0; i < sizeof(setup) / sizeof(setup[0]); i++)
		if ((err = pragma_text(st, setup[i], v, sizeof(v))))
			goto out;
	/* These two answer with the mode in force; insist on it, since the
	 * deletion promise rests on both. */
	if ((err = pragma_text(st, "PRAGMA journal_mode = WAL", v, sizeof(v))))
		goto out;
	if (strcmp(v, "wal") != 0) {
		log_warnx("store: %s: cannot use WAL (journal_mode %s)", path, v);
		err = QKM_ESTORE;
		goto out;
	}
	if ((err = pragma_text(st, "PRAGMA secure_delete = ON", v, sizeof(v))))
		goto out;
	if (strcmp(v, "1") != 0) {
		log_warnx("store: %s: cannot enable secure_delete", path);
		err = QKM_ESTORE;
		goto out;
	}
	if ((err = pragma_text(st, "PRAGMA page_size", v, sizeof(v))))
		goto out;
	st->page_size = atoi(v); /* NOLINT(cert-err34-c): SQLite's own decimal */
	/* No automatic checkpoints: the owner calls qkm_store_checkpoint()
	 * (TRUNCATE) from its timer, watching qkm_store_wal_bytes(). */
	sqlite3_wal_autocheckpoint(st->db, 0);
	sqlite3_wal_hook(st->db, store_on_wal, st);

	{
		char kpath[4096];
		if ((size_t)snprintf(kpath, sizeof(kpath), "%s" STORE_KEYS_SUFFIX, path) >= sizeof(kpath)) {
			err = QKM_EINVAL;
			goto out;
		}
		if ((err = kdata_open(kpath, &st->kd)))
			goto out;
	}
	/* Statements on tables that do not exist yet cannot be prepared:
	 * transaction control first, the rest once the schema is there. */
	if ((err = stmts_prepare(st, 0, ST_ROLLBACK_TO + 1)))
		goto out;
	if ((err = store_schema_init(st)))
		goto out;
	if ((err = stmts_prepare(st, ST_ROLLBACK_TO + 1, ST_N_)))
		goto out;
	if ((err = store_recover_data(st)))
		goto out;
	*out = st;
	st = NULL;
out:
	qkm_store_close(st);
	return err;
}

/* Commits the open deferred transaction, and any its end callback opened
 * in turn (a relay it let go may start another: relay.c's pool event). */
static void end_deferred_all(struct qkm_store *st)
{
	while (st->deferred)
		(void)qkm_store_end_deferred(st);
}

int qkm_store_remove(const char *path)
{
	static const char *const suffixes[] = {"", "-wal", "-shm", "-journal", STORE_KEYS_SUFFIX};
	int err = 0, saved = 0;
	for (size_t i = 0; i < sizeof(suffixes) / sizeof(suffixes[0]); i++) {
		char p[4096];
		if ((size_t)snprintf(p, sizeof(p), "%s%s", path, suffixes[i]) >= sizeof(p))
			return QKM_EINVAL;
		if (unlink(p) != 0 && errno != ENOENT && !err) {
			err = QKM_EIO;
			saved = errno;
		}
	}
	if (err)
		errno = saved;
	return err;
}

void qkm_store_close(struct qkm_store *st)
{
	if (!st)
		return;
	if (st->db)
		end_deferred_all(st);
	if (st->db && in_txn(st))
		qkm_store_rollback(st);
	for (int i = 0; i < ST_N_; i++)
		sqlite3_finalize(st->st[i]);
	/* The last connection to close checkpoints and removes the WAL. */
	if (sqlite3_close(st->db) != SQLITE_OK)
		log_warnx("store: close: %s", sqlite3_errmsg(st->db));
	kdata_close(st->kd);
	free(st);
}

int qkm_store_begin(struct qkm_store *st)
{
	end_deferred_all(st);
	if (in_txn(st))
		return QKM_ESTATE;
	return stmt_exec(st, ST_BEGIN);
}

int qkm_store_begin_deferred(struct qkm_store *st, void (*on_end)(int rc, void *arg), void *arg)
{
	if (st->deferred)
		return 0;
	if (in_txn(st))
		return QKM_ESTATE;
	int err = stmt_exec(st, ST_BEGIN);
	if (!err) {
		st->deferred = true;
		st->defer_cb = on_end;
		st->defer_arg = arg;
	}
	return err;
}

int qkm_store_end_deferred(struct qkm_store *st)
{
	if (!st->deferred)
		return 0;
	st->deferred = false;
	int err = qkm_store_commit(st);
	if (st->defer_cb)
		st->defer_cb(err, st->defer_arg);
	return err;
}

bool qkm_store_in_deferred(const struct qkm_store *st) { return st->deferred; }

int qkm_store_mark(struct qkm_store *st)
{
	if (!in_txn(st))
		return QKM_ESTATE;
	st->mark_pos = kdata_pos(st->kd);
	return stmt_exec(st, ST_MARK);
}

void qkm_store_unmark(struct qkm_store *st, bool keep)
{
	if (keep && stmt_exec(st, ST_UNMARK) == 0)
		return;
	/* As sp_end: after an I/O error SQLite may have undone it all already. */
	(void)sqlite3_step(st->st[ST_UNDO_MARK]);
	stmt_done(st->st[ST_UNDO_MARK]);
	(void)sqlite3_step(st->st[ST_UNMARK]);
	stmt_done(st->st[ST_UNMARK]);
	kd_undo(st, st->mark_pos);
}

int qkm_store_commit(struct qkm_store *st)
{
	if (!in_txn(st))
		return QKM_ESTATE;
	/* Key bytes first, then the metadata that names them. */
	int err = kdata_sync(st->kd);
	if (!err)
		err = stmt_exec(st, ST_COMMIT);
	/* A failed commit leaves nothing half-open: the caller treats the
	 * whole batch as not stored. */
	if (err)
		qkm_store_rollback(st);
	else
		kdata_committed(st->kd);
	return err;
}

void qkm_store_rollback(struct qkm_store *st)
{
	if (in_txn(st) && stmt_exec(st, ST_ROLLBACK))
		log_warnx("store: rollback failed");
	if (!in_txn(st) && st->kd)
		kdata_undo(st->kd, 0);
}

/* A batch ID names keys by replacing its last 4 bytes, so they must be 0. */
static bool batch_id_valid(const struct qkm_id *id)
{
	return !(id->b[12] | id->b[13] | id->b[14] | id->b[15]);
}

static bool opt_name_valid(const char *s)
{
	return s[0] == '\0' || qkm_name_valid(s);
}

int qkm_store_block_put(struct qkm_store *st, struct qkm_block *b)
{
	if (!b->data || b->count == 0 || b->unit_bytes == 0 ||
	    (uint64_t)b->used >= (uint64_t)b->count * b->unit_bytes ||
	    (uint64_t)b->count * b->unit_bytes != b->data->len ||
	    b->data->len > INT32_MAX || b->first_index > UINT32_MAX - b->count ||
	    !batch_id_valid(&b->batch_id) || !qkm_name_valid(b->peer) ||
	    !opt_name_valid(b->qkd_module_id) || !opt_name_valid(b->matching_qkd_module_id) ||
	    (b->pool_kind != QKM_POOL_LINK && b->pool_kind != QKM_POOL_RELAY) ||
	    (b->state != QKM_BLOCK_PENDING && b->state != QKM_BLOCK_READY) ||
	    (unsigned)b->key_type > QKM_KT_DEC ||
	    ((unsigned)b->level != 0 && b->level != QKM_BLOCK_ITS &&
	     b->level != QKM_BLOCK_COMPUTATIONAL))
		return QKM_EINVAL;

	sqlite3_stmt *s = st->st[ST_BLOCK_INSERT];
	bool small = b->data->len <= STORE_SMALL_MAX;
	uint64_t off = (uint64_t)-1;
	int err = sp_begin(st);
	if (err)
		return err;
	/* The key bytes go from the secure heap straight to the key-data
	 * file, or (small) to SQLite, whose memory is wiped as it is freed;
	 * no copy of ours to wipe. Undone with the savepoint. */
	if (!small &&
	    (err = kdata_put(st->kd, b->data->p, b->data->len, b->write_around, &off)))
		goto out;
	bind_str(s, 1, b->peer, sizeof(b->peer));
	sqlite3_bind_int(s, 2, (int)b->pool_kind);
	sqlite3_bind_blob(s, 3, b->batch_id.b, QKM_ID_LEN, SQLITE_STATIC);
	sqlite3_bind_int64(s, 4, b->first_index);
	sqlite3_bind_int64(s, 5, b->count);
	sqlite3_bind_int64(s, 6, b->unit_bytes);
	sqlite3_bind_int64(s, 7, b->used);
	sqlite3_bind_int(s, 8, (int)b->key_type);
	sqlite3_bind_int(s, 9, (int)b->state);
	sqlite3_bind_int64(s, 10, (int64_t)b->created_ns);
	bind_str(s, 11, b->qkd_module_id, sizeof(b->qkd_module_id));
	bind_str(s, 12, b->matching_qkd_module_id, sizeof(b->matching_qkd_module_id));
	sqlite3_bind_int(s, 13, b->level ? (int)b->level : QKM_BLOCK_ITS);
	sqlite3_bind_int64(s, 14, (int64_t)off);
	if (sqlite3_step(s) != SQLITE_DONE) {
		if (sqlite3_extended_errcode(st->db) == SQLITE_CONSTRAINT_UNIQUE)
			err = QKM_EEXIST;
		else
			err = store_fail(st, "insert block");
		goto out;
	}
	b->rowid = sqlite3_last_insert_rowid(st->db);
	if (small) {
		sqlite3_stmt *d = st->st[ST_SMALL_INSERT];
		sqlite3_bind_int64(d, 1, b->rowid);
		sqlite3_bind_blob(d, 2, b->data->p, (int)b->data->len, SQLITE_STATIC);
		err = stmt_exec(st, ST_SMALL_INSERT);
	}
out:
	stmt_done(st->st[ST_BLOCK_INSERT]);
	return sp_end(st, err);
}

int qkm_store_batch_set_state(struct qkm_store *st, const struct qkm_id *batch_id,
			      enum qkm_block_state state)
{
	if (state != QKM_BLOCK_PENDING && state != QKM_BLOCK_READY)
		return QKM_EINVAL;
	sqlite3_stmt *s = st->st[ST_BATCH_SET_STATE];
	sqlite3_bind_blob(s, 1, batch_id->b, QKM_ID_LEN, SQLITE_STATIC);
	sqlite3_bind_int(s, 2, (int)state);
	int err = stmt_exec(st, ST_BATCH_SET_STATE);
	if (err == 0 && sqlite3_changes(st->db) == 0)
		err = QKM_ENOTFOUND;
	return err;
}

int qkm_store_batch_set_level(struct qkm_store *st, const struct qkm_id *batch_id,
			      enum qkm_block_level level)
{
	if (level != QKM_BLOCK_ITS && level != QKM_BLOCK_COMPUTATIONAL)
		return QKM_EINVAL;
	sqlite3_stmt *s = st->st[ST_BATCH_SET_LEVEL];
	sqlite3_bind_blob(s, 1, batch_id->b, QKM_ID_LEN, SQLITE_STATIC);
	sqlite3_bind_int(s, 2, (int)level);
	int err = stmt_exec(st, ST_BATCH_SET_LEVEL);
	if (err == 0 && sqlite3_changes(st->db) == 0)
		err = QKM_ENOTFOUND;
	return err;
}

int qkm_store_batch_state(struct qkm_store *st, const struct qkm_id *batch_id,
			  enum qkm_block_state *state)
{
	uint64_t bytes;
	return qkm_store_batch_info(st, batch_id, state, &bytes);
}

int qkm_store_batch_info(struct qkm_store *st, const struct qkm_id *batch_id,
			 enum qkm_block_state *state, uint64_t *bytes)
{
	sqlite3_stmt *s = st->st[ST_BATCH_STATE];
	int err = 0;
	*state = 0;
	*bytes = 0;
	sqlite3_bind_blob(s, 1, batch_id->b, QKM_ID_LEN, SQLITE_STATIC);
	int rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		*state = (enum qkm_block_state)sqlite3_column_int(s, 0);
		*bytes = (uint64_t)sqlite3_column_int64(s, 1);
	}
	else if (rc != SQLITE_DONE)
		err = store_fail(st, "batch state");
	stmt_done(s);
	return err;
}

/* A block leaves: its unused bytes [data_off + used, data_off + size) are
 * wiped and its extent freed once the transaction commits (bytes below
 * used were wiped when they were consumed). */
static int block_gone_later(struct qkm_store *st, int64_t data_off, int64_t size, int64_t used)
{
	if (data_off < 0)
		return 0; /* small_data's row goes with the block's (ON DELETE CASCADE) */
	int err = kdata_wipe_later(st->kd, (uint64_t)(data_off + used), (uint64_t)(size - used));
	return err ? err : kdata_free_later(st->kd, (uint64_t)data_off, (uint64_t)size);
}

int qkm_store_batch_delete(struct qkm_store *st, const struct qkm_id *batch_id)
{
	sqlite3_stmt *s = st->st[ST_BATCH_EXTENTS];
	int err = sp_begin(st), rc;
	if (err)
		return err;
	sqlite3_bind_blob(s, 1, batch_id->b, QKM_ID_LEN, SQLITE_STATIC);
	while ((rc = sqlite3_step(s)) == SQLITE_ROW && !err)
		err = block_gone_later(st, sqlite3_column_int64(s, 0), sqlite3_column_int64(s, 1),
				       sqlite3_column_int64(s, 2));
	if (!err && rc != SQLITE_DONE)
		err = store_fail(st, "batch extents");
	stmt_done(s);
	if (!err) {
		sqlite3_bind_blob(st->st[ST_BATCH_DELETE], 1, batch_id->b, QKM_ID_LEN,
				  SQLITE_STATIC);
		err = stmt_exec(st, ST_BATCH_DELETE);
		if (err == 0 && sqlite3_changes(st->db) == 0)
			err = QKM_ENOTFOUND;
	}
	return sp_end(st, err);
}

/* Overwrites bytes [off, off + len) of a small block's data with zeros, in
 * the open transaction. */
static int small_wipe(struct qkm_store *st, int64_t rowid, int off, int len)
{
	static const uint8_t zeros[STORE_SMALL_MAX];
	sqlite3_blob *h = NULL;
	int rc = sqlite3_blob_open(st->db, "main", "small_data", "data", rowid, 1, &h);
	if (rc == SQLITE_OK)
		rc = sqlite3_blob_write(h, zeros, len, off);
	int err = rc == SQLITE_OK ? 0 : store_fail(st, "wipe small block");
	if (sqlite3_blob_close(h) != SQLITE_OK && !err)
		err = store_fail(st, "wipe small block");
	return err;
}

/* Adds to the consumed_bytes counter of peer's pool (qkm_store_pool_consumed). */
static int consumed_add(struct qkm_store *st, const char *peer, int64_t delta)
{
	char name[QKM_NAME_MAX + 16];
	snprintf(name, sizeof(name), "consumed_bytes:%s", peer);
	return qkm_store_counter_add(st, name, delta);
}

int qkm_store_block_set_used(struct qkm_store *st, int64_t rowid, uint32_t used)
{
	sqlite3_stmt *s = st->st[ST_BLOCK_USE_GET];
	int64_t count, unit, old, data_off;
	char peer[QKM_NAME_MAX];
	int err = sp_begin(st);
	if (err)
		return err;
	sqlite3_bind_int64(s, 1, rowid);
	int rc = sqlite3_step(s);
	if (rc == SQLITE_DONE) {
		err = QKM_ENOTFOUND;
		goto out;
	}
	if (rc != SQLITE_ROW) {
		err = store_fail(st, "block use");
		goto out;
	}
	count = sqlite3_column_int64(s, 0);
	unit = sqlite3_column_int64(s, 1);
	old = sqlite3_column_int64(s, 2);
	const unsigned char *pt = sqlite3_column_text(s, 3);
	snprintf(peer, sizeof(peer), "%s", pt ? (const char *)pt : "");
	data_off = sqlite3_column_int64(s, 4);
	stmt_done(s);
	/* Consumption only grows: a consumed byte never becomes usable again. */
	if (used < old || used > count * unit) {
		err = QKM_EINVAL;
		goto out;
	}
	if (used == old)
		goto out;
	/* In the same savepoint: the count moves with the consumption, or
	 * neither does. */
	if ((err = consumed_add(st, peer, (int64_t)used - old)))
		goto out;
	if (used == count * unit) {
		if ((err = block_gone_later(st, data_off, count * unit, old)))
			goto out;
		sqlite3_bind_int64(st->st[ST_BLOCK_DELETE], 1, rowid);
		err = stmt_exec(st, ST_BLOCK_DELETE);
		goto out;
	}
	/* The consumed bytes are wiped in place once this commits (in
	 * small_data: now, undone with the savepoint). */
	if (data_off < 0)
		err = small_wipe(st, rowid, (int)old, (int)(used - old));
	else
		err = kdata_wipe_later(st->kd, (uint64_t)(data_off + old), (uint64_t)used - old);
	if (err)
		goto out;
	sqlite3_bind_int64(st->st[ST_BLOCK_USE_SET], 1, rowid);
	sqlite3_bind_int64(st->st[ST_BLOCK_USE_SET], 2, used);
	err = stmt_exec(st, ST_BLOCK_USE_SET);
out:
	stmt_done(s);
	return sp_end(st, err);
}

static bool block_exists(struct qkm_store *st, int64_t rowid)
{
	sqlite3_stmt *s = st->st[ST_BLOCK_USE_GET];
	sqlite3_bind_int64(s, 1, rowid);
	bool yes = sqlite3_step(s) == SQLITE_ROW;
	stmt_done(s);
	return yes;
}

static int block_read(struct qkm_store *st, int64_t rowid, int64_t data_off, uint32_t off,
		      uint32_t len, uint8_t *out);

/* Loads a block's data into a fresh secret. */
static int block_load_data(struct qkm_store *st, struct qkm_block *b, int64_t data_off)
{
	size_t len = (size_t)b->count * b->unit_bytes;
	if (!(b->data = qkm_secret_new(len)))
		return QKM_ENOMEM;
	int err = block_read(st, b->rowid, data_off, 0, (uint32_t)len, b->data->p);
	if (err) {
		qkm_secret_free(b->data);
		b->data = NULL;
	}
	return err;
}

/* Steps s (bound by the caller), calling fn for each block row. */
static int blocks_walk(struct qkm_store *st, sqlite3_stmt *s, bool with_data, qkm_store_block_fn fn,
		       void *arg)
{
	struct qkm_block b;
	int err = 0, rc;
	memset(&b, 0, sizeof(b));
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		memset(&b, 0, sizeof(b));
		b.rowid = sqlite3_column_int64(s, 0);
		col_text(s, 1, b.peer, sizeof(b.peer));
		b.pool_kind = (enum qkm_pool_kind)sqlite3_column_int(s, 2);
		if (sqlite3_column_bytes(s, 3) == QKM_ID_LEN)
			memcpy(b.batch_id.b, sqlite3_column_blob(s, 3), QKM_ID_LEN);
		b.first_index = (uint32_t)sqlite3_column_int64(s, 4);
		b.count = (uint32_t)sqlite3_column_int64(s, 5);
		b.unit_bytes = (uint32_t)sqlite3_column_int64(s, 6);
		b.used = (uint32_t)sqlite3_column_int64(s, 7);
		b.key_type = (enum qkm_key_type)sqlite3_column_int(s, 8);
		b.state = (enum qkm_block_state)sqlite3_column_int(s, 9);
		b.created_ns = (uint64_t)sqlite3_column_int64(s, 10);
		col_text(s, 11, b.qkd_module_id, sizeof(b.qkd_module_id));
		col_text(s, 12, b.matching_qkd_module_id, sizeof(b.matching_qkd_module_id));
		b.level = (enum qkm_block_level)sqlite3_column_int(s, 13);
		if (with_data) {
			/* Deleted by the callback earlier in this walk: its
			 * bytes are still in the file until the commit. */
			if (!block_exists(st, b.rowid))
				continue;
			if ((err = block_load_data(st, &b, sqlite3_column_int64(s, 14))))
				goto out;
		}
		err = fn(&b, arg);
		qkm_secret_free(b.data);
		b.data = NULL;
		if (err)
			goto out;
	}
	if (rc != SQLITE_DONE)
		err = store_fail(st, "list blocks");
out:
	qkm_secret_free(b.data);
	stmt_done(s);
	return err;
}

int qkm_store_blocks(struct qkm_store *st, const char *peer, unsigned state_mask,
		     bool with_data, qkm_store_block_fn fn, void *arg)
{
	sqlite3_stmt *s = st->st[ST_BLOCKS];
	/* The cached statement cannot serve a walk nested in its own callback. */
	if (sqlite3_stmt_busy(s))
		return QKM_ESTATE;
	bind_str(s, 1, peer, QKM_NAME_MAX);
	sqlite3_bind_int64(s, 2, state_mask);
	return blocks_walk(st, s, with_data, fn, arg);
}

int qkm_store_blocks_range(struct qkm_store *st, const char *peer, const struct qkm_block_pos *after,
			   const struct qkm_block_pos *upto, bool with_data, qkm_store_block_fn fn,
			   void *arg)
{
	static const struct qkm_id lowest, highest = {
		.b = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
		      0xff, 0xff, 0xff}};
	sqlite3_stmt *s = st->st[ST_BLOCKS_RANGE];
	if (sqlite3_stmt_busy(s))
		return QKM_ESTATE;
	bind_str(s, 1, peer, QKM_NAME_MAX);
	/* No bound: below every block (first indexes are >= 0), or above. */
	sqlite3_bind_blob(s, 2, after ? after->batch.b : lowest.b, QKM_ID_LEN, SQLITE_STATIC);
	sqlite3_bind_int64(s, 3, after ? (int64_t)after->first : -1);
	sqlite3_bind_blob(s, 4, upto ? upto->batch.b : highest.b, QKM_ID_LEN, SQLITE_STATIC);
	sqlite3_bind_int64(s, 5, upto ? (int64_t)upto->first : INT64_MAX);
	return blocks_walk(st, s, with_data, fn, arg);
}

int qkm_store_pool_stats(struct qkm_store *st, const char *peer, struct qkm_pool_stats *out)
{
	sqlite3_stmt *s = st->st[ST_POOL_STATS];
	int err = 0;
	memset(out, 0, sizeof(*out));
	bind_str(s, 1, peer, QKM_NAME_MAX);
	if (sqlite3_step(s) == SQLITE_ROW) {
		out->keys = (uint64_t)sqlite3_column_int64(s, 0);
		out->bytes = (uint64_t)sqlite3_column_int64(s, 1);
		out->enc_bytes = (uint64_t)sqlite3_column_int64(s, 2);
		out->dec_bytes = (uint64_t)sqlite3_column_int64(s, 3);
		out->pending_keys = (uint64_t)sqlite3_column_int64(s, 4);
		out->enc_its_bytes = (uint64_t)sqlite3_column_int64(s, 5);
	} else {
		err = store_fail(st, "pool stats");
	}
	stmt_done(s);
	return err;
}

int qkm_store_record(struct qkm_store *st, struct qkm_lc_event *ev)
{
	sqlite3_stmt *s = st->st[ST_LC_INSERT];
	if (ev->ts_ns == 0)
		ev->ts_ns = qkm_now_ns();
	sqlite3_bind_int64(s, 1, (int64_t)ev->ts_ns);
	bind_str(s, 2, ev->event, sizeof(ev->event));
	bind_str(s, 3, ev->key_kind, sizeof(ev->key_kind));
	bind_str(s, 4, ev->key_id, sizeof(ev->key_id));
	bind_str(s, 5, ev->peer, sizeof(ev->peer));
	bind_str(s, 6, ev->detail, sizeof(ev->detail));
	int err = stmt_exec(st, ST_LC_INSERT);
	if (err == 0)
		ev->seq = sqlite3_last_insert_rowid(st->db);
	return err;
}

int qkm_store_records(struct qkm_store *st, int64_t after_seq, unsigned limit,
		      qkm_store_record_fn fn, void *arg)
{
	sqlite3_stmt *s = st->st[ST_LC_LIST];
	struct qkm_lc_event ev;
	int err = 0, rc;

	if (sqlite3_stmt_busy(s))
		return QKM_ESTATE;
	sqlite3_bind_int64(s, 1, after_seq);
	sqlite3_bind_int64(s, 2, limit ? (int64_t)limit : -1);
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		memset(&ev, 0, sizeof(ev));
		ev.seq = sqlite3_column_int64(s, 0);
		ev.ts_ns = (uint64_t)sqlite3_column_int64(s, 1);
		col_text(s, 2, ev.event, sizeof(ev.event));
		col_text(s, 3, ev.key_kind, sizeof(ev.key_kind));
		col_text(s, 4, ev.key_id, sizeof(ev.key_id));
		col_text(s, 5, ev.peer, sizeof(ev.peer));
		col_text(s, 6, ev.detail, sizeof(ev.detail));
		if ((err = fn(&ev, arg)))
			goto out;
	}
	if (rc != SQLITE_DONE)
		err = store_fail(st, "list records");
out:
	stmt_done(s);
	return err;
}

int qkm_store_pool_consumed(struct qkm_store *st, const char *peer, uint64_t *bytes)
{
	char name[QKM_NAME_MAX + 16];
	int64_t v = 0;
	snprintf(name, sizeof(name), "consumed_bytes:%s", peer);
	int err = qkm_store_counter_get(st, name, &v);
	*bytes = v > 0 ? (uint64_t)v : 0;
	return err;
}

int qkm_store_counter_add(struct qkm_store *st, const char *name, int64_t delta)
{
	if (!name || !*name)
		return QKM_EINVAL;
	sqlite3_stmt *s = st->st[ST_COUNTER_ADD];
	sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 2, delta);
	return stmt_exec(st, ST_COUNTER_ADD);
}

int qkm_store_counter_get(struct qkm_store *st, const char *name, int64_t *v)
{
	sqlite3_stmt *s = st->st[ST_COUNTER_GET];
	int err = 0;
	*v = 0;
	if (!name || !*name)
		return QKM_EINVAL;
	sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
	int rc = sqlite3_step(s);
	if (rc == SQLITE_ROW)
		*v = sqlite3_column_int64(s, 0);
	else if (rc != SQLITE_DONE)
		err = store_fail(st, "counter");
	stmt_done(s);
	return err;
}

int qkm_store_counter_raise(struct qkm_store *st, const char *name, int64_t v)
{
	int64_t old = 0;
	int err = qkm_store_counter_get(st, name, &old);
	if (!err && v > old)
		err = qkm_store_counter_add(st, name, v - old);
	return err;
}

int qkm_store_counters(struct qkm_store *st, const char *prefix, qkm_store_counter_fn fn,
		       void *arg)
{
	if (!prefix || !fn)
		return QKM_EINVAL;
	sqlite3_stmt *s = st->st[ST_COUNTER_LIST];
	int rc, err = 0;
	sqlite3_bind_text(s, 1, prefix, -1, SQLITE_STATIC);
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		const char *name = (const char *)sqlite3_column_text(s, 0);
		if (name && (err = fn(name, sqlite3_column_int64(s, 1), arg)))
			goto out;
	}
	if (rc != SQLITE_DONE)
		err = store_fail(st, "list counters");
out:
	stmt_done(s);
	return err;
}

static int qkd_bind(struct qkm_store *st, enum store_stmt which, const char *link,
		    const char *qkd_id)
{
	if (!link || !*link || !qkd_id || !*qkd_id)
		return QKM_EINVAL;
	sqlite3_bind_text(st->st[which], 1, link, -1, SQLITE_STATIC);
	sqlite3_bind_text(st->st[which], 2, qkd_id, -1, SQLITE_STATIC);
	return 0;
}

int qkm_store_qkd_put(struct qkm_store *st, const char *link, const char *qkd_id,
		      uint64_t now_ns)
{
	int err = qkd_bind(st, ST_QKD_PUT, link, qkd_id);
	if (err)
		return err;
	sqlite3_bind_int64(st->st[ST_QKD_PUT], 3, (int64_t)now_ns);
	int rc = sqlite3_step(st->st[ST_QKD_PUT]);
	if ((rc & 0xff) == SQLITE_CONSTRAINT)
		err = QKM_EEXIST;
	else if (rc != SQLITE_DONE)
		err = store_fail(st, "remember a QKD-key ID");
	stmt_done(st->st[ST_QKD_PUT]);
	return err;
}

int qkm_store_qkd_held(struct qkm_store *st, const char *link, const char *qkd_id, bool *held)
{
	*held = false;
	int err = qkd_bind(st, ST_QKD_HELD, link, qkd_id);
	if (err)
		return err;
	int rc = sqlite3_step(st->st[ST_QKD_HELD]);
	if (rc == SQLITE_ROW)
		*held = true;
	else if (rc != SQLITE_DONE)
		err = store_fail(st, "look a QKD-key ID up");
	stmt_done(st->st[ST_QKD_HELD]);
	return err;
}

int qkm_store_qkd_forget(struct qkm_store *st, const char *link, const char *qkd_id)
{
	int err = qkd_bind(st, ST_QKD_FORGET, link, qkd_id);
	return err ? err : stmt_exec(st, ST_QKD_FORGET);
}

int qkm_store_checkpoint(struct qkm_store *st)
{
	int nlog = 0, nckpt = 0;
	/* Inside a transaction the WAL cannot be reset: the caller's own
	 * uncommitted frames are in it. A deferred one is committed first. */
	end_deferred_all(st);
	if (in_txn(st))
		return QKM_ESTATE;
	int rc = sqlite3_wal_checkpoint_v2(st->db, "main", SQLITE_CHECKPOINT_TRUNCATE,
					   &nlog, &nckpt);
	if (rc == SQLITE_BUSY) {
		log_warnx("store: checkpoint incomplete (%d of %d frames): readers busy",
			  nckpt, nlog);
		return QKM_EAGAIN;
	}
	if (rc != SQLITE_OK)
		return store_fail(st, "checkpoint");
	st->wal_frames = 0;
	/* And the wipes of the key-data file are on disk. */
	return kdata_flush(st->kd);
}

int qkm_store_copy(struct qkm_store *dst, struct qkm_store *src)
{
	if (dst == src || dst->deferred || src->deferred || in_txn(dst) || in_txn(src))
		return QKM_ESTATE;
	sqlite3_backup *b = sqlite3_backup_init(dst->db, "main", src->db, "main");
	if (!b)
		return store_fail(dst, "copy");
	int rc = sqlite3_backup_step(b, -1);
	/* finish reports what went wrong in step, if anything. */
	if (sqlite3_backup_finish(b) != SQLITE_OK || rc != SQLITE_DONE)
		return store_fail(dst, "copy");
	/* The key data follows the metadata that names it. The copy bumped
	 * dst's schema cookie: its cached statements are prepared again as
	 * they are next used (the first, in store_recover_data, reloads the
	 * schema, which writes to the WAL: checkpoint last). */
	int err = kdata_copy(dst->kd, src->kd);
	if (!err)
		err = store_recover_data(dst);
	return err ? err : qkm_store_checkpoint(dst);
}

uint64_t qkm_store_wal_bytes(const struct qkm_store *st)
{
	/* Each WAL frame is a 24-byte header and one page. */
	return (uint64_t)st->wal_frames * ((uint64_t)st->page_size + 24);
}

/* The size of path + suffix into *out (0 if it does not exist). */
static int file_bytes(const char *path, const char *suffix, uint64_t *out)
{
	char p[4096];
	struct stat sb;
	*out = 0;
	if ((size_t)snprintf(p, sizeof(p), "%s%s", path, suffix) >= sizeof(p))
		return QKM_EINVAL;
	if (stat(p, &sb) == 0)
		*out = (uint64_t)sb.st_size;
	else if (errno != ENOENT)
		return QKM_EIO;
	return 0;
}

int qkm_store_disk_bytes(struct qkm_store *st, uint64_t *db, uint64_t *wal, uint64_t *keys)
{
	const char *path = sqlite3_db_filename(st->db, "main");
	*db = *wal = *keys = 0;
	if (!path || !path[0])
		return QKM_EINVAL;
	int err = file_bytes(path, "", db);
	if (!err)
		err = file_bytes(path, "-wal", wal);
	if (!err)
		err = file_bytes(path, STORE_KEYS_SUFFIX, keys);
	return err;
}

/* ---- key draws and KSA keys ---------------------------------------------- */

/* Reads bytes [off, off + len) of block rowid's data (at data_off in the
 * key-data file, or in small_data) into out. */
static int block_read(struct qkm_store *st, int64_t rowid, int64_t data_off, uint32_t off,
		      uint32_t len, uint8_t *out)
{
	if (data_off >= 0)
		return kdata_read(st->kd, (uint64_t)data_off + off, out, len);
	sqlite3_stmt *s = st->st[ST_SMALL_GET];
	int err = 0;
	sqlite3_bind_int64(s, 1, rowid);
	int rc = sqlite3_step(s);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		err = store_fail(st, "read small block");
	else if (rc == SQLITE_DONE ||
		 (uint64_t)sqlite3_column_bytes(s, 0) < (uint64_t)off + len) {
		log_warnx("store: block %lld: key data missing or short", (long long)rowid);
		err = QKM_ESTORE;
	}
	else
		memcpy(out, (const uint8_t *)sqlite3_column_blob(s, 0) + off, len);
	stmt_done(s);
	return err;
}

/* Block bytes [from, to) a reader will want soon, asked of the kernel now.
 * Acquisition writes its blocks around the page cache, so a relay that
 * reads link key a piece at a time (64 KiB, say) finds each piece cold:
 * 100-130 us a read on the development VM's disk, against 6 us from the
 * cache. The first read of a block asks for the rest of it, and a pool
 * read also for the next block, so the disk works while the relay does. */
static void block_ahead(struct qkm_store *st, int64_t data_off, uint64_t from, uint64_t to)
{
	if (data_off >= 0 && to > from)
		kdata_read_ahead(st->kd, (uint64_t)data_off + from, to - from);
}

/* Whether block (c1, i1) comes before (c2, i2) in pool order. */
static bool pool_before(int64_t c1, int64_t i1, int64_t c2, int64_t i2)
{
	return c1 < c2 || (c1 == c2 && i1 < i2);
}

/* After the first read, of `len` bytes, of the block (created_ns, id; its
 * bytes at data_off, size of them) of the pool (peer, key_type; its_only:
 * ITS blocks only, as the reader takes them): asks the kernel for the rest
 * of the block and the next blocks' unused bytes, up to STORE_AHEAD_BYTES
 * past the block in all, skipping those asked for already. Both
 * ends of a link consume their copies in the same order, pool order, so
 * this serves the receiver of a relay hop (reading by ID) as well as the
 * sender (qkm_store_pool_read): each found its link key on the device, not
 * in the cache, once per block (acquisition writes around the cache). */
static void pool_ahead(struct qkm_store *st, const char *peer, int key_type, bool its_only,
		       int64_t created_ns, int64_t id, int64_t data_off, uint64_t len,
		       uint64_t size)
{
	block_ahead(st, data_off, len, size);
	unsigned k;
	for (k = 0; k < STORE_AHEAD_POOLS; k++)
		if (st->ahead[k].key_type == key_type && strcmp(st->ahead[k].peer, peer) == 0)
			break;
	if (k == STORE_AHEAD_POOLS) {
		k = st->ahead_next++ % STORE_AHEAD_POOLS;
		snprintf(st->ahead[k].peer, sizeof(st->ahead[k].peer), "%s", peer);
		st->ahead[k].key_type = key_type;
		st->ahead[k].created_ns = st->ahead[k].id = 0;
	}
	/* The mark covers the blocks from the start of its run on: a read
	 * before that run, or past its end, begins a new one. */
	if (pool_before(created_ns, id, st->ahead[k].from_ns, st->ahead[k].from_id) ||
	    !pool_before(created_ns, id, st->ahead[k].created_ns, st->ahead[k].id)) {
		st->ahead[k].created_ns = st->ahead[k].from_ns = created_ns;
		st->ahead[k].id = st->ahead[k].from_id = id;
	}
	sqlite3_stmt *s = st->st[ST_POOL_AHEAD];
	bind_str(s, 1, peer, QKM_NAME_MAX);
	sqlite3_bind_int(s, 2, key_type);
	sqlite3_bind_int64(s, 3, created_ns);
	sqlite3_bind_int64(s, 4, id);
	sqlite3_bind_int(s, 5, its_only ? 1 : 0);
	uint64_t ahead = size - len;
	while (ahead < STORE_AHEAD_BYTES && sqlite3_step(s) == SQLITE_ROW) {
		int64_t bid = sqlite3_column_int64(s, 0), bc = sqlite3_column_int64(s, 1);
		uint64_t bsize = (uint64_t)sqlite3_column_int64(s, 2);
		uint64_t used = (uint64_t)sqlite3_column_int64(s, 3);
		if (used >= bsize)
			continue;
		ahead += bsize - used;
		if (!pool_before(st->ahead[k].created_ns, st->ahead[k].id, bc, bid))
			continue; /* asked for at an earlier block's read */
		block_ahead(st, sqlite3_column_int64(s, 4), used, bsize);
		st->ahead[k].created_ns = bc;
		st->ahead[k].id = bid;
	}
	stmt_done(s);
}

int qkm_store_pool_read(struct qkm_store *st, const char *peer, enum qkm_key_type kt, size_t n,
			struct qkm_range *ranges, size_t max, size_t *nranges, uint8_t *out)
{
	return qkm_store_pool_read_level(st, peer, kt, false, n, ranges, max, nranges, out);
}

int qkm_store_pool_read_level(struct qkm_store *st, const char *peer, enum qkm_key_type kt,
			      bool its_only, size_t n, struct qkm_range *ranges, size_t max,
			      size_t *nranges, uint8_t *out)
{
	sqlite3_stmt *s = st->st[ST_POOL_READ];
	uint64_t last_size = 0;
	int64_t last_created = 0;
	size_t got = 0;
	int err = 0, rc;
	*nranges = 0;
	bind_str(s, 1, peer, QKM_NAME_MAX);
	sqlite3_bind_int(s, 2, (int)kt);
	/* The level filter is in the query: a skipped block is never a range,
	 * so it is neither read nor counted towards n (nor consumed by the
	 * caller, who consumes only the ranges). */
	sqlite3_bind_int(s, 3, its_only ? 1 : 0);
	/* Collect the ranges first: blob reads inside the walk would be fine,
	 * but keeping the statement short keeps the WAL free for checkpoints. */
	while (got < n && (rc = sqlite3_step(s)) == SQLITE_ROW) {
		uint64_t size = (uint64_t)sqlite3_column_int64(s, 3) * (uint64_t)sqlite3_column_int64(s, 4);
		uint64_t used = (uint64_t)sqlite3_column_int64(s, 5);
		if (used >= size)
			continue;
		if (*nranges == max) {
			err = QKM_ETOOBIG;
			goto out;
		}
		struct qkm_range *r = &ranges[(*nranges)++];
		r->rowid = sqlite3_column_int64(s, 0);
		if (sqlite3_column_bytes(s, 1) == QKM_ID_LEN)
			memcpy(r->batch.b, sqlite3_column_blob(s, 1), QKM_ID_LEN);
		r->first_index = (uint32_t)sqlite3_column_int64(s, 2);
		r->unit_bytes = (uint32_t)sqlite3_column_int64(s, 4);
		r->off = (uint32_t)used;
		r->len = (uint32_t)(size - used < n - got ? size - used : n - got);
		r->level = (enum qkm_block_level)sqlite3_column_int(s, 6);
		r->data_off = sqlite3_column_int64(s, 7);
		got += r->len;
		last_size = size;
		last_created = sqlite3_column_int64(s, 8);
	}
	if (got < n) {
		err = QKM_ENOKEY;
		goto out;
	}
	/* A block's first read: the rest of it and the blocks after it, asked
	 * for once this read is done (not queued before it). */
	const struct qkm_range *last = &ranges[*nranges - 1];
	stmt_done(s);
	got = 0;
	for (size_t i = 0; i < *nranges && !err; i++) {
		err = block_read(st, ranges[i].rowid, ranges[i].data_off, ranges[i].off,
				 ranges[i].len, out + got);
		got += ranges[i].len;
	}
	if (!err && last->off == 0)
		pool_ahead(st, peer, (int)kt, its_only, last_created, last->rowid, last->data_off,
			   last->len, last_size);
out:
	stmt_done(s);
	if (err) {
		qkm_cleanse(out, n);
		*nranges = 0;
	}
	return err;
}

/* A block's row, found by its position. */
struct block_row {
	int64_t rowid, data_off, created_ns;
	uint64_t size, used;
	int key_type, state;
	char peer[QKM_NAME_MAX];
};

/* 0, QKM_ENOTFOUND, or the store's error. */
static int block_find(struct qkm_store *st, const struct qkm_id *batch, uint32_t first_index,
		      struct block_row *r)
{
	sqlite3_stmt *s = st->st[ST_BLOCK_FIND];
	int err = 0;
	sqlite3_bind_blob(s, 1, batch->b, QKM_ID_LEN, SQLITE_STATIC);
	sqlite3_bind_int64(s, 2, first_index);
	int rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		r->rowid = sqlite3_column_int64(s, 0);
		r->size = (uint64_t)sqlite3_column_int64(s, 1) * (uint64_t)sqlite3_column_int64(s, 2);
		r->used = (uint64_t)sqlite3_column_int64(s, 3);
		r->key_type = sqlite3_column_int(s, 4);
		r->state = sqlite3_column_int(s, 5);
		col_text(s, 6, r->peer, sizeof(r->peer));
		r->data_off = sqlite3_column_int64(s, 7);
		r->created_ns = sqlite3_column_int64(s, 8);
	} else {
		err = rc == SQLITE_DONE ? QKM_ENOTFOUND : store_fail(st, "find block");
	}
	stmt_done(s);
	return err;
}

int qkm_store_block_unused(struct qkm_store *st, const char *peer, const struct qkm_block_pos *pos,
			   struct qkm_secret **out)
{
	struct block_row b;
	*out = NULL;
	int err = block_find(st, &pos->batch, pos->first, &b);
	if (!err && strcmp(b.peer, peer) != 0)
		err = QKM_ENOTFOUND;
	if (err)
		return err;
	if (!(*out = qkm_secret_new(b.size - b.used)))
		return QKM_ENOMEM;
	if ((err = block_read(st, b.rowid, b.data_off, (uint32_t)b.used, (uint32_t)(b.size - b.used),
			      (*out)->p))) {
		qkm_secret_free(*out);
		*out = NULL;
	}
	return err;
}

int qkm_store_block_read(struct qkm_store *st, const char *peer, const struct qkm_id *batch,
			 uint32_t first_index, enum qkm_key_type kt, uint32_t off, uint32_t len,
			 uint8_t *out, int64_t *rowid)
{
	struct block_row b;
	int err = block_find(st, batch, first_index, &b);
	if (err)
		return err;
	*rowid = b.rowid;
	/* Only unused bytes of a usable block of the right direction: a range
	 * below used would be a key handed out twice. */
	if (b.key_type != (int)kt || b.state != QKM_BLOCK_READY || strcmp(b.peer, peer) != 0 ||
	    off < b.used || (uint64_t)off + len > b.size || len == 0)
		return QKM_EPERM;
	err = block_read(st, b.rowid, b.data_off, off, len, out);
	if (!err && off == 0)
		pool_ahead(st, peer, (int)kt, false, b.created_ns, b.rowid, b.data_off, len, b.size);
	return err;
}

static int ksa_bind_meta(sqlite3_stmt *s, const struct qkm_ksa_key *k)
{
	sqlite3_bind_blob(s, 1, k->id.b, QKM_ID_LEN, SQLITE_STATIC);
	bind_str(s, 2, k->peer, sizeof(k->peer));
	bind_str(s, 3, k->master, sizeof(k->master));
	bind_str(s, 4, k->slave, sizeof(k->slave));
	bind_str(s, 5, k->additional, sizeof(k->additional));
	bind_str(s, 6, k->delivered, sizeof(k->delivered));
	sqlite3_bind_int64(s, 7, k->size_bits);
	sqlite3_bind_int(s, 8, k->level);
	sqlite3_bind_int(s, 9, k->role);
	sqlite3_bind_int(s, 10, k->state);
	sqlite3_bind_int64(s, 11, (int64_t)k->created_ns);
	sqlite3_bind_int64(s, 12, (int64_t)k->supplied_ns);
	/* The ranges as text, a column of schema version 2 that nothing
	 * read: empty since 2026-11-26 (the ranges below are exact, and the
	 * formatted record names them for lineage). */
	sqlite3_bind_text(s, 13, "", 0, SQLITE_STATIC);
	sqlite3_bind_int64(s, 15, k->count ? k->count : 1);
	return sqlite3_bind_blob(s, 14, k->ranges, (int)(k->n_ranges * sizeof(k->ranges[0])),
				 SQLITE_STATIC);
}

static void ksa_read_meta(sqlite3_stmt *s, struct qkm_ksa_key *k)
{
	memset(k, 0, sizeof(*k));
	if (sqlite3_column_bytes(s, 0) == QKM_ID_LEN)
		memcpy(k->id.b, sqlite3_column_blob(s, 0), QKM_ID_LEN);
	col_text(s, 1, k->peer, sizeof(k->peer));
	col_text(s, 2, k->master, sizeof(k->master));
	col_text(s, 3, k->slave, sizeof(k->slave));
	col_text(s, 4, k->additional, sizeof(k->additional));
	col_text(s, 5, k->delivered, sizeof(k->delivered));
	k->size_bits = (uint32_t)sqlite3_column_int64(s, 6);
	k->level = (uint8_t)sqlite3_column_int(s, 7);
	k->role = (uint8_t)sqlite3_column_int(s, 8);
	k->state = (uint8_t)sqlite3_column_int(s, 9);
	k->created_ns = (uint64_t)sqlite3_column_int64(s, 10);
	k->supplied_ns = (uint64_t)sqlite3_column_int64(s, 11);
	size_t n = (size_t)sqlite3_column_bytes(s, 13) / sizeof(k->ranges[0]);
	if (n > QKM_KSA_MAX_RANGES)
		n = QKM_KSA_MAX_RANGES;
	if (n)
		memcpy(k->ranges, sqlite3_column_blob(s, 13), n * sizeof(k->ranges[0]));
	k->n_ranges = (uint32_t)n;
	k->seq = sqlite3_column_int64(s, 14);
	int64_t c = sqlite3_column_int64(s, 15);
	k->count = c >= 1 && c <= UINT32_MAX ? (uint32_t)c : 1;
}

/* Whether id names one of the keys of the run k. */
static bool ksa_run_holds(const struct qkm_ksa_key *k, const struct qkm_id *id)
{
	return qkm_id_same_round(&k->id, id) && qkm_id_index(id) >= qkm_id_index(&k->id) &&
	       qkm_id_index(id) - qkm_id_index(&k->id) < k->count;
}

/* A row of a slave's node holding more than one key (schema v12): its
 * keys go one by one, each marked in dmap. */
static bool ksa_slave_run(const struct qkm_ksa_key *k)
{
	return k->role == QKM_KSA_SLAVE_SIDE && k->count > 1;
}

static uint64_t run_bit(uint32_t i)
{
	return (uint64_t)1 << i;
}

static uint64_t run_all(uint32_t count)
{
	return count >= 64 ? UINT64_MAX : run_bit(count) - 1;
}

/* The ranges of bytes [off, off + len) of run k, in out (which may be
 * k->ranges: range i is read before out[*n <= i] is written). */
static void ksa_ranges_part(const struct qkm_ksa_key *k, uint64_t off, uint64_t len,
			    struct qkm_range_ref *out, uint32_t *n)
{
	uint64_t pos = 0;
	uint32_t m = 0;
	for (uint32_t i = 0; i < k->n_ranges; i++) {
		struct qkm_range_ref r = k->ranges[i];
		uint64_t a = pos, b = pos + r.len;
		pos = b;
		if (b <= off || a >= off + len)
			continue;
		uint64_t from = off > a ? off - a : 0, to = off + len < b ? off + len - a : r.len;
		r.off += (uint32_t)from;
		r.len = (uint32_t)(to - from);
		out[m++] = r;
	}
	*n = m;
}

static int ksa_row(struct qkm_store *st, const struct qkm_id *id, struct qkm_ksa_key *out);
static int ksa_trim(struct qkm_store *st, const struct qkm_ksa_key *k, bool explode);

/* Makes out, the row of a slave's run, the view of its key id alone: that
 * ID, count 1, its ranges, its bytes if with_data; run_index and run_count
 * say where in the row it is. A key delivered reads as SUPPLIED and
 * delivered to its slave, without bytes; one cancelled as no key
 * (QKM_ENOTFOUND), as a cancelled key's own row, deleted. */
static int ksa_member(struct qkm_store *st, struct qkm_ksa_key *out, const struct qkm_id *id,
		      bool with_data)
{
	uint32_t i = qkm_id_index(id) - qkm_id_index(&out->id);
	uint64_t size = out->size_bits / 8;
	ksa_ranges_part(out, i * size, size, out->ranges, &out->n_ranges);
	out->run_index = i;
	out->run_count = out->count;
	out->count = 1;
	out->id = *id;
	if (out->cancelled & run_bit(i))
		return QKM_ENOTFOUND;
	if (out->gone & run_bit(i)) {
		out->state = QKM_KSA_SUPPLIED;
		snprintf(out->delivered, sizeof(out->delivered), "%s", out->slave);
		return 0;
	}
	if (!with_data)
		return 0;
	sqlite3_stmt *s = st->st[ST_KSA_DATA_SLICE];
	int err = 0;
	sqlite3_bind_int64(s, 1, out->seq);
	sqlite3_bind_int64(s, 2, (int64_t)(i * size) + 1);
	sqlite3_bind_int64(s, 3, (int64_t)size);
	int rc = sqlite3_step(s);
	if (rc == SQLITE_ROW && (uint64_t)sqlite3_column_bytes(s, 0) == size) {
		if (!(out->data = qkm_secret_dup(sqlite3_column_blob(s, 0), size)))
			err = QKM_ENOMEM;
	} else if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
		err = store_fail(st, "get KSA key data");
	}
	stmt_done(s);
	return err;
}

/* Row seq's kept bytes in *out (secure), or NULL if it keeps none. */
static int ksa_data(struct qkm_store *st, int64_t seq, struct qkm_secret **out)
{
	sqlite3_stmt *s = st->st[ST_KSA_DATA_GET];
	int err = 0;
	*out = NULL;
	sqlite3_bind_int64(s, 1, seq);
	int rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		size_t n = (size_t)sqlite3_column_bytes(s, 0);
		if (!(*out = qkm_secret_dup(sqlite3_column_blob(s, 0), n)))
			err = QKM_ENOMEM;
	} else if (rc != SQLITE_DONE) {
		err = store_fail(st, "get KSA key data");
	}
	stmt_done(s);
	return err;
}

/* Zeroes bytes [off, off + len) of row seq's kept bytes, if it keeps any. */
static int ksa_wipe(struct qkm_store *st, int64_t seq, uint64_t off, uint64_t len)
{
	struct qkm_secret *d;
	int err = ksa_data(st, seq, &d);
	if (err || !d)
		return err;
	if (off < d->len)
		qkm_cleanse(d->p + off, len < d->len - off ? len : d->len - off);
	sqlite3_stmt *s = st->st[ST_KSA_DATA_SET];
	sqlite3_bind_int64(s, 1, seq);
	sqlite3_bind_blob(s, 2, d->p, (int)d->len, SQLITE_STATIC);
	err = stmt_exec(st, ST_KSA_DATA_SET);
	qkm_secret_free(d);
	return err;
}

/* Key k (a view from ksa_member) leaves its run, delivered at done_ns or
 * cancelled: marked gone (the row's supply time the latest delivery's),
 * its bytes wiped. The last key to go ends the row: SUPPLIED at the latest
 * delivery's time, its bytes deleted; deleted if every key was cancelled.
 * QKM_ENOTFOUND if the key was gone already. */
static int ksa_member_gone(struct qkm_store *st, const struct qkm_ksa_key *k, uint64_t done_ns,
			   bool cancel)
{
	int err = sp_begin(st);
	if (err)
		return err;
	sqlite3_stmt *s = st->st[ST_KSA_RUN_MARK];
	uint64_t dmap = 0, cmap = 0, bit = run_bit(k->run_index);
	int64_t last_ns = 0;
	uint32_t count = 0;
	sqlite3_bind_int64(s, 1, k->seq);
	sqlite3_bind_int64(s, 2, (int64_t)bit);
	sqlite3_bind_int64(s, 3, cancel ? 0 : (int64_t)done_ns);
	sqlite3_bind_int64(s, 4, cancel ? (int64_t)bit : 0);
	int rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		dmap = (uint64_t)sqlite3_column_int64(s, 0);
		cmap = (uint64_t)sqlite3_column_int64(s, 1);
		count = (uint32_t)sqlite3_column_int64(s, 2);
		last_ns = sqlite3_column_int64(s, 3);
	} else {
		err = rc == SQLITE_DONE ? QKM_ENOTFOUND : store_fail(st, "mark KSA key gone");
	}
	stmt_done(s);
	uint64_t size = k->size_bits / 8;
	if (!err)
		err = ksa_wipe(st, k->seq, k->run_index * size, size);
	if (!err && dmap == run_all(count)) {
		if (cmap == dmap) {
			sqlite3_bind_int64(st->st[ST_KSA_ROW_DELETE], 1, k->seq);
			err = stmt_exec(st, ST_KSA_ROW_DELETE);
		} else {
			s = st->st[ST_KSA_RUN_END];
			sqlite3_bind_int64(s, 1, k->seq);
			sqlite3_bind_int(s, 2, QKM_KSA_SUPPLIED);
			sqlite3_bind_int64(s, 3, last_ns);
			err = stmt_exec(st, ST_KSA_RUN_END);
			if (!err) {
				sqlite3_bind_int64(st->st[ST_KSA_DATA_DROP], 1, k->seq);
				err = stmt_exec(st, ST_KSA_DATA_DROP);
			}
		}
	}
	return sp_end(st, err);
}

/* A slave's node takes IDs from its peer: none of k's may be known, in a
 * row of its own or in a run (a repeated SUPPLY). */
static int ksa_put_fresh(struct qkm_store *st, const struct qkm_ksa_key *k)
{
	uint32_t n = k->count ? k->count : 1;
	if (n > QKM_KSA_SLAVE_RUN || (n > 1 && k->additional[0]) ||
	    qkm_id_index(&k->id) > UINT32_MAX - (n - 1))
		return QKM_EINVAL;
	struct qkm_id last = k->id;
	qkm_id_set_index(&last, qkm_id_index(&k->id) + (n - 1));
	sqlite3_stmt *s = st->st[ST_KSA_FIRST_IN];
	sqlite3_bind_blob(s, 1, k->id.b, QKM_ID_LEN, SQLITE_STATIC);
	sqlite3_bind_blob(s, 2, last.b, QKM_ID_LEN, SQLITE_STATIC);
	int rc = sqlite3_step(s);
	stmt_done(s);
	if (rc == SQLITE_ROW)
		return QKM_EEXIST;
	if (rc != SQLITE_DONE)
		return store_fail(st, "look up KSA key IDs");
	struct qkm_ksa_key *o = malloc(sizeof(*o));
	if (!o)
		return QKM_ENOMEM;
	int err = ksa_row(st, &k->id, o);
	free(o);
	return err == 0 ? QKM_EEXIST : err == QKM_ENOTFOUND ? 0 : err;
}

int qkm_store_ksa_put(struct qkm_store *st, struct qkm_ksa_key *k)
{
	/* A round puts thousands of keys in one transaction: there a
	 * savepoint per key cost 40 % of the put, and is not needed. A failed
	 * statement undoes itself, and the one thing to undo by hand is the
	 * row when its data is refused. Outside a transaction the savepoint
	 * makes the put its own durable transaction. */
	bool sp = !in_txn(st);
	int err = k->role == QKM_KSA_SLAVE_SIDE ? ksa_put_fresh(st, k) : 0;
	if (!err && sp)
		err = sp_begin(st);
	if (err)
		return err;
	ksa_bind_meta(st->st[ST_KSA_INSERT], k);
	if (sqlite3_step(st->st[ST_KSA_INSERT]) != SQLITE_DONE)
		/* The ID is the primary key in schema v2, a unique column since v3. */
		err = sqlite3_extended_errcode(st->db) == SQLITE_CONSTRAINT_PRIMARYKEY ||
				      sqlite3_extended_errcode(st->db) == SQLITE_CONSTRAINT_UNIQUE
			      ? QKM_EEXIST
			      : store_fail(st, "insert KSA key");
	stmt_done(st->st[ST_KSA_INSERT]);
	if (!err)
		k->seq = sqlite3_last_insert_rowid(st->db);
	if (!err && k->data) {
		sqlite3_stmt *d = st->st[ST_KSA_DATA_INSERT];
		sqlite3_bind_int64(d, 1, k->seq);
		sqlite3_bind_blob(d, 2, k->data->p, (int)k->data->len, SQLITE_STATIC);
		err = stmt_exec(st, ST_KSA_DATA_INSERT);
		sqlite3_bind_int64(st->st[ST_KSA_ROW_DELETE], 1, k->seq);
		if (err && !sp && stmt_exec(st, ST_KSA_ROW_DELETE))
			log_warnx("store: a KSA key row stays without its data after a failed insert; "
				  "the transaction must be rolled back");
	}
	return sp ? sp_end(st, err) : err;
}

/* The row that holds key id, as it is (a run whole, with its maps). */
static int ksa_row(struct qkm_store *st, const struct qkm_id *id, struct qkm_ksa_key *out)
{
	sqlite3_stmt *s = st->st[ST_KSA_GET];
	int err = 0;
	sqlite3_bind_blob(s, 1, id->b, QKM_ID_LEN, SQLITE_STATIC);
	int rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		ksa_read_meta(s, out);
		out->gone = (uint64_t)sqlite3_column_int64(s, 16);
		out->cancelled = (uint64_t)sqlite3_column_int64(s, 17);
	} else {
		err = rc == SQLITE_DONE ? QKM_ENOTFOUND : store_fail(st, "get KSA key");
	}
	stmt_done(s);
	if (!err && !ksa_run_holds(out, id))
		err = QKM_ENOTFOUND; /* the row before it is another key's */
	return err;
}

int qkm_store_ksa_get(struct qkm_store *st, const struct qkm_id *id, struct qkm_ksa_key *out,
		      bool with_data)
{
	int err = ksa_row(st, id, out);
	if (!err && ksa_slave_run(out))
		return ksa_member(st, out, id, with_data);
	return err || !with_data ? err : ksa_data(st, out->seq, &out->data);
}

int qkm_store_ksa_update(struct qkm_store *st, const struct qkm_ksa_key *k, bool drop_data)
{
	if (k->run_count && drop_data) /* one slave: delivered to it, gone */
		return ksa_member_gone(st, k, k->supplied_ns, false);
	int err = sp_begin(st);
	if (err)
		return err;
	if (k->run_count) {
		/* Its bytes kept (after_supply "preserve" since the run was
		 * put): the run becomes a row per key first. */
		struct qkm_ksa_key *r = malloc(sizeof(*r));
		err = r ? ksa_row(st, &k->id, r) : QKM_ENOMEM;
		if (!err)
			err = ksa_trim(st, r, true);
		free(r);
		if (err)
			return sp_end(st, err);
	}
	sqlite3_stmt *s = st->st[ST_KSA_UPDATE];
	sqlite3_bind_blob(s, 1, k->id.b, QKM_ID_LEN, SQLITE_STATIC);
	bind_str(s, 2, k->delivered, sizeof(k->delivered));
	sqlite3_bind_int(s, 3, k->state);
	sqlite3_bind_int64(s, 4, (int64_t)k->supplied_ns);
	err = stmt_exec(st, ST_KSA_UPDATE);
	if (!err && sqlite3_changes(st->db) == 0)
		err = QKM_ENOTFOUND;
	if (!err && drop_data) {
		/* secure_delete overwrites the freed pages; the next checkpoint
		 * takes the bytes out of the WAL too. */
		sqlite3_bind_blob(st->st[ST_KSA_DATA_DELETE], 1, k->id.b, QKM_ID_LEN, SQLITE_STATIC);
		err = stmt_exec(st, ST_KSA_DATA_DELETE);
	}
	return sp_end(st, err);
}

int qkm_store_ksa_set_state(struct qkm_store *st, int64_t first_seq, int64_t last_seq,
			    enum qkm_ksa_state from, enum qkm_ksa_state to, uint64_t supplied_ns)
{
	if (last_seq < first_seq)
		return QKM_EINVAL;
	int err = sp_begin(st);
	if (err)
		return err;
	sqlite3_stmt *s = st->st[ST_KSA_SET_STATE];
	sqlite3_bind_int64(s, 1, first_seq);
	sqlite3_bind_int64(s, 2, last_seq);
	sqlite3_bind_int(s, 3, (int)from);
	sqlite3_bind_int(s, 4, (int)to);
	sqlite3_bind_int64(s, 5, (int64_t)supplied_ns);
	err = stmt_exec(st, ST_KSA_SET_STATE);
	/* Every row of the run, or none: a row missing or in another state
	 * means the caller's idea of them is wrong. */
	if (!err && sqlite3_changes(st->db) != last_seq - first_seq + 1)
		err = QKM_ENOTFOUND;
	return sp_end(st, err);
}

/* The first n keys of run k (n < k->count) move to state to at
 * supplied_ns in k's row; the rest become a new row, in k's state. */
static int ksa_split(struct qkm_store *st, struct qkm_ksa_key *k, uint32_t n,
		     enum qkm_ksa_state to, uint64_t supplied_ns)
{
	struct qkm_range_ref head[QKM_KSA_MAX_RANGES];
	uint32_t nh, nt;
	int64_t seq = k->seq;
	uint64_t bytes = (uint64_t)n * (k->size_bits / 8);
	ksa_ranges_part(k, 0, bytes, head, &nh);
	ksa_ranges_part(k, bytes, UINT64_MAX - bytes, k->ranges, &nt);
	/* The rest first: its first key's ID is free, the row keeps its own. */
	qkm_id_set_index(&k->id, qkm_id_index(&k->id) + n);
	k->count -= n;
	k->n_ranges = nt;
	k->data = NULL;
	ksa_bind_meta(st->st[ST_KSA_INSERT], k);
	int err = stmt_exec(st, ST_KSA_INSERT);
	if (err)
		return err;
	int64_t rest = sqlite3_last_insert_rowid(st->db);
	sqlite3_stmt *s = st->st[ST_KSA_DATA_TAIL]; /* a node that keeps the bytes */
	sqlite3_bind_int64(s, 1, rest);
	sqlite3_bind_int64(s, 2, seq);
	sqlite3_bind_int64(s, 3, (int64_t)bytes + 1);
	if ((err = stmt_exec(st, ST_KSA_DATA_TAIL)))
		return err;
	if (sqlite3_changes(st->db)) {
		s = st->st[ST_KSA_DATA_HEAD];
		sqlite3_bind_int64(s, 1, seq);
		sqlite3_bind_int64(s, 2, (int64_t)bytes);
		if ((err = stmt_exec(st, ST_KSA_DATA_HEAD)))
			return err;
	}
	s = st->st[ST_KSA_SET_HEAD];
	sqlite3_bind_int64(s, 1, seq);
	sqlite3_bind_int64(s, 2, n);
	sqlite3_bind_int(s, 3, (int)to);
	sqlite3_bind_int64(s, 4, (int64_t)supplied_ns);
	sqlite3_bind_blob(s, 5, head, (int)(nh * sizeof(head[0])), SQLITE_STATIC);
	return stmt_exec(st, ST_KSA_SET_HEAD);
}

int qkm_store_ksa_take(struct qkm_store *st, const struct qkm_id *first, uint32_t n,
		       enum qkm_ksa_state from, enum qkm_ksa_state to, uint64_t supplied_ns)
{
	int err = sp_begin(st);
	if (err)
		return err;
	struct qkm_id id = *first;
	struct qkm_ksa_key k;
	while (!err && n) {
		err = qkm_store_ksa_get(st, &id, &k, false);
		if (!err && k.state != from)
			err = QKM_ENOTFOUND;
		if (err)
			break;
		uint32_t skip = qkm_id_index(&id) - qkm_id_index(&k.id);
		if (skip) {
			/* Keys before these stay as they are, in a row of their
			 * own (a stock takes a run's keys in order, but the
			 * transaction that recorded the first ones may have
			 * failed): the next pass finds id at a row's front. */
			err = ksa_split(st, &k, skip, from, k.supplied_ns);
			continue;
		}
		uint32_t m = n < k.count ? n : k.count;
		if (m == k.count)
			err = qkm_store_ksa_set_state(st, k.seq, k.seq, from, to, supplied_ns);
		else
			err = ksa_split(st, &k, m, to, supplied_ns);
		qkm_id_set_index(&id, qkm_id_index(&id) + m);
		n -= m;
	}
	return sp_end(st, err);
}

int qkm_store_ksa_delete(struct qkm_store *st, const struct qkm_id *id)
{
	struct qkm_ksa_key *k = malloc(sizeof(*k));
	if (!k)
		return QKM_ENOMEM;
	int err = qkm_store_ksa_get(st, id, k, false);
	if (!err && k->run_count)
		err = k->state == QKM_KSA_SUPPLIED ? QKM_ENOTFOUND
						   : ksa_member_gone(st, k, 0, true);
	bool member = !err && k->run_count;
	free(k);
	if (err || member)
		return err;
	sqlite3_bind_blob(st->st[ST_KSA_DELETE], 1, id->b, QKM_ID_LEN, SQLITE_STATIC);
	err = stmt_exec(st, ST_KSA_DELETE);
	if (!err && sqlite3_changes(st->db) == 0)
		err = QKM_ENOTFOUND;
	return err;
}

int qkm_store_ksa_delete_round(struct qkm_store *st, const struct qkm_id *id, size_t *n)
{
	struct qkm_id lo = *id, hi = *id;
	qkm_id_set_index(&lo, 0);
	qkm_id_set_index(&hi, UINT32_MAX);
	*n = 0;
	sqlite3_stmt *s = st->st[ST_KSA_COUNT_ROUND];
	sqlite3_bind_blob(s, 1, lo.b, QKM_ID_LEN, SQLITE_TRANSIENT);
	sqlite3_bind_blob(s, 2, hi.b, QKM_ID_LEN, SQLITE_TRANSIENT);
	int err = 0, rc = sqlite3_step(s);
	if (rc == SQLITE_ROW)
		*n = (size_t)sqlite3_column_int64(s, 0);
	else
		err = store_fail(st, "count KSA keys");
	stmt_done(s);
	if (err || !*n)
		return err;
	s = st->st[ST_KSA_DELETE_ROUND];
	sqlite3_bind_blob(s, 1, lo.b, QKM_ID_LEN, SQLITE_TRANSIENT);
	sqlite3_bind_blob(s, 2, hi.b, QKM_ID_LEN, SQLITE_TRANSIENT);
	if ((err = stmt_exec(st, ST_KSA_DELETE_ROUND)))
		*n = 0;
	return err;
}

int qkm_store_ksa_list(struct qkm_store *st, const char *peer, enum qkm_ksa_state state,
		       enum qkm_ksa_role role, qkm_store_ksa_fn fn, void *arg)
{
	sqlite3_stmt *s = st->st[ST_KSA_LIST];
	struct qkm_ksa_key k;
	int err = 0, rc;
	/* The cached statement cannot serve a walk nested in its own callback. */
	if (sqlite3_stmt_busy(s))
		return QKM_ESTATE;
	bind_str(s, 1, peer, QKM_NAME_MAX);
	sqlite3_bind_int(s, 2, (int)state);
	sqlite3_bind_int(s, 3, (int)role);
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		ksa_read_meta(s, &k);
		if ((err = fn(&k, arg)))
			break;
	}
	if (!err && rc != SQLITE_DONE)
		err = store_fail(st, "list KSA keys");
	stmt_done(s);
	return err;
}

int qkm_store_ksa_count(struct qkm_store *st, enum qkm_ksa_state state, uint64_t *n)
{
	sqlite3_stmt *s = st->st[ST_KSA_COUNT];
	int err = 0;
	*n = 0;
	sqlite3_bind_int(s, 1, (int)state);
	if (sqlite3_step(s) == SQLITE_ROW)
		*n = (uint64_t)sqlite3_column_int64(s, 0);
	else
		err = store_fail(st, "count KSA keys");
	stmt_done(s);
	if (err || (state != QKM_KSA_READY && state != QKM_KSA_SUPPLIED))
		return err;
	/* Slave's runs: a key delivered from one still READY is SUPPLIED, a
	 * key cancelled none (a scan: for tests and tools, not a hot path). */
	s = st->st[ST_KSA_COUNT_GONE];
	int rc;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		int row = sqlite3_column_int(s, 0);
		uint64_t gone = (uint64_t)sqlite3_column_int64(s, 1);
		uint64_t cancelled = (uint64_t)sqlite3_column_int64(s, 2);
		uint64_t g = (uint64_t)__builtin_popcountll(gone);
		uint64_t d = (uint64_t)__builtin_popcountll(gone & ~cancelled);
		uint64_t c = (uint64_t)__builtin_popcountll(cancelled);
		if (row == QKM_KSA_READY)
			*n = state == QKM_KSA_READY ? *n - g : *n + d;
		else if (row == QKM_KSA_SUPPLIED && state == QKM_KSA_SUPPLIED)
			*n -= c;
	}
	if (rc != SQLITE_DONE)
		err = store_fail(st, "count KSA keys");
	stmt_done(s);
	return err;
}

#define KSA_HORIZON "ksa_pruned_ms"

/* The Unix time in ms of a version-7 UUID (qkm_id_uuid7); 0 for any other. */
static uint64_t uuid7_ms(const struct qkm_id *id)
{
	if (id->b[6] >> 4 != 7)
		return 0;
	uint64_t ms = 0;
	for (int i = 0; i < 6; i++)
		ms = ms << 8 | id->b[i];
	return ms;
}

/* Slave's run k (from ksa_row) goes: the keys still in it move to rows of
 * their own, a row per stretch of them (explode: per key), each with its
 * part of the ranges and bytes. The gone keys' metadata goes with the row
 * (retention), or, explode, each key delivered keeps a row of its own,
 * SUPPLIED at the row's time without bytes. */
static int ksa_trim(struct qkm_store *st, const struct qkm_ksa_key *k, bool explode)
{
	struct qkm_secret *d;
	sqlite3_stmt *s;
	int err = ksa_data(st, k->seq, &d);
	struct qkm_ksa_key *part = malloc(sizeof(*part));
	if (!part && !err)
		err = QKM_ENOMEM;
	/* The row first: a stretch from its first key takes its ID. */
	sqlite3_bind_int64(st->st[ST_KSA_ROW_DELETE], 1, k->seq);
	if (!err)
		err = stmt_exec(st, ST_KSA_ROW_DELETE);
	uint64_t size = k->size_bits / 8;
	for (uint32_t a = 0, b; !err && a < k->count; a = b) {
		bool gone = k->gone & run_bit(a);
		for (b = a + 1; !explode && !gone && b < k->count && !(k->gone & run_bit(b)); b++)
			;
		if (gone && (!explode || (k->cancelled & run_bit(a))))
			continue;
		*part = *k;
		ksa_ranges_part(k, a * size, (b - a) * size, part->ranges, &part->n_ranges);
		qkm_id_set_index(&part->id, qkm_id_index(&k->id) + a);
		part->count = b - a;
		if (gone) {
			part->state = QKM_KSA_SUPPLIED;
			snprintf(part->delivered, sizeof(part->delivered), "%s", k->slave);
		} else {
			part->supplied_ns = 0;
		}
		ksa_bind_meta(st->st[ST_KSA_INSERT], part);
		if ((err = stmt_exec(st, ST_KSA_INSERT)) || gone || !d || d->len < b * size)
			continue;
		s = st->st[ST_KSA_DATA_INSERT];
		sqlite3_bind_int64(s, 1, sqlite3_last_insert_rowid(st->db));
		sqlite3_bind_blob(s, 2, d->p + a * size, (int)((b - a) * size), SQLITE_STATIC);
		err = stmt_exec(st, ST_KSA_DATA_INSERT);
	}
	free(part);
	qkm_secret_free(d);
	return err;
}

/* The slave's runs with keys gone before before_ns (all their gone keys'),
 * at most max_rows: trimmed (ksa_trim). */
static int ksa_prune_runs(struct qkm_store *st, uint64_t before_ns, uint32_t max_rows,
			  uint64_t *rows, uint64_t *keys, uint64_t *newest)
{
	struct qkm_id *ids = calloc(max_rows ? max_rows : 1, sizeof(*ids));
	struct qkm_ksa_key *k = malloc(sizeof(*k));
	sqlite3_stmt *s = st->st[ST_KSA_GONE];
	uint32_t n = 0;
	int err = ids && k ? 0 : QKM_ENOMEM, rc = SQLITE_DONE;
	sqlite3_bind_int64(s, 1, (int64_t)before_ns);
	sqlite3_bind_int64(s, 2, max_rows);
	while (!err && n < max_rows && (rc = sqlite3_step(s)) == SQLITE_ROW)
		if (sqlite3_column_bytes(s, 0) == QKM_ID_LEN)
			memcpy(ids[n++].b, sqlite3_column_blob(s, 0), QKM_ID_LEN);
	if (!err && rc != SQLITE_DONE && rc != SQLITE_ROW)
		err = store_fail(st, "list KSA runs");
	stmt_done(s);
	for (uint32_t i = 0; !err && i < n; i++) {
		if ((err = ksa_row(st, &ids[i], k)))
			break;
		uint64_t delivered = k->gone & ~k->cancelled;
		if (!ksa_slave_run(k) || k->state != QKM_KSA_READY || !delivered)
			continue;
		if ((err = ksa_trim(st, k, false)))
			break;
		uint64_t ms = uuid7_ms(&ids[i]);
		*newest = ms > *newest ? ms : *newest;
		(*rows)++;
		*keys += (uint64_t)__builtin_popcountll(delivered);
	}
	free(ids);
	free(k);
	return err;
}

int qkm_store_ksa_prune(struct qkm_store *st, uint64_t before_ns, uint32_t max_rows,
			uint64_t *rows, uint64_t *keys)
{
	*rows = *keys = 0;
	if (before_ns > INT64_MAX)
		return QKM_EINVAL;
	int err = sp_begin(st);
	if (err)
		return err;
	sqlite3_stmt *s = st->st[ST_KSA_PRUNE];
	uint64_t newest = 0;
	int rc;
	sqlite3_bind_int64(s, 1, (int64_t)before_ns);
	sqlite3_bind_int64(s, 2, max_rows);
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		struct qkm_id id;
		if (sqlite3_column_bytes(s, 0) == QKM_ID_LEN) {
			memcpy(id.b, sqlite3_column_blob(s, 0), QKM_ID_LEN);
			uint64_t ms = uuid7_ms(&id);
			newest = ms > newest ? ms : newest;
		}
		(*rows)++;
		*keys += (uint64_t)sqlite3_column_int64(s, 1) -
			 (uint64_t)__builtin_popcountll((uint64_t)sqlite3_column_int64(s, 2));
	}
	if (rc != SQLITE_DONE)
		err = store_fail(st, "prune KSA keys");
	stmt_done(s);
	if (!err && *rows < max_rows)
		err = ksa_prune_runs(st, before_ns, max_rows - (uint32_t)*rows, rows, keys, &newest);
	/* The horizon never passes the cut-off: a key made later than it was
	 * supplied (a master's clock ahead) does not move it into the future. */
	if (newest > before_ns / 1000000u)
		newest = before_ns / 1000000u;
	if (!err && newest)
		err = qkm_store_counter_raise(st, KSA_HORIZON, (int64_t)newest);
	if (err)
		*rows = *keys = 0;
	return sp_end(st, err);
}

#define LC_WATERMARK "lc_pruned_seq"

int qkm_store_lc_prune(struct qkm_store *st, int64_t upto_seq, uint64_t before_ns,
		       uint32_t max_rows, uint64_t *n)
{
	*n = 0;
	if (upto_seq <= 0)
		return 0;
	if (before_ns > INT64_MAX)
		return QKM_EINVAL;
	int err = sp_begin(st);
	if (!err)
		err = qkm_store_counter_raise(st, LC_WATERMARK, upto_seq);
	if (!err) {
		sqlite3_stmt *s = st->st[ST_LC_PRUNE];
		sqlite3_bind_int64(s, 1, upto_seq);
		sqlite3_bind_int64(s, 2, (int64_t)before_ns);
		sqlite3_bind_int64(s, 3, max_rows);
		if (!(err = stmt_exec(st, ST_LC_PRUNE)))
			*n = (uint64_t)sqlite3_changes(st->db);
	}
	if (err)
		*n = 0;
	return sp_end(st, err);
}

int qkm_store_ksa_horizon(struct qkm_store *st, uint64_t *ms)
{
	int64_t v = 0;
	int err = qkm_store_counter_get(st, KSA_HORIZON, &v);
	*ms = err || v < 0 ? 0 : (uint64_t)v;
	return err;
}

bool qkm_store_ksa_older(const struct qkm_id *id, uint64_t horizon_ms)
{
	uint64_t ms = uuid7_ms(id);
	return horizon_ms && ms && ms <= horizon_ms;
}

int qkm_store_block_burn(struct qkm_store *st, const char *peer, const struct qkm_id *batch,
			 uint32_t first_index, enum qkm_key_type kt, uint64_t upto)
{
	/* Raise used to upto (never lower it); a block used up goes, its data
	 * with it (secure_delete). Consumed bytes in place are zeroed as in
	 * qkm_store_block_set_used. */
	struct block_row b;
	int err = block_find(st, batch, first_index, &b);
	if (err)
		return err == QKM_ENOTFOUND ? 0 : err;
	if (strcmp(b.peer, peer) != 0 || b.key_type != (int)kt || upto <= b.used)
		return 0;
	if (upto > b.size)
		upto = b.size;
	return qkm_store_block_set_used(st, b.rowid, (uint32_t)upto);
}
