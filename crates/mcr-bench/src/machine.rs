//! The machine the figures came from, and a process's CPU time and peak memory (Linux `/proc`).

use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub cpus: usize,
    pub cpu_model: String,
    pub memory_mib: u64,
    pub kernel: String,
}

impl Machine {
    pub fn describe() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find_map(|l| {
                l.strip_prefix("model name")
                    .and_then(|r| r.split_once(':'))
                    .map(|(_, m)| m.trim().to_owned())
            })
            .unwrap_or_else(|| "unknown".into());
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let memory_mib = kib_field(&meminfo, "MemTotal:").unwrap_or(0) / 1024;
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
            .to_owned();
        Self {
            cpus: std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get),
            cpu_model,
            memory_mib,
            kernel,
        }
    }
}

/// User + system CPU seconds a process has used so far (`/proc/<pid>/stat`, fields 14 and 15,
/// in clock ticks of 1/100 s, the value on every Linux this runs on).
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: count after it.
    let after = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

/// Start counting a process's peak resident memory (`VmHWM`) afresh, so that the next
/// [`memory_mib`] tells the peak of what ran since (writing `5` to `/proc/<pid>/clear_refs`,
/// Linux 4.0 and later). False if the kernel refused.
pub fn reset_peak_rss(pid: u32) -> bool {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok()
}

/// Peak resident memory (`VmHWM`) and current resident memory (`VmRSS`) of a process, MiB.
pub fn memory_mib(pid: u32) -> Option<(f64, f64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let hwm = kib_field(&status, "VmHWM:")?;
    let rss = kib_field(&status, "VmRSS:")?;
    Some((hwm as f64 / 1024.0, rss as f64 / 1024.0))
}

fn kib_field(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}
