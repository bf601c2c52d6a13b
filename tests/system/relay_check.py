#!/usr/bin/env python3
"""relay_check.py - reads the relay life-cycle records of a running qkm
network (`qkm ctl events --json`) and checks them, for test_relay.sh
(R-REL-1, R-REL-2, R-REL-4). Only python3's standard library is used.

  relay_check.py --qkm QKM --dir DIR route NODE N1 N2 ... Nk
      NODE's node.json has the route N1..Nk to Nk (N1 = NODE).
  relay_check.py --qkm QKM --dir DIR hops DEST N1 ... Nk [--method M] [--hop A>B=M]...
                 [--level L] [--some]
      DEST (= Nk) holds relay-received records from origin N1; every one
      lists exactly the hops N1>N2 ... N(k-1)>Nk, each with method M (default
      otp; "any": any) or, for hop A>B, the one --hop A>B=METHOD gives, and
      level L (default its) (with --some: at least one record does, and the
      others list the route's hops); any record's level is its iff all its
      hops used otp;
      every node N2..N(k-1) recorded relay-forwarded for each of those batches.
  relay_check.py --qkm QKM --dir DIR settled [--wait SECONDS] A B
      for each direction (origin O, destination D) of the pair: every
      relay-sent at O is relay-confirmed or relay-aborted (not both), the
      confirmed batches are exactly D's relay-received from O, and no aborted
      batch is stored at D (R-REL-1).
      The two nodes' records cannot be read at one instant, and relays ahead
      of demand go on while they are read, so they are read in causal order:
      O's confirmed and aborted, then D's received, then O's sent, then O's
      confirmed and aborted again. A batch D holds must then be among O's
      sent (O records it durably before the frame leaves) and never among
      its aborted, a batch O confirmed among D's received (D stores it before
      it answers): those are violations whenever the records are read. A
      relay sent and not settled yet, or stored at D and not confirmed at O
      yet, is in flight: exit 3 ("not settled yet"). With --wait, the records
      are read again until every relay in flight at the first reading has
      settled (relays started later are not waited for), for at most
      SECONDS: exit 0 then, 1 on a violation or when the time is up.
  relay_check.py --qkm QKM --dir DIR reuse NODE...
      the link key ranges each NODE recorded consuming on its own direction
      (relay-sent, outgoing side of relay-forwarded) never overlap.

Prints one summary line; exit 1 with a message on stderr when a check fails
(settled: exit 3 when relays are only in flight).
"""
import json
import re
import subprocess
import sys
import time


