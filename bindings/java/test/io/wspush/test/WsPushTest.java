package io.wspush.test;

import io.wspush.AuthorizeRequest;
import io.wspush.WsPush;
import io.wspush.WsPushAuthorizer;
import io.wspush.WsPushException;
import io.wspush.WsPushListener;
import io.wspush.WsPushStats;
import io.wspush.WsPushTimeoutException;
import java.io.ByteArrayOutputStream;
import java.lang.ref.WeakReference;
import java.net.InetSocketAddress;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.WebSocket;
import java.net.http.WebSocketHandshakeException;
import java.nio.ByteBuffer;
import java.nio.channels.SelectionKey;
import java.nio.channels.Selector;
import java.nio.channels.ServerSocketChannel;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Base64;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Optional;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionStage;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import javax.crypto.Mac;
import javax.crypto.spec.SecretKeySpec;

/**
 * The Java binding end to end, run with {@code java -ea -Xcheck:jni}: the engine in this JVM,
 * real WebSocket clients from the JDK's own {@code java.net.http} client. Prints one line per
 * check and "N passed, 0 failed"; exits 1 on the first failure. With
 * {@code -Dwspush.test.tls=DIR} (the test certificates' directory) it also runs
 * {@link WsPushTlsTest}: {@code wss://} and {@code reloadTls}.
 *
 * <p>With the argument {@code load-error} it checks instead that a missing native library is a
 * clear error (run it with {@code -Dwspush.library=/nonexistent/libwspush_jni.so}); with
 * {@code load-error-platform} that a platform the jar has no library for is one (run it with
 * {@code -Dos.arch=sparc64}); with {@code version} only that the library loads.
 */
public final class WsPushTest {
    static final long TIMEOUT_SECONDS = 10;
    private static int passed;

    public static void main(String[] args) throws Exception {
        boolean assertions = false;
        assert assertions = true;
        check(assertions, "assertions are enabled (-ea)");
        if (args.length == 1 && args[0].equals("load-error")) {
            loadError();
        } else if (args.length == 1 && args[0].equals("load-error-platform")) {
            loadErrorPlatform();
        } else if (args.length == 1 && args[0].equals("version")) {
            check(WsPush.version().matches("\\d+\\.\\d+\\.\\d+"), "loaded: version() is " + WsPush.version());
        } else {
            endToEnd();
            tokens();
            authorizer();
            authorizerReferences();
            closeRacesWithSenders();
            positioned();
            readmeSnippet();
            String tls = System.getProperty("wspush.test.tls");
            if (tls == null) {
                System.out.println("# SKIPPED: wss:// and reloadTls: no -Dwspush.test.tls (tests/ffi_java.rs makes "
                        + "the certificates and sets it)");
            } else {
                WsPushTlsTest.run(Path.of(tls));
            }
        }
        System.out.println(passed + " passed, 0 failed");
    }

    // ---------------------------------------------------------------------------------------

    static void check(boolean ok, String what) {
        if (!ok) {
            System.out.println("not ok - " + what);
            System.out.println(passed + " passed, 1 failed");
            System.exit(1);
        }
        passed++;
        System.out.println("ok - " + what);
    }

    static void checkEquals(Object expected, Object actual, String what) {
        boolean equal = expected instanceof byte[] && actual instanceof byte[]
                ? Arrays.equals((byte[]) expected, (byte[]) actual)
                : Objects.equals(expected, actual);
        if (!equal) {
            System.out.println("# expected: " + show(expected));
            System.out.println("#      got: " + show(actual));
        }
        check(equal, what);
    }

    static String show(Object value) {
        if (value instanceof byte[] bytes) {
            return "bytes" + Arrays.toString(bytes);
        }
        if (value instanceof List<?> list) {
            List<String> items = new ArrayList<>();
            for (Object item : list) {
                items.add(show(item));
            }
            return items.toString();
        }
        return String.valueOf(value);
    }

    interface Body {
        void run() throws Exception;
    }

    /** Runs body and checks that it throws a WsPushException with this status and message. */
    static void checkThrows(int status, String messagePart, Body body, String what) throws Exception {
        try {
            body.run();
        } catch (WsPushException e) {
            boolean ok = e.status() == status && e.getMessage().contains(messagePart);
            if (!ok) {
                System.out.println("# got " + e.status() + ": " + e.getMessage());
            }
            check(ok, what + " (" + e.getMessage() + ")");
            return;
        }
        check(false, what + ": nothing was thrown");
    }

