/* fsync_baseline.c - the disk's ceiling for durable sequential writes, the
 * baseline of bench/acquire: writes total bytes to a new file in chunk-sized
 * write(2)s and calls fdatasync(2) after every sync bytes (and at the end),
 * then prints one line "bytes seconds mbps syncs". Data is random-looking
 * (not zeros) so no layer can compress or skip it.
 *
 * usage: fsync_baseline FILE TOTAL_BYTES CHUNK_BYTES SYNC_BYTES */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static unsigned long long arg(const char *s, const char *what)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || *end || v == 0) {
		fprintf(stderr, "fsync_baseline: bad %s: %s\n", what, s);
		exit(2);
	}
	return v;
}

int main(int argc, char **argv)
{
	if (argc != 5) {
		fprintf(stderr, "usage: fsync_baseline FILE TOTAL_BYTES CHUNK_BYTES SYNC_BYTES\n");
		return 2;
	}
	unsigned long long total = arg(argv[2], "TOTAL_BYTES");
	size_t chunk = (size_t)arg(argv[3], "CHUNK_BYTES");
	unsigned long long sync = arg(argv[4], "SYNC_BYTES");
	uint8_t *buf = malloc(chunk);
	if (!buf) {
		perror("malloc");
		return 1;
	}
	uint64_t x = 0x9e3779b97f4a7c15u; /* xorshift64: cheap, incompressible */
	for (size_t i = 0; i < chunk; i++) {
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		buf[i] = (uint8_t)x;
	}
	int fd = open(argv[1], O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd < 0) {
		perror(argv[1]);
		return 1;
	}
	unsigned long long done = 0, since = 0, syncs = 0;
	double t0 = now();
	while (done < total) {
		size_t n = total - done < chunk ? (size_t)(total - done) : chunk;
		buf[0] ^= (uint8_t)done; /* each chunk differs a little */
		ssize_t w = write(fd, buf, n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			perror("write");
			return 1;
		}
		done += (unsigned long long)w, since += (unsigned long long)w;
		if (since >= sync || done >= total) {
			if (fdatasync(fd)) {
				perror("fdatasync");
				return 1;
			}
			since = 0, syncs++;
		}
	}
	double dt = now() - t0;
	close(fd);
	unlink(argv[1]);
	free(buf);
	printf("%llu %.6f %.3f %llu\n", done, dt, (double)done * 8 / dt / 1e6, syncs);
	return 0;
}
