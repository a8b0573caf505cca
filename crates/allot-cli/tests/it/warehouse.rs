//! The analysis pushed down to the engines, for real: one golden data set (generated here,
//! deterministic) analysed through the file path (`--exposures/--metrics/--covariates`), through
//! PostgreSQL (`--warehouse`), and through DuckDB and Spark SQL (the `--emit-sql` query run by
//! `tests/warehouse_runner.py`, its rows fed to `--from-stats`): every engine gives the same
//! report, and the same as the file path, to 1e-9.
//!
//! Engines: PostgreSQL at `ALLOT_TEST_POSTGRES_URL` (required with `ALLOT_REQUIRE_POSTGRES=1`),
//! DuckDB and pyspark in the Python `ALLOT_WAREHOUSE_PYTHON` (required with
//! `ALLOT_REQUIRE_WAREHOUSE_ENGINES=1`, as `.ci/run` sets); outside CI a missing engine is
//! skipped with a line saying so.

use assert_cmd::Command;
use serde_json::Value;
use std::fmt::Write as _;
use std::path::Path;

/// The golden data: exposures and events as the engines load them, and the file path's inputs.
struct Golden {
    exposures: String,
    /// The same with 4 rows of checkout that are no exposures (no time, no unit, no variant), as
    /// a warehouse may hold them: the engines leave them out and count them.
    untidy: String,
    events: String,
    /// `unit,metric,value` per unit: revenue, revenue_capped, clicks (post-exposure).
    metrics: String,
    /// `unit,metric,value`: revenue in the pre-period.
    covariates: String,
    /// Per experiment and variant, its units' (Σ amount, Σ items) after exposure (units seen in
    /// several variants left out), for the ratio check.
    ratio_units: std::collections::BTreeMap<(String, String), Vec<(f64, f64)>>,
}

/// A small deterministic generator (SplitMix64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Day 0 of the data (2026-01-01T00:00:00Z).
const T: f64 = 1_767_225_600.0;
const DAY: f64 = 86_400.0;

