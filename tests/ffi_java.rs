//! The Java binding: `bindings/java/test.sh` builds it with plain javac/jar (and the JNI glue
//! with the C compiler), then runs its test program with `java -ea -Xcheck:jni`: the engine
//! hosted in the JVM, real clients from the JDK's `java.net.http` WebSocket client, two
//! sockets of one id each getting exactly one copy, client messages in the listener, a
//! broadcast, stats, close, and `send` after close throwing; `sendPositioned` with history on
//! (offsets 1, 2 in one epoch) and off (null), refused in a listener, timing out while a
//! listener holds the worker. Any `-Xcheck:jni` warning fails.
//!
//! Without a JDK (no `javac`) the test says so loudly and passes, unless
//! `WSPUSH_REQUIRE_JAVA=1` (set by `scripts/test-bindings.sh`) makes that a failure.

use std::process::Command;

use wspush_tests::workspace_root;

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
    let mut command = Command::new("bash");
    command.arg(workspace_root().join("bindings/java/test.sh"));
    if !cfg!(debug_assertions) {
        command.env("WSPUSH_PROFILE", "release");
    }
    let output = command.output().expect("cannot run bindings/java/test.sh");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "bindings/java/test.sh failed ({}):\n{stdout}\n{stderr}", output.status);
    assert!(stdout.contains(" passed, 0 failed\n"), "{stdout}");
    assert!(!stdout.contains("not ok"), "{stdout}");
    assert!(stdout.contains("test.sh: the Java binding passed"), "{stdout}");
    for check in [
        "ok - sendPositioned, history off: null\n",
        "ok - sendPositioned, history on: offset 1\n",
        "ok - sendPositioned(byte[]), history on: then offset 2\n",
        "ok - sendPositioned: the same epoch for both\n",
        "ok - sendPositioned in a listener: WRONG_THREAD\n",
        "ok - sendPositioned after a timeout: offset 2 (the timed-out message took 1)\n",
    ] {
        assert!(stdout.contains(check), "the Java test did not print {check:?}:\n{stdout}");
    }
}
