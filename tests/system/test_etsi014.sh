#!/usr/bin/env bash
# ETSI GS QKD 014 v1.1.1 key delivery (the Ak interface), black box, written
# from the standard's text plus qkm's stated rules (R-SUP-1, -3, -7, -8):
# Status, Get key (enc_keys GET/POST), Get key with key IDs (dec_keys
# GET/POST), the data formats of clause 6 and the codes 200/400/401/503.
# Two networks: examples/two-nodes.json (A-B, sae-alice at A, sae-bob at B)
# for the basic flow, and a topology written here that adds sae-eve at A,
# sae-carol at B (additional slave) and an isolated node C with sae-dave.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/etsi014_lib.sh"
: >"$T/all_ids"

D=$T/two
net_up "$SRC/examples/two-nodes.json" "$D"

cat >"$T/multi.json" <<'EOF'
{
  "nodes": [ {"id": "A"}, {"id": "B"}, {"id": "C"} ],
  "links": [ {"a": "A", "b": "B", "rate_bps": 50000, "unit_bits": 4096, "qber": 0.01} ],
  "saes":  [ {"id": "sae-alice", "node": "A"}, {"id": "sae-eve", "node": "A"},
             {"id": "sae-bob", "node": "B"}, {"id": "sae-carol", "node": "B"},
             {"id": "sae-dave", "node": "C"} ],
  "policy": { "relay": "otp", "aes_fallback": false, "after_supply": "delete" }
}
EOF
M=$T/multi
net_up "$T/multi.json" "$M"

wait_for 20 '[ "$(pool keys "$D" A B)" -gt 0 ]' || fail "two-nodes: no A-B stock within 20 s"
# The multi network's link is stopped as soon as it has a little stock, so
# that the 503 part at the end has only a small pool to drain; every other
# part there uses a handful of keys.
wait_for 30 '[ "$(stored "$M" sae-alice sae-bob)" -ge 32 ]' ||
	fail "multi: Status at A never reports 32 keys: $(q "$M" sae-alice status sae-bob)"
"$QKM" sim fault --dir "$M" A-B down >/dev/null || fail "sim fault A-B down"
wait_for 10 '[ "$(link_field "$M" A module_up)" = False ]' || fail "multi: A-B module still up after fault down"
wait_for 20 etsi_ready "$D" sae-alice sae-bob || fail "two-nodes: Status at A never reports stock: $(q "$D" sae-alice status sae-bob)"
ok "two-nodes: A-B pool has stock, Status answers"

# ---------------------------------------------------------------- Status (5.1, 6.1)
# R-SUP-1/R-SUP-3: the master's KME describes the keys it can deliver for this slave.
out=$(q "$D" sae-alice status sae-bob)
echo "$out" | pyck "d['code'] == 200" || fail "Status: $out"
for f in source_KME_ID target_KME_ID master_SAE_ID slave_SAE_ID; do
	echo "$out" | pyck "type(d['body'].get('$f')) is str" || fail "Status: $f missing or not a string: $out"
done
for f in key_size stored_key_count max_key_count max_key_per_request max_key_size min_key_size max_SAE_ID_count; do
	echo "$out" | pyck "type(d['body'].get('$f')) is int and d['body']['$f'] >= 0" ||
		fail "Status: $f missing or not a non-negative integer: $out"
done
echo "$out" | pyck "'status_extension' not in d['body'] or isinstance(d['body']['status_extension'], dict)" ||
	fail "Status: status_extension is not an object: $out"
echo "$out" | pyck "d['body']['source_KME_ID'] == 'A' and d['body']['target_KME_ID'] == 'B'" ||
	fail "Status: source/target KME must be the master's node A / the slave's node B: $out"
echo "$out" | pyck "d['body']['master_SAE_ID'] == 'sae-alice' and d['body']['slave_SAE_ID'] == 'sae-bob'" ||
	fail "Status: master_SAE_ID must be the caller (from its certificate), slave_SAE_ID the URL's: $out"
echo "$out" | pyck "0 < d['body']['min_key_size'] <= d['body']['key_size'] <= d['body']['max_key_size'] and all(d['body'][f] % 8 == 0 for f in ('min_key_size','key_size','max_key_size'))" ||
	fail "Status: need 0 < min_key_size <= key_size <= max_key_size, multiples of 8: $out"
