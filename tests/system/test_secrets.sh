#!/usr/bin/env bash
# Secret hygiene after supply (DESIGN "Secrets"; R-SUP-8): keys supplied and
# delivered with after_supply=delete leave no trace. Once the stores have
# checkpointed, none of their bytes (any 16-byte window, raw, hex or base64)
# is in either node's database or WAL, in any log, or in network.json.
. "$(dirname "$0")/lib.sh"
D=$T/two
net_up "$SRC/examples/two-nodes.json" "$D"
wait_for 15 '"$QKM" key status --dir "$D" --sae sae-alice sae-bob | grep -q "\"stored_key_count\":[1-9]"' ||
	fail "no stock"
enc=$("$QKM" key enc --dir "$D" --sae sae-alice sae-bob --number 8 --size 256) || fail "key enc"
ids=$(echo "$enc" | js "' '.join(k['key_ID'] for k in d['keys'])")
"$QKM" key dec --dir "$D" --sae sae-bob sae-alice $ids >/dev/null || fail "key dec"
echo "$enc" >"$T/keys.json"
# The nodes checkpoint their WAL at least every 5 s (docs/store.md).
sleep 7
python3 - "$T/keys.json" "$D" <<'PY' || fail "key bytes found after deletion"
import base64, glob, json, sys
keys = [base64.b64decode(k["key"]) for k in json.load(open(sys.argv[1]))["keys"]]
d = sys.argv[2]
files = glob.glob(d + "/*/keys.db*") + glob.glob(d + "/*/log") + [d + "/network.json"]
assert len([f for f in files if f.endswith("keys.db")]) == 2, files
bad = 0
for f in files:
    data = open(f, "rb").read()
    for i, k in enumerate(keys):
        for off in range(0, len(k) - 15):
            w = k[off:off + 16]
            if w in data or w.hex().encode() in data:
                print("key %d bytes %d..%d found in %s" % (i, off, off + 15, f)); bad += 1; break
        if base64.b64encode(k) in data:
            print("key %d (base64) found in %s" % (i, f)); bad += 1
print("searched %d file(s), %d bytes, for %d key(s): %d hit(s)" %
      (len(files), sum(len(open(f, "rb").read()) for f in files), len(keys), bad))
sys.exit(1 if bad else 0)
PY
ok "8 supplied and delivered keys: no 16-byte window of them in DBs, WALs, logs"
