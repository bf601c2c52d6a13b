#!/usr/bin/env bash
# Per-SAE request rate and in-flight limits at the ETSI 014 interface (issue
# #7; R-SUP-1's KSA; docs/etsi014.md, Limits). A topology whose policy sets
# low limits (20 requests/s, burst 20, 4 in flight) for two SAEs at node A:
#  1. sae-flood sends far more than its rate: the excess gets 503 "over its
#     request rate" with Retry-After, while sae-calm at the same node gets
#     every key it asks for (200); every key sae-flood did get reaches its
#     slave once, identical; the refusals consumed no key.
#  2. with B frozen (a supply round cannot finish), 10 concurrent requests
#     of sae-flood that need a round: 4 wait, the other 6 get 503 "in
#     flight" at once, not queued; sae-calm is not refused for them.
#  3. the refusals show in A's /metrics.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/etsi014_lib.sh"
LIM="python3 $(dirname "$0")/sae_limits.py"

cat >"$T/topo.json" <<'EOF'
{
  "nodes": [ {"id": "A"}, {"id": "B"} ],
  "links": [ {"a": "A", "b": "B", "rate_bps": 1000000, "unit_bits": 4096} ],
  "saes":  [ {"id": "sae-flood", "node": "A"}, {"id": "sae-calm", "node": "A"},
             {"id": "sae-bob", "node": "B"} ],
  "policy": { "limits": {"sae_rate": 20, "sae_burst": 20, "sae_in_flight": 4} }
}
EOF
D=$T/net
net_up "$T/topo.json" "$D"
grep -q '"sae_rate": 20' "$D/A/node.json" || fail "net up did not write the topology's limits into A/node.json"
ok "net up wrote policy.limits into node.json: $(js "d['limits']" <"$D/A/node.json")"
wait_for 30 'etsi_ready "$D" sae-flood sae-bob' || fail "no A-B key stock within 30 s"
S0=$(counter supplied_keys "$D" A)

# ---------------------------------------------------------------- 1. rate
out=$($LIM --net "$D/network.json" flood --flood sae-flood --calm sae-calm --slave sae-bob \
	--seconds 4 --conns 3 --calm-every 0.25) || fail "flood client: $out"
echo "$out" >"$T/flood.json"
F() { js "$1" <"$T/flood.json"; }
[ "$(F "len(d['flood']['errors']) + len(d['calm']['errors'])")" = 0 ] ||
	fail "a connection failed during the flood: $(F "d['flood']['errors'] + d['calm']['errors']")"
nok=$(F "d['flood']['codes'].get('200', 0)")
nref=$(F "d['flood']['codes'].get('503', 0)")
span=$(F "round(d['flood']['span'], 2)")
[ "$(F "sorted(d['flood']['codes'])")" = "['200', '503']" ] ||
	fail "flood: expected only 200 and 503, got $(F "d['flood']['codes']") $(F "d['flood']['messages']")"
[ "$(F "all(m.startswith('SAE sae-flood is over its request rate (20 requests/s, burst 20)') for m in d['flood']['messages'])")" = True ] ||
	fail "flood: a refusal without the rate message: $(F "d['flood']['messages']")"
[ "$(F "d['flood']['no_retry_after'] == 0 and d['flood']['retry_after'] == ['1']")" = True ] ||
	fail "flood: 503s without 'Retry-After: 1': $(F "d['flood']['retry_after']"), $(F "d['flood']['no_retry_after']") without"
# At most the burst plus the rate over the time span (one token of slack
# for the clock reads at either end); at least the burst.
[ "$(F "20 <= $nok <= 20 + 20 * d['flood']['span'] + 1")" = True ] ||
	fail "flood: $nok keys in $span s, outside [20, 20 + 20/s * $span s + 1]"
[ "$nref" -gt $((5 * nok)) ] || fail "flood: only $nref refusals against $nok answers; the client did not flood"
ok "sae-flood: $nok enc_keys answered (200) and $nref refused (503 over its request rate, Retry-After: 1) in $span s"
ncalm=$(F "d['calm']['codes'].get('200', 0)")
[ "$(F "list(d['calm']['codes'])")" = "['200']" ] && [ "$ncalm" -ge 10 ] ||
	fail "sae-calm, at the same node, was not served throughout: $(F "d['calm']['codes']") $(F "d['calm']['messages']")"
ok "sae-calm at the same node: all $ncalm requests answered with a key (200) during the flood"

# Every key sae-flood got reaches sae-bob once, identical; none twice.
ids=$(F "' '.join(k[0] for k in d['flood']['keys'])")
want=$(F "' '.join(sorted(k[0] + '=' + k[1] for k in d['flood']['keys']))")
[ "$(F "len(set(k[0] for k in d['flood']['keys'] + d['calm']['keys']))")" = $((nok + ncalm)) ] ||
	fail "a key_ID was given twice"
