//! Every run and step is a `tracing` span carrying the function id, run id, step
//! id and attempt; each step span sits in its own run's span, and a run's span is
//! a root (a span held across an await would leak into other runs).

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flow::prelude::*;
use tracing::span::{Attributes, Id};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

type Fields = HashMap<String, String>;

/// A span as created, with its parent's name (span ids are reused once a span
/// closes, so they cannot be looked up afterwards).
#[derive(Clone, Debug)]
struct Recorded {
    name: String,
    fields: Fields,
    parent: Option<String>,
}

#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<Recorded>>>);

struct Visitor<'a>(&'a mut Fields);

impl tracing::field::Visit for Visitor<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        let text = format!("{value:?}");
        self.0
            .insert(field.name().to_owned(), text.trim_matches('"').to_owned());
    }
}

impl<S: tracing::Subscriber + for<'a> LookupSpan<'a>> tracing_subscriber::Layer<S> for Recorder {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut fields = Fields::new();
        attrs.record(&mut Visitor(&mut fields));
        let parent = ctx
            .span(id)
            .and_then(|s| s.parent())
            .map(|p| p.name().to_owned());
        let name = attrs.metadata().name().to_owned();
        self.0.lock().unwrap().push(Recorded {
            name,
            fields,
            parent,
        });
    }
}

#[derive(Event, Serialize, Deserialize)]
#[event(name = "test/traced")]
struct Traced {
    n: u32,
}

#[step]
async fn traced_step(_ctx: &Ctx, n: u32) -> Result<u32, StepError> {
    Ok(n)
}

#[function(event = "test/traced")]
async fn traced(ctx: &Ctx, event: Traced) -> Result<u32, FlowError> {
    let a = traced_step(ctx, event.n).await?;
    let b = traced_step(ctx, a).await?;
    Ok(b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steps_are_spans_inside_their_own_runs_span() {
    let recorder = Recorder::default();
    let subscriber = tracing_subscriber::registry().with(recorder.clone());
    tracing::subscriber::set_global_default(subscriber).unwrap();
    let (store, _) = common::store().await;
    let _worker =
        common::spawn_worker(common::worker(&store).register::<traced>().concurrency(32)).await;
    let client = flow::Client::new(store);
    // Many runs at once, so that a span leaking across runs would show.
    let receipt = client
        .send_batch((0..200).map(|n| Traced { n }))
        .await
        .unwrap();
    for (_, run) in &receipt.runs {
        client.wait(*run, Duration::from_secs(30)).await.unwrap();
    }

    let spans = recorder.0.lock().unwrap().clone();
    let runs: Vec<_> = spans.iter().filter(|s| s.name == "flow.run").collect();
    assert_eq!(runs.len(), 200);
    for run in &runs {
        assert!(run.parent.is_none(), "a run's span is a root: {run:?}");
        assert_eq!(run.fields["function"], "traced");
        let id = &run.fields["run_id"];
        assert!(
            receipt.runs.iter().any(|(_, run)| &run.to_string() == id),
            "{run:?}"
        );
    }
    let steps: Vec<_> = spans.iter().filter(|s| s.name == "flow.step").collect();
    assert_eq!(steps.len(), 400);
    for step in steps {
        assert!(
            ["traced_step", "traced_step:1"].contains(&step.fields["step"].as_str()),
            "{step:?}"
        );
        assert_eq!(step.fields["attempt"], "1");
        assert_eq!(step.parent.as_deref(), Some("flow.run"), "{step:?}");
    }
}
