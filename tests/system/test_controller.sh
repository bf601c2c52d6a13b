#!/usr/bin/env bash
# The QKDN controller and manager with real processes (issue #6; R-CTL-1..4,
# R-REL-6, R-SUP-1, R-LC-1, R-LC-2) on a 5-node ring, SAEs at node1 and
# node3:
#   1. status in: every node reports to the controller; `qkm ctl routes`;
#   2. adaptive rerouting: a QBER alarm on a link of the active route moves
#      relays the other way round within 2 s while applications draw keys,
#      and no request fails;
#   3. each rerouting mode changes which relays happen: manual (a route set
#      by the operator), fixed-rate (relays at the computed rate with no
#      demand), scheduled (relays only as planned);
#   4. access control: an SAE added by the controller gets keys; revoking
#      one under load gets its next request 401 within 2 s, others go on;
#   5. the controller killed and restarted under load: applications keep
#      getting keys, no life-cycle record is lost;
#   6. trace: a supplied key's lineage, QKD-keys to SAEs, every relay hop;
#   7. compromise of a link: every correlated key is gone from every node
#      (store and WAL; pair-check clean), others stay, the report names the
#      keys already supplied and their SAEs (R-LC-3);
#   8. audit: clean after the run; one record edited by hand in the ledger
#      makes `qkm ctl audit` fail naming it.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/etsi014_lib.sh"
PAIRS="$(cd "$(dirname "$0")" && pwd)/etsi014_pairs.py"

cat >"$T/ring5.json" <<'JSON'
{
  "nodes": [ {"id": "node1"}, {"id": "node2"}, {"id": "node3"}, {"id": "node4"}, {"id": "node5"} ],
  "links": [ {"a": "node1", "b": "node2", "rate_bps": 8000000, "unit_bits": 4096, "qber": 0.01},
             {"a": "node2", "b": "node3", "rate_bps": 8000000, "unit_bits": 4096, "qber": 0.01},
             {"a": "node3", "b": "node4", "rate_bps": 8000000, "unit_bits": 4096, "qber": 0.01},
             {"a": "node4", "b": "node5", "rate_bps": 8000000, "unit_bits": 4096, "qber": 0.01},
             {"a": "node5", "b": "node1", "rate_bps": 8000000, "unit_bits": 4096, "qber": 0.01} ],
  "saes":  [ {"id": "sae-1", "node": "node1"}, {"id": "sae-1b", "node": "node1"},
             {"id": "sae-3", "node": "node3"} ],
  "policy": { "relay": "otp", "aes_fallback": false, "after_supply": "delete" }
}
JSON
D=$T/ring5
net_up "$T/ring5.json" "$D"

# route FROM TO: the path the controller gave FROM for TO ("a>b>c").
route() { "$QKM" ctl routes --dir "$D" --json | js "[r['path'] for r in d if r['from']=='$1' and r['to']=='$2'][0]"; }
# nrec NODE EVENT [DETAIL-PREFIX]: how many life-cycle records NODE holds.
nrec() {
	"$QKM" ctl events --dir "$D" --json --event "$2" "$1" |
		js "len([e for e in d if e['detail'].startswith('${3:-}')])"
}
# load SECONDS MASTER LOG [STOPFILE]: enc/dec pairs in the background.
load() {
	python3 "$PAIRS" run --net "$D/network.json" --log "$3" --seconds "$1" --threads 4 \
		--master "$2" --slave sae-3 ${4:+--until "$4"} >/dev/null 2>&1 &
}
# failures LOG: requests of the load that did not get keys (enc) or whose
# keys the slave could not get (dec).
failures() {
	python3 -c "
import json,sys
bad=[l for l in (json.loads(x) for x in open('$1')) if l['t'] in ('enc_err','enc_fail','bad_container') or (l['t']=='dec' and l['res']!='ok')]
print(len(bad), bad[:3])"
}

# ---------------------------------------------------------------- 1. status in
wait_for 20 '"$QKM" ctl routes --dir "$D" --json | pyck "len(d) == 10"' ||
	fail "the controller never had routes for all 10 relay pairs: $("$QKM" ctl routes --dir "$D")"
"$QKM" ctl status --dir "$D" >/dev/null || fail "ctl status"
wait_for 20 '[ "$(route node1 node3)" = "node1>node2>node3" ]' ||
	fail "node1 -> node3 is not the short way round: $(route node1 node3)"
