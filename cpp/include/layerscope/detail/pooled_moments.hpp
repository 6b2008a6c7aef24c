// Chan et al.'s pooled count, mean and M2 of two non-empty sets: the one merge of moments that
// MomentState, Summary and SiteSummary share. Private: each caller handles its empty cases
// and the fields of its own (extrema, sums, norms).
#pragma once

#include <cstdint>

namespace layerscope::detail {

/// Folds (`other_count`, `other_mean`, `other_m2`) into (`count`, `mean`, `m2`); both counts > 0.
inline void pool_moments(std::int64_t& count, double& mean, double& m2, std::int64_t other_count,
                         double other_mean, double other_m2) noexcept {
  // Counts as double, and weights as ratios: neither n*mean nor delta^2*na*nb can overflow.
  const double na = static_cast<double>(count);
  const double nb = static_cast<double>(other_count);
  const double n = na + nb;
  const double delta = other_mean - mean;
  mean += delta * (nb / n);
  m2 += other_m2 + delta * delta * (na / n) * nb;
  count += other_count;
}

}  // namespace layerscope::detail
