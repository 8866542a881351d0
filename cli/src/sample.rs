//! A sample security policy, deterministic so that every run (the demo, the benchmarks, tests)
//! publishes the same objects: hosts in four tiers, networks, address ranges, nested groups,
//! TCP and UDP services and service groups, two access layers with rules that reference all of
//! these, policy packages, users, user groups, administrators and system settings. It comes as
//! a few changesets, as an administrator would publish it, plus an edit that changes some of it.

use mgha_core::{ChangeInput, ChangeSet};
use serde_json::{json, Value};

/// The server tiers; hosts are spread over them and each has a group.
const TIERS: [&str; 4] = ["web", "app", "db", "mgmt"];

const TCP_SERVICES: [(&str, &str); 16] = [
    ("http", "80"),
    ("https", "443"),
    ("ssh", "22"),
    ("smtp", "25"),
    ("ldap", "389"),
    ("ldaps", "636"),
    ("mysql", "3306"),
    ("postgresql", "5432"),
    ("rdp", "3389"),
    ("kerberos-tcp", "88"),
    ("imaps", "993"),
    ("https-alt", "8443"),
    ("http-alt", "8080"),
    ("app-range", "8000-8099"),
    ("redis", "6379"),
    ("kafka", "9092"),
];

const UDP_SERVICES: [(&str, &str); 8] = [
    ("dns", "53"),
    ("ntp", "123"),
    ("snmp", "161"),
    ("syslog", "514"),
    ("radius", "1812"),
    ("kerberos-udp", "88"),
    ("dhcp", "67-68"),
    ("ipsec-nat-t", "4500"),
];

fn put(type_name: &str, name: &str, fields: Value) -> ChangeInput {
    let fields = match fields {
        Value::Object(m) => m,
        _ => Default::default(),
    };
    ChangeInput::Put { type_name: type_name.into(), name: name.into(), uid: None, fields }
}

fn host_name(tier: &str, i: usize) -> String {
    format!("{tier}-{i:03}")
}

/// The names of the hosts of one tier, for a policy of `hosts` hosts.
pub fn tier_hosts(hosts: usize, tier: usize) -> Vec<String> {
    (0..hosts).filter(|i| i % TIERS.len() == tier).map(|i| host_name(TIERS[tier], i / TIERS.len() + 1)).collect()
}

fn networks(hosts: usize) -> usize {
    (hosts / 4).max(1)
}

fn ranges(hosts: usize) -> usize {
    (hosts / 12).max(1)
}

fn rules(hosts: usize) -> usize {
    (hosts * 2 / 3).max(8)
}

/// Revision 1: hosts, networks, address ranges and groups.
fn network_objects(hosts: usize) -> ChangeSet {
    let mut changes = Vec::new();
    for i in 0..hosts {
        let tier = i % TIERS.len();
        let n = i / TIERS.len();
        changes.push(put(
            "host",
            &host_name(TIERS[tier], n + 1),
            json!({"ipv4-address": format!("10.{}.{}.{}", tier + 1, n / 250, n % 250 + 1), "comments": format!("{} server", TIERS[tier]), "tags": [TIERS[tier]]}),
        ));
    }
    for i in 0..networks(hosts) {
        changes.push(put(
            "network",
            &format!("net-{:03}", i + 1),
            json!({"subnet4": format!("172.16.{}.0", i % 256), "mask-length4": 24, "color": "blue"}),
        ));
    }
    for i in 0..ranges(hosts) {
        changes.push(put(
            "address-range",
            &format!("dhcp-pool-{:02}", i + 1),
            json!({"ipv4-address-first": format!("192.168.{}.10", i % 256), "ipv4-address-last": format!("192.168.{}.200", i % 256)}),
        ));
    }
    for (t, tier) in TIERS.iter().enumerate() {
        changes.push(put("group", &format!("grp-{tier}"), json!({"members": tier_hosts(hosts, t)})));
    }
    changes.push(put("group", "grp-servers", json!({"members": ["grp-web", "grp-app", "grp-db"]})));
    let nets: Vec<String> = (0..networks(hosts)).map(|i| format!("net-{:03}", i + 1)).collect();
    let pools: Vec<String> = (0..ranges(hosts)).map(|i| format!("dhcp-pool-{:02}", i + 1)).collect();
    let office: Vec<String> = nets.into_iter().chain(pools).collect();
    changes.push(put("group", "grp-office", json!({"members": office})));
    changes.push(put("group", "grp-internal", json!({"members": ["grp-office", "grp-servers", "grp-mgmt"]})));
    ChangeSet { message: "network objects: hosts, networks, address ranges, groups".into(), changes }
}

