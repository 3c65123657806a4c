package io.wspush;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.locks.ReentrantReadWriteLock;

/**
 * The wspush engine, hosted in this JVM: push messages to every WebSocket of an id.
 *
 * <pre>{@code
 * try (WsPush push = WsPush.start("{\"ws_listen\": \"0.0.0.0:8081\"}")) {
 *     // browsers connect to ws://host:8081/websocket/456
 *     push.send("456", "order 456 shipped");
 * }
 * }</pre>
 *
 * <p>Thread-safe: call any method from any thread. Sends never block: a message is framed
 * once and queued to the engine's worker threads, which own the sockets ({@code sendPositioned}
 * alone waits, for the message's place in the id's history). {@link #close()}
 * stops the engine (closing every socket with 1001) and frees it; it is idempotent, and every
 * call afterwards throws a {@link WsPushException} with status {@code SHUT_DOWN}. There is
 * no finalizer: close it (try-with-resources, or your framework's shutdown hook).
 *
 * <p>The native library {@code libwspush_jni.so} (the JNI glue with libwspush linked in) is
 * loaded on first use: from the path in the system property {@code wspush.library} if set,
 * else the one this jar carries for the running platform (e.g. {@code linux-x86_64}),
 * extracted once into {@code ~/.cache/wspush/VERSION/} (or {@code wspush.cache.dir}), else by
 * name from {@code java.library.path}. If none loads, every method that needs it throws an
 * {@link UnsatisfiedLinkError} naming the platform and where it looked.
 */
public final class WsPush implements AutoCloseable {
    /** Text opcode ({@code WSPUSH_OPCODE_TEXT}). */
    private static final int TEXT = 1;
    /** Binary opcode ({@code WSPUSH_OPCODE_BINARY}). */
    private static final int BINARY = 2;
    /** Statuses after which {@code register} left the fd to its caller. */
    private static final int[] FD_NOT_TAKEN = {
        WsPushException.NULL_ARGUMENT,
        WsPushException.INVALID_UTF8,
        WsPushException.INVALID_ID,
        WsPushException.INVALID_ARGUMENT
    };

    private static final String LOAD_ERROR = NativeLibrary.load();

    /** The native engine; 0 once closed. Read under the read lock, cleared under the write lock. */
    private volatile long handle;

    private final ReentrantReadWriteLock lock = new ReentrantReadWriteLock();
    private final AtomicBoolean closed = new AtomicBoolean();

    private WsPush(long handle) {
        this.handle = handle;
    }

    private static void requireNativeLibrary() {
        if (LOAD_ERROR != null) {
            throw new UnsatisfiedLinkError(LOAD_ERROR);
        }
    }

    /**
     * @return the version of the native library, e.g. {@code 0.1.0}
     * @throws UnsatisfiedLinkError if the native library cannot be loaded
     */
    public static String version() {
        requireNativeLibrary();
        return nVersion();
    }

    /**
     * Starts an engine: its worker threads and, if {@code ws_listen} is set, its listener.
     *
     * @param jsonConfig the engine's settings as a JSON object, e.g.
     *     {@code {"ws_listen": "0.0.0.0:8081", "workers": 2, "idle_timeout": 600}}; every key
     *     is optional ({@code "{}"}: defaults, no listener); unknown keys are errors. The keys are
     *     listed at {@code wspush_engine_start} in {@code wspush.h}.
     * @return the running engine; close it
     * @throws WsPushException {@code INVALID_CONFIG} naming the bad key, {@code IO} if the
     *     address cannot be bound
     * @throws UnsatisfiedLinkError if the native library cannot be loaded (the message says
     *     where it was looked for)
     */
    public static WsPush start(String jsonConfig) {
        requireNativeLibrary();
        byte[] config = utf8(jsonConfig, "jsonConfig");
        long[] out = new long[1];
        byte[][] error = new byte[1][];
        check(nStart(config, out, error), error);
        return new WsPush(out[0]);
    }

    /**
     * @return the port the engine's listener is bound to (useful with port 0)
     * @throws WsPushException {@code NO_LISTENER} if {@code ws_listen} is not set
     */
    public int localPort() {
        int[] out = new int[1];
        byte[][] error = new byte[1][];
        int status;
        lock.readLock().lock();
        try {
            status = nLocalPort(liveHandle(), out, error);
        } finally {
            lock.readLock().unlock();
        }
        check(status, error);
        return out[0];
    }

