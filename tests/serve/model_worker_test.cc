// Tests for serve::ModelWorker, the thread that runs gpt2_serve's
// generations: jobs from many threads are all answered, in the order they
// were queued, each with the tokens the decoder gives when called directly;
// errors come back as the job's result; jobs queued before the worker ends
// still run.
#include "src/serve/model_worker.h"

#include <atomic>
#include <future>
#include <memory>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "src/model/params.h"

namespace gpt2::serve {
namespace {

// L, NH, C, maxT, V, Vp: small enough to decode in microseconds.
constexpr ModelShape kShape{1, 2, 16, 32, 60, 64};

std::unique_ptr<infer::Decoder> TinyDecoder() {
  std::vector<float> params(TotalParams(BuildParamList(kShape)));
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0.0f, 0.5f);
  for (float& p : params) p = normal(rng);
  return infer::MakeCpuDecoder(kShape, params, 4);
}

infer::GenerateRequest Request(uint64_t seed) {
  infer::GenerateRequest r;
  r.prompt = {1, 2, 3};
  r.num_samples = 2;
  r.max_new_tokens = 6;
  r.seed = seed;
  r.stop_at_end_of_text = false;
  return r;
}

std::vector<std::vector<int32_t>> Tokens(const infer::GenerateResult& r) {
  std::vector<std::vector<int32_t>> tokens;
  for (const auto& s : r.samples) tokens.push_back(s.tokens);
  return tokens;
}

TEST(ModelWorker, AnswersEveryThreadAsTheDecoderWould) {
  // What each seed gives, from a decoder of the same weights called here.
  auto direct = TinyDecoder();
  std::vector<std::vector<std::vector<int32_t>>> want;
  for (uint64_t seed = 0; seed < 8; ++seed) {
    auto r = infer::Generate(direct.get(), Request(seed));
    ASSERT_TRUE(r.ok()) << r.status();
    want.push_back(Tokens(*r));
  }
  ASSERT_NE(want[0], want[1]);  // the seeds matter: a real comparison
  ModelWorker worker(TinyDecoder(), nullptr);
  std::vector<std::vector<std::vector<int32_t>>> got(8);
  std::vector<std::thread> clients;
  for (uint64_t seed = 0; seed < 8; ++seed) {
    clients.emplace_back([&, seed] {
      double waited = -1.0;
      auto r = worker.Run(Request(seed), &waited);
      ASSERT_TRUE(r.ok()) << r.status();
      EXPECT_GE(waited, 0.0);
      got[seed] = Tokens(*r);
    });
  }
  for (std::thread& c : clients) c.join();
  EXPECT_EQ(got, want);
  EXPECT_EQ(worker.queued(), 0);
}

TEST(ModelWorker, RunsJobsInTheOrderQueuedAndFinishesThemOnExit) {
  std::vector<int> order;
  std::mutex mu;
  std::promise<void> all_queued;
  std::shared_future<void> gate = all_queued.get_future().share();
  {
    ModelWorker worker(TinyDecoder(), nullptr);
    // Job 0's report holds the worker until jobs 1-5 are all queued, so the
    // order they run in is the worker's choice, not their arrival's.
    for (int i = 0; i < 6; ++i) {
      worker.Submit(Request(i), nullptr,
                    [&, i](absl::StatusOr<infer::GenerateResult> r, double) {
                      EXPECT_TRUE(r.ok()) << r.status();
                      if (i == 0) gate.wait();
                      std::lock_guard<std::mutex> lock(mu);
                      order.push_back(i);
                    });
    }
    all_queued.set_value();
    // The worker ends here, with jobs still queued: they run first.
  }
  EXPECT_EQ(order, (std::vector<int>{0, 1, 2, 3, 4, 5}));
}

TEST(ModelWorker, CountsTheJobsWaiting) {
  std::promise<void> release;
  std::shared_future<void> gate = release.get_future().share();
  std::promise<void> started;
  ModelWorker worker(TinyDecoder(), nullptr);
  worker.Submit(Request(0), nullptr,
                [&](absl::StatusOr<infer::GenerateResult>, double) {
                  started.set_value();
                  gate.wait();
                });
  started.get_future().wait();  // job 0 runs, holding the worker
  for (int i = 1; i <= 3; ++i) {
    worker.Submit(Request(i), nullptr,
                  [](absl::StatusOr<infer::GenerateResult>, double) {});
  }
  EXPECT_EQ(worker.queued(), 3);
  release.set_value();
}

TEST(ModelWorker, AnErrorIsTheJobsResult) {
  ModelWorker worker(TinyDecoder(), nullptr);
  infer::GenerateRequest bad = Request(1);
  bad.prompt.clear();  // no token to condition on
  double waited = 0.0;
  auto r = worker.Run(bad, &waited);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(std::string(r.status().message()).find("prompt"), std::string::npos)
      << r.status();
  // The worker goes on serving.
  EXPECT_TRUE(worker.Run(Request(2), &waited).ok());
}

// A job whose client has gone: unrun when its turn comes (its progress never
// called), or stopped at the next batch of draws while it runs.
TEST(ModelWorker, AJobNoLongerWantedIsCancelled) {
  ModelWorker worker(TinyDecoder(), nullptr);
  std::atomic<int> progress_calls{0};
  std::promise<absl::Status> unrun;
  worker.Submit(
      Request(1),
      [&](const std::vector<infer::GeneratedSample>&) {
        ++progress_calls;
        return true;
      },
      [&](absl::StatusOr<infer::GenerateResult> r, double) {
        unrun.set_value(r.status());
      },
      [] { return false; });
  const absl::Status skipped = unrun.get_future().get();
  EXPECT_TRUE(absl::IsCancelled(skipped)) << skipped;
  EXPECT_EQ(progress_calls.load(), 0);

  std::atomic<bool> wanted{true};
  std::promise<absl::StatusOr<infer::GenerateResult>> stopped;
  infer::GenerateRequest long_one = Request(2);
  long_one.max_new_tokens = 20;
  worker.Submit(
      long_one,
      [&](const std::vector<infer::GeneratedSample>& samples) {
        if (samples[0].tokens.size() == 3) wanted = false;  // the client left
        return true;
      },
      [&](absl::StatusOr<infer::GenerateResult> r, double) {
        stopped.set_value(std::move(r));
      },
      [&] { return wanted.load(); });
  const auto result = stopped.get_future().get();
  EXPECT_TRUE(absl::IsCancelled(result.status())) << result.status();
  // The worker goes on serving.
  double waited = 0.0;
  EXPECT_TRUE(worker.Run(Request(3), &waited).ok());
}

TEST(ModelWorker, StopEndsTheQueuedAndTheRunningJobsAndRefusesNewOnes) {
  ModelWorker worker(TinyDecoder(), nullptr);
  std::promise<void> in_progress, release;
  std::shared_future<void> gate = release.get_future().share();
  std::promise<absl::Status> running_result;
  infer::GenerateRequest long_one = Request(0);
  long_one.max_new_tokens = 20;
  bool first_call = true;
  worker.Submit(
      long_one,
      [&](const std::vector<infer::GeneratedSample>&) {
        if (first_call) {
          first_call = false;
          in_progress.set_value();
          gate.wait();
        }
        return true;
      },
      [&](absl::StatusOr<infer::GenerateResult> r, double) {
        running_result.set_value(r.status());
      });
  in_progress.get_future().wait();  // job 0 is between two batches of draws
  std::vector<absl::Status> queued_results(3);
  for (int i = 0; i < 3; ++i) {
    worker.Submit(Request(i + 1), nullptr,
                  [&, i](absl::StatusOr<infer::GenerateResult> r, double) {
                    queued_results[i] = r.status();
                  });
  }
  EXPECT_EQ(worker.Stop("the server is stopping"), 4);
  // The queued jobs have ended, before the running one goes on.
  for (const absl::Status& s : queued_results) {
    EXPECT_TRUE(absl::IsUnavailable(s)) << s;
    EXPECT_EQ(s.message(), "the server is stopping");
  }
  EXPECT_EQ(worker.queued(), 0);
  release.set_value();
  const absl::Status running = running_result.get_future().get();
  EXPECT_TRUE(absl::IsUnavailable(running)) << running;
  // Later work is refused at once; a second Stop has nothing to stop.
  double waited = -1.0;
  const auto later = worker.Run(Request(9), &waited);
  EXPECT_TRUE(absl::IsUnavailable(later.status())) << later.status();
  EXPECT_EQ(worker.Stop("again"), 0);
}

}  // namespace
}  // namespace gpt2::serve
