/*
 * JNI glue of io.wspush.WsPush over the wspush C ABI (include/wspush.h).
 *
 * Built by bindings/java/build.sh into libwspush_jni.so, with libwspush.a linked in (one
 * library to load, and the engine's symbols are not exported from it).
 *
 * Rules kept here:
 * - natives return the wspush_status; on failure they put the engine's message (UTF-8) into
 *   error[0] before returning, in the same native call, so the C API's thread-local last
 *   error is read on the thread that failed; Java raises the exception;
 * - strings cross as byte[] of real UTF-8 (JNI's "modified UTF-8" differs for NUL and
 *   characters outside the BMP), decoded on the Java side;
 * - engine threads (the workers, and the acceptor for the authorizer) attach to the JVM once,
 *   as daemons, on their first callback, and detach when they exit (a pthread key destructor);
 * - each callback runs inside PushLocalFrame/PopLocalFrame, so it leaks no local reference
 *   (an attached native thread never returns to Java to free them);
 * - the listener (a WsPush.Dispatcher) and the authorizer (a WsPush.AuthorizerDispatcher) are
 *   each held as a global reference owned by the engine's userdata, released by the userdata
 *   destructor when they are replaced or removed or the engine is freed;
 * - the authorizer denies whenever Java cannot answer: no JNIEnv, no memory, an exception.
 */
#define _GNU_SOURCE /* pthread_getname_np */

#include <errno.h>
#include <fcntl.h>
#include <jni.h>
#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "wspush.h"

#define JNI_VERSION JNI_VERSION_1_8

static JavaVM *jvm;
static pthread_key_t detach_key;
static jclass dispatcher_class; /* global ref, kept for the library's life */
static jmethodID dispatch_open;
static jmethodID dispatch_message;
static jmethodID dispatch_close;
static jclass authorizer_class; /* global ref, kept for the library's life */
static jmethodID dispatch_authorize;

static wspush_engine *engine_of(jlong handle) {
    return (wspush_engine *)(intptr_t)handle;
}

/* ------------------------------------------------------------------------------------
 * Threads: attach once, detach at thread exit. */

static void detach_at_exit(void *vm) {
    (*(JavaVM *)vm)->DetachCurrentThread((JavaVM *)vm);
}

/* The JNIEnv of the calling thread, attaching it (once, as a daemon) if it is not yet. */
static JNIEnv *current_env(void) {
    JNIEnv *env = NULL;
    jint rc = (*jvm)->GetEnv(jvm, (void **)&env, JNI_VERSION);
    if (rc == JNI_OK) {
        return env;
    }
    if (rc != JNI_EDETACHED) {
        return NULL;
    }
    char name[32] = "wspush-native";
    pthread_getname_np(pthread_self(), name, sizeof name);
    JavaVMAttachArgs args = {JNI_VERSION, name, NULL};
    if ((*jvm)->AttachCurrentThreadAsDaemon(jvm, (void **)&env, &args) != JNI_OK) {
        return NULL;
    }
    pthread_setspecific(detach_key, jvm);
    return env;
}

/* ------------------------------------------------------------------------------------
 * Errors. */

/* Puts the calling thread's last error (UTF-8) into error[0] when status is a failure. */
static jint finish(JNIEnv *env, wspush_status status, jobjectArray error) {
    if (status == WSPUSH_STATUS_OK || error == NULL || (*env)->ExceptionCheck(env)) {
        return (jint)status;
    }
    char message[1024];
    size_t full = 0;
    wspush_last_error(message, sizeof message, &full);
    size_t len = full < sizeof message ? full : sizeof message - 1;
    jbyteArray bytes = (*env)->NewByteArray(env, (jsize)len);
    if (bytes != NULL) {
        (*env)->SetByteArrayRegion(env, bytes, 0, (jsize)len, (const jbyte *)message);
        if (!(*env)->ExceptionCheck(env)) {
            (*env)->SetObjectArrayElement(env, error, 0, bytes);
        }
        (*env)->DeleteLocalRef(env, bytes);
    }
    return (jint)status;
}

