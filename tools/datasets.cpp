#include "datasets.hpp"

#include <zlib.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <stdexcept>
#include <unistd.h>

#include "args.hpp"

namespace hive::gpu::tool {

namespace {

uint64_t splitmix64(uint64_t& x) {
  uint64_t z = (x += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint32_t be32(const unsigned char* p) {
  return (uint32_t(p[0]) << 24) | (uint32_t(p[1]) << 16) | (uint32_t(p[2]) << 8) | uint32_t(p[3]);
}

// Stream ids so base and queries never share random numbers.
constexpr uint64_t kBaseStream = 0x62617365ULL;     // "base"
constexpr uint64_t kQueryStream = 0x71756572ULL;    // "quer"
constexpr uint64_t kCenterStream = 0x63656e74ULL;   // "cent"

void fill_normal(float* out, std::size_t count, uint64_t seed) {
  Rng rng(seed);
  for (std::size_t i = 0; i < count; ++i) out[i] = static_cast<float>(rng.normal());
}

void fill_blobs(float* out, std::size_t rows, std::size_t d, const std::vector<float>& centers, std::size_t ncenters,
                double sigma, uint64_t seed) {
  Rng rng(seed);
  for (std::size_t r = 0; r < rows; ++r) {
    const auto c = static_cast<std::size_t>(rng.uniform() * static_cast<double>(ncenters)) % ncenters;
    const float* cv = centers.data() + c * d;
    for (std::size_t j = 0; j < d; ++j) out[r * d + j] = static_cast<float>(cv[j] + sigma * rng.normal());
  }
}

template <class T>
void write_npy_impl(const std::string& path, const T* data, std::size_t rows, std::size_t cols, const char* descr) {
  std::string header = "{'descr': '" + std::string(descr) + "', 'fortran_order': False, 'shape': (" +
                       std::to_string(rows) + ", " + std::to_string(cols) + "), }";
  // magic(6) + version(2) + header length(2) + header, padded with spaces to 64 bytes, '\n'.
  const std::size_t unpadded = 10 + header.size() + 1;
  header.append((64 - unpadded % 64) % 64, ' ');
  header += '\n';
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  if (f == nullptr) throw std::runtime_error("cannot write " + tmp + ": " + std::strerror(errno));
  const unsigned char pre[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, static_cast<unsigned char>(header.size() & 0xff),
                                 static_cast<unsigned char>(header.size() >> 8)};
  bool ok = std::fwrite(pre, 1, sizeof pre, f) == sizeof pre;
  ok = ok && std::fwrite(header.data(), 1, header.size(), f) == header.size();
  const std::size_t count = rows * cols;
  ok = ok && (count == 0 || std::fwrite(data, sizeof(T), count, f) == count);
  ok = (std::fclose(f) == 0) && ok;
  if (!ok) {
    std::remove(tmp.c_str());
    throw std::runtime_error("cannot write " + path);
  }
  std::filesystem::rename(tmp, path);
}

}  // namespace

Rng::Rng(uint64_t seed) {
  uint64_t x = seed;
  for (auto& s : s_) s = splitmix64(x);
}

uint64_t Rng::next() {
  const uint64_t result = rotl(s_[1] * 5, 7) * 9;
  const uint64_t t = s_[1] << 17;
  s_[2] ^= s_[0];
  s_[3] ^= s_[1];
  s_[1] ^= s_[2];
  s_[0] ^= s_[3];
  s_[2] ^= t;
  s_[3] = rotl(s_[3], 45);
  return result;
}

double Rng::uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }

double Rng::normal() {
  if (has_spare_) {
    has_spare_ = false;
    return spare_;
  }
  double u1 = 0;
  do {
    u1 = uniform();
  } while (u1 <= 0.0);
  const double u2 = uniform();
  const double r = std::sqrt(-2.0 * std::log(u1));
  const double a = 6.283185307179586476925 * u2;
  spare_ = r * std::sin(a);
  has_spare_ = true;
  return r * std::cos(a);
}

DatasetSpec parse_dataset_spec(std::string_view text) {
  DatasetSpec spec;
  if (text == "fashion-mnist" || text == "fashion-mnist-784-euclidean") {
    spec.kind = "fashion-mnist";
    return spec;
  }
  auto c1 = text.find(':');
  std::string_view kind = text.substr(0, c1);
  if ((kind == "random" || kind == "clustered") && c1 != std::string_view::npos) {
    auto c2 = text.find(':', c1 + 1);
    if (c2 != std::string_view::npos) {
      spec.kind = std::string(kind);
      spec.n = parse_size(text.substr(c1 + 1, c2 - c1 - 1), "--dataset N");
      spec.d = parse_size(text.substr(c2 + 1), "--dataset D");
      if (spec.n == 0 || spec.d == 0) throw UsageError("--dataset: N and D must be positive");
      return spec;
    }
  }
  throw UsageError("--dataset: expected fashion-mnist, random:N:D or clustered:N:D, got '" + std::string(text) + "'");
}

IdxImages read_idx_images(const std::string& path) {
  gzFile f = gzopen(path.c_str(), "rb");
  if (f == nullptr) throw std::runtime_error("cannot open " + path + ": " + std::strerror(errno));
  struct Closer {
    gzFile f;
    ~Closer() { gzclose(f); }
  } closer{f};
  gzbuffer(f, 1 << 20);
  unsigned char hdr[16];
  if (gzread(f, hdr, sizeof hdr) != static_cast<int>(sizeof hdr)) {
    throw std::runtime_error(path + ": truncated IDX header");
  }
  const uint32_t magic = be32(hdr);
  if (magic != 0x00000803u) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "bad IDX magic 0x%08x (expected 0x00000803)", magic);
    throw std::runtime_error(path + ": " + buf);
  }
  IdxImages img;
  img.count = be32(hdr + 4);
  img.rows = be32(hdr + 8);
  img.cols = be32(hdr + 12);
  const uint64_t total = uint64_t(img.count) * img.rows * img.cols;
  if (img.rows == 0 || img.cols == 0 || total > (uint64_t(1) << 34)) {
    throw std::runtime_error(path + ": implausible IDX dimensions");
  }
  img.pixels.resize(static_cast<std::size_t>(total));
  std::size_t done = 0;
  while (done < img.pixels.size()) {
    const std::size_t chunk = std::min<std::size_t>(img.pixels.size() - done, std::size_t(1) << 30);
    const int got = gzread(f, img.pixels.data() + done, static_cast<unsigned>(chunk));
    if (got <= 0) {
      int err = 0;
      const char* msg = gzerror(f, &err);
      throw std::runtime_error(path + ": truncated IDX data (" + std::to_string(done) + " of " +
                               std::to_string(img.pixels.size()) + " bytes" +
                               (err != Z_OK && msg != nullptr ? std::string(", ") + msg : std::string()) + ")");
    }
    done += static_cast<std::size_t>(got);
  }
  return img;
}

