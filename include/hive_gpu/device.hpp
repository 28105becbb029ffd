// hive-gpu: what a backend reports about each device it can run on.
#pragma once
#include <cstdint>
#include <string>

namespace hive::gpu {

struct DeviceInfo {
  std::string backend;       // "cpu", "cuda", "hip", "vulkan", "metal"
  int ordinal = 0;           // index among this backend's devices
  std::string vendor;        // "NVIDIA", "AMD", "Intel", "Apple", CPU vendor string
  std::string name;          // marketing name, or CPU model name
  std::string architecture;  // "sm_90", "gfx90a", "x86-64", ...
  // "discrete-gpu", "integrated-gpu", "virtual-gpu" or "cpu" (the CPU backend, and CPU
  // implementations of a GPU API such as Mesa's lavapipe, which "auto" passes over).
  std::string device_type;
  int compute_major = 0;     // compute capability (CUDA) or 0
  int compute_minor = 0;
  int compute_units = 0;     // SMs, CUs, execution units or CPU threads
  int subgroup_size = 0;     // warp / wavefront / subgroup width; SIMD float lanes on the CPU
  std::string simd;          // CPU: "scalar", "avx2", "avx512"; empty on GPUs
  uint64_t total_memory = 0; // bytes (device memory, or system RAM for the CPU)
  uint64_t free_memory = 0;  // bytes available now
  std::string driver_version;
  std::string runtime_version;
  std::string pci_bus_id;    // "0000:65:00.0" where known

  // "cuda:0", "cpu:0": the name Context::open accepts for this device.
  std::string id() const { return backend + ":" + std::to_string(ordinal); }
  double memory_usage_percent() const {
    return total_memory == 0 ? 0.0 : 100.0 * double(total_memory - free_memory) / double(total_memory);
  }
  bool has_free_memory(uint64_t bytes) const { return free_memory >= bytes; }
};

// One line per backend known to this build, present or not, for `hive-gpu info`.
struct BackendStatus {
  std::string name;        // "cpu", "cuda", ...
  bool compiled = false;   // built into this library
  bool available = false;  // at least one device found
  int device_count = 0;
  std::string reason;      // why not available ("not compiled in", "no CUDA device", ...)
};

}  // namespace hive::gpu
