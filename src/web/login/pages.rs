//! The pages of keypin's own forms: sign-in (with the reason of a refusal, a
//! notice after signing out, and a refresh when a wait ends) and sign-out.

use http::header::{self, HeaderMap};
use http::{Response, StatusCode};

use super::Login;
use crate::web::body::Body;
use crate::web::error::GatewayError;
use crate::web::page::{Page, escape, render};
use crate::web::redirect::login_url;
use crate::web::route::{LOGIN_PATH, LOGOUT_PATH};

impl Login {
    pub(super) fn login_form(
        &self,
        headers: &HeaderMap,
        status: StatusCode,
        error: Option<&GatewayError>,
        rd: &str,
    ) -> Response<Body> {
        self.login_page(headers, status, error, rd, None)
    }

    /// The sign-in page; `notice` replaces the configured message (after signing
    /// out: "You have been signed out.").
    pub(super) fn login_page(
        &self,
        headers: &HeaderMap,
        status: StatusCode,
        error: Option<&GatewayError>,
        rd: &str,
        notice: Option<&str>,
    ) -> Response<Body> {
        let (token, cookie) = self.csrf_for_form(headers);
        let form = format!(
            "<form method=\"post\" action=\"{LOGIN_PATH}\">\n\
             <input type=\"hidden\" name=\"rd\" value=\"{rd}\">\n\
             <input type=\"hidden\" name=\"csrf\" value=\"{token}\">\n\
             <label for=\"pin\">PIN</label>\n\
             <input id=\"pin\" name=\"pin\" type=\"password\" inputmode=\"numeric\" pattern=\"[0-9]*\" \
             minlength=\"{min}\" maxlength=\"{max}\" title=\"{min} to {max} digits\" autocomplete=\"off\" \
             autofocus required>\n\
             <button type=\"submit\">Sign in</button>\n</form>",
            rd = escape(rd),
            min = self.pin.min_digits,
            max = self.pin.max_digits,
        );
        let alert = error.map(GatewayError::public_message);
        let message = notice.unwrap_or(&self.ui.message);
        // A wait that ends: the page comes back as a fresh form by itself.
        let again = login_url(rd);
        let refresh = error.and_then(GatewayError::retry_after_secs).map(|secs| (secs, again.as_str()));
        let page = Page { title: &self.ui.title, message, alert: alert.as_deref(), form: &form, refresh };
        let mut resp = render(&self.ui, status, &page, cookie);
        if let Some(retry) = error.and_then(GatewayError::retry_after) {
            resp.headers_mut().insert(header::RETRY_AFTER, retry);
        }
        resp
    }

    pub(super) fn logout_form(&self, headers: &HeaderMap) -> Response<Body> {
        let (token, cookie) = self.csrf_for_form(headers);
        let form = format!(
            "<form method=\"post\" action=\"{LOGOUT_PATH}\">\n\
             <input type=\"hidden\" name=\"csrf\" value=\"{token}\">\n\
             <button type=\"submit\" autofocus>Sign out</button>\n</form>"
        );
        let page = Page {
            title: "Sign out",
            message: "End your session on this device.",
            alert: None,
            form: &form,
            refresh: None,
        };
        render(&self.ui, StatusCode::OK, &page, cookie)
    }
}