/* ------------------------------------------------------------------------------------
 * Callbacks: on engine worker threads. */

/* What the engine holds as userdata: the Dispatcher (callbacks) or the AuthorizerDispatcher
 * (authorizer), as a global reference. */
struct held {
    jobject dispatcher;
};

static jbyteArray new_bytes(JNIEnv *env, const void *data, size_t len) {
    if (len > INT32_MAX) {
        return NULL;
    }
    jbyteArray array = (*env)->NewByteArray(env, (jsize)len);
    if (array != NULL && len > 0) {
        (*env)->SetByteArrayRegion(env, array, 0, (jsize)len, (const jbyte *)data);
        if ((*env)->ExceptionCheck(env)) {
            return NULL;
        }
    }
    return array;
}

/* Logs and clears whatever the Java side left pending (the Dispatcher catches the
 * listener's exceptions; this is for OutOfMemoryError and the like). */
static void clear_exception(JNIEnv *env) {
    if ((*env)->ExceptionCheck(env)) {
        (*env)->ExceptionDescribe(env);
        (*env)->ExceptionClear(env);
    }
}

static void on_open(void *userdata, uint64_t conn, const char *id, size_t id_len) {
    struct held *listener = userdata;
    JNIEnv *env = current_env();
    if (env == NULL || (*env)->PushLocalFrame(env, 4) != JNI_OK) {
        if (env != NULL) {
            clear_exception(env);
        }
        return;
    }
    jbyteArray jid = new_bytes(env, id, id_len);
    if (jid != NULL) {
        (*env)->CallVoidMethod(env, listener->dispatcher, dispatch_open, (jlong)conn, jid);
    }
    clear_exception(env);
    (*env)->PopLocalFrame(env, NULL);
}

static void on_message(void *userdata, uint64_t conn, const char *id, size_t id_len, uint32_t opcode,
                       const uint8_t *data, size_t len) {
    struct held *listener = userdata;
    JNIEnv *env = current_env();
    if (env == NULL || (*env)->PushLocalFrame(env, 4) != JNI_OK) {
        if (env != NULL) {
            clear_exception(env);
        }
        return;
    }
    jbyteArray jid = new_bytes(env, id, id_len);
    jbyteArray jdata = jid == NULL ? NULL : new_bytes(env, data, len);
    if (jdata != NULL) {
        (*env)->CallVoidMethod(env, listener->dispatcher, dispatch_message, (jlong)conn, jid, (jint)opcode, jdata);
    }
    clear_exception(env);
    (*env)->PopLocalFrame(env, NULL);
}

static void on_close(void *userdata, uint64_t conn, const char *id, size_t id_len, uint16_t code) {
    struct held *listener = userdata;
    JNIEnv *env = current_env();
    if (env == NULL || (*env)->PushLocalFrame(env, 4) != JNI_OK) {
        if (env != NULL) {
            clear_exception(env);
        }
        return;
    }
    jbyteArray jid = new_bytes(env, id, id_len);
    if (jid != NULL) {
        (*env)->CallVoidMethod(env, listener->dispatcher, dispatch_close, (jlong)conn, jid, (jint)code);
    }
    clear_exception(env);
    (*env)->PopLocalFrame(env, NULL);
}

/* The userdata destructor: on the thread that replaced the listener (or authorizer) or freed
 * the engine (a Java thread), or on a worker (the acceptor) right after its last call. */
static void free_held(void *userdata) {
    struct held *held = userdata;
    JNIEnv *env = current_env();
    if (env != NULL) {
        (*env)->DeleteGlobalRef(env, held->dispatcher);
    }
    free(held);
}

/* ------------------------------------------------------------------------------------
 * The authorizer: on the engine's acceptor thread. */

