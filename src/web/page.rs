//! keypin's own pages: the default template (`page.html`) or the operator's
//! (`[ui] template`), filled with the `[ui]` title, message and logo, and the
//! headers every page carries: a strict CSP with a per-response style nonce, no
//! framing, no caching.

use http::header::{self, HeaderMap, HeaderValue};
use http::{Response, StatusCode};

use crate::config::UiConfig;
use crate::state::session::random_token;
use crate::web::body::{Body, full_body};

/// The default page; its placeholders are the ones a custom template may use.
const DEFAULT_TEMPLATE: &str = include_str!("page.html");

/// What one page shows. Text is escaped here; `form` is keypin's own markup.
pub struct Page<'a> {
    pub title: &'a str,
    pub message: &'a str,
    /// An error or notice, announced to screen readers.
    pub alert: Option<&'a str>,
    pub form: &'a str,
    /// Reload `url` after this many seconds (a wait that ends), through
    /// `{{refresh}}` in the template.
    pub refresh: Option<(u64, &'a str)>,
}

/// Render `page` with the operator's template or the default one.
pub fn render(ui: &UiConfig, status: StatusCode, page: &Page<'_>, set_cookie: Option<HeaderValue>) -> Response<Body> {
    let nonce = random_token(16);
    let logo =
        ui.logo.as_deref().map_or_else(String::new, |uri| format!("<img class=\"logo\" src=\"{uri}\" alt=\"\">"));
    let alert =
        page.alert.map_or_else(String::new, |text| format!("<p class=\"alert\" role=\"alert\">{}</p>", escape(text)));
    // One pass over the template: a value can never inject another placeholder.
    let template = ui.template.as_deref().unwrap_or(DEFAULT_TEMPLATE);
    let mut html = String::with_capacity(template.len() + page.form.len() + logo.len() + 256);
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        html.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            rest = &rest[start..];
            break;
        };
        match &after[..end] {
            "title" => html.push_str(&escape(page.title)),
            "message" => html.push_str(&escape(page.message)),
            "alert" => html.push_str(&alert),
            "logo" => html.push_str(&logo),
            "form" => html.push_str(page.form),
            "nonce" => html.push_str(&nonce),
            "refresh" => {
                if let Some((secs, url)) = page.refresh {
                    html.push_str(&format!("<meta http-equiv=\"refresh\" content=\"{secs};url={}\">", escape(url)));
                }
            }
            other => {
                html.push_str("{{");
                html.push_str(other);
                html.push_str("}}");
            }
        }
        rest = &after[end + 2..];
    }
    html.push_str(rest);

    let mut resp = Response::new(full_body(html));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    let csp = format!(
        "default-src 'none'; style-src 'nonce-{nonce}'; img-src data:; form-action 'self'; \
         frame-ancestors 'none'; base-uri 'none'"
    );
    security_headers(h, HeaderValue::try_from(csp).expect("nonce is base64url"));
    if let Some(cookie) = set_cookie {
        h.append(header::SET_COOKIE, cookie);
    }
    resp
}

/// The headers of every HTML page keypin renders: never stored, never framed,
/// never sniffed, no referrer beyond this site, and `csp`.
fn security_headers(h: &mut HeaderMap, csp: HeaderValue) {
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    h.insert(header::CONTENT_SECURITY_POLICY, csp);
}

/// HTML-escape text for element content and quoted attributes.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(resp: Response<Body>) -> String {
        let http_body_util::Either::Right(full) = resp.into_body() else { panic!("a page") };
        let bytes = futures_now(full);
        String::from_utf8(bytes).unwrap()
    }

    fn futures_now(full: http_body_util::Full<bytes::Bytes>) -> Vec<u8> {
        use http_body_util::BodyExt;
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(full.collect()).unwrap().to_bytes().to_vec()
    }

    #[test]
    fn values_are_escaped_and_cannot_inject_placeholders() {
        let ui = UiConfig { title: "<b>Acme</b> {{form}}".into(), ..UiConfig::default() };
        let page = Page {
            title: &ui.title,
            message: "m",
            alert: Some("bad & <worse>"),
            form: "<form>F</form>",
            refresh: None,
        };
        let html = body(render(&ui, StatusCode::OK, &page, None));
        assert!(html.contains("&lt;b&gt;Acme&lt;/b&gt; {{form}}"), "{html}");
        assert_eq!(html.matches("<form>F</form>").count(), 1);
        assert!(html.contains("role=\"alert\">bad &amp; &lt;worse&gt;</p>"));
    }

    #[test]
    fn a_custom_template_gets_the_same_placeholders_and_headers() {
        let ui = UiConfig {
            template: Some(
                "<title>{{title}}</title><style nonce=\"{{nonce}}\"></style>{{logo}}{{form}}{{unknown}}".into(),
            ),
            logo: Some("data:image/png;base64,AAAA".into()),
            ..UiConfig::default()
        };
        let resp = render(
            &ui,
            StatusCode::UNAUTHORIZED,
            &Page { title: "T", message: "", alert: None, form: "F", refresh: None },
            None,
        );
        assert_eq!(resp.status(), 401);
        let csp = resp.headers()[header::CONTENT_SECURITY_POLICY].to_str().unwrap().to_owned();
        let html = body(resp);
        let nonce = html.split("nonce=\"").nth(1).unwrap().split('"').next().unwrap();
        assert!(csp.contains(&format!("'nonce-{nonce}'")));
        assert!(html.starts_with("<title>T</title>") && html.contains("src=\"data:image/png;base64,AAAA\""));
        assert!(html.ends_with("F{{unknown}}"));
    }
}
