//! Test helpers shared by every crate's tests: a fresh SQLite file or a fresh, empty PostgreSQL
//! database per test, and grants made by the policy's decision ([`grant`]).
//!
//! PostgreSQL comes from `MCR_TEST_POSTGRES_URL` (an admin URL to a running server) when that
//! is set; otherwise from a throwaway cluster this crate starts once per test process from the
//! PostgreSQL binaries on the machine (`/usr/lib/postgresql/<highest>/bin`, or `MCR_TEST_PG_BIN`).
//! A test that needs PostgreSQL and cannot have it panics with the reason: it never skips.
//!
//! This crate is for tests only (a dev-dependency); it must never be a normal dependency.
//!
//! # The throwaway cluster
//!
//! `initdb` into a new directory under the system temp dir, then `postgres` listening on
//! 127.0.0.1 at a free port and on a Unix socket in that directory, with `fsync=on`. When the
//! test process runs as root (as here and in CI) both run as the `postgres` user through
//! `runuser`, since PostgreSQL refuses to run as root.
//!
//! Cleanup needs no help from the test process: `postgres` is started by a small `sh`
//! watchdog whose standard input is a pipe from the test process. The test process never
//! writes to it and never closes it, so the watchdog's `cat` sees end-of-file exactly when the
//! test process exits, however it exits (normally, by panic, or by `SIGKILL`): the kernel
//! closes the pipe. The watchdog then stops the server (fast shutdown) and deletes the
//! directory. Clusters therefore do not pile up.

mod cluster;
mod grants;
mod small_fs;

pub use cluster::PgCluster;
pub use grants::grant;
pub use small_fs::SmallFs;

use sqlx::{Connection, Executor, PgConnection};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::OnceCell;

/// Admin URL to a running PostgreSQL server; when set, no cluster is started.
pub const POSTGRES_URL_ENV: &str = "MCR_TEST_POSTGRES_URL";
/// Directory holding `initdb` and `postgres`, when not under `/usr/lib/postgresql/*/bin`.
pub const PG_BIN_ENV: &str = "MCR_TEST_PG_BIN";

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A name no other test, test process or earlier run uses.
fn unique(prefix: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}_{}_{}_{:08x}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        nanos
    )
}

/// URL of a new SQLite file (not yet created) inside `dir`, e.g. a `tempfile::TempDir`.
pub fn sqlite_url(dir: &Path) -> String {
    let path = dir.join(format!("{}.db", unique("mcr_test")));
    format!("sqlite://{}", path.display())
}

/// URL of a fresh, empty PostgreSQL database for one test.
///
/// # Panics
///
/// When no server is given and none can be started (for example the PostgreSQL server
/// binaries are not installed), with a message saying what is missing.
pub async fn postgres_url() -> String {
    let admin = match std::env::var(POSTGRES_URL_ENV) {
        Ok(url) if !url.is_empty() => url,
        _ => CLUSTER.get_or_init(start_cluster).await.clone(),
    };
    let name = unique("mcr_test");
    let mut conn = PgConnection::connect(&admin)
        .await
        .unwrap_or_else(|e| panic!("mcr-testkit: cannot connect to the PostgreSQL admin URL: {e}"));
    conn.execute(format!("CREATE DATABASE {name}").as_str())
        .await
        .unwrap_or_else(|e| panic!("mcr-testkit: cannot create test database {name}: {e}"));
    let _ = conn.close().await;
    let mut url = url::Url::parse(&admin)
        .unwrap_or_else(|e| panic!("mcr-testkit: {POSTGRES_URL_ENV} is not a URL: {e}"));
    url.set_path(&format!("/{name}"));
    url.to_string()
}

/// The admin URL of this process's throwaway cluster.
static CLUSTER: OnceCell<String> = OnceCell::const_new();

/// Write ends of the watchdogs' pipes, held until the process exits (see the crate docs).
static WATCHDOGS: Mutex<Vec<(Child, ChildStdin)>> = Mutex::new(Vec::new());

async fn start_cluster() -> String {
    let mut last_log = String::new();
    for _attempt in 0..3 {
        let (dir, port, mut child, stdin) = tokio::task::spawn_blocking(|| {
            let bin = pg_bin();
            let as_user = run_as_user();
            let dir = init_cluster(&bin, as_user.as_deref());
            let port = free_port();
            let (child, stdin) = spawn_server(&bin, &dir, port, as_user.as_deref());
            (dir, port, child, stdin)
        })
        .await
        .unwrap_or_else(|e| panic!("mcr-testkit: starting the cluster failed: {e}"));
        let url = format!("postgres://postgres@127.0.0.1:{port}/postgres");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(conn) = PgConnection::connect(&url).await {
                let _ = conn.close().await;
                hold_until_exit(child, stdin);
                return url;
            }
            let exited = matches!(child.try_wait(), Ok(Some(_)));
            last_log = std::fs::read_to_string(dir.join("postgres.log")).unwrap_or_default();
            let failed = last_log.contains("could not bind")
                || last_log.contains("could not create any TCP/IP sockets");
            if exited || failed || Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // This attempt failed (most likely another process took the port in between). Closing
        // the pipe makes the watchdog stop the server and delete its directory; then retry
        // from scratch.
        drop(stdin);
        let _ = tokio::task::spawn_blocking(move || child.wait()).await;
    }
    panic!("mcr-testkit: the throwaway PostgreSQL cluster did not start; its log:\n{last_log}");
}