/* The 4-byte big-endian length `len` at `*at` in `array`, then `len` bytes of `data`. */
static void put_field(JNIEnv *env, jbyteArray array, jsize *at, const void *data, size_t len) {
    jbyte prefix[4] = {(jbyte)(len >> 24), (jbyte)(len >> 16), (jbyte)(len >> 8), (jbyte)len};
    (*env)->SetByteArrayRegion(env, array, *at, 4, prefix);
    *at += 4;
    if (len > 0 && !(*env)->ExceptionCheck(env)) {
        (*env)->SetByteArrayRegion(env, array, *at, (jsize)len, (const jbyte *)data);
        *at += (jsize)len;
    }
}

/* The request's headers packed into one byte[] (one allocation, however many headers): each
 * as its name's length, name, value's length, value (see WsPush.AuthorizerDispatcher). NULL if
 * it cannot be made (an exception may be pending). */
static jbyteArray packed_headers(JNIEnv *env, const wspush_authorize_request *request) {
    size_t total = 0;
    for (size_t i = 0; i < request->headers_len; i++) {
        const wspush_header *header = &request->headers[i];
        if (header->name_len > INT32_MAX || header->value_len > INT32_MAX) {
            return NULL;
        }
        size_t size = 8 + header->name_len + header->value_len;
        if (total > (size_t)INT32_MAX - size) {
            return NULL;
        }
        total += size;
    }
    jbyteArray array = (*env)->NewByteArray(env, (jsize)total);
    jsize at = 0;
    for (size_t i = 0; array != NULL && i < request->headers_len; i++) {
        const wspush_header *header = &request->headers[i];
        put_field(env, array, &at, header->name, header->name_len);
        if (!(*env)->ExceptionCheck(env)) {
            put_field(env, array, &at, header->value, header->value_len);
        }
        if ((*env)->ExceptionCheck(env)) {
            return NULL;
        }
    }
    return array;
}

/* The wspush_authorize_callback: asks the AuthorizerDispatcher; denies whenever Java cannot
 * answer. */
static bool authorize(void *userdata, const wspush_authorize_request *request) {
    struct held *authorizer = userdata;
    JNIEnv *env = current_env();
    if (env == NULL || (*env)->PushLocalFrame(env, 8) != JNI_OK) {
        if (env != NULL) {
            clear_exception(env);
        }
        return false;
    }
    jboolean allowed = JNI_FALSE;
    jbyteArray id = new_bytes(env, request->id, request->id_len);
    jbyteArray path = id == NULL ? NULL : new_bytes(env, request->path, request->path_len);
    jbyteArray headers = path == NULL ? NULL : packed_headers(env, request);
    jbyteArray peer = NULL;
    bool ready = headers != NULL;
    if (ready && request->peer_len > 0) {
        peer = new_bytes(env, request->peer, request->peer_len);
        ready = peer != NULL;
    }
    if (ready) {
        /* The dispatcher catches what the authorizer throws (and returns false). */
        allowed = (*env)->CallBooleanMethod(env, authorizer->dispatcher, dispatch_authorize, id, path, headers, peer);
        if ((*env)->ExceptionCheck(env)) {
            allowed = JNI_FALSE;
        }
    }
    clear_exception(env);
    (*env)->PopLocalFrame(env, NULL);
    return allowed == JNI_TRUE;
}

/* ------------------------------------------------------------------------------------
 * Natives of io.wspush.WsPush. */

static jstring JNICALL n_version(JNIEnv *env, jclass cls) {
    (void)cls;
    return (*env)->NewStringUTF(env, wspush_version()); /* ASCII */
}

static jstring JNICALL n_status_name(JNIEnv *env, jclass cls, jint status) {
    (void)cls;
    return (*env)->NewStringUTF(env, wspush_status_str((uint32_t)status)); /* ASCII */
}

static jint JNICALL n_start(JNIEnv *env, jclass cls, jbyteArray config, jlongArray out, jobjectArray error) {
    (void)cls;
    jsize len = (*env)->GetArrayLength(env, config);
    jbyte *json = (*env)->GetByteArrayElements(env, config, NULL);
    if (json == NULL) {
        return -1; /* OutOfMemoryError pending */
    }
    wspush_engine *engine = NULL;
    wspush_status status = wspush_engine_start((const char *)json, (size_t)len, &engine);
    (*env)->ReleaseByteArrayElements(env, config, json, JNI_ABORT);
    if (status == WSPUSH_STATUS_OK) {
        jlong handle = (jlong)(intptr_t)engine;
        (*env)->SetLongArrayRegion(env, out, 0, 1, &handle);
    }
    return finish(env, status, error);
}

