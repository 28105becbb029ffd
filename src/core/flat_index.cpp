// FlatIndex: backend-neutral bookkeeping (ids, deletes, validation, files) over a backend's
// FlatStore, which holds the encoded rows and searches them. Every mutation validates its
// whole input first, so a throwing call leaves the index as it was.
#include "hive_gpu/flat_index.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <mutex>
#include <shared_mutex>
#include <unordered_map>

#include "core/backend.hpp"
#include "core/file_format.hpp"
#include "core/id_map.hpp"
#include "core/row_encoding.hpp"
#include "core/validate.hpp"
#include "hive_gpu/error.hpp"

namespace hive::gpu {

using detail::FlatStore;
using detail::StoreConfig;

struct FlatIndex::State {
  Context ctx;
  StoreConfig cfg;
  std::unique_ptr<FlatStore> store;
  detail::IdMap ids;
  // Searches share the lock; mutations take it alone, so concurrent searches are safe.
  mutable std::shared_mutex mu;

  State(const Context& c, StoreConfig cf) : ctx(c), cfg(cf), store(c.device()->make_flat_store(cf)) {}

  bool is_bits() const { return cfg.metric == Metric::Hamming; }

  void require_floats() const {
    if (is_bits())
      throw Error(ErrorCode::Unsupported, "a Hamming index takes packed bits (the uint8_t overloads), not floats");
  }
  void require_bits() const {
    if (!is_bits()) throw Error(ErrorCode::Unsupported, "packed-bit vectors need a Hamming index");
  }

  // Validates float rows and returns them in the storage encoding (normalised for Cosine).
  std::vector<uint8_t> encode(std::size_t n, const float* x, const char* what) const {
    return detail::encode_rows(cfg.dim, cfg.metric, cfg.storage, n, x, what);
  }

  // Appends encoded rows under ids known to be new; the store throws before changing anything.
  void append(std::size_t n, const void* encoded, const int64_t* new_ids) {
    if (n == 0) return;
    ids.reserve(ids.rows() + n);
    store->append(n, encoded);
    ids.append(n, new_ids);
  }

  // Replaces existing ids' rows in place and appends the rest.
  void upsert(std::size_t n, const uint8_t* encoded, const int64_t* up_ids) {
    const std::size_t rb = cfg.row_bytes();
    std::vector<uint8_t> fresh;
    std::vector<int64_t> fresh_ids;
    for (std::size_t i = 0; i < n; ++i) {
      if (!ids.contains(up_ids[i])) {
        fresh.insert(fresh.end(), encoded + i * rb, encoded + (i + 1) * rb);
        fresh_ids.push_back(up_ids[i]);
      }
    }
    append(fresh_ids.size(), fresh.data(), fresh_ids.data());  // the only step that can throw
    for (std::size_t i = 0; i < n; ++i) {
      const std::size_t row = ids.row_of(up_ids[i]);
      if (row < ids.rows() - fresh_ids.size()) store->write_row(row, encoded + i * rb);
    }
  }

