/* file.h - the files of a store and of a ledger (internal to src/store/):
 * made for the process alone. */
#ifndef QKM_STORE_FILE_H
#define QKM_STORE_FILE_H

/* Opens path read-write, creating it with mode 0600: key material and its
 * records are for the node (or manager) alone. Warns when an existing file
 * is open to group or others all the same. The descriptor (close-on-exec),
 * or -1 after a warning that names who ("store", "ledger", ...) and path. */
int qkm_private_file_open(const char *path, const char *who);

/* The same for a file SQLite opens next (SQLite gives its -wal and -shm the
 * database file's mode): creates it 0600 and closes it. 0, or QKM_ESTORE. */
int qkm_private_file_create(const char *path, const char *who);

#endif
