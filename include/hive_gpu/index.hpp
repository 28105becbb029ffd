// hive-gpu: the contract every index keeps (modelled on FAISS's Index).
#pragma once
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "hive_gpu/types.hpp"

namespace hive::gpu {

// Row-major nq x k results, best first. Slots no vector filled hold id kNoId and the
// metric's worst value (+inf, or -inf for InnerProduct).
struct SearchResult {
  std::size_t nq = 0;
  int k = 0;
  std::vector<float> distances;
  std::vector<int64_t> ids;

  float distance(std::size_t q, int j) const { return distances[q * std::size_t(k) + std::size_t(j)]; }
  int64_t id(std::size_t q, int j) const { return ids[q * std::size_t(k) + std::size_t(j)]; }
};

// Every call validates its whole input before it changes anything: on Error the index is as
// it was. Float inputs are row-major n x dim; Hamming indexes take packed bits (dim / 8 bytes
// per row, bit i of a vector is bit (i % 8) of byte i / 8) through the uint8_t overloads.
class Index {
 public:
  virtual ~Index() = default;

  virtual std::size_t dim() const = 0;
  virtual Metric metric() const = 0;
  virtual ScalarType storage() const = 0;
  // Live (not deleted) vectors.
  virtual std::size_t size() const = 0;

  // Appends with ids next_id(), next_id() + 1, ... (one past the largest id ever held).
  virtual void add(std::size_t n, const float* x) = 0;
  // Appends with caller ids. Throws IdExists if an id is already present, DuplicateId if
  // one repeats in the call.
  virtual void add_with_ids(std::size_t n, const float* x, const int64_t* ids) = 0;
  // Replaces the vectors of ids already present and appends the others.
  virtual void upsert(std::size_t n, const float* x, const int64_t* ids) = 0;
  // Writes nq x k distances and ids into caller buffers (the zero-copy form).
  virtual void search(std::size_t nq, const float* q, int k, float* distances, int64_t* ids) const = 0;
  SearchResult search(std::size_t nq, const float* q, int k) const;

  // Packed-bit forms, for Hamming indexes. Other indexes throw Unsupported.
  virtual void add(std::size_t n, const uint8_t* bits);
  virtual void add_with_ids(std::size_t n, const uint8_t* bits, const int64_t* ids);
  virtual void upsert(std::size_t n, const uint8_t* bits, const int64_t* ids);
  virtual void search(std::size_t nq, const uint8_t* q, int k, float* distances, int64_t* ids) const;
  SearchResult search(std::size_t nq, const uint8_t* q, int k) const;

  // Length-checked forms: x.size() must be a multiple of dim() (DimensionMismatch otherwise)
  // and ids.size() must equal the number of vectors (InvalidArgument otherwise).
  void add(std::span<const float> x);
  void add_with_ids(std::span<const float> x, std::span<const int64_t> ids);
  void upsert(std::span<const float> x, std::span<const int64_t> ids);
  SearchResult search(std::span<const float> q, int k) const;

  // Soft delete: the vectors stop appearing in results at once; their memory is reclaimed by
  // compact(). Unknown ids are ignored. Returns how many were removed.
  virtual std::size_t remove(std::size_t n, const int64_t* ids) = 0;
  std::size_t remove(const std::vector<int64_t>& ids) { return remove(ids.size(), ids.data()); }
  virtual bool contains(int64_t id) const = 0;
  // The stored vector, decoded to float (normalised for Cosine). Throws UnknownId.
  virtual std::vector<float> get(int64_t id) const = 0;
  // The stored packed bits of a Hamming index. Throws UnknownId.
  virtual std::vector<uint8_t> get_bits(int64_t id) const;
  // Ids of live vectors, in storage order.
  virtual std::vector<int64_t> ids() const = 0;
  virtual int64_t next_id() const = 0;

  virtual void reserve(std::size_t n) = 0;
  // Drops deleted rows from storage; ids are kept.
  virtual void compact() = 0;
  // Removes every vector.
  virtual void reset() = 0;

  // Writes the index to path atomically (temporary file, fsync, rename).
  virtual void save(const std::string& path) const = 0;
};

// The kind of index a file written by save() holds: "flat" (FlatIndex::load) or "hnsw"
// (HnswIndex::load). Reads and checks the header only; throws Io, CorruptFile or
// VersionMismatch.
std::string index_file_kind(const std::string& path);

}  // namespace hive::gpu
