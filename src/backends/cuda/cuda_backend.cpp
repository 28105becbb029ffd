// The CUDA backend: finds NVIDIA devices through the CUDA runtime (linked statically, so the
// library loads and reports "no CUDA device" on machines without a GPU or driver) and makes
// flat stores in their memory. Compiled with HIVE_GPU_HIP it is the HIP backend ("hip"): AMD
// devices through the HIP runtime, with the same stores and kernels.
#include "backends/cuda/gpu_runtime.hpp"

#include <mutex>
#include <string>

#include "backends/cuda/cuda_common.hpp"
#include "backends/cuda/cuda_flat_store.hpp"
#include "core/backend.hpp"

namespace hive::gpu::HIVE_GPU_DEVICE_NS {
namespace {

#if defined(HIVE_GPU_HIP)
constexpr const char* kBackend = "hip";
constexpr const char* kApi = "HIP";
// HIP versions are major * 10^7 + minor * 10^5 + patch (5.2.21153 -> 50221153).
std::string version_string(int v) {
  return std::to_string(v / 10000000) + "." + std::to_string((v / 100000) % 100) + "." + std::to_string(v % 100000);
}
#else
constexpr const char* kBackend = "cuda";
constexpr const char* kApi = "CUDA";
std::string version_string(int v) { return std::to_string(v / 1000) + "." + std::to_string((v % 1000) / 10); }
#endif

// The vendor-specific fields of a device's description.
void describe(const cudaDeviceProp& p, DeviceInfo& d) {
#if defined(HIVE_GPU_HIP)
  d.vendor = "AMD";
  // gcnArchName is "gfx90a:sramecc+:xnack-": the architecture, then target features.
  const std::string arch = p.gcnArchName;
  d.architecture = arch.substr(0, arch.find(':'));
#else
  d.vendor = "NVIDIA";
  d.architecture = "sm_" + std::to_string(p.major) + std::to_string(p.minor);
#endif
}

class CudaDevice final : public detail::Device {
 public:
  explicit CudaDevice(DeviceInfo info) : info_(std::move(info)) {}
  const DeviceInfo& info() const override { return info_; }
  std::unique_ptr<detail::FlatStore> make_flat_store(const detail::StoreConfig& cfg) override {
    return make_cuda_flat_store(cfg, info_.ordinal);
  }
  std::unique_ptr<detail::GraphStore> make_graph_store(const detail::GraphConfig& cfg) override {
    return make_cuda_graph_store(cfg, info_.ordinal);
  }

 private:
  DeviceInfo info_;
};

class CudaBackend final : public detail::Backend {
 public:
  std::string name() const override { return kBackend; }
  int priority() const override { return 100; }
  BackendStatus status() override {
    discover();
    if (devices_.empty()) return {kBackend, true, false, 0, reason_};
    return {kBackend, true, true, int(devices_.size()), ""};
  }
  std::vector<std::shared_ptr<detail::Device>> devices() override {
    discover();
    return devices_;
  }

 private:
  void discover() {
    std::call_once(once_, [this] {
      try {
        find_devices();
      } catch (const std::exception& e) {
        devices_.clear();
        reason_ = std::string(kApi) + " device query failed: " + e.what();
      }
    });
  }

  void find_devices() {
    int count = 0;
    const cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess) {
      (void)cudaGetLastError();
      reason_ = std::string("no ") + kApi + " device: " + cudaGetErrorString(e);
      return;
    }
    if (count <= 0) {
      reason_ = std::string("no ") + kApi + " device: the driver reports none";
      return;
    }
    int driver = 0, runtime = 0;
    (void)cudaDriverGetVersion(&driver);
    (void)cudaRuntimeGetVersion(&runtime);
    for (int i = 0; i < count; ++i) {
      cudaDeviceProp p{};
      check(cudaGetDeviceProperties(&p, i), "cudaGetDeviceProperties");
      DeviceInfo d;
      d.backend = kBackend;
      d.ordinal = i;
      d.name = p.name;
      describe(p, d);
      d.device_type = p.integrated ? "integrated-gpu" : "discrete-gpu";
      d.compute_major = p.major;
      d.compute_minor = p.minor;
      d.compute_units = p.multiProcessorCount;
      d.subgroup_size = p.warpSize;
      d.total_memory = p.totalGlobalMem;
      d.free_memory = p.totalGlobalMem;
      use_device(i);
      std::size_t free_b = 0, total_b = 0;
      if (cudaMemGetInfo(&free_b, &total_b) == cudaSuccess) {
        d.free_memory = free_b;
        d.total_memory = total_b;
      } else {
        (void)cudaGetLastError();
      }
      d.driver_version = std::string(kApi) + " driver " + version_string(driver);
      d.runtime_version = std::string(kApi) + " runtime " + version_string(runtime);
      char bus[32] = {};
      if (cudaDeviceGetPCIBusId(bus, int(sizeof bus), i) == cudaSuccess) d.pci_bus_id = bus;
      devices_.push_back(std::make_shared<CudaDevice>(std::move(d)));
    }
  }

  std::once_flag once_;
  std::vector<std::shared_ptr<detail::Device>> devices_;
  std::string reason_;
};

}  // namespace
}  // namespace hive::gpu::HIVE_GPU_DEVICE_NS

namespace hive::gpu::detail {
#if defined(HIVE_GPU_HIP)
std::unique_ptr<Backend> make_hip_backend() { return std::make_unique<HIVE_GPU_DEVICE_NS::CudaBackend>(); }
#else
std::unique_ptr<Backend> make_cuda_backend() { return std::make_unique<HIVE_GPU_DEVICE_NS::CudaBackend>(); }
#endif
}  // namespace hive::gpu::detail
