/* key.c - `qkm key`: an application-side ETSI GS QKD 014 client for shell
 * scripts and interop tests. It speaks to an SAE's node with that SAE's
 * certificate and prints the node's JSON answer on stdout.
 *   qkm key status --dir D --sae SAE SLAVE
 *   qkm key enc    --dir D --sae SAE SLAVE [--number N] [--size BITS]
 *   qkm key dec    --dir D --sae SAE MASTER KEY_ID...
 * --url/--cert/--key/--ca replace what --dir provides (a real deployment). */
#include "cli/cli.h"
#include "core/id.h"
#include "core/log.h"
#include "core/secret.h"
#include "net/http.h"
#include "proto/status_json.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f)
{
	fprintf(f, "usage: qkm key status --dir DIR --sae SAE SLAVE\n"
		   "       qkm key enc    --dir DIR --sae SAE SLAVE [--number N] [--size BITS]\n"
		   "       qkm key dec    --dir DIR --sae SAE MASTER KEY_ID...\n"
		   "  --url URL --cert PEM --key PEM --ca PEM   instead of (or over) --dir\n");
}

int cli_key(int argc, char **argv)
{
	const char *dir = NULL, *sae = NULL, *url = NULL, *cert = NULL, *key = NULL, *ca = NULL;
	const char *pos[QKM_ETSI_MAX_POS];
	unsigned long number = 0, size = 0;
	int npos = 0, rc = 1;
	qkm_log_init("qkm key", QKM_LOG_ERROR);
	for (int i = 1; i < argc; i++)
		if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			usage(stdout);
			return 0;
		}
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	for (int i = 2; i < argc; i++) {
		const char *a = argv[i];
		const char **opt = !strcmp(a, "--dir")    ? &dir
				   : !strcmp(a, "--sae")  ? &sae
				   : !strcmp(a, "--url")  ? &url
				   : !strcmp(a, "--cert") ? &cert
				   : !strcmp(a, "--key")  ? &key
				   : !strcmp(a, "--ca")   ? &ca
							  : NULL;
		if (opt && i + 1 < argc) {
			*opt = argv[++i];
		} else if ((!strcmp(a, "--number") || !strcmp(a, "--size")) && i + 1 < argc) {
			char *end;
			unsigned long v = strtoul(argv[++i], &end, 10);
			if (*end || v == 0 || v > 1000000) {
				fprintf(stderr, "qkm key: %s needs a positive number\n", a);
				return 2;
			}
			*(a[2] == 'n' ? &number : &size) = v;
		} else if (a[0] != '-' && npos < QKM_ETSI_MAX_POS) {
			pos[npos++] = a;
		} else {
			usage(stderr);
			return 2;
		}
	}
	const char *cmd = argv[1];
	bool is_dec = !strcmp(cmd, "dec");
	if ((strcmp(cmd, "status") && strcmp(cmd, "enc") && !is_dec) || npos < 1 ||
	    (!is_dec && npos != 1) || (is_dec && npos < 2) || (!sae && (!cert || !key))) {
		usage(stderr);
		return 2;
	}
	for (int i = 0; i < npos; i++)
		if (!qkm_name_valid(pos[i]) && !(is_dec && i > 0)) {
			fprintf(stderr, "qkm key: '%s' is not a valid SAE ID\n", pos[i]);
			return 2;
		}
	struct qkm_network *net = NULL;
	char base[QKM_ADDR_MAX + 16], c_cert[PATH_MAX], c_key[PATH_MAX], c_ca[PATH_MAX];
	char *body = NULL, *resp = NULL;
	if (dir) {
		char path[PATH_MAX + 16], err[512];
		net = malloc(sizeof(*net));
		snprintf(path, sizeof(path), "%s/network.json", dir);
		if (!net || qkm_network_load(path, net, err, sizeof(err))) {
			fprintf(stderr, "qkm key: %s\n", net ? err : "out of memory");
			goto out;
		}
		size_t i = 0;
		while (i < net->n_saes && (!sae || strcmp(net->saes[i].id, sae)))
			i++;
		if (i == net->n_saes) {
			fprintf(stderr, "qkm key: no SAE '%s' in %s\n", sae ? sae : "?", dir);
			goto out;
		}
		size_t j = 0;
		while (j < net->n_nodes && strcmp(net->nodes[j].id, net->saes[i].node))
			j++;
		if (j == net->n_nodes || !net->nodes[j].etsi014[0]) {
			fprintf(stderr, "qkm key: SAE '%s' is at node %s, which has no ETSI 014 API\n",
				sae, net->saes[i].node);
			goto out;
		}
		snprintf(base, sizeof(base), "%s", net->nodes[j].etsi014);
		snprintf(c_cert, sizeof(c_cert), "%s", net->saes[i].cert);
		snprintf(c_key, sizeof(c_key), "%s", net->saes[i].key);
		snprintf(c_ca, sizeof(c_ca), "%s", net->ca);
	}
	if (url)
		snprintf(base, sizeof(base), "%s", url);
	if (cert)
		snprintf(c_cert, sizeof(c_cert), "%s", cert);
	if (key)
		snprintf(c_key, sizeof(c_key), "%s", key);
	if (ca)
		snprintf(c_ca, sizeof(c_ca), "%s", ca);
	if (!dir && (!url || !ca)) {
		fprintf(stderr, "qkm key: without --dir, give --url, --cert, --key and --ca\n");
		goto out;
	}
	char target[QKM_ADDR_MAX + 200];
	const char *method = "GET";
	if (!strcmp(cmd, "status")) {
		snprintf(target, sizeof(target), "%s/api/v1/keys/%s/status", base, pos[0]);
	} else if (!strcmp(cmd, "enc")) {
		snprintf(target, sizeof(target), "%s/api/v1/keys/%s/enc_keys", base, pos[0]);
		method = "POST";
		body = malloc(96);
		if (!body)
			goto out;
		if (size)
			snprintf(body, 96, "{\"number\": %lu, \"size\": %lu}", number ? number : 1, size);
		else
			snprintf(body, 96, "{\"number\": %lu}", number ? number : 1);
	} else {
		snprintf(target, sizeof(target), "%s/api/v1/keys/%s/dec_keys", base, pos[0]);
		method = "POST";
		size_t cap = 32 + (size_t)npos * 64;
		body = malloc(cap);
		if (!body)
			goto out;
		size_t n = (size_t)snprintf(body, cap, "{\"key_IDs\": [");
		for (int i = 1; i < npos; i++) {
			struct qkm_id id;
			if (qkm_id_parse(pos[i], &id) || strlen(pos[i]) != 36) {
				fprintf(stderr, "qkm key: '%s' is not a key_ID (a UUID)\n", pos[i]);
				goto out;
			}
			n += (size_t)snprintf(body + n, cap - n, "%s{\"key_ID\": \"%s\"}", i > 1 ? ", " : "",
					      pos[i]);
		}
		snprintf(body + n, cap - n, "]}");
	}
	int status;
	int r = qkm_https_request(target, method, body, c_ca, c_cert, c_key, 15000, &status, &resp);
	if (r) {
		fprintf(stderr, "qkm key: %s: %s\n", target, qkm_strerror(r));
		goto out;
	}
	if (status == 200) {
		printf("%s\n", resp);
		rc = 0;
	} else {
		fprintf(stderr, "qkm key: HTTP %d: %s\n", status, resp ? resp : "");
	}
out:
	if (resp) {
		qkm_cleanse(resp, strlen(resp)); /* it held key bytes (base64) */
		free(resp);
	}
	free(body);
	free(net);
	return rc;
}
