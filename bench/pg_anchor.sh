#!/usr/bin/env bash
# pg_anchor.sh -- anchor figures for "configuration database replicated from an
# active to a standby server" on one host over loopback.
#
# Measures, in one run:
#   1. fsync floor (2000 x 4 KiB write+fsync in the DB directory)
#   2. loopback TCP raw copy throughput (512 MiB, 1 MiB sendall chunks)
#   3. PostgreSQL primary + hot standby (streaming replication, loopback):
#      a. durable publish throughput, 100-object upsert txns (local / remote_apply), and
#         1-row upsert txns from 16 concurrent clients (group commit)
#      b. single-object publish latency (2000 x 1-row upsert txns)
#      c. replication lag (standby polling) + commit latency per synchronous_commit level
#      d. WAL bytes per single-object change (LSN diff, pg_waldump breakdown)
#      e. 1,000,000-object load, database size, pg_basebackup full copy time
# Prints a Markdown table, then one JSON line (last line of stdout).
#
# Environment knobs (all optional):
#   PGA_BASE=/tmp        parent dir for the temp dir (databases + fsync file live there)
#   PGA_DURATION=20      seconds per throughput run
#   PGA_LOAD_ROWS=1000000
#   PGA_CLIENT=tcp|unix  how the benchmark client connects (replication is always TCP 127.0.0.1)
#   PGA_KEEP=1           keep temp dir (logs) after the run
# Must run as root (servers run as the 'postgres' user; initdb refuses root).
set -euo pipefail

BASE="${PGA_BASE:-/tmp}"
DURATION="${PGA_DURATION:-20}"
LOAD_ROWS="${PGA_LOAD_ROWS:-1000000}"
CLIENT="${PGA_CLIENT:-tcp}"
PGUSER_OS=postgres

log() { echo "[pg_anchor $(date +%H:%M:%S)] $*" >&2; }

[ "$(id -u)" = 0 ] || { echo "run as root" >&2; exit 1; }

# ---------------------------------------------------------------- prerequisites
find_pgbin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1; }
PGBIN="$(find_pgbin || true)"
if [ -z "$PGBIN" ] || [ ! -x "$PGBIN/initdb" ]; then
  log "installing Debian postgresql package"
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
  PGBIN="$(find_pgbin)"
fi
id "$PGUSER_OS" >/dev/null 2>&1 || { log "no '$PGUSER_OS' OS user"; exit 1; }
PY="${PGA_PYTHON:-python3}"
if ! "$PY" -c 'import psycopg' 2>/dev/null; then
  log "installing psycopg[binary]"
  "$PY" -m pip install -q 'psycopg[binary]' >&2 2>&1 \
    || "$PY" -m pip install -q --break-system-packages 'psycopg[binary]' >&2
fi

# ---------------------------------------------------------------- temp dir + cleanup
WORK="$(mktemp -d "$BASE/pg_anchor.XXXXXX")"
chown "$PGUSER_OS:" "$WORK"
chmod 0755 "$WORK"
PRIM="$WORK/primary"; STBY="$WORK/standby"; SOCK="$WORK/sock"
mkdir -p "$SOCK"; chown "$PGUSER_OS:" "$SOCK"

asuser() { runuser -u "$PGUSER_OS" -- "$@"; }

