# ctest example_spiral_resume_matches: stopping the spiral half-way and resuming from its
# checkpoint gives the run of not stopping, bit for bit: the same loss.csv, the same final
# line and the same final checkpoint (params and Adam's state).
#   cmake -DSPIRAL=<spiral executable> -DDIR=<scratch folder> -DEPOCHS=<even N> -DSEED=<S> -P resume_matches.cmake
# Few epochs keep it fast: the held-out accuracy may stay below 95% (exit code 1), so the
# exit codes are compared, not required to be 0.
foreach(v SPIRAL DIR EPOCHS SEED)
  if(NOT DEFINED ${v})
    message(FATAL_ERROR "resume_matches.cmake: -D${v}=... is required")
  endif()
endforeach()
math(EXPR half "${EPOCHS} / 2")
file(REMOVE_RECURSE ${DIR}/straight ${DIR}/resumed)

# Runs spiral with the given flags; sets <prefix>_code and <prefix>_final (its "final:" line).
function(run prefix)
  execute_process(COMMAND ${SPIRAL} --seed ${SEED} ${ARGN} RESULT_VARIABLE code OUTPUT_VARIABLE out
                  ERROR_VARIABLE err)
  list(JOIN ARGN " " flags)
  message(STATUS "spiral ${flags}: exit code ${code}")
  if(NOT code MATCHES "^[01]$")
    message(FATAL_ERROR "spiral ${flags} failed (${code}):\n${out}\n${err}")
  endif()
  string(REGEX MATCH "final:[^\n]*" final "${out}")
  set(${prefix}_code ${code} PARENT_SCOPE)
  set(${prefix}_final "${final}" PARENT_SCOPE)
endfunction()

run(straight --epochs ${EPOCHS} --save-every ${EPOCHS} --out ${DIR}/straight)
run(first --epochs ${half} --save-every ${half} --out ${DIR}/resumed)
run(resumed --epochs ${half} --save-every ${half} --resume ${DIR}/resumed/checkpoint.safetensors
    --out ${DIR}/resumed)

foreach(f loss.csv checkpoint.safetensors)
  execute_process(COMMAND ${CMAKE_COMMAND} -E compare_files ${DIR}/straight/${f} ${DIR}/resumed/${f}
                  RESULT_VARIABLE differ)
  if(differ)
    message(FATAL_ERROR "resumed run's ${f} differs from the straight run's: ${DIR}/straight/${f} vs ${DIR}/resumed/${f}")
  endif()
endforeach()
if(NOT straight_final STREQUAL resumed_final OR NOT straight_code STREQUAL resumed_code)
  message(FATAL_ERROR "final lines differ:\n  straight (exit ${straight_code}): ${straight_final}\n"
                      "  resumed  (exit ${resumed_code}): ${resumed_final}")
endif()
message(STATUS "resumed at epoch ${half} of ${EPOCHS}: ${resumed_final}")
