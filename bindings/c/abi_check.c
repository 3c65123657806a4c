/*
 * Checks the conventions of the wspush C ABI from C (run by tests/ffi_c.rs, also under
 * valgrind): NULL pointers, invalid UTF-8, bad lengths, bad opcodes, flags and file
 * descriptors, bad JSON and unknown keys are error statuses with a message, never a crash;
 * outputs are written only on success; the fd passed to register changes hands exactly
 * when the header says; userdata is freed exactly once; stop and free refuse to run inside a
 * callback; a positioned send reports offsets 1, 2 in one epoch with history on, none with it
 * off, refuses to block in a callback and times out (the message still sent) while the id's
 * worker is held; a certificate reload needs an engine that serves TLS (the reload itself:
 * tls_check.c). Prints one "ok"/"not ok" line per check and exits 1 if any failed.
 */
#define _POSIX_C_SOURCE 200809L

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <stddef.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "tap.h"

static int fd_is_open(int fd) {
    return fcntl(fd, F_GETFD) != -1;
}

/* A connected TCP socket pair over loopback: *client and *server. */
static void tcp_pair(int *client, int *server) {
    struct sockaddr_in addr;
    socklen_t len = sizeof addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int listener = socket(AF_INET, SOCK_STREAM, 0);
    if (listener < 0 || bind(listener, (struct sockaddr *)&addr, sizeof addr) != 0 || listen(listener, 1) != 0 ||
        getsockname(listener, (struct sockaddr *)&addr, &len) != 0) {
        perror("listen");
        exit(2);
    }
    *client = socket(AF_INET, SOCK_STREAM, 0);
    if (*client < 0 || connect(*client, (struct sockaddr *)&addr, sizeof addr) != 0) {
        perror("connect");
        exit(2);
    }
    *server = accept(listener, NULL, NULL);
    if (*server < 0) {
        perror("accept");
        exit(2);
    }
    close(listener);
}

/* Userdata that counts its frees, and what the on_open callback saw. */
struct probe {
    pthread_mutex_t lock;
    pthread_cond_t changed;
    int frees;
    int opened;
    const wspush_engine *engine;
    wspush_status stop_in_callback;
    char free_in_callback[256];
};

static void probe_free(void *userdata) {
    struct probe *probe = userdata;
    pthread_mutex_lock(&probe->lock);
    probe->frees++;
    pthread_cond_broadcast(&probe->changed);
    pthread_mutex_unlock(&probe->lock);
}

static void probe_open(void *userdata, uint64_t conn, const char *id, size_t id_len) {
    struct probe *probe = userdata;
    (void)conn;
    (void)id;
    (void)id_len;
    /* Neither may run on a worker: they would wait for the worker itself. */
    wspush_status stop = wspush_engine_stop(probe->engine, 0);
    wspush_engine_free((wspush_engine *)probe->engine);
    pthread_mutex_lock(&probe->lock);
    probe->stop_in_callback = stop;
    size_t len = 0;
    wspush_last_error(probe->free_in_callback, sizeof probe->free_in_callback, &len);
    probe->opened++;
    pthread_cond_broadcast(&probe->changed);
    pthread_mutex_unlock(&probe->lock);
}

static int frees(struct probe *probe) {
    pthread_mutex_lock(&probe->lock);
    int n = probe->frees;
    pthread_mutex_unlock(&probe->lock);
    return n;
}

static void check_version_and_names(void) {
    char built[64];
    snprintf(built, sizeof built, "%d.%d.%d", WSPUSH_VERSION_MAJOR, WSPUSH_VERSION_MINOR, WSPUSH_VERSION_PATCH);
    expect(strcmp(wspush_version(), built) == 0, "wspush_version() matches the header's version macros");
    expect(strcmp(wspush_status_str(WSPUSH_STATUS_OK), "WSPUSH_STATUS_OK") == 0, "status names: OK");
    expect(strcmp(wspush_status_str(WSPUSH_STATUS_INVALID_UTF8), "WSPUSH_STATUS_INVALID_UTF8") == 0,
           "status names: INVALID_UTF8");
    expect(strcmp(wspush_status_str(4242), "WSPUSH_STATUS_UNKNOWN") == 0, "status names: unknown values");
    size_t len = 99;
    expect(wspush_last_error(NULL, 0, &len) == WSPUSH_STATUS_OK && len == 0,
           "no last error before any failure");
}

