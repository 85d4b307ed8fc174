// Placeholder: the tokenizer implementation lands with its own change.
#include "tokenizer/tokenizer.h"
