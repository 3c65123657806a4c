//! The C ABI from C: the committed `include/wspush.h` is what cbindgen generates now; the
//! C example (`bindings/c/example.c`), the conventions check (`bindings/c/abi_check.c`, with
//! the positioned send: offsets and epochs with history on, WRONG_THREAD, TIMEOUT) and
//! the admission check (`bindings/c/auth_check.c`: token settings, the authorizer callback,
//! allowed origins, the per-address limit, with tokens minted here) and the certificate
//! reload (`bindings/c/tls_check.c`, serving `wss://` to rustls clients that trust only a CA
//! made here, the files renewed between its commands) compile with
//! `cc -Wall -Wextra -Werror -std=c11 -pedantic` against that header and the static library,
//! serve real clients with exactly the output expected, and run clean under valgrind (no
//! leaks, no invalid accesses; `tests/c_program/valgrind.supp` names the one false positive
//! suppressed, memcheck's view of ring's AES-GCM assembly).
//!
//! Valgrind runs when it is installed; without it those tests say so loudly and pass,
//! unless `WSPUSH_REQUIRE_VALGRIND=1` (set by `scripts/test-bindings.sh`), which makes a
//! missing valgrind a failure. Likewise the header is compiled as C++ when a `c++` compiler
//! is there, and `WSPUSH_REQUIRE_CXX=1` (set by `scripts/test.sh` and
//! `scripts/test-bindings.sh`) makes a missing one a failure.

#[path = "support.rs"]
mod support;

#[path = "c_program/mod.rs"]
mod c_program;

#[path = "tls_support.rs"]
mod tls_support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use c_program::*;
use support::*;
use tls_support::*;

/// The path of `libwspush.a`, built by [`libraries`].
fn static_library() -> &'static Path {
    &libraries().0
}

/// The path of `libwspush.so`, built by [`libraries`].
fn shared_library() -> &'static Path {
    &libraries().1
}

/// `cargo build -p wspush-ffi` (in the tests' profile), once per test process; the paths
/// of `libwspush.a` and `libwspush.so`.
fn libraries() -> &'static (PathBuf, PathBuf) {
    static LIBRARIES: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    LIBRARIES.get_or_init(|| {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut command = Command::new(cargo);
        command.current_dir(workspace_root()).args([
            "build",
            "-p",
            "wspush-ffi",
            "--message-format=json-render-diagnostics",
        ]);
        if !cfg!(debug_assertions) {
            command.arg("--release");
        }
        let output = command.output().expect("cannot run cargo to build wspush-ffi");
        assert!(
            output.status.success(),
            "`cargo build -p wspush-ffi` failed ({}):\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        let stdout = String::from_utf8_lossy(&output.stdout);
        let artifacts: Vec<PathBuf> = stdout
            .lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .filter(|message| message["reason"] == "compiler-artifact")
            .filter_map(|message| message["filenames"].as_array().cloned())
            .flatten()
            .filter_map(|name| name.as_str().map(PathBuf::from))
            .collect();
        let find = |file: &str| {
            let path = artifacts
                .iter()
                .find(|path| path.file_name().is_some_and(|name| name == file))
                .unwrap_or_else(|| panic!("cargo built no {file}"))
                .clone();
            assert!(path.is_file(), "{} is missing", path.display());
            path
        };
        let shared = find("libwspush.so");
        link_soname(&shared);
        (find("libwspush.a"), shared)
    })
}

/// `libwspush.so.MAJOR -> libwspush.so` beside cargo's `libwspush.so`: the library's SONAME
/// (`ffi/build.rs`), the name a program linked with `-lwspush` asks the loader for.
fn link_soname(shared: &Path) {
    let major = wspush::VERSION.split('.').next().unwrap();
    let soname = shared.with_file_name(format!("libwspush.so.{major}"));
    // Made under a name of this process, then renamed: other test processes make it too.
    let partial = shared.with_file_name(format!("libwspush.so.{major}.{}.partial", std::process::id()));
    let _ = std::fs::remove_file(&partial);
    std::os::unix::fs::symlink("libwspush.so", &partial).unwrap();
    std::fs::rename(&partial, &soname).unwrap();
}

/// How a C program is linked against libwspush.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Linking {
    /// With `libwspush.a` (the program stands alone).
    Static,
    /// With `-lwspush` (`libwspush.so`, found at run time through `LD_LIBRARY_PATH`).
    Shared,
}

