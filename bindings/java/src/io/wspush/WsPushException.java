package io.wspush;

/**
 * A failed call into the wspush engine: the engine's status code, its name and the engine's
 * own message (e.g. {@code WSPUSH_STATUS_INVALID_ID: invalid id: the id contains `/`}).
 */
public class WsPushException extends RuntimeException {
    private static final long serialVersionUID = 1L;

    /** {@code WSPUSH_STATUS_NULL_ARGUMENT}. */
    public static final int NULL_ARGUMENT = 1;
    /** {@code WSPUSH_STATUS_INVALID_UTF8}. */
    public static final int INVALID_UTF8 = 2;
    /** {@code WSPUSH_STATUS_INVALID_ID}: empty, longer than 128 bytes, or containing {@code /}. */
    public static final int INVALID_ID = 3;
    /**
     * {@code WSPUSH_STATUS_INVALID_ARGUMENT}: a bad fd, flag, close code, or a message larger than
     * {@code max_outbound_message_size}.
     */
    public static final int INVALID_ARGUMENT = 4;
    /**
     * {@code WSPUSH_STATUS_INVALID_CONFIG}: bad JSON, an unknown key or a bad value; or, from
     * {@code reloadTls}, a certificate or key file that cannot be used.
     */
    public static final int INVALID_CONFIG = 5;
    /** {@code WSPUSH_STATUS_IO}: e.g. the listen address is in use. */
    public static final int IO = 6;
    /** {@code WSPUSH_STATUS_QUEUE_FULL}: the engine is overloaded; try again later. */
    public static final int QUEUE_FULL = 7;
    /** {@code WSPUSH_STATUS_SHUT_DOWN}: the engine is stopped, or this {@code WsPush} closed. */
    public static final int SHUT_DOWN = 8;
    /** {@code WSPUSH_STATUS_IN_CALLBACK}: {@code close()} was called from a listener. */
    public static final int IN_CALLBACK = 9;
    /** {@code WSPUSH_STATUS_NO_LISTENER}: {@code ws_listen} is not configured. */
    public static final int NO_LISTENER = 10;
    /**
     * {@code WSPUSH_STATUS_TIMEOUT}: {@code sendPositioned} got no position in time; the message
     * was still sent. Thrown as a {@link WsPushTimeoutException}.
     */
    public static final int TIMEOUT = 13;
    /**
     * {@code WSPUSH_STATUS_WRONG_THREAD}: {@code sendPositioned} was called from a listener or an
     * authorizer (an engine thread, which must not wait for the engine); nothing was sent.
     */
    public static final int WRONG_THREAD = 14;
    /**
     * {@code WSPUSH_STATUS_NO_TLS}: {@code reloadTls} on an engine that serves no TLS
     * ({@code tls_cert} and {@code tls_key} are not set).
     */
    public static final int NO_TLS = 15;

    private final int status;
    private final String statusName;
    private final String detail;

    WsPushException(int status, String statusName, String detail) {
        super(statusName + ": " + detail);
        this.status = status;
        this.statusName = statusName;
        this.detail = detail;
    }

    /** @return the engine's status code (one of the constants of this class, or another) */
    public int status() {
        return status;
    }

    /** @return the status code's name, e.g. {@code WSPUSH_STATUS_QUEUE_FULL} */
    public String statusName() {
        return statusName;
    }

    /** @return the engine's message, without the status name */
    public String detail() {
        return detail;
    }
}
