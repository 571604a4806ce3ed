//! Fleet baselines: how a node's measured figures (NCCL bus bandwidth, stress throughput) compare with the
//! other nodes of its SKU in the same hall. A node that passes every absolute floor can still be several percent
//! slower than its neighbours; the hall median is the yardstick for that.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Metric: the node's latest NCCL all_reduce bus bandwidth, GB/s.
pub const METRIC_NCCL_BUSBW: &str = "nccl_busbw_gbps";

/// Metric: the node's mean per-GPU throughput in its burn-in stress tool (the tool's unit, e.g. Gflop/s).
pub const METRIC_STRESS_THROUGHPUT: &str = "stress_throughput";

/// Fewest nodes a baseline needs before a node is judged against it.
pub const MIN_BASELINE_NODES: i64 = 8;

/// Distribution of a figure over nodes (nearest-rank percentiles).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Distribution {
    /// Nodes with a figure.
    pub nodes: usize,
    /// Lowest.
    pub min: f64,
    /// 10th percentile.
    pub p10: f64,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// Highest.
    pub max: f64,
    /// Mean.
    pub mean: f64,
}

impl Distribution {
    /// The distribution of the finite values among `values`; `None` when there are none.
    pub fn of(mut values: Vec<f64>) -> Option<Self> {
        values.retain(|v| v.is_finite());
        if values.is_empty() {
            return None;
        }
        values.sort_by(f64::total_cmp);
        let n = values.len();
        let rank = |p: f64| values[((p * n as f64).ceil() as usize).clamp(1, n) - 1];
        Some(Self {
            nodes: n,
            min: values[0],
            p10: rank(0.10),
            p50: rank(0.50),
            p90: rank(0.90),
            max: values[n - 1],
            mean: values.iter().sum::<f64>() / n as f64,
        })
    }

    /// Whether two distributions are the same figures (a JSON round trip may move a float by an ulp).
    pub fn same(a: Option<&Self>, b: Option<&Self>) -> bool {
        let close = |x: f64, y: f64| (x - y).abs() <= 1e-9 * x.abs().max(y.abs()).max(1.0);
        match (a, b) {
            (None, None) => true,
            (Some(a), Some(b)) => {
                a.nodes == b.nodes
                    && [
                        (a.min, b.min),
                        (a.p10, b.p10),
                        (a.p50, b.p50),
                        (a.p90, b.p90),
                        (a.max, b.max),
                        (a.mean, b.mean),
                    ]
                    .iter()
                    .all(|(x, y)| close(*x, *y))
            }
            _ => false,
        }
    }
}

/// A hall's baseline of one metric for one SKU, as kept in the inventory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FleetBaseline {
    /// Hall id.
    pub hall_id: i64,
    /// SKU id.
    pub sku: String,
    /// Metric name ([`METRIC_NCCL_BUSBW`], [`METRIC_STRESS_THROUGHPUT`]).
    pub metric: String,
    /// The figures of the hall's nodes of this SKU.
    pub distribution: Distribution,
    /// When it was last computed.
    pub updated_at: DateTime<Utc>,
}

impl FleetBaseline {
    /// How far `value` is below the median, as a fraction of the median (0.07 = 7% below; negative above).
    pub fn shortfall(&self, value: f64) -> f64 {
        let median = self.distribution.p50;
        if median.abs() < f64::EPSILON {
            return 0.0;
        }
        (median - value) / median
    }

    /// Whether the baseline has enough nodes to judge one against it.
    pub fn established(&self) -> bool {
        self.distribution.nodes as i64 >= MIN_BASELINE_NODES
    }
}

/// A node whose figure is more than the allowed fraction below its hall's median.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FleetOutlier {
    /// The node.
    pub serial: String,
    /// The metric.
    pub metric: String,
    /// Its figure.
    pub value: f64,
    /// The hall median it was compared with.
    pub median: f64,
    /// Fraction below the median (0.07 = 7%).
    pub shortfall: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let d = Distribution::of((1..=10).map(f64::from).collect()).expect("values");
        assert_eq!(
            (d.nodes, d.min, d.p10, d.p50, d.p90, d.max),
            (10, 1.0, 1.0, 5.0, 9.0, 10.0)
        );
        assert!((d.mean - 5.5).abs() < 1e-12);
        assert!(Distribution::of(vec![f64::NAN]).is_none());
        assert!(Distribution::of(Vec::new()).is_none());
        assert!(Distribution::same(Some(&d), Some(&d.clone())));
        assert!(!Distribution::same(Some(&d), None));
    }

    #[test]
    fn shortfall_is_relative_to_the_median() {
        let baseline = FleetBaseline {
            hall_id: 1,
            sku: "h100".into(),
            metric: METRIC_STRESS_THROUGHPUT.into(),
            distribution: Distribution::of(vec![100.0; 8]).expect("values"),
            updated_at: Utc::now(),
        };
        assert!((baseline.shortfall(93.0) - 0.07).abs() < 1e-12);
        assert!(baseline.shortfall(105.0) < 0.0);
        assert!(baseline.established());
    }
}
