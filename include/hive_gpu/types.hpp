// hive-gpu: metrics, storage types and limits shared by every index and backend.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace hive::gpu {

// How two vectors are compared. The value each metric reports is documented in docs/api.md:
//   L2            squared Euclidean distance, ascending (smaller is nearer)
//   InnerProduct  dot product, descending (larger is nearer), as FAISS's IndexFlatIP
//   Cosine        1 - cosine similarity, ascending; vectors are normalised on add and search
//   L1            sum of absolute differences, ascending
//   Linf          largest absolute difference, ascending
//   Hamming       number of differing bits between packed bit vectors, ascending
enum class Metric : uint8_t { L2 = 0, InnerProduct = 1, Cosine = 2, L1 = 3, Linf = 4, Hamming = 5 };

// How stored vectors are encoded. Hamming indexes always store packed bits (Bits).
enum class ScalarType : uint8_t { F32 = 0, F16 = 1, BF16 = 2, Bits = 3 };

// Largest k a search accepts. Every backend supports at least this many.
inline constexpr int kMaxK = 2048;

// Id reported in result slots that no vector filled (fewer than k live vectors).
inline constexpr int64_t kNoId = -1;

std::string_view to_string(Metric m) noexcept;
std::string_view to_string(ScalarType t) noexcept;
// Accepts "l2", "ip"/"inner_product", "cosine", "l1", "linf", "hamming" (any case).
// Throws Error(UnknownMetric) naming the text otherwise.
Metric parse_metric(std::string_view name);
// Accepts "f32"/"float32", "f16"/"float16", "bf16"/"bfloat16", "bits".
ScalarType parse_scalar_type(std::string_view name);

// True where larger reported values are nearer (InnerProduct only).
constexpr bool higher_is_better(Metric m) noexcept { return m == Metric::InnerProduct; }

// Bytes one stored element occupies (Bits: per 8 dimensions, see row_bytes).
std::size_t row_bytes(ScalarType t, std::size_t dim) noexcept;

}  // namespace hive::gpu
