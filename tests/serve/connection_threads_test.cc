// Tests for serve::ConnectionThreads, gpt2_serve's connection threads: a task
// that blocks (a slow client) holds one thread while the others run beside
// it, up to the maximum; past it, tasks wait their turn; idle threads end;
// Shutdown runs what was queued.
#include "src/serve/connection_threads.h"

#include <atomic>
#include <chrono>
#include <future>
#include <thread>

#include "gtest/gtest.h"

namespace gpt2::serve {
namespace {

using std::chrono::milliseconds;

// Waits up to 5 s for `done`.
bool Within5s(std::future<void>& done) {
  return done.wait_for(std::chrono::seconds(5)) == std::future_status::ready;
}

TEST(ConnectionThreads, BlockedTasksDoNotHoldUpOthersBelowTheMaximum) {
  constexpr int kMax = 24;
  ConnectionThreads pool(kMax, 2, milliseconds(60000));
  std::promise<void> release;
  std::shared_future<void> gate = release.get_future().share();
  std::atomic<int> blocked{0};
  // More slow clients than gpt2_serve's old fixed pool of 16 threads.
  for (int i = 0; i < kMax - 1; ++i) {
    pool.Enqueue([&] {
      ++blocked;
      gate.wait();
    });
  }
  std::promise<void> quick;
  std::future<void> quick_done = quick.get_future();
  pool.Enqueue([&] { quick.set_value(); });
  EXPECT_TRUE(Within5s(quick_done)) << "a free thread was not made";
  EXPECT_EQ(pool.threads(), kMax);
  // Every thread is busy now: the next task waits for one.
  std::promise<void> next;
  std::future<void> next_done = next.get_future();
  std::promise<void> hold;
  std::shared_future<void> held = hold.get_future().share();
  pool.Enqueue([&] { held.wait(); });  // takes the quick task's thread
  pool.Enqueue([&] { next.set_value(); });
  EXPECT_EQ(next_done.wait_for(milliseconds(300)), std::future_status::timeout);
  EXPECT_EQ(pool.threads(), kMax);
  release.set_value();  // the slow clients leave
  EXPECT_TRUE(Within5s(next_done));
  hold.set_value();
  EXPECT_EQ(blocked.load(), kMax - 1);
}

TEST(ConnectionThreads, IdleThreadsEndDownToTheOnesKept) {
  ConnectionThreads pool(8, 2, milliseconds(50));
  std::promise<void> release;
  std::shared_future<void> gate = release.get_future().share();
  for (int i = 0; i < 8; ++i) pool.Enqueue([&] { gate.wait(); });
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (pool.threads() < 8 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(milliseconds(5));
  }
  EXPECT_EQ(pool.threads(), 8);
  release.set_value();
  while (pool.threads() > 2 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(milliseconds(10));
  }
  EXPECT_EQ(pool.threads(), 2);
  // Still serving after threads ended (and their handles are joined).
  std::promise<void> later;
  std::future<void> later_done = later.get_future();
  pool.Enqueue([&] { later.set_value(); });
  EXPECT_TRUE(Within5s(later_done));
}

TEST(ConnectionThreads, ShutdownRunsTheTasksQueued) {
  std::atomic<int> ran{0};
  {
    ConnectionThreads pool(1, 1, milliseconds(60000));
    std::promise<void> release;
    std::shared_future<void> gate = release.get_future().share();
    pool.Enqueue([&] {
      gate.wait();
      ++ran;
    });
    for (int i = 0; i < 5; ++i) pool.Enqueue([&] { ++ran; });
    EXPECT_EQ(ran.load(), 0);  // one thread, held
    release.set_value();
    pool.Shutdown();
    EXPECT_EQ(ran.load(), 6);
    pool.Shutdown();  // again: nothing left
  }
  EXPECT_EQ(ran.load(), 6);
}

}  // namespace
}  // namespace gpt2::serve