def events(qkm, d, node, event):
    out = subprocess.run([qkm, "ctl", "events", "--dir", d, "--json", "--event", event, node],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def batch(ev):
    """The batch ID of a relay record: its key_id without the [0..N] suffix."""
    return ev["key_id"].split("[")[0]


def die(msg):
    print(f"relay_check: {msg}", file=sys.stderr)
    sys.exit(1)


HOP_RE = re.compile(r"^(\S+)>(\S+) (\S+) (\S+)$")


def parse_received(detail):
    """(origin, level, [(src, dst, method)]) of a relay-received detail:
    "65536 bytes from A, level its; hops: A>B otp <time>; B>C otp <time>"."""
    m = re.match(r"^\d+ bytes from (\S+), level (\S+); hops: (.*)$", detail)
    if not m:
        return None
    hops = []
    for h in m.group(3).split("; "):
        hm = HOP_RE.match(h)
        if not hm:
            return None
        hops.append((hm.group(1), hm.group(2), hm.group(3)))
    return m.group(1), m.group(2), hops


def cmd_route(a, rest):
    node, path = rest[0], rest[1:]
    net = json.load(open(f"{a.dir}/network.json"))
    cfg = json.load(open(net["nodes"][node]["config"]))
    got = [r["path"] for r in cfg.get("routes", []) if r["to"] == path[-1]]
    if got != [path]:
        die(f"{node}: route to {path[-1]} is {got}, expected {path}")
    print(f"{node}: route to {path[-1]} {'>'.join(path)}")


def cmd_hops(a, rest):
    method, level, path, per_hop, some = "otp", "its", [], {}, False
    i = 0
    while i < len(rest):
        if rest[i] == "--some":
            some, i = True, i + 1
        elif rest[i] == "--method":
            method, i = rest[i + 1], i + 2
        elif rest[i] == "--level":
            level, i = rest[i + 1], i + 2
        elif rest[i] == "--hop":
            h, _, m = rest[i + 1].partition("=")
            per_hop[h], i = m, i + 2
        else:
            path.append(rest[i])
            i += 1
    dest, path = path[0], path[1:]
    if dest != path[-1]:
        die(f"hops: destination {dest} is not the end of the path {path}")
    want = [(s, t, per_hop.get(f"{s}>{t}", method)) for s, t in zip(path, path[1:])]
    origin = path[0]
    recs = [e for e in events(a.qkm, a.dir, dest, "relay-received") if e["peer"] == origin]
    if not recs:
        die(f"{dest}: no relay-received record from {origin}")
    matching = []
    for e in recs:
        p = parse_received(e["detail"])
        if not p:
            die(f"{dest}: relay-received {batch(e)}: detail does not list the hops: {e['detail']!r}")
        o, lv, hops = p
        if o != origin:
            die(f"{dest}: relay-received {batch(e)} says origin {o}, record peer {origin}")
        if [(s, t) for s, t, _ in hops] != [(s, t) for s, t, _ in want]:
            die(f"{dest}: relay-received {batch(e)} lists hops {hops}, route is {'>'.join(path)}: "
                f"{e['detail']!r}")
        # R-REL-4: a key is ITS only if every hop used OTP.
        if lv != ("its" if all(m == "otp" for _, _, m in hops) else "computational"):
            die(f"{dest}: relay-received {batch(e)}: level {lv} does not follow from its hops' "
                f"methods: {e['detail']!r}")
        bad = [f"hop {s}>{t} used {m}, expected {wm}" for (s, t, m), (_, _, wm) in zip(hops, want)
               if wm != "any" and m != wm]
        if lv != level:
            bad.append(f"level {lv}, expected {level}")
        if bad and not some:
            die(f"{dest}: relay-received {batch(e)}: {'; '.join(bad)}: {e['detail']!r}")
        if not bad:
            matching.append(e)
    if not matching:
        die(f"{dest}: none of {len(recs)} relay-received record(s) from {origin} has hops "
            + ", ".join(f"{s}>{t} {m}" for s, t, m in want) + f" and level {level}; last: "
            f"{recs[-1]['detail']!r}")
    recs = matching
    got = {batch(e) for e in recs}
    for mid in path[1:-1]:
        fwd = {batch(e) for e in events(a.qkm, a.dir, mid, "relay-forwarded")}
        missing = got - fwd
        if missing:
            die(f"{mid}: no relay-forwarded record for {len(missing)} batch(es) {dest} received "
                f"from {origin}, e.g. {sorted(missing)[0]}")
    print(f"{dest}: {len(recs)} relay(s) from {origin}{' (of those received)' if some else ''}, hops "
          + ", ".join(f"{s}>{t} {m}" for s, t, m in want)
          + f", level {level}; relay-forwarded at {', '.join(path[1:-1])}")


def settled_dir(a, o, d):
    """One causally ordered reading of direction o -> d: (sent, confirmed,
    aborted, received, {batch in flight: why}); dies on a violation of
    R-REL-1."""
    def mine(node, event, peer):
        return {batch(e) for e in events(a.qkm, a.dir, node, event) if e["peer"] == peer}
    conf1 = mine(o, "relay-confirmed", d)
    abor1 = mine(o, "relay-aborted", d)
    recv = mine(d, "relay-received", o)
    sent = mine(o, "relay-sent", d)
    conf = mine(o, "relay-confirmed", d) | conf1
    abor = mine(o, "relay-aborted", d) | abor1
    if conf & abor:
        die(f"{o}->{d}: {len(conf & abor)} batch(es) both confirmed and aborted, "
            f"e.g. {sorted(conf & abor)[0]}")
    if (conf1 | abor1) - sent:
        die(f"{o}->{d}: settled batches never sent, e.g. {sorted((conf1 | abor1) - sent)[0]}")
    if recv - sent:
        bad = sorted(recv - sent)
        die(f"{o}->{d}: {len(bad)} batch(es) stored at {d} that {o} has no relay-sent record of "
            f"(a key at one end only), e.g. {bad[0]}")
    if recv & abor:
        bad = sorted(recv & abor)
        die(f"{o}->{d}: {len(bad)} batch(es) stored at {d} only (aborted at {o}), e.g. {bad[0]}")
    if conf1 - recv:
        die(f"{o}->{d}: {len(conf1 - recv)} batch(es) confirmed at {o} never stored at {d}, "
            f"e.g. {sorted(conf1 - recv)[0]}")
    flying = {x: "sent, neither confirmed nor aborted yet" for x in sent - conf - abor}
    flying.update({x: f"stored at {d}, not confirmed at {o} yet" for x in recv - conf})
    return sent, conf, abor, recv, flying


def cmd_settled(a, rest):
    wait = None
    if rest[:1] == ["--wait"]:
        wait, rest = float(rest[1]), rest[2:]
    x, y = rest
    deadline = time.monotonic() + (wait or 0)
    first = None  # (direction, batch) -> why, in flight at the first reading
    while True:
        total, flying = {}, {}
        for o, d in ((x, y), (y, x)):
            sent, conf, abor, recv, fl = settled_dir(a, o, d)
            # Counted among the batches of the one reading of sent.
            total[(o, d)] = (len(sent), len(sent & conf), len(sent & abor), len(recv), len(fl))
            flying.update({(f"{o}->{d}", b): why for b, why in fl.items()})
        if first is None:
            first = flying
        left = sorted(k for k in first if k in flying)
        if not left:
            break
        if wait is None:
            (dr, b) = left[0]
            print(f"relay_check: {len(left)} relay(s) not settled yet, e.g. {dr} {b}: "
                  f"{flying[left[0]]}", file=sys.stderr)
            sys.exit(3)
        if time.monotonic() >= deadline:
            (dr, b) = left[0]
            die(f"{len(left)} relay(s) still not settled after {wait:g} s, e.g. {dr} {b}: "
                f"{flying[left[0]]}")
        time.sleep(0.2)
    # Relays started after the first reading may still be in flight.
    print("; ".join(f"{o}->{d}: {s} sent, {c} confirmed, {r} received at {d}, {ab} aborted"
                    + (f", {n} started since, in flight" if n else "")
                    for (o, d), (s, c, ab, r, n) in total.items()))


RANGE_RE = re.compile(r"([0-9a-f]{24})([0-9a-f]{8})\+(\d+):(\d+)")
UNIT = 32  # KMA-key bytes (kma_unit_bits 256, qkm net up's default)


def ranges(text):
    """[(batch prefix, start, end)] of "link key <ranges>" text (ranges
    "<KMA-key ID>+<offset in that key>:<length>"; a long list is written as
    its first and last range and the totals: the ranges between are left
    out, which can hide an overlap, never invent one)."""
    out = []
    for m in RANGE_RE.finditer(text):
        start = int(m.group(2), 16) * UNIT + int(m.group(3))
        out.append((m.group(1), start, start + int(m.group(4))))
    return out


def cmd_reuse(a, rest):
    report = []
    for node in rest:
        used = {}  # neighbour -> [(batch, start, end, record batch)]
        for e in events(a.qkm, a.dir, node, "relay-sent"):
            # "... via NB, key data from <ranges>|RNG; hop O>NB METHOD, link key <ranges>"
            m = re.search(r" via (\S+), key data from (.*); hop \S+ \S+, link key (.*)$",
                          e["detail"])
            if m:
                for r in ranges(m.group(2)) + ranges(m.group(3)):
                    used.setdefault(m.group(1), []).append(r + (batch(e),))
        for e in events(a.qkm, a.dir, node, "relay-forwarded"):
            m = re.search(rf", {re.escape(node)}>(\S+) \S+ link key (.*)$", e["detail"])
            if m:
                for r in ranges(m.group(2)):
                    used.setdefault(m.group(1), []).append(r + (batch(e),))
        for nb, rs in sorted(used.items()):
            rs.sort()
            for p, q in zip(rs, rs[1:]):
                if p[0] == q[0] and q[1] < p[2]:
                    die(f"{node}>{nb}: link key {p[0]} bytes {q[1]}..{min(p[2], q[2])} used twice: "
                        f"by relay {p[3]} and by relay {q[3]}")
            report.append(f"{node}>{nb} {len(rs)} range(s)")
    print("no link key range used twice: " + ", ".join(report))


def main(argv):
    if len(argv) < 5 or argv[0] != "--qkm" or argv[2] != "--dir":
        print(__doc__, file=sys.stderr)
        return 2

    class A:
        pass
    a = A()
    a.qkm, a.dir, cmd, rest = argv[1], argv[3], argv[4], argv[5:]
    {"route": cmd_route, "hops": cmd_hops, "settled": cmd_settled, "reuse": cmd_reuse}[cmd](a, rest)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
