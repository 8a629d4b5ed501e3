//! Real worker processes, on either backend: SIGKILLed mid-step several times and
//! started again on the same database (or file), SIGKILLed while its runs wait for
//! events and invoked runs, sharing work, and shutting down on SIGTERM.

mod common;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use flow::store::{FunctionInfo, Store};
use flow::{NewEvent, Now, RunId, RunStatus, RunView};

const WAIT: Duration = Duration::from_secs(60);

struct Setup {
    store: flow::AnyStore,
    client: flow::Client,
    url: String,
    effects: PathBuf,
}

/// A step body's start, as the worker process wrote it.
struct Effect {
    pid: u32,
    run: String,
    step: String,
    started_us: i64,
}

async fn setup() -> Setup {
    let (store, url) = common::store().await;
    // The functions the worker binary serves, announced before any worker is up so
    // that the events sent below start their runs.
    let etl = FunctionInfo::new("etl", "test/work.item");
    let order = FunctionInfo::new("order", "test/work.order");
    let review = FunctionInfo::new("review", "test/work.review");
    let limited = FunctionInfo::new("limited", "test/work.limited");
    let throttled = FunctionInfo::new("throttled", "test/work.throttled");
    let keyed = FunctionInfo::new("one_per_key", "test/work.keyed");
    let leap_day = FunctionInfo::new("leap_day", "flow/cron.leap_day");
    store
        .register_functions(
            &[etl, order, review, limited, throttled, keyed, leap_day],
            Now::Database,
        )
        .await
        .unwrap();
    let effects = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("effects-{}.txt", uuid::Uuid::new_v4().simple()));
    Setup {
        store: store.clone(),
        client: flow::Client::new(store),
        url,
        effects,
    }
}

impl Setup {
    /// Waits until every worker in `workers` has written its ready marker.
    async fn wait_until_up(&self, workers: &[&Child]) {
        let ready = |child: &Child| {
            let marker = format!(
                "{}.{}",
                self.effects.with_extension("ready").display(),
                child.id()
            );
            std::path::Path::new(&marker).exists()
        };
        common::eventually(WAIT, "the workers to be up", || async {
            workers.iter().all(|child| ready(child))
        })
        .await;
    }

    fn start_worker(&self, id: &str, slow_ms: u64) -> Child {
        self.worker_command(id, slow_ms)
            .spawn()
            .expect("start the test worker")
    }

    fn worker_command(&self, id: &str, slow_ms: u64) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_flow-test-worker"));
        command
            .env("DATABASE_URL", &self.url)
            .env("FLOW_TEST_WORKER_ID", id)
            .env("FLOW_TEST_EFFECTS", &self.effects)
            .env("FLOW_TEST_READY", self.effects.with_extension("ready"))
            .env("FLOW_TEST_LEASE_MS", "1000")
            // SQLite has no notifications across processes: its workers learn of new
            // work at the fallback poll (documented), short here.
            .env(
                "FLOW_TEST_POLL_MS",
                if common::backend() == "sqlite" {
                    "50"
                } else {
                    "3600000"
                },
            )
            .env("FLOW_TEST_SLOW_MS", slow_ms.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        command
    }

    fn effects(&self) -> Vec<Effect> {
        std::fs::read_to_string(&self.effects)
            .unwrap_or_default()
            .lines()
            .map(|line| {
                let f: Vec<&str> = line.split(' ').collect();
                Effect {
                    pid: f[0].parse().unwrap(),
                    run: f[1].into(),
                    step: f[2].into(),
                    started_us: f[3].parse().unwrap(),
                }
            })
            .collect()
    }

    /// The `hold:<key>` / `held:<key>` effects per key, as (time, +1 at a start
    /// / -1 at an end).
    fn holds(&self) -> HashMap<String, Vec<(i64, i32)>> {
        let mut moves: HashMap<String, Vec<(i64, i32)>> = HashMap::new();
        for effect in self.effects() {
            let (what, key) = effect.step.split_once(':').unwrap();
            let step = if what == "hold" { 1 } else { -1 };
            moves
                .entry(key.to_owned())
                .or_default()
                .push((effect.started_us, step));
        }
        moves
    }

    async fn views(&self, runs: &[RunId]) -> HashMap<String, RunView> {
        let mut views = HashMap::new();
        for run in runs {
            let view = self.client.run(*run).await.unwrap().unwrap();
            views.insert(run.to_string(), view);
        }
        views
    }

