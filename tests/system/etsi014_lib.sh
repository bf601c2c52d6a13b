# etsi014_lib.sh - helpers for the ETSI GS QKD 014 system tests. Source it
# after lib.sh. Every request goes through etsi014_client.py, which prints one
# JSON line {"code": N, "body": ...} with key bytes replaced by SHA-256
# fingerprints (code 0 + "error" when no HTTP response came back).
CLIENT="$(cd "$(dirname "$0")" && pwd)/etsi014_client.py"

# q DIR SAE CMD ARGS...: one request as SAE (at its own node unless --at).
q() { local d=$1 sae=$2; shift 2; python3 "$CLIENT" --net "$d/network.json" --as "$sae" "$@"; }

# pyck 'PYTHON EXPR over d' <<<JSON: true iff the expression holds.
pyck() { python3 -c "import json,sys; d=json.load(sys.stdin); sys.exit(0 if ($1) else 1)"; }

# st DIR MASTER SLAVE FIELD: one field of the Status the master's KME reports.
st() { q "$1" "$2" status "$3" | js "d['body']['$4']"; }

# expect_error JSON CODE WHAT: the response has HTTP code CODE (a
# "|"-separated list allowed), an Error body (clause 6.5: JSON object with a
# string "message"), and carries no key.
expect_error() {
	local out=$1 codes=$2 what=$3
	echo "$out" | pyck "d['code'] in [int(c) for c in '$codes'.split('|')]" ||
		fail "$what: expected HTTP $codes, got: $out"
	echo "$out" | pyck "isinstance(d['body'], dict) and isinstance(d['body'].get('message'), str) and d['body']['message'] != ''" ||
		fail "$what: error body is not an Error document with a message: $out"
	echo "$out" | pyck "'keys' not in d['body']" || fail "$what: an error response carries keys: $out"
	echo "$out" | pyck "'details' not in d['body'] or isinstance(d['body']['details'], list)" ||
		fail "$what: Error 'details' is not an array: $out"
}

# expect_keys JSON N BYTES WHAT [enc]: a 200 Key container (clause 6.3) with
# N keys, each a canonical-base64 key of BYTES bytes under a UUID key_ID, all
# key_IDs distinct. With "enc" (an enc_keys answer) the IDs are noted in
# $T/all_ids for the test's final "no key_ID twice" check.
expect_keys() {
	local out=$1 n=$2 bytes=$3 what=$4
	echo "$out" | pyck "d['code'] == 200" || fail "$what: expected 200, got: $out"
	echo "$out" | pyck "isinstance(d['body'], dict) and isinstance(d['body'].get('keys'), list) and len(d['body']['keys']) == $n" ||
		fail "$what: expected a Key container with $n keys, got: $out"
	echo "$out" | pyck "all(isinstance(k, dict) and isinstance(k.get('key_ID'), str) and k['key_ID_uuid_ok'] for k in d['body']['keys'])" ||
		fail "$what: a key_ID is not a UUID string: $out"
	echo "$out" | pyck "all(k.get('key_b64_ok') for k in d['body']['keys'])" ||
		fail "$what: a key is not (canonical) base64: $out"
	echo "$out" | pyck "all(k['key_bytes'] == $bytes for k in d['body']['keys'])" ||
		fail "$what: a key is not $bytes bytes: $out"
	echo "$out" | pyck "len(set(k['key_ID'] for k in d['body']['keys'])) == $n" ||
		fail "$what: duplicate key_IDs in one container: $out"
	if [ "${5:-}" = enc ]; then echo "$out" | js "'\n'.join(k['key_ID'] for k in d['body']['keys'])" >>"$T/all_ids"; fi
}

ids_of() { echo "$1" | js "' '.join(k['key_ID'] for k in d['body']['keys'])"; }
# fps_of JSON: "key_ID=sha256" pairs, sorted, one line.
fps_of() { echo "$1" | js "' '.join(sorted(k['key_ID']+'='+k['key_sha256'] for k in d['body']['keys']))"; }

# stored DIR MASTER SLAVE: stored_key_count from Status (-1 without an answer).
stored() { q "$1" "$2" status "$3" | js "d['body']['stored_key_count'] if d['code'] == 200 else -1"; }

# etsi_ready DIR MASTER SLAVE: the master's KME answers Status with stock.
etsi_ready() { q "$1" "$2" status "$3" | pyck "d['code'] == 200 and d['body']['stored_key_count'] > 0"; }

# link_field DIR NODE FIELD: a field of NODE's first QKD link in ctl status.
link_field() { status_json "$1" | js "[l['$3'] for n in d['nodes'] if n['id']=='$2' for l in n.get('links', [])][0]"; }
