// Unit tests of the hive-gpu command's support library: IDX reader, generators, ground
// truth and its cache, tie-aware recall, formatting.
#include <gtest/gtest.h>
#include <unistd.h>
#include <zlib.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "args.hpp"
#include "datasets.hpp"
#include "format.hpp"
#include "ground_truth.hpp"
#include "read_floor.hpp"
#include "timing.hpp"

namespace fs = std::filesystem;
using namespace hive::gpu;
using namespace hive::gpu::tool;

namespace {

struct TempDir {
  fs::path path;
  TempDir() {
    path = fs::temp_directory_path() /
           ("hive_gpu_tool_test_" + std::to_string(::getpid()) + "_" + std::to_string(counter()++));
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string file(const std::string& name) const { return (path / name).string(); }
  static int& counter() {
    static int c = 0;
    return c;
  }
};

void put_be32(std::vector<unsigned char>& out, uint32_t v) {
  out.push_back(static_cast<unsigned char>(v >> 24));
  out.push_back(static_cast<unsigned char>(v >> 16));
  out.push_back(static_cast<unsigned char>(v >> 8));
  out.push_back(static_cast<unsigned char>(v));
}

// Writes a gzip IDX3 file; `drop` bytes are cut from the end to make a truncated file.
void write_idx_gz(const std::string& path, uint32_t magic, uint32_t count, uint32_t rows, uint32_t cols,
                  const std::vector<uint8_t>& pixels, std::size_t drop = 0) {
  std::vector<unsigned char> bytes;
  put_be32(bytes, magic);
  put_be32(bytes, count);
  put_be32(bytes, rows);
  put_be32(bytes, cols);
  bytes.insert(bytes.end(), pixels.begin(), pixels.end());
  bytes.resize(bytes.size() - drop);
  gzFile f = gzopen(path.c_str(), "wb");
  ASSERT_NE(f, nullptr);
  ASSERT_EQ(gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size())), static_cast<int>(bytes.size()));
  ASSERT_EQ(gzclose(f), Z_OK);
}

std::vector<uint8_t> pattern(std::size_t n, unsigned mul) {
  std::vector<uint8_t> v(n);
  for (std::size_t i = 0; i < n; ++i) v[i] = static_cast<uint8_t>((i * mul + 7) & 0xff);
  return v;
}

}  // namespace

// ---- IDX reader ----

TEST(Idx, ReadsGzipImages) {
  TempDir dir;
  const auto px = pattern(3 * 4 * 5, 13);
  write_idx_gz(dir.file("a.gz"), 0x00000803, 3, 4, 5, px);
  IdxImages img = read_idx_images(dir.file("a.gz"));
  EXPECT_EQ(img.count, 3u);
  EXPECT_EQ(img.rows, 4u);
  EXPECT_EQ(img.cols, 5u);
  EXPECT_EQ(img.pixels, px);
}

TEST(Idx, RejectsBadMagicTruncationAndMissingFiles) {
  TempDir dir;
  const auto px = pattern(2 * 3 * 3, 5);
  write_idx_gz(dir.file("magic.gz"), 0x00000801, 2, 3, 3, px);
  EXPECT_THROW(read_idx_images(dir.file("magic.gz")), std::runtime_error);
  write_idx_gz(dir.file("short.gz"), 0x00000803, 2, 3, 3, px, 4);
  EXPECT_THROW(read_idx_images(dir.file("short.gz")), std::runtime_error);
  write_idx_gz(dir.file("hdr.gz"), 0x00000803, 2, 3, 3, {}, 8);
  EXPECT_THROW(read_idx_images(dir.file("hdr.gz")), std::runtime_error);
  EXPECT_THROW(read_idx_images(dir.file("absent.gz")), std::runtime_error);
}

TEST(Idx, FashionMnistLoaderConvertsToFloat) {
  TempDir dir;
  const auto train = pattern(6 * 2 * 2, 31);
  const auto test = pattern(3 * 2 * 2, 17);
  write_idx_gz(dir.file("train-images-idx3-ubyte.gz"), 0x00000803, 6, 2, 2, train);
  write_idx_gz(dir.file("t10k-images-idx3-ubyte.gz"), 0x00000803, 3, 2, 2, test);
  Dataset ds = load_fashion_mnist(dir.path.string(), 0);
  EXPECT_EQ(ds.name, "fashion-mnist");
  EXPECT_EQ(ds.n, 6u);
  EXPECT_EQ(ds.d, 4u);
  EXPECT_EQ(ds.nq, 3u);
  ASSERT_EQ(ds.base.size(), train.size());
  for (std::size_t i = 0; i < train.size(); ++i) EXPECT_EQ(ds.base[i], static_cast<float>(train[i]));
  for (std::size_t i = 0; i < test.size(); ++i) EXPECT_EQ(ds.queries[i], static_cast<float>(test[i]));
  Dataset capped = load_fashion_mnist(dir.path.string(), 2);
  EXPECT_EQ(capped.nq, 2u);
  EXPECT_EQ(capped.queries.size(), 8u);
}

