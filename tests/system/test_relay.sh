#!/usr/bin/env bash
# Key relay across trusted nodes with real processes (issue #5; R-REL-1,
# R-REL-2, R-REL-4, R-REL-5, R-REL-6, R-EL-2): applications at the two ends
# of a route with no direct QKD link get the same key through ETSI 014, the
# destination's life-cycle records list every hop, in
#   1. Figure 4 (examples/figure4.json), a 5-node line (examples/line5.json)
#      and a 4-node ring (examples/ring4.json, route: the documented
#      deterministic shortest path);
#   2. the 5-node line's node3 is relay-only ("ksa": false): it relays but has
#      no ETSI 014 listener;
#   3. a line whose middle hop runs out of link key: with relay "otp" an ITS
#      request gets 503 naming the starved hop; with aes_fallback,
#      computational requests are served (the hop records aes-256-gcm) and
#      ITS requests are still refused;
#   4. kill -9 of Figure 4's relay node while relays flow, restart: no
#      end-to-end key stored at one end only, no link key used twice, every
#      link's pools identical (pair-check).
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/etsi014_lib.sh"
: >"$T/all_ids"
RCHK="$(cd "$(dirname "$0")" && pwd)/relay_check.py"
rchk() { python3 "$RCHK" --qkm "$QKM" "$@"; }

ITS='"extension_mandatory": [{"qkm_security_level": "its"}]'
COMP='"extension_mandatory": [{"qkm_security_level": "computational"}]'

