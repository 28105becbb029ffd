#include "core/validate.hpp"

#include <algorithm>
#include <atomic>
#include <bit>
#include <string>
#include <vector>

#include "backends/cpu/thread_pool.hpp"
#include "hive_gpu/error.hpp"
#include "hive_gpu/types.hpp"

namespace hive::gpu::detail {

namespace {

// Whether x[0 .. n) holds a NaN or an infinity: branch-free (vectorises).
bool any_non_finite(const float* x, std::size_t n) {
  uint32_t bad = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const uint32_t bits = std::bit_cast<uint32_t>(x[i]);
    bad |= uint32_t((bits & 0x7f800000u) == 0x7f800000u);
  }
  return bad != 0;
}

}  // namespace

void check_finite(const float* x, std::size_t n, std::size_t dim, const char* what) {
  // The scan first, split over the CPU pool when large (a 10 000 x 784 batch is 31 MB: a few
  // milliseconds on one core, more than a GPU search of it; 10 000 x 128, 5 MB, is split too,
  // in pieces of 256 KB so that every core takes a share); only a failing input pays for
  // locating the value.
  const std::size_t total = n * dim;
  constexpr std::size_t kPiece = std::size_t(1) << 16;
  bool bad = false;
  if (total <= 2 * kPiece) {
    bad = any_non_finite(x, total);
  } else {
    const std::size_t pieces = (total + kPiece - 1) / kPiece;
    std::atomic<bool> found{false};
    cpu::ThreadPool::instance().parallel_for(pieces, [&](std::size_t p) {
      const std::size_t first = p * kPiece;
      if (any_non_finite(x + first, std::min(kPiece, total - first))) found.store(true, std::memory_order_relaxed);
    });
    bad = found.load();
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
