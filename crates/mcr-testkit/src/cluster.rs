//! A PostgreSQL cluster a test owns and controls: it can stop it and start it again on the same
//! port (a database restart), and make a streaming standby of it with `pg_basebackup`, then
//! promote that standby (a failover). Made from the same binaries as the shared throwaway
//! cluster; run as the `postgres` user when the tests run as root. Stopped (immediately) and
//! deleted when dropped; a test process killed with `SIGKILL` leaves it running, under the
//! system temp dir, until the machine restarts.

use crate::{command, free_port, init_cluster, pg_bin, run_as_user, unique};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct PgCluster {
    bin: PathBuf,
    as_user: Option<String>,
    dir: PathBuf,
    port: u16,
}

impl PgCluster {
    /// `initdb` and start a new cluster (trust authentication, replication allowed).
    ///
    /// # Panics
    ///
    /// When PostgreSQL cannot be found, initialised or started, saying why.
    pub fn start() -> Self {
        let bin = pg_bin();
        let as_user = run_as_user();
        let dir = init_cluster(&bin, as_user.as_deref());
        let hba = dir.join("data").join("pg_hba.conf");
        let mut rules = std::fs::read_to_string(&hba).unwrap_or_default();
        rules.push_str("\nhost replication all 127.0.0.1/32 trust\n");
        std::fs::write(&hba, rules)
            .unwrap_or_else(|e| panic!("mcr-testkit: cannot write {}: {e}", hba.display()));
        let cluster = Self {
            bin,
            as_user,
            dir,
            port: free_port(),
        };
        cluster.start_again();
        cluster
    }

    /// The admin URL (database `postgres`).
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn pg_ctl(&self, args: &[&str]) -> std::process::Output {
        command(&self.bin.join("pg_ctl"), self.as_user.as_deref())
            .arg("-D")
            .arg(self.data())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("mcr-testkit: cannot run pg_ctl: {e}"))
    }

    /// Start the server (again) on its port, and wait until it accepts connections.
    ///
    /// # Panics
    ///
    /// When it does not start within a minute, with its log.
    pub fn start_again(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=on -c wal_level=replica \
             -c max_wal_senders=4 -c hot_standby=on -c wal_retrieve_retry_interval=200ms",
            self.port,
            self.dir.display()
        );
        let log = self.dir.join("postgres.log");
        let out = self.pg_ctl(&[
            "-w",
            "-t",
            "60",
            "-o",
            &options,
            "-l",
            &log.to_string_lossy(),
            "start",
        ]);
        if !out.status.success() {
            panic!(
                "mcr-testkit: pg_ctl start failed ({}): {}{}\nlog:\n{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        self.wait_ready();
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let ready = command(&self.bin.join("pg_isready"), self.as_user.as_deref())
                .args([
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &self.port.to_string(),
                    "-U",
                    "postgres",
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if ready {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "mcr-testkit: the cluster on port {} is not ready after a minute",
                self.port
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stop the server: `fast` (connections are cut, the last checkpoint written) or
    /// `immediate` (as a crash).
    pub fn stop(&self, mode: &str) {
        let out = self.pg_ctl(&["-w", "-t", "60", "-m", mode, "stop"]);
        assert!(
            out.status.success(),
            "mcr-testkit: pg_ctl stop failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A streaming standby of this cluster (`pg_basebackup -R`), started on a port of its own,
    /// and synchronous: this cluster's commits return once the standby has them
    /// (`synchronous_standby_names = '*'`), so a failover loses no acknowledged write. (With
    /// asynchronous replication, what was committed since the standby last caught up is lost
    /// when the primary goes; a standby that is reconnecting after a restart of the primary
    /// can be seconds behind.)
    ///
    /// # Panics
    ///
    /// When the backup or the start fails, saying why.
    pub fn standby(&self) -> PgCluster {
        let dir = std::env::temp_dir().join(unique("mcr-testkit-standby"));
        std::fs::create_dir_all(&dir)
            .unwrap_or_else(|e| panic!("mcr-testkit: cannot create {}: {e}", dir.display()));
        if let Some(user) = &self.as_user {
            let _ = Command::new("chown")
                .arg(format!("{user}:"))
                .arg(&dir)
                .status();
        }
        let out = command(&self.bin.join("pg_basebackup"), self.as_user.as_deref())
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
            ])
            .arg("-D")
            .arg(dir.join("data"))
            .args(["-R", "-X", "stream", "-c", "fast"])
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("mcr-testkit: cannot run pg_basebackup: {e}"));
        if !out.status.success() {
            let _ = std::fs::remove_dir_all(&dir);
            panic!(
                "mcr-testkit: pg_basebackup failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let standby = PgCluster {
            bin: self.bin.clone(),
            as_user: self.as_user.clone(),
            dir,
            port: free_port(),
        };
        standby.start_again();
        self.psql(&[
            "ALTER SYSTEM SET synchronous_standby_names = '*'",
            "SELECT pg_reload_conf()",
        ]);
        let deadline = Instant::now() + Duration::from_secs(60);
        while self
            .psql(&["SELECT count(*) FROM pg_stat_replication WHERE sync_state = 'sync'"])
            .trim()
            != "1"
        {
            assert!(
                Instant::now() < deadline,
                "mcr-testkit: the standby did not become synchronous within a minute"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        standby
    }

    /// Run SQL statements with `psql` on database `postgres`; the last one's output.
    fn psql(&self, statements: &[&str]) -> String {
        let mut c = command(&self.bin.join("psql"), self.as_user.as_deref());
        c.args([
            "-h",
            "127.0.0.1",
            "-p",
            &self.port.to_string(),
            "-U",
            "postgres",
        ])
        .args(["-d", "postgres", "-At", "-v", "ON_ERROR_STOP=1"]);
        for st in statements {
            c.arg("-c").arg(st);
        }
        let out = c
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("mcr-testkit: cannot run psql: {e}"));
        assert!(
            out.status.success(),
            "mcr-testkit: psql {statements:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .last()
            .unwrap_or_default()
            .to_owned()
    }

    /// Promote this standby to a primary, and wait until it takes writes.
    pub fn promote(&self) {
        let out = self.pg_ctl(&["-w", "-t", "60", "promote"]);
        assert!(
            out.status.success(),
            "mcr-testkit: pg_ctl promote failed: {}\nlog:\n{}",
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(self.dir.join("postgres.log")).unwrap_or_default()
        );
    }

    /// The cluster's directory (its `postgres.log` is there).
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let _ = self.pg_ctl(&["-m", "immediate", "stop"]);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