std::string fashion_mnist_dir() {
  const char* env = std::getenv("HIVE_GPU_FASHION_MNIST_DIR");
  return env != nullptr && *env != '\0' ? std::string(env) : std::string(kFashionMnistDir);
}

Dataset load_fashion_mnist(const std::string& dir, std::size_t max_queries) {
  const std::string train = dir + "/train-images-idx3-ubyte.gz";
  const std::string test = dir + "/t10k-images-idx3-ubyte.gz";
  for (const auto& p : {train, test}) {
    if (!std::filesystem::exists(p)) {
      throw std::runtime_error("Fashion-MNIST file " + p +
                               " is missing: install it with `apt-get install dataset-fashion-mnist` "
                               "(or point HIVE_GPU_FASHION_MNIST_DIR at a folder holding the IDX files)");
    }
  }
  IdxImages tr = read_idx_images(train);
  IdxImages te = read_idx_images(test);
  if (tr.rows != te.rows || tr.cols != te.cols) throw std::runtime_error("Fashion-MNIST train/test image sizes differ");
  Dataset ds;
  ds.name = "fashion-mnist";
  ds.kind = "fashion-mnist";
  ds.d = std::size_t(tr.rows) * tr.cols;
  ds.n = tr.count;
  ds.nq = max_queries == 0 ? te.count : std::min<std::size_t>(max_queries, te.count);
  ds.base.assign(tr.pixels.begin(), tr.pixels.end());
  ds.queries.assign(te.pixels.begin(), te.pixels.begin() + static_cast<std::ptrdiff_t>(ds.nq * ds.d));
  return ds;
}

