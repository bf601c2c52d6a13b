#!/usr/bin/env bash
# The Debian package on this machine (issue #8 acceptance: "the .deb
# installs with `apt-get install ./qkm_*.deb`"), as root only (it installs
# into / and removes what it installed; skipped, exit 77, otherwise, or when
# a qkm is already installed here):
#   1. cpack builds the package from QKM's build directory, as `make deb`
#      does; its Depends name adduser and, for every shared library the
#      packaged binary links, the Debian package that holds it;
#   2. `apt-get install ./qkm_*.deb` installs it: /usr/bin/qkm runs
#      (`qkm --version` is the package's version), the units name
#      /usr/bin/qkm and pass `systemd-analyze verify`, the /etc/qkm examples
#      are there and pass --check, the qkm user owns /var/lib/qkm (0700),
#      the man page is found, and /usr/share/qkm/demo runs the installed
#      binary to the end (relay pool stock and keys supplied non-zero);
#   3. `apt-get remove qkm` removes the binary, units and docs and keeps
#      the examples (conffiles); `apt-get purge qkm` removes those too; the
#      qkm user and /var/lib/qkm stay (the package's promise), and this
#      test then removes them if it made them.
. "$(dirname "$0")/lib.sh"

[ "$(id -u)" = 0 ] || { echo "skip: not root (installs a package)"; exit 77; }
for t in apt-get dpkg-deb dpkg-query cpack readelf; do
	command -v "$t" >/dev/null || { echo "skip: no $t"; exit 77; }
done
BUILD=$(dirname "$QKM")
[ -f "$BUILD/CPackConfig.cmake" ] || { echo "skip: $QKM is not in a CMake build directory"; exit 77; }
# One at a time on a machine (other checkouts may run this test too): the
# checks below and the install see no one else's package.
if command -v flock >/dev/null; then
	exec 9>/run/lock/qkm-test-deb.lock
	flock -w 900 9 || { echo "skip: another test_deb.sh held the lock for 15 minutes"; exit 77; }
fi
if dpkg-query -W -f='${Status}' qkm 2>/dev/null | grep -q "installed\|config-files"; then
	echo "skip: a qkm package is on this machine already; not touching it"
	exit 77
fi
[ ! -e /usr/bin/qkm ] && [ ! -e /etc/qkm ] || { echo "skip: /usr/bin/qkm or /etc/qkm exists (not from a package)"; exit 77; }

had_user=0; getent passwd qkm >/dev/null && had_user=1
had_state=0; [ -e /var/lib/qkm ] && had_state=1
export DEBIAN_FRONTEND=noninteractive
APT=(apt-get -y -q -o DPkg::Lock::Timeout=300)
# On any exit: the package purged, and the user and directory it made gone.
deb_cleanup() {
	if dpkg-query -W -f='${Status}' qkm 2>/dev/null | grep -q "installed\|config-files"; then
		"${APT[@]}" purge qkm >/dev/null 2>&1 || true
	fi
	[ "$had_user" = 1 ] || ! getent passwd qkm >/dev/null || deluser --system qkm >/dev/null 2>&1 || true
	[ "$had_state" = 1 ] || rm -rf /var/lib/qkm
	cleanup
}
trap deb_cleanup EXIT

# 1. Build it and read its control fields.
cpack --config "$BUILD/CPackConfig.cmake" -G DEB -B "$T/pkg" >"$T/cpack.log" 2>&1 ||
	{ cat "$T/cpack.log" >&2; fail "cpack -G DEB"; }
deb=$(ls "$T"/pkg/qkm_*.deb)
version=$(dpkg-deb -f "$deb" Version)
depends=$(dpkg-deb -f "$deb" Depends)
echo "$depends" | grep -q "^adduser\(,\|$\)" || fail "Depends lacks adduser: $depends"
dpkg-deb -x "$deb" "$T/x"
# owner FILE: the package holding FILE (dpkg may list it under /lib or /usr/lib).
owner() {
	local f p
	for f in "$1" "$(readlink -f "$1")" "/usr$1"; do
		p=$(dpkg -S "$f" 2>/dev/null | head -n 1 | cut -d: -f1) || true
		[ -z "$p" ] || { echo "$p"; return; }
	done
}
# The libraries it links directly (DT_NEEDED); those they load in turn are
# their packages' Depends (libasan8's libgcc-s1, in a sanitized build).
needed=" $(readelf -d "$T/x/usr/bin/qkm" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | tr '\n' ' ') "
[ "$needed" != "  " ] || fail "readelf lists no library /usr/bin/qkm needs"
for lib in $(ldd "$T/x/usr/bin/qkm" | awk -v n="$needed" '$2 == "=>" && index(n, " " $1 " ") { print $3 }'); do
	p=$(owner "$lib")
	[ -n "$p" ] || fail "no Debian package holds $lib"
	echo ", $depends," | grep -q ", $p[ ,]" || fail "Depends lacks $p (for $lib): $depends"
done
ok "$(basename "$deb"): Depends name adduser and the package of every library /usr/bin/qkm links: $depends"

