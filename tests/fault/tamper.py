#!/usr/bin/env python3
"""tamper.py - a TCP proxy that damages a Kx link on command (tests only).

A Kx link is mutual TLS 1.3, so a proxy in the middle sees and can damage
only ciphertext: a flipped bit fails the record's AEAD tag, a dropped or
repeated chunk breaks the record sequence, a cut stream ends the session.
That is the realistic fault (line noise, a broken middlebox, an attacker on
the path): the nodes must notice, reconnect, reconcile and never store or
supply a wrong key. Python 3 standard library only.

SERVE
    tamper.py serve --target HOST:PORT --control SOCK --log FILE
                    [--listen 127.0.0.1:0] [--port-file FILE] [--seed N]

  Listens on --listen (an address in 127.0.0.0/8; port 0 = any free port,
  written to --port-file and printed as "port N" on stdout once listening),
  and forwards every accepted connection to --target. Both addresses must be
  IPv4 literals in 127.0.0.0/8 (or "localhost"); the proxy refuses to start
  otherwise and checks the peer address of every outgoing connection again,
  so it only ever connects to the loopback network.

  Directions: "c2s" is from the side that connected to the proxy (the
  dialling node, the Kx leader) to the target; "s2c" is the way back.

CONTROL CHANNEL
  A Unix stream socket at --control (mode 0600). A client connects, sends one
  command line, reads one reply line ("ok ..." or "error ..."), and the
  proxy closes the connection. `tamper.py ctl SOCK COMMAND...` does exactly
  that and prints the reply (exit 1 on "error"). Commands:

    flip DIR N [SKIP|header|body|tag]
                     flip one bit (chosen by the seeded RNG) in each of N
                     consecutive bytes in DIR: after letting SKIP bytes pass
                     (default 0), or placed by the TLS record framing (the
                     proxy follows the 5-byte record headers, never the
                     content) in the next record that starts: "header" its
                     content-type byte onwards, "body" the middle of its
                     ciphertext, "tag" its last N bytes (the AEAD tag)
    drop DIR [K]     discard the next K chunks read in DIR (default 1)
    dup DIR [K]      forward each of the next K chunks in DIR twice
    delay DIR MS     from now on, hold every chunk in DIR for MS ms before
                     forwarding it (order kept; 0 or "pass" ends it)
    truncate DIR [N] forward N more bytes in DIR (default 0), then cut that
                     direction: shutdown(SHUT_WR) towards its receiver, and
                     every later byte in DIR is read and discarded; the other
                     direction keeps flowing
    reset            close every live connection at once with TCP RST
                     (SO_LINGER 0) on both sides
    next COMMAND...  run COMMAND (flip, drop, dup, delay, truncate) when the
                     next connection is accepted, before it forwards a byte:
                     "next flip c2s 1 20" then "reset" damages the TLS
                     handshake (the ClientHello) of the reconnection
    pass             cancel every pending fault and delay: plain forwarding
    stats            JSON: connections accepted and live, chunks queued
                     (held by a delay), bytes forwarded and discarded per
                     direction, faults applied, faults still pending

  A fault armed with flip/drop/dup/truncate applies to the next bytes or
  chunks in that direction on whichever connection carries them first (a
  new connection if the old one is gone). A "chunk" is what one recv() of up
  to 64 KiB returned. Every command and every fault actually applied is
  logged.

LOG
  --log FILE gets one line per event, appended and flushed at once:
  "<unix time> <seconds since start> <event>", e.g.
    1718000000.123 12.345 conn 3 c2s: flipped bit 5 of byte 81234 (stream offset; ...)
  Key material never appears: the proxy sees only TLS ciphertext and logs
  offsets and counts, never payload.

ON A KX LINK
  The link's leader (the node whose name sorts first) dials the follower's
  Kx listener (docs/protocol.md, section 5), so the proxy goes on the
  leader's path: start it with --target set to the follower's listen.kx,
  point the leader's links[].addr for that peer (its node.json) at the
  proxy, and restart the leader (`qkm net restart --dir DIR A`).
  tests/system/test_tamper.sh does exactly that. No node configuration
  changes otherwise; certificates name entities, not addresses.

EXAMPLE
  tamper.py serve --target 127.0.0.1:4000 --control /tmp/t.sock \\
      --log /tmp/t.log --port-file /tmp/t.port &
  tamper.py ctl /tmp/t.sock flip c2s 1 body
  tamper.py ctl /tmp/t.sock stats
"""
import argparse
import ipaddress
import json
import os
import random
import socket
import struct
import sys
import threading
import time
from collections import deque

