# cmake -DSOURCE_DIR=... -DOUT=... -P cmake/build_info.cmake
# Writes OUT (one C string literal: the commit the build is made from, with
# "-dirty" when tracked files differ from it) only where it changes, so a build
# recompiles src/core/build_info.cc alone, and only when the commit moves.
find_package(Git QUIET)
set(commit "unknown (not built from a git checkout)")
if(GIT_FOUND)
  execute_process(COMMAND ${GIT_EXECUTABLE} -C ${SOURCE_DIR} rev-parse --short=12 HEAD
                  OUTPUT_VARIABLE head OUTPUT_STRIP_TRAILING_WHITESPACE
                  RESULT_VARIABLE head_rc ERROR_QUIET)
  if(head_rc EQUAL 0 AND NOT head STREQUAL "")
    execute_process(COMMAND ${GIT_EXECUTABLE} -C ${SOURCE_DIR} diff --quiet HEAD --
                    RESULT_VARIABLE dirty_rc ERROR_QUIET)
    set(commit "${head}")
    if(NOT dirty_rc EQUAL 0)
      set(commit "${head}-dirty")
    endif()
  endif()
endif()
set(content "\"${commit}\"\n")
if(EXISTS "${OUT}")
  file(READ "${OUT}" old)
else()
  set(old "")
endif()
if(NOT old STREQUAL content)
  file(WRITE "${OUT}" "${content}")
endif()
