use flow::prelude::*;

/// Steps may be generic, take references and `mut` parameters, and return any
/// error type that converts into a StepError.
#[step]
async fn save<T: Serialize + Send + Sync>(ctx: &Ctx, mut items: Vec<T>, label: &str) -> Result<usize, StepError> {
    let _ = (ctx, label);
    items.truncate(10);
    Ok(items.len())
}

#[step(id = "parse-number", retries = 0)]
async fn parse_number(_ctx: &Ctx, text: String) -> Result<i64, std::num::ParseIntError> {
    text.parse()
}

fn main() {}
