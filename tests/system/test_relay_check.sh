#!/usr/bin/env bash
# relay_check.py settled against scripted records (R-REL-1), no network: a
# fake `qkm ctl events` plays a timeline in which each call is one step, so
# the interleaving of the checker's readings with relays is exact.
#   1. the false alarm test_relay.sh's kill -9 section once raised
#      (2026-11-26): a relay ahead of demand that node1 started after the
#      checker read node1's records and node3 stored before it read node3's
#      looked like "a batch stored at node3 only". It is in flight: not a
#      violation; --wait sees it settle (and does not wait for relays
#      started after its first reading);
#   2. what R-REL-1 forbids is still found at once, whatever the timing: a
#      batch at the destination the origin has no relay-sent record of, or
#      aborted, a batch confirmed at the origin and not at the destination;
#      a relay that never settles fails --wait when its time is up.
# RELAY_CHECK=FILE runs another version of the checker (the one before this
# test fails case 1).
. "$(dirname "$0")/lib.sh"
RCHK=${RELAY_CHECK:-$(cd "$(dirname "$0")" && pwd)/relay_check.py}

# The fake qkm: records of $T/timeline.json ({"at": step, "node", "event",
# "key_id", "peer"}) visible from the call numbered "at" on (calls count
# from 1 in $T/calls).
cat >"$T/qkm" <<'EOF'
#!/usr/bin/env python3
import json, os, sys
a = sys.argv[1:]
assert a[:2] == ["ctl", "events"] and "--json" in a, a
event, node = a[a.index("--event") + 1], a[-1]
cf = os.environ["FAKE_CALLS"]
n = (int(open(cf).read()) if os.path.exists(cf) else 0) + 1
open(cf, "w").write(str(n))
tl = json.load(open(os.environ["FAKE_TIMELINE"]))
print(json.dumps([{"seq": i, "time": "", "event": r["event"], "key_kind": "relayed",
                   "key_id": r["key_id"] + "[0..127]", "peer": r["peer"], "detail": ""}
                  for i, r in enumerate(tl) if r["node"] == node and r["event"] == event
                  and r["at"] <= n]))
EOF
chmod +x "$T/qkm"
export FAKE_CALLS=$T/calls FAKE_TIMELINE=$T/timeline.json

# timeline 'AT NODE EVENT BATCH PEER' ...: writes the timeline, resets the calls.
timeline() {
	python3 -c '
import json, sys
print(json.dumps([dict(zip(("at", "node", "event", "key_id", "peer"), l.split()), at=int(l.split()[0]))
                  for l in sys.argv[1:]]))' "$@" >"$FAKE_TIMELINE"
	rm -f "$FAKE_CALLS"
}
# settled [--wait S]: the checker's exit status; its output in $out.
settled() {
	local rc=0
	out=$(python3 "$RCHK" --qkm "$T/qkm" --dir "$T" settled "$@" node1 node3 2>&1) || rc=$?
	return $rc
}
b() { printf '%024x00000000' "$1"; }

# Relays settled before the check began, one each way.
base="0 node1 relay-sent $(b 1) node3
0 node3 relay-received $(b 1) node1
0 node1 relay-confirmed $(b 1) node3
0 node3 relay-sent $(b 2) node1
0 node1 relay-received $(b 2) node3
0 node3 relay-confirmed $(b 2) node1"

# 1. Batch 3 leaves node1 after the checker's first call and is stored at
# node3 before it reads node3; node1 learns it is stored later (call 9).
# Batch 4 starts after the first reading and never settles while the
# checker runs: --wait leaves it to a later check.
case1() {
	IFS=$'\n'
	# shellcheck disable=SC2086
	timeline $base "2 node1 relay-sent $(b 3) node3" "2 node3 relay-received $(b 3) node1" \
		"9 node1 relay-confirmed $(b 3) node3" \
		"13 node1 relay-sent $(b 4) node3" "13 node3 relay-received $(b 4) node1"
	unset IFS
}
case1
rc=0; settled || rc=$?
[ $rc = 3 ] || fail "case 1: a relay in flight (stored at node3, confirmation on its way to node1) taken for a violation (exit $rc): $out"
ok "case 1: a relay started while the checker reads is in flight, not a violation: $out"
case1
settled --wait 30 || fail "case 1: --wait: $out"
case $out in *"node1->node3: 3 sent, 2 confirmed, 3 received at node3, 0 aborted, 1 started since, in flight"*) ;;
*) fail "case 1: --wait: unexpected summary: $out" ;; esac
ok "case 1: --wait: settled once batch 3 is confirmed; batch 4, started since, left to a later check: $out"

# 2. Violations, found on the first reading, with or without --wait.
violation() {
	local what=$1 want=$2 rc
	shift 2
	for w in "" "--wait 30"; do
		IFS=$'\n'
		# shellcheck disable=SC2086
		timeline $base "$@"
		unset IFS
		rc=0
		# shellcheck disable=SC2086
		settled $w || rc=$?
		[ $rc = 1 ] || fail "case 2, $what ${w:+($w)}: not found (exit $rc): $out"
		case $out in *"$want"*) ;; *) fail "case 2, $what: unexpected message: $out" ;; esac
		[ "$(cat "$FAKE_CALLS")" -le 12 ] || fail "case 2, $what: found only after $(cat "$FAKE_CALLS") calls"
	done
	ok "case 2: $what: $out"
}
violation "stored at node3, never sent by node1" "node3 that node1 has no relay-sent record of" \
	"0 node3 relay-received $(b 5) node1"
violation "stored at node3, aborted at node1" "stored at node3 only (aborted at node1)" \
	"0 node1 relay-sent $(b 5) node3" "0 node1 relay-aborted $(b 5) node3" \
	"0 node3 relay-received $(b 5) node1"
violation "confirmed at node3, never stored at node1" "confirmed at node3 never stored at node1" \
	"0 node3 relay-sent $(b 5) node1" "0 node3 relay-confirmed $(b 5) node1"
violation "confirmed and aborted" "both confirmed and aborted" \
	"0 node1 relay-sent $(b 5) node3" "0 node1 relay-aborted $(b 5) node3" \
	"0 node1 relay-confirmed $(b 5) node3" "0 node3 relay-received $(b 5) node1"

# A relay that never settles: in flight for a one-shot check; --wait fails
# when its time is up.
IFS=$'\n'
# shellcheck disable=SC2086
timeline $base "0 node1 relay-sent $(b 6) node3"
unset IFS
rc=0; settled || rc=$?
[ $rc = 3 ] || fail "case 2, never settled: one-shot exit $rc: $out"
rc=0; settled --wait 1 || rc=$?
[ $rc = 1 ] || fail "case 2, never settled: --wait 1 exit $rc: $out"
case $out in *"still not settled after 1 s"*"$(b 6)"*) ;; *) fail "case 2, never settled: $out" ;; esac
ok "case 2: a relay never settled: $out"
