// One bind_<concept>(m) per engine header, each defined in its own bind_<concept>.cpp.
#pragma once

#include <nanobind/nanobind.h>

namespace layerscope::bindings {
void bind_summary(nanobind::module_& m);
void bind_site_summary(nanobind::module_& m);
void bind_moments(nanobind::module_& m);
void bind_histogram(nanobind::module_& m);
void bind_quantile_sketch(nanobind::module_& m);
void bind_activity(nanobind::module_& m);
void bind_build_info(nanobind::module_& m);
void bind_crc32c(nanobind::module_& m);
void bind_optimizer_step(nanobind::module_& m);
void bind_nonfinite(nanobind::module_& m);
void bind_sum_of_squares(nanobind::module_& m);
void bind_thread_team(nanobind::module_& m);
}  // namespace layerscope::bindings
