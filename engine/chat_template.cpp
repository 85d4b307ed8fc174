// The five chat formats, each a few string concatenations.
#include "engine/chat_template.h"

namespace nibble {

namespace {

using Role = ChatMessage::Role;

const char* role_name(Role r) {
    switch (r) {
        case Role::system:
            return "system";
        case Role::user:
            return "user";
        case Role::assistant:
            return "assistant";
    }
    return "?";
}

// Llama-2-chat and Mistral-instruct share the [INST] structure; Llama-2 puts
// the system prompt in <<SYS>> inside the first [INST], Mistral before the
// first user text, and they space answers differently.
std::string render_inst(bool llama2, const std::vector<ChatMessage>& messages) {
    std::string out;
    std::string system;
    bool first_user = true;
    for (const ChatMessage& m : messages) {
        switch (m.role) {
            case Role::system:
                system = m.content;
                break;
            case Role::user: {
                std::string text = m.content;
                if (first_user && !system.empty()) {
                    text = llama2 ? "<<SYS>>\n" + system + "\n<</SYS>>\n\n" + text
                                  : system + "\n\n" + text;
                }
                if (llama2 || first_user) out += "<s>";
                out += "[INST] " + text + " [/INST]";
                first_user = false;
                break;
            }
            case Role::assistant:
                out += (llama2 ? " " : "") + m.content +
                       assistant_suffix(llama2 ? ChatTemplate::llama2 : ChatTemplate::mistral);
                break;
        }
    }
    return out;
}

}  // namespace

const char* chat_template_name(ChatTemplate t) {
    switch (t) {
        case ChatTemplate::llama2:
            return "llama2";
        case ChatTemplate::chatml:
            return "chatml";
        case ChatTemplate::zephyr:
            return "zephyr";
        case ChatTemplate::mistral:
            return "mistral";
        case ChatTemplate::plain:
            return "plain";
    }
    return "?";
}

std::optional<ChatTemplate> parse_chat_template(std::string_view name) {
    for (ChatTemplate t : {ChatTemplate::llama2, ChatTemplate::chatml, ChatTemplate::zephyr,
                           ChatTemplate::mistral, ChatTemplate::plain}) {
        if (name == chat_template_name(t)) return t;
    }
    return std::nullopt;
}

std::optional<ChatTemplate> detect_chat_template(std::string_view jinja) {
    auto has = [&](std::string_view s) { return jinja.find(s) != std::string_view::npos; };
    if (has("<|im_start|>")) return ChatTemplate::chatml;
    if (has("<|user|>") && has("<|assistant|>")) return ChatTemplate::zephyr;
    if (has("[INST]") && has("<<SYS>>")) return ChatTemplate::llama2;
    if (has("[INST]")) return ChatTemplate::mistral;
    return std::nullopt;
}

std::string assistant_suffix(ChatTemplate t) {
    switch (t) {
        case ChatTemplate::llama2:
            return " </s>";
        case ChatTemplate::chatml:
            return "<|im_end|>\n";
        case ChatTemplate::zephyr:
            return "</s>\n";
        case ChatTemplate::mistral:
            return "</s>";
        case ChatTemplate::plain:
            return "\n";
    }
    return "";
}

std::vector<std::string> chat_stop_strings(ChatTemplate t) {
    switch (t) {
        case ChatTemplate::llama2:
        case ChatTemplate::mistral:
            return {"[INST]"};
        case ChatTemplate::chatml:
            return {"<|im_end|>", "<|im_start|>"};
        case ChatTemplate::zephyr:
            return {"<|user|>", "<|system|>"};
        case ChatTemplate::plain:
            return {};
    }
    return {};
}

std::string render_chat(ChatTemplate t, const std::vector<ChatMessage>& messages,
                        bool add_generation_prompt) {
    std::string out;
    switch (t) {
        case ChatTemplate::llama2:
        case ChatTemplate::mistral:
            return render_inst(t == ChatTemplate::llama2, messages);
        case ChatTemplate::chatml:
            for (const ChatMessage& m : messages) {
                out += std::string("<|im_start|>") + role_name(m.role) + "\n" + m.content +
                       "<|im_end|>\n";
            }
            if (add_generation_prompt) out += "<|im_start|>assistant\n";
            return out;
        case ChatTemplate::zephyr:
            for (const ChatMessage& m : messages) {
                out += std::string("<|") + role_name(m.role) + "|>\n" + m.content + "</s>\n";
            }
            if (add_generation_prompt) out += "<|assistant|>\n";
            return out;
        case ChatTemplate::plain:
            for (const ChatMessage& m : messages) {
                out += m.content;
                if (m.role != Role::user) out += "\n";
            }
            return out;
    }
    return out;
}

}  // namespace nibble
