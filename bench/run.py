#!/usr/bin/env python3
"""bench/run.py - runs every implementation x workload, interleaved, for several
rounds; prints one table of medians and ratios to the C limit; writes JSON to
bench/results/<timestamp>.json.  See bench/README.md.

    python bench/run.py                 the full benchmark (what `make bench` runs)
    python bench/run.py --quick         scaled-down counts, one round (< 1 minute)
    python bench/run.py --counts W2=20000,MEM=1000 --rounds 5 --only tlsrekey,C
"""

import argparse
import datetime
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

WORKLOADS = ["W1", "W2", "W3", "W3b", "W4", "MEM"]
METRICS = ["wall", "cpu"]
TITLES = {
    "W1": "W1 bulk MB/s",
    "W2": "W2 ping-pong rt/s",
    "W3": "W3 key update /s",
    "W3b": "W3b reneg /s",
    "W4": "W4 handshake /s",
    "MEM": "MEM KiB/pair",
}
FULL = {"W1": 16384, "W2": 100000, "W3": 20000, "W3b": 2000, "W4": 5000, "MEM": 10000}
QUICK = {"W1": 4096, "W2": 20000, "W3": 5000, "W3b": 200, "W4": 300, "MEM": 500}
CHUNK = 16384

# Targets for the tlsrekey rows (issue 6): ratio to C in the same transport at least
# this much; MEM: at most this many bytes per pair above C.
TARGETS_PAIR = {"W1": 0.95, "W2": 0.80, "W3": 0.90, "W3b": 0.95, "W4": 0.95}
TARGET_SOCKET = 0.90
TARGET_MEM = 1024


class Impl:
    def __init__(self, name, transport, cmd, env=None, reference=False):
        self.name, self.transport, self.cmd = name, transport, cmd
        self.env, self.reference = env or {}, reference


def trk_env(tree):
    """Environments for the Python and Lua programs using the tlsrekey of a tree laid
    out like the repository: python/tlsrekey with the extension built in place,
    lua/*.lua, build/lua/tlsrekey/core.so."""
    return ({"PYTHONPATH": os.path.join(tree, "python")},
            {"LUA_PATH": ";".join([os.path.join(HERE, "lua", "?.lua"),
                                   os.path.join(tree, "lua", "?.lua"), ""]) + ";",
             "LUA_CPATH": os.path.join(tree, "build", "lua", "?.so") + ";;"})


def implementations(args):
    py = args.python
    lua = args.lua
    pyenv, luaenv = trk_env(args.tree)
    P = lambda f: [py, os.path.join(HERE, "python", f)]  # noqa: E731
    L = lambda f: [lua, os.path.join(HERE, "lua", f)]    # noqa: E731
    limit = [args.limit]
    # --variant NAME=DIR: tlsrekey built from another tree (bench/variant.sh), measured
    # in the same run, right after the tree's own rows.
    variants = {"pair": [], "socket": []}
    for spec in args.variant or []:
        name, _, d = spec.partition("=")
        vpy, vlua = trk_env(os.path.abspath(d))
        for t, label in (("pair", "pair"), ("socket", "socketpair")):
            variants[t] += [
                Impl(f"tlsrekey Python [{name}] ({label})", t, P("trk_bench.py"), vpy),
                Impl(f"tlsrekey Lua [{name}] ({label})", t, L("trk_bench.lua"), vlua),
            ]
    return [
        Impl("C limit (BIO pair)", "pair", limit, reference=True),
        Impl("tlsrekey Python (pair)", "pair", P("trk_bench.py"), pyenv),
        Impl("tlsrekey Lua (pair)", "pair", L("trk_bench.lua"), luaenv),
        *variants["pair"],
        # the lever "SSL_MODE_RELEASE_BUFFERS as an option": what it saves
        # per idle connection and what it costs per small message
        Impl("tlsrekey Python (pair, release_buffers)", "pair",
             P("trk_bench.py") + ["--release-buffers"], pyenv),
        Impl("tlsrekey Lua (pair, release_buffers)", "pair",
             L("trk_bench.lua") + ["--release-buffers", "1"], luaenv),
        Impl("Python ssl (SSLObject+MemoryBIO)", "pair", P("ssl_bench.py"), pyenv),
        Impl("pyOpenSSL (memory BIO)", "pair", P("pyopenssl_bench.py"), pyenv),
        Impl("C limit (socketpair)", "socket", limit, reference=True),
        Impl("tlsrekey Python (socketpair)", "socket", P("trk_bench.py"), pyenv),
        Impl("tlsrekey Lua (socketpair)", "socket", L("trk_bench.lua"), luaenv),
        *variants["socket"],
        Impl("Python ssl (SSLSocket)", "socket", P("ssl_bench.py"), pyenv),
        Impl("pyOpenSSL (socketpair)", "socket", P("pyopenssl_bench.py"), pyenv),
        Impl("LuaSec (socketpair)", "socket", L("luasec_bench.lua"), luaenv),
    ]


