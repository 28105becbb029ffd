// hive_gpu._hive_gpu: the Python bindings (pybind11). The Python package hive_gpu re-exports
// everything here; python/hive_gpu/__init__.pyi documents the types.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "hive_gpu/hive_gpu.hpp"

namespace py = pybind11;
namespace hg = hive::gpu;

namespace {

constexpr std::size_t kNumCodes = std::size_t(hg::ErrorCode::Internal) + 1;

// One Python exception class per ErrorCode (filled at import time, owned by the module).
std::array<PyObject*, kNumCodes> g_error_classes{};
PyObject* g_error_base = nullptr;

const char* code_name(hg::ErrorCode c) {
  switch (c) {
    case hg::ErrorCode::InvalidArgument: return "InvalidArgument";
    case hg::ErrorCode::DimensionMismatch: return "DimensionMismatch";
    case hg::ErrorCode::InvalidK: return "InvalidK";
    case hg::ErrorCode::NonFiniteValue: return "NonFiniteValue";
    case hg::ErrorCode::DuplicateId: return "DuplicateId";
    case hg::ErrorCode::IdExists: return "IdExists";
    case hg::ErrorCode::UnknownId: return "UnknownId";
    case hg::ErrorCode::UnknownMetric: return "UnknownMetric";
    case hg::ErrorCode::Unsupported: return "Unsupported";
    case hg::ErrorCode::DeviceUnavailable: return "DeviceUnavailable";
    case hg::ErrorCode::OutOfMemory: return "OutOfMemory";
    case hg::ErrorCode::Io: return "Io";
    case hg::ErrorCode::CorruptFile: return "CorruptFile";
    case hg::ErrorCode::VersionMismatch: return "VersionMismatch";
    case hg::ErrorCode::Internal: return "Internal";
  }
  return "Internal";
}

[[noreturn]] void fail(hg::ErrorCode code, const std::string& msg) { throw hg::Error(code, msg); }

// Raises the Python class of e.code() with e.what() as message and .code set to the code name.
void raise_error(const hg::Error& e) {
  PyObject* cls = g_error_classes[std::size_t(e.code())];
  if (cls == nullptr) cls = g_error_base;
  PyObject* exc = PyObject_CallFunction(cls, "s", e.what());
  if (exc == nullptr) return;  // the call already set a Python error
  PyObject* code = PyUnicode_FromString(code_name(e.code()));
  if (code != nullptr) {
    PyObject_SetAttrString(exc, "code", code);
    Py_DECREF(code);
  }
  PyErr_SetObject(cls, exc);
  Py_DECREF(exc);
}

std::string metric_name(hg::Metric m) { return std::string(hg::to_string(m)); }

std::string dtype_name(hg::ScalarType t) {
  switch (t) {
    case hg::ScalarType::F32: return "float32";
    case hg::ScalarType::F16: return "float16";
    case hg::ScalarType::BF16: return "bfloat16";
    case hg::ScalarType::Bits: return "uint8";
  }
  return "?";
}

std::string numpy_dtype_str(const py::array& a) { return py::str(a.dtype()).cast<std::string>(); }

// Input vectors as a C-contiguous n x cols matrix of T: float32 passes through untouched,
// float16/float64 (or non-contiguous / byte-swapped float32) are converted once.
template <typename T>
struct Rows {
  py::array_t<T, py::array::c_style> arr;
  std::size_t n = 0;
  const T* data() const { return arr.data(); }
};

py::array as_array(const py::handle& x) {
  if (py::isinstance<py::str>(x) || py::isinstance<py::bytes>(x))
    throw py::type_error("expected a numpy array of vectors, got " +
                         py::str(py::type::of(x).attr("__name__")).cast<std::string>());
  return py::array::ensure(x);
}

template <typename T>
Rows<T> to_rows(const py::handle& x, std::size_t cols, std::size_t dim, bool bits, const char* what) {
  py::array a = as_array(x);
  if (!a) throw py::type_error(std::string(what) + ": expected an array-like of numbers");
  const char kind = a.dtype().kind();
  if (bits) {
    if (!(kind == 'u' && a.itemsize() == 1))
      throw py::type_error(std::string(what) + ": a hamming index takes packed bits as uint8 (got " +
                           numpy_dtype_str(a) + "); pack with np.packbits(bits, axis=-1, bitorder='little')");
  } else if (kind != 'f') {
    throw py::type_error(std::string(what) + ": expected float32, float16 or float64 values (got " +
                         numpy_dtype_str(a) + ")" +
                         (kind == 'i' || kind == 'u' || kind == 'b' ? "; convert with x.astype(np.float32)" : ""));
  }
  Rows<T> r;
  const std::string unit = bits ? " bytes (dim " + std::to_string(dim) + " bits / 8)" : " (the index dim)";
  if (a.ndim() == 1) {
    if (std::size_t(a.shape(0)) != cols)
      fail(hg::ErrorCode::DimensionMismatch, std::string(what) + ": a 1-D vector must have length " +
                                                 std::to_string(cols) + unit + ", got " + std::to_string(a.shape(0)));
    r.n = 1;
  } else if (a.ndim() == 2) {
    if (std::size_t(a.shape(1)) != cols)
      fail(hg::ErrorCode::DimensionMismatch, std::string(what) + ": expected " + std::to_string(cols) + unit +
                                                 " columns, got shape (" + std::to_string(a.shape(0)) + ", " +
                                                 std::to_string(a.shape(1)) + ")");
    r.n = std::size_t(a.shape(0));
  } else {
    fail(hg::ErrorCode::InvalidArgument, std::string(what) + ": expected a 1-D vector or a 2-D (n, " +
                                             std::to_string(cols) + ") array, got " + std::to_string(a.ndim()) +
                                             " dimensions");
  }
  r.arr = py::array_t<T, py::array::c_style | py::array::forcecast>::ensure(a);
  if (!r.arr) throw py::error_already_set();
  return r;
}

// ids: an int, or a 1-D array-like of integers, as a contiguous int64 array.
py::array_t<int64_t, py::array::c_style> to_ids(const py::handle& ids, const char* what) {
  if (py::isinstance<py::bool_>(ids)) throw py::type_error(std::string(what) + ": ids must be integers, got bool");
  py::array a = as_array(ids);
  if (!a) throw py::type_error(std::string(what) + ": ids must be integers");
  const char kind = a.dtype().kind();
  if (a.size() > 0 && kind != 'i' && kind != 'u')
    throw py::type_error(std::string(what) + ": ids must be integers (got " + numpy_dtype_str(a) + ")");
  if (a.ndim() > 1)
    fail(hg::ErrorCode::InvalidArgument,
         std::string(what) + ": ids must be one id or a 1-D sequence, got " + std::to_string(a.ndim()) + " dimensions");
  if (kind == 'u' && a.itemsize() == 8) {
    // uint64 ids above INT64_MAX would wrap; numpy refuses to cast them safely, so check here.
    py::object too_big = py::module_::import("numpy").attr("any")(a.attr("__gt__")(py::int_(INT64_MAX)));
    if (too_big.cast<bool>()) fail(hg::ErrorCode::InvalidArgument, std::string(what) + ": id above 2^63-1");
  }
  auto out = py::array_t<int64_t, py::array::c_style | py::array::forcecast>::ensure(a);
  if (!out) throw py::error_already_set();
  return out;
}

hg::Context open_device(const std::string& spec) { return hg::Context::open(spec); }

std::string fs_path(const py::handle& p) {
  return py::module_::import("os").attr("fsdecode")(p).cast<std::string>();
}

// Index parameters of kind="hnsw" and kind="graph" (ignored by "flat").
struct GraphParams {
  int M = 16, ef_construction = 200, ef_search = 64;
  int graph_degree = 32, itopk = 64, search_width = 1;
};

class PyIndex {
 public:
  PyIndex(std::size_t dim, const std::string& metric, const std::string& kind, const std::string& dtype,
          const std::string& device, const GraphParams& g) {
    if (kind != "flat" && kind != "hnsw" && kind != "graph")
      fail(hg::ErrorCode::InvalidArgument, "unknown index kind '" + kind + "' (this version has: flat, hnsw, graph)");
    const hg::Metric m = hg::parse_metric(metric);
    hg::ScalarType storage;
    if (m == hg::Metric::Hamming) {
      if (dtype != "float32" && dtype != "uint8" && dtype != "bits")
        fail(hg::ErrorCode::InvalidArgument,
             "a hamming index stores packed bits: dtype must be 'uint8' (or left at its default), got '" + dtype + "'");
      storage = hg::ScalarType::Bits;
    } else {
      storage = hg::parse_scalar_type(dtype);
      if (storage == hg::ScalarType::Bits)
        fail(hg::ErrorCode::InvalidArgument, "dtype '" + dtype + "' is only for metric='hamming'");
    }
    if (kind == "graph") {
      if (storage != hg::ScalarType::F32)
        fail(hg::ErrorCode::InvalidArgument, "kind='graph' stores float32 vectors, got dtype '" + dtype + "'");
      hg::GraphOptions opt;
      opt.graph_degree = g.graph_degree;
      opt.intermediate_degree = std::max(64, g.graph_degree);
      opt.search.itopk = g.itopk;
      opt.search.search_width = g.search_width;
      set(std::make_unique<hg::GraphIndex>(open_device(device), dim, m, opt));
    } else if (kind == "flat") {
      hg::FlatOptions opt;
      opt.storage = storage;
      set(std::make_unique<hg::FlatIndex>(open_device(device), dim, m, opt));
    } else {
      hg::HnswOptions opt;
      opt.storage = storage;
      opt.M = g.M;
      opt.ef_construction = g.ef_construction;
      opt.ef_search = g.ef_search;
      set(std::make_unique<hg::HnswIndex>(open_device(device == "auto" ? "cpu" : device), dim, m, opt));
    }
  }
  explicit PyIndex(hg::FlatIndex&& f) { set(std::make_unique<hg::FlatIndex>(std::move(f))); }
  explicit PyIndex(hg::HnswIndex&& h) { set(std::make_unique<hg::HnswIndex>(std::move(h))); }
  explicit PyIndex(hg::GraphIndex&& g) { set(std::make_unique<hg::GraphIndex>(std::move(g))); }

