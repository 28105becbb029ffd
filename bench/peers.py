#!/usr/bin/env python3
"""Peer benchmarks for hive-gpu: FAISS on exactly the data `hive-gpu bench --dump-dir` wrote.

Two subcommands:

  peers.py run --data DIR --ours OURS.json --out PEER.json
      Loads DIR/{base,queries,gt_ids,gt_dist}.npy and DIR/meta.json, builds the FAISS flat
      index matching OURS.json's metric and storage, and times the same batch sizes the same
      way `hive-gpu bench` does (warm-up batch, per-batch wall time, first pass cut by the
      time budget, extra passes for --repeat / --min-time, QPS = queries / summed batch
      time, nearest-rank p50 / p99, tie-aware recall@k against the same ground truth).
      Runs under whatever interpreter imports the FAISS to test: the project venv's
      faiss-cpu from PyPI, or /usr/bin/python3 with Debian's python3-faiss.

  peers.py table FILE.json...
      Prints one markdown table of hive-gpu and peer results (any mix of storages), each
      peer's QPS and p50 as a ratio to hive-gpu's at the same storage and batch size, and
      hive-gpu's read floor.

Only numpy and faiss are needed for `run`; `table` needs the standard library only.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

RELATIVE_SLACK = 1e-6  # same tie slack as hive-gpu bench


# ---------------------------------------------------------------------------------------
# run


def percentile(values, p):
    """Nearest-rank percentile, as tools/timing.cpp computes it."""
    if not values:
        return 0.0
    v = sorted(values)
    rank = math.ceil(min(max(p, 0.0), 100.0) / 100.0 * len(v))
    return v[max(rank, 1) - 1]


def exact_distances(np, metric, base, queries, ids):
    """float64 distances of queries[i] to base[ids[i, j]], in hive-gpu's reported form."""
    safe = np.where(ids >= 0, ids, 0)
    b = base[safe].astype(np.float64)  # nq x k x d
    q = queries.astype(np.float64)[:, None, :]
    if metric == "l2":
        out = ((b - q) ** 2).sum(axis=2)
    elif metric == "ip":
        out = (b * q).sum(axis=2)
    elif metric == "cosine":
        nb = np.sqrt((b * b).sum(axis=2))
        nq_ = np.sqrt((q * q).sum(axis=2))
        dot = (b * q).sum(axis=2)
        with np.errstate(divide="ignore", invalid="ignore"):
            out = np.where((nb > 0) & (nq_ > 0), 1.0 - dot / (nb * nq_), 1.0)
    elif metric == "l1":
        out = np.abs(b - q).sum(axis=2)
    elif metric == "linf":
        out = np.abs(b - q).max(axis=2)
    else:
        raise ValueError(f"metric {metric} not supported")
    return np.where(ids >= 0, out, np.nan)


