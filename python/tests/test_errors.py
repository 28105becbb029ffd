"""Every error: its class, its builtin base and what its message names."""
import struct

import numpy as np
import pytest

import hive_gpu as hg


@pytest.fixture
def ix(rng):
    i = hg.Index(4)
    i.add(rng.standard_normal((5, 4)).astype(np.float32))
    return i


HIERARCHY = {
    "InvalidArgumentError": ValueError, "DimensionMismatchError": ValueError,
    "InvalidKError": ValueError, "NonFiniteValueError": ValueError, "DuplicateIdError": ValueError,
    "IdExistsError": ValueError, "UnknownIdError": KeyError, "UnknownMetricError": ValueError,
    "UnsupportedError": TypeError, "DeviceUnavailableError": RuntimeError,
    "OutOfMemoryError": MemoryError, "IoError": OSError, "CorruptFileError": ValueError,
    "VersionMismatchError": ValueError, "InternalError": RuntimeError,
}


def test_hierarchy():
    assert issubclass(hg.Error, Exception)
    for name, builtin in HIERARCHY.items():
        cls = getattr(hg, name)
        assert issubclass(cls, hg.Error) and issubclass(cls, builtin), name
        assert cls.__module__ == "hive_gpu" and cls.__doc__


def test_error_code_attribute(ix):
    with pytest.raises(hg.DimensionMismatchError) as e:
        ix.add(np.zeros((2, 3), np.float32))
    assert e.value.code == "DimensionMismatch"


def test_dimension_mismatch(ix):
    with pytest.raises(hg.DimensionMismatchError, match=r"expected 4 .* columns, got shape \(2, 3\)"):
        ix.add(np.zeros((2, 3), np.float32))
    with pytest.raises(ValueError, match="length 4"):
        ix.search(np.zeros(5, np.float32), 1)
    with pytest.raises(hg.DimensionMismatchError):
        ix.upsert(np.zeros((1, 7)), ids=[1])


def test_bad_shapes(ix):
    with pytest.raises(hg.InvalidArgumentError, match="3 dimensions"):
        ix.add(np.zeros((1, 2, 4), np.float32))
    with pytest.raises(hg.InvalidArgumentError, match="0 dimensions"):
        ix.search(np.float32(1.0), 1)
    with pytest.raises(hg.InvalidArgumentError, match="2 vectors but 3 ids"):
        ix.add(np.zeros((2, 4)), ids=[10, 11, 12])
    with pytest.raises(hg.InvalidArgumentError, match="1-D"):
        ix.remove(np.zeros((2, 2), np.int64))


@pytest.mark.parametrize("bad,what", [
    (np.array([["a", "b", "c", "d"]]), "<U1"),
    (np.zeros((1, 4), np.complex64), "complex64"),
    (np.zeros((1, 4), np.int64), "int64"),
    (np.zeros((1, 4), np.int32), "int32"),
    (np.zeros((1, 4), bool), "bool"),
    (np.zeros((1, 4), np.uint8), "uint8"),
    (np.array([[None] * 4]), "object"),
])
def test_bad_dtypes_raise_type_error(ix, bad, what):
    for call in (lambda: ix.add(bad), lambda: ix.search(bad, 1), lambda: ix.upsert(bad, [1])):
        with pytest.raises(TypeError, match=what):
            call()
    assert len(ix) == 5


def test_string_input_type_error(ix):
    with pytest.raises(TypeError, match="str"):
        ix.add("abcd")
    with pytest.raises(TypeError, match="ids must be integers"):
        ix.add(np.zeros((1, 4)), ids=[1.5])
    with pytest.raises(TypeError, match="ids must be integers"):
        ix.remove(["a"])
    with pytest.raises(TypeError, match="bool"):
        ix.get(True)


@pytest.mark.filterwarnings("ignore:overflow encountered")
def test_non_finite(ix):
    x = np.zeros((3, 4), np.float32)
    x[2, 1] = np.nan
    with pytest.raises(hg.NonFiniteValueError, match="row 2") as e:
        ix.add(x)
    assert isinstance(e.value, ValueError)
    assert len(ix) == 5  # nothing added
    q = np.zeros(4)
    q[0] = np.inf
    with pytest.raises(hg.NonFiniteValueError):
        ix.search(q, 1)
    with pytest.raises(hg.NonFiniteValueError):
        ix.add(np.full((1, 4), 1e300))  # float64 beyond float32 range


