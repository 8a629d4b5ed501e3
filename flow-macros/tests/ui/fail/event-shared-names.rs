use flow::prelude::*;

#[derive(Event, Serialize, Deserialize)]
#[event(name = "plans/plan.upgraded", name = "plans/plan.upgraded")]
struct Twice {
    plan: String,
}

#[derive(Event, Serialize, Deserialize)]
#[event(name = "plans/plan.upgraded", name = "plans/plan.downgraded")]
struct PlanChanged {
    plan: String,
}

// Neither of the type's names.
#[function(event = "plans/plan.cancelled")]
async fn cancelled(_ctx: &Ctx, _change: PlanChanged) -> Result<(), FlowError> {
    Ok(())
}

fn main() {}
