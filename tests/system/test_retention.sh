#!/usr/bin/env bash
# retention_s (R-SUP-10, R-LC-2; docs/store.md "Retention"): on a
# two-node network whose policy keeps history 60 s, a key delivered to its
# slave is gone from both stores a minute later, recorded `pruned` at both
# nodes and in the manager's ledger (audit clean), counted in /metrics, and
# refused by dec_keys as delivered; a key the slave has not fetched yet
# stays and is still delivered, once. The nodes' life-cycle records older
# than a minute leave the nodes' stores but not the manager's.
. "$(dirname "$0")/lib.sh"
D=$T/net
python3 - "$SRC/examples/two-nodes.json" "$T/topo.json" <<'EOF'
import json, sys
t = json.load(open(sys.argv[1]))
t.setdefault("policy", {})["retention_s"] = 60
json.dump(t, open(sys.argv[2], "w"))
EOF
net_up "$T/topo.json" "$D"
for n in A B; do
	[ "$(js "d['retention_s']" <"$D/$n/node.json")" = 60 ] || fail "$n/node.json lacks retention_s 60"
done
wait_for 15 '"$QKM" key status --dir "$D" --sae sae-alice sae-bob | grep -q "\"stored_key_count\":[1-9]"' ||
	fail "status shows no stock"
enc=$("$QKM" key enc --dir "$D" --sae sae-alice sae-bob --number 2) || fail "key enc"
read -r got kept < <(echo "$enc" | js "' '.join(k['key_ID'] for k in d['keys'])")
"$QKM" key dec --dir "$D" --sae sae-bob sae-alice "$got" >/dev/null || fail "key dec"
t0=$(date +%s)
ok "two keys supplied to sae-alice, one delivered to sae-bob; rows kept 60 s"

# rows NODE ID: the KSA rows of NODE's store holding key ID (a run holds
# the IDs of its round from its first on, count of them).
rows() {
	python3 - "$D/$1/keys.db" "$2" <<'EOF'
import sqlite3, sys, uuid
db = sqlite3.connect("file:%s?mode=ro" % sys.argv[1], uri=True, timeout=5)
k = uuid.UUID(sys.argv[2]).bytes
n = 0
for first, count in db.execute("SELECT id, count FROM ksa_keys WHERE substr(id, 1, 12) = ?", (k[:12],)):
    i, j = int.from_bytes(first[12:], "big"), int.from_bytes(k[12:], "big")
    n += first[:12] == k[:12] and i <= j < i + count
print(n)
EOF
}
[ "$(rows A "$got")" = 1 ] && [ "$(rows B "$got")" = 1 ] || fail "the delivered key has no row before the retention"
"$QKM" ctl events --dir "$D" --event pruned B | grep -q pruned && fail "pruned before the retention"

pruned() { "$QKM" ctl events --dir "$D" --event pruned "$1" | grep -q "metadata of [0-9]* KSA key(s) deleted"; }
wait_for 100 'pruned A && pruned B' || fail "no pruned record at both nodes 100 s after the supply"
[ $(( $(date +%s) - t0 )) -ge 59 ] || fail "pruned after $(( $(date +%s) - t0 )) s, before the retention"
[ "$(rows A "$got")" = 0 ] && [ "$(rows B "$got")" = 0 ] || fail "the delivered key's rows are still there"
[ "$(rows B "$kept")" = 1 ] || fail "the key sae-bob has not fetched lost its row"
ok "after $(( $(date +%s) - t0 )) s: the delivered key's rows gone at A and B, a pruned record at each; the undelivered key's row kept"

if out=$("$QKM" key dec --dir "$D" --sae sae-bob sae-alice "$got" 2>&1); then fail "a pruned key was delivered"; fi
echo "$out" | grep -q "HTTP 400" && echo "$out" | grep -q "unknown or already delivered" || fail "pruned key: $out"
dec=$("$QKM" key dec --dir "$D" --sae sae-bob sae-alice "$kept") || fail "the kept key was not delivered"
[ "$(echo "$dec" | js "d['keys'][0]['key']")" = "$(echo "$enc" | js "[k['key'] for k in d['keys'] if k['key_ID'] == '$kept'][0]")" ] ||
	fail "the kept key differs between A and B"
ok "dec of the pruned key: $out; the kept key delivered, identical"

admin=$(js "d['nodes']['B']['admin']" <"$D/network.json")
m=$(curl -sS --cacert "$D/pki/ca.pem" --cert "$D/pki/admin.pem" --key "$D/pki/admin.key" "$admin/metrics")
echo "$m" | grep -Eq '^qkm_ksa_pruned_keys_total\{node="B"\} [1-9]' || fail "metrics: $(echo "$m" | grep pruned)"
wait_for 30 '[ "$("$QKM" ctl records --dir "$D" --event pruned | grep -c "metadata of")" -ge 2 ]' ||
	fail "the manager has not both pruned records: $("$QKM" ctl records --dir "$D" --event pruned)"
"$QKM" ctl audit --dir "$D" | grep -q "audit: clean" || fail "audit: $("$QKM" ctl audit --dir "$D")"
ok "qkm_ksa_pruned_keys_total counts them; the manager holds both nodes' pruned records; audit clean"

# first_seq CMD...: the lowest seq of the records CMD prints as JSON.
first_seq() { "$@" --json | js "min(r['seq'] for r in d)"; }
wait_for 30 '[ "$(first_seq "$QKM" ctl events --dir "$D" A)" -gt 1 ]' ||
	fail "node A still holds its first record: $(first_seq "$QKM" ctl events --dir "$D" A)"
a=$(first_seq "$QKM" ctl events --dir "$D" A)
[ "$(first_seq "$QKM" ctl records --dir "$D" --node A)" = 1 ] || fail "the manager lost node A's first records"
"$QKM" ctl audit --dir "$D" | grep -q "audit: clean" || fail "audit after the nodes pruned: $("$QKM" ctl audit --dir "$D")"
ok "node A's records before seq $a left its store, older than 60 s; the manager holds them all from seq 1; audit clean"