  const char* kind() const { return hnsw_ != nullptr ? "hnsw" : graph_ != nullptr ? "graph" : "flat"; }
  hg::GraphIndex& graph() const {
    if (graph_ == nullptr) fail(hg::ErrorCode::Unsupported, "only kind='graph' indexes have itopk and search_width");
    return *graph_;
  }
  hg::HnswIndex& hnsw() const {
    if (hnsw_ == nullptr) fail(hg::ErrorCode::Unsupported, "only kind='hnsw' indexes have graph parameters");
    return *hnsw_;
  }
  const hg::Context& context() const {
    return hnsw_ != nullptr ? hnsw_->context() : graph_ != nullptr ? graph_->context() : flat_->context();
  }
  std::size_t stored_rows() const {
    return hnsw_ != nullptr ? hnsw_->stored_rows() : graph_ != nullptr ? graph_->stored_rows() : flat_->stored_rows();
  }

  bool bits() const { return idx_->metric() == hg::Metric::Hamming; }
  std::size_t cols() const { return bits() ? idx_->dim() / 8 : idx_->dim(); }

  void add(const py::handle& x, const py::handle& ids) {
    if (ids.is_none()) {
      if (bits()) {
        auto r = to_rows<uint8_t>(x, cols(), idx_->dim(), true, "add");
        py::gil_scoped_release nogil;
        idx_->add(r.n, r.data());
      } else {
        auto r = to_rows<float>(x, cols(), idx_->dim(), false, "add");
        py::gil_scoped_release nogil;
        idx_->add(r.n, r.data());
      }
    } else {
      with_ids(x, ids, "add", false);
    }
  }
  void upsert(const py::handle& x, const py::handle& ids) { with_ids(x, ids, "upsert", true); }

