//! `make install` / `make uninstall` for real: the Makefile's recipes install
//! the plugin into a temporary HOME (the user's plugin folder) and into a
//! temporary PREFIX, GStreamer finds it there with no `GST_PLUGIN_PATH`
//! (`gst-inspect-1.0` and two `gst-launch-1.0` processes), and uninstall
//! removes exactly what install put there. Each run uses its own registry
//! file (`GST_REGISTRY`), so no cache from another run answers for it.
//!
//! The recipes install the debug build (`INSTALL_PROFILE=debug`, which
//! `make test` builds first) rather than building a release plugin here.

mod procs;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use procs::{run, temp_dir, Output};

const LIMIT: Duration = Duration::from_secs(300);

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// The user's real toolchain folders, which rustup and cargo otherwise look
/// for under HOME (replaced in these tests).
fn toolchain_env(cmd: &mut Command) {
    let home = PathBuf::from(std::env::var_os("HOME").expect("HOME"));
    for (var, default) in [("RUSTUP_HOME", ".rustup"), ("CARGO_HOME", ".cargo")] {
        let v = std::env::var_os(var).map_or_else(|| home.join(default), PathBuf::from);
        cmd.env(var, v);
    }
}

/// A command in the sandbox: HOME is `home`, the registry is `registry`, and
/// nothing tells GStreamer or make where the plugin is.
fn sandboxed(program: &str, home: &Path, registry: &Path) -> Command {
    let mut c = Command::new(program);
    for var in [
        "GST_PLUGIN_PATH",
        "GST_PLUGIN_PATH_1_0",
        "GST_PLUGIN_SYSTEM_PATH",
        "GST_PLUGIN_SYSTEM_PATH_1_0",
        "XDG_DATA_HOME",
        "PREFIX",
        "GST_PLUGIN_INSTALL_DIR",
        "INSTALL_MANIFEST",
        "MAKEFLAGS",
        "MFLAGS",
        "MAKELEVEL",
    ] {
        c.env_remove(var);
    }
    c.env("HOME", home)
        .env("GST_REGISTRY", registry)
        .env("GST_REGISTRY_1_0", registry)
        .env("GST_REGISTRY_FORK", "no");
    c
}

fn make(target: &str, home: &Path, registry: &Path, vars: &[String]) -> Output {
    let mut c = sandboxed("make", home, registry);
    toolchain_env(&mut c);
    c.arg("-C")
        .arg(workspace())
        .arg(target)
        .arg("INSTALL_PROFILE=debug")
        .args(vars);
    run(&format!("make {target}"), &mut c, LIMIT).ok(&format!("make {target}"))
}

/// `gst-inspect-1.0 shmringsink` in the sandbox (`extra`: more environment).
fn inspect(home: &Path, registry: &Path, extra: &[(&str, String)]) -> Output {
    let mut c = sandboxed("gst-inspect-1.0", home, registry);
    c.arg("shmringsink");
    for (k, v) in extra {
        c.env(k, v);
    }
    run("gst-inspect-1.0 shmringsink", &mut c, LIMIT)
}

/// A sender and a receiver `gst-launch-1.0` in the sandbox; the receiver's
/// file must hold what the source writes in one process.
fn two_processes(dir: &Path, home: &Path, registry: &Path, extra: &[(&str, String)]) {
    let source =
        "videotestsrc num-buffers=30 pattern=ball ! video/x-raw,format=RGBA,width=64,height=48";
    let sock = dir.join("s.sock");
    let (out, reference) = (dir.join("out.raw"), dir.join("ref.raw"));
    let launch = |desc: String| {
        let mut c = sandboxed("gst-launch-1.0", home, registry);
        c.args(procs::launch_args(&desc));
        for (k, v) in extra {
            c.env(k, v);
        }
        c
    };
    run(
        "reference",
        &mut launch(format!(
            "-q {source} ! filesink location={}",
            reference.display()
        )),
        LIMIT,
    )
    .ok("reference");
    let sender = procs::Proc::spawn(
        "sender",
        &mut launch(format!(
            "-q {source} ! shmringsink socket-path={}",
            sock.display()
        )),
    );
    let receiver = procs::Proc::spawn(
        "receiver",
        &mut launch(format!(
            "-q shmringsrc socket-path={} timeout=60000 ! filesink location={}",
            sock.display(),
            out.display()
        )),
    );
    receiver.wait(LIMIT).ok("receiver");
    sender.wait(LIMIT).ok("sender");
    let (a, b) = (
        std::fs::read(&reference).expect("reference"),
        std::fs::read(&out).expect("received"),
    );
    assert_eq!(a.len(), 30 * 64 * 48 * 4);
    assert!(a == b, "received frames differ from the source's");
}

fn built_plugin() -> Vec<u8> {
    std::fs::read(workspace().join("target/debug/libgstshmring.so"))
        .expect("target/debug/libgstshmring.so: run `cargo build -p gst-plugin-shmring`")
}

/// Every path under `root`, relative, sorted.
fn tree(root: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).expect("read_dir") {
            let p = e.expect("entry").path();
            out.push(
                p.strip_prefix(root)
                    .expect("under root")
                    .display()
                    .to_string(),
            );
            if p.is_dir() && !p.is_symlink() {
                walk(root, &p, out);
            }
        }
    }
    let mut v = Vec::new();
    walk(root, root, &mut v);
    v.sort();
    v
}

