/* hist.c - fixed-bucket latency histogram (hist.h). Invariant: count is the
 * sum of the buckets. */
#include "core/hist.h"

const uint64_t qkm_hist_le_ns[QKM_HIST_N] = {
	500000ull,     1000000ull,    2000000ull,    5000000ull,     10000000ull,
	25000000ull,   50000000ull,   100000000ull,  250000000ull,   500000000ull,
	1000000000ull, 2500000000ull, 5000000000ull, 10000000000ull,
};

void qkm_hist_add(struct qkm_hist *h, uint64_t ns)
{
	unsigned i = 0;
	while (i < QKM_HIST_N && ns > qkm_hist_le_ns[i])
		i++;
	h->bucket[i]++;
	h->count++;
	h->sum_ns += ns;
}