static jint JNICALL n_local_port(JNIEnv *env, jclass cls, jlong handle, jintArray out, jobjectArray error) {
    (void)cls;
    uint16_t port = 0;
    wspush_status status = wspush_engine_local_port(engine_of(handle), &port);
    if (status == WSPUSH_STATUS_OK) {
        jint value = port;
        (*env)->SetIntArrayRegion(env, out, 0, 1, &value);
    }
    return finish(env, status, error);
}

/* A global ref to `dispatcher` in a `struct held` the engine frees with free_held, or NULL with
 * `*failure` set: WSPUSH_STATUS_INTERNAL (no memory) or -1 (OutOfMemoryError pending). */
static struct held *hold(JNIEnv *env, jobject dispatcher, jint *failure) {
    struct held *held = malloc(sizeof *held);
    if (held == NULL) {
        *failure = WSPUSH_STATUS_INTERNAL;
        return NULL;
    }
    held->dispatcher = (*env)->NewGlobalRef(env, dispatcher);
    if (held->dispatcher == NULL) {
        free(held);
        *failure = -1;
        return NULL;
    }
    return held;
}

/* After handing `held` to the engine: if the engine refused it, it is still ours to release. */
static jint handed_over(JNIEnv *env, struct held *held, wspush_status status, jobjectArray error) {
    if (status != WSPUSH_STATUS_OK) {
        (*env)->DeleteGlobalRef(env, held->dispatcher);
        free(held);
    }
    return finish(env, status, error);
}

static jint JNICALL n_set_listener(JNIEnv *env, jclass cls, jlong handle, jobject dispatcher, jobjectArray error) {
    (void)cls;
    if (dispatcher == NULL) {
        return finish(env, wspush_engine_set_callbacks(engine_of(handle), NULL, NULL, NULL), error);
    }
    jint failure = 0;
    struct held *listener = hold(env, dispatcher, &failure);
    if (listener == NULL) {
        return failure < 0 ? failure : finish(env, (wspush_status)failure, error);
    }
    wspush_callbacks callbacks = {.on_open = on_open, .on_message = on_message, .on_close = on_close};
    return handed_over(env, listener,
                       wspush_engine_set_callbacks(engine_of(handle), &callbacks, listener, free_held), error);
}

static jint JNICALL n_set_authorizer(JNIEnv *env, jclass cls, jlong handle, jobject dispatcher,
                                    jobjectArray error) {
    (void)cls;
    if (dispatcher == NULL) {
        return finish(env, wspush_engine_set_authorizer(engine_of(handle), NULL, NULL, NULL), error);
    }
    jint failure = 0;
    struct held *authorizer = hold(env, dispatcher, &failure);
    if (authorizer == NULL) {
        return failure < 0 ? failure : finish(env, (wspush_status)failure, error);
    }
    return handed_over(env, authorizer,
                       wspush_engine_set_authorizer(engine_of(handle), authorize, authorizer, free_held), error);
}

static jint JNICALL n_register(JNIEnv *env, jclass cls, jlong handle, jint fd, jbyteArray id, jint flags,
                               jobjectArray error) {
    (void)cls;
    jsize id_len = (*env)->GetArrayLength(env, id);
    void *id_bytes = (*env)->GetPrimitiveArrayCritical(env, id, NULL);
    if (id_bytes == NULL) {
        return -1;
    }
    wspush_status status = wspush_engine_register(engine_of(handle), id_bytes, (size_t)id_len, fd, (uint32_t)flags);
    (*env)->ReleasePrimitiveArrayCritical(env, id, id_bytes, JNI_ABORT);
    return finish(env, status, error);
}

