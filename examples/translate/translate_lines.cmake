# ctest example_translate_lines: --translate prints exactly one line for each input line, the ISO
# date or "error: ..." saying what is wrong with that line, and goes on after a bad one; greedy
# decoding and beam search agree on a trained model's easy inputs; a bad checkpoint is an error
# that names it. With -DMODEL=lstm|transformer (the checkpoint's model), --model naming the other one is
# an error too.
#   cmake -DTRANSLATE=<translate executable> -DCHECKPOINT=<a trained model.safetensors> -DDIR=<scratch>
#         [-DMODEL=<its model>] -P translate_lines.cmake
cmake_policy(SET CMP0007 NEW)  # empty lines are list elements too
foreach(v TRANSLATE CHECKPOINT DIR)
  if(NOT DEFINED ${v})
    message(FATAL_ERROR "translate_lines.cmake: -D${v}=... is required")
  endif()
endforeach()
file(MAKE_DIRECTORY ${DIR})
string(ASCII 13 cr)
string(ASCII 7 bell)
string(REPEAT "5" 31 long)

# Runs translate --translate on `lines` (a list); sets <prefix>_lines to its output's lines.
function(translate prefix input_file)
  execute_process(COMMAND ${TRANSLATE} --translate --checkpoint ${CHECKPOINT} ${ARGN} INPUT_FILE ${input_file}
                  RESULT_VARIABLE code OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT code EQUAL 0)
    message(FATAL_ERROR "translate --translate ${ARGN} < ${input_file} failed (${code}):\n${out}\n${err}")
  endif()
  string(REGEX REPLACE "\n$" "" out "${out}")
  string(REPLACE ";" "\\;" out "${out}")
  string(REPLACE "\n" ";" out "${out}")
  set(${prefix}_lines "${out}" PARENT_SCOPE)
endfunction()

# Malformed lines among good ones: each gets its own answer, in order.
set(inputs "2026.11.05" "" "   " "5 November 2026!" "${long}" "  5 Nov 2026${cr}" "5 N${bell}v 2026" "5 Növember 2026"
           "1999.12.31")
set(want_patterns
  "^[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]$"
  "^error: empty line$"
  "^error: empty line$"
  "^error: character '!' at position 16 is not in the vocabulary"
  "^error: 31 characters, longer than the model's maximum of 30$"
  "^[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]$"
  "^error: control character 0x07 at position 4 is not in the vocabulary"
  "^error: character 'ö' at position 4 is not in the vocabulary"
  "^[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]$")
list(JOIN inputs "\n" text)
file(WRITE ${DIR}/malformed.txt "${text}\n")
translate(got ${DIR}/malformed.txt)
list(LENGTH inputs n_in)
list(LENGTH got_lines n_out)
if(NOT n_in EQUAL n_out)
  message(FATAL_ERROR "${n_in} input lines gave ${n_out} output lines:\n${got_lines}")
endif()
math(EXPR last "${n_in} - 1")
foreach(i RANGE ${last})
  list(GET got_lines ${i} line)
  list(GET want_patterns ${i} want)
  list(GET inputs ${i} input)
  if(NOT line MATCHES "${want}")
    message(FATAL_ERROR "line ${i} (\"${input}\") gave \"${line}\", want ${want}")
  endif()
endforeach()

# Easy inputs, in the formats a model learns first: greedy and a beam of 4 agree.
set(easy "2026.11.05" "1900.01.01" "2099.12.31" "1987.06.15" "2042.02.28" "5 November 2026" "31 December 1999"
         "1 January 2000" "14 July 1989" "20 March 2063")
list(JOIN easy "\n" text)
file(WRITE ${DIR}/easy.txt "${text}\n")
translate(greedy ${DIR}/easy.txt)
translate(beam ${DIR}/easy.txt --beam 4)
if(NOT greedy_lines STREQUAL beam_lines)
  message(FATAL_ERROR "greedy and beam search disagree on easy inputs:\ngreedy: ${greedy_lines}\nbeam:   ${beam_lines}")
endif()
set(right 0)
foreach(pair "2026.11.05=2026-11-05" "1900.01.01=1900-01-01" "2099.12.31=2099-12-31" "1987.06.15=1987-06-15")
  string(REPLACE "=" ";" pair "${pair}")
  list(GET pair 1 iso)
  list(FIND greedy_lines "${iso}" at)
  if(at GREATER -1)
    math(EXPR right "${right} + 1")
  endif()
endforeach()
if(right LESS 3)
  message(FATAL_ERROR "the trained model gets ${right} of 4 dates written as YYYY.MM.DD right: ${greedy_lines}")
endif()

# A checkpoint that is not one: an error naming the file, exit code 2, nothing on stdout.
file(WRITE ${DIR}/corrupt.safetensors "not a safetensors file")
execute_process(COMMAND ${TRANSLATE} --translate --checkpoint ${DIR}/corrupt.safetensors INPUT_FILE ${DIR}/easy.txt
                RESULT_VARIABLE code OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT code EQUAL 2 OR NOT out STREQUAL "" OR NOT err MATCHES "translate: --checkpoint: .*corrupt.safetensors")
  message(FATAL_ERROR "a corrupt checkpoint gave exit code ${code}, stdout \"${out}\", stderr \"${err}\"")
endif()

# --model naming another model than the checkpoint's: an error naming both, exit code 2, nothing on stdout.
if(DEFINED MODEL)
  if(MODEL STREQUAL "lstm")
    set(other transformer)
  else()
    set(other lstm)
  endif()
  execute_process(COMMAND ${TRANSLATE} --translate --model ${other} --checkpoint ${CHECKPOINT}
                  INPUT_FILE ${DIR}/easy.txt RESULT_VARIABLE code OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT code EQUAL 2 OR NOT out STREQUAL "" OR NOT err MATCHES "--model ${other}, but .* holds a ${MODEL} model")
    message(FATAL_ERROR "--model ${other} with a ${MODEL} checkpoint gave exit code ${code}, stdout \"${out}\", "
                        "stderr \"${err}\"")
  endif()
endif()
