#!/usr/bin/env python3
"""key_scan.py KEYS.json FILE... - looks for the keys of an ETSI 014 key
container (KEYS.json, as `qkm key enc` prints it) in files: stores, WALs,
logs, core dumps. Exit 1 if any piece of any key is found, 0 otherwise.

A key is found when a file holds, anywhere:
  raw     any 8 bytes of it at an offset that is a multiple of 8 (so every
          15-byte piece of the key contains one);
  hex     the same 8 bytes as 16 hex digits, lower or upper case (every
          30-digit piece);
  base64  any 16 characters of its base64 text at a multiple of 4 (every
          19-character piece of the text an ETSI 014 answer carries).
A random 8-byte string turns up in a few hundred MB by chance with odds
below 1e-10, so a hit is a copy. For an ELF core file a hit is placed: the
memory address and mapping it was dumped from, or the note (a thread's
registers) that holds it.
"""
import base64
import json
import struct
import sys


def needles(key):
    out = []
    for off in range(0, len(key) - 7, 8):
        piece = key[off:off + 8]
        out.append(("raw", off, piece))
        out.append(("hex", off, piece.hex().encode()))
        out.append(("HEX", off, piece.hex().upper().encode()))
    b64 = base64.b64encode(key)
    for off in range(0, len(b64) - 15, 4):
        out.append(("base64", off // 4 * 3, b64[off:off + 16]))
    return out


NOTE_NAMES = {1: "NT_PRSTATUS (general registers)", 2: "NT_FPREGSET (x87/SSE registers)",
              0x202: "NT_X86_XSTATE (AVX/AVX-512 registers)", 6: "NT_AUXV",
              0x46494c45: "NT_FILE", 0x53494749: "NT_SIGINFO"}


def core_places(data):
    """[(start, end, description)] of an ELF64 little-endian core's
    segments and notes; [] for any other file."""
    if data[:4] != b"\x7fELF" or data[4] != 2 or struct.unpack_from("<H", data, 16)[0] != 4:
        return []
    phoff, = struct.unpack_from("<Q", data, 32)
    phentsize, phnum = struct.unpack_from("<HH", data, 54)
    places, thread = [], 0
    for i in range(phnum):
        p_type, _, off, vaddr, _, filesz = struct.unpack_from("<IIQQQQ", data, phoff + i * phentsize)
        if p_type == 1 and filesz:
            places.append((off, off + filesz, "memory at 0x%x (segment 0x%x+0x%x)" % (vaddr, vaddr, filesz)))
        elif p_type == 4:
            n, end = off, off + filesz
            while n + 12 <= end:
                namesz, descsz, ntype = struct.unpack_from("<III", data, n)
                desc = n + 12 + (namesz + 3 & ~3)
                if ntype == 1:
                    thread += 1
                places.append((desc, desc + descsz, "note %s of thread %d" %
                               (NOTE_NAMES.get(ntype, hex(ntype)), thread)))
                n = desc + (descsz + 3 & ~3)
    return places


def place(places, pos):
    for start, end, what in places:
        if start <= pos < end:
            if what.startswith("memory at "):
                base = int(what.split()[2], 16)
                return "memory at 0x%x%s" % (base + pos - start, what[what.index(" ("):])
            return "%s, byte %d" % (what, pos - start)
    return "file offset %d" % pos


def main():
    keys = [base64.b64decode(k["key"]) for k in json.load(open(sys.argv[1]))["keys"]]
    assert keys and all(len(k) >= 16 for k in keys), "need keys of 16 bytes or more"
    hits = total = 0
    for f in sys.argv[2:]:
        data = open(f, "rb").read()
        total += len(data)
        places = None
        for i, key in enumerate(keys):
            for form, off, needle in needles(key):
                pos = data.find(needle)
                while pos >= 0:
                    if places is None:
                        places = core_places(data)
                    if hits < 40:
                        print("%s: key %d (bytes from %d, %s) at %s" %
                              (f, i, off, form, place(places, pos)))
                    hits += 1
                    pos = data.find(needle, pos + 1)
    print("searched %d file(s), %d bytes, for %d key(s): %d hit(s)" %
          (len(sys.argv) - 2, total, len(keys), hits))
    return 1 if hits else 0


if __name__ == "__main__":
    sys.exit(main())
