//! Bad input from a hostile or broken peer: every case ends in a clear `Error`,
//! never a panic, and leaks no fd.

mod common;

use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

use bytemuck::Zeroable;
use shmring::channel::ChannelFds;
use shmring::handshake::{self, Hello, Welcome};
use shmring::segment::{Access, Segment};
use shmring::{Config, ElemType, Error, Peer, SignalKind};

fn cfg() -> Config {
    Config::new(64)
        .type_name("u64")
        .handshake_timeout(Duration::from_secs(2))
}

fn memfd(len: u64, seals: &[memfd::FileSeal]) -> OwnedFd {
    let m = memfd::MemfdOptions::default()
        .allow_sealing(true)
        .create("evil")
        .expect("memfd");
    m.as_file().set_len(len).expect("len");
    m.add_seals(seals).expect("seal");
    m.into_file().into()
}

/// Replaces the segment of a fresh channel with `segment`.
fn with_segment(segment: OwnedFd) -> ChannelFds {
    let mut fds = ChannelFds::create::<u64>(&cfg()).expect("create");
    fds.segment = segment;
    fds
}

fn link() -> OwnedFd {
    let (a, _b) = std::os::unix::net::UnixStream::pair().expect("pair");
    a.into()
}

#[test]
fn memfd_without_seals_is_refused() {
    let e = with_segment(memfd(1 << 20, &[]))
        .into_consumer::<u64>(link(), Duration::ZERO)
        .expect_err("unsealed accepted");
    assert!(matches!(e, Error::BadSegment(_)), "{e}");
}

#[test]
fn memfd_with_only_one_seal_is_refused() {
    let e = with_segment(memfd(1 << 20, &[memfd::FileSeal::SealShrink]))
        .into_consumer::<u64>(link(), Duration::ZERO)
        .expect_err("half-sealed accepted");
    assert!(matches!(e, Error::BadSegment(_)), "{e}");
}

/// A memfd sealed against writes: its shared writable mapping fails, which
/// must be a clear error for both ends (not a SIGSEGV on the first write).
#[test]
fn memfd_sealed_write_is_refused() {
    let seals = [
        memfd::FileSeal::SealShrink,
        memfd::FileSeal::SealGrow,
        memfd::FileSeal::SealWrite,
    ];
    let e = with_segment(memfd(1 << 20, &seals))
        .into_producer::<u64>(link(), Duration::ZERO)
        .expect_err("write-sealed accepted by the producer");
    assert!(matches!(e, Error::BadSegment(_) | Error::Io { .. }), "{e}");
    let e = with_segment(memfd(1 << 20, &seals))
        .into_consumer::<u64>(link(), Duration::ZERO)
        .expect_err("write-sealed accepted by the consumer");
    assert!(matches!(e, Error::BadSegment(_) | Error::Io { .. }), "{e}");
}

#[test]
fn memfd_too_short_is_refused() {
    let seals = [memfd::FileSeal::SealShrink, memfd::FileSeal::SealGrow];
    let e = with_segment(memfd(100, &seals))
        .into_producer::<u64>(link(), Duration::ZERO)
        .expect_err("short accepted");
    assert!(
        matches!(e, Error::BadSegment(ref m) if m.contains("bytes")),
        "{e}"
    );
}

#[test]
fn plain_file_pipe_and_socket_are_not_memfds() {
    let file: OwnedFd = tempfile_fd();
    let e = Segment::from_fd(file, 4096).expect_err("file accepted");
    assert!(
        matches!(e, Error::BadSegment(ref m) if m.contains("memfd")),
        "{e}"
    );
    let (r, _w) = nix::unistd::pipe().expect("pipe");
    let e = Segment::from_fd(r, 4096).expect_err("pipe accepted");
    assert!(matches!(e, Error::BadSegment(_)), "{e}");
    let e = Segment::from_fd(link(), 4096).expect_err("socket accepted");
    assert!(matches!(e, Error::BadSegment(_)), "{e}");
}

