#!/usr/bin/env bash
# The controller's web dashboard in a real browser (issue #8 item 3):
# headless Chromium, holding the operator's certificate (mutual TLS, as for
# every call to the controller's API), loads https://CONTROLLER/ from a
# running 5-node ring and shows what a person would read:
#   1. the page and its files carry a strict Content-Security-Policy,
#      nosniff, X-Frame-Options DENY and no-store; no certificate: no page;
#      an application's certificate: 403;
#   2. the header (network, controller, mode), the map with every node of
#      the network, routes, per-SAE consumption (after an enc_keys/dec_keys
#      pair over ETSI 014) and recent events;
#   3. the trace of that key (#trace=KEY_ID): every relay hop and record;
#   4. after `qkm sim fault LINK qber 0.2` on the active route: the link
#      drawn alarmed (red dashed, "ALARM"), named in the alarm list, and the
#      route moved off it in the routes table.
# Screenshots of each view: $ARTEFACTS (printed at the end).
# Skips (exit 0) only when Chromium cannot be installed.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/etsi014_lib.sh"
DOM="python3 $(cd "$(dirname "$0")" && pwd)/dashboard_dom.py"
ARTEFACTS=${QKM_TEST_TMP:-$SRC/build/tmp}/artefacts/dashboard

# ---------------------------------------------------------------- browser
# Chromium and the NSS tools come from Debian (scripts/install-deps).
have_browser() { command -v chromium && command -v certutil && command -v pk12util; } >/dev/null
if ! have_browser; then
	"$SRC/scripts/install-deps" >"$T/install-deps.log" 2>&1 || true
	have_browser || { echo "skip: chromium cannot be installed: $(tail -n 2 "$T/install-deps.log" | tr '\n' ' ')"; exit 0; }
fi
# The certificate is chosen without a prompt only under the machine policy
# AutoSelectCertificateForUrls (Chromium reads no such policy from its
# command line or profile): written for this run's controller, removed on
# exit.
POLICY_DIR=/etc/chromium/policies/managed
POLICY=$POLICY_DIR/qkm-test-dashboard-$$.json
if ! { mkdir -p "$POLICY_DIR" 2>/dev/null && [ -w "$POLICY_DIR" ]; }; then
	fail "cannot write $POLICY_DIR (run as root): Chromium picks a client certificate unprompted only by machine policy"
