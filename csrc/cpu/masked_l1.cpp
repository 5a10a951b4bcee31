// Stage 2 on the CPU: masked L1 between real and fake, sampling the low-resolution mask
// bilinearly row by row, never materialising the image-sized mask; and its backward,
// which writes d/dreal and d/dfake and folds d/dM back onto the low-resolution grid.
// Work is split over (sample, row) with per-row partials reduced in a fixed order, so the
// result does not depend on the number of threads.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include <cmath>
#include <vector>

#include "common.h"
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

// One image row of the backward: the requested image gradients and, for the mask
// gradient, the running sum of |fake - real| over channels. Branch-free so it vectorises.
template <bool kFake, bool kReal, bool kMask, typename scalar_t, typename acc_t>
void grad_row_impl(const scalar_t* __restrict r, const scalar_t* __restrict f, const acc_t* __restrict keep,
                   scalar_t* __restrict df, scalar_t* __restrict dr, acc_t* __restrict absdiff, int64_t W) {
  for (int64_t x = 0; x < W; ++x) {
    const acc_t d = static_cast<acc_t>(f[x]) - static_cast<acc_t>(r[x]);
    // sign(d) as a difference of comparisons (sign(0) = 0): no branch on random data.
    const acc_t v = keep[x] * (static_cast<acc_t>(d > acc_t(0)) - static_cast<acc_t>(d < acc_t(0)));
    if constexpr (kFake) df[x] = static_cast<scalar_t>(v);
    if constexpr (kReal) dr[x] = static_cast<scalar_t>(-v);
    if constexpr (kMask) absdiff[x] += std::abs(d);
  }
}

template <typename scalar_t, typename acc_t>
using GradRow = void (*)(const scalar_t*, const scalar_t*, const acc_t*, scalar_t*, scalar_t*, acc_t*, int64_t);

template <typename scalar_t, typename acc_t>
GradRow<scalar_t, acc_t> pick_grad_row(bool fake, bool real, bool mask) {
  const GradRow<scalar_t, acc_t> table[8] = {
      grad_row_impl<false, false, false, scalar_t, acc_t>, grad_row_impl<false, false, true, scalar_t, acc_t>,
      grad_row_impl<false, true, false, scalar_t, acc_t>,  grad_row_impl<false, true, true, scalar_t, acc_t>,
      grad_row_impl<true, false, false, scalar_t, acc_t>,  grad_row_impl<true, false, true, scalar_t, acc_t>,
      grad_row_impl<true, true, false, scalar_t, acc_t>,   grad_row_impl<true, true, true, scalar_t, acc_t>};
  return table[(fake ? 4 : 0) + (real ? 2 : 0) + (mask ? 1 : 0)];
}

at::Tensor masked_l1_cpu(const at::Tensor& real_in, const at::Tensor& fake_in, const at::Tensor& mask_in,
                         c10::string_view reduction) {
  const char* op = "camfast.masked_l1 [cpu]";
  const ImgShape s = check_inputs(op, real_in, fake_in, mask_in);
  const Reduction red = parse_reduction(op, reduction);
  const at::Tensor real = real_in.contiguous(), fake = fake_in.contiguous(), mask = mask_in.contiguous();
  const auto acc = acc_type(real.scalar_type());
  // Per-(sample, row) partial sums, reduced below in a fixed order.
  at::Tensor rows = at::zeros({s.B, s.H}, real.options().dtype(acc));
  at::Tensor out = new_output(real, red == Reduction::None ? at::IntArrayRef{s.B} : at::IntArrayRef{}, real.scalar_type());

  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, real.scalar_type(), "camfast_masked_l1_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const Taps<acc_t> ty(s.h, s.H), tx(s.w, s.W);
    const scalar_t* r = real.const_data_ptr<scalar_t>();
    const scalar_t* f = fake.const_data_ptr<scalar_t>();
    const acc_t* u = mask.const_data_ptr<acc_t>();
    acc_t* rows_ptr = rows.mutable_data_ptr<acc_t>();
    const int64_t HW = s.H * s.W;
    at::parallel_for(0, s.B * s.H, grain_for(2 * s.K * s.W), [&](int64_t i0, int64_t i1) {
      std::vector<acc_t> keep(s.W), diff(s.W), vrow(s.w);
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
        rows_ptr[i] = lane_dot(keep.data(), diff.data(), s.W);
      }
    });
    // Fixed-order reduction of the row partials.
    scalar_t* o = out.mutable_data_ptr<scalar_t>();
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

