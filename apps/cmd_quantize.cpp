// nibble quantize: placeholder until the quantization pipeline lands.
#include "apps/commands.h"

namespace nibble::app {

int quantize_command(int, char**) { throw std::runtime_error("quantize is not available yet"); }

}  // namespace nibble::app
