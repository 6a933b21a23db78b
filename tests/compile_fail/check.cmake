# Compiles one compile-fail snippet; run by CTest as
#   cmake -DCXX=<compiler> -DROOT=<project source dir> -DSRC=<snippet> -DMODE=fail|pass
#         [-DMEMORY_KB=4000000] -P check.cmake
# MODE=pass: the snippet without CTGRAPH_FAIL (its fixed twin) must compile.
# MODE=fail: with -DCTGRAPH_FAIL it must not compile, and the FIRST line of the
#   diagnostics that contains "error:" must match the regex the snippet states in a
#   comment line `// EXPECT-ERROR: <regex>`.
# The compiler runs under `ulimit -v` so that a blow-up fails fast.
foreach(v CXX ROOT SRC MODE)
  if(NOT DEFINED ${v})
    message(FATAL_ERROR "check.cmake: -D${v}=... is required")
  endif()
endforeach()
if(NOT DEFINED MEMORY_KB)
  set(MEMORY_KB 4000000)
endif()

set(flags -std=c++20 -fopenmp -fsyntax-only -I${ROOT}/include -I${ROOT})
if(MODE STREQUAL "fail")
  list(APPEND flags -DCTGRAPH_FAIL)
endif()
set(ENV{LC_ALL} C) # plain quotes in diagnostics
execute_process(
  COMMAND sh -c "ulimit -v ${MEMORY_KB} && exec \"$@\"" sh ${CXX} ${flags} ${SRC}
  RESULT_VARIABLE rc
  OUTPUT_VARIABLE out
  ERROR_VARIABLE err)
set(diag "${out}${err}")

if(MODE STREQUAL "pass")
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "the fixed twin of ${SRC} does not compile (exit ${rc}):\n${diag}")
  endif()
  message(STATUS "the fixed twin compiles")
  return()
endif()

if(rc EQUAL 0)
  message(FATAL_ERROR "${SRC} compiled with -DCTGRAPH_FAIL, but must not")
endif()
file(STRINGS ${SRC} expect_line REGEX "^// EXPECT-ERROR: ")
if(NOT expect_line)
  message(FATAL_ERROR "${SRC} has no `// EXPECT-ERROR: <regex>` line")
endif()
string(REGEX REPLACE "^// EXPECT-ERROR: " "" expect "${expect_line}")
# The first line mentioning "error:" (split on newlines; diagnostics may contain ';').
string(REPLACE ";" "\\;" lines "${diag}")
string(REPLACE "\n" ";" lines "${lines}")
set(first "")
foreach(line IN LISTS lines)
  if(line MATCHES "error:")
    set(first "${line}")
    break()
  endif()
endforeach()
if(first STREQUAL "")
  message(FATAL_ERROR "no line with \"error:\" in the diagnostics (exit ${rc}; a memory cap hit?):\n${diag}")
endif()
if(NOT first MATCHES "${expect}")
  message(FATAL_ERROR "first error line does not match\n  regex: ${expect}\n  line:  ${first}")
endif()
message(STATUS "first error line matches: ${first}")