/// 2,400 units; experiment `checkout` (control, treatment, treatment_b) and `home` (control,
/// treatment) on overlapping units; every unit's exposures fall on day 0, its pre-period
/// purchases in days −13..0 and its post-exposure events on days 1..8, so that the windows of
/// tables.yaml select exactly what the file path's files hold. Some units are exposed to two
/// variants (their first row in the file is also their earliest).
fn golden() -> Golden {
    let mut rng = Rng(13);
    let mut exposures = String::from("unit,experiment,variant,time\n");
    let mut events = String::from("unit,event,amount,items,time\n");
    let mut metrics = String::from("unit,metric,value\n");
    let mut covariates = String::from("unit,metric,value\n");
    let mut ratio_units: std::collections::BTreeMap<(String, String), Vec<(f64, f64)>> = Default::default();
    let exps: [(&str, &[&str]); 2] =
        [("checkout", &["control", "treatment", "treatment_b"]), ("home", &["control", "treatment"])];
    for i in 0..2400u64 {
        let unit = format!("u{i:05}");
        let mut seen: Vec<(String, String, bool)> = vec![];
        for (e, (exp, variants)) in exps.iter().enumerate() {
            // checkout: every unit; home: two thirds of them.
            if e == 1 && i % 3 == 2 {
                continue;
            }
            let v = variants[(i as usize + e) % variants.len()];
            let t0 = T + rng.unit() * 0.5 * DAY;
            let _ = writeln!(exposures, "{unit},{exp},{v},{t0:?}");
            // Repeated exposures, later the same day; 1 in 40 units also sees another variant.
            let mut jumped = false;
            for k in 0..(rng.next() % 3) {
                jumped |= i % 40 == 7 && k == 0;
                let other = if jumped && k == 0 { variants[(i as usize + e + 1) % variants.len()] } else { v };
                let _ = writeln!(exposures, "{unit},{exp},{other},{:?}", t0 + 3600.0 * (k + 1) as f64);
            }
            seen.push((exp.to_string(), v.to_string(), jumped));
        }
        // A treatment effect on checkout's treatment arm.
        let lift = if seen.first().is_some_and(|s| s.1 == "treatment") { 1.3 } else { 1.0 };
        let propensity = rng.unit();
        let (mut revenue, mut pre, mut clicks, mut items) = (0.0, 0.0, 0u64, 0.0);
        for _ in 0..(rng.next() % 4) {
            let amount = (propensity * 40.0 * rng.unit()).round() / 4.0;
            let t = T - 13.0 * DAY + rng.unit() * 12.5 * DAY;
            let _ = writeln!(events, "{unit},purchase,{amount:?},1.0,{t:?}");
            pre += amount;
        }
        for _ in 0..(rng.next() % 5) {
            let amount = (lift * propensity * 40.0 * rng.unit()).round() / 4.0 + 1.0;
            let n = (1 + rng.next() % 3) as f64;
            let t = T + DAY + rng.unit() * 7.0 * DAY;
            let _ = writeln!(events, "{unit},purchase,{amount:?},{n:?},{t:?}");
            revenue += amount;
            items += n;
        }
        for _ in 0..(rng.next() % 6) {
            let t = T + DAY + rng.unit() * 7.0 * DAY;
            let _ = writeln!(events, "{unit},click,0.0,0.0,{t:?}");
            clicks += 1;
        }
        // An event of a unit never exposed, and one before the pre-period: neither counts.
        if i % 97 == 0 {
            let _ = writeln!(events, "ghost{i},purchase,5.0,1.0,{:?}", T + 2.0 * DAY);
            let _ = writeln!(events, "{unit},purchase,1000.0,1.0,{:?}", T - 30.0 * DAY);
        }
        let _ = writeln!(metrics, "{unit},revenue,{revenue:?}");
        let _ = writeln!(metrics, "{unit},revenue_capped,{:?}", revenue.min(50.0));
        let _ = writeln!(metrics, "{unit},clicks,{clicks}.0");
        let _ = writeln!(covariates, "{unit},revenue,{pre:?}");
        for (exp, v, jumped) in seen {
            if !jumped {
                ratio_units.entry((exp, v)).or_default().push((revenue, items));
            }
        }
    }
    let untidy = format!(
        "{exposures}u00001,checkout,control,\nzz-untimed,checkout,control,\n,checkout,treatment,{T:?}\nu00002,checkout,,{T:?}\n"
    );
    Golden { exposures, untidy, events, metrics, covariates, ratio_units }
}

/// tables.yaml of the golden data in `schema` (`with_ratio`: the ratio metric too).
fn tables(schema: &str, with_ratio: bool) -> String {
    let ev = format!("table: {schema}.events, time_type: epoch_seconds");
    let mut s = format!(
        "exposures: {{table: {schema}.exposures, time_type: epoch_seconds}}\nmetrics:\n  \
         revenue: {{{ev}, aggregate: sum, value: amount, where: {{column: event, equals: purchase}}, window: {{delay: 0s}}, cuped: {{days: 14}}}}\n  \
         revenue_capped: {{{ev}, aggregate: sum, value: amount, where: {{column: event, equals: purchase}}, window: {{delay: 12h, duration: 9d}}, cap: 50}}\n  \
         clicks: {{{ev}, aggregate: count, where: {{column: event, equals: click}}, window: {{delay: 0s, duration: 30d}}}}\n"
    );
    if with_ratio {
        let _ = writeln!(
            s,
            "  order_value: {{{ev}, aggregate: ratio, numerator: amount, denominator: items, where: {{column: event, equals: purchase}}, window: {{delay: 0s}}}}"
        );
    }
    s
}

fn allot() -> Command {
    Command::cargo_bin("allot").unwrap()
}

