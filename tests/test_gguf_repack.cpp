// Repacking GGUF files at load (LoadOptions::repack, --repack / --no-repack):
// the llama.cpp-made files of shared/data/gguf-quant converted into
// interleaved row blocks hold the very bytes of the row-major import, give
// the same logits bit for bit with every kernel this CPU runs (1 and 2
// threads, a prompt and single tokens; NIBBLE_KERNEL through the CLI), leave
// the formats that cannot be interleaved in place, drop each source tensor's
// pages from the resident set, and the option's bad values are refused.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <span>
#include <string>
#include <vector>

#include "cli_expect.h"
#include "engine/forward.h"
#include "kernel_test_settings.h"
#include "kernels/cpu_features.h"
#include "kernels/interleave.h"
#include "kernels/kernel_table.h"
#include "kernels/matmul.h"
#include "kernels/matmul_dispatch.h"
#include "models/gguf_reader.h"
#include "models/loader.h"
#include "test_data.h"

#ifdef _OPENMP
#include <omp.h>
#endif

using namespace nibble;
using nibble::test::data_path;

namespace {

std::string gguf(const std::string& kind) {
    return data_path("gguf-quant/tiny256-" + kind + ".gguf");
}

Model load(const std::string& path, bool repack) {
    LoadOptions o;
    o.repack = repack;
    return load_model(path, o);
}

const std::vector<int32_t>& reference_tokens() {
    static const std::vector<int32_t> tokens = nlohmann::json::parse(nibble::test::read_text(
        data_path("gguf-quant/tiny256_logits.json")))["tokens"]
                                                   .get<std::vector<int32_t>>();
    return tokens;
}

// The logits of the reference tokens: all of them in one forward pass
// (a prompt), or one token per pass (decoding).
std::vector<float> logits(const Model& model, bool one_by_one) {
    const std::vector<int32_t>& tokens = reference_tokens();
    RuntimeOptions ro;
    ro.max_batch = int(tokens.size());
    InferenceState state(model, ro);
    const size_t vocab = size_t(model.config.vocab_size);
    std::vector<float> out;
    if (one_by_one) {
        for (size_t i = 0; i < tokens.size(); ++i) {
            const BatchToken one{tokens[i], int32_t(i), 0, true};
            const float* l = state.forward(std::span<const BatchToken>(&one, 1));
            out.insert(out.end(), l, l + vocab);
        }
        return out;
    }
    std::vector<BatchToken> batch;
    for (size_t i = 0; i < tokens.size(); ++i) batch.push_back({tokens[i], int32_t(i), 0, true});
    const float* l = state.forward(batch);
    out.assign(l, l + tokens.size() * vocab);
    return out;
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
    return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

// The GGUF types whose nibble format can be interleaved, in one file each.
const char* const kRepackable[] = {"Q4_0", "Q4_1", "Q8_0", "IQ4_NL", "IQ4_XS", "Q4_K_M", "Q6_K"};

}  // namespace

TEST_CASE("a repacked GGUF holds the row-major import's bytes in interleaved row blocks") {
    for (const char* kind : kRepackable) {
        CAPTURE(kind);
        const Model rows = load(gguf(kind), false), ilv = load(gguf(kind), true);
        CHECK(rows.import_notes == ilv.import_notes);
        const auto a = rows.tensors(), b = ilv.tensors();
        REQUIRE(a.size() == b.size());
        int repacked = 0;
        for (size_t i = 0; i < a.size(); ++i) {
            CAPTURE(a[i]->name);
            const PackedLayout& la = a[i]->view.layout;
            const PackedLayout& lb = b[i]->view.layout;
            CHECK(la.interleave == 1);
            CHECK(lb.interleave == (can_interleave(la) ? kInterleaveRows : 1));
            REQUIRE(lb.total_bytes == la.total_bytes);
            if (lb.interleave == 1) {
                CHECK(std::memcmp(a[i]->view.data, b[i]->view.data, la.total_bytes) == 0);
                continue;
            }
            ++repacked;
            // Back to row-major: exactly the bytes of the row-major import.
            std::vector<uint8_t> back(la.total_bytes);
            convert_interleave(lb, b[i]->view.data, la, back.data());
            CHECK(std::memcmp(back.data(), a[i]->view.data, la.total_bytes) == 0);
            std::vector<float> ra(size_t(la.cols)), rb(size_t(la.cols));
            for (int64_t r : {int64_t(0), la.rows / 2, la.rows - 1}) {
                dequantize_row(a[i]->view, r, ra.data());
                dequantize_row(b[i]->view, r, rb.data());
                CHECK(same_bits(ra, rb));
            }
        }
        CHECK(repacked >= 14);  // every matrix of the tiny256 files
    }
}

TEST_CASE("a repacked GGUF gives the in-place load's logits bit for bit with every kernel") {
    nibble::test::SettingsGuard guard;
#ifdef _OPENMP
    const int saved_threads = omp_get_max_threads();
#endif
    for (const char* kind : {"Q4_0", "Q4_K_M", "Q8_0", "IQ4_XS"}) {
        const Model rows = load(gguf(kind), false), ilv = load(gguf(kind), true);
        REQUIRE(ilv.layers[0].wq.view.layout.interleave == kInterleaveRows);
        for (MatmulKernel k : nibble::test::fast_kernels()) {
            set_matmul_kernel(k);
            for (int threads : {1, 2}) {
#ifdef _OPENMP
                omp_set_num_threads(threads);
#endif
                for (bool one_by_one : {false, true}) {
                    CAPTURE(kind);
                    CAPTURE(matmul_kernel_name(k));
                    CAPTURE(threads);
                    CAPTURE(one_by_one);
                    const std::vector<float> a = logits(rows, one_by_one);
                    const std::vector<float> b = logits(ilv, one_by_one);
                    CHECK(same_bits(a, b));
                }
            }
        }
    }
#ifdef _OPENMP
    omp_set_num_threads(saved_threads);
#endif
}

namespace {

// This process's page table entry for each page of [begin, end): present or not
// (/proc/self/pagemap bit 63; readable without privileges).
std::vector<bool> present_pages(uintptr_t begin, uintptr_t end) {
    const size_t page = size_t(sysconf(_SC_PAGESIZE));
    const int fd = ::open("/proc/self/pagemap", O_RDONLY);
    REQUIRE(fd >= 0);
    std::vector<bool> out;
    for (uintptr_t a = begin; a < end; a += page) {
        uint64_t entry = 0;
        const bool read = pread(fd, &entry, 8, off_t(a / page * 8)) == 8;
        CHECK(read);
        out.push_back((entry >> 63) != 0);
    }
    ::close(fd);
    return out;
}

// The start address of the one mapping of `path` in this process (/proc/self/maps).
uintptr_t mapping_of(const std::string& path) {
    const std::string canonical = std::filesystem::canonical(path).string();
    std::ifstream maps("/proc/self/maps");
    uintptr_t found = 0;
    int count = 0;
    for (std::string line; std::getline(maps, line);) {
        if (line.size() < canonical.size() ||
            line.compare(line.size() - canonical.size(), canonical.size(), canonical) != 0) {
            continue;
        }
        found = uintptr_t(std::stoull(line, nullptr, 16));
        ++count;
    }
    REQUIRE(count == 1);
    return found;
}

}  // namespace

TEST_CASE("each converted tensor's source pages are no longer resident after the load") {
    // Q8_0: the FFN matrices are 51 pages of 4 KiB. A later page fault next to
    // a released range may map its neighbours again (the kernel's fault-around,
    // 64 KiB aligned), so only the pages more than 64 KiB inside are checked.
    const std::string path = gguf("Q8_0");
    std::vector<std::pair<size_t, size_t>> ranges;  // offset, bytes of each matrix
    {
        const auto file = MappedFile::open(path);
        const GgufFile g = GgufFile::parse(file);
        for (const char* name :
             {"blk.0.ffn_up.weight", "blk.0.ffn_gate.weight", "blk.0.ffn_down.weight",
              "blk.1.ffn_up.weight", "blk.1.ffn_gate.weight", "blk.1.ffn_down.weight"}) {
            const GgufTensorInfo* info = g.find_tensor(name);
            REQUIRE(info != nullptr);
            ranges.emplace_back(size_t(info->data - file->data()), info->n_bytes);
        }
    }
    const size_t margin = 64 * 1024;
    for (bool repack : {true, false}) {
        CAPTURE(repack);
        const Model m = load(path, repack);
        const uintptr_t base = mapping_of(path);
        size_t checked = 0, resident = 0;
        for (const auto& [offset, n] : ranges) {
            REQUIRE(n > 2 * margin);
            for (bool p : present_pages(base + offset + margin, base + offset + n - margin)) {
                ++checked;
                resident += p ? 1 : 0;
            }
        }
        CHECK(checked >= 6);
        CHECK(resident == 0);
        // The model still runs from its converted copies.
        CHECK(logits(m, false).size() == reference_tokens().size() * 512);
    }
}

TEST_CASE("a format that cannot be interleaved stays in place in the mapping") {
    // Q5_K_M: q5k (ggml's blocks, used in place) beside Q6_K (repacked).
    const std::string path = gguf("Q5_K_M");
    std::map<std::string, size_t> offsets;
    {
        const auto file = MappedFile::open(path);
        const GgufFile g = GgufFile::parse(file);
        for (const GgufTensorInfo& info : g.tensors()) {
            offsets[info.name] = size_t(info.data - file->data());
        }
    }
    const Model m = load(path, true);
    const uintptr_t base = mapping_of(path);
    int in_place = 0, repacked = 0;
    for (const Tensor* t : m.tensors()) {
        CAPTURE(t->name);
        const PackedLayout& l = t->view.layout;
        if (is_ggml_block_format(l.format)) {
            CHECK(l.interleave == 1);
            // A view of the mapping.
            CHECK(reinterpret_cast<uintptr_t>(t->view.data) == base + offsets.at(t->name));
            ++in_place;
        } else if (l.interleave == kInterleaveRows) {
            ++repacked;
        }
    }
    CHECK(in_place == 13);
    CHECK(repacked == 3);
    // Every matrix of the Q5_0 file is q5_0 but the Q6_K classifier.
    const Model q5 = load(gguf("Q5_0"), true);
    CHECK(q5.layers[0].w_up.view.layout.interleave == 1);
    CHECK(q5.output.view.layout.interleave == kInterleaveRows);
}

namespace {

// `nibble perplexity ARGS` with NIBBLE_KERNEL=kernel; its exit code.
int perplexity(const std::string& kernel, const std::string& args) {
    const std::string cmd = "NIBBLE_KERNEL=" + kernel + " OMP_NUM_THREADS=2 '" + NIBBLE_BINARY +
                            "' perplexity -q " + args + " >/dev/null 2>&1";
    const int status = std::system(cmd.c_str());
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

}  // namespace

TEST_CASE("--repack and --no-repack: the same log-probabilities under every NIBBLE_KERNEL") {
    const auto dir = nibble::test::temp_dir("nibble_repack_test");
    const std::string text = nibble::test::write_file(
        dir / "text.txt",
        "Once upon a time, there was a little girl named Lily. She liked to play outside. "
        "One day she saw a big red ball in the park and ran to get it.\n");
    int compared = 0;
    for (const kernels::KernelEntry& e : kernels::kernel_table()) {
        const std::string name = e.name;
        if (!e.supported() || name == "reference" || name == "scalar") continue;
        for (const char* kind : {"Q4_0", "Q4_K_M"}) {
            for (const char* batch : {"1", "64"}) {
                CAPTURE(name);
                CAPTURE(kind);
                CAPTURE(batch);
                const std::string common = "-m '" + gguf(kind) + "' -f '" + text +
                                           "' --ctx 32 -t 2 -b " + std::string(batch);
                const std::string a = (dir / "a.bin").string(), b = (dir / "b.bin").string();
                REQUIRE(perplexity(name, common + " --no-repack --save-logits '" + a + "'") == 0);
                REQUIRE(perplexity(name, common + " --repack --save-logits '" + b + "'") == 0);
                const std::string la = nibble::test::read_text(a), lb = nibble::test::read_text(b);
                CHECK(la.size() > 1000);
                CHECK(la == lb);
                ++compared;
            }
        }
    }
#if defined(__x86_64__)
    CHECK(compared >= 4);  // avx2 at least
#endif
}

TEST_CASE("the load line says whether the matrices were repacked; bad values are refused") {
    const std::string model = "-m '" + gguf("Q4_0") + "' -p Once -n 1 --temp 0";
    const auto repacked = nibble::test::run_nibble_streams("run " + model + " --repack");
    CHECK(repacked.exit_code == 0);
    CHECK(repacked.err.find("16 matrices repacked into interleaved row blocks of 4 rows") !=
          std::string::npos);
    const auto kept = nibble::test::run_nibble_streams("run " + model + " --no-repack");
    CHECK(kept.exit_code == 0);
    CHECK(kept.err.find("16 matrices kept row-major") != std::string::npos);
    CHECK(kept.out == repacked.out);
    const auto info = nibble::test::run_nibble_streams("info '" + gguf("Q4_0") + "'");
    CHECK(info.out.find("repack:        16 matrices can be repacked at load") != std::string::npos);

    nibble::test::expect_refusal("run " + model + " --repack --no-repack", 2,
                                 "--repack and --no-repack exclude each other");
    nibble::test::expect_refusal("run " + model + " --repack=maybe", 2, "maybe");
    nibble::test::expect_refusal("bench -m '" + gguf("Q4_0") + "' --no-repack=2", 2, "2");
}

TEST_CASE("without --repack or --no-repack, GGUF matrices are repacked on every CPU with AVX2") {
    // (measured faster with the AVX2 and the AVX-512 kernels, kernels/interleave.cpp)
    CHECK(cpu_prefers_interleaved() == cpu_features().avx2);
    const Model m = load_model(gguf("Q4_0"));
    CHECK(m.layers[0].wq.view.layout.interleave == (cpu_features().avx2 ? kInterleaveRows : 1));
}
