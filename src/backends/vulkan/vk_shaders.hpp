// Vulkan backend: the embedded SPIR-V modules (see vk_shaders.cpp).
#pragma once
#include <cstddef>
#include <cstdint>

#include "backends/vulkan/vk_context.hpp"

namespace hive::gpu::vk {
struct Spirv {
  const uint32_t* words;
  std::size_t bytes;
};
Spirv spirv(Shader s);
}  // namespace hive::gpu::vk
