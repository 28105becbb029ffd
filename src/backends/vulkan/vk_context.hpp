// Vulkan backend: the instance, physical-device discovery, one logical device per physical device
// (compute queue only), buffers, cached compute pipelines and a command stream that records
// dispatches and copies and runs them to completion.
#pragma once
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "backends/vulkan/vk_api.hpp"
#include "hive_gpu/device.hpp"

namespace hive::gpu::vk {

// What discovery learnt about one physical device.
struct PhysicalDevice {
  VkPhysicalDevice handle = VK_NULL_HANDLE;
  DeviceInfo info;
  uint32_t queue_family = 0;
  uint32_t vendor_id = 0;                 // 0x10DE NVIDIA, 0x1002 AMD, 0x8086 Intel
  bool software = false;                  // VK_PHYSICAL_DEVICE_TYPE_CPU (lavapipe, SwiftShader)
  VkDeviceSize max_buffer_bytes = 0;      // largest storage buffer a binding may cover
  uint32_t max_shared_bytes = 0;          // maxComputeSharedMemorySize
  uint32_t max_groups[3] = {0, 0, 0};     // maxComputeWorkGroupCount
  bool has_memory_budget = false;         // VK_EXT_memory_budget
  uint32_t subgroup_size = 0;
  bool compute_shuffle = false;           // subgroupShuffleXor in compute shaders
  float timestamp_period = 0.0f;          // ns per timestamp tick (0: the queue has no timestamps)
  // VK_NV_cooperative_matrix with 16 x 8 x 16 fp16 products and fp32 sums on 32-wide subgroups,
  // and the features its shaders need (fp16 arithmetic, the Vulkan memory model): the logical
  // device enables them all (batch_screen.comp's COOP variant).
  bool coop_matrix = false;
};

// The process-wide instance and its devices, filtered by HIVE_GPU_VULKAN_DEVICE (an index
// into the full list, or a case-insensitive part of the device name). Built once; throws
// Error(DeviceUnavailable) with the reason when there is no loader, no driver or no device.
struct Discovery {
  VkInstance instance = VK_NULL_HANDLE;
  std::vector<PhysicalDevice> devices;
  std::string reason;  // why `devices` is empty
};
const Discovery& discover();

class Gpu;

// A buffer and its own memory. Device buffers live in device-local memory; Upload and
// Readback buffers are host-visible, coherent and mapped for their whole life; Mapped buffers
// are device-local and mapped too, where the device has such memory (Gpu::has_mapped_memory:
// a resizable BAR, or a CPU device), else as Upload.
enum class Memory { Device, Upload, Readback, Mapped };

class Buffer {
 public:
  Buffer() = default;
  Buffer(Gpu& gpu, VkDeviceSize bytes, Memory kind);
  Buffer(Buffer&& o) noexcept { *this = std::move(o); }
  Buffer& operator=(Buffer&& o) noexcept;
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  ~Buffer() { release(); }

  VkBuffer handle() const { return buf_; }
  VkDeviceSize size() const { return size_; }
  bool empty() const { return buf_ == VK_NULL_HANDLE; }
  void* mapped() const { return mapped_; }  // Upload / Readback only
  template <class T>
  T* as() const { return static_cast<T*>(mapped_); }

 private:
  void release() noexcept;
  Gpu* gpu_ = nullptr;
  VkBuffer buf_ = VK_NULL_HANDLE;
  VkDeviceMemory mem_ = VK_NULL_HANDLE;
  VkDeviceSize size_ = 0;
  void* mapped_ = nullptr;
};

// The compute shaders compiled into the library (SPIR-V embedded at build time).
enum class Shader {
  ScanSelect,
  ScanSelectCoop,
  MergeSelect,
  DistanceTile,
  EncodeHalf,
  ScreenFinish,
  ScreenFinishLists,
  MergeLists,
  BatchScreen,
  BatchScreenCoop,  // needs PhysicalDevice::coop_matrix
  Rescore,
  RowNorms,
  GatherRows,
  ScanLists  // 32-wide subgroups with shuffles only
};

// Every pipeline shares one layout: kBindings storage buffers and kPushBytes of push constants.
inline constexpr uint32_t kBindings = 6;
inline constexpr uint32_t kPushBytes = 64;

// One logical device: its queue (guarded by a mutex: several stores may submit at once) and
// its pipeline cache, keyed by shader and specialisation constants.
class Gpu {
 public:
  explicit Gpu(const PhysicalDevice& pd);
  ~Gpu();
  Gpu(const Gpu&) = delete;
  Gpu& operator=(const Gpu&) = delete;

