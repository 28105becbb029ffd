#include "backends/cuda/cuda_common.hpp"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>

namespace hive::gpu::HIVE_GPU_DEVICE_NS {

void throw_cuda_error(cudaError_t e, const char* what) {
  (void)cudaGetLastError();  // clear the sticky-free error so later calls do not see it
  const std::string msg = std::string(what) + ": " + cudaGetErrorName(e) + " (" + cudaGetErrorString(e) + ")";
  if (e == cudaErrorMemoryAllocation) throw Error(ErrorCode::OutOfMemory, msg);
  throw Error(ErrorCode::Internal, "CUDA " + msg);
}

const uint32_t* RowBitmap::device(const Stream& s) const {
  if (count_ == 0) return nullptr;
  if (dirty_) {
    dev_.ensure(std::max<std::size_t>(words_.size(), 1) * sizeof(uint32_t));
    check(cudaMemcpyAsync(dev_.get(), words_.data(), words_.size() * sizeof(uint32_t), cudaMemcpyHostToDevice, s.get()),
          "upload removed-rows bitmap");
    s.sync("upload removed-rows bitmap");
    dirty_ = false;
  }
  return dev_.as<uint32_t>();
}

bool portable_paths() {
#if defined(HIVE_GPU_HIP)
  return true;
#else
  const char* v = std::getenv("HIVE_GPU_CUDA_PORTABLE");
  return v != nullptr && *v != '\0' && std::strcmp(v, "0") != 0;
#endif
}

void DeviceBuffer::allocate(std::size_t bytes) {
  if (bytes == 0) return;
  void* p = nullptr;
  const cudaError_t e = cudaMalloc(&p, bytes);
  if (e != cudaSuccess) {
    (void)cudaGetLastError();
    throw Error(ErrorCode::OutOfMemory, "cudaMalloc of " + std::to_string(bytes) + " bytes failed: " +
                                            cudaGetErrorString(e));
  }
  p_ = p;
  bytes_ = bytes;
}

void DeviceBuffer::release() noexcept {
  if (p_) (void)cudaFree(p_);
  p_ = nullptr;
  bytes_ = 0;
}

void PinnedBuffer::ensure(std::size_t bytes) {
  if (bytes <= bytes_) return;
  release();
  void* p = nullptr;
  const cudaError_t e = cudaMallocHost(&p, bytes);
  if (e != cudaSuccess) {
    (void)cudaGetLastError();
    throw Error(ErrorCode::OutOfMemory, "cudaMallocHost of " + std::to_string(bytes) + " bytes failed: " +
                                            cudaGetErrorString(e));
  }
  p_ = p;
  bytes_ = bytes;
}

void PinnedBuffer::release() noexcept {
  if (p_) (void)cudaFreeHost(p_);
  p_ = nullptr;
  bytes_ = 0;
}

Stream::Stream() { check(cudaStreamCreateWithFlags(&s_, cudaStreamNonBlocking), "cudaStreamCreate"); }
Stream::~Stream() {
  if (s_ && owned_) (void)cudaStreamDestroy(s_);
}

namespace {
// A device attribute of the calling thread's current device, cached per device (64 of them).
template <std::size_t Slot>
int cached_attribute(cudaDeviceAttr attr, int fallback) {
  static std::atomic<int> cache[64];
  int device = 0;
  check(cudaGetDevice(&device), "cudaGetDevice");
  std::atomic<int>* slot = device >= 0 && device < 64 ? &cache[device] : nullptr;
  if (slot != nullptr) {
    const int v = slot->load(std::memory_order_relaxed);
    if (v > 0) return v;
  }
  int m = 0;
  check(cudaDeviceGetAttribute(&m, attr, device), "cudaDeviceGetAttribute");
  m = m > 0 ? m : fallback;
  if (slot != nullptr) slot->store(m, std::memory_order_relaxed);
  return m;
}
}  // namespace

int sm_count() { return cached_attribute<0>(cudaDevAttrMultiProcessorCount, 1); }
int wave_size() { return cached_attribute<1>(cudaDevAttrWarpSize, 32); }

void use_device(int ordinal) {
  int cur = -1;
  if (cudaGetDevice(&cur) == cudaSuccess && cur == ordinal) return;
  check(cudaSetDevice(ordinal), "cudaSetDevice");
}

}  // namespace hive::gpu::HIVE_GPU_DEVICE_NS