    // ---------------------------------------------------------------------------------------

    /** What the listener saw, in order, as text lines; and the connection of each message. */
    static final class Recorder implements WsPushListener {
        final BlockingQueue<String> events = new LinkedBlockingQueue<>();
        final Map<String, Long> connOfMessage = new ConcurrentHashMap<>();
        final AtomicInteger foreignThreads = new AtomicInteger();

        private void record(String event) {
            if (!Thread.currentThread().getName().startsWith("wspush-worker-")) {
                foreignThreads.incrementAndGet();
            }
            events.add(event);
        }

        @Override
        public void onOpen(long conn, String id) {
            record("open " + id);
        }

        @Override
        public void onMessage(long conn, String id, String text) {
            connOfMessage.put(text, conn);
            record("text " + id + " " + text);
        }

        @Override
        public void onMessage(long conn, String id, byte[] data) {
            record("binary " + id + " " + Arrays.toString(data));
        }

        @Override
        public void onClose(long conn, String id, int code) {
            record("close " + id + " " + code);
        }

        /** Waits for exactly these events, in any order; anything else is a failure. */
        void expect(List<String> expected, String what) throws InterruptedException {
            List<String> missing = new ArrayList<>(expected);
            List<String> unexpected = new ArrayList<>();
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(TIMEOUT_SECONDS);
            while (!missing.isEmpty() && unexpected.isEmpty()) {
                String event = events.poll(Math.max(0, deadline - System.nanoTime()), TimeUnit.NANOSECONDS);
                if (event == null) {
                    break;
                }
                if (!missing.remove(event)) {
                    unexpected.add(event);
                }
            }
            if (!missing.isEmpty() || !unexpected.isEmpty()) {
                System.out.println("# missing: " + missing + ", unexpected: " + unexpected);
            }
            check(missing.isEmpty() && unexpected.isEmpty(), what);
        }
    }

    /** A java.net.http WebSocket client that collects whole messages. */
    static final class Client implements WebSocket.Listener {
        final String name;
        final BlockingQueue<Object> received = new LinkedBlockingQueue<>();
        final CompletableFuture<Integer> closeCode = new CompletableFuture<>();
        private StringBuilder text = new StringBuilder();
        private ByteArrayOutputStream binary = new ByteArrayOutputStream();
        WebSocket socket;

        Client(String name) {
            this.name = name;
        }

        static Client connect(HttpClient http, URI uri, String name) throws Exception {
            Client client = new Client(name);
            client.socket = http.newWebSocketBuilder().buildAsync(uri, client).get(TIMEOUT_SECONDS, TimeUnit.SECONDS);
            return client;
        }

        @Override
        public void onOpen(WebSocket webSocket) {
            webSocket.request(1);
        }

        @Override
        public CompletionStage<?> onText(WebSocket webSocket, CharSequence data, boolean last) {
            text.append(data);
            if (last) {
                received.add(text.toString());
                text = new StringBuilder();
            }
            webSocket.request(1);
            return null;
        }

        @Override
        public CompletionStage<?> onBinary(WebSocket webSocket, ByteBuffer data, boolean last) {
            byte[] chunk = new byte[data.remaining()];
            data.get(chunk);
            binary.writeBytes(chunk);
            if (last) {
                received.add(binary.toByteArray());
                binary = new ByteArrayOutputStream();
            }
            webSocket.request(1);
            return null;
        }

        @Override
        public CompletionStage<?> onClose(WebSocket webSocket, int statusCode, String reason) {
            closeCode.complete(statusCode);
            return null; // the client answers the close at once
        }

        @Override
        public void onError(WebSocket webSocket, Throwable error) {
            closeCode.completeExceptionally(error);
        }

        /** Reads messages until one equals `last`; checks they are exactly `expected`. */
        void expectMessages(List<Object> expected) throws InterruptedException {
            Object last = expected.get(expected.size() - 1);
            List<Object> got = new ArrayList<>();
            while (true) {
                Object message = received.poll(TIMEOUT_SECONDS, TimeUnit.SECONDS);
                if (message == null) {
                    break;
                }
                got.add(message);
                if (message.equals(last)) {
                    break;
                }
            }
            checkEquals(show(expected), show(got), name + " received exactly " + show(expected));
        }
    }

