"""Every method and property of hive_gpu.Index, devices() and backends()."""
import os
import pickle  # noqa: F401  (not supported; kept out of the API on purpose)
import struct

import numpy as np
import pytest

import hive_gpu


def test_version_and_exports():
    assert hive_gpu.__version__ == "0.1.0"
    assert hive_gpu.MAX_K == 2048
    for name in hive_gpu.__all__:
        assert hasattr(hive_gpu, name), name


def test_devices_dict_like():
    devs = hive_gpu.devices()
    assert isinstance(devs, list) and devs
    cpu = [d for d in devs if d.backend == "cpu"]
    assert len(cpu) == 1
    d = cpu[0]
    assert d.id == "cpu:0" and d["id"] == "cpu:0"
    assert d["name"] == d.name and d["total_memory"] == d.total_memory
    keys = list(d.keys())
    assert keys[0] == "id" and "simd" in keys and "pci_bus_id" in keys
    assert set(d.to_dict()) == set(keys) and len(d) == len(keys) and list(iter(d)) == keys
    assert dict(d.items()) == d.to_dict() and list(d.values()) == list(d.to_dict().values())
    assert "name" in d and "nope" not in d and d.get("nope", 7) == 7
    with pytest.raises(KeyError):
        d["nope"]
    r = repr(d)
    assert r.startswith("DeviceInfo(id='cpu:0'") and "name=" in r
    assert 0.0 <= d.memory_usage_percent() <= 100.0
    assert d.has_free_memory(1) in (True, False)


def test_backends():
    bs = hive_gpu.backends()
    names = [b.name for b in bs]
    assert "cpu" in names and "cuda" in names
    cpu = bs[names.index("cpu")]
    assert cpu.compiled and cpu.available and cpu["device_count"] == 1
    assert repr(cpu).startswith("BackendStatus(name='cpu'")
    for b in bs:
        if not b.available:
            assert b.reason  # says why


def test_index_properties():
    ix = hive_gpu.Index(8, metric="ip", dtype="float16", device="cpu")
    assert ix.dim == 8 and ix.metric == "ip" and ix.dtype == "float16"
    assert isinstance(ix.device, hive_gpu.DeviceInfo) and ix.device.id == "cpu:0"
    assert ix.ntotal == ix.size == len(ix) == 0 and ix.next_id == 0 and ix.stored_rows == 0
    assert repr(ix) == "hive_gpu.Index(dim=8, metric='ip', kind='flat', dtype='float16', device='cpu:0', ntotal=0)"
    assert hive_gpu.Index(8, dtype="bfloat16").dtype == "bfloat16"
    assert hive_gpu.Index(8, metric="cosine").metric == "cosine"
    assert hive_gpu.Index(16, metric="hamming").dtype == "uint8"
    assert hive_gpu.Index(8, device="auto").device.id in [d.id for d in hive_gpu.devices()]


