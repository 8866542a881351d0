//! The plugin's global allocator on wasm32: a bump arena that starts over whenever nothing is
//! allocated, which is the case between two calls (the host frees the input and the answer).
//!
//! A call decodes its input, runs the plugin and encodes the answer: a few hundred small
//! allocations, all dropped by the end. A general-purpose allocator spends more on them than the
//! plugin spends on its work; here an allocation is a pointer bump, a free only counts (and
//! gives the space back when it was the last block), and the whole arena is reused by the next
//! call. Every call of an instance thus sees the same addresses, whatever ran before it.
//!
//! An allocation kept from one call to the next (which the ABI's "no state between calls"
//! forbids anyway) stops the arena from starting over: it then only grows, until the memory
//! limit fails a call and the host replaces the instance. Plugins that need such state, or
//! their own allocator, turn the SDK's default feature `arena` off.

use core::alloc::{GlobalAlloc, Layout};
use core::cell::UnsafeCell;

/// WebAssembly page size.
pub const PAGE: usize = 64 * 1024;

/// Where the arena lives: the heap of linear memory on wasm32, a buffer in tests.
pub trait Memory {
    /// The first byte the arena may use, and the end of memory as it is.
    fn bounds(&self) -> (usize, usize);
    /// Adds `pages` pages at the end of memory; the old end, or `None` when it cannot.
    fn grow(&self, pages: usize) -> Option<usize>;
}

/// A bump allocator over a [`Memory`]; [`crate`] installs one over linear memory.
pub struct Arena<M: Memory> {
    memory: M,
    state: UnsafeCell<State>,
}

struct State {
    /// First byte of the arena (0 until first used), the next free byte, and the end of memory.
    start: usize,
    next: usize,
    end: usize,
    /// Blocks allocated and not freed.
    live: usize,
}

// SAFETY: installed only on wasm32-unknown-unknown without the atomics feature, which has one
// thread (see lib.rs); tests use an arena from one thread.
unsafe impl<M: Memory> Sync for Arena<M> {}

impl<M: Memory> Arena<M> {
    pub const fn new(memory: M) -> Arena<M> {
        Arena { memory, state: UnsafeCell::new(State { start: 0, next: 0, end: 0, live: 0 }) }
    }

    /// Room for `size` bytes aligned to `align`; the block's address, or `None` when memory
    /// cannot grow that far.
    fn bump(&self, s: &mut State, size: usize, align: usize) -> Option<usize> {
        if s.start == 0 {
            (s.start, s.end) = self.memory.bounds();
            s.next = s.start;
        }
        let at = s.next.checked_add(align - 1)? & !(align - 1);
        let end = at.checked_add(size)?;
        if end > s.end {
            self.grow(s, end)?;
        }
        s.next = end;
        Some(at)
    }

    /// Grows memory so that it reaches at least `end`.
    fn grow(&self, s: &mut State, end: usize) -> Option<()> {
        let pages = (end - s.end).div_ceil(PAGE);
        let old = self.memory.grow(pages)?;
        // Nothing else grows memory when this is the global allocator, so the new pages follow
        // the arena's; if something did, the arena cannot span the gap and gives up.
        if old != s.end {
            return None;
        }
        s.end += pages * PAGE;
        Some(())
    }
}

// SAFETY: blocks never overlap: `next` only moves back over a block that was freed (the last
// one) or when no block is live.
unsafe impl<M: Memory> GlobalAlloc for Arena<M> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: one thread, and no reentrancy: nothing here allocates.
        let s = unsafe { &mut *self.state.get() };
        match self.bump(s, layout.size(), layout.align()) {
            Some(at) => {
                s.live += 1;
                at as *mut u8
            }
            None => core::ptr::null_mut(),
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as in alloc.
        let s = unsafe { &mut *self.state.get() };
        s.live = s.live.saturating_sub(1);
        if s.live == 0 {
            s.next = s.start;
        } else if ptr as usize + layout.size() == s.next {
            s.next = ptr as usize;
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as in alloc.
        let s = unsafe { &mut *self.state.get() };
        let at = ptr as usize;
        if at + layout.size() == s.next {
            // The last block grows or shrinks where it is.
            let Some(end) = at.checked_add(new_size) else {
                return core::ptr::null_mut();
            };
            if end > s.end && self.grow(s, end).is_none() {
                return core::ptr::null_mut();
            }
            s.next = end;
            return ptr;
        }
        if new_size <= layout.size() {
            return ptr;
        }
        // SAFETY: the caller guarantees a valid layout for new_size with the same alignment.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        // SAFETY: a fresh block of new_size bytes, which does not overlap the old one.
        unsafe {
            let new = self.alloc(new_layout);
            if !new.is_null() {
                core::ptr::copy_nonoverlapping(ptr, new, layout.size());
                self.dealloc(ptr, layout);
            }
            new
        }
    }
}

