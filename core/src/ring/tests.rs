use std::collections::VecDeque;

use proptest::prelude::*;

use std::mem::size_of;
use std::ptr;
use std::sync::Arc;

use bytemuck::Pod;

use super::header::{ConsumerLine, Header, ProducerLine, CONSUMER_OFFSET, PRODUCER_OFFSET};
use super::*;
use crate::sync::Ordering;
use crate::Error;

fn ring<T: Pod>(capacity: usize) -> (Writer<T>, Reader<T>, Arc<HeapRegion>) {
    let layout = RingLayout::new::<T>(capacity, TypeTag::of::<T>("test")).expect("layout");
    let region = Arc::new(HeapRegion::new(layout.total_size()));
    let (w, r) = layout.init::<T>(region.clone()).expect("init");
    (w, r, region)
}

#[test]
fn empty_then_full_then_wraps() {
    let (mut w, mut r, _m) = ring::<u32>(4);
    assert!(matches!(r.pop(), Err(Error::Empty)));
    for i in 0..4 {
        w.push(i).expect("room");
    }
    assert!(matches!(w.push(99), Err(Error::Full)));
    assert_eq!(w.slots().expect("slots"), 0);
    assert_eq!(r.slots().expect("slots"), 4);
    // Drain and refill many times so indices wrap around the slot array.
    let mut next_out = 0;
    for next_in in 4..1004 {
        assert_eq!(r.pop().expect("item"), next_out);
        next_out += 1;
        w.push(next_in).expect("room after pop");
    }
    let mut out = [0u32; 8];
    assert_eq!(r.pop_slice(&mut out).expect("pop"), 4);
    assert_eq!(
        &out[..4],
        &[next_out, next_out + 1, next_out + 2, next_out + 3]
    );
    assert!(matches!(r.pop(), Err(Error::Empty)));
}

#[test]
fn capacity_rounds_up_to_power_of_two() {
    let (w, r, _m) = ring::<u64>(5);
    assert_eq!(w.capacity(), 8);
    assert_eq!(r.capacity(), 8);
}

#[test]
fn chunk_wraps_into_two_slices() {
    let (mut w, mut r, _m) = ring::<u16>(8);
    w.push_slice(&[0; 6]).expect("push");
    let mut sink = [0u16; 6];
    r.pop_slice(&mut sink).expect("pop");
    // write index at 6: a chunk of 5 is 2 slots at the end and 3 at the start.
    let mut c = w.write_chunk(5).expect("chunk");
    // SAFETY: both ends are in this test; the reader does not run meanwhile.
    let (a, b) = unsafe { c.as_mut_slices() };
    assert_eq!((a.len(), b.len()), (2, 3));
    a.copy_from_slice(&[1, 2]);
    b.copy_from_slice(&[3, 4, 5]);
    c.commit(4);
    let rc = r.read_chunk(10).expect("chunk");
    assert_eq!(rc.len(), 4);
    // SAFETY: as above, the writer does not run while the slices live.
    let (a, b) = unsafe { rc.as_slices() };
    assert_eq!((a, b), (&[1u16, 2][..], &[3u16, 4][..]));
    rc.release(3);
    assert_eq!(r.pop().expect("last"), 4);
}

/// The copying chunk API across the wrap: `write` at an offset, `set`,
/// `fill_from_iter`, then `read` at an offset, `get` and `iter` see the same
/// items in order.
#[test]
fn copying_chunks_cross_the_wrap() {
    let (mut w, mut r, _m) = ring::<u16>(8);
    w.push_slice(&[0; 6]).expect("push");
    let mut sink = [0u16; 6];
    r.pop_slice(&mut sink).expect("pop");
    // write index at 6: slots 6, 7, 0, 1, 2.
    let mut c = w.write_chunk(5).expect("chunk");
    assert_eq!(c.fill_from_iter(10..13), 3);
    c.write(1, &[21, 22, 23]);
    c.set(4, 24);
    c.commit(5);
    let rc = r.read_chunk(8).expect("chunk");
    assert_eq!(rc.len(), 5);
    assert_eq!(rc.iter().len(), 5);
    assert_eq!(rc.iter().collect::<Vec<_>>(), [10, 21, 22, 23, 24]);
    let mut out = [0u16; 3];
    rc.read(1, &mut out);
    assert_eq!(out, [21, 22, 23]);
    assert_eq!(rc.get(4), 24);
    rc.release_all();
    // A chunk larger than the iterator: only what it yields is written.
    let mut c = w.write_chunk(8).expect("chunk");
    assert_eq!(c.len(), 8);
    assert_eq!(c.fill_from_iter([1u16, 2]), 2);
    c.commit(2);
    assert_eq!(r.pop_slice(&mut sink).expect("pop"), 2);
    assert_eq!(&sink[..2], &[1, 2]);
}

