#version 450
// Exact keys of the batch screen's candidates (batch_screen.comp): invocation i of row y takes
// query y's candidate i and writes its key and row at keys[y * ld + off + i]; entries past the
// query's count (or the buffer's cap) get (inf, NONE). The key is the tiled search's arithmetic
// (distance_tile.comp): one fp32 FMA chain over the dimensions in order, then -dot for the inner
// product and 1 - dot for cosine.
#extension GL_GOOGLE_include_directive : require

layout(local_size_x = 256) in;
layout(constant_id = 0) const int METRIC = 0;
layout(constant_id = 1) const uint ROW_V4 = 32;  // 16-byte pieces of an fp32 row (and query)

#include "common.glsl"

layout(std430, binding = 0) readonly buffer Rows { uvec4 rows[]; };
layout(std430, binding = 1) readonly buffer Queries { uvec4 queries[]; };
layout(std430, binding = 2) readonly buffer Cand { uint cand[]; };  // nq counts, then nq x cap rows
layout(std430, binding = 3) writeonly buffer Keys { float keys[]; };
layout(std430, binding = 4) writeonly buffer RowsOut { uint rows_out[]; };

layout(push_constant) uniform Push {
  uint nq;
  uint cap;
  uint ld;
  uint off;
} p;

void main() {
  uint q = gl_WorkGroupID.y, i = gl_GlobalInvocationID.x;
  if (i >= p.cap) return;
  uint count = min(cand[q], p.cap);
  float key = INF;
  uint row = NONE;
  if (i < count) {
    row = cand[p.nq + q * p.cap + i];
    float acc = 0.0;
    for (uint j = 0u; j < ROW_V4; ++j) {
      vec4 x = uintBitsToFloat(rows[row * ROW_V4 + j]);
      vec4 y = uintBitsToFloat(queries[q * ROW_V4 + j]);
      for (uint e = 0u; e < 4u; ++e) {
        if (METRIC == M_L2) {
          float d = y[e] - x[e];
          acc = fma(d, d, acc);
        } else {
          acc = fma(y[e], x[e], acc);
        }
      }
    }
    key = METRIC == M_IP ? -acc : METRIC == M_COS ? 1.0 - acc : acc;
  }
  keys[q * p.ld + p.off + i] = key;
  rows_out[q * p.ld + p.off + i] = row;
}
