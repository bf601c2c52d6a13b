# lib.sh - helpers for qkm system tests: real processes on loopback started
# with `qkm net up`, driven like an operator would. Source it; it sets QKM
# (the binary), SRC (the source tree) and T (a fresh scratch directory that
# is removed, with its network stopped, on exit).
set -eu
QKM=${QKM:-$(cd "$(dirname "$0")/../.." && pwd)/build/qkm}
SRC=${QKM_SRC:-$(cd "$(dirname "$0")/../.." && pwd)}
base=${QKM_TEST_TMP:-/tmp}
mkdir -p "$base"
T=$(mktemp -d "$base/sys.XXXXXX")
NETS=""

# The tests start python3 hundreds of times. A version manager's shim first
# in PATH (pyenv's is a shell script: 0.1-0.5 s a start, against 0.05 s for
# the interpreter itself) made up most of some tests' run time. The
# interpreter the shim picks is linked into $T/bin, first in PATH.
py=$(python3 -c 'import sys; print(sys.executable)' 2>/dev/null || true)
if [ -n "$py" ] && [ -x "$py" ] && [ "$py" != "$(command -v python3)" ]; then
	mkdir -p "$T/bin" && ln -s "$py" "$T/bin/python3" && PATH="$T/bin:$PATH"
fi

cleanup() {
	for d in $NETS; do "$QKM" net down --dir "$d" >/dev/null 2>&1 || true; done
	if [ "${KEEP:-0}" != 1 ]; then rm -rf "$T"; fi
}
trap cleanup EXIT

# A failing test keeps its scratch directory (stores, logs, records) for a
# post-mortem, and says where it is.
fail() {
	echo "FAIL: $*" >&2
	for d in $NETS; do tail -n 20 "$d"/*/log >&2 || true; done
	KEEP=1
	echo "# kept for inspection: $T" >&2
	exit 1
}
ok() { echo "ok - $*"; }

# net_up TOPOLOGY DIR: starts a network and remembers it for cleanup.
net_up() {
	NETS="$NETS $2"
	"$QKM" net up "$1" --dir "$2" >"$2.up.log" 2>&1 || { cat "$2.up.log" >&2; fail "net up $1"; }
}

# wait_for SECONDS 'SHELL CONDITION': re-evaluates the condition every 0.2 s
# until it holds; 1 if it still does not after SECONDS.
wait_for() {
	local secs=$1; shift
	local end=$(( $(date +%s) + secs ))
	while ! eval "$*" >/dev/null 2>&1; do
		[ "$(date +%s)" -lt "$end" ] || return 1
		sleep 0.2
	done
}

# jq-like field access with python3: js FILE_OR_- 'expr over d'
js() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }

status_json() { "$QKM" ctl status --dir "$1" --json; }

# pool FIELD DIR NODE PEER: a pool figure from ctl status.
pool() {
	status_json "$2" | js "[p['$1'] for n in d['nodes'] if n['id']=='$3' for p in n['pools'] if p['peer']=='$4'][0]"
}

counter() {
	status_json "$2" | js "[n['counters']['$1'] for n in d['nodes'] if n['id']=='$3'][0]"
}

node_pid() { js "d['nodes']['$2']['pid']" <"$1/network.json"; }

pair_clean() { "$QKM" ctl pair-check --dir "$1" "$2" "$3" | grep -q " 0 mismatches"; }

# stock_equal DIR A B: one status snapshot shows the same stock at both ends.
stock_equal() {
	status_json "$1" | js "1 if [(p['keys'],p['bytes']) for n in d['nodes'] if n['id']=='$2' for p in n['pools'] if p['peer']=='$3'] == [(p['keys'],p['bytes']) for n in d['nodes'] if n['id']=='$3' for p in n['pools'] if p['peer']=='$2'] else exit(1)" >/dev/null
}

# doc_block FILE NAME: the fenced code block that follows the line
# "<!-- ...: NAME -->" in FILE (a guide whose commands a test runs as
# written); fails when there is none.
doc_block() {
	local b
	b=$(awk -v name="$2" '
		!want && index($0, "<!--") == 1 && $0 ~ (": " name " -->$") { want = 1; next }
		want == 1 && /^```/ { want = 2; next }
		want == 2 && /^```/ { exit }
		want == 2 { print }' "$1")
	[ -n "$b" ] || fail "no block '$2' in $1"
	printf '%s\n' "$b"
}
