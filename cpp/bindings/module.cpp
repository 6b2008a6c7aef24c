// layerscope._core: the C++ statistics engine. Users import it through layerscope.stats.
#include "bindings.hpp"

NB_MODULE(_core, m) {
  m.doc() = "layerscope's C++ statistics engine (use layerscope.stats, its public face).";
  using namespace layerscope::bindings;
  bind_summary(m);
  bind_moments(m);
  bind_histogram(m);
  bind_quantile_sketch(m);
  bind_activity(m);
  bind_build_info(m);
}
