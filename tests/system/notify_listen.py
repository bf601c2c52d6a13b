#!/usr/bin/env python3
"""notify_listen.py SOCKET OUT READY_FILE: plays systemd's side of
sd_notify(3) for tests/system/test_service.sh. Binds a unix datagram socket
(SOCKET, or @NAME for the abstract namespace), creates READY_FILE once
bound, and appends every datagram received to OUT, one per line, flushed,
until killed or 60 s pass."""
import socket
import sys

path, out, ready = sys.argv[1:4]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind("\0" + path[1:] if path.startswith("@") else path)
open(ready, "w").close()
s.settimeout(60)
with open(out, "a") as f:
    while True:
        try:
            data = s.recv(4096)
        except socket.timeout:
            break
        f.write(data.decode(errors="replace") + "\n")
        f.flush()
