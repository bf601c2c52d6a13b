#!/usr/bin/env bash
# Key supply across crashes (R-SUP-7, R-SUP-8, R-ACQ-4): 16 concurrent
# clients pair enc_keys at A (sae-alice) with dec_keys at B (sae-bob) while
# A or B is killed with SIGKILL at a random moment and restarted. Afterwards:
#  - no key_ID was returned twice by enc_keys;
#  - every key the master received is delivered to the slave exactly once
#    with identical bytes. Exception, and only this one: a key whose
#    dec_keys request was SENT but got no HTTP answer because a node died
#    (reset, TLS cut, timeout) may have been supplied just before the crash;
#    it is retried after the restart and may then be refused, but if it is
#    delivered the bytes must match. A 503, or a request that never left
#    (connection refused, handshake failed), is no exception: the key must
#    still come later. (etsi014_pairs.py, "OUTCOMES", spells this out.)
#  - a second dec_keys of every delivered key is refused;
#  - the KMA pair agrees: `qkm ctl pair-check` reports 0 mismatches.
# ROUNDS (default 3) rounds of ROUND_SECS (default 20) seconds; SEED fixes
# the victim, the kill moment and the clients' requests.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/etsi014_lib.sh"
PAIRS="$(cd "$(dirname "$0")" && pwd)/etsi014_pairs.py"
ROUNDS=${ROUNDS:-3}
ROUND_SECS=${ROUND_SECS:-20}
THREADS=${THREADS:-16}
seed=${SEED:-$RANDOM}
echo "# seed $seed (rerun with SEED=$seed), $ROUNDS round(s) of $ROUND_SECS s, $THREADS clients"
RANDOM=$seed

D=$T/two
net_up "$SRC/examples/two-nodes.json" "$D"
wait_for 20 '[ "$(pool keys "$D" A B)" -gt 0 ]' || fail "no A-B stock within 20 s"
wait_for 20 etsi_ready "$D" sae-alice sae-bob || fail "Status at A never reports stock: $(q "$D" sae-alice status sae-bob)"
wait_for 20 etsi_ready "$D" sae-bob sae-alice || fail "Status at B never answers: $(q "$D" sae-bob status sae-alice)"
ok "network up, both KMEs answer Status with stock"

LOG=$T/pairs.jsonl
: >"$LOG"
for r in $(seq 1 "$ROUNDS"); do
	victim=$([ $((RANDOM % 2)) = 0 ] && echo A || echo B)
	# kill moment: somewhere in the middle 60 % of the round, in 0.1 s steps
	lo=$((ROUND_SECS * 2)); span=$((ROUND_SECS * 6))
	at=$((lo + RANDOM % (span > 0 ? span : 1)))
	python3 "$PAIRS" run --net "$D/network.json" --log "$LOG" --seconds "$ROUND_SECS" \
		--threads "$THREADS" --seed $((seed + r)) --round "$r" >"$T/run$r.out" 2>&1 &
	driver=$!
	# Wait until this round's clients are really pairing before the clock starts.
	n0=$(grep -c '"t": "enc"' "$LOG" || true)
	wait_for 20 '[ "$(grep -c "\"t\": \"enc\"" "$LOG")" -gt "$n0" ]' ||
		fail "round $r: clients got no key within 20 s: $(cat "$T/run$r.out")"
	# The random kill moment itself is the test input, not a synchronisation.
	sleep "$((at / 10)).$((at % 10))"
	pid=$(node_pid "$D" $victim)
	kill -9 "$pid" || fail "round $r: kill $victim ($pid)"
	wait_for 10 '! kill -0 '"$pid" || fail "round $r: $victim ($pid) survived SIGKILL"
	"$QKM" net restart --dir "$D" $victim >"$T/restart$r.log" 2>&1 ||
		fail "round $r: restart $victim: $(cat "$T/restart$r.log")"
	wait_for 30 etsi_ready "$D" sae-alice sae-bob || fail "round $r: A's KME not serving after restart of $victim"
	wait_for 30 "q '$D' sae-bob status sae-alice | pyck \"d['code'] == 200\"" ||
		fail "round $r: B's KME not serving after restart of $victim"
	ok "round $r: killed $victim (pid $pid) at $((at / 10)).$((at % 10)) s, restarted, both KMEs serve again"
	wait "$driver" || fail "round $r: client driver failed: $(cat "$T/run$r.out")"
	cat "$T/run$r.out"
	# Both KMEs are up: settle the keys still open and check the whole log.
	out=$(python3 "$PAIRS" verify --net "$D/network.json" --log "$LOG" --deadline 30) ||
		fail "round $r (victim $victim, seed $seed): $out"
	echo "# $out"
	ok "round $r: every received key delivered once with identical bytes (or cut by the crash), none twice"
	wait_for 30 pair_clean "$D" A B ||
		fail "round $r: pair-check after killing $victim: $("$QKM" ctl pair-check --dir "$D" A B)"
	ok "round $r: pair-check clean"
done
n=$(grep -c '"t": "enc"' "$LOG" || true)
[ "$n" -gt 0 ] || fail "no key was ever received by the master"
ok "$ROUNDS round(s): $n keys received by the master in total, no key_ID twice"