/// Revision 2: services and service groups.
fn services() -> ChangeSet {
    let mut changes = Vec::new();
    for (name, port) in TCP_SERVICES {
        changes.push(put("service-tcp", name, json!({"port": port})));
    }
    for (name, port) in UDP_SERVICES {
        changes.push(put("service-udp", name, json!({"port": port})));
    }
    let groups: [(&str, &[&str]); 6] = [
        ("svc-web", &["http", "https", "http-alt", "https-alt"]),
        ("svc-databases", &["mysql", "postgresql", "redis"]),
        ("svc-directory", &["ldap", "ldaps", "kerberos-tcp", "kerberos-udp"]),
        ("svc-infra", &["dns", "ntp", "dhcp", "syslog"]),
        ("svc-mgmt", &["ssh", "rdp", "snmp", "radius"]),
        ("svc-internal", &["svc-databases", "svc-directory", "app-range", "kafka"]),
    ];
    for (name, members) in groups {
        changes.push(put("service-group", name, json!({"members": members})));
    }
    ChangeSet { message: "services and service groups".into(), changes }
}

/// The fields of the `i`th access rule; rules cycle through a few realistic shapes.
fn rule_fields(hosts: usize, i: usize) -> Value {
    let layer = if i % 5 == 4 { "Datacenter" } else { "Network" };
    let tier = TIERS[i % TIERS.len()];
    let (source, destination, service, action) = match i % 6 {
        0 => (json!("Any"), json!([format!("grp-{tier}")]), json!(["svc-web"]), "accept"),
        1 => (json!(["grp-office"]), json!([format!("grp-{tier}")]), json!(["svc-internal"]), "accept"),
        2 => (json!(["grp-mgmt"]), json!(["grp-servers"]), json!(["svc-mgmt"]), "accept"),
        3 => (json!(["grp-internal"]), json!("Any"), json!(["svc-infra"]), "accept"),
        4 => (
            json!([format!("net-{:03}", i % networks(hosts) + 1)]),
            json!(["grp-db"]),
            json!(["svc-databases"]),
            "drop",
        ),
        _ => (json!("Any"), json!([format!("grp-{tier}")]), json!("Any"), "reject"),
    };
    json!({
        "layer": layer, "position": i + 1, "source": source, "destination": destination, "service": service,
        "action": action, "track": if action == "accept" { "log" } else { "alert" }, "enabled": i % 17 != 16,
    })
}

/// Revision 3: access layers, rules and policy packages.
fn access_policy(hosts: usize) -> ChangeSet {
    let mut changes = vec![
        put("access-layer", "Network", json!({"comments": "perimeter and internal segmentation"})),
        put("access-layer", "Datacenter", json!({"comments": "east-west traffic between tiers"})),
    ];
    for i in 0..rules(hosts) {
        changes.push(put("access-rule", &format!("rule-{:03}", i + 1), rule_fields(hosts, i)));
    }
    changes.push(put(
        "access-rule",
        "cleanup",
        json!({"layer": "Network", "position": rules(hosts) + 1, "source": "Any", "destination": "Any", "service": "Any", "action": "drop", "track": "log", "enabled": true}),
    ));
    changes.push(put("policy-package", "Standard", json!({"access-layers": ["Network", "Datacenter"]})));
    changes.push(put("policy-package", "Datacenter-only", json!({"access-layers": ["Datacenter"]})));
    ChangeSet { message: "access policy: layers, rules, packages".into(), changes }
}

