// Stage 2 on the CPU: masked L1 between real and fake, sampling the low-resolution mask
// bilinearly row by row, never materialising the image-sized mask; and its backward,
// which writes d/dreal and d/dfake and folds d/dM back onto the low-resolution grid.
// Work is split over (sample, row) with per-row partials reduced in a fixed order, so the
// result does not depend on the number of threads.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <torch/library.h>

#include <cmath>
#include <vector>

#include "common.h"
#include "stages.h"
#include "cpu/bilinear.h"
#include "cpu/reduce.h"

namespace camfast {
namespace {

struct ImgShape {
  int64_t B, K, H, W, h, w;
};

ImgShape check_inputs(const char* op, const at::Tensor& real, const at::Tensor& fake, const at::Tensor& mask) {
  const L1Shape s = check_l1_args(op, real, fake, mask);
  TORCH_CHECK_VALUE(real.device().is_cpu(), op, ": real must be on the CPU, got ", real.device());
  return {s.B, s.K, s.H, s.W, s.h, s.w};
}

// The forward's rows [i0, i1), i = b * H + y: each row's sum of (1 - M) |real - fake| over
// channels and x, into rows[i].
template <typename scalar_t, typename acc_t>
CAMFAST_INLINE void l1_rows(const ImgShape& s, const scalar_t* r, const scalar_t* f, const acc_t* u,
                            const Taps<acc_t>& ty, const Taps<acc_t>& tx, acc_t* rows, int64_t i0, int64_t i1) {
  std::vector<acc_t> keep(s.W), diff(s.W), vrow(s.w);
  const int64_t HW = s.H * s.W;
  for (int64_t i = i0; i < i1; ++i) {
    const int64_t b = i / s.H, y = i % s.H;
    mask_row(u + b * s.h * s.w, s.w, ty, y, tx, keep.data(), s.W, vrow.data());
    std::fill(diff.begin(), diff.end(), acc_t(0));
    for (int64_t k = 0; k < s.K; ++k) {
      const int64_t off = (b * s.K + k) * HW + y * s.W;
      for (int64_t x = 0; x < s.W; ++x)
        diff[x] += std::abs(static_cast<acc_t>(r[off + x]) - static_cast<acc_t>(f[off + x]));
    }
    for (int64_t x = 0; x < s.W; ++x) keep[x] = acc_t(1) - keep[x];
    rows[i] = lane_dot(keep.data(), diff.data(), s.W);
  }
}

template <typename scalar_t, typename acc_t>
struct GradArgs {
  ImgShape s;
  const scalar_t *r, *f;
  const acc_t* u;
  const Taps<acc_t>&ty, &tx;
  const acc_t* g;  // grad_out: one value, or B for 'none'
  Reduction red;
  scalar_t *dr, *df;  // null where not requested
  acc_t* q;           // [B, H, w] adjoint of the horizontal interpolation; null without d/dmask
};

// The backward's rows [i0, i1): the requested image gradients and, for the mask gradient, Q of
// each row. The flags are template arguments so that each combination is its own branch-free loop.
template <bool kFake, bool kReal, bool kMask, typename scalar_t, typename acc_t>
CAMFAST_INLINE void l1_grad_rows(const GradArgs<scalar_t, acc_t>& a, int64_t i0, int64_t i1) {
  const ImgShape& s = a.s;
  std::vector<acc_t> keep(s.W), absdiff(s.W), vrow(s.w);
  const int64_t HW = s.H * s.W;
  const acc_t per_sample = static_cast<acc_t>(s.K * HW);
  for (int64_t i = i0; i < i1; ++i) {
    const int64_t b = i / s.H, y = i % s.H;
    const acc_t ge = a.red == Reduction::Mean  ? a.g[0] / (per_sample * static_cast<acc_t>(s.B))
                     : a.red == Reduction::Sum ? a.g[0]
                                               : a.g[b] / per_sample;
    mask_row(a.u + b * s.h * s.w, s.w, a.ty, y, a.tx, keep.data(), s.W, vrow.data());
    for (int64_t x = 0; x < s.W; ++x) keep[x] = (acc_t(1) - keep[x]) * ge;
    if constexpr (kMask) std::fill(absdiff.begin(), absdiff.end(), acc_t(0));
    for (int64_t k = 0; k < s.K; ++k) {
      const int64_t off = (b * s.K + k) * HW + y * s.W;
      const scalar_t* __restrict r = a.r + off;
      const scalar_t* __restrict f = a.f + off;
      scalar_t* __restrict df = kFake ? a.df + off : nullptr;
      scalar_t* __restrict dr = kReal ? a.dr + off : nullptr;
      const acc_t* __restrict kp = keep.data();
      acc_t* __restrict ad = absdiff.data();
      for (int64_t x = 0; x < s.W; ++x) {
        const acc_t d = static_cast<acc_t>(f[x]) - static_cast<acc_t>(r[x]);
        // sign(d) as a difference of comparisons (sign(0) = 0): no branch on random data.
        const acc_t v = kp[x] * (static_cast<acc_t>(d > acc_t(0)) - static_cast<acc_t>(d < acc_t(0)));
        if constexpr (kFake) df[x] = static_cast<scalar_t>(v);
        if constexpr (kReal) dr[x] = static_cast<scalar_t>(-v);
        if constexpr (kMask) ad[x] += std::abs(d);
      }
    }
    if constexpr (kMask) {
      for (int64_t x = 0; x < s.W; ++x) absdiff[x] *= -ge;  // now dM of this row
      fold_row(absdiff.data(), a.tx, a.q + i * s.w);
    }
  }
}

// The two compiled copies of each row loop (csrc/cpu/reduce.h).
template <typename scalar_t, typename acc_t>
void l1_rows_base(const ImgShape& s, const scalar_t* r, const scalar_t* f, const acc_t* u, const Taps<acc_t>& ty,
                  const Taps<acc_t>& tx, acc_t* rows, int64_t i0, int64_t i1) {
  l1_rows(s, r, f, u, ty, tx, rows, i0, i1);
}
template <typename scalar_t, typename acc_t>
CAMFAST_AVX2 void l1_rows_avx2(const ImgShape& s, const scalar_t* r, const scalar_t* f, const acc_t* u,
                               const Taps<acc_t>& ty, const Taps<acc_t>& tx, acc_t* rows, int64_t i0, int64_t i1) {
  l1_rows(s, r, f, u, ty, tx, rows, i0, i1);
}
template <bool kFake, bool kReal, bool kMask, typename scalar_t, typename acc_t>
void l1_grad_rows_base(const GradArgs<scalar_t, acc_t>& a, int64_t i0, int64_t i1) {
  l1_grad_rows<kFake, kReal, kMask>(a, i0, i1);
}
template <bool kFake, bool kReal, bool kMask, typename scalar_t, typename acc_t>
CAMFAST_AVX2 void l1_grad_rows_avx2(const GradArgs<scalar_t, acc_t>& a, int64_t i0, int64_t i1) {
  l1_grad_rows<kFake, kReal, kMask>(a, i0, i1);
}

template <typename scalar_t, typename acc_t>
using GradRows = void (*)(const GradArgs<scalar_t, acc_t>&, int64_t, int64_t);

template <bool kFake, bool kReal, bool kMask, typename scalar_t, typename acc_t>
GradRows<scalar_t, acc_t> grad_rows_for_isa() {
  return use_avx2() ? l1_grad_rows_avx2<kFake, kReal, kMask, scalar_t, acc_t>
                    : l1_grad_rows_base<kFake, kReal, kMask, scalar_t, acc_t>;
}

template <typename scalar_t, typename acc_t>
GradRows<scalar_t, acc_t> pick_grad_rows(bool fake, bool real, bool mask) {
  using S = scalar_t;
  using A = acc_t;
  const GradRows<S, A> table[8] = {
      grad_rows_for_isa<false, false, false, S, A>(), grad_rows_for_isa<false, false, true, S, A>(),
      grad_rows_for_isa<false, true, false, S, A>(),  grad_rows_for_isa<false, true, true, S, A>(),
      grad_rows_for_isa<true, false, false, S, A>(),  grad_rows_for_isa<true, false, true, S, A>(),
      grad_rows_for_isa<true, true, false, S, A>(),   grad_rows_for_isa<true, true, true, S, A>()};
  return table[(fake ? 4 : 0) + (real ? 2 : 0) + (mask ? 1 : 0)];
}

}  // namespace

namespace cpu {

at::Tensor masked_l1(const at::Tensor& real_in, const at::Tensor& fake_in, const at::Tensor& mask_in,
                     c10::string_view reduction) {
  const char* op = "camfast.masked_l1 [cpu]";
  const ImgShape s = check_inputs(op, real_in, fake_in, mask_in);
  const Reduction red = parse_reduction(op, reduction);
  const at::Tensor real = real_in.contiguous(), fake = fake_in.contiguous(), mask = mask_in.contiguous();
  at::Tensor out = new_output(real, red == Reduction::None ? at::IntArrayRef{s.B} : at::IntArrayRef{}, real.scalar_type());

  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, real.scalar_type(), "camfast_masked_l1_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const Taps<acc_t> ty(s.h, s.H), tx(s.w, s.W);
    const scalar_t* r = real.const_data_ptr<scalar_t>();
    const scalar_t* f = fake.const_data_ptr<scalar_t>();
    const acc_t* u = mask.const_data_ptr<acc_t>();
    // Per-(sample, row) partial sums, reduced below in a fixed order. Scratch memory comes from
    // std::vector, not at::zeros: a small call would pay more for the dispatcher than for the sums.
    std::vector<acc_t> rows(s.B * s.H);
    acc_t* rows_ptr = rows.data();
    const auto rows_fn = use_avx2() ? l1_rows_avx2<scalar_t, acc_t> : l1_rows_base<scalar_t, acc_t>;
    at::parallel_for(0, s.B * s.H, grain_for(2 * s.K * s.W),
                     [&](int64_t i0, int64_t i1) { rows_fn(s, r, f, u, ty, tx, rows_ptr, i0, i1); });
    // Fixed-order reduction of the row partials.
    scalar_t* o = out.mutable_data_ptr<scalar_t>();
    const int64_t HW = s.H * s.W;
    const acc_t per_sample = static_cast<acc_t>(s.K * HW);
    acc_t all = 0;
    for (int64_t b = 0; b < s.B; ++b) {
      acc_t sb = 0;
      for (int64_t y = 0; y < s.H; ++y) sb += rows_ptr[b * s.H + y];
        // A mean over no elements is 0 (docs/kernels.md: empty inputs), not 0/0.
      if (red == Reduction::None) o[b] = static_cast<scalar_t>(s.K * HW > 0 ? sb / per_sample : acc_t(0));
      all += sb;
    }
    if (red == Reduction::Mean)
      o[0] = static_cast<scalar_t>(s.B * s.K * HW > 0 ? all / (per_sample * static_cast<acc_t>(s.B)) : acc_t(0));
    if (red == Reduction::Sum) o[0] = static_cast<scalar_t>(all);
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> masked_l1_backward(
    const at::Tensor& grad_out, const at::Tensor& real_in, const at::Tensor& fake_in, const at::Tensor& mask_in,
    c10::string_view reduction, bool need_real, bool need_fake, bool need_mask) {
  const char* op = "camfast.masked_l1_backward [cpu]";
  const ImgShape s = check_inputs(op, real_in, fake_in, mask_in);
  const Reduction red = parse_reduction(op, reduction);
  check_grad_out(op, grad_out, red == Reduction::None ? s.B : 1, real_in);
  const at::Tensor real = real_in.contiguous(), fake = fake_in.contiguous(), mask = mask_in.contiguous();
  const auto acc = acc_type(real.scalar_type());
  const at::Tensor g = (grad_out.scalar_type() == acc ? grad_out : grad_out.to(acc)).contiguous();

  at::Tensor dreal = need_real ? new_output_like(real) : not_requested(real);
  at::Tensor dfake = need_fake ? new_output_like(fake) : not_requested(fake);
  at::Tensor dmask = need_mask ? new_output_like(mask) : not_requested(mask);
  if (!need_real && !need_fake && !need_mask) return {dreal, dfake, dmask};
  if (s.B * s.K * s.H * s.W == 0) {
    // Empty images: dreal/dfake have no elements and nothing reaches the mask.
    if (need_mask) dmask.zero_();
    return {dreal, dfake, dmask};
  }

  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, real.scalar_type(), "camfast_masked_l1_bwd_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    // Per-(sample, row) adjoint of the horizontal interpolation: Q[b, y, j] (scratch, zeroed).
    std::vector<acc_t> q(need_mask ? s.B * s.H * s.w : 0);
    const Taps<acc_t> ty(s.h, s.H), tx(s.w, s.W);
    const scalar_t* r = real.const_data_ptr<scalar_t>();
    const scalar_t* f = fake.const_data_ptr<scalar_t>();
    const acc_t* u = mask.const_data_ptr<acc_t>();
    const acc_t* gp = g.const_data_ptr<acc_t>();
    scalar_t* dr = need_real ? dreal.mutable_data_ptr<scalar_t>() : nullptr;
    scalar_t* df = need_fake ? dfake.mutable_data_ptr<scalar_t>() : nullptr;
    acc_t* qp = need_mask ? q.data() : nullptr;
    const GradArgs<scalar_t, acc_t> args{s, r, f, u, ty, tx, gp, red, dr, df, qp};
    const auto grad_rows = pick_grad_rows<scalar_t, acc_t>(need_fake, need_real, need_mask);
    at::parallel_for(0, s.B * s.H, grain_for(2 * s.K * s.W),
                     [&](int64_t i0, int64_t i1) { grad_rows(args, i0, i1); });

    if (need_mask) {
      // Vertical adjoint, in row order for every (b, i): deterministic.
      acc_t* dm = dmask.mutable_data_ptr<acc_t>();
      at::parallel_for(0, s.B, grain_for(s.H * s.w), [&](int64_t b0, int64_t b1) {
        for (int64_t b = b0; b < b1; ++b) {
          acc_t* out = dm + b * s.h * s.w;
          std::fill(out, out + s.h * s.w, acc_t(0));
          for (int64_t y = 0; y < s.H; ++y) {
            const acc_t* qrow = qp + (b * s.H + y) * s.w;
            acc_t* o0 = out + ty.i0[y] * s.w;
            acc_t* o1 = out + ty.i1[y] * s.w;
            for (int64_t j = 0; j < s.w; ++j) o0[j] += ty.l0[y] * qrow[j];
            for (int64_t j = 0; j < s.w; ++j) o1[j] += ty.l1[y] * qrow[j];
          }
        }
      });
    }
  });
  return {dreal, dfake, dmask};
}

}  // namespace cpu

TORCH_LIBRARY_IMPL(camfast, CPU, m) {
  m.impl("masked_l1", &cpu::masked_l1);
  m.impl("masked_l1_backward", &cpu::masked_l1_backward);
}

}  // namespace camfast
