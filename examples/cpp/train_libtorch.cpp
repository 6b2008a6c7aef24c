// A LibTorch training loop that feeds every parameter's gradient to layerscope's engine after
// each backward pass: per-layer gradient norms in one fused pass, running moments of the
// gradient's mean over the steps. The engine never links torch: it reads the gradient's memory
// in place through a BufferView.
#include <torch/torch.h>

#include <cstdio>
#include <map>
#include <string>

#include "layerscope/moments.hpp"
#include "layerscope/summary.hpp"

namespace ls = layerscope;

static ls::Summary summarize_tensor(const torch::Tensor& t) {
  const torch::Tensor c = t.detach().to(torch::kFloat32).contiguous();
  return ls::summarize(ls::contiguous_view(c.data_ptr<float>(), c.numel(), ls::DType::Float32));
}

int main() {
  torch::manual_seed(0);
  torch::nn::Sequential model(torch::nn::Linear(8, 32), torch::nn::ReLU(), torch::nn::Linear(32, 3));
  torch::optim::SGD optimizer(model->parameters(), torch::optim::SGDOptions(0.1));
  std::map<std::string, ls::Moments> grad_means;  // one running state per parameter

  for (int step = 0; step < 20; ++step) {
    const torch::Tensor x = torch::randn({16, 8});
    const torch::Tensor y = torch::randint(0, 3, {16});
    optimizer.zero_grad();
    const torch::Tensor loss = torch::nn::functional::cross_entropy(model->forward(x), y);
    loss.backward();
    for (const auto& item : model->named_parameters()) {
      const ls::Summary s = summarize_tensor(item.value().grad());
      grad_means[item.key()].update(s.mean);
      if (step % 5 == 0)
        std::printf("step %2d  %-10s grad l2 = %.6f  (torch: %.6f)\n", step, item.key().c_str(),
                    s.l2, item.value().grad().norm().item<double>());
    }
    optimizer.step();
  }
  for (const auto& [name, m] : grad_means)
    std::printf("%-10s mean gradient over %lld steps: %.3g ± %.3g\n", name.c_str(),
                static_cast<long long>(m.count()), m.mean(), m.std());
  return 0;
}