/* The engine copies the message before returning and never blocks nor calls back into
 * Java from a send, so the arrays are pinned (critical) for the call instead of copied. */
static jint JNICALL n_send(JNIEnv *env, jclass cls, jlong handle, jbyteArray id, jbyteArray data, jint opcode,
                           jobjectArray error) {
    (void)cls;
    jsize id_len = (*env)->GetArrayLength(env, id);
    jsize len = (*env)->GetArrayLength(env, data);
    void *id_bytes = (*env)->GetPrimitiveArrayCritical(env, id, NULL);
    if (id_bytes == NULL) {
        return -1;
    }
    void *bytes = (*env)->GetPrimitiveArrayCritical(env, data, NULL);
    if (bytes == NULL) {
        (*env)->ReleasePrimitiveArrayCritical(env, id, id_bytes, JNI_ABORT);
        return -1;
    }
    wspush_status status =
        wspush_engine_send(engine_of(handle), id_bytes, (size_t)id_len, bytes, (size_t)len, (uint32_t)opcode);
    (*env)->ReleasePrimitiveArrayCritical(env, data, bytes, JNI_ABORT);
    (*env)->ReleasePrimitiveArrayCritical(env, id, id_bytes, JNI_ABORT);
    return finish(env, status, error);
}

/* A malloc'd copy of a byte[] (at least one byte, so never NULL for an empty array); NULL
 * with an exception pending or when out of memory. */
static char *copy_bytes(JNIEnv *env, jbyteArray array, jsize *len) {
    *len = (*env)->GetArrayLength(env, array);
    char *copy = malloc((size_t)*len + 1);
    if (copy != NULL) {
        (*env)->GetByteArrayRegion(env, array, 0, *len, (jbyte *)copy);
    }
    return copy;
}

/* Blocks until the receipt or the timeout, so the arrays are copied, not pinned, for the call
 * (a critical region must not block). On OK: offset[0], and epoch[0] the epoch's ASCII bytes
 * (left null when the message has no position). */
static jint JNICALL n_send_positioned(JNIEnv *env, jclass cls, jlong handle, jbyteArray id, jbyteArray data,
                                      jint opcode, jint timeout_ms, jlongArray offset, jobjectArray epoch,
                                      jobjectArray error) {
    (void)cls;
    jsize id_len = 0;
    jsize len = 0;
    char *id_bytes = copy_bytes(env, id, &id_len);
    char *bytes = id_bytes == NULL ? NULL : copy_bytes(env, data, &len);
    if (bytes == NULL) {
        free(id_bytes);
        return finish(env, WSPUSH_STATUS_INTERNAL, error); /* out of memory */
    }
    wspush_position position;
    wspush_status status = wspush_engine_send_positioned(engine_of(handle), id_bytes, (size_t)id_len, bytes,
                                                         (size_t)len, (uint32_t)opcode, (uint32_t)timeout_ms,
                                                         &position);
    free(bytes);
    free(id_bytes);
    if (status == WSPUSH_STATUS_OK) {
        jlong value = (jlong)position.offset;
        (*env)->SetLongArrayRegion(env, offset, 0, 1, &value);
        if (position.epoch_len > 0) {
            jbyteArray text = new_bytes(env, position.epoch, position.epoch_len);
            if (text == NULL) {
                return -1; /* OutOfMemoryError pending */
            }
            (*env)->SetObjectArrayElement(env, epoch, 0, text);
            (*env)->DeleteLocalRef(env, text);
        }
    }
    return finish(env, status, error);
}

static jint JNICALL n_send_to(JNIEnv *env, jclass cls, jlong handle, jlong conn, jbyteArray data, jint opcode,
                              jobjectArray error) {
    (void)cls;
    jsize len = (*env)->GetArrayLength(env, data);
    void *bytes = (*env)->GetPrimitiveArrayCritical(env, data, NULL);
    if (bytes == NULL) {
        return -1;
    }
    wspush_status status =
        wspush_engine_send_to(engine_of(handle), (uint64_t)conn, bytes, (size_t)len, (uint32_t)opcode);
    (*env)->ReleasePrimitiveArrayCritical(env, data, bytes, JNI_ABORT);
    return finish(env, status, error);
}

