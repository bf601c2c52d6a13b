#!/usr/bin/env bash
# Running under systemd (issue #8 item 4), without systemd: `--check`
# names every error of a config with its line and exits 2; a node started
# as a Type=notify service tells NOTIFY_SOCKET READY=1 only once its
# listeners accept connections and STOPPING=1 when it stops; with stderr on
# the journal (JOURNAL_STREAM = stderr's device:inode) its lines carry the
# syslog priority "<N>" instead of the time; daemons that `qkm net` starts
# inherit neither.
. "$(dirname "$0")/lib.sh"

# --check: three errors on known lines, all reported, in file order.
cat >"$T/bad-node.json" <<'J'
{
  "id": "A",
  "db": "/var/lib/qkm/A/keys.db",
  "limits": {"sae_rate": 10, "sae_bursts": 5},
  "tls": {"ca": "ca.pem", "cert": "a.pem", "key": "a.key"},
  "listen": {"kx": "127.0.0.1:7001", "admin": "127.0.0.1:7002"},
  "links": [
    {"link": "A-B", "peer": "B", "addr": "127.0.0.1:7003", "module": "A-B:A",
     "kma_unit_bits": 100}
  ],
  "relay": {"mode": "otp",
            "central": "B"}
}
J
rc=0
out=$("$QKM" node -c "$T/bad-node.json" --check 2>&1) || rc=$?
[ "$rc" = 2 ] || fail "node --check exit $rc, want 2: $out"
want="$T/bad-node.json:4: limits.sae_bursts: unknown field
$T/bad-node.json:9: links[0].kma_unit_bits: must be a multiple of 8
$T/bad-node.json:12: relay.central: only allowed when mode is central-xor
qkm node: $T/bad-node.json: 3 error(s)"
[ "$out" = "$want" ] || fail "node --check printed:
$out
want:
$want"
ok "node --check: every error with its line, exit 2"

# Starting with the same file names the first error (with its line), exit 2.
rc=0
out=$("$QKM" node -c "$T/bad-node.json" 2>&1) || rc=$?
[ "$rc" = 2 ] && echo "$out" | grep -q "bad-node.json:9: links\[0\].kma_unit_bits" ||
	fail "node start with a bad file: exit $rc: $out"

# The controller's check covers the topology it names; sim has --check too.
echo '{"nodes": [{"id": "A"}, {"id": "A"}]}' >"$T/bad-topo.json"
sed "s|/etc/qkm/topology.json|$T/bad-topo.json|; s|\"adaptive\"|\"fast\"|" \
	"$SRC/packaging/etc/controller.json.example" >"$T/ctl.json"
rc=0
out=$("$QKM" controller -c "$T/ctl.json" --check 2>&1) || rc=$?
[ "$rc" = 2 ] || fail "controller --check exit $rc: $out"
echo "$out" | grep -q "^$T/ctl.json:[0-9]*: mode: must be" || fail "controller --check: $out"
echo "$out" | grep -q "^$T/bad-topo.json:1: nodes\[1\].id: duplicate node id 'A'" ||
	fail "controller --check does not check the topology: $out"
echo "$out" | grep -q "2 error(s)" || fail "controller --check count: $out"
sed 's/"unit_bits": 4096/"unit_bits": 4100/' "$SRC/packaging/etc/sim.json.example" >"$T/sim.json"
rc=0
out=$("$QKM" sim -c "$T/sim.json" --check 2>&1) || rc=$?
[ "$rc" = 2 ] && echo "$out" | grep -q "sim.json:16: links\[0\].unit_bits: must be a multiple of 8" ||
	fail "sim --check: exit $rc: $out"
ok "controller --check (with its topology) and sim --check"

# The installed examples are valid.
"$QKM" node -c "$SRC/packaging/etc/node.json.example" --check >/dev/null || fail "node example"
"$QKM" sim -c "$SRC/packaging/etc/sim.json.example" --check >/dev/null || fail "sim example"
sed "s|/etc/qkm/topology.json|$SRC/packaging/etc/topology.json.example|" \
	"$SRC/packaging/etc/controller.json.example" >"$T/ctl-ok.json"
"$QKM" controller -c "$T/ctl-ok.json" --check >/dev/null || fail "controller example"
ok "example configurations pass --check"

