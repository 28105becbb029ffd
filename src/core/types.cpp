#include <algorithm>
#include <cctype>
#include <string>

#include "hive_gpu/error.hpp"
#include "hive_gpu/types.hpp"

namespace hive::gpu {

namespace {
std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) { return char(std::tolower(c)); });
  return out;
}
}  // namespace

std::string_view to_string(Metric m) noexcept {
  switch (m) {
    case Metric::L2: return "l2";
    case Metric::InnerProduct: return "ip";
    case Metric::Cosine: return "cosine";
    case Metric::L1: return "l1";
    case Metric::Linf: return "linf";
    case Metric::Hamming: return "hamming";
  }
  return "?";
}

std::string_view to_string(ScalarType t) noexcept {
  switch (t) {
    case ScalarType::F32: return "f32";
    case ScalarType::F16: return "f16";
    case ScalarType::BF16: return "bf16";
    case ScalarType::Bits: return "bits";
  }
  return "?";
}

Metric parse_metric(std::string_view name) {
  const std::string s = lower(name);
  if (s == "l2" || s == "euclidean" || s == "l2sq") return Metric::L2;
  if (s == "ip" || s == "inner_product" || s == "dot") return Metric::InnerProduct;
  if (s == "cosine" || s == "cos") return Metric::Cosine;
  if (s == "l1" || s == "manhattan") return Metric::L1;
  if (s == "linf" || s == "chebyshev") return Metric::Linf;
  if (s == "hamming") return Metric::Hamming;
  throw Error(ErrorCode::UnknownMetric,
              "unknown metric '" + std::string(name) + "' (expected l2, ip, cosine, l1, linf or hamming)");
}

ScalarType parse_scalar_type(std::string_view name) {
  const std::string s = lower(name);
  if (s == "f32" || s == "float32" || s == "fp32") return ScalarType::F32;
  if (s == "f16" || s == "float16" || s == "fp16" || s == "half") return ScalarType::F16;
  if (s == "bf16" || s == "bfloat16") return ScalarType::BF16;
  if (s == "bits" || s == "binary") return ScalarType::Bits;
  throw Error(ErrorCode::InvalidArgument,
              "unknown storage type '" + std::string(name) + "' (expected f32, f16, bf16 or bits)");
}

std::size_t row_bytes(ScalarType t, std::size_t dim) noexcept {
  switch (t) {
    case ScalarType::F32: return dim * 4;
    case ScalarType::F16:
    case ScalarType::BF16: return dim * 2;
    case ScalarType::Bits: return (dim + 7) / 8;
  }
  return 0;
}

}  // namespace hive::gpu
