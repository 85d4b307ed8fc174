// The tokenizer settings of a Hugging Face directory besides tokenizer.model:
// generation_config.json (bos_token_id, eos_token_id), tokenizer_config.json
// (bos_token, eos_token, chat_template), chat_template.jinja /
// chat_template.json and config.json (bos_token_id, eos_token_id), taken in
// the order transformers gives them precedence:
//   BOS (put in front of prompts): tokenizer_config bos_token, generation_config
//     bos_token_id, config.json bos_token_id;
//   EOS (ends generation): generation_config eos_token_id (the first of a
//     list; the others end generation too: GenerationSettings::extra_eos_ids),
//     tokenizer_config eos_token, config.json eos_token_id;
//   BOS in front of prompts or not: tokenizer_config add_bos_token (default true);
//   chat template: chat_template.jinja, chat_template.json, tokenizer_config
//     chat_template (a string, or the "default" entry of a list of templates).
// What no file gives keeps tokenizer.model's own choice.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "engine/model.h"

namespace nibble {

// One file's choice of a special token: a piece text or an id.
struct SpecialTokenChoice {
    std::string text;
    std::optional<int32_t> id;
    std::string file;  // e.g. "generation_config.json"
};

struct HfTokenizerSettings {
    std::vector<SpecialTokenChoice> bos, eos;  // in precedence order, present ones only
    std::vector<int32_t> other_eos_ids;        // the rest of an eos_token_id list
    std::optional<bool> add_bos_token;         // tokenizer_config.json add_bos_token
    std::string chat_template;
    std::string chat_template_file;
};

// Reads the files of directory `dir` (each optional). Throws
// std::runtime_error("<file>: <problem>") for invalid JSON, a field of the
// wrong type or a path that is not a regular file.
HfTokenizerSettings read_hf_tokenizer_settings(const std::string& dir);

// Applies the settings to a model whose tokenizer_proto came from
// tokenizer.model: BOS/EOS written into the proto (see set_special_pieces), the
// chat template into m.chat_template, add_bos_token and the further EOS ids
// into m.generation; one line in m.import_notes says what was taken. A choice that is not a control
// piece of tokenizer.model keeps tokenizer.model's BOS/EOS, and the note says so.
void apply_hf_tokenizer_settings(Model& m, const HfTokenizerSettings& s);

}  // namespace nibble
