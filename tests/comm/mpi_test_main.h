// The main() of GoogleTest binaries that run under mpirun: MPI is initialised
// after gtest takes its flags, and only rank 0 prints results (verdicts are
// agreed across ranks by the tests themselves).
#ifndef GPT2_TESTS_COMM_MPI_TEST_MAIN_H_
#define GPT2_TESTS_COMM_MPI_TEST_MAIN_H_

#include "gtest/gtest.h"
#include "src/comm/mpi_env.h"

namespace gpt2::testing {

inline int RunMpiTests(int argc, char** argv, MpiEnv** env) {
  ::testing::InitGoogleTest(&argc, argv);
  *env = &MpiEnv::Init(&argc, &argv, MpiEnv::Singleton::kWithMpi);
  if ((*env)->rank() != 0) {
    auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
  }
  return RUN_ALL_TESTS();
}

}  // namespace gpt2::testing

#endif  // GPT2_TESTS_COMM_MPI_TEST_MAIN_H_
