#!/usr/bin/env python3
"""Measure quorate and its peers (serf, etcd) in the same run on the same machine.

Runs 5 serf agents, 3 etcd members (at etcd's defaults and at matched timeouts)
and 5 quorate agents (its lan profile, and lan at the same matched Raft timeouts)
on loopback, one fresh cluster per measurement and trial, and reports medians
(with min and max) over the trials of:

  (a) kill -9 of a member -> every survivor marks it dead        (serf, quorate)
  (b) kill -9 of the leader -> one new leader known to all
      survivors                                                   (etcd, quorate)
  (c) a membership change (a 6th agent starts and joins) ->
      ClusterStable on the leader                                 (quorate)
  (d) idle resident memory and CPU seconds per 30 s per agent     (serf, etcd, quorate)

Every time is measured from the event (the kill, or the start of the joining
process) to the first poll that sees the condition, polling every --poll-ms.
See bench/README.md. Python 3 standard library only.
"""

import argparse
import atexit
import concurrent.futures
import datetime
import hashlib
import json
import os
import platform
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MIB = 1024 * 1024
CLK_TCK = os.sysconf("SC_CLK_TCK")
IDLE_NOTE = ("VmRSS from /proc/PID/status; CPU from /proc/PID/task/*/schedstat (ns; the (d) target is judged on it)"
             " and utime+stime from /proc/PID/stat (10 ms ticks)")

# No proxies: every request goes to loopback.
HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def now():
    return time.monotonic()


def log(msg):
    print(f"[{datetime.datetime.now().strftime('%H:%M:%S')}] {msg}", flush=True)


class Timeout(Exception):
    pass


# --------------------------------------------------------------------------
# Processes: every child runs in its own session (its own process group), and
# every one still running is killed, with its group, on every way out.
# --------------------------------------------------------------------------


class Procs:
    def __init__(self):
        self.procs = []

    def spawn(self, name, argv, logdir, env=None):
        path = os.path.join(logdir, f"{name}.log")
        with open(path, "ab") as out:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env=env,
            )
        proc.bench_name = name
        proc.bench_log = path
        self.procs.append(proc)
        return proc

    @staticmethod
    def kill9(proc):
        """The measured kill: SIGKILL to the process itself."""
        os.kill(proc.pid, signal.SIGKILL)

    def stop(self, proc):
        # Only a child not yet reaped can be signalled: its pid (= its group id)
        # cannot have been reused.
        if proc.returncode is None and proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        if proc in self.procs:
            self.procs.remove(proc)

    def stop_all(self):
        for proc in list(self.procs):
            self.stop(proc)


PROCS = Procs()
TEMP_DIRS = []
KEEP_TEMP = False


def cleanup():
    PROCS.stop_all()
    if not KEEP_TEMP:
        for path in TEMP_DIRS:
            shutil.rmtree(path, ignore_errors=True)


def on_signal(signum, _frame):
    raise SystemExit(128 + signum)


atexit.register(cleanup)
for _sig in (signal.SIGTERM, signal.SIGHUP):
    signal.signal(_sig, on_signal)
# Also when started in the background, where SIGINT arrives ignored.
signal.signal(signal.SIGINT, signal.default_int_handler)


def tail(path, lines=15):
    try:
        with open(path, "rb") as f:
            data = f.read().decode("utf-8", "replace").splitlines()
        return "\n".join("      " + line for line in data[-lines:])
    except OSError:
        return "      (no log)"


# --------------------------------------------------------------------------
# Ports: distinct loopback ports, each checked free for TCP and UDP, never
# reused within a run; below the ephemeral range so no outgoing connection
# takes one between the check and the use.
# --------------------------------------------------------------------------


class Ports:
    def __init__(self, base):
        if not 1024 <= base <= 65000:
            raise ValueError("--base-port must be within 1024..65000")
        self.base = base
        self.next = base
        # Stay below the ephemeral range (32768 up) unless told to start in it.
        self.limit = 32768 if base < 31768 else 65536

    @staticmethod
    def free(port):
        for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
            s = socket.socket(socket.AF_INET, kind)
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                return False
            finally:
                s.close()
        return True

    def take(self):
        for _ in range(self.limit - self.base):
            port = self.next
            self.next = self.next + 1 if self.next + 1 < self.limit else self.base
            if self.free(port):
                return port
        raise RuntimeError("no free loopback port")


# --------------------------------------------------------------------------
# /proc readings
# --------------------------------------------------------------------------


