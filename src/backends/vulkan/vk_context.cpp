// Vulkan backend: instance, discovery, logical devices, buffers, pipelines and streams.
#include "backends/vulkan/vk_context.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <thread>

#include "backends/vulkan/vk_shaders.hpp"
#include "core/env.hpp"
#include "hive_gpu/error.hpp"

namespace hive::gpu::vk {
namespace {

std::string vendor_name(uint32_t id) {
  switch (id) {
    case 0x10DE: return "NVIDIA";
    case 0x1002: return "AMD";
    case 0x8086: return "Intel";
    case 0x106B: return "Apple";
    case 0x13B5: return "ARM";
    case 0x5143: return "Qualcomm";
    case 0x10005: return "Mesa";  // VK_VENDOR_ID_MESA: lavapipe
    default: {
      char buf[16];
      std::snprintf(buf, sizeof buf, "0x%04X", id);
      return buf;
    }
  }
}

const char* type_name(VkPhysicalDeviceType t) {
  switch (t) {
    case VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU: return "integrated-gpu";
    case VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU: return "discrete-gpu";
    case VK_PHYSICAL_DEVICE_TYPE_VIRTUAL_GPU: return "virtual-gpu";
    case VK_PHYSICAL_DEVICE_TYPE_CPU: return "cpu";
    default: return "other";
  }
}

// Vendors pack driverVersion their own way; NVIDIA 10.8.8.6 bits, Intel on Windows 18.14;
// everyone else (Mesa included) follows VK_MAKE_API_VERSION.
std::string driver_string(uint32_t vendor, uint32_t v) {
  if (vendor == 0x10DE)
    return std::to_string(v >> 22) + "." + std::to_string((v >> 14) & 0xff) + "." + std::to_string((v >> 6) & 0xff);
  return std::to_string(VK_API_VERSION_MAJOR(v)) + "." + std::to_string(VK_API_VERSION_MINOR(v)) + "." +
         std::to_string(VK_API_VERSION_PATCH(v));
}

std::string api_string(uint32_t v) {
  return std::to_string(VK_API_VERSION_MAJOR(v)) + "." + std::to_string(VK_API_VERSION_MINOR(v)) + "." +
         std::to_string(VK_API_VERSION_PATCH(v));
}

bool has_extension(VkPhysicalDevice pd, const char* name) {
  uint32_t n = 0;
  api().vkEnumerateDeviceExtensionProperties(pd, nullptr, &n, nullptr);
  std::vector<VkExtensionProperties> ext(n);
  api().vkEnumerateDeviceExtensionProperties(pd, nullptr, &n, ext.data());
  for (const auto& e : ext)
    if (std::strcmp(e.extensionName, name) == 0) return true;
  return false;
}

std::string lower(std::string s) {
  for (auto& c : s) c = char(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// Whether the device offers VK_NV_cooperative_matrix with the shape batch_screen.comp uses
// (16 x 8 x 16, fp16 operands, fp32 sums, subgroup scope) on 32-wide subgroups, and the features
// that shader needs besides: cooperativeMatrix, shaderFloat16 and vulkanMemoryModel (through
// their extensions: the instance asks for Vulkan 1.1).
bool coop_matrix_usable(VkInstance inst, VkPhysicalDevice h, uint32_t subgroup_size) {
  const Api& a = api();
  if (subgroup_size != 32 || !has_extension(h, VK_NV_COOPERATIVE_MATRIX_EXTENSION_NAME) ||
      !has_extension(h, VK_KHR_SHADER_FLOAT16_INT8_EXTENSION_NAME) ||
      !has_extension(h, VK_KHR_VULKAN_MEMORY_MODEL_EXTENSION_NAME))
    return false;
  auto props_fn = reinterpret_cast<PFN_vkGetPhysicalDeviceCooperativeMatrixPropertiesNV>(
      a.vkGetInstanceProcAddr(inst, "vkGetPhysicalDeviceCooperativeMatrixPropertiesNV"));
  if (!props_fn) return false;
  VkPhysicalDeviceCooperativeMatrixFeaturesNV cm{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_COOPERATIVE_MATRIX_FEATURES_NV};
  VkPhysicalDeviceShaderFloat16Int8FeaturesKHR f16{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SHADER_FLOAT16_INT8_FEATURES_KHR};
  VkPhysicalDeviceVulkanMemoryModelFeaturesKHR mm{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_MEMORY_MODEL_FEATURES_KHR};
  cm.pNext = &f16;
  f16.pNext = &mm;
  VkPhysicalDeviceFeatures2 f2{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2};
  f2.pNext = &cm;
  a.vkGetPhysicalDeviceFeatures2(h, &f2);
  if (!cm.cooperativeMatrix || !f16.shaderFloat16 || !mm.vulkanMemoryModel) return false;
  uint32_t n = 0;
  if (props_fn(h, &n, nullptr) != VK_SUCCESS || n == 0) return false;
  std::vector<VkCooperativeMatrixPropertiesNV> props(n, {VK_STRUCTURE_TYPE_COOPERATIVE_MATRIX_PROPERTIES_NV});
  if (props_fn(h, &n, props.data()) != VK_SUCCESS) return false;
  for (const auto& c : props)
    if (c.MSize == 16 && c.NSize == 8 && c.KSize == 16 && c.AType == VK_COMPONENT_TYPE_FLOAT16_NV &&
        c.BType == VK_COMPONENT_TYPE_FLOAT16_NV && c.CType == VK_COMPONENT_TYPE_FLOAT32_NV &&
        c.DType == VK_COMPONENT_TYPE_FLOAT32_NV && c.scope == VK_SCOPE_SUBGROUP_NV)
      return true;
  return false;
}

PhysicalDevice describe(VkInstance inst, VkPhysicalDevice h) {
  const Api& a = api();
  PhysicalDevice pd;
  pd.handle = h;
  VkPhysicalDeviceSubgroupProperties sub{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SUBGROUP_PROPERTIES};
  VkPhysicalDeviceProperties2 p2{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2};
  p2.pNext = &sub;
  VkPhysicalDevicePCIBusInfoPropertiesEXT pci{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PCI_BUS_INFO_PROPERTIES_EXT};
  const bool has_pci = has_extension(h, VK_EXT_PCI_BUS_INFO_EXTENSION_NAME);
  // Core Vulkan has no count of compute units: NVIDIA and AMD tell it through extensions.
  VkPhysicalDeviceShaderSMBuiltinsPropertiesNV nv{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SHADER_SM_BUILTINS_PROPERTIES_NV};
  VkPhysicalDeviceShaderCorePropertiesAMD amd{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SHADER_CORE_PROPERTIES_AMD};
  const bool has_nv = has_extension(h, VK_NV_SHADER_SM_BUILTINS_EXTENSION_NAME);
  const bool has_amd = has_extension(h, VK_AMD_SHADER_CORE_PROPERTIES_EXTENSION_NAME);
  void** tail = &sub.pNext;
  if (has_pci) {
    *tail = &pci;
    tail = &pci.pNext;
  }
  if (has_nv) {
    *tail = &nv;
    tail = &nv.pNext;
  }
  if (has_amd) *tail = &amd;
  a.vkGetPhysicalDeviceProperties2(h, &p2);
  const VkPhysicalDeviceProperties& p = p2.properties;

  DeviceInfo& d = pd.info;
  d.backend = "vulkan";
  d.vendor = vendor_name(p.vendorID);
  d.name = p.deviceName;
  d.architecture = std::string(type_name(p.deviceType)) + ", Vulkan " + api_string(p.apiVersion);
  d.device_type = type_name(p.deviceType);
  d.subgroup_size = int(sub.subgroupSize);
  d.driver_version = "driver " + driver_string(p.vendorID, p.driverVersion);
  d.runtime_version = "Vulkan " + api_string(p.apiVersion);
  if (has_pci) {
    char bus[32];
    std::snprintf(bus, sizeof bus, "%04x:%02x:%02x.%x", pci.pciDomain, pci.pciBus, pci.pciDevice, pci.pciFunction);
    d.pci_bus_id = bus;
  }
  pd.vendor_id = p.vendorID;
  pd.software = p.deviceType == VK_PHYSICAL_DEVICE_TYPE_CPU;
  pd.subgroup_size = sub.subgroupSize;
  pd.compute_shuffle = (sub.supportedStages & VK_SHADER_STAGE_COMPUTE_BIT) &&
                       (sub.supportedOperations & VK_SUBGROUP_FEATURE_SHUFFLE_BIT);
  pd.coop_matrix = coop_matrix_usable(inst, h, sub.subgroupSize);
  if (has_nv) {
    d.compute_units = int(nv.shaderSMCount);
  } else if (has_amd) {
    d.compute_units = int(amd.shaderEngineCount * amd.shaderArraysPerEngineCount * amd.computeUnitsPerShaderArray);
  } else if (pd.software) {
    // lavapipe runs LP_NUM_THREADS threads, by default one per hardware thread.
    const char* t = std::getenv("LP_NUM_THREADS");
    d.compute_units = t && std::atoi(t) > 0 ? std::atoi(t) : int(std::thread::hardware_concurrency());
  }
  pd.max_buffer_bytes = p.limits.maxStorageBufferRange;
  pd.max_shared_bytes = p.limits.maxComputeSharedMemorySize;
  for (int i = 0; i < 3; ++i) pd.max_groups[i] = p.limits.maxComputeWorkGroupCount[i];
  pd.has_memory_budget = has_extension(h, VK_EXT_MEMORY_BUDGET_EXTENSION_NAME);

  VkPhysicalDeviceMemoryProperties mp{};
  a.vkGetPhysicalDeviceMemoryProperties(h, &mp);
  for (uint32_t i = 0; i < mp.memoryHeapCount; ++i)
    if (mp.memoryHeaps[i].flags & VK_MEMORY_HEAP_DEVICE_LOCAL_BIT) d.total_memory += mp.memoryHeaps[i].size;
  d.free_memory = d.total_memory;

  uint32_t nf = 0;
  a.vkGetPhysicalDeviceQueueFamilyProperties(h, &nf, nullptr);
  std::vector<VkQueueFamilyProperties> fam(nf);
  a.vkGetPhysicalDeviceQueueFamilyProperties(h, &nf, fam.data());
  // A compute family without graphics (the dedicated async-compute queue) where there is one.
  int best = -1;
  for (uint32_t i = 0; i < nf; ++i) {
    if (!(fam[i].queueFlags & VK_QUEUE_COMPUTE_BIT)) continue;
    if (best < 0 || !(fam[i].queueFlags & VK_QUEUE_GRAPHICS_BIT)) best = int(i);
    if (!(fam[i].queueFlags & VK_QUEUE_GRAPHICS_BIT)) break;
  }
  pd.queue_family = best < 0 ? UINT32_MAX : uint32_t(best);
  if (best >= 0 && fam[std::size_t(best)].timestampValidBits != 0) pd.timestamp_period = p.limits.timestampPeriod;
  return pd;
}

Discovery make_discovery() {
  Discovery out;
  if (std::string why = load_global(); !why.empty()) {
    out.reason = why;
    return out;
  }
  const Api& a = api();
  uint32_t loader_version = VK_API_VERSION_1_0;
  if (a.vkEnumerateInstanceVersion) a.vkEnumerateInstanceVersion(&loader_version);
  if (loader_version < VK_API_VERSION_1_1) {
    out.reason = "the Vulkan loader is older than 1.1";
    return out;
  }
  VkApplicationInfo app{VK_STRUCTURE_TYPE_APPLICATION_INFO};
  app.pApplicationName = "hive-gpu";
  app.pEngineName = "hive-gpu";
  app.apiVersion = VK_API_VERSION_1_1;
  VkInstanceCreateInfo ci{VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO};
  ci.pApplicationInfo = &app;
  const VkResult r = a.vkCreateInstance(&ci, nullptr, &out.instance);
  if (r != VK_SUCCESS) {
    out.reason = std::string("vkCreateInstance failed: ") + result_name(r) + " (no Vulkan driver installed?)";
    out.instance = VK_NULL_HANDLE;
    return out;
  }
  load_instance(out.instance);
  uint32_t n = 0;
  a.vkEnumeratePhysicalDevices(out.instance, &n, nullptr);
  std::vector<VkPhysicalDevice> handles(n);
  a.vkEnumeratePhysicalDevices(out.instance, &n, handles.data());
  std::vector<PhysicalDevice> all;
  for (VkPhysicalDevice h : handles) {
    PhysicalDevice pd = describe(out.instance, h);
    VkPhysicalDeviceProperties p{};
    a.vkGetPhysicalDeviceProperties(h, &p);
    if (p.apiVersion < VK_API_VERSION_1_1 || pd.queue_family == UINT32_MAX) continue;  // too old / no compute
    all.push_back(std::move(pd));
  }
  // HIVE_GPU_VULKAN_DEVICE: an index into this list, or part of a device name.
  if (const char* sel = std::getenv("HIVE_GPU_VULKAN_DEVICE"); sel && *sel) {
    const std::string s = sel;
    std::vector<PhysicalDevice> picked;
    std::size_t idx = 0;
    const auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), idx);
    if (ec == std::errc() && p == s.data() + s.size()) {
      if (idx < all.size()) picked.push_back(all[idx]);
    } else {
      for (const auto& d : all)
        if (lower(d.info.name).find(lower(s)) != std::string::npos) picked.push_back(d);
    }
    if (picked.empty())
      out.reason = "HIVE_GPU_VULKAN_DEVICE=" + s + " matches none of the " + std::to_string(all.size()) +
                   " Vulkan device(s)";
    all = std::move(picked);
  } else if (all.empty()) {
    out.reason = n == 0 ? "no Vulkan device: the loader found no driver (Debian: mesa-vulkan-drivers for lavapipe)"
                        : "no Vulkan 1.1 device with a compute queue";
  }
  for (std::size_t i = 0; i < all.size(); ++i) all[i].info.ordinal = int(i);
  out.devices = std::move(all);
  return out;
}

}  // namespace

const Discovery& discover() {
  static const Discovery d = [] {
    try {
      return make_discovery();
    } catch (const std::exception& e) {
      Discovery bad;
      bad.reason = std::string("Vulkan discovery failed: ") + e.what();
      return bad;
    }
  }();
  return d;
}

// ---- Buffer --------------------------------------------------------------------------------
Buffer::Buffer(Gpu& gpu, VkDeviceSize bytes, Memory kind) : gpu_(&gpu), size_(bytes) {
  const Api& a = api();
  VkBufferCreateInfo bi{VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO};
  bi.size = std::max<VkDeviceSize>(bytes, 16);
  bi.usage = VK_BUFFER_USAGE_STORAGE_BUFFER_BIT | VK_BUFFER_USAGE_TRANSFER_SRC_BIT | VK_BUFFER_USAGE_TRANSFER_DST_BIT;
  bi.sharingMode = VK_SHARING_MODE_EXCLUSIVE;
  check(a.vkCreateBuffer(gpu.device(), &bi, nullptr, &buf_), "vkCreateBuffer");
  VkMemoryRequirements req{};
  a.vkGetBufferMemoryRequirements(gpu.device(), buf_, &req);
  VkMemoryAllocateInfo ai{VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO};
  ai.allocationSize = req.size;
  ai.memoryTypeIndex = gpu.memory_type(req.memoryTypeBits, kind);
  VkResult r = a.vkAllocateMemory(gpu.device(), &ai, nullptr, &mem_);
  if (r != VK_SUCCESS) {
    a.vkDestroyBuffer(gpu.device(), buf_, nullptr);
    buf_ = VK_NULL_HANDLE;
    check(r, "vkAllocateMemory");
  }
  r = a.vkBindBufferMemory(gpu.device(), buf_, mem_, 0);
  if (r == VK_SUCCESS && kind != Memory::Device) r = a.vkMapMemory(gpu.device(), mem_, 0, VK_WHOLE_SIZE, 0, &mapped_);
  if (r != VK_SUCCESS) {
    release();
    check(r, "vkBindBufferMemory / vkMapMemory");
  }
}

Buffer& Buffer::operator=(Buffer&& o) noexcept {
  if (this != &o) {
    release();
    gpu_ = o.gpu_;
    buf_ = o.buf_;
    mem_ = o.mem_;
    size_ = o.size_;
    mapped_ = o.mapped_;
    o.buf_ = VK_NULL_HANDLE;
    o.mem_ = VK_NULL_HANDLE;
    o.size_ = 0;
    o.mapped_ = nullptr;
  }
  return *this;
}

void Buffer::release() noexcept {
  if (!gpu_) return;
  const Api& a = api();
  if (buf_) a.vkDestroyBuffer(gpu_->device(), buf_, nullptr);
  if (mem_) a.vkFreeMemory(gpu_->device(), mem_, nullptr);  // unmaps implicitly
  buf_ = VK_NULL_HANDLE;
  mem_ = VK_NULL_HANDLE;
  mapped_ = nullptr;
  size_ = 0;
}

// ---- Gpu -----------------------------------------------------------------------------------
Gpu::Gpu(const PhysicalDevice& pd) : pd_(pd) {
  const Api& a = api();
  const float prio = 1.0f;
  VkDeviceQueueCreateInfo qi{VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO};
  qi.queueFamilyIndex = pd.queue_family;
  qi.queueCount = 1;
  qi.pQueuePriorities = &prio;
  std::vector<const char*> ext;
  if (pd.has_memory_budget) ext.push_back(VK_EXT_MEMORY_BUDGET_EXTENSION_NAME);
  VkDeviceCreateInfo di{VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO};
  // The cooperative-matrix shaders' features (see coop_matrix_usable).
  VkPhysicalDeviceCooperativeMatrixFeaturesNV cm{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_COOPERATIVE_MATRIX_FEATURES_NV};
  VkPhysicalDeviceShaderFloat16Int8FeaturesKHR f16{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SHADER_FLOAT16_INT8_FEATURES_KHR};
  VkPhysicalDeviceVulkanMemoryModelFeaturesKHR mm{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_MEMORY_MODEL_FEATURES_KHR};
  if (pd.coop_matrix) {
    ext.push_back(VK_NV_COOPERATIVE_MATRIX_EXTENSION_NAME);
    ext.push_back(VK_KHR_SHADER_FLOAT16_INT8_EXTENSION_NAME);
    ext.push_back(VK_KHR_VULKAN_MEMORY_MODEL_EXTENSION_NAME);
    cm.cooperativeMatrix = VK_TRUE;
    f16.shaderFloat16 = VK_TRUE;
    mm.vulkanMemoryModel = VK_TRUE;
    cm.pNext = &f16;
    f16.pNext = &mm;
    di.pNext = &cm;
  }
  di.queueCreateInfoCount = 1;
  di.pQueueCreateInfos = &qi;
  di.enabledExtensionCount = uint32_t(ext.size());
  di.ppEnabledExtensionNames = ext.data();
  check(a.vkCreateDevice(pd.handle, &di, nullptr, &dev_), "vkCreateDevice");
  a.vkGetDeviceQueue(dev_, pd.queue_family, 0, &queue_);
  a.vkGetPhysicalDeviceMemoryProperties(pd.handle, &mem_props_);

  VkDescriptorSetLayoutBinding b[kBindings]{};
  for (uint32_t i = 0; i < kBindings; ++i) {
    b[i].binding = i;
    b[i].descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER;
    b[i].descriptorCount = 1;
    b[i].stageFlags = VK_SHADER_STAGE_COMPUTE_BIT;
  }
  VkDescriptorSetLayoutCreateInfo li{VK_STRUCTURE_TYPE_DESCRIPTOR_SET_LAYOUT_CREATE_INFO};
  li.bindingCount = kBindings;
  li.pBindings = b;
  check(a.vkCreateDescriptorSetLayout(dev_, &li, nullptr, &set_layout_), "vkCreateDescriptorSetLayout");
  VkPushConstantRange pr{VK_SHADER_STAGE_COMPUTE_BIT, 0, kPushBytes};
  VkPipelineLayoutCreateInfo pi{VK_STRUCTURE_TYPE_PIPELINE_LAYOUT_CREATE_INFO};
  pi.setLayoutCount = 1;
  pi.pSetLayouts = &set_layout_;
  pi.pushConstantRangeCount = 1;
  pi.pPushConstantRanges = &pr;
  check(a.vkCreatePipelineLayout(dev_, &pi, nullptr, &layout_), "vkCreatePipelineLayout");
}

Gpu::~Gpu() {
  const Api& a = api();
  a.vkDeviceWaitIdle(dev_);
  for (auto& [key, p] : pipelines_) a.vkDestroyPipeline(dev_, p, nullptr);
  a.vkDestroyPipelineLayout(dev_, layout_, nullptr);
  a.vkDestroyDescriptorSetLayout(dev_, set_layout_, nullptr);
  a.vkDestroyDevice(dev_, nullptr);
}

namespace {
constexpr VkMemoryPropertyFlags kHostCoherent = VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT | VK_MEMORY_PROPERTY_HOST_COHERENT_BIT;
}

int Gpu::find_memory_type(uint32_t bits, VkMemoryPropertyFlags want) const {
  for (uint32_t i = 0; i < mem_props_.memoryTypeCount; ++i)
    if ((bits & (1u << i)) && (mem_props_.memoryTypes[i].propertyFlags & want) == want) return int(i);
  return -1;
}

uint32_t Gpu::memory_type(uint32_t bits, Memory kind) const {
  const VkMemoryPropertyFlags host = kHostCoherent;
  auto find = [&](VkMemoryPropertyFlags want) { return find_memory_type(bits, want); };
  int t = -1;
  if (kind == Memory::Device) {
    t = find(VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT);
  } else if (kind == Memory::Readback) {
    t = find(host | VK_MEMORY_PROPERTY_HOST_CACHED_BIT);
    if (t < 0) t = find(host);
  } else if (kind == Memory::Mapped) {
    t = find(host | VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT);
    if (t < 0) t = find(host);
  } else {
    t = find(host);
  }
  if (t < 0) t = find(0);
  if (t < 0) throw Error(ErrorCode::Internal, "Vulkan: no memory type fits the buffer");
  return uint32_t(t);
}

bool Gpu::has_mapped_memory() const {
  return find_memory_type(~0u, kHostCoherent | VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT) >= 0;
}

uint64_t Gpu::free_memory() const {
  if (!pd_.has_memory_budget) return pd_.info.total_memory;
  VkPhysicalDeviceMemoryBudgetPropertiesEXT budget{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_MEMORY_BUDGET_PROPERTIES_EXT};
  VkPhysicalDeviceMemoryProperties2 mp{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_MEMORY_PROPERTIES_2};
  mp.pNext = &budget;
  api().vkGetPhysicalDeviceMemoryProperties2(pd_.handle, &mp);
  uint64_t free_b = 0;
  for (uint32_t i = 0; i < mp.memoryProperties.memoryHeapCount; ++i)
    if (mp.memoryProperties.memoryHeaps[i].flags & VK_MEMORY_HEAP_DEVICE_LOCAL_BIT)
      free_b += budget.heapBudget[i] > budget.heapUsage[i] ? budget.heapBudget[i] - budget.heapUsage[i] : 0;
  return free_b;
}

VkPipeline Gpu::pipeline(Shader shader, const std::vector<int32_t>& spec) {
  std::lock_guard<std::mutex> lock(pipe_mu_);
  auto key = std::make_pair(int(shader), spec);
  if (auto it = pipelines_.find(key); it != pipelines_.end()) return it->second;
  const Api& a = api();
  const Spirv code = spirv(shader);
  VkShaderModuleCreateInfo mi{VK_STRUCTURE_TYPE_SHADER_MODULE_CREATE_INFO};
  mi.codeSize = code.bytes;
  mi.pCode = code.words;
  VkShaderModule mod = VK_NULL_HANDLE;
  check(a.vkCreateShaderModule(dev_, &mi, nullptr, &mod), "vkCreateShaderModule");
  std::vector<VkSpecializationMapEntry> entries(spec.size());
  for (std::size_t i = 0; i < spec.size(); ++i) entries[i] = {uint32_t(i), uint32_t(i * 4), 4};
  VkSpecializationInfo si{uint32_t(entries.size()), entries.data(), spec.size() * 4, spec.data()};
  VkComputePipelineCreateInfo ci{VK_STRUCTURE_TYPE_COMPUTE_PIPELINE_CREATE_INFO};
  ci.stage = {VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_CREATE_INFO};
  ci.stage.stage = VK_SHADER_STAGE_COMPUTE_BIT;
  ci.stage.module = mod;
  ci.stage.pName = "main";
  ci.stage.pSpecializationInfo = &si;
  ci.layout = layout_;
  VkPipeline p = VK_NULL_HANDLE;
  const VkResult r = a.vkCreateComputePipelines(dev_, VK_NULL_HANDLE, 1, &ci, nullptr, &p);
  a.vkDestroyShaderModule(dev_, mod, nullptr);
  check(r, "vkCreateComputePipelines");
  pipelines_.emplace(std::move(key), p);
  return p;
}

void Gpu::submit(VkCommandBuffer cb, VkFence fence) {
  VkSubmitInfo si{VK_STRUCTURE_TYPE_SUBMIT_INFO};
  si.commandBufferCount = 1;
  si.pCommandBuffers = &cb;
  std::lock_guard<std::mutex> lock(queue_mu_);
  check(api().vkQueueSubmit(queue_, 1, &si, fence), "vkQueueSubmit");
}

// ---- Stream --------------------------------------------------------------------------------
namespace {
constexpr uint32_t kSetsPerPool = 256;
constexpr uint32_t kMaxStamps = 2 * kSetsPerPool + 8;  // a command buffer holds at most kSetsPerPool dispatches
}

Stream::Stream(Gpu& gpu) : gpu_(gpu) {
  const Api& a = api();
  VkDevice d = gpu.device();
  VkCommandPoolCreateInfo pi{VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO};
  pi.flags = VK_COMMAND_POOL_CREATE_RESET_COMMAND_BUFFER_BIT;
  pi.queueFamilyIndex = gpu.queue_family();
  check(a.vkCreateCommandPool(d, &pi, nullptr, &pool_), "vkCreateCommandPool");
  VkCommandBufferAllocateInfo ai{VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO};
  ai.commandPool = pool_;
  ai.level = VK_COMMAND_BUFFER_LEVEL_PRIMARY;
  ai.commandBufferCount = 1;
  check(a.vkAllocateCommandBuffers(d, &ai, &cb_), "vkAllocateCommandBuffers");
  VkFenceCreateInfo fi{VK_STRUCTURE_TYPE_FENCE_CREATE_INFO};
  check(a.vkCreateFence(d, &fi, nullptr, &fence_), "vkCreateFence");
  VkDescriptorPoolSize ps{VK_DESCRIPTOR_TYPE_STORAGE_BUFFER, kSetsPerPool * kBindings};
  VkDescriptorPoolCreateInfo dp{VK_STRUCTURE_TYPE_DESCRIPTOR_POOL_CREATE_INFO};
  dp.maxSets = kSetsPerPool;
  dp.poolSizeCount = 1;
  dp.pPoolSizes = &ps;
  check(a.vkCreateDescriptorPool(d, &dp, nullptr, &dpool_), "vkCreateDescriptorPool");
  sets_left_ = kSetsPerPool;
  if (detail::env_flag("HIVE_GPU_VULKAN_PROFILE") && gpu.physical().timestamp_period > 0.0f) {
    VkQueryPoolCreateInfo qi{VK_STRUCTURE_TYPE_QUERY_POOL_CREATE_INFO};
    qi.queryType = VK_QUERY_TYPE_TIMESTAMP;
    qi.queryCount = kMaxStamps;
    check(a.vkCreateQueryPool(d, &qi, nullptr, &stamps_), "vkCreateQueryPool");
  }
}

Stream::~Stream() {
  const Api& a = api();
  VkDevice d = gpu_.device();
  if (in_flight_) (void)a.vkWaitForFences(d, 1, &fence_, VK_TRUE, UINT64_MAX);
  if (recording_) {
    // Never submitted: nothing to wait for.
    a.vkEndCommandBuffer(cb_);
  }
  a.vkDestroyDescriptorPool(d, dpool_, nullptr);
  if (stamps_ != VK_NULL_HANDLE) a.vkDestroyQueryPool(d, stamps_, nullptr);
  a.vkDestroyFence(d, fence_, nullptr);
  a.vkDestroyCommandPool(d, pool_, nullptr);
}

void Stream::begin_if_needed() {
  if (recording_) return;
  wait();  // the command buffer may still be executing
  VkCommandBufferBeginInfo bi{VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO};
  bi.flags = VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT;
  check(api().vkBeginCommandBuffer(cb_, &bi), "vkBeginCommandBuffer");
  recording_ = true;
  pending_barrier_ = false;
  if (stamps_ != VK_NULL_HANDLE) {
    api().vkCmdResetQueryPool(cb_, stamps_, 0, kMaxStamps);
    stamps_used_ = 0;
    stamp_labels_.clear();
    stamp("begin", 0, 0);
  }
}

void Stream::stamp(const char* what, uint32_t x, uint32_t y) {
  if (stamps_ == VK_NULL_HANDLE || stamps_used_ >= kMaxStamps) return;
  api().vkCmdWriteTimestamp(cb_, VK_PIPELINE_STAGE_BOTTOM_OF_PIPE_BIT, stamps_, stamps_used_++);
  stamp_labels_.push_back(std::string(what) + " " + std::to_string(x) + "x" + std::to_string(y));
}

void Stream::print_profile() {
  if (stamps_ == VK_NULL_HANDLE || stamps_used_ < 2) return;
  const double host_us =
      std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - submitted_).count();
  std::vector<uint64_t> t(stamps_used_);
  const VkResult r = api().vkGetQueryPoolResults(gpu_.device(), stamps_, 0, stamps_used_, t.size() * 8, t.data(), 8,
                                                 VK_QUERY_RESULT_64_BIT | VK_QUERY_RESULT_WAIT_BIT);
  if (r != VK_SUCCESS) return;
  const double ns = gpu_.physical().timestamp_period;
  std::string line = "vk-profile: submit-to-signal " + std::to_string(int(host_us)) + " us, gpu " +
                     std::to_string(int(double(t.back() - t.front()) * ns / 1000)) + " us:";
  for (uint32_t i = 1; i < stamps_used_; ++i) {
    char buf[96];
    std::snprintf(buf, sizeof buf, " [%s %.1f]", stamp_labels_[i].c_str(), double(t[i] - t[i - 1]) * ns / 1000);
    line += buf;
  }
  std::fprintf(stderr, "%s\n", line.c_str());
}

