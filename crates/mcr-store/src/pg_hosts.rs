//! Connection settings for a PostgreSQL primary and its standbys, as libpq takes them: several
//! hosts in one URL (`postgres://user@db1:5432,db2:5432/mcr?target_session_attrs=read-write`)
//! and `target_session_attrs` (`read-write`: only a server that takes writes, never a standby;
//! `any`, the default: the first that answers).
//!
//! The pool connects to the first host that suits. With `read-write`, every new connection is
//! checked (`pg_is_in_recovery()`, once per connection, not per query), so a standby is never
//! used. With several hosts, a watcher asks the pool once a second whether it can still get a
//! connection; when it cannot (the primary stopped, or became a standby), it tries the hosts in
//! order and points the pool's new connections at the first that suits (a promoted standby).
//! Connections to the old host fail their next check and are dropped, so views fail closed
//! while no host suits and are served again once one does, with no restart.

use crate::common::open_error;
use crate::{Result, StoreError};
use sqlx::postgres::{PgConnectOptions, PgPool};
use sqlx::{ConnectOptions as _, Connection as _};
use std::str::FromStr;
use std::time::Duration;

/// The hosts of a store URL and what a session must allow.
#[derive(Debug, Clone)]
pub(crate) struct PgTargets {
    pub(crate) hosts: Vec<PgConnectOptions>,
    pub(crate) read_write: bool,
}

impl PgTargets {
    /// Parse `postgres[ql]://[userinfo@]host[:port][,host[:port]...]/db[?params]`.
    pub(crate) fn parse(url: &str) -> Result<Self> {
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| StoreError::Config("the store URL has no scheme".into()))?;
        let (authority, tail) = match rest.find(['/', '?']) {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        let (userinfo, hostlist) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        let (path, query) = match tail.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (tail, None),
        };
        let mut read_write = false;
        let mut kept = Vec::new();
        for pair in query
            .unwrap_or_default()
            .split('&')
            .filter(|p| !p.is_empty())
        {
            match pair.split_once('=') {
                Some(("target_session_attrs", "read-write")) => read_write = true,
                Some(("target_session_attrs", "any")) => read_write = false,
                Some(("target_session_attrs", other)) => {
                    return Err(StoreError::Config(format!(
                        "target_session_attrs must be read-write or any, not `{other}`"
                    )))
                }
                _ => kept.push(pair),
            }
        }
        let query = if kept.is_empty() {
            String::new()
        } else {
            format!("?{}", kept.join("&"))
        };
        let hosts = hostlist
            .split(',')
            .map(|host| {
                if host.is_empty() {
                    return Err(StoreError::Config(
                        "the store URL names an empty host".into(),
                    ));
                }
                let user = userinfo.map(|u| format!("{u}@")).unwrap_or_default();
                let one = format!("{scheme}://{user}{host}{path}{query}");
                PgConnectOptions::from_str(&one)
                    .map(|o| o.application_name("mcr-gateway"))
                    .map_err(open_error)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self { hosts, read_write })
    }

    /// Whether a connection suits: with `read-write`, the server is not a standby.
    pub(crate) async fn suits(read_write: bool, conn: &mut sqlx::PgConnection) -> sqlx::Result<()> {
        if !read_write {
            return Ok(());
        }
        let (standby,): (bool,) = sqlx::query_as("SELECT pg_is_in_recovery()")
            .fetch_one(conn)
            .await?;
        if standby {
            return Err(sqlx::Error::Protocol(
                "the server is a standby (read-only), and target_session_attrs=read-write".into(),
            ));
        }
        Ok(())
    }

    /// The first host that answers within `timeout` and suits; the reasons of the others.
    pub(crate) async fn first_suitable(
        &self,
        timeout: Duration,
    ) -> std::result::Result<PgConnectOptions, String> {
        let mut reasons = Vec::new();
        for host in &self.hosts {
            let name = format!("{}:{}", host.get_host(), host.get_port());
            let tried = tokio::time::timeout(timeout, async {
                let mut conn = host.connect().await?;
                let suits = Self::suits(self.read_write, &mut conn).await;
                let _ = conn.close().await;
                suits
            })
            .await;
            match tried {
                Ok(Ok(())) => return Ok(host.clone()),
                Ok(Err(e)) => reasons.push(format!("{name}: {e}")),
                Err(_) => reasons.push(format!("{name}: no answer within {timeout:?}")),
            }
        }
        Err(reasons.join("; "))
    }
}

/// Watches the pool; when it cannot get a connection, points it at the first host that suits.
pub(crate) fn spawn_watcher(pool: PgPool, targets: PgTargets) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let healthy = matches!(
                tokio::time::timeout(Duration::from_secs(2), pool.acquire()).await,
                Ok(Ok(_))
            );
            if healthy {
                continue;
            }
            let current = pool.connect_options();
            match targets.first_suitable(Duration::from_secs(2)).await {
                Ok(next) => {
                    if next.get_host() != current.get_host()
                        || next.get_port() != current.get_port()
                    {
                        tracing::warn!(
                            from = %format!("{}:{}", current.get_host(), current.get_port()),
                            to = %format!("{}:{}", next.get_host(), next.get_port()),
                            "the store's database moved: new connections go to the host that now suits"
                        );
                        pool.set_connect_options(next);
                    }
                }
                Err(reasons) => {
                    tracing::warn!(%reasons, "no database host suits the store now");
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn several_hosts_and_the_session_kind_are_read_from_the_url() {
        let t = PgTargets::parse(
            "postgres://mcr:pw@db1:5432,db2:6543/care?target_session_attrs=read-write&sslmode=disable",
        )
        .expect("parses");
        assert!(t.read_write);
        let hosts: Vec<(String, u16)> = t
            .hosts
            .iter()
            .map(|h| (h.get_host().to_owned(), h.get_port()))
            .collect();
        assert_eq!(hosts, vec![("db1".into(), 5432), ("db2".into(), 6543)]);
        assert_eq!(t.hosts[1].get_database(), Some("care"));
        assert_eq!(t.hosts[1].get_username(), "mcr");

        let one = PgTargets::parse("postgres://u@h/db").expect("parses");
        assert!(!one.read_write && one.hosts.len() == 1);
        assert!(PgTargets::parse("postgres://u@h/db?target_session_attrs=standby").is_err());
        assert!(PgTargets::parse("postgres://u@h1,,h2/db").is_err());
    }
}
