# Compiled kernel sources of the ctgraph library (owned by the kernels work).
set(CTGRAPH_KERNEL_SOURCES
  ${CMAKE_CURRENT_LIST_DIR}/gemm.cpp
  ${CMAKE_CURRENT_LIST_DIR}/attention.cpp
  ${CMAKE_CURRENT_LIST_DIR}/rnn.cpp
  ${CMAKE_CURRENT_LIST_DIR}/optim.cpp
  ${CMAKE_CURRENT_LIST_DIR}/rows.cpp)
# The micro-kernels are written as a * b + c on GCC vector types: let the compiler contract them to FMA
# whatever the language mode (-std=c++20 alone would turn contraction off).
set_source_files_properties(${CTGRAPH_KERNEL_SOURCES} PROPERTIES
  COMPILE_OPTIONS "$<$<CXX_COMPILER_ID:GNU,Clang>:-ffp-contract=fast>")
# sqrt without errno: the optimizers' loops vectorise.
set_property(SOURCE ${CMAKE_CURRENT_LIST_DIR}/optim.cpp APPEND PROPERTY
  COMPILE_OPTIONS "$<$<CXX_COMPILER_ID:GNU,Clang>:-fno-math-errno>")
