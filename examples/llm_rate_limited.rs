//! Classifying support threads with a language model, under the model's rate
//! limit: a throttle shared by every function that calls the model (two calls a
//! minute here), one classification at a time per customer, and paying customers'
//! threads ahead of the backlog. Runs over the throttle wait their turn; none is
//! dropped. A virtual clock makes the minutes pass at once. Without DATABASE_URL
//! the data goes to ./flow.db (SQLite).
//!
//! ```sh
//! cargo run --example llm_rate_limited
//! ```

use std::time::Duration;

use flow::prelude::*;
use flow::{ManualClock, RunId, RunStatus};

#[derive(Event, Serialize, Deserialize)]
#[event(name = "support/thread.opened")]
struct ThreadOpened {
    thread_id: u64,
    customer_id: String,
    plan: String,
    text: String,
}

#[derive(Serialize, Deserialize)]
struct Classified {
    thread_id: u64,
    category: String,
}

/// The model call: a real one goes to the provider's API, which allows so many
/// calls a minute.
#[step(retries = 3)]
async fn call_model(_ctx: &Ctx, text: &str) -> Result<String, StepError> {
    let category = if text.contains("invoice") || text.contains("charge") {
        "billing"
    } else if text.contains("error") || text.contains("crash") {
        "bug"
    } else {
        "question"
    };
    Ok(category.to_owned())
}

#[function(
    event = "support/thread.opened",
    // The model's limit, shared with every function that names "llm".
    throttle(limit = 2, period = "1m", scope = shared("llm")),
    // One classification at a time per customer.
    concurrency(limit = 1, key = "event.data.customer_id"),
    // Paying customers' threads jump a minute of backlog.
    priority = "event.data.plan == 'paid' ? 60 : 0"
)]
async fn classify(ctx: &Ctx, thread: ThreadOpened) -> Result<Classified, FlowError> {
    let category = call_model(ctx, &thread.text).await?;
    Ok(Classified {
        thread_id: thread.thread_id,
        category,
    })
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "flow_core=warn".into()),
        )
        .init();

    let url = std::env::var("DATABASE_URL").unwrap_or_else(|_| flow::DEFAULT_SQLITE_URL.into());
    let clock = ManualClock::new(chrono::Utc::now());
    let worker = flow::Worker::connect(&url)
        .await?
        .clock(clock.clone())
        .build()?;
    worker.announce().await?;
    let client = flow::Client::connect(&url).await?.with_clock(clock.clone());

    // A morning's backlog: four threads of free customers, then two of paying ones.
    let threads = [
        (1, "c-free-1", "free", "how do I export my data?"),
        (2, "c-free-2", "free", "the app shows an error on login"),
        (3, "c-free-3", "free", "can I change my username?"),
        (4, "c-free-1", "free", "where is the invoice for march?"),
        (5, "c-paid-1", "paid", "we were charged twice"),
        (6, "c-paid-2", "paid", "the export crashes on large files"),
    ];
    let receipt = client
        .send_batch(
            threads.map(|(thread_id, customer, plan, text)| ThreadOpened {
                thread_id,
                customer_id: customer.into(),
                plan: plan.into(),
                text: text.into(),
            }),
        )
        .await?;
    let runs: Vec<RunId> = receipt.runs.iter().map(|(_, run)| *run).collect();
    println!(
        "sent {} threads, which started {} runs",
        threads.len(),
        runs.len()
    );

    let worker = worker.spawn();
    // Two calls a minute: two start at once, then one every 30 s of the clock.
    wait_for_completed(&client, &runs, 2).await?;
    for done in 3..=runs.len() {
        clock.advance(Duration::from_secs(30));
        wait_for_completed(&client, &runs, done).await?;
    }

    let mut order = Vec::new();
    for run in &runs {
        let view = client.run(*run).await?.ok_or("a run is missing")?;
        let started = view.started_at.ok_or("a run never started")?;
        let output: Classified = serde_json::from_value(view.output.unwrap_or_default())?;
        order.push((started, output.thread_id, output.category));
    }
    order.sort();
    for (started, thread_id, category) in &order {
        let after = (*started - order[0].0).num_seconds();
        println!("thread {thread_id}: {category}, started {after} s after the first");
    }
    let first_two: Vec<u64> = order.iter().take(2).map(|(_, id, _)| *id).collect();
    println!("paying customers' threads started first: {first_two:?}");
    let spread = (order[order.len() - 1].0 - order[0].0).num_seconds();
    println!(
        "{} of {} threads classified, spread over {spread} s of the model's limit",
        order.len(),
        threads.len()
    );
    let report = worker.stop().await?;
    println!("worker stopped: {} runs finished", report.finished);
    Ok(())
}

/// Waits until `count` of `runs` have completed.
async fn wait_for_completed(
    client: &flow::Client,
    runs: &[RunId],
    count: usize,
) -> Result<(), Box<dyn std::error::Error>> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let mut completed = 0;
        for run in runs {
            if client
                .run(*run)
                .await?
                .is_some_and(|view| view.status == RunStatus::Completed)
            {
                completed += 1;
            }
        }
        if completed >= count {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            return Err(format!("{completed} runs completed, not {count}").into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