Dataset make_random(std::size_t n, std::size_t d, std::size_t nq, uint64_t seed) {
  Dataset ds;
  ds.kind = "random";
  ds.name = "random:" + std::to_string(n) + ":" + std::to_string(d);
  ds.n = n;
  ds.d = d;
  ds.nq = nq;
  ds.seed = seed;
  ds.base.resize(n * d);
  ds.queries.resize(nq * d);
  fill_normal(ds.base.data(), ds.base.size(), seed ^ kBaseStream);
  fill_normal(ds.queries.data(), ds.queries.size(), seed ^ kQueryStream);
  return ds;
}

Dataset make_clustered(std::size_t n, std::size_t d, std::size_t nq, uint64_t seed) {
  Dataset ds;
  ds.kind = "clustered";
  ds.name = "clustered:" + std::to_string(n) + ":" + std::to_string(d);
  ds.n = n;
  ds.d = d;
  ds.nq = nq;
  ds.seed = seed;
  const auto ncenters = std::max<std::size_t>(1, static_cast<std::size_t>(std::llround(std::sqrt(double(n)))));
  std::vector<float> centers(ncenters * d);
  fill_normal(centers.data(), centers.size(), seed ^ kCenterStream);
  ds.base.resize(n * d);
  ds.queries.resize(nq * d);
  fill_blobs(ds.base.data(), n, d, centers, ncenters, 0.25, seed ^ kBaseStream);
  fill_blobs(ds.queries.data(), nq, d, centers, ncenters, 0.25, seed ^ kQueryStream);
  return ds;
}

Dataset load_dataset(const DatasetSpec& spec, std::size_t nq, uint64_t seed, const std::string& fmnist_dir) {
  if (spec.kind == "fashion-mnist") return load_fashion_mnist(fmnist_dir, nq);
  if (spec.kind == "random") return make_random(spec.n, spec.d, nq, seed);
  if (spec.kind == "clustered") return make_clustered(spec.n, spec.d, nq, seed);
  throw UsageError("unknown dataset kind '" + spec.kind + "'");
}

uint64_t fingerprint(const float* x, std::size_t count, uint64_t h) {
  // Word-at-a-time multiply-xorshift: fast enough for hundreds of MB, not cryptographic.
  constexpr uint64_t kMul = 0xff51afd7ed558ccdULL;
  std::size_t i = 0;
  for (; i + 2 <= count; i += 2) {
    uint64_t w;
    std::memcpy(&w, x + i, sizeof w);
    h = (h ^ w) * kMul;
    h ^= h >> 29;
  }
  if (i < count) {
    uint32_t w;
    std::memcpy(&w, x + i, sizeof w);
    h = (h ^ w) * kMul;
    h ^= h >> 29;
  }
  h ^= static_cast<uint64_t>(count);
  h *= 0xc4ceb9fe1a85ec53ULL;
  return h ^ (h >> 33);
}

void write_npy(const std::string& path, const float* data, std::size_t rows, std::size_t cols) {
  write_npy_impl(path, data, rows, cols, "<f4");
}
void write_npy(const std::string& path, const double* data, std::size_t rows, std::size_t cols) {
  write_npy_impl(path, data, rows, cols, "<f8");
}
void write_npy(const std::string& path, const int64_t* data, std::size_t rows, std::size_t cols) {
  write_npy_impl(path, data, rows, cols, "<i8");
}

}  // namespace hive::gpu::tool
