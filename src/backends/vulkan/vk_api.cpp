// Vulkan backend: run-time loading of libvulkan.so.1 (see vk_api.hpp).
#include "backends/vulkan/vk_api.hpp"

#include <dlfcn.h>

#include <mutex>

#include "hive_gpu/error.hpp"

namespace hive::gpu::vk {

Api& api() {
  static Api a;
  return a;
}

std::string load_global() {
  static std::once_flag once;
  static std::string why;
  std::call_once(once, [] {
    void* lib = dlopen("libvulkan.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!lib) lib = dlopen("libvulkan.so", RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
      why = "no Vulkan loader (libvulkan.so.1 not found; Debian: apt-get install libvulkan1)";
      return;
    }
    // Kept open for the life of the process: the loader's pointers must outlive every user.
    auto gipa = reinterpret_cast<PFN_vkGetInstanceProcAddr>(dlsym(lib, "vkGetInstanceProcAddr"));
    if (!gipa) {
      why = "libvulkan.so.1 has no vkGetInstanceProcAddr";
      return;
    }
    Api& a = api();
    a.vkGetInstanceProcAddr = gipa;
#define HIVE_VK_LOAD(name) a.name = reinterpret_cast<PFN_##name>(gipa(nullptr, #name));
    HIVE_VK_GLOBAL_FNS(HIVE_VK_LOAD)
#undef HIVE_VK_LOAD
    if (!a.vkCreateInstance) why = "the Vulkan loader has no vkCreateInstance";
  });
  return why;
}

void load_instance(VkInstance instance) {
  Api& a = api();
#define HIVE_VK_LOAD(name)                                                                 \
  a.name = reinterpret_cast<PFN_##name>(a.vkGetInstanceProcAddr(instance, #name));         \
  if (!a.name) throw Error(ErrorCode::DeviceUnavailable, "Vulkan loader lacks " #name);
  HIVE_VK_INSTANCE_FNS(HIVE_VK_LOAD)
  HIVE_VK_DEVICE_FNS(HIVE_VK_LOAD)
#undef HIVE_VK_LOAD
}

const char* result_name(VkResult r) {
  switch (r) {
    case VK_SUCCESS: return "VK_SUCCESS";
    case VK_NOT_READY: return "VK_NOT_READY";
    case VK_TIMEOUT: return "VK_TIMEOUT";
    case VK_INCOMPLETE: return "VK_INCOMPLETE";
    case VK_ERROR_OUT_OF_HOST_MEMORY: return "VK_ERROR_OUT_OF_HOST_MEMORY";
    case VK_ERROR_OUT_OF_DEVICE_MEMORY: return "VK_ERROR_OUT_OF_DEVICE_MEMORY";
    case VK_ERROR_INITIALIZATION_FAILED: return "VK_ERROR_INITIALIZATION_FAILED";
    case VK_ERROR_DEVICE_LOST: return "VK_ERROR_DEVICE_LOST";
    case VK_ERROR_MEMORY_MAP_FAILED: return "VK_ERROR_MEMORY_MAP_FAILED";
    case VK_ERROR_LAYER_NOT_PRESENT: return "VK_ERROR_LAYER_NOT_PRESENT";
    case VK_ERROR_EXTENSION_NOT_PRESENT: return "VK_ERROR_EXTENSION_NOT_PRESENT";
    case VK_ERROR_FEATURE_NOT_PRESENT: return "VK_ERROR_FEATURE_NOT_PRESENT";
    case VK_ERROR_INCOMPATIBLE_DRIVER: return "VK_ERROR_INCOMPATIBLE_DRIVER";
    case VK_ERROR_TOO_MANY_OBJECTS: return "VK_ERROR_TOO_MANY_OBJECTS";
    case VK_ERROR_FORMAT_NOT_SUPPORTED: return "VK_ERROR_FORMAT_NOT_SUPPORTED";
    case VK_ERROR_FRAGMENTED_POOL: return "VK_ERROR_FRAGMENTED_POOL";
    case VK_ERROR_OUT_OF_POOL_MEMORY: return "VK_ERROR_OUT_OF_POOL_MEMORY";
    default: return "VkResult (unknown)";
  }
}

void check(VkResult r, const char* what) {
  if (r == VK_SUCCESS) return;
  const std::string msg = std::string("Vulkan: ") + what + " failed: " + result_name(r) + " (" + std::to_string(int(r)) + ")";
  if (r == VK_ERROR_OUT_OF_DEVICE_MEMORY || r == VK_ERROR_OUT_OF_HOST_MEMORY) throw Error(ErrorCode::OutOfMemory, msg);
  throw Error(ErrorCode::Internal, msg);
}

}  // namespace hive::gpu::vk
