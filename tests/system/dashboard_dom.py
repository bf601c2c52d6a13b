#!/usr/bin/env python3
"""dashboard_dom.py - checks what the qkm dashboard shows, from the DOM that
headless Chromium dumps after the page's script ran (--dump-dom): the text a
person reads and the classes that colour the map. Used by
tests/system/test_dashboard.sh. python3 standard library only.

  dashboard_dom.py DOM page NETWORK CONTROLLER MODE NODE...
      header names the network, controller and mode; the map draws every
      NODE (by name), each connected; the routes, SAE and events panels have
      rows; no error banner
  dashboard_dom.py DOM saes SAE=MASTER_MIN,SLAVE_MIN...
      the consumption table counts at least that many keys for each SAE
  dashboard_dom.py DOM alarm LINK [ROUTE_FROM ROUTE_TO PATH]
      the map draws LINK as alarmed (class alarm, "ALARM" in its label), the
      alarm list names it, no other link is alarmed; with a route: the
      routes table shows that path (nodes joined by '>')
  dashboard_dom.py DOM trace TRACE_JSON
      the trace view shows the key of TRACE_JSON (`qkm ctl trace --json`),
      its summary, the hop strip with every relay hop the records name, and
      one row per record with every relay record's node and event

Exit 0 and one "ok" line per check, or exit 1 naming what is missing."""
import html.parser
import json
import re
import sys


class Element:
    def __init__(self, tag, attrs, parent):
        self.tag = tag
        self.attrs = dict(attrs)
        self.parent = parent
        self.children = []
        self.text_parts = []

    def classes(self):
        return set((self.attrs.get("class") or "").split())

    def text(self):
        out = list(self.text_parts)
        for c in self.children:
            if isinstance(c, Element):
                out.append(c.text())
            else:
                out.append(c)
        return "".join(out)

    def walk(self):
        yield self
        for c in self.children:
            if isinstance(c, Element):
                yield from c.walk()

    def find_all(self, tag=None, cls=None, **attrs):
        for e in self.walk():
            if tag and e.tag != tag:
                continue
            if cls and cls not in e.classes():
                continue
            if any(e.attrs.get(k.replace("_", "-")) != v for k, v in attrs.items()):
                continue
            yield e

    def find(self, tag=None, cls=None, **attrs):
        return next(self.find_all(tag, cls, **attrs), None)

    def by_id(self, id_):
        return next((e for e in self.walk() if e.attrs.get("id") == id_), None)


VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source",
        "track", "wbr"}


