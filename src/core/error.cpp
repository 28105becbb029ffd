#include "hive_gpu/error.hpp"

namespace hive::gpu {

std::string_view to_string(ErrorCode code) noexcept {
  switch (code) {
    case ErrorCode::InvalidArgument: return "invalid argument";
    case ErrorCode::DimensionMismatch: return "dimension mismatch";
    case ErrorCode::InvalidK: return "invalid k";
    case ErrorCode::NonFiniteValue: return "non-finite value";
    case ErrorCode::DuplicateId: return "duplicate id";
    case ErrorCode::IdExists: return "id exists";
    case ErrorCode::UnknownId: return "unknown id";
    case ErrorCode::UnknownMetric: return "unknown metric";
    case ErrorCode::Unsupported: return "unsupported";
    case ErrorCode::DeviceUnavailable: return "device unavailable";
    case ErrorCode::OutOfMemory: return "out of memory";
    case ErrorCode::Io: return "i/o error";
    case ErrorCode::CorruptFile: return "corrupt file";
    case ErrorCode::VersionMismatch: return "version mismatch";
    case ErrorCode::Internal: return "internal error";
  }
  return "unknown error";
}

}  // namespace hive::gpu