# ---- running one measurement ----------------------------------------------------

class Failed(Exception):
    pass


def last_json(out, who):
    for line in reversed(out.decode(errors="replace").splitlines()):
        line = line.strip()
        if line.startswith("{"):
            return json.loads(line)
    raise Failed(f"{who} printed no result")


def wait_all(procs, timeout):
    """Waits for every process; on a failure or the timeout, kills the others (they
    would wait forever for a peer that is gone)."""
    deadline = time.monotonic() + timeout
    outs = {}
    pending = dict(procs)
    while pending:
        for role, p in list(pending.items()):
            if p.poll() is not None:
                out, err = p.communicate()
                outs[role] = (p.returncode, out, err)
                del pending[role]
                if p.returncode != 0:
                    for q in pending.values():
                        q.kill()
                        q.communicate()
                    raise Failed(f"{role} exited {p.returncode}: "
                                 f"{err.decode(errors='replace').strip()[-2000:]}")
        if pending and time.monotonic() > deadline:
            for q in pending.values():
                q.kill()
                q.communicate()
            raise Failed(f"timed out after {timeout} s")
        if pending:
            time.sleep(0.005)
    return outs


def run_one(impl, workload, count, args, tmpdir, cpu=None):
    base = impl.cmd + ["--workload", workload, "--count", str(count),
                       "--cert", args.cert, "--key", args.key,
                       "--transport", impl.transport]
    env = dict(os.environ, **impl.env)
    popen = dict(stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=ROOT)
    if cpu is not None:
        # Both processes of a socket run on one CPU: on a VM, waking a process on
        # the other vCPU costs more than a whole small TLS round trip, and how often
        # that happens depends on the scheduler, not on the code (bench/README.md).
        popen["preexec_fn"] = lambda: os.sched_setaffinity(0, {cpu})
    if impl.transport == "pair":
        outs = wait_all({"process": subprocess.Popen(base, **popen)}, args.timeout)
        return last_json(outs["process"][1], impl.name)

    if workload in ("W4", "MEM"):
        path = os.path.join(tmpdir, "bench.sock")
        if os.path.exists(path):
            os.unlink(path)
        server = subprocess.Popen(base + ["--role", "server", "--path", path], **popen)
        client = subprocess.Popen(base + ["--role", "client", "--path", path], **popen)
    else:
        a, b = socket.socketpair()
        server = subprocess.Popen(base + ["--role", "server", "--fd", str(b.fileno())],
                                  pass_fds=[b.fileno()], **popen)
        client = subprocess.Popen(base + ["--role", "client", "--fd", str(a.fileno())],
                                  pass_fds=[a.fileno()], **popen)
        a.close()
        b.close()
    outs = wait_all({"server": server, "client": client}, args.timeout)
    res = last_json(outs["client"][1], impl.name + " client")
    if "na" in res:
        return res
    srv = last_json(outs["server"][1], impl.name + " server")
    if workload == "MEM":
        res["rss_delta_client"] = res["rss_delta"]
        res["rss_delta_server"] = srv["rss_delta"]
        res["rss_delta"] = res["rss_delta"] + srv["rss_delta"]
    else:
        # CPU spent by both processes (the client's wall clock is the elapsed time).
        res["cpu_client"], res["cpu_server"] = res["cpu"], srv["cpu"]
        res["cpu"] = res["cpu"] + srv["cpu"]
    return res


