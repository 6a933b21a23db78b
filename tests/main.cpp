// Catch2 main shared by the core test executables.
#define CATCH_CONFIG_MAIN
#include <catch2/catch.hpp>