  py::tuple search(const py::handle& q, int k, const py::handle& ef) const {
    if (k < 1 || k > hg::kMaxK)
      fail(hg::ErrorCode::InvalidK, "k = " + std::to_string(k) + " is outside 1.." + std::to_string(hg::kMaxK));
    const std::optional<int> e = ef.is_none() ? std::nullopt : std::optional<int>(ef.cast<int>());
    if (e && hnsw_ == nullptr && graph_ == nullptr)
      fail(hg::ErrorCode::Unsupported, "ef is a parameter of kind='hnsw' and kind='graph' indexes");
    if (bits()) return search_t<uint8_t>(to_rows<uint8_t>(q, cols(), idx_->dim(), true, "search"), k, e);
    return search_t<float>(to_rows<float>(q, cols(), idx_->dim(), false, "search"), k, e);
  }

  std::size_t remove(const py::handle& ids) {
    auto a = to_ids(ids, "remove");
    return idx_->remove(std::size_t(a.size()), a.data());
  }

  bool contains(const py::handle& id) const {
    if (py::isinstance<py::bool_>(id)) return false;
    if (!py::isinstance<py::int_>(id) && !py::hasattr(id, "__index__")) return false;
    py::int_ v = py::reinterpret_steal<py::int_>(PyNumber_Index(id.ptr()));
    if (!v) {
      PyErr_Clear();
      return false;
    }
    int overflow = 0;
    const long long x = PyLong_AsLongLongAndOverflow(v.ptr(), &overflow);
    if (overflow != 0) return false;
    return idx_->contains(int64_t(x));
  }

  py::array get(const py::handle& ids) const {
    const bool scalar = py::isinstance<py::int_>(ids) || (py::hasattr(ids, "__index__") && !py::isinstance<py::array>(ids)) ||
                        (py::isinstance<py::array>(ids) && py::reinterpret_borrow<py::array>(ids).ndim() == 0);
    auto a = to_ids(ids, "get");
    const std::size_t n = std::size_t(a.size());
    const std::size_t c = cols();
    if (bits()) return gather<uint8_t>(a, n, c, scalar, [&](int64_t id) { return idx_->get_bits(id); });
    return gather<float>(a, n, c, scalar, [&](int64_t id) { return idx_->get(id); });
  }