#[test]
#[should_panic(expected = "read of 2 items at 3 from a chunk of 4")]
fn read_past_the_chunk_panics() {
    let (mut w, mut r, _m) = ring::<u32>(8);
    w.push_slice(&[1, 2, 3, 4]).expect("push");
    let c = r.read_chunk(8).expect("chunk");
    c.read(3, &mut [0; 2]);
}

#[test]
#[should_panic(expected = "write of 1 items at 4 into a chunk of 4")]
fn write_past_the_chunk_panics() {
    let (mut w, _r, _m) = ring::<u32>(4);
    let mut c = w.write_chunk(8).expect("chunk");
    c.set(4, 1);
}

/// Volatile copies of every element size and alignment class (unit of 1, 2,
/// 4 and 8 bytes, runs starting on and off an 8-byte boundary, wrapping):
/// what `push_slice` stores, `pop_slice` loads back unchanged.
#[test]
fn copies_of_every_unit_width_round_trip() {
    fn check<T: Pod + PartialEq + std::fmt::Debug>(make: impl Fn(u32) -> T) {
        let (mut w, mut r, _m) = ring::<T>(16);
        let mut n = 0u32;
        let mut out = [T::zeroed(); 16];
        for round in 0..40usize {
            let k = round % 11 + 1;
            let items: Vec<T> = (0..k as u32).map(|i| make(n + i)).collect();
            assert_eq!(w.push_slice(&items).expect("push"), k);
            let got = r.pop_slice(&mut out[..k]).expect("pop");
            assert_eq!(got, k);
            assert_eq!(&out[..k], &items[..], "round {round}");
            n += k as u32;
        }
    }
    check(|n| n as u8);
    check(|n| [n as u8, (n >> 8) as u8, 3u8]);
    check(|n| n as u16);
    check(|n| [n as u16, 7, !(n as u16)]);
    check(|n| n);
    check(|n| [n, !n, 5]);
    check(|n| n as u64 * 0x0101_0101_0101);
    check(|n| [n as u8; 13]);
    check(|n| Big {
        a: [n as u64, 1, 2],
        b: [n as f32; 4],
        c: [n, !n],
    });
}

#[test]
fn uncommitted_chunk_publishes_nothing() {
    let (mut w, mut r, _m) = ring::<u8>(4);
    {
        let mut c = w.write_chunk(4).expect("chunk");
        c.write(0, &[7; 4]);
    }
    assert!(matches!(r.pop(), Err(Error::Empty)));
    let c = r.read_chunk(4).expect("chunk");
    assert!(c.is_empty());
}

#[derive(Debug, Clone, Copy, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C)]
struct Big {
    a: [u64; 3],
    b: [f32; 4],
    c: [u32; 2],
}

fn roundtrip<T: Pod + PartialEq + std::fmt::Debug>(make: impl Fn(u32) -> T) {
    let (mut w, mut r, _m) = ring::<T>(16);
    let mut expect = VecDeque::new();
    let mut n = 0u32;
    for round in 0..200 {
        let k = (round % 7) + 1;
        for _ in 0..k {
            let v = make(n);
            if w.push(v).is_ok() {
                expect.push_back(v);
                n += 1;
            }
        }
        for _ in 0..(round % 5) + 1 {
            match r.pop() {
                Ok(v) => assert_eq!(Some(v), expect.pop_front()),
                Err(Error::Empty) => assert!(expect.is_empty()),
                Err(e) => panic!("{e}"),
            }
        }
    }
}

#[test]
fn odd_element_sizes() {
    assert_eq!(size_of::<Big>(), 48);
    roundtrip(|n| [n as u8, (n >> 8) as u8, 3u8]);
    roundtrip(|n| [n as f32, -(n as f32)]);
    roundtrip(|n| Big {
        a: [n as u64, 1, 2],
        b: [n as f32; 4],
        c: [n, !n],
    });
    roundtrip(|n| n as u8);
}