ok "controller: 5 nodes report, routes node1>node2>node3 and back"
wait_for 40 etsi_ready "$D" sae-1 sae-3 || fail "no relayed stock for sae-1 -> sae-3"

# ---------------------------------------------------------------- 2. adaptive
load 30 sae-1 "$T/load1" "$T/stop1"
sleep 3
"$QKM" sim fault --dir "$D" node1-node2 qber 0.2 >/dev/null || fail "sim fault qber"
wait_for 10 '[ "$(route node1 node3)" = "node1>node5>node4>node3" ] && [ "$(route node3 node1)" = "node3>node4>node5>node1" ]' ||
	fail "alarm on node1-node2: routes did not move: $(route node1 node3), $(route node3 node1)"
# How long it took, from the logs: the simulator raising the alarm to the
# node (last of the two ends) logging its new route. Reported, not judged
# (no timing thresholds in tests).
moved=$(python3 - "$D" <<'PY'
import datetime, re, sys
d = sys.argv[1]
def ts(line):
    return datetime.datetime.strptime(line[:23], "%Y-%m-%dT%H:%M:%S.%f").timestamp()
fault = [ts(l) for l in open(d + "/sim/log") if "node1-node2 QBER 0.2000" in l or "qber" in l and "node1-node2" in l]
moved = [ts(l) for n, pat in (("node1", "route to node3 is now node1>node5"), ("node3", "route to node1 is now node3>node4"))
         for l in open(f"{d}/{n}/log") if pat in l]
print(f"{max(moved) - fault[-1]:.2f}" if fault and len(moved) == 2 else "?")
PY
)
# Relays for node1 -> node3 now pass node5 (the load alone may not need one
# yet: a few large requests make sure).
before=$(nrec node5 relay-forwarded "node1->node3")
for _ in 1 2 3 4 5 6; do q "$D" sae-1 enc-post sae-3 --body '{"number": 128, "size": 8192}' >/dev/null; done
wait_for 30 '[ "$(nrec node5 relay-forwarded "node1->node3")" -gt "$before" ]' ||
	fail "no relay for node1 -> node3 went through node5 after the alarm"
sleep 2
touch "$T/stop1"
wait
n=$(failures "$T/load1")
[ "${n%% *}" = 0 ] || fail "requests failed while rerouting: $n"
pairs=$(grep -c '"t": "enc"' "$T/load1")
after=$(nrec node5 relay-forwarded "node1->node3")
ok "adaptive: QBER alarm on node1-node2 moved both routes the other way round in $moved s; $pairs keys under load, none failed; $((after - before)) relay(s) via node5"
"$QKM" sim fault --dir "$D" node1-node2 qber 0.01 >/dev/null
wait_for 10 '[ "$(route node1 node3)" = "node1>node2>node3" ]' || fail "route did not come back after the alarm cleared"
ok "adaptive: alarm cleared, route back to node1>node2>node3"

# ---------------------------------------------------------------- 3. modes
# drain N: N requests of 128 KiB from sae-1 (demand for relays).
drain() { for _ in $(seq 1 "$1"); do q "$D" sae-1 enc-post sae-3 --body '{"number": 128, "size": 8192}' >/dev/null; done; }
"$QKM" ctl mode manual --dir "$D" >/dev/null || fail "ctl mode manual"
"$QKM" ctl route set --dir "$D" node1 node3 node1 node5 node4 node3 >/dev/null || fail "ctl route set"
wait_for 5 '[ "$(route node1 node3)" = "node1>node5>node4>node3" ]' || fail "manual route not applied"
before5=$(nrec node5 relay-forwarded "node1->node3"); before2=$(nrec node2 relay-forwarded "node1->node3")
drain 12
wait_for 20 '[ "$(nrec node5 relay-forwarded "node1->node3")" -gt "$before5" ]' ||
	fail "manual: no relay took the operator's route via node5"
after2=$(nrec node2 relay-forwarded "node1->node3")
[ "$after2" = "$before2" ] || fail "manual: $((after2 - before2)) relay(s) still went through node2"
# An operator's route stays, whatever the alarms say.
"$QKM" sim fault --dir "$D" node4-node5 qber 0.2 >/dev/null
sleep 2
[ "$(route node1 node3)" = "node1>node5>node4>node3" ] || fail "manual: route changed by itself: $(route node1 node3)"
"$QKM" sim fault --dir "$D" node4-node5 qber 0.01 >/dev/null
"$QKM" ctl route clear --dir "$D" node1 node3 >/dev/null || fail "ctl route clear"
ok "manual: relays node1 -> node3 took the operator's route via node5 ($(($(nrec node5 relay-forwarded "node1->node3") - before5)) relays), none via node2; an alarm did not move it"

