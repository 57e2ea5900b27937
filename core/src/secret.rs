//! Settings that hold a credential, given in a variable `X` or in a file that `X_FILE` names: the
//! convention of the official database images, so that a Kubernetes Secret can be mounted as a file
//! instead of passed through the environment.
use std::{fmt, path::Path};

use crate::{Error, Result};

/// A credential (a password, a token, a URL that carries one) that `Debug` never prints.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a credential.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The credential itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// Parses from a command-line or environment value, as it is.
impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        Ok(Self::new(s))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Resolves the setting `name` from its value or from the file that `{name}_FILE` names. Both set
/// is refused naming both, since which one wins would be a guess; an empty file is refused, since a
/// Secret mounted without its key is a mistake, not an empty password. Trailing newlines are
/// dropped, as the official images' `$(< file)` drops them: `echo` and editors add one.
pub fn resolve(name: &'static str, value: Option<&str>, file: Option<&Path>) -> Result<Option<Secret>> {
    match (value, file) {
        (None, None) => Ok(None),
        (Some(value), None) => Ok(Some(Secret::new(value))),
        (Some(_), Some(_)) => Err(Error::Config {
            setting: name,
            field: None,
            reason: format!("{name} and {name}_FILE are both set; set only one of them"),
        }),
        (None, Some(path)) => {
            let text = read_text(name, path)?;
            let value = text.trim_end_matches(['\n', '\r']);
            if value.is_empty() {
                return Err(Error::Config {
                    setting: name,
                    field: None,
                    reason: format!("{name}_FILE {} is empty", path.display()),
                });
            }
            Ok(Some(Secret::new(value)))
        }
    }
}

/// Reads a file that the setting `name` names, refusing a missing or unreadable one by the setting's
/// name at start rather than at the first connection.
pub fn read_file(name: &'static str, path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::Config {
        setting: name,
        field: None,
        reason: format!("cannot read {}: {e}", path.display()),
    })
}

fn read_text(name: &'static str, path: &Path) -> Result<String> {
    String::from_utf8(read_file(name, path)?).map_err(|_| Error::Config {
        setting: name,
        field: None,
        reason: format!("{name}_FILE {} is not UTF-8 text", path.display()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(content: &[u8]) -> tempfile::NamedTempFile {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), content).unwrap();
        f
    }

    #[test]
    fn a_value_given_directly_is_used_as_it_is() {
        let secret = resolve("REDIS_PASSWORD", Some(" pw \n"), None).unwrap().unwrap();
        assert_eq!(secret.expose(), " pw \n");
    }

    #[test]
    fn a_file_is_read_without_its_trailing_newlines() {
        let f = file(b"s3cr\xc3\xa9t with spaces \r\n\n");
        let secret = resolve("REDIS_PASSWORD", None, Some(f.path())).unwrap().unwrap();
        assert_eq!(secret.expose(), "s3cr\u{e9}t with spaces ");
    }

    #[test]
    fn neither_given_is_no_secret() {
        assert_eq!(resolve("REDIS_PASSWORD", None, None).unwrap(), None);
    }

    #[test]
    fn both_given_is_refused_naming_both() {
        let f = file(b"pw");
        let err = resolve("ADMIN_TOKEN", Some("pw"), Some(f.path())).unwrap_err().to_string();
        assert!(err.contains("ADMIN_TOKEN and ADMIN_TOKEN_FILE"), "{err}");
    }

    #[test]
    fn a_missing_an_empty_or_a_binary_file_is_refused_by_name() {
        let missing = Path::new("/nonexistent/wbc/password");
        let err = resolve("DATABASE_PASSWORD", None, Some(missing)).unwrap_err().to_string();
        assert!(err.contains("DATABASE_PASSWORD") && err.contains("/nonexistent/wbc/password"), "{err}");
        let empty = file(b"\n");
        let err = resolve("DATABASE_PASSWORD", None, Some(empty.path())).unwrap_err().to_string();
        assert!(err.contains("DATABASE_PASSWORD_FILE") && err.contains("empty"), "{err}");
        let binary = file(b"\xff\xfe");
        let err = resolve("DATABASE_PASSWORD", None, Some(binary.path())).unwrap_err().to_string();
        assert!(err.contains("DATABASE_PASSWORD_FILE") && err.contains("UTF-8"), "{err}");
    }

    #[test]
    fn debug_output_never_shows_the_secret() {
        assert_eq!(format!("{:?}", Secret::new("hunter2")), "Secret(***)");
    }
}
