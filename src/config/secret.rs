//! Secret values and `${ENV_VAR}` expansion.
//!
//! A [`Secret`] never prints its value (`Debug` and `Display` show `***`), so a config dumped in a
//! log or an error message cannot leak a token.

use std::fmt;

/// A string that must not be printed: an upstream token, a header value read from a file.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value.
    pub fn new(value: String) -> Self {
        Self(value)
    }

    /// The value itself; call only where it is put on the wire.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Replaces every `${NAME}` in `input` with the environment variable `NAME`, read through
/// `lookup`. `$$` escapes a literal `$`.
///
/// # Errors
/// Returns a message naming the first variable that is unset or a `${` without its `}`.
pub fn expand_env(input: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(stripped) = after.strip_prefix('$') {
            out.push('$');
            rest = stripped;
        } else if let Some(body) = after.strip_prefix('{') {
            let end = body
                .find('}')
                .ok_or_else(|| "unterminated `${` in value".to_string())?;
            let name = &body[..end];
            let valid =
                !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                return Err(format!("invalid environment variable name {name:?}"));
            }
            let value =
                lookup(name).ok_or_else(|| format!("environment variable {name} is not set"))?;
            out.push_str(&value);
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        (name == "TOKEN").then(|| "s3cr3t".to_string())
    }

    #[test]
    fn expands_and_escapes() {
        assert_eq!(
            expand_env("Bearer ${TOKEN}", &env).unwrap(),
            "Bearer s3cr3t"
        );
        assert_eq!(expand_env("a$$b $x", &env).unwrap(), "a$b $x");
        assert!(
            expand_env("${MISSING}", &env)
                .unwrap_err()
                .contains("MISSING")
        );
        assert!(expand_env("${TOKEN", &env).is_err());
        assert!(expand_env("${A-B}", &env).is_err());
    }

    #[test]
    fn secret_never_prints() {
        let s = Secret::new("s3cr3t".into());
        assert_eq!(format!("{s:?}"), "Secret(***)");
        assert_eq!(s.expose(), "s3cr3t");
    }
}
