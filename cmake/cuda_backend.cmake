# The CUDA backend's tests. One test source, two builds:
#  - cuda_backend_test_emu: the backend and kernels compiled by the host compiler against
#    the CPU emulation of CUDA (cmake/cuda_emu.cmake); label cuda_emu; runs in CI.
#  - cuda_backend_test_gpu: the real build (nvcc, cuBLASLt); label gpu; skips with a
#    message where no GPU is usable.

set(GPT2_CUDA_TEST_ENV "GPT2_DATA_DIR=${GPT2_TEST_DATA_DIR};OMP_NUM_THREADS=1;OMP_WAIT_POLICY=passive")
# Emulated kernels run several times slower under the sanitizers (every fiber switch a
# system call there).
if(GPT2_SANITIZE)
  set(GPT2_EMU_TEST_TIMEOUT 3000)
else()
  set(GPT2_EMU_TEST_TIMEOUT 300)
endif()

if(COMMAND gpt2_add_emulated_cuda)
  add_library(gpt2_cuda_emu STATIC)
  gpt2_add_emulated_cuda(gpt2_cuda_emu SOURCES ${GPT2_CUDA_KERNELS}
                         ${GPT2_CUDA_HOST_SOURCES})
  target_link_libraries(gpt2_cuda_emu PUBLIC gpt2)
  add_executable(cuda_backend_test_emu tests/cuda/cuda_backend_test.cc
                 tests/cuda/cuda_train_test.cc tests/cuda/cuda_decode_test.cc)
  target_link_libraries(cuda_backend_test_emu PRIVATE gpt2_cuda_emu GTest::gtest
                        GTest::gtest_main)
  gtest_discover_tests(cuda_backend_test_emu DISCOVERY_TIMEOUT 60 TEST_PREFIX "emu."
    PROPERTIES LABELS cuda_emu TIMEOUT ${GPT2_EMU_TEST_TIMEOUT} ENVIRONMENT "${GPT2_CUDA_TEST_ENV}")
  # gpt2_bench on the emulated CUDA backend, so that its GPU-only paths run before a GPU
  # session spends minutes on them: the back-to-back rounds with updates beside (lazy
  # streams: a missing wait fails the emulator's checks) and with the step as a replayed
  # graph, on a tiny shape. The figures mean nothing here; the lines must be there.
  add_executable(gpt2_bench_emu src/tools/gpt2_bench.cc)
  target_link_libraries(gpt2_bench_emu PRIVATE gpt2_cuda_emu)
  target_compile_definitions(gpt2_bench_emu PRIVATE GPT2_HAVE_CUDA=1)
  set(GPT2_BENCH_EMU_ARGS --device cuda --layers 2 --channels 64 --heads 2 --batch 2
      --seq_len 32 --steps 1 --tokenizer=false)
  # gpt2_emu_bench_test(NAME PATTERN SWITCHES [FLAGS...]): gpt2_bench with the GPT2_*
  # switches (a ;-list) and any more flags, on lazy streams, passing only when it exits
  # 0 and prints a line matching PATTERN (GPT2_EXPECT_OUTPUT).
  function(gpt2_emu_bench_test name pattern switches)
    add_test(NAME ${name}
             COMMAND ${GPT2_EXPECT_OUTPUT} "${pattern}"
                     $<TARGET_FILE:gpt2_bench_emu> ${GPT2_BENCH_EMU_ARGS} ${ARGN})
    set_tests_properties(${name} PROPERTIES LABELS cuda_emu
      TIMEOUT ${GPT2_EMU_TEST_TIMEOUT}
      ENVIRONMENT "${GPT2_CUDA_TEST_ENV};${switches};CUDA_EMU_STREAMS=lazy;CUDA_EMU_FATAL=1")
  endfunction()
  gpt2_emu_bench_test(emu.bench_updates_beside
    "updates: beside the next forward.*back to back: [0-9.]+ ms/step"
    "GPT2_UPDATE_BESIDE=1")
  gpt2_emu_bench_test(emu.bench_step_graphs
    "back to back: [0-9.]+ ms/step.*each step a replayed graph"
    "GPT2_TRAIN_GRAPHS=1")
  # Both: each replay queues the last step's updates beside its forward, wte's rows
  # the batch gathers first; on the text's tokens, which repeat (random ones would
  # gather a row each).
  gpt2_emu_bench_test(emu.bench_step_graphs_beside
    "back to back: [0-9.]+ ms/step.*replayed graph with the last step's updates beside its forward"
    "GPT2_TRAIN_GRAPHS=1;GPT2_UPDATE_BESIDE=1" --text_tokens --data_dir ${GPT2_TEST_DATA_DIR})
  # The same with the optimizer's whole state in bf16 (optim.bf16_state), as
  # device_check's extra group times it.
  gpt2_emu_bench_test(emu.bench_bf16_state
    "B=2 T=32, bf16 \\(optimizer state in bf16\\)"
    "GPT2_TRAIN_GRAPHS=1;GPT2_UPDATE_BESIDE=1" --bf16_state)
  # Every op again with its blocks on two host threads that overtake one another at
  # random barriers: a kernel that assumes an order between blocks it does not enforce
  # (or races across blocks) shows as a wrong or changed result here. Its cp.async
  # copies land at their waits (not at once): a read before its wait shows too.
  add_test(NAME emu.ops_concurrent_blocks
           COMMAND cuda_backend_test_emu --gtest_filter=Types/CudaOps.*)
  # (A filter that selects nothing would exit 0: that fails too.)
  set_tests_properties(emu.ops_concurrent_blocks PROPERTIES LABELS cuda_emu
    TIMEOUT ${GPT2_EMU_TEST_TIMEOUT}
    PROCESSORS 2 FAIL_REGULAR_EXPRESSION "Running 0 tests"
    ENVIRONMENT "${GPT2_CUDA_TEST_ENV};CUDA_EMU_HOST_THREADS=2;CUDA_EMU_BLOCK_JITTER_US=300;CUDA_EMU_DEFERRED_COPIES=1")
  # Every test again with lazy streams (src/cuda_emu/api.h, SetStreamOrder): work runs
  # only once something waits for it, so a missing event between streams (the attention
  # backward's dQ stream, pinned staging reused before its copy ran, the lagged loss
  # readback) shows as work running too late (lazy: a missing join) or too early
  # (lazy_main: a missing fork from the main stream). The weight gradients run on their
  # own stream by default (GPT2_WGRAD_BESIDE), so these runs check its joins too.
  # Each in three shards (gtest's own: every third test), emu.streams_${order}.1of3 ..:
  # whole, one took 299 s of its 300 s timeout on a 2-core machine beside other tests.
  set(lazy_shards 3)
  foreach(order lazy lazy_main)
    foreach(shard RANGE 1 ${lazy_shards})
      math(EXPR index "${shard} - 1")
      set(name emu.streams_${order}.${shard}of${lazy_shards})
      add_test(NAME ${name} COMMAND cuda_backend_test_emu)
      set_tests_properties(${name} PROPERTIES LABELS cuda_emu
        TIMEOUT ${GPT2_EMU_TEST_TIMEOUT} FAIL_REGULAR_EXPRESSION "Running 0 tests"
        ENVIRONMENT "${GPT2_CUDA_TEST_ENV};CUDA_EMU_STREAMS=${order};GTEST_TOTAL_SHARDS=${lazy_shards};GTEST_SHARD_INDEX=${index}")
    endforeach()
  endforeach()
