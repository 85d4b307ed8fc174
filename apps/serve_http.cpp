// nibble serve's routes on cpp-httplib. A completion handler checks the body,
// renders and tokenizes the prompt, submits it to the ServeEngine and waits
// for the first token before answering, so that a request that never started
// (the queue was full, the server is stopping, a replica died) has sent
// nothing yet and a load balancer may retry it elsewhere. Streams are written
// by a chunked content provider; a client that goes away cancels its request.
#include "apps/serve_http.h"

#include <httplib.h>
#include <sys/socket.h>

#include <atomic>
#include <condition_variable>
#include <ctime>
#include <list>
#include <mutex>
#include <optional>
#include <random>
#include <thread>

#include "apps/serve_api.h"
#include "tokenizer/chat_tokens.h"

namespace nibble::app {

namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr milliseconds kPollInterval{50};

// Worker threads for at most `max_connections` connections at once; up to as
// many more wait for a worker. Connections beyond that are answered 503 by one
// extra thread, whose requests the pre-routing handler recognises.
thread_local bool t_overflow_connection = false;

class ConnectionPool : public httplib::TaskQueue {
  public:
    explicit ConnectionPool(int max_connections) : max_waiting_(size_t(max_connections)) {
        for (int i = 0; i < max_connections; ++i) workers_.emplace_back([this] { work(false); });
        workers_.emplace_back([this] { work(true); });
    }
    void enqueue(std::function<void()> fn) override {
        {
            std::lock_guard lock(mutex_);
            (waiting_.size() < max_waiting_ ? waiting_ : overflow_).push_back(std::move(fn));
        }
        ready_.notify_all();
    }
    void shutdown() override {
        {
            std::lock_guard lock(mutex_);
            shutdown_ = true;
        }
        ready_.notify_all();
        for (std::thread& t : workers_) t.join();
    }

  private:
    void work(bool overflow) {
        t_overflow_connection = overflow;
        std::list<std::function<void()>>& jobs = overflow ? overflow_ : waiting_;
        while (true) {
            std::function<void()> fn;
            {
                std::unique_lock lock(mutex_);
                ready_.wait(lock, [&] { return !jobs.empty() || shutdown_; });
                if (jobs.empty()) return;
                fn = std::move(jobs.front());
                jobs.pop_front();
            }
            fn();
        }
    }
    const size_t max_waiting_;
    std::mutex mutex_;
    std::condition_variable ready_;
    std::list<std::function<void()>> waiting_, overflow_;
    bool shutdown_ = false;
    std::vector<std::thread> workers_;
};

// Equal strings, in a time that depends only on their lengths.
bool constant_time_equal(const std::string& a, const std::string& b) {
    unsigned char diff = a.size() == b.size() ? 0 : 1;
    const size_t n = std::max(a.size(), b.size());
    for (size_t i = 0; i < n; ++i) {
        const unsigned char x = i < a.size() ? static_cast<unsigned char>(a[i]) : 0;
        const unsigned char y = i < b.size() ? static_cast<unsigned char>(b[i]) : 0;
        diff = static_cast<unsigned char>(diff | (x ^ y));
    }
    return diff == 0;
}

// The endpoint label of /metrics: the known paths, everything else "other".
std::string endpoint_label(const std::string& path) {
    for (const char* known : {"/v1/completions", "/v1/chat/completions", "/v1/models", "/health",
                              "/metrics", "/completions", "/chat/completions", "/models"}) {
        if (path == known) return known;
    }
    return "other";
}

void send_error(httplib::Response& res, const ApiError& error) {
    res.status = error.status;
    res.set_content(error_json(error), "application/json");
}

ApiError api_error(int status, std::string message, std::string type, std::string param = "") {
    ApiError e;
    e.status = status;
    e.message = std::move(message);
    e.type = std::move(type);
    e.param = std::move(param);
    return e;
}

// The text a token stands for in a logprobs list: SentencePiece's "▁" as a
// space, byte pieces "<0xNN>" as that byte.
std::string token_text(const Tokenizer& tokenizer, int32_t id) {
    std::string piece = tokenizer.piece(id);
    if (piece.size() == 6 && piece.compare(0, 3, "<0x") == 0 && piece[5] == '>') {
        return std::string(1, char(std::stoi(piece.substr(3, 2), nullptr, 16)));
    }
    // "▁" (U+2581, 3 bytes) -> " ".
    std::string text;
    text.reserve(piece.size());
    for (size_t i = 0; i < piece.size(); ++i) {
        if (piece.compare(i, 3, "\xe2\x96\x81") == 0) {
            text.push_back(' ');
            i += 2;
        } else {
            text.push_back(piece[i]);
        }
    }
    piece = std::move(text);
    return piece;
}

// A request's progress while it is answered: its events, and what the answer
// needs from them.
struct Completion {
    ResponseHeader header;
    RequestId id = 0;
    std::shared_ptr<EventChannel> channel;
    std::vector<StreamEvent> events;  // received, not yet written
    bool want_logprobs = false;
    bool include_usage = true;
    bool finished = false;
    bool first_chunk = true;
    FinishReason reason = FinishReason::length;
    Usage usage;
    Clock::time_point started;
    bool saw_token = false;
};

}  // namespace

