//! The policy parser and evaluator (docs/POLICY.md). Input: policy text (lossy UTF-8).
//!
//! Checks: no panic and no stack overflow at any depth; a refusal is `PolicySyntax` whose message starts
//! with "line L, column C:" and carries a caret line; an accepted policy evaluates without panicking, its
//! negation evaluates to the opposite, and `true and (P)` to the same, against a fixed environment.
#![no_main]

use latchkey_core::policy::{Environment, Policy, Scope};
use latchkey_core::Error;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let source = String::from_utf8_lossy(data);
    let env = Environment::new()
        .with(Scope::Subject, "role", "engineer")
        .with(Scope::Subject, "level", "3")
        .with(Scope::Resource, "name", "telemetry")
        .with(Scope::Action, "name", "read");
    match Policy::parse(&source) {
        Ok(policy) => {
            let verdict = policy.evaluate(&env);
            // Wrapping adds one level; near the depth limit the wrapped form may be refused.
            if let Ok(negated) = Policy::parse(&format!("not ({source}\n)")) {
                assert_eq!(negated.evaluate(&env), !verdict);
            }
            if let Ok(same) = Policy::parse(&format!("true and ({source}\n)")) {
                assert_eq!(same.evaluate(&env), verdict);
            }
        }
        Err(Error::PolicySyntax(message)) => {
            assert!(message.starts_with("line "), "{message}");
            assert!(message.contains(", column "), "{message}");
            assert!(message.trim_end().ends_with('^'), "{message}");
        }
        Err(other) => panic!("unexpected error {other:?}"),
    }
});
