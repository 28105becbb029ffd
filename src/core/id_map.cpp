#include "core/id_map.hpp"

#include <algorithm>

#include "backends/cpu/thread_pool.hpp"

namespace hive::gpu::detail {

void IdMap::rows_to_ids(int64_t* out, std::size_t n) const {
  if (identity()) return;
  auto piece = [&](std::size_t first, std::size_t last) {
    for (std::size_t i = first; i < last; ++i)
      if (out[i] >= 0) out[i] = row_ids_[std::size_t(out[i])];
  };
  constexpr std::size_t kPiece = std::size_t(1) << 15;
  const std::size_t pieces = (n + kPiece - 1) / kPiece;
  if (pieces <= 1) {
    piece(0, n);
    return;
  }
  cpu::ThreadPool::instance().parallel_for(pieces, [&](std::size_t p) {
    piece(p * kPiece, std::min(n, (p + 1) * kPiece));
  });
}

}  // namespace hive::gpu::detail
