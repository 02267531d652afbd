// MpiEnv in a process started without a launcher (label cpu, run directly,
// never under mpirun): a world of one without MPI, so a single-process run
// starts no Open MPI singleton daemon; what needs MPI says so.
#include <mpi.h>

#include <cstdlib>
#include <string>

#include "gtest/gtest.h"
#include "src/comm/mpi_env.h"

namespace gpt2 {
namespace {

constexpr const char* kLauncherVars[] = {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK",
                                         "PMI_RANK", "PMI_SIZE"};

TEST(MpiEnv, EachLaunchersVariableMeansStartedByALauncher) {
  for (const char* name : kLauncherVars) unsetenv(name);
  EXPECT_FALSE(StartedByMpiLauncher());
  for (const char* name : kLauncherVars) {
    setenv(name, "1", 1);
    EXPECT_TRUE(StartedByMpiLauncher()) << name;
    unsetenv(name);
  }
  EXPECT_FALSE(StartedByMpiLauncher());
}

TEST(MpiEnv, WithoutALauncherTheWorldIsOneAndMpiIsNotInitialised) {
  for (const char* name : kLauncherVars) unsetenv(name);
  const MpiEnv& env = MpiEnv::Init(nullptr, nullptr);
  EXPECT_FALSE(env.has_mpi());
  EXPECT_EQ(env.rank(), 0);
  EXPECT_EQ(env.world_size(), 1);
  EXPECT_EQ(env.local_rank(), 0);
  EXPECT_EQ(env.local_size(), 1);
  int initialized = -1;
  MPI_Initialized(&initialized);
  EXPECT_EQ(initialized, 0);
  // The first call decides: a later one asking for MPI gets the same world.
  EXPECT_EQ(&MpiEnv::Init(nullptr, nullptr, MpiEnv::Singleton::kWithMpi), &env);
  MPI_Initialized(&initialized);
  EXPECT_EQ(initialized, 0);
}

TEST(MpiEnvDeathTest, WhatNeedsMpiSaysSoAndAbortEndsThisProcess) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  for (const char* name : kLauncherVars) unsetenv(name);
  EXPECT_DEATH(MakeMpiCommunicator(MpiEnv::Init(nullptr, nullptr)),
               "the MPI communicator needs MPI");
  EXPECT_EXIT(MpiEnv::Abort(3), ::testing::ExitedWithCode(3), "");
}

}  // namespace
}  // namespace gpt2
