#!/usr/bin/env python3
"""Fan-out benchmark: hubbub against a minimal Node `ws` broadcast server.

One sender, N receivers in one group conversation. The server under test is
pinned to one CPU, the Node load generator (bench/node/loadgen.js) to the
other. Each target is measured in two modes:

  throughput  the sender keeps a window of messages not yet received by every
              receiver; result: deliveries per second (messages x receivers)
  latency     the sender sends at a fixed rate (default 50 msg/s); result:
              send-to-receive latency percentiles over every delivery

Usage (from the repository root):

  .venv/bin/python bench/fanout.py                     # both targets, 1000 receivers, 3 runs
  .venv/bin/python bench/fanout.py --target ref --receivers 200 --runs 1
  .venv/bin/python bench/fanout.py --json results.json
  .venv/bin/python bench/fanout.py --target fallback   # hubbub over /ws, then over /sse
  .venv/bin/python bench/fanout.py --before /tmp/old/src --mode throughput

``--before SRC`` adds a third target, ``before``: hubbub run with another
tree's code (an older commit's ``src/``), in the same runs as ``hubbub`` and
the reference, so that whether the ratio against the reference fell is read
from one run's figures (the paired ratio hubbub/before, run by run).

Target ``sse`` is hubbub with its receivers on the HTTP fallback transport
(``GET /sse``; the sender stays on the WebSocket); ``fallback`` runs ``hubbub``
and ``sse`` alternately in the same run.

Only the standard library is needed for the reference target; the hubbub
target also needs PyJWT and httpx (both in the project's virtualenv).
See bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import secrets
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
NODE_DIR = BENCH_DIR / "node"
LOADGEN = NODE_DIR / "loadgen.js"
REF_SERVER = NODE_DIR / "ws_broadcast_server.js"


class BenchError(Exception):
    """A run could not be carried out (server did not start, setup failed...)."""


def log(msg: str) -> None:
    print(f"[fanout] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------- helpers --


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def command_output(cmd: list[str], timeout: float = 20) -> str:
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (p.stdout or p.stderr).strip() or "unknown"


def raise_fd_limit(want: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def stop_process(proc: subprocess.Popen, name: str, grace: float = 10.0) -> None:
    """Stop a server started by this script (its own session / process group)."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        log(f"{name} (pid {proc.pid}) ignored SIGTERM for {grace:.0f} s, killing it")
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def median(values: list[float]) -> float | None:
    vals = [v for v in values if v is not None]
    return statistics.median(vals) if vals else None


