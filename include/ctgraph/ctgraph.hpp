// ctgraph/ctgraph.hpp: the whole public API. `namespace cg = ctgraph;`
#pragma once
#include "compile.hpp"
#include "export.hpp"
#include "view.hpp"
#include "optim.hpp"
#include "checkpoint.hpp"
#include "nn.hpp"
#include "decode.hpp"