echo "$out" | pyck "d['body']['max_key_per_request'] >= 1 and 0 < d['body']['stored_key_count'] <= d['body']['max_key_count']" ||
	fail "Status: need max_key_per_request >= 1, 0 < stored_key_count <= max_key_count: $out"
ok "Status A->B: all 11 fields, JSON types, KME/SAE IDs, 0<min<=key_size<=max, counts"
KS=$(echo "$out" | js "d['body']['key_size']")
MIN=$(echo "$out" | js "d['body']['min_key_size']")
MAX=$(echo "$out" | js "d['body']['max_key_size']")
MAXN=$(echo "$out" | js "d['body']['max_key_per_request']")

# Any registered SAE may be a master: the reverse direction from B.
out=$(q "$D" sae-bob status sae-alice)
echo "$out" | pyck "d['code'] == 200 and d['body']['source_KME_ID'] == 'B' and d['body']['target_KME_ID'] == 'A' and d['body']['master_SAE_ID'] == 'sae-bob' and d['body']['slave_SAE_ID'] == 'sae-alice'" ||
	fail "Status B->A: $out"
ok "Status B->A: source B, target A, master sae-bob, slave sae-alice"

# ---------------------------------------------------------------- Get key (5.2, 6.2, 6.3)
# Defaults: number 1, size = key_size from Status (clause 6.2).
out=$(q "$D" sae-alice enc-get sae-bob)
expect_keys "$out" 1 $((KS / 8)) "enc_keys GET default" enc
K1=$(ids_of "$out"); F1=$(fps_of "$out")
ok "enc_keys GET without parameters: 1 key of key_size=$KS bits, UUID key_ID, base64 key"

# A size other than the default when the range allows one (multiple of 8, in range).
SZ=$KS
[ "$MIN" -ne "$KS" ] && SZ=$MIN
[ "$SZ" -eq "$KS" ] && [ $((KS + 8)) -le "$MAX" ] && SZ=$((KS + 8))
N3=3; [ "$MAXN" -lt 3 ] && N3=$MAXN
out=$(q "$D" sae-alice enc-get sae-bob --number $N3 --size $SZ)
expect_keys "$out" $N3 $((SZ / 8)) "enc_keys GET number=$N3 size=$SZ" enc
K3=$(ids_of "$out"); F3=$(fps_of "$out")
ok "enc_keys GET number=$N3&size=$SZ: $N3 keys of $SZ bits"

N2=2; [ "$MAXN" -lt 2 ] && N2=1
out=$(q "$D" sae-alice enc-post sae-bob --body "{\"number\": $N2, \"size\": $SZ}")
expect_keys "$out" $N2 $((SZ / 8)) "enc_keys POST number/size" enc
K2=$(ids_of "$out"); F2=$(fps_of "$out")
ok "enc_keys POST {number: $N2, size: $SZ}: $N2 keys of $SZ bits"

out=$(q "$D" sae-alice enc-post sae-bob --body '{}')
expect_keys "$out" 1 $((KS / 8)) "enc_keys POST {}" enc
K0=$(ids_of "$out"); F0=$(fps_of "$out")
ok "enc_keys POST {}: defaults, 1 key of key_size"

# Largest request the Status allows: max_key_per_request keys of max_key_size.
out=$(q "$D" sae-alice enc-post sae-bob --body "{\"number\": $MAXN, \"size\": $MAX}")
expect_keys "$out" "$MAXN" $((MAX / 8)) "enc_keys POST at the limits" enc
ok "enc_keys POST number=max_key_per_request=$MAXN size=max_key_size=$MAX accepted"
KMAX=$(ids_of "$out")

# ---------------------------------------------------------------- Get key with key IDs (5.3, 6.4)
# R-SUP-7: the slave gets the identical key by its ID from its own KME; the
# URL names the master SAE.
out=$(q "$D" sae-bob dec-get sae-alice "$K1")
expect_keys "$out" 1 $((KS / 8)) "dec_keys GET"
[ "$(fps_of "$out")" = "$F1" ] || fail "dec_keys GET: bytes differ from enc_keys (R-SUP-7): $(fps_of "$out") vs $F1"
ok "dec_keys GET key_ID by sae-bob at B: identical key (SHA-256 equal)"

