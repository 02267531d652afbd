// What the server tests share: a scratch folder, a small checkpoint with
// random weights (GPT-2's full vocabulary, so the real tokenizer works), and
// child processes (gpt2_serve, gpt2_sample, Chromium) that are always killed:
// on Stop, on destruction, and by the kernel if the test itself dies
// (PR_SET_PDEATHSIG).
#ifndef GPT2_TESTS_SERVE_SERVE_TEST_UTIL_H_
#define GPT2_TESTS_SERVE_SERVE_TEST_UTIL_H_

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <filesystem>
#include <mutex>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "proto/checkpoint.pb.h"
#include "src/ckpt/model_checkpoint.h"
#include "src/core/error.h"
#include "src/model/params.h"

namespace gpt2::serve_testing {

// A fresh folder under $TMPDIR (or /tmp), removed with its contents.
class TempDir {
 public:
  explicit TempDir(const char* prefix) {
    const char* base = std::getenv("TMPDIR");
    std::string templ = absl::StrCat(base != nullptr && base[0] ? base : "/tmp",
                                     "/", prefix, "_XXXXXX");
    path_ = mkdtemp(templ.data()) != nullptr ? templ : "";
  }
  ~TempDir() {
    std::error_code ec;
    if (!path_.empty()) std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }
  std::string File(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// L=1, NH=2, C=32, context 64, V=50257: about 1.6M parameters (nearly all of
// them wte), so it loads and samples in milliseconds. GPT-2's init with the
// given seed; the header says step `step`.
inline ModelShape TinyServeShape() {
  return ModelShape{1, 2, 32, 64, 50257, 50304};
}
inline absl::Status WriteTinyCheckpoint(const std::string& path, int64_t step,
                                        uint64_t seed = 1) {
  const ModelShape shape = TinyServeShape();
  const std::vector<ParamSpec> list = BuildParamList(shape);
  std::vector<double> params;
  InitParams(shape, list, seed, &params);
  const std::vector<float> fp(params.begin(), params.end());
  ckpt::Header header;
  *header.mutable_config()->mutable_model() = ModelConfigOf(shape);
  header.set_step(step);
  header.set_created_by("serve test");
  ModelStateView state;
  state.params = HostView::Of(fp);
  return SaveModelCheckpoint(path, header, list, state);
}

// A child process whose stdout and stderr are collected by a reader thread.
class ChildProcess {
 public:
  ChildProcess() = default;
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;
  ~ChildProcess() { Kill(); }

  // Starts argv[0] (a path) in its own process group. extra_fds: pairs of
  // (fd in this process, fd number in the child), e.g. the CDP pipes.
  absl::Status Start(const std::vector<std::string>& argv,
                     const std::vector<std::pair<int, int>>& extra_fds = {}) {
    int out[2];
    if (pipe2(out, O_CLOEXEC) != 0) return absl::InternalError("pipe failed");
    // Everything the child needs is prepared here: after fork only
    // async-signal-safe calls (other threads may hold the malloc lock).
    std::vector<char*> args;
    for (const std::string& a : argv) {
      args.push_back(const_cast<char*>(a.c_str()));
    }
    args.push_back(nullptr);
    const pid_t parent = getpid();
    pid_ = fork();
    if (pid_ < 0) return absl::InternalError("fork failed");
    if (pid_ == 0) {
      // The child: dies with the test; own group, so Kill reaches helpers.
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (getppid() != parent) _exit(127);
      setpgid(0, 0);
      dup2(out[1], 1);
      dup2(out[1], 2);
      // Move the extra fds out of the way first, so no target overwrites a
      // source still to be copied; dup2 then clears close-on-exec.
      int moved[8];
      const size_t n = extra_fds.size() < 8 ? extra_fds.size() : 8;
      for (size_t i = 0; i < n; ++i) {
        moved[i] = fcntl(extra_fds[i].first, F_DUPFD_CLOEXEC, 100);
      }
      for (size_t i = 0; i < n; ++i) dup2(moved[i], extra_fds[i].second);
      execv(args[0], args.data());
      _exit(127);
    }
    close(out[1]);
    fd_ = out[0];
    reader_ = std::thread([this] {
      char buf[4096];
      for (;;) {
        // Polls, so a helper process that kept the pipe open cannot hold
        // this thread once the child is gone.
        pollfd p{fd_, POLLIN, 0};
        if (poll(&p, 1, 100) == 0) {
          if (exited_) break;
          continue;
        }
        const ssize_t n = read(fd_, buf, sizeof(buf));
        if (n <= 0) break;
        std::lock_guard<std::mutex> lock(mu_);
        output_.append(buf, static_cast<size_t>(n));
        cv_.notify_all();
      }
      std::lock_guard<std::mutex> lock(mu_);
      eof_ = true;
      cv_.notify_all();
    });
    return absl::OkStatus();
  }

  std::string Output() const {
    std::lock_guard<std::mutex> lock(mu_);
    return output_;
  }

  // Waits until the output matches `pattern` (ECMAScript regex); returns the
  // first capture group, or "" on timeout or when the child has exited.
  std::string WaitFor(const std::string& pattern, double timeout_seconds) {
    const std::regex re(pattern);
    std::unique_lock<std::mutex> lock(mu_);
    std::smatch match;
    const auto deadline = std::chrono::steady_clock::now() +
                          std::chrono::duration<double>(timeout_seconds);
    while (!std::regex_search(output_, match, re)) {
      if (eof_ || cv_.wait_until(lock, deadline) == std::cv_status::timeout) {
        if (!std::regex_search(output_, match, re)) return "";
        break;
      }
    }
    return match.size() > 1 ? match[1].str() : match[0].str();
  }

  // Exit code (128 + signal when killed), waiting at most timeout_seconds;
  // -1 if it is still running.
  int Wait(double timeout_seconds) {
    if (pid_ <= 0) return exit_code_;
    const auto deadline = std::chrono::steady_clock::now() +
                          std::chrono::duration<double>(timeout_seconds);
    for (;;) {
      int status = 0;
      const pid_t r = waitpid(pid_, &status, WNOHANG);
      if (r == pid_) {
        exit_code_ =
            WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        pid_ = -1;
        exited_ = true;
        if (reader_.joinable()) reader_.join();
        close(fd_);
        fd_ = -1;
        return exit_code_;
      }
      if (std::chrono::steady_clock::now() > deadline) return -1;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }

  // SIGTERM, up to grace_seconds to exit, then SIGKILL to the whole group.
  int Stop(double grace_seconds = 5.0) {
    if (pid_ <= 0) return exit_code_;
    kill(pid_, SIGTERM);
    const int code = Wait(grace_seconds);
    return code >= 0 ? code : Kill();
  }
  int Kill() {
    if (pid_ <= 0) return exit_code_;
    kill(-pid_, SIGKILL);
    kill(pid_, SIGKILL);
    return Wait(10.0);
  }
  pid_t pid() const { return pid_; }

 private:
  pid_t pid_ = -1;
  int fd_ = -1;
  int exit_code_ = -1;
  std::thread reader_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::string output_;
  bool eof_ = false;
  std::atomic<bool> exited_{false};
};

// Runs a command to completion (bounded): its exit code and output.
struct RunResult {
  int code = -1;
  std::string output;
};
inline RunResult Run(const std::vector<std::string>& argv,
                     double timeout_seconds = 60.0) {
  ChildProcess child;
  RunResult r;
  if (!child.Start(argv).ok()) return r;
  r.code = child.Wait(timeout_seconds);
  if (r.code < 0) r.code = child.Kill();
  r.output = child.Output();
  return r;
}

// Starts gpt2_serve on an ephemeral loopback port.
inline absl::Status StartServer(const std::string& binary,
                                const std::string& checkpoint,
                                ChildProcess* server, int* port) {
  GPT2_RETURN_IF_ERROR(server->Start({binary, "--checkpoint", checkpoint,
                                      "--port", "0", "--host", "127.0.0.1"}));
  const std::string p =
      server->WaitFor("listening on http://127\\.0\\.0\\.1:([0-9]+)", 30.0);
  if (p.empty()) {
    return absl::InternalError(absl::StrCat(
        "gpt2_serve did not start; its output:\n", server->Output()));
  }
  *port = std::stoi(p);
  return absl::OkStatus();
}

}  // namespace gpt2::serve_testing

#endif  // GPT2_TESTS_SERVE_SERVE_TEST_UTIL_H_