TEST(Idx, MissingFashionMnistNamesThePackage) {
  TempDir dir;
  try {
    load_fashion_mnist(dir.path.string(), 0);
    FAIL() << "expected an error";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("apt-get install dataset-fashion-mnist"), std::string::npos) << e.what();
  }
}

// ---- generators ----

TEST(Generators, RandomIsDeterministicAndStandardNormal) {
  Dataset a = make_random(2000, 16, 100, 7);
  Dataset b = make_random(2000, 16, 100, 7);
  Dataset c = make_random(2000, 16, 100, 8);
  EXPECT_EQ(a.name, "random:2000:16");
  EXPECT_EQ(a.base, b.base);
  EXPECT_EQ(a.queries, b.queries);
  EXPECT_NE(a.base, c.base);
  EXPECT_NE(std::vector<float>(a.base.begin(), a.base.begin() + 1600), a.queries);
  double sum = 0, sq = 0;
  for (float v : a.base) {
    sum += v;
    sq += double(v) * v;
  }
  const double mean = sum / double(a.base.size());
  const double var = sq / double(a.base.size()) - mean * mean;
  EXPECT_NEAR(mean, 0.0, 0.03);
  EXPECT_NEAR(var, 1.0, 0.05);
  // The query stream does not depend on how many base rows were drawn.
  Dataset d = make_random(10, 16, 100, 7);
  EXPECT_EQ(d.queries, a.queries);
}

TEST(Generators, ClusteredIsDeterministicAndClustered) {
  Dataset a = make_clustered(900, 8, 50, 3);
  Dataset b = make_clustered(900, 8, 50, 3);
  Dataset c = make_clustered(900, 8, 50, 4);
  EXPECT_EQ(a.name, "clustered:900:8");
  EXPECT_EQ(a.base, b.base);
  EXPECT_EQ(a.queries, b.queries);
  EXPECT_NE(a.base, c.base);
  // Blob noise is 0.25 per coordinate: each point's nearest other point is much nearer
  // than two independent N(0,1) vectors (expected squared distance 16 in 8 dims).
  double mean_nn = 0;
  for (std::size_t i = 0; i < 100; ++i) {
    double best = 1e30;
    for (std::size_t j = 0; j < a.n; ++j) {
      if (j != i) best = std::min(best, exact_distance(Metric::L2, &a.base[i * 8], &a.base[j * 8], 8));
    }
    mean_nn += best / 100;
  }
  EXPECT_LT(mean_nn, 2.0);
}

TEST(Generators, DatasetSpecs) {
  EXPECT_EQ(parse_dataset_spec("fashion-mnist").kind, "fashion-mnist");
  DatasetSpec s = parse_dataset_spec("random:100k:128");
  EXPECT_EQ(s.kind, "random");
  EXPECT_EQ(s.n, 100000u);
  EXPECT_EQ(s.d, 128u);
  s = parse_dataset_spec("clustered:1e4:32");
  EXPECT_EQ(s.kind, "clustered");
  EXPECT_EQ(s.n, 10000u);
  EXPECT_THROW(parse_dataset_spec("random:100"), UsageError);
  EXPECT_THROW(parse_dataset_spec("random:0:4"), UsageError);
  EXPECT_THROW(parse_dataset_spec("sift"), UsageError);
  EXPECT_THROW(parse_dataset_spec("random:x:4"), UsageError);
}

// ---- ground truth ----

namespace {
// Brute force reference with the same tie rule (distance, then id).
std::vector<int64_t> brute_force(const Dataset& ds, Metric m, std::size_t q, int k) {
  std::vector<std::pair<double, int64_t>> all;
  for (std::size_t i = 0; i < ds.n; ++i) {
    double dist = exact_distance(m, &ds.queries[q * ds.d], &ds.base[i * ds.d], ds.d);
    all.emplace_back(m == Metric::InnerProduct ? -dist : dist, int64_t(i));
  }
  std::sort(all.begin(), all.end());
  std::vector<int64_t> ids;
  for (int j = 0; j < k; ++j) ids.push_back(all[std::size_t(j)].second);
  return ids;
}
}  // namespace

