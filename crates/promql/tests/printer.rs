//! Prometheus 3.5.3's printer and prettier tests (`testdata/parser/*_test.go`, unchanged):
//! every `in`/`out` case is read from the Go source and checked against Strata's printer.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::print_stderr
)]

use strata_promql::syntax::{ParseOptions, parse, pretty_with_width};

/// One Go string literal at the start of `s` (raw or interpreted), and the rest.
fn go_string(s: &str) -> Option<(String, &str)> {
    let s = s.trim_start();
    if let Some(rest) = s.strip_prefix('`') {
        let end = rest.find('`')?;
        return Some((rest[..end].to_owned(), &rest[end + 1..]));
    }
    let rest = s.strip_prefix('"')?;
    let mut out = String::new();
    let mut chars = rest.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((out, &rest[i + 1..])),
            '\\' => match chars.next()?.1 {
                'n' => out.push('\n'),
                't' => out.push('\t'),
                c => out.push(c),
            },
            c => out.push(c),
        }
    }
    None
}

/// The `{in: …, out: …}` cases of the Go test function `func_name`.
fn cases(source: &str, func_name: &str) -> Vec<(String, Option<String>)> {
    let start = source
        .find(&format!("func {func_name}("))
        .unwrap_or_else(|| panic!("{func_name} not found"));
    let body = &source[start..];
    let body = &body[..body.find("\n}\n").unwrap_or(body.len())];
    let mut out = Vec::new();
    let mut rest = body;
    while let Some(i) = rest.find("in:") {
        let (input, after) = go_string(&rest[i + 3..]).expect("in: string");
        rest = after;
        let trimmed = rest.trim_start().trim_start_matches(',').trim_start();
        let expected = trimmed
            .strip_prefix("out:")
            .and_then(go_string)
            .map(|(o, after)| {
                rest = after;
                o
            });
        out.push((input, expected));
    }
    out
}

fn check(file: &str, functions: &[&str], print: impl Fn(&str) -> Result<String, String>) {
    let source = std::fs::read_to_string(format!(
        "{}/tests/testdata/parser/{file}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let mut failures = Vec::new();
    let mut count = 0;
    for function in functions {
        for (input, expected) in cases(&source, function) {
            count += 1;
            let want = expected.filter(|o| !o.is_empty()).unwrap_or(input.clone());
            match print(&input) {
                Ok(got) if got == want => {}
                Ok(got) => failures.push(format!(
                    "{function}: {input:?}\n  want {want:?}\n  got  {got:?}"
                )),
                Err(e) => failures.push(format!("{function}: {input:?}: {e}")),
            }
        }
    }
    eprintln!("{file}: {count} cases, {} failed", failures.len());
    assert!(count > 20, "{file}: only {count} cases read");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

fn parsed(q: &str) -> Result<strata_promql::syntax::ast::Expr, String> {
    let options = ParseOptions {
        experimental_functions: true,
    };
    parse(q, options).map_err(|e| e.display(q).to_string())
}

#[test]
fn strings_print_as_prometheus() {
    check("printer_test.go", &["TestExprString"], |q| {
        parsed(q).map(|e| e.to_string())
    });
}

#[test]
fn pretty_prints_as_prometheus() {
    check(
        "prettier_test.go",
        &[
            "TestAggregateExprPretty",
            "TestBinaryExprPretty",
            "TestCallExprPretty",
            "TestParenExprPretty",
            "TestStepInvariantExpr",
            "TestExprPretty",
            "TestUnaryPretty",
        ],
        |q| parsed(q).map(|e| pretty_with_width(&e, 10)),
    );
}