static void check_start(void) {
    wspush_engine *sentinel = (wspush_engine *)&passed;
    wspush_engine *out = sentinel;
    expect_status(wspush_engine_start(NULL, 2, &out), WSPUSH_STATUS_NULL_ARGUMENT, "`config_json` is NULL",
                  "start: NULL config");
    expect_status(wspush_engine_start("{}", 2, NULL), WSPUSH_STATUS_NULL_ARGUMENT, "`out` is NULL",
                  "start: NULL out");
    const char *not_utf8 = "{\"path_prefix\": \"/\xff/\"}";
    expect_status(wspush_engine_start(not_utf8, strlen(not_utf8), &out), WSPUSH_STATUS_INVALID_UTF8,
                  "`config_json` is not valid UTF-8", "start: invalid UTF-8");
    expect_status(wspush_engine_start("{", 1, &out), WSPUSH_STATUS_INVALID_CONFIG,
                  "the configuration is not valid JSON", "start: bad JSON");
    expect_status(wspush_engine_start("{}", SIZE_MAX, &out), WSPUSH_STATUS_INVALID_ARGUMENT,
                  "`config_json` length", "start: absurd length");
    const char *unknown = "{\"workers\": 1, \"colour\": \"blue\"}";
    expect_status(wspush_engine_start(unknown, strlen(unknown), &out), WSPUSH_STATUS_INVALID_CONFIG,
                  "unknown setting `colour`", "start: unknown key");
    const char *bad = "{\"max_headers\": 2}";
    expect_status(wspush_engine_start(bad, strlen(bad), &out), WSPUSH_STATUS_INVALID_CONFIG,
                  "invalid setting `max_headers`: at least 8, got 2", "start: the engine's own checks");
    /* Only the first `len` bytes count: the rest need not be JSON (nor NUL-terminated). */
    expect_status(wspush_engine_start("{}garbage", 9, &out), WSPUSH_STATUS_INVALID_CONFIG,
                  "the configuration is not valid JSON", "start: len covers the trailing garbage");
    expect(out == sentinel, "start: *out untouched on every error");
}

static void check_last_error_truncation(void) {
    wspush_engine *out = NULL;
    wspush_engine_start("[]", 2, &out);
    const char *full = "the configuration must be a JSON object, got an array";
    char small[8];
    size_t len = 0;
    memset(small, 'x', sizeof small);
    expect(wspush_last_error(small, sizeof small, &len) == WSPUSH_STATUS_OK && len == strlen(full) &&
               memcmp(small, full, 7) == 0 && small[7] == '\0',
           "last error: truncated to len-1 bytes plus NUL, out_len is the full length");
    expect(wspush_last_error(NULL, 4, &len) == WSPUSH_STATUS_NULL_ARGUMENT, "last error: NULL buffer with len > 0");
    expect(wspush_last_error(small, sizeof small, NULL) == WSPUSH_STATUS_OK, "last error: out_len may be NULL");
}

