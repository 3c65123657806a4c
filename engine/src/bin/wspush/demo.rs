//! `GET /`: a self-contained demo page (HTML and JavaScript, no external assets) that
//! connects a WebSocket for an id and pushes to it through the API; and `GET /resume.js`,
//! the browser client with exact resume that README shows (`wspushResume`).

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

/// `wspushResume`, README's browser snippet (section "Delivery guarantees and resume"), with
/// a comment on top: the one copy a page can load, tested in Chromium by
/// `tests/browser_resume.rs`.
pub const RESUME_JS: &str = include_str!("resume.js");

/// `GET /resume.js`.
pub async fn resume_js() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8")], RESUME_JS)
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

    /// README's snippet is resume.js's function, character for character.
    #[test]
    fn readme_shows_the_served_snippet() {
        let function = &RESUME_JS[RESUME_JS.find("function wspushResume(").expect("resume.js defines it")..];
        let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
        let start =
            readme.find("```js\nfunction wspushResume(").expect("README shows the snippet") + "```js\n".len();
        let end = start + readme[start..].find("```").expect("the snippet's block ends");
        assert_eq!(
            &readme[start..end],
            function,
            "README's snippet differs from engine/src/bin/wspush/resume.js"
        );
        assert_eq!(readme.matches("function wspushResume(").count(), 1, "README shows the snippet once");
    }
}