"$QKM" ctl mode adaptive --dir "$D" >/dev/null || fail "ctl mode adaptive"
wait_for 10 '[ "$(route node1 node3)" = "node1>node2>node3" ]' || fail "adaptive route not back"
# No demand: the pool fills to its high watermark and relays stop.
settled() { a=$(nrec node1 relay-sent); sleep 4; [ "$(nrec node1 relay-sent)" = "$a" ]; }
wait_for 60 settled || fail "relays ahead of demand never stopped with no demand"
a=$(nrec node1 relay-sent); sleep 6; idle=$(($(nrec node1 relay-sent) - a))
"$QKM" ctl mode fixed-rate --dir "$D" --from node1 --to node3 >/dev/null || fail "ctl mode fixed-rate"
a=$(nrec node1 relay-sent); sleep 8; fixed=$(($(nrec node1 relay-sent) - a))
[ "$fixed" -ge 2 ] && [ "$fixed" -gt "$idle" ] ||
	fail "fixed-rate: $fixed relay(s) in 8 s with no demand (adaptive: $idle in 6 s)"
ok "fixed-rate: node1 relayed $fixed times in 8 s with no demand (adaptive, idle: $idle in 6 s)"

"$QKM" ctl mode scheduled --dir "$D" --from node1 --to node3 >/dev/null || fail "ctl mode scheduled"
sleep 1
a=$(nrec node1 relay-sent); sleep 3; quiet=$(($(nrec node1 relay-sent) - a))
[ "$quiet" = 0 ] || fail "scheduled: $quiet relay(s) with nothing scheduled"
a=$(nrec node1 relay-sent)
"$QKM" ctl schedule add --dir "$D" node1 node3 --in 8 --bytes 262144 >/dev/null || fail "ctl schedule add"
sleep 3
[ "$(nrec node1 relay-sent)" = "$a" ] || fail "scheduled: relays before their time"
wait_for 20 '[ "$(($(nrec node1 relay-sent) - a))" -ge 4 ]' || fail "scheduled: the planned 4 relays did not happen: $(($(nrec node1 relay-sent) - a))"
sleep 2
planned=$(($(nrec node1 relay-sent) - a))
[ "$planned" = 4 ] || fail "scheduled: $planned relays for a plan of 4"
"$QKM" ctl mode adaptive --dir "$D" >/dev/null
ok "scheduled: no relay until the planned time, then exactly the planned 4 (256 KiB)"

# ---------------------------------------------------------------- 4. access control
out=$("$QKM" ctl sae add sae-new --node node1 --dir "$D") || fail "ctl sae add: $out"
wait_for 5 'q "$D" sae-new enc-post sae-3 --body "{\"number\": 1}" | pyck "d[\"code\"] == 200"' ||
	fail "new SAE sae-new gets no keys: $(q "$D" sae-new enc-post sae-3 --body '{"number": 1}')"
ok "sae add: the controller issued sae-new a certificate; it gets keys at node1"
load 60 sae-1b "$T/load2" "$T/stop2"
sleep 2
"$QKM" ctl sae revoke sae-1 --dir "$D" >/dev/null || fail "ctl sae revoke"
sleep 2
out=$(q "$D" sae-1 enc-post sae-3 --body '{"number": 1}')
expect_error "$out" 401 "revoked sae-1, 2 s later"
out=$(q "$D" sae-3 dec-post sae-1 00000000-0000-4000-8000-000000000000)
expect_error "$out" 400 "dec_keys naming the revoked master"
ok "sae revoke: sae-1's next request 2 s after revocation gets 401: $(echo "$(q "$D" sae-1 enc-post sae-3 --body '{"number": 1}')" | js "d['body']['message']")"

