// Internal: CPU distance kernels, one table per SIMD level, picked at run time.
// Each kernel scores one query against n consecutive stored rows, writing a value to
// MINIMISE (the search engine converts to the reported convention afterwards):
//   L2 -> squared distance, InnerProduct -> -dot, Cosine -> 1 - dot (inputs normalised),
//   L1 -> sum |q - x|, Linf -> max |q - x|, Hamming -> popcount(q ^ x).
#pragma once
#include <cstddef>
#include <cstdint>

#include "hive_gpu/types.hpp"

namespace hive::gpu::cpu {

enum class SimdLevel : uint8_t { Scalar = 0, AVX2 = 1, AVX512 = 2 };
const char* to_string(SimdLevel level) noexcept;

// Rows are in the storage encoding (float, IEEE half as uint16_t, bfloat16 as uint16_t);
// row i starts at element i * dim. q is fp32 of length dim.
using ScanFn = void (*)(const float* q, const void* rows, std::size_t n, std::size_t dim, float* out);
// The same for n rows anywhere in memory: row i at rows[i] (a graph search's neighbours).
using GatherFn = void (*)(const float* q, const void* const* rows, std::size_t n, std::size_t dim, float* out);
// Packed bits, nbytes per row.
using ScanBitsFn = void (*)(const uint8_t* q, const uint8_t* rows, std::size_t n, std::size_t nbytes,
                            float* out);
// Decodes n stored elements to fp32.
using DecodeFn = void (*)(const void* src, float* dst, std::size_t n);

inline constexpr int kFloatMetrics = 5;   // L2, InnerProduct, Cosine, L1, Linf (Metric order)
inline constexpr int kFloatStorages = 3;  // F32, F16, BF16 (ScalarType order)

struct KernelTable {
  SimdLevel level = SimdLevel::Scalar;
  ScanFn scan[kFloatMetrics][kFloatStorages] = {};
  GatherFn gather[kFloatMetrics][kFloatStorages] = {};
  ScanBitsFn hamming = nullptr;
  DecodeFn decode[kFloatStorages] = {};  // decode[F32] is a copy

  ScanFn scan_fn(Metric m, ScalarType s) const { return scan[int(m)][int(s)]; }
  GatherFn gather_fn(Metric m, ScalarType s) const { return gather[int(m)][int(s)]; }
};

// The best level this CPU supports, unless HIVE_GPU_SIMD=scalar|avx2|avx512 asks for a lower
// one. Detected once.
SimdLevel best_simd_level();
bool cpu_supports(SimdLevel level);
// The level best_simd_level() settles on, given the best the CPU supports and the value of
// HIVE_GPU_SIMD (null when unset): the requested level if it names one no higher than best,
// else best. Separate so tests can exercise it.
SimdLevel resolve_simd_level(SimdLevel best, const char* request) noexcept;
// Table for a level; throws Error(Unsupported) if this CPU lacks it.
const KernelTable& kernels(SimdLevel level);
inline const KernelTable& kernels() { return kernels(best_simd_level()); }

// Per-level tables, each defined in its own translation unit compiled with that level's flags.
const KernelTable& scalar_kernels();
const KernelTable& avx2_kernels();    // needs AVX2 + FMA + F16C
const KernelTable& avx512_kernels();  // needs AVX-512 F/BW/DQ/VL (+ VPOPCNTDQ used if present)
// The AVX-512 Hamming kernel that avx512_kernels() holds on CPUs without VPOPCNTDQ (AVX512BW
// only), exposed so tests also run it where VPOPCNTDQ exists. Needs the AVX512 level.
ScanBitsFn avx512_hamming_no_vpopcnt();

}  // namespace hive::gpu::cpu
