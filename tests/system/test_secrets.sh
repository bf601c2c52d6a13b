#!/usr/bin/env bash
# Secret hygiene after supply (DESIGN "Secrets"; R-SUP-8, R-REL-8): keys
# supplied and delivered with after_supply=delete leave no trace. Once the
# stores have checkpointed, none of their bytes (any 16-byte window, raw, hex
# or base64) is in any node's database or WAL, in any log, or in
# network.json: over a QKD link (two nodes), and over a relay (Figure 4,
# where the relay node node2 also handled the keys, and the key data of the
# first hop was node1-node2 link key, now used).
. "$(dirname "$0")/lib.sh"

# check DIR NODES MASTER SLAVE: 8 keys from MASTER's node to SLAVE's, then
# the search.
check() {
	local d=$1 nodes=$2 master=$3 slave=$4
	wait_for 40 '"$QKM" key status --dir "$d" --sae "$master" "$slave" | grep -q "\"stored_key_count\":[1-9]"' ||
		fail "$d: no stock"
	enc=$("$QKM" key enc --dir "$d" --sae "$master" "$slave" --number 8 --size 256) || fail "key enc"
	ids=$(echo "$enc" | js "' '.join(k['key_ID'] for k in d['keys'])")
	"$QKM" key dec --dir "$d" --sae "$slave" "$master" $ids >/dev/null || fail "key dec"
	echo "$enc" >"$d.keys.json"
	# The nodes checkpoint their WAL at least every 5 s (docs/store.md).
	sleep 7
	python3 - "$d.keys.json" "$d" "$nodes" <<'PY' || fail "$d: key bytes found after deletion"
import base64, glob, json, sys
keys = [base64.b64decode(k["key"]) for k in json.load(open(sys.argv[1]))["keys"]]
d, nodes = sys.argv[2], int(sys.argv[3])
files = glob.glob(d + "/*/keys.db*") + glob.glob(d + "/*/log") + [d + "/network.json"]
assert len([f for f in files if f.endswith("keys.db")]) == nodes, files
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
}

D=$T/two
net_up "$SRC/examples/two-nodes.json" "$D"
check "$D" 2 sae-alice sae-bob
ok "8 supplied and delivered keys: no 16-byte window of them in DBs, WALs, logs"

F=$T/figure4
net_up "$SRC/examples/figure4.json" "$F"
check "$F" 3 sae-1 sae-3
ok "8 relayed, supplied and delivered keys (node1 -> node2 -> node3): none of their bytes in any of the three nodes' DBs, WALs, logs"