# ---------------------------------------------------------------- 5. controller killed under load
cpid=$(js "d['controller']['pid']" <"$D/network.json")
kill -9 "$cpid"
sleep 3
"$QKM" net restart --dir "$D" controller >/dev/null || fail "controller restart"
sleep 3
touch "$T/stop2"
wait
n=$(failures "$T/load2")
[ "${n%% *}" = 0 ] || fail "sae-1b requests failed during revocation or controller restart: $n"
out=$(python3 "$PAIRS" verify --net "$D/network.json" --log "$T/load2" --deadline 20 --master sae-1b --slave sae-3) ||
	fail "sae-1b keys: $out"
ok "sae-1b unaffected by the revocation and the controller's kill -9 and restart: $(grep -c '"t": "enc"' "$T/load2") keys, none failed; $out"
# Every record of every node reaches the ledger.
for n in node1 node2 node3 node4 node5; do
	last=$("$QKM" ctl events --dir "$D" --json "$n" | js "d[-1]['seq']")
	wait_for 30 '[ "$("$QKM" ctl records --dir "$D" --json --node "$n" | js "max([r[\"seq\"] for r in d] or [0])")" -ge "$last" ]' ||
		fail "ledger misses records of $n after the controller restart (node at $last)"
done
ok "controller restart: every node's records up to its last are in the ledger"

