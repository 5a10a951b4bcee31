// Stage 1 on the CPU: Grad-CAM weighting, ReLU, per-sample normalisation and union of
// sources, producing only the low-resolution mask [B, h, w]; and its backward, which
// recomputes the (tiny) per-source CAMs instead of saving them.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <torch/library.h>

#include <algorithm>
#include <vector>

#include "common.h"
#include "stages.h"
#include "cpu/reduce.h"

namespace camfast {
namespace {

// Max and min that return NaN when either argument is NaN, as torch.amax, amin and maximum do
// (a comparison alone drops a NaN on one side): a NaN in a sample's activations or gradients
// makes its mask, hence its loss, NaN, as in the reference, not a silently finite number. For
// other values they are std::max and std::min, ties included (same bits).
template <typename T>
inline T nan_max(T a, T b) {
  return (b > a || b != b) ? b : a;
}
template <typename T>
inline T nan_min(T a, T b) {
  return (b < a || b != b) ? b : a;
}

// One source of one sample, recomputed identically by forward and backward so that the
// equality tests of the backward (ties at min/max, ties between sources) are exact.
template <typename scalar_t, typename acc_t>
struct SourceCam {
  std::vector<acc_t> alpha;  // [C]
  std::vector<acc_t> cam;    // [P], after ReLU
  std::vector<acc_t> n;      // [P], normalised
  acc_t mn = 0, mx = 0, R = 1;

  void compute(const scalar_t* f, const scalar_t* g, int64_t C, int64_t P, Norm norm, acc_t eps) {
    alpha.assign(C, acc_t(0));
    cam.assign(P, acc_t(0));
    n.resize(P);
    const acc_t inv_p = acc_t(1) / acc_t(P);
    for (int64_t c = 0; c < C; ++c) {
      alpha[c] = lane_sum<acc_t>(g + c * P, P) * inv_p;
    }
    acc_t* pre = cam.data();
    for (int64_t c = 0; c < C; ++c) {
      const scalar_t* fc = f + c * P;
      const acc_t a = alpha[c];
      for (int64_t p = 0; p < P; ++p) pre[p] += a * static_cast<acc_t>(fc[p]);
    }
    mn = nan_max(pre[0], acc_t(0));
    mx = mn;
    for (int64_t p = 0; p < P; ++p) {
      const acc_t v = nan_max(pre[p], acc_t(0));  // ReLU, NaN kept
      cam[p] = v;
      mn = nan_min(mn, v);
      mx = nan_max(mx, v);
    }
    if (norm == Norm::MinMax) {
      R = mx - mn + eps;
      for (int64_t p = 0; p < P; ++p) n[p] = (cam[p] - mn) / R;
    } else {
      R = mx + eps;
      for (int64_t p = 0; p < P; ++p) n[p] = cam[p] / R;
    }
  }
};

struct Shape {
  int64_t B, h, w, P;
};

Shape check_sources(const char* op, at::TensorList feats, at::TensorList grads) {
  const CamShape sh = check_cam_args(op, feats, grads);
  TORCH_CHECK_VALUE(feats[0].device().is_cpu(), op, ": feats must be on the CPU, got ", feats[0].device());
  return {sh.B, sh.h, sh.w, sh.h * sh.w};
}

std::vector<at::Tensor> contiguous(const at::TensorList ts) {
  std::vector<at::Tensor> out;
  out.reserve(ts.size());
  for (const auto& t : ts) out.push_back(t.contiguous());
  return out;
}

// Elements of feats and grads one sample reads (every source).
int64_t sample_work(const std::vector<at::Tensor>& feats, int64_t P) {
  int64_t c = 0;
  for (const auto& f : feats) c += f.size(1);
  return 2 * c * P;
}

}  // namespace

namespace cpu {

at::Tensor cam_mask(at::TensorList feats_in, at::TensorList grads_in, c10::string_view normalize, double eps) {
  const char* op = "camfast.cam_mask [cpu]";
  const Shape sh = check_sources(op, feats_in, grads_in);
  const Norm norm = parse_norm(op, normalize);
  const auto feats = contiguous(feats_in);
  const auto grads = contiguous(grads_in);
  const auto acc = acc_type(feats[0].scalar_type());
  at::Tensor u = new_output(feats[0], {sh.B, sh.h, sh.w}, acc);
  const int64_t S = feats.size();
  if (u.numel() == 0) return u;  // B, h or w is 0: nothing to compute (and no min/max of nothing)

  const int64_t grain = grain_for(sample_work(feats, sh.P));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, feats[0].scalar_type(), "camfast_cam_mask_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    acc_t* out = u.data_ptr<acc_t>();
    at::parallel_for(0, sh.B, grain, [&](int64_t b0, int64_t b1) {
      SourceCam<scalar_t, acc_t> src;
      for (int64_t b = b0; b < b1; ++b) {
        acc_t* ub = out + b * sh.P;
        for (int64_t s = 0; s < S; ++s) {
          const int64_t C = feats[s].size(1);
          src.compute(feats[s].const_data_ptr<scalar_t>() + b * C * sh.P,
                      grads[s].const_data_ptr<scalar_t>() + b * C * sh.P, C, sh.P, norm, static_cast<acc_t>(eps));
          if (s == 0) {
            std::copy(src.n.begin(), src.n.end(), ub);
          } else {
            for (int64_t p = 0; p < sh.P; ++p) ub[p] = nan_max(ub[p], src.n[p]);
          }
        }
      }
    });
  });
  return u;
}

