// The HIP vendor header: the CUDA tree (src/backends/cuda) is compiled for AMD GPUs by hipcc
// with HIVE_GPU_HIP defined, and this header maps the CUDA runtime names it uses onto HIP's
// (the way ggml's vendors/hip.h does). Only names the tree uses are mapped; a new CUDA call
// that fails to compile under HIP belongs here. Device-side differences (wave width, shuffles,
// cache-hinted loads) are not renamed but abstracted in backends/cuda/wave.cuh and
// device_util.cuh, because their semantics differ (64-lane waves on GCN/CDNA).
#pragma once

#if defined(__HIPCC__)
#include <hip/hip_fp16.h>
#include <hip/hip_runtime.h>
#else
// Host-only translation units (compiled by the host C++ compiler) need only the runtime API.
#ifndef __HIP_PLATFORM_AMD__
#define __HIP_PLATFORM_AMD__ 1
#endif
#include <hip/hip_runtime_api.h>
#endif

// ---- errors ----
#define cudaError_t hipError_t
#define cudaSuccess hipSuccess
#define cudaErrorMemoryAllocation hipErrorOutOfMemory
#define cudaGetLastError hipGetLastError
#define cudaGetErrorName hipGetErrorName
#define cudaGetErrorString hipGetErrorString

// ---- devices ----
#define cudaDeviceProp hipDeviceProp_t
#define cudaGetDeviceCount hipGetDeviceCount
#define cudaGetDevice hipGetDevice
#define cudaSetDevice hipSetDevice
#define cudaGetDeviceProperties hipGetDeviceProperties
#define cudaDeviceGetAttribute hipDeviceGetAttribute
#define cudaDevAttrMultiProcessorCount hipDeviceAttributeMultiprocessorCount
#define cudaDevAttrMaxSharedMemoryPerBlockOptin hipDeviceAttributeSharedMemPerBlockOptin
#define cudaDeviceAttr hipDeviceAttribute_t
#define cudaDevAttrWarpSize hipDeviceAttributeWarpSize
#define cudaDeviceGetPCIBusId hipDeviceGetPCIBusId
#define cudaMemGetInfo hipMemGetInfo
#define cudaDriverGetVersion hipDriverGetVersion
#define cudaRuntimeGetVersion hipRuntimeGetVersion

// ---- memory ----
#define cudaMalloc hipMalloc
#define cudaFree hipFree
// Pinned host memory; hipHostMalloc's default flags make it visible to kernels, which the
// fused single-query kernel relies on (it writes its results straight into it).
inline hipError_t hive_hip_malloc_host(void** p, size_t bytes) { return hipHostMalloc(p, bytes, hipHostMallocDefault); }
#define cudaMallocHost hive_hip_malloc_host
#define cudaFreeHost hipHostFree
#define cudaMemcpyAsync hipMemcpyAsync
#define cudaMemsetAsync hipMemsetAsync
#define cudaMemcpyHostToDevice hipMemcpyHostToDevice
#define cudaMemcpyDeviceToHost hipMemcpyDeviceToHost
#define cudaMemcpyDeviceToDevice hipMemcpyDeviceToDevice

// ---- streams and kernels ----
#define cudaStream_t hipStream_t
#define cudaStreamCreate hipStreamCreate
#define cudaStreamCreateWithFlags hipStreamCreateWithFlags
#define cudaStreamNonBlocking hipStreamNonBlocking
#define cudaStreamDestroy hipStreamDestroy
#define cudaStreamSynchronize hipStreamSynchronize
#define cudaStreamWaitEvent hipStreamWaitEvent
#define cudaEvent_t hipEvent_t
#define cudaEventCreate hipEventCreate
#define cudaEventCreateWithFlags hipEventCreateWithFlags
#define cudaEventDisableTiming hipEventDisableTiming
#define cudaEventRecord hipEventRecord
#define cudaEventSynchronize hipEventSynchronize
#define cudaEventDestroy hipEventDestroy
#define cudaEventElapsedTime hipEventElapsedTime
#define cudaFuncAttributeMaxDynamicSharedMemorySize hipFuncAttributeMaxDynamicSharedMemorySize
// hipFuncSetAttribute takes the kernel as const void*.
template <class F>
inline hipError_t hive_hip_func_set_attribute(F* kernel, hipFuncAttribute attr, int value) {
  return hipFuncSetAttribute(reinterpret_cast<const void*>(kernel), attr, value);
}
#define cudaFuncSetAttribute hive_hip_func_set_attribute
