// hive-gpu: exact (brute-force) search on any backend.
#pragma once
#include <memory>
#include <string>

#include "hive_gpu/context.hpp"
#include "hive_gpu/index.hpp"

namespace hive::gpu {

namespace detail {
class FlatStore;
}

struct FlatOptions {
  // Encoding of stored vectors: F32, F16 or BF16 (Hamming indexes always store Bits).
  ScalarType storage = ScalarType::F32;
  // A GPU stream the index runs on instead of one of its own (a cudaStream_t on the CUDA
  // backend; ignored by the CPU backend). The caller keeps it alive as long as the index; work
  // the caller queued on it before a call runs first. Null: the index makes its own stream.
  void* stream = nullptr;
};

class FlatIndex final : public Index {
 public:
  // dim: vector length (bits for Hamming, a multiple of 8). Throws InvalidArgument.
  FlatIndex(const Context& ctx, std::size_t dim, Metric metric, FlatOptions options = {});
  // On Context::open("auto").
  FlatIndex(std::size_t dim, Metric metric, FlatOptions options = {});
  ~FlatIndex() override;
  FlatIndex(FlatIndex&&) noexcept;
  FlatIndex& operator=(FlatIndex&&) noexcept;

  // Reads a file written by save(). Throws Io, CorruptFile or VersionMismatch.
  static FlatIndex load(const std::string& path, const Context& ctx);
  static FlatIndex load(const std::string& path);

  std::size_t dim() const override;
  Metric metric() const override;
  ScalarType storage() const override;
  std::size_t size() const override;
  const Context& context() const;

  using Index::add;
  using Index::add_with_ids;
  using Index::search;
  using Index::upsert;
  using Index::remove;
  void add(std::size_t n, const float* x) override;
  void add_with_ids(std::size_t n, const float* x, const int64_t* ids) override;
  void upsert(std::size_t n, const float* x, const int64_t* ids) override;
  void search(std::size_t nq, const float* q, int k, float* distances, int64_t* ids) const override;
  void add(std::size_t n, const uint8_t* bits) override;
  void add_with_ids(std::size_t n, const uint8_t* bits, const int64_t* ids) override;
  void upsert(std::size_t n, const uint8_t* bits, const int64_t* ids) override;
  void search(std::size_t nq, const uint8_t* q, int k, float* distances, int64_t* ids) const override;

  std::size_t remove(std::size_t n, const int64_t* ids) override;
  bool contains(int64_t id) const override;
  std::vector<float> get(int64_t id) const override;
  std::vector<uint8_t> get_bits(int64_t id) const override;
  std::vector<int64_t> ids() const override;
  int64_t next_id() const override;

  void reserve(std::size_t n) override;
  void compact() override;
  void reset() override;
  void save(const std::string& path) const override;

  // Rows held in storage, deleted ones included (size() + deleted not yet compacted).
  std::size_t stored_rows() const;

 private:
  struct State;
  std::unique_ptr<State> s_;
  explicit FlatIndex(std::unique_ptr<State> s);
};

}  // namespace hive::gpu
