//! A loaded plugin: a module that passed every check, what it declared, and a small pool of live
//! instances that calls reuse.
//!
//! Reuse is what makes a call cheap (no instantiation), but an instance carries state from one
//! call to the next. So that no answer depends on that history, an instance that fails is
//! dropped, and a call that fails on an instance that had answered before is run again on a fresh
//! one: the error reported is always what a fresh instance does with that input. A plugin that
//! keeps no state between calls (docs/plugin-abi.md requires it) answers the same either way.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use super::abi::{self, Description, MergeOutput, ValidateOutput, ABI_VERSION};
use super::check;
use super::limits::{PluginLimits, PLUGIN_DESCRIBE_BYTES_MAX, PLUGIN_INSTANCES_IDLE_MAX, PLUGIN_MERGE_CONFLICTS_MAX};
use super::runtime::{self, Call, CompiledModule, ModuleInstance};
use crate::error::{Error, Result};
use crate::merge::{Conflict, Method, ObjectMerge, WHOLE_OBJECT};
use crate::model::validate::validate_name;
use crate::model::{Hash, Object, TypeSchema};

/// A live instance of the runtime's, and how many calls it answered: an instance that has
/// answered before is not fresh, and a failed call on it is retried once on a fresh one.
struct Instance {
    inner: Box<dyn ModuleInstance>,
    calls: u64,
}

impl Instance {
    fn new(
        compiled: &dyn CompiledModule,
        plugin: Arc<str>,
        limits: &PluginLimits,
    ) -> std::result::Result<Self, String> {
        Ok(Instance { inner: compiled.instantiate(plugin, limits)?, calls: 0 })
    }
}

/// A plugin ready to be called.
pub struct Plugin {
    name: Arc<str>,
    description: Description,
    custom_merge: BTreeSet<String>,
    module_bytes: usize,
    compiled: Arc<dyn CompiledModule>,
    limits: PluginLimits,
    idle: Mutex<Vec<Instance>>,
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Plugin({} {} {})", self.name, self.description.version, self.compiled.hash().short())
    }
}