def recall_at_k(np, metric, k, base, queries, gt_ids, gt_dist, ids):
    """Tie-aware recall@k, as tools/ground_truth.cpp: an id counts once, when its exact
    distance is within the k-th ground-truth distance plus 1e-6 relative slack."""
    nq = ids.shape[0]
    total = 0.0
    chunk = max(1, 4_000_000 // max(1, k * base.shape[1]))
    for s in range(0, nq, chunk):
        e = min(nq, s + chunk)
        d = exact_distances(np, metric, base, queries[s:e], ids[s:e])
        for i in range(e - s):
            q = s + i
            valid = int((gt_ids[q] >= 0).sum())
            denom = min(k, valid)
            if denom == 0:
                total += 1.0
                continue
            kth = float(gt_dist[q, denom - 1])
            slack = RELATIVE_SLACK * abs(kth)
            seen = set()
            hits = 0
            for j in range(k):
                idx = int(ids[s + i, j])
                if idx < 0 or idx in seen:
                    continue
                seen.add(idx)
                dist = float(d[i, j])
                if math.isnan(dist):
                    continue
                ok = dist >= kth - slack if metric == "ip" else dist <= kth + slack
                hits += ok
            total += min(hits, denom) / denom
    return total / nq if nq else 0.0


def load_average():
    """1-minute load average, -1 where unknown (recorded to spot runs on a busy machine)."""
    try:
        return os.getloadavg()[0]
    except OSError:
        return -1.0


def faiss_label(faiss):
    where = Path(faiss.__file__).resolve()
    origin = "Debian python3-faiss" if str(where).startswith("/usr/lib/python3") else "PyPI faiss-cpu"
    return f"faiss {faiss.__version__} ({origin})"


def build_index(faiss, np, metric, storage, d):
    """The FAISS index matching hive-gpu's FlatIndex, and a description (None: unsupported)."""
    faiss_metric = {
        "l2": faiss.METRIC_L2,
        "ip": faiss.METRIC_INNER_PRODUCT,
        "cosine": faiss.METRIC_INNER_PRODUCT,  # on normalised vectors
        "l1": getattr(faiss, "METRIC_L1", None),
        "linf": getattr(faiss, "METRIC_Linf", None),
    }[metric]
    if faiss_metric is None:
        return None, f"metric {metric} not in this faiss"
    if storage == "f32":
        if metric == "l2":
            return faiss.IndexFlatL2(d), "IndexFlatL2"
        if metric in ("ip", "cosine"):
            return faiss.IndexFlatIP(d), "IndexFlatIP" + (" (normalised)" if metric == "cosine" else "")
        return faiss.IndexFlat(d, faiss_metric), f"IndexFlat({metric})"
    qt_name = {"f16": "QT_fp16", "bf16": "QT_bf16"}[storage]
    qt = getattr(faiss.ScalarQuantizer, qt_name, None)
    if qt is None:
        return None, f"no ScalarQuantizer.{qt_name} in this faiss"
    if metric not in ("l2", "ip", "cosine"):
        return None, f"IndexScalarQuantizer has no {metric}"
    index = faiss.IndexScalarQuantizer(d, qt, faiss_metric)
    return index, f"IndexScalarQuantizer({qt_name})" + (" (normalised)" if metric == "cosine" else "")


def time_batches(np, faiss, index, queries, k, batch, nq, budget, repeat, min_time, normalise):
    """Mirror of tools/timing.cpp time_batches()."""
    batch = max(1, min(batch, nq))
    ids = np.full((nq, k), -1, dtype=np.int64)

    def search(start):
        q = queries[start:start + min(batch, nq - start)]
        if normalise:
            q = q.copy()
            faiss.normalize_L2(q)
        return index.search(q, k)

    # Warm-up as tools/timing.cpp: min(batch, 100) queries, then a full batch if under 2 s.
    small = min(batch, 100)
    w0 = time.perf_counter()
    q = queries[:small]
    if normalise:
        q = q.copy()
        faiss.normalize_L2(q)
    index.search(q, k)
    per_query = (time.perf_counter() - w0) / small
    if batch > small and per_query * batch < 2.0:
        search(0)
    lat = []
    total = 0.0
    searched = 0
    covered = 0
    start = 0
    while start < nq:
        t0 = time.perf_counter()
        _, I = search(start)
        t1 = time.perf_counter()
        cnt = I.shape[0]
        ids[start:start + cnt] = I
        lat.append((t1 - t0) * 1e3)
        total += t1 - t0
        searched += cnt
        covered = start + cnt
        start += batch
        if total >= budget:
            break
    passes = 1
    while passes < repeat or total < min_time:
        for s in range(0, covered, batch):
            t0 = time.perf_counter()
            _, I = search(s)
            t1 = time.perf_counter()
            lat.append((t1 - t0) * 1e3)
            total += t1 - t0
            searched += I.shape[0]
        passes += 1
    return {
        "batch": batch,
        "queries": covered,
        "batches": len(lat),
        "passes": passes,
        "total_s": total,
        "qps": searched / total if total > 0 else 0.0,
        "p50_ms": percentile(lat, 50),
        "p99_ms": percentile(lat, 99),
        "mean_ms": sum(lat) / len(lat),
        "max_ms": max(lat),
    }, ids[:covered]


def cmd_run(args):
    import numpy as np  # noqa: PLC0415 (imported here so `table` needs no numpy)
    import faiss  # noqa: PLC0415

    ours = json.loads(Path(args.ours).read_text())
    data = Path(args.data)
    meta = json.loads((data / "meta.json").read_text())
    for key in ("dataset", "n", "d", "nq", "metric"):
        if meta[key] != ours[key]:
            sys.exit(f"peers.py: {data} holds {key}={meta[key]}, but {args.ours} has {ours[key]}")
    metric, storage, k = ours["metric"], ours["storage"], int(ours["k"])
    settings = ours.get("settings", {})
    budget = float(args.time_budget if args.time_budget is not None else settings.get("time_budget_s", 20))
    repeat = int(settings.get("repeat", 1))
    min_time = float(settings.get("min_time_s", 0))
    b1_queries = int(settings.get("b1_queries", 1000))
    batches = [int(r["batch"]) for r in ours["rows"]]
    requested = [int(b) for b in args.batch.split(",")] if args.batch else None

    base = np.load(data / "base.npy")
    queries = np.ascontiguousarray(np.load(data / "queries.npy"), dtype=np.float32)
    gt_ids = np.load(data / "gt_ids.npy")
    gt_dist = np.load(data / "gt_dist.npy")
    n, d = base.shape
    threads = args.threads or os.cpu_count() or 1
    faiss.omp_set_num_threads(threads)

    label = args.label or faiss_label(faiss)
    result = {
        "engine": label,
        "faiss_version": faiss.__version__,
        "faiss_path": str(Path(faiss.__file__).resolve().parent),
        "python": sys.executable,
        "numpy_version": np.__version__,
        "threads": threads,
        "env": {v: os.environ[v] for v in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                           "MKL_NUM_THREADS") if v in os.environ},
        "dataset": ours["dataset"],
        "n": n,
        "d": d,
        "nq": int(queries.shape[0]),
        "metric": metric,
        "storage": storage,
        "k": k,
        "rows": [],
    }
    index, desc = build_index(faiss, np, metric, storage, d)
    result["index"] = desc
    if index is None:
        result["unsupported"] = desc
        print(f"{label}: {desc}: skipped", file=sys.stderr)
    else:
        normalise = metric == "cosine"
        xb = base
        if normalise:
            xb = base.copy()
            faiss.normalize_L2(xb)
        t0 = time.perf_counter()
        if not index.is_trained:
            index.train(xb)
        for s in range(0, n, 65536):
            index.add(xb[s:s + 65536])
        result["build_s"] = time.perf_counter() - t0
        load_start = load_average()
        for b in (requested or batches):
            nq = min(queries.shape[0], b1_queries) if b == 1 else queries.shape[0]
            print(f"{label}: timing batch {b} ...", file=sys.stderr)
            row, ids = time_batches(np, faiss, index, queries, k, b, nq, budget, repeat, min_time, normalise)
            row["recall"] = recall_at_k(np, metric, k, base, queries, gt_ids, gt_dist, ids)
            result["rows"].append(row)
        result["loadavg"] = [load_start, load_average()]
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return 0


