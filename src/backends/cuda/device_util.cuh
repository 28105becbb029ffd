// CUDA backend: device-side helpers shared by the kernels: element decoding, per-metric
// arithmetic (the same order of operations everywhere, so the scan and the exact re-rank
// produce identical values) and candidate keys.
#pragma once
#include "backends/cuda/gpu_runtime.hpp"
#if !defined(HIVE_GPU_HIP)
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#endif

#include <cstdint>

#include "backends/cuda/kernels.hpp"
#include "backends/cuda/wave.cuh"
#include "hive_gpu/types.hpp"

namespace hive::gpu::HIVE_GPU_DEVICE_NS::dev {

// ---- stored elements -------------------------------------------------------------------
template <ScalarType S>
struct Elem;
template <>
struct Elem<ScalarType::F32> {
  using T = float;
  static constexpr int kVec = 4;  // elements per 16-byte load
  __device__ static float get(T v) { return v; }
  // The 16 bytes already loaded (as load16 would decode them).
  __device__ static void cvt16(uint4 v, float* out) {
    out[0] = __uint_as_float(v.x);
    out[1] = __uint_as_float(v.y);
    out[2] = __uint_as_float(v.z);
    out[3] = __uint_as_float(v.w);
  }
  __device__ static void load16(const T* p, float* out) {
    const float4 v = __ldg(reinterpret_cast<const float4*>(p));
    out[0] = v.x;
    out[1] = v.y;
    out[2] = v.z;
    out[3] = v.w;
  }
};
template <>
struct Elem<ScalarType::F16> {
  using T = uint16_t;
  static constexpr int kVec = 8;
  __device__ static float get(T v) { return __half2float(__ushort_as_half(v)); }
  __device__ static void cvt16(uint4 v, float* out) {
    const uint32_t w[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      out[2 * i] = get(uint16_t(w[i] & 0xffffu));
      out[2 * i + 1] = get(uint16_t(w[i] >> 16));
    }
  }
  __device__ static void load16(const T* p, float* out) {
    const uint4 v = __ldg(reinterpret_cast<const uint4*>(p));
    const uint32_t w[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      out[2 * i] = get(uint16_t(w[i] & 0xffffu));
      out[2 * i + 1] = get(uint16_t(w[i] >> 16));
    }
  }
};
template <>
struct Elem<ScalarType::BF16> {
  using T = uint16_t;
  static constexpr int kVec = 8;
  __device__ static float get(T v) { return __uint_as_float(uint32_t(v) << 16); }
  __device__ static void cvt16(uint4 v, float* out) {
    const uint32_t w[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      out[2 * i] = __uint_as_float(w[i] << 16);
      out[2 * i + 1] = __uint_as_float(w[i] & 0xffff0000u);
    }
  }
  __device__ static void load16(const T* p, float* out) {
    const uint4 v = __ldg(reinterpret_cast<const uint4*>(p));
    const uint32_t w[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      out[2 * i] = __uint_as_float(w[i] << 16);
      out[2 * i + 1] = __uint_as_float(w[i] & 0xffff0000u);
    }
  }
};

// ---- metric arithmetic (internal convention: smaller is better) --------------------------
template <Metric M>
__device__ __forceinline__ float step(float acc, float q, float x) {
  if constexpr (M == Metric::L2) {
    const float d = q - x;
    return __fmaf_rn(d, d, acc);
  } else if constexpr (M == Metric::InnerProduct || M == Metric::Cosine) {
    return __fmaf_rn(q, x, acc);
  } else if constexpr (M == Metric::L1) {
    return __fadd_rn(acc, fabsf(q - x));
  } else {
    return fmaxf(acc, fabsf(q - x));
  }
}

template <Metric M>
__device__ __forceinline__ float combine(float a, float b) {
  if constexpr (M == Metric::Linf) {
    return fmaxf(a, b);
  } else {
    return __fadd_rn(a, b);
  }
}

template <Metric M>
__device__ __forceinline__ float finish(float v) {
  if constexpr (M == Metric::InnerProduct) {
    return -v;
  } else if constexpr (M == Metric::Cosine) {
    return __fsub_rn(1.0f, v);
  } else {
    return v;
  }
}

// Butterfly reduction over the wave: every lane ends with the same (bitwise) value.
template <Metric M, class Wv>
__device__ __forceinline__ float wave_reduce(const Wv& wv, float v) {
  return wave::butterfly(wv, v, [](float a, float b) { return combine<M>(a, b); });
}

template <class Wv>
__device__ __forceinline__ uint32_t wave_sum(const Wv& wv, uint32_t v) {
  return wave::butterfly(wv, v, [](uint32_t a, uint32_t b) { return a + b; });
}

// A load of data other blocks wrote (ordered by a fence and a ticket), read past the
// non-coherent per-SM / per-CU cache.
__device__ __forceinline__ uint64_t load_cg(const uint64_t* p) {
#if defined(HIVE_GPU_HIP)
  return *reinterpret_cast<const volatile unsigned long long*>(p);
#else
  return __ldcg(reinterpret_cast<const unsigned long long*>(p));
#endif
}

// ---- candidate keys --------------------------------------------------------------------
__device__ __forceinline__ uint32_t float_order(float f) {
  uint32_t u = __float_as_uint(f);
  if ((u & 0x7fffffffu) == 0) u = 0;  // -0 ranks as +0 (ties then break on the row)
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}
__device__ __forceinline__ float order_float(uint32_t o) {
  return __uint_as_float((o & 0x80000000u) ? (o & 0x7fffffffu) : ~o);
}
// NaN never enters (as on the CPU backend).
__device__ __forceinline__ uint64_t make_key(float s, uint32_t row) {
  if (isnan(s)) return kEmptyKey;
  return (uint64_t(float_order(s)) << 32) | uint64_t(row);
}
__device__ __forceinline__ float key_score(uint64_t k) { return order_float(uint32_t(k >> 32)); }
__device__ __forceinline__ uint32_t key_row(uint64_t k) { return uint32_t(k & 0xffffffffu); }

__device__ __forceinline__ bool is_deleted(const uint32_t* bitmap, std::size_t row) {
  return bitmap != nullptr && ((bitmap[row >> 5] >> (row & 31)) & 1u) != 0;
}

}  // namespace hive::gpu::HIVE_GPU_DEVICE_NS::dev