def rss_bytes(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        data = f.read()
    # The command name may hold spaces; fields restart after its ')'.
    fields = data[data.rindex(")") + 2 :].split()
    utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of stat
    return (utime + stime) / CLK_TCK


def cpu_ns_threads(pid):
    """On-CPU nanoseconds of the process's live threads (/proc/PID/task/*/schedstat).
    The (d) CPU target is judged on it: over 30 s idle, utime+stime counts
    a handful of 10 ms ticks, too coarse to rank two systems. A thread that
    exits takes its time with it."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            pass
    return total


def idle_window(procs, seconds, leader=None):
    """RSS and CPU of each process over an idle window (nothing polls them).

    RSS: the largest VmRSS sampled once a second. CPU: utime+stime over the
    window, scaled to 30 s, and the schedstat sum (ns), on which the target
    is judged.
    `leader`, if given, is the name of the process that leads.
    """
    start_cpu = {p.pid: cpu_seconds(p.pid) for p in procs}
    start_ns = {p.pid: cpu_ns_threads(p.pid) for p in procs}
    peak = {p.pid: rss_bytes(p.pid) for p in procs}
    t0 = now()
    end = t0 + seconds
    while True:
        left = end - now()
        if left <= 0:
            break
        time.sleep(min(1.0, left))
        for p in procs:
            peak[p.pid] = max(peak[p.pid], rss_bytes(p.pid))
    elapsed = now() - t0
    out = []
    for p in procs:
        if p.poll() is not None:
            raise RuntimeError(f"{p.bench_name} exited during the idle window")
        cpu = (cpu_seconds(p.pid) - start_cpu[p.pid]) * 30.0 / elapsed
        cpu_ns = (cpu_ns_threads(p.pid) - start_ns[p.pid]) * 30.0 / elapsed / 1e9
        entry = {"agent": p.bench_name, "rss_mib": peak[p.pid] / MIB, "cpu_s_per_30s": cpu, "cpu_s_per_30s_schedstat": cpu_ns}
        if leader is not None:
            entry["role"] = "leader" if p.bench_name == leader else "follower"
        out.append(entry)
    return out


# --------------------------------------------------------------------------
# Polling
# --------------------------------------------------------------------------


def http_json(url, data=None, timeout=0.5):
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"} if data else {})
    with HTTP.open(req, timeout=timeout) as resp:
        return json.loads(resp.read())


def timed(query):
    """Run query(); return (value or None on error, midpoint of the call)."""
    a = now()
    try:
        value = query()
    except Exception:  # noqa: BLE001 - a member that does not answer is "not yet"
        value = None
    return value, (a + now()) / 2


def wait_each(queries, holds, t0, timeout, interval, parallel=False, what="condition"):
    """Poll each observer until holds(value) is true for it (a sticky condition:
    once seen it stays true, so a satisfied observer is not asked again).
    Returns {observer: seconds from t0 to the first poll that saw it}."""
    pending = dict(queries)
    seen = {}
    deadline = t0 + timeout
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=max(1, len(queries))) if parallel else None
    try:
        while pending:
            round_start = now()
            if pool:
                futures = {name: pool.submit(timed, q) for name, q in pending.items()}
                results = {name: f.result() for name, f in futures.items()}
            else:
                results = {name: timed(q) for name, q in pending.items()}
            for name, (value, at) in results.items():
                if value is not None and holds(value):
                    seen[name] = at - t0
                    del pending[name]
            if not pending:
                break
            if now() > deadline:
                raise Timeout(f"{what}: not seen at {sorted(pending)} within {timeout:.0f} s")
            time.sleep(max(0.0, interval - (now() - round_start)))
    finally:
        if pool:
            pool.shutdown(wait=True)
    return seen


def wait_joint(queries, holds, t0, timeout, interval, what="condition"):
    """Poll every observer each round until holds({observer: value}) is true for
    one round's answers together. Returns (seconds from t0 to the latest answer
    of that round, the answers)."""
    deadline = t0 + timeout
    while True:
        round_start = now()
        results = {name: timed(q) for name, q in queries.items()}
        values = {name: v for name, (v, _) in results.items()}
        if all(v is not None for v in values.values()) and holds(values):
            return max(at for _, at in results.values()) - t0, values
        if now() > deadline:
            raise Timeout(f"{what}: not reached within {timeout:.0f} s; last answers: {values}")
        time.sleep(max(0.0, interval - (now() - round_start)))


# --------------------------------------------------------------------------
# serf
# --------------------------------------------------------------------------


def serf_members(rpc_port):
    r = subprocess.run(
        ["serf", "members", "-rpc-addr", f"127.0.0.1:{rpc_port}", "-format", "json"],
        capture_output=True,
        timeout=5,
    )
    if r.returncode != 0:
        raise RuntimeError(r.stderr.decode(errors="replace"))
    return {m["name"]: m["status"] for m in json.loads(r.stdout)["members"]}


def serf_trial(cfg, trial, ports, rng):
    n = cfg.serf_members
    tmp = tempfile.mkdtemp(prefix=f"bench-serf-{trial}-")
    TEMP_DIRS.append(tmp)
    agents = []
    try:
        nodes = [(f"s{i + 1}", ports.take(), ports.take()) for i in range(n)]
        names = [name for name, _, _ in nodes]
        for i, (name, port, rpc) in enumerate(nodes):
            argv = ["serf", "agent", "-node", name, "-bind", f"127.0.0.1:{port}", "-rpc-addr", f"127.0.0.1:{rpc}"]
            if i > 0:
                argv += ["-join", f"127.0.0.1:{nodes[0][1]}"]
            agents.append(PROCS.spawn(name, argv, tmp))
            if i == 0:  # -join exits on failure: wait for the first agent's RPC
                wait_each({name: lambda r=rpc: serf_members(r)}, lambda v: True, now(), 30, 0.05, what="serf s1 up")
        rpcs = {name: rpc for name, _, rpc in nodes}
        queries = {name: (lambda r=rpc: serf_members(r)) for name, rpc in rpcs.items()}
        t_start = now()
        wait_each(
            queries,
            lambda m: len(m) == n and all(s == "alive" for s in m.values()),
            t_start,
            cfg.settle_timeout,
            0.1,
            parallel=True,
            what="serf converged",
        )
        settle = now() - t_start
        time.sleep(cfg.settle_grace)
        idle = idle_window(agents, cfg.idle_seconds) if cfg.idle_seconds > 0 else []
        victim = rng.randrange(n)
        vname = names[victim]
        survivors = {name: q for name, q in queries.items() if name != vname}
        t0 = now()
        Procs.kill9(agents[victim])
        seen = wait_each(
            survivors,
            lambda m: m.get(vname) == "failed",
            t0,
            cfg.detect_timeout,
            cfg.poll,
            parallel=True,
            what=f"serf: {vname} failed",
        )
        return {
            "settle_s": settle,
            "victim": vname,
            "detect_all_s": max(seen.values()),
            "detect_first_s": min(seen.values()),
            "per_survivor_s": seen,
            "idle": idle,
        }
    except Exception:
        for a in agents:
            print(f"    --- {a.bench_name} log tail ---\n{tail(a.bench_log)}")
        raise
    finally:
        for a in agents:
            PROCS.stop(a)


# --------------------------------------------------------------------------
# etcd
# --------------------------------------------------------------------------

ETCD_CONFIGS = {
    "default": [],
    "matched": ["--heartbeat-interval", "50", "--election-timeout", "250"],
}


def etcd_status(client_port):
    # The v3 gRPC gateway's Maintenance.Status: the same answer as
    # `etcdctl endpoint status`, without starting a process per poll.
    d = http_json(f"http://127.0.0.1:{client_port}/v3/maintenance/status", data=b"{}")
    return {
        "id": str(d["header"]["member_id"]),
        "leader": str(d.get("leader", "0")),  # proto3 JSON omits a zero
        "term": int(d.get("raftTerm", 0)),
    }


def etcdctl_status(client_ports):
    r = subprocess.run(
        ["etcdctl", "--endpoints", ",".join(f"127.0.0.1:{p}" for p in client_ports), "endpoint", "status", "-w", "json"],
        capture_output=True,
        timeout=10,
        env=dict(os.environ, ETCDCTL_API="3"),
    )
    if r.returncode != 0:
        raise RuntimeError(r.stderr.decode(errors="replace"))
    return [{"id": str(e["Status"]["header"]["member_id"]), "leader": str(e["Status"]["leader"])} for e in json.loads(r.stdout)]


def etcd_trial(cfg, trial, ports, config, measure_idle):
    n = cfg.etcd_members
    tmp = tempfile.mkdtemp(prefix=f"bench-etcd-{config}-{trial}-")
    TEMP_DIRS.append(tmp)
    procs = []
    try:
        nodes = [(f"e{i + 1}", ports.take(), ports.take()) for i in range(n)]
        initial = ",".join(f"{name}=http://127.0.0.1:{peer}" for name, peer, _ in nodes)
        for name, peer, client in nodes:
            argv = [
                "etcd",
                "--name", name,
                "--data-dir", os.path.join(tmp, name),
                "--listen-peer-urls", f"http://127.0.0.1:{peer}",
                "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
                "--listen-client-urls", f"http://127.0.0.1:{client}",
                "--advertise-client-urls", f"http://127.0.0.1:{client}",
                "--initial-cluster", initial,
                "--initial-cluster-state", "new",
                "--initial-cluster-token", f"bench-{config}-{trial}-{os.getpid()}",
                "--logger", "zap",
                "--log-outputs", "stderr",
            ] + ETCD_CONFIGS[config]
            procs.append(PROCS.spawn(name, argv, tmp))
        clients = {name: client for name, _, client in nodes}
        queries = {name: (lambda c=client: etcd_status(c)) for name, client in clients.items()}
        t_start = now()

        def one_leader(vs):
            leaders = {v["leader"] for v in vs.values()}
            ids = {v["id"] for v in vs.values()}
            return len(leaders) == 1 and leaders <= ids

        _, values = wait_joint(queries, one_leader, t_start, cfg.settle_timeout, 0.1, what="etcd leader")
        settle = now() - t_start
        leader_id = next(iter(values.values()))["leader"]
        ctl = etcdctl_status(list(clients.values()))
        etcdctl_agrees = all(e["leader"] == leader_id for e in ctl)
        if not etcdctl_agrees:
            raise RuntimeError(f"etcdctl disagrees about the leader: {ctl} vs {leader_id}")
        time.sleep(cfg.settle_grace)
        leader_name = next(name for name, v in values.items() if v["id"] == leader_id)
        idle = idle_window(procs, cfg.idle_seconds, leader_name) if measure_idle and cfg.idle_seconds > 0 else []
        # The leader again: it may have changed during the idle window.
        _, values = wait_joint(queries, one_leader, now(), 30, cfg.poll, what="etcd leader")
        leader_id = next(iter(values.values()))["leader"]
        vname = next(name for name, v in values.items() if v["id"] == leader_id)
        old_term = values[vname]["term"]
        victim = procs[[name for name, _, _ in nodes].index(vname)]
        survivors = {name: q for name, q in queries.items() if name != vname}

        def new_leader(vs):
            leaders = {v["leader"] for v in vs.values()}
            return len(leaders) == 1 and leaders.pop() not in ("0", leader_id)

        t0 = now()
        Procs.kill9(victim)
        elapsed, after = wait_joint(survivors, new_leader, t0, cfg.detect_timeout, cfg.poll, what="etcd new leader")
        new_id = next(iter(after.values()))["leader"]
        return {
            "settle_s": settle,
            "victim": vname,
            "new_leader": next((n for n, v in after.items() if v["id"] == new_id), new_id),
            "term_before": old_term,
            "term_after": max(v["term"] for v in after.values()),
            "leader_all_s": elapsed,
            "etcdctl_agrees": etcdctl_agrees,
            "idle": idle,
        }
    except Exception:
        for p in procs:
            print(f"    --- {p.bench_name} log tail ---\n{tail(p.bench_log)}")
        raise
    finally:
        for p in procs:
            PROCS.stop(p)


# --------------------------------------------------------------------------
# quorate
# --------------------------------------------------------------------------


# quorate's configurations: name -> the agent's timing flags. `matched` is the
# lan profile with the Raft timing etcd runs at in its `matched` configuration
# (the same flags and numbers: a 50 ms heartbeat, election timeouts from
# 250 ms up to twice that); SWIM and view timing stay lan's.
QUORATE_CONFIGS = {
    "lan": ["--profile", "lan"],
    "matched": ["--profile", "lan"] + ETCD_CONFIGS["matched"],
    "fast": ["--profile", "fast"],
}


def q_status(http_port):
    return http_json(f"http://127.0.0.1:{http_port}/v1/status")


def q_rebalance_histogram(http_port):
    with HTTP.open(f"http://127.0.0.1:{http_port}/metrics", timeout=0.5) as resp:
        text = resp.read().decode()
    out = {}
    for line in text.splitlines():
        for key in ("sum", "count"):
            if line.startswith(f"quorate_rebalance_to_stable_seconds_{key} "):
                out[key] = float(line.split()[1])
    return out


class QuorateCluster:
    def __init__(self, cfg, trial, ports, config, label):
        self.cfg = cfg
        self.config = config
        self.tmp = tempfile.mkdtemp(prefix=f"bench-quorate-{config}-{label}-{trial}-")
        TEMP_DIRS.append(self.tmp)
        self.ports = ports
        self.agents = {}  # name -> (proc, bind port, http port)
        self.seeds = []

    def _spawn(self, name, port, seeds, bootstrap_expect=None):
        http = self.ports.take()
        argv = [
            self.cfg.quorate_bin, "agent",
            "--name", name,
            "--bind", f"127.0.0.1:{port}",
            "--http", f"127.0.0.1:{http}",
            "--data-dir", os.path.join(self.tmp, name),
            "--cluster", "bench",
        ] + QUORATE_CONFIGS[self.config]
        for seed in seeds:
            argv += ["--join", f"127.0.0.1:{seed}"]
        if bootstrap_expect:
            argv += ["--bootstrap-expect", str(bootstrap_expect)]
        proc = PROCS.spawn(name, argv, self.tmp)
        self.agents[name] = (proc, port, http)
        return proc

    def start_initial(self, n):
        """Start n agents with --bootstrap-expect n; each is told every initial
        member's address (its own included, as a deployment's static list would)."""
        names = [f"q{i + 1}" for i in range(n)]
        self.seeds = [self.ports.take() for _ in names]
        for name, port in zip(names, self.seeds):
            self._spawn(name, port, self.seeds, bootstrap_expect=n)
        return names

    def start_joiner(self, name):
        """Start one more agent that joins through the initial members."""
        return self._spawn(name, self.ports.take(), self.seeds)

    def query(self, name):
        http = self.agents[name][2]
        return lambda: q_status(http)

    def queries(self, names):
        return {name: self.query(name) for name in names}

    def settled(self, names, timeout):
        """Wait until every agent knows the same leader, every agent sees every
        name alive, every agent's view is exactly `names`, and the leader says
        stable. Returns the leader's name."""
        want = set(names)

        def ok(vs):
            leaders = {v["leader"] for v in vs.values()}
            if len(leaders) != 1 or None in leaders:
                return False
            leader = leaders.pop()
            if leader not in vs or not vs[leader]["is_leader"] or not vs[leader]["stable"]:
                return False
            for v in vs.values():
                alive = {m["name"] for m in v["members"] if m["state"] == "alive"}
                if not want <= alive or set(v["view"]) != want:
                    return False
            return True

        _, values = wait_joint(self.queries(names), ok, now(), timeout, 0.1, what=f"quorate {self.config} settled")
        return next(iter(values.values()))["leader"]

    def wait_leader_stable(self, t0, leader_hint, names, holds, timeout, what):
        """Poll the leader until its status satisfies holds(status); follows a
        leader change. Returns seconds from t0 and the status."""
        deadline = t0 + timeout
        leader = leader_hint
        while True:
            round_start = now()
            value, at = timed(self.query(leader))
            if value is not None and value["is_leader"] and value["stable"] and holds(value):
                return at - t0, value
            if value is not None and value["leader"] and value["leader"] != leader and value["leader"] in names:
                leader = value["leader"]
            elif value is None or not value["is_leader"]:
                for other in names:  # find whoever leads now
                    v, _ = timed(self.query(other))
                    if v is not None and v["is_leader"]:
                        leader = other
                        break
            if now() > deadline:
                raise Timeout(f"{what}: not reached within {timeout:.0f} s; last: {value}")
            time.sleep(max(0.0, self.cfg.poll - (now() - round_start)))

    def procs(self, names=None):
        return [self.agents[n][0] for n in (names or self.agents)]

    def dump(self):
        for name, (proc, _, _) in self.agents.items():
            print(f"    --- {name} log tail ---\n{tail(proc.bench_log)}")

    def stop(self):
        for proc, _, _ in self.agents.values():
            PROCS.stop(proc)