TEST(GroundTruth, MatchesBruteForceForEveryMetric) {
  Dataset ds = make_random(3000, 12, 20, 11);
  for (Metric m : {Metric::L2, Metric::InnerProduct, Metric::Cosine, Metric::L1, Metric::Linf}) {
    GroundTruth gt = compute_ground_truth(ds.base.data(), ds.n, ds.queries.data(), ds.nq, ds.d, m, 10, 2);
    ASSERT_EQ(gt.nq, ds.nq);
    for (std::size_t q = 0; q < ds.nq; ++q) {
      const auto ref = brute_force(ds, m, q, 10);
      for (int j = 0; j < 10; ++j) {
        EXPECT_EQ(gt.ids_of(q)[j], ref[std::size_t(j)]) << to_string(m) << " q" << q << " j" << j;
        EXPECT_EQ(gt.distances_of(q)[j],
                  exact_distance(m, &ds.queries[q * ds.d], &ds.base[std::size_t(gt.ids_of(q)[j]) * ds.d], ds.d));
      }
    }
  }
}

TEST(GroundTruth, PadsWhenBaseIsSmallerThanK) {
  Dataset ds = make_random(3, 4, 2, 1);
  GroundTruth gt = compute_ground_truth(ds.base.data(), ds.n, ds.queries.data(), ds.nq, ds.d, Metric::L2, 5, 1);
  EXPECT_GE(gt.ids_of(0)[2], 0);
  EXPECT_EQ(gt.ids_of(0)[3], -1);
  EXPECT_TRUE(std::isinf(gt.distances_of(0)[4]));
}

TEST(GroundTruth, CacheRoundTripAndInvalidation) {
  TempDir dir;
  Dataset ds = make_random(500, 8, 10, 5);
  GtKey key;
  key.dataset = ds.name;
  key.seed = 5;
  key.n = ds.n;
  key.d = ds.d;
  key.nq = ds.nq;
  key.metric = Metric::L2;
  key.k = 100;
  key.data_hash = fingerprint(ds.queries.data(), ds.queries.size(), fingerprint(ds.base.data(), ds.base.size()));
  GroundTruth gt = compute_ground_truth(ds.base.data(), ds.n, ds.queries.data(), ds.nq, ds.d, key.metric, key.k);
  const std::string path = ground_truth_cache_path(dir.path.string(), key);
  EXPECT_FALSE(load_ground_truth(path, key).has_value());  // missing
  save_ground_truth(path, key, gt);
  auto back = load_ground_truth(path, key);
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(back->ids, gt.ids);
  EXPECT_EQ(back->distances, gt.distances);

  // Any key field that differs invalidates the file.
  auto mismatch = [&](auto mutate) {
    GtKey other = key;
    mutate(other);
    return !load_ground_truth(path, other).has_value();
  };
  EXPECT_TRUE(mismatch([](GtKey& k) { k.seed = 6; }));
  EXPECT_TRUE(mismatch([](GtKey& k) { k.n = 501; }));
  EXPECT_TRUE(mismatch([](GtKey& k) { k.d = 9; }));
  EXPECT_TRUE(mismatch([](GtKey& k) { k.nq = 11; }));
  EXPECT_TRUE(mismatch([](GtKey& k) { k.metric = Metric::InnerProduct; }));
  EXPECT_TRUE(mismatch([](GtKey& k) { k.k = 50; }));
  EXPECT_TRUE(mismatch([](GtKey& k) { k.data_hash ^= 1; }));
  EXPECT_TRUE(mismatch([](GtKey& k) { k.dataset = "random:500:9"; }));
  // Different keys map to different files.
  GtKey ip = key;
  ip.metric = Metric::InnerProduct;
  EXPECT_NE(ground_truth_cache_path(dir.path.string(), ip), path);

  // A flipped payload byte, a truncated file and trailing junk are all rejected.
  const auto size = fs::file_size(path);
  {
    std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(static_cast<std::streamoff>(size / 2));
    char c = 0;
    f.read(&c, 1);
    f.seekp(static_cast<std::streamoff>(size / 2));
    c = static_cast<char>(c ^ 0x40);
    f.write(&c, 1);
  }
  EXPECT_FALSE(load_ground_truth(path, key).has_value());
  save_ground_truth(path, key, gt);
  fs::resize_file(path, size - 3);
  EXPECT_FALSE(load_ground_truth(path, key).has_value());
  save_ground_truth(path, key, gt);
  {
    std::ofstream f(path, std::ios::app | std::ios::binary);
    f << "x";
  }
  EXPECT_FALSE(load_ground_truth(path, key).has_value());
}

