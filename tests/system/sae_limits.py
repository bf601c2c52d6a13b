#!/usr/bin/env python3
"""sae_limits.py - per-SAE request rate and in-flight limits at a node's
ETSI 014 server (issue #7: one SAE flooding must not starve another). Each
command prints ONE JSON document; key bytes never reach stdout (SHA-256
fingerprints instead). Only python3's standard library; only loopback.

  sae_limits.py --net DIR/network.json flood --flood SAE --calm SAE --slave SAE
                [--seconds 4] [--conns 3] [--calm-every 0.25]
      --conns keep-alive connections of the flooding SAE send GET enc_keys
      back to back for --seconds; meanwhile the calm SAE (same node) sends
      one every --calm-every seconds on its own connection. Reports every
      answer: codes, 503 messages and Retry-After headers, the flood's and
      the calm SAE's key IDs with fingerprints, and the flood's time span.

  sae_limits.py --net ... inflight --as SAE --slave SAE --n N [--body JSON]
      N connections of SAE complete their TLS handshake, then each sends one
      POST enc_keys (--body) at the same moment. Reports each answer's code,
      message and latency (seconds from the common start).

  sae_limits.py --net ... metrics --node NODE
      The node's /metrics text (admin certificate), as {"text": ...}.
"""
import argparse
import http.client
import json
import ssl
import sys
import threading
import time
import urllib.parse

import etsi014_client as ec

TIMEOUT = 30.0


def conn_for(net, sae):
    s = net["saes"][sae]
    u = urllib.parse.urlsplit(net["nodes"][s["node"]]["etsi014"])
    ctx = ec._context(s["cert"], s["key"], net["ca"])
    c = http.client.HTTPSConnection(u.hostname, u.port, context=ctx, timeout=TIMEOUT)
    c.connect()
    return c


def call(c, method, path, body=None):
    """One request on keep-alive connection c: (code, parsed body, headers)."""
    headers = {"Accept": "application/json"}
    if body is not None:
        headers["Content-Type"] = "application/json"
    c.request(method, path, body=body, headers=headers)
    r = c.getresponse()
    raw = r.read()
    try:
        parsed = json.loads(raw)
    except ValueError:
        parsed = raw.decode("utf-8", "replace")
    return r.status, parsed, dict((k.lower(), v) for k, v in r.getheaders())


def keys_of(body):
    """[(key_ID, sha256)] of a Key container."""
    out = []
    for k in body.get("keys", []) if isinstance(body, dict) else []:
        raw = ec.b64_strict(k.get("key"))
        out.append([k.get("key_ID"), ec.fingerprint(raw) if raw is not None else None])
    return out


class Tally:
    def __init__(self):
        self.lock = threading.Lock()
        self.codes = {}
        self.keys = []
        self.msgs = {}
        self.retry_after = set()
        self.no_retry_after = 0
        self.errors = []
        self.first = self.last = None

    def add(self, code, body, headers, t0, t1):
        with self.lock:
            self.first = t0 if self.first is None else min(self.first, t0)
            self.last = t1 if self.last is None else max(self.last, t1)
            self.codes[str(code)] = self.codes.get(str(code), 0) + 1
            if code == 200:
                self.keys += keys_of(body)
                return
            msg = body.get("message") if isinstance(body, dict) else str(body)
            self.msgs[msg] = self.msgs.get(msg, 0) + 1
            if code == 503:
                if "retry-after" in headers:
                    self.retry_after.add(headers["retry-after"])
                else:
                    self.no_retry_after += 1

    def doc(self):
        return {"codes": self.codes, "keys": self.keys, "messages": self.msgs,
                "retry_after": sorted(self.retry_after), "no_retry_after": self.no_retry_after,
                "errors": self.errors,
                "span": (self.last - self.first) if self.first is not None else 0.0}


