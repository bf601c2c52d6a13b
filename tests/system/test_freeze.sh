#!/usr/bin/env bash
# A peer that freezes without closing its connections (SIGSTOP: a hung host,
# a cut cable without a FIN): its neighbour notices within the keepalive
# bound (20 s silent), drops the Kx link, refuses supply with 503 instead of
# hanging, and everything resumes once the peer is back.
. "$(dirname "$0")/lib.sh"
D=$T/two
net_up "$SRC/examples/two-nodes.json" "$D"
wait_for 15 '"$QKM" key status --dir "$D" --sae sae-alice sae-bob | grep -q "\"stored_key_count\":[1-9]"' ||
	fail "no stock"
pidB=$(node_pid "$D" B)
kill -STOP "$pidB"
trap 'kill -CONT '"$pidB"' 2>/dev/null; cleanup' EXIT
t0=$(date +%s)
wait_for 40 'grep -q "peer silent" "$D/A/log"' || fail "A did not notice the frozen peer"
ok "A dropped the link to frozen B after $(( $(date +%s) - t0 )) s: $(grep -m1 -o 'Kx link to B down: peer silent.*' "$D/A/log")"
out=$("$QKM" key enc --dir "$D" --sae sae-alice sae-bob 2>&1) && fail "supply to a frozen peer succeeded"
echo "$out" | grep -q "HTTP 503" || fail "supply while B is frozen: $out"
ok "supply while B is frozen: $out"
kill -CONT "$pidB"
wait_for 30 '"$QKM" key enc --dir "$D" --sae sae-alice sae-bob >/dev/null 2>&1' || fail "supply did not resume"
wait_for 20 pair_clean "$D" A B || fail "pair-check after the freeze"
ok "B thawed: supply resumed, pair-check clean"
