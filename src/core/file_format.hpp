// Internal: the on-disk format shared by every index kind (docs/file-format.md).
//
//   offset  size  field
//        0     8  magic "HIVEGPU\0"
//        8     4  format version (1)
//       12     4  header size in bytes (64)
//       16     1  index kind (1 = flat, 2 = HNSW)
//       17     1  metric (Metric enum value)
//       18     1  storage (ScalarType enum value)
//       19     5  reserved, zero
//       24     8  dim
//       32     8  count (rows in the file: live vectors; HNSW: graph nodes, deleted ones too)
//       40     8  next id
//       48     8  payload bytes (= count * 8 + count * row_bytes [+ the HNSW graph section])
//       56     4  CRC-32C of bytes 0..55
//       60     4  reserved, zero
//       64     .  ids: count little-endian int64
//        .     .  rows: count * row_bytes, in the storage encoding
//        .     .  HNSW only: the graph (docs/file-format.md)
//      end-8   4  CRC-32C of the payload
//      end-4   4  end magic "HEND"
// All integers little-endian. Files are written to a temporary sibling, fsynced and renamed.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>

#include "hive_gpu/types.hpp"

namespace hive::gpu::detail {

inline constexpr uint32_t kFormatVersion = 1;
inline constexpr std::size_t kHeaderBytes = 64;
inline constexpr std::size_t kTrailerBytes = 8;
inline constexpr uint8_t kKindFlat = 1;
inline constexpr uint8_t kKindHnsw = 2;

struct FileHeader {
  uint8_t kind = kKindFlat;
  Metric metric = Metric::L2;
  ScalarType storage = ScalarType::F32;
  uint64_t dim = 0;
  uint64_t count = 0;
  int64_t next_id = 0;
  uint64_t extra_bytes = 0;  // payload after the rows (the HNSW graph); 0 for flat files
};

// CRC-32C (Castagnoli), hardware-accelerated where SSE4.2 exists. crc is the running value.
uint32_t crc32c(uint32_t crc, const void* data, std::size_t n);

// Writes a file in pieces, keeping the payload checksum; commit() makes it appear at `path`
// atomically. Destroyed without commit(), it removes its temporary file.
class AtomicFileWriter {
 public:
  explicit AtomicFileWriter(const std::string& path);
  ~AtomicFileWriter();
  AtomicFileWriter(const AtomicFileWriter&) = delete;
  AtomicFileWriter& operator=(const AtomicFileWriter&) = delete;

  void write_header(const FileHeader& h, uint64_t row_bytes);  // payload: count rows + h.extra_bytes
  void write_payload(const void* data, std::size_t n);
  void commit();

 private:
  void write_raw(const void* data, std::size_t n);
  std::string path_, tmp_;
  std::FILE* f_ = nullptr;
  uint32_t payload_crc_ = 0;
};

// Reads and checks a file written by AtomicFileWriter: the header on open (size, magic,
// version, header checksum, payload size against the file size), the payload checksum in
// finish(). Errors are Io, CorruptFile or VersionMismatch, naming the path.
class FileReader {
 public:
  explicit FileReader(const std::string& path);
  ~FileReader();
  FileReader(const FileReader&) = delete;
  FileReader& operator=(const FileReader&) = delete;

  const FileHeader& header() const { return header_; }
  void read_payload(void* out, std::size_t n);
  void finish();  // checks the payload checksum and the end magic

 private:
  [[noreturn]] void corrupt(const std::string& why) const;
  std::string path_;
  std::FILE* f_ = nullptr;
  FileHeader header_;
  uint32_t payload_crc_ = 0;
};

}  // namespace hive::gpu::detail
