#!/usr/bin/env bash
# Bad input gets a clear error and changes nothing: malformed topologies and
# configs, garbage and truncated frames on Kx, a certificate from another
# CA. The node keeps running and its pool stays consistent.
. "$(dirname "$0")/lib.sh"

# Topology with a typo: refused, naming the field; nothing started.
cat >"$T/bad.json" <<'J'
{"nodes": [{"id": "A"}, {"id": "B"}],
 "links": [{"a": "A", "b": "B", "rate_bps": 1000000, "unit_bits": 4096, "qbr": 0.01}]}
J
out=$("$QKM" net up "$T/bad.json" --dir "$T/badnet" 2>&1) && fail "bad topology accepted"
echo "$out" | grep -q "links\[0\].qbr: unknown field" || fail "error does not name the field: $out"
[ ! -e "$T/badnet/network.json" ] || fail "bad topology started something"
ok "bad topology refused: $out"

echo '{"nodes": [{"id": "A"}], "links": [], "saes": [{"id": "s", "node": "Z"}]}' >"$T/bad2.json"
out=$("$QKM" net up "$T/bad2.json" --dir "$T/badnet" 2>&1) && fail "SAE on unknown node accepted"
echo "$out" | grep -q "saes\[0\]" || fail "error does not name the SAE: $out"
ok "SAE on unknown node refused"

# R-REL-3: central-xor without its central node; R-REL-6: a line of 17
# nodes needs a relay path longer than 16. Both refused before anything runs.
echo '{"nodes": [{"id": "A"}], "policy": {"relay": "central-xor"}}' >"$T/bad3.json"
out=$("$QKM" net up "$T/bad3.json" --dir "$T/badnet" 2>&1) && fail "central-xor without central accepted"
echo "$out" | grep -q "policy.central: missing" || fail "error does not name policy.central: $out"
python3 -c '
import json
n = ["n%02d" % i for i in range(17)]
print(json.dumps({"nodes": [{"id": x} for x in n],
                  "links": [{"a": n[i], "b": n[i + 1], "rate_bps": 1000, "unit_bits": 256}
                            for i in range(16)]}))' >"$T/long.json"
out=$("$QKM" net up "$T/long.json" --dir "$T/badnet" 2>&1) && fail "17-node relay path accepted"
echo "$out" | grep -q "nodes\[0\]: cannot route from 'n00'" || fail "long path: $out"
[ ! -e "$T/badnet/network.json" ] || fail "bad relay topology started something"
ok "bad relay topologies refused: $out"

D=$T/two
net_up "$SRC/examples/two-nodes.json" "$D"
wait_for 15 '[ "$(pool keys "$D" A B)" -gt 0 ]' || fail "no keys acquired"

# A node config with a bad value: --check names it.
sed 's/"kma_unit_bits": 256/"kma_unit_bits": 257/' "$D/B/node.json" >"$T/badnode.json"
out=$("$QKM" node -c "$T/badnode.json" --check 2>&1) && fail "bad node config accepted"
echo "$out" | grep -q "multiple of 8" || fail "node --check: $out"
ok "node --check: $out"
"$QKM" node -c "$D/B/node.json" --check >/dev/null || fail "good node config refused"

# A malformed key file from the module (Kq-1): refused with a clear error,
# the QKD-key is lost at B only, its round aborts, nothing unmatched stored.
"$QKM" sim fault --dir "$D" --side B A-B corrupt >/dev/null
wait_for 10 'grep -q "key file refused" "$D/B/log"' || fail "malformed key file not reported"
ok "malformed key file: $(grep -m1 -o 'key file refused.*' "$D/B/log")"

kx=$(js "d['listen']['kx']" <"$D/B/node.json")
pidB=$(node_pid "$D" B)
send() { # send CERT KEY < bytes: a TLS client that writes bytes then closes
	timeout 5 openssl s_client -connect "$kx" -cert "$1" -key "$2" -CAfile "$D/pki/ca.pem" \
		-quiet -no_ign_eof >/dev/null 2>&1 || true
}
# Garbage after a valid handshake from A's identity: link dropped.
head -c 4000 /dev/urandom | send "$D/A/node.pem" "$D/A/node.key"
# A frame length beyond the maximum.
printf '\x7f\xff\xff\xff\x01\x00\x01\x00\x00\x00\x00' | send "$D/A/node.pem" "$D/A/node.key"
# A truncated frame: the peer dies mid-message.
printf '\x00\x00\x01\x00\x01\x00\x14' | send "$D/A/node.pem" "$D/A/node.key"
# A certificate from another CA: the handshake fails.
"$QKM" net up "$SRC/examples/two-nodes.json" --dir "$T/other" >/dev/null 2>&1 && NETS="$NETS $T/other"
"$QKM" net down --dir "$T/other" >/dev/null
printf 'hello' | send "$T/other/A/node.pem" "$T/other/A/node.key"
# An SAE certificate on Kx: refused, not a node.
printf 'hello' | send "$D/saes/sae-bob.pem" "$D/saes/sae-bob.key"

kill -0 "$pidB" || fail "node B died on bad input"
grep -qE "bad frame length|malformed frame|frame before HELLO|unexpected" "$D/B/log" || fail "garbage frames not reported"
grep -q "TLS handshake failed" "$D/B/log" || fail "foreign certificate not reported"
ok "garbage, oversized and truncated frames, foreign certificate: logged, B still running"

wait_for 15 pair_clean "$D" A B || fail "pair-check after bad input"
b1=$(pool keys "$D" A B); sleep 2
[ "$(pool keys "$D" A B)" -gt "$b1" ] || fail "acquisition stopped after bad input"
ok "link re-established, acquisition continues, pair-check clean"
