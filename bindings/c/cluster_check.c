/*
 * Cluster mode through the C ABI (run by tests/ffi_c.rs with a redis-server of its own):
 * two engines in one process, sharing only Redis, configured with {"redis": URL}. A raw
 * WebSocket client connects to engine B; engine A sends to the client's id and broadcasts;
 * the client receives both, exactly, from B. Prints one line per check.
 *
 *   cluster_check redis://127.0.0.1:PORT
 */
#define _POSIX_C_SOURCE 200809L

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "wspush.h"

#define WAIT_SECONDS 15

static int failed;

static void expect(int ok, const char *what) {
    printf("%s - %s\n", ok ? "ok" : "not ok", what);
    failed += !ok;
}

static void check(const char *what, wspush_status status) {
    if (status != WSPUSH_STATUS_OK) {
        char detail[512];
        wspush_last_error(detail, sizeof detail, NULL);
        printf("not ok - %s: %s (%s)\n", what, wspush_status_str(status), detail);
        exit(1);
    }
}

static wspush_engine *start(const char *url, const char *node, int listen) {
    char config[512];
    snprintf(config, sizeof config,
             "{\"redis\": \"%s\", \"node_id\": \"%s\", \"workers\": 1, \"ping_interval_ms\": 0%s}", url, node,
             listen ? ", \"ws_listen\": \"127.0.0.1:0\"" : "");
    wspush_engine *engine = NULL;
    check("start in cluster mode", wspush_engine_start(config, strlen(config), &engine));
    return engine;
}

static wspush_stats stats_of(const wspush_engine *engine) {
    wspush_stats stats;
    check("stats", wspush_engine_stats(engine, &stats, sizeof stats));
    return stats;
}

static void sleep_ms(long ms) {
    struct timespec pause = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    nanosleep(&pause, NULL);
}

/* Polls a counter (no event reports Redis connections or subscriptions): bounded. */
static int eventually(const wspush_engine *engine, int (*holds)(const wspush_stats *, uint64_t), uint64_t arg) {
    for (int i = 0; i < WAIT_SECONDS * 50; i++) {
        wspush_stats stats = stats_of(engine);
        if (holds(&stats, arg)) {
            return 1;
        }
        sleep_ms(20);
    }
    return 0;
}

static int is_connected(const wspush_stats *stats, uint64_t unused) {
    (void)unused;
    return stats->cluster_enabled == 1 && stats->cluster_connected == 1;
}

static int subscribed_more_than(const wspush_stats *stats, uint64_t baseline) {
    return stats->cluster_subscribed_channels > baseline;
}

/* on_open of engine B. */
struct opened {
    pthread_mutex_t lock;
    pthread_cond_t changed;
    int count;
};

static void on_open(void *userdata, uint64_t conn, const char *id, size_t id_len) {
    struct opened *opened = userdata;
    (void)conn;
    (void)id;
    (void)id_len;
    pthread_mutex_lock(&opened->lock);
    opened->count++;
    pthread_cond_broadcast(&opened->changed);
    pthread_mutex_unlock(&opened->lock);
}

static int read_exact(int fd, void *buf, size_t len) {
    size_t done = 0;
    while (done < len) {
        ssize_t n = read(fd, (char *)buf + done, len - done);
        if (n <= 0) {
            return 0;
        }
        done += (size_t)n;
    }
    return 1;
}

