#!/usr/bin/env python3
"""Fashion-MNIST batch search QPS through the Python module vs the C++ `hive-gpu bench`, same run.

    .venv/bin/python bench/python_vs_cpp.py [--batch 10000] [--k 10] [--backend auto] [--rounds 2]

Runs `hive-gpu bench --dataset fashion-mnist --batch B --json FILE` (build/release/tools/hive-gpu,
or $HIVE_GPU_BIN) and the same searches through hive_gpu.Index, alternating for --rounds rounds,
and prints the best QPS of each and their ratio (Python / C++). The Python module is imported
from the environment, else from build/python/python (scripts/test's in-tree build).
"""
import argparse
import gzip
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
try:
    import hive_gpu
except ImportError:
    sys.path.insert(0, os.path.join(ROOT, "build", "python", "python"))
    import hive_gpu


def read_idx_images(path):
    with gzip.open(path, "rb") as f:
        raw = f.read()
    n, rows, cols = (int.from_bytes(raw[o:o + 4], "big") for o in (4, 8, 12))
    return np.frombuffer(raw, np.uint8, offset=16).reshape(n, rows * cols).astype(np.float32)


def python_qps(index, xq, batch, k, min_time):
    nq = xq.shape[0]
    index.search(xq[:batch], k)  # warm-up (thread pool, BLAS buffers)
    searched, total, passes = 0, 0.0, 0
    while passes < 1 or total < min_time:
        for s in range(0, nq, batch):
            q = xq[s:s + batch]
            t0 = time.perf_counter()
            index.search(q, k)
            total += time.perf_counter() - t0
            searched += q.shape[0]
        passes += 1
    return searched / total


def cpp_qps(binary, batch, k, backend, min_time):
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "bench.json")
        cmd = [binary, "bench", "--dataset", "fashion-mnist", "--batch", str(batch), "--k", str(k),
               "--backend", backend, "--min-time", str(min_time), "--no-floor", "--no-progress",
               "--json", out]
        p = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if p.returncode != 0:
            sys.exit(f"python_vs_cpp: {' '.join(cmd)} failed ({p.returncode}):\n{p.stderr}")
        with open(out) as f:
            j = json.load(f)
    row = [r for r in j["rows"] if r["batch"] == batch][0]
    return row["qps"], j


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=10000)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--backend", default="auto")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--min-time", type=float, default=3.0, help="seconds of search per measurement")
    ap.add_argument("--data", default=os.environ.get("HIVE_GPU_FASHION_DIR", "/usr/share/datasets/fashion-mnist"))
    args = ap.parse_args()
    binary = os.environ.get("HIVE_GPU_BIN", os.path.join(ROOT, "build", "release", "tools", "hive-gpu"))
    if not os.access(binary, os.X_OK):
        sys.exit(f"python_vs_cpp: {binary} not found: build it (scripts/run) or set HIVE_GPU_BIN")

    xb = read_idx_images(os.path.join(args.data, "train-images-idx3-ubyte.gz"))
    xq = read_idx_images(os.path.join(args.data, "t10k-images-idx3-ubyte.gz"))
    index = hive_gpu.Index(xb.shape[1], metric="l2", device=args.backend)
    index.add(xb)
    print(f"device: {index.device.id} ({index.device.name}), {os.cpu_count()} CPUs, "
          f"load {os.getloadavg()[0]:.2f}", flush=True)

    py, cpp = [], []
    for r in range(args.rounds):
        q, j = cpp_qps(binary, args.batch, args.k, args.backend, args.min_time)
        cpp.append(q)
        py.append(python_qps(index, xq, args.batch, args.k, args.min_time))
        print(f"round {r + 1}: C++ {cpp[-1]:.0f} QPS (device {j['device_id']}), Python {py[-1]:.0f} QPS", flush=True)
    best_py, best_cpp = max(py), max(cpp)
    print(f"fashion-mnist L2 k={args.k} batch {args.batch}: Python {best_py:.0f} QPS, C++ {best_cpp:.0f} QPS, "
          f"ratio {best_py / best_cpp:.3f} (best of {args.rounds})")


if __name__ == "__main__":
    main()
