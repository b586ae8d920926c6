//! The benchmark's results: the figures, the targets they are held against,
//! a table on stdout, and the JSON written next to the chart.

use serde::{Deserialize, Serialize};

use super::hot::{Hot, Processing};
use super::memory::Memory;
use super::mixed::{Kind, Mixed};
use super::stats::Summary;

/// Where the figures were measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Machine {
    /// CPUs the process may use.
    pub cpus: usize,
    /// Total memory, GiB.
    pub memory_gib: f64,
    /// Kernel release.
    pub kernel: String,
    /// How the Temporal dev server stores its data.
    pub dev_server_storage: String,
}

/// One target of the performance issue, and whether this run met it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Target {
    /// What is measured.
    pub name: String,
    /// The goal, in words.
    pub goal: String,
    /// The figure this run measured.
    pub measured: f64,
    /// Whether the figure meets the goal (`None`: reported, no goal).
    pub met: Option<bool>,
}

/// Everything one run measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    /// Where.
    pub machine: Machine,
    /// Callers in flight in the hot and memory phases.
    pub concurrency: usize,
    /// Per operation, service and raw side by side.
    pub api: Vec<Summary>,
    /// Accrue, Redeem and GetSummary in turn on the same customers, and
    /// history events per update (absent from runs before the phase existed).
    #[serde(default)]
    pub alternating: Option<super::alternating::Alternating>,
    /// The hot-customer phase.
    pub hot: Option<Hot>,
    /// Accrue, Redeem and Adjust to one customer at once (absent from
    /// results of runs before the phase existed).
    pub mixed: Option<Mixed>,
    /// The memory phase.
    pub memory: Option<Memory>,
    /// The lots phase (absent from results of runs before it existed).
    #[serde(default)]
    pub lots: Option<super::lots::Lots>,
    /// Webhook delivery during the mixed phase (absent unless the
    /// benchmark was the endpoint, and from runs before it existed).
    #[serde(default)]
    pub webhooks: Option<super::webhooks::Webhooks>,
    /// The earning phase (absent from runs before it existed).
    #[serde(default)]
    pub earning: Option<super::earning::Earning>,
    /// The targets, filled by [`Report::judge`].
    pub targets: Vec<Target>,
}

impl Report {
    /// An empty report for this machine.
    pub fn new(dev_server_storage: &str, concurrency: usize) -> Self {
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let mem_kib: f64 = meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        Self {
            machine: Machine {
                cpus: std::thread::available_parallelism().map(usize::from).unwrap_or(0),
                memory_gib: (mem_kib / 1024.0 / 1024.0 * 10.0).round() / 10.0,
                kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_owned(),
                dev_server_storage: dev_server_storage.to_owned(),
            },
            concurrency,
            api: Vec::new(),
            alternating: None,
            hot: None,
            mixed: None,
            memory: None,
            lots: None,
            earning: None,
            webhooks: None,
            targets: Vec::new(),
        }
    }

    /// The summary of the operation named `name` at `concurrency`, if measured.
    pub fn op(&self, name: &str, concurrency: usize) -> Option<&Summary> {
        self.api.iter().find(|s| s.name == name && s.concurrency == concurrency)
    }

    /// The concurrency levels the api phase ran at, in order.
    pub fn levels(&self) -> Vec<usize> {
        let mut levels: Vec<usize> = self.api.iter().map(|s| s.concurrency).collect();
        levels.dedup();
        levels
    }

