#pragma once
#include <cstdint>
#include <memory>

#include "backends/cuda/gpu_runtime.hpp"
#include "core/backend.hpp"

namespace hive::gpu::HIVE_GPU_DEVICE_NS {
// A flat store in the memory of CUDA device `ordinal`.
std::unique_ptr<detail::FlatStore> make_cuda_flat_store(const detail::StoreConfig& cfg, int ordinal);
// A graph store (GraphIndex) in the memory of device `ordinal` (cuda_graph_store.cpp).
std::unique_ptr<detail::GraphStore> make_cuda_graph_store(const detail::GraphConfig& cfg, int ordinal);
// Single queries answered through the fp16 copy of fp32 rows, and those it could not decide
// (answered from the fp32 rows instead), over the whole process: for tests and tuning.
struct SingleScreenStats {
  uint64_t answered = 0, inconclusive = 0;
};
SingleScreenStats single_screen_stats();
// Query tiles of large batches answered through the batch screen, and those whose thresholds came
// from screening the sample (a sub-sample's thresholds, then the screen) rather than cuBLAS scores
// of the whole sample, over the whole process: for tests and tuning.
struct BatchScreenStats {
  uint64_t screened = 0, sample_screened = 0;
};
BatchScreenStats batch_screen_stats();
}  // namespace hive::gpu::HIVE_GPU_DEVICE_NS
