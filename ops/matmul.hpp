// ops/matmul.hpp: batched matrix product with NumPy-broadcast batch axes.
//   C[..., M, N] = op(A)[..., M, K] op(B)[..., K, N], op() the transpose when a.i[0] / a.i[1]
//   is set: a transpose feeding a matmul becomes the gemm's flag and costs nothing.
//   VJPs (stored layouts; then summed over broadcast batch axes):
//     dA = ta ? op(B) g^T : g op(B)^T        dB = tb ? g^T op(A) : op(A)^T g
#pragma once
#include <ctgraph/kernels.hpp>

#include "fwd.hpp"
#include "shape_ops.hpp"

namespace ctgraph {

struct matmul_op {
  static constexpr const char* name = "matmul";
  static constexpr op_class cls = op_class::kernel;
  static constexpr shape_result infer(const attr_t& a, const shape* in, int) {
    const shape &x = in[0], &y = in[1];
    if (x.rank < 2 || y.rank < 2) return {};
    const bool ta = a.i[0], tb = a.i[1];
    const int m = x.d[x.rank - (ta ? 1 : 2)], k = x.d[x.rank - (ta ? 2 : 1)];
    const int k2 = y.d[y.rank - (tb ? 1 : 2)], n = y.d[y.rank - (tb ? 2 : 1)];
    if (k != k2) return {};
    shape bx = x, by = y;
    bx.rank -= 2;
    by.rank -= 2;
    shape_result r = broadcast(bx, by);
    r.s.d[r.s.rank++] = m;
    r.s.d[r.s.rank++] = n;
    return r;
  }
  static constexpr double flops = 0;    // counted per product in summaries: 2*M*N*K
  static constexpr bool stacks = true;  // batch axes
  // acc + x W: the gemm adds acc (of the output's shape, or a bias row [N]) as it writes (plan: folds).
  static constexpr unsigned accumulates = 1, accumulates_rows = 1;
  // C (m, N) = op(A) op(B), plus D where a fold gave one (ldd 0: one row added to each row of C).
  template <class T>
  static void product(bool ta, bool tb, int m, int N, int K, const T* A, int lda, const T* B, int ldb, const T* D,
                      int ldd, T* C) {
    if (D) return kernels::gemm_add<T>(ta, tb, m, N, K, T(1), A, lda, B, ldb, D, ldd, C, N);
    kernels::gemm<T>(ta, tb, m, N, K, T(1), A, lda, B, ldb, T(0), C, N);
  }
  // A fold's addend of run `a` (acc + this product): dense, or one row (ldd 0).
  template <class T>
  static int addend_ld(const run_args<T>& a, int N) {
    return a.accumulator(0) && a.accumulator_shape(0).size() == N ? 0 : N;
  }
  template <class T>
  static void forward(const run_args<T>& a) {
    const shape &x = a.in_shape[0], &y = a.in_shape[1], &o = a.out_shape;
    const bool ta = a.a.i[0], tb = a.a.i[1];
    const int M = o.d[o.rank - 2], N = o.d[o.rank - 1], K = x.d[x.rank - (ta ? 2 : 1)];
    const int lda = x.d[x.rank - 1], ldb = y.d[y.rank - 1];
    const long batches = o.size() / (long(M) * N);
    const T *A = a.input(0), *B = a.input(1);
    const T* D = a.accumulator(0);
    const int ldd = addend_ld(a, N);
    auto product = [&](bool ta_, int m, const T* A_, const T* B_, const T* D_, T* C_) {
      matmul_op::product(ta_, tb, m, N, K, A_, lda, B_, ldb, D_, ldd, C_);
    };
    if (batches == 1) return product(ta, M, A, B, D, a.out);
    // [..., M, K] x [K, N]: the batch's rows are one [batches * M, K] matrix, one gemm.
    if (y.rank == 2 && !ta && x.size() == batches * M * K)
      return product(false, static_cast<int>(batches * M), A, B, D, a.out);
    // Batch offsets of each operand under broadcasting (stride 0 on broadcast axes).
    const int br = o.rank - 2;
    long sx[max_rank] = {}, sy[max_rank] = {};
    long ax = long(x.d[x.rank - 1]) * x.d[x.rank - 2], ay = long(y.d[y.rank - 1]) * y.d[y.rank - 2];
    for (int k = br - 1; k >= 0; --k) {
      int kx = k - (br - (x.rank - 2)), ky = k - (br - (y.rank - 2));
      if (kx >= 0) sx[k] = x.d[kx] == 1 ? 0 : ax, ax *= x.d[kx];
      if (ky >= 0) sy[k] = y.d[ky] == 1 ? 0 : ay, ay *= y.d[ky];
    }
    for (long b = 0; b < batches; ++b) {
      long rem = b, offx = 0, offy = 0;
      for (int k = br - 1; k >= 0; --k) {
        long c = rem % o.d[k];
        rem /= o.d[k];
        offx += c * sx[k];
        offy += c * sy[k];
      }
      product(ta, M, A + offx, B + offy, D ? D + (ldd ? b * M * N : 0) : nullptr, a.out + b * M * N);
    }
  }
  static constexpr void vjp(vjp_ctx& c) {
    const bool ta = c.attr().i[0], tb = c.attr().i[1];
    ref A = c.x(0), B = c.x(1), g = c.grad();
    if (c.wants[0]) c.set(0, sum_to(ta ? matmul(B, g, tb, true) : matmul(g, B, false, !tb), A.shape_of()));
    if (c.wants[1] && B.shape_of().rank == 2 && A.shape_of().rank > 2 && !ta) {
      // [..., M, K] x [K, N]: the batch's rows are one matrix, and dB one gemm over them all, read in place.
      c.set(1, tb ? matmul_rows(g, A) : matmul_rows(A, g));
    } else if (c.wants[1]) {
      c.set(1, sum_to(tb ? matmul(g, A, true, ta) : matmul(A, g, !ta, false), B.shape_of()));
    }
  }
  static void shape_mismatch(auto...) = delete;
};

constexpr ref matmul(ref a, ref b, bool ta, bool tb) { return apply<matmul_op>(attr_ints({ta, tb}), a, b); }

/// matmul_rows(a, b) = A^T B, with A and B the matrices [rows, last axis] that a and b are, every leading axis
/// a row: a linear layer's weight gradient x^T g over all of a sequence's positions, with no reshape (which
/// would copy x and g). Not stacking: an extra leading axis adds rows, not a batch. Made by matmul's VJP
/// only. Its attributes are matmul's transpose flags {1, 0}, so that matmul's shape rule and FLOP count apply.
struct matmul_rows_op {
  static constexpr const char* name = "matmul";
  static constexpr op_class cls = op_class::kernel;
  static constexpr shape as_matrix(const shape& s) {
    shape m;
    m.rank = 2;
    m.d[0] = static_cast<int>(s.rows());
    m.d[1] = s.back();
    return m;
  }
  static constexpr shape_result infer(const attr_t& a, const shape* in, int) {
    if (in[0].rank < 1 || in[1].rank < 1) return {};
    const shape m[2] = {as_matrix(in[0]), as_matrix(in[1])};
    return matmul_op::infer(a, m, 2);
  }
  static constexpr double flops = 0;  // counted per product, as matmul's
  static constexpr unsigned accumulates = 1, accumulates_rows = 1;
  template <class T>
  static void forward(const run_args<T>& a) {
    const shape x = as_matrix(a.in_shape[0]), y = as_matrix(a.in_shape[1]);
    const int M = a.out_shape.d[0], N = a.out_shape.d[1], K = x.d[0];
    matmul_op::product(true, false, M, N, K, a.input(0), x.d[1], a.input(1), y.d[1], a.accumulator(0),
                       matmul_op::addend_ld(a, N), a.out);
  }
  static constexpr void vjp(vjp_ctx& c) {  // on the matrices: dA = B g^T, dB = A g, reshaped back
    ref A = c.x(0), B = c.x(1), g = c.grad();
    if (c.wants[0]) c.set(0, reshape(matmul(reshape(B, as_matrix(B.shape_of())), g, false, true), A.shape_of()));
    if (c.wants[1]) c.set(1, reshape(matmul(reshape(A, as_matrix(A.shape_of())), g, false, false), B.shape_of()));
  }
  static void shape_mismatch(auto...) = delete;
};
constexpr ref matmul_rows(ref a, ref b) { return apply<matmul_rows_op>(attr_ints({true, false}), a, b); }

namespace detail {
// A transpose of the last two axes, seen through the type: folded into the gemm flag.
template <class E>
struct swapped_last_two : std::false_type {
  static constexpr const node_desc* inner = &E::desc;
};
template <class A, const node_desc* X>
requires(A::value == swap_last_two<X->out.rank>()) struct swapped_last_two<op_expr<permute_op, A, X>> : std::true_type {
  static constexpr const node_desc* inner = X;
};
}  // namespace detail

/// matmul(a, b): [..., M, K] x [..., K, N] -> [..., M, N]; batch axes broadcast.
template <expression A, expression B>
constexpr auto matmul(A a, B b) {
  using fa = detail::swapped_last_two<A>;
  using fb = detail::swapped_last_two<B>;
  constexpr shape sa = A::desc.out, sb = B::desc.out;
  constexpr shape_result r = matmul_op::infer(attr_t{}, std::array<shape, 2>{sa, sb}.data(), 2);
  if constexpr (!r.ok) {
    matmul_op::shape_mismatch(dims_of<sa>(), dims_of<sb>());
  } else {
    (void)a, (void)b;
    return make_node_of<matmul_op, attr_ints({fa::value, fb::value}), fa::inner, fb::inner>();
  }
}

}  // namespace ctgraph
