package example;

import io.wspush.WsPush;
import io.wspush.WsPushListener;

/**
 * A Spring-style service hosting wspush (the README's snippet; the Java test runs it).
 * As a Spring bean (@Service) it is closed on shutdown, like any AutoCloseable bean.
 */
public class PushService implements AutoCloseable {
    private final WsPush push;

    public PushService(String jsonConfig) {
        push = WsPush.start(jsonConfig); // e.g. {"ws_listen": "0.0.0.0:8081"}
        push.setListener(new WsPushListener() {
            @Override
            public void onOpen(long conn, String id) {
                push.sendTo(conn, "welcome " + id); // on a wspush worker thread: never block here
            }
        });
    }

    /** Business code, any thread: every socket of user 456 gets "order 789 shipped". */
    public void orderShipped(long userId, long orderId) {
        push.send(Long.toString(userId), "order " + orderId + " shipped");
    }

    public long onlineConnections() {
        return push.stats().connections();
    }

    public int port() {
        return push.localPort();
    }

    @Override
    public void close() { // @PreDestroy
        push.close();
    }
}