fn tempfile_fd() -> OwnedFd {
    let path = common::sock_path("file").with_file_name("plain");
    let f = std::fs::File::options()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(&path)
        .expect("file");
    f.set_len(1 << 20).expect("len");
    let _ = std::fs::remove_file(&path);
    f.into()
}

#[test]
fn sealed_segment_cannot_be_resized_by_anyone() {
    let fds = ChannelFds::create::<u64>(&cfg()).expect("create");
    let f = std::fs::File::from(fds.segment.try_clone().expect("dup"));
    let len = f.metadata().expect("stat").len();
    assert!(f.set_len(1).is_err(), "shrink allowed");
    assert!(f.set_len(len * 2).is_err(), "grow allowed");
}

/// Maps the channel's segment as a hostile peer would and lets `f` scribble on it.
fn scribble(fds: &ChannelFds, f: impl FnOnce(*mut u8)) {
    let seg = Segment::from_fd(fds.segment.try_clone().expect("dup"), 4096).expect("segment");
    let map = seg.map(4096, Access::ReadWrite).expect("map");
    f(map.as_ptr());
}

fn header_case(f: impl FnOnce(*mut u8)) -> Error {
    let fds = ChannelFds::create::<u64>(&cfg()).expect("create");
    scribble(&fds, f);
    fds.into_consumer::<u64>(link(), Duration::ZERO)
        .expect_err("corrupt header accepted")
}

#[test]
fn header_with_wrong_magic_version_tag_or_capacity_is_refused() {
    // SAFETY (all cases): writes inside the first page of a 4096+ byte mapping.
    type Patch = Box<dyn FnOnce(*mut u8)>;
    let cases: [(&str, Patch); 5] = [
        ("magic", Box::new(|p| unsafe { *p ^= 0xff })),
        ("version", Box::new(|p| unsafe { *p.add(8) = 7 })),
        ("size", Box::new(|p| unsafe { *p.add(12) = 4 })),
        ("capacity", Box::new(|p| unsafe { *p.add(24) = 128 })),
        ("type name", Box::new(|p| unsafe { *p.add(32) ^= 1 })),
    ];
    for (what, f) in cases {
        let e = header_case(f);
        assert!(matches!(e, Error::HeaderMismatch(_)), "{what}: {e}");
    }
}

#[test]
fn wrong_element_type_is_refused() {
    let fds = ChannelFds::create::<u64>(&cfg()).expect("create");
    let e = fds
        .into_consumer::<[u32; 3]>(link(), Duration::ZERO)
        .expect_err("accepted");
    assert!(matches!(e, Error::InvalidArgument(_)), "{e}");
}

#[test]
fn peer_indices_out_of_range_are_corrupt() {
    // Producer's write index: backwards, beyond capacity, u64::MAX.
    for (before, bad) in [(10u64, 3u64), (0, 65), (0, u64::MAX)] {
        let fds = ChannelFds::create::<u64>(&cfg()).expect("create");
        let evil = fds.try_clone().expect("clone");
        let mut rx = fds
            .into_consumer::<u64>(link(), Duration::ZERO)
            .expect("rx");
        scribble(&evil, |p| {
            // SAFETY: offset 128 is the producer line, inside the mapping.
            unsafe {
                (*(p.add(128).cast::<std::sync::atomic::AtomicU64>()))
                    .store(before, std::sync::atomic::Ordering::Release)
            };
        });
        for _ in 0..before {
            rx.try_pop().expect("valid item");
        }
        scribble(&evil, |p| {
            // SAFETY: as above.
            unsafe {
                (*(p.add(128).cast::<std::sync::atomic::AtomicU64>()))
                    .store(bad, std::sync::atomic::Ordering::Release)
            };
        });
        let e = rx.try_pop().expect_err("corrupt index accepted");
        assert!(matches!(e, Error::Corrupt(_)), "{before}->{bad}: {e}");
        // Poisoned: blocking calls fail at once too.
        let e = rx
            .pop_blocking(Some(Duration::from_secs(5)))
            .expect_err("poisoned");
        assert!(matches!(e, Error::Corrupt(_)), "{e}");
    }
    // Consumer's read index beyond the producer's write index.
    let fds = ChannelFds::create::<u64>(&cfg()).expect("create");
    let evil = fds.try_clone().expect("clone");
    let mut tx = fds
        .into_producer::<u64>(link(), Duration::ZERO)
        .expect("tx");
    for i in 0..64 {
        tx.try_push(i).expect("push");
    }
    scribble(&evil, |p| {
        // SAFETY: offset 256 is the consumer line, inside the mapping.
        unsafe {
            (*(p.add(256).cast::<std::sync::atomic::AtomicU64>()))
                .store(1000, std::sync::atomic::Ordering::Release)
        };
    });
    let e = tx.try_push(1).expect_err("corrupt index accepted");
    assert!(matches!(e, Error::Corrupt(_)), "{e}");
}

