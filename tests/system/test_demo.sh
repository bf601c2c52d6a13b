#!/usr/bin/env bash
# The demo, installed and from the source tree (issue #8 acceptance:
# "`make install DESTDIR=...` then the installed binary runs the demo" and
# "`curl .../metrics` shows non-zero stock and supply counters during the
# demo"):
#   1. `cmake --install` of QKM's build directory staged with DESTDIR puts
#      the demo in PREFIX/share/qkm/ with its topology; run from there with
#      no QKM set, it runs the staged PREFIX/bin/qkm: sae-1 gets two keys at
#      node1 (enc_keys) and sae-3 the same two at node3 (dec_keys, same
#      fingerprints), a second dec_keys is refused, the audit is clean, and
#      the /metrics lines it prints (read with curl and the operator's
#      certificate) show node1's and node3's relay pool stock and keys
#      supplied non-zero (2 by enc_keys at node1, 2 by dec_keys at node3);
#      its network is stopped and the directory it made is removed;
#   2. scripts/demo (what `make demo` runs) passes the same way with QKM.
. "$(dirname "$0")/lib.sh"

BUILD=$(dirname "$QKM")
[ -f "$BUILD/CMakeCache.txt" ] || { echo "skip: $QKM is not in a CMake build directory"; exit 77; }
PREFIX=$(sed -n 's/^CMAKE_INSTALL_PREFIX:PATH=//p' "$BUILD/CMakeCache.txt")
R=$T/root
DESTDIR=$R cmake --install "$BUILD" >"$T/install.log" 2>&1 || { cat "$T/install.log" >&2; fail "cmake --install"; }
DEMO=$R$PREFIX/share/qkm/demo
[ -x "$DEMO" ] && [ -f "$R$PREFIX/share/qkm/figure4.json" ] || fail "the demo is not installed in $PREFIX/share/qkm"

# check_demo OUTPUT_FILE WHAT: the checks of both runs.
check_demo() {
	local out=$1 what=$2
	# The key lines after enc_keys and after the first dec_keys: ID, size, fingerprint.
	enc=$(awk '/POST enc_keys -> 200/ { f = 1; next } f && / bits  fingerprint / { print; next } f { exit }' "$out")
	dec=$(awk '/POST dec_keys -> 200/ { f = 1; next } f && / bits  fingerprint / { print; next } f { exit }' "$out")
	[ "$(echo "$enc" | grep -c fingerprint)" = 2 ] || fail "$what: enc_keys gave no two keys: $(cat "$out")"
	[ "$enc" = "$dec" ] || fail "$what: sae-3 did not get the keys sae-1 got:
$enc
$dec"
	grep -q "POST dec_keys -> 400" "$out" || fail "$what: a second dec_keys was not refused"
	grep -q "^   audit: clean" "$out" || fail "$what: the audit is not clean"
	# metric NAME{LABELS}: its value in the demo's output (one line).
	metric() { awk -v m="$1" '$1 == m { print $2 }' "$out"; }
	for m in 'qkm_pool_keys{node="node1",peer="node3",kind="relay"}' \
		'qkm_pool_keys{node="node3",peer="node1",kind="relay"}' \
		'qkm_pool_bytes{node="node1",peer="node3",kind="relay"}' \
		'qkm_pool_bytes{node="node3",peer="node1",kind="relay"}'; do
		v=$(metric "$m")
		[ -n "$v" ] && [ "$v" -gt 0 ] || fail "$what: $m is '$v', not > 0: $(grep qkm_ "$out")"
	done
	for m in 'qkm_supplied_keys_total{node="node1"}' 'qkm_supplied_keys_total{node="node3"}'; do
		v=$(metric "$m")
		[ -n "$v" ] && [ "$v" -ge 2 ] || fail "$what: $m is '$v', not >= 2"
	done
	[ "$(metric 'qkm_etsi014_keys_supplied_total{node="node1",sae="sae-1",endpoint="enc_keys"}')" = 2 ] &&
		[ "$(metric 'qkm_etsi014_keys_supplied_total{node="node3",sae="sae-3",endpoint="dec_keys"}')" = 2 ] ||
		fail "$what: ETSI 014 keys supplied are not 2 by enc_keys at node1 and 2 by dec_keys at node3: $(grep qkm_etsi014 "$out")"
	grep -q "curl --cacert .*/pki/ca.pem --cert .*/pki/admin.pem --key .*/pki/admin.key https://127.0.0.1:[0-9]*/metrics" "$out" ||
		fail "$what: the demo does not show how it reads /metrics"
	grep -q "^qkm net down: stopped 3 node(s), the simulator and the controller" "$out" ||
		fail "$what: the network was not stopped"
}

# 1. The installed demo, as an operator runs it: no QKM, no DEMO_DIR.
rc=0
env -u QKM -u DEMO_DIR -u DEMO_TOPOLOGY TMPDIR=$T DEMO_SECONDS=2 PATH=/usr/bin:/bin "$DEMO" >"$T/installed.out" 2>&1 || rc=$?
[ "$rc" = 0 ] || { cat "$T/installed.out" >&2; fail "the installed demo exited $rc"; }
grep -q "^== starting a QKD network from $R$PREFIX/share/qkm/figure4.json with $R$PREFIX/bin/qkm (qkm [0-9]" \
	"$T/installed.out" || fail "the installed demo did not run the installed binary: $(head -n 1 "$T/installed.out")"
check_demo "$T/installed.out" "installed demo"
dir=$(sed -n 's/^network file: *\(.*\)\/network.json$/\1/p' "$T/installed.out")
case $dir in "$T"/qkm-demo.*) ;; *) fail "the installed demo's network was not in a new directory under TMPDIR: '$dir'" ;; esac
[ ! -e "$dir" ] || fail "the installed demo left $dir behind"
ok "installed demo ($PREFIX/share/qkm/demo, staged): $PREFIX/bin/qkm ran it; the same 2 keys at both SAEs; relay pool stock and keys supplied non-zero in node1's and node3's /metrics"
sed -n '/^== metrics/,/non-zero$/p' "$T/installed.out"

# 2. The source tree's demo (make demo) with this build's binary.
rc=0
DEMO_DIR=$T/src-demo DEMO_SECONDS=2 "$SRC/scripts/demo" >"$T/src.out" 2>&1 || rc=$?
NETS="$NETS $T/src-demo"
[ "$rc" = 0 ] || { cat "$T/src.out" >&2; fail "scripts/demo exited $rc"; }
check_demo "$T/src.out" "scripts/demo"
ok "scripts/demo: the same checks pass"