void Stream::barrier() {
  if (!pending_barrier_) return;
  VkMemoryBarrier mb{VK_STRUCTURE_TYPE_MEMORY_BARRIER};
  mb.srcAccessMask = VK_ACCESS_SHADER_WRITE_BIT | VK_ACCESS_TRANSFER_WRITE_BIT;
  mb.dstAccessMask = VK_ACCESS_SHADER_READ_BIT | VK_ACCESS_SHADER_WRITE_BIT | VK_ACCESS_TRANSFER_READ_BIT |
                     VK_ACCESS_TRANSFER_WRITE_BIT;
  const VkPipelineStageFlags stages = VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | VK_PIPELINE_STAGE_TRANSFER_BIT;
  api().vkCmdPipelineBarrier(cb_, stages, stages, 0, 1, &mb, 0, nullptr, 0, nullptr);
  pending_barrier_ = false;
}

void Stream::dispatch(VkPipeline pipe, const Bindings& b, const void* push, uint32_t push_bytes, uint32_t gx,
                      uint32_t gy, uint32_t gz) {
  if (gx == 0 || gy == 0 || gz == 0) return;
  if (b.empty() || b.size() > kBindings || push_bytes > kPushBytes)
    throw Error(ErrorCode::Internal, "Vulkan: bad dispatch arguments");
  const Api& a = api();
  if (sets_left_ == 0) run();  // frees the pool's sets once their work is done
  begin_if_needed();
  VkDescriptorSet set = VK_NULL_HANDLE;
  VkDescriptorSetLayout layout = gpu_.set_layout();
  VkDescriptorSetAllocateInfo ai{VK_STRUCTURE_TYPE_DESCRIPTOR_SET_ALLOCATE_INFO};
  ai.descriptorPool = dpool_;
  ai.descriptorSetCount = 1;
  ai.pSetLayouts = &layout;
  check(a.vkAllocateDescriptorSets(gpu_.device(), &ai, &set), "vkAllocateDescriptorSets");
  --sets_left_;
  VkDescriptorBufferInfo infos[kBindings];
  VkWriteDescriptorSet writes[kBindings];
  for (uint32_t i = 0; i < kBindings; ++i) {
    const Buffer* buf = b[std::min<std::size_t>(i, b.size() - 1)];  // unused bindings repeat the last
    infos[i] = {buf->handle(), 0, VK_WHOLE_SIZE};
    writes[i] = {VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET};
    writes[i].dstSet = set;
    writes[i].dstBinding = i;
    writes[i].descriptorCount = 1;
    writes[i].descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER;
    writes[i].pBufferInfo = &infos[i];
  }
  a.vkUpdateDescriptorSets(gpu_.device(), kBindings, writes, 0, nullptr);
  barrier();
  a.vkCmdBindPipeline(cb_, VK_PIPELINE_BIND_POINT_COMPUTE, pipe);
  a.vkCmdBindDescriptorSets(cb_, VK_PIPELINE_BIND_POINT_COMPUTE, gpu_.layout(), 0, 1, &set, 0, nullptr);
  if (push_bytes) a.vkCmdPushConstants(cb_, gpu_.layout(), VK_SHADER_STAGE_COMPUTE_BIT, 0, push_bytes, push);
  a.vkCmdDispatch(cb_, gx, gy, gz);
  pending_barrier_ = true;
  stamp("dispatch", gx, gy);
}

