//! Entry points for fuzzing every parser of peer input: the handshake's
//! hello and welcome, the frame stream's descriptors, and a ring's view of a
//! header and indices the peer wrote. Each takes arbitrary bytes and must
//! return without panicking (errors are expected: that is the point), and
//! asserts the properties of what it accepts (a panic, so a fuzzer finding):
//!
//! * `hello`: an accepted hello is exactly one `Hello`, with our magic and
//!   version, a type name of at most `NAME_MAX` bytes that is the one sent,
//!   and the element size and alignment sent.
//! * `welcome`: an accepted welcome is exactly one `Welcome` with status 0,
//!   our magic and version, a power-of-two capacity of at most
//!   `MAX_CAPACITY`, and the fd count its signal kind needs.
//! * `descriptor`: an accepted descriptor with a payload in a slot names a
//!   slot of the arena and bytes inside that slot; one with a blob payload
//!   starts at offset 0; an arena switch whose geometry (its arguments) is
//!   accepted has at most the slots the return ring has room for, a slot
//!   size that is a multiple of 64, and fits the consumer's largest arena
//!   (the slot count and size of the input, times 4096 bytes).
//! * `ring_header`: whatever the peer wrote, a reader never has more than
//!   the capacity ready nor pops more than that, and a writer never sees
//!   more free slots than the capacity nor pushes more than that.
//! * `link`: what a listener reads from a connecting peer on the link (its
//!   hello, then anything more): once served, a quiet peer is alive and one
//!   that sent a byte more is gone (a protocol violation).
//!
//! Each counts the inputs it accepted ([`accepted`]), so that a replay can
//! tell its properties were exercised.
//!
//! Used by the cargo-fuzz targets in `fuzz/` and by `core/tests/fuzz.rs`,
//! which replays the checked-in corpus and mutations of it under `cargo
//! test`. Not part of the stable API.

use std::mem::size_of;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytemuck::Zeroable;

use crate::frames::{Descriptor, Kind, STORAGE_BLOB, STORAGE_SLOT};
use crate::handshake::{Connection, Hello, PeerCred, Role, Welcome, NAME_MAX, PROTOCOL_VERSION};
use crate::ring::{HeapRegion, Region, RingLayout, TypeTag};
use crate::Config;

/// A fuzz target's entry point.
pub type Target = fn(&[u8]);

/// The fuzz targets: name and entry point.
pub const TARGETS: [(&str, Target); 5] = [
    ("hello", hello),
    ("welcome", welcome),
    ("descriptor", descriptor),
    ("ring_header", ring_header),
    ("link", link),
];

/// Inputs each target accepted, in the order of [`TARGETS`].
static ACCEPTED: [AtomicU64; 5] = [const { AtomicU64::new(0) }; 5];

fn accept(target: usize) {
    ACCEPTED[target].fetch_add(1, Ordering::Relaxed);
}

/// How many inputs the target `name` accepted in this process so far (its
/// properties were checked on each).
pub fn accepted(name: &str) -> u64 {
    TARGETS
        .iter()
        .position(|(n, _)| *n == name)
        .map_or(0, |i| ACCEPTED[i].load(Ordering::Relaxed))
}

/// Type name of the channel the `link` target serves.
const LINK_TYPE: &str = "fuzz-link";

/// What a listener reads from a connecting peer on its link, over a real
/// socket pair: the first byte says how long the first message (the hello)
/// is; it goes through `Connection::read_hello` and the serving of a `u64`
/// channel. Whatever follows is sent as one more message after the
/// handshake: the served producer must then see the peer gone (a protocol
/// violation), and alive when nothing follows.
pub fn link(data: &[u8]) {
    let Some((&len, rest)) = data.split_first() else {
        return;
    };
    let (first, more) = rest.split_at((len as usize).min(rest.len()));
    let Ok((ours, theirs)) = crate::channel::socket_pair() else {
        return;
    };
    let send = |m: &[u8]| {
        // SAFETY: sends from a live buffer; never blocks, no SIGPIPE.
        unsafe {
            libc::send(
                std::os::fd::AsRawFd::as_raw_fd(&theirs),
                m.as_ptr().cast(),
                m.len(),
                libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
            )
        }
    };
    send(first);
    let mut conn = Connection::from_parts(
        ours,
        PeerCred {
            pid: 0,
            uid: 0,
            gid: 0,
        },
    );
    if conn
        .read_hello(std::time::Instant::now() + std::time::Duration::from_millis(1))
        .is_err()
    {
        return;
    }
    let config = Config::new(8).type_name(LINK_TYPE);
    let Ok(mut tx) = conn.serve_producer::<u64>(&config) else {
        return;
    };
    accept(4);
    if more.is_empty() {
        assert!(tx.is_peer_alive(), "a quiet peer was taken for gone");
    } else if send(more) > 0 {
        assert!(
            !tx.is_peer_alive(),
            "bytes on the link after the hello were accepted"
        );
    }
}

