#version 450
// Fused scan + top-32 for a single query on 32-wide subgroups (NVIDIA), kept in registers: the
// screen's copy scan (see scan_select.comp for the layout of rows, queries and output lists).
// G = 8 adjacent invocations share a row (contiguous loads, partial keys combined by shuffles)
// and each takes E = G rows a round, so a subgroup scores 32 rows a round and lane l ends with
// the key of one of them. Each subgroup keeps a sorted list of its 32 best (key, row), one pair
// a lane; a round's 32 keys enter only when one of them beats the list's last, by a bitonic sort
// across the lanes and one merge (list_merge.glsl). No barrier stops the loads: scan_select's
// shared-memory select waits on two barriers a round and on a bitonic sort of its candidate
// buffer at the first round and the last. At the end the 8 subgroup lists are joined and the
// workgroup's 32 best written. Deleted rows are skipped.
#extension GL_GOOGLE_include_directive : require
#extension GL_EXT_control_flow_attributes : require
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_shuffle : require
#extension GL_KHR_shader_subgroup_vote : require

layout(local_size_x = 256) in;
#define WG 256u
#define SG 32u
#define G 8u
#define E 8u
layout(constant_id = 0) const int METRIC = 0;    // L2 or IP (the copy's scan)
layout(constant_id = 1) const int STORAGE = 1;   // F16 (the copy) or F32
layout(constant_id = 2) const uint ROW_V4 = 16;  // 16-byte pieces per stored row

#include "common.glsl"
#include "scan_query.glsl"
#include "list_merge.glsl"

const uint PPG = (ROW_V4 + G - 1u) / G;  // pieces an invocation takes of a row

layout(std430, binding = 0) readonly buffer Rows { uvec4 rows[]; };
layout(std430, binding = 1) readonly buffer Queries { uvec4 queries[]; };
layout(std430, binding = 2) readonly buffer Deleted { uint deleted[]; };
layout(std430, binding = 3) writeonly buffer OutKeys { float out_keys[]; };
layout(std430, binding = 4) writeonly buffer OutRows { uint out_rows[]; };

layout(push_constant) uniform Push {
  uint n;
  uint row_base;
  uint rows_per_wg;
  uint k;  // 32
  uint out_ld;
  uint out_off;
  uint q_first;
} p;

// Sorts the subgroup's 32 pairs (one a lane) ascending: a bitonic network of shuffles.
void sort_lanes(inout float k, inout uint r, uint lane) {
  for (uint size = 2u; size <= SG; size <<= 1)
    for (uint stride = size >> 1; stride > 0u; stride >>= 1) {
      float ok = subgroupShuffleXor(k, stride);
      uint orow = subgroupShuffleXor(r, stride);
      bool up = (lane & size) == 0u, lower = (lane & stride) == 0u;
      // In an ascending block the lower lane keeps the smaller pair; in a descending one the larger.
      if (pair_less(ok, orow, k, r) == (lower == up)) {
        k = ok;
        r = orow;
      }
    }
}

void main() {
  uint tid = gl_LocalInvocationIndex;
  uint lane = gl_SubgroupInvocationID, sg = gl_SubgroupID;
  uint q = p.q_first + gl_WorkGroupID.y;
  for (uint c = tid; c < Q_V4; c += WG) sq[c] = queries[q * Q_V4 + c];
  barrier();

  uint first = gl_WorkGroupID.x * p.rows_per_wg;
  uint last = min(p.n, first + p.rows_per_wg);
  const uint RPR = WG / G;  // rows a pass of the workgroup (E passes a round)
  uint g = tid % G, slot = tid / G;
  float ak = INF;  // the subgroup's list: lane i holds its i-th best
  uint ar = NONE;
  float wk = INF;  // its last pair (the 32nd best so far)
  uint wr = NONE;
  for (uint r0 = first; r0 < last; r0 += E * RPR) {
    float mk = INF;  // the key of row e = g of this lane's group
    uint mr = NONE;
    // The round's loads first (up to 2 pieces a row each: all of them in flight at once).
    uvec4 x[E * 2u];
    if (PPG <= 2u) {
      [[unroll]] for (uint e = 0u; e < E; ++e) {
        uint r = r0 + e * RPR + slot;
        [[unroll]] for (uint u = 0u; u < 2u; ++u) {
          uint c = g + u * G;
          x[e * 2u + u] = r < last && c < ROW_V4 ? rows[r * ROW_V4 + c] : uvec4(0u);
        }
      }
    }
    [[unroll]] for (uint e = 0u; e < E; ++e) {
      uint r = r0 + e * RPR + slot;
      bool valid = r < last;
      // The deleted bit gates only the offer: the row's loads need not wait for it.
      bool live = valid && (deleted[r >> 5] & (1u << (r & 31u))) == 0u;
      vec4 acc = vec4(0.0);
      if (PPG <= 2u) {
        [[unroll]] for (uint u = 0u; u < 2u; ++u)
          if (g + u * G < ROW_V4) acc = step_piece(acc, g + u * G, x[e * 2u + u]);
      } else if (valid) {
        for (uint c = g; c < ROW_V4; c += G) acc = step_piece(acc, c, rows[r * ROW_V4 + c]);
      }
      float part = (acc.x + acc.y) + (acc.z + acc.w);
      for (uint o = G >> 1; o > 0u; o >>= 1) part += subgroupShuffleXor(part, o);
      float key = METRIC == M_IP ? -part : METRIC == M_COS ? 1.0 - part : part;
      if (e == g && live) {
        mk = key;
        mr = p.row_base + r;
      }
    }
    // (a NaN key never enters: every comparison with it is false)
    if (subgroupAny(pair_less(mk, mr, wk, wr))) {
      sort_lanes(mk, mr, lane);
      merge_into(ak, ar, mk, mr, lane);
      wk = subgroupShuffle(ak, SG - 1u);
      wr = subgroupShuffle(ar, SG - 1u);
    }
  }
  join_subgroups(ak, ar, lane, sg);

  uint o = gl_WorkGroupID.y * p.out_ld + p.out_off + gl_WorkGroupID.x * p.k;
  if (sg == 0u && lane < p.k) {
    out_keys[o + lane] = ak;
    out_rows[o + lane] = ar;
  }
}