  py::array_t<int64_t> ids() const {
    std::vector<int64_t> v = idx_->ids();
    py::array_t<int64_t> out(py::ssize_t(v.size()));
    std::copy(v.begin(), v.end(), out.mutable_data());
    return out;
  }

  void save(const py::handle& path) const {
    const std::string p = fs_path(path);
    py::gil_scoped_release nogil;
    idx_->save(p);
  }

  std::string repr() const {
    return "hive_gpu.Index(dim=" + std::to_string(idx_->dim()) + ", metric='" + metric_name(idx_->metric()) +
           "', kind='" + kind() + "', dtype='" + dtype_name(idx_->storage()) + "', device='" +
           context().info().id() + "', ntotal=" + std::to_string(idx_->size()) + ")";
  }

  hg::Index& idx() const { return *idx_; }

 private:
  template <class T>
  void set(std::unique_ptr<T> p) {
    if constexpr (std::is_same_v<T, hg::HnswIndex>)
      hnsw_ = p.get();
    else if constexpr (std::is_same_v<T, hg::GraphIndex>)
      graph_ = p.get();
    else
      flat_ = p.get();
    idx_ = std::move(p);
  }

  void with_ids(const py::handle& x, const py::handle& ids, const char* what, bool upsert) {
    auto a = to_ids(ids, what);
    auto run = [&](auto r) {
      if (std::size_t(a.size()) != r.n)
        fail(hg::ErrorCode::InvalidArgument, std::string(what) + ": " + std::to_string(r.n) + " vectors but " +
                                                 std::to_string(a.size()) + " ids");
      py::gil_scoped_release nogil;
      if (upsert)
        idx_->upsert(r.n, r.data(), a.data());
      else
        idx_->add_with_ids(r.n, r.data(), a.data());
    };
    if (bits())
      run(to_rows<uint8_t>(x, cols(), idx_->dim(), true, what));
    else
      run(to_rows<float>(x, cols(), idx_->dim(), false, what));
  }

  template <typename T>
  py::tuple search_t(const Rows<T>& r, int k, std::optional<int> ef) const {
    const auto nq = py::ssize_t(r.n);
    py::array_t<float> d({nq, py::ssize_t(k)});
    py::array_t<int64_t> i({nq, py::ssize_t(k)});
    float* dp = d.mutable_data();
    int64_t* ip = i.mutable_data();
    const T* qp = r.data();
    if (r.n > 0) {
      py::gil_scoped_release nogil;
      if (ef && graph_ != nullptr) {
        if constexpr (std::is_same_v<T, float>) {
          hg::GraphSearchParams p = graph_->search_params();
          p.itopk = *ef;
          graph_->search(r.n, qp, k, dp, ip, p);
        }
      } else if (ef) {
        hnsw_->search(r.n, qp, k, dp, ip, *ef);
      } else
        idx_->search(r.n, qp, k, dp, ip);
    }
    return py::make_tuple(std::move(d), std::move(i));
  }

  template <typename T, typename F>
  static py::array gather(const py::array_t<int64_t, py::array::c_style>& a, std::size_t n, std::size_t c,
                          bool scalar, F&& fetch) {
    py::array_t<T> out = scalar ? py::array_t<T>(py::ssize_t(c)) : py::array_t<T>({py::ssize_t(n), py::ssize_t(c)});
    T* o = out.mutable_data();
    const int64_t* p = a.data();
    for (std::size_t j = 0; j < n; ++j) {
      std::vector<T> v = fetch(p[j]);
      std::copy(v.begin(), v.end(), o + j * c);
    }
    return out;
  }

