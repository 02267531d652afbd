# Fuzz targets (tests/fuzz/*_fuzz.cc): the parsers of every input a user or a
# client hands the tools (JSON, the web demo's request bodies, the tokenizer,
# run configs, HellaSwag files, token shards, llm.c and Hugging Face weights).
# Each defines LLVMFuzzerTestOneInput.
#  - Every build: linked with tests/fuzz/fuzz_replay_main.cc and run under
#    ctest (label cpu) over its committed corpus (tests/fuzz/corpus/<target>)
#    and a fixed number of seeded mutations of it, allocations bounded.
#  - -DGPT2_FUZZ=ON (clang, with -DGPT2_SANITIZE=address,undefined,fuzzer-no-link
#    and CUDA off: launch/fuzz.sh): linked with libFuzzer instead, for
#    coverage-guided runs of any length.
option(GPT2_FUZZ "Link the fuzz targets with libFuzzer (clang; launch/fuzz.sh)" OFF)
set(GPT2_FUZZ_RUNS 5000 CACHE STRING "Seeded mutations each fuzz target runs under ctest")

file(GLOB GPT2_FUZZ_SOURCES CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/tests/fuzz/*_fuzz.cc)
add_custom_target(fuzz_targets)
foreach(src ${GPT2_FUZZ_SOURCES})
  get_filename_component(name ${src} NAME_WE)
  string(REGEX REPLACE "_fuzz$" "" short ${name})
  if(short STREQUAL "serve_request" AND NOT GPT2_SERVE_DEPS)
    # Needs the server's JSON library (cmake/serve.cmake): shown as skipped.
    gpt2_add_skipped_test(fuzz_${short} cpu
      "no JSON library for the web demo${GPT2_SERVE_INSTALL_HINT}")
    continue()
  endif()
  add_executable(${name} ${src} ${PROJECT_SOURCE_DIR}/tests/fuzz/fuzz_util.cc)
  add_dependencies(fuzz_targets ${name})
  target_link_libraries(${name} PRIVATE gpt2)
  target_compile_options(${name} PRIVATE -march=${GPT2_CPU_ARCH})
  if(GPT2_SERVE_DEPS)
    target_link_libraries(${name} PRIVATE nlohmann_json::nlohmann_json)
    target_compile_definitions(${name} PRIVATE GPT2_FUZZ_HAVE_NLOHMANN=1)
  endif()
  if(short STREQUAL "serve_request")
    target_sources(${name} PRIVATE ${PROJECT_SOURCE_DIR}/src/serve/request.cc
                                   ${PROJECT_SOURCE_DIR}/src/serve/api.cc)
  endif()
  if(GPT2_FUZZ)
    target_link_options(${name} PRIVATE -fsanitize=fuzzer)
    continue()
  endif()
  target_sources(${name} PRIVATE ${PROJECT_SOURCE_DIR}/tests/fuzz/fuzz_replay_main.cc)
  set(dict ${PROJECT_SOURCE_DIR}/tests/fuzz/${short}.dict)
  set(dict_args)
  if(EXISTS ${dict})
    set(dict_args --dict ${dict})
  endif()
  add_test(NAME fuzz_${short}
           COMMAND ${name} --runs ${GPT2_FUZZ_RUNS} ${dict_args}
                   --crash_dir ${PROJECT_BINARY_DIR}
                   ${PROJECT_SOURCE_DIR}/tests/fuzz/corpus/${short})
  set_tests_properties(fuzz_${short} PROPERTIES LABELS cpu TIMEOUT 300
    ENVIRONMENT "GPT2_DATA_DIR=${GPT2_TEST_DATA_DIR};OMP_NUM_THREADS=2;OMP_WAIT_POLICY=passive")
endforeach()
