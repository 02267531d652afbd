// End to end in a real browser: headless Chromium, driven over the DevTools
// protocol on a pipe (--remote-debugging-pipe: NUL-separated JSON on fds 3
// and 4, so no WebSocket client or npm package is needed), loads gpt2_serve's
// page, clicks an example, types a prompt, clicks Generate, waits for the
// samples (streamed: the page counts tokens as they come), checks them and
// saves a screenshot; then starts the longest request and stops it with the
// button, and the server stops that generation.
//   serve_browser_check PATH/TO/gpt2_serve
// Exit 0: passed; 1: failed; 77: skipped (no Chromium; ctest SKIP_RETURN_CODE).
// Environment: GPT2_CHROMIUM (browser binary), GPT2_SERVE_SCREENSHOT (PNG
// path; default ./serve_browser_screenshot.png in the working directory),
// GPT2_SERVE_CHECKPOINT (serve this checkpoint instead of a random tiny one),
// GPT2_SERVE_PROMPT (the prompt typed; default "ROMEO:").
#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "tests/serve/serve_test_util.h"

namespace gpt2 {
namespace {

using Json = nlohmann::json;
constexpr int kSkip = 77;

// A DevTools protocol client over the two pipes.
class Cdp {
 public:
  Cdp(int to_browser, int from_browser)
      : to_(to_browser), from_(from_browser) {}

  absl::StatusOr<Json> Call(const std::string& method, Json params = Json(),
                            const std::string& session = "",
                            double timeout_seconds = 20.0) {
    const int id = next_id_++;
    Json message = {{"id", id}, {"method", method}};
    if (!params.is_null()) message["params"] = std::move(params);
    if (!session.empty()) message["sessionId"] = session;
    std::string bytes = message.dump();
    bytes.push_back('\0');
    for (size_t done = 0; done < bytes.size();) {
      const ssize_t n = write(to_, bytes.data() + done, bytes.size() - done);
      if (n <= 0) return absl::InternalError("writing to Chromium failed");
      done += static_cast<size_t>(n);
    }
    const auto deadline =
        std::chrono::steady_clock::now() +
        std::chrono::duration_cast<std::chrono::steady_clock::duration>(
            std::chrono::duration<double>(timeout_seconds));
    for (;;) {
      GPT2_ASSIGN_OR_RETURN(Json reply, Read(deadline));
      if (!reply.contains("id") || reply["id"] != id) continue;  // events
      if (reply.contains("error")) {
        return absl::InternalError(
            absl::StrCat(method, ": ", reply["error"].dump()));
      }
      return reply["result"];
    }
  }

 private:
  absl::StatusOr<Json> Read(std::chrono::steady_clock::time_point deadline) {
    for (;;) {
      const size_t end = buffer_.find('\0');
      if (end != std::string::npos) {
        Json j = Json::parse(buffer_.substr(0, end), nullptr, false);
        buffer_.erase(0, end + 1);
        return j;
      }
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) {
        return absl::DeadlineExceededError("no answer from Chromium in time");
      }
      pollfd p{from_, POLLIN, 0};
      if (poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
      char buf[65536];
      const ssize_t n = read(from_, buf, sizeof(buf));
      if (n <= 0) return absl::InternalError("Chromium closed the pipe");
      buffer_.append(buf, static_cast<size_t>(n));
    }
  }

  int to_, from_;
  int next_id_ = 1;
  std::string buffer_;
};

std::string FindChromium() {
  if (const char* env = std::getenv("GPT2_CHROMIUM"); env != nullptr && *env) {
    return access(env, X_OK) == 0 ? env : "";
  }
  for (const char* path :
       {"/usr/bin/chromium", "/usr/lib/chromium/chromium",
        "/usr/bin/chromium-browser", "/usr/bin/google-chrome"}) {
    if (access(path, X_OK) == 0) return path;
  }
  return "";
}

// The page driven as a person would, in one attached tab.
class Page {
 public:
  Page(Cdp* cdp, std::string session)
      : cdp_(cdp), session_(std::move(session)) {}

  absl::StatusOr<Json> Call(const std::string& method, Json params = Json()) {
    return cdp_->Call(method, std::move(params), session_);
  }

