#!/usr/bin/env python3
"""etsi014_client.py - a small ETSI GS QKD 014 v1.1.1 client for qkm's system
tests (the Ak interface, R-SUP-1, R-SUP-7). Written from the standard:

  GET  {base}/api/v1/keys/{slave_SAE_ID}/status             (clause 5.1)
  GET  {base}/api/v1/keys/{slave_SAE_ID}/enc_keys?number=&size=   (5.2)
  POST {base}/api/v1/keys/{slave_SAE_ID}/enc_keys  Key request     (5.2)
  GET  {base}/api/v1/keys/{master_SAE_ID}/dec_keys?key_ID=  (5.3)
  POST {base}/api/v1/keys/{master_SAE_ID}/dec_keys Key IDs  (5.3)

HTTPS with mutual authentication: the client certificate is the SAE's
identity; the server certificate is verified against the network's CA, with
127.0.0.1 as the expected name. Only python3's standard library is used.

Library: every call returns (http_code, body) where body is the parsed JSON,
or the text when it is not JSON. A failure before any HTTP response (TLS
refusal, connection refused/reset, timeout) raises NoResponse with .kind
"tls", "conn" or "timeout".

CLI (for bash): prints ONE JSON line {"code": N, "body": ...} (code 0 and
"error"/"detail" when there was no HTTP response). Key bytes never reach
stdout unless --show-keys: each key object in a Key container has "key"
replaced by "key_sha256" (hex SHA-256 of the decoded bytes), "key_bytes" (decoded
length) and "key_b64_ok" (strict, canonical RFC 4648 base64), and
"key_ID_uuid_ok" is added (the key_ID is a canonical RFC 4122 UUID string).
Exit status 0 whenever the request was made, 2 on usage errors.

  etsi014_client.py --net DIR/network.json --as SAE [--at NODE] [--cert F --key F]
                    [--timeout S] [--show-keys] COMMAND ARGS
  COMMAND: status SLAVE
           enc-get SLAVE [--number N] [--size S] [--query RAW]
           enc-post SLAVE [--body RAW_TEXT]            (default body: {})
           dec-get MASTER KEY_ID | dec-get MASTER --query RAW
           dec-post MASTER KEY_ID... | dec-post MASTER --body RAW_TEXT
"""
import argparse
import base64
import binascii
import functools
import hashlib
import http.client
import json
import socket
import ssl
import sys
import threading
import urllib.parse
import uuid

TIMEOUT = 10.0


class NoResponse(Exception):
    """No HTTP response at all: kind is "tls", "conn" or "timeout"; sent is
    False when the failure came before the request left (TCP connect or TLS
    handshake), so the server cannot have acted on it."""

    def __init__(self, kind, detail, sent=True):
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail
        self.sent = sent


def _no_response(e, sent):
    if isinstance(e, ssl.SSLError):
        return NoResponse("tls", str(e), sent)
    if isinstance(e, (socket.timeout, TimeoutError)):
        return NoResponse("timeout", str(e), sent)
    return NoResponse("conn", f"{type(e).__name__}: {e}", sent)


@functools.lru_cache(maxsize=None)
def _context(cert, key, ca):
    """The TLS context of one identity, made once per process: loading the
    CA and the key pair for every request was most of a verify's minute in
    the crash tests (tens of thousands of dec_keys). Each request still
    gets its own connection and handshake. Nothing changes a context after."""
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca)
    ctx.check_hostname = True
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2  # the standard: TLS 1.2 or later
    if cert:
        ctx.load_cert_chain(cert, key)
    return ctx


_kept = threading.local()  # keep=True: this thread's open connections


def request(base, cert, key, ca, method, path, body=None, timeout=TIMEOUT, keep=False):
    """One HTTPS request, on a fresh connection unless keep (then on this
    thread's keep-alive connection to base as this identity, opened when
    there is none; any failure closes it, so the next request opens a new
    one). body: None, str or bytes (sent as is, Content-Type
    application/json). Returns (code, parsed)."""
    u = urllib.parse.urlsplit(base)
    if u.scheme != "https":
        raise ValueError(f"base must be https: {base}")
    host, port = u.hostname, u.port or 443
    slot = (host, port, cert, key, ca)
    kept = getattr(_kept, "conns", None)
    if kept is None:
        kept = _kept.conns = {}
    conn = kept.pop(slot, None) if keep else None
    headers = {"Accept": "application/json"}
    if body is not None:
        if isinstance(body, str):
            body = body.encode()
        headers["Content-Type"] = "application/json"
    done = False
    try:
        if conn is None:
            conn = http.client.HTTPSConnection(host, port, context=_context(cert, key, ca),
                                               timeout=timeout)
            try:
                conn.connect()  # TCP + TLS handshake: nothing of the request has left yet
            except (OSError, http.client.HTTPException) as e:  # ssl.SSLError is an OSError
                raise _no_response(e, False) from None
        try:
            conn.request(method, u.path.rstrip("/") + path, body=body, headers=headers)
            resp = conn.getresponse()
            raw = resp.read()
            code = resp.status
        except (OSError, http.client.HTTPException) as e:
            # includes TLS alerts about our certificate (TLS 1.3: seen on first read)
            raise _no_response(e, True) from None
        done = keep and not resp.will_close
    finally:
        if done:
            kept[slot] = conn
        elif conn is not None:
            conn.close()
    text = raw.decode("utf-8", "replace")
    try:
        return code, json.loads(text)
    except ValueError:
        return code, text


def _q(s):
    return urllib.parse.quote(s, safe="")


def status(base, cert, key, ca, slave, timeout=TIMEOUT):
    return request(base, cert, key, ca, "GET", f"/api/v1/keys/{_q(slave)}/status", timeout=timeout)


