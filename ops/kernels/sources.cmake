# Compiled kernel sources of the ctgraph library (owned by the kernels work).
set(CTGRAPH_KERNEL_SOURCES
  ${CMAKE_CURRENT_LIST_DIR}/gemm.cpp
  ${CMAKE_CURRENT_LIST_DIR}/attention.cpp)
