// hive-gpu command: benchmark data sets (Fashion-MNIST from Debian's package, synthetic
// Gaussian data) and the .npy files the peer harness reads.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace hive::gpu::tool {

// Where Debian's dataset-fashion-mnist package puts its files.
inline constexpr const char* kFashionMnistDir = "/usr/share/datasets/fashion-mnist";

struct DatasetSpec {
  std::string kind;  // "fashion-mnist", "random" or "clustered"
  std::size_t n = 0; // base rows (0 for fashion-mnist: fixed by the files)
  std::size_t d = 0;
};

// "fashion-mnist", "random:N:D", "clustered:N:D" (N accepts 1e5, 100k). Throws UsageError.
DatasetSpec parse_dataset_spec(std::string_view text);

struct Dataset {
  std::string name;   // canonical spec: "fashion-mnist", "random:100000:128"
  std::string kind;   // "fashion-mnist", "random", "clustered"
  std::size_t n = 0;  // base rows
  std::size_t d = 0;
  std::size_t nq = 0; // query rows
  uint64_t seed = 0;  // 0 for fashion-mnist
  std::vector<float> base;     // n x d, row-major
  std::vector<float> queries;  // nq x d, row-major
  bool synthetic() const { return kind != "fashion-mnist"; }
};

// One IDX3 image file: count x rows x cols uint8 pixels.
struct IdxImages {
  uint32_t count = 0;
  uint32_t rows = 0;
  uint32_t cols = 0;
  std::vector<uint8_t> pixels;
};

// Reads a gzip-compressed (or plain: zlib reads both) IDX3 uint8 image file: big-endian
// magic 0x00000803, count, rows, cols, then the pixels. Throws std::runtime_error naming
// the file on a missing file, a bad magic or a short read.
IdxImages read_idx_images(const std::string& path);

// $HIVE_GPU_FASHION_MNIST_DIR, else kFashionMnistDir.
std::string fashion_mnist_dir();
// Base = the 60000 training images, queries = the first max_queries (0: all 10000) test
// images, as float32 0..255 (ann-benchmarks' fashion-mnist-784-euclidean). Throws
// std::runtime_error telling the user to install dataset-fashion-mnist if files are missing.
Dataset load_fashion_mnist(const std::string& dir, std::size_t max_queries);

// n + nq rows of i.i.d. standard normal values; deterministic given seed (own generator,
// the same on every platform). Queries come from a separate stream.
Dataset make_random(std::size_t n, std::size_t d, std::size_t nq, uint64_t seed);
// Gaussian blobs: round(sqrt(n)) centers ~ N(0, 1) per coordinate, points = a center
// picked uniformly + N(0, 0.25^2) noise; queries drawn the same way from another stream.
Dataset make_clustered(std::size_t n, std::size_t d, std::size_t nq, uint64_t seed);

// Dispatches on spec.kind. nq: queries for synthetic data; for fashion-mnist a cap on the
// 10000 test images (0: all).
Dataset load_dataset(const DatasetSpec& spec, std::size_t nq, uint64_t seed, const std::string& fmnist_dir);

// 64-bit content hash of float data (bit patterns), for ground-truth cache keys.
uint64_t fingerprint(const float* x, std::size_t count, uint64_t h = 0x9e3779b97f4a7c15ULL);

// NumPy .npy (format 1.0, C order) writers for the peer harness; atomic (temp + rename).
// Throw std::runtime_error on I/O failure.
void write_npy(const std::string& path, const float* data, std::size_t rows, std::size_t cols);
void write_npy(const std::string& path, const double* data, std::size_t rows, std::size_t cols);
void write_npy(const std::string& path, const int64_t* data, std::size_t rows, std::size_t cols);

// Small deterministic generator (splitmix64-seeded xoshiro256**) with Box-Muller normals.
class Rng {
 public:
  explicit Rng(uint64_t seed);
  uint64_t next();
  double uniform();  // [0, 1)
  double normal();   // N(0, 1)

 private:
  uint64_t s_[4];
  double spare_ = 0;
  bool has_spare_ = false;
};

}  // namespace hive::gpu::tool
