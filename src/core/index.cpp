// Defaults of the Index contract: the packed-bit overloads exist only for Hamming indexes.
#include "core/file_format.hpp"
#include "core/validate.hpp"
#include "hive_gpu/error.hpp"
#include "hive_gpu/index.hpp"

#include <string>

namespace hive::gpu {

namespace {
[[noreturn]] void no_bits() {
  throw Error(ErrorCode::Unsupported, "packed-bit vectors need a Hamming index; this index takes floats");
}
}  // namespace

namespace {
// k is checked before the nq x k result is allocated: a huge k must be an InvalidK error,
// not an attempt to allocate it.
template <class Q>
SearchResult search_into_new(const Index& index, std::size_t nq, const Q* q, int k) {
  detail::check_k(k);
  SearchResult r{nq, k, std::vector<float>(nq * std::size_t(k)), std::vector<int64_t>(nq * std::size_t(k))};
  index.search(nq, q, k, r.distances.data(), r.ids.data());
  return r;
}
}  // namespace

SearchResult Index::search(std::size_t nq, const float* q, int k) const { return search_into_new(*this, nq, q, k); }
SearchResult Index::search(std::size_t nq, const uint8_t* q, int k) const { return search_into_new(*this, nq, q, k); }

namespace {
// Rows in a flat span of floats; throws DimensionMismatch unless its length is whole rows.
std::size_t rows_in(std::span<const float> x, std::size_t dim, const char* what) {
  if (x.size() % dim != 0)
    throw Error(ErrorCode::DimensionMismatch, std::string(what) + " has " + std::to_string(x.size()) +
                                                  " floats, not a multiple of the index dimension " +
                                                  std::to_string(dim));
  return x.size() / dim;
}
void check_id_count(std::size_t rows, std::size_t ids) {
  if (rows != ids)
    throw Error(ErrorCode::InvalidArgument,
                std::to_string(rows) + " vectors but " + std::to_string(ids) + " ids");
}
}  // namespace

void Index::add(std::span<const float> x) { add(rows_in(x, dim(), "vectors"), x.data()); }
void Index::add_with_ids(std::span<const float> x, std::span<const int64_t> ids) {
  const std::size_t n = rows_in(x, dim(), "vectors");
  check_id_count(n, ids.size());
  add_with_ids(n, x.data(), ids.data());
}
void Index::upsert(std::span<const float> x, std::span<const int64_t> ids) {
  const std::size_t n = rows_in(x, dim(), "vectors");
  check_id_count(n, ids.size());
  upsert(n, x.data(), ids.data());
}
SearchResult Index::search(std::span<const float> q, int k) const {
  return search(rows_in(q, dim(), "queries"), q.data(), k);
}

void Index::add(std::size_t, const uint8_t*) { no_bits(); }
void Index::add_with_ids(std::size_t, const uint8_t*, const int64_t*) { no_bits(); }
void Index::upsert(std::size_t, const uint8_t*, const int64_t*) { no_bits(); }
void Index::search(std::size_t, const uint8_t*, int, float*, int64_t*) const { no_bits(); }
std::vector<uint8_t> Index::get_bits(int64_t) const { no_bits(); }

}  // namespace hive::gpu

namespace hive::gpu {

std::string index_file_kind(const std::string& path) {
  const detail::FileReader r(path);
  return r.header().kind == detail::kKindHnsw ? "hnsw" : "flat";
}

}  // namespace hive::gpu
