/*
 * wspush C example: host the engine in a C program.
 *
 * It starts an engine without a listener, accepts one TCP connection itself on
 * 127.0.0.1 (any free port, printed), hands it to the engine (which performs the WebSocket
 * upgrade) under id "456", pushes a text and a binary message to that id, answers the
 * client's first message from the on_message callback with wspush_engine_send_to, waits for
 * a second message, prints the counters, and stops cleanly. Everything its callbacks see is
 * printed, so tests/ffi_c.rs can check the output exactly.
 *
 *   cc -Wall -Wextra -Werror -std=c11 -Iinclude bindings/c/example.c \
 *      target/debug/libwspush.a -lpthread -ldl -lm -o example
 *   ./example      # then connect, e.g.: websocat ws://127.0.0.1:PORT/websocket/456
 */
#define _POSIX_C_SOURCE 200809L

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "wspush.h"

/* Every wait is bounded: generous, since valgrind makes everything slow. */
#define WAIT_SECONDS 60

/* What the callbacks share with main: the userdata, freed by the engine (app_free). */
struct app {
    pthread_mutex_t lock;
    pthread_cond_t changed;
    int opened;
    int messages;
    int closed;
    uint64_t conn;
    const wspush_engine *engine;
};

/* Prints a failed call's status and the engine's detail message. */
static void print_failure(const char *what, wspush_status status) {
    char detail[512];
    size_t len = 0;
    wspush_last_error(detail, sizeof detail, &len);
    printf("%s: %s (%s)\n", what, wspush_status_str(status), detail);
}

static void check(const char *what, wspush_status status) {
    if (status != WSPUSH_STATUS_OK) {
        print_failure(what, status);
        exit(1);
    }
}

/* Waits until *counter reaches at least `target`; exits the program on timeout. */
static void wait_for(struct app *app, const int *counter, int target, const char *what) {
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += WAIT_SECONDS;
    pthread_mutex_lock(&app->lock);
    while (*counter < target) {
        if (pthread_cond_timedwait(&app->changed, &app->lock, &deadline) == ETIMEDOUT) {
            fprintf(stderr, "timed out waiting for %s\n", what);
            exit(1);
        }
    }
    pthread_mutex_unlock(&app->lock);
}

static void bump(struct app *app, int *counter) {
    pthread_mutex_lock(&app->lock);
    *counter += 1;
    pthread_cond_broadcast(&app->changed);
    pthread_mutex_unlock(&app->lock);
}

/* Callbacks: called on an engine worker thread; they must return quickly. */

static void on_open(void *userdata, uint64_t conn, const char *id, size_t id_len) {
    struct app *app = userdata;
    printf("open: id=%.*s\n", (int)id_len, id);
    pthread_mutex_lock(&app->lock);
    app->conn = conn;
    pthread_mutex_unlock(&app->lock);
    bump(app, &app->opened);
}

static void on_message(void *userdata, uint64_t conn, const char *id, size_t id_len, uint32_t opcode,
                       const uint8_t *data, size_t len) {
    struct app *app = userdata;
    if (opcode == WSPUSH_OPCODE_TEXT) {
        printf("message: id=%.*s text \"%.*s\"\n", (int)id_len, id, (int)len, (const char *)data);
    } else {
        printf("message: id=%.*s binary, %zu bytes\n", (int)id_len, id, len);
    }
    pthread_mutex_lock(&app->lock);
    int first = app->messages == 0;
    pthread_mutex_unlock(&app->lock);
    if (first) {
        /* Reply to this socket alone; sending from a callback is allowed (never blocks). */
        char reply[256];
        int n = snprintf(reply, sizeof reply, "echo: %.*s", (int)len, (const char *)data);
        wspush_status status = wspush_engine_send_to(app->engine, conn, reply, (size_t)n, WSPUSH_OPCODE_TEXT);
        printf("reply: %s\n", wspush_status_str(status));
    }
    bump(app, &app->messages);
}

static void on_close(void *userdata, uint64_t conn, const char *id, size_t id_len, uint16_t code) {
    struct app *app = userdata;
    (void)conn;
    printf("close: id=%.*s code=%u\n", (int)id_len, id, (unsigned)code);
    bump(app, &app->closed);
}

/* The userdata destructor: the engine calls it once, here from wspush_engine_free. */
static void app_free(void *userdata) {
    struct app *app = userdata;
    pthread_cond_destroy(&app->changed);
    pthread_mutex_destroy(&app->lock);
    free(app);
    printf("userdata freed\n");
}