def extra(measure):
    """An extra figure: its failure is logged and recorded as None, not fatal."""
    try:
        return measure()
    except Timeout as e:
        log(f"  (extra measurement failed: {e})")
        return None, None


def quorate_failure_trial(cfg, trial, ports, config, rng):
    """(d) idle, then (a): kill -9 a non-leader, every survivor marks it dead;
    then (extra) the leader's view without it is stable."""
    c = QuorateCluster(cfg, trial, ports, config, "member")
    try:
        names = c.start_initial(cfg.quorate_members)
        t_start = now()
        leader = c.settled(names, cfg.settle_timeout)
        settle = now() - t_start
        time.sleep(cfg.settle_grace)
        idle = idle_window(c.procs(names), cfg.idle_seconds, leader) if cfg.idle_seconds > 0 else []
        leader_after_idle = c.settled(names, 30)
        if leader_after_idle != leader:
            for entry in idle:
                entry["role"] = "leader changed"
            leader = leader_after_idle
        vname = rng.choice([n for n in names if n != leader])
        survivors = [n for n in names if n != vname]
        t0 = now()
        Procs.kill9(c.agents[vname][0])
        seen = wait_each(
            c.queries(survivors),
            lambda s: any(m["name"] == vname and m["state"] == "dead" for m in s["members"]),
            t0,
            cfg.detect_timeout,
            cfg.poll,
            what=f"quorate: {vname} dead",
        )
        stable_s, status = extra(
            lambda: c.wait_leader_stable(
                t0, leader, survivors, lambda s: vname not in s["view"], cfg.detect_timeout, "quorate: stable without the victim"
            )
        )
        return {
            "settle_s": settle,
            "victim": vname,
            "detect_all_s": max(seen.values()),
            "detect_first_s": min(seen.values()),
            "per_survivor_s": seen,
            "kill_to_stable_s": stable_s,
            "epoch_after": status and status["epoch"],
            "idle": idle,
        }
    except Exception:
        c.dump()
        raise
    finally:
        c.stop()