struct HttpServer::Impl {
    ServeConfig config;
    ServeMetrics* metrics;
    httplib::Server server;
    std::mutex backend_mutex;
    ServeBackend backend;
    std::atomic<bool> ready{false};
    std::atomic<bool> draining{false};
    std::atomic<bool> stopped{false};
    std::atomic<int> active{0};  // completion requests being answered
    std::mutex rng_mutex;
    std::mt19937_64 rng{std::random_device{}()};
    std::atomic<uint64_t> next_response{1};
    long long started_at = static_cast<long long>(std::time(nullptr));
    int listen_fd = -1;

    Impl(ServeConfig c, ServeMetrics& m) : config(std::move(c)), metrics(&m) {}

    void setup();
    void completion(const httplib::Request& req, httplib::Response& res, bool chat);
    std::optional<Request> scheduler_request(const CompletionRequest& cr, httplib::Response& res);
    void stream(const std::shared_ptr<Completion>& c, httplib::Response& res, ServeEngine* engine);
    bool wait_for_events(Completion& c);
    void note_events(Completion& c);
    std::vector<TokenLogprobs> logprobs_of(const std::vector<StreamEvent>& events) const;
    void busy(httplib::Response& res, const std::string& why) const;
};

HttpServer::HttpServer(ServeConfig config, ServeMetrics& metrics)
    : impl_(std::make_unique<Impl>(std::move(config), metrics)) {
    impl_->setup();
}

HttpServer::~HttpServer() = default;

int HttpServer::bind() {
    const int port = impl_->config.port == 0
                         ? impl_->server.bind_to_any_port(impl_->config.host)
                         : (impl_->server.bind_to_port(impl_->config.host, impl_->config.port)
                                ? impl_->config.port
                                : -1);
    if (port < 0) {
        throw std::runtime_error("--host " + impl_->config.host + " --port " +
                                 std::to_string(impl_->config.port) + ": cannot listen there");
    }
    // cpp-httplib listens with a backlog of 5: a burst of clients would wait
    // for SYN retransmissions. Listening again only raises the backlog.
    if (impl_->listen_fd >= 0) ::listen(impl_->listen_fd, SOMAXCONN);
    return port;
}

void HttpServer::run() {
    impl_->server.listen_after_bind();
}

void HttpServer::attach(const ServeBackend& backend) {
    std::lock_guard lock(impl_->backend_mutex);
    impl_->backend = backend;
    impl_->ready.store(true);
}

bool HttpServer::stopping() const {
    return impl_->draining.load();
}

void HttpServer::drain_and_stop(milliseconds grace) {
    impl_->draining.store(true);
    const auto deadline = Clock::now() + grace;
    while (impl_->active.load() > 0 && Clock::now() < deadline) {
        std::this_thread::sleep_for(kPollInterval);
    }
    impl_->stopped.store(true);
    impl_->server.stop();
}

void HttpServer::Impl::busy(httplib::Response& res, const std::string& why) const {
    res.set_header("Retry-After", std::to_string(config.limits.retry_after_seconds));
    send_error(res, api_error(503, why, "server_error"));
}