/// A hello message from the peer.
pub fn hello(data: &[u8]) {
    let Ok(info) = Hello::parse(data) else {
        return;
    };
    accept(0);
    assert_eq!(data.len(), size_of::<Hello>(), "hello of the wrong size");
    let h: Hello = bytemuck::pod_read_unaligned(data);
    assert_eq!(h.magic.to_le_bytes(), *b"SHMRHELO");
    assert_eq!(h.version, PROTOCOL_VERSION);
    assert!(
        info.name.len() <= NAME_MAX,
        "type name of {}",
        info.name.len()
    );
    assert_eq!(info.name.as_bytes(), &h.name[..h.name_len as usize]);
    assert_eq!((info.tag.size, info.tag.align), (h.elem_size, h.elem_align));
}

/// A welcome message from the peer.
pub fn welcome(data: &[u8]) {
    let Ok(info) = Welcome::parse(data) else {
        return;
    };
    accept(1);
    assert_eq!(
        data.len(),
        size_of::<Welcome>(),
        "welcome of the wrong size"
    );
    let w: Welcome = bytemuck::pod_read_unaligned(data);
    assert_eq!(w.magic.to_le_bytes(), *b"SHMRWLCM");
    assert_eq!((w.version, w.status), (PROTOCOL_VERSION, 0));
    assert!(
        info.capacity.is_power_of_two() && info.capacity <= crate::ring::MAX_CAPACITY,
        "capacity {}",
        info.capacity
    );
    assert_eq!(info.nfds, 1 + 2 * info.signal.fd_count());
    assert_eq!(info.nfds, w.nfds as usize);
}

/// A descriptor from the peer, checked against a geometry the input also
/// chooses (first 8 bytes: slots, slot size, little endian).
pub fn descriptor(data: &[u8]) {
    let n = size_of::<Descriptor>();
    if data.len() < 8 + n {
        return;
    }
    let slots = u32::from_le_bytes([data[0], data[1], data[2], data[3]]);
    let slot_size = u32::from_le_bytes([data[4], data[5], data[6], data[7]]);
    let d: Descriptor = bytemuck::pod_read_unaligned(&data[8..8 + n]);
    let Ok(kind) = d.check(slots, slot_size as usize) else {
        return;
    };
    accept(2);
    assert_eq!(Kind::from_wire(d.kind), Some(kind));
    if kind.has_payload() && d.storage == STORAGE_BLOB {
        assert_eq!(d.offset, 0, "blob payload at an offset");
    } else if kind.has_payload() {
        assert_eq!(d.storage, STORAGE_SLOT);
        assert!(d.slot < slots, "slot {} of {slots}", d.slot);
        let end = u64::from(d.offset) + u64::from(d.size);
        assert!(
            end <= u64::from(slot_size),
            "bytes {}..{end} of a {slot_size}-byte slot",
            d.offset
        );
    } else if kind == Kind::Arena {
        switch_geometry(&d, slots, slot_size);
    }
}

/// The geometry an arena switch announces, checked as a consumer whose
/// return ring was made for `slots` slots and that maps at most `slots *
/// slot_size * 4096` bytes would check it.
fn switch_geometry(d: &Descriptor, slots: u32, slot_size: u32) {
    let max_slots = crate::frames::switch::max_slots(
        (slots as usize).saturating_add(64).next_power_of_two(),
        slots.clamp(2, crate::frames::MAX_SLOTS),
    );
    let max_arena = (slots as usize)
        .saturating_mul(slot_size as usize)
        .saturating_mul(4096);
    let Ok(g) = crate::frames::switch::check_geometry(d.args[0], d.args[1], max_arena, max_slots)
    else {
        return;
    };
    assert!(g.slots <= max_slots, "{} slots of {max_slots}", g.slots);
    assert_eq!(g.slot_size % 64, 0, "slot size {}", g.slot_size);
    assert_eq!(
        (u64::from(g.slots), g.slot_size as u64),
        (d.args[0], d.args[1])
    );
    assert!(
        g.bytes().is_some_and(|b| b <= max_arena),
        "{g:?} over {max_arena}"
    );
}

/// A ring of 64 `u64` whose shared memory (header, indices, slots) holds what
/// the peer wrote (`data`, zero-padded): attach both ends, pop and push.
pub fn ring_header(data: &[u8]) {
    const CAPACITY: usize = 64;
    let Ok(layout) = RingLayout::new::<u64>(CAPACITY, TypeTag::of::<u64>("fuzz")) else {
        return;
    };
    let region = Arc::new(HeapRegion::new(layout.total_size()));
    let n = data.len().min(region.len());
    // SAFETY: the region is `region.len()` bytes, live and not yet shared with
    // any ring; `n` is at most that, and `data` is a separate allocation.
    unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), region.as_ptr(), n) };
    let mut attached = false;
    if let Ok(mut r) = layout.reader::<u64>(region.clone()) {
        attached = true;
        let mut popped = 0usize;
        for _ in 0..CAPACITY + 16 {
            if let Ok(ready) = r.slots() {
                assert!(
                    ready <= CAPACITY,
                    "{ready} items ready in a ring of {CAPACITY}"
                );
            }
            if r.pop().is_err() {
                break;
            }
            popped += 1;
        }
        assert!(
            popped <= CAPACITY,
            "{popped} pops from a ring of {CAPACITY}"
        );
    }
    if let Ok(mut w) = layout.writer::<u64>(region) {
        attached = true;
        let mut pushed = 0usize;
        for i in 0..(CAPACITY + 16) as u64 {
            if let Ok(free) = w.slots() {
                assert!(
                    free <= CAPACITY,
                    "{free} free slots in a ring of {CAPACITY}"
                );
            }
            if w.push(i).is_err() {
                break;
            }
            pushed += 1;
        }
        assert!(
            pushed <= CAPACITY,
            "{pushed} pushes into a ring of {CAPACITY}"
        );
    }
    if attached {
        accept(3);
    }
}