    /** A connection from the JDK client to a socket this test accepts itself. */
    static final class Accepted {
        final Client client;
        final SocketChannel channel;

        Accepted(Client client, SocketChannel channel) {
            this.client = client;
            this.channel = channel;
        }
    }

    /**
     * Starts a JDK client towards a ServerSocketChannel of ours and accepts it; the client's
     * handshake completes only once the engine, given the socket, answers it.
     */
    static Accepted acceptClient(HttpClient http, String name, Body handOver, SocketChannel[] accepted)
            throws Exception {
        try (ServerSocketChannel server = ServerSocketChannel.open();
                Selector selector = Selector.open()) {
            server.bind(new InetSocketAddress("127.0.0.1", 0));
            server.configureBlocking(false);
            server.register(selector, SelectionKey.OP_ACCEPT);
            int port = ((InetSocketAddress) server.getLocalAddress()).getPort();
            Client client = new Client(name);
            CompletableFuture<WebSocket> connecting =
                    http.newWebSocketBuilder().buildAsync(URI.create("ws://127.0.0.1:" + port + "/anything"), client);
            check(selector.select(TimeUnit.SECONDS.toMillis(TIMEOUT_SECONDS)) == 1, name + ": the client connected");
            SocketChannel channel = server.accept();
            check(channel != null && channel.isBlocking(), name + ": accepted a blocking SocketChannel");
            accepted[0] = channel;
            handOver.run();
            client.socket = connecting.get(TIMEOUT_SECONDS, TimeUnit.SECONDS);
            return new Accepted(client, channel);
        }
    }

    // ---------------------------------------------------------------------------------------

    static void loadError() {
        try {
            WsPush.start("{}");
        } catch (UnsatisfiedLinkError e) {
            check(e.getMessage().contains("cannot load the wspush native library")
                            && e.getMessage().contains("-Dwspush.library=/nonexistent/libwspush_jni.so"),
                    "a missing native library is a clear error: " + e.getMessage());
            return;
        }
        check(false, "a missing native library is an error");
    }

    /** Run with {@code -Dos.arch=sparc64}: a platform the jar carries no library for. */
    static void loadErrorPlatform() {
        try {
            WsPush.start("{}");
        } catch (UnsatisfiedLinkError e) {
            String message = e.getMessage();
            check(message.contains("this jar has none for os.name=" + System.getProperty("os.name") + ", os.arch=sparc64")
                            && message.contains("(platform linux-sparc64; it carries: linux-")
                            && message.contains("-Dwspush.library=/path/to/libwspush_jni.so"),
                    "no library for the platform is a clear error naming it: " + message);
            return;
        }
        check(false, "no library for the platform is an error");
    }

