#!/usr/bin/env python3
"""bench/report (the table and plot of `make bench`) on a canned run,
tests/bench/results-fixture.json (the four benchmarks' own JSON of earlier
runs, the machine made up): every benchmark line is a row of the table with
its ratio and verdict; the SVG parses as XML and has its five panels; a
failed benchmark and one not run are marked while the others' rows stay.
Runs no benchmark and times nothing."""
import copy
import json
import os
import shutil
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
REPORT = os.path.join(ROOT, "bench", "report")
SVG = "{http://www.w3.org/2000/svg}"


def fail(msg):
    print("FAIL: " + msg)
    sys.exit(1)


def check(cond, msg):
    if not cond:
        fail(msg)


def report(tmp, name, combined):
    path = os.path.join(tmp, name + ".json")
    with open(path, "w") as f:
        json.dump(combined, f)
    p = subprocess.run([sys.executable, REPORT, path], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True, timeout=60)
    check(p.returncode == 0, "bench/report exit %d:\n%s" % (p.returncode, p.stdout))
    with open(os.path.join(tmp, name + ".md")) as f:
        md = f.read()
    check(md in p.stdout, "the printed table is not the .md file")
    try:
        svg = ET.parse(os.path.join(tmp, name + ".svg")).getroot()
    except ET.ParseError as ex:
        fail("%s.svg is not XML: %s" % (name, ex))
    check(svg.tag == SVG + "svg", "root element %s, not svg" % svg.tag)
    return md, svg


def table(md):
    """{(bench, what): [qkm, baseline, ratio, target]} of the table's rows."""
    rows = {}
    for line in md.splitlines():
        if not line.startswith("| `bench/"):
            continue
        cells = [c.strip() for c in line.strip("|").split(" | ")]
        check(len(cells) == 5, "row with %d cells: %s" % (len(cells), line))
        bench, _, what = cells[0].partition(" ")
        rows[(bench.strip("`"), what)] = cells[1:]
    return rows


def find(rows, bench, *words):
    hits = [k for k in rows if k[0] == "bench/" + bench and all(w in k[1] for w in words)]
    check(len(hits) == 1, "%d rows of bench/%s with %s: %s" % (len(hits), bench, words,
                                                              sorted(rows)))
    return rows[hits[0]]


def texts(svg):
    return [t.text or "" for t in svg.iter(SVG + "text")]


def main():
    with open(os.path.join(HERE, "results-fixture.json")) as f:
        fx = json.load(f)
    tmp = tempfile.mkdtemp(prefix="test-report.", dir=os.environ.get("QKM_TEST_TMP"))

    # The whole run: one row per benchmark line.
    md, svg = report(tmp, "all", fx)
    rows = table(md)
    b = fx["benches"]
    relay = b["relay"]["result"]["in_process"]["runs"]
    n_tput = sum(r["kind"] == "throughput" for r in relay)
    n_lat = sum(r["kind"] == "latency" for r in relay)
    want = {"bench/acquire": 1,
            "bench/etsi014": len(b["etsi014"]["result"]["qkm"]["enc"])
            + len(b["etsi014"]["result"]["qkm"]["pair"]),
            "bench/relay": n_tput + 1 + n_lat + 1,
            "bench/routing": len(b["routing"]["result"]["sizes"]) + 1}
    for bench, n in want.items():
        got = sum(1 for k in rows if k[0] == bench)
        check(got == n, "%s: %d rows, want %d" % (bench, got, n))

    # Figures, ratios and verdicts of the fixture's numbers.
    r = find(rows, "acquire", "pair-confirmed")
    check(r[0] == "580" and "4,640" in r[1] and r[2] == "0.125" and r[3].endswith("**not met**"),
          "acquire row: %s" % r)
    r = find(rows, "etsi014", "enc_keys, 1 connection")
    check(r[0].startswith("9,174") and "7,737" in r[1] and r[2] == "1.19"
          and r[3].endswith(": met"), "etsi014 x1 row: %s" % r)
    r = find(rows, "etsi014", "enc_keys, 16 connections")
    check("p99 ≤ 2 ms" in r[3] and r[3].endswith("**not met**"), "etsi014 x16 row: %s" % r)
    find(rows, "etsi014", "enc+dec pairs, 16 connections")
    r = find(rows, "relay", "2 hops, link key, 1 MiB")
    check(r[0] == "578" and "3,308" in r[1] and r[2] == "0.175", "relay 2 hops 1 MiB row: %s" % r)
    r = find(rows, "relay", "link key spent")
    check(r[0].startswith("1.0037") and r[3] == "≤ 1.05: met", "relay efficiency row: %s" % r)
    r = find(rows, "relay", "key file, 4 hops")
    check(r[0] == "4.8" and r[3].endswith("**not met**"), "relay step p99 row: %s" % r)
    find(rows, "relay", "real processes")
    r = find(rows, "routing", "10,000 nodes: all routes from one node")
    check(r[3] == "< 1 s (slowest run): met" and float(r[2]) > 1, "routing row: %s" % r)
    check("Targets: 3 met, 11 not met." in md, "summary line")

    t = texts(svg)
    for title in ("ETSI 014: throughput", "ETSI 014: latency percentiles",
                  "Relay: throughput (in process)", "Relay: step latency, one 32-byte key file",
                  "Routing: all routes from one node"):
        check(title in t, "no panel titled %r" % title)
    check("not measured" not in t, "a panel is empty in the whole run")
    lines = list(svg.iter(SVG + "polyline"))
    check(len(lines) >= 10, "%d plotted lines" % len(lines))
    for pl in lines:
        for xy in pl.get("points").split():
            x, y = (float(v) for v in xy.split(","))
            check(0 <= x <= float(svg.get("width")) and 0 <= y <= float(svg.get("height")),
                  "point %s outside the picture" % xy)

    # A failed benchmark and one not run: marked, the others' rows unchanged.
    fx2 = copy.deepcopy(fx)
    fx2["benches"]["relay"] = {"status": "failed", "exit": 1, "wall_s": 2.0}
    fx2["benches"]["routing"] = {"status": "not run"}
    md2, svg2 = report(tmp, "failed", fx2)
    rows2 = table(md2)
    check(find(rows2, "relay", "FAILED (exit 1)")[3] == "not measured", "relay failure row")
    check(("bench/routing", "not run") in rows2, "routing not-run row")
    for k, v in rows.items():
        if k[0] in ("bench/acquire", "bench/etsi014"):
            check(rows2.get(k) == v, "row %s changed by another benchmark's failure" % (k,))
    check("not measured (benchmark failed): relay; not run: routing" in md2, "summary of failures")
    t2 = texts(svg2)
    check(t2.count("bench/relay failed") == 2 and "not run" in t2,
          "the relay panels do not say it failed")
    check("ETSI 014: throughput" in t2 and "not measured" not in t2, "etsi014 panels lost")
    print("ok: table rows %s, SVG %d lines; failed and not-run benchmarks marked" % (
        ", ".join("%s %d" % (k[6:], v) for k, v in want.items()), len(lines)))
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
