#!/usr/bin/env bash
# Tampering on the Kx link (R-ACQ-3, R-ACQ-4, R-SUP-6, R-SUP-7, R-SUP-8).
# tests/fault/tamper.py sits between A (the leader: its name sorts first, so
# it dials) and B's Kx listener: A's node.json is rewritten to dial the proxy
# and A is restarted. The link is mutual TLS 1.3, so the proxy can only
# damage ciphertext. With acquisition running and ETSI 014 clients pairing
# enc_keys at A with dec_keys at B all along, each fault is injected in turn
# in each direction (c2s = A->B, s2c = B->A), and for each:
#  (a) it is detected: the node receiving the damaged stream logs why the
#      link went down (bad record MAC, unexpected EOF, reset, ...), the
#      other end logs the link down too; a delay longer than the KSA's
#      5 s round timeout is detected by the KSA (round abandoned);
#  (b) the link comes back: a new connection through the proxy, Kx up and
#      reconciled at both ends (a delay keeps the link: no reconnect);
#  (c) pair-check is clean (0 mismatches);
# and at the end (d) every key the master received is delivered once, with
# identical bytes, to the slave; no key_ID twice; no dec request was cut;
# with the module stopped, both ends hold the same stock.
# The timeline (fault applied -> detected -> reconciled) comes from the
# proxy's and the nodes' log time stamps and is printed per fault.
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
	if [ "${KEEP:-0}" = 1 ]; then echo "# kept: $T"; fi
}
trap 'stop_helpers; cleanup' EXIT

tctl() { python3 "$TAMPER" ctl "$SOCK" "$@"; }
tstat() { tctl stats | sed 's/^ok //' | js "$1"; }
accepted() { tstat "d['accepted']"; }
queued() { tstat "d['queued']"; }
tbytes() { tstat "d['bytes']['c2s'] + d['bytes']['s2c']"; }
now_ms() { date +%s%3N; }

# The proxy refuses to connect anywhere but 127.0.0.0/8.
if python3 "$TAMPER" serve --target 192.0.2.1:443 --control "$T/x.sock" --log "$T/x.log" \
	>"$T/x.out" 2>&1; then
	fail "tamper.py accepted a non-loopback target"
fi
grep -q "only 127.0.0.0/8" "$T/x.out" || fail "tamper.py: no reason for refusing: $(cat "$T/x.out")"
ok "tamper.py refuses a target outside 127.0.0.0/8"

D=$T/two
net_up "$SRC/examples/two-nodes.json" "$D"
wait_for 20 '[ "$(pool keys "$D" A B)" -gt 0 ]' || fail "no A-B stock within 20 s"

# ---------------------------------------------------------------- the proxy on A's path
[ "$(js "[l['role'] for n in d['nodes'] if n['id']=='A' for l in n['links']][0]" < <(status_json "$D"))" = leader ] ||
	fail "A is not the leader of A-B: the proxy must sit on the dialling side's path"
BKX=$(js "d['listen']['kx']" <"$D/B/node.json")
python3 "$TAMPER" serve --target "$BKX" --control "$SOCK" --log "$TLOG" \
	--port-file "$T/tamper.port" --seed 7 >"$T/tamper.out" 2>&1 &
PROXY=$!
wait_for 10 '[ -s "$T/tamper.port" ]' || fail "tamper.py did not start: $(cat "$T/tamper.out")"
PORT=$(cat "$T/tamper.port")
python3 - "$D/A/node.json" B "127.0.0.1:$PORT" <<'EOF' || fail "cannot rewrite A's node.json"
import json, os, sys
path, peer, addr = sys.argv[1:]
cfg = json.load(open(path))
links = [l for l in cfg["links"] if l["peer"] == peer]
assert len(links) == 1, links
links[0]["addr"] = addr
with open(path + ".tmp", "w") as f:
    json.dump(cfg, f, indent=2)
os.replace(path + ".tmp", path)
EOF
"$QKM" net restart --dir "$D" A >"$T/restart.log" 2>&1 || fail "restart A: $(cat "$T/restart.log")"

# link_ok DIR: Kx up and reconciled at both ends.
link_ok() {
	status_json "$1" | pyck "all(l['kx_up'] and l['reconciled'] for n in d['nodes'] for l in n['links'])"
}
wait_for 20 '[ "$(accepted)" -ge 1 ] && link_ok "$D"' ||
	fail "A-B did not come up through the proxy: $(tctl stats)"