// ---- recall ----

TEST(Recall, TiesCountAndEachIdOnce) {
  // Ground truth k-th (k = 2) distance is 2; id 9 has distance 2 too (a tie).
  const double kth = 2.0;
  const int64_t ids_tie[] = {4, 9};
  const double d_tie[] = {1.0, 2.0};
  EXPECT_DOUBLE_EQ(query_recall(Metric::L2, 2, ids_tie, d_tie, kth, 100), 1.0);
  const int64_t ids_far[] = {4, 9};
  const double d_far[] = {1.0, 2.1};
  EXPECT_DOUBLE_EQ(query_recall(Metric::L2, 2, ids_far, d_far, kth, 100), 0.5);
  // Within 1e-6 relative slack counts, beyond does not.
  const double d_slack[] = {1.0, 2.0 * (1 + 5e-7)};
  EXPECT_DOUBLE_EQ(query_recall(Metric::L2, 2, ids_tie, d_slack, kth, 100), 1.0);
  const double d_out[] = {1.0, 2.0 * (1 + 2e-6)};
  EXPECT_DOUBLE_EQ(query_recall(Metric::L2, 2, ids_tie, d_out, kth, 100), 0.5);
  // A repeated id counts once; kNoId never.
  const int64_t ids_dup[] = {4, 4};
  const double d_dup[] = {1.0, 1.0};
  EXPECT_DOUBLE_EQ(query_recall(Metric::L2, 2, ids_dup, d_dup, kth, 100), 0.5);
  const int64_t ids_none[] = {4, -1};
  const double d_none[] = {1.0, 0.0};
  EXPECT_DOUBLE_EQ(query_recall(Metric::L2, 2, ids_none, d_none, kth, 100), 0.5);
  // Inner product: larger is nearer.
  const int64_t ids_ip[] = {1, 2};
  const double d_ip[] = {5.0, 3.0};
  EXPECT_DOUBLE_EQ(query_recall(Metric::InnerProduct, 2, ids_ip, d_ip, 3.0, 100), 1.0);
  const double d_ip_low[] = {5.0, 2.9};
  EXPECT_DOUBLE_EQ(query_recall(Metric::InnerProduct, 2, ids_ip, d_ip_low, 3.0, 100), 0.5);
}

TEST(Recall, WholeResultsAgainstGroundTruthWithDuplicates) {
  // Base with exact duplicate rows: any of the duplicates is a correct answer.
  Dataset ds = make_random(200, 6, 5, 2);
  for (std::size_t i = 100; i < 200; ++i) {
    std::copy_n(&ds.base[(i - 100) * 6], 6, &ds.base[i * 6]);
  }
  const int k = 4;
  GroundTruth gt = compute_ground_truth(ds.base.data(), ds.n, ds.queries.data(), ds.nq, ds.d, Metric::L2, 100);
  // Perfect answer: the ground truth's own first k.
  std::vector<int64_t> ids(ds.nq * k);
  for (std::size_t q = 0; q < ds.nq; ++q) std::copy_n(gt.ids_of(q), k, &ids[q * k]);
  EXPECT_DOUBLE_EQ(recall_at_k(Metric::L2, k, ds.base.data(), ds.n, ds.queries.data(), ds.d, gt, 0, ds.nq, ids.data()),
                   1.0);
  // Swap every id for its duplicate twin: still perfect.
  for (auto& id : ids) id = id < 100 ? id + 100 : id - 100;
  EXPECT_DOUBLE_EQ(recall_at_k(Metric::L2, k, ds.base.data(), ds.n, ds.queries.data(), ds.d, gt, 0, ds.nq, ids.data()),
                   1.0);
  // Replace the last answer of each query by its 50th neighbour: 3 of 4.
  for (std::size_t q = 0; q < ds.nq; ++q) ids[q * k + 3] = gt.ids_of(q)[50];
  EXPECT_DOUBLE_EQ(recall_at_k(Metric::L2, k, ds.base.data(), ds.n, ds.queries.data(), ds.d, gt, 0, ds.nq, ids.data()),
                   0.75);
  // A query subset starting at q_begin uses that query's ground truth.
  EXPECT_DOUBLE_EQ(recall_at_k(Metric::L2, k, ds.base.data(), ds.n, ds.queries.data(), ds.d, gt, 2, 3, &ids[2 * k]),
                   0.75);
}

