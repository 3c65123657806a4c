/*
 * Checks who may connect, through the wspush C ABI (run by tests/ffi_c.rs, also under
 * valgrind): the token settings of the JSON configuration (401 without a valid HS256 token,
 * 101 with one, sockets closed with 1008 when their token expires), the authorizer callback
 * (403 or 101 as it says; what it is told: id, path, headers, peer; NULL removes it; its
 * userdata freed exactly once, on replace and on free), allowed origins (403), the
 * per-address limit (429), and the counters of each refusal. Clients are raw sockets, so the
 * HTTP status lines are checked exactly. Prints one "ok"/"not ok" line per check and exits 1
 * if any failed.
 *
 * Usage: auth_check ALICE_TOKEN BOB_TOKEN CAROL_TOKEN
 * HS256 tokens signed with SECRET below, minted by the test: alice's and bob's (sub "alice",
 * "bob") valid for minutes, carol's (sub "carol") expiring about 15 seconds after minting.
 */
#define _GNU_SOURCE /* pthread_getname_np */

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "tap.h"

#define SECRET "wspush-ffi-test-secret-0123456789abcdef"

static void sleep_ms(long ms) {
    struct timespec pause = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&pause, NULL);
}

static wspush_engine *start(const char *config) {
    wspush_engine *engine = NULL;
    if (wspush_engine_start(config, strlen(config), &engine) != WSPUSH_STATUS_OK) {
        printf("# cannot start %s: %s\n", config, last_error());
        exit(2);
    }
    return engine;
}

static uint16_t port_of(const wspush_engine *engine) {
    uint16_t port = 0;
    if (wspush_engine_local_port(engine, &port) != WSPUSH_STATUS_OK) {
        exit(2);
    }
    return port;
}

static wspush_stats stats_of(const wspush_engine *engine) {
    wspush_stats stats;
    if (wspush_engine_stats(engine, &stats, sizeof stats) != WSPUSH_STATUS_OK) {
        exit(2);
    }
    return stats;
}

/* Waits up to 60 s for a counter (a field of a fresh snapshot) to reach `want`. */
#define EVENTUALLY_STAT(engine, field, want)                                                                        \
    do {                                                                                                            \
        for (int tries_ = 0; tries_ < 600 && stats_of(engine).field != (want); tries_++) {                          \
            sleep_ms(100);                                                                                          \
        }                                                                                                           \
    } while (0)

/* ------------------------------------------------------------------------------------
 * Raw clients. */

/* A TCP connection to 127.0.0.1:port; reads time out after 60 s (valgrind is slow). */
static int connect_to(uint16_t port) {
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(port);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0) {
        perror("connect");
        exit(2);
    }
    struct timeval timeout = {60, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
    return fd;
}

/* A connected TCP socket pair over loopback, as a host that accepts itself has. */
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
    *client = connect_to(ntohs(addr.sin_port));
    *server = accept(listener, NULL, NULL);
    if (*server < 0) {
        perror("accept");
        exit(2);
    }
    close(listener);
}

/* "127.0.0.1:PORT" of the local end of `fd`: what the server sees as its peer. */
static void local_address(int fd, char *out, size_t len) {
    struct sockaddr_in addr;
    socklen_t size = sizeof addr;
    if (getsockname(fd, (struct sockaddr *)&addr, &size) != 0) {
        exit(2);
    }
    snprintf(out, len, "127.0.0.1:%u", (unsigned)ntohs(addr.sin_port));
}

/* Sends an upgrade request for `target` with the extra header lines `extra` ("" or lines
 * each ending in \r\n). */
static void send_upgrade(int fd, const char *target, const char *extra) {
    char request[4096];
    int len = snprintf(request, sizeof request,
                       "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                       "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n%s\r\n",
                       target, extra);
    if (len <= 0 || (size_t)len >= sizeof request || write(fd, request, (size_t)len) != len) {
        exit(2);
    }
}