def value_of(workload, res, metric):
    """The cell's number: MB/s (W1), operations/s (W2-W4), bytes per pair (MEM).
    metric "cpu" divides by CPU seconds (both processes over a socket) instead of
    wall seconds: work per CPU-second, much less disturbed by a busy machine."""
    if workload == "MEM":
        return res["rss_delta"] / res["ops"]
    seconds = res["cpu"] if metric == "cpu" else res["elapsed"]
    if workload == "W1":
        return res["ops"] * CHUNK / seconds / 1e6
    return res["ops"] / seconds


# ---- the table --------------------------------------------------------------------

def fmt_value(workload, v):
    if v is None:
        return "-"
    if workload == "MEM":
        return f"{v / 1024:.1f}"
    if workload == "W1":
        return f"{v:.0f}"
    return f"{v:,.0f}"


def fmt_ratio(impl, workload, r):
    if impl.reference:
        return "1" if workload != "MEM" else "+0"
    if r is None:
        return "-"
    if workload == "MEM":
        return f"{r / 1024:+.1f}"
    return f"{r:.2f}"


def target_for(impl, workload):
    if not impl.name.startswith("tlsrekey") or "release_buffers" in impl.name:
        return None
    if workload == "MEM":
        return TARGET_MEM
    return TARGET_SOCKET if impl.transport == "socket" else TARGETS_PAIR[workload]


def meets(workload, r, target):
    return r <= target if workload == "MEM" else r >= target


def table(impls, workloads, cells):
    """cells[(impl.name, w)] = dict(status, median, ratio, ...)."""
    name_w = max(len(i.name) for i in impls) + 2
    col_w = 22
    lines = []
    head = "implementation".ljust(name_w) + "".join(TITLES[w].rjust(col_w) for w in workloads)
    lines.append(head)
    lines.append("-" * len(head))
    last_transport = None
    for impl in impls:
        if last_transport is not None and impl.transport != last_transport:
            lines.append("")
        last_transport = impl.transport
        row = impl.name.ljust(name_w)
        for w in workloads:
            c = cells.get((impl.name, w))
            if c is None:
                text = ""
            elif c["status"] == "na":
                text = "n/a"
            elif c["status"] == "failed":
                text = "FAILED"
            else:
                text = f"{fmt_value(w, c['median'])} ({fmt_ratio(impl, w, c['ratio'])})"
                t = target_for(impl, w)
                if t is not None and c["ratio"] is not None:
                    text += " ok" if meets(w, c["ratio"], t) else " !!"
            row += text.rjust(col_w)
        lines.append(row)
    return "\n".join(lines)


# ---- main -------------------------------------------------------------------------

def make_cert(tmpdir):
    cert, key = os.path.join(tmpdir, "cert.pem"), os.path.join(tmpdir, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec",
                    "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2",
                    "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost",
                    "-keyout", key, "-out", cert], check=True, capture_output=True)
    return cert, key


def snapshot(tmpdir):
    """Copies the built bindings (python/tlsrekey, lua/*.lua, the Lua module) so that
    every round measures the build as it was when the run started: other people's
    `make build` in a shared tree replaces the extension in place."""
    tree = os.path.join(tmpdir, "tree")
    shutil.copytree(os.path.join(ROOT, "python", "tlsrekey"),
                    os.path.join(tree, "python", "tlsrekey"),
                    ignore=shutil.ignore_patterns("__pycache__"))
    os.makedirs(os.path.join(tree, "lua"))
    for f in os.listdir(os.path.join(ROOT, "lua")):
        if f.endswith(".lua"):
            shutil.copy(os.path.join(ROOT, "lua", f), os.path.join(tree, "lua"))
    mod = os.path.join(ROOT, "build", "lua", "tlsrekey", "core.so")
    if os.path.exists(mod):
        os.makedirs(os.path.join(tree, "build", "lua", "tlsrekey"))
        shutil.copy(mod, os.path.join(tree, "build", "lua", "tlsrekey"))
    return tree


