//! The memory phase: resident memory of the service process per idle cached
//! account, read from `/proc/<pid>/status` before and after opening accounts.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::Bench;
use super::load::drive;
use crate::grpc::pb;

/// Memory of the service process with many accounts cached.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Memory {
    /// Accounts opened and left idle.
    pub accounts: usize,
    /// Accruals each account took (its history grows with them).
    #[serde(default = "one")]
    pub accruals_per_account: usize,
    /// Resident memory before opening them, MiB.
    pub rss_before_mib: f64,
    /// Resident memory after, all idle, MiB.
    pub rss_after_mib: f64,
    /// Highest resident memory the process ever had, MiB.
    pub peak_mib: f64,
    /// `(after - before) / accounts`, KiB.
    pub kib_per_account: f64,
}

fn one() -> usize {
    1
}

/// A `kB` field of `/proc/<pid>/status`, in KiB.
fn status_kib(pid: u32, field: &str) -> Result<u64, String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).map_err(|e| format!("process {pid}: {e}"))?;
    parse_status_kib(&status, field).ok_or_else(|| format!("process {pid}: no {field} in its status"))
}

fn parse_status_kib(status: &str, field: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.strip_prefix(field).is_some_and(|rest| rest.starts_with(':')))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Opens `--memory-accounts` accounts through the service and measures.
pub async fn run(bench: &Bench, pid: u32) -> Result<Memory, String> {
    let accounts = bench.args.memory_accounts;
    let accruals = bench.args.memory_accruals.max(1);
    let before = status_kib(pid, "VmRSS")?;
    // Account by account, so each account's accruals arrive one after another.
    let opened = drive(&format!("open {accounts} accounts"), accounts, bench.load(), |i| async move {
        for n in 0..accruals {
            let request = pb::AccrueRequest {
                customer_id: format!("bench-{}-mem-{i}", bench.run),
                event_id: format!("m{n}"),
                points: 1,
                reason: "bench".into(),
                source: "bench".into(),
                ..Default::default()
            };
            bench.grpc.clone().accrue(request).await.map(drop).map_err(|e| e.to_string())?;
        }
        Ok::<(), String>(())
    })
    .await;
    let opened = opened.summary("open", bench.load());
    if opened.failed > 0 {
        return Err(format!("{} accounts could not be opened", opened.failed));
    }
    // Every account has applied its accrual, so each sits in the worker's cache, idle.
    let applied = drive("wait until applied", accounts, bench.load(), |i| async move {
        let workflow_id = format!("loyalty-bench-{}-mem-{i}", bench.run);
        bench.wait_for_lifetime(&workflow_id, accruals as i64, Duration::from_secs(300)).await
    })
    .await;
    if let failed @ 1.. = applied.summary("applied", 1).failed {
        return Err(format!("{failed} accounts did not apply their accrual"));
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    let after = status_kib(pid, "VmRSS")?;
    Ok(Memory {
        accounts,
        accruals_per_account: accruals,
        rss_before_mib: before as f64 / 1024.0,
        rss_after_mib: after as f64 / 1024.0,
        peak_mib: status_kib(pid, "VmHWM")? as f64 / 1024.0,
        kib_per_account: (after as f64 - before as f64) / accounts as f64,
    })
}

#[cfg(test)]
mod tests {
    use super::parse_status_kib;

    #[test]
    fn reads_kib_fields_of_proc_status() {
        let status = "Name:\tloyalty\nVmHWM:\t   48120 kB\nVmRSS:\t   22528 kB\n";
        assert_eq!(parse_status_kib(status, "VmRSS"), Some(22_528));
        assert_eq!(parse_status_kib(status, "VmHWM"), Some(48_120));
        assert_eq!(parse_status_kib(status, "VmSwap"), None);
        assert_eq!(parse_status_kib(status, "Vm"), None);
    }
}