  std::unique_ptr<hg::Index> idx_;
  hg::FlatIndex* flat_ = nullptr;  // the same object as idx_, by kind
  hg::HnswIndex* hnsw_ = nullptr;
  hg::GraphIndex* graph_ = nullptr;
};

py::dict device_dict(const hg::DeviceInfo& d) {
  py::dict o;
  o["id"] = d.id();
  o["backend"] = d.backend;
  o["ordinal"] = d.ordinal;
  o["vendor"] = d.vendor;
  o["name"] = d.name;
  o["architecture"] = d.architecture;
  o["compute_major"] = d.compute_major;
  o["compute_minor"] = d.compute_minor;
  o["compute_units"] = d.compute_units;
  o["subgroup_size"] = d.subgroup_size;
  o["device_type"] = d.device_type;
  o["simd"] = d.simd;
  o["total_memory"] = d.total_memory;
  o["free_memory"] = d.free_memory;
  o["driver_version"] = d.driver_version;
  o["runtime_version"] = d.runtime_version;
  o["pci_bus_id"] = d.pci_bus_id;
  return o;
}

py::dict backend_dict(const hg::BackendStatus& b) {
  py::dict o;
  o["name"] = b.name;
  o["compiled"] = b.compiled;
  o["available"] = b.available;
  o["device_count"] = b.device_count;
  o["reason"] = b.reason;
  return o;
}

std::string dict_repr(const char* cls, const py::dict& d) {
  std::string s = std::string(cls) + "(";
  bool first = true;
  for (auto item : d) {
    if (!first) s += ", ";
    first = false;
    s += py::str(item.first).cast<std::string>() + "=" + py::repr(item.second).cast<std::string>();
  }
  return s + ")";
}

// __getitem__, keys, values, items, get, __iter__, __len__, __contains__, to_dict, __repr__.
template <typename T, typename F>
void dict_protocol(py::class_<T>& c, const char* name, F to_dict) {
  c.def("to_dict", [to_dict](const T& v) { return to_dict(v); }, "A plain dict of every field.");
  c.def("keys", [to_dict](const T& v) { return to_dict(v).attr("keys")(); }, "The field names.");
  c.def("values", [to_dict](const T& v) { return to_dict(v).attr("values")(); }, "The field values.");
  c.def("items", [to_dict](const T& v) { return to_dict(v).attr("items")(); }, "(name, value) pairs.");
  c.def("get", [to_dict](const T& v, const py::object& k, const py::object& dflt) { return to_dict(v).attr("get")(k, dflt); },
        py::arg("key"), py::arg("default") = py::none(), "The field named key, or default.");
  c.def(
      "__getitem__",
      [to_dict](const T& v, const py::object& k) -> py::object {
        py::dict d = to_dict(v);
        if (!d.contains(k)) throw py::key_error(py::repr(k).cast<std::string>());
        return d[k];
      },
      py::arg("key"));
  c.def("__contains__", [to_dict](const T& v, const py::object& k) { return to_dict(v).contains(k); });
  c.def("__iter__", [to_dict](const T& v) { return py::iter(to_dict(v)); });
  c.def("__len__", [to_dict](const T& v) { return py::len(to_dict(v)); });
  c.def("__repr__", [to_dict, name](const T& v) { return dict_repr(name, to_dict(v)); });
  c.def("__eq__", [to_dict](const T& a, const py::object& b) -> py::object {
    if (!py::isinstance<T>(b)) return py::reinterpret_borrow<py::object>(Py_NotImplemented);
    return py::bool_(to_dict(a).equal(to_dict(b.cast<const T&>())));
  });
}

PyObject* make_error_class(py::module_& m, const char* name, PyObject* builtin, const char* doc) {
  const std::string qual = std::string("hive_gpu.") + name;
  PyObject* bases = builtin == nullptr ? PyTuple_Pack(1, g_error_base) : PyTuple_Pack(2, g_error_base, builtin);
  PyObject* cls = PyErr_NewExceptionWithDoc(qual.c_str(), doc, bases, nullptr);
  Py_XDECREF(bases);
  if (cls == nullptr) throw py::error_already_set();
  m.add_object(name, py::reinterpret_borrow<py::object>(cls));
  return cls;  // the module keeps a reference
}

}  // namespace

