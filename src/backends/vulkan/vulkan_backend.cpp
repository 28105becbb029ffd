// The Vulkan backend: every Vulkan 1.1 device with a compute queue (NVIDIA, AMD, Intel, Apple
// through MoltenVK, and CPU implementations such as Mesa's lavapipe), one logical device each,
// created on first use.
#include <mutex>

#include "backends/vulkan/vk_context.hpp"
#include "backends/vulkan/vulkan_flat_store.hpp"
#include "core/backend.hpp"

namespace hive::gpu::vk {
namespace {

class VulkanDevice final : public detail::Device {
 public:
  explicit VulkanDevice(const PhysicalDevice& pd) : pd_(pd) {}
  const DeviceInfo& info() const override {
    std::lock_guard<std::mutex> lock(mu_);
    if (gpu_) info_.free_memory = gpu_->free_memory();
    return info_;
  }
  std::unique_ptr<detail::FlatStore> make_flat_store(const detail::StoreConfig& cfg) override {
    std::shared_ptr<Gpu> g;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!gpu_) gpu_ = std::make_shared<Gpu>(pd_);
      g = gpu_;
    }
    return make_vulkan_flat_store(cfg, std::move(g));
  }

 private:
  PhysicalDevice pd_;
  mutable std::mutex mu_;
  mutable DeviceInfo info_ = pd_.info;
  std::shared_ptr<Gpu> gpu_;
};

class VulkanBackend final : public detail::Backend {
 public:
  std::string name() const override { return "vulkan"; }
  // Below CUDA / HIP (the same GPU through its native API is faster), above the CPU backend.
  // Context::open("auto") passes over CPU implementations such as lavapipe (device_type "cpu").
  int priority() const override { return 50; }
  BackendStatus status() override {
    init();
    if (devices_.empty()) return {"vulkan", true, false, 0, discover().reason};
    return {"vulkan", true, true, int(devices_.size()), ""};
  }
  std::vector<std::shared_ptr<detail::Device>> devices() override {
    init();
    return devices_;
  }

 private:
  void init() {
    std::call_once(once_, [this] {
      for (const auto& pd : discover().devices) devices_.push_back(std::make_shared<VulkanDevice>(pd));
    });
  }
  std::once_flag once_;
  // Deliberately never destroyed: the registry is a static, destroyed at exit after the driver
  // (loaded later, so torn down earlier) may already be gone; NVIDIA's then crashes in
  // vkDestroyDevice. The process's exit releases the devices.
  std::vector<std::shared_ptr<detail::Device>>& devices_ = *new std::vector<std::shared_ptr<detail::Device>>();
};

}  // namespace
}  // namespace hive::gpu::vk

namespace hive::gpu::detail {
std::unique_ptr<Backend> make_vulkan_backend() { return std::make_unique<vk::VulkanBackend>(); }
}  // namespace hive::gpu::detail