/// Compiles `bindings/c/{name}.c` against the committed header and the static library, the
/// way the README says, with every warning an error; once per test process.
fn compile(name: &str) -> PathBuf {
    compile_linked(name, Linking::Static)
}

fn compile_linked(name: &str, linking: Linking) -> PathBuf {
    static COMPILED: Mutex<BTreeMap<(String, Linking), PathBuf>> = Mutex::new(BTreeMap::new());
    let mut compiled = COMPILED.lock().unwrap_or_else(|e| e.into_inner());
    compiled.entry((name.to_owned(), linking)).or_insert_with(|| compile_now(name, linking)).clone()
}

fn compile_now(name: &str, linking: Linking) -> PathBuf {
    let out_dir = target_dir().join("ffi-c").join(if cfg!(debug_assertions) { "debug" } else { "release" });
    std::fs::create_dir_all(&out_dir).unwrap();
    // Written under a name of this process, then renamed: another test process may be
    // running the previous binary.
    let file = if linking == Linking::Shared { format!("{name}-shared") } else { name.to_owned() };
    let binary = out_dir.join(&file);
    let partial = out_dir.join(format!("{file}.{}.partial", std::process::id()));
    let library: Vec<std::ffi::OsString> = match linking {
        Linking::Static => vec![static_library().into()],
        Linking::Shared => {
            let dir = shared_library().parent().unwrap();
            vec![format!("-L{}", dir.display()).into(), "-lwspush".into()]
        }
    };
    let cc = std::env::var_os("CC").unwrap_or_else(|| "cc".into());
    let output = Command::new(&cc)
        .args(["-Wall", "-Wextra", "-Werror", "-std=c11", "-pedantic", "-g", "-I"])
        .arg(workspace_root().join("include"))
        .arg(workspace_root().join("bindings/c").join(format!("{name}.c")))
        .args(&library)
        .args(["-lpthread", "-ldl", "-lm", "-o"])
        .arg(&partial)
        .output()
        .unwrap_or_else(|e| panic!("cannot run the C compiler {cc:?}: {e}"));
    assert!(
        output.status.success(),
        "compiling bindings/c/{name}.c failed ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    std::fs::rename(&partial, &binary).unwrap();
    binary
}

/// The valgrind command line, or `None` (after saying so loudly) when valgrind is missing
/// and not required.
fn valgrind() -> Option<Vec<String>> {
    let found = Command::new("valgrind").arg("--version").output().is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var_os("WSPUSH_REQUIRE_VALGRIND").is_none(),
            "WSPUSH_REQUIRE_VALGRIND is set but valgrind is not installed"
        );
        eprintln!(
            "\n!!!!! SKIPPED: valgrind is not installed; the C programs were not checked for leaks !!!!!\n"
        );
        return None;
    }
    Some(
        [
            "valgrind",
            "--leak-check=full",
            "--show-leak-kinds=definite,indirect",
            "--errors-for-leak-kinds=definite,indirect",
            "--error-exitcode=99",
        ]
        .map(String::from)
        .into_iter()
        .chain([format!(
            "--suppressions={}",
            workspace_root().join("tests/c_program/valgrind.supp").display()
        )])
        .collect(),
    )
}

fn run_example(wrapper: Option<&[String]>) -> String {
    run_example_program(&compile("example"), wrapper)
}

/// The positioned-send checks of `bindings/c/abi_check.c`, each of which must have run and
/// passed (so that none of them disappears unnoticed).
const POSITIONED_CHECKS: &[&str] = &[
    "ok - send_positioned, history off: OK with offset 0 and epoch_len 0",
    "ok - send_positioned: NULL out",
    "ok - send_positioned: *out untouched on error",
    "ok - send_positioned, history on: offset 1 and an 8-character epoch",
    "ok - send_positioned, history on: then offset 2 in the same epoch",
    "ok - send_positioned in a callback: WRONG_THREAD, nothing written",
    "ok - send_positioned: TIMEOUT while the id's worker is busy",
    "ok - send_positioned: *out untouched on TIMEOUT",
    "ok - send_positioned after a TIMEOUT: offset 2 (the timed-out message took 1)",
    "ok - send_positioned: the client got the timed-out message, then the next (not the refused one)",
];

