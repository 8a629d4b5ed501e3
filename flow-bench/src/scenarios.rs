//! The scenarios: each on a database of its own, with worker processes of its own.

use std::time::{Duration, Instant};

use flow::{AnyStore, PgStore, PgStoreOptions, RunStatus};
use sqlx::{Connection, PgPool, Row as _};

use crate::functions::{FanOut, Keyed, Matched, Retry, Sleeper, ThreeSteps, Waiter};
use crate::report::{Row, with_latencies};
use crate::workers::Workers;

pub type BenchResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// The server the bench was given, and the sizes to use.
pub struct Bench {
    pub server: String,
    pub large: bool,
    /// Sleepers in scenario 4 (`--sleepers N`).
    pub sleepers: Option<u64>,
    /// Waiters in scenario 5 (`--waiters N`).
    pub waiters: Option<u64>,
    /// Runs each worker process drives at once (`--concurrency N`, default 32).
    pub concurrency: usize,
}

/// A database made for one scenario, dropped at the end.
pub struct Database {
    pub url: String,
    pub pool: PgPool,
    pub client: flow::Client,
    name: String,
    server: String,
}

impl Bench {
    pub async fn database(&self, scenario: &str) -> BenchResult<Database> {
        let name = format!("flow_bench_{scenario}_{}", std::process::id()).replace('-', "_");
        let mut conn = sqlx::PgConnection::connect(&self.server).await?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {name}"
        )))
        .execute(&mut conn)
        .await?;
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await?;
        conn.close().await?;
        let url = with_database(&self.server, &name);
        let store = PgStore::connect_with(
            &url,
            PgStoreOptions {
                max_connections: 8,
                ..Default::default()
            },
        )
        .await?;
        let pool = PgPool::connect(&url).await?;
        Ok(Database {
            client: flow::Client::new(AnyStore::from(store)),
            url,
            pool,
            name,
            server: self.server.clone(),
        })
    }
}

impl Database {
    pub async fn drop(self) -> BenchResult<()> {
        self.pool.close().await;
        drop(self.client);
        let mut conn = sqlx::PgConnection::connect(&self.server).await?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        )))
        .execute(&mut conn)
        .await?;
        Ok(())
    }

    /// Waits until `workers` processes have announced `function` and listen.
    async fn ready(&self, function: &str, workers: i64) -> BenchResult<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let announced: i64 =
                sqlx::query_scalar("SELECT count(*) FROM flow.functions WHERE id = $1")
                    .bind(function)
                    .fetch_one(&self.pool)
                    .await?;
            let listening: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND query ILIKE 'LISTEN%'",
            )
            .fetch_one(&self.pool)
            .await?;
            if announced == 1 && listening >= workers {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err("workers did not start within 60 s".into());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until `n` runs have finished.
    async fn finished(&self, n: i64, timeout: Duration) -> BenchResult<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let done: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM flow.runs WHERE status IN ('completed', 'failed')",
            )
            .fetch_one(&self.pool)
            .await?;
            if done >= n {
                let failed: i64 =
                    sqlx::query_scalar("SELECT count(*) FROM flow.runs WHERE status = 'failed'")
                        .fetch_one(&self.pool)
                        .await?;
                if failed > 0 {
                    return Err(format!("{failed} runs failed").into());
                }
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!("only {done} of {n} runs finished within {timeout:?}").into());
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Per run: milliseconds from `sent_us` (taken before send) to `column`.
    async fn latencies_ms(&self, sql: &'static str) -> BenchResult<Vec<f64>> {
        let rows = sqlx::query(sql).fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| Ok(r.try_get::<f64, _>(0)? / 1000.0))
            .collect()
    }

    /// Sends three-step runs numbered `ns` one at a time, each awaited as a user
    /// waits (woken by the finish's announcement, not a poll); fails unless each
    /// completed.
    async fn one_at_a_time(&self, ns: std::ops::Range<u64>) -> BenchResult<()> {
        for n in ns {
            let sent_us = now_us();
            let run = self.client.send(ThreeSteps { sent_us, n }).await?.runs[0].1;
            let view = self.client.wait(run, Duration::from_secs(60)).await?;
            if view.status != RunStatus::Completed {
                return Err(format!("run {run} ended {}", view.status).into());
            }
        }
        Ok(())
    }

    async fn count(&self, sql: &'static str) -> BenchResult<i64> {
        Ok(sqlx::query_scalar(sql).fetch_one(&self.pool).await?)
    }

    /// Microseconds from `t0_us` to the last run's end.
    async fn span_seconds(&self, t0_us: i64) -> BenchResult<f64> {
        let last: f64 = sqlx::query_scalar(
            "SELECT (extract(epoch FROM max(finished_at)) * 1e6)::float8 FROM flow.runs",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok((last - t0_us as f64) / 1e6)
    }
}

