// CUDA backend: row maintenance kernels (norms, decode to fp32 for the matrix product, gather
// for compaction).
#include <algorithm>
#include <cstdint>

#include "backends/cuda/cuda_common.hpp"
#include "backends/cuda/device_util.cuh"
#include "backends/cuda/kernels.hpp"

namespace hive::gpu::HIVE_GPU_DEVICE_NS {
namespace {

using namespace dev;

template <ScalarType S>
__global__ void norms_kernel(const void* base, std::size_t first, std::size_t n, std::size_t dim, float* norms) {
  using E = Elem<S>;
  for (std::size_t i = std::size_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += std::size_t(gridDim.x) * blockDim.x) {
    const typename E::T* x = static_cast<const typename E::T*>(base) + (first + i) * dim;
    float s = 0.0f;
    std::size_t j = 0;
    if constexpr (S == ScalarType::F32) {
      // 16-byte loads, several in flight (a thread per row: each element load, waited for in
      // turn, made 3 456 query norms take ~19 us); the same sums in the same order.
      if (dim % 4 == 0 && reinterpret_cast<uintptr_t>(x) % 16 == 0) {
        const float4* x4 = reinterpret_cast<const float4*>(x);
#pragma unroll 4
        for (; j < dim / 4; ++j) {
          const float4 v = x4[j];
          s = __fmaf_rn(v.x, v.x, s);
          s = __fmaf_rn(v.y, v.y, s);
          s = __fmaf_rn(v.z, v.z, s);
          s = __fmaf_rn(v.w, v.w, s);
        }
        j = dim;
      }
    }
    for (; j < dim; ++j) {
      const float v = E::get(x[j]);
      s = __fmaf_rn(v, v, s);
    }
    norms[first + i] = s;
  }
}

template <ScalarType S>
__global__ void decode_kernel(const void* base, std::size_t first, std::size_t count, float* out) {
  using E = Elem<S>;
  const typename E::T* x = static_cast<const typename E::T*>(base) + first;
  for (std::size_t i = std::size_t(blockIdx.x) * blockDim.x + threadIdx.x; i < count;
       i += std::size_t(gridDim.x) * blockDim.x)
    out[i] = E::get(x[i]);
}

__global__ void max_abs_kernel(const float* in, std::size_t count, uint32_t* out) {
  uint32_t mine = 0;
  for (std::size_t i = std::size_t(blockIdx.x) * blockDim.x + threadIdx.x; i < count;
       i += std::size_t(gridDim.x) * blockDim.x)
    mine = max(mine, __float_as_uint(fabsf(in[i])));
  __shared__ uint32_t block;
  if (threadIdx.x == 0) block = 0;
  __syncthreads();
  atomicMax(&block, mine);
  __syncthreads();
  if (threadIdx.x == 0) atomicMax(out, block);
}

// fp32 times scale (a power of two, so the product is exact) -> fp16 / bf16 (round to nearest
// even): half-precision GEMM inputs, the graph's fp16 rows, the fp16 copy of fp32 flat rows.
template <bool BF16>
__global__ void encode_half_kernel(const float* in, std::size_t count, float scale, uint16_t* out) {
  for (std::size_t i = std::size_t(blockIdx.x) * blockDim.x + threadIdx.x; i < count;
       i += std::size_t(gridDim.x) * blockDim.x) {
    const float f = in[i] * scale;
    if constexpr (BF16) {
      const uint32_t u = __float_as_uint(f);
      out[i] = isnan(f) ? uint16_t((u >> 16) | 0x40u) : uint16_t((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
    } else {
      out[i] = __half_as_ushort(__float2half_rn(f));
    }
  }
}

template <class W>
__global__ void gather_kernel(const W* src, W* dst, const uint32_t* keep, std::size_t n, std::size_t row_words) {
  const std::size_t total = n * row_words;
  for (std::size_t i = std::size_t(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += std::size_t(gridDim.x) * blockDim.x) {
    const std::size_t r = i / row_words, w = i % row_words;
    dst[i] = src[std::size_t(keep[r]) * row_words + w];
  }
}

unsigned blocks_for(std::size_t items) { return unsigned(std::clamp<std::size_t>((items + 255) / 256, 1, 8192)); }

}  // namespace

void launch_norms(const void* base, std::size_t first, std::size_t n, std::size_t dim, ScalarType storage,
                  float* norms, cudaStream_t stream) {
  if (n == 0) return;
  switch (storage) {
    case ScalarType::F32: norms_kernel<ScalarType::F32><<<blocks_for(n), 256, 0, stream>>>(base, first, n, dim, norms); break;
    case ScalarType::F16: norms_kernel<ScalarType::F16><<<blocks_for(n), 256, 0, stream>>>(base, first, n, dim, norms); break;
    case ScalarType::BF16: norms_kernel<ScalarType::BF16><<<blocks_for(n), 256, 0, stream>>>(base, first, n, dim, norms); break;
    case ScalarType::Bits: return;
  }
  check(cudaGetLastError(), "norms kernel launch");
}

void launch_decode(const void* base, std::size_t first, std::size_t n, std::size_t dim, ScalarType storage, float* out,
                   cudaStream_t stream) {
  const std::size_t count = n * dim;
  if (count == 0) return;
  switch (storage) {
    case ScalarType::F32: decode_kernel<ScalarType::F32><<<blocks_for(count), 256, 0, stream>>>(base, first * dim, count, out); break;
    case ScalarType::F16: decode_kernel<ScalarType::F16><<<blocks_for(count), 256, 0, stream>>>(base, first * dim, count, out); break;
    case ScalarType::BF16: decode_kernel<ScalarType::BF16><<<blocks_for(count), 256, 0, stream>>>(base, first * dim, count, out); break;
    case ScalarType::Bits: throw Error(ErrorCode::Internal, "CUDA decode: packed bits");
  }
  check(cudaGetLastError(), "decode kernel launch");
}

void launch_encode_half(const float* in, std::size_t count, ScalarType storage, void* out, cudaStream_t stream,
                        float scale) {
  if (count == 0) return;
  if (storage == ScalarType::BF16)
    encode_half_kernel<true><<<blocks_for(count), 256, 0, stream>>>(in, count, scale, static_cast<uint16_t*>(out));
  else if (storage == ScalarType::F16)
    encode_half_kernel<false><<<blocks_for(count), 256, 0, stream>>>(in, count, scale, static_cast<uint16_t*>(out));
  else
    throw Error(ErrorCode::Internal, "CUDA encode: not a half-precision storage");
  check(cudaGetLastError(), "encode kernel launch");
}

void launch_max_abs(const float* in, std::size_t count, uint32_t* out, cudaStream_t stream) {
  if (count == 0) return;
  max_abs_kernel<<<blocks_for(count), 256, 0, stream>>>(in, count, out);
  check(cudaGetLastError(), "max-abs kernel launch");
}

void launch_gather(const void* src, void* dst, const uint32_t* keep, std::size_t n, std::size_t row_bytes,
                   cudaStream_t stream) {
  if (n == 0 || row_bytes == 0) return;
  if (row_bytes % 4 == 0) {
    const std::size_t words = row_bytes / 4;
    gather_kernel<uint32_t><<<blocks_for(n * words), 256, 0, stream>>>(static_cast<const uint32_t*>(src),
                                                                       static_cast<uint32_t*>(dst), keep, n, words);
  } else {
    gather_kernel<uint8_t><<<blocks_for(n * row_bytes), 256, 0, stream>>>(static_cast<const uint8_t*>(src),
                                                                          static_cast<uint8_t*>(dst), keep, n, row_bytes);
  }
  check(cudaGetLastError(), "gather kernel launch");
}

}  // namespace hive::gpu::HIVE_GPU_DEVICE_NS
