//! The distribution, as a user gets it: `scripts/dist.sh` builds the tree and tarball into a
//! temporary directory, then the C example (`bindings/c/example.c`) is compiled against the
//! tree with nothing but `pkg-config --cflags --libs wspush` (`PKG_CONFIG_PATH` at the tree),
//! shared (the library found through the rpath pkg-config's `libdir` gives), fully static
//! (`--static` and `cc -static`) and with the archive named (`libdir/libwspush.a`, the system
//! libraries shared), and serves a real client with exactly the expected output, as README's
//! "Use it from C" says. README's `cargo install --path engine` installs a working server.
//! The shared library has its SONAME and exports only the C ABI's `wspush_*` functions; the
//! server binary checks the shipped example configuration; the systemd unit verifies.
//!
//! Without `pkg-config` or `systemd-analyze` those tests say so loudly and pass, unless
//! `WSPUSH_REQUIRE_PKG_CONFIG=1` or `WSPUSH_REQUIRE_SYSTEMD=1` (set by `scripts/test.sh`).

#[path = "support.rs"]
mod support;

#[path = "c_program/mod.rs"]
mod c_program;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use c_program::run_example_program;
use support::*;

/// `scripts/dist.sh` run once per test process into `target/dist-test/` (emptied first, so
/// runs do not pile up); the tree.
fn tree() -> &'static Path {
    static TREE: OnceLock<PathBuf> = OnceLock::new();
    TREE.get_or_init(|| {
        let out = target_dir().join("dist-test");
        let _ = std::fs::remove_dir_all(&out);
        run(Command::new("bash").arg(workspace_root().join("scripts/dist.sh")).arg(&out));
        let host = run(Command::new("rustc").arg("-vV"));
        let host = host.lines().find_map(|line| line.strip_prefix("host: ")).expect("rustc's host");
        let tree = out.join(format!("wspush-{}-{host}", wspush::VERSION));
        assert!(tree.is_dir(), "dist.sh made no {}", tree.display());
        tree
    })
}