def tree_state():
    """The commit measured, and whether the sources differed from it."""
    def git(*a):
        r = subprocess.run(["git", *a], cwd=ROOT, capture_output=True, text=True)
        return r.stdout.strip()
    return {"commit": git("rev-parse", "--short", "HEAD"),
            "modified": git("status", "--porcelain", "--", "csrc", "python/src",
                            "python/tlsrekey", "lua").splitlines()}


def build_limit(path):
    src = os.path.join(HERE, "c", "limit.c")
    if os.path.exists(path) and os.path.getmtime(path) >= os.path.getmtime(src):
        return
    os.makedirs(os.path.dirname(path), exist_ok=True)
    cc = os.environ.get("CC", "cc")
    subprocess.run([cc, "-O2", "-g", "-Wall", "-Wextra", src, "-lssl", "-lcrypto",
                    "-o", path], check=True)


def versions(args):
    def out(cmd, env=None):
        try:
            return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT,
                                  env=dict(os.environ, **(env or {})),
                                  timeout=60).stdout.strip()
        except Exception as e:  # noqa: BLE001 - informational only
            return f"? ({e})"
    pyenv, luaenv = trk_env(args.tree)
    return {
        "libssl (C limit, tlsrekey, LuaSec)": out(["openssl", "version"]),
        "tlsrekey Python": out([args.python, "-c",
                                "import tlsrekey; print(tlsrekey.__version__, "
                                "tlsrekey.OPENSSL_VERSION)"], pyenv),
        "tlsrekey Lua": out([args.lua, "-e", "local c = require 'tlsrekey.core'; "
                             "print(c._VERSION, c.OPENSSL_VERSION)"], luaenv),
        "Python ssl": out([args.python, "-c",
                           "import ssl, sys; print(sys.version.split()[0], "
                           "ssl.OPENSSL_VERSION)"]),
        "pyOpenSSL": out([args.python, "-c",
                          "import OpenSSL; from OpenSSL import SSL; print(OpenSSL.__version__,"
                          " SSL.OpenSSL_version(SSL.OPENSSL_VERSION).decode())"]),
        "LuaSec": out([args.lua, "-e", "print(require('ssl')._VERSION)"]),
    }


