#include "core/validate.hpp"

#include <algorithm>
#include <bit>
#include <string>
#include <vector>

#include "hive_gpu/error.hpp"
#include "hive_gpu/types.hpp"

namespace hive::gpu::detail {

void check_finite(const float* x, std::size_t n, std::size_t dim, const char* what) {
  // A branch-free scan first (vectorises); only a failing input pays for locating the value.
  const std::size_t total = n * dim;
  uint32_t bad = 0;
  for (std::size_t i = 0; i < total; ++i) {
    const uint32_t bits = std::bit_cast<uint32_t>(x[i]);
    bad |= uint32_t((bits & 0x7f800000u) == 0x7f800000u);
  }
  if (!bad) return;
  for (std::size_t i = 0; i < total; ++i) {
    const float v = x[i];
    if (!(v == v) || v == 1.0f / 0.0f || v == -1.0f / 0.0f) {
      throw Error(ErrorCode::NonFiniteValue, std::string(what) + " row " + std::to_string(i / dim) +
                                                 ", column " + std::to_string(i % dim) + " is " +
                                                 (v == v ? (v > 0 ? "+inf" : "-inf") : "NaN") +
                                                 "; nothing was changed");
    }
  }
}

void check_pointer(const void* p, std::size_t n, const char* what) {
  if (n > 0 && p == nullptr)
    throw Error(ErrorCode::InvalidArgument, std::string(what) + " is null but n = " + std::to_string(n));
}

void check_k(int k) {
  if (k < 1 || k > kMaxK)
    throw Error(ErrorCode::InvalidK,
                "k = " + std::to_string(k) + " is out of range [1, " + std::to_string(kMaxK) + "]");
}

void check_ids(const int64_t* ids, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i)
    if (ids[i] == kNoId)
      throw Error(ErrorCode::InvalidArgument,
                  "id -1 (at position " + std::to_string(i) + ") is reserved for empty result slots");
  std::vector<int64_t> sorted(ids, ids + n);
  std::sort(sorted.begin(), sorted.end());
  auto dup = std::adjacent_find(sorted.begin(), sorted.end());
  if (dup != sorted.end())
    throw Error(ErrorCode::DuplicateId, "id " + std::to_string(*dup) + " appears more than once in one call");
}

}  // namespace hive::gpu::detail
