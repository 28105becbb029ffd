"""hive-gpu: exact k-nearest-neighbour search on GPUs and the CPU.

>>> import numpy as np, hive_gpu
>>> index = hive_gpu.Index(128, metric="l2")          # device="auto": best device present
>>> index.add(np.random.rand(1000, 128).astype("float32"))
>>> D, I = index.search(np.random.rand(5, 128), k=10)  # (5, 10) float32 and int64

See help(hive_gpu.Index), hive_gpu.devices(), hive_gpu.backends(), hive_gpu.load().
Errors are subclasses of hive_gpu.Error that also derive from the matching builtin
(ValueError, KeyError, TypeError, RuntimeError, OSError, MemoryError).
"""
from ._hive_gpu import (  # noqa: F401
    MAX_K,
    BackendStatus,
    DeviceInfo,
    DeviceUnavailableError,
    DimensionMismatchError,
    DuplicateIdError,
    CorruptFileError,
    Error,
    IdExistsError,
    Index,
    InternalError,
    InvalidArgumentError,
    InvalidKError,
    IoError,
    NonFiniteValueError,
    OutOfMemoryError,
    UnknownIdError,
    UnknownMetricError,
    UnsupportedError,
    VersionMismatchError,
    __version__,
    backends,
    devices,
    load,
)

__all__ = [
    "MAX_K", "BackendStatus", "DeviceInfo", "Index", "backends", "devices", "load", "Error",
    "InvalidArgumentError", "DimensionMismatchError", "InvalidKError", "NonFiniteValueError",
    "DuplicateIdError", "IdExistsError", "UnknownIdError", "UnknownMetricError", "UnsupportedError",
    "DeviceUnavailableError", "OutOfMemoryError", "IoError", "CorruptFileError",
    "VersionMismatchError", "InternalError", "__version__",
]
