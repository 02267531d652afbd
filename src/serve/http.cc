#include "src/serve/http.h"

#include <dirent.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <future>
#include <mutex>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "src/infer/text_stream.h"
#include "src/serve/connection_threads.h"

namespace gpt2::serve {
namespace {

constexpr char kServer[] = "gpt2_serve";
// A client that sends nothing for this long loses its connection.
constexpr int kSocketTimeoutSeconds = 5;
// Connection threads kept when idle (more are made as connections need them,
// and end after a minute idle).
constexpr int kKeptConnectionThreads = 4;
// httplib 0.11 listens with a backlog of 5 (built into Debian's library): a
// burst of connections overflowed it and the kernel dropped their
// handshakes, which clients saw as failed reads a second later.
constexpr int kListenBacklog = 1024;

// What the access log needs from a request, kept per connection thread: a
// request is read, handled and logged on one thread.
struct RequestLog {
  std::chrono::steady_clock::time_point start;
  bool started = false;
  int64_t tokens = 0;
  bool client_left = false;  // a stream whose client went away
};
thread_local RequestLog t_log;

// Streams being written (each ends with its answer or an error line), so a
// server told to stop lets them end before it stops writing.
std::atomic<int> g_open_streams{0};

// A streamed answer, between the worker (which adds lines) and the connection
// thread (which writes them): newline-separated JSON, the deltas of the
// samples' text as they grow, then the answer a plain request gets.
class Stream {
 public:
  // A line, and the new tokens drawn so far (-1: unchanged).
  void Add(std::string line, bool last = false, int64_t tokens = -1) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      lines_.push_back(std::move(line));
      finished_ = finished_ || last;
      if (tokens >= 0) tokens_ = tokens;
    }
    cv_.notify_all();
  }
  // Waits up to `timeout` for lines; returns them and whether the stream has
  // ended.
  std::vector<std::string> Take(std::chrono::milliseconds timeout,
                                bool* finished, int64_t* tokens) {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_for(lock, timeout,
                 [this] { return finished_ || !lines_.empty(); });
    std::vector<std::string> lines(std::make_move_iterator(lines_.begin()),
                                   std::make_move_iterator(lines_.end()));
    lines_.clear();
    *finished = finished_;
    *tokens = tokens_;
    return lines;
  }
  // The client went away: the worker stops at its next batch of draws.
  void Abandon() { abandoned_ = true; }
  bool abandoned() const { return abandoned_; }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::string> lines_;
  bool finished_ = false;
  int64_t tokens_ = 0;
  std::atomic<bool> abandoned_{false};
};

// httplib's connection threads: serve::ConnectionThreads, made as
// connections need them (its ThreadPool held a fixed 16, which 16 slow
// clients filled, the page and /healthz then waiting behind them).
class HttpThreads : public httplib::TaskQueue {
 public:
  explicit HttpThreads(int max_threads)
      : threads_(max_threads, std::min(max_threads, kKeptConnectionThreads),
                 std::chrono::seconds(60)) {}
  void enqueue(std::function<void()> fn) override {
    threads_.Enqueue(std::move(fn));
  }
  void shutdown() override { threads_.Shutdown(); }

 private:
  serve::ConnectionThreads threads_;
};

// Tests: GPT2_SERVE_TEST_DELAY_MS slows each batch of draws, so a client
// (a browser's Stop, a test's hang-up) can act on a generation mid-way.
void TestDelay() {
  static const int delay_ms = [] {
    const char* v = std::getenv("GPT2_SERVE_TEST_DELAY_MS");
    return v != nullptr ? std::atoi(v) : 0;
  }();
  if (delay_ms > 0) {
    std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms));
  }
}

// The socket of the connection `req` came on, or -1: the one of this
// process's sockets whose peer is the request's client address and port.
// (cpp-httplib 0.11 does not hand handlers their socket; the server needs it
// to see a client hang up while its request waits for the model.)
int ConnectionSocket(const httplib::Request& req) {
  DIR* dir = opendir("/proc/self/fd");
  if (dir == nullptr) return -1;
  int found = -1;
  const std::string port = absl::StrCat(req.remote_port);
  for (dirent* entry; found < 0 && (entry = readdir(dir)) != nullptr;) {
    char* end = nullptr;
    const long fd = std::strtol(entry->d_name, &end, 10);
    if (end == entry->d_name || *end != '\0' || fd == dirfd(dir)) continue;
    sockaddr_storage peer{};
    socklen_t size = sizeof(peer);
    if (getpeername(static_cast<int>(fd), reinterpret_cast<sockaddr*>(&peer),
                    &size) != 0) {
      continue;  // not a connected socket
    }
    char host[NI_MAXHOST], service[NI_MAXSERV];
    if (getnameinfo(reinterpret_cast<sockaddr*>(&peer), size, host,
                    sizeof(host), service, sizeof(service),
                    NI_NUMERICHOST | NI_NUMERICSERV) == 0 &&
        req.remote_addr == host && port == service) {
      found = static_cast<int>(fd);
    }
  }
  closedir(dir);
  return found;
}

