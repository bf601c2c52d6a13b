#!/usr/bin/env bash
# Faults from the quantum layer (R-ACQ-3): a key file with flipped bits on one
# side aborts its round on both nodes; a file lost on one side leaves no
# unmatched key; stock stays equal and pair-check clean.
. "$(dirname "$0")/lib.sh"
D=$T/two
net_up "$SRC/examples/two-nodes.json" "$D"
wait_for 15 '[ "$(pool keys "$D" A B)" -gt 0 ]' || fail "no keys acquired"

a0=$(counter aborted_batches "$D" A); b0=$(counter aborted_batches "$D" B)
"$QKM" sim fault --dir "$D" A-B flip 3 >/dev/null
wait_for 10 '[ "$(counter aborted_batches "$D" A)" -gt "$a0" ]' || fail "flip: A recorded no abort"
wait_for 10 '[ "$(counter aborted_batches "$D" B)" -gt "$b0" ]' || fail "flip: B recorded no abort"
grep -q "MAC mismatch" "$D/B/log" || fail "flip: no MAC mismatch logged"
n=$(sqlite3 "$D/A/keys.db" "select count(*) from lc where event='aborted'")
[ "$n" -ge 1 ] || fail "flip: abort not in A's life-cycle record"
ok "flipped bits: round aborted on both nodes and recorded"

# A file lost at the follower: the leader's round references it; aborted.
a1=$(counter aborted_batches "$D" A)
"$QKM" sim fault --dir "$D" --side B A-B drop >/dev/null
wait_for 10 '[ "$(counter aborted_batches "$D" A)" -gt "$a1" ]' || fail "drop at B: no abort"
grep -q "missing at B" "$D/B/log" || fail "drop at B: missing key not named"
ok "file lost at B: round aborted, missing key named"

# A file lost at the leader: the follower discards its copy, stores nothing unmatched.
"$QKM" sim fault --dir "$D" --side A A-B drop >/dev/null
wait_for 10 'grep -q "the leader moved past them" "$D/B/log"'  || fail "drop at A: B kept the file"
ok "file lost at A: B discarded its copy"

sleep 1
out=$("$QKM" ctl pair-check --dir "$D" A B)
echo "$out" | grep -q " 0 mismatches" || fail "pair-check after faults: $out"
stock_equal "$D" A B || fail "stock differs after faults: $(status_json "$D")"
ok "after faults: $out"

# QBER excursion: alarm reported by the module, acquisition stops, resumes.
"$QKM" sim fault --dir "$D" A-B qber 0.2 >/dev/null
wait_for 5 'status_json "$D" | grep -q qber-above-threshold'  || fail "no QBER alarm in status"
"$QKM" sim fault --dir "$D" A-B qber 0.01 >/dev/null
ok "QBER alarm reported in status"
"$QKM" sim fault --dir "$D" A-B nonsense 2>/dev/null && fail "bad fault accepted"
ok "bad fault command refused"
