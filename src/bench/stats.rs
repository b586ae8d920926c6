//! Latency samples and their summary: throughput and percentiles.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// What one measured operation did, over one run of it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Summary {
    /// Operation name, such as `service Accrue` or `raw signal-with-start`.
    pub name: String,
    /// Calls that succeeded.
    pub ok: usize,
    /// Calls that failed (not counted in the latencies).
    pub failed: usize,
    /// Callers sending at once.
    pub concurrency: usize,
    /// Successful calls per second of wall time.
    pub per_second: f64,
    /// Median latency, milliseconds.
    pub p50_ms: f64,
    /// 90th percentile latency, milliseconds.
    pub p90_ms: f64,
    /// 99th percentile latency, milliseconds.
    pub p99_ms: f64,
    /// CPU the service process spent per call, milliseconds (when watched).
    pub service_cpu_ms_per_call: Option<f64>,
    /// CPU the Temporal server spent per call, milliseconds (when watched).
    pub temporal_cpu_ms_per_call: Option<f64>,
}

/// Latencies of successful calls, failures, and the wall time they took.
#[derive(Debug, Default)]
pub struct Samples {
    latencies: Vec<Duration>,
    failed: usize,
    wall: Duration,
    service_cpu: Option<f64>,
    temporal_cpu: Option<f64>,
}

fn add(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a + b),
        (a, b) => a.or(b),
    }
}

impl Samples {
    /// Adds the calls of `other`; wall times add up (runs are sequential).
    pub fn merge(&mut self, other: Samples) {
        self.latencies.extend(other.latencies);
        self.failed += other.failed;
        self.wall += other.wall;
        self.service_cpu = add(self.service_cpu, other.service_cpu);
        self.temporal_cpu = add(self.temporal_cpu, other.temporal_cpu);
    }

    /// CPU seconds the service and the Temporal server spent during the run.
    pub fn set_cpu(&mut self, (service, temporal): (Option<f64>, Option<f64>)) {
        self.service_cpu = service;
        self.temporal_cpu = temporal;
    }

    /// A successful call that took `latency`.
    pub fn ok(&mut self, latency: Duration) {
        self.latencies.push(latency);
    }

    /// A failed call.
    pub fn failed(&mut self) {
        self.failed += 1;
    }

    /// The wall time of the whole run.
    pub fn set_wall(&mut self, wall: Duration) {
        self.wall = wall;
    }

    /// Throughput and percentiles, by the nearest-rank method.
    pub fn summary(mut self, name: &str, concurrency: usize) -> Summary {
        self.latencies.sort_unstable();
        let ms = |q: f64| percentile(&self.latencies, q).as_secs_f64() * 1e3;
        let secs = self.wall.as_secs_f64();
        let calls = (self.latencies.len() + self.failed).max(1) as f64;
        let per_call = |cpu: Option<f64>| cpu.map(|c| c * 1e3 / calls);
        Summary {
            name: name.to_owned(),
            ok: self.latencies.len(),
            failed: self.failed,
            concurrency,
            per_second: if secs > 0.0 { self.latencies.len() as f64 / secs } else { 0.0 },
            p50_ms: ms(0.50),
            p90_ms: ms(0.90),
            p99_ms: ms(0.99),
            service_cpu_ms_per_call: per_call(self.service_cpu),
            temporal_cpu_ms_per_call: per_call(self.temporal_cpu),
        }
    }
}

/// The `q` quantile of sorted `values` (nearest rank); zero when empty.
pub fn percentile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: &[u64]) -> Vec<Duration> {
        v.iter().map(|&m| Duration::from_millis(m)).collect()
    }

    #[test]
    fn nearest_rank_percentiles() {
        let sorted = ms(&(1..=100).collect::<Vec<_>>());
        assert_eq!(percentile(&sorted, 0.50), Duration::from_millis(50));
        assert_eq!(percentile(&sorted, 0.90), Duration::from_millis(90));
        assert_eq!(percentile(&sorted, 0.99), Duration::from_millis(99));
        assert_eq!(percentile(&sorted, 1.0), Duration::from_millis(100));
        assert_eq!(percentile(&ms(&[7]), 0.99), Duration::from_millis(7));
        assert_eq!(percentile(&[], 0.5), Duration::ZERO);
    }

    #[test]
    fn summary_counts_throughput_over_wall_time_and_ignores_failures_in_latency() {
        let mut s = Samples::default();
        for l in ms(&[4, 1, 3, 2]) {
            s.ok(l);
        }
        s.failed();
        s.set_wall(Duration::from_secs(2));
        s.set_cpu((Some(0.5), None));
        let mut more = Samples::default();
        more.ok(Duration::from_millis(100));
        more.set_wall(Duration::from_secs(3));
        more.set_cpu((Some(0.1), Some(0.6)));
        s.merge(more);
        let summary = s.summary("x", 8);
        assert_eq!((summary.ok, summary.failed, summary.concurrency), (5, 1, 8));
        assert!((summary.per_second - 1.0).abs() < 1e-9);
        assert_eq!(summary.p50_ms, 3.0);
        assert_eq!(summary.p99_ms, 100.0);
        // CPU is per call, failed calls included: 600 ms over 6 calls.
        assert!((summary.service_cpu_ms_per_call.unwrap() - 100.0).abs() < 1e-9);
        assert!((summary.temporal_cpu_ms_per_call.unwrap() - 100.0).abs() < 1e-9);
    }
}