/* Reads one unfragmented text frame of at most 125 bytes (what the engine sends here). */
static int read_text(int fd, char *text, size_t size) {
    unsigned char head[2];
    if (!read_exact(fd, head, 2) || head[0] != 0x81 || head[1] > 125 || head[1] >= size) {
        return 0;
    }
    if (!read_exact(fd, text, head[1])) {
        return 0;
    }
    text[head[1]] = '\0';
    return 1;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc != 2) {
        fprintf(stderr, "usage: cluster_check redis://HOST:PORT\n");
        return 2;
    }
    wspush_engine *a = start(argv[1], "node-a", 0);
    wspush_engine *b = start(argv[1], "node-b", 1);
    int connected = eventually(a, is_connected, 0) && eventually(b, is_connected, 0);
    expect(connected, "both engines connected to Redis");
    if (!connected) {
        wspush_stats stats_a = stats_of(a);
        printf("# engine A: cluster_enabled=%llu cluster_connected=%llu cluster_subscribed_channels=%llu\n",
               (unsigned long long)stats_a.cluster_enabled, (unsigned long long)stats_a.cluster_connected,
               (unsigned long long)stats_a.cluster_subscribed_channels);
        wspush_engine_free(a);
        wspush_engine_free(b);
        return 1;
    }

    struct opened opened = {.count = 0};
    pthread_mutex_init(&opened.lock, NULL);
    pthread_cond_init(&opened.changed, NULL);
    wspush_callbacks callbacks = {.on_open = on_open, .on_message = NULL, .on_close = NULL};
    check("set callbacks", wspush_engine_set_callbacks(b, &callbacks, &opened, NULL));
    uint64_t baseline = stats_of(b).cluster_subscribed_channels;

    uint16_t port = 0;
    check("local port", wspush_engine_local_port(b, &port));
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(port);
    int client = socket(AF_INET, SOCK_STREAM, 0);
    struct timeval timeout = {.tv_sec = WAIT_SECONDS, .tv_usec = 0};
    setsockopt(client, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
    if (client < 0 || connect(client, (struct sockaddr *)&addr, sizeof addr) != 0) {
        perror("connect");
        return 1;
    }
    const char *upgrade = "GET /websocket/order-7 HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
                          "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                          "Sec-WebSocket-Version: 13\r\n\r\n";
    if (write(client, upgrade, strlen(upgrade)) != (ssize_t)strlen(upgrade)) {
        return 1;
    }
    /* The 101 response head, byte by byte up to the blank line. */
    char head[1024];
    size_t used = 0;
    while (used + 1 < sizeof head && (used < 4 || memcmp(head + used - 4, "\r\n\r\n", 4) != 0)) {
        if (!read_exact(client, head + used, 1)) {
            break;
        }
        used++;
    }
    head[used] = '\0';
    expect(strncmp(head, "HTTP/1.1 101", 12) == 0, "the client upgraded on engine B");

    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += WAIT_SECONDS;
    pthread_mutex_lock(&opened.lock);
    while (opened.count == 0 && pthread_cond_timedwait(&opened.changed, &opened.lock, &deadline) != ETIMEDOUT) {
    }
    int open_count = opened.count;
    pthread_mutex_unlock(&opened.lock);
    expect(open_count == 1, "engine B: on_open");
    expect(eventually(b, subscribed_more_than, baseline), "engine B subscribed to the id's channel");

    const char *text = "order 7 shipped";
    check("send on A", wspush_engine_send(a, "order-7", 7, text, strlen(text), WSPUSH_OPCODE_TEXT));
    char got[128] = "";
    expect(read_text(client, got, sizeof got) && strcmp(got, text) == 0,
           "a send on engine A reached the client on engine B");
    const char *all = "to the whole fleet";
    check("broadcast on A", wspush_engine_broadcast(a, all, strlen(all), WSPUSH_OPCODE_TEXT));
    expect(read_text(client, got, sizeof got) && strcmp(got, all) == 0,
           "a broadcast on engine A reached the client on engine B");
    /* A counts a publish when Redis answers the pipeline, which may be after B delivered. */
    int counted = 0;
    for (int waited = 0; !counted && waited < WAIT_SECONDS * 1000; waited += 10) {
        wspush_stats stats_a = stats_of(a);
        wspush_stats stats_b = stats_of(b);
        counted = stats_a.cluster_published >= 2 && stats_b.cluster_received >= 2;
        if (!counted) {
            sleep_ms(10);
        }
    }
    expect(counted, "stats: A published, B received through Redis");

    check("stop A", wspush_engine_stop(a, 2000));
    check("stop B", wspush_engine_stop(b, 2000));
    wspush_engine_free(a);
    wspush_engine_free(b);
    close(client);
    pthread_cond_destroy(&opened.changed);
    pthread_mutex_destroy(&opened.lock);
    printf("cluster_check: %s\n", failed == 0 ? "all passed" : "FAILED");
    return failed == 0 ? 0 : 1;
}
