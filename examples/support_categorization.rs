//! "Every app is an ETL pipeline": categorize support threads with a flaky model.
//!
//! Each `support/thread.created` event runs `categorize_thread`: fetch the thread's
//! replies (extract), classify them with a language-model stand-in that times out
//! on its first attempts and sometimes answers with a category that does not exist
//! (transform), and save the category (load). The fetch is checkpointed, so when
//! the classification is retried the replies are not fetched again.
//!
//! ```sh
//! DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres cargo run --example support_categorization
//! ```
//!
//! The worker and the producer run in one program here; in production they are
//! separate processes (as many workers as you like) sharing the database.

use std::sync::atomic::{AtomicU32, Ordering};

use flow::RunStatus;
use flow::prelude::*;

#[derive(Event, Serialize, Deserialize)]
#[event(name = "support/thread.created")]
struct ThreadCreated {
    thread_id: i64,
}

#[derive(Serialize, Deserialize)]
struct Reply {
    author: String,
    text: String,
}

#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq)]
#[serde(rename_all = "snake_case")]
enum Category {
    Billing,
    Bug,
    FeatureRequest,
}

impl Category {
    fn parse(answer: &str) -> Option<Category> {
        match answer {
            "billing" => Some(Category::Billing),
            "bug" => Some(Category::Bug),
            "feature_request" => Some(Category::FeatureRequest),
            _ => None,
        }
    }
}

/// Counted so the program can show the fetch was not repeated.
static FETCHES: AtomicU32 = AtomicU32::new(0);
static MODEL_CALLS: AtomicU32 = AtomicU32::new(0);

#[step(retries = 3)]
async fn fetch_replies(_ctx: &Ctx, thread_id: i64) -> Result<Vec<Reply>, StepError> {
    FETCHES.fetch_add(1, Ordering::SeqCst);
    // Stands in for an HTTP call to the helpdesk.
    let texts = [
        "I was charged twice this month",
        "The export button crashes",
        "Could you add dark mode?",
    ];
    Ok((0..3)
        .map(|i| Reply {
            author: format!("customer-{thread_id}"),
            text: texts[(thread_id as usize + i) % texts.len()].to_owned(),
        })
        .collect())
}

/// A flaky model: times out on its first call for every thread, and for even
/// threads then answers with a category that does not exist.
struct FlakyModel;

impl FlakyModel {
    async fn categorize(
        &self,
        thread_id: i64,
        attempt: u32,
        replies: &[Reply],
    ) -> Result<String, std::io::Error> {
        MODEL_CALLS.fetch_add(1, Ordering::SeqCst);
        if attempt == 1 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "model timed out",
            ));
        }
        if attempt == 2 && thread_id % 2 == 0 {
            return Ok("banana".into());
        }
        let first = &replies[0].text;
        Ok(if first.contains("charged") {
            "billing"
        } else if first.contains("crash") {
            "bug"
        } else {
            "feature_request"
        }
        .into())
    }
}

static ATTEMPTS: std::sync::Mutex<Vec<(i64, u32)>> = std::sync::Mutex::new(Vec::new());

fn next_attempt(thread_id: i64) -> u32 {
    let mut attempts = ATTEMPTS.lock().unwrap();
    let n = attempts.iter().filter(|(t, _)| *t == thread_id).count() as u32 + 1;
    attempts.push((thread_id, n));
    n
}

#[step(retries = 5, backoff(initial = "50ms", max = "500ms"))]
async fn classify(_ctx: &Ctx, thread_id: i64, replies: &[Reply]) -> Result<Category, StepError> {
    let answer = FlakyModel
        .categorize(thread_id, next_attempt(thread_id), replies)
        .await?;
    Category::parse(&answer).ok_or_else(|| {
        StepError::retriable(format!(
            "the model answered `{answer}`, which is not a category"
        ))
    })
}

#[step]
async fn save_category(
    _ctx: &Ctx,
    thread_id: i64,
    category: Category,
) -> Result<String, StepError> {
    // Stands in for an UPDATE in the helpdesk's database.
    Ok(format!("thread {thread_id} filed under {category:?}"))
}

#[function(event = "support/thread.created", retries = 4)]
async fn categorize_thread(ctx: &Ctx, event: ThreadCreated) -> Result<Category, FlowError> {
    let replies = fetch_replies(ctx, event.thread_id).await?;
    let category = classify(ctx, event.thread_id, &replies).await?;
    save_category(ctx, event.thread_id, category).await?;
    Ok(category)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "flow_core=info".into()),
        )
        .init();

    let worker = flow::Worker::from_env().await?;
    worker.announce().await?;
    let worker = worker.spawn();

    let client = flow::Client::from_env().await?;
    let threads = [101, 102, 103, 104];
    let receipt = client
        .send_batch(threads.map(|thread_id| ThreadCreated { thread_id }))
        .await?;
    println!(
        "sent {} events, which started {} runs",
        threads.len(),
        receipt.runs.len()
    );

    let mut completed = 0;
    let mut fetch_attempts = 0;
    let mut classify_attempts = 0;
    for (_, run) in &receipt.runs {
        let view = client
            .wait(*run, std::time::Duration::from_secs(60))
            .await?;
        if view.status == RunStatus::Completed {
            completed += 1;
        }
        println!(
            "run {} {}: {}",
            view.id,
            view.status,
            view.output.clone().unwrap_or_default()
        );
        for step in &view.steps {
            let took = (step.finished_at - step.started_at)
                .num_microseconds()
                .unwrap_or(0) as f64
                / 1000.0;
            println!(
                "  {:<14} attempts {}  {:>7.2} ms",
                step.key, step.attempts, took
            );
            match step.key.as_str() {
                "fetch_replies" => fetch_attempts += step.attempts,
                "classify" => classify_attempts += step.attempts,
                _ => {}
            }
        }
        for failure in &view.failures {
            println!(
                "  {:<14} attempt {} failed: {}",
                failure.step, failure.attempt, failure.error
            );
        }
    }
    println!("{completed} of {} runs completed", receipt.runs.len());
    println!(
        "fetch_replies: {fetch_attempts} recorded attempts, {} executions; classify: {classify_attempts} recorded attempts, {} model calls",
        FETCHES.load(Ordering::SeqCst),
        MODEL_CALLS.load(Ordering::SeqCst),
    );
    if fetch_attempts as usize == receipt.runs.len()
        && classify_attempts as usize > receipt.runs.len()
    {
        println!("the fetch ran once per thread while the classification was retried");
    }

    let report = worker.stop().await?;
    println!(
        "worker stopped: {} runs finished, {} parked, {} released",
        report.finished, report.parked, report.released
    );
    Ok(())
}