/* Reads the response head (byte by byte: nothing after it is consumed) and returns its
 * status code, or -1. The status line goes into `line` if not NULL. */
static int read_status(int fd, char *line, size_t line_len) {
    char head[2048];
    size_t n = 0;
    while (n + 1 < sizeof head) {
        ssize_t got = read(fd, head + n, 1);
        if (got <= 0) {
            break;
        }
        n++;
        if (n >= 4 && memcmp(head + n - 4, "\r\n\r\n", 4) == 0) {
            break;
        }
    }
    head[n] = '\0';
    if (line != NULL) {
        size_t end = strcspn(head, "\r");
        snprintf(line, line_len, "%.*s", (int)end, head);
    }
    int status = -1;
    if (sscanf(head, "HTTP/1.1 %d", &status) != 1) {
        return -1;
    }
    return status;
}

/* One upgrade attempt on a new connection: its status; the connection stays open in *fd
 * (if not NULL) or is closed. */
static int attempt(uint16_t port, const char *target, const char *extra, int *fd) {
    int client = connect_to(port);
    send_upgrade(client, target, extra);
    int status = read_status(client, NULL, 0);
    if (fd != NULL) {
        *fd = client;
    } else {
        close(client);
    }
    return status;
}

static void expect_attempt(uint16_t port, const char *target, const char *extra, int want, const char *what) {
    int got = attempt(port, target, extra, NULL);
    if (got != want) {
        printf("# %s: got %d, want %d\n", target, got, want);
    }
    expect(got == want, what);
}

/* ------------------------------------------------------------------------------------
 * Configuration errors. */

static void check_config_errors(void) {
    wspush_engine *out = NULL;
    const char *no_key = "{\"workers\": 1, \"auth_leeway_ms\": 5000}";
    expect_status(wspush_engine_start(no_key, strlen(no_key), &out), WSPUSH_STATUS_INVALID_CONFIG,
                  "invalid setting `auth_leeway_ms`: token settings need `auth_jwt_secret` or `auth_jwt_public_key`",
                  "config: a token setting without a key names it");
    const char *both = "{\"auth_jwt_secret\": \"" SECRET "\", \"auth_jwt_public_key\": \"-----BEGIN PUBLIC KEY-----\"}";
    expect_status(wspush_engine_start(both, strlen(both), &out), WSPUSH_STATUS_INVALID_CONFIG,
                  "invalid setting `auth_jwt_public_key`: give either `auth_jwt_secret` or `auth_jwt_public_key`, "
                  "not both",
                  "config: a secret and a public key");
    const char *short_secret = "{\"auth_jwt_secret\": \"0123456789\"}";
    expect_status(wspush_engine_start(short_secret, strlen(short_secret), &out), WSPUSH_STATUS_INVALID_CONFIG,
                  "invalid setting `auth_jwt_secret`: the HS256 secret must be at least 32 bytes",
                  "config: a short secret (the engine's check, named by its JSON key)");
    const char *leeway = "{\"auth_jwt_secret\": \"" SECRET "\", \"auth_leeway_ms\": 7200000}";
    expect_status(wspush_engine_start(leeway, strlen(leeway), &out), WSPUSH_STATUS_INVALID_CONFIG,
                  "invalid setting `auth_leeway_ms`: at most 3600 seconds", "config: a leeway over an hour");
    const char *origins = "{\"allowed_origins\": []}";
    expect_status(wspush_engine_start(origins, strlen(origins), &out), WSPUSH_STATUS_INVALID_CONFIG,
                  "invalid setting `allowed_origins`: must list at least one origin", "config: no allowed origin");
    const char *per_ip = "{\"max_connections_per_ip\": 0}";
    expect_status(wspush_engine_start(per_ip, strlen(per_ip), &out), WSPUSH_STATUS_INVALID_CONFIG,
                  "invalid setting `max_connections_per_ip`: must be at least 1", "config: a per-address limit of 0");
    expect(out == NULL, "config: *out untouched on every error");
}