    /// Holds the figures against the targets.
    pub fn judge(&mut self) {
        let mut targets = Vec::new();
        let mut add = |name: &str, goal: &str, measured: f64, met: Option<bool>| {
            targets.push(Target { name: name.into(), goal: goal.into(), measured, met })
        };
        for c in self.levels() {
            let at = |what: &str| format!("{what}, {c} in flight");
            if let (Some(svc), Some(raw)) = (self.op("service Accrue", c), self.op("raw signal-with-start", c)) {
                let ratio = svc.per_second / raw.per_second;
                add(&at("Accrue throughput / raw signal-with-start"), ">= 0.95", ratio, Some(ratio >= 0.95));
                let over = svc.p99_ms - raw.p99_ms;
                add(&at("Accrue p99 overhead (ms)"), "<= 1.0", over, Some(over <= 1.0));
            }
            if let (Some(svc), Some(raw)) = (self.op("service GetSummary", c), self.op("raw query", c)) {
                let over = svc.p50_ms - raw.p50_ms;
                add(&at("GetSummary p50 overhead (ms)"), "<= 0.5", over, Some(over <= 0.5));
            }
            if let (Some(svc), Some(floor)) =
                (self.op("service Redeem", c), self.op("update running 1 regular activity", c))
            {
                let ratio = svc.p50_ms / floor.p50_ms;
                add(&at("Redeem p50 / update running 1 regular activity"), "<= 0.5", ratio, Some(ratio <= 0.5));
            }
            if let (Some(svc), Some(floor)) =
                (self.op("service Redeem", c), self.op("update running 1 local activity", c))
            {
                let ratio = svc.per_second / floor.per_second;
                add(&at("Redeem throughput / update running 1 local activity"), ">= 0.8", ratio, Some(ratio >= 0.8));
                let ratio = svc.p50_ms / floor.p50_ms;
                add(&at("Redeem p50 / update running 1 local activity"), "<= 1.25", ratio, Some(ratio <= 1.25));
            }
        }
        if let Some(hot) = &self.hot {
            let rate = |p: fn(&Processing) -> bool| {
                hot.backlogs.iter().find(|b| p(&b.processing)).map(|b| (b.applied_per_second, b.events_per_accrual))
            };
            let batched = rate(|p| matches!(p, Processing::Batched));
            let per_event = rate(|p| matches!(p, Processing::PerEventRegular));
            if let (Some((fast, events)), Some((slow, _))) = (batched, per_event) {
                let speedup = fast / slow;
                add("hot backlog: batched / one-activity-per-event rate", ">= 20", speedup, Some(speedup >= 20.0));
                add("hot backlog: history events per accrual", "<= 1.1", events, Some(events <= 1.1));
            }
            let catch_up = hot.stream.catch_up_seconds;
            add("steady stream: seconds to catch up after it stops", "<= 1.0", catch_up, Some(catch_up <= 1.0));
        }
        if let Some(a) = &self.alternating {
            let ratio = a.redeem_to_accrue_p50;
            add("alternating on the same customers: Redeem p50 / Accrue p50", "<= 2.0", ratio, Some(ratio <= 2.0));
            for e in &a.events {
                add(&format!("history events per {} in a run of calls", e.name), "reported", e.in_a_run, None);
            }
        }
        if let Some(e) = &self.earning {
            let find = |name: &str, c: usize| e.calls.iter().find(|s| s.name == name && s.concurrency == c);
            for c in self
                .levels()
                .into_iter()
                .chain(e.calls.iter().map(|s| s.concurrency))
                .collect::<std::collections::BTreeSet<_>>()
            {
                let at = |what: &str| format!("{what}, {c} in flight");
                use super::earning::{ACCRUE_ORDER, ACCRUE_POINTS, PREVIEW, SUMMARY};
                if let (Some(order), Some(points)) = (find(ACCRUE_ORDER, c), find(ACCRUE_POINTS, c)) {
                    let ratio = order.p50_ms / points.p50_ms;
                    add(&at("Accrue 20-line order p50 / Accrue points p50"), "<= 1.2", ratio, Some(ratio <= 1.2));
                    let ratio = points.per_second / order.per_second;
                    add(
                        &at("Accrue points throughput / 20-line order throughput"),
                        "<= 1.2",
                        ratio,
                        Some(ratio <= 1.2),
                    );
                }
                if let (Some(preview), Some(summary)) = (find(PREVIEW, c), find(SUMMARY, c)) {
                    let ratio = preview.p50_ms / summary.p50_ms;
                    add(&at("PreviewAccrual p50 / GetSummary p50"), "<= 1.5", ratio, Some(ratio <= 1.5));
                }
            }
            let cost = &e.evaluation;
            add(
                "evaluation of a 1,000-line order, 100 campaigns: µs per line and tier",
                "reported",
                cost.micros_per_line,
                None,
            );
        }
        if let Some(l) = &self.lots {
            let ratio = l.p50_ratio;
            add("GetSummary p50: 10,000-lot account / fresh account", "<= 2.0", ratio, Some(ratio <= 2.0));
        }
        if let Some(m) = &self.mixed
            && let Some(redeem) = m.kind(Kind::Redeem)
        {
            // The goal is set for the default settings (4 Accrue callers, 20 s).
            let met = redeem.ok > 0 && m.errors() == 0 && redeem.p99_ms < 1_000.0;
            add("mixed: Redeem p99 (ms), and no call errors", "< 1000", redeem.p99_ms, Some(met));
        }
        if let Some(w) = &self.webhooks {
            // Events wait for their ledger write, then one POST each, in order.
            let met = w.in_order && w.events > 0 && w.lag_p99_ms <= 1_000.0;
            add("mixed: webhook delivery lag p99 (ms), in order", "<= 1000", w.lag_p99_ms, Some(met));
        }
        if let Some(m) = &self.memory {
            add(
                &format!("resident memory per idle cached account, {} cached (KiB)", m.accounts),
                "reported",
                m.kib_per_account,
                None,
            );
        }
        self.targets = targets;
    }