# Type=notify and the journal, with node B of a running network.
D=$T/net
net_up "$SRC/examples/two-nodes.json" "$D"
pidB=$(node_pid "$D" B)
kill "$pidB"
wait_for 10 '! kill -0 '"$pidB" || fail "node B did not stop"

# listen SOCKET: starts the notify listener, records into $T/notify.out.
listen() {
	rm -f "$T/notify.ready"
	python3 "$SRC/tests/system/notify_listen.py" "$1" "$T/notify.out" "$T/notify.ready" &
	LPID=$!
	wait_for 10 '[ -e "$T/notify.ready" ]' || fail "notify listener did not start"
}
kx=$(js "d['listen']['kx']" <"$D/B/node.json")
admin=$(js "d['listen']['admin']" <"$D/B/node.json")
etsi=$(js "d['listen']['etsi014']" <"$D/B/node.json")
accepts() { # accepts HOST:PORT: a TCP connection succeeds
	timeout 2 bash -c "exec 3<>/dev/tcp/${1%:*}/${1##*:}" 2>/dev/null
}

for sock in "$T/notify.sock" "@qkm-test-notify-$$"; do
	: >"$T/notify.out"
	listen "$sock"
	: >"$T/B.log"
	js_val=$(stat -c '%d:%i' "$T/B.log")
	NOTIFY_SOCKET=$sock JOURNAL_STREAM=$js_val "$QKM" node -c "$D/B/node.json" 2>>"$T/B.log" &
	NPID=$!
	wait_for 20 'grep -qx "READY=1" "$T/notify.out"' || fail "no READY=1 on $sock: $(cat "$T/B.log")"
	# Ready means listening: each listener accepts at once.
	for a in "$kx" "$admin" "$etsi"; do
		accepts "$a" || fail "READY=1 sent before $a accepted connections"
	done
	kill -TERM "$NPID"
	rc=0
	wait "$NPID" || rc=$?
	[ "$rc" = 0 ] || fail "node B exit $rc after SIGTERM"
	wait_for 10 'grep -qx "STOPPING=1" "$T/notify.out"' || fail "no STOPPING=1 on $sock"
	[ "$(cat "$T/notify.out")" = "READY=1
STOPPING=1" ] || fail "notifications on $sock: $(cat "$T/notify.out")"
	kill "$LPID" 2>/dev/null || true
	wait "$LPID" 2>/dev/null || true
	ok "notify on $sock: READY=1 with every listener up, STOPPING=1 on SIGTERM"
done

# Journal lines: "<N>NAME LEVEL: message", no timestamp.
grep -qx "<6>node B info: node B up: .*" "$T/B.log" || fail "no <6> info line: $(head -3 "$T/B.log")"
grep -q "^<6>node B info: signal 15: stopping$" "$T/B.log" || fail "no <6> stop line"
if grep -v '^<[2-7]>node B \(fatal\|error\|warn\|info\|debug\): ' "$T/B.log" | grep -q .; then
	fail "lines without a priority prefix: $(grep -v '^<' "$T/B.log" | head -3)"
fi
ok "journal lines carry <N>: $(head -1 "$T/B.log")"

# Daemons of `qkm net` inherit neither: B restarted by net, under a
# service's NOTIFY_SOCKET and JOURNAL_STREAM, neither notifies nor drops
# its log file's timestamps.
: >"$T/notify.out"
listen "$T/notify2.sock"
: >"$T/net.log"
ups=$(grep -c "node B up:" "$D/B/log")
NOTIFY_SOCKET=$T/notify2.sock JOURNAL_STREAM=$(stat -c '%d:%i' "$T/net.log") \
	"$QKM" net restart --dir "$D" B >/dev/null 2>>"$T/net.log" || fail "net restart B"
wait_for 20 '[ "$(grep -c "node B up:" "$D/B/log")" -gt "$ups" ]' || fail "B not restarted by net"
sleep 1 # a datagram sent at READY would have arrived by now
kill "$LPID" 2>/dev/null || true
wait "$LPID" 2>/dev/null || true
[ ! -s "$T/notify.out" ] || fail "a daemon of qkm net notified: $(cat "$T/notify.out")"
tail -1 "$D/B/log" | grep -q '^20[0-9][0-9]-' || fail "B's log file lost its timestamps: $(tail -1 "$D/B/log")"
ok "net's daemons do not inherit NOTIFY_SOCKET and keep timestamps in their log files"
