// gpt2_serve's HTTP side, on cpp-httplib: the server (connection threads made
// as connections need them, limits, a route table that answers a wrong method
// with 405, one access-log line per request, errors in the shape of the API
// asked), a generation request answered through the model worker, whole or
// streamed, and the signals that stop it all.
#ifndef GPT2_SERVE_HTTP_H_
#define GPT2_SERVE_HTTP_H_

#include <httplib.h>
#include <signal.h>

#include <atomic>
#include <cstddef>
#include <map>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "src/serve/api.h"
#include "src/serve/model_worker.h"
#include "src/serve/request.h"

namespace gpt2::serve {

// A JSON answer.
void SetJson(httplib::Response& res, int status, const Json& body);
// An error answer, in the shape of the API `req` asked (ErrorJson).
void SetError(const httplib::Request& req, httplib::Response& res, int status,
              const std::string& message);

// A client-controlled string as one log token: control bytes, spaces and
// non-ASCII escaped (no forged lines), cut to `max` bytes, "-" when empty.
std::string LogField(const std::string& s, size_t max);

// A generation request (`parsed`, or why it could not be) answered through
// `worker` in `format`'s shape: 400 for a bad request; the whole answer; or
// with "stream" the text as it is drawn (a client that leaves stops its
// generation at the next batch of draws).
void Answer(const ServedModel& served, ModelWorker* worker,
            std::shared_ptr<const ApiFormat> format,
            const absl::StatusOr<ParsedRequest>& parsed,
            const httplib::Request& req, httplib::Response& res);

class HttpServer {
 public:
  // Up to `max_threads` connections served at once.
  explicit HttpServer(int max_threads);
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Binds `host`:`port` (0: a free port) and listens (requests wait in the
  // backlog until Listen); returns the port, or says why it cannot (the port
  // in use, the address not this machine's).
  absl::StatusOr<int> Bind(const std::string& host, int port);

  // Routes, before Listen. A POST handler gets the body read whole, whatever
  // its Content-Type (at most kMaxBodyBytes: 413; multipart: 415). A pattern
  // route (a regular expression, its groups in req.matches) is left out of
  // the 405 table.
  void Get(const std::string& path, httplib::Server::Handler handler);
  void GetPattern(const std::string& pattern, httplib::Server::Handler handler);
  void Post(const std::string& path, httplib::Server::Handler handler);

  // Serves until Stop (which may come first: Listen then returns at once);
  // false if the listen loop failed.
  bool Listen();
  void Stop();

 private:
  // Linux lets listen() be called again on a listening socket, which raises
  // the backlog httplib 0.11 fixed at 5.
  class Server : public httplib::Server {
   public:
    bool RaiseListenBacklog(int backlog) {
      return ::listen(svr_sock_, backlog) == 0;
    }
  };
  void NotAllowed(const httplib::Request& req, httplib::Response& res,
                  const std::string& method) const;

  Server server_;
  // Each route's method: a route asked with another method gets 405 and the
  // one it takes (Allow), not "no route". Read only once the server listens.
  std::map<std::string, std::string> routes_;
};

// SIGINT and SIGTERM, taken by one thread (blocked in all others, so it must
// be created before any other thread): before Watch they end the process at
// once; after, the first says so and stops the server (the worker's queued
// and running requests end with 503, or a stream's error line; the streams
// are let finish, up to 2 s; then Listen returns), and a second ends the
// process at once.
class SignalWatcher {
 public:
  SignalWatcher();
  ~SignalWatcher() { Finish(); }
  SignalWatcher(const SignalWatcher&) = delete;
  SignalWatcher& operator=(const SignalWatcher&) = delete;

  void Watch(HttpServer* server, ModelWorker* worker);
  // Ends the watching thread; the server may be destroyed after this.
  void Finish();

 private:
  void Wait();

  sigset_t set_;
  std::atomic<bool> done_{false};
  std::atomic<HttpServer*> server_{nullptr};
  ModelWorker* worker_ = nullptr;
  std::thread thread_;
};

}  // namespace gpt2::serve

#endif  // GPT2_SERVE_HTTP_H_
