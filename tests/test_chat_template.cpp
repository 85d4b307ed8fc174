// Chat templates render a fixed conversation to the reference strings written
// from each format's published template, are prefix-stable, and are detected
// from models' Jinja templates.
#include <doctest/doctest.h>

#include "tokenizer/chat_template.h"

using namespace nibble;
using Role = ChatMessage::Role;

namespace {

const std::vector<ChatMessage> kConversation = {
    {Role::system, "You are a helpful assistant."},
    {Role::user, "Hello"},
    {Role::assistant, "Hi there!"},
    {Role::user, "How are you?"},
};

}  // namespace

TEST_CASE("every template renders the fixed conversation to its reference string") {
    const std::vector<std::pair<ChatTemplate, std::string>> references = {
        // Llama-2-chat (Meta's chat_completion format, HF template)
        {ChatTemplate::llama2,
         "<s>[INST] <<SYS>>\nYou are a helpful assistant.\n<</SYS>>\n\nHello [/INST] Hi there! "
         "</s><s>[INST] How are you? [/INST]"},
        // ChatML
        {ChatTemplate::chatml,
         "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
         "<|im_start|>user\nHello<|im_end|>\n"
         "<|im_start|>assistant\nHi there!<|im_end|>\n"
         "<|im_start|>user\nHow are you?<|im_end|>\n"
         "<|im_start|>assistant\n"},
        // Zephyr / TinyLlama-1.1B-Chat
        {ChatTemplate::zephyr,
         "<|system|>\nYou are a helpful assistant.</s>\n<|user|>\nHello</s>\n"
         "<|assistant|>\nHi there!</s>\n<|user|>\nHow are you?</s>\n<|assistant|>\n"},
        // Mistral-7B-Instruct v0.2 (system prompt before the first user text)
        {ChatTemplate::mistral,
         "<s>[INST] You are a helpful assistant.\n\nHello [/INST]Hi there!</s>"
         "[INST] How are you? [/INST]"},
        // Llama-3 (Meta-Llama-3-8B-Instruct tokenizer_config.json)
        {ChatTemplate::llama3,
         "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are a helpful "
         "assistant.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|>"
         "<|start_header_id|>assistant<|end_header_id|>\n\nHi there!<|eot_id|>"
         "<|start_header_id|>user<|end_header_id|>\n\nHow are you?<|eot_id|>"
         "<|start_header_id|>assistant<|end_header_id|>\n\n"},
        // Gemma 3 (system prompt + "\n\n" opens the first user turn)
        {ChatTemplate::gemma,
         "<bos><start_of_turn>user\nYou are a helpful assistant.\n\nHello<end_of_turn>\n"
         "<start_of_turn>model\nHi there!<end_of_turn>\n<start_of_turn>user\nHow are "
         "you?<end_of_turn>\n<start_of_turn>model\n"},
        // Phi-3.5-mini-instruct
        {ChatTemplate::phi3,
         "<|system|>\nYou are a helpful assistant.<|end|>\n<|user|>\nHello<|end|>\n"
         "<|assistant|>\nHi there!<|end|>\n<|user|>\nHow are you?<|end|>\n<|assistant|>\n"},
        // plain completion
        {ChatTemplate::plain, "You are a helpful assistant.\nHelloHi there!\nHow are you?"},
    };
    // Not a structured binding: CAPTURE's lambda captures the name, which
    // clang 14 (clang-tidy) rejects for a binding.
    for (const auto& reference : references) {
        const ChatTemplate t = reference.first;
        CAPTURE(chat_template_name(t));
        CHECK(render_chat(t, kConversation, true) == reference.second);
    }
}

TEST_CASE("rendering is prefix-stable and answers end with the template's suffix") {
    for (ChatTemplate t :
         {ChatTemplate::llama2, ChatTemplate::chatml, ChatTemplate::zephyr, ChatTemplate::mistral,
          ChatTemplate::llama3, ChatTemplate::gemma, ChatTemplate::phi3, ChatTemplate::plain}) {
        CAPTURE(chat_template_name(t));
        for (size_t n = 1; n <= kConversation.size(); ++n) {
            const std::vector<ChatMessage> head(kConversation.begin(),
                                                kConversation.begin() + long(n - 1));
            const std::vector<ChatMessage> all(kConversation.begin(),
                                               kConversation.begin() + long(n));
            const std::string a = render_chat(t, head, false);
            const std::string b = render_chat(t, all, true);
            CHECK(b.compare(0, a.size(), a) == 0);
        }
        // The answer's text is followed by exactly the suffix.
        const std::vector<ChatMessage> two(kConversation.begin(), kConversation.begin() + 3);
        const std::string with_answer = render_chat(t, two, false);
        const std::string suffix = assistant_suffix(t);
        CHECK(with_answer.size() > suffix.size());
        CHECK(with_answer.substr(with_answer.size() - suffix.size()) == suffix);
        CHECK(with_answer.find("Hi there!" + suffix) != std::string::npos);
    }
}

TEST_CASE("templates are recognised in a model's Jinja chat_template") {
    CHECK(detect_chat_template(
              "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + "
              "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}") == ChatTemplate::chatml);
    CHECK(detect_chat_template("{% for message in messages %}\n{% if message['role'] == 'user' "
                               "%}\n{{ '<|user|>\\n' + message['content'] + eos_token }}\n{% elif "
                               "message['role'] == 'assistant' %}\n{{ '<|assistant|>\\n'  + "
                               "message['content'] + eos_token }}\n{% endif %}{% endfor %}") ==
          ChatTemplate::zephyr);
    CHECK(detect_chat_template("{{ bos_token + '[INST] ' + '<<SYS>>\\n' + system_message + "
                               "'\\n<</SYS>>\\n\\n' }}") == ChatTemplate::llama2);
    CHECK(detect_chat_template("{{ bos_token }}{% for message in messages %}{{ '[INST] ' + "
                               "message['content'] + ' [/INST]' }}{% endfor %}") ==
          ChatTemplate::mistral);
    CHECK(detect_chat_template("{{ '<|start_header_id|>' + message['role'] + "
                               "'<|end_header_id|>\n\n' }}") == ChatTemplate::llama3);
    CHECK(detect_chat_template("{{ '<start_of_turn>' + role + '\n' }}") == ChatTemplate::gemma);
    CHECK(detect_chat_template("{{'<|user|>\n' + message['content'] + '<|end|>\n'}}"
                               "{{ '<|assistant|>\n' }}") == ChatTemplate::phi3);
    CHECK_FALSE(detect_chat_template("{{ messages }}"));
    CHECK_FALSE(detect_chat_template(""));
    CHECK(parse_chat_template("zephyr") == ChatTemplate::zephyr);
    CHECK(parse_chat_template("llama3") == ChatTemplate::llama3);
    CHECK_FALSE(parse_chat_template("llama9"));
}