# ------------------------------------------------------------------ setup --


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.workdir = Path(tempfile.mkdtemp(prefix="hubbub-bench-"))
        self.node = args.node
        self.pin_ok = (not args.no_pin) and shutil.which("taskset") is not None
        if not args.no_pin and not self.pin_ok:
            log("taskset not found: running unpinned")
        if self.pin_ok and (os.cpu_count() or 1) < 2:
            log("fewer than 2 CPUs: running unpinned")
            self.pin_ok = False
        self.hubbub_frame_bytes: int | None = None

    def pin(self, cpu: str) -> list[str]:
        return ["taskset", "-c", cpu] if self.pin_ok else []

    def ensure_node_modules(self) -> None:
        if (NODE_DIR / "node_modules" / "ws" / "package.json").exists():
            return
        npm = shutil.which("npm")
        if npm is None:
            raise BenchError("npm not found; install Node.js 18+ with npm")
        has_lock = (NODE_DIR / "package-lock.json").exists()
        cmd = [npm, "ci" if has_lock else "install", "--no-audit", "--no-fund"]
        log(f"installing Node dependencies: {' '.join(cmd[1:])} in {NODE_DIR}")
        p = subprocess.run(cmd, cwd=NODE_DIR, capture_output=True, text=True, timeout=600)
        if p.returncode != 0:
            raise BenchError(f"npm failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")

    # ---------------------------------------------------------- hubbub --

    def start_hubbub(self, src: str | None = None) -> dict[str, Any]:
        """hubbub on a free port with its group and tokens; ``src``: that tree's code."""
        try:
            import httpx
            import jwt
        except ImportError as e:  # pragma: no cover - depends on the venv
            raise BenchError(
                f"the hubbub target needs PyJWT and httpx ({e}); use the project's .venv"
            ) from e

        n = self.args.receivers
        port = free_port()
        data_dir = Path(tempfile.mkdtemp(prefix="data-", dir=self.workdir))
        secret = secrets.token_urlsafe(32)
        env = dict(os.environ)
        env.update(HUBBUB_DATA_DIR=str(data_dir), HUBBUB_JWT_SECRET=secret, HUBBUB_ENV="dev")
        # Limits off unless set (every client connects from this machine, and the
        # senders are the load); set them high to measure what checking costs.
        for name in ("SEND_RATE", "CONNECT_RATE_PER_IP", "MAX_CONNECTIONS_PER_USER"):
            env.setdefault(f"HUBBUB_{name}", "0")
        code = src or (None if self.args.no_src_path else str(REPO_DIR / "src"))
        if code is not None and (Path(code) / "hubbub").is_dir():
            env["PYTHONPATH"] = os.pathsep.join(p for p in [code, env.get("PYTHONPATH", "")] if p)
        elif src is not None:
            raise BenchError(f"--before {src}: no hubbub package there")
        cmd = [
            *self.pin(self.args.server_cpu),
            *(self.args.python, "-m", "hubbub", "run"),
            *("--host", "127.0.0.1", "--port", str(port)),
        ]
        log_path = self.workdir / f"hubbub-{port}.log"
        with open(log_path, "wb") as logf:
            proc = subprocess.Popen(
                cmd,
                cwd=REPO_DIR,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=logf,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        server = {"proc": proc, "name": "hubbub", "log": log_path, "port": port}
        try:
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + self.args.server_start_timeout
            with httpx.Client(timeout=10.0) as client:
                while True:
                    if proc.poll() is not None:
                        raise BenchError(
                            f"hubbub exited with {proc.returncode} before /health answered:\n"
                            f"{tail(log_path)}"
                        )
                    try:
                        if client.get(f"{base}/health").status_code == 200:
                            break
                    except httpx.HTTPError:
                        pass
                    if time.monotonic() > deadline:
                        raise BenchError(
                            "hubbub: GET /health not 200 within "
                            f"{self.args.server_start_timeout} s:\n{tail(log_path)}"
                        )
                    time.sleep(0.1)

                now = int(time.time())
                users = [f"u{i:04d}" for i in range(n)]
                tokens = [
                    jwt.encode({"sub": u, "exp": now + 3600}, secret, algorithm="HS256")
                    for u in users
                ]
                r = client.post(
                    f"{base}/api/v1/conversations",
                    headers={"Authorization": f"Bearer {tokens[0]}"},
                    json={"kind": "group", "title": "bench", "members": users[1:]},
                    timeout=120.0,
                )
                if r.status_code != 201:
                    raise BenchError(
                        f"POST /api/v1/conversations: HTTP {r.status_code}: {r.text[:500]}"
                    )
                try:
                    conv_id = r.json()["conversation"]["id"]
                except (ValueError, KeyError, TypeError) as e:
                    raise BenchError(f"unexpected conversation response: {r.text[:500]}") from e
        except BaseException:
            stop_process(proc, "hubbub")
            raise
        tokens_file = self.workdir / f"tokens-{port}.json"
        tokens_file.write_text(json.dumps(tokens))
        server.update(
            url=f"ws://127.0.0.1:{port}/ws", tokens_file=tokens_file, conversation_id=str(conv_id)
        )
        return server

    # ------------------------------------------------------------- ref --

    def start_ref(self) -> dict[str, Any]:
        port = free_port()
        log_path = self.workdir / f"ref-{port}.log"
        cmd = [*self.pin(self.args.server_cpu), self.node, str(REF_SERVER), str(port)]
        with open(log_path, "wb") as logf:
            proc = subprocess.Popen(
                cmd,
                cwd=NODE_DIR,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=logf,
                start_new_session=True,
            )
        server = {"proc": proc, "name": "ref", "log": log_path, "port": port}
        try:
            deadline = time.monotonic() + self.args.server_start_timeout
            line = b""
            while not line.endswith(b"\n"):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise BenchError(
                        f"ref server not ready within {self.args.server_start_timeout} s"
                    )
                ready, _, _ = select.select([proc.stdout], [], [], left)
                if ready:
                    ch = os.read(proc.stdout.fileno(), 1)
                    if not ch:
                        proc.wait(timeout=5)
                        raise BenchError(
                            f"ref server exited with {proc.returncode}:\n{tail(log_path)}"
                        )
                    line += ch
            if line.strip() != b"ready":
                raise BenchError(f"ref server said {line!r} instead of ready")
        except BaseException:
            stop_process(proc, "ref server")
            raise
        server.update(url=f"ws://127.0.0.1:{port}")
        return server

    # --------------------------------------------------------- loadgen --

    def run_loadgen(self, target: str, mode: str, server: dict[str, Any]) -> dict[str, Any]:
        a = self.args
        duration = a.duration if mode == "throughput" else a.latency_duration
        cmd = [
            *self.pin(a.loadgen_cpu),
            *(self.node, str(LOADGEN)),
            *("--target", "ref" if target == "ref" else "hubbub"),
            *("--url", server["url"], "--mode", mode),
            *("--transport", "sse" if target == "sse" else "ws"),
            *("--receivers", str(a.receivers)),
            *("--warmup", str(a.warmup), "--duration", str(duration)),
            *("--window", str(a.window), "--rate", str(a.rate)),
            *("--body-size", str(a.body_size), "--sample-every", str(a.sample_every)),
            *("--connect-concurrency", str(a.connect_concurrency)),
            *("--drain-timeout", str(a.drain_timeout), "--client", a.client),
            *("--server-pid", str(server["proc"].pid)),
        ]
        if target != "ref":
            cmd += [
                "--tokens",
                str(server["tokens_file"]),
                "--conversation",
                server["conversation_id"],
            ]
        else:
            frame = a.ref_frame_bytes or self.hubbub_frame_bytes or 300
            cmd += ["--ref-frame-bytes", str(frame)]
        if a.coalesce_ms > 0:
            cmd += ["--coalesce-ms", str(a.coalesce_ms)]
        timeout = 60 + a.receivers / 20 + a.warmup + duration + a.drain_timeout
        err_path = self.workdir / f"loadgen-{target}-{mode}-{server['port']}.err"
        with open(err_path, "wb") as errf:
            try:
                p = subprocess.run(
                    cmd,
                    cwd=NODE_DIR,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=errf,
                    timeout=timeout,
                )
            except subprocess.TimeoutExpired as e:
                raise BenchError(
                    f"loadgen did not finish within {timeout:.0f} s:\n{tail(err_path)}"
                ) from e
        lines = [ln for ln in p.stdout.decode(errors="replace").splitlines() if ln.strip()]
        result: dict[str, Any] | None = None
        if lines:
            try:
                result = json.loads(lines[-1])
            except ValueError:
                result = None
        if result is None:
            raise BenchError(f"loadgen exited with {p.returncode} and no result:\n{tail(err_path)}")
        if p.returncode != 0 and result.get("ok"):
            result["ok"] = False
            result["error"] = f"loadgen exit status {p.returncode}"
        if self.args.verbose or not result.get("ok"):
            sys.stderr.write(tail(err_path, 20) + "\n")
        return result

    # ------------------------------------------------------------ runs --

    def run_one(self, target: str, mode: str, run: int) -> dict[str, Any]:
        record: dict[str, Any] = {"target": target, "mode": mode, "run": run}
        server = None
        t0 = time.monotonic()
        try:
            if target == "ref":
                server = self.start_ref()
            else:
                server = self.start_hubbub(self.args.before if target == "before" else None)
            res = self.run_loadgen(target, mode, server)
            record.update(res)
            record["target"] = target  # the load generator calls both hubbub targets hubbub
            if target == "hubbub" and res.get("frame_bytes"):
                self.hubbub_frame_bytes = int(res["frame_bytes"])
        except BenchError as e:
            record.update(ok=False, error=str(e))
        finally:
            if server is not None:
                stop_process(server["proc"], server["name"])
                if server["proc"].stdout is not None:
                    server["proc"].stdout.close()
                if server["proc"].returncode not in (0, -signal.SIGTERM, None) and record.get("ok"):
                    log(f"{server['name']} exited with status {server['proc'].returncode}")
        record["wall_s"] = round(time.monotonic() - t0, 1)
        if record.get("ok"):
            lat = record.get("latency_ms") or {}
            if mode == "throughput":
                log(
                    f"run {run} {target:6s} {mode}: {record['deliveries_per_sec']} deliveries/s, "
                    f"loadgen cpu {fmt_pct((record.get('loadgen') or {}).get('cpu_util'))}, "
                    f"server cpu {fmt_pct((record.get('server') or {}).get('cpu_util'))}"
                )
            else:
                log(
                    f"run {run} {target:6s} {mode}: p50 {lat.get('p50')} ms, "
                    f"p99 {lat.get('p99')} ms, {record.get('received_deliveries')}/"
                    f"{record.get('expected_deliveries')} delivered"
                )
        else:
            log(f"run {run} {target} {mode}: FAILED: {record.get('error')}")
            if server is not None and server.get("log"):
                t = tail(server["log"], 20)
                if t:
                    log(f"{server['name']} log tail:\n{t}")
        return record


# ---------------------------------------------------------------- report --


def fmt_pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.0f}%"


