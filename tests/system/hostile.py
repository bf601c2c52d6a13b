#!/usr/bin/env python3
"""hostile.py - hostile and greedy clients against a node's ETSI 014 server,
while a well-behaved application keeps asking for keys (issue: resource
limits; R-SUP-1). Prints one "ok - ..." line per check and exits 1 on the
first failure.

  hostile.py --net DIR/network.json --node A --as sae-alice --slave sae-bob
             [--held 1000] [--slow 50] [--half 50]

1. --held mutual-TLS connections complete their handshake and stay open,
   idle; the node must hold them all (each still answers a request at the
   end).
2. --slow "slowloris" connections send a request head one byte a second;
   --half TCP connections never start TLS.
3. Meanwhile the application (new connection per request, like curl) gets
   20 enc_keys answers, every one 200 with a key.
4. A client without a certificate never gets an HTTP answer: the TLS
   handshake fails.
Only loopback is used. No timing threshold: a request "gets an answer" if
it does within the client's generous timeout (30 s)."""
import argparse
import json
import resource
import socket
import ssl
import sys
import threading
import time

TIMEOUT = 30


def fail(msg):
    print("FAIL: " + msg, file=sys.stderr)
    sys.exit(1)


def ctx_for(net, sae):
    ctx = ssl.create_default_context(cafile=net["ca"])
    ctx.check_hostname = False
    if sae:
        s = net["saes"][sae]
        ctx.load_cert_chain(s["cert"], s["key"])
    return ctx


def connect(addr, ctx):
    host, port = addr.rsplit(":", 1)
    raw = socket.create_connection((host, int(port)), timeout=TIMEOUT)
    return ctx.wrap_socket(raw, server_hostname=host) if ctx else raw


def request(tls, path):
    tls.sendall(("GET %s HTTP/1.1\r\nHost: qkm\r\n\r\n" % path).encode())
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = tls.recv(65536)
        if not chunk:
            raise ConnectionError("closed before a response head")
        buf += chunk
    head, _, body = buf.partition(b"\r\n\r\n")
    code = int(head.split(b" ")[1])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(body) < length:
        chunk = tls.recv(65536)
        if not chunk:
            raise ConnectionError("closed inside a response body")
        body += chunk
    return code, json.loads(body[:length] or b"null")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--net", required=True)
    ap.add_argument("--node", required=True)
    ap.add_argument("--as", dest="sae", required=True)
    ap.add_argument("--slave", required=True)
    ap.add_argument("--held", type=int, default=1000)
    ap.add_argument("--slow", type=int, default=50)
    ap.add_argument("--half", type=int, default=50)
    a = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = a.held + a.slow + a.half + 64
    if soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(need, hard), hard))
    net = json.load(open(a.net))
    addr = net["nodes"][a.node]["etsi014"].replace("https://", "")
    ctx = ctx_for(net, a.sae)
    enc = "/api/v1/keys/%s/enc_keys" % a.slave

    held = []
    for i in range(a.held):
        try:
            held.append(connect(addr, ctx))
        except OSError as e:
            fail("held connection %d of %d: %s" % (i + 1, a.held, e))
    print("ok - %d mutual-TLS connections open and idle" % len(held))

    half = [connect(addr, None) for _ in range(a.half)]
    slow = [connect(addr, ctx) for _ in range(a.slow)]
    stop = threading.Event()
    head = ("GET /api/v1/keys/%s/status HTTP/1.1\r\nHost: qkm\r\nX-Slow: " % a.slave).encode()

    def drip():
        i = 0
        while not stop.is_set():
            for s in slow:
                try:
                    s.send(head[i:i + 1] if i < len(head) else b"a")
                except OSError:
                    pass
            i += 1
            stop.wait(1)

    t = threading.Thread(target=drip, daemon=True)
    t.start()
    print("ok - %d slowloris and %d never-TLS connections started" % (a.slow, a.half))

    for i in range(20):
        try:
            s = connect(addr, ctx)
            code, body = request(s, enc)
            s.close()
        except OSError as e:
            fail("application request %d while the node is under siege: %s" % (i + 1, e))
        if code != 200 or not body.get("keys"):
            fail("application request %d: HTTP %d %s" % (i + 1, code, body))
    print("ok - the application got 20 keys (200) while the node held every other connection")

    try:
        s = connect(addr, ctx_for(net, None))
        code, body = request(s, enc)
        fail("a client without a certificate got HTTP %d" % code)
    except (ssl.SSLError, ConnectionError, OSError):
        pass
    print("ok - a client without a certificate gets no HTTP answer (TLS handshake refused)")

    stop.set()
    t.join()
    answered = 0
    for s in held[:: max(1, len(held) // 50)]:
        try:
            code, _ = request(s, "/api/v1/keys/%s/status" % a.slave)
            answered += code == 200
        except OSError as e:
            fail("a held connection was dropped: %s" % e)
    print("ok - held connections still served after the siege (%d of %d sampled: 200)"
          % (answered, len(held[:: max(1, len(held) // 50)])))
    for s in held + slow + half:
        s.close()


if __name__ == "__main__":
    main()
