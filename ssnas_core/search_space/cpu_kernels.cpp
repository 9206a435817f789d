// CPU kernels for the search's training step on channels-last float32 tensors (see cpu_kernels.py for why).
//
// * dw_weight_grad: the weight gradient of a depthwise conv (any kernel, stride, padding, dilation).
// * bn_forward / bn_backward: training batch norm with an optional per-channel weight and bias, in two passes
//   over memory each (statistics, then the output).
// * mix_forward / mix_backward: the search's mixing of an edge group's outputs, one pass each.
//
// Tensors are (N, C, H, W) in channels-last memory, so each pixel's C channels are contiguous and the inner loops
// run over channels. Sums are taken in float over short runs (a row of pixels, 32 rows of a (rows, C) view), then
// added in double: per-thread partial sums are added in thread order, so a result depends on the thread count only.
#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <vector>

namespace {

constexpr int64_t V = 16;  // channels per register block

void check(const torch::Tensor& t, const char* name) {
  TORCH_CHECK(t.device().is_cpu() && t.scalar_type() == torch::kFloat32 && t.dim() == 4 &&
                  t.is_contiguous(at::MemoryFormat::ChannelsLast),
              name, ": expected a channels-last float32 CPU tensor of 4 dimensions");
}

// sums over rows of an (M, C) row-major view: t1[c] = sum_m u(m, c), t2[c] = sum_m v(m, c)
template <typename F>
void channel_sums(int64_t M, int64_t C, const F& f, std::vector<double>& t1, std::vector<double>& t2) {
  constexpr int64_t R = 32;
  const int nt = at::get_num_threads();
  std::vector<double> s1((size_t)nt * C, 0.0), s2((size_t)nt * C, 0.0);
  at::parallel_for(0, (M + R - 1) / R, 1, [&](int64_t b, int64_t e) {
    const int tid = at::get_thread_num();
    double* a1 = s1.data() + (size_t)tid * C;
    double* a2 = s2.data() + (size_t)tid * C;
    for (int64_t blk = b; blk < e; ++blk) {
      const int64_t m0 = blk * R, m1 = std::min(M, m0 + R);
      int64_t cb = 0;
      for (; cb + V <= C; cb += V) {
        float p[V] = {0}, q[V] = {0};
        for (int64_t m = m0; m < m1; ++m) {
#pragma omp simd
          for (int64_t l = 0; l < V; ++l) {
            float u, v;
            f(m, cb + l, u, v);
            p[l] += u;
            q[l] += v;
          }
        }
        for (int64_t l = 0; l < V; ++l) {
          a1[cb + l] += p[l];
          a2[cb + l] += q[l];
        }
      }
      for (; cb < C; ++cb) {
        float p = 0, q = 0;
        for (int64_t m = m0; m < m1; ++m) {
          float u, v;
          f(m, cb, u, v);
          p += u;
          q += v;
        }
        a1[cb] += p;
        a2[cb] += q;
      }
    }
  });
  t1.assign(C, 0.0);
  t2.assign(C, 0.0);
  for (int t = 0; t < nt; ++t)
    for (int64_t c = 0; c < C; ++c) {
      t1[c] += s1[(size_t)t * C + c];
      t2[c] += s2[(size_t)t * C + c];
    }
}

// out[m, c] = a[m, c] * k1[c] + (b ? b[m, c] * k2[c] : 0) + k3[c]
void affine_pass(int64_t M, int64_t C, const float* a, const float* b, float* out, const float* k1, const float* k2,
                 const float* k3) {
  at::parallel_for(0, M, 256, [&](int64_t begin, int64_t end) {
    for (int64_t m = begin; m < end; ++m) {
      const float* ar = a + m * C;
      float* o = out + m * C;
      if (b) {
        const float* br = b + m * C;
#pragma omp simd
        for (int64_t c = 0; c < C; ++c) o[c] = ar[c] * k1[c] + br[c] * k2[c] + k3[c];
      } else {
#pragma omp simd
        for (int64_t c = 0; c < C; ++c) o[c] = ar[c] * k1[c] + k3[c];
      }
    }
  });
}

}  // namespace

