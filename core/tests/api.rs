//! The public API as a newcomer meets it (issue 19): element types told apart
//! by default, errors that name the situation, the path and both sides'
//! values, connect retries that are bounded and fail fast on a wrong path,
//! and non-blocking calls that report a peer that is gone.

mod common;

use std::os::unix::net::UnixListener;
use std::time::Duration;

use shmring::handshake::{self, ListenOptions, NAME_MAX};
use shmring::{channel, Config, ElemType, Error, Peer, Pod, Zeroable};

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
#[bytemuck(crate = "shmring::bytemuck")]
struct Triple {
    a: u64,
    b: u64,
    c: u64,
}

#[repr(transparent)]
#[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
#[bytemuck(crate = "shmring::bytemuck")]
struct AVeryLongElementTypeNameThatGoesOnAndOn<T> {
    inner: T,
}

type Long = AVeryLongElementTypeNameThatGoesOnAndOn<
    AVeryLongElementTypeNameThatGoesOnAndOn<AVeryLongElementTypeNameThatGoesOnAndOn<[u64; 2]>>,
>;

fn cfg() -> Config {
    Config::new(64).handshake_timeout(Duration::from_secs(5))
}

#[test]
fn default_type_names_keep_equal_sized_types_apart_on_both_sides() {
    let path = common::sock_path("api-type");
    let listener = handshake::Listener::bind(&path, &Default::default()).expect("bind");
    let p = path.clone();
    let client = std::thread::spawn(move || {
        handshake::connect_consumer::<Triple>(&p, &cfg())
            .map(|_| ())
            .expect_err("a Triple consumer connected to a [u64; 3] producer")
    });
    let conn = listener
        .accept(Some(Duration::from_secs(5)))
        .expect("accept");
    let arr = ElemType {
        name: "[u64; 3]".into(),
        size: 24,
        align: 8,
    };
    let triple = ElemType {
        name: std::any::type_name::<Triple>().into(),
        size: 24,
        align: 8,
    };
    assert_eq!(triple.name, "api::Triple");
    match conn.serve_producer::<[u64; 3]>(&cfg()).map(|_| ()) {
        Err(Error::TypeMismatch {
            peer: Peer::Process { .. },
            ours,
            theirs,
        }) => assert_eq!((ours, theirs), (arr.clone(), triple.clone())),
        other => panic!("listener: {other:?}"),
    }
    let e = client.join().expect("client");
    match &e {
        Error::TypeMismatch {
            peer: Peer::Listener(p),
            ours,
            theirs,
        } => {
            assert_eq!(p, &path);
            assert_eq!((ours, theirs), (&triple, &arr));
        }
        other => panic!("client: {other:?}"),
    }
    let msg = e.to_string();
    for part in [
        "api::Triple",
        "[u64; 3]",
        "24 bytes",
        &path.display().to_string(),
    ] {
        assert!(msg.contains(part), "{part:?} missing from: {msg}");
    }
}

#[test]
fn an_explicit_type_name_overrides_the_default() {
    let path = common::sock_path("api-named");
    let listener = handshake::Listener::bind(&path, &Default::default()).expect("bind");
    let named = || cfg().type_name("triple-v1");
    let p = path.clone();
    let client = std::thread::spawn(move || handshake::connect_consumer::<Triple>(&p, &named()));
    let mut tx = listener
        .accept_producer::<[u64; 3]>(&named())
        .expect("serve");
    let mut rx = client.join().expect("client").expect("connect");
    tx.try_push([1, 2, 3]).expect("push");
    let got = rx.pop_blocking(Some(Duration::from_secs(5))).expect("pop");
    assert_eq!(got, Triple { a: 1, b: 2, c: 3 });
}

#[test]
fn long_default_type_names_are_shortened_alike_and_connect() {
    let full = std::any::type_name::<Long>();
    assert!(full.len() > NAME_MAX, "{full}");
    let name = cfg().type_name_for::<Long>().into_owned();
    assert!(name.len() <= NAME_MAX, "{name}");
    assert!(full.ends_with(name.split_once('~').expect("hash prefix").1));
    // A different long type gets a different name.
    let other = cfg()
        .type_name_for::<AVeryLongElementTypeNameThatGoesOnAndOn<Long>>()
        .into_owned();
    assert_ne!(name, other);

    let path = common::sock_path("api-long");
    let listener = handshake::Listener::bind(&path, &Default::default()).expect("bind");
    let p = path.clone();
    let client = std::thread::spawn(move || handshake::connect_consumer::<Long>(&p, &cfg()));
    let _tx = listener.accept_producer::<Long>(&cfg()).expect("serve");
    client.join().expect("client").expect("connect");
}