static jint JNICALL n_broadcast(JNIEnv *env, jclass cls, jlong handle, jbyteArray data, jint opcode,
                                jobjectArray error) {
    (void)cls;
    jsize len = (*env)->GetArrayLength(env, data);
    void *bytes = (*env)->GetPrimitiveArrayCritical(env, data, NULL);
    if (bytes == NULL) {
        return -1;
    }
    wspush_status status = wspush_engine_broadcast(engine_of(handle), bytes, (size_t)len, (uint32_t)opcode);
    (*env)->ReleasePrimitiveArrayCritical(env, data, bytes, JNI_ABORT);
    return finish(env, status, error);
}

static jint JNICALL n_disconnect(JNIEnv *env, jclass cls, jlong handle, jlong conn, jint code, jobjectArray error) {
    (void)cls;
    return finish(env, wspush_engine_close_connection(engine_of(handle), (uint64_t)conn, (uint16_t)code), error);
}

static jint JNICALL n_stats(JNIEnv *env, jclass cls, jlong handle, jlongArray out, jobjectArray error) {
    (void)cls;
    /* wspush_stats is all uint64_t, in the order of WsPushStats' components. */
    enum { FIELDS = sizeof(wspush_stats) / sizeof(uint64_t) };
    if ((*env)->GetArrayLength(env, out) != FIELDS) {
        return finish(env, WSPUSH_STATUS_INVALID_ARGUMENT, error);
    }
    wspush_stats stats;
    wspush_status status = wspush_engine_stats(engine_of(handle), &stats, sizeof stats);
    if (status == WSPUSH_STATUS_OK) {
        jlong values[FIELDS];
        memcpy(values, &stats, sizeof stats);
        (*env)->SetLongArrayRegion(env, out, 0, FIELDS, values);
    }
    return finish(env, status, error);
}

/* Reads the certificate and key files on this thread; calls back into no Java. */
static jint JNICALL n_reload_tls(JNIEnv *env, jclass cls, jlong handle, jobjectArray error) {
    (void)cls;
    return finish(env, wspush_engine_reload_tls(engine_of(handle)), error);
}

static jint JNICALL n_stop(JNIEnv *env, jclass cls, jlong handle, jint timeout_ms, jobjectArray error) {
    (void)cls;
    /* Blocks until the workers are joined; they may call into Java meanwhile (on_close),
     * which is fine: this thread is in native code and holds no JNI resources. */
    return finish(env, wspush_engine_stop(engine_of(handle), (uint32_t)timeout_ms), error);
}

static void JNICALL n_free(JNIEnv *env, jclass cls, jlong handle) {
    (void)env;
    (void)cls;
    wspush_engine_free(engine_of(handle)); /* runs free_held on this thread */
}

/* A duplicate (close-on-exec) of the fd of a sun.nio.ch.SocketChannelImpl, read from its
 * private field `fdVal` (JNI field access ignores Java's access checks); Integer.MIN_VALUE if
 * the class has no such field, -errno if dup fails. */
static jint JNICALL n_dup_channel_fd(JNIEnv *env, jclass cls, jobject channel) {
    (void)cls;
    jclass channel_class = (*env)->GetObjectClass(env, channel);
    jfieldID field = (*env)->GetFieldID(env, channel_class, "fdVal", "I");
    (*env)->DeleteLocalRef(env, channel_class);
    if (field == NULL) {
        (*env)->ExceptionClear(env); /* NoSuchFieldError */
        return INT32_MIN;
    }
    jint fd = (*env)->GetIntField(env, channel, field);
    int copy = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    return copy >= 0 ? copy : -errno;
}

static void JNICALL n_close_fd(JNIEnv *env, jclass cls, jint fd) {
    (void)env;
    (void)cls;
    close(fd);
}

