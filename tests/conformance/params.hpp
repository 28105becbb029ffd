// Conformance suite: test parameters. Every parameterised test is instantiated for every
// backend compiled into this build (Context::backends() with compiled == true). Parameter
// names start with "<backend>_" (or are exactly "<backend>"), so ctest runs each backend on
// its own with --gtest_filter=*/<backend>_*:*/<backend>. A backend with no device present
// SKIPs (never passes) in SetUp.
#pragma once
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "hive_gpu/hive_gpu.hpp"

namespace conformance {

using hive::gpu::Context;
using hive::gpu::Metric;
using hive::gpu::ScalarType;

// One index configuration on one backend.
struct Param {
  std::string backend;
  Metric metric = Metric::L2;
  ScalarType storage = ScalarType::F32;
};

inline const char* metric_tag(Metric m) {
  switch (m) {
    case Metric::L2: return "L2";
    case Metric::InnerProduct: return "IP";
    case Metric::Cosine: return "Cosine";
    case Metric::L1: return "L1";
    case Metric::Linf: return "Linf";
    case Metric::Hamming: return "Hamming";
  }
  return "Unknown";
}

inline const char* storage_tag(ScalarType s) {
  switch (s) {
    case ScalarType::F32: return "F32";
    case ScalarType::F16: return "F16";
    case ScalarType::BF16: return "BF16";
    case ScalarType::Bits: return "Bits";
  }
  return "Unknown";
}

inline void PrintTo(const Param& p, std::ostream* os) {
  *os << p.backend << "_" << metric_tag(p.metric) << "_" << storage_tag(p.storage);
}

// Backends built into this library, in the order the registry reports them.
inline std::vector<std::string> compiled_backends() {
  std::vector<std::string> out;
  for (const auto& b : Context::backends())
    if (b.compiled) out.push_back(b.name);
  return out;
}

inline constexpr Metric kFloatMetrics[] = {Metric::L2, Metric::InnerProduct, Metric::Cosine, Metric::L1,
                                           Metric::Linf};
inline constexpr ScalarType kFloatStorages[] = {ScalarType::F32, ScalarType::F16, ScalarType::BF16};

// backend x (float metric x F32/F16/BF16  +  Hamming x Bits).
inline std::vector<Param> all_params() {
  std::vector<Param> out;
  for (const auto& b : compiled_backends()) {
    for (Metric m : kFloatMetrics)
      for (ScalarType s : kFloatStorages) out.push_back({b, m, s});
    out.push_back({b, Metric::Hamming, ScalarType::Bits});
  }
  return out;
}

// One configuration per backend and float metric (F32 storage), plus Hamming: for tests whose
// subject does not depend on the storage encoding.
inline std::vector<Param> metric_params() {
  std::vector<Param> out;
  for (const auto& b : compiled_backends()) {
    for (Metric m : kFloatMetrics) out.push_back({b, m, ScalarType::F32});
    out.push_back({b, Metric::Hamming, ScalarType::Bits});
  }
  return out;
}

// The metrics the GPU screens serve (L2, inner product, cosine) on fp32 stores, per backend: for
// the suites of the single-query and batch screens.
inline std::vector<Param> screen_params() {
  std::vector<Param> out;
  for (const auto& b : compiled_backends())
    for (Metric m : {Metric::L2, Metric::InnerProduct, Metric::Cosine}) out.push_back({b, m, ScalarType::F32});
  return out;
}

// Float metrics only (backend x float metric x F32/F16/BF16).
inline std::vector<Param> float_params() {
  std::vector<Param> out;
  for (const auto& p : all_params())
    if (p.metric != Metric::Hamming) out.push_back(p);
  return out;
}

// Hamming only (one per backend).
inline std::vector<Param> hamming_params() {
  std::vector<Param> out;
  for (const auto& p : all_params())
    if (p.metric == Metric::Hamming) out.push_back(p);
  return out;
}

inline std::string param_name(const testing::TestParamInfo<Param>& info) {
  return info.param.backend + "_" + metric_tag(info.param.metric) + "_" + storage_tag(info.param.storage);
}

inline std::string backend_name(const testing::TestParamInfo<std::string>& info) { return info.param; }

// The status of one backend, by name.
inline hive::gpu::BackendStatus backend_status(const std::string& name) {
  for (const auto& b : Context::backends())
    if (b.name == name) return b;
  return {name, false, false, 0, "not listed by Context::backends()"};
}

}  // namespace conformance

// Inside SetUp: skip (not pass) a backend without a device.
#define CONFORMANCE_SKIP_IF_UNAVAILABLE(backend_name_expr)                                  \
  do {                                                                                      \
    const auto conformance_st_ = ::conformance::backend_status(backend_name_expr);          \
    if (!conformance_st_.available)                                                         \
      GTEST_SKIP() << "backend '" << conformance_st_.name << "' has no device: "            \
                   << conformance_st_.reason;                                               \
  } while (0)
