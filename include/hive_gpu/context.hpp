// hive-gpu: choosing the device an index lives on.
#pragma once
#include <memory>
#include <string_view>
#include <vector>

#include "hive_gpu/device.hpp"

namespace hive::gpu {

namespace detail {
class Device;
}

// A handle on one device of one backend. Cheap to copy; indexes keep their device alive.
class Context {
 public:
  // Every backend this build knows of, compiled in or not, and whether it found devices.
  static std::vector<BackendStatus> backends();
  // Every device of every compiled-in backend that is present. The CPU is always listed.
  static std::vector<DeviceInfo> devices();
  // "auto" (best device present: CUDA, HIP, Vulkan GPU, then CPU), a backend name ("cuda"
  // opens its device 0) or "backend:ordinal". Throws Error(DeviceUnavailable) with the reason.
  static Context open(std::string_view spec = "auto");

  const DeviceInfo& info() const;
  const std::shared_ptr<detail::Device>& device() const { return device_; }

 private:
  explicit Context(std::shared_ptr<detail::Device> d) : device_(std::move(d)) {}
  std::shared_ptr<detail::Device> device_;
};

}  // namespace hive::gpu
