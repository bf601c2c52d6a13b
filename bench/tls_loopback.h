/* tls_loopback.h - the TLS baseline of bench/relay: one TLS 1.3 connection
 * over 127.0.0.1 between two threads of this process, the client streaming
 * bytes to the server as fast as it can. It is the most a Kx link (TLS 1.3
 * over TCP, the same library and defaults) can carry on this machine, with
 * no key management at all. Deterministic: no outside process, no port
 * chosen in advance (the server binds port 0). */
#ifndef QKM_BENCH_TLS_LOOPBACK_H
#define QKM_BENCH_TLS_LOOPBACK_H

#include <stddef.h>
#include <stdint.h>

struct tls_loopback_result {
	uint64_t bytes;              /* application bytes the server read */
	double seconds;              /* first byte written to the server's answer read */
	double mbps;                 /* 10^6 bit/s of application data */
	char version[16];            /* "TLSv1.3" */
	char cipher[64];             /* the negotiated suite */
	char err[160];               /* set when the run failed (returns -1) */
};

/* Streams `bytes` bytes in SSL_write calls of `chunk` bytes (a relay frame's
 * size) from a client thread to a server thread over loopback TCP, after
 * the handshake (not timed). The server reads everything, then answers one
 * byte; the time is measured at the client, from its first write to that
 * answer. 0 or -1 with out->err set. */
int tls_loopback_run(uint64_t bytes, size_t chunk, struct tls_loopback_result *out /* OUT */);

#endif