// ---- formatting, arguments, timing helpers ----

TEST(Format, JsonEscapesAndNumbers) {
  EXPECT_EQ(json_escape("a\"b\\c\n\t\x01"), "a\\\"b\\\\c\\n\\t\\u0001");
  EXPECT_EQ(json_number(0.5), "0.5");
  EXPECT_EQ(json_number(std::nan("")), "null");
  std::ostringstream os;
  JsonWriter j(os);
  j.begin_object().field("name", "x\"y").field("n", 3).key("rows").begin_array().value(1.5).end_array().end_object();
  EXPECT_EQ(os.str(), "{\n  \"name\": \"x\\\"y\",\n  \"n\": 3,\n  \"rows\": [\n    1.5\n  ]\n}\n");
}

TEST(Format, MarkdownTable) {
  Table t;
  t.add_column("batch", Table::Align::Right);
  t.add_column("name");
  t.add_row({"1", "ab"});
  EXPECT_EQ(t.markdown(), "| batch | name |\n| ----: | ---- |\n|     1 | ab   |\n");
}

TEST(Args, SizesListsAndOptions) {
  EXPECT_EQ(parse_size("100k", "x"), 100000u);
  EXPECT_EQ(parse_size("1e5", "x"), 100000u);
  EXPECT_THROW(parse_size("1.5", "x"), UsageError);
  EXPECT_EQ(parse_size_list("1,100,10000", "b"), (std::vector<std::size_t>{1, 100, 10000}));
  EXPECT_THROW(parse_size_list("1,,2", "b"), UsageError);
  EXPECT_THROW(parse_size_list("0", "b"), UsageError);
  std::vector<OptionSpec> specs = {{"k", true, "", ""}, {"json", false, "", ""}};
  const char* argv[] = {"x", "--k=5", "--json"};
  Args a(specs, 3, argv, 1);
  EXPECT_EQ(a.get_int("k", 0), 5);
  EXPECT_TRUE(a.has("json"));
  const char* bad[] = {"x", "--nope"};
  EXPECT_THROW(Args(specs, 2, bad, 1), UsageError);
  const char* missing[] = {"x", "--k"};
  EXPECT_THROW(Args(specs, 2, missing, 1), UsageError);
}

TEST(Timing, NearestRankPercentile) {
  std::vector<double> v;
  for (int i = 100; i >= 1; --i) v.push_back(i);
  EXPECT_EQ(percentile(v, 50), 50);
  EXPECT_EQ(percentile(v, 99), 99);
  EXPECT_EQ(percentile(v, 100), 100);
  EXPECT_EQ(percentile({3.0}, 99), 3.0);
  EXPECT_EQ(percentile({}, 50), 0.0);
}

TEST(Npy, HeaderIsAlignedAndDataFollows) {
  TempDir dir;
  const float data[6] = {1, 2, 3, 4, 5, 6};
  write_npy(dir.file("a.npy"), data, 2, 3);
  std::ifstream f(dir.file("a.npy"), std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  ASSERT_GE(bytes.size(), 10u);
  EXPECT_EQ(bytes.substr(1, 5), "NUMPY");
  const std::size_t hlen = static_cast<unsigned char>(bytes[8]) | (std::size_t(static_cast<unsigned char>(bytes[9])) << 8);
  EXPECT_EQ((10 + hlen) % 64, 0u);
  EXPECT_NE(bytes.find("'shape': (2, 3)"), std::string::npos);
  EXPECT_EQ(bytes.size(), 10 + hlen + sizeof data);
  float back[6];
  std::memcpy(back, bytes.data() + 10 + hlen, sizeof back);
  EXPECT_EQ(back[5], 6.0f);
}

TEST(ReadFloor, MeasuresSomething) {
  ReadFloor r = measure_read_floor(1 << 20, 2, 3);
  EXPECT_EQ(r.bytes, std::size_t(1) << 20);
  EXPECT_EQ(r.runs, 3);
  EXPECT_GT(r.best_ms, 0.0);
  EXPECT_GT(r.gbps, 0.0);
}
