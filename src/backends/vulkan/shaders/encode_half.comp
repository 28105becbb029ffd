#version 450
// The fp16 copy of fp32 rows (rows of a multiple of 8 elements, so a copy piece is exactly two
// row pieces): piece i of the copy packs pieces 2i and 2i + 1 of the rows, each value times
// `scale` (a power of two) first. The conversion's rounding and its handling of subnormals are
// the driver's (SPIR-V leaves them open): the host's error bounds allow for either.
layout(local_size_x = 256) in;

layout(std430, binding = 0) readonly buffer Rows { uvec4 rows[]; };
layout(std430, binding = 1) writeonly buffer Copy { uvec4 copy[]; };

layout(push_constant) uniform Push {
  uint first;  // first copy piece written
  uint count;  // copy pieces written
  float scale;
} p;

void main() {
  uint i = p.first + gl_GlobalInvocationID.x + gl_GlobalInvocationID.y * gl_NumWorkGroups.x * 256u;
  if (i >= p.first + p.count) return;
  vec4 a = uintBitsToFloat(rows[2u * i]) * p.scale, b = uintBitsToFloat(rows[2u * i + 1u]) * p.scale;
  copy[i] = uvec4(packHalf2x16(a.xy), packHalf2x16(a.zw), packHalf2x16(b.xy), packHalf2x16(b.zw));
}