void HttpServer::Impl::setup() {
    const HttpLimits& limits = config.limits;
    server.new_task_queue = [n = limits.max_connections] { return new ConnectionPool(n); };
    // SO_REUSEADDR (a restart may bind while old connections linger) but not
    // cpp-httplib's default SO_REUSEPORT, with which a second server on the
    // same port would silently share its connections.
    server.set_socket_options([this](socket_t sock) {
        int yes = 1;
        setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
        listen_fd = sock;
    });
    server.set_payload_max_length(limits.max_body_bytes);
    server.set_read_timeout(limits.read_timeout_seconds, 0);
    server.set_write_timeout(limits.write_timeout_seconds, 0);
    server.set_keep_alive_timeout(limits.keep_alive_seconds);
    server.set_keep_alive_max_count(100);
    server.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
        if (t_overflow_connection) {
            res.set_header("Connection", "close");
            busy(res, "too many open connections");
            return httplib::Server::HandlerResponse::Handled;
        }
        if (!config.api_key.empty() && req.path != "/health") {
            const std::string given = req.get_header_value("Authorization");
            const std::string bearer = "Bearer ";
            const bool ok = given.compare(0, bearer.size(), bearer) == 0 &&
                            constant_time_equal(given.substr(bearer.size()), config.api_key);
            if (!ok) {
                send_error(res,
                           api_error(401, "invalid or missing API key (Authorization: Bearer KEY)",
                                     "authentication_error"));
                res.set_header("WWW-Authenticate", "Bearer");
                return httplib::Server::HandlerResponse::Handled;
            }
        }
        return httplib::Server::HandlerResponse::Unhandled;
    });
    server.set_error_handler([](const httplib::Request& req, httplib::Response& res) {
        if (!res.body.empty()) return;
        if (res.status == 404) {
            send_error(res, api_error(404, "no such endpoint: " + req.method + " " + req.path,
                                      "invalid_request_error"));
        } else if (res.status == 413) {
            send_error(res,
                       api_error(413, "the request body is too large", "invalid_request_error"));
        } else {
            send_error(res,
                       api_error(res.status, "HTTP error " + std::to_string(res.status),
                                 res.status >= 500 ? "server_error" : "invalid_request_error"));
        }
    });
    server.set_exception_handler(
        [](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
            std::string what = "internal error";
            try {
                std::rethrow_exception(std::move(ep));
            } catch (const std::exception& e) {
                what = e.what();
            } catch (...) {
            }
            send_error(res, api_error(500, what, "server_error"));
        });
    server.set_logger([this](const httplib::Request& req, const httplib::Response& res) {
        metrics->count_request(endpoint_label(req.path), res.status);
    });

    server.Get("/health", [this](const httplib::Request&, httplib::Response& res) {
        if (!ready.load()) {
            res.status = 503;
            res.set_content(R"({"status":"loading model"})", "application/json");
        } else if (draining.load()) {
            res.status = 503;
            res.set_content(R"({"status":"stopping"})", "application/json");
        } else {
            res.set_content(R"({"status":"ok"})", "application/json");
        }
    });
    server.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
        ServeMetrics::Gauges g;
        g.ready = ready.load() && !draining.load();
        if (ready.load()) {
            const ServeEngine& engine = *backend.engine;
            g.in_flight = engine.in_flight();
            g.slots = engine.n_slots();
            // Both as the scheduler thread last saw them: in_flight counts a
            // submission at once, before the scheduler has taken it in.
            g.slots_in_use = engine.slots_in_use();
            g.queue_length = engine.waiting();
        }
        res.set_content(metrics->render(g), "text/plain; version=0.0.4");
    });
    auto models = [this](const httplib::Request&, httplib::Response& res) {
        res.set_content(models_json(config.model_name, started_at), "application/json");
    };
    server.Get("/v1/models", models);
    server.Get("/models", models);
    auto completions = [this](const httplib::Request& req, httplib::Response& res) {
        completion(req, res, false);
    };
    auto chat = [this](const httplib::Request& req, httplib::Response& res) {
        completion(req, res, true);
    };
    server.Post("/v1/completions", completions);
    server.Post("/completions", completions);
    server.Post("/v1/chat/completions", chat);
    server.Post("/chat/completions", chat);
}

// Moves new events into c.events; false when the server stopped first.
bool HttpServer::Impl::wait_for_events(Completion& c) {
    std::vector<StreamEvent> fresh;
    while (!c.channel->pop_all(&fresh, kPollInterval)) {
        if (stopped.load()) return false;
    }
    for (StreamEvent& e : fresh) c.events.push_back(std::move(e));
    note_events(c);
    return true;
}

