//! The limits of plugins: [`PluginLimits`], the manifest of what one call may use (fuel, wall
//! clock, memory, output), and the named ceilings on modules, declarations and the host's caches.
//!
//! Fuel is the limit that decides: it counts WebAssembly operations, so the same call on the same
//! input runs out at the same point on every node. The wall-clock deadline only backstops it
//! (a host function or a pathological compile of a loop could outlast fuel's intent), so it is set
//! well above the time the fuel allows and is never expected to fire on a healthy node.

use serde::{Deserialize, Serialize};

use crate::limits::{OBJECT_BYTES_MAX, TYPE_BYTES_MAX};

/// Largest WebAssembly module accepted. Its base64 text lives in one `plugin` object, which must
/// stay under [`OBJECT_BYTES_MAX`] with room to spare for its other fields.
pub const PLUGIN_MODULE_BYTES_MAX: usize = OBJECT_BYTES_MAX / 4 * 3 - 64 * 1024;
/// Most plugins installed at once.
pub const PLUGINS_MAX: usize = 64;
/// Most object types one plugin may declare.
pub const PLUGIN_TYPES_MAX: usize = 64;
/// Most fields one plugin type may declare.
pub const PLUGIN_FIELDS_MAX: usize = 256;
/// Most constraints one plugin type may declare.
pub const PLUGIN_CONSTRAINTS_MAX: usize = 64;
/// Longest plugin name, in bytes. Its types are `<plugin>.<type>`, at most [`TYPE_BYTES_MAX`].
pub const PLUGIN_NAME_BYTES_MAX: usize = 32;
/// Longest plugin version string, in bytes.
pub const PLUGIN_VERSION_BYTES_MAX: usize = 64;
/// Largest `describe` answer.
pub const PLUGIN_DESCRIBE_BYTES_MAX: usize = 1024 * 1024;
/// Log lines one call may emit through `mgha_host_v1.log`; later lines are dropped.
pub const PLUGIN_LOG_LINES_PER_CALL_MAX: u32 = 32;
/// Longest log line kept; longer ones are cut.
pub const PLUGIN_LOG_LINE_BYTES_MAX: usize = 1024;
/// Conflicts one merge answer may list (a field, the name and the whole object at most, per
/// field the type declares).
pub const PLUGIN_MERGE_CONFLICTS_MAX: usize = PLUGIN_FIELDS_MAX + 2;
/// Compiled modules kept by the process-wide cache, keyed by content hash.
pub const PLUGIN_MODULES_CACHED_MAX: usize = 64;
/// Idle instances kept per plugin for reuse; more concurrent calls instantiate and drop.
pub const PLUGIN_INSTANCES_IDLE_MAX: usize = 8;
/// How often the wall clock advances the engine's epoch, which deadlines are counted in.
pub const EPOCH_TICK_MS: u64 = 5;
/// Native stack a plugin call may use: deep recursion traps instead of crashing the node.
pub const PLUGIN_STACK_BYTES_MAX: usize = 512 * 1024;
/// WebAssembly page size.
pub const WASM_PAGE_BYTES: usize = 64 * 1024;

const _: () = assert!(PLUGIN_NAME_BYTES_MAX < TYPE_BYTES_MAX);

/// What one plugin call may use. A call that goes past any of these fails alone, with an error
/// naming the plugin, the call and the limit; the engine and other plugins go on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginLimits {
    /// WebAssembly operations one call may run (deterministic).
    pub fuel_per_call: u64,
    /// Wall-clock backstop of one call, in milliseconds.
    pub call_timeout_ms: u64,
    /// Largest linear memory, in 64 KiB pages.
    pub memory_pages_max: u32,
    /// Largest answer of one call (validate, merge); describe has its own ceiling.
    pub output_bytes_max: usize,
}

impl Default for PluginLimits {
    fn default() -> Self {
        PluginLimits {
            // About 50 to 100 ms of work on a current core: a hundred times what validating or
            // merging an object needs, and small enough that a looping plugin stalls nobody long.
            fuel_per_call: 100_000_000,
            call_timeout_ms: 2_000,
            memory_pages_max: 1024,
            // A merged object and three versions of each conflicting field.
            output_bytes_max: 4 * OBJECT_BYTES_MAX,
        }
    }
}

impl PluginLimits {
    /// The memory limit in bytes.
    pub fn memory_bytes_max(&self) -> usize {
        self.memory_pages_max as usize * WASM_PAGE_BYTES
    }

    /// The deadline in epoch ticks beyond the current one. One extra tick, because the current
    /// tick may be about to end.
    pub fn deadline_ticks(&self) -> u64 {
        self.call_timeout_ms.div_ceil(EPOCH_TICK_MS).max(1) + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::OBJECT_BYTES_MAX;

    #[test]
    fn the_largest_module_fits_in_a_plugin_object() {
        // base64 grows 3 bytes into 4.
        assert!(PLUGIN_MODULE_BYTES_MAX.div_ceil(3) * 4 + 4096 < OBJECT_BYTES_MAX);
    }

    #[test]
    fn deadline_covers_the_timeout() {
        let l = PluginLimits { call_timeout_ms: 1000, ..PluginLimits::default() };
        assert!(l.deadline_ticks() * EPOCH_TICK_MS >= 1000);
        let l = PluginLimits { call_timeout_ms: 0, ..PluginLimits::default() };
        assert!(l.deadline_ticks() >= 2);
    }
}
