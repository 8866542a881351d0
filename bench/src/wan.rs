//! The long-link figures (`--scenario wan`): a Standby whose every byte to and from the Active
//! crosses the test kit's fault proxy with a one-way delay (20 ms: a 40 ms round trip), for the
//! catch-up of a backlog of one-object revisions, the replication lag of one-object revisions,
//! and a full sync of the large store, each next to the same measurement on loopback in the
//! same run.

use std::path::Path;

use mgha_tests::proxy::FaultProxy;

use super::cluster::{self, ClusterScale};
use super::report::{Goal, Row, Unit};
use super::workload::percentile_ms;

/// Added each way by the proxy: a 40 ms round trip, as between two sites of one region.
pub const ONE_WAY_MS: u64 = 20;
/// The lag p50 goal: the one-way delay plus this.
const LAG_OVER_DELAY_MS_MAX: f64 = 2.0;
/// The full sync over the delay, as a multiple of the loopback one of the same run.
const FULL_SYNC_OVER_LOOPBACK_MAX: f64 = 1.5;

/// Measures every row of the scenario into `rows`.
pub fn run(scratch: &Path, scale: ClusterScale, rows: &mut Vec<Row>) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let log = |what: &str| eprintln!("[wan {:>6.1} s] {what}", started.elapsed().as_secs_f64());
    let rt = cluster::runtime()?;
    let n = scale.catch_up_revisions;
    log(&format!("catch-up of {n} revisions, loopback then {ONE_WAY_MS} ms each way"));
    let loopback = rt.block_on(cluster::catch_up_ms(&scratch.join("wan-catchup-lo"), n, None))?;
    let delayed = rt.block_on(cluster::catch_up_ms(&scratch.join("wan-catchup"), n, Some(ONE_WAY_MS)))?;
    rows.push(cluster::catch_up_row(n, loopback));
    rows.push(
        Row::new(
            "wan_catch_up_ms",
            format!("catch-up of {n} one-object revisions, {} ms round trip", 2 * ONE_WAY_MS),
            delayed,
            Unit::Milliseconds,
        )
        .goal(cluster::catch_up_goal(n)),
    );

    log(&format!("replication lag of {} revisions over the delay", scale.wan_lag_revisions));
    let lags = rt.block_on(async {
        let (p, proxy) = cluster::pair(&scratch.join("wan-lag"), true).await?;
        if let Some(proxy) = &proxy {
            proxy.set_delay_ms(ONE_WAY_MS);
        }
        let lags = cluster::lags(&p, scale.wan_lag_revisions, 1).await;
        p.stop().await;
        lags
    })?;
    let rtt = 2 * ONE_WAY_MS;
    rows.push(
        Row::new(
            "wan_lag_p50",
            format!("replication lag, 1 obj/rev, {rtt} ms round trip, p50"),
            percentile_ms(&lags, 50.0),
            Unit::Milliseconds,
        )
        .goal(Goal::AtMost(ONE_WAY_MS as f64 + LAG_OVER_DELAY_MS_MAX)),
    );
    rows.push(Row::new(
        "wan_lag_p99",
        format!("replication lag, 1 obj/rev, {rtt} ms round trip, p99"),
        percentile_ms(&lags, 99.0),
        Unit::Milliseconds,
    ));

    let objects = scale.full_sync_objects;
    log(&format!("full sync of {objects} objects, loopback then over the delay"));
    let built = cluster::build_store(&scratch.join("wan-fullsync"), objects, 2)?;
    let loopback = cluster::sync_new_member(&built, 0, None)?.ms;
    let proxy = FaultProxy::start(built.listen().parse()?)?;
    proxy.set_delay_ms(ONE_WAY_MS);
    let delayed = cluster::sync_new_member(&built, 1, Some(&proxy))?.ms;
    rows.push(cluster::full_sync_row(objects, loopback));
    rows.push(Row::new(
        "wan_full_sync_ms",
        format!("full sync of {objects} objects, {rtt} ms round trip"),
        delayed,
        Unit::Milliseconds,
    ));
    rows.push(
        Row::new("wan_full_sync_over_loopback", "  full sync, round trip / loopback", delayed / loopback, Unit::Times)
            .goal(Goal::AtMost(FULL_SYNC_OVER_LOOPBACK_MAX)),
    );
    Ok(())
}
