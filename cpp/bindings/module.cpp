// layerscope._core: the C++ statistics engine. Users import it through layerscope.stats.
#include "bindings.hpp"

NB_MODULE(_core, m) {
  m.doc() = "layerscope's C++ statistics engine (use layerscope.stats, its public face).";
  // Statistics objects legitimately outlive the interpreter's last collection (held in module
  // globals, in a Scope closed at exit); nanobind's shutdown leak report would only be noise.
  nanobind::set_leak_warnings(false);
  using namespace layerscope::bindings;
  bind_thread_team(m);  // first: the kernels' signatures name it
  bind_summary(m);
  bind_site_summary(m);
  bind_nonfinite(m);
  bind_sum_of_squares(m);
  bind_moments(m);
  bind_histogram(m);
  bind_quantile_sketch(m);
  bind_activity(m);
  bind_build_info(m);
  bind_crc32c(m);
  bind_optimizer_step(m);
}
