#!/usr/bin/env bash
# `qkm key`, the application-side ETSI 014 client (R-SUP-7): a key got with
# `enc` at the master's node comes back identical with `dec` at the slave's
# node, once; errors go to stderr with a non-zero exit.
. "$(dirname "$0")/lib.sh"
D=$T/two
net_up "$SRC/examples/two-nodes.json" "$D"
wait_for 15 '"$QKM" key status --dir "$D" --sae sae-alice sae-bob | grep -q "\"stored_key_count\":[1-9]"' ||
	fail "status shows no stock"
enc=$("$QKM" key enc --dir "$D" --sae sae-alice sae-bob --number 2 --size 128) || fail "key enc"
ids=$(echo "$enc" | js "' '.join(k['key_ID'] for k in d['keys'])")
dec=$("$QKM" key dec --dir "$D" --sae sae-bob sae-alice $ids) || fail "key dec"
[ "$(echo "$enc" | js "sorted((k['key_ID'], k['key']) for k in d['keys'])")" = \
  "$(echo "$dec" | js "sorted((k['key_ID'], k['key']) for k in d['keys'])")" ] || fail "keys differ"
ok "qkm key enc at A, dec at B: identical keys"
if out=$("$QKM" key dec --dir "$D" --sae sae-bob sae-alice $ids 2>&1); then fail "second dec succeeded"; fi
echo "$out" | grep -q "HTTP 400" || fail "second dec: $out"
ok "second dec refused: $out"
if out=$("$QKM" key enc --dir "$D" --sae sae-nobody sae-bob 2>&1); then fail "unknown SAE accepted"; fi
echo "$out" | grep -q "no SAE 'sae-nobody'" || fail "unknown SAE: $out"
ok "unknown SAE named: $out"