#[derive(Debug, Clone)]
enum Op {
    Write(usize, usize),
    Read(usize, usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (1usize..=64, 0usize..=64).prop_map(|(n, k)| Op::Write(n, k)),
        (1usize..=64, 0usize..=64).prop_map(|(n, k)| Op::Read(n, k)),
    ]
}

proptest! {
    /// Any interleaving of chunk writes and reads of sizes 1..=capacity behaves
    /// like a bounded FIFO.
    #[test]
    fn chunks_behave_like_a_fifo(cap_log in 0u32..7, ops in proptest::collection::vec(op(), 1..200)) {
        let cap = 1usize << cap_log;
        let (mut w, mut r, _m) = ring::<u32>(cap);
        let mut model: VecDeque<u32> = VecDeque::new();
        let mut next = 0u32;
        for op in ops {
            match op {
                Op::Write(n, k) => {
                    let n = n.min(cap);
                    let mut c = w.write_chunk(n).expect("chunk");
                    prop_assert_eq!(c.len(), n.min(cap - model.len()));
                    let len = c.len();
                    let k = k.min(len);
                    prop_assert_eq!(c.fill_from_iter(next..), len);
                    next += len as u32;
                    next -= (len - k) as u32;
                    for i in 0..k as u32 {
                        model.push_back(next - k as u32 + i);
                    }
                    c.commit(k);
                }
                Op::Read(n, k) => {
                    let c = r.read_chunk(n).expect("chunk");
                    prop_assert_eq!(c.len(), n.min(model.len()));
                    let got: Vec<u32> = c.iter().collect();
                    let want: Vec<u32> = model.iter().take(got.len()).copied().collect();
                    prop_assert_eq!(got, want);
                    let k = k.min(c.len());
                    c.release(k);
                    model.drain(..k);
                }
            }
            prop_assert_eq!(w.slots().expect("slots"), cap - model.len());
            prop_assert_eq!(r.slots().expect("slots"), model.len());
        }
    }
}

#[test]
fn consumer_index_backwards_is_corrupt() {
    let (mut w, mut r, _m) = ring::<u64>(8);
    w.push_slice(&[1, 2, 3]).expect("push");
    r.pop().expect("pop");
    w.slots().expect("refresh read cache");
    // A hostile consumer moves its index backwards.
    r.end.shared.cons().read.store(0, Ordering::Relaxed);
    assert!(matches!(w.slots(), Err(Error::Corrupt(_))));
    assert!(w.is_poisoned());
    assert!(matches!(w.push(4), Err(Error::Corrupt(_))));
}

#[test]
fn consumer_index_beyond_write_is_corrupt() {
    let (mut w, r, _m) = ring::<u64>(8);
    w.push(1).expect("push");
    r.end.shared.cons().read.store(5, Ordering::Relaxed);
    assert!(matches!(w.slots(), Err(Error::Corrupt(_))));
}

#[test]
fn producer_index_beyond_capacity_is_corrupt() {
    for bad in [9u64, 1 << 40, u64::MAX] {
        let (w, mut r, _m) = ring::<u64>(8);
        w.end.shared.prod().write.store(bad, Ordering::Relaxed);
        assert!(matches!(r.pop(), Err(Error::Corrupt(_))), "index {bad}");
        assert!(r.is_poisoned());
        let mut buf = [0u64; 4];
        assert!(matches!(r.pop_slice(&mut buf), Err(Error::Corrupt(_))));
    }
}

#[test]
fn producer_index_backwards_is_corrupt() {
    let (mut w, mut r, _m) = ring::<u64>(8);
    w.push_slice(&[1, 2, 3, 4]).expect("push");
    assert_eq!(r.pop().expect("pop"), 1);
    w.end.shared.prod().write.store(2, Ordering::Relaxed);
    assert!(matches!(r.slots(), Err(Error::Corrupt(_))));
}

fn corrupt_header(f: impl Fn(&mut Header)) -> Error {
    let layout = RingLayout::new::<u64>(8, TypeTag::of::<u64>("t")).expect("layout");
    let region = Arc::new(HeapRegion::new(layout.total_size()));
    drop(layout.init::<u64>(region.clone()).expect("init"));
    // SAFETY: the region is ours, large enough and aligned for the header.
    unsafe {
        let h = region.as_ptr().cast::<Header>();
        let mut v = ptr::read(h);
        f(&mut v);
        ptr::write(h, v);
    }
    match layout.reader::<u64>(region) {
        Err(e) => e,
        Ok(_) => panic!("corrupted header accepted"),
    }
}

