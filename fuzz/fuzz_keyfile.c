/* fuzz_keyfile.c - libFuzzer target for the key-file decoder (core/keyfile.c)
 * and JSON view (proto/keyfile_json.c). Properties, each an abort():
 * whatever decodes re-encodes to the identical bytes (R-FMT-2: only the
 * canonical encoding is accepted), its JSON view reads back (through text)
 * to the same file up to the view's microsecond time stamps, and JSON ->
 * struct -> JSON is exact. Seeds: fuzz/corpus/keyfile/. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/keyfile.h"
#include "proto/keyfile_json.h"

int LLVMFuzzerTestOneInput(const uint8_t *p, size_t n);

/* What the JSON view keeps of a time stamp: whole microseconds. */
static void us(uint64_t *ns) { *ns -= *ns % 1000; }

static void truncate_times(struct qkm_keyfile *kf)
{
	switch (kf->kind) {
	case QKM_KF_QKD:
		us(&kf->m.qkd.generation_time_stamp);
		break;
	case QKM_KF_KMA:
		us(&kf->m.kma.generation_time_stamp);
		break;
	case QKM_KF_RELAYED:
		us(&kf->m.relayed.kma_key_metadata.generation_time_stamp);
		for (uint32_t h = 0; h < kf->m.relayed.n_hops; h++)
			us(&kf->m.relayed.hops[h].key_relay_time_stamp);
		break;
	case QKM_KF_KSA:
		us(&kf->m.ksa.supply_time_stamp);
		break;
	}
}

static void encode_or_abort(const struct qkm_keyfile *kf, struct qkm_buf *b)
{
	qkm_buf_init(b, QKM_KEYFILE_MAX_DATA + 65536, true);
	if (qkm_keyfile_encode(kf, b))
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *p, size_t n)
{
	static bool heap;
	struct qkm_keyfile kf, back;
	struct qkm_buf b1, b2;
	json_t *j, *j2, *parsed;
	char *text;

	if (!heap) {
		if (qkm_secret_heap_init(1u << 24))
			abort();
		heap = true;
	}
	if (qkm_keyfile_decode(p, n, &kf, NULL))
		return 0;

	encode_or_abort(&kf, &b1);
	if (b1.len != n || memcmp(b1.p, p, n) != 0)
		abort();
	qkm_buf_fini(&b1);

	if (qkm_keyfile_to_json(&kf, true, &j))
		abort();
	if (!(text = json_dumps(j, JSON_COMPACT)))
		abort();
	parsed = json_loads(text, JSON_REJECT_DUPLICATES, NULL);
	free(text);
	if (!parsed || qkm_keyfile_from_json(parsed, &back, NULL))
		abort();
	if (qkm_keyfile_to_json(&back, true, &j2) || !json_equal(j, j2))
		abort();

	truncate_times(&kf);
	encode_or_abort(&kf, &b1);
	encode_or_abort(&back, &b2);
	if (b1.len != b2.len || memcmp(b1.p, b2.p, b1.len) != 0)
		abort();

	qkm_buf_fini(&b1);
	qkm_buf_fini(&b2);
	json_decref(j);
	json_decref(j2);
	json_decref(parsed);
	qkm_keyfile_fini(&kf);
	qkm_keyfile_fini(&back);
	return 0;
}
