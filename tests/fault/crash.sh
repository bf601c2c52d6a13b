#!/usr/bin/env bash
# crash.sh - crash injection over a relayed network (issue #7 item 1; R-SUP-7,
# R-SUP-8, R-REL-1, R-REL-2, R-ACQ-4, R-LC-1, R-LC-2). Starts a network with
# `qkm net up` (examples/figure4.json by default: node1-node2-node3, sae-1 at
# node1 and sae-3 at node3, so every key between them is relayed through
# node2; and the controller/manager, to which every node streams its
# life-cycle records), keeps etsi014_pairs.py run (enc_keys as the first
# SAE, dec_keys of the same IDs as the last SAE) going for the whole run
# while acquisition and relays run by themselves, and for each round:
#   picks a victim among the nodes, the simulator and the controller, each
#   as likely (seeded RNG), waits a random 0.1-1.5 s, SIGKILLs it, waits a
#   random 0-0.5 s, restarts it (`qkm net restart`, which for a node or the
#   controller returns once it answers), waits until every node is up and
#   every link's Kx session is up and reconciled, then checks
#   - pair-check clean on every link (both ends hold the same key);
#   - relays settled between the two SAEs' nodes: every relay-sent is
#     confirmed or aborted, confirmed = received at the destination, nothing
#     aborted stored (relay_check.py settled --wait: the records read in
#     causal order, relays in flight at the first reading waited for, under
#     load);
#   - no link key range used twice by any node (relay_check.py reuse);
#   - no key_ID returned twice by enc_keys so far;
#   - no life-cycle record lost: for every node, within 30 s the manager
#     holds the node's last record as the node had it at that moment (same
#     seq and fields; the manager stores a node's records only in order,
#     without gaps), and `qkm ctl audit` is clean (every hash chain intact)
#     (lc_check.py, paging with `qkm ctl events/records --after`).
# At the end the load stops and etsi014_pairs.py verify settles and checks
# every key the master received (delivered once to the slave with identical
# bytes; only keys whose dec request was cut by a crash may end refused; a
# second dec_keys is refused), and the life-cycle checks run once more.
# Prints the seed first: SEED=S replays a run.
#
#   tests/fault/crash.sh [--rounds N] [--seed S] [--topology figure4|line5|FILE]
#   (or ROUNDS, SEED, TOPOLOGY, THREADS in the environment; KEEP=1 keeps
#   the scratch directory, which a failure always keeps)
. "$(dirname "$0")/../system/lib.sh"
. "$(dirname "$0")/../system/etsi014_lib.sh"
SYS="$(cd "$(dirname "$0")/../system" && pwd)"
PAIRS=$SYS/etsi014_pairs.py
CLIENT=$SYS/etsi014_client.py  # (etsi014_lib.sh looks next to $0)
ROUNDS=${ROUNDS:-10}
TOPOLOGY=${TOPOLOGY:-figure4}
THREADS=${THREADS:-4}
seed=${SEED:-}
while [ $# -gt 0 ]; do
	case $1 in
	--rounds) ROUNDS=$2; shift 2 ;;
	--seed) seed=$2; shift 2 ;;
	--topology) TOPOLOGY=$2; shift 2 ;;
	*) echo "usage: $0 [--rounds N] [--seed S] [--topology figure4|line5|FILE]" >&2; exit 2 ;;
	esac
done
[ -n "$seed" ] || seed=$(( $(od -An -N2 -tu2 /dev/urandom) % 32768 ))
case $TOPOLOGY in
*.json) TOPO=$TOPOLOGY ;;
*) TOPO=$SRC/examples/$TOPOLOGY.json ;;
esac
echo "# seed $seed (replay: SEED=$seed ROUNDS=$ROUNDS TOPOLOGY=$TOPOLOGY $0), topology $TOPO"
RANDOM=$seed
t0=$(date +%s)

