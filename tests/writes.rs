//! How a run's writes reach the store: a step's checkpoint rides on the run's next
//! write (the next step's start, a sleep, the park or the finish), so a lone run
//! of three steps costs three commits, not four; yet no step body starts before
//! its predecessor's checkpoint has committed, and a checkpoint never waits on
//! code outside the steps.

mod common;

use std::sync::OnceLock;
use std::time::Duration;

use common::faulty::Faulty;
use flow::prelude::*;
use flow::store::{Next, Outcome, ReadStore};
use flow::{AnyStore, RunId};
use tokio::sync::Notify;

const WAIT: Duration = Duration::from_secs(60);

/// The store the step bodies read, to see what was committed before they began.
static STORE: OnceLock<AnyStore> = OnceLock::new();

async fn recorded(run: RunId) -> Vec<String> {
    let view = STORE.get().unwrap().run(run).await.unwrap().unwrap();
    view.steps.into_iter().map(|s| s.key).collect()
}

#[derive(Event, Serialize, Deserialize)]
#[event(name = "test/writes.three")]
struct Three {}

#[function(event = "test/writes.three")]
async fn three(ctx: &Ctx, _event: Three) -> Result<Vec<Vec<String>>, FlowError> {
    let run = ctx.run_id();
    let mut seen = Vec::new();
    for key in ["a", "b", "c"] {
        // What the store holds when this body starts.
        seen.push(
            ctx.run(
                key,
                || async move { Ok::<_, StepError>(recorded(run).await) },
            )
            .await?,
        );
    }
    Ok(seen)
}

fn faulty_worker(faulty: &Faulty) -> flow::WorkerBuilder<Faulty> {
    flow_core::Worker::builder(faulty.clone())
        .poll_interval(Duration::from_secs(3600))
        .concurrency(8)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_runs_last_checkpoint_and_its_finish_share_one_commit() {
    let (store, _) = common::store().await;
    let _ = STORE.set(store.clone());
    let faulty = Faulty::new(store, 0);
    let worker = faulty_worker(&faulty).register::<three>().build().unwrap();
    worker.announce().await.unwrap();
    let running = worker.spawn();
    let client = flow_core::Client::new(faulty.clone());
    let run = client.send(Three {}).await.unwrap().runs[0].1;
    let seen: Vec<Vec<String>> = client.result(run, WAIT).await.unwrap();
    running.stop().await.unwrap();

    // Each body saw its predecessors' checkpoints committed.
    assert_eq!(
        seen,
        [vec![], vec!["a".to_owned()], vec!["a".into(), "b".into()]]
    );
    let writes: Vec<_> = faulty
        .commits
        .lock()
        .unwrap()
        .iter()
        .flatten()
        .filter(|w| w.run == run)
        .cloned()
        .collect();
    let shape: Vec<(Vec<String>, bool)> = writes
        .iter()
        .map(|w| (w.steps.clone(), w.next == Next::Continue))
        .collect();
    assert_eq!(
        shape,
        [
            (vec!["a".to_owned()], true),
            (vec!["b".to_owned()], true),
            (vec!["c".to_owned()], false)
        ],
        "{writes:?}"
    );
    assert!(
        matches!(writes[2].next, Next::Finish(Outcome::Completed(_))),
        "{writes:?}"
    );
    let view = client.run(run).await.unwrap().unwrap();
    assert_eq!(view.steps.len(), 3);
}

#[derive(Event, Serialize, Deserialize)]
#[event(name = "test/writes.waits")]
struct Waits {}

/// Lets the handler go on past its wait outside any step.
static GO_ON: Notify = Notify::const_new();

#[function(event = "test/writes.waits")]
async fn waits(ctx: &Ctx, _event: Waits) -> Result<u32, FlowError> {
    let first = ctx
        .run("first", || async { Ok::<_, StepError>(1u32) })
        .await?;
    // Not a step: the engine cannot tell how long this takes.
    GO_ON.notified().await;
    let second = ctx
        .run("second", || async { Ok::<_, StepError>(2u32) })
        .await?;
    Ok(first + second)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpoint_is_written_while_the_handler_waits_outside_a_step() {
    let (store, _) = common::store().await;
    let _running = common::spawn_worker(common::worker(&store).register::<waits>()).await;
    let client = flow::Client::new(store.clone());
    let run = client.send(Waits {}).await.unwrap().runs[0].1;
    common::eventually(WAIT, "the first checkpoint to be written", || async {
        let view = client.run(run).await.unwrap().unwrap();
        view.steps.iter().any(|s| s.key == "first")
    })
    .await;
    GO_ON.notify_one();
    assert_eq!(client.result::<u32>(run, WAIT).await.unwrap(), 3);
}
