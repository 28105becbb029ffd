#version 450
// The key of every (query, row) pair of a tile: D[(q - q0) * ld + (r - r0)] for queries
// [q0, q0 + nq) and chunk rows [r0, r0 + nr). A workgroup computes 64 queries x 64 rows, each
// invocation 4 x 4, stepping through the dimensions 32 at a time in shared memory (a plain
// shared-memory tiled product; every metric takes the same shape). Deleted rows get the bit
// pattern 0xffffffff (a NaN no arithmetic on finite inputs produces).
#extension GL_GOOGLE_include_directive : require

layout(local_size_x = 16, local_size_y = 16) in;
layout(constant_id = 0) const int METRIC = 0;
layout(constant_id = 1) const int STORAGE = 0;
layout(constant_id = 2) const uint ROW_V4 = 32;

#include "common.glsl"

const bool HALF = STORAGE == S_F16 || STORAGE == S_BF16;
const uint Q_V4 = HALF ? 2u * ROW_V4 : ROW_V4;
const uint STEP_ROW_V4 = HALF ? 4u : 8u;  // 16-byte row pieces per 32-element step
const uint STEPS = (ROW_V4 + STEP_ROW_V4 - 1u) / STEP_ROW_V4;
const uint PITCH = 68u;  // words per shared line: 64 values + 4 of padding

layout(std430, binding = 0) readonly buffer Rows { uvec4 rows[]; };
layout(std430, binding = 1) readonly buffer Queries { uvec4 queries[]; };
layout(std430, binding = 2) readonly buffer Deleted { uint deleted[]; };
layout(std430, binding = 3) writeonly buffer Dist { float dist[]; };

layout(push_constant) uniform Push {
  uint n;
  uint r0;
  uint nr;
  uint q0;
  uint nq;
  uint ld;
} p;

// [element of the step][64 values] (bit patterns: floats or bit words). Scalar words: each is
// written by one invocation (a uvec4 line entry shared by four rows would be a write race).
shared uint qs[32 * PITCH];
shared uint rs[32 * PITCH];

void main() {
  uint tx = gl_LocalInvocationID.x, ty = gl_LocalInvocationID.y;
  uint tid = ty * 16u + tx;
  uint rt = p.r0 + gl_WorkGroupID.x * 64u;   // first row of the tile (chunk-local)
  uint qt = p.q0 + gl_WorkGroupID.y * 64u;   // first query of the tile
  uint rend = min(p.r0 + p.nr, p.n);
  uint qend = p.q0 + p.nq;

  // acc[i]: query ty*4+i against rows tx*4 .. tx*4+3, one per lane (hacc for Hamming).
  vec4 acc[4];
  uvec4 hacc[4];
  for (int i = 0; i < 4; ++i) {
    acc[i] = vec4(0.0);
    hacc[i] = uvec4(0u);
  }

  for (uint s = 0u; s < STEPS; ++s) {
    barrier();  // the previous step's reads are done
    // Rows: 64 x STEP_ROW_V4 pieces, consecutive invocations on consecutive pieces of a row.
    for (uint idx = tid; idx < 64u * STEP_ROW_V4; idx += 256u) {
      uint i = idx / STEP_ROW_V4, c = idx % STEP_ROW_V4;
      uint r = rt + i, piece = s * STEP_ROW_V4 + c;
      uvec4 w = (r < rend && piece < ROW_V4) ? rows[r * ROW_V4 + piece] : uvec4(0u);
      if (HALF) {
        vec4 lo, hi;
        decode8(STORAGE, w, lo, hi);
        uvec4 a = floatBitsToUint(lo), b = floatBitsToUint(hi);
        for (uint e = 0u; e < 4u; ++e) {
          rs[(c * 8u + e) * PITCH + i] = a[e];
          rs[(c * 8u + 4u + e) * PITCH + i] = b[e];
        }
      } else {
        for (uint e = 0u; e < 4u; ++e) rs[(c * 4u + e) * PITCH + i] = w[e];
      }
    }
    // Queries: 64 x 8 pieces (32 fp32 elements, or 32 bit words for Hamming).
    for (uint idx = tid; idx < 512u; idx += 256u) {
      uint i = idx / 8u, c = idx % 8u;
      uint q = qt + i, piece = s * 8u + c;
      uvec4 w = (q < qend && piece < Q_V4) ? queries[q * Q_V4 + piece] : uvec4(0u);
      for (uint e = 0u; e < 4u; ++e) qs[(c * 4u + e) * PITCH + i] = w[e];
    }
    barrier();
    for (uint e = 0u; e < 32u; ++e) {
      uint qa = e * PITCH + ty * 4u, ra = e * PITCH + tx * 4u;
      uvec4 a = uvec4(qs[qa], qs[qa + 1u], qs[qa + 2u], qs[qa + 3u]);
      uvec4 b = uvec4(rs[ra], rs[ra + 1u], rs[ra + 2u], rs[ra + 3u]);
      for (int i = 0; i < 4; ++i) {
        if (METRIC == M_HAMMING) {
          hacc[i] += uvec4(bitCount(uvec4(a[i]) ^ b));
        } else {
          acc[i] = metric_step(METRIC, acc[i], vec4(uintBitsToFloat(a[i])), uintBitsToFloat(b));
        }
      }
    }
  }
  for (uint i = 0u; i < 4u; ++i) {
    uint q = qt + ty * 4u + i;
    if (q >= qend) continue;
    for (uint j = 0u; j < 4u; ++j) {
      uint r = rt + tx * 4u + j;
      if (r >= rend) continue;
      float key;
      if (METRIC == M_HAMMING) {
        key = float(hacc[i][j]);
      } else {
        float s = acc[i][j];
        key = METRIC == M_IP ? -s : METRIC == M_COS ? 1.0 - s : s;
      }
      if ((deleted[r >> 5] & (1u << (r & 31u))) != 0u) key = uintBitsToFloat(0xffffffffu);
      dist[(q - p.q0) * p.ld + (r - p.r0)] = key;
    }
  }
}
