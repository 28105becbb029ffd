// hive-gpu: the one exception type the library throws.
#pragma once
#include <stdexcept>
#include <string>
#include <string_view>

namespace hive::gpu {

enum class ErrorCode {
  InvalidArgument,    // a parameter out of its documented range
  DimensionMismatch,  // vector length differs from the index dimension
  InvalidK,           // k <= 0 or k > kMaxK
  NonFiniteValue,     // NaN or Inf in an input vector
  DuplicateId,        // the same id twice in one call
  IdExists,           // add_with_ids with an id already present (use upsert)
  UnknownId,          // get() of an id that is not in the index
  UnknownMetric,      // metric name or code not recognised
  Unsupported,        // valid request this index/backend does not implement
  DeviceUnavailable,  // backend not compiled in, or its device absent
  OutOfMemory,        // host or device allocation failed
  Io,                 // open/read/write/rename failed
  CorruptFile,        // bad magic, checksum, truncation, inconsistent header
  VersionMismatch,    // file written by a newer format version
  Internal,           // a bug: please report
};

std::string_view to_string(ErrorCode code) noexcept;

class Error : public std::runtime_error {
 public:
  Error(ErrorCode code, const std::string& message)
      : std::runtime_error(std::string(to_string(code)) + ": " + message), code_(code) {}
  ErrorCode code() const noexcept { return code_; }

 private:
  ErrorCode code_;
};

}  // namespace hive::gpu
