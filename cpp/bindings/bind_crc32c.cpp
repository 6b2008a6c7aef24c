// layerscope._core.masked_crc32c: the extension crc32c.hpp for the TensorBoard sink's event files.
#include <nanobind/nanobind.h>

#include <cstdint>

#include "binding_support.hpp"
#include "bindings.hpp"
#include "layerscope_ext/crc32c.hpp"

namespace layerscope::bindings {

void bind_crc32c(nb::module_& m) {
  m.def(
      "masked_crc32c",
      [](nb::bytes data) -> std::uint32_t { return ext::masked_crc32c(data.c_str(), data.size()); },
      nb::arg("data"),
      "The masked CRC-32C of `data`, as TFRecord framing (TensorBoard event files) stores it.");
}

}  // namespace layerscope::bindings