DIRS = ("c2s", "s2c")
CHUNK = 65536


def loopback_addr(s):
    """(host, port) from "HOST:PORT" where HOST is in 127.0.0.0/8."""
    host, sep, port = s.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"{s!r}: want HOST:PORT")
    if host == "localhost":
        host = "127.0.0.1"
    try:
        ip = ipaddress.IPv4Address(host)
    except ValueError:
        raise ValueError(f"{s!r}: host must be an IPv4 literal in 127.0.0.0/8") from None
    if ip not in ipaddress.IPv4Network("127.0.0.0/8"):
        raise ValueError(f"{s!r}: refusing a non-loopback address (only 127.0.0.0/8)")
    return str(ip), int(port)


class Log:
    def __init__(self, path):
        self.f = open(path, "a")
        self.t0 = time.monotonic()
        self.lock = threading.Lock()

    def __call__(self, msg):
        with self.lock:
            # Truncated to the millisecond, as the nodes' log time stamps are.
            now = int(time.time() * 1000) / 1000
            self.f.write(f"{now:.3f} {time.monotonic() - self.t0:.3f} {msg}\n")
            self.f.flush()


class Records:
    """Follows the TLS record framing of one direction of one connection
    (5-byte header: type, version, 16-bit length; then the body) to say
    where records start. It reads lengths only; bodies are ciphertext."""

    def __init__(self):
        self.hdr = b""
        self.hstart = 0
        self.left = 0

    def feed(self, data, off):
        """[(stream offset of the header, body length)] for each record
        header completed in data, which starts at stream offset off."""
        out = []
        i, n = 0, len(data)
        while i < n:
            if self.left:
                take = min(self.left, n - i)
                self.left -= take
                i += take
                continue
            if not self.hdr:
                self.hstart = off + i
            take = min(5 - len(self.hdr), n - i)
            self.hdr += data[i:i + take]
            i += take
            if len(self.hdr) == 5:
                body = self.hdr[3] << 8 | self.hdr[4]
                out.append((self.hstart, body))
                self.hdr, self.left = b"", body
        return out


FLIP_WHERE = ("header", "body", "tag")


