//! flow-bench: measures flow against what PostgreSQL itself does on the same
//! machine, in one run, and prints one table (or `--json`).
//!
//! ```text
//! flow-bench [--url URL] [--json] [--large] [--only a,b] [--baseline-secs N] [--sleepers N]
//!            [--waiters N]
//!            [--concurrency N]
//! ```
//!
//! URL defaults to DATABASE_URL, else postgres://postgres@127.0.0.1:5432/postgres.
//! Each scenario gets a database of its own on that server, and worker processes of
//! its own (this binary, started again as `flow-bench worker`).

mod baseline;
mod functions;
mod report;
mod scenarios;
mod workers;

use std::time::Duration;

use report::Row;
use scenarios::{Bench, BenchResult};

const SCENARIOS: &[&str] = &[
    "baseline",
    "throughput",
    "latency",
    "fan-out",
    "sleepers",
    "waiters",
    "retries",
    "concurrency",
    "memory",
    "sqlite",
];

struct Args {
    url: String,
    json: bool,
    large: bool,
    only: Vec<String>,
    baseline_secs: u64,
    sleepers: Option<u64>,
    waiters: Option<u64>,
    concurrency: usize,
}

/// A count given to `flag`: a whole number above zero.
fn count(text: String, flag: &str) -> Result<u64, String> {
    text.parse()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("{flag} takes a whole number above zero\n{}", usage()))
}

fn usage() -> String {
    format!(
        "usage: flow-bench [--url URL] [--json] [--large] [--only SCENARIO,...] [--baseline-secs N] [--sleepers N] [--waiters N] [--concurrency N]\n\
         scenarios: {}",
        SCENARIOS.join(", ")
    )
}

fn parse(mut args: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut parsed = Args {
        url: std::env::var("DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into()),
        json: false,
        large: false,
        only: Vec::new(),
        baseline_secs: 3,
        sleepers: None,
        waiters: None,
        concurrency: flow::DEFAULT_CONCURRENCY,
    };
    while let Some(arg) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .ok_or_else(|| format!("{name} needs a value\n{}", usage()))
        };
        match arg.as_str() {
            "--url" => parsed.url = value("--url")?,
            "--json" => parsed.json = true,
            "--large" => parsed.large = true,
            "--only" => {
                for name in value("--only")?.split(',') {
                    if !SCENARIOS.contains(&name) {
                        return Err(format!("unknown scenario `{name}`\n{}", usage()));
                    }
                    parsed.only.push(name.to_owned());
                }
            }
            "--baseline-secs" => {
                parsed.baseline_secs = value("--baseline-secs")?
                    .parse()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| {
                        format!(
                            "--baseline-secs takes a whole number of seconds above zero\n{}",
                            usage()
                        )
                    })?
            }
            "--sleepers" => parsed.sleepers = Some(count(value("--sleepers")?, "--sleepers")?),
            "--waiters" => parsed.waiters = Some(count(value("--waiters")?, "--waiters")?),
            "--concurrency" => {
                parsed.concurrency = value("--concurrency")?
                    .parse()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| {
                        format!("--concurrency takes a whole number above zero\n{}", usage())
                    })?
            }
            "-h" | "--help" => return Err(usage()),
            other => return Err(format!("unknown argument `{other}`\n{}", usage())),
        }
    }
    Ok(parsed)
}

#[tokio::main]
async fn main() {
    let mut argv = std::env::args().skip(1).peekable();
    if argv.peek().map(String::as_str) == Some("worker") {
        argv.next();
        let (mut url, mut concurrency, mut limited) = (None, flow::DEFAULT_CONCURRENCY, false);
        while let Some(arg) = argv.next() {
            match arg.as_str() {
                "--url" => url = argv.next(),
                "--limited" => limited = true,
                "--concurrency" => {
                    concurrency = argv
                        .next()
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(flow::DEFAULT_CONCURRENCY)
                }
                _ => {}
            }
        }
        let url = url.expect("flow-bench worker --url URL");
        // A worker's warnings (failed or retried writes, lost leases) explain a bad
        // figure, so they reach the bench's stderr; RUST_LOG overrides the level.
        tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
            )
            .with_writer(std::io::stderr)
            .init();
        if let Err(e) = workers::serve(&url, concurrency, limited).await {
            eprintln!("flow-bench worker: {e}");
            std::process::exit(1);
        }
        return;
    }
    let args = match parse(argv) {
        Ok(args) => args,
        Err(message) => {
            eprintln!("{message}");
            std::process::exit(2);
        }
    };
    match run(&args).await {
        Ok(rows) => {
            if args.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&rows).expect("rows serialize")
                );
            } else {
                report::print_table(&rows);
            }
        }
        Err(e) => {
            eprintln!("flow-bench: {e}");
            std::process::exit(1);
        }
    }
}