void Stream::copy(const Buffer& src, VkDeviceSize src_off, const Buffer& dst, VkDeviceSize dst_off,
                  VkDeviceSize bytes) {
  if (bytes == 0) return;
  begin_if_needed();
  barrier();
  VkBufferCopy c{src_off, dst_off, bytes};
  api().vkCmdCopyBuffer(cb_, src.handle(), dst.handle(), 1, &c);
  pending_barrier_ = true;
  stamp("copy", uint32_t(bytes), 1);
}

void Stream::copy_regions(const Buffer& src, const Buffer& dst, const std::vector<VkBufferCopy>& regions) {
  if (regions.empty()) return;
  begin_if_needed();
  barrier();
  api().vkCmdCopyBuffer(cb_, src.handle(), dst.handle(), uint32_t(regions.size()), regions.data());
  pending_barrier_ = true;
  stamp("copies", uint32_t(regions.size()), 1);
}

void Stream::fill(const Buffer& dst, VkDeviceSize off, VkDeviceSize bytes, uint32_t value) {
  if (bytes == 0) return;
  begin_if_needed();
  barrier();
  api().vkCmdFillBuffer(cb_, dst.handle(), off, bytes, value);
  pending_barrier_ = true;
  stamp("fill", uint32_t(bytes), 1);
}