#[test]
fn user_install_is_found_without_plugin_path_and_uninstall_removes_exactly_it() {
    let dir = temp_dir("install-home");
    let home = dir.join("home");
    let registry = dir.join("registry.bin");
    // What the user already has: GStreamer's data folder with presets.
    let presets = home.join(".local/share/gstreamer-1.0/presets");
    std::fs::create_dir_all(&presets).expect("presets");
    std::fs::write(presets.join("keep.prs"), "[_presets_]\n").expect("preset");
    let before = tree(&home);

    let log = make("install", &home, &registry, &[]);
    let installed = home.join(".local/share/gstreamer-1.0/plugins/libgstshmring.so");
    assert!(
        std::fs::read(&installed).ok() == Some(built_plugin()),
        "{} holds the built plugin\n{}",
        installed.display(),
        log.stdout
    );
    assert!(
        !log.stdout.contains("note:"),
        "the user folder needs no hint\n{}",
        log.stdout
    );
    let manifest = home.join(".local/share/shmring/install-manifest");
    assert!(manifest.exists(), "manifest written");

    let found = inspect(&home, &registry, &[]).ok("gst-inspect-1.0 shmringsink");
    assert!(
        found
            .stdout
            .lines()
            .any(|l| l.contains("Filename") && l.contains(&*installed.to_string_lossy())),
        "gst-inspect-1.0 loads the installed file\n{}",
        found.stdout
    );
    two_processes(&dir, &home, &registry, &[]);

    let log = make("uninstall", &home, &registry, &[]);
    assert!(log.stdout.contains("removed"), "{}", log.stdout);
    let mut after = tree(&home);
    // Folders the tools themselves may create under HOME (GStreamer's own data).
    after.retain(|p| !p.starts_with(".cache"));
    assert_eq!(
        after, before,
        "uninstall leaves HOME as it was before install"
    );
    let gone = inspect(&home, &registry, &[]);
    assert!(
        !gone.status.success()
            && format!("{}{}", gone.stdout, gone.stderr).contains("No such element"),
        "shmringsink is gone after uninstall: {:?}\n{}\n{}",
        gone.status,
        gone.stdout,
        gone.stderr
    );
    // A second uninstall has nothing to do, and says so.
    let again = make("uninstall", &home, &registry, &[]);
    assert!(
        again.stdout.contains("nothing to uninstall"),
        "{}",
        again.stdout
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn prefix_install_goes_to_lib_multiarch_gstreamer_and_uninstall_removes_exactly_it() {
    let dir = temp_dir("install-prefix");
    let home = dir.join("home");
    std::fs::create_dir_all(&home).expect("home");
    let prefix = dir.join("prefix");
    std::fs::create_dir_all(&prefix).expect("prefix");
    let registry = dir.join("registry.bin");
    let vars = [format!("PREFIX={}", prefix.display())];

    // Debian's GStreamer scans <its prefix>/lib/<multiarch>/gstreamer-1.0:
    // the same place under our PREFIX.
    let system = run(
        "pkg-config",
        Command::new("pkg-config").args(["--variable=pluginsdir", "gstreamer-1.0"]),
        LIMIT,
    )
    .ok("pkg-config")
    .stdout
    .trim()
    .to_string();
    let rel = system
        .strip_prefix("/usr/")
        .expect("Debian's GStreamer lives under /usr");
    assert!(
        rel.starts_with("lib/") && rel.ends_with("/gstreamer-1.0"),
        "{rel}"
    );
    let plugin_dir = prefix.join(rel);
    let installed = plugin_dir.join("libgstshmring.so");

    let log = make("install", &home, &registry, &vars);
    assert!(
        std::fs::read(&installed).ok() == Some(built_plugin()),
        "{} holds the built plugin\n{}",
        installed.display(),
        log.stdout
    );
    assert!(
        log.stdout.contains("note:") && log.stdout.contains("PREFIX=/usr"),
        "a prefix this GStreamer does not scan gets the hint\n{}",
        log.stdout
    );
    assert!(prefix.join("share/shmring/install-manifest").exists());
    assert!(
        !home.join(".local/share/gstreamer-1.0").exists(),
        "nothing in HOME"
    );

    // A GStreamer built for this prefix scans the folder as its system path.
    let system_path = [(
        "GST_PLUGIN_SYSTEM_PATH_1_0",
        format!("{}:{system}", plugin_dir.display()),
    )];
    let found = inspect(&home, &registry, &system_path).ok("gst-inspect-1.0 shmringsink");
    assert!(
        found.stdout.contains(&*installed.to_string_lossy()),
        "{}",
        found.stdout
    );
    two_processes(&dir, &home, &registry, &system_path);

    // Someone else's file in the same folder survives uninstall, and so does
    // the folder holding it.
    let theirs = plugin_dir.join("README.theirs");
    std::fs::write(&theirs, "not ours\n").expect("their file");
    make("uninstall", &home, &registry, &vars);
    assert!(!installed.exists(), "plugin removed");
    assert!(theirs.exists(), "their file kept");
    assert!(
        !prefix.join("share").exists(),
        "manifest and its folders removed"
    );
    std::fs::remove_file(&theirs).expect("remove their file");

    // Reinstall over nothing, change the installed file, uninstall: a file
    // changed since install is not ours to remove.
    make("install", &home, &registry, &vars);
    std::fs::write(&installed, b"replaced by someone else").expect("overwrite");
    let log = make("uninstall", &home, &registry, &vars);
    assert!(
        log.stdout.contains("kept") && installed.exists(),
        "{}",
        log.stdout
    );
    std::fs::remove_file(&installed).expect("cleanup");
    // Without the manifest nothing is left behind but the folders we made
    // (removed by uninstall only when empty: here one file was kept).
    assert!(!prefix.join("share/shmring/install-manifest").exists());
    let _ = std::fs::remove_dir_all(&dir);
}