    async fn send_items(&self, n: i64) -> Vec<RunId> {
        let events =
            (0..n).map(|i| NewEvent::raw("test/work.item", serde_json::json!({ "n": i })).unwrap());
        let receipt = self.client.send_batch(events).await.unwrap();
        assert_eq!(receipt.runs.len() as i64, n);
        receipt.runs.into_iter().map(|(_, run)| run).collect()
    }
}

/// The most runs of one key at once, swept in time order (an end before a start
/// at the same microsecond: that run had left).
fn most_at_once(mut moves: Vec<(i64, i32)>) -> i32 {
    moves.sort();
    let (mut now, mut most) = (0, 0);
    for (_, step) in moves {
        now += step;
        most = most.max(now);
    }
    most
}

/// SIGTERMs two workers that shared the work and reads their reports: each must
/// have finished runs.
fn stop_both(a: Child, b: Child) -> (u64, String, u64, String) {
    sigterm(&a);
    sigterm(&b);
    let (finished_a, line_a) = report(a);
    let (finished_b, line_b) = report(b);
    assert!(
        finished_a > 0 && finished_b > 0,
        "each process finished runs: {line_a} / {line_b}"
    );
    (finished_a, line_a, finished_b, line_b)
}

fn sigterm(child: &Child) {
    let status = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
}

