//! Worker processes: this binary started again as `flow-bench worker`, measured
//! through /proc (CPU seconds, peak RSS) and stopped with SIGTERM.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Runs a worker in this process until SIGTERM (the `worker` subcommand): of the
/// functions with concurrency limits if `limited`, else of the others. A worker
/// serving a limited function claims in a second transaction, which the scenarios
/// that measure the plain claim must not pay for.
pub async fn serve(url: &str, concurrency: usize, limited: bool) -> Result<(), flow::Error> {
    let store = flow::PgStore::connect_with(
        url,
        flow::PgStoreOptions {
            max_connections: (concurrency as u32 / 2).clamp(4, 32),
            ..Default::default()
        },
    )
    .await?;
    let mut builder = flow::Worker::builder(flow::AnyStore::from(store)).concurrency(concurrency);
    for def in flow::registered() {
        if def.concurrency.is_empty() != limited {
            builder = builder.register_def(def);
        }
    }
    builder.build()?.run().await?;
    Ok(())
}

/// Worker processes of one scenario.
pub struct Workers {
    children: Vec<Child>,
}

/// What the worker processes used.
#[derive(Clone, Copy, Debug, Default)]
pub struct Usage {
    pub cpu_seconds: f64,
    pub peak_rss_kib: u64,
}

impl Workers {
    pub fn start(url: &str, count: usize, concurrency: usize) -> std::io::Result<Workers> {
        Workers::spawn(url, count, concurrency, false)
    }

    /// Workers of the functions with concurrency limits.
    pub fn start_limited(url: &str, count: usize, concurrency: usize) -> std::io::Result<Workers> {
        Workers::spawn(url, count, concurrency, true)
    }

    fn spawn(
        url: &str,
        count: usize,
        concurrency: usize,
        limited: bool,
    ) -> std::io::Result<Workers> {
        let exe = std::env::current_exe()?;
        let children = (0..count)
            .map(|_| {
                Command::new(&exe)
                    .args([
                        "worker",
                        "--url",
                        url,
                        "--concurrency",
                        &concurrency.to_string(),
                    ])
                    .args(limited.then_some("--limited"))
                    .stdout(Stdio::null())
                    .stderr(Stdio::inherit())
                    .spawn()
            })
            .collect::<Result<_, _>>()?;
        Ok(Workers { children })
    }

    /// CPU seconds so far (summed) and the largest peak RSS among the processes.
    pub fn usage(&self) -> Usage {
        let mut usage = Usage::default();
        for child in &self.children {
            let (cpu, rss) = proc_usage(child.id());
            usage.cpu_seconds += cpu;
            usage.peak_rss_kib = usage.peak_rss_kib.max(rss);
        }
        usage
    }

    /// Current RSS of the largest process, in KiB.
    pub fn rss_kib(&self) -> u64 {
        self.children
            .iter()
            .map(|c| status_field(c.id(), "VmRSS:"))
            .max()
            .unwrap_or(0)
    }

    pub fn stop(mut self) {
        for child in &self.children {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
        }
        for child in &mut self.children {
            let deadline = std::time::Instant::now() + Duration::from_secs(40);
            while std::time::Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// CPU seconds this process has used.
pub fn own_cpu_seconds() -> f64 {
    proc_usage(std::process::id()).0
}

/// Peak RSS of this process, in KiB.
pub fn own_peak_rss_kib() -> u64 {
    status_field(std::process::id(), "VmHWM:")
}

fn proc_usage(pid: u32) -> (f64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let cpu = (ticks(11) + ticks(12)) / clock_ticks();
    (cpu, status_field(pid, "VmHWM:"))
}

fn status_field(pid: u32, name: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}
