package io.wspush;

/**
 * A snapshot of the engine's counters ({@link WsPush#stats()}); the fields of
 * {@code wspush_stats} in {@code wspush.h}, in the same order.
 *
 * @param connections open sockets
 * @param ids distinct ids with at least one open socket
 * @param connectionsOpened sockets opened since start
 * @param messagesIn complete messages received from clients
 * @param bytesIn payload bytes of those messages
 * @param messagesOut messages queued to sockets (one per target socket)
 * @param bytesOut bytes written to sockets (frames, handshakes and control frames included)
 * @param slowConsumerDisconnects sockets closed with 1008 for exceeding max_buffered_bytes
 * @param slowConsumerDrops messages dropped for slow sockets under the "drop" policy
 * @param idleTimeouts sockets closed because they sent nothing for idle_timeout
 * @param protocolErrors sockets closed for a protocol violation
 * @param queueFull sends or broadcasts refused with QUEUE_FULL
 * @param handshakeBadRequest refused upgrades: malformed request (400)
 * @param handshakeBadVersion refused upgrades: WebSocket version other than 13 (426)
 * @param handshakeBadPath refused upgrades: path not under the prefix, or a bad id in it
 * @param handshakeTooLarge refused upgrades: request head too large (431)
 * @param handshakeTimeout refused upgrades: not completed in time
 * @param handshakeOverCapacity refused upgrades: max_connections reached (503)
 * @param handshakeIo upgrades that failed because the connection failed first
 * @param clusterEnabled whether cluster mode (redis) is configured
 * @param clusterConnected whether both Redis connections are up
 * @param clusterPublished publishes Redis accepted
 * @param clusterPublishDropped publishes dropped because redis_queue_limit publishes, or redis_queue_bytes bytes, were waiting
 * @param clusterPublishFailed publishes lost with a failed connection
 * @param clusterReceived messages received from Redis
 * @param clusterReconnects Redis connections re-established after the first
 * @param clusterSubscribedChannels Redis channels currently subscribed
 * @param handshakeForbiddenOrigin refused upgrades: a page from an origin not in allowed_origins (403)
 * @param handshakeAuthMissing refused upgrades: no token (401)
 * @param handshakeAuthMalformed refused upgrades: not a well-formed token (401)
 * @param handshakeAuthBadSignature refused upgrades: the token's signature does not verify (401)
 * @param handshakeAuthExpired refused upgrades: the token expired (401)
 * @param handshakeAuthNotYetValid refused upgrades: the token is not valid yet (401)
 * @param handshakeAuthWrongSubject refused upgrades: the token's sub is not the id (401)
 * @param handshakeAuthWrongAudience refused upgrades: the token's aud is not auth_audience (401)
 * @param handshakeAuthWrongIssuer refused upgrades: the token's iss is not auth_issuer (401)
 * @param handshakeForbidden refused upgrades: the authorizer said no or threw (403)
 * @param handshakeOverIpLimit refused upgrades: max_connections_per_ip reached for the address (429)
 * @param tokenExpirations sockets closed with 1008 because their token expired
 * @param inboundRateLimited sockets closed with 1008 for sending faster than the inbound rate limits
 * @param nodeBufferDisconnects sockets closed with 1008 to keep the node's queued output under its cap
 * @param bufferedBytes bytes queued for sockets and not yet written, across the engine
 * @param clusterPublishRoundTrips pipelines sent to Redis (publishes and presence queries)
 * @param clusterOwnSkipped messages this node published itself, skipped when Redis delivered them back
 * @param clusterDeliveryDropped messages from Redis not delivered because a worker's queue stayed full
 * @param clusterMalformedEnvelopes payloads on wspush channels that are not valid envelopes (skipped)
 * @param clusterMalformedCompat payloads on the compat channel that are not valid JSON (skipped)
 * @param clusterSubscribeCommands SUBSCRIBE commands sent to Redis
 * @param clusterUnsubscribeCommands UNSUBSCRIBE commands sent to Redis
 * @param messagesTooBig sockets closed with 1009 for a message over max_message_size (also in protocolErrors)
 * @param clusterOversizedDropped messages from Redis larger than max_outbound_message_size, dropped
 * @param clusterPublishQueuedBytes bytes of publishes waiting for Redis, at most redis_queue_bytes
 * @param historyAppended messages appended to an id's history (history_size above 0)
 * @param historyReplayed messages replayed from history to resuming sockets
 * @param historyResumes sockets that connected with ?since=EPOCH:OFFSET
 * @param historyLostSignals sockets told history could not reach back (!lost, or close 4410)
 * @param historyEvicted whole histories dropped to stay under history_max_bytes
 * @param historyBytes memory held by the histories, as counted against history_max_bytes
 * @param clusterHistoryAppends messages appended to an id's history in Redis
 * @param clusterHistoryAppendRetried appends sent again after their pipeline failed (applied at most once)
 * @param clusterHistoryAppendDuplicates retried appends Redis had already applied, not applied again
 * @param clusterHistoryReads reads of an id's history sent to Redis
 * @param clusterHistoryReadRoundTrips pipelines of history reads sent to Redis
 * @param clusterHistoryReadFailed history reads answered with a failure
 * @param historyDuplicates positioned messages from Redis dropped as already delivered here (cluster history)
 * @param historyGapFills reads of an id's history to fill a gap or catch up after a lost subscription
 * @param clusterMasterSwitches times the Sentinels moved the master and the node followed (redis+sentinel:// only)
 * @param clusterSubscribeRoundTrips writes of subscribe and unsubscribe commands to Redis (one round trip each)
 * @param clusterSlotMapRefreshes times the Redis Cluster slot map was asked for (redis+cluster:// only)
 * @param clusterSlotMapChanges times the Redis Cluster slot map changed (resharding, failover, shards added or removed)
 * @param clusterResubscribes channels subscribed again on another Redis Cluster master after their slot moved
 * @param clusterShards Redis Cluster masters this node has a subscriber connection to
 * @param clusterShardsUp of those, the ones up with every subscription confirmed
 * @param handshakeTls failed upgrades: the TLS handshake failed (tls_cert set)
 * @param messagesDeflated messages compressed with permessage-deflate (once per message and window in a worker)
 * @param inflatedTooBig sockets closed with 1009 for a compressed message inflating past max_message_size
 */