    static void endToEnd() throws Exception {
        check(WsPush.version().matches("\\d+\\.\\d+\\.\\d+"), "version() is " + WsPush.version());
        checkThrows(WsPushException.INVALID_CONFIG, "unknown setting `colour`",
                () -> WsPush.start("{\"colour\": \"blue\"}"), "start: an unknown key");
        checkThrows(WsPushException.INVALID_CONFIG, "invalid setting `workers`",
                () -> WsPush.start("{\"workers\": \"two\"}"), "start: a bad value");
        checkThrows(WsPushException.INVALID_CONFIG, "not valid JSON", () -> WsPush.start("{"), "start: bad JSON");

        WsPush push = WsPush.start("{\"ws_listen\": \"127.0.0.1:0\", \"workers\": 2, \"ping_interval_ms\": 0}");
        int port = push.localPort();
        check(port > 0, "started, listening on port " + port);
        Recorder recorder = new Recorder();
        push.setListener(recorder);

        HttpClient http = HttpClient.newHttpClient();
        URI user1 = URI.create("ws://127.0.0.1:" + port + "/websocket/user-1");
        Client a1 = Client.connect(http, user1, "user-1 socket A");
        Client a2 = Client.connect(http, user1, "user-1 socket B");
        Client other = Client.connect(http, URI.create("ws://127.0.0.1:" + port + "/websocket/other"), "other");
        recorder.expect(List.of("open user-1", "open user-1", "open other"), "onOpen for the 3 sockets");

        // Sockets accepted by the host and handed over: through a SocketChannel, and as an fd.
        SocketChannel[] accepted = new SocketChannel[1];
        Accepted r1 = acceptClient(http, "registered (SocketChannel)",
                () -> push.register(accepted[0], "registered"), accepted);
        check(!r1.channel.isOpen(), "register(SocketChannel): the channel is closed, the engine owns the socket");
        Accepted r2 = acceptClient(http, "registered (fd)", () -> {
            int fd = WsPush.detachFd(accepted[0]);
            check(fd >= 0 && !accepted[0].isOpen(), "detachFd: a new fd " + fd + ", the channel closed");
            push.register(fd, "registered-2");
        }, accepted);
        recorder.expect(List.of("open registered", "open registered-2"), "onOpen for the registered sockets");
        checkThrows(WsPushException.INVALID_ARGUMENT, "negative", () -> push.register(-1, "x"),
                "register: a bad fd");
        checkThrows(WsPushException.INVALID_ID, "the id contains `/`", () -> push.send("a/b", "x"),
                "send: a bad id");
        checkThrows(WsPushException.INVALID_ID, "the id is empty", () -> push.send("", new byte[] {1}),
                "send: an empty id");

        // Two sockets of one id: each gets exactly one copy of each message.
        byte[] binary = {1, 2, 3, (byte) 255};
        push.send("user-1", "hello user 1");
        push.send("user-1", binary);
        push.send("registered", "to registered");
        push.send("nobody", "to nobody");

        // Client messages reach the listener; a reply goes to the one socket.
        a1.socket.sendText("from A", true).get(TIMEOUT_SECONDS, TimeUnit.SECONDS);
        a2.socket.sendBinary(ByteBuffer.wrap(new byte[] {9, 8}), true).get(TIMEOUT_SECONDS, TimeUnit.SECONDS);
        recorder.expect(List.of("text user-1 from A", "binary user-1 [9, 8]"), "onMessage: text and binary");
        push.sendTo(recorder.connOfMessage.get("from A"), "reply to A");

        push.broadcast("to everyone");
        a1.expectMessages(List.of("hello user 1", binary, "reply to A", "to everyone"));
        a2.expectMessages(List.of("hello user 1", binary, "to everyone"));
        other.expectMessages(List.of("to everyone"));
        r1.client.expectMessages(List.of("to registered", "to everyone"));
        r2.client.expectMessages(List.of("to everyone"));

        WsPushStats stats = push.stats();
        checkEquals(5L, stats.connections(), "stats: 5 connections");
        checkEquals(4L, stats.ids(), "stats: 4 ids");
        checkEquals(5L, stats.connectionsOpened(), "stats: 5 opened");
        checkEquals(2L, stats.messagesIn(), "stats: 2 messages in");
        checkEquals(8L, stats.bytesIn(), "stats: 8 bytes in");
        checkEquals(11L, stats.messagesOut(), "stats: 11 messages out");
        checkEquals(0L, stats.handshakeFailures(), "stats: no failed handshake");
        check(!stats.clusterEnabled(), "stats: not in cluster mode");

        // A listener that throws, and tries to close the engine from a worker: both refused.
        CountDownLatch thrown = new CountDownLatch(1);
        int[] closeStatus = {0};
        push.setListener(new WsPushListener() {
            @Override
            public void onMessage(long conn, String id, String text) {
                try {
                    push.close();
                } catch (WsPushException e) {
                    closeStatus[0] = e.status();
                }
                thrown.countDown();
                throw new IllegalStateException("thrown by the test's listener: expected, logged");
            }
        });
        System.out.println("# an ERROR log of an IllegalStateException thrown by the test's listener follows");
        a1.socket.sendText("boom", true).get(TIMEOUT_SECONDS, TimeUnit.SECONDS);
        check(thrown.await(TIMEOUT_SECONDS, TimeUnit.SECONDS), "the throwing listener ran");
        checkEquals(WsPushException.IN_CALLBACK, closeStatus[0], "close() from a listener: IN_CALLBACK");
        check(!push.isClosed(), "the engine still runs after those");
        push.send("other", "still up");
        other.expectMessages(List.of("still up"));

        push.setListener(recorder);
        push.close();
        check(push.isClosed(), "close()");
        recorder.expect(List.of("close user-1 1001", "close user-1 1001", "close other 1001",
                "close registered 1001", "close registered-2 1001"), "onClose 1001 for every socket, during close()");
        check(recorder.foreignThreads.get() == 0, "every callback ran on a wspush-worker thread");
        for (Client client : List.of(a1, a2, other, r1.client, r2.client)) {
            checkEquals(1001, client.closeCode.get(TIMEOUT_SECONDS, TimeUnit.SECONDS), client.name + " got close 1001");
        }
        push.close();
        check(push.isClosed(), "close() again is a no-op");
        checkThrows(WsPushException.SHUT_DOWN, "closed", () -> push.send("user-1", "late"), "send after close");
        checkThrows(WsPushException.SHUT_DOWN, "closed", () -> push.broadcast("late"), "broadcast after close");
        checkThrows(WsPushException.SHUT_DOWN, "closed", push::stats, "stats after close");
        checkThrows(WsPushException.SHUT_DOWN, "closed", () -> push.setListener(null), "setListener after close");
    }