    /// Prints the tables and the targets.
    pub fn print(&self) {
        println!(
            "machine: {} CPUs, {} GiB, Linux {}; Temporal dev server {}",
            self.machine.cpus, self.machine.memory_gib, self.machine.kernel, self.machine.dev_server_storage
        );
        self.print_api();
        if let Some(w) = &self.webhooks {
            println!(
                "\nwebhooks at mixed load: {} events of the account, {:.1} deliveries/s to the endpoint, lag p50 {:.1} ms p99 {:.1} ms max {:.1} ms, in order {}, last one {:.2}s after the last call",
                w.events,
                w.delivered_per_second,
                w.lag_p50_ms,
                w.lag_p99_ms,
                w.lag_max_ms,
                w.in_order,
                w.caught_up_seconds
            );
        }
        if let Some(l) = &self.lots {
            println!("\nlots: {} accruals to one account, each its own lot", l.accruals);
            for s in [&l.big, &l.fresh] {
                println!("{:<36} {:>6} p50 {:>6.2} ms  p99 {:>6.2} ms", s.name, s.ok, s.p50_ms, s.p99_ms);
            }
        }
        if let Some(a) = &self.alternating {
            a.print();
        }
        if let Some(e) = &self.earning {
            println!("\nearning rules:");
            for s in &e.calls {
                println!(
                    "{:<40} {:>3} {:>6} failed {:>3} {:>8.1}/s p50 {:>6.2} ms  p99 {:>6.2} ms",
                    s.name, s.concurrency, s.ok, s.failed, s.per_second, s.p50_ms, s.p99_ms
                );
            }
            let c = &e.evaluation;
            println!(
                "evaluation of a {}-line order, {} campaigns, 4 tiers: {:.0} µs per order, {:.3} µs per line and tier, {} bytes in the signal",
                c.lines, c.campaigns, c.micros_per_order, c.micros_per_line, c.signal_bytes
            );
        }
        if let Some(hot) = &self.hot {
            print_hot(hot);
        }
        if let Some(m) = &self.mixed {
            print_mixed(m);
        }
        if let Some(m) = &self.memory {
            println!(
                "\nmemory: {} idle cached accounts: RSS {:.1} -> {:.1} MiB (peak {:.1}), {:.1} KiB per account",
                m.accounts, m.rss_before_mib, m.rss_after_mib, m.peak_mib, m.kib_per_account
            );
        }
        println!("\n{:<62} {:>9} {:>10}  result", "target", "goal", "measured");
        for t in &self.targets {
            let result = match t.met {
                Some(true) => "met",
                Some(false) => "NOT MET",
                None => "-",
            };
            println!("{:<62} {:>9} {:>10.2}  {result}", t.name, t.goal, t.measured);
        }
    }

    fn print_api(&self) {
        if self.api.is_empty() {
            return;
        }
        println!(
            "\n{:<36} {:>4} {:>6} {:>6} {:>8} {:>8} {:>8} {:>8} {:>10} {:>10}",
            "operation", "c", "ok", "failed", "per s", "p50 ms", "p90 ms", "p99 ms", "svc cpu ms", "tmp cpu ms"
        );
        let cpu = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.3}"));
        for s in &self.api {
            println!(
                "{:<36} {:>4} {:>6} {:>6} {:>8.1} {:>8.2} {:>8.2} {:>8.2} {:>10} {:>10}",
                s.name,
                s.concurrency,
                s.ok,
                s.failed,
                s.per_second,
                s.p50_ms,
                s.p90_ms,
                s.p99_ms,
                cpu(s.service_cpu_ms_per_call),
                cpu(s.temporal_cpu_ms_per_call)
            );
        }
    }
}

/// The hot-customer phase's table.
fn print_hot(hot: &Hot) {
    println!(
        "\n{:<20} {:>8} {:>10} {:>9} {:>10} {:>8} {:>10} {:>5}",
        "hot backlog", "accruals", "queued/s", "drain s", "applied/s", "events", "ev/accrual", "runs"
    );
    for b in &hot.backlogs {
        println!(
            "{:<20} {:>8} {:>10.1} {:>9.2} {:>10.1} {:>8} {:>10.2} {:>5}",
            format!("{:?}", b.processing),
            b.accruals,
            b.queued_per_second,
            b.drain_seconds,
            b.applied_per_second,
            b.history_events,
            b.events_per_accrual,
            b.runs
        );
    }
    let s = &hot.stream;
    println!(
        "steady stream to one customer: {} accepted in {:.1}s ({:.1}/s), {} failed, max lag {} accruals, caught up {:.2}s after the last",
        s.accepted, s.seconds, s.accepted_per_second, s.failed, s.max_lag, s.catch_up_seconds
    );
}

