//! `GET /`: the dashboard. One card per stream with its state, its RTSP and HLS
//! URLs (copy buttons) and a live hls.js player. The page is rendered on the
//! server from the registry so it needs no API token; the player script is the
//! hls.js copy the HLS routes already serve, so the page works offline. With
//! `[ring]` configured, a Ring section lists the accounts, their state
//! (`needs_relinking` among them, with the hint to link again from the Ring
//! app) and an unlink button each; the devices with their latest snapshot
//! (refreshed every 30 s); the latest events, live over SSE (`/api/events`);
//! and the downloaded clips with a player each (`/api/ring/clips`).
//!
//! Snapshots, events and clips are API routes: with `[http] api_token` set, the
//! browser loads them with its sign-in cookie (`/ring/sign-in`, which the API
//! accepts as it accepts the token); a browser not signed in gets a sign-in link
//! in their place, and the page itself still needs no token.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Html;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use streamgate_ring::AccountState;

use super::api::signed_in;
use super::state::AppState;
use crate::sources::RING_PREFIX;

const PAGE: &str = include_str!("dashboard.html");

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(dashboard))
}

/// The dashboard page.
#[utoipa::path(get, path = "/", tag = "dashboard", security(()),
    responses((status = OK, description = "HTML", content_type = "text/html")))]
async fn dashboard(State(state): State<AppState>, headers: HeaderMap) -> Html<String> {
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
<video muted autoplay playsinline controls></video><div class="latency muted"></div>
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
    let ring_streams: Vec<(String, String)> = streams
        .iter()
        .filter_map(|(name, stream)| {
            let source = stream.config.source.to_string();
            let device = source.strip_prefix(RING_PREFIX)?;
            Some((device.to_owned(), name.as_str().to_owned()))
        })
        .collect();
    drop(streams);
    if cards.is_empty() {
        cards.push_str("<p>No streams are configured.</p>");
    }
    // Any stream's folder serves the bundled hls.js and its set-up; with no stream
    // there is no player.
    let hls_js = first.map_or_else(String::new, |name| {
        format!(
            "<script src=\"/hls/{name}/hls.min.js\"></script>\
             <script src=\"/hls/{name}/live.js\"></script>"
        )
    });
    Html(
        PAGE.replace("{{STREAMS}}", &cards)
            .replace(
                "{{RING}}",
                &ring_section(&state, &ring_streams, signed_in(&state, &headers)),
            )
            .replace("{{HLS_JS}}", &hls_js)
            .replace("{{RTSP_PORT}}", &state.rtsp_port.to_string()),
    )
}

/// The Ring section (empty without `[ring]`): accounts, devices, events, clips.
/// `streams`: (device id, stream name) of the Ring streams.
fn ring_section(state: &AppState, streams: &[(String, String)], signed_in: bool) -> String {
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
{hint}<form method="post" action="/ring/accounts/{path}/unlink" style="display:inline"><button type="submit">unlink</button></form></li>
"#,
            name = html_escape::encode_text(&account.name),
            state = account.state.as_str(),
            // Linking starts in the Ring app (it calls the Account Link URL): there
            // is no link to it to give here.
            hint = if account.state == AccountState::NeedsRelinking {
                " <span class=\"relink\">link again from the Ring app</span> "
            } else {
                " "
            },
            error = account.last_error.as_deref().map_or_else(String::new, |e| format!(
                " <span class=\"error\">{}</span>",
                html_escape::encode_text(e)
            )),
        ));
    }
    if rows.is_empty() {
        rows.push_str("<li>No Ring account is linked: link one from the Ring app (Account Link URL <code>/ring/link</code>).</li>");
    }
    let mut devices = String::new();
    for device in ring.link.devices() {
        let stream = streams
            .iter()
            .find(|(id, _)| id == device.id.as_str())
            .map(|(_, name)| name.as_str());
        // Stream names are letters, digits, '_' and '-': safe in HTML and URLs.
        let image = match stream {
            Some(name) if signed_in => format!(
                "<img class=\"ring-snapshot\" alt=\"latest snapshot\" data-src=\"/api/streams/{name}/snapshot.jpg\" src=\"/api/streams/{name}/snapshot.jpg\">"
            ),
            Some(_) => String::new(),
            None => "<div class=\"muted\">no stream</div>".to_owned(),
        };
        devices.push_str(&format!(
            "<figure class=\"ring-device\" data-id=\"{id}\" data-stream=\"{stream}\">{image}<figcaption>{name} <small>{stream}</small></figcaption></figure>\n",
            id = html_escape::encode_double_quoted_attribute(device.id.as_str()),
            name = html_escape::encode_text(&device.name),
            stream = stream.unwrap_or_default(),
        ));
    }
    if devices.is_empty() {
        devices.push_str("<p class=\"muted\">No devices yet.</p>");
    }
    let media = if signed_in {
        "<h2>Ring events</h2><ul id=\"ring-events\"></ul>\n<h2>Ring clips</h2><ul id=\"ring-clips\"><li class=\"muted\">No clips.</li></ul>".to_owned()
    } else {
        "<p class=\"sign-in\"><a href=\"/ring/sign-in?next=%2F\">Sign in</a> to see snapshots, events and clips.</p>".to_owned()
    };
    format!(
        "<section class=\"ring\" data-signed-in=\"{signed_in}\"><h2>Ring accounts</h2><ul>{rows}</ul>\n\
         <h2>Ring devices</h2><div class=\"ring-devices\">{devices}</div>\n{media}</section>"
    )
}
