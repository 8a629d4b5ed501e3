//! Runs each example, on PostgreSQL (a database of its own) and with no DATABASE_URL
//! (an SQLite file in a directory of its own), and checks what it printed, which it
//! read back from the store.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

fn example(name: &str) -> PathBuf {
    // Test binaries live in target/<profile>/deps; examples in target/<profile>/examples.
    let exe = std::env::current_exe().unwrap();
    let path = exe
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples")
        .join(name);
    assert!(
        path.exists(),
        "{} is not built; run `cargo build --examples` (scripts/test.sh does)",
        path.display()
    );
    path
}

/// Runs `name` with DATABASE_URL set to `url` (or unset) in a fresh directory;
/// returns its stdout and that directory. Fails the test if it fails.
fn run(name: &str, url: Option<&str>) -> (String, PathBuf) {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("{name}-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut command = Command::new(example(name));
    command.env("RUST_LOG", "off").current_dir(&dir);
    match url {
        Some(url) => command.env("DATABASE_URL", url),
        None => command.env_remove("DATABASE_URL"),
    };
    let output = command.output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    (stdout, dir)
}

#[tokio::test]
async fn support_categorization_fetches_once_and_retries_the_classification() {
    let url = common::fresh_database().await;
    let (stdout, _) = run("support_categorization", Some(&url));
    assert!(
        stdout.contains("sent 4 events, which started 4 runs"),
        "{stdout}"
    );
    assert!(stdout.contains("4 of 4 runs completed"), "{stdout}");
    assert!(
        stdout.contains("fetch_replies: 4 recorded attempts, 4 executions"),
        "{stdout}"
    );
    assert!(
        stdout.contains("the fetch ran once per thread while the classification was retried"),
        "{stdout}"
    );
    assert!(
        stdout.contains("failed: the model answered `banana`, which is not a category"),
        "{stdout}"
    );
}

#[tokio::test]
async fn support_categorization_without_database_url_runs_on_an_sqlite_file_in_its_directory() {
    let (stdout, dir) = run("support_categorization", None);
    assert!(stdout.contains("4 of 4 runs completed"), "{stdout}");
    assert!(dir.join("flow.db").exists(), "the data lives in ./flow.db");
}

#[tokio::test]
async fn quickstart_needs_nothing_but_rust() {
    let (stdout, dir) = run("quickstart", None);
    assert!(
        stdout.contains("sent 3 orders, which started 3 runs"),
        "{stdout}"
    );
    assert!(stdout.contains("3 of 3 runs completed"), "{stdout}");
    assert!(stdout.contains("wait-for-payment-window"), "{stdout}");
    assert!(stdout.contains("charged 19.99"), "{stdout}");
    assert!(dir.join("flow.db").exists());
}

#[tokio::test]
async fn quickstart_on_postgresql_when_database_url_is_set() {
    let url = common::fresh_database().await;
    let (stdout, dir) = run("quickstart", Some(&url));
    assert!(stdout.contains("3 of 3 runs completed"), "{stdout}");
    assert!(
        !dir.join("flow.db").exists(),
        "no SQLite file when DATABASE_URL is set"
    );
}

#[tokio::test]
async fn image_pipeline_makes_three_thumbnails_through_invoked_runs() {
    let url = common::fresh_database().await;
    for url in [Some(url.as_str()), None] {
        let (stdout, _) = run("image_pipeline", url);
        assert!(
            stdout.contains("upload run completed: \"saved 3 thumbnails of beach (622080 bytes)\""),
            "{stdout}"
        );
        for (key, width) in [
            ("thumbnail", 160),
            ("thumbnail:1", 640),
            ("thumbnail:2", 1280),
        ] {
            assert!(
                stdout.contains(&format!(
                    "{key:<12} -> run of `thumbnail` completed: \"beach-{width}w.jpg\""
                )),
                "{stdout}"
            );
        }
        assert!(
            stdout.contains("worker stopped: 4 runs finished"),
            "{stdout}"
        );
    }
}

#[tokio::test]
async fn payment_flow_sends_receipts_for_confirmed_payments_and_voids_the_other() {
    let url = common::fresh_database().await;
    for url in [Some(url.as_str()), None] {
        let (stdout, _) = run("payment_flow", url);
        assert!(
            stdout.contains("sent 3 charge requests, which started 3 runs"),
            "{stdout}"
        );
        assert!(
            stdout.contains("3 runs wait for their confirmation"),
            "{stdout}"
        );
        for (payment, output, last_step) in [
            ("pay-1", "receipt for pay-1 (psp-pay-1)", "send_receipt"),
            (
                "pay-2",
                "voided pay-2: no confirmation within the hour",
                "void_charge",
            ),
            ("pay-3", "receipt for pay-3 (psp-pay-3)", "send_receipt"),
        ] {
            assert!(
                stdout.contains(&format!(
                    "completed: \"{output}\" (steps: charge_card, confirmation, {last_step})"
                )),
                "{payment}: {stdout}"
            );
        }
        assert!(
            stdout.contains("worker stopped: 3 runs finished"),
            "{stdout}"
        );
    }
}

#[tokio::test]
async fn trial_reminders_stop_for_the_user_who_subscribed() {
    let url = common::fresh_database().await;
    for url in [Some(url.as_str()), None] {
        let (stdout, _) = run("trial_reminders", url);
        assert!(
            stdout.contains("started 3 trials, which started 3 runs"),
            "{stdout}"
        );
        assert!(
            stdout.contains("day 4: 3 users had their first reminder"),
            "{stdout}"
        );
        assert_eq!(
            stdout.matches("completed after 3 reminders: 3").count(),
            2,
            "{stdout}"
        );
        assert!(
            stdout
                .contains("cancelled after 1 reminders: cancelled by event `app/user.subscribed`"),
            "{stdout}"
        );
        assert!(stdout.contains("its `user_id` matches"), "{stdout}");
    }
}

#[tokio::test]
async fn llm_rate_limited_starts_paying_customers_first_and_spreads_the_rest() {
    let url = common::fresh_database().await;
    for url in [Some(url.as_str()), None] {
        let (stdout, _) = run("llm_rate_limited", url);
        assert!(
            stdout.contains("sent 6 threads, which started 6 runs"),
            "{stdout}"
        );
        assert!(
            stdout.contains("paying customers' threads started first: [5, 6]"),
            "{stdout}"
        );
        // Two at once, then one every 30 s: the last starts two minutes after.
        assert!(
            stdout.contains("6 of 6 threads classified, spread over 120 s"),
            "{stdout}"
        );
        assert!(stdout.contains("thread 5: billing"), "{stdout}");
    }
}

#[tokio::test]
async fn daily_report_fans_out_each_night_and_fires_when_the_clocks_jump() {
    let url = common::fresh_database().await;
    for url in [Some(url.as_str()), None] {
        let (stdout, _) = run("daily_report", url);
        // 02:00 in Berlin does not exist on 29 March 2026: the tick fires at 03:00
        // CEST (01:00 UTC); the next night at 02:00 CEST (00:00 UTC).
        assert!(
            stdout.contains("night 1: tick scheduled for 2026-03-29 01:00 UTC, 3 customers synced"),
            "{stdout}"
        );
        assert!(
            stdout.contains("night 2: tick scheduled for 2026-03-30 00:00 UTC, 3 customers synced"),
            "{stdout}"
        );
        assert!(
            stdout.contains("6 customer syncs over two nights, 3 customers"),
            "{stdout}"
        );
    }
}