pub fn now_us() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

fn with_database(url: &str, name: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, String::new()), |(b, q)| (b, format!("?{q}")));
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let host_end = base[scheme_end..]
        .find('/')
        .map_or(base.len(), |i| i + scheme_end);
    format!("{}/{name}{query}", &base[..host_end])
}

const RUN_LATENCY: &str =
    "SELECT (extract(epoch FROM r.finished_at) * 1e6)::float8 - (e.data->>'sent_us')::float8
     FROM flow.runs r JOIN flow.events e ON e.id = r.event_id";

/// Scenario 1: N runs of three trivial steps, events sent in batches.
pub async fn throughput(bench: &Bench, workers: usize, best_baseline: f64) -> BenchResult<Row> {
    let n: u64 = if bench.large { 200_000 } else { 20_000 };
    let db = bench.database("throughput").await?;
    let procs = Workers::start(&db.url, workers, bench.concurrency)?;
    db.ready("three_steps", workers as i64).await?;
    let t0 = now_us();
    for chunk in (0..n).collect::<Vec<_>>().chunks(1000) {
        let sent_us = now_us();
        db.client
            .send_batch(chunk.iter().map(|&n| ThreeSteps { sent_us, n }))
            .await?;
    }
    db.finished(n as i64, Duration::from_secs(600)).await?;
    let usage = procs.usage();
    // What the workers opened at their defaults (the bench's own included).
    let connections = db
        .count("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()")
        .await?;
    procs.stop();
    let seconds = db.span_seconds(t0).await?;
    let steps = db.count("SELECT count(*) FROM flow.steps").await?;
    let mut note = format!(
        "{:.0} runs/s; {connections} connections",
        n as f64 / seconds
    );
    if steps != 3 * n as i64 {
        note = format!("{note}; CHECKPOINT ROWS {steps} != STEPS {}", 3 * n);
    }
    let steps_per_second = 3.0 * n as f64 / seconds;
    let row = Row {
        scenario: format!(
            "1. throughput, {workers} worker{}",
            if workers == 1 { "" } else { "s" }
        ),
        count: n,
        unit: "steps/s".into(),
        throughput: Some(steps_per_second),
        cpu_seconds: Some(usage.cpu_seconds),
        peak_rss_mib: Some(usage.peak_rss_kib as f64 / 1024.0),
        ratio: Some(steps_per_second / best_baseline),
        note,
        ..Row::default()
    };
    let row = with_latencies(row, db.latencies_ms(RUN_LATENCY).await?);
    db.drop().await?;
    Ok(row)
}

