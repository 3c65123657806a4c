//! The Java binding: `bindings/java/test.sh` builds the release jar with plain javac/jar (and
//! the JNI glue with the C compiler), then runs its test program with `java -ea -Xcheck:jni`
//! with nothing but the jar and the test classes on its classpath (no `java.library.path`:
//! the library is extracted from the jar on first use): the engine
//! hosted in the JVM, real clients from the JDK's `java.net.http` WebSocket client, two
//! sockets of one id each getting exactly one copy, client messages in the listener, a
//! broadcast, stats, close, and `send` after close throwing; `sendPositioned` with history on
//! (offsets 1, 2 in one epoch) and off (null), refused in a listener, timing out while a
//! listener holds the worker. Any `-Xcheck:jni` warning fails. Then the loader: four JVMs
//! extracting at once, a damaged cached library, an unwritable cache, a platform the jar has
//! no library for, `-Dwspush.library` overriding; the jar's contents, sources and javadoc.
//! And `wss://` (`WsPushTlsTest.java`): the JDK's client, trusting only a CA made here, against
//! the engine serving a certificate of that CA, then `reloadTls()` with one of a second CA
//! (new clients trusting only the second connect, only the first are refused, one resuming
//! its TLS session from before is let in, the first connection keeps receiving), a bad file
//! refused with the engine's message.
//!
//! Without a JDK (no `javac`) the test says so loudly and passes, unless
//! `WSPUSH_REQUIRE_JAVA=1` (set by `scripts/test-bindings.sh`) makes that a failure.

#[path = "tls_support.rs"]
mod tls_support;

use std::path::PathBuf;
use std::process::Command;

use tls_support::{scratch_dir, TestCa};
use wspush_tests::workspace_root;

/// The Java TLS test's files (`WsPushTlsTest.java` says what each is for): two CAs' roots, the
/// engine's chain and key from the first, and their renewal from the second.
fn java_tls_files() -> PathBuf {
    let dir = scratch_dir("java-wss");
    let (first, second) = (TestCa::new(), TestCa::new());
    std::fs::write(dir.join("first-ca.pem"), first.root_pem()).unwrap();
    std::fs::write(dir.join("second-ca.pem"), second.root_pem()).unwrap();
    first.server_cert("wspush Java first").write(&dir, "server");
    second.server_cert("wspush Java second").write(&dir, "second");
    dir
}

#[test]
fn the_java_binding_passes_its_test_under_xcheck_jni() {
    let has_javac = Command::new("javac").arg("-version").output().is_ok_and(|o| o.status.success());
    let has_javac = has_javac
        || std::env::var_os("JAVA_HOME")
            .is_some_and(|home| std::path::Path::new(&home).join("bin/javac").is_file());
    if !has_javac {
        assert!(
            std::env::var_os("WSPUSH_REQUIRE_JAVA").is_none(),
            "WSPUSH_REQUIRE_JAVA is set but there is no JDK (javac)"
        );
        eprintln!("\n!!!!! SKIPPED: no JDK (javac) on this machine; the Java binding was NOT tested !!!!!\n");
        return;
    }
    let output = Command::new("bash")
        .arg(workspace_root().join("bindings/java/test.sh"))
        .env_remove("WSPUSH_PROFILE")
        .env("WSPUSH_TEST_TLS_DIR", java_tls_files())
        .output()
        .expect("cannot run bindings/java/test.sh");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "bindings/java/test.sh failed ({}):\n{stdout}\n{stderr}", output.status);
    assert!(stdout.contains(" passed, 0 failed\n"), "{stdout}");
    assert!(!stdout.contains("not ok"), "{stdout}");
    assert!(stdout.contains("test.sh: the Java binding passed"), "{stdout}");
    assert!(stdout.contains("ok - the packaged library is a release build without debug info ("), "{stdout}");
    assert!(stdout.contains("ok - no library for the platform is a clear error naming it: "), "{stdout}");
    for check in [
        "ok - sendPositioned, history off: null\n",
        "ok - sendPositioned, history on: offset 1\n",
        "ok - sendPositioned(byte[]), history on: then offset 2\n",
        "ok - sendPositioned: the same epoch for both\n",
        "ok - sendPositioned in a listener: WRONG_THREAD\n",
        "ok - sendPositioned after a timeout: offset 2 (the timed-out message took 1)\n",
        "ok - reloadTls without TLS: NO_TLS (",
        "ok - wss: a JDK client trusting only the first CA connects\n",
        "ok - wss client trusting the first CA received exactly [over TLS 1, over TLS 2]\n",
        "ok - reloadTls: a new client trusting only the second CA connects\n",
        "ok - reloadTls: a new client trusting only the first CA is refused (",
        "ok - reloadTls: a client resuming a session from before still connects\n",
        "ok - wss client trusting the first CA received exactly [after the reload]\n",
        "ok - reloadTls: a file that is not PEM (",
        "ok - a refused reload keeps the second certificate\n",
        "ok - wss client trusting the first CA received exactly [still serving]\n",
        "ok - stats: handshakeTls 1 (the refused client)\n",
        "ok - wss client trusting the first CA: nothing more (each message once)\n",
        "ok - reloadTls after close (",
        "ok - the jar carries the classes, the library for this platform, its index and the licences\n",
        "ok - the sources and javadoc jars\n",
        "ok - first use extracted the library once, into the version's directory\n",
        "ok - four JVMs extracting at once all loaded it, leaving one complete file\n",
        "ok - a damaged cached library is extracted again\n",
        "ok - an unwritable cache directory falls back to a private temporary one\n",
        "ok - the default cache is $XDG_CACHE_HOME/wspush\n",
        "ok - -Dwspush.library overrides the bundled library (nothing extracted)\n",
    ] {
        assert!(stdout.contains(check), "the Java test did not print {check:?}:\n{stdout}");
    }
}
