#!/usr/bin/env bash
# The man pages (man/): each renders with groff without a warning; qkm(1)
# names every command of `qkm --help` and a page for each; qkm-ctl(1) names
# every command of `qkm ctl --help`; qkm-sim(1) every fault kind of
# `qkm sim --help`; qkm-config(5) every field proto/config_json.c accepts.
. "$(dirname "$0")/lib.sh"
command -v groff >/dev/null || fail "groff not installed (scripts/install-deps installs groff-base)"
M=$SRC/man

# text PAGE: the page as plain ASCII text, one line per paragraph (no
# hyphenation), runs of blanks squeezed; rendered once, kept in $T.
text() {
	local t
	t=$T/$(basename "$1").txt
	[ -f "$t" ] || groff -man -Tascii -P-cbou -rLL=30000n -rHY=0 "$1" 2>/dev/null |
		tr -s ' \t' '  ' >"$t"
	echo "$t"
}
# mentions PAGE WORDS: WORDS appear in PAGE, delimited by blanks or punctuation.
mentions() {
	local re
	# shellcheck disable=SC2016 # a sed expression: nothing to expand
	re=$(printf '%s' "$2" | sed 's/[][\\.*^$()+?{}|]/\\&/g')
	grep -Eq "(^|[][ (,;:'\"|])$re([][ ),.;:'\"|]|$)" "$(text "$1")"
}

pages=("$M"/*.[15])
for page in "${pages[@]}"; do
	warn=$(groff -man -Tutf8 -ww "$page" 2>&1 >/dev/null) || fail "$page: groff failed: $warn"
	[ -z "$warn" ] || fail "$page: groff warnings:
$warn"
done
ok "${#pages[@]} pages render without a warning"

cmds=$("$QKM" --help | sed -n '/^commands:/,/^$/s/^  \([a-z][a-z-]*\) .*/\1/p')
[ -n "$cmds" ] || fail "no commands in qkm --help"
for c in $cmds; do
	mentions "$M/qkm.1" "$c" || fail "qkm.1 does not mention the command '$c'"
	[ "$c" = version ] && continue
	[ -f "$M/qkm-$c.1" ] || fail "no page man/qkm-$c.1 for 'qkm $c'"
	mentions "$M/qkm.1" "qkm-$c(1)" || fail "qkm.1 does not point to qkm-$c(1)"
done
ok "qkm.1 names every command of qkm --help and its page: $(echo "$cmds" | paste -sd' ')"

# `qkm ctl --help`: the word after "qkm ctl" or "|", with its second word
# when that is a verb in lower case ("sae add", "route clear").
subs=$("$QKM" ctl --help | tr '\n' ' ' | tr -s ' ' |
	grep -oE '(qkm ctl|\|) [a-z][a-z-]*( [a-z]+)?' | sed -E 's/^(qkm ctl|\|) //' | sort -u)
[ "$(echo "$subs" | wc -l)" -ge 12 ] || fail "too few ctl commands found in qkm ctl --help: $subs"
while read -r s; do
	mentions "$M/qkm-ctl.1" "$s" || fail "qkm-ctl.1 does not mention 'qkm ctl $s'"
done <<<"$subs"
ok "qkm-ctl.1 names every command of qkm ctl --help: $(echo "$subs" | paste -sd,)"

kinds=$("$QKM" sim --help 2>&1 | sed -n 's/.* LINK \(.*\)$/\1/p' | head -1 | tr '|' '\n' | awk '{print $1}')
[ -n "$kinds" ] || fail "no fault kinds in qkm sim --help"
for k in $kinds; do
	mentions "$M/qkm-sim.1" "$k" || fail "qkm-sim.1 does not mention the fault '$k'"
done
ok "qkm-sim.1 names every fault: $(echo "$kinds" | paste -sd' ')"

# Every field name in the allowed-keys lists of the config loaders.
keys=$(python3 - "$SRC/src/proto/config_json.c" <<'EOF'
import re, sys
src = open(sys.argv[1]).read()
names = set()
for body in re.findall(r'static const char \*const \w+\[\] = \{(.*?)\};', src, re.S):
    names.update(re.findall(r'"([a-z0-9_]+)"', body))
print(" ".join(sorted(names)))
EOF
)
[ "$(echo "$keys" | wc -w)" -ge 40 ] || fail "too few config fields found in config_json.c: $keys"
for k in $keys; do
	mentions "$M/qkm-config.5" "$k" || fail "qkm-config.5 does not mention the field '$k'"
done
ok "qkm-config.5 names all $(echo "$keys" | wc -w) fields config_json.c accepts"