  void search(std::size_t nq, const void* q, int k, float* distances, int64_t* out_ids) const {
    store->search(nq, q, k, distances, out_ids);
    ids.rows_to_ids(out_ids, nq * std::size_t(k));  // (the device never needs the id table)
  }
};

namespace {
// save() and load() move rows through a buffer of about this size, never the whole index.
std::size_t rows_per_file_chunk(std::size_t row_bytes) {
  constexpr std::size_t kChunkBytes = 16u << 20;
  return std::max<std::size_t>(1, kChunkBytes / row_bytes);
}

StoreConfig make_config(std::size_t dim, Metric metric, FlatOptions opt) {
  if (uint8_t(metric) > uint8_t(Metric::Hamming))
    throw Error(ErrorCode::UnknownMetric, "metric code " + std::to_string(int(metric)) + " is not a metric");
  if (dim == 0 || dim > (std::size_t(1) << 24))
    throw Error(ErrorCode::InvalidArgument, "dim = " + std::to_string(dim) + " is out of range [1, 2^24]");
  StoreConfig cfg{dim, metric, opt.storage, opt.stream};
  if (metric == Metric::Hamming) {
    if (dim % 8 != 0)
      throw Error(ErrorCode::InvalidArgument,
                  "a Hamming index needs dim (in bits) to be a multiple of 8, got " + std::to_string(dim));
    cfg.storage = ScalarType::Bits;
  } else if (opt.storage == ScalarType::Bits || uint8_t(opt.storage) > uint8_t(ScalarType::Bits)) {
    throw Error(ErrorCode::InvalidArgument, "storage " + std::string(to_string(opt.storage)) +
                                                " is for Hamming indexes; use f32, f16 or bf16");
  }
  return cfg;
}
}  // namespace

FlatIndex::FlatIndex(const Context& ctx, std::size_t dim, Metric metric, FlatOptions options)
    : s_(std::make_unique<State>(ctx, make_config(dim, metric, options))) {}
FlatIndex::FlatIndex(std::size_t dim, Metric metric, FlatOptions options)
    : FlatIndex(Context::open("auto"), dim, metric, options) {}
FlatIndex::FlatIndex(std::unique_ptr<State> s) : s_(std::move(s)) {}
FlatIndex::~FlatIndex() = default;
FlatIndex::FlatIndex(FlatIndex&&) noexcept = default;
FlatIndex& FlatIndex::operator=(FlatIndex&&) noexcept = default;

std::size_t FlatIndex::dim() const { return s_->cfg.dim; }
Metric FlatIndex::metric() const { return s_->cfg.metric; }
ScalarType FlatIndex::storage() const { return s_->cfg.storage; }
const Context& FlatIndex::context() const { return s_->ctx; }
std::size_t FlatIndex::size() const {
  std::shared_lock lock(s_->mu);
  return s_->ids.live();
}
std::size_t FlatIndex::stored_rows() const {
  std::shared_lock lock(s_->mu);
  return s_->ids.rows();
}
int64_t FlatIndex::next_id() const {
  std::shared_lock lock(s_->mu);
  return s_->ids.next_id();
}

void FlatIndex::add(std::size_t n, const float* x) {
  std::unique_lock lock(s_->mu);
  s_->require_floats();
  const auto enc = s_->encode(n, x, "vectors");
  const auto ids = s_->ids.sequential(n);
  s_->append(n, enc.data(), ids.data());
}

void FlatIndex::add_with_ids(std::size_t n, const float* x, const int64_t* ids) {
  std::unique_lock lock(s_->mu);
  s_->require_floats();
  s_->ids.check_new(n, ids);
  const auto enc = s_->encode(n, x, "vectors");
  s_->append(n, enc.data(), ids);
}

void FlatIndex::upsert(std::size_t n, const float* x, const int64_t* ids) {
  std::unique_lock lock(s_->mu);
  s_->require_floats();
  detail::check_pointer(ids, n, "ids");
  detail::check_ids(ids, n);
  const auto enc = s_->encode(n, x, "vectors");
  s_->upsert(n, enc.data(), ids);
}

void FlatIndex::search(std::size_t nq, const float* q, int k, float* distances, int64_t* ids) const {
  std::shared_lock lock(s_->mu);
  s_->require_floats();
  detail::check_k(k);
  detail::check_pointer(distances, nq, "distances");
  detail::check_pointer(ids, nq, "ids");
  std::vector<float> scratch;
  const float* ready = detail::prepare_queries(s_->cfg.dim, s_->cfg.metric, nq, q, scratch);
  if (nq == 0) return;
  s_->search(nq, ready, k, distances, ids);
}

void FlatIndex::add(std::size_t n, const uint8_t* bits) {
  std::unique_lock lock(s_->mu);
  s_->require_bits();
  detail::check_pointer(bits, n, "vectors");
  const auto ids = s_->ids.sequential(n);
  s_->append(n, bits, ids.data());
}

void FlatIndex::add_with_ids(std::size_t n, const uint8_t* bits, const int64_t* ids) {
  std::unique_lock lock(s_->mu);
  s_->require_bits();
  detail::check_pointer(bits, n, "vectors");
  s_->ids.check_new(n, ids);
  s_->append(n, bits, ids);
}

void FlatIndex::upsert(std::size_t n, const uint8_t* bits, const int64_t* ids) {
  std::unique_lock lock(s_->mu);
  s_->require_bits();
  detail::check_pointer(bits, n, "vectors");
  detail::check_pointer(ids, n, "ids");
  detail::check_ids(ids, n);
  s_->upsert(n, bits, ids);
}

void FlatIndex::search(std::size_t nq, const uint8_t* q, int k, float* distances, int64_t* ids) const {
  std::shared_lock lock(s_->mu);
  s_->require_bits();
  detail::check_k(k);
  detail::check_pointer(q, nq, "queries");
  detail::check_pointer(distances, nq, "distances");
  detail::check_pointer(ids, nq, "ids");
  if (nq == 0) return;
  s_->search(nq, q, k, distances, ids);
}

std::size_t FlatIndex::remove(std::size_t n, const int64_t* ids) {
  std::unique_lock lock(s_->mu);
  detail::check_pointer(ids, n, "ids");
  return s_->ids.remove_all(n, ids, [&](std::size_t row) { s_->store->set_deleted(row, true); });
}

bool FlatIndex::contains(int64_t id) const {
  std::shared_lock lock(s_->mu);
  return s_->ids.contains(id);
}

std::vector<float> FlatIndex::get(int64_t id) const {
  std::shared_lock lock(s_->mu);
  s_->require_floats();
  const std::size_t row = s_->ids.row_of(id);
  std::vector<uint8_t> raw(s_->cfg.row_bytes());
  s_->store->read_rows(row, 1, raw.data());
  return detail::decode_row(s_->cfg.dim, s_->cfg.storage, raw.data());
}

std::vector<uint8_t> FlatIndex::get_bits(int64_t id) const {
  std::shared_lock lock(s_->mu);
  s_->require_bits();
  std::vector<uint8_t> out(s_->cfg.row_bytes());
  s_->store->read_rows(s_->ids.row_of(id), 1, out.data());
  return out;
}

std::vector<int64_t> FlatIndex::ids() const {
  std::shared_lock lock(s_->mu);
  return s_->ids.live_ids();
}

void FlatIndex::reserve(std::size_t n) {
  std::unique_lock lock(s_->mu);
  s_->store->reserve(n);
  s_->ids.reserve(n);
}

void FlatIndex::compact() {
  std::unique_lock lock(s_->mu);
  if (s_->ids.live() == s_->ids.rows()) return;
  s_->store->compact(s_->ids.live_rows());
  s_->ids.compact();
}

void FlatIndex::reset() {
  std::unique_lock lock(s_->mu);
  s_->store->clear();
  s_->ids.clear();
}

void FlatIndex::save(const std::string& path) const {
  std::shared_lock lock(s_->mu);
  const std::size_t rb = s_->cfg.row_bytes();
  detail::AtomicFileWriter w(path);
  detail::FileHeader h;
  h.metric = s_->cfg.metric;
  h.storage = s_->cfg.storage;
  h.dim = s_->cfg.dim;
  h.count = s_->ids.live();
  h.next_id = s_->ids.next_id();
  w.write_header(h, rb);
  const auto live = s_->ids.live_ids();
  w.write_payload(live.data(), live.size() * sizeof(int64_t));
  // Rows in bounded chunks, skipping deleted ones: saving compacts on disk.
  const std::size_t chunk = rows_per_file_chunk(rb);
  const std::size_t rows = s_->ids.rows();
  std::vector<uint8_t> buf(std::min(chunk, rows) * rb);
  for (std::size_t first = 0; first < rows; first += chunk) {
    const std::size_t m = std::min(chunk, rows - first);
    s_->store->read_rows(first, m, buf.data());
    std::size_t out = 0;
    for (std::size_t r = 0; r < m; ++r) {
      if (s_->ids.id_at(first + r) == kNoId) continue;
      if (out != r) std::memmove(buf.data() + out * rb, buf.data() + r * rb, rb);
      ++out;
    }
    w.write_payload(buf.data(), out * rb);
  }
  w.commit();
}

FlatIndex FlatIndex::load(const std::string& path, const Context& ctx) {
  detail::FileReader r(path);
  const auto& h = r.header();
  if (h.kind != detail::kKindFlat)
    throw Error(ErrorCode::Unsupported, "'" + path + "' holds an HNSW index: open it with HnswIndex::load");
  auto s = std::make_unique<State>(ctx, make_config(h.dim, h.metric, FlatOptions{h.storage}));
  std::vector<int64_t> ids(h.count);
  r.read_payload(ids.data(), ids.size() * sizeof(int64_t));
  const std::size_t rb = s->cfg.row_bytes();
  const std::size_t chunk = rows_per_file_chunk(rb);
  std::vector<uint8_t> buf(std::min<std::size_t>(chunk, h.count) * rb);
  s->store->reserve(h.count);
  for (std::size_t first = 0; first < h.count; first += chunk) {
    const std::size_t m = std::min<std::size_t>(chunk, h.count - first);
    r.read_payload(buf.data(), m * rb);
    s->append(m, buf.data(), ids.data() + first);
  }
  r.finish();
  // Checked after the checksum, so a damaged id list reports as damage, not as bad ids.
  try {
    detail::check_ids(ids.data(), ids.size());
  } catch (const Error& e) {
    throw Error(ErrorCode::CorruptFile, "'" + path + "': " + e.what());
  }
  if (!ids.empty() && *std::max_element(ids.begin(), ids.end()) >= h.next_id &&
      h.next_id != std::numeric_limits<int64_t>::max())
    throw Error(ErrorCode::CorruptFile, "'" + path + "': next id is not above every stored id");
  s->ids.set_next_id(h.next_id);
  return FlatIndex(std::move(s));
}

FlatIndex FlatIndex::load(const std::string& path) { return load(path, Context::open("auto")); }

}  // namespace hive::gpu
