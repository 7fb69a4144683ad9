// Linear workgroup index over a 2D dispatch grid. The host splits counts above
// maxComputeWorkGroupCount[0] (at least 65535) into x * y groups; groups past the end return
// early, as a whole workgroup, so later barriers stay in uniform control flow.
#ifndef KV_GRID_GLSL
#define KV_GRID_GLSL

uint kv_group_index() { return gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x; }

#endif  // KV_GRID_GLSL
