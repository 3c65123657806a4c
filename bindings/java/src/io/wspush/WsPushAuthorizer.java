package io.wspush;

/**
 * Decides who may connect: asked about every upgrade request the engine answers, after the
 * origin and token checks passed and before the connection limits
 * ({@link WsPush#setAuthorizer(WsPushAuthorizer)}).
 *
 * <p>For applications that keep their own sessions: look the request's cookie or header up
 * in your session store and say whether that session may receive the messages of
 * {@link AuthorizeRequest#id()}.
 *
 * <pre>{@code
 * push.setAuthorizer(request -> request.cookie("SESSION")
 *         .map(sessions::userOf)                       // an in-memory lookup
 *         .filter(user -> user.equals(request.id()))
 *         .isPresent());
 * }</pre>
 *
 * <p>Called on the engine's acceptor thread ({@code wspush-acceptor}), one request at a time;
 * that thread answers every pending upgrade, so return quickly, from memory (a map, a local
 * cache), and never block on the network or a database, or every other client waits. Calling
 * {@link WsPush#send}, {@link WsPush#broadcast}, {@link WsPush#stats} or
 * {@link WsPush#setAuthorizer} from here is fine; {@link WsPush#close} is not (it throws).
 * Whatever this method throws denies the request (and is logged).
 *
 * <p>If cookies decide, set {@code allowed_origins} in the configuration to your own sites:
 * a browser sends the user's cookies with a WebSocket opened by any page (see SECURITY.md).
 */
@FunctionalInterface
public interface WsPushAuthorizer {
    /**
     * Whether the client of {@code request} may connect as {@code request.id()}.
     *
     * @param request what the client asked for
     * @return {@code true} to allow the upgrade, {@code false} to refuse it with 403
     */
    boolean authorize(AuthorizeRequest request);
}