/// `allot analyze … --format json` in `dir`: its `experiments`.
fn report(dir: &Path, args: &[&str]) -> Value {
    let out = allot().current_dir(dir).arg("analyze").args(args).args(["--format", "json"]).output().unwrap();
    assert!(out.status.success(), "allot analyze {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v["experiments"].clone()
}

/// `diagnostics.exposure_rows_left_out` of a report; the text report names them too.
fn left_out(dir: &Path, args: &[&str]) -> u64 {
    let out = allot().current_dir(dir).arg("analyze").args(args).args(["--format", "json"]).output().unwrap();
    assert!(out.status.success(), "allot analyze {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let text = allot().current_dir(dir).arg("analyze").args(args).output().unwrap();
    let n = v["diagnostics"]["exposure_rows_left_out"].as_u64().unwrap();
    assert!(
        String::from_utf8_lossy(&text.stdout)
            .contains(&format!("exposure rows without a unit, variant or time, left out: {n}")),
        "{}",
        String::from_utf8_lossy(&text.stdout)
    );
    n
}

/// Every difference between two reports beyond 1e-9 (absolute or relative), with its path.
fn diffs(a: &Value, b: &Value, path: &str, out: &mut Vec<String>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let (kx, ky): (Vec<_>, Vec<_>) = (x.keys().collect(), y.keys().collect());
            let mut sx = kx.clone();
            let mut sy = ky.clone();
            sx.sort();
            sy.sort();
            if sx != sy {
                out.push(format!("{path}: keys {kx:?} vs {ky:?}"));
                return;
            }
            for k in kx {
                diffs(&x[k], &y[k], &format!("{path}.{k}"), out);
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (p, q)) in x.iter().zip(y).enumerate() {
                diffs(p, q, &format!("{path}[{i}]"), out);
            }
        }
        (Value::Number(p), Value::Number(q)) => {
            let (p, q) = (p.as_f64().unwrap(), q.as_f64().unwrap());
            if (p - q).abs() > 1e-9 * p.abs().max(q.abs()).max(1.0) {
                out.push(format!("{path}: {p} vs {q}"));
            }
        }
        _ if a == b => {}
        _ => out.push(format!("{path}: {a} vs {b}")),
    }
}

fn assert_same(what: &str, a: &Value, b: &Value) {
    let mut out = vec![];
    diffs(a, b, "experiments", &mut out);
    assert!(out.is_empty(), "{what}: {} differences beyond 1e-9:\n{}", out.len(), out.join("\n"));
}

/// Drops the ratio metric's columns from rows of sufficient statistics (CSV).
fn without_ratio(rows: &str) -> String {
    let mut lines = rows.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let keep: Vec<usize> = (0..header.len()).filter(|&i| !header[i].starts_with("order_value__")).collect();
    let pick = |l: &str| {
        let cells: Vec<&str> = l.split(',').collect();
        keep.iter().map(|&i| cells[i]).collect::<Vec<_>>().join(",")
    };
    let mut s = pick(&header.join(",")) + "\n";
    for l in lines {
        s += &pick(l);
        s += "\n";
    }
    s
}

/// The ratio metric against its definition, computed here from the units: per variant
/// R = Σ amount / Σ items, and the delta-method standard deviation per unit.
fn check_ratio(report: &Value, g: &Golden) {
    let mut bad = vec![];
    let mut checked = 0;
    for ((exp, v), units) in &g.ratio_units {
        let n = units.len() as f64;
        let (sy, sx): (f64, f64) = units.iter().fold((0.0, 0.0), |a, u| (a.0 + u.0, a.1 + u.1));
        let r = sy / sx;
        // Linearised per-unit values (y − R x)/x̄: their sample variance is the delta method's.
        let xbar = sx / n;
        let lin: Vec<f64> = units.iter().map(|u| (u.0 - r * u.1) / xbar).collect();
        let var = lin.iter().map(|l| l * l).sum::<f64>() / (n - 1.0);
        let got = &report[exp]["metrics"]["order_value"]["variants"][v];
        let (mean, sd) = (got["mean"].as_f64().unwrap(), got["sd"].as_f64().unwrap());
        checked += 1;
        if (mean - r).abs() > 1e-9 * r.abs() || (sd - var.sqrt()).abs() > 1e-9 * var.sqrt() || got["n"] != units.len() {
            bad.push(format!("{exp}/{v}: got {got}, want n {} mean {r} sd {}", units.len(), var.sqrt()));
        }
    }
    assert_eq!(checked, 5);
    assert!(bad.is_empty(), "ratio metric:\n{}", bad.join("\n"));
}