static void check_sends(const wspush_engine *engine) {
    char long_id[WSPUSH_MAX_ID_LEN + 1];
    memset(long_id, 'a', sizeof long_id);
    expect_status(wspush_engine_send(NULL, "1", 1, "x", 1, WSPUSH_OPCODE_TEXT), WSPUSH_STATUS_NULL_ARGUMENT,
                  "`engine` is NULL", "send: NULL engine");
    expect_status(wspush_engine_send(engine, NULL, 1, "x", 1, WSPUSH_OPCODE_TEXT), WSPUSH_STATUS_NULL_ARGUMENT,
                  "`id` is NULL", "send: NULL id");
    expect_status(wspush_engine_send(engine, "\xc3\x28", 2, "x", 1, WSPUSH_OPCODE_TEXT),
                  WSPUSH_STATUS_INVALID_UTF8, "`id` is not valid UTF-8", "send: id not UTF-8");
    expect_status(wspush_engine_send(engine, "", 0, "x", 1, WSPUSH_OPCODE_TEXT), WSPUSH_STATUS_INVALID_ID,
                  "invalid id: the id is empty", "send: empty id");
    expect_status(wspush_engine_send(engine, long_id, sizeof long_id, "x", 1, WSPUSH_OPCODE_TEXT),
                  WSPUSH_STATUS_INVALID_ID, "invalid id: the id is 129 bytes long", "send: id too long");
    expect_status(wspush_engine_send(engine, "1", SIZE_MAX, "x", 1, WSPUSH_OPCODE_TEXT),
                  WSPUSH_STATUS_INVALID_ARGUMENT, "`id` length", "send: absurd id length");
    expect_status(wspush_engine_send(engine, "1", 1, NULL, 5, WSPUSH_OPCODE_TEXT), WSPUSH_STATUS_NULL_ARGUMENT,
                  "`data` is NULL", "send: NULL data with a length");
    expect_status(wspush_engine_send(engine, "1", 1, "x", SIZE_MAX, WSPUSH_OPCODE_BINARY),
                  WSPUSH_STATUS_INVALID_ARGUMENT, "`data` length", "send: absurd data length");
    expect_status(wspush_engine_send(engine, "1", 1, "\xff", 1, WSPUSH_OPCODE_TEXT), WSPUSH_STATUS_INVALID_UTF8,
                  "a text message must be valid UTF-8", "send: text not UTF-8");
    expect_status(wspush_engine_send(engine, "1", 1, "x", 1, 9), WSPUSH_STATUS_INVALID_ARGUMENT, "opcode 9",
                  "send: bad opcode");
    expect(wspush_engine_send(engine, "1", 1, NULL, 0, WSPUSH_OPCODE_TEXT) == WSPUSH_STATUS_OK,
           "send: NULL data with length 0 is an empty message");
    expect(wspush_engine_send(engine, "nobody", 6, "\xff", 1, WSPUSH_OPCODE_BINARY) == WSPUSH_STATUS_OK,
           "send: binary need not be UTF-8; an id without sockets is fine");
    expect_status(wspush_engine_broadcast(engine, "x", 1, 0), WSPUSH_STATUS_INVALID_ARGUMENT, "opcode 0",
                  "broadcast: bad opcode");
    expect(wspush_engine_broadcast(engine, "all", 3, WSPUSH_OPCODE_TEXT) == WSPUSH_STATUS_OK, "broadcast: OK");
    expect_status(wspush_engine_send_to(engine, 0, NULL, 1, WSPUSH_OPCODE_TEXT), WSPUSH_STATUS_NULL_ARGUMENT,
                  "`data` is NULL", "send_to: NULL data");
    expect(wspush_engine_send_to(engine, 0, "x", 1, WSPUSH_OPCODE_TEXT) == WSPUSH_STATUS_OK,
           "send_to: a connection that does not exist is ignored");
    /* One byte over max_outbound_message_size (by default max_message_size, 1 MiB). */
    static char big[(1 << 20) + 1];
    memset(big, 'x', sizeof big);
    const char *too_large = "the message is 1048577 bytes, larger than max_outbound_message_size (1048576 bytes)";
    expect_status(wspush_engine_send(engine, "1", 1, big, sizeof big, WSPUSH_OPCODE_BINARY),
                  WSPUSH_STATUS_INVALID_ARGUMENT, too_large, "send: over max_outbound_message_size");
    expect_status(wspush_engine_broadcast(engine, big, sizeof big, WSPUSH_OPCODE_TEXT), WSPUSH_STATUS_INVALID_ARGUMENT,
                  too_large, "broadcast: over max_outbound_message_size");
    expect_status(wspush_engine_send_to(engine, 0, big, sizeof big, WSPUSH_OPCODE_BINARY),
                  WSPUSH_STATUS_INVALID_ARGUMENT, too_large, "send_to: over max_outbound_message_size");
    expect(wspush_engine_send(engine, "1", 1, big, sizeof big - 1, WSPUSH_OPCODE_BINARY) == WSPUSH_STATUS_OK,
           "send: a message of max_outbound_message_size is sent");
    expect_status(wspush_engine_close_connection(engine, 0, 1005), WSPUSH_STATUS_INVALID_ARGUMENT,
                  "1005 is not a close code", "close_connection: a code that is never sent");
    expect(wspush_engine_close_connection(engine, 0, 1000) == WSPUSH_STATUS_OK,
           "close_connection: a connection that does not exist is ignored");
}