// Whether the client has hung up (or reset) the connection: poll's
// POLLRDHUP, seen even with unread bytes waiting.
bool ClientHungUp(int fd) {
  if (fd < 0) return false;
  pollfd p{fd, POLLRDHUP, 0};
  return poll(&p, 1, 0) == 1 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR));
}

// "CLIENT:PORT of PATH", for the notes on clients that went away.
std::string ClientAndPath(const httplib::Request& req);

// The server's note that a client (`who`, ClientAndPath) went away from its
// generation.
void NoteClientLeft(const std::string& who, const char* what) {
  const std::string note =
      absl::StrCat(kServer, ": the ", what, " client ", who,
                   " went away; its generation was stopped\n");
  std::fwrite(note.data(), 1, note.size(), stdout);
  std::fflush(stdout);
}

}  // namespace

namespace {
std::string ClientAndPath(const httplib::Request& req) {
  return absl::StrCat(LogField(req.remote_addr, 64), ":", req.remote_port,
                      " of ", LogField(req.path, 200));
}
}  // namespace

std::string LogField(const std::string& s, size_t max) {
  if (s.empty()) return "-";
  std::string out;
  for (unsigned char c : s.substr(0, max)) {
    if (c > ' ' && c < 0x7f && c != '\\') {
      out.push_back(static_cast<char>(c));
    } else {
      out += absl::StrFormat("\\x%02x", c);
    }
  }
  if (s.size() > max) out += "...";
  return out;
}

void SetJson(httplib::Response& res, int status, const Json& body) {
  res.status = status;
  res.set_content(Dump(body) + "\n", "application/json");
}

void SetError(const httplib::Request& req, httplib::Response& res, int status,
              const std::string& message) {
  SetJson(res, status, ErrorJson(req.path, message));
}

