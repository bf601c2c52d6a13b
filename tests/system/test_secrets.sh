#!/usr/bin/env bash
# Secret hygiene after supply (DESIGN "Secrets"; R-SUP-8, R-REL-8; issue 7
# item 5): keys supplied and delivered with after_supply=delete leave no
# trace. Over a QKD link (two nodes), and over a relay (Figure 4, where the
# relay node node2 also handled the keys, and the key data of the first hop
# was node1-node2 link key, now used):
#  - files: once the stores have checkpointed, no piece of any key (15 bytes
#    raw, 30 hex digits, 19 base64 characters: tests/system/key_scan.py) is
#    in any node's database or WAL, in any log, or in network.json;
#  - memory: a core dump of every node, taken with gdb's gcore while the
#    node runs (it disables kernel core files for itself, RLIMIT_CORE 0, so
#    a dump is what someone who can ptrace it would take), holds no piece of
#    any key either: not in the heap, the stacks, libraries' buffers (TLS,
#    JSON, HTTP, stdio) nor in any thread's registers. To show that the dump
#    holds the memory those requests went through, the master's and the
#    slave's node each hold some of the keys' IDs (not secret) in theirs
#    (all 8 or half of them, as memory happens to be reused);
#  - not swappable: every node's secure heap (OpenSSL's, 256 MiB) is one
#    mapping locked in memory ("lo" in /proc/PID/smaps) and left out of core
#    dumps ("dd", MADV_DONTDUMP), and VmLck counts it.
# Not covered: key material still in use is in the secure heap, which the
# dump leaves out by design (MADV_DONTDUMP: gcore and the kernel both honour
# it), so a key still in stock is in no dump and the search could not see
# it; that includes SQLite's page cache, which qkm allocates there too
# (docs/store.md). Copies below the file system (journals, SSD wear
# levelling) and the applications' own processes (qkm key enc/dec, curl)
# are outside the node. Under ThreadSanitizer or AddressSanitizer the dump
# part is skipped: their shadow memory and allocator regions are not left
# out of dumps (a dump of an ASan node passed 12 GB).
. "$(dirname "$0")/lib.sh"

# key_nodes DIR: "NODE PID" per line for every node of the network.
key_nodes() { js "'\n'.join('%s %s' % (n, v['pid']) for n, v in d['nodes'].items())" <"$1/network.json"; }

# dump_check DIR MASTER SLAVE: the memory part (header) for every node.
dump_check() {
	local d=$1 master=$2 slave=$3 node pid cores=""
	while read -r node pid; do
		kill -0 "$pid" || fail "$d: node $node not running"
		# One mapping of at least 256 MiB, locked and not dumped.
		awk '/^[0-9a-f]+-[0-9a-f]+ /{size = 0} /^Size:/{size = $2}
			/^VmFlags:/ && size >= 262144 && / lo / && / dd( |$)/ {found = 1}
			END {exit !found}' "/proc/$pid/smaps" ||
			fail "$d: node $node has no locked, not-dumped mapping of 256 MiB (secure heap)"
		lck=$(awk '/^VmLck:/{print $2}' "/proc/$pid/status")
		[ "$lck" -ge 262144 ] || fail "$d: node $node VmLck $lck kB, under 256 MiB"
		if [ "$skip_dump" ]; then continue; fi
		# At most 1 GiB a dump (a node's is under 100 MB): a process whose
		# big mappings are dumpable fails here instead of filling the disk.
		(ulimit -f $((1 << 20)) && gcore -o "$d.core.$node" "$pid") >"$d.gcore.log" 2>&1 ||
			{ cat "$d.gcore.log" >&2; fail "$d: gcore of node $node"; }
		kill -0 "$pid" || fail "$d: node $node died under gcore"
		cores="$cores $d.core.$node.$pid"
	done < <(key_nodes "$d")
	ok "$d: every node's secure heap is locked in memory and left out of core dumps (smaps lo+dd, VmLck >= 256 MiB)"
	if [ "$skip_dump" ]; then
		echo "# skipped: core dumps ($skip_dump)"
		return
	fi
	# shellcheck disable=SC2086
	python3 "$SRC/tests/system/key_scan.py" "$d.keys.json" $cores ||
		fail "$d: key bytes found in a core dump"
	ids=$(js "' '.join(k['key_ID'] for k in d['keys'])" <"$d.keys.json")
	for sae in "$master" "$slave"; do
		node=$(js "d['saes']['$sae']['node']" <"$d/network.json")
		n=0
		for id in $ids; do
			if grep -q -a -F "$id" "$d.core.$node".*; then n=$((n + 1)); fi
		done
		[ "$n" -gt 0 ] || fail "$d: none of the keys' IDs in node $node's dump"
	done
	# shellcheck disable=SC2086
	rm -f $cores
	# And the nodes still serve after being dumped.
	"$QKM" key status --dir "$d" --sae "$master" "$slave" >/dev/null || fail "$d: key status after gcore"
}

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
	files=$(ls "$d"/*/keys.db* "$d"/*/log "$d/network.json")
	[ "$(ls "$d"/*/keys.db | wc -l)" = "$nodes" ] || fail "$d: expected $nodes stores: $files"
	# shellcheck disable=SC2086
	python3 "$SRC/tests/system/key_scan.py" "$d.keys.json" $files ||
		fail "$d: key bytes found after deletion"
	dump_check "$d" "$master" "$slave"
}

skip_dump=""
if ! command -v gcore >/dev/null; then
	skip_dump="no gcore (gdb)"
elif ldd "$QKM" | grep -q libtsan; then
	skip_dump="ThreadSanitizer build"
elif ldd "$QKM" | grep -q libasan; then
	skip_dump="AddressSanitizer build"
fi
where="DBs, WALs, logs and core dumps"
[ -z "$skip_dump" ] || where="DBs, WALs, logs (core dumps not searched: $skip_dump)"

D=$T/two
net_up "$SRC/examples/two-nodes.json" "$D"
check "$D" 2 sae-alice sae-bob
ok "8 supplied and delivered keys: no piece of them in both nodes' $where"

F=$T/figure4
net_up "$SRC/examples/figure4.json" "$F"
check "$F" 3 sae-1 sae-3
ok "8 relayed, supplied and delivered keys (node1 -> node2 -> node3): no piece of them in any of the three nodes' $where"
