// ops/all.hpp: every op family. Adding an op: its file, plus one line here.
#pragma once
#include "attention.hpp"
#include "elementwise.hpp"
#include "embedding.hpp"
#include "layer_norm.hpp"
#include "losses.hpp"
#include "matmul.hpp"
#include "reduce.hpp"
#include "rnn.hpp"
#include "rnn_attention.hpp"
#include "scan.hpp"
#include "shape_ops.hpp"
#include "softmax.hpp"

// Last: the instance lists name every op above.
#include "instances.hpp"
