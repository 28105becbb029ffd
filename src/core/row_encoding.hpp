// Internal: float rows to and from the storage encodings, shared by every index kind.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "hive_gpu/types.hpp"

namespace hive::gpu::detail {

// Scales src (dim floats) to unit length into dst; a zero vector stays zero (as FAISS's
// normalize_L2), so its cosine distance to anything is 1.
void normalise(std::size_t dim, const float* src, float* dst);

// Validates n x dim floats (pointer, finiteness, the fp16 range) and returns them in the
// storage encoding, normalised first for Cosine. Throws before anything is changed.
std::vector<uint8_t> encode_rows(std::size_t dim, Metric metric, ScalarType storage, std::size_t n, const float* x,
                                 const char* what);

// One stored row (F32 / F16 / BF16) decoded to floats.
std::vector<float> decode_row(std::size_t dim, ScalarType storage, const uint8_t* raw);

// fp32 rows ready for use without a copy: checked (pointer, finiteness; errors name
// pointer_what / value_what) and, for Cosine, normalised into `scratch` (the returned pointer is
// x or scratch.data()).
const float* prepare_rows(std::size_t dim, Metric metric, std::size_t n, const float* x, std::vector<float>& scratch,
                          const char* pointer_what, const char* value_what);

// Queries ready for a search: prepare_rows naming them "queries" / "query".
const float* prepare_queries(std::size_t dim, Metric metric, std::size_t nq, const float* q,
                             std::vector<float>& scratch);

}  // namespace hive::gpu::detail
