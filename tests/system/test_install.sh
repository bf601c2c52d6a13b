#!/usr/bin/env bash
# make install's part (issue #8 item 4): `cmake --install` of the build
# directory QKM was built in, staged with DESTDIR, puts the binary, both
# systemd units (naming the installed binary and /etc/qkm), the example
# configurations, the docs and the man pages where docs/operations.md says;
# the staged binary runs (`qkm version`, `qkm --version`) and the staged
# examples pass its --check; another install prefix gets units naming it;
# the units pass `systemd-analyze verify` where systemd-analyze is
# installed. (test_deb.sh installs the package; test_demo.sh runs the
# staged demo.)
. "$(dirname "$0")/lib.sh"

BUILD=$(dirname "$QKM")
[ -f "$BUILD/CMakeCache.txt" ] || { echo "skip: $QKM is not in a CMake build directory"; exit 0; }
PREFIX=$(sed -n 's/^CMAKE_INSTALL_PREFIX:PATH=//p' "$BUILD/CMakeCache.txt")
CONF=$(sed -n 's/^QKM_CONFDIR:PATH=//p' "$BUILD/CMakeCache.txt")
R=$T/root
DESTDIR=$R cmake --install "$BUILD" >"$T/install.log" 2>&1 || { cat "$T/install.log" >&2; fail "cmake --install"; }

for f in "$PREFIX/bin/qkm" \
	"$PREFIX/lib/systemd/system/qkm-node@.service" \
	"$PREFIX/lib/systemd/system/qkm-controller.service" \
	"$CONF/node.json.example" "$CONF/controller.json.example" \
	"$CONF/sim.json.example" "$CONF/topology.json.example" \
	"$PREFIX/share/doc/qkm/README.md" "$PREFIX/share/doc/qkm/operations.md" \
	"$PREFIX/share/doc/qkm/config.md" "$PREFIX/share/doc/qkm/examples/two-nodes.json" \
	"$PREFIX/share/man/man1/qkm.1"; do
	[ -f "$R$f" ] || fail "not installed: $f"
done
for m in "$SRC"/man/*.1 "$SRC"/man/*.5; do
	[ -e "$m" ] || continue
	sec=${m##*.}
	[ -f "$R$PREFIX/share/man/man$sec/$(basename "$m")" ] || fail "man page not installed: $m"
done
ok "installed under $PREFIX (and $CONF): $(cd "$R" && find . -type f | wc -l) files"

"$R$PREFIX/bin/qkm" version | grep -q "^qkm [0-9]" || fail "the installed binary does not run"
[ "$("$R$PREFIX/bin/qkm" --version)" = "$("$R$PREFIX/bin/qkm" version)" ] || fail "qkm --version"
grep -qx "ExecStart=$PREFIX/bin/qkm node -c $CONF/%i.json" "$R$PREFIX/lib/systemd/system/qkm-node@.service" ||
	fail "qkm-node@.service does not run $PREFIX/bin/qkm with $CONF/%i.json"
grep -qx "ExecStart=$PREFIX/bin/qkm controller -c $CONF/controller.json" \
	"$R$PREFIX/lib/systemd/system/qkm-controller.service" || fail "qkm-controller.service ExecStart"
for u in qkm-node@.service qkm-controller.service; do
	for k in Type=notify User=qkm NoNewPrivileges=yes ProtectSystem=strict LimitCORE=0 \
		CapabilityBoundingSet= MemoryDenyWriteExecute=yes; do
		grep -qx "$k" "$R$PREFIX/lib/systemd/system/$u" || fail "$u lacks $k"
	done
done
grep -qx "LimitMEMLOCK=320M" "$R$PREFIX/lib/systemd/system/qkm-node@.service" || fail "node LimitMEMLOCK"
ok "units run $PREFIX/bin/qkm, notify, as qkm, sandboxed"

# The units are written at install time: another prefix (as cpack's /usr)
# gets units naming its own binary and docs.
DESTDIR=$T/alt cmake --install "$BUILD" --prefix /opt/qkm >"$T/alt.log" 2>&1 || { cat "$T/alt.log" >&2; fail "cmake --install --prefix /opt/qkm"; }
grep -qx "ExecStart=/opt/qkm/bin/qkm node -c $CONF/%i.json" "$T/alt/opt/qkm/lib/systemd/system/qkm-node@.service" &&
	grep -qx "Documentation=man:qkm(1) file:///opt/qkm/share/doc/qkm/operations.md" \
		"$T/alt/opt/qkm/lib/systemd/system/qkm-node@.service" &&
	[ -x "$T/alt/opt/qkm/bin/qkm" ] || fail "cmake --install --prefix /opt/qkm: the units do not name /opt/qkm"
ok "cmake --install --prefix /opt/qkm: the units name /opt/qkm/bin/qkm"

E=$R$CONF
"$R$PREFIX/bin/qkm" node -c "$E/node.json.example" --check >/dev/null || fail "node.json.example"
"$R$PREFIX/bin/qkm" sim -c "$E/sim.json.example" --check >/dev/null || fail "sim.json.example"
sed "s|/etc/qkm/topology.json|$E/topology.json.example|" "$E/controller.json.example" >"$T/ctl.json"
"$R$PREFIX/bin/qkm" controller -c "$T/ctl.json" --check >/dev/null || fail "controller.json.example"
ok "the installed examples pass --check"

if ! command -v systemd-analyze >/dev/null; then
	echo "skip: no systemd-analyze"
	exit 0
fi
# verify wants the binary where ExecStart says: point it at the staged one.
mkdir -p "$T/units"
for u in qkm-node@.service qkm-controller.service; do
	sed "s|$PREFIX/bin/qkm|$R$PREFIX/bin/qkm|g" "$R$PREFIX/lib/systemd/system/$u" >"$T/units/$u"
done
cp "$T/units/qkm-node@.service" "$T/units/qkm-node@A.service"
out=$(cd "$T/units" && systemd-analyze verify --man=no qkm-node@A.service qkm-controller.service 2>&1) ||
	fail "systemd-analyze verify: $out"
[ -z "$out" ] || fail "systemd-analyze verify: $out"
ok "systemd-analyze verify: clean"
if out=$(systemd-analyze security --offline=yes "$T/units/qkm-node@A.service" 2>&1); then
	ok "systemd-analyze security: $(echo "$out" | grep -o 'Overall exposure level.*')"
fi
