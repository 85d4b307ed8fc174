// The chat formats, each a few string concatenations.
#include "tokenizer/chat_template.h"

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

// Text built from the template's own pieces and the messages' contents,
// remembering where the contents are.
struct Writer {
    RenderedChat out;
    void text(const std::string& s) { out.text += s; }
    void content(const std::string& s) {
        if (s.empty()) return;
        out.contents.emplace_back(out.text.size(), out.text.size() + s.size());
        out.text += s;
    }
};

std::string trim(const std::string& s) {
    const size_t a = s.find_first_not_of(" \t\r\n");
    if (a == std::string::npos) return "";
    const size_t b = s.find_last_not_of(" \t\r\n");
    return s.substr(a, b - a + 1);
}

// Llama-2-chat and Mistral-instruct share the [INST] structure; Llama-2 puts
// the system prompt in <<SYS>> inside the first [INST], Mistral before the
// first user text, and they space answers differently.
void render_inst(bool llama2, const std::vector<ChatMessage>& messages, Writer& w) {
    std::string system;
    bool first_user = true;
    for (const ChatMessage& m : messages) {
        switch (m.role) {
            case Role::system:
                system = m.content;
                break;
            case Role::user: {
                if (llama2 || first_user) w.text("<s>");
                w.text("[INST] ");
                if (first_user && !system.empty()) {
                    if (llama2) {
                        w.text("<<SYS>>\n");
                        w.content(system);
                        w.text("\n<</SYS>>\n\n");
                    } else {
                        w.content(system);
                        w.text("\n\n");
                    }
                }
                w.content(m.content);
                w.text(" [/INST]");
                first_user = false;
                break;
            }
            case Role::assistant:
                if (llama2) w.text(" ");
                w.content(m.content);
                w.text(assistant_suffix(llama2 ? ChatTemplate::llama2 : ChatTemplate::mistral));
                break;
        }
    }
}

// Gemma has no system role: the system prompt opens the first user turn.
void render_gemma(const std::vector<ChatMessage>& messages, bool add_generation_prompt, Writer& w) {
    w.text("<bos>");
    std::string system;
    bool first_user = true;
    for (const ChatMessage& m : messages) {
        if (m.role == Role::system) {
            system = m.content;
            continue;
        }
        w.text(m.role == Role::user ? "<start_of_turn>user\n" : "<start_of_turn>model\n");
        if (m.role == Role::user && first_user && !system.empty()) {
            w.content(system);
            w.text("\n\n");
        }
        if (m.role == Role::user) first_user = false;
        w.content(trim(m.content));
        w.text(assistant_suffix(ChatTemplate::gemma));
    }
    if (add_generation_prompt) w.text("<start_of_turn>model\n");
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
        case ChatTemplate::llama3:
            return "llama3";
        case ChatTemplate::gemma:
            return "gemma";
        case ChatTemplate::phi3:
            return "phi3";
        case ChatTemplate::plain:
            return "plain";
    }
    return "?";
}

std::optional<ChatTemplate> parse_chat_template(std::string_view name) {
    for (ChatTemplate t :
         {ChatTemplate::llama2, ChatTemplate::chatml, ChatTemplate::zephyr, ChatTemplate::mistral,
          ChatTemplate::llama3, ChatTemplate::gemma, ChatTemplate::phi3, ChatTemplate::plain}) {
        if (name == chat_template_name(t)) return t;
    }
    return std::nullopt;
}

std::optional<ChatTemplate> detect_chat_template(std::string_view jinja) {
    auto has = [&](std::string_view s) { return jinja.find(s) != std::string_view::npos; };
    if (has("<|im_start|>")) return ChatTemplate::chatml;
    if (has("[INST]") && has("<<SYS>>")) return ChatTemplate::llama2;
    if (has("[INST]")) return ChatTemplate::mistral;
    if (has("<|assistant|>") && has("<|end|>")) return ChatTemplate::phi3;
    if (has("<|user|>") && has("<|assistant|>")) return ChatTemplate::zephyr;
    if (has("<start_of_turn>")) return ChatTemplate::gemma;
    if (has("<|start_header_id|>") && has("<|end_header_id|>")) return ChatTemplate::llama3;
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
        case ChatTemplate::llama3:
            return "<|eot_id|>";
        case ChatTemplate::gemma:
            return "<end_of_turn>\n";
        case ChatTemplate::phi3:
            return "<|end|>\n";
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
        case ChatTemplate::llama3:
            return {"<|eot_id|>", "<|start_header_id|>"};
        case ChatTemplate::gemma:
            return {"<end_of_turn>", "<start_of_turn>"};
        case ChatTemplate::phi3:
            return {"<|end|>", "<|user|>"};
        case ChatTemplate::plain:
            return {};
    }
    return {};
}

std::string chat_end_of_turn(ChatTemplate t) {
    switch (t) {
        case ChatTemplate::chatml:
            return "<|im_end|>";
        case ChatTemplate::llama3:
            return "<|eot_id|>";
        case ChatTemplate::gemma:
            return "<end_of_turn>";
        case ChatTemplate::phi3:
            return "<|end|>";
        default:
            return "";
    }
}

RenderedChat render_chat_marked(ChatTemplate t, const std::vector<ChatMessage>& messages,
                                bool add_generation_prompt) {
    Writer w;
    switch (t) {
        case ChatTemplate::llama2:
        case ChatTemplate::mistral:
            render_inst(t == ChatTemplate::llama2, messages, w);
            break;
        case ChatTemplate::chatml:
            for (const ChatMessage& m : messages) {
                w.text(std::string("<|im_start|>") + role_name(m.role) + "\n");
                w.content(m.content);
                w.text("<|im_end|>\n");
            }
            if (add_generation_prompt) w.text("<|im_start|>assistant\n");
            break;
        case ChatTemplate::zephyr:
            for (const ChatMessage& m : messages) {
                w.text(std::string("<|") + role_name(m.role) + "|>\n");
                w.content(m.content);
                w.text("</s>\n");
            }
            if (add_generation_prompt) w.text("<|assistant|>\n");
            break;
        case ChatTemplate::llama3:
            w.text("<|begin_of_text|>");
            for (const ChatMessage& m : messages) {
                w.text(std::string("<|start_header_id|>") + role_name(m.role) +
                       "<|end_header_id|>\n\n");
                w.content(trim(m.content));
                w.text("<|eot_id|>");
            }
            if (add_generation_prompt) w.text("<|start_header_id|>assistant<|end_header_id|>\n\n");
            break;
        case ChatTemplate::gemma:
            render_gemma(messages, add_generation_prompt, w);
            break;
        case ChatTemplate::phi3:
            for (const ChatMessage& m : messages) {
                w.text(std::string("<|") + role_name(m.role) + "|>\n");
                w.content(m.content);
                w.text("<|end|>\n");
            }
            if (add_generation_prompt) w.text("<|assistant|>\n");
            break;
        case ChatTemplate::plain:
            for (const ChatMessage& m : messages) {
                w.content(m.content);
                if (m.role != Role::user) w.text("\n");
            }
            break;
    }
    return std::move(w.out);
}

std::string render_chat(ChatTemplate t, const std::vector<ChatMessage>& messages,
                        bool add_generation_prompt) {
    return render_chat_marked(t, messages, add_generation_prompt).text;
}

}  // namespace nibble