    /**
     * Sets the listener that receives socket events (on the engine's worker threads),
     * replacing any earlier one; {@code null} removes it.
     *
     * @param listener the listener, or {@code null}
     */
    public void setListener(WsPushListener listener) {
        Dispatcher dispatcher = listener == null ? null : new Dispatcher(listener);
        byte[][] error = new byte[1][];
        int status;
        lock.readLock().lock();
        try {
            status = nSetListener(liveHandle(), dispatcher, error);
        } finally {
            lock.readLock().unlock();
        }
        check(status, error);
    }

    /**
     * Sets the authorizer that decides who may connect, replacing any earlier one;
     * {@code null} removes it (every upgrade that passes the other checks is then accepted).
     *
     * <p>It is asked about every upgrade the engine answers (on its listener, or registered
     * without {@code upgraded}), on the engine's acceptor thread, after the {@code Origin}
     * check ({@code allowed_origins}) and the token check ({@code auth_jwt_secret} /
     * {@code auth_jwt_public_key}) passed and before the connection limits; {@code false}
     * (or an exception) refuses the client with 403, counted in
     * {@link WsPushStats#handshakeForbidden()}. See {@link WsPushAuthorizer} for its rules.
     * The engine holds the authorizer until it is replaced or this engine is closed.
     *
     * @param authorizer the authorizer, or {@code null}
     */
    public void setAuthorizer(WsPushAuthorizer authorizer) {
        AuthorizerDispatcher dispatcher = authorizer == null ? null : new AuthorizerDispatcher(authorizer);
        byte[][] error = new byte[1][];
        int status;
        lock.readLock().lock();
        try {
            status = nSetAuthorizer(liveHandle(), dispatcher, error);
        } finally {
            lock.readLock().unlock();
        }
        check(status, error);
    }

    /**
     * Hands a connected TCP socket to the engine, which reads the WebSocket upgrade request
     * from it and answers it; the socket then receives messages for {@code id}.
     *
     * @param fd the socket's file descriptor, e.g. from {@link #detachFd(SocketChannel)}
     * @param id the id
     * @see #register(int, String, boolean)
     */
    public void register(int fd, String id) {
        register(fd, id, false);
    }

    /**
     * Hands a connected TCP socket to the engine for {@code id}.
     *
     * <p>Ownership of {@code fd}: if this throws with status {@code NULL_ARGUMENT},
     * {@code INVALID_UTF8}, {@code INVALID_ID} or {@code INVALID_ARGUMENT} (a bad fd), nothing
     * was done and the fd is still yours. Otherwise (success included) the engine owns it and
     * closes it (already, on error): never use or close it again.
     *
     * @param fd the socket's file descriptor
     * @param id the id
     * @param upgraded {@code true} if you already answered the upgrade (101): the socket speaks
     *     WebSocket frames from now on; {@code false} for the engine to read and answer the
     *     upgrade request
     */
    public void register(int fd, String id, boolean upgraded) {
        byte[][] error = new byte[1][];
        int status = register(fd, utf8(id, "id"), upgraded ? 0 : 1, error);
        if (status == CLOSED) {
            throw closedException();
        }
        check(status, error);
    }

    /** A status of its own for "this WsPush is closed, the native was not called". */
    private static final int CLOSED = -1;

    private int register(int fd, byte[] id, int flags, byte[][] error) {
        lock.readLock().lock();
        try {
            long h = handle;
            return h == 0 ? CLOSED : nRegister(h, fd, id, flags, error);
        } finally {
            lock.readLock().unlock();
        }
    }

    /**
     * Hands the socket of an accepted {@link SocketChannel} to the engine for {@code id}
     * (the engine performs the upgrade): {@link #detachFd(SocketChannel)} then
     * {@link #register(int, String)}, closing the socket if the engine refuses it.
     *
     * @param channel a connected channel, never registered with a {@code Selector}; closed here
     * @param id the id
     * @throws IOException if the channel's socket cannot be taken
     */
    public void register(SocketChannel channel, String id) throws IOException {
        byte[] idBytes = utf8(id, "id");
        int fd = detachFd(channel);
        byte[][] error = new byte[1][];
        int status = CLOSED;
        try {
            status = register(fd, idBytes, 1, error);
        } finally {
            boolean stillOurs = status == CLOSED;
            for (int notTaken : FD_NOT_TAKEN) {
                stillOurs |= status == notTaken;
            }
            if (stillOurs) {
                nCloseFd(fd);
            }
        }
        if (status == CLOSED) {
            throw closedException();
        }
        check(status, error);
    }

