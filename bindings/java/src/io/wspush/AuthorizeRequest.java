package io.wspush;

import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Objects;
import java.util.Optional;

/**
 * An upgrade request, as a {@link WsPushAuthorizer} is told about it.
 *
 * @param id the id the client connects as (from the path, percent-decoded; or the id given to
 *     {@link WsPush#register(int, String)})
 * @param path the request target exactly as sent: path and query, e.g.
 *     {@code /websocket/456?lang=en}
 * @param headers every request header: names lower-cased, in the order first sent, each with
 *     its values in the order sent (a header sent twice has two); values decoded as ISO-8859-1
 *     (as servlet containers do), so every byte survives. Unmodifiable.
 * @param peer the client's address, e.g. {@code 127.0.0.1:54321} or {@code [::1]:54321}, or
 *     {@code null} if unknown
 */
public record AuthorizeRequest(String id, String path, Map<String, List<String>> headers, String peer) {
    /** Checks the components and makes {@code headers} an unmodifiable copy. */
    public AuthorizeRequest {
        Objects.requireNonNull(id, "id");
        Objects.requireNonNull(path, "path");
        Map<String, List<String>> copy = new LinkedHashMap<>();
        for (Map.Entry<String, List<String>> header : Objects.requireNonNull(headers, "headers").entrySet()) {
            copy.put(header.getKey().toLowerCase(Locale.ROOT), List.copyOf(header.getValue()));
        }
        headers = Collections.unmodifiableMap(copy);
    }

    /**
     * @param name a header name, in any case
     * @return the first value of that header, if the request has it
     */
    public Optional<String> header(String name) {
        List<String> values = headers.get(name.toLowerCase(Locale.ROOT));
        return values == null || values.isEmpty() ? Optional.empty() : Optional.of(values.get(0));
    }

    /**
     * @param name a cookie name (case-sensitive)
     * @return the value of the first cookie of that name in the {@code Cookie} header(s), if any
     */
    public Optional<String> cookie(String name) {
        for (String line : headers.getOrDefault("cookie", List.of())) {
            for (String pair : line.split(";")) {
                int eq = pair.indexOf('=');
                if (eq > 0 && pair.substring(0, eq).trim().equals(name)) {
                    return Optional.of(pair.substring(eq + 1).trim());
                }
            }
        }
        return Optional.empty();
    }
}