# shellcheck disable=SC2086
out=$(q "$D" sae-bob dec-post sae-alice $K3)
expect_keys "$out" $N3 $((SZ / 8)) "dec_keys POST"
[ "$(fps_of "$out")" = "$F3" ] || fail "dec_keys POST: keys differ (R-SUP-7): $(fps_of "$out") vs $F3"
ok "dec_keys POST key_IDs ($N3): identical keys"

# R-SUP-8: a key is supplied once; a second dec_keys is an error with no key.
out=$(q "$D" sae-bob dec-get sae-alice "$K1")
expect_error "$out" "400|401" "second dec_keys GET of the same key_ID"
# shellcheck disable=SC2086
out=$(q "$D" sae-bob dec-post sae-alice $K3)
expect_error "$out" "400|401" "second dec_keys POST of the same key_IDs"
ok "second dec_keys of a supplied key_ID (GET and POST): error, no key (R-SUP-8)"

# A request mixing a supplied and a fresh ID returns nothing; the fresh key
# was therefore not supplied and stays available (R-SUP-7, R-SUP-8).
first2=$(echo "$K2" | cut -d' ' -f1)
out=$(q "$D" sae-bob dec-post sae-alice "$K1" "$first2")
expect_error "$out" "400|401" "dec_keys POST of one supplied + one fresh key_ID"
# shellcheck disable=SC2086
out=$(q "$D" sae-bob dec-post sae-alice $K2)
expect_keys "$out" $N2 $((SZ / 8)) "dec_keys POST after a refused mixed request"
[ "$(fps_of "$out")" = "$F2" ] || fail "dec_keys POST of enc POST keys: keys differ: $(fps_of "$out") vs $F2"
ok "mixed supplied/fresh dec_keys refused whole; fresh keys still delivered after, identical"

# The master is not the slave: its own dec_keys for its keys is 401 (5.3).
out=$(q "$D" sae-alice dec-get sae-alice "$K0")
expect_error "$out" 401 "dec_keys by the master SAE itself"
out=$(q "$D" sae-bob dec-get sae-alice "$K0")
expect_keys "$out" 1 $((KS / 8)) "dec_keys by sae-bob after the master's refused attempt"
[ "$(fps_of "$out")" = "$F0" ] || fail "dec_keys after refused attempt: keys differ"
ok "master calling dec_keys for its own key_ID: 401; sae-bob still gets it"

# ---------------------------------------------------------------- 400: bad requests
# Clause 5: 400 "Bad request format", body is Error (6.5). qkm: a clear message.
e400() { expect_error "$1" 400 "$2"; ok "400 + message: $2"; }
e400 "$(q "$D" sae-alice enc-post sae-bob --body '{"number": 1,')" "malformed JSON body (enc_keys POST)"
e400 "$(q "$D" sae-alice enc-post sae-bob --body '[1, 2]')" "Key request not a JSON object"
e400 "$(q "$D" sae-alice enc-post sae-bob --body '{"number": "2"}')" "number as a string"
e400 "$(q "$D" sae-alice enc-post sae-bob --body "{\"size\": $KS.5}")" "size as a float ($KS.5)"
e400 "$(q "$D" sae-alice enc-post sae-bob --body '{"additional_slave_SAE_IDs": "sae-bob"}')" "additional_slave_SAE_IDs not an array"
e400 "$(q "$D" sae-alice enc-get sae-bob --query 'number=two')" "GET number=two"
e400 "$(q "$D" sae-alice enc-get sae-bob --query "size=$KS.5")" "GET size=$KS.5"
if [ $((MIN + 4)) -le "$MAX" ]; then
	e400 "$(q "$D" sae-alice enc-post sae-bob --body "{\"size\": $((MIN + 4))}")" "size $((MIN + 4)) not a multiple of 8 (POST)"
	e400 "$(q "$D" sae-alice enc-get sae-bob --size $((MIN + 4)))" "size $((MIN + 4)) not a multiple of 8 (GET)"
fi
e400 "$(q "$D" sae-alice enc-post sae-bob --body "{\"size\": $((MAX + 8))}")" "size $((MAX + 8)) above max_key_size $MAX"
e400 "$(q "$D" sae-alice enc-get sae-bob --size $((MAX + 8)))" "GET size above max_key_size"
if [ "$MIN" -gt 8 ]; then
	e400 "$(q "$D" sae-alice enc-post sae-bob --body "{\"size\": $((MIN - 8))}")" "size $((MIN - 8)) below min_key_size $MIN"
