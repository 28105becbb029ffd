#version 450
// Merge of sorted candidate lists through subgroup shuffles (devices whose subgroups have 32
// invocations): workgroup (x, y) takes lists [x * lists_per_wg, (x + 1) * lists_per_wg) of
// query y, each of k <= 32 (key, row) pairs in ascending order at
// in[y * in_ld + in_off + list * k ...], and writes the k best of their union, ascending, to
// out[y * out_ld + out_off + x * k ...].
//
// Why: the fused scan leaves one sorted list per workgroup (about a thousand for a million rows),
// and merge_select's shared-memory selection pays a barrier for every step of its bitonic sorts
// (~60 us for those lists on an H100). Here a subgroup holds a list in registers, one pair a
// lane, and merges the next list into it with shuffles alone: the elementwise minimum of the list
// and the other list reversed is a bitonic sequence holding the 32 smallest pairs of both, which
// five shuffle-xor stages sort. Barriers only join the workgroup's 8 subgroup lists at the end.
#extension GL_GOOGLE_include_directive : require
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_shuffle : require

layout(local_size_x = 256) in;
#define WG 256u
#define SG 32u  // the host dispatches this shader only where subgroups have 32 invocations

#include "common.glsl"

layout(std430, binding = 0) readonly buffer InKeys { float in_keys[]; };
layout(std430, binding = 1) readonly buffer InRows { uint in_rows[]; };
layout(std430, binding = 2) writeonly buffer OutKeys { float out_keys[]; };
layout(std430, binding = 3) writeonly buffer OutRows { uint out_rows[]; };

layout(push_constant) uniform Push {
  uint lists;  // lists per query
  uint in_ld;
  uint in_off;
  uint lists_per_wg;
  uint k;
  uint out_ld;
  uint out_off;
} p;

#include "list_merge.glsl"

void main() {
  uint lane = gl_SubgroupInvocationID, sg = gl_SubgroupID;
  uint q = gl_WorkGroupID.y;
  uint first = gl_WorkGroupID.x * p.lists_per_wg;
  uint last = min(p.lists, first + p.lists_per_wg);
  uint base = q * p.in_ld + p.in_off;
  float ak = INF;
  uint ar = NONE;
  // Uniform within each subgroup: l depends on sg only.
  for (uint l = first + sg; l < last; l += WG / SG) {
    float bk = INF;
    uint br = NONE;
    if (lane < p.k) {
      bk = in_keys[base + l * p.k + lane];
      br = in_rows[base + l * p.k + lane];
    }
    merge_into(ak, ar, bk, br, lane);
  }
  join_subgroups(ak, ar, lane, sg);
  if (sg == 0u && lane < p.k) {
    uint o = q * p.out_ld + p.out_off + gl_WorkGroupID.x * p.k + lane;
    out_keys[o] = ak;
    out_rows[o] = ar;
  }
}
