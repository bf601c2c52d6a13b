#!/usr/bin/env bash
# Metrics and health (issue #8 item 2) with real processes over Figure 4
# (node1 - node2 - node3, SAEs at node1 and node3: keys relayed by node2):
#   1. /healthz answers "ok" and /readyz 200 once the node is ready, on every
#      node and the controller; the admin certificate is required (an SAE's
#      gets 403);
#   2. enc_keys, status and dec_keys, and one refused dec_keys (an unknown
#      key ID: 400); then every node's and the controller's /metrics parse as
#      the Prometheus text format (prom_check.py, strict), the keys supplied
#      equal the keys the applications received, the refusal is counted with
#      code 400 and reason unknown_key, each endpoint's latency histogram
#      counted every request (buckets cumulative), every pool and link has
#      its gauges, consumption and relays are counted, and the controller's
#      view (nodes, routes, SAEs, decisions, audits) is there
#      (metrics_check.py, which says what it checks); where promtool is
#      installed, `promtool check metrics` passes on each scrape too;
#   3. /readyz says 503 naming the link while a neighbour is down (/healthz
#      still ok), and 200 again once it is back.
. "$(dirname "$0")/lib.sh"
HERE="$(cd "$(dirname "$0")" && pwd)"

D=$T/fig4
net_up "$SRC/examples/figure4.json" "$D"
N=$D/network.json
read -r A1 A2 A3 CTL < <(js "' '.join([d['nodes'][n]['admin'] for n in ('node1','node2','node3')] + [d['controller']['api']])" <"$N")
# get URL [CERT KEY]: the body in $T/body, the HTTP code on stdout.
get() {
	curl -sS --cacert "$D/pki/ca.pem" --cert "${2:-$D/pki/admin.pem}" --key "${3:-$D/pki/admin.key}" \
		-o "$T/body" -w '%{http_code}' "$1"
}
body() { cat "$T/body"; }

# 1. Health and readiness.
for a in "$A1" "$A2" "$A3" "$CTL"; do
	wait_for 30 "[ \"\$(get $a/readyz)\" = 200 ]" || fail "$a/readyz never 200: $(body)"
	grep -qx '{"ready":true,"reasons":\[\]}' "$T/body" || fail "$a/readyz: $(body)"
	[ "$(get "$a/healthz")" = 200 ] && [ "$(body)" = ok ] || fail "$a/healthz: $(body)"
done
for u in "$A1/metrics" "$A1/readyz" "$CTL/metrics" "$CTL/healthz"; do
	c=$(get "$u" "$D/saes/sae-1.pem" "$D/saes/sae-1.key")
	[ "$c" = 403 ] || fail "an SAE certificate got $c from $u, not 403"
done
ok "/healthz ok and /readyz 200 on every node and the controller; an SAE certificate gets 403"

# 2. Requests, scrapes and checks.
wait_for 60 "python3 $HERE/etsi014_client.py --net $N --as sae-1 status sae-3 | grep -q '\"stored_key_count\": [1-9]'" ||
	fail "node1 never had key for sae-3"
python3 "$HERE/metrics_check.py" --net "$N" run --master sae-1 --slave sae-3 || fail "metrics_check.py"
# promtool (Debian package prometheus: installed, or unpacked into
# build/tools by scripts/install-deps) checks the same scrapes: parse and
# lint (naming, HELP).
promtool=$(command -v promtool || echo "$SRC/build/tools/usr/bin/promtool")
if [ -x "$promtool" ]; then
	for a in "$A1" "$A2" "$A3" "$CTL"; do
		[ "$(get "$a/metrics")" = 200 ] || fail "$a/metrics: $(body)"
		out=$("$promtool" check metrics <"$T/body" 2>&1) || fail "promtool check metrics $a/metrics: $out"
	done
	ok "promtool check metrics: every node's and the controller's /metrics pass ($("$promtool" --version 2>&1 | head -n 1))"
else
	echo "# promtool not available (scripts/install-deps unpacks it from Debian's prometheus); the strict parser (prom_check.py) checked the format"
fi

# 3. Readiness follows the links: node2 stopped, node1 is not ready and says
# why; node2 back, node1 ready again.
kill "$(node_pid "$D" node2)"
wait_for 20 "[ \"\$(get $A1/readyz)\" = 503 ]" || fail "node1 /readyz stayed $(get "$A1/readyz") with node2 down: $(body)"
grep -q '"ready":false' "$T/body" && grep -q 'link node1-node2: Kx link to the peer down' "$T/body" ||
	fail "node1 /readyz 503 does not name the link: $(body)"
[ "$(get "$A1/healthz")" = 200 ] || fail "node1 /healthz with a neighbour down: $(body)"
[ "$(get "$A1/metrics")" = 200 ] && grep -qx 'qkm_ready{node="node1"} 0' "$T/body" ||
	fail "node1 qkm_ready is not 0 with node2 down"
"$QKM" net restart --dir "$D" node2 >"$T/restart.log" 2>&1 || fail "net restart node2: $(cat "$T/restart.log")"
wait_for 30 "[ \"\$(get $A1/readyz)\" = 200 ]" || fail "node1 /readyz not 200 after node2 came back: $(body)"
ok "node1 /readyz: 503 naming node1-node2 while node2 is down (/healthz still ok, qkm_ready 0), 200 once it is back"