    /**
     * Takes the socket out of a connected {@link SocketChannel}: returns a duplicate of its file
     * descriptor (yours now, e.g. for {@link #register(int, String)}) and closes the channel.
     *
     * @param channel a connected channel (e.g. from {@code ServerSocketChannel.accept()}) that was
     *     never registered with a {@code Selector}
     * @return the new file descriptor
     * @throws IOException if the channel is closed, or its socket cannot be read from this JDK
     */
    public static int detachFd(SocketChannel channel) throws IOException {
        requireNativeLibrary();
        Objects.requireNonNull(channel, "channel");
        if (!channel.isOpen() || !channel.isConnected()) {
            throw new IOException("the channel is not open and connected");
        }
        if (channel.isRegistered()) {
            // Closing a registered channel may shut the socket down for writing.
            throw new IOException("the channel is registered with a Selector; use one that never was");
        }
        int fd = nDupChannelFd(channel);
        if (fd == Integer.MIN_VALUE) {
            throw new IOException("cannot find the file descriptor of a " + channel.getClass().getName());
        }
        if (fd < 0) {
            throw new IOException("cannot duplicate the channel's file descriptor: errno " + -fd);
        }
        channel.close();
        return fd;
    }

    /**
     * Queues a text message for every socket of {@code id}. Never blocks.
     *
     * @throws WsPushException {@code INVALID_ID}, {@code INVALID_ARGUMENT} (larger than
     *     {@code max_outbound_message_size}), {@code QUEUE_FULL}, {@code SHUT_DOWN}
     */
    public void send(String id, String text) {
        send(utf8(id, "id"), utf8(text, "text"), TEXT);
    }

    /**
     * Queues a binary message for every socket of {@code id}. Never blocks.
     *
     * @throws WsPushException {@code INVALID_ID}, {@code INVALID_ARGUMENT} (larger than
     *     {@code max_outbound_message_size}), {@code QUEUE_FULL}, {@code SHUT_DOWN}
     */
    public void send(String id, byte[] data) {
        send(utf8(id, "id"), Objects.requireNonNull(data, "data"), BINARY);
    }

    private void send(byte[] id, byte[] data, int opcode) {
        byte[][] error = new byte[1][];
        int status;
        lock.readLock().lock();
        try {
            status = nSend(liveHandle(), id, data, opcode, error);
        } finally {
            lock.readLock().unlock();
        }
        check(status, error);
    }

    /**
     * A message's place in its id's history: {@code epoch} names the history (it changes when
     * the history was lost: expired, or the engine restarted), {@code offset} counts the id's
     * messages within it (1, 2, 3, ...). Clients resume from {@code epoch + ":" + offset}.
     *
     * @param offset the message's offset, 1 or more
     * @param epoch the epoch: 1 to 16 ASCII letters and digits (8 for the engine's own)
     */
    public record Position(long offset, String epoch) {
        /** @throws NullPointerException if {@code epoch} is null */
        public Position {
            Objects.requireNonNull(epoch, "epoch");
        }

        /** @return {@code EPOCH:OFFSET}, the position's text form (as in {@code ?since=}) */
        @Override
        public String toString() {
            return epoch + ":" + offset;
        }
    }

    /**
     * Sends a text message to every socket of {@code id}, as {@link #send(String, String)}, then
     * waits until the engine placed it in the id's history.
     *
     * <p>Blocks the calling thread for at most {@code timeout} (usually one turn of the id's
     * worker thread). Never call it from a {@link WsPushListener} or {@link WsPushAuthorizer}
     * method: those run on the engine's threads, which would have to answer it
     * ({@code WRONG_THREAD}, nothing is sent).
     *
     * @param timeout how long to wait for the position (negative: none; at most 2^32-1 ms)
     * @return the message's position, or {@code null} when it has none: history is off
     *     ({@code history_size} 0), or in cluster mode Redis is unreachable (the message is
     *     queued)
     * @throws WsPushTimeoutException no position within {@code timeout}: the message was
     *     still sent
     * @throws WsPushException {@code INVALID_ID}, {@code INVALID_ARGUMENT} (larger than
     *     {@code max_outbound_message_size}), {@code QUEUE_FULL}, {@code SHUT_DOWN},
     *     {@code WRONG_THREAD}; nothing was sent (except {@code SHUT_DOWN} after the message was
     *     queued: the engine stopped before taking it)
     */
    public Position sendPositioned(String id, String text, Duration timeout) {
        return sendPositioned(utf8(id, "id"), utf8(text, "text"), TEXT, timeout);
    }

