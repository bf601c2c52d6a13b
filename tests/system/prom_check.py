#!/usr/bin/env python3
"""prom_check.py - a strict reader of the Prometheus text exposition format
(version 0.0.4, as Prometheus documents it) for qkm's system tests (issue #8
item 2). Only python3's standard library.

  prom_check.py check FILE            exit 0 if every line parses and the rules
                                      below hold, else 1 naming the line
  prom_check.py get FILE 'NAME{k="v",...}' [--sum] [--default X]
                                      the value of the one sample of NAME whose
                                      labels include those given (--sum: the sum
                                      over every match; --default: when none)
  prom_check.py families FILE         the family names, one a line
  prom_check.py series FILE NAME LABEL
                                      the values of LABEL over NAME's samples

Rules beyond the grammar (metric and label names, quoted label values with
only \\\\, \\" and \\n escapes, a float or NaN/+Inf/-Inf value, an optional
integer timestamp): every family has one HELP and one TYPE line, HELP first,
both before its samples; a family's samples come together; no series twice;
no label twice in a sample, none starting with "__"; counters are named
*_total and are not negative; a histogram's series each have _bucket samples
with increasing "le" bounds ending at +Inf, cumulative counts, the +Inf count
equal to _count, and a _sum; no blank line; the text ends with a newline.
"""
import math
import re
import sys

NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
TYPES = ("counter", "gauge", "histogram", "summary", "untyped")


class Bad(Exception):
    pass


