// Vulkan backend: the Vulkan entry points, loaded at run time from libvulkan.so.1 (dlopen), so
// the library loads and reports "no Vulkan loader" on machines without one, as the CUDA backend
// does without a driver. Only the functions this backend calls are listed.
#pragma once
#define VK_NO_PROTOTYPES
#include <vulkan/vulkan.h>

#include <string>

namespace hive::gpu::vk {

#define HIVE_VK_GLOBAL_FNS(X) \
  X(vkCreateInstance)         \
  X(vkEnumerateInstanceVersion)

#define HIVE_VK_INSTANCE_FNS(X)              \
  X(vkDestroyInstance)                       \
  X(vkEnumeratePhysicalDevices)              \
  X(vkGetPhysicalDeviceProperties)           \
  X(vkGetPhysicalDeviceProperties2)          \
  X(vkGetPhysicalDeviceFeatures)             \
  X(vkGetPhysicalDeviceFeatures2)            \
  X(vkGetPhysicalDeviceMemoryProperties)     \
  X(vkGetPhysicalDeviceMemoryProperties2)    \
  X(vkGetPhysicalDeviceQueueFamilyProperties) \
  X(vkEnumerateDeviceExtensionProperties)    \
  X(vkCreateDevice)

#define HIVE_VK_DEVICE_FNS(X)         \
  X(vkDestroyDevice)                  \
  X(vkGetDeviceQueue)                 \
  X(vkDeviceWaitIdle)                 \
  X(vkQueueSubmit)                    \
  X(vkCreateBuffer)                   \
  X(vkDestroyBuffer)                  \
  X(vkGetBufferMemoryRequirements)    \
  X(vkAllocateMemory)                 \
  X(vkFreeMemory)                     \
  X(vkBindBufferMemory)               \
  X(vkMapMemory)                      \
  X(vkUnmapMemory)                    \
  X(vkInvalidateMappedMemoryRanges)   \
  X(vkFlushMappedMemoryRanges)        \
  X(vkCreateShaderModule)             \
  X(vkDestroyShaderModule)            \
  X(vkCreateDescriptorSetLayout)      \
  X(vkDestroyDescriptorSetLayout)     \
  X(vkCreatePipelineLayout)           \
  X(vkDestroyPipelineLayout)          \
  X(vkCreateComputePipelines)         \
  X(vkDestroyPipeline)                \
  X(vkCreateDescriptorPool)           \
  X(vkDestroyDescriptorPool)          \
  X(vkResetDescriptorPool)            \
  X(vkAllocateDescriptorSets)         \
  X(vkUpdateDescriptorSets)           \
  X(vkCreateCommandPool)              \
  X(vkDestroyCommandPool)             \
  X(vkAllocateCommandBuffers)         \
  X(vkResetCommandBuffer)             \
  X(vkBeginCommandBuffer)             \
  X(vkEndCommandBuffer)               \
  X(vkCmdBindPipeline)                \
  X(vkCmdBindDescriptorSets)          \
  X(vkCmdPushConstants)               \
  X(vkCmdDispatch)                    \
  X(vkCmdPipelineBarrier)             \
  X(vkCmdCopyBuffer)                  \
  X(vkCmdFillBuffer)                  \
  X(vkCreateFence)                    \
  X(vkDestroyFence)                   \
  X(vkWaitForFences)                  \
  X(vkGetFenceStatus)                 \
  X(vkResetFences)                    \
  X(vkCreateQueryPool)                \
  X(vkDestroyQueryPool)               \
  X(vkCmdResetQueryPool)              \
  X(vkCmdWriteTimestamp)              \
  X(vkGetQueryPoolResults)

struct Api {
#define HIVE_VK_DECLARE(name) PFN_##name name = nullptr;
  HIVE_VK_GLOBAL_FNS(HIVE_VK_DECLARE)
  HIVE_VK_INSTANCE_FNS(HIVE_VK_DECLARE)
  HIVE_VK_DEVICE_FNS(HIVE_VK_DECLARE)
#undef HIVE_VK_DECLARE
  PFN_vkGetInstanceProcAddr vkGetInstanceProcAddr = nullptr;
};

// The process-wide table. load_global() opens the loader once (thread-safe) and returns an
// empty string, or why it could not (no libvulkan.so.1).
Api& api();
std::string load_global();
// Instance- and device-level pointers, both through vkGetInstanceProcAddr: device functions then
// go through the loader's trampoline, which dispatches to each device's own driver (a machine
// may hold NVIDIA's driver and lavapipe at once; one device's pointers must not serve another).
void load_instance(VkInstance instance);

// "VK_ERROR_OUT_OF_DEVICE_MEMORY" etc.
const char* result_name(VkResult r);
// Throws hive::gpu::Error (OutOfMemory for the two out-of-memory results, Internal otherwise).
void check(VkResult r, const char* what);

}  // namespace hive::gpu::vk
