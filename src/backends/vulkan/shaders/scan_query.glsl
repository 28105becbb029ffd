// The query side of the fused scans (scan_select.comp, scan_lists.comp): the query in shared
// memory and one 16-byte piece of a stored row stepped against it. The includer declares the
// specialisation constants METRIC, STORAGE and ROW_V4 and includes common.glsl.
#ifndef HIVE_SCAN_QUERY_GLSL
#define HIVE_SCAN_QUERY_GLSL

// Query pieces: fp32 queries hold 4 elements a piece, stored rows 4 (F32) or 8 (F16 / BF16).
const uint Q_V4 = (STORAGE == S_F16 || STORAGE == S_BF16) ? 2u * ROW_V4 : ROW_V4;

shared uvec4 sq[Q_V4];

// acc with stored piece c (16 bytes: 4 fp32 or 8 half values) of a row against the query.
vec4 step_piece(vec4 acc, uint c, uvec4 x) {
  if (STORAGE == S_F32) return metric_step(METRIC, acc, uintBitsToFloat(sq[c]), uintBitsToFloat(x));
  vec4 lo, hi;
  decode8(STORAGE, x, lo, hi);
  acc = metric_step(METRIC, acc, uintBitsToFloat(sq[2u * c]), lo);
  return metric_step(METRIC, acc, uintBitsToFloat(sq[2u * c + 1u]), hi);
}

#endif
