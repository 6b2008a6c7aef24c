// _core.build_info(): how this engine was compiled and which SIMD paths the CPU can take, for
// `layerscope info` and bug reports. Declares only; every value is a compile-time constant or
// the summary kernel's own run-time CPU check.
#include <nanobind/nanobind.h>
#include <nanobind/stl/string.h>

#include <string>

#include "binding_support.hpp"
#include "bindings.hpp"
#include "layerscope/detail/cpu_features.hpp"
#include "layerscope/detail/parallel_for.hpp"

namespace layerscope::bindings {

namespace {

std::string compiler() {
#if defined(__clang__)
  return std::string("clang ") + __clang_version__;
#elif defined(__GNUC__)
  return "gcc " + std::to_string(__GNUC__) + "." + std::to_string(__GNUC_MINOR__) + "." +
         std::to_string(__GNUC_PATCHLEVEL__);
#elif defined(_MSC_VER)
  return "msvc " + std::to_string(_MSC_VER);
#else
  return "unknown";
#endif
}

#if defined(LAYERSCOPE_HAVE_SSE2)
constexpr bool kSse2 = true;
#else
constexpr bool kSse2 = false;
#endif
#if defined(LAYERSCOPE_HAVE_AVX2)
constexpr bool kAvx2 = true;
#else
constexpr bool kAvx2 = false;
#endif
#if defined(NDEBUG)
constexpr bool kNdebug = true;
#else
constexpr bool kNdebug = false;
#endif

}  // namespace

void bind_build_info(nb::module_& m) {
  m.def(
      "build_info",
      []() {
        nb::dict info;
        info["compiler"] = compiler();
        info["cxx_standard"] = static_cast<long>(__cplusplus);
        info["ndebug"] = kNdebug;
        info["simd_sse2"] = kSse2;
        info["simd_avx2_compiled"] = kAvx2;
        info["simd_avx2_runtime"] = detail::cpu_has_avx2_fma();
        info["hardware_threads"] = static_cast<long>(detail::thread_cap(0));
        return info;
      },
      "How the engine was built: compiler, C++ standard (__cplusplus), NDEBUG, the SIMD "
      "paths of the summary kernel (compiled in; AVX2+FMA also checked on this CPU), and "
      "hardware_threads, the kernels' thread cap when a call gives no max_threads.");
}

}  // namespace layerscope::bindings