#[test]
fn header_mismatches_are_rejected() {
    for (what, e) in [
        ("magic", corrupt_header(|h| h.magic ^= 1)),
        ("version", corrupt_header(|h| h.version = 99)),
        ("size", corrupt_header(|h| h.elem_size = 4)),
        ("align", corrupt_header(|h| h.elem_align = 2)),
        ("name", corrupt_header(|h| h.name_hash ^= 1)),
        ("capacity", corrupt_header(|h| h.capacity = 1 << 50)),
        ("reserved", corrupt_header(|h| h.reserved = 1)),
    ] {
        assert!(matches!(e, Error::HeaderMismatch(_)), "{what}: {e}");
    }
}

#[test]
fn attach_rejects_inconsistent_indices_and_short_regions() {
    let layout = RingLayout::new::<u64>(8, TypeTag::of::<u64>("t")).expect("layout");
    let region = Arc::new(HeapRegion::new(layout.total_size()));
    let (w, r) = layout.init::<u64>(region.clone()).expect("init");
    w.end.shared.prod().write.store(100, Ordering::Relaxed);
    drop((w, r));
    assert!(matches!(
        layout.reader::<u64>(region.clone()),
        Err(Error::Corrupt(_))
    ));
    assert!(matches!(
        layout.writer::<u64>(region),
        Err(Error::Corrupt(_))
    ));
    let short = Arc::new(HeapRegion::new(layout.total_size() - 1));
    assert!(matches!(
        layout.reader::<u64>(short),
        Err(Error::BadSegment(_))
    ));
}

/// Two writers (or readers) over one region in this process would race on the
/// slots from safe code: while an end is attached, attaching another of its
/// kind, or re-initialising the region, is refused and changes nothing; once
/// it is dropped, the end can attach again.
#[test]
fn one_end_of_each_kind_per_region_in_this_process() {
    let layout = RingLayout::new::<u64>(8, TypeTag::of::<u64>("t")).expect("layout");
    let region = Arc::new(HeapRegion::new(layout.total_size()));
    let (mut w, r) = layout.init::<u64>(region.clone()).expect("init");
    w.push(42).expect("push");
    for e in [
        layout.writer::<u64>(region.clone()).err(),
        layout.reader::<u64>(region.clone()).err(),
        layout.init::<u64>(region.clone()).err(),
    ] {
        assert!(matches!(e, Some(Error::InvalidArgument(_))), "{e:?}");
    }
    // The refused init wrote nothing: the item is still there.
    drop(r);
    let mut r = layout.reader::<u64>(region.clone()).expect("reader again");
    assert_eq!(r.pop().expect("pop"), 42);
    assert!(matches!(
        layout.reader::<u64>(region.clone()),
        Err(Error::InvalidArgument(_))
    ));
    drop(w);
    let mut w = layout.writer::<u64>(region.clone()).expect("writer again");
    w.push(43).expect("push");
    assert_eq!(r.pop().expect("pop"), 43);
    // Another region is another ring.
    let other = Arc::new(HeapRegion::new(layout.total_size()));
    drop(layout.init::<u64>(other).expect("init of another region"));
    // The other end with another geometry over the same memory is refused
    // even when the header would let it in (a peer can rewrite the header).
    drop(r);
    let small = RingLayout::new::<u64>(4, TypeTag::of::<u64>("t")).expect("layout");
    // SAFETY: the region is ours, large enough and aligned for the header;
    // no end reads the header after attach.
    unsafe {
        let h = region.as_ptr().cast::<Header>();
        let mut v = ptr::read(h);
        v.capacity = 4;
        ptr::write(h, v);
    }
    assert!(matches!(
        small.reader::<u64>(region.clone()),
        Err(Error::InvalidArgument(_))
    ));
    drop(w);
    drop(
        small
            .reader::<u64>(region)
            .expect("alone, the header decides"),
    );
}

#[test]
fn layout_rejects_bad_arguments() {
    assert!(RingLayout::new::<u64>(0, TypeTag::of::<u64>("")).is_err());
    assert!(RingLayout::new::<u64>(MAX_CAPACITY + 1, TypeTag::of::<u64>("")).is_err());
    assert!(RingLayout::new::<u64>(8, TypeTag::of::<u32>("")).is_err());
    assert!(RingLayout::from_tag(
        8,
        TypeTag {
            size: 0,
            align: 1,
            name_hash: 0
        }
    )
    .is_err());
    assert!(RingLayout::from_tag(
        8,
        TypeTag {
            size: 24,
            align: 3,
            name_hash: 0
        }
    )
    .is_err());
}