/// Runs a command that must succeed; its stdout.
fn run(command: &mut Command) -> String {
    let output = command.output().unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Whether `tool` runs; when it does not, fails if `require` is set, else says so loudly.
fn tool_present(tool: &str, require: &str) -> bool {
    if Command::new(tool).arg("--version").output().is_ok() {
        return true;
    }
    assert!(std::env::var_os(require).is_none(), "{require} is set but `{tool}` is not installed");
    eprintln!(
        "\n!!!!! SKIPPED: `{tool}` is not installed; this part of the distribution was NOT tested !!!!!\n"
    );
    false
}

/// `pkg-config ARGS wspush` against the tree only.
fn pkg_config(args: &[&str]) -> Vec<String> {
    let flags = run(Command::new("pkg-config")
        .args(args)
        .arg("wspush")
        .env("PKG_CONFIG_PATH", tree().join("lib/pkgconfig"))
        .env_remove("PKG_CONFIG_LIBDIR"));
    flags.split_whitespace().map(str::to_owned).collect()
}

/// Compiles the C example against the tree with `flags` (from pkg-config) and `extra`.
fn compile_example(name: &str, flags: &[String], extra: &[String]) -> PathBuf {
    let binary = tree().parent().unwrap().join(name);
    let cc = std::env::var_os("CC").unwrap_or_else(|| "cc".into());
    run(Command::new(cc)
        .args(["-Wall", "-Wextra", "-Werror", "-std=c11", "-pedantic"])
        .arg(workspace_root().join("bindings/c/example.c"))
        .args(flags)
        .args(extra)
        .arg("-o")
        .arg(&binary));
    binary
}

/// The dynamic section's `NEEDED` entries of an ELF file.
fn needed(file: &Path) -> Vec<String> {
    run(Command::new("readelf").arg("-d").arg(file))
        .lines()
        .filter(|line| line.contains("(NEEDED)"))
        .filter_map(|line| Some(line.split('[').nth(1)?.trim_end_matches(']').to_owned()))
        .collect()
}

#[test]
fn the_tree_and_tarball_hold_what_a_user_needs() {
    let tree = tree();
    let version = wspush::VERSION;
    let major = version.split('.').next().unwrap();
    for file in [
        "bin/wspush".to_owned(),
        "include/wspush.h".to_owned(),
        format!("lib/libwspush.so.{version}"),
        "lib/libwspush.a".to_owned(),
        "lib/pkgconfig/wspush.pc".to_owned(),
        "share/wspush/wspush.example.toml".to_owned(),
        "share/wspush/wspush.service".to_owned(),
        "README.md".to_owned(),
        "LICENSE-MIT".to_owned(),
        "LICENSE-APACHE".to_owned(),
    ] {
        assert!(tree.join(&file).is_file(), "{file} is missing from {}", tree.display());
    }
    let link = |name: &str| std::fs::read_link(tree.join("lib").join(name)).unwrap();
    assert_eq!(link("libwspush.so"), Path::new(&format!("libwspush.so.{major}")));
    assert_eq!(link(&format!("libwspush.so.{major}")), Path::new(&format!("libwspush.so.{version}")));
    let dynamic =
        run(Command::new("readelf").arg("-d").arg(tree.join(format!("lib/libwspush.so.{version}"))));
    assert!(dynamic.contains(&format!("Library soname: [libwspush.so.{major}]")), "{dynamic}");
    for (shipped, source) in [
        ("include/wspush.h", "include/wspush.h"),
        ("share/wspush/wspush.example.toml", "docs/wspush.example.toml"),
        ("share/wspush/wspush.service", "docs/wspush.service"),
        ("LICENSE-MIT", "LICENSE-MIT"),
        ("LICENSE-APACHE", "LICENSE-APACHE"),
    ] {
        let shipped_bytes = std::fs::read(tree.join(shipped)).unwrap();
        assert!(shipped_bytes == std::fs::read(workspace_root().join(source)).unwrap(), "{shipped} differs");
    }
    // Release builds, debug info stripped (the debug libwspush.a is over 150 MB).
    for file in ["bin/wspush", "lib/libwspush.a", &format!("lib/libwspush.so.{version}")] {
        let sections = run(Command::new("readelf").args(["-S", "--wide"]).arg(tree.join(file)));
        assert!(!sections.contains(".debug_info"), "{file} carries debug info");
    }
    let static_size = std::fs::metadata(tree.join("lib/libwspush.a")).unwrap().len();
    assert!(static_size < 64 << 20, "libwspush.a is {static_size} bytes");
    // The tarball holds the same tree under the same top directory.
    let name = tree.file_name().unwrap().to_str().unwrap();
    let tarball = tree.with_file_name(format!("{name}.tar.gz"));
    let listed = run(Command::new("tar").arg("-tzf").arg(&tarball));
    let listed: BTreeSet<&str> = listed.lines().map(|line| line.trim_end_matches('/')).collect();
    for file in ["bin/wspush", "lib/libwspush.so", "lib/pkgconfig/wspush.pc", "LICENSE-APACHE"] {
        assert!(listed.contains(format!("{name}/{file}").as_str()), "{file} missing from the tarball");
    }
    assert!(listed.iter().all(|entry| entry.starts_with(name)), "{listed:?}");
}

#[test]
fn the_shared_library_exports_only_the_c_abi() {
    let library = tree().join(format!("lib/libwspush.so.{}", wspush::VERSION));
    let symbols = run(Command::new("nm").args(["-D", "--defined-only", "--format=posix"]).arg(&library));
    let exported: BTreeSet<&str> = symbols.lines().filter_map(|line| line.split(' ').next()).collect();
    let foreign: Vec<&&str> = exported.iter().filter(|name| !name.starts_with("wspush_")).collect();
    assert!(foreign.is_empty(), "libwspush.so exports more than wspush_*: {foreign:?}");
    // Exactly the functions the header declares (a declaration starts a line with its type).
    let header = std::fs::read_to_string(workspace_root().join("include/wspush.h")).unwrap();
    let declared: BTreeSet<&str> = header
        .lines()
        .filter(|line| line.starts_with(|c: char| c.is_ascii_alphabetic()) && !line.starts_with("typedef"))
        .filter_map(|line| {
            let name = line[..line.find('(')?].rsplit([' ', '*']).next()?;
            name.starts_with("wspush_").then_some(name)
        })
        .collect();
    assert!(declared.contains("wspush_engine_start"), "{declared:?}");
    assert_eq!(exported, declared, "the exported functions differ from the header's");
}

#[test]
fn the_c_example_links_through_pkg_config_against_the_shared_library() {
    if !tool_present("pkg-config", "WSPUSH_REQUIRE_PKG_CONFIG") {
        return;
    }
    let flags = pkg_config(&["--cflags", "--libs"]);
    assert!(flags.contains(&"-lwspush".to_owned()), "{flags:?}");
    let libdir = pkg_config(&["--variable=libdir"]).concat();
    let binary = compile_example("example-shared", &flags, &[format!("-Wl,-rpath,{libdir}")]);
    let major = wspush::VERSION.split('.').next().unwrap();
    assert!(needed(&binary).contains(&format!("libwspush.so.{major}")), "{:?}", needed(&binary));
    // Found through the rpath into the tree (the program runs without LD_LIBRARY_PATH).
    let dynamic = run(Command::new("readelf").arg("-d").arg(&binary));
    assert!(dynamic.contains(&format!("[{libdir}]")), "no rpath to {libdir}:\n{dynamic}");
    run_example_program(&binary, None);
}

#[test]
fn the_c_example_links_statically_through_pkg_config() {
    if !tool_present("pkg-config", "WSPUSH_REQUIRE_PKG_CONFIG") {
        return;
    }
    let flags = pkg_config(&["--static", "--cflags", "--libs"]);
    let binary = compile_example("example-static", &flags, &["-static".to_owned()]);
    let dynamic = run(Command::new("readelf").arg("-d").arg(&binary));
    assert!(dynamic.contains("There is no dynamic section"), "not a static executable:\n{dynamic}");
    run_example_program(&binary, None);
}

#[test]
fn the_c_example_links_the_archive_with_the_system_libraries_shared() {
    if !tool_present("pkg-config", "WSPUSH_REQUIRE_PKG_CONFIG") {
        return;
    }
    let mut flags = pkg_config(&["--cflags"]);
    let libdir = pkg_config(&["--variable=libdir"]).concat();
    flags.push(format!("{libdir}/libwspush.a"));
    let binary = compile_example("example-archive", &flags, &["-lpthread", "-ldl", "-lm"].map(String::from));
    let needed = needed(&binary);
    assert!(needed.iter().all(|library| !library.starts_with("libwspush")), "{needed:?}");
    assert!(needed.contains(&"libc.so.6".to_owned()), "{needed:?}");
    run_example_program(&binary, None);
}

/// README's `cargo install --locked --path engine` (into a temporary root; the build is the
/// release one dist.sh made).
#[test]
fn cargo_install_from_the_checkout_installs_the_server() {
    let root = tree().parent().unwrap().join("cargo-install");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    run(Command::new(cargo)
        .current_dir(workspace_root())
        .args(["install", "--locked", "--path", "engine", "--root"])
        .arg(&root)
        .arg("--target-dir")
        .arg(target_dir()));
    let version = run(Command::new(root.join("bin/wspush")).arg("--version"));
    assert_eq!(version, format!("wspush {}\n", wspush::VERSION));
}

#[test]
fn the_shipped_server_checks_the_shipped_config() {
    let binary = tree().join("bin/wspush");
    let version = run(Command::new(&binary).arg("--version"));
    assert_eq!(version, format!("wspush {}\n", wspush::VERSION));
    let example = tree().join("share/wspush/wspush.example.toml");
    let checked = run(Command::new(&binary).arg("--config").arg(example).arg("--check"));
    assert_eq!(checked, "wspush: the settings are valid\n");
}

#[test]
fn the_systemd_unit_verifies_and_is_hardened() {
    let unit = std::fs::read_to_string(tree().join("share/wspush/wspush.service")).unwrap();
    for directive in [
        "ExecStart=/usr/local/bin/wspush --config /etc/wspush/wspush.toml",
        "DynamicUser=yes",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "PrivateTmp=yes",
        "LimitNOFILE=",
        "Restart=on-failure",
        "RestartPreventExitStatus=2",
        "KillSignal=SIGTERM",
    ] {
        assert!(unit.lines().any(|line| line.starts_with(directive)), "the unit has no {directive}");
    }
    // The server takes up to 5 s for the API and 5 s more to close the sockets, plus 1 s.
    let stop: u64 =
        unit.lines().find_map(|line| line.strip_prefix("TimeoutStopSec=")).unwrap().parse().unwrap();
    assert!(stop >= 20, "TimeoutStopSec={stop} leaves no room for the graceful shutdown");
    if !tool_present("systemd-analyze", "WSPUSH_REQUIRE_SYSTEMD") {
        return;
    }
    // Verified with the shipped binary in place of /usr/local/bin/wspush.
    let copy = tree().parent().unwrap().join("wspush.service");
    let binary = tree().join("bin/wspush");
    std::fs::write(&copy, unit.replace("/usr/local/bin/wspush", binary.to_str().unwrap())).unwrap();
    let output = Command::new("systemd-analyze").arg("verify").arg(&copy).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success() && stderr.trim().is_empty(), "systemd-analyze verify: {stderr}");
}