// (C, 1, K, K) weight gradient of a depthwise conv of x (N, C, H, W) giving grad (N, C, Ho, Wo)
torch::Tensor dw_weight_grad(const torch::Tensor& x, const torch::Tensor& grad, int64_t K, int64_t stride, int64_t pad,
                             int64_t dil) {
  check(x, "dw_weight_grad x");
  check(grad, "dw_weight_grad grad");
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3), Ho = grad.size(2), Wo = grad.size(3);
  TORCH_CHECK(grad.size(0) == N && grad.size(1) == C, "dw_weight_grad: x and grad disagree");
  const float* xp = x.data_ptr<float>();
  const float* gp = grad.data_ptr<float>();
  const int64_t KKC = K * K * C;
  const int nt = at::get_num_threads();
  std::vector<double> acc((size_t)nt * KKC, 0.0);
  at::parallel_for(0, N * Ho, 1, [&](int64_t begin, int64_t end) {
    double* a = acc.data() + (size_t)at::get_thread_num() * KKC;
    std::vector<float> part(KKC, 0.f);
    for (int64_t r = begin; r < end; ++r) {
      const int64_t n = r / Ho, ho = r % Ho;
      const float* grow = gp + (n * Ho + ho) * Wo * C;
      for (int64_t i = 0; i < K; ++i) {
        const int64_t hi = ho * stride - pad + i * dil;
        if (hi < 0 || hi >= H) continue;
        const float* xrow = xp + (n * H + hi) * W * C;
        for (int64_t j = 0; j < K; ++j) {
          const int64_t off = j * dil - pad;  // input column of output column wo: wo * stride + off
          const int64_t lo = off >= 0 ? 0 : (-off + stride - 1) / stride;
          const int64_t hi_w = W - 1 - off < 0 ? 0 : std::min(Wo, (W - 1 - off) / stride + 1);
          float* pr = part.data() + (i * K + j) * C;
          int64_t cb = 0;
          for (; cb + V <= C; cb += V) {
            float s[V] = {0};
            for (int64_t wo = lo; wo < hi_w; ++wo) {
              const float* xv = xrow + (wo * stride + off) * C + cb;
              const float* gv = grow + wo * C + cb;
#pragma omp simd
              for (int64_t l = 0; l < V; ++l) s[l] += xv[l] * gv[l];
            }
#pragma omp simd
            for (int64_t l = 0; l < V; ++l) pr[cb + l] += s[l];
          }
          for (; cb < C; ++cb) {
            float s = 0;
            for (int64_t wo = lo; wo < hi_w; ++wo) s += xrow[(wo * stride + off) * C + cb] * grow[wo * C + cb];
            pr[cb] += s;
          }
        }
      }
      for (int64_t q = 0; q < KKC; ++q) {  // one output row's sums into double
        a[q] += part[q];
        part[q] = 0.f;
      }
    }
  });
  auto out = torch::empty({K, K, C}, x.options());
  float* o = out.data_ptr<float>();
  for (int64_t q = 0; q < KKC; ++q) {
    double s = 0;
    for (int t = 0; t < nt; ++t) s += acc[(size_t)t * KKC + q];
    o[q] = (float)s;
  }
  return out.permute({2, 0, 1}).unsqueeze(1).contiguous();
}