#[test]
fn sleep_flags_follow_the_protocol() {
    use std::sync::atomic::AtomicUsize;
    struct Count(AtomicUsize);
    impl Notify for Count {
        fn notify(&self) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }
    let (mut w, mut r, _m) = ring::<u64>(2);
    let wakes = Arc::new(Count(AtomicUsize::new(0)));
    w.set_notify(Some(wakes.clone()));
    // Busy consumer: no flag set, no notification however many items.
    for i in 0..100 {
        w.push(i).expect("push");
        r.pop().expect("pop");
    }
    assert_eq!(wakes.0.load(std::sync::atomic::Ordering::Relaxed), 0);
    // Sleeping consumer: exactly one notification for the next commits.
    assert!(r.prepare_sleep().expect("sleep"));
    w.push(1).expect("push");
    w.push(2).expect("push");
    assert_eq!(wakes.0.load(std::sync::atomic::Ordering::Relaxed), 1);
    // Announcing sleep with items present withdraws at once.
    assert!(!r.prepare_sleep().expect("no sleep"));
    assert_eq!(
        r.end.shared.prod().consumer_sleep.load(Ordering::Relaxed) % 2,
        0
    );
    // An event loop announces a new sleep without cancelling the old one: the
    // producer must wake it again, once per sleep.
    r.pop().expect("pop");
    r.pop().expect("pop");
    assert!(r.prepare_sleep().expect("sleep"));
    w.push(3).expect("push");
    assert_eq!(wakes.0.load(std::sync::atomic::Ordering::Relaxed), 2);
    r.pop().expect("pop");
    assert!(r.prepare_sleep().expect("sleep again"));
    w.push(4).expect("push");
    w.push(5).expect("push");
    assert_eq!(wakes.0.load(std::sync::atomic::Ordering::Relaxed), 3);
}

/// A peer that left indices near `u64::MAX` (consistent with each other)
/// before we attach: refused, so that our `index + n` can never overflow.
#[test]
fn huge_indices_at_attach_are_corrupt() {
    let layout = RingLayout::new::<u64>(8, TypeTag::of::<u64>("t")).expect("layout");
    for start in [u64::MAX, u64::MAX - 8, (1 << 62) + 1] {
        let region = Arc::new(HeapRegion::new(layout.total_size()));
        drop(layout.init::<u64>(region.clone()).expect("init"));
        // SAFETY: the region is ours and holds both index lines at their
        // offsets; no end is attached now.
        unsafe {
            let base = region.as_ptr();
            (*base.add(PRODUCER_OFFSET).cast::<ProducerLine>())
                .write
                .store(start, Ordering::Relaxed);
            (*base.add(CONSUMER_OFFSET).cast::<ConsumerLine>())
                .read
                .store(start - 3, Ordering::Relaxed);
        }
        for e in [
            layout.writer::<u64>(region.clone()).err(),
            layout.reader::<u64>(region.clone()).err(),
        ] {
            assert!(matches!(e, Some(Error::Corrupt(_))), "start {start}: {e:?}");
        }
    }
}

/// The header is read once, at attach, and kept on our side: a peer that
/// rewrites it afterwards (magic, element size, capacity) changes nothing
/// for us; the ring keeps working on the geometry we validated.
#[test]
fn header_flipped_after_attach_is_ignored() {
    let layout = RingLayout::new::<u64>(8, TypeTag::of::<u64>("t")).expect("layout");
    let region = Arc::new(HeapRegion::new(layout.total_size()));
    let (mut w, mut r) = layout.init::<u64>(region.clone()).expect("init");
    w.push(1).expect("push");
    // SAFETY: the region is ours, large enough and aligned for the header;
    // neither end reads the header after attach.
    unsafe {
        let h = region.as_ptr().cast::<Header>();
        let mut v = ptr::read(h);
        v.magic ^= u64::MAX;
        v.capacity = u64::MAX;
        v.elem_size = 1;
        ptr::write(h, v);
    }
    for i in 2..=8 {
        w.push(i).expect("push after the flip");
    }
    assert!(matches!(w.push(9), Err(Error::Full)), "capacity is still 8");
    for i in 1..=8 {
        assert_eq!(r.pop().expect("pop after the flip"), i);
    }
    assert!(matches!(r.pop(), Err(Error::Empty)));
}