fn required(var: &str) -> bool {
    std::env::var(var).is_ok_and(|v| v == "1")
}

/// Loads the golden data into a fresh schema of the test server; `None` (skipped) without one.
fn postgres(g: &Golden) -> Option<(String, String, tokio::runtime::Runtime)> {
    let skip = |why: String| {
        assert!(!required("ALLOT_REQUIRE_POSTGRES"), "ALLOT_REQUIRE_POSTGRES=1 but {why}");
        eprintln!("skipped PostgreSQL: {why}");
    };
    let Ok(url) = std::env::var("ALLOT_TEST_POSTGRES_URL") else {
        skip("ALLOT_TEST_POSTGRES_URL is not set".into());
        return None;
    };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    let schema = format!("allot_wh_{}_{nanos}", std::process::id());
    let load = async {
        use sqlx::Connection as _;
        let mut c = sqlx::PgConnection::connect(&url).await?;
        let mut sql = format!(
            "CREATE SCHEMA {schema};\nCREATE TABLE {schema}.exposures (unit TEXT, experiment TEXT, variant TEXT, time DOUBLE PRECISION);\n\
             CREATE TABLE {schema}.events (unit TEXT, event TEXT, amount DOUBLE PRECISION, items DOUBLE PRECISION, time DOUBLE PRECISION);\n"
        );
        for (table, csv, text_cols) in [("exposures", &g.untidy, 3), ("events", &g.events, 2)] {
            let rows: Vec<String> = csv
                .lines()
                .skip(1)
                .map(|l| {
                    let cells: Vec<String> = l
                        .split(',')
                        .enumerate()
                        .map(|(i, c)| match c {
                            "" => "NULL".to_string(),
                            _ if i < text_cols => format!("'{c}'"),
                            _ => c.to_string(),
                        })
                        .collect();
                    format!("({})", cells.join(","))
                })
                .collect();
            for chunk in rows.chunks(2000) {
                let _ = writeln!(sql, "INSERT INTO {schema}.{table} VALUES {};", chunk.join(","));
            }
        }
        sqlx::raw_sql(&sql).execute(&mut c).await?;
        c.close().await?;
        Ok::<_, sqlx::Error>(())
    };
    if let Err(e) = rt.block_on(load) {
        skip(format!("PostgreSQL at ALLOT_TEST_POSTGRES_URL: {e}"));
        return None;
    }
    Some((url, schema, rt))
}

fn drop_schema(url: &str, schema: &str, rt: &tokio::runtime::Runtime) {
    let _ = rt.block_on(async {
        use sqlx::Connection as _;
        let mut c = sqlx::PgConnection::connect(url).await?;
        sqlx::raw_sql(&format!("DROP SCHEMA {schema} CASCADE")).execute(&mut c).await?;
        Ok::<_, sqlx::Error>(())
    });
}

/// Runs the query of `tables` on DuckDB or Spark over the golden CSVs in `dir`: rows as CSV.
/// `None` (skipped) without the engine.
fn python_engine(engine: &str, dialect: &str, schema: &str, dir: &Path) -> Option<String> {
    let skip = |why: String| {
        assert!(!required("ALLOT_REQUIRE_WAREHOUSE_ENGINES"), "ALLOT_REQUIRE_WAREHOUSE_ENGINES=1 but {why}");
        eprintln!("skipped {engine}: {why}");
    };
    let Ok(python) = std::env::var("ALLOT_WAREHOUSE_PYTHON") else {
        skip("ALLOT_WAREHOUSE_PYTHON is not set (a Python with duckdb and pyspark; .ci/run installs them)".into());
        return None;
    };
    let tables_path = dir.join(format!("tables_{engine}.yaml"));
    std::fs::write(&tables_path, tables(schema, true)).unwrap();
    let sql = allot()
        .current_dir(dir)
        .args(["analyze", "--emit-sql", dialect, "--tables"])
        .arg(&tables_path)
        .output()
        .unwrap();
    assert!(sql.status.success(), "{}", String::from_utf8_lossy(&sql.stderr));
    let sql_path = dir.join(format!("query_{engine}.sql"));
    std::fs::write(&sql_path, &sql.stdout).unwrap();
    let runner = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/warehouse_runner.py");
    let out = match std::process::Command::new(&python)
        .arg(runner)
        .arg(engine)
        .arg(dir)
        .arg(&sql_path)
        .arg(schema)
        .output()
    {
        Ok(o) => o,
        Err(e) => {
            skip(format!("cannot run {python}: {e}"));
            return None;
        }
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        if stderr.contains("ModuleNotFoundError") {
            skip(format!("{python} lacks the engine: {}", stderr.lines().last().unwrap_or_default()));
            return None;
        }
        panic!("{engine} failed on the generated SQL:\n{stderr}");
    }
    Some(String::from_utf8(out.stdout).unwrap())
}