endif()

if(GPT2_HAVE_CUDA)
  add_executable(cuda_backend_test_gpu tests/cuda/cuda_backend_test.cc
                 tests/cuda/cuda_train_test.cc tests/cuda/cuda_decode_test.cc
                 tests/cuda/nccl_test.cc)
  target_link_libraries(cuda_backend_test_gpu PRIVATE gpt2_cuda GTest::gtest GTest::gtest_main)
  gtest_discover_tests(cuda_backend_test_gpu DISCOVERY_TIMEOUT 60 TEST_PREFIX "gpu."
    PROPERTIES LABELS gpu TIMEOUT 300 ENVIRONMENT "${GPT2_CUDA_TEST_ENV}"
               SKIP_REGULAR_EXPRESSION "no usable CUDA device")
endif()

# cuBLASLt opened on demand, not linked (src/cuda/cublaslt_api.h): runs without a GPU.
if(GPT2_HAVE_CUDA)
  add_executable(cublaslt_api_test tests/cuda/cublaslt_api_test.cc)
  target_link_libraries(cublaslt_api_test PRIVATE gpt2_cuda GTest::gtest GTest::gtest_main)
  gtest_discover_tests(cublaslt_api_test DISCOVERY_TIMEOUT 60 PROPERTIES LABELS cpu)
