//! The `process_*` family, read from `/proc/self` at scrape time.
//!
//! Why not the `prometheus` crate's `ProcessCollector`: it exports
//! `process_cpu_seconds_total` as an integer counter, truncating the CPU time
//! to whole seconds (tikv/rust-prometheus#451), so `rate()` over a quiet
//! service reads 0 and then jumps by 1. Here every value is a float at the
//! resolution the kernel gives: CPU time in clock ticks (`/proc/self/stat`
//! `utime + stime`, usually 1/100 s), the start time likewise. Names, types
//! and HELP are those of the other Prometheus clients, so dashboards and
//! `promtool check metrics` see the usual family.

use std::sync::Mutex;

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{Counter, Gauge, Opts};

/// Collects the `process_*` metrics of this process; see the module docs.
pub struct ProcessMetrics {
    cpu_seconds: Counter,
    open_fds: Gauge,
    max_fds: Gauge,
    virtual_memory: Gauge,
    resident_memory: Gauge,
    start_time: Gauge,
    threads: Gauge,
    /// Serialises scrapes' counter updates (read total, add the difference).
    cpu_update: Mutex<()>,
    descs: Vec<Desc>,
}

impl ProcessMetrics {
    pub fn new() -> prometheus::Result<ProcessMetrics> {
        let gauge = |name: &str, help: &str| Gauge::with_opts(Opts::new(name, help));
        let cpu_seconds = Counter::with_opts(Opts::new(
            "process_cpu_seconds_total",
            "Total user and system CPU time spent in seconds.",
        ))?;
        let open_fds = gauge("process_open_fds", "Number of open file descriptors.")?;
        let max_fds = gauge(
            "process_max_fds",
            "Maximum number of open file descriptors.",
        )?;
        let virtual_memory = gauge(
            "process_virtual_memory_bytes",
            "Virtual memory size in bytes.",
        )?;
        let resident_memory = gauge(
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
        )?;
        let start_time = gauge(
            "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds.",
        )?;
        let threads = gauge("process_threads", "Number of OS threads in the process.")?;
        let mut descs = Vec::new();
        descs.extend(cpu_seconds.desc().into_iter().cloned());
        for g in [
            &open_fds,
            &max_fds,
            &virtual_memory,
            &resident_memory,
            &start_time,
            &threads,
        ] {
            descs.extend(g.desc().into_iter().cloned());
        }
        Ok(ProcessMetrics {
            cpu_seconds,
            open_fds,
            max_fds,
            virtual_memory,
            resident_memory,
            start_time,
            threads,
            cpu_update: Mutex::new(()),
            descs,
        })
    }

    /// Reads `/proc/self`; a file that cannot be read leaves its metrics
    /// out of this scrape rather than reporting a made-up value.
    fn read(&self) -> Vec<MetricFamily> {
        let mut out = Vec::with_capacity(7);
        let Ok(me) = procfs::process::Process::myself() else {
            return out;
        };
        let ticks = procfs::ticks_per_second() as f64;
        if let Ok(stat) = me.stat() {
            let total = (stat.utime + stat.stime) as f64 / ticks;
            {
                let _serial = self
                    .cpu_update
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                let delta = total - self.cpu_seconds.get();
                if delta > 0.0 {
                    self.cpu_seconds.inc_by(delta);
                }
            }
            self.virtual_memory.set(stat.vsize as f64);
            self.resident_memory
                .set(stat.rss as f64 * procfs::page_size() as f64);
            self.threads.set(stat.num_threads as f64);
            out.extend(self.cpu_seconds.collect());
            out.extend(self.virtual_memory.collect());
            out.extend(self.resident_memory.collect());
            out.extend(self.threads.collect());
            if let Ok(boot) = procfs::boot_time_secs() {
                self.start_time
                    .set(boot as f64 + stat.starttime as f64 / ticks);
                out.extend(self.start_time.collect());
            }
        }
        if let Ok(fds) = me.fd_count() {
            self.open_fds.set(fds as f64);
            out.extend(self.open_fds.collect());
        }
        if let Ok(limits) = me.limits() {
            if let procfs::process::LimitValue::Value(max) = limits.max_open_files.soft_limit {
                self.max_fds.set(max as f64);
                out.extend(self.max_fds.collect());
            }
        }
        out
    }
}

impl Collector for ProcessMetrics {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        self.read()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// CPU seconds of this process from `/proc/self/stat`, independently.
    fn cpu_from_stat() -> f64 {
        let stat = std::fs::read_to_string("/proc/self/stat").expect("stat");
        // Fields after the parenthesised command name; utime and stime are
        // fields 14 and 15, i.e. 12th and 13th after it.
        let after = &stat[stat.rfind(')').expect("comm") + 2..];
        let fields: Vec<&str> = after.split(' ').collect();
        let ticks: u64 =
            fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
        ticks as f64 / procfs::ticks_per_second() as f64
    }

    fn value(families: &[MetricFamily], name: &str) -> Option<f64> {
        families.iter().find(|f| f.name() == name).map(|f| {
            let m = &f.get_metric()[0];
            if f.name().ends_with("_total") {
                m.get_counter().get_value()
            } else {
                m.get_gauge().get_value()
            }
        })
    }

    #[test]
    fn cpu_seconds_keep_the_fraction() {
        let collector = ProcessMetrics::new().expect("metrics");
        // Burn CPU until the kernel's figure has a fractional part (a whole
        // number of seconds would prove nothing).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let mut x = 0u64;
        while cpu_from_stat().fract() == 0.0 && std::time::Instant::now() < deadline {
            for i in 0..100_000u64 {
                x = x.wrapping_mul(31).wrapping_add(i);
            }
        }
        std::hint::black_box(x);
        let before = cpu_from_stat();
        let families = collector.collect();
        let after = cpu_from_stat();
        let cpu = value(&families, "process_cpu_seconds_total").expect("cpu");
        assert!(
            before <= cpu && cpu <= after,
            "{before} <= {cpu} <= {after}"
        );
        assert!(
            cpu.fract() != 0.0 || after.fract() == 0.0,
            "{cpu} lost its fraction"
        );
        // A second scrape never goes backwards.
        let again = value(&collector.collect(), "process_cpu_seconds_total").expect("cpu");
        assert!(again >= cpu);
    }

    #[test]
    fn exports_the_whole_family() {
        let collector = ProcessMetrics::new().expect("metrics");
        let families = collector.collect();
        for name in [
            "process_cpu_seconds_total",
            "process_open_fds",
            "process_max_fds",
            "process_virtual_memory_bytes",
            "process_resident_memory_bytes",
            "process_start_time_seconds",
            "process_threads",
        ] {
            let v = value(&families, name).unwrap_or_else(|| panic!("{name} missing"));
            // CPU time may still be 0 in a fresh test process.
            assert!(
                v > 0.0 || name == "process_cpu_seconds_total" && v == 0.0,
                "{name} = {v}"
            );
        }
        assert_eq!(collector.desc().len(), 7);
        let start = value(&families, "process_start_time_seconds").expect("start");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs_f64();
        assert!(
            start <= now + 1.0 && start > now - 3600.0,
            "{start} vs {now}"
        );
    }
}
