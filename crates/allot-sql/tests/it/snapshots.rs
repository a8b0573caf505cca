//! Each dialect's query for the documented example mapping (`examples/warehouse/tables.yaml`),
//! snapshot-tested: a change to the SQL is a reviewed diff.

use allot_sql::{compile, parse, Dialect};

#[test]
fn every_dialect_of_the_example() {
    let tables = parse(include_str!("../../../../examples/warehouse/tables.yaml")).unwrap();
    for d in Dialect::ALL {
        insta::assert_snapshot!(format!("example_{}", d.name()), compile(&tables, d));
    }
}

#[test]
fn string_literals_are_escaped_per_dialect() {
    assert_eq!(Dialect::Postgres.string(r"it's \n"), r"'it''s \n'");
    assert_eq!(Dialect::Duckdb.string("it's"), "'it''s'");
    assert_eq!(Dialect::Spark.string(r"it's \n"), r"'it\'s \\n'");
    assert_eq!(Dialect::Bigquery.string(r"a\'"), r"'a\\\''");
    assert_eq!(Dialect::Snowflake.string("'"), r"'\''");
}

#[test]
fn an_experiment_id_cannot_break_out_of_its_literal() {
    let yaml = "exposures: {table: x}\nexperiments: {\"a'); DROP TABLE x; --\": {}}\nmetrics: {m: {table: e, aggregate: count}}\n";
    let t = parse(yaml).unwrap();
    let sql = compile(&t, Dialect::Postgres);
    assert!(sql.contains("IN ('a''); DROP TABLE x; --')"), "{sql}");
}