# ---------------------------------------------------------------------------------------
# table


def fmt(v, digits=None):
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    if digits is not None:
        return f"{v:.{digits}f}"
    a = abs(v)
    if a >= 100 or a == 0:
        return f"{v:.0f}"
    if a >= 10:
        return f"{v:.1f}"
    if a >= 1:
        return f"{v:.2f}"
    if a >= 0.01:
        return f"{v:.3f}"
    return f"{v:.3g}"


def ratio(a, b):
    if not a or not b:
        return "-"
    return f"{a / b:.2f}x"


def markdown(headers, rows, right):
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]

    def line(cells):
        out = []
        for i, c in enumerate(cells):
            out.append(c.rjust(widths[i]) if i in right else c.ljust(widths[i]))
        return "| " + " | ".join(out) + " |"

    sep = "| " + " | ".join(("-" * (w - 1) + ":") if i in right else "-" * w for i, w in enumerate(widths)) + " |"
    return "\n".join([line(headers), sep, *(line(r) for r in rows)])


def cmd_table(args):
    results = [json.loads(Path(f).read_text()) for f in args.files]
    ours = [r for r in results if r.get("engine") == "hive-gpu"]
    peers = [r for r in results if r.get("engine") != "hive-gpu"]
    if not ours:
        sys.exit("peers.py table: no hive-gpu result among the files")
    first = ours[0]
    k = first["k"]
    print(
        f"dataset {first['dataset']} | n {first['n']} | d {first['d']} | nq {first['nq']} | metric {first['metric']}"
        f" | k {k} | hive-gpu device {first.get('device_id', '?')} ({first.get('device', '?')})"
        f" | threads {first.get('threads', '?')}"
    )
    print()
    headers = ["storage", "batch", "engine", "index", "QPS", "p50 ms", "p99 ms", f"recall@{k}",
               "QPS / hive-gpu", "p50 / hive-gpu"]
    rows = []
    notes = []
    for o in ours:
        storage = o["storage"]
        by_batch = {r["batch"]: r for r in o["rows"]}
        group_peers = [p for p in peers if p.get("storage") == storage]
        for b, r in by_batch.items():
            rows.append([storage, str(b), "hive-gpu", "FlatIndex", fmt(r["qps"]), fmt(r["p50_ms"]), fmt(r["p99_ms"]),
                         fmt(r["recall"], 4), "1.00x", "1.00x"])
            for p in group_peers:
                if p.get("unsupported"):
                    continue
                pr = next((x for x in p["rows"] if x["batch"] == b), None)
                if pr is None:
                    continue
                rows.append([storage, str(b), p["engine"], p.get("index", ""), fmt(pr["qps"]), fmt(pr["p50_ms"]),
                             fmt(pr["p99_ms"]), fmt(pr["recall"], 4), ratio(pr["qps"], r["qps"]),
                             ratio(pr["p50_ms"], r["p50_ms"])])
        if o.get("floor_ms") is not None:
            mb = o.get("floor_bytes", 0) / 1e6
            rows.append([storage, "-", "read floor", f"{mb:.1f} MB pass", "-", fmt(o["floor_ms"]), "-", "-", "-", "-"])
            b1 = by_batch.get(1)
            if b1:
                notes.append(f"{storage}: hive-gpu batch-1 p50 {fmt(b1['p50_ms'])} ms = "
                             f"{b1['p50_ms'] / o['floor_ms']:.2f}x the read floor ({o['floor_ms']:.3f} ms for "
                             f"{mb:.1f} MB at {o.get('floor_gbps', 0):.1f} GB/s)")
        for p in group_peers:
            if p.get("unsupported"):
                notes.append(f"{storage}: {p['engine']}: {p['unsupported']} (not measured)")
        loads = []
        for r in [o, *group_peers]:
            la = r.get("loadavg")
            if la and min(la) >= 0:
                env = r.get("env") or {}
                extra = (" [" + " ".join(f"{k}={v}" for k, v in env.items()) + "]") if env else ""
                loads.append(f"{r['engine']} {la[0]:.1f}->{la[1]:.1f}{extra}")
        if loads:
            notes.append(f"{storage}: 1-min load average during each run (cores: {o.get('threads', '?')}): "
                         + "; ".join(loads))
    print(markdown(headers, rows, right={1, 4, 5, 6, 7, 8, 9}))
    print()
    print("Ratios: a peer's QPS over hive-gpu's (above 1.00x: the peer is faster) and its p50 batch latency "
          "over hive-gpu's (below 1.00x: the peer is faster), same storage and batch size.")
    for n in notes:
        print(n)
    return 0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="time one FAISS on the dumped data")
    r.add_argument("--data", required=True, help="folder `hive-gpu bench --dump-dir` wrote")
    r.add_argument("--ours", required=True, help="`hive-gpu bench --json` output to mirror")
    r.add_argument("--out", required=True, help="where to write this peer's JSON")
    r.add_argument("--label", help="engine name in the table (default: faiss version and origin)")
    r.add_argument("--threads", type=int, default=0, help="OpenMP threads (default: all cores)")
    r.add_argument("--batch", help="override the batch sizes (default: those in --ours)")
    r.add_argument("--time-budget", type=float, help="override the per-batch-size time budget")
    r.set_defaults(func=cmd_run)
    t = sub.add_parser("table", help="print the side-by-side markdown table")
    t.add_argument("files", nargs="+", help="result JSON files (hive-gpu and peers)")
    t.set_defaults(func=cmd_table)
    args = ap.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
