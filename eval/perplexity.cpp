// Document-wise perplexity (the protocol of shared/data/reference/stories260K_ppl.json).
#include "eval/perplexity.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

namespace nibble {

double PerplexityResult::perplexity() const {
    return std::exp(mean_nll());
}

std::vector<ScoredWindow> document_windows(const std::vector<std::vector<int32_t>>& docs,
                                           int32_t bos_id, int context, int* truncated) {
    const size_t max_ids = size_t(std::max(1, context - 1));
    std::vector<ScoredWindow> windows;
    if (truncated) *truncated = 0;
    for (const auto& doc : docs) {
        const size_t n = std::min(doc.size(), max_ids);
        if (doc.size() > max_ids && truncated) ++*truncated;
        ScoredWindow w;
        w.inputs.push_back(bos_id);
        w.inputs.insert(w.inputs.end(), doc.begin(), doc.begin() + ptrdiff_t(n));
        w.inputs.pop_back();
        w.targets.assign(doc.begin(), doc.begin() + ptrdiff_t(n));
        windows.push_back(std::move(w));  // an empty document still counts
    }
    return windows;
}

std::vector<ScoredWindow> strided_windows(const std::vector<int32_t>& stream, int32_t bos_id,
                                          int ctx, int stride) {
    if (ctx < 2 || stride < 1 || stride > ctx) {
        throw std::invalid_argument("windows need ctx >= 2 and 1 <= stride <= ctx");
    }
    std::vector<ScoredWindow> windows;
    const size_t n = stream.size();
    size_t scored_end = 0;  // tokens before this were scored by an earlier window
    for (size_t begin = 0; scored_end < n; begin += size_t(stride)) {
        const size_t end = std::min(n, begin + size_t(ctx));
        ScoredWindow w;
        w.inputs.push_back(bos_id);
        w.inputs.insert(w.inputs.end(), stream.begin() + ptrdiff_t(begin),
                        stream.begin() + ptrdiff_t(end) - 1);
        w.targets.assign(stream.begin() + ptrdiff_t(begin), stream.begin() + ptrdiff_t(end));
        w.first_scored = int(scored_end - begin);
        scored_end = end;
        windows.push_back(std::move(w));
    }
    return windows;
}

std::vector<ScoredWindow> llamacpp_windows(const std::vector<int32_t>& stream, int32_t bos_id,
                                           int ctx) {
    if (ctx < 4) throw std::invalid_argument("llama.cpp windows need ctx >= 4");
    std::vector<ScoredWindow> windows;
    for (size_t begin = 0; begin + size_t(ctx) <= stream.size(); begin += size_t(ctx)) {
        ScoredWindow w;
        w.inputs.assign(stream.begin() + ptrdiff_t(begin),
                        stream.begin() + ptrdiff_t(begin) + ctx - 1);
        w.inputs[0] = bos_id;
        w.targets.assign(stream.begin() + ptrdiff_t(begin) + 1,
                         stream.begin() + ptrdiff_t(begin) + ctx);
        w.first_scored = ctx / 2;
        windows.push_back(std::move(w));
    }
    return windows;
}

double token_nll(const float* row, int vocab, int32_t target) {
    const float max_logit = *std::max_element(row, row + vocab);
    double sum = 0.0;
    for (int v = 0; v < vocab; ++v) sum += std::exp(double(row[v] - max_logit));
    return std::log(sum) - double(row[target] - max_logit);
}

PerplexityResult score_windows(
    InferenceState& state, const std::vector<ScoredWindow>& windows, const ScoreVisitor& visit,
    const std::function<void(int, int, const PerplexityResult&)>& progress) {
    const int vocab = state.model().config.vocab_size;
    const size_t max_batch = size_t(state.options().max_batch);
    std::vector<BatchToken> batch(max_batch);
    PerplexityResult result;
    for (const ScoredWindow& w : windows) {
        if (w.inputs.size() > size_t(state.context()) || w.targets.size() < w.inputs.size()) {
            throw std::invalid_argument("a perplexity window is longer than the context");
        }
        const size_t n = w.inputs.size(), first = size_t(std::max(0, w.first_scored));
        for (size_t start = 0; start < n; start += max_batch) {
            const size_t count = std::min(max_batch, n - start);
            for (size_t i = 0; i < count; ++i) {
                const size_t pos = start + i;
                batch[i] = {w.inputs[pos], int32_t(pos), 0, pos >= first};
            }
            const float* logits = state.forward(std::span(batch.data(), count));
            size_t row = 0;
            for (size_t i = 0; i < count; ++i) {
                if (!batch[i].want_logits) continue;
                const float* l = logits + row++ * size_t(vocab);
                const int32_t target = w.targets[start + i];
                result.total_nll += token_nll(l, vocab, target);
                ++result.scored_tokens;
                if (visit) visit(l, target);
            }
        }
        ++result.documents;
        if (progress) progress(result.documents, int(windows.size()), result);
    }
    return result;
}

PerplexityResult perplexity(InferenceState& state, const std::vector<std::vector<int32_t>>& docs,
                            int32_t bos_id, const std::function<void(int, int)>& progress) {
    int truncated = 0;
    const auto windows = document_windows(docs, bos_id, state.context(), &truncated);
    PerplexityResult r =
        score_windows(state, windows, nullptr, [&](int done, int total, const PerplexityResult&) {
            if (progress) progress(done, total);
        });
    r.truncated_documents = truncated;
    return r;
}

}  // namespace nibble
