// Defaults of the Index contract: the packed-bit overloads exist only for Hamming indexes.
#include "core/validate.hpp"
#include "hive_gpu/error.hpp"
#include "hive_gpu/index.hpp"

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

void Index::add(std::size_t, const uint8_t*) { no_bits(); }
void Index::add_with_ids(std::size_t, const uint8_t*, const int64_t*) { no_bits(); }
void Index::upsert(std::size_t, const uint8_t*, const int64_t*) { no_bits(); }
void Index::search(std::size_t, const uint8_t*, int, float*, int64_t*) const { no_bits(); }
std::vector<uint8_t> Index::get_bits(int64_t) const { no_bits(); }

}  // namespace hive::gpu
