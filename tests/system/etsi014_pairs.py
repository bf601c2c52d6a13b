#!/usr/bin/env python3
"""etsi014_pairs.py - load and bookkeeping for test_etsi014_crash.sh and
test_tamper.sh.

  run    --net N --log F --seconds S --threads T --seed X --round R
         [--until FILE] [--max-number M] [--master SAE] [--slave SAE]
         T threads, each looping for S seconds (or until FILE exists, if
         that comes first): enc_keys at the master's KME
         (--master, default sae-alice at A, random number (at most M, default 8) and size
         within the Status limits, GET or POST), then dec_keys of exactly
         those IDs at the slave's KME (--slave, default sae-bob at B). Every
         outcome is appended to F as one JSON line; key bytes are never
         written, only SHA-256 fingerprints.
  verify --net N --log F [--deadline S]
         Settles every key the master received (see OUTCOMES), then checks
         R-SUP-7/R-SUP-8 over the whole log. Prints a summary, exit 1 on a
         violation.

OUTCOMES (what counts). A key counts once enc_keys returned it to the master
(an "enc" line). Its dec_keys attempts are:
  ok      200 with the key: bytes must equal the master's (R-SUP-7);
  refused 400/401: the KME says the key is not (or no longer) there;
  busy    503: no answer about the key; the key must stay available;
  down    no connection (refused, or TCP/TLS handshake failed): the request
          never left, so the key must stay available;
  lost    the request was sent but no HTTP response came (reset, TLS cut,
          timeout): the KME may have handed the key out before dying.
verify retries (until --deadline) every key that has no "ok" yet:
  - a key with a "lost" attempt ("interrupted by the crash") may end refused
    (it was supplied, the answer died with the process); if it is delivered,
    the bytes must match;
  - any other key must end "ok" with identical bytes: "refused" for it is a
    violation (a key the master holds and the slave cannot get).
Then every key delivered "ok" is asked for once more: that must be refused
(R-SUP-8: never supplied twice, not after restart, not after a crash). And
no key_ID appears in two enc_keys answers.
"""
import argparse
import concurrent.futures
import json
import os
import random
import sys
import threading
import time

import etsi014_client as c

MASTER, SLAVE = "sae-alice", "sae-bob"


def classify(code):
    return {200: "ok", 400: "refused", 401: "refused", 503: "busy"}.get(code, f"http{code}")


class Log:
    def __init__(self, path):
        self.f = open(path, "a")
        self.lock = threading.Lock()

    def put(self, **rec):
        with self.lock:
            self.f.write(json.dumps(rec) + "\n")
            self.f.flush()


def keys_of(body):
    """[(key_ID, sha256 or None)] of a Key container."""
    out = []
    for k in body.get("keys", []) if isinstance(body, dict) else []:
        raw = c.b64_strict(k.get("key")) if isinstance(k, dict) else None
        out.append((k.get("key_ID") if isinstance(k, dict) else None,
                    c.fingerprint(raw) if raw is not None else None))
    return out


def run(a):
    net = c.load_net(a.net)
    enc_ep = c.endpoint(net, MASTER)
    dec_ep = c.endpoint(net, SLAVE)
    log = Log(a.log)
    limits = None
    for _ in range(100):  # the Status limits (the caller waited for the KME to be up)
        try:
            code, st = c.status(*enc_ep, SLAVE)
            if code == 200:
                limits = st
                break
        except c.NoResponse:
            pass
        time.sleep(0.1)
    if limits is None:
        print("etsi014_pairs: no Status from the master's KME", file=sys.stderr)
        return 2
    maxn = min(limits["max_key_per_request"], a.max_number)
    sizes = sorted({limits["key_size"], limits["min_key_size"], limits["max_key_size"]} |
                   {s for s in (128, 256, 512) if limits["min_key_size"] <= s <= limits["max_key_size"]})
    sizes = [s for s in sizes if s % 8 == 0]
    end = time.monotonic() + a.seconds

    def worker(tid):
        rnd = random.Random(a.seed * 1000 + tid)
        n_ok = 0
        while time.monotonic() < end and not (a.until and os.path.exists(a.until)):
            number, size = rnd.randint(1, maxn), rnd.choice(sizes)
            try:
                if rnd.random() < 0.5:
                    code, body = c.enc_keys_get(*enc_ep, SLAVE, number, size, timeout=a.timeout)
                else:
                    code, body = c.enc_keys_post(*enc_ep, SLAVE, {"number": number, "size": size},
                                                 timeout=a.timeout)
            except c.NoResponse as e:
                log.put(t="enc_fail", round=a.round, tid=tid, err=e.kind)
                time.sleep(0.05)  # the KME is down: poll again shortly
                continue
            if code != 200:
                log.put(t="enc_err", round=a.round, tid=tid, code=code)
                time.sleep(0.05)
                continue
            ks = keys_of(body)
            if len(ks) != number or any(s is None or not c.uuid_ok(i) for i, s in ks):
                log.put(t="bad_container", round=a.round, tid=tid, number=number, got=len(ks))
                continue
            for i, s in ks:
                log.put(t="enc", round=a.round, tid=tid, id=i, sha=s, bits=size)
            ids = [i for i, _ in ks]
            try:
                if len(ids) == 1 and rnd.random() < 0.5:
                    code, body = c.dec_keys_get(*dec_ep, MASTER, ids[0], timeout=a.timeout)
                else:
                    code, body = c.dec_keys_post(*dec_ep, MASTER, ids, timeout=a.timeout)
            except c.NoResponse as e:
                for i in ids:
                    log.put(t="dec", round=a.round, id=i, res="lost" if e.sent else "down", err=e.kind)
                time.sleep(0.05)
                continue
            res = classify(code)
            got = dict(keys_of(body)) if code == 200 else {}
            for i in ids:
                if res == "ok":
                    log.put(t="dec", round=a.round, id=i, res="ok", sha=got.get(i))
                else:
                    log.put(t="dec", round=a.round, id=i, res=res, code=code)
            n_ok += res == "ok"
        return n_ok

    with concurrent.futures.ThreadPoolExecutor(a.threads) as ex:
        done = sum(ex.map(worker, range(a.threads)))
    print(f"round {a.round}: {done} enc/dec pairs completed")
    return 0