def quorate_leader_trial(cfg, trial, ports, config):
    """(b): kill -9 the leader, all survivors report one new leader; then
    (extra) that leader's view without the old one is stable."""
    c = QuorateCluster(cfg, trial, ports, config, "leader")
    try:
        names = c.start_initial(cfg.quorate_members)
        c.settled(names, cfg.settle_timeout)
        time.sleep(cfg.settle_grace)
        leader = c.settled(names, 30)
        term_before = q_status(c.agents[leader][2])["term"]
        survivors = [n for n in names if n != leader]

        def one_new_leader(vs):
            leaders = {v["leader"] for v in vs.values()}
            return len(leaders) == 1 and leaders.pop() not in (None, leader)

        t0 = now()
        Procs.kill9(c.agents[leader][0])
        elapsed, after = wait_joint(c.queries(survivors), one_new_leader, t0, cfg.detect_timeout, cfg.poll, what="quorate new leader")
        new = next(iter(after.values()))["leader"]
        stable_s, _ = extra(
            lambda: c.wait_leader_stable(
                t0, new, survivors, lambda s: leader not in s["view"], cfg.detect_timeout, "quorate: stable without the old leader"
            )
        )
        return {
            "victim": leader,
            "new_leader": new,
            "term_before": term_before,
            "term_after": max(v["term"] for v in after.values()),
            "leader_all_s": elapsed,
            "kill_to_stable_s": stable_s,
        }
    except Exception:
        c.dump()
        raise
    finally:
        c.stop()