fi
trap 'rm -f "$POLICY"; cleanup' EXIT
# Two runs' policies for the same setting would conflict (Chromium keeps
# one): one run at a time on the machine holds the policy directory.
exec 9>/tmp/qkm-test-dashboard.lock
flock -w 900 9 || fail "another test_dashboard held the Chromium policy for 15 minutes"
mkdir -p "$ARTEFACTS"
rm -f "$ARTEFACTS"/*.png

cat >"$T/ring5.json" <<'JSON'
{
  "name": "dash-ring",
  "nodes": [ {"id": "node1"}, {"id": "node2"}, {"id": "node3"}, {"id": "node4"}, {"id": "node5"} ],
  "links": [ {"a": "node1", "b": "node2", "rate_bps": 2000000, "unit_bits": 4096, "qber": 0.01},
             {"a": "node2", "b": "node3", "rate_bps": 2000000, "unit_bits": 4096, "qber": 0.01},
             {"a": "node3", "b": "node4", "rate_bps": 2000000, "unit_bits": 4096, "qber": 0.01},
             {"a": "node4", "b": "node5", "rate_bps": 2000000, "unit_bits": 4096, "qber": 0.01},
             {"a": "node5", "b": "node1", "rate_bps": 2000000, "unit_bits": 4096, "qber": 0.01} ],
  "saes":  [ {"id": "sae-1", "node": "node1"}, {"id": "sae-3", "node": "node3"} ],
  "policy": { "relay": "otp", "aes_fallback": false, "after_supply": "delete" }
}
JSON
D=$T/ring5
net_up "$T/ring5.json" "$D"
API=$(js "d['controller']['api']" <"$D/network.json")
NODES=$(js "' '.join(sorted(d['nodes']))" <"$D/network.json")

# The operator's browser: a fresh profile whose NSS database holds the
# admin certificate and key (PKCS#12) and trusts the network CA.
export HOME=$T/home
mkdir -p "$HOME/.pki/nssdb"
certutil -N -d "sql:$HOME/.pki/nssdb" --empty-password
openssl pkcs12 -export -in "$D/pki/admin.pem" -inkey "$D/pki/admin.key" -name qkm-admin \
	-passout pass:qkm -out "$T/admin.p12"
pk12util -i "$T/admin.p12" -d "sql:$HOME/.pki/nssdb" -W qkm >/dev/null || fail "pk12util"
certutil -A -d "sql:$HOME/.pki/nssdb" -n qkm-ca -t "C,," -i "$D/pki/ca.pem" || fail "certutil"
printf '{"AutoSelectCertificateForUrls": ["{\\"pattern\\": \\"%s\\", \\"filter\\": {}}"]}\n' "$API" >"$POLICY"

# browse URL OUT (dom|png): the page after its script ran for 5 s of
# virtual time (fetches complete before time moves on); its console logged
# to stderr.
browse() {
	local what=--dump-dom
	[ "$3" = png ] && what=--screenshot="$2"
	timeout 120 chromium --headless --no-sandbox --disable-gpu --no-first-run \
		--no-default-browser-check --disable-extensions --user-data-dir="$T/chrome" \
		--enable-logging=stderr --v=0 \
		--window-size=1400,1700 --hide-scrollbars --virtual-time-budget=5000 \
		"$what" "$1" >"$T/browse.out" 2>"$T/browse.err" ||
		{ tail -n 5 "$T/browse.err" >&2; fail "chromium could not load $1"; }
	if [ "$3" = dom ]; then cp "$T/browse.out" "$2"; fi
	[ -s "$2" ] || { tail -n 5 "$T/browse.err" >&2; fail "chromium showed nothing for $1"; }
	# The page's console: no script error, nothing its own CSP refused,
	# no file or API call that failed.
	if grep -E 'CONSOLE.*(Uncaught|Refused|Content Security Policy|Failed to load)' "$T/browse.err" >&2; then
		fail "the page logged errors loading $1"
	fi
}
# view NAME URL: DOM to $T/NAME.html, screenshot to $ARTEFACTS/NAME.png.
view() {
	browse "$2" "$T/$1.html" dom
	browse "$2" "$ARTEFACTS/$1.png" png
}

# ---------------------------------------------------------------- 1. headers
curl_admin() { curl -sS --cacert "$D/pki/ca.pem" --cert "$D/pki/admin.pem" --key "$D/pki/admin.key" "$@"; }
curl_admin -D "$T/head" -o "$T/index.html" "$API/" || fail "GET / with the admin certificate"
for h in "HTTP/1.1 200" "Content-Type: text/html; charset=utf-8" "Cache-Control: no-store" \
	"Content-Security-Policy: default-src 'self';" "frame-ancestors 'none'" \
	"X-Content-Type-Options: nosniff" "X-Frame-Options: DENY"; do
	grep -qF "$h" "$T/head" || fail "GET / lacks \"$h\": $(cat "$T/head")"
done
grep -q '<script src="/dashboard/dashboard.js"' "$T/index.html" || fail "GET / is not the dashboard page"
for f in dashboard.js:text/javascript dashboard.css:text/css; do
	type=$(curl_admin -o /dev/null -w '%{content_type}' "$API/dashboard/${f%%:*}")
	[ "$type" = "${f#*:}; charset=utf-8" ] || fail "/dashboard/${f%%:*} served as $type"
done
code=$(curl_admin --path-as-is -o /dev/null -w '%{http_code}' "$API/dashboard/../network.json")
[ "$code" = 404 ] || fail "/dashboard/../network.json: $code"
# No client certificate: the TLS handshake fails; an SAE's: 403.
if curl -sS --cacert "$D/pki/ca.pem" -o /dev/null "$API/" 2>/dev/null; then
	fail "the dashboard answered a client without a certificate"
fi
code=$(curl -sS --cacert "$D/pki/ca.pem" --cert "$D/saes/sae-1.pem" --key "$D/saes/sae-1.key" \
	-o /dev/null -w '%{http_code}' "$API/")
[ "$code" = 403 ] || fail "the dashboard answered an application's certificate with $code"
ok "dashboard served with CSP default-src 'self', nosniff, X-Frame-Options DENY, no-store; admin certificate only"

# ---------------------------------------------------------------- 2. the page
# route FROM TO: the path the controller gave FROM for TO ("a>b>c").
route() { "$QKM" ctl routes --dir "$D" --json | js "[r['path'] for r in d if r['from']=='$1' and r['to']=='$2'][0]"; }
# sae_keys SAE: keys as master and as slave, in the nodes' last reports to the controller.
sae_keys() {
	curl_admin "$API/status" | js "' '.join(str(sum(s[k] for n in d['nodes'] for s in (n['status'] or {}).get('saes', []) if s['id'] == '$1')) for k in ('enc_keys', 'dec_keys'))"
}
wait_for 30 '"$QKM" ctl routes --dir "$D" --json | pyck "len(d) == 10"' || fail "no routes for all 10 relay pairs"
wait_for 20 '[ "$(route node1 node3)" = "node1>node2>node3" ]' || fail "node1 -> node3 is not the short way round: $(route node1 node3)"
wait_for 40 etsi_ready "$D" sae-1 sae-3 || fail "no relayed stock for sae-1 -> sae-3"
# A key over ETSI 014: sae-1 at node1 gets it, sae-3 at node3 fetches it.
out=$(q "$D" sae-1 enc-post sae-3 --body '{"number": 2}')
expect_keys "$out" 2 32 "enc_keys sae-1 -> sae-3"
KEY=$(echo "$out" | js "d['body']['keys'][0]['key_ID']")
out=$(q "$D" sae-3 dec-get sae-1 "$KEY")
expect_keys "$out" 1 32 "dec_keys sae-3 <- sae-1"
# Its records reach the controller (streamed by the nodes).
wait_for 10 '"$QKM" ctl trace --dir "$D" --json "$KEY" | pyck "len([r for r in d[\"records\"] if r[\"event\"] == \"supplied\"]) == 2"' ||
	fail "the supply of $KEY never reached the controller's ledger"
wait_for 10 '[ "$(sae_keys sae-1)" = "2 0" ] && [ "$(sae_keys sae-3)" = "0 1" ]' ||
	fail "per-SAE counts in the controller's status: sae-1 $(sae_keys sae-1), sae-3 $(sae_keys sae-3) (want 2 0, 0 1)"

view 1-network "$API/"
# shellcheck disable=SC2086
$DOM "$T/1-network.html" page dash-ring controller adaptive $NODES ||
	fail "the dashboard does not show the network (DOM: $T/1-network.html)"
$DOM "$T/1-network.html" saes sae-1=2,0 sae-3=0,1 || fail "per-SAE consumption not shown"
ok "dashboard: header dash-ring/controller/adaptive, map with $NODES, routes, events, sae-1 2 keys as master, sae-3 1 as slave"

# ---------------------------------------------------------------- 3. trace
"$QKM" ctl trace --dir "$D" --json "$KEY" >"$T/trace.json" || fail "ctl trace $KEY"
view 2-trace "$API/#trace=$KEY"
$DOM "$T/2-trace.html" trace "$T/trace.json" || fail "the trace of $KEY is not shown whole (DOM: $T/2-trace.html)"
ok "dashboard: trace of $KEY shows every relay hop ($(js "d['summary']" <"$T/trace.json"))"

# ---------------------------------------------------------------- 4. alarm
"$QKM" sim fault --dir "$D" node1-node2 qber 0.2 >/dev/null || fail "sim fault qber"
# Both ends report the alarm and the controller has moved the route.
wait_for 15 '[ "$(route node1 node3)" = "node1>node5>node4>node3" ]' ||
	fail "the alarm on node1-node2 did not move node1 -> node3: $(route node1 node3)"
wait_for 10 'status_json "$D" | pyck "all(l.get(\"alarm\") for n in d[\"nodes\"] for l in n[\"links\"] if l[\"link\"] == \"node1-node2\")"' ||
	fail "the ends of node1-node2 do not report the alarm"
view 3-alarm "$API/"
$DOM "$T/3-alarm.html" alarm node1-node2 node1 node3 "node1>node5>node4>node3" ||
	fail "the alarm on node1-node2 is not shown (DOM: $T/3-alarm.html)"
ok "dashboard: node1-node2 drawn alarmed and named in the alarm list; node1 -> node3 shown via node5"

echo "screenshots: $(ls "$ARTEFACTS"/*.png | tr '\n' ' ')"
