// GraphIndex's side of the CPU build: its files are one-level HNSW files (core/hnsw_access.hpp),
// written from a fixed-degree graph with holes and read back by HnswIndex and by read_level0;
// and a CPU context is refused with a clear error. The GPU half is tests/cuda/test_graph_index.cpp.
#include <gtest/gtest.h>

#include <filesystem>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "core/hnsw_access.hpp"
#include "hive_gpu/hive_gpu.hpp"
#include "unit/ann_reference.hpp"

namespace {

using namespace hive::gpu;
using namespace hive::gpu::test;

TEST(GraphFiles, CpuContextIsRefused) {
  try {
    GraphIndex g(Context::open("cpu"), 8, Metric::L2);
    FAIL() << "a CPU GraphIndex was made";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::Unsupported);
    EXPECT_NE(std::string(e.what()).find("HnswIndex"), std::string::npos) << e.what();
  }
}

TEST(GraphFiles, OneLevelFileRoundTrip) {
  const std::size_t n = 400, d = 6;
  const int M = 4, width = 2 * M;
  const auto x = clustered(n, d, 21, 1);  // one blob: its k-NN graph is connected
  detail::HnswLevel0 g;
  g.dim = d;
  g.metric = Metric::L2;
  g.M = M;
  g.ef_search = 40;
  g.seed = 9;
  g.next_id = 1000;
  g.rows = x;
  g.upper = {3, 50, 120, 7, 399};  // level 1, entry point 3
  g.ids.resize(n);
  for (std::size_t i = 0; i < n; ++i) g.ids[i] = int64_t(2 * i);
  g.ids[10] = kNoId;  // a deleted node: routes, never returned
  // Lists: the exact nearest neighbours, with holes (0xffffffff) and a self link, which the
  // writer must drop.
  g.links.assign(n * width, 0xffffffffu);
  std::vector<std::vector<uint32_t>> want(n);
  for (std::size_t i = 0; i < n; ++i) {
    const auto nn = exact_topk(Metric::L2, x, x.data() + i * d, d, width + 1);
    int slot = 0;
    for (int64_t v : nn) {
      if (v == int64_t(i) || slot >= width) continue;
      if (slot == 2) {
        g.links[i * width + 2] = uint32_t(i);  // self: dropped
        ++slot;
        continue;
      }
      if (slot == 5) {
        ++slot;  // a hole
        continue;
      }
      g.links[i * width + std::size_t(slot++)] = uint32_t(v);
      want[i].push_back(uint32_t(v));
    }
  }
  const std::string path = (std::filesystem::temp_directory_path() / "hive_graph_files_test.hvg").string();
  detail::HnswAccess::write_level0(path, g);
  HnswIndex h = HnswIndex::load(path);
  EXPECT_EQ(h.size(), n - 1);
  EXPECT_EQ(h.max_level(), 1);
  EXPECT_EQ(h.next_id(), 1000);
  EXPECT_EQ(h.ef_search(), 40);
  EXPECT_FALSE(h.contains(20));
  EXPECT_TRUE(h.contains(22));
  // Searches on it find the vectors themselves (ids are 2 i).
  std::size_t self = 0;
  for (std::size_t i = 0; i < n; i += 7) {
    float dist = 0;
    int64_t id = 0;
    h.search(1, x.data() + i * d, 1, &dist, &id);
    self += id == int64_t(2 * i);
  }
  EXPECT_GE(self, 55u);  // 58 probes, one of them the deleted node
  const detail::HnswLevel0 r = detail::HnswAccess::read_level0(path);
  EXPECT_EQ(r.M, M);
  EXPECT_EQ(r.ids, g.ids);
  EXPECT_EQ(r.rows, g.rows);
  for (std::size_t i = 0; i < n; ++i) {
    std::vector<uint32_t> got;
    for (int j = 0; j < width; ++j)
      if (r.links[i * width + std::size_t(j)] != 0xffffffffu) got.push_back(r.links[i * width + std::size_t(j)]);
    EXPECT_EQ(got, want[i]) << "node " << i;
  }
  std::filesystem::remove(path);
}

}  // namespace