def quorate_join_trial(cfg, trial, ports, config):
    """(c): a 6th agent starts and joins; from its start to the leader's
    status showing stable with a view that includes it."""
    c = QuorateCluster(cfg, trial, ports, config, "join")
    try:
        names = c.start_initial(cfg.quorate_members)
        c.settled(names, cfg.settle_timeout)
        time.sleep(cfg.settle_grace)
        leader = c.settled(names, 30)
        before = q_rebalance_histogram(c.agents[leader][2])
        newcomer = f"q{cfg.quorate_members + 1}"
        t0 = now()
        c.start_joiner(newcomer)
        elapsed, status = c.wait_leader_stable(
            t0, leader, names, lambda s: newcomer in s["view"], cfg.detect_timeout, f"quorate: stable with {newcomer}"
        )
        # The leader's own figure for the same change: view commit -> Stable.
        after = q_rebalance_histogram(c.agents[status["name"]][2]) if status["name"] == leader else {}
        commit_to_stable = None
        if after and after.get("count", 0) > before.get("count", 0):
            commit_to_stable = (after["sum"] - before["sum"]) / (after["count"] - before["count"])
        return {
            "join_to_stable_s": elapsed,
            "epoch_after": status["epoch"],
            "views_committed": (after.get("count", 0) - before.get("count", 0)) if after else None,
            "commit_to_stable_s": commit_to_stable,
        }
    except Exception:
        c.dump()
        raise
    finally:
        c.stop()


# --------------------------------------------------------------------------
# Setup: packages, the quorate binary, versions
# --------------------------------------------------------------------------


def ensure_packages(systems, skip_install):
    need = []
    if "serf" in systems:
        need.append(("serf", "serf"))
    if "etcd" in systems:
        need += [("etcd", "etcd-server"), ("etcdctl", "etcd-client")]
    missing = sorted({pkg for tool, pkg in need if shutil.which(tool) is None})
    if not missing:
        return
    if skip_install:
        sys.exit(f"missing {', '.join(missing)} and --skip-install given")
    if os.geteuid() != 0:
        sys.exit(f"missing {', '.join(missing)}: run as root to install them with apt-get, or install them yourself")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    log(f"apt-get install -y {' '.join(missing)}")
    if subprocess.run(["apt-get", "install", "-y", *missing], env=env).returncode != 0:
        subprocess.run(["apt-get", "update"], env=env, check=True)
        subprocess.run(["apt-get", "install", "-y", *missing], env=env, check=True)
    still = [tool for tool, _ in need if shutil.which(tool) is None]
    if still:
        sys.exit(f"still missing after apt-get: {', '.join(still)}")


def quorate_binary(args):
    if args.quorate_bin:
        return os.path.abspath(args.quorate_bin)
    target = os.environ.get("CARGO_TARGET_DIR") or os.path.join(REPO, "target")
    path = os.path.join(target, "release", "quorate")
    if not args.no_build:
        log("cargo build --release -p quorate")
        subprocess.run(["cargo", "build", "--release", "-p", "quorate"], cwd=REPO, check=True)
    if not os.access(path, os.X_OK):
        sys.exit(f"no quorate binary at {path}")
    return path


def version_of(argv):
    try:
        r = subprocess.run(argv, capture_output=True, timeout=10)
        return (r.stdout or r.stderr).decode(errors="replace").strip().splitlines()[0]
    except Exception as e:  # noqa: BLE001
        return f"unknown ({e})"