# shellcheck disable=SC2086
got=$(q "$D" sae-bob dec-post sae-flood $ids)
expect_keys "$got" "$nok" 32 "sae-bob dec_keys of sae-flood's $nok keys"
[ "$(fps_of "$got")" = "$want" ] || fail "sae-bob's keys differ from sae-flood's"
# shellcheck disable=SC2086
expect_error "$(q "$D" sae-bob dec-post sae-flood $ids)" 400 "second dec_keys of sae-flood's keys"
ok "sae-bob got each of sae-flood's $nok keys once, identical (fingerprints); a second dec_keys: 400"
# The refusals took no key: A counted exactly the keys it answered.
wait_for 10 '[ "$(counter supplied_keys "$D" A)" = $((S0 + nok + ncalm)) ]' ||
	fail "A's supplied_keys went from $S0 to $(counter supplied_keys "$D" A), not by $nok + $ncalm keys answered"
ok "A's supplied_keys grew by exactly the $((nok + ncalm)) keys answered: the $nref refusals consumed none"

# ---------------------------------------------------------------- 2. in flight
# Requests with X25519 combination take a supply round with B (never the
# stock); with B frozen the round waits for B until its timeout (5 s).
body='{"extension_optional": [{"qkm_key_combination": "x25519"}]}'
pidB=$(node_pid "$D" B)
kill -STOP "$pidB"
trap 'kill -CONT '"$pidB"' 2>/dev/null; cleanup' EXIT
q "$D" sae-calm enc-post sae-bob --body "$body" --timeout 30 >"$T/calm.json" &
cpid=$!
$LIM --net "$D/network.json" inflight --as sae-flood --slave sae-bob --n 10 --body "$body" \
	>"$T/inflight.json" || fail "in-flight client"
wait "$cpid" || true
kill -CONT "$pidB"
I() { js "$1" <"$T/inflight.json"; }
held=$(I "sum(1 for a in d['answers'] if 'in flight' not in a['message'])")
refused=$(I "sum(1 for a in d['answers'] if a['code'] == 503 and a['message'] == 'SAE sae-flood already has 4 requests in flight, its limit; retry when one is answered' and a['retry_after'] == '1')")
[ "$held" = 4 ] && [ "$refused" = 6 ] ||
	fail "in flight: expected 4 held and 6 refused, got: $(I "[(a['code'], a['message'], round(a['latency'], 2)) for a in d['answers']]")"
slow=$(I "round(min(a['latency'] for a in d['answers'] if 'in flight' not in a['message']), 2)")
fast=$(I "round(max(a['latency'] for a in d['answers'] if 'in flight' in a['message']), 2)")
[ "$(I "$fast < 2 and $fast < $slow")" = True ] ||
	fail "in flight: the refusals were not answered at once (slowest refusal $fast s, quickest held $slow s)"
ok "B frozen: 10 concurrent sae-flood requests: 4 held (answered after $slow s), 6 refused with 503 in flight within $fast s"
pyck "d['code'] != 0 and 'in flight' not in str(d['body'])" <"$T/calm.json" ||
	fail "sae-calm's request meanwhile was refused for sae-flood's requests: $(cat "$T/calm.json")"
ok "sae-calm's request meanwhile was not counted against sae-flood: $(js "d['code'], d['body'].get('message')" <"$T/calm.json")"
wait_for 40 '[ "$(q "$D" sae-calm enc-post sae-bob --body "$body" | js "d[\"code\"]")" = 200 ]' ||
	fail "supply did not resume after B was thawed"
ok "B thawed: sae-calm gets a combined key again"

# ---------------------------------------------------------------- 3. metrics
$LIM --net "$D/network.json" metrics --node A >"$T/metrics.json" || fail "metrics"
M() { js "d['text']" <"$T/metrics.json" | awk -v m="$1" 'index($0, m) == 1 { print $2 }'; }
[ "$(M 'qkm_etsi014_refused_total{node="A",limit="rate"}')" -ge "$nref" ] ||
	fail "metrics: rate refusals $(M 'qkm_etsi014_refused_total{node="A",limit="rate"}') < $nref"
[ "$(M 'qkm_etsi014_refused_total{node="A",limit="in_flight"}')" = 6 ] ||
	fail "metrics: in-flight refusals $(M 'qkm_etsi014_refused_total{node="A",limit="in_flight"}'), not 6"
ok "A's /metrics: qkm_etsi014_refused_total rate $(M 'qkm_etsi014_refused_total{node="A",limit="rate"}'), in_flight 6"
wait_for 20 'pair_clean "$D" A B' || fail "pair-check A B"
ok "A-B pair-check clean"
