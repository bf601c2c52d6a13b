#!/usr/bin/env bash
# Tampering on a Kx link that relays cross (R-REL-1, R-REL-5, R-SUP-7,
# R-SUP-8). The network of Figure 4 (node1 - node2 - node3, sae-1 at node1,
# sae-3 at node3): every key node1 and node3 share was relayed through
# node2. tests/fault/tamper.py sits on the node2-node3 link (node2 leads it,
# so it dials through the proxy). The link is mutual TLS 1.3: the proxy can
# only damage ciphertext, which TLS detects, dropping the link with every
# relay frame in flight on it. (Damage inside a frame, which only a broken
# or hostile node could cause, is tests/kma/test_relay.c's: every bit flip,
# replay, reorder and loss fails a MAC, link-key or sequence check.)
# With relays running both ways and ETSI 014 clients pairing enc_keys at
# node1 with dec_keys at node3 all along, each fault is injected, then:
#  (a) the link goes down and comes back, reconciled;
#  (b) at the end, every relay each origin started is settled: confirmed by
#      the destination (and stored there) or aborted (and stored nowhere):
#      the batches node1 confirmed are exactly those node3 received from
#      it, and the other way round (no end-to-end key at one end only);
#  (c) pair-check is clean on both links (no link key used at one end only);
#  (d) every key the master received is delivered once, with identical
#      bytes, to the slave; a second dec_keys is refused; no key_ID twice.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/etsi014_lib.sh"
TAMPER=$SRC/tests/fault/tamper.py
PAIRS="$(cd "$(dirname "$0")" && pwd)/etsi014_pairs.py"
SOCK=$T/tamper.sock
TLOG=$T/tamper.log
PROXY=""
DRIVER=""
stop_helpers() {
	[ -z "$DRIVER" ] || kill "$DRIVER" 2>/dev/null || true
	[ -z "$PROXY" ] || kill "$PROXY" 2>/dev/null || true
}
trap 'stop_helpers; cleanup' EXIT
tctl() { python3 "$TAMPER" ctl "$SOCK" "$@"; }
accepted() { tctl stats | sed 's/^ok //' | js "d['accepted']"; }
link_ok() {
	status_json "$1" | pyck "all(l['kx_up'] and l['reconciled'] for n in d['nodes'] for l in n['links'])"
}

D=$T/f4
net_up "$SRC/examples/figure4.json" "$D"
wait_for 40 etsi_ready "$D" sae-1 sae-3 || fail "node1 has no relayed stock for sae-3: $(q "$D" sae-1 status sae-3)"
ok "Figure 4: node1 and node3 share relayed keys ($(pool keys "$D" node1 node3) in their pool)"

# ---------------------------------------------------------------- the proxy on node2-node3
KX3=$(js "d['listen']['kx']" <"$D/node3/node.json")
python3 "$TAMPER" serve --target "$KX3" --control "$SOCK" --log "$TLOG" \
	--port-file "$T/tamper.port" --seed 5 >"$T/tamper.out" 2>&1 &
PROXY=$!
wait_for 10 '[ -s "$T/tamper.port" ]' || fail "tamper.py did not start: $(cat "$T/tamper.out")"
python3 - "$D/node2/node.json" node3 "127.0.0.1:$(cat "$T/tamper.port")" <<'EOF' || fail "cannot rewrite node2's node.json"
import json, os, sys
path, peer, addr = sys.argv[1:]
cfg = json.load(open(path))
[link] = [l for l in cfg["links"] if l["peer"] == peer]
link["addr"] = addr
with open(path + ".tmp", "w") as f:
    json.dump(cfg, f, indent=2)
os.replace(path + ".tmp", path)
EOF
"$QKM" net restart --dir "$D" node2 >"$T/restart.log" 2>&1 || fail "restart node2: $(cat "$T/restart.log")"
wait_for 20 '[ "$(accepted)" -ge 1 ] && link_ok "$D"' || fail "node2-node3 did not come up through the proxy"
r0=$(counter relayed_bytes "$D" node1)
# node1's pool may be full already (a slow machine ends its first fill
# before this): the controller's plan makes it relay now, whatever it holds.
"$QKM" ctl schedule add --dir "$D" node1 node3 --in 0 --bytes 262144 >/dev/null ||
	fail "qkm ctl schedule add node1 node3"
wait_for 30 '[ "$(counter relayed_bytes "$D" node1)" -gt "$r0" ]' || fail "no relay through the proxy"
ok "node2 dials node3 through tamper.py; relays node1 -> node3 flow through it"

LOG=$T/pairs.jsonl
: >"$LOG"
python3 "$PAIRS" run --net "$D/network.json" --log "$LOG" --seconds 300 --until "$T/stop" \
	--threads 2 --max-number 4 --seed 3 --master sae-1 --slave sae-3 >"$T/run.out" 2>&1 &