def cmd_flood(net, a):
    path = "/api/v1/keys/%s/enc_keys" % urllib.parse.quote(a.slave, safe="")
    flood, calm = Tally(), Tally()
    conns = [conn_for(net, a.flood) for _ in range(a.conns)]
    calm_conn = conn_for(net, a.calm)
    go = threading.Barrier(a.conns + 2)
    end = [0.0]

    def flooder(c):
        go.wait()
        while time.monotonic() < end[0]:
            t0 = time.monotonic()
            try:
                code, body, h = call(c, "GET", path)
            except (OSError, http.client.HTTPException) as e:
                flood.errors.append(repr(e))
                return
            flood.add(code, body, h, t0, time.monotonic())

    def calmer():
        go.wait()
        n = 0
        while time.monotonic() < end[0]:
            t0 = time.monotonic()
            try:
                code, body, h = call(calm_conn, "GET", path)
            except (OSError, http.client.HTTPException) as e:
                calm.errors.append(repr(e))
                return
            calm.add(code, body, h, t0, time.monotonic())
            n += 1
            time.sleep(max(0.0, t0 + a.calm_every - time.monotonic()))

    threads = [threading.Thread(target=flooder, args=(c,)) for c in conns]
    threads.append(threading.Thread(target=calmer))
    for t in threads:
        t.start()
    end[0] = time.monotonic() + a.seconds
    go.wait()
    for t in threads:
        t.join()
    for c in conns + [calm_conn]:
        c.close()
    return {"flood": flood.doc(), "calm": calm.doc()}


def cmd_inflight(net, a):
    path = "/api/v1/keys/%s/enc_keys" % urllib.parse.quote(a.slave, safe="")
    conns = [conn_for(net, a.sae) for _ in range(a.n)]
    go = threading.Barrier(a.n + 1)
    out = [None] * a.n
    start = [0.0]

    def one(i):
        go.wait()
        try:
            code, body, h = call(conns[i], "POST", path, a.body)
            msg = body.get("message") if isinstance(body, dict) else str(body)
            out[i] = {"code": code, "message": msg, "retry_after": h.get("retry-after"),
                      "keys": len(keys_of(body)) if code == 200 else 0,
                      "latency": time.monotonic() - start[0]}
        except (OSError, http.client.HTTPException) as e:
            out[i] = {"code": 0, "message": repr(e), "latency": time.monotonic() - start[0]}

    threads = [threading.Thread(target=one, args=(i,)) for i in range(a.n)]
    for t in threads:
        t.start()
    start[0] = time.monotonic()
    go.wait()
    for t in threads:
        t.join()
    for c in conns:
        c.close()
    return {"answers": out}


def cmd_metrics(net, a):
    u = urllib.parse.urlsplit(net["nodes"][a.node]["admin"])
    ctx = ec._context(net["admin"]["cert"], net["admin"]["key"], net["ca"])
    c = http.client.HTTPSConnection(u.hostname, u.port, context=ctx, timeout=TIMEOUT)
    c.request("GET", "/metrics")
    r = c.getresponse()
    text = r.read().decode()
    c.close()
    return {"code": r.status, "text": text}


def main(argv):
    p = argparse.ArgumentParser()
    p.add_argument("--net", required=True)
    sub = p.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("flood")
    f.add_argument("--flood", required=True)
    f.add_argument("--calm", required=True)
    f.add_argument("--slave", required=True)
    f.add_argument("--seconds", type=float, default=4.0)
    f.add_argument("--conns", type=int, default=3)
    f.add_argument("--calm-every", type=float, default=0.25)
    i = sub.add_parser("inflight")
    i.add_argument("--as", dest="sae", required=True)
    i.add_argument("--slave", required=True)
    i.add_argument("--n", type=int, required=True)
    i.add_argument("--body", default="{}")
    m = sub.add_parser("metrics")
    m.add_argument("--node", required=True)
    a = p.parse_args(argv)
    with open(a.net) as fp:
        net = json.load(fp)
    doc = {"flood": cmd_flood, "inflight": cmd_inflight, "metrics": cmd_metrics}[a.cmd](net, a)
    print(json.dumps(doc))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