fn run_abi_check(wrapper: Option<&[String]>) -> String {
    let binary = compile("abi_check");
    let program = Program::start(&binary, wrapper);
    let (status, stdout, stderr) = program.finish();
    assert!(status.success(), "abi_check failed ({status}):\n{stdout}\nstderr:\n{stderr}");
    assert!(!stdout.contains("not ok"), "{stdout}");
    assert!(stdout.contains(", 0 failed\n"), "{stdout}");
    for check in POSITIONED_CHECKS {
        assert!(stdout.contains(&format!("{check}\n")), "abi_check did not print {check:?}:\n{stdout}");
    }
    stderr
}

/// The HS256 secret `bindings/c/auth_check.c` configures (its `SECRET`).
const AUTH_CHECK_SECRET: &[u8] = b"wspush-ffi-test-secret-0123456789abcdef";

/// An HS256 token for `sub` expiring `ttl` from now, signed with [`AUTH_CHECK_SECRET`].
fn mint_token(sub: &str, ttl: Duration) -> String {
    let exp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap() + ttl;
    let claims = serde_json::json!({ "sub": sub, "exp": exp.as_secs() });
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(AUTH_CHECK_SECRET),
    )
    .unwrap()
}

fn run_auth_check(wrapper: Option<&[String]>) -> String {
    let binary = compile("auth_check");
    let alice = mint_token("alice", Duration::from_secs(600));
    let bob = mint_token("bob", Duration::from_secs(600));
    // Long enough for the program (under valgrind too) to connect with it first, short
    // enough that waiting for its expiry (leeway 0) costs little: the checks run meanwhile.
    let carol = mint_token("carol", Duration::from_secs(15));
    let program = Program::start_with_args(&binary, wrapper, &[&alice, &bob, &carol]);
    let (status, stdout, stderr) = program.finish();
    assert!(status.success(), "auth_check failed ({status}):\n{stdout}\nstderr:\n{stderr}");
    assert!(!stdout.contains("not ok"), "{stdout}");
    assert!(stdout.contains(", 0 failed\n"), "{stdout}");
    stderr
}

