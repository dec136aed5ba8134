//! The global allocator: mimalloc, asked for plain blocks where a plain
//! block is aligned enough.
//!
//! The `mimalloc` crate's allocator passes every request to
//! `mi_malloc_aligned`, whatever its alignment. mimalloc's aligned path is
//! fast only while the size class's next free block happens to be aligned
//! and the size is small; otherwise it over-allocates (size + alignment − 1,
//! a block of the next class) and marks the page as holding interior
//! pointers, which `mi_free` then has to resolve. On a proxied `GET` about
//! nine allocations a request took that path (callgrind), for types aligned
//! to 8 bytes or less, which every mimalloc block already is (block sizes
//! are multiples of the word size). So, like the standard library's
//! `System` with `malloc`: word-aligned requests go to `mi_malloc`,
//! `mi_zalloc` and `mi_realloc`, and only larger alignments to the aligned
//! functions.

use std::alloc::{GlobalAlloc, Layout};
use std::ffi::c_void;

use libmimalloc_sys as mi;

/// The alignment every mimalloc block has: block sizes are multiples of it.
const PLAIN_ALIGN: usize = std::mem::size_of::<usize>();

/// mimalloc, plain where that is aligned enough (see the module docs).
pub struct Allocator;

fn plain(layout: &Layout) -> bool {
    layout.align() <= PLAIN_ALIGN
}

// SAFETY: every pointer handed out comes from mimalloc with at least the
// layout's size and alignment (plain blocks are word-aligned, the others are
// asked for the alignment), and every pointer taken back is one of those.
unsafe impl GlobalAlloc for Allocator {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if plain(&layout) {
            mi::mi_malloc(layout.size()).cast()
        } else {
            mi::mi_malloc_aligned(layout.size(), layout.align()).cast()
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if plain(&layout) {
            mi::mi_zalloc(layout.size()).cast()
        } else {
            mi::mi_zalloc_aligned(layout.size(), layout.align()).cast()
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        mi::mi_free(ptr.cast::<c_void>());
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if plain(&layout) {
            mi::mi_realloc(ptr.cast(), new_size).cast()
        } else {
            mi::mi_realloc_aligned(ptr.cast(), new_size, layout.align()).cast()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every size and alignment a program asks for comes back aligned, also
    /// after growing and shrinking, and zeroed where asked.
    #[test]
    fn blocks_are_aligned_as_asked() {
        let a = Allocator;
        for align in [1, 2, 4, 8, 16, 32, 64, 128, 4096] {
            for size in [1, 3, 7, 8, 15, 24, 40, 100, 1000, 1500, 5000, 70_000] {
                let layout = Layout::from_size_align(size, align).unwrap();
                unsafe {
                    let p = a.alloc(layout);
                    assert!(!p.is_null());
                    assert_eq!(p as usize % align, 0, "size {size} align {align}");
                    p.write_bytes(0xab, size);
                    let q = a.realloc(p, layout, size * 3);
                    assert_eq!(q as usize % align, 0, "grown: size {size} align {align}");
                    assert_eq!(*q.add(size - 1), 0xab, "grown keeps the bytes");
                    a.dealloc(q, Layout::from_size_align(size * 3, align).unwrap());
                    let z = a.alloc_zeroed(layout);
                    assert_eq!(z as usize % align, 0);
                    assert!((0..size).all(|i| *z.add(i) == 0));
                    a.dealloc(z, layout);
                }
            }
        }
    }
}
