#!/usr/bin/env bash
# Acquisition between a KMA pair over a simulated QKD link (R-ACQ-1..4):
# both nodes hold equal stock that grows at the link rate, and pair-check
# finds the two sides identical.
. "$(dirname "$0")/lib.sh"
D=$T/two
net_up "$SRC/examples/two-nodes.json" "$D"

wait_for 15 '[ "$(pool keys "$D" A B)" -gt 0 ]' || fail "no keys acquired within 15 s"
s1=$(date +%s.%N); b1=$(pool bytes "$D" A B)
sleep 8
s2=$(date +%s.%N); b2=$(pool bytes "$D" A B)
rate=$(python3 -c "print(($b2-$b1)*8/($s2-$s1))")
python3 -c "import sys; r=$rate; sys.exit(0 if abs(r-1e6)/1e6 <= 0.10 else 1)" ||
	fail "stock grows at $rate bit/s, link rate is 1000000 (R-ACQ-1)"
ok "stock grows at $rate bit/s (link rate 1 Mbit/s)"

# R-ACQ-4 / acceptance: both ends report the same stock.
json=$(status_json "$D")
echo "$json" | js "1 if [(p['keys'],p['bytes']) for n in d['nodes'] if n['id']=='A' for p in n['pools']] == [(p['keys'],p['bytes']) for n in d['nodes'] if n['id']=='B' for p in n['pools']] else exit(1)" >/dev/null ||
	fail "A and B report different stock: $json"
echo "$json" | js "1 if [p['enc_bytes'] for n in d['nodes'] if n['id']=='A' for p in n['pools']] == [p['dec_bytes'] for n in d['nodes'] if n['id']=='B' for p in n['pools']] else exit(1)" >/dev/null ||
	fail "A's encryption keys are not B's decryption keys: $json"
ok "equal stock on both nodes, enc(A) = dec(B)"

out=$("$QKM" ctl pair-check --dir "$D" A B) || fail "pair-check: $out"
echo "$out" | grep -q " 0 mismatches" || fail "pair-check: $out"
ok "$out"

# A pool of many parts (pair-check reads 8 MiB a step, docs/protocol.md):
# every block is compared, the answer is clean, and the Kx link stays up
# throughout (a check that read the whole pool in one step once stalled a
# node until its peer dropped the link).
F=$T/fast
cat >"$T/fast.json" <<'JSON'
{ "name": "fast", "nodes": [ {"id": "A"}, {"id": "B"} ],
  "links": [ {"a": "A", "b": "B", "rate_bps": 400000000, "unit_bits": 1048576, "qber": 0.01} ],
  "saes": [ {"id": "sae-alice", "node": "A"}, {"id": "sae-bob", "node": "B"} ] }
JSON
net_up "$T/fast.json" "$F"
wait_for 60 '[ "$(pool bytes "$F" A B)" -gt 100000000 ]' || fail "fast link: no 100 MB of stock within 60 s"
"$QKM" sim fault --dir "$F" A-B down >/dev/null || fail "sim fault down"
sleep 1
blocks=$(sqlite3 "$F/A/keys.db" "select count(*) from blocks")
la=$(wc -l <"$F/A/log") lb=$(wc -l <"$F/B/log")
out=$("$QKM" ctl pair-check --dir "$F" A B) || fail "pair-check of a large pool: $out"
echo "$out" | grep -q ": $blocks blocks match, 0 mismatches, 0 in flight" || fail "pair-check: $out (A holds $blocks blocks)"
down=$( (tail -n +$((la + 1)) "$F/A/log"; tail -n +$((lb + 1)) "$F/B/log") | grep "Kx link to . down" || true)
[ -z "$down" ] || fail "a Kx link went down during the check: $down"
ok "$out ($(du -m "$F/A/keys.db-keys" | cut -f1) MiB of key data a node), Kx links up throughout"

# Metrics for Prometheus on the admin API (operator certificate).
admin=$(js "d['nodes']['B']['admin']" <"$D/network.json")
m=$(curl -sS --cacert "$D/pki/ca.pem" --cert "$D/pki/admin.pem" --key "$D/pki/admin.key" "$admin/metrics") ||
	fail "GET /metrics"
echo "$m" | grep -qE '^qkm_pool_bytes\{node="B",peer="A",kind="link"\} [1-9][0-9]*$' || fail "no pool stock in /metrics"
echo "$m" | grep -qE '^qkm_acquired_bytes_total\{node="B"\} [1-9]' || fail "no acquisition counter in /metrics"
echo "$m" | grep -q '^# TYPE qkm_link_qber gauge$' || fail "no QBER gauge in /metrics"
ok "/metrics: $(echo "$m" | grep -c '^qkm_') samples, stock and counters non-zero"

# Life-cycle records exist for what happened (R-LC-1): the store has them.
sqlite3 "$D/A/keys.db" "select event from lc" | sort -u | tr '\n' ' ' | grep -q "stored" ||
	fail "no life-cycle records in A's store"
ok "life-cycle records: $(sqlite3 "$D/A/keys.db" "select event||'='||count(*) from lc group by event" | tr '\n' ' ')"