# no_alarm DIR: no node of the network logged an ALARM (a relay failing its
# MAC, sequence or link key checks: tampering, replay, or link key reused).
no_alarm() {
	! grep -H "ALARM" "$1"/*/log >&2
}

# links_clean DIR A-B...: pair-check of every link finds the two pools equal
# (waiting out relays and rounds in flight).
links_clean() {
	local d=$1 l
	shift
	for l in "$@"; do
		wait_for 20 pair_clean "$d" "${l%-*}" "${l#*-}" ||
			fail "$(basename "$d"): pair-check ${l%-*} ${l#*-}: $("$QKM" ctl pair-check --dir "$d" "${l%-*}" "${l#*-}")"
	done
}

# e2e DIR MASTER SLAVE: MASTER gets ITS keys for SLAVE through ETSI 014 at
# its node; SLAVE gets the same keys by their IDs at the other end.
e2e() {
	local d=$1 m=$2 s=$3 out ids fps
	wait_for 40 etsi_ready "$d" "$m" "$s" ||
		fail "$(basename "$d"): Status of $m for $s never reports relayed stock: $(q "$d" "$m" status "$s")"
	out=$(q "$d" "$m" enc-post "$s" --body "{\"number\": 4, $ITS}")
	expect_keys "$out" 4 32 "$(basename "$d"): enc_keys $m -> $s" enc
	ids=$(ids_of "$out"); fps=$(fps_of "$out")
	# shellcheck disable=SC2086
	out=$(q "$d" "$s" dec-post "$m" $ids)
	expect_keys "$out" 4 32 "$(basename "$d"): dec_keys $s <- $m"
	[ "$(fps_of "$out")" = "$fps" ] ||
		fail "$(basename "$d"): dec_keys at $s: keys differ from enc_keys: $(fps_of "$out") vs $fps"
}

# ---------------------------------------------------------------- 1, 2: three networks
F=$T/figure4 L=$T/line5 R=$T/ring4
net_up "$SRC/examples/figure4.json" "$F"
net_up "$SRC/examples/line5.json" "$L"
# The ring's routes are the static shortest paths (controller in manual
# mode): this section is about relaying, test_controller.sh about rerouting.
sed 's/"after_supply": "delete"/"after_supply": "delete", "routing": "manual"/' \
	"$SRC/examples/ring4.json" >"$T/ring4.json"
grep -q '"routing": "manual"' "$T/ring4.json" || fail "ring4: could not set routing manual"
net_up "$T/ring4.json" "$R"

# R-REL-6: routes are the topology's shortest paths. The ring has two of
# length 2 between node1 and node3; the documented tie break (neighbours
# explored in name order, whatever the order of "links") gives node2, never
# node4, in both directions.
rchk --dir "$F" route node1 node1 node2 node3 >/dev/null || fail "figure4: route"
rchk --dir "$L" route node1 node1 node2 node3 node4 node5 >/dev/null || fail "line5: route"
rchk --dir "$L" route node5 node5 node4 node3 node2 node1 >/dev/null || fail "line5: route"
rchk --dir "$R" route node1 node1 node2 node3 >/dev/null || fail "ring4: route"
rchk --dir "$R" route node3 node3 node2 node1 >/dev/null || fail "ring4: route"
ok "routes: figure4 node1>node2>node3, line5 node1>...>node5, ring4 node1>node2>node3 and back (name order breaks the tie)"

e2e "$F" sae-1 sae-3
ok "figure4: enc_keys at node1 (sae-1), dec_keys at node3 (sae-3): identical ITS keys"
e2e "$L" sae-1 sae-5
ok "line5: enc_keys at node1, dec_keys at node5 over 4 hops: identical ITS keys"
e2e "$R" sae-3 sae-1
ok "ring4: enc_keys at node3 (sae-3), dec_keys at node1 (sae-1): identical ITS keys"

# R-REL-2: every relayed key's metadata at the destination lists each hop
# (source, destination, method, time), and every relay node forwarded it.
# Both ends have an SAE, so relays go both ways.
for c in "$F node3 node1 node2 node3" "$F node1 node3 node2 node1" \
	"$L node5 node1 node2 node3 node4 node5" "$L node1 node5 node4 node3 node2 node1" \
	"$R node3 node1 node2 node3" "$R node1 node3 node2 node1"; do
	# shellcheck disable=SC2086
	out=$(rchk --dir ${c%% *} hops ${c#* }) || fail "$(basename "${c%% *}"): relay-received records"
	ok "$(basename "${c%% *}"): $out"
done

# Link key is the scarce resource: only nodes with an SAE start relays (a
# pool at a node without one could never be drawn from, and its relays
# would compete with the pools applications use on the same links).
for c in "$F node2" "$L node2" "$L node3" "$L node4" "$R node2" "$R node4"; do
	"$QKM" ctl events --dir "${c% *}" --json --event relay-sent "${c#* }" | pyck "len(d) == 0" ||
		fail "$(basename "${c% *}"): ${c#* } has no SAE, yet started relays: $("$QKM" ctl events --dir "${c% *}" --event relay-sent "${c#* }" | head -3)"
done
ok "nodes without an SAE started no relay (figure4 node2, line5 node2-node4, ring4 node2, node4)"

# 2. R-EL-2: the relay-only node has no Ak (ETSI 014) interface at all, yet
# relayed every one of those keys (relay-forwarded, checked above).
js "d['nodes']['node3'].get('etsi014', '') == ''" <"$L/network.json" | grep -qx True ||
	fail "line5: network.json gives relay-only node3 an ETSI 014 address: $(cat "$L/network.json")"
cfg3=$(js "d['nodes']['node3']['config']" <"$L/network.json")
js "d['ksa'] is False and 'etsi014' not in d['listen']" <"$cfg3" | grep -qx True ||
	fail "line5: node3's node.json is not relay-only: $(cat "$cfg3")"
# Only two listeners (Kx and admin), neither of which speaks ETSI 014 to an SAE.
pid3=$(node_pid "$L" node3)
ports=$(ss -Hltnp 2>/dev/null | grep "pid=$pid3," | awk '{print $4}' | sed 's/.*://' | sort -n | xargs)
kx3=$(js "d['listen']['kx'].split(':')[1]" <"$cfg3"); ad3=$(js "d['listen']['admin'].split(':')[1]" <"$cfg3")
[ "$ports" = "$(printf '%s\n' "$kx3" "$ad3" | sort -n | xargs)" ] ||
	fail "line5: node3 listens on ports '$ports', expected only Kx $kx3 and admin $ad3"
ok "line5: relay-only node3 relays, has no ETSI 014 listener (ports $ports = Kx, admin)"

# Relaying leaves the link pools identical on both sides (the receiving node
# consumes exactly the link key the sender used) and no node alarmed.
links_clean "$F" node1-node2 node2-node3
links_clean "$L" node1-node2 node2-node3 node3-node4 node4-node5
links_clean "$R" node1-node2 node2-node3 node3-node4 node4-node1
for d in "$F" "$L" "$R"; do no_alarm "$d" || fail "$(basename "$d"): an ALARM was logged"; done
ok "every link's pools identical after relaying (pair-check), no ALARM"
"$QKM" net down --dir "$L" >/dev/null
"$QKM" net down --dir "$R" >/dev/null

# ---------------------------------------------------------------- 3. a starved hop
# s1 - s2 - s3 - s4, applications at s1 and s4. In S the middle link s2-s3
# is stopped once keys flowed, and the end-to-end pool drained; in A the
# relay policy allows the AES fallback and s2-s3 is too slow ever to hold
# the link key a 64 KiB OTP relay needs.
cat >"$T/starve.json" <<'JSON'
{
  "nodes": [ {"id": "s1"}, {"id": "s2"}, {"id": "s3"}, {"id": "s4"} ],
  "links": [ {"a": "s1", "b": "s2", "rate_bps": 1000000, "unit_bits": 4096},
             {"a": "s2", "b": "s3", "rate_bps": 1000000, "unit_bits": 4096},
             {"a": "s3", "b": "s4", "rate_bps": 1000000, "unit_bits": 4096} ],
  "saes":  [ {"id": "sae-s1", "node": "s1"}, {"id": "sae-s4", "node": "s4"} ],
  "policy": { "relay": "otp", "aes_fallback": false }
}
JSON
sed -e 's/"aes_fallback": false/"aes_fallback": true/' \
	-e 's/"b": "s3", "rate_bps": 1000000, "unit_bits": 4096/"b": "s3", "rate_bps": 8000, "unit_bits": 1024/' \
	"$T/starve.json" >"$T/starve-aes.json"
S=$T/starve A=$T/starve-aes
net_up "$T/starve.json" "$S"
net_up "$T/starve-aes.json" "$A"

# link_up DIR NODE LINK: NODE's module on LINK is up (True/False).
link_up() { status_json "$1" | js "[l['module_up'] for n in d['nodes'] if n['id']=='$2' for l in n['links'] if l['link']=='$3'][0]"; }

e2e "$S" sae-s1 sae-s4
ok "starve: ITS keys relayed s1>s2>s3>s4 while s2-s3 runs"
"$QKM" sim fault --dir "$S" s2-s3 down >/dev/null || fail "sim fault s2-s3 down"
wait_for 10 '[ "$(link_up "$S" s2 s2-s3)" = False ]' || fail "starve: s2-s3 still up after fault down"
# Drain the end-to-end pool with 128 KiB ITS requests until s2 has refused
# a relay for want of s2-s3 link key. (Refused before s2 ran dry, a request
# names s1's own first hop, short for a moment while it refills: true too,
# not yet the starved hop.) Once no relay of s1's is left unsettled (one that
# passed s2 before it ran dry may still be confirmed and serve a request),
# drain until a request is refused: it names s2-s3, and so does the next.
s2_dry() {
	"$QKM" ctl events --dir "$S" --json --event relay-refused s2 |
		pyck "any('hop s2-s3 is out of link key' in e['detail'] for e in d)"
}
drain() { q "$S" sae-s1 enc-post sae-s4 --body "{\"number\": 128, \"size\": 8192, $ITS}"; }
n=0
until s2_dry; do
	n=$((n + 1))
	[ $n -le 60 ] || fail "starve: s2 never refused a relay for want of s2-s3 link key"
	drain >/dev/null
done
# (A relay s1 starts in the moment between s2's refusal of the last and the
# destination's word on it is held at s2 for relay.hold_s, 10 s: the first
# 20 s did not always see a gap; the backoff, doubling, leaves longer ones.)
wait_for 40 '[ "$(pool pending_keys "$S" s1 s4)" = 0 ]' ||
	fail "starve: s1 still has relays to s4 unsettled: $(status_json "$S")"
while out=$(drain) && echo "$out" | pyck "d['code'] == 200"; do
	n=$((n + 1))
	[ $n -le 140 ] ||
		fail "starve: served $n requests of 128 KiB, more than s2-s3 could have carried"
done
for again in 1 2; do
	expect_error "$out" 503 "starve: ITS request once s2-s3 is dry (request $n)"
	echo "$out" | pyck "'s2-s3' in d['body']['message'] and 'out of link key' in d['body']['message']" ||
		fail "starve: the 503 does not name the starved hop s2-s3: $out"
	[ $again = 2 ] || { out=$(drain); n=$((n + 1)); }
done
ok "starve: pool drained ($n requests); ITS requests get 503: $(echo "$out" | js "d['body']['message']")"
# Policy otp: nothing went over s2-s3 but OTP.
out=$(rchk --dir "$S" hops s4 s1 s2 s3 s4) || fail "starve: relay-received records"
ok "starve: $out"

# With the fallback: the hop uses AES-256-GCM, recorded; the keys are
# computational: served to computational requests, refused to ITS ones.
wait_for 40 etsi_ready "$A" sae-s1 sae-s4 ||
	fail "starve-aes: Status of sae-s1 never reports relayed stock: $(q "$A" sae-s1 status sae-s4)"
out=$(q "$A" sae-s1 enc-post sae-s4 --body "{\"number\": 1, $ITS}")
expect_error "$out" 503 "starve-aes: ITS request when only AES-relayed keys exist"
echo "$out" | pyck "'ITS' in d['body']['message']" ||
	fail "starve-aes: the 503 does not say ITS keys are missing: $out"
ok "starve-aes: ITS request gets 503: $(echo "$out" | js "d['body']['message']")"
out=$(q "$A" sae-s1 enc-post sae-s4 --body "{\"number\": 4, \"size\": 512, $COMP}")
expect_keys "$out" 4 64 "starve-aes: computational enc_keys" enc
ids=$(ids_of "$out"); fps=$(fps_of "$out")
# shellcheck disable=SC2086
out=$(q "$A" sae-s4 dec-post sae-s1 $ids)
expect_keys "$out" 4 64 "starve-aes: dec_keys at s4"
[ "$(fps_of "$out")" = "$fps" ] || fail "starve-aes: dec_keys at s4: keys differ: $(fps_of "$out") vs $fps"
for id in $ids; do
	"$QKM" ctl events --dir "$A" --json --event supplied --key "$id" s1 |
		pyck "len(d) == 1 and 'level computational' in d[0]['detail']" ||
		fail "starve-aes: key $id not recorded supplied at level computational: $("$QKM" ctl events --dir "$A" --key "$id" s1)"
done
ok "starve-aes: computational request served (4 keys, recorded level computational), same keys at s4"
# (The other hops may fall back too, for a moment, when a relay finds their
# link short: the policy allows it.)
out=$(rchk --dir "$A" hops s4 s1 s2 s3 s4 --method any --hop "s2>s3=aes-256-gcm" --level computational) ||
	fail "starve-aes: relay-received records"
ok "starve-aes: $out"
"$QKM" ctl events --dir "$A" --json --event relay-forwarded s2 |
	pyck "[e for e in d if e['detail'].startswith('s1->s4:')] and all(', s2>s3 aes-256-gcm link key ' in e['detail'] for e in d if e['detail'].startswith('s1->s4:'))" ||
	fail "starve-aes: s2 did not record aes-256-gcm on its hop to s3: $("$QKM" ctl events --dir "$A" --event relay-forwarded s2 | tail -3)"
out=$(q "$A" sae-s1 enc-post sae-s4 --body "{\"number\": 1, $ITS}")
expect_error "$out" 503 "starve-aes: ITS request after computational ones were served"
ok "starve-aes: s2 recorded the aes-256-gcm hop; ITS requests still get 503"
for d in "$S" "$A"; do no_alarm "$d" || fail "$(basename "$d"): an ALARM was logged"; done
"$QKM" net down --dir "$S" >/dev/null
"$QKM" net down --dir "$A" >/dev/null
# No key_ID was handed out twice by enc_keys in any of the networks.
dup=$(sort "$T/all_ids" | uniq -d)
[ -z "$dup" ] || fail "key_IDs handed out twice: $dup"
ok "$(wc -l <"$T/all_ids") key_IDs from enc_keys, all distinct"

# ---------------------------------------------------------------- 4. kill -9 of the relay node
# Figure 4 again: both applications draw keys without pause, so relays flow
# both ways through node2 all the time. Three times, at a random moment
# while they do: node2 is frozen (SIGSTOP) until an end has sent a relay it
# cannot confirm, killed (-9) with that relay inside, and restarted.
STOP=$T/stop-load LOADS=""
# (set -e holds in the trap too: a load already gone must not stop it.)
trap 'touch "$STOP" 2>/dev/null || true; for p in $LOADS; do kill "$p" 2>/dev/null || true; done; cleanup' EXIT
load() {
	while [ -d "$T" ] && [ ! -e "$STOP" ]; do
		q "$F" "$1" enc-post "$2" --body '{"number": 128, "size": 8192}' 2>&1 | cut -c1-200 >"$T/load.log" || true
		sleep 0.1
	done
}
# flowing: the load keeps an end's end-to-end pool below its high
# watermark (1048576 bytes, docs/config.md), so that end relays whenever
# the pool dips below the low one and its first hop has the link key.
flowing() {
	status_json "$F" | pyck "any(p['enc_bytes'] < 1048576 for n in d['nodes'] if n['id'] in ('node1','node3') for p in n['pools'] if p['kind']=='relay')"
}
# unconfirmed: KMA-keys the two ends hold PENDING (relays sent, not confirmed).
unconfirmed() {
	status_json "$F" | js "sum(p['pending_keys'] for n in d['nodes'] if n['id'] in ('node1','node3') for p in n['pools'] if p['kind']=='relay')"
}
load sae-1 sae-3 & LOADS="$LOADS $!"
load sae-3 sae-1 & LOADS="$LOADS $!"
for round in 1 2 3; do
	# An end relays only while its first hop has the link key for it; with
	# node2 frozen that link gets no more, so if none starts in 10 s, let
	# node2 go on and try again (a slow, busy machine may need a few).
	tries=0
	while :; do
		wait_for 40 flowing || fail "round $round: the load never drew the end-to-end pools below their high watermark: $(status_json "$F" | js "[(n['id'], p['peer'], p['enc_bytes'], p['stock_keys']) for n in d['nodes'] for p in n['pools'] if p['kind']=='relay']"); load: $(tail -2 "$T/load.log" 2>/dev/null)"
		sleep "0.$((RANDOM % 10))"
		pid2=$(node_pid "$F" node2)
		kill -STOP "$pid2"
		# A slow machine's load may draw too little to need a relay in the
		# window: two large requests make sure the pool dips (they wait
		# for relays that cannot finish while node2 is frozen: background).
		for _ in 1 2; do
			q "$F" sae-1 enc-post sae-3 --body '{"number": 128, "size": 8192}' >/dev/null 2>&1 &
		done
		wait_for 10 '[ "$(unconfirmed)" -gt 0 ]' && break
		kill -CONT "$pid2"
		tries=$((tries + 1))
		[ $tries -lt 6 ] || fail "round $round: no relay sent toward node2 in 6 tries of 10 s"
		sleep 2
	done
	p=$(unconfirmed)
	kill -9 "$pid2"
	kill -CONT "$pid2" 2>/dev/null || true
	"$QKM" net restart --dir "$F" node2 >/dev/null || fail "restart node2"
	ok "round $round: node2 killed with $p relayed KMA-key(s) unconfirmed at the ends, restarted"
	# The relays pending then are settled soon. Not "none pending": under
	# this load relays started since may be waiting at node2 for link key
	# toward the slower link (docs/protocol.md 4.4), one after another.
	out=$(rchk --dir "$F" settled --wait 25 node1 node3 2>&1) ||
		fail "round $round: relays pending at the restart not settled: $out"
done
touch "$STOP"
# shellcheck disable=SC2086
wait $LOADS

# Settled: nothing PENDING; every relay confirmed at its origin is stored at
# its destination and nothing else is (R-REL-1: no key at one end only).
# Relays ahead of demand go on refilling the pools after the load stops, so
# the records are read in causal order and relays in flight waited for
# (relay_check.py settled --wait): one reading of node1 then node3 once
# took a relay started between the two for a key at node3 only.
wait_for 30 '[ "$(unconfirmed)" = 0 ]' || fail "relays still unconfirmed 30 s after the load stopped: $(status_json "$F")"
out=$(rchk --dir "$F" settled --wait 30 node1 node3 2>&1) || fail "kill -9: relay records of node1 and node3 disagree: $out"
ok "kill -9: $out"
relay_equal() {
	status_json "$F" | pyck "[(p['enc_bytes'], p['dec_bytes']) for n in d['nodes'] if n['id']=='node1' for p in n['pools'] if p['kind']=='relay'] == [(p['dec_bytes'], p['enc_bytes']) for n in d['nodes'] if n['id']=='node3' for p in n['pools'] if p['kind']=='relay']"
}
wait_for 30 relay_equal || fail "kill -9: end-to-end pools differ: $("$QKM" ctl status --dir "$F")"
ok "kill -9: end-to-end pools equal at node1 and node3 (enc at one = dec at the other)"
# No link key used twice: no range twice in any node's records, no relay
# refused as replayed (ALARM), and both ends of each link hold the same key.
out=$(rchk --dir "$F" reuse node1 node2 node3) || fail "kill -9: link key reused"
no_alarm "$F" || fail "kill -9: an ALARM was logged"
ok "kill -9: $out; no relay refused as replayed (no ALARM)"
links_clean "$F" node1-node2 node2-node3
ok "kill -9: pair-check clean on node1-node2 and node2-node3"