/* ------------------------------------------------------------------------------------
 * Tokens. */

static void check_tokens(const char *alice, const char *bob, const char *carol) {
    wspush_engine *engine = start("{\"ws_listen\": \"127.0.0.1:0\", \"workers\": 1, \"ping_interval_ms\": 0, "
                                  "\"auth_jwt_secret\": \"" SECRET "\", \"auth_leeway_ms\": 0}");
    uint16_t port = port_of(engine);
    char target[1024];

    /* Carol's token expires soon: connected first, her close is checked last. */
    snprintf(target, sizeof target, "/websocket/carol?token=%s", carol);
    int carol_fd = -1;
    int carol_status = attempt(port, target, "", &carol_fd);
    expect(carol_status == 101, "token: carol's short-lived token connects (101)");

    char line[256];
    int fd = connect_to(port);
    send_upgrade(fd, "/websocket/alice", "");
    int status = read_status(fd, line, sizeof line);
    close(fd);
    if (status != 401) {
        printf("# status line: %s\n", line);
    }
    expect(status == 401 && strncmp(line, "HTTP/1.1 401 ", 13) == 0, "token: none is refused with 401");

    snprintf(target, sizeof target, "/websocket/alice?token=%s", alice);
    expect_attempt(port, target, "", 101, "token: alice's token in ?token= connects (101)");
    char header[1024];
    snprintf(header, sizeof header, "Authorization: Bearer %s\r\n", alice);
    expect_attempt(port, "/websocket/alice", header, 101, "token: alice's token as a Bearer header connects (101)");
    snprintf(target, sizeof target, "/websocket/alice?token=%s", bob);
    expect_attempt(port, target, "", 401, "token: bob's token for alice's id is refused (401)");
    expect_attempt(port, "/websocket/alice?token=not.a.jwt", "", 401, "token: garbage is refused (401)");

    EVENTUALLY_STAT(engine, connections_opened, 3);
    wspush_stats stats = stats_of(engine);
    expect(stats.handshake_auth_missing == 1, "stats: handshake_auth_missing == 1");
    expect(stats.handshake_auth_wrong_subject == 1, "stats: handshake_auth_wrong_subject == 1");
    expect(stats.handshake_auth_malformed == 1, "stats: handshake_auth_malformed == 1");
    expect(stats.handshake_auth_bad_signature == 0 && stats.handshake_auth_expired == 0 &&
               stats.handshake_forbidden == 0 && stats.handshake_bad_request == 0,
           "stats: no other refusal counted");
    expect(stats.connections_opened == 3, "stats: 3 sockets opened (carol, alice twice)");

    /* Carol's socket gets close 1008 once her token expires (leeway 0). */
    unsigned char frame[4] = {0, 0, 0, 0};
    size_t got = 0;
    while (carol_status == 101 && got < sizeof frame) {
        ssize_t n = read(carol_fd, frame + got, sizeof frame - got);
        if (n <= 0) {
            break;
        }
        got += (size_t)n;
    }
    unsigned code = (unsigned)frame[2] << 8 | frame[3];
    if (got < sizeof frame || frame[0] != 0x88 || code != 1008) {
        printf("# read %zu bytes: %02x %02x, code %u\n", got, frame[0], frame[1], code);
    }
    expect(got == sizeof frame && frame[0] == 0x88 && code == 1008,
           "token: carol's socket is closed with 1008 when her token expires");
    close(carol_fd);
    EVENTUALLY_STAT(engine, token_expirations, 1);
    expect(stats_of(engine).token_expirations == 1, "stats: token_expirations == 1");

    expect(wspush_engine_stop(engine, 2000) == WSPUSH_STATUS_OK, "token engine: stop");
    wspush_engine_free(engine);
}

/* ------------------------------------------------------------------------------------
 * The authorizer. */

