//! The ticks of a cron function, sent by every worker that serves it: the store
//! keeps one event per tick (its producer id names the function and the tick),
//! so each tick starts one run whichever workers are up.

use std::sync::Arc;
use std::time::Duration;

use crate::clock::{Clock, later};
use crate::cron::{CronTick, Schedule, TICK_SEND_WINDOW, tick_producer_id};
use crate::store::Store;
use crate::{FunctionDef, NewEvent};

use super::Shared;

/// Sends the ticks of `def`'s schedule `cron` after `started` (when the worker
/// started), until the worker stops (ticks that passed before are skipped). A tick that cannot be
/// sent is tried again with backoff (another worker may send it meanwhile; the
/// store keeps one).
pub(super) async fn tick<S: Store>(
    shared: Arc<Shared<S>>,
    def: &'static FunctionDef,
    cron: &'static crate::cron::Cron,
    started: chrono::DateTime<chrono::Utc>,
) {
    // Checked when the worker was built.
    let schedule = match Schedule::parse(cron.schedule, cron.timezone) {
        Ok(schedule) => schedule,
        Err(problem) => {
            tracing::error!(function = def.id, %problem, "cron schedule does not parse");
            return;
        }
    };
    if cron.catch_up > 0 {
        // The ticks missed since the last one stored, which no worker sent; a
        // function that never ticked missed nothing.
        match shared.store.latest_event(&def.cron_trigger()).await {
            Ok(Some(last)) => {
                for tick in schedule.missed(last, started, cron.catch_up) {
                    send(&shared, def, cron, tick).await;
                }
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(function = def.id, error = %e, "could not read the last cron tick; missed ticks are not caught up");
            }
        }
    }
    let mut after = started;
    while let Some(tick) = schedule.next_after(after) {
        shared.clock.sleep_until(tick).await;
        after = tick;
        if shared.clock.now() - tick > TICK_SEND_WINDOW {
            tracing::warn!(function = def.id, %tick, "woke too late to send a cron tick; counted missed");
            continue;
        }
        send(&shared, def, cron, tick).await;
    }
    tracing::info!(function = def.id, "cron schedule has no further tick");
}

async fn send<S: Store>(
    shared: &Shared<S>,
    def: &'static FunctionDef,
    cron: &crate::cron::Cron,
    tick: chrono::DateTime<chrono::Utc>,
) {
    let data = CronTick {
        scheduled: tick,
        schedule: cron.schedule.to_owned(),
        timezone: cron.timezone.to_owned(),
    };
    let event = match NewEvent::raw(def.cron_trigger(), serde_json::json!(data)) {
        Ok(event) => event.id(tick_producer_id(def.id, tick)).ts(tick),
        Err(e) => {
            tracing::error!(function = def.id, error = %e, "cron tick is not an event");
            return;
        }
    };
    let mut pause = Duration::from_millis(100);
    loop {
        match shared
            .store
            .send(vec![event.clone()], shared.clock.store_now())
            .await
        {
            Ok(_) => return,
            Err(e) => {
                tracing::warn!(function = def.id, %tick, error = %e, retry_in = ?pause, "could not send a cron tick");
                shared
                    .clock
                    .sleep_until(later(shared.clock.now(), pause))
                    .await;
                pause = (pause * 2).min(Duration::from_secs(30));
            }
        }
    }
}
