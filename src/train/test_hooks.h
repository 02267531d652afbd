// Fault injection for the tests, through environment variables that no user
// sets (GPT2_TEST_*: env_switches leaves them out of the run's header). Each
// hook does nothing unless its variable is set; each is read at every call,
// so tests in one process can set them in turn.
//
//   GPT2_TEST_FAIL_AT=RANK:STEP            that rank dies through the fatal
//                                          error sink as the step starts (a
//                                          CUDA or NCCL failure)
//   GPT2_TEST_NAN_AT=STEP[:weights]        the step's loss reads as NaN on
//                                          every rank; with :weights the
//                                          first weight is made NaN too
//   GPT2_TEST_SIGNAL_AT=RANK:STEP:SIGNO    that rank raises SIGNO as the step
//                                          starts
//   GPT2_TEST_SIGNAL_IN_VAL=RANK:STEP:SIGNO  ... after the first batch of the
//                                          val pass on the weights after STEP
//   GPT2_TEST_SIGNAL_IN_SAMPLES=SIGNO      as the final samples start
//   GPT2_TEST_SIGNAL_IN_HELLASWAG=SIGNO    as the final HellaSwag pass starts
#ifndef GPT2_TRAIN_TEST_HOOKS_H_
#define GPT2_TRAIN_TEST_HOOKS_H_

#include <cstdint>

#include "src/backend/backend.h"

namespace gpt2 {

// GPT2_TEST_FAIL_AT.
void InjectFaultForTests(int64_t step, int rank);

// GPT2_TEST_NAN_AT: true where `step`'s loss is to read as NaN.
bool NonFiniteLossForTests(int64_t step);
// GPT2_TEST_NAN_AT=STEP:weights: makes the first element of `params` NaN at
// `step` (the update has blown up).
void NonFiniteWeightsForTests(int64_t step, Backend* backend, Tensor params);

// GPT2_TEST_SIGNAL_AT.
void InjectSignalForTests(int64_t step, int rank);
// GPT2_TEST_SIGNAL_IN_VAL.
void InjectValSignalForTests(int64_t step, int rank);
// GPT2_TEST_SIGNAL_IN_SAMPLES or GPT2_TEST_SIGNAL_IN_HELLASWAG (`name`).
void InjectNamedSignalForTests(const char* name);

}  // namespace gpt2

#endif  // GPT2_TRAIN_TEST_HOOKS_H_
