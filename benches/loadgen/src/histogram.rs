//! A latency histogram with log-linear buckets (32 per power of two: at most ~3% error),
//! small enough to send from every client process to the parent as JSON and merge there.

use serde_json::{json, Value};

const SUB_BITS: u32 = 5;
const SUB: u64 = 1 << SUB_BITS;
const BUCKETS: usize = (SUB as usize) * (64 - SUB_BITS as usize + 1);

/// Counts of values (nanoseconds) per bucket.
#[derive(Clone)]
pub struct Histogram {
    counts: Vec<u64>,
    total: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self { counts: vec![0; BUCKETS], total: 0 }
    }
}

fn index(value: u64) -> usize {
    if value < SUB {
        return value as usize;
    }
    let msb = 63 - value.leading_zeros();
    let sub = (value >> (msb - SUB_BITS)) - SUB;
    (SUB + u64::from(msb - SUB_BITS) * SUB + sub) as usize
}

/// The smallest value of bucket `index`.
fn lower_bound(index: usize) -> u64 {
    let index = index as u64;
    if index < SUB {
        return index;
    }
    let group = (index - SUB) / SUB;
    let sub = (index - SUB) % SUB;
    (SUB + sub) << group
}

impl Histogram {
    pub fn record(&mut self, value_ns: u64) {
        self.counts[index(value_ns)] += 1;
        self.total += 1;
    }

    /// The value at quantile `q` (0..=1), as the bucket's lower bound; 0 when empty.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let rank = ((q * self.total as f64).ceil() as u64).clamp(1, self.total);
        let mut seen = 0;
        for (i, &count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return lower_bound(i);
            }
        }
        lower_bound(BUCKETS - 1)
    }

    pub fn merge(&mut self, other: &Histogram) {
        for (mine, theirs) in self.counts.iter_mut().zip(&other.counts) {
            *mine += theirs;
        }
        self.total += other.total;
    }

    /// Sparse `[[bucket, count], ...]`.
    pub fn to_json(&self) -> Value {
        let pairs: Vec<Value> =
            self.counts.iter().enumerate().filter(|(_, &c)| c > 0).map(|(i, &c)| json!([i, c])).collect();
        Value::Array(pairs)
    }

    pub fn from_json(value: &Value) -> Histogram {
        let mut histogram = Histogram::default();
        for pair in value.as_array().into_iter().flatten() {
            let (Some(i), Some(c)) = (pair[0].as_u64(), pair[1].as_u64()) else { continue };
            if let Some(slot) = histogram.counts.get_mut(i as usize) {
                *slot += c;
                histogram.total += c;
            }
        }
        histogram
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_monotonic_and_tight() {
        for value in [0u64, 1, 31, 32, 33, 63, 64, 1000, 123_456, 9_999_999, u64::MAX / 3] {
            let low = lower_bound(index(value));
            assert!(low <= value, "{value}: bucket starts at {low}");
            assert!(value - low <= value / 32 + 1, "{value}: bucket {low} too coarse");
        }
        assert!(index(u64::MAX) < BUCKETS);
    }

    #[test]
    fn quantiles_and_merge() {
        let mut a = Histogram::default();
        for v in 1..=1000u64 {
            a.record(v * 1000);
        }
        let p50 = a.quantile(0.5);
        assert!((480_000..=500_000).contains(&p50), "{p50}");
        let b = Histogram::from_json(&a.to_json());
        a.merge(&b);
        assert_eq!(a.total, 2000);
        assert_eq!(a.quantile(0.99), b.quantile(0.99));
    }
}