fn hold_until_exit(child: Child, stdin: ChildStdin) {
    match WATCHDOGS.lock() {
        Ok(mut held) => held.push((child, stdin)),
        Err(poisoned) => poisoned.into_inner().push((child, stdin)),
    }
}

/// The directory with `initdb` and `postgres`: `MCR_TEST_PG_BIN`, else the highest version
/// under `/usr/lib/postgresql`.
fn pg_bin() -> PathBuf {
    if let Ok(dir) = std::env::var(PG_BIN_ENV) {
        let dir = PathBuf::from(dir);
        if dir.join("initdb").is_file() && dir.join("postgres").is_file() {
            return dir;
        }
        panic!(
            "mcr-testkit: {PG_BIN_ENV}={} has no initdb and postgres",
            dir.display()
        );
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            (bin.join("initdb").is_file() && bin.join("postgres").is_file())
                .then_some((version, bin))
        })
        .collect();
    versions.sort();
    match versions.pop() {
        Some((_, bin)) => bin,
        None => panic!(
            "mcr-testkit: this test needs PostgreSQL, and none was found. Either set \
             {POSTGRES_URL_ENV} to an admin URL of a running server \
             (e.g. postgres://postgres@127.0.0.1:5432/postgres), or install the PostgreSQL server \
             binaries so that /usr/lib/postgresql/<version>/bin/initdb and .../postgres exist \
             (Debian: `apt-get install postgresql`), or set {PG_BIN_ENV} to their directory."
        ),
    }
}

/// `Some("postgres")` when running as root: PostgreSQL refuses to run as root.
fn run_as_user() -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let euid = std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .unwrap_or(u32::MAX);
    if euid != 0 {
        return None;
    }
    let user = "postgres";
    let known = std::fs::read_to_string("/etc/passwd")
        .map(|p| p.lines().any(|l| l.split(':').next() == Some(user)))
        .unwrap_or(false);
    if !known {
        panic!(
            "mcr-testkit: running as root, and PostgreSQL refuses to run as root, but there is no \
             `{user}` user to run it as. Create one (`useradd --system {user}`), run the tests as \
             a normal user, or set {POSTGRES_URL_ENV}."
        );
    }
    Some(user.to_owned())
}

fn command(program: &Path, as_user: Option<&str>) -> Command {
    match as_user {
        Some(user) => {
            let mut c = Command::new("runuser");
            c.arg("-u").arg(user).arg("--").arg(program);
            c
        }
        None => Command::new(program),
    }
}

/// Creates the cluster directory and runs `initdb` in it. Returns the directory.
fn init_cluster(bin: &Path, as_user: Option<&str>) -> PathBuf {
    let dir = std::env::temp_dir().join(unique("mcr-testkit-pg"));
    std::fs::create_dir_all(&dir)
        .unwrap_or_else(|e| panic!("mcr-testkit: cannot create {}: {e}", dir.display()));
    if let Some(user) = as_user {
        let status = Command::new("chown")
            .arg(format!("{user}:"))
            .arg(&dir)
            .status()
            .unwrap_or_else(|e| panic!("mcr-testkit: cannot run chown: {e}"));
        assert!(
            status.success(),
            "mcr-testkit: chown {user} {} failed",
            dir.display()
        );
    }
    let out = command(&bin.join("initdb"), as_user)
        .arg("-D")
        .arg(dir.join("data"))
        .args([
            "-A",
            "trust",
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("mcr-testkit: cannot run initdb: {e}"));
    if !out.status.success() {
        let _ = std::fs::remove_dir_all(&dir);
        panic!(
            "mcr-testkit: initdb failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    dir
}

/// A port nothing listens on right now (the server may still lose a race for it; the caller
/// retries).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("mcr-testkit: cannot find a free port: {e}"))
}

/// Starts `postgres` under the watchdog described in the crate docs.
fn spawn_server(bin: &Path, dir: &Path, port: u16, as_user: Option<&str>) -> (Child, ChildStdin) {
    // $1 postgres binary, $2 cluster dir, $3 port. `cat` returns when the test process's end of
    // the pipe closes; postgres's own stdin is /dev/null so it holds no copy of the pipe.
    const WATCHDOG: &str = r#"
"$1" -D "$2/data" -k "$2" -p "$3" -c listen_addresses=127.0.0.1 -c fsync=on \
    </dev/null >"$2/postgres.log" 2>&1 &
pg=$!
cat >/dev/null
kill -INT "$pg" 2>/dev/null
wait "$pg"
rm -rf "$2"
"#;
    let sh = PathBuf::from("/bin/sh");
    let mut child = command(&sh, as_user)
        .arg("-c")
        .arg(WATCHDOG)
        .arg("mcr-testkit-pg")
        .arg(bin.join("postgres"))
        .arg(dir)
        .arg(port.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("mcr-testkit: cannot start postgres: {e}"));
    let stdin = child
        .stdin
        .take()
        .unwrap_or_else(|| panic!("mcr-testkit: the watchdog has no stdin pipe"));
    (child, stdin)
}