def environment(args, systems):
    env = {
        "date_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(sys.argv),
        "host": platform.node(),
        "kernel": platform.release(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
    }
    try:
        with open("/proc/cpuinfo") as f:
            env["cpu_model"] = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), None)
    except OSError:
        pass
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO, capture_output=True, text=True).stdout
        dirty = [line[3:] for line in status.splitlines() if line.strip()]
        env["quorate_commit"] = commit + ("+uncommitted changes" if dirty else "")
        env["uncommitted_files"] = dirty
    except OSError:
        pass
    if "quorate" in systems:
        env["quorate"] = version_of([args.quorate_bin, "--version"])
        env["quorate_bin"] = args.quorate_bin
        with open(args.quorate_bin, "rb") as f:
            env["quorate_bin_sha256"] = hashlib.sha256(f.read()).hexdigest()
        env["quorate_bin_built"] = datetime.datetime.fromtimestamp(
            os.path.getmtime(args.quorate_bin), datetime.timezone.utc
        ).isoformat(timespec="seconds")
    if "serf" in systems:
        env["serf"] = version_of(["serf", "version"])
        env["serf_package"] = version_of(["dpkg-query", "-W", "-f=${Version}", "serf"])
    if "etcd" in systems:
        env["etcd"] = version_of(["etcd", "--version"])
        env["etcd_package"] = version_of(["dpkg-query", "-W", "-f=${Version}", "etcd-server"])
    return env


def loadavg():
    with open("/proc/loadavg") as f:
        return f.read().split()[:3]


# --------------------------------------------------------------------------
# Summary
# --------------------------------------------------------------------------


def stats(values):
    values = [v for v in values if v is not None]
    if not values:
        return None
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def collect(results, system, key):
    return [t[key] for t in results.get(system, []) if t.get("ok") and t.get(key) is not None]


def collect_idle(results, system, key, role=None):
    return [
        a[key]
        for t in results.get(system, [])
        if t.get("ok")
        for a in t.get("idle", [])
        if role is None or a.get("role") == role
    ]


def summarize(results):
    s = {}
    for system in results:
        for key in ("detect_all_s", "detect_first_s", "leader_all_s", "kill_to_stable_s", "join_to_stable_s", "commit_to_stable_s", "settle_s"):
            v = stats(collect(results, system, key))
            if v:
                s[f"{system}.{key}"] = v
        terms = [
            t["term_after"] - t["term_before"]
            for t in results[system]
            if t.get("ok") and t.get("term_after") is not None and t.get("term_before") is not None
        ]
        if terms:
            # More than one term per leader kill: a split vote or a failed round.
            s[f"{system}.elections_needing_more_than_one_term"] = {"count": sum(1 for d in terms if d > 1), "of": len(terms)}
        for key in ("rss_mib", "cpu_s_per_30s", "cpu_s_per_30s_schedstat"):
            v = stats(collect_idle(results, system, key))
            if v:
                s[f"{system}.idle_{key}"] = v
            for role in ("leader", "follower"):
                v = stats(collect_idle(results, system, key, role))
                if v:
                    s[f"{system}.idle_{key}.{role}"] = v
    return s


def fmt(st, unit=""):
    if not st:
        return "—"
    return f"{st['median']:.3f}{unit} [{st['min']:.3f}–{st['max']:.3f}] n={st['n']}"


def ratio_row(summary, label, q_key, p_key, peer_label, target, target_ratio=None, absolute=None):
    q, p = summary.get(q_key), summary.get(p_key)
    ratio = q["median"] / p["median"] if q and p and p["median"] > 0 else None
    verdicts = []
    if target_ratio is not None and ratio is not None:
        verdicts.append("met" if ratio <= target_ratio else f"MISSED ({ratio:.2f}× > {target_ratio}×)")
    if absolute is not None and q:
        verdicts.append("met" if q["median"] <= absolute else f"MISSED ({q['median']:.2f} > {absolute})")
    return {
        "metric": label,
        "quorate": q,
        "peer": peer_label,
        "peer_value": p,
        "ratio": ratio,
        "target": target,
        "verdict": ", ".join(verdicts) if verdicts else "—",
    }