class Faults:
    """Faults armed per direction; consumed by whichever connection forwards next."""

    def __init__(self, seed):
        self.lock = threading.Lock()
        self.rnd = random.Random(seed)
        self.flip = {d: None for d in DIRS}    # armed flip: see arm_flip
        self.drop = {d: 0 for d in DIRS}       # chunks left to drop
        self.dup = {d: 0 for d in DIRS}        # chunks left to duplicate
        self.trunc = {d: None for d in DIRS}   # bytes to pass before the cut, or None
        self.delay = {d: 0.0 for d in DIRS}    # seconds
        self.applied = {"flip": 0, "drop": 0, "dup": 0, "truncate": 0, "reset": 0}

    def arm_flip(self, d, n, where):
        """where: an int (bytes to let pass first) or one of FLIP_WHERE."""
        self.flip[d] = {"n": n, "where": where, "conn": None, "targets": None}

    def pending(self):
        return {d: {"flip": self.flip[d] and {k: self.flip[d][k] for k in ("n", "where")},
                    "drop": self.drop[d], "dup": self.dup[d],
                    "truncate": self.trunc[d], "delay_ms": int(self.delay[d] * 1000)}
                for d in DIRS}

    def clear(self):
        for d in DIRS:
            self.flip[d] = None
            self.drop[d] = self.dup[d] = 0
            self.trunc[d] = None
            self.delay[d] = 0.0

    def place_flip(self, d, off, conn, records, log):
        """Chooses the stream offsets an armed flip will hit, on this
        connection, once it can: at once for a byte count, at the first
        record header seen for header/body/tag."""
        f = self.flip[d]
        if f["targets"] is not None and f["conn"] == conn:
            return
        f["conn"], f["targets"] = conn, None
        w, n = f["where"], f["n"]
        if isinstance(w, int):
            f["targets"] = list(range(off + w, off + w + n))
            return
        for h, body in records:
            if w == "header" and h < off:
                continue  # its first byte is already gone
            if w == "header":
                at = h
            elif w == "body":
                at = h + 5 + body // 2
            else:  # tag: the record's last bytes (TLS 1.3 AEAD tag)
                at = h + 5 + max(body - n, 0)
            f["targets"] = list(range(at, at + n))
            log(f"conn {conn} {d}: flip placed in the {w} of the {body}-byte record "
                f"at stream offset {h}: bytes {at}..{at + n - 1}")
            return

    def process(self, d, data, off, conn, records, log):
        """Applies the armed faults to one chunk read in direction d at stream
        offset off (records: the record headers it completes). Returns
        (pieces to forward, cut after them?, delay)."""
        with self.lock:
            delay = self.delay[d]
            if self.drop[d]:
                self.drop[d] -= 1
                self.applied["drop"] += 1
                log(f"conn {conn} {d}: dropped chunk of {len(data)} bytes at offset {off}")
                return [], False, delay
            if self.flip[d]:
                self.place_flip(d, off, conn, records, log)
                f = self.flip[d]
                hit = [t for t in f["targets"] or [] if off <= t < off + len(data)]
                if hit:
                    buf = bytearray(data)
                    for t in hit:
                        bit = self.rnd.randrange(8)
                        buf[t - off] ^= 1 << bit
                        log(f"conn {conn} {d}: flipped bit {bit} of byte {t} (stream offset; "
                            f"byte {t - off} of a {len(buf)}-byte chunk)")
                        f["targets"].remove(t)
                    self.applied["flip"] += len(hit)
                    data = bytes(buf)
                    if not f["targets"]:
                        self.flip[d] = None
            cut = False
            if self.trunc[d] is not None:
                keep = self.trunc[d]
                if keep < len(data):
                    log(f"conn {conn} {d}: truncated: cut after byte {off + keep}, "
                        f"{len(data) - keep} bytes of this chunk discarded")
                    data = data[:keep]
                    self.trunc[d] = None
                    self.applied["truncate"] += 1
                    cut = True
                else:
                    self.trunc[d] = keep - len(data)
            pieces = [data] if data else []
            if self.dup[d] and data:
                self.dup[d] -= 1
                self.applied["dup"] += 1
                pieces.append(data)
                log(f"conn {conn} {d}: duplicated chunk of {len(data)} bytes at offset {off}")
            return pieces, cut, delay


class Conn:
    """One proxied connection: a reader and a writer thread per direction."""

    def __init__(self, proxy, cid, client, server):
        self.p, self.id = proxy, cid
        self.sock = {"c2s": (client, server), "s2c": (server, client)}  # (from, to)
        self.client, self.server = client, server
        self.lock = threading.Lock()
        self.closed = False
        self.ended = set()   # directions finished (EOF forwarded or cut)
        self.queues = {d: deque() for d in DIRS}
        self.cv = {d: threading.Condition() for d in DIRS}

    def start(self):
        for d in DIRS:
            threading.Thread(target=self.reader, args=(d,), daemon=True).start()
            threading.Thread(target=self.writer, args=(d,), daemon=True).start()

    def reader(self, d):
        src = self.sock[d][0]
        off = 0
        cut = False
        records = Records()
        while True:
            try:
                data = src.recv(CHUNK)
            except OSError as e:
                if not self.closed:
                    self.p.log(f"conn {self.id} {d}: read error: {e}; resetting the other side")
                    self.reset()
                return
            if self.closed:
                return
            if not data:
                if not cut:
                    self.p.log(f"conn {self.id} {d}: EOF after {off} bytes; passing it on")
                    self.put(d, ("eof", None, 0.0))
                return
            if cut:
                self.p.add_bytes(d, 0, len(data))
                off += len(data)
                continue
            recs = records.feed(data, off)
            pieces, cut, delay = self.p.faults.process(d, data, off, self.id, recs, self.p.log)
            off += len(data)
            self.p.add_bytes(d, len(data), 0)
            release = time.monotonic() + delay
            for piece in pieces:
                self.put(d, ("data", piece, release))
            if cut:
                self.put(d, ("eof", None, release))

    def put(self, d, item):
        with self.cv[d]:
            self.queues[d].append(item)
            self.cv[d].notify()

    def writer(self, d):
        dst = self.sock[d][1]
        while True:
            with self.cv[d]:
                while not self.queues[d] and not self.closed:
                    self.cv[d].wait(0.5)
                if self.closed:
                    return
                kind, data, release = self.queues[d][0]
                wait = release - time.monotonic()
                if wait > 0:
                    self.cv[d].wait(min(wait, 0.5))
                    continue
                self.queues[d].popleft()
            try:
                if kind == "data":
                    dst.sendall(data)
                else:
                    dst.shutdown(socket.SHUT_WR)
                    self.end(d)
                    return
            except OSError as e:
                if not self.closed:
                    self.p.log(f"conn {self.id} {d}: write error: {e}; resetting the other side")
                    self.reset()
                return

    def end(self, d):
        with self.lock:
            self.ended.add(d)
            done = len(self.ended) == 2
        if done:
            self.close()

    def close(self, rst=False):
        with self.lock:
            if self.closed:
                return
            self.closed = True
        for s in (self.client, self.server):
            try:
                if rst:  # close() then sends RST instead of FIN
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                # Wakes a reader blocked in recv() (close() alone does not)
                # without sending anything.
                s.shutdown(socket.SHUT_RD)
            except OSError:
                pass
            try:
                s.close()
            except OSError:
                pass
        for d in DIRS:
            with self.cv[d]:
                self.cv[d].notify_all()
        self.p.gone(self)
        self.p.log(f"conn {self.id}: {'reset (RST to both sides)' if rst else 'closed'}")

    def reset(self):
        self.close(rst=True)