async fn run(args: &Args) -> BenchResult<Vec<Row>> {
    let wanted = |name: &str| args.only.is_empty() || args.only.iter().any(|o| o == name);
    let bench = Bench {
        server: args.url.clone(),
        large: args.large,
        sleepers: args.sleepers,
        waiters: args.waiters,
        concurrency: args.concurrency,
    };
    let mut rows = Vec::new();
    let progress = |what: &str| eprintln!("flow-bench: {what}");

    // The baseline runs in every invocation, and its rows are always printed: every
    // ratio is against this run's best single-row INSERT rate, ours or pgbench's.
    progress("baseline");
    let db = bench.database("baseline").await?;
    baseline::prepare(&db.url).await?;
    let mut best_insert: f64 = 0.0;
    let clients_label =
        |clients: u32| format!("{clients} client{}", if clients == 1 { "" } else { "s" });
    for with_update in [false, true] {
        for clients in [1, 8, 32] {
            let tps = baseline::transactions_per_second(
                &db.url,
                clients,
                Duration::from_secs(args.baseline_secs),
                with_update,
            )
            .await?;
            if !with_update {
                best_insert = best_insert.max(tps);
            }
            rows.push(Row {
                scenario: format!(
                    "baseline: {}, {}",
                    if with_update {
                        "INSERT + UPDATE"
                    } else {
                        "INSERT"
                    },
                    clients_label(clients)
                ),
                unit: "tx/s".into(),
                throughput: Some(tps),
                ..Row::default()
            });
        }
    }
    for clients in [1, 8, 32] {
        let scenario = format!("baseline: pgbench INSERT, {}", clients_label(clients));
        match baseline::pgbench(&db.url, clients, Duration::from_secs(args.baseline_secs)) {
            Ok(tps) => {
                best_insert = best_insert.max(tps);
                rows.push(Row {
                    scenario,
                    unit: "tx/s".into(),
                    throughput: Some(tps),
                    ..Row::default()
                });
            }
            Err(why) => rows.push(Row {
                scenario,
                note: why,
                ..Row::default()
            }),
        }
    }
    for row in &mut rows {
        row.ratio = row.throughput.map(|tps| tps / best_insert);
    }
    db.drop().await?;

    if wanted("throughput") {
        for workers in [1, 4] {
            progress(&format!("throughput, {workers} worker processes"));
            rows.push(scenarios::throughput(&bench, workers, best_insert).await?);
        }
    }
    if wanted("latency") {
        progress("latency");
        rows.extend(scenarios::latency(&bench).await?);
    }
    if wanted("fan-out") {
        progress("fan-out");
        rows.push(scenarios::fan_out(&bench, best_insert).await?);
    }
    if wanted("sleepers") {
        progress("sleepers");
        rows.push(scenarios::sleepers(&bench).await?);
    }
    if wanted("waiters") {
        progress("waiters");
        rows.extend(scenarios::waiters(&bench).await?);
    }
    if wanted("retries") {
        progress("retries");
        rows.push(scenarios::retries(&bench).await?);
    }
    if wanted("concurrency") {
        progress("concurrency");
        rows.extend(scenarios::concurrency(&bench).await?);
    }
    if wanted("memory") {
        progress("memory");
        rows.push(scenarios::memory(&bench).await?);
    }
    if wanted("sqlite") {
        progress("sqlite");
        rows.extend(scenarios::sqlite(&bench).await?);
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::parse;

    fn args(list: &[&str]) -> Result<super::Args, String> {
        parse(list.iter().map(|s| s.to_string()))
    }

    #[test]
    fn bad_arguments_name_the_problem() {
        assert!(
            args(&["--only", "nope"])
                .err()
                .unwrap()
                .contains("unknown scenario `nope`")
        );
        assert!(
            args(&["--frobnicate"])
                .err()
                .unwrap()
                .contains("unknown argument `--frobnicate`")
        );
        assert!(
            args(&["--url"])
                .err()
                .unwrap()
                .contains("--url needs a value")
        );
        assert!(
            args(&["--baseline-secs", "0"])
                .err()
                .unwrap()
                .contains("above zero")
        );
        assert!(
            args(&["--sleepers", "x"])
                .err()
                .unwrap()
                .contains("--sleepers takes")
        );
        assert!(
            args(&["--waiters", "0"])
                .err()
                .unwrap()
                .contains("--waiters takes a whole number above zero")
        );
        let ok = args(&["--only", "latency,retries", "--json"]).unwrap();
        assert_eq!(ok.only, ["latency", "retries"]);
        assert!(ok.json);
    }
}