static void check_register_keeps_the_fd_on_bad_arguments(const wspush_engine *engine) {
    int client, server;
    tcp_pair(&client, &server);
    expect_status(wspush_engine_register(engine, "r", 1, -1, WSPUSH_REGISTER_UPGRADED),
                  WSPUSH_STATUS_INVALID_ARGUMENT, "the file descriptor -1 is negative", "register: negative fd");
    expect_status(wspush_engine_register(engine, "r", 1, server, 7), WSPUSH_STATUS_INVALID_ARGUMENT, "flags 7",
                  "register: bad flags");
    expect_status(wspush_engine_register(engine, "a/b", 3, server, WSPUSH_REGISTER_UPGRADED),
                  WSPUSH_STATUS_INVALID_ID, "invalid id: the id contains `/`", "register: bad id");
    expect_status(wspush_engine_register(engine, NULL, 1, server, WSPUSH_REGISTER_UPGRADED),
                  WSPUSH_STATUS_NULL_ARGUMENT, "`id` is NULL", "register: NULL id");
    expect(fd_is_open(server), "register: the fd is still the caller's after those errors");

    int pipe_fds[2];
    if (pipe(pipe_fds) != 0) {
        exit(2);
    }
    expect_status(wspush_engine_register(engine, "r", 1, pipe_fds[0], WSPUSH_REGISTER_UPGRADED),
                  WSPUSH_STATUS_INVALID_ARGUMENT, "fd ", "register: a pipe is not a socket");
    expect(fd_is_open(pipe_fds[0]), "register: the pipe is still open");
    int udp = socket(AF_INET, SOCK_DGRAM, 0);
    expect_status(wspush_engine_register(engine, "r", 1, udp, WSPUSH_REGISTER_UPGRADED),
                  WSPUSH_STATUS_INVALID_ARGUMENT, "fd ", "register: a UDP socket");
    int unconnected = socket(AF_INET, SOCK_STREAM, 0);
    expect_status(wspush_engine_register(engine, "r", 1, unconnected, WSPUSH_REGISTER_UPGRADED),
                  WSPUSH_STATUS_INVALID_ARGUMENT, "fd ", "register: an unconnected TCP socket");
    expect(fd_is_open(udp) && fd_is_open(unconnected), "register: those are still open");
    int closed = dup(udp);
    close(closed);
    expect_status(wspush_engine_register(engine, "r", 1, closed, WSPUSH_REGISTER_UPGRADED),
                  WSPUSH_STATUS_INVALID_ARGUMENT, "fd ", "register: a closed fd");
    close(pipe_fds[0]);
    close(pipe_fds[1]);
    close(udp);
    close(unconnected);
    close(server);
    close(client);
}

