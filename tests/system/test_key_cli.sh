#!/usr/bin/env bash
# `qkm key`, the application-side ETSI 014 client (R-SUP-7): a key got with
# `enc` at the master's node comes back identical with `dec` at the slave's
# node, once; errors go to stderr with a non-zero exit.
. "$(dirname "$0")/lib.sh"
D=$T/two
net_up "$SRC/examples/two-nodes.json" "$D"
wait_for 15 '"$QKM" key status --dir "$D" --sae sae-alice sae-bob | grep -q "\"stored_key_count\":[1-9]"' ||
	fail "status shows no stock"
enc=$("$QKM" key enc --dir "$D" --sae sae-alice sae-bob --number 2 --size 128) || fail "key enc"
ids=$(echo "$enc" | js "' '.join(k['key_ID'] for k in d['keys'])")
dec=$("$QKM" key dec --dir "$D" --sae sae-bob sae-alice $ids) || fail "key dec"
[ "$(echo "$enc" | js "sorted((k['key_ID'], k['key']) for k in d['keys'])")" = \
  "$(echo "$dec" | js "sorted((k['key_ID'], k['key']) for k in d['keys'])")" ] || fail "keys differ"
ok "qkm key enc at A, dec at B: identical keys"
if out=$("$QKM" key dec --dir "$D" --sae sae-bob sae-alice $ids 2>&1); then fail "second dec succeeded"; fi
echo "$out" | grep -q "HTTP 400" || fail "second dec: $out"
ok "second dec refused: $out"
if out=$("$QKM" key enc --dir "$D" --sae sae-nobody sae-bob 2>&1); then fail "unknown SAE accepted"; fi
echo "$out" | grep -q "no SAE 'sae-nobody'" || fail "unknown SAE: $out"
ok "unknown SAE named: $out"

# --format and --out: the key alone, in the form a program takes it.
hex=$("$QKM" key enc --dir "$D" --sae sae-alice sae-bob --number 2 --size 256 --format hex) || fail "enc --format hex"
[ "$(echo "$hex" | wc -l)" = 2 ] || fail "enc --format hex: $(echo "$hex" | wc -l) lines"
echo "$hex" | grep -Eqvx '[0-9a-f-]{36} [0-9a-f]{64}' && fail "enc --format hex: not 'KEY_ID HEX' lines"
ids=$(echo "$hex" | cut -d' ' -f1)
(umask 022 && echo old >"$T/b64" && chmod 644 "$T/b64")
out=$("$QKM" key dec --dir "$D" --sae sae-bob sae-alice $ids --format base64 --out "$T/b64") ||
	fail "dec --format base64 --out"
[ "$out" = "$ids" ] || fail "dec --out: stdout is not the key_IDs: $out"
[ "$(stat -c %a "$T/b64")" = 600 ] || fail "dec --out: mode $(stat -c %a "$T/b64"), not 600"
[ "$(python3 -c 'import base64, sys; print("\n".join(base64.b64decode(l).hex() for l in open(sys.argv[1])))' "$T/b64")" = \
  "$(echo "$hex" | cut -d' ' -f2)" ] || fail "the base64 keys at B are not the hex keys at A"
[ "$(head -c 44 "$T/b64" | tr -d '\n' | wc -c)" = 44 ] || fail "a 256-bit key in base64 is not 44 characters (wg genpsk)"
ok "enc --format hex at A, dec --format base64 --out at B: the same keys; the file replaced, 0600; key_IDs on stdout"
umask 022
id=$("$QKM" key enc --dir "$D" --sae sae-alice sae-bob --size 512 --format raw --out "$T/raw") || fail "enc --format raw"
[ "$(stat -c '%a %s' "$T/raw")" = "600 64" ] || fail "raw: $(stat -c '%a %s' "$T/raw"), not 600 64 (mode, bytes)"
"$QKM" key dec --dir "$D" --sae sae-bob sae-alice "$id" --out "$T/json" >/dev/null || fail "dec --out (json)"
[ "$(js "d['keys'][0]['key_ID']" <"$T/json")" = "$id" ] || fail "dec --out: the file is not the JSON answer"
[ "$(js "__import__('base64').b64decode(d['keys'][0]['key']).hex()" <"$T/json")" = "$(od -An -tx1 -v "$T/raw" | tr -d ' \n')" ] ||
	fail "raw at A and JSON at B differ"
[ "$(find "$T" -name 'raw.*' -o -name 'json.*' -o -name 'b64.*')" = "" ] || fail "a temporary file was left"
ok "enc --format raw --out: 64 bytes, 0600; dec --out keeps the JSON; no temporary file left"
for bad in "status --format hex sae-bob" "enc --format raw sae-bob" "enc --format pem sae-bob"; do
	# shellcheck disable=SC2086 # the words of a command line
	if "$QKM" key ${bad%% *} --dir "$D" --sae sae-alice ${bad#* } 2>"$T/err"; then fail "accepted: $bad"; else rc=$?; fi
	[ "$rc" = 2 ] || fail "$bad: exit $rc, not 2: $(cat "$T/err")"
done
# A FIFO and a directory stand for devices: /dev/null is a regular file on
# some CI machines, so it cannot be the example of one.
mkfifo "$T/fifo"
mkdir "$T/dir"
for special in fifo dir; do
	if "$QKM" key enc --dir "$D" --sae sae-alice sae-bob --out "$T/$special" 2>"$T/err"; then
		fail "--out $special accepted"
	fi
	grep -qF "$T/$special exists and is not a regular file" "$T/err" || fail "--out $special: $(cat "$T/err")"
done
[ -p "$T/fifo" ] && [ -d "$T/dir" ] || fail "--out replaced a FIFO or a directory"
ln -s "$T/raw" "$T/link"
if "$QKM" key enc --dir "$D" --sae sae-alice sae-bob --out "$T/link" 2>"$T/err"; then fail "--out LINK accepted"; fi
[ "$(stat -c %s "$T/raw")" = 64 ] || fail "--out LINK wrote through the link"
ok "bad --format/--out refused (exit 2: status with --format, raw without --out, an unknown format; exit 1: a FIFO, a directory, a link)"