void Stream::submit() {
  if (!recording_) return;
  const Api& a = api();
  // Make device writes visible to the host (readback buffers are read right after).
  VkMemoryBarrier mb{VK_STRUCTURE_TYPE_MEMORY_BARRIER};
  mb.srcAccessMask = VK_ACCESS_SHADER_WRITE_BIT | VK_ACCESS_TRANSFER_WRITE_BIT;
  mb.dstAccessMask = VK_ACCESS_HOST_READ_BIT;
  a.vkCmdPipelineBarrier(cb_, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | VK_PIPELINE_STAGE_TRANSFER_BIT,
                         VK_PIPELINE_STAGE_HOST_BIT, 0, 1, &mb, 0, nullptr, 0, nullptr);
  recording_ = false;
  check(a.vkEndCommandBuffer(cb_), "vkEndCommandBuffer");
  submitted_ = std::chrono::steady_clock::now();
  gpu_.submit(cb_, fence_);
  in_flight_ = true;
}

void Stream::wait() {
  if (!in_flight_) return;
  in_flight_ = false;
  const Api& a = api();
  VkDevice d = gpu_.device();
  // Poll first: a blocking wait on some drivers (NVIDIA's) sleeps and wakes tens of
  // microseconds late, which a single query would pay in full. Block after ~2 ms.
  VkResult r = VK_NOT_READY;
  const auto t0 = std::chrono::steady_clock::now();
  while (r == VK_NOT_READY && std::chrono::steady_clock::now() - t0 < std::chrono::milliseconds(2))
    r = a.vkGetFenceStatus(d, fence_);
  if (r == VK_NOT_READY) r = a.vkWaitForFences(d, 1, &fence_, VK_TRUE, UINT64_MAX);
  check(a.vkResetFences(d, 1, &fence_), "vkResetFences");
  check(r, "vkWaitForFences");
  print_profile();
  check(a.vkResetCommandBuffer(cb_, 0), "vkResetCommandBuffer");
  check(a.vkResetDescriptorPool(d, dpool_, 0), "vkResetDescriptorPool");
  sets_left_ = kSetsPerPool;
}

}  // namespace hive::gpu::vk
