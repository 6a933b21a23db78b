# ctest example_translate_resume_matches: a run stopped and resumed from its checkpoint gives the
# run of not stopping, bit for bit: the same loss.csv and the same final model.safetensors (params
# and Adam's state). The resumed run here starts from a checkpoint older than the rows its folder's
# loss.csv already has (a run killed after writing them): those rows go, and come back the same.
# -DMODEL=<lstm|transformer> trains that model (the default: --model's, lstm).
#   cmake -DTRANSLATE=<translate executable> -DDIR=<scratch folder> [-DMODEL=<model>] -P resume_matches.cmake
foreach(v TRANSLATE DIR)
  if(NOT DEFINED ${v})
    message(FATAL_ERROR "resume_matches.cmake: -D${v}=... is required")
  endif()
endforeach()
file(REMOVE_RECURSE ${DIR}/straight ${DIR}/resumed)
set(common --seed 4 --steps 60 --eval-every 20 --heldout 64 --min-accuracy 0)
if(DEFINED MODEL)
  list(APPEND common --model ${MODEL})
endif()

function(run)
  execute_process(COMMAND ${TRANSLATE} ${common} ${ARGN} RESULT_VARIABLE code OUTPUT_VARIABLE out ERROR_VARIABLE err)
  list(JOIN ARGN " " flags)
  message(STATUS "translate ${flags}: exit code ${code}")
  if(NOT code EQUAL 0)
    message(FATAL_ERROR "translate ${flags} failed (${code}):\n${out}\n${err}")
  endif()
endfunction()

run(--out ${DIR}/straight)
run(--out ${DIR}/resumed --stop-after 20)
file(COPY_FILE ${DIR}/resumed/model.safetensors ${DIR}/step20.safetensors)
run(--out ${DIR}/resumed --resume ${DIR}/step20.safetensors --stop-after 40)  # loss.csv now has step 40's row
run(--out ${DIR}/resumed --resume ${DIR}/step20.safetensors)                  # from step 20 again, to the end

foreach(f loss.csv model.safetensors)
  execute_process(COMMAND ${CMAKE_COMMAND} -E compare_files ${DIR}/straight/${f} ${DIR}/resumed/${f}
                  RESULT_VARIABLE differ)
  if(differ)
    message(FATAL_ERROR "resumed run's ${f} differs from the straight run's: ${DIR}/straight/${f} vs ${DIR}/resumed/${f}")
  endif()
endforeach()
file(STRINGS ${DIR}/resumed/loss.csv rows)
list(LENGTH rows n)
if(NOT n EQUAL 4)
  message(FATAL_ERROR "loss.csv has ${n} lines, not a header and rows for steps 20, 40 and 60")
endif()