void Answer(const ServedModel& served, ModelWorker* worker,
            std::shared_ptr<const ApiFormat> format,
            const absl::StatusOr<ParsedRequest>& parsed,
            const httplib::Request& req, httplib::Response& res) {
  const auto fail = [&](int status, absl::string_view message) {
    SetJson(res, status, format->error(std::string(message)));
  };
  if (!parsed.ok()) return fail(400, parsed.status().message());
  if (parsed->stream && req.version == "HTTP/1.0") {
    // A stream is sent in chunks, which HTTP/1.0 does not have: its clients
    // showed the chunk sizes in the text.
    return fail(400,
                "stream: true needs HTTP/1.1 (the stream is sent in chunks); "
                "this request is HTTP/1.0: send it as HTTP/1.1, or without "
                "stream");
  }
  // The client may hang up while its request waits or runs: seen on its
  // socket (every 250 ms, or when a stream has nothing to send), its
  // generation is then left unrun or stopped at the next batch of draws.
  const int socket = ConnectionSocket(req);
  if (!parsed->stream) {
    struct Outcome {
      std::promise<std::pair<absl::StatusOr<infer::GenerateResult>, double>>
          promise;
      std::atomic<bool> gone{false};
    };
    auto outcome = std::make_shared<Outcome>();
    auto finished = outcome->promise.get_future();
    const auto wanted = [outcome] { return !outcome->gone.load(); };
    worker->Submit(
        parsed->request,
        [wanted](const std::vector<infer::GeneratedSample>&) {
          TestDelay();
          return wanted();
        },
        [outcome](absl::StatusOr<infer::GenerateResult> result, double waited) {
          outcome->promise.set_value({std::move(result), waited});
        },
        wanted);
    while (finished.wait_for(std::chrono::milliseconds(250)) !=
           std::future_status::ready) {
      if (ClientHungUp(socket)) {
        outcome->gone = true;
        t_log.client_left = true;
        NoteClientLeft(ClientAndPath(req), "waiting");
        // nginx's "client closed request", for the log; nobody reads it.
        return fail(499, "the client went away");
      }
    }
    auto [result, queue_seconds] = finished.get();
    absl::StatusOr<Json> answer =
        result.ok() ? format->whole(*parsed, *result, queue_seconds)
                    : absl::StatusOr<Json>(result.status());
    if (!answer.ok()) {
      return fail(StatusFor(answer.status()), answer.status().message());
    }
    t_log.tokens = result->new_tokens;
    SetJson(res, 200, *answer);
    return;
  }
  // Streamed: the deltas as the worker draws, then the end (or an error).
  auto lines = std::make_shared<Stream>();
  auto text = std::make_shared<infer::TextStream>(
      &served.tokenizer, parsed->request.num_samples, parsed->request.stop);
  infer::GenerateProgress progress =
      [format, lines,
       text](const std::vector<infer::GeneratedSample>& samples) {
        TestDelay();
        if (lines->abandoned()) return false;
        const std::vector<std::string> deltas = text->Take(samples);
        int64_t tokens = 0;
        for (const auto& s : samples) tokens += s.tokens.size();
        if (std::any_of(deltas.begin(), deltas.end(),
                        [](const std::string& d) { return !d.empty(); })) {
          lines->Add(format->Frame(format->deltas(deltas, tokens)), false,
                     tokens);
        }
        return true;
      };
  worker->Submit(
      parsed->request, std::move(progress),
      [format, lines, text, request = *parsed](
          absl::StatusOr<infer::GenerateResult> result, double waited) {
        absl::StatusOr<Json> answer =
            result.ok() ? format->whole(request, *result, waited)
                        : absl::StatusOr<Json>(result.status());
        if (!answer.ok()) {
          lines->Add(format->Frame({format->error(
                         std::string(answer.status().message()))}) +
                         format->stream_tail,
                     true);
          return;
        }
        // What the deltas held back (same thread as the progress calls).
        const std::vector<std::string> rest = text->Rest(result->samples);
        lines->Add(format->Frame(format->end(request, *answer, rest)) +
                       format->stream_tail,
                   true, result->new_tokens);
      },
      [lines] { return !lines->abandoned(); });
  ++g_open_streams;
  res.set_chunked_content_provider(
      format->stream_type,
      // (`req` is not kept: the response is written after it is gone.)
      [lines, socket, who = ClientAndPath(req)](size_t,
                                                httplib::DataSink& sink) {
        bool finished = false;
        int64_t tokens = 0;
        // A bounded wait, so a server told to stop is not held by a long
        // generation (httplib asks again while it is not stopping).
        const std::vector<std::string> taken =
            lines->Take(std::chrono::milliseconds(500), &finished, &tokens);
        // A client that left while its stream waited for the model.
        if (taken.empty() && !finished && ClientHungUp(socket)) {
          t_log.client_left = true;
          NoteClientLeft(who, "streaming");
          return false;
        }
        for (const std::string& line : taken) {
          if (!sink.write(line.data(), line.size())) {
            t_log.client_left = true;  // (the logger runs before the releaser)
            NoteClientLeft(who, "streaming");
            return false;
          }
          // The access log counts what was sent, if the client leaves.
          t_log.tokens = tokens;
        }
        if (finished) sink.done();
        return true;
      },
      [lines](bool success) {
        if (!success) lines->Abandon();
        --g_open_streams;
      });
}