# 2. Install with apt-get, which resolves the Depends.
"${APT[@]}" install "$deb" >"$T/install.log" 2>&1 || { cat "$T/install.log" >&2; fail "apt-get install $deb"; }
[ "$(dpkg-query -W -f='${Status} ${Version}' qkm)" = "install ok installed $version" ] ||
	fail "dpkg says: $(dpkg-query -W -f='${Status} ${Version}' qkm)"
[ "$(command -v qkm)" = /usr/bin/qkm ] && [ "$(qkm --version)" = "qkm $version" ] ||
	fail "qkm --version: $(qkm --version 2>&1)"
U=/usr/lib/systemd/system
for u in qkm-node@.service qkm-controller.service; do
	[ -f "$U/$u" ] || fail "$U/$u not installed"
done
grep -qx "ExecStart=/usr/bin/qkm node -c /etc/qkm/%i.json" "$U/qkm-node@.service" ||
	fail "qkm-node@.service does not run /usr/bin/qkm"
grep -qx "ExecStart=/usr/bin/qkm controller -c /etc/qkm/controller.json" "$U/qkm-controller.service" ||
	fail "qkm-controller.service does not run /usr/bin/qkm"
if command -v systemd-analyze >/dev/null; then
	out=$(systemd-analyze verify --man=no qkm-node@A.service qkm-controller.service 2>&1) ||
		fail "systemd-analyze verify on the installed units: $out"
	[ -z "$out" ] || fail "systemd-analyze verify on the installed units: $out"
fi
for f in node controller sim topology; do
	[ -f /etc/qkm/$f.json.example ] || fail "/etc/qkm/$f.json.example not installed"
done
qkm node -c /etc/qkm/node.json.example --check >/dev/null || fail "/etc/qkm/node.json.example --check"
qkm sim -c /etc/qkm/sim.json.example --check >/dev/null || fail "/etc/qkm/sim.json.example --check"
[ "$(stat -c '%U %a' /var/lib/qkm)" = "qkm 700" ] || fail "/var/lib/qkm: $(stat -c '%U %a' /var/lib/qkm)"
getent passwd qkm | grep -q ":/var/lib/qkm:" || fail "no system user qkm: $(getent passwd qkm)"
[ -f /usr/share/man/man1/qkm.1 ] && [ -f /usr/share/man/man5/qkm-config.5 ] || fail "man pages not installed"
if command -v man >/dev/null; then
	[ "$(man -w qkm 2>/dev/null)" = /usr/share/man/man1/qkm.1 ] || fail "man -w qkm: $(man -w qkm 2>&1)"
fi
ok "apt-get install: qkm $version, /usr/bin/qkm, units naming it (systemd-analyze verify clean), /etc/qkm examples pass --check, user qkm, /var/lib/qkm 0700"

rc=0
env -u QKM -u DEMO_DIR -u DEMO_TOPOLOGY TMPDIR=$T DEMO_SECONDS=1 /usr/share/qkm/demo >"$T/demo.out" 2>&1 || rc=$?
[ "$rc" = 0 ] || { cat "$T/demo.out" >&2; fail "/usr/share/qkm/demo exited $rc"; }
head -n 1 "$T/demo.out" | grep -q " with /usr/bin/qkm (qkm $version)" || fail "the demo did not run /usr/bin/qkm: $(head -n 1 "$T/demo.out")"
grep -q "relay pool stock and keys supplied are non-zero" "$T/demo.out" || fail "the demo's metrics: $(cat "$T/demo.out")"
ok "/usr/share/qkm/demo ran /usr/bin/qkm to the end"

# 3. Remove, then purge.
"${APT[@]}" remove qkm >"$T/remove.log" 2>&1 || { cat "$T/remove.log" >&2; fail "apt-get remove qkm"; }
[ "$(dpkg-query -W -f='${Status}' qkm)" = "deinstall ok config-files" ] ||
	fail "after remove, dpkg says: $(dpkg-query -W -f='${Status}' qkm)"
for f in /usr/bin/qkm $U/qkm-node@.service $U/qkm-controller.service /usr/share/qkm /usr/share/doc/qkm \
	/usr/share/man/man1/qkm.1; do
	[ ! -e "$f" ] || fail "apt-get remove left $f"
done
[ -f /etc/qkm/node.json.example ] || fail "apt-get remove deleted the conffile /etc/qkm/node.json.example"
"${APT[@]}" purge qkm >"$T/purge.log" 2>&1 || { cat "$T/purge.log" >&2; fail "apt-get purge qkm"; }
! dpkg-query -W -f='${Status}' qkm 2>/dev/null | grep -q "installed\|config-files" ||
	fail "after purge, dpkg says: $(dpkg-query -W -f='${Status}' qkm)"
[ ! -e /etc/qkm ] || fail "apt-get purge left /etc/qkm: $(ls -A /etc/qkm)"
getent passwd qkm >/dev/null && [ -d /var/lib/qkm ] || fail "purge removed the qkm user or /var/lib/qkm (kept by design)"
ok "apt-get remove: binary, units, docs gone, examples kept; purge: /etc/qkm gone; user qkm and /var/lib/qkm kept"