class Proxy:
    def __init__(self, a):
        self.target = loopback_addr(a.target)
        self.listen_addr = loopback_addr(a.listen)
        self.log = Log(a.log)
        self.faults = Faults(a.seed)
        self.lock = threading.Lock()
        self.conns = {}
        self.accepted = 0
        self.bytes = {d: 0 for d in DIRS}
        self.discarded = {d: 0 for d in DIRS}
        self.control_path = a.control
        self.port_file = a.port_file
        self.on_next = []  # commands to run at the next accept

    def add_bytes(self, d, n, discarded):
        with self.lock:
            self.bytes[d] += n
            self.discarded[d] += discarded

    def gone(self, c):
        with self.lock:
            self.conns.pop(c.id, None)

    def dial(self):
        s = socket.create_connection(self.target, timeout=5)
        peer = s.getpeername()[0]
        if ipaddress.IPv4Address(peer) not in ipaddress.IPv4Network("127.0.0.0/8"):
            s.close()  # cannot happen with a literal target; checked anyway
            raise OSError(f"connected to {peer}, not loopback")
        s.settimeout(None)
        return s

    def accept_loop(self, ls):
        while True:
            client, addr = ls.accept()
            try:
                server = self.dial()
            except OSError as e:
                self.log(f"accept from {addr[0]}:{addr[1]}: cannot reach target "
                         f"{self.target[0]}:{self.target[1]}: {e}; closing")
                client.close()
                continue
            for s in (client, server):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self.lock:
                self.accepted += 1
                cid = self.accepted
                c = Conn(self, cid, client, server)
                self.conns[cid] = c
                todo, self.on_next = self.on_next, []
            self.log(f"conn {cid}: accepted from {addr[0]}:{addr[1]}, forwarding to "
                     f"{self.target[0]}:{self.target[1]}")
            for cmd in todo:
                self.log(f"conn {cid}: armed at accept: {self.command(cmd)}")
            c.start()

    def command(self, line):
        w = line.split()
        if not w:
            return "error empty command"
        cmd, args = w[0], w[1:]
        f = self.faults

        def direction():
            if not args or args[0] not in DIRS:
                raise ValueError("want a direction: c2s or s2c")
            return args[0]

        def number(i, default=None, lo=0):
            if len(args) <= i:
                if default is None:
                    raise ValueError("missing number")
                return default
            v = int(args[i])
            if v < lo:
                raise ValueError(f"number must be >= {lo}")
            return v

        try:
            if cmd == "next":
                if not args or args[0] not in ("flip", "drop", "dup", "delay", "truncate"):
                    raise ValueError("want flip, drop, dup, delay or truncate after next")
                with self.lock:
                    self.on_next.append(" ".join(args))
            elif cmd == "flip":
                d, n = direction(), number(1, lo=1)
                where = args[2] if len(args) > 2 and args[2] in FLIP_WHERE else number(2, 0)
                with f.lock:
                    f.arm_flip(d, n, where)
            elif cmd == "drop":
                d, n = direction(), number(1, 1, lo=1)
                with f.lock:
                    f.drop[d] += n
            elif cmd == "dup":
                d, n = direction(), number(1, 1, lo=1)
                with f.lock:
                    f.dup[d] += n
            elif cmd == "delay":
                d, ms = direction(), number(1)
                with f.lock:
                    f.delay[d] = ms / 1000.0
            elif cmd == "truncate":
                d, n = direction(), number(1, 0)
                with f.lock:
                    f.trunc[d] = n
            elif cmd == "reset":
                with self.lock:
                    live = list(self.conns.values())
                with f.lock:
                    f.applied["reset"] += 1
                self.log(f"command: reset ({len(live)} live connection(s))")
                for c in live:
                    c.reset()
                return f"ok reset {len(live)} connection(s)"
            elif cmd == "pass":
                with f.lock:
                    f.clear()
                with self.lock:
                    self.on_next = []
            elif cmd == "stats":
                with self.lock, f.lock:
                    st = {"accepted": self.accepted, "live": len(self.conns),
                          "queued": sum(len(c.queues[d]) for c in self.conns.values()
                                        for d in DIRS),
                          "bytes": dict(self.bytes), "discarded": dict(self.discarded),
                          "applied": dict(f.applied), "pending": f.pending()}
                return "ok " + json.dumps(st)
            else:
                return f"error unknown command {cmd!r}"
        except ValueError as e:
            return f"error {cmd}: {e}"
        self.log(f"command: {line.strip()}")
        return "ok " + line.strip()

    def control_loop(self, cs):
        while True:
            c, _ = cs.accept()
            try:
                c.settimeout(5)
                buf = b""
                while b"\n" not in buf and len(buf) < 4096:
                    d = c.recv(4096)
                    if not d:
                        break
                    buf += d
                reply = self.command(buf.decode("utf-8", "replace"))
                c.sendall(reply.encode() + b"\n")
            except OSError:
                pass
            finally:
                c.close()

    def serve(self):
        ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind(self.listen_addr)
        ls.listen(64)
        port = ls.getsockname()[1]
        try:
            os.unlink(self.control_path)
        except FileNotFoundError:
            pass
        cs = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)
        try:
            cs.bind(self.control_path)
        finally:
            os.umask(old)
        cs.listen(16)
        self.log(f"listening on {self.listen_addr[0]}:{port}, forwarding to "
                 f"{self.target[0]}:{self.target[1]}, control {self.control_path}")
        threading.Thread(target=self.accept_loop, args=(ls,), daemon=True).start()
        if self.port_file:
            tmp = self.port_file + ".tmp"
            with open(tmp, "w") as pf:
                pf.write(f"{port}\n")
            os.replace(tmp, self.port_file)
        print(f"port {port}", flush=True)
        self.control_loop(cs)