    // ---------------------------------------------------------------------------------------
    // Who may connect.

    static final String SECRET = "wspush-java-test-secret-0123456789abcdef";

    /** An HS256 JSON Web Token for {@code sub}, valid for 10 minutes, signed with SECRET. */
    static String hs256Token(String sub) throws Exception {
        Base64.Encoder base64 = Base64.getUrlEncoder().withoutPadding();
        long exp = System.currentTimeMillis() / 1000 + 600;
        String header = base64.encodeToString("{\"alg\":\"HS256\",\"typ\":\"JWT\"}".getBytes(StandardCharsets.UTF_8));
        String claims = base64.encodeToString(
                ("{\"sub\":\"" + sub + "\",\"exp\":" + exp + "}").getBytes(StandardCharsets.UTF_8));
        Mac mac = Mac.getInstance("HmacSHA256");
        mac.init(new SecretKeySpec(SECRET.getBytes(StandardCharsets.UTF_8), "HmacSHA256"));
        byte[] signature = mac.doFinal((header + "." + claims).getBytes(StandardCharsets.UTF_8));
        return header + "." + claims + "." + base64.encodeToString(signature);
    }

    /**
     * Opens a JDK WebSocket client with these extra headers: 101 and the client if it
     * connected, else the HTTP status of the refusal (from the WebSocketHandshakeException the
     * JDK client fails with) and no client.
     */
    static Map.Entry<Integer, Client> handshake(HttpClient http, URI uri, String name, String... headers)
            throws Exception {
        WebSocket.Builder builder = http.newWebSocketBuilder();
        for (int i = 0; i < headers.length; i += 2) {
            builder.header(headers[i], headers[i + 1]);
        }
        Client client = new Client(name);
        try {
            client.socket = builder.buildAsync(uri, client).get(TIMEOUT_SECONDS, TimeUnit.SECONDS);
            return Map.entry(101, client);
        } catch (ExecutionException e) {
            if (e.getCause() instanceof WebSocketHandshakeException refused) {
                return Map.entry(refused.getResponse().statusCode(), new Client(name + " (refused)"));
            }
            throw e;
        }
    }