/// The mixed-load phase's table.
fn print_mixed(m: &Mixed) {
    println!(
        "\n{:<12} {:>7} {:>6} {:>7} {:>6} {:>8} {:>8} {:>8} {:>8} {:>8}",
        "mixed load", "callers", "ok", "retries", "errors", "per s", "p50 ms", "p90 ms", "p99 ms", "max ms"
    );
    for c in &m.calls {
        println!(
            "{:<12} {:>7} {:>6} {:>7} {:>6} {:>8.1} {:>8.2} {:>8.2} {:>8.2} {:>8.2}",
            format!("{:?}", c.kind),
            c.callers,
            c.ok,
            c.retries,
            c.errors,
            c.per_second,
            c.p50_ms,
            c.p90_ms,
            c.p99_ms,
            c.max_ms
        );
        if let Some(e) = &c.first_error {
            println!("  first {:?} error: {e}", c.kind);
        }
    }
    let caught_up = m.catch_up_seconds.map_or("not within 120 s".to_owned(), |s| format!("{s:.2}s"));
    let drift = m.balance_drift.map_or("-".to_owned(), |d| d.to_string());
    println!(
        "over {:.1}s: at most {} acknowledged accrual points not yet applied ({} GetSummary samples); all applied {} after the last call; final balance minus acknowledged: {}",
        m.seconds, m.max_lag_points, m.lag_samples, caught_up, drift
    );
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::bench::mixed::Calls;
    use crate::bench::stats::Samples;

    fn op(name: &str, c: usize, calls: u64, latency_ms: u64) -> Summary {
        let mut s = Samples::default();
        for _ in 0..calls {
            s.ok(Duration::from_millis(latency_ms));
        }
        s.set_wall(Duration::from_secs(1));
        s.summary(name, c)
    }

    #[test]
    fn targets_are_judged_per_concurrency_level() {
        let mut report = Report::new("file", 16);
        report.api = vec![
            op("service Accrue", 1, 10, 11),
            op("raw signal-with-start", 1, 10, 10),
            op("service Accrue", 16, 96, 20),
            op("raw signal-with-start", 16, 100, 20),
            op("service Redeem", 16, 10, 40),
            op("update running 1 regular activity", 16, 10, 100),
        ];
        report.judge();
        let find = |name: &str| report.targets.iter().find(|t| t.name == name).unwrap();
        // 1 ms over at p99 meets "at most 1 ms"; 96 % of raw throughput meets "at least 95 %".
        assert_eq!(find("Accrue p99 overhead (ms), 1 in flight").met, Some(true));
        assert_eq!(find("Accrue throughput / raw signal-with-start, 16 in flight").met, Some(true));
        assert!((find("Redeem p50 / update running 1 regular activity, 16 in flight").measured - 0.4).abs() < 1e-9);
        report.api[2] = op("service Accrue", 16, 90, 20);
        report.judge();
        assert_eq!(
            report
                .targets
                .iter()
                .find(|t| t.name == "Accrue throughput / raw signal-with-start, 16 in flight")
                .unwrap()
                .met,
            Some(false)
        );
        assert!(report.targets.iter().all(|t| !t.name.contains("GetSummary")), "not measured, not judged");
    }

    fn calls(kind: Kind, errors: usize, p99_ms: f64) -> Calls {
        Calls {
            kind,
            callers: 1,
            ok: 10,
            retries: 0,
            errors,
            first_error: None,
            per_second: 1.0,
            p50_ms: 1.0,
            p90_ms: 1.0,
            p99_ms,
            max_ms: p99_ms,
        }
    }

    #[test]
    fn the_mixed_target_wants_redeem_p99_under_a_second_and_no_errors_of_any_kind() {
        let judged = |adjust_errors: usize, redeem_p99_ms: f64| {
            let mut report = Report::new("file", 16);
            report.mixed = Some(Mixed {
                seconds: 20.0,
                calls: vec![
                    calls(Kind::Accrue, 0, 50.0),
                    calls(Kind::Redeem, 0, redeem_p99_ms),
                    calls(Kind::Adjust, adjust_errors, 50.0),
                ],
                max_lag_points: 0,
                lag_samples: 1,
                catch_up_seconds: Some(0.1),
                balance_drift: Some(0),
            });
            report.judge();
            let target = report.targets.iter().find(|t| t.name.starts_with("mixed:")).unwrap();
            (target.measured, target.met)
        };
        assert_eq!(judged(0, 999.0), (999.0, Some(true)));
        assert_eq!(judged(0, 1_000.0), (1_000.0, Some(false)));
        assert_eq!(judged(1, 10.0), (10.0, Some(false)), "an error of any kind misses it");
    }
}