b0=$(tbytes)
wait_for 10 '[ "$(tbytes)" -gt "$b0" ]' ||
	fail "no Kx traffic through the proxy"
wait_for 20 etsi_ready "$D" sae-alice sae-bob || fail "A's KME has no stock for sae-bob"
ok "A dials B through tamper.py (127.0.0.1:$PORT -> B's Kx $BKX); Kx up, reconciled, traffic flowing"

# ---------------------------------------------------------------- ETSI 014 traffic throughout
LOG=$T/pairs.jsonl
: >"$LOG"
python3 "$PAIRS" run --net "$D/network.json" --log "$LOG" --seconds 300 --until "$T/stop" \
	--threads 3 --max-number 2 --seed 11 --round 1 >"$T/run.out" 2>&1 &
DRIVER=$!
wait_for 20 'grep -q "\"t\": \"enc\"" "$LOG"' || fail "clients got no key: $(cat "$T/run.out")"
ok "ETSI 014 clients pairing enc_keys at A with dec_keys at B (3 threads)"

# timeline TLOG_LINE A_LINE B_LINE KIND: one summary line from the proxy's
# log (when the fault was applied) and the nodes' logs (when each end saw
# the link go down, when it was reconciled again), all from line offsets.
timeline() {
	python3 - "$TLOG" "$1" "$D/A/log" "$2" "$D/B/log" "$3" "$4" <<'EOF'
import re, sys
from datetime import datetime, timezone
tlog, t0, alog, a0, blog, b0, kind = sys.argv[1:]
def tail(p, n):
    with open(p) as f:
        return f.read().splitlines()[int(n):]
applied = [l for l in tail(tlog, t0) if re.search(r"(flipped|dropped|duplicated|truncated|reset \(RST)", l)]
delay = kind == "delay"
if delay:
    applied = [l for l in tail(tlog, t0) if "command: delay" in l]
if not applied:
    print("no fault applied"); sys.exit(1)
t_app = float(applied[0].split()[0])
def ts(l):
    return datetime.strptime(l.split()[0], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc).timestamp()
def first(lines, pat, after=0.0):
    for l in lines:
        if re.search(pat, l) and ts(l) >= after - 0.0005:
            return ts(l), l.split(": ", 1)[1]
    return None, None
A, B = tail(alog, a0), tail(blog, b0)
placed = [l.split(": ", 1)[1] for l in tail(tlog, t0) if "flip placed" in l]
out = [f"applied: {applied[0].split(' ', 2)[2]}" + (f" ({placed[0]})" if placed else "")]
if delay:
    t, msg = first(A, r"no answer in time")
    out.append(f"A after {1000 * (t - t_app):.0f} ms: {msg}" if t else "A: no KSA timeout")
else:
    down = []
    for name, L, peer in (("A", A, "B"), ("B", B, "A")):
        t, msg = first(L, rf"Kx link to {peer} down|TLS handshake failed|failed before it opened")
        if t:
            down.append(t)
            out.append(f"{name} after {1000 * (t - t_app):.0f} ms: {msg}")
    ta, _ = first(A, r"reconciled \d+ round", max(down) if down else t_app)
    tb, _ = first(B, r"reconciled with A", max(down) if down else t_app)
    if ta and tb:
        out.append(f"reconciled at both ends {1000 * (max(ta, tb) - t_app):.0f} ms after the fault")
print("; ".join(out))
EOF
}