// Bookkeeping of new events: time to first token, the finish and usage.
void HttpServer::Impl::note_events(Completion& c) {
    for (const StreamEvent& e : c.events) {
        if (e.token >= 0 && !c.saw_token) {
            c.saw_token = true;
            metrics->observe_time_to_first_token(
                std::chrono::duration<double>(Clock::now() - c.started).count());
        }
        if (e.finished) {
            c.finished = true;
            c.reason = e.reason;
            c.usage.prompt_tokens = e.n_prompt;
            c.usage.cached_tokens = e.n_prompt_reused;
            c.usage.completion_tokens = e.n_generated;
        }
    }
}

std::vector<TokenLogprobs> HttpServer::Impl::logprobs_of(
    const std::vector<StreamEvent>& events) const {
    std::vector<TokenLogprobs> out;
    for (const StreamEvent& e : events) {
        if (e.finished || e.token < 0) continue;
        TokenLogprobs t;
        t.text = token_text(*backend.tokenizer, e.token);
        t.logprob = e.logprob;
        for (const TokenLogprob& top : e.top_logprobs) {
            t.top.emplace_back(token_text(*backend.tokenizer, top.token), top.logprob);
        }
        out.push_back(std::move(t));
    }
    return out;
}

// The scheduler request for a checked body, or nothing after answering 400.
std::optional<Request> HttpServer::Impl::scheduler_request(const CompletionRequest& cr,
                                                           httplib::Response& res) {
    const ServeBackend& be = backend;
    const bool chat = cr.chat;
    // The prompt's tokens: the conversation in the model's chat template up to
    // where the assistant's answer begins, or the prompt text after BOS.
    std::vector<int32_t> prompt;
    if (chat) {
        // What clients wrote never becomes a special token (chat_tokens.h).
        prompt =
            tokenize_chat(*be.tokenizer, render_chat_marked(be.chat_template, cr.messages, true));
        add_bos_if_wanted(*be.tokenizer, prompt);
    } else {
        prompt = be.tokenizer->encode(cr.prompt, true);
        if (prompt.empty()) prompt.push_back(be.tokenizer->bos_id());
    }
    const char* prompt_field = chat ? "messages" : "prompt";
    if (int(prompt.size()) >= be.context) {
        send_error(res, api_error(400,
                                  std::string("\"") + prompt_field + "\" has " +
                                      std::to_string(prompt.size()) + " tokens, the context " +
                                      std::to_string(be.context),
                                  "invalid_request_error", prompt_field));
        return std::nullopt;
    }
    const int max_tokens = config.limits.max_tokens > 0 ? config.limits.max_tokens : be.context;
    const RequestSpec& s = cr.options;
    if (s.n_predict && *s.n_predict > max_tokens) {
        send_error(res, api_error(400,
                                  "\"max_tokens\" must be at most " + std::to_string(max_tokens) +
                                      " on this server",
                                  "invalid_request_error", "max_tokens"));
        return std::nullopt;
    }
    Request r;
    r.prompt = std::move(prompt);
    r.sampling = be.sampling;
    if (s.temperature) r.sampling.temperature = *s.temperature;
    if (s.top_k) r.sampling.top_k = *s.top_k;
    if (s.top_p) r.sampling.top_p = *s.top_p;
    if (s.min_p) r.sampling.min_p = *s.min_p;
    if (s.seed) {
        r.sampling.seed = *s.seed;
    } else {
        std::lock_guard lock(rng_mutex);
        r.sampling.seed = rng();
    }
    r.n_predict = s.n_predict && *s.n_predict >= 0 ? *s.n_predict : max_tokens;
    r.stop = s.stop;
    if (chat) {
        for (std::string& stop : chat_stop_strings(be.chat_template)) r.stop.push_back(stop);
    }
    r.n_logprobs = cr.logprobs;
    r.ignore_eos = cr.ignore_eos;
    return r;
}