fn report(child: Child) -> (u64, String) {
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "worker exited with {}",
        output.status
    );
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    let line = stdout
        .lines()
        .find(|l| l.starts_with("REPORT"))
        .unwrap_or_else(|| panic!("no report in {stdout:?}"));
    let finished = line
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix("finished="))
        .and_then(|v| v.parse().ok())
        .unwrap();
    (finished, line.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_step_never_reruns_a_completed_step() {
    let setup = setup().await;
    let runs = setup.send_items(40).await;
    let mut worker = setup.start_worker("victim-0", 300);
    let kills = 3;
    for round in 1..=kills {
        // Checked in the store first: this process started a step body that has no
        // checkpoint yet, in a run that already has one.
        let pid = worker.id();
        common::eventually(WAIT, "the worker to be mid-step", || async {
            let effects = setup.effects();
            let views = setup.views(&runs).await;
            effects.iter().filter(|e| e.pid == pid).any(|e| {
                let view = &views[&e.run];
                view.status == RunStatus::Running
                    && !view.steps.is_empty()
                    && !view.steps.iter().any(|s| s.key == e.step)
            })
        })
        .await;
        worker.kill().unwrap(); // SIGKILL
        worker.wait().unwrap();
        worker = setup.start_worker(&format!("victim-{round}"), 300);
    }

    for run in &runs {
        let view = setup.client.wait(*run, WAIT).await.unwrap();
        assert_eq!(view.status, RunStatus::Completed, "{view:?}");
    }
    sigterm(&worker);
    report(worker);

    // Every step of every run ran, and none started again after its checkpoint.
    let effects = setup.effects();
    let views = setup.views(&runs).await;
    let distinct: HashSet<(&str, &str)> = effects
        .iter()
        .map(|e| (e.run.as_str(), e.step.as_str()))
        .collect();
    assert_eq!(distinct.len(), 40 * 3);
    for e in &effects {
        let step = views[&e.run]
            .steps
            .iter()
            .find(|s| s.key == e.step)
            .unwrap();
        // A checkpoint's time is the database's clock as the worker reads it (its
        // offset measured over a round trip, so off by up to half of one), an
        // effect's is this machine's: a tolerance of 100 ms. A body that ran again
        // after its checkpoint would start at least a lease (1 s) after the kill.
        assert!(
            e.started_us <= step.finished_at.timestamp_micros() + 100_000,
            "step {} of run {} ran after its checkpoint",
            e.step,
            e.run
        );
    }
    assert!(
        effects.len() > distinct.len(),
        "the kills interrupted no step; the test proved nothing"
    );
    let mut outputs: Vec<i64> = views
        .values()
        .map(|v| v.output.as_ref().unwrap().as_i64().unwrap())
        .collect();
    outputs.sort();
    assert_eq!(outputs, (0..40).map(|n| n * 2 + 1).collect::<Vec<i64>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_worker_processes_share_the_work_and_stop_cleanly_on_sigterm() {
    let setup = setup().await;
    // Eight slots each and 20 ms a run: one process alone needs half a second for the
    // 200 runs, long past the other's first look (at once on PostgreSQL, at its 50 ms
    // poll on SQLite), so both get work however the claims interleave. Nobody is
    // killed here, so the lease is long: with a lease of a second, renewals stuck
    // behind two processes' fsyncs on a slow disk (SQLite has one writer) let a live
    // worker's lease expire, and the other rightly ran its step again.
    let start = |id: &str| {
        setup
            .worker_command(id, 20)
            .env("FLOW_TEST_LEASE_MS", "10000")
            .env("FLOW_TEST_CONCURRENCY", "8")
            .spawn()
            .expect("start the test worker")
    };
    let a = start("a");
    let b = start("b");
    setup.wait_until_up(&[&a, &b]).await;
    let runs = setup.send_items(200).await;
    for run in &runs {
        assert_eq!(
            setup.client.wait(*run, WAIT).await.unwrap().status,
            RunStatus::Completed
        );
    }
    let (finished_a, line_a, finished_b, line_b) = stop_both(a, b);
    assert_eq!(finished_a + finished_b, 200, "{line_a} / {line_b}");
    let effects = setup.effects();
    let mut seen = HashSet::new();
    let twice: Vec<String> = effects
        .iter()
        .filter(|e| !seen.insert((e.run.as_str(), e.step.as_str())))
        .map(|e| format!("{} {} in {} at {}", e.run, e.step, e.pid, e.started_us))
        .collect();
    assert!(
        twice.is_empty(),
        "no step ran twice without a failure ({line_a} / {line_b}); again: {twice:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_parked_on_waits_signals_and_invokes_resolve_on_another_worker_after_a_sigkill() {
    let setup = setup().await;
    let events =
        (0..5).map(|i| NewEvent::raw("test/work.order", serde_json::json!({ "id": i })).unwrap());
    let orders: Vec<RunId> = setup
        .client
        .send_batch(events)
        .await
        .unwrap()
        .runs
        .into_iter()
        .map(|(_, run)| run)
        .collect();
    assert_eq!(orders.len(), 5);
    let mut first = setup.start_worker("w1", 0);
    // Each order waits for the review it invoked, each review for its approval.
    common::eventually(WAIT, "five orders and five reviews to wait", || async {
        common::count(
            &setup.store,
            "SELECT count(*) FROM flow.runs WHERE status = 'waiting'",
            "SELECT count(*) FROM flow_runs WHERE status = 'waiting'",
        )
        .await
            == 10
    })
    .await;
    first.kill().unwrap(); // SIGKILL
    let first_pid = first.id();
    first.wait().unwrap();
    // Approved while no worker is up: the sends resolve the waits themselves.
    let approvals = (0..5).map(|i| {
        NewEvent::raw(
            "test/work.approved",
            serde_json::json!({ "order": i, "by": "ada" }),
        )
        .unwrap()
    });
    setup.client.send_batch(approvals).await.unwrap();
    // And countersigned: each signal finds the wait its review registered on the
    // killed worker.
    for i in 0..5 {
        setup
            .client
            .signal(&format!("countersign/{i}"), "bo")
            .await
            .unwrap();
    }
    let second = setup.start_worker("w2", 0);
    for (i, run) in orders.iter().enumerate() {
        let done = setup.client.wait(*run, WAIT).await.unwrap();
        assert_eq!(done.status, RunStatus::Completed, "{:?}", done.error);
        assert_eq!(
            done.output,
            Some(serde_json::json!(format!(
                "order {i} approved by ada and bo"
            )))
        );
    }
    sigterm(&second);
    let second_pid = second.id();
    report(second);
    // Every step body ran once: the reviews opened on the killed worker, the
    // shipping on the new one.
    let effects = setup.effects();
    let mut seen: HashMap<(String, String), u32> = HashMap::new();
    for e in &effects {
        let expected = if e.step == "open_review" {
            first_pid
        } else {
            second_pid
        };
        assert_eq!(
            e.pid, expected,
            "{} of run {} ran on {}",
            e.step, e.run, e.pid
        );
        *seen.entry((e.run.clone(), e.step.clone())).or_default() += 1;
    }
    assert_eq!(seen.len(), 10, "five reviews opened, five orders shipped");
    assert!(seen.values().all(|&n| n == 1), "a step ran twice: {seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttle_holds_across_two_worker_processes() {
    let setup = setup().await;
    let a = setup.start_worker("a", 0);
    let b = setup.start_worker("b", 0);
    setup.wait_until_up(&[&a, &b]).await;
    // Three starts an hour per customer: of ten each, three start, and the
    // others wait for the next start, an hour of real time away, whichever
    // process claims them.
    let events = (0..20).map(|i| {
        let customer = ["t", "u"][i % 2];
        NewEvent::raw(
            "test/work.throttled",
            serde_json::json!({ "customer": customer }),
        )
        .unwrap()
    });
    let receipt = setup.client.send_batch(events).await.unwrap();
    let runs: Vec<flow::RunId> = receipt.runs.iter().map(|(_, run)| *run).collect();
    let statuses = || async {
        let mut statuses = Vec::new();
        for run in &runs {
            statuses.push(common::status(&setup.client, *run).await);
        }
        statuses
    };
    common::eventually(WAIT, "three runs of each customer to complete", || async {
        statuses()
            .await
            .iter()
            .filter(|s| **s == RunStatus::Completed)
            .count()
            == 6
    })
    .await;
    let statuses = statuses().await;
    for customer in 0..2 {
        let started = statuses
            .iter()
            .skip(customer)
            .step_by(2)
            .filter(|s| **s != RunStatus::Queued)
            .count();
        assert_eq!(started, 3, "customer {customer}: {statuses:?}");
    }
    sigterm(&a);
    sigterm(&b);
    report(a);
    report(b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_concurrency_limit_holds_across_two_worker_processes() {
    let setup = setup().await;
    // Three customers with a limit of two runs each: six may run at once, but each
    // process has three slots, so both take part (the second at its first look
    // after the first filled its slots), and their claims meet on the same keys.
    // 100 ms a run.
    let start = |id: &str| {
        setup
            .worker_command(id, 100)
            .env("FLOW_TEST_LEASE_MS", "10000")
            .env("FLOW_TEST_CONCURRENCY", "3")
            .spawn()
            .expect("start the test worker")
    };
    let a = start("a");
    let b = start("b");
    setup.wait_until_up(&[&a, &b]).await;
    let events = (0..24).map(|i| {
        let customer = ["x", "y", "z"][i % 3];
        NewEvent::raw(
            "test/work.limited",
            serde_json::json!({ "customer": customer }),
        )
        .unwrap()
    });
    let receipt = setup.client.send_batch(events).await.unwrap();
    for (_, run) in &receipt.runs {
        let view = setup.client.wait(*run, WAIT).await.unwrap();
        assert_eq!(view.status, RunStatus::Completed, "{:?}", view.error);
    }
    stop_both(a, b);
    // Each customer's runs, swept in time order.
    let moves = setup.holds();
    assert_eq!(moves.len(), 3);
    for (customer, moves) in moves {
        assert_eq!(
            moves.len(),
            16,
            "8 runs of {customer}, each started and ended once"
        );
        let most = most_at_once(moves);
        assert!(
            most <= 2,
            "{most} runs of {customer} at once, over a limit of 2"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_keys_with_a_limit_of_one_are_all_busy_at_once_across_two_processes() {
    let setup = setup().await;
    let release = setup.effects.with_extension("release");
    // 1,200 slots between the two processes for 1,000 keys of limit 1, two runs
    // each: every key's first run holds its slot until released, so all 1,000
    // keys must be busy at once, none twice.
    let start = |id: &str| {
        setup
            .worker_command(id, 0)
            .env("FLOW_TEST_LEASE_MS", "10000")
            .env("FLOW_TEST_CONCURRENCY", "600")
            .env("FLOW_TEST_RELEASE", &release)
            .spawn()
            .expect("start the test worker")
    };
    let a = start("a");
    let b = start("b");
    setup.wait_until_up(&[&a, &b]).await;
    let mut runs = Vec::new();
    for _wave in 0..2 {
        let events = (0..1000u32).map(|key| {
            NewEvent::raw("test/work.keyed", serde_json::json!({ "key": key })).unwrap()
        });
        let receipt = setup.client.send_batch(events).await.unwrap();
        runs.extend(receipt.runs.into_iter().map(|(_, run)| run));
    }
    let holding = || {
        let mut keys = HashSet::new();
        for effect in setup.effects() {
            if let Some(key) = effect.step.strip_prefix("hold:") {
                assert!(keys.insert(key.to_owned()), "key {key} held twice at once");
            }
        }
        keys.len()
    };
    common::eventually(
        Duration::from_secs(120),
        "all 1,000 keys to be busy",
        || async { holding() == 1000 },
    )
    .await;
    std::fs::write(&release, b"go").unwrap();
    for run in &runs {
        let view = setup
            .client
            .wait(*run, Duration::from_secs(120))
            .await
            .unwrap();
        assert_eq!(view.status, RunStatus::Completed, "{:?}", view.error);
    }
    stop_both(a, b);
    // Per key, the second run started after the first ended.
    let spans = setup.holds();
    assert_eq!(spans.len(), 1000);
    for (key, moves) in spans {
        assert_eq!(
            moves.len(),
            4,
            "key {key}: two runs, each started and ended"
        );
        assert!(most_at_once(moves) <= 1, "key {key} ran two runs at once");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_worker_processes_start_one_run_per_cron_tick() {
    let setup = setup().await;
    // A test clock both processes read from a file: `leap_day` ticks at midnight
    // of each 29 February, so each jump of the file's time is one tick.
    let clock = setup.effects.with_extension("clock");
    std::fs::write(&clock, "2028-02-28T23:00:00Z").unwrap();
    let start = |id: &str| {
        setup
            .worker_command(id, 0)
            .env("FLOW_TEST_LEASE_MS", "10000")
            .env("FLOW_TEST_CLOCK_FILE", &clock)
            .spawn()
            .expect("start the test worker")
    };
    let a = start("a");
    let b = start("b");
    setup.wait_until_up(&[&a, &b]).await;
    let completed = || {
        common::count(
            &setup.store,
            "SELECT count(*) FROM flow.runs WHERE function_id = 'leap_day' AND status = 'completed'",
            "SELECT count(*) FROM flow_runs WHERE function_id = 'leap_day' AND status = 'completed'",
        )
    };
    for (n, now) in [
        "2028-02-29T00:01:00Z",
        "2032-02-29T00:01:00Z",
        "2036-02-29T00:01:00Z",
    ]
    .into_iter()
    .enumerate()
    {
        std::fs::write(&clock, now).unwrap();
        common::eventually(WAIT, &format!("the run of tick {}", n + 1), || async {
            completed().await == n as i64 + 1
        })
        .await;
    }
    sigterm(&a);
    sigterm(&b);
    report(a);
    report(b);
    let runs = common::count(
        &setup.store,
        "SELECT count(*) FROM flow.runs WHERE function_id = 'leap_day'",
        "SELECT count(*) FROM flow_runs WHERE function_id = 'leap_day'",
    )
    .await;
    assert_eq!(runs, 3, "one run per tick, though both processes sent each");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_and_debounces_take_every_event_once_across_two_worker_processes() {
    let setup = setup().await;
    let a = setup.start_worker("a", 0);
    let b = setup.start_worker("b", 0);
    setup.wait_until_up(&[&a, &b]).await;
    // Eight senders of fifty events each, over forty keys, paced over about two
    // seconds, while both processes claim the groups that close (full batches
    // at once, the others a second after they opened or went quiet, on the
    // real clock): a group's run never starts without an event that joined it,
    // and no event joins two.
    let mut senders = tokio::task::JoinSet::new();
    for sender in 0..8u32 {
        let client = setup.client.clone();
        senders.spawn(async move {
            let mut joined = Vec::new();
            for i in 0..50u32 {
                let n = sender * 50 + i;
                let event = NewEvent::raw(
                    "test/work.grouped",
                    serde_json::json!({ "key": n % 40, "n": n }),
                )
                .unwrap();
                let receipt = client.send(event).await.unwrap();
                tokio::time::sleep(Duration::from_millis(40)).await;
                joined.extend(receipt.runs.iter().map(|(_, run)| *run));
            }
            joined
        });
    }
    let mut runs = HashSet::new();
    while let Some(joined) = senders.join_next().await {
        runs.extend(joined.unwrap());
    }
    let mut batched: HashMap<u32, u32> = HashMap::new();
    let mut debounced: HashMap<u32, u32> = HashMap::new();
    for run in runs {
        let view = setup.client.wait(run, WAIT).await.unwrap();
        assert_eq!(view.status, RunStatus::Completed, "{:?}", view.error);
        let events: Vec<(u32, u32)> = serde_json::from_value(view.output.unwrap()).unwrap();
        let seen = match view.function_id.as_str() {
            "batched" => {
                assert!(events.len() <= 10, "a batch over its size: {events:?}");
                &mut batched
            }
            _ => &mut debounced,
        };
        let key = events[0].0;
        for (k, n) in events {
            assert_eq!(k, key, "one key per group");
            assert_eq!(n % 40, k);
            *seen.entry(n).or_default() += 1;
        }
    }
    for (function, seen) in [("batched", batched), ("debounced", debounced)] {
        assert_eq!(seen.len(), 400, "{function}: every event in a run");
        assert!(
            seen.values().all(|&times| times == 1),
            "{function}: an event in two runs"
        );
    }
    sigterm(&a);
    sigterm(&b);
    report(a);
    report(b);
}

/// Per run of `one_active`, the first start of its `hold` step and the start of
/// its `held` step, from the effects.
fn active_spans(setup: &Setup) -> HashMap<String, (String, i64, i64)> {
    let mut spans: HashMap<String, (String, i64, i64)> = HashMap::new();
    for effect in setup.effects() {
        let (what, key) = effect.step.split_once(':').unwrap();
        let span = spans
            .entry(effect.run.clone())
            .or_insert((key.to_owned(), i64::MAX, i64::MAX));
        match what {
            "hold" => span.1 = span.1.min(effect.started_us),
            _ => span.2 = effect.started_us,
        }
    }
    spans
}

/// No two runs of a key were active at once: each run's span, from its first
/// step's start to its last's, is over before the next run of its key begins.
fn assert_one_active_per_key(spans: &HashMap<String, (String, i64, i64)>) {
    let mut by_key: HashMap<&str, Vec<(i64, i64)>> = HashMap::new();
    for (key, began, ended) in spans.values() {
        assert!(*ended < i64::MAX, "a run never reached its last step");
        by_key.entry(key).or_default().push((*began, *ended));
    }
    for (key, mut spans) in by_key {
        spans.sort();
        for pair in spans.windows(2) {
            assert!(
                pair[1].0 > pair[0].1,
                "two runs of {key} active at once: {pair:?}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_concurrency_holds_across_two_worker_processes_sleeps_included() {
    let setup = setup().await;
    let a = setup.start_worker("a", 20);
    let b = setup.start_worker("b", 20);
    setup.wait_until_up(&[&a, &b]).await;
    // Four runs each of three accounts, one active per account: each run holds
    // its account through a sleep, whichever process claims it or wakes it.
    let events = (0..12).map(|i| {
        let account = ["p", "q", "r"][i % 3];
        NewEvent::raw(
            "test/work.active",
            serde_json::json!({ "account": account }),
        )
        .unwrap()
    });
    let receipt = setup.client.send_batch(events).await.unwrap();
    for (_, run) in &receipt.runs {
        let view = setup.client.wait(*run, WAIT).await.unwrap();
        assert_eq!(view.status, RunStatus::Completed, "{:?}", view.error);
    }
    sigterm(&a);
    sigterm(&b);
    report(a);
    report(b);
    let spans = active_spans(&setup);
    assert_eq!(spans.len(), 12);
    assert_one_active_per_key(&spans);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_concurrency_key_of_a_killed_worker_is_held_until_its_run_ends_elsewhere() {
    let setup = setup().await;
    // A's first step takes a minute: it holds the account when it is killed.
    let mut a = setup.start_worker("a", 60_000);
    setup.wait_until_up(&[&a]).await;
    let events = (0..2)
        .map(|_| NewEvent::raw("test/work.active", serde_json::json!({ "account": "k" })).unwrap());
    let receipt = setup.client.send_batch(events).await.unwrap();
    common::eventually(WAIT, "the first run to start on A", || async {
        setup.effects().iter().any(|e| e.step == "hold:k")
    })
    .await;
    a.kill().unwrap();
    a.wait().unwrap();
    // B recovers the first run once A's lease (1 s) expires and finishes it; the
    // second starts only then, though the first run's worker is gone.
    let b = setup.start_worker("b", 0);
    for (_, run) in &receipt.runs {
        let view = setup.client.wait(*run, WAIT).await.unwrap();
        assert_eq!(view.status, RunStatus::Completed, "{:?}", view.error);
    }
    sigterm(&b);
    report(b);
    let spans = active_spans(&setup);
    assert_eq!(spans.len(), 2);
    assert_one_active_per_key(&spans);
}
