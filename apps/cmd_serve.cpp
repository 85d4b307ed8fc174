// nibble serve: an OpenAI-compatible HTTP server on the continuous-batching
// scheduler. The port is opened first (GET /health says 503 while the model
// loads); SIGTERM or SIGINT stops taking requests, lets the running ones
// finish for up to --drain-timeout seconds, and exits 0.
#include <pthread.h>
#include <signal.h>  // NOLINT(modernize-deprecated-headers): sigwait is POSIX, not <csignal>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cxxopts.hpp>
#include <filesystem>
#include <string>
#include <thread>

#include "apps/commands.h"
#include "apps/sampling_options.h"
#include "apps/serve_engine.h"
#include "apps/serve_http.h"
#include "apps/validate.h"
#include "models/loader.h"

namespace nibble::app {

namespace {

int positive_option(const cxxopts::ParseResult& args, const char* name, int lo, int hi) {
    const int v = args[name].as<int>();
    if (v < lo || v > hi) {
        throw UsageError(std::string("--") + name + " must be in " + std::to_string(lo) + ".." +
                         std::to_string(hi));
    }
    return v;
}

}  // namespace

int serve_command(int argc, char** argv) {
    cxxopts::Options options(argv[0], "Serve a model over the OpenAI HTTP API");
    // 256 tokens per pass: prompts of many clients still go through together,
    // the running streams wait at most one such pass for their next token,
    // and the activation buffers stay small (about 40 KiB per token of TinyLlama).
    add_model_options(options,
                      {.default_batch = 256,
                       .batch_help = "tokens per forward pass (prompts and decoding together)",
                       .ctx_help = "context per sequence (0: the model's)"});
    // clang-format off
    options.add_options("server")
        ("host", "address to listen on", cxxopts::value<std::string>()->default_value("127.0.0.1"))
        ("port", "TCP port (0: any free port, printed)", cxxopts::value<int>()->default_value("8080"))
        ("parallel", "sequences decoded together (KV cache slots)", cxxopts::value<int>()->default_value("4"))
        ("queue", "requests that may wait for a slot; more get 503", cxxopts::value<int>()->default_value("64"))
        ("api-key", "require Authorization: Bearer KEY (also read from NIBBLE_API_KEY)", cxxopts::value<std::string>()->default_value(""))
        ("alias", "model name in the API (default: the file name)", cxxopts::value<std::string>()->default_value(""));
    // clang-format on
    add_template_option(options, "server");
    // clang-format off
    options.add_options("server")
        ("max-tokens", "largest max_tokens a request may ask for, and the default (0: the context)", cxxopts::value<int>()->default_value("0"))
        ("max-body", "largest request body, bytes", cxxopts::value<int>()->default_value("1048576"))
        ("max-connections", "connections handled at once", cxxopts::value<int>()->default_value("128"))
        ("timeout", "seconds to read a request or write a response piece", cxxopts::value<int>()->default_value("30"))
        ("drain-timeout", "seconds running requests may take to finish after SIGTERM", cxxopts::value<int>()->default_value("30"))
        ("h,help", "show this help");
    // clang-format on
    add_sampling_options(options, "-1");
    const auto parsed = parse_command_line(options, argc, argv);
    if (!parsed) return 0;
    const cxxopts::ParseResult& args = *parsed;
    const ModelOptions mo = model_options(args);
    const SamplerParams sampling = sampling_option_values(args);
    ServeConfig config;
    config.host = args["host"].as<std::string>();
    config.port = positive_option(args, "port", 0, 65535);
    const int parallel = positive_option(args, "parallel", 1, 256);
    const int queue = positive_option(args, "queue", 0, 1 << 16);
    config.api_key = args["api-key"].as<std::string>();
    if (config.api_key.empty()) {
        if (const char* key = std::getenv("NIBBLE_API_KEY")) config.api_key = key;
    }
    config.limits.max_tokens = positive_option(args, "max-tokens", 0, 1 << 30);
    config.limits.max_body_bytes = size_t(positive_option(args, "max-body", 1024, 1 << 30));
    config.limits.max_connections = positive_option(args, "max-connections", 1, 4096);
    config.limits.read_timeout_seconds = positive_option(args, "timeout", 1, 3600);
    config.limits.write_timeout_seconds = config.limits.read_timeout_seconds;
    const int drain_seconds = positive_option(args, "drain-timeout", 0, 3600);
    config.model_name = args["alias"].as<std::string>();
    if (config.model_name.empty()) {
        config.model_name = std::filesystem::path(mo.model_path).filename().string();
    }

    // SIGTERM and SIGINT go to one thread (sigwait), never to a worker; a
    // closed client socket must not end the process either.
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGTERM);
    sigaddset(&stop_signals, SIGINT);
    sigaddset(&stop_signals, SIGUSR1);  // from this thread at the end: no signal came
    pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
    signal(SIGPIPE, SIG_IGN);

    ServeMetrics metrics;
    HttpServer server(config, metrics);
    const int port = server.bind();
    std::fprintf(stderr, "nibble serve: listening on http://%s:%d (loading %s)\n",
                 config.host.c_str(), port, mo.model_path.c_str());
    std::thread http([&] { server.run(); });
    std::atomic<bool> signal_seen{false};
    std::thread stopper([&] {
        int sig = 0;
        sigwait(&stop_signals, &sig);
        signal_seen.store(true);
        if (sig != SIGUSR1) {
            std::fprintf(stderr, "nibble serve: %s, finishing the running requests\n",
                         sig == SIGTERM ? "SIGTERM" : "SIGINT");
        }
        server.drain_and_stop(std::chrono::seconds(drain_seconds));
    });
    // Stops the server threads on every way out of this function.
    struct Joiner {
        std::thread* stopper;
        std::thread* http;
        std::atomic<bool>* signal_seen;
        ~Joiner() {
            if (!signal_seen->load()) pthread_kill(stopper->native_handle(), SIGUSR1);
            stopper->join();
            if (http->joinable()) http->join();
        }
    } joiner{&stopper, &http, &signal_seen};

    const int threads = set_threads(mo.threads);
    const LoadedModel loaded(mo);
    const Model& model = loaded.model;
    const Tokenizer& tokenizer = loaded.tokenizer;
    RuntimeOptions ro = loaded.runtime;
    ro.n_sequences = parallel;
    ro.max_logit_rows = parallel;  // the scheduler wants one row per sequence
    ro.max_batch = std::max(ro.max_batch, parallel);
    check_state_memory(model, ro, "--ctx-size or --parallel", "--batch-size");
    InferenceState state(model, ro);
    ServeEngine engine(state, tokenizer, parallel + queue, threads, metrics);
    ServeBackend backend;
    backend.engine = &engine;
    backend.tokenizer = &tokenizer;
    backend.chat_template = chat_template_for(mo, model);
    backend.context = ro.context;
    backend.sampling = sampling;
    server.attach(backend);
    std::fprintf(
        stderr, "nibble serve: ready: model %s, chat template %s, context %d, %d slots, queue %d\n",
        config.model_name.c_str(), chat_template_name(backend.chat_template), ro.context, parallel,
        queue);
    http.join();  // until a stop signal has drained the server
    engine.stop();
    std::fprintf(stderr, "nibble serve: stopped\n");
    return 0;
}

}  // namespace nibble::app