PYBIND11_MODULE(_hive_gpu, m) {
  m.doc() = "hive-gpu: exact k-nearest-neighbour search on GPUs and the CPU (compiled core).";
  m.attr("__version__") = hg::kVersionString;
  m.attr("MAX_K") = hg::kMaxK;

  g_error_base = PyErr_NewExceptionWithDoc(
      "hive_gpu.Error",
      "Base of every error hive_gpu raises. Each subclass also derives from the matching builtin "
      "(ValueError, KeyError, TypeError, RuntimeError, OSError, MemoryError); .code names the C++ ErrorCode.",
      PyExc_Exception, nullptr);
  if (g_error_base == nullptr) throw py::error_already_set();
  m.add_object("Error", py::reinterpret_borrow<py::object>(g_error_base));
  using C = hg::ErrorCode;
  auto reg = [&](C c, const char* name, PyObject* builtin, const char* doc) {
    g_error_classes[std::size_t(c)] = make_error_class(m, name, builtin, doc);
  };
  reg(C::InvalidArgument, "InvalidArgumentError", PyExc_ValueError, "A parameter outside its documented range.");
  reg(C::DimensionMismatch, "DimensionMismatchError", PyExc_ValueError, "Vector length differs from the index dim.");
  reg(C::InvalidK, "InvalidKError", PyExc_ValueError, "k < 1 or k > MAX_K (2048).");
  reg(C::NonFiniteValue, "NonFiniteValueError", PyExc_ValueError, "NaN or Inf in an input vector.");
  reg(C::DuplicateId, "DuplicateIdError", PyExc_ValueError, "The same id twice in one call.");
  reg(C::IdExists, "IdExistsError", PyExc_ValueError, "add() with an id already present (use upsert).");
  reg(C::UnknownId, "UnknownIdError", PyExc_KeyError, "get() of an id that is not in the index.");
  reg(C::UnknownMetric, "UnknownMetricError", PyExc_ValueError, "Metric name not recognised.");
  reg(C::Unsupported, "UnsupportedError", PyExc_TypeError, "A valid request this index or backend does not implement.");
  reg(C::DeviceUnavailable, "DeviceUnavailableError", PyExc_RuntimeError,
      "Backend not compiled in, or its device absent.");
  reg(C::OutOfMemory, "OutOfMemoryError", PyExc_MemoryError, "Host or device allocation failed.");
  reg(C::Io, "IoError", PyExc_OSError, "Open, read, write or rename failed.");
  reg(C::CorruptFile, "CorruptFileError", PyExc_ValueError, "Bad magic, checksum, truncation or header.");
  reg(C::VersionMismatch, "VersionMismatchError", PyExc_ValueError, "File written by a newer format version.");
  reg(C::Internal, "InternalError", PyExc_RuntimeError, "A bug in hive-gpu: please report it.");

  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const hg::Error& e) {
      raise_error(e);
    }
  });

  py::class_<hg::DeviceInfo> dev(m, "DeviceInfo", R"doc(
One device a backend can run on (read-only, dict-like).

Fields: id ("cpu:0", "cuda:0": what Index(device=...) accepts), backend, ordinal, vendor, name,
architecture, compute_major, compute_minor, compute_units (SMs, CUs or CPU threads),
subgroup_size, simd (CPU: scalar/avx2/avx512), total_memory and free_memory (bytes),
driver_version, runtime_version, pci_bus_id. Read them as attributes or as d["name"];
keys(), items(), to_dict() as for a dict.
)doc");
  dev.def_property_readonly("id", &hg::DeviceInfo::id, "'backend:ordinal', as Index(device=...) accepts it.")
      .def_readonly("backend", &hg::DeviceInfo::backend)
      .def_readonly("ordinal", &hg::DeviceInfo::ordinal)
      .def_readonly("vendor", &hg::DeviceInfo::vendor)
      .def_readonly("name", &hg::DeviceInfo::name)
      .def_readonly("architecture", &hg::DeviceInfo::architecture)
      .def_readonly("compute_major", &hg::DeviceInfo::compute_major)
      .def_readonly("compute_minor", &hg::DeviceInfo::compute_minor)
      .def_readonly("compute_units", &hg::DeviceInfo::compute_units)
      .def_readonly("subgroup_size", &hg::DeviceInfo::subgroup_size)
      .def_readonly("device_type", &hg::DeviceInfo::device_type)
      .def_readonly("simd", &hg::DeviceInfo::simd)
      .def_readonly("total_memory", &hg::DeviceInfo::total_memory)
      .def_readonly("free_memory", &hg::DeviceInfo::free_memory)
      .def_readonly("driver_version", &hg::DeviceInfo::driver_version)
      .def_readonly("runtime_version", &hg::DeviceInfo::runtime_version)
      .def_readonly("pci_bus_id", &hg::DeviceInfo::pci_bus_id)
      .def("memory_usage_percent", &hg::DeviceInfo::memory_usage_percent, "Used memory, 0..100.")
      .def("has_free_memory", &hg::DeviceInfo::has_free_memory, py::arg("nbytes"),
           "True when at least nbytes are free.");
  dict_protocol(dev, "DeviceInfo", device_dict);

  py::class_<hg::BackendStatus> bs(m, "BackendStatus", R"doc(
One backend this build knows of (read-only, dict-like): name ("cpu", "cuda", ...), compiled
(built into this library), available (a device was found), device_count, reason (why not).
)doc");
  bs.def_readonly("name", &hg::BackendStatus::name)
      .def_readonly("compiled", &hg::BackendStatus::compiled)
      .def_readonly("available", &hg::BackendStatus::available)
      .def_readonly("device_count", &hg::BackendStatus::device_count)
      .def_readonly("reason", &hg::BackendStatus::reason);
  dict_protocol(bs, "BackendStatus", backend_dict);

  m.def("devices", &hg::Context::devices,
        "Every device of every compiled-in backend that is present, as DeviceInfo; the CPU is always listed.");
  m.def("backends", &hg::Context::backends,
        "Every backend this build knows of, compiled in or not, as BackendStatus.");

  py::class_<PyIndex> idx(m, "Index", R"doc(
Index(dim, metric="l2", kind="flat", dtype="float32", device="auto", M=16, ef_construction=200, ef_search=64,
      graph_degree=32, itopk=64, search_width=1)

A k-nearest-neighbour index, FAISS-like: exact (kind="flat"), an HNSW graph (kind="hnsw",
CPU) or a graph built and searched on the GPU (kind="graph", CUDA or HIP).

dim     vector length; for metric="hamming" the number of bits (a multiple of 8).
metric  "l2" (squared Euclidean, ascending), "ip" (inner product, descending), "cosine"
        (1 - cosine similarity), "l1", "linf", "hamming" (differing bits).
kind    "flat" (exact, brute force, any device) or "hnsw" (approximate: hierarchical
        navigable small-world graph, on the CPU; M links per node, ef_construction the
        build's candidate list, ef_search the search's, changeable later or per search), or
        "graph" (approximate, on a GPU: graph_degree links per node; itopk the search list, a
        power of two 16..1024, changeable later or per search as ef; search_width 1..4).
dtype   storage encoding: "float32", "float16" or "bfloat16" (hamming: packed "uint8").
device  "auto" (best present: CUDA, HIP, Vulkan, then CPU), "cpu", "cuda", "cuda:1", ...

Vectors: a 1-D array (one vector) or a 2-D (n, dim) array. float32 C-contiguous arrays are
used in place (zero-copy); float16, float64 and non-contiguous arrays are converted once.
Integer, bool, complex and string arrays raise TypeError. Hamming indexes take uint8 arrays
of dim/8 packed bytes per vector (np.packbits(bits, axis=-1, bitorder="little")).
Errors raise subclasses of hive_gpu.Error. add/upsert/search release the GIL: threads can
search one index in parallel.
)doc");
  idx.def(py::init([](std::size_t dim, const std::string& metric, const std::string& kind, const std::string& dtype,
                       const std::string& device, int M, int ef_construction, int ef_search, int graph_degree,
                       int itopk, int search_width) {
            return PyIndex(dim, metric, kind, dtype, device,
                           GraphParams{M, ef_construction, ef_search, graph_degree, itopk, search_width});
          }),
          py::arg("dim"), py::arg("metric") = "l2", py::arg("kind") = "flat", py::arg("dtype") = "float32",
          py::arg("device") = "auto", py::arg("M") = 16, py::arg("ef_construction") = 200, py::arg("ef_search") = 64,
          py::arg("graph_degree") = 32, py::arg("itopk") = 64, py::arg("search_width") = 1)
      .def("add", &PyIndex::add, py::arg("x"), py::arg("ids") = py::none(), R"doc(
add(x, ids=None)

Appends vectors. Without ids they get next_id, next_id+1, ...; with ids (one int per vector)
IdExistsError if one is present (use upsert), DuplicateIdError if one repeats. Nothing is
added when an error is raised.
)doc")
      .def("upsert", &PyIndex::upsert, py::arg("x"), py::arg("ids"),
           "upsert(x, ids)\n\nReplaces the vectors of ids already present and appends the others.")
      .def("search", &PyIndex::search, py::arg("q"), py::arg("k"), py::arg("ef") = py::none(), R"doc(
search(q, k, ef=None) -> (D, I)

The k nearest stored vectors of each query, best first. Always 2-D, as FAISS: D is an
(nq, k) float32 array of distances, I an (nq, k) int64 array of ids; a 1-D query gives
(1, k). Slots no vector filled (fewer than k vectors) hold id -1 and +inf (-inf for "ip").
k from 1 to MAX_K (2048), InvalidKError otherwise. ef (kind="hnsw" only): this search's
candidate list instead of ef_search (searches use max(ef, k)); kind="graph": this search's itopk.
)doc")
      .def("remove", &PyIndex::remove, py::arg("ids"),
           "remove(ids) -> int\n\nSoft-deletes one id or a sequence of ids; unknown ids are ignored. Returns how many "
           "were removed.")
      .def("get", &PyIndex::get, py::arg("ids"), R"doc(
get(ids) -> numpy.ndarray

The stored vector of one id as a 1-D array, or of a sequence of ids as a 2-D array (float32,
decoded from float16/bfloat16, normalised for cosine; uint8 packed bits for hamming).
UnknownIdError (a KeyError) for an id not present.
)doc")
      .def("ids", &PyIndex::ids, "ids() -> numpy.ndarray\n\nThe live ids (int64), in storage order.")
      .def("compact", [](PyIndex& s) { s.idx().compact(); },
           "Reclaims the memory of removed vectors; ids are kept.")
      .def("reset", [](PyIndex& s) { s.idx().reset(); }, "Removes every vector.")
      .def("reserve", [](PyIndex& s, std::size_t n) { s.idx().reserve(n); }, py::arg("n"),
           "Makes room for n vectors.")
      .def("save", &PyIndex::save, py::arg("path"),
           "save(path)\n\nWrites the index to path atomically (temporary file, fsync, rename). IoError on failure.")
      .def("__len__", [](const PyIndex& s) { return s.idx().size(); })
      .def("__contains__", &PyIndex::contains, py::arg("id"))
      .def("__repr__", &PyIndex::repr)
      .def_property_readonly("dim", [](const PyIndex& s) { return s.idx().dim(); },
                             "Vector length (bits for hamming).")
      .def_property_readonly("metric", [](const PyIndex& s) { return metric_name(s.idx().metric()); },
                             "'l2', 'ip', 'cosine', 'l1', 'linf' or 'hamming'.")
      .def_property_readonly("dtype", [](const PyIndex& s) { return dtype_name(s.idx().storage()); },
                             "Storage encoding: 'float32', 'float16', 'bfloat16' ('uint8' for hamming).")
      .def_property_readonly("device", [](const PyIndex& s) { return s.context().info(); },
                             "The DeviceInfo of the device the index lives on.")
      .def_property_readonly("ntotal", [](const PyIndex& s) { return s.idx().size(); },
                             "Number of live vectors (as FAISS's ntotal).")
      .def_property_readonly("size", [](const PyIndex& s) { return s.idx().size(); },
                             "Number of live vectors.")
      .def_property_readonly("kind", &PyIndex::kind, "'flat', 'hnsw' or 'graph'.")
      .def_property(
          "itopk", [](const PyIndex& s) { return s.graph().search_params().itopk; },
          [](PyIndex& s, int v) {
            auto p = s.graph().search_params();
            p.itopk = v;
            s.graph().set_search_params(p);
          },
          "The search list (kind='graph').")
      .def_property(
          "search_width", [](const PyIndex& s) { return s.graph().search_params().search_width; },
          [](PyIndex& s, int v) {
            auto p = s.graph().search_params();
            p.search_width = v;
            s.graph().set_search_params(p);
          },
          "List entries expanded per search step (kind='graph').")
      .def_property_readonly("graph_degree", [](const PyIndex& s) { return s.graph().options().graph_degree; },
                             "Links per node (kind='graph').")
      .def_property(
          "ef_search", [](const PyIndex& s) { return s.hnsw().ef_search(); },
          [](PyIndex& s, int ef) { s.hnsw().set_ef_search(ef); }, "The search candidate list (kind='hnsw').")
      .def_property_readonly("M", [](const PyIndex& s) { return s.hnsw().options().M; }, "Links per node (kind='hnsw').")
      .def_property_readonly("ef_construction", [](const PyIndex& s) { return s.hnsw().options().ef_construction; },
                             "The build's candidate list (kind='hnsw').")
      .def_property_readonly("max_level", [](const PyIndex& s) { return s.hnsw().max_level(); },
                             "The top level of the graph (kind='hnsw').")
      .def_property_readonly("stored_rows", [](const PyIndex& s) { return s.stored_rows(); },
                             "Rows in storage, removed ones not yet compacted included.")
      .def_property_readonly("next_id", [](const PyIndex& s) { return s.idx().next_id(); },
                             "The id add() gives next: one past the largest id ever held.");

  m.def(
      "load",
      [](const py::handle& path, const std::string& device, const std::string& kind) {
        const std::string p = fs_path(path);
        std::optional<hg::FlatIndex> f;
        std::optional<hg::HnswIndex> h;
        std::optional<hg::GraphIndex> g;
        {
          py::gil_scoped_release nogil;
          if (kind == "graph")
            g.emplace(hg::GraphIndex::load(p, open_device(device)));
          else if (hg::index_file_kind(p) == "hnsw")
            h.emplace(hg::HnswIndex::load(p));
          else
            f.emplace(hg::FlatIndex::load(p, open_device(device)));
        }
        return g ? PyIndex(std::move(*g)) : h ? PyIndex(std::move(*h)) : PyIndex(std::move(*f));
      },
      py::arg("path"), py::arg("device") = "auto", py::arg("kind") = "",
      "load(path, device='auto', kind='') -> Index\n\nReads a file written by Index.save (flat: onto device; hnsw "
      "and graph files: on the CPU as kind='hnsw', or with kind='graph' onto a GPU device as a graph index). "
      "IoError, CorruptFileError or VersionMismatchError.");
}