// Training batch norm: (y, mean, invstd, unbiased var). y = (x - mean) * invstd * weight + bias.
std::tuple<torch::Tensor, torch::Tensor, torch::Tensor, torch::Tensor> bn_forward(
    const torch::Tensor& x, const c10::optional<torch::Tensor>& weight, const c10::optional<torch::Tensor>& bias,
    double eps) {
  check(x, "bn_forward x");
  const int64_t C = x.size(1), M = x.numel() / C;
  TORCH_CHECK(M > 0, "bn_forward: empty input");
  const float* xp = x.data_ptr<float>();
  // sums of (x - first pixel): E[d^2] - E[d]^2 is then well conditioned whatever the mean
  std::vector<float> shift(xp, xp + C);
  const float* sh = shift.data();
  std::vector<double> t1, t2;
  channel_sums(M, C, [&](int64_t m, int64_t c, float& u, float& v) {
    const float d = xp[m * C + c] - sh[c];
    u = d;
    v = d * d;
  }, t1, t2);
  auto mean = torch::empty({C}, x.options()), invstd = torch::empty({C}, x.options());
  auto var_unbiased = torch::empty({C}, x.options());
  const float* w = weight.has_value() ? weight->data_ptr<float>() : nullptr;
  const float* b = bias.has_value() ? bias->data_ptr<float>() : nullptr;
  std::vector<float> k1(C), k3(C);
  for (int64_t c = 0; c < C; ++c) {
    const double md = t1[c] / M, var = std::max(t2[c] / M - md * md, 0.0), mu = md + sh[c];
    const double is = 1.0 / std::sqrt(var + eps), s = w ? w[c] : 1.0;
    mean.data_ptr<float>()[c] = (float)mu;
    invstd.data_ptr<float>()[c] = (float)is;
    var_unbiased.data_ptr<float>()[c] = (float)(M > 1 ? var * M / (M - 1) : var);
    k1[c] = (float)(is * s);
    k3[c] = (float)(-mu * is * s + (b ? b[c] : 0.0));
  }
  auto y = torch::empty_like(x, at::MemoryFormat::ChannelsLast);
  affine_pass(M, C, xp, nullptr, y.data_ptr<float>(), k1.data(), nullptr, k3.data());
  return {y, mean, invstd, var_unbiased};
}

// Its backward: (grad_x, grad_weight = sum(grad * xhat), grad_bias = sum(grad)).
std::tuple<torch::Tensor, torch::Tensor, torch::Tensor> bn_backward(
    const torch::Tensor& grad, const torch::Tensor& x, const torch::Tensor& mean, const torch::Tensor& invstd,
    const c10::optional<torch::Tensor>& weight) {
  check(x, "bn_backward x");
  check(grad, "bn_backward grad");
  const int64_t C = x.size(1), M = x.numel() / C;
  const float* xp = x.data_ptr<float>();
  const float* gp = grad.data_ptr<float>();
  const float* mu = mean.data_ptr<float>();
  const float* is = invstd.data_ptr<float>();
  std::vector<double> t1, t2;
  channel_sums(M, C, [&](int64_t m, int64_t c, float& u, float& v) {
    const float g = gp[m * C + c];
    u = g;
    v = g * (xp[m * C + c] - mu[c]);
  }, t1, t2);
  const float* w = weight.has_value() ? weight->data_ptr<float>() : nullptr;
  auto grad_weight = torch::empty({C}, x.options()), grad_bias = torch::empty({C}, x.options());
  std::vector<float> k1(C), k2(C), k3(C);
  for (int64_t c = 0; c < C; ++c) {
    // grad_x = A * (g - sum(g) / M - xhat * sum(g * xhat) / M), xhat = (x - mean) * invstd, A = weight * invstd
    const double i = is[c], s = w ? w[c] : 1.0, gxhat = t2[c] * i, A = s * i;
    grad_weight.data_ptr<float>()[c] = (float)gxhat;
    grad_bias.data_ptr<float>()[c] = (float)t1[c];
    k1[c] = (float)A;
    k2[c] = (float)(-A * i * gxhat / M);
    k3[c] = (float)(-A * t1[c] / M + A * i * gxhat / M * mu[c]);
  }
  auto grad_x = torch::empty_like(x, at::MemoryFormat::ChannelsLast);
  affine_pass(M, C, gp, xp, grad_x.data_ptr<float>(), k1.data(), k2.data(), k3.data());
  return {grad_x, grad_weight, grad_bias};
}

