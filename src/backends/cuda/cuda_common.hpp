// CUDA backend: error checking and small RAII owners of device, pinned and stream resources.
// Host-only (included by .cpp and .cu files alike).
#pragma once
#include "backends/cuda/gpu_runtime.hpp"

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "hive_gpu/error.hpp"

namespace hive::gpu::HIVE_GPU_DEVICE_NS {

// Throws Error(OutOfMemory) for allocation failures, Error(Internal) otherwise, naming the call.
void throw_cuda_error(cudaError_t e, const char* what);

inline void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw_cuda_error(e, what);
}

// Device memory, grown on demand (never shrunk): so a warm search path never allocates.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(std::size_t bytes) { allocate(bytes); }
  ~DeviceBuffer() { release(); }
  DeviceBuffer(DeviceBuffer&& o) noexcept : p_(std::exchange(o.p_, nullptr)), bytes_(std::exchange(o.bytes_, 0)) {}
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept {
    if (this != &o) {
      release();
      p_ = std::exchange(o.p_, nullptr);
      bytes_ = std::exchange(o.bytes_, 0);
    }
    return *this;
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  // Makes the buffer at least `bytes` long; the contents are lost when it grows.
  void ensure(std::size_t bytes) {
    if (bytes <= bytes_) return;
    DeviceBuffer fresh(bytes);
    *this = std::move(fresh);
  }
  void* get() const { return p_; }
  template <class T>
  T* as() const {
    return static_cast<T*>(p_);
  }
  std::size_t bytes() const { return bytes_; }

 private:
  void allocate(std::size_t bytes);
  void release() noexcept;
  void* p_ = nullptr;
  std::size_t bytes_ = 0;
};

// Page-locked host memory for staging uploads and downloads.
class PinnedBuffer {
 public:
  PinnedBuffer() = default;
  ~PinnedBuffer() { release(); }
  PinnedBuffer(const PinnedBuffer&) = delete;
  PinnedBuffer& operator=(const PinnedBuffer&) = delete;
  void ensure(std::size_t bytes);
  void* get() const { return p_; }
  template <class T>
  T* as() const {
    return static_cast<T*>(p_);
  }

 private:
  void release() noexcept;
  void* p_ = nullptr;
  std::size_t bytes_ = 0;
};

// A stream of our own, or (borrowed, not destroyed) the caller's.
class Stream {
 public:
  Stream();
  explicit Stream(cudaStream_t borrowed) : s_(borrowed), owned_(false) {}
  ~Stream();
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;
  cudaStream_t get() const { return s_; }
  void sync(const char* what) const { check(cudaStreamSynchronize(s_), what); }

 private:
  cudaStream_t s_ = nullptr;
  bool owned_ = true;
};

// Deleted rows of a store: a host bitmap (authoritative) and its device copy, uploaded before
// the first search that needs it after a change.
class RowBitmap {
 public:
  // Rows [0, rows): new ones not deleted. May throw (memory) before changing anything.
  void resize(std::size_t rows) {
    words_.resize((rows + 31) / 32, 0);
    dirty_ = true;
  }
  // Rows [0, rows), none deleted.
  void reset(std::size_t rows) {
    words_.assign((rows + 31) / 32, 0);
    count_ = 0;
    dirty_ = true;
  }
  void set(std::size_t row, bool deleted) {
    uint32_t& word = words_[row / 32];
    const uint32_t bit = uint32_t(1) << (row % 32);
    if (((word & bit) != 0) == deleted) return;
    word ^= bit;
    count_ += deleted ? 1 : std::size_t(-1);
    dirty_ = true;
  }
  bool test(std::size_t row) const { return ((words_[row / 32] >> (row % 32)) & 1u) != 0; }
  std::size_t count() const { return count_; }
  // The device copy, null when no row is deleted; uploaded on `s` (and waited for: the host
  // bitmap may change once this returns) when it changed since the last call.
  const uint32_t* device(const Stream& s) const;

 private:
  std::vector<uint32_t> words_;
  std::size_t count_ = 0;
  mutable bool dirty_ = true;
  mutable DeviceBuffer dev_;
};

// Whether searches take the paths a HIP build takes: always on HIP; on CUDA when
// HIVE_GPU_CUDA_PORTABLE is set (read per call), so they can be tested on an NVIDIA GPU.
bool portable_paths();

// Makes `ordinal` the calling thread's current device (cheap when it already is).
void use_device(int ordinal);

// Multiprocessors of the calling thread's current device (read once per device), for grid sizes.
int sm_count();

// Lanes per wave (warp) of the calling thread's current device, read once per device: 32 on
// NVIDIA and AMD RDNA, 64 on AMD GCN / CDNA.
int wave_size();

// Calls f.template operator()<W>() with W the current device's wave size: the wave-level
// kernels are templates on it. CUDA builds instantiate only W = 32.
template <class F>
void with_wave(F&& f) {
#if defined(HIVE_GPU_HIP)
  if (wave_size() == 64) {
    f.template operator()<64>();
    return;
  }
#endif
  if (wave_size() != 32) throw Error(ErrorCode::Internal, "unsupported wave size " + std::to_string(wave_size()));
  f.template operator()<32>();
}

}  // namespace hive::gpu::HIVE_GPU_DEVICE_NS
