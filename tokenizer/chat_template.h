// Chat templates: how a conversation (system prompt, user and assistant turns)
// becomes the text a chat model was trained on. Written from the templates'
// published formats (the models' tokenizer_config.json chat_template):
//   llama2   Llama-2-chat:  <s>[INST] <<SYS>>\n{sys}\n<</SYS>>\n\n{user} [/INST] {answer} </s>
//   chatml   ChatML:        <|im_start|>{role}\n{content}<|im_end|>\n ...  <|im_start|>assistant\n
//   zephyr   Zephyr / TinyLlama-Chat: <|{role}|>\n{content}</s>\n ...  <|assistant|>\n
//   mistral  Mistral-7B-Instruct v0.2: <s>[INST] {user} [/INST]{answer}</s>[INST] ...
//            (no system role: the system prompt opens the first user message)
//   llama3   Llama-3.x:
//   <|begin_of_text|><|start_header_id|>{role}<|end_header_id|>\n\n{content}<|eot_id|> ... gemma
//   Gemma 2/3: <bos><start_of_turn>user\n{content}<end_of_turn>\n<start_of_turn>model\n ...
//            (no system role: the system prompt opens the first user message)
//   phi3     Phi-3/3.5/4-mini: <|{role}|>\n{content}<|end|>\n ...  <|assistant|>\n
//   plain    completion mode for base models: the texts one after the other,
//            each answer ended by a newline.
#pragma once
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace nibble {

enum class ChatTemplate { llama2, chatml, zephyr, mistral, llama3, gemma, phi3, plain };

struct ChatMessage {
    enum class Role { system, user, assistant } role;
    std::string content;
};

const char* chat_template_name(ChatTemplate t);
std::optional<ChatTemplate> parse_chat_template(std::string_view name);

// A known template recognised in a model's Jinja chat_template, by its
// markers (in llama.cpp's order, llama-chat.cpp).
std::optional<ChatTemplate> detect_chat_template(std::string_view jinja);

// The whole conversation as text. With add_generation_prompt the text ends
// where the assistant's next answer begins. Rendering is prefix-stable: the
// text of a conversation is a prefix of the text of any continuation of it.
// BOS and EOS appear as "<s>" and "</s>" (split off by tokenize_chat).
std::string render_chat(ChatTemplate t, const std::vector<ChatMessage>& messages,
                        bool add_generation_prompt);

// The same text, with where the messages' contents lie in it: special tokens
// are only read from the template's own text, never from what a user wrote.
struct RenderedChat {
    std::string text;
    std::vector<std::pair<size_t, size_t>> contents;  // [begin, end) byte ranges, in order
};
RenderedChat render_chat_marked(ChatTemplate t, const std::vector<ChatMessage>& messages,
                                bool add_generation_prompt);

// Text that ends an assistant answer in the rendered conversation (after the
// generated text), e.g. " </s>" for llama2.
std::string assistant_suffix(ChatTemplate t);

// Strings that end an answer besides EOS (the template's end-of-turn marker
// when the model writes it as text).
std::vector<std::string> chat_stop_strings(ChatTemplate t);

// The special token that ends a turn ("<|eot_id|>", "<|im_end|>",
// "<end_of_turn>", "<|end|>"; "" for templates that end turns with EOS or
// text): generating it ends the answer.
std::string chat_end_of_turn(ChatTemplate t);

}  // namespace nibble