endif()

# Two ranks sharing one GPU, under mpirun: host-staged MPI and ZeRO-1; on the emulated GPU
# in CI, and on a real one (label gpu, skipped without one) in the device script.
if(GPT2_HAVE_CUDA)
  add_executable(cuda_mpi_test_gpu tests/cuda/cuda_mpi_test.cc)
  target_link_libraries(cuda_mpi_test_gpu PRIVATE gpt2_cuda GTest::gtest)
  add_test(NAME gpu.cuda_mpi_np2
           COMMAND ${MPIEXEC_EXECUTABLE} ${MPIEXEC_NUMPROC_FLAG} 2 $<TARGET_FILE:cuda_mpi_test_gpu>)
  set_tests_properties(gpu.cuda_mpi_np2 PROPERTIES LABELS "gpu;mpi" TIMEOUT 300 PROCESSORS 2
                       ENVIRONMENT "${GPT2_MPI_ENV}" SKIP_REGULAR_EXPRESSION "no usable CUDA device")
endif()
if(TARGET gpt2_cuda_emu)
  add_executable(cuda_mpi_test_emu tests/cuda/cuda_mpi_test.cc)
  target_link_libraries(cuda_mpi_test_emu PRIVATE gpt2_cuda_emu GTest::gtest)
  add_test(NAME emu.cuda_mpi_np2
           COMMAND ${MPIEXEC_EXECUTABLE} ${MPIEXEC_NUMPROC_FLAG} 2 $<TARGET_FILE:cuda_mpi_test_emu>)
  set_tests_properties(emu.cuda_mpi_np2 PROPERTIES LABELS "cuda_emu;mpi"
                       TIMEOUT ${GPT2_EMU_TEST_TIMEOUT}
                       PROCESSORS 2 ENVIRONMENT "${GPT2_MPI_ENV}")
  # Again with lazy streams (the ranks inherit mpirun's environment).
  add_test(NAME emu.cuda_mpi_np2_lazy_streams
           COMMAND ${MPIEXEC_EXECUTABLE} ${MPIEXEC_NUMPROC_FLAG} 2 $<TARGET_FILE:cuda_mpi_test_emu>)
  set_tests_properties(emu.cuda_mpi_np2_lazy_streams PROPERTIES LABELS "cuda_emu;mpi"
                       TIMEOUT ${GPT2_EMU_TEST_TIMEOUT} PROCESSORS 2
                       ENVIRONMENT "${GPT2_MPI_ENV};CUDA_EMU_STREAMS=lazy")
endif()

# The wgmma kernels as ptxas builds them for sm_90a: a register shortage makes
# ptxas serialize every warpgroup product (advisory C7512), which no emulated
# test can see and which once went unnoticed into a device run's pack.
if(GPT2_HAVE_CUDA)
  add_test(NAME cuda.ptxas_wgmma_kernels
           COMMAND ${CMAKE_COMMAND} -DNVCC=${CMAKE_CUDA_COMPILER}
                   -DSOURCE_DIR=${PROJECT_SOURCE_DIR} -DOUT=${CMAKE_CURRENT_BINARY_DIR}
                   "-DFILES=src/ops/attention_wgmma.cu"
                   -P ${PROJECT_SOURCE_DIR}/cmake/ptxas_check.cmake)
  set_tests_properties(cuda.ptxas_wgmma_kernels PROPERTIES LABELS cuda_emu TIMEOUT 300)
endif()