HttpServer::HttpServer(int max_threads) {
  server_.new_task_queue = [max_threads] {
    return new HttpThreads(max_threads);
  };
  // SO_REUSEADDR only: httplib's default adds SO_REUSEPORT, with which a
  // second gpt2_serve bound the same port and the kernel split the requests
  // between the two models. Now the second one fails to bind and says so.
  server_.set_socket_options([](socket_t sock) {
    int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
  });
  server_.set_payload_max_length(kMaxBodyBytes);
  server_.set_read_timeout(kSocketTimeoutSeconds, 0);
  server_.set_write_timeout(kSocketTimeoutSeconds, 0);
  server_.set_keep_alive_timeout(kSocketTimeoutSeconds);
  server_.set_pre_routing_handler([this](const httplib::Request& req,
                                         httplib::Response& res) {
    t_log = RequestLog{std::chrono::steady_clock::now(), true, 0};
    // Two lengths for one body: which one a proxy in front believed is
    // unknown (request smuggling), so neither is taken.
    if (req.get_header_value_count("Content-Length") > 1) {
      SetError(req, res, 400, "more than one Content-Length header: send one");
      res.set_header("Connection", "close");
      return httplib::Server::HandlerResponse::Handled;
    }
    // A POST without Content-Length (curl -X POST with no -d): httplib
    // waited out the read timeout (5 s) for a body, then answered a bare
    // 400.
    if (req.method == "POST" && !req.has_header("Content-Length") &&
        !req.has_header("Transfer-Encoding")) {
      if (const auto route = routes_.find(req.path); route == routes_.end()) {
        SetError(req, res, 404, absl::StrCat("no route for POST ", req.path));
      } else if (route->second != "POST") {
        NotAllowed(req, res, route->second);
      } else {
        SetError(req, res, 400,
                 absl::StrCat("POST ", req.path,
                              " without a body: send the JSON request with "
                              "a Content-Length (curl -d '{\"prompt\": "
                              "...}')"));
      }
      return httplib::Server::HandlerResponse::Handled;
    }
    return httplib::Server::HandlerResponse::Unhandled;
  });
  server_.set_logger([](const httplib::Request& req,
                        const httplib::Response& res) {
    const std::string ms =
        t_log.started
            ? absl::StrFormat(
                  "%.1f", std::chrono::duration<double, std::milli>(
                              std::chrono::steady_clock::now() - t_log.start)
                              .count())
            : "-";
    // One write per line, so lines from concurrent requests never interleave.
    const std::string line = absl::StrFormat(
        "%s %s %s %d %s ms %d tokens%s\n", LogField(req.remote_addr, 64),
        LogField(req.method, 16), LogField(req.path, 200), res.status, ms,
        t_log.tokens, t_log.client_left ? " (client left)" : "");
    std::fwrite(line.data(), 1, line.size(), stdout);
    std::fflush(stdout);
    t_log = RequestLog{};
  });
  server_.set_error_handler(
      [this](const httplib::Request& req, httplib::Response& res) {
        if (!res.body.empty()) return;  // a handler's own error
        if (const auto route = routes_.find(req.path);
            res.status == 404 && route != routes_.end() &&
            req.method != route->second) {
          NotAllowed(req, res, route->second);
          return;
        }
        std::string message =
            res.status == 413
                ? absl::StrCat("request body over ", kMaxBodyBytes, " bytes")
            : res.status == 404
                ? absl::StrCat("no route for ", req.method, " ", req.path)
            : res.status == 400 && req.method.empty()
                ? std::string(
                      "not an HTTP request this server can read (a bad "
                      "request line or headers)")
                : absl::StrCat("HTTP ", res.status);
        SetError(req, res, res.status, message);
      });
  server_.set_exception_handler([](const httplib::Request& req,
                                   httplib::Response& res,
                                   std::exception_ptr ep) {
    std::string what = "unknown exception";
    try {
      std::rethrow_exception(ep);
    } catch (const std::exception& e) {
      what = e.what();
    } catch (...) {
    }
    SetError(req, res, 500, absl::StrCat("internal error: ", what));
  });
}

void HttpServer::NotAllowed(const httplib::Request& req, httplib::Response& res,
                            const std::string& method) const {
  res.set_header("Allow", method);
  SetError(req, res, 405,
           absl::StrCat(req.method, " ", req.path, ": not allowed; it takes ",
                        method));
}

void HttpServer::Get(const std::string& path,
                     httplib::Server::Handler handler) {
  routes_[path] = "GET";
  server_.Get(path, std::move(handler));
}

void HttpServer::GetPattern(const std::string& pattern,
                            httplib::Server::Handler handler) {
  server_.Get(pattern, std::move(handler));
}

// The body is read here, whatever its Content-Type: httplib's own read took
// an application/x-www-form-urlencoded one (curl -d's default) as a form and
// refused it past 8 KiB with a 413 that named 64 KiB. (set_payload_max_length
// still bounds every body.)
void HttpServer::Post(const std::string& path,
                      httplib::Server::Handler handler) {
  routes_[path] = "POST";
  server_.Post(path, [handler = std::move(handler)](
                         const httplib::Request& req, httplib::Response& res,
                         const httplib::ContentReader& read) {
    // httplib reads a multipart body only through a per-part reader (the
    // plain one threw bad_function_call: a 500).
    if (req.is_multipart_form_data()) {
      SetError(req, res, 415,
               "a multipart/form-data body (curl -F): send the request as "
               "JSON (curl -H 'Content-Type: application/json' -d "
               "'{\"prompt\": ...}')");
      return;
    }
    httplib::Request with_body = req;
    const bool whole = read([&with_body](const char* data, size_t size) {
      with_body.body.append(data, size);
      return with_body.body.size() <= kMaxBodyBytes;
    });
    if (!whole) {
      if (with_body.body.size() > kMaxBodyBytes ||
          std::strtoull(req.get_header_value("Content-Length").c_str(), nullptr,
                        10) > kMaxBodyBytes) {
        SetError(req, res, 413,
                 absl::StrCat("request body over ", kMaxBodyBytes, " bytes"));
      } else {
        SetError(req, res, 400, "the request body could not be read whole");
      }
      return;
    }
    handler(with_body, res);
  });
}