def parse_counts(text, counts):
    for item in filter(None, (text or "").split(",")):
        k, _, v = item.partition("=")
        if k not in counts:
            raise SystemExit(f"--counts: unknown workload {k!r}")
        counts[k] = int(v)
    return counts


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true",
                    help="scaled-down counts and one round: a smoke run")
    ap.add_argument("--rounds", type=int, help="rounds (default 5, --quick 1)")
    ap.add_argument("--counts", help="override counts, e.g. W1=4096,W4=1000")
    ap.add_argument("--workloads", help="comma-separated subset of " + ",".join(WORKLOADS))
    ap.add_argument("--only", help="comma-separated substrings of implementation names "
                                   "(the C limit of each transport is always kept)")
    ap.add_argument("--transport", choices=["pair", "socket"], help="only this transport")
    ap.add_argument("--variant", action="append", metavar="NAME=DIR",
                    help="also measure tlsrekey built in DIR (bench/variant.sh makes one)")
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--lua", default="lua5.4")
    ap.add_argument("--limit", default=os.path.join(ROOT, "build", "bench", "limit"))
    ap.add_argument("--timeout", type=float, help="seconds per measurement")
    ap.add_argument("--no-pin", action="store_true",
                    help="let the scheduler place processes (default: every process of "
                         "round r runs on CPU r mod ncpu)")
    ap.add_argument("--results", default=os.path.join(HERE, "results"))
    ap.add_argument("--no-json", action="store_true", help="do not write a results file")
    args = ap.parse_args()

    counts = parse_counts(args.counts, dict(QUICK if args.quick else FULL))
    rounds = args.rounds or (1 if args.quick else 5)
    args.timeout = args.timeout or (60 if args.quick else 120)
    workloads = args.workloads.split(",") if args.workloads else WORKLOADS
    for w in workloads:
        if w not in WORKLOADS:
            raise SystemExit(f"unknown workload {w!r}")

    build_limit(args.limit)
    tmpdir = tempfile.mkdtemp(prefix="tlsrekey-bench-")
    args.tree = snapshot(tmpdir)
    impls = implementations(args)
    if args.only:
        keys = [k.strip().lower() for k in args.only.split(",")]
        impls = [i for i in impls if i.reference or any(k in i.name.lower() for k in keys)]
    if args.transport:
        impls = [i for i in impls if i.transport == args.transport]

    try:
        args.cert, args.key = make_cert(tmpdir)
        started = datetime.datetime.now()
        info = {
            "started": started.isoformat(timespec="seconds"),
            "host": platform.node(), "machine": platform.machine(),
            "cpus": os.cpu_count(), "kernel": platform.release(),
            "load_before": os.getloadavg(), "quick": args.quick, "rounds": rounds,
            "pinned": not args.no_pin,
            "counts": counts, "versions": versions(args), "tree": tree_state(),
        }
        runs = []
        failed_cells = set()
        cpus = sorted(os.sched_getaffinity(0))
        total = rounds * len(workloads) * len(impls)
        done = 0
        t_start = time.monotonic()
        for r in range(rounds):
            for w in workloads:
                # Every implementation of a workload back to back, the order rotated
                # each round so that no one always runs first (or right after C).
                k = r % len(impls)
                for impl in impls[k:] + impls[:k]:
                    done += 1
                    rec = {"round": r, "workload": w, "impl": impl.name,
                           "transport": impl.transport, "count": counts[w]}
                    if (impl.name, w) in failed_cells:
                        # a failure (a hang: the timeout) is not worth repeating
                        rec["status"], rec["error"] = "failed", "failed in an earlier round"
                        runs.append(rec)
                        continue
                    try:
                        cpu = None if args.no_pin else cpus[r % len(cpus)]
                        res = run_one(impl, w, counts[w], args, tmpdir, cpu)
                        rec["result"] = res
                        if "na" in res:
                            rec["status"], rec["reason"] = "na", res["na"]
                        else:
                            rec["status"] = "ok"
                            rec["value"] = {m: value_of(w, res, m) for m in METRICS}
                    except Failed as e:
                        rec["status"], rec["error"] = "failed", str(e)
                        failed_cells.add((impl.name, w))
                    runs.append(rec)
                    shown = (f"{rec['value']['wall']:.1f} (cpu {rec['value']['cpu']:.1f})"
                             if rec["status"] == "ok" else rec["status"])
                    print(f"[{done}/{total} {time.monotonic() - t_start:5.0f}s] round {r + 1} "
                          f"{w:4} {impl.name}: {shown}"
                          + (f"  ({rec['error'][:300]})" if rec["status"] == "failed" else ""),
                          file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)

    cells = {m: summarise(impls, workloads, runs, m) for m in METRICS}
    info["elapsed_s"] = round(time.monotonic() - t_start, 1)
    info["load_after"] = os.getloadavg()
    text = report(info, impls, workloads, cells)
    print(text)
    if not args.no_json:
        os.makedirs(args.results, exist_ok=True)
        path = os.path.join(args.results, started.strftime("%Y%m%d-%H%M%S") + ".json")
        with open(path, "w") as f:
            json.dump({"info": info, "table": text,
                       "cells": {m: [dict(impl=k[0], workload=k[1], **v)
                                     for k, v in cells[m].items()] for m in METRICS},
                       "runs": runs}, f, indent=1)
        print(f"\nJSON: {os.path.relpath(path, ROOT)}")
    failed = [c for c in cells["wall"].values() if c["status"] == "failed"]
    return 1 if failed else 0


