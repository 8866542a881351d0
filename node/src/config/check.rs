//! The checks of a parsed configuration that its types alone do not make: names, addresses,
//! durations in range, and the failover settings that only make sense together.

use super::*;

impl NodeConfig {
    /// Checks what the types alone do not.
    pub fn check(&self) -> Result<()> {
        if let Some(dir) = &self.data_dir {
            if dir.as_os_str().is_empty() {
                return Err(ConfigError::bad("data_dir", "is empty"));
            }
        }
        if let Some(name) = &self.name {
            if name.trim().is_empty() {
                return Err(ConfigError::bad("name", "the node name is empty"));
            }
            if mgha_core::model::validate::validate_name("node", name).is_err() {
                return Err(ConfigError::bad(
                    "name",
                    format!(
                        "{name:?} is not a valid node name (at most {} bytes, no control characters)",
                        mgha_core::limits::NAME_BYTES_MAX
                    ),
                ));
            }
        }
        match (&self.admin_tls_cert, &self.admin_tls_key) {
            (Some(_), None) => {
                return Err(ConfigError::bad("admin_tls_cert", "is set without 'admin_tls_key'; give both or neither"))
            }
            (None, Some(_)) => {
                return Err(ConfigError::bad("admin_tls_key", "is set without 'admin_tls_cert'; give both or neither"))
            }
            (Some(c), Some(k)) => {
                if c.as_os_str().is_empty() {
                    return Err(ConfigError::bad("admin_tls_cert", "is empty"));
                }
                if k.as_os_str().is_empty() {
                    return Err(ConfigError::bad("admin_tls_key", "is empty"));
                }
            }
            (None, None) => {}
        }
        if let Some(admin) = self.admin {
            // The token travels in every request: in clear text it may cross only the loopback.
            if !admin.ip().is_loopback() && self.admin_tls_cert.is_none() {
                return Err(ConfigError::bad(
                    "admin",
                    format!(
                        "{admin} is not a loopback address; the admin API listens beyond loopback only with TLS: \
                         set 'admin_tls_cert' and 'admin_tls_key'"
                    ),
                ));
            }
            if admin.port() == 0 {
                return Err(ConfigError::bad("admin", "port 0 is not a fixed port; the CLI could not find the daemon"));
            }
        }
        if let Some(health) = self.health_listen {
            if health.port() == 0 {
                return Err(ConfigError::bad("health_listen", "port 0 is not a fixed port; no probe could find it"));
            }
            if Some(health) == self.admin {
                return Err(ConfigError::bad("health_listen", "is the admin address; the probes answer there already"));
            }
        }
        if self.retain_revisions == Some(0) {
            return Err(ConfigError::bad(
                "retain_revisions",
                "must be at least 1 (omit the key to keep every revision)",
            ));
        }
        if let Some(listen) = &self.listen {
            check_host_port("listen", listen, true)?;
        }
        if let Some(advertise) = &self.advertise {
            check_host_port("advertise", advertise, false)?;
            if self.listen.is_none() {
                return Err(ConfigError::bad(
                    "advertise",
                    "set only with 'listen' (a node without 'listen' has no peers)",
                ));
            }
        }
        if self.sync_standbys > SYNC_STANDBYS_MAX {
            return Err(ConfigError::bad(
                "sync_standbys",
                format!("{} is over the limit of {SYNC_STANDBYS_MAX}", self.sync_standbys),
            ));
        }
        if self.sync_standbys > 0 && self.listen.is_none() {
            return Err(ConfigError::bad(
                "sync_standbys",
                "a synchronous publish needs standbys, and so the key 'listen'",
            ));
        }
        check_ms("sync_timeout_ms", self.sync_timeout_ms, 1)?;
        check_ms("session_idle_timeout_ms", self.session_idle_timeout_ms, 1)?;
        check_ms("heartbeat_ms", self.heartbeat_ms, HEARTBEAT_MS_MIN)?;
        check_ms("peer_timeout_ms", self.peer_timeout_ms, 1)?;
        check_ms("changeover_timeout_ms", self.changeover_timeout_ms, 1)?;
        if self.scrub_interval_ms != 0 {
            check_ms("scrub_interval_ms", self.scrub_interval_ms, SCRUB_INTERVAL_MS_MIN)?;
        }
        // A connection is dropped after `peer_timeout_ms` of silence, and a heartbeat is the only
        // traffic of an idle one: a timeout under two heartbeats drops healthy connections.
        if self.peer_timeout_ms < 2 * self.heartbeat_ms {
            return Err(ConfigError::bad(
                "peer_timeout_ms",
                format!(
                    "{} ms is under two heartbeats ('heartbeat_ms' = {}); idle peers would be dropped",
                    self.peer_timeout_ms, self.heartbeat_ms
                ),
            ));
        }
        self.check_failover()
    }

