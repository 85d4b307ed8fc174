// nibble serve's HTTP side (cpp-httplib): routes, authentication, limits,
// server-sent event streams, and the graceful stop. The model is attached
// once it is loaded; until then /health answers 503.
#pragma once
#include <chrono>
#include <memory>
#include <string>

#include "apps/serve_engine.h"
#include "apps/serve_metrics.h"
#include "tokenizer/chat_template.h"

namespace nibble::app {

struct HttpLimits {
    size_t max_body_bytes = size_t(1) << 20;
    int max_connections = 64;  // handled at once; more wait, then get 503
    int read_timeout_seconds = 30;
    int write_timeout_seconds = 30;
    int keep_alive_seconds = 5;
    int max_tokens = 0;  // largest max_tokens a request may ask for (0: the context)
    int retry_after_seconds = 1;
};

struct ServeConfig {
    std::string host = "127.0.0.1";
    int port = 8080;
    std::string api_key;     // empty: no authentication
    std::string model_name;  // in /v1/models and every response
    HttpLimits limits;
};

// What a completion needs once the model is loaded.
struct ServeBackend {
    ServeEngine* engine = nullptr;
    const Tokenizer* tokenizer = nullptr;
    ChatTemplate chat_template = ChatTemplate::plain;
    int context = 0;
    SamplerParams sampling;  // the command line's defaults
};

class HttpServer {
  public:
    HttpServer(ServeConfig config, ServeMetrics& metrics);
    ~HttpServer();
    HttpServer(const HttpServer&) = delete;
    HttpServer& operator=(const HttpServer&) = delete;

    // Binds host:port (port 0: any free port) and returns the port; throws
    // std::runtime_error when it cannot.
    int bind();
    // Serves until stop(); call from its own thread after bind().
    void run();
    // The model is ready: completions are taken from now on.
    void attach(const ServeBackend& backend);
    // Graceful stop: new completions get 503, the running ones may finish for
    // up to `grace`, then the server stops (streams still open are cut off and
    // their requests cancelled).
    void drain_and_stop(std::chrono::milliseconds grace);
    bool stopping() const;

  private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace nibble::app
