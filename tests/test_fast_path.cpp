// The fast kernels on a quantized stories260K: perplexity against the reference
// path, identical results for 1 and 2 threads, and the INT8 KV cache.
#include <doctest/doctest.h>
#include <omp.h>

#include <cmath>
#include <cstring>

#include "eval/perplexity.h"
#include "kernels/matmul_dispatch.h"
#include "models/loader.h"
#include "models/quantize_model.h"
#include "test_data.h"
#include "tokenizer/tokenizer.h"

using namespace nibble;
using nibble::test::data_path;
using nibble::test::read_text;

namespace {

struct Fixture {
    Model fp32 = load_model(data_path("stories260K.bin"));
    Tokenizer tok = Tokenizer::from_file(data_path("tok512.model"));
    std::vector<std::vector<int32_t>> docs;
    Fixture() {
        for (const auto& d :
             split_documents(read_text(data_path("corpus/tinystories_excerpt.txt")))) {
            docs.push_back(tok.encode(d, false));
        }
        docs.resize(30);  // about 9,000 scored tokens keeps the suite fast
    }
    double ppl(const Model& m, KvType kv = KvType::f16) const {
        RuntimeOptions ro;
        ro.max_batch = 64;
        ro.kv_type = kv;
        InferenceState state(m, ro);
        return perplexity(state, docs, tok.bos_id()).perplexity();
    }
};

const Fixture& fixture() {
    static const Fixture f;
    return f;
}

Model quantized(WeightFormat format, int group, bool dq = false) {
    QuantizeRecipe recipe;
    recipe.format = format;
    recipe.group_size = group;
    recipe.double_quant = dq;
    return quantize_model(fixture().fp32, recipe).model;
}

// Restores automatic kernel choice and int8 activations when a test ends.
struct KernelGuard {
    ~KernelGuard() {
        set_matmul_kernel(MatmulKernel::automatic);
        set_matmul_activation_mode(ActivationMode::int8);
        omp_set_num_threads(1);
    }
};

}  // namespace

TEST_CASE("fast kernels keep perplexity within 0.5% of the reference path") {
    KernelGuard guard;
    struct Case {
        WeightFormat format;
        int group;
        bool dq;
    };
    for (const Case c : {Case{WeightFormat::q4, 32, false}, Case{WeightFormat::q4a, 64, false},
                         Case{WeightFormat::nf4, 64, true}, Case{WeightFormat::q8, 32, false}}) {
        const Model m = quantized(c.format, c.group, c.dq);
        set_matmul_kernel(MatmulKernel::reference);
        const double ref = fixture().ppl(m);
        set_matmul_kernel(MatmulKernel::automatic);
        set_matmul_activation_mode(ActivationMode::int8);
        const double fast_int8 = fixture().ppl(m);
        set_matmul_activation_mode(ActivationMode::fp32);
        const double fast_fp32 = fixture().ppl(m);
        MESSAGE(std::string(format_name(c.format))
                << " g" << c.group << std::string(c.dq ? "+dq" : "") << ": reference " << ref
                << ", fast int8 " << fast_int8 << ", fast fp32 " << fast_fp32 << " (kernel "
                << std::string(matmul_kernel_name(matmul_kernel())) << ")");
        CHECK(std::fabs(fast_int8 / ref - 1.0) < 0.005);
        CHECK(std::fabs(fast_fp32 / ref - 1.0) < 0.001);
    }
}

TEST_CASE("results are identical with 1 and 2 threads") {
    KernelGuard guard;
    const Model m = quantized(WeightFormat::q4, 32);
    const auto ids = fixture().tok.encode(
        "Once upon a time, there was a little girl named Lily. She loved to play outside.", true);
    auto logits_with = [&](int threads) {
        omp_set_num_threads(threads);
        RuntimeOptions ro;
        ro.max_batch = 64;
        ro.kv_type = KvType::f16;
        InferenceState state(m, ro);
        std::vector<BatchToken> batch;
        for (size_t i = 0; i + 1 < ids.size(); ++i) {
            batch.push_back({ids[i], int32_t(i), 0, true});
        }
        const int vocab = m.config.vocab_size;
        const float* l = state.forward(batch);
        std::vector<float> out(l, l + batch.size() * size_t(vocab));
        BatchToken last{ids.back(), int32_t(ids.size() - 1), 0, true};  // one decode step
        l = state.forward(std::span(&last, 1));
        out.insert(out.end(), l, l + vocab);
        return out;
    };
    const auto one = logits_with(1);
    const auto two = logits_with(2);
    REQUIRE(one.size() == two.size());
    CHECK(std::memcmp(one.data(), two.data(), one.size() * sizeof(float)) == 0);
}

TEST_CASE("an INT8 KV cache stays within 1% of FP16 in perplexity") {
    const Model m = quantized(WeightFormat::q4, 32);
    const double f16 = fixture().ppl(m, KvType::f16);
    const double i8 = fixture().ppl(m, KvType::int8);
    MESSAGE("q4 g32: KV f16 " << f16 << ", KV int8 " << i8);
    CHECK(std::fabs(i8 / f16 - 1.0) < 0.01);
}