    /**
     * Sends a binary message to every socket of {@code id} and waits for its position, as
     * {@link #sendPositioned(String, String, Duration)}.
     */
    public Position sendPositioned(String id, byte[] data, Duration timeout) {
        return sendPositioned(utf8(id, "id"), Objects.requireNonNull(data, "data"), BINARY, timeout);
    }

    private Position sendPositioned(byte[] id, byte[] data, int opcode, Duration timeout) {
        int millis = (int) milliseconds(Objects.requireNonNull(timeout, "timeout"));
        long[] offset = new long[1];
        byte[][] epoch = new byte[1][];
        byte[][] error = new byte[1][];
        int status;
        lock.readLock().lock();
        try {
            status = nSendPositioned(liveHandle(), id, data, opcode, millis, offset, epoch, error);
        } finally {
            lock.readLock().unlock();
        }
        check(status, error);
        return epoch[0] == null ? null : new Position(offset[0], new String(epoch[0], StandardCharsets.US_ASCII));
    }

    /** {@code timeout} in milliseconds, from 0 to 2^32-1 (a C {@code uint32_t}). */
    private static long milliseconds(Duration timeout) {
        if (timeout.isNegative()) {
            return 0;
        }
        return timeout.compareTo(Duration.ofMillis(0xFFFF_FFFFL)) > 0 ? 0xFFFF_FFFFL : timeout.toMillis();
    }

    /** Queues a text message for one socket (e.g. a reply to {@code conn} from the listener). */
    public void sendTo(long conn, String text) {
        sendTo(conn, utf8(text, "text"), TEXT);
    }

    /** Queues a binary message for one socket. */
    public void sendTo(long conn, byte[] data) {
        sendTo(conn, Objects.requireNonNull(data, "data"), BINARY);
    }

    private void sendTo(long conn, byte[] data, int opcode) {
        byte[][] error = new byte[1][];
        int status;
        lock.readLock().lock();
        try {
            status = nSendTo(liveHandle(), conn, data, opcode, error);
        } finally {
            lock.readLock().unlock();
        }
        check(status, error);
    }

    /** Queues a text message for every open socket. Never blocks. */
    public void broadcast(String text) {
        broadcast(utf8(text, "text"), TEXT);
    }

    /** Queues a binary message for every open socket. Never blocks. */
    public void broadcast(byte[] data) {
        broadcast(Objects.requireNonNull(data, "data"), BINARY);
    }

    private void broadcast(byte[] data, int opcode) {
        byte[][] error = new byte[1][];
        int status;
        lock.readLock().lock();
        try {
            status = nBroadcast(liveHandle(), data, opcode, error);
        } finally {
            lock.readLock().unlock();
        }
        check(status, error);
    }

    /**
     * Starts the close handshake on one socket; its {@code onClose} follows.
     *
     * @param conn the socket
     * @param code 1000-1003, 1007-1011 or 3000-4999
     */
    public void disconnect(long conn, int code) {
        if (code < 0 || code > 0xFFFF) {
            throw new IllegalArgumentException("close code out of range: " + code);
        }
        byte[][] error = new byte[1][];
        int status;
        lock.readLock().lock();
        try {
            status = nDisconnect(liveHandle(), conn, code, error);
        } finally {
            lock.readLock().unlock();
        }
        check(status, error);
    }

