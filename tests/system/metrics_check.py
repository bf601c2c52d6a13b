#!/usr/bin/env python3
"""metrics_check.py - the application side and the checks of
tests/system/test_metrics.sh (issue #8 item 2), in one process (a python
start per check costs seconds on a loaded machine). Only python3's standard
library; talks to the nodes' and the controller's admin APIs with the admin
certificate and to ETSI 014 as the SAEs of DIR/network.json.

  metrics_check.py --net DIR/network.json run --master SAE --slave SAE

With the master's node M and the slave's node S (M != S):
  1. scrapes M and S (a baseline: the readiness polls were requests too);
  2. makes 5 enc_keys of 2 keys at M, 1 status at M, dec_keys of every key
     at S, two by two, and one dec_keys of an unknown key ID at S (400);
  3. scrapes every node and the controller: each /metrics must parse
     (prom_check.parse, strict);
  4. checks: keys supplied (M: to the master by enc_keys, S: to the slave by
     dec_keys) = keys received; the 400 counted with reason unknown_key; each
     endpoint's latency histogram counted every request, and agrees with the
     requests counter; every pool and link of each node's /status has its
     gauges; bytes consumed at both ends of the pool the keys came from and
     a non-zero consumption rate at M; relay counters where relays happened;
  5. the controller: every node connected with a fresh report, routes, SAEs,
     decisions; an audit (GET /audit) is counted.
Prints "ok - ..." lines; on a failed check "FAIL: ..." and exit 1.
"""
import argparse
import json
import os
import sys
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import etsi014_client as ec  # noqa: E402
import prom_check as pc  # noqa: E402


def fail(msg):
    print(f"FAIL: {msg}", flush=True)
    sys.exit(1)


def ok(msg):
    print(f"ok - {msg}", flush=True)


class Metrics:
    def __init__(self, where, text):
        self.where = where
        try:
            self.types, self.samples, _ = pc.parse(text)
        except pc.Bad as e:
            fail(f"{where} /metrics is not valid Prometheus text: {e}")

    def match(self, name, **labels):
        return [v for n, l, v in self.samples
                if n == name and all(l.get(k) == x for k, x in labels.items())]

    def get(self, name, **labels):
        m = self.match(name, **labels)
        if len(m) != 1:
            fail(f"{self.where}: {len(m)} samples of {name}{labels}, not one")
        return m[0]

    def sum(self, name, **labels):
        return sum(self.match(name, **labels))


class Net:
    def __init__(self, path):
        self.net = ec.load_net(path)
        self.ca = self.net["ca"]
        self.cert, self.key = self.net["admin"]["cert"], self.net["admin"]["key"]

    def admin(self, node):
        return self.net["nodes"][node]["admin"] if node != "ctl" else self.net["controller"]["api"]

    def get(self, node, path):
        code, body = ec.request(self.admin(node), self.cert, self.key, self.ca, "GET", path)
        if code != 200:
            fail(f"{node} GET {path}: HTTP {code}: {body}")
        return body

    def scrape(self, node):
        return Metrics(node, self.get(node, "/metrics"))