/// Revision 4: users, user groups, administrators and system settings.
fn identities(hosts: usize) -> ChangeSet {
    let users = (hosts / 3).max(2);
    let methods = ["password", "certificate", "radius"];
    let mut changes = Vec::new();
    for i in 0..users {
        changes.push(put(
            "user",
            &format!("user-{:03}", i + 1),
            json!({"email": format!("user{:03}@example.com", i + 1), "authentication-method": methods[i % 3], "expiration-date": format!("2027-{:02}-28", i % 12 + 1)}),
        ));
    }
    let teams = ["engineering", "finance", "support", "sales"];
    for (t, team) in teams.iter().enumerate() {
        let members: Vec<String> =
            (0..users).filter(|i| i % teams.len() == t).map(|i| format!("user-{:03}", i + 1)).collect();
        changes.push(put("user-group", &format!("team-{team}"), json!({"members": members})));
    }
    changes.push(put(
        "user-group",
        "everyone",
        json!({"members": teams.iter().map(|t| format!("team-{t}")).collect::<Vec<_>>()}),
    ));
    for (name, profile, method) in [
        ("admin", "super-user", "password"),
        ("secops", "read-write", "certificate"),
        ("auditor", "read-only", "radius"),
        ("netops", "read-write", "password"),
        ("helpdesk", "read-only", "password"),
    ] {
        changes.push(put(
            "administrator",
            name,
            json!({"permissions-profile": profile, "authentication-method": method}),
        ));
    }
    for (name, value) in [
        ("session-timeout-minutes", json!(30)),
        ("login-banner", json!("Authorized use only")),
        ("ntp-servers", json!(["ntp1.example.com", "ntp2.example.com"])),
        ("dns-servers", json!(["10.4.0.53", "10.4.0.54"])),
        ("syslog", json!({"server": "10.4.0.10", "port": 514, "facility": "local4"})),
        ("password-policy", json!({"min-length": 12, "history": 5, "expire-days": 90})),
        ("audit-log-retention-days", json!(365)),
        ("api-access", json!({"enabled": true, "allowed": ["10.4.0.0/24"]})),
        ("hostname", json!("mgmt-primary")),
        ("timezone", json!("UTC")),
    ] {
        changes.push(put("system-setting", name, json!({"value": value})));
    }
    ChangeSet { message: "users, administrators, system settings".into(), changes }
}

/// The sample policy for `hosts` hosts (everything else scales with it), as changesets to be
/// published in order. At 120 hosts it is about 340 objects.
pub fn policy(hosts: usize) -> Vec<ChangeSet> {
    let hosts = hosts.max(TIERS.len());
    vec![network_objects(hosts), services(), access_policy(hosts), identities(hosts)]
}

/// A routine change to the published sample: a web server moves, a new one joins its group, a
/// rule is tightened, one is removed, and a setting changes.
pub fn edit(hosts: usize) -> ChangeSet {
    let hosts = hosts.max(TIERS.len());
    let mut web = tier_hosts(hosts, 0);
    web.push("web-canary".into());
    let mut rule = rule_fields(hosts, 1);
    rule["action"] = json!("drop");
    rule["comments"] = json!("office access to the web tier closed pending review");
    ChangeSet {
        message: "web tier: move web-001, add a canary, tighten office access".into(),
        changes: vec![
            put(
                "host",
                &host_name("web", 1),
                json!({"ipv4-address": "10.1.9.1", "comments": "moved to the new rack", "tags": ["web"]}),
            ),
            put(
                "host",
                "web-canary",
                json!({"ipv4-address": "10.1.9.2", "comments": "canary", "tags": ["web", "canary"]}),
            ),
            put("group", "grp-web", json!({"members": web})),
            put("access-rule", "rule-002", rule),
            ChangeInput::Delete { type_name: "access-rule".into(), name: Some("rule-006".into()), uid: None },
            put("system-setting", "session-timeout-minutes", json!({"value": 15})),
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mgha_core::engine::EngineOptions;
    use mgha_core::NodeState;

    #[test]
    fn sample_policy_publishes_and_edits_cleanly() {
        let dir = tempfile::tempdir().expect("tempdir");
        let engine = mgha_sync::create_engine(dir.path(), &NodeState::new_primary("n"), EngineOptions::default())
            .expect("create");
        let revisions = policy(120);
        let total: usize = revisions.iter().map(|cs| cs.changes.len()).sum();
        assert!((300..500).contains(&total), "{total} objects");
        for cs in &revisions {
            engine.publish("sample", cs).expect(&cs.message);
        }
        assert_eq!(engine.status().expect("status").objects, total as u64);
        let types: std::collections::BTreeSet<String> =
            engine.store().list(None, 100_000).expect("list").into_iter().map(|o| o.type_name).collect();
        // Every built-in type an admin writes (the domain registry is the node's).
        let admin_types = mgha_core::model::BUILTIN_TYPES
            .iter()
            .filter(|t| !mgha_core::model::schema::MANAGED_TYPES.contains(t))
            .count();
        assert_eq!(types.len(), admin_types, "every built-in type appears: {types:?}");
        engine.publish("sample", &edit(120)).expect("edit applies");
    }

    #[test]
    fn sample_is_deterministic() {
        assert_eq!(policy(40), policy(40));
        assert_eq!(edit(40), edit(40));
    }
}