void HttpServer::Impl::completion(const httplib::Request& req, httplib::Response& res, bool chat) {
    const auto started = Clock::now();
    if (!ready.load()) return busy(res, "the model is still loading");
    if (draining.load()) return busy(res, "the server is stopping");
    ParsedCompletion parsed = parse_completion_request(req.body, chat);
    if (!parsed.request) return send_error(res, parsed.error);
    const CompletionRequest& cr = *parsed.request;
    const ServeBackend& be = backend;
    std::optional<Request> r = scheduler_request(cr, res);
    if (!r) return;
    const char* prompt_field = chat ? "messages" : "prompt";

    ServeEngine::Submitted submitted;
    try {
        submitted = be.engine->submit(std::move(*r), cr.logprobs >= 0);
    } catch (const std::invalid_argument& e) {
        return send_error(res, api_error(400, e.what(), "invalid_request_error", prompt_field));
    }
    if (!submitted.channel) {
        return busy(res, "the server is busy: " + std::to_string(be.engine->in_flight()) +
                             " requests are running or queued");
    }
    active.fetch_add(1);
    auto c = std::make_shared<Completion>();
    c->id = submitted.id;
    c->channel = submitted.channel;
    c->want_logprobs = cr.logprobs >= 0;
    c->include_usage = cr.include_usage;
    c->started = started;
    c->header.chat = chat;
    c->header.model = config.model_name;
    c->header.created = static_cast<long long>(std::time(nullptr));
    c->header.id = std::string(chat ? "chatcmpl-" : "cmpl-") + std::to_string(started_at) + "-" +
                   std::to_string(next_response.fetch_add(1));
    ServeEngine* engine = be.engine;
    // Gives up on the request: the server is stopping.
    auto abandon = [this, engine, c, &res] {
        engine->cancel(c->id);
        active.fetch_sub(1);
        busy(res, "the server is stopping");
    };

    if (!cr.stream) {
        while (!c->finished) {
            if (!wait_for_events(*c)) return abandon();
        }
        std::string text;
        for (const StreamEvent& e : c->events) text += e.text;
        std::vector<TokenLogprobs> logprobs;
        if (c->want_logprobs) logprobs = logprobs_of(c->events);
        res.set_content(completion_json(c->header, text, c->reason, c->usage,
                                        c->want_logprobs ? &logprobs : nullptr),
                        "application/json");
        active.fetch_sub(1);
        return;
    }
    // Nothing is sent before the first token (or the finish).
    bool started_output = false;
    while (!started_output) {
        if (!wait_for_events(*c)) return abandon();
        started_output = c->saw_token || c->finished;
    }
    stream(c, res, engine);
}

// The answer as server-sent events, written as the tokens arrive.
void HttpServer::Impl::stream(const std::shared_ptr<Completion>& c, httplib::Response& res,
                              ServeEngine* engine) {
    res.set_header("Cache-Control", "no-cache");
    res.set_header("X-Accel-Buffering", "no");  // nginx: do not buffer this response
    res.set_chunked_content_provider(
        "text/event-stream",
        [this, c](size_t, httplib::DataSink& sink) {
            auto send = [&](const std::string& json) {
                const std::string event = "data: " + json + "\n\n";
                return sink.write(event.data(), event.size());
            };
            if (c->events.empty() && !c->finished) {
                std::vector<StreamEvent> fresh;
                if (!c->channel->pop_all(&fresh, kPollInterval)) {
                    // Nothing new: is the client still there?
                    return !stopped.load() && sink.is_writable();
                }
                c->events = std::move(fresh);
                note_events(*c);
            }
            std::string text;
            bool any_token = false;
            for (const StreamEvent& e : c->events) {
                text += e.text;
                any_token = any_token || (e.token >= 0 && !e.finished);
            }
            if (!text.empty() || (c->want_logprobs && any_token)) {
                std::vector<TokenLogprobs> logprobs;
                if (c->want_logprobs) logprobs = logprobs_of(c->events);
                const bool ok = send(chunk_json(c->header, text, c->first_chunk,
                                                c->want_logprobs ? &logprobs : nullptr));
                c->first_chunk = false;
                if (!ok) return false;
            }
            c->events.clear();
            if (c->finished) {
                if (!send(final_chunk_json(c->header, c->reason,
                                           c->include_usage ? &c->usage : nullptr)) ||
                    !send("[DONE]")) {
                    return false;
                }
                sink.done();
            }
            return true;
        },
        [this, engine, c](bool) {
            // Whatever ended the stream (done, the client gone, the server
            // stopping): a request still running is cancelled.
            if (!c->finished) engine->cancel(c->id);
            active.fetch_sub(1);
        });
}

}  // namespace nibble::app