def table(summary, configs):
    """Rows of quorate against its peers. The targets are judged on `lan` (the
    default), except (b) against etcd at matched timeouts, judged on quorate's
    `matched`; every other row is reported for information."""
    rows = []
    for conf in configs:
        qs = f"quorate-{conf}"
        tag = f" [{conf}]"
        main = conf == "lan"

        def row(label, q_key, p_key, peer, target=None, ratio=None, absolute=None):
            # target None: a figure reported for information only.
            if target is None:
                return ratio_row(summary, label + tag, q_key, p_key, peer, "report")
            return ratio_row(summary, label + tag, q_key, p_key, peer, target, ratio, absolute)

        def lan_target(text, ratio=None, absolute=None):
            return {"target": text, "ratio": ratio, "absolute": absolute} if main else {}

        if conf == "matched":
            vs_matched = {"target": "≤ 1.0× etcd matched", "ratio": 1.0}
        elif conf == "lan":
            vs_matched = {"target": "report (not matched)"}
        else:
            vs_matched = {}
        rows += [
            row("(a) kill -9 member → all survivors mark it dead (s)", f"{qs}.detect_all_s", "serf.detect_all_s", "serf", **lan_target("≤ 0.5× serf", 0.5)),
            row("(b) kill -9 leader → one new leader at all survivors (s)", f"{qs}-leader.leader_all_s", "etcd-default.leader_all_s", "etcd defaults", **lan_target("≤ 0.5× etcd", 0.5)),
            row("(b) kill -9 leader → one new leader at all survivors (s)", f"{qs}-leader.leader_all_s", "etcd-matched.leader_all_s", "etcd hb 50 / et 250", **vs_matched),
            row("(c) 6th agent starts → leader stable with it in the view (s)", f"{qs}-join.join_to_stable_s", "-", "—"),
            row("(d) idle RSS per agent, peak over the window (MiB)", f"{qs}.idle_rss_mib", "serf.idle_rss_mib", "serf", **lan_target("≤ 10 MiB", absolute=10.0)),
            row("(d) idle CPU-s per 30 s per agent, /proc ticks (10 ms)", f"{qs}.idle_cpu_s_per_30s", "serf.idle_cpu_s_per_30s", "serf"),
            row("(d) idle CPU-s per 30 s, the quorate leader only", f"{qs}.idle_cpu_s_per_30s.leader", "serf.idle_cpu_s_per_30s", "serf"),
            row("(d) idle CPU-s per 30 s, quorate followers only", f"{qs}.idle_cpu_s_per_30s.follower", "serf.idle_cpu_s_per_30s", "serf"),
            # The target is judged at nanosecond resolution: over 30 s idle both
            # use a handful of 10 ms ticks, too coarse to rank them.
            row("(d) idle CPU-s per 30 s per agent, from schedstat (ns)", f"{qs}.idle_cpu_s_per_30s_schedstat", "serf.idle_cpu_s_per_30s_schedstat", "serf", **lan_target("≤ 1.0× serf", 1.0)),
            row("(d) idle CPU-s per 30 s, leader only, from schedstat (ns)", f"{qs}.idle_cpu_s_per_30s_schedstat.leader", "serf.idle_cpu_s_per_30s_schedstat", "serf"),
            row("(d) idle CPU-s per 30 s, followers only, from schedstat (ns)", f"{qs}.idle_cpu_s_per_30s_schedstat.follower", "serf.idle_cpu_s_per_30s_schedstat", "serf"),
            row("(extra) kill -9 member → leader stable without it (s)", f"{qs}.kill_to_stable_s", "-", "—"),
            row("(extra) kill -9 leader → new leader stable without it (s)", f"{qs}-leader.kill_to_stable_s", "-", "—"),
            row("(extra) (c) as the leader's metric: view commit → Stable (s)", f"{qs}-join.commit_to_stable_s", "-", "—"),
            row("(extra) kill -9 member → first survivor marks it dead (s)", f"{qs}.detect_first_s", "serf.detect_first_s", "serf"),
        ]
    rows += [
        ratio_row(summary, "(extra) etcd idle RSS per member (MiB)", "-", "etcd-default.idle_rss_mib", "etcd defaults", "report"),
        ratio_row(summary, "(extra) etcd idle CPU-s per 30 s per member", "-", "etcd-default.idle_cpu_s_per_30s", "etcd defaults", "report"),
        ratio_row(summary, "(extra) etcd idle CPU-s per 30 s, leader only", "-", "etcd-default.idle_cpu_s_per_30s.leader", "etcd defaults", "report"),
        ratio_row(summary, "(extra) etcd idle CPU-s per 30 s, followers only", "-", "etcd-default.idle_cpu_s_per_30s.follower", "etcd defaults", "report"),
    ]
    return rows


def print_table(rows):
    head = ["metric", "quorate: median [min–max]", "peer", "peer: median [min–max]", "ratio", "target", "verdict"]
    cells = [
        [r["metric"], fmt(r["quorate"]), r["peer"], fmt(r["peer_value"]), f"{r['ratio']:.2f}" if r["ratio"] is not None else "—", r["target"], r["verdict"]]
        for r in rows
        if r["quorate"] or r["peer_value"]
    ]
    widths = [max(len(str(c[i])) for c in cells + [head]) for i in range(len(head))]
    line = lambda c: "| " + " | ".join(str(x).ljust(w) for x, w in zip(c, widths)) + " |"  # noqa: E731
    print(line(head))
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for c in cells:
        print(line(c))


# --------------------------------------------------------------------------