  // The value of a JavaScript expression (promises awaited).
  absl::StatusOr<Json> Eval(const std::string& expression) {
    GPT2_ASSIGN_OR_RETURN(Json r,
                          Call("Runtime.evaluate", {{"expression", expression},
                                                    {"returnByValue", true},
                                                    {"awaitPromise", true}}));
    if (r.contains("exceptionDetails")) {
      return absl::InternalError(absl::StrCat("JavaScript error in ",
                                              expression, ": ",
                                              r["exceptionDetails"].dump()));
    }
    return r["result"].contains("value") ? r["result"]["value"] : Json();
  }

  // Polls `expression` until it is true.
  absl::Status WaitUntil(const std::string& expression, double seconds) {
    const auto deadline = std::chrono::steady_clock::now() +
                          std::chrono::duration<double>(seconds);
    while (std::chrono::steady_clock::now() < deadline) {
      absl::StatusOr<Json> v = Eval(expression);
      if (v.ok() && *v == true) return absl::OkStatus();
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return absl::DeadlineExceededError(
        absl::StrCat("waited ", seconds, " s for: ", expression));
  }

  // A real mouse click at the centre of the element `selector` matches.
  absl::Status Click(const std::string& selector) {
    GPT2_ASSIGN_OR_RETURN(
        Json rect,
        Eval(absl::StrCat(
            "(() => { const e = document.querySelector(", Json(selector).dump(),
            "); e.scrollIntoView({block: 'center'}); "
            "const r = e.getBoundingClientRect(); "
            "return {x: r.x + r.width / 2, y: r.y + r.height / 2}; "
            "})()")));
    if (!rect.is_object()) {
      return absl::NotFoundError(absl::StrCat("no element ", selector));
    }
    for (const char* type : {"mouseMoved", "mousePressed", "mouseReleased"}) {
      GPT2_RETURN_IF_ERROR(Call("Input.dispatchMouseEvent", {{"type", type},
                                                             {"x", rect["x"]},
                                                             {"y", rect["y"]},
                                                             {"button", "left"},
                                                             {"buttons", 1},
                                                             {"clickCount", 1}})
                               .status());
    }
    return absl::OkStatus();
  }

 private:
  Cdp* cdp_;
  std::string session_;
};

absl::Status Check(bool ok, const std::string& what) {
  return ok ? absl::OkStatus() : absl::InternalError(what);
}

// The page's whole use; then, given the server (whose output shows what it
// stopped), the Stop button.
absl::Status DriveThePage(Cdp* cdp, int port, const std::string& screenshot,
                          const std::string& expected_step,
                          serve_testing::ChildProcess* server) {
  GPT2_ASSIGN_OR_RETURN(
      Json target, cdp->Call("Target.createTarget", {{"url", "about:blank"}}));
  GPT2_ASSIGN_OR_RETURN(
      Json attached,
      cdp->Call("Target.attachToTarget",
                {{"targetId", target["targetId"]}, {"flatten", true}}));
  Page page(cdp, attached["sessionId"].get<std::string>());
  GPT2_RETURN_IF_ERROR(page.Call("Page.enable").status());
  GPT2_RETURN_IF_ERROR(page.Call("Runtime.enable").status());
  GPT2_RETURN_IF_ERROR(
      page.Call("Emulation.setDeviceMetricsOverride", {{"width", 1280},
                                                       {"height", 960},
                                                       {"deviceScaleFactor", 1},
                                                       {"mobile", false}})
          .status());
  const std::string url = absl::StrCat("http://127.0.0.1:", port, "/");
  GPT2_RETURN_IF_ERROR(page.Call("Page.navigate", {{"url", url}}).status());
  GPT2_RETURN_IF_ERROR(
      page.WaitUntil("document.readyState === 'complete' && "
                     "document.getElementById('generate') !== null",
                     20));
  GPT2_ASSIGN_OR_RETURN(Json title, page.Eval("document.title"));
  std::printf("page title: %s\n", title.get<std::string>().c_str());
  GPT2_RETURN_IF_ERROR(
      Check(title.get<std::string>().find("step " + expected_step) !=
                std::string::npos,
            "the title does not name the checkpoint step " + expected_step));

  // An example fills the prompt box.
  GPT2_RETURN_IF_ERROR(page.Click("button.example:nth-of-type(3)"));
  GPT2_ASSIGN_OR_RETURN(Json value,
                        page.Eval("document.getElementById('prompt').value"));
  GPT2_RETURN_IF_ERROR(
      Check(value == "To be, or not to be",
            "clicking an example set the prompt to " + value.dump()));
  // Type over it (GPT2_SERVE_PROMPT, e.g. a longer prompt for a screenshot of
  // a trained model; "\n" in it becomes a line break).
  std::string prompt = "ROMEO:";
  if (const char* env = std::getenv("GPT2_SERVE_PROMPT");
      env != nullptr && *env) {
    prompt = absl::StrReplaceAll(env, {{"\\n", "\n"}});
  }
  GPT2_RETURN_IF_ERROR(page.Click("#prompt"));
  GPT2_RETURN_IF_ERROR(
      page.Eval("document.getElementById('prompt').select()").status());
  GPT2_RETURN_IF_ERROR(
      page.Call("Input.insertText", {{"text", prompt}}).status());
  GPT2_ASSIGN_OR_RETURN(value,
                        page.Eval("document.getElementById('prompt').value"));
  GPT2_RETURN_IF_ERROR(
      Check(value == prompt, "typing gave the prompt " + value.dump()));
  GPT2_ASSIGN_OR_RETURN(
      Json wanted, page.Eval("Number(document.getElementById('num_samples')"
                             ".value)"));

  // Every status line the page shows, the passing ones too (each setStatus
  // replaces the line's text node: a childList record keeps the added node).
  GPT2_RETURN_IF_ERROR(
      page.Eval("window.gpt2Statuses = []; new MutationObserver((records) => "
                "{ for (const r of records) for (const n of r.addedNodes) "
                "window.gpt2Statuses.push(n.textContent); }).observe("
                "document.getElementById('status'), {childList: true}); true")
          .status());
  GPT2_RETURN_IF_ERROR(page.Click("#generate"));
  GPT2_RETURN_IF_ERROR(page.WaitUntil(
      "document.querySelectorAll('#outputs .sample:not(.empty)').length > 0 "
      "&& document.getElementById('generate').textContent === 'Generate'",
      60));
  GPT2_ASSIGN_OR_RETURN(
      Json boxes,
      page.Eval("Array.from(document.querySelectorAll('#outputs .sample'))"
                ".map(b => ({prompt: b.childNodes[0].textContent, "
                "text: b.childNodes[1].textContent, "
                "meta: b.childNodes[2].textContent}))"));
  GPT2_ASSIGN_OR_RETURN(Json status,
                        page.Eval("document.getElementById('status')"
                                  ".textContent"));
  std::printf("status: %s\n", status.get<std::string>().c_str());
  GPT2_RETURN_IF_ERROR(
      Check(boxes.is_array() && boxes.size() == wanted.get<size_t>(),
            absl::StrCat("wanted ", wanted.dump(), " sample boxes, got ",
                         boxes.dump())));
  size_t non_empty = 0;
  for (const Json& box : boxes) {
    GPT2_RETURN_IF_ERROR(
        Check(box["prompt"] == prompt,
              "a box does not start with the prompt: " + box.dump()));
    non_empty += !box["text"].get<std::string>().empty();
    std::printf("  sample: %s\n", Json(box["text"]).dump().c_str());
  }
  // A sample may end at once on <|endoftext|>, but not all of them.
  GPT2_RETURN_IF_ERROR(Check(non_empty > 0, "every sample is empty"));
  GPT2_RETURN_IF_ERROR(
      Check(status.get<std::string>().find(absl::StrCat(
                wanted.get<int>(), " samples")) != std::string::npos,
            "the status line does not report the samples: " + status.dump()));

  // The samples streamed in: the page counted new tokens while generating.
  GPT2_ASSIGN_OR_RETURN(Json statuses, page.Eval("window.gpt2Statuses"));
  int streamed = 0;
  for (const Json& line : statuses) {
    streamed +=
        line.get<std::string>().rfind("Generating… ", 0) == 0 &&
        line.get<std::string>().find(" new tokens (") != std::string::npos;
  }
  std::printf("status lines while streaming: %d\n", streamed);
  GPT2_RETURN_IF_ERROR(
      Check(streamed > 0,
            "the page showed no tokens while generating: " + statuses.dump()));

  // The whole page, not just the first screen: grow the viewport to it.
  GPT2_ASSIGN_OR_RETURN(Json height,
                        page.Eval("Math.min(2400, document.documentElement"
                                  ".scrollHeight)"));
  GPT2_RETURN_IF_ERROR(
      page.Call("Emulation.setDeviceMetricsOverride", {{"width", 1280},
                                                       {"height", height},
                                                       {"deviceScaleFactor", 1},
                                                       {"mobile", false}})
          .status());
  GPT2_ASSIGN_OR_RETURN(
      Json shot, page.Call("Page.captureScreenshot", {{"format", "png"}}));
  std::string png;
  GPT2_RETURN_IF_ERROR(
      Check(absl::Base64Unescape(shot["data"].get<std::string>(), &png),
            "the screenshot is not base64"));
  GPT2_RETURN_IF_ERROR(
      Check(png.size() > 10000 && png.compare(0, 8, "\x89PNG\r\n\x1a\n") == 0,
            "the screenshot is not a PNG"));
  std::ofstream(screenshot, std::ios::binary) << png;
  std::printf("screenshot: %s (%zu bytes)\n", screenshot.c_str(), png.size());

  if (server == nullptr) return absl::OkStatus();
  // Stop: the longest request, stopped once its text has started to come
  // (the server draws slowly here: GPT2_SERVE_TEST_DELAY_MS).
  // (With the seed box emptied: the page draws a fresh seed and shows it.)
  GPT2_RETURN_IF_ERROR(
      page.Eval("const m = document.getElementById('max_new_tokens'); "
                "m.value = m.max; document.getElementById('seed').value = ''; "
                "true")
          .status());
  GPT2_RETURN_IF_ERROR(page.Click("#generate"));
  GPT2_RETURN_IF_ERROR(
      page.WaitUntil("document.getElementById('status').textContent.startsWith("
                     "'Generating… ')",
                     30));
  GPT2_ASSIGN_OR_RETURN(Json seed,
                        page.Eval("document.getElementById('seed').value"));
  GPT2_RETURN_IF_ERROR(
      Check(seed.is_string() && !seed.get<std::string>().empty() &&
                seed.get<std::string>().find_first_not_of("0123456789") ==
                    std::string::npos,
            "an empty seed box was not given a fresh seed: " + seed.dump()));
  std::printf("fresh seed for an empty box: %s\n",
              seed.get<std::string>().c_str());
  GPT2_ASSIGN_OR_RETURN(
      Json label, page.Eval("document.getElementById('generate').textContent"));
  GPT2_RETURN_IF_ERROR(Check(label == "Stop",
                             "while generating, the button "
                             "says " +
                                 label.dump()));
  GPT2_RETURN_IF_ERROR(page.Click("#generate"));
  GPT2_RETURN_IF_ERROR(page.WaitUntil(
      "document.getElementById('generate').textContent === 'Generate'", 30));
  GPT2_ASSIGN_OR_RETURN(status, page.Eval("document.getElementById('status')"
                                          ".textContent"));
  std::printf("after Stop: %s\n", status.get<std::string>().c_str());
  GPT2_RETURN_IF_ERROR(
      Check(status.get<std::string>().rfind("Stopped after ", 0) == 0,
            "Stop did not stop the request: " + status.dump()));
  // The server stopped that generation (and says so).
  constexpr char kStopped[] = "went away; its generation was stopped";
  for (int i = 0;
       i < 100 && server->Output().find(kStopped) == std::string::npos; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  GPT2_RETURN_IF_ERROR(
      Check(server->Output().find(kStopped) != std::string::npos,
            "the server did not stop the generation the page dropped"));
  return absl::OkStatus();
}

int Main(const std::string& serve_bin) {
  const std::string chromium = FindChromium();
  if (chromium.empty()) {
    const char* env = std::getenv("GPT2_CHROMIUM");
    std::printf(
        "SKIPPED: no Chromium found (%s%s; apt-get install chromium, or set "
        "GPT2_CHROMIUM); the browser test did not run\n",
        env != nullptr && *env
            ? "GPT2_CHROMIUM is not executable: "
            : "looked "
              "for /usr/bin/chromium, /usr/lib/chromium/chromium, "
              "/usr/bin/chromium-browser, /usr/bin/google-chrome",
        env != nullptr && *env ? env : "");
    return kSkip;
  }
  serve_testing::TempDir dir("gpt2_browser_test");
  std::string checkpoint, step = "7";
  if (const char* env = std::getenv("GPT2_SERVE_CHECKPOINT");
      env != nullptr && *env) {
    checkpoint = env;
    step = "";  // any step
  } else {
    checkpoint = dir.File("tiny.ckpt");
    const absl::Status written =
        serve_testing::WriteTinyCheckpoint(checkpoint, 7);
    if (!written.ok()) {
      std::printf("FAIL: %s\n", std::string(written.message()).c_str());
      return 1;
    }
  }
  serve_testing::ChildProcess server;
  int port = 0;
  // Each batch of draws of a stream takes 20 ms more: time to click Stop.
  // Not for a given checkpoint (the README's screenshot: its tokens/s must be
  // real), which skips the Stop check.
  const bool check_stop = step == "7";
  if (check_stop) setenv("GPT2_SERVE_TEST_DELAY_MS", "20", 1);
  if (absl::Status s =
          serve_testing::StartServer(serve_bin, checkpoint, &server, &port);
      !s.ok()) {
    std::printf("FAIL: %s\n", std::string(s.message()).c_str());
    return 1;
  }

  // fds 3 (commands to the browser) and 4 (its answers) in the child.
  int to_browser[2], from_browser[2];
  if (pipe2(to_browser, O_CLOEXEC) != 0 ||
      pipe2(from_browser, O_CLOEXEC) != 0) {
    std::printf("FAIL: pipe\n");
    return 1;
  }
  serve_testing::ChildProcess browser;
  const std::vector<std::string> argv = {
      chromium,
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--no-first-run",
      "--no-default-browser-check",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--disable-quic",
      "--disable-dev-shm-usage",
      "--disable-extensions",
      "--mute-audio",
      "--hide-scrollbars",
      "--window-size=1280,960",
      "--user-data-dir=" + dir.File("profile"),
      "--remote-debugging-pipe",
      "about:blank"};
  if (absl::Status s =
          browser.Start(argv, {{to_browser[0], 3}, {from_browser[1], 4}});
      !s.ok()) {
    std::printf("FAIL: cannot start %s\n", chromium.c_str());
    return 1;
  }
  close(to_browser[0]);
  close(from_browser[1]);
  Cdp cdp(to_browser[1], from_browser[0]);

  std::string screenshot = "serve_browser_screenshot.png";
  if (const char* env = std::getenv("GPT2_SERVE_SCREENSHOT");
      env != nullptr && *env) {
    screenshot = env;
  }
  screenshot = std::filesystem::absolute(screenshot).string();
  const auto start = std::chrono::steady_clock::now();
  const absl::Status result = DriveThePage(&cdp, port, screenshot, step,
                                           check_stop ? &server : nullptr);
  std::printf(
      "browser session: %.1f s\n",
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
          .count());
  (void)cdp.Call("Browser.close", Json(), "", 5.0);
  close(to_browser[1]);
  close(from_browser[0]);
  if (browser.Wait(5.0) < 0) browser.Kill();
  server.Stop();
  // The page's request reached the API and was logged.
  const bool logged =
      server.Output().find("POST /api/generate 200") != std::string::npos;
  if (!result.ok() || !logged) {
    std::printf("FAIL: %s\n",
                result.ok() ? "the server logged no POST /api/generate 200"
                            : std::string(result.message()).c_str());
    std::printf("---- gpt2_serve output\n%s---- chromium output (tail)\n%s\n",
                server.Output().c_str(),
                browser.Output()
                    .substr(browser.Output().size() > 3000
                                ? browser.Output().size() - 3000
                                : 0)
                    .c_str());
    return 1;
  }
  std::printf("PASS\n");
  return 0;
}

}  // namespace
}  // namespace gpt2

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s PATH/TO/gpt2_serve\n", argv[0]);
    return 2;
  }
  // Bounded: a hung browser ends the test (and its children, by
  // PR_SET_PDEATHSIG) after 100 s.
  alarm(100);
  return gpt2::Main(argv[1]);
}