def test_add_search_get_remove_cycle(rng):
    x = rng.standard_normal((10, 6)).astype(np.float32)
    ix = hive_gpu.Index(6)
    ix.add(x)
    assert len(ix) == 10 and ix.next_id == 10
    np.testing.assert_array_equal(ix.ids(), np.arange(10))
    assert ix.ids().dtype == np.int64
    D, I = ix.search(x, 1)
    assert D.shape == (10, 1) and I.shape == (10, 1)
    assert D.dtype == np.float32 and I.dtype == np.int64
    np.testing.assert_array_equal(I[:, 0], np.arange(10))
    # a 1-D query gives 1 x k (FAISS-like, always 2-D)
    D1, I1 = ix.search(x[3], 4)
    assert D1.shape == (1, 4) and I1.shape == (1, 4) and I1[0, 0] == 3
    # more k than vectors: -1 / +inf padding
    D2, I2 = ix.search(x[:2], 12)
    assert (I2[:, 10:] == -1).all() and np.isinf(D2[:, 10:]).all()
    # get: one id -> 1-D, sequence -> 2-D
    np.testing.assert_array_equal(ix.get(4), x[4])
    assert ix.get(np.int64(4)).shape == (6,)
    np.testing.assert_array_equal(ix.get([1, 2]), x[1:3])
    np.testing.assert_array_equal(ix.get(np.array([5])), x[5:6])
    assert ix.get([]).shape == (0, 6)
    # contains
    assert 3 in ix and np.int64(3) in ix and 99 not in ix and "3" not in ix and -5 not in ix
    assert 2**70 not in ix
    # remove
    assert ix.remove([1, 2, 99]) == 2
    assert ix.remove(3) == 1
    assert ix.remove(np.array([], dtype=np.int64)) == 0
    assert len(ix) == 7 and 1 not in ix and ix.stored_rows == 10
    _, I3 = ix.search(x, 10)
    assert not np.isin(I3, [1, 2, 3]).any()
    ix.compact()
    assert ix.stored_rows == 7 and len(ix) == 7 and ix.next_id == 10
    np.testing.assert_array_equal(ix.get(9), x[9])
    # add with ids, next_id follows the largest
    ix.add(x[:2], ids=[100, 50])
    assert ix.next_id == 101 and 100 in ix and 50 in ix
    ix.add(x[2])
    assert 101 in ix and ix.next_id == 102
    # upsert replaces and appends
    y = x[::-1].copy()
    ix.upsert(y[:2], ids=np.array([100, 200]))
    np.testing.assert_array_equal(ix.get(100), y[0])
    np.testing.assert_array_equal(ix.get(200), y[1])
    n = len(ix)
    ix.upsert(y[5], 100)  # one vector, one int id
    assert len(ix) == n
    np.testing.assert_array_equal(ix.get(100), y[5])
    ix.reserve(1000)
    ix.reset()
    assert len(ix) == 0 and ix.ids().shape == (0,)
    D4, I4 = ix.search(x[:1], 3)
    assert (I4 == -1).all()


def test_empty_batch(rng):
    ix = hive_gpu.Index(4)
    ix.add(np.zeros((0, 4), np.float32))
    assert len(ix) == 0
    ix.add(rng.standard_normal((3, 4)))
    D, I = ix.search(np.zeros((0, 4), np.float32), 2)
    assert D.shape == (0, 2) and I.shape == (0, 2)


def test_input_conversions(rng):
    x64 = rng.standard_normal((20, 5))
    ref = hive_gpu.Index(5)
    ref.add(x64.astype(np.float32))
    Dr, Ir = ref.search(x64.astype(np.float32), 3)
    for x in (x64, x64.astype(np.float16).astype(np.float64), np.asfortranarray(x64),
              x64.astype(np.float32)[:, ::1], x64.astype(">f4"), x64.tolist()):
        ix = hive_gpu.Index(5)
        ix.add(x)
        D, I = ix.search(x, 3)
        assert I.shape == (20, 3)
    # non-contiguous float32 view: converted, same answers
    big = np.zeros((20, 10), np.float32)
    big[:, ::2] = x64.astype(np.float32)
    ix = hive_gpu.Index(5)
    ix.add(big[:, ::2])
    D, I = ix.search(big[:, ::2], 3)
    np.testing.assert_array_equal(I, Ir)
    np.testing.assert_allclose(D, Dr, rtol=1e-6)
    # float16 input
    h = x64.astype(np.float16)
    ix = hive_gpu.Index(5)
    ix.add(h)
    np.testing.assert_array_equal(ix.get(0), h[0].astype(np.float32))


def test_search_writes_fresh_arrays(rng):
    ix = hive_gpu.Index(4)
    ix.add(rng.standard_normal((10, 4)).astype(np.float32))
    q = rng.standard_normal((3, 4)).astype(np.float32)
    D1, I1 = ix.search(q, 2)
    D2, I2 = ix.search(q, 2)
    assert D1 is not D2 and not np.shares_memory(D1, D2)
    assert D1.flags.c_contiguous and I1.flags.c_contiguous and D1.flags.writeable


