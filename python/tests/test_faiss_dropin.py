"""Drop-in check: one script, run against faiss.IndexFlatL2 and hive_gpu.Index, gives the
same ids on Fashion-MNIST (60000 train images, the first 2000 test images as queries)."""
import gzip
import os

import numpy as np
import pytest

import hive_gpu

DATA = os.environ.get("HIVE_GPU_FASHION_DIR", "/usr/share/datasets/fashion-mnist")


def read_idx_images(path):
    with gzip.open(path, "rb") as f:
        raw = f.read()
    n, rows, cols = (int.from_bytes(raw[o:o + 4], "big") for o in (4, 8, 12))
    assert int.from_bytes(raw[0:4], "big") == 0x803
    return np.frombuffer(raw, np.uint8, offset=16).reshape(n, rows * cols).astype(np.float32)


def script(index, xb, xq, k):
    """What a FAISS user writes; only the constructor differs."""
    index.add(xb)
    D, I = index.search(xq, k)
    return D, I


def test_same_ids_as_faiss():
    faiss = pytest.importorskip("faiss")
    train = os.path.join(DATA, "train-images-idx3-ubyte.gz")
    test = os.path.join(DATA, "t10k-images-idx3-ubyte.gz")
    if not (os.path.exists(train) and os.path.exists(test)):
        pytest.skip("Fashion-MNIST not installed (scripts/setup --data)")
    xb = read_idx_images(train)
    xq = read_idx_images(test)[:2000]
    k = 10
    Df, If = script(faiss.IndexFlatL2(xb.shape[1]), xb, xq, k)
    Dh, Ih = script(hive_gpu.Index(xb.shape[1], metric="l2"), xb, xq, k)
    assert Ih.shape == If.shape and Ih.dtype == If.dtype and Dh.dtype == Df.dtype
    same = Ih == If
    # Distances are integers up to ~5e7, beyond float32's exact range: both libraries round,
    # so ids may only differ where the exact float64 distances tie or nearly tie.
    for r, c in zip(*np.nonzero(~same)):
        q = xq[r].astype(np.float64)
        dh = ((xb[Ih[r, c]] - q) ** 2).sum()
        df = ((xb[If[r, c]] - q) ** 2).sum()
        assert abs(dh - df) <= 1e-5 * max(dh, df, 1.0), (r, c, Ih[r], If[r])
    assert same.mean() >= 0.999, same.mean()
    np.testing.assert_allclose(Dh, Df, rtol=1e-4, atol=1.0)