#[test]
fn every_engine_gives_the_file_paths_numbers() {
    let g = golden();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // The engines read the untidy exposures (`exposures.csv`, 4 rows that are no exposures); the
    // file path, which refuses such rows, the tidy ones.
    for (name, text) in [
        ("exposures", &g.untidy),
        ("exposures_tidy", &g.exposures),
        ("events", &g.events),
        ("metrics", &g.metrics),
        ("covariates", &g.covariates),
    ] {
        std::fs::write(d.join(format!("{name}.csv")), text).unwrap();
    }
    // The file path, on files holding exactly what the windows select.
    let files =
        report(d, &["--exposures", "exposures_tidy.csv", "--metrics", "metrics.csv", "--covariates", "covariates.csv"]);
    let jumpers = files["checkout"]["variant_jumpers"].as_u64().unwrap();
    assert!(jumpers > 10, "the data has multi-variant units: {jumpers}");
    let mut engines = vec![];
    // Each engine's full report (with the ratio metric), to compare with each other.
    let mut full: Vec<(String, Value)> = vec![];
    if let Some((url, schema, rt)) = postgres(&g) {
        std::fs::write(d.join("tables_pg3.yaml"), tables(&schema, false)).unwrap();
        std::fs::write(d.join("tables_pg4.yaml"), tables(&schema, true)).unwrap();
        let three = report(d, &["--warehouse", &url, "--tables", "tables_pg3.yaml"]);
        let four = report(d, &["--warehouse", &url, "--tables", "tables_pg4.yaml"]);
        assert_eq!(left_out(d, &["--warehouse", &url, "--tables", "tables_pg3.yaml"]), 4, "postgres");
        drop_schema(&url, &schema, &rt);
        assert_same("postgres (--warehouse) vs files", &three, &files);
        full.push(("postgres".into(), four));
        engines.push("postgres");
    }
    for (engine, dialect, schema) in [("duckdb", "duckdb", "allot_wh"), ("spark", "spark", "global_temp")] {
        let Some(rows) = python_engine(engine, dialect, schema, d) else { continue };
        let all = d.join(format!("rows_{engine}.csv"));
        std::fs::write(&all, &rows).unwrap();
        let some = d.join(format!("rows_{engine}_3.csv"));
        std::fs::write(&some, without_ratio(&rows)).unwrap();
        let three = report(d, &["--from-stats", some.to_str().unwrap()]);
        assert_same(&format!("{engine} (--from-stats) vs files"), &three, &files);
        assert_eq!(left_out(d, &["--from-stats", some.to_str().unwrap()]), 4, "{engine}");
        full.push((engine.into(), report(d, &["--from-stats", all.to_str().unwrap()])));
        engines.push(engine);
    }
    for (name, r) in &full {
        check_ratio(r, &g);
        assert_same(&format!("{name} vs {}", full[0].0), r, &full[0].1);
    }
    eprintln!("engines compared with the file path: {engines:?}");
}