round=0
STOP=$T/stop-load LOAD=""
# A failure keeps the scratch directory (logs, stores, the pairs log) and
# names the seed and round; the network itself is stopped.
fail() {
	echo "FAIL (seed $seed, round $round, victim ${victim:-none}): $*" >&2
	for f in "$D"/*/log; do echo "--- $f" >&2; tail -n 15 "$f" >&2 || true; done
	echo "scratch directory kept: $T (replay: SEED=$seed ROUNDS=$ROUNDS TOPOLOGY=$TOPOLOGY)" >&2
	KEEP=1
	exit 1
}
trap 'touch "$STOP" 2>/dev/null || true; [ -z "$LOAD" ] || kill "$LOAD" 2>/dev/null || true; cleanup' EXIT

# From the topology: nodes, links, the master SAE (first) and the slave SAE
# (last) and their nodes (the relay's two ends).
topo() { js "$1" <"$TOPO"; }
NODES=$(topo "' '.join(n['id'] for n in d['nodes'])")
LINKS=$(topo "' '.join(l['a']+'-'+l['b'] for l in d['links'])")
MASTER=$(topo "d['saes'][0]['id']") SLAVE=$(topo "d['saes'][-1]['id']")
END1=$(topo "d['saes'][0]['node']") END2=$(topo "d['saes'][-1]['node']")

D=$T/net
net_up "$TOPO" "$D"
# The victims, each as likely: every node, the simulator and the controller
# (a network without one has no "controller" in network.json).
VICTIMS="$NODES sim"
if js "'controller' in d" <"$D/network.json" | grep -q True; then VICTIMS="$VICTIMS controller"; fi
set -- $VICTIMS
NV=$#
rchk() { python3 "$SYS/relay_check.py" --qkm "$QKM" --dir "$D" "$@"; }

# ready: every node up and ready, every link's Kx session up, reconciled,
# and its quantum module up (both ends).
ready() {
	status_json "$D" | pyck "all(n['up'] and n['ready'] for n in d['nodes']) and len(d['nodes']) == $(echo $NODES | wc -w) and all(l['kx_up'] and l['reconciled'] and l['module_up'] for n in d['nodes'] for l in n.get('links', []))"
}
links_clean() {
	local l
	for l in $LINKS; do
		wait_for 30 pair_clean "$D" "${l%-*}" "${l#*-}" ||
			fail "pair-check ${l%-*} ${l#*-}: $("$QKM" ctl pair-check --dir "$D" "${l%-*}" "${l#*-}")"
	done
}
no_dup_ids() {
	local dup
	dup=$(grep '"t": "enc"' "$LOG" | js_lines | sort | uniq -d | head -3)
	[ -z "$dup" ] || fail "key_IDs returned twice by enc_keys: $dup"
}
js_lines() { python3 -c "import json,sys; [print(json.loads(l)['id']) for l in sys.stdin]"; }

# lc_check: no life-cycle record lost between the nodes and the manager,
# audit clean (lc_check.py; $T/lc.json keeps each node's last seq seen).
lc_check() {
	lc=$(python3 "$SYS/lc_check.py" --qkm "$QKM" --dir "$D" --state "$T/lc.json" --deadline 30 $NODES 2>&1) ||
		fail "$lc"
}

wait_for 30 ready || fail "network not ready within 30 s: $(status_json "$D")"
wait_for 60 etsi_ready "$D" "$MASTER" "$SLAVE" ||
	fail "Status of $MASTER for $SLAVE never reports relayed stock: $(q "$D" "$MASTER" status "$SLAVE")"
echo "ok - network up ($NODES; links $LINKS), $MASTER at $END1 has relayed stock for $SLAVE at $END2"

LOG=$T/pairs.jsonl
: >"$LOG"
python3 "$PAIRS" run --net "$D/network.json" --log "$LOG" --seconds 1000000 --until "$STOP" \
	--threads "$THREADS" --seed "$seed" --master "$MASTER" --slave "$SLAVE" >"$T/load.out" 2>&1 &
LOAD=$!
wait_for 30 '[ "$(grep -c "\"t\": \"enc\"" "$LOG")" -gt 0 ]' || fail "the load got no key within 30 s: $(cat "$T/load.out")"

declare -A killed
for v in $VICTIMS; do killed[$v]=0; done
for round in $(seq 1 "$ROUNDS"); do
	set -- $VICTIMS
	shift $((RANDOM % NV))
	victim=$1
	before=$(( RANDOM % 15 + 1 ))   # 0.1 .. 1.5 s, the kill moment (a test input)
	after=$(( RANDOM % 6 ))         # 0 .. 0.5 s dead before the restart
	sleep "$((before / 10)).$((before % 10))"
	case $victim in
	sim | controller) pid=$(js "d['$victim']['pid']" <"$D/network.json") ;;
	*) pid=$(node_pid "$D" "$victim") ;;
	esac
	kill -9 "$pid" || fail "kill -9 $victim ($pid)"
	wait_for 10 '! kill -0 '"$pid" || fail "$victim ($pid) survived SIGKILL"
	sleep "0.$after"
	"$QKM" net restart --dir "$D" "$victim" >"$T/restart$round.log" 2>&1 ||
		fail "restart $victim: $(cat "$T/restart$round.log")"
	killed[$victim]=$(( ${killed[$victim]} + 1 ))
	wait_for 30 ready || fail "links not up and reconciled 30 s after restarting $victim: $(status_json "$D")"
	links_clean
	out=$(rchk settled --wait 30 "$END1" "$END2" 2>&1) || fail "relays not settled: $out"
	out=$(rchk reuse $NODES 2>&1) || fail "$out"
	no_dup_ids
	[ -z "$(sed -n '/^Traceback/p' "$T/load.out")" ] || fail "the load died: $(cat "$T/load.out")"
	lc_check
	echo "ok - round $round: $victim (pid $pid) killed after $((before / 10)).$((before % 10)) s, restarted 0.$after s later; links reconciled, pair-check clean, relays settled, no link key reused, $(grep -c '"t": "enc"' "$LOG") key_IDs distinct; $lc"
done
round=end victim=
touch "$STOP"
wait "$LOAD" || fail "the load failed: $(cat "$T/load.out")"
LOAD=""
cat "$T/load.out"
out=$(python3 "$PAIRS" verify --net "$D/network.json" --log "$LOG" --deadline 30 \
	--master "$MASTER" --slave "$SLAVE") || fail "$out"
echo "ok - $out"
relays=$(rchk settled --wait 30 "$END1" "$END2" 2>&1) || fail "relays not settled at the end: $relays"
links_clean
lc_check
echo "ok - end: $lc"
vs=""
for v in $VICTIMS; do vs="$vs $v=${killed[$v]}"; done
echo "# summary: seed $seed, $ROUNDS round(s), victims:$vs; $(grep -c '"t": "enc"' "$LOG") keys received by $MASTER;" \
	"relays $relays; $(( $(date +%s) - t0 )) s"
