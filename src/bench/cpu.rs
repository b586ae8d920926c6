//! CPU time of other processes (the service, the Temporal server), read from
//! `/proc/<pid>/stat`, so each figure can say which process spent the CPU.

/// CPU seconds (user + system) process `pid` has used so far.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // SAFETY: sysconf has no preconditions; it only reads a system constant.
    let ticks_per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    parse_ticks(&stat).map(|ticks| ticks as f64 / ticks_per_second.max(1) as f64)
}

/// utime + stime of a `/proc/<pid>/stat` line, in clock ticks.
fn parse_ticks(stat: &str) -> Option<u64> {
    // The command name may hold spaces and parentheses: fields follow the last ')'.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    // Fields 14 and 15 of the line; the state (field 3) is the first after ')'.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// Processes whose CPU a phase reports.
#[derive(Debug, Clone, Copy, Default)]
pub struct Watched {
    /// The loyalty service.
    pub service: Option<u32>,
    /// The Temporal server.
    pub temporal: Option<u32>,
}

/// CPU seconds of the watched processes at one moment.
#[derive(Debug, Clone, Copy, Default)]
pub struct Reading {
    service: Option<f64>,
    temporal: Option<f64>,
}

impl Watched {
    /// Reads both processes now.
    pub fn read(&self) -> Reading {
        Reading { service: self.service.and_then(cpu_seconds), temporal: self.temporal.and_then(cpu_seconds) }
    }
}

impl Reading {
    /// CPU seconds spent since `earlier`, per process.
    pub fn since(&self, earlier: &Reading) -> (Option<f64>, Option<f64>) {
        let diff = |now: Option<f64>, then: Option<f64>| Some(now? - then?);
        (diff(self.service, earlier.service), diff(self.temporal, earlier.temporal))
    }
}

#[cfg(test)]
mod tests {
    use super::parse_ticks;

    #[test]
    fn reads_user_and_system_ticks_after_the_command_name() {
        let stat = "4242 (tokio (worker)) S 1 4242 4242 0 -1 4194560 2000 0 0 0 150 25 0 0 20 0 9 0 100 0 0";
        assert_eq!(parse_ticks(stat), Some(175));
        assert_eq!(parse_ticks("garbage"), None);
    }
}
