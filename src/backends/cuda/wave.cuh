// The GPU's wave (warp) operations behind the interface of wave_select.hpp, for a wave of W
// lanes: CUDA warps (W = 32, *_sync intrinsics over the full warp) or HIP wavefronts (W = 32 on
// RDNA, 64 on GCN/CDNA; AMD waves run in lock-step, so the plain intrinsics are the full-wave
// ones). Kernels that use waves are templates on W; the host reads the device's width at run
// time (wave_size()) and launches the matching instantiation (with_wave()).
#pragma once
#include <cstdint>
#include <type_traits>

#include "backends/cuda/gpu_runtime.hpp"
#include "backends/cuda/wave_select.hpp"

namespace hive::gpu::HIVE_GPU_DEVICE_NS::dev {

// Whether kernels for W-lane waves get a body in this compiler pass. HIP compiles every
// kernel once per target architecture: only the instantiation of that target's wavefront size
// can ever run there, so the other one is left empty (less code, and no wave-size mismatch
// can execute). CUDA instantiates only W = 32.
template <int W>
constexpr bool wave_compiled() {
#if defined(__HIP_DEVICE_COMPILE__)
  return W == __AMDGCN_WAVEFRONT_SIZE;
#else
  return true;
#endif
}

template <int W>
struct HwWave {
  static_assert(W == 32 || W == 64, "waves have 32 or 64 lanes");
  static constexpr int kWidth = W;
  using Mask = std::conditional_t<W == 64, unsigned long long, unsigned>;

  __device__ __forceinline__ HwWave() : lane_(int(threadIdx.x) & (W - 1)) {}
  __device__ __forceinline__ int lane() const { return lane_; }
  // This lane's bit and the bits of the lanes below it.
  __device__ __forceinline__ Mask lanes_below() const { return (Mask(1) << lane_) - 1; }

#if defined(HIVE_GPU_HIP)
  template <class T>
  __device__ __forceinline__ T shfl(T v, int src) const {
    return __shfl(v, src, W);
  }
  template <class T>
  __device__ __forceinline__ T shfl_xor(T v, int m) const {
    return __shfl_xor(v, m, W);
  }
  template <class T>
  __device__ __forceinline__ T shfl_up(T v, int d) const {
    return __shfl_up(v, unsigned(d), W);
  }
  __device__ __forceinline__ Mask ballot(bool p) const { return Mask(__ballot(p)); }
  __device__ __forceinline__ bool any(bool p) const { return __any(p) != 0; }
  // Lanes of a wave run in lock-step; this only keeps the compiler from moving memory
  // accesses across the point.
  __device__ __forceinline__ void sync() const { __builtin_amdgcn_wave_barrier(); }
  __device__ __forceinline__ static int popc(Mask m) {
    if constexpr (W == 64) return __popcll(m); else return __popc(m);
  }
  __device__ __forceinline__ static int lowest(Mask m) {
    if constexpr (W == 64) return __ffsll((unsigned long long)m) - 1; else return __ffs(m) - 1;
  }
#else
  static_assert(W == 32, "CUDA warps have 32 lanes");
  static constexpr unsigned kFull = 0xffffffffu;
  template <class T>
  __device__ __forceinline__ T shfl(T v, int src) const {
    return __shfl_sync(kFull, v, src);
  }
  template <class T>
  __device__ __forceinline__ T shfl_xor(T v, int m) const {
    return __shfl_xor_sync(kFull, v, m);
  }
  template <class T>
  __device__ __forceinline__ T shfl_up(T v, int d) const {
    return __shfl_up_sync(kFull, v, unsigned(d));
  }
  __device__ __forceinline__ Mask ballot(bool p) const { return __ballot_sync(kFull, p); }
  __device__ __forceinline__ bool any(bool p) const { return __any_sync(kFull, p) != 0; }
  __device__ __forceinline__ void sync() const { __syncwarp(); }
  __device__ __forceinline__ static int popc(Mask m) { return __popc(m); }
  __device__ __forceinline__ static int lowest(Mask m) { return __ffs(int(m)) - 1; }
#endif

 private:
  int lane_;
};

}  // namespace hive::gpu::HIVE_GPU_DEVICE_NS::dev