    /**
     * Reads the certificate and key files named by {@code tls_cert} and {@code tls_key} again, as
     * the server does on SIGHUP: connections accepted from now on get the new certificate, open
     * ones keep theirs and go on receiving. Renew the files in place, each through a rename (so
     * that a reload never reads half a file), then call this. On any error the certificate in
     * use stays.
     *
     * <p>Reads two files on the calling thread: call it from a thread of your own (a scheduler,
     * an admin endpoint), not from a {@link WsPushListener} method, which would hold up the
     * sockets of its worker meanwhile.
     *
     * @throws WsPushException {@code NO_TLS} if the engine serves no TLS ({@code tls_cert} and
     *     {@code tls_key} are not set); {@code INVALID_CONFIG} when a file cannot be used
     *     (unreadable, not PEM, no certificate, a key that does not belong to the first
     *     certificate), the message naming the setting, the file and the fault, e.g.
     *     {@code invalid setting `tls_key`: /etc/wspush/server.key: the key does not belong to the
     *     first certificate of /etc/wspush/server.crt}
     */
    public void reloadTls() {
        byte[][] error = new byte[1][];
        int status;
        lock.readLock().lock();
        try {
            status = nReloadTls(liveHandle(), error);
        } finally {
            lock.readLock().unlock();
        }
        check(status, error);
    }

    /** @return a snapshot of the engine's counters */
    public WsPushStats stats() {
        long[] out = new long[WsPushStats.FIELDS];
        byte[][] error = new byte[1][];
        int status;
        lock.readLock().lock();
        try {
            status = nStats(liveHandle(), out, error);
        } finally {
            lock.readLock().unlock();
        }
        check(status, error);
        return WsPushStats.of(out);
    }

    /** Stops the engine, giving sockets up to 5 seconds to close, and frees it. Idempotent. */
    @Override
    public void close() {
        close(Duration.ofSeconds(5));
    }

    /**
     * Stops the engine: sends close 1001 to every socket (the listener's {@code onClose} runs
     * for each), flushes for at most {@code timeout}, joins the worker threads, then frees the
     * engine and releases the listener and the authorizer. Idempotent: later calls return at
     * once.
     *
     * @param timeout how long sockets may take to close
     * @throws WsPushException {@code IN_CALLBACK} when called from a listener method (a worker
     *     cannot wait for itself); the engine keeps running then
     */
    public void close(Duration timeout) {
        if (!closed.compareAndSet(false, true)) {
            return;
        }
        long h = handle;
        long millis = milliseconds(timeout);
        byte[][] error = new byte[1][];
        // Stop without the write lock: listener methods running now may still call send.
        int status = nStop(h, (int) millis, error);
        if (status == WsPushException.IN_CALLBACK) {
            closed.set(false);
            check(status, error);
        }
        lock.writeLock().lock();
        try {
            handle = 0;
        } finally {
            lock.writeLock().unlock();
        }
        // Nobody holds the handle any more: every use is under the read lock and saw it non-zero.
        nFree(h);
    }

    /** @return whether {@link #close()} has been called */
    public boolean isClosed() {
        return closed.get();
    }

    /** The live handle; call with the read lock held. */
    private long liveHandle() {
        long h = handle;
        if (h == 0) {
            throw closedException();
        }
        return h;
    }

    private static WsPushException closedException() {
        return new WsPushException(WsPushException.SHUT_DOWN, "WSPUSH_STATUS_SHUT_DOWN", "this WsPush is closed");
    }

    private static byte[] utf8(String text, String what) {
        return Objects.requireNonNull(text, what).getBytes(StandardCharsets.UTF_8);
    }

    private static void check(int status, byte[][] error) {
        if (status != 0) {
            String detail = error[0] == null ? "" : new String(error[0], StandardCharsets.UTF_8);
            if (status == WsPushException.TIMEOUT) {
                throw new WsPushTimeoutException(nStatusName(status), detail);
            }
            throw new WsPushException(status, nStatusName(status), detail);
        }
    }

    /**
     * What the native callbacks call, on the engine's worker threads: decodes the UTF-8 the
     * engine hands over and shields the engine from the listener's exceptions.
     */
    static final class Dispatcher {
        private static final System.Logger LOG = System.getLogger("io.wspush");
        private final WsPushListener listener;

        Dispatcher(WsPushListener listener) {
            this.listener = listener;
        }

        void open(long conn, byte[] id) {
            try {
                listener.onOpen(conn, new String(id, StandardCharsets.UTF_8));
            } catch (Throwable t) {
                LOG.log(System.Logger.Level.ERROR, "WsPushListener.onOpen threw", t);
            }
        }

