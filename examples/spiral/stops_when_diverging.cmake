# ctest example_spiral_stops_when_diverging: a diverging run stops at the first NaN or infinity
# (every step runs with cg::check_finite) with exit code 3 and a line on stderr that names the step,
# and keeps what the epochs before it wrote: their loss.csv rows and their last checkpoint.
#   cmake -DSPIRAL=<spiral executable> -DDIR=<scratch folder> -P stops_when_diverging.cmake
# Adam moves each weight by about lr per step: lr 1e35 overflows float within a few epochs (1e30
# does not: the loss grows to about 1e30 and stays finite).
foreach(v SPIRAL DIR)
  if(NOT DEFINED ${v})
    message(FATAL_ERROR "stops_when_diverging.cmake: -D${v}=... is required")
  endif()
endforeach()
file(REMOVE_RECURSE ${DIR})
execute_process(COMMAND ${SPIRAL} --seed 1 --lr 1e35 --epochs 50 --save-every 1 --out ${DIR}
                RESULT_VARIABLE code OUTPUT_VARIABLE out ERROR_VARIABLE err)
message(STATUS "spiral --lr 1e35: exit code ${code}; stderr: ${err}")
if(NOT code EQUAL 3)
  message(FATAL_ERROR "expected exit code 3 (training diverged), got ${code}")
endif()
if(NOT err MATCHES "training diverged.*non-finite value \\((nan|\\+inf|-inf)\\) at element [0-9]+ of step [0-9]+")
  message(FATAL_ERROR "stderr does not name the step that produced the non-finite value")
endif()
file(STRINGS ${DIR}/loss.csv rows)
list(LENGTH rows n)
if(n LESS 2)
  message(FATAL_ERROR "loss.csv lost the rows of the epochs before the divergence (${n} lines)")
endif()
if(NOT EXISTS ${DIR}/checkpoint.safetensors)
  message(FATAL_ERROR "the checkpoint of the epochs before the divergence is gone")
endif()
