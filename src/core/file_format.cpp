#include "core/file_format.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <bit>
#include <cerrno>
#include <cstring>
#include <filesystem>

#include "hive_gpu/error.hpp"

static_assert(std::endian::native == std::endian::little,
              "the file format is little-endian; add byte swapping before porting to big-endian hosts");

namespace hive::gpu::detail {

namespace {

constexpr char kMagic[8] = {'H', 'I', 'V', 'E', 'G', 'P', 'U', '\0'};
constexpr char kEndMagic[4] = {'H', 'E', 'N', 'D'};

// Slicing-by-one table for the portable path; the SSE4.2 instruction handles 8 bytes a cycle.
struct CrcTable {
  uint32_t t[256];
  CrcTable() {
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int j = 0; j < 8; ++j) c = (c >> 1) ^ (0x82f63b78u & (0u - (c & 1u)));
      t[i] = c;
    }
  }
};

uint32_t crc32c_portable(uint32_t crc, const uint8_t* p, std::size_t n) {
  static const CrcTable table;
  for (std::size_t i = 0; i < n; ++i) crc = table.t[(crc ^ p[i]) & 0xffu] ^ (crc >> 8);
  return crc;
}

#if defined(__x86_64__)
__attribute__((target("sse4.2"))) uint32_t crc32c_sse42(uint32_t crc, const uint8_t* p, std::size_t n) {
  uint64_t c = crc;
  for (; n >= 8; n -= 8, p += 8) {
    uint64_t v;
    std::memcpy(&v, p, 8);
    c = __builtin_ia32_crc32di(c, v);
  }
  uint32_t c32 = uint32_t(c);
  for (; n > 0; --n, ++p) c32 = __builtin_ia32_crc32qi(c32, *p);
  return c32;
}
#endif

template <class T>
void put(uint8_t* buf, std::size_t off, T v) {
  std::memcpy(buf + off, &v, sizeof(T));
}
template <class T>
T get(const uint8_t* buf, std::size_t off) {
  T v;
  std::memcpy(&v, buf + off, sizeof(T));
  return v;
}

std::string errno_text() { return std::strerror(errno); }

}  // namespace

uint32_t crc32c(uint32_t crc, const void* data, std::size_t n) {
  const auto* p = static_cast<const uint8_t*>(data);
  crc = ~crc;
#if defined(__x86_64__)
  static const bool hw = __builtin_cpu_supports("sse4.2");
  crc = hw ? crc32c_sse42(crc, p, n) : crc32c_portable(crc, p, n);
#else
  crc = crc32c_portable(crc, p, n);
#endif
  return ~crc;
}

// ---------------------------------------------------------------------------------------------
AtomicFileWriter::AtomicFileWriter(const std::string& path) : path_(path) {
  static std::atomic<unsigned> counter{0};
  tmp_ = path + ".tmp." + std::to_string(::getpid()) + "." + std::to_string(counter++);
  f_ = std::fopen(tmp_.c_str(), "wb");
  if (!f_) throw Error(ErrorCode::Io, "cannot create '" + tmp_ + "' to save '" + path + "': " + errno_text());
}

AtomicFileWriter::~AtomicFileWriter() {
  if (f_) {
    std::fclose(f_);
    std::remove(tmp_.c_str());
  }
}

void AtomicFileWriter::write_raw(const void* data, std::size_t n) {
  if (n && std::fwrite(data, 1, n, f_) != n)
    throw Error(ErrorCode::Io, "writing '" + tmp_ + "' failed: " + errno_text());
}

void AtomicFileWriter::write_header(const FileHeader& h, uint64_t row_bytes) {
  uint8_t buf[kHeaderBytes] = {};
  std::memcpy(buf, kMagic, 8);
  put<uint32_t>(buf, 8, kFormatVersion);
  put<uint32_t>(buf, 12, uint32_t(kHeaderBytes));
  buf[16] = h.kind;
  buf[17] = uint8_t(h.metric);
  buf[18] = uint8_t(h.storage);
  put<uint64_t>(buf, 24, h.dim);
  put<uint64_t>(buf, 32, h.count);
  put<int64_t>(buf, 40, h.next_id);
  put<uint64_t>(buf, 48, h.count * (8 + row_bytes) + h.extra_bytes);
  put<uint32_t>(buf, 56, crc32c(0, buf, 56));
  write_raw(buf, sizeof buf);
}

void AtomicFileWriter::write_payload(const void* data, std::size_t n) {
  payload_crc_ = crc32c(payload_crc_, data, n);
  write_raw(data, n);
}