static void check_callbacks_and_userdata(const wspush_engine *engine) {
    struct probe probe;
    memset(&probe, 0, sizeof probe);
    pthread_mutex_init(&probe.lock, NULL);
    pthread_cond_init(&probe.changed, NULL);
    probe.engine = engine;
    wspush_callbacks callbacks = {.on_open = probe_open, .on_message = NULL, .on_close = NULL};
    expect_status(wspush_engine_set_callbacks(engine, NULL, &probe, probe_free), WSPUSH_STATUS_INVALID_ARGUMENT,
                  "`callbacks` is NULL", "set_callbacks: userdata without callbacks");
    expect_status(wspush_engine_set_callbacks(NULL, &callbacks, &probe, probe_free), WSPUSH_STATUS_NULL_ARGUMENT,
                  "`engine` is NULL", "set_callbacks: NULL engine");
    expect(frees(&probe) == 0, "set_callbacks: on error userdata is not freed");
    expect(wspush_engine_set_callbacks(engine, &callbacks, &probe, probe_free) == WSPUSH_STATUS_OK,
           "set_callbacks: OK");
    expect(wspush_engine_set_callbacks(engine, &callbacks, &probe, probe_free) == WSPUSH_STATUS_OK &&
               frees(&probe) == 1,
           "set_callbacks: replacing frees the old userdata once");

    /* A real client, so that on_open runs (and tries stop and free inside the callback). */
    uint16_t port = 0;
    if (wspush_engine_local_port(engine, &port) != WSPUSH_STATUS_OK) {
        exit(2);
    }
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(port);
    int client = socket(AF_INET, SOCK_STREAM, 0);
    if (client < 0 || connect(client, (struct sockaddr *)&addr, sizeof addr) != 0) {
        perror("connect");
        exit(2);
    }
    const char *upgrade = "GET /websocket/probe HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
                          "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                          "Sec-WebSocket-Version: 13\r\n\r\n";
    if (write(client, upgrade, strlen(upgrade)) != (ssize_t)strlen(upgrade)) {
        exit(2);
    }
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += 60;
    pthread_mutex_lock(&probe.lock);
    while (probe.opened == 0) {
        if (pthread_cond_timedwait(&probe.changed, &probe.lock, &deadline) == ETIMEDOUT) {
            break;
        }
    }
    int opened = probe.opened;
    pthread_mutex_unlock(&probe.lock);
    expect(opened == 1, "on_open ran for a real client");
    expect(probe.stop_in_callback == WSPUSH_STATUS_IN_CALLBACK, "stop inside a callback: IN_CALLBACK");
    expect(strstr(probe.free_in_callback, "the engine was not freed") != NULL,
           "free inside a callback: refused, with a last error");
    expect(wspush_engine_send(engine, "probe", 5, "still up", 8, WSPUSH_OPCODE_TEXT) == WSPUSH_STATUS_OK,
           "the engine still runs after those");

    expect(wspush_engine_set_callbacks(engine, NULL, NULL, NULL) == WSPUSH_STATUS_OK,
           "set_callbacks(NULL): OK");
    /* on_open may still be returning on its worker: then the worker frees, right after. */
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += 60;
    pthread_mutex_lock(&probe.lock);
    while (probe.frees < 2 && pthread_cond_timedwait(&probe.changed, &probe.lock, &deadline) != ETIMEDOUT) {
    }
    pthread_mutex_unlock(&probe.lock);
    expect(frees(&probe) == 2, "set_callbacks(NULL): the userdata is freed once no callback runs");
    close(client);
    pthread_cond_destroy(&probe.changed);
    pthread_mutex_destroy(&probe.lock);
}

/* The history engine's on_open: tries a positioned send (refused: this is the worker that
   would have to answer it), then holds the engine's one worker until the test releases it, so
   that a positioned send from the main thread cannot get its answer meanwhile. */
struct gate {
    pthread_mutex_t lock;
    pthread_cond_t changed;
    int entered;
    int released;
    const wspush_engine *engine;
    wspush_status positioned_in_callback;
    int out_untouched_in_callback;
    char positioned_error[256];
};

static void gate_open(void *userdata, uint64_t conn, const char *id, size_t id_len) {
    struct gate *gate = userdata;
    (void)conn;
    (void)id;
    (void)id_len;
    wspush_position out;
    memset(&out, 0x5a, sizeof out);
    wspush_status status =
        wspush_engine_send_positioned(gate->engine, "t", 1, "inside", 6, WSPUSH_OPCODE_TEXT, 60000, &out);
    pthread_mutex_lock(&gate->lock);
    gate->positioned_in_callback = status;
    gate->out_untouched_in_callback = out.offset == 0x5a5a5a5a5a5a5a5aULL;
    size_t len = 0;
    wspush_last_error(gate->positioned_error, sizeof gate->positioned_error, &len);
    gate->entered = 1;
    pthread_cond_broadcast(&gate->changed);
    while (!gate->released) {
        pthread_cond_wait(&gate->changed, &gate->lock);
    }
    pthread_mutex_unlock(&gate->lock);
}