/* Userdata of an authorizer: what it was asked, and how often it was freed. */
struct probe {
    pthread_mutex_t lock;
    const wspush_engine *engine;
    int calls;
    int frees;
    int on_acceptor; /* calls made on the wspush-acceptor thread */
    char id[256];
    char path[512];
    char peer[64];
    char session[64]; /* the x-session header, or "" */
    int names_lower;  /* every header name was lower-case */
    size_t headers_len;
    wspush_status stop_inside;
};

static void probe_init(struct probe *probe, const wspush_engine *engine) {
    memset(probe, 0, sizeof *probe);
    pthread_mutex_init(&probe->lock, NULL);
    probe->engine = engine;
}

static void probe_free(void *userdata) {
    struct probe *probe = userdata;
    pthread_mutex_lock(&probe->lock);
    probe->frees++;
    pthread_mutex_unlock(&probe->lock);
}

static int frees(struct probe *probe) {
    pthread_mutex_lock(&probe->lock);
    int n = probe->frees;
    pthread_mutex_unlock(&probe->lock);
    return n;
}

static int calls(struct probe *probe) {
    pthread_mutex_lock(&probe->lock);
    int n = probe->calls;
    pthread_mutex_unlock(&probe->lock);
    return n;
}

/* Waits up to 60 s for the probe's frees to reach `want` (a call may still be returning). */
static int wait_frees(struct probe *probe, int want) {
    for (int tries = 0; tries < 600 && frees(probe) < want; tries++) {
        sleep_ms(100);
    }
    return frees(probe);
}

static void copy(char *out, size_t out_len, const char *text, size_t len) {
    snprintf(out, out_len, "%.*s", (int)(len < out_len ? len : out_len - 1), len == 0 ? "" : text);
}

/* Records the request; allows it when it has `X-Session: good` and its path does not
 * contain "/deny". */
static bool session_authorizer(void *userdata, const wspush_authorize_request *request) {
    struct probe *probe = userdata;
    char name[16] = "";
    pthread_getname_np(pthread_self(), name, sizeof name);
    /* Stopping the engine here would wait for this very thread: refused. */
    wspush_status stop = wspush_engine_stop(probe->engine, 0);
    pthread_mutex_lock(&probe->lock);
    probe->calls++;
    probe->on_acceptor += strcmp(name, "wspush-acceptor") == 0;
    probe->stop_inside = stop;
    copy(probe->id, sizeof probe->id, request->id, request->id_len);
    copy(probe->path, sizeof probe->path, request->path, request->path_len);
    copy(probe->peer, sizeof probe->peer, request->peer, request->peer_len);
    probe->session[0] = '\0';
    probe->names_lower = 1;
    probe->headers_len = request->headers_len;
    for (size_t i = 0; i < request->headers_len; i++) {
        const wspush_header *header = &request->headers[i];
        for (size_t c = 0; c < header->name_len; c++) {
            probe->names_lower &= !(header->name[c] >= 'A' && header->name[c] <= 'Z');
        }
        if (header->name_len == 9 && memcmp(header->name, "x-session", 9) == 0) {
            copy(probe->session, sizeof probe->session, header->value, header->value_len);
        }
    }
    bool allow = strcmp(probe->session, "good") == 0 && strstr(probe->path, "/deny") == NULL;
    pthread_mutex_unlock(&probe->lock);
    return allow;
}

static bool allow_all(void *userdata, const wspush_authorize_request *request) {
    struct probe *probe = userdata;
    (void)request;
    pthread_mutex_lock(&probe->lock);
    probe->calls++;
    pthread_mutex_unlock(&probe->lock);
    return true;
}

