//! Reminder emails through a two-week trial, days apart, that stop when the user
//! subscribes: `cancel_on` ends the run, whatever it is doing, as soon as an
//! `app/user.subscribed` event with the same `user_id` is stored. Each run sleeps
//! in the database between emails, holding no worker; a virtual clock makes the
//! days pass at once. Without DATABASE_URL the data goes to ./flow.db (SQLite).
//!
//! ```sh
//! cargo run --example trial_reminders
//! ```

use std::time::Duration;

use flow::prelude::*;
use flow::{ManualClock, RunId, RunStatus, RunView};

#[derive(Event, Serialize, Deserialize)]
#[event(name = "app/trial.started")]
struct TrialStarted {
    user_id: u64,
    email: String,
}

#[derive(Event, Serialize, Deserialize)]
#[event(name = "app/user.subscribed")]
struct UserSubscribed {
    user_id: u64,
}

const DAY: Duration = Duration::from_secs(86_400);

/// The days of the trial on which a reminder goes out.
const REMINDER_DAYS: [u64; 3] = [3, 7, 13];

#[step(retries = 5)]
async fn send_reminder(_ctx: &Ctx, email: &str, day: u64) -> Result<String, StepError> {
    // The mail provider's API goes here.
    Ok(format!("day {day} reminder to {email}"))
}

#[function(
    event = "app/trial.started",
    cancel_on(event = "app/user.subscribed", match = user_id)
)]
async fn trial_reminders(ctx: &Ctx, trial: TrialStarted) -> Result<u32, FlowError> {
    // Journaled: the same start on every replay, so each reminder is due on its day
    // of the trial however late the run is woken.
    let started = ctx.now().await;
    let mut sent = 0;
    for day in REMINDER_DAYS {
        let due = started + chrono::Duration::days(day as i64);
        ctx.sleep_until("until-reminder", due).await?;
        send_reminder(ctx, &trial.email, day).await?;
        sent += 1;
    }
    Ok(sent)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "flow_core=warn".into()),
        )
        .init();

    // The worker and the client share one virtual clock, so that days pass when
    // the program says so.
    let url = std::env::var("DATABASE_URL").unwrap_or_else(|_| flow::DEFAULT_SQLITE_URL.into());
    let clock = ManualClock::new(chrono::Utc::now());
    let worker = flow::Worker::connect(&url)
        .await?
        .clock(clock.clone())
        .build()?;
    worker.announce().await?;
    let worker = worker.spawn();
    let client = flow::Client::connect(&url).await?.with_clock(clock.clone());

    let users = [1_u64, 2, 3];
    let receipt = client
        .send_batch(users.map(|user_id| TrialStarted {
            user_id,
            email: format!("user{user_id}@example.com"),
        }))
        .await?;
    let runs: Vec<RunId> = receipt.runs.iter().map(|(_, run)| *run).collect();
    println!(
        "started {} trials, which started {} runs",
        users.len(),
        runs.len()
    );

    // Each run reads the trial's start (its first step), then sleeps until day 3.
    let asleep = wait_until(&client, &runs, |view| view.status == RunStatus::Sleeping).await?;
    println!("{asleep} runs sleep until their first reminder, holding no worker");

    // Four days in, every user has had the day 3 reminder.
    clock.advance(DAY * 4);
    let reminded = wait_until(&client, &runs, |view| reminders(view) == 1).await?;
    println!("day 4: {reminded} users had their first reminder");

    // User 2 subscribes: the run stops where it is, asleep until day 7.
    client.send(UserSubscribed { user_id: 2 }).await?;

    // The rest of the trial passes.
    clock.advance(DAY * 10);
    for run in &runs {
        let view = client.wait(*run, Duration::from_secs(60)).await?;
        println!(
            "run {} {} after {} reminders: {}",
            view.id,
            view.status,
            reminders(&view),
            match view.status {
                RunStatus::Completed => view.output.clone().unwrap_or_default().to_string(),
                _ => view.error.clone().unwrap_or_default(),
            }
        );
    }
    let report = worker.stop().await?;
    println!(
        "worker stopped: {} runs finished, {} parks",
        report.finished, report.parked
    );
    Ok(())
}

/// How many reminders a run has sent, read from its recorded steps.
fn reminders(view: &RunView) -> usize {
    view.steps
        .iter()
        .filter(|s| s.key.starts_with("send_reminder"))
        .count()
}

/// Waits until `done` holds for every run; returns for how many it holds.
async fn wait_until(
    client: &flow::Client,
    runs: &[RunId],
    done: impl Fn(&RunView) -> bool,
) -> Result<usize, Box<dyn std::error::Error>> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let mut reached = 0;
        for run in runs {
            if client.run(*run).await?.is_some_and(|view| done(&view)) {
                reached += 1;
            }
        }
        if reached == runs.len() || tokio::time::Instant::now() > deadline {
            return Ok(reached);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
