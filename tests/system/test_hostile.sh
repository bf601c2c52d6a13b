#!/usr/bin/env bash
# Hostile clients at the ETSI 014 server (resource limits): 1000 idle
# mutual-TLS connections held, slowloris heads, TCP connections that never
# start TLS, a client without a certificate; an application meanwhile gets
# its keys, and the node's keys stay consistent (pair-check).
. "$(dirname "$0")/lib.sh"

D=$T/net
net_up "$SRC/examples/two-nodes.json" "$D"
wait_for 20 '[ "$(pool keys "$D" A B)" -gt 0 ]' || fail "no A-B stock within 20 s"
python3 "$(dirname "$0")/hostile.py" --net "$D/network.json" --node A --as sae-alice \
	--slave sae-bob --held 1000 --slow 50 --half 50 || fail "hostile clients (see above)"
kill -0 "$(node_pid "$D" A)" 2>/dev/null || fail "node A died"
grep -q "refusing more" "$D"/A/log && fail "node A refused connections below its cap"
pair_clean "$D" A B || fail "pair-check after the siege"
ok "node A alive, A-B pair-check clean"
