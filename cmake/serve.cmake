# Sampling and the web demo (docs/serve.md): the KV-cache inference engine
# (src/infer, in the gpt2 library), gpt2_sample and gpt2_serve (picked up by the
# tools glob; gpt2_serve needs cpp-httplib and nlohmann-json), and the server's
# API and browser tests. tests/infer/*_test.cc come in through the test glob.

file(GLOB GPT2_INFER_SOURCES CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/src/infer/*.cc)
target_sources(gpt2 PRIVATE ${GPT2_INFER_SOURCES})
# The server's generation thread and its connection threads need no web
# library: in the library, tested on their own (tests/serve/*_test.cc).
target_sources(gpt2 PRIVATE ${PROJECT_SOURCE_DIR}/src/serve/model_worker.cc
                            ${PROJECT_SOURCE_DIR}/src/serve/connection_threads.cc)

# Debian's libcpp-httplib-dev is the split build: declarations in httplib.h,
# the code in libcpp-httplib.so, compiled with TLS and compression on. The
# pkg-config file carries the matching defines, so the header must come
# through it.
find_package(PkgConfig QUIET)
if(PKG_CONFIG_FOUND)
  pkg_check_modules(GPT2_HTTPLIB QUIET IMPORTED_TARGET cpp-httplib)
endif()
find_package(nlohmann_json 3 QUIET)
set(GPT2_SERVE_INSTALL_HINT
    " (install libcpp-httplib-dev and nlohmann-json3-dev: launch/setup.sh)")

if(GPT2_HTTPLIB_FOUND AND nlohmann_json_FOUND)
  set(GPT2_SERVE_DEPS PkgConfig::GPT2_HTTPLIB nlohmann_json::nlohmann_json)
  message(STATUS "gpt2_ddp: gpt2_serve ON (cpp-httplib ${GPT2_HTTPLIB_VERSION}, "
                 "nlohmann_json ${nlohmann_json_VERSION})")
  target_link_libraries(gpt2_serve PRIVATE ${GPT2_SERVE_DEPS})
  # The server's requests, answers and HTTP side (src/serve), with the
  # libraries they need.
  target_sources(gpt2_serve PRIVATE ${PROJECT_SOURCE_DIR}/src/serve/request.cc
                                    ${PROJECT_SOURCE_DIR}/src/serve/api.cc
                                    ${PROJECT_SOURCE_DIR}/src/serve/http.cc)
else()
  # The tools glob builds gpt2_serve regardless; without its libraries it is a
  # stub that says what to install, and the server tests are not registered.
  message(STATUS "gpt2_ddp: gpt2_serve is a stub${GPT2_SERVE_INSTALL_HINT}")
  target_compile_definitions(gpt2_serve PRIVATE GPT2_SERVE_STUB=1)
  # The server's tests are there, shown as skipped with the reason, rather
  # than missing from the count.
  foreach(name serve_api serve_browser)
    gpt2_add_skipped_test(${name} cpu
      "gpt2_serve is a stub in this build${GPT2_SERVE_INSTALL_HINT}")
  endforeach()
  return()
endif()

# ---- The server's tests: real processes on loopback ---------------------------
# serve_api: every request class against one gpt2_serve on an ephemeral port,
#   and gpt2_sample's command line (gtest, one process, one server).
# serve_browser: headless Chromium drives the page over the DevTools pipe and
#   saves serve_browser_screenshot.png here; exit 77 (skipped) without Chromium.
foreach(name serve_api serve_browser)
  add_executable(${name}_check tests/serve/${name}_check.cc)
  target_link_libraries(${name}_check PRIVATE gpt2 ${GPT2_SERVE_DEPS})
  target_compile_options(${name}_check PRIVATE -march=${GPT2_CPU_ARCH})
  add_dependencies(${name}_check gpt2_serve gpt2_sample)
endforeach()
target_link_libraries(serve_api_check PRIVATE GTest::gtest)

set(GPT2_SERVE_TEST_ENV "GPT2_DATA_DIR=${GPT2_TEST_DATA_DIR};OMP_NUM_THREADS=2;OMP_WAIT_POLICY=passive")
add_test(NAME serve_api
         COMMAND serve_api_check $<TARGET_FILE:gpt2_serve> $<TARGET_FILE:gpt2_sample>)
set_tests_properties(serve_api PROPERTIES LABELS cpu TIMEOUT 120
                     ENVIRONMENT "${GPT2_SERVE_TEST_ENV}")
add_test(NAME serve_browser COMMAND serve_browser_check $<TARGET_FILE:gpt2_serve>
         WORKING_DIRECTORY ${PROJECT_BINARY_DIR})
set_tests_properties(serve_browser PROPERTIES LABELS "cpu;browser" TIMEOUT 120
                     SKIP_RETURN_CODE 77 ENVIRONMENT "${GPT2_SERVE_TEST_ENV}")

# gpt2_serve as a build without cpp-httplib or nlohmann-json makes it (a stub
# that says what to install) still compiles: an object library built with the
# rest (it once did not, unnoticed, since every build here has both).
add_library(gpt2_serve_stub_check OBJECT ${PROJECT_SOURCE_DIR}/src/tools/gpt2_serve.cc)
target_compile_definitions(gpt2_serve_stub_check PRIVATE GPT2_SERVE_STUB=1)
target_link_libraries(gpt2_serve_stub_check PRIVATE gpt2)
target_compile_options(gpt2_serve_stub_check PRIVATE -march=${GPT2_CPU_ARCH})
