"""Runs allot's analysis query on DuckDB or Spark SQL (local mode) over the golden CSVs and prints
its rows as CSV, for crates/allot-cli/tests/it/warehouse.rs.

usage: warehouse_runner.py duckdb|spark DATA_DIR QUERY.sql SCHEMA

DATA_DIR holds exposures.csv (unit,experiment,variant,time) and events.csv
(unit,event,amount,items,time); they become SCHEMA.exposures and SCHEMA.events (Spark: global
temporary views, SCHEMA must be global_temp). Floats print in their shortest round-tripping form.
"""
import csv
import os
import sys

EXPOSURES = [("unit", "VARCHAR"), ("experiment", "VARCHAR"), ("variant", "VARCHAR"), ("time", "DOUBLE")]
EVENTS = [("unit", "VARCHAR"), ("event", "VARCHAR"), ("amount", "DOUBLE"), ("items", "DOUBLE"), ("time", "DOUBLE")]


def duckdb_rows(data, sql, schema):
    import duckdb

    con = duckdb.connect()
    con.execute(f"CREATE SCHEMA {schema}")
    for name, cols in (("exposures", EXPOSURES), ("events", EVENTS)):
        spec = ", ".join(f"'{c}': '{t}'" for c, t in cols)
        path = os.path.join(data, f"{name}.csv")
        con.execute(f"CREATE TABLE {schema}.{name} AS SELECT * FROM read_csv('{path}', header = true, columns = {{{spec}}})")
    cur = con.execute(sql)
    return [d[0] for d in cur.description], cur.fetchall()


def spark_rows(data, sql, schema):
    from pyspark.sql import SparkSession
    from pyspark.sql.types import DoubleType, StringType, StructField, StructType

    spark = (
        SparkSession.builder.master("local[1]")
        .appName("allot-warehouse-test")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "1")
        .config("spark.driver.memory", "512m")
        .config("spark.sql.session.timeZone", "UTC")
        # Small data: interpreted plans and the JIT's first tier start faster than code generation.
        .config("spark.sql.codegen.wholeStage", "false")
        .config("spark.driver.extraJavaOptions", "-XX:+UseSerialGC -XX:TieredStopAtLevel=1")
        .config("spark.ui.showConsoleProgress", "false")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    types = {"VARCHAR": StringType(), "DOUBLE": DoubleType()}
    for name, cols in (("exposures", EXPOSURES), ("events", EVENTS)):
        struct = StructType([StructField(c, types[t]) for c, t in cols])
        df = spark.read.csv(os.path.join(data, f"{name}.csv"), header=True, schema=struct)
        df.createOrReplaceGlobalTempView(name)
    result = spark.sql(sql)
    cols = result.columns
    rows = [tuple(r) for r in result.collect()]
    spark.stop()
    return cols, rows


def main():
    engine, data, query, schema = sys.argv[1:5]
    with open(query) as f:
        sql = f.read()
    cols, rows = (duckdb_rows if engine == "duckdb" else spark_rows)(data, sql, schema)
    out = csv.writer(sys.stdout, lineterminator="\n")
    out.writerow(cols)
    for r in rows:
        out.writerow([repr(v) if isinstance(v, float) else v for v in r])


if __name__ == "__main__":
    main()