def fmt_num(x: float | None, digits: int = 0) -> str:
    if x is None:
        return "-"
    return f"{x:,.{digits}f}"


def kb_per_connection(result: dict[str, Any]) -> float | None:
    """Server memory the run's connections account for: (end - before) / receivers."""
    server = result.get("server") or {}
    end, before = server.get("rss_kb"), server.get("rss_before_kb")
    if not end or not before or not result.get("receivers"):
        return None
    return float((end - before) / result["receivers"])


def paired_p99(results: list[dict[str, Any]]) -> dict[str, Any] | None:
    """hubbub's p99 against the reference's in the same run (runs alternate targets)."""
    p99: dict[tuple[str, int], float] = {
        (r["target"], r["run"]): r["latency_ms"]["p99"]
        for r in results
        if r["mode"] == "latency" and r.get("ok") and r.get("latency_ms")
    }
    diffs = [
        p99[("hubbub", run)] - p99[("ref", run)]
        for target, run in p99
        if target == "hubbub" and ("ref", run) in p99
    ]
    if not diffs:
        return None
    return {
        "runs": len(diffs),
        "hubbub_lower": sum(d < 0 for d in diffs),
        "median_difference_ms": round(median(diffs), 3),
    }


def summarize(results: list[dict[str, Any]], targets: list[str]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for t in targets:
        thr = [r for r in results if r["target"] == t and r["mode"] == "throughput"]
        lat = [r for r in results if r["target"] == t and r["mode"] == "latency"]
        thr_ok = [r for r in thr if r.get("ok")]
        lat_ok = [r for r in lat if r.get("ok")]
        summary[t] = {
            "throughput_runs": len(thr),
            "throughput_ok": len(thr_ok),
            "deliveries_per_sec": median([r["deliveries_per_sec"] for r in thr_ok]),
            "deliveries_per_sec_all": [r.get("deliveries_per_sec") for r in thr_ok],
            "messages_per_sec": median([r["messages_per_sec"] for r in thr_ok]),
            "frame_bytes": median([r.get("frame_bytes") for r in thr_ok + lat_ok]),
            "loadgen_cpu": median([(r.get("loadgen") or {}).get("cpu_util") for r in thr_ok]),
            "server_cpu": median([(r.get("server") or {}).get("cpu_util") for r in thr_ok]),
            "server_rss_mb": median(
                [((r.get("server") or {}).get("rss_kb") or 0) / 1024 for r in lat_ok]
            ),
            "server_kb_per_connection": median([kb_per_connection(r) for r in lat_ok]),
            "latency_runs": len(lat),
            "latency_ok": len(lat_ok),
            "latency_p50_ms": median([(r.get("latency_ms") or {}).get("p50") for r in lat_ok]),
            "latency_p90_ms": median([(r.get("latency_ms") or {}).get("p90") for r in lat_ok]),
            "latency_p99_ms": median([(r.get("latency_ms") or {}).get("p99") for r in lat_ok]),
            "latency_max_ms": max(
                [(r.get("latency_ms") or {}).get("max") or 0 for r in lat_ok], default=None
            ),
            "latency_lost": sum(r.get("lost") or 0 for r in lat),
            "other_frames_last_s": median([r.get("other_frames_last_s") for r in lat_ok]),
            "other_frames_measured": median([r.get("other_frames_measured") for r in lat_ok]),
            "measure_start_s": median([r.get("measure_start_s") for r in lat_ok]),
        }
    if "hubbub" in summary and "sse" in summary:
        w = summary["hubbub"]["deliveries_per_sec"]
        f = summary["sse"]["deliveries_per_sec"]
        summary["ratio_sse_ws_deliveries"] = round(f / w, 4) if w and f else None
    if "hubbub" in summary and "ref" in summary:
        h = summary["hubbub"]["deliveries_per_sec"]
        r = summary["ref"]["deliveries_per_sec"]
        summary["ratio_hubbub_ref_deliveries"] = round(h / r, 4) if h and r else None
        summary["paired_p99"] = paired_p99(results)
    if "before" in summary:
        b = summary["before"]["deliveries_per_sec"]
        r = summary.get("ref", {}).get("deliveries_per_sec")
        summary["ratio_before_ref_deliveries"] = round(b / r, 4) if b and r else None
        summary["paired_hubbub_before"] = paired_ratios(results, "hubbub", "before")
    return summary


def paired_ratios(results: list[dict[str, Any]], a: str, b: str) -> list[float]:
    """Deliveries/s of target ``a`` over ``b``, run by run (throughput, both ok)."""
    rate = {
        (r["target"], r["run"]): r["deliveries_per_sec"]
        for r in results
        if r["mode"] == "throughput" and r.get("ok") and r.get("deliveries_per_sec")
    }
    runs = sorted({run for _, run in rate})
    paired = [n for n in runs if (a, n) in rate and (b, n) in rate]
    return [round(rate[(a, n)] / rate[(b, n)], 4) for n in paired]


def render_table(
    summary: dict[str, Any], targets: list[str], args: argparse.Namespace, machine: dict[str, Any]
) -> str:
    out = []
    out.append(
        f"fan-out: {args.receivers} receivers, 1 sender, median of {args.runs} run(s); "
        f"throughput window {args.window}, latency at {args.rate:g} msg/s"
    )
    machine_parts = [
        f"{machine['nproc']} CPUs ({machine['cpu_model']})",
        f"python {machine['server_python']}",
        f"node {machine['node']}",
        f"ws {machine['ws']}",
        f"pinned: {machine['pinned']}",
    ]
    out.append("machine: " + ", ".join(machine_parts))
    head = (
        f"{'target':8s} {'deliveries/s':>13s} {'msgs/s':>9s} {'p50 ms':>8s} {'p99 ms':>8s} "
        f"{'frame B':>8s} {'server cpu':>10s} {'loadgen cpu':>11s} {'srv MB':>7s} {'KB/conn':>7s} "
        f"{'ok runs':>8s}"
    )
    out.append(head)
    out.append("-" * len(head))
    for t in targets:
        s = summary[t]
        ok = f"{s['throughput_ok']}/{s['throughput_runs']}+{s['latency_ok']}/{s['latency_runs']}"
        out.append(
            f"{t:8s} {fmt_num(s['deliveries_per_sec']):>13s} "
            f"{fmt_num(s['messages_per_sec'], 1):>9s} "
            f"{fmt_num(s['latency_p50_ms'], 2):>8s} {fmt_num(s['latency_p99_ms'], 2):>8s} "
            f"{fmt_num(s['frame_bytes']):>8s} {fmt_pct(s['server_cpu']):>10s} "
            f"{fmt_pct(s['loadgen_cpu']):>11s} {fmt_num(s['server_rss_mb'], 1):>7s} "
            f"{fmt_num(s['server_kb_per_connection'], 1):>7s} {ok:>8s}"
        )
    paired = summary.get("paired_p99")
    if paired:
        out.append(
            f"p99 hubbub - ref, same run: median {paired['median_difference_ms']:+.2f} ms; "
            f"hubbub lower in {paired['hubbub_lower']} of {paired['runs']} runs"
        )
    for t in targets:
        s = summary[t]
        if s["other_frames_last_s"] is not None:
            out.append(
                f"{t}: last frame other than a delivery (presence) "
                f"{s['other_frames_last_s']:.2f} s after the first connection; "
                f"measuring began at {fmt_num(s['measure_start_s'], 2)} s; "
                f"{fmt_num(s['other_frames_measured'])} such frames while measuring (latency mode)"
            )
    if "ratio_sse_ws_deliveries" in summary:
        ratio = summary["ratio_sse_ws_deliveries"]
        out.append(f"ratio sse/ws deliveries/s: {'-' if ratio is None else f'{ratio:.3f}'}")
    if "ratio_hubbub_ref_deliveries" in summary:
        ratio = summary["ratio_hubbub_ref_deliveries"]
        out.append(f"ratio hubbub/ref deliveries/s: {'-' if ratio is None else f'{ratio:.3f}'}")
    if "ratio_before_ref_deliveries" in summary:
        ratio = summary["ratio_before_ref_deliveries"]
        out.append(f"ratio before/ref deliveries/s: {'-' if ratio is None else f'{ratio:.3f}'}")
        paired = summary["paired_hubbub_before"]
        if paired:
            out.append(
                f"hubbub/before deliveries/s, run by run: {', '.join(f'{x:.3f}' for x in paired)}"
                f" (median {median(paired):.3f})"
            )
    out.append("deliveries/s, msgs/s and cpu: throughput mode; p50/p99: latency mode")
    out.append("srv MB: server resident memory at the end of a latency run (all connections open)")
    out.append("KB/conn: (srv MB - resident memory before the first connection) / receivers")
    out.append("ok runs: throughput ok/total + latency ok/total")
    return "\n".join(out)


def machine_info(bench: Bench) -> dict[str, Any]:
    cpu_model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ws_version = "unknown"
    with contextlib.suppress(OSError, ValueError, KeyError):
        ws_version = json.loads((NODE_DIR / "node_modules" / "ws" / "package.json").read_text())[
            "version"
        ]
    server_python = command_output(
        [bench.args.python, "-c", "import platform; print(platform.python_version())"]
    )
    return {
        "nproc": os.cpu_count(),
        "cpu_model": cpu_model,
        "kernel": platform.release(),
        "server_python": server_python,
        "orchestrator_python": platform.python_version(),
        "node": command_output([bench.node, "--version"]),
        "ws": ws_version,
        "pinned": (
            f"server cpu {bench.args.server_cpu}, loadgen cpu {bench.args.loadgen_cpu}"
            if bench.pin_ok
            else "no"
        ),
        "git_commit": command_output(["git", "-C", str(REPO_DIR), "rev-parse", "--short", "HEAD"]),
    }


# ------------------------------------------------------------------- main --


def default_python() -> str:
    venv = REPO_DIR / ".venv" / "bin" / "python"
    return str(venv) if venv.exists() else sys.executable


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Fan-out benchmark: hubbub vs a minimal Node ws broadcast server.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--target", choices=["hubbub", "ref", "both", "sse", "fallback"], default="both")
    p.add_argument("--mode", choices=["throughput", "latency", "both"], default="both")
    p.add_argument("--receivers", type=int, default=1000, help="connections, sender included")
    p.add_argument("--runs", type=int, default=3, help="repetitions of each target x mode")
    p.add_argument("--duration", type=float, default=10.0, help="measured seconds, throughput mode")
    p.add_argument(
        "--latency-duration",
        type=float,
        default=None,
        help="measured seconds, latency mode (default: --duration)",
    )
    p.add_argument("--warmup", type=float, default=2.0, help="seconds before measuring")
    p.add_argument(
        "--window", type=int, default=64, help="throughput mode in-flight window (messages)"
    )
    p.add_argument("--rate", type=float, default=50.0, help="latency mode send rate (msg/s)")
    p.add_argument("--body-size", type=int, default=80, help="message body length (chars)")
    p.add_argument(
        "--ref-frame-bytes",
        type=int,
        default=0,
        help="pad the ref payload to this size (default: hubbub's observed frame size, else 300)",
    )
    p.add_argument(
        "--sample-every",
        type=int,
        default=20,
        help="throughput mode: every k-th receiver records latency",
    )
    p.add_argument("--connect-concurrency", type=int, default=100)
    p.add_argument("--drain-timeout", type=float, default=10.0)
    p.add_argument(
        "--client",
        choices=["raw", "ws"],
        default="raw",
        help="WebSocket client used by the load generator",
    )
    p.add_argument(
        "--coalesce-ms",
        type=float,
        default=0.0,
        help="throughput mode: loadgen pauses this long per event-loop turn "
        "(headroom check: the result should not drop)",
    )
    p.add_argument("--python", default=default_python(), help="interpreter that runs hubbub")
    p.add_argument(
        "--before",
        metavar="SRC",
        help="another tree's src/: a third target 'before', alternated with hubbub and ref",
    )
    p.add_argument(
        "--no-src-path",
        action="store_true",
        help="do not put the repository's src/ first on PYTHONPATH for hubbub "
        "(use the hubbub installed for --python)",
    )
    p.add_argument("--node", default=shutil.which("node") or "/usr/bin/node")
    p.add_argument("--server-cpu", default="0", help="CPU list for the server (taskset -c)")
    p.add_argument(
        "--loadgen-cpu", default="1", help="CPU list for the load generator (taskset -c)"
    )
    p.add_argument("--no-pin", action="store_true", help="do not use taskset")
    p.add_argument("--server-start-timeout", type=float, default=30.0)
    p.add_argument(
        "--json",
        nargs="?",
        const="-",
        default=None,
        metavar="PATH",
        help="write raw results as JSON to PATH; without PATH, JSON goes to stdout "
        "and the table to stderr",
    )
    p.add_argument("--keep-temp", action="store_true", help="keep the temp dir (logs, tokens)")
    p.add_argument("-v", "--verbose", action="store_true", help="show loadgen diagnostics")
    args = p.parse_args(argv)
    if args.receivers < 1:
        p.error("--receivers must be >= 1")
    if args.runs < 1:
        p.error("--runs must be >= 1")
    if args.latency_duration is None:
        args.latency_duration = args.duration
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    targets = {"both": ["hubbub", "ref"], "fallback": ["hubbub", "sse"]}.get(
        args.target, [args.target]
    )
    if args.before and "hubbub" in targets:
        targets.insert(targets.index("hubbub") + 1, "before")
    modes = ["throughput", "latency"] if args.mode == "both" else [args.mode]
    raise_fd_limit(2 * args.receivers + 4096)
    bench = Bench(args)
    results: list[dict[str, Any]] = []
    try:
        bench.ensure_node_modules()
        machine = machine_info(bench)
        log(f"temp dir {bench.workdir}")
        for run in range(1, args.runs + 1):
            for mode in modes:
                for target in targets:  # alternate targets within each run
                    results.append(bench.run_one(target, mode, run))
    except BenchError as e:
        log(f"error: {e}")
        return 2
    except KeyboardInterrupt:
        log("interrupted")
        return 130

    summary = summarize(results, targets)
    table = render_table(summary, targets, args, machine)
    all_ok = all(r.get("ok") for r in results)
    dump = {
        "machine": machine,
        "config": {k: v for k, v in vars(args).items() if k not in ("json",)},
        "summary": summary,
        "results": results,
    }
    if args.json == "-":
        print(table, file=sys.stderr)
        print(json.dumps(dump, indent=2))
    else:
        print(table)
        if args.json:
            Path(args.json).write_text(json.dumps(dump, indent=2) + "\n")
            log(f"raw results written to {args.json}")
    if all_ok and not args.keep_temp:
        shutil.rmtree(bench.workdir, ignore_errors=True)
    else:
        log(f"logs and tokens kept in {bench.workdir}")
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main())