def ctl(path, words):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(path)
    s.sendall((" ".join(words) + "\n").encode())
    buf = b""
    while not buf.endswith(b"\n"):
        d = s.recv(65536)
        if not d:
            break
        buf += d
    s.close()
    reply = buf.decode().strip()
    print(reply)
    return 0 if reply.startswith("ok") else 1


def main():
    p = argparse.ArgumentParser(description="TCP tamper proxy for Kx links (tests only)")
    sub = p.add_subparsers(dest="mode", required=True)
    sv = sub.add_parser("serve")
    sv.add_argument("--target", required=True, help="HOST:PORT in 127.0.0.0/8")
    sv.add_argument("--listen", default="127.0.0.1:0", help="HOST:PORT in 127.0.0.0/8")
    sv.add_argument("--control", required=True, help="Unix socket for commands")
    sv.add_argument("--log", required=True)
    sv.add_argument("--port-file")
    sv.add_argument("--seed", type=int, default=1)
    c = sub.add_parser("ctl")
    c.add_argument("socket")
    c.add_argument("words", nargs="+")
    a = p.parse_args()
    if a.mode == "ctl":
        return ctl(a.socket, a.words)
    try:
        proxy = Proxy(a)
    except ValueError as e:
        print(f"tamper.py: {e}", file=sys.stderr)
        return 2
    proxy.serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
