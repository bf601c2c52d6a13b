#!/usr/bin/env bash
# docs/applications.md, rotating WireGuard's preshared key: the guide's two
# scripts (qkm-wg-rotate at A, qkm-wg-take at B), taken out of the page with
# doc_block, run as written between two WireGuard interfaces in two network
# namespaces, with traffic through the tunnel. Each rotation leaves the same
# PSK at both ends, a new one each time, and a fresh handshake carries data;
# a PSK at one end only stops the tunnel and the next rotation mends it; a
# retried take of the key in force changes nothing; a refused key_ID and A's
# node killed each leave the PSK as it was (exit 75); no PSK in any log.
# Needs root, wg, and the kernel's WireGuard or wireguard-go; else it is
# skipped (exit 77, SKIP_RETURN_CODE in CMakeLists.txt).
. "$(dirname "$0")/lib.sh"
skip() {
	echo "skip - $*"
	exit 77
}
[ "$(id -u)" = 0 ] || skip "needs root (network namespaces)"
command -v wg >/dev/null || skip "wg not installed (wireguard-tools)"
GUIDE=$SRC/docs/applications.md
S=$$
NA=qkm-wga-$S NB=qkm-wgb-$S IA=qwa$S IB=qwb$S
W=$T/wg
GO_PIDS=""
wg_cleanup() {
	for p in $GO_PIDS; do kill "$p" 2>/dev/null || true; done
	for p in $GO_PIDS; do wait "$p" 2>/dev/null || true; done
	ip netns del "$NA" 2>/dev/null || true
	ip netns del "$NB" 2>/dev/null || true
}
trap 'wg_cleanup; cleanup' EXIT
mkdir -p "$W/bin"
ip netns add "$NA" 2>/dev/null || skip "cannot make a network namespace"
ip netns add "$NB"
ip link add "va$S" netns "$NA" type veth peer name "vb$S" netns "$NB" || fail "veth"
ip -n "$NA" addr add 10.77.0.1/24 dev "va$S"
ip -n "$NB" addr add 10.77.0.2/24 dev "vb$S"
for ns in "$NA" "$NB"; do ip -n "$ns" link set lo up; done
ip -n "$NA" link set "va$S" up
ip -n "$NB" link set "vb$S" up

# wg: the kernel's if it has WireGuard, else wireguard-go (userspace).
if ip -n "$NA" link add "$IA" type wireguard 2>/dev/null; then
	ip -n "$NB" link add "$IB" type wireguard || fail "kernel WireGuard in $NB"
	impl=kernel
else
	command -v wireguard-go >/dev/null || skip "no WireGuard in this kernel and no wireguard-go"
	ip netns exec "$NA" wireguard-go -f "$IA" >"$W/go-a.log" 2>&1 &
	GO_PIDS="$GO_PIDS $!"
	ip netns exec "$NB" wireguard-go -f "$IB" >"$W/go-b.log" 2>&1 &
	GO_PIDS="$GO_PIDS $!"
	wait_for 10 '[ -S /var/run/wireguard/$IA.sock ] && [ -S /var/run/wireguard/$IB.sock ]' ||
		fail "wireguard-go did not start: $(cat "$W"/go-*.log)"
	impl=wireguard-go
fi
# On the scripts' PATH: qkm, and a wg that runs in the namespace of the
# interface it is given (the scripts run here, beside the qkm nodes).
ln -s "$QKM" "$W/bin/qkm"
cat >"$W/bin/wg" <<EOF
#!/bin/bash
case "\$*" in
*$IA*) exec ip netns exec $NA $(command -v wg) "\$@" ;;
*) exec ip netns exec $NB $(command -v wg) "\$@" ;;
esac
EOF
chmod +x "$W/bin/wg"
export PATH=$W/bin:$PATH
(
	umask 077
	wg genkey >"$W/a.priv"
	wg genkey >"$W/b.priv"
)
APUB=$(wg pubkey <"$W/a.priv") BPUB=$(wg pubkey <"$W/b.priv")
wg set "$IA" private-key "$W/a.priv" listen-port 51820 peer "$BPUB" endpoint 10.77.0.2:51820 allowed-ips 10.78.0.2/32
wg set "$IB" private-key "$W/b.priv" listen-port 51820 peer "$APUB" endpoint 10.77.0.1:51820 allowed-ips 10.78.0.1/32
ip -n "$NA" addr add 10.78.0.1/24 dev "$IA"
ip -n "$NB" addr add 10.78.0.2/24 dev "$IB"
ip -n "$NA" link set "$IA" up
ip -n "$NB" link set "$IB" up

D=$T/qn
net_up "$SRC/examples/two-nodes.json" "$D"
wait_for 15 '"$QKM" key status --dir "$D" --sae sae-alice sae-bob | grep -q "\"stored_key_count\":[1-9]"' ||
	fail "A has no key for sae-bob"