fi
e400 "$(q "$D" sae-alice enc-post sae-bob --body "{\"number\": $((MAXN + 1))}")" "number $((MAXN + 1)) above max_key_per_request $MAXN"
e400 "$(q "$D" sae-alice enc-get sae-bob --number $((MAXN + 1)))" "GET number above max_key_per_request"
e400 "$(q "$D" sae-bob dec-post sae-alice --body '{"key_IDs": [')" "malformed JSON body (dec_keys POST)"
e400 "$(q "$D" sae-bob dec-post sae-alice --body '{"key_IDs": "x"}')" "key_IDs not an array"
e400 "$(q "$D" sae-bob dec-get sae-alice not-a-uuid)" "dec_keys GET key_ID not a UUID"

# extension_mandatory: "KME shall handle or return an error" (6.2) -> an
# unknown one is 400 naming it; extension_optional: "KME may ignore".
out=$(q "$D" sae-alice enc-post sae-bob --body '{"extension_mandatory": [{"qkm_no_such_ext": true}]}')
expect_error "$out" 400 "unknown mandatory extension"
echo "$out" | pyck "'qkm_no_such_ext' in d['body']['message'] or 'qkm_no_such_ext' in json.dumps(d['body'].get('details'))" ||
	fail "unknown mandatory extension: the error does not name it: $out"
ok "400 + message naming it: unknown extension_mandatory member"
out=$(q "$D" sae-alice enc-post sae-bob --body '{"extension_optional": [{"qkm_no_such_ext": {"a": [1]}}]}')
expect_keys "$out" 1 $((KS / 8)) "unknown optional extension" enc
ok "unknown extension_optional member ignored: 200, 1 key"
# qkm's own extensions (INTERFACES.md, R-SUP-4, R-SUP-9) are understood.
out=$(q "$D" sae-alice enc-post sae-bob --body '{"extension_mandatory": [{"qkm_security_level": "its"}, {"qkm_key_combination": "none"}]}')
expect_keys "$out" 1 $((KS / 8)) "mandatory qkm_security_level=its + qkm_key_combination=none" enc
ok "mandatory qkm_security_level \"its\" + qkm_key_combination \"none\" on a direct link: 200"
e400 "$(q "$D" sae-alice enc-post sae-bob --body '{"extension_mandatory": [{"qkm_security_level": "ultra"}]}')" "qkm_security_level with a bad value"

# ---------------------------------------------------------------- 401: who may ask (R-SUP-1)
# A certificate from another CA: the mutual TLS handshake fails, no HTTP at all.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
	-subj "/O=qkm/OU=ca/CN=rogue-ca" -keyout "$T/rogue-ca.key" -out "$T/rogue-ca.pem" >/dev/null 2>&1 ||
	fail "openssl: rogue CA"
mkcert() { # mkcert NAME CA_PEM CA_KEY: an SAE certificate as qkm's PKI would issue (OU=sae, CN=NAME)
	openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/O=qkm/OU=sae/CN=$1" \
		-keyout "$T/$1.key" -out "$T/$1.csr" >/dev/null 2>&1 &&
		printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth,serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n' >"$T/$1.ext" &&
		openssl x509 -req -in "$T/$1.csr" -CA "$2" -CAkey "$3" -CAcreateserial -days 2 \
			-extfile "$T/$1.ext" -out "$T/$1.pem" >/dev/null 2>&1
}
mkcert sae-alice-forged "$T/rogue-ca.pem" "$T/rogue-ca.key" || fail "openssl: forged cert"
out=$(q "$D" sae-alice --cert "$T/sae-alice-forged.pem" --key "$T/sae-alice-forged.key" status sae-bob)
echo "$out" | pyck "d['code'] == 0 and d['error'] in ('tls', 'conn')" ||
	fail "a client certificate from another CA must fail the TLS handshake: $out"
ok "client certificate from a foreign CA (CN=sae-alice): TLS handshake refused ($(echo "$out" | js "d['error']"))"