// The search's mixing of one edge group (edge_group._Mix): k edges of C channels, n per-edge outputs y_p
// (N, k*C, H, W) already weighted, m outputs shared by the k edges s_q (N, C, H, W) with weights w (m, k):
// out[:, e*C + c] = sum_p y_p[:, e*C + c] + sum_q w[q, e] * s_q[:, c], in one pass (N, k*C, H, W).
torch::Tensor mix_forward(at::TensorList scaled, at::TensorList shared, const torch::Tensor& weights, int64_t k) {
  TORCH_CHECK(!scaled.empty() || !shared.empty(), "mix_forward: nothing to mix");
  for (const auto& t : scaled) check(t, "mix_forward scaled");
  for (const auto& t : shared) check(t, "mix_forward shared");
  const torch::Tensor& like = scaled.empty() ? shared[0] : scaled[0];
  const int64_t N = like.size(0), H = like.size(2), W = like.size(3);
  const int64_t C = scaled.empty() ? shared[0].size(1) : scaled[0].size(1) / k, KC = k * C, M = N * H * W;
  const int64_t n = scaled.size(), m = shared.size();
  auto w = weights.to(torch::kFloat32).contiguous();
  TORCH_CHECK(w.numel() == m * k, "mix_forward: weights must be (m, k)");
  std::vector<const float*> ys(n), ss(m);
  for (int64_t p = 0; p < n; ++p) ys[p] = scaled[p].data_ptr<float>();
  for (int64_t q = 0; q < m; ++q) ss[q] = shared[q].data_ptr<float>();
  const float* wp = w.data_ptr<float>();
  auto out = torch::empty({N, KC, H, W}, like.options().memory_format(at::MemoryFormat::ChannelsLast));
  float* op = out.data_ptr<float>();
  at::parallel_for(0, M, 64, [&](int64_t begin, int64_t end) {
    for (int64_t px = begin; px < end; ++px) {
      for (int64_t e = 0; e < k; ++e) {
        float* o = op + px * KC + e * C;
        const int64_t base = px * KC + e * C;
        if (n > 0) {
          const float* y0 = ys[0] + base;
#pragma omp simd
          for (int64_t c = 0; c < C; ++c) o[c] = y0[c];
        } else {
#pragma omp simd
          for (int64_t c = 0; c < C; ++c) o[c] = 0.f;
        }
        for (int64_t p = 1; p < n; ++p) {
          const float* y = ys[p] + base;
#pragma omp simd
          for (int64_t c = 0; c < C; ++c) o[c] += y[c];
        }
        for (int64_t q = 0; q < m; ++q) {
          const float* sq = ss[q] + px * C;
          const float wq = wp[q * k + e];
#pragma omp simd
          for (int64_t c = 0; c < C; ++c) o[c] += wq * sq[c];
        }
      }
    }
  });
  return out;
}

