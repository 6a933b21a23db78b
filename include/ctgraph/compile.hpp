// ctgraph/compile.hpp: the public entry points around a graph, one header each: grad,
// program, feed, parameters, init, check_finite, results and step (compile, run).
#pragma once
#include "check_finite.hpp"
#include "feed.hpp"
#include "format.hpp"
#include "grad.hpp"
#include "init.hpp"
#include "parameters.hpp"
#include "program.hpp"
#include "results.hpp"
#include "step.hpp"
#include "view.hpp"
