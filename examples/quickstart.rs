//! flow in one program, with nothing to install: a two-step function with a sleep,
//! a worker and a client. Without DATABASE_URL the data goes to ./flow.db (SQLite);
//! set DATABASE_URL=postgres://… to use PostgreSQL instead.
//!
//! ```sh
//! cargo run --example quickstart
//! ```

use std::time::Duration;

use flow::prelude::*;

#[derive(Event, Serialize, Deserialize)]
#[event(name = "shop/order.placed")]
struct OrderPlaced {
    order: u32,
    amount_cents: u64,
}

#[step(retries = 3)]
async fn reserve_stock(_ctx: &Ctx, order: u32) -> Result<String, StepError> {
    Ok(format!("reservation-{order}"))
}

#[step]
async fn charge_card(_ctx: &Ctx, amount_cents: u64) -> Result<String, StepError> {
    Ok(format!(
        "charged {}.{:02}",
        amount_cents / 100,
        amount_cents % 100
    ))
}

#[function(event = "shop/order.placed")]
async fn fulfil_order(ctx: &Ctx, event: OrderPlaced) -> Result<String, FlowError> {
    let reservation = reserve_stock(ctx, event.order).await?;
    // Durable: the run is parked, holds no worker slot, and resumes on time.
    ctx.sleep("wait-for-payment-window", Duration::from_millis(300))
        .await?;
    let receipt = charge_card(ctx, event.amount_cents).await?;
    Ok(format!("{reservation}, {receipt}"))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "flow_core=info".into()),
        )
        .init();

    // The worker and the client share the database DATABASE_URL names (or ./flow.db).
    let worker = flow::Worker::from_env().await?;
    worker.announce().await?;
    let worker = worker.spawn();
    let client = flow::Client::from_env().await?;

    let orders = [(1, 1999), (2, 4500), (3, 250)];
    let receipt = client
        .send_batch(orders.map(|(order, amount_cents)| OrderPlaced {
            order,
            amount_cents,
        }))
        .await?;
    println!(
        "sent {} orders, which started {} runs",
        orders.len(),
        receipt.runs.len()
    );

    let mut completed = 0;
    for (_, run) in &receipt.runs {
        let view = client.wait(*run, Duration::from_secs(30)).await?;
        if view.status == flow::RunStatus::Completed {
            completed += 1;
        }
        println!(
            "run {} {}: {}",
            view.id,
            view.status,
            view.output.clone().unwrap_or_default()
        );
        for step in &view.steps {
            // When each step ended, counted from the moment the event created the run.
            let at = (step.finished_at - view.created_at)
                .num_microseconds()
                .unwrap_or(0) as f64
                / 1000.0;
            println!(
                "  {:<24} {:<5} done at +{at:.1} ms, {} attempt(s)",
                step.key,
                format!("{:?}", step.kind),
                step.attempts
            );
        }
    }
    println!("{completed} of {} runs completed", receipt.runs.len());

    let report = worker.stop().await?;
    println!(
        "worker stopped: {} runs finished, {} parked while sleeping",
        report.finished, report.parked
    );
    Ok(())
}
