// The CPU backend: always present; describes the processor and makes CPU flat stores.
#include <sys/utsname.h>
#include <unistd.h>

#include <fstream>
#include <string>
#include <thread>

#include "backends/cpu/cpu_flat_store.hpp"
#include "backends/cpu/kernels.hpp"
#include "backends/cpu/thread_pool.hpp"
#include "core/backend.hpp"

#ifdef HIVE_GPU_WITH_BLAS
extern "C" char* openblas_get_config(void);
#endif

namespace hive::gpu::cpu {

namespace {

std::string cpuinfo_field(const std::string& key) {
  std::ifstream in("/proc/cpuinfo");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind(key, 0) != 0) continue;
    auto colon = line.find(':');
    if (colon == std::string::npos) continue;
    auto v = line.substr(colon + 1);
    v.erase(0, v.find_first_not_of(" \t"));
    return v;
  }
  return {};
}

uint64_t meminfo_kib(const std::string& key) {
  std::ifstream in("/proc/meminfo");
  for (std::string name; in >> name;) {
    uint64_t value = 0;
    in >> value;
    if (name == key + ":") return value;
    in.ignore(1 << 10, '\n');
  }
  return 0;
}

DeviceInfo describe_cpu() {
  DeviceInfo d;
  d.backend = "cpu";
  d.ordinal = 0;
  const std::string vendor = cpuinfo_field("vendor_id");
  d.vendor = vendor == "AuthenticAMD" ? "AMD" : vendor == "GenuineIntel" ? "Intel" : vendor;
  d.name = cpuinfo_field("model name");
  if (d.name.empty()) d.name = "CPU";
#if defined(__x86_64__)
  d.architecture = "x86-64";
#elif defined(__aarch64__)
  d.architecture = "aarch64";
#else
  d.architecture = "unknown";
#endif
  d.compute_units = ThreadPool::instance().size();
  const SimdLevel level = best_simd_level();
  d.simd = to_string(level);
  d.device_type = "cpu";
  d.subgroup_size = level == SimdLevel::AVX512 ? 16 : level == SimdLevel::AVX2 ? 8 : 1;
  d.total_memory = meminfo_kib("MemTotal") * 1024;
  d.free_memory = meminfo_kib("MemAvailable") * 1024;
  if (d.total_memory == 0) {
    d.total_memory = uint64_t(sysconf(_SC_PHYS_PAGES)) * uint64_t(sysconf(_SC_PAGE_SIZE));
    d.free_memory = uint64_t(sysconf(_SC_AVPHYS_PAGES)) * uint64_t(sysconf(_SC_PAGE_SIZE));
  }
  utsname u{};
  if (uname(&u) == 0) d.driver_version = std::string(u.sysname) + " " + u.release;
#ifdef HIVE_GPU_WITH_BLAS
  d.runtime_version = openblas_get_config();
#else
  d.runtime_version = "no BLAS";
#endif
  return d;
}

class CpuDevice final : public detail::Device {
 public:
  const DeviceInfo& info() const override {
    static const DeviceInfo info = describe_cpu();
    return info;
  }
  std::unique_ptr<detail::FlatStore> make_flat_store(const detail::StoreConfig& cfg) override {
    return make_cpu_flat_store(cfg);
  }
};

class CpuBackend final : public detail::Backend {
 public:
  std::string name() const override { return "cpu"; }
  int priority() const override { return 0; }
  BackendStatus status() override { return {"cpu", true, true, 1, ""}; }
  std::vector<std::shared_ptr<detail::Device>> devices() override { return {device_}; }

 private:
  std::shared_ptr<detail::Device> device_ = std::make_shared<CpuDevice>();
};

}  // namespace

}  // namespace hive::gpu::cpu

namespace hive::gpu::detail {
std::unique_ptr<Backend> make_cpu_backend() { return std::make_unique<cpu::CpuBackend>(); }
}  // namespace hive::gpu::detail
