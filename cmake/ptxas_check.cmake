# ctest script: compiles the kernels that use Hopper's warpgroup products for
# sm_90a with ptxas's report on (-Xptxas -v) and fails on the advisories that
# mean lost performance the emulator cannot show: wgmma serialized for want of
# registers (C7512), warpgroup arrives injected around register operands
# (C7519), or any other "Potential Performance Loss". Also fails on local
# memory spills in those kernels. Prints each kernel's registers.
#   cmake -DNVCC=... -DSOURCE_DIR=... -DFILES="a.cu;b.cu" -DOUT=dir -P ptxas_check.cmake
set(failed "")
foreach(file IN LISTS FILES)
  get_filename_component(name "${file}" NAME_WE)
  execute_process(
    COMMAND "${NVCC}" -I "${SOURCE_DIR}" -DGPT2_HAVE_CUDA=1 -DNDEBUG -O3 -std=c++17
            --expt-relaxed-constexpr -arch=sm_90a -cubin -o "${OUT}/${name}.cubin"
            "${SOURCE_DIR}/${file}" -Xptxas -v
    RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "nvcc failed on ${file}:\n${out}")
  endif()
  string(REPLACE "\n" ";" lines "${out}")
  set(kernel "")
  foreach(line IN LISTS lines)
    if(line MATCHES "Compiling entry function '([^']+)'")
      set(kernel "${CMAKE_MATCH_1}")
    elseif(line MATCHES "Used ([0-9]+) registers")
      message(STATUS "${file}: ${CMAKE_MATCH_1} registers: ${kernel}")
    endif()
    if(line MATCHES "C7512|C7519|Potential Performance Loss")
      string(APPEND failed "\n${file}: ${line}")
    elseif(line MATCHES "([1-9][0-9]*) bytes spill stores")
      string(APPEND failed "\n${file}: ${CMAKE_MATCH_1} bytes spilled in ${kernel}")
    endif()
  endforeach()
endforeach()
if(failed)
  message(FATAL_ERROR "ptxas reports lost performance:${failed}")
endif()
message(STATUS "ptxas: no serialized wgmma, no injected arrives, no spills in: ${FILES}")