  const PhysicalDevice& physical() const { return pd_; }
  VkDevice device() const { return dev_; }
  VkPipelineLayout layout() const { return layout_; }
  VkDescriptorSetLayout set_layout() const { return set_layout_; }
  uint32_t queue_family() const { return pd_.queue_family; }
  // The pipeline of `shader` with these constant_id 0..n-1 values (built on first use).
  VkPipeline pipeline(Shader shader, const std::vector<int32_t>& spec);
  // Submits one command buffer and signals `fence`.
  void submit(VkCommandBuffer cb, VkFence fence);
  // Memory type for a buffer: device-local, or host-visible + coherent (cached preferred for readback).
  uint32_t memory_type(uint32_t type_bits, Memory kind) const;
  // Whether some memory is device-local, host-visible and coherent (Memory::Mapped).
  bool has_mapped_memory() const;
  // Bytes free on the device-local heaps (VK_EXT_memory_budget), or their size without it.
  uint64_t free_memory() const;

 private:
  PhysicalDevice pd_;
  VkDevice dev_ = VK_NULL_HANDLE;
  VkQueue queue_ = VK_NULL_HANDLE;
  std::mutex queue_mu_;
  VkDescriptorSetLayout set_layout_ = VK_NULL_HANDLE;
  VkPipelineLayout layout_ = VK_NULL_HANDLE;
  VkPhysicalDeviceMemoryProperties mem_props_{};
  // The first memory type among `bits` with every flag of `want`, or -1.
  int find_memory_type(uint32_t bits, VkMemoryPropertyFlags want) const;
  std::mutex pipe_mu_;
  std::map<std::pair<int, std::vector<int32_t>>, VkPipeline> pipelines_;
};

// A storage-buffer binding: the whole buffer (offsets travel in push constants).
using Bindings = std::vector<const Buffer*>;

// Records work into one command buffer; run() submits it and waits (or submit() now, wait()
// later: two streams can then overlap host work with device work). Between recorded commands
// a full compute/transfer barrier is inserted, so each command sees the previous one's writes.
// Descriptor sets come from the stream's pool; when it runs dry the recorded work is run first.
class Stream {
 public:
  explicit Stream(Gpu& gpu);
  ~Stream();
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;

  void dispatch(VkPipeline pipe, const Bindings& b, const void* push, uint32_t push_bytes, uint32_t gx,
                uint32_t gy = 1, uint32_t gz = 1);
  void copy(const Buffer& src, VkDeviceSize src_off, const Buffer& dst, VkDeviceSize dst_off, VkDeviceSize bytes);
  // Many regions of one buffer into another, in one command (they must not overlap in dst).
  void copy_regions(const Buffer& src, const Buffer& dst, const std::vector<VkBufferCopy>& regions);
  // Fills `bytes` (a multiple of 4) at `off` with the 32-bit pattern `value`.
  void fill(const Buffer& dst, VkDeviceSize off, VkDeviceSize bytes, uint32_t value);
  // Submits what is recorded and waits for it (no-op when nothing is).
  void run() {
    submit();
    wait();
  }
  // Submits what is recorded without waiting (no-op when nothing is); the next recording, or
  // wait(), waits for it first.
  void submit();
  // Waits for the last submission, if one is in flight.
  void wait();
  Gpu& gpu() const { return gpu_; }

 private:
  void begin_if_needed();
  void barrier();
  // HIVE_GPU_VULKAN_PROFILE=1: a timestamp after each command; wait() prints each command's GPU
  // time (from the previous timestamp: its barrier included) and the host's submit-to-signal
  // time to stderr. For finding where a search's time goes on a driver without other tools.
  void stamp(const char* what, uint32_t a, uint32_t b);
  void print_profile();
  VkQueryPool stamps_ = VK_NULL_HANDLE;
  uint32_t stamps_used_ = 0;
  std::vector<std::string> stamp_labels_;
  std::chrono::steady_clock::time_point submitted_{};
  Gpu& gpu_;
  VkCommandPool pool_ = VK_NULL_HANDLE;
  VkCommandBuffer cb_ = VK_NULL_HANDLE;
  VkFence fence_ = VK_NULL_HANDLE;
  VkDescriptorPool dpool_ = VK_NULL_HANDLE;
  uint32_t sets_left_ = 0;
  bool recording_ = false;
  bool pending_barrier_ = false;
  bool in_flight_ = false;
};

}  // namespace hive::gpu::vk
