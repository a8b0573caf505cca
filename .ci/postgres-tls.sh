# Sourced by .ci/run: a second PostgreSQL cluster that takes TLS connections only (`hostssl` in
# pg_hba.conf, no `host` line: a plaintext connection is refused), with a self-signed CA and a
# server certificate for 127.0.0.1 and localhost, for allot-store's TLS tests
# (crates/allot-store/tests/it/tls.rs). Exports ALLOT_TEST_POSTGRES_TLS_URL (no sslmode: each test
# adds its own), ALLOT_TEST_POSTGRES_TLS_CA (the CA's PEM file) and ALLOT_REQUIRE_POSTGRES_TLS=1
# (so the tests fail, rather than skip, when the cluster is missing).
#
# Where: ALLOT_PG_TLS_DIR, by default /var/tmp/allot-ci-pg-tls, not the clone's target dir: the
# server runs as the `postgres` OS user (initdb refuses root), which must reach its data and key
# through every parent directory (a clone under /root would not do), and one fixed place lets a
# later run (another clone) find and reuse the cluster instead of leaking one per clone.
#
# Lifetime: left running at the end of the run, to be reused (not stopped by a trap): the next run
# finds it through its postmaster.pid, checks that a verified TLS login works and reuses it (or
# restarts it if not). A stale cluster (machine restarted, processes ended) is started again from
# the same data directory. The port is ALLOT_PG_TLS_PORT (default 5433), or the next free one
# when that is taken by something else. Setup takes about two seconds the first time, none after.
# A failure here does not stop the run: the TLS tests then fail and say why.

pg_tls_setup() {
  local bin dir data port="" pw i
  bin="$(ls -d /usr/lib/postgresql/*/bin 2> /dev/null | sort -V | tail -n 1)"
  if [ -z "$bin" ] || [ ! -x "$bin/initdb" ]; then
    echo "no PostgreSQL server binaries under /usr/lib/postgresql: the TLS tests will fail"
    return 1
  fi
  dir="${ALLOT_PG_TLS_DIR:-/var/tmp/allot-ci-pg-tls}"
  data="$dir/data"
  pw="allot-ci-tls"
  # initdb and postgres refuse to run as root: run them as the postgres user when we are root.
  as_pg() {
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
  }
  mkdir -p "$dir" || return 1
  if [ "$(id -u)" = 0 ]; then chown postgres: "$dir" || return 1; fi
  chmod 700 "$dir"

  # The CA and the server's certificate (kept across runs, made once).
  if [ ! -s "$dir/ca.pem" ] || [ ! -s "$dir/server.crt" ] || [ ! -s "$dir/server.key" ]; then
    rm -f "$dir/ca.pem" "$dir/ca.key" "$dir/server.crt" "$dir/server.key" "$dir/server.csr"
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n' > "$dir/server.ext"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 3650 \
      -subj "/CN=allot CI test CA" -addext "basicConstraints=critical,CA:TRUE" \
      -addext "keyUsage=critical,keyCertSign,cRLSign" -keyout "$dir/ca.key" -out "$dir/ca.pem" 2> /dev/null \
      && openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/CN=127.0.0.1" \
        -keyout "$dir/server.key" -out "$dir/server.csr" 2> /dev/null \
      && openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" -CAcreateserial \
        -days 3650 -extfile "$dir/server.ext" -out "$dir/server.crt" 2> /dev/null \
      || { echo "openssl could not make the test certificates"; return 1; }
    chmod 600 "$dir/server.key" "$dir/ca.key"
    # A new certificate: a cluster still running has the old one loaded.
    as_pg "$bin/pg_ctl" -D "$data" status > /dev/null 2>&1 && as_pg "$bin/pg_ctl" -D "$data" -m fast -w stop > /dev/null
  fi
  if [ "$(id -u)" = 0 ]; then chown postgres: "$dir"/*; fi
  printf 'hostssl all all 127.0.0.1/32 scram-sha-256\nhostssl all all ::1/128 scram-sha-256\n' > "$dir/pg_hba.conf"
  chmod 644 "$dir/pg_hba.conf" "$dir/ca.pem" "$dir/server.crt"

  conninfo() { echo "host=127.0.0.1 port=$1 user=postgres dbname=postgres sslmode=verify-full sslrootcert=$dir/ca.pem connect_timeout=5"; }
  login() { PGPASSWORD="$pw" psql -X -q -t -c 'SELECT 1' "$(conninfo "$1")" > /dev/null 2>&1; }

  # Reuse the cluster of an earlier run if it is up and a verified TLS login works.
  if as_pg "$bin/pg_ctl" -D "$data" status > /dev/null 2>&1; then
    port="$(sed -n 4p "$data/postmaster.pid")"
    if login "$port"; then
      echo "reusing the TLS cluster left running on port $port ($data)"
    else
      echo "the TLS cluster on port ${port:-?} does not take a verified TLS login: restarting it"
      # (It may be a postmaster killed with -9 but not yet reaped: then starting works.)
      as_pg "$bin/pg_ctl" -D "$data" -m fast -w -t 10 stop > /dev/null 2>&1 || true
      port=""
    fi
  fi
  if [ -z "${port:-}" ]; then
    if [ ! -s "$data/PG_VERSION" ]; then
      rm -rf "$data"
      printf '%s\n' "$pw" > "$dir/pwfile"
      chmod 600 "$dir/pwfile"
      if [ "$(id -u)" = 0 ]; then chown postgres: "$dir/pwfile"; fi
      as_pg "$bin/initdb" -D "$data" -U postgres --pwfile="$dir/pwfile" -A scram-sha-256 > "$dir/initdb.log" 2>&1 \
        || { echo "initdb failed:"; cat "$dir/initdb.log"; return 1; }
      rm -f "$dir/pwfile"
    fi
    # The first free port from ALLOT_PG_TLS_PORT (something else may hold it).
    port="${ALLOT_PG_TLS_PORT:-5433}"
    for i in $(seq 1 20); do
      if (exec 3<> "/dev/tcp/127.0.0.1/$port") 2> /dev/null; then port=$((port + 1)); else break; fi
    done
    # Settings on the command line, so nothing in the data directory needs editing.
    as_pg "$bin/pg_ctl" -D "$data" -l "$dir/server.log" -w -t 60 -o "-p $port -c listen_addresses=127.0.0.1 \
      -c unix_socket_directories='$dir' -c hba_file='$dir/pg_hba.conf' -c ssl=on \
      -c ssl_cert_file='$dir/server.crt' -c ssl_key_file='$dir/server.key' -c fsync=off \
      -c synchronous_commit=off -c full_page_writes=off" start > /dev/null \
      || { echo "the TLS cluster did not start:"; tail -n 20 "$dir/server.log"; return 1; }
    login "$port" || { echo "the TLS cluster on port $port refuses a verified TLS login:"; tail -n 20 "$dir/server.log"; return 1; }
    echo "TLS cluster started on port $port ($data)"
  fi
  export ALLOT_TEST_POSTGRES_TLS_URL="postgres://postgres:$pw@127.0.0.1:$port/postgres"
  export ALLOT_TEST_POSTGRES_TLS_CA="$dir/ca.pem"
}

# Set whatever happens above: without the cluster the TLS tests must fail, not skip.
export ALLOT_REQUIRE_POSTGRES_TLS=1
pg_tls_setup || echo "PostgreSQL with TLS is not available: the TLS tests will fail"