        void message(long conn, byte[] id, int opcode, byte[] data) {
            try {
                String idText = new String(id, StandardCharsets.UTF_8);
                if (opcode == TEXT) {
                    listener.onMessage(conn, idText, new String(data, StandardCharsets.UTF_8));
                } else {
                    listener.onMessage(conn, idText, data);
                }
            } catch (Throwable t) {
                LOG.log(System.Logger.Level.ERROR, "WsPushListener.onMessage threw", t);
            }
        }

        void close(long conn, byte[] id, int code) {
            try {
                listener.onClose(conn, new String(id, StandardCharsets.UTF_8), code);
            } catch (Throwable t) {
                LOG.log(System.Logger.Level.ERROR, "WsPushListener.onClose threw", t);
            }
        }
    }

    /**
     * What the native authorize callback calls, on the engine's acceptor thread: decodes the
     * request and turns whatever the authorizer throws into a logged denial.
     */
    static final class AuthorizerDispatcher {
        private static final System.Logger LOG = System.getLogger("io.wspush");
        private final WsPushAuthorizer authorizer;

        AuthorizerDispatcher(WsPushAuthorizer authorizer) {
            this.authorizer = authorizer;
        }

        /**
         * @param headers each header as a 4-byte big-endian name length, the name, a 4-byte
         *     value length, the value
         * @param peer the client's address (ASCII), or {@code null}
         */
        boolean authorize(byte[] id, byte[] path, byte[] headers, byte[] peer) {
            try {
                AuthorizeRequest request = new AuthorizeRequest(new String(id, StandardCharsets.UTF_8),
                        new String(path, StandardCharsets.UTF_8), headers(headers),
                        peer == null ? null : new String(peer, StandardCharsets.ISO_8859_1));
                return authorizer.authorize(request);
            } catch (Throwable t) {
                LOG.log(System.Logger.Level.ERROR, "WsPushAuthorizer.authorize threw; the upgrade is refused", t);
                return false;
            }
        }

        private static Map<String, List<String>> headers(byte[] packed) {
            Map<String, List<String>> headers = new LinkedHashMap<>();
            ByteBuffer buffer = ByteBuffer.wrap(packed);
            while (buffer.hasRemaining()) {
                String name = latin1(buffer);
                String value = latin1(buffer);
                headers.computeIfAbsent(name, n -> new ArrayList<>()).add(value);
            }
            return headers;
        }

        private static String latin1(ByteBuffer buffer) {
            int len = buffer.getInt();
            String text = new String(buffer.array(), buffer.position(), len, StandardCharsets.ISO_8859_1);
            buffer.position(buffer.position() + len);
            return text;
        }
    }

    // Natives (bindings/java/native/wspush_jni.c). Each returns a wspush_status; on failure
    // it stores the engine's message (UTF-8) in error[0], read on the same native call, so
    // that the thread-local last error of the C API cannot be mixed up between threads.
    private static native String nVersion();

    private static native String nStatusName(int status);

    private static native int nStart(byte[] config, long[] out, byte[][] error);

    private static native int nLocalPort(long handle, int[] out, byte[][] error);

    private static native int nSetListener(long handle, Dispatcher dispatcher, byte[][] error);

    private static native int nSetAuthorizer(long handle, AuthorizerDispatcher dispatcher, byte[][] error);

    private static native int nRegister(long handle, int fd, byte[] id, int flags, byte[][] error);

    private static native int nSend(long handle, byte[] id, byte[] data, int opcode, byte[][] error);

    private static native int nSendPositioned(long handle, byte[] id, byte[] data, int opcode, int timeoutMs,
            long[] offset, byte[][] epoch, byte[][] error);

    private static native int nSendTo(long handle, long conn, byte[] data, int opcode, byte[][] error);

    private static native int nBroadcast(long handle, byte[] data, int opcode, byte[][] error);

    private static native int nDisconnect(long handle, long conn, int code, byte[][] error);

    private static native int nStats(long handle, long[] out, byte[][] error);

    private static native int nReloadTls(long handle, byte[][] error);

    private static native int nStop(long handle, int timeoutMs, byte[][] error);

    private static native void nFree(long handle);

    private static native int nDupChannelFd(SocketChannel channel);

    private static native void nCloseFd(int fd);
}