    static void tokens() throws Exception {
        checkThrows(WsPushException.INVALID_CONFIG,
                "invalid setting `auth_issuer`: token settings need `auth_jwt_secret` or `auth_jwt_public_key`",
                () -> WsPush.start("{\"auth_issuer\": \"https://issuer.example\"}"),
                "start: a token setting without a key");
        checkThrows(WsPushException.INVALID_CONFIG, "invalid setting `auth_jwt_secret`: the HS256 secret must be",
                () -> WsPush.start("{\"auth_jwt_secret\": \"short\"}"), "start: a short secret");

        try (WsPush push = WsPush.start("{\"ws_listen\": \"127.0.0.1:0\", \"workers\": 1, \"ping_interval_ms\": 0, "
                + "\"auth_jwt_secret\": \"" + SECRET + "\"}")) {
            HttpClient http = HttpClient.newHttpClient();
            String base = "ws://127.0.0.1:" + push.localPort() + "/websocket/alice";
            checkEquals(401, handshake(http, URI.create(base), "no token").getKey(),
                    "token: a JDK client without a token is refused with 401");
            checkEquals(401, handshake(http, URI.create(base + "?token=" + hs256Token("bob")), "bob").getKey(),
                    "token: another id's token is refused with 401");
            Map.Entry<Integer, Client> alice =
                    handshake(http, URI.create(base + "?token=" + hs256Token("alice")), "alice (?token=)");
            checkEquals(101, alice.getKey(), "token: alice's HS256 token (minted with javax.crypto.Mac) connects");
            Map.Entry<Integer, Client> bearer = handshake(http, URI.create(base), "alice (Bearer)",
                    "Authorization", "Bearer " + hs256Token("alice"));
            checkEquals(101, bearer.getKey(), "token: as an Authorization: Bearer header too");
            push.send("alice", "for alice");
            alice.getValue().expectMessages(List.of("for alice"));
            bearer.getValue().expectMessages(List.of("for alice"));
            WsPushStats stats = push.stats();
            checkEquals(1L, stats.handshakeAuthMissing(), "stats: handshakeAuthMissing 1");
            checkEquals(1L, stats.handshakeAuthWrongSubject(), "stats: handshakeAuthWrongSubject 1");
            checkEquals(2L, stats.handshakeAuthFailures(), "stats: handshakeAuthFailures 2");
            checkEquals(2L, stats.handshakeFailures(), "stats: handshakeFailures counts them");
            checkEquals(2L, stats.connectionsOpened(), "stats: 2 opened");
            checkEquals(0L, stats.tokenExpirations(), "stats: no token expired yet");
        }
    }

    static void authorizer() throws Exception {
        try (WsPush push = WsPush.start("{\"ws_listen\": \"127.0.0.1:0\", \"workers\": 1, \"ping_interval_ms\": 0}")) {
            HttpClient http = HttpClient.newHttpClient();
            String base = "ws://127.0.0.1:" + push.localPort() + "/websocket/";
            BlockingQueue<AuthorizeRequest> asked = new LinkedBlockingQueue<>();
            BlockingQueue<String> threads = new LinkedBlockingQueue<>();
            // A session store of this "application": the X-Session header or the session cookie.
            Map<String, String> sessions = Map.of("s-bob", "bob", "s-carol", "carol");
            push.setAuthorizer(request -> {
                asked.add(request);
                threads.add(Thread.currentThread().getName());
                String session = request.header("X-Session").or(() -> request.cookie("session")).orElse("");
                return request.id().equals(sessions.get(session));
            });

            checkEquals(403, handshake(http, URI.create(base + "bob"), "no session").getKey(),
                    "authorizer: no session -> 403");
            checkEquals(403, handshake(http, URI.create(base + "bob"), "carol's session", "X-Session", "s-carol").getKey(),
                    "authorizer: another user's session -> 403");
            Map.Entry<Integer, Client> bob =
                    handshake(http, URI.create(base + "bob?lang=en"), "bob", "X-Session", "s-bob");
            checkEquals(101, bob.getKey(), "authorizer: bob's session -> connected");
            Map.Entry<Integer, Client> carol = handshake(http, URI.create(base + "carol"), "carol",
                    "Cookie", "theme=dark; session=s-carol");
            checkEquals(101, carol.getKey(), "authorizer: carol's session cookie -> connected");
            push.send("bob", "for bob");
            bob.getValue().expectMessages(List.of("for bob"));

            List<AuthorizeRequest> requests = new ArrayList<>();
            asked.drainTo(requests);
            checkEquals(4, requests.size(), "authorizer: asked once per upgrade");
            AuthorizeRequest third = requests.get(2);
            checkEquals("bob", third.id(), "authorizer: sees the id");
            checkEquals("/websocket/bob?lang=en", third.path(), "authorizer: sees the path and query");
            checkEquals(List.of("s-bob"), third.headers().get("x-session"),
                    "authorizer: sees the headers, names lower-cased");
            check(third.headers().containsKey("host") && third.headers().containsKey("sec-websocket-key"),
                    "authorizer: sees every header: " + third.headers().keySet());
            check(third.peer() != null && third.peer().startsWith("127.0.0.1:"),
                    "authorizer: sees the client's address " + third.peer());
            checkEquals(Optional.of("dark"), requests.get(3).cookie("theme"), "AuthorizeRequest.cookie");
            List<String> names = new ArrayList<>();
            threads.drainTo(names);
            checkEquals(List.of("wspush-acceptor"), names.stream().distinct().toList(),
                    "authorizer: called on the wspush-acceptor thread");

            System.out.println("# an ERROR log of an IllegalStateException thrown by the test's authorizer follows");
            push.setAuthorizer(request -> {
                throw new IllegalStateException("thrown by the test's authorizer: expected, logged");
            });
            checkEquals(403, handshake(http, URI.create(base + "bob"), "throwing", "X-Session", "s-bob").getKey(),
                    "authorizer: one that throws denies -> 403");

            push.setAuthorizer(null);
            Map.Entry<Integer, Client> open = handshake(http, URI.create(base + "dave"), "no authorizer");
            checkEquals(101, open.getKey(), "setAuthorizer(null): anyone connects again");

            WsPushStats stats = push.stats();
            checkEquals(3L, stats.handshakeForbidden(), "stats: handshakeForbidden 3 (two denials, one throw)");
            checkEquals(3L, stats.connectionsOpened(), "stats: 3 opened");
        }
    }