std::tuple<std::vector<at::Tensor>, std::vector<at::Tensor>> cam_mask_backward(
    const at::Tensor& grad_mask_in, at::TensorList feats_in, at::TensorList grads_in, c10::string_view normalize,
    double eps, bool need_feats, bool need_grads) {
  const char* op = "camfast.cam_mask_backward [cpu]";
  const Shape sh = check_sources(op, feats_in, grads_in);
  check_grad_mask(op, grad_mask_in, {sh.B, sh.h, sh.w}, feats_in[0]);
  const Norm norm = parse_norm(op, normalize);
  const auto feats = contiguous(feats_in);
  const auto grads = contiguous(grads_in);
  const int64_t S = feats.size();
  const auto acc = acc_type(feats[0].scalar_type());
  const at::Tensor gu = (grad_mask_in.scalar_type() == acc ? grad_mask_in : grad_mask_in.to(acc)).contiguous();

  std::vector<at::Tensor> dfeats, dgrads;
  for (int64_t s = 0; s < S; ++s) {
    if (need_feats) dfeats.push_back(new_output_like(feats[s]));
    if (need_grads) dgrads.push_back(new_output_like(grads[s]));
  }
  // Nothing to compute without requested gradients or with an empty mask (every output is empty).
  if ((!need_feats && !need_grads) || sh.B * sh.P == 0) return {dfeats, dgrads};

  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, feats[0].scalar_type(), "camfast_cam_mask_bwd_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const acc_t* gu_ptr = gu.const_data_ptr<acc_t>();
    at::parallel_for(0, sh.B, grain_for(sample_work(feats, sh.P)), [&](int64_t b0, int64_t b1) {
      const int64_t P = sh.P;
      std::vector<SourceCam<scalar_t, acc_t>> src(S);
      std::vector<acc_t> u(P), gn(P), gpre(P);
      std::vector<int> ties(P);
      for (int64_t b = b0; b < b1; ++b) {
        for (int64_t s = 0; s < S; ++s) {
          const int64_t C = feats[s].size(1);
          src[s].compute(feats[s].const_data_ptr<scalar_t>() + b * C * P,
                         grads[s].const_data_ptr<scalar_t>() + b * C * P, C, P, norm, static_cast<acc_t>(eps));
        }
        // Union: the gradient goes to the sources equal to the max, split evenly.
        std::fill(ties.begin(), ties.end(), 0);
        std::copy(src[0].n.begin(), src[0].n.end(), u.begin());
        for (int64_t s = 1; s < S; ++s)
          for (int64_t p = 0; p < P; ++p) u[p] = nan_max(u[p], src[s].n[p]);
        for (int64_t s = 0; s < S; ++s)
          for (int64_t p = 0; p < P; ++p) ties[p] += src[s].n[p] == u[p];
        const acc_t* gub = gu_ptr + b * P;

        for (int64_t s = 0; s < S; ++s) {
          const auto& cs = src[s];
          const int64_t C = feats[s].size(1);
          // Where the union is NaN no source attains it and, as amax's gradient, every source's is NaN.
          for (int64_t p = 0; p < P; ++p)
            gn[p] = u[p] != u[p] ? u[p] : cs.n[p] == u[p] ? gub[p] / acc_t(ties[p]) : acc_t(0);
          // Normalisation: direct term plus the min/max terms, split between tied extremes.
          acc_t sum_gn_n = 0, sum_gn = 0;
          int cnt_mn = 0, cnt_mx = 0;
          for (int64_t p = 0; p < P; ++p) {
            sum_gn_n += gn[p] * cs.n[p];
            sum_gn += gn[p];
            cnt_mn += cs.cam[p] == cs.mn;
            cnt_mx += cs.cam[p] == cs.mx;
          }
          const acc_t gmx = -sum_gn_n / cs.R / acc_t(cnt_mx);
          const acc_t gmn = norm == Norm::MinMax ? (sum_gn_n - sum_gn) / cs.R / acc_t(cnt_mn) : acc_t(0);
          for (int64_t p = 0; p < P; ++p) {
            acc_t g = gn[p] / cs.R;
            if (cs.cam[p] == cs.mx) g += gmx;
            if (norm == Norm::MinMax && cs.cam[p] == cs.mn) g += gmn;
            // ReLU: cam > 0 exactly where pre > 0; a NaN passes, as in torch's relu backward.
            gpre[p] = !(cs.cam[p] <= acc_t(0)) ? g : acc_t(0);
          }
          // One pass over the channels: each feats row is read once while gpre stays in cache.
          const scalar_t* f = feats[s].const_data_ptr<scalar_t>() + b * C * P;
          scalar_t* df = need_feats ? dfeats[s].mutable_data_ptr<scalar_t>() + b * C * P : nullptr;
          scalar_t* dg = need_grads ? dgrads[s].mutable_data_ptr<scalar_t>() + b * C * P : nullptr;
          const acc_t inv_p = acc_t(1) / acc_t(P);
          for (int64_t c = 0; c < C; ++c) {
            if (need_feats) {
              const acc_t a = cs.alpha[c];
              scalar_t* dfc = df + c * P;
              for (int64_t p = 0; p < P; ++p) dfc[p] = static_cast<scalar_t>(a * gpre[p]);
            }
            if (need_grads) {
              const acc_t ga = lane_dot(gpre.data(), f + c * P, P);
              std::fill(dg + c * P, dg + (c + 1) * P, static_cast<scalar_t>(ga * inv_p));
            }
          }
        }
      }
    });
  });
  return {dfeats, dgrads};
}

}  // namespace cpu

TORCH_LIBRARY_IMPL(camfast, CPU, m) {
  m.impl("cam_mask", &cpu::cam_mask);
  m.impl("cam_mask_backward", &cpu::cam_mask_backward);
}

}  // namespace camfast
