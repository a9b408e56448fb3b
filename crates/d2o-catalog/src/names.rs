//! The names of shares, schemas, tables, recipients and storage locations.

/// The protocol's rules for share, schema and table names: not empty, at most 255 characters,
/// no `/`, no control characters.
pub fn validate_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("a name cannot be empty".into());
    }
    if name.chars().count() > 255 {
        return Err(format!("'{}…' is longer than 255 characters", name.chars().take(20).collect::<String>()));
    }
    if name.contains('/') || name.chars().any(char::is_control) {
        return Err(format!("{name:?} contains '/' or a control character"));
    }
    Ok(())
}
