package io.wspush;

/**
 * {@link WsPush#sendPositioned(String, String, java.time.Duration)} did not learn the message's
 * position within its timeout (status {@link WsPushException#TIMEOUT}). The message was sent
 * all the same, and took its place in the id's history; only its position is unknown to the
 * caller.
 */
public final class WsPushTimeoutException extends WsPushException {
    private static final long serialVersionUID = 1L;

    WsPushTimeoutException(String statusName, String detail) {
        super(TIMEOUT, statusName, detail);
    }
}
