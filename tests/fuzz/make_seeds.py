#!/usr/bin/env python3
"""Writes the seed corpus of fuzz_core (tests/fuzz/corpus/): small programs that reach
the interesting states - established TLS 1.3 and 1.2 connections over memory and over
the in-process pair, key updates both ways, renegotiations from either side, refused
ones, shutdowns, closes - so that libFuzzer mutates from there instead of from noise.
The program format is described at the top of fuzz_core.c. Run it again after
changing that format; the seeds are committed."""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))

# setup bits
MEMORY, MEMORY_CLIENT_VICTIM, PAIR = 0, 3, 2
TLS12, ALLOW_RENEG, NO_RENEG, FAILING_CB, ESTABLISHED, CTX_FIRST = 4, 8, 16, 32, 64, 128
PEER = 0x80

# opcodes (see op_on): a few with their operands
HS = [0]
def READ(n=255): return [1, n]
def WRITE(data): return [2, len(data)] + list(data)
WRITE0 = [3]
def KU(requested=False, now=False):   # operand: type = (a % 4) - 1
    return [4, (2 if requested else 1) | (4 if now else 0)]
RENEG, RENEG_ABBR, SHUTDOWN = [5], [6], [7]
def VERIFY_CLIENT(required=True): return [8, 3 if required else 2]
def INTROSPECT(n=16): return [9, n]
def RAW(data): return [10, len(data)] + list(data)
EOF = [11]
def CARRY(mode=0, n=0): return [12, mode, n]
CLOSE = [13]
PUMP = [14]
READALL = [15]


def peer(op):
    return [op[0] | PEER] + op[1:]


def seq(*ops):
    out = []
    for op in ops:
        out += op
    return out


