// The one place that knows how to compile and pick the AVX2+FMA kernels. The wide kernels are
// compiled for that target function by function (LAYERSCOPE_AVX2_FN) and chosen at run time
// (cpu_has_avx2_fma), so one portable binary runs on any x86-64 and still uses AVX2 where the
// CPU and the operating system support it. Elsewhere (aarch64, other compilers) no wide kernel
// is compiled and the detection says false, so the portable loops run.
#pragma once

#if (defined(__GNUC__) || defined(__clang__)) && (defined(__x86_64__) || defined(__i386__))
#include <immintrin.h>
#define LAYERSCOPE_HAVE_AVX2 1
#define LAYERSCOPE_CPU_FEATURES_GNU 1
// GCC and Clang compile AVX2 intrinsics only inside functions built for that target.
#define LAYERSCOPE_AVX2_FN __attribute__((target("avx2,fma")))
#elif defined(_MSC_VER) && (defined(_M_X64) || defined(_M_IX86))
#include <immintrin.h>
#include <intrin.h>
#define LAYERSCOPE_HAVE_AVX2 1
#define LAYERSCOPE_CPU_FEATURES_MSVC 1
// MSVC compiles every intrinsic for any target; the run-time check alone guards them.
#define LAYERSCOPE_AVX2_FN
#endif

// SSE2, the x86-64 baseline, which the portable loops are vectorised for.
#if defined(__SSE2__) || defined(_M_X64) || (defined(_M_IX86_FP) && _M_IX86_FP >= 2)
#define LAYERSCOPE_HAVE_SSE2 1
#endif

namespace layerscope::detail {

#if defined(LAYERSCOPE_CPU_FEATURES_MSVC)
/// CPUID and XGETBV as the Intel SDM prescribes for AVX2 and FMA: the CPU has AVX, FMA, AVX2
/// and OSXSAVE, and the OS saves the YMM registers on a context switch (XCR0 bits 1 and 2).
inline bool query_avx2_fma() noexcept {
  int regs[4];  // eax, ebx, ecx, edx
  __cpuid(regs, 0);
  if (regs[0] < 7) return false;
  __cpuid(regs, 1);
  const bool fma = (regs[2] >> 12) & 1, osxsave = (regs[2] >> 27) & 1,
             avx = (regs[2] >> 28) & 1;
  if (!(fma && osxsave && avx)) return false;
  if ((_xgetbv(0) & 0x6) != 0x6) return false;
  __cpuidex(regs, 7, 0);
  return (regs[1] >> 5) & 1;  // ebx bit 5: AVX2
}
#endif

/// True when this CPU executes AVX2 and FMA instructions and the OS saves their registers.
/// Called once per kernel invocation, never per element.
inline bool cpu_has_avx2_fma() noexcept {
#if defined(LAYERSCOPE_CPU_FEATURES_GNU)
  // libgcc/compiler-rt read CPUID and XCR0 once at load time; this reads their cached answer.
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#elif defined(LAYERSCOPE_CPU_FEATURES_MSVC)
  // CPUID is serializing and traps to the hypervisor in a VM (microseconds), so the answer is
  // kept: a constant of the machine, computed once (thread-safe static initialisation), that
  // no caller can change; not state that outlives or couples calls.
  static const bool has = query_avx2_fma();
  return has;
#else
  return false;
#endif
}

}  // namespace layerscope::detail