/// The linear memory of a wasm32 module, from the linker's `__heap_base` on.
#[cfg(target_arch = "wasm32")]
pub struct LinearMemory;

#[cfg(target_arch = "wasm32")]
extern "C" {
    /// Set by the linker: where the data and the stack end and the heap may begin.
    static __heap_base: u8;
}

#[cfg(target_arch = "wasm32")]
impl Memory for LinearMemory {
    fn bounds(&self) -> (usize, usize) {
        // Only the symbol's address is taken, which needs no unsafe.
        (core::ptr::addr_of!(__heap_base) as usize, core::arch::wasm32::memory_size(0) * PAGE)
    }

    fn grow(&self, pages: usize) -> Option<usize> {
        match core::arch::wasm32::memory_grow(0, pages) {
            usize::MAX => None,
            old => Some(old * PAGE),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    /// Pages of a leaked buffer, of which `len` are "memory" so far.
    struct Fake {
        base: usize,
        pages: Cell<usize>,
        pages_max: usize,
    }

    impl Fake {
        fn new(pages: usize, pages_max: usize) -> Fake {
            let buf: &'static mut [u8] = Box::leak(vec![0u8; (pages_max + 1) * PAGE].into_boxed_slice());
            // Page-aligned, like linear memory.
            let base = (buf.as_ptr() as usize).next_multiple_of(PAGE);
            Fake { base, pages: Cell::new(pages), pages_max }
        }
    }

    impl Memory for Fake {
        fn bounds(&self) -> (usize, usize) {
            (self.base + 100, self.base + self.pages.get() * PAGE)
        }
        fn grow(&self, pages: usize) -> Option<usize> {
            let old = self.pages.get();
            (old + pages <= self.pages_max).then(|| {
                self.pages.set(old + pages);
                self.base + old * PAGE
            })
        }
    }

    fn layout(size: usize, align: usize) -> Layout {
        Layout::from_size_align(size, align).expect("layout")
    }

    #[test]
    fn blocks_are_aligned_and_the_arena_starts_over_when_all_are_freed() {
        let a = Arena::new(Fake::new(1, 4));
        // SAFETY: blocks from this arena, freed once with their layouts.
        unsafe {
            let x = a.alloc(layout(3, 1));
            let y = a.alloc(layout(8, 8));
            assert_eq!(y as usize % 8, 0);
            assert!(y as usize >= x as usize + 3);
            a.dealloc(x, layout(3, 1));
            let z = a.alloc(layout(5, 1));
            assert!(z as usize > y as usize, "x's space is not reused while y lives");
            a.dealloc(z, layout(5, 1));
            a.dealloc(y, layout(8, 8));
            assert_eq!(a.alloc(layout(3, 1)), x, "nothing live: the next call sees the same addresses");
        }
    }

    #[test]
    fn the_last_block_is_given_back_and_grows_in_place() {
        let a = Arena::new(Fake::new(1, 4));
        // SAFETY: as above.
        unsafe {
            let x = a.alloc(layout(16, 1));
            let y = a.alloc(layout(16, 1));
            a.dealloc(y, layout(16, 1));
            assert_eq!(a.alloc(layout(16, 1)), y, "the last block's space comes back");
            let grown = a.realloc(y, layout(16, 1), 64);
            assert_eq!(grown, y, "the last block grows in place");
            x.write(7);
            let moved = a.realloc(x, layout(16, 1), 32);
            assert!(moved as usize >= y as usize + 64, "a block in the middle moves up");
            assert_eq!(moved.read(), 7, "with its bytes");
        }
    }

    #[test]
    fn memory_grows_by_pages_and_refuses_past_its_limit() {
        let fake = Fake::new(1, 3);
        let base = fake.base;
        let a = Arena::new(fake);
        // SAFETY: as above.
        unsafe {
            let big = a.alloc(layout(2 * PAGE, 1));
            assert!(!big.is_null());
            assert!(big as usize + 2 * PAGE <= base + 3 * PAGE);
            assert!(a.alloc(layout(PAGE, 1)).is_null(), "past the memory limit");
            assert!(a.realloc(big, layout(2 * PAGE, 1), 4 * PAGE).is_null());
        }
    }
}
