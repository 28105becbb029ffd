"""kind="graph": the GPU-built graph index. Its search paths need a CUDA/HIP device (skipped
without one, as in CI); the errors it gives elsewhere are checked everywhere."""
import numpy as np
import pytest

import hive_gpu as hg


def has_gpu_graph():
    return any(d.backend in ("cuda", "hip") for d in hg.devices())


gpu = pytest.mark.skipif(not has_gpu_graph(), reason="no CUDA or HIP device")


def blobs(n, d, seed, centers=10):
    rng = np.random.default_rng(seed)
    c = rng.standard_normal((centers, d)).astype(np.float32)
    return (c[rng.integers(0, centers, n)] + 0.3 * rng.standard_normal((n, d))).astype(np.float32)


def test_graph_on_the_cpu_is_refused():
    with pytest.raises(hg.UnsupportedError, match="HnswIndex"):
        hg.Index(8, kind="graph", device="cpu")


def test_graph_options_are_checked():
    with pytest.raises(hg.Error):
        hg.Index(8, kind="graph", dtype="float16", device="cpu")
    with pytest.raises(hg.InvalidArgumentError):
        hg.Index(8, kind="tree")


@gpu
def test_graph_recall_and_parameters(tmp_path):
    x, q = blobs(20000, 32, 1), blobs(200, 32, 2)
    idx = hg.Index(32, kind="graph", itopk=64)
    idx.add(x)
    assert idx.kind == "graph" and len(idx) == 20000 and idx.itopk == 64
    d2 = ((q[:, None, :].astype(np.float64) - x[None, :, :]) ** 2).sum(-1)
    truth = np.argsort(d2, axis=1)[:, :10]
    D, I = idx.search(q, 10)
    recall = np.mean([len(set(I[i]) & set(truth[i])) / 10 for i in range(len(q))])
    assert recall >= 0.95
    np.testing.assert_allclose(D, np.take_along_axis(d2, I, 1), rtol=1e-4, atol=1e-4)
    _, I2 = idx.search(q, 10, ef=256)
    recall2 = np.mean([len(set(I2[i]) & set(truth[i])) / 10 for i in range(len(q))])
    assert recall2 >= max(recall, 0.99)
    idx.itopk = 128
    idx.search_width = 2
    assert (idx.itopk, idx.search_width) == (128, 2)
    with pytest.raises(hg.InvalidArgumentError):
        idx.itopk = 48
    path = tmp_path / "g.hvg"
    idx.save(path)
    cpu = hg.load(path)  # the CPU's HNSW opens it
    assert cpu.kind == "hnsw" and len(cpu) == 20000
    back = hg.load(path, kind="graph")
    assert back.kind == "graph"
    np.testing.assert_array_equal(back.search(q, 10)[1], idx.search(q, 10)[1])
