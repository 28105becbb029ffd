// Vulkan backend: the SPIR-V of every compute shader, compiled from shaders/*.comp by glslc at
// build time (-mfmt=c writes each module as a C initializer list) and embedded here, so no
// shader file is needed at run time.
#include "backends/vulkan/vk_shaders.hpp"

namespace hive::gpu::vk {
namespace {
const uint32_t kScanSelect[] =
#include "scan_select.spv.inc"
    ;
const uint32_t kScanSelectCoop[] =
#include "scan_select_coop.spv.inc"
    ;
const uint32_t kMergeSelect[] =
#include "merge_select.spv.inc"
    ;
const uint32_t kDistanceTile[] =
#include "distance_tile.spv.inc"
    ;
const uint32_t kEncodeHalf[] =
#include "encode_half.spv.inc"
    ;
const uint32_t kScreenFinish[] =
#include "screen_finish.spv.inc"
    ;
const uint32_t kScreenFinishLists[] =
#include "screen_finish_lists.spv.inc"
    ;
const uint32_t kMergeLists[] =
#include "merge_lists.spv.inc"
    ;
const uint32_t kBatchScreen[] =
#include "batch_screen.spv.inc"
    ;
const uint32_t kBatchScreenCoop[] =
#include "batch_screen_coop.spv.inc"
    ;
const uint32_t kRescore[] =
#include "rescore.spv.inc"
    ;
const uint32_t kRowNorms[] =
#include "row_norms.spv.inc"
    ;
const uint32_t kGatherRows[] =
#include "gather_rows.spv.inc"
    ;
const uint32_t kScanLists[] =
#include "scan_lists.spv.inc"
    ;
}  // namespace

Spirv spirv(Shader s) {
  switch (s) {
    case Shader::ScanSelect: return {kScanSelect, sizeof kScanSelect};
    case Shader::ScanSelectCoop: return {kScanSelectCoop, sizeof kScanSelectCoop};
    case Shader::MergeSelect: return {kMergeSelect, sizeof kMergeSelect};
    case Shader::DistanceTile: return {kDistanceTile, sizeof kDistanceTile};
    case Shader::EncodeHalf: return {kEncodeHalf, sizeof kEncodeHalf};
    case Shader::ScreenFinish: return {kScreenFinish, sizeof kScreenFinish};
    case Shader::ScreenFinishLists: return {kScreenFinishLists, sizeof kScreenFinishLists};
    case Shader::MergeLists: return {kMergeLists, sizeof kMergeLists};
    case Shader::BatchScreen: return {kBatchScreen, sizeof kBatchScreen};
    case Shader::BatchScreenCoop: return {kBatchScreenCoop, sizeof kBatchScreenCoop};
    case Shader::Rescore: return {kRescore, sizeof kRescore};
    case Shader::RowNorms: return {kRowNorms, sizeof kRowNorms};
    case Shader::GatherRows: return {kGatherRows, sizeof kGatherRows};
    case Shader::ScanLists: return {kScanLists, sizeof kScanLists};
  }
  return {nullptr, 0};
}

}  // namespace hive::gpu::vk
