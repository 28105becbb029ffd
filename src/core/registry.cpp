// The backend registry: compiled-in backends are created here, in priority order; the
// others appear as placeholders so `hive-gpu info` can say what this build lacks.
#include <algorithm>
#include <mutex>

#include "core/backend.hpp"
#include "hive_gpu/error.hpp"

namespace hive::gpu::detail {

namespace {

class MissingBackend final : public Backend {
 public:
  MissingBackend(std::string name, std::string why) : name_(std::move(name)), why_(std::move(why)) {}
  std::string name() const override { return name_; }
  int priority() const override { return -1; }
  BackendStatus status() override { return {name_, false, false, 0, why_}; }
  std::vector<std::shared_ptr<Device>> devices() override { return {}; }

 private:
  std::string name_, why_;
};

std::vector<std::unique_ptr<Backend>> build_registry() {
  std::vector<std::unique_ptr<Backend>> r;
#ifdef HIVE_GPU_WITH_CUDA
  r.push_back(make_cuda_backend());
#else
  r.push_back(std::make_unique<MissingBackend>("cuda", "not compiled in (no nvcc at build time, or HIVE_GPU_CUDA=OFF)"));
#endif
#ifdef HIVE_GPU_WITH_HIP
  r.push_back(make_hip_backend());
#else
  r.push_back(std::make_unique<MissingBackend>("hip", "not compiled in (build with -DHIVE_GPU_ROCM=ON)"));
#endif
#ifdef HIVE_GPU_WITH_VULKAN
  r.push_back(make_vulkan_backend());
#else
  r.push_back(std::make_unique<MissingBackend>("vulkan", "not compiled in (Vulkan headers or glslc missing at build time, or HIVE_GPU_VULKAN=OFF)"));
#endif
  r.push_back(make_cpu_backend());
  std::stable_sort(r.begin(), r.end(), [](const auto& a, const auto& b) { return a->priority() > b->priority(); });
  return r;
}

}  // namespace

std::unique_ptr<GraphStore> Device::make_graph_store(const GraphConfig&) {
  throw Error(ErrorCode::Unsupported, "GraphIndex needs a GPU backend (cuda or hip), not '" + info().backend +
                                          "'; HnswIndex is the CPU's graph index");
}

const std::vector<std::unique_ptr<Backend>>& registry() {
  static const std::vector<std::unique_ptr<Backend>> r = build_registry();
  return r;
}

}  // namespace hive::gpu::detail