    /** Forces collections until `ref` is cleared (or the timeout). */
    static boolean collected(WeakReference<?> ref) throws InterruptedException {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(TIMEOUT_SECONDS);
        while (ref.get() != null && System.nanoTime() < deadline) {
            System.gc();
            Thread.sleep(20);
        }
        return ref.get() == null;
    }

    /** The engine's global reference to an authorizer goes on replace and on close. */
    static void authorizerReferences() throws Exception {
        WsPush push = WsPush.start("{\"workers\": 1}");
        WsPushAuthorizer first = new WsPushAuthorizer() {
            @Override
            public boolean authorize(AuthorizeRequest request) {
                return true;
            }
        };
        WeakReference<WsPushAuthorizer> firstRef = new WeakReference<>(first);
        push.setAuthorizer(first);
        first = null;
        for (int i = 0; i < 3; i++) {
            System.gc();
            Thread.sleep(20);
        }
        check(firstRef.get() != null, "the engine holds the authorizer while it is set");
        WsPushAuthorizer second = new WsPushAuthorizer() {
            @Override
            public boolean authorize(AuthorizeRequest request) {
                return false;
            }
        };
        WeakReference<WsPushAuthorizer> secondRef = new WeakReference<>(second);
        push.setAuthorizer(second);
        second = null;
        check(collected(firstRef), "setAuthorizer: the replaced authorizer is released");
        push.close();
        check(collected(secondRef), "close(): the authorizer is released");
        checkThrows(WsPushException.SHUT_DOWN, "closed", () -> push.setAuthorizer(null), "setAuthorizer after close");
    }

    /** The README's Spring-style service (bindings/java/examples) works as shown. */
    static void readmeSnippet() throws Exception {
        try (example.PushService service = new example.PushService("{\"ws_listen\": \"127.0.0.1:0\"}")) {
            Client browser = Client.connect(HttpClient.newHttpClient(),
                    URI.create("ws://127.0.0.1:" + service.port() + "/websocket/456"), "README snippet client");
            browser.expectMessages(List.of("welcome 456"));
            checkEquals(1L, service.onlineConnections(), "README snippet: 1 connection online");
            service.orderShipped(456, 789);
            browser.expectMessages(List.of("order 789 shipped"));
        }
    }