/// Scenario 9: scenario 1's runs of three steps spread over 1,000 keys, one run at
/// a time per key (`concurrency(limit = 1, key = "event.data.key")`) under a shared
/// throttle of 100,000 starts a second, against the same runs without a limit; two
/// worker processes each.
pub async fn concurrency(bench: &Bench) -> BenchResult<Vec<Row>> {
    let n: u64 = if bench.large { 200_000 } else { 20_000 };
    const KEYS: u64 = 1_000;
    let mut rows = Vec::new();
    let mut unlimited = None;
    for limited in [false, true] {
        let db = bench
            .database(if limited { "keyed" } else { "unkeyed" })
            .await?;
        let (procs, function) = if limited {
            let procs = Workers::start_limited(&db.url, 2, bench.concurrency)?;
            (procs, "keyed_three_steps")
        } else {
            (
                Workers::start(&db.url, 2, bench.concurrency)?,
                "three_steps",
            )
        };
        db.ready(function, 2).await?;
        let t0 = now_us();
        for chunk in (0..n).collect::<Vec<_>>().chunks(1000) {
            let sent_us = now_us();
            if limited {
                let events = chunk.iter().map(|&n| Keyed {
                    sent_us,
                    n,
                    key: n % KEYS,
                });
                db.client.send_batch(events).await?;
            } else {
                db.client
                    .send_batch(chunk.iter().map(|&n| ThreeSteps { sent_us, n }))
                    .await?;
            }
        }
        db.finished(n as i64, Duration::from_secs(600)).await?;
        let usage = procs.usage();
        procs.stop();
        let seconds = db.span_seconds(t0).await?;
        let steps = db.count("SELECT count(*) FROM flow.steps").await?;
        let steps_per_second = 3.0 * n as f64 / seconds;
        let mut note = format!("{:.0} runs/s", n as f64 / seconds);
        if limited {
            // Runs of one key whose executions overlapped: the limit says none.
            let overlaps = db
                .count(
                    "SELECT count(*) FROM (
                         SELECT r.started_at, lag(r.finished_at) OVER (
                                    PARTITION BY e.data->>'key' ORDER BY r.started_at) AS before
                         FROM flow.runs r JOIN flow.events e ON e.id = r.event_id) x
                     WHERE x.before > x.started_at",
                )
                .await?;
            note = format!("{note}; {overlaps} overlapping runs of one key");
            if let Some(plain) = unlimited {
                note = format!(
                    "{note}; {:.0}% of the steps/s without a limit",
                    100.0 * steps_per_second / plain
                );
            }
        } else {
            unlimited = Some(steps_per_second);
        }
        if steps != 3 * n as i64 {
            note = format!("{note}; CHECKPOINT ROWS {steps} != STEPS {}", 3 * n);
        }
        let row = Row {
            scenario: if limited {
                "9. concurrency: one run at a time per key, 1,000 keys, throttle, 2 workers".into()
            } else {
                "9. concurrency: the same runs without a limit, 2 workers".into()
            },
            count: n,
            unit: "steps/s".into(),
            throughput: Some(steps_per_second),
            cpu_seconds: Some(usage.cpu_seconds),
            peak_rss_mib: Some(usage.peak_rss_kib as f64 / 1024.0),
            note,
            ..Row::default()
        };
        rows.push(with_latencies(row, db.latencies_ms(RUN_LATENCY).await?));
        db.drop().await?;
    }
    Ok(rows)
}

/// Scenario 2: one event at a time into an idle worker.
pub async fn latency(bench: &Bench) -> BenchResult<Vec<Row>> {
    let n: u64 = if bench.large { 10_000 } else { 1_000 };
    let db = bench.database("latency").await?;
    let procs = Workers::start(&db.url, 1, bench.concurrency)?;
    db.ready("three_steps", 1).await?;
    db.one_at_a_time(0..n).await?;
    let usage = procs.usage();
    procs.stop();
    let first_step = db
        .latencies_ms(
            "SELECT (extract(epoch FROM min(s.started_at)) * 1e6)::float8 - max((e.data->>'sent_us')::float8)
             FROM flow.runs r JOIN flow.events e ON e.id = r.event_id JOIN flow.steps s ON s.run_id = r.id
             GROUP BY r.id",
        )
        .await?;
    let whole = db.latencies_ms(RUN_LATENCY).await?;
    let base = Row {
        count: n,
        cpu_seconds: Some(usage.cpu_seconds),
        peak_rss_mib: Some(usage.peak_rss_kib as f64 / 1024.0),
        ..Row::default()
    };
    let rows = vec![
        with_latencies(
            Row {
                scenario: "2. latency: sent -> first step".into(),
                ..base.clone()
            },
            first_step,
        ),
        with_latencies(
            Row {
                scenario: "2. latency: sent -> run done".into(),
                ..base
            },
            whole,
        ),
    ];
    db.drop().await?;
    Ok(rows)
}