cleanup() {
  rc=$?
  for d in "$STBY" "$PRIM" "$WORK/copy"; do
    if [ -f "$d/postmaster.pid" ]; then
      asuser "$PGBIN/pg_ctl" -D "$d" stop -m fast -w -t 60 >/dev/null 2>&1 \
        || asuser "$PGBIN/pg_ctl" -D "$d" stop -m immediate -w -t 30 >/dev/null 2>&1 || true
    fi
  done
  if [ "$rc" != 0 ]; then
    for f in "$WORK"/*.log; do [ -f "$f" ] && { echo "---- $f (tail)" >&2; tail -20 "$f" >&2; }; done
  fi
  if [ "${PGA_KEEP:-0}" = 1 ]; then log "kept $WORK"; else rm -rf "$WORK"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { "$PY" -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
P1="$(free_port)"; P2="$(free_port)"
while [ "$P2" = "$P1" ]; do P2="$(free_port)"; done

# ---------------------------------------------------------------- primary
log "initdb primary in $PRIM (port $P1)"
asuser "$PGBIN/initdb" -D "$PRIM" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >"$WORK/initdb.log" 2>&1 \
  || asuser "$PGBIN/initdb" -D "$PRIM" -U postgres --auth=trust -E UTF8 --no-locale >"$WORK/initdb.log" 2>&1
cat >>"$PRIM/postgresql.conf" <<EOF

# ---- pg_anchor settings
listen_addresses = '127.0.0.1'
port = $P1
unix_socket_directories = '$SOCK'
shared_buffers = 1GB
wal_level = replica
max_wal_senders = 5
max_replication_slots = 5
max_wal_size = 8GB
checkpoint_timeout = 30min
fsync = on
synchronous_commit = on
full_page_writes = on
hot_standby = on
wal_receiver_status_interval = 1s
logging_collector = off
log_min_messages = warning
EOF
asuser "$PGBIN/pg_ctl" -D "$PRIM" -l "$WORK/primary.log" -w -t 120 start >/dev/null

# ---------------------------------------------------------------- standby
log "pg_basebackup -R standby in $STBY (port $P2)"
asuser "$PGBIN/pg_basebackup" -d "host=127.0.0.1 port=$P1 user=postgres application_name=standby1" \
  -D "$STBY" -R -X stream -C -S standby1 -c fast >"$WORK/basebackup_standby.log" 2>&1
cat >>"$STBY/postgresql.auto.conf" <<EOF
port = $P2
primary_conninfo = 'host=127.0.0.1 port=$P1 user=postgres application_name=standby1'
primary_slot_name = 'standby1'
EOF
asuser "$PGBIN/pg_ctl" -D "$STBY" -l "$WORK/standby.log" -w -t 120 start >/dev/null

# ---------------------------------------------------------------- benchmark driver
cat >"$WORK/bench.py" <<'PYEOF'
import os, sys, time, json, socket, random, uuid, subprocess, platform, re, statistics
import multiprocessing as mp

A = dict(a.split("=", 1) for a in sys.argv[1:])
WORK, PGBIN, P1, P2 = A["work"], A["pgbin"], int(A["p1"]), int(A["p2"])
SOCK, CLIENT, PRIM = A["sock"], A["client"], A["prim"]
DUR, LOAD_ROWS = float(A["duration"]), int(A["load_rows"])
HOST = "127.0.0.1" if CLIENT == "tcp" else SOCK
T_START = time.time()

def log(*a):
    print(f"[bench {time.strftime('%H:%M:%S')}]", *a, file=sys.stderr, flush=True)

def pct(xs, p):
    s = sorted(xs)
    if not s:
        return float("nan")
    k = (len(s) - 1) * p / 100.0
    f = int(k); c = min(f + 1, len(s) - 1)
    return s[f] + (s[c] - s[f]) * (k - f)

def ms(x):
    return round(x * 1000.0, 3)

def lat_summary(xs):
    return {"n": len(xs), "p50_ms": ms(pct(xs, 50)), "p99_ms": ms(pct(xs, 99)),
            "mean_ms": ms(statistics.fmean(xs)), "max_ms": ms(max(xs))}

R = {"machine": {}, "fsync": {}, "loopback": {}, "pg": {}}

# ------------------------------------------------------------------ machine info
def machine_info():
    m = R["machine"]
    m["kernel"] = platform.release()
    try:
        cpu = [l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")]
        m["cpu"] = cpu[0] if cpu else "?"
    except Exception:
        m["cpu"] = "?"
    m["ncpu"] = os.cpu_count()
    m["mem_gib"] = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    try:
        fs = subprocess.run(["findmnt", "-no", "FSTYPE,SOURCE", "-T", WORK], capture_output=True, text=True).stdout.split()
        m["db_fs"], m["db_dev"] = fs[0], fs[1]
        dev = os.path.basename(os.path.realpath(fs[1]))
        wc = f"/sys/block/{dev}/queue/write_cache"
        m["write_cache"] = open(wc).read().strip() if os.path.exists(wc) else "?"
    except Exception:
        pass
    m["db_dir"] = WORK

# ------------------------------------------------------------------ 1. fsync floor
def fsync_floor(n=2000):
    path = os.path.join(WORK, "fsync_probe.dat")
    buf = os.urandom(4096)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    lat = []
    for _ in range(n):              # appending write + fsync (file grows: data + metadata)
        t = time.perf_counter(); os.write(fd, buf); os.fsync(fd); lat.append(time.perf_counter() - t)
    os.close(fd)
    fd = os.open(path, os.O_WRONLY)
    lat2 = []
    for i in range(n):              # overwrite preallocated block + fdatasync (what PG WAL does)
        t = time.perf_counter(); os.pwrite(fd, buf, i * 4096); os.fdatasync(fd); lat2.append(time.perf_counter() - t)
    os.close(fd); os.unlink(path)
    R["fsync"]["append_write_fsync"] = lat_summary(lat)
    R["fsync"]["overwrite_fdatasync"] = lat_summary(lat2)

# ------------------------------------------------------------------ 2. loopback TCP
def loopback(total=512 << 20, chunk=1 << 20, reps=3):
    res = []
    for _ in range(reps):
        ls = socket.socket(); ls.bind(("127.0.0.1", 0)); ls.listen(1)
        port = ls.getsockname()[1]
        pid = os.fork()
        if pid == 0:
            try:
                c, _ = ls.accept(); b = bytearray(chunk); mv = memoryview(b); got = 0
                while got < total:
                    k = c.recv_into(mv)
                    if not k:
                        break
                    got += k
                c.sendall(b"k"); c.close()
            finally:
                os._exit(0)
        ls.close()
        s = socket.create_connection(("127.0.0.1", port))
        data = os.urandom(chunk)
        t = time.perf_counter()
        for _ in range(total // chunk):
            s.sendall(data)
        s.recv(1)
        dt = time.perf_counter() - t
        s.close(); os.waitpid(pid, 0)
        res.append(total / dt / 1e6)
    R["loopback"] = {"bytes": total, "chunk": chunk, "reps": reps,
                     "MBps_median": round(statistics.median(res), 1),
                     "MBps_all": [round(x, 1) for x in res]}

# ------------------------------------------------------------------ PG helpers
import psycopg

def dsn(port, db="cfgdb", app="pg_anchor"):
    return f"host={HOST} port={port} user=postgres dbname={db} application_name={app}"

def connect(port, db="cfgdb", autocommit=True):
    return psycopg.connect(dsn(port, db), autocommit=autocommit)

TYPES = ["ipv4-address", "host", "network", "service"]
UPSERT = ("INSERT INTO objects(type, uid, name, body) VALUES (%s, %s, %s, %s::jsonb) "
          "ON CONFLICT (uid) DO UPDATE SET type = EXCLUDED.type, name = EXCLUDED.name, body = EXCLUDED.body")

class Gen:
    """Deterministic object generator; body ~150 bytes of JSON."""
    def __init__(self, seed, pool=0):
        self.r = random.Random(seed)
        self.comments = ["".join(self.r.choice("abcdefghijklmnopqrstuvwxyz ") for _ in range(self.r.randint(85, 100)))
                         for _ in range(512)]
        self.seed = seed
        self.pool = [uuid.UUID(int=self.r.getrandbits(128), version=4) for _ in range(pool)]
    def body(self):
        r = self.r
        return ('{"ipv4-address": "10.%d.%d.%d", "comments": "%s"}'
                % (r.randrange(256), r.randrange(256), r.randrange(1, 255), r.choice(self.comments)))
    def row(self, i, uid):
        return (TYPES[i % 4], uid, f"obj-{self.seed}-{i}", self.body())
    def new_row(self):
        u = uuid.UUID(int=self.r.getrandbits(128), version=4)
        return self.row(self.r.randrange(1 << 30), u), u

def set_sc(conn, level):
    assert level in ("off", "local", "remote_write", "on", "remote_apply")
    conn.execute(f"SET synchronous_commit = {level}")

def single_row_commits(conn, gen, n, level, warm=50):
    set_sc(conn, level)
    lat = []
    for k in range(n + warm):
        row, _ = gen.new_row()
        t = time.perf_counter()
        conn.execute(UPSERT, row)           # autocommit: one statement = one durable txn
        if k >= warm:
            lat.append(time.perf_counter() - t)
    return lat

def tput_worker(w, level, dur, batch, q):
    try:
        gen = Gen(1000 + w, pool=100_000)
        conn = connect(P1)
        set_sc(conn, level)
        cur = conn.cursor()
        idxs = range(len(gen.pool))
        n = 0; lat = []
        t0 = time.perf_counter(); deadline = t0 + dur; c0 = time.process_time()
        while time.perf_counter() < deadline:
            rows = [gen.row(i, gen.pool[i]) for i in gen.r.sample(idxs, batch)]
            t = time.perf_counter()
            with conn.transaction():
                cur.executemany(UPSERT, rows)   # pipelined by psycopg
            lat.append(time.perf_counter() - t); n += batch
        el = time.perf_counter() - t0; cpu = time.process_time() - c0
        conn.close()
        q.put((w, n, el, lat, cpu))
    except Exception as e:
        q.put((w, -1, repr(e), [], 0))

def throughput(level, clients=1, dur=None, batch=100):
    dur = dur or DUR
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    ps = [ctx.Process(target=tput_worker, args=(w, level, dur, batch, q)) for w in range(clients)]
    for p in ps: p.start()
    out = [q.get(timeout=dur + 120) for _ in ps]
    for p in ps: p.join()
    bad = [o for o in out if o[1] < 0]
    if bad:
        raise RuntimeError(f"throughput worker failed: {bad}")
    total = sum(o[1] for o in out); el = max(o[2] for o in out)
    lat = [x for o in out for x in o[3]]
    cpu = sum(o[4] for o in out)
    return {"level": level, "clients": clients, "batch": batch, "seconds": round(el, 2), "objects": total,
            "client_cpu_cores": round(cpu / el, 2),
            "objects_per_s": round(total / el, 0), "txn_per_s": round(total / batch / el, 1),
            "txn_latency": lat_summary(lat)}

def lsn(conn):
    return conn.execute("SELECT pg_current_wal_lsn()").fetchone()[0]

def lsn_diff(conn, a, b):
    return int(conn.execute("SELECT pg_wal_lsn_diff(%s::pg_lsn, %s::pg_lsn)", (b, a)).fetchone()[0])

def waldump_stats(a, b):
    """Total record bytes / FPI bytes between two LSNs via pg_waldump --stats."""
    try:
        out = subprocess.run([os.path.join(PGBIN, "pg_waldump"), "-p", os.path.join(PRIM, "pg_wal"),
                              "-s", a, "-e", b, "--stats"], capture_output=True, text=True, timeout=120).stdout
        m = re.search(r"^Total\s+(\d+)\s+(\d+)\s+\[[^\]]*\]\s+(\d+)\s+\[[^\]]*\]\s+(\d+)", out, re.M)
        if m:
            return {"records": int(m.group(1)), "record_bytes": int(m.group(2)),
                    "fpi_bytes": int(m.group(3)), "combined_bytes": int(m.group(4))}
    except Exception as e:
        log("pg_waldump failed:", e)
    return None

def wait_replay(prim, stby_port=None, timeout=600):
    target = lsn(prim)
    t = time.perf_counter()
    while True:
        r = prim.execute("SELECT replay_lsn >= %s::pg_lsn FROM pg_stat_replication WHERE application_name='standby1'",
                         (target,)).fetchone()
        if r and r[0]:
            return time.perf_counter() - t
        if time.perf_counter() - t > timeout:
            raise RuntimeError("standby did not catch up")
        time.sleep(0.005)

def dir_bytes(d):
    tot = 0
    for root, _, files in os.walk(d):
        for f in files:
            try:
                tot += os.lstat(os.path.join(root, f)).st_size
            except FileNotFoundError:
                pass
    return tot

# ------------------------------------------------------------------ PG benchmarks
def pg_bench():
    pg = R["pg"]
    with psycopg.connect(dsn(P1, "postgres"), autocommit=True) as c:
        c.execute("CREATE DATABASE cfgdb")
        pg["server_version"] = c.execute("SHOW server_version").fetchone()[0]
    prim = connect(P1)
    prim.execute("CREATE TABLE objects(type text, uid uuid PRIMARY KEY, name text, body jsonb)")
    prim.execute("CREATE INDEX objects_type_name ON objects(type, name)")
    wait_replay(prim)
    stby = connect(P2)
    assert stby.execute("SELECT pg_is_in_recovery()").fetchone()[0]
    st = prim.execute("SELECT state, sync_state FROM pg_stat_replication WHERE application_name='standby1'").fetchone()
    pg["replication"] = {"state": st[0], "initial_sync_state": st[1]}
    gen = Gen(7)

    # b. single-object publish latency, synchronous_commit=on, async replication
    log("3b single-object latency")
    pg["single_latency_on"] = lat_summary(single_row_commits(prim, gen, 2000, "on"))
    pg["single_latency_off_ref"] = lat_summary(single_row_commits(prim, gen, 500, "off"))

    # d. WAL bytes per single-object change
    log("3d WAL bytes per change")
    set_sc(prim, "on")
    rows = [gen.new_row()[0] for _ in range(1000)]
    wal = {}
    for phase in ("insert", "update"):
        if phase == "update":   # same uids, new bodies
            rows = [(t, u, n, gen.body()) for (t, u, n, _) in rows]
        a = lsn(prim)
        for r in rows:
            prim.execute(UPSERT, r)
        b = lsn(prim)
        d = lsn_diff(prim, a, b)
        wal[phase] = {"lsn_diff_bytes": d, "bytes_per_change": round(d / len(rows), 1),
                      "waldump": waldump_stats(a, b)}
        if wal[phase]["waldump"]:
            wd = wal[phase]["waldump"]
            wal[phase]["records_per_change"] = round(wd["records"] / len(rows), 2)
            wal[phase]["fpi_bytes_per_change"] = round(wd["fpi_bytes"] / len(rows), 1)
    sz = prim.execute("SELECT avg(octet_length(body::text)), avg(pg_column_size(body)), avg(pg_column_size(o.*)) "
                      "FROM objects o").fetchone()
    wal["body_json_text_bytes"] = round(float(sz[0]), 1)
    wal["body_jsonb_stored_bytes"] = round(float(sz[1]), 1)
    wal["row_bytes"] = round(float(sz[2]), 1)
    pg["wal_per_change"] = wal

    # c. replication lag by polling the standby
    log("3c replication lag (polling)")
    set_sc(prim, "on")
    lags, polls = [], []
    for k in range(1050):
        row, u = gen.new_row()
        prim.execute(UPSERT, row)
        t0 = time.perf_counter()
        np_ = 0
        while True:
            np_ += 1
            if stby.execute("SELECT 1 FROM objects WHERE uid = %s", (u,)).fetchone():
                break
            if time.perf_counter() - t0 > 30:
                raise RuntimeError("row never became visible on standby")
        if k >= 50:
            lags.append(time.perf_counter() - t0); polls.append(np_)
    # cost of one standby poll round trip (resolution of the method)
    t = time.perf_counter()
    for _ in range(1000):
        stby.execute("SELECT 1 FROM objects WHERE uid = %s", (u,)).fetchone()
    poll_rtt = (time.perf_counter() - t) / 1000
    pg["lag_poll"] = dict(lat_summary(lags), mean_polls=round(statistics.fmean(polls), 1),
                          poll_rtt_ms=ms(poll_rtt))

    # a. throughput, local durability, async replication
    log("3a throughput synchronous_commit=on (async replication), 1 client")
    pg["tput_on_1"] = throughput("on", 1)
    log("3a throughput synchronous_commit=on, 4 clients")
    pg["tput_on_4"] = throughput("on", 4)
    log("3a throughput synchronous_commit=on, 1-row txns, 16 clients")
    pg["tput_1row_16"] = throughput("on", 16, batch=1)
    pg["rows_after_tput_on"] = prim.execute("SELECT count(*) FROM objects").fetchone()[0]

    # enable synchronous standby
    log("enable synchronous_standby_names=standby1")
    prim.execute("ALTER SYSTEM SET synchronous_standby_names = 'standby1'")
    prim.execute("SELECT pg_reload_conf()")
    t = time.perf_counter()
    while prim.execute("SELECT sync_state FROM pg_stat_replication WHERE application_name='standby1'").fetchone()[0] != "sync":
        if time.perf_counter() - t > 30:
            raise RuntimeError("standby never became sync")
        time.sleep(0.05)
    pg["replication"]["sync_state_after_enable"] = "sync"

    # c (method 2). commit latency per synchronous_commit level with a sync standby
    log("3c commit latency per synchronous_commit level")
    lv = {}
    for level in ("local", "remote_write", "on", "remote_apply"):
        lv[level] = lat_summary(single_row_commits(prim, gen, 1000, level))
    lv["apply_minus_local_p50_ms"] = round(lv["remote_apply"]["p50_ms"] - lv["local"]["p50_ms"], 3)
    lv["apply_minus_local_p99_ms"] = round(lv["remote_apply"]["p99_ms"] - lv["local"]["p99_ms"], 3)
    pg["commit_latency_sync_standby"] = lv

    log("3a throughput synchronous_commit=remote_apply, 1 client")
    pg["tput_remote_apply_1"] = throughput("remote_apply", 1)
    log("3a throughput synchronous_commit=remote_apply, 4 clients")
    pg["tput_remote_apply_4"] = throughput("remote_apply", 4)

    prim.execute("ALTER SYSTEM RESET synchronous_standby_names")
    prim.execute("SELECT pg_reload_conf()")
    set_sc(prim, "on")

    # e. load N objects, size, full copy
    log(f"3e load {LOAD_ROWS} objects")
    prim.execute("TRUNCATE objects")
    prim.execute("CHECKPOINT")
    chunk = 100_000
    t = time.perf_counter()
    done = 0
    while done < LOAD_ROWS:
        k = min(chunk, LOAD_ROWS - done)
        prim.execute(
            "INSERT INTO objects(type, uid, name, body) "
            "SELECT (ARRAY['ipv4-address','host','network','service'])[1 + i %% 4], gen_random_uuid(), 'obj-' || i, "
            "jsonb_build_object('ipv4-address', format('10.%%s.%%s.%%s', (i>>16)&255, (i>>8)&255, i&255), "
            "'comments', substr(repeat(md5(i::text), 4), 1, (85 + (i %% 30))::int)) "
            "FROM generate_series(%s::bigint, %s::bigint) AS i", (done, done + k - 1))
        done += k
    load_s = time.perf_counter() - t
    catchup_s = wait_replay(prim)
    prim.execute("VACUUM ANALYZE objects")
    info = prim.execute(
        "SELECT count(*), pg_database_size('cfgdb'), pg_total_relation_size('objects'), pg_relation_size('objects'), "
        "pg_indexes_size('objects'), avg(octet_length(body::text)) FROM objects").fetchone()
    cl = {"rows": info[0], "load_seconds": round(load_s, 2), "load_objects_per_s": round(info[0] / load_s, 0),
          "standby_catchup_after_load_s": round(catchup_s, 3),
          "db_size_MB": round(info[1] / 1e6, 1), "table_total_MB": round(info[2] / 1e6, 1),
          "heap_MB": round(info[3] / 1e6, 1), "indexes_MB": round(info[4] / 1e6, 1),
          "avg_body_json_bytes": round(float(info[5]), 1)}
    prim.execute("CHECKPOINT")
    log("3e pg_basebackup full copy")
    copy = os.path.join(WORK, "copy")
    cmd = ["runuser", "-u", "postgres", "--", os.path.join(PGBIN, "pg_basebackup"),
           "-d", f"host=127.0.0.1 port={P1} user=postgres", "-D", copy, "-X", "stream", "-c", "fast"]
    t = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    bb_s = time.perf_counter() - t
    bb_bytes = dir_bytes(copy)
    cl.update({"basebackup_seconds": round(bb_s, 2), "basebackup_MB": round(bb_bytes / 1e6, 1),
               "basebackup_MBps": round(bb_bytes / bb_s / 1e6, 1)})
    subprocess.run(["rm", "-rf", copy])
    pg["full_copy"] = cl
    stby.close(); prim.close()

# ------------------------------------------------------------------ report
def report():
    m, f, lb, pg = R["machine"], R["fsync"], R["loopback"], R["pg"]
    rows = []
    def add(k, name, val, note=""):
        rows.append((k, name, val, note))
    fa, fo = f["append_write_fsync"], f["overwrite_fdatasync"]
    add("1", "fsync floor: 4 KiB append write+fsync (2000x)", f"p50 {fa['p50_ms']} ms / p99 {fa['p99_ms']} ms",
        "file grows: data + inode/journal flush")
    add("1'", "4 KiB overwrite+fdatasync, preallocated (WAL-like)", f"p50 {fo['p50_ms']} ms / p99 {fo['p99_ms']} ms",
        f"PG default wal_sync_method; ceiling ~{int(1000 / fo['p50_ms'])} serial fsyncs/s")
    add("2", "loopback TCP raw copy, 512 MiB, 1 MiB sendall", f"{lb['MBps_median']} MB/s", f"runs {lb['MBps_all']}")
    for key, lvl in (("tput_on_1", "on (local), async repl"), ("tput_on_4", "on (local), async repl"),
                     ("tput_remote_apply_1", "remote_apply, sync standby"), ("tput_remote_apply_4", "remote_apply, sync standby")):
        t = pg[key]
        add("3a", f"publish 100-obj upsert txns, {t['clients']} client(s), {lvl}",
            f"{int(t['objects_per_s'])} objects/s", f"{t['txn_per_s']} txn/s, txn p50 {t['txn_latency']['p50_ms']} / p99 {t['txn_latency']['p99_ms']} ms, "
            f"py client {t['client_cpu_cores']} cores, {t['seconds']} s")
    t = pg["tput_1row_16"]
    add("3a", "1-row upsert txns, 16 clients, on (local), async repl",
        f"{t['txn_per_s']} commits/s", f"txn p50 {t['txn_latency']['p50_ms']} / p99 {t['txn_latency']['p99_ms']} ms, "
        f"py clients {t['client_cpu_cores']} cores, {t['seconds']} s")
    s = pg["single_latency_on"]
    add("3b", "single-object upsert txn latency, sync_commit=on", f"p50 {s['p50_ms']} ms / p99 {s['p99_ms']} ms",
        f"n={s['n']}; sync_commit=off ref p50 {pg['single_latency_off_ref']['p50_ms']} ms")
    lp = pg["lag_poll"]
    add("3c", "replication lag, commit->visible on standby (polling)", f"p50 {lp['p50_ms']} ms / p99 {lp['p99_ms']} ms",
        f"n={lp['n']}, poll RTT {lp['poll_rtt_ms']} ms, {lp['mean_polls']} polls avg")
    lv = pg["commit_latency_sync_standby"]
    for level in ("local", "remote_write", "on", "remote_apply"):
        add("3c'", f"1-row commit latency, sync standby, sync_commit={level}",
            f"p50 {lv[level]['p50_ms']} ms / p99 {lv[level]['p99_ms']} ms", "n=1000")
    add("3c'", "remote_apply minus local (apply-visible lag est.)",
        f"p50 {lv['apply_minus_local_p50_ms']} ms / p99 {lv['apply_minus_local_p99_ms']} ms", "difference of percentiles")
    w = pg["wal_per_change"]
    for phase in ("insert", "update"):
        ww = w[phase]
        note = ""
        if ww.get("waldump"):
            note = f"{ww['records_per_change']} records/chg, FPI {ww['fpi_bytes_per_change']} B/chg"
        add("3d", f"WAL bytes per 1-row upsert txn ({phase})", f"{ww['bytes_per_change']} B", note)
    add("3d", "object size for comparison", f"JSON text {w['body_json_text_bytes']} B",
        f"jsonb stored {w['body_jsonb_stored_bytes']} B, whole row {w['row_bytes']} B; "
        f"WAL/JSON = {round(w['update']['bytes_per_change'] / w['body_json_text_bytes'], 1)}x (update)")
    c = pg["full_copy"]
    add("3e", f"bulk load {c['rows']} objects (server-side INSERT..SELECT)", f"{c['load_seconds']} s",
        f"{int(c['load_objects_per_s'])} obj/s; standby caught up {c['standby_catchup_after_load_s']} s after")
    add("3e", "database size", f"{c['db_size_MB']} MB", f"table+idx {c['table_total_MB']} MB (heap {c['heap_MB']}, idx {c['indexes_MB']})")
    add("3e", "pg_basebackup full copy (loopback, -X stream, fsync)", f"{c['basebackup_seconds']} s",
        f"{c['basebackup_MB']} MB at {c['basebackup_MBps']} MB/s")
    print(f"\n### pg_anchor results  (PostgreSQL {pg.get('server_version')}, {m.get('cpu')} x{m.get('ncpu')}, "
          f"{m.get('mem_gib')} GiB, kernel {m.get('kernel')}, db dir {m.get('db_fs')} on {m.get('db_dev')} "
          f"write_cache={m.get('write_cache')}, client={CLIENT})\n")
    print("| # | Metric | Value | Notes |")
    print("|---|---|---|---|")
    for r in rows:
        print("| " + " | ".join(str(x) for x in r) + " |")
    print("\nMB = 10^6 bytes. Replication: streaming, 127.0.0.1, physical slot; standby is hot (hot_standby=on).")
    R["total_runtime_s"] = round(time.time() - T_START, 1)
    print(f"Driver runtime: {R['total_runtime_s']} s\n")
    print(json.dumps(R, separators=(",", ":")))

if __name__ == "__main__":
    machine_info()
    log("1 fsync floor"); fsync_floor()
    log("2 loopback"); loopback()
    pg_bench()
    report()
PYEOF

log "running benchmark driver (client=$CLIENT, duration=${DURATION}s, load_rows=$LOAD_ROWS)"
"$PY" "$WORK/bench.py" work="$WORK" pgbin="$PGBIN" p1="$P1" p2="$P2" sock="$SOCK" client="$CLIENT" \
  prim="$PRIM" duration="$DURATION" load_rows="$LOAD_ROWS"
