//! `GET /`: a self-contained demo page (HTML and JavaScript, no external assets) that
//! connects a WebSocket for an id (with the browser client) and pushes to it through the
//! API; and `GET /client.js`, the browser client (`clients/js/`).

use axum::http::header;
use axum::response::IntoResponse;

/// The page, with the placeholder [`PLACEHOLDER`] where its settings go.
const PAGE: &str = include_str!("demo.html");

/// Replaced by a JSON object: `{"wsPort": .., "pathPrefix": .., "tokenRequired": ..,
/// "wsAuth": ..}`.
const PLACEHOLDER: &str = "__WSPUSH_CONFIG__";

/// The page for a WebSocket listener on `ws_port` with `path_prefix`. The page connects
/// to its own host name with the port replaced by `ws_port`. `token_required`: the API
/// wants its token; `ws_auth`: sockets need a JWT (sent as the `wspush.bearer` subprotocol).
pub fn render(ws_port: u16, path_prefix: &str, token_required: bool, ws_auth: bool) -> String {
    let config = serde_json::json!({
        "wsPort": ws_port,
        "pathPrefix": path_prefix,
        "tokenRequired": token_required,
        "wsAuth": ws_auth,
    });
    // Inside <script>, `</script>` or `<!--` in a string would end or change the script:
    // escape the characters that could start them.
    let config = config.to_string().replace('<', "\\u003c").replace('>', "\\u003e").replace('&', "\\u0026");
    PAGE.replacen(PLACEHOLDER, &config, 1)
}

/// The browser client, `clients/js/wspush.js` (an ES module): a copy inside this crate, so
/// that the crate builds from its package alone (`cargo package`, `cargo install`), which
/// holds nothing outside `engine/`; `tests/js_client.rs` checks that the two are the same
/// bytes and that this is what `GET /client.js` serves.
pub const CLIENT_JS: &str = include_str!("client.js");

/// `GET /client.js`. Any origin may load it: it is public code, and a page served from
/// elsewhere imports it as a module, which a browser fetches with CORS.
pub async fn client_js() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"),
        ],
        CLIENT_JS,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_settings_are_injected_once_and_safely() {
        assert_eq!(PAGE.matches(PLACEHOLDER).count(), 1);
        let page = render(9001, "/ws/</script>/", true, true);
        assert!(!page.contains(PLACEHOLDER));
        assert!(page.contains(r#""wsPort":9001"#), "{page}");
        assert!(page.contains(r#""pathPrefix":"/ws/\u003c/script\u003e/""#), "{page}");
        assert!(page.contains(r#""tokenRequired":true"#), "{page}");
        assert!(page.contains(r#""wsAuth":true"#), "{page}");
        assert_eq!(page.matches("</script>").count(), 1);
        assert!(!page.contains("http://") && !page.contains("https://"), "no external assets");
    }
}
