//! What `/proc` says of a process and of the machine, for the load runs and benchmarks: CPU ticks, the
//! clock tick rate, resident memory.

use std::process::Command;

use anyhow::Context;

/// Clock ticks per second (`getconf CLK_TCK`).
pub fn clock_ticks() -> anyhow::Result<f64> {
    let out = Command::new("getconf").arg("CLK_TCK").output()?;
    String::from_utf8_lossy(&out.stdout).trim().parse().context("getconf CLK_TCK")
}

/// `utime + stime` of a process, in clock ticks (`/proc/<pid>/stat` fields 14 and 15).
pub fn cpu_ticks(pid: u32) -> anyhow::Result<u64> {
    stat_ticks(&std::fs::read_to_string(format!("/proc/{pid}/stat"))?)
}

/// User and system CPU seconds of a process so far.
pub fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    Ok(cpu_ticks(pid)? as f64 / clock_ticks()?)
}

/// `utime + stime` in clock ticks of a `stat` file's text (a process's or a thread's).
pub fn stat_ticks(stat: &str) -> anyhow::Result<u64> {
    // The command name (field 2) may hold spaces; the fields after it are plain.
    let rest = stat.rsplit_once(')').context("no command name in /proc/<pid>/stat")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| -> anyhow::Result<u64> {
        fields.get(i).context("short /proc/<pid>/stat")?.parse().map_err(Into::into)
    };
    // `rest` starts at field 3 (the state): utime is field 14, stime 15.
    Ok(field(11)? + field(12)?)
}

/// Busy clock ticks of the whole machine: the `cpu` line of `/proc/stat` but idle and iowait.
pub fn machine_ticks() -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string("/proc/stat")?;
    let line = stat.lines().find(|l| l.starts_with("cpu ")).context("no cpu line in /proc/stat")?;
    let fields: Vec<u64> = line.split_whitespace().skip(1).map(|v| v.parse().unwrap_or(0)).collect();
    // user nice system idle iowait irq softirq steal (guest time is already in user and nice).
    Ok(fields.iter().take(8).enumerate().filter(|(i, _)| *i != 3 && *i != 4).map(|(_, v)| v).sum())
}

/// Resident memory of a process (`VmRSS`), in bytes.
pub fn rss_bytes(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmRSS")?;
    Ok(kib * 1024)
}