def test_hamming(rng):
    bits = rng.integers(0, 2, size=(50, 64), dtype=np.uint8)
    packed = np.packbits(bits, axis=1, bitorder="little")
    ix = hive_gpu.Index(64, metric="hamming")
    ix.add(packed)
    np.testing.assert_array_equal(ix.get(7), packed[7])
    assert ix.get([1, 2]).dtype == np.uint8
    D, I = ix.search(packed[:5], 3)
    np.testing.assert_array_equal(I[:, 0], np.arange(5))
    assert (D[:, 0] == 0).all()
    d = (bits[None, :5] != bits[:, None]).sum(-1) if False else None  # noqa: F841
    exact = (bits[:5, None, :] != bits[None, :, :]).sum(-1)
    np.testing.assert_array_equal(np.sort(exact, axis=1)[:, :3], D)
    ix.upsert(packed[0], ids=[7])
    np.testing.assert_array_equal(ix.get(7), packed[0])


def test_save_load_round_trip(tmp_path, rng):
    for metric, dtype in [("l2", "float32"), ("cosine", "float16"), ("ip", "bfloat16"), ("hamming", "uint8")]:
        dim = 32
        if metric == "hamming":
            x = rng.integers(0, 256, size=(40, 4), dtype=np.uint8)
        else:
            x = rng.standard_normal((40, dim)).astype(np.float32)
        ix = hive_gpu.Index(dim, metric=metric, dtype=dtype)
        ix.add(x)
        ix.remove([3, 4])
        path = tmp_path / f"{metric}.hive"
        ix.save(path)  # os.PathLike
        back = hive_gpu.load(str(path), device=ix.device.id)  # same device: identical answers
        assert (back.dim, back.metric, back.dtype, len(back), back.next_id) == (dim, metric, dtype, 38, 40)
        np.testing.assert_array_equal(back.ids(), ix.ids())
        np.testing.assert_array_equal(back.get(back.ids()), ix.get(ix.ids()))
        D1, I1 = ix.search(x[:5], 5)
        D2, I2 = back.search(x[:5], 5)
        np.testing.assert_array_equal(I1, I2)
        np.testing.assert_array_equal(D1, D2)
        on_cpu = hive_gpu.load(path, device="cpu")  # another backend: same ids, rounding may differ
        D3, I3 = on_cpu.search(x[:5], 5)
        assert on_cpu.device.id == "cpu:0" and (I3[:, 0] == I1[:, 0]).all()
        np.testing.assert_allclose(D3, D1, rtol=1e-4, atol=1e-4)
    assert len(hive_gpu.load(os.fsencode(tmp_path / "l2.hive"))) == 38  # bytes path


def test_help_reads_well():
    doc = hive_gpu.Index.__doc__
    assert "metric" in doc and "dtype" in doc and "device" in doc
    for name in ("add", "upsert", "search", "remove", "get", "ids", "compact", "reset", "save"):
        assert getattr(hive_gpu.Index, name).__doc__, name
    assert "(nq, k)" in hive_gpu.Index.search.__doc__
    assert hive_gpu.load.__doc__ and hive_gpu.devices.__doc__ and hive_gpu.backends.__doc__
    assert hive_gpu.DeviceInfo.__doc__ and hive_gpu.Error.__doc__


def test_stub_file_present():
    pkg = os.path.dirname(hive_gpu.__file__)
    assert os.path.exists(os.path.join(pkg, "__init__.pyi"))
    assert os.path.exists(os.path.join(pkg, "py.typed"))


def _header_version_patch(path, version):
    data = bytearray(open(path, "rb").read())
    data[8:12] = struct.pack("<I", version)
    open(path, "wb").write(bytes(data))
