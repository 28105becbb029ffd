#include "core/row_encoding.hpp"

#include <cmath>
#include <cstring>
#include <string>

#include "core/scalar_codec.hpp"
#include "core/validate.hpp"
#include "hive_gpu/error.hpp"

namespace hive::gpu::detail {

void normalise(std::size_t dim, const float* src, float* dst) {
  double s = 0;
  for (std::size_t j = 0; j < dim; ++j) s += double(src[j]) * double(src[j]);
  const float inv = s > 0 ? float(1.0 / std::sqrt(s)) : 0.0f;
  for (std::size_t j = 0; j < dim; ++j) dst[j] = src[j] * inv;
}

std::vector<uint8_t> encode_rows(std::size_t dim, Metric metric, ScalarType storage, std::size_t n, const float* x,
                                 const char* what) {
  check_pointer(x, n, what);
  check_finite(x, n, dim, what);
  std::vector<uint8_t> out(n * row_bytes(storage, dim));
  std::vector<float> tmp(dim);
  for (std::size_t i = 0; i < n; ++i) {
    const float* src = x + i * dim;
    if (metric == Metric::Cosine) {
      normalise(dim, src, tmp.data());
      src = tmp.data();
    }
    switch (storage) {
      case ScalarType::F32:
        std::memcpy(out.data() + i * dim * 4, src, dim * 4);
        break;
      case ScalarType::F16: {
        auto* dst = reinterpret_cast<uint16_t*>(out.data()) + i * dim;
        for (std::size_t j = 0; j < dim; ++j) {
          if (std::fabs(src[j]) > kHalfMax)
            throw Error(ErrorCode::InvalidArgument, std::string(what) + " row " + std::to_string(i) + ", column " +
                                                        std::to_string(j) + " = " + std::to_string(src[j]) +
                                                        " exceeds the float16 range (65504); use f32 or bf16");
          dst[j] = f32_to_f16(src[j]);
        }
        break;
      }
      case ScalarType::BF16: {
        auto* dst = reinterpret_cast<uint16_t*>(out.data()) + i * dim;
        for (std::size_t j = 0; j < dim; ++j) dst[j] = f32_to_bf16(src[j]);
        break;
      }
      case ScalarType::Bits:
        throw Error(ErrorCode::Internal, "float rows for a bit index");
    }
  }
  return out;
}

std::vector<float> decode_row(std::size_t dim, ScalarType storage, const uint8_t* raw) {
  std::vector<float> out(dim);
  const auto* h = reinterpret_cast<const uint16_t*>(raw);
  switch (storage) {
    case ScalarType::F32: std::memcpy(out.data(), raw, dim * 4); break;
    case ScalarType::F16: for (std::size_t j = 0; j < dim; ++j) out[j] = f16_to_f32(h[j]); break;
    case ScalarType::BF16: for (std::size_t j = 0; j < dim; ++j) out[j] = bf16_to_f32(h[j]); break;
    case ScalarType::Bits: throw Error(ErrorCode::Internal, "decode_row on packed bits");
  }
  return out;
}

const float* prepare_rows(std::size_t dim, Metric metric, std::size_t n, const float* x, std::vector<float>& scratch,
                          const char* pointer_what, const char* value_what) {
  check_pointer(x, n, pointer_what);
  check_finite(x, n, dim, value_what);
  if (metric != Metric::Cosine) return x;
  scratch.resize(n * dim);
  for (std::size_t i = 0; i < n; ++i) normalise(dim, x + i * dim, scratch.data() + i * dim);
  return scratch.data();
}

const float* prepare_queries(std::size_t dim, Metric metric, std::size_t nq, const float* q,
                             std::vector<float>& scratch) {
  return prepare_rows(dim, metric, nq, q, scratch, "queries", "query");
}

}  // namespace hive::gpu::detail
