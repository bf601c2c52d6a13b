#!/usr/bin/env bash
# While a node is away, its simulated QKD module keeps at most backlog_bytes
# of key for it (docs/config.md; `qkm net up` sets 16 MiB) and the module
# pair stops distilling, on both sides at once, instead of queueing without
# bound or letting the two sides drift apart (docs/protocol.md, Kq-1). When
# the node is back it gets the buffered files, in order, and the pair
# confirm them: equal stock, pair-check clean.
. "$(dirname "$0")/lib.sh"
D=$T/two
BOUND=$((16 << 20))
# 200 Mbit/s, 1 Mbit QKD-keys: the bound fills in under a second, and the
# 5 s the node is away would be 125 MB without it.
cat >"$T/fast.json" <<'EOF'
{
  "name": "sim-backlog",
  "nodes": [ {"id": "A"}, {"id": "B"} ],
  "links": [ {"a": "A", "b": "B", "rate_bps": 200000000, "unit_bits": 1048576, "qber": 0.01} ],
  "saes":  [ {"id": "sae-alice", "node": "A"}, {"id": "sae-bob", "node": "B"} ],
  "policy": { "relay": "otp", "aes_fallback": false, "after_supply": "delete" }
}
EOF
net_up "$T/fast.json" "$D"
grep -q '"backlog_bytes": *16777216' "$D/sim/sim.json" || fail "sim.json: backlog_bytes is not 16 MiB"
wait_for 20 '[ "$(pool keys "$D" A B)" -gt 0 ]' || fail "no keys acquired"

# The sim logs B's subscriptions and (every 1000th) pause: count the ones
# from before, so that only new lines count.
nsub=$(grep -c 'node B subscribed to module' "$D/sim/log" || true)
npause=$(grep -c 'module key store full; generation paused' "$D/sim/log" || true)
kill -9 "$(node_pid "$D" B)"
# (A pause before the kill would delay the next line up to 1000 pauses, 5 s
# at 200 per second.)
wait_for 20 '[ "$(grep -c "module key store full; generation paused" "$D/sim/log")" -gt "$npause" ]' ||
	fail "the simulator did not pause generation with B away"
ok "B away: $(grep -o 'link A-B: module key store full.*' "$D/sim/log" | tail -n 1)"
stockA=$(pool bytes "$D" A B)
sleep 4
# No key made from here on: what the pair store next is the buffer alone.
"$QKM" sim fault --dir "$D" A-B down >/dev/null || fail "sim fault down"
"$QKM" net restart --dir "$D" B >/dev/null || fail "restart B"
wait_for 20 '[ "$(grep -c "node B subscribed to module" "$D/sim/log")" -gt "$nsub" ]' ||
	fail "B did not subscribe again"
buffered=$(grep -o 'node B subscribed to module [^ ]* ([0-9]* bytes buffered)' "$D/sim/log" |
	tail -n 1 | grep -o '([0-9]*' | tr -d '(')
[ "$buffered" -le "$BOUND" ] || fail "B's module buffered $buffered bytes, above the bound $BOUND"
# Full, not merely bounded: at least what the bound leaves room for, less
# one QKD-key and its frame (the pause leaves room for the next one).
[ "$buffered" -ge $((BOUND - 2 * 131072 - 8192)) ] ||
	fail "B's module buffered only $buffered bytes in 4 s at 200 Mbit/s"
ok "B back: its module had $buffered bytes buffered (bound $BOUND)"

wait_for 30 'stock_equal "$D" A B && pair_clean "$D" A B' ||
	fail "after B's return: stock $(pool bytes "$D" A B) / $(pool bytes "$D" B A), $("$QKM" ctl pair-check --dir "$D" A B)"
ok "stock equal at both ends, pair-check clean"
# What the pair stored since B went away comes from what its module
# buffered, not from the 100 MB that 4 s at the link rate make: at most the
# buffer's key bytes. Not all of them: B lost the files it had taken but not
# confirmed when it was killed, and a round that misses one of those at B is
# aborted whole on both sides (R-ACQ-3), the buffered files in it too.
grown=$(( $(pool bytes "$D" A B) - stockA ))
[ "$grown" -le "$buffered" ] && [ "$grown" -ge $((buffered / 2)) ] ||
	fail "A stored $grown bytes since B went away, its module buffered $buffered"
ok "the pair stored $grown bytes since B went away, from the $buffered buffered"