def main():
    global KEEP_TEMP
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=5, help="trials per measurement (default 5)")
    ap.add_argument("--only", default="serf,etcd,quorate", help="serf, etcd, quorate, or a comma list (default all)")
    ap.add_argument("--skip-install", action="store_true", help="never run apt-get")
    ap.add_argument("--quorate-bin", help="use this quorate binary instead of building target/release/quorate")
    ap.add_argument("--no-build", action="store_true", help="do not run cargo build; use target/release/quorate as it is")
    ap.add_argument(
        "--quorate-configs",
        "--quorate-profiles",
        dest="quorate_configs",
        default="lan,matched",
        help="comma list of quorate configurations: lan (--profile lan), matched (lan with --heartbeat-interval 50 "
        "--election-timeout 250, etcd's matched timing), fast (--profile fast); default lan,matched",
    )
    ap.add_argument("--etcd-configs", default="default,matched", help="default (etcd's own timeouts) and/or matched (--heartbeat-interval 50 --election-timeout 250)")
    ap.add_argument("--idle-seconds", type=float, default=30.0, help="idle window for (d) (default 30; 0 skips (d))")
    ap.add_argument("--settle-grace", type=float, default=5.0, help="wait after a cluster settles before measuring (default 5 s)")
    ap.add_argument("--poll-ms", type=float, default=15.0, help="poll interval while timing (default 15 ms)")
    ap.add_argument("--settle-timeout", type=float, default=90.0)
    ap.add_argument("--detect-timeout", type=float, default=90.0)
    ap.add_argument("--base-port", type=int, default=24000, help="first loopback port to try (default 24000; every port is checked free)")
    ap.add_argument("--seed", type=int, default=None, help="seed for the choice of victims")
    ap.add_argument("--json", default=None, help="where to write the results (default ./quorate-bench-<UTC time>.json)")
    ap.add_argument("--keep-temp", action="store_true", help="keep data dirs and logs (printed) instead of deleting them")
    args = ap.parse_args()

    systems = [s.strip() for s in args.only.split(",") if s.strip()]
    for s in systems:
        if s not in ("serf", "etcd", "quorate"):
            ap.error(f"--only: unknown system {s!r}")
    configs = [c.strip() for c in args.quorate_configs.split(",") if c.strip()]
    for c in configs:
        if c not in QUORATE_CONFIGS:
            ap.error(f"--quorate-configs: unknown configuration {c!r} (one of {', '.join(QUORATE_CONFIGS)})")
    etcd_configs = [c.strip() for c in args.etcd_configs.split(",") if c.strip()]
    for c in etcd_configs:
        if c not in ETCD_CONFIGS:
            ap.error(f"--etcd-configs: unknown {c!r}")
    if args.trials < 1:
        ap.error("--trials must be at least 1")
    KEEP_TEMP = args.keep_temp

    ensure_packages(systems, args.skip_install)
    if "quorate" in systems:
        args.quorate_bin = quorate_binary(args)

    cfg = argparse.Namespace(
        quorate_bin=args.quorate_bin,
        serf_members=5,
        etcd_members=3,
        quorate_members=5,
        idle_seconds=args.idle_seconds,
        settle_grace=args.settle_grace,
        poll=args.poll_ms / 1000.0,
        settle_timeout=args.settle_timeout,
        detect_timeout=args.detect_timeout,
    )
    seed = args.seed if args.seed is not None else random.randrange(2**32)
    rng = random.Random(seed)
    ports = Ports(args.base_port)
    env = environment(args, systems)
    env["quorate_configs"] = {c: QUORATE_CONFIGS[c] for c in configs} if "quorate" in systems else {}
    env["etcd_configs"] = {c: ETCD_CONFIGS[c] for c in etcd_configs} if "etcd" in systems else {}
    env["seed"] = seed
    env["loadavg_start"] = loadavg()
    log(f"quorate bench: {env['command']}  (seed {seed}; load average {' '.join(env['loadavg_start'])})")
    if "quorate" in systems:
        for c in configs:
            log(f"quorate {c}: {' '.join(QUORATE_CONFIGS[c])}")
    log("note: no false-positive check under 10 % loss here (needs root netem/nftables rules; see bench/README.md)")

    results = {}

    def run(system, fn, *a):
        log(f"trial {trial + 1}/{args.trials}: {system}")
        t = now()
        try:
            r = fn(*a)
            r["ok"] = True
        except (Timeout, RuntimeError, subprocess.SubprocessError, OSError, ValueError, KeyError) as e:
            log(f"  {system} trial failed: {e}")
            r = {"ok": False, "error": str(e)}
        r["trial"] = trial + 1
        r["wall_s"] = now() - t
        r["loadavg"] = loadavg()
        results.setdefault(system, []).append(r)
        brief = {k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items() if k.endswith("_s") and v is not None}
        idle = r.get("idle") or []
        if idle:
            brief["rss_mib"] = round(statistics.median(a["rss_mib"] for a in idle), 2)
            brief["cpu_s_per_30s"] = round(statistics.median(a["cpu_s_per_30s"] for a in idle), 3)
        log(f"  {system}: {brief}")

    started = now()
    try:
        for trial in range(args.trials):
            # Systems take turns within each trial, so load from anything else
            # on the machine falls on all of them alike.
            if "serf" in systems:
                run("serf", serf_trial, cfg, trial, ports, rng)
            if "etcd" in systems:
                for c in etcd_configs:
                    run(f"etcd-{c}", etcd_trial, cfg, trial, ports, c, c == "default")
            if "quorate" in systems:
                for c in configs:
                    run(f"quorate-{c}", quorate_failure_trial, cfg, trial, ports, c, rng)
                    run(f"quorate-{c}-leader", quorate_leader_trial, cfg, trial, ports, c)
                    run(f"quorate-{c}-join", quorate_join_trial, cfg, trial, ports, c)
    finally:
        PROCS.stop_all()

    summary = summarize(results)
    rows = table(summary, configs)
    env["loadavg_end"] = loadavg()
    env["wall_s"] = now() - started
    out = {"environment": env, "summary": summary, "table": rows, "trials": results}
    path = args.json or f"quorate-bench-{datetime.datetime.now(datetime.timezone.utc).strftime('%Y%m%dT%H%M%SZ')}.json"
    with open(path, "w") as f:
        json.dump(out, f, indent=2)

    print()
    print(f"quorate vs peers, {args.trials} trials, {env['date_utc']}, {env.get('cpus')} CPUs, load average {' '.join(env['loadavg_start'])} → {' '.join(env['loadavg_end'])}")
    for key in ("quorate", "quorate_commit", "serf", "serf_package", "etcd", "etcd_package"):
        if key in env:
            print(f"  {key}: {env[key]}")
    print()
    print_table(rows)
    print()
    terms = [
        f"{system[: -len('-leader')] if system.endswith('-leader') else system} {summary[key]['count']} of {summary[key]['of']}"
        for system in results
        for key in [f"{system}.elections_needing_more_than_one_term"]
        if key in summary
    ]
    if terms:
        print(f"leader kills whose election needed more than one term: {', '.join(terms)}")
    failed = {s: sum(1 for t in ts if not t.get("ok")) for s, ts in results.items()}
    if any(failed.values()):
        print(f"failed trials: {failed}")
    print("ratio = quorate median / peer median. Times are seconds from the kill (or the joiner's start) to the")
    print(f"first poll (every {args.poll_ms:.0f} ms) that saw the condition. {IDLE_NOTE}, over {args.idle_seconds:.0f} s idle.")
    print("Not measured here: false positives under 10 % loss (needs root network emulation).")
    print(f"results: {os.path.abspath(path)}")
    if KEEP_TEMP:
        print(f"temp dirs kept: {' '.join(TEMP_DIRS)}")


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        print("interrupted; every process started here was killed", file=sys.stderr)
        sys.exit(130)