# ---------------------------------------------------------------- 6. trace
id=$(python3 -c "
import json
print([l['id'] for l in (json.loads(x) for x in open('$T/load2')) if l['t'] == 'enc'][-1])")
"$QKM" ctl trace --dir "$D" --json "$id" >"$T/trace.json" || fail "ctl trace $id"
python3 - "$T/trace.json" "$id" <<'PY' || fail "trace of $id incomplete: $(head -c 600 "$T/trace.json")"
import json, re, sys
t = json.load(open(sys.argv[1])); key = sys.argv[2]
recs = t["records"]
def names(kid, key):
    """A record's key_id names key: its UUID, or a run of its round ("<round>00000000[a..b]")."""
    m = re.fullmatch(r"([0-9a-f-]{28})00000000\[(\d+)\.\.(\d+)\]", kid)
    return kid == key or bool(m and m[1] == key[:28] and int(m[2]) <= int(key[28:], 16) <= int(m[3]))
ev = lambda e, **kw: [r for r in recs if r["event"] == e and all(names(r[k], v) if k == "key_id" else r[k] == v for k, v in kw.items())]
assert ev("formatted", key_kind="kma") and all("from QKD-key(s)" in r["detail"] and "(module " in r["detail"] for r in ev("formatted", key_kind="kma")), "no QKD origin"
assert ev("relay-sent"), "no relay origin"
assert ev("relay-forwarded"), "no relay hop"
rcv = ev("relay-received")
assert rcv and all("hops:" in r["detail"] for r in rcv), "no hop list"
assert ev("formatted", key_id=key), "no KSA-key record"
other = [r["key_id"] for r in recs if r["key_kind"] == "ksa" and r["key_id"][:28] == key[:28] and not names(r["key_id"], key)]
assert not other, f"records of other keys of its round: {other[:3]}"
sup = ev("supplied", key_id=key)
assert {r["node"] for r in sup} == {"node1", "node3"}, f"supplied at {[r['node'] for r in sup]}"
PY
ok "trace $id: QKD-keys and modules, relay origin, every hop and method, KSA-key, supply to sae-1b at node1 and sae-3 at node3 ($(js "d['summary']" <"$T/trace.json"))"

# /records?key=<KSA-key UUID>&limit=N: N records that name the key, not
# the first N of its round filtered afterwards (a stock refill's round
# has a supplied record per run of keys taken, most not naming this one).
api=$(js "d['controller']['api']" <"$D/network.json")
rq() { curl -sf --cacert "$D/pki/ca.pem" --cert "$D/pki/admin.pem" --key "$D/pki/admin.key" "$api$1"; }
n=$(rq "/records?key=$id&limit=100000" | js "len(d)")
[ "$n" -ge 2 ] || fail "records of $id: $n"
for lim in 1 $((n - 1)) "$n"; do
	got=$(rq "/records?key=$id&limit=$lim" | js "len(d)")
	[ "$got" = "$lim" ] || fail "records of $id with limit $lim: $got (of $n)"
done
ok "records of $id: limit 1, $((n - 1)) and $n give that many of its $n"

# ---------------------------------------------------------------- 7. compromise
# A key supplied to its master, not yet fetched by its slave; the link
# compromised is the first hop its relayed data took.
out=$(python3 "$(dirname "$0")/etsi014_client.py" --net "$D/network.json" --as sae-1b --show-keys enc-post sae-3 --body '{"number": 1}')
kid=$(echo "$out" | js "d['body']['keys'][0]['key_ID']")
kb64=$(echo "$out" | js "d['body']['keys'][0]['key']")
sleep 1.5
link=$("$QKM" ctl trace --dir "$D" --json "$kid" | python3 -c "
import json, sys, re
t = json.load(sys.stdin)
hops = [r['detail'] for r in t['records'] if r['event'] == 'relay-received'][0]
a, b = re.search(r'hops: (\w+)>(\w+)', hops).groups()
names = {'node1-node2', 'node2-node3', 'node3-node4', 'node4-node5', 'node5-node1'}
print(f'{a}-{b}' if f'{a}-{b}' in names else f'{b}-{a}')") || fail "no relay hop in the trace of $kid"
stock45=$(pool keys "$D" node4 node5)
cout=$("$QKM" ctl compromise --dir "$D" --json --link "$link") || fail "ctl compromise: $cout"
echo "$cout" | pyck "d['not_answered'] == [] and len(d['nodes']) == 5" ||
	fail "compromise: not every node carried out the order: $(echo "$cout" | head -c 400)"
echo "$cout" | python3 -c '
import json, re, sys
d, kid = json.load(sys.stdin), sys.argv[1]
def names(k):  # its UUID, or a run of its round: "<round>00000000[a..b]"
    m = re.fullmatch(r"([0-9a-f-]{28})00000000\[(\d+)\.\.(\d+)\]", k)
    return k == kid or bool(m and m[1] == kid[:28] and int(m[2]) <= int(kid[28:], 16) <= int(m[3]))
sys.exit(0 if any(names(s.split(" at ")[0]) and "sae-1b" in s for s in d["supplied"]) else 1)' "$kid" ||
	fail "compromise: the report does not list $kid as supplied to sae-1b"
out=$(q "$D" sae-3 dec-post sae-1b "$kid")
expect_error "$out" 400 "dec_keys of a key correlated with the compromised link"
python3 - "$D" "$kb64" <<'PY' || fail "the compromised key's bytes are still in a node's store or WAL"
import base64, glob, sys
d, k = sys.argv[1], base64.b64decode(sys.argv[2])
for f in glob.glob(d + "/*/keys.db*"):
    assert k not in open(f, "rb").read(), f
PY
for l in node1-node2 node2-node3 node3-node4 node4-node5 node5-node1; do
	wait_for 20 pair_clean "$D" "${l%-*}" "${l#*-}" ||
		fail "pair-check $l after the compromise: $("$QKM" ctl pair-check --dir "$D" "${l%-*}" "${l#*-}")"
done
[ "$(pool keys "$D" node4 node5)" -ge "$stock45" ] || fail "compromise of $link took keys of node4-node5"
ok "compromise --link $link: $(echo "$cout" | js "d['keys']") correlated key(s), $("$QKM" ctl events --dir "$D" --event deleted node3 | wc -l) deleted at node3; $kid (supplied to sae-1b) refused to its slave, its bytes in no store or WAL; every link pair-clean; node4-node5 untouched"

# ---------------------------------------------------------------- 8. audit
out=$("$QKM" ctl audit --dir "$D") || fail "audit after the run: $out"
echo "$out" | grep -q "audit: clean" || fail "audit not clean: $out"
ok "audit clean: $(echo "$out" | awk 'NR>1 && $1 != "audit:" {n += $2} END {print n}') records in $(echo "$out" | grep -c intact) chains"
"$QKM" net down --dir "$D" >/dev/null
python3 - "$D/controller/ledger.db" <<'PY'
import sqlite3, sys
c = sqlite3.connect(sys.argv[1])
c.execute("UPDATE records SET detail = 'edited by hand' WHERE node = 'node2' AND seq = 5")
c.commit()
PY
"$QKM" net restart --dir "$D" controller >/dev/null || fail "controller start after the edit"
set +e
out=$("$QKM" ctl audit --dir "$D"); rc=$?
set -e
[ $rc = 3 ] || fail "audit after a record was edited: exit $rc, $out"
echo "$out" | grep -q "node2 record 5: changed" || fail "audit does not name node2 record 5: $out"
ok "audit fails after one ledger record was edited by hand: $(echo "$out" | grep PROBLEM)"