static int is_epoch(const wspush_position *position) {
    if (position->epoch_len != 8 || strlen(position->epoch) != 8) {
        return 0;
    }
    for (size_t i = 0; i < position->epoch_len; i++) {
        char c = position->epoch[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z'))) {
            return 0;
        }
    }
    return 1;
}

/* Reads exactly `len` bytes from a blocking socket (60 s at most per read). */
static int read_exactly(int fd, unsigned char *buf, size_t len) {
    struct timeval limit = {60, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof limit);
    size_t got = 0;
    while (got < len) {
        ssize_t n = read(fd, buf + got, len - got);
        if (n <= 0) {
            return 0;
        }
        got += (size_t)n;
    }
    return 1;
}

/* wspush_engine_send_positioned: no position with history off (`plain`), offsets 1, 2 in one
   epoch with history on, its argument checks, WRONG_THREAD in a callback and TIMEOUT while the
   id's worker is busy (the message still sent). */
static void check_send_positioned(const wspush_engine *plain) {
    wspush_position sentinel;
    memset(&sentinel, 0x5a, sizeof sentinel);
    wspush_position out = sentinel;
    expect(wspush_engine_send_positioned(plain, "1", 1, "x", 1, WSPUSH_OPCODE_TEXT, 60000, &out) == WSPUSH_STATUS_OK &&
               out.offset == 0 && out.epoch_len == 0 && out.epoch[0] == '\0',
           "send_positioned, history off: OK with offset 0 and epoch_len 0");
    out = sentinel;
    expect_status(wspush_engine_send_positioned(plain, "1", 1, "x", 1, WSPUSH_OPCODE_TEXT, 60000, NULL),
                  WSPUSH_STATUS_NULL_ARGUMENT, "`out` is NULL", "send_positioned: NULL out");
    expect_status(wspush_engine_send_positioned(NULL, "1", 1, "x", 1, WSPUSH_OPCODE_TEXT, 60000, &out),
                  WSPUSH_STATUS_NULL_ARGUMENT, "`engine` is NULL", "send_positioned: NULL engine");
    expect_status(wspush_engine_send_positioned(plain, "a/b", 3, "x", 1, WSPUSH_OPCODE_TEXT, 60000, &out),
                  WSPUSH_STATUS_INVALID_ID, "invalid id: the id contains `/`", "send_positioned: bad id");
    expect_status(wspush_engine_send_positioned(plain, "1", 1, "x", 1, 9, 60000, &out), WSPUSH_STATUS_INVALID_ARGUMENT,
                  "opcode 9", "send_positioned: bad opcode");
    expect(memcmp(&out, &sentinel, sizeof out) == 0, "send_positioned: *out untouched on error");

    wspush_engine *history = NULL;
    const char *config = "{\"workers\": 1, \"ping_interval_ms\": 0, \"history_size\": 8}";
    if (wspush_engine_start(config, strlen(config), &history) != WSPUSH_STATUS_OK) {
        printf("# %s\n", last_error());
        expect(0, "send_positioned: an engine with history_size 8 starts");
        return;
    }
    wspush_position first = sentinel, second = sentinel;
    expect(wspush_engine_send_positioned(history, "h", 1, "one", 3, WSPUSH_OPCODE_TEXT, 60000, &first) ==
                   WSPUSH_STATUS_OK &&
               first.offset == 1 && is_epoch(&first),
           "send_positioned, history on: offset 1 and an 8-character epoch");
    expect(wspush_engine_send_positioned(history, "h", 1, "\x02", 1, WSPUSH_OPCODE_BINARY, 60000, &second) ==
                   WSPUSH_STATUS_OK &&
               second.offset == 2 && second.epoch_len == 8 && strcmp(first.epoch, second.epoch) == 0,
           "send_positioned, history on: then offset 2 in the same epoch");
    printf("# positions %s:%llu and %s:%llu\n", first.epoch, (unsigned long long)first.offset, second.epoch,
           (unsigned long long)second.offset);

    struct gate gate;
    memset(&gate, 0, sizeof gate);
    pthread_mutex_init(&gate.lock, NULL);
    pthread_cond_init(&gate.changed, NULL);
    gate.engine = history;
    wspush_callbacks callbacks = {.on_open = gate_open, .on_message = NULL, .on_close = NULL};
    expect(wspush_engine_set_callbacks(history, &callbacks, &gate, NULL) == WSPUSH_STATUS_OK,
           "send_positioned: callbacks set on the history engine");
    int client, server;
    tcp_pair(&client, &server);
    expect(wspush_engine_register(history, "t", 1, server, WSPUSH_REGISTER_UPGRADED) == WSPUSH_STATUS_OK,
           "send_positioned: a socket registered for t");
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += 60;
    pthread_mutex_lock(&gate.lock);
    while (!gate.entered && pthread_cond_timedwait(&gate.changed, &gate.lock, &deadline) != ETIMEDOUT) {
    }
    int entered = gate.entered;
    pthread_mutex_unlock(&gate.lock);
    expect(entered, "send_positioned: on_open holds the one worker");
    if (!entered) {
        printf("# %s\n", last_error());
    }
    if (gate.positioned_in_callback != WSPUSH_STATUS_WRONG_THREAD) {
        printf("# got %s (%s)\n", wspush_status_str(gate.positioned_in_callback), gate.positioned_error);
    }
    expect(gate.positioned_in_callback == WSPUSH_STATUS_WRONG_THREAD &&
               strncmp(gate.positioned_error, "wspush_engine_send_positioned was called from a callback", 56) == 0 &&
               gate.out_untouched_in_callback,
           "send_positioned in a callback: WRONG_THREAD, nothing written");
    /* The worker cannot answer until released: the timeout is certain, not a race. */
    out = sentinel;
    expect_status(wspush_engine_send_positioned(history, "t", 1, "late", 4, WSPUSH_OPCODE_TEXT, 100, &out),
                  WSPUSH_STATUS_TIMEOUT, "the message was sent but its position was not known within 100 ms",
                  "send_positioned: TIMEOUT while the id's worker is busy");
    expect(memcmp(&out, &sentinel, sizeof out) == 0, "send_positioned: *out untouched on TIMEOUT");
    pthread_mutex_lock(&gate.lock);
    gate.released = 1;
    pthread_cond_broadcast(&gate.changed);
    pthread_mutex_unlock(&gate.lock);
    expect(wspush_engine_send_positioned(history, "t", 1, "next", 4, WSPUSH_OPCODE_TEXT, 60000, &out) ==
                   WSPUSH_STATUS_OK &&
               out.offset == 2 && is_epoch(&out),
           "send_positioned after a TIMEOUT: offset 2 (the timed-out message took 1)");
    unsigned char frames[12];
    const unsigned char want[12] = {0x81, 4, 'l', 'a', 't', 'e', 0x81, 4, 'n', 'e', 'x', 't'};
    expect(read_exactly(client, frames, sizeof frames) && memcmp(frames, want, sizeof want) == 0,
           "send_positioned: the client got the timed-out message, then the next (not the refused one)");

    wspush_engine_free(history); /* stops it: the worker has returned from gate_open */
    close(client);
    pthread_cond_destroy(&gate.changed);
    pthread_mutex_destroy(&gate.lock);
}

