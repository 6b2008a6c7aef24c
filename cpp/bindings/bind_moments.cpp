#include "bindings.hpp"

namespace layerscope::bindings {
void bind_moments(nanobind::module_& m) { (void)m; }
}  // namespace layerscope::bindings