# fault RECEIVER REASON_REGEX TAMPER_COMMAND...: injects one fault that must
# break the link; RECEIVER (the node reading the damaged stream) must log
# the link down with a reason matching REASON_REGEX, the other end must log
# it down too; then a new connection, both ends reconciled, pair-check clean.
NFAULT=0
fault() {
	local rcv=$1 re=$2; shift 2
	local other la lb lt acc t0
	other=$([ "$rcv" = A ] && echo B || echo A)
	la=$(wc -l <"$D/A/log"); lb=$(wc -l <"$D/B/log"); lt=$(wc -l <"$TLOG")
	acc=$(accepted)
	t0=$(now_ms)
	tctl "$@" >/dev/null || fail "tamper: $*"
	new() { tail -n +$(($([ "$1" = A ] && echo "$la" || echo "$lb") + 1)) "$D/$1/log"; }
	wait_for 20 'new "$rcv" | grep -Eq "Kx link to $other down: ($re)"' ||
		fail "$*: $rcv did not log the link down with /$re/: $(new "$rcv" | tail -5)"
	wait_for 10 'new "$other" | grep -Eq "Kx link to $rcv down"' ||
		fail "$*: $other did not log the link down: $(new "$other" | tail -5)"
	tctl pass >/dev/null
	wait_for 20 '[ "$(accepted)" -gt "$acc" ] && link_ok "$D"' ||
		fail "$*: link not back: $(tctl stats) $(status_json "$D")"
	local t1; t1=$(now_ms)
	wait_for 10 pair_clean "$D" A B || fail "$*: pair-check: $("$QKM" ctl pair-check --dir "$D" A B)"
	NFAULT=$((NFAULT + 1))
	ok "$* -> $rcv: $(new "$rcv" | grep -Eo "Kx link to $other down: .*" | head -1); back and reconciled (the test saw it after $((t1 - t0)) ms), pair-check clean"
	echo "#   $(timeline "$lt" "$la" "$lb" fault)"
}

# ---------------------------------------------------------------- faults that break the link
# A flipped ciphertext or tag bit fails the AEAD check; a flipped header bit
# (content type, version or length) fails the record layer's checks.
fault B "TLS read failed: decryption failed or bad record mac" flip c2s 1 body
fault A "TLS read failed: decryption failed or bad record mac" flip s2c 1 body
fault B "TLS read failed: decryption failed or bad record mac" flip c2s 1 tag
fault A "TLS read failed: decryption failed or bad record mac" flip s2c 1 tag
fault B "TLS read failed: .+" flip c2s 1 header
fault A "TLS read failed: .+" flip s2c 1 header
fault B "TLS read failed: .+" drop c2s
fault A "TLS read failed: .+" drop s2c
fault B "TLS read failed: .+" dup c2s
fault A "TLS read failed: .+" dup s2c
fault B "TLS read failed: unexpected eof while reading" truncate c2s
fault A "TLS read failed: unexpected eof while reading" truncate s2c
fault B "TLS read failed: unexpected eof while reading" truncate c2s 3
fault A "TLS read failed: unexpected eof while reading" truncate s2c 3
# A reset reaches a node reading (connection lost) or writing (write to peer failed).
fault B "(connection lost|write to peer failed): Connection reset by peer" reset
fault A "(connection lost|write to peer failed): Connection reset by peer" reset

# ---------------------------------------------------------------- a damaged handshake
# The reconnection's ClientHello gets a flipped bit in its random: the
# handshake transcript differs, so the handshake fails; A dials again.
la=$(wc -l <"$D/A/log"); lb=$(wc -l <"$D/B/log"); lt=$(wc -l <"$TLOG")
acc=$(accepted)
tctl next flip c2s 1 20 >/dev/null || fail "tamper: next flip"
tctl reset >/dev/null || fail "tamper: reset"
wait_for 20 'tail -n +$((la + 1)) "$D/A/log" | grep -q "Kx link to B down: TLS handshake failed"' ||
	fail "damaged handshake: A logged no handshake failure: $(tail -n +$((la + 1)) "$D/A/log" | tail -5)"
wait_for 20 'tail -n +$((lb + 1)) "$D/B/log" | grep -q "failed before it opened: TLS handshake failed"' ||
	fail "damaged handshake: B logged no handshake failure: $(tail -n +$((lb + 1)) "$D/B/log" | tail -5)"
wait_for 20 '[ "$(accepted)" -ge $((acc + 2)) ] && link_ok "$D"' ||
	fail "damaged handshake: link not back: $(tctl stats)"
wait_for 10 pair_clean "$D" A B || fail "damaged handshake: pair-check: $("$QKM" ctl pair-check --dir "$D" A B)"
NFAULT=$((NFAULT + 1))
ok "flipped bit in the reconnection's ClientHello: A: $(tail -n +$((la + 1)) "$D/A/log" | grep -o "Kx link to B down: TLS handshake failed.*" | head -1); B: $(tail -n +$((lb + 1)) "$D/B/log" | grep -o "TLS handshake failed.*" | head -1); A dialled again, reconciled, pair-check clean"

