# ctest example_addition_sample_lines: --sample prints exactly one line for each input line, the sum
# or "error: ..." saying what is wrong with that line, and goes on after a bad one; a trained model
# gets easy sums right; draws are a function of --seed; a bad checkpoint is an error that names it.
#   cmake -DADDITION=<addition executable> -DCHECKPOINT=<a 3-digit model.safetensors> -DDIR=<scratch> -P sample_lines.cmake
cmake_policy(SET CMP0007 NEW)  # empty lines are list elements too
foreach(v ADDITION CHECKPOINT DIR)
  if(NOT DEFINED ${v})
    message(FATAL_ERROR "sample_lines.cmake: -D${v}=... is required")
  endif()
endforeach()
file(MAKE_DIRECTORY ${DIR})

# Runs addition --sample on a file; sets <prefix>_lines to its output's lines.
function(sample prefix input_file)
  execute_process(COMMAND ${ADDITION} --sample --checkpoint ${CHECKPOINT} ${ARGN} INPUT_FILE ${input_file}
                  RESULT_VARIABLE code OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT code EQUAL 0)
    message(FATAL_ERROR "addition --sample ${ARGN} < ${input_file} failed (${code}):\n${out}\n${err}")
  endif()
  string(REGEX REPLACE "\n$" "" out "${out}")
  string(REPLACE "\n" ";" out "${out}")
  set(${prefix}_lines "${out}" PARENT_SCOPE)
endfunction()

set(inputs "437+589=" "" "1234+5" "12+x" "7" "+5" " 12 + 7 " "007+1=")
set(want_patterns
  "^437\\+589=[0-9]+$"
  "^error: empty line"
  "^error: 1234 has 4 digits, and this model adds operands of at most 3$"
  "^error: 'x' in \"x\" is not a digit"
  "^error: no '\\+' in \"7\""
  "^error: the first operand is missing$"
  "^12\\+7=[0-9]+$"
  "^7\\+1=[0-9]+$")
list(JOIN inputs "\n" text)
file(WRITE ${DIR}/lines.txt "${text}\n")
sample(got ${DIR}/lines.txt)
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

# Easy sums: a model trained for a few hundred steps gets most of them right.
set(easy "1+1" "2+3" "10+20" "100+200" "111+222" "5+5" "300+400" "12+34")
set(sums "1+1=2" "2+3=5" "10+20=30" "100+200=300" "111+222=333" "5+5=10" "300+400=700" "12+34=46")
list(JOIN easy "\n" text)
file(WRITE ${DIR}/easy.txt "${text}\n")
sample(greedy ${DIR}/easy.txt)
set(right 0)
foreach(s IN LISTS sums)
  list(FIND greedy_lines "${s}" at)
  if(at GREATER -1)
    math(EXPR right "${right} + 1")
  endif()
endforeach()
if(right LESS 5)
  message(FATAL_ERROR "the trained model gets ${right} of 8 easy sums right: ${greedy_lines}")
endif()

# Sampling: --samples answers per line, the same for the same --seed.
sample(a ${DIR}/easy.txt --temperature 1.5 --samples 4 --seed 5)
sample(b ${DIR}/easy.txt --temperature 1.5 --samples 4 --seed 5)
if(NOT a_lines STREQUAL b_lines)
  message(FATAL_ERROR "the same --seed drew different sums:\n${a_lines}\n${b_lines}")
endif()
list(GET a_lines 0 first)
if(NOT first MATCHES "^1\\+1=[^ ]+ [^ ]+ [^ ]+ [^ ]+$")
  message(FATAL_ERROR "--samples 4 gave \"${first}\", want four answers")
endif()

# A checkpoint that is not one: an error naming the file, exit code 2, nothing on stdout.
file(WRITE ${DIR}/corrupt.safetensors "not a safetensors file")
execute_process(COMMAND ${ADDITION} --sample --checkpoint ${DIR}/corrupt.safetensors INPUT_FILE ${DIR}/easy.txt
                RESULT_VARIABLE code OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT code EQUAL 2 OR NOT out STREQUAL "" OR NOT err MATCHES "addition: --checkpoint: .*corrupt.safetensors")
  message(FATAL_ERROR "a corrupt checkpoint gave exit code ${code}, stdout \"${out}\", stderr \"${err}\"")
endif()