class Builder(html.parser.HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.root = Element("#root", [], None)
        self.cur = self.root

    def handle_starttag(self, tag, attrs):
        e = Element(tag, attrs, self.cur)
        self.cur.children.append(e)
        if tag not in VOID:
            self.cur = e

    def handle_startendtag(self, tag, attrs):
        self.cur.children.append(Element(tag, attrs, self.cur))

    def handle_endtag(self, tag):
        e = self.cur
        while e is not self.root and e.tag != tag:
            e = e.parent
        if e is not self.root:
            self.cur = e.parent

    def handle_data(self, data):
        self.cur.children.append(data)


def names(kid, key):
    """A record's key_id names KSA key `key`: its UUID, or a run of its
    supply round ("<round UUID>[a..b]": the UUID's last 8 hex digits are
    the key's index, 00000000 in the round's)."""
    m = re.fullmatch(r"([0-9a-f-]{28})00000000\[(\d+)\.\.(\d+)\]", kid)
    return kid == key or bool(m and m[1] == key[:28] and int(m[2]) <= int(key[28:], 16) <= int(m[3]))


def load(path):
    b = Builder()
    with open(path, encoding="utf-8") as f:
        b.feed(f.read())
    return b.root


FAILED = []


def check(cond, what):
    if cond:
        print("ok   " + what)
    else:
        print("FAIL " + what)
        FAILED.append(what)


def norm(s):
    return " ".join(s.split())


def rows(dom, table_id):
    t = dom.by_id(table_id)
    body = t.find("tbody") if t else None
    return [r for r in (body.find_all("tr") if body else []) if not r.find("td", cls="empty")]


def page(dom, network, controller, mode, nodes):
    err = dom.by_id("error")
    check(err is not None and "hidden" in err.attrs, "no error banner" +
          ("" if err is None or "hidden" in err.attrs else ": " + norm(err.text())))
    check(norm(dom.by_id("network").text()) == network, f"header names the network {network!r}"
          f" (shows {norm(dom.by_id('network').text())!r})")
    check(norm(dom.by_id("controller").text()).startswith(controller + " at 127.0.0.1:"),
          f"header names the controller {controller!r}")
    check(norm(dom.by_id("mode").text()) == mode, f"header shows rerouting mode {mode!r}")
    check(norm(dom.by_id("nodes-up").text()) == f"{len(nodes)} of {len(nodes)}",
          f"header: {len(nodes)} of {len(nodes)} nodes connected")
    svg = dom.by_id("map")
    drawn = {e.attrs["data-node"]: e for e in svg.find_all("g", cls="node")}
    for n in nodes:
        e = drawn.get(n)
        name = e.find("text", cls="name") if e else None
        check(e is not None and name is not None and norm(name.text()) == n and "up" in e.classes(),
              f"map draws node {n} (connected)")
    check(set(drawn) == set(nodes), f"map draws no other node ({sorted(set(drawn) - set(nodes))})")
    links = list(svg.find_all("g", cls="link"))
    check(len(links) >= len(nodes) - 1 and all("QBER" in norm(l.text()) for l in links),
          f"map draws {len(links)} links, each with its QBER")
    check(len(rows(dom, "routes")) > 0, f"routes table: {len(rows(dom, 'routes'))} route(s)")
    check(len(rows(dom, "events")) > 0, f"events table: {len(rows(dom, 'events'))} event(s)")


def saes(dom, specs):
    table = {r.attrs.get("data-sae"): [norm(td.text()) for td in r.find_all("td")]
             for r in rows(dom, "saes")}
    for spec in specs:
        sae, mins = spec.split("=")
        master, slave = (int(x) for x in mins.split(","))
        r = table.get(sae)
        ok = r is not None and int(r[2]) >= master and int(r[3]) >= slave
        check(ok, f"consumption: {sae} has >= {master} key(s) as master, >= {slave} as slave"
              f" (row: {r})")


def alarm(dom, link, route=None):
    svg = dom.by_id("map")
    drawn = {e.attrs["data-link"]: e for e in svg.find_all("g", cls="link")}
    e = drawn.get(link)
    check(e is not None and "alarm" in e.classes() and "ALARM" in e.text(),
          f"map draws {link} as alarmed (class {sorted(e.classes()) if e else None}, "
          f"label {norm(e.text()) if e else None!r})")
    others = [k for k, v in drawn.items() if k != link and "alarm" in v.classes()]
    check(not others, f"no other link drawn alarmed ({others})")
    items = [li for li in dom.by_id("alarms").find_all("li")]
    named = [li for li in items if li.attrs.get("data-link") == link and link in li.text()
             and "alarm" in li.text()]
    check(bool(named), f"alarm list names {link}: "
          f"{[norm(li.text()) for li in items]}")
    if route:
        frm, to, path = route
        r = next((r for r in rows(dom, "routes") if r.attrs.get("data-from") == frm
                  and r.attrs.get("data-to") == to), None)
        cells = [norm(td.text()) for td in r.find_all("td")] if r else []
        want = " \u2192 ".join(path.split(">"))
        check(len(cells) == 4 and cells[2] == want,
              f"routes table: {frm} -> {to} is {want} (row: {cells})")


def trace(dom, trace_json):
    t = json.load(open(trace_json))
    out = dom.by_id("trace-out")
    summary = out.find("p", cls="summary") if out else None
    check(summary is not None and t["key"] in summary.text(),
          f"trace shows the summary of {t['key']}: {norm(summary.text()) if summary else None!r}")
    hops = []
    for r in t["records"]:
        if r["event"] != "relay-received" or "hops: " not in r["detail"]:
            continue
        for part in r["detail"].split("hops: ", 1)[1].split(";"):
            m = re.match(r"\s*([\w.:-]+)>([\w.:-]+)\s+(\S+)", part)
            if m and (m.group(1), m.group(2)) not in [(a, b) for a, b, _ in hops]:
                hops.append((m.group(1), m.group(2), m.group(3)))
    check(len(hops) >= 2, f"the key was relayed over {len(hops)} hop(s): {hops}")
    strip = out.find("ol", cls="hops") if out else None
    shown = [norm(li.text()) for li in strip.find_all("li")] if strip else []
    want = []
    for i, (a, b, m) in enumerate(hops):
        if i == 0 or hops[i - 1][1] != a:
            want.append(a)
        want += ["\u2014" + m + "\u2192", b]
    check(shown == want, f"trace shows every hop: {' '.join(shown)!r} (want {' '.join(want)!r})")
    lines = list(dom.by_id("trace-lines").find("tbody").find_all("tr")) if dom.by_id("trace-lines") else []
    check(len(lines) == len(t["records"]),
          f"trace shows one line per record: {len(lines)} of {len(t['records'])}")
    seen = {(r.attrs.get("data-node"), r.attrs.get("data-event")) for r in lines}
    relay = {(r["node"], r["event"]) for r in t["records"] if r["event"].startswith("relay-")}
    check(relay and relay <= seen, f"trace shows every relay record: {sorted(relay)}")
    sup = [r for r in t["records"] if r["event"] == "supplied" and names(r["key_id"], t["key"])]
    check(sup and all(any(s in norm(li.text()) for li in out.find_all("li")) for s in t["supplied"]),
          f"trace shows the supply of the key to its SAEs ({len(t['supplied'])} record(s))")


def main():
    if len(sys.argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    dom = load(sys.argv[1])
    cmd, args = sys.argv[2], sys.argv[3:]
    if cmd == "page":
        page(dom, args[0], args[1], args[2], args[3:])
    elif cmd == "saes":
        saes(dom, args)
    elif cmd == "alarm":
        alarm(dom, args[0], tuple(args[1:4]) if len(args) >= 4 else None)
    elif cmd == "trace":
        trace(dom, args[0])
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 1 if FAILED else 0


if __name__ == "__main__":
    sys.exit(main())
