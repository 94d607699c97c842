//! The one glob dialect of the gateway, for policy files and the configuration alike: `*`, `?`,
//! `[...]` and `\` escapes as globset reads them, `*` crossing `/`, and `{` `}` literal.

use globset::{Glob, GlobBuilder};

/// Compiles a glob (policy targets and subjects, tool names in the configuration). `{` and `}`
/// are literal because policy targets name URI templates (`docs/file:///{path}`): read as
/// alternation, a pattern naming a template would match nothing and a deny on it would
/// silently fail open.
///
/// # Errors
/// The pattern and globset's reason, for a pattern that does not compile.
pub fn compile(pattern: &str) -> Result<Glob, String> {
    GlobBuilder::new(&literal_braces(pattern))
        .literal_separator(false)
        .backslash_escape(true)
        .build()
        .map_err(|e| format!("invalid glob {pattern:?}: {e}"))
}

/// `pattern` with every `{` and `}` outside a character class escaped (already escaped ones,
/// and those inside `[...]`, are literal to globset anyway).
fn literal_braces(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len() + 4);
    let mut chars = pattern.chars();
    let mut in_class = false;
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                out.push(c);
                if let Some(next) = chars.next() {
                    out.push(next);
                }
            }
            '[' if !in_class => {
                in_class = true;
                out.push(c);
                // `[]...]` and `[!]...]`: a `]` right after the opening is a member.
                let rest = chars.as_str();
                let skip = if rest.starts_with("!]") || rest.starts_with("^]") {
                    2
                } else {
                    usize::from(rest.starts_with(']'))
                };
                for _ in 0..skip {
                    out.extend(chars.next());
                }
            }
            ']' if in_class => {
                in_class = false;
                out.push(c);
            }
            '{' | '}' if !in_class => {
                out.push('\\');
                out.push(c);
            }
            _ => out.push(c),
        }
    }
    out
}