/// Drives `bindings/c/tls_check.c`: an engine serving `wss://` from files of the first CA,
/// renewed with a certificate of a second CA and reloaded (new connections are shown the new
/// certificate, a client trusting only the first CA is refused, the first connection keeps
/// receiving), then bad renewals refused with the precise message while the second
/// certificate stays; checks the program's whole output. Returns its stderr.
fn run_tls_check(wrapper: Option<&[String]>) -> String {
    let (first_ca, second_ca) = (TestCa::new(), TestCa::new());
    let dir = scratch_dir(if wrapper.is_some() { "c-reload-valgrind" } else { "c-reload" });
    let first = first_ca.server_cert("wspush C first");
    let (cert, key) = first.write(&dir, "server");
    let args = [cert.to_str().unwrap(), key.to_str().unwrap()];
    let mut program = Program::start_with_args(&compile("tls_check"), wrapper, &args);
    let port: u16 = program.wait_line("listening on 127.0.0.1:").parse().expect("a port number");
    let url = format!("wss://127.0.0.1:{port}/websocket/live");
    let (cert_path, key_path) = (cert.display(), key.display());
    let refusals = [
        format!(
            "WSPUSH_STATUS_INVALID_CONFIG (invalid setting `tls_key`: {key_path}: the key does not belong to \
             the first certificate of {cert_path})"
        ),
        format!(
            "WSPUSH_STATUS_INVALID_CONFIG (invalid setting `tls_cert`: {cert_path}: no certificate in it \
             (expected PEM `-----BEGIN CERTIFICATE-----` blocks))"
        ),
        format!(
            "WSPUSH_STATUS_INVALID_CONFIG (invalid setting `tls_cert`: {cert_path}: No such file or directory \
             (os error 2))"
        ),
    ];
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async {
        let mut old = connect_wss(&url, first_ca.client_config()).await;
        assert_eq!(peer_leaf(&old), first.leaf, "the engine showed another certificate");
        program.wait_line("open: id=live");

        // A certificate manager renews the files (through renames), then the host reloads.
        let second = second_ca.server_cert("wspush C second");
        second.write(&dir, "server");
        program.say("reload");
        assert_eq!(program.wait_line("reload: "), "WSPUSH_STATUS_OK");
        let mut new = connect_wss(&url, second_ca.client_config()).await;
        assert_eq!(peer_leaf(&new), second.leaf, "a new connection still got the old certificate");
        program.wait_line("open: id=live");
        let refusal = refused_wss(&url, first_ca.client_config()).await;
        assert!(refusal.contains("UnknownIssuer"), "{refusal}");
        program.say("send live after the reload");
        assert_eq!(program.wait_line("send: "), "WSPUSH_STATUS_OK");
        assert_eq!(recv_text(&mut old, SLOW_TIMEOUT).await, "after the reload", "the old connection broke");
        assert_eq!(recv_text(&mut new, SLOW_TIMEOUT).await, "after the reload");

        // Bad renewals: refused with the fault, the second certificate kept.
        write_atomically(&key, second_ca.server_cert("stray").key_pem.as_bytes());
        program.say("reload");
        assert_eq!(program.wait_line("reload: "), refusals[0]);
        write_atomically(&cert, b"not a certificate\n");
        program.say("reload");
        assert_eq!(program.wait_line("reload: "), refusals[1]);
        std::fs::remove_file(&cert).unwrap();
        program.say("reload");
        assert_eq!(program.wait_line("reload: "), refusals[2]);
        let mut third = connect_wss(&url, second_ca.client_config()).await;
        assert_eq!(peer_leaf(&third), second.leaf, "a refused reload replaced the certificate");
        program.wait_line("open: id=live");
        program.say("send live still serving");
        for ws in [&mut old, &mut new, &mut third] {
            assert_eq!(recv_text(ws, SLOW_TIMEOUT).await, "still serving");
        }

        // Each message came once: next is the close of the stop.
        program.say("stop");
        for ws in [&mut old, &mut new, &mut third] {
            assert_eq!(expect_close(ws).await, 1001);
        }
    });
    let (status, stdout, stderr) = program.finish();
    assert!(status.success(), "tls_check failed ({status}):\n{stdout}\nstderr:\n{stderr}");
    let expected = [
        format!("listening on 127.0.0.1:{port}\n"),
        "open: id=live\n".into(),
        "reload: WSPUSH_STATUS_OK\n".into(),
        "open: id=live\n".into(),
        "send: WSPUSH_STATUS_OK\n".into(),
        refusals.map(|refusal| format!("reload: {refusal}\n")).concat(),
        "open: id=live\n".into(),
        "send: WSPUSH_STATUS_OK\n".into(),
        "close: id=live code=1001\n".repeat(3),
        "stop: WSPUSH_STATUS_OK\n".into(),
        "stats: connections_opened=3 handshake_tls=1\n".into(),
        "freed\n".into(),
    ]
    .concat();
    assert_eq!(stdout, expected, "stderr:\n{stderr}");
    stderr
}

/// Valgrind's verdict: no errors at all (leaks of kind definite/indirect count as errors).
/// Prints valgrind's summary (visible with `--nocapture`).
fn assert_valgrind_clean(program: &str, stderr: &str) {
    assert!(stderr.contains("ERROR SUMMARY: 0 errors"), "valgrind found errors:\n{stderr}");
    assert!(
        stderr.contains("definitely lost: 0 bytes") || stderr.contains("All heap blocks were freed"),
        "valgrind found leaks:\n{stderr}"
    );
    let summary: Vec<&str> = stderr
        .lines()
        .filter(|line| {
            ["lost:", "ERROR SUMMARY", "in use at exit", "All heap blocks"].iter().any(|k| line.contains(k))
        })
        .collect();
    eprintln!("valgrind {program}:\n{}", summary.join("\n"));
}

