package io.wspush.test;

import static io.wspush.test.WsPushTest.TIMEOUT_SECONDS;
import static io.wspush.test.WsPushTest.check;
import static io.wspush.test.WsPushTest.checkEquals;
import static io.wspush.test.WsPushTest.checkThrows;

import io.wspush.WsPush;
import io.wspush.WsPushException;
import java.io.InputStream;
import java.net.URI;
import java.net.http.HttpClient;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.security.KeyStore;
import java.security.cert.Certificate;
import java.security.cert.CertificateFactory;
import java.util.List;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import javax.net.ssl.SSLContext;
import javax.net.ssl.SSLHandshakeException;
import javax.net.ssl.TrustManagerFactory;

/**
 * {@code wss://} from the JDK's own WebSocket client to the engine hosted in this JVM, and
 * {@link WsPush#reloadTls()}. The test's TLS files come from the Rust driver
 * ({@code tests/ffi_java.rs}), in the directory named by {@code -Dwspush.test.tls}: two
 * certificate authorities ({@code first-ca.pem}, {@code second-ca.pem}), the engine's files
 * ({@code server.crt}, {@code server.key}: a chain and key issued by the first) and their
 * renewal ({@code second.crt}, {@code second.key}: issued by the second).
 *
 * <p>Each client trusts one CA only, so which one connects shows which certificate the engine
 * serves: before the reload the first, after it the second (a new client trusting the first is
 * refused in the TLS handshake; one that resumes its TLS session from before the reload is
 * shown no certificate, and connects), after a refused reload still the second; the connection
 * made before the reload receives throughout.
 */
final class WsPushTlsTest {
    private WsPushTlsTest() {}

