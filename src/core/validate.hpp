// Internal: input checks shared by every index, run before anything is changed.
#pragma once
#include <cstddef>
#include <cstdint>

namespace hive::gpu::detail {

// Throws NonFiniteValue naming the first NaN/Inf (row, column, what) in n x dim floats.
void check_finite(const float* x, std::size_t n, std::size_t dim, const char* what);
// Throws InvalidArgument when n > 0 and p is null.
void check_pointer(const void* p, std::size_t n, const char* what);
// Throws InvalidK unless 1 <= k <= kMaxK.
void check_k(int k);
// Throws InvalidArgument for id == kNoId and DuplicateId for an id repeated in ids[0..n).
void check_ids(const int64_t* ids, std::size_t n);

}  // namespace hive::gpu::detail
