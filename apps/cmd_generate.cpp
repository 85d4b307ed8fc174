// nibble generate: completions for a file of prompts on the continuous-batching
// scheduler, written to a JSONL file one line per prompt as each completes.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cxxopts.hpp>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "apps/commands.h"
#include "apps/progress.h"
#include "apps/request_json.h"
#include "apps/sampling_options.h"
#include "apps/validate.h"
#include "engine/scheduler.h"
#include "models/input_file.h"
#include "models/loader.h"
#include "models/output_file.h"

namespace nibble::app {

namespace {

struct Job {
    RequestSpec spec;
    int line = 0;
    std::vector<int32_t> tokens;
};

// FNV-1a: the default seed of a prompt comes from its id, so it does not depend
// on the order or company the prompt runs in.
uint64_t id_hash(const std::string& id) {
    uint64_t h = 1469598103934665603ull;
    for (unsigned char c : id) h = (h ^ c) * 1099511628211ull;
    return h;
}

// The results already in OUT (--resume). OUT is read whole but bounded, and
// refused untouched when it is not an output of generate.
PreviousOutput previous_output(const std::string& path) {
    if (!std::filesystem::exists(path)) return {};
    PreviousOutput previous =
        scan_previous_output(read_input_file(path, "output", kMaxTextFileBytes * 4, false));
    if (!previous.error.empty()) {
        throw std::runtime_error(path + ": " + previous.error +
                                 "; not resumed (the file is unchanged)");
    }
    return previous;
}

// Reads and checks every prompt; bad lines are reported on stderr and skipped.
std::vector<Job> read_jobs(const std::string& path, const Tokenizer& tokenizer, int context,
                           const std::set<std::string>& skip, int* n_bad) {
    // A regular file of bounded size, or "-" for stdin (a FIFO would block).
    const std::string text = read_text_input(path);
    const bool json = looks_like_jsonl(text);
    const size_t longest_prompt = size_t(context) * max_token_bytes(tokenizer);
    std::vector<Job> jobs;
    std::set<std::string> seen;
    std::istringstream lines(text);
    int number = 0;
    for (std::string line; std::getline(lines, line);) {
        ++number;
        ParsedLine parsed = parse_request_line(line, number, json);
        if (parsed.blank) continue;
        std::string error = parsed.error;
        Job job;
        if (parsed.spec) {
            job.spec = std::move(*parsed.spec);
            job.line = number;
            if (job.spec.prompt.size() > longest_prompt) {
                error = "the prompt of " + byte_size_text(job.spec.prompt.size()) +
                        " cannot fit in the context of " + std::to_string(context) + " tokens";
            } else if (!seen.insert(job.spec.id_json).second) {
                error = "duplicate id " + job.spec.id_json;
            } else if ((job.tokens = tokenizer.encode(job.spec.prompt, true)).size() >=
                       size_t(context)) {
                error = "the prompt has " + std::to_string(job.tokens.size()) +
                        " tokens, the context " + std::to_string(context);
            }
        }
        if (!error.empty()) {
            std::fprintf(stderr, "%s:%d: %s (skipped)\n", escape_for_terminal(path).c_str(), number,
                         escape_for_terminal(error).c_str());
            ++*n_bad;
            continue;
        }
        if (!skip.count(job.spec.id_json)) jobs.push_back(std::move(job));
    }
    return jobs;
}

Request make_request(const Job& job, const SamplerParams& defaults, int n_predict) {
    Request r;
    r.prompt = job.tokens;
    r.sampling = defaults;
    r.sampling.seed = defaults.seed ^ id_hash(job.spec.id);
    const RequestSpec& s = job.spec;
    if (s.temperature) r.sampling.temperature = *s.temperature;
    if (s.top_k) r.sampling.top_k = *s.top_k;
    if (s.top_p) r.sampling.top_p = *s.top_p;
    if (s.min_p) r.sampling.min_p = *s.min_p;
    if (s.seed) r.sampling.seed = *s.seed;
    r.n_predict = s.n_predict.value_or(n_predict);
    r.stop = s.stop;
    return r;
}

std::string output_line(const Job& job, const FinishEvent& e) {
    nlohmann::ordered_json j;
    j["id"] = nlohmann::ordered_json::parse(job.spec.id_json);
    j["prompt"] = job.spec.prompt;
    j["completion"] = std::string(e.completion);
    j["n_prompt"] = e.n_prompt;
    j["n_completion"] = e.n_generated;
    j["finish_reason"] = finish_reason_name(e.reason);
    j["seconds"] = std::round((e.prompt_seconds + e.generation_seconds) * 1e4) / 1e4;
    return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
}

}  // namespace

int generate_command(int argc, char** argv) {
    cxxopts::Options options(argv[0], "Complete a file of prompts, several at a time");
    add_model_options(options, {.ctx_help = "context per sequence (0: the model's)"});
    // clang-format off
    options.add_options()
        ("f,file", "prompts: one per line, or JSONL with \"prompt\" and options", cxxopts::value<std::string>())
        ("out", "output JSONL file", cxxopts::value<std::string>())
        ("parallel", "sequences decoded together", cxxopts::value<int>()->default_value("8"))
        ("resume", "keep OUT and skip the ids already in it")
        ("n,n-predict", "tokens per completion (-1: until EOS or the context)", cxxopts::value<int>()->default_value("256"))
        ("h,help", "show this help");
    // clang-format on
    add_sampling_options(options, "42");
    const auto parsed = parse_command_line(options, argc, argv);
    if (!parsed) return 0;
    const cxxopts::ParseResult& args = *parsed;
    const ModelOptions mo = model_options(args);
    if (!args.count("file")) throw UsageError("missing --file (-f)");
    if (!args.count("out")) throw UsageError("missing --out");
    const int parallel = args["parallel"].as<int>();
    int n_predict = args["n-predict"].as<int>();
    if (parallel < 1 || parallel > 256) throw UsageError("--parallel must be in 1..256");
    if (n_predict < -1) throw UsageError("--n-predict must be >= -1");
    const SamplerParams sampling = sampling_option_values(args);
    set_threads(mo.threads);
    const std::string out_path = args["out"].as<std::string>();
    const bool resume = args.count("resume") > 0;
    const std::string prompts_path = args["file"].as<std::string>();
    // Before anything is read or written: OUT is none of the inputs, and a file.
    std::vector<std::string> inputs = model_input_files(mo.model_path);
    inputs.push_back(mo.tokenizer_path);
    inputs.push_back(prompts_path);
    check_output_path(out_path, inputs);

    const LoadedModel loaded(mo);
    const Model& model = loaded.model;
    const Tokenizer& tokenizer = loaded.tokenizer;
    const PreviousOutput previous = resume ? previous_output(out_path) : PreviousOutput{};
    const std::set<std::string>& done = previous.ids;
    RuntimeOptions ro = loaded.runtime;
    ro.max_batch = std::max(ro.max_batch, parallel);
    ro.n_sequences = parallel;
    ro.max_logit_rows = parallel;  // the scheduler wants one row per sequence
    // -n beyond the context is clipped to it (said once); a completion also
    // stops where its sequence fills the context.
    if (n_predict > ro.context) n_predict = clip_n_predict(n_predict, 0, ro.context);
    check_state_memory(model, ro, "--ctx-size or --parallel", "--batch-size");
    int n_bad = 0;
    std::vector<Job> jobs = read_jobs(prompts_path, tokenizer, ro.context, done, &n_bad);

    LineOutput out(out_path, resume, previous.keep_bytes, previous.lines);
    if (previous.cut_line) {
        std::fprintf(stderr, "generate: %s: left out a last line cut short by an interrupted run\n",
                     escape_for_terminal(out_path).c_str());
    }
    InferenceState state(model, ro);
    Scheduler scheduler(state, tokenizer);
    Progress progress(int(jobs.size()), isatty(STDERR_FILENO) != 0);
    if (resume && !done.empty()) {
        std::fprintf(stderr, "generate: %zu prompts already in %s, %zu to go\n", done.size(),
                     escape_for_terminal(out_path).c_str(), jobs.size());
    }
    // Submit a few more than the slots, so that a freed slot is refilled at once
    // but the queue stays short.
    size_t next = 0;
    auto submit_more = [&] {
        while (next < jobs.size() && int(next) < progress.done() + 2 * parallel) {
            Request r = make_request(jobs[next], sampling, n_predict);
            const Job* job = &jobs[next];
            r.on_finish = [&, job](const FinishEvent& e) {
                out.write_line(output_line(*job, e));
                progress.finished(e.n_prompt - e.n_prompt_reused + e.n_generated, e.n_generated);
            };
            r.on_token = [&](const TokenEvent&) { progress.token(); };
            scheduler.submit(std::move(r));
            ++next;
        }
    };
    try {
        submit_more();
        while (scheduler.step()) submit_more();
    } catch (...) {
        progress.end();  // the error goes on its own line
        throw;
    }
    progress.end();
    out.finish();
    std::fprintf(stderr, "generate: %d prompts completed, %d skipped; %s\n", progress.done(), n_bad,
                 progress.summary().c_str());
    // Nothing to show for the run: every prompt was refused.
    return n_bad > 0 && progress.done() == 0 && done.empty() ? 1 : 0;
}

}  // namespace nibble::app
