//! The macros' compile-time checks: each `fail` case is one mistake away from a
//! `pass` case, and its `.stderr` shows flow's message at the user's token.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("tests/ui/pass/*.rs");
    t.compile_fail("tests/ui/fail/*.rs");
}