public record WsPushStats(
        long connections,
        long ids,
        long connectionsOpened,
        long messagesIn,
        long bytesIn,
        long messagesOut,
        long bytesOut,
        long slowConsumerDisconnects,
        long slowConsumerDrops,
        long idleTimeouts,
        long protocolErrors,
        long queueFull,
        long handshakeBadRequest,
        long handshakeBadVersion,
        long handshakeBadPath,
        long handshakeTooLarge,
        long handshakeTimeout,
        long handshakeOverCapacity,
        long handshakeIo,
        boolean clusterEnabled,
        boolean clusterConnected,
        long clusterPublished,
        long clusterPublishDropped,
        long clusterPublishFailed,
        long clusterReceived,
        long clusterReconnects,
        long clusterSubscribedChannels,
        long handshakeForbiddenOrigin,
        long handshakeAuthMissing,
        long handshakeAuthMalformed,
        long handshakeAuthBadSignature,
        long handshakeAuthExpired,
        long handshakeAuthNotYetValid,
        long handshakeAuthWrongSubject,
        long handshakeAuthWrongAudience,
        long handshakeAuthWrongIssuer,
        long handshakeForbidden,
        long handshakeOverIpLimit,
        long tokenExpirations,
        long inboundRateLimited,
        long nodeBufferDisconnects,
        long bufferedBytes,
        long clusterPublishRoundTrips,
        long clusterOwnSkipped,
        long clusterDeliveryDropped,
        long clusterMalformedEnvelopes,
        long clusterMalformedCompat,
        long clusterSubscribeCommands,
        long clusterUnsubscribeCommands,
        long messagesTooBig,
        long clusterOversizedDropped,
        long clusterPublishQueuedBytes,
        long historyAppended,
        long historyReplayed,
        long historyResumes,
        long historyLostSignals,
        long historyEvicted,
        long historyBytes,
        long clusterHistoryAppends,
        long clusterHistoryAppendRetried,
        long clusterHistoryAppendDuplicates,
        long clusterHistoryReads,
        long clusterHistoryReadRoundTrips,
        long clusterHistoryReadFailed,
        long historyDuplicates,
        long historyGapFills,
        long clusterMasterSwitches,
        long clusterSubscribeRoundTrips,
        long clusterSlotMapRefreshes,
        long clusterSlotMapChanges,
        long clusterResubscribes,
        long clusterShards,
        long clusterShardsUp,
        long handshakeTls,
        long messagesDeflated,
        long inflatedTooBig) {

    /** The number of counters in {@code wspush_stats} (all {@code uint64_t}). */
    static final int FIELDS = 76;

    static WsPushStats of(long[] v) {
        if (v.length != FIELDS) {
            throw new IllegalArgumentException("expected " + FIELDS + " counters, got " + v.length);
        }
        return new WsPushStats(v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8], v[9], v[10], v[11], v[12],
                v[13], v[14], v[15], v[16], v[17], v[18], v[19] != 0, v[20] != 0, v[21], v[22], v[23], v[24], v[25],
                v[26], v[27], v[28], v[29], v[30], v[31], v[32], v[33], v[34], v[35], v[36], v[37], v[38], v[39], v[40], v[41],
                v[42], v[43], v[44], v[45], v[46], v[47], v[48], v[49], v[50], v[51],
                v[52], v[53], v[54], v[55], v[56], v[57], v[58], v[59], v[60], v[61],
                v[62], v[63], v[64], v[65], v[66], v[67], v[68], v[69], v[70], v[71], v[72], v[73], v[74], v[75]);
    }

    /** @return upgrades refused for their token (401), all reasons together */
    public long handshakeAuthFailures() {
        return handshakeAuthMissing + handshakeAuthMalformed + handshakeAuthBadSignature + handshakeAuthExpired
                + handshakeAuthNotYetValid + handshakeAuthWrongSubject + handshakeAuthWrongAudience
                + handshakeAuthWrongIssuer;
    }

    /** @return refused upgrades, all reasons together */
    public long handshakeFailures() {
        return handshakeBadRequest + handshakeBadVersion + handshakeBadPath + handshakeTooLarge + handshakeTimeout
                + handshakeOverCapacity + handshakeIo + handshakeForbiddenOrigin + handshakeAuthFailures()
                + handshakeForbidden + handshakeOverIpLimit + handshakeTls;
    }
}