// Its backward from the k edges' gradients g_e (N, C, H, W): (the gradients side by side (N, k*C, H, W), the
// shared outputs' gradients sum_e w[q, e] * g_e, the weights' gradients (m, k) = sum(g_e * s_q)), in one pass.
std::tuple<torch::Tensor, std::vector<torch::Tensor>, torch::Tensor> mix_backward(
    at::TensorList grads, at::TensorList shared, const torch::Tensor& weights, bool need_shared, bool need_weights) {
  const int64_t k = grads.size(), m = shared.size();
  for (const auto& t : grads) check(t, "mix_backward grad");
  for (const auto& t : shared) check(t, "mix_backward shared");
  const int64_t N = grads[0].size(0), C = grads[0].size(1), H = grads[0].size(2), W = grads[0].size(3);
  const int64_t KC = k * C, M = N * H * W;
  auto w = weights.to(torch::kFloat32).contiguous();
  const float* wp = w.data_ptr<float>();
  std::vector<const float*> gs(k), ss(m);
  for (int64_t e = 0; e < k; ++e) gs[e] = grads[e].data_ptr<float>();
  for (int64_t q = 0; q < m; ++q) ss[q] = shared[q].data_ptr<float>();
  auto flat = torch::empty({N, KC, H, W}, grads[0].options().memory_format(at::MemoryFormat::ChannelsLast));
  float* fp = flat.data_ptr<float>();
  std::vector<torch::Tensor> dys;
  std::vector<float*> dp(m, nullptr);
  if (need_shared)
    for (int64_t q = 0; q < m; ++q) {
      dys.push_back(torch::empty_like(shared[q], at::MemoryFormat::ChannelsLast));
      dp[q] = dys.back().data_ptr<float>();
    }
  const int nt = at::get_num_threads();
  const int64_t MK = m * k;
  std::vector<double> acc((size_t)nt * MK, 0.0);
  constexpr int64_t R = 32;  // pixels per block: the weights' sums in float over a block, then in double
  at::parallel_for(0, (M + R - 1) / R, 1, [&](int64_t b, int64_t e_) {
    double* a = acc.data() + (size_t)at::get_thread_num() * MK;
    std::vector<float> part(MK);
    for (int64_t blk = b; blk < e_; ++blk) {
      std::fill(part.begin(), part.end(), 0.f);
      const int64_t p0 = blk * R, p1 = std::min(M, p0 + R);
      for (int64_t px = p0; px < p1; ++px) {
        for (int64_t e = 0; e < k; ++e) {
          const float* g = gs[e] + px * C;
          float* f = fp + px * KC + e * C;
#pragma omp simd
          for (int64_t c = 0; c < C; ++c) f[c] = g[c];
          if (need_weights)
            for (int64_t q = 0; q < m; ++q) {
              const float* sq = ss[q] + px * C;
              float s = 0.f;
#pragma omp simd reduction(+ : s)
              for (int64_t c = 0; c < C; ++c) s += g[c] * sq[c];
              part[q * k + e] += s;
            }
        }
        if (need_shared)
          for (int64_t q = 0; q < m; ++q) {
            float* d = dp[q] + px * C;
            const float w0 = wp[q * k];
            const float* g0 = gs[0] + px * C;
#pragma omp simd
            for (int64_t c = 0; c < C; ++c) d[c] = w0 * g0[c];
            for (int64_t e = 1; e < k; ++e) {
              const float we = wp[q * k + e];
              const float* g = gs[e] + px * C;
#pragma omp simd
              for (int64_t c = 0; c < C; ++c) d[c] += we * g[c];
            }
          }
      }
      for (int64_t i = 0; i < MK; ++i) a[i] += part[i];
    }
  });
  auto dw = torch::zeros({m, k}, grads[0].options());
  if (need_weights) {
    float* o = dw.data_ptr<float>();
    for (int64_t i = 0; i < MK; ++i) {
      double s = 0;
      for (int t = 0; t < nt; ++t) s += acc[(size_t)t * MK + i];
      o[i] = (float)s;
    }
  }
  return {flat, dys, dw};
}

// Registered as torch operators (torch.ops.ssnas.*): the dispatcher sees, counts and times them like aten's.
TORCH_LIBRARY(ssnas, m) {
  m.def("dw_weight_grad(Tensor x, Tensor grad, int kernel, int stride, int padding, int dilation) -> Tensor");
  m.def("bn_forward(Tensor x, Tensor? weight, Tensor? bias, float eps) -> (Tensor, Tensor, Tensor, Tensor)");
  m.def("bn_backward(Tensor grad, Tensor x, Tensor mean, Tensor invstd, Tensor? weight) -> (Tensor, Tensor, Tensor)");
  m.def("mix_forward(Tensor[] scaled, Tensor[] shared, Tensor weights, int k) -> Tensor");
  m.def("mix_backward(Tensor[] grads, Tensor[] shared, Tensor weights, bool need_shared, bool need_weights) -> "
        "(Tensor, Tensor[], Tensor)");
}

TORCH_LIBRARY_IMPL(ssnas, CPU, m) {
  m.impl("dw_weight_grad", &dw_weight_grad);
  m.impl("bn_forward", &bn_forward);
  m.impl("bn_backward", &bn_backward);
  m.impl("mix_forward", &mix_forward);
  m.impl("mix_backward", &mix_backward);
}
