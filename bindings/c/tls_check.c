/*
 * The certificate reload of the wspush C ABI, from C (run by tests/ffi_c.rs, also under
 * valgrind): an engine serving wss:// with the certificate and key files named by its two
 * arguments, driven line by line from stdin by the test, which renews the files between the
 * lines and checks with TLS clients of its own which certificate new connections are shown:
 *
 *   reload          wspush_engine_reload_tls; prints "reload: STATUS" or "reload: STATUS (ERROR)"
 *   send ID TEXT    wspush_engine_send of TEXT to ID; prints "send: STATUS"
 *   stop            (or the end of stdin) stops the engine, prints the counters, frees it
 *
 * Its callbacks print "open: id=ID" and "close: id=ID code=CODE", so that the test waits for
 * events rather than for time, and checks the whole output exactly.
 *
 *   ./tls_check server.crt server.key
 */
#define _POSIX_C_SOURCE 200809L

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wspush.h"

/* Prints "WHAT: STATUS", with the engine's detail message on failure. */
static void report(const char *what, wspush_status status) {
    if (status == WSPUSH_STATUS_OK) {
        printf("%s: %s\n", what, wspush_status_str(status));
        return;
    }
    char detail[1024];
    size_t len = 0;
    wspush_last_error(detail, sizeof detail, &len);
    printf("%s: %s (%s)\n", what, wspush_status_str(status), detail);
}

static void on_open(void *userdata, uint64_t conn, const char *id, size_t id_len) {
    (void)userdata;
    (void)conn;
    printf("open: id=%.*s\n", (int)id_len, id);
}

static void on_close(void *userdata, uint64_t conn, const char *id, size_t id_len, uint16_t code) {
    (void)userdata;
    (void)conn;
    printf("close: id=%.*s code=%u\n", (int)id_len, id, (unsigned)code);
}

/* The configuration: a wss:// listener on any free port with these files. Paths are put into
 * JSON as they are, so they must not need escaping. */
static int configure(char *json, size_t size, const char *cert, const char *key) {
    if (strpbrk(cert, "\"\\") != NULL || strpbrk(key, "\"\\") != NULL) {
        return -1;
    }
    int n = snprintf(json, size,
                     "{\"ws_listen\": \"127.0.0.1:0\", \"workers\": 2, \"ping_interval_ms\": 0, "
                     "\"tls_cert\": \"%s\", \"tls_key\": \"%s\"}",
                     cert, key);
    return n > 0 && (size_t)n < size ? n : -1;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc != 3) {
        fprintf(stderr, "usage: %s CERT_FILE KEY_FILE\n", argv[0]);
        return 2;
    }
    char config[4096];
    int len = configure(config, sizeof config, argv[1], argv[2]);
    if (len < 0) {
        fprintf(stderr, "the paths are too long, or hold a quote or a backslash\n");
        return 2;
    }
    wspush_engine *engine = NULL;
    wspush_status status = wspush_engine_start(config, (size_t)len, &engine);
    if (status != WSPUSH_STATUS_OK) {
        report("start", status);
        return 1;
    }
    wspush_callbacks callbacks = {.on_open = on_open, .on_message = NULL, .on_close = on_close};
    uint16_t port = 0;
    if (wspush_engine_set_callbacks(engine, &callbacks, NULL, NULL) != WSPUSH_STATUS_OK ||
        wspush_engine_local_port(engine, &port) != WSPUSH_STATUS_OK) {
        report("setup", WSPUSH_STATUS_INTERNAL);
        wspush_engine_free(engine);
        return 1;
    }
    printf("listening on 127.0.0.1:%u\n", (unsigned)port);

    char line[512];
    while (fgets(line, sizeof line, stdin) != NULL) {
        line[strcspn(line, "\n")] = '\0';
        if (strcmp(line, "reload") == 0) {
            report("reload", wspush_engine_reload_tls(engine));
        } else if (strncmp(line, "send ", 5) == 0 && strchr(line + 5, ' ') != NULL) {
            const char *id = line + 5;
            const char *text = strchr(id, ' ') + 1;
            report("send", wspush_engine_send(engine, id, (size_t)(text - 1 - id), text, strlen(text),
                                              WSPUSH_OPCODE_TEXT));
        } else if (strcmp(line, "stop") == 0) {
            break;
        } else {
            fprintf(stderr, "unknown command: %s\n", line);
            wspush_engine_free(engine);
            return 2;
        }
    }

    report("stop", wspush_engine_stop(engine, 5000));
    wspush_stats stats;
    if (wspush_engine_stats(engine, &stats, sizeof stats) == WSPUSH_STATUS_OK) {
        printf("stats: connections_opened=%llu handshake_tls=%llu\n", (unsigned long long)stats.connections_opened,
               (unsigned long long)stats.handshake_tls);
    }
    wspush_engine_free(engine);
    printf("freed\n");
    return 0;
}