#[test]
fn nothing_listening_is_reported_with_the_path_after_the_configured_retry() {
    let path = common::sock_path("api-nobody");
    let wait = Duration::from_millis(50);
    let e = handshake::connect_consumer::<u64>(&path, &cfg().connect_timeout(wait))
        .map(|_| ())
        .expect_err("connected to nothing");
    assert_not_listening(&e, &path, wait);
    assert!(e.to_string().contains(&path.display().to_string()), "{e}");

    // A stale socket file nobody accepts on is the same situation.
    drop(UnixListener::bind(&path).expect("bind std listener"));
    let e = handshake::connect_consumer::<u64>(&path, &cfg().connect_timeout(Duration::ZERO))
        .map(|_| ())
        .expect_err("connected to a stale socket");
    assert!(matches!(e, Error::NotListening { .. }), "{e}");
}

#[test]
fn a_missing_directory_fails_at_once_without_retrying() {
    let path = common::sock_path("api-nodir")
        .parent()
        .expect("dir")
        .join("missing")
        .join("s.sock");
    // A retry would last a minute; the test would hang, not pass.
    let config = cfg().connect_timeout(Duration::from_secs(60));
    let e = handshake::connect_consumer::<u64>(&path, &config)
        .map(|_| ())
        .expect_err("connected");
    assert_bad_path(&e, &path, "directory");
}

#[test]
fn a_file_that_is_not_a_socket_fails_at_once_without_retrying() {
    let path = common::sock_path("api-file");
    std::fs::write(&path, b"not a socket").expect("write");
    let config = cfg().connect_timeout(Duration::from_secs(60));
    let e = handshake::connect_producer::<u64>(&path, &config)
        .map(|_| ())
        .expect_err("connected");
    assert_bad_path(&e, &path, "not a socket");
}

/// `e` is a [`Error::NotListening`] for `path`, after at least `wait`.
fn assert_not_listening(e: &Error, path: &std::path::Path, wait: Duration) {
    match e {
        Error::NotListening { path: p, waited } => {
            assert_eq!(p, path);
            assert!(*waited >= wait, "gave up after {waited:?}");
        }
        other => panic!("{other:?}"),
    }
}

