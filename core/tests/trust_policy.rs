//! The policy language (core/src/policy): parsing, errors that point at the fault, evaluation semantics,
//! and bounds against hostile input.

use latchkey_core::policy::{Environment, Policy, Scope};
use latchkey_core::Error;

fn env() -> Environment {
    Environment::new()
        .with(Scope::Subject, "role", "engineer")
        .with(Scope::Subject, "level", "3")
        .with(Scope::Subject, "site", "lyon")
        .with(Scope::Resource, "name", "telemetry")
        .with(Scope::Action, "name", "read")
}

fn allows(policy: &str, env: &Environment) -> bool {
    Policy::parse(policy)
        .unwrap_or_else(|e| panic!("{policy}: {e}"))
        .evaluate(env)
}

fn syntax_error(policy: &str) -> String {
    match Policy::parse(policy) {
        Err(Error::PolicySyntax(message)) => message,
        other => panic!("{policy:?} parsed: {other:?}"),
    }
}

#[test]
fn the_maintenance_engineer_reads_telemetry_and_nothing_else() {
    let policy = Policy::parse(
        r#"subject.role = "engineer" and resource.name in ["telemetry"] and action.name = "read""#,
    )
    .unwrap();
    assert!(policy.evaluate(&env()));
    policy.check(&env()).unwrap();
    let other_resource = env().with(Scope::Resource, "name", "door");
    assert!(!policy.evaluate(&other_resource));
    assert!(matches!(
        policy.check(&other_resource),
        Err(Error::PolicyDenied(_))
    ));
    assert!(!policy.evaluate(&env().with(Scope::Action, "name", "write")));
    assert!(!policy.evaluate(&env().with(Scope::Subject, "role", "guest")));
}

#[test]
fn operators_and_value_rules() {
    let e = env();
    // Integers compare as numbers when both sides are integers.
    assert!(allows("subject.level >= 3", &e));
    assert!(allows("subject.level < 10", &e)); // as strings "3" > "10"; as numbers 3 < 10
    assert!(!allows("subject.level > 3", &e));
    assert!(allows("subject.level <= 3 and subject.level != 4", &e));
    assert!(allows("subject.level = \"3\"", &e));
    assert!(allows("subject.level in [1, 2, 3]", &e));
    // Strings compare byte by byte.
    assert!(allows("subject.site < \"paris\"", &e));
    assert!(allows("subject.site == \"lyon\"", &e));
    // and binds tighter than or; not binds tightest.
    assert!(allows("false and false or true", &e));
    assert!(!allows("false and (false or true)", &e));
    assert!(allows("not subject.role = \"guest\"", &e));
    assert!(!allows("not not false", &e));
    assert!(allows(
        "exists subject.role and not exists subject.admin",
        &e
    ));
    // A missing attribute makes every comparison and membership false, != included.
    assert!(!allows("subject.admin != \"yes\"", &e));
    assert!(!allows("subject.admin = \"yes\"", &e));
    assert!(!allows("subject.admin in [\"yes\", \"no\"]", &e));
    assert!(allows("not subject.admin = \"yes\"", &e));
    assert!(!allows("subject.role in []", &e));
    // Attributes can be compared with each other.
    let same = Environment::new()
        .with(Scope::Subject, "site", "lyon")
        .with(Scope::Resource, "site", "lyon");
    assert!(allows("subject.site = resource.site", &same));
    // Comments, newlines, escapes.
    assert!(allows(
        "# engineers only\nsubject.role = \"engineer\" # the role\n",
        &e
    ));
    let quoted = Environment::new().with(Scope::Subject, "name", "a \"b\" \\ c");
    assert!(allows(r#"subject.name = "a \"b\" \\ c""#, &quoted));
}

#[test]
fn errors_point_at_the_line_and_column_with_a_caret() {
    let message = syntax_error("subject.role = and");
    assert_eq!(
        message,
        "line 1, column 16: expected an attribute or a value after the comparison, found the keyword 'and'\n  \
         subject.role = and\n                 ^"
    );
    let message = syntax_error("subject.role = \"a\"\nand user.name = \"b\"");
    assert!(
        message.starts_with("line 2, column 5: unknown scope 'user'"),
        "{message}"
    );
    assert!(
        message.ends_with("  and user.name = \"b\"\n      ^"),
        "{message}"
    );
    let message = syntax_error("(subject.role = \"a\"");
    assert!(
        message.starts_with("line 1, column 1: this '(' is never closed"),
        "{message}"
    );
    let message = syntax_error("subject.role = \"a\")");
    assert!(
        message.starts_with("line 1, column 19: unmatched ')'"),
        "{message}"
    );
    let message = syntax_error("role = \"a\"");
    assert!(message.contains("write subject.role"), "{message}");
    let message = syntax_error("subject.role = \"abc");
    assert!(
        message.starts_with("line 1, column 16: unterminated string"),
        "{message}"
    );
    let message = syntax_error("subject.role ~ \"a\"");
    assert!(
        message.starts_with("line 1, column 14: unexpected character '~'"),
        "{message}"
    );
    let message = syntax_error("subject.x in [\"a\" \"b\"]");
    assert!(
        message.starts_with("line 1, column 19: expected ',' or ']'"),
        "{message}"
    );
    let message = syntax_error("\"a\" = \"b\"");
    assert!(message.contains("at least one attribute"), "{message}");
    assert!(syntax_error("").contains("empty policy"));
    assert!(syntax_error("subject.level > 99999999999999999999").contains("bad integer"));
    assert!(syntax_error("subject.Role = \"x\"").contains("bad attribute name"));
    // Columns count characters, not bytes.
    let message = syntax_error("subject.name = \"é\" or ?");
    assert!(message.starts_with("line 1, column 23:"), "{message}");
}

#[test]
fn hostile_input_is_bounded_not_a_stack_overflow() {
    // Deep nesting: refused at the limit with a position, not a crash.
    let deep = format!("{}true{}", "(".repeat(1000), ")".repeat(1000));
    assert!(syntax_error(&deep).contains("nested deeper than 32"));
    let nots = format!("{}true", "not ".repeat(1000));
    assert!(syntax_error(&nots).contains("nested deeper than 32"));
    // 32 levels are fine.
    let ok = format!("{}true{}", "(".repeat(31), ")".repeat(31));
    assert!(allows(&ok, &env()));
    // Size and node limits.
    assert!(syntax_error(&"true or ".repeat(600)).contains("longer than 4096"));
    let wide = format!("true{}", " or true".repeat(300));
    assert!(syntax_error(&wide).contains("more than 256 nodes"));
    let list = format!(
        "subject.x in [{}]",
        (0..65).map(|i| i.to_string()).collect::<Vec<_>>().join(",")
    );
    assert!(syntax_error(&list).contains("list longer than 64"));
    let long = format!("subject.x = \"{}\"", "a".repeat(200));
    assert!(syntax_error(&long).contains("string longer than 128"));
    // Arbitrary bytes never panic.
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..2000 {
        let len = (seed % 64) as usize;
        let mut s = String::new();
        for _ in 0..len {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let alphabet =
                b"subject.role resource.name and or not in exists ()[],=!<>\"\\#-0123456789\n";
            s.push(alphabet[(seed % alphabet.len() as u64) as usize] as char);
        }
        if let Ok(p) = Policy::parse(&s) {
            let _ = p.evaluate(&env());
        }
    }
}
