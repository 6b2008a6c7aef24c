#include "bindings.hpp"

namespace layerscope::bindings {
void bind_summary(nanobind::module_& m) { (void)m; }
}  // namespace layerscope::bindings