/* A listening socket on 127.0.0.1, any free port. */
static int listen_loopback(uint16_t *port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in addr;
    socklen_t addr_len = sizeof addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || bind(fd, (struct sockaddr *)&addr, sizeof addr) != 0 || listen(fd, 8) != 0 ||
        getsockname(fd, (struct sockaddr *)&addr, &addr_len) != 0) {
        perror("listen");
        exit(1);
    }
    *port = ntohs(addr.sin_port);
    return fd;
}

static int accept_one(int listener) {
    struct pollfd ready = {.fd = listener, .events = POLLIN, .revents = 0};
    if (poll(&ready, 1, WAIT_SECONDS * 1000) != 1) {
        fprintf(stderr, "no client connected\n");
        exit(1);
    }
    int fd = accept(listener, NULL, NULL);
    if (fd < 0) {
        perror("accept");
        exit(1);
    }
    return fd;
}

int main(void) {
    /* Line-buffered even into a pipe: the test reads the port as soon as it is printed. */
    setvbuf(stdout, NULL, _IOLBF, 0);
    printf("wspush %s (header %d.%d.%d)\n", wspush_version(), WSPUSH_VERSION_MAJOR, WSPUSH_VERSION_MINOR,
           WSPUSH_VERSION_PATCH);

    /* A bad configuration is an error status with a message, never a crash. */
    wspush_engine *engine = NULL;
    const char *bad = "{\"workers\": \"two\"}";
    wspush_status status = wspush_engine_start(bad, strlen(bad), &engine);
    print_failure("start with a bad setting", status);

    /* No listener: this program accepts its connections itself. */
    const char *config = "{\"workers\": 2, \"ping_interval_ms\": 0}";
    check("start", wspush_engine_start(config, strlen(config), &engine));

    struct app *app = calloc(1, sizeof *app);
    if (app == NULL) {
        return 1;
    }
    pthread_mutex_init(&app->lock, NULL);
    pthread_cond_init(&app->changed, NULL);
    app->engine = engine;
    wspush_callbacks callbacks = {.on_open = on_open, .on_message = on_message, .on_close = on_close};
    /* From here on the engine owns app: app_free releases it. */
    check("set callbacks", wspush_engine_set_callbacks(engine, &callbacks, app, app_free));

    uint16_t port = 0;
    int listener = listen_loopback(&port);
    printf("listening on 127.0.0.1:%u\n", (unsigned)port);
    int fd = accept_one(listener);
    close(listener);

    /* An invalid id is refused before the engine takes the socket: fd is still ours. */
    status = wspush_engine_register(engine, "a/b", 3, fd, WSPUSH_REGISTER_PERFORM_HANDSHAKE);
    print_failure("register as \"a/b\"", status);
    /* Now the engine owns fd (and closes it): it reads the upgrade request and answers it. */
    check("register", wspush_engine_register(engine, "456", 3, fd, WSPUSH_REGISTER_PERFORM_HANDSHAKE));
    wait_for(app, &app->opened, 1, "the socket to open");

    printf("sending: text and binary to 456\n");
    const char *text = "order 456 shipped";
    check("send text", wspush_engine_send(engine, "456", 3, text, strlen(text), WSPUSH_OPCODE_TEXT));
    const uint8_t binary[] = {0x00, 0x01, 0xfe, 0xff};
    check("send binary", wspush_engine_send(engine, "456", 3, binary, sizeof binary, WSPUSH_OPCODE_BINARY));

    /* The client answers "hello from the client" (echoed from on_message), then "thanks". */
    wait_for(app, &app->messages, 2, "two messages from the client");

    wspush_stats stats;
    check("stats", wspush_engine_stats(engine, &stats, sizeof stats));
    printf("stats: connections=%llu ids=%llu messages_in=%llu bytes_in=%llu messages_out=%llu\n",
           (unsigned long long)stats.connections, (unsigned long long)stats.ids,
           (unsigned long long)stats.messages_in, (unsigned long long)stats.bytes_in,
           (unsigned long long)stats.messages_out);

    /* Closes the socket with 1001 (on_close runs before stop returns), joins the workers. */
    check("stop", wspush_engine_stop(engine, 5000));
    printf("stopped\n");
    status = wspush_engine_send(engine, "456", 3, text, strlen(text), WSPUSH_OPCODE_TEXT);
    print_failure("send after stop", status);

    /* Frees the engine, and app through app_free. */
    wspush_engine_free(engine);
    printf("freed\n");
    return 0;
}
