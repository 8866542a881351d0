//! Write commands: `apply` (one changeset, one revision, all or nothing) and `revert`. The
//! changeset is parsed here first, so a malformed file is refused naming the file and the place
//! in it before anything reaches the node.

use std::io::Read;
use std::path::Path;

use anyhow::Context;
use mgha_core::limits::CHANGESET_BYTES_MAX;
use mgha_core::ChangeSet;

use crate::client::Backend;
use crate::output;
use crate::{ApplyArgs, RevertArgs};

/// `mgha apply FILE|-`.
pub fn apply(args: &ApplyArgs) -> anyhow::Result<()> {
    let label =
        if args.file == Path::new("-") { "standard input".to_string() } else { args.file.display().to_string() };
    let bytes = read_changeset(&args.file).with_context(|| format!("{label}: nothing was published"))?;
    let mut cs = ChangeSet::from_json(&bytes).with_context(|| format!("{label}: nothing was published"))?;
    if let Some(m) = &args.message {
        cs.message = m.clone();
    }
    let author = author(args.author.as_deref());
    let backend = Backend::connect(&args.read.node)?;
    let rev = backend.publish(&author, &cs).map_err(|e| publish_failed(e, &label))?;
    if args.read.json {
        return output::json(&rev);
    }
    outln!("{}", output::published(&rev));
    Ok(())
}

/// `mgha revert REV`.
pub fn revert(args: &RevertArgs) -> anyhow::Result<()> {
    let author = author(args.author.as_deref());
    let backend = Backend::connect(&args.read.node)?;
    let rev =
        backend.revert(&author, args.to).map_err(|e| publish_failed(e, &format!("revert to revision {}", args.to)))?;
    if args.read.json {
        return output::json(&rev);
    }
    outln!("{} (the state of revision {})", output::published(&rev), args.to);
    Ok(())
}

/// Says what became of a publish that failed. A `peer` error is a synchronous publish that its
/// standbys did not confirm in time: the revision *is* committed on this node (the message says
/// which), so "nothing was published" would be false.
pub(super) fn publish_failed(e: anyhow::Error, what: &str) -> anyhow::Error {
    if crate::exit::for_error(&e) == crate::exit::for_code(mgha_core::ErrorCode::Peer) {
        e.context(format!("{what}: published on this node, but not confirmed by enough standbys"))
    } else {
        e.context(format!("{what}: nothing was published"))
    }
}

/// The author: as given, else the login name, else `admin`.
pub fn author(given: Option<&str>) -> String {
    given
        .map(str::to_string)
        .or_else(|| std::env::var("USER").ok())
        .or_else(|| std::env::var("LOGNAME").ok())
        .filter(|a| !a.trim().is_empty())
        .unwrap_or_else(|| crate::daemon::routes::DEFAULT_AUTHOR.to_string())
}

/// Reads a changeset file or standard input, refusing more than the changeset limit without
/// reading it all.
fn read_changeset(file: &Path) -> anyhow::Result<Vec<u8>> {
    let mut input: Box<dyn Read> = if file == Path::new("-") {
        Box::new(std::io::stdin().lock())
    } else {
        Box::new(std::fs::File::open(file).context("cannot open")?)
    };
    let mut bytes = Vec::new();
    input.by_ref().take(CHANGESET_BYTES_MAX as u64 + 1).read_to_end(&mut bytes).context("cannot read")?;
    if bytes.len() > CHANGESET_BYTES_MAX {
        return Err(mgha_core::Error::TooLarge {
            what: "changeset".into(),
            size: bytes.len(),
            max: CHANGESET_BYTES_MAX,
        }
        .into());
    }
    Ok(bytes)
}