static void check_authorizer(void) {
    wspush_engine *engine = start("{\"ws_listen\": \"127.0.0.1:0\", \"workers\": 1, \"ping_interval_ms\": 0, "
                                  "\"allowed_origins\": [\"https://app.example\"]}");
    uint16_t port = port_of(engine);
    struct probe first, second, third;
    probe_init(&first, engine);
    probe_init(&second, engine);
    probe_init(&third, engine);

    expect_status(wspush_engine_set_authorizer(NULL, session_authorizer, &first, probe_free),
                  WSPUSH_STATUS_NULL_ARGUMENT, "`engine` is NULL", "set_authorizer: NULL engine");
    expect_status(wspush_engine_set_authorizer(engine, NULL, &first, probe_free), WSPUSH_STATUS_INVALID_ARGUMENT,
                  "`callback` is NULL", "set_authorizer: userdata without a callback");
    expect(frees(&first) == 0, "set_authorizer: on error the userdata is not freed");
    expect(wspush_engine_set_authorizer(engine, session_authorizer, &first, probe_free) == WSPUSH_STATUS_OK,
           "set_authorizer: OK");

    /* Allowed: the callback sees the request as sent. */
    int fd = connect_to(port);
    char peer[64];
    local_address(fd, peer, sizeof peer);
    send_upgrade(fd, "/websocket/alice?x=1", "X-Session: good\r\nCookie: theme=dark\r\n");
    int status = read_status(fd, NULL, 0);
    close(fd);
    expect(status == 101, "authorizer: allowed -> 101");
    pthread_mutex_lock(&first.lock);
    expect(first.calls == 1 && first.on_acceptor == 1, "authorizer: asked once, on the wspush-acceptor thread");
    expect(strcmp(first.id, "alice") == 0, "authorizer: sees the id");
    expect(strcmp(first.path, "/websocket/alice?x=1") == 0, "authorizer: sees the path and query");
    expect(strcmp(first.session, "good") == 0 && first.headers_len == 7,
           "authorizer: sees every header (X-Session as x-session)");
    expect(first.names_lower, "authorizer: header names are lower-cased");
    if (strcmp(first.peer, peer) != 0) {
        printf("# peer: got \"%s\", want \"%s\"\n", first.peer, peer);
    }
    expect(strcmp(first.peer, peer) == 0, "authorizer: sees the client's address");
    expect(first.stop_inside == WSPUSH_STATUS_IN_CALLBACK, "authorizer: stop inside it is IN_CALLBACK");
    pthread_mutex_unlock(&first.lock);

    expect_attempt(port, "/websocket/alice", "", 403, "authorizer: no session header -> 403");
    expect_attempt(port, "/websocket/alice", "X-Session: bad\r\n", 403, "authorizer: a wrong session -> 403");
    expect_attempt(port, "/websocket/deny", "X-Session: good\r\n", 403, "authorizer: denied by path -> 403");
    expect_attempt(port, "/websocket/caf%C3%A9", "X-Session: good\r\n", 101, "authorizer: a percent-encoded id");
    pthread_mutex_lock(&first.lock);
    expect(strcmp(first.id, "caf\xc3\xa9") == 0 && strcmp(first.path, "/websocket/caf%C3%A9") == 0,
           "authorizer: the id is decoded, the path as sent");
    pthread_mutex_unlock(&first.lock);

    /* The origin is checked before the authorizer, which is not asked then. */
    int asked = calls(&first);
    expect_attempt(port, "/websocket/alice", "X-Session: good\r\nOrigin: https://evil.example\r\n", 403,
                   "origin: another site -> 403");
    expect(calls(&first) == asked, "origin: the authorizer was not asked");
    expect_attempt(port, "/websocket/alice", "X-Session: good\r\nOrigin: https://app.example\r\n", 101,
                   "origin: an allowed one -> 101");

    /* A socket the host accepted and registers for the engine to upgrade: asked too. */
    int client, server;
    tcp_pair(&client, &server);
    expect(wspush_engine_register(engine, "registered", 10, server, WSPUSH_REGISTER_PERFORM_HANDSHAKE) ==
               WSPUSH_STATUS_OK,
           "register (perform handshake): OK");
    send_upgrade(client, "/some/where", "X-Session: good\r\n");
    expect(read_status(client, NULL, 0) == 101, "register: the authorizer allowed it -> 101");
    close(client);
    pthread_mutex_lock(&first.lock);
    expect(strcmp(first.id, "registered") == 0 && strcmp(first.path, "/some/where") == 0,
           "register: the authorizer saw the registered id and the request's path");
    pthread_mutex_unlock(&first.lock);

    wspush_stats stats = stats_of(engine);
    expect(stats.handshake_forbidden == 3, "stats: handshake_forbidden == 3");
    expect(stats.handshake_forbidden_origin == 1, "stats: handshake_forbidden_origin == 1");

    /* Replacing frees the old userdata, once. */
    expect(wspush_engine_set_authorizer(engine, allow_all, &second, probe_free) == WSPUSH_STATUS_OK,
           "set_authorizer: replace");
    expect(wait_frees(&first, 1) == 1, "set_authorizer: replacing frees the old userdata once");
    expect_attempt(port, "/websocket/bob", "", 101, "authorizer: the new one allows all -> 101");
    expect(calls(&second) == 1, "authorizer: the new one was asked");

    /* NULL removes it (and frees its userdata). */
    expect(wspush_engine_set_authorizer(engine, NULL, NULL, NULL) == WSPUSH_STATUS_OK, "set_authorizer(NULL): OK");
    expect(wait_frees(&second, 1) == 1, "set_authorizer(NULL): the userdata is freed once");
    expect_attempt(port, "/websocket/bob", "", 101, "no authorizer: -> 101");
    expect(calls(&second) == 1 && calls(&first) == asked + 2, "no authorizer: nobody was asked");

    /* Free frees the current one. */
    expect(wspush_engine_set_authorizer(engine, session_authorizer, &third, probe_free) == WSPUSH_STATUS_OK,
           "set_authorizer: again");
    expect(wspush_engine_stop(engine, 2000) == WSPUSH_STATUS_OK, "authorizer engine: stop");
    expect(frees(&third) == 0, "stop: the authorizer's userdata is still held");
    wspush_engine_free(engine);
    expect(frees(&third) == 1, "free: the authorizer's userdata is freed, on this thread");
    expect(frees(&first) == 1 && frees(&second) == 1, "each userdata was freed exactly once");
    pthread_mutex_destroy(&first.lock);
    pthread_mutex_destroy(&second.lock);
    pthread_mutex_destroy(&third.lock);
}

