// Conformance: save / load. Round trips must reproduce the index exactly; damaged, truncated,
// foreign or newer files must be refused with Io / CorruptFile / VersionMismatch; a failed
// save must leave no temporary file and never destroy the file already at the path.
#include <sys/resource.h>

#include <csignal>

#include "reference.hpp"

namespace conformance {
namespace {

using IoTest = IndexTest;
class FileDamageTest : public IndexTest {};

// Everything observable about an index's contents.
void expect_same_contents(const FlatIndex& a, const FlatIndex& b, const std::string& what) {
  EXPECT_EQ(a.dim(), b.dim()) << what;
  EXPECT_EQ(a.metric(), b.metric()) << what;
  EXPECT_EQ(a.storage(), b.storage()) << what;
  EXPECT_EQ(a.size(), b.size()) << what;
  EXPECT_EQ(a.next_id(), b.next_id()) << what;
  auto ia = a.ids(), ib = b.ids();
  std::sort(ia.begin(), ia.end());
  std::sort(ib.begin(), ib.end());
  ASSERT_EQ(ia, ib) << what;
  for (int64_t id : ia) {
    if (a.metric() == Metric::Hamming)
      ASSERT_EQ(a.get_bits(id), b.get_bits(id)) << what << ": id " << id;
    else
      ASSERT_EQ(a.get(id), b.get(id)) << what << ": id " << id;
  }
}

// Identical results: equal distances, equal ids except where a distance ties its neighbour.
void expect_same_results(const SearchResult& a, const SearchResult& b, const std::string& what) {
  ASSERT_EQ(a.distances, b.distances) << what;
  ASSERT_EQ(a.ids.size(), b.ids.size()) << what;
  const std::size_t k = std::size_t(a.k);
  for (std::size_t i = 0; i < a.ids.size(); ++i) {
    const std::size_t j = i % k;
    const bool tied = (j > 0 && a.distances[i - 1] == a.distances[i]) ||
                      (j + 1 < k && a.distances[i + 1] == a.distances[i]);
    if (!tied) {
      EXPECT_EQ(a.ids[i], b.ids[i]) << what << ": slot " << i;
    }
  }
}

// CRC-32C (Castagnoli, reflected 0x82F63B78), bit by bit.
uint32_t crc32c(const uint8_t* p, std::size_t n) {
  uint32_t c = 0xffffffffu;
  for (std::size_t i = 0; i < n; ++i) {
    c ^= p[i];
    for (int b = 0; b < 8; ++b) c = (c >> 1) ^ (0x82f63b78u & (0u - (c & 1u)));
  }
  return ~c;
}

// Loads `path` expecting an Error whose code is one of `allowed`; returns the code.
ErrorCode load_error(const std::string& path, const Context& ctx, std::initializer_list<ErrorCode> allowed,
                     const std::string& what) {
  const ErrorCode code = error_code_of([&] { (void)FlatIndex::load(path, ctx); }, what);
  bool ok = false;
  for (ErrorCode c : allowed) ok = ok || c == code;
  EXPECT_TRUE(ok) << what << ": load threw " << hive::gpu::to_string(code);
  return code;
}

// An index with caller ids (negative, beyond 32 bits) and removals, the largest id among them.
struct Fixture {
  FlatIndex idx;
  Model m;
};
Fixture history(const IndexTest& t, std::size_t dim, std::size_t n) {
  Fixture f{t.make(dim), t.model(dim)};
  t.add(f.idx, f.m, t.data(n, dim, 10));
  const int64_t big = int64_t(1) << 35;
  t.add_with_ids(f.idx, f.m, t.data(4, dim, 11), {-3, big, 77777, -(int64_t(1) << 50)});
  std::vector<int64_t> gone = {big, 0};
  for (std::size_t i = 1; i < n; i += 4) gone.push_back(int64_t(i));
  EXPECT_EQ(f.idx.remove(gone), gone.size());
  for (int64_t id : gone) f.m.erase(id);
  return f;
}

// ---------------------------------------------------------------------------------------------
TEST_P(IoTest, RoundTrip) {
  TempDir td;
  const std::size_t dim = dim_for(19);
  auto f = history(*this, dim, 150);
  const std::string path = td.file("index.hive");
  f.idx.save(path);
  EXPECT_EQ(td.entries(), std::vector<std::string>{"index.hive"}) << "save left other files behind";
  const auto loaded = FlatIndex::load(path, ctx());
  EXPECT_EQ(loaded.context().info().backend, GetParam().backend);
  EXPECT_EQ(loaded.next_id(), (int64_t(1) << 35) + 1) << "next_id survives removal of the largest id";
  expect_same_contents(f.idx, loaded, "loaded");
  for (int64_t id : {int64_t(0), int64_t(1), int64_t(1) << 35}) EXPECT_FALSE(loaded.contains(id)) << id;
  const auto q = data(6, dim, 12);
  expect_matches(loaded, f.m, q, 20, case_name("loaded"));
  expect_matches(loaded, f.m, q, 200, case_name("loaded, k > size"));
  expect_same_results(do_search(f.idx, q, 20), do_search(loaded, q, 20), "original vs loaded");
  // The default-context overload.
  const auto auto_loaded = FlatIndex::load(path);
  expect_same_contents(f.idx, auto_loaded, "loaded on auto");
  expect_matches(auto_loaded, f.m, q, 20, case_name("loaded on auto"));
}

// A loaded index keeps working: ids continue from next_id, and it saves again.
TEST_P(IoTest, LoadedIndexIsMutable) {
  TempDir td;
  const std::size_t dim = dim_for(11);
  auto f = history(*this, dim, 40);
  f.idx.save(td.file("a"));
  auto loaded = FlatIndex::load(td.file("a"), ctx());
  add(loaded, f.m, data(3, dim, 20));
  EXPECT_TRUE(loaded.contains((int64_t(1) << 35) + 1));
  upsert(loaded, f.m, data(2, dim, 21), {2, 0});
  EXPECT_EQ(loaded.remove(std::vector<int64_t>{3, 77777}), 2u);
  f.m.erase(3);
  f.m.erase(77777);
  loaded.compact();
  const auto q = data(4, dim, 22);
  expect_matches(loaded, f.m, q, 10, case_name("mutated after load"));
  loaded.save(td.file("b"));
  const auto again = FlatIndex::load(td.file("b"), ctx());
  expect_same_contents(loaded, again, "saved twice");
  expect_matches(again, f.m, q, 10, case_name("reloaded"));
}

TEST_P(IoTest, EmptyIndexRoundTrip) {
  TempDir td;
  const std::size_t dim = dim_for(5);
  const auto fresh = make(dim);
  fresh.save(td.file("fresh"));
  const auto a = FlatIndex::load(td.file("fresh"), ctx());
  expect_same_contents(fresh, a, "never filled");
  EXPECT_EQ(a.next_id(), 0);
  const auto q = data(2, dim, 30);
  expect_matches(a, model(dim), q, 4, case_name("empty loaded"));
  // Filled then emptied: next_id survives.
  auto emptied = make(dim);
  do_add(emptied, data(10, dim, 31));
  emptied.remove(emptied.ids());
  emptied.save(td.file("emptied"));
  const auto b = FlatIndex::load(td.file("emptied"), ctx());
  EXPECT_EQ(b.size(), 0u);
  EXPECT_EQ(b.next_id(), 10);
  expect_matches(b, model(dim), q, 4, case_name("emptied loaded"));
}

// Saving over an existing file replaces it.
TEST_P(IoTest, OverwriteExistingFile) {
  TempDir td;
  const std::size_t dim = dim_for(6);
  const std::string path = td.file("x.hive");
  auto first = make(dim);
  do_add(first, data(30, dim, 40));
  first.save(path);
  auto second = make(dim);
  auto m = model(dim);
  add_with_ids(second, m, data(12, dim, 41), {1000, 1001, 1002, 1003, 1004, 1005, 6, 7, 8, 9, 10, 11});
  second.save(path);
  EXPECT_EQ(td.entries(), std::vector<std::string>{"x.hive"});
  const auto loaded = FlatIndex::load(path, ctx());
  expect_same_contents(second, loaded, "overwritten");
  expect_matches(loaded, m, data(3, dim, 42), 5, case_name("overwritten"));
}

// ---------------------------------------------------------------------------------------------
// Damaged files.

// Every prefix class: empty, inside the header, header only, inside the payload, missing the
// last byte.
TEST_P(FileDamageTest, TruncatedFilesRejected) {
  TempDir td;
  auto f = history(*this, dim_for(5), 20);
  f.idx.save(td.file("good"));
  const auto bytes = read_bytes(td.file("good"));
  ASSERT_GT(bytes.size(), 80u);
  const std::size_t n = bytes.size();
  for (std::size_t len : {std::size_t(0), std::size_t(1), std::size_t(7), std::size_t(8), std::size_t(20),
                          std::size_t(63), std::size_t(64), std::size_t(65), std::size_t(72), n / 2, n - 9, n - 8,
                          n - 5, n - 4, n - 1}) {
    const std::string path = td.file("cut" + std::to_string(len));
    write_bytes(path, std::vector<uint8_t>(bytes.begin(), bytes.begin() + std::ptrdiff_t(len)));
    load_error(path, ctx(), {ErrorCode::CorruptFile}, "truncated to " + std::to_string(len) + " of " +
                                                          std::to_string(n) + " bytes");
  }
}

// One changed byte anywhere: refused as CorruptFile (or VersionMismatch where the version
// field changed), unless the byte is unused, in which case the index loads unchanged.
TEST_P(FileDamageTest, FlippedBytesDetected) {
  TempDir td;
  const std::size_t dim = dim_for(3);
  auto f = history(*this, dim, 6);
  f.idx.save(td.file("good"));
  const auto bytes = read_bytes(td.file("good"));
  ASSERT_FALSE(bytes.empty());
  const std::string path = td.file("bad");
  std::size_t accepted = 0;
  for (uint8_t mask : {uint8_t(0x01), uint8_t(0x80), uint8_t(0xff)}) {
    for (std::size_t pos = 0; pos < bytes.size(); ++pos) {
      auto damaged = bytes;
      damaged[pos] ^= mask;
      write_bytes(path, damaged);
      const std::string what = "byte " + std::to_string(pos) + " of " + std::to_string(bytes.size()) + " xor " +
                               std::to_string(int(mask));
      try {
        const auto loaded = FlatIndex::load(path, ctx());
        ++accepted;
        expect_same_contents(f.idx, loaded, what + " was accepted, so the index must be unchanged");
      } catch (const Error& e) {
        EXPECT_TRUE(e.code() == ErrorCode::CorruptFile || e.code() == ErrorCode::VersionMismatch)
            << what << ": " << e.what();
        EXPECT_GT(std::string(e.what()).size(), hive::gpu::to_string(e.code()).size() + 2) << what;
      } catch (const std::exception& e) {
        ADD_FAILURE() << what << ": non-hive exception " << e.what();
      }
      if (HasFailure()) return;
    }
  }
  // Only a handful of reserved bytes may go unchecked.
  EXPECT_LE(accepted, 3u * 8u);
}

// Garbage appended after a valid file.
TEST_P(FileDamageTest, TrailingGarbage) {
  TempDir td;
  auto f = history(*this, dim_for(4), 10);
  f.idx.save(td.file("good"));
  for (std::size_t extra : {std::size_t(1), std::size_t(8), std::size_t(100)}) {
    auto bytes = read_bytes(td.file("good"));
    bytes.resize(bytes.size() + extra, 0xab);
    const std::string path = td.file("padded" + std::to_string(extra));
    write_bytes(path, bytes);
    try {
      const auto loaded = FlatIndex::load(path, ctx());
      expect_same_contents(f.idx, loaded, std::to_string(extra) + " trailing bytes were accepted");
    } catch (const Error& e) {
      EXPECT_EQ(hive::gpu::to_string(e.code()), hive::gpu::to_string(ErrorCode::CorruptFile)) << e.what();
    }
  }
}

// Files that were never index files, paths that are not files.
TEST_P(FileDamageTest, ForeignFilesAndBadPaths) {
  TempDir td;
  Rng rng(77);
  for (std::size_t n : {std::size_t(5), std::size_t(64), std::size_t(100), std::size_t(4096)}) {
    std::vector<uint8_t> junk(n);
    for (auto& b : junk) b = rng.byte();
    const std::string path = td.file("random" + std::to_string(n));
    write_bytes(path, junk);
    load_error(path, ctx(), {ErrorCode::CorruptFile}, std::to_string(n) + " random bytes");
  }
  {
    const std::string text = "This is a text file, not an index.\nIt has a few lines.\n" + std::string(200, 'x') + "\n";
    write_bytes(td.file("text.txt"), std::vector<uint8_t>(text.begin(), text.end()));
    load_error(td.file("text.txt"), ctx(), {ErrorCode::CorruptFile}, "a text file");
  }
  load_error(td.file("does-not-exist"), ctx(), {ErrorCode::Io}, "a missing file");
  load_error(td.file("no-dir/does-not-exist"), ctx(), {ErrorCode::Io}, "a file in a missing directory");
  std::filesystem::create_directory(td.file("a-directory"));
  load_error(td.file("a-directory"), ctx(), {ErrorCode::Io, ErrorCode::CorruptFile}, "a directory");
}

// A file from a newer format version. Uses the header layout of docs/file-format.md: format
// version (u32) at offset 8, CRC-32C of bytes 0..55 at offset 56.
TEST_P(FileDamageTest, NewerVersionRejected) {
  TempDir td;
  auto f = history(*this, dim_for(4), 10);
  f.idx.save(td.file("good"));
  const auto bytes = read_bytes(td.file("good"));
  ASSERT_GE(bytes.size(), 64u);
  uint32_t version = 0, crc = 0;
  std::memcpy(&version, bytes.data() + 8, 4);
  std::memcpy(&crc, bytes.data() + 56, 4);
  ASSERT_EQ(crc, crc32c(bytes.data(), 56)) << "the header no longer matches docs/file-format.md";
  ASSERT_GE(version, 1u);
  for (uint32_t newer : {version + 1, version + 100, 0xffffffffu}) {
    auto v = bytes;
    std::memcpy(v.data() + 8, &newer, 4);
    const uint32_t fixed = crc32c(v.data(), 56);
    std::memcpy(v.data() + 56, &fixed, 4);
    write_bytes(td.file("newer"), v);
    load_error(td.file("newer"), ctx(), {ErrorCode::VersionMismatch}, "format version " + std::to_string(newer));
  }
}

// ---------------------------------------------------------------------------------------------
// Failed saves.

TEST_P(FileDamageTest, SaveIntoMissingDirectory) {
  TempDir td;
  auto f = history(*this, dim_for(4), 10);
  EXPECT_HIVE_ERROR(ErrorCode::Io, f.idx.save(td.file("missing/index.hive")));
  EXPECT_TRUE(td.entries().empty()) << "a failed save left files behind";
  EXPECT_EQ(f.idx.size(), f.m.size());
}

// The path is a directory: the save fails (Io) after writing its temporary file, which must
// be gone; the directory is untouched.
TEST_P(FileDamageTest, SaveOntoDirectory) {
  TempDir td;
  auto f = history(*this, dim_for(4), 10);
  std::filesystem::create_directory(td.file("target"));
  EXPECT_HIVE_ERROR(ErrorCode::Io, f.idx.save(td.file("target")));
  EXPECT_EQ(td.entries(), std::vector<std::string>{"target"}) << "a failed save left files behind";
  EXPECT_TRUE(std::filesystem::is_directory(td.file("target")));
  EXPECT_TRUE(std::filesystem::is_empty(td.file("target")));
}

// A save that fails part way (the file size limit is hit while writing) keeps the good file
// already at the path, and leaves no temporary file.
TEST_P(FileDamageTest, FailedSaveKeepsPreviousFile) {
  TempDir td;
  const std::size_t dim = dim_for(64);
  const std::string path = td.file("index.hive");
  auto small = make(dim);
  auto m = model(dim);
  add(small, m, data(3, dim, 50));
  small.save(path);
  const auto good = read_bytes(path);
  auto big = make(dim);
  do_add(big, data(3000, dim, 51));  // >= 3000 * (8 + 8) bytes

  rlimit old{};
  ASSERT_EQ(::getrlimit(RLIMIT_FSIZE, &old), 0);
  rlimit lim = old;
  lim.rlim_cur = 16 * 1024;
  ASSERT_GT(lim.rlim_cur, good.size());
  auto old_handler = std::signal(SIGXFSZ, SIG_IGN);
  ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &lim), 0);
  ErrorCode code = ErrorCode::Internal;
  try {
    big.save(path);
  } catch (const Error& e) {
    code = e.code();
  } catch (...) {
  }
  ::setrlimit(RLIMIT_FSIZE, &old);
  std::signal(SIGXFSZ, old_handler);

  EXPECT_EQ(hive::gpu::to_string(code), hive::gpu::to_string(ErrorCode::Io)) << "saving past the file size limit";
  EXPECT_EQ(td.entries(), std::vector<std::string>{"index.hive"}) << "a failed save left files behind";
  EXPECT_EQ(read_bytes(path), good) << "a failed save damaged the file already there";
  const auto loaded = FlatIndex::load(path, ctx());
  expect_same_contents(small, loaded, "previous file");
}

INSTANTIATE_TEST_SUITE_P(Conformance, IoTest, testing::ValuesIn(all_params()), param_name);
INSTANTIATE_TEST_SUITE_P(Conformance, FileDamageTest, testing::ValuesIn(metric_params()), param_name);

}  // namespace
}  // namespace conformance
