#!/usr/bin/env bash
# A QKD device's own ETSI GS QKD 014 key API as a link's key source (R-ACQ-5,
# docs/operations.md "Key sources"): the simulator exposes the device API of
# the module pair; the link's leader is the device's master SAE and draws
# keys with enc_keys, the follower is the slave and fetches the IDs the
# leader's rounds name with dec_keys; acquisition confirms them by digest as
# with any source. Pools fill on both ends at the link's rate, pair-check is
# clean, an application gets identical keys at both ends, a module fault
# (flipped bits, a lost key) aborts the round on both sides, the device
# refuses an SAE that is not its master or slave, and kill -9 of either node
# leaves the pair consistent.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/etsi014_lib.sh"
D=$T/dev
# "B" is the topology's a-side, but "A" sorts first: A leads, A is master.
cat >"$T/topo.json" <<'EOF'
{
  "nodes": [ {"id": "B"}, {"id": "A"} ],
  "links": [ {"a": "B", "b": "A", "rate_bps": 1000000, "unit_bits": 4096, "source": "etsi014"} ],
  "saes":  [ {"id": "sae-alice", "node": "A"}, {"id": "sae-bob", "node": "B"} ]
}
EOF
net_up "$T/topo.json" "$D"
js "d['links'][0]['source']['role']" <"$D/A/node.json" | grep -qx master || fail "A is not the master"
js "d['links'][0]['source']['role']" <"$D/B/node.json" | grep -qx slave || fail "B is not the slave"
dev=$(js "d['links'][0]['source']['url']" <"$D/A/node.json")
[ "$dev" = "https://$(js "d['links'][0]['etsi014']" <"$D/sim/sim.json")" ] || fail "A does not read the simulator's device API"
ok "link B-A reads the device at $dev: A master (it leads), B slave"

# The device API as any SAE sees it: Status names both SAEs and KMEs.
C=(--cacert "$D/pki/ca.pem")
st=$(curl -sS "${C[@]}" --cert "$D/A/node.pem" --key "$D/A/node.key" "$dev/api/v1/keys/B/status") || fail "device status"
echo "$st" | pyck "d['master_SAE_ID'] == 'A' and d['slave_SAE_ID'] == 'B' and d['source_KME_ID'] == 'B-A:A' and d['target_KME_ID'] == 'B-A:B' and d['key_size'] == 4096" ||
	fail "device status: $st"
code=$(curl -sS -o /dev/null -w '%{http_code}' "${C[@]}" --cert "$D/saes/sae-alice.pem" --key "$D/saes/sae-alice.key" \
	-X POST -H 'Content-Type: application/json' -d '{"number": 1}' "$dev/api/v1/keys/B/enc_keys")
[ "$code" = 401 ] || fail "the device gave keys to an SAE that is neither its master nor its slave: HTTP $code"
ok "device Status: $st; a third SAE refused (401)"

wait_for 20 '[ "$(pool keys "$D" A B)" -gt 1000 ] && [ "$(pool keys "$D" B A)" -gt 1000 ]' ||
	fail "pools did not fill from the device: A $(pool keys "$D" A B), B $(pool keys "$D" B A)"
s1=$(date +%s.%N); b1=$(pool bytes "$D" A B)
sleep 6
s2=$(date +%s.%N); b2=$(pool bytes "$D" A B)
rate=$(python3 -c "print(int(($b2-$b1)*8/($s2-$s1)))")
python3 -c "import sys; sys.exit(0 if abs($rate-1e6)/1e6 <= 0.2 else 1)" ||
	fail "stock grows at $rate bit/s from the device, link rate 1000000"
wait_for 10 stock_equal "$D" A B || fail "A and B report different stock"
[ "$(link_field "$D" A module_up)" = True ] && [ "$(link_field "$D" B module_up)" = True ] ||
	fail "module_up is not true at both ends"
ok "pools fill on both ends from the device at $rate bit/s (link 1 Mbit/s), stock equal, module_up"
wait_for 10 pair_clean "$D" A B || fail "pair-check: $("$QKM" ctl pair-check --dir "$D" A B)"
ok "$("$QKM" ctl pair-check --dir "$D" A B)"

# ETSI 014 (Ak): an application's key at A comes back identical at B.
enc=$("$QKM" key enc --dir "$D" --sae sae-alice sae-bob --number 4 --size 256) || fail "key enc"
ids=$(echo "$enc" | js "' '.join(k['key_ID'] for k in d['keys'])")
dec=$("$QKM" key dec --dir "$D" --sae sae-bob sae-alice $ids) || fail "key dec"
[ "$(echo "$enc" | js "sorted((k['key_ID'], k['key']) for k in d['keys'])")" = \
  "$(echo "$dec" | js "sorted((k['key_ID'], k['key']) for k in d['keys'])")" ] || fail "keys differ"
ok "ETSI 014: 4 keys from enc_keys at A identical from dec_keys at B"

# Module faults at the slave's module: its copy differs, or is lost.
"$QKM" sim fault --dir "$D" --side B B-A flip 3 >/dev/null || fail "sim fault flip"
wait_for 10 'grep -q "aborted: MAC mismatch" "$D/B/log" && grep -q "aborted by B: MAC mismatch" "$D/A/log"' ||
	fail "a flipped key did not abort its round on both sides"
ok "a key that differs at the slave's module: the round aborted on both sides"
"$QKM" sim fault --dir "$D" --side B B-A drop >/dev/null || fail "sim fault drop"
wait_for 10 'grep -q "not fetched from the QKD device (refused): their round aborts" "$D/B/log" && grep -q "aborted by B: QKD-key .* missing at B" "$D/A/log"' ||
	fail "a key lost at the slave's module did not abort its round on both sides"
ok "a key lost at the slave's module: dec_keys refused, the round aborted on both sides"
wait_for 10 pair_clean "$D" A B || fail "pair-check after the faults: $("$QKM" ctl pair-check --dir "$D" A B)"
ok "pair-check clean after the faults"

# kill -9 of either node mid-acquisition, restart: the pair reconcile.
for victim in B A; do
	sleep 0.$((RANDOM % 9 + 1))
	kill -9 "$(node_pid "$D" $victim)"
	"$QKM" net restart --dir "$D" $victim >/dev/null || fail "restart $victim"
	wait_for 20 pair_clean "$D" A B || fail "pair-check after killing $victim: $("$QKM" ctl pair-check --dir "$D" A B)"
	before=$(pool keys "$D" A B)
	wait_for 10 '[ "$(pool keys "$D" A B)" -gt "$before" ]' || fail "acquisition did not resume after killing $victim"
	ok "killed $victim, restarted: pair-check clean, acquisition resumed"
done
enc=$("$QKM" key enc --dir "$D" --sae sae-alice sae-bob --number 2 --size 256) || fail "key enc after crashes"
ids=$(echo "$enc" | js "' '.join(k['key_ID'] for k in d['keys'])")
dec=$("$QKM" key dec --dir "$D" --sae sae-bob sae-alice $ids) || fail "key dec after crashes"
[ "$(echo "$enc" | js "sorted((k['key_ID'], k['key']) for k in d['keys'])")" = \
  "$(echo "$dec" | js "sorted((k['key_ID'], k['key']) for k in d['keys'])")" ] || fail "keys differ after crashes"
ok "ETSI 014 keys identical at both ends after the crashes"
