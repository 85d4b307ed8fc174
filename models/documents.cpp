// Splitting a text corpus into documents (models/documents.h).
#include "models/documents.h"

#include <string>
#include <vector>

namespace nibble {

namespace {

std::string strip(const std::string& s) {
    const char* ws = " \t\r\n\f\v";
    const size_t begin = s.find_first_not_of(ws);
    if (begin == std::string::npos) return "";
    return s.substr(begin, s.find_last_not_of(ws) - begin + 1);
}

}  // namespace

std::vector<std::string> split_documents(const std::string& corpus) {
    std::string text;
    text.reserve(corpus.size());
    for (size_t i = 0; i < corpus.size(); ++i) {
        if (corpus[i] == '\r' && i + 1 < corpus.size() && corpus[i + 1] == '\n') continue;
        text.push_back(corpus[i]);
    }
    std::vector<std::string> pieces;
    const std::string eot = "<|endoftext|>";
    if (text.find(eot) != std::string::npos) {
        size_t start = 0;
        for (size_t at; (at = text.find(eot, start)) != std::string::npos;
             start = at + eot.size()) {
            pieces.push_back(text.substr(start, at - start));
        }
        pieces.push_back(text.substr(start));
    } else {
        size_t start = 0;
        for (size_t i = 0; i < text.size(); ++i) {
            const bool lone_newline = text[i] == '\n' && (i == 0 || text[i - 1] != '\n') &&
                                      (i + 1 == text.size() || text[i + 1] != '\n');
            if (lone_newline) {
                pieces.push_back(text.substr(start, i - start));
                start = i + 1;
            }
        }
        pieces.push_back(text.substr(start));
    }
    std::vector<std::string> docs;
    for (const std::string& p : pieces) {
        std::string d = strip(p);
        if (!d.empty()) docs.push_back(std::move(d));
    }
    return docs;
}

}  // namespace nibble
