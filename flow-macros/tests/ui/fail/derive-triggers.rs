use flow::prelude::*;

#[derive(Event, Serialize, Deserialize)]
#[event(name = "accounts/account.created")]
struct AccountCreated {
    id: u32,
}

#[derive(Triggers)]
struct NotAnEnum {
    created: AccountCreated,
}

#[derive(Triggers)]
enum Unit {
    Created(AccountCreated),
    Nothing,
}

#[derive(Triggers)]
enum Twice {
    Created(AccountCreated),
    Again(AccountCreated),
}

#[derive(Triggers)]
enum NotEvents {
    Text(String),
}

fn main() {}
