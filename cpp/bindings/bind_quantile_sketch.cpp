#include "bindings.hpp"

namespace layerscope::bindings {
void bind_quantile_sketch(nanobind::module_& m) { (void)m; }
}  // namespace layerscope::bindings