#[test]
fn signal_fd_that_is_not_an_eventfd_is_refused() {
    let mut fds = ChannelFds::create::<u64>(&cfg().signal(SignalKind::EventFd)).expect("create");
    fds.data = vec![memfd(4096, &[])];
    let e = fds
        .into_consumer::<u64>(link(), Duration::ZERO)
        .expect_err("accepted");
    assert!(matches!(e, Error::Protocol(_)), "{e}");
    // A socket signal: the peer's side gets a memfd, or a datagram socket.
    for bad in [
        memfd(4096, &[]),
        std::os::unix::net::UnixDatagram::pair()
            .expect("pair")
            .0
            .into(),
    ] {
        let mut fds = ChannelFds::create::<u64>(&cfg())
            .expect("create")
            .peer_copy()
            .expect("copy");
        fds.data = vec![bad];
        let e = fds
            .into_consumer::<u64>(link(), Duration::ZERO)
            .expect_err("accepted");
        assert!(matches!(e, Error::Protocol(_)), "{e}");
    }
    let mut fds = ChannelFds::create::<u64>(&cfg().signal(SignalKind::Pipe)).expect("create");
    fds.space.swap(0, 1);
    let e = fds
        .into_consumer::<u64>(link(), Duration::ZERO)
        .expect_err("accepted");
    assert!(matches!(e, Error::Protocol(_)), "{e}");
}

/// A fake listener: accepts one client, reads its hello, answers with `reply`
/// and `fds`. Returns the client's result.
fn fake_listener(tag: &str, reply: &[u8], fds: Vec<OwnedFd>) -> Error {
    let path = common::sock_path(tag);
    let listener = handshake::Listener::bind(&path, &Default::default()).expect("bind");
    let p2 = path.clone();
    let client =
        std::thread::spawn(move || handshake::connect_consumer::<u64>(&p2, &cfg()).map(|_| ()));
    let conn = listener
        .accept(Some(Duration::from_secs(5)))
        .expect("accept");
    let mut buf = [0u8; 512];
    let (n, _) = handshake::recv_with_fds(
        conn.fd(),
        &mut buf,
        0,
        Instant::now() + Duration::from_secs(5),
    )
    .expect("hello");
    Hello::parse(&buf[..n]).expect("a valid hello from our client");
    let borrowed: Vec<_> = fds.iter().map(|f| f.as_fd()).collect();
    handshake::send_with_fds(conn.fd(), reply, &borrowed).expect("send");
    drop(fds);
    let r = client.join().expect("join");
    drop(conn);
    r.expect_err("client accepted a bad welcome")
}

fn good_welcome(fds: &ChannelFds) -> Welcome {
    let mut w = Welcome::zeroed();
    w.magic = u64::from_le_bytes(*b"SHMRWLCM");
    w.version = handshake::PROTOCOL_VERSION;
    w.capacity = fds.capacity as u64;
    w.name_hash = fds.tag.name_hash;
    w.elem_size = 8;
    w.elem_align = 8;
    w.signal = fds.signal.to_wire();
    w.nfds = fds.fds().len() as u32;
    w
}

fn owned(fds: &ChannelFds) -> Vec<OwnedFd> {
    fds.fds()
        .iter()
        .map(|f| f.try_clone_to_owned().expect("dup"))
        .collect()
}

