#include "bindings.hpp"

namespace layerscope::bindings {
void bind_histogram(nanobind::module_& m) { (void)m; }
}  // namespace layerscope::bindings