# ---------------------------------------------------------------- a slow path
# DELAY_MS in one direction, longer than the KSA's 5 s round timeout (each
# answer comes at least DELAY_MS after its round was sent) and shorter than
# the 20 s silence that drops a link: the KSA abandons the round (503 to the
# application, the keys cancelled on both nodes), the link stays up, the
# late answer is ignored; acquisition just runs slower.
DELAY_MS=6000
slow() {
	local dir=$1 la lb lt acc
	la=$(wc -l <"$D/A/log"); lb=$(wc -l <"$D/B/log"); lt=$(wc -l <"$TLOG")
	acc=$(accepted)
	tctl delay "$dir" "$DELAY_MS" >/dev/null || fail "tamper: delay $dir"
	wait_for 20 'tail -n +$((la + 1)) "$D/A/log" | grep -q "supply to B: no answer in time; round abandoned"' ||
		fail "delay $dir: no KSA round timeout at A: $(tail -n +$((la + 1)) "$D/A/log" | tail -5)"
	tctl pass >/dev/null
	wait_for 20 '[ "$(queued)" = 0 ]' || fail "delay $dir: delayed chunks never drained"
	wait_for 10 'tail -n +$((la + 1)) "$D/A/log" | grep -q "late answer to an abandoned round ignored"' ||
		fail "delay $dir: the late answer was not seen: $(tail -n +$((la + 1)) "$D/A/log" | tail -5)"
	if tail -n +$((la + 1)) "$D/A/log" | grep -q "Kx link to B down" ||
		tail -n +$((lb + 1)) "$D/B/log" | grep -q "Kx link to A down"; then
		fail "delay $dir: a slow link was dropped"
	fi
	[ "$(accepted)" = "$acc" ] || fail "delay $dir: the link reconnected"
	link_ok "$D" || fail "delay $dir: link not up and reconciled: $(status_json "$D")"
	wait_for 10 pair_clean "$D" A B || fail "delay $dir: pair-check: $("$QKM" ctl pair-check --dir "$D" A B)"
	NFAULT=$((NFAULT + 1))
	ok "delay $dir ${DELAY_MS} ms: A: supply to B: no answer in time; round abandoned; late answer ignored; $(tail -n +$((la + 1)) "$D/A/log" | grep -c "cancelling") cancellation(s); link kept (no reconnect), pair-check clean"
	echo "#   $(timeline "$lt" "$la" "$lb" delay)"
}
slow c2s
slow s2c

# ---------------------------------------------------------------- what the applications got
touch "$T/stop"
wait "$DRIVER" || fail "client driver: $(cat "$T/run.out")"
DRIVER=""
cat "$T/run.out"
out=$(python3 "$PAIRS" verify --net "$D/network.json" --log "$LOG" --deadline 20) || fail "$out"
echo "# $out"
echo "$out" | grep -q " 0 with a dec request cut" || fail "a dec request was cut with no node crashing: $out"
n=$(grep -c '"t": "enc"' "$LOG" || true)
[ "$n" -ge 100 ] || fail "only $n keys received by the master: too little traffic to show anything"
ok "$n keys received by the master during $NFAULT faults: each delivered once to the slave with identical bytes, a second dec_keys refused, no key_ID twice (R-SUP-7, R-SUP-8)"

# A SUPPLY either arrives intact or not at all (TLS): the slave's node has
# no reason to refuse one (it did, for a batch committed in the same read,
# before kma_io.c applied COMMITs ahead of KSA frames).
if grep -h "round refused" "$D/A/log" "$D/B/log" >"$T/refused"; then
	fail "a node refused a supply round: $(head -3 "$T/refused")"
fi
ok "no supply round refused by the slave's node (R-SUP-6)"

# ---------------------------------------------------------------- both ends agree
"$QKM" sim fault --dir "$D" A-B down >/dev/null || fail "sim fault A-B down"
wait_for 20 '[ "$(link_field "$D" A in_flight)" = 0 ] && [ "$(link_field "$D" B in_flight)" = 0 ] && stock_equal "$D" A B' ||
	fail "stock differs after the faults: $(status_json "$D")"
wait_for 10 pair_clean "$D" A B || fail "final pair-check: $("$QKM" ctl pair-check --dir "$D" A B)"
ok "after $NFAULT faults: same stock at both ends, $("$QKM" ctl pair-check --dir "$D" A B)"
a=$(counter aborted_batches "$D" A); b=$(counter aborted_batches "$D" B)
ok "rounds aborted and recorded: A $a, B $b; life-cycle aborts at A: $(sqlite3 "$D/A/keys.db" "select count(*) from lc where event='aborted'" 2>/dev/null || echo '?')"