void AtomicFileWriter::commit() {
  uint8_t trailer[kTrailerBytes];
  put<uint32_t>(trailer, 0, payload_crc_);
  std::memcpy(trailer + 4, kEndMagic, 4);
  write_raw(trailer, sizeof trailer);
  // Data must be on disk before the rename makes it visible, or a crash could leave an
  // empty file under the old name.
  if (std::fflush(f_) != 0 || ::fsync(::fileno(f_)) != 0)
    throw Error(ErrorCode::Io, "flushing '" + tmp_ + "' failed: " + errno_text());
  const int rc = std::fclose(f_);
  f_ = nullptr;
  if (rc != 0) {
    std::remove(tmp_.c_str());
    throw Error(ErrorCode::Io, "closing '" + tmp_ + "' failed: " + errno_text());
  }
  if (std::rename(tmp_.c_str(), path_.c_str()) != 0) {
    const std::string why = errno_text();
    std::remove(tmp_.c_str());
    throw Error(ErrorCode::Io, "renaming '" + tmp_ + "' to '" + path_ + "' failed: " + why);
  }
  // Persist the directory entry too (best effort: some filesystems refuse fsync on dirs).
  std::string dir = std::filesystem::path(path_).parent_path().string();
  if (dir.empty()) dir = ".";
  if (int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY); fd >= 0) {
    (void)::fsync(fd);
    ::close(fd);
  }
}

// ---------------------------------------------------------------------------------------------
FileReader::FileReader(const std::string& path) : path_(path) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec))
    throw Error(ErrorCode::Io, "cannot open '" + path + "': it is a directory");
  f_ = std::fopen(path.c_str(), "rb");
  if (!f_) throw Error(ErrorCode::Io, "cannot open '" + path + "': " + errno_text());
  const auto file_size = std::filesystem::file_size(path, ec);
  if (ec) throw Error(ErrorCode::Io, "cannot stat '" + path + "': " + ec.message());

  uint8_t buf[kHeaderBytes];
  const std::size_t got = std::fread(buf, 1, sizeof buf, f_);
  if (got >= 8 && std::memcmp(buf, kMagic, 8) != 0) corrupt("not a hive-gpu index file (bad magic)");
  if (got < sizeof buf) corrupt("truncated header (" + std::to_string(file_size) + " bytes)");
  const uint32_t version = get<uint32_t>(buf, 8);
  if (version > kFormatVersion)
    throw Error(ErrorCode::VersionMismatch, "'" + path + "' has format version " + std::to_string(version) +
                                                "; this library reads up to " + std::to_string(kFormatVersion));
  if (get<uint32_t>(buf, 56) != crc32c(0, buf, 56)) corrupt("header checksum mismatch");
  if (version == 0 || get<uint32_t>(buf, 12) != kHeaderBytes) corrupt("bad header size or version");

  header_.kind = buf[16];
  header_.metric = Metric(buf[17]);
  header_.storage = ScalarType(buf[18]);
  header_.dim = get<uint64_t>(buf, 24);
  header_.count = get<uint64_t>(buf, 32);
  header_.next_id = get<int64_t>(buf, 40);
  const uint64_t payload = get<uint64_t>(buf, 48);

  if (header_.kind != kKindFlat && header_.kind != kKindHnsw)
    corrupt("unknown index kind " + std::to_string(header_.kind));
  if (buf[17] > uint8_t(Metric::Hamming)) corrupt("unknown metric code " + std::to_string(buf[17]));
  if (buf[18] > uint8_t(ScalarType::Bits)) corrupt("unknown storage code " + std::to_string(buf[18]));
  const bool bits = header_.storage == ScalarType::Bits;
  if (bits != (header_.metric == Metric::Hamming)) corrupt("storage type does not match the metric");
  if (header_.dim == 0 || header_.dim > (uint64_t(1) << 24) || (bits && header_.dim % 8 != 0))
    corrupt("bad dimension " + std::to_string(header_.dim));
  const uint64_t row = 8 + row_bytes(header_.storage, header_.dim);
  // Flat files hold rows only; HNSW files a graph after them (its size is checked by the reader
  // of the graph, which knows its layout).
  if (header_.count > (uint64_t(1) << 40) || payload < header_.count * row ||
      (header_.kind == kKindFlat && payload != header_.count * row))
    corrupt("inconsistent payload size");
  header_.extra_bytes = payload - header_.count * row;
  if (file_size != kHeaderBytes + payload + kTrailerBytes)
    corrupt("file is " + std::to_string(file_size) + " bytes, header promises " +
            std::to_string(kHeaderBytes + payload + kTrailerBytes) + " (truncated or padded)");
}

FileReader::~FileReader() {
  if (f_) std::fclose(f_);
}

void FileReader::corrupt(const std::string& why) const {
  throw Error(ErrorCode::CorruptFile, "'" + path_ + "': " + why);
}

void FileReader::read_payload(void* out, std::size_t n) {
  if (n && std::fread(out, 1, n, f_) != n) corrupt("unexpected end of file");
  payload_crc_ = crc32c(payload_crc_, out, n);
}

void FileReader::finish() {
  uint8_t trailer[kTrailerBytes];
  if (std::fread(trailer, 1, sizeof trailer, f_) != sizeof trailer) corrupt("missing trailer");
  if (std::memcmp(trailer + 4, kEndMagic, 4) != 0) corrupt("bad end marker");
  if (get<uint32_t>(trailer, 0) != payload_crc_) corrupt("payload checksum mismatch (data damaged)");
}

}  // namespace hive::gpu::detail