def verify(a):
    net = c.load_net(a.net)
    dec_ep = c.endpoint(net, SLAVE)
    enc = {}        # id -> sha
    enc_count = {}  # id -> times returned by enc_keys
    hist = {}       # id -> [res, ...]
    oksha = {}      # id -> sha of every ok
    bad = []
    checked = set()  # delivered keys whose second request an earlier verify saw refused
    with open(a.log) as f:
        for line in f:
            r = json.loads(line)
            if r["t"] == "enc":
                enc_count[r["id"]] = enc_count.get(r["id"], 0) + 1
                enc[r["id"]] = r["sha"]
            elif r["t"] == "dec":
                hist.setdefault(r["id"], []).append(r["res"])
                if r["res"] == "ok":
                    oksha.setdefault(r["id"], []).append(r.get("sha"))
            elif r["t"] == "again" and r["res"] == "refused":
                checked.add(r["id"])
            elif r["t"] == "bad_container":
                bad.append(f"malformed Key container: {r}")
    dup = [i for i, n in enc_count.items() if n > 1]
    if dup:
        bad.append(f"{len(dup)} key_ID(s) returned twice by enc_keys, e.g. {dup[:3]}")
    for i, shas in oksha.items():
        if len(shas) > 1:
            bad.append(f"{i}: delivered {len(shas)} times to the slave (R-SUP-8)")
        if any(s != enc.get(i) for s in shas):
            bad.append(f"{i}: slave's key differs from the master's (R-SUP-7)")

    def settle(i):
        """Retry dec_keys for i until a definite answer or the deadline. The
        load has stopped: each worker thread keeps its connection (tens of
        thousands of requests, a handshake each took most of a minute)."""
        end = time.monotonic() + a.deadline
        while True:
            try:
                code, body = c.dec_keys_get(*dec_ep, MASTER, i, timeout=a.timeout, keep=True)
                res = classify(code)
                if res in ("ok", "refused"):
                    return res, dict(keys_of(body)).get(i) if res == "ok" else None
            except c.NoResponse as e:
                res = "lost:" + e.kind
            if time.monotonic() > end:
                return res, None
            time.sleep(0.2)

    log = Log(a.log)  # settled outcomes are logged too, so a later verify knows them
    pending = [i for i in enc if i not in oksha]
    interrupted = {i for i in pending if "lost" in hist.get(i, [])}
    stats = {"lost_after_crash": 0, "delivered_on_retry": 0}
    # A key refused once after a cut request stays "lost to the crash" in later
    # verifies; "refused" lines of its own retries are not new evidence.
    with concurrent.futures.ThreadPoolExecutor(16) as ex:
        for i, (res, sha) in zip(pending, ex.map(settle, pending)):
            log.put(t="dec", round="verify", id=i, res=res, sha=sha)
            if res == "ok":
                stats["delivered_on_retry"] += 1
                oksha[i] = [sha]
                if sha != enc[i]:
                    bad.append(f"{i}: retried dec_keys returned different bytes (R-SUP-7)")
            elif res == "refused" and i in interrupted:
                stats["lost_after_crash"] += 1
            else:
                bad.append(f"{i}: master holds it, slave cannot get it: {res} after {hist.get(i, [])} (R-SUP-7)")

    def again(i):
        res, sha = settle(i)  # also retries a lost answer or a 503 until the deadline
        return res, sha is not None

    delivered = sorted(oksha)
    todo = [i for i in delivered if i not in checked]
    with concurrent.futures.ThreadPoolExecutor(16) as ex:
        for i, (res, has_keys) in zip(todo, ex.map(again, todo)):
            log.put(t="again", id=i, res=res)
            if res != "refused" or has_keys:
                bad.append(f"{i}: second dec_keys after delivery gave {res} (R-SUP-8: at most once)")

    print(f"verify: {len(enc)} keys received by the master, {len(delivered)} delivered to the slave "
          f"({stats['delivered_on_retry']} on retry), {len(interrupted)} with a dec request cut by "
          f"a crash ({stats['lost_after_crash']} of them refused after the restart), "
          f"{len(todo)} second requests (for keys not checked before) refused")
    for b in bad[:20]:
        print("violation:", b)
    return 1 if bad else 0


def main():
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["run", "verify"])
    p.add_argument("--net", required=True)
    p.add_argument("--log", required=True)
    p.add_argument("--seconds", type=float, default=30)
    p.add_argument("--threads", type=int, default=16)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--round", type=int, default=1)
    p.add_argument("--timeout", type=float, default=10)
    p.add_argument("--deadline", type=float, default=30)
    p.add_argument("--until", help="run: stop early once this file exists")
    p.add_argument("--max-number", type=int, default=8, help="run: most keys per enc_keys")
    p.add_argument("--master", default="sae-alice", help="the master SAE (default sae-alice)")
    p.add_argument("--slave", default="sae-bob", help="the slave SAE (default sae-bob)")
    a = p.parse_args()
    global MASTER, SLAVE
    MASTER, SLAVE = a.master, a.slave
    return run(a) if a.mode == "run" else verify(a)


if __name__ == "__main__":
    sys.exit(main())
