package io.wspush;

/**
 * Receives socket events from a {@link WsPush} engine.
 *
 * <p>Every method is called on one of the engine's worker threads (named
 * {@code wspush-worker-N}), never on the thread that calls {@code WsPush}. A worker serves
 * many sockets: return quickly and never block (hand slow work to an executor). Calling
 * {@link WsPush#send}, {@link WsPush#sendTo}, {@link WsPush#broadcast} or
 * {@link WsPush#stats} from here is fine; {@link WsPush#close} is not (it throws). Events of
 * one socket arrive in order, on one thread; events of different sockets may arrive
 * concurrently on different threads. Whatever a method throws is logged and ignored.
 *
 * <p>Every method has an empty default: implement the ones you need.
 */
public interface WsPushListener {
    /**
     * A socket completed its upgrade and now receives messages for {@code id}.
     *
     * @param conn names this socket until its {@link #onClose}; pass it to {@link WsPush#sendTo}
     * @param id the socket's id
     */
    default void onOpen(long conn, String id) {}

    /**
     * A text message arrived from a client.
     *
     * @param conn the socket it came from
     * @param id that socket's id
     * @param text the message
     */
    default void onMessage(long conn, String id, String text) {}

    /**
     * A binary message arrived from a client.
     *
     * @param conn the socket it came from
     * @param id that socket's id
     * @param data the message (a fresh array, yours to keep)
     */
    default void onMessage(long conn, String id, byte[] data) {}

    /**
     * A socket is gone.
     *
     * @param conn the socket; invalid from now on
     * @param id its id
     * @param code the close code sent or received (1001 when the engine closes, 1006 when the
     *     connection dropped without a close frame)
     */
    default void onClose(long conn, String id, int code) {}
}
