/* relay_prof.h - where bench/relay's time goes: inclusive time in the store,
 * codec, crypto and secure-heap calls that kma/relay.c makes (the linker's
 * --wrap, see CMakeLists.txt), and in the file system calls SQLite makes
 * (pwrite64, pread64, fdatasync, ftruncate64, interposed in this
 * executable). Counted only between prof_start() and prof_stop(). A bench
 * tool's process-wide counters, not a pattern for src/. */
#ifndef QKM_BENCH_RELAY_PROF_H
#define QKM_BENCH_RELAY_PROF_H

#include <stdint.h>

enum prof_item {
	PF_FDATASYNC, PF_PWRITE, PF_PREAD, PF_FTRUNCATE,
	PF_COMMIT, PF_BEGIN, PF_BLOCK_PUT, PF_SET_USED, PF_BURN, PF_BLOCK_READ, PF_POOL_READ,
	PF_RECORD, PF_COUNTER, PF_BATCH, PF_CHECKPOINT,
	PF_KF_ENCODE, PF_KF_DECODE, PF_KF_HASH, PF_FRAME_PARSE, PF_POLY1305,
	PF_SECRET,
	PF_N
};

struct prof {
	uint64_t ns[PF_N], calls[PF_N], bytes[PF_N];
};

/* The name of an item, e.g. "fdatasync" or "qkm_store_commit". */
const char *prof_name(enum prof_item i);
/* True for the file system calls (they nest inside the store items). */
int prof_is_syscall(enum prof_item i);
void prof_start(void);
/* Stops counting and copies what was counted since prof_start(). */
void prof_stop(struct prof *out /* OUT */);

#endif
