#!/usr/bin/env bash
# kill -9 of either node while keys flow, then restart: the pair reconcile
# and no key ID has different bytes on the two sides (R-ACQ-3, R-ACQ-4).
. "$(dirname "$0")/lib.sh"
D=$T/two
net_up "$SRC/examples/two-nodes.json" "$D"
wait_for 15 '[ "$(pool keys "$D" A B)" -gt 0 ]' || fail "no keys acquired"
ROUNDS=${CRASH_ROUNDS:-6}
seed=${SEED:-$RANDOM}
echo "# seed $seed"
RANDOM=$seed
for i in $(seq 1 "$ROUNDS"); do
	victim=$([ $((RANDOM % 2)) = 0 ] && echo A || echo B)
	sleep "0.$((RANDOM % 9 + 1))"
	kill -9 "$(node_pid "$D" $victim)"
	sleep "0.$((RANDOM % 9))"
	"$QKM" net restart --dir "$D" $victim >/dev/null || fail "restart $victim"
	wait_for 20 pair_clean "$D" A B || fail "round $i: pair-check after killing $victim: $("$QKM" ctl pair-check --dir "$D" A B)"
	ok "round $i: killed $victim, restarted, pair-check clean"
done
before=$(pool keys "$D" A B)
sleep 3
[ "$(pool keys "$D" A B)" -gt "$before" ] || fail "acquisition did not resume"
ok "acquisition resumed after crashes"
