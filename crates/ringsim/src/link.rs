//! Ring's side of account linking, for the `link` subcommand and the
//! `/sim/link` page: make a code, POST it to the partner's Token Exchange URL,
//! then send the user to the partner's Account Link URL with `time` and `nonce`.

use url::Url;

use crate::state::LinkOffer;

/// How long one call of the link flow may take.
const TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);

/// Why linking did not get to the Account Link URL. Never names the code.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LinkError {
    #[error("the simulator at {0} could not make a link: {1}")]
    Simulator(String, String),
    #[error("the Token Exchange URL {url} failed: {detail}")]
    TokenExchange { url: String, detail: String },
}

/// `url` without query or fragment, for messages (they may carry secrets).
fn shown(url: &Url) -> String {
    let mut url = url.clone();
    url.set_query(None);
    url.set_fragment(None);
    let _ = url.set_password(None);
    let _ = url.set_username("");
    url.to_string()
}

/// POSTs `code` to the Token Exchange URL as `{"code": "…"}` ([guess]: Ring does
/// not document the body) and wants a 2xx back.
pub async fn deliver_code(
    client: &reqwest::Client,
    token_exchange: &Url,
    code: &str,
) -> Result<(), LinkError> {
    let failed = |detail: String| LinkError::TokenExchange {
        url: shown(token_exchange),
        detail,
    };
    let body = serde_json::json!({ "code": code }).to_string();
    let response = client
        .post(token_exchange.clone())
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body)
        .timeout(TIMEOUT)
        .send()
        .await
        .map_err(|e| failed(e.without_url().to_string()))?;
    let status = response.status();
    if !status.is_success() {
        return Err(failed(format!("answered {status}")));
    }
    Ok(())
}

/// The Account Link URL with Ring's `time` (ms) and `nonce` appended to its query.
pub fn account_link_url(account_link: &Url, offer: &LinkOffer) -> Url {
    let mut url = account_link.clone();
    url.query_pairs_mut()
        .append_pair("time", &offer.time.to_string())
        .append_pair("nonce", &offer.nonce);
    url
}

/// The whole flow against a running simulator at `sim` (its base URL): ask it
/// for a link (`POST /sim/links`), deliver the code, return the Account Link URL.
pub async fn link(
    client: &reqwest::Client,
    sim: &Url,
    token_exchange: &Url,
    account_link: &Url,
    account: Option<&str>,
) -> Result<Url, LinkError> {
    let failed = |detail: String| LinkError::Simulator(shown(sim), detail);
    let links = sim.join("sim/links").map_err(|e| failed(e.to_string()))?;
    let body = serde_json::json!({ "account": account }).to_string();
    let response = client
        .post(links)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body)
        .timeout(TIMEOUT)
        .send()
        .await
        .map_err(|e| failed(e.without_url().to_string()))?;
    let status = response.status();
    let text = response
        .text()
        .await
        .map_err(|e| failed(e.without_url().to_string()))?;
    if !status.is_success() {
        return Err(failed(format!("answered {status}: {text}")));
    }
    let offer: LinkOffer =
        serde_json::from_str(&text).map_err(|e| failed(format!("unexpected answer: {e}")))?;
    deliver_code(client, token_exchange, &offer.code).await?;
    Ok(account_link_url(account_link, &offer))
}