/// Valid inputs for each target (the seeds of the corpus).
pub fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let mut out = Vec::new();
    let config = Config::new(1024).type_name("fuzz-seed");
    for role in [Role::Producer, Role::Consumer] {
        if let Ok(h) = Hello::new::<u64>(role, &config) {
            out.push(("hello", bytemuck::bytes_of(&h).to_vec()));
        }
    }
    let mut w = Welcome::zeroed();
    w.magic = u64::from_le_bytes(*b"SHMRWLCM");
    w.version = crate::handshake::PROTOCOL_VERSION;
    w.capacity = 1024;
    w.elem_size = 8;
    w.elem_align = 8;
    w.signal = 1;
    w.nfds = 3;
    out.push(("welcome", bytemuck::bytes_of(&w).to_vec()));
    w.status = 1;
    w.nfds = 0;
    w.reason[..7].copy_from_slice(b"refused");
    out.push(("welcome", bytemuck::bytes_of(&w).to_vec()));
    // A type mismatch (the listener's type in the size, alignment and
    // reason) and incompatible settings.
    w.status = 2;
    w.reason = [0; 128];
    w.reason[..3].copy_from_slice(b"u32");
    w.elem_size = 4;
    w.elem_align = 4;
    out.push(("welcome", bytemuck::bytes_of(&w).to_vec()));
    w.status = 3;
    out.push(("welcome", bytemuck::bytes_of(&w).to_vec()));
    for kind in [Kind::Frame, Kind::Caps, Kind::Segment, Kind::Eos, Kind::Gap] {
        let mut d = Descriptor::zeroed();
        d.kind = kind as u32;
        d.slot = 1;
        d.size = 100;
        let mut bytes = [8u32.to_le_bytes(), 4096u32.to_le_bytes()].concat();
        bytes.extend_from_slice(bytemuck::bytes_of(&d));
        out.push(("descriptor", bytes));
    }
    // An arena switch to 8 slots of 64 KiB.
    let mut d = Descriptor::zeroed();
    d.kind = Kind::Arena as u32;
    d.args[0] = 8;
    d.args[1] = 64 << 10;
    let mut bytes = [16u32.to_le_bytes(), 4096u32.to_le_bytes()].concat();
    bytes.extend_from_slice(bytemuck::bytes_of(&d));
    out.push(("descriptor", bytes));
    // An honest ring's memory after a few pushes.
    if let Ok(layout) = RingLayout::new::<u64>(64, TypeTag::of::<u64>("fuzz")) {
        let region = Arc::new(HeapRegion::new(layout.total_size()));
        if let Ok((mut w, _r)) = layout.init::<u64>(region.clone()) {
            for i in 0..5 {
                let _ = w.push(i);
            }
            // SAFETY: the region is live for this borrow and `len()` bytes
            // long; nothing writes it meanwhile (both ends are idle here).
            let bytes = unsafe { std::slice::from_raw_parts(region.as_ptr(), region.len()) };
            out.push(("ring_header", bytes.to_vec()));
        }
    }
    out
}

/// xorshift64*: deterministic, so a failure reproduces.
pub struct Rng(pub u64);

impl Rng {
    /// The next pseudo-random number.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// A number in `0..n` (0 if `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }
}

/// Mutates `input` in place: bit flips, runs of boundary bytes (0, 1,
/// 0x7f, 0x80, 0xfe, 0xff), truncation, extension, random bytes.
pub fn mutate(rng: &mut Rng, input: &mut Vec<u8>) {
    const INTERESTING: [u8; 6] = [0, 1, 0x7f, 0x80, 0xfe, 0xff];
    for _ in 0..=rng.below(4) {
        match rng.below(5) {
            0 if !input.is_empty() => {
                let i = rng.below(input.len());
                input[i] ^= 1 << rng.below(8);
            }
            1 if !input.is_empty() => {
                // A run of boundary bytes: lengths, counts and indices near
                // 0, i32::MAX and u64::MAX.
                let i = rng.below(input.len());
                let b = INTERESTING[rng.below(INTERESTING.len())];
                let end = (i + 1 + rng.below(8)).min(input.len());
                input[i..end].fill(b);
            }
            2 => {
                let n = rng.below(input.len() + 1);
                input.truncate(n);
            }
            3 => {
                for _ in 0..rng.below(16) {
                    input.push(rng.next_u64() as u8);
                }
            }
            _ if !input.is_empty() => {
                let i = rng.below(input.len());
                input[i] = rng.next_u64() as u8;
            }
            _ => {}
        }
    }
}
