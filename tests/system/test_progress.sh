#!/usr/bin/env bash
# Progress and errors of the commands an operator runs (issue #8 item 6):
#   1. a command that waits shows on stderr what it waits for and the
#      seconds waited, and erases it (QKM_PROGRESS=1 stands in for a
#      terminal): `net up` (the controller, each node), `net restart` (the
#      node stopping, then starting), `ctl audit` held 2.5 s by a stopped
#      controller (1 s, 2 s), `net down`; stdout is the same as without it,
#      and without a terminal (or with QKM_PROGRESS=0) stderr stays empty;
#   2. errors name the file, field, node, SAE or link involved and what to
#      do: no network in a directory, an unknown node (listing the nodes),
#      an unknown SAE (listing them), a pair-check with a node that shares
#      no pool, a link the simulator does not have (listing its links), a
#      controller that does not answer (its log, how to restart it), an
#      ETSI 014 refusal (the node's message);
#   3. `net down` names what it stopped, or says that nothing was running.
. "$(dirname "$0")/lib.sh"
HERE="$(cd "$(dirname "$0")" && pwd)"

# shown FILE: what a terminal would show of FILE's bytes (each \b moves
# back one column; lines kept), trailing blanks dropped.
shown() {
	python3 - "$1" <<'PY'
import sys
out = []
for line in open(sys.argv[1], encoding="utf-8", errors="replace").read().split("\n"):
    buf, col = [], 0
    for ch in line:
        if ch == "\b":
            col = max(col - 1, 0)
            continue
        if col < len(buf):
            buf[col] = ch
        else:
            buf.append(ch)
        col += 1
    out.append("".join(buf).rstrip())
print("\n".join(out).rstrip("\n"))
PY
}

# 1. Progress.
D=$T/net
NETS="$NETS $D"
QKM_PROGRESS=1 "$QKM" net up "$SRC/examples/two-nodes.json" --dir "$D" >"$T/up.out" 2>"$T/up.err" ||
	{ cat "$T/up.out" "$T/up.err" >&2; fail "net up"; }
grep -q "  controller   starting (pid [0-9]*) \.\.\." "$T/up.err" || fail "net up showed no wait for the controller: $(cat -v "$T/up.err")"
[ -z "$(shown "$T/up.err")" ] || fail "net up left progress on the terminal: '$(shown "$T/up.err")'"
grep -qx "  node A        starting (pid [0-9]*) \.\.\. ready" "$T/up.out" &&
	grep -qx "  node B        starting (pid [0-9]*) \.\.\. ready" "$T/up.out" ||
	fail "net up's stdout changed with progress on: $(cat -v "$T/up.out")"
ok "net up: 'controller starting (pid N) ...' on stderr, erased; stdout as without it"

QKM_PROGRESS=1 "$QKM" net restart --dir "$D" B >"$T/re.out" 2>"$T/re.err" || fail "net restart B: $(cat "$T/re.err")"
grep -qx "node B restarted (pid [0-9]*)" "$T/re.out" || fail "net restart's stdout: $(cat "$T/re.out")"
grep -q "node B: stopping (pid [0-9]*) \.\.\." "$T/re.err" && grep -q "node B: starting (pid [0-9]*), waiting until it answers \.\.\." "$T/re.err" ||
	fail "net restart showed no progress: $(cat -v "$T/re.err")"
[ -z "$(shown "$T/re.err")" ] || fail "net restart left progress on the terminal: '$(shown "$T/re.err")'"
ok "net restart: 'node B: stopping', then 'starting, waiting until it answers' on stderr, erased"

# Without a terminal, nothing on stderr.
"$QKM" net restart --dir "$D" B >"$T/re2.out" 2>"$T/re2.err" || fail "net restart B: $(cat "$T/re2.err")"
QKM_PROGRESS=0 "$QKM" ctl audit --dir "$D" >/dev/null 2>>"$T/re2.err" || fail "ctl audit: $(cat "$T/re2.err")"
[ ! -s "$T/re2.err" ] || fail "progress without a terminal: $(cat -v "$T/re2.err")"
ok "without a terminal (or with QKM_PROGRESS=0) stderr stays empty"