/// Scenario 3: events that each start 10 functions.
pub async fn fan_out(bench: &Bench, best_baseline: f64) -> BenchResult<Row> {
    let events: u64 = if bench.large { 10_000 } else { 1_000 };
    let db = bench.database("fan_out").await?;
    let procs = Workers::start(&db.url, 1, bench.concurrency)?;
    db.ready("fan_9", 1).await?;
    let t0 = now_us();
    for _ in 0..events / 100 {
        let sent_us = now_us();
        db.client
            .send_batch((0..100).map(|_| FanOut { sent_us }))
            .await?;
    }
    let runs = events * 10;
    db.finished(runs as i64, Duration::from_secs(600)).await?;
    let usage = procs.usage();
    procs.stop();
    let seconds = db.span_seconds(t0).await?;
    let row = Row {
        scenario: "3. fan-out, 10 functions per event".into(),
        count: runs,
        unit: "runs/s".into(),
        throughput: Some(runs as f64 / seconds),
        cpu_seconds: Some(usage.cpu_seconds),
        peak_rss_mib: Some(usage.peak_rss_kib as f64 / 1024.0),
        ratio: Some(runs as f64 / seconds / best_baseline),
        note: format!("{events} events"),
        ..Row::default()
    };
    let row = with_latencies(row, db.latencies_ms(RUN_LATENCY).await?);
    db.drop().await?;
    Ok(row)
}

/// Workers the sleepers share.
const SLEEPER_WORKERS: usize = 4;

/// Scenario 4: runs that sleep 10-70 s, spread over four workers; how late they
/// wake, and worker memory. The sleeps are spread over a minute so that the wake-ups
/// (about 1,700 a second for 100,000 runs) stay within what the workers can run:
/// the lateness then measures the wake-up path, not a backlog.
pub async fn sleepers(bench: &Bench) -> BenchResult<Row> {
    let n: u64 = bench
        .sleepers
        .unwrap_or(if bench.large { 1_000_000 } else { 100_000 });
    let db = bench.database("sleepers").await?;
    let procs = Workers::start(&db.url, SLEEPER_WORKERS, bench.concurrency)?;
    db.ready("sleeper", SLEEPER_WORKERS as i64).await?;
    let idle_rss = procs.rss_kib();
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut random_ms = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        10_000 + seed % 60_001
    };
    let t0 = now_us();
    for chunk in (0..n).collect::<Vec<_>>().chunks(5000) {
        let sent_us = now_us();
        let events: Vec<Sleeper> = chunk
            .iter()
            .map(|_| Sleeper {
                sent_us,
                sleep_ms: random_ms(),
            })
            .collect();
        db.client.send_batch(events).await?;
    }
    let sent_seconds = (now_us() - t0) as f64 / 1e6;
    // Sample memory while runs sleep.
    let mut sleeping_rss = 0;
    let deadline = Instant::now() + Duration::from_secs(900);
    loop {
        sleeping_rss = sleeping_rss.max(procs.rss_kib());
        let done = db
            .count("SELECT count(*) FROM flow.runs WHERE status = 'completed'")
            .await?;
        if done >= n as i64 || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    db.finished(n as i64, Duration::from_secs(1)).await?;
    let usage = procs.usage();
    procs.stop();
    let lateness = db
        .latencies_ms(
            "SELECT (extract(epoch FROM s.started_at - n.wake_at) * 1e6)::float8
             FROM flow.steps n JOIN flow.steps s ON s.run_id = n.run_id AND s.key = 'first'
             WHERE n.key = 'nap'",
        )
        .await?;
    let seconds = db.span_seconds(t0).await?;
    let row = Row {
        scenario: format!("4. sleepers: wake-up lateness, {SLEEPER_WORKERS} workers"),
        count: n,
        unit: "runs/s".into(),
        throughput: Some(n as f64 / seconds),
        cpu_seconds: Some(usage.cpu_seconds),
        peak_rss_mib: Some(usage.peak_rss_kib as f64 / 1024.0),
        note: format!(
            "sent in {sent_seconds:.1} s; largest worker RSS {:.1} MiB idle, at most {:.1} MiB while runs slept",
            idle_rss as f64 / 1024.0,
            sleeping_rss as f64 / 1024.0
        ),
        ..Row::default()
    };
    let row = with_latencies(row, lateness);
    db.drop().await?;
    Ok(row)
}

/// Workers the waiters share.
const WAITER_WORKERS: usize = 2;
/// Unrelated events sent one at a time, before the waiters exist and while they wait.
const UNRELATED: u64 = 200;