/// Entry point of the re-executed child (fd counts are only meaningful in a
/// process that runs one test); does nothing in a normal test run.
#[test]
fn child_entry() {
    match common::role().as_deref() {
        Some("welcome-fds") => welcome_fds_case(),
        Some("hello-fds") => hello_fds_case(),
        Some("baseline") => baseline_case(),
        Some(other) => panic!("unknown role {other}"),
        None => {}
    }
}

fn isolated(role: &str) {
    let out = common::finish(common::spawn_child("child_entry", role, &[]));
    assert!(out.contains("1 passed"), "child ran no test: {out}");
}

/// Every in-process hostile case above, run twice in a process of its own:
/// after the second round the fd count and the number of memory mappings are
/// what they were after the first (which absorbs one-time caches), so no
/// refused peer leaves an fd or a mapping behind.
#[test]
fn hostile_cases_leave_no_fd_or_mapping_behind() {
    isolated("baseline");
}

fn mapping_count() -> usize {
    std::fs::read_to_string("/proc/self/maps").map_or(0, |m| m.lines().count())
}

fn baseline_case() {
    let all = || {
        memfd_without_seals_is_refused();
        memfd_with_only_one_seal_is_refused();
        memfd_sealed_write_is_refused();
        memfd_too_short_is_refused();
        plain_file_pipe_and_socket_are_not_memfds();
        sealed_segment_cannot_be_resized_by_anyone();
        header_with_wrong_magic_version_tag_or_capacity_is_refused();
        wrong_element_type_is_refused();
        peer_indices_out_of_range_are_corrupt();
        signal_fd_that_is_not_an_eventfd_is_refused();
        malformed_welcomes_are_refused();
        capacity_over_the_clients_limit_is_refused();
        garbage_hello_is_refused_with_a_reason();
        type_mismatch_is_refused_on_both_sides();
    };
    all();
    let (fds, maps) = (common::fd_count(), mapping_count());
    all();
    assert_eq!(common::fd_count(), fds, "fds left behind");
    assert_eq!(mapping_count(), maps, "mappings left behind");
}

#[test]
fn welcome_with_too_few_or_too_many_fds_is_refused() {
    isolated("welcome-fds");
}

#[test]
fn hello_with_fds_attached_gets_them_closed() {
    isolated("hello-fds");
}

fn welcome_fds_case() {
    let baseline = common::fd_count();
    let fds = ChannelFds::create::<u64>(&cfg()).expect("create");
    let w = good_welcome(&fds);
    let mut few = owned(&fds);
    few.pop();
    let e = fake_listener("few", bytemuck::bytes_of(&w), few);
    assert!(matches!(e, Error::Protocol(_)), "{e}");
    let mut many = owned(&fds);
    many.push(memfd(4096, &[]));
    let e = fake_listener("many", bytemuck::bytes_of(&w), many);
    assert!(matches!(e, Error::Protocol(_)), "{e}");
    let e = fake_listener("none", bytemuck::bytes_of(&w), Vec::new());
    assert!(matches!(e, Error::Protocol(_)), "{e}");
    // 250 fds: the control message is truncated, every fd is closed.
    let flood: Vec<OwnedFd> = (0..250)
        .map(|_| fds.segment.try_clone().expect("dup"))
        .collect();
    let e = fake_listener("flood", bytemuck::bytes_of(&w), flood);
    assert!(
        matches!(e, Error::Protocol(ref m) if m.contains("truncated")),
        "{e}"
    );
    drop(fds);
    assert_eq!(common::fd_count(), baseline, "fds leaked");
}

