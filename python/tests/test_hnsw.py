"""kind="hnsw": recall against exact (numpy float64) neighbours, ef per search and as a
property, deletes, upsert, save/load, and the errors of graph-only parameters."""
import numpy as np
import pytest

import hive_gpu as hg


def clustered(rng, n, d, centers=16):
    c = rng.standard_normal((centers, d))
    return (c[rng.integers(0, centers, n)] + 0.3 * rng.standard_normal((n, d))).astype(np.float32)


def exact(base, q, k):
    d = ((q[:, None, :].astype(np.float64) - base[None, :, :].astype(np.float64)) ** 2).sum(-1)
    return np.argsort(d, axis=1, kind="stable")[:, :k], np.sort(d, axis=1)[:, :k]


def recall(found, truth):
    return np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found.tolist(), truth.tolist())])


def test_recall_and_distances(rng):
    base, q = clustered(rng, 3000, 24), clustered(rng, 40, 24)
    idx = hg.Index(24, "l2", kind="hnsw", M=12, ef_construction=100)
    idx.add(base)
    assert idx.kind == "hnsw" and idx.M == 12 and idx.ef_construction == 100 and len(idx) == 3000
    truth, tdist = exact(base, q, 10)
    D, I = idx.search(q, 10, ef=200)
    assert D.shape == (40, 10) and I.dtype == np.int64
    assert recall(I, truth) >= 0.97
    got = ((q[:, None, :].astype(np.float64) - base[I].astype(np.float64)) ** 2).sum(-1)
    np.testing.assert_allclose(D, got, rtol=1e-4, atol=1e-4)
    # A larger candidate list never finds less here; ef_search is the default for search().
    idx.ef_search = 10
    assert idx.ef_search == 10
    low = recall(idx.search(q, 10)[1], truth)
    assert low <= recall(I, truth)


def test_delete_upsert_compact_save_load(rng, tmp_path):
    base = clustered(rng, 1500, 16)
    idx = hg.Index(16, "cosine", kind="hnsw")
    idx.add(base)
    assert idx.remove([0, 1, 2]) == 3
    _, I = idx.search(base[:5], 5)
    assert not set(I.ravel().tolist()) & {0, 1, 2}
    far = np.full(16, 9.0, dtype=np.float32)
    far[0] = -9.0
    idx.upsert(far[None, :], [10])
    assert idx.search(far, 1)[1][0, 0] == 10
    path = tmp_path / "g.hgi"
    idx.save(path)
    back = hg.load(path)
    assert back.kind == "hnsw" and len(back) == len(idx) and back.stored_rows == idx.stored_rows
    np.testing.assert_array_equal(back.search(base[:20], 5)[1], idx.search(base[:20], 5)[1])
    idx.compact()
    assert idx.stored_rows == len(idx) == 1497


def test_graph_parameters_errors(rng):
    flat = hg.Index(8)
    with pytest.raises(hg.Error):
        flat.search(np.zeros(8, np.float32), 1, ef=10)
    with pytest.raises(hg.Error):
        _ = flat.ef_search
    with pytest.raises(hg.Error):
        hg.Index(8, kind="hnsw", M=1)
    with pytest.raises(hg.Error):
        hg.Index(8, kind="hnsw", ef_construction=0)
    idx = hg.Index(8, kind="hnsw")
    idx.add(rng.standard_normal((50, 8)).astype(np.float32))
    with pytest.raises(hg.Error):
        idx.ef_search = 0
    with pytest.raises(hg.Error):
        idx.search(np.zeros(8, np.float32), 1, ef=0)
    with pytest.raises(hg.Error):
        hg.Index(8, kind="ivf")