std::tuple<at::Tensor, at::Tensor, at::Tensor> masked_l1_backward_cpu(
    const at::Tensor& grad_out, const at::Tensor& real_in, const at::Tensor& fake_in, const at::Tensor& mask_in,
    c10::string_view reduction, bool need_real, bool need_fake, bool need_mask) {
  const char* op = "camfast.masked_l1_backward [cpu]";
  const ImgShape s = check_inputs(op, real_in, fake_in, mask_in);
  const Reduction red = parse_reduction(op, reduction);
  check_grad_out(op, grad_out, red == Reduction::None ? s.B : 1, real_in);
  const at::Tensor real = real_in.contiguous(), fake = fake_in.contiguous(), mask = mask_in.contiguous();
  const auto acc = acc_type(real.scalar_type());
  const at::Tensor g = grad_out.to(acc).contiguous();

  at::Tensor dreal = need_real ? new_output_like(real) : not_requested(real);
  at::Tensor dfake = need_fake ? new_output_like(fake) : not_requested(fake);
  at::Tensor dmask = need_mask ? new_output_like(mask) : not_requested(mask);
  if (!need_real && !need_fake && !need_mask) return {dreal, dfake, dmask};
  if (s.B * s.K * s.H * s.W == 0) {
    // Empty images: dreal/dfake have no elements and nothing reaches the mask.
    if (need_mask) dmask.zero_();
    return {dreal, dfake, dmask};
  }
  // Per-(sample, row) adjoint of the horizontal interpolation: Q[b, y, j].
  at::Tensor q = need_mask ? at::zeros({s.B, s.H, s.w}, real.options().dtype(acc)) : at::Tensor();

  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, real.scalar_type(), "camfast_masked_l1_bwd_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const Taps<acc_t> ty(s.h, s.H), tx(s.w, s.W);
    const scalar_t* r = real.const_data_ptr<scalar_t>();
    const scalar_t* f = fake.const_data_ptr<scalar_t>();
    const acc_t* u = mask.const_data_ptr<acc_t>();
    const acc_t* gp = g.const_data_ptr<acc_t>();
    scalar_t* dr = need_real ? dreal.mutable_data_ptr<scalar_t>() : nullptr;
    scalar_t* df = need_fake ? dfake.mutable_data_ptr<scalar_t>() : nullptr;
    acc_t* qp = need_mask ? q.mutable_data_ptr<acc_t>() : nullptr;
    const int64_t HW = s.H * s.W;
    const acc_t per_sample = static_cast<acc_t>(s.K * HW);
    // The flags are fixed per call: pick the loop specialised for them once.
    const auto grad_row = pick_grad_row<scalar_t, acc_t>(need_fake, need_real, need_mask);

    at::parallel_for(0, s.B * s.H, grain_for(2 * s.K * s.W), [&](int64_t i0, int64_t i1) {
      std::vector<acc_t> keep(s.W), absdiff(s.W), vrow(s.w);
      for (int64_t i = i0; i < i1; ++i) {
        const int64_t b = i / s.H, y = i % s.H;
        const acc_t ge = red == Reduction::Mean  ? gp[0] / (per_sample * static_cast<acc_t>(s.B))
                         : red == Reduction::Sum ? gp[0]
                                                 : gp[b] / per_sample;
        mask_row(u + b * s.h * s.w, s.w, ty, y, tx, keep.data(), s.W, vrow.data());
        for (int64_t x = 0; x < s.W; ++x) keep[x] = (acc_t(1) - keep[x]) * ge;
        std::fill(absdiff.begin(), absdiff.end(), acc_t(0));
        for (int64_t k = 0; k < s.K; ++k) {
          const int64_t off = (b * s.K + k) * HW + y * s.W;
          grad_row(r + off, f + off, keep.data(), df ? df + off : nullptr, dr ? dr + off : nullptr,
                   absdiff.data(), s.W);
        }
        if (need_mask) {
          acc_t* qrow = qp + i * s.w;
          for (int64_t x = 0; x < s.W; ++x) absdiff[x] *= -ge;  // now dM of this row
          fold_taps(absdiff.data(), tx.i0.data(), tx.l0.data(), s.W, qrow);
          fold_taps(absdiff.data(), tx.i1.data(), tx.l1.data(), s.W, qrow);
        }
      }
    });

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

}  // namespace

TORCH_LIBRARY_IMPL(camfast, CPU, m) {
  m.impl("masked_l1", &masked_l1_cpu);
  m.impl("masked_l1_backward", &masked_l1_backward_cpu);
}

}  // namespace camfast
