//! `GET /`: the dashboard. One card per stream with its state, its RTSP and HLS
//! URLs (copy buttons) and a live hls.js player. The page is rendered on the
//! server from the registry so it needs no API token; the player script is the
//! hls.js copy the HLS routes already serve, so the page works offline. With
//! `[ring]` configured, a section lists the Ring accounts, their state
//! (`needs_relinking` among them) and an unlink button each.

use axum::extract::State;
use axum::response::Html;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::state::AppState;

const PAGE: &str = include_str!("dashboard.html");

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(dashboard))
}

/// The dashboard page.
#[utoipa::path(get, path = "/", tag = "dashboard", security(()),
    responses((status = OK, description = "HTML", content_type = "text/html")))]
async fn dashboard(State(state): State<AppState>) -> Html<String> {
    let streams = state.streams.read();
    let mut cards = String::new();
    let mut first = None;
    for (name, stream) in streams.iter() {
        // Names are letters, digits, '_' and '-' (StreamName), safe in HTML and URLs.
        let name = name.as_str();
        first.get_or_insert_with(|| name.to_owned());
        let report = stream.report();
        let error = report
            .last_error
            .map(|e| {
                format!(
                    "<div class=\"error\">{}</div>",
                    html_escape::encode_safe(&e)
                )
            })
            .unwrap_or_default();
        cards.push_str(&format!(
            r#"<section class="stream" data-name="{name}" data-state="{state}">
<h2>{name} <span class="state-{state}">{state}</span> <small>{source_state}</small></h2>
{error}<div class="url url-rtsp">RTSP <code></code><button type="button">copy</button></div>
<div class="url url-hls">HLS <code></code><button type="button">copy</button></div>
<video muted autoplay playsinline controls></video>
</section>
"#,
            state = report.health.as_str(),
            // Replays have no client state beyond running/failed.
            source_state = if report.source_state == report.health.as_str() {
                String::new()
            } else {
                html_escape::encode_safe(&report.source_state).into_owned()
            },
        ));
    }
    drop(streams);
    if cards.is_empty() {
        cards.push_str("<p>No streams are configured.</p>");
    }
    // Any stream's folder serves the bundled hls.js; with no stream there is no player.
    let hls_js = first.map_or_else(String::new, |name| {
        format!("<script src=\"/hls/{name}/hls.min.js\"></script>")
    });
    Html(
        PAGE.replace("{{STREAMS}}", &cards)
            .replace("{{RING}}", &ring_accounts(&state))
            .replace("{{HLS_JS}}", &hls_js)
            .replace("{{RTSP_PORT}}", &state.rtsp_port.to_string()),
    )
}

/// The Ring accounts section (empty without `[ring]`).
fn ring_accounts(state: &AppState) -> String {
    let Some(ring) = &state.ring else {
        return String::new();
    };
    let accounts = ring.link.client.accounts();
    let mut rows = String::new();
    for account in &accounts {
        let id = html_escape::encode_double_quoted_attribute(account.id.as_str());
        let path: String =
            url::form_urlencoded::byte_serialize(account.id.as_str().as_bytes()).collect();
        rows.push_str(&format!(
            r#"<li class="ring-account" data-id="{id}" data-state="{state}">{name} <span class="state-{state}">{state}</span>{error}
<form method="post" action="/ring/accounts/{path}/unlink" style="display:inline"><button type="submit">unlink</button></form></li>
"#,
            name = html_escape::encode_text(&account.name),
            state = account.state.as_str(),
            error = account.last_error.as_deref().map_or_else(String::new, |e| format!(
                " <span class=\"error\">{}</span>",
                html_escape::encode_text(e)
            )),
        ));
    }
    if rows.is_empty() {
        rows.push_str("<li>No Ring account is linked: link one from the Ring app (Account Link URL <code>/ring/link</code>).</li>");
    }
    format!("<section class=\"ring\"><h2>Ring accounts</h2><ul>{rows}</ul></section>")
}
