#version 450
// Rows idx[0 .. count) of src into dst, in that order (the batch screen's sample): invocation i
// copies 16-byte piece i % ROW_V4 of destination row i / ROW_V4. One dispatch instead of a copy
// region a row (15 625 regions cost ~25 ms on an H100).
layout(local_size_x = 256) in;
layout(constant_id = 0) const uint ROW_V4 = 32;

layout(std430, binding = 0) readonly buffer Src { uvec4 src[]; };
layout(std430, binding = 1) readonly buffer Idx { uint idx[]; };
layout(std430, binding = 2) writeonly buffer Dst { uvec4 dst[]; };

layout(push_constant) uniform Push {
  uint count;  // rows
} p;

void main() {
  uint i = gl_GlobalInvocationID.x + gl_GlobalInvocationID.y * gl_NumWorkGroups.x * 256u;
  if (i >= p.count * ROW_V4) return;
  uint r = i / ROW_V4;
  dst[i] = src[idx[r] * ROW_V4 + i % ROW_V4];
}