# A wait of seconds: the controller stopped for 2.5 s under an audit.
ctl=$(js "d['controller']['pid']" <"$D/network.json")
kill -STOP "$ctl"
(sleep 2.5; kill -CONT "$ctl") &
QKM_PROGRESS=1 "$QKM" ctl audit --dir "$D" >"$T/audit.out" 2>"$T/audit.err" || { kill -CONT "$ctl"; fail "ctl audit: $(cat "$T/audit.err")"; }
wait
grep -q "qkm ctl audit: the controller checks every chain of its ledger \.\.\. 1 s" "$T/audit.err" &&
	grep -q "\.\.\. 2 s" "$T/audit.err" || fail "ctl audit showed no seconds: $(cat -v "$T/audit.err")"
[ -z "$(shown "$T/audit.err")" ] || fail "ctl audit left progress: '$(shown "$T/audit.err")'"
grep -qx "audit: clean" "$T/audit.out" || fail "ctl audit's stdout: $(cat "$T/audit.out")"
ok "ctl audit: '... 1 s', '... 2 s' while the controller was stopped, erased; stdout unchanged"

# 2. Errors that say what is wrong and what to do.
# expect_err 'WHAT' 'REGEX' COMMAND...: fails unless COMMAND fails with REGEX on stderr.
expect_err() {
	local what=$1 re=$2 out
	shift 2
	if out=$("$@" 2>&1 >/dev/null); then fail "$what: succeeded"; fi
	echo "$out" | grep -Eq -- "$re" || fail "$what: $out"
	echo "   $out"
}
expect_err "no network" "no network in $T/none .*qkm net up TOPOLOGY.json --dir $T/none" \
	"$QKM" ctl status --dir "$T/none"
expect_err "unknown node" "no node named 'Q' in $D; it has A, B$" "$QKM" ctl events --dir "$D" Q
expect_err "restart unknown" "no node named 'Q' in $D; restart one of A, B, sim, controller" \
	"$QKM" net restart --dir "$D" Q
expect_err "unknown SAE" "no SAE 'sae-q' in $D; it has sae-alice, sae-bob \(.qkm ctl sae add" \
	"$QKM" key enc --dir "$D" --sae sae-q sae-bob
expect_err "no pool" "node A: pair-check with Z failed: .*qkm ctl status. lists each node's peers" \
	"$QKM" ctl pair-check --dir "$D" A Z
"$QKM" net restart --dir "$D" sim >/dev/null || fail "net restart sim"
expect_err "unknown link" "no link named 'A-Z'; the simulator has A-B" "$QKM" sim fault --dir "$D" A-Z flip 1
expect_err "ETSI 014 refusal" "^qkm key: HTTP 400: slave SAE 'sae-q' is not registered" \
	"$QKM" key enc --dir "$D" --sae sae-alice sae-q
kill "$ctl"
wait_for 10 "! kill -0 $ctl" || fail "the controller did not stop"
expect_err "controller down" "controller https://127.0.0.1:[0-9]* not reachable: .*its log: $D/controller/log; start it again with .qkm net restart --dir $D controller." \
	"$QKM" ctl routes --dir "$D"
ok "errors name the directory, node, SAE, link or log involved and what to do"

# 3. net down says what it stopped: the controller is already gone here,
# so the nodes and the simulator; run again, nothing.
"$QKM" net down --dir "$D" >"$T/down1.out" 2>&1 || fail "net down: $(cat "$T/down1.out")"
grep -qx "qkm net down: stopped 2 node(s) and the simulator in $D" "$T/down1.out" ||
	fail "net down with the controller gone: $(cat "$T/down1.out")"
"$QKM" net down --dir "$D" >"$T/down2.out" 2>&1 || fail "net down again: $(cat "$T/down2.out")"
grep -qx "qkm net down: nothing was running in $D" "$T/down2.out" ||
	fail "net down on a stopped network: $(cat "$T/down2.out")"
ok "net down names what it stopped, and says so when nothing was running"
