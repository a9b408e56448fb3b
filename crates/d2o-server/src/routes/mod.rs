//! The HTTP routes.

pub(crate) mod discovery;
pub(crate) mod params;
pub(crate) mod table;
