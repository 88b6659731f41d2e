"""What the Python benchmark programs share: arguments, the pinned parameters and their
check, the output line, RSS, the socket set-up. The workload loops themselves are
written out in each program, with methods bound to locals, so that no helper call
sits inside a timed loop (bench/README.md).

Every program takes the arguments of bench/c/limit.c and prints one JSON object:
  {"ops": N, "elapsed": s, "cpu": s, "negotiated": {...}}  a timed workload
  {"ops": N, "rss_delta": bytes, "negotiated": ...} MEM
  {"na": "reason"}                                  the binding cannot do this
"""

import argparse
import json
import os
import socket
import struct
import sys
import time

CHUNK = 16384   # W1 write size
MSG = 64        # W2 message size
HOST = "localhost"

TLS13 = ("TLSv1.3", "TLS_AES_128_GCM_SHA256")
TLS12 = ("TLSv1.2", "ECDHE-ECDSA-AES128-GCM-SHA256")
SUITE13 = "TLS_AES_128_GCM_SHA256"
CIPHER12 = "ECDHE-ECDSA-AES128-GCM-SHA256"
# TLS 1.2 accepts a P-256 certificate only with P-256 among the groups; the key
# exchange is still X25519, and that is what is checked.
GROUPS13 = "X25519"
GROUPS12 = "X25519:P-256"

now = time.perf_counter
_clock = {}


def start():
    """Starts the workload's clocks: wall time and this process's CPU time."""
    _clock.clear()
    _clock["cpu0"] = time.process_time()
    _clock["wall0"] = now()


def stop():
    _clock["wall1"] = now()
    _clock["cpu1"] = time.process_time()
    return timing()


def timing():
    """{"elapsed": wall seconds, "cpu": CPU seconds} since start() (to now if not
    stopped)."""
    if "wall1" not in _clock:
        stop()
    return {"elapsed": _clock["wall1"] - _clock["wall0"],
            "cpu": _clock["cpu1"] - _clock["cpu0"]}


def parse_args(transports=("pair", "socket")):
    p = argparse.ArgumentParser()
    p.add_argument("--workload", required=True,
                   choices=["W1", "W2", "W3", "W3b", "W4", "MEM"])
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--transport", required=True, choices=transports)
    p.add_argument("--role", choices=["client", "server"])
    p.add_argument("--fd", type=int)
    p.add_argument("--path")
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--release-buffers", action="store_true",
                   help="tlsrekey only: contexts with release_buffers=True")
    a = p.parse_args()
    a.tls12 = a.workload == "W3b"
    a.server = a.role == "server"
    return a


def emit(**fields):
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


def na(reason):
    emit(na=reason)
    sys.exit(0)


def fail(message):
    sys.stderr.write(f"{os.path.basename(sys.argv[0])}: {message}\n")
    sys.exit(1)


def check(args, version, cipher, group):
    """Fails loudly unless the pinned parameters were negotiated. group None: the
    binding cannot tell, and the program pinned it by configuration."""
    want = TLS12 if args.tls12 else TLS13
    if group is not None and group.upper() == "X25519":
        group = "X25519"
    if (version, cipher) != want or group not in ("X25519", None):
        fail(f"negotiated {version} {cipher} {group}, wanted {want[0]} {want[1]} X25519")
    return {"version": version, "cipher": cipher, "group": group or "X25519 (pinned)"}


def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


# Named groups (RFC 8446 4.2.7) a ServerHello may carry.
GROUP_NAMES = {0x001D: "X25519", 0x0017: "P-256", 0x0018: "P-384", 0x0019: "P-521",
               0x001E: "X448"}


def server_hello_group(msg):
    """The key_share group of a TLS 1.3 ServerHello handshake message (starting at its
    4-byte header), or None. For bindings that show the wire but not the group."""
    if len(msg) < 4 or msg[0] != 2:
        return None
    p = 4 + 2 + 32
    p += 1 + msg[p]                     # legacy_session_id_echo
    p += 2 + 1                          # cipher_suite, legacy_compression_method
    (ext_len,) = struct.unpack_from("!H", msg, p)
    p += 2
    end = p + ext_len
    while p + 4 <= end:
        etype, elen = struct.unpack_from("!HH", msg, p)
        if etype == 51:                 # key_share: the group first
            return GROUP_NAMES.get(struct.unpack_from("!H", msg, p + 4)[0], "?")
        p += 4 + elen
    return None


def server_hello_group_in_records(data):
    """The same, found in raw TLS records (the server's first flight)."""
    if len(data) >= 9 and data[0] == 22:
        (rec_len,) = struct.unpack_from("!H", data, 3)
        return server_hello_group(data[5:5 + rec_len])
    return None


def socketpair_end(args):
    if args.fd is None:
        fail("--fd is required")
    return socket.socket(fileno=args.fd)


def listen(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(path)
    s.listen(512)
    return s


def connect(path):
    """Waits up to 10 s for the server process to listen on path."""
    for _ in range(1000):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(path)
            return s
        except (FileNotFoundError, ConnectionRefusedError):
            s.close()
            time.sleep(0.01)
    fail(f"cannot connect to {path}")
