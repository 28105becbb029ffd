#version 450
// Fused scan + top-k for a few queries: workgroup (x, y) reads rows
// [x * rows_per_wg, (x + 1) * rows_per_wg) of one chunk, one row per invocation and round,
// computes their keys against query y and keeps the k best (select.glsl); its list goes to
// out[(y) * out_ld + out_off + x * k ...]. Deleted rows are skipped. The base is read once
// per query: this path is for single queries and very small batches.
//
// Built twice. Plain: one invocation reads a whole row (16 bytes at a time). With COOP
// (scan_select_coop, for devices with subgroup shuffles): G adjacent invocations share a row,
// each reading every G-th 16-byte piece, so a group's loads are contiguous, and a butterfly of
// subgroupShuffleXor combines their partial results (G <= the subgroup size).
#extension GL_GOOGLE_include_directive : require
#ifdef COOP
#extension GL_KHR_shader_subgroup_shuffle : require
#endif

layout(local_size_x = 256) in;
#define WG 256u
layout(constant_id = 0) const int METRIC = 0;
layout(constant_id = 1) const int STORAGE = 0;
layout(constant_id = 2) const uint KP = 16;
layout(constant_id = 3) const uint BS = 256;
layout(constant_id = 4) const uint ROW_V4 = 32;  // 16-byte pieces per stored row (zero padded)
layout(constant_id = 5) const uint E = 1;        // rows per invocation and round
layout(constant_id = 6) const uint G = 1;        // invocations per row (COOP; a power of two)

#include "common.glsl"
#include "scan_query.glsl"
#include "select.glsl"


layout(std430, binding = 0) readonly buffer Rows { uvec4 rows[]; };
layout(std430, binding = 1) readonly buffer Queries { uvec4 queries[]; };
layout(std430, binding = 2) readonly buffer Deleted { uint deleted[]; };
layout(std430, binding = 3) writeonly buffer OutKeys { float out_keys[]; };
layout(std430, binding = 4) writeonly buffer OutRows { uint out_rows[]; };

layout(push_constant) uniform Push {
  uint n;            // rows in the chunk
  uint row_base;     // row number of the chunk's first row
  uint rows_per_wg;
  uint k;
  uint out_ld;
  uint out_off;
  uint q_first;      // query of workgroup row 0
} p;

#ifndef COOP
#define G_EFF 1u
#else
#define G_EFF G
#endif

// Combines this invocation's partial result over the G_EFF invocations of its row and
// finishes the key. Every invocation of the group must call it (the shuffles).
float finish_part(vec4 acc) {
  float part = METRIC == M_LINF ? max(max(acc.x, acc.y), max(acc.z, acc.w)) : (acc.x + acc.y) + (acc.z + acc.w);
#ifdef COOP
  for (uint o = G_EFF >> 1; o > 0u; o >>= 1) {
    float other = subgroupShuffleXor(part, o);
    part = METRIC == M_LINF ? max(part, other) : part + other;
  }
#endif
  if (METRIC == M_IP) return -part;
  if (METRIC == M_COS) return 1.0 - part;
  return part;
}

// This invocation's part of row r's key: pieces g, g + G, ... (all of them when G_EFF = 1),
// combined over the G_EFF invocations of the row, then finished. Every invocation of the group
// must call it (the shuffles), with valid = false for rows past the end.
float row_key(uint r, uint g, bool valid) {
  uint base = r * ROW_V4;
  if (METRIC == M_HAMMING) {
    uint bits = 0u;
    if (valid)
      for (uint c = g; c < ROW_V4; c += G_EFF) {
        uvec4 x = rows[base + c] ^ sq[c];
        bits += uint(bitCount(x.x) + bitCount(x.y) + bitCount(x.z) + bitCount(x.w));
      }
#ifdef COOP
    for (uint o = G_EFF >> 1; o > 0u; o >>= 1) bits += subgroupShuffleXor(bits, o);
#endif
    return float(bits);
  }
  vec4 acc = vec4(0.0);
  if (valid)
    for (uint c = g; c < ROW_V4; c += G_EFF) acc = step_piece(acc, c, rows[base + c]);
  return finish_part(acc);
}

void main() {
  uint tid = gl_LocalInvocationIndex;
  uint q = p.q_first + gl_WorkGroupID.y;
  for (uint c = tid; c < Q_V4; c += WG) sq[c] = queries[q * Q_V4 + c];
  sel_init();  // its barrier also publishes sq

  uint first = gl_WorkGroupID.x * p.rows_per_wg;
  uint last = min(p.n, first + p.rows_per_wg);
  const uint RPR = WG / G_EFF;  // rows per pass of the workgroup
  uint g = tid % G_EFF, slot = tid / G_EFF;
  for (uint r0 = first; r0 < last; r0 += E * RPR) {
    for (uint e = 0u; e < E; ++e) {
      uint r = r0 + e * RPR + slot;
      // The deleted bit gates only the offer: the row's loads need not wait for it.
      bool live = r < last && (deleted[r >> 5] & (1u << (r & 31u))) == 0u;
      float key = row_key(r, g, r < last);
      sel_offer(live && g == 0u, key, p.row_base + r);
    }
    sel_round_end(p.k);
  }
  sel_finish(p.k);

  uint o = gl_WorkGroupID.y * p.out_ld + p.out_off + gl_WorkGroupID.x * p.k;
  for (uint i = tid; i < p.k; i += WG) {
    out_keys[o + i] = l_key[i];
    out_rows[o + i] = l_row[i];
  }
}
