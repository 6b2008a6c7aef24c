#include "bindings.hpp"

namespace layerscope::bindings {
void bind_activity(nanobind::module_& m) { (void)m; }
}  // namespace layerscope::bindings