doc_block "$GUIDE" qkm-wg-rotate >"$W/qkm-wg-rotate"
doc_block "$GUIDE" qkm-wg-take >"$W/qkm-wg-take"
# TELL: runs qkm-wg-take with B's settings (in real life: ssh to B).
cat >"$W/tell" <<EOF
#!/bin/bash
WG_IF=$IB PEER=$APUB STATE=$W/state-b QKM_OPTS="--dir $D --sae sae-bob" exec bash $W/qkm-wg-take "\$@"
EOF
chmod +x "$W/tell"
# rotate [TELL]: qkm-wg-rotate at A; its exit status.
rotate() {
	WG_IF=$IA PEER=$BPUB STATE=$W/state-a QKM_OPTS="--dir $D --sae sae-alice" TELL=${1:-$W/tell} \
		bash "$W/qkm-wg-rotate" 2>>"$W/rotate.err"
}
psk() { wg show "$1" preshared-keys | awk '{print $2}'; }
# same_psk: both ends hold one PSK, not none; prints it, and notes it in
# $W/psks for the log check.
same_psk() {
	local a b
	a=$(psk "$IA") b=$(psk "$IB")
	[ "$a" = "$b" ] || fail "PSKs differ: A $a, B $b"
	[ "${#a}" = 44 ] || fail "no PSK: $a"
	echo "$a" >>"$W/psks"
	echo "$a"
}
# fresh: both ends forget their sessions (setconf replaces the peers), so
# the next packet makes a handshake with the PSK now in force.
fresh() {
	for i in "$IA" "$IB"; do
		(umask 077 && wg showconf "$i" >"$W/conf")
		wg setconf "$i" "$W/conf"
	done
	rm -f "$W/conf"
	[ "$(wg show "$IA" latest-handshakes | awk '{print $2}')" = 0 ] || fail "the session survived setconf"
}
# carries SECONDS: a TCP connection from A to B through the tunnel carries data.
carries() {
	ip netns exec "$NB" python3 -c '
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("10.78.0.2", 7777)); s.listen(); s.settimeout(float(sys.argv[1]))
c, _ = s.accept(); print(c.recv(64).decode())' "$1" >"$W/srv.out" 2>&1 &
	local srv=$!
	sleep 0.3
	ip netns exec "$NA" python3 -c '
import socket, sys
socket.create_connection(("10.78.0.2", 7777), timeout=float(sys.argv[1])).sendall(b"through the tunnel")' "$1" \
		2>/dev/null || true
	wait "$srv" 2>/dev/null || true
	grep -q "through the tunnel" "$W/srv.out"
}

rotate || fail "first rotation: exit $?: $(cat "$W/rotate.err")"
p1=$(same_psk)
for f in "$W/state-a/$IA.psk" "$W/state-b/$IB.psk"; do
	[ "$(stat -c %a "$f")" = 600 ] || fail "$f is not 0600"
	[ "$(cat "$f")" = "$p1" ] || fail "$f is not the PSK in force"
done
cp "$W/state-b/$IB.psk.id" "$W/first.id"
fresh
carries 5 || fail "no traffic through the tunnel with the first PSK"
ok "first rotation ($impl): the same PSK from qkm at both ends, 0600 on disk; the tunnel carries data"

rotate || fail "second rotation: exit $?: $(cat "$W/rotate.err")"
p2=$(same_psk)
[ "$p2" != "$p1" ] || fail "the second rotation kept the PSK"
fresh
carries 5 || fail "no traffic through the tunnel with the second PSK"
ok "second rotation: a new PSK at both ends; a fresh handshake with it carries data"

(umask 077 && wg genpsk >"$W/other.psk")
wg set "$IA" peer "$BPUB" preshared-key "$W/other.psk"
fresh
! carries 3 || fail "the tunnel carried data with a PSK at A only"
rotate || fail "rotation after a mismatch: exit $?: $(cat "$W/rotate.err")"
p3=$(same_psk)
fresh
carries 5 || fail "no traffic after the rotation that should mend a mismatch"
ok "a PSK set at one end only stops the tunnel; the next rotation mends it"

id3=$(cat "$W/state-b/$IB.psk.id")
"$W/tell" "$id3" || fail "a retried take of the key in force failed"
[ "$(same_psk)" = "$p3" ] || fail "a retried take changed the PSK"
ok "a retried take of the key in force ($id3) succeeds and changes nothing"

# B is told the first key_ID, delivered long ago, instead of the new one.
cat >"$W/tell-old" <<EOF
#!/bin/bash
exec $W/tell $(cat "$W/first.id")
EOF
chmod +x "$W/tell-old"
if rotate "$W/tell-old"; then fail "rotation succeeded with a refused key_ID"; else rc=$?; fi
[ "$rc" = 75 ] || fail "refused key_ID: exit $rc, not 75"
[ "$(same_psk)" = "$p3" ] || fail "a refused key_ID changed the PSK"
[ ! -e "$W/state-a/$IA.psk.new" ] || fail "the key B refused was left at A"
grep -q "did not take key" "$W/rotate.err" || fail "no message: $(cat "$W/rotate.err")"
ok "B refusing the key_ID: exit 75, the PSK stays at both ends, the unused key discarded"

kill -9 "$(node_pid "$D" A)"
if rotate; then fail "rotation succeeded with A's node down"; else rc=$?; fi
[ "$rc" = 75 ] || fail "node down: exit $rc, not 75"
[ "$(same_psk)" = "$p3" ] || fail "a failed qkm key enc changed the PSK"
grep -q "no key from qkm" "$W/rotate.err" || fail "no message: $(cat "$W/rotate.err")"
ok "A's node down: exit 75, the PSK stays at both ends"

python3 - "$W/psks" "$D"/*/log "$D.up.log" <<'EOF' || fail "a PSK is in a log"
import base64, sys
keys = {base64.b64decode(line) for line in open(sys.argv[1]).read().split()}
assert len(keys) == 3, keys
for p in sys.argv[2:]:
    text = open(p, "rb").read()
    for k in keys:
        for form in (base64.b64encode(k).decode(), k.hex(), k.hex().upper(), k[:16].hex()):
            if form.encode() in text:
                sys.exit(f"PSK {form[:8]}... in {p}")
EOF
ok "none of the $(sort -u "$W/psks" | wc -l) PSKs used is in a node's log"
