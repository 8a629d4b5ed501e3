//! A payment: charge the card, then wait up to an hour for the payment provider's
//! confirmation of that payment, and send a receipt, or void the charge when none
//! comes. The run waits in the database, holding no worker; the confirmation is
//! matched to its run by payment id. A virtual clock makes the hour pass at once.
//! Without DATABASE_URL the data goes to ./flow.db (SQLite).
//!
//! ```sh
//! cargo run --example payment_flow
//! ```

use std::time::Duration;

use flow::prelude::*;
use flow::{ManualClock, RunId, RunStatus};

#[derive(Event, Serialize, Deserialize)]
#[event(name = "payments/charge.requested")]
struct ChargeRequested {
    payment_id: String,
    amount_cents: u64,
}

/// Sent by the payment provider's webhook.
#[derive(Event, Serialize, Deserialize)]
#[event(name = "payments/payment.confirmed")]
struct PaymentConfirmed {
    payment_id: String,
    provider_reference: String,
}

#[step(retries = 3)]
async fn charge_card(_ctx: &Ctx, payment_id: &str, amount_cents: u64) -> Result<String, StepError> {
    // The provider's API goes here; it confirms asynchronously, by webhook.
    Ok(format!("charge of {amount_cents} cents for {payment_id}"))
}

#[step]
async fn send_receipt(_ctx: &Ctx, payment_id: &str, reference: &str) -> Result<String, StepError> {
    Ok(format!("receipt for {payment_id} ({reference})"))
}

#[step]
async fn void_charge(_ctx: &Ctx, payment_id: &str) -> Result<String, StepError> {
    Ok(format!(
        "voided {payment_id}: no confirmation within the hour"
    ))
}

#[function(event = "payments/charge.requested")]
async fn payment_flow(ctx: &Ctx, request: ChargeRequested) -> Result<String, FlowError> {
    charge_card(ctx, &request.payment_id, request.amount_cents).await?;
    let confirmed = ctx
        .wait_for_event::<PaymentConfirmed>("confirmation")
        .matching(|f| f.payment_id, request.payment_id.as_str())
        .timeout(Duration::from_secs(3600))
        .await?;
    Ok(match confirmed {
        Some(confirmation) => {
            send_receipt(ctx, &request.payment_id, &confirmation.provider_reference).await?
        }
        None => void_charge(ctx, &request.payment_id).await?,
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

    // The worker and the client share one virtual clock, so that an hour passes
    // when the program says so.
    let url = std::env::var("DATABASE_URL").unwrap_or_else(|_| flow::DEFAULT_SQLITE_URL.into());
    let clock = ManualClock::new(chrono::Utc::now());
    let worker = flow::Worker::connect(&url)
        .await?
        .clock(clock.clone())
        .build()?;
    worker.announce().await?;
    let worker = worker.spawn();
    let client = flow::Client::connect(&url).await?.with_clock(clock.clone());

    let payments = ["pay-1", "pay-2", "pay-3"];
    let receipt = client
        .send_batch(payments.map(|payment_id| ChargeRequested {
            payment_id: payment_id.into(),
            amount_cents: 4_200,
        }))
        .await?;
    let runs: Vec<RunId> = receipt.runs.iter().map(|(_, run)| *run).collect();
    println!(
        "sent {} charge requests, which started {} runs",
        payments.len(),
        runs.len()
    );
    let waiting = wait_for(&client, &runs, RunStatus::Waiting).await?;
    println!("{waiting} runs wait for their confirmation, holding no worker");

    // The provider confirms the first and the last payment, in another order.
    let confirmed = client
        .send_batch(["pay-3", "pay-1"].map(|payment_id| PaymentConfirmed {
            payment_id: payment_id.into(),
            provider_reference: format!("psp-{payment_id}"),
        }))
        .await?;
    println!("sent {} confirmations", confirmed.event_ids.len());
    // The second is never confirmed: an hour later, its wait returns None.
    clock.advance(Duration::from_secs(3600));

    for run in &runs {
        let view = client.wait(*run, Duration::from_secs(60)).await?;
        let steps: Vec<&str> = view.steps.iter().map(|s| s.key.as_str()).collect();
        println!(
            "run {} {}: {} (steps: {})",
            view.id,
            view.status,
            view.output.clone().unwrap_or_default(),
            steps.join(", ")
        );
    }
    let report = worker.stop().await?;
    println!(
        "worker stopped: {} runs finished, {} parks",
        report.finished, report.parked
    );
    Ok(())
}

/// Waits until every run has `status`; returns how many have it.
async fn wait_for(
    client: &flow::Client,
    runs: &[RunId],
    status: RunStatus,
) -> Result<usize, Box<dyn std::error::Error>> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let mut reached = 0;
        for run in runs {
            if client
                .run(*run)
                .await?
                .is_some_and(|view| view.status == status)
            {
                reached += 1;
            }
        }
        if reached == runs.len() || tokio::time::Instant::now() > deadline {
            return Ok(reached);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
