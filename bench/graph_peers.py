#!/usr/bin/env python3
"""HNSW side by side: hive-gpu's HnswIndex, hnswlib and usearch on Fashion-MNIST, in one run.

Each library builds its graph on the same 60 000 x 784 base (M = 16 links, ef_construction =
200; usearch: connectivity 16, expansion_add 200, f32 storage) with the same number of threads,
then the 10 000 test queries are searched for k = 10 at a sweep of ef (usearch:
expansion_search), batch calls with the same threads. Recall@10 is against exact ground truth
(hive-gpu's flat index, checked against numpy on a sample). Reported: build seconds, and per ef
the recall and queries per second (best of --repeat runs); then each library's QPS at recall 0.95
and 0.99, interpolated on its curve (log QPS linear in recall between the two points around).

  python bench/graph_peers.py [--threads 2] [--ef 10,12,...] [--json out.json] [--skip usearch]

The threads must be set before hive_gpu is imported (HIVE_GPU_NUM_THREADS), so this script
sets it itself. Needs numpy, hnswlib, usearch and the hive_gpu module on PYTHONPATH.
"""
import argparse
import gzip
import json
import math
import os
import platform
import sys
import time

DEFAULT_EF = "10,12,14,16,20,24,32,40,48,64,80,96,128,160,256"


def read_idx(path):
    import numpy as np

    with gzip.open(path, "rb") as f:
        data = f.read()
    magic, count, rows, cols = (int.from_bytes(data[i : i + 4], "big") for i in range(0, 16, 4))
    if magic != 0x803:
        raise SystemExit(f"{path}: not an IDX3 image file")
    return np.frombuffer(data, dtype=np.uint8, offset=16).reshape(count, rows * cols).astype(np.float32)


def recall(found, truth):
    hits = sum(len(set(f).intersection(t)) for f, t in zip(found.tolist(), truth.tolist()))
    return hits / truth.size


def at_recall(curve, target):
    """QPS at `target` recall on a curve of (recall, qps), or None if never reached."""
    pts = sorted(curve)
    for (r0, q0), (r1, q1) in zip(pts, pts[1:]):
        if r0 <= target <= r1 and r1 > r0:
            t = (target - r0) / (r1 - r0)
            return math.exp(math.log(q0) + t * (math.log(q1) - math.log(q0)))
    if pts and pts[0][0] >= target:
        return pts[0][1]  # even the fastest point reaches it
    return None


def timed(fn, repeat):
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--ef", default=DEFAULT_EF)
    ap.add_argument("--M", type=int, default=16)
    ap.add_argument("--ef-construction", type=int, default=200)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--data", default=os.environ.get("HIVE_GPU_FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist"))
    ap.add_argument("--skip", default="", help="comma-separated: hive-gpu, hnswlib, usearch")
    ap.add_argument("--json")
    args = ap.parse_args()
    os.environ["HIVE_GPU_NUM_THREADS"] = str(args.threads)
    import numpy as np
    import hive_gpu

    skip = set(filter(None, args.skip.split(",")))
    efs = [int(e) for e in args.ef.split(",")]
    base = read_idx(os.path.join(args.data, "train-images-idx3-ubyte.gz"))
    queries = read_idx(os.path.join(args.data, "t10k-images-idx3-ubyte.gz"))
    n, d = base.shape
    k = 10
    flat = hive_gpu.Index(d, "l2", device="cpu")
    flat.add(base)
    _, truth = flat.search(queries, k)
    # A spot check of the ground truth against numpy (float64).
    for q in range(0, len(queries), 997):
        exact = np.argsort(((base.astype(np.float64) - queries[q].astype(np.float64)) ** 2).sum(1), kind="stable")[:k]
        assert len(set(exact.tolist()) & set(truth[q].tolist())) >= k - 1, "ground truth disagrees with numpy"

    results = []

    def run(name, version, build, search):
        t0 = time.perf_counter()
        state = build()
        build_s = time.perf_counter() - t0
        curve = []
        for ef in efs:
            search(state, ef)  # warm-up (and the ef setting)
            secs, found = timed(lambda: search(state, ef), args.repeat)
            r = recall(found, truth)
            curve.append({"ef": ef, "recall": r, "qps": len(queries) / secs})
            print(f"{name:9s} ef {ef:4d}  recall {r:.4f}  qps {len(queries) / secs:9.0f}", file=sys.stderr)
        results.append({"name": name, "version": version, "build_s": build_s, "curve": curve})
        print(f"{name:9s} build {build_s:.2f} s", file=sys.stderr)

    if "hive-gpu" not in skip:
        def build_ours():
            idx = hive_gpu.Index(d, "l2", kind="hnsw", M=args.M, ef_construction=args.ef_construction)
            idx.add(base)
            return idx

        run("hive-gpu", hive_gpu.__version__, build_ours, lambda idx, ef: idx.search(queries, k, ef=ef)[1])
    if "hnswlib" not in skip:
        import hnswlib

        def build_hnswlib():
            idx = hnswlib.Index(space="l2", dim=d)
            idx.init_index(max_elements=n, M=args.M, ef_construction=args.ef_construction, random_seed=100)
            idx.set_num_threads(args.threads)
            idx.add_items(base, np.arange(n), num_threads=args.threads)
            return idx

        def search_hnswlib(idx, ef):
            idx.set_ef(max(ef, k))
            return idx.knn_query(queries, k=k, num_threads=args.threads)[0]

        from importlib.metadata import version as dist_version

        run("hnswlib", dist_version("hnswlib"), build_hnswlib, search_hnswlib)
    if "usearch" not in skip:
        import usearch
        from usearch.index import Index as UIndex

        def build_usearch():
            idx = UIndex(ndim=d, metric="l2sq", dtype="f32", connectivity=args.M, expansion_add=args.ef_construction)
            idx.add(np.arange(n), base, threads=args.threads)
            return idx

        def search_usearch(idx, ef):
            idx.expansion_search = max(ef, k)
            return idx.search(queries, k, threads=args.threads).keys

        run("usearch", usearch.__version__, build_usearch, search_usearch)

    print(f"\n## Fashion-MNIST {n} x {d}, {len(queries)} queries, k = {k}, M = {args.M}, "
          f"ef_construction = {args.ef_construction}, {args.threads} threads ({platform.processor() or platform.machine()})\n")
    print("| library | version | build s | QPS at recall 0.95 | QPS at recall 0.99 |")
    print("|---|---|---:|---:|---:|")
    for r in results:
        pts = [(c["recall"], c["qps"]) for c in r["curve"]]
        q95, q99 = at_recall(pts, 0.95), at_recall(pts, 0.99)
        r["qps_at_095"], r["qps_at_099"] = q95, q99
        fmt = lambda v: f"{v:.0f}" if v else "not reached"
        print(f"| {r['name']} | {r['version']} | {r['build_s']:.2f} | {fmt(q95)} | {fmt(q99)} |")
    print("\n| library | ef | recall@10 | QPS |")
    print("|---|---:|---:|---:|")
    for r in results:
        for c in r["curve"]:
            print(f"| {r['name']} | {c['ef']} | {c['recall']:.4f} | {c['qps']:.0f} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"n": n, "d": d, "nq": len(queries), "k": k, "M": args.M,
                       "ef_construction": args.ef_construction, "threads": args.threads, "results": results}, f, indent=1)


if __name__ == "__main__":
    main()