def enc_keys_get(base, cert, key, ca, slave, number=None, size=None, query=None, timeout=TIMEOUT):
    if query is None:
        params = [(k, str(v)) for k, v in (("number", number), ("size", size)) if v is not None]
        query = urllib.parse.urlencode(params)
    path = f"/api/v1/keys/{_q(slave)}/enc_keys" + (f"?{query}" if query else "")
    return request(base, cert, key, ca, "GET", path, timeout=timeout)


def enc_keys_post(base, cert, key, ca, slave, body=None, timeout=TIMEOUT):
    """body: a dict (Key request, serialised here) or raw text sent as is."""
    if body is None:
        body = {}
    if not isinstance(body, (str, bytes)):
        body = json.dumps(body)
    return request(base, cert, key, ca, "POST", f"/api/v1/keys/{_q(slave)}/enc_keys", body, timeout)


def dec_keys_get(base, cert, key, ca, master, key_id=None, query=None, timeout=TIMEOUT,
                 keep=False):
    if query is None:
        query = urllib.parse.urlencode([("key_ID", key_id)])
    path = f"/api/v1/keys/{_q(master)}/dec_keys" + (f"?{query}" if query else "")
    return request(base, cert, key, ca, "GET", path, timeout=timeout, keep=keep)


def dec_keys_post(base, cert, key, ca, master, key_ids=None, body=None, timeout=TIMEOUT):
    """key_ids: list of key_ID strings (Key IDs document built here), or body: raw text."""
    if body is None:
        body = json.dumps({"key_IDs": [{"key_ID": k} for k in key_ids]})
    return request(base, cert, key, ca, "POST", f"/api/v1/keys/{_q(master)}/dec_keys", body, timeout)


# ---- helpers for checking Key containers -----------------------------------

def b64_strict(s):
    """Decoded bytes of a canonical RFC 4648 base64 string, or None."""
    if not isinstance(s, str):
        return None
    try:
        b = base64.b64decode(s, validate=True)
    except (binascii.Error, ValueError):
        return None
    return b if base64.b64encode(b).decode() == s else None


def uuid_ok(s):
    if not isinstance(s, str):
        return False
    try:
        return str(uuid.UUID(s)) == s.lower() and len(s) == 36
    except ValueError:
        return False


def fingerprint(b):
    return hashlib.sha256(b).hexdigest()


def redact(body):
    """A copy of a response body with key bytes replaced by fingerprints."""
    if not (isinstance(body, dict) and isinstance(body.get("keys"), list)):
        return body
    out = dict(body)
    keys = []
    for k in body["keys"]:
        if not isinstance(k, dict):
            keys.append(k)
            continue
        k = dict(k)
        if "key" in k:
            raw = b64_strict(k.pop("key"))
            k["key_b64_ok"] = raw is not None
            k["key_bytes"] = len(raw) if raw is not None else -1
            k["key_sha256"] = fingerprint(raw) if raw is not None else None
        k["key_ID_uuid_ok"] = uuid_ok(k.get("key_ID"))
        keys.append(k)
    out["keys"] = keys
    return out


# ---- network.json ------------------------------------------------------------

def load_net(path):
    with open(path) as f:
        return json.load(f)


def endpoint(net, sae, node=None, cert=None, key=None):
    """(base, cert, key, ca) for SAE sae (its own node unless node is given);
    cert/key override the SAE's files (for certificates not in network.json)."""
    s = net["saes"].get(sae, {})
    node = node or s.get("node")
    if node is None:
        raise SystemExit(f"etsi014_client: SAE {sae} not in network.json; give --at NODE")
    return (net["nodes"][node]["etsi014"], cert or s.get("cert"), key or s.get("key"), net["ca"])


def main(argv):
    p = argparse.ArgumentParser(description="ETSI GS QKD 014 test client")
    p.add_argument("--net", required=True)
    p.add_argument("--as", dest="sae", required=True)
    p.add_argument("--at", dest="node")
    p.add_argument("--cert")
    p.add_argument("--key")
    p.add_argument("--timeout", type=float, default=TIMEOUT)
    p.add_argument("--show-keys", action="store_true")
    p.add_argument("cmd", choices=["status", "enc-get", "enc-post", "dec-get", "dec-post"])
    p.add_argument("peer")
    p.add_argument("ids", nargs="*")
    p.add_argument("--number")
    p.add_argument("--size")
    p.add_argument("--query")
    p.add_argument("--body")
    a = p.parse_args(argv)
    ep = endpoint(load_net(a.net), a.sae, a.node, a.cert, a.key)
    t = a.timeout
    try:
        if a.cmd == "status":
            code, body = status(*ep, a.peer, timeout=t)
        elif a.cmd == "enc-get":
            code, body = enc_keys_get(*ep, a.peer, a.number, a.size, a.query, timeout=t)
        elif a.cmd == "enc-post":
            code, body = enc_keys_post(*ep, a.peer, a.body if a.body is not None else "{}", timeout=t)
        elif a.cmd == "dec-get":
            if a.query is None and len(a.ids) != 1:
                p.error("dec-get needs one KEY_ID or --query")
            code, body = dec_keys_get(*ep, a.peer, a.ids[0] if a.ids else None, a.query, timeout=t)
        else:
            if a.body is None and not a.ids:
                p.error("dec-post needs KEY_IDs or --body")
            code, body = dec_keys_post(*ep, a.peer, a.ids, a.body, timeout=t)
    except NoResponse as e:
        print(json.dumps({"code": 0, "error": e.kind, "sent": e.sent, "detail": e.detail}))
        return 0
    print(json.dumps({"code": code, "body": body if a.show_keys else redact(body)}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
