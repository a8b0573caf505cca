//! Amplitude's own evaluation engine (`@amplitude/experiment-core`, pinned in `.ci/run`) as an
//! oracle: `tests/amplitude_oracle.mjs` run by Node, fed JSON lines of (flags, contexts), many
//! cases per process; the answers of both reduced to what an SDK shows (per flag, the variant's
//! `key`, `value` and `payload`, or no variant; or the engine's refusal) so they can be compared.

use allot_compat::amplitude::Flags;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

/// What evaluating one context gave.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The engine threw (a dependency cycle, an invalid regular expression); allot refused the
    /// configuration.
    Refused,
    /// Flag key → `{key, value, payload}` of the variant it got (flags with none are absent).
    Flags(BTreeMap<String, Value>),
}

/// The engine in a Node process, answering one line per line.
pub struct Oracle {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    /// The engine's version, as its package reports it.
    pub version: String,
}

/// Whether CI demands the oracle (`.ci/run` sets both variables).
fn required() -> bool {
    ["ALLOT_REQUIRE_AMPLITUDE_ORACLE", "ALLOT_REQUIRE_OFREP_CLIENTS"]
        .iter()
        .any(|v| std::env::var(v).is_ok_and(|v| v == "1"))
}

impl Oracle {
    /// Starts the engine: Node from `PATH`, the package from the `node_modules` directory named by
    /// `ALLOT_AMPLITUDE_NODE_MODULES`. `None` (the test prints that it skipped) when either is
    /// missing, unless CI requires the oracle: then it panics.
    pub fn start() -> Option<Oracle> {
        match Oracle::try_start() {
            Ok(o) => Some(o),
            Err(why) => {
                assert!(!required(), "ALLOT_REQUIRE_AMPLITUDE_ORACLE=1 but {why}");
                eprintln!("skipped: the Amplitude oracle is not available ({why}; see .ci/run)");
                None
            }
        }
    }

    fn try_start() -> Result<Oracle, String> {
        let modules = std::env::var("ALLOT_AMPLITUDE_NODE_MODULES")
            .map_err(|_| "ALLOT_AMPLITUDE_NODE_MODULES is not set".to_string())?;
        let package = PathBuf::from(&modules).join("@amplitude/experiment-core/package.json");
        if !package.exists() {
            return Err(format!("{} does not exist", package.display()));
        }
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/amplitude_oracle.mjs");
        let mut child = Command::new("node")
            .arg(&script)
            .arg(&modules)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("node cannot be started: {e}"))?;
        let stdin = child.stdin.take();
        let mut stdout = BufReader::new(child.stdout.take().ok_or("no stdout")?);
        let mut first = String::new();
        stdout.read_line(&mut first).map_err(|e| e.to_string())?;
        let hello: Value = serde_json::from_str(&first).map_err(|e| format!("the oracle said {first:?}: {e}"))?;
        let version = hello["version"].as_str().ok_or("the oracle gave no version")?.to_string();
        Ok(Oracle { child, stdin, stdout, version })
    }

    /// Evaluates every case (flags, contexts) with the engine, all in one stream: one outcome per
    /// context of each case.
    pub fn evaluate(&mut self, cases: &[(&Value, &[Value])]) -> Vec<Vec<Outcome>> {
        let mut stdin = self.stdin.take().expect("the oracle's stdin");
        let lines: Vec<String> =
            cases.iter().map(|(flags, contexts)| json!({"flags": flags, "contexts": contexts}).to_string()).collect();
        // A writer thread, so that neither pipe can fill while the other waits.
        let (stdin, answers) = std::thread::scope(|s| {
            let writer = s.spawn(move || {
                for line in &lines {
                    stdin.write_all(line.as_bytes()).unwrap();
                    stdin.write_all(b"\n").unwrap();
                }
                stdin.flush().unwrap();
                stdin
            });
            let mut answers = Vec::with_capacity(cases.len());
            for (_, contexts) in cases {
                let mut line = String::new();
                self.stdout.read_line(&mut line).unwrap();
                let answer: Value =
                    serde_json::from_str(&line).unwrap_or_else(|e| panic!("the oracle said {line:?}: {e}"));
                answers.push(native_outcomes(&answer, contexts.len()));
            }
            (writer.join().unwrap(), answers)
        });
        self.stdin = Some(stdin);
        answers
    }
}

impl Drop for Oracle {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.wait();
    }
}

fn native_outcomes(answer: &Value, contexts: usize) -> Vec<Outcome> {
    if answer.get("error").is_some() {
        return vec![Outcome::Refused; contexts];
    }
    let results = answer["results"].as_array().expect("results");
    assert_eq!(results.len(), contexts, "{answer}");
    results
        .iter()
        .map(|r| {
            if r.get("error").is_some_and(Value::is_string) && r.as_object().is_some_and(|m| m.len() == 1) {
                return Outcome::Refused;
            }
            let flags = r.as_object().expect("a result object");
            Outcome::Flags(flags.iter().map(|(k, v)| (k.clone(), shown(v))).collect())
        })
        .collect()
}

/// What an SDK shows of a variant: `key`, `value`, `payload` (absent as null), numbers as doubles.
fn shown(variant: &Value) -> Value {
    let field = |k: &str| normalize(variant.get(k).cloned().unwrap_or(Value::Null));
    json!({"key": field("key"), "value": field("value"), "payload": field("payload")})
}

/// Numbers as JavaScript holds them: every number is a double (`1` and `1.0` are equal).
fn normalize(v: Value) -> Value {
    match v {
        Value::Number(n) => n.as_f64().and_then(serde_json::Number::from_f64).map_or(Value::Null, Value::Number),
        Value::Array(a) => Value::Array(a.into_iter().map(normalize).collect()),
        Value::Object(o) => Value::Object(o.into_iter().map(|(k, v)| (k, normalize(v))).collect::<Map<_, _>>()),
        other => other,
    }
}

/// The same case evaluated by allot: one outcome per context.
pub fn evaluate_allot(flags: &Value, contexts: &[Value]) -> Vec<Outcome> {
    let Ok(compiled) = Flags::from_json(flags.clone()) else {
        return vec![Outcome::Refused; contexts.len()];
    };
    let keys: Vec<&str> = compiled.keys().collect();
    let mut results = Vec::new();
    contexts
        .iter()
        .map(|ctx| {
            compiled.evaluate_into(ctx, &mut results);
            Outcome::Flags(
                results
                    .iter()
                    .enumerate()
                    .filter_map(|(i, v)| v.map(|v| (keys[i].to_string(), shown(compiled.variant_object(i, v)))))
                    .collect(),
            )
        })
        .collect()
}
