// Document-wise perplexity (the protocol of shared/data/reference/stories260K_ppl.json).
#include "engine/perplexity.h"

#include <algorithm>
#include <cmath>

namespace nibble {

double PerplexityResult::perplexity() const {
    return std::exp(mean_nll());
}

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

PerplexityResult perplexity(InferenceState& state, const std::vector<std::vector<int32_t>>& docs,
                            int32_t bos_id, const std::function<void(int, int)>& progress) {
    const int vocab = state.model().config.vocab_size;
    const size_t max_ids = size_t(state.context() - 1);
    const size_t max_batch = size_t(state.options().max_batch);
    std::vector<BatchToken> batch(max_batch);
    PerplexityResult result;
    for (const auto& doc : docs) {
        const size_t n = std::min(doc.size(), max_ids);
        if (doc.size() > max_ids) ++result.truncated_documents;
        ++result.documents;
        // Inputs: BOS, ids[0..n-2]; targets: ids[0..n-1].
        for (size_t start = 0; start < n; start += max_batch) {
            const size_t count = std::min(max_batch, n - start);
            for (size_t i = 0; i < count; ++i) {
                const size_t pos = start + i;
                batch[i] = {pos == 0 ? bos_id : doc[pos - 1], int32_t(pos), 0, true};
            }
            const float* logits = state.forward(std::span(batch.data(), count));
            for (size_t i = 0; i < count; ++i) {
                const float* row = logits + i * size_t(vocab);
                const float max_logit = *std::max_element(row, row + vocab);
                double sum = 0.0;
                for (int v = 0; v < vocab; ++v) sum += std::exp(double(row[v] - max_logit));
                const double log_prob = double(row[doc[start + i]] - max_logit) - std::log(sum);
                result.total_nll -= log_prob;
                ++result.scored_tokens;
            }
        }
        if (progress) progress(result.documents, int(docs.size()));
    }
    return result;
}

}  // namespace nibble
