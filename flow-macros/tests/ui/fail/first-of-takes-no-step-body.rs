use flow::prelude::*;
use flow::First3;

#[derive(Event, Serialize, Deserialize)]
#[event(name = "app/order.placed")]
struct Placed {
    order: String,
}

#[derive(Event, Serialize, Deserialize)]
#[event(name = "app/order.approved")]
struct Approved {
    order: String,
}

#[function(event = "app/order.placed")]
async fn decide(ctx: &Ctx, event: Placed) -> Result<String, FlowError> {
    let day = Duration::from_secs(24 * 3600);
    let decision = ctx
        .first_of(
            "decision",
            (
                ctx.wait_for_event::<Approved>("approved")
                    .matching(|f| f.order, event.order.as_str())
                    .timeout(day),
                ctx.wait_for_signal::<String>("override", format!("override/{}", event.order))
                    .timeout(day),
                ctx.run("give-up", || async { Ok::<_, StepError>(()) }),
            ),
        )
        .await?;
    Ok(match decision {
        First3::A(approved) => format!("approved: {}", approved.is_some()),
        First3::B(by) => format!("overridden by {by:?}"),
        First3::C(()) => "gave up".to_owned(),
    })
}

fn main() {}