#[test]
fn malformed_welcomes_are_refused() {
    let fds = ChannelFds::create::<u64>(&cfg()).expect("create");
    let good = good_welcome(&fds);
    let mut bad_magic = good;
    bad_magic.magic ^= 1;
    let mut bad_version = good;
    bad_version.version = 2;
    let mut bad_signal = good;
    bad_signal.signal = 9;
    let mut bad_capacity = good;
    bad_capacity.capacity = 63;
    let mut bad_type = good;
    bad_type.elem_size = 4;
    let mut bad_status = good;
    bad_status.status = 5;
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("magic", bytemuck::bytes_of(&bad_magic).to_vec()),
        ("version", bytemuck::bytes_of(&bad_version).to_vec()),
        ("signal", bytemuck::bytes_of(&bad_signal).to_vec()),
        ("capacity", bytemuck::bytes_of(&bad_capacity).to_vec()),
        ("type", bytemuck::bytes_of(&bad_type).to_vec()),
        ("status", bytemuck::bytes_of(&bad_status).to_vec()),
        ("short", bytemuck::bytes_of(&good)[..40].to_vec()),
        ("long", [bytemuck::bytes_of(&good), &[0u8; 64]].concat()),
        ("garbage", vec![0xA5; 176]),
        ("oversized", vec![0x5A; 64 * 1024]),
    ];
    for (what, bytes) in cases {
        let e = fake_listener(what, &bytes, owned(&fds));
        assert!(matches!(e, Error::Protocol(_)), "{what}: {e}");
    }
    // A zero-length message reads as the end of the connection (recvmsg
    // returns 0 on a SOCK_SEQPACKET socket either way): refused as such.
    let e = fake_listener("empty", &[], owned(&fds));
    assert!(
        matches!(e, Error::Protocol(_) | Error::Disconnected),
        "empty: {e}"
    );
}

#[test]
fn capacity_over_the_clients_limit_is_refused() {
    let big = ChannelFds::create::<u64>(&Config::new(1 << 20).type_name("u64")).expect("create");
    let w = good_welcome(&big);
    let path = common::sock_path("big");
    let listener = handshake::Listener::bind(&path, &Default::default()).expect("bind");
    let p2 = path.clone();
    let client = std::thread::spawn(move || {
        let mut c = cfg();
        c.max_segment = 1 << 16;
        handshake::connect_consumer::<u64>(&p2, &c).map(|_| ())
    });
    let conn = listener
        .accept(Some(Duration::from_secs(5)))
        .expect("accept");
    let mut buf = [0u8; 512];
    handshake::recv_with_fds(
        conn.fd(),
        &mut buf,
        0,
        Instant::now() + Duration::from_secs(5),
    )
    .expect("hello");
    handshake::send_with_fds(conn.fd(), bytemuck::bytes_of(&w), &big.fds()).expect("send");
    let e = client.join().expect("join").expect_err("accepted");
    assert!(
        matches!(e, Error::Protocol(ref m) if m.contains("accepts")),
        "{e}"
    );
}

#[test]
fn garbage_hello_is_refused_with_a_reason() {
    let path = common::sock_path("hello");
    let listener = handshake::Listener::bind(&path, &Default::default()).expect("bind");
    let sock = handshake::connect_socket(&path, Duration::from_secs(5)).expect("connect");
    handshake::send_with_fds(sock.as_fd(), &[0x42; 96], &[]).expect("send");
    let conn = listener
        .accept(Some(Duration::from_secs(5)))
        .expect("accept");
    let e = conn
        .serve_producer::<u64>(&cfg())
        .expect_err("served garbage");
    assert!(
        matches!(e, Error::Protocol(ref m) if m.contains("magic")),
        "{e}"
    );
    let mut buf = [0u8; 512];
    let (n, _) = handshake::recv_with_fds(
        sock.as_fd(),
        &mut buf,
        0,
        Instant::now() + Duration::from_secs(5),
    )
    .expect("refusal");
    let e = Welcome::parse(&buf[..n]).expect_err("refusal parsed as welcome");
    assert!(
        matches!(e, Error::PeerRefused(ref m) if m.contains("magic")),
        "{e}"
    );
}