    /// The failover keys: each mode's own keys are present, and only with it.
    fn check_failover(&self) -> Result<()> {
        check_ms("failover_after_ms", self.failover_after_ms, 1)?;
        if self.failover != FailoverMode::Quorum && (self.quorum_listen.is_some() || !self.quorum_members.is_empty()) {
            let key = if self.quorum_listen.is_some() { "quorum_listen" } else { "quorum_members" };
            return Err(ConfigError::bad(
                key,
                format!(
                    "'quorum_listen' and 'quorum_members' are for failover = \"quorum\" (failover is \"{}\")",
                    self.failover
                ),
            ));
        }
        if self.failover != FailoverMode::Etcd && (!self.etcd_endpoints.is_empty() || self.etcd_prefix.is_some()) {
            let key = if self.etcd_endpoints.is_empty() { "etcd_prefix" } else { "etcd_endpoints" };
            return Err(ConfigError::bad(
                key,
                format!(
                    "'etcd_endpoints' and 'etcd_prefix' are for failover = \"etcd\" (failover is \"{}\")",
                    self.failover
                ),
            ));
        }
        if self.failover == FailoverMode::Manual {
            return Ok(());
        }
        if self.listen.is_none() {
            return Err(ConfigError::bad("failover", "automatic failover needs peers, and so the key 'listen'"));
        }
        self.failover_timing().validate().map_err(|e| ConfigError::bad("failover_after_ms", e.to_string()))?;
        match self.failover {
            FailoverMode::Quorum => {
                let Some(listen) = &self.quorum_listen else {
                    return Err(ConfigError::bad(
                        "quorum_listen",
                        "failover = \"quorum\" needs the address this node's arbiter listens on",
                    ));
                };
                check_host_port("quorum_listen", listen, false)?;
                let members = self.quorum_members()?;
                if let Some(name) = &self.name {
                    self.check_quorum_voter(name)?;
                }
                if members.len() < 3 {
                    return Err(ConfigError::bad(
                        "quorum_members",
                        format!(
                            "{} voters cannot decide safely; automatic failover needs three: add a witness (`mgha \
                             witness`) or a third node",
                            members.len()
                        ),
                    ));
                }
            }
            FailoverMode::Etcd => {
                if self.etcd_endpoints.is_empty() {
                    return Err(ConfigError::bad(
                        "etcd_endpoints",
                        "failover = \"etcd\" needs the etcd cluster's client URLs",
                    ));
                }
            }
            FailoverMode::Manual => {}
        }
        Ok(())
    }

    /// Checks that the node `name` is one of the quorum's voters (the node's name may come from
    /// its store when the config leaves it out).
    pub fn check_quorum_voter(&self, name: &str) -> Result<()> {
        if self.failover == FailoverMode::Quorum && !self.quorum_members()?.iter().any(|m| m.name == name) {
            return Err(ConfigError::bad("quorum_members", format!("this node ('{name}') is not among the voters")));
        }
        Ok(())
    }

    /// The voters of `quorum_members`.
    pub fn quorum_members(&self) -> Result<Vec<QuorumMember>> {
        let mut out: Vec<QuorumMember> = Vec::new();
        for m in &self.quorum_members {
            let Some((name, address)) = m.split_once('=') else {
                return Err(ConfigError::bad("quorum_members", format!("{m:?} is not NAME=HOST:PORT")));
            };
            check_host_port("quorum_members", address, false)?;
            if out.iter().any(|o| o.name == name.trim() || o.address == address.trim()) {
                return Err(ConfigError::bad("quorum_members", format!("{m:?} repeats a name or an address")));
            }
            out.push(QuorumMember { name: name.trim().into(), address: address.trim().into() });
        }
        Ok(out)
    }
}

/// Checks a `HOST:PORT` address. Port 0 is allowed only where the node announces the port it
/// got (`listen`); elsewhere peers dial the address as written.
fn check_host_port(key: &str, value: &str, port_zero_ok: bool) -> Result<()> {
    let Some((host, port)) = value.trim().rsplit_once(':') else {
        return Err(ConfigError::bad(key, format!("{value:?} is not HOST:PORT")));
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || host.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(ConfigError::bad(key, format!("{value:?} is not HOST:PORT (no host)")));
    }
    match port.parse::<u16>() {
        Ok(0) if !port_zero_ok => {
            Err(ConfigError::bad(key, "port 0 is not a fixed port; peers could not find this node again"))
        }
        Ok(_) => Ok(()),
        Err(_) => Err(ConfigError::bad(key, format!("{value:?} is not HOST:PORT (bad port {port:?})"))),
    }
}

/// Checks a duration in milliseconds against a floor and [`TIMEOUT_MS_MAX`].
fn check_ms(key: &str, value: u64, min: u64) -> Result<()> {
    if value < min || value > TIMEOUT_MS_MAX {
        return Err(ConfigError::bad(key, format!("{value} ms is outside {min}..={TIMEOUT_MS_MAX}")));
    }
    Ok(())
}