/// Scenario 5: N runs waiting on distinct keys, then the matching events of a
/// tenth of them (every tenth key, so the matched runs are spread over the
/// table), in bursts of 25 paced at 500 a second (within what two workers resume,
/// so the figure measures the match path, not a backlog): how long from a match's
/// send to its run's next step. Then a hundredth more (keys ending in 5), each
/// sent alone at 50 a second: the path of one match, with nothing queued beside it. And the latency of an unrelated event (a three-step run,
/// sent one at a time) with no waiters and with N: matching goes through an
/// index, so N waiters must not slow the rest.
pub async fn waiters(bench: &Bench) -> BenchResult<Vec<Row>> {
    let n: u64 = bench
        .waiters
        .unwrap_or(if bench.large { 1_000_000 } else { 100_000 });
    let db = bench.database("waiters").await?;
    let procs = Workers::start(&db.url, WAITER_WORKERS, bench.concurrency)?;
    db.ready("waiter", WAITER_WORKERS as i64).await?;
    db.one_at_a_time(0..UNRELATED).await?;

    let t0 = now_us();
    for chunk in (0..n).collect::<Vec<_>>().chunks(5000) {
        let sent_us = now_us();
        db.client
            .send_batch(chunk.iter().map(|i| Waiter {
                sent_us,
                key: format!("key-{i}"),
            }))
            .await?;
    }
    let deadline = Instant::now() + Duration::from_secs(900);
    while db
        .count("SELECT count(*) FROM flow.runs WHERE status = 'waiting'")
        .await?
        < n as i64
    {
        if Instant::now() > deadline {
            return Err("the waiters did not all wait within 900 s".into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let waiting_seconds = (now_us() - t0) as f64 / 1e6;
    db.one_at_a_time(UNRELATED..2 * UNRELATED).await?;

    // The matches, in batches of 25 every 50 ms.
    let matched: Vec<u64> = (0..n).step_by(10).collect();
    let pace = Duration::from_millis(50);
    let mut next = Instant::now();
    for chunk in matched.chunks(25) {
        tokio::time::sleep_until(next.into()).await;
        next += pace;
        let sent_us = now_us();
        db.client
            .send_batch(chunk.iter().map(|i| Matched {
                sent_us,
                key: format!("key-{i}"),
                paced: false,
            }))
            .await?;
    }
    let paced: Vec<u64> = (5..n).step_by(100).collect();
    let pace = Duration::from_millis(20);
    let mut next = Instant::now();
    for i in &paced {
        tokio::time::sleep_until(next.into()).await;
        next += pace;
        let sent_us = now_us();
        db.client
            .send(Matched {
                sent_us,
                key: format!("key-{i}"),
                paced: true,
            })
            .await?;
    }
    let ended = (matched.len() + paced.len()) as i64 + 2 * UNRELATED as i64;
    db.finished(ended, Duration::from_secs(600)).await?;
    let usage = procs.usage();
    procs.stop();
    let resumed = db
        .latencies_ms(
            "SELECT (extract(epoch FROM s.started_at) * 1e6)::float8
                    - (w.output->'data'->>'sent_us')::float8
             FROM flow.steps w JOIN flow.steps s ON s.run_id = w.run_id AND s.key = 'first'
             WHERE w.key = 'match' AND NOT (w.output->'data'->>'paced')::boolean",
        )
        .await?;
    let resumed_alone = db
        .latencies_ms(
            "SELECT (extract(epoch FROM s.started_at) * 1e6)::float8
                    - (w.output->'data'->>'sent_us')::float8
             FROM flow.steps w JOIN flow.steps s ON s.run_id = w.run_id AND s.key = 'first'
             WHERE w.key = 'match' AND (w.output->'data'->>'paced')::boolean",
        )
        .await?;
    // The unrelated runs numbered below UNRELATED ran before the waiters existed.
    let mut before = Vec::new();
    let mut during = Vec::new();
    for row in sqlx::query(
        "SELECT (e.data->>'n')::bigint,
                (extract(epoch FROM r.finished_at) * 1e6)::float8 - (e.data->>'sent_us')::float8
         FROM flow.runs r JOIN flow.events e ON e.id = r.event_id
         WHERE r.function_id = 'three_steps'",
    )
    .fetch_all(&db.pool)
    .await?
    {
        let (n, us): (i64, f64) = (row.try_get(0)?, row.try_get(1)?);
        let phase = if (n as u64) < UNRELATED {
            &mut before
        } else {
            &mut during
        };
        phase.push(us / 1000.0);
    }
    let base = Row {
        cpu_seconds: Some(usage.cpu_seconds),
        peak_rss_mib: Some(usage.peak_rss_kib as f64 / 1024.0),
        ..Row::default()
    };
    let rows = vec![
        with_latencies(
            Row {
                scenario: format!(
                    "5. waiters: match sent -> run resumed, {WAITER_WORKERS} workers"
                ),
                count: matched.len() as u64,
                note: format!(
                    "{n} runs waited on distinct keys after {waiting_seconds:.1} s; \
                     every tenth matched, in bursts of 25 at 500/s"
                ),
                ..base.clone()
            },
            resumed,
        ),
        with_latencies(
            Row {
                scenario: "5. waiters: match sent alone -> run resumed".into(),
                count: paced.len() as u64,
                note: format!("one match at a time at 50/s, among {n} waiting runs"),
                ..base.clone()
            },
            resumed_alone,
        ),
        with_latencies(
            Row {
                scenario: "5. waiters: unrelated event -> run done, 0 waiters".into(),
                count: UNRELATED,
                ..base.clone()
            },
            before,
        ),
        with_latencies(
            Row {
                scenario: format!("5. waiters: unrelated event -> run done, {n} waiters"),
                count: UNRELATED,
                ..base
            },
            during,
        ),
    ];
    db.drop().await?;
    Ok(rows)
}

/// Scenario 6: a step that fails twice then succeeds, against the same run without
/// failures: the wall time one retry adds at concurrency 32.
pub async fn retries(bench: &Bench) -> BenchResult<Row> {
    let n: u64 = if bench.large { 20_000 } else { 2_000 };
    let mut seconds = [0.0; 2];
    let mut usage = crate::workers::Usage::default();
    let mut latencies = Vec::new();
    for (i, failures) in [0u32, 2].into_iter().enumerate() {
        let db = bench.database("retries").await?;
        let procs = Workers::start(&db.url, 1, bench.concurrency)?;
        db.ready("retry", 1).await?;
        let t0 = now_us();
        for chunk in (0..n).collect::<Vec<_>>().chunks(1000) {
            let sent_us = now_us();
            db.client
                .send_batch(chunk.iter().map(|_| Retry { sent_us, failures }))
                .await?;
        }
        db.finished(n as i64, Duration::from_secs(600)).await?;
        usage = procs.usage();
        procs.stop();
        seconds[i] = db.span_seconds(t0).await?;
        let attempts = db.count("SELECT count(*) FROM flow.attempts").await?;
        if attempts != (n * failures as u64) as i64 {
            return Err(format!(
                "expected {} failed attempts, found {attempts}",
                n * failures as u64
            )
            .into());
        }
        if failures > 0 {
            latencies = db.latencies_ms(RUN_LATENCY).await?;
        }
        db.drop().await?;
    }
    let per_retry_ms = (seconds[1] - seconds[0]) * 1000.0 / (2 * n) as f64;
    let row = Row {
        scenario: "6. retries: 2 failures per run".into(),
        count: n,
        unit: "runs/s".into(),
        throughput: Some(n as f64 / seconds[1]),
        cpu_seconds: Some(usage.cpu_seconds),
        peak_rss_mib: Some(usage.peak_rss_kib as f64 / 1024.0),
        note: format!(
            "{:.0} runs/s without failures; each retry adds {per_retry_ms:.3} ms of wall time",
            n as f64 / seconds[0]
        ),
        ..Row::default()
    };
    Ok(with_latencies(row, latencies))
}

/// Scenario 7: throughput and latency alone on an SQLite file. SQLite is for one
/// process, so the worker runs inside the bench process, beside the producer.
pub async fn sqlite(bench: &Bench) -> BenchResult<Vec<Row>> {
    let dir = std::env::temp_dir().join(format!("flow-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let mut rows = Vec::new();
    for scenario in ["throughput", "latency"] {
        let path = dir.join(format!("{scenario}.db"));
        let _ = std::fs::remove_file(&path);
        let store = flow::AnyStore::from(
            flow::SqliteStore::connect(&format!("sqlite://{}", path.display())).await?,
        );
        let worker = flow::Worker::builder(store.clone())
            .register::<crate::functions::three_steps>()
            .concurrency(bench.concurrency)
            .build()?;
        worker.announce().await?;
        let running = worker.spawn();
        let client = flow::Client::new(store);
        let cpu_before = crate::workers::own_cpu_seconds();
        let t0 = now_us();
        let mut latencies = Vec::new();
        let mut first_steps = Vec::new();
        let n: u64 = if scenario == "throughput" {
            let n = if bench.large { 200_000 } else { 20_000 };
            let mut runs = Vec::new();
            for chunk in (0..n).collect::<Vec<_>>().chunks(1000) {
                let sent_us = now_us();
                let receipt = client
                    .send_batch(chunk.iter().map(|&n| ThreeSteps { sent_us, n }))
                    .await?;
                runs.extend(receipt.runs.into_iter().map(|(_, run)| (sent_us, run)));
            }
            for (sent_us, run) in runs {
                let view = client.wait(run, Duration::from_secs(600)).await?;
                latencies.push(ms_since(sent_us, view.finished_at));
            }
            n
        } else {
            let n = if bench.large { 10_000 } else { 1_000 };
            for i in 0..n {
                let sent_us = now_us();
                let run = client.send(ThreeSteps { sent_us, n: i }).await?.runs[0].1;
                let view = client.wait(run, Duration::from_secs(60)).await?;
                latencies.push(ms_since(sent_us, view.finished_at));
                first_steps.push(ms_since(sent_us, Some(view.steps[0].started_at)));
            }
            n
        };
        let seconds = (now_us() - t0) as f64 / 1e6;
        let cpu = crate::workers::own_cpu_seconds() - cpu_before;
        running.stop().await?;
        let base = Row {
            count: n,
            cpu_seconds: Some(cpu),
            peak_rss_mib: Some(crate::workers::own_peak_rss_kib() as f64 / 1024.0),
            note: "worker in the bench process (SQLite is for one process); CPU and RSS are the whole process".into(),
            ..Row::default()
        };
        if scenario == "throughput" {
            rows.push(with_latencies(
                Row {
                    scenario: "7. SQLite: throughput".into(),
                    unit: "steps/s".into(),
                    throughput: Some(3.0 * n as f64 / seconds),
                    ..base
                },
                latencies,
            ));
        } else {
            rows.push(with_latencies(
                Row {
                    scenario: "7. SQLite: latency: sent -> first step".into(),
                    ..base.clone()
                },
                first_steps,
            ));
            rows.push(with_latencies(
                Row {
                    scenario: "7. SQLite: latency: sent -> run done".into(),
                    ..base
                },
                latencies,
            ));
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(rows)
}

fn ms_since(sent_us: i64, at: Option<chrono::DateTime<chrono::Utc>>) -> f64 {
    at.map_or(f64::NAN, |t| {
        (t.timestamp_micros() - sent_us) as f64 / 1000.0
    })
}

/// Memory per in-flight run: one worker holds N runs mid-step at once; its RSS then,
/// less its RSS idle, divided by N.
pub async fn memory(bench: &Bench) -> BenchResult<Row> {
    let n: u64 = if bench.large { 50_000 } else { 5_000 };
    let db = bench.database("memory").await?;
    let procs = Workers::start(&db.url, 1, n as usize)?;
    db.ready("hold", 1).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let idle_kib = procs.rss_kib();
    db.client
        .send_batch((0..n).map(|_| crate::functions::Hold { hold_ms: 4000 }))
        .await?;
    // Every run has checkpointed its first step and sits in the held one.
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut held_kib = 0;
    loop {
        let first = db
            .count("SELECT count(*) FROM flow.steps WHERE key = 'first'")
            .await?;
        if first >= n as i64 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            held_kib = held_kib.max(procs.rss_kib());
            break;
        }
        if Instant::now() > deadline {
            return Err(format!("only {first} of {n} runs reached the held step").into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    db.finished(n as i64, Duration::from_secs(120)).await?;
    let usage = procs.usage();
    procs.stop();
    let per_run = (held_kib.saturating_sub(idle_kib)) as f64 * 1024.0 / n as f64;
    let row = Row {
        scenario: "memory: runs in flight in one worker".into(),
        count: n,
        cpu_seconds: Some(usage.cpu_seconds),
        peak_rss_mib: Some(usage.peak_rss_kib as f64 / 1024.0),
        note: format!(
            "RSS {:.1} MiB idle, {:.1} MiB with {n} runs mid-step: {:.1} KiB per in-flight run",
            idle_kib as f64 / 1024.0,
            held_kib as f64 / 1024.0,
            per_run / 1024.0
        ),
        ..Row::default()
    };
    db.drop().await?;
    Ok(row)
}