#define NATIVE(name, signature, function) {(char *)(name), (char *)(signature), (void *)(function)}

static const JNINativeMethod natives[] = {
    NATIVE("nVersion", "()Ljava/lang/String;", n_version),
    NATIVE("nStatusName", "(I)Ljava/lang/String;", n_status_name),
    NATIVE("nStart", "([B[J[[B)I", n_start),
    NATIVE("nLocalPort", "(J[I[[B)I", n_local_port),
    NATIVE("nSetListener", "(JLio/wspush/WsPush$Dispatcher;[[B)I", n_set_listener),
    NATIVE("nSetAuthorizer", "(JLio/wspush/WsPush$AuthorizerDispatcher;[[B)I", n_set_authorizer),
    NATIVE("nRegister", "(JI[BI[[B)I", n_register),
    NATIVE("nSend", "(J[B[BI[[B)I", n_send),
    NATIVE("nSendPositioned", "(J[B[BII[J[[B[[B)I", n_send_positioned),
    NATIVE("nSendTo", "(JJ[BI[[B)I", n_send_to),
    NATIVE("nBroadcast", "(J[BI[[B)I", n_broadcast),
    NATIVE("nDisconnect", "(JJI[[B)I", n_disconnect),
    NATIVE("nStats", "(J[J[[B)I", n_stats),
    NATIVE("nReloadTls", "(J[[B)I", n_reload_tls),
    NATIVE("nStop", "(JI[[B)I", n_stop),
    NATIVE("nFree", "(J)V", n_free),
    NATIVE("nDupChannelFd", "(Ljava/nio/channels/SocketChannel;)I", n_dup_channel_fd),
    NATIVE("nCloseFd", "(I)V", n_close_fd),
};

JNIEXPORT jint JNICALL JNI_OnLoad(JavaVM *vm, void *reserved) {
    (void)reserved;
    JNIEnv *env = NULL;
    if ((*vm)->GetEnv(vm, (void **)&env, JNI_VERSION) != JNI_OK) {
        return JNI_ERR;
    }
    jvm = vm;
    if (pthread_key_create(&detach_key, detach_at_exit) != 0) {
        return JNI_ERR;
    }
    jclass dispatcher = (*env)->FindClass(env, "io/wspush/WsPush$Dispatcher");
    if (dispatcher == NULL) {
        return JNI_ERR;
    }
    dispatcher_class = (*env)->NewGlobalRef(env, dispatcher);
    (*env)->DeleteLocalRef(env, dispatcher);
    dispatch_open = (*env)->GetMethodID(env, dispatcher_class, "open", "(J[B)V");
    dispatch_message = (*env)->GetMethodID(env, dispatcher_class, "message", "(J[BI[B)V");
    dispatch_close = (*env)->GetMethodID(env, dispatcher_class, "close", "(J[BI)V");
    if (dispatcher_class == NULL || dispatch_open == NULL || dispatch_message == NULL || dispatch_close == NULL) {
        return JNI_ERR;
    }
    jclass authorizer = (*env)->FindClass(env, "io/wspush/WsPush$AuthorizerDispatcher");
    if (authorizer == NULL) {
        return JNI_ERR;
    }
    authorizer_class = (*env)->NewGlobalRef(env, authorizer);
    (*env)->DeleteLocalRef(env, authorizer);
    if (authorizer_class == NULL) {
        return JNI_ERR;
    }
    dispatch_authorize = (*env)->GetMethodID(env, authorizer_class, "authorize", "([B[B[B[B)Z");
    if (dispatch_authorize == NULL) {
        return JNI_ERR;
    }
    jclass wspush = (*env)->FindClass(env, "io/wspush/WsPush");
    if (wspush == NULL) {
        return JNI_ERR;
    }
    jint rc = (*env)->RegisterNatives(env, wspush, natives, (jint)(sizeof natives / sizeof natives[0]));
    (*env)->DeleteLocalRef(env, wspush);
    return rc == JNI_OK ? JNI_VERSION : JNI_ERR;
}
