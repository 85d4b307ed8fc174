// The stories260K model and its tok512 tokenizer from the shared test data,
// loaded once per test process.
#pragma once
#include "models/loader.h"
#include "test_data.h"
#include "tokenizer/tokenizer.h"

namespace nibble::test {

inline const Tokenizer& tok512() {
    static const Tokenizer t = Tokenizer::from_file(data_path("tok512.model"));
    return t;
}

inline const Model& stories260k() {
    static const Model m = load_model(data_path("stories260K.bin"));
    return m;
}

}  // namespace nibble::test