/// `e` is a [`Error::BadPath`] for `path` whose reason mentions `why`.
fn assert_bad_path(e: &Error, path: &std::path::Path, why: &str) {
    match e {
        Error::BadPath { path: p, why: w } => {
            assert_eq!(p, path);
            assert!(w.contains(why), "{w}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn connect_retries_until_the_listener_appears() {
    let path = common::sock_path("api-late");
    let p = path.clone();
    let client = std::thread::spawn(move || {
        handshake::connect_consumer::<u64>(&p, &cfg().connect_timeout(Duration::from_secs(30)))
    });
    // Bind once the client has tried at least once (it retries every 5 ms).
    std::thread::sleep(handshake::CONNECT_RETRY_EVERY * 4);
    let listener = handshake::Listener::bind(&path, &Default::default()).expect("bind");
    let mut tx = listener.accept_producer::<u64>(&cfg()).expect("serve");
    let mut rx = client.join().expect("client").expect("connect");
    tx.try_push(7).expect("push");
    assert_eq!(
        rx.pop_blocking(Some(Duration::from_secs(5))).expect("pop"),
        7
    );
}

#[test]
fn both_sides_wanting_one_role_is_incompatible_on_both_sides() {
    let path = common::sock_path("api-role");
    let listener = handshake::Listener::bind(&path, &Default::default()).expect("bind");
    let p = path.clone();
    let client = std::thread::spawn(move || {
        handshake::connect_producer::<u64>(&p, &cfg())
            .map(|_| ())
            .expect_err("two producers connected")
    });
    let conn = listener
        .accept(Some(Duration::from_secs(5)))
        .expect("accept");
    match conn.serve_producer::<u64>(&cfg()).map(|_| ()) {
        Err(Error::Incompatible {
            peer: Peer::Process { .. },
            reason,
        }) => assert!(reason.contains("Producer"), "{reason}"),
        other => panic!("listener: {other:?}"),
    }
    match client.join().expect("client") {
        Error::Incompatible {
            peer: Peer::Listener(p),
            reason,
        } => {
            assert_eq!(p, path);
            assert!(reason.contains("Producer"), "{reason}");
        }
        other => panic!("client: {other:?}"),
    }
}

#[test]
fn a_refused_uid_is_a_policy_refusal() {
    let path = common::sock_path("api-uid");
    // SAFETY: getuid has no arguments and cannot fail.
    let me = unsafe { libc::getuid() };
    let opts = ListenOptions {
        allowed_uids: Some(vec![me.wrapping_add(1)]),
        ..Default::default()
    };
    let listener = handshake::Listener::bind(&path, &opts).expect("bind");
    let p = path.clone();
    let client = std::thread::spawn(move || {
        handshake::connect_consumer::<u64>(&p, &cfg())
            .map(|_| ())
            .expect_err("served")
    });
    let e = listener.accept(Some(Duration::from_secs(5))).map(|_| ());
    assert!(matches!(e, Err(Error::PeerRefused(_))), "{e:?}");
    match client.join().expect("client") {
        Error::PeerRefused(why) => assert!(why.contains(&format!("uid {me}")), "{why}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_listener_that_never_answers_is_a_handshake_timeout_naming_it() {
    let path = common::sock_path("api-mute");
    let listener = handshake::Listener::bind(&path, &Default::default()).expect("bind");
    let after = Duration::from_millis(100);
    let e = handshake::connect_consumer::<u64>(&path, &cfg().handshake_timeout(after))
        .map(|_| ())
        .expect_err("connected");
    match &e {
        Error::HandshakeTimeout {
            peer: Peer::Listener(p),
            after: a,
        } => assert_eq!((p, *a), (&path, after)),
        other => panic!("{other:?}"),
    }
    drop(listener);
}

#[test]
fn try_push_reports_a_consumer_seen_gone_as_disconnected() {
    let (mut tx, rx) = channel::pair::<u64>(&Config::new(4)).expect("pair");
    drop(rx);
    for i in 0..4 {
        tx.try_push(i).expect("room");
    }
    // Nothing told the producer yet, and `try_push` makes no system call.
    assert!(matches!(tx.try_push(0), Err(Error::Full)));
    // One liveness check (one `poll`) sees it; from then on, no call asks.
    assert!(!tx.is_peer_alive());
    assert!(matches!(tx.try_push(0), Err(Error::Disconnected)));
    assert!(matches!(tx.try_push(0), Err(Error::Disconnected)));
}

#[test]
fn try_push_reports_a_consumer_that_went_to_sleep_and_left() {
    let (mut tx, mut rx) = channel::pair::<u64>(&Config::new(4)).expect("pair");
    // The consumer announces a sleep: the next push writes its wake-up,
    // which finds its end closed.
    assert!(rx.prepare_sleep().expect("sleep"));
    drop(rx);
    tx.try_push(1).expect("room left");
    let e = (0..4)
        .map(|i| tx.try_push(i))
        .find_map(Result::err)
        .expect("an error once full");
    assert!(matches!(e, Error::Disconnected), "{e}");
}

#[test]
fn try_pop_delivers_what_the_producer_left_then_reports_disconnected() {
    let (mut tx, mut rx) = channel::pair::<u64>(&Config::new(8)).expect("pair");
    assert!(matches!(rx.try_pop(), Err(Error::Empty)));
    for i in 0..3 {
        tx.try_push(i).expect("push");
    }
    drop(tx);
    for i in 0..3 {
        assert_eq!(rx.try_pop().expect("left item"), i);
    }
    assert!(matches!(rx.try_pop(), Err(Error::Empty)));
    assert!(!rx.is_peer_alive());
    assert!(matches!(rx.try_pop(), Err(Error::Disconnected)));
}

#[test]
fn try_pop_reports_a_producer_that_waited_for_room_and_left() {
    let (mut tx, mut rx) = channel::pair::<u64>(&Config::new(2)).expect("pair");
    tx.try_push(1).expect("push");
    tx.try_push(2).expect("push");
    // The producer announces a sleep (the ring is full) and leaves: the
    // consumer's wake-up for it finds its end closed.
    assert!(tx.prepare_sleep().expect("sleep"));
    drop(tx);
    assert_eq!(rx.try_pop().expect("item"), 1);
    assert_eq!(rx.try_pop().expect("item"), 2);
    assert!(matches!(rx.try_pop(), Err(Error::Disconnected)));
}

/// Child role: connects as consumer to `SHMRING_TEST_PATH`, says so, waits
/// to be killed.
#[test]
fn child_entry_api() {
    let role = common::role();
    if !matches!(
        role.as_deref(),
        Some("sleepy-consumer" | "closing-consumer")
    ) {
        return;
    }
    let path = std::env::var("SHMRING_TEST_PATH").expect("path");
    let rx = handshake::connect_consumer::<u64>(&path, &cfg()).expect("connect");
    println!("connected");
    if role.as_deref() == Some("closing-consumer") {
        drop(rx); // a clean close, then the process exits
        return;
    }
    std::thread::sleep(Duration::from_secs(60));
}

/// A producer serving one consumer process in `role`, which it then
/// waits for (killed first when `kill`); fills the ring and returns what
/// `try_push` and `check_peer` then report.
fn consumer_process_end(role: &str, kill: bool) -> (Error, Error, Error) {
    let path = common::sock_path(role);
    let listener = handshake::Listener::bind(&path, &Default::default()).expect("bind");
    let mut child = common::spawn_child(
        "child_entry_api",
        role,
        &[("SHMRING_TEST_PATH", path.display().to_string())],
    );
    let mut tx = listener.accept_producer::<u64>(&cfg()).expect("serve");
    if kill {
        child.kill().expect("kill");
    }
    child.wait().expect("wait");
    // Fill the ring; a check of the link sees the end, and `try_push`
    // reports it from then on.
    let first = loop {
        if let Err(e) = tx.try_push(0) {
            break e;
        }
    };
    let checked = tx.check_peer().expect_err("the consumer is gone");
    let then = tx.try_push(0).expect_err("the consumer is gone");
    (first, checked, then)
}

#[test]
fn try_push_reports_a_killed_consumer_process_as_died() {
    if common::role().is_some() {
        return;
    }
    let (first, checked, then) = consumer_process_end("sleepy-consumer", true);
    assert!(matches!(first, Error::Full | Error::PeerDied), "{first}");
    assert!(matches!(checked, Error::PeerDied), "{checked}");
    assert!(matches!(then, Error::PeerDied), "{then}");
    assert!(then.is_peer_gone());
}

#[test]
fn try_push_reports_a_consumer_process_that_closed_its_end_as_disconnected() {
    if common::role().is_some() {
        return;
    }
    let (first, checked, then) = consumer_process_end("closing-consumer", false);
    assert!(
        matches!(first, Error::Full | Error::Disconnected),
        "{first}"
    );
    assert!(matches!(checked, Error::Disconnected), "{checked}");
    assert!(matches!(then, Error::Disconnected), "{then}");
}

/// Serves one frame stream of `slots` x `slot_size` on a fresh path; the
/// thread returns what `serve` said.
fn serve_one(
    tag: &str,
    slots: u32,
    slot_size: usize,
) -> (
    std::path::PathBuf,
    std::thread::JoinHandle<shmring::Result<shmring::frames::FrameSender>>,
) {
    use shmring::frames::{self, FrameConfig};
    let path = common::sock_path(tag);
    let listener = handshake::Listener::bind(&path, &ListenOptions::default()).expect("bind");
    let producer = std::thread::spawn(move || {
        let conn = listener.accept(Some(Duration::from_secs(10)))?;
        frames::serve(conn, &FrameConfig::new(slots, slot_size))
    });
    (path, producer)
}

#[test]
fn a_consumer_insisting_on_another_shape_is_incompatible_and_the_producer_hears_why() {
    use shmring::frames::{self, FrameConfig};
    let (path, producer) = serve_one("shape-insist", 9, 3 << 20);
    let err = frames::connect(&path, &FrameConfig::new(2, 64)).expect_err("2x64 is not 9x3MiB");
    let Error::Incompatible { peer, reason } = &err else {
        panic!("{err:?}");
    };
    assert_eq!(*peer, Peer::Listener(path.clone()));
    assert!(
        reason.contains("slots: ours 2, the producer's 9"),
        "{reason}"
    );
    assert!(
        reason.contains(&format!("slot size: ours 64, the producer's {}", 3 << 20)),
        "{reason}"
    );
    match producer.join().expect("producer thread") {
        Err(Error::Rejected(why)) => assert!(why.contains("slots: ours 2"), "{why}"),
        other => panic!("the producer must hear the refusal: {other:?}"),
    }
}

#[test]
fn a_consumer_takes_any_shape_or_exactly_the_one_it_names() {
    use shmring::frames::{self, FrameConfig};
    // `consumer()`: whatever the producer chose.
    let (path, producer) = serve_one("shape-any", 9, 3 << 20);
    let rx = frames::connect(&path, &FrameConfig::consumer()).expect("any shape");
    assert_eq!((rx.arena().slots(), rx.arena().slot_size()), (9, 3 << 20));
    producer.join().expect("producer thread").expect("served");
    // The same shape named (slot size rounded up to 64, as the producer's
    // is): accepted.
    let (path, producer) = serve_one("shape-same", 4, 1000);
    let rx = frames::connect(&path, &FrameConfig::new(4, 1000)).expect("same shape");
    assert_eq!(rx.arena().slot_size(), 1024);
    producer.join().expect("producer thread").expect("served");
    // Another descriptor ring than the producer's: refused, naming it.
    let (path, producer) = serve_one("shape-desc", 4, 1024);
    let err = frames::connect(&path, &FrameConfig::new(4, 1024).descriptors(8))
        .expect_err("8 descriptors is not 256");
    assert!(
        err.to_string()
            .contains("descriptors: ours 8, the producer's 256"),
        "{err}"
    );
    assert!(matches!(
        producer.join().expect("producer thread"),
        Err(Error::Rejected(_))
    ));
}

#[test]
fn a_frame_sender_learns_from_its_watch_that_the_consumer_died_with_the_ring_full() {
    use shmring::frames::{self, FrameConfig, FrameMeta};
    let (mut tx, rx) = frames::pair(&FrameConfig::new(4, 64).descriptors(2)).expect("pair");
    let watch = tx.peer_watch().expect("watch");
    for _ in 0..2 {
        let slot = tx.try_lease().expect("a free slot");
        tx.send_lease(slot, 8, &FrameMeta::default()).expect("room");
    }
    drop(rx);
    assert!(
        matches!(tx.send_eos(), Err(Error::Full)),
        "nobody looked yet"
    );
    assert!(!watch.is_gone());
    assert!(!watch.check(), "the consumer is gone");
    assert!(watch.is_gone());
    assert!(matches!(tx.send_eos(), Err(Error::Disconnected)));
}

#[test]
fn a_frame_receiver_learns_from_its_watch_that_the_producer_left_with_a_reason() {
    use shmring::frames::{self, FrameConfig, Received};
    let (mut tx, mut rx) = frames::pair(&FrameConfig::new(4, 64)).expect("pair");
    let watch = rx.peer_watch().expect("watch");
    tx.send_eos().expect("eos");
    tx.say_goodbye("too slow");
    drop(tx);
    assert!(matches!(rx.try_recv(), Ok(Some(Received::Eos))));
    assert!(matches!(rx.try_recv(), Ok(None)), "nobody looked yet");
    assert!(!watch.check(), "the producer is gone");
    match rx.try_recv() {
        Err(Error::Dropped(reason)) => assert_eq!(reason, "too slow"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_frame_consumer_retries_as_long_as_its_connect_timeout_says() {
    use shmring::frames::{self, FrameConfig};
    let path = common::sock_path("frames-nobody");
    let wait = Duration::from_millis(50);
    let e = frames::connect(&path, &FrameConfig::consumer().connect_timeout(wait))
        .map(|_| ())
        .expect_err("connected to nothing");
    assert_not_listening(&e, &path, wait);
}

#[test]
fn a_timeout_too_long_for_an_instant_waits_instead_of_panicking() {
    use shmring::handshake::{Arrival, Intake, IntakeOptions, Listener};
    let (mut tx, mut rx) = channel::pair::<u64>(&Config::new(4)).expect("pair");
    tx.push_blocking(1, Some(Duration::MAX)).expect("push");
    assert_eq!(rx.pop_blocking(Some(Duration::MAX)).expect("pop"), 1);

    let path = common::sock_path("api-max");
    let listener = Listener::bind(&path, &ListenOptions::default()).expect("bind");
    let mut intake = Intake::new(listener, IntakeOptions::default());
    let p = path.clone();
    let client = std::thread::spawn(move || handshake::connect_consumer::<u64>(&p, &cfg()));
    let conn = loop {
        match intake.poll(Duration::MAX).expect("poll").pop() {
            Some(Arrival::Ready(c)) => break c,
            Some(Arrival::Refused { reason, .. }) => panic!("{reason:?}"),
            None => {}
        }
    };
    let mut tx = conn.serve_producer::<u64>(&cfg()).expect("serve");
    let mut rx = client.join().expect("client thread").expect("connect");
    tx.push_blocking(7, Some(Duration::MAX)).expect("push");
    assert_eq!(rx.pop_blocking(Some(Duration::MAX)).expect("pop"), 7);
}
