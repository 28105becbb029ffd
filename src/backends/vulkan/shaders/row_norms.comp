#version 450
// Squared norms of fp32 rows [first, first + count): one invocation a row, one fp32 FMA chain.
// The batch screen's per-row terms (its error bound allows for any order of the sums).
layout(local_size_x = 256) in;
layout(constant_id = 0) const uint ROW_V4 = 32;

layout(std430, binding = 0) readonly buffer Rows { uvec4 rows[]; };
layout(std430, binding = 1) writeonly buffer Norms { float norms[]; };

layout(push_constant) uniform Push {
  uint first;
  uint count;
} p;

void main() {
  uint r = p.first + gl_GlobalInvocationID.x + gl_GlobalInvocationID.y * gl_NumWorkGroups.x * 256u;
  if (r >= p.first + p.count) return;
  vec4 acc = vec4(0.0);
  for (uint j = 0u; j < ROW_V4; ++j) {
    vec4 x = uintBitsToFloat(rows[r * ROW_V4 + j]);
    acc = fma(x, x, acc);
  }
  norms[r] = (acc.x + acc.y) + (acc.z + acc.w);
}