DRIVER=$!
wait_for 20 'grep -q "\"t\": \"enc\"" "$LOG"' || fail "clients got no key: $(cat "$T/run.out")"
ok "ETSI 014 clients pairing enc_keys at node1 with dec_keys at node3"

# fault CMD...: the link drops (one end logs why), comes back reconciled.
NFAULT=0
fault() {
	local l2 l3 acc
	l2=$(wc -l <"$D/node2/log"); l3=$(wc -l <"$D/node3/log"); acc=$(accepted)
	tctl "$@" >/dev/null || fail "tamper: $*"
	wait_for 20 'tail -n +$((l2 + 1)) "$D/node2/log" | grep -q "Kx link to node3 down" &&
		tail -n +$((l3 + 1)) "$D/node3/log" | grep -q "Kx link to node2 down"' ||
		fail "$*: the link did not drop at both ends"
	tctl pass >/dev/null
	wait_for 20 '[ "$(accepted)" -gt "$acc" ] && link_ok "$D"' || fail "$*: link not back"
	NFAULT=$((NFAULT + 1))
	ok "$*: $( (tail -n +$((l2 + 1)) "$D/node2/log"; tail -n +$((l3 + 1)) "$D/node3/log") |
		grep -Eo "Kx link to node[23] down: .*" | head -1); back and reconciled"
	sleep 1
}
# One fault of each kind that breaks the stream (test_tamper.sh goes through
# them all on a two-node link).
fault flip c2s 1 body
fault flip s2c 1 tag
fault dup c2s
fault reset

touch "$T/stop"
wait "$DRIVER" || fail "client driver: $(cat "$T/run.out")"
DRIVER=""
out=$(python3 "$PAIRS" verify --net "$D/network.json" --log "$LOG" --deadline 20 --master sae-1 --slave sae-3) || fail "$out"
echo "# $out"
n=$(grep -c '"t": "enc"' "$LOG" || true)
[ "$n" -ge 20 ] || fail "only $n keys received by the master: too little traffic to show anything"
ok "$n relayed keys received by sae-1 during $NFAULT faults: each delivered once to sae-3 with identical bytes, a second dec_keys refused, no key_ID twice"

# ---------------------------------------------------------------- every relay settled at both ends
# events ORIGIN DEST: once nothing is in flight from ORIGIN (every
# relay-sent confirmed or aborted), the batches ORIGIN confirmed must be
# exactly those DEST received from it.
settled() {
	python3 - "$1" "$2" <<'EOF'
import json, subprocess, sys
qkm, d = sys.argv[1], sys.argv[2]
def ev(node, event):
    out = subprocess.run([qkm, "ctl", "events", "--dir", d, "--json", "--event", event, node],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out)
def ids(evs, peer):
    return {e["key_id"] for e in evs if e["peer"] == peer}
bad = []
for o, t in (("node1", "node3"), ("node3", "node1")):
    sent = ids(ev(o, "relay-sent"), t)
    done = ids(ev(o, "relay-confirmed"), t)
    aborted = ids(ev(o, "relay-aborted"), t)
    got = ids(ev(t, "relay-received"), o)
    if sent - done - aborted:
        bad.append(f"{o}: {len(sent - done - aborted)} relay(s) to {t} not settled yet")
    elif done != got:
        bad.append(f"{o}->{t}: confirmed at {o} but not stored at {t}: {sorted(done - got)[:3]}; "
                   f"stored at {t} but not confirmed at {o}: {sorted(got - done)[:3]}")
    else:
        print(f"{o}->{t}: {len(sent)} relays, {len(done)} confirmed and stored at both ends, "
              f"{len(aborted)} aborted and stored at neither")
if bad:
    print("; ".join(bad))
    sys.exit(1)
EOF
}
wait_for 30 settled "$QKM" "$D" || fail "relays not settled: $(settled "$QKM" "$D")"
settled "$QKM" "$D" | sed 's/^/# /'
ok "every relay settled: no end-to-end key stored at one end only"

for pair in "node1 node2" "node2 node3"; do
	set -- $pair
	wait_for 20 pair_clean "$D" "$1" "$2" || fail "pair-check $1-$2: $("$QKM" ctl pair-check --dir "$D" "$1" "$2")"
	ok "$("$QKM" ctl pair-check --dir "$D" "$1" "$2")"
done
if grep -h "ALARM relay" "$D"/node*/log >"$T/alarms"; then
	# TLS never lets a damaged frame through: a relay ALARM here is a bug.
	fail "a relay failed its checks though TLS carried it: $(head -3 "$T/alarms")"
fi
ok "no relay ALARM: every damaged stream was caught by TLS before a frame was handed over"
