#pragma once
#include <memory>

#include "backends/vulkan/vk_context.hpp"
#include "core/backend.hpp"

namespace hive::gpu::vk {
// A flat store in the device-local memory of one Vulkan device.
std::unique_ptr<detail::FlatStore> make_vulkan_flat_store(const detail::StoreConfig& cfg, std::shared_ptr<Gpu> gpu);
}  // namespace hive::gpu::vk