# Same CA, but an SAE that is not registered: 401 on every method.
CAKEY=$(dirname "$(js "d['ca']" <"$D/network.json")")/ca.key
if [ -r "$CAKEY" ] && mkcert sae-mallory "$(js "d['ca']" <"$D/network.json")" "$CAKEY"; then
	mal() { q "$D" sae-mallory --at "$1" --cert "$T/sae-mallory.pem" --key "$T/sae-mallory.key" "${@:2}"; }
	expect_error "$(mal A status sae-bob)" 401 "unregistered SAE: Status"
	expect_error "$(mal A enc-get sae-bob)" 401 "unregistered SAE: enc_keys GET"
	expect_error "$(mal A enc-post sae-bob --body '{}')" 401 "unregistered SAE: enc_keys POST"
	out=$(q "$D" sae-alice enc-get sae-bob); expect_keys "$out" 1 $((KS / 8)) "enc for mallory check" enc
	KM=$(ids_of "$out"); FM=$(fps_of "$out")
	expect_error "$(mal B dec-get sae-alice "$KM")" 401 "unregistered SAE: dec_keys GET"
	expect_error "$(mal B dec-post sae-alice "$KM")" 401 "unregistered SAE: dec_keys POST"
	out=$(q "$D" sae-bob dec-get sae-alice "$KM")
	[ "$(fps_of "$out")" = "$FM" ] || fail "key not available to sae-bob after mallory's attempts: $out"
	ok "same-CA certificate of an unregistered SAE (sae-mallory): 401 on status/enc/dec; key still sae-bob's"
else
	echo "# skip: cannot issue a same-CA certificate for an unregistered SAE (no readable CA key)"
fi

# ---------------------------------------------------------------- third SAEs, multicast (multi network)
out=$(q "$M" sae-alice status sae-bob)
MKS=$(echo "$out" | js "d['body']['key_size']")
echo "$out" | pyck "d['body']['max_SAE_ID_count'] >= 1" ||
	fail "multi: max_SAE_ID_count must be >= 1 (qkm supports additional slaves): $out"

# R-SUP-7 + 5.3: only the slave the key was made for gets it; anyone else is
# 401 and the key stays the slave's.
out=$(q "$M" sae-alice enc-get sae-bob --number 2)
expect_keys "$out" 2 $((MKS / 8)) "multi: enc for sae-bob" enc
KB=$(ids_of "$out"); FB=$(fps_of "$out")
for k in $KB; do
	expect_error "$(q "$M" sae-eve dec-get sae-alice "$k")" 401 "sae-eve (at A) dec_keys for sae-bob's key"
	expect_error "$(q "$M" sae-carol dec-get sae-alice "$k")" 401 "sae-carol (at B) dec_keys for sae-bob's key"
	expect_error "$(q "$M" sae-eve --at B dec-get sae-alice "$k")" 401 "sae-eve at B dec_keys for sae-bob's key"
done
# shellcheck disable=SC2086
expect_error "$(q "$M" sae-carol dec-post sae-alice $KB)" 401 "sae-carol dec_keys POST for sae-bob's keys"
# The URL's master SAE must be the one the keys were made for.
first=$(echo "$KB" | cut -d' ' -f1)
expect_error "$(q "$M" sae-bob dec-get sae-eve "$first")" "400|401" "sae-bob dec_keys naming the wrong master (sae-eve)"
# shellcheck disable=SC2086
out=$(q "$M" sae-bob dec-post sae-alice $KB)
expect_keys "$out" 2 $((MKS / 8)) "multi: sae-bob dec after refused third parties"
[ "$(fps_of "$out")" = "$FB" ] || fail "multi: sae-bob's keys differ after third-party attempts"
ok "third SAEs (sae-eve at A and B, sae-carol at B), wrong master in URL: refused; sae-bob then gets identical keys"