/* ------------------------------------------------------------------------------------
 * The per-address limit. */

static void check_ip_limit(void) {
    wspush_engine *engine = start(
        "{\"ws_listen\": \"127.0.0.1:0\", \"workers\": 1, \"ping_interval_ms\": 0, \"max_connections_per_ip\": 1}");
    uint16_t port = port_of(engine);
    int first = -1;
    expect(attempt(port, "/websocket/one", "", &first) == 101, "per-address limit: the first socket -> 101");
    expect_attempt(port, "/websocket/two", "", 429, "per-address limit: a second one from 127.0.0.1 -> 429");
    expect(stats_of(engine).handshake_over_ip_limit == 1, "stats: handshake_over_ip_limit == 1");
    close(first);
    expect(wspush_engine_stop(engine, 2000) == WSPUSH_STATUS_OK, "per-address engine: stop");
    wspush_engine_free(engine);
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc != 4) {
        fprintf(stderr, "usage: %s ALICE_TOKEN BOB_TOKEN CAROL_TOKEN\n", argv[0]);
        return 2;
    }
    check_config_errors();
    check_tokens(argv[1], argv[2], argv[3]);
    check_authorizer();
    check_ip_limit();
    printf("auth_check: %d passed, %d failed\n", passed, failed);
    return failed == 0 ? 0 : 1;
}