bool HttpServer::Listen() { return server_.listen_after_bind(); }

void HttpServer::Stop() { server_.stop(); }

absl::StatusOr<int> HttpServer::Bind(const std::string& host, int port) {
  int bound = port;
  if (port == 0) {
    bound = server_.bind_to_any_port(host);
  } else if (!server_.bind_to_port(host, port)) {
    bound = -1;
  }
  if (bound < 0) {
    // httplib says only that it failed: a bind of our own says why.
    std::string why = "";
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    addrinfo* found = nullptr;
    const std::string service = absl::StrCat(port);
    if (getaddrinfo(host.c_str(), service.c_str(), &hints, &found) != 0 ||
        found == nullptr) {
      why = absl::StrCat(host, " is not an address or a host name known here");
    } else {
      const int fd =
          socket(found->ai_family, found->ai_socktype, found->ai_protocol);
      int yes = 1;
      setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
      if (fd >= 0 && bind(fd, found->ai_addr, found->ai_addrlen) != 0) {
        why = errno == EADDRINUSE
                  ? absl::StrCat("port ", port,
                                 " is in use (another server there? --port "
                                 "0 picks a free one)")
              : errno == EADDRNOTAVAIL
                  ? absl::StrCat(host, " is not an address of this machine")
              : errno == EACCES
                  ? absl::StrCat("port ", port,
                                 " needs privileges (ports below 1024)")
                  : std::string(std::strerror(errno));
      }
      if (fd >= 0) close(fd);
      freeaddrinfo(found);
    }
    return absl::UnavailableError(absl::StrCat(
        "cannot listen on ", host, ":", port, why.empty() ? "" : ": ", why));
  }
  if (!server_.RaiseListenBacklog(kListenBacklog)) {
    return absl::InternalError("cannot raise the listen backlog");
  }
  return bound;
}

SignalWatcher::SignalWatcher() {
  sigemptyset(&set_);
  sigaddset(&set_, SIGINT);
  sigaddset(&set_, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set_, nullptr);
  thread_ = std::thread([this] { Wait(); });
}

void SignalWatcher::Watch(HttpServer* server, ModelWorker* worker) {
  worker_ = worker;
  server_ = server;
}

void SignalWatcher::Finish() {
  if (!thread_.joinable()) return;
  done_ = true;
  pthread_kill(thread_.native_handle(), SIGTERM);
  thread_.join();
}

void SignalWatcher::Wait() {
  int sig = 0;
  sigwait(&set_, &sig);
  if (done_) return;
  HttpServer* server = server_.load();
  if (server == nullptr) std::_Exit(128 + sig);
  const int in_flight = worker_->Stop("the server is stopping");
  std::printf(
      "%s: %s received: stopping (%d request%s queued or running end%s "
      "with 503 or a stream's error line; again: at once)\n",
      kServer, sig == SIGINT ? "SIGINT" : "SIGTERM", in_flight,
      in_flight == 1 ? "" : "s", in_flight == 1 ? "s" : "");
  std::fflush(stdout);
  // A second signal ends the process, unless Finish comes first.
  std::thread second([this] {
    int again = 0;
    sigwait(&set_, &again);
    if (done_) return;
    std::printf("%s: %s again: exiting now\n", kServer,
                again == SIGINT ? "SIGINT" : "SIGTERM");
    std::fflush(stdout);
    std::_Exit(128 + again);
  });
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::seconds(2);
  while (g_open_streams.load() > 0 &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  // stop() is a no-op until listen_after_bind has started: repeat it.
  while (!done_) {
    server->Stop();
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  pthread_kill(second.native_handle(), SIGTERM);
  second.join();
}

}  // namespace gpt2::serve
