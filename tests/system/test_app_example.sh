#!/usr/bin/env bash
# docs/applications.md, the OpenSSL example, run exactly as the guide writes
# it: its two blocks are taken out of the page (doc_block), so the guide and
# this test cannot drift. On two nodes, sae-alice at A encrypts a random
# 1 MiB file with a 512-bit key from qkm (AES-256-CTR, HMAC-SHA256), sae-bob
# at B gets the key by its key_ID and decrypts: byte for byte the same. A
# second dec_keys of that key_ID is refused (R-SUP-8); a flipped byte of the
# ciphertext is caught before decryption; no key used appears in any log of
# the network, in hex or base64, whole or either half.
. "$(dirname "$0")/lib.sh"
command -v openssl >/dev/null || fail "openssl not installed"
GUIDE=$SRC/docs/applications.md
D=$T/qn
net_up "$SRC/examples/two-nodes.json" "$D"
wait_for 15 '"$QKM" key status --dir "$D" --sae sae-alice sae-bob | grep -q "\"stored_key_count\":[1-9]"' ||
	fail "A has no key for sae-bob"

# `qkm` on the blocks' PATH: the binary under test, which also keeps a copy
# of every --out file in $T/spy for the log check at the end.
mkdir -p "$T/bin" "$T/spy" "$T/alice" "$T/bob"
cat >"$T/bin/qkm" <<EOF
#!/bin/bash
"$QKM" "\$@" || exit
while [ \$# -gt 1 ]; do
	if [ "\$1" = --out ]; then cp "\$2" "$T/spy/\$(date +%s%N)"; fi
	shift
done
EOF
chmod +x "$T/bin/qkm"

# run_block NAME DIR: the guide's block NAME, run by bash in DIR with D set,
# as a reader would type it (but stopping at the first failure).
run_block() {
	local code
	code=$(doc_block "$GUIDE" "$1")
	(cd "$2" && PATH=$T/bin:$PATH D=$D bash -eu -o pipefail -c "$code")
}

head -c 1048576 /dev/urandom >"$T/alice/report.pdf"
cp "$T/alice/report.pdf" "$T/report.orig"
run_block alice "$T/alice" || fail "the guide's block at A failed"
[ ! -e "$T/alice/alice.key" ] || fail "alice.key left behind"
[ "$(stat -c %s "$T/alice/report.enc")" = 1048576 ] || fail "report.enc is not 1 MiB"
! cmp -s "$T/report.orig" "$T/alice/report.enc" || fail "report.enc is the plaintext"
cp "$T/alice/report.enc" "$T/alice/report.hdr" "$T/bob/"
run_block bob "$T/bob" || fail "the guide's block at B failed"
cmp "$T/report.orig" "$T/bob/report.pdf" || fail "the file decrypted at B differs"
ok "1 MiB encrypted at A by sae-alice, decrypted at B by sae-bob: identical"

read -r id _ <"$T/bob/report.hdr"
if out=$("$QKM" key dec --dir "$D" --sae sae-bob sae-alice "$id" --format hex 2>&1); then
	fail "a second dec_keys of $id succeeded"
fi
echo "$out" | grep -q "HTTP 400.*already delivered" || fail "second dec_keys: $out"
ok "a second dec_keys of the key_ID refused: $out"

rm -f "$T/alice/report.enc" "$T/alice/report.hdr" "$T/bob/"*
run_block alice "$T/alice" || fail "the guide's block at A failed (second file)"
cp "$T/alice/report.enc" "$T/alice/report.hdr" "$T/bob/"
python3 -c 'import sys; f = open(sys.argv[1], "r+b"); f.seek(4242); b = f.read(1); f.seek(4242); f.write(bytes([b[0] ^ 1]))' \
	"$T/bob/report.enc"
if run_block bob "$T/bob" 2>"$T/bob.err"; then fail "a tampered report.enc was decrypted"; fi
grep -q "was altered: not decrypted" "$T/bob.err" || fail "tampering: $(cat "$T/bob.err")"
[ ! -e "$T/bob/report.pdf" ] || fail "report.pdf written from a tampered report.enc"
ok "a flipped bit in report.enc caught by the HMAC before decryption"

found=$(python3 - "$T/spy" "$D"/*/log "$D.up.log" <<'EOF'
import base64, os, sys
spy, logs = sys.argv[1], {p: open(p, "rb").read() for p in sys.argv[2:]}
n = 0
for f in sorted(os.listdir(spy)):
    k = bytes.fromhex(open(os.path.join(spy, f)).read().split()[0])
    assert len(k) == 64, f
    for part in (k, k[:32], k[32:], k[:16]):
        for form in (part.hex(), part.hex().upper(), base64.b64encode(part).decode()):
            for p, text in logs.items():
                if form.encode() in text:
                    sys.exit(f"a key ({form[:8]}...) is in {p}")
    n += 1
print(n)
EOF
) || fail "$found"
[ "$found" = 4 ] || fail "expected 4 key files (2 at A, 2 at B), saw $found"
ok "the 2 keys (4 copies) appear in none of $(ls "$D"/*/log | wc -l) logs, in hex or base64"