impl Plugin {
    /// Checks a module as install does, and loads it: it must compile, import only host
    /// functions, export the ABI, speak ABI version 1 and describe itself sensibly.
    pub fn load(wasm: &[u8], limits: PluginLimits) -> Result<Plugin> {
        let label = format!("blake3:{}", Hash::of(wasm).short());
        let refuse = |reason: String| Error::Plugin { plugin: label.clone(), call: "check".into(), reason };
        let compiled = runtime::runtime().and_then(|rt| rt.compile(wasm)).map_err(refuse)?;
        let mut instance = Instance::new(compiled.as_ref(), label.as_str().into(), &limits).map_err(refuse)?;
        let version = instance.inner.abi_version(&limits).map_err(|e| refuse(format!("mgha_abi_version {e}")))?;
        if version != ABI_VERSION {
            return Err(refuse(format!("it speaks plugin ABI version {version}; this host speaks {ABI_VERSION}")));
        }
        let mut answer = Vec::new();
        instance
            .inner
            .call(Call::Describe, &[], &limits, PLUGIN_DESCRIBE_BYTES_MAX, &mut answer)
            .map_err(|e| refuse(format!("describe {e}")))?;
        let description: Description = abi::decode(&answer).map_err(|e| refuse(format!("describe: {e}")))?;
        check::description(&description).map_err(refuse)?;
        instance.calls += 1;
        let name: Arc<str> = description.name.as_str().into();
        // The check instance logged under the hash; later ones log under the plugin's name.
        drop(instance);
        Ok(Plugin {
            custom_merge: description.merge.iter().cloned().collect(),
            description,
            module_bytes: wasm.len(),
            compiled,
            limits,
            idle: Mutex::new(Vec::new()),
            name,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn version(&self) -> &str {
        &self.description.version
    }

    /// blake3 of the module bytes.
    pub fn hash(&self) -> Hash {
        self.compiled.hash()
    }

    pub fn module_bytes(&self) -> usize {
        self.module_bytes
    }

    pub fn limits(&self) -> &PluginLimits {
        &self.limits
    }

    /// What `describe` answered.
    pub fn description(&self) -> &Description {
        &self.description
    }

    /// The schemas of the types it declares.
    pub fn types(&self) -> &[TypeSchema] {
        &self.description.types
    }

    /// Whether `mgha_merge` merges `type_name` (otherwise its per-field strategies do).
    pub fn merges(&self, type_name: &str) -> bool {
        self.custom_merge.contains(type_name)
    }

    /// Runs one call on a pooled instance (see the module docs for retries); the answer goes to
    /// `answer`.
    fn call(&self, call: Call, input: &[u8], answer: &mut Vec<u8>) -> Result<()> {
        let fail = |reason: String| Error::Plugin { plugin: self.name.to_string(), call: call.name().into(), reason };
        let pooled = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let mut instance = match pooled {
            Some(i) => i,
            None => self.instantiate().map_err(fail)?,
        };
        let max = self.limits.output_bytes_max;
        let answered = match instance.inner.call(call, input, &self.limits, max, answer) {
            Err(_) if instance.calls > 0 => {
                instance = self.instantiate().map_err(fail)?;
                instance.inner.call(call, input, &self.limits, max, answer)
            }
            other => other,
        };
        answered.map_err(fail)?;
        instance.calls += 1;
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < PLUGIN_INSTANCES_IDLE_MAX {
            idle.push(instance);
        }
        Ok(())
    }

    fn instantiate(&self) -> std::result::Result<Instance, String> {
        Instance::new(self.compiled.as_ref(), self.name.clone(), &self.limits)
    }

    fn malformed(&self, call: Call, reason: String) -> Error {
        Error::Plugin { plugin: self.name.to_string(), call: call.name().into(), reason }
    }

    /// Asks the plugin whether an object of one of its types is valid. An object it refuses is
    /// an [`Error::InvalidField`] (or [`Error::InvalidObject`]) with the plugin's first reason.
    pub fn validate(&self, o: &Object) -> Result<()> {
        let out: ValidateOutput = with_buffers(|input, answer| {
            abi::encode_object(input, o);
            self.call(Call::Validate, input, answer)?;
            abi::decode_validate_output(answer).map_err(|e| self.malformed(Call::Validate, e))
        })?;
        match (out.ok, out.errors.first()) {
            (true, None) => Ok(()),
            (true, Some(_)) => Err(self.malformed(Call::Validate, "malformed answer: ok with errors".into())),
            (false, first) => {
                let more = match out.errors.len() {
                    0 | 1 => String::new(),
                    n => format!(" (and {} more)", n - 1),
                };
                let reason = first.map_or("refused without a reason".into(), |e| e.reason.clone());
                let reason = format!("{reason}{more} (plugin '{}')", self.name);
                Err(match first.map(|e| e.field.as_str()).filter(|f| !f.is_empty()) {
                    Some(field) => Error::InvalidField {
                        type_name: o.type_name.clone(),
                        name: o.name.clone(),
                        field: field.into(),
                        reason,
                    },
                    None => Error::InvalidObject { type_name: o.type_name.clone(), name: o.name.clone(), reason },
                })
            }
        }
    }

    /// The plugin's three-way merge of one object of `type_name` that the trivial rules did not
    /// settle. At least one side is present.
    pub fn merge(
        &self,
        type_name: &str,
        base: Option<&Object>,
        active: Option<&Object>,
        branch: Option<&Object>,
    ) -> Result<ObjectMerge> {
        let Some(any) = active.or(branch).or(base) else {
            return Err(self.malformed(Call::Merge, "asked to merge an object absent on every side".into()));
        };
        let bad = |reason: String| self.malformed(Call::Merge, reason);
        let out: MergeOutput = with_buffers(|input, answer| {
            abi::encode_merge_input(input, type_name, base, active, branch);
            self.call(Call::Merge, input, answer)?;
            abi::decode_merge_output(answer).map_err(bad)
        })?;
        let result = match out.result {
            Some(o) => Some(o.into_object(type_name, any.uid).map_err(bad)?),
            None => None,
        };
        if let Some(r) = &result {
            validate_name(type_name, &r.name).map_err(|e| bad(format!("malformed answer: {e}")))?;
        }
        if out.conflicts.len() > PLUGIN_MERGE_CONFLICTS_MAX {
            return Err(bad(format!("malformed answer: over {PLUGIN_MERGE_CONFLICTS_MAX} conflicts")));
        }
        let name = result.as_ref().or(active).or(branch).unwrap_or(any).name.clone();
        let mut conflicts = Vec::with_capacity(out.conflicts.len());
        for c in out.conflicts {
            if c.field.is_empty() || (result.is_none() && c.field != WHOLE_OBJECT) {
                return Err(bad(format!("malformed answer: a conflict on field '{}' of a deleted object", c.field)));
            }
            for v in [&c.base, &c.active, &c.branch].into_iter().flatten() {
                abi::check_document(v, 0).map_err(|e| bad(format!("malformed answer: conflict '{}': {e}", c.field)))?;
            }
            conflicts.push(Conflict {
                type_name: type_name.into(),
                uid: any.uid,
                name: name.clone(),
                field: c.field,
                base: c.base,
                active: c.active,
                branch: c.branch,
            });
        }
        conflicts.sort_by(|x, y| x.field.cmp(&y.field));
        if let Some(w) = conflicts.windows(2).find(|w| w[0].field == w[1].field) {
            return Err(bad(format!("malformed answer: field '{}' is in conflict twice", w[0].field)));
        }
        Ok(ObjectMerge { result, conflicts, method: Method::Plugin })
    }
}

/// Buffers kept above this size are dropped after the call, so that one large answer does not
/// pin megabytes to a thread.
const BUFFER_BYTES_KEPT_MAX: usize = 64 * 1024;

thread_local! {
    /// The input and answer buffers of this thread's plugin calls, reused from call to call.
    static BUFFERS: RefCell<(Vec<u8>, Vec<u8>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

/// Runs `f` with an empty input buffer and an answer buffer: this thread's, unless they are in
/// use (a call made while another is being answered), then new ones.
fn with_buffers<T>(f: impl FnOnce(&mut Vec<u8>, &mut Vec<u8>) -> T) -> T {
    BUFFERS.with(|cell| match cell.try_borrow_mut() {
        Ok(mut buffers) => {
            let (input, answer) = &mut *buffers;
            input.clear();
            let out = f(input, answer);
            for b in [input, answer] {
                if b.capacity() > BUFFER_BYTES_KEPT_MAX {
                    *b = Vec::new();
                }
            }
            out
        }
        Err(_) => f(&mut Vec::new(), &mut Vec::new()),
    })
}