def number(text, what):
    if text in ("NaN", "+Inf", "-Inf", "Inf"):
        return float(text.replace("Inf", "inf").replace("NaN", "nan"))
    if not re.fullmatch(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?", text):
        raise Bad(f"{what} {text!r} is not a number")
    return float(text)


def parse_labels(s, i):
    """Parses {...} at s[i] == '{'; returns (dict, index after '}')."""
    labels = {}
    i += 1
    while True:
        if s[i] == "}":
            return labels, i + 1
        m = LABEL.match(s, i)
        if not m:
            raise Bad(f"bad label name at column {i + 1}")
        name = m.group(0)
        if name.startswith("__"):
            raise Bad(f"reserved label name {name}")
        if name in labels:
            raise Bad(f"label {name} twice")
        i = m.end()
        if s[i:i + 2] != '="':
            raise Bad(f"label {name}: expected =\" at column {i + 1}")
        i += 2
        val = []
        while s[i] != '"':
            c = s[i]
            if c == "\\":
                i += 1
                esc = s[i]
                if esc not in '\\"n':
                    raise Bad(f"label {name}: bad escape \\{esc}")
                val.append("\n" if esc == "n" else esc)
            elif c == "\n":
                raise Bad(f"label {name}: newline in value")
            else:
                val.append(c)
            i += 1
        labels[name] = "".join(val)
        i += 1
        if s[i] == ",":
            i += 1
        elif s[i] != "}":
            raise Bad(f"expected , or }} at column {i + 1}")


def family_of(name, types):
    if name in types:
        return name
    for suf in ("_bucket", "_sum", "_count"):
        base = name[: -len(suf)] if name.endswith(suf) else None
        if base and types.get(base) in ("histogram", "summary"):
            return base
    return None


def parse(text):
    """Returns (types, samples [(name, labels, value)], helps); raises Bad."""
    if not text.endswith("\n"):
        raise Bad("the text does not end with a newline")
    types, helps, samples, seen, done = {}, {}, [], set(), set()
    current = None
    for n, line in enumerate(text[:-1].split("\n"), 1):
        try:
            if line == "":
                raise Bad("blank line")
            if "\r" in line:
                raise Bad("carriage return")
            if line.startswith("#"):
                parts = line.split(" ", 3)
                if len(parts) >= 3 and parts[1] in ("HELP", "TYPE"):
                    name = parts[2]
                    if not NAME.fullmatch(name):
                        raise Bad(f"bad metric name {name!r}")
                    if parts[1] == "HELP":
                        if name in helps:
                            raise Bad(f"second HELP for {name}")
                        if len(parts) < 4 or not parts[3].strip():
                            raise Bad(f"empty HELP for {name}")
                        helps[name] = parts[3]
                    else:
                        if name in types:
                            raise Bad(f"second TYPE for {name}")
                        if name not in helps:
                            raise Bad(f"TYPE before HELP for {name}")
                        if len(parts) != 4 or parts[3] not in TYPES:
                            raise Bad(f"bad TYPE line for {name}")
                        if any(family_of(s[0], {name: parts[3]}) for s in samples):
                            raise Bad(f"TYPE for {name} after its samples")
                        if parts[3] == "counter" and not name.endswith("_total"):
                            raise Bad(f"counter {name} is not named *_total")
                        types[name] = parts[3]
                        if current:
                            done.add(current)
                        current = name
                continue
            m = NAME.match(line)
            if not m:
                raise Bad("bad metric name")
            name, i = m.group(0), m.end()
            labels = {}
            if i < len(line) and line[i] == "{":
                try:
                    labels, i = parse_labels(line, i)
                except IndexError:
                    raise Bad("labels not closed")
            rest = line[i:]
            if not rest.startswith(" "):
                raise Bad("no space before the value")
            fields = rest[1:].split(" ")
            if len(fields) not in (1, 2):
                raise Bad("trailing text after the value")
            value = number(fields[0], "value")
            if len(fields) == 2 and not re.fullmatch(r"-?\d+", fields[1]):
                raise Bad("bad timestamp")
            fam = family_of(name, types)
            if not fam:
                raise Bad(f"sample of {name} without HELP and TYPE before it")
            if fam in done:
                raise Bad(f"samples of {fam} are not together")
            if fam != current:
                raise Bad(f"sample of {fam} under family {current}")
            key = (name, tuple(sorted(labels.items())))
            if key in seen:
                raise Bad(f"series {name}{labels} twice")
            seen.add(key)
            t = types[fam]
            if t == "counter" and (math.isnan(value) or value < 0):
                raise Bad(f"counter {name} = {value}")
            if t == "histogram" and name == fam:
                raise Bad(f"histogram {fam} sample without a suffix")
            if name.endswith("_bucket") and t == "histogram" and "le" not in labels:
                raise Bad(f"{name} without le")
            samples.append((name, labels, value))
        except Bad as e:
            raise Bad(f"line {n}: {e}: {line[:160]}")
    for name in helps:
        if name not in types:
            raise Bad(f"HELP without TYPE for {name}")
    check_histograms(types, samples)
    return types, samples, helps


def check_histograms(types, samples):
    for fam, t in types.items():
        if t != "histogram":
            continue
        series = {}
        for name, labels, value in samples:
            if family_of(name, {fam: t}) != fam:
                continue
            key = tuple(sorted((k, v) for k, v in labels.items() if k != "le"))
            s = series.setdefault(key, {"buckets": [], "sum": None, "count": None})
            if name == fam + "_bucket":
                s["buckets"].append((number(labels["le"], "le"), value))
            elif name == fam + "_sum":
                s["sum"] = value
            else:
                s["count"] = value
        for key, s in series.items():
            b = s["buckets"]
            where = f"histogram {fam}{dict(key)}"
            if not b or not math.isinf(b[-1][0]):
                raise Bad(f"{where}: no +Inf bucket last")
            for (le0, c0), (le1, c1) in zip(b, b[1:]):
                if not le1 > le0:
                    raise Bad(f"{where}: le {le1} after {le0}")
                if c1 < c0:
                    raise Bad(f"{where}: bucket le={le1} has {c1} < {c0}: not cumulative")
            if s["count"] is None or s["sum"] is None:
                raise Bad(f"{where}: no _count or _sum")
            if s["count"] != b[-1][1]:
                raise Bad(f"{where}: _count {s['count']} != +Inf bucket {b[-1][1]}")


def selector(text):
    m = NAME.match(text)
    if not m:
        raise SystemExit(f"bad selector {text!r}")
    labels = {}
    if m.end() < len(text):
        labels, end = parse_labels(text, m.end())
        if end != len(text):
            raise SystemExit(f"bad selector {text!r}")
    return m.group(0), labels


def main():
    if len(sys.argv) < 3:
        raise SystemExit(__doc__)
    cmd, path = sys.argv[1], sys.argv[2]
    text = open(path, encoding="utf-8").read()
    try:
        types, samples, _ = parse(text)
    except Bad as e:
        print(f"{path}: {e}", file=sys.stderr)
        sys.exit(1)
    if cmd == "check":
        return
    if cmd == "families":
        print("\n".join(types))
        return
    if cmd == "series":
        name, label = sys.argv[3], sys.argv[4]
        print("\n".join(l[label] for n, l, v in samples if n == name and label in l))
        return
    if cmd == "get":
        name, want = selector(sys.argv[3])
        args = sys.argv[4:]
        match = [v for n, l, v in samples
                 if n == name and all(l.get(k) == x for k, x in want.items())]
        if not match and "--default" in args:
            print(args[args.index("--default") + 1])
            return
        if "--sum" in args:
            total = sum(match)
        elif len(match) != 1:
            print(f"{path}: {len(match)} samples match {sys.argv[3]}", file=sys.stderr)
            sys.exit(1)
        else:
            total = match[0]
        print(int(total) if math.isfinite(total) and total == int(total) else total)
        return
    raise SystemExit(__doc__)


if __name__ == "__main__":
    main()