    /**
     * sendPositioned: offsets 1, 2 in one epoch with history on; null with it off; refused in a
     * listener (WRONG_THREAD); a timeout while the listener holds the one worker, the message
     * still sent.
     */
    static void positioned() throws Exception {
        Duration wait = Duration.ofSeconds(TIMEOUT_SECONDS);
        try (WsPush off = WsPush.start("{\"workers\": 1}")) {
            checkEquals(null, off.sendPositioned("h", "x", wait), "sendPositioned, history off: null");
            checkEquals(null, off.sendPositioned("h", new byte[] {1}, wait), "sendPositioned(byte[]), history off: null");
        }
        WsPush push = WsPush.start("{\"ws_listen\": \"127.0.0.1:0\", \"workers\": 1, \"ping_interval_ms\": 0, "
                + "\"history_size\": 8}");
        WsPush.Position first = push.sendPositioned("h", "one", wait);
        WsPush.Position second = push.sendPositioned("h", new byte[] {2}, wait);
        checkEquals(1L, first.offset(), "sendPositioned, history on: offset 1");
        checkEquals(2L, second.offset(), "sendPositioned(byte[]), history on: then offset 2");
        check(first.epoch().matches("[0-9a-z]{8}"), "sendPositioned: an 8-character epoch " + first.epoch());
        checkEquals(first.epoch(), second.epoch(), "sendPositioned: the same epoch for both");
        checkEquals(first.epoch() + ":1", first.toString(), "Position.toString() is EPOCH:OFFSET");
        checkEquals(1L, push.sendPositioned("other", "x", wait).offset(), "sendPositioned: another id starts at 1");
        checkThrows(WsPushException.INVALID_ID, "the id contains `/`", () -> push.sendPositioned("a/b", "x", wait),
                "sendPositioned: a bad id");

        // The listener refuses to wait on its own worker, then holds that (only) worker.
        CountDownLatch entered = new CountDownLatch(1);
        CountDownLatch release = new CountDownLatch(1);
        String[] inListener = {"nothing thrown"};
        push.setListener(new WsPushListener() {
            @Override
            public void onOpen(long conn, String id) {
                try {
                    push.sendPositioned(id, "inside", wait);
                } catch (WsPushException e) {
                    inListener[0] = e.statusName() + " " + e.status();
                }
                entered.countDown();
                try {
                    release.await();
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                }
            }
        });
        Client client = new Client("positioned client");
        CompletableFuture<WebSocket> connecting = HttpClient.newHttpClient().newWebSocketBuilder()
                .buildAsync(URI.create("ws://127.0.0.1:" + push.localPort() + "/websocket/t"), client);
        check(entered.await(TIMEOUT_SECONDS, TimeUnit.SECONDS), "sendPositioned: onOpen holds the one worker");
        checkEquals("WSPUSH_STATUS_WRONG_THREAD " + WsPushException.WRONG_THREAD, inListener[0],
                "sendPositioned in a listener: WRONG_THREAD");
        try {
            push.sendPositioned("t", "late", Duration.ofMillis(100));
            check(false, "sendPositioned while the worker is held: nothing was thrown");
        } catch (WsPushTimeoutException e) {
            checkEquals(WsPushException.TIMEOUT, e.status(), "sendPositioned while the worker is held: "
                    + "WsPushTimeoutException (" + e.getMessage() + ")");
            check(e.getMessage().equals("WSPUSH_STATUS_TIMEOUT: the message was sent but its position was not "
                    + "known within 100 ms"), "WsPushTimeoutException: its message");
        }
        release.countDown();
        checkEquals(2L, push.sendPositioned("t", "next", wait).offset(),
                "sendPositioned after a timeout: offset 2 (the timed-out message took 1)");
        client.socket = connecting.get(TIMEOUT_SECONDS, TimeUnit.SECONDS);
        client.expectMessages(List.of("late", "next"));
        push.close();
        checkThrows(WsPushException.SHUT_DOWN, "closed", () -> push.sendPositioned("h", "late", wait),
                "sendPositioned after close");
    }

    /** close() while other threads send: they stop with SHUT_DOWN, nothing crashes. */
    static void closeRacesWithSenders() throws Exception {
        WsPush push = WsPush.start("{\"workers\": 1}");
        push.setListener(new WsPushListener() {});
        Map<Integer, Integer> outcomes = new HashMap<>();
        List<Thread> senders = new ArrayList<>();
        CountDownLatch started = new CountDownLatch(4);
        for (int t = 0; t < 4; t++) {
            Thread sender = new Thread(() -> {
                started.countDown();
                int status = 0;
                while (status == 0) {
                    try {
                        push.send("someone", "x");
                    } catch (WsPushException e) {
                        if (e.status() != WsPushException.QUEUE_FULL) {
                            status = e.status();
                        }
                    }
                }
                synchronized (outcomes) {
                    outcomes.merge(status, 1, Integer::sum);
                }
            });
            sender.start();
            senders.add(sender);
        }
        check(started.await(TIMEOUT_SECONDS, TimeUnit.SECONDS), "4 threads sending");
        push.close();
        for (Thread sender : senders) {
            sender.join(TimeUnit.SECONDS.toMillis(TIMEOUT_SECONDS));
        }
        checkEquals(Map.of(WsPushException.SHUT_DOWN, 4), outcomes, "close() during sends: each sender got SHUT_DOWN");
    }
}
