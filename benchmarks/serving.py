"""`fastgd serve` under load (issue 22), against the same model behind a minimal FastAPI
endpoint calling scikit-learn, and against ONNX Runtime in process.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python benchmarks/serving.py \\
        [--seconds 10] [--clients 8] [--features 20]

Needs wrk (Debian: apt-get install wrk) and the bench extra (fastapi, uvicorn,
onnxruntime). A regression on 100,000 rows of --features features is fitted by fastgd
(saved as a model file) and by scikit-learn's LinearRegression (pickled for the peer).
Each server is its own process on 127.0.0.1, one uvicorn worker, access log off:

- `fastgd serve model.fastgd`: POST /v1/models/model:predict;
- the peer, `benchmarks/serving_peer.py`: a hand-written FastAPI endpoint taking the same
  body, {"instances": [[...], ...]}, as a pydantic model (list[list[float]]) and returning
  {"predictions": LinearRegression.predict(X).tolist()}.

wrk keeps --clients connections busy for --seconds (2 threads; the machine's 2 cores are
shared by client and server alike) with 1-row and 1,000-row bodies, --rounds times each
(the server's memory between rounds says whether it stays flat): requests per second,
p50 and p99 latency, failed requests (socket errors and non-2xx answers), and the
server's resident memory before and after. Then fastgd again with 1-row requests while
the model file is replaced every second (model.save, as `fastgd train -o` does): failed
requests and the reloads /metrics counts. Last, in process, the median time of one call
for 1 and 1,000 rows: LinearModel.predict, LinearRegression.predict, and onnxruntime's
InferenceSession.run on model.to_onnx() (float32 and float64).
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from fastgd._timing import median_seconds

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--features", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=2, help="of each load (memory: flat?)")
    args = parser.parse_args()
    import fastgd
    from sklearn.linear_model import LinearRegression

    rng = np.random.default_rng(0)
    X = rng.standard_normal((100_000, args.features))
    y = X @ rng.standard_normal(args.features) + 1.0 + 0.1 * rng.standard_normal(len(X))
    model = fastgd.GDRegressor().fit(X, y)
    peer = LinearRegression().fit(X, y)
    rows = {1: X[:1], 1000: X[:1000]}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model.save(tmp / "model.fastgd")
        (tmp / "peer.pkl").write_bytes(pickle.dumps(peer))
        bodies = {n: _script(tmp / f"{n}.lua", {"instances": r.tolist()})
                  for n, r in rows.items()}
        results = []
        for name, command, url in (
                ("fastgd serve", ["-m", "fastgd", "serve", str(tmp / "model.fastgd")],
                 "/v1/models/model:predict"),
                ("FastAPI + scikit-learn", [str(HERE / "serving_peer.py"),
                                            str(tmp / "peer.pkl")], "/predict")):
            with _server(command) as (port, pid):
                for n, script in bodies.items():
                    for round in range(1, args.rounds + 1):
                        before = _rss(pid)
                        run = _wrk(port, url, script, args.seconds, args.clients)
                        results.append({"server": name, "rows": n, "round": round, **run,
                                        "rss_before_mb": before, "rss_after_mb": _rss(pid)})
                        print(json.dumps(results[-1]), flush=True)
        swap = _swap_under_load(tmp, model, X, y, bodies[1], args)
        in_process = _in_process(model, peer, rows)
    _report(results, swap, in_process, args)


def _script(path: Path, body: dict) -> Path:
    text = json.dumps(body)
    path.write_text('wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
                    f"wrk.body = {json.dumps(text)}\n")
    return path


class _server:
    """A server process on a free port, until its /health (or /docs) answers; then ended."""

    def __init__(self, command):
        self.command = command

    def __enter__(self):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.process = subprocess.Popen([sys.executable, *self.command, "--port",
                                         str(self.port)], stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        import httpx

        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/health").status_code == 200:
                    return self.port, self.process.pid
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError(f"{self.command} did not start")
            time.sleep(0.1)

    def __exit__(self, *exc):
        self.process.terminate()
        self.process.wait(30)


def _wrk(port, url, script, seconds, clients) -> dict:
    out = subprocess.run(["wrk", "-t2", f"-c{clients}", f"-d{seconds}s", "--latency", "-s",
                          str(script), f"http://127.0.0.1:{port}{url}"],
                         capture_output=True, text=True, check=True).stdout

    def latency(percent):
        value, unit = re.search(rf"^\s+{percent}%\s+([\d.]+)(us|ms|s)\b", out, re.M).groups()
        return float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]

    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)",
                       out)
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"requests_per_s": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
            "requests": int(re.search(r"(\d+) requests in", out).group(1)),
            "p50_ms": latency(50), "p99_ms": latency(99),
            "failed": (sum(map(int, errors.groups())) if errors else 0)
            + (int(non_2xx.group(1)) if non_2xx else 0)}


def _rss(pid) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _swap_under_load(tmp, model, X, y, script, args) -> dict:
    """1-row load on fastgd serve while the model file is replaced every second."""
    import httpx

    import fastgd

    path = tmp / "model.fastgd"
    with _server(["-m", "fastgd", "serve", str(path), "--poll-seconds", "0.2"]) as (port, pid):
        stop, swaps = threading.Event(), []

        def swapper():
            k = 0
            while not stop.wait(1.0):
                k += 1
                fastgd.GDRegressor(alpha=float(k)).fit(X[:20_000], y[:20_000]).save(path)
                swaps.append(k)

        thread = threading.Thread(target=swapper)
        thread.start()
        before = _rss(pid)
        run = _wrk(port, "/v1/models/model:predict", script, args.seconds, args.clients)
        stop.set()
        thread.join()
        time.sleep(1.0)
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics").text
        reloads = float(re.search(r'fastgd_model_reloads_total\{result="success"\} (\S+)',
                                  metrics).group(1))
        failures = float(re.search(r'fastgd_model_reloads_total\{result="failure"\} (\S+)',
                                   metrics).group(1))
        served = httpx.get(f"http://127.0.0.1:{port}/health").json()["model"]["sha256"]
        import hashlib

        current = hashlib.sha256(path.read_bytes()).hexdigest()
        return {**run, "swaps": len(swaps), "reloads": reloads, "reload_failures": failures,
                "serves_the_last": served == current, "rss_before_mb": before,
                "rss_after_mb": _rss(pid)}


def _in_process(model, peer, rows) -> list:
    import onnxruntime as ort

    linear = model._model()
    sessions = {dtype: ort.InferenceSession(linear.to_onnx(dtype).SerializeToString(),
                                            providers=["CPUExecutionProvider"])
                for dtype in (np.float32, np.float64)}
    results = []
    for n, R in rows.items():
        R32 = R.astype(np.float32)
        calls = {"fastgd LinearModel.predict": lambda R=R: linear.predict(R),
                 "scikit-learn LinearRegression.predict": lambda R=R: peer.predict(R),
                 "onnxruntime float32": lambda R=R32: sessions[np.float32].run(None, {"X": R}),
                 "onnxruntime float64": lambda R=R: sessions[np.float64].run(None, {"X": R})}
        for name, call in calls.items():
            results.append({"rows": n, "call": name, "us": 1e6 * median_seconds(call, 2000)})
    return results


def _report(results, swap, in_process, args) -> None:
    print(f"\n{args.clients} clients for {args.seconds} s (wrk, 2 threads), "
          f"{args.features} features\n")
    print("| server | rows/request | round | requests/s | p50 ms | p99 ms | failed | RSS MB "
          "before -> after |\n|---|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['server']} | {r['rows']:,} | {r['round']} | {r['requests_per_s']:,.0f} | "
              f"{r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['failed']} | "
              f"{r['rss_before_mb']:.0f} -> {r['rss_after_mb']:.0f} |")
    for n in (1, 1000):
        rates = {server: np.median([r["requests_per_s"] for r in results
                                    if r["server"] == server and r["rows"] == n])
                 for server in ("fastgd serve", "FastAPI + scikit-learn")}
        print(f"\nfastgd serve / FastAPI + scikit-learn, {n:,} rows: "
              f"{rates['fastgd serve'] / rates['FastAPI + scikit-learn']:.2f} x the requests/s "
              f"(median of the rounds)")
    print(f"\nModel swapped every second under 1-row load: {swap['requests']:,} requests, "
          f"{swap['failed']} failed, {swap['swaps']} files saved, {swap['reloads']:.0f} reloads "
          f"({swap['reload_failures']:.0f} failed), the last file served: "
          f"{swap['serves_the_last']}, p99 {swap['p99_ms']:.2f} ms, RSS "
          f"{swap['rss_before_mb']:.0f} -> {swap['rss_after_mb']:.0f} MB")
    print("\n| in process | rows | median us a call |\n|---|---|---|")
    for r in in_process:
        print(f"| {r['call']} | {r['rows']:,} | {r['us']:.1f} |")


if __name__ == "__main__":
    main()