def run(args):
    n = Net(args.net)
    saes = n.net["saes"]
    m_node, s_node = saes[args.master]["node"], saes[args.slave]["node"]
    nodes = sorted(n.net["nodes"])
    base = {x: n.scrape(x) for x in (m_node, s_node)}

    # 2. what the applications do
    enc = ec.endpoint(n.net, args.master)
    dec = ec.endpoint(n.net, args.slave)
    ids, enc_n = [], 0
    for i in range(5):
        code, body = ec.enc_keys_get(*enc, args.slave, number=2)
        if code != 200 or len(body.get("keys", [])) != 2:
            fail(f"enc_keys {i}: {code} {body}")
        ids += [k["key_ID"] for k in body["keys"]]
        enc_n += 1
    code, body = ec.status(*enc, args.slave)
    if code != 200:
        fail(f"status: {code} {body}")
    dec_n, got = 0, 0
    for i in range(0, len(ids), 2):
        code, body = ec.dec_keys_post(*dec, args.master, ids[i:i + 2])
        if code != 200 or len(body.get("keys", [])) != 2:
            fail(f"dec_keys {ids[i:i + 2]}: {code} {body}")
        got += 2
        dec_n += 1
    code, body = ec.dec_keys_get(*dec, args.master, str(uuid.uuid4()))
    if code != 400:
        fail(f"dec_keys of an unknown key ID: {code} {body}, not 400")
    dec_n += 1
    ok(f"{enc_n} enc_keys ({len(ids)} keys) and 1 status at {m_node}; {dec_n} dec_keys at "
       f"{s_node} ({got} keys, one refused 400)")

    # 3. every scrape parses
    after = {x: n.scrape(x) for x in nodes + ["ctl"]}
    ok("every /metrics parses as Prometheus text: "
       + ", ".join(f"{x} {len(after[x].samples)} samples" for x in after))

    # 4. ETSI 014 counters against what the applications saw
    def delta(node, name, **labels):
        return after[node].sum(name, **labels) - base[node].sum(name, **labels)

    d = delta(m_node, "qkm_etsi014_keys_supplied_total", sae=args.master, endpoint="enc_keys")
    if d != len(ids):
        fail(f"{m_node} counted {d} keys supplied to {args.master}, it received {len(ids)}")
    d = delta(s_node, "qkm_etsi014_keys_supplied_total", sae=args.slave, endpoint="dec_keys")
    if d != got:
        fail(f"{s_node} counted {d} keys supplied to {args.slave}, it received {got}")
    d = delta(s_node, "qkm_etsi014_refusals_total", sae=args.slave, endpoint="dec_keys",
              code="400", reason="unknown_key")
    if d != 1:
        fail(f"{s_node}: the 400 unknown_key refusal counted {d} times, not once")
    h = "qkm_etsi014_request_duration_seconds_count"
    for node, ep, want in ((m_node, "enc_keys", enc_n), (m_node, "status", 1),
                           (s_node, "dec_keys", dec_n)):
        d = delta(node, h, endpoint=ep)
        if d != want:
            fail(f"{node}: the {ep} latency histogram counted {d} requests, {want} were made")
    for node in (m_node, s_node):
        for ep in ("status", "enc_keys", "dec_keys", "other"):
            hc = after[node].get(h, endpoint=ep)
            rc = after[node].sum("qkm_etsi014_requests_total", endpoint=ep)
            if hc != rc:
                fail(f"{node} {ep}: histogram count {hc}, requests_total {rc}")
    ok(f"keys supplied = keys received ({m_node}: {len(ids)} by enc_keys, {s_node}: {got} by "
       f"dec_keys); the 400 counted as unknown_key; the histograms count every request")

    # pools and links: every one /status shows has its gauges
    for node in nodes:
        st, mt = n.get(node, "/status"), after[node]
        for p in st["pools"]:
            for f in ("qkm_pool_keys", "qkm_pool_bytes", "qkm_pool_enc_bytes",
                      "qkm_pool_dec_bytes", "qkm_pool_pending_keys", "qkm_pool_stock_keys",
                      "qkm_pool_consumed_bytes_total", "qkm_pool_consumption_bytes_per_second"):
                mt.get(f, node=node, peer=p["peer"], kind=p["kind"])
        for l in st["links"]:
            for f in ("qkm_link_kx_up", "qkm_link_reconciled", "qkm_link_module_up",
                      "qkm_link_alarm", "qkm_link_qber", "qkm_link_key_rate_bps",
                      "qkm_link_buffered_bytes", "qkm_link_rounds_in_flight",
                      "qkm_link_acquired_bytes_total", "qkm_link_aborted_batches_total",
                      "qkm_link_discarded_qkd_keys_total"):
                mt.get(f, node=node, link=l["link"])
            if mt.get("qkm_link_kx_up", link=l["link"]) != 1:
                fail(f"{node}: link {l['link']} Kx down in the metrics")
            if mt.get("qkm_link_key_rate_bps", link=l["link"]) <= 0:
                fail(f"{node}: link {l['link']} key rate 0 in the metrics")
        if mt.get("qkm_ready", node=node) != 1:
            fail(f"{node}: qkm_ready is not 1")
    kind = "relay" if s_node not in [l["peer"] for l in n.get(m_node, "/status")["links"]] else "link"
    for node, peer in ((m_node, s_node), (s_node, m_node)):
        c = after[node].get("qkm_pool_consumed_bytes_total", peer=peer, kind=kind)
        if c < len(ids) * 32:
            fail(f"{node}: {c} bytes consumed from the pool with {peer}, under {len(ids) * 32}")
    deadline, rate = time.time() + 10, 0
    while rate <= 0 and time.time() < deadline:
        rate = n.scrape(m_node).get("qkm_pool_consumption_bytes_per_second", peer=s_node)
        if rate <= 0:
            time.sleep(0.5)
    if rate <= 0:
        fail(f"{m_node}: the consumption rate toward {s_node} stayed 0")
    relay = ""
    if kind == "relay":
        mid = [x for x in nodes if x not in (m_node, s_node)]
        checks = [(m_node, "qkm_relays_started_total"), (m_node, "qkm_relays_confirmed_total"),
                  (s_node, "qkm_relays_received_total")]
        checks += [(x, "qkm_relays_forwarded_total") for x in mid]
        checks += [(x, "qkm_relay_link_bytes_total") for x in mid]
        for node, f in checks:
            if after[node].get(f) < 1:
                fail(f"{node}: {f} is 0")
        relay = f"; relays started and confirmed at {m_node}, forwarded at {', '.join(mid)}, " \
                f"received at {s_node}"
    ok(f"gauges for every pool and link of every node; consumption counted at both ends "
       f"({kind} pool), rate {rate:.0f} B/s at {m_node}{relay}")

    # 5. the controller
    c = after["ctl"]
    for node in nodes:
        if c.get("qkm_ctl_node_connected", node=node) != 1:
            fail(f"controller: {node} not connected")
        age = c.get("qkm_ctl_node_report_age_seconds", node=node)
        if not 0 <= age < 5:
            fail(f"controller: {node}'s report is {age} s old")
        if c.get("qkm_ctl_ledger_last_seq", node=node) < 1:
            fail(f"controller: no records of {node} in the ledger")
    routes = [l for nm, l, v in c.samples if nm == "qkm_ctl_route_info" and v == 1]
    if kind == "relay":
        want = [r for r in routes if r["from"] == m_node and r["to"] == s_node]
        if len(want) != 1 or not want[0]["path"].startswith(m_node + ">") or \
                not want[0]["path"].endswith(">" + s_node):
            fail(f"controller: the route {m_node} -> {s_node} is not in the metrics: {routes}")
    if c.get("qkm_ctl_saes", state="active") != len(saes):
        fail(f"controller: active SAEs {c.get('qkm_ctl_saes', state='active')}, not {len(saes)}")
    if c.get("qkm_ctl_decisions_total", event="controller-started") < 1:
        fail("controller: its own start is not counted")
    for f in ("route-set", "sae-registered", "sae-revoked", "compromise"):
        c.get("qkm_ctl_decisions_total", event=f)
    a0 = c.get("qkm_ctl_audits_total")
    code, body = ec.request(n.admin("ctl"), n.cert, n.key, n.ca, "GET", "/audit")
    if code != 200 or body.get("clean") is not True:
        fail(f"controller audit: {code} {body}")
    c = n.scrape("ctl")
    if c.get("qkm_ctl_audits_total") != a0 + 1 or c.get("qkm_ctl_audit_last_problems") != 0:
        fail("controller: the audit is not counted, or counted with problems")
    ok(f"controller: {len(nodes)} nodes connected with fresh reports and records, "
       f"{len(routes)} route(s){' incl. ' + want[0]['path'] if kind == 'relay' else ''}, "
       f"{len(saes)} SAEs, decisions, the audit counted")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--net", required=True)
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--master", required=True)
    r.add_argument("--slave", required=True)
    args = p.parse_args()
    try:
        run(args)
    except ec.NoResponse as e:
        fail(f"no HTTP response: {e}")


if __name__ == "__main__":
    main()
