// <ctgraph/rnn_kernels.hpp>: fused LSTM and GRU gate kernels as plain functions over buffers.
//
// The building blocks of nn::lstm and nn::gru: the gemms of a step (x W_ih^T, h W_hh^T) are the caller's;
// these kernels do everything after them in one pass over the gates: the nonlinearities and the state
// update (forward), and their gradient (backward). PyTorch's semantics and gate orders (torch.nn.LSTM,
// torch.nn.GRU). Sigmoid and tanh are accurate (relative error below 1.5 eps in float and double), not
// fast approximations: double kernels serve gradient checks. Results below the smallest normal number
// are flushed to zero.
//
// Buffers are row-major, one row per batch entry; the gate axis holds the gates one after another,
// each H wide. Rows may be strided (rnn_shape). Outputs must not overlap inputs or each other.
// Rows are split over OpenMP threads when batch x hidden >= 2^15 (and not inside a parallel region).
#pragma once

namespace ctgraph::kernels {

/// Shape of one recurrent step, and the row strides of its buffers (in elements; 0 means dense).
struct rnn_shape {
  int batch;         ///< B: rows of every buffer.
  int hidden;        ///< H: features of the state h (and c).
  int ld_h = 0;      ///< Row stride of h and h' (0: H); 2H writes one direction of a bidirectional output.
  int ld_dh = 0;     ///< Row stride of dh' and dh (0: H).
  int ld_gates = 0;  ///< Row stride of pre, gx, gh, dpre, dgx, dgh (0: their width, 4H for LSTM, 3H for GRU).
};

/// y[i] = tanh(x[i]) and y[i] = sigmoid(x[i]) for i < n, with the gate kernels' accurate cores (relative
/// error below 1.5 eps), vectorised: the graph's tanh and sigmoid ops run on these. x and y must not overlap.
template <class T>
void tanh_array(const T* x, T* y, long n);
template <class T>
void sigmoid_array(const T* x, T* y, long n);

/// Columns of the values an LSTM step saves for its backward: act [B, 5H] = i, f, g, o, tanh(c').
inline constexpr int lstm_saved = 5;
/// Columns of the values a GRU step saves for its backward: act [B, 4H] = r, z, n, gh_n.
inline constexpr int gru_saved = 4;

/// LSTM step after its gemms (torch.nn.LSTMCell). Per row, with gates i, f, g, o along the 4H axis:
///   i = sigmoid(pre_i), f = sigmoid(pre_f), g = tanh(pre_g), o = sigmoid(pre_o)
///   c' = f * c + i * g,  h' = o * tanh(c')
/// @param s       B, H and row strides
/// @param pre     [B, 4H] (stride ld_gates): x W_ih^T + b_ih + h W_hh^T + b_hh, gates i, f, g, o
/// @param c       [B, H] dense: the cell state; null means zero
/// @param h_next  [B, H] (stride ld_h): h', written
/// @param c_next  [B, H] dense: c', written
/// @param act     [B, 5H] dense: i, f, g, o, tanh(c'), written (the backward's input)
template <class T>
void lstm_gates_forward(const rnn_shape& s, const T* pre, const T* c, T* h_next, T* c_next, T* act);

/// Gradient of lstm_gates_forward. Per row, with dc_total = dc' + dh' * o * (1 - tanh(c')^2):
///   dpre_i = dc_total * g * i (1 - i),  dpre_f = dc_total * c * f (1 - f),
///   dpre_g = dc_total * i * (1 - g^2),  dpre_o = dh' * tanh(c') * o (1 - o),  dc = dc_total * f
/// dpre and dc are overwritten, not accumulated.
/// @param s        B, H and row strides
/// @param act      [B, 5H] dense: what lstm_gates_forward saved
/// @param c        [B, H] dense: the forward's c; null means zero
/// @param dh_next  [B, H] (stride ld_dh): dL/dh'
/// @param dc_next  [B, H] dense: dL/dc'; null means zero
/// @param dpre     [B, 4H] (stride ld_gates): dL/dpre, written
/// @param dc       [B, H] dense: dL/dc, written; null: not computed
template <class T>
void lstm_gates_backward(const rnn_shape& s, const T* act, const T* c, const T* dh_next, const T* dc_next, T* dpre,
                         T* dc);

/// GRU step after its gemms (torch.nn.GRUCell). Per row, with gates r, z, n along the 3H axis:
///   r = sigmoid(gx_r + gh_r), z = sigmoid(gx_z + gh_z), n = tanh(gx_n + r * gh_n)
///   h' = (1 - z) * n + z * h
/// @param s       B, H and row strides
/// @param gx      [B, 3H] (stride ld_gates): x W_ih^T + b_ih
/// @param gh      [B, 3H] (stride ld_gates): h W_hh^T + b_hh
/// @param h       [B, H] (stride ld_h): the state; null means zero
/// @param h_next  [B, H] (stride ld_h): h', written
/// @param act     [B, 4H] dense: r, z, n, gh_n, written (the backward's input)
template <class T>
void gru_gates_forward(const rnn_shape& s, const T* gx, const T* gh, const T* h, T* h_next, T* act);

/// Gradient of gru_gates_forward. Per row, with dn_pre = dh' * (1 - z) * (1 - n^2):
///   dgx_n = dn_pre,  dgh_n = dn_pre * r,
///   dgx_r = dgh_r = dn_pre * gh_n * r (1 - r),  dgx_z = dgh_z = dh' * (h - n) * z (1 - z),
///   dh = dh' * z: only the direct path; the path through gh is the caller's gemm (dh += dgh W_hh).
/// dgx, dgh and dh are overwritten, not accumulated.
/// @param s        B, H and row strides
/// @param act      [B, 4H] dense: what gru_gates_forward saved
/// @param h        [B, H] (stride ld_h): the forward's h; null means zero
/// @param dh_next  [B, H] (stride ld_dh): dL/dh'
/// @param dgx      [B, 3H] (stride ld_gates): dL/dgx, written
/// @param dgh      [B, 3H] (stride ld_gates): dL/dgh, written
/// @param dh       [B, H] (stride ld_dh): the direct part of dL/dh, written; null: not computed
template <class T>
void gru_gates_backward(const rnn_shape& s, const T* act, const T* h, const T* dh_next, T* dgx, T* dgh, T* dh);

/// Sizes of one step of additive (Bahdanau) attention: S source positions, B rows, A attention
/// width, H key width. Buffers are dense and time-major as nn::lstm's outputs: [S, B, ...].
struct additive_attention_shape {
  int positions;  ///< S
  int batch;      ///< B
  int width;      ///< A: features of the projected query and keys
  int key_width;  ///< H: features of a key (what the context averages)
};

/// One step of additive attention after its gemms (nn::additive_attention). Per row b:
///   t_jb = tanh(pk_jb + pq_b),  e_j = (v . t_jb) mask_jb + (mask_jb - 1) 1e9,  w = softmax_j(e),
///   context_b = sum_j w_j keys_jb  (keys whose weight is exactly 0 are not read).
/// A padded position (mask 0) weighs exactly 0 in float and double; a row without a real position gets
/// uniform weights, which its scores do not change.
/// @param pk       [S, B, A]: the projected keys, W_h h_j
/// @param pq       [B, A]: the projected query, W_s s + b_s
/// @param v        [A]: the score vector
/// @param keys     [S, B, H]
/// @param mask     [S, B]: 1 at real positions, 0 at padded ones; null: none
/// @param context  [B, H], written
/// @param weights  [B, S], written
/// @param act      [S, B, A]: t, written (the backward's input)
template <class T>
void additive_attention_forward(const additive_attention_shape& s, const T* pk, const T* pq, const T* v, const T* keys,
                                const T* mask, T* context, T* weights, T* act);

/// Gradient of additive_attention_forward, from its saved t (act) and weights w. Per row b:
///   g_j = dw_bj + dc_b . keys_jb,  de_j = w_j (g_j - sum_i w_i g_i) mask_jb,
///   dpk_jb = de_j v (1 - t_jb^2),  dpq_b = sum_j dpk_jb,  dv = sum_jb de_j t_jb,  dkeys_jb = w_j dc_b.
/// No gradient reaches the mask. dpq and dv are overwritten; dpk and dkeys too, or, given acc_dpk or
/// acc_dkeys, written as that buffer plus the gradient (a running sum over decoder steps, in one pass).
/// @param mask   [S, B]: the forward's mask; null: none
/// @param dc     [B, H]: dL/dcontext; null means zero
/// @param dw     [B, S]: dL/dweights; null means zero
/// @param dpk    [S, B, A], written
/// @param dpq    [B, A], written
/// @param dv     [A], written
/// @param dkeys  [S, B, H], written
/// @param acc_dpk    [S, B, A]: added to dpk; null: none (may not alias dpk)
/// @param acc_dkeys  [S, B, H]: added to dkeys; null: none (may not alias dkeys)
template <class T>
void additive_attention_backward(const additive_attention_shape& s, const T* act, const T* v, const T* keys, const T* w,
                                 const T* mask, const T* dc, const T* dw, T* dpk, T* dpq, T* dv, T* dkeys,
                                 const T* acc_dpk = nullptr, const T* acc_dkeys = nullptr);

extern template void lstm_gates_forward<float>(const rnn_shape&, const float*, const float*, float*, float*, float*);
extern template void lstm_gates_forward<double>(const rnn_shape&, const double*, const double*, double*, double*,
                                                double*);
extern template void lstm_gates_backward<float>(const rnn_shape&, const float*, const float*, const float*,
                                                const float*, float*, float*);
extern template void lstm_gates_backward<double>(const rnn_shape&, const double*, const double*, const double*,
                                                 const double*, double*, double*);
extern template void gru_gates_forward<float>(const rnn_shape&, const float*, const float*, const float*, float*,
                                              float*);
extern template void gru_gates_forward<double>(const rnn_shape&, const double*, const double*, const double*, double*,
                                               double*);
extern template void gru_gates_backward<float>(const rnn_shape&, const float*, const float*, const float*, float*,
                                               float*, float*);
extern template void gru_gates_backward<double>(const rnn_shape&, const double*, const double*, const double*, double*,
                                                double*, double*);

extern template void additive_attention_forward<float>(const additive_attention_shape&, const float*, const float*,
                                                       const float*, const float*, const float*, float*, float*,
                                                       float*);
extern template void additive_attention_forward<double>(const additive_attention_shape&, const double*, const double*,
                                                        const double*, const double*, const double*, double*, double*,
                                                        double*);
extern template void additive_attention_backward<float>(const additive_attention_shape&, const float*, const float*,
                                                        const float*, const float*, const float*, const float*,
                                                        const float*, float*, float*, float*, float*, const float*,
                                                        const float*);
extern template void additive_attention_backward<double>(const additive_attention_shape&, const double*, const double*,
                                                         const double*, const double*, const double*, const double*,
                                                         const double*, double*, double*, double*, double*,
                                                         const double*, const double*);

}  // namespace ctgraph::kernels
