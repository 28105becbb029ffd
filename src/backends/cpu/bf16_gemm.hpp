// Internal: bf16 "screening" GEMM for batched exact search on CPUs with AVX512_BF16.
//
// out[i][j] ~= <q_i, x_j> computed from bf16-rounded operands with vdpbf16ps: every product of
// two bf16 values is exact in fp32 and the sums are accumulated in fp32, so the caller can bound
// the error against the rounded inputs and re-rank candidates exactly.
//
// Packed layouts (uint32_t "pair" = two consecutive dims of one vector as bf16, the lower dim in
// the low half; K2 = ceil(dim / 2) pairs per vector; the pad dim of an odd dim is zero):
//  * rows: panels of 16 rows; panel r0/16 starts at uint32 offset r0 * K2 and holds K2 64-byte
//    lines, line k = the pair k of rows r0..r0+15 (row r0+t at uint32 t). Rows >= n in the last
//    panel are zero. Any run of whole panels (rows r0..r1, r0 a multiple of 16) is itself a valid
//    packed operand for bf16_gemm (pointer + r0 * K2 * 2 uint16, n = r1 - r0).
//  * queries: panels of kBf16QueryPanel queries; the panel starting at query i0 has width
//    w = min(kBf16QueryPanel, nq - i0), starts at uint32 offset i0 * K2 and holds K2 lines of w
//    pairs (line k = the pair k of queries i0..i0+w-1). No padding queries. A run of queries
//    starting at a multiple of kBf16QueryPanel and ending at a multiple of it (or at nq) is
//    itself a valid packed operand.
// bf16_packed_*_offset give the uint16 index of element (vector, dim) for tests and debugging.
// Buffers aligned to 64 bytes are fastest (every row line is then a whole cache line).
//
// Conversion: vcvtne2ps2bf16 semantics, regardless of MXCSR: round to nearest even, fp32
// denormal inputs become a zero of the same sign, NaN stays NaN (quiet bit set), overflow rounds
// to infinity. vdpbf16ps also treats bf16 denormals as zero and flushes denormal results to zero,
// so "products exact" holds as long as no nonzero |product| or partial sum falls below 2^-126.
// Then each out[i][j] is the exact products summed with at most dim rounded fp32 additions, so
// |out - sum_p q_p x_p| <= gamma_dim * sum_p |q_p x_p| <= dim * 2^-23 * sum_p |q_p x_p| (for the
// bf16-rounded q and x, dim < 2^22; gamma_k = k u / (1 - k u), u = 2^-24).
//
// The packing and GEMM entry points run anywhere: on CPUs without AVX512_BF16 they fall back to
// portable scalar code with identical packing bits (slow GEMM, which does not flush denormal
// results; check bf16_gemm_supported() first).
#pragma once
#include <cstddef>
#include <cstdint>

namespace hive::gpu::cpu {

inline constexpr std::size_t kBf16RowPanel = 16;    // rows per packed row panel (one zmm line)
inline constexpr std::size_t kBf16QueryPanel = 12;  // queries per packed query panel (= micro-tile)

// True when this CPU runs the bf16 kernel (AVX-512 F/BW/DQ/VL + AVX512_BF16, and the AVX2/FMA/F16C
// its translation unit is compiled with, with OS support for the ZMM state), checked once.
bool bf16_gemm_supported();

// Packed operand sizes, in uint16_t elements, for n vectors of dim floats (dim padded to a
// multiple of 2, rows padded to a multiple of 16, padding zero).
std::size_t bf16_packed_rows_size(std::size_t n, std::size_t dim);
std::size_t bf16_packed_queries_size(std::size_t nq, std::size_t dim);

// uint16 index, inside a packed operand of n (nq) vectors of dim, of element p of vector j (i).
std::size_t bf16_packed_row_offset(std::size_t n, std::size_t dim, std::size_t j, std::size_t p);
std::size_t bf16_packed_query_offset(std::size_t nq, std::size_t dim, std::size_t i, std::size_t p);

// fp32 -> bf16 bits with the conversion semantics above (scalar reference).
uint16_t bf16_round(float v);

// Rounds fp32 rows to bf16 (round to nearest even) into the kernel's layout; every element of
// packed[0, size) is written (padding zero). exact[i] (if not null) is set to 1 when every
// element of vector i was exactly representable, i.e. converts back to the same fp32 bits
// (so fp32 denormals are not exact), else 0. rows/q: vector i at element i * dim.
void bf16_pack_rows(const float* rows, std::size_t n, std::size_t dim, uint16_t* packed, uint8_t* exact);
void bf16_pack_queries(const float* q, std::size_t nq, std::size_t dim, uint16_t* packed, uint8_t* exact);

// out[i * ld + j] = sum_p bf16(q[i][p]) * bf16(x[j][p]), products exact, accumulated in fp32
// (in any order), for i < nq, j < n (ld >= n). Nothing else in out is read or written.
// Single-threaded (the caller runs one per core). nq, n or dim == 0: no-op.
void bf16_gemm(const uint16_t* packed_queries, std::size_t nq, const uint16_t* packed_rows, std::size_t n,
               std::size_t dim, float* out, std::size_t ld);

// Implementations behind the dispatching entry points above (exposed for tests). The avx512_*
// ones need bf16_gemm_supported(); the portable_* ones run anywhere and pack identically.
void bf16_pack_rows_portable(const float* rows, std::size_t n, std::size_t dim, uint16_t* packed,
                             uint8_t* exact);
void bf16_pack_queries_portable(const float* q, std::size_t nq, std::size_t dim, uint16_t* packed,
                                uint8_t* exact);
void bf16_gemm_portable(const uint16_t* packed_queries, std::size_t nq, const uint16_t* packed_rows,
                        std::size_t n, std::size_t dim, float* out, std::size_t ld);
void bf16_pack_rows_avx512(const float* rows, std::size_t n, std::size_t dim, uint16_t* packed,
                           uint8_t* exact);
void bf16_pack_queries_avx512(const float* q, std::size_t nq, std::size_t dim, uint16_t* packed,
                              uint8_t* exact);
void bf16_gemm_avx512(const uint16_t* packed_queries, std::size_t nq, const uint16_t* packed_rows,
                      std::size_t n, std::size_t dim, float* out, std::size_t ld);

}  // namespace hive::gpu::cpu