#[test]
fn the_committed_header_is_what_cbindgen_generates() {
    let output = Command::new("bash")
        .arg(workspace_root().join("ffi/generate-header.sh"))
        .arg("--check")
        .output()
        .expect("cannot run ffi/generate-header.sh");
    assert!(
        output.status.success(),
        "include/wspush.h is stale or cbindgen could not run ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn the_header_says_it_is_generated_and_has_version_macros() {
    let header = std::fs::read_to_string(workspace_root().join("include/wspush.h")).unwrap();
    assert!(header.contains("GENERATED by cbindgen"), "no generated marker");
    assert!(header.contains("DO NOT EDIT"));
    let (major, minor, patch) = {
        let mut parts = wspush::VERSION.split('.');
        (parts.next().unwrap(), parts.next().unwrap(), parts.next().unwrap())
    };
    assert!(header.contains(&format!("#define WSPUSH_VERSION_MAJOR {major}\n")));
    assert!(header.contains(&format!("#define WSPUSH_VERSION_MINOR {minor}\n")));
    assert!(header.contains(&format!("#define WSPUSH_VERSION_PATCH {patch}\n")));
}

#[test]
fn the_header_compiles_alone_as_c_and_cpp() {
    let header = workspace_root().join("include/wspush.h");
    let cc = std::env::var_os("CC").unwrap_or_else(|| "cc".into());
    for std in ["-std=c99", "-std=c11"] {
        let output = Command::new(&cc)
            .args(["-Wall", "-Wextra", "-Werror", "-pedantic", std, "-fsyntax-only", "-x", "c"])
            .arg(&header)
            .output()
            .expect("cannot run the C compiler");
        assert!(output.status.success(), "{std}: {}", String::from_utf8_lossy(&output.stderr));
    }
    match Command::new("c++")
        .args(["-Wall", "-Wextra", "-Werror", "-pedantic", "-std=c++11", "-fsyntax-only", "-x", "c++"])
        .arg(&header)
        .output()
    {
        Ok(output) => assert!(output.status.success(), "C++: {}", String::from_utf8_lossy(&output.stderr)),
        Err(_) => {
            assert!(
                std::env::var_os("WSPUSH_REQUIRE_CXX").is_none(),
                "WSPUSH_REQUIRE_CXX is set but there is no c++ compiler; the header was not checked as C++"
            );
            eprintln!("!!!!! SKIPPED: no c++ compiler; the header was not checked as C++ !!!!!");
        }
    }
}

#[test]
fn the_c_example_serves_a_real_client() {
    run_example(None);
}

#[test]
fn the_c_abi_conventions_hold_from_c() {
    run_abi_check(None);
}

#[test]
fn the_shared_library_serves_c_programs_too() {
    let binary = compile_linked("abi_check", Linking::Shared);
    let output = Command::new(&binary)
        .env("LD_LIBRARY_PATH", shared_library().parent().unwrap())
        .output()
        .expect("cannot run abi_check linked with libwspush.so");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains(", 0 failed\n"), "{stdout}");
}

#[test]
fn the_c_example_is_clean_under_valgrind() {
    let Some(valgrind) = valgrind() else { return };
    let stderr = run_example(Some(&valgrind));
    assert_valgrind_clean("bindings/c/example.c", &stderr);
}

#[test]
fn the_c_abi_conventions_are_clean_under_valgrind() {
    let Some(valgrind) = valgrind() else { return };
    let stderr = run_abi_check(Some(&valgrind));
    assert_valgrind_clean("bindings/c/abi_check.c", &stderr);
}

#[test]
fn tokens_the_authorizer_origins_and_the_address_limit_work_from_c() {
    run_auth_check(None);
}

#[test]
fn the_admission_checks_are_clean_under_valgrind() {
    let Some(valgrind) = valgrind() else { return };
    let stderr = run_auth_check(Some(&valgrind));
    assert_valgrind_clean("bindings/c/auth_check.c", &stderr);
}

#[test]
fn a_certificate_reload_from_c_serves_new_connections_the_new_certificate() {
    run_tls_check(None);
}

#[test]
fn the_certificate_reload_is_clean_under_valgrind() {
    let Some(valgrind) = valgrind() else { return };
    let stderr = run_tls_check(Some(&valgrind));
    assert_valgrind_clean("bindings/c/tls_check.c", &stderr);
}

#[test]
fn cluster_mode_works_through_the_c_abi() {
    if Command::new("redis-server").arg("--version").output().is_err() {
        assert!(
            std::env::var_os("WSPUSH_REQUIRE_REDIS").is_none(),
            "WSPUSH_REQUIRE_REDIS is set but redis-server is not installed"
        );
        eprintln!(
            "\n!!!!! SKIPPED: redis-server is not installed; cluster mode was NOT tested from C !!!!!\n"
        );
        return;
    }
    let redis = RedisServer::start();
    let binary = compile("cluster_check");
    let program = Program::start_with_args(&binary, None, &[&redis.url()]);
    let (status, stdout, stderr) = program.finish();
    assert!(status.success(), "cluster_check failed ({status}):\n{stdout}\nstderr:\n{stderr}");
    assert!(!stdout.contains("not ok"), "{stdout}");
    assert!(stdout.ends_with("cluster_check: all passed\n"), "{stdout}");
}
