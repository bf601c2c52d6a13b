#!/usr/bin/env python3
"""lc_check.py - no life-cycle record lost between the nodes of a running
qkm network and its manager, and the manager's ledger intact (R-LC-1,
R-LC-2); for tests/fault/crash.sh, after every round. Only python3's
standard library is used.

  lc_check.py --qkm QKM --dir DIR --state FILE [--deadline S] NODE...

For every NODE: reads the node's own records (`qkm ctl events --json`) up
to its last one now, paging with --after from the last seq FILE remembers
(one call lists at most 100000 records; FILE, JSON {node: seq}, is
rewritten for the next call); then waits, at most S seconds (default 30)
for all nodes together, until the manager's copy of the node's chain
(`qkm ctl records --json --node NODE --after SEQ-1`) holds that record,
and checks it has the node's fields. The manager stores a node's records
only in order and without gaps (docs/store.md, "Appending"), so holding the
last one means holding every one. Then `qkm ctl audit` must be clean.

Prints one summary line; exit 1 with a message on stderr when a check fails.
"""
import json
import os
import subprocess
import sys
import time

PAGE = 100000  # the most records one events or records call lists
FIELDS = ("seq", "time", "event", "key_kind", "key_id", "peer", "detail")


def die(msg):
    print(f"lc_check: {msg}", file=sys.stderr)
    sys.exit(1)


def ctl(qkm, d, *args):
    r = subprocess.run([qkm, "ctl", *args, "--dir", d], capture_output=True, text=True)
    return r.returncode, r.stdout, r.stderr


def node_last(qkm, d, node, after):
    """(seq, record) of the node's last record; (after, None) if it has
    none after `after`."""
    last = None
    while True:
        rc, out, err = ctl(qkm, d, "events", "--json", "--after", str(after), node)
        if rc:
            die(f"qkm ctl events {node}: {err.strip()}")
        recs = json.loads(out)
        if recs:
            last = recs[-1]
            after = last["seq"]
        if len(recs) < PAGE:
            return after, last


def manager_record(qkm, d, node, seq):
    """The manager's record seq of node's chain, or None (not there yet, or
    the controller not answering)."""
    rc, out, _ = ctl(qkm, d, "records", "--json", "--node", node, "--after", str(seq - 1))
    if rc:
        return None
    recs = json.loads(out)
    return recs[0] if recs and recs[0]["seq"] == seq else None


def chain_head(qkm, d, node):
    rc, out, err = ctl(qkm, d, "audit", "--json")
    if rc not in (0, 3):
        return f"unknown (audit: {err.strip()})"
    heads = [c["last_seq"] for c in json.loads(out)["chains"] if c["node"] == node]
    return str(heads[0]) if heads else "nothing (no chain)"


def main(argv):
    opts, nodes = {"--deadline": "30"}, []
    i = 0
    while i < len(argv):
        if argv[i] in ("--qkm", "--dir", "--state", "--deadline") and i + 1 < len(argv):
            opts[argv[i]] = argv[i + 1]
            i += 2
        elif not argv[i].startswith("-"):
            nodes.append(argv[i])
            i += 1
        else:
            die(f"unknown argument {argv[i]}")
    if not all(k in opts for k in ("--qkm", "--dir", "--state")) or not nodes:
        die("usage: lc_check.py --qkm QKM --dir DIR --state FILE [--deadline S] NODE...")
    qkm, d, state_file = opts["--qkm"], opts["--dir"], opts["--state"]
    state = {}
    if os.path.exists(state_file):
        with open(state_file) as f:
            state = json.load(f)

    # The nodes' last records now (the end of the round).
    last = {}
    for n in nodes:
        state[n], last[n] = node_last(qkm, d, n, state.get(n, 0))
        if last[n] is None and state[n] > 0:
            # Nothing new since the last call: the manager must still hold
            # the record seen then; read it back from the node.
            _, last[n] = node_last(qkm, d, n, state[n] - 1)
    with open(state_file, "w") as f:
        json.dump(state, f)

    # The manager catches up, all nodes within one deadline.
    end = time.monotonic() + float(opts["--deadline"])
    for n in nodes:
        if state[n] == 0:
            continue
        while (m := manager_record(qkm, d, n, state[n])) is None:
            if time.monotonic() > end:
                die(f"life-cycle records lost: node {n}'s last record is seq {state[n]}, "
                    f"the manager's copy of its chain ends at {chain_head(qkm, d, n)} "
                    f"{opts['--deadline']} s later")
            time.sleep(0.2)
        diff = [f"{k}: node {last[n].get(k)!r}, manager {m.get(k)!r}"
                for k in FIELDS if m.get(k) != last[n].get(k)]
        if diff:
            die(f"node {n}'s record {state[n]} differs at the manager: " + "; ".join(diff))

    t = time.monotonic()
    rc, out, err = ctl(qkm, d, "audit")
    lines = out.strip().splitlines()
    if rc or not lines or lines[-1] != "audit: clean":
        die(f"qkm ctl audit (exit {rc}): {out.strip()} {err.strip()}")
    heads = " ".join(f"{n}:{state[n]}" for n in nodes)
    print(f"life-cycle records at the manager up to each node's last ({heads}), "
          f"audit clean ({time.monotonic() - t:.1f} s)")


if __name__ == "__main__":
    main(sys.argv[1:])