/// `--store` on allot's own SQLite store: its exposure table through the same SQL (metrics from
/// a CSV loaded into a temporary table) gives the file path's report on the same exposures.
#[test]
fn the_stores_exposures_give_the_file_paths_numbers() {
    use allot_store::Store as _;
    let g = golden();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let db = d.join("allot.db");
    let url = format!("sqlite://{}?mode=rwc", db.display());
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    // The golden exposures as the service records them: RFC 3339 times, one row per unit,
    // experiment, variant and day.
    let rows: Vec<allot_store::Exposure> = g
        .exposures
        .lines()
        .skip(1)
        .map(|l| {
            let c: Vec<&str> = l.split(',').collect();
            let t =
                time::OffsetDateTime::from_unix_timestamp_nanos((c[3].parse::<f64>().unwrap() * 1e9) as i128).unwrap();
            allot_store::Exposure {
                unit: c[0].into(),
                experiment: c[1].into(),
                variant: c[2].into(),
                day: "2026-01-01".into(),
                time: t.format(&time::format_description::well_known::Rfc3339).unwrap(),
                version: 1,
            }
        })
        .collect();
    let stored = rt
        .block_on(async {
            let s = allot_store::sqlite::SqliteStore::open(&url).await?;
            s.record_exposures(&rows).await
        })
        .unwrap();
    let mut csv = String::from("unit,experiment,variant,timestamp\n");
    let mut seen = std::collections::HashSet::new();
    for x in &rows {
        if seen.insert((x.unit.clone(), x.experiment.clone(), x.variant.clone())) {
            let _ = writeln!(csv, "{},{},{},{}", x.unit, x.experiment, x.variant, x.time);
        }
    }
    assert_eq!(stored as usize, seen.len());
    std::fs::write(d.join("exposures.csv"), csv).unwrap();
    std::fs::write(d.join("metrics.csv"), &g.metrics).unwrap();
    let files = report(d, &["--exposures", "exposures.csv", "--metrics", "metrics.csv"]);
    let store = report(d, &["--store", &format!("sqlite://{}", db.display()), "--metrics", "metrics.csv"]);
    assert_same("--store sqlite vs files", &store, &files);
}

/// `--store` on a PostgreSQL store in its own schema (`?schema=`): the store's exposures through
/// the same SQL, metrics from tables of the same database named in tables.yaml (no `exposures`).
#[test]
fn a_postgres_stores_exposures_with_metric_tables_beside_them() {
    use allot_store::Store as _;
    let g = golden();
    let Some((url, schema, rt)) = postgres(&g) else { return };
    let rows: Vec<allot_store::Exposure> = g
        .exposures
        .lines()
        .skip(1)
        .map(|l| {
            let c: Vec<&str> = l.split(',').collect();
            let t =
                time::OffsetDateTime::from_unix_timestamp_nanos((c[3].parse::<f64>().unwrap() * 1e9) as i128).unwrap();
            allot_store::Exposure {
                unit: c[0].into(),
                experiment: c[1].into(),
                variant: c[2].into(),
                day: "2026-01-01".into(),
                time: t.format(&time::format_description::well_known::Rfc3339).unwrap(),
                version: 1,
            }
        })
        .collect();
    // The store in a schema of its own, beside the golden tables' (which have an `exposures` too).
    let store_schema = format!("{schema}_store");
    let stored = rt.block_on(async {
        let s = allot_store::postgres::PgStore::open_in_schema(&url, Some(&store_schema)).await?;
        s.record_exposures(&rows).await
    });
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // tables.yaml of the warehouse test without its `exposures` section.
    let metrics_only: String = tables(&schema, false).lines().skip(1).map(|l| format!("{l}\n")).collect();
    std::fs::write(d.join("metrics.yaml"), metrics_only).unwrap();
    std::fs::write(d.join("exposures.csv"), &g.exposures).unwrap();
    std::fs::write(d.join("metrics.csv"), &g.metrics).unwrap();
    std::fs::write(d.join("covariates.csv"), &g.covariates).unwrap();
    let sep = if url.contains('?') { '&' } else { '?' };
    let store_url = format!("{url}{sep}schema={store_schema}");
    let result = stored.map(|_| report(d, &["--store", &store_url, "--tables", "metrics.yaml"]));
    drop_schema(&url, &schema, &rt);
    drop_schema(&url, &store_schema, &rt);
    let store = result.unwrap();
    let files =
        report(d, &["--exposures", "exposures.csv", "--metrics", "metrics.csv", "--covariates", "covariates.csv"]);
    assert_same("--store postgres vs files", &store, &files);
}