static void check_stop_and_free(wspush_engine *engine) {
    wspush_stats sentinel;
    memset(&sentinel, 0xab, sizeof sentinel);
    wspush_stats stats = sentinel;
    expect_status(wspush_engine_stats(NULL, &stats, sizeof stats), WSPUSH_STATUS_NULL_ARGUMENT, "`engine` is NULL",
                  "stats: NULL engine");
    expect(memcmp(&stats, &sentinel, sizeof stats) == 0, "stats: output untouched on error");
    expect(wspush_engine_stats(engine, &stats, sizeof stats) == WSPUSH_STATUS_OK && stats.connections_opened == 1 &&
               stats.cluster_enabled == 0,
           "stats: OK");
    /* A caller built against an older, shorter struct gets the fields it knows and nothing
       past them; a size that is not whole fields is refused. */
    stats = sentinel;
    size_t old_size = offsetof(wspush_stats, buffered_bytes) + sizeof stats.buffered_bytes;
    expect(wspush_engine_stats(engine, &stats, old_size) == WSPUSH_STATUS_OK && stats.connections_opened == 1 &&
               memcmp((const char *)&stats + old_size, (const char *)&sentinel + old_size, sizeof stats - old_size) == 0,
           "stats: an older caller's size writes only its fields");
    expect_status(wspush_engine_stats(engine, &stats, 12), WSPUSH_STATUS_INVALID_ARGUMENT, "out_size",
                  "stats: a size of partial fields is refused");
    expect(wspush_engine_stop(engine, 2000) == WSPUSH_STATUS_OK, "stop: OK");
    expect(wspush_engine_stop(engine, 2000) == WSPUSH_STATUS_OK, "stop: again is OK");
    expect_status(wspush_engine_send(engine, "1", 1, "x", 1, WSPUSH_OPCODE_TEXT), WSPUSH_STATUS_SHUT_DOWN,
                  "the engine is shut down", "send after stop: SHUT_DOWN");
    expect(wspush_engine_stats(engine, &stats, sizeof stats) == WSPUSH_STATUS_OK && stats.connections == 0,
           "stats after stop: OK");

    /* Past validation the engine owns the fd, even when it then fails. */
    int client, server;
    tcp_pair(&client, &server);
    expect_status(wspush_engine_register(engine, "late", 4, server, WSPUSH_REGISTER_UPGRADED),
                  WSPUSH_STATUS_SHUT_DOWN, "the engine is shut down", "register after stop: SHUT_DOWN");
    expect(!fd_is_open(server) && errno == EBADF, "register after stop: the engine closed the fd");
    close(client);

    wspush_engine_free(NULL);
    expect(1, "free(NULL) is a no-op");
    wspush_engine_free(engine);
    expect(1, "free");
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    check_version_and_names();
    check_start();
    check_last_error_truncation();

    wspush_engine *engine = NULL;
    const char *config = "{\"ws_listen\": \"127.0.0.1:0\", \"workers\": 1, \"ping_interval_ms\": 0}";
    expect(wspush_engine_start(config, strlen(config), &engine) == WSPUSH_STATUS_OK && engine != NULL,
           "start: OK");
    if (engine == NULL) {
        printf("# %s\n", last_error());
        return 1;
    }
    uint16_t port = 0;
    expect(wspush_engine_local_port(engine, &port) == WSPUSH_STATUS_OK && port != 0, "local_port: OK");
    expect_status(wspush_engine_reload_tls(NULL), WSPUSH_STATUS_NULL_ARGUMENT, "`engine` is NULL",
                  "reload_tls: NULL engine");
    expect_status(wspush_engine_reload_tls(engine), WSPUSH_STATUS_NO_TLS,
                  "the engine serves no TLS (`tls_cert` and `tls_key` are not set): nothing to reload",
                  "reload_tls: a listener without TLS");
    wspush_engine *no_listener = NULL;
    check_sends(engine);
    check_send_positioned(engine);
    check_register_keeps_the_fd_on_bad_arguments(engine);
    check_callbacks_and_userdata(engine);

    const char *quiet = "{\"workers\": 1}";
    if (wspush_engine_start(quiet, strlen(quiet), &no_listener) == WSPUSH_STATUS_OK) {
        uint16_t untouched = 7;
        expect_status(wspush_engine_local_port(no_listener, &untouched), WSPUSH_STATUS_NO_LISTENER,
                      "the engine has no listener", "local_port: no listener");
        expect(untouched == 7, "local_port: output untouched on error");
        wspush_engine_free(no_listener); /* without stop: free stops it */
    }
    check_stop_and_free(engine);

    printf("abi_check: %d passed, %d failed\n", passed, failed);
    return failed == 0 ? 0 : 1;
}