#[test]
fn type_mismatch_is_refused_on_both_sides() {
    let path = common::sock_path("type");
    let listener = handshake::Listener::bind(&path, &Default::default()).expect("bind");
    let p2 = path.clone();
    let client =
        std::thread::spawn(move || handshake::connect_consumer::<[u8; 8]>(&p2, &cfg()).map(|_| ()));
    let conn = listener
        .accept(Some(Duration::from_secs(5)))
        .expect("accept");
    let e = conn.serve_producer::<u64>(&cfg()).expect_err("served");
    let u64_type = ElemType {
        name: "u64".into(),
        size: 8,
        align: 8,
    };
    let bytes_type = ElemType {
        name: "u64".into(),
        size: 8,
        align: 1,
    };
    match &e {
        Error::TypeMismatch {
            peer: Peer::Process { pid, .. },
            ours,
            theirs,
        } => {
            assert_eq!(*pid, std::process::id() as i32);
            assert_eq!((ours, theirs), (&u64_type, &bytes_type));
        }
        e => panic!("listener: {e}"),
    }
    let e = client.join().expect("join").expect_err("client accepted");
    match &e {
        Error::TypeMismatch {
            peer: Peer::Listener(p),
            ours,
            theirs,
        } => {
            assert_eq!(p, &path);
            assert_eq!((ours, theirs), (&bytes_type, &u64_type));
        }
        e => panic!("client: {e}"),
    }
    let msg = e.to_string();
    assert!(msg.contains(&path.display().to_string()), "{msg}");
    assert!(msg.contains("align 1") && msg.contains("align 8"), "{msg}");
}

#[test]
fn silent_client_times_out_the_handshake() {
    let path = common::sock_path("silent");
    let listener = handshake::Listener::bind(&path, &Default::default()).expect("bind");
    let _sock = handshake::connect_socket(&path, Duration::from_secs(5)).expect("connect");
    let conn = listener
        .accept(Some(Duration::from_secs(5)))
        .expect("accept");
    let t = Instant::now();
    let e = conn
        .serve_producer::<u64>(&cfg().handshake_timeout(Duration::from_millis(300)))
        .expect_err("served");
    assert!(
        matches!(e, Error::HandshakeTimeout { peer: Peer::Process { .. }, after } if after == Duration::from_millis(300)),
        "{e}"
    );
    assert!(t.elapsed() < Duration::from_secs(2));
}

fn hello_fds_case() {
    let baseline = common::fd_count();
    let path = common::sock_path("hellofds");
    let listener = handshake::Listener::bind(&path, &Default::default()).expect("bind");
    let sock = handshake::connect_socket(&path, Duration::from_secs(5)).expect("connect");
    let hello = Hello::new::<u64>(handshake::Role::Consumer, &cfg()).expect("hello");
    let extra = memfd(4096, &[]);
    handshake::send_with_fds(sock.as_fd(), bytemuck::bytes_of(&hello), &[extra.as_fd()])
        .expect("send");
    drop(extra);
    let conn = listener
        .accept(Some(Duration::from_secs(5)))
        .expect("accept");
    let e = conn.serve_producer::<u64>(&cfg()).expect_err("served");
    assert!(matches!(e, Error::Protocol(_)), "{e}");
    drop(sock);
    drop(listener);
    assert_eq!(common::fd_count(), baseline, "fds leaked");
}

#[test]
fn socket_file_has_mode_0600_and_uid_filter_refuses() {
    use std::os::unix::fs::PermissionsExt;
    let path = common::sock_path("perms");
    let listener = handshake::Listener::bind(&path, &Default::default()).expect("bind");
    let mode = std::fs::metadata(&path).expect("stat").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    drop(listener);
    assert!(!path.exists(), "socket file left behind");
    let me = nix::unistd::getuid().as_raw();
    let opts = handshake::ListenOptions {
        mode: 0o660,
        allowed_uids: Some(vec![me.wrapping_add(1)]),
        ..Default::default()
    };
    let listener = handshake::Listener::bind(&path, &opts).expect("bind");
    assert_eq!(
        std::fs::metadata(&path).expect("stat").permissions().mode() & 0o777,
        0o660
    );
    let p2 = path.clone();
    let client =
        std::thread::spawn(move || handshake::connect_consumer::<u64>(&p2, &cfg()).map(|_| ()));
    let e = listener
        .accept(Some(Duration::from_secs(5)))
        .expect_err("disallowed uid accepted");
    assert!(
        matches!(e, Error::PeerRefused(ref m) if m.contains("uid")),
        "{e}"
    );
    let e = client.join().expect("join").expect_err("client served");
    assert!(matches!(e, Error::PeerRefused(_)), "{e}");
}