    static void run(Path dir) throws Exception {
        noTls();
        Path cert = dir.resolve("server.crt");
        Path key = dir.resolve("server.key");
        HttpClient trustsFirst = HttpClient.newBuilder().sslContext(trusting(dir.resolve("first-ca.pem"))).build();
        HttpClient trustsSecond = HttpClient.newBuilder().sslContext(trusting(dir.resolve("second-ca.pem"))).build();

        WsPush push = WsPush.start("{\"ws_listen\": \"127.0.0.1:0\", \"workers\": 2, \"ping_interval_ms\": 0, "
                + "\"tls_cert\": " + jsonString(cert) + ", \"tls_key\": " + jsonString(key) + "}");
        WsPushTest.Recorder recorder = new WsPushTest.Recorder();
        push.setListener(recorder);
        URI uri = URI.create("wss://127.0.0.1:" + push.localPort() + "/websocket/tls-user");

        WsPushTest.Client before = WsPushTest.Client.connect(trustsFirst, uri, "wss client trusting the first CA");
        recorder.expect(List.of("open tls-user"), "wss: a JDK client trusting only the first CA connects");
        push.send("tls-user", "over TLS 1");
        push.send("tls-user", "over TLS 2");
        before.expectMessages(List.of("over TLS 1", "over TLS 2"));

        // A certificate manager renews the files (each through a rename), then the host reloads.
        Files.move(dir.resolve("second.crt"), cert, StandardCopyOption.REPLACE_EXISTING,
                StandardCopyOption.ATOMIC_MOVE);
        Files.move(dir.resolve("second.key"), key, StandardCopyOption.REPLACE_EXISTING,
                StandardCopyOption.ATOMIC_MOVE);
        push.reloadTls();
        check(true, "reloadTls() with the second CA's certificate");
        WsPushTest.Client after = WsPushTest.Client.connect(trustsSecond, uri, "wss client trusting the second CA");
        recorder.expect(List.of("open tls-user"), "reloadTls: a new client trusting only the second CA connects");
        HttpClient trustsFirstAnew = HttpClient.newBuilder().sslContext(trusting(dir.resolve("first-ca.pem"))).build();
        refusedInTlsHandshake(trustsFirstAnew, uri, "reloadTls: a new client trusting only the first CA is refused");
        // A client that kept its TLS session from before the reload resumes it: a resumed
        // handshake shows no certificate, and the reload ends no session.
        WsPushTest.Client resumed = WsPushTest.Client.connect(trustsFirst, uri, "wss client resuming its session");
        recorder.expect(List.of("open tls-user"), "reloadTls: a client resuming a session from before still connects");
        push.send("tls-user", "after the reload");
        for (WsPushTest.Client client : List.of(before, after, resumed)) {
            client.expectMessages(List.of("after the reload"));
        }

        // A bad renewal is refused with the engine's message; the second certificate stays.
        Path junk = dir.resolve("junk.crt");
        Files.writeString(junk, "not a certificate\n");
        Files.move(junk, cert, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
        checkThrows(WsPushException.INVALID_CONFIG, "WSPUSH_STATUS_INVALID_CONFIG: invalid setting `tls_cert`: "
                + cert + ": no certificate in it (expected PEM `-----BEGIN CERTIFICATE-----` blocks)",
                push::reloadTls, "reloadTls: a file that is not PEM");
        WsPushTest.Client third = WsPushTest.Client.connect(trustsSecond, uri, "wss client after the refusal");
        recorder.expect(List.of("open tls-user"), "a refused reload keeps the second certificate");
        push.send("tls-user", "still serving");
        for (WsPushTest.Client client : List.of(before, after, resumed, third)) {
            client.expectMessages(List.of("still serving"));
        }
        checkEventually(1L, () -> push.stats().handshakeTls(), "stats: handshakeTls 1 (the refused client)");
        checkEquals(4L, push.stats().connectionsOpened(), "stats: 4 connections opened over TLS");

        push.close();
        for (WsPushTest.Client client : List.of(before, after, resumed, third)) {
            checkEquals(1001, client.closeCode.get(TIMEOUT_SECONDS, TimeUnit.SECONDS), client.name + " got close 1001");
            checkEquals(List.of(), List.copyOf(client.received), client.name + ": nothing more (each message once)");
        }
        checkThrows(WsPushException.SHUT_DOWN, "closed", push::reloadTls, "reloadTls after close");
    }

    /** An engine without {@code tls_cert}: NO_TLS, with the engine's message. */
    private static void noTls() throws Exception {
        try (WsPush plain = WsPush.start("{\"ws_listen\": \"127.0.0.1:0\", \"workers\": 1}")) {
            checkThrows(WsPushException.NO_TLS,
                    "WSPUSH_STATUS_NO_TLS: the engine serves no TLS (`tls_cert` and `tls_key` are not set): "
                            + "nothing to reload",
                    plain::reloadTls, "reloadTls without TLS: NO_TLS");
        }
    }

    /** A TLS context that trusts the CA certificates of one PEM file, and nothing else. */
    private static SSLContext trusting(Path caPem) throws Exception {
        KeyStore roots = KeyStore.getInstance(KeyStore.getDefaultType());
        roots.load(null, null);
        try (InputStream in = Files.newInputStream(caPem)) {
            int n = 0;
            for (Certificate ca : CertificateFactory.getInstance("X.509").generateCertificates(in)) {
                roots.setCertificateEntry("ca-" + n++, ca);
            }
            check(n == 1, "the test CA " + caPem.getFileName() + " read from its PEM file");
        }
        TrustManagerFactory trust = TrustManagerFactory.getInstance(TrustManagerFactory.getDefaultAlgorithm());
        trust.init(roots);
        SSLContext context = SSLContext.getInstance("TLS");
        context.init(null, trust.getTrustManagers(), null);
        return context;
    }

    /** Checks that a WebSocket to {@code uri} fails in the TLS handshake. */
    private static void refusedInTlsHandshake(HttpClient http, URI uri, String what) throws Exception {
        try {
            http.newWebSocketBuilder().buildAsync(uri, new WsPushTest.Client("refused"))
                    .get(TIMEOUT_SECONDS, TimeUnit.SECONDS);
        } catch (ExecutionException e) {
            for (Throwable cause = e.getCause(); cause != null; cause = cause.getCause()) {
                if (cause instanceof SSLHandshakeException) {
                    check(true, what + " (" + cause.getMessage() + ")");
                    return;
                }
            }
            throw e;
        }
        check(false, what + ": it connected");
    }

    interface Counter {
        long read();
    }

    /** Reads {@code counter} until it is {@code expected} (the engine counts asynchronously). */
    private static void checkEventually(long expected, Counter counter, String what) throws InterruptedException {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(TIMEOUT_SECONDS);
        long value = counter.read();
        while (value != expected && System.nanoTime() < deadline) {
            Thread.sleep(10);
            value = counter.read();
        }
        checkEquals(expected, value, what);
    }

    /** {@code path} as a JSON string (quotes and backslashes escaped). */
    private static String jsonString(Path path) {
        String text = path.toString();
        StringBuilder json = new StringBuilder("\"");
        for (char c : text.toCharArray()) {
            if (c == '"' || c == '\\') {
                json.append('\\');
            }
            json.append(c);
        }
        return json.append('"').toString();
    }
}