def test_invalid_k(ix):
    for k in (0, -1, 2049):
        with pytest.raises(hg.InvalidKError, match=f"k = {k}"):
            ix.search(np.zeros(4), k)


def test_ids_errors(ix):
    with pytest.raises(hg.DuplicateIdError, match="7"):
        ix.add(np.zeros((2, 4)), ids=[7, 7])
    with pytest.raises(hg.IdExistsError, match="upsert") as e:
        ix.add(np.zeros((1, 4)), ids=[2])
    assert isinstance(e.value, ValueError)
    with pytest.raises(hg.InvalidArgumentError, match="-1"):
        ix.add(np.zeros((1, 4)), ids=[-1])
    with pytest.raises(hg.InvalidArgumentError, match="2\\^63"):
        ix.add(np.zeros((1, 4)), ids=np.array([2**63], np.uint64))
    with pytest.raises(hg.UnknownIdError, match="99") as e:
        ix.get(99)
    assert isinstance(e.value, KeyError)
    with pytest.raises(KeyError):
        ix.get([0, 99])
    assert len(ix) == 5


def test_constructor_errors():
    with pytest.raises(hg.UnknownMetricError, match="'euclid'") as e:
        hg.Index(4, metric="euclid")
    assert isinstance(e.value, ValueError)
    with pytest.raises(hg.InvalidArgumentError, match="kind 'ivf'"):
        hg.Index(4, kind="ivf")
    with pytest.raises(hg.InvalidArgumentError, match="'float8'"):
        hg.Index(4, dtype="float8")
    with pytest.raises(hg.InvalidArgumentError, match="hamming"):
        hg.Index(4, dtype="bits")
    with pytest.raises(hg.InvalidArgumentError, match="hamming"):
        hg.Index(64, metric="hamming", dtype="float16")
    with pytest.raises(hg.InvalidArgumentError):
        hg.Index(12, metric="hamming")  # not a multiple of 8
    with pytest.raises(hg.InvalidArgumentError):
        hg.Index(0)
    with pytest.raises(TypeError):
        hg.Index(-3)  # not a size


def test_device_unavailable():
    with pytest.raises(hg.DeviceUnavailableError) as e:
        hg.Index(4, device="cuda:7")
    assert isinstance(e.value, RuntimeError) and "cuda" in str(e.value)
    with pytest.raises(hg.DeviceUnavailableError):
        hg.Index(4, device="nonsense")


def test_hamming_type_errors():
    ix = hg.Index(16, metric="hamming")
    with pytest.raises(TypeError, match="packbits"):
        ix.add(np.zeros((1, 2), np.float32))
    with pytest.raises(hg.DimensionMismatchError, match="2 bytes"):
        ix.add(np.zeros((1, 16), np.uint8))


def test_float16_storage_overflow():
    ix = hg.Index(2, dtype="float16")
    with pytest.raises(hg.InvalidArgumentError, match="65504"):
        ix.add(np.array([[1e5, 0.0]], np.float32))


def test_io_errors(tmp_path, ix):
    with pytest.raises(hg.IoError) as e:
        ix.save(tmp_path / "no" / "such" / "dir" / "x.hive")
    assert isinstance(e.value, OSError)
    with pytest.raises(OSError, match="missing.hive"):
        hg.load(tmp_path / "missing.hive")
    bad = tmp_path / "bad.hive"
    bad.write_bytes(b"not an index at all, just some bytes" * 4)
    with pytest.raises(hg.CorruptFileError, match="bad.hive") as e:
        hg.load(bad)
    assert isinstance(e.value, ValueError)
    good = tmp_path / "good.hive"
    ix.save(good)
    data = bytearray(good.read_bytes())
    data[8:12] = struct.pack("<I", 99)
    newer = tmp_path / "newer.hive"
    newer.write_bytes(bytes(data))
    with pytest.raises(hg.VersionMismatchError):
        hg.load(newer)
    data = bytearray(good.read_bytes())
    data[70] ^= 0xFF
    flipped = tmp_path / "flipped.hive"
    flipped.write_bytes(bytes(data))
    with pytest.raises(hg.CorruptFileError, match="CRC|checksum|crc"):
        hg.load(flipped)
