//! Samples of the machine and of this process: CPU, memory, the data directory's filesystem.
//!
//! Machine CPU and memory and the process's resident memory come from `sysinfo`; the data directory's
//! filesystem from `statvfs`; the process's CPU time from the process CPU-time clock (exact to the
//! nanosecond, where `/proc/self/stat`, which `sysinfo` reads, counts 10 ms ticks).

use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime};

use rustix::time::{ClockId, clock_gettime};
use sysinfo::{Pid, ProcessRefreshKind, ProcessesToUpdate, System};

/// One sample of the host.
#[derive(Clone, Debug, PartialEq)]
pub struct HostSample {
    pub at: SystemTime,
    /// CPU usage of the whole machine since the previous sample (or since the sampler was created), 0 to 1.
    pub cpu_usage: f64,
    pub cpu_cores: usize,
    pub memory_used_bytes: u64,
    pub memory_total_bytes: u64,
    /// Used space on the filesystem holding the data directory.
    pub disk_used_bytes: u64,
    /// Size of the filesystem holding the data directory.
    pub disk_total_bytes: u64,
    pub process_rss_bytes: u64,
    /// CPU time of this process since it started.
    pub process_cpu_seconds: f64,
    /// CPU time of this process per second since the previous sample, in cores.
    pub process_cpu_usage: f64,
}

/// Takes [`HostSample`]s; keep one and sample it periodically (CPU usage is measured between samples).
pub struct HostSampler {
    data_dir: PathBuf,
    /// `None` where `sysinfo` does not support the platform; the fields it would fill are then zero.
    system: Option<System>,
    pid: Option<Pid>,
    /// When the previous sample was taken and the process CPU time then.
    previous: (Instant, f64),
}

impl std::fmt::Debug for HostSampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostSampler").field("data_dir", &self.data_dir).finish_non_exhaustive()
    }
}

impl HostSampler {
    /// A sampler reporting the disk of the filesystem holding `data_dir` (or of its nearest existing ancestor).
    /// Takes the baseline for the first sample's CPU usage.
    pub fn new(data_dir: &Path) -> Self {
        let mut system = System::new().ok();
        if let Some(system) = &mut system {
            system.refresh_cpu_usage();
        }
        HostSampler {
            data_dir: data_dir.to_owned(),
            system,
            pid: sysinfo::get_current_pid().ok(),
            previous: (Instant::now(), process_cpu_seconds()),
        }
    }

    /// Samples the host now.
    pub fn sample(&mut self) -> HostSample {
        let now = Instant::now();
        let process_cpu = process_cpu_seconds();
        let elapsed = now.duration_since(self.previous.0).as_secs_f64();
        let process_cpu_usage = if elapsed > 0.0 { ((process_cpu - self.previous.1) / elapsed).max(0.0) } else { 0.0 };
        self.previous = (now, process_cpu);

        let (disk_used_bytes, disk_total_bytes) = disk_usage(&self.data_dir);
        let mut sample = HostSample {
            at: SystemTime::now(),
            cpu_usage: 0.0,
            cpu_cores: std::thread::available_parallelism().map_or(1, usize::from),
            memory_used_bytes: 0,
            memory_total_bytes: 0,
            disk_used_bytes,
            disk_total_bytes,
            process_rss_bytes: 0,
            process_cpu_seconds: process_cpu,
            process_cpu_usage,
        };
        if let Some(system) = &mut self.system {
            system.refresh_cpu_usage();
            system.refresh_memory();
            sample.cpu_usage = (f64::from(system.global_cpu_usage()) / 100.0).clamp(0.0, 1.0);
            if !system.cpus().is_empty() {
                sample.cpu_cores = system.cpus().len();
            }
            sample.memory_used_bytes = system.used_memory();
            sample.memory_total_bytes = system.total_memory();
            if let Some(pid) = self.pid {
                system.refresh_processes_specifics(
                    ProcessesToUpdate::Some(&[pid]),
                    true,
                    ProcessRefreshKind::nothing().with_memory(),
                );
                sample.process_rss_bytes = system.process(pid).map_or(0, |p| p.memory());
            }
        }
        sample
    }
}

/// CPU time of this process since it started, in seconds.
fn process_cpu_seconds() -> f64 {
    let t = clock_gettime(ClockId::ProcessCPUTime);
    t.tv_sec as f64 + t.tv_nsec as f64 / 1e9
}

/// Used and total bytes of the filesystem holding `path` or its nearest existing ancestor; zeros when none
/// can be read.
fn disk_usage(path: &Path) -> (u64, u64) {
    for dir in path.ancestors().filter(|d| !d.as_os_str().is_empty()) {
        if let Ok(stat) = rustix::fs::statvfs(dir) {
            let total = stat.f_blocks.saturating_mul(stat.f_frsize);
            let free = stat.f_bfree.saturating_mul(stat.f_frsize);
            return (total.saturating_sub(free), total);
        }
    }
    (0, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_is_sane() {
        let dir = tempfile::tempdir().unwrap();
        let mut sampler = HostSampler::new(dir.path());
        // Burn a little CPU so the process counters move.
        let mut x = 0u64;
        for i in 0..5_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        let a = sampler.sample();
        let b = sampler.sample();
        for s in [&a, &b] {
            assert!(s.cpu_cores > 0);
            assert!((0.0..=1.0).contains(&s.cpu_usage));
            assert!(s.memory_total_bytes > 0 && s.memory_used_bytes > 0);
            assert!(s.memory_used_bytes <= s.memory_total_bytes);
            assert!(s.disk_total_bytes > 0 && s.disk_used_bytes <= s.disk_total_bytes);
            assert!(s.process_rss_bytes > 0 && s.process_rss_bytes < s.memory_total_bytes);
            assert!(s.process_cpu_seconds > 0.0);
            assert!(s.process_cpu_usage >= 0.0);
        }
        assert!(a.process_cpu_usage > 0.0);
        assert!(b.process_cpu_seconds >= a.process_cpu_seconds);
        assert!(b.at >= a.at);
        // A data directory that does not exist yet reports its parent's filesystem.
        let missing = HostSampler::new(&dir.path().join("not/yet")).sample();
        assert_eq!(missing.disk_total_bytes, a.disk_total_bytes);
    }
}