# additional_slave_SAE_IDs (6.2): every listed slave gets the same key.
out=$(q "$M" sae-alice enc-post sae-bob --body '{"number": 1, "additional_slave_SAE_IDs": ["sae-carol"]}')
expect_keys "$out" 1 $((MKS / 8)) "multi: enc with additional_slave_SAE_IDs" enc
KC=$(ids_of "$out"); FC=$(fps_of "$out")
expect_error "$(q "$M" sae-eve dec-get sae-alice "$KC")" 401 "sae-eve dec_keys for a bob+carol key"
out=$(q "$M" sae-carol dec-get sae-alice "$KC")
expect_keys "$out" 1 $((MKS / 8)) "multi: sae-carol dec"
[ "$(fps_of "$out")" = "$FC" ] || fail "multi: sae-carol's key differs"
out=$(q "$M" sae-bob dec-get sae-alice "$KC")
expect_keys "$out" 1 $((MKS / 8)) "multi: sae-bob dec of the multicast key"
[ "$(fps_of "$out")" = "$FC" ] || fail "multi: sae-bob's multicast key differs"
expect_error "$(q "$M" sae-carol dec-get sae-alice "$KC")" "400|401" "multi: sae-carol's second dec"
ok "additional_slave_SAE_IDs [sae-carol]: sae-carol and sae-bob both get the identical key, each once; sae-eve 401"

# A slave whose node shares no key pool with the master's node: 400 (qkm rule).
out=$(q "$M" sae-alice enc-get sae-dave)
expect_error "$out" 400 "enc_keys for sae-dave on isolated node C"
out=$(q "$M" sae-alice enc-post sae-bob --body '{"additional_slave_SAE_IDs": ["sae-dave"]}')
expect_error "$out" 400 "additional slave on isolated node C"
ok "enc_keys to a slave with no shared key pool (node C): 400 + message"
# A slave that is not registered at all.
out=$(q "$M" sae-alice enc-get sae-nobody)
expect_error "$out" "400|401" "enc_keys for an unregistered slave"
ok "enc_keys for an unregistered slave SAE: $(echo "$out" | js "d['code']") + message"

# ---------------------------------------------------------------- 503: no key
# The A-B link is down since the start (above); drain the pool; the KME must
# answer 503 + Error. First let A finish what the module had already sent.
wait_for 15 '[ "$(link_field "$M" A in_flight)" = 0 ]' || fail "multi: A-B batches still in flight"
out=$(q "$M" sae-alice status sae-bob)
MMAX=$(echo "$out" | js "d['body']['max_key_size']")
MN=$(echo "$out" | js "d['body']['max_key_per_request']")
drain() { # drain NUMBER SIZE_OR_EMPTY: repeat enc_keys until 503 (bounded)
	local i body
	for i in $(seq 1 5000); do
		if [ -n "$2" ]; then body="{\"number\": $1, \"size\": $2}"; else body="{\"number\": $1}"; fi
		out=$(q "$M" sae-alice enc-post sae-bob --body "$body")
		case $(echo "$out" | js "d['code']") in
		200) ;;
		503) return 0 ;;
		*) fail "draining ($body): unexpected $out" ;;
		esac
	done
	fail "draining ($body): no 503 after 5000 requests"
}
drain "$MN" "$MMAX"
drain "$MN" ""
drain 1 ""
expect_error "$out" 503 "enc_keys with an empty pool"
out=$(q "$M" sae-alice enc-get sae-bob)
expect_error "$out" 503 "enc_keys GET with an empty pool"
out=$(q "$M" sae-alice status sae-bob)
echo "$out" | pyck "d['code'] == 200 and d['body']['stored_key_count'] == 0" ||
	fail "Status after 503: stored_key_count must be 0: $out"
ok "pool drained with the link down: enc_keys 503 + message; Status stored_key_count 0"
"$QKM" sim fault --dir "$M" A-B up >/dev/null || fail "sim fault A-B up"
wait_for 30 etsi_ready "$M" sae-alice sae-bob || fail "stock did not come back after link up"
expect_keys "$(q "$M" sae-alice enc-get sae-bob)" 1 $((MKS / 8)) "enc after link back up" enc
ok "link up again: stock returns, enc_keys 200"

# ---------------------------------------------------------------- global
sort "$T/all_ids" | uniq -d >"$T/dup_ids"
[ ! -s "$T/dup_ids" ] || fail "key_IDs returned twice by enc_keys: $(head -3 "$T/dup_ids")"
ok "$(wc -l <"$T/all_ids") key_IDs seen in this test, none twice (R-SUP-3: UUID unique)"
pair_clean "$D" A B || fail "two-nodes pair-check: $("$QKM" ctl pair-check --dir "$D" A B)"
pair_clean "$M" A B || fail "multi pair-check: $("$QKM" ctl pair-check --dir "$M" A B)"
ok "pair-check clean on both networks after key supply"