def summarise(impls, workloads, runs, metric):
    """Median value per cell, and the median over rounds of the ratio to the C limit of
    the same transport measured in the same round (MEM: the difference in bytes)."""
    by = {}
    for rec in runs:
        by.setdefault((rec["impl"], rec["workload"]), []).append(rec)
    ref = {i.transport: i.name for i in impls if i.reference}
    cells = {}
    for impl in impls:
        for w in workloads:
            recs = by.get((impl.name, w), [])
            if not recs:
                continue
            if any(r["status"] == "failed" for r in recs):
                cells[(impl.name, w)] = {"status": "failed",
                                         "errors": [r.get("error") for r in recs]}
                continue
            if all(r["status"] == "na" for r in recs):
                cells[(impl.name, w)] = {"status": "na", "reason": recs[0]["reason"]}
                continue
            values = [r["value"][metric] for r in recs]
            ratios = []
            refname = ref.get(impl.transport)
            for rec in recs:
                base = [x for x in by.get((refname, w), [])
                        if x["round"] == rec["round"] and x["status"] == "ok"]
                if base:
                    b, v = base[0]["value"][metric], rec["value"][metric]
                    ratios.append(v - b if w == "MEM" else v / b)
            cells[(impl.name, w)] = {
                "status": "ok", "median": statistics.median(values), "values": values,
                "ratio": statistics.median(ratios) if ratios else None, "ratios": ratios,
                "target": target_for(impl, w),
            }
    return cells


def report(info, impls, workloads, cells):
    c = info["counts"]
    lines = [
        f"tlsrekey benchmark  {info['started']}  {info['host']} ({info['cpus']} cpus, "
        f"load {info['load_before'][0]:.2f} before, {info['load_after'][0]:.2f} after)  "
        f"{info['rounds']} round(s), {info['elapsed_s']:.0f} s"
        + ("  --quick" if info["quick"] else "")
        + f"  tree {info['tree']['commit']}"
        + (f" + {len(info['tree']['modified'])} modified file(s)"
           if info["tree"]["modified"] else ""),
        f"counts: W1 {c['W1'] * CHUNK / 2**20:.0f} MiB in 16 KiB writes, W2 {c['W2']} "
        f"round trips, W3 {c['W3']} key updates, W3b {c['W3b']} renegotiations, "
        f"W4 {c['W4']} handshakes, MEM {c['MEM']} idle pairs",
        "cells: median (ratio to the C limit of the same transport: the median over rounds"
        " of same-round ratios; MEM: KiB per connected pair, and KiB above C)",
        "ok / !! : tlsrekey rows against the issue 6 targets (W1 0.95, W2 0.80, W3 0.90,"
        " W3b 0.95, W4 0.95; socketpair 0.90; MEM <= +1 KiB)",
    ]
    for metric, title in (("wall", "per wall-clock second (the issue's measure)"),
                          ("cpu", "per CPU second (both processes over a socket): the "
                                  "work, less disturbed by a busy machine")):
        lines += ["", f"== rates {title}", "", table(impls, workloads, cells[metric])]
    lines.append("")
    nas = sorted({(k[0], v["reason"]) for k, v in cells["wall"].items()
                  if v["status"] == "na"})
    if nas:
        lines.append("n/a: " + "; ".join(f"{n}: {r}" for n, r in nas))
    for k, v in cells["wall"].items():
        if v["status"] == "failed":
            first = next((e for e in v["errors"] if e), "?")
            lines.append(f"FAILED {k[0]} {k[1]}: {first}")
    lines.append("versions: " + "; ".join(f"{k}: {v}" for k, v in info["versions"].items()))
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
