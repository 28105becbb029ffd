// Conformance: backends, devices, Context::open, and the small free functions of types.hpp /
// error.hpp. Parameterised by backend name alone (the parameter name is the backend name).
#include <set>

#include "reference.hpp"

namespace conformance {
namespace {

using hive::gpu::BackendStatus;
using hive::gpu::DeviceInfo;

class BackendTest : public testing::TestWithParam<std::string> {
 protected:
  void SetUp() override { CONFORMANCE_SKIP_IF_UNAVAILABLE(GetParam()); }
  const std::string& backend() const { return GetParam(); }
};

// Every compiled backend except the CPU, whose device is always present.
const std::vector<std::string> kGpuOrder = {"cuda", "hip", "vulkan"};

TEST_P(BackendTest, BackendsListed) {
  const auto all = Context::backends();
  std::set<std::string> names;
  bool cpu_seen = false, me_seen = false;
  for (const BackendStatus& b : all) {
    SCOPED_TRACE("backend " + b.name);
    EXPECT_FALSE(b.name.empty());
    EXPECT_TRUE(names.insert(b.name).second) << "listed twice";
    if (!b.compiled) {
      EXPECT_FALSE(b.available) << "available but not compiled in";
    }
    if (!b.available) {
      EXPECT_FALSE(b.reason.empty()) << "unavailable without a reason";
      EXPECT_EQ(b.device_count, 0);
    } else {
      EXPECT_GT(b.device_count, 0);
    }
    if (b.name == "cpu") {
      cpu_seen = true;
      EXPECT_TRUE(b.compiled);
      EXPECT_TRUE(b.available);
      EXPECT_GE(b.device_count, 1);
    }
    if (b.name == backend()) {
      me_seen = true;
      EXPECT_TRUE(b.compiled);
      EXPECT_TRUE(b.available);
    }
  }
  EXPECT_TRUE(cpu_seen) << "the CPU backend is missing";
  EXPECT_TRUE(me_seen);
}

TEST_P(BackendTest, DevicesListed) {
  const auto devs = Context::devices();
  ASSERT_FALSE(devs.empty());
  std::map<std::string, int> per_backend;
  bool cpu_seen = false;
  for (const DeviceInfo& d : devs) {
    SCOPED_TRACE("device " + d.id() + " (" + d.name + ")");
    EXPECT_FALSE(d.backend.empty());
    EXPECT_FALSE(d.name.empty());
    EXPECT_GT(d.total_memory, 0u);
    EXPECT_LE(d.free_memory, d.total_memory);
    EXPECT_GT(d.compute_units, 0);
    EXPECT_GE(d.memory_usage_percent(), 0.0);
    EXPECT_LE(d.memory_usage_percent(), 100.0);
    EXPECT_EQ(d.id(), d.backend + ":" + std::to_string(d.ordinal));
    EXPECT_EQ(d.ordinal, per_backend[d.backend]) << "ordinals count 0, 1, ... within a backend";
    ++per_backend[d.backend];
    if (d.backend == "cpu") cpu_seen = true;
  }
  EXPECT_TRUE(cpu_seen) << "the CPU is always listed";
  for (const BackendStatus& b : Context::backends())
    EXPECT_EQ(per_backend[b.name], b.device_count) << "devices() and backends() disagree on " << b.name;
  EXPECT_GE(per_backend[backend()], 1);
}

TEST_P(BackendTest, OpenByName) {
  const auto st = backend_status(backend());
  const Context c = Context::open(backend());
  EXPECT_EQ(c.info().backend, backend());
  EXPECT_EQ(c.info().ordinal, 0);
  EXPECT_FALSE(c.info().name.empty());
  EXPECT_GT(c.info().total_memory, 0u);
  EXPECT_GT(c.info().compute_units, 0);
  for (int i = 0; i < st.device_count; ++i) {
    const Context ci = Context::open(backend() + ":" + std::to_string(i));
    EXPECT_EQ(ci.info().backend, backend());
    EXPECT_EQ(ci.info().ordinal, i);
  }
  EXPECT_HIVE_ERROR(ErrorCode::DeviceUnavailable, Context::open(backend() + ":" + std::to_string(st.device_count)));
  EXPECT_HIVE_ERROR(ErrorCode::DeviceUnavailable, Context::open(backend() + ":9999"));
  EXPECT_HIVE_ERROR(ErrorCode::DeviceUnavailable, Context::open(backend() + ":x"));
  EXPECT_HIVE_ERROR(ErrorCode::DeviceUnavailable, Context::open(backend() + ":-1"));
  EXPECT_HIVE_ERROR(ErrorCode::DeviceUnavailable, Context::open("nope"));
  EXPECT_HIVE_ERROR(ErrorCode::DeviceUnavailable, Context::open("nope:0"));
  if (backend_status("cpu").device_count < 8) EXPECT_HIVE_ERROR(ErrorCode::DeviceUnavailable, Context::open("cpu:7"));
  // Known but absent backends.
  for (const BackendStatus& b : Context::backends())
    if (!b.available) EXPECT_HIVE_ERROR(ErrorCode::DeviceUnavailable, Context::open(b.name));
}

// "auto" (and the default) picks the best device present: CUDA, HIP, Vulkan, then the CPU.
// A GPU API's CPU implementation (device_type "cpu", e.g. lavapipe) does not count as present.
TEST_P(BackendTest, OpenAuto) {
  std::string expected = "cpu";
  for (const std::string& name : kGpuOrder) {
    bool real = false;
    for (const auto& d : Context::devices())
      if (d.backend == name && d.device_type != "cpu") real = true;
    if (backend_status(name).available && real) {
      expected = name;
      break;
    }
  }
  EXPECT_EQ(Context::open("auto").info().backend, expected);
  EXPECT_EQ(Context::open().info().backend, expected);
  const FlatIndex idx(8, Metric::L2);
  EXPECT_EQ(idx.context().info().backend, expected) << "FlatIndex(dim, metric) lives on Context::open(\"auto\")";
}

// Contexts are cheap handles; an index keeps its device alive after every Context is gone.
TEST_P(BackendTest, IndexKeepsDeviceAlive) {
  std::unique_ptr<FlatIndex> idx;
  {
    const Context a = Context::open(backend());
    const Context b = a;  // NOLINT(performance-unnecessary-copy-initialization)
    EXPECT_EQ(a.device(), b.device());
    EXPECT_EQ(&a.info(), &b.info());
    idx = std::make_unique<FlatIndex>(b, 4, Metric::L2);
  }
  const std::vector<float> x = {0, 0, 0, 0, 1, 1, 1, 1, 3, 0, 0, 0};
  idx->add(3, x.data());
  const std::vector<float> q = {1, 1, 1, 0.5f};
  const auto r = idx->search(1, q.data(), 3);
  EXPECT_EQ(r.ids, (std::vector<int64_t>{1, 0, 2}));
  EXPECT_FLOAT_EQ(r.distances[0], 0.25f);
  EXPECT_FLOAT_EQ(r.distances[1], 3.25f);
  EXPECT_FLOAT_EQ(r.distances[2], 6.25f);
}

// Hand-computed results for each metric on a tiny index (independent of the float64
// reference, so a shared misunderstanding of a metric cannot hide).
TEST_P(BackendTest, HandComputedMetrics) {
  const Context c = Context::open(backend());
  const std::vector<float> x = {1, 0, 0,    // id 0
                                0, 2, 0,    // id 1
                                -1, -1, 1,  // id 2
                                3, 4, 0};   // id 3
  const std::vector<float> q = {1, 1, 0};
  struct Want {
    Metric m;
    std::vector<int64_t> ids;
    std::vector<float> d;
  };
  const float s2 = std::sqrt(2.0f);
  const std::vector<Want> wants = {
      {Metric::L2, {0, 1, 2, 3}, {1, 2, 9, 13}},
      {Metric::InnerProduct, {3, 1, 0, 2}, {7, 2, 1, -2}},
      {Metric::Cosine, {3, 0, 1, 2}, {1 - 7 / (s2 * 5), 1 - 1 / s2, 1 - 1 / s2, 1 + 2 / (s2 * std::sqrt(3.0f))}},
      {Metric::L1, {0, 1, 2, 3}, {1, 2, 5, 5}},
      {Metric::Linf, {0, 1, 2, 3}, {1, 1, 2, 3}},
  };
  for (const Want& w : wants) {
    SCOPED_TRACE(metric_tag(w.m));
    FlatIndex idx(c, 3, w.m);
    idx.add(4, x.data());
    const auto r = idx.search(1, q.data(), 6);
    for (int j = 0; j < 4; ++j) EXPECT_NEAR(r.distance(0, j), w.d[std::size_t(j)], 1e-5) << "slot " << j;
    // Ties (Cosine ids 0/1, L1 ids 2/3, Linf ids 0/1) may come in either order.
    auto ids = std::vector<int64_t>(r.ids.begin(), r.ids.begin() + 4);
    auto want_ids = w.ids;
    if (w.m == Metric::Cosine) {
      EXPECT_EQ(ids[0], 3);
      std::sort(ids.begin() + 1, ids.begin() + 3);
      std::sort(want_ids.begin() + 1, want_ids.begin() + 3);
    } else if (w.m == Metric::L1) {
      std::sort(ids.begin() + 2, ids.end());
    } else if (w.m == Metric::Linf) {
      std::sort(ids.begin(), ids.begin() + 2);
    }
    EXPECT_EQ(ids, want_ids);
    EXPECT_EQ(r.id(0, 4), kNoId);
    EXPECT_EQ(r.id(0, 5), kNoId);
    EXPECT_EQ(r.distance(0, 4), worst_value(w.m));
    EXPECT_EQ(r.distance(0, 5), worst_value(w.m));
  }
  // Hamming: 16 bits, bit i of a vector is bit (i % 8) of byte i / 8.
  FlatIndex h(c, 16, Metric::Hamming);
  const std::vector<uint8_t> hx = {0x00, 0x00,   // id 0
                                   0x01, 0x00,   // id 1: bit 0
                                   0xff, 0xff,   // id 2: all
                                   0x00, 0x80};  // id 3: bit 15
  h.add(4, hx.data());
  const std::vector<uint8_t> hq = {0x01, 0x80};  // bits 0 and 15
  const auto r = h.search(1, hq.data(), 5);
  EXPECT_EQ(r.distance(0, 0), 1.0f);
  EXPECT_EQ(r.distance(0, 1), 1.0f);
  EXPECT_EQ(r.distance(0, 2), 2.0f);
  EXPECT_EQ(r.distance(0, 3), 14.0f);
  EXPECT_EQ(r.distance(0, 4), worst_value(Metric::Hamming));
  std::vector<int64_t> first_two = {r.id(0, 0), r.id(0, 1)};
  std::sort(first_two.begin(), first_two.end());
  EXPECT_EQ(first_two, (std::vector<int64_t>{1, 3}));
  EXPECT_EQ(r.id(0, 2), 0);
  EXPECT_EQ(r.id(0, 3), 2);
  EXPECT_EQ(r.id(0, 4), kNoId);
}

// ---------------------------------------------------------------------------------------------
// Free functions (run once per backend like everything else, so each ctest entry covers them).

TEST_P(BackendTest, ParseMetric) {
  const std::pair<const char*, Metric> good[] = {
      {"l2", Metric::L2},         {"L2", Metric::L2},
      {"ip", Metric::InnerProduct}, {"IP", Metric::InnerProduct},
      {"inner_product", Metric::InnerProduct}, {"Inner_Product", Metric::InnerProduct},
      {"cosine", Metric::Cosine}, {"COSINE", Metric::Cosine},
      {"l1", Metric::L1},         {"L1", Metric::L1},
      {"linf", Metric::Linf},     {"LInf", Metric::Linf},
      {"hamming", Metric::Hamming}, {"Hamming", Metric::Hamming},
  };
  for (const auto& [name, m] : good) EXPECT_EQ(hive::gpu::parse_metric(name), m) << name;
  for (const char* bad : {"nope", "", "l3", "l2 ", "cosin"}) {
    SCOPED_TRACE(std::string("'") + bad + "'");
    EXPECT_HIVE_ERROR(ErrorCode::UnknownMetric, (void)hive::gpu::parse_metric(bad));
  }
  try {
    (void)hive::gpu::parse_metric("nope");
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("nope"), std::string::npos) << "the message names the text: " << e.what();
  }
  EXPECT_TRUE(hive::gpu::higher_is_better(Metric::InnerProduct));
  for (Metric m : {Metric::L2, Metric::Cosine, Metric::L1, Metric::Linf, Metric::Hamming})
    EXPECT_FALSE(hive::gpu::higher_is_better(m)) << metric_tag(m);
  for (Metric m : {Metric::L2, Metric::InnerProduct, Metric::Cosine, Metric::L1, Metric::Linf, Metric::Hamming})
    EXPECT_FALSE(hive::gpu::to_string(m).empty());
}

TEST_P(BackendTest, ParseScalarType) {
  const std::pair<const char*, ScalarType> good[] = {
      {"f32", ScalarType::F32},       {"float32", ScalarType::F32},  {"F32", ScalarType::F32},
      {"f16", ScalarType::F16},       {"float16", ScalarType::F16},  {"bf16", ScalarType::BF16},
      {"bfloat16", ScalarType::BF16}, {"bits", ScalarType::Bits},
  };
  for (const auto& [name, s] : good) EXPECT_EQ(hive::gpu::parse_scalar_type(name), s) << name;
  for (const char* bad : {"nope", "", "f64"}) {
    SCOPED_TRACE(std::string("'") + bad + "'");
    (void)error_code_of([&] { (void)hive::gpu::parse_scalar_type(bad); }, std::string("parse_scalar_type ") + bad);
  }
  for (ScalarType s : {ScalarType::F32, ScalarType::F16, ScalarType::BF16, ScalarType::Bits})
    EXPECT_FALSE(hive::gpu::to_string(s).empty());
}

TEST_P(BackendTest, RowBytes) {
  using hive::gpu::row_bytes;
  EXPECT_EQ(row_bytes(ScalarType::F32, 17), 68u);
  EXPECT_EQ(row_bytes(ScalarType::F16, 17), 34u);
  EXPECT_EQ(row_bytes(ScalarType::BF16, 17), 34u);
  EXPECT_EQ(row_bytes(ScalarType::Bits, 64), 8u);
  EXPECT_EQ(row_bytes(ScalarType::Bits, 1000), 125u);
  EXPECT_EQ(row_bytes(ScalarType::F32, 1), 4u);
}

TEST_P(BackendTest, ErrorCodesAndMessages) {
  std::set<std::string> names;
  for (int c = int(ErrorCode::InvalidArgument); c <= int(ErrorCode::Internal); ++c) {
    const auto name = std::string(hive::gpu::to_string(ErrorCode(c)));
    EXPECT_FALSE(name.empty()) << c;
    EXPECT_TRUE(names.insert(name).second) << "two codes print as " << name;
  }
  const Error e(ErrorCode::IdExists, "id 7 is taken");
  EXPECT_EQ(e.code(), ErrorCode::IdExists);
  EXPECT_NE(std::string(e.what()).find("id 7 is taken"), std::string::npos);
  const std::runtime_error& base = e;
  EXPECT_NE(std::string(base.what()).find(std::string(hive::gpu::to_string(ErrorCode::IdExists))), std::string::npos);
}

TEST_P(BackendTest, DeviceInfoHelpers) {
  DeviceInfo d;
  d.backend = "cpu";
  d.ordinal = 3;
  EXPECT_EQ(d.id(), "cpu:3");
  EXPECT_EQ(d.memory_usage_percent(), 0.0) << "no total memory";
  d.total_memory = 200;
  d.free_memory = 50;
  EXPECT_DOUBLE_EQ(d.memory_usage_percent(), 75.0);
  EXPECT_TRUE(d.has_free_memory(50));
  EXPECT_FALSE(d.has_free_memory(51));
  d.free_memory = 200;
  EXPECT_DOUBLE_EQ(d.memory_usage_percent(), 0.0);
  d.free_memory = 0;
  EXPECT_DOUBLE_EQ(d.memory_usage_percent(), 100.0);
  const auto info = Context::open(backend()).info();
  EXPECT_GE(info.memory_usage_percent(), 0.0);
  EXPECT_LE(info.memory_usage_percent(), 100.0);
}

INSTANTIATE_TEST_SUITE_P(Conformance, BackendTest, testing::ValuesIn(compiled_backends()), backend_name);

}  // namespace
}  // namespace conformance