SEEDS = {
    # TLS 1.3 over memory, server victim
    "mem13-ku-both-ways": [MEMORY | ESTABLISHED] + seq(
        KU(True), WRITE(b"hello"), PUMP, peer(READ()), peer(WRITE(b"back")), PUMP, READ(),
        peer(KU(False, True)), PUMP, READ(), INTROSPECT()),
    "mem13-ku-flood": [MEMORY | ESTABLISHED] + seq(
        *([peer(KU(True, True)), PUMP] * 12), READ(), WRITE0, PUMP, peer(READ())),
    "mem13-handshake-by-hand": [MEMORY] + seq(
        peer(HS), PUMP, HS, PUMP, peer(HS), PUMP, HS, PUMP, WRITE(b"x"), PUMP, peer(READ())),
    "mem13-truncated-then-eof": [MEMORY | ESTABLISHED] + seq(
        peer(WRITE(b"0123456789" * 3)), CARRY(1, 9), READ(), EOF, READ(), READ()),
    "mem13-bitflip": [MEMORY | ESTABLISHED] + seq(
        peer(KU(True)), peer(WRITE(b"data")), CARRY(2, 7), READ(), WRITE(b"no")),
    "mem13-duplicate-record": [MEMORY | ESTABLISHED] + seq(
        peer(WRITE(b"twice")), CARRY(3, 0), READ(), READ()),
    "mem13-raw-records": [MEMORY | ESTABLISHED] + seq(
        RAW(b"\x17\x03\x03\x00\x05hello"), READ(), RAW(b"\x15\x03\x03\x00\x02\x01\x00"),
        READ()),
    "mem13-raw-clienthello": [MEMORY] + seq(
        RAW(b"\x16\x03\x01\x00\x2f\x01\x00\x00\x2b\x03\x03" + bytes(32) + b"\x00\x00\x02\x13\x01\x01\x00"),
        HS, INTROSPECT()),
    "mem13-shutdown": [MEMORY | ESTABLISHED] + seq(
        SHUTDOWN, PUMP, peer(READ()), peer(SHUTDOWN), PUMP, SHUTDOWN, READ(), WRITE(b"late")),
    "mem13-client-victim": [MEMORY_CLIENT_VICTIM | ESTABLISHED] + seq(
        KU(True, True), PUMP, peer(READ()), peer(WRITE0), PUMP, READ(), INTROSPECT(64)),
    "mem13-close-and-use": [MEMORY | ESTABLISHED] + seq(
        CLOSE, READ(), KU(), RENEG, INTROSPECT(), peer(WRITE(b"to nobody")), PUMP),
    "mem13-ctx-freed-first": [MEMORY | ESTABLISHED | CTX_FIRST] + seq(
        WRITE(b"x"), PUMP, peer(READ())),
    "mem13-failing-callbacks": [MEMORY | ESTABLISHED | FAILING_CB] + seq(
        *([KU(True), WRITE(b"cb"), PUMP, peer(READ()), peer(WRITE(b"r")), PUMP, READ()] * 3)),
    # TLS 1.2 over memory
    "mem12-client-reneg": [MEMORY | TLS12 | ALLOW_RENEG | ESTABLISHED] + seq(
        peer(RENEG), peer(WRITE(b"ping")), PUMP, READ(), PUMP, peer(READ()), PUMP, READ(),
        INTROSPECT()),
    "mem12-server-reneg": [MEMORY | TLS12 | ESTABLISHED] + seq(
        RENEG, HS, PUMP, peer(READ()), PUMP, READ(), PUMP, peer(READ()), PUMP, WRITE(b"after"),
        PUMP, peer(READ())),
    "mem12-abbreviated": [MEMORY | TLS12 | ALLOW_RENEG | ESTABLISHED] + seq(
        peer(RENEG_ABBR), peer(HS), PUMP, READ(), PUMP, peer(HS), PUMP, READ()),
    "mem12-refused": [MEMORY | TLS12 | ESTABLISHED] + seq(
        peer(RENEG), peer(WRITE(b"x")), PUMP, READ(), PUMP, peer(READ()), INTROSPECT()),
    "mem12-no-reneg": [MEMORY | TLS12 | NO_RENEG | ESTABLISHED] + seq(
        RENEG, peer(RENEG), peer(HS), PUMP, READ(), PUMP, peer(READ())),
    "mem12-verify-client": [MEMORY | TLS12 | ESTABLISHED] + seq(
        VERIFY_CLIENT(True), RENEG, HS, PUMP, peer(READ()), PUMP, READ(), PUMP, peer(READ()),
        PUMP, READ(), INTROSPECT()),
    "mem12-ku-refused": [MEMORY | TLS12 | ESTABLISHED] + seq(KU(True), KU(False, True),
                                                             INTROSPECT()),
    "mem12-reneg-data-race": [MEMORY | TLS12 | ALLOW_RENEG | ESTABLISHED] + seq(
        WRITE(b"early"), peer(RENEG), PUMP, peer(WRITE(b"x")), PUMP, READ(), PUMP,
        peer(READ())),
    # the in-process pair
    "pair13-ku": [PAIR] + seq(
        KU(True), WRITE(b"a"), peer(READ()), peer(WRITE(b"b")), READ(), peer(KU(True, True)),
        READ(), WRITE0, peer(READ()), INTROSPECT()),
    "pair13-close-peer": [PAIR] + seq(WRITE(b"before"), peer(CLOSE), READ(), WRITE(b"x"),
                                      READ()),
    "pair13-close-self": [PAIR] + seq(KU(True), WRITE(b"a"), CLOSE, peer(READ()),
                                      peer(WRITE(b"b"))),
    "pair13-shutdown": [PAIR] + seq(SHUTDOWN, peer(READ()), peer(SHUTDOWN), SHUTDOWN),
    "pair12-reneg-both": [PAIR | TLS12 | ALLOW_RENEG] + seq(
        RENEG, peer(RENEG), WRITE(b"c"), peer(READ()), peer(WRITE(b"s")), READ(), INTROSPECT()),
    "pair12-server-reneg": [PAIR | TLS12] + seq(
        peer(RENEG), peer(WRITE(b"s")), READ(), WRITE(b"c"), peer(READ())),
    "pair12-failing-callbacks": [PAIR | TLS12 | ALLOW_RENEG | FAILING_CB] + seq(
        RENEG, WRITE(b"c"), peer(READ()), peer(RENEG), peer(HS), READ()),
    "pair13-ctx-first": [PAIR | CTX_FIRST] + seq(WRITE(b"x"), peer(READ()), KU(True, True),
                                                 peer(READ())),
}


def main(out_dir=os.path.join(HERE, "corpus")):
    os.makedirs(out_dir, exist_ok=True)
    for name, prog in SEEDS.items():
        with open(os.path.join(out_dir, name), "wb") as f:
            f.write(bytes(prog))
    print("%d seeds in %s" % (len(SEEDS), out_dir))


if __name__ == "__main__":
    main(*sys.argv[1:])
