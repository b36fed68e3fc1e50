//! The JSON body of every HTTP error (`{"error": "…"}`), its own module so that
//! the layers that refuse requests (limits) and the handlers share it without
//! importing each other.

use serde::Serialize;
use utoipa::ToSchema;

/// The body of every API error.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: String,
}
